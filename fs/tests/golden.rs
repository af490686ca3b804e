//! Golden tests: hand-written event streams of real deferral chains, their verdicts and
//! notices compared with the text and JSON checked in under `tests/golden/`.
//! `UPDATE_GOLDEN=1 cargo test -p tracer-fs --test golden` rewrites the files.

mod common;

use std::path::PathBuf;

use common::*;
use tracer_fs::Engine;
use tracer_fs::event::{Event, HolderRef, NameKind, Payload, RefHow};
use tracer_fs::verdict::{HolderDesc, Notice, VerdictKind};
use tracer_fs::work::LinkRole;

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn compare(file: &str, actual: &str) {
    let path = golden_dir().join(file);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with UPDATE_GOLDEN=1 to create it)",
            path.display()
        )
    });
    if expected != actual {
        let diff: Vec<String> = expected
            .lines()
            .zip(actual.lines())
            .enumerate()
            .filter(|(_, (e, a))| e != a)
            .take(5)
            .map(|(i, (e, a))| format!("line {}:\n  expected: {e}\n  actual:   {a}", i + 1))
            .collect();
        panic!(
            "{} differs from the engine's output ({} vs {} lines); first differences:\n{}\n\nfull output:\n{actual}",
            path.display(),
            expected.lines().count(),
            actual.lines().count(),
            diff.join("\n")
        );
    }
}

/// Runs a scenario, checks the engine's invariants after every event, compares the notices
/// (text and JSON lines) and the event stream itself (JSON lines, a replayable fixture).
fn run(name: &str, events: &[Event]) -> Vec<Notice> {
    run_with(name, config(), events)
}

fn run_with(name: &str, cfg: tracer_fs::EngineConfig, events: &[Event]) -> Vec<Notice> {
    let mut engine = Engine::new(cfg);
    let mut notices = Vec::new();
    let mut text = String::new();
    let mut json = String::new();
    for e in events {
        for n in engine.apply(e) {
            text.push_str(&n.to_string());
            text.push_str("\n\n");
            json.push_str(&n.to_json_line());
            json.push('\n');
            notices.push(n);
        }
        engine.check_invariants().unwrap();
    }
    let stream: String = events
        .iter()
        .map(|e| serde_json::to_string(e).unwrap() + "\n")
        .collect();
    compare(&format!("{name}.txt"), &text);
    compare(&format!("{name}.notices.jsonl"), &json);
    compare(&format!("{name}.events.jsonl"), &stream);
    // the fixture replays to the same notices
    let replayed: Vec<Event> = stream
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(replayed, events);
    notices
}

const F_LOG: u64 = 0xffff_8880_0a1b_2c00;

/// (1) A file held by an fd of a live process (open since before attach): EBUSY; the
/// process closes it, task_work frees it, the umount succeeds.
fn fd_held_stream() -> Vec<Event> {
    let holder = task(3001, "holder");
    let um = task(3100, "umount");
    vec![
        ev(T0, &task(900, "tracer"), table(vec![root(), scratch()])),
        ev(
            T0 + MS,
            &holder,
            file_ref(
                F_LOG,
                fd(3001, 3),
                RefHow::Snapshot,
                42,
                131,
                NameKind::Dentry,
                "log.txt",
            ),
        ),
        ev(
            T0 + 2 * S,
            &um,
            umount("/mnt/scratch", 0, -16, T0 + 2 * S - 50 * US),
        ),
        ev(
            T0 + 2 * S + 5 * MS,
            &holder,
            unref(F_LOG, fd(3001, 3), RefHow::Close),
        ),
        ev(T0 + 2 * S + 5 * MS + 20 * US, &holder, free(F_LOG, 42, 131)),
        ev(
            T0 + 2 * S + 10 * MS,
            &task(3102, "umount"),
            umount("/mnt/scratch", 0, 0, T0 + 2 * S + 9 * MS),
        ),
        ev(
            T0 + 2 * S + 10 * MS + 500 * US,
            &task(900, "tracer"),
            table(vec![root()]),
        ),
    ]
}

