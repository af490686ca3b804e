//! The precise tier's events in the engine: `fput`, `task_work_add(____fput)`, the work
//! functions' entries, `path_umount`'s return and `cleanup_mnt`.

mod common;

use common::*;
use tracer_fs::Engine;
use tracer_fs::engine::EBUSY;
use tracer_fs::event::{Event, NameKind, Payload, RefHow, WorkFnKind};
use tracer_fs::files::{DropReason, FileState};
use tracer_fs::verdict::{Anchor, DeferVia, HolderDesc, Notice};

const F1: u64 = 0xffff_8880_0000_1000;

fn engine(precise_release: bool) -> Engine {
    let mut cfg = config();
    cfg.precise_release = precise_release;
    engine_with(cfg)
}

fn open(ts: u64, pid: u32, fdn: i32) -> Event {
    ev(
        ts,
        &task(pid, "p"),
        file_ref(
            F1,
            fd(pid, fdn),
            RefHow::Open,
            42,
            7,
            NameKind::UserPath,
            "/mnt/scratch/f",
        ),
    )
}

fn put(ts: u64, who: &Who, last: bool) -> Event {
    ev(
        ts,
        who,
        Payload::FilePut {
            file: F1,
            mnt_id: 42,
            ino: 7,
            count: if last { 1 } else { 2 },
            last,
        },
    )
}

fn deferred(ts: u64, who: &Who, pid: u32) -> Event {
    ev(
        ts,
        who,
        Payload::FputDeferred {
            file: F1,
            mnt_id: 42,
            target_pid: pid,
            target_tgid: pid,
        },
    )
}

fn umount_ret(ts: u64, who: &Who, ret: i64) -> Event {
    ev(
        ts,
        who,
        Payload::UmountRet {
            mnt_id: 42,
            ret,
            flags: 0,
            enter_ns: ts - 2,
        },
    )
}

fn state(e: &Engine) -> Option<FileState> {
    let k = e.files().alive(F1)?;
    Some(e.files().get(k)?.state())
}

fn deferred_put(e: &Engine) -> HolderDesc {
    let k = e.files().alive(F1).unwrap();
    let r = e.describe_file(k).unwrap();
    r.holders
        .into_iter()
        .find(|h| matches!(h, HolderDesc::DeferredPut { .. }))
        .expect("a deferred put")
}

fn verdict_count(n: &[Notice]) -> usize {
    n.iter().filter(|n| matches!(n, Notice::Verdict(_))).count()
}

#[test]
fn a_last_fput_queued_to_task_work_is_the_pending_release() {
    let mut e = engine(true);
    let p = task(10, "p");
    // Another reference exists that the tracer never saw (a dup): the close is not the
    // last put, and the file stays unattributed until its last fput.
    apply(
        &mut e,
        &[
            open(T0 + 1, 10, 3),
            ev(T0 + 2, &p, unref(F1, fd(10, 3), RefHow::Close)),
            put(T0 + 3, &p, false),
        ],
    );
    let k = e.files().alive(F1).unwrap();
    assert_eq!(e.files().get(k).unwrap().puts, 1);
    assert!(e.files().get(k).unwrap().last_put.is_none());
    // Not a pending release: the close's put left a reference the tracer never saw taken.
    assert_eq!(state(&e), Some(FileState::Unattributed));
    let r = e.describe_file(k).unwrap();
    let words = r.holders[0].words(&Anchor {
        ts: T0 + 5,
        what: None,
    });
    assert!(words.contains("fput left 1 reference taken"), "{words}");
    apply(&mut e, &[put(T0 + 10, &p, true), deferred(T0 + 11, &p, 10)]);
    assert_eq!(state(&e), Some(FileState::PendingRelease));
    let d = deferred_put(&e);
    let HolderDesc::DeferredPut { via, last_put, .. } = &d else {
        unreachable!()
    };
    assert_eq!(*via, DeferVia::TaskWork);
    let lp = last_put.as_ref().unwrap();
    assert_eq!(lp.ts_ns, T0 + 10);
    assert_eq!(lp.queued_to.unwrap().pid, 10);
    let words = d.words(&Anchor {
        ts: T0 + 20,
        what: None,
    });
    assert!(
        words.contains("deferred put queued to task 10 (pid 10)'s return to user space"),
        "{words}"
    );
    // The release itself (__fput) ends it.
    let out = apply(&mut e, &[ev(T0 + 12, &p, free(F1, 42, 7))]);
    assert!(out.is_empty() || verdict_count(&out) == 0);
    assert_eq!(state(&e), None);
}

