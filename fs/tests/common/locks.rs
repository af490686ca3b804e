//! Lock-conflict event streams shared by the lock tests and the golden files.

use super::*;
use tracer_fs::event::{Event, HolderRef, LockHolderRef, LockHook, NameKind, Payload, RefHow};
use tracer_fs::wire::lock_flags as lf;

pub const F: u64 = 0xffff_8880_0000_1000;
pub const MINE: u64 = 0xffff_8880_0000_2000;
pub const RING: u64 = 0xffff_8880_0009_0000;
pub const LOCK: u64 = 0xffff_8880_0007_0000;
pub const FILES: u64 = 0xffff_8880_0ff0_0000;
pub const INO: u64 = 131;
pub const PATH: &str = "/mnt/scratch/data";

pub fn holder(pid: u32, owner: u64) -> LockHolderRef {
    LockHolderRef {
        lock: LOCK,
        file: F,
        owner,
        pid,
        lock_type: lf::F_WRLCK,
    }
}

#[allow(clippy::too_many_arguments)]
pub fn lock_ev(
    hook: LockHook,
    file: u64,
    owner: u64,
    ret: i32,
    lock_type: u8,
    flags: u32,
    holder: Option<LockHolderRef>,
) -> Payload {
    Payload::LockEvent {
        hook,
        fl: 0x5000,
        file,
        owner,
        ino: INO,
        dev: SCRATCH_DEV,
        mnt_id: 42,
        flags,
        ret,
        lock_pid: 1100,
        lock_type,
        holder,
    }
}

pub fn opened(file: u64, tgid: u32, fdn: i32) -> Payload {
    file_ref(
        file,
        fd(tgid, fdn),
        RefHow::Open,
        42,
        INO,
        NameKind::UserPath,
        PATH,
    )
}

/// The race: the holder's ring keeps the file (and its flock) after the kill and
/// reap; the parent's LOCK_NB retries; delayed_fput, armed by the ring's teardown, drops
/// the last reference and the lock with it.
pub fn dead_owner_stream(with_unlock: bool) -> Vec<Event> {
    let parent = task(1100, "harness");
    let child = task(1234, "db");
    let exit_work = RING + EXIT_WORK_OFF;
    let exit_kw = kworker(77, "kworker/u8:3", exit_work, IO_RING_EXIT_WORK);
    let fput_kw = kworker(88, "kworker/1:2", DELAYED_FPUT_WORK, DELAYED_FPUT);
    let t = T0 + 2 * S;
    let flock_wr = |ret| {
        lock_ev(
            LockHook::Flock,
            MINE,
            MINE,
            ret,
            lf::F_WRLCK,
            lf::FL_FLOCK,
            Some(holder(1234, F)),
        )
    };
    let mut v = vec![
        ev(T0, &parent, table(vec![root(), scratch()])),
        ev(T0 + S, &child, opened(F, 1234, 5)),
        ev(T0 + S + 10 * US, &child, uring_create(RING, 4)),
        ev(
            T0 + S + 20 * US,
            &child,
            file_ref(
                F,
                HolderRef::UringFixed { ctx: RING },
                RefHow::UringRegister,
                42,
                INO,
                NameKind::UserPath,
                PATH,
            ),
        ),
        ev(t, &parent, sigkill(1234, "db")),
        ev(t + 100 * US, &child, exit(9)),
        ev(t + 200 * US, &child, queued(exit_work, IO_RING_EXIT_WORK)),
        ev(t + 300 * US, &parent, opened(MINE, 1100, 3)),
        ev(t + 400 * US, &parent, flock_wr(-11)),
        ev(t + 2 * MS, &exit_kw, start(exit_work, IO_RING_EXIT_WORK)),
        ev(t + 3 * MS, &parent, flock_wr(-11)),
        ev(
            t + 10 * MS,
            &exit_kw,
            armed(DELAYED_FPUT_WORK, DELAYED_FPUT),
        ),
        ev(
            t + 10 * MS + 500 * US,
            &exit_kw,
            end(exit_work, IO_RING_EXIT_WORK),
        ),
        ev(t + 12 * MS, &parent, flock_wr(-11)),
        ev(
            t + 14 * MS,
            &task(0, "swapper/1"),
            queued(DELAYED_FPUT_WORK, DELAYED_FPUT),
        ),
        ev(
            t + 14 * MS + 100 * US,
            &fput_kw,
            start(DELAYED_FPUT_WORK, DELAYED_FPUT),
        ),
    ];
    if with_unlock {
        v.push(ev(
            t + 14 * MS + 200 * US,
            &fput_kw,
            lock_ev(
                LockHook::Flock,
                F,
                F,
                0,
                lf::F_UNLCK,
                lf::FL_FLOCK | lf::FL_CLOSE,
                None,
            ),
        ));
    }
    v.push(ev(t + 14 * MS + 300 * US, &fput_kw, free(F, 42, INO)));
    v.push(ev(
        t + 14 * MS + 500 * US,
        &fput_kw,
        end(DELAYED_FPUT_WORK, DELAYED_FPUT),
    ));
    v.push(ev(t + 15 * MS, &parent, flock_wr(0)));
    v
}
