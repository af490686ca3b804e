//! The precise hooks of the full-kernel tier: the kernel functions of the release path
//! itself (`fput`, `task_work_add(____fput)`, `__fput`, the deferred-release work functions,
//! `path_umount`'s return, `cleanup_mnt`). Each comes as an fentry/fexit program and as a
//! kprobe/kretprobe twin; userspace attaches the first that works on this kernel and falls
//! back to the tracepoint tier when neither does.

use aya_ebpf::{
    EbpfContext,
    helpers::{bpf_get_current_pid_tgid, generated::bpf_ktime_get_boot_ns},
    macros::{fentry, fexit, kprobe, kretprobe},
    maps::LruHashMap,
    programs::{FEntryContext, FExitContext, ProbeContext, RetProbeContext},
};
use tracer_fs::wire::{
    FilePut, FputDeferred, MountCleanup, UmountRet, WorkFnEntry, btf_off, counter, followed,
};

use crate::{
    config::{btf, file_one_ref, fput_callback},
    emit::{count, is_self, record, reserve, submit, submit_now},
    kernel::{file_identity, file_mnt_id, member, read},
    maps::{FPUT_DONE, FPUT_NOTE, PENDING_FPUT, PENDING_MOUNT, PENDING_UMOUNT, PendingUmount},
};

// ----- fput: a reference dropped -----

#[inline(always)]
fn on_fput(file: u64) {
    if file == 0 || is_self() {
        return;
    }
    count(counter::FPUT);
    let Some(off) = btf(btf_off::FILE_COUNT) else {
        return;
    };
    // Racy by nature (another CPU may drop a reference meanwhile): the last-reference
    // verdict is the one `fput()` itself is about to reach, give or take a race.
    let Some(refs) = read::<i64>(file.wrapping_add(off)) else {
        return;
    };
    let id = file_identity(file);
    let Some(mut entry) = reserve::<FilePut>() else {
        return;
    };
    let rec = record(&mut entry);
    rec.file = file;
    rec.ino = id.ino;
    // Normalized to references held: `f_ref` reads one less than `f_count` would.
    let held = (refs as u64).wrapping_sub(file_one_ref()).wrapping_add(1) as i64;
    rec.count = held;
    rec.mnt_id = id.mnt_id;
    rec.last = (held == 1) as u32;
    submit(entry);
}

// void fput(struct file *file)
#[fentry(function = "fput")]
pub fn fentry_fput(ctx: FEntryContext) -> i32 {
    let file: u64 = ctx.arg(0);
    on_fput(file);
    // Last: the note for the twin.
    let _ = FPUT_NOTE.insert(&bpf_get_current_pid_tgid(), &file, 0);
    0
}

/// `fentry_fput`'s twin, run right after it (attached before it: a trampoline runs the
/// program attached last first). The kernel skips a program while its own run on the same
/// CPU is in progress: a put in an interrupt that came during the first program's run,
/// and, where a trampoline runs its programs preemptibly (7.2), every other task's put on
/// that CPU while a task is preempted inside it (150-200 puts per fsstress kill -9 test on
/// 7.2). It reports the put when the first did not note this thread's file (as
/// `fexit_real_fput_twin` does for the release).
#[fentry(function = "fput")]
pub fn fentry_fput_twin(ctx: FEntryContext) -> i32 {
    let file: u64 = ctx.arg(0);
    let key = bpf_get_current_pid_tgid();
    // SAFETY: the value is copied out at once.
    let noted = unsafe { FPUT_NOTE.get(&key) }.copied();
    if noted.is_some() {
        let _ = FPUT_NOTE.remove(&key);
    }
    if noted != Some(file) {
        count(counter::FPUT_ENTRY_TWIN);
        on_fput(file);
    }
    0
}

#[kprobe]
pub fn kprobe_fput(ctx: ProbeContext) -> u32 {
    on_fput(ctx.arg(0).unwrap_or(0));
    0
}

// ----- task_work_add(____fput): the release deferred to a task's return to user space -----

