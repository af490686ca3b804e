//! Per-concept tests of the engine: identities, holders, exits, rings, work chains, stories,
//! caps, and the views for the TUI.

mod common;

use common::*;
use tracer_fs::event::{Event, HolderRef, NameKind, Payload, RefHow};
use tracer_fs::files::{DropReason, FileState};
use tracer_fs::verdict::{DeferVia, HolderDesc, Notice};
use tracer_fs::work::{LinkRole, chain_text};
use tracer_fs::{Caps, Engine, EngineConfig};

const F1: u64 = 0xffff_8880_0000_1000;
const F2: u64 = 0xffff_8880_0000_2000;
const RING: u64 = 0xffff_8880_0456_0000;
const REQ: u64 = 0xffff_8880_0999_0000;

fn engine() -> Engine {
    engine_with(config())
}

fn open(ts: u64, pid: u32, file: u64, fdn: i32, ino: u64) -> Event {
    ev(
        ts,
        &task(pid, "p"),
        file_ref(
            file,
            fd(pid, fdn),
            RefHow::Open,
            42,
            ino,
            NameKind::UserPath,
            "/mnt/scratch/f",
        ),
    )
}

fn state(e: &Engine, file: u64) -> Option<FileState> {
    let k = e.files().alive(file)?;
    Some(e.files().get(k)?.state())
}

fn verdicts(n: &[Notice]) -> Vec<&tracer_fs::verdict::Verdict> {
    n.iter()
        .filter_map(|n| match n {
            Notice::Verdict(v) => Some(v),
            _ => None,
        })
        .collect()
}

#[test]
fn pointer_reuse_starts_a_new_generation() {
    let mut e = engine();
    apply(&mut e, &[open(T0 + 1, 10, F1, 3, 7)]);
    let k1 = e.files().alive(F1).unwrap();
    apply(
        &mut e,
        &[
            ev(T0 + 2, &task(10, "p"), unref(F1, fd(10, 3), RefHow::Close)),
            ev(T0 + 3, &task(10, "p"), free(F1, 42, 7)),
            open(T0 + 4, 10, F1, 3, 8),
        ],
    );
    let k2 = e.files().alive(F1).unwrap();
    assert_ne!(k1, k2);
    assert_eq!(e.files().get(k1).unwrap().state(), FileState::Released);
    assert_eq!(e.files().get(k2).unwrap().ino, 8);
    // the pointer shows up for another inode while we think it alive: the free was missed
    apply(&mut e, &[open(T0 + 5, 11, F1, 4, 9)]);
    let k3 = e.files().alive(F1).unwrap();
    assert_ne!(k2, k3);
    let old = e.files().get(k2).unwrap();
    assert!(!old.release.as_ref().unwrap().seen);
    assert!(old.holders.is_empty());
    assert_eq!(e.stats().files_lost, 1);
}

#[test]
fn unknown_files_are_counted_not_fatal() {
    let mut e = engine();
    apply(
        &mut e,
        &[
            ev(T0 + 1, &task(10, "p"), free(F1, 42, 7)),
            ev(T0 + 2, &task(10, "p"), free(F2, 42, 8)),
            ev(T0 + 3, &task(10, "p"), unref(F1, fd(10, 3), RefHow::Close)),
            ev(
                T0 + 4,
                &task(10, "p"),
                unref(
                    0,
                    HolderRef::UringReq {
                        ctx: RING,
                        req: REQ,
                    },
                    RefHow::UringReqDone,
                ),
            ),
            ev(T0 + 5, &task(10, "p"), free(0, 42, 8)),
        ],
    );
    let s = e.stats();
    assert_eq!(s.unknown_file_frees, 2);
    assert_eq!(s.unknown_file_frees_by_mount.get(&42), Some(&2));
    assert_eq!(s.unknown_file_unrefs, 1);
    assert_eq!(s.unref_holder_not_found, 1);
    assert_eq!(s.nonsense_events, 1);
    assert_eq!(
        e.mount_summaries()
            .iter()
            .find(|m| m.mount_id == 42)
            .unwrap()
            .unknown_frees,
        2
    );
    // a verdict then says invisible files exist on the mount
    let n = apply(
        &mut e,
        &[ev(
            T0 + 6,
            &task(2, "umount"),
            umount("/mnt/scratch", 0, -16, T0 + 6),
        )],
    );
    assert_eq!(verdicts(&n)[0].unattributed.unknown_frees_on_mount, 2);
    assert!(
        n[0].to_string()
            .contains("2 files on it freed that we never saw referenced")
    );
}

#[test]
fn request_holders_are_found_by_holder_when_the_file_is_unknown() {
    let mut e = engine();
    let req = HolderRef::UringReq {
        ctx: RING,
        req: REQ,
    };
    apply(
        &mut e,
        &[
            ev(T0 + 1, &task(10, "p"), uring_create(RING, 4)),
            ev(
                T0 + 2,
                &task(10, "p"),
                file_ref(F1, req, RefHow::UringFileGet, 42, 7, NameKind::Dentry, "f"),
            ),
            ev(
                T0 + 3,
                &task(10, "p"),
                file_ref(
                    F2,
                    HolderRef::UringReq {
                        ctx: RING,
                        req: REQ + 0x100,
                    },
                    RefHow::UringFileGet,
                    42,
                    8,
                    NameKind::Dentry,
                    "g",
                ),
            ),
        ],
    );
    let a = e.alive_on_mount(42);
    assert_eq!((a.files, a.in_flight.len()), (2, 2));
    apply(
        &mut e,
        &[ev(
            T0 + 4,
            &task(10, "p"),
            unref(0, req, RefHow::UringReqDone),
        )],
    );
    assert_eq!(state(&e, F1), Some(FileState::PendingRelease));
    // a completion record drops the other one
    apply(
        &mut e,
        &[ev(
            T0 + 5,
            &task(10, "p"),
            Payload::UringReqDone {
                ctx: RING,
                req: REQ + 0x100,
                res: 0,
                failed: false,
            },
        )],
    );
    assert_eq!(state(&e, F2), Some(FileState::PendingRelease));
    let a = e.alive_on_mount(42);
    assert_eq!((a.in_flight.len(), a.deferred_pending.len()), (0, 2));
    let HolderDesc::DeferredPut { via, last_drop, .. } = &a.deferred_pending[0].holders[0] else {
        panic!()
    };
    assert_eq!(*via, DeferVia::TaskWork);
    assert_eq!(last_drop.as_ref().unwrap().reason, DropReason::RequestDone);
}

#[test]
fn group_exit_closes_the_fd_table_but_not_the_ring() {
    let mut e = engine();
    apply(
        &mut e,
        &[
            open(T0 + 1, 10, F1, 3, 7),
            open(T0 + 2, 10, F2, 4, 8),
            ev(T0 + 3, &task(10, "p"), uring_create(RING, 5)),
            ev(
                T0 + 4,
                &task(10, "p"),
                file_ref(
                    F2,
                    HolderRef::UringFixed { ctx: RING },
                    RefHow::UringRegister,
                    42,
                    8,
                    NameKind::None,
                    "",
                ),
            ),
            // a thread exiting is not the process exiting
            ev(
                T0 + 5,
                &thread(11, 10, "p"),
                Payload::TaskExit {
                    exit_code: 0,
                    group_dead: false,
                    cwd_mnt: -1,
                    root_mnt: -1,
                },
            ),
        ],
    );
    assert_eq!(state(&e, F1), Some(FileState::Held));
    apply(&mut e, &[ev(T0 + 6, &task(10, "p"), exit(9))]);
    assert_eq!(state(&e, F1), Some(FileState::PendingRelease));
    assert_eq!(state(&e, F2), Some(FileState::Held));
    let f2 = e.files().get(e.files().alive(F2).unwrap()).unwrap();
    assert_eq!(
        f2.holders.keys().copied().collect::<Vec<_>>(),
        vec![HolderRef::UringFixed { ctx: RING }]
    );
    let sum = e
        .mount_summaries()
        .into_iter()
        .find(|m| m.mount_id == 42)
        .unwrap();
    assert_eq!(
        (
            sum.alive_files,
            sum.fd_tables,
            sum.uring_rings,
            sum.deferred_pending
        ),
        (2, 0, 1, 1)
    );
    // the free at exit comes from the dying task: task_work at exit
    let n = apply(
        &mut e,
        &[
            ev(
                T0 + 7,
                &task(2, "umount"),
                umount("/mnt/scratch", 0, -16, T0 + 7),
            ),
            ev(T0 + 8, &task(10, "p"), free(F1, 42, 7)),
        ],
    );
    let Notice::CulpritReleased(c) = &n[1] else {
        panic!("{n:#?}")
    };
    assert_eq!(
        chain_text(&c.chain),
        "task_work (____fput) of pid 10 (p) at exit"
    );
}

