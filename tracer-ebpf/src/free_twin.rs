//! Frees that come while their own program runs on the CPU (a free in an interrupt during
//! a free program's run) are skipped by the kernel: a raw tracepoint program does not nest
//! in itself, and the run is only counted (`recursion_misses`). Such a miss leaves a
//! tracked object "allocated" and a file "alive". So each free program has a twin attached
//! right after it to the same tracepoint (the kernel calls a tracepoint's programs in the
//! order they were attached): on every event the first runs, then the twin.
//!
//! The first program, as the last thing it does, notes the object it was run for ([`done`]);
//! the twin takes the note ([`missed`]): if it names another object, the first did not run
//! for this event, so the twin does its work, and counts it (`counter::FREE_TWIN + slot`)
//! so userspace can take it off the misses. The note is written at the end, not a flag at
//! the start, so no instant of the first's run is uncovered: a free that comes before the
//! first program has written anything (its prologue, the kernel's code around it) finds the
//! note cleared by the last twin, and is handled. (With a flag set at the start, a batch of
//! RCU frees in a softirq at that instant was lost whole.) What is left: a free that
//! interrupts the twin itself before it reads the note makes the twin redo its own event,
//! which finds nothing left to free (a freed object is not tracked, a file already gone);
//! one that interrupts the twin doing the first's work is lost (both are running then).

use aya_ebpf::{macros::map, maps::PerCpuArray};
use tracer_fs::wire::counter;

use crate::emit::count;

/// The free programs that have a twin.
pub const SLOT_CACHE: u32 = 0;
pub const SLOT_KFREE: u32 = 1;
pub const SLOT_PERCPU: u32 = 2;

/// Per CPU and slot: the object of the event the first program last ran to its end for,
/// until its twin takes it (0).
#[map]
static FREE_DONE: PerCpuArray<u64> = PerCpuArray::with_max_entries(3, 0);

/// The first program of `slot` ran for the free of `ptr`: its last step.
#[inline(always)]
pub fn done(slot: u32, ptr: u64) {
    // Nobody reads the note of a program without its twin: the slab free's is left out in
    // the default mode from 6.7, and this constant has the verifier drop the store (one
    // per slab free in the system).
    if slot == SLOT_CACHE && !crate::config::cache_free_twin() {
        return;
    }
    if let Some(p) = FREE_DONE.get_ptr_mut(slot) {
        // SAFETY: this CPU's slot; only a nested program of this slot writes it meanwhile.
        unsafe { *p = ptr };
    }
}

/// In the twin: whether the first program of `slot` did not run for this free of `ptr`
/// (the kernel skipped it: this event interrupted it); counted when it did not.
#[inline(always)]
pub fn missed(slot: u32, ptr: u64) -> bool {
    let Some(p) = FREE_DONE.get_ptr_mut(slot) else {
        return false;
    };
    // SAFETY: as in `done`.
    let noted = unsafe { core::ptr::replace(p, 0) };
    let missed = noted != ptr;
    if missed {
        count(counter::FREE_TWIN + slot);
    }
    missed
}
