//! The on-demand task scan (`iter/task`), run by userspace when a umount fails with EBUSY:
//! one `TaskScan` record per thread into the iterator's seq file, with its cwd and root
//! mounts and whether it still has its fd table, fs_struct and mm. Its kernel stack is read
//! for a thread inside `do_exit()` (where it waits: e.g. `exit_aio` ← `__mmput`) and for one
//! whose cwd or root is the scanned mount (the syscall it is in). Threads that neither exit
//! nor have a cwd/root are written too (the reader filters by mount): a scan of a few
//! hundred tasks is a few tens of KiB.

use core::ffi::c_void;

use aya_ebpf::helpers::generated::bpf_get_task_stack;
use tracer_fs::wire::{PF_EXITING, SCAN_MAX_CPUS, TASK_STACK_FRAMES, btf_off};

use crate::{
    config::percpu_layout,
    iter_out::{fill_task_header, seq_write},
    kernel::{for_steps, learn_cpu_offset, member, read, vfsmount_id},
    maps::{PCPU_OFF, SCAN_TARGETS, SCRATCH_REFS, SCRATCH_TASK},
};

#[unsafe(no_mangle)]
#[unsafe(link_section = "iter/task")]
pub fn task_scan(ctx: *mut c_void) -> i32 {
    // `struct bpf_iter__task { meta; task; }`: loaded straight from the context, so the
    // verifier knows `task` as a (nullable) `task_struct` pointer, as `bpf_get_task_stack`
    // requires. NULL marks the end of the walk.
    // SAFETY: slot 1 of an iterator context is the task pointer.
    let task_ptr = unsafe { *(ctx as *const *mut c_void).add(1) };
    if task_ptr.is_null() {
        mount_refs(ctx);
        return 0;
    }
    let task = task_ptr as u64;
    learn_cpu_offset(task);
    let Some(rec) = SCRATCH_TASK.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: per-CPU slot, ours for the duration of this program.
    let rec = unsafe { &mut *rec };
    fill_task_header(rec, task);
    rec.flags = member::<u32>(task, btf_off::TASK_FLAGS).unwrap_or(0);
    rec.state = member::<u32>(task, btf_off::TASK_STATE).unwrap_or(0);
    rec.exit_state = member::<u32>(task, btf_off::TASK_EXIT_STATE).unwrap_or(0);
    let files = member::<u64>(task, btf_off::TASK_FILES).unwrap_or(0);
    let fs = member::<u64>(task, btf_off::TASK_FS).unwrap_or(0);
    let mm = member::<u64>(task, btf_off::TASK_MM).unwrap_or(0);
    rec.has_files = (files != 0) as u8;
    rec.has_fs = (fs != 0) as u8;
    rec.has_mm = (mm != 0) as u8;
    rec._pad = 0;
    if fs != 0 {
        rec.pwd_mnt_id = vfsmount_id(member::<u64>(fs, btf_off::FS_PWD_MNT).unwrap_or(0));
        rec.root_mnt_id = vfsmount_id(member::<u64>(fs, btf_off::FS_ROOT_MNT).unwrap_or(0));
    } else {
        rec.pwd_mnt_id = -1;
        rec.root_mnt_id = -1;
    }
    rec.nr_frames = 0;
    // Stacks of the exiting (where they wait) and of the living that pin the scanned
    // mount (inside a syscall, a path lookup or an open holds references on it until it
    // returns): the only tasks a verdict names.
    let target = SCAN_TARGETS.get(0).copied().unwrap_or(-1);
    let pins_target = target >= 0 && (rec.pwd_mnt_id == target || rec.root_mnt_id == target);
    if (rec.flags & PF_EXITING != 0 || pins_target) && rec.exit_state == 0 {
        // SAFETY: `task_ptr` is the iterator's own (non-NULL) task; the helper bounds the
        // copy by the buffer's size.
        let n = unsafe {
            bpf_get_task_stack(
                task_ptr.cast(),
                rec.frames.as_mut_ptr().cast(),
                (TASK_STACK_FRAMES * 8) as u32,
                0,
            )
        };
        if n > 0 {
            rec.nr_frames = (n / 8) as u32;
        }
    }
    seq_write(ctx, rec);
    0
}

