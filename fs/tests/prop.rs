//! Property tests: random event streams over small pointer/pid/mount-id spaces (to force
//! reuse, unknown objects, frees before refs, nonsense) never panic, and the engine's
//! invariants hold after every event.

mod common;

use std::collections::BTreeSet;

use common::*;
use proptest::prelude::*;
use proptest::sample::select;
use tracer_fs::event::{
    Event, HolderRef, MountCallOp, MountInfo, NameKind, Payload, RefHow, WorkCtx,
};
use tracer_fs::files::FileState;
use tracer_fs::{Caps, Engine, EngineConfig};

const FILES: [u64; 4] = [
    0,
    0xffff_8880_0000_1000,
    0xffff_8880_0000_2000,
    0xffff_8880_0000_3000,
];
const RINGS: [u64; 3] = [0, 0xffff_8880_0456_0000, 0xffff_8880_0457_0000];
const REQS: [u64; 2] = [0xffff_8880_0999_0000, 0xffff_8880_0999_0100];
const FUNCS: [u64; 4] = [
    DELAYED_FPUT,
    IO_RING_EXIT_WORK,
    IO_FALLBACK_REQ_FUNC,
    0xffff_ffff_8100_dead,
];

fn works() -> Vec<u64> {
    vec![
        0,
        DELAYED_FPUT_WORK,
        RINGS[1] + EXIT_WORK_OFF,
        RINGS[2] + EXIT_WORK_OFF,
        RINGS[1] + FALLBACK_WORK_OFF,
        0x1234,
    ]
}

fn mount_candidates() -> Vec<MountInfo> {
    vec![
        root(),
        devtmpfs(),
        scratch(),
        // the same id for another filesystem: forces id reuse
        mnt(42, 21, "/mnt/scratch", "ext4", "/dev/loop2", 7, 2),
        mnt(43, 42, "/mnt/scratch", "tmpfs", "tmpfs", 0, 43),
        mnt(44, 43, "/mnt/scratch/sub", "tmpfs", "tmpfs", 0, 44),
    ]
}

fn how() -> impl Strategy<Value = RefHow> {
    select(vec![
        RefHow::Open,
        RefHow::Snapshot,
        RefHow::UringRegister,
        RefHow::UringFileGet,
        RefHow::Close,
        RefHow::UringReqDone,
        RefHow::UringUnregister,
    ])
}

fn holder() -> impl Strategy<Value = HolderRef> {
    prop_oneof![
        (1u32..5, 0i32..3).prop_map(|(tgid, fd)| HolderRef::Fd { tgid, fd }),
        select(RINGS.to_vec()).prop_map(|ctx| HolderRef::UringFixed { ctx }),
        (select(RINGS.to_vec()), select(REQS.to_vec()))
            .prop_map(|(ctx, req)| HolderRef::UringReq { ctx, req }),
    ]
}

fn mnt_id() -> impl Strategy<Value = i32> {
    select(vec![-1, 21, 24, 42, 43, 44])
}

