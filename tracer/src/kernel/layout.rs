//! What the programs need to know about the running kernel, gathered at attach time:
//! classic-tracepoint field offsets from tracefs, structure member offsets from BTF.

use tracer_fs::wire::{Config, btf_off as b, tp_field as f};

use crate::{kernel::btf::KernelBtf, kernel::tracefs};

/// (index into `Config::tp`, category, tracepoint, field)
pub const TP_FIELDS: &[(usize, &str, &str, &str)] = &[
    (f::SYS_RET, "syscalls", "sys_exit_umount", "ret"),
    (f::MOUNT_DEV_NAME, "syscalls", "sys_enter_mount", "dev_name"),
    (f::MOUNT_DIR_NAME, "syscalls", "sys_enter_mount", "dir_name"),
    (f::MOUNT_TYPE, "syscalls", "sys_enter_mount", "type"),
    (f::MOUNT_FLAGS, "syscalls", "sys_enter_mount", "flags"),
    (f::UMOUNT_NAME, "syscalls", "sys_enter_umount", "name"),
    (f::UMOUNT_FLAGS, "syscalls", "sys_enter_umount", "flags"),
    (
        f::MOVE_MOUNT_FROM_PATH,
        "syscalls",
        "sys_enter_move_mount",
        "from_pathname",
    ),
    (
        f::MOVE_MOUNT_TO_PATH,
        "syscalls",
        "sys_enter_move_mount",
        "to_pathname",
    ),
    (f::FSMOUNT_FLAGS, "syscalls", "sys_enter_fsmount", "flags"),
    (
        f::OPENAT_FILENAME,
        "syscalls",
        "sys_enter_openat",
        "filename",
    ),
    (
        f::OPENAT2_FILENAME,
        "syscalls",
        "sys_enter_openat2",
        "filename",
    ),
    (f::OPEN_FILENAME, "syscalls", "sys_enter_open", "filename"),
    (f::CREAT_PATHNAME, "syscalls", "sys_enter_creat", "pathname"),
    (f::CLOSE_FD, "syscalls", "sys_enter_close", "fd"),
    (
        f::URING_REGISTER_FD,
        "syscalls",
        "sys_enter_io_uring_register",
        "fd",
    ),
    (
        f::URING_REGISTER_OPCODE,
        "syscalls",
        "sys_enter_io_uring_register",
        "opcode",
    ),
    (
        f::URING_REGISTER_ARG,
        "syscalls",
        "sys_enter_io_uring_register",
        "arg",
    ),
    (
        f::URING_REGISTER_NR_ARGS,
        "syscalls",
        "sys_enter_io_uring_register",
        "nr_args",
    ),
    (f::EXIT_PID, "sched", "sched_process_exit", "pid"),
    (
        f::EXIT_GROUP_DEAD,
        "sched",
        "sched_process_exit",
        "group_dead",
    ),
    (f::SIG_SIG, "signal", "signal_generate", "sig"),
    (f::SIG_PID, "signal", "signal_generate", "pid"),
    (f::SIG_GROUP, "signal", "signal_generate", "group"),
    (f::SIG_RESULT, "signal", "signal_generate", "result"),
    (f::SIG_COMM, "signal", "signal_generate", "comm"),
    (f::URING_CREATE_FD, "io_uring", "io_uring_create", "fd"),
    (f::URING_CREATE_CTX, "io_uring", "io_uring_create", "ctx"),
    (
        f::URING_CREATE_SQ,
        "io_uring",
        "io_uring_create",
        "sq_entries",
    ),
    (
        f::URING_CREATE_CQ,
        "io_uring",
        "io_uring_create",
        "cq_entries",
    ),
    (
        f::URING_CREATE_FLAGS,
        "io_uring",
        "io_uring_create",
        "flags",
    ),
    (f::URING_REG_CTX, "io_uring", "io_uring_register", "ctx"),
    (
        f::URING_REG_OPCODE,
        "io_uring",
        "io_uring_register",
        "opcode",
    ),
    (
        f::URING_REG_NR_FILES,
        "io_uring",
        "io_uring_register",
        "nr_files",
    ),
    (f::URING_REG_RET, "io_uring", "io_uring_register", "ret"),
    (
        f::URING_FILE_GET_CTX,
        "io_uring",
        "io_uring_file_get",
        "ctx",
    ),
    (
        f::URING_FILE_GET_REQ,
        "io_uring",
        "io_uring_file_get",
        "req",
    ),
    (f::URING_FILE_GET_FD, "io_uring", "io_uring_file_get", "fd"),
    (
        f::URING_COMPLETE_CTX,
        "io_uring",
        "io_uring_complete",
        "ctx",
    ),
    (
        f::URING_COMPLETE_REQ,
        "io_uring",
        "io_uring_complete",
        "req",
    ),
    (
        f::URING_COMPLETE_RES,
        "io_uring",
        "io_uring_complete",
        "res",
    ),
    (
        f::URING_COMPLETE_CFLAGS,
        "io_uring",
        "io_uring_complete",
        "cflags",
    ),
    (
        f::URING_FAILED_CTX,
        "io_uring",
        "io_uring_req_failed",
        "ctx",
    ),
    (
        f::URING_FAILED_REQ,
        "io_uring",
        "io_uring_req_failed",
        "req",
    ),
    (f::TIMER_START_TIMER, "timer", "timer_start", "timer"),
    (f::TIMER_START_FUNCTION, "timer", "timer_start", "function"),
    (f::TIMER_START_EXPIRES, "timer", "timer_start", "expires"),
    (f::TIMER_START_NOW, "timer", "timer_start", "now"),
    (f::WQ_WORK, "workqueue", "workqueue_queue_work", "work"),
    (
        f::WQ_FUNCTION,
        "workqueue",
        "workqueue_queue_work",
        "function",
    ),
    (f::WQ_CPU, "workqueue", "workqueue_queue_work", "cpu"),
    (f::KMEM_CALL_SITE, "kmem", "kmem_cache_free", "call_site"),
    (f::KMEM_PTR, "kmem", "kmem_cache_free", "ptr"),
    (f::KMEM_NAME, "kmem", "kmem_cache_free", "name"),
    (f::CONSOLE_MSG, "printk", "console", "msg"),
    (
        f::IO_SUBMIT_CTX,
        "syscalls",
        "sys_enter_io_submit",
        "ctx_id",
    ),
    (f::IO_SUBMIT_NR, "syscalls", "sys_enter_io_submit", "nr"),
    (
        f::IO_SUBMIT_IOCBPP,
        "syscalls",
        "sys_enter_io_submit",
        "iocbpp",
    ),
    (f::LOCK_FL, "filelock", "flock_lock_inode", "fl"),
    (f::LOCK_FLAGS, "filelock", "flock_lock_inode", "flags"),
    (f::LOCK_RET, "filelock", "flock_lock_inode", "ret"),
    (f::LOCK_SYS_FD, "syscalls", "sys_enter_flock", "fd"),
    (f::LOCK_SYS_CMD, "syscalls", "sys_enter_flock", "cmd"),
];

