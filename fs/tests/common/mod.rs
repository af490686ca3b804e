//! Builders for hand-written event streams, shared by the integration tests.
#![allow(dead_code)]

pub mod golden_config;
pub mod locks;

use tracer_fs::event::{
    Event, HolderRef, MountCallOp, MountInfo, NameKind, Payload, RefHow, WorkCtx,
};

pub const US: u64 = 1_000;
pub const MS: u64 = 1_000_000;
pub const S: u64 = 1_000_000_000;
/// Boot time of the first event of every scenario.
pub const T0: u64 = 100 * S;

pub use golden_config::*;

/// An engine with `cfg` that has read the mount table (the root and the scratch mount)
/// at `T0`.
pub fn engine_with(cfg: tracer_fs::EngineConfig) -> tracer_fs::Engine {
    let mut e = tracer_fs::Engine::new(cfg);
    e.apply(&ev(
        T0,
        &task(900, "tracer"),
        table(vec![root(), scratch()]),
    ));
    e
}

/// Applies `evs` in order, checking the engine's invariants after each; all notices.
pub fn apply(e: &mut tracer_fs::Engine, evs: &[Event]) -> Vec<tracer_fs::verdict::Notice> {
    let mut out = Vec::new();
    for x in evs {
        out.extend(e.apply(x));
        e.check_invariants().unwrap();
    }
    out
}

/// The task (and work item) an event comes from.
#[derive(Clone, Debug)]
pub struct Who {
    pub pid: u32,
    pub tgid: u32,
    pub comm: String,
    pub work: Option<WorkCtx>,
}

pub fn task(pid: u32, comm: &str) -> Who {
    Who {
        pid,
        tgid: pid,
        comm: comm.into(),
        work: None,
    }
}

pub fn thread(pid: u32, tgid: u32, comm: &str) -> Who {
    Who {
        pid,
        tgid,
        comm: comm.into(),
        work: None,
    }
}

/// A kworker executing `function` on `work`.
pub fn kworker(pid: u32, comm: &str, work: u64, function: u64) -> Who {
    Who {
        pid,
        tgid: pid,
        comm: comm.into(),
        work: Some(WorkCtx { work, function }),
    }
}

pub fn ev(ts: u64, who: &Who, payload: Payload) -> Event {
    Event {
        ts_ns: ts,
        cpu: 1,
        pid: who.pid,
        tgid: who.tgid,
        comm: who.comm.as_str().into(),
        work: who.work,
        payload,
    }
}

pub fn mnt(
    id: i32,
    parent: i32,
    mount_point: &str,
    fs: &str,
    source: &str,
    major: u32,
    minor: u32,
) -> MountInfo {
    MountInfo {
        mount_id: id,
        parent_id: parent,
        major,
        minor,
        root: "/".into(),
        mount_point: mount_point.into(),
        fs_type: fs.into(),
        source: source.into(),
    }
}

pub fn table(mounts: Vec<MountInfo>) -> Payload {
    Payload::MountTable { mounts }
}

pub fn root() -> MountInfo {
    mnt(21, 1, "/", "ext4", "/dev/vda1", 254, 1)
}

pub fn devtmpfs() -> MountInfo {
    mnt(24, 21, "/dev", "devtmpfs", "udev", 0, 5)
}

pub fn scratch() -> MountInfo {
    mnt(42, 21, "/mnt/scratch", "xfs", "/dev/loop1", 7, 1)
}

pub const SCRATCH_DEV: u32 = (7 << 20) | 1;

#[allow(clippy::too_many_arguments)]
pub fn file_ref(
    file: u64,
    holder: HolderRef,
    how: RefHow,
    mnt_id: i32,
    ino: u64,
    kind: NameKind,
    name: &str,
) -> Payload {
    Payload::FileRef(tracer_fs::event::FileRef {
        file,
        holder,
        how,
        mnt_id,
        dev: SCRATCH_DEV,
        ino,
        name_kind: kind,
        name: name.into(),
    })
}

pub fn fd(tgid: u32, fd: i32) -> HolderRef {
    HolderRef::Fd { tgid, fd }
}

pub fn unref(file: u64, holder: HolderRef, how: RefHow) -> Payload {
    Payload::FileUnref { file, holder, how }
}

pub fn free(file: u64, mnt_id: i32, ino: u64) -> Payload {
    Payload::FileFree { file, mnt_id, ino }
}

pub fn umount(target: &str, flags: u32, ret: i64, enter_ns: u64) -> Payload {
    Payload::MountCall(tracer_fs::event::MountCall {
        op: MountCallOp::Umount,
        flags,
        ret,
        enter_ns,
        source: String::new(),
        target: target.into(),
        fs_type: String::new(),
    })
}

pub fn mount(source: &str, target: &str, fs: &str, ret: i64, enter_ns: u64) -> Payload {
    Payload::MountCall(tracer_fs::event::MountCall {
        op: MountCallOp::Mount,
        flags: 0,
        ret,
        enter_ns,
        source: source.into(),
        target: target.into(),
        fs_type: fs.into(),
    })
}

pub fn exit(code: i32) -> Payload {
    Payload::TaskExit {
        exit_code: code,
        group_dead: true,
        cwd_mnt: -1,
        root_mnt: -1,
    }
}

pub fn sigkill(target_pid: i32, target_comm: &str) -> Payload {
    Payload::Signal {
        sig: 9,
        result: 0,
        target_pid,
        group: true,
        target_comm: target_comm.into(),
    }
}

pub fn uring_create(ctx: u64, fd: i32) -> Payload {
    Payload::UringCreate {
        ctx,
        fd,
        sq_entries: 128,
        cq_entries: 256,
        flags: 0,
    }
}

pub fn queued(work: u64, function: u64) -> Payload {
    Payload::WorkQueued {
        work,
        function,
        target_cpu: 1,
    }
}

pub fn armed(work: u64, function: u64) -> Payload {
    Payload::WorkArmed {
        work,
        function,
        delay_jiffies: 1,
    }
}

pub fn start(work: u64, function: u64) -> Payload {
    Payload::WorkStart { work, function }
}

pub fn end(work: u64, function: u64) -> Payload {
    Payload::WorkEnd { work, function }
}