#[test]
fn a_release_by_its_own_process_closes_the_fd_whose_close_sent_no_record() {
    // The kernel side sends no record for a close of a file's only reference: the release
    // that follows from the closing task tells it. Another process's fd is not its to close.
    let mut e = engine();
    let um = task(2, "umount");
    apply(
        &mut e,
        &[
            open(T0 + 1, 10, F1, 3, 7),
            open(T0 + 2, 11, F2, 5, 8),
            ev(T0 + 3, &um, umount("/mnt/scratch", 0, -16, T0 + 3)),
        ],
    );
    let n = apply(
        &mut e,
        &[
            ev(T0 + 4, &task(10, "p"), free(F1, 42, 7)),
            ev(T0 + 5, &task(10, "p"), free(F2, 42, 8)),
        ],
    );
    let told: Vec<_> = n
        .iter()
        .filter_map(|x| match x {
            Notice::CulpritReleased(c) => Some(c),
            _ => None,
        })
        .collect();
    assert_eq!(told.len(), 2, "{n:#?}");
    let d = told[0].last_drop.as_ref().expect("F1's drop");
    assert_eq!(told[0].file.file, F1);
    assert_eq!(d.reason, DropReason::Close);
    assert_eq!(d.holder, fd(10, 3));
    assert_eq!(d.ts_ns, T0 + 4);
    assert!(
        d.words().starts_with("fd 3 closed by pid 10"),
        "{}",
        d.words()
    );
    assert_eq!(told[1].file.file, F2);
    assert!(told[1].last_drop.is_none(), "{:?}", told[1].last_drop);
}

#[test]
fn pid_reuse_is_a_new_process() {
    let mut e = engine();
    apply(
        &mut e,
        &[
            open(T0 + 1, 500, F1, 3, 7),
            ev(T0 + 2, &task(500, "p"), exit(0)),
        ],
    );
    let old = e.tasks().current(500).unwrap().serial;
    apply(
        &mut e,
        &[ev(
            T0 + 3,
            &task(500, "q"),
            file_ref(F2, fd(500, 3), RefHow::Open, 42, 8, NameKind::None, ""),
        )],
    );
    let new = e.tasks().current(500).unwrap();
    assert_ne!(new.serial, old);
    assert!(new.alive());
    assert!(!e.tasks().get(old).unwrap().alive());
    let a = e.alive_on_mount(42);
    let HolderDesc::Fd { task, .. } = &a.fd_tables[0].holders[0] else {
        panic!()
    };
    assert!(task.alive && task.comm == "q");
}

#[test]
fn a_reused_fd_slot_means_an_unseen_close() {
    let mut e = engine();
    apply(
        &mut e,
        &[open(T0 + 1, 10, F1, 3, 7), open(T0 + 2, 10, F2, 3, 8)],
    );
    assert_eq!(state(&e, F1), Some(FileState::Unattributed));
    assert_eq!(state(&e, F2), Some(FileState::Held));
    assert_eq!(e.stats().holder_slot_reused, 1);
    let a = e.alive_on_mount(42);
    assert_eq!(a.unattributed.len(), 1);
    let text = {
        let n = apply(
            &mut e,
            &[ev(
                T0 + 3,
                &task(2, "umount"),
                umount("/mnt/scratch", 0, -16, T0 + 3),
            )],
        );
        n[0].to_string()
    };
    assert!(
        text.contains("was reused for another file without a close we saw"),
        "{text}"
    );
    assert!(
        text.contains("1 alive file on it with no holder we can name"),
        "{text}"
    );
}

#[test]
fn verdict_outcomes_unknown_mount_unexplained_children_and_stacks() {
    let mut e = Engine::new(config());
    let um = task(2, "umount");
    let mut n = apply(&mut e, &[ev(T0, &um, umount("/mnt/nowhere", 0, -16, T0))]);
    let v = verdicts(&n)[0].clone();
    assert!(v.mount.is_none() && !v.unexplained);
    let t = n.remove(0).to_string();
    assert!(t.contains("not a mount we know"), "{t}");
    assert!(t.contains("no mount table was received"), "{t}");
    // stacked mounts at /mnt/scratch, a child mount under the top one
    apply(
        &mut e,
        &[ev(
            T0 + 1,
            &task(900, "tracer"),
            table(vec![
                root(),
                scratch(),
                mnt(43, 42, "/mnt/scratch", "tmpfs", "tmpfs", 0, 43),
                mnt(44, 43, "/mnt/scratch/sub", "tmpfs", "tmpfs", 0, 44),
                mnt(45, 21, "/mnt/empty", "tmpfs", "tmpfs", 0, 45),
            ]),
        )],
    );
    assert_eq!(e.mount_for_path("/mnt/scratch/").unwrap().id, 43);
    let n = apply(
        &mut e,
        &[
            ev(T0 + 2, &um, umount("/mnt/scratch", 0, -16, T0 + 2)),
            ev(T0 + 3, &um, umount("/mnt/empty", 0, -16, T0 + 3)),
        ],
    );
    let v = verdicts(&n);
    assert_eq!(v[0].mount.as_ref().unwrap().id, 43);
    assert_eq!(
        v[0].child_mounts.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![44]
    );
    assert!(!v[0].unexplained);
    assert!(v[1].unexplained);
    assert!(
        n[1].to_string()
            .contains("nothing traced explains this EBUSY")
    );
    // attempts are recorded on the mount
    assert_eq!(e.mounts().get(43).unwrap().umount_ebusy_total, 1);
}

/// The stream hands on a missed scan right before its failure's record: that verdict, and
/// only that one, says the scan could not run, and an unexplained one says what that hides.
#[test]
fn a_missed_scan_is_an_evidence_limit_of_its_own_verdict_only() {
    let mut e = engine();
    let um = task(2, "umount");
    let tracer = task(900, "tracer");
    let missed = |mnt_id: i32, target: &str| Payload::ScanMissed {
        mnt_id,
        target: target.into(),
        why: format!("the umount went through first: nothing was mounted at {target} any more"),
    };
    let n = apply(
        &mut e,
        &[
            ev(T0 + 1, &tracer, missed(-1, "/mnt/scratch/")),
            ev(T0 + 2, &um, umount("/mnt/scratch", 0, -16, T0 + 1)),
        ],
    );
    let v = verdicts(&n)[0].clone();
    assert!(v.unexplained);
    assert!(
        v.scan_missed
            .as_deref()
            .unwrap()
            .contains("went through first")
    );
    assert!(
        v.evidence_limits
            .iter()
            .any(|l| l
                .starts_with("no scan in time after this EBUSY (the umount went through first")),
        "{:?}",
        v.evidence_limits
    );
    let text = n[0].to_string();
    assert!(
        text.contains("no scan saw the mount in time after it"),
        "{text}"
    );

    // The next failure had its scan: no word of a missed one.
    let n = apply(
        &mut e,
        &[ev(T0 + 3, &um, umount("/mnt/scratch", 0, -16, T0 + 3))],
    );
    let v = verdicts(&n)[0];
    assert!(v.scan_missed.is_none());
    assert!(
        !v.evidence_limits
            .iter()
            .any(|l| l.contains("no scan after"))
    );

    // A miss for another mount, or one a successful umount followed, says nothing here.
    let n = apply(
        &mut e,
        &[
            ev(T0 + 4, &tracer, missed(77, "/mnt/other")),
            ev(T0 + 5, &um, umount("/mnt/scratch", 0, -16, T0 + 5)),
            ev(T0 + 6, &tracer, missed(42, "")),
            ev(T0 + 7, &um, umount("/mnt/scratch", 0, 0, T0 + 7)),
        ],
    );
    assert!(verdicts(&n).iter().all(|v| v.scan_missed.is_none()));
    apply(
        &mut e,
        &[ev(T0 + 8, &tracer, table(vec![root(), scratch()]))],
    );
    let n = apply(
        &mut e,
        &[ev(T0 + 9, &um, umount("/mnt/scratch", 0, -16, T0 + 9))],
    );
    assert!(verdicts(&n)[0].scan_missed.is_none());
}