/// Fields whose name changed between kernels: (index, category, tracepoint, older name),
/// looked up when the name in `TP_FIELDS` is missing (the `filelock` events named their
/// fields `fl_flags`, ... before 6.9).
pub const TP_FIELD_ALTERNATIVES: &[(usize, &str, &str, &str)] =
    &[(f::LOCK_FLAGS, "filelock", "flock_lock_inode", "fl_flags")];

/// Tracepoints whose fields the programs read through an index shared with another
/// tracepoint: each must have the field at the same offset, or the shared index is wrong.
pub const SHARED_FIELDS: &[(usize, &str, &str, &str)] = &[
    (f::SYS_RET, "syscalls", "sys_exit_mount", "ret"),
    (f::SYS_RET, "syscalls", "sys_exit_move_mount", "ret"),
    (f::SYS_RET, "syscalls", "sys_exit_fsmount", "ret"),
    (f::SYS_RET, "syscalls", "sys_exit_openat", "ret"),
    (f::SYS_RET, "syscalls", "sys_exit_openat2", "ret"),
    (f::SYS_RET, "syscalls", "sys_exit_open", "ret"),
    (f::SYS_RET, "syscalls", "sys_exit_creat", "ret"),
    (f::SYS_RET, "syscalls", "sys_exit_io_uring_register", "ret"),
    (f::SYS_RET, "syscalls", "sys_exit_io_submit", "ret"),
    (f::SYS_RET, "syscalls", "sys_exit_io_getevents", "ret"),
    (f::SYS_RET, "syscalls", "sys_exit_io_pgetevents", "ret"),
    (f::SYS_RET, "syscalls", "sys_exit_io_destroy", "ret"),
    (f::SYS_RET, "syscalls", "sys_exit_io_setup", "ret"),
    (f::WQ_WORK, "workqueue", "workqueue_execute_start", "work"),
    (
        f::WQ_FUNCTION,
        "workqueue",
        "workqueue_execute_start",
        "function",
    ),
    (f::WQ_WORK, "workqueue", "workqueue_execute_end", "work"),
    (
        f::WQ_FUNCTION,
        "workqueue",
        "workqueue_execute_end",
        "function",
    ),
    (f::KMEM_PTR, "kmem", "kmem_cache_alloc", "ptr"),
    (f::KMEM_NAME, "kmem", "kmem_cache_alloc", "name"),
    (f::LOCK_FL, "filelock", "posix_lock_inode", "fl"),
    (f::LOCK_FLAGS, "filelock", "posix_lock_inode", "flags"),
    (f::LOCK_RET, "filelock", "posix_lock_inode", "ret"),
    (f::LOCK_SYS_FD, "syscalls", "sys_enter_fcntl", "fd"),
    (f::LOCK_SYS_CMD, "syscalls", "sys_enter_fcntl", "cmd"),
    (f::SYS_RET, "syscalls", "sys_exit_flock", "ret"),
    (f::SYS_RET, "syscalls", "sys_exit_fcntl", "ret"),
];