#[test]
fn fd_held_then_closed() {
    let n = run("fd_held", &fd_held_stream());
    assert_eq!(n.len(), 3, "{n:#?}");
    let Notice::Verdict(v) = &n[0] else {
        panic!("{n:#?}")
    };
    assert_eq!(v.kind, VerdictKind::UmountBusy);
    assert_eq!(v.mount.as_ref().unwrap().id, 42);
    assert_eq!(v.culprits.len(), 1);
    assert!(
        matches!(&v.culprits[0].holders[..], [HolderDesc::Fd { fd: 3, task, .. }] if task.alive && task.pid == 3001)
    );
    let Notice::CulpritReleased(c) = &n[1] else {
        panic!("{n:#?}")
    };
    assert_eq!(c.ts_ns - v.ts_ns, 5 * MS + 20 * US);
    assert_eq!(c.chain.len(), 1);
    assert_eq!(c.chain[0].role, LinkRole::TaskWork);
    assert_eq!(c.culprits_alive, 0);
    let Notice::StoryClosed(s) = &n[2] else {
        panic!("{n:#?}")
    };
    assert_eq!((s.failed_attempts, s.pinned_ns), (1, 10 * MS));
}

const RING: u64 = 0xffff_8880_0456_0000;
const F3: u64 = 0xffff_8880_1234_5600;
const SCRIPT: u64 = 0xffff_8880_0777_0100;

/// (2) generic/388: fsstress registered a file in its io_uring ring and is SIGKILLed. Its
/// exit closes the ring fd, which queues io_ring_exit_work; the ring is torn down in a
/// kworker, whose put of the file arms delayed_fput; delayed_fput frees the file; then
/// umount succeeds. Two umount attempts fail meanwhile.
fn uring_killed_stream() -> Vec<Event> {
    let tracer = task(900, "tracer");
    let bash = task(1100, "bash");
    let fsstress = task(1234, "fsstress");
    let um = task(2001, "umount");
    let exit_work = RING + EXIT_WORK_OFF;
    let exit_kw = kworker(77, "kworker/u8:3", exit_work, IO_RING_EXIT_WORK);
    let fput_kw = kworker(88, "kworker/1:2", DELAYED_FPUT_WORK, DELAYED_FPUT);
    let t = T0 + 2 * S;
    vec![
        ev(
            T0,
            &tracer,
            Payload::TestMarker {
                test: "generic/388".into(),
            },
        ),
        ev(T0, &tracer, table(vec![root(), scratch()])),
        ev(
            T0 + 500 * US,
            &bash,
            file_ref(
                SCRIPT,
                fd(1100, 255),
                RefHow::Snapshot,
                21,
                9001,
                NameKind::Dentry,
                "388",
            ),
        ),
        ev(
            T0 + S,
            &fsstress,
            file_ref(
                F3,
                fd(1234, 5),
                RefHow::Open,
                42,
                131,
                NameKind::UserPath,
                "p0/f3",
            ),
        ),
        ev(T0 + S + 10 * US, &fsstress, uring_create(RING, 4)),
        ev(
            T0 + S + 20 * US,
            &fsstress,
            file_ref(
                F3,
                HolderRef::UringFixed { ctx: RING },
                RefHow::UringRegister,
                42,
                131,
                NameKind::UserPath,
                "p0/f3",
            ),
        ),
        ev(
            T0 + S + 25 * US,
            &fsstress,
            Payload::UringRegister {
                ctx: RING,
                opcode: 2,
                nr_files: 1,
                ret: 0,
            },
        ),
        ev(t, &bash, sigkill(1234, "fsstress")),
        ev(t + 100 * US, &fsstress, exit(9)),
        ev(
            t + 200 * US,
            &fsstress,
            queued(exit_work, IO_RING_EXIT_WORK),
        ),
        ev(t + MS, &um, umount("/mnt/scratch", 0, -16, t + 900 * US)),
        ev(t + 3 * MS, &exit_kw, start(exit_work, IO_RING_EXIT_WORK)),
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
        ev(
            t + 12 * MS,
            &um,
            umount("/mnt/scratch", 0, -16, t + 11 * MS + 900 * US),
        ),
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
        ev(t + 14 * MS + 300 * US, &fput_kw, free(F3, 42, 131)),
        ev(
            t + 14 * MS + 500 * US,
            &fput_kw,
            end(DELAYED_FPUT_WORK, DELAYED_FPUT),
        ),
        ev(t + 20 * MS, &um, umount("/mnt/scratch", 0, 0, t + 19 * MS)),
        ev(t + 20 * MS + 500 * US, &tracer, table(vec![root()])),
    ]
}

