//! The maps shared by the programs. Sizes here are defaults; userspace may resize them.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use tracer_fs::wire::{FileRef, MountCall, counter};

/// Every record goes here.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(8 << 20, 0);

/// A copy of each failed umount's record, waking the reader at once: its scans (fds,
/// tasks, the mount's reference count) must run while the pins are still there, not
/// when the record's turn comes in `EVENTS`, which can lag by many records. Mount-table
/// changes that went through are copied too (without a wakeup), so the reader tells one
/// mount's failures from the next's. When it is full, the main ring's record still starts
/// the scans (later).
#[map]
pub static URGENT: RingBuf = RingBuf::with_byte_size(256 << 10, 0);

/// Submits per CPU, to look at the ring's fill level only now and then (`emit::submit`).
#[map]
pub static SUBMITS: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

/// `wire::counter::*`, one block of `counter::COUNT` per CPU (`cpu * COUNT + index`).
/// Not a per-CPU map: userspace reads it through `mmap`, never with bpf(2) lookups, which
/// run inside `bpf_disable_instrumentation()`; a reader preempted there (possible where the
/// kernel preempts in kernel code, as 7.2 does) makes every classic tracepoint program on
/// that CPU skip its runs until it is scheduled again. Userspace sizes it for the possible CPUs.
#[map]
pub static COUNTERS: Array<u64> = Array::with_max_entries(
    counter::COUNT * counter::DEFAULT_CPU_BLOCKS,
    aya_ebpf::bindings::BPF_F_MMAPABLE,
);

/// The work item each kworker (by thread id) is executing right now, kept only where BTF
/// does not place a kworker's `struct worker` (`kernel::worker_readable`). Keyed by
/// thread, not CPU: unbound workers (io_uring's exit work runs on one) migrate while they
/// sleep.
#[map]
pub static RUNNING_WORK: LruHashMap<u32, RunningWork> = LruHashMap::with_max_entries(4096, 0);

#[derive(Clone, Copy)]
#[repr(C)]
pub struct RunningWork {
    pub work: u64,
    pub function: u64,
}

/// The work functions whose queue/start/end/arm events are sent (`wire::followed::*`).
#[map]
pub static FOLLOWED_WORK: HashMap<u64, u8> = HashMap::with_max_entries(256, 0);

/// A mount-family syscall between its entry and exit, by `pid_tgid`.
#[map]
pub static PENDING_MOUNT: HashMap<u64, MountCall> = HashMap::with_max_entries(1024, 0);

/// The user pointer of an open-family syscall's path, by `pid_tgid`. A plain preallocated
/// hash, not an LRU one: its update costs a per-CPU free-list pop instead of the LRU's
/// shared lists (about half of the entry program's time); every entry is consumed at the
/// syscall's exit, and a thread's next open overwrites its key.
#[map]
pub static PENDING_OPEN: HashMap<u64, u64> = HashMap::with_max_entries(16384, 0);

/// An `io_uring_register(2)` of files between entry and exit, by `pid_tgid`.
#[map]
pub static PENDING_REGISTER: HashMap<u64, PendingRegister> = HashMap::with_max_entries(1024, 0);

#[derive(Clone, Copy)]
#[repr(C)]
pub struct PendingRegister {
    pub ctx: u64,
    /// User pointer to the `__s32` fd array.
    pub fds: u64,
    pub nr: u32,
    pub opcode: u32,
}

/// The slab caches whose frees mean something (`struct kmem_cache *`, found at run time by
/// their names): `kmem::CACHE_FILP`, `CACHE_FILES`, `CACHE_FS`.
#[map]
pub static CACHES: Array<u64> = Array::with_max_entries(3, 0);

/// Slot 0: the mount id whose reference count the next task scan reads (-1: none),
/// written by userspace before it runs the scan.
#[map]
pub static SCAN_TARGETS: Array<i32> = Array::with_max_entries(1, 0);

/// The mounts the next VMA scan reports mappings on (-1: unused slot), written by
/// userspace before it runs the scan: only those few of the system's many mappings are
/// written out.
#[map]
pub static VMA_MOUNTS: Array<i32> =
    Array::with_max_entries(tracer_fs::wire::VMA_SCAN_MOUNTS as u32, 0);

/// Linux AIO per process (tgid): requests submitted and reaped, and their latest files
/// (see `aio.rs`). Read by userspace when a umount fails; the least recently used
/// processes make room for new ones.
#[map]
pub static AIO_TASKS: LruHashMap<u32, tracer_fs::wire::AioAcct> =
    LruHashMap::with_max_entries(4096, 0);