fn payload() -> impl Strategy<Value = Payload> {
    let file = select(FILES.to_vec());
    let work = select(works());
    let func = select(FUNCS.to_vec());
    prop_oneof![
        2 => prop::sample::subsequence(mount_candidates(), 0..=6).prop_map(|mounts| Payload::MountTable { mounts }),
        1 => prop::sample::subsequence(mount_candidates(), 0..=2).prop_map(|mounts| Payload::MountsAppeared { mounts }),
        3 => (
            select(vec![MountCallOp::Umount, MountCallOp::Umount, MountCallOp::Mount, MountCallOp::MoveMount]),
            select(vec![0u32, 2]),
            select(vec![-16i64, -16, 0, -22]),
            select(vec!["/mnt/scratch", "/mnt/scratch/", "/", "/nope", "", "/mnt/scratch/sub"]),
            select(vec!["/dev/loop1", "/dev/loop2", "tmpfs", ""]),
        )
            .prop_map(|(op, flags, ret, target, source)| Payload::MountCall(tracer_fs::event::MountCall {
                op,
                flags,
                ret,
                enter_ns: 0,
                source: source.into(),
                target: target.into(),
                fs_type: "xfs".into(),
            })),
        2 => (select(vec![0i32, 9, 0x100, 0x8b]), any::<bool>())
            .prop_map(|(exit_code, group_dead)| Payload::TaskExit {
                exit_code,
                group_dead,
                cwd_mnt: -1,
                root_mnt: -1
            }),
        1 => (select(vec![9i32, 15]), select(vec![0i32, 2]), -1i32..6)
            .prop_map(|(sig, result, target_pid)| Payload::Signal {
                sig,
                result,
                target_pid,
                group: true,
                target_comm: "t".into(),
            }),
        1 => select(RINGS.to_vec()).prop_map(|ctx| Payload::UringCreate { ctx, fd: 4, sq_entries: 8, cq_entries: 16, flags: 0 }),
        1 => select(RINGS.to_vec()).prop_map(|ctx| Payload::UringRegister { ctx, opcode: 2, nr_files: 1, ret: 0 }),
        8 => (
            file.clone(),
            holder(),
            how(),
            mnt_id(),
            0u64..3,
            select(vec![NameKind::None, NameKind::UserPath, NameKind::Dentry]),
            select(vec!["", "/mnt/scratch/a", "a/b", "/dev/loop1", "f"]),
        )
            .prop_map(|(file, holder, how, mnt_id, ino, name_kind, name)| Payload::FileRef(tracer_fs::event::FileRef {
                file,
                holder,
                how,
                mnt_id,
                dev: 7,
                ino,
                name_kind,
                name: name.into(),
            })),
        5 => (file.clone(), holder(), how()).prop_map(|(file, holder, how)| Payload::FileUnref { file, holder, how }),
        4 => (file, mnt_id(), 0u64..3).prop_map(|(file, mnt_id, ino)| Payload::FileFree { file, mnt_id, ino }),
        3 => (work.clone(), func.clone(), -1i32..2).prop_map(|(work, function, target_cpu)| Payload::WorkQueued { work, function, target_cpu }),
        3 => (work.clone(), func.clone()).prop_map(|(work, function)| Payload::WorkStart { work, function }),
        3 => (work.clone(), func.clone()).prop_map(|(work, function)| Payload::WorkEnd { work, function }),
        2 => (work, func).prop_map(|(work, function)| Payload::WorkArmed { work, function, delay_jiffies: 1 }),
        1 => (select(RINGS.to_vec()), select(REQS.to_vec()), any::<bool>())
            .prop_map(|(ctx, req, failed)| Payload::UringReqDone { ctx, req, res: 0, failed }),
        1 => Just(Payload::TestMarker { test: "generic/388".into() }),
    ]
}

fn event(ts: impl Strategy<Value = u64>) -> impl Strategy<Value = Event> {
    (
        ts,
        0u32..6,
        any::<bool>(),
        prop::option::weighted(0.3, (select(works()), select(FUNCS.to_vec()))),
        payload(),
    )
        .prop_map(|(ts_ns, pid, thread, work, payload)| Event {
            ts_ns,
            cpu: 0,
            pid: if thread { pid + 100 } else { pid },
            tgid: pid,
            comm: format!("c{pid}").into(),
            work: work.map(|(work, function)| WorkCtx { work, function }),
            payload,
        })
}

fn small_caps() -> EngineConfig {
    EngineConfig {
        caps: Caps {
            max_files: 2,
            max_released_files: 1,
            max_work_instances: 5,
            max_verdicts: 3,
            max_tasks: 4,
            max_rings: 2,
            max_mount_history: 2,
        },
        missing_hooks: vec!["kprobe:fput".into()],
        ..config()
    }
}

