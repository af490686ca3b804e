//! Access to the `CONFIG` global that userspace fills before load.
//!
//! The global lives in `.rodata`, which the kernel freezes: the verifier sees the values as
//! constants and prunes the branches for fields this kernel does not have.

use tracer_fs::wire::{Config, FOLLOWED_IN_MAP, MAX_FOLLOWED_FNS, MISSING_U16, MISSING_U32};

#[unsafe(no_mangle)]
static CONFIG: Config = Config::empty();

/// Offset of a classic tracepoint field (`tp_field::*`), if this kernel has it.
#[inline(always)]
pub fn tp(field: usize) -> Option<usize> {
    // SAFETY: reading a field of a static; volatile so the compiler does not fold the
    // build-time placeholder.
    let v = unsafe { core::ptr::read_volatile(&CONFIG.tp[field]) };
    if v == MISSING_U16 {
        None
    } else {
        Some(v as usize)
    }
}

/// A structure member offset (`btf_off::*`), if the running kernel's BTF has it.
#[inline(always)]
pub fn btf(member: usize) -> Option<u64> {
    // SAFETY: as above.
    let v = unsafe { core::ptr::read_volatile(&CONFIG.btf[member]) };
    if v == MISSING_U32 {
        None
    } else {
        Some(v as u64)
    }
}

/// Per-CPU section offsets of `runqueues` and `this_cpu_off`, and the CPUs possible.
#[inline(always)]
pub fn percpu_layout() -> (u64, u64, u32) {
    // SAFETY: as above.
    unsafe {
        (
            core::ptr::read_volatile(&CONFIG.runqueues_pcpu),
            core::ptr::read_volatile(&CONFIG.this_cpu_off_pcpu),
            core::ptr::read_volatile(&CONFIG.nr_cpus),
        )
    }
}

#[inline(always)]
pub fn self_tgid() -> u32 {
    // SAFETY: as above.
    unsafe { core::ptr::read_volatile(&CONFIG.self_tgid) }
}

#[inline(always)]
pub fn all_work() -> bool {
    // SAFETY: as above.
    unsafe { core::ptr::read_volatile(&CONFIG.all_work) != 0 }
}

#[inline(always)]
pub fn delayed_work_timer_fn() -> u64 {
    // SAFETY: as above.
    unsafe { core::ptr::read_volatile(&CONFIG.delayed_work_timer_fn) }
}

#[inline(always)]
pub fn fput_callback() -> u64 {
    // SAFETY: as above.
    unsafe { core::ptr::read_volatile(&CONFIG.fput_callback) }
}

#[inline(always)]
pub fn cache_free_twin() -> bool {
    // SAFETY: as above.
    unsafe { core::ptr::read_volatile(&CONFIG.cache_free_twin) != 0 }
}

/// Whether `function` is one of the followed work functions (`--all-work`: every one).
/// They are compared as constants; only past `MAX_FOLLOWED_FNS` of them is the map asked.
#[inline(always)]
pub fn followed_work(function: u64) -> bool {
    if all_work() {
        return true;
    }
    // SAFETY: as above.
    let n = unsafe { core::ptr::read_volatile(&CONFIG.nr_followed_fns) };
    if n == FOLLOWED_IN_MAP {
        // SAFETY: only presence matters.
        return unsafe { crate::maps::FOLLOWED_WORK.get(&function) }.is_some();
    }
    for i in 0..MAX_FOLLOWED_FNS {
        // SAFETY: as above.
        if (i as u32) < n
            && unsafe { core::ptr::read_volatile(&CONFIG.followed_fns[i]) } == function
        {
            return true;
        }
    }
    false
}

#[inline(always)]
pub fn file_one_ref() -> u64 {
    // SAFETY: as above.
    unsafe { core::ptr::read_volatile(&CONFIG.file_one_ref) }
}

/// Reads classic-tracepoint field `f` of the record at `ctx`, or `T::default()` when this
/// kernel's tracepoint lacks it.
#[inline(always)]
pub fn field<T: Default>(ctx: &aya_ebpf::programs::TracePointContext, f: usize) -> T {
    match tp(f) {
        // SAFETY: an offset from the tracepoint's format file, inside its record.
        Some(off) => unsafe { ctx.read_at::<T>(off) }.unwrap_or_default(),
        None => T::default(),
    }
}
