//! Lock-conflict stories: hand-written event streams in, notices out (the live kernel
//! scenarios are tracer/tests/locks.rs).

mod common;

use common::locks::*;
use common::*;
use tracer_fs::Engine;
use tracer_fs::event::{LockHook, LockSys, Payload};
use tracer_fs::locks::{LockKind, LockOutcome, LockReleaseHow};
use tracer_fs::verdict::{HolderDesc, Notice};
use tracer_fs::wire::lock_flags as lf;

fn lock_notices(n: Vec<Notice>) -> Vec<Notice> {
    n.into_iter()
        .filter(|n| {
            matches!(
                n,
                Notice::LockConflict(_) | Notice::LockStillHeld(_) | Notice::LockReleased(_)
            )
        })
        .collect()
}

/// Each notice's kind in a word, in order.
fn story_kinds(n: &[Notice]) -> Vec<&'static str> {
    n.iter()
        .map(|n| match n {
            Notice::LockConflict(_) => "conflict",
            Notice::LockStillHeld(_) => "held",
            Notice::LockReleased(_) => "released",
            _ => "other",
        })
        .collect()
}

fn run(events: &[tracer_fs::event::Event]) -> Vec<Notice> {
    let mut e = Engine::new(config());
    lock_notices(e.apply_all(events))
}

#[test]
fn a_dead_owners_ring_holds_the_flock_until_delayed_fput() {
    let n = run(&dead_owner_stream(true));
    assert_eq!(n.len(), 4, "{n:#?}");
    let Notice::LockConflict(v) = &n[0] else {
        panic!("{n:#?}")
    };
    assert_eq!(v.kind, LockKind::Flock);
    assert_eq!(v.call, "flock(LOCK_EX|LOCK_NB)");
    assert_eq!(v.outcome, LockOutcome::Failed { ret: -11 });
    assert_eq!(v.caller.tgid, 1100);
    assert_eq!(v.caller_fd, Some(3));
    assert_eq!(v.path.as_deref(), Some(PATH));
    assert_eq!(v.mount.as_ref().map(|m| m.id), Some(42));
    let h = v.holder.as_ref().unwrap();
    assert_eq!(h.taken_by.pid, 1234);
    assert!(!h.taken_by.alive);
    assert_eq!(h.taken_by.killed.as_ref().unwrap().sender_tgid, 1100);
    assert!(!h.plain);
    let file = h.file.as_ref().unwrap();
    let [HolderDesc::UringFixed { ring, .. }] = &file.holders[..] else {
        panic!("{file:#?}")
    };
    assert_eq!(ring.owner.as_ref().unwrap().pid, 1234);
    let text = v.to_string();
    assert!(
        text.contains("killed by SIGKILL from pid 1100 (harness)"),
        "{text}"
    );
    assert!(text.contains("registered in io_uring ring"), "{text}");
    assert!(
        text.contains("teardown (io_ring_exit_work) queued"),
        "{text}"
    );
    // The retries: one line each, the same story.
    for (i, x) in n[1..3].iter().enumerate() {
        let Notice::LockStillHeld(s) = x else {
            panic!("{n:#?}")
        };
        assert_eq!(s.story.verdict_id, v.id);
        assert_eq!(s.story.conflicts, 2 + i as u32);
        assert_eq!(x.to_string().lines().count(), 1, "{x}");
    }
    // By the third attempt the ring let go: the line says what holds the file now.
    let Notice::LockStillHeld(third) = &n[2] else {
        panic!()
    };
    assert_eq!(
        third.holders_now.as_deref(),
        Some(&["a deferred put (delayed_fput)".to_string()][..]),
        "{third:#?}"
    );
    assert!(
        n[2].to_string().contains("its file is now held by"),
        "{}",
        n[2]
    );
    let Notice::LockReleased(r) = &n[3] else {
        panic!("{n:#?}")
    };
    assert_eq!(r.story.verdict_id, v.id);
    assert_eq!(r.how, LockReleaseHow::FileClosed);
    assert_eq!(r.held_ns, 14 * MS + 200 * US - 400 * US);
    assert_eq!(r.story.conflicts, 3);
    let chain: Vec<&str> = r
        .chain
        .iter()
        .filter_map(|l| l.function_name.as_deref())
        .collect();
    assert_eq!(chain.first(), Some(&"delayed_fput"), "{r:#?}");
    assert!(chain.contains(&"io_ring_exit_work"), "{r:#?}");
    let text = r.to_string();
    assert!(
        text.contains("held 13.8ms from the first conflict, 3 conflicts"),
        "{text}"
    );
    assert!(
        text.contains("released by: delayed_fput (kworker/1:2)"),
        "{text}"
    );
}