/// Everything the TUI and verdicts rely on, checked against the engine's own tables.
fn check(e: &Engine) -> Result<(), TestCaseError> {
    e.check_invariants().map_err(TestCaseError::fail)?;
    for f in e.files().iter() {
        if !f.alive() {
            prop_assert!(
                f.holders.is_empty(),
                "released file {:?} has holders",
                f.key
            );
        }
    }
    let summaries = e.mount_summaries();
    let mut listed_alive = 0;
    let ids: BTreeSet<i32> = summaries.iter().map(|s| s.mount_id).collect();
    for s in &summaries {
        let a = e.alive_on_mount(s.mount_id);
        // counts in summaries equal counts from listing
        prop_assert_eq!(s.alive_files, a.files);
        prop_assert_eq!(s.fd_tables, a.fd_tables.len());
        prop_assert_eq!(s.uring_rings, a.uring_rings.len());
        prop_assert_eq!(s.in_flight, a.in_flight.len());
        prop_assert_eq!(s.deferred_pending, a.deferred_pending.len());
        prop_assert_eq!(s.unattributed, a.unattributed.len());
        // every alive file is attributed to a holder or counted unattributed (or pending)
        let mut seen = BTreeSet::new();
        for r in a
            .fd_tables
            .iter()
            .chain(&a.uring_rings)
            .chain(&a.in_flight)
            .chain(&a.deferred_pending)
            .chain(&a.unattributed)
        {
            prop_assert!(
                !r.holders.is_empty(),
                "file listed with no holder description"
            );
            seen.insert((r.id.file, r.id.generation));
        }
        prop_assert_eq!(seen.len(), a.files);
        for r in a.deferred_pending.iter().chain(&a.unattributed) {
            prop_assert!(matches!(
                r.state,
                FileState::PendingRelease | FileState::Unattributed
            ));
        }
        listed_alive += a.files;
    }
    prop_assert_eq!(listed_alive, e.files().alive_len());
    for f in e.files().alive_iter() {
        prop_assert!(
            ids.contains(&f.mnt_id),
            "alive file on mount {} has no summary",
            f.mnt_id
        );
    }
    let st = e.stats();
    prop_assert_eq!(st.files_alive, e.files().alive_len());
    for w in e.work_summaries() {
        prop_assert!(w.counters.ended <= w.counters.started);
        prop_assert!(w.counters.latency.worst_ns >= w.counters.latency.last_ns);
    }
    Ok(())
}

