//! The wire records: the one definition of what the eBPF programs send and userspace reads.
//!
//! Every record is `#[repr(C)]`, fixed size, starts with a [`Header`], and is written whole
//! into a BPF ring buffer (or, for the attach-time snapshot, into a BPF iterator's seq file).
//! This module is `no_std` and allocation-free so `tracer-ebpf` can use it as is.
//!
//! Changing the layout of any record means bumping [`WIRE_VERSION`] (the eBPF object and
//! userspace are built together from this one definition; the version names the layout in
//! logs and recordings). Recordings do not hold wire records: they hold decoded events in
//! their own encoding (`tracer/src/record/schema.rs`), so whether a recording can be read
//! is decided by its format version (`tracer::record::FORMAT_VERSION`), not by this one;
//! a recording carries `WIRE_VERSION` in its header for the record only.

/// Layout version of every record below.
pub const WIRE_VERSION: u32 = 5;

/// Length of a task's `comm` in the kernel (`TASK_COMM_LEN`).
pub const COMM_LEN: usize = 16;

/// What a record is; the first field of every [`Header`].
#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecordKind {
    MountCall = 1,
    TaskExit = 2,
    Signal = 3,
    UringCreate = 4,
    UringRegister = 5,
    FileRef = 6,
    FileUnref = 7,
    FileFree = 8,
    WorkQueue = 9,
    WorkStart = 10,
    WorkEnd = 11,
    WorkArm = 12,
    UringReqDone = 13,
    FilePut = 14,
    FputDeferred = 15,
    WorkFnEntry = 16,
    UmountRet = 17,
    MountCleanup = 18,
    TaskScan = 19,
    TaskResFree = 20,
    MountRefs = 21,
    SpaceHeld = 22,
    Console = 23,
    LockEvent = 30,
    LockCall = 31,
}

impl RecordKind {
    pub const ALL: [RecordKind; 25] = [
        RecordKind::MountCall,
        RecordKind::TaskExit,
        RecordKind::Signal,
        RecordKind::UringCreate,
        RecordKind::UringRegister,
        RecordKind::FileRef,
        RecordKind::FileUnref,
        RecordKind::FileFree,
        RecordKind::WorkQueue,
        RecordKind::WorkStart,
        RecordKind::WorkEnd,
        RecordKind::WorkArm,
        RecordKind::UringReqDone,
        RecordKind::FilePut,
        RecordKind::FputDeferred,
        RecordKind::WorkFnEntry,
        RecordKind::UmountRet,
        RecordKind::MountCleanup,
        RecordKind::TaskScan,
        RecordKind::TaskResFree,
        RecordKind::MountRefs,
        RecordKind::SpaceHeld,
        RecordKind::Console,
        RecordKind::LockEvent,
        RecordKind::LockCall,
    ];

    pub fn from_u16(v: u16) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| *k as u16 == v)
    }

    /// The exact size of a record of this kind on the wire.
    pub const fn size(self) -> usize {
        record_size(self)
    }
}

/// A record type of the wire: `#[repr(C)]` plain old data that starts with a [`Header`],
/// paired with the kind(s) its header carries. The pairing is made once, in `records!`
/// below; the eBPF side reserves by type (`emit::<T>`) and userspace reads by type
/// ([`read`]), so neither names a kind and a type side by side.
pub trait Record: Copy + 'static {
    /// The kind a record of this type is sent as (`Work` is also sent as its siblings).
    const KIND: RecordKind;
    /// Whether a header of `kind` announces a record of this type.
    fn is_kind(kind: RecordKind) -> bool;
    fn hdr_mut(&mut self) -> &mut Header;
}

/// Pairs each record type with its kinds: the `Record` impls and the size table.
macro_rules! records {
    ($($t:ident => $k:ident $(| $more:ident)*;)*) => {
        $(impl Record for $t {
            const KIND: RecordKind = RecordKind::$k;
            #[inline(always)]
            fn is_kind(kind: RecordKind) -> bool {
                matches!(kind, RecordKind::$k $(| RecordKind::$more)*)
            }
            #[inline(always)]
            fn hdr_mut(&mut self) -> &mut Header {
                &mut self.hdr
            }
        })*
        const fn record_size(kind: RecordKind) -> usize {
            match kind {
                $(RecordKind::$k $(| RecordKind::$more)* => core::mem::size_of::<$t>(),)*
            }
        }
    };
}

records! {
    MountCall => MountCall;
    TaskExit => TaskExit;
    Signal => Signal;
    UringCreate => UringCreate;
    UringRegister => UringRegister;
    FileRef => FileRef;
    FileUnref => FileUnref;
    FileFree => FileFree;
    Work => WorkQueue | WorkStart | WorkEnd;
    WorkArm => WorkArm;
    UringReqDone => UringReqDone;
    FilePut => FilePut;
    FputDeferred => FputDeferred;
    WorkFnEntry => WorkFnEntry;
    UmountRet => UmountRet;
    MountCleanup => MountCleanup;
    TaskScan => TaskScan;
    TaskResFree => TaskResFree;
    MountRefs => MountRefs;
    SpaceHeld => SpaceHeld;
    Console => Console;
    LockEvent => LockEvent;
    LockCall => LockCall;
}

/// Common to every record: what happened, when, where, and in which task.
///
/// `work`/`work_fn` say which work item the CPU was executing when the event fired (0 when
/// none): that is how a release inside a kworker is attributed to `delayed_fput`,
/// `io_ring_exit_work` or any other deferred work.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub kind: u16,
    pub cpu: u16,
    /// Size of the whole record, checked by the reader.
    pub size: u32,
    /// `bpf_ktime_get_boot_ns()`: nanoseconds since boot, suspend included.
    pub ts_ns: u64,
    /// Kernel thread id (user space's tid).
    pub pid: u32,
    /// Kernel thread-group id (user space's pid).
    pub tgid: u32,
    pub work: u64,
    pub work_fn: u64,
    pub comm: [u8; COMM_LEN],
}

/// Which mount-table syscall a [`MountCall`] reports.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MountOp {
    Mount = 1,
    Umount = 2,
    MoveMount = 3,
    Fsmount = 4,
}

impl MountOp {
    pub fn from_u32(v: u32) -> Option<Self> {
        match v {
            1 => Some(Self::Mount),
            2 => Some(Self::Umount),
            3 => Some(Self::MoveMount),
            4 => Some(Self::Fsmount),
            _ => None,
        }
    }
}

pub const MOUNT_SOURCE_LEN: usize = 64;
pub const MOUNT_TARGET_LEN: usize = 128;
pub const MOUNT_FSTYPE_LEN: usize = 16;
pub const MOUNT_MADE_NAME_LEN: usize = 64;

/// A mount-family syscall, emitted at its exit with the arguments captured at its entry.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MountCall {
    pub hdr: Header,
    pub op: u32,
    /// `MNT_*`/`MS_*` flags (low 32 bits).
    pub flags: u32,
    /// The syscall's return value (`-16` is `-EBUSY`).
    pub ret: i64,
    /// Time of the syscall's entry (the exit is `hdr.ts_ns`).
    pub enter_ns: u64,
    /// The mount a successful mount(2) or move_mount(2) attached, read from the kernel at
    /// the syscall's exit (the namespace's newest mount, checked against the target's last
    /// component): its id, its parent's id and its superblock's `s_dev`. `made_mnt_id` is
    /// -1 when no mount was made or it could not be told.
    pub made_mnt_id: i32,
    pub made_parent_id: i32,
    pub made_dev: u32,
    pub _pad: u32,
    /// The made mount's mountpoint dentry name: userspace takes the mount for the call's
    /// only when it is the target's last component (a propagated copy is not).
    pub made_name: [u8; MOUNT_MADE_NAME_LEN],
    pub source: [u8; MOUNT_SOURCE_LEN],
    pub target: [u8; MOUNT_TARGET_LEN],
    pub fstype: [u8; MOUNT_FSTYPE_LEN],
}

/// `sched_process_exit`: a thread exits; `group_dead` when it was the last of its process.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct TaskExit {
    pub hdr: Header,
    /// `task->exit_code` (signal number in the low 7 bits, exit status in bits 8-15).
    pub exit_code: i32,
    pub group_dead: u32,
    /// Mount ids of its cwd and root as it starts to exit (`group_dead` only; else -1): a
    /// dying process holds them until `exit_fs()`, which no tracepoint marks.
    pub pwd_mnt_id: i32,
    pub root_mnt_id: i32,
}

