//! How items are encoded inside a recording's blocks: postcard (varints, length-prefixed
//! strings, enum variants by position) of the types below.
//!
//! These types mirror [`tracer_fs::event::Event`] on purpose instead of encoding it directly:
//!
//! - `Event`'s serde form uses internally tagged enums (`#[serde(tag = "type")]`), which a
//!   non-self-describing format like postcard cannot decode;
//! - a recording must stay readable when `Event` changes. The conversions below destructure
//!   every field and variant, so any change to `Event` stops the build here, and whoever
//!   makes it decides: append a variant at the end of an enum (old files stay readable), or
//!   change an existing shape and bump [`super::FORMAT_VERSION`] (old files are refused with
//!   a clear message). The golden fixture test (`tracer/tests/report.rs`) catches a change
//!   of encoding that slipped through.
//!
//! Why decoded events rather than the raw wire records: the sinks receive decoded events
//! (the ring buffer's bytes are gone by then, and userspace adds events of its own), replay
//! needs exactly what the engine consumed, and postcard + zstd is smaller than the raw
//! records anyway (a `FileRef` is 256 bytes on the wire, mostly zero padding; here it is
//! about 60 bytes before compression). `WIRE_VERSION` is still recorded in the header, for
//! the record.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use tracer_fs::event::{
    AioFile, AioTask, BackingFile, BackingKind, Event, HolderRef, LockHolderRef, LockHook, LockSys,
    MountCallOp, MountInfo, NameKind, Payload, RefHow, ScannedTask, TaskRes, WorkCtx, WorkFnKind,
};

