//! The attach-time snapshot: a `task_file` iterator that writes one `FileRef` (holder: that
//! fd of that process, source: snapshot) per open file into the iterator's seq file, so
//! references that predate attach are known.

use core::ffi::c_void;

use aya_ebpf::{
    bindings::seq_file,
    helpers::{
        bpf_probe_read_kernel, bpf_probe_read_kernel_buf,
        generated::{bpf_get_smp_processor_id, bpf_ktime_get_boot_ns, bpf_seq_write},
    },
};
use tracer_fs::wire::{FileRef, HolderKind, RecordKind, RefSource, btf_off};

use crate::{
    config::btf,
    files::{fill_file_ref, scratch_file_ref},
    kernel::member,
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
    let h = &mut rec.hdr;
    h.kind = RecordKind::FileRef as u16;
    h.size = RecordKind::FileRef.size() as u32;
    // SAFETY: helpers without preconditions.
    h.cpu = unsafe { bpf_get_smp_processor_id() } as u16;
    h.ts_ns = unsafe { bpf_ktime_get_boot_ns() };
    h.pid = member::<u32>(task, btf_off::TASK_PID).unwrap_or(0);
    h.tgid = member::<u32>(task, btf_off::TASK_TGID).unwrap_or(0);
    h.work = 0;
    h.work_fn = 0;
    h.comm[0] = 0;
    if let Some(off) = btf(btf_off::TASK_COMM) {
        // SAFETY: the helper checks the address and bounds the copy.
        if unsafe { bpf_probe_read_kernel_buf(task.wrapping_add(off) as *const u8, &mut h.comm) }
            .is_err()
        {
            h.comm[0] = 0;
        }
    }
    // The seq file must come from the context's own `meta` pointer (a typed kernel pointer
    // the verifier tracks), so it is loaded directly: `meta->seq` is its first member.
    // SAFETY: slot 0 of an iterator context is `struct bpf_iter_meta *`, never NULL.
    let seq = unsafe {
        let meta = *(ctx as *const *const *mut seq_file);
        *meta
    };
    // SAFETY: writes the record into the iterator's output.
    unsafe {
        bpf_seq_write(
            seq,
            (rec as *const FileRef).cast(),
            size_of::<FileRef>() as u32,
        );
    }
    0
}
