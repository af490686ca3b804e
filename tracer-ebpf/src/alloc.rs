//! Allocation leak tracking (`tracer attach --alloc-filter ...`).
//!
//! The outstanding allocations live in the kernel, in `OUTSTANDING` (object address ->
//! size, call site, stack id, time, task): inserted at allocation, deleted at free, both
//! here. Userspace never receives one event per allocation; it iterates the map.
//!
//! Cost, cheapest first (measured on the project's machines: ~60 ns per event for a raw
//! tracepoint that only counts, ~130 ns more for a hash insert/delete, ~2 us for a kernel
//! stack capture):
//! - `ALLOC_CONFIG` is frozen `.rodata`: with tracking off (the default) the verifier
//!   prunes everything below and the kmem programs stay counters;
//! - the filter runs before any map work: a binary search over at most 512 call-site ranges
//!   in `.rodata` (module text or symbols matching a prefix, computed in userspace from
//!   kallsyms), and, only when cache names are given, one lookup of the cache's verdict;
//! - the stack is captured once per call site (`CALLSITE_STACK`), not per allocation: a
//!   call site's allocations share the first stack seen there, which names the path that
//!   leads to it (reports say it is the first one seen).
//! - frees cost one hash delete while tracking is on, and with the reuse check (default)
//!   allocations the filter leaves out cost one too (a tracked object freed unseen, its
//!   address reused), but only at addresses a tracked object may have had: `MARKS`, one
//!   byte per hash bucket of addresses, set before every insert and never cleared, says
//!   "never tracked here" for most untracked objects with one array load.
//!
//! Average cost per program run measured on the project's machine (6.18, 2 CPUs, loaded;
//! `kernel.bpf_stats_enabled=1`, 100k open+close of /dev/null, bpftool's run_time_ns /
//! run_cnt): kmem_cache_alloc 72 ns with tracking off; `sym:xfs_` (filtered out) 109 ns
//! without the reuse check, 183 ns with it; `cache:filp` (tracked, stack once per site)
//! 358 ns; `cache:filp --alloc-stack-per-object` 1280 ns. kmem_cache_free 227 ns off (it
//! also reports `filp` frees), 290-330 ns on.

use core::{mem::MaybeUninit, ptr::addr_of_mut};

use aya_ebpf::{
    EbpfContext,
    bindings::BPF_NOEXIST,
    helpers::{
        bpf_get_current_pid_tgid, bpf_probe_read_kernel_str_bytes, generated::bpf_ktime_get_boot_ns,
    },
    macros::map,
    maps::{Array, HashMap, PerCpuArray, StackTrace},
    programs::tracing::StackIdContext,
};
use tracer_fs::wire::{
    alloc::{
        ALL, AllocConfig, CACHE_EXCLUDED, CACHE_INCLUDED, CACHE_NAME_LEN, CACHE_NEUTRAL,
        MARK_BUCKET_BITS, MARK_CHUNK_BYTES, MARK_CHUNKS, MAX_CACHES, MAX_RANGES, Outstanding,
        PERCPU_CACHE, REUSE_CHECK, STACK_PER_OBJECT,
    },
    btf_off, counter,
};

use crate::{emit::count, kernel::member};

#[unsafe(no_mangle)]
pub static ALLOC_CONFIG: AllocConfig = AllocConfig::empty();

/// Outstanding tracked allocations by object address. Userspace may resize it
/// (`--alloc-max-entries`); when full, `ALLOC_MAP_FULL` counts what was not tracked.
#[map]
pub static OUTSTANDING: HashMap<u64, Outstanding> = HashMap::with_max_entries(65536, 0);

/// Kernel stacks, one per call site.
#[map]
pub static STACKS: StackTrace = StackTrace::with_max_entries(16384, 0);

/// Call site -> its stack id in `STACKS` (negative: the capture failed; not retried).
#[map]
pub static CALLSITE_STACK: HashMap<u64, i32> = HashMap::with_max_entries(16384, 0);

/// `struct kmem_cache *` -> `wire::alloc::CACHE_*`, learnt by name the first time a cache
/// allocates (only when cache names are part of the filter).
#[map]
pub static ALLOC_CACHE_VERDICT: HashMap<u64, u8> = HashMap::with_max_entries(4096, 0);

/// `struct kmem_cache *` -> its name, recorded once per call site (with its stack) so that
/// reports can name caches.
#[map]
pub static CACHE_NAMES: HashMap<u64, [u8; CACHE_NAME_LEN]> = HashMap::with_max_entries(1024, 0);

