//! Slab allocation hooks. For now: counters, and the death of every `struct file` (the
//! `filp` cache), which is when `__fput()` has dropped the file's mount reference: the
//! tracepoint tier's stand-in for a `__fput` hook (see `precise.rs`).
//!
//! As in `work.rs`, raw-tracepoint argument positions are checked by userspace against the
//! running kernel's BTF; the classic programs are the fallback.

use aya_ebpf::{
    EbpfContext,
    helpers::{bpf_probe_read_kernel_buf, bpf_probe_read_kernel_str_bytes},
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};
use tracer_fs::wire::{FileFree, TaskResFree, btf_off, counter, slab_cache, task_res, tp_field};

use crate::{
    alloc,
    config::{btf, field, tp},
    emit::{count, emit},
    free_twin,
    kernel::{file_mnt_ino, member, read},
    maps::{CACHES, PRECISE_RELEASE},
};

const FILP: &[u8; 5] = b"filp\0";

/// Slots of `CACHES`.
const CACHE_FILP: u32 = slab_cache::FILP;
const CACHE_FILES: u32 = slab_cache::FILES;
const CACHE_FS: u32 = slab_cache::FS;

/// The names of the caches in `CACHES`, NUL-terminated, padded to 12 bytes.
const NAMES: [(&[u8; 12], u32); 3] = [
    (b"filp\0\0\0\0\0\0\0\0", CACHE_FILP),
    (b"files_cache\0", CACHE_FILES),
    (b"fs_cache\0\0\0\0", CACHE_FS),
];

/// A slot's value for a cache that cannot be told apart: merged with others (SLUB
/// aliases), so its frees are not all of its own objects. Set by userspace for a cache
/// `/proc/slabinfo` does not list (an alias under another's name, which no free here
/// shows), and here for one whose name shows but that others were merged into. Known
/// slots stop the name reads: before, a merged `fs_cache` (6.18 merges it with
/// `anon_vma_chain`) had every slab free in the system read a cache name.
const UNUSABLE: u64 = slab_cache::UNUSABLE;

#[inline(always)]
fn cache(slot: u32) -> u64 {
    CACHES.get(slot).copied().unwrap_or(0)
}

/// Learns the pointers of the caches we care about from the first objects of theirs that
/// are allocated or freed (one name read per call until all three are known).
#[inline(always)]
fn discover(cache_ptr: u64) {
    let Some(off) = btf(btf_off::KMEM_CACHE_NAME) else {
        return;
    };
    let Some(name) = read::<u64>(cache_ptr.wrapping_add(off)) else {
        return;
    };
    // Zeroed, so the bytes after the name's NUL compare equal to the padding.
    let mut buf = [0u8; 12];
    // SAFETY: the helper bounds the copy by `buf`.
    if unsafe { bpf_probe_read_kernel_str_bytes(name as *const u8, &mut buf) }.is_err() {
        return;
    }
    // A merged cache (SLUB aliases: `fs_cache` shares one with `anon_vma_chain` on some
    // kernels) frees other objects too: only a cache of its own tells what was freed.
    let merged = member::<i32>(cache_ptr, btf_off::KMEM_CACHE_REFCOUNT).is_none_or(|r| r != 1);
    for (want, slot) in NAMES {
        if buf == *want {
            let v = if slot == CACHE_FILP || !merged {
                cache_ptr
            } else {
                UNUSABLE
            };
            if let Some(p) = CACHES.get_ptr_mut(slot) {
                // SAFETY: a u64 slot; racing writers write the same value.
                unsafe { *p = v };
            }
        }
    }
}

#[inline(always)]
fn all_known() -> bool {
    cache(CACHE_FILP) != 0 && cache(CACHE_FILES) != 0 && cache(CACHE_FS) != 0
}

#[inline(always)]
fn on_cache_alloc(cache_ptr: u64) {
    count(counter::KMEM_CACHE_ALLOC);
    if !all_known() {
        discover(cache_ptr);
    }
    if cache_ptr == cache(CACHE_FILP) {
        count(counter::FILP_ALLOC);
    }
}

/// An exiting task's fd table or fs_struct freed (or any task's: the engine decides).
#[inline(always)]
fn send_task_res_free(what: u32, ptr: u64) {
    emit::<TaskResFree>(|rec| {
        rec.what = what;
        rec._pad = 0;
        rec.ptr = ptr;
    });
}

#[inline(always)]
fn on_file_free(file: u64) {
    count(counter::FILP_FREE);
    // The precise `__fput` hook reports the real release; this free comes later (after
    // an RCU grace period on some kernels) and would only blur it.
    if PRECISE_RELEASE.get(0).is_some_and(|v| *v != 0) {
        return;
    }
    send_file_free(file);
}

/// The release of `file` (its mount reference gone): from the filp free here, or from the
/// precise `__fput` hook.
#[inline(always)]
pub fn send_file_free(file: u64) {
    crate::space::forget(file);
    // A file that never got a path (a failed open) pinned no mount: nothing to say.
    let (mnt_id, ino) = file_mnt_ino(file);
    if mnt_id < 0 {
        return;
    }
    emit::<FileFree>(|rec| {
        rec.file = file;
        rec.ino = ino;
        rec.mnt_id = mnt_id;
        rec._pad = 0;
    });
}

