//! Reading kernel structures through offsets from the running kernel's BTF.

use core::ffi::c_void;

use aya_ebpf::helpers::{
    bpf_probe_read_kernel, bpf_probe_read_kernel_str_bytes,
    generated::{bpf_get_current_task, bpf_get_current_task_btf, bpf_loop, bpf_task_pt_regs},
};
use tracer_fs::wire::{SCAN_MAX_CPUS, btf_off};

use crate::{
    config::{btf, percpu_layout},
    maps::{PCPU_BASE, PCPU_OFF},
};

/// `bpf_loop`: runs `step(i, ctx)` for i in 0..n, until it returns 1. `step` must be a
/// static function of the program (inlined here, the verifier sees it as a constant).
#[inline(always)]
pub fn for_steps<T>(n: u32, step: extern "C" fn(u64, *mut c_void) -> i64, ctx: &mut T) {
    // SAFETY: `step` is a function of this program; `ctx` outlives the call.
    unsafe {
        bpf_loop(
            n,
            step as *const () as *mut c_void,
            (ctx as *mut T).cast(),
            0,
        );
    }
}

/// Atomically adds `v` to the u64 at `p` and returns what was there before
/// (`BPF_ATOMIC | BPF_FETCH`, Linux 5.12). Inline assembly: the `bpfel` target's `core`
/// has no atomic read-modify-write (`atomic-cas` is false for it).
#[cfg(target_arch = "bpf")]
#[inline(always)]
pub fn fetch_add(p: *mut u64, v: u64) -> u64 {
    let mut old = v;
    // SAFETY: `p` points into a map value the verifier checked; the instruction reads and
    // writes 8 bytes there.
    unsafe {
        core::arch::asm!(
            "{v} = atomic_fetch_add((u64 *)({p} + 0), {v})",
            p = in(reg) p,
            v = inout(reg) old,
        );
    }
    old
}

/// The host build (clippy, on the stable channel) has no BPF assembly: a plain add there.
#[cfg(not(target_arch = "bpf"))]
#[inline(always)]
pub fn fetch_add(p: *mut u64, v: u64) -> u64 {
    // SAFETY: as above; never run (the programs run only as BPF).
    unsafe {
        let old = *p;
        *p = old.wrapping_add(v);
        old
    }
}

/// Reads a `T` at kernel address `addr`.
#[inline(always)]
pub fn read<T>(addr: u64) -> Option<T> {
    if addr == 0 {
        return None;
    }
    // SAFETY: bpf_probe_read_kernel checks the address and fails cleanly.
    unsafe { bpf_probe_read_kernel(addr as *const T) }.ok()
}

/// Reads the `T` at `base + offset of member`.
#[inline(always)]
pub fn member<T>(base: u64, m: usize) -> Option<T> {
    read(base.wrapping_add(btf(m)?))
}

/// The bytes one read of [`members2`] covers.
const WINDOW: usize = 64;

/// The `u64` members `a` and `b` of the structure at `base`, with one helper call when both
/// lie in one 64-byte window (as `file.f_inode` and `f_path.mnt`, `inode.i_sb` and `i_ino`
/// do on every kernel so far), else two. A helper call is most of what a read costs here,
/// and a record reads several such pairs. (The offsets are frozen constants: the verifier
/// keeps one of the two paths.)
#[inline(always)]
pub fn members2(base: u64, a: usize, b: usize) -> Option<(u64, u64)> {
    let (oa, ob) = (btf(a)?, btf(b)?);
    let (lo, hi) = if oa <= ob { (oa, ob) } else { (ob, oa) };
    let gap = hi - lo;
    if gap <= (WINDOW - 8) as u64 && gap % 8 == 0 && lo % 8 == 0 {
        let w: [u64; WINDOW / 8] = read(base.wrapping_add(lo))?;
        let (x, y) = (w[0], w[(gap / 8) as usize & (WINDOW / 8 - 1)]);
        return Some(if oa <= ob { (x, y) } else { (y, x) });
    }
    Some((member(base, a)?, member(base, b)?))
}

