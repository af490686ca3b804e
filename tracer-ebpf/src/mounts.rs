//! mount(2), umount2(2), move_mount(2), fsmount(2): the arguments at entry, the result at
//! exit, sent as one `MountCall` record.

use aya_ebpf::{
    bindings::BPF_RB_FORCE_WAKEUP,
    helpers::{
        bpf_get_current_pid_tgid, bpf_probe_read_user_str_bytes, generated::bpf_ktime_get_boot_ns,
    },
    macros::tracepoint,
    programs::TracePointContext,
};
use tracer_fs::wire::{MountCall, MountOp, RecordKind, counter, tp_field};

use crate::{
    config::tp,
    emit::{count, fill_header, is_self, reserve, submit_now},
    maps::{PENDING_MOUNT, SCRATCH_MOUNT, URGENT},
};

/// `-EBUSY` as syscalls return it.
const EBUSY: i64 = -16;

#[inline(always)]
fn user_str(ctx: &TracePointContext, field: usize, buf: &mut [u8]) {
    buf[0] = 0;
    let Some(off) = tp(field) else { return };
    // SAFETY: reading the tracepoint record at an offset from its format file.
    let Ok(ptr) = (unsafe { ctx.read_at::<u64>(off) }) else {
        return;
    };
    if ptr == 0 {
        return;
    }
    // SAFETY: the helper checks the user address and bounds the copy.
    if unsafe { bpf_probe_read_user_str_bytes(ptr as *const u8, buf) }.is_err() {
        buf[0] = 0;
    }
}

#[inline(always)]
fn enter(
    ctx: &TracePointContext,
    op: MountOp,
    source: usize,
    target: usize,
    fstype: usize,
    flags: usize,
) -> u32 {
    if is_self() {
        return 0;
    }
    let Some(rec) = SCRATCH_MOUNT.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: per-CPU scratch slot, ours for the duration of this program.
    let rec = unsafe { &mut *rec };
    rec.op = op as u32;
    rec.flags = match tp(flags) {
        // SAFETY: offset from the format file.
        Some(off) => unsafe { ctx.read_at::<u64>(off) }.unwrap_or(0) as u32,
        None => 0,
    };
    rec.ret = 0;
    // SAFETY: no preconditions.
    rec.enter_ns = unsafe { bpf_ktime_get_boot_ns() };
    user_str(ctx, source, &mut rec.source);
    user_str(ctx, target, &mut rec.target);
    user_str(ctx, fstype, &mut rec.fstype);
    if PENDING_MOUNT
        .insert(&bpf_get_current_pid_tgid(), rec, 0)
        .is_err()
    {
        count(counter::MAP_FULL);
    }
    0
}

#[inline(always)]
fn exit(ctx: &TracePointContext) -> u32 {
    let key = bpf_get_current_pid_tgid();
    // SAFETY: the pointer is used before the entry is removed below.
    let Some(pending) = PENDING_MOUNT.get_ptr(&key) else {
        if !is_self() {
            count(counter::UNMATCHED_EXIT);
        }
        return 0;
    };
    let ret = match tp(tp_field::SYS_RET) {
        // SAFETY: offset from the format file.
        Some(off) => unsafe { ctx.read_at::<i64>(off) }.unwrap_or(0),
        None => 0,
    };
    if let Some(mut entry) = reserve::<MountCall>(RecordKind::MountCall) {
        // SAFETY: the reserved record is written whole before submit.
        let rec = unsafe { &mut *entry.as_mut_ptr() };
        // SAFETY: `pending` points at a live map value.
        *rec = unsafe { *pending };
        fill_header(&mut rec.hdr, RecordKind::MountCall);
        rec.ret = ret;
        if ret == EBUSY && rec.op == MountOp::Umount as u32 {
            let _ = URGENT.output::<MountCall>(rec, BPF_RB_FORCE_WAKEUP as u64);
        } else if ret == 0 {
            // In order with the failures, without a wakeup: a new mount (or a umount that
            // went through) starts a new story, whatever its (reused) mount id.
            let _ = URGENT.output::<MountCall>(rec, 0);
        }
        submit_now(entry);
    }
    let _ = PENDING_MOUNT.remove(&key);
    0
}

#[tracepoint]
pub fn sys_enter_mount(ctx: TracePointContext) -> u32 {
    enter(
        &ctx,
        MountOp::Mount,
        tp_field::MOUNT_DEV_NAME,
        tp_field::MOUNT_DIR_NAME,
        tp_field::MOUNT_TYPE,
        tp_field::MOUNT_FLAGS,
    )
}

#[tracepoint]
pub fn sys_enter_umount(ctx: TracePointContext) -> u32 {
    // No source or type for umount: the field indexes point at fields it does not have.
    enter(
        &ctx,
        MountOp::Umount,
        tp_field::NONE,
        tp_field::UMOUNT_NAME,
        tp_field::NONE,
        tp_field::UMOUNT_FLAGS,
    )
}

#[tracepoint]
pub fn sys_enter_move_mount(ctx: TracePointContext) -> u32 {
    enter(
        &ctx,
        MountOp::MoveMount,
        tp_field::MOVE_MOUNT_FROM_PATH,
        tp_field::MOVE_MOUNT_TO_PATH,
        tp_field::NONE,
        tp_field::NONE,
    )
}

#[tracepoint]
pub fn sys_enter_fsmount(ctx: TracePointContext) -> u32 {
    enter(
        &ctx,
        MountOp::Fsmount,
        tp_field::NONE,
        tp_field::NONE,
        tp_field::NONE,
        tp_field::FSMOUNT_FLAGS,
    )
}

/// Attached to the exits of all four syscalls.
#[tracepoint]
pub fn sys_exit_mount_family(ctx: TracePointContext) -> u32 {
    exit(&ctx)
}