#[inline(always)]
fn on_task_work_add(task: u64, work: u64) {
    let cb = fput_callback();
    if cb == 0 || work == 0 || is_self() {
        return;
    }
    let Some(func) = member::<u64>(work, btf_off::CALLBACK_FUNC) else {
        return;
    };
    if func != cb {
        return;
    }
    // The callback_head is a member of the struct file being released.
    let Some(off) = btf(btf_off::FILE_TASK_WORK) else {
        return;
    };
    let file = work.wrapping_sub(off);
    let Some(mut entry) = reserve::<FputDeferred>() else {
        return;
    };
    let rec = record(&mut entry);
    rec.file = file;
    rec.mnt_id = file_mnt_id(file).unwrap_or(-1);
    rec.target_pid = member::<u32>(task, btf_off::TASK_PID).unwrap_or(0);
    rec.target_tgid = member::<u32>(task, btf_off::TASK_TGID).unwrap_or(0);
    rec._pad = 0;
    submit(entry);
}

// int task_work_add(struct task_struct *task, struct callback_head *work, enum task_work_notify_mode)
#[fentry(function = "task_work_add")]
pub fn fentry_task_work_add(ctx: FEntryContext) -> i32 {
    on_task_work_add(ctx.arg(0), ctx.arg(1));
    0
}

#[kprobe]
pub fn kprobe_task_work_add(ctx: ProbeContext) -> u32 {
    on_task_work_add(ctx.arg(0).unwrap_or(0), ctx.arg(1).unwrap_or(0));
    0
}

// ----- __fput: the real release -----

#[inline(always)]
fn on_release(file: u64) {
    if file != 0 {
        crate::kmem::send_file_free(file);
    }
}

// static void __fput(struct file *file). At its return the mount reference is dropped;
// the file itself is freed after an RCU grace period (and a trampoline runs under RCU), so
// its fields are still readable here.
#[fexit(function = "__fput")]
pub fn fexit_real_fput(ctx: FExitContext) -> i32 {
    // Read from the context as a number: taken as the typed `struct file *` it is, the
    // release's slot hash (`file >> 8`) was refused by the verifier ("pointer arithmetic
    // with >>= operator prohibited"), and every kernel fell back to the kprobe at entry,
    // which reports the release before the mount reference goes.
    let file = read::<u64>(ctx.as_ptr() as u64).unwrap_or(0);
    on_release(file);
    // Last: the note for the twin.
    let _ = FPUT_DONE.insert(&bpf_get_current_pid_tgid(), &file, 0);
    0
}

/// `fexit_real_fput`'s twin, run right after it (attached before it, as above). A
/// trampoline runs its programs preemptibly (a kernel with preemption: 7.2's), and a
/// program does not run while its own run on the same CPU is in progress: a task preempted
/// inside the first program made another task's release on that CPU go unreported (the
/// kernel only counts it in `recursion_misses`), and its file stayed "alive". This program
/// has its own count: it reports the release when the first did not note this task's file
/// (as `free_twin` does for the slab frees, keyed by task here, since the two runs of one
/// release can be preempted apart).
#[fexit(function = "__fput")]
pub fn fexit_real_fput_twin(ctx: FExitContext) -> i32 {
    let file = read::<u64>(ctx.as_ptr() as u64).unwrap_or(0);
    let key = bpf_get_current_pid_tgid();
    // SAFETY: the value is copied out at once.
    let noted = unsafe { FPUT_DONE.get(&key) }.copied();
    let _ = FPUT_DONE.remove(&key);
    if noted != Some(file) {
        count(counter::FPUT_TWIN);
        on_release(file);
    }
    0
}