/// The last pin can go between the umount's check and its failure's record (a killed
/// task's exit closing its files while the umount runs): a file released after the
/// umount's entry is named as released during it, and its story hears of its release.
#[test]
fn a_file_released_while_the_umount_ran_is_named_by_its_verdict() {
    let mut e = engine();
    let um = task(2, "umount");
    let n = apply(
        &mut e,
        &[
            open(T0 + 1, 10, F1, 3, 7),
            open(T0 + 2, 10, F2, 4, 8),
            ev(T0 + 3, &task(10, "p"), unref(F2, fd(10, 4), RefHow::Close)),
            ev(T0 + 4, &task(10, "p"), free(F2, 42, 8)),
            ev(T0 + 5, &task(10, "p"), unref(F1, fd(10, 3), RefHow::Close)),
            // umount(2) entered at T0 + 5 + 1 µs; F1 goes before its failure comes.
            ev(T0 + 5 + 2 * US, &task(10, "p"), free(F1, 42, 7)),
            ev(
                T0 + 5 + 3 * US,
                &um,
                umount("/mnt/scratch", 0, -16, T0 + 5 + US),
            ),
        ],
    );
    let v = verdicts(&n)[0].clone();
    assert!(!v.unexplained, "{}", n[0]);
    assert!(v.culprits.is_empty());
    // F2 went before the umount started: not a candidate.
    assert_eq!(
        v.released_during
            .iter()
            .map(|r| r.file.id.file)
            .collect::<Vec<_>>(),
        vec![F1]
    );
    assert_eq!(v.released_during[0].released_ns, T0 + 5 + 2 * US);
    let text = n
        .iter()
        .find(|x| matches!(x, Notice::Verdict(_)))
        .unwrap()
        .to_string();
    assert!(text.contains("released while the umount ran"), "{text}");
    assert!(text.contains("/mnt/scratch/f"), "{text}");
    let told: Vec<_> = n
        .iter()
        .filter_map(|x| match x {
            Notice::CulpritReleased(c) => Some(c),
            _ => None,
        })
        .collect();
    assert_eq!(told.len(), 1);
    assert_eq!(told[0].file.file, F1);

    // A second failure lists it again but does not tell the story twice; the success
    // closes the story with its one culprit released.
    let n = apply(
        &mut e,
        &[
            ev(T0 + 6, &um, umount("/mnt/scratch", 0, -16, T0 + 5 + US)),
            ev(T0 + 7, &um, umount("/mnt/scratch", 0, 0, T0 + 7)),
        ],
    );
    assert!(!n.iter().any(|x| matches!(x, Notice::CulpritReleased(_))));
    let closed = n
        .iter()
        .find_map(|x| match x {
            Notice::StoryClosed(s) => Some(s),
            _ => None,
        })
        .unwrap();
    assert_eq!(closed.culprits_total, 1);
    assert_eq!(closed.culprits_released, 1);
}

#[test]
fn evidence_limits_name_missing_hooks() {
    let cfg = EngineConfig {
        missing_hooks: vec!["kprobe:fput".into(), "fentry:__fput".into()],
        ring_exit_work_offset: None,
        ..config()
    };
    let mut e = Engine::new(cfg);
    e.add_evidence_limit("ring buffer lost 3 records");
    let n = apply(
        &mut e,
        &[
            ev(T0, &task(900, "tracer"), table(vec![root(), scratch()])),
            ev(
                T0 + 1,
                &task(2, "umount"),
                umount("/mnt/scratch", 0, -16, T0),
            ),
        ],
    );
    let v = verdicts(&n)[0];
    assert_eq!(v.evidence_limits[0], "hook not attached: kprobe:fput");
    assert_eq!(v.evidence_limits[1], "hook not attached: fentry:__fput");
    assert_eq!(v.evidence_limits[2], "ring buffer lost 3 records");
    assert!(v.evidence_limits.iter().any(|l| l.contains("snapshot")));
    assert!(v.evidence_limits.iter().any(|l| l.contains("exit_work")));
    assert_eq!(e.stats().missing_hooks.len(), 2);
}

#[test]
fn work_latency_and_run_time_per_function() {
    let mut e = engine();
    let w = RING + EXIT_WORK_OFF;
    let kw = kworker(77, "kworker/u8:3", w, IO_RING_EXIT_WORK);
    apply(
        &mut e,
        &[
            ev(T0 + MS, &task(10, "p"), queued(w, IO_RING_EXIT_WORK)),
            ev(T0 + 3 * MS, &kw, start(w, IO_RING_EXIT_WORK)),
            ev(T0 + 10 * MS, &kw, end(w, IO_RING_EXIT_WORK)),
            ev(
                T0 + 20 * MS,
                &task(10, "p"),
                queued(w + 0x1000, IO_RING_EXIT_WORK),
            ),
        ],
    );
    let s = e.work_summaries();
    assert_eq!(s.len(), 1);
    let s = &s[0];
    assert_eq!(s.name, "io_ring_exit_work");
    assert_eq!(
        (s.counters.queued, s.counters.started, s.counters.ended),
        (2, 1, 1)
    );
    assert_eq!(
        (s.counters.latency.last_ns, s.counters.run.worst_ns),
        (2 * MS, 7 * MS)
    );
    assert_eq!(
        (s.waiting_now, s.running_now, s.oldest_waiting_since_ns),
        (1, 0, Some(T0 + 20 * MS))
    );
    let line = s.to_string();
    assert!(
        line.contains("queue→start last 2.0ms") && line.contains("run last 7.0ms"),
        "{line}"
    );
}

/// Without the BTF offset, a ring's exit work is matched to the ring by its queuer (the
/// owner) and still tears the ring down when it ends.
#[test]
fn exit_work_without_offset_is_learnt_from_the_owner() {
    let mut e = Engine::new(EngineConfig {
        ring_exit_work_offset: None,
        ..config()
    });
    let w = 0xffff_8880_7777_0000;
    let kw = kworker(77, "kworker/u8:3", w, IO_RING_EXIT_WORK);
    apply(
        &mut e,
        &[
            ev(T0, &task(900, "tracer"), table(vec![root(), scratch()])),
            ev(T0 + 1, &task(10, "p"), uring_create(RING, 4)),
            ev(
                T0 + 2,
                &task(10, "p"),
                file_ref(
                    F1,
                    HolderRef::UringFixed { ctx: RING },
                    RefHow::UringRegister,
                    42,
                    7,
                    NameKind::None,
                    "",
                ),
            ),
            ev(T0 + 3, &task(10, "p"), exit(9)),
            ev(T0 + 4, &task(10, "p"), queued(w, IO_RING_EXIT_WORK)),
            ev(T0 + 5, &kw, start(w, IO_RING_EXIT_WORK)),
        ],
    );
    assert_eq!(
        e.rings()
            .get(RING)
            .unwrap()
            .exit_work
            .started
            .as_ref()
            .unwrap()
            .comm,
        "kworker/u8:3"
    );
    apply(&mut e, &[ev(T0 + 6, &kw, end(w, IO_RING_EXIT_WORK))]);
    assert_eq!(state(&e, F1), Some(FileState::PendingRelease));
    assert!(e.rings().get(RING).is_none());
    assert!(e.rings().retired().next().unwrap().teardown_seen);
}

/// Requests of a dead task complete in io_uring's fallback work (a delayed work the dying
/// task armed); the kworker's put goes through delayed_fput.
#[test]
fn fallback_work_chain() {
    let mut e = engine();
    let fb = RING + FALLBACK_WORK_OFF;
    let fb_kw = kworker(66, "kworker/u8:1", fb, IO_FALLBACK_REQ_FUNC);
    let fput_kw = kworker(88, "kworker/1:2", DELAYED_FPUT_WORK, DELAYED_FPUT);
    let fsstress = task(1234, "fsstress");
    let req = HolderRef::UringReq {
        ctx: RING,
        req: REQ,
    };
    let n = apply(
        &mut e,
        &[
            ev(T0 + 1, &fsstress, uring_create(RING, 4)),
            ev(
                T0 + 2,
                &fsstress,
                file_ref(
                    F1,
                    req,
                    RefHow::UringFileGet,
                    42,
                    7,
                    NameKind::UserPath,
                    "/mnt/scratch/f",
                ),
            ),
            ev(T0 + 3, &task(1100, "bash"), sigkill(1234, "fsstress")),
            ev(T0 + 4, &fsstress, exit(9)),
            ev(T0 + 5, &fsstress, armed(fb, IO_FALLBACK_REQ_FUNC)),
            ev(
                T0 + 6,
                &task(2, "umount"),
                umount("/mnt/scratch", 0, -16, T0 + 6),
            ),
            ev(
                T0 + 7,
                &task(0, "swapper/3"),
                queued(fb, IO_FALLBACK_REQ_FUNC),
            ),
            ev(T0 + 8, &fb_kw, start(fb, IO_FALLBACK_REQ_FUNC)),
            ev(
                T0 + 9,
                &fb_kw,
                Payload::UringReqDone {
                    ctx: RING,
                    req: REQ,
                    res: -125,
                    failed: true,
                },
            ),
            ev(T0 + 10, &fb_kw, armed(DELAYED_FPUT_WORK, DELAYED_FPUT)),
            ev(T0 + 11, &fb_kw, end(fb, IO_FALLBACK_REQ_FUNC)),
            ev(
                T0 + 12,
                &task(0, "swapper/1"),
                queued(DELAYED_FPUT_WORK, DELAYED_FPUT),
            ),
            ev(T0 + 13, &fput_kw, start(DELAYED_FPUT_WORK, DELAYED_FPUT)),
            ev(T0 + 14, &fput_kw, free(F1, 42, 7)),
        ],
    );
    let v = verdicts(&n)[0];
    let HolderDesc::UringReq { ring, .. } = &v.culprits[0].holders[0] else {
        panic!("{v:#?}")
    };
    assert!(!ring.owner.as_ref().unwrap().alive);
    let Some(Notice::CulpritReleased(c)) = n.last() else {
        panic!("{n:#?}")
    };
    assert_eq!(
        chain_text(&c.chain),
        format!(
            "delayed_fput (kworker/1:2) ← armed by io_fallback_req_func (kworker/u8:1) for ring {RING:#x} ← armed by pid 1234 (fsstress) at exit"
        )
    );
    assert_eq!(e.rings().get(RING).unwrap().fallback_work.runs, 1);
}