#[inline(always)]
fn on_cache_free(ptr: u64, cache_ptr: u64) {
    count(counter::KMEM_CACHE_FREE);
    // Each slot read once: this runs on every slab free in the system.
    let (filp, files, fs) = (cache(CACHE_FILP), cache(CACHE_FILES), cache(CACHE_FS));
    if filp == 0 || files == 0 || fs == 0 {
        // The alloc hook may be the classic one, which does not learn the cache pointers.
        discover(cache_ptr);
    }
    if cache_ptr == 0 {
        return;
    }
    if cache_ptr == filp {
        on_file_free(ptr);
    } else if cache_ptr == files {
        send_task_res_free(task_res::FILES, ptr);
    } else if cache_ptr == fs {
        send_task_res_free(task_res::FS, ptr);
    }
}

// kmem_cache_alloc(unsigned long call_site, const void *ptr, struct kmem_cache *s, ..)
#[raw_tracepoint(tracepoint = "kmem_cache_alloc")]
pub fn raw_kmem_cache_alloc(ctx: RawTracePointContext) -> i32 {
    let cache = ctx.arg(2);
    on_cache_alloc(cache);
    if alloc::enabled() {
        alloc::on_alloc(&ctx, ctx.arg(0), ctx.arg(1), 0, cache);
    }
    0
}

// kmem_cache_free(unsigned long call_site, const void *ptr, const struct kmem_cache *s)
#[inline(always)]
fn cache_free(ctx: &RawTracePointContext) {
    on_cache_free(ctx.arg(1), ctx.arg(2));
    if alloc::enabled() {
        alloc::on_free(ctx.arg(1));
    }
}

#[raw_tracepoint(tracepoint = "kmem_cache_free")]
pub fn raw_kmem_cache_free(ctx: RawTracePointContext) -> i32 {
    cache_free(&ctx);
    free_twin::done(free_twin::SLOT_CACHE, ctx.arg(1));
    0
}

/// `raw_kmem_cache_free`'s twin (see `free_twin`), attached right after it.
#[raw_tracepoint(tracepoint = "kmem_cache_free")]
pub fn raw_kmem_cache_free_twin(ctx: RawTracePointContext) -> i32 {
    if free_twin::missed(free_twin::SLOT_CACHE, ctx.arg(1)) {
        cache_free(&ctx);
    }
    0
}

// kmalloc(unsigned long call_site, const void *ptr, size_t bytes_req, size_t bytes_alloc, ..)
#[raw_tracepoint(tracepoint = "kmalloc")]
pub fn raw_kmalloc(ctx: RawTracePointContext) -> i32 {
    count(counter::KMALLOC);
    if alloc::enabled() {
        alloc::on_alloc(&ctx, ctx.arg(0), ctx.arg(1), ctx.arg(2), 0);
    }
    0
}

// kfree(unsigned long call_site, const void *ptr)
#[inline(always)]
fn on_kfree(ctx: &RawTracePointContext) {
    count(counter::KFREE);
    if alloc::enabled() {
        alloc::on_free(ctx.arg(1));
    }
}

#[raw_tracepoint(tracepoint = "kfree")]
pub fn raw_kfree(ctx: RawTracePointContext) -> i32 {
    on_kfree(&ctx);
    free_twin::done(free_twin::SLOT_KFREE, ctx.arg(1));
    0
}

/// `raw_kfree`'s twin (see `free_twin`), attached right after it.
#[raw_tracepoint(tracepoint = "kfree")]
pub fn raw_kfree_twin(ctx: RawTracePointContext) -> i32 {
    if free_twin::missed(free_twin::SLOT_KFREE, ctx.arg(1)) {
        on_kfree(&ctx);
    }
    0
}

/// Whether the classic kmem_cache record at `ctx` names the `filp` cache (its `name` is a
/// `__data_loc` string: offset in the low 16 bits, length in the high 16).
#[inline(always)]
fn classic_is_filp(ctx: &TracePointContext) -> bool {
    let Some(off) = tp(tp_field::KMEM_NAME) else {
        return false;
    };
    // SAFETY: offset from the format file.
    let Ok(loc) = (unsafe { ctx.read_at::<u32>(off) }) else {
        return false;
    };
    let mut buf = [0u8; 5];
    let src = (ctx.as_ptr() as u64).wrapping_add((loc & 0xffff) as u64);
    // SAFETY: the helper checks the address and bounds the copy.
    unsafe { bpf_probe_read_kernel_buf(src as *const u8, &mut buf) }.is_ok() && &buf == FILP
}

#[tracepoint]
pub fn kmem_cache_alloc(ctx: TracePointContext) -> u32 {
    count(counter::KMEM_CACHE_ALLOC);
    if classic_is_filp(&ctx) {
        count(counter::FILP_ALLOC);
    }
    0
}

#[tracepoint]
pub fn kmem_cache_free(ctx: TracePointContext) -> u32 {
    count(counter::KMEM_CACHE_FREE);
    if classic_is_filp(&ctx) {
        on_file_free(field(&ctx, tp_field::KMEM_PTR));
    }
    0
}

#[tracepoint]
pub fn kmalloc(_ctx: TracePointContext) -> u32 {
    count(counter::KMALLOC);
    0
}

#[tracepoint]
pub fn kfree(_ctx: TracePointContext) -> u32 {
    count(counter::KFREE);
    0
}
