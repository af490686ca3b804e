//! Space a delete did not free: files held by an io_uring ring or an in-flight request are
//! kept in a small slot table (a file in its own slot or one of the next `PROBES - 1`);
//! after each successful unlink, the slots whose inode has no link left are sent once
//! (`SpaceHeld`). Nothing else has the inode at hand there on the tracepoint tier (the
//! syscall only names a path, gone by its exit), and a dead task's ring is exactly what
//! keeps such a file after its process is gone.

use core::ffi::c_void;

use aya_ebpf::{macros::map, maps::Array};
use tracer_fs::wire::{SpaceHeld, btf_off, counter, tp_field};

use crate::{
    emit::{count, record, reserve, submit},
    kernel::{file_identity, for_steps, member},
    sys::{SysCtx, sys_programs},
};

const SLOTS: u32 = 64;

/// Files (`struct file *`) held by a ring or a request, by `slot(file)`; 0: free.
#[map]
static HELD_ELSEWHERE: Array<u64> = Array::with_max_entries(SLOTS, 0);

/// The file each slot's `SpaceHeld` was sent for, so a file is said once.
#[map]
static SPACE_SAID: Array<u64> = Array::with_max_entries(SLOTS, 0);

/// Bit i set: slot i may hold a file (set after the slot is written; cleared when its
/// file is released, or by the unlink exit's walk when it finds the slot empty). Every
/// successful unlink and every file release in the system looked at all the slots before;
/// with none held they now look at this word only. Its updates are not atomic (the BPF
/// target has no atomic read-modify-write in `core`): two CPUs racing can lose a bit, and
/// with it a file's notice until the file is noted again, as a racing slot writer already
/// could.
#[map]
static HELD_MASK: Array<u64> = Array::with_max_entries(1, 0);

#[inline(always)]
fn mask_update(f: impl FnOnce(u64) -> u64) {
    if let Some(p) = HELD_MASK.get_ptr_mut(0) {
        // SAFETY: an element of an array map (see `HELD_MASK` on races).
        unsafe { *p = f(*p) };
    }
}

#[inline(always)]
fn mask_set(bit: u32) {
    mask_update(|m| m | (1u64 << (bit & 63)));
}

#[inline(always)]
fn mask_clear(bit: u32) {
    mask_update(|m| m & !(1u64 << (bit & 63)));
}

#[inline(always)]
fn slot(file: u64) -> u32 {
    // `struct file`s are 256-byte slab objects: the bits above those spread them.
    ((file >> 8) as u32) % SLOTS
}

/// Slots a file may sit in: its own and the next ones, so that two held files whose
/// addresses share a slot are both kept (one overwriting the other lost the first's
/// notice: three rings in one test meet that a few times in a hundred).
const PROBES: u32 = 4;

/// A ring or a request took a reference to `file`.
#[inline(always)]
pub fn note_held(file: u64) {
    let home = slot(file);
    let mut free = None;
    for k in 0..PROBES {
        let i = (home + k) % SLOTS;
        let Some(p) = HELD_ELSEWHERE.get_ptr_mut(i) else {
            return;
        };
        // SAFETY: an element of an array map; a racing writer only costs one file's notice.
        let v = unsafe { *p };
        if v == file {
            mask_set(i);
            return;
        }
        if v == 0 && free.is_none() {
            free = Some(i);
        }
    }
    let i = match free {
        Some(i) => i,
        None => {
            count(counter::SPACE_SLOT_TAKEN);
            home
        }
    };
    if let Some(p) = HELD_ELSEWHERE.get_ptr_mut(i) {
        // SAFETY: as above.
        unsafe { *p = file };
    }
    mask_set(i);
    // A file already without a link (unlinked before, O_TMPFILE) is no delete's doing:
    // marked said, so the next unlink of anything does not claim it.
    let said = if nlink(file) == Some(0) { file } else { 0 };
    if let Some(p) = SPACE_SAID.get_ptr_mut(i) {
        // SAFETY: as above.
        unsafe { *p = said };
    }
}