#[test]
fn chains_say_what_was_not_seen() {
    let mut e = engine();
    let fput_kw = kworker(88, "kworker/1:2", DELAYED_FPUT_WORK, DELAYED_FPUT);
    // delayed_fput queued by its timer, arming not seen; the file's drop not seen either
    let n = apply(
        &mut e,
        &[
            open(T0 + 1, 10, F1, 3, 7),
            ev(
                T0 + 2,
                &task(2, "umount"),
                umount("/mnt/scratch", 0, -16, T0 + 2),
            ),
            ev(
                T0 + 3,
                &task(0, "swapper/1"),
                queued(DELAYED_FPUT_WORK, DELAYED_FPUT),
            ),
            ev(T0 + 4, &fput_kw, start(DELAYED_FPUT_WORK, DELAYED_FPUT)),
            ev(T0 + 5, &fput_kw, free(F1, 42, 7)),
        ],
    );
    let Notice::CulpritReleased(c) = &n[1] else {
        panic!("{n:#?}")
    };
    assert_eq!(
        c.chain.iter().map(|l| l.role).collect::<Vec<_>>(),
        vec![LinkRole::Ran, LinkRole::QueuedByTimer]
    );
    // a run whose queueing was never seen
    let other = kworker(89, "kworker/0:1", 0x1234, 0xffff_ffff_8100_0000);
    let n = apply(
        &mut e,
        &[
            open(T0 + 6, 10, F2, 4, 8),
            ev(
                T0 + 7,
                &task(2, "umount"),
                umount("/mnt/scratch", 0, -16, T0 + 7),
            ),
            ev(T0 + 8, &other, start(0x1234, 0xffff_ffff_8100_0000)),
            ev(T0 + 9, &other, free(F2, 42, 8)),
        ],
    );
    let Some(Notice::CulpritReleased(c)) = n.last() else {
        panic!("{n:#?}")
    };
    assert_eq!(
        chain_text(&c.chain),
        "0xffffffff81000000 (kworker/0:1) ← (who queued it was not seen)"
    );
}

#[test]
fn ring_pointer_reuse_drops_old_holders_unseen() {
    let mut e = engine();
    apply(
        &mut e,
        &[
            ev(T0 + 1, &task(10, "p"), uring_create(RING, 4)),
            ev(
                T0 + 2,
                &task(10, "p"),
                file_ref(
                    F1,
                    HolderRef::UringFixed { ctx: RING },
                    RefHow::UringRegister,
                    42,
                    7,
                    NameKind::None,
                    "",
                ),
            ),
            ev(T0 + 3, &task(20, "q"), uring_create(RING, 4)),
        ],
    );
    assert_eq!(state(&e, F1), Some(FileState::Unattributed));
    assert_eq!(e.rings().get(RING).unwrap().owner_tgid, Some(20));
}

#[test]
fn mount_id_reuse_means_its_files_were_freed_unseen() {
    let mut e = engine();
    apply(&mut e, &[open(T0 + 1, 10, F1, 3, 7)]);
    apply(
        &mut e,
        &[ev(
            T0 + 2,
            &task(900, "tracer"),
            table(vec![
                root(),
                mnt(42, 21, "/mnt/other", "ext4", "/dev/loop2", 7, 2),
            ]),
        )],
    );
    assert_eq!(e.files().alive(F1), None);
    assert_eq!(e.stats().files_lost, 1);
    assert_eq!(e.stats().mount_ids_reused, 1);
}

#[test]
fn lazy_umount_story_and_detached_mount() {
    let mut e = engine();
    let um = task(2, "umount");
    let n = apply(
        &mut e,
        &[
            open(T0 + 1, 10, F1, 3, 7),
            ev(T0 + 2, &um, umount("/mnt/scratch", 0, -16, T0 + 2)),
            ev(T0 + 3, &um, umount("/mnt/scratch", 2, 0, T0 + 3)),
            ev(T0 + 4, &task(900, "tracer"), table(vec![root()])),
        ],
    );
    let Notice::StoryClosed(s) = &n[1] else {
        panic!("{n:#?}")
    };
    assert!(s.lazy);
    assert_eq!(s.still_pinned_by, 1);
    assert!(
        n[1].to_string()
            .contains("detached but still pinned by 1 open file")
    );
    assert!(matches!(&n[2], Notice::MountDetachedPinned(d) if d.files.len() == 1));
    let m = e
        .mount_summaries()
        .into_iter()
        .find(|m| m.mount_id == 42)
        .unwrap();
    assert!(m.detached);
    let n = apply(
        &mut e,
        &[
            ev(T0 + 5, &task(10, "p"), unref(F1, fd(10, 3), RefHow::Close)),
            ev(T0 + 6, &task(10, "p"), free(F1, 42, 7)),
        ],
    );
    assert!(
        matches!(&n[..], [Notice::DetachedMountUnpinned(u)] if u.mount.id == 42 && u.ts_ns == T0 + 6)
    );
    assert!(e.mounts().get(42).is_none());
    assert_eq!(e.mounts().history().last().unwrap().gone_ns, Some(T0 + 6));
}

#[test]
fn caps_evict_released_first_and_are_counted() {
    let mut e = Engine::new(EngineConfig {
        caps: Caps {
            max_files: 3,
            max_released_files: 8,
            max_work_instances: 2,
            max_verdicts: 1,
            max_tasks: 2,
            max_rings: 1,
            max_mount_history: 1,
        },
        ..config()
    });
    let mut evs = vec![ev(T0, &task(900, "tracer"), table(vec![root(), scratch()]))];
    for i in 0..3u64 {
        evs.push(open(T0 + 10 * i + 1, 10 + i as u32, F1 + i * 0x100, 3, i));
    }
    evs.push(ev(
        T0 + 40,
        &task(10, "p"),
        unref(F1, fd(10, 3), RefHow::Close),
    ));
    evs.push(ev(T0 + 41, &task(10, "p"), free(F1, 42, 0)));
    // the 4th file evicts the released one, the 5th the oldest alive one
    evs.push(open(T0 + 50, 13, F1 + 0x300, 3, 3));
    evs.push(open(T0 + 51, 14, F1 + 0x400, 3, 4));
    for i in 0..3u64 {
        evs.push(ev(
            T0 + 60 + i,
            &task(10, "p"),
            queued(0x100 * (i + 1), DELAYED_FPUT),
        ));
        evs.push(ev(
            T0 + 70 + i,
            &task(10, "p"),
            uring_create(RING + i * 0x1000, 4),
        ));
        evs.push(ev(
            T0 + 80 + i,
            &task(2, "umount"),
            umount("/mnt/scratch", 0, -16, T0),
        ));
    }
    apply(&mut e, &evs);
    let s = e.stats();
    assert!(e.files().len() <= 3 && e.work().len() <= 2 && e.verdicts().count() <= 1);
    assert!(e.tasks().len() <= 2 && e.rings().len() <= 1);
    assert_eq!(s.evicted_files_alive, 1, "{s:#?}");
    assert_eq!(s.evicted_files_released, 1, "{s:#?}");
    assert_eq!(s.evicted_work_active, 1);
    assert_eq!(s.evicted_verdicts, 2);
    assert!(s.evicted_tasks >= 2 && s.evicted_rings == 2);
    let v = e.verdicts().next().unwrap();
    assert!(
        v.evidence_limits.iter().any(|l| l.contains("evicted")),
        "{v:#?}"
    );
    assert!(s.to_string().contains("objects evicted"));
}

#[test]
fn summaries_display_plain_words() {
    let mut e = engine();
    apply(&mut e, &[open(T0 + 1, 10, F1, 3, 7)]);
    let line = e
        .mount_summaries()
        .into_iter()
        .find(|m| m.mount_id == 42)
        .unwrap()
        .to_string();
    assert_eq!(
        line,
        "mount 42: xfs /dev/loop1 on /mnt/scratch: 1 alive file (fd 1, ring 0, in-flight 0, deferred 0, unattributed 0)"
    );
    // files on a mount the table never showed get a summary too
    apply(
        &mut e,
        &[ev(
            T0 + 2,
            &task(10, "p"),
            file_ref(F2, fd(10, 4), RefHow::Open, 99, 1, NameKind::None, ""),
        )],
    );
    let s = e
        .mount_summaries()
        .into_iter()
        .find(|m| m.mount_id == 99)
        .unwrap();
    assert!(s.mount.is_none());
    assert_eq!(
        s.to_string(),
        "mount 99 (not in the mount table): 1 alive file (fd 1, ring 0, in-flight 0, deferred 0, unattributed 0)"
    );
}