fn run(cfg: EngineConfig, events: &[Event]) -> Result<(), TestCaseError> {
    let hooks = cfg.missing_hooks.clone();
    let mut e = Engine::new(cfg);
    for x in events {
        for n in e.apply(x) {
            // every notice renders and serializes
            prop_assert!(!n.to_string().is_empty());
            let j: serde_json::Value = serde_json::from_str(&n.to_json_line()).unwrap();
            prop_assert!(j.get("notice").is_some());
        }
        check(&e)?;
    }
    // missing hooks are quoted in every verdict
    for v in e.verdicts() {
        for h in &hooks {
            let want = format!("hook not attached: {}", h);
            prop_assert!(v.evidence_limits.contains(&want));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Events in time order (what the tracer sends).
    #[test]
    fn ordered_streams_keep_invariants(mut events in prop::collection::vec(event(0u64..10_000), 1..120)) {
        events.sort_by_key(|e| e.ts_ns);
        run(config(), &events)?;
    }

    /// Events in any order, with tiny caps: eviction happens all the time.
    #[test]
    fn any_order_with_tiny_caps(events in prop::collection::vec(event(0u64..10_000), 1..120)) {
        run(small_caps(), &events)?;
    }

    /// Without the BTF offsets and symbols, the engine degrades but stays consistent.
    #[test]
    fn without_offsets_or_symbols(events in prop::collection::vec(event(0u64..10_000), 1..80)) {
        let cfg = EngineConfig { caps: small_caps().caps, ..EngineConfig::default() };
        run(cfg, &events)?;
    }
}

/// The generator must reach the states the properties are about; otherwise they would
/// pass vacuously.
#[test]
fn generated_streams_reach_the_interesting_states() {
    use std::collections::BTreeMap;

    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    use tracer_fs::verdict::{HolderDesc, Notice};

    let mut runner = TestRunner::deterministic();
    let strategy = prop::collection::vec(event(0u64..10_000), 60..150);
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for _ in 0..300 {
        let mut events = strategy.new_tree(&mut runner).unwrap().current();
        events.sort_by_key(|e| e.ts_ns);
        let mut e = Engine::new(small_caps());
        for x in &events {
            for n in e.apply(x) {
                let k = match &n {
                    Notice::Verdict(v) if !v.culprits.is_empty() => "verdict with culprits",
                    Notice::Verdict(v) if !v.device_openers.is_empty() => {
                        "mount verdict with openers"
                    }
                    Notice::Verdict(_) => "verdict",
                    Notice::CulpritReleased(c) if c.listed && c.chain.len() >= 2 => {
                        "release with a chain of 2+ links"
                    }
                    Notice::CulpritReleased(c) if c.listed => "culprit released",
                    Notice::CulpritReleased(_) => "unlisted release",
                    Notice::PinReleased(_) => "pin released",
                    Notice::PinFoundLate(_) => "pin found late",
                    Notice::StoryClosed(_) => "story closed",
                    Notice::MountDetachedPinned(_) => "detached",
                    Notice::DetachedMountUnpinned(_) => "unpinned",
                    Notice::LockConflict(_) => "lock conflict",
                    Notice::LockStillHeld(_) => "lock still held",
                    Notice::LockReleased(_) => "lock released",
                    Notice::SpaceHeld(_) => "space held",
                    Notice::SpaceFreed(_) => "space freed",
                };
                *seen.entry(k).or_default() += 1;
                if let Notice::Verdict(v) = &n {
                    for h in v.culprits.iter().flat_map(|c| &c.holders) {
                        let k = match h {
                            HolderDesc::Fd { .. } => "fd holder",
                            HolderDesc::UringFixed { .. } => "ring holder",
                            HolderDesc::UringReq { .. } => "request holder",
                            HolderDesc::Mmap { .. } => "mapping holder",
                            HolderDesc::Backing { .. } => "backing holder",
                            HolderDesc::Aio { .. } => "aio holder",
                            HolderDesc::DeferredPut { .. } => "deferred put",
                            HolderDesc::Unattributed { .. } => "unattributed",
                        };
                        *seen.entry(k).or_default() += 1;
                    }
                }
            }
        }
        // Files nobody is known to hold, in a verdict (above) or in the mount summaries
        // (which `check` compares with the listings).
        if e.mount_summaries().iter().any(|m| m.unattributed > 0) {
            *seen.entry("unattributed").or_default() += 1;
        }
        let s = e.stats();
        for (k, n) in [
            ("files lost", s.files_lost),
            ("slot reused", s.holder_slot_reused),
            ("unknown frees", s.unknown_file_frees),
            ("evicted alive files", s.evicted_files_alive),
            ("evicted work", s.evicted_work_done + s.evicted_work_active),
            ("mount id reused", s.mount_ids_reused),
        ] {
            if n > 0 {
                *seen.entry(k).or_default() += 1;
            }
        }
    }
    for k in [
        "verdict with culprits",
        "mount verdict with openers",
        "verdict",
        "release with a chain of 2+ links",
        "culprit released",
        "unlisted release",
        "story closed",
        "detached",
        "unpinned",
        "fd holder",
        "ring holder",
        "request holder",
        "deferred put",
        "unattributed",
        "files lost",
        "slot reused",
        "unknown frees",
        "evicted alive files",
        "evicted work",
        "mount id reused",
    ] {
        assert!(
            seen.get(k).copied().unwrap_or(0) > 0,
            "never reached: {k}; reached: {seen:?}"
        );
    }
}
