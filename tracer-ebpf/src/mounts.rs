//! mount(2), umount2(2), move_mount(2), fsmount(2): the arguments at entry, the result at
//! exit, sent as one `MountCall` record.

use aya_ebpf::{
    bindings::{BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{
        bpf_get_current_pid_tgid, bpf_probe_read_kernel_str_bytes, bpf_probe_read_user_str_bytes,
        generated::bpf_ktime_get_boot_ns,
    },
};
use tracer_fs::wire::{MountCall, MountOp, btf_off, counter, tp_field};

use crate::{
    config::btf,
    emit::{count, is_self, record, reserve, submit, submit_now},
    kernel::{current_task, member, read},
    maps::{PENDING_MOUNT, SCRATCH_MOUNT, URGENT},
    sys::{SysCtx, sys_programs},
};

/// `-EBUSY` as syscalls return it.
const EBUSY: i64 = -16;

/// mount(2) flags that change an existing mount instead of making one: MS_REMOUNT,
/// MS_MOVE and the propagation changes (MS_UNBINDABLE, MS_PRIVATE, MS_SLAVE, MS_SHARED).
const MS_CHANGES: u32 = 32 | 8192 | (1 << 17) | (1 << 18) | (1 << 19) | (1 << 20);

/// Depth of the mount rbtree walked at most (a red-black tree of 2^20 mounts is < 40 deep).
const MAX_RB_DEPTH: u32 = 40;

/// The calling task's mount namespace's newest mount (a `struct mount`), or 0:
/// `mnt_last_node` (6.12+), the rightmost node of the `mounts` rbtree (6.8+, ordered by
/// `mnt_id_unique`), or the tail of the flat `list` (before; mounts are appended).
#[inline(always)]
fn newest_mount() -> u64 {
    let nsproxy = member::<u64>(current_task(), btf_off::TASK_NSPROXY).unwrap_or(0);
    let ns = member::<u64>(nsproxy, btf_off::NSPROXY_MNT_NS).unwrap_or(0);
    if ns == 0 {
        return 0;
    }
    if let Some(node_off) = btf(btf_off::MOUNT_MNT_NODE) {
        let mut node = match btf(btf_off::MNT_NS_LAST_NODE) {
            Some(off) => read::<u64>(ns.wrapping_add(off)).unwrap_or(0),
            None => {
                // `rb_root.rb_node`, then `rb_right` (after `__rb_parent_color`) down.
                let mut n = member::<u64>(ns, btf_off::MNT_NS_MOUNTS).unwrap_or(0);
                for _ in 0..MAX_RB_DEPTH {
                    match read::<u64>(n.wrapping_add(8)) {
                        Some(right) if right != 0 => n = right,
                        _ => break,
                    }
                }
                n
            }
        };
        if node == 0 {
            return 0;
        }
        node = node.wrapping_sub(node_off);
        return node;
    }
    if let (Some(list), Some(mnt_list)) = (btf(btf_off::MNT_NS_LIST), btf(btf_off::MOUNT_MNT_LIST))
    {
        // `list_head.prev` of the namespace's list: its last mount.
        let last = read::<u64>(ns.wrapping_add(list).wrapping_add(8)).unwrap_or(0);
        if last != 0 && last != ns.wrapping_add(list) {
            return last.wrapping_sub(mnt_list);
        }
    }
    0
}

/// Whether the call, when it succeeds, makes a new mount (not a remount or a propagation
/// change).
#[inline(always)]
fn makes_mount(rec: &MountCall) -> bool {
    (rec.op == MountOp::Mount as u32 && rec.flags & MS_CHANGES == 0)
        || rec.op == MountOp::MoveMount as u32
}

/// Mounts stacked on one another followed down at most.
const MAX_STACKED: usize = 4;

/// The dentry whose name is the last part of the path `m` was mounted at: its mountpoint,
/// or, for a mount stacked on another's root (a tmpfs mounted twice at one path), the
/// mountpoint of the lowest mount in that stack. (Its own mountpoint is then the other's
/// root, named "/": userspace, which checks the name against the call's target, used to
/// read the whole mount table for every such call.)
#[inline(always)]
fn target_dentry(m: u64) -> u64 {
    let mut mnt = m;
    let mut dentry = member::<u64>(mnt, btf_off::MOUNT_MNT_MOUNTPOINT).unwrap_or(0);
    for _ in 0..MAX_STACKED {
        let parent_dir = member::<u64>(dentry, btf_off::DENTRY_PARENT).unwrap_or(0);
        let parent = member::<u64>(mnt, btf_off::MOUNT_MNT_PARENT).unwrap_or(0);
        // Not a root (the usual case), or the namespace's root mount (its own parent).
        if dentry == 0 || parent_dir != dentry || parent == 0 || parent == mnt {
            break;
        }
        mnt = parent;
        dentry = member::<u64>(mnt, btf_off::MOUNT_MNT_MOUNTPOINT).unwrap_or(0);
    }
    dentry
}

/// Fills the `made_*` fields of a successful mount call's record with the mount it made.
#[inline(always)]
fn note_made_mount(rec: &mut MountCall) {
    rec.made_mnt_id = -1;
    if !makes_mount(rec) {
        return;
    }
    let m = newest_mount();
    if m == 0 {
        return;
    }
    let Some(id) = member::<i32>(m, btf_off::MOUNT_MNT_ID) else {
        return;
    };
    let parent = member::<u64>(m, btf_off::MOUNT_MNT_PARENT).unwrap_or(0);
    rec.made_parent_id = member::<i32>(parent, btf_off::MOUNT_MNT_ID).unwrap_or(-1);
    let sb = match btf(btf_off::MOUNT_MNT) {
        Some(mnt) => member::<u64>(m.wrapping_add(mnt), btf_off::VFSMOUNT_SB).unwrap_or(0),
        None => 0,
    };
    rec.made_dev = member::<u32>(sb, btf_off::SB_DEV).unwrap_or(0);
    let name = member::<u64>(target_dentry(m), btf_off::DENTRY_NAME).unwrap_or(0);
    rec.made_name[0] = 0;
    // SAFETY: the helper checks the address and bounds the copy.
    if name == 0
        || unsafe { bpf_probe_read_kernel_str_bytes(name as *const u8, &mut rec.made_name) }
            .is_err()
    {
        rec.made_name[0] = 0;
        return;
    }
    rec.made_mnt_id = id;
}

#[inline(always)]
fn user_str(ctx: &impl SysCtx, field: usize, buf: &mut [u8]) {
    buf[0] = 0;
    let ptr = ctx.arg(field);
    if ptr == 0 {
        return;
    }
    // SAFETY: the helper checks the user address and bounds the copy.
    if unsafe { bpf_probe_read_user_str_bytes(ptr as *const u8, buf) }.is_err() {
        buf[0] = 0;
    }
}

#[inline(always)]
fn enter(
    ctx: &impl SysCtx,
    op: MountOp,
    source: usize,
    target: usize,
    fstype: usize,
    flags: usize,
) -> u32 {
    if is_self() {
        return 0;
    }
    let Some(rec) = SCRATCH_MOUNT.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: per-CPU scratch slot, ours for the duration of this program.
    let rec = unsafe { &mut *rec };
    rec.op = op as u32;
    rec.flags = ctx.arg(flags) as u32;
    rec.ret = 0;
    rec.made_mnt_id = -1;
    rec.made_parent_id = -1;
    rec.made_dev = 0;
    rec.made_name[0] = 0;
    // SAFETY: no preconditions.
    rec.enter_ns = unsafe { bpf_ktime_get_boot_ns() };
    user_str(ctx, source, &mut rec.source);
    user_str(ctx, target, &mut rec.target);
    user_str(ctx, fstype, &mut rec.fstype);
    if PENDING_MOUNT
        .insert(&bpf_get_current_pid_tgid(), rec, 0)
        .is_err()
    {
        count(counter::MAP_FULL);
    }
    0
}

#[inline(always)]
fn exit(ctx: &impl SysCtx) -> u32 {
    let key = bpf_get_current_pid_tgid();
    // SAFETY: the pointer is used before the entry is removed below.
    let Some(pending) = PENDING_MOUNT.get_ptr(&key) else {
        if !is_self() {
            count(counter::UNMATCHED_EXIT);
        }
        return 0;
    };
    let ret = ctx.arg(tp_field::SYS_RET) as i64;
    if let Some(mut entry) = reserve::<MountCall>() {
        let rec = record(&mut entry);
        let hdr = rec.hdr;
        // SAFETY: `pending` points at a live map value.
        *rec = unsafe { *pending };
        rec.hdr = hdr;
        rec.ret = ret;
        rec.made_mnt_id = -1;
        if ret == 0 {
            note_made_mount(rec);
        }
        let unnamed = ret == 0 && makes_mount(rec) && rec.made_mnt_id < 0;
        if ret == EBUSY && rec.op == MountOp::Umount as u32 {
            let _ = URGENT.output::<MountCall>(rec, BPF_RB_FORCE_WAKEUP as u64);
        } else if ret == 0 {
            // In order with the failures, without a wakeup: a new mount (or a umount that
            // went through) starts a new story, whatever its (reused) mount id. (Flags 0
            // is not that: it wakes the reader whenever it has caught up, which for this
            // ring is always: an irq_work, a self-IPI, per call of a mount loop.)
            let _ = URGENT.output::<MountCall>(rec, BPF_RB_NO_WAKEUP as u64);
        }
        // Userspace reads the mount table at once only for a call that made a mount its
        // record cannot name; any other waits for the next drain (10 ms at most) rather
        // than have a mount loop pay a wakeup (a self-IPI) per call.
        if unnamed {
            submit_now(entry);
        } else {
            submit(entry);
        }
    }
    let _ = PENDING_MOUNT.remove(&key);
    0
}

sys_programs!(enter sys_enter_mount, raw_sys_enter_mount => |ctx| enter(
    ctx,
    MountOp::Mount,
    tp_field::MOUNT_DEV_NAME,
    tp_field::MOUNT_DIR_NAME,
    tp_field::MOUNT_TYPE,
    tp_field::MOUNT_FLAGS,
));

// No source or type for umount: the field indexes point at fields it does not have.
sys_programs!(enter sys_enter_umount, raw_sys_enter_umount => |ctx| enter(
    ctx,
    MountOp::Umount,
    tp_field::NONE,
    tp_field::UMOUNT_NAME,
    tp_field::NONE,
    tp_field::UMOUNT_FLAGS,
));

sys_programs!(enter sys_enter_move_mount, raw_sys_enter_move_mount => |ctx| enter(
    ctx,
    MountOp::MoveMount,
    tp_field::MOVE_MOUNT_FROM_PATH,
    tp_field::MOVE_MOUNT_TO_PATH,
    tp_field::NONE,
    tp_field::NONE,
));

sys_programs!(enter sys_enter_fsmount, raw_sys_enter_fsmount => |ctx| enter(
    ctx,
    MountOp::Fsmount,
    tp_field::NONE,
    tp_field::NONE,
    tp_field::NONE,
    tp_field::FSMOUNT_FLAGS,
));

// The exits of all four syscalls.
sys_programs!(exit sys_exit_mount_family, raw_sys_exit_mount_family => exit);