#[test]
fn a_file_freed_unseen_on_a_busy_mount_is_reported() {
    let mut e = engine();
    let n = apply(
        &mut e,
        &[
            ev(
                T0 + 1,
                &task(2, "umount"),
                umount("/mnt/scratch", 0, -16, T0 + 1),
            ),
            ev(
                T0 + 2,
                &kworker(88, "kworker/1:2", DELAYED_FPUT_WORK, DELAYED_FPUT),
                free(F1, 42, 77),
            ),
            ev(
                T0 + 3,
                &task(2, "umount"),
                umount("/mnt/scratch", 0, 0, T0 + 3),
            ),
        ],
    );
    let Notice::CulpritReleased(c) = &n[1] else {
        panic!("{n:#?}")
    };
    assert!(!c.listed);
    assert!(
        n[1].to_string()
            .starts_with("a file we never saw referenced was released on the mount")
    );
    let Notice::StoryClosed(s) = &n[2] else {
        panic!("{n:#?}")
    };
    assert_eq!(s.unlisted_released, 1);
}

#[test]
fn leader_exit_counts_as_group_exit_when_the_kernel_cannot_say() {
    let run = |unknown: bool| {
        let mut e = Engine::new(EngineConfig {
            exit_group_dead_unknown: unknown,
            ..config()
        });
        apply(
            &mut e,
            &[
                ev(T0, &task(900, "tracer"), table(vec![root(), scratch()])),
                open(T0 + 1, 10, F1, 3, 7),
                // a non-leader thread exits first: never the process exit
                ev(
                    T0 + 2,
                    &thread(11, 10, "p"),
                    Payload::TaskExit {
                        exit_code: 9,
                        group_dead: false,
                        cwd_mnt: -1,
                        root_mnt: -1,
                    },
                ),
            ],
        );
        assert_eq!(state(&e, F1), Some(FileState::Held));
        apply(
            &mut e,
            &[ev(
                T0 + 3,
                &task(10, "p"),
                Payload::TaskExit {
                    exit_code: 9,
                    group_dead: false,
                    cwd_mnt: -1,
                    root_mnt: -1,
                },
            )],
        );
        state(&e, F1)
    };
    assert_eq!(run(false), Some(FileState::Held));
    assert_eq!(run(true), Some(FileState::PendingRelease));
}

/// The timer that queues a delayed work may interrupt a kworker running something else:
/// that kworker is not who asked for it.
#[test]
fn a_timer_interrupting_a_kworker_is_not_the_asker() {
    let mut e = engine();
    let busy = kworker(55, "kworker/1:0", 0x4444, 0xffff_ffff_8100_0000);
    let fput_kw = kworker(88, "kworker/1:2", DELAYED_FPUT_WORK, DELAYED_FPUT);
    let n = apply(
        &mut e,
        &[
            open(T0 + 1, 10, F1, 3, 7),
            ev(
                T0 + 2,
                &task(2, "umount"),
                umount("/mnt/scratch", 0, -16, T0 + 2),
            ),
            ev(T0 + 3, &busy, queued(DELAYED_FPUT_WORK, DELAYED_FPUT)),
            ev(T0 + 4, &fput_kw, start(DELAYED_FPUT_WORK, DELAYED_FPUT)),
            ev(T0 + 5, &fput_kw, free(F1, 42, 7)),
        ],
    );
    let Notice::CulpritReleased(c) = &n[1] else {
        panic!("{n:#?}")
    };
    assert_eq!(
        chain_text(&c.chain),
        "delayed_fput (kworker/1:2) ← queued by its timer (who armed it was not seen)"
    );
}

/// A long run of a static delayed work and of file churn stays bounded (and linear: the
/// work history of one pointer is scanned from its cheap end).
#[test]
fn long_runs_stay_bounded() {
    let mut e = Engine::new(EngineConfig {
        caps: Caps {
            max_files: 5_000,
            max_work_instances: 5_000,
            ..Caps::default()
        },
        ..config()
    });
    e.apply(&ev(
        T0,
        &task(900, "tracer"),
        table(vec![root(), scratch()]),
    ));
    let fput_kw = kworker(88, "kworker/1:2", DELAYED_FPUT_WORK, DELAYED_FPUT);
    let started = std::time::Instant::now();
    for i in 0..30_000u64 {
        let t = T0 + i * 10 * US;
        let f = 0xffff_8880_1000_0000 + (i % 20_000) * 0x100;
        e.apply(&open(t, 10, f, 3, i));
        e.apply(&ev(
            t + 1,
            &task(10, "p"),
            unref(f, fd(10, 3), RefHow::Close),
        ));
        e.apply(&ev(
            t + 2,
            &task(0, "swapper/1"),
            queued(DELAYED_FPUT_WORK, DELAYED_FPUT),
        ));
        e.apply(&ev(t + 3, &fput_kw, start(DELAYED_FPUT_WORK, DELAYED_FPUT)));
        e.apply(&ev(t + 4, &fput_kw, free(f, 42, i)));
        e.apply(&ev(t + 5, &fput_kw, end(DELAYED_FPUT_WORK, DELAYED_FPUT)));
    }
    e.check_invariants().unwrap();
    assert!(e.files().len() <= 5_000 && e.work().len() <= 5_000);
    assert_eq!(e.files().alive_len(), 0);
    let s = e.stats();
    assert_eq!((s.unknown_file_frees, s.files_lost), (0, 0));
    assert_eq!(s.evicted_files_released, 25_000);
    assert_eq!(s.evicted_work_done, 25_000);
    let w = &e.work_summaries()[0];
    assert_eq!(
        (w.counters.started, w.counters.ended, w.waiting_now),
        (30_000, 30_000, 0)
    );
    // generous: a quadratic scan would take minutes here
    assert!(started.elapsed().as_secs() < 60, "{:?}", started.elapsed());
}

/// The stream's order when the ring buffer lags: a mount made, used and unmounted before
/// its records are drained. The watcher's `MountsAppeared` (read when the table changed)
/// comes ahead of the records; the whole table only after them, without the mount.
#[test]
fn a_mount_seen_ahead_of_its_records_explains_them() {
    let mut e = Engine::new(config());
    let tracer = task(900, "tracer");
    let p = task(7, "fsstress");
    let um = task(8, "umount");
    let m50 = mnt(50, 21, "/mnt/test", "tmpfs", "tmpfs", 0, 50);
    let f = 0xffff_8880_0a00_0100;
    let n = apply(
        &mut e,
        &[
            ev(T0, &tracer, table(vec![root()])),
            ev(
                T0 + 9 * MS,
                &tracer,
                Payload::MountsAppeared {
                    mounts: vec![m50.clone()],
                },
            ),
            ev(
                T0 + MS,
                &p,
                mount("tmpfs", "/mnt/test", "tmpfs", 0, T0 + MS),
            ),
            ev(
                T0 + 2 * MS,
                &p,
                file_ref(
                    f,
                    fd(7, 3),
                    RefHow::Open,
                    50,
                    2,
                    NameKind::UserPath,
                    "/mnt/test/a",
                ),
            ),
            ev(T0 + 3 * MS, &um, umount("/mnt/test", 0, -16, T0 + 3 * MS)),
            ev(T0 + 4 * MS, &p, unref(f, fd(7, 3), RefHow::Close)),
            ev(T0 + 5 * MS, &p, free(f, 50, 2)),
            ev(T0 + 6 * MS, &um, umount("/mnt/test", 0, 0, T0 + 6 * MS)),
            ev(T0 + 10 * MS, &tracer, table(vec![root()])),
        ],
    );
    let v = verdicts(&n);
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].mount.as_ref().unwrap().id, 50);
    assert!(!v[0].unexplained, "{}", n[0]);
    assert!(n[0].to_string().contains("/mnt/test/a"), "{}", n[0]);
    assert!(e.mounts().get(50).is_none());
    assert!(e.mounts().history().any(|m| m.id == 50));
}