/// Per-CPU offsets learnt by task scans (0: not yet), by CPU: the kernel's (`this_cpu_off`,
/// what a dynamic per-CPU pointer is added to).
#[map]
pub static PCPU_OFF: Array<u64> = Array::with_max_entries(tracer_fs::wire::SCAN_MAX_CPUS as u32, 0);

/// Where each CPU's copy of the per-CPU section starts (a static per-CPU variable is there
/// plus its offset in the section's BTF): `this_cpu_off` itself only where the section is
/// linked at 0 (x86-64 before 6.15; from then on it is the copy less `__per_cpu_start`).
#[map]
pub static PCPU_BASE: Array<u64> =
    Array::with_max_entries(tracer_fs::wire::SCAN_MAX_CPUS as u32, 0);

/// Scratch for the task scan's mount reference counts.
#[map]
pub static SCRATCH_REFS: PerCpuArray<tracer_fs::wire::MountRefs> =
    PerCpuArray::with_max_entries(1, 0);

/// Scratch for the task scan's records (too large for the BPF stack).
#[map]
pub static SCRATCH_TASK: PerCpuArray<tracer_fs::wire::TaskScan> =
    PerCpuArray::with_max_entries(1, 0);

/// Key of [`URING_INFLIGHT`]: the ring (`io_ring_ctx *`) and the file.
pub type RingFile = [u64; 2];

/// (ring, file) -> the count of the ring's in-flight requests that took the file by fd,
/// in `wire::uring_seq`'s word (count and sequence number). Never deleted from here: a
/// delete would race another CPU's fetch-and-add on the same entry; entries at 0 go as
/// the LRU makes room.
#[map]
pub static URING_INFLIGHT: LruHashMap<RingFile, u64> = LruHashMap::with_max_entries(16384, 0);

/// The file of an `__fput` between its kprobe and kretprobe, by `pid_tgid`.
#[map]
pub static PENDING_FPUT: LruHashMap<u64, u64> = LruHashMap::with_max_entries(1024, 0);

/// By thread: the file `fexit_real_fput` last reported, for its twin to check
/// (`precise::fexit_real_fput_twin`).
#[map]
pub static FPUT_DONE: LruHashMap<u64, u64> = LruHashMap::with_max_entries(1024, 0);

/// By thread: the file `fentry_fput` last ran for, for its twin to check
/// (`precise::fentry_fput_twin`).
#[map]
pub static FPUT_NOTE: LruHashMap<u64, u64> = LruHashMap::with_max_entries(4096, 0);

/// `path_umount`'s arguments between its kprobe and kretprobe, by `pid_tgid`.
#[map]
pub static PENDING_UMOUNT: LruHashMap<u64, PendingUmount> = LruHashMap::with_max_entries(1024, 0);

#[derive(Clone, Copy)]
#[repr(C)]
pub struct PendingUmount {
    pub enter_ns: u64,
    pub mnt_id: i32,
    pub flags: u32,
}

/// Slot 0 non-zero: `__fput` is hooked precisely (set by userspace once attached), so the
/// `filp` slab free only counts and no longer reports releases.
#[map]
pub static PRECISE_RELEASE: Array<u32> = Array::with_max_entries(1, 0);

/// Per-CPU scratch space for records too large for the 512-byte BPF stack.
#[map]
pub static SCRATCH_MOUNT: PerCpuArray<MountCall> = PerCpuArray::with_max_entries(1, 0);
#[map]
pub static SCRATCH_FILE: PerCpuArray<FileRef> = PerCpuArray::with_max_entries(1, 0);

/// A flock(2)/fcntl(2) lock call between its entry and exit, by `pid_tgid`: the lock
/// tracepoints inside it mark it, and only marked calls are sent at their exit. LRU: a
/// thread killed while it waits for a lock never reaches the exit that removes its entry.
#[map]
pub static PENDING_LOCK: LruHashMap<u64, PendingLock> = LruHashMap::with_max_entries(4096, 0);

#[derive(Clone, Copy)]
#[repr(C)]
pub struct PendingLock {
    pub enter_ns: u64,
    pub fd: i32,
    pub cmd: u32,
    pub sys: u32,
    /// A conflict was seen inside the call.
    pub conflicted: u8,
    /// The request was deferred (it waits): its final acquisition is sent too.
    pub waited: u8,
    pub _pad: [u8; 2],
}

/// Inodes (`struct inode *`) some lock request conflicted on: their unlocks are sent (the
/// release of what was waited for). LRU: old ones fall out by themselves.
#[map]
pub static LOCK_WATCH: LruHashMap<u64, u8> = LruHashMap::with_max_entries(1024, 0);
