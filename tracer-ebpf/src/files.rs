//! File references held by fd tables: the open family at exit (fd -> file -> mount), close
//! at entry (the fd still names the file then; a close of its file's only reference is told
//! by the release that follows).

use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid, bpf_probe_read_user_str_bytes,
        generated::{bpf_get_current_task_btf, bpf_task_pt_regs},
    },
    macros::tracepoint,
    programs::TracePointContext,
};
use tracer_fs::wire::{
    FileRef, FileUnref, HolderKind, NAME_DENTRY, NAME_NONE, NAME_USER_PATH, RefSource, btf_off,
    counter, tp_field,
};

use crate::{
    config::{btf, file_one_ref, tp},
    emit::{count, is_self, record, reserve, submit},
    kernel::{current_fd_file, file_dentry_name, file_identity, read},
    maps::{PENDING_OPEN, SCRATCH_FILE},
    sys::{SysCtx, sys_programs},
};

#[inline(always)]
fn open_enter(ctx: &TracePointContext, field: usize) -> u32 {
    // Where the exit can read the path pointer from the saved registers, the entry has
    // nothing to do (the verifier prunes the rest: the offset is a frozen constant).
    if btf(btf_off::PT_REGS_SYSCALL_ARG0).is_some() || is_self() {
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

/// The user pointer to the path of the open-family syscall now exiting, whose path is its
/// argument `arg` (0 or 1): from the registers the syscall saved (one helper call or
/// three, instead of a hash update at entry and a lookup and delete here), else from
/// `PENDING_OPEN`. `None`: the entry was not seen (attached in between) or is the
/// tracer's own.
#[inline(always)]
fn open_path(arg: usize) -> Option<u64> {
    if let Some(off) = btf(btf_off::PT_REGS_SYSCALL_ARG0 + arg) {
        if is_self() {
            return None;
        }
        // SAFETY: helpers without preconditions; the verifier checks the task pointer.
        let regs = unsafe { bpf_task_pt_regs(bpf_get_current_task_btf()) } as u64;
        return read::<u64>(regs.wrapping_add(off));
    }
    let key = bpf_get_current_pid_tgid();
    // SAFETY: copied out at once.
    let path = (unsafe { PENDING_OPEN.get(&key) }).copied()?;
    let _ = PENDING_OPEN.remove(&key);
    Some(path)
}

#[inline(always)]
fn open_exit(ctx: &impl SysCtx, path_arg: usize) -> u32 {
    let Some(path) = open_path(path_arg) else {
        return 0;
    };
    if tp(tp_field::SYS_RET).is_none() {
        return 0;
    }
    let fd = ctx.arg(tp_field::SYS_RET) as i64;
    if fd < 0 {
        return 0;
    }
    let Some(file) = current_fd_file(fd as i32) else {
        count(counter::FD_WALK_FAILED);
        return 0;
    };
    send_file_ref(file, HolderKind::Fd, RefSource::Open, fd as i32, 0, 0, path);
    0
}

// The exits of open and creat (the path is their first argument).
sys_programs!(exit sys_exit_open_family, raw_sys_exit_open_family => |ctx| open_exit(ctx, 0));

// The exits of openat and openat2 (the path is their second argument).
sys_programs!(exit sys_exit_openat_family, raw_sys_exit_openat_family => |ctx| open_exit(ctx, 1));

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
    if matches!(holder, HolderKind::UringFixed | HolderKind::UringReq) {
        crate::space::note_held(file);
    }
    let Some(mut entry) = reserve::<FileRef>() else {
        return;
    };
    let rec = record(&mut entry);
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
    set_holder(rec, holder_obj, holder_ctx);
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

sys_programs!(enter sys_enter_close, raw_sys_enter_close => close_enter);

#[inline(always)]
fn close_enter(ctx: &impl SysCtx) -> u32 {
    if is_self() {
        return 0;
    }
    if tp(tp_field::CLOSE_FD).is_none() {
        return 0;
    }
    let fd = ctx.arg(tp_field::CLOSE_FD) as i64 as i32;
    let Some(file) = current_fd_file(fd) else {
        return 0;
    };
    if only_reference(file) {
        count(counter::CLOSE_FOLDED);
        return 0;
    }
    let Some(mut entry) = reserve::<FileUnref>() else {
        return 0;
    };
    let rec = record(&mut entry);
    rec.file = file;
    // SAFETY: fields of the reserved record (see `set_holder`).
    unsafe {
        core::ptr::write_volatile(&mut rec.holder_obj, 0);
        core::ptr::write_volatile(&mut rec.holder_ctx, 0);
    }
    rec.fd = fd;
    rec.holder = HolderKind::Fd as u8;
    rec.source = RefSource::Close as u8;
    rec._pad = [0; 2];
    submit(entry);
    0
}

/// Whether the fd about to be closed holds `file`'s only reference. Then the release
/// record follows from this same syscall (`__fput()` runs in close(2) since 6.15, before
/// its return to user space on older kernels) and ends the fd along with the file: a
/// record of the close would say nothing more, and it was a third of a short-lived file's
/// records. Racy by nature: a reference another thread takes meanwhile only delays the
/// fd's end to that reference's release.
#[inline(always)]
fn only_reference(file: u64) -> bool {
    let Some(off) = btf(btf_off::FILE_COUNT) else {
        return false;
    };
    read::<u64>(file.wrapping_add(off)) == Some(file_one_ref())
}

/// Writes a `FileRef`'s holder pair. Volatile: two zero stores side by side were merged
/// into a `memset` call, a byte loop on this target.
#[inline(always)]
fn set_holder(rec: &mut FileRef, holder_obj: u64, holder_ctx: u64) {
    // SAFETY: fields of a record we hold.
    unsafe {
        core::ptr::write_volatile(&mut rec.holder_obj, holder_obj);
        core::ptr::write_volatile(&mut rec.holder_ctx, holder_ctx);
    }
}

/// Scratch for records built outside the ring buffer (the snapshot iterator).
#[inline(always)]
pub fn scratch_file_ref() -> Option<&'static mut FileRef> {
    // SAFETY: per-CPU slot, ours for the duration of this program.
    SCRATCH_FILE.get_ptr_mut(0).map(|p| unsafe { &mut *p })
}