/// The walk of the mount tree (`next_mnt()`'s order) that finds the target mount, one
/// move per `bpf_loop` step: down to a first child, across to a next sibling, or up.
#[repr(C)]
struct MountWalk {
    root: u64,
    cur: u64,
    /// 0: visit `cur`; 1: `cur` and its subtree are done, climb.
    climbing: u64,
    target: i64,
    found: u64,
    steps: u64,
}

#[inline(always)]
fn mount_id(m: u64) -> i32 {
    member::<i32>(m, btf_off::MOUNT_MNT_ID).unwrap_or(-1)
}

#[inline(never)]
extern "C" fn walk_step(_i: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: `ctx` is the caller's `MountWalk` (bpf_loop passes it through).
    let w = unsafe { &mut *(ctx as *mut MountWalk) };
    w.steps += 1;
    let (Some(mounts_off), Some(child_off)) = (
        crate::config::btf(btf_off::MOUNT_MNT_MOUNTS),
        crate::config::btf(btf_off::MOUNT_MNT_CHILD),
    ) else {
        return 1;
    };
    if w.climbing == 0 {
        if i64::from(mount_id(w.cur)) == w.target {
            w.found = w.cur;
            return 1;
        }
        let head = w.cur.wrapping_add(mounts_off);
        let first = read::<u64>(head).unwrap_or(0);
        if first != 0 && first != head {
            w.cur = first.wrapping_sub(child_off);
        } else {
            w.climbing = 1;
        }
        return 0;
    }
    if w.cur == w.root {
        return 1;
    }
    let parent = member::<u64>(w.cur, btf_off::MOUNT_MNT_PARENT).unwrap_or(0);
    if parent == 0 || parent == w.cur {
        return 1;
    }
    let next = read::<u64>(w.cur.wrapping_add(child_off)).unwrap_or(0);
    // A mount taken off its parent's list meanwhile (umount_tree's list_del_init) links to
    // itself: climb, or the walk would visit it again forever.
    if next != 0 && next != parent.wrapping_add(mounts_off) && next != w.cur.wrapping_add(child_off)
    {
        w.cur = next.wrapping_sub(child_off);
        w.climbing = 0;
    } else {
        w.cur = parent;
    }
    0
}

/// The walk of the reader's namespace's flat mount list (`mnt_namespace.list` through
/// `mount.mnt_list`, kernels before 6.8), one mount per `bpf_loop` step: each mount once,
/// in the order of /proc/mounts. (Debian's 6.1 in the VM: the tree walk above does not
/// find the mount there.)
#[repr(C)]
struct ListWalk {
    head: u64,
    /// The list node of the mount visited last (`head` at the start).
    cur: u64,
    list_off: u64,
    target: i64,
    found: u64,
    steps: u64,
}

#[inline(never)]
extern "C" fn list_step(_i: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: `ctx` is the caller's `ListWalk`.
    let w = unsafe { &mut *(ctx as *mut ListWalk) };
    w.steps += 1;
    let next = read::<u64>(w.cur).unwrap_or(0);
    // The end, an unreadable node, or one taken off the list meanwhile (list_del_init).
    if next == 0 || next == w.head || next == w.cur {
        return 1;
    }
    w.cur = next;
    let m = next.wrapping_sub(w.list_off);
    if i64::from(mount_id(m)) == w.target {
        w.found = m;
        return 1;
    }
    0
}