/// The fd scan after a failed umount adds holders no hook showed and leaves traced ones
/// as they were.
#[test]
fn a_rescan_adds_unseen_holders_and_keeps_traced_ones() {
    let mut e = engine();
    let f = 0xffff_8880_0b00_0200;
    let scan = |ts, tgid, fdn| {
        ev(
            ts,
            &task(900, "tracer"),
            file_ref(
                f,
                fd(tgid, fdn),
                RefHow::Rescan,
                42,
                5,
                NameKind::Dentry,
                "f",
            ),
        )
    };
    apply(&mut e, &[open(T0 + MS, 7, f, 3, 5)]);
    apply(&mut e, &[scan(T0 + 5 * MS, 7, 3), scan(T0 + 5 * MS, 8, 57)]);
    let k = e.files().alive(f).unwrap();
    let file = e.files().get(k).unwrap();
    let traced = &file.holders[&fd(7, 3)];
    assert_eq!((traced.how, traced.since_ns), (RefHow::Open, T0 + MS));
    assert_eq!(file.holders[&fd(8, 57)].how, RefHow::Rescan);
    assert_eq!(file.first_how, RefHow::Open);
    assert_eq!(e.stats().rescan_found, 1);
    let n = apply(
        &mut e,
        &[ev(
            T0 + 6 * MS,
            &task(2, "umount"),
            umount("/mnt/scratch", 0, -16, T0 + 6 * MS),
        )],
    );
    let t = n[0].to_string();
    assert!(t.contains("fd 57 of pid 8"), "{t}");
    assert!(t.contains("found by an fd scan"), "{t}");
}

/// A killed process past its exit tracepoint still holds its fds and cwd (it may wait in
/// `exit_aio` for long): the verdict names it exiting, with where it waits; the fds go at
/// its fd table's free, the cwd at its fs_struct's free, each told to the story; a retry
/// with nothing new is a short repeat.
#[test]
fn an_exiting_process_holds_its_fds_and_cwd_until_its_exit_releases_them() {
    let mut cfg = config();
    cfg.exit_resources_seen = true;
    let mut e = Engine::new(cfg);
    let w = task(500, "fsstress");
    let mut n = apply(
        &mut e,
        &[
            ev(T0, &task(900, "tracer"), table(vec![root(), scratch()])),
            open(T0 + MS, 500, F1, 3, 131),
            ev(
                T0 + 2 * MS,
                &task(77, "pkill"),
                Payload::Signal {
                    sig: 9,
                    result: 0,
                    target_pid: 500,
                    group: true,
                    target_comm: "fsstress".into(),
                },
            ),
            ev(
                T0 + 3 * MS,
                &w,
                Payload::TaskExit {
                    exit_code: 0,
                    group_dead: true,
                    cwd_mnt: -1,
                    root_mnt: -1,
                },
            ),
            // the task scan after the EBUSY (before the umount's record, as the tracer
            // hands them on), then the umount
            ev(
                T0 + 5 * MS,
                &w,
                Payload::TaskSeen {
                    task: tracer_fs::event::ScannedTask {
                        exiting: true,
                        zombie: false,
                        state: 2,
                        cwd_mnt: 42,
                        root_mnt: 1,
                        has_files: true,
                        has_fs: true,
                        has_mm: true,
                        stack: vec![
                            "__schedule+0x1".into(),
                            "exit_aio+0x117".into(),
                            "__mmput+0x15".into(),
                            "do_exit+0x2a4".into(),
                        ],
                    },
                },
            ),
            ev(
                T0 + 5 * MS,
                &task(900, "tracer"),
                Payload::PinScanDone {
                    started_ns: T0 + 5 * MS,
                    mounts: vec![42],
                },
            ),
            ev(
                T0 + 4 * MS,
                &task(600, "umount"),
                umount("/mnt/scratch", 0, -16, T0 + 4 * MS),
            ),
            ev(
                T0 + 6 * MS,
                &task(601, "umount"),
                umount("/mnt/scratch", 0, -16, T0 + 6 * MS),
            ),
        ],
    );
    let v = verdicts(&n);
    assert_eq!(v.len(), 2, "{n:#?}");
    assert!(!v[0].unexplained);
    assert_eq!(v[0].task_pins.len(), 1);
    assert!(v[0].task_pins[0].task.exiting);
    let HolderDesc::Fd { task: owner, .. } = &v[0].culprits[0].holders[0] else {
        panic!("{:#?}", v[0].culprits)
    };
    assert!(owner.exiting, "{owner:?}");
    let text = v[0].to_string();
    assert!(
        text.contains("waits in exit_aio ← __mmput ← do_exit (D)"),
        "{text}"
    );
    assert!(
        text.contains("killed by SIGKILL from pid 77 (pkill)"),
        "{text}"
    );
    assert!(v[1].repeat && v[1].to_string().contains("nothing new"));
    assert!(!v[1].to_string().contains("exit_aio"));
    // exit_files(): the fd goes, the file waits for the task's own task_work
    n = apply(
        &mut e,
        &[ev(
            T0 + 30 * MS,
            &w,
            Payload::TaskResFreed {
                what: tracer_fs::event::TaskRes::Files,
                ptr: 1,
            },
        )],
    );
    assert!(n.is_empty(), "{n:#?}");
    assert_eq!(state(&e, F1), Some(FileState::PendingRelease));
    // exit_fs(): the cwd goes, and the story hears of it
    n = apply(
        &mut e,
        &[ev(
            T0 + 31 * MS,
            &w,
            Payload::TaskResFreed {
                what: tracer_fs::event::TaskRes::Fs,
                ptr: 2,
            },
        )],
    );
    let Some(Notice::PinReleased(p)) = n.first() else {
        panic!("{n:#?}")
    };
    assert!(p.seen);
    assert_eq!((p.task.pid, p.pins_alive, p.culprits_alive), (500, 0, 1));
    assert!(p.to_string().contains("exit_fs()"), "{p}");
}

/// generic/388 with SIGKILL: a worker the SIGKILL has not stopped yet is inside a rename,
/// whose two parent paths hold the mount beyond its cwd. The scan reads its stack, the
/// verdict names the syscall, and the count's gap is set beside it.
#[test]
fn a_holder_inside_a_syscall_is_named_beside_the_references_it_may_hold() {
    let mut e = Engine::new(config());
    let w = task(500, "fsstress");
    let tracer = task(900, "tracer");
    let scanned = |cwd_mnt: i32, stack: &[&str]| Payload::TaskSeen {
        task: tracer_fs::event::ScannedTask {
            exiting: false,
            zombie: false,
            state: 2,
            cwd_mnt,
            root_mnt: 21,
            has_files: true,
            has_fs: true,
            has_mm: true,
            stack: stack.iter().map(|f| f.to_string()).collect(),
        },
    };
    let rename = [
        "__schedule+0x1",
        "xfs_ilock+0x5a",
        "xfs_rename+0x10c",
        "vfs_rename+0x3b2",
        "do_renameat2+0x411",
        "__x64_sys_renameat2+0x4c",
        "do_syscall_64+0x7d",
    ];
    let refs = |count| Payload::MountRefs {
        mnt_id: 42,
        count,
        cpus: 2,
        cpus_possible: 2,
    };
    let n = apply(
        &mut e,
        &[
            ev(T0, &tracer, table(vec![root(), scratch()])),
            ev(
                T0 + MS,
                &task(77, "pkill"),
                Payload::Signal {
                    sig: 9,
                    result: 0,
                    target_pid: 500,
                    group: true,
                    target_comm: "fsstress".into(),
                },
            ),
            // another process in a syscall, its cwd elsewhere: not counted on 42
            ev(T0 + 3 * MS, &task(501, "cat"), scanned(21, &rename)),
            ev(T0 + 3 * MS, &w, scanned(42, &rename)),
            ev(T0 + 3 * MS, &tracer, refs(4)),
            ev(
                T0 + 2 * MS,
                &task(600, "umount"),
                umount("/mnt/scratch", 0, -16, T0 + 2 * MS),
            ),
        ],
    );
    let v = verdicts(&n);
    assert_eq!(v.len(), 1, "{n:#?}");
    let r = v[0].refs.as_ref().unwrap();
    assert_eq!((r.held(), r.explained(), r.in_syscall), (3, 1, 1));
    let text = v[0].to_string();
    assert!(
        text.contains(
            "alive, but SIGKILL sent by pid 77 (pkill) 1.0ms before the EBUSY; inside renameat2 (in xfs_ilock ← xfs_rename ← vfs_rename ← do_renameat2 (D))"
        ),
        "{text}"
    );
    assert!(
        text.contains("2 not explained: 1 holder was inside a syscall at the scan"),
        "{text}"
    );
    // The next scan finds it back in user space: nothing counted from the last one.
    let n = apply(
        &mut e,
        &[
            ev(T0 + 8 * MS, &w, scanned(42, &[])),
            ev(T0 + 8 * MS, &tracer, refs(2)),
            ev(
                T0 + 7 * MS,
                &task(601, "umount"),
                umount("/mnt/scratch", 0, -16, T0 + 7 * MS),
            ),
        ],
    );
    let v = verdicts(&n);
    let r = v[0].refs.as_ref().unwrap();
    assert_eq!((r.held(), r.explained(), r.in_syscall), (1, 1, 0));
}

