//! Reading kernel memory for userspace (`kmem_peek`): the leak reports' reachability scan
//! (kmemleak's rule: an object whose address is held in global data is referenced, not
//! leaked) reads the kernel's and the modules' data sections through it. The kernel here
//! has no `/proc/kcore`; a BPF iterator can read what a probe can.

use core::ffi::c_void;

use aya_ebpf::{
    bindings::seq_file,
    helpers::{bpf_probe_read_kernel, bpf_probe_read_kernel_buf, generated::bpf_seq_write},
    macros::map,
    maps::{Array, PerCpuArray},
};
use tracer_fs::wire::alloc::{PEEK_PIECE, PEEK_PIECES};

/// `[address, length]` of the next read, set by userspace before each run.
#[map]
pub static PEEK_AT: Array<u64> = Array::with_max_entries(2, 0);

/// One piece, staged (too large for the stack).
#[map]
pub static PEEK_BUF: PerCpuArray<[u8; PEEK_PIECE]> = PerCpuArray::with_max_entries(1, 0);

/// Run by userspace: a `bpf_map` iterator, called once per map and once more without one
/// at the end (`struct bpf_iter__bpf_map { meta; map; }`), when it reads.
#[unsafe(no_mangle)]
#[unsafe(link_section = "iter/bpf_map")]
pub fn kmem_peek(ctx: *mut c_void) -> i32 {
    // SAFETY: reads the context's `map` slot through the helper.
    let map = unsafe { bpf_probe_read_kernel((ctx as *const u64).wrapping_add(1)) }.unwrap_or(1);
    if map != 0 {
        return 0;
    }
    let addr = PEEK_AT.get(0).copied().unwrap_or(0);
    let len = PEEK_AT.get(1).copied().unwrap_or(0);
    let Some(buf) = PEEK_BUF.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: a per-CPU map value, ours while the program runs.
    let buf = unsafe { &mut *buf };
    // SAFETY: slot 0 of an iterator context is `struct bpf_iter_meta *`; `meta->seq` is its
    // first member (see snapshot.rs).
    let seq = unsafe {
        let meta = *(ctx as *const *const *mut seq_file);
        *meta
    };
    let mut i = 0;
    while i < PEEK_PIECES {
        let off = (i * PEEK_PIECE) as u64;
        if off >= len {
            break;
        }
        // SAFETY: the helper checks the address; on failure it zeroes the piece.
        let status: u64 =
            match unsafe { bpf_probe_read_kernel_buf(addr.wrapping_add(off) as *const u8, buf) } {
                Ok(()) => 0,
                Err(e) => e as u64,
            };
        // SAFETY: writes into the iterator's output.
        unsafe {
            bpf_seq_write(seq, (&status as *const u64).cast(), 8);
            bpf_seq_write(
                seq,
                (buf as *const [u8; PEEK_PIECE]).cast(),
                PEEK_PIECE as u32,
            );
        }
        i += 1;
    }
    0
}