/// The `u64` member `a` and the `u32` member `b` of the structure at `base`, `b` after
/// `a`: as [`members2`], one helper call where both lie in one 64-byte window.
#[inline(always)]
pub fn members_u64_u32(base: u64, a: usize, b: usize) -> Option<(u64, u32)> {
    let (oa, ob) = (btf(a)?, btf(b)?);
    if oa % 8 == 0 && ob >= oa + 8 && ob - oa <= (WINDOW - 4) as u64 && ob % 4 == 0 {
        let w: [u32; WINDOW / 4] = read(base.wrapping_add(oa))?;
        let i = ((ob - oa) / 4) as usize & (WINDOW / 4 - 1);
        return Some((w[0] as u64 | (w[1] as u64) << 32, w[i]));
    }
    Some((member(base, a)?, member(base, b)?))
}

/// `PF_WQ_WORKER` (include/linux/sched.h): a workqueue worker (a kworker, or a rescuer
/// while it runs work items).
const PF_WQ_WORKER: u32 = 0x20;

/// The `T` at task member `m` (`btf_off::*`, an offset into `task_struct`) of the
/// current task, read with a plain load through the task's BTF pointer (the verifier
/// checks the constant offset against the type and guards the load), not a helper call.
#[inline(always)]
pub fn current_member<T: Copy>(m: usize) -> Option<T> {
    let off = btf(m)?;
    // SAFETY: the helper returns the running task; the offset is the member's, from BTF.
    Some(unsafe { load(bpf_get_current_task_btf() as *const u8, off) })
}

/// Whether this kernel's BTF places a kworker's current work item (`task_struct.
/// worker_private` -> `kthread.data` -> `worker.current_work`/`current_func`).
#[inline(always)]
pub fn worker_readable() -> bool {
    btf(btf_off::TASK_WORKER_PRIVATE).is_some()
        && btf(btf_off::KTHREAD_DATA).is_some()
        && btf(btf_off::WORKER_CURRENT_WORK).is_some()
        && btf(btf_off::WORKER_CURRENT_FUNC).is_some()
}

/// The work item (and its function) the current kworker is executing, from its `struct
/// worker` (what the kernel's `current_work()` reads): set from before
/// `workqueue_execute_start` to after `workqueue_execute_end`. (0, 0) between items or
/// where unreadable. Only for a task [`current_is_worker`] says is one.
#[inline(always)]
pub fn current_work_item() -> (u64, u64) {
    let Some(kthread) = current_member::<u64>(btf_off::TASK_WORKER_PRIVATE) else {
        return (0, 0);
    };
    let Some(worker) = member::<u64>(kthread, btf_off::KTHREAD_DATA) else {
        return (0, 0);
    };
    members2(
        worker,
        btf_off::WORKER_CURRENT_WORK,
        btf_off::WORKER_CURRENT_FUNC,
    )
    .unwrap_or((0, 0))
}

/// Whether the current task can be running a work item: a workqueue worker, or any task
/// where this kernel's BTF does not place `task_struct.flags`. Every record's header asks.
#[inline(always)]
pub fn current_is_worker() -> bool {
    current_member::<u32>(btf_off::TASK_FLAGS).is_none_or(|f| f & PF_WQ_WORKER != 0)
}

/// The `T` at `pt_regs` member `m` of the registers the current task's syscall saved,
/// read with a plain load (see [`current_member`]).
#[inline(always)]
pub fn current_regs_member<T: Copy>(m: usize) -> Option<T> {
    let off = btf(m)?;
    // SAFETY: the helpers return the running task and its saved registers (never null);
    // the offset is the member's, from BTF.
    Some(unsafe {
        load(
            bpf_task_pt_regs(bpf_get_current_task_btf()) as *const u8,
            off,
        )
    })
}

/// The mount id of a `struct vfsmount *` (-1 for NULL or unreadable).
#[inline(always)]
pub fn vfsmount_id(vfsmount: u64) -> i32 {
    if vfsmount == 0 {
        return -1;
    }
    member::<i32>(vfsmount, btf_off::VFSMOUNT_TO_MNT_ID).unwrap_or(-1)
}