/// Finds mount `target` among the reader's mounts: (the `struct mount`, or 0; steps taken;
/// the mount the walk was at when it stopped).
#[inline(always)]
fn find_mount(target: i32) -> (u64, u64, u64) {
    let task = crate::kernel::current_task();
    if let (Some(ns_off), Some(list_off)) = (
        crate::config::btf(btf_off::MNT_NS_LIST),
        crate::config::btf(btf_off::MOUNT_MNT_LIST),
    ) {
        let nsproxy = member::<u64>(task, btf_off::TASK_NSPROXY).unwrap_or(0);
        let ns = member::<u64>(nsproxy, btf_off::NSPROXY_MNT_NS).unwrap_or(0);
        if ns != 0 {
            let head = ns.wrapping_add(ns_off);
            let mut w = ListWalk {
                head,
                cur: head,
                list_off,
                target: i64::from(target),
                found: 0,
                steps: 0,
            };
            for_steps(MAX_WALK, list_step, &mut w);
            return (w.found, w.steps, w.cur.wrapping_sub(w.list_off));
        }
    }
    let Some(mnt_off) = crate::config::btf(btf_off::MOUNT_MNT) else {
        return (0, 0, 0);
    };
    // The reader's root: its `fs->root.mnt`, a `struct vfsmount` inside a `struct mount`.
    let fs = member::<u64>(task, btf_off::TASK_FS).unwrap_or(0);
    let root_vfs = member::<u64>(fs, btf_off::FS_ROOT_MNT).unwrap_or(0);
    if root_vfs == 0 {
        return (0, 0, 0);
    }
    let root = root_vfs.wrapping_sub(mnt_off);
    let mut w = MountWalk {
        root,
        cur: root,
        climbing: 0,
        target: i64::from(target),
        found: 0,
        steps: 0,
    };
    for_steps(MAX_WALK, walk_step, &mut w);
    (w.found, w.steps, w.cur)
}

/// Summing one mount's per-CPU counts, one CPU per `bpf_loop` step.
#[repr(C)]
struct Sum {
    pcp: u64,
    count: i64,
    cpus: u64,
}

#[inline(never)]
extern "C" fn sum_step(i: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: `ctx` is the caller's `Sum`.
    let s = unsafe { &mut *(ctx as *mut Sum) };
    let count_off = crate::config::btf(btf_off::MNT_PCP_COUNT).unwrap_or(0);
    let off = PCPU_OFF.get(i as u32).copied().unwrap_or(0);
    let base = s.pcp.wrapping_add(off);
    if off != 0
        && let Some(c) = read::<i32>(base.wrapping_add(count_off))
    {
        // 7.x: `mnt_gets` less `mnt_puts` (each CPU's may wrap; their sum does not).
        let puts = match crate::config::btf(btf_off::MNT_PCP_PUTS) {
            Some(p) => read::<i32>(base.wrapping_add(p)).unwrap_or(0),
            None => 0,
        };
        s.count += i64::from(c.wrapping_sub(puts));
        s.cpus += 1;
    }
    0
}

/// At the end of a scan: finds the target mount (set by userspace before the scan) in
/// the reader's mount tree and writes its reference count: its per-CPU counts summed over
/// the CPUs whose offset is known.
#[inline(always)]
fn mount_refs(ctx: *mut c_void) {
    let (_, _, nr_cpus) = percpu_layout();
    let Some(pcp_off) = crate::config::btf(btf_off::MOUNT_MNT_PCP) else {
        return;
    };
    if crate::config::btf(btf_off::MNT_PCP_COUNT).is_none() {
        return;
    }
    let target = SCAN_TARGETS.get(0).copied().unwrap_or(-1);
    if target < 0 {
        return;
    }
    // The end-of-walk call repeats on every later read of the iterator: the target is
    // used up here, so it is written once per scan.
    if let Some(t) = SCAN_TARGETS.get_ptr_mut(0) {
        // SAFETY: an i32 slot of an array map.
        unsafe { *t = -1 };
    }
    let (found, steps, at) = find_mount(target);
    // Not found: said with `cpus_possible` 0 and the steps walked in `cpus`.
    let mut sum = Sum {
        pcp: if found != 0 {
            read::<u64>(found.wrapping_add(pcp_off)).unwrap_or(0)
        } else {
            0
        },
        count: 0,
        cpus: 0,
    };
    if found != 0 && sum.pcp != 0 {
        for_steps(nr_cpus.min(SCAN_MAX_CPUS as u32), sum_step, &mut sum);
    }
    let Some(rec) = SCRATCH_REFS.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: per-CPU slot, ours for the duration of this program.
    let rec = unsafe { &mut *rec };
    fill_task_header(rec, 0);
    rec.mnt_id = target;
    rec.count = sum.count as i32;
    if found != 0 {
        rec.cpus = sum.cpus as u32;
        rec.cpus_possible = nr_cpus;
    } else {
        rec.cpus = steps as u32;
        rec.cpus_possible = 0;
        rec.count = mount_id(at);
    }
    seq_write(ctx, rec);
}

/// Mount-tree moves one walk may take.
const MAX_WALK: u32 = 1 << 14;
