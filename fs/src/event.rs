//! Decoded events: what the engine consumes, whether live from the ring buffer or replayed
//! from a recording. Kernel records become [`Event`]s through [`decode`]; userspace adds a few
//! of its own (mount-table snapshots, xfstests markers, symbol tables).

use serde::{Deserialize, Serialize};

use crate::wire::{self, HolderKind, MountOp, RecordKind, RefSource, WireError};

/// One event, in the order the engine must apply them (sorted by `ts_ns`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Nanoseconds since boot (`CLOCK_BOOTTIME`).
    pub ts_ns: u64,
    pub cpu: u16,
    /// Thread id.
    pub pid: u32,
    /// Process id.
    pub tgid: u32,
    pub comm: crate::actor::Comm,
    /// The work item the CPU was executing when the event fired, if any.
    pub work: Option<WorkCtx>,
    pub payload: Payload,
}

/// A work item being executed: the `work_struct *` and its function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WorkCtx {
    pub work: u64,
    pub function: u64,
}

/// Who holds a reference to a file, as the kernel side reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HolderRef {
    /// Slot `fd` in the fd table of process `tgid`.
    Fd { tgid: u32, fd: i32 },
    /// A registered file of io_uring ring `ctx`.
    UringFixed { ctx: u64 },
    /// In-flight requests of ring `ctx`: those on the file `req` names (the kernel side
    /// counts them per ring and file, see `wire::UringReqDone`); in recordings made
    /// before 2026-12-08, one request, `req` its `io_kiocb`.
    UringReq { ctx: u64, req: u64 },
    /// A memory mapping `[start, end)` of process `tgid` (`vma->vm_file`).
    Mmap { tgid: u32, start: u64, end: u64 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefHow {
    Open,
    Snapshot,
    /// Found in an fd table by a scan the tracer ran when a umount failed with EBUSY: a
    /// reference taken in a way no hook sees (dup2, fork, SCM_RIGHTS, ...). Never from a
    /// wire record: userspace relabels the scan's snapshot records.
    Rescan,
    UringRegister,
    UringFileGet,
    Close,
    UringReqDone,
    UringUnregister,
    /// Found by the VMA scan the tracer ran when a umount failed with EBUSY (a mapping:
    /// no hook sees mmap/munmap).
    VmaScan,
}

impl From<RefSource> for RefHow {
    fn from(s: RefSource) -> Self {
        match s {
            RefSource::Open => RefHow::Open,
            RefSource::Snapshot => RefHow::Snapshot,
            RefSource::UringRegister => RefHow::UringRegister,
            RefSource::UringFileGet => RefHow::UringFileGet,
            RefSource::Close => RefHow::Close,
            RefSource::UringReqDone => RefHow::UringReqDone,
            RefSource::UringUnregister => RefHow::UringUnregister,
            RefSource::VmaScan => RefHow::VmaScan,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MountCallOp {
    Mount,
    Umount,
    MoveMount,
    Fsmount,
}

impl From<MountOp> for MountCallOp {
    fn from(op: MountOp) -> Self {
        match op {
            MountOp::Mount => MountCallOp::Mount,
            MountOp::Umount => MountCallOp::Umount,
            MountOp::MoveMount => MountCallOp::MoveMount,
            MountOp::Fsmount => MountCallOp::Fsmount,
        }
    }
}

/// How a file's name was learnt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NameKind {
    None,
    /// As passed to open(2): absolute, or relative to the opener's cwd/dirfd.
    UserPath,
    /// The dentry's own name (last component only).
    Dentry,
}

/// The deferred-release work functions the precise tier hooks at entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkFnKind {
    DelayedFput,
    IoFallbackReqFunc,
    IoRingExitWork,
}

impl WorkFnKind {
    pub fn from_followed(v: u32) -> Option<Self> {
        match v as u8 {
            wire::followed::DELAYED_FPUT => Some(Self::DelayedFput),
            wire::followed::URING_FALLBACK => Some(Self::IoFallbackReqFunc),
            wire::followed::URING_EXIT => Some(Self::IoRingExitWork),
            _ => None,
        }
    }

    pub fn function_name(self) -> &'static str {
        match self {
            Self::DelayedFput => "delayed_fput",
            Self::IoFallbackReqFunc => "io_fallback_req_func",
            Self::IoRingExitWork => "io_ring_exit_work",
        }
    }
}

/// The per-task resources whose release ends what an exiting task holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskRes {
    /// The fd table (`files_struct`).
    Files,
    /// The cwd and root (`fs_struct`).
    Fs,
}

/// What a task scan read of one task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScannedTask {
    /// Inside `do_exit()` (`PF_EXITING`).
    pub exiting: bool,
    /// A zombie or dead task (`exit_state`): all its resources are gone.
    pub zombie: bool,
    /// `__state` (2: uninterruptible).
    pub state: u32,
    /// Mount ids of its cwd and root (-1: it has no fs_struct any more).
    pub cwd_mnt: i32,
    pub root_mnt: i32,
    pub has_files: bool,
    pub has_fs: bool,
    pub has_mm: bool,
    /// Its kernel stack, innermost first: `0x…` addresses as read, replaced by
    /// `function+0xoff` names where userspace could symbolize them.
    pub stack: Vec<String>,
}

