//! Allocation leak tracking on the real kernel (`--alloc-filter`): the live view charges a
//! mount's allocations to it while mounted, a clean umount leaves an empty report, objects
//! the test keeps alive across a mount's lifetime are reported exactly, a filter matching
//! nothing tracks nothing, and a full map says how much it could not track.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

fn wait_report(t: &Tracer, target: &str) -> Value {
    t.leak_report(target, Duration::from_secs(30))
}

#[test]
fn tmpfs_mount_cycles_leave_empty_reports_and_show_live_allocations() {
    if !kernel_tests_allowed("tmpfs_mount_cycles_leave_empty_reports_and_show_live_allocations") {
        return;
    }
    let _g = serial();
    let (tracer, filter) = Tracer::tracking("sym:shmem_", &[], Duration::from_secs(5));
    assert!(filter["ranges"].as_u64().unwrap() > 0, "{filter}");
    assert_eq!(filter["fs_types"][0], "tmpfs", "{filter}");
    for round in 0..3 {
        let m = TmpMount::new(&format!("alloc{round}"));
        let target = m.str().to_string();
        for i in 0..20 {
            std::fs::write(m.path.join(format!("f{i}")), b"data").unwrap();
        }
        // While mounted, the live view charges the mount's inodes to it.
        let live = tracer.wait_for(
            "the live view charging the mount",
            Duration::from_secs(10),
            |v| {
                v["type"] == "alloc_live"
                    && v["by_mount"].as_array().unwrap().iter().any(|m| {
                        m["target"] == target.as_str() && m["count"].as_u64().unwrap() >= 20
                    })
            },
        );
        assert!(
            live["by_call_site"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["function"].as_str().unwrap().starts_with("shmem_")),
            "{live}"
        );
        umount(&m.path).expect("umount");
        let report = wait_report(&tracer, &target);
        assert_eq!(report["objects"], 0, "false positives:\n{}", report["text"]);
        assert_eq!(report["uncertain"], false, "{report}");
        assert!(
            report["text"]
                .as_str()
                .unwrap()
                .contains("0 objects, 0 bytes")
        );
    }
    let lines = tracer.stop();
    let last = last_of(&lines, "alloc_live");
    assert!(last["tracked_total"].as_u64().unwrap() >= 60, "{last}");
    assert!(last["stacks"].as_u64().unwrap() > 0, "{last}");
}

/// xfs frees its per-AG structures (`xfs_initialize_perag`) with kfree_rcu(), whose
/// batches are freed by kfree_bulk(), which no tracepoint shows: without following
/// kfree_rcu()'s queues each healthy cycle reported them as leaks. Its percpu allocations
/// are tracked too, and their frees seen. The first xfs mount since boot allocates xfs's
/// UUID table (`xfs_uuid_mount`, kept for later mounts): one-time, not a leak.
#[test]
fn xfs_mount_cycles_on_loop_report_no_leaks() {
    if !kernel_tests_allowed("xfs_mount_cycles_on_loop_report_no_leaks") {
        return;
    }
    let _g = serial();
    let (tracer, filter) = Tracer::tracking("module:xfs", &[], Duration::from_secs(5));
    assert_eq!(filter["fs_types"][0], "xfs", "{filter}");
    // The reachability scan read the kernel's global data at attach.
    let notes = filter["notes"].to_string();
    assert!(
        notes.contains("reachability scan: ") && notes.contains("kernel .data, kernel .bss"),
        "{filter}"
    );
    assert!(!notes.contains("reachability is not scanned"), "{filter}");
    let fs = LoopXfs::new("allocxfs");
    let target = fs.dir_s();
    let mut reports = vec![];
    for round in 0..4 {
        if round > 0 {
            fs.mount().expect("mount");
        }
        for i in 0..50 {
            std::fs::write(fs.dir.join(format!("f{round}-{i}")), b"data").unwrap();
        }
        // While mounted, the live view charges xfs's allocations to the mount, its percpu
        // ones (`xfs_fs_fill_super`'s alloc_percpu()) among them.
        tracer.wait_for(
            "the live view charging the mount",
            Duration::from_secs(10),
            |v| {
                v["type"] == "alloc_live"
                    && v["percpu_outstanding"].as_u64().unwrap() > 0
                    && v["by_mount"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|m| m["target"] == target.as_str() && m["count"].as_u64().unwrap() > 0)
            },
        );
        umount(&fs.dir).expect("umount");
        let seen = reports.len();
        reports.push(tracer.wait_for(
            &format!("the leak report of {target}, cycle {}", round + 1),
            Duration::from_secs(30),
            |v| {
                v["type"] == "leak_report"
                    && v["mount"]["target"] == target.as_str()
                    && v["cycle"] == seen as u64 + 1
            },
        ));
    }
    assert_healthy_cycles(&reports);
    let lines = tracer.stop();
    let last = last_of(&lines, "alloc_live");
    assert!(last["tracked_total"].as_u64().unwrap() > 0, "{last}");
    // The per-AG structures went through kfree_rcu()'s queues, not through kfree.
    assert!(last["freed_by_kfree_rcu"].as_u64().unwrap() >= 3, "{last}");
    assert_eq!(last["kfree_rcu_walks_truncated"], 0, "{last}");
}