/// Addresses a tracked object may have had: a byte per bucket of a hash of the address
/// (2^`MARK_BUCKET_BITS` of them), set to 1 before the object goes into `OUTSTANDING` and
/// never cleared (plain byte stores: the BPF target has no atomic read-modify-write, and a
/// lost bit would lose a free). A 0 means nothing at such an address was ever tracked, so
/// there is nothing to delete: most frees and filtered-out allocations skip their hash
/// delete. Userspace shrinks it to one chunk (all "maybe") when tracking is off.
#[map]
static MARKS: Array<[u8; MARK_CHUNK_BYTES]> = Array::with_max_entries(MARK_CHUNKS, 0);

/// The byte of `MARKS` for address `ptr`.
#[inline(always)]
fn mark_of(ptr: u64) -> Option<*mut u8> {
    // Fibonacci hashing: slab objects share their low bits; the product's top bits mix all.
    let h = ptr.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - MARK_BUCKET_BITS);
    let chunk = MARKS.get_ptr_mut((h / MARK_CHUNK_BYTES as u64) as u32)?;
    // SAFETY: the index is masked into the chunk.
    Some(unsafe { (chunk as *mut u8).add((h as usize) & (MARK_CHUNK_BYTES - 1)) })
}

/// Notes that a tracked object had address `ptr` (before it is inserted).
#[inline(always)]
fn mark(ptr: u64) {
    if let Some(p) = mark_of(ptr) {
        // SAFETY: a byte of a map value; a plain store, which no racing store undoes.
        unsafe { core::ptr::write_volatile(p, 1) };
    }
}

/// Whether `OUTSTANDING` may hold `ptr` (false: it never held anything there).
#[inline(always)]
fn maybe_tracked(ptr: u64) -> bool {
    // SAFETY: as in `mark`.
    mark_of(ptr).is_none_or(|p| unsafe { core::ptr::read_volatile(p) } != 0)
}

/// Per-CPU allocation counter for sampling.
#[map]
pub static ALLOC_SAMPLE: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

macro_rules! cfg {
    ($f:ident) => {
        // SAFETY: reading a field of a static; volatile so the build-time placeholder is
        // not folded (the loader rewrites it, the verifier then sees constants).
        unsafe { core::ptr::read_volatile(&ALLOC_CONFIG.$f) }
    };
}

#[inline(always)]
pub fn enabled() -> bool {
    cfg!(enabled) != 0
}

#[inline(always)]
fn in_ranges(addr: u64) -> bool {
    let n = cfg!(nr_ranges) as usize;
    let mut lo = 0usize;
    let mut hi = if n > MAX_RANGES { MAX_RANGES } else { n };
    // log2(MAX_RANGES) + 1 steps.
    for _ in 0..10 {
        if lo >= hi {
            break;
        }
        let mid = (lo + hi) / 2;
        // SAFETY: as in `cfg!`; the index is masked into the array.
        let r = unsafe { core::ptr::read_volatile(&ALLOC_CONFIG.ranges[mid & (MAX_RANGES - 1)]) };
        if addr < r[0] {
            hi = mid;
        } else if addr >= r[1] {
            lo = mid + 1;
        } else {
            return true;
        }
    }
    false
}

#[inline(always)]
fn name_eq(a: &[u8; CACHE_NAME_LEN], b: &[u8; CACHE_NAME_LEN]) -> bool {
    let mut i = 0;
    while i < CACHE_NAME_LEN {
        if a[i] != b[i] {
            return false;
        }
        if a[i] == 0 {
            return true;
        }
        i += 1;
    }
    true
}

/// What the filter says of slab cache `cache`, learnt once per cache.
#[inline(always)]
fn cache_verdict(cache: u64) -> u8 {
    // SAFETY: the value is copied out at once.
    if let Some(v) = unsafe { ALLOC_CACHE_VERDICT.get(&cache) } {
        return *v;
    }
    let mut verdict = CACHE_NEUTRAL;
    let mut name = [0u8; CACHE_NAME_LEN];
    if let Some(p) = member::<u64>(cache, btf_off::KMEM_CACHE_NAME)
        && p != 0
        // SAFETY: the helper bounds the copy by `name`.
        && unsafe { bpf_probe_read_kernel_str_bytes(p as *const u8, &mut name) }.is_ok()
    {
        let ninc = cfg!(nr_include) as usize;
        let nexc = cfg!(nr_exclude) as usize;
        for i in 0..MAX_CACHES {
            if i < nexc {
                // SAFETY: as in `cfg!` (volatile: the names are rewritten by the loader).
                let exc = unsafe { core::ptr::read_volatile(&ALLOC_CONFIG.exclude_caches[i]) };
                if name_eq(&name, &exc) {
                    verdict = CACHE_EXCLUDED;
                }
            }
            if i < ninc {
                // SAFETY: as above.
                let inc = unsafe { core::ptr::read_volatile(&ALLOC_CONFIG.include_caches[i]) };
                if name_eq(&name, &inc) {
                    verdict = CACHE_INCLUDED;
                }
            }
        }
    }
    let _ = ALLOC_CACHE_VERDICT.insert(&cache, &verdict, 0);
    let _ = CACHE_NAMES.insert(&cache, &name, BPF_NOEXIST as u64);
    verdict
}