/// `signal_generate` for the signals we care about (SIGKILL): the header is the sender.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Signal {
    pub hdr: Header,
    pub sig: i32,
    pub result: i32,
    pub target_pid: i32,
    pub group: i32,
    pub target_comm: [u8; COMM_LEN],
}

/// `io_uring_create`: a ring (its `io_ring_ctx`) created by the header's task.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct UringCreate {
    pub hdr: Header,
    pub ctx: u64,
    pub fd: i32,
    pub sq_entries: u32,
    pub cq_entries: u32,
    pub flags: u32,
}

/// `io_uring_register`: the result of an `io_uring_register(2)` call on a ring.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct UringRegister {
    pub hdr: Header,
    pub ctx: u64,
    pub opcode: u32,
    pub nr_files: u32,
    pub ret: i64,
}

/// Who holds a reference to a file.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HolderKind {
    /// An fd table slot: `FileRef.fd` in the table of task `hdr.tgid`.
    Fd = 1,
    /// A registered (fixed) file of an io_uring ring: `holder_obj` is the `io_ring_ctx`.
    UringFixed = 2,
    /// The in-flight io_uring requests of ring `holder_ctx` on `file` (those that took it
    /// by fd), sent when their count goes from 0 to 1: `holder_obj` is the count's word
    /// [`uring_seq`] after the count went up. [`UringReqDone`] ends them.
    UringReq = 3,
    /// A memory mapping (`vma->vm_file`) of process `hdr.tgid`: `holder_obj` is its
    /// `vm_start`, `holder_ctx` its `vm_end`.
    Mmap = 4,
}

impl HolderKind {
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::Fd),
            2 => Some(Self::UringFixed),
            3 => Some(Self::UringReq),
            4 => Some(Self::Mmap),
            _ => None,
        }
    }
}

/// How a reference was taken or dropped.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RefSource {
    /// open/openat/openat2/creat returned this fd.
    Open = 1,
    /// The attach-time `task_file` iterator found this fd (the reference predates attach).
    Snapshot = 2,
    /// `io_uring_register(IORING_REGISTER_FILES*)` put the task's fd into the ring's table.
    UringRegister = 3,
    /// `io_uring_file_get`: a request took the file for its IO.
    UringFileGet = 4,
    /// close(fd).
    Close = 5,
    /// The ring's requests on the file all completed (`io_uring_complete`).
    UringReqDone = 6,
    /// `io_uring_register(IORING_UNREGISTER_FILES)`.
    UringUnregister = 7,
    /// The VMA scan (`iter/task_vma`) run when a umount failed found this mapping.
    VmaScan = 8,
}

impl RefSource {
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::Open),
            2 => Some(Self::Snapshot),
            3 => Some(Self::UringRegister),
            4 => Some(Self::UringFileGet),
            5 => Some(Self::Close),
            6 => Some(Self::UringReqDone),
            7 => Some(Self::UringUnregister),
            8 => Some(Self::VmaScan),
            _ => None,
        }
    }
}

pub const FILE_NAME_LEN: usize = 96;

/// `FileRef.name_kind`: what `name` holds.
pub const NAME_NONE: u8 = 0;
/// The path as the task passed it to open (may be relative to its cwd or dirfd).
pub const NAME_USER_PATH: u8 = 1;
/// The file's dentry name only (the last path component), read from the kernel.
pub const NAME_DENTRY: u8 = 2;

/// A holder took a reference to a `struct file`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FileRef {
    pub hdr: Header,
    /// The `struct file *`.
    pub file: u64,
    /// The ring (`io_ring_ctx *`) or request (`io_kiocb *`) holding it; 0 for an fd.
    pub holder_obj: u64,
    /// For a request: its ring. Otherwise 0.
    pub holder_ctx: u64,
    /// `file->f_inode->i_ino`.
    pub ino: u64,
    /// The mount the file pins: `real_mount(file->f_path.mnt)->mnt_id` (mountinfo's first
    /// column); -1 when unreadable.
    pub mnt_id: i32,
    pub fd: i32,
    /// `file->f_inode->i_sb->s_dev` (kernel dev_t encoding: major << 20 | minor).
    pub dev: u32,
    pub holder: u8,
    pub source: u8,
    pub name_kind: u8,
    pub _pad: u8,
    pub name: [u8; FILE_NAME_LEN],
}

/// A holder dropped its reference (the file may live on through others).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FileUnref {
    pub hdr: Header,
    /// 0 when the kernel side could not see it (e.g. a request completion: the engine
    /// finds the files by `holder_obj`).
    pub file: u64,
    pub holder_obj: u64,
    pub holder_ctx: u64,
    pub fd: i32,
    pub holder: u8,
    pub source: u8,
    pub _pad: [u8; 2],
}

/// A `struct file` went back to the `filp` slab cache: `__fput()` finished, the mount
/// reference it held is gone. The header says which task (and which work item) did it.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FileFree {
    pub hdr: Header,
    pub file: u64,
    pub ino: u64,
    pub mnt_id: i32,
    pub _pad: u32,
}

/// A delete (`unlink(2)`, `unlinkat(2)`) left a file with no link while an io_uring ring or
/// an in-flight request still holds it: its blocks stay allocated until the file's last
/// reference goes ("df says full, du says empty"). Sent once per file, by the deleting
/// task; the inode's numbers are read right after the delete.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SpaceHeld {
    pub hdr: Header,
    pub file: u64,
    pub ino: u64,
    /// `inode.i_size` in bytes.
    pub size: u64,
    /// `inode.i_blocks`: 512-byte units allocated (what `df` counts).
    pub blocks: u64,
    pub mnt_id: i32,
    pub dev: u32,
}

/// Bytes of a console message a [`Console`] record keeps.
pub const CONSOLE_TEXT_LEN: usize = 96;

/// A kernel log message that starts with [`CONSOLE_PREFIX`] (fstests' `run fstests <test>
/// at <date>`, written to `/dev/kmsg` before each test), from `printk:console`: in the
/// ring buffer with the records around it, so a test's section starts exactly there.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Console {
    pub hdr: Header,
    /// NUL-terminated (cut at `CONSOLE_TEXT_LEN - 1` bytes).
    pub text: [u8; CONSOLE_TEXT_LEN],
}

/// The messages the console program keeps.
pub const CONSOLE_PREFIX: &[u8; 12] = b"run fstests ";

/// A work item queued (`WorkQueue`), starting (`WorkStart`) or finished (`WorkEnd`).
/// Sent for the work functions the tracer follows (see `Config`), not for all work.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Work {
    pub hdr: Header,
    pub work: u64,
    pub function: u64,
    /// For `WorkQueue`: the CPU the work was queued on. Otherwise -1.
    pub target_cpu: i32,
    pub _pad: u32,
}

/// A delayed work's timer was armed (`schedule_delayed_work`): the header is the task (or
/// work item) that asked for it, which the later `WorkQueue` from timer context cannot say.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct WorkArm {
    pub hdr: Header,
    pub work: u64,
    pub function: u64,
    /// Jiffies from now until the timer fires.
    pub delay_jiffies: u64,
}

/// The last in-flight request of ring `ctx` on `file` (of those that took it by fd)
/// completed: the count of them went from 1 to 0. A failed request completes too.
///
/// The eBPF side keeps one count per (ring, file), changed with an atomic fetch-and-add
/// whose word also holds a sequence number ([`uring_seq`]), instead of a record per
/// request and per completion. Each record carries the sequence number its change made:
/// a 1 -> 0 record can reach the ring buffer after the next 0 -> 1 one, sent from another
/// CPU in between, and is then stale (`rings::RequestOrder`); a 0 -> 1 record cannot be
/// overtaken by the next 1 -> 0 (the request it counts is issued only after its record).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct UringReqDone {
    pub hdr: Header,
    pub ctx: u64,
    pub file: u64,
    /// The completing request's result.
    pub res: i32,
    /// The sequence number after the count went down.
    pub seq: u32,
}

/// The word the eBPF side counts a (ring, file)'s in-flight requests in: the count in the
/// low 32 bits, a sequence number in the high 32 bits that every change adds one to.
pub mod uring_seq {
    /// Added for a request that takes the file: count + 1, sequence + 1.
    pub const UP: u64 = (1 << 32) | 1;
    /// Added for a request that completes: count - 1 and, through the carry out of the
    /// low half (the count is at least 1), sequence + 1.
    pub const DOWN: u64 = (1 << 32) - 1;
    /// Added back after a `DOWN` that found the count at 0 (a request taken before the
    /// tracer attached): count 0 again, sequence + 1 (the carry).
    pub const UNDO_DOWN: u64 = 1;

    pub fn count(word: u64) -> u32 {
        word as u32
    }
    pub fn seq(word: u64) -> u32 {
        (word >> 32) as u32
    }
}