/// generic/388 with SIGKILL: the killed workers finish their exit between the EBUSY and
/// the scan (1-2 ms later), so the scan finds no pin and the mount's count reads 1. Their
/// cwd, read at their exit tracepoint, still names them, the count is set against what
/// was held when it was read, and their exit's end (queued behind the scan) releases them.
#[test]
fn a_cwd_read_at_exit_names_a_pin_gone_before_the_scan() {
    let mut cfg = config();
    cfg.exit_resources_seen = true;
    let mut e = Engine::new(cfg);
    let w = task(500, "fsstress");
    let tracer = task(900, "tracer");
    let n = apply(
        &mut e,
        &[
            ev(T0, &tracer, table(vec![root(), scratch()])),
            ev(
                T0 + MS,
                &w,
                Payload::TaskExit {
                    exit_code: 9,
                    group_dead: true,
                    cwd_mnt: 42,
                    root_mnt: 21,
                },
            ),
            // the scans after the EBUSY, handed on before its record: nothing left
            ev(
                T0 + 5 * MS,
                &tracer,
                Payload::PinScanDone {
                    started_ns: T0 + 5 * MS,
                    mounts: vec![42],
                },
            ),
            ev(
                T0 + 5 * MS,
                &tracer,
                Payload::MountRefs {
                    mnt_id: 42,
                    count: 1,
                    cpus: 2,
                    cpus_possible: 2,
                },
            ),
            ev(
                T0 + 4 * MS,
                &task(600, "umount"),
                umount("/mnt/scratch", 0, -16, T0 + 4 * MS),
            ),
        ],
    );
    let v = verdicts(&n);
    assert_eq!(v.len(), 1, "{n:#?}");
    assert!(!v[0].unexplained, "{}", v[0]);
    assert_eq!(v[0].task_pins.len(), 1);
    let p = &v[0].task_pins[0];
    assert!(p.from_exit && p.gone_ns == Some(T0 + 5 * MS), "{p:?}");
    let refs = v[0].refs.as_ref().unwrap();
    assert_eq!((refs.held(), refs.explained()), (0, 0));
    let text = v[0].to_string();
    assert!(text.contains("read at its exit tracepoint"), "{text}");
    assert!(text.contains("already let go by the scan"), "{text}");
    // its exit_notify (SIGCHLD) comes after: the story hears of the release
    let n = apply(
        &mut e,
        &[ev(
            T0 + 2 * MS,
            &w,
            Payload::Signal {
                sig: 17,
                result: 0,
                target_pid: 1,
                group: true,
                target_comm: "init".into(),
            },
        )],
    );
    assert!(
        n.iter()
            .any(|n| matches!(n, Notice::PinReleased(p) if p.task.pid == 500 && p.seen)),
        "{n:#?}"
    );
}

/// A process that lives on keeps no pin from a thread's exit; a scan that misses a live
/// process's pin removes it at once.
#[test]
fn exit_pins_only_for_a_whole_process_exit() {
    let mut e = Engine::new(config());
    let w = task(500, "worker");
    apply(
        &mut e,
        &[
            ev(T0, &task(900, "tracer"), table(vec![root(), scratch()])),
            ev(
                T0 + MS,
                &w,
                Payload::TaskExit {
                    exit_code: 0,
                    group_dead: false,
                    cwd_mnt: 42,
                    root_mnt: 21,
                },
            ),
        ],
    );
    let n = apply(
        &mut e,
        &[ev(
            T0 + 4 * MS,
            &task(600, "umount"),
            umount("/mnt/scratch", 0, -16, T0 + 4 * MS),
        )],
    );
    let v = verdicts(&n);
    assert!(v[0].task_pins.is_empty(), "{}", v[0]);
}

/// Mappings found by VMA scans: a scan that finds one again keeps it; a scan that ran to
/// its end without it says it went (munmap); a scan that failed (no end) leaves them all
/// as they were; the process's exit takes the rest.
#[test]
fn mappings_are_held_until_a_complete_scan_misses_them_or_the_process_exits() {
    let mut cfg = config();
    cfg.exit_resources_seen = true;
    let mut e = Engine::new(cfg);
    e.apply(&ev(
        T0,
        &task(900, "tracer"),
        table(vec![root(), scratch()]),
    ));
    let (fa, fb) = (F1, F2);
    let map = |ts, file, start: u64| {
        ev(
            ts,
            &task(7, "mapper"),
            file_ref(
                file,
                HolderRef::Mmap {
                    tgid: 7,
                    start,
                    end: start + 0x2000,
                },
                RefHow::VmaScan,
                42,
                file & 0xff,
                NameKind::Dentry,
                "m",
            ),
        )
    };
    let done = |ts| {
        ev(
            ts,
            &task(900, "tracer"),
            Payload::MmapScanDone {
                started_ns: ts - 30,
                mounts: vec![42],
            },
        )
    };
    // Opened, closed, then found mapped by the first scan.
    apply(
        &mut e,
        &[
            open(T0 + MS, 7, fa, 3, fa & 0xff),
            ev(
                T0 + 2 * MS,
                &task(7, "p"),
                unref(fa, fd(7, 3), RefHow::Close),
            ),
            map(T0 + 5 * MS, fa, 0x7000_0000),
            map(T0 + 5 * MS, fb, 0x7000_4000),
            done(T0 + 5 * MS + 20),
        ],
    );
    assert_eq!(state(&e, fa), Some(FileState::Held));
    let n = apply(
        &mut e,
        &[ev(
            T0 + 6 * MS,
            &task(2, "umount"),
            umount("/mnt/scratch", 0, -16, T0 + 6 * MS),
        )],
    );
    let v = verdicts(&n)[0];
    assert!(!v.unexplained);
    assert_eq!(v.culprits.len(), 2);
    let t = v.to_string();
    assert!(t.contains("mapped by pid 7"), "{t}");
    assert!(t.contains("fd closed"), "{t}");
    assert!(t.contains("2 mapped into a process's memory"), "{t}");
    // A failed scan sends no end: the mappings stay.
    apply(&mut e, &[map(T0 + 8 * MS, fa, 0x7000_0000)]);
    assert_eq!(state(&e, fb), Some(FileState::Held));
    // A complete scan that finds only the first: the second was unmapped.
    apply(
        &mut e,
        &[map(T0 + 9 * MS, fa, 0x7000_0000), done(T0 + 9 * MS + 20)],
    );
    assert_eq!(state(&e, fa), Some(FileState::Held));
    let k = e.files().alive(fb).unwrap();
    let f = e.files().get(k).unwrap();
    assert!(f.holders.is_empty());
    assert_eq!(f.last_drop.as_ref().unwrap().reason, DropReason::Unmapped);
    // The process's exit (its fd table freed after exit_mm) takes the first.
    apply(
        &mut e,
        &[
            ev(T0 + 10 * MS, &task(7, "mapper"), exit(9)),
            ev(
                T0 + 11 * MS,
                &task(7, "mapper"),
                Payload::TaskResFreed {
                    what: tracer_fs::event::TaskRes::Files,
                    ptr: 0x1,
                },
            ),
        ],
    );
    let k = e.files().alive(fa).unwrap();
    let f = e.files().get(k).unwrap();
    assert!(f.holders.is_empty());
    assert_eq!(f.last_drop.as_ref().unwrap().reason, DropReason::ExitMm);
    assert_eq!(state(&e, fa), Some(FileState::PendingRelease));
}

/// Loop devices and swap files read at a failure: a backing file the engine knows (opened
/// by losetup, fd closed) is held by its loop device; one it does not know is a reference
/// of its own in the count; a later scan without them drops them.
#[test]
fn backing_files_hold_their_mount_and_count_in_the_reconciliation() {
    use tracer_fs::event::{BackingFile, BackingKind};
    let mut e = engine();
    let scan = |ts, files: Vec<BackingFile>| {
        ev(
            ts,
            &task(900, "tracer"),
            Payload::BackingScan {
                mounts: vec![42],
                files,
            },
        )
    };
    let loop_img = BackingFile {
        kind: BackingKind::Loop,
        device: "/dev/loop3".into(),
        path: "/mnt/scratch/f".into(),
        mnt_id: 42,
        ino: 5,
    };
    let swap = BackingFile {
        kind: BackingKind::Swap,
        device: String::new(),
        path: "/mnt/scratch/swap".into(),
        mnt_id: 42,
        ino: 6,
    };
    apply(
        &mut e,
        &[
            open(T0 + MS, 7, F1, 3, 5),
            ev(
                T0 + 2 * MS,
                &task(7, "p"),
                unref(F1, fd(7, 3), RefHow::Close),
            ),
            scan(T0 + 4 * MS, vec![loop_img, swap]),
            // The scans run after the failure, and are handed on before its record.
            ev(
                T0 + 5 * MS + 10,
                &task(900, "tracer"),
                Payload::MountRefs {
                    mnt_id: 42,
                    count: 3,
                    cpus: 2,
                    cpus_possible: 2,
                },
            ),
        ],
    );
    let n = apply(
        &mut e,
        &[ev(
            T0 + 5 * MS,
            &task(2, "umount"),
            umount("/mnt/scratch", 0, -16, T0 + 5 * MS),
        )],
    );
    let v = verdicts(&n)[0];
    assert!(!v.unexplained);
    assert_eq!(v.backing.len(), 2);
    assert_eq!(v.culprits[0].state, FileState::Held);
    assert!(matches!(
        &v.culprits[0].holders[0],
        HolderDesc::Backing { device, .. } if device == "/dev/loop3"
    ));
    let r = v.refs.as_ref().unwrap();
    assert_eq!((r.files, r.backing), (1, 1));
    let t = v.to_string();
    assert!(t.contains("backing file of /dev/loop3"), "{t}");
    assert!(t.contains("active swap file /mnt/scratch/swap"), "{t}");
    assert!(t.contains("every reference explained"), "{t}");
    // Detached and swapped off: the next scan finds nothing.
    apply(&mut e, &[scan(T0 + 6 * MS, vec![])]);
    let n = apply(
        &mut e,
        &[ev(
            T0 + 7 * MS,
            &task(2, "umount"),
            umount("/mnt/scratch", 0, -16, T0 + 7 * MS),
        )],
    );
    let v = verdicts(&n)[0];
    assert!(v.backing.is_empty());
    assert_ne!(v.culprits[0].state, FileState::Held);
}