/// Whether the filter wants an allocation from `call_site` (in `cache`, 0 for kmalloc).
#[inline(always)]
fn wanted(call_site: u64, cache: u64) -> bool {
    if cache > PERCPU_CACHE && cfg!(nr_include) + cfg!(nr_exclude) > 0 {
        match cache_verdict(cache) {
            CACHE_INCLUDED => return true,
            CACHE_EXCLUDED => return false,
            _ => {}
        }
    }
    if cfg!(flags) & ALL != 0 {
        return true;
    }
    cfg!(nr_ranges) > 0 && in_ranges(call_site)
}

#[inline(always)]
fn stack_of<C: EbpfContext + StackIdContext>(ctx: &C, call_site: u64, cache: u64) -> i32 {
    if cfg!(flags) & STACK_PER_OBJECT != 0 {
        return match ctx.get_stackid(&STACKS, 0) {
            Ok(id) => id as i32,
            Err(_) => {
                count(counter::ALLOC_STACK_FAILED);
                -1
            }
        };
    }
    // SAFETY: the value is copied out at once.
    if let Some(id) = unsafe { CALLSITE_STACK.get(&call_site) } {
        return *id;
    }
    if cache > PERCPU_CACHE {
        remember_cache_name(cache);
    }
    let id = match ctx.get_stackid(&STACKS, 0) {
        Ok(id) => {
            count(counter::ALLOC_STACKS);
            id as i32
        }
        Err(_) => {
            count(counter::ALLOC_STACK_FAILED);
            -1
        }
    };
    let _ = CALLSITE_STACK.insert(&call_site, &id, BPF_NOEXIST as u64);
    id
}

#[inline(always)]
fn remember_cache_name(cache: u64) {
    let mut name = [0u8; CACHE_NAME_LEN];
    if let Some(p) = member::<u64>(cache, btf_off::KMEM_CACHE_NAME)
        && p != 0
        // SAFETY: the helper bounds the copy by `name`.
        && unsafe { bpf_probe_read_kernel_str_bytes(p as *const u8, &mut name) }.is_ok()
    {
        let _ = CACHE_NAMES.insert(&cache, &name, BPF_NOEXIST as u64);
    }
}

/// The size of an allocation the filter, the size bounds and the sampling all keep.
#[inline(always)]
fn tracked_size(call_site: u64, size: u64, cache: u64) -> Option<u64> {
    if !wanted(call_site, cache) {
        return None;
    }
    let size = if size == 0 && cache > PERCPU_CACHE {
        member::<u32>(cache, btf_off::KMEM_CACHE_OBJECT_SIZE).unwrap_or(0) as u64
    } else {
        size
    };
    if size < cfg!(min_size) || size > cfg!(max_size) {
        return None;
    }
    let every = cfg!(sample_every);
    if every > 1
        && let Some(n) = ALLOC_SAMPLE.get_ptr_mut(0)
    {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU while we run.
        let v = unsafe {
            *n = (*n).wrapping_add(1);
            *n
        };
        if v % every != 0 {
            count(counter::ALLOC_SAMPLED_OUT);
            return None;
        }
    }
    Some(size)
}

/// `-EEXIST` from a map insert with `BPF_NOEXIST`.
const EEXIST: i32 = 17;