/// `fput()` (precise tier: fentry or kprobe): the header's task drops a reference to
/// `file`. `last` when it was the last one (the counter read at entry said one reference):
/// the release is now due, deferred to task_work or `delayed_fput`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FilePut {
    pub hdr: Header,
    pub file: u64,
    pub ino: u64,
    /// References held just before this put, as read at entry (from `f_count`, or from
    /// `f_ref`'s raw value, which is one less).
    pub count: i64,
    pub mnt_id: i32,
    pub last: u32,
}

/// `task_work_add(task, &file->f_task_work, ..)` with `____fput` as the callback: the final
/// `__fput` of `file` will run when `task` returns to user space (or exits).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FputDeferred {
    pub hdr: Header,
    pub file: u64,
    pub mnt_id: i32,
    /// The task the work was added to (thread id and thread-group id).
    pub target_pid: u32,
    pub target_tgid: u32,
    pub _pad: u32,
}

/// Entry of a deferred-release work function (precise tier): `which` is a
/// [`followed`] kind (`DELAYED_FPUT`, `URING_FALLBACK`, `URING_EXIT`), `work` its argument.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct WorkFnEntry {
    pub hdr: Header,
    pub work: u64,
    pub which: u32,
    pub _pad: u32,
}

/// `path_umount()` returned: the umount's real result for that mount.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct UmountRet {
    pub hdr: Header,
    /// When `path_umount` was entered (the return is `hdr.ts_ns`); 0 when not known.
    pub enter_ns: u64,
    pub ret: i64,
    /// The mount being unmounted; -1 when unreadable.
    pub mnt_id: i32,
    /// `MNT_*` flags.
    pub flags: u32,
}

/// `cleanup_mnt()`: the last reference to a mount is gone; it is really going away.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MountCleanup {
    pub hdr: Header,
    pub mnt_id: i32,
    pub _pad: u32,
}

/// CPUs whose per-CPU offsets a task scan can learn.
pub const SCAN_MAX_CPUS: usize = 64;

/// A mount's reference count as the task scan read it at its end: the sum of its per-CPU
/// `mnt_pcp->mnt_count` over the CPUs whose per-CPU offset the scan learnt.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MountRefs {
    pub hdr: Header,
    pub mnt_id: i32,
    pub count: i32,
    /// CPUs summed (the scan learns a CPU's offset from a task queued on it).
    pub cpus: u32,
    /// CPUs possible (`nr_cpu_ids` as userspace knows it); 0: the mount was not found in
    /// the reader's mount tree, `cpus` is how many steps the walk took and `count` the id
    /// of the mount it was at when it stopped.
    pub cpus_possible: u32,
}

/// Mounts one VMA scan looks for (the failed mount and those below it): the
/// `VMA_MOUNTS` map's slots, -1 when unused.
pub const VMA_SCAN_MOUNTS: usize = 8;

/// Files named per process by the AIO accounting.
pub const AIO_FILES: usize = 4;

/// One process's Linux AIO as the syscall tracepoints count it: the value of the
/// `AIO_TASKS` map (by tgid), kept in the kernel and read by userspace when a umount
/// fails. No tracepoint marks an AIO completion, so `submitted - reaped` is an upper bound
/// of the requests in flight (completed ones not yet collected by io_getevents count too).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AioAcct {
    /// iocbs io_submit accepted (the sum of its return values).
    pub submitted: u64,
    /// Completions io_getevents/io_pgetevents returned; io_destroy (which waits for
    /// every request of its context) sets it to `submitted`.
    pub reaped: u64,
    /// The context (`aio_context_t`) of the latest submission.
    pub ctx: u64,
    pub last_submit_ns: u64,
    /// The `struct file *` of the latest submissions' iocbs, newest first (0: none), and
    /// the mounts they are on.
    pub files: [u64; AIO_FILES],
    pub mnt_ids: [i32; AIO_FILES],
}

/// Kernel frames kept of a scanned task's stack.
pub const TASK_STACK_FRAMES: usize = 12;

/// `PF_EXITING` in `task_struct.flags`: the task is inside `do_exit()`.
pub const PF_EXITING: u32 = 0x4;

/// One task as the on-demand task scan (`iter/task`) saw it: the header is the scanned
/// task (not the reader). What a task still holds on a mount besides its fds (its cwd and
/// root), and, for a task inside `do_exit()`, where it waits (its kernel stack).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct TaskScan {
    pub hdr: Header,
    /// `task->flags` (`PF_EXITING`, ...).
    pub flags: u32,
    /// `task->__state` (2: uninterruptible, "D").
    pub state: u32,
    /// `task->exit_state` (`EXIT_ZOMBIE` 0x20, `EXIT_DEAD` 0x10).
    pub exit_state: u32,
    /// Mount ids of `task->fs->pwd.mnt` and `task->fs->root.mnt`; -1 without an fs_struct.
    pub pwd_mnt_id: i32,
    pub root_mnt_id: i32,
    /// Non-zero while the task still has its fd table, fs_struct, mm.
    pub has_files: u8,
    pub has_fs: u8,
    pub has_mm: u8,
    pub _pad: u8,
    /// Frames in `frames` (0: not captured, e.g. a running task).
    pub nr_frames: u32,
    pub frames: [u64; TASK_STACK_FRAMES],
}

/// What a [`TaskResFree`] says was freed.
pub mod task_res {
    /// A `files_struct` (`files_cache`): the fd table is gone, every fd in it put.
    pub const FILES: u32 = 1;
    /// An `fs_struct` (`fs_cache`): the cwd and root references are dropped.
    pub const FS: u32 = 2;
}

/// A task's fd table or fs_struct freed (their slab caches' frees), in the task that let
/// go of the last user: for an exiting task, `exit_files()` and `exit_fs()`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct TaskResFree {
    pub hdr: Header,
    pub what: u32,
    pub _pad: u32,
    pub ptr: u64,
}

/// Which lock tracepoint a [`LockEvent`] comes from.
pub mod lock_hook {
    /// `filelock:flock_lock_inode` (flock(2), and its release at the file's last close).
    pub const FLOCK: u8 = 1;
    /// `filelock:posix_lock_inode` (fcntl POSIX and OFD record locks).
    pub const POSIX: u8 = 2;
}

/// `struct file_lock` flags (`FL_*`) and types (`F_*LCK`) the lock records carry.
pub mod lock_flags {
    pub const FL_POSIX: u32 = 1;
    pub const FL_FLOCK: u32 = 2;
    pub const FL_CLOSE: u32 = 64;
    pub const FL_SLEEP: u32 = 128;
    pub const FL_OFDLCK: u32 = 1024;
    pub const F_RDLCK: u8 = 0;
    pub const F_WRLCK: u8 = 1;
    pub const F_UNLCK: u8 = 2;
    /// `FILE_LOCK_DEFERRED`: the request conflicts and will wait (a blocking call).
    pub const DEFERRED: i32 = 1;
}

/// A file-lock request as the `filelock` tracepoints saw it, sent when it conflicts (or
/// will wait), when it is the lock finally taken after such a wait, and for an unlock of
/// an inode that had a conflict (the release, e.g. `FL_CLOSE` from the last `__fput`).
/// For a conflict, the lock in the inode's list that it conflicts with (the holder) is
/// read too: the tracepoint's own `blocker` is only set once a request waits.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct LockEvent {
    pub hdr: Header,
    /// The request (`struct file_lock *`), the same over a blocking call's retries.
    pub fl: u64,
    /// The request's open file description (`struct file *`) and owner (`fl_owner_t`:
    /// the file for flock/OFD, the `files_struct` for POSIX).
    pub file: u64,
    pub owner: u64,
    pub ino: u64,
    /// The conflicting lock found in the inode's list (0: none found), its file, owner.
    pub holder_lock: u64,
    pub holder_file: u64,
    pub holder_owner: u64,
    /// The inode's `s_dev` (kernel encoding).
    pub dev: u32,
    /// `FL_*` of the request.
    pub flags: u32,
    /// The tracepoint's `ret`: 0, [`lock_flags::DEFERRED`], or -EAGAIN/-EACCES/...
    pub ret: i32,
    /// `flc_pid` of the request and of the holder (the tgid that took it).
    pub pid: u32,
    pub holder_pid: u32,
    /// Mount id of the request's file (-1: unreadable).
    pub mnt_id: i32,
    /// [`lock_hook`].
    pub hook: u8,
    /// `F_RDLCK`/`F_WRLCK`/`F_UNLCK` of the request and of the holder.
    pub lock_type: u8,
    pub holder_type: u8,
    /// Locks looked at in the inode's list.
    pub walked: u8,
    pub _pad: u32,
}