#[test]
fn the_files_free_ends_the_story_when_the_unlock_is_not_seen() {
    let n = run(&dead_owner_stream(false));
    assert_eq!(n.len(), 4, "{n:#?}");
    let Notice::LockReleased(r) = &n[3] else {
        panic!("{n:#?}")
    };
    assert_eq!(r.how, LockReleaseHow::FileFreed);
    assert_eq!(
        r.chain[0].function_name.as_deref(),
        Some("delayed_fput"),
        "{r:#?}"
    );
}

/// With precise release hooks the file's free is `__fput`'s entry, and the lock is held
/// until its `locks_remove_file()` unlocks it just after: a conflict in between is still
/// the same story, and the unlock ends it, as the file's last close.
#[test]
fn a_precise_release_ends_the_story_at_the_unlock_that_follows() {
    let mut s = dead_owner_stream(true);
    let is_unlock = |e: &tracer_fs::event::Event| {
        matches!(e.payload, tracer_fs::event::Payload::LockEvent { ret: 0, flags, .. }
            if flags & tracer_fs::wire::lock_flags::FL_CLOSE != 0)
    };
    let u = s.iter().position(is_unlock).unwrap();
    let f = s
        .iter()
        .position(|e| matches!(e.payload, tracer_fs::event::Payload::FileFree { .. }))
        .unwrap();
    // `__fput`'s entry first, then a retry that still conflicts, then the unlock.
    let (tu, tf) = (s[u].ts_ns, s[f].ts_ns);
    s.swap(u, f);
    s[u].ts_ns = tu;
    s[f].ts_ns = tf;
    let mut retry = s
        .iter()
        .rev()
        .find(|e| {
            matches!(
                e.payload,
                tracer_fs::event::Payload::LockEvent { ret: -11, .. }
            )
        })
        .unwrap()
        .clone();
    retry.ts_ns = tu + 50_000;
    s.insert(u + 1, retry);
    let mut cfg = config();
    cfg.precise_release = true;
    let mut e = Engine::new(cfg);
    let n = lock_notices(e.apply_all(&s));
    let kinds = story_kinds(&n);
    assert_eq!(
        kinds.iter().filter(|k| **k == "conflict").count(),
        1,
        "{kinds:?}"
    );
    let released: Vec<_> = n
        .iter()
        .filter_map(|n| match n {
            Notice::LockReleased(r) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(released.len(), 1, "{n:#?}");
    assert_eq!(released[0].how, LockReleaseHow::FileClosed);
}

/// A blocking call: a verdict only when it waits past the threshold, with the release
/// seen during the wait.
#[test]
fn blocking_waits_past_the_threshold_only() {
    let parent = task(1100, "harness");
    let live = task(1300, "holder");
    let mut evs = vec![
        ev(T0, &parent, table(vec![root(), scratch()])),
        ev(T0 + S, &live, opened(F, 1300, 4)),
        ev(T0 + S + MS, &parent, opened(MINE, 1100, 3)),
    ];
    let wait = |start: u64, len: u64| {
        vec![
            ev(
                start + 10 * US,
                &parent,
                lock_ev(
                    LockHook::Flock,
                    MINE,
                    MINE,
                    lf::DEFERRED,
                    lf::F_WRLCK,
                    lf::FL_FLOCK | lf::FL_SLEEP,
                    Some(holder(1300, F)),
                ),
            ),
            ev(
                start + len - 20 * US,
                &live,
                lock_ev(LockHook::Flock, F, F, 0, lf::F_UNLCK, lf::FL_FLOCK, None),
            ),
            ev(
                start + len - 10 * US,
                &parent,
                lock_ev(
                    LockHook::Flock,
                    MINE,
                    MINE,
                    0,
                    lf::F_WRLCK,
                    lf::FL_FLOCK | lf::FL_SLEEP,
                    None,
                ),
            ),
            ev(
                start + len,
                &parent,
                Payload::LockCall {
                    sys: LockSys::Flock,
                    cmd: 2,
                    fd: 3,
                    ret: 0,
                    enter_ns: start,
                },
            ),
        ]
    };
    evs.extend(wait(T0 + 2 * S, MS)); // under the default 5 ms
    evs.extend(wait(T0 + 3 * S, 40 * MS));
    let n = run(&evs);
    assert_eq!(n.len(), 2, "{n:#?}");
    let Notice::LockConflict(v) = &n[0] else {
        panic!("{n:#?}")
    };
    assert_eq!(v.call, "flock(LOCK_EX)");
    assert_eq!(
        v.outcome,
        LockOutcome::Waited {
            wait_ns: 40 * MS,
            ret: 0,
            sys: LockSys::Flock,
            cmd: 2,
            fd: 3
        }
    );
    let h = v.holder.as_ref().unwrap();
    assert!(h.plain && h.taken_by.alive);
    assert_eq!(
        h.plain_words().as_deref(),
        Some("fd 4 of pid 1300 (holder)")
    );
    assert!(v.to_string().contains("waited 40.0ms"), "{v}");
    let Notice::LockReleased(r) = &n[1] else {
        panic!("{n:#?}")
    };
    assert_eq!(r.how, LockReleaseHow::Unlocked);
    assert_eq!(r.story.verdict_id, v.id);
    assert_eq!(r.chain[0].tgid, 1300);
}

/// A POSIX lock is its process's: released when the owner closes the file (or exits),
/// with the owner (`files_struct`) that is not the file.
#[test]
fn posix_lock_released_by_its_owners_close() {
    let parent = task(1100, "harness");
    let live = task(1300, "holder");
    let evs = vec![
        ev(T0, &parent, table(vec![root(), scratch()])),
        ev(T0 + S, &live, opened(F, 1300, 4)),
        ev(
            T0 + 2 * S,
            &parent,
            lock_ev(
                LockHook::Posix,
                MINE,
                0xffff_8880_0aa0_0000,
                -11,
                lf::F_WRLCK,
                lf::FL_POSIX,
                Some(holder(1300, FILES)),
            ),
        ),
        // Another file of the same inode closed by someone else: not this lock.
        ev(
            T0 + 2 * S + MS,
            &parent,
            lock_ev(
                LockHook::Posix,
                MINE,
                0xffff_8880_0aa0_0000,
                0,
                lf::F_UNLCK,
                lf::FL_POSIX | lf::FL_CLOSE,
                None,
            ),
        ),
        ev(
            T0 + 2 * S + 2 * MS,
            &live,
            lock_ev(
                LockHook::Posix,
                F,
                FILES,
                0,
                lf::F_UNLCK,
                lf::FL_POSIX | lf::FL_CLOSE,
                None,
            ),
        ),
    ];
    let n = run(&evs);
    assert_eq!(n.len(), 2, "{n:#?}");
    let Notice::LockConflict(v) = &n[0] else {
        panic!("{n:#?}")
    };
    assert_eq!(v.kind, LockKind::Posix);
    assert_eq!(v.call, "fcntl(F_SETLK, F_WRLCK)");
    assert_eq!(v.holder.as_ref().unwrap().kind, LockKind::Posix);
    let Notice::LockReleased(r) = &n[1] else {
        panic!("{n:#?}")
    };
    assert_eq!(r.how, LockReleaseHow::OwnerClosed);
    assert_eq!(r.held_ns, 2 * MS);
}

/// The holder not found in the inode's list: still one verdict and "still held" lines,
/// and the next unlock on the inode ends it.
#[test]
fn a_holder_not_found_is_said_once() {
    let parent = task(1100, "harness");
    let nb = |ret| {
        lock_ev(
            LockHook::Posix,
            MINE,
            MINE,
            ret,
            lf::F_WRLCK,
            lf::FL_POSIX | lf::FL_OFDLCK,
            None,
        )
    };
    let evs = vec![
        ev(T0, &parent, table(vec![root(), scratch()])),
        ev(T0 + S, &parent, nb(-11)),
        ev(T0 + S + MS, &parent, nb(-11)),
        ev(
            T0 + S + 2 * MS,
            &task(5, "other"),
            lock_ev(LockHook::Posix, F, F, 0, lf::F_UNLCK, lf::FL_POSIX, None),
        ),
    ];
    let n = run(&evs);
    let kinds = story_kinds(&n);
    assert_eq!(kinds, ["conflict", "held", "released"]);
    let Notice::LockConflict(v) = &n[0] else {
        panic!()
    };
    assert_eq!(v.kind, LockKind::Ofd);
    assert!(v.holder.is_none());
    assert!(v.to_string().contains("held by: not found"), "{v}");
}

/// Without the syscall hooks, a wait is measured from its first deferral to the lock taken.
#[test]
fn waits_without_the_syscall_hooks_end_when_the_lock_is_taken() {
    let parent = task(1100, "harness");
    let live = task(1300, "holder");
    let t = T0 + 2 * S;
    let req = |ret, ty| {
        lock_ev(
            LockHook::Posix,
            MINE,
            0xffff_8880_0aa0_0000,
            ret,
            ty,
            lf::FL_POSIX | lf::FL_SLEEP,
            (ret == lf::DEFERRED).then(|| holder(1300, FILES)),
        )
    };
    let evs = vec![
        ev(T0, &parent, table(vec![root(), scratch()])),
        ev(T0 + S, &live, opened(F, 1300, 4)),
        ev(t, &parent, req(lf::DEFERRED, lf::F_WRLCK)),
        ev(
            t + 20 * MS,
            &live,
            lock_ev(
                LockHook::Posix,
                F,
                FILES,
                0,
                lf::F_UNLCK,
                lf::FL_POSIX,
                None,
            ),
        ),
        ev(t + 20 * MS + 10 * US, &parent, req(0, lf::F_WRLCK)),
    ];
    let mut cfg = config();
    cfg.missing_hooks = vec!["lock calls (flock(2)/fcntl(2) lock calls)".into()];
    let mut e = Engine::new(cfg);
    let n = lock_notices(e.apply_all(&evs));
    assert_eq!(n.len(), 2, "{n:#?}");
    let Notice::LockConflict(v) = &n[0] else {
        panic!("{n:#?}")
    };
    assert_eq!(v.call, "fcntl(F_SETLKW, F_WRLCK)");
    assert!(
        matches!(v.outcome, LockOutcome::Waited { wait_ns, .. } if wait_ns == 20 * MS + 10 * US),
        "{v:#?}"
    );
    assert!(
        v.evidence_limits.iter().any(|l| l.contains("lock calls")),
        "{v:#?}"
    );
    assert!(matches!(&n[1], Notice::LockReleased(r) if r.how == LockReleaseHow::Unlocked));
    // With the hooks, the acquisition alone says nothing (the call's exit decides).
    let n = run(&evs);
    assert!(n.is_empty(), "{n:#?}");
}

/// The kernel traces a failed flock after dropping the inode's lock list: the holder can
/// let go in between, and the failure is traced with no holder, after the release. Those
/// attempts are retries of the story (open or just released), never a second verdict.
#[test]
fn attempts_traced_without_their_holder_stay_in_its_story() {
    let parent = task(1100, "harness");
    let nb = |ret, h: Option<tracer_fs::event::LockHolderRef>| {
        lock_ev(
            LockHook::Flock,
            MINE,
            MINE,
            ret,
            lf::F_WRLCK,
            lf::FL_FLOCK,
            h,
        )
    };
    let unlock = lock_ev(
        LockHook::Flock,
        F,
        F,
        0,
        lf::F_UNLCK,
        lf::FL_FLOCK | lf::FL_CLOSE,
        None,
    );
    let t = T0 + S;
    let evs = vec![
        ev(T0, &parent, table(vec![root(), scratch()])),
        ev(t, &parent, nb(-11, Some(holder(1234, F)))),
        // The holder's lock left the list before this one was traced; the story is open.
        ev(t + MS, &parent, nb(-11, None)),
        ev(t + 2 * MS, &task(88, "kworker/1:2"), unlock),
        // Failed against the holder, traced after its release.
        ev(t + 2 * MS + 30 * US, &parent, nb(-11, None)),
        ev(t + 3 * MS, &parent, nb(0, None)),
        // Long after: a new conflict with no holder found is a story of its own.
        ev(t + S, &parent, nb(-11, None)),
    ];
    let n = run(&evs);
    let kinds = story_kinds(&n);
    assert_eq!(
        kinds,
        ["conflict", "held", "released", "held", "conflict"],
        "{n:#?}"
    );
    let Notice::LockConflict(v) = &n[0] else {
        panic!()
    };
    let Notice::LockStillHeld(open) = &n[1] else {
        panic!()
    };
    assert_eq!(open.story.verdict_id, v.id);
    assert!(!open.raced_release);
    let Notice::LockStillHeld(late) = &n[3] else {
        panic!()
    };
    assert_eq!(late.story.verdict_id, v.id);
    assert_eq!(late.story.conflicts, 3);
    assert!(late.raced_release);
    assert!(
        n[3].to_string().contains("traced after the release"),
        "{}",
        n[3]
    );
}