#[test]
fn uring_ring_of_killed_task() {
    let n = run("uring_killed", &uring_killed_stream());
    assert_eq!(n.len(), 4, "{n:#?}");
    let Notice::Verdict(v1) = &n[0] else {
        panic!("{n:#?}")
    };
    assert_eq!(v1.test.as_deref(), Some("generic/388"));
    let [f] = &v1.culprits[..] else {
        panic!("{v1:#?}")
    };
    // the fd went with the process exit; the ring still holds the file
    let [HolderDesc::UringFixed { ring, .. }] = &f.holders[..] else {
        panic!("{f:#?}")
    };
    assert_eq!(ring.ctx, RING);
    let owner = ring.owner.as_ref().unwrap();
    assert!(!owner.alive);
    assert_eq!(owner.killed.as_ref().unwrap().sender_tgid, 1100);
    assert!(ring.teardown.queued.as_ref().unwrap().task_exited);
    let Notice::Verdict(v2) = &n[1] else {
        panic!("{n:#?}")
    };
    assert_eq!(v2.attempt, 2);
    assert!(matches!(
        &v2.culprits[0].holders[..],
        [HolderDesc::DeferredPut { .. }]
    ));
    let Notice::CulpritReleased(c) = &n[2] else {
        panic!("{n:#?}")
    };
    let roles: Vec<LinkRole> = c.chain.iter().map(|l| l.role).collect();
    assert_eq!(
        roles,
        vec![LinkRole::Ran, LinkRole::ArmedBy, LinkRole::QueuedBy]
    );
    assert_eq!(c.chain[0].comm, "kworker/1:2");
    assert_eq!(c.chain[1].ring, Some(RING));
    assert_eq!((c.chain[2].tgid, c.chain[2].task_exited), (1234, true));
    let Notice::StoryClosed(s) = &n[3] else {
        panic!("{n:#?}")
    };
    assert_eq!(
        (s.failed_attempts, s.pinned_ns, s.culprits_released),
        (2, 19 * MS, 1)
    );
}

const F_HOLD: u64 = 0xffff_8880_0a1b_3d00;
const F_BDEV: u64 = 0xffff_8880_0b00_0400;

/// (3) A lazy umount leaves the mount detached, pinned by an open file; mounting the same
/// device again fails with EBUSY; the holder exits, the mount is unpinned, the device's
/// other opener closes it, and the mount succeeds.
fn lazy_then_mount_stream() -> Vec<Event> {
    let tracer = task(900, "tracer");
    let holder = task(3001, "holder");
    let hold_bdev = task(4000, "holdbdev");
    let t = T0 + S;
    vec![
        ev(T0, &tracer, table(vec![root(), devtmpfs(), scratch()])),
        ev(
            T0 + MS,
            &holder,
            file_ref(
                F_HOLD,
                fd(3001, 3),
                RefHow::Snapshot,
                42,
                131,
                NameKind::Dentry,
                "log.txt",
            ),
        ),
        ev(
            T0 + 500 * MS,
            &hold_bdev,
            Payload::FileRef(tracer_fs::event::FileRef {
                file: F_BDEV,
                holder: fd(4000, 5),
                how: RefHow::Open,
                mnt_id: 24,
                dev: 5,
                ino: 310,
                name_kind: NameKind::UserPath,
                name: "/dev/loop1".into(),
            }),
        ),
        ev(
            t,
            &task(3100, "umount"),
            umount("/mnt/scratch", 2, 0, t - 40 * US),
        ),
        ev(t + 200 * US, &tracer, table(vec![root(), devtmpfs()])),
        ev(
            t + S,
            &task(3200, "mount"),
            mount("/dev/loop1", "/mnt/scratch", "xfs", -16, t + S - 300 * US),
        ),
        ev(t + S + 500 * MS, &holder, exit(0)),
        ev(t + S + 500 * MS + 50 * US, &holder, free(F_HOLD, 42, 131)),
        ev(
            t + S + 600 * MS,
            &hold_bdev,
            unref(F_BDEV, fd(4000, 5), RefHow::Close),
        ),
        ev(
            t + S + 600 * MS + 10 * US,
            &hold_bdev,
            free(F_BDEV, 24, 310),
        ),
        ev(
            t + 2 * S,
            &task(3201, "mount"),
            mount("/dev/loop1", "/mnt/scratch", "xfs", 0, t + 2 * S - MS),
        ),
        ev(
            t + 2 * S + 300 * US,
            &tracer,
            table(vec![
                root(),
                devtmpfs(),
                mnt(43, 21, "/mnt/scratch", "xfs", "/dev/loop1", 7, 1),
            ]),
        ),
    ]
}

