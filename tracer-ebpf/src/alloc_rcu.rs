//! Frees no tracepoint shows: `kfree_rcu()`.
//!
//! `kfree_rcu(obj)` puts `obj` in a per-CPU queue (`struct kfree_rcu_cpu`: pages of
//! pointers, `kvfree_rcu_bulk_data`, one list per channel; and a list of `rcu_head`s when no
//! page could be had). `kfree_rcu_monitor` (delayed work) frees the pages whose grace
//! period is over and hands the others to `kfree_rcu_work` (rcu work), which frees them
//! after one: both with `kfree_bulk()`, which has no tracepoint. (The `rcu_head` list goes
//! through `kvfree()`, whose `kfree` is seen.) An object in one of these queues is as good
//! as freed: kfree_rcu() cannot be taken back. So the queues are read:
//! - at `workqueue_execute_start` of `kfree_rcu_monitor` (its CPU's pages) and of
//!   `kfree_rcu_work` (the batch it is about to free): exactly where the bulk frees happen;
//! - at `mm_shrink_slab_start` of kfree_rcu()'s shrinker, which calls `kfree_rcu_monitor()`
//!   directly (no work item starts) under memory pressure or `drop_caches`: every queue;
//! - on demand, from userspace before a leak report (`alloc_rcu_scan`, an iterator
//!   program that userspace runs): every queue of every `kfree_rcu_cpu` known, for
//!   objects whose monitor has not run yet (it waits up to 5 s). Each CPU's is known from
//!   its per-CPU area (learnt at the first work item it runs) plus `krc`'s offset in the
//!   per-CPU section, and from its monitor being armed or run.
//!
//! The queues are read without their lock: pages filled meanwhile may be missed (the next
//! walk sees them), and a page recycled meanwhile holds addresses freed already.
//!
//! Each record costs a hash delete (~100 ns); the walks run `bpf_loop` so the verifier
//! checks their body once.

use core::ffi::c_void;

use aya_ebpf::{
    helpers::generated::bpf_loop,
    macros::{fentry, kprobe, map, raw_tracepoint},
    maps::Array,
    programs::{FEntryContext, ProbeContext, RawTracePointContext},
};
use tracer_fs::wire::{
    SCAN_MAX_CPUS,
    alloc::{RCU_MAX_BATCHES, RCU_MAX_CHANNELS},
    counter,
};

use crate::{
    alloc::{ALLOC_CONFIG, OUTSTANDING},
    config::percpu_layout,
    emit::count,
    kernel::{current_task, for_steps, learn_cpu_offset, read},
    maps::{PCPU_BASE, PCPU_OFF},
};

/// Steps (records or pages) one walk of one queue may take.
const MAX_STEPS: u32 = 1 << 16;
/// The `kfree_rcu_cpu`s seen (one per CPU), found by open addressing on their address.
const MAX_KRCP: u32 = 256;
/// `struct list_head` is two pointers.
const LIST_HEAD_SIZE: u64 = 16;

#[map]
pub static KRCPS: Array<u64> = Array::with_max_entries(MAX_KRCP, 0);

macro_rules! rcfg {
    ($f:ident) => {
        // SAFETY: reading a field of a static; volatile so the build-time placeholder is
        // not folded (the loader rewrites it).
        unsafe { core::ptr::read_volatile(&ALLOC_CONFIG.rcu.$f) }
    };
}

#[inline(always)]
fn forget(ptr: u64) {
    if ptr >= 4096 && OUTSTANDING.remove(&ptr).is_ok() {
        count(counter::ALLOC_RCU_FREED);
    }
}

#[repr(C)]
struct Walk {
    /// The list head (`struct list_head`) being walked, or the next `rcu_head`.
    head: u64,
    /// The current page's `list` member; `head` before the first page.
    node: u64,
    idx: u64,
    nr: u64,
    done: u64,
}