/// (index into `Config::btf`, struct, member path)
pub const BTF_MEMBERS: &[(usize, &str, &[&str])] = &[
    (b::TASK_FILES, "task_struct", &["files"]),
    (b::FILES_FDT, "files_struct", &["fdt"]),
    (b::FDT_MAX_FDS, "fdtable", &["max_fds"]),
    (b::FDT_FD, "fdtable", &["fd"]),
    (b::FILE_PATH_MNT, "file", &["f_path", "mnt"]),
    (b::FILE_PATH_DENTRY, "file", &["f_path", "dentry"]),
    (b::FILE_INODE, "file", &["f_inode"]),
    (b::INODE_INO, "inode", &["i_ino"]),
    (b::INODE_SB, "inode", &["i_sb"]),
    (b::SB_DEV, "super_block", &["s_dev"]),
    (b::DENTRY_NAME, "dentry", &["d_name", "name"]),
    (b::KMEM_CACHE_NAME, "kmem_cache", &["name"]),
    (b::KMEM_CACHE_OBJECT_SIZE, "kmem_cache", &["object_size"]),
    (b::WORK_FUNC, "work_struct", &["func"]),
    (b::TIMER_FUNCTION, "timer_list", &["function"]),
    (b::TASK_EXIT_CODE, "task_struct", &["exit_code"]),
    (b::FILE_PRIVATE_DATA, "file", &["private_data"]),
    (b::TASK_PID, "task_struct", &["pid"]),
    (b::TASK_TGID, "task_struct", &["tgid"]),
    (b::TASK_COMM, "task_struct", &["comm"]),
    (b::CALLBACK_FUNC, "callback_head", &["func"]),
    (b::MOUNT_MNT_ID, "mount", &["mnt_id"]),
    (b::PATH_MNT, "path", &["mnt"]),
    (b::TASK_FS, "task_struct", &["fs"]),
    (b::FS_PWD_MNT, "fs_struct", &["pwd", "mnt"]),
    (b::FS_ROOT_MNT, "fs_struct", &["root", "mnt"]),
    (b::TASK_FLAGS, "task_struct", &["flags"]),
    (b::TASK_EXIT_STATE, "task_struct", &["exit_state"]),
    (b::TASK_MM, "task_struct", &["mm"]),
    (b::TASK_STATE, "task_struct", &["__state"]),
    (b::KMEM_CACHE_REFCOUNT, "kmem_cache", &["refcount"]),
    (b::TASK_SE_CFS_RQ, "task_struct", &["se", "cfs_rq"]),
    (b::CFS_RQ_RQ, "cfs_rq", &["rq"]),
    (b::RQ_CPU, "rq", &["cpu"]),
    (b::MOUNT_MNT_PCP, "mount", &["mnt_pcp"]),
    (b::MOUNT_MNT_MOUNTS, "mount", &["mnt_mounts"]),
    (b::MOUNT_MNT_CHILD, "mount", &["mnt_child"]),
    (b::MOUNT_MNT_PARENT, "mount", &["mnt_parent"]),
    (b::MOUNT_MNT, "mount", &["mnt"]),
    (b::VMA_VM_FILE, "vm_area_struct", &["vm_file"]),
    (b::VMA_VM_START, "vm_area_struct", &["vm_start"]),
    (b::VMA_VM_END, "vm_area_struct", &["vm_end"]),
    (b::IOCB_AIO_FILDES, "iocb", &["aio_fildes"]),
    (b::INODE_FLCTX, "inode", &["i_flctx"]),
    (b::INODE_NLINK, "inode", &["i_nlink"]),
    (b::INODE_SIZE, "inode", &["i_size"]),
    (b::INODE_BLOCKS, "inode", &["i_blocks"]),
    (b::FLCTX_FLOCK, "file_lock_context", &["flc_flock"]),
    (b::FLCTX_POSIX, "file_lock_context", &["flc_posix"]),
];