/// kfree_rcu()'s shrinker (memory pressure, or `drop_caches` as here) runs
/// `kfree_rcu_monitor()` directly, not as work: the pages whose grace period is over are
/// freed in bulk there, where no work-start walk saw them. Dropped caches a little after each
/// umount (the grace period of the per-AG structures' kfree_rcu() is over, the monitor's
/// 5 s delay not) made some cycles' `xfs_initialize_perag` objects "freed unseen" (8 of 40
/// over 10 cycles) until the shrinker's start was hooked too.
#[test]
fn xfs_structures_the_kfree_rcu_shrinker_frees_are_seen() {
    if !kernel_tests_allowed("xfs_structures_the_kfree_rcu_shrinker_frees_are_seen") {
        return;
    }
    let _g = serial();
    // The report waits past the drop, so that the shrinker, not the report's own queue
    // scan, is what meets the objects.
    let (tracer, filter) =
        Tracer::tracking("sym:xfs_", &["--leak-grace", "4s"], Duration::from_secs(5));
    assert_eq!(filter["fs_types"][0], "xfs", "{filter}");
    let fs = LoopXfs::new("allocshrink");
    let target = fs.dir_s();
    const CYCLES: u64 = 8;
    for round in 0..CYCLES {
        if round > 0 {
            fs.mount().expect("mount");
        }
        for i in 0..20 {
            std::fs::write(fs.dir.join(format!("f{round}-{i}")), b"data").unwrap();
        }
        umount(&fs.dir).expect("umount");
        std::thread::sleep(Duration::from_millis(1500));
        std::fs::write("/proc/sys/vm/drop_caches", "2").expect("drop_caches");
        let r = tracer.wait_for(
            &format!("the leak report of {target}, cycle {}", round + 1),
            Duration::from_secs(30),
            |v| {
                v["type"] == "leak_report"
                    && v["mount"]["target"] == target.as_str()
                    && v["cycle"] == round + 1
            },
        );
        let text = r["text"].as_str().unwrap();
        assert!(
            !text.contains("xfs_initialize_perag"),
            "cycle {}:\n{text}",
            round + 1
        );
        assert_eq!(r["confirmed"], 0, "{text}");
    }
    let lines = tracer.stop();
    let last = last_of(&lines, "alloc_live");
    // At least one per-AG structure per cycle went through kfree_rcu()'s queues.
    assert!(
        last["freed_by_kfree_rcu"].as_u64().unwrap() >= CYCLES,
        "{last}"
    );
}