/// What a file backs, pinning the mount it is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackingKind {
    /// The backing file of a loop device (`/sys/block/loopN/loop/backing_file`).
    Loop,
    /// An active swap file (`/proc/swaps`).
    Swap,
}

/// A file on a mount that a device holds open, found by reading sysfs and /proc/swaps
/// when a umount failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackingFile {
    pub kind: BackingKind,
    /// The loop device (`/dev/loop3`); empty for a swap file.
    pub device: String,
    /// The file's path as the kernel gives it.
    pub path: String,
    pub mnt_id: i32,
    /// Its inode number (0: it could not be stat'ed, e.g. deleted).
    pub ino: u64,
}

/// A file an AIO submission named, and its mount.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AioFile {
    pub file: u64,
    pub mnt_id: i32,
}

/// One process's Linux AIO as the syscall counts stood when a umount failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AioTask {
    pub tgid: u32,
    /// The context (`aio_context_t`) of its latest submission.
    pub ctx: u64,
    /// iocbs io_submit accepted, and completions io_getevents returned (io_destroy settles
    /// them): `submitted - reaped` bounds the requests in flight from above.
    pub submitted: u64,
    pub reaped: u64,
    pub last_submit_ns: u64,
    /// Files of its latest submissions, newest first.
    pub files: Vec<AioFile>,
}

impl AioTask {
    pub fn unreaped(&self) -> u64 {
        self.submitted.saturating_sub(self.reaped)
    }
}

/// One line of `/proc/self/mountinfo`, as far as the engine needs it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MountInfo {
    pub mount_id: i32,
    pub parent_id: i32,
    /// `major:minor`.
    pub major: u32,
    pub minor: u32,
    /// The root of the mount within its filesystem (`/` unless a bind of a subtree).
    pub root: String,
    pub mount_point: String,
    pub fs_type: String,
    pub source: String,
}

/// Which lock tracepoint a [`Payload::LockEvent`] came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LockHook {
    /// `flock_lock_inode`: flock(2) locks.
    Flock,
    /// `posix_lock_inode`: fcntl record locks (POSIX and OFD).
    Posix,
}

/// The lock a conflicting request ran into, as read from the inode's lock list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LockHolderRef {
    /// The holding lock (`struct file_lock *`).
    pub lock: u64,
    /// Its open file description (`struct file *`): the lock lives as long as it does
    /// (flock, OFD) or until its owner closes it or exits (POSIX).
    pub file: u64,
    pub owner: u64,
    /// The tgid that took it.
    pub pid: u32,
    pub lock_type: u8,
}

/// Which syscall a [`Payload::LockCall`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LockSys {
    Flock,
    Fcntl,
}

/// A mount-family syscall: its arguments, captured at entry, and its result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountCall {
    pub op: MountCallOp,
    pub flags: u32,
    pub ret: i64,
    pub enter_ns: u64,
    pub source: String,
    pub target: String,
    pub fs_type: String,
}

