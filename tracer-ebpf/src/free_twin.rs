//! Frees that come while their own program runs on the CPU (a free in an interrupt during
//! a free program's run) are skipped by the kernel: a raw tracepoint program does not nest
//! in itself, and the run is only counted (`recursion_misses`). Such a miss leaves a
//! tracked object "allocated" and a file "alive". So each free program has a twin attached
//! right after it to the same tracepoint (the kernel calls a tracepoint's programs in the
//! order they were attached): on every event the first runs, then the twin, which returns
//! at once unless the first is running on this CPU, that is, unless this very event
//! interrupted it and was skipped; then the twin does the first's work, and counts it
//! (`counter::FREE_TWIN + slot`) so userspace can take it off the misses. Only a free that
//! interrupts the twin doing that work is lost (both are running then).

use aya_ebpf::{macros::map, maps::PerCpuArray};
use tracer_fs::wire::counter;

use crate::emit::count;

/// The free programs that have a twin.
pub const SLOT_CACHE: u32 = 0;
pub const SLOT_KFREE: u32 = 1;
pub const SLOT_PERCPU: u32 = 2;

/// Per CPU and slot: 1 while the first program runs.
#[map]
static FREE_RUNNING: PerCpuArray<u32> = PerCpuArray::with_max_entries(3, 0);

/// Marks the first program of `slot` running on this CPU, until [`leave`]. (A guard
/// rather than a closure: a closure passed down became a BPF subprogram of its own, a call
/// on every slab free.)
#[inline(always)]
pub fn enter(slot: u32) -> Option<*mut u32> {
    let flag = FREE_RUNNING.get_ptr_mut(slot);
    if let Some(p) = flag {
        // SAFETY: this CPU's slot; only a nested twin reads it meanwhile.
        unsafe { *p = 1 };
    }
    flag
}

/// The end of what [`enter`] began.
#[inline(always)]
pub fn leave(flag: Option<*mut u32>) {
    if let Some(p) = flag {
        // SAFETY: as in `enter`.
        unsafe { *p = 0 };
    }
}

/// In the twin: whether this event came while the first program of `slot` ran on this
/// CPU (so the kernel skipped the first for it); counted when it did.
#[inline(always)]
pub fn interrupted(slot: u32) -> bool {
    let hit = FREE_RUNNING.get(slot).is_some_and(|v| *v != 0);
    if hit {
        count(counter::FREE_TWIN + slot);
    }
    hit
}