/// Mount ids of `task->fs`'s cwd and root; (-1, -1) when it has no fs_struct any more.
#[inline(always)]
pub fn fs_mount_ids(task: u64) -> (i32, i32) {
    let fs = member::<u64>(task, btf_off::TASK_FS).unwrap_or(0);
    if fs == 0 {
        return (-1, -1);
    }
    (
        vfsmount_id(member::<u64>(fs, btf_off::FS_PWD_MNT).unwrap_or(0)),
        vfsmount_id(member::<u64>(fs, btf_off::FS_ROOT_MNT).unwrap_or(0)),
    )
}

#[inline(always)]
pub fn current_task() -> u64 {
    // SAFETY: no preconditions.
    unsafe { bpf_get_current_task() }
}

/// The current task's open-file table: its `fdtable`'s fd array and size.
#[derive(Clone, Copy)]
pub struct Fds {
    array: u64,
    max_fds: u32,
}

impl Fds {
    /// The `struct file *` in slot `fd`, if any (one helper call: the array's elements are
    /// `struct file __rcu *` behind a `struct file **`, which BTF loads do not follow).
    #[inline(always)]
    pub fn file(&self, fd: i32) -> Option<u64> {
        if fd < 0 || fd as u32 >= self.max_fds {
            return None;
        }
        let file: u64 = read(self.array.wrapping_add(fd as u64 * 8))?;
        (file != 0).then_some(file)
    }
}

/// `current->files->fdt`'s fd array and `max_fds`, read with plain loads through the
/// task's BTF pointer (`files_struct *`, then `fdtable *`: the verifier types each load
/// and guards it), not the three helper calls a walk from an untyped pointer takes.
/// `None` once the task has dropped its files (exiting).
#[inline(always)]
pub fn current_fds() -> Option<Fds> {
    let (files_off, fdt_off) = (btf(btf_off::TASK_FILES)?, btf(btf_off::FILES_FDT)?);
    let (max_off, fd_off) = (btf(btf_off::FDT_MAX_FDS)?, btf(btf_off::FDT_FD)?);
    // SAFETY: BTF-typed pointers from the helper on, each offset its member's from BTF.
    unsafe {
        let task = bpf_get_current_task_btf() as *const u8;
        let files = load::<*const u8>(task, files_off);
        if files.is_null() {
            return None;
        }
        let fdt = load::<*const u8>(files, fdt_off);
        if fdt.is_null() {
            return None;
        }
        Some(Fds {
            array: load::<u64>(fdt, fd_off),
            max_fds: load::<u32>(fdt, max_off),
        })
    }
}

/// `current->files->fdt->fd[fd]`: the `struct file *` in slot `fd`, if any.
#[inline(always)]
pub fn current_fd_file(fd: i32) -> Option<u64> {
    if fd < 0 {
        return None;
    }
    current_fds()?.file(fd)
}

/// A plain load of the `T` at `base + off`, `base` a BTF-typed kernel pointer.
///
/// # Safety
/// `base` must be a pointer the verifier types through BTF and `off` one of its members'
/// offsets from BTF (the verifier rejects anything else at load time).
#[inline(always)]
unsafe fn load<T: Copy>(base: *const u8, off: u64) -> T {
    // SAFETY: per the contract; the verifier turns the load into a guarded one.
    unsafe { core::ptr::read_volatile(base.add(off as usize) as *const T) }
}

pub struct FileIdentity {
    pub mnt_id: i32,
    pub dev: u32,
    pub ino: u64,
}

/// The mount a file pins and its inode identity (4 reads).
#[inline(always)]
pub fn file_identity(file: u64) -> FileIdentity {
    let (inode, vfsmount) = file_inode_mnt(file);
    let (sb, ino) = members2(inode, btf_off::INODE_SB, btf_off::INODE_INO).unwrap_or((0, 0));
    FileIdentity {
        mnt_id: vfsmount_mnt_id(vfsmount).unwrap_or(-1),
        dev: member(sb, btf_off::SB_DEV).unwrap_or(0),
        ino,
    }
}