/// A reference to a file taken by a holder (an fd, a ring, a request, a mapping ...).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    pub file: u64,
    pub holder: HolderRef,
    pub how: RefHow,
    pub mnt_id: i32,
    pub dev: u32,
    pub ino: u64,
    pub name_kind: NameKind,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Payload {
    // --- from the kernel ---
    MountCall(MountCall),
    TaskExit {
        exit_code: i32,
        group_dead: bool,
        /// Mount ids of the process's cwd and root as its exit began (-1: not read, e.g. a
        /// thread whose process lives on).
        #[serde(default = "no_mount")]
        cwd_mnt: i32,
        #[serde(default = "no_mount")]
        root_mnt: i32,
    },
    /// A signal generated by this event's task for `target_pid`.
    Signal {
        sig: i32,
        result: i32,
        target_pid: i32,
        group: bool,
        target_comm: crate::actor::Comm,
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
    FileRef(FileRef),
    FileUnref {
        /// 0 when the kernel side did not know the file (the engine looks it up by holder).
        file: u64,
        holder: HolderRef,
        how: RefHow,
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
    /// A delayed work's timer was armed by this event's task (or work item).
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
    // --- from the precise hooks (fentry/kprobe) ---
    /// `fput()`: this event's task dropped a reference; `last` when it was the last one.
    FilePut {
        file: u64,
        mnt_id: i32,
        ino: u64,
        count: i64,
        last: bool,
    },
    /// `task_work_add(____fput)`: the final `__fput` will run when task `target_pid`
    /// (thread) of process `target_tgid` returns to user space.
    FputDeferred {
        file: u64,
        mnt_id: i32,
        target_pid: u32,
        target_tgid: u32,
    },
    /// A deferred-release work function was entered (`work` is its argument).
    WorkFnEntered {
        which: WorkFnKind,
        work: u64,
    },
    /// `path_umount()` returned `ret` for mount `mnt_id` (the umount's real result).
    UmountRet {
        mnt_id: i32,
        ret: i64,
        flags: u32,
        enter_ns: u64,
    },
    /// `cleanup_mnt()`: the mount's last reference is gone.
    MountCleanup {
        mnt_id: i32,
    },
    /// A task's fd table or fs_struct was freed in this event's task (for an exiting task:
    /// `exit_files()`, `exit_fs()`).
    TaskResFreed {
        what: TaskRes,
        ptr: u64,
    },
    /// A mount's reference count as a task scan read it: its per-CPU counts summed over
    /// `cpus` of `cpus_possible` CPUs (the sum is exact only when they are equal).
    MountRefs {
        mnt_id: i32,
        count: i32,
        cpus: u32,
        cpus_possible: u32,
    },
    /// One task as an on-demand task scan saw it (this event's pid/tgid/comm are the
    /// scanned task's): its cwd/root mounts and, when it is exiting, where it waits.
    TaskSeen {
        task: ScannedTask,
    },
    /// A file-lock request that conflicted (`ret` -EAGAIN/-EACCES, or 1: it will wait), was
    /// taken after a wait (`ret` 0), or an unlock (`lock_type` 2) of an inode that had a
    /// conflict. This event's task made the request.
    LockEvent {
        hook: LockHook,
        /// The request (`struct file_lock *`).
        fl: u64,
        file: u64,
        owner: u64,
        ino: u64,
        dev: u32,
        mnt_id: i32,
        /// `FL_*` flags.
        flags: u32,
        ret: i32,
        /// The request's `flc_pid`.
        lock_pid: u32,
        lock_type: u8,
        holder: Option<LockHolderRef>,
    },
    /// A flock(2)/fcntl(2) lock call that met a conflict returned.
    LockCall {
        sys: LockSys,
        cmd: u32,
        fd: i32,
        ret: i64,
        enter_ns: u64,
    },
    /// A delete left `file` (held by a ring or a request) with no link: its space stays
    /// allocated until the file's last reference goes.
    SpaceHeld {
        file: u64,
        ino: u64,
        dev: u32,
        mnt_id: i32,
        size: u64,
        blocks: u64,
    },
    // --- from userspace ---
    /// The whole mount table as read now (at attach, and after each mount-table change).
    MountTable {
        mounts: Vec<MountInfo>,
    },
    /// Mounts the mount-table watcher saw appear, read as soon as the table changed, which
    /// may be ahead of the records still queued in the ring buffer. Only additions are
    /// taken from it: a mount that is mounted and unmounted while the ring lags is still
    /// known when its records arrive, and removals keep coming from the ordered stream.
    MountsAppeared {
        mounts: Vec<MountInfo>,
    },
    /// The mount a successful mount call made, as its record read it from the kernel
    /// ([`made_mount`]), handed on right after that record: in stream order, so the engine
    /// knows it (and that its id no longer names the mount before) however far the stream
    /// lags behind the mount table.
    MountMade {
        mount: MountInfo,
    },
    /// A task scan after a failed umount is complete: the `TaskSeen` events of tasks whose
    /// cwd/root is on one of `mounts`, or that are exiting, came before this one; a pin on
    /// those mounts not seen since `started_ns` is gone.
    PinScanDone {
        started_ns: u64,
        mounts: Vec<i32>,
    },
    /// An xfstests `run fstests <test> at <date>` line from /dev/kmsg.
    TestMarker {
        test: String,
    },
    /// A VMA scan after a failed umount ran to its end: the mappings it found of files on
    /// `mounts` came before this one (as `FileRef`s by `VmaScan`); a mapping of a file on
    /// those mounts not found since `started_ns` is gone (munmap, exec, exit). Never sent
    /// for a scan that failed: its mappings are then not known gone.
    MmapScanDone {
        started_ns: u64,
        mounts: Vec<i32>,
    },
    /// Loop devices and swap files backed by files on `mounts`, as read when a umount
    /// failed (all of them: a device not listed does not hold a file on those mounts).
    BackingScan {
        mounts: Vec<i32>,
        files: Vec<BackingFile>,
    },
    /// The processes with an AIO context and their counts as they stood when a umount
    /// failed (all of them: the list replaces the previous one).
    AioScan {
        tasks: Vec<AioTask>,
    },
    /// The scans after a failed umount could not run (`why`: the mount was already gone),
    /// so the verdict of the failure right after this event names only what the records
    /// show. `mnt_id` is -1 where the failure named a path.
    ScanMissed {
        mnt_id: i32,
        target: String,
        why: String,
    },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("{0}")]
    Wire(WireError),
    #[error("record of kind {kind} has an invalid field: {what}")]
    BadField { kind: u16, what: &'static str },
}

impl From<WireError> for DecodeError {
    fn from(e: WireError) -> Self {
        DecodeError::Wire(e)
    }
}

/// The test name in an xfstests `run fstests <test> at <date>` line.
pub fn test_marker(message: &str) -> Option<String> {
    let (_, rest) = message.split_once("run fstests ")?;
    let mut words = rest.split_whitespace();
    let test = words.next()?;
    (words.next() == Some("at")).then(|| test.to_string())
}

fn string(field: &[u8]) -> String {
    String::from_utf8_lossy(wire::c_str_bytes(field)).into_owned()
}

/// A task name field (inline, no allocation).
fn comm(field: &[u8]) -> crate::actor::Comm {
    crate::actor::Comm::from_utf8_lossy(wire::c_str_bytes(field))
}

fn holder(
    kind: u16,
    h: u8,
    hdr: &wire::Header,
    fd: i32,
    obj: u64,
    ctx: u64,
) -> Result<HolderRef, DecodeError> {
    match HolderKind::from_u8(h) {
        Some(HolderKind::Fd) => Ok(HolderRef::Fd { tgid: hdr.tgid, fd }),
        Some(HolderKind::UringFixed) => Ok(HolderRef::UringFixed { ctx: obj }),
        Some(HolderKind::UringReq) => Ok(HolderRef::UringReq { ctx, req: obj }),
        Some(HolderKind::Mmap) => Ok(HolderRef::Mmap {
            tgid: hdr.tgid,
            start: obj,
            end: ctx,
        }),
        None => Err(DecodeError::BadField {
            kind,
            what: "holder",
        }),
    }
}

fn how(kind: u16, s: u8) -> Result<RefHow, DecodeError> {
    RefSource::from_u8(s)
        .map(RefHow::from)
        .ok_or(DecodeError::BadField {
            kind,
            what: "source",
        })
}

/// A change of a (ring, file)'s count of in-flight requests that a record tells: the first
/// request taking the file (`up`) or the last completing, with the sequence number the
/// change made (see `wire::UringReqDone`). `None` for other records.
pub fn request_change(bytes: &[u8]) -> Option<RequestChange> {
    let (kind, _) = wire::parse_header(bytes).ok()?;
    match kind {
        RecordKind::FileRef => {
            let r: wire::FileRef = wire::read(bytes).ok()?;
            (HolderKind::from_u8(r.holder) == Some(HolderKind::UringReq)).then_some(RequestChange {
                ring: r.holder_ctx,
                file: r.file,
                seq: wire::uring_seq::seq(r.holder_obj),
                up: true,
            })
        }
        RecordKind::UringReqDone => {
            let r: wire::UringReqDone = wire::read(bytes).ok()?;
            Some(RequestChange {
                ring: r.ctx,
                file: r.file,
                seq: r.seq,
                up: false,
            })
        }
        _ => None,
    }
}

/// See [`request_change`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestChange {
    pub ring: u64,
    pub file: u64,
    pub seq: u32,
    pub up: bool,
}

/// Decodes one record as it came from the ring buffer (or a snapshot iterator).
/// The mount a successful mount call's record says it made, as a mountinfo line would
/// show it as far as the record knows: root `/`, the source and type the call passed (a
/// mount table read later fills in the rest). None unless the mount's mountpoint is named
/// as the target's last component (the newest mount of the namespace can be another, a
/// propagated copy) and the target is absolute.
pub fn made_mount(bytes: &[u8]) -> Option<MountInfo> {
    let r: wire::MountCall = wire::read(bytes).ok()?;
    if r.ret != 0 || r.made_mnt_id < 0 {
        return None;
    }
    let target = string(&r.target);
    let point = match target.trim_end_matches('/') {
        "" => "/",
        t => t,
    };
    let name = string(&r.made_name);
    let last = point.rsplit('/').next().unwrap_or("");
    let named = if name.len() + 1 >= wire::MOUNT_MADE_NAME_LEN {
        last.starts_with(&name) // cut at the record's length
    } else {
        last == name
    };
    if !point.starts_with('/') || point == "/" || !named {
        return None;
    }
    Some(MountInfo {
        mount_id: r.made_mnt_id,
        parent_id: r.made_parent_id,
        major: r.made_dev >> 20,
        minor: r.made_dev & 0xf_ffff,
        root: "/".into(),
        mount_point: point.to_string(),
        fs_type: string(&r.fstype),
        source: string(&r.source),
    })
}

pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
    let (kind, hdr) = wire::parse_header(bytes)?;
    let k = hdr.kind;
    let payload = match kind {
        RecordKind::MountCall => {
            let r: wire::MountCall = wire::read(bytes)?;
            let op = MountOp::from_u32(r.op).ok_or(DecodeError::BadField {
                kind: k,
                what: "op",
            })?;
            Payload::MountCall(MountCall {
                op: op.into(),
                flags: r.flags,
                ret: r.ret,
                enter_ns: r.enter_ns,
                source: string(&r.source),
                target: string(&r.target),
                fs_type: string(&r.fstype),
            })
        }
        RecordKind::TaskExit => {
            let r: wire::TaskExit = wire::read(bytes)?;
            Payload::TaskExit {
                exit_code: r.exit_code,
                group_dead: r.group_dead != 0,
                cwd_mnt: r.pwd_mnt_id,
                root_mnt: r.root_mnt_id,
            }
        }
        RecordKind::Signal => {
            let r: wire::Signal = wire::read(bytes)?;
            Payload::Signal {
                sig: r.sig,
                result: r.result,
                target_pid: r.target_pid,
                group: r.group != 0,
                target_comm: comm(&r.target_comm),
            }
        }
        RecordKind::UringCreate => {
            let r: wire::UringCreate = wire::read(bytes)?;
            Payload::UringCreate {
                ctx: r.ctx,
                fd: r.fd,
                sq_entries: r.sq_entries,
                cq_entries: r.cq_entries,
                flags: r.flags,
            }
        }
        RecordKind::UringRegister => {
            let r: wire::UringRegister = wire::read(bytes)?;
            Payload::UringRegister {
                ctx: r.ctx,
                opcode: r.opcode,
                nr_files: r.nr_files,
                ret: r.ret,
            }
        }
        RecordKind::FileRef => {
            let r: wire::FileRef = wire::read(bytes)?;
            let name_kind = match r.name_kind {
                wire::NAME_NONE => NameKind::None,
                wire::NAME_USER_PATH => NameKind::UserPath,
                wire::NAME_DENTRY => NameKind::Dentry,
                _ => {
                    return Err(DecodeError::BadField {
                        kind: k,
                        what: "name_kind",
                    });
                }
            };
            // A ring's requests on a file are named by the file: `holder_obj` is their
            // count's word, which `RequestOrder` reads (`request_change`).
            let held_by = match holder(k, r.holder, &hdr, r.fd, r.holder_obj, r.holder_ctx)? {
                HolderRef::UringReq { ctx, .. } => HolderRef::UringReq { ctx, req: r.file },
                h => h,
            };
            Payload::FileRef(FileRef {
                file: r.file,
                holder: held_by,
                how: how(k, r.source)?,
                mnt_id: r.mnt_id,
                dev: r.dev,
                ino: r.ino,
                name_kind,
                name: string(&r.name),
            })
        }
        RecordKind::FileUnref => {
            let r: wire::FileUnref = wire::read(bytes)?;
            Payload::FileUnref {
                file: r.file,
                holder: holder(k, r.holder, &hdr, r.fd, r.holder_obj, r.holder_ctx)?,
                how: how(k, r.source)?,
            }
        }
        RecordKind::FileFree => {
            let r: wire::FileFree = wire::read(bytes)?;
            Payload::FileFree {
                file: r.file,
                mnt_id: r.mnt_id,
                ino: r.ino,
            }
        }
        RecordKind::WorkQueue | RecordKind::WorkStart | RecordKind::WorkEnd => {
            let r: wire::Work = wire::read(bytes)?;
            match kind {
                RecordKind::WorkQueue => Payload::WorkQueued {
                    work: r.work,
                    function: r.function,
                    target_cpu: r.target_cpu,
                },
                RecordKind::WorkStart => Payload::WorkStart {
                    work: r.work,
                    function: r.function,
                },
                _ => Payload::WorkEnd {
                    work: r.work,
                    function: r.function,
                },
            }
        }
        RecordKind::WorkArm => {
            let r: wire::WorkArm = wire::read(bytes)?;
            Payload::WorkArmed {
                work: r.work,
                function: r.function,
                delay_jiffies: r.delay_jiffies,
            }
        }
        RecordKind::UringReqDone => {
            let r: wire::UringReqDone = wire::read(bytes)?;
            Payload::UringReqDone {
                ctx: r.ctx,
                req: r.file,
                res: r.res,
                failed: false,
            }
        }
        RecordKind::FilePut => {
            let r: wire::FilePut = wire::read(bytes)?;
            Payload::FilePut {
                file: r.file,
                mnt_id: r.mnt_id,
                ino: r.ino,
                count: r.count,
                last: r.last != 0,
            }
        }
        RecordKind::FputDeferred => {
            let r: wire::FputDeferred = wire::read(bytes)?;
            Payload::FputDeferred {
                file: r.file,
                mnt_id: r.mnt_id,
                target_pid: r.target_pid,
                target_tgid: r.target_tgid,
            }
        }
        RecordKind::WorkFnEntry => {
            let r: wire::WorkFnEntry = wire::read(bytes)?;
            Payload::WorkFnEntered {
                which: WorkFnKind::from_followed(r.which).ok_or(DecodeError::BadField {
                    kind: k,
                    what: "which",
                })?,
                work: r.work,
            }
        }
        RecordKind::UmountRet => {
            let r: wire::UmountRet = wire::read(bytes)?;
            Payload::UmountRet {
                mnt_id: r.mnt_id,
                ret: r.ret,
                flags: r.flags,
                enter_ns: r.enter_ns,
            }
        }
        RecordKind::MountCleanup => {
            let r: wire::MountCleanup = wire::read(bytes)?;
            Payload::MountCleanup { mnt_id: r.mnt_id }
        }
        RecordKind::TaskResFree => {
            let r: wire::TaskResFree = wire::read(bytes)?;
            let what = match r.what {
                wire::task_res::FILES => TaskRes::Files,
                wire::task_res::FS => TaskRes::Fs,
                _ => {
                    return Err(DecodeError::BadField {
                        kind: k,
                        what: "what",
                    });
                }
            };
            Payload::TaskResFreed { what, ptr: r.ptr }
        }
        RecordKind::MountRefs => {
            let r: wire::MountRefs = wire::read(bytes)?;
            Payload::MountRefs {
                mnt_id: r.mnt_id,
                count: r.count,
                cpus: r.cpus,
                cpus_possible: r.cpus_possible,
            }
        }
        RecordKind::LockEvent => {
            let r: wire::LockEvent = wire::read(bytes)?;
            let hook = match r.hook {
                wire::lock_hook::FLOCK => LockHook::Flock,
                wire::lock_hook::POSIX => LockHook::Posix,
                _ => {
                    return Err(DecodeError::BadField {
                        kind: k,
                        what: "hook",
                    });
                }
            };
            Payload::LockEvent {
                hook,
                fl: r.fl,
                file: r.file,
                owner: r.owner,
                ino: r.ino,
                dev: r.dev,
                mnt_id: r.mnt_id,
                flags: r.flags,
                ret: r.ret,
                lock_pid: r.pid,
                lock_type: r.lock_type,
                holder: (r.holder_lock != 0).then_some(LockHolderRef {
                    lock: r.holder_lock,
                    file: r.holder_file,
                    owner: r.holder_owner,
                    pid: r.holder_pid,
                    lock_type: r.holder_type,
                }),
            }
        }
        RecordKind::LockCall => {
            let r: wire::LockCall = wire::read(bytes)?;
            let sys = match r.sys {
                wire::lock_sys::FLOCK => LockSys::Flock,
                wire::lock_sys::FCNTL => LockSys::Fcntl,
                _ => {
                    return Err(DecodeError::BadField {
                        kind: k,
                        what: "sys",
                    });
                }
            };
            Payload::LockCall {
                sys,
                cmd: r.cmd,
                fd: r.fd,
                ret: r.ret,
                enter_ns: r.enter_ns,
            }
        }
        RecordKind::Console => {
            let r: wire::Console = wire::read(bytes)?;
            match test_marker(&string(&r.text)) {
                Some(test) => Payload::TestMarker { test },
                None => {
                    return Err(DecodeError::BadField {
                        kind: k,
                        what: "console text without a test marker",
                    });
                }
            }
        }
        RecordKind::SpaceHeld => {
            let r: wire::SpaceHeld = wire::read(bytes)?;
            Payload::SpaceHeld {
                file: r.file,
                ino: r.ino,
                dev: r.dev,
                mnt_id: r.mnt_id,
                size: r.size,
                blocks: r.blocks,
            }
        }
        RecordKind::TaskScan => {
            let r: wire::TaskScan = wire::read(bytes)?;
            let n = (r.nr_frames as usize).min(wire::TASK_STACK_FRAMES);
            Payload::TaskSeen {
                task: ScannedTask {
                    exiting: r.flags & wire::PF_EXITING != 0,
                    zombie: r.exit_state != 0,
                    state: r.state,
                    cwd_mnt: r.pwd_mnt_id,
                    root_mnt: r.root_mnt_id,
                    has_files: r.has_files != 0,
                    has_fs: r.has_fs != 0,
                    has_mm: r.has_mm != 0,
                    stack: r.frames[..n].iter().map(|a| format!("{a:#x}")).collect(),
                },
            }
        }
    };
    Ok(Event {
        ts_ns: hdr.ts_ns,
        cpu: hdr.cpu,
        pid: hdr.pid,
        tgid: hdr.tgid,
        comm: comm(&hdr.comm),
        work: (hdr.work_fn != 0).then_some(WorkCtx {
            work: hdr.work,
            function: hdr.work_fn,
        }),
        payload,
    })
}

