//! What the programs need to know about the running kernel, gathered at attach time:
//! classic-tracepoint field offsets from tracefs, structure member offsets from BTF.

use tracer_fs::wire::{Config, btf_off as b, tp_field as f};

use crate::{kernel::btf::KernelBtf, kernel::tracefs};

/// Fields whose name changed between kernels: (index, category, tracepoint, older name),
/// looked up when the name in `tp_field::SOURCES` is missing (the `filelock` events named their
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

/// The lock members the lock programs read: `struct file_lock_core` inside `file_lock`
/// (6.9+), else the `fl_*` members of older kernels' `struct file_lock`.
const LOCK_MEMBERS: &[(usize, &str, &str)] = &[
    (b::LOCK_LIST, "flc_list", "fl_list"),
    (b::LOCK_FILE, "flc_file", "fl_file"),
    (b::LOCK_OWNER, "flc_owner", "fl_owner"),
    (b::LOCK_PID, "flc_pid", "fl_pid"),
    (b::LOCK_TYPE, "flc_type", "fl_type"),
    (b::LOCK_FLAGS, "flc_flags", "fl_flags"),
];

/// The `struct pt_regs` members holding a syscall's first two arguments, where they are
/// plain members that survive to the syscall's exit. Elsewhere the open programs keep the
/// path pointer from the syscall's entry in a map instead (slower: one hash update and one
/// delete per open).
#[cfg(target_arch = "x86_64")]
const SYSCALL_ARG_REGS: Option<[&str; 6]> = Some(["di", "si", "dx", "r10", "r8", "r9"]);
#[cfg(not(target_arch = "x86_64"))]
const SYSCALL_ARG_REGS: Option<[&str; 6]> = None;

/// Where the syscall number sits in `struct pt_regs`, and the member of `struct task_struct`
/// whose `TS_COMPAT` bit marks a 32-bit syscall: what the `raw_syscalls` dispatch needs
/// besides the arguments (x86_64 only; elsewhere the classic syscall tracepoints serve).
#[cfg(target_arch = "x86_64")]
const SYSCALL_NR_REG: Option<&str> = Some("orig_ax");
#[cfg(not(target_arch = "x86_64"))]
const SYSCALL_NR_REG: Option<&str> = None;

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
    for &(idx, cat, tp, field) in f::SOURCES {
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
            if let Some(&(_, _, _, name)) = f::SOURCES.iter().find(|t| t.0 == idx) {
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
    for &(idx, st, path) in b::SOURCES {
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
        let idx = [
            b::PT_REGS_SYSCALL_ARG0,
            b::PT_REGS_SYSCALL_ARG1,
            b::PT_REGS_SYSCALL_ARG2,
            b::PT_REGS_SYSCALL_ARG2 + 1,
            b::PT_REGS_SYSCALL_ARG2 + 2,
            b::PT_REGS_SYSCALL_ARG2 + 3,
        ];
        for (idx, reg) in idx.into_iter().zip(regs) {
            match btf.offset_of("pt_regs", &[reg]) {
                Ok(off) => cfg.btf[idx] = off,
                Err(e) => gaps.btf_members.push(format!("pt_regs.{reg}: {e}")),
            }
        }
    }
    if let Some(reg) = SYSCALL_NR_REG {
        match btf.offset_of("pt_regs", &[reg]) {
            Ok(off) => cfg.btf[b::PT_REGS_SYSCALL_NR] = off,
            Err(e) => gaps.btf_members.push(format!("pt_regs.{reg}: {e}")),
        }
        match btf.offset_of("task_struct", &["thread_info", "status"]) {
            Ok(off) => cfg.btf[b::THREAD_INFO_STATUS] = off,
            Err(e) => gaps
                .btf_members
                .push(format!("task_struct.thread_info.status: {e}")),
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
