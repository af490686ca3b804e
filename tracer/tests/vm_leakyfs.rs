//! The VM tier's own tests (`cargo xtask vm-test` runs them inside Debian's cloud kernel):
//! leakyfs (`xtask/vm/leakyfs/`), a filesystem module that misbehaves on purpose, is loaded
//! with known knobs and the tracer's reports are checked against what it is known to do:
//! the objects it leaks at mount and on a failed mount, listed exactly (count, size, the
//! allocating function in the backtrace) and nothing else of the module; and the file its
//! own delayed work keeps, which makes umount EBUSY until that work drops it through
//! `delayed_fput`.
//!
//! Ignored on the host (its kernel has no modules, and no leakyfs): the VM's `/init` runs
//! them with `--ignored`, `LEAKYFS_KO` naming the module and `TRACER_BIN` the tracer.

mod common;

use std::{
    ffi::CString,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use common::*;
use serde_json::Value;

const EIO: i32 = 5;

/// leakyfs loaded with some knobs; unloaded on drop.
struct Leakyfs;

impl Leakyfs {
    fn load(params: &[String]) -> Leakyfs {
        let ko = std::env::var("LEAKYFS_KO")
            .expect("LEAKYFS_KO names leakyfs.ko (these tests run inside `cargo xtask vm-test`)");
        // Left loaded by an earlier test that failed?
        let _ = Command::new("rmmod").arg("leakyfs").output();
        let out = Command::new("insmod")
            .arg(&ko)
            .args(params)
            .output()
            .expect("running insmod");
        assert!(
            out.status.success(),
            "insmod {ko} {params:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Leakyfs
    }
}

impl Drop for Leakyfs {
    fn drop(&mut self) {
        for _ in 0..50 {
            if Command::new("rmmod")
                .arg("leakyfs")
                .output()
                .is_ok_and(|o| o.status.success())
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A directory for a leakyfs mount, lazily unmounted and removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("tracer-vm-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }

    fn str(&self) -> &str {
        self.0.to_str().unwrap()
    }

    /// mount(2) of a leakyfs here: the errno, not mount(8)'s exit code.
    fn mount(&self) -> Result<(), i32> {
        let c = |s: &str| CString::new(s).unwrap();
        let (src, dir, ty) = (c("leakyfs"), c(self.str()), c("leakyfs"));
        // SAFETY: valid C strings, no data.
        let rc =
            unsafe { libc::mount(src.as_ptr(), dir.as_ptr(), ty.as_ptr(), 0, std::ptr::null()) };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error().raw_os_error().unwrap())
        }
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).output();
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Retries umount until it succeeds; how many EBUSY came first.
fn umount_eventually(path: &Path) -> usize {
    umount_within(path, Duration::from_secs(60), Duration::from_millis(50))
}

/// The tracer, tracking allocations of leakyfs's code, one stack per object.
fn alloc_tracer() -> Tracer {
    let (t, f) = Tracer::tracking(
        "module:leakyfs",
        &["--alloc-stack-per-object"],
        Duration::from_secs(30),
    );
    // The module's text, from kallsyms and /sys/module: no fallback to a name prefix.
    assert!(f["ranges"].as_u64().unwrap() >= 1, "{f:#}");
    assert!(f["matched_functions"].as_u64().unwrap() >= 5, "{f:#}");
    assert_eq!(f["foreign_functions"], 0, "{f:#}");
    assert_eq!(f["fs_types"], serde_json::json!(["leakyfs"]), "{f:#}");
    assert!(
        f["notes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| !n.as_str().unwrap().contains("built in")),
        "{f:#}"
    );
    t
}

fn wait_report(t: &Tracer, target: &str) -> Value {
    t.leak_report(target, Duration::from_secs(90))
}

/// Checks that `report` lists exactly `n` objects of `size` bytes, all allocated by
/// `function` (first frame of each backtrace, a leakyfs symbol with offset and length),
/// called through `callers` (in that order, other frames between them allowed).
fn assert_exact_leaks(report: &Value, n: usize, size: u64, function: &str, callers: &[&str]) {
    let text = report["text"].as_str().unwrap();
    eprintln!("{text}");
    assert_eq!(report["objects"], n as u64, "{text}");
    assert_eq!(report["bytes"], n as u64 * size, "{text}");
    // Nothing about the mount makes the list doubtful: no other leakyfs mount alive, no
    // lazy umount, no address reused. The kernel may skip a run of the free programs (a
    // free inside another program's run, counted in recursion_misses): the report then says
    // so, and stays exact here since every free of the module's objects was seen.
    for r in report["reasons"].as_array().unwrap() {
        let r = r.as_str().unwrap();
        assert!(
            r.contains("recursion_misses")
                || r.starts_with("reachability: ")
                || (r.contains("kfree_rcu()") && !r.contains("allocated again")),
            "{r}\n{text}"
        );
    }
    let objects = report["object_list"].as_array().unwrap();
    assert_eq!(objects.len(), n, "{text}");
    for o in objects {
        assert_eq!(o["size"], size, "{o}");
        // kmalloc, not a named cache.
        assert_eq!(o["cache"], "", "{o}");
    }
    // Each object printed once, with its verdict (one cycle: not yet confirmed).
    assert_eq!(text.matches(" object 0x").count(), n, "{text}");
    assert_eq!(text.matches("unreferenced object 0x").count(), 0, "{text}");
    assert_eq!(report["confirmed"], 0, "{text}");
    assert_eq!(
        text.matches(&format!("(size {size}):")).count(),
        n,
        "{text}"
    );
    let mut counted = 0;
    for g in report["groups"].as_array().unwrap() {
        counted += g["count"].as_u64().unwrap();
        let frame = g["function"].as_str().unwrap();
        assert!(
            frame.starts_with(&format!("{function}+0x")) && frame.ends_with(" [leakyfs]"),
            "call site {frame} is not in {function} [leakyfs]: {text}"
        );
        let bt: Vec<&str> = g["backtrace"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap())
            .collect();
        // The stack starts at the allocating function (allocator frames trimmed), named
        // `symbol+0xoff/0xlen [module]` from the module's kallsyms.
        let first = bt.first().unwrap_or_else(|| panic!("no backtrace: {text}"));
        assert!(
            first.starts_with(&format!("{function}+0x"))
                && first.contains("/0x")
                && first.ends_with(" [leakyfs]"),
            "{bt:?}"
        );
        // ... and goes on through the mount's path in the VFS.
        let mut rest = bt[1..].iter();
        for caller in callers {
            assert!(
                rest.any(|f| f.starts_with(&format!("{caller}+0x"))),
                "no {caller} in {bt:?}"
            );
        }
    }
    assert_eq!(counted, n as u64, "{text}");
}

/// After a report: what the tracker still holds of the module is exactly the leaks (the
/// module's other allocations were freed, and seen freed).
fn assert_nothing_else_outstanding(t: &Tracer, report: &Value, n: u64, function: &str) {
    let after = report["mount"]["end_ns"].as_u64().unwrap();
    let live = t.wait_for(
        "a live view after the report",
        Duration::from_secs(30),
        |v| v["type"] == "alloc_live" && v["ts_ns"].as_u64().unwrap() > after,
    );
    assert_eq!(live["outstanding"], n, "{live:#}");
    let sites = live["by_call_site"].as_array().unwrap();
    assert_eq!(sites.len(), 1, "{live:#}");
    assert!(
        sites[0]["function"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{function}+0x")),
        "{live:#}"
    );
    assert_eq!(sites[0]["count"], n, "{live:#}");
}

/// The report of cycle `cycle` of `dir`'s mounts.
fn wait_cycle_report(t: &Tracer, target: &str, cycle: u64) -> Value {
    t.wait_for(
        &format!("the leak report of {target}, cycle {cycle}"),
        Duration::from_secs(90),
        |v| v["type"] == "leak_report" && v["mount"]["target"] == target && v["cycle"] == cycle,
    )
}

/// The objects of a classified report's parts of `class` (`earlier` or this window's):
/// (address, function of the call site).
fn part_objects(report: &Value, class: &str, earlier: bool) -> Vec<(String, String)> {
    report["parts"]
        .as_array()
        .unwrap_or_else(|| panic!("a classified report: {report:#}"))
        .iter()
        .filter(|p| p["class"] == class && p["earlier"] == earlier)
        .flat_map(|p| p["object_list"].as_array().unwrap().clone())
        .map(|o| {
            (
                o["ptr"].as_str().unwrap().to_string(),
                o["function"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// leak_count=N, leak_size=S: each mount leaks N objects of S bytes from
/// `leakyfs_fs_alloc()`; table_size=T: the first mount allocates a table it keeps
/// (`leakyfs_table_alloc()`). The mount also allocates and frees (the `hold` file's work
/// item, `hold_ms` after its open). Cycle 1's report lists exactly the N leaks and the
/// table; the leaks are not confirmed yet (one cycle cannot tell), the table is referenced
/// at once (its address is in leakyfs's `.bss`, `leakyfs_table`: the reachability scan);
/// by cycle 3 every leak of cycles 1 and 2 is confirmed by the cycle rule, and the table is
/// still referenced, never a leak.
#[test]
#[ignore = "VM tier: runs inside cargo xtask vm-test"]
fn vm_leaks_at_mount_are_reported_exactly() {
    assert!(kernel_tests_allowed(
        "vm_leaks_at_mount_are_reported_exactly"
    ));
    let _g = serial();
    const N: usize = 3;
    const S: u64 = 200;
    const T: u64 = 96;
    let _m = Leakyfs::load(&[
        format!("leak_count={N}"),
        format!("leak_size={S}"),
        format!("table_size={T}"),
        "hold_ms=100".into(),
    ]);
    let tracer = alloc_tracer();
    let dir = Dir::new("leaks");
    let mut reports = vec![];
    for cycle in 1..=3u64 {
        dir.mount().expect("mounting leakyfs");
        // The module allocates its hold record here, and frees it from its work 100 ms later.
        drop(std::fs::File::open(dir.0.join("hold")).expect("opening hold"));
        umount_eventually(&dir.0);
        reports.push(wait_cycle_report(&tracer, dir.str(), cycle));
    }
    let report = &reports[0];
    assert_eq!(report["mount"]["fs_type"], "leakyfs", "{report:#}");
    // Cycle 1: the leaks, exactly, not yet confirmed, and the table, referenced.
    let table: Vec<&Value> = report["object_list"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["size"] == T)
        .collect();
    assert_eq!(table.len(), 1, "{}", report["text"]);
    let table_ptr = table[0]["ptr"].as_str().unwrap().to_string();
    assert_eq!(report["objects"], N as u64 + 1, "{}", report["text"]);
    let text = report["text"].as_str().unwrap();
    eprintln!("{text}");
    assert_eq!(report["confirmed"], 0, "{text}");
    assert_eq!(text.matches("unreferenced object 0x").count(), 0, "{text}");
    assert_eq!(
        report["counts"]["unconfirmed"].as_u64().unwrap()
            + report["counts"]["uncertain"].as_u64().unwrap(),
        N as u64,
        "{text}"
    );
    let referenced = part_objects(report, "referenced", false);
    assert_eq!(referenced.len(), 1, "{text}");
    assert_eq!(referenced[0].0, table_ptr, "{text}");
    assert!(
        text.contains(&format!("referenced object {table_ptr} (size {T}):")),
        "{text}"
    );
    assert!(
        text.contains("its address is held in global data at leakyfs_table+0x0 [leakyfs] (module leakyfs data)"),
        "{text}"
    );
    assert!(text.contains("reachability: "), "{text}");
    assert_eq!(text.matches(&format!("(size {S}):")).count(), N, "{text}");
    // The leaks' groups: allocated by leakyfs_fs_alloc through the mount path.
    let groups = report["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2, "{text}");
    for g in groups.iter().filter(|g| g["bytes"] != T) {
        assert_eq!(g["count"], N as u64, "{text}");
        let frame = g["function"].as_str().unwrap();
        assert!(
            frame.starts_with("leakyfs_fs_alloc+0x") && frame.ends_with(" [leakyfs]"),
            "{frame}: {text}"
        );
        let bt: Vec<&str> = g["backtrace"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap())
            .collect();
        let mut rest = bt.iter();
        for caller in ["leakyfs_fill_super", "vfs_get_tree", "path_mount"] {
            assert!(
                rest.any(|f| f.starts_with(&format!("{caller}+0x"))),
                "no {caller} in {bt:?}"
            );
        }
    }
    // Cycle 3: cycles 1 and 2 left N leaks each, still allocated: confirmed; the table is
    // referenced; cycle 3's own N are confirmed too (or uncertain when the kernel skipped a
    // run of the free programs since they were allocated).
    let r3 = &reports[2];
    let text = r3["text"].as_str().unwrap();
    eprintln!("{text}");
    assert_eq!(r3["cycle"], 3, "{text}");
    let earlier_leaks = part_objects(r3, "confirmed", true);
    assert_eq!(earlier_leaks.len(), 2 * N, "{text}");
    assert!(
        earlier_leaks
            .iter()
            .all(|(_, f)| f.starts_with("leakyfs_fs_alloc+0x")),
        "{text}"
    );
    let kept = part_objects(r3, "referenced", true);
    assert_eq!(kept.len(), 1, "{text}");
    assert_eq!(kept[0].0, table_ptr, "{text}");
    assert!(kept[0].1.starts_with("leakyfs_table_alloc+0x"), "{text}");
    assert!(
        text.contains(&format!("referenced object {table_ptr} (size {T}):")),
        "{text}"
    );
    assert_eq!(r3["earlier_counts"]["one_time"], 0, "{text}");
    assert_eq!(
        r3["counts"]["confirmed"].as_u64().unwrap() + r3["counts"]["uncertain"].as_u64().unwrap(),
        N as u64,
        "{text}"
    );
    assert_eq!(r3["counts"]["unconfirmed"], 0, "{text}");
    assert!(text.contains("unreferenced object 0x"), "{text}");
    assert!(text.contains("rule: cycle rule: "), "{text}");
    // What the tracker still holds of the module: the leaks and the table.
    let after = r3["mount"]["end_ns"].as_u64().unwrap();
    let live = tracer.wait_for(
        "a live view after the report",
        Duration::from_secs(30),
        |v| v["type"] == "alloc_live" && v["ts_ns"].as_u64().unwrap() > after,
    );
    assert_eq!(live["outstanding"], 3 * N as u64 + 1, "{live:#}");
    let mut sites: Vec<(String, u64)> = live["by_call_site"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let f = s["function"].as_str().unwrap();
            (
                f[..f.find('+').unwrap()].to_string(),
                s["count"].as_u64().unwrap(),
            )
        })
        .collect();
    sites.sort();
    assert_eq!(
        sites,
        vec![
            ("leakyfs_fs_alloc".to_string(), 3 * N as u64),
            ("leakyfs_table_alloc".to_string(), 1)
        ],
        "{live:#}"
    );
    let lines = tracer.stop();
    let last = last_of(&lines, "alloc_live");
    // The hold record was tracked, and its free seen.
    assert!(last["tracked_total"].as_u64().unwrap() > N as u64, "{last}");
    assert!(last["freed_total"].as_u64().unwrap() >= 1, "{last}");
}

/// fail_mount=1: the mount fails with EIO after `leakyfs_fill_super_error()` leaked one
/// object of leak_size bytes; the failed mount gets its own report, listing that object.
#[test]
#[ignore = "VM tier: runs inside cargo xtask vm-test"]
fn vm_a_failed_mount_reports_its_error_path_leak() {
    assert!(kernel_tests_allowed(
        "vm_a_failed_mount_reports_its_error_path_leak"
    ));
    let _g = serial();
    const S: u64 = 72;
    // leak_count must not matter: the failing mount never reaches leakyfs_fs_alloc().
    let _m = Leakyfs::load(&[
        "fail_mount=1".into(),
        "leak_count=4".into(),
        format!("leak_size={S}"),
    ]);
    let tracer = alloc_tracer();
    let dir = Dir::new("failmount");
    assert_eq!(dir.mount(), Err(EIO), "fail_mount=1 makes mount fail");
    let report = wait_report(&tracer, dir.str());
    assert_eq!(report["mount"]["failed"], -(EIO as i64), "{report:#}");
    assert!(
        report["text"]
            .as_str()
            .unwrap()
            .contains("after the mount failed (error -5)"),
        "{}",
        report["text"]
    );
    // leakyfs_fill_super() tail-calls it: its frame is not on the stack.
    assert_exact_leaks(
        &report,
        1,
        S,
        "leakyfs_fill_super_error",
        &["vfs_get_tree", "path_mount"],
    );
    assert_nothing_else_outstanding(&tracer, &report, 1, "leakyfs_fill_super_error");
    tracer.stop();
}

/// hold_ms: opening `hold` makes the module keep the file, and drop it from its own delayed
/// work (`leakyfs_put_work`) hold_ms later, through `delayed_fput`. An umount in between is
/// EBUSY; the verdict names the file, and its release follows.
#[test]
#[ignore = "VM tier: runs inside cargo xtask vm-test"]
fn vm_a_file_held_by_the_modules_work_makes_umount_busy() {
    assert!(kernel_tests_allowed(
        "vm_a_file_held_by_the_modules_work_makes_umount_busy"
    ));
    let _g = serial();
    // Long enough for the umount below to land inside it, even under TCG.
    let _m = Leakyfs::load(&["hold_ms=3000".into()]);
    // Played again when the kernel skipped program runs before the verdict and it says
    // so (on 7.2 under load the classic syscall programs skip runs now and then: the
    // test's own open was unseen once in a fresh-clone CI), up to three times.
    let mut attempt = 0;
    let (tracer, dir, target, hold_s, v) = loop {
        attempt += 1;
        let tracer = Tracer::start(&["--follow-work", "leakyfs_put_work"]);
        let dir = Dir::new("hold");
        dir.mount().expect("mounting leakyfs");
        let target = dir.str().to_string();
        let hold = dir.0.join("hold");
        let hold_s = hold.to_str().unwrap().to_string();
        drop(std::fs::File::open(&hold).expect("opening hold"));
        assert_eq!(
            umount(&dir.0),
            Err(EBUSY),
            "leakyfs holds the file for 3 s after its close"
        );
        let v = tracer.wait_notice("the verdict", "verdict", |v| {
            v["kind"] == "umount_busy" && v["target"] == target.as_str()
        });
        let text = v["text"].as_str().unwrap();
        eprintln!("{text}");
        if attempt < 3 && v["culprits"].as_array().unwrap().is_empty() && weakened(&v) {
            eprintln!("attempt {attempt}: runs skipped or records lost before the verdict, again");
            umount_eventually(&dir.0);
            tracer.stop();
            continue;
        }
        break (tracer, dir, target, hold_s, v);
    };
    assert_eq!(v["mount"]["fs_type"], "leakyfs", "{v:#}");
    let culprits = v["culprits"].as_array().unwrap();
    assert_eq!(culprits.len(), 1, "{v:#}");
    let c = &culprits[0];
    assert_eq!(c["name"], hold_s.as_str(), "{c:#}");
    assert_eq!(c["first_how"], "open", "{c:#}");
    // Our fd is closed: whatever holds it, it is not an fd of ours.
    let me = std::process::id() as i64;
    for h in c["holders"].as_array().unwrap() {
        assert!(
            !(h["kind"] == "fd" && h["task"]["pid"] == me),
            "the closed fd still listed: {c:#}"
        );
    }
    let file = c["file"].clone();
    let r = tracer.wait_for("the release", Duration::from_secs(60), |n| {
        n["type"] == "notice" && n["notice"] == "culprit_released" && n["file"]["file"] == file
    });
    eprintln!("{}", r["text"].as_str().unwrap());
    let chain = r["chain"].as_array().unwrap();
    let fns: Vec<&str> = chain
        .iter()
        .filter_map(|l| l["function_name"].as_str())
        .collect();
    if tracer.release_seen_in_place() {
        // The release ran in delayed_fput, armed by the module's work, which our open armed.
        assert_eq!(fns.first(), Some(&"delayed_fput"), "{r:#}");
        assert!(fns.contains(&"leakyfs_put_work"), "{r:#}");
        assert_eq!(chain.last().unwrap()["tgid"], me, "{r:#}");
    } else {
        // On tracepoints alone the release is the filp's free, which 6.1 does from an RCU
        // callback: when it came is known, which work it came from is not.
        eprintln!("the release is not seen in place on this kernel: its chain is not checked");
    }
    let failed_more = umount_eventually(&dir.0);
    let s = tracer.wait_for("the story's end", Duration::from_secs(60), |n| {
        n["type"] == "notice"
            && n["notice"] == "story_closed"
            && n["story"]["what"] == format!("umount {target}")
    });
    assert_eq!(s["failed_attempts"], 1 + failed_more as u64, "{s:#}");
    assert_eq!(s["culprits_released"], 1, "{s:#}");
    tracer.stop();
}

/// xfs mount cycles on a loop device right after boot (when run first, the VM's first xfs
/// mount: xfs allocates its UUID table, `xfs_uuid_mount`, and keeps it for later mounts):
/// no confirmed leak; what the first cycle kept is one-time from the second cycle on.
#[test]
#[ignore = "VM tier: runs inside cargo xtask vm-test"]
fn vm_xfs_cycles_after_boot_report_no_leaks() {
    assert!(kernel_tests_allowed(
        "vm_xfs_cycles_after_boot_report_no_leaks"
    ));
    let _g = serial();
    let (tracer, _) = Tracer::tracking("module:xfs", &[], Duration::from_secs(30));
    let fs = LoopXfs::new("vmxfs");
    let target = fs.dir_s();
    let mut reports = vec![];
    for cycle in 1..=3u64 {
        if cycle > 1 {
            fs.mount().expect("mount");
        }
        for i in 0..20 {
            std::fs::write(fs.dir.join(format!("f{cycle}-{i}")), b"data").unwrap();
        }
        umount(&fs.dir).expect("umount");
        reports.push(wait_cycle_report(&tracer, &target, cycle));
    }
    let uuid_table = reports[0]["text"]
        .as_str()
        .unwrap()
        .contains("xfs_uuid_mount");
    eprintln!(
        "xfs's UUID table {} in cycle 1",
        if uuid_table {
            "was allocated"
        } else {
            "was not allocated (xfs was mounted before)"
        }
    );
    if uuid_table {
        // Held by xfs's global `xfs_uuid_table`: referenced from the first cycle on.
        let text = reports[0]["text"].as_str().unwrap();
        // Named where kallsyms lists module data symbols (6.1, 7.2), by offset otherwise.
        assert!(
            text.contains("its address is held in global data at xfs_uuid_table+0x0")
                || text.contains("its address is held in global data at module xfs data+0x"),
            "{text}"
        );
        assert_eq!(reports[0]["counts"]["referenced"], 1, "{text}");
    }
    assert_healthy_cycles(&reports);
    tracer.stop();
}

/// ext4 (built in) on a loop device, cycled with files written and synced, in a VM where no
/// other ext4 is mounted (on the host the root filesystem is ext4, which makes every ext4
/// object's owner unclear): no confirmed leak.
#[test]
#[ignore = "VM tier: runs inside cargo xtask vm-test"]
fn vm_ext4_cycles_report_no_confirmed_leaks() {
    assert!(kernel_tests_allowed(
        "vm_ext4_cycles_report_no_confirmed_leaks"
    ));
    let _g = serial();
    let (tracer, _) = Tracer::tracking("sym:ext4_", &[], Duration::from_secs(30));
    let fs = LoopXfs::of_type("vmext4", "ext4");
    let target = fs.dir_s();
    let mut reports = vec![];
    for cycle in 1..=4u64 {
        if cycle > 1 {
            fs.mount().expect("mount");
        }
        for i in 0..20 {
            std::fs::write(fs.dir.join(format!("f{cycle}-{i}")), vec![b'x'; 8192]).unwrap();
        }
        run("sync", &[]);
        umount(&fs.dir).expect("umount");
        reports.push(wait_cycle_report(&tracer, &target, cycle));
    }
    for r in &reports {
        eprintln!("{}", r["text"].as_str().unwrap());
    }
    for r in &reports {
        let text = r["text"].as_str().unwrap();
        assert_eq!(r["confirmed"], 0, "{text}");
        assert!(!text.contains("is also mounted at"), "{text}");
    }
    tracer.stop();
}

/// Whether a verdict says the kernel skipped program runs or records were lost before it.
fn weakened(v: &Value) -> bool {
    v["evidence_limits"].as_array().is_some_and(|l| {
        l.iter().any(|x| {
            x.as_str()
                .is_some_and(|x| x.contains("skipped by the kernel") || x.contains("records lost"))
        })
    })
}