/// One step of a walk over a list of `kvfree_rcu_bulk_data` pages: the next record of the
/// page, or the next page.
#[inline(never)]
extern "C" fn bulk_step(_i: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: `ctx` is the caller's `Walk` (bpf_loop passes it through).
    let w = unsafe { &mut *(ctx as *mut Walk) };
    let page = w.node.wrapping_sub(rcfg!(bnode_list) as u64);
    if w.idx >= w.nr {
        let next = read::<u64>(w.node).unwrap_or(0);
        if next == 0 || next == w.head {
            w.done = 1;
            return 1;
        }
        w.node = next;
        let page = next.wrapping_sub(rcfg!(bnode_list) as u64);
        w.nr = read::<u64>(page.wrapping_add(rcfg!(bnode_nr_records) as u64)).unwrap_or(0);
        w.idx = 0;
        return 0;
    }
    let slot = page
        .wrapping_add(rcfg!(bnode_records) as u64)
        .wrapping_add(w.idx.wrapping_mul(8));
    w.idx += 1;
    forget(read::<u64>(slot).unwrap_or(0));
    0
}

/// One step of a walk over a list of `rcu_head`s queued by `kfree_rcu()`: `func` holds the
/// object's address.
#[inline(never)]
extern "C" fn head_step(_i: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: as in `bulk_step`.
    let w = unsafe { &mut *(ctx as *mut Walk) };
    if w.head == 0 {
        w.done = 1;
        return 1;
    }
    forget(read::<u64>(w.head.wrapping_add(rcfg!(rcu_head_func) as u64)).unwrap_or(0));
    w.head = read::<u64>(w.head.wrapping_add(rcfg!(rcu_head_next) as u64)).unwrap_or(0);
    0
}

fn run(step: extern "C" fn(u64, *mut c_void) -> i64, head: u64, node: u64) {
    let mut w = Walk {
        head,
        node,
        idx: 0,
        nr: 0,
        done: 0,
    };
    for_steps(MAX_STEPS, step, &mut w);
    if w.done == 0 {
        count(counter::ALLOC_RCU_TRUNCATED);
    }
}

/// A count from the config, bounded by what the walks were sized for.
#[inline(always)]
fn at_most(n: u32, max: u32) -> u64 {
    (if n > max { max } else { n }) as u64
}

#[inline(always)]
fn channels() -> u64 {
    at_most(rcfg!(channels), RCU_MAX_CHANNELS)
}

#[inline(always)]
fn batches() -> u64 {
    at_most(rcfg!(batches), RCU_MAX_BATCHES)
}

/// A group of queues: one list of pages per channel from `pages` on (`list_head`s side by
/// side), and the `rcu_head` list whose first is stored at `heads_at` (0: not walked).
#[repr(C)]
struct Group {
    pages: u64,
    heads_at: u64,
}

/// Queue `k` of a [`Group`]: channel `k`'s pages, then (k == channels) the `rcu_head`s.
/// Every walk of this program is started here, so the verifier checks one call of each
/// walk, not one per queue (15 in a full scan: it took 35 ms per program to verify).
#[inline(never)]
extern "C" fn group_step(k: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: the caller's `Group`.
    let g = unsafe { &*(ctx as *const Group) };
    if k < channels() {
        let list = g.pages.wrapping_add(k.wrapping_mul(LIST_HEAD_SIZE));
        run(bulk_step, list, list);
        return 0;
    }
    let first = read::<u64>(g.heads_at).unwrap_or(0);
    if first != 0 {
        run(head_step, first, 0);
    }
    1
}

#[inline(always)]
fn walk_group(pages: u64, heads_at: u64) {
    let mut g = Group { pages, heads_at };
    for_steps(RCU_MAX_CHANNELS + 1, group_step, &mut g);
}

/// A batch (`kfree_rcu_cpu_work`) handed to `kfree_rcu_work`: its pages (its `rcu_head`s
/// go through `kvfree()`, whose `kfree` is seen).
#[inline(always)]
fn walk_batch(krw: u64) {
    walk_group(krw.wrapping_add(rcfg!(krw_bulk_head_free) as u64), 0);
}

/// The pages a CPU is filling (`kfree_rcu_cpu.bulk_head[]`).
#[inline(always)]
fn walk_filling(krcp: u64) {
    walk_group(krcp.wrapping_add(rcfg!(krcp_bulk_head) as u64), 0);
}

#[repr(C)]
struct Learn {
    krcp: u64,
    hash: u64,
}

