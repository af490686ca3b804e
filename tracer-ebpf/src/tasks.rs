//! Task exits and SIGKILLs: who died, how, and who killed whom.

use aya_ebpf::{
    helpers::bpf_probe_read_kernel_buf,
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};
use tracer_fs::wire::{COMM_LEN, PF_EXITING, Signal, TaskExit, btf_off, tp_field};

use crate::{
    config::{btf, field, tp},
    emit::{record, reserve, submit},
    kernel::{current_task, fs_mount_ids, member},
};

const SIGKILL: i32 = 9;
const SIGCHLD: i32 = 17;

#[tracepoint]
pub fn sched_process_exit(ctx: TracePointContext) -> u32 {
    let group_dead = match tp(tp_field::EXIT_GROUP_DEAD) {
        // SAFETY: offset from the format file.
        Some(off) => unsafe { ctx.read_at::<u8>(off) }.unwrap_or(0) as u32,
        None => 0,
    };
    process_exit(group_dead);
    0
}

/// `sched_process_exit(p[, group_dead])`, `p` being the current task: `group_dead` is its
/// second argument where its format has the field.
#[raw_tracepoint(tracepoint = "sched_process_exit")]
pub fn raw_sched_process_exit(ctx: RawTracePointContext) -> i32 {
    let group_dead = match tp(tp_field::EXIT_GROUP_DEAD) {
        Some(_) => (ctx.arg::<u64>(1) & 0xff != 0) as u32,
        None => 0,
    };
    process_exit(group_dead);
    0
}

#[inline(always)]
fn process_exit(group_dead: u32) {
    // Kernels before the field (6.1): a leader's exit stands for its process's.
    let id = aya_ebpf::helpers::bpf_get_current_pid_tgid();
    let whole = group_dead != 0
        || (tp(tp_field::EXIT_GROUP_DEAD).is_none() && (id >> 32) as u32 == id as u32);
    let Some(mut entry) = reserve::<TaskExit>() else {
        return;
    };
    let rec = record(&mut entry);
    rec.exit_code = member::<i32>(current_task(), btf_off::TASK_EXIT_CODE).unwrap_or(0);
    rec.group_dead = group_dead;
    // The process's cwd and root, which it holds until exit_fs() near the end of do_exit.
    (rec.pwd_mnt_id, rec.root_mnt_id) = if whole {
        fs_mount_ids(current_task())
    } else {
        (-1, -1)
    };
    submit(entry);
}

#[tracepoint]
pub fn signal_generate(ctx: TracePointContext) -> u32 {
    let comm = tp(tp_field::SIG_COMM).map(|off| (ctx_ptr(&ctx) as u64).wrapping_add(off as u64));
    signal(
        field(&ctx, tp_field::SIG_SIG),
        field(&ctx, tp_field::SIG_RESULT),
        field(&ctx, tp_field::SIG_PID),
        field(&ctx, tp_field::SIG_GROUP),
        comm,
    );
    0
}

/// `signal_generate(sig, info, task, group, result)`: the target's pid and comm are read
/// from its task.
#[raw_tracepoint(tracepoint = "signal_generate")]
pub fn raw_signal_generate(ctx: RawTracePointContext) -> i32 {
    let task: u64 = ctx.arg(2);
    signal(
        ctx.arg::<u64>(0) as i32,
        ctx.arg::<u64>(4) as i32,
        member::<i32>(task, btf_off::TASK_PID).unwrap_or(0),
        ctx.arg::<u64>(3) as i32,
        btf(btf_off::TASK_COMM).map(|off| task.wrapping_add(off)),
    );
    0
}

/// A signal sent: `comm` is where the target's name can be read.
#[inline(always)]
fn signal(sig: i32, result: i32, target_pid: i32, group: i32, comm: Option<u64>) {
    // SIGCHLD sent by a task inside do_exit() is its exit_notify(): by then it has
    // released its mm, fd table, cwd/root and run its task_work.
    if sig != SIGKILL
        && !(sig == SIGCHLD
            && member::<u32>(current_task(), btf_off::TASK_FLAGS).unwrap_or(0) & PF_EXITING != 0)
    {
        return;
    }
    let Some(mut entry) = reserve::<Signal>() else {
        return;
    };
    let rec = record(&mut entry);
    rec.sig = sig;
    rec.result = result;
    rec.target_pid = target_pid;
    rec.group = group;
    rec.target_comm = [0u8; COMM_LEN];
    if let Some(src) = comm {
        // SAFETY: the helper checks the address and bounds the copy.
        if unsafe { bpf_probe_read_kernel_buf(src as *const u8, &mut rec.target_comm) }.is_err() {
            rec.target_comm[0] = 0;
        }
    }
    submit(entry);
}

#[inline(always)]
fn ctx_ptr(ctx: &TracePointContext) -> *mut core::ffi::c_void {
    use aya_ebpf::EbpfContext;
    ctx.as_ptr()
}