/// An allocation: `size` bytes at `ptr` from `call_site`, of `cache` (0: kmalloc,
/// `PERCPU_CACHE`: alloc_percpu).
#[inline(always)]
pub fn on_alloc<C: EbpfContext + StackIdContext>(
    ctx: &C,
    call_site: u64,
    ptr: u64,
    size: u64,
    cache: u64,
) {
    // The tracer's own allocations (loading programs, reading maps) are not tracked.
    if ptr < 4096 || crate::emit::is_self() {
        return;
    }
    let reuse_check = cfg!(flags) & REUSE_CHECK != 0;
    let Some(size) = tracked_size(call_site, size, cache) else {
        // A tracked object at this address was freed without us seeing it.
        if reuse_check && maybe_tracked(ptr) && OUTSTANDING.remove(&ptr).is_ok() {
            count(counter::ALLOC_REUSED);
        }
        return;
    };
    let pid_tgid = bpf_get_current_pid_tgid();
    let size = if size > u32::MAX as u64 {
        u32::MAX
    } else {
        size as u32
    };
    let stack_id = stack_of(ctx, call_site, cache);
    // Built field by field, the name by the helper in place: a zeroed name came out as a
    // `memset` subprogram call (a byte loop) per allocation.
    let mut slot = MaybeUninit::<Outstanding>::uninit();
    let r = slot.as_mut_ptr();
    // SAFETY: each field of the stack slot is written once before it is read; the name by
    // the helper, which fills all of it.
    let rec = unsafe {
        addr_of_mut!((*r).ts_ns).write(bpf_ktime_get_boot_ns());
        addr_of_mut!((*r).call_site).write(call_site);
        addr_of_mut!((*r).cache).write(cache);
        addr_of_mut!((*r).size).write(size);
        addr_of_mut!((*r).stack_id).write(stack_id);
        addr_of_mut!((*r).pid).write(pid_tgid as u32);
        addr_of_mut!((*r).tgid).write((pid_tgid >> 32) as u32);
        crate::emit::current_comm(&mut *addr_of_mut!((*r).comm));
        slot.assume_init_ref()
    };
    // An address already present was freed without us seeing it: overwrite it. With the
    // reuse check that is counted, through a first insert that refuses to overwrite rather
    // than a delete before every insert (one map operation, not two, in the common case).
    mark(ptr);
    let mut res = OUTSTANDING.insert(&ptr, rec, if reuse_check { BPF_NOEXIST as u64 } else { 0 });
    if reuse_check && res == Err(-EEXIST) {
        count(counter::ALLOC_REUSED);
        res = OUTSTANDING.insert(&ptr, rec, 0);
    }
    match res {
        Ok(()) => count(counter::ALLOC_TRACKED),
        Err(_) => count(counter::ALLOC_MAP_FULL),
    }
}

/// A free of `ptr` (kfree or kmem_cache_free).
#[inline(always)]
pub fn on_free(ptr: u64) {
    if ptr < 4096 || !maybe_tracked(ptr) {
        return;
    }
    match OUTSTANDING.remove(&ptr) {
        Ok(()) => count(counter::ALLOC_FREED),
        // The bucket is locked by the run this free interrupted (a twin's run, see
        // `free_twin`): the free is lost, and said.
        Err(e) if e == -EBUSY => count(counter::ALLOC_FREE_BUSY),
        Err(_) => {}
    }
}

const EBUSY: i32 = 16;

// percpu_alloc_percpu(unsigned long call_site, bool reserved, bool is_atomic, size_t size,
//     size_t align, void *base_addr, int off, void __percpu *ptr, size_t bytes_alloc,
//     gfp_t gfp_flags): attached only with tracking on (argument types checked by
//     userspace). `bytes_alloc` is the size on every CPU together.
#[aya_ebpf::macros::raw_tracepoint(tracepoint = "percpu_alloc_percpu")]
pub fn raw_percpu_alloc(ctx: aya_ebpf::programs::RawTracePointContext) -> i32 {
    if enabled() {
        on_alloc(&ctx, ctx.arg(0), ctx.arg(7), ctx.arg(8), PERCPU_CACHE);
    }
    0
}

// percpu_free_percpu(void *base_addr, int off, void __percpu *ptr)
#[aya_ebpf::macros::raw_tracepoint(tracepoint = "percpu_free_percpu")]
pub fn raw_percpu_free(ctx: aya_ebpf::programs::RawTracePointContext) -> i32 {
    if enabled() {
        on_free(ctx.arg(2));
        crate::free_twin::done(crate::free_twin::SLOT_PERCPU, ctx.arg(2));
    }
    0
}

/// `raw_percpu_free`'s twin (see `free_twin`), attached right after it.
#[aya_ebpf::macros::raw_tracepoint(tracepoint = "percpu_free_percpu")]
pub fn raw_percpu_free_twin(ctx: aya_ebpf::programs::RawTracePointContext) -> i32 {
    if enabled() && crate::free_twin::missed(crate::free_twin::SLOT_PERCPU, ctx.arg(2)) {
        on_free(ctx.arg(2));
    }
    0
}