/// A mount id not known (events written before the field existed).
fn no_mount() -> i32 {
    -1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{COMM_LEN, Header};

    fn hdr(kind: RecordKind) -> Header {
        let mut comm = [0u8; COMM_LEN];
        comm[..4].copy_from_slice(b"test");
        Header {
            kind: kind as u16,
            cpu: 1,
            size: kind.size() as u32,
            ts_ns: 42,
            pid: 10,
            tgid: 9,
            work: 0,
            work_fn: 0,
            comm,
        }
    }

    fn bytes_of<T>(v: &T) -> Vec<u8> {
        // SAFETY: records are plain old data.
        unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }.to_vec()
    }

    #[test]
    fn a_mount_call_tells_the_mount_it_made_when_its_name_fits() {
        let mut r = wire::MountCall {
            hdr: hdr(RecordKind::MountCall),
            op: MountOp::Mount as u32,
            flags: 0,
            ret: 0,
            enter_ns: 1,
            made_mnt_id: 48,
            made_parent_id: 30,
            made_dev: (7 << 20) | 3,
            _pad: 0,
            made_name: [0; wire::MOUNT_MADE_NAME_LEN],
            source: [0; wire::MOUNT_SOURCE_LEN],
            target: [0; wire::MOUNT_TARGET_LEN],
            fstype: [0; wire::MOUNT_FSTYPE_LEN],
        };
        r.made_name[..4].copy_from_slice(b"fss4");
        r.target[..12].copy_from_slice(b"/tmp/x/fss4/");
        r.source[..10].copy_from_slice(b"/dev/loop3");
        r.fstype[..3].copy_from_slice(b"xfs");
        let m = made_mount(&bytes_of(&r)).expect("made");
        assert_eq!((m.mount_id, m.parent_id, m.major, m.minor), (48, 30, 7, 3));
        assert_eq!(m.mount_point, "/tmp/x/fss4");
        assert_eq!(
            (m.fs_type.as_str(), m.source.as_str()),
            ("xfs", "/dev/loop3")
        );
        // another name (a propagated copy), a failed call, no mount told: nothing
        r.made_name[..4].copy_from_slice(b"fss5");
        assert!(made_mount(&bytes_of(&r)).is_none());
        r.made_name[..4].copy_from_slice(b"fss4");
        r.made_mnt_id = -1;
        assert!(made_mount(&bytes_of(&r)).is_none());
        r.made_mnt_id = 48;
        r.ret = -16;
        assert!(made_mount(&bytes_of(&r)).is_none());
    }

    /// A ring's requests on a file are named by the file in both records, whose sequence
    /// numbers `request_change` reads for `rings::RequestOrder`.
    #[test]
    fn request_records_name_the_file_and_tell_their_sequence_numbers() {
        let (ring, file) = (0xffff_8881_0000_2000, 0xffff_8880_0000_1000);
        let word = (7u64 << 32) | 1;
        let r = wire::FileRef {
            hdr: hdr(RecordKind::FileRef),
            file,
            holder_obj: word,
            holder_ctx: ring,
            ino: 12,
            mnt_id: 33,
            fd: 5,
            dev: 5,
            holder: HolderKind::UringReq as u8,
            source: RefSource::UringFileGet as u8,
            name_kind: wire::NAME_NONE,
            _pad: 0,
            name: [0; wire::FILE_NAME_LEN],
        };
        let e = decode(&bytes_of(&r)).unwrap();
        let Payload::FileRef(f) = &e.payload else {
            panic!("{e:?}")
        };
        assert_eq!(
            f.holder,
            HolderRef::UringReq {
                ctx: ring,
                req: file
            }
        );
        assert_eq!(
            request_change(&bytes_of(&r)),
            Some(RequestChange {
                ring,
                file,
                seq: 7,
                up: true
            })
        );
        let d = wire::UringReqDone {
            hdr: hdr(RecordKind::UringReqDone),
            ctx: ring,
            file,
            res: -125,
            seq: 9,
        };
        let e = decode(&bytes_of(&d)).unwrap();
        assert!(
            matches!(e.payload, Payload::UringReqDone { ctx, req, res: -125, .. } if ctx == ring && req == file),
            "{e:?}"
        );
        assert_eq!(
            request_change(&bytes_of(&d)),
            Some(RequestChange {
                ring,
                file,
                seq: 9,
                up: false
            })
        );
        // An fd's reference is no request change.
        let fd = wire::FileRef {
            holder: HolderKind::Fd as u8,
            source: RefSource::Open as u8,
            ..r
        };
        assert_eq!(request_change(&bytes_of(&fd)), None);
    }

    /// The counting word: up and down move the count and always the sequence number, and a
    /// down that found no count is undone.
    #[test]
    fn the_request_count_word_moves_count_and_sequence() {
        use wire::uring_seq::{DOWN, UNDO_DOWN, UP, count, seq};
        let mut w = 0u64;
        w = w.wrapping_add(UP);
        w = w.wrapping_add(UP);
        assert_eq!((count(w), seq(w)), (2, 2));
        w = w.wrapping_add(DOWN);
        assert_eq!((count(w), seq(w)), (1, 3));
        w = w.wrapping_add(DOWN);
        assert_eq!((count(w), seq(w)), (0, 4));
        // A request taken before attach completing: the count would wrap; undone.
        w = w.wrapping_add(DOWN).wrapping_add(UNDO_DOWN);
        assert_eq!((count(w), seq(w)), (0, 5));
        // The sequence wraps, the count is kept.
        let w = (u64::from(u32::MAX) << 32 | 1).wrapping_add(UP);
        assert_eq!((count(w), seq(w)), (2, 0));
    }

    #[test]
    fn decodes_file_ref() {
        let mut name = [0u8; wire::FILE_NAME_LEN];
        name[..5].copy_from_slice(b"/a/b\0");
        let r = wire::FileRef {
            hdr: hdr(RecordKind::FileRef),
            file: 0xffff_8880_0000_1000,
            holder_obj: 0,
            holder_ctx: 0,
            ino: 12,
            mnt_id: 33,
            fd: 3,
            dev: 5,
            holder: HolderKind::Fd as u8,
            source: RefSource::Open as u8,
            name_kind: wire::NAME_USER_PATH,
            _pad: 0,
            name,
        };
        let e = decode(&bytes_of(&r)).unwrap();
        assert_eq!(e.comm, "test");
        assert_eq!(e.tgid, 9);
        assert_eq!(
            e.payload,
            Payload::FileRef(FileRef {
                file: 0xffff_8880_0000_1000,
                holder: HolderRef::Fd { tgid: 9, fd: 3 },
                how: RefHow::Open,
                mnt_id: 33,
                dev: 5,
                ino: 12,
                name_kind: NameKind::UserPath,
                name: "/a/b".into(),
            })
        );
    }

    #[test]
    fn decodes_precise_records() {
        let put = wire::FilePut {
            hdr: hdr(RecordKind::FilePut),
            file: 0xffff_8880_0000_2000,
            ino: 7,
            count: 1,
            mnt_id: 40,
            last: 1,
        };
        assert_eq!(
            decode(&bytes_of(&put)).unwrap().payload,
            Payload::FilePut {
                file: 0xffff_8880_0000_2000,
                mnt_id: 40,
                ino: 7,
                count: 1,
                last: true,
            }
        );
        let def = wire::FputDeferred {
            hdr: hdr(RecordKind::FputDeferred),
            file: 0x1000,
            mnt_id: 40,
            target_pid: 77,
            target_tgid: 70,
            _pad: 0,
        };
        assert_eq!(
            decode(&bytes_of(&def)).unwrap().payload,
            Payload::FputDeferred {
                file: 0x1000,
                mnt_id: 40,
                target_pid: 77,
                target_tgid: 70,
            }
        );
        let mut w = wire::WorkFnEntry {
            hdr: hdr(RecordKind::WorkFnEntry),
            work: 0x2000,
            which: wire::followed::URING_EXIT as u32,
            _pad: 0,
        };
        assert_eq!(
            decode(&bytes_of(&w)).unwrap().payload,
            Payload::WorkFnEntered {
                which: WorkFnKind::IoRingExitWork,
                work: 0x2000
            }
        );
        w.which = wire::followed::USER as u32;
        assert!(matches!(
            decode(&bytes_of(&w)),
            Err(DecodeError::BadField { what: "which", .. })
        ));
        let u = wire::UmountRet {
            hdr: hdr(RecordKind::UmountRet),
            enter_ns: 40,
            ret: -16,
            mnt_id: 40,
            flags: 2,
        };
        assert_eq!(
            decode(&bytes_of(&u)).unwrap().payload,
            Payload::UmountRet {
                mnt_id: 40,
                ret: -16,
                flags: 2,
                enter_ns: 40
            }
        );
        let c = wire::MountCleanup {
            hdr: hdr(RecordKind::MountCleanup),
            mnt_id: 40,
            _pad: 0,
        };
        assert_eq!(
            decode(&bytes_of(&c)).unwrap().payload,
            Payload::MountCleanup { mnt_id: 40 }
        );
    }

    #[test]
    fn rejects_wrong_size_and_kind() {
        let r = wire::TaskExit {
            hdr: hdr(RecordKind::TaskExit),
            exit_code: 9,
            group_dead: 1,
            pwd_mnt_id: 40,
            root_mnt_id: 1,
        };
        let b = bytes_of(&r);
        assert!(matches!(
            decode(&b[..20]),
            Err(DecodeError::Wire(WireError::Short { .. }))
        ));
        assert!(matches!(
            decode(&b[..60]),
            Err(DecodeError::Wire(WireError::BadSize { .. }))
        ));
        let mut bad = b.clone();
        bad[0] = 200;
        assert!(matches!(
            decode(&bad),
            Err(DecodeError::Wire(WireError::UnknownKind { kind: 200 }))
        ));
        let e = decode(&b).unwrap();
        assert_eq!(
            e.payload,
            Payload::TaskExit {
                exit_code: 9,
                group_dead: true,
                cwd_mnt: 40,
                root_mnt: 1,
            }
        );
    }
}
