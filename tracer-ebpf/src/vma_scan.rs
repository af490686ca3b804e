//! The on-demand VMA scan (`iter/task_vma`), run by userspace when a umount fails with
//! EBUSY: one `FileRef` (holder: a mapping of that process, source: `VmaScan`) per memory
//! mapping whose file is on one of the mounts in `VMA_MOUNTS`. A mapping holds its own
//! reference to the file (`vma->vm_file`), so a process that mapped a file and closed its
//! fd still pins the mount; no fd scan sees it.

use core::ffi::c_void;

use aya_ebpf::helpers::bpf_probe_read_kernel;
use tracer_fs::wire::{HolderKind, RefSource, VMA_SCAN_MOUNTS, btf_off};

use crate::{
    files::{fill_file_ref, scratch_file_ref},
    iter_out::{fill_task_header, seq_write},
    kernel::{file_mnt_id, member},
    maps::VMA_MOUNTS,
};

/// `struct bpf_iter__task_vma { meta; task; vma; }`: one u64 slot per argument.
const ARG_TASK: u64 = 1;
const ARG_VMA: u64 = 2;

#[inline(always)]
fn arg(ctx: *mut c_void, n: u64) -> u64 {
    // SAFETY: reads a context slot through the helper, which yields a plain number.
    unsafe { bpf_probe_read_kernel((ctx as *const u64).wrapping_add(n as usize)) }.unwrap_or(0)
}

/// Whether `mnt_id` is one of the mounts this scan is about.
#[inline(always)]
fn wanted(mnt_id: i32) -> bool {
    let mut i = 0;
    while i < VMA_SCAN_MOUNTS {
        match VMA_MOUNTS.get(i as u32) {
            Some(&m) if m == mnt_id => return true,
            Some(&m) if m < 0 => return false,
            None => return false,
            _ => {}
        }
        i += 1;
    }
    false
}

#[unsafe(no_mangle)]
#[unsafe(link_section = "iter/task_vma")]
pub fn vma_scan(ctx: *mut c_void) -> i32 {
    let task = arg(ctx, ARG_TASK);
    let vma = arg(ctx, ARG_VMA);
    if task == 0 || vma == 0 {
        return 0;
    }
    let file = member::<u64>(vma, btf_off::VMA_VM_FILE).unwrap_or(0);
    if file == 0 {
        return 0;
    }
    // Most mappings are libraries and binaries elsewhere: only the mount is read for them.
    match file_mnt_id(file) {
        Some(m) if wanted(m) => {}
        _ => return 0,
    }
    let start = member::<u64>(vma, btf_off::VMA_VM_START).unwrap_or(0);
    let end = member::<u64>(vma, btf_off::VMA_VM_END).unwrap_or(0);
    let Some(rec) = scratch_file_ref() else {
        return 0;
    };
    fill_file_ref(
        rec,
        file,
        HolderKind::Mmap,
        RefSource::VmaScan,
        -1,
        start,
        end,
        0,
    );
    fill_task_header(rec, task);
    seq_write(ctx, rec);
    0
}