/// One probe of the open addressing: done when the slot holds `krcp` or was empty.
#[inline(never)]
extern "C" fn learn_step(i: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: the caller's `Learn`.
    let l = unsafe { &mut *(ctx as *mut Learn) };
    let slot = (l.hash.wrapping_add(i) as u32) & (MAX_KRCP - 1);
    let Some(p) = KRCPS.get_ptr_mut(slot) else {
        return 1;
    };
    // SAFETY: an array slot; a racing learner of another CPU may overwrite an empty slot
    // with its own krcp, which the next run of that CPU's monitor learns again.
    unsafe {
        if *p == l.krcp {
            return 1;
        }
        if *p == 0 {
            *p = l.krcp;
            return 1;
        }
    }
    0
}

/// Remembers a `kfree_rcu_cpu` for the on-demand scan.
#[inline(always)]
fn learn(krcp: u64) {
    if krcp == 0 {
        return;
    }
    let mut l = Learn {
        krcp,
        hash: krcp >> 6,
    };
    for_steps(MAX_KRCP, learn_step, &mut l);
}

/// Learns this CPU's per-CPU offset, once: its `kfree_rcu_cpu` is then known to the walks
/// below without waiting for its monitor to run (up to 5 s after a queue began to fill).
#[inline(always)]
fn learn_this_cpu() {
    if rcfg!(krc_pcpu) == 0 {
        return;
    }
    // SAFETY: a helper without arguments.
    let cpu = unsafe { aya_ebpf::helpers::bpf_get_smp_processor_id() };
    if PCPU_OFF.get(cpu).is_some_and(|v| *v == 0) {
        learn_cpu_offset(current_task());
    }
}

/// Every CPU's `kfree_rcu_cpu` whose per-CPU offset is known, into `KRCPS`.
#[inline(never)]
extern "C" fn seed_step(i: u64, _ctx: *mut c_void) -> i64 {
    let base = PCPU_BASE.get(i as u32).copied().unwrap_or(0);
    if base != 0 {
        learn(base.wrapping_add(rcfg!(krc_pcpu) as u64));
    }
    0
}

#[inline(always)]
fn seed() {
    let (_, _, nr_cpus) = percpu_layout();
    if rcfg!(krc_pcpu) == 0 || nr_cpus == 0 {
        return;
    }
    let n = if nr_cpus as usize > SCAN_MAX_CPUS {
        SCAN_MAX_CPUS as u32
    } else {
        nr_cpus
    };
    // SAFETY: as in `scan`.
    unsafe {
        bpf_loop(
            n,
            seed_step as *const () as *mut c_void,
            core::ptr::null_mut(),
            0,
        )
    };
}

/// At `workqueue_execute_start` (tracking on).
#[inline(always)]
pub fn on_work_start(work: u64, function: u64) {
    let work_fn = rcfg!(kfree_rcu_work);
    if work_fn == 0 || work == 0 {
        return;
    }
    learn_this_cpu();
    if function == work_fn {
        let krw = work.wrapping_sub(rcfg!(krw_work) as u64);
        walk_batch(krw);
        learn(read::<u64>(krw.wrapping_add(rcfg!(krw_krcp) as u64)).unwrap_or(0));
    } else if function == rcfg!(kfree_rcu_monitor) {
        let krcp = work.wrapping_sub(rcfg!(krcp_monitor_work) as u64);
        learn(krcp);
        walk_filling(krcp);
    }
}

/// At `timer_start` of a delayed work (tracking on): `kvfree_call_rcu()` arming its CPU's
/// monitor is where a `kfree_rcu_cpu` first shows, up to 5 s before the monitor runs.
#[inline(always)]
pub fn on_work_armed(work: u64, function: u64) {
    let monitor = rcfg!(kfree_rcu_monitor);
    if monitor != 0 && function == monitor {
        learn(work.wrapping_sub(rcfg!(krcp_monitor_work) as u64));
    }
}

/// Group `g` of a `kfree_rcu_cpu`'s queues: 0 is its own (the pages it fills and `head`),
/// 1.. its batches (`krw_arr[]`: `bulk_head_free[]` and `head_free`).
#[inline(never)]
extern "C" fn cpu_group_step(g: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: the caller's krcp.
    let krcp = unsafe { *(ctx as *const u64) };
    if g > batches() {
        return 1;
    }
    let (pages, heads_at) = if g == 0 {
        (
            krcp.wrapping_add(rcfg!(krcp_bulk_head) as u64),
            krcp.wrapping_add(rcfg!(krcp_head) as u64),
        )
    } else {
        let krw = krcp
            .wrapping_add(rcfg!(krcp_krw_arr) as u64)
            .wrapping_add((g - 1).wrapping_mul(rcfg!(krw_size) as u64));
        (
            krw.wrapping_add(rcfg!(krw_bulk_head_free) as u64),
            krw.wrapping_add(rcfg!(krw_head_free) as u64),
        )
    };
    walk_group(pages, heads_at);
    0
}

