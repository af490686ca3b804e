//! What the iterator programs (`snapshot`, `task_scan`, `vma_scan`) share: the header of a
//! record about a task that is not the current one, and writing a record to the
//! iterator's output.

use core::ffi::c_void;

use aya_ebpf::{
    bindings::seq_file,
    helpers::{
        bpf_probe_read_kernel_buf,
        generated::{bpf_get_smp_processor_id, bpf_ktime_get_boot_ns, bpf_seq_write},
    },
};
use tracer_fs::wire::{Record, btf_off};

use crate::{config::btf, kernel::member};

/// Fills `rec`'s header as a `T::KIND` record about `task` (its pid, tgid and comm), made
/// now on this CPU; a `task` of 0 leaves them empty (a mount's figures).
#[inline(always)]
pub fn fill_task_header<T: Record>(rec: &mut T, task: u64) {
    let h = rec.hdr_mut();
    h.kind = T::KIND as u16;
    h.size = T::KIND.size() as u32;
    // SAFETY: helpers without preconditions.
    h.cpu = unsafe { bpf_get_smp_processor_id() } as u16;
    h.ts_ns = unsafe { bpf_ktime_get_boot_ns() };
    h.work = 0;
    h.work_fn = 0;
    h.comm[0] = 0;
    if task == 0 {
        h.pid = 0;
        h.tgid = 0;
        return;
    }
    h.pid = member::<u32>(task, btf_off::TASK_PID).unwrap_or(0);
    h.tgid = member::<u32>(task, btf_off::TASK_TGID).unwrap_or(0);
    if let Some(off) = btf(btf_off::TASK_COMM) {
        // SAFETY: the helper checks the address and bounds the copy.
        if unsafe { bpf_probe_read_kernel_buf(task.wrapping_add(off) as *const u8, &mut h.comm) }
            .is_err()
        {
            h.comm[0] = 0;
        }
    }
}

/// Writes `rec` whole to the output of the iterator whose context is `ctx`.
#[inline(always)]
pub fn seq_write<T: Record>(ctx: *mut c_void, rec: &T) {
    // The seq file must come from the context's own `meta` pointer (a typed kernel pointer
    // the verifier tracks), so it is loaded directly: `meta->seq` is its first member.
    // SAFETY: slot 0 of an iterator context is `struct bpf_iter_meta *`, never NULL; the
    // helper copies `size_of::<T>()` bytes of a record we own.
    unsafe {
        let meta = *(ctx as *const *const *mut seq_file);
        bpf_seq_write(*meta, (rec as *const T).cast(), size_of::<T>() as u32);
    }
}