/// Linux AIO counts read at a failure: a process with requests not reaped on a file of the
/// mount is named, the file (its fd closed, still alive) is held by them; the end of the
/// process's exit (its fd table freed, after exit_aio) ends them.
#[test]
fn aio_requests_not_reaped_are_named_until_the_exit_ends() {
    use tracer_fs::event::{AioFile, AioTask};
    let mut cfg = config();
    cfg.exit_resources_seen = true;
    let mut e = Engine::new(cfg);
    e.apply(&ev(
        T0,
        &task(900, "tracer"),
        table(vec![root(), scratch()]),
    ));
    let aio = |ts, reaped| {
        ev(
            ts,
            &task(900, "tracer"),
            Payload::AioScan {
                tasks: vec![AioTask {
                    tgid: 7,
                    ctx: 0x7f00_0000,
                    submitted: 3,
                    reaped,
                    last_submit_ns: T0 + 2 * MS,
                    files: vec![AioFile {
                        file: F1,
                        mnt_id: 42,
                    }],
                }],
            },
        )
    };
    let busy = |ts| ev(ts, &task(2, "umount"), umount("/mnt/scratch", 0, -16, ts));
    apply(
        &mut e,
        &[
            open(T0 + MS, 7, F1, 3, 5),
            ev(
                T0 + 3 * MS,
                &task(7, "p"),
                unref(F1, fd(7, 3), RefHow::Close),
            ),
            aio(T0 + 4 * MS, 1),
        ],
    );
    let n = apply(&mut e, &[busy(T0 + 4 * MS)]);
    let v = verdicts(&n)[0];
    assert_eq!(v.aio.len(), 1);
    assert_eq!(v.aio[0].submitted - v.aio[0].reaped, 2);
    assert_eq!(v.culprits[0].state, FileState::Held);
    let t = v.to_string();
    assert!(t.contains("2 requests submitted and not reaped"), "{t}");
    assert!(t.contains("named by AIO requests of pid 7"), "{t}");
    // All reaped: nothing to name.
    apply(&mut e, &[aio(T0 + 5 * MS, 3)]);
    let n = apply(&mut e, &[busy(T0 + 5 * MS)]);
    assert!(verdicts(&n)[0].aio.is_empty());
    // Not reaped again, then the process exits: its fd table's free ends them.
    apply(
        &mut e,
        &[
            aio(T0 + 6 * MS, 1),
            ev(T0 + 7 * MS, &task(7, "p"), exit(9)),
            ev(
                T0 + 8 * MS,
                &task(7, "p"),
                Payload::TaskResFreed {
                    what: tracer_fs::event::TaskRes::Files,
                    ptr: 0x1,
                },
            ),
        ],
    );
    let n = apply(&mut e, &[busy(T0 + 9 * MS)]);
    assert!(verdicts(&n)[0].aio.is_empty());
}

/// Where the exit tracepoint comes after `exit_mm()` (6.1) and the scan runs too late (a
/// slow CPU), the verdict names nothing; the worker's exit, read after it with its cwd on
/// the mount, is the pin: the story hears of it, then of its release.
#[test]
fn a_cwd_read_at_an_exit_after_the_verdict_is_a_pin_found_late() {
    let mut cfg = config();
    cfg.exit_resources_seen = true;
    let mut e = Engine::new(cfg);
    let w = task(500, "fsstress");
    let other = task(501, "elsewhere");
    let tracer = task(900, "tracer");
    let n = apply(
        &mut e,
        &[
            ev(T0, &tracer, table(vec![root(), scratch()])),
            ev(
                T0 + 4 * MS,
                &task(600, "umount"),
                umount("/mnt/scratch", 0, -16, T0 + 4 * MS),
            ),
        ],
    );
    let v = verdicts(&n);
    assert_eq!(v.len(), 1, "{n:#?}");
    assert!(v[0].unexplained, "{}", v[0]);
    let exit = |cwd_mnt| Payload::TaskExit {
        exit_code: 9,
        group_dead: true,
        cwd_mnt,
        root_mnt: 21,
    };
    let n = apply(
        &mut e,
        &[
            // not on the mount: nothing
            ev(T0 + 5 * MS, &other, exit(21)),
            ev(T0 + 6 * MS, &w, exit(42)),
        ],
    );
    let late: Vec<_> = n
        .iter()
        .filter_map(|n| match n {
            Notice::PinFoundLate(p) => Some(p),
            _ => None,
        })
        .collect();
    assert_eq!(late.len(), 1, "{n:#?}");
    assert_eq!(late[0].task.pid, 500);
    let text = late[0].to_string();
    assert!(
        text.starts_with(
            "pin found after the verdict 2.0ms after the EBUSY of umount /mnt/scratch"
        ),
        "{text}"
    );
    assert!(text.contains("cwd of pid 500 (fsstress)"), "{text}");
    // its exit_notify (SIGCHLD): the story hears of the release
    let n = apply(
        &mut e,
        &[ev(
            T0 + 7 * MS,
            &w,
            Payload::Signal {
                sig: 17,
                result: 0,
                target_pid: 1,
                group: true,
                target_comm: "init".into(),
            },
        )],
    );
    assert!(
        n.iter()
            .any(|n| matches!(n, Notice::PinReleased(p) if p.task.pid == 500 && p.seen)),
        "{n:#?}"
    );
}

#[test]
fn releases_pending_counts_what_a_dead_task_leaves_on_its_way_out() {
    let mut e = engine();
    apply(
        &mut e,
        &[
            open(T0 + 1, 10, F1, 3, 7),
            ev(T0 + 2, &task(10, "p"), uring_create(RING, 5)),
            ev(
                T0 + 3,
                &task(10, "p"),
                file_ref(
                    F2,
                    HolderRef::UringFixed { ctx: RING },
                    RefHow::UringRegister,
                    42,
                    8,
                    NameKind::None,
                    "",
                ),
            ),
        ],
    );
    // a live process's fd and ring are not on their way out
    assert_eq!(e.releases_pending(), 0);
    apply(&mut e, &[ev(T0 + 4, &task(10, "p"), exit(9))]);
    // F1's last put is deferred; F2 is held by the dead task's ring
    assert_eq!(state(&e, F1), Some(FileState::PendingRelease));
    assert_eq!(e.releases_pending(), 2);
    apply(&mut e, &[ev(T0 + 5, &task(10, "p"), free(F1, 42, 7))]);
    assert_eq!(e.releases_pending(), 1);
    // the ring's teardown is queued: the work counts too
    let w = kworker(
        30,
        "kworker/0:1",
        0xffff_8880_0777_0000,
        0xffff_ffff_8100_2000,
    );
    apply(
        &mut e,
        &[ev(
            T0 + 6,
            &task(10, "p"),
            queued(0xffff_8880_0777_0000, 0xffff_ffff_8100_2000),
        )],
    );
    assert_eq!(e.releases_pending(), 2);
    apply(
        &mut e,
        &[
            ev(
                T0 + 7,
                &w,
                start(0xffff_8880_0777_0000, 0xffff_ffff_8100_2000),
            ),
            ev(
                T0 + 8,
                &w,
                unref(
                    F2,
                    HolderRef::UringFixed { ctx: RING },
                    RefHow::UringUnregister,
                ),
            ),
            ev(T0 + 9, &w, free(F2, 42, 8)),
            ev(
                T0 + 10,
                &w,
                end(0xffff_8880_0777_0000, 0xffff_ffff_8100_2000),
            ),
        ],
    );
    assert_eq!(e.releases_pending(), 0);
}
