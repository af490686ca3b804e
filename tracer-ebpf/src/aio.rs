//! Linux AIO, counted from its syscalls alone (the kernel has no aio tracepoints): per
//! process, the iocbs `io_submit` accepted, the completions `io_getevents` and
//! `io_pgetevents` returned, and the files of the latest submissions. Nothing goes to the
//! ring buffer (fsstress submits a lot): the counts stay in `AIO_TASKS`, which userspace
//! reads when a umount fails. An in-flight request holds its file (`fget` at submission),
//! and a dying process waits in `exit_aio()` for its requests before it lets go of its fd
//! table and cwd.

use core::ffi::c_void;

use aya_ebpf::helpers::{
    bpf_get_current_pid_tgid, bpf_probe_read_user, generated::bpf_ktime_get_boot_ns,
};
use tracer_fs::wire::{AIO_FILES, AioAcct, btf_off, tp_field};

use crate::{
    config::btf,
    emit::is_self,
    kernel::{Fds, current_fds, file_mnt_id, for_steps},
    maps::AIO_TASKS,
    sys::{SysCtx, sys_programs},
};

fn tgid() -> u32 {
    (bpf_get_current_pid_tgid() >> 32) as u32
}

/// This process's entry, made on its first submission.
#[inline(always)]
fn entry(create: bool) -> Option<&'static mut AioAcct> {
    let t = tgid();
    if let Some(p) = AIO_TASKS.get_ptr_mut(&t) {
        // SAFETY: a map value, valid while the program runs.
        return Some(unsafe { &mut *p });
    }
    if !create {
        return None;
    }
    let _ = AIO_TASKS.insert(&t, &AioAcct::default(), 0);
    // SAFETY: as above.
    AIO_TASKS.get_ptr_mut(&t).map(|p| unsafe { &mut *p })
}

/// A plain add: the BPF target's `core` has no atomic read-modify-write, so two threads
/// of one process submitting on two CPUs at the same instant may lose a count (processes,
/// as fsstress forks them, each have their own entry).
#[inline(always)]
fn add(counter: &mut u64, n: u64) {
    *counter = counter.wrapping_add(n);
}

#[repr(C)]
struct Submit {
    iocbpp: u64,
    nr: u64,
    fildes_off: u64,
    table: Fds,
}

/// The file of iocb `i`, noted in the submitting process's entry.
#[inline(never)]
extern "C" fn submit_step(i: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: the caller's `Submit` (bpf_loop passes it through).
    let w = unsafe { &*(ctx as *const Submit) };
    if i >= w.nr {
        return 1;
    }
    let Some(e) = entry(false) else {
        return 1;
    };
    // SAFETY: the helper checks the user addresses.
    let iocb = unsafe { bpf_probe_read_user((w.iocbpp + 8 * i) as *const u64) }.unwrap_or(0);
    let fd =
        unsafe { bpf_probe_read_user((iocb + w.fildes_off) as *const u32) }.unwrap_or(u32::MAX);
    let Some(file) = w.table.file(fd as i32) else {
        return 0;
    };
    if e.files.contains(&file) {
        return 0;
    }
    e.files[3] = e.files[2];
    e.files[2] = e.files[1];
    e.files[1] = e.files[0];
    e.files[0] = file;
    e.mnt_ids[3] = e.mnt_ids[2];
    e.mnt_ids[2] = e.mnt_ids[1];
    e.mnt_ids[1] = e.mnt_ids[0];
    e.mnt_ids[0] = file_mnt_id(file).unwrap_or(-1);
    0
}

// Notes the files of the first iocbs (those submitted first): newest first, distinct.
sys_programs!(enter sys_enter_io_submit, raw_sys_enter_io_submit => io_submit_enter);

#[inline(always)]
fn io_submit_enter(ctx: &impl SysCtx) -> u32 {
    if is_self() {
        return 0;
    }
    let Some(fildes_off) = btf(btf_off::IOCB_AIO_FILDES) else {
        return 0;
    };
    let ctx_id = ctx.arg(tp_field::IO_SUBMIT_CTX);
    let nr = ctx.arg(tp_field::IO_SUBMIT_NR);
    let iocbpp = ctx.arg(tp_field::IO_SUBMIT_IOCBPP);
    let Some(table) = current_fds() else {
        return 0;
    };
    let Some(e) = entry(true) else {
        return 0;
    };
    e.ctx = ctx_id;
    // SAFETY: no preconditions.
    e.last_submit_ns = unsafe { bpf_ktime_get_boot_ns() };
    let mut walk = Submit {
        iocbpp,
        nr,
        fildes_off,
        table,
    };
    // A bpf_loop, whose body the verifier checks once: unrolled, the four iocbs (each an fd
    // table and a mount read) made a path too long for 6.1's verifier ("the sequence of
    // 8193 jumps is too complex").
    for_steps(AIO_FILES as u32, submit_step, &mut walk);
    0
}

sys_programs!(exit sys_exit_io_submit, raw_sys_exit_io_submit => io_submit_exit);

#[inline(always)]
fn io_submit_exit(ctx: &impl SysCtx) -> u32 {
    let ret = ctx.arg(tp_field::SYS_RET) as i64;
    if ret > 0
        && let Some(e) = entry(false)
    {
        add(&mut e.submitted, ret as u64);
    }
    0
}

// Attached to the exits of io_getevents and io_pgetevents.
sys_programs!(exit sys_exit_io_getevents_family, raw_sys_exit_io_getevents_family => io_getevents_exit);

#[inline(always)]
fn io_getevents_exit(ctx: &impl SysCtx) -> u32 {
    let ret = ctx.arg(tp_field::SYS_RET) as i64;
    if ret > 0
        && let Some(e) = entry(false)
    {
        add(&mut e.reaped, ret as u64);
    }
    0
}

// A process with an AIO context is known even before it submits: its exit waits in
// exit_aio() for the context's teardown whatever is in flight.
sys_programs!(exit sys_exit_io_setup, raw_sys_exit_io_setup => io_setup_exit);

#[inline(always)]
fn io_setup_exit(ctx: &impl SysCtx) -> u32 {
    let ret = ctx.arg(tp_field::SYS_RET) as i64;
    if ret == 0 && !is_self() {
        let _ = entry(true);
    }
    0
}

// io_destroy waits for every request of the context: none is in flight after it.
sys_programs!(exit sys_exit_io_destroy, raw_sys_exit_io_destroy => io_destroy_exit);

#[inline(always)]
fn io_destroy_exit(ctx: &impl SysCtx) -> u32 {
    let ret = ctx.arg(tp_field::SYS_RET) as i64;
    if ret == 0
        && let Some(e) = entry(false)
    {
        e.reaped = e.submitted;
    }
    0
}
