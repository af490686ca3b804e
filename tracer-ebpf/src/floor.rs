//! The benchmarks' floor (`tracer attach --floor`): programs that do nothing but bump one
//! per-CPU counter, attached to exactly the points the default configuration uses, so that
//! `cargo xtask bench` can tell the cost of being attached at all from the cost of tracer's
//! own work.

use aya_ebpf::{
    macros::{map, raw_tracepoint, tracepoint},
    maps::PerCpuArray,
    programs::{RawTracePointContext, TracePointContext},
};

/// Slot 0: runs of either floor program, per CPU.
#[map]
pub static FLOOR_COUNT: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
fn bump() {
    if let Some(slot) = FLOOR_COUNT.get_ptr_mut(0) {
        // SAFETY: a per-CPU slot; a program is not preempted by itself on one CPU.
        unsafe { *slot += 1 };
    }
}

#[tracepoint]
pub fn floor_tp(_ctx: TracePointContext) -> u32 {
    bump();
    0
}

#[raw_tracepoint]
pub fn floor_raw(_ctx: RawTracePointContext) -> i32 {
    bump();
    0
}