/// A file's mount id and inode number, without the device (3 reads): what its release
/// says.
#[inline(always)]
pub fn file_mnt_ino(file: u64) -> (i32, u64) {
    let (inode, vfsmount) = file_inode_mnt(file);
    (
        vfsmount_mnt_id(vfsmount).unwrap_or(-1),
        member(inode, btf_off::INODE_INO).unwrap_or(0),
    )
}

/// `file->f_inode` and `file->f_path.mnt` (0 where unreadable).
#[inline(always)]
fn file_inode_mnt(file: u64) -> (u64, u64) {
    members2(file, btf_off::FILE_INODE, btf_off::FILE_PATH_MNT).unwrap_or((0, 0))
}

/// `real_mount(file->f_path.mnt)->mnt_id`.
#[inline(always)]
pub fn file_mnt_id(file: u64) -> Option<i32> {
    vfsmount_mnt_id(member(file, btf_off::FILE_PATH_MNT)?)
}

/// `real_mount(vfsmount)->mnt_id`.
#[inline(always)]
fn vfsmount_mnt_id(vfsmount: u64) -> Option<i32> {
    // The distance from `struct vfsmount` to `mnt_id` inside `struct mount` (signed).
    let delta = btf(btf_off::VFSMOUNT_TO_MNT_ID)? as u32 as i32 as i64;
    if vfsmount == 0 {
        return None;
    }
    read(vfsmount.wrapping_add(delta as u64))
}

/// Copies the file's dentry name (last path component) into `buf`; false when unreadable.
#[inline(always)]
pub fn file_dentry_name(file: u64, buf: &mut [u8]) -> bool {
    let Some(dentry) = member::<u64>(file, btf_off::FILE_PATH_DENTRY) else {
        return false;
    };
    let Some(name) = member::<u64>(dentry, btf_off::DENTRY_NAME) else {
        return false;
    };
    if name == 0 {
        return false;
    }
    // SAFETY: the helper bounds the copy by `buf`.
    unsafe { bpf_probe_read_kernel_str_bytes(name as *const u8, buf) }.is_ok()
}

/// Learns where the per-CPU area of the CPU whose run queue `task` is queued on starts
/// (`PCPU_BASE`), and the kernel's per-CPU offset for it (`PCPU_OFF`): a run queue is the
/// per-CPU `runqueues` of its CPU, so its address less the variable's offset in the per-CPU
/// section is the area's start; the CPU's own `this_cpu_off` there holds the kernel's
/// offset (the same value only where the section is linked at 0).
///
/// The task scan learns every CPU's this way; allocation tracking, its own CPU's at a work
/// item's start (where kfree_rcu()'s per-CPU queues are found from it).
#[inline(always)]
pub fn learn_cpu_offset(task: u64) {
    let (rq_var, off_var, _) = percpu_layout();
    if rq_var == 0 {
        return;
    }
    let Some(cfs_rq) = member::<u64>(task, btf_off::TASK_SE_CFS_RQ) else {
        return;
    };
    let Some(rq) = member::<u64>(cfs_rq, btf_off::CFS_RQ_RQ) else {
        return;
    };
    let Some(cpu) = member::<u32>(rq, btf_off::RQ_CPU) else {
        return;
    };
    if cpu as usize >= SCAN_MAX_CPUS || PCPU_OFF.get(cpu).is_some_and(|v| *v != 0) {
        return;
    }
    let base = rq.wrapping_sub(rq_var);
    let Some(off) = read::<u64>(base.wrapping_add(off_var)) else {
        return;
    };
    if let Some(slot) = PCPU_BASE.get_ptr_mut(cpu) {
        // SAFETY: a u64 slot of an array map.
        unsafe { *slot = base };
    }
    if let Some(slot) = PCPU_OFF.get_ptr_mut(cpu) {
        // SAFETY: as above; written last, as the sign that both are known.
        unsafe { *slot = off };
    }
}
