//! io_uring: rings created, files registered into a ring's table (read from the fd array
//! the task passed), and the requests that take files by fd: counted per (ring, file),
//! with a record when the count goes 0 -> 1 or 1 -> 0 (`wire::UringReqDone`), not two
//! records per request (which were most of the default mode's cost under io_uring IO).

use core::ffi::c_void;

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user},
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};
use tracer_fs::wire::{
    FileUnref, HolderKind, RefSource, UringCreate, UringRegister, UringReqDone, btf_off, counter,
    tp_field, uring_seq,
};

use crate::{
    config::field,
    emit::{count, is_self, record, reserve, submit},
    files::send_file_ref,
    kernel::{Fds, current_fd_file, current_fds, fetch_add, for_steps, member, members_u64_u32},
    maps::{PENDING_REGISTER, PendingRegister, RingFile, URING_INFLIGHT},
    sys::{SysCtx, sys_programs},
};

const IORING_REGISTER_FILES: u32 = 2;
const IORING_UNREGISTER_FILES: u32 = 3;
const IORING_REGISTER_FILES2: u32 = 13;
const IORING_REGISTER_USE_REGISTERED_RING: u32 = 1 << 31;
const IORING_RSRC_REGISTER_SPARSE: u32 = 1;
const IORING_CQE_F_MORE: u32 = 1 << 1;
/// `REQ_F_FIXED_FILE`, bit `IOSQE_FIXED_FILE_BIT` (uapi: 0) of `io_kiocb.flags`: the
/// request uses a file registered in the ring, taken without `io_uring_file_get`.
const REQ_F_FIXED_FILE: u32 = 1;
/// Files walked per `io_uring_register` call; more are counted in `REGISTER_TRUNCATED`.
const MAX_REGISTER_WALK: u32 = 128;

#[tracepoint]
pub fn io_uring_create(ctx: TracePointContext) -> u32 {
    created(
        field(&ctx, tp_field::URING_CREATE_CTX),
        field(&ctx, tp_field::URING_CREATE_FD),
        field(&ctx, tp_field::URING_CREATE_SQ),
        field(&ctx, tp_field::URING_CREATE_CQ),
        field(&ctx, tp_field::URING_CREATE_FLAGS),
    );
    0
}

/// `io_uring_create(fd, ctx, sq_entries, cq_entries, flags)`, the same from 6.1 to 7.x.
/// (Arguments narrower than 64 bits come zero-extended: cast back.)
#[raw_tracepoint(tracepoint = "io_uring_create")]
pub fn raw_io_uring_create(ctx: RawTracePointContext) -> i32 {
    created(
        ctx.arg(1),
        ctx.arg::<u64>(0) as i32,
        ctx.arg::<u64>(2) as u32,
        ctx.arg::<u64>(3) as u32,
        ctx.arg::<u64>(4) as u32,
    );
    0
}

#[inline(always)]
fn created(ring: u64, fd: i32, sq_entries: u32, cq_entries: u32, flags: u32) {
    let Some(mut entry) = reserve::<UringCreate>() else {
        return;
    };
    let rec = record(&mut entry);
    rec.ctx = ring;
    rec.fd = fd;
    rec.sq_entries = sq_entries;
    rec.cq_entries = cq_entries;
    rec.flags = flags;
    submit(entry);
}

#[tracepoint]
pub fn io_uring_register(ctx: TracePointContext) -> u32 {
    registered(
        field(&ctx, tp_field::URING_REG_CTX),
        field(&ctx, tp_field::URING_REG_OPCODE),
        field(&ctx, tp_field::URING_REG_NR_FILES),
        field(&ctx, tp_field::URING_REG_RET),
    );
    0
}

/// `io_uring_register(ctx, opcode, nr_files, nr_bufs, ret)`, the same from 6.1 to 7.x.
#[raw_tracepoint(tracepoint = "io_uring_register")]
pub fn raw_io_uring_register(ctx: RawTracePointContext) -> i32 {
    registered(
        ctx.arg(0),
        ctx.arg::<u64>(1) as u32,
        ctx.arg::<u64>(2) as u32,
        ctx.arg::<u64>(4) as i64,
    );
    0
}

#[inline(always)]
fn registered(ring: u64, opcode: u32, nr_files: u32, ret: i64) {
    let Some(mut entry) = reserve::<UringRegister>() else {
        return;
    };
    let rec = record(&mut entry);
    rec.ctx = ring;
    rec.opcode = opcode;
    rec.nr_files = nr_files;
    rec.ret = ret;
    submit(entry);
}

// `io_uring_register(2)` entry: remember the ring and the fd array of a file registration.
sys_programs!(enter sys_enter_io_uring_register, raw_sys_enter_io_uring_register => register_enter);

