//! Filling headers, reserving ring-buffer space and counting what could not be sent.

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP, BPF_RB_RING_SIZE},
    helpers::bpf_get_current_pid_tgid,
    helpers::generated::{bpf_get_current_comm, bpf_get_smp_processor_id, bpf_ktime_get_boot_ns},
    maps::ring_buf::RingBufEntry,
};
use tracer_fs::wire::{COMM_LEN, Header, Record, RecordKind, counter};

use crate::{
    kernel::{current_is_worker, current_work_item, worker_readable},
    maps::{COUNTERS, EVENTS, RUNNING_WORK, SUBMITS},
};

#[inline(always)]
pub fn count(index: u32) {
    // SAFETY: a helper without arguments.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    if let Some(p) = COUNTERS.get_ptr_mut(cpu * counter::COUNT + index) {
        // SAFETY: this CPU's block; only a program nested on this CPU (a free in an
        // interrupt) could race the add, as with a per-CPU map.
        unsafe { *p += 1 };
    }
}

/// The header for an event of the current task.
#[inline(always)]
fn fill_header(h: &mut Header, kind: RecordKind) {
    let pid_tgid = bpf_get_current_pid_tgid();
    h.kind = kind as u16;
    h.size = kind.size() as u32;
    // SAFETY: helpers without preconditions.
    h.cpu = unsafe { bpf_get_smp_processor_id() } as u16;
    h.ts_ns = unsafe { bpf_ktime_get_boot_ns() };
    h.pid = pid_tgid as u32;
    h.tgid = (pid_tgid >> 32) as u32;
    current_comm(&mut h.comm);
    // Only a workqueue worker runs work items: other tasks read nothing more.
    let (work, work_fn) = if !current_is_worker() {
        (0, 0)
    } else if worker_readable() {
        current_work_item()
    } else {
        // SAFETY: the value is copied out at once.
        unsafe { RUNNING_WORK.get(&h.pid) }.map_or((0, 0), |w| (w.work, w.function))
    };
    h.work = work;
    h.work_fn = work_fn;
}

/// The current task's name, written straight into `buf` (a record's field): aya's wrapper
/// zeroes a stack copy first, and that zeroing and the copies came out as byte loops (a
/// `memset` subprogram) in every program.
#[inline(always)]
pub fn current_comm(buf: &mut [u8; COMM_LEN]) {
    // SAFETY: the helper writes at most `COMM_LEN` bytes, NUL-padded (zeroed on failure).
    unsafe { bpf_get_current_comm(buf.as_mut_ptr().cast(), COMM_LEN as u32) };
}

/// Reserves a `T` record, its header filled for the current task; counts the record, or
/// a drop when the ring buffer is full. The rest is the caller's to write before submit.
#[inline(always)]
pub fn reserve<T: Record>() -> Option<RingBufEntry<T>> {
    reserve_as::<T>(T::KIND)
}

/// [`reserve`] for a record type sent as several kinds (`Work`).
#[inline(always)]
pub fn reserve_as<T: Record>(kind: RecordKind) -> Option<RingBufEntry<T>> {
    match EVENTS.reserve::<T>(0) {
        Some(mut e) => {
            count(counter::RECORDS + kind as u32);
            fill_header(record(&mut e).hdr_mut(), kind);
            Some(e)
        }
        None => {
            count(counter::DROPS + kind as u32);
            None
        }
    }
}

/// The record a reservation holds, to be written whole before it is submitted.
#[inline(always)]
pub fn record<T>(entry: &mut RingBufEntry<T>) -> &mut T {
    // SAFETY: the reservation is ours until submitted; records are plain old data, so any
    // bytes are a valid `T`, and every caller writes all of it (the header at reserve).
    unsafe { &mut *entry.as_mut_ptr() }
}

/// Reserves a `T` record, lets `fill` write it and submits it; false when it was dropped.
#[inline(always)]
pub fn emit<T: Record>(fill: impl FnOnce(&mut T)) -> bool {
    let Some(mut entry) = reserve::<T>() else {
        return false;
    };
    fill(record(&mut entry));
    submit(entry);
    true
}

/// Whether the current task is the tracer itself (whose own syscalls are not traced).
#[inline(always)]
pub fn is_self() -> bool {
    (bpf_get_current_pid_tgid() >> 32) as u32 == crate::config::self_tgid()
}

/// The part of the ring buffer waiting above which a submit wakes the reader at once
/// (1/16: 512 KiB of the default 8 MiB). The reader drains every 10 ms anyway; at 64 KiB
/// a busy loop (8 MB/s of records) crossed the mark before each drain, and every 16th
/// submit after it raised an `irq_work` until the reader came (a self-IPI: in a VM, an
/// exit; `native_write_msr` under `bpf_ringbuf_submit` in `perf record -g`).
const WAKE_AT_SHIFT: u64 = 4;

/// Submits a record without waking the reader unless a good batch is waiting: userspace
/// also drains on a short timer (`stream.rs`). A wakeup is an `irq_work` raised by a
/// self-IPI, which in a VM is an exit costing microseconds; waking for every record that
/// found the reader idle made the open and close programs cost 5-7 us per run.
///
/// The fill level is looked at on every 16th submit per CPU (a helper call costs ~50 ns
/// here; 16 records are a few KiB, far below the threshold and the ring's size).
#[inline(always)]
pub fn submit<T>(entry: RingBufEntry<T>) {
    let look = match SUBMITS.get_ptr_mut(0) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU while we run.
        Some(n) => unsafe {
            *n = (*n).wrapping_add(1);
            *n % 16 == 0
        },
        None => true,
    };
    let flags = if look
        && EVENTS.query(BPF_RB_AVAIL_DATA as u64)
            >= EVENTS.query(BPF_RB_RING_SIZE as u64) >> WAKE_AT_SHIFT
    {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    };
    entry.submit(flags as u64);
}

/// Submits a record and wakes the reader now (rare records that userspace acts on at once,
/// such as mount calls, whose mount table it reads right after).
#[inline(always)]
pub fn submit_now<T>(entry: RingBufEntry<T>) {
    entry.submit(BPF_RB_FORCE_WAKEUP as u64);
}