/// Every queue of the `kfree_rcu_cpu` in slot `i`.
#[inline(never)]
extern "C" fn scan_step(i: u64, _ctx: *mut c_void) -> i64 {
    let mut krcp = KRCPS.get(i as u32).copied().unwrap_or(0);
    if krcp != 0 {
        for_steps(RCU_MAX_BATCHES + 1, cpu_group_step, &mut krcp);
    }
    0
}

/// Every queue of every `kfree_rcu_cpu` seen.
#[inline(always)]
fn scan() {
    if rcfg!(kfree_rcu_work) == 0 {
        return;
    }
    seed();
    // SAFETY: as in `run`; the callback takes no context.
    unsafe {
        bpf_loop(
            MAX_KRCP,
            scan_step as *const () as *mut c_void,
            core::ptr::null_mut(),
            0,
        )
    };
}

// mm_shrink_slab_start(struct shrinker *shr, struct shrink_control *sc, ...): attached only
// with tracking on and the layout known (`tracer/src/alloc/rcu.rs`).
#[raw_tracepoint(tracepoint = "mm_shrink_slab_start")]
pub fn raw_mm_shrink_slab_start(ctx: RawTracePointContext) -> i32 {
    let target = rcfg!(kfree_rcu_shrink_scan);
    if target == 0 || !crate::alloc::enabled() {
        return 0;
    }
    let shr: u64 = ctx.arg(0);
    let scan_fn = read::<u64>(shr.wrapping_add(rcfg!(shrinker_scan_objects) as u64)).unwrap_or(0);
    if scan_fn == target {
        scan();
    }
    0
}

/// Run by userspace before a leak report: a `bpf_map` iterator, called once per map and
/// once more without one at the end (`struct bpf_iter__bpf_map { meta; map; }`), when it
/// scans.
#[unsafe(no_mangle)]
#[unsafe(link_section = "iter/bpf_map")]
pub fn alloc_rcu_scan(ctx: *mut c_void) -> i32 {
    // SAFETY: reads the context's `map` slot through the helper.
    let map =
        unsafe { aya_ebpf::helpers::bpf_probe_read_kernel((ctx as *const u64).wrapping_add(1)) }
            .unwrap_or(1);
    if map == 0 && crate::alloc::enabled() {
        scan();
    }
    0
}

/// `kvfree_call_rcu()`, where every `kfree_rcu()` and `kvfree_rcu()` enters, on kernels that
/// allow fentry or kprobes (tracking on): the object is given up there. Needed where the
/// queues above do not hold it: from 7.x, slab objects go to per-CPU "sheaves" of
/// to-be-freed objects (`__kfree_rcu_sheaf`) that an RCU callback (`rcu_free_sheaf`) hands
/// back to the slab in bulk, with no tracepoint and no queue to read. Before 6.4 the
/// second argument is the offset of the `rcu_head` in the object (or the object itself for
/// the one-argument form, whose `head` is NULL); from 6.4 it is the object.
#[inline(always)]
fn on_kvfree_call(head: u64, ptr: u64) {
    if !crate::alloc::enabled() {
        return;
    }
    let obj = if ptr < 4096 {
        head.wrapping_sub(ptr)
    } else {
        ptr
    };
    if head == 0 && ptr < 4096 {
        return;
    }
    forget(obj);
}

// void kvfree_call_rcu(struct rcu_head *head, void *ptr)
#[fentry(function = "kvfree_call_rcu")]
pub fn fentry_kvfree_call_rcu(ctx: FEntryContext) -> i32 {
    on_kvfree_call(ctx.arg(0), ctx.arg(1));
    0
}

#[kprobe]
pub fn kprobe_kvfree_call_rcu(ctx: ProbeContext) -> u32 {
    on_kvfree_call(ctx.arg(0).unwrap_or(0), ctx.arg(1).unwrap_or(0));
    0
}