#[test]
fn a_last_fput_without_task_work_goes_to_delayed_fput() {
    let mut e = engine(true);
    let kw = kworker(50, "kworker/0:1", 0xffff_8880_0111_0000, IO_RING_EXIT_WORK);
    apply(&mut e, &[open(T0 + 1, 10, 3), put(T0 + 5, &kw, true)]);
    assert_eq!(state(&e), Some(FileState::PendingRelease));
    let HolderDesc::DeferredPut { via, last_put, .. } = deferred_put(&e) else {
        unreachable!()
    };
    assert_eq!(via, DeferVia::DelayedFput);
    assert!(last_put.unwrap().queued_to.is_none());
}

#[test]
fn path_umount_gives_the_verdict_and_the_syscall_exit_adds_none() {
    let mut e = engine(true);
    let u = task(20, "umount");
    apply(&mut e, &[open(T0 + 1, 10, 3)]);
    // path_umount's return, then the syscall's exit for the same call: one verdict.
    let a = apply(&mut e, &[umount_ret(T0 + 10, &u, EBUSY)]);
    assert_eq!(verdict_count(&a), 1);
    let Notice::Verdict(v) = &a[0] else {
        unreachable!()
    };
    assert_eq!(v.mount.as_ref().unwrap().id, 42);
    assert_eq!(v.culprits.len(), 1);
    let b = apply(
        &mut e,
        &[ev(T0 + 11, &u, umount("/mnt/scratch", 0, EBUSY, T0 + 7))],
    );
    assert_eq!(verdict_count(&b), 0);
    let m = e.mounts().get(42).unwrap();
    assert_eq!((m.umount_attempts_total, m.umount_ebusy_total), (1, 1));
    // A later umount that fails before path_umount (no precise record) still counts.
    let c = apply(
        &mut e,
        &[ev(T0 + 21, &u, umount("/mnt/scratch", 0, EBUSY, T0 + 20))],
    );
    assert_eq!(verdict_count(&c), 1);
    // The success closes the story once.
    let d = apply(
        &mut e,
        &[
            ev(T0 + 30, &task(10, "p"), unref(F1, fd(10, 3), RefHow::Close)),
            ev(T0 + 31, &task(10, "p"), free(F1, 42, 7)),
            umount_ret(T0 + 40, &u, 0),
            ev(T0 + 41, &u, umount("/mnt/scratch", 0, 0, T0 + 37)),
        ],
    );
    let closed = d
        .iter()
        .filter(|n| matches!(n, Notice::StoryClosed(_)))
        .count();
    assert_eq!(closed, 1, "{d:#?}");
}

#[test]
fn path_umount_of_a_mount_the_engine_does_not_know_is_left_to_the_syscall() {
    let mut e = engine(true);
    let u = task(20, "umount");
    let out = apply(
        &mut e,
        &[
            ev(
                T0 + 10,
                &u,
                Payload::UmountRet {
                    mnt_id: 77,
                    ret: EBUSY,
                    flags: 0,
                    enter_ns: 0,
                },
            ),
            ev(T0 + 11, &u, umount("/mnt/other", 0, EBUSY, T0 + 5)),
        ],
    );
    assert_eq!(verdict_count(&out), 1);
}

#[test]
fn cleanup_mnt_proves_files_gone_only_when_releases_are_precise() {
    for precise in [true, false] {
        let mut e = engine(precise);
        apply(
            &mut e,
            &[
                open(T0 + 1, 10, 3),
                ev(T0 + 2, &task(900, "tracer"), table(vec![root()])),
                ev(T0 + 3, &task(10, "p"), Payload::MountCleanup { mnt_id: 42 }),
            ],
        );
        assert_eq!(state(&e).is_none(), precise, "precise_release {precise}");
        assert_eq!(e.stats().files_lost, precise as u64);
    }
}