/// Which syscall a [`LockCall`] reports.
pub mod lock_sys {
    pub const FLOCK: u32 = 1;
    pub const FCNTL: u32 = 2;
}

/// A flock(2) or fcntl(2) lock call that met a conflict (a [`LockEvent`] fired inside it),
/// sent at its exit: how long it took and what it returned.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct LockCall {
    pub hdr: Header,
    pub enter_ns: u64,
    pub ret: i64,
    pub fd: i32,
    /// flock's operation (`LOCK_*`) or fcntl's command (`F_SETLK`, `F_OFD_SETLKW`, ...).
    pub cmd: u32,
    /// [`lock_sys`].
    pub sys: u32,
    pub _pad: u32,
}

/// Per-CPU counters the programs keep (a `PerCpuArray<u64>` indexed by these).
pub mod counter {
    /// Records sent, per kind: `RECORDS + kind` (room for 32 kinds).
    pub const RECORDS: u32 = 0;
    /// Ring-buffer reservations that failed (records lost), per kind: `DROPS + kind`.
    pub const DROPS: u32 = 32;
    pub const KMEM_CACHE_ALLOC: u32 = 64;
    pub const KMEM_CACHE_FREE: u32 = 65;
    pub const KMALLOC: u32 = 66;
    pub const KFREE: u32 = 67;
    pub const FILP_ALLOC: u32 = 68;
    pub const FILP_FREE: u32 = 69;
    pub const WORK_QUEUED: u32 = 70;
    pub const WORK_EXECUTED: u32 = 71;
    /// A syscall exit found no matching entry (attached mid-syscall, or map full).
    pub const UNMATCHED_EXIT: u32 = 72;
    /// Pending-syscall or in-flight-request maps were full.
    pub const MAP_FULL: u32 = 73;
    /// An fd-table walk failed (fd out of range, unreadable pointer).
    pub const FD_WALK_FAILED: u32 = 74;
    /// More files registered in one call than one program run walks.
    pub const REGISTER_TRUNCATED: u32 = 75;
    /// Allocation tracking (`wire::alloc`): allocations put in `OUTSTANDING`.
    pub const ALLOC_TRACKED: u32 = 76;
    /// Frees that removed a tracked allocation.
    pub const ALLOC_FREED: u32 = 77;
    /// Allocations that passed the filter but found `OUTSTANDING` full (not tracked).
    pub const ALLOC_MAP_FULL: u32 = 78;
    /// Allocations left out by sampling (`--alloc-sample`).
    pub const ALLOC_SAMPLED_OUT: u32 = 79;
    /// Stack captures that failed (`STACKS` full, or the helper refused).
    pub const ALLOC_STACK_FAILED: u32 = 80;
    /// Stacks captured (once per call site).
    pub const ALLOC_STACKS: u32 = 81;
    /// Tracked addresses allocated again before a free was seen: frees we missed.
    pub const ALLOC_REUSED: u32 = 82;
    /// `fput()` calls seen by the precise hook (records are sent for each).
    pub const FPUT: u32 = 83;
    /// Tracked objects found in kfree_rcu()'s queues (freed by `kfree_bulk()`, unseen).
    pub const ALLOC_RCU_FREED: u32 = 84;
    /// kfree_rcu() queue walks cut short by their step limit.
    pub const ALLOC_RCU_TRUNCATED: u32 = 85;
    /// Frees handled by a free program's twin because they came while the program itself
    /// ran on that CPU (a free in an interrupt): the runs the kernel skipped and counted
    /// as the program's `recursion_misses` that were not lost. By program: the
    /// `kmem_cache_free`, `kfree` and `percpu_free_percpu` ones (`FREE_TWIN + slot`).
    pub const FREE_TWIN: u32 = 86;
    /// Tracked frees whose map delete failed because the map's bucket was locked by the
    /// interrupted run on the same CPU (lost, counted as skipped).
    pub const ALLOC_FREE_BUSY: u32 = 89;
    /// Lock conflicts whose holder was not found in the inode's first locks.
    pub const LOCK_HOLDER_NOT_FOUND: u32 = 90;
    /// Files held by a ring or a request that took the delete check's slot of another
    /// (that other file's delete would go unsaid).
    pub const SPACE_SLOT_TAKEN: u32 = 91;
    /// close(2)s of an fd holding its file's only reference, sent as no record of their
    /// own: the release that follows in the same syscall ends the fd with the file.
    pub const CLOSE_FOLDED: u32 = 92;
    /// Releases reported by `__fput`'s fexit twin because the first fexit program was
    /// skipped (the kernel runs trampolines preemptibly: another task's run of it on the
    /// same CPU was in progress).
    pub const FPUT_TWIN: u32 = 93;
    /// io_uring completions of a request whose taking of its file was not counted (before
    /// the tracer attached, or its (ring, file) count was evicted from the map).
    pub const URING_DONE_UNSEEN: u32 = 94;
    /// Puts reported by `fput`'s fentry twin because the first program was skipped (the put
    /// interrupted a run of it, or came while a run of it was preempted on that CPU).
    pub const FPUT_ENTRY_TWIN: u32 = 95;
    pub const COUNT: u32 = 96;
    /// CPU blocks of the COUNTERS map in the object, before userspace sizes it.
    pub const DEFAULT_CPU_BLOCKS: u32 = 64;
}