/// ext4 on a loop device, cycled with files written (the journal, writeback kworkers'
/// preallocations, the inode cache): no confirmed leak, whatever was mounted before.
#[test]
fn ext4_mount_cycles_on_loop_report_no_confirmed_leaks() {
    if !kernel_tests_allowed("ext4_mount_cycles_on_loop_report_no_confirmed_leaks") {
        return;
    }
    let _g = serial();
    let (tracer, filter) = Tracer::tracking("sym:ext4_", &[], Duration::from_secs(5));
    assert_eq!(filter["fs_types"][0], "ext4", "{filter}");
    let fs = LoopXfs::of_type("allocext4", "ext4");
    let target = fs.dir_s();
    let mut reports = vec![];
    for round in 0..4 {
        if round > 0 {
            fs.mount().expect("mount");
        }
        for i in 0..50 {
            std::fs::write(fs.dir.join(format!("f{round}-{i}")), vec![b'x'; 8192]).unwrap();
        }
        // Through writeback before the umount, like a test that syncs.
        run("sync", &["-f", fs.dir.to_str().unwrap()]);
        umount(&fs.dir).expect("umount");
        let seen = reports.len();
        reports.push(tracer.wait_for(
            &format!("the leak report of {target}, cycle {}", round + 1),
            Duration::from_secs(30),
            |v| {
                v["type"] == "leak_report"
                    && v["mount"]["target"] == target.as_str()
                    && v["cycle"] == seen as u64 + 1
            },
        ));
    }
    for r in &reports {
        eprintln!("{}", r["text"].as_str().unwrap());
        assert_eq!(r["confirmed"], 0, "{}", r["text"].as_str().unwrap());
    }
    tracer.stop();
}