/// The lock members the lock programs read: `struct file_lock_core` inside `file_lock`
/// (6.9+), else the `fl_*` members of older kernels' `struct file_lock`.
const LOCK_MEMBERS: &[(usize, &str, &str)] = &[
    (b::LOCK_LIST, "flc_list", "fl_list"),
    (b::LOCK_FILE, "flc_file", "fl_file"),
    (b::LOCK_OWNER, "flc_owner", "fl_owner"),
    (b::LOCK_PID, "flc_pid", "fl_pid"),
    (b::LOCK_TYPE, "flc_type", "fl_type"),
];

/// The `struct pt_regs` members holding a syscall's first two arguments, where they are
/// plain members that survive to the syscall's exit. Elsewhere the open programs keep the
/// path pointer from the syscall's entry in a map instead (slower: one hash update and one
/// delete per open).
#[cfg(target_arch = "x86_64")]
const SYSCALL_ARG_REGS: Option<[&str; 2]> = Some(["di", "si"]);
#[cfg(not(target_arch = "x86_64"))]
const SYSCALL_ARG_REGS: Option<[&str; 2]> = None;

/// What could not be found, by the name of what needs it.
#[derive(Debug, Default, Clone)]
pub struct Gaps {
    pub tp_fields: Vec<String>,
    pub btf_members: Vec<String>,
}

/// Offsets the userspace engine needs (not the programs): where a ring's work items sit
/// inside `struct io_ring_ctx`, to map a work pointer back to its ring.
#[derive(Debug, Default, Clone, Copy)]
pub struct UringLayout {
    pub exit_work: Option<u64>,
    pub fallback_work: Option<u64>,
}