#[test]
fn lazy_umount_then_mount_busy() {
    let n = run("lazy_then_mount", &lazy_then_mount_stream());
    let kinds: Vec<&str> = n
        .iter()
        .map(|n| match n {
            Notice::Verdict(_) => "verdict",
            Notice::CulpritReleased(_) => "released",
            Notice::PinReleased(_) => "pin released",
            Notice::PinFoundLate(_) => "pin found late",
            Notice::StoryClosed(_) => "closed",
            Notice::MountDetachedPinned(_) => "detached",
            Notice::DetachedMountUnpinned(_) => "unpinned",
            Notice::LockConflict(_) | Notice::LockStillHeld(_) | Notice::LockReleased(_) => "lock",
            Notice::SpaceHeld(_) | Notice::SpaceFreed(_) => "space",
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "detached", "verdict", "released", "unpinned", "released", "closed"
        ]
    );
    let Notice::Verdict(v) = &n[1] else {
        unreachable!()
    };
    assert_eq!(v.kind, VerdictKind::MountBusy);
    assert_eq!(v.pinned_mounts.len(), 1);
    assert!(v.pinned_mounts[0].mount.left_table_ns.is_some());
    assert_eq!(v.device_openers.len(), 1);
    assert_eq!(v.device_openers[0].id.path.as_deref(), Some("/dev/loop1"));
    let Notice::CulpritReleased(c) = &n[2] else {
        unreachable!()
    };
    assert!(c.chain[0].task_exited, "freed by task_work at exit");
    let Notice::DetachedMountUnpinned(u) = &n[3] else {
        unreachable!()
    };
    assert_eq!(u.ts_ns - u.detached_ns, S + 500 * MS + 50 * US - 200 * US);
}

const F_MOD: u64 = 0xffff_8880_0b0c_0d00;
const MOD_WORK: u64 = 0xffff_8880_0777_2000;
const MOD_PUT_FN: u64 = 0xffff_ffff_c001_0450;

/// (4) The precise tier (fentry/kprobe), as leakyfs does it inside the VM: `cat` opens and
/// closes a file, but the module's own work keeps a reference (the close's `fput` is not
/// the last); umount is EBUSY (from `path_umount`'s return; the syscall exit adds nothing);
/// the module's kworker drops the last reference, no task_work being possible there, so
/// `delayed_fput` releases it (`__fput`); the umount then succeeds and `cleanup_mnt` runs.
fn precise_stream() -> Vec<Event> {
    let tracer = task(900, "tracer");
    let cat = task(158, "cat");
    let um = task(159, "umount");
    let mod_kw = kworker(40, "kworker/0:2", MOD_WORK, MOD_PUT_FN);
    let fput_kw = kworker(41, "kworker/0:3", DELAYED_FPUT_WORK, DELAYED_FPUT);
    let bare_fput_kw = task(41, "kworker/0:3");
    let put = |file: u64, count: i64| Payload::FilePut {
        file,
        mnt_id: 42,
        ino: 2,
        count,
        last: count == 1,
    };
    let t = T0 + S;
    vec![
        ev(T0, &tracer, table(vec![root(), scratch()])),
        ev(
            t,
            &cat,
            file_ref(
                F_MOD,
                fd(158, 3),
                RefHow::Open,
                42,
                2,
                NameKind::UserPath,
                "/mnt/scratch/hold",
            ),
        ),
        ev(t + MS, &cat, unref(F_MOD, fd(158, 3), RefHow::Close)),
        ev(t + MS + 2 * US, &cat, put(F_MOD, 2)),
        ev(
            t + 20 * MS,
            &um,
            Payload::UmountRet {
                mnt_id: 42,
                ret: -16,
                flags: 0,
                enter_ns: 0,
            },
        ),
        ev(
            t + 20 * MS + 5 * US,
            &um,
            umount("/mnt/scratch", 0, -16, t + 19 * MS),
        ),
        ev(t + 500 * MS, &mod_kw, start(MOD_WORK, MOD_PUT_FN)),
        ev(t + 500 * MS + 10 * US, &mod_kw, put(F_MOD, 1)),
        ev(
            t + 500 * MS + 12 * US,
            &mod_kw,
            armed(DELAYED_FPUT_WORK, DELAYED_FPUT),
        ),
        ev(t + 500 * MS + 20 * US, &mod_kw, end(MOD_WORK, MOD_PUT_FN)),
        ev(
            t + 504 * MS,
            &bare_fput_kw,
            queued(DELAYED_FPUT_WORK, DELAYED_FPUT),
        ),
        ev(
            t + 504 * MS + 30 * US,
            &bare_fput_kw,
            Payload::WorkFnEntered {
                which: tracer_fs::event::WorkFnKind::DelayedFput,
                work: DELAYED_FPUT_WORK,
            },
        ),
        ev(t + 504 * MS + 40 * US, &fput_kw, free(F_MOD, 42, 2)),
        ev(
            t + 504 * MS + 50 * US,
            &fput_kw,
            end(DELAYED_FPUT_WORK, DELAYED_FPUT),
        ),
        ev(
            t + S,
            &task(161, "umount"),
            Payload::UmountRet {
                mnt_id: 42,
                ret: 0,
                flags: 0,
                enter_ns: 0,
            },
        ),
        ev(
            t + S + 100 * US,
            &task(161, "umount"),
            Payload::MountCleanup { mnt_id: 42 },
        ),
        ev(
            t + S + 200 * US,
            &task(161, "umount"),
            umount("/mnt/scratch", 0, 0, t + S - 100 * US),
        ),
        ev(t + S + 500 * US, &tracer, table(vec![root()])),
    ]
}