// The kprobe twins: a kretprobe has no arguments, so the entry keeps the file per thread
// and the return reports it, after the mount reference went (reported at the entry, a
// umount in between got EBUSY while the model held no file on the mount).
#[kprobe]
pub fn kprobe_real_fput(ctx: ProbeContext) -> u32 {
    let file: u64 = ctx.arg(0).unwrap_or(0);
    let key = bpf_get_current_pid_tgid();
    // SAFETY: the value is copied out at once.
    if let Some(older) = unsafe { PENDING_FPUT.get(&key) }.copied() {
        // An `__fput` inside another on this thread (no kernel path does that today): the
        // outer one is reported now rather than lost.
        on_release(older);
    }
    if PENDING_FPUT.insert(&key, &file, 0).is_err() {
        count(counter::MAP_FULL);
        on_release(file);
    }
    0
}

/// At a kretprobe: what the kprobe of the same call kept for this thread, taken out.
#[inline(always)]
fn take_pending<V: Copy>(map: &LruHashMap<u64, V>) -> Option<V> {
    let key = bpf_get_current_pid_tgid();
    // SAFETY: the value is copied out at once.
    let v = unsafe { map.get(&key) }.copied()?;
    let _ = map.remove(&key);
    Some(v)
}

#[kretprobe]
pub fn kretprobe_real_fput(_ctx: RetProbeContext) -> u32 {
    if let Some(file) = take_pending(&PENDING_FPUT) {
        on_release(file);
    }
    0
}

// ----- the deferred-release work functions, at entry -----

#[inline(always)]
fn on_work_fn(which: u8, work: u64) {
    let Some(mut entry) = reserve::<WorkFnEntry>() else {
        return;
    };
    let rec = record(&mut entry);
    rec.work = work;
    rec.which = which as u32;
    rec._pad = 0;
    submit(entry);
}

// static void delayed_fput(struct work_struct *unused)
#[fentry(function = "delayed_fput")]
pub fn fentry_delayed_fput(ctx: FEntryContext) -> i32 {
    on_work_fn(followed::DELAYED_FPUT, ctx.arg(0));
    0
}

#[kprobe]
pub fn kprobe_delayed_fput(ctx: ProbeContext) -> u32 {
    on_work_fn(followed::DELAYED_FPUT, ctx.arg(0).unwrap_or(0));
    0
}

// static __cold void io_fallback_req_func(struct work_struct *work)
#[fentry(function = "io_fallback_req_func")]
pub fn fentry_io_fallback_req_func(ctx: FEntryContext) -> i32 {
    on_work_fn(followed::URING_FALLBACK, ctx.arg(0));
    0
}

#[kprobe]
pub fn kprobe_io_fallback_req_func(ctx: ProbeContext) -> u32 {
    on_work_fn(followed::URING_FALLBACK, ctx.arg(0).unwrap_or(0));
    0
}

// static __cold void io_ring_exit_work(struct work_struct *work)
#[fentry(function = "io_ring_exit_work")]
pub fn fentry_io_ring_exit_work(ctx: FEntryContext) -> i32 {
    on_work_fn(followed::URING_EXIT, ctx.arg(0));
    0
}

#[kprobe]
pub fn kprobe_io_ring_exit_work(ctx: ProbeContext) -> u32 {
    on_work_fn(followed::URING_EXIT, ctx.arg(0).unwrap_or(0));
    0
}

// ----- path_umount: the umount's real result, with its mount -----

/// `path->mnt` -> `real_mount(mnt)->mnt_id`.
#[inline(always)]
fn path_mnt_id(path: u64) -> i32 {
    let Some(vfsmount) = member::<u64>(path, btf_off::PATH_MNT) else {
        return -1;
    };
    let Some(delta) = btf(btf_off::VFSMOUNT_TO_MNT_ID) else {
        return -1;
    };
    if vfsmount == 0 {
        return -1;
    }
    read::<i32>(vfsmount.wrapping_add(delta as u32 as i32 as i64 as u64)).unwrap_or(-1)
}