pub fn fill_config(cfg: &mut Config, btf: &KernelBtf) -> Gaps {
    let mut gaps = Gaps::default();
    let mut formats = std::collections::HashMap::new();
    let mut format = |cat: &str, name: &str| {
        formats
            .entry((cat.to_string(), name.to_string()))
            .or_insert_with(|| tracefs::format(cat, name).ok())
            .clone()
    };
    for &(idx, cat, tp, field) in TP_FIELDS {
        match format(cat, tp).and_then(|f| f.offset(field)) {
            Some(off) => cfg.tp[idx] = off,
            None => gaps.tp_fields.push(format!("{cat}:{tp}.{field}")),
        }
    }
    for &(idx, cat, tp, field) in TP_FIELD_ALTERNATIVES {
        if cfg.tp[idx] != tracer_fs::wire::MISSING_U16 {
            continue;
        }
        if let Some(off) = format(cat, tp).and_then(|f| f.offset(field)) {
            cfg.tp[idx] = off;
            if let Some(&(_, _, _, name)) = TP_FIELDS.iter().find(|t| t.0 == idx) {
                let gap = format!("{cat}:{tp}.{name}");
                gaps.tp_fields.retain(|g| *g != gap);
            }
        }
    }
    for &(idx, cat, tp, field) in SHARED_FIELDS {
        let off = format(cat, tp).and_then(|f| f.offset(field));
        if off.is_some() && off != Some(cfg.tp[idx]) {
            gaps.tp_fields.push(format!(
                "{cat}:{tp}.{field} (at another offset than its siblings)"
            ));
        }
    }
    for &(idx, st, path) in BTF_MEMBERS {
        match btf.offset_of(st, path) {
            Ok(off) => cfg.btf[idx] = off,
            Err(e) => gaps
                .btf_members
                .push(format!("{st}.{}: {e}", path.join("."))),
        }
    }
    for &(idx, core, old) in LOCK_MEMBERS {
        match btf
            .offset_of("file_lock", &["c", core])
            .or_else(|_| btf.offset_of("file_lock", &[old]))
        {
            Ok(off) => cfg.btf[idx] = off,
            Err(e) => gaps
                .btf_members
                .push(format!("file_lock.c.{core}/{old}: {e}")),
        }
    }
    if let Some(regs) = SYSCALL_ARG_REGS {
        for (idx, reg) in [b::PT_REGS_SYSCALL_ARG0, b::PT_REGS_SYSCALL_ARG1]
            .into_iter()
            .zip(regs)
        {
            match btf.offset_of("pt_regs", &[reg]) {
                Ok(off) => cfg.btf[idx] = off,
                Err(e) => gaps.btf_members.push(format!("pt_regs.{reg}: {e}")),
            }
        }
    }
    // A mount's per-CPU reference counts: `mnt_count` up to 6.x; 7.x counts gets and puts
    // apart (the count is their difference).
    match btf.offset_of("mnt_pcp", &["mnt_count"]) {
        Ok(off) => cfg.btf[b::MNT_PCP_COUNT] = off,
        Err(e) => match (
            btf.offset_of("mnt_pcp", &["mnt_gets"]),
            btf.offset_of("mnt_pcp", &["mnt_puts"]),
        ) {
            (Ok(gets), Ok(puts)) => {
                cfg.btf[b::MNT_PCP_COUNT] = gets;
                cfg.btf[b::MNT_PCP_PUTS] = puts;
            }
            _ => gaps
                .btf_members
                .push(format!("mnt_pcp.mnt_count (or mnt_gets/mnt_puts): {e}")),
        },
    }
    // The namespace's flat mount list, where the kernel still has one (before 6.8): the
    // task scan finds a mount by it. Its absence is no gap (the scan walks the mount tree).
    if let (Ok(list), Ok(mnt_list)) = (
        btf.offset_of("mnt_namespace", &["list"]),
        btf.offset_of("mount", &["mnt_list"]),
    ) {
        cfg.btf[b::MNT_NS_LIST] = list;
        cfg.btf[b::MOUNT_MNT_LIST] = mnt_list;
    }
    // The mount a mount call made: the namespace's newest (its flat list's tail before
    // 6.8, its rbtree's last node since). Without them the stream reads it from mountinfo.
    let newest = [
        (b::TASK_NSPROXY, "task_struct", "nsproxy"),
        (b::NSPROXY_MNT_NS, "nsproxy", "mnt_ns"),
        (b::MOUNT_MNT_MOUNTPOINT, "mount", "mnt_mountpoint"),
        (b::VFSMOUNT_SB, "vfsmount", "mnt_sb"),
    ];
    for (idx, st, m) in newest {
        match btf.offset_of(st, &[m]) {
            Ok(off) => cfg.btf[idx] = off,
            Err(e) => gaps.btf_members.push(format!("{st}.{m}: {e}")),
        }
    }
    if cfg.btf[b::MNT_NS_LIST] == tracer_fs::wire::MISSING_U32 {
        for (idx, st, m) in [
            (b::MNT_NS_MOUNTS, "mnt_namespace", "mounts"),
            (b::MOUNT_MNT_NODE, "mount", "mnt_node"),
        ] {
            match btf.offset_of(st, &[m]) {
                Ok(off) => cfg.btf[idx] = off,
                Err(e) => gaps.btf_members.push(format!("{st}.{m}: {e}")),
            }
        }
        // 6.12+ keeps the last node; before, the rbtree is walked down its right side.
        if let Ok(off) = btf.offset_of("mnt_namespace", &["mnt_last_node"]) {
            cfg.btf[b::MNT_NS_LAST_NODE] = off;
        }
    }
    match (
        btf.offset_of("mount", &["mnt_id"]),
        btf.offset_of("mount", &["mnt"]),
    ) {
        (Ok(id), Ok(mnt)) => {
            cfg.btf[b::VFSMOUNT_TO_MNT_ID] = (id as i64 - mnt as i64) as i32 as u32
        }
        (Err(e), _) | (_, Err(e)) => gaps.btf_members.push(format!("mount.mnt_id/mnt: {e}")),
    }
    // The file's reference counter: `f_count` (the count itself) up to 6.12, `f_ref`
    // (`file_ref_t`, which reads 0 for one reference) after.
    match (
        btf.offset_of("file", &["f_count"]),
        btf.offset_of("file", &["f_ref"]),
    ) {
        (Ok(off), _) => {
            cfg.btf[b::FILE_COUNT] = off;
            cfg.file_one_ref = 1;
        }
        (_, Ok(off)) => {
            cfg.btf[b::FILE_COUNT] = off;
            cfg.file_one_ref = 0;
        }
        (Err(e), _) => gaps.btf_members.push(format!("file.f_count/f_ref: {e}")),
    }
    // The callback_head `fput()` hands to `task_work_add()`: its own member since 6.7,
    // the `f_rcuhead` of a union before.
    match btf
        .offset_of("file", &["f_task_work"])
        .or_else(|_| btf.offset_of("file", &["f_rcuhead"]))
    {
        Ok(off) => cfg.btf[b::FILE_TASK_WORK] = off,
        Err(e) => gaps
            .btf_members
            .push(format!("file.f_task_work/f_rcuhead: {e}")),
    }
    // The per-CPU variables the task scan learns per-CPU offsets from.
    match (
        btf.percpu_var_offset("runqueues"),
        btf.percpu_var_offset("this_cpu_off"),
    ) {
        (Ok(rq), Ok(off)) => {
            cfg.runqueues_pcpu = rq.into();
            cfg.this_cpu_off_pcpu = off.into();
        }
        (Err(e), _) | (_, Err(e)) => gaps.btf_members.push(format!("per-CPU variables: {e}")),
    }
    cfg.nr_cpus = std::fs::read_to_string("/sys/devices/system/cpu/possible")
        .ok()
        .and_then(|s| possible_cpus(&s))
        .unwrap_or(0);
    match (
        btf.offset_of("delayed_work", &["timer"]),
        btf.offset_of("delayed_work", &["work"]),
    ) {
        (Ok(t), Ok(w)) => cfg.btf[b::DWORK_TIMER] = t - w,
        (Err(e), _) | (_, Err(e)) => gaps
            .btf_members
            .push(format!("delayed_work.timer/work: {e}")),
    }
    gaps
}

/// How many CPUs `/sys/devices/system/cpu/possible` ("0-3", "0,2-5") names: its highest
/// number plus one.
fn possible_cpus(list: &str) -> Option<u32> {
    list.trim()
        .split(',')
        .filter_map(|r| r.rsplit('-').next()?.parse::<u32>().ok())
        .max()
        .map(|m| m + 1)
}

pub fn uring_layout(btf: &KernelBtf) -> UringLayout {
    UringLayout {
        exit_work: btf
            .offset_of("io_ring_ctx", &["exit_work"])
            .ok()
            .map(u64::from),
        fallback_work: btf
            .offset_of("io_ring_ctx", &["fallback_work"])
            .ok()
            .map(u64::from),
    }
}

#[cfg(test)]
mod tests {
    use super::possible_cpus;

    #[test]
    fn possible_cpu_lists() {
        assert_eq!(possible_cpus("0-1\n"), Some(2));
        assert_eq!(possible_cpus("0"), Some(1));
        assert_eq!(possible_cpus("0,2-5,7"), Some(8));
        assert_eq!(possible_cpus(""), None);
    }
}