/// One entry of a block, as encoded. Variants are identified by position: append only.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum WireItem<'a> {
    Event(RecEvent<'a>),
    Symbol {
        addr: u64,
        name: Cow<'a, str>,
    },
    EvidenceLimit(Cow<'a, str>),
    Figures(Cow<'a, str>),
    BadRecord(Cow<'a, str>),
    Ready {
        ts_ns: u64,
    },
    CommandStarted {
        ts_ns: u64,
        pid: u32,
        argv: Vec<Cow<'a, str>>,
    },
    CommandExited {
        ts_ns: u64,
        pid: u32,
        status: i32,
        signal: Option<i32>,
    },
    TestResults(Vec<(Cow<'a, str>, Cow<'a, str>)>),
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct RecEvent<'a> {
    ts_ns: u64,
    cpu: u16,
    pid: u32,
    tgid: u32,
    comm: Cow<'a, str>,
    work: Option<(u64, u64)>,
    payload: RecPayload<'a>,
}

#[derive(Debug, Serialize, Deserialize)]
enum RecHolder {
    Fd { tgid: u32, fd: i32 },
    UringFixed { ctx: u64 },
    UringReq { ctx: u64, req: u64 },
    // Appended: older recordings stay readable.
    Mmap { tgid: u32, start: u64, end: u64 },
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
enum RecHow {
    Open,
    Snapshot,
    UringRegister,
    UringFileGet,
    Close,
    UringReqDone,
    UringUnregister,
    // New variants go last: postcard numbers them in order.
    Rescan,
    VmaScan,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
enum RecOp {
    Mount,
    Umount,
    MoveMount,
    Fsmount,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
enum RecNameKind {
    None,
    UserPath,
    Dentry,
}

#[derive(Debug, Serialize, Deserialize)]
struct RecMount<'a> {
    mount_id: i32,
    parent_id: i32,
    major: u32,
    minor: u32,
    root: Cow<'a, str>,
    mount_point: Cow<'a, str>,
    fs_type: Cow<'a, str>,
    source: Cow<'a, str>,
}

#[derive(Debug, Serialize, Deserialize)]
enum RecPayload<'a> {
    MountCall {
        op: RecOp,
        flags: u32,
        ret: i64,
        enter_ns: u64,
        source: Cow<'a, str>,
        target: Cow<'a, str>,
        fs_type: Cow<'a, str>,
    },
    TaskExit {
        exit_code: i32,
        group_dead: bool,
    },
    Signal {
        sig: i32,
        result: i32,
        target_pid: i32,
        group: bool,
        target_comm: Cow<'a, str>,
    },
    UringCreate {
        ctx: u64,
        fd: i32,
        sq_entries: u32,
        cq_entries: u32,
        flags: u32,
    },
    UringRegister {
        ctx: u64,
        opcode: u32,
        nr_files: u32,
        ret: i64,
    },
    FileRef {
        file: u64,
        holder: RecHolder,
        how: RecHow,
        mnt_id: i32,
        dev: u32,
        ino: u64,
        name_kind: RecNameKind,
        name: Cow<'a, str>,
    },
    FileUnref {
        file: u64,
        holder: RecHolder,
        how: RecHow,
    },
    FileFree {
        file: u64,
        mnt_id: i32,
        ino: u64,
    },
    WorkQueued {
        work: u64,
        function: u64,
        target_cpu: i32,
    },
    WorkStart {
        work: u64,
        function: u64,
    },
    WorkEnd {
        work: u64,
        function: u64,
    },
    WorkArmed {
        work: u64,
        function: u64,
        delay_jiffies: u64,
    },
    UringReqDone {
        ctx: u64,
        req: u64,
        res: i32,
        failed: bool,
    },
    MountTable {
        mounts: Vec<RecMount<'a>>,
    },
    TestMarker {
        test: Cow<'a, str>,
    },
    // New variants go last: postcard numbers them in order.
    MountsAppeared {
        mounts: Vec<RecMount<'a>>,
    },
    // The precise tier's events (appended: older recordings stay readable).
    FilePut {
        file: u64,
        mnt_id: i32,
        ino: u64,
        count: i64,
        last: bool,
    },
    FputDeferred {
        file: u64,
        mnt_id: i32,
        target_pid: u32,
        target_tgid: u32,
    },
    WorkFnEntered {
        which: RecWorkFn,
        work: u64,
    },
    UmountRet {
        mnt_id: i32,
        ret: i64,
        flags: u32,
        enter_ns: u64,
    },
    MountCleanup {
        mnt_id: i32,
    },
    // Exiting tasks and task scans (appended: older recordings stay readable).
    TaskResFreed {
        /// 1: the fd table, 2: the fs_struct.
        what: u8,
        ptr: u64,
    },
    TaskSeen {
        exiting: bool,
        zombie: bool,
        state: u32,
        cwd_mnt: i32,
        root_mnt: i32,
        has_files: bool,
        has_fs: bool,
        has_mm: bool,
        stack: Vec<Cow<'a, str>>,
    },
    PinScanDone {
        started_ns: u64,
        mounts: Vec<i32>,
    },
    MountRefs {
        mnt_id: i32,
        count: i32,
        cpus: u32,
        cpus_possible: u32,
    },
    /// A task exit with the cwd/root it held (written instead of `TaskExit`, which older
    /// recordings hold).
    TaskExitFs {
        exit_code: i32,
        group_dead: bool,
        cwd_mnt: i32,
        root_mnt: i32,
    },
    // File locks (appended: older recordings stay readable).
    LockEvent {
        hook: RecLockHook,
        fl: u64,
        file: u64,
        owner: u64,
        ino: u64,
        dev: u32,
        mnt_id: i32,
        flags: u32,
        ret: i32,
        lock_pid: u32,
        lock_type: u8,
        holder: Option<RecLockHolder>,
    },
    LockCall {
        sys: RecLockSys,
        cmd: u32,
        fd: i32,
        ret: i64,
        enter_ns: u64,
    },
    // Holders found at a failed umount (appended after the locks').
    MmapScanDone {
        started_ns: u64,
        mounts: Vec<i32>,
    },
    BackingScan {
        mounts: Vec<i32>,
        files: Vec<RecBacking<'a>>,
    },
    AioScan {
        tasks: Vec<RecAioTask>,
    },
    // Deletes that did not free space (appended).
    SpaceHeld {
        file: u64,
        ino: u64,
        dev: u32,
        mnt_id: i32,
        size: u64,
        blocks: u64,
    },
    // The mount a mount call made, from its record (appended).
    MountMade {
        mount: RecMount<'a>,
    },
    // The scans after a failed umount could not run (appended).
    ScanMissed {
        mnt_id: i32,
        target: Cow<'a, str>,
        why: Cow<'a, str>,
    },
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
enum RecLockHook {
    Flock,
    Posix,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
enum RecLockSys {
    Flock,
    Fcntl,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct RecLockHolder {
    lock: u64,
    file: u64,
    owner: u64,
    pid: u32,
    lock_type: u8,
}

fn lock_holder_to(h: &LockHolderRef) -> RecLockHolder {
    let LockHolderRef {
        lock,
        file,
        owner,
        pid,
        lock_type,
    } = *h;
    RecLockHolder {
        lock,
        file,
        owner,
        pid,
        lock_type,
    }
}

fn lock_holder_from(h: RecLockHolder) -> LockHolderRef {
    LockHolderRef {
        lock: h.lock,
        file: h.file,
        owner: h.owner,
        pid: h.pid,
        lock_type: h.lock_type,
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct RecAioTask {
    tgid: u32,
    ctx: u64,
    submitted: u64,
    reaped: u64,
    last_submit_ns: u64,
    /// (file, mount id)
    files: Vec<(u64, i32)>,
}

#[derive(Debug, Serialize, Deserialize)]
struct RecBacking<'a> {
    /// 0: a loop device's backing file, 1: a swap file.
    kind: u8,
    device: Cow<'a, str>,
    path: Cow<'a, str>,
    mnt_id: i32,
    ino: u64,
}

fn rec_mounts(mounts: &[MountInfo]) -> Vec<RecMount<'_>> {
    mounts
        .iter()
        .map(|m| {
            let MountInfo {
                mount_id,
                parent_id,
                major,
                minor,
                root,
                mount_point,
                fs_type,
                source,
            } = m;
            RecMount {
                mount_id: *mount_id,
                parent_id: *parent_id,
                major: *major,
                minor: *minor,
                root: b(root),
                mount_point: b(mount_point),
                fs_type: b(fs_type),
                source: b(source),
            }
        })
        .collect()
}

fn own_mounts(mounts: Vec<RecMount<'_>>) -> Vec<MountInfo> {
    mounts
        .into_iter()
        .map(|m| MountInfo {
            mount_id: m.mount_id,
            parent_id: m.parent_id,
            major: m.major,
            minor: m.minor,
            root: o(m.root),
            mount_point: o(m.mount_point),
            fs_type: o(m.fs_type),
            source: o(m.source),
        })
        .collect()
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
enum RecWorkFn {
    DelayedFput,
    IoFallbackReqFunc,
    IoRingExitWork,
}

fn work_fn_to(k: WorkFnKind) -> RecWorkFn {
    match k {
        WorkFnKind::DelayedFput => RecWorkFn::DelayedFput,
        WorkFnKind::IoFallbackReqFunc => RecWorkFn::IoFallbackReqFunc,
        WorkFnKind::IoRingExitWork => RecWorkFn::IoRingExitWork,
    }
}

fn work_fn_from(k: RecWorkFn) -> WorkFnKind {
    match k {
        RecWorkFn::DelayedFput => WorkFnKind::DelayedFput,
        RecWorkFn::IoFallbackReqFunc => WorkFnKind::IoFallbackReqFunc,
        RecWorkFn::IoRingExitWork => WorkFnKind::IoRingExitWork,
    }
}

fn holder_to(h: &HolderRef) -> RecHolder {
    match *h {
        HolderRef::Fd { tgid, fd } => RecHolder::Fd { tgid, fd },
        HolderRef::UringFixed { ctx } => RecHolder::UringFixed { ctx },
        HolderRef::UringReq { ctx, req } => RecHolder::UringReq { ctx, req },
        HolderRef::Mmap { tgid, start, end } => RecHolder::Mmap { tgid, start, end },
    }
}

fn holder_from(h: RecHolder) -> HolderRef {
    match h {
        RecHolder::Fd { tgid, fd } => HolderRef::Fd { tgid, fd },
        RecHolder::UringFixed { ctx } => HolderRef::UringFixed { ctx },
        RecHolder::UringReq { ctx, req } => HolderRef::UringReq { ctx, req },
        RecHolder::Mmap { tgid, start, end } => HolderRef::Mmap { tgid, start, end },
    }
}

fn how_to(h: RefHow) -> RecHow {
    match h {
        RefHow::Open => RecHow::Open,
        RefHow::Snapshot => RecHow::Snapshot,
        RefHow::Rescan => RecHow::Rescan,
        RefHow::VmaScan => RecHow::VmaScan,
        RefHow::UringRegister => RecHow::UringRegister,
        RefHow::UringFileGet => RecHow::UringFileGet,
        RefHow::Close => RecHow::Close,
        RefHow::UringReqDone => RecHow::UringReqDone,
        RefHow::UringUnregister => RecHow::UringUnregister,
    }
}

fn how_from(h: RecHow) -> RefHow {
    match h {
        RecHow::Open => RefHow::Open,
        RecHow::Snapshot => RefHow::Snapshot,
        RecHow::Rescan => RefHow::Rescan,
        RecHow::VmaScan => RefHow::VmaScan,
        RecHow::UringRegister => RefHow::UringRegister,
        RecHow::UringFileGet => RefHow::UringFileGet,
        RecHow::Close => RefHow::Close,
        RecHow::UringReqDone => RefHow::UringReqDone,
        RecHow::UringUnregister => RefHow::UringUnregister,
    }
}

fn op_to(o: MountCallOp) -> RecOp {
    match o {
        MountCallOp::Mount => RecOp::Mount,
        MountCallOp::Umount => RecOp::Umount,
        MountCallOp::MoveMount => RecOp::MoveMount,
        MountCallOp::Fsmount => RecOp::Fsmount,
    }
}

fn op_from(o: RecOp) -> MountCallOp {
    match o {
        RecOp::Mount => MountCallOp::Mount,
        RecOp::Umount => MountCallOp::Umount,
        RecOp::MoveMount => MountCallOp::MoveMount,
        RecOp::Fsmount => MountCallOp::Fsmount,
    }
}

fn name_kind_to(k: NameKind) -> RecNameKind {
    match k {
        NameKind::None => RecNameKind::None,
        NameKind::UserPath => RecNameKind::UserPath,
        NameKind::Dentry => RecNameKind::Dentry,
    }
}

fn name_kind_from(k: RecNameKind) -> NameKind {
    match k {
        RecNameKind::None => NameKind::None,
        RecNameKind::UserPath => NameKind::UserPath,
        RecNameKind::Dentry => NameKind::Dentry,
    }
}

fn b(s: &str) -> Cow<'_, str> {
    Cow::Borrowed(s)
}

/// A task name, inline (no allocation).
fn c(s: Cow<'_, str>) -> tracer_fs::actor::Comm {
    tracer_fs::actor::Comm::from(s.as_ref())
}

fn o(s: Cow<'_, str>) -> String {
    s.into_owned()
}

impl<'a> RecEvent<'a> {
    pub(crate) fn of(ev: &'a Event) -> Self {
        let Event {
            ts_ns,
            cpu,
            pid,
            tgid,
            comm,
            work,
            payload,
        } = ev;
        let payload = match payload {
            Payload::MountCall(tracer_fs::event::MountCall {
                op,
                flags,
                ret,
                enter_ns,
                source,
                target,
                fs_type,
            }) => RecPayload::MountCall {
                op: op_to(*op),
                flags: *flags,
                ret: *ret,
                enter_ns: *enter_ns,
                source: b(source),
                target: b(target),
                fs_type: b(fs_type),
            },
            Payload::TaskExit {
                exit_code,
                group_dead,
                cwd_mnt,
                root_mnt,
            } => RecPayload::TaskExitFs {
                exit_code: *exit_code,
                group_dead: *group_dead,
                cwd_mnt: *cwd_mnt,
                root_mnt: *root_mnt,
            },
            Payload::Signal {
                sig,
                result,
                target_pid,
                group,
                target_comm,
            } => RecPayload::Signal {
                sig: *sig,
                result: *result,
                target_pid: *target_pid,
                group: *group,
                target_comm: b(target_comm),
            },
            Payload::UringCreate {
                ctx,
                fd,
                sq_entries,
                cq_entries,
                flags,
            } => RecPayload::UringCreate {
                ctx: *ctx,
                fd: *fd,
                sq_entries: *sq_entries,
                cq_entries: *cq_entries,
                flags: *flags,
            },
            Payload::UringRegister {
                ctx,
                opcode,
                nr_files,
                ret,
            } => RecPayload::UringRegister {
                ctx: *ctx,
                opcode: *opcode,
                nr_files: *nr_files,
                ret: *ret,
            },
            Payload::FileRef(tracer_fs::event::FileRef {
                file,
                holder,
                how,
                mnt_id,
                dev,
                ino,
                name_kind,
                name,
            }) => RecPayload::FileRef {
                file: *file,
                holder: holder_to(holder),
                how: how_to(*how),
                mnt_id: *mnt_id,
                dev: *dev,
                ino: *ino,
                name_kind: name_kind_to(*name_kind),
                name: b(name),
            },
            Payload::FileUnref { file, holder, how } => RecPayload::FileUnref {
                file: *file,
                holder: holder_to(holder),
                how: how_to(*how),
            },
            Payload::FileFree { file, mnt_id, ino } => RecPayload::FileFree {
                file: *file,
                mnt_id: *mnt_id,
                ino: *ino,
            },
            Payload::WorkQueued {
                work,
                function,
                target_cpu,
            } => RecPayload::WorkQueued {
                work: *work,
                function: *function,
                target_cpu: *target_cpu,
            },
            Payload::WorkStart { work, function } => RecPayload::WorkStart {
                work: *work,
                function: *function,
            },
            Payload::WorkEnd { work, function } => RecPayload::WorkEnd {
                work: *work,
                function: *function,
            },
            Payload::WorkArmed {
                work,
                function,
                delay_jiffies,
            } => RecPayload::WorkArmed {
                work: *work,
                function: *function,
                delay_jiffies: *delay_jiffies,
            },
            Payload::UringReqDone {
                ctx,
                req,
                res,
                failed,
            } => RecPayload::UringReqDone {
                ctx: *ctx,
                req: *req,
                res: *res,
                failed: *failed,
            },
            Payload::MountTable { mounts } => RecPayload::MountTable {
                mounts: rec_mounts(mounts),
            },
            Payload::MountsAppeared { mounts } => RecPayload::MountsAppeared {
                mounts: rec_mounts(mounts),
            },
            Payload::MountMade { mount } => RecPayload::MountMade {
                mount: rec_mounts(std::slice::from_ref(mount)).remove(0),
            },
            Payload::ScanMissed {
                mnt_id,
                target,
                why,
            } => RecPayload::ScanMissed {
                mnt_id: *mnt_id,
                target: b(target),
                why: b(why),
            },
            Payload::TestMarker { test } => RecPayload::TestMarker { test: b(test) },
            Payload::FilePut {
                file,
                mnt_id,
                ino,
                count,
                last,
            } => RecPayload::FilePut {
                file: *file,
                mnt_id: *mnt_id,
                ino: *ino,
                count: *count,
                last: *last,
            },
            Payload::FputDeferred {
                file,
                mnt_id,
                target_pid,
                target_tgid,
            } => RecPayload::FputDeferred {
                file: *file,
                mnt_id: *mnt_id,
                target_pid: *target_pid,
                target_tgid: *target_tgid,
            },
            Payload::WorkFnEntered { which, work } => RecPayload::WorkFnEntered {
                which: work_fn_to(*which),
                work: *work,
            },
            Payload::UmountRet {
                mnt_id,
                ret,
                flags,
                enter_ns,
            } => RecPayload::UmountRet {
                mnt_id: *mnt_id,
                ret: *ret,
                flags: *flags,
                enter_ns: *enter_ns,
            },
            Payload::MountCleanup { mnt_id } => RecPayload::MountCleanup { mnt_id: *mnt_id },
            Payload::TaskResFreed { what, ptr } => RecPayload::TaskResFreed {
                what: match what {
                    TaskRes::Files => 1,
                    TaskRes::Fs => 2,
                },
                ptr: *ptr,
            },
            Payload::TaskSeen { task } => {
                let ScannedTask {
                    exiting,
                    zombie,
                    state,
                    cwd_mnt,
                    root_mnt,
                    has_files,
                    has_fs,
                    has_mm,
                    stack,
                } = task;
                RecPayload::TaskSeen {
                    exiting: *exiting,
                    zombie: *zombie,
                    state: *state,
                    cwd_mnt: *cwd_mnt,
                    root_mnt: *root_mnt,
                    has_files: *has_files,
                    has_fs: *has_fs,
                    has_mm: *has_mm,
                    stack: stack.iter().map(|f| b(f)).collect(),
                }
            }
            Payload::PinScanDone { started_ns, mounts } => RecPayload::PinScanDone {
                started_ns: *started_ns,
                mounts: mounts.clone(),
            },
            Payload::MmapScanDone { started_ns, mounts } => RecPayload::MmapScanDone {
                started_ns: *started_ns,
                mounts: mounts.clone(),
            },
            Payload::AioScan { tasks } => RecPayload::AioScan {
                tasks: tasks
                    .iter()
                    .map(|t| {
                        let AioTask {
                            tgid,
                            ctx,
                            submitted,
                            reaped,
                            last_submit_ns,
                            files,
                        } = t;
                        RecAioTask {
                            tgid: *tgid,
                            ctx: *ctx,
                            submitted: *submitted,
                            reaped: *reaped,
                            last_submit_ns: *last_submit_ns,
                            files: files.iter().map(|f| (f.file, f.mnt_id)).collect(),
                        }
                    })
                    .collect(),
            },
            Payload::BackingScan { mounts, files } => RecPayload::BackingScan {
                mounts: mounts.clone(),
                files: files
                    .iter()
                    .map(|f| {
                        let BackingFile {
                            kind,
                            device,
                            path,
                            mnt_id,
                            ino,
                        } = f;
                        RecBacking {
                            kind: match kind {
                                BackingKind::Loop => 0,
                                BackingKind::Swap => 1,
                            },
                            device: b(device),
                            path: b(path),
                            mnt_id: *mnt_id,
                            ino: *ino,
                        }
                    })
                    .collect(),
            },
            Payload::MountRefs {
                mnt_id,
                count,
                cpus,
                cpus_possible,
            } => RecPayload::MountRefs {
                mnt_id: *mnt_id,
                count: *count,
                cpus: *cpus,
                cpus_possible: *cpus_possible,
            },
            Payload::LockEvent {
                hook,
                fl,
                file,
                owner,
                ino,
                dev,
                mnt_id,
                flags,
                ret,
                lock_pid,
                lock_type,
                holder,
            } => RecPayload::LockEvent {
                hook: match hook {
                    LockHook::Flock => RecLockHook::Flock,
                    LockHook::Posix => RecLockHook::Posix,
                },
                fl: *fl,
                file: *file,
                owner: *owner,
                ino: *ino,
                dev: *dev,
                mnt_id: *mnt_id,
                flags: *flags,
                ret: *ret,
                lock_pid: *lock_pid,
                lock_type: *lock_type,
                holder: holder.as_ref().map(lock_holder_to),
            },
            Payload::LockCall {
                sys,
                cmd,
                fd,
                ret,
                enter_ns,
            } => RecPayload::LockCall {
                sys: match sys {
                    LockSys::Flock => RecLockSys::Flock,
                    LockSys::Fcntl => RecLockSys::Fcntl,
                },
                cmd: *cmd,
                fd: *fd,
                ret: *ret,
                enter_ns: *enter_ns,
            },
            Payload::SpaceHeld {
                file,
                ino,
                dev,
                mnt_id,
                size,
                blocks,
            } => RecPayload::SpaceHeld {
                file: *file,
                ino: *ino,
                dev: *dev,
                mnt_id: *mnt_id,
                size: *size,
                blocks: *blocks,
            },
        };
        RecEvent {
            ts_ns: *ts_ns,
            cpu: *cpu,
            pid: *pid,
            tgid: *tgid,
            comm: b(comm),
            work: work.map(|w| (w.work, w.function)),
            payload,
        }
    }

    pub(crate) fn into_event(self) -> Event {
        let payload = match self.payload {
            RecPayload::MountCall {
                op,
                flags,
                ret,
                enter_ns,
                source,
                target,
                fs_type,
            } => Payload::MountCall(tracer_fs::event::MountCall {
                op: op_from(op),
                flags,
                ret,
                enter_ns,
                source: o(source),
                target: o(target),
                fs_type: o(fs_type),
            }),
            RecPayload::TaskExit {
                exit_code,
                group_dead,
            } => Payload::TaskExit {
                exit_code,
                group_dead,
                cwd_mnt: -1,
                root_mnt: -1,
            },
            RecPayload::TaskExitFs {
                exit_code,
                group_dead,
                cwd_mnt,
                root_mnt,
            } => Payload::TaskExit {
                exit_code,
                group_dead,
                cwd_mnt,
                root_mnt,
            },
            RecPayload::Signal {
                sig,
                result,
                target_pid,
                group,
                target_comm,
            } => Payload::Signal {
                sig,
                result,
                target_pid,
                group,
                target_comm: c(target_comm),
            },
            RecPayload::UringCreate {
                ctx,
                fd,
                sq_entries,
                cq_entries,
                flags,
            } => Payload::UringCreate {
                ctx,
                fd,
                sq_entries,
                cq_entries,
                flags,
            },
            RecPayload::UringRegister {
                ctx,
                opcode,
                nr_files,
                ret,
            } => Payload::UringRegister {
                ctx,
                opcode,
                nr_files,
                ret,
            },
            RecPayload::FileRef {
                file,
                holder,
                how,
                mnt_id,
                dev,
                ino,
                name_kind,
                name,
            } => Payload::FileRef(tracer_fs::event::FileRef {
                file,
                holder: holder_from(holder),
                how: how_from(how),
                mnt_id,
                dev,
                ino,
                name_kind: name_kind_from(name_kind),
                name: o(name),
            }),
            RecPayload::FileUnref { file, holder, how } => Payload::FileUnref {
                file,
                holder: holder_from(holder),
                how: how_from(how),
            },
            RecPayload::FileFree { file, mnt_id, ino } => Payload::FileFree { file, mnt_id, ino },
            RecPayload::WorkQueued {
                work,
                function,
                target_cpu,
            } => Payload::WorkQueued {
                work,
                function,
                target_cpu,
            },
            RecPayload::WorkStart { work, function } => Payload::WorkStart { work, function },
            RecPayload::WorkEnd { work, function } => Payload::WorkEnd { work, function },
            RecPayload::WorkArmed {
                work,
                function,
                delay_jiffies,
            } => Payload::WorkArmed {
                work,
                function,
                delay_jiffies,
            },
            RecPayload::UringReqDone {
                ctx,
                req,
                res,
                failed,
            } => Payload::UringReqDone {
                ctx,
                req,
                res,
                failed,
            },
            RecPayload::MountTable { mounts } => Payload::MountTable {
                mounts: own_mounts(mounts),
            },
            RecPayload::MountsAppeared { mounts } => Payload::MountsAppeared {
                mounts: own_mounts(mounts),
            },
            RecPayload::MountMade { mount } => Payload::MountMade {
                mount: own_mounts(vec![mount]).remove(0),
            },
            RecPayload::ScanMissed {
                mnt_id,
                target,
                why,
            } => Payload::ScanMissed {
                mnt_id,
                target: o(target),
                why: o(why),
            },
            RecPayload::TestMarker { test } => Payload::TestMarker { test: o(test) },
            RecPayload::FilePut {
                file,
                mnt_id,
                ino,
                count,
                last,
            } => Payload::FilePut {
                file,
                mnt_id,
                ino,
                count,
                last,
            },
            RecPayload::FputDeferred {
                file,
                mnt_id,
                target_pid,
                target_tgid,
            } => Payload::FputDeferred {
                file,
                mnt_id,
                target_pid,
                target_tgid,
            },
            RecPayload::WorkFnEntered { which, work } => Payload::WorkFnEntered {
                which: work_fn_from(which),
                work,
            },
            RecPayload::UmountRet {
                mnt_id,
                ret,
                flags,
                enter_ns,
            } => Payload::UmountRet {
                mnt_id,
                ret,
                flags,
                enter_ns,
            },
            RecPayload::MountCleanup { mnt_id } => Payload::MountCleanup { mnt_id },
            RecPayload::TaskResFreed { what, ptr } => Payload::TaskResFreed {
                what: if what == 1 {
                    TaskRes::Files
                } else {
                    TaskRes::Fs
                },
                ptr,
            },
            RecPayload::TaskSeen {
                exiting,
                zombie,
                state,
                cwd_mnt,
                root_mnt,
                has_files,
                has_fs,
                has_mm,
                stack,
            } => Payload::TaskSeen {
                task: ScannedTask {
                    exiting,
                    zombie,
                    state,
                    cwd_mnt,
                    root_mnt,
                    has_files,
                    has_fs,
                    has_mm,
                    stack: stack.into_iter().map(o).collect(),
                },
            },
            RecPayload::PinScanDone { started_ns, mounts } => {
                Payload::PinScanDone { started_ns, mounts }
            }
            RecPayload::MmapScanDone { started_ns, mounts } => {
                Payload::MmapScanDone { started_ns, mounts }
            }
            RecPayload::AioScan { tasks } => Payload::AioScan {
                tasks: tasks
                    .into_iter()
                    .map(|t| AioTask {
                        tgid: t.tgid,
                        ctx: t.ctx,
                        submitted: t.submitted,
                        reaped: t.reaped,
                        last_submit_ns: t.last_submit_ns,
                        files: t
                            .files
                            .into_iter()
                            .map(|(file, mnt_id)| AioFile { file, mnt_id })
                            .collect(),
                    })
                    .collect(),
            },
            RecPayload::BackingScan { mounts, files } => Payload::BackingScan {
                mounts,
                files: files
                    .into_iter()
                    .map(|f| BackingFile {
                        kind: if f.kind == 0 {
                            BackingKind::Loop
                        } else {
                            BackingKind::Swap
                        },
                        device: o(f.device),
                        path: o(f.path),
                        mnt_id: f.mnt_id,
                        ino: f.ino,
                    })
                    .collect(),
            },
            RecPayload::MountRefs {
                mnt_id,
                count,
                cpus,
                cpus_possible,
            } => Payload::MountRefs {
                mnt_id,
                count,
                cpus,
                cpus_possible,
            },
            RecPayload::LockEvent {
                hook,
                fl,
                file,
                owner,
                ino,
                dev,
                mnt_id,
                flags,
                ret,
                lock_pid,
                lock_type,
                holder,
            } => Payload::LockEvent {
                hook: match hook {
                    RecLockHook::Flock => LockHook::Flock,
                    RecLockHook::Posix => LockHook::Posix,
                },
                fl,
                file,
                owner,
                ino,
                dev,
                mnt_id,
                flags,
                ret,
                lock_pid,
                lock_type,
                holder: holder.map(lock_holder_from),
            },
            RecPayload::LockCall {
                sys,
                cmd,
                fd,
                ret,
                enter_ns,
            } => Payload::LockCall {
                sys: match sys {
                    RecLockSys::Flock => LockSys::Flock,
                    RecLockSys::Fcntl => LockSys::Fcntl,
                },
                cmd,
                fd,
                ret,
                enter_ns,
            },
            RecPayload::SpaceHeld {
                file,
                ino,
                dev,
                mnt_id,
                size,
                blocks,
            } => Payload::SpaceHeld {
                file,
                ino,
                dev,
                mnt_id,
                size,
                blocks,
            },
        };
        Event {
            ts_ns: self.ts_ns,
            cpu: self.cpu,
            pid: self.pid,
            tgid: self.tgid,
            comm: c(self.comm),
            work: self.work.map(|(work, function)| WorkCtx { work, function }),
            payload,
        }
    }
}
