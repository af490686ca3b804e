//! The `raw_syscalls` route of the syscall handlers: two raw tracepoint programs
//! (`raw_sys_enter`, `raw_sys_exit` in `tracer-ebpf/src/sys.rs`) tail-call the handler a
//! table holds at the syscall's number. A raw tracepoint detaches without waiting, where
//! each classic syscall tracepoint's perf event waits for RCU grace periods, one after
//! another under the kernel's `event_mutex`.

use aya::{
    Ebpf,
    maps::ProgramArray,
    programs::{Program, RawTracePoint},
};
use tracer_fs::wire::{Config, MISSING_U32, btf_off};

use super::hooks::Point;
use crate::kernel::btf::KernelBtf;

/// The dispatch programs and the raw tracepoints they attach to.
const DISPATCH: [(&str, &str); 2] = [("raw_sys_enter", "sys_enter"), ("raw_sys_exit", "sys_exit")];

/// The number of the syscall a classic tracepoint's name (`sys_enter_umount`) stands for.
/// The tracepoints take their names from `SYSCALL_DEFINE`, which is not always the table's
/// (`umount` is umount2).
#[cfg(target_arch = "x86_64")]
pub fn number(name: &str) -> Option<u32> {
    let nr = match name {
        "mount" => libc::SYS_mount,
        "umount" => libc::SYS_umount2,
        "move_mount" => libc::SYS_move_mount,
        "fsmount" => libc::SYS_fsmount,
        "open" => libc::SYS_open,
        "openat" => libc::SYS_openat,
        "openat2" => libc::SYS_openat2,
        "creat" => libc::SYS_creat,
        "close" => libc::SYS_close,
        "io_uring_register" => libc::SYS_io_uring_register,
        "io_submit" => libc::SYS_io_submit,
        "io_getevents" => libc::SYS_io_getevents,
        // arch/x86/entry/syscalls/syscall_64.tbl; the libc crate has no constant for it.
        "io_pgetevents" => 333,
        "io_destroy" => libc::SYS_io_destroy,
        "io_setup" => libc::SYS_io_setup,
        "flock" => libc::SYS_flock,
        "fcntl" => libc::SYS_fcntl,
        "unlink" => libc::SYS_unlink,
        "unlinkat" => libc::SYS_unlinkat,
        _ => return None,
    };
    u32::try_from(nr).ok()
}

#[cfg(not(target_arch = "x86_64"))]
pub fn number(_name: &str) -> Option<u32> {
    None
}

/// The table and the syscall name of a point's target (`sys_exit_openat`).
fn slot(target: &str) -> Option<(&'static str, &str)> {
    if let Some(name) = target.strip_prefix("sys_enter_") {
        Some(("SYS_ENTER_PROGS", name))
    } else {
        target
            .strip_prefix("sys_exit_")
            .map(|name| ("SYS_EXIT_PROGS", name))
    }
}

/// Whether the dispatch can serve on this kernel. Kernels whose syscall tracepoints may
/// fault (`struct tracepoint_ext` in BTF, 6.14 on) may run their programs preemptibly
/// (7.2 does), which matters where kernel code is preempted (see `kernel::preempt`): a
/// preempted handler would make the one dispatch program skip every other syscall on its
/// CPU. There, or where it cannot be told, the classic tracepoints serve.
pub fn route_allowed(kbtf: &crate::kernel::btf::KernelBtf) -> Result<(), String> {
    if kbtf.offset_of("tracepoint_ext", &["regfunc"]).is_err() {
        return Ok(());
    }
    match crate::kernel::preempt::kernel_code_preemptible() {
        Some((false, _)) => Ok(()),
        Some((true, how)) => Err(format!(
            "this kernel preempts kernel code ({how}) and its syscall tracepoints may fault, \
             so it may run raw tracepoint programs preemptibly: one preempted mid-run is \
             skipped for every other task on its CPU (the syscall dispatch for every syscall)"
        )),
        None => Err(
            "syscall tracepoints may fault here and whether kernel code is preempted is not \
             known (no readable /sys/kernel/debug/sched/preempt, no preempt=, no /proc/config.gz \
             or /boot/config), so raw tracepoint programs may run preemptibly: one preempted \
             mid-run is skipped for every other task on its CPU"
                .into(),
        ),
    }
}

/// Raw twins of classic tracepoints that a skipped run would cost an event the engine
/// needs (a task's exit, a SIGKILL, a delayed work armed, a test marker). A raw program's
/// recursion guard is its own per-CPU mark, which a preempted run keeps: 7.2 skipped a
/// `sched_process_exit` so. Where [`route_allowed`] says no, their classic tracepoints
/// serve, as the syscall hooks' do.
pub const PREEMPT_SENSITIVE: &[&str] = &[
    "raw_timer_start",
    "raw_sched_process_exit",
    "raw_signal_generate",
    "raw_console",
    "raw_io_uring_create",
    "raw_io_uring_register",
    "raw_io_uring_file_get",
    "raw_io_uring_complete",
    "raw_io_uring_complete_args",
    "raw_flock_lock_inode",
    "raw_posix_lock_inode",
];

/// Whether raw point `p` may serve on this kernel: a [`PREEMPT_SENSITIVE`] twin only where
/// the dispatch may (`sys_allowed`, from [`route_allowed`]), then any raw point only if its
/// arguments are where the kernel's BTF has them.
pub fn raw_point_allowed(
    kbtf: &KernelBtf,
    p: &Point,
    sys_allowed: &Result<(), String>,
) -> Result<(), String> {
    match sys_allowed {
        Err(e) if PREEMPT_SENSITIVE.contains(&p.program) => Err(e.clone()),
        _ => super::raw_args_match(kbtf, p),
    }
}

