//! The on-demand task scan (`iter/task`), run by userspace when a umount fails with EBUSY:
//! one `TaskScan` record per thread into the iterator's seq file, with its cwd and root
//! mounts and whether it still has its fd table, fs_struct and mm; for a thread inside
//! `do_exit()`, its kernel stack (where it waits: e.g. `exit_aio` ← `__mmput`). Threads that
//! neither exit nor have a cwd/root are written too (the reader filters by mount): a scan
//! of a few hundred tasks is a few tens of KiB.

use core::ffi::c_void;

use aya_ebpf::{
    bindings::seq_file,
    helpers::{
        bpf_probe_read_kernel_buf,
        generated::{
            bpf_get_smp_processor_id, bpf_get_task_stack, bpf_ktime_get_boot_ns, bpf_seq_write,
        },
    },
};
use tracer_fs::wire::{PF_EXITING, RecordKind, TASK_STACK_FRAMES, TaskScan, btf_off};

use crate::{config::btf, kernel::member, maps::SCRATCH_TASK};

/// `mount.mnt_id` of a `struct vfsmount *`, or -1.
#[inline(always)]
fn vfsmount_id(vfsmount: u64) -> i32 {
    if vfsmount == 0 {
        return -1;
    }
    member::<i32>(vfsmount, btf_off::VFSMOUNT_TO_MNT_ID).unwrap_or(-1)
}

#[unsafe(no_mangle)]
#[unsafe(link_section = "iter/task")]
pub fn task_scan(ctx: *mut c_void) -> i32 {
    // `struct bpf_iter__task { meta; task; }`: loaded straight from the context, so the
    // verifier knows `task` as a (nullable) `task_struct` pointer, as `bpf_get_task_stack`
    // requires. NULL marks the end of the walk.
    // SAFETY: slot 1 of an iterator context is the task pointer.
    let task_ptr = unsafe { *(ctx as *const *mut c_void).add(1) };
    if task_ptr.is_null() {
        return 0;
    }
    let task = task_ptr as u64;
    let Some(rec) = SCRATCH_TASK.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: per-CPU slot, ours for the duration of this program.
    let rec = unsafe { &mut *rec };
    let h = &mut rec.hdr;
    h.kind = RecordKind::TaskScan as u16;
    h.size = RecordKind::TaskScan.size() as u32;
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
    rec.flags = member::<u32>(task, btf_off::TASK_FLAGS).unwrap_or(0);
    rec.state = member::<u32>(task, btf_off::TASK_STATE).unwrap_or(0);
    rec.exit_state = member::<u32>(task, btf_off::TASK_EXIT_STATE).unwrap_or(0);
    let files = member::<u64>(task, btf_off::TASK_FILES).unwrap_or(0);
    let fs = member::<u64>(task, btf_off::TASK_FS).unwrap_or(0);
    let mm = member::<u64>(task, btf_off::TASK_MM).unwrap_or(0);
    rec.has_files = (files != 0) as u8;
    rec.has_fs = (fs != 0) as u8;
    rec.has_mm = (mm != 0) as u8;
    rec._pad = 0;
    if fs != 0 {
        rec.pwd_mnt_id = vfsmount_id(member::<u64>(fs, btf_off::FS_PWD_MNT).unwrap_or(0));
        rec.root_mnt_id = vfsmount_id(member::<u64>(fs, btf_off::FS_ROOT_MNT).unwrap_or(0));
    } else {
        rec.pwd_mnt_id = -1;
        rec.root_mnt_id = -1;
    }
    rec.nr_frames = 0;
    if rec.flags & PF_EXITING != 0 && rec.exit_state == 0 {
        // SAFETY: `task_ptr` is the iterator's own (non-NULL) task; the helper bounds the
        // copy by the buffer's size.
        let n = unsafe {
            bpf_get_task_stack(
                task_ptr.cast(),
                rec.frames.as_mut_ptr().cast(),
                (TASK_STACK_FRAMES * 8) as u32,
                0,
            )
        };
        if n > 0 {
            rec.nr_frames = (n / 8) as u32;
        }
    }
    // SAFETY: slot 0 of an iterator context is `struct bpf_iter_meta *`; `meta->seq` is its
    // first member (see snapshot.rs).
    let seq = unsafe {
        let meta = *(ctx as *const *const *mut seq_file);
        *meta
    };
    // SAFETY: writes the record into the iterator's output.
    unsafe {
        bpf_seq_write(
            seq,
            (rec as *const TaskScan).cast(),
            size_of::<TaskScan>() as u32,
        );
    }
    0
}
