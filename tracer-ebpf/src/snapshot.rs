//! The attach-time snapshot: a `task_file` iterator that writes one `FileRef` (holder: that
//! fd of that process, source: snapshot) per open file into the iterator's seq file, so
//! references that predate attach are known.

use core::ffi::c_void;

use aya_ebpf::helpers::bpf_probe_read_kernel;
use tracer_fs::wire::{HolderKind, RefSource};

use crate::{
    files::{fill_file_ref, scratch_file_ref},
    iter_out::{fill_task_header, seq_write},
};

/// `struct bpf_iter__task_file { meta; task; fd; file; }`: an iterator's context is an
/// array of its arguments, one u64 slot each (the BPF iterator ABI).
const ARG_TASK: u64 = 1;
const ARG_FD: u64 = 2;
const ARG_FILE: u64 = 3;

#[inline(always)]
fn arg(ctx: *mut c_void, n: u64) -> u64 {
    // SAFETY: reads a context slot through the helper, which yields a plain number.
    unsafe { bpf_probe_read_kernel((ctx as *const u64).wrapping_add(n as usize)) }.unwrap_or(0)
}

#[unsafe(no_mangle)]
#[unsafe(link_section = "iter/task_file")]
pub fn snapshot_task_file(ctx: *mut c_void) -> i32 {
    let task = arg(ctx, ARG_TASK);
    let file = arg(ctx, ARG_FILE);
    if task == 0 || file == 0 {
        return 0;
    }
    let fd = arg(ctx, ARG_FD) as u32 as i32;
    let Some(rec) = scratch_file_ref() else {
        return 0;
    };
    fill_file_ref(rec, file, HolderKind::Fd, RefSource::Snapshot, fd, 0, 0, 0);
    if rec.mnt_id < 0 {
        return 0;
    }
    fill_task_header(rec, task);
    seq_write(ctx, rec);
    0
}
