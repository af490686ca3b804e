// SPDX-License-Identifier: GPL-2.0
/*
 * leakyfs: a tiny in-memory filesystem that misbehaves on purpose, so that tracer's leak
 * and refcount reports can be checked against a known truth inside the test VM.
 *
 * Knobs (module parameters, also writable under /sys/module/leakyfs/parameters):
 *   leak_count   objects of leak_size bytes leaked by leakyfs_fs_alloc() at every mount
 *   leak_size    their size in bytes
 *   fail_mount   make mount fail after leaking one object on its error path
 *                (leakyfs_fill_super_error())
 *   hold_ms      every open of the file "hold" takes an extra reference to the file and
 *                drops it from the module's own delayed work (leakyfs_put_work) hold_ms
 *                later: the file, and so the mount, stay busy that long after close
 *   table_size   the first mount after the module's load allocates a table of table_size
 *                bytes (leakyfs_table_alloc()) that later mounts reuse and the module frees
 *                at unload: a one-time allocation, not a leak (0: none)
 */
#include <linux/fs.h>
#include <linux/fs_context.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/slab.h>
#include <linux/version.h>
#include <linux/workqueue.h>

#define LEAKYFS_MAGIC 0x4c45414b

static unsigned int leak_count;
module_param(leak_count, uint, 0644);
MODULE_PARM_DESC(leak_count, "objects leaked by leakyfs_fs_alloc() at each mount");

static unsigned int leak_size = 192;
module_param(leak_size, uint, 0644);
MODULE_PARM_DESC(leak_size, "size of each leaked object");

static bool fail_mount;
module_param(fail_mount, bool, 0644);
MODULE_PARM_DESC(fail_mount, "fail mounts, leaking one object on the error path");

static unsigned int hold_ms;
module_param(hold_ms, uint, 0644);
MODULE_PARM_DESC(hold_ms, "keep each opened 'hold' file for this long after close");

static unsigned int table_size;
module_param(table_size, uint, 0644);
MODULE_PARM_DESC(table_size, "bytes of the table the first mount allocates and keeps");

/*
 * Where leaked pointers go, so the compiler cannot drop the allocations: inverted, so that
 * nothing holds a leak's address (kmemleak, and tracer's reachability scan, would take a
 * pointer kept in a global as a reference, and the leak would not be one).
 */
static unsigned long leakyfs_sink;

/* The table made at first use, like xfs's UUID table: kept for later mounts. */
static void *leakyfs_table;
static DEFINE_MUTEX(leakyfs_table_lock);

static noinline void leakyfs_table_alloc(void)
{
	mutex_lock(&leakyfs_table_lock);
	if (table_size && !leakyfs_table)
		leakyfs_table = kzalloc(table_size, GFP_KERNEL);
	mutex_unlock(&leakyfs_table_lock);
}

static noinline void leakyfs_fs_alloc(void)
{
	unsigned int i;

	for (i = 0; i < leak_count; i++)
		WRITE_ONCE(leakyfs_sink, ~(unsigned long)kmalloc(leak_size, GFP_KERNEL));
}

static noinline int leakyfs_fill_super_error(void)
{
	WRITE_ONCE(leakyfs_sink, ~(unsigned long)kmalloc(leak_size, GFP_KERNEL));
	return -EIO;
}

struct leakyfs_hold {
	struct file *file;
	struct delayed_work work;
};

static void leakyfs_put_work(struct work_struct *work)
{
	struct leakyfs_hold *h = container_of(to_delayed_work(work), struct leakyfs_hold, work);

	/* From a kworker, this goes through delayed_fput. */
	fput(h->file);
	kfree(h);
}

static int leakyfs_hold_open(struct inode *inode, struct file *file)
{
	struct leakyfs_hold *h;

	if (!hold_ms)
		return 0;
	h = kmalloc(sizeof(*h), GFP_KERNEL);
	if (!h)
		return -ENOMEM;
	h->file = get_file(file);
	INIT_DELAYED_WORK(&h->work, leakyfs_put_work);
	schedule_delayed_work(&h->work, msecs_to_jiffies(hold_ms));
	return 0;
}

static const struct file_operations leakyfs_hold_fops = {
	.open = leakyfs_hold_open,
	.llseek = noop_llseek,
};

static int leakyfs_fill_super(struct super_block *sb, struct fs_context *fc)
{
	static const struct tree_descr files[] = {
		[2] = { "hold", &leakyfs_hold_fops, 0644 },
		{ "" },
	};
	int err;

	if (fail_mount)
		return leakyfs_fill_super_error();
	err = simple_fill_super(sb, LEAKYFS_MAGIC, files);
	if (err)
		return err;
	leakyfs_table_alloc();
	leakyfs_fs_alloc();
	return 0;
}

static int leakyfs_get_tree(struct fs_context *fc)
{
	return get_tree_nodev(fc, leakyfs_fill_super);
}

static const struct fs_context_operations leakyfs_context_ops = {
	.get_tree = leakyfs_get_tree,
};

static int leakyfs_init_fs_context(struct fs_context *fc)
{
	fc->ops = &leakyfs_context_ops;
	return 0;
}

static struct file_system_type leakyfs_type = {
	.owner = THIS_MODULE,
	.name = "leakyfs",
	.init_fs_context = leakyfs_init_fs_context,
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 19, 0)
	/* kill_litter_super is gone: simple_fill_super's dentries are persistent and
	 * kill_anon_super drops them. */
	.kill_sb = kill_anon_super,
#else
	.kill_sb = kill_litter_super,
#endif
};

static int __init leakyfs_init(void)
{
	return register_filesystem(&leakyfs_type);
}

static void __exit leakyfs_exit(void)
{
	unregister_filesystem(&leakyfs_type);
	kfree(leakyfs_table);
}

module_init(leakyfs_init);
module_exit(leakyfs_exit);
MODULE_DESCRIPTION("A filesystem that leaks on purpose, for testing tracer");
MODULE_LICENSE("GPL");