#[inline(always)]
fn send_umount_ret(enter_ns: u64, mnt_id: i32, flags: u32, ret: i64) {
    let Some(mut entry) = reserve::<UmountRet>() else {
        return;
    };
    let rec = record(&mut entry);
    rec.enter_ns = enter_ns;
    rec.ret = ret;
    rec.mnt_id = mnt_id;
    rec.flags = flags;
    if ret == -16 {
        // A copy to the urgent ring: the scans after EBUSY run at once (see maps.rs).
        let _ = crate::maps::URGENT
            .output::<UmountRet>(rec, aya_ebpf::bindings::BPF_RB_FORCE_WAKEUP as u64);
    } else if ret == 0 {
        // In order with the failures (no wakeup: flags 0 would wake the reader, which has
        // always caught up with this ring): the next failure is a new story.
        let _ = crate::maps::URGENT
            .output::<UmountRet>(rec, aya_ebpf::bindings::BPF_RB_NO_WAKEUP as u64);
    }
    // A failure is acted on at once (its fd scan); a umount that went through waits for
    // the next drain (10 ms at most), as its removal from the table does anyway.
    if ret == -16 {
        submit_now(entry);
    } else {
        submit(entry);
    }
}

// int path_umount(struct path *path, int flags). The path is the caller's (ksys_umount's
// stack), valid at the return; the mount may be on its way out but is freed after RCU.
#[fexit(function = "path_umount")]
pub fn fexit_path_umount(ctx: FExitContext) -> i32 {
    if is_self() {
        return 0;
    }
    let path: u64 = ctx.arg(0);
    let flags: u64 = ctx.arg(1);
    let ret: i64 = ctx.arg::<u64>(2) as i32 as i64;
    // The umount(2) entry's time, which the syscall hook keeps for its exit: the verdict
    // names files released between it and this return (the check may have seen them).
    // SAFETY: the value is read at once.
    let enter_ns =
        unsafe { PENDING_MOUNT.get(&bpf_get_current_pid_tgid()) }.map_or(0, |m| m.enter_ns);
    send_umount_ret(enter_ns, path_mnt_id(path), flags as u32, ret);
    0
}

/// The kretprobe twin has no arguments at the return: the entry keeps them per thread.
#[kprobe]
pub fn kprobe_path_umount(ctx: ProbeContext) -> u32 {
    if is_self() {
        return 0;
    }
    let path: u64 = ctx.arg(0).unwrap_or(0);
    let flags: u64 = ctx.arg(1).unwrap_or(0);
    let p = PendingUmount {
        // SAFETY: no preconditions.
        enter_ns: unsafe { bpf_ktime_get_boot_ns() },
        mnt_id: path_mnt_id(path),
        flags: flags as u32,
    };
    if PENDING_UMOUNT
        .insert(&bpf_get_current_pid_tgid(), &p, 0)
        .is_err()
    {
        count(counter::MAP_FULL);
    }
    0
}

#[kretprobe]
pub fn kretprobe_path_umount(ctx: RetProbeContext) -> u32 {
    let Some(p) = take_pending(&PENDING_UMOUNT) else {
        return 0;
    };
    let ret: u64 = ctx.ret();
    send_umount_ret(p.enter_ns, p.mnt_id, p.flags, ret as i32 as i64);
    0
}

// ----- cleanup_mnt: the mount really going away -----

#[inline(always)]
fn on_cleanup_mnt(mnt: u64) {
    let mnt_id = member::<i32>(mnt, btf_off::MOUNT_MNT_ID).unwrap_or(-1);
    let Some(mut entry) = reserve::<MountCleanup>() else {
        return;
    };
    let rec = record(&mut entry);
    rec.mnt_id = mnt_id;
    rec._pad = 0;
    // The stream acts on it at once (the fd scan after EBUSY, the mount table).
    submit_now(entry);
}

// static void cleanup_mnt(struct mount *mnt)
#[fentry(function = "cleanup_mnt")]
pub fn fentry_cleanup_mnt(ctx: FEntryContext) -> i32 {
    on_cleanup_mnt(ctx.arg(0));
    0
}

#[kprobe]
pub fn kprobe_cleanup_mnt(ctx: ProbeContext) -> u32 {
    on_cleanup_mnt(ctx.arg(0).unwrap_or(0));
    0
}
