//! File locks: a request that conflicts (flock LOCK_NB failing, fcntl F_SETLK failing, or a
//! blocking call about to wait), with the lock it conflicts with, read from the inode's
//! lock list; the lock finally taken after a wait; the unlock that releases a lock someone
//! conflicted with; and the flock/fcntl calls around them (how long they waited).

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    helpers::generated::bpf_ktime_get_boot_ns,
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};
use tracer_fs::wire::{
    LockCall, LockEvent, btf_off, counter, lock_flags as lf, lock_hook, lock_sys, tp_field,
};

use crate::{
    config::field,
    emit::{count, is_self, record, reserve, submit},
    kernel::{file_identity, member, read},
    maps::{LOCK_WATCH, PENDING_LOCK, PendingLock},
    sys::{SysCtx, sys_programs},
};

/// Locks looked at in an inode's list before giving up on finding the holder.
const MAX_LOCK_WALK: u32 = 16;

const EAGAIN: i32 = -11;
const EACCES: i32 = -13;

/// fcntl commands that set record locks (the 64-bit variants are the same on 64-bit).
const F_SETLK: u32 = 6;
const F_SETLKW: u32 = 7;
const F_OFD_SETLK: u32 = 37;
const F_OFD_SETLKW: u32 = 38;
/// flock's `LOCK_UN`: an unlock never conflicts.
const LOCK_UN: u32 = 8;

#[tracepoint]
pub fn flock_lock_inode(ctx: TracePointContext) -> u32 {
    classic_lock_event(&ctx, lock_hook::FLOCK)
}

#[tracepoint]
pub fn posix_lock_inode(ctx: TracePointContext) -> u32 {
    classic_lock_event(&ctx, lock_hook::POSIX)
}

/// `flock_lock_inode(inode, fl, ret)`, the same arguments from 6.1 to 7.x.
#[raw_tracepoint(tracepoint = "flock_lock_inode")]
pub fn raw_flock_lock_inode(ctx: RawTracePointContext) -> i32 {
    raw_lock_event(&ctx, lock_hook::FLOCK);
    0
}

/// `posix_lock_inode(inode, fl, ret)`.
#[raw_tracepoint(tracepoint = "posix_lock_inode")]
pub fn raw_posix_lock_inode(ctx: RawTracePointContext) -> i32 {
    raw_lock_event(&ctx, lock_hook::POSIX);
    0
}

#[inline(always)]
fn classic_lock_event(ctx: &TracePointContext, hook: u8) -> u32 {
    if is_self() {
        return 0;
    }
    lock_event(
        field(ctx, tp_field::LOCK_FL),
        field(ctx, tp_field::LOCK_RET),
        field(ctx, tp_field::LOCK_FLAGS),
        hook,
    )
}

#[inline(always)]
fn raw_lock_event(ctx: &RawTracePointContext, hook: u8) -> u32 {
    if is_self() {
        return 0;
    }
    let fl: u64 = ctx.arg(1);
    lock_event(
        fl,
        ctx.arg::<u64>(2) as i32,
        member::<u32>(fl, btf_off::LOCK_FLAGS).unwrap_or(0),
        hook,
    )
}

/// A lock request's outcome: `fl` the request, `ret` the tracepoint's result, `flags` the
/// request's `FL_*` flags.
#[inline(always)]
fn lock_event(fl: u64, ret: i32, flags: u32, hook: u8) -> u32 {
    let lock_type = member::<u8>(fl, btf_off::LOCK_TYPE).unwrap_or(0xff);
    let file = member::<u64>(fl, btf_off::LOCK_FILE).unwrap_or(0);
    let inode = member::<u64>(file, btf_off::FILE_INODE).unwrap_or(0);
    let conflict = ret == EAGAIN || ret == EACCES || ret == lf::DEFERRED;
    let key = bpf_get_current_pid_tgid();
    // SAFETY: a per-thread entry only this thread writes.
    let pending = PENDING_LOCK.get_ptr_mut(&key);
    let after_wait = match pending {
        // SAFETY: as above.
        Some(p) => unsafe { (*p).waited != 0 },
        None => false,
    };
    // SAFETY: copied out at once.
    let watched = lock_type == lf::F_UNLCK && unsafe { LOCK_WATCH.get(&inode) }.is_some();
    if !(conflict || watched || (after_wait && ret == 0)) {
        return 0;
    }
    if conflict {
        if let Some(p) = pending {
            // SAFETY: as above.
            unsafe {
                (*p).conflicted = 1;
                if ret == lf::DEFERRED {
                    (*p).waited = 1;
                }
            }
        }
        let _ = LOCK_WATCH.insert(&inode, &1u8, 0);
    }
    let Some(mut entry) = reserve::<LockEvent>() else {
        return 0;
    };
    let rec = record(&mut entry);
    let id = file_identity(file);
    rec.fl = fl;
    rec.file = file;
    rec.owner = member::<u64>(fl, btf_off::LOCK_OWNER).unwrap_or(0);
    rec.ino = id.ino;
    rec.dev = id.dev;
    rec.mnt_id = id.mnt_id;
    rec.flags = flags;
    rec.ret = ret;
    rec.pid = member::<u32>(fl, btf_off::LOCK_PID).unwrap_or(0);
    rec.hook = hook;
    rec.lock_type = lock_type;
    rec.holder_lock = 0;
    rec.holder_file = 0;
    rec.holder_owner = 0;
    rec.holder_pid = 0;
    rec.holder_type = 0xff;
    rec.walked = 0;
    rec._pad = 0;
    if conflict {
        find_holder(rec, inode, hook);
    }
    submit(entry);
    0
}