#[inline(always)]
fn register_enter(ctx: &impl SysCtx) -> u32 {
    if is_self() {
        return 0;
    }
    let opcode = ctx.arg(tp_field::URING_REGISTER_OPCODE) as u32;
    if opcode & IORING_REGISTER_USE_REGISTERED_RING != 0 {
        // The ring is named by a registered-ring index, not an fd: not resolvable here.
        return 0;
    }
    if opcode != IORING_REGISTER_FILES
        && opcode != IORING_REGISTER_FILES2
        && opcode != IORING_UNREGISTER_FILES
    {
        return 0;
    }
    let ring_fd = ctx.arg(tp_field::URING_REGISTER_FD);
    let arg = ctx.arg(tp_field::URING_REGISTER_ARG);
    let nr_args = ctx.arg(tp_field::URING_REGISTER_NR_ARGS);
    let Some(ring_file) = current_fd_file(ring_fd as i32) else {
        count(counter::FD_WALK_FAILED);
        return 0;
    };
    let Some(ring) = member::<u64>(ring_file, btf_off::FILE_PRIVATE_DATA) else {
        return 0;
    };
    let (fds, nr) = if opcode == IORING_REGISTER_FILES2 {
        // struct io_uring_rsrc_register { __u32 nr; __u32 flags; __u64 resv2; __u64 data; .. }
        // (uapi, fixed layout).
        // SAFETY: bpf_probe_read_user checks the user address.
        let nr = unsafe { bpf_probe_read_user(arg as *const u32) }.unwrap_or(0);
        let flags = unsafe { bpf_probe_read_user((arg + 4) as *const u32) }.unwrap_or(0);
        let data = unsafe { bpf_probe_read_user((arg + 16) as *const u64) }.unwrap_or(0);
        if flags & IORING_RSRC_REGISTER_SPARSE != 0 {
            (0, 0)
        } else {
            (data, nr)
        }
    } else {
        (arg, nr_args as u32)
    };
    let pending = PendingRegister {
        ctx: ring,
        fds,
        nr,
        opcode,
    };
    if PENDING_REGISTER
        .insert(&bpf_get_current_pid_tgid(), &pending, 0)
        .is_err()
    {
        count(counter::MAP_FULL);
    }
    0
}

// `io_uring_register(2)` exit: on success, send the ring's new references (or the drop of
// all of them for an unregister).
sys_programs!(exit sys_exit_io_uring_register, raw_sys_exit_io_uring_register => register_exit);

#[inline(always)]
fn register_exit(ctx: &impl SysCtx) -> u32 {
    let key = bpf_get_current_pid_tgid();
    // SAFETY: copied out at once.
    let Some(p) = (unsafe { PENDING_REGISTER.get(&key) }).copied() else {
        return 0;
    };
    let _ = PENDING_REGISTER.remove(&key);
    let ret = ctx.arg(tp_field::SYS_RET) as i64;
    if ret < 0 {
        return 0;
    }
    if p.opcode == IORING_UNREGISTER_FILES {
        if let Some(mut entry) = reserve::<FileUnref>() {
            let rec = record(&mut entry);
            rec.file = 0;
            rec.holder_obj = p.ctx;
            rec.holder_ctx = p.ctx;
            rec.fd = -1;
            rec.holder = HolderKind::UringFixed as u8;
            rec.source = RefSource::UringUnregister as u8;
            rec._pad = [0; 2];
            submit(entry);
        }
        return 0;
    }
    if p.nr > MAX_REGISTER_WALK {
        count(counter::REGISTER_TRUNCATED);
    }
    let Some(table) = current_fds() else {
        return 0;
    };
    let mut walk = RegisterWalk {
        fds: p.fds,
        ring: p.ctx,
        table,
    };
    // A bpf_loop, whose body the verifier checks once: unrolled, the 128 steps took the
    // verifier a third of a second at every attach.
    for_steps(p.nr.min(MAX_REGISTER_WALK), register_step, &mut walk);
    0
}

/// What each step of the registered fd array's walk reads.
struct RegisterWalk {
    fds: u64,
    ring: u64,
    table: Fds,
}

/// Fd `i` of the array registered into the ring: its file, now held by the ring.
#[inline(never)]
extern "C" fn register_step(i: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: the caller's `RegisterWalk` (bpf_loop passes it through).
    let w = unsafe { &*(ctx as *const RegisterWalk) };
    // SAFETY: bpf_probe_read_user checks the user address.
    let fd = unsafe { bpf_probe_read_user((w.fds + i * 4) as *const i32) }.unwrap_or(-1);
    if fd >= 0
        && let Some(file) = w.table.file(fd)
    {
        send_file_ref(
            file,
            HolderKind::UringFixed,
            RefSource::UringRegister,
            fd,
            w.ring,
            w.ring,
            0,
        );
    }
    0
}

/// `io_uring_file_get`: a request takes a reference to the file behind `fd` (for fixed
/// files the ring already holds one).
#[tracepoint]
pub fn io_uring_file_get(ctx: TracePointContext) -> u32 {
    file_get(
        field(&ctx, tp_field::URING_FILE_GET_CTX),
        field(&ctx, tp_field::URING_FILE_GET_FD),
    );
    0
}