/// Each index of the tables below with the one place its offset is read from: the
/// indexes and the loader's list (`tracer`'s `kernel/layout.rs` reads `SOURCES`) come from
/// this one list. Indexes set another way (alternatives, derived offsets) are plain
/// constants after it.
macro_rules! tp_field {
    ($($(#[$m:meta])* $name:ident = $idx:literal => ($cat:literal, $tp:literal, $field:literal),)*) => {
        $($(#[$m])* pub const $name: usize = $idx;)*
        /// (index, category, tracepoint, field): where each index above is read from.
        pub const SOURCES: &[(usize, &str, &str, &str)] = &[$(($idx, $cat, $tp, $field)),*];
    };
}

/// As `tp_field!`, for structure members: (index, structure, member path).
macro_rules! btf_off {
    ($($(#[$m:meta])* $name:ident = $idx:literal => ($st:literal, [$($path:literal),*]),)*) => {
        $($(#[$m])* pub const $name: usize = $idx;)*
        /// (index, structure, member path): where each index above is read from.
        pub const SOURCES: &[(usize, &str, &[&str])] = &[$(($idx, $st, &[$($path),*])),*];
    };
}

/// Classic-tracepoint field offsets the programs read, filled by userspace from each
/// tracepoint's `format` file at attach time (index into `Config::tp`). Free indexes: 32,
/// 37, 38 (a request's own pointer and `io_uring_req_failed`, unused since io_uring
/// requests are counted per ring and file).
pub mod tp_field {
    tp_field! {
        /// every sys_exit_*: `ret`
        SYS_RET = 0 => ("syscalls", "sys_exit_umount", "ret"),
        MOUNT_DEV_NAME = 1 => ("syscalls", "sys_enter_mount", "dev_name"),
        MOUNT_DIR_NAME = 2 => ("syscalls", "sys_enter_mount", "dir_name"),
        MOUNT_TYPE = 3 => ("syscalls", "sys_enter_mount", "type"),
        MOUNT_FLAGS = 4 => ("syscalls", "sys_enter_mount", "flags"),
        UMOUNT_NAME = 5 => ("syscalls", "sys_enter_umount", "name"),
        UMOUNT_FLAGS = 6 => ("syscalls", "sys_enter_umount", "flags"),
        MOVE_MOUNT_TO_PATH = 7 => ("syscalls", "sys_enter_move_mount", "to_pathname"),
        OPENAT_FILENAME = 8 => ("syscalls", "sys_enter_openat", "filename"),
        OPEN_FILENAME = 9 => ("syscalls", "sys_enter_open", "filename"),
        CLOSE_FD = 10 => ("syscalls", "sys_enter_close", "fd"),
        /// sys_enter_io_uring_register
        URING_REGISTER_FD = 11 => ("syscalls", "sys_enter_io_uring_register", "fd"),
        URING_REGISTER_OPCODE = 12 => ("syscalls", "sys_enter_io_uring_register", "opcode"),
        URING_REGISTER_ARG = 13 => ("syscalls", "sys_enter_io_uring_register", "arg"),
        URING_REGISTER_NR_ARGS = 14 => ("syscalls", "sys_enter_io_uring_register", "nr_args"),
        /// sched_process_exit
        EXIT_PID = 15 => ("sched", "sched_process_exit", "pid"),
        EXIT_GROUP_DEAD = 16 => ("sched", "sched_process_exit", "group_dead"),
        /// signal_generate
        SIG_SIG = 17 => ("signal", "signal_generate", "sig"),
        SIG_PID = 18 => ("signal", "signal_generate", "pid"),
        SIG_GROUP = 19 => ("signal", "signal_generate", "group"),
        SIG_RESULT = 20 => ("signal", "signal_generate", "result"),
        SIG_COMM = 21 => ("signal", "signal_generate", "comm"),
        URING_CREATE_FD = 22 => ("io_uring", "io_uring_create", "fd"),
        URING_CREATE_CTX = 23 => ("io_uring", "io_uring_create", "ctx"),
        URING_CREATE_SQ = 24 => ("io_uring", "io_uring_create", "sq_entries"),
        URING_CREATE_CQ = 25 => ("io_uring", "io_uring_create", "cq_entries"),
        URING_CREATE_FLAGS = 26 => ("io_uring", "io_uring_create", "flags"),
        /// io_uring:io_uring_register
        URING_REG_CTX = 27 => ("io_uring", "io_uring_register", "ctx"),
        URING_REG_OPCODE = 28 => ("io_uring", "io_uring_register", "opcode"),
        URING_REG_NR_FILES = 29 => ("io_uring", "io_uring_register", "nr_files"),
        URING_REG_RET = 30 => ("io_uring", "io_uring_register", "ret"),
        URING_FILE_GET_CTX = 31 => ("io_uring", "io_uring_file_get", "ctx"),
        URING_FILE_GET_FD = 33 => ("io_uring", "io_uring_file_get", "fd"),
        URING_COMPLETE_CTX = 34 => ("io_uring", "io_uring_complete", "ctx"),
        URING_COMPLETE_REQ = 35 => ("io_uring", "io_uring_complete", "req"),
        URING_COMPLETE_RES = 36 => ("io_uring", "io_uring_complete", "res"),
        TIMER_START_TIMER = 39 => ("timer", "timer_start", "timer"),
        TIMER_START_FUNCTION = 40 => ("timer", "timer_start", "function"),
        TIMER_START_EXPIRES = 41 => ("timer", "timer_start", "expires"),
        TIMER_START_NOW = 42 => ("timer", "timer_start", "now"),
        /// workqueue_* classic fallback
        WQ_WORK = 43 => ("workqueue", "workqueue_queue_work", "work"),
        WQ_FUNCTION = 44 => ("workqueue", "workqueue_queue_work", "function"),
        WQ_CPU = 45 => ("workqueue", "workqueue_queue_work", "cpu"),
        /// kmem_* classic fallback
        KMEM_CALL_SITE = 46 => ("kmem", "kmem_cache_free", "call_site"),
        KMEM_PTR = 47 => ("kmem", "kmem_cache_free", "ptr"),
        /// __data_loc
        KMEM_NAME = 48 => ("kmem", "kmem_cache_free", "name"),
        OPENAT2_FILENAME = 49 => ("syscalls", "sys_enter_openat2", "filename"),
        CREAT_PATHNAME = 50 => ("syscalls", "sys_enter_creat", "pathname"),
        URING_COMPLETE_CFLAGS = 51 => ("io_uring", "io_uring_complete", "cflags"),
        FSMOUNT_FLAGS = 52 => ("syscalls", "sys_enter_fsmount", "flags"),
        MOVE_MOUNT_FROM_PATH = 53 => ("syscalls", "sys_enter_move_mount", "from_pathname"),
        /// sys_enter_io_submit
        IO_SUBMIT_CTX = 55 => ("syscalls", "sys_enter_io_submit", "ctx_id"),
        IO_SUBMIT_NR = 56 => ("syscalls", "sys_enter_io_submit", "nr"),
        IO_SUBMIT_IOCBPP = 57 => ("syscalls", "sys_enter_io_submit", "iocbpp"),
        /// filelock:flock_lock_inode / posix_lock_inode: `fl`
        LOCK_FL = 58 => ("filelock", "flock_lock_inode", "fl"),
        LOCK_FLAGS = 59 => ("filelock", "flock_lock_inode", "flags"),
        LOCK_RET = 60 => ("filelock", "flock_lock_inode", "ret"),
        /// sys_enter_flock / sys_enter_fcntl: `fd`
        LOCK_SYS_FD = 61 => ("syscalls", "sys_enter_flock", "fd"),
        /// and `cmd`
        LOCK_SYS_CMD = 62 => ("syscalls", "sys_enter_flock", "cmd"),
        /// printk:console `msg` (__data_loc)
        CONSOLE_MSG = 64 => ("printk", "console", "msg"),
    }
    pub const KMEM_CACHE_PTR: usize = 54; // kmem_cache_* classic: the cache is only known by name
    /// Never set: stands for "this syscall has no such argument".
    pub const NONE: usize = 63;
    pub const COUNT: usize = 72;
}

/// Kernel structure member offsets in bytes, read from the running kernel's BTF at attach
/// time (index into `Config::btf`). Never baked in at build time.
pub mod btf_off {
    btf_off! {
        /// task_struct.files
        TASK_FILES = 0 => ("task_struct", ["files"]),
        /// files_struct.fdt
        FILES_FDT = 1 => ("files_struct", ["fdt"]),
        /// fdtable.max_fds
        FDT_MAX_FDS = 2 => ("fdtable", ["max_fds"]),
        /// fdtable.fd
        FDT_FD = 3 => ("fdtable", ["fd"]),
        /// file.f_path.mnt
        FILE_PATH_MNT = 4 => ("file", ["f_path", "mnt"]),
        /// file.f_path.dentry
        FILE_PATH_DENTRY = 5 => ("file", ["f_path", "dentry"]),
        /// file.f_inode
        FILE_INODE = 6 => ("file", ["f_inode"]),
        /// inode.i_ino
        INODE_INO = 7 => ("inode", ["i_ino"]),
        /// inode.i_sb
        INODE_SB = 8 => ("inode", ["i_sb"]),
        /// super_block.s_dev
        SB_DEV = 9 => ("super_block", ["s_dev"]),
        /// dentry.d_name.name
        DENTRY_NAME = 10 => ("dentry", ["d_name", "name"]),
        /// dentry.d_parent (itself at a file system's root)
        DENTRY_PARENT = 77 => ("dentry", ["d_parent"]),
        /// kmem_cache.name
        KMEM_CACHE_NAME = 12 => ("kmem_cache", ["name"]),
        /// work_struct.func
        WORK_FUNC = 13 => ("work_struct", ["func"]),
        /// timer_list.function
        TIMER_FUNCTION = 15 => ("timer_list", ["function"]),
        /// timer_list.expires
        TIMER_EXPIRES = 86 => ("timer_list", ["expires"]),
        /// task_struct.exit_code
        TASK_EXIT_CODE = 16 => ("task_struct", ["exit_code"]),
        /// file.private_data (an io_uring file's ring)
        FILE_PRIVATE_DATA = 18 => ("file", ["private_data"]),
        /// task_struct.pid
        TASK_PID = 19 => ("task_struct", ["pid"]),
        /// task_struct.tgid
        TASK_TGID = 20 => ("task_struct", ["tgid"]),
        /// task_struct.comm
        TASK_COMM = 21 => ("task_struct", ["comm"]),
        /// kmem_cache.object_size
        KMEM_CACHE_OBJECT_SIZE = 22 => ("kmem_cache", ["object_size"]),
        /// callback_head.func
        CALLBACK_FUNC = 25 => ("callback_head", ["func"]),
        /// mount.mnt_id (from a `struct mount *`)
        MOUNT_MNT_ID = 26 => ("mount", ["mnt_id"]),
        /// path.mnt
        PATH_MNT = 27 => ("path", ["mnt"]),
        /// task_struct.fs
        TASK_FS = 30 => ("task_struct", ["fs"]),
        /// fs_struct.pwd.mnt
        FS_PWD_MNT = 31 => ("fs_struct", ["pwd", "mnt"]),
        /// fs_struct.root.mnt
        FS_ROOT_MNT = 32 => ("fs_struct", ["root", "mnt"]),
        /// task_struct.flags
        TASK_FLAGS = 33 => ("task_struct", ["flags"]),
        /// task_struct.exit_state
        TASK_EXIT_STATE = 34 => ("task_struct", ["exit_state"]),
        /// task_struct.mm
        TASK_MM = 35 => ("task_struct", ["mm"]),
        /// task_struct.__state
        TASK_STATE = 36 => ("task_struct", ["__state"]),
        /// kmem_cache.refcount (>1: merged aliases)
        KMEM_CACHE_REFCOUNT = 37 => ("kmem_cache", ["refcount"]),
        /// task_struct.se.cfs_rq
        TASK_SE_CFS_RQ = 38 => ("task_struct", ["se", "cfs_rq"]),
        /// cfs_rq.rq
        CFS_RQ_RQ = 39 => ("cfs_rq", ["rq"]),
        /// rq.cpu
        RQ_CPU = 40 => ("rq", ["cpu"]),
        /// mount.mnt_pcp
        MOUNT_MNT_PCP = 41 => ("mount", ["mnt_pcp"]),
        /// mount.mnt_mounts
        MOUNT_MNT_MOUNTS = 42 => ("mount", ["mnt_mounts"]),
        /// mount.mnt_child
        MOUNT_MNT_CHILD = 43 => ("mount", ["mnt_child"]),
        /// mount.mnt_parent
        MOUNT_MNT_PARENT = 44 => ("mount", ["mnt_parent"]),
        /// mount.mnt (the embedded vfsmount)
        MOUNT_MNT = 45 => ("mount", ["mnt"]),
        /// vm_area_struct.vm_file
        VMA_VM_FILE = 47 => ("vm_area_struct", ["vm_file"]),
        /// vm_area_struct.vm_start
        VMA_VM_START = 48 => ("vm_area_struct", ["vm_start"]),
        /// vm_area_struct.vm_end
        VMA_VM_END = 49 => ("vm_area_struct", ["vm_end"]),
        /// iocb.aio_fildes (uapi)
        IOCB_AIO_FILDES = 50 => ("iocb", ["aio_fildes"]),
        /// io_kiocb.ctx (the raw io_uring tracepoints get the request, not its ring)
        URING_REQ_CTX = 51 => ("io_kiocb", ["ctx"]),
        /// io_kiocb.file (in an anonymous union): set from the request's start to after
        /// its completion
        URING_REQ_FILE = 78 => ("io_kiocb", ["file"]),
        /// io_kiocb.flags (`unsigned int` before 6.10, `io_req_flags_t` since: the low
        /// 32 bits are read)
        URING_REQ_FLAGS = 79 => ("io_kiocb", ["flags"]),
        /// io_uring_cqe.res (uapi; the raw `io_uring_complete` of 6.13+ gets the CQE)
        URING_CQE_RES = 53 => ("io_uring_cqe", ["res"]),
        /// io_uring_cqe.flags (uapi)
        URING_CQE_FLAGS = 55 => ("io_uring_cqe", ["flags"]),
        /// inode.i_flctx
        INODE_FLCTX = 56 => ("inode", ["i_flctx"]),
        /// file_lock_context.flc_flock
        FLCTX_FLOCK = 57 => ("file_lock_context", ["flc_flock"]),
        /// file_lock_context.flc_posix
        FLCTX_POSIX = 58 => ("file_lock_context", ["flc_posix"]),
        /// inode.i_nlink (in an anonymous union)
        INODE_NLINK = 69 => ("inode", ["i_nlink"]),
        /// inode.i_size
        INODE_SIZE = 70 => ("inode", ["i_size"]),
        /// inode.i_blocks
        INODE_BLOCKS = 71 => ("inode", ["i_blocks"]),
        /// task_struct.worker_private (a kthread's `struct kthread`, 5.17+)
        TASK_WORKER_PRIVATE = 88 => ("task_struct", ["worker_private"]),
        /// kthread.data (a kworker's `struct worker`)
        KTHREAD_DATA = 89 => ("kthread", ["data"]),
        /// worker.current_work (the work item a kworker runs, NULL between items)
        WORKER_CURRENT_WORK = 90 => ("worker", ["current_work"]),
        /// worker.current_func
        WORKER_CURRENT_FUNC = 91 => ("worker", ["current_func"]),
    }
    /// `mount.mnt_id - mount.mnt`: from a `struct vfsmount *` to its mount id.
    /// (Signed, stored as `u32`.)
    pub const VFSMOUNT_TO_MNT_ID: usize = 11;
    /// `delayed_work.timer - delayed_work.work`: from a timer to its work item.
    pub const DWORK_TIMER: usize = 14;
    pub const POOL_WORKQUEUE_WQ: usize = 17; // pool_workqueue.wq (unused for now)
    /// `file.f_count` (up to 6.12) or `file.f_ref` (later): see `Config::file_one_ref`.
    pub const FILE_COUNT: usize = 23;
    /// Where `fput()` puts the `callback_head` it hands to `task_work_add()`:
    /// `file.f_task_work` (6.7+), else `file.f_rcuhead` (the union member of older kernels).
    pub const FILE_TASK_WORK: usize = 24;
    /// Where a syscall's first and second arguments sit in the `struct pt_regs` it saved
    /// (still there at its exit): per architecture, missing where unknown.
    pub const PT_REGS_SYSCALL_ARG0: usize = 28;
    pub const PT_REGS_SYSCALL_ARG1: usize = 29;
    /// The third to sixth arguments (`PT_REGS_SYSCALL_ARG2 + i - 2`), for the handlers the
    /// `raw_syscalls` dispatch calls, which read every argument from the registers.
    pub const PT_REGS_SYSCALL_ARG2: usize = 80;
    /// `pt_regs.orig_ax` (x86_64): the syscall's number, still there at its exit.
    pub const PT_REGS_SYSCALL_NR: usize = 84;
    /// `task_struct.thread_info.status` (x86_64): `TS_COMPAT` marks a 32-bit syscall, whose
    /// number means another syscall than the 64-bit one of the same number.
    pub const THREAD_INFO_STATUS: usize = 85;
    pub const MNT_PCP_COUNT: usize = 46; // mnt_pcp.mnt_count (7.x: mnt_pcp.mnt_gets)
    /// The lock's members: `file_lock.c.flc_*` (6.9+) or `file_lock.fl_*` (before).
    pub const LOCK_LIST: usize = 59;
    pub const LOCK_FILE: usize = 60;
    pub const LOCK_OWNER: usize = 61;
    pub const LOCK_PID: usize = 62;
    pub const LOCK_TYPE: usize = 63;
    /// The lock's flags (`FL_FLOCK`, `FL_POSIX`, ...), for the raw lock tracepoints.
    pub const LOCK_FLAGS: usize = 52;
    // The namespace's flat mount list (before 6.8; an rbtree after): missing where absent.
    pub const TASK_NSPROXY: usize = 64; // task_struct.nsproxy
    pub const NSPROXY_MNT_NS: usize = 65; // nsproxy.mnt_ns
    pub const MNT_NS_LIST: usize = 66; // mnt_namespace.list
    pub const MOUNT_MNT_LIST: usize = 67; // mount.mnt_list
    /// `mnt_pcp.mnt_puts` (7.x: a mount's per-CPU counts are `mnt_gets` and `mnt_puts`, the
    /// count their difference; `MNT_PCP_COUNT` is then `mnt_gets`): missing before.
    pub const MNT_PCP_PUTS: usize = 68;
    // The mount a mount call made: the namespace's newest mount.
    pub const MNT_NS_LAST_NODE: usize = 72; // mnt_namespace.mnt_last_node (6.12+)
    pub const MNT_NS_MOUNTS: usize = 73; // mnt_namespace.mounts (rb_root, 6.8+)
    pub const MOUNT_MNT_NODE: usize = 74; // mount.mnt_node (6.8+)
    pub const MOUNT_MNT_MOUNTPOINT: usize = 75; // mount.mnt_mountpoint (a dentry)
    pub const VFSMOUNT_SB: usize = 76; // vfsmount.mnt_sb
    /// The indexes above, which the loader fills by hand (not from `SOURCES`).
    pub const COMPUTED: &[usize] = &[
        VFSMOUNT_TO_MNT_ID,
        DWORK_TIMER,
        POOL_WORKQUEUE_WQ,
        FILE_COUNT,
        FILE_TASK_WORK,
        PT_REGS_SYSCALL_ARG0,
        PT_REGS_SYSCALL_ARG1,
        PT_REGS_SYSCALL_ARG2,
        PT_REGS_SYSCALL_ARG2 + 1,
        PT_REGS_SYSCALL_ARG2 + 2,
        PT_REGS_SYSCALL_ARG2 + 3,
        PT_REGS_SYSCALL_NR,
        THREAD_INFO_STATUS,
        MNT_PCP_COUNT,
        LOCK_LIST,
        LOCK_FILE,
        LOCK_OWNER,
        LOCK_PID,
        LOCK_TYPE,
        LOCK_FLAGS,
        TASK_NSPROXY,
        NSPROXY_MNT_NS,
        MNT_NS_LIST,
        MOUNT_MNT_LIST,
        MNT_PCP_PUTS,
        MNT_NS_LAST_NODE,
        MNT_NS_MOUNTS,
        MOUNT_MNT_NODE,
        MOUNT_MNT_MOUNTPOINT,
        VFSMOUNT_SB,
    ];
    pub const COUNT: usize = 92;
}

/// Entries of the `raw_syscalls` dispatch tables (`SYS_ENTER_PROGS`, `SYS_EXIT_PROGS`),
/// indexed by syscall number: x86_64 numbers its syscalls below 512.
pub const SYSCALL_SLOTS: u32 = 512;

/// The slab caches whose frees mean something (the `CACHES` map, by slot): the programs
/// learn each one's `struct kmem_cache *` from its name at its first free.
pub mod slab_cache {
    pub const FILP: u32 = 0;
    pub const FILES: u32 = 1;
    pub const FS: u32 = 2;
    /// The caches' names, by slot.
    pub const NAMES: [&str; 3] = ["filp", "files_cache", "fs_cache"];
    /// A slot's value for a cache whose frees cannot be told apart from other objects'
    /// (merged with other caches): never learnt, and no name read looks for it any more.
    pub const UNUSABLE: u64 = u64::MAX;
}

/// "This field/offset/argument is not available on this kernel."
pub const MISSING_U16: u16 = u16::MAX;
pub const MISSING_U32: u32 = u32::MAX;

/// Everything the programs need to know about the running kernel, set as a global before
/// load (`EbpfLoader::set_global("CONFIG", ..)`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// Our own tgid: the tracer's own syscalls are not traced.
    pub self_tgid: u32,
    /// Non-zero: send queue/start/end records for every work function, not just the
    /// followed ones.
    pub all_work: u32,
    /// `delayed_work_timer_fn`, to recognise the timer of a delayed work in `timer_start`.
    pub delayed_work_timer_fn: u64,
    /// `____fput`, to recognise a deferred file release in `task_work_add`.
    pub fput_callback: u64,
    /// The value of the file's reference counter (`btf_off::FILE_COUNT`) when it holds
    /// exactly one reference: 1 for `f_count`, 0 for `f_ref` (`FILE_REF_ONEREF`).
    pub file_one_ref: u64,
    /// Offsets of the per-CPU variables `runqueues` and `this_cpu_off` in the kernel's
    /// per-CPU section (BTF's `.data..percpu`), 0 when unknown: with a CPU's run queue
    /// address, they give that CPU's per-CPU offset (see `task_scan.rs`).
    pub runqueues_pcpu: u64,
    pub this_cpu_off_pcpu: u64,
    /// CPUs possible (the scan sums per-CPU counters over them).
    pub nr_cpus: u32,
    /// Non-zero: `kmem_cache_free`'s twin is attached (`free_twin` in the eBPF crate), so
    /// the first program notes each free for it; else that store is left out.
    pub cache_free_twin: u32,
    /// The followed work functions' addresses (`followed::*`; a function may have several),
    /// compared in the programs without a map lookup; `nr_followed_fns` of them are set.
    /// `FOLLOWED_IN_MAP`: more than fit, the programs look in the `FOLLOWED_WORK` map.
    pub followed_fns: [u64; MAX_FOLLOWED_FNS],
    pub nr_followed_fns: u32,
    pub _pad_followed: u32,
    pub tp: [u16; tp_field::COUNT],
    pub btf: [u32; btf_off::COUNT],
}

impl Config {
    pub const fn empty() -> Self {
        Config {
            self_tgid: 0,
            all_work: 0,
            delayed_work_timer_fn: 0,
            fput_callback: 0,
            file_one_ref: 1,
            runqueues_pcpu: 0,
            this_cpu_off_pcpu: 0,
            nr_cpus: 0,
            cache_free_twin: 0,
            followed_fns: [0; MAX_FOLLOWED_FNS],
            nr_followed_fns: 0,
            _pad_followed: 0,
            tp: [MISSING_U16; tp_field::COUNT],
            btf: [MISSING_U32; btf_off::COUNT],
        }
    }
}

/// Followed work functions the programs compare against without a map (`Config`).
pub const MAX_FOLLOWED_FNS: usize = 8;
/// `Config::nr_followed_fns` when the followed functions are looked up in the map.
pub const FOLLOWED_IN_MAP: u32 = u32::MAX;

/// Values of the `FOLLOWED_WORK` map: why a work function is followed.
pub mod followed {
    pub const DELAYED_FPUT: u8 = 1;
    pub const URING_FALLBACK: u8 = 2;
    pub const URING_EXIT: u8 = 3;
    pub const USER: u8 = 4;
}

/// The largest record, for buffers.
pub const MAX_RECORD_SIZE: usize = 512;

const _: () = {
    assert!(core::mem::size_of::<Header>() == 56);
    assert!(RecordKind::ALL.len() < (counter::DROPS - counter::RECORDS) as usize);
    let mut i = 0;
    while i < RecordKind::ALL.len() {
        let size = RecordKind::ALL[i].size();
        // Per-kind counters: a kind's value must fit below `DROPS` (room for 32 kinds).
        assert!((RecordKind::ALL[i] as u32) < counter::DROPS - counter::RECORDS);
        assert!(size <= MAX_RECORD_SIZE);
        assert!(size.is_multiple_of(8));
        i += 1;
    }
};

/// Reads the header of a record from raw bytes, checking kind and size.
pub fn parse_header(bytes: &[u8]) -> Result<(RecordKind, Header), WireError> {
    if bytes.len() < core::mem::size_of::<Header>() {
        return Err(WireError::Short { len: bytes.len() });
    }
    // SAFETY: length checked; Header is plain old data and read unaligned.
    let hdr: Header = unsafe { core::ptr::read_unaligned(bytes.as_ptr().cast()) };
    let kind = RecordKind::from_u16(hdr.kind).ok_or(WireError::UnknownKind { kind: hdr.kind })?;
    if hdr.size as usize != kind.size() || bytes.len() < kind.size() {
        return Err(WireError::BadSize {
            kind: hdr.kind,
            declared: hdr.size,
            len: bytes.len(),
        });
    }
    Ok((kind, hdr))
}

/// Reads a whole record of type `T`, checking that the header announces one.
pub fn read<T: Record>(bytes: &[u8]) -> Result<T, WireError> {
    let (kind, hdr) = parse_header(bytes)?;
    if !T::is_kind(kind) {
        return Err(WireError::OtherKind {
            kind: hdr.kind,
            wanted: T::KIND as u16,
        });
    }
    // SAFETY: `T` is the record type of `kind` (`records!`), and parse_header checked that
    // `bytes` holds `kind.size()` = `size_of::<T>()` bytes; records are plain old data.
    Ok(unsafe { core::ptr::read_unaligned(bytes.as_ptr().cast()) })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireError {
    Short {
        len: usize,
    },
    UnknownKind {
        kind: u16,
    },
    BadSize {
        kind: u16,
        declared: u32,
        len: usize,
    },
    OtherKind {
        kind: u16,
        wanted: u16,
    },
}

impl core::fmt::Display for WireError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            WireError::Short { len } => write!(f, "record too short ({len} bytes)"),
            WireError::UnknownKind { kind } => write!(f, "unknown record kind {kind}"),
            WireError::BadSize {
                kind,
                declared,
                len,
            } => write!(
                f,
                "record of kind {kind} declares {declared} bytes but {len} are available or expected"
            ),
            WireError::OtherKind { kind, wanted } => {
                write!(f, "record of kind {kind} read as kind {wanted}")
            }
        }
    }
}

/// The bytes of a NUL-terminated fixed-size C string field, up to the NUL.
pub fn c_str_bytes(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    &field[..end]
}

/// Allocation leak tracking (`--alloc-filter`): the filter and controls the programs read,
/// set as the `ALLOC_CONFIG` global before load (frozen `.rodata`: with `enabled == 0` the
/// verifier prunes every tracking branch, so the default hooks stay counters).
pub mod alloc {
    /// Call-site address ranges `[start, end)`, sorted and disjoint (binary search).
    pub const MAX_RANGES: usize = 512;
    /// Cache names tracked by name (`cache:NAME`), and excluded ones (`names_cache`).
    pub const MAX_CACHES: usize = 4;
    pub const CACHE_NAME_LEN: usize = 32;

    /// `AllocConfig.flags`: track every allocation (the cache exclusions still apply).
    pub const ALL: u32 = 1;
    /// `AllocConfig.flags`: every allocation (filtered or not) first removes its address
    /// from `OUTSTANDING`: an address handed out again was freed, even when the free was
    /// not seen (`kfree_bulk()` / `kmem_cache_free_bulk()`, which `kfree_rcu()` batches
    /// use, have no tracepoint). Costs one hash delete per allocation.
    pub const REUSE_CHECK: u32 = 2;
    /// `AllocConfig.flags`: capture the stack of every tracked allocation (~2 us each)
    /// instead of once per call site.
    pub const STACK_PER_OBJECT: u32 = 4;

    /// The kernel-memory reader (`kmem_peek`, an iterator program run from userspace):
    /// one run reads up to `PEEK_PIECES` pieces of `PEEK_PIECE` bytes from the address in
    /// `PEEK_AT[0]` (`PEEK_AT[1]` bytes, rounded up to pieces), each written to the
    /// iterator's output as a `u64` status (0, or the read's negative errno) and the piece
    /// (zeroes when unreadable). Seven pieces fit bpf_iter's 32 KiB output buffer.
    pub const PEEK_PIECE: usize = 4096;
    pub const PEEK_PIECES: usize = 7;

    /// The programs' marks of addresses tracked objects had (`MARKS`): 2^20 one-byte
    /// buckets (1 MiB), in chunks of 4 KiB (a map value each). Never cleared: the fewer of
    /// them set, the more deletes are skipped (at 65536 distinct tracked addresses, 6%).
    pub const MARK_BUCKET_BITS: u32 = 20;
    pub const MARK_CHUNK_BYTES: usize = 4096;
    pub const MARK_CHUNKS: u32 = (1 << MARK_BUCKET_BITS) / MARK_CHUNK_BYTES as u32;

    /// `Outstanding.cache` of a percpu allocation (`alloc_percpu()`): no slab cache.
    pub const PERCPU_CACHE: u64 = 1;

    /// Values of the per-cache verdict map (`ALLOC_CACHE_VERDICT`).
    pub const CACHE_NEUTRAL: u8 = 1;
    pub const CACHE_INCLUDED: u8 = 2;
    pub const CACHE_EXCLUDED: u8 = 3;

    #[repr(C)]
    #[derive(Clone, Copy, Debug)]
    pub struct AllocConfig {
        pub enabled: u32,
        pub flags: u32,
        /// Ranges in use in `ranges`.
        pub nr_ranges: u32,
        /// Names in use in `include_caches` / `exclude_caches`.
        pub nr_include: u32,
        pub nr_exclude: u32,
        /// Track one allocation in `sample_every` (per CPU); 0 or 1: all.
        pub sample_every: u32,
        /// Sizes tracked: `min_size <= size <= max_size`.
        pub min_size: u64,
        pub max_size: u64,
        pub ranges: [[u64; 2]; MAX_RANGES],
        pub include_caches: [[u8; CACHE_NAME_LEN]; MAX_CACHES],
        pub exclude_caches: [[u8; CACHE_NAME_LEN]; MAX_CACHES],
        pub rcu: RcuLayout,
    }

    /// `kfree_rcu()`'s queues, so that the objects in them count as freed: kfree_rcu()
    /// batches are freed with `kfree_bulk()`, which has no tracepoint. Offsets from the
    /// running kernel's BTF (`struct kfree_rcu_cpu`, `kfree_rcu_cpu_work`,
    /// `kvfree_rcu_bulk_data`, `rcu_head`); all zero (`kfree_rcu_work == 0`): not followed.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct RcuLayout {
        /// The work functions that free kfree_rcu() batches (their addresses).
        pub kfree_rcu_work: u64,
        pub kfree_rcu_monitor: u64,
        /// Offset of the `work_struct` in `kfree_rcu_cpu_work` (`rcu_work.work`).
        pub krw_work: u32,
        pub krw_head_free: u32,
        pub krw_bulk_head_free: u32,
        pub krw_krcp: u32,
        pub krw_size: u32,
        /// Offset of `monitor_work.work` in `kfree_rcu_cpu`.
        pub krcp_monitor_work: u32,
        pub krcp_head: u32,
        pub krcp_bulk_head: u32,
        pub krcp_krw_arr: u32,
        /// `FREE_N_CHANNELS` (`bulk_head[]`) and `KFREE_N_BATCHES` (`krw_arr[]`).
        pub channels: u32,
        pub batches: u32,
        pub bnode_list: u32,
        pub bnode_nr_records: u32,
        pub bnode_records: u32,
        pub rcu_head_next: u32,
        pub rcu_head_func: u32,
        /// The kfree_rcu() shrinker's scan function, which runs `kfree_rcu_monitor()`
        /// directly (not as work) under memory pressure or `drop_caches`: 0 where unknown.
        pub kfree_rcu_shrink_scan: u64,
        /// Offset of `scan_objects` in `struct shrinker`.
        pub shrinker_scan_objects: u32,
        /// Offset of the per-CPU `krc` (each CPU's `kfree_rcu_cpu`) in the per-CPU section:
        /// with where each CPU's copy of the section starts (`PCPU_BASE`) it finds every CPU's queues, where waiting
        /// for each CPU's monitor to show its own misses the queues filled before attach.
        /// 0 where unknown.
        pub krc_pcpu: u32,
    }

    impl RcuLayout {
        pub const fn empty() -> Self {
            RcuLayout {
                kfree_rcu_work: 0,
                kfree_rcu_monitor: 0,
                krw_work: 0,
                krw_head_free: 0,
                krw_bulk_head_free: 0,
                krw_krcp: 0,
                krw_size: 0,
                krcp_monitor_work: 0,
                krcp_head: 0,
                krcp_bulk_head: 0,
                krcp_krw_arr: 0,
                channels: 0,
                batches: 0,
                bnode_list: 0,
                bnode_nr_records: 0,
                bnode_records: 0,
                rcu_head_next: 0,
                rcu_head_func: 0,
                kfree_rcu_shrink_scan: 0,
                shrinker_scan_objects: 0,
                krc_pcpu: 0,
            }
        }
    }

    /// Most `kfree_rcu()` channels and batches the walks follow.
    pub const RCU_MAX_CHANNELS: u32 = 2;
    pub const RCU_MAX_BATCHES: u32 = 4;

    impl AllocConfig {
        pub const fn empty() -> Self {
            AllocConfig {
                enabled: 0,
                flags: 0,
                nr_ranges: 0,
                nr_include: 0,
                nr_exclude: 0,
                sample_every: 0,
                min_size: 0,
                max_size: u64::MAX,
                ranges: [[0; 2]; MAX_RANGES],
                include_caches: [[0; CACHE_NAME_LEN]; MAX_CACHES],
                exclude_caches: [[0; CACHE_NAME_LEN]; MAX_CACHES],
                rcu: RcuLayout::empty(),
            }
        }
    }

    /// Value of the `OUTSTANDING` map (key: the object's address), written at allocation,
    /// deleted at free, both in the kernel. Userspace only iterates it.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default)]
    pub struct Outstanding {
        /// `bpf_ktime_get_boot_ns()` at allocation.
        pub ts_ns: u64,
        pub call_site: u64,
        /// The slab cache (`struct kmem_cache *`); 0 for kmalloc.
        pub cache: u64,
        pub size: u32,
        /// `STACKS` id of the first stack seen at this call site; negative: none.
        pub stack_id: i32,
        pub pid: u32,
        pub tgid: u32,
        pub comm: [u8; super::COMM_LEN],
    }

    const _: () = assert!(core::mem::size_of::<Outstanding>() == 56);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one list's indexes: each read from one place, each inside its table.
    #[test]
    fn every_index_has_one_source_inside_its_table() {
        let mut seen = [false; tp_field::COUNT];
        for &(i, cat, tp, field) in tp_field::SOURCES {
            assert!(i < tp_field::COUNT && i != tp_field::NONE, "{tp}.{field}");
            assert!(!seen[i], "tp_field {i} listed twice");
            seen[i] = true;
            assert!(!cat.is_empty() && !tp.is_empty() && !field.is_empty());
        }
        let mut seen = [false; btf_off::COUNT];
        for &(i, st, path) in btf_off::SOURCES {
            assert!(i < btf_off::COUNT, "{st}");
            assert!(!seen[i], "btf_off {i} listed twice");
            seen[i] = true;
            assert!(!path.is_empty(), "{st}");
        }
        // The loader's own (the syscall arguments' registers took 80-83 beside the list).
        for &i in btf_off::COMPUTED {
            assert!(i < btf_off::COUNT);
            assert!(
                !seen[i],
                "btf_off {i} is both in SOURCES and filled by hand"
            );
            seen[i] = true;
        }
    }
}