#[test]
fn precise_tier_module_reference_through_delayed_fput() {
    let mut cfg = config();
    cfg.precise_release = true;
    let n = run_with("precise", cfg, &precise_stream());
    assert_eq!(n.len(), 3, "{n:#?}");
    let Notice::Verdict(v) = &n[0] else {
        panic!("{n:#?}")
    };
    // Not a pending release: the close's fput left a reference the tracer never saw.
    assert!(
        matches!(
            &v.culprits[0].holders[..],
            [HolderDesc::Unattributed {
                refs_left: Some(1),
                ..
            }]
        ),
        "{v:#?}"
    );
    let Notice::CulpritReleased(c) = &n[1] else {
        panic!("{n:#?}")
    };
    // delayed_fput ran, armed by the module's kworker, which also put the last reference.
    let roles: Vec<LinkRole> = c.chain.iter().map(|l| l.role).collect();
    assert_eq!(roles[0], LinkRole::Ran);
    assert!(c.chain.iter().any(|l| l.comm == "kworker/0:2"), "{c:#?}");
    assert!(!c.chain.iter().any(|l| l.comm == "cat"), "{c:#?}");
    let Notice::StoryClosed(s) = &n[2] else {
        panic!("{n:#?}")
    };
    assert_eq!(s.failed_attempts, 1);
}

/// (5) The TigerBeetle race: a flock held through a killed task's io_uring ring, the
/// parent's LOCK_NB retries until delayed_fput releases the file; then a blocking wait on a
/// live holder past the threshold.
#[test]
fn lock_held_by_a_dead_owners_ring() {
    use common::locks::*;
    use tracer_fs::event::{LockHook, LockSys};
    use tracer_fs::wire::lock_flags as lf;
    let mut events = dead_owner_stream(true);
    let parent = task(1100, "harness");
    let live = task(1300, "holder");
    let t = T0 + 4 * S;
    events.extend([
        ev(t, &live, {
            let Payload::FileRef(tracer_fs::event::FileRef {
                holder: _,
                how,
                mnt_id,
                dev,
                ino,
                name_kind,
                name,
                ..
            }) = opened(F, 1300, 4)
            else {
                unreachable!()
            };
            Payload::FileRef(tracer_fs::event::FileRef {
                file: F + 0x100,
                holder: fd(1300, 4),
                how,
                mnt_id,
                dev,
                ino,
                name_kind,
                name,
            })
        }),
        ev(
            t + MS,
            &parent,
            lock_ev(
                LockHook::Flock,
                MINE,
                MINE,
                lf::DEFERRED,
                lf::F_WRLCK,
                lf::FL_FLOCK | lf::FL_SLEEP,
                Some(tracer_fs::event::LockHolderRef {
                    file: F + 0x100,
                    owner: F + 0x100,
                    ..holder(1300, F)
                }),
            ),
        ),
        ev(
            t + 30 * MS,
            &live,
            lock_ev(
                LockHook::Flock,
                F + 0x100,
                F + 0x100,
                0,
                lf::F_UNLCK,
                lf::FL_FLOCK,
                None,
            ),
        ),
        ev(
            t + 30 * MS + 20 * US,
            &parent,
            Payload::LockCall {
                sys: LockSys::Flock,
                cmd: 2,
                fd: 3,
                ret: 0,
                enter_ns: t + MS - 5 * US,
            },
        ),
    ]);
    let n = run("lock_dead_owner", &events);
    let kinds: Vec<&str> = n
        .iter()
        .map(|n| match n {
            Notice::LockConflict(_) => "conflict",
            Notice::LockStillHeld(_) => "held",
            Notice::LockReleased(_) => "released",
            _ => "other",
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "conflict", "held", "held", "released", "conflict", "released"
        ]
    );
}
