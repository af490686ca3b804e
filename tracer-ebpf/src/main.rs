//! tracer's eBPF programs. Each program turns one kernel hook into a small fixed record
//! (`tracer_fs::wire`) on the `EVENTS` ring buffer, or into a counter. Everything about the
//! running kernel's layout (tracepoint field offsets, structure member offsets) comes from
//! userspace through the `CONFIG` global before load: nothing is baked in at build time.
#![no_std]
// Inline assembly for the atomic fetch-and-add (`kernel::fetch_add`): the `bpfel` target's
// `core` has no atomic read-modify-write.
#![cfg_attr(target_arch = "bpf", feature(asm_experimental_arch))]
#![no_main]
// Map keys and values go to aya's `impl Borrow<K>` by reference on purpose: by value, a
// record or path buffer would be copied onto the 512-byte BPF stack first.
#![allow(clippy::needless_borrows_for_generic_args)]

mod config;
mod console;
mod emit;
mod iter_out;
mod kernel;
mod maps;

mod aio;
mod alloc;
mod alloc_rcu;
mod doctor;
mod files;
mod floor;
mod free_twin;
mod kmem;
mod locks;
mod mounts;
mod peek;
mod precise;
mod snapshot;
mod space;
mod sys;
mod task_scan;
mod tasks;
mod uring;
mod vma_scan;
mod work;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