/// Opens `n` files (each a new `struct file` from the `filp` cache) and keeps them.
/// A report first looks 0.2 s after its umount (after an RCU barrier and a walk of
/// kfree_rcu()'s queues): one that would list nothing is made then, since nothing is left
/// to free, and `tracer run` of a test need not wait out the grace period after the
/// test's last umount; one that would list objects waits out its grace period, since they
/// may still be freed.
#[test]
fn an_empty_leak_report_comes_at_once_and_a_full_one_after_its_grace_period() {
    if !kernel_tests_allowed(
        "an_empty_leak_report_comes_at_once_and_a_full_one_after_its_grace_period",
    ) {
        return;
    }
    let _g = serial();
    // Empty: a healthy tmpfs cycle, with a grace period longer than the wait below.
    let (tracer, _) = Tracer::tracking(
        "sym:shmem_",
        &["--leak-grace", "120s"],
        Duration::from_secs(5),
    );
    let m = TmpMount::new("allocearly");
    let target = m.str().to_string();
    for i in 0..20 {
        std::fs::write(m.path.join(format!("f{i}")), b"data").unwrap();
    }
    umount(&m.path).expect("umount");
    let report = wait_report(&tracer, &target);
    assert_eq!(report["objects"], 0, "{}", report["text"]);
    assert_eq!(report["uncertain"], false, "{report}");
    tracer.stop();

    // Full: filp objects charged to the mount's life (files kept open across it).
    let grace = Duration::from_secs(8);
    let (tracer, _) = Tracer::tracking(
        "cache:filp",
        &["--leak-grace", "8s"],
        Duration::from_secs(5),
    );
    let m = TmpMount::new("allocgrace");
    let target = m.str().to_string();
    tracer.wait_for("the live view", Duration::from_secs(5), |v| {
        v["type"] == "alloc_live"
            && v["by_mount"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["target"] == target.as_str())
    });
    let kept = open_files(5);
    umount(&m.path).expect("umount");
    let umounted = std::time::Instant::now();
    while umounted.elapsed() < grace / 2 {
        let early = tracer
            .lines()
            .into_iter()
            .find(|v| v["type"] == "leak_report" && v["mount"]["target"] == target.as_str());
        assert!(
            early.is_none(),
            "a report listing objects came before its grace period ended: {early:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let report = wait_report(&tracer, &target);
    assert!(
        report["objects"].as_u64().unwrap() >= 5,
        "{}",
        report["text"]
    );
    drop(kept);
    tracer.stop();
}

fn open_files(n: usize) -> Vec<std::fs::File> {
    (0..n)
        .map(|_| std::fs::File::open("/dev/null").unwrap())
        .collect()
}

#[test]
fn files_kept_open_across_a_mount_are_reported_exactly() {
    if !kernel_tests_allowed("files_kept_open_across_a_mount_are_reported_exactly") {
        return;
    }
    let _g = serial();
    const N: usize = 5;
    let tgid = std::process::id() as u64;
    let (tracer, _) = Tracer::tracking(
        "cache:filp",
        &["--alloc-stack-per-object"],
        Duration::from_secs(5),
    );
    let m = TmpMount::new("allocfilp");
    let target = m.str().to_string();
    // Let the mount's event reach the tracer before the opens.
    tracer.wait_for("the live view", Duration::from_secs(5), |v| {
        v["type"] == "alloc_live"
            && v["by_mount"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["target"] == target.as_str())
    });
    let kept = open_files(N);
    umount(&m.path).expect("umount");
    let report = wait_report(&tracer, &target);
    let object_size: u64 = std::fs::read_to_string("/sys/kernel/slab/filp/object_size")
        .map(|s| s.trim().parse().unwrap())
        .unwrap_or(0);
    let ours: Vec<&Value> = report["object_list"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["tgid"] == tgid)
        .collect();
    assert_eq!(ours.len(), N, "{}", report["text"]);
    for o in &ours {
        assert_eq!(o["cache"], "filp", "{o}");
        assert!(!o["comm"].as_str().unwrap().is_empty(), "{o}");
        if object_size > 0 {
            assert_eq!(o["size"], object_size, "{o}");
        }
    }
    let text = report["text"].as_str().unwrap();
    // One cycle confirms nothing: our files are listed as unconfirmed (or uncertain, when
    // the kernel skipped a run of the free programs meanwhile), never as kmemleak's
    // "unreferenced object".
    assert_eq!(report["cycle"], 1, "{text}");
    assert_eq!(report["confirmed"], 0, "{text}");
    let listed: Vec<String> = ["unconfirmed", "uncertain"]
        .iter()
        .flat_map(|c| part_ptrs(&report, c, false))
        .collect();
    for o in &ours {
        assert!(
            listed.contains(&o["ptr"].as_str().unwrap().to_string()),
            "{o}\n{text}"
        );
    }
    assert!(
        text.contains("unconfirmed object 0x") || text.contains("uncertain object 0x"),
        "{text}"
    );
    assert!(!text.contains("unreferenced object"), "{text}");
    let pid = ours[0]["pid"].as_u64().unwrap();
    assert!(text.contains(&format!("\", pid {pid}, age ")), "{text}");
    // The group of the open(2) path: its own stack, from the allocation to the syscall.
    let frames = |g: &Value| -> Vec<String> {
        g["backtrace"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap().to_string())
            .collect()
    };
    let group = report["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| frames(g).iter().any(|f| f.contains("openat")))
        .unwrap_or_else(|| panic!("no group with an openat stack:\n{text}"));
    assert!(group["count"].as_u64().unwrap() >= N as u64, "{group}");
    let bt = frames(group);
    assert!(bt[0].starts_with("alloc_empty_file+0x"), "{bt:?}");
    assert!(bt[0].contains('/'), "symbol+0xoff/0xlen: {bt:?}");
    drop(kept);
    drop(tracer);
}

#[test]
fn a_filter_matching_nothing_tracks_nothing() {
    if !kernel_tests_allowed("a_filter_matching_nothing_tracks_nothing") {
        return;
    }
    let _g = serial();
    let tracer = Tracer::start(&[
        "--no-events",
        "--alloc-filter",
        "sym:no_such_function_prefix_",
    ]);
    let filter = tracer.wait_for("the filter line", Duration::from_secs(5), |v| {
        v["type"] == "alloc_filter"
    });
    assert_eq!(filter["filter"]["ranges"], 0);
    assert!(
        filter["filter"]["notes"][0]
            .as_str()
            .unwrap()
            .contains("track nothing")
    );
    let m = TmpMount::new("allocnone");
    for i in 0..10 {
        std::fs::write(m.path.join(format!("f{i}")), b"x").unwrap();
    }
    umount(&m.path).unwrap();
    std::thread::sleep(Duration::from_millis(600));
    let lines = tracer.stop();
    let live: Vec<&Value> = lines.iter().filter(|v| v["type"] == "alloc_live").collect();
    assert!(!live.is_empty());
    for v in live {
        assert_eq!(v["tracked_total"], 0, "{v}");
        assert_eq!(v["outstanding"], 0, "{v}");
    }
}

#[test]
fn a_full_map_counts_what_it_could_not_track() {
    if !kernel_tests_allowed("a_full_map_counts_what_it_could_not_track") {
        return;
    }
    let _g = serial();
    let tracer = Tracer::start(&[
        "--no-events",
        "--alloc-filter",
        "cache:filp",
        "--alloc-max-entries",
        "8",
    ]);
    let kept = open_files(64);
    let v = tracer.wait_for("map-full drops", Duration::from_secs(10), |v| {
        v["type"] == "alloc_live" && v["untracked_map_full"].as_u64().unwrap() > 0
    });
    assert!(v["outstanding"].as_u64().unwrap() <= 8, "{v}");
    drop(kept);
    tracer.stop();
}

/// A mount loop faster than its leak reports: at most `MAX_PENDING_REPORTS` (32) wait for
/// their grace period; the unmounts beyond get no report, and a warning says how many, once
/// while tracing and again at the end, when the waiting reports are made early.
#[test]
fn a_mount_loop_faster_than_its_reports_is_bounded_and_says_what_it_dropped() {
    if !kernel_tests_allowed(
        "a_mount_loop_faster_than_its_reports_is_bounded_and_says_what_it_dropped",
    ) {
        return;
    }
    let _g = serial();
    let (tracer, _) = Tracer::tracking(
        "sym:shmem_",
        &["--leak-grace", "60s"],
        Duration::from_secs(5),
    );
    const CAP: u64 = 32;
    const CYCLES: u64 = CAP + 8;
    for i in 0..CYCLES {
        let m = TmpMount::new(&format!("loop{i}"));
        std::fs::write(m.path.join("f"), b"data").unwrap();
        umount(&m.path).expect("umount");
    }
    let said = tracer.wait_for("the warning", Duration::from_secs(10), |v| {
        v["type"] == "warning" && v["leak_reports_not_made"].as_u64().is_some()
    });
    assert!(
        said["leak_reports_not_made"].as_u64().unwrap() >= 1,
        "{said}"
    );
    let lines = tracer.stop();
    let reports = lines.iter().filter(|v| v["type"] == "leak_report").count() as u64;
    assert_eq!(
        reports, CAP,
        "the waiting reports are made at the end, no more"
    );
    let warnings: Vec<&Value> = lines
        .iter()
        .filter(|v| v["type"] == "warning" && v["leak_reports_not_made"].is_u64())
        .collect();
    assert_eq!(
        warnings.len(),
        2,
        "said once while tracing, once at the end: {warnings:#?}"
    );
    let at_end = warnings[1]["leak_reports_not_made"].as_u64().unwrap();
    assert!(at_end >= CYCLES - CAP, "{:#}", warnings[1]);
    assert!(
        warnings[1]["warning"]
            .as_str()
            .unwrap()
            .contains("got no leak report"),
        "{:#}",
        warnings[1]
    );
}

/// The batch read of the outstanding map (`alloc::batch`) returns every entry of a real
/// BPF hash map once, with its value, across several batches (more entries than one call
/// asks for), and an empty map as empty: had it failed, the tracker would fall back to
/// iterating and no other test would notice.
#[test]
fn a_hash_map_read_in_batches_returns_every_entry_once() {
    if !kernel_tests_allowed("a_hash_map_read_in_batches_returns_every_entry_once") {
        return;
    }
    use std::os::fd::AsFd;

    use aya::maps::{HashMap, IterableMap, MapData};
    let mut map = HashMap::<MapData, u64, [u64; 7]>::create(20_000, 0).unwrap();
    let empty = tracer::alloc::batch::lookup_all::<u64, [u64; 7]>(map.map().fd().as_fd());
    assert!(empty.unwrap().is_empty());
    // Slab-like addresses: 10,000 entries, more than two batches of 4096.
    let key = |i: u64| 0xffff_8880_0000_0000 + i * 192;
    for i in 0..10_000u64 {
        map.insert(key(i), [i, i + 1, i + 2, i + 3, i + 4, i + 5, i + 6], 0)
            .unwrap();
    }
    let mut got =
        tracer::alloc::batch::lookup_all::<u64, [u64; 7]>(map.map().fd().as_fd()).unwrap();
    got.sort_by_key(|(k, _)| *k);
    assert_eq!(got.len(), 10_000);
    for (i, (k, v)) in got.iter().enumerate() {
        let i = i as u64;
        assert_eq!(*k, key(i));
        assert_eq!(*v, [i, i + 1, i + 2, i + 3, i + 4, i + 5, i + 6]);
    }
}