/// Attaches the two dispatch programs, if this kernel's BTF says where a syscall keeps its
/// arguments, its number and whether it is a 32-bit one (`Err`: why the classic syscall
/// tracepoints serve instead).
pub fn attach_dispatch(ebpf: &mut Ebpf, cfg: &Config) -> Result<(), String> {
    let needed = [
        (btf_off::PT_REGS_SYSCALL_ARG0, "pt_regs' first argument"),
        (btf_off::PT_REGS_SYSCALL_ARG1, "pt_regs' second argument"),
        (btf_off::PT_REGS_SYSCALL_ARG2 + 3, "pt_regs' sixth argument"),
        (btf_off::PT_REGS_SYSCALL_NR, "pt_regs' syscall number"),
        (btf_off::THREAD_INFO_STATUS, "thread_info.status"),
    ];
    if let Some((_, what)) = needed.iter().find(|(i, _)| cfg.btf[*i] == MISSING_U32) {
        return Err(format!(
            "{what} is not known on this architecture or kernel"
        ));
    }
    for (program, tracepoint) in DISPATCH {
        if let Err(e) = attach_one(ebpf, program, tracepoint) {
            detach_dispatch(ebpf);
            return Err(e);
        }
    }
    Ok(())
}

fn attach_one(ebpf: &mut Ebpf, program: &str, tracepoint: &str) -> Result<(), String> {
    let prog: &mut RawTracePoint = ebpf
        .program_mut(program)
        .ok_or_else(|| format!("program {program} missing from the object"))?
        .try_into()
        .map_err(|e| format!("{program}: {e}"))?;
    prog.load().map_err(|e| super::hooks::verifier_error(&e))?;
    prog.attach(tracepoint)
        .map(drop)
        .map_err(|e| format!("attaching raw_syscalls {tracepoint}: {e}"))
}

/// Detaches the dispatch programs (no syscall handler went through them).
pub fn detach_dispatch(ebpf: &mut Ebpf) {
    for (program, _) in DISPATCH {
        if let Some(Program::RawTracePoint(t)) = ebpf.program_mut(program) {
            let _ = t.unload();
        }
    }
}

/// Puts point `p`'s handler, loaded, in the dispatch table at its syscall's number.
pub fn set(ebpf: &mut Ebpf, p: &Point) -> Result<(), String> {
    let (table, name) = slot(p.target).ok_or_else(|| format!("{} names no syscall", p.target))?;
    if !crate::kernel::tracefs::exists("syscalls", p.target) {
        return Err(format!(
            "tracepoint syscalls/{} does not exist on this kernel (its format says where the \
             arguments are)",
            p.target
        ));
    }
    let nr = number(name).ok_or_else(|| format!("no syscall number known for {name}"))?;
    let fd = match ebpf.program(p.program) {
        Some(Program::RawTracePoint(t)) => t
            .fd()
            .and_then(|fd| fd.try_clone().map_err(Into::into))
            .map_err(|e| format!("{}: {e}", p.program))?,
        _ => return Err(format!("program {} is not a raw tracepoint", p.program)),
    };
    let mut progs: ProgramArray<_> = ebpf
        .map_mut(table)
        .ok_or_else(|| format!("no {table} map"))?
        .try_into()
        .map_err(|e| format!("{table}: {e}"))?;
    progs
        .set(nr, &fd, 0)
        .map_err(|e| format!("setting {table}[{nr}] ({name}): {e}"))
}

/// Takes point `p`'s handler out of the dispatch table again.
pub fn unset(ebpf: &mut Ebpf, p: &Point) {
    let Some((table, name)) = slot(p.target) else {
        return;
    };
    let (Some(nr), Some(map)) = (number(name), ebpf.map_mut(table)) else {
        return;
    };
    if let Ok(mut progs) = ProgramArray::try_from(map) {
        let _ = progs.clear_index(&nr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tracepoints_name_gives_its_table_and_syscall() {
        assert_eq!(slot("sys_enter_close"), Some(("SYS_ENTER_PROGS", "close")));
        assert_eq!(
            slot("sys_exit_openat2"),
            Some(("SYS_EXIT_PROGS", "openat2"))
        );
        assert_eq!(slot("sched_process_exit"), None);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn every_dispatched_point_has_a_number_inside_the_table() {
        assert_eq!(number("umount"), Some(166), "umount(2) is umount2");
        assert_eq!(number("close"), Some(3));
        assert_eq!(number("read"), None);
        let points = super::super::hooks::HOOKS
            .iter()
            .flat_map(|h| h.alternatives.iter().copied().flatten())
            .filter(|p| p.mechanism == super::super::hooks::Mechanism::RawSyscalls);
        let mut n = 0;
        for p in points {
            let (_, name) = slot(p.target).unwrap_or_else(|| panic!("{}", p.target));
            let nr = number(name).unwrap_or_else(|| panic!("{name}"));
            assert!(nr < tracer_fs::wire::SYSCALL_SLOTS, "{name}: {nr}");
            assert!(p.program.starts_with("raw_sys_"), "{}", p.program);
            n += 1;
        }
        assert!(n >= 20, "{n} dispatched points");
    }
}
