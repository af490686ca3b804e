//! File references held by fd tables: the open family at exit (fd -> file -> mount), close
//! at entry (the fd still names the file then).

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user_str_bytes},
    macros::tracepoint,
    programs::TracePointContext,
};
use tracer_fs::wire::{
    FileRef, FileUnref, HolderKind, NAME_DENTRY, NAME_NONE, NAME_USER_PATH, RecordKind, RefSource,
    counter, tp_field,
};

use crate::{
    config::tp,
    emit::{count, fill_header, is_self, reserve, submit},
    kernel::{current_task, fd_to_file, file_dentry_name, file_identity},
    maps::{PENDING_OPEN, SCRATCH_FILE},
};

#[inline(always)]
fn open_enter(ctx: &TracePointContext, field: usize) -> u32 {
    if is_self() {
        return 0;
    }
    let Some(off) = tp(field) else { return 0 };
    // SAFETY: offset from the format file.
    let Ok(path) = (unsafe { ctx.read_at::<u64>(off) }) else {
        return 0;
    };
    let _ = PENDING_OPEN.insert(&bpf_get_current_pid_tgid(), &path, 0);
    0
}

#[tracepoint]
pub fn sys_enter_openat(ctx: TracePointContext) -> u32 {
    open_enter(&ctx, tp_field::OPENAT_FILENAME)
}

#[tracepoint]
pub fn sys_enter_openat2(ctx: TracePointContext) -> u32 {
    open_enter(&ctx, tp_field::OPENAT2_FILENAME)
}

#[tracepoint]
pub fn sys_enter_open(ctx: TracePointContext) -> u32 {
    open_enter(&ctx, tp_field::OPEN_FILENAME)
}

#[tracepoint]
pub fn sys_enter_creat(ctx: TracePointContext) -> u32 {
    open_enter(&ctx, tp_field::CREAT_PATHNAME)
}

/// Attached to the exits of open, openat, openat2 and creat.
#[tracepoint]
pub fn sys_exit_open_family(ctx: TracePointContext) -> u32 {
    let key = bpf_get_current_pid_tgid();
    // SAFETY: copied out at once.
    let Some(path) = (unsafe { PENDING_OPEN.get(&key) }).copied() else {
        return 0;
    };
    let _ = PENDING_OPEN.remove(&key);
    let Some(off) = tp(tp_field::SYS_RET) else {
        return 0;
    };
    // SAFETY: offset from the format file.
    let fd = unsafe { ctx.read_at::<i64>(off) }.unwrap_or(-1);
    if fd < 0 {
        return 0;
    }
    let Some(file) = fd_to_file(current_task(), fd as i32) else {
        count(counter::FD_WALK_FAILED);
        return 0;
    };
    send_file_ref(file, HolderKind::Fd, RefSource::Open, fd as i32, 0, 0, path);
    0
}

/// Sends a `FileRef` for `file`. The name is the user path at `user_path` when non-zero,
/// else the dentry's own name.
#[inline(always)]
pub fn send_file_ref(
    file: u64,
    holder: HolderKind,
    source: RefSource,
    fd: i32,
    holder_obj: u64,
    holder_ctx: u64,
    user_path: u64,
) {
    let Some(mut entry) = reserve::<FileRef>(RecordKind::FileRef) else {
        return;
    };
    // SAFETY: the reserved record is written whole before submit.
    let rec = unsafe { &mut *entry.as_mut_ptr() };
    fill_header(&mut rec.hdr, RecordKind::FileRef);
    fill_file_ref(
        rec, file, holder, source, fd, holder_obj, holder_ctx, user_path,
    );
    submit(entry);
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub fn fill_file_ref(
    rec: &mut FileRef,
    file: u64,
    holder: HolderKind,
    source: RefSource,
    fd: i32,
    holder_obj: u64,
    holder_ctx: u64,
    user_path: u64,
) {
    let id = file_identity(file);
    rec.file = file;
    rec.holder_obj = holder_obj;
    rec.holder_ctx = holder_ctx;
    rec.ino = id.ino;
    rec.mnt_id = id.mnt_id;
    rec.fd = fd;
    rec.dev = id.dev;
    rec.holder = holder as u8;
    rec.source = source as u8;
    rec._pad = 0;
    rec.name_kind = NAME_NONE;
    rec.name[0] = 0;
    // SAFETY: the helper checks the user address and bounds the copy.
    if user_path != 0
        && unsafe { bpf_probe_read_user_str_bytes(user_path as *const u8, &mut rec.name) }.is_ok()
    {
        rec.name_kind = NAME_USER_PATH;
    } else if file_dentry_name(file, &mut rec.name) {
        rec.name_kind = NAME_DENTRY;
    } else {
        rec.name[0] = 0;
    }
}

#[tracepoint]
pub fn sys_enter_close(ctx: TracePointContext) -> u32 {
    if is_self() {
        return 0;
    }
    let Some(off) = tp(tp_field::CLOSE_FD) else {
        return 0;
    };
    // SAFETY: offset from the format file.
    let fd = unsafe { ctx.read_at::<u64>(off) }.unwrap_or(u64::MAX) as i64 as i32;
    let Some(file) = fd_to_file(current_task(), fd) else {
        return 0;
    };
    let Some(mut entry) = reserve::<FileUnref>(RecordKind::FileUnref) else {
        return 0;
    };
    // SAFETY: the reserved record is written whole before submit.
    let rec = unsafe { &mut *entry.as_mut_ptr() };
    fill_header(&mut rec.hdr, RecordKind::FileUnref);
    rec.file = file;
    rec.holder_obj = 0;
    rec.holder_ctx = 0;
    rec.fd = fd;
    rec.holder = HolderKind::Fd as u8;
    rec.source = RefSource::Close as u8;
    rec._pad = [0; 2];
    submit(entry);
    0
}

/// Scratch for records built outside the ring buffer (the snapshot iterator).
#[inline(always)]
pub fn scratch_file_ref() -> Option<&'static mut FileRef> {
    // SAFETY: per-CPU slot, ours for the duration of this program.
    SCRATCH_FILE.get_ptr_mut(0).map(|p| unsafe { &mut *p })
}