/// The first lock in the inode's flock or posix list that conflicts with the request: of
/// another file (flock) or owner (posix/OFD), one of the two a write lock. (Byte ranges
/// are not compared: a posix holder named here may be another range of the same owner.)
#[inline(always)]
fn find_holder(rec: &mut LockEvent, inode: u64, hook: u8) {
    let list = if hook == lock_hook::FLOCK {
        btf_off::FLCTX_FLOCK
    } else {
        btf_off::FLCTX_POSIX
    };
    let Some(flctx) = member::<u64>(inode, btf_off::INODE_FLCTX) else {
        return;
    };
    let (Some(list_off), Some(link_off)) = (
        crate::config::btf(list),
        crate::config::btf(btf_off::LOCK_LIST),
    ) else {
        return;
    };
    if flctx == 0 {
        count(counter::LOCK_HOLDER_NOT_FOUND);
        return;
    }
    let head = flctx.wrapping_add(list_off);
    let mut node = read::<u64>(head).unwrap_or(0);
    let mut i: u32 = 0;
    while i < MAX_LOCK_WALK {
        if node == 0 || node == head {
            break;
        }
        let lock = node.wrapping_sub(link_off);
        let file = member::<u64>(lock, btf_off::LOCK_FILE).unwrap_or(0);
        let owner = member::<u64>(lock, btf_off::LOCK_OWNER).unwrap_or(0);
        let ty = member::<u8>(lock, btf_off::LOCK_TYPE).unwrap_or(0xff);
        let other = if hook == lock_hook::FLOCK {
            file != rec.file
        } else {
            owner != rec.owner
        };
        if other && (ty == lf::F_WRLCK || rec.lock_type == lf::F_WRLCK) {
            rec.holder_lock = lock;
            rec.holder_file = file;
            rec.holder_owner = owner;
            rec.holder_pid = member::<u32>(lock, btf_off::LOCK_PID).unwrap_or(0);
            rec.holder_type = ty;
            break;
        }
        node = read::<u64>(node).unwrap_or(0);
        i += 1;
    }
    rec.walked = i as u8;
    if rec.holder_lock == 0 {
        count(counter::LOCK_HOLDER_NOT_FOUND);
    }
}

#[inline(always)]
fn call_enter(ctx: &impl SysCtx, sys: u32) -> u32 {
    if is_self() {
        return 0;
    }
    let cmd = ctx.arg(tp_field::LOCK_SYS_CMD) as u32;
    let wanted = match sys {
        lock_sys::FLOCK => cmd & LOCK_UN == 0,
        _ => matches!(cmd, F_SETLK | F_SETLKW | F_OFD_SETLK | F_OFD_SETLKW),
    };
    if !wanted {
        return 0;
    }
    let p = PendingLock {
        // SAFETY: no preconditions.
        enter_ns: unsafe { bpf_ktime_get_boot_ns() },
        fd: ctx.arg(tp_field::LOCK_SYS_FD) as i32,
        cmd,
        sys,
        conflicted: 0,
        waited: 0,
        _pad: [0; 2],
    };
    if PENDING_LOCK
        .insert(&bpf_get_current_pid_tgid(), &p, 0)
        .is_err()
    {
        count(counter::MAP_FULL);
    }
    0
}

#[inline(always)]
fn call_exit(ctx: &impl SysCtx) -> u32 {
    let key = bpf_get_current_pid_tgid();
    // SAFETY: copied out at once.
    let Some(p) = (unsafe { PENDING_LOCK.get(&key) }).copied() else {
        return 0;
    };
    let _ = PENDING_LOCK.remove(&key);
    if p.conflicted == 0 {
        return 0;
    }
    let Some(mut entry) = reserve::<LockCall>() else {
        return 0;
    };
    let rec = record(&mut entry);
    rec.enter_ns = p.enter_ns;
    rec.ret = ctx.arg(tp_field::SYS_RET) as _;
    rec.fd = p.fd;
    rec.cmd = p.cmd;
    rec.sys = p.sys;
    rec._pad = 0;
    submit(entry);
    0
}

sys_programs!(enter sys_enter_flock, raw_sys_enter_flock => |ctx| call_enter(ctx, lock_sys::FLOCK));

sys_programs!(enter sys_enter_fcntl, raw_sys_enter_fcntl => |ctx| call_enter(ctx, lock_sys::FCNTL));

sys_programs!(exit sys_exit_lock_call, raw_sys_exit_lock_call => call_exit);