#[inline(always)]
fn nlink(file: u64) -> Option<u32> {
    let inode = member::<u64>(file, btf_off::FILE_INODE)?;
    member::<u32>(inode, btf_off::INODE_NLINK)
}

/// `file` was released: its slot is free again (and a new file at its address may be
/// said again).
#[inline(always)]
pub fn forget(file: u64) {
    // Runs at every file's release: with no slot held, nothing to look at.
    if HELD_MASK.get(0).is_none_or(|m| *m == 0) {
        return;
    }
    let home = slot(file);
    for k in 0..PROBES {
        let i = (home + k) % SLOTS;
        if let Some(p) = SPACE_SAID.get_ptr_mut(i) {
            // SAFETY: as in `note_held`.
            unsafe {
                if *p == file {
                    *p = 0;
                }
            }
        }
        if let Some(p) = HELD_ELSEWHERE.get_ptr_mut(i) {
            // SAFETY: as in `note_held`.
            unsafe {
                if *p == file {
                    *p = 0;
                    // Its bit goes with it (else every unlink walks the slots until one
                    // finds it empty: an io_uring loop notes a file per request), unless
                    // a file was noted there meanwhile.
                    mask_clear(i);
                    if core::ptr::read_volatile(p) != 0 {
                        mask_set(i);
                    }
                }
            }
        }
    }
}

// The exits of `unlink(2)` and `unlinkat(2)`.
sys_programs!(exit sys_exit_unlink_family, raw_sys_exit_unlink_family => unlink_exit);

#[inline(always)]
fn unlink_exit(ctx: &impl SysCtx) -> u32 {
    let ret = ctx.arg(tp_field::SYS_RET) as i64;
    if ret != 0 {
        return 0;
    }
    let mut mask = HELD_MASK.get(0).copied().unwrap_or(0);
    if mask == 0 {
        return 0;
    }
    // One slot per `bpf_loop` step: the callback is verified once. Unrolled, 6.1's
    // verifier gave up on this program (over a million instructions, 15 s under TCG at
    // every attach).
    for_steps(SLOTS, check_step, &mut mask);
    0
}

#[inline(never)]
extern "C" fn check_step(i: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: `unlink_exit` passes its mask, alive for the loop.
    let mask = unsafe { *(ctx as *const u64) };
    if i < 64 && mask & (1u64 << i) != 0 {
        check_slot(i as u32);
    }
    0
}

#[inline(always)]
fn check_slot(i: u32) {
    let Some(&file) = HELD_ELSEWHERE.get(i) else {
        return;
    };
    if file == 0 {
        mask_clear(i);
        // A file noted meanwhile keeps its bit.
        if HELD_ELSEWHERE
            .get_ptr(i)
            // SAFETY: an element of an array map.
            .is_some_and(|f| unsafe { core::ptr::read_volatile(f) } != 0)
        {
            mask_set(i);
        }
        return;
    }
    if SPACE_SAID.get(i).is_some_and(|f| *f == file) {
        return;
    }
    if nlink(file) != Some(0) {
        return;
    }
    let inode = member::<u64>(file, btf_off::FILE_INODE).unwrap_or(0);
    if let Some(p) = SPACE_SAID.get_ptr_mut(i) {
        // SAFETY: an element of an array map.
        unsafe { *p = file };
    }
    let Some(mut entry) = reserve::<SpaceHeld>() else {
        return;
    };
    let rec = record(&mut entry);
    let id = file_identity(file);
    rec.file = file;
    rec.ino = id.ino;
    rec.size = member(inode, btf_off::INODE_SIZE).unwrap_or(0);
    rec.blocks = member(inode, btf_off::INODE_BLOCKS).unwrap_or(0);
    rec.mnt_id = id.mnt_id;
    rec.dev = id.dev;
    submit(entry);
}