#[test]
fn a_work_function_entry_starts_its_run_when_the_workqueue_start_was_missed() {
    let mut e = engine(true);
    let kw = kworker(50, "kworker/0:1", DELAYED_FPUT_WORK, DELAYED_FPUT);
    let bare = task(50, "kworker/0:1");
    apply(
        &mut e,
        &[
            open(T0 + 1, 10, 3),
            ev(
                T0 + 5,
                &bare,
                Payload::WorkFnEntered {
                    which: WorkFnKind::DelayedFput,
                    work: DELAYED_FPUT_WORK,
                },
            ),
        ],
    );
    assert!(e.work().running_instance(DELAYED_FPUT_WORK).is_some());
    // Entering again while running changes nothing.
    apply(
        &mut e,
        &[ev(
            T0 + 6,
            &kw,
            Payload::WorkFnEntered {
                which: WorkFnKind::DelayedFput,
                work: DELAYED_FPUT_WORK,
            },
        )],
    );
    assert_eq!(
        e.work()
            .iter()
            .filter(|i| i.function == DELAYED_FPUT)
            .count(),
        1
    );
}

#[test]
fn the_release_chain_names_the_last_putter_not_the_last_holder() {
    // A module's own work keeps a reference after the close (leakyfs's hold): its
    // kworker drops the last one, and delayed_fput releases the file.
    const MOD_WORK: u64 = 0xffff_8880_0777_0000;
    const MOD_FN: u64 = 0xffff_ffff_c000_1000;
    let mut e = engine(true);
    let p = task(10, "cat");
    let holder_kw = kworker(60, "kworker/0:2", MOD_WORK, MOD_FN);
    let fput_kw = kworker(61, "kworker/0:3", DELAYED_FPUT_WORK, DELAYED_FPUT);
    apply(
        &mut e,
        &[
            open(T0 + 1, 10, 3),
            ev(T0 + 2, &p, unref(F1, fd(10, 3), RefHow::Close)),
            put(T0 + 3, &p, false),
            ev(T0 + 10, &holder_kw, start(MOD_WORK, MOD_FN)),
            put(T0 + 11, &holder_kw, true),
            ev(T0 + 12, &holder_kw, end(MOD_WORK, MOD_FN)),
            ev(T0 + 20, &fput_kw, start(DELAYED_FPUT_WORK, DELAYED_FPUT)),
            ev(T0 + 21, &fput_kw, free(F1, 42, 7)),
        ],
    );
    let f = e.files().iter().next().unwrap();
    let chain = &f.release.as_ref().unwrap().chain;
    let text = tracer_fs::work::chain_text(chain);
    assert!(text.contains("kworker/0:2"), "{text}");
    assert!(!text.contains("cat"), "{text}");
}

#[test]
fn a_last_fput_by_its_own_live_process_closes_the_fd_whose_close_sent_no_record() {
    // The close of a file's only reference sends no record: its last fput, by the same
    // process, tells it.
    let mut e = engine(true);
    let p = task(10, "p");
    apply(&mut e, &[open(T0 + 1, 10, 3), put(T0 + 2, &p, true)]);
    let k = e.files().alive(F1).unwrap();
    let d = e.files().get(k).unwrap().last_drop.clone().unwrap();
    assert_eq!(d.reason, DropReason::Close);
    assert_eq!(d.holder, fd(10, 3));
    assert_eq!(d.actor.ts_ns, T0 + 2);

    // A process past its exit: its fds go with its fd table, not by a close.
    let mut e = engine(true);
    apply(
        &mut e,
        &[
            open(T0 + 1, 10, 3),
            ev(T0 + 2, &p, exit(0)),
            put(T0 + 3, &p, true),
        ],
    );
    let k = e.files().alive(F1).unwrap();
    let d = e.files().get(k).unwrap().last_drop.clone().unwrap();
    assert_eq!(d.reason, DropReason::ExitFiles);
}