/// `io_uring_file_get(req, fd)`: the ring is the request's `ctx`.
#[raw_tracepoint(tracepoint = "io_uring_file_get")]
pub fn raw_io_uring_file_get(ctx: RawTracePointContext) -> i32 {
    let req: u64 = ctx.arg(0);
    file_get(
        member::<u64>(req, btf_off::URING_REQ_CTX).unwrap_or(0),
        ctx.arg::<u64>(1) as i32,
    );
    0
}

/// This (ring, file)'s count word, added if missing.
#[inline(always)]
fn inflight_word(key: &RingFile) -> Option<*mut u64> {
    if let Some(p) = URING_INFLIGHT.get_ptr_mut(key) {
        return Some(p);
    }
    // Another CPU may add it meanwhile: whoever adds it first, both then count in it.
    let _ = URING_INFLIGHT.insert(key, &0, BPF_NOEXIST as u64);
    URING_INFLIGHT.get_ptr_mut(key)
}

#[inline(always)]
fn file_get(ring: u64, fd: i32) {
    let Some(file) = current_fd_file(fd) else {
        return;
    };
    let Some(word) = inflight_word(&[ring, file]) else {
        count(counter::MAP_FULL);
        return;
    };
    let before = fetch_add(word, uring_seq::UP);
    if uring_seq::count(before) != 0 {
        // Requests of this ring already hold the file: the engine knows.
        return;
    }
    send_file_ref(
        file,
        HolderKind::UringReq,
        RefSource::UringFileGet,
        fd,
        before.wrapping_add(uring_seq::UP),
        ring,
        0,
    );
}

/// Request `req` of `ring` completed with `res`: if it took its file by fd, one fewer of
/// the ring's requests holds that file, and the last one's completion is sent.
#[inline(always)]
fn req_done(ring: u64, req: u64, res: i32) {
    // Its `file` set (it is put after the completion is posted, from 6.1 to 7.x) and not
    // a fixed one: taken by fd, so counted at `file_get`.
    let Some((file, flags)) =
        members_u64_u32(req, btf_off::URING_REQ_FILE, btf_off::URING_REQ_FLAGS)
    else {
        return;
    };
    if file == 0 || flags & REQ_F_FIXED_FILE != 0 {
        return;
    }
    let Some(word) = URING_INFLIGHT.get_ptr_mut(&[ring, file]) else {
        // Taken before attach (or its count went from the map).
        count(counter::URING_DONE_UNSEEN);
        return;
    };
    let before = fetch_add(word, uring_seq::DOWN);
    match uring_seq::count(before) {
        1 => {}
        0 => {
            // This request was not counted (taken before attach) while others were: put
            // the count back.
            fetch_add(word, uring_seq::UNDO_DOWN);
            count(counter::URING_DONE_UNSEEN);
            return;
        }
        _ => return,
    }
    let Some(mut entry) = reserve::<UringReqDone>() else {
        return;
    };
    let rec = record(&mut entry);
    rec.ctx = ring;
    rec.file = file;
    rec.res = res;
    rec.seq = uring_seq::seq(before.wrapping_add(uring_seq::DOWN));
    submit(entry);
}

#[tracepoint]
pub fn io_uring_complete(ctx: TracePointContext) -> u32 {
    completed(
        field(&ctx, tp_field::URING_COMPLETE_CTX),
        field(&ctx, tp_field::URING_COMPLETE_REQ),
        field(&ctx, tp_field::URING_COMPLETE_RES),
        field(&ctx, tp_field::URING_COMPLETE_CFLAGS),
    );
    0
}

/// `io_uring_complete(ctx, req, cqe)` (6.13 on): the result and flags are the CQE's.
#[raw_tracepoint(tracepoint = "io_uring_complete")]
pub fn raw_io_uring_complete(ctx: RawTracePointContext) -> i32 {
    let cqe: u64 = ctx.arg(2);
    completed(
        ctx.arg(0),
        ctx.arg(1),
        member::<i32>(cqe, btf_off::URING_CQE_RES).unwrap_or(0),
        member::<u32>(cqe, btf_off::URING_CQE_FLAGS).unwrap_or(0),
    );
    0
}

/// `io_uring_complete(ctx, req, user_data, res, cflags, extra1, extra2)` (up to 6.12).
#[raw_tracepoint(tracepoint = "io_uring_complete")]
pub fn raw_io_uring_complete_args(ctx: RawTracePointContext) -> i32 {
    completed(
        ctx.arg(0),
        ctx.arg(1),
        ctx.arg::<u64>(3) as i32,
        ctx.arg::<u64>(4) as u32,
    );
    0
}

#[inline(always)]
fn completed(ring: u64, req: u64, res: i32, cflags: u32) {
    if cflags & IORING_CQE_F_MORE != 0 {
        // A multishot request posts more completions and keeps its file.
        return;
    }
    // A failed request completes here too (its CQE carries the error).
    req_done(ring, req, res);
}
