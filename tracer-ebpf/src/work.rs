//! Workqueue events: which work item each kworker runs (for attributing releases), and the
//! queue/start/end/arm events of the followed work functions (`delayed_fput`, io_uring's
//! fallback and exit work, and any the user adds).
//!
//! The raw-tracepoint programs use the argument positions of the kernels we know; userspace
//! checks them against the running kernel's BTF and attaches the classic-tracepoint
//! programs instead when they differ.

use aya_ebpf::{
    helpers::generated::bpf_jiffies64,
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};
use tracer_fs::wire::{RecordKind, Work, WorkArm, btf_off, counter, tp_field};

use crate::{
    config::{btf, delayed_work_timer_fn, field, followed_work},
    emit::{count, record, reserve, reserve_as, submit},
    kernel::{member, worker_readable},
    maps::{RUNNING_WORK, RunningWork},
};

#[inline(always)]
fn send(kind: RecordKind, work: u64, function: u64, target_cpu: i32) {
    let Some(mut entry) = reserve_as::<Work>(kind) else {
        return;
    };
    let rec = record(&mut entry);
    rec.work = work;
    rec.function = function;
    rec.target_cpu = target_cpu;
    rec._pad = 0;
    submit(entry);
}

#[inline(always)]
fn on_queue(work: u64, function: u64, cpu: i32) {
    count(counter::WORK_QUEUED);
    if followed_work(function) {
        send(RecordKind::WorkQueue, work, function, cpu);
    }
}

#[inline(always)]
fn on_start(work: u64, function: u64) {
    count(counter::WORK_EXECUTED);
    // Records from a kworker read its work item from its `struct worker`; only where BTF
    // does not place it is the item kept by thread here (a map insert per work item in
    // the system, and a delete at its end).
    if !worker_readable() {
        let pid = aya_ebpf::helpers::bpf_get_current_pid_tgid() as u32;
        let _ = RUNNING_WORK.insert(&pid, &RunningWork { work, function }, 0);
    }
    if crate::alloc::enabled() {
        crate::alloc_rcu::on_work_start(work, function);
    }
    if followed_work(function) {
        send(RecordKind::WorkStart, work, function, -1);
    }
}

#[inline(always)]
fn on_end(work: u64, function: u64) {
    if followed_work(function) {
        send(RecordKind::WorkEnd, work, function, -1);
    }
    if !worker_readable() {
        let pid = aya_ebpf::helpers::bpf_get_current_pid_tgid() as u32;
        let _ = RUNNING_WORK.remove(&pid);
    }
}

#[inline(always)]
fn work_func(work: u64) -> u64 {
    member::<u64>(work, btf_off::WORK_FUNC).unwrap_or(0)
}

// workqueue_queue_work(int req_cpu, struct pool_workqueue *pwq, struct work_struct *work)
#[raw_tracepoint(tracepoint = "workqueue_queue_work")]
pub fn raw_workqueue_queue_work(ctx: RawTracePointContext) -> i32 {
    let req_cpu: u64 = ctx.arg(0);
    let work: u64 = ctx.arg(2);
    on_queue(work, work_func(work), req_cpu as i32);
    0
}

// workqueue_execute_start(struct work_struct *work)
#[raw_tracepoint(tracepoint = "workqueue_execute_start")]
pub fn raw_workqueue_execute_start(ctx: RawTracePointContext) -> i32 {
    let work: u64 = ctx.arg(0);
    on_start(work, work_func(work));
    0
}

// workqueue_execute_end(struct work_struct *work, work_func_t function): the work may be
// freed by its own function, so it is not read here.
#[raw_tracepoint(tracepoint = "workqueue_execute_end")]
pub fn raw_workqueue_execute_end(ctx: RawTracePointContext) -> i32 {
    let work: u64 = ctx.arg(0);
    let function: u64 = ctx.arg(1);
    on_end(work, function);
    0
}

#[tracepoint]
pub fn workqueue_queue_work(ctx: TracePointContext) -> u32 {
    on_queue(
        field(&ctx, tp_field::WQ_WORK),
        field(&ctx, tp_field::WQ_FUNCTION),
        field(&ctx, tp_field::WQ_CPU),
    );
    0
}

#[tracepoint]
pub fn workqueue_execute_start(ctx: TracePointContext) -> u32 {
    on_start(
        field(&ctx, tp_field::WQ_WORK),
        field(&ctx, tp_field::WQ_FUNCTION),
    );
    0
}

#[tracepoint]
pub fn workqueue_execute_end(ctx: TracePointContext) -> u32 {
    on_end(
        field(&ctx, tp_field::WQ_WORK),
        field(&ctx, tp_field::WQ_FUNCTION),
    );
    0
}

/// `timer_start` of a delayed work's timer: the context that armed it (`fput` from a
/// kworker arming `delayed_fput_work`, say). The `workqueue_queue_work` that follows fires
/// from the timer, where the current task says nothing.
#[tracepoint]
pub fn timer_start(ctx: TracePointContext) -> u32 {
    on_timer_start(
        field(&ctx, tp_field::TIMER_START_TIMER),
        field(&ctx, tp_field::TIMER_START_FUNCTION),
        field(&ctx, tp_field::TIMER_START_EXPIRES),
        field(&ctx, tp_field::TIMER_START_NOW),
    );
    0
}

/// `timer_start(timer, ...)`: the function and expiry are read from the timer, the time
/// from the jiffies counter, as the classic tracepoint's record does (the arguments after
/// the timer differ between kernels).
#[raw_tracepoint(tracepoint = "timer_start")]
pub fn raw_timer_start(ctx: RawTracePointContext) -> i32 {
    let timer: u64 = ctx.arg(0);
    let function = member::<u64>(timer, btf_off::TIMER_FUNCTION).unwrap_or(0);
    let expires = member::<u64>(timer, btf_off::TIMER_EXPIRES).unwrap_or(0);
    // SAFETY: no preconditions.
    let now = unsafe { bpf_jiffies64() };
    on_timer_start(timer, function, expires, now);
    0
}

#[inline(always)]
fn on_timer_start(timer: u64, function: u64, expires: u64, now: u64) {
    let timer_fn = delayed_work_timer_fn();
    if timer_fn == 0 || function != timer_fn {
        return;
    }
    let Some(timer_off) = btf(btf_off::DWORK_TIMER) else {
        return;
    };
    let work = timer.wrapping_sub(timer_off);
    let work_fn = work_func(work);
    if crate::alloc::enabled() {
        crate::alloc_rcu::on_work_armed(work, work_fn);
    }
    if !followed_work(work_fn) {
        return;
    }
    let Some(mut entry) = reserve::<WorkArm>() else {
        return;
    };
    let rec = record(&mut entry);
    rec.work = work;
    rec.function = work_fn;
    rec.delay_jiffies = expires.wrapping_sub(now);
    submit(entry);
}
