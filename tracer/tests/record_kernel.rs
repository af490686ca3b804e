//! Recording and `tracer run` on the real kernel: a recorded EBUSY scenario replays to
//! exactly what the live engine said, recorded leak reports replay to exactly what the live
//! tracer said, `tracer run` exits with the command's status and leaves nothing attached, a
//! fake xfstests run gives per-test sections (with their leak reports), and a tracer killed
//! mid-recording leaves a readable file.
//!
//! `UPDATE_FIXTURE=1 cargo test -p tracer --test record_kernel make_fixture` re-records
//! `tests/fixtures/fake-xfstests.trace` (`make_alloc_fixture`:
//! `fake-xfstests-alloc.trace`, with allocation tracking); then `UPDATE_GOLDEN=1 cargo test
//! -p tracer --test report` for their golden reports.

mod common;

use std::{
    fs::File,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use common::*;
use serde_json::Value;

/// Not a test of its own: the child side of the scenarios (see `spawn_scenario`).
#[test]
fn scenario_child() {
    if let Some((scenario, args)) = scenario() {
        play_shared_scenario(&scenario, &args);
    }
}

/// Program ids some live process holds (a program fd or a link fd: `prog_id:` in fdinfo).
fn held_program_ids() -> std::collections::BTreeSet<u32> {
    let mut ids = std::collections::BTreeSet::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return ids;
    };
    for p in procs.flatten() {
        let Ok(fds) = std::fs::read_dir(p.path().join("fdinfo")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(info) = std::fs::read_to_string(fd.path()) else {
                continue;
            };
            for l in info.lines() {
                if let Some(id) = l.strip_prefix("prog_id:") {
                    ids.extend(id.trim().parse::<u32>().ok());
                }
            }
        }
    }
    ids
}

/// Our programs still loaded that no live process holds: left behind by a tracer that
/// exited. (Programs of other tracers running on this machine meanwhile are held by them.)
fn orphaned_programs() -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let names = our_programs_loaded();
        let ours: Vec<(u32, String)> = aya::programs::loaded_programs()
            .filter_map(Result::ok)
            .filter_map(|p| Some((p.id(), p.name_as_str()?.to_string())))
            .filter(|(_, n)| names.contains(n))
            .collect();
        let held = held_program_ids();
        let left: Vec<String> = ours
            .into_iter()
            .filter(|(id, _)| !held.contains(id))
            .map(|(id, n)| format!("{n} (id {id})"))
            .collect();
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn tracer_cmd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tracer"))
}

/// Every notice of a JSON report (stories and detached mounts), sorted.
fn report_notices(report: &Value) -> Vec<Value> {
    let mut v = Vec::new();
    for t in report["tests"].as_array().unwrap() {
        for s in t["ebusy_stories"].as_array().unwrap() {
            v.extend(s["notices"].as_array().unwrap().iter().cloned());
        }
        v.extend(
            t["leaks"]["detached_mount_notices"]
                .as_array()
                .unwrap()
                .iter()
                .cloned(),
        );
    }
    sort(v)
}

fn ts_of(n: &Value) -> u64 {
    n["ts_ns"].as_u64().unwrap_or(0)
}

fn sort(mut v: Vec<Value>) -> Vec<Value> {
    v.sort_by_key(|n| (ts_of(n), n.to_string()));
    v
}

fn json_report(path: &Path, extra: &[&str]) -> Value {
    let out = tracer_cmd()
        .args(["report", path.to_str().unwrap(), "--format", "json"])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn recorded_ebusy_scenarios_replay_to_what_the_live_engine_said() {
    if !kernel_tests_allowed("recorded_ebusy_scenarios_replay_to_what_the_live_engine_said") {
        return;
    }
    let _g = serial();
    let rec = tmp("live-vs-replay.trace");
    let tracer = Tracer::start(&["--record", rec.to_str().unwrap()]);

    // An fd held by a live process, then killed.
    let m = TmpMount::new("rec-fd");
    let held = m.path.join("held");
    let mut child = spawn_scenario("scenario_child", "hold", held.to_str().unwrap());
    wait_ready(&mut child);
    assert_eq!(umount(&m.path), Err(EBUSY));
    let target = m.str().to_string();
    tracer.wait_notice("the fd verdict", "verdict", |v| {
        v["target"] == target.as_str()
    });
    kill9(&mut child);
    umount_eventually(&m.path);
    tracer.wait_notice("the fd story's end", "story_closed", |v| {
        v["story"]["what"] == format!("umount {target}").as_str()
    });

    // Files only a ring holds, the ring's owner killed: the deferral chain through
    // io_ring_exit_work and delayed_fput.
    let u = TmpMount::new("rec-uring");
    let (a, b) = (u.path.join("a"), u.path.join("b"));
    let mut child = spawn_scenario(
        "scenario_child",
        "uring",
        &format!("{},{}", a.display(), b.display()),
    );
    wait_ready(&mut child);
    assert_eq!(umount(&u.path), Err(EBUSY));
    let utarget = u.str().to_string();
    tracer.wait_notice("the ring verdict", "verdict", |v| {
        v["target"] == utarget.as_str()
    });
    kill9(&mut child);
    umount_eventually(&u.path);
    tracer.wait_notice("the ring story's end", "story_closed", |v| {
        v["story"]["what"] == format!("umount {utarget}").as_str()
    });
    let lines = tracer.stop();

    let live = sort(
        lines
            .iter()
            .filter(|v| v["type"] == "notice")
            .map(|v| {
                let mut v = v.clone();
                v.as_object_mut().unwrap().remove("type");
                v
            })
            .collect(),
    );
    assert!(live.len() >= 6, "{} notices", live.len());
    let mode = std::fs::metadata(&rec).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    let report = json_report(&rec, &[]);
    assert_eq!(
        report["recording"]["clean_end"], true,
        "{}",
        report["recording"]
    );
    assert_eq!(report["recording"]["problems"], serde_json::json!([]));
    let replayed = report_notices(&report);
    if replayed != live {
        let first = live
            .iter()
            .zip(&replayed)
            .find(|(a, b)| a != b)
            .map(|(a, b)| format!("live:     {a}\nreplayed: {b}"));
        panic!(
            "replay differs from the live engine: {} live notices, {} replayed\n{}",
            live.len(),
            replayed.len(),
            first.unwrap_or_default()
        );
    }
    // The ring's files were released through the deferral chain, in the report too.
    let text = String::from_utf8(
        tracer_cmd()
            .args(["report", rec.to_str().unwrap()])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(text.contains(&format!("* umount {utarget}")), "{text}");
    assert!(text.contains("io_ring_exit_work"), "{text}");
    assert!(text.contains("delayed_fput"), "{text}");
}

/// Every leak report of a JSON report (`tests[].leaks.allocations.leak_reports`), sorted.
fn report_leaks(report: &Value) -> Vec<Value> {
    let mut v: Vec<Value> = report["tests"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| {
            t["leaks"]["allocations"]["leak_reports"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .collect();
    v.sort_by_key(leak_key);
    v
}

fn leak_key(v: &Value) -> (u64, String) {
    (
        v["mount"]["id"].as_u64().unwrap_or(0),
        v["mount"]["target"].as_str().unwrap_or("").to_string(),
    )
}

fn indent(text: &str, by: &str) -> String {
    text.lines()
        .map(|l| {
            if l.is_empty() {
                String::new()
            } else {
                format!("{by}{l}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Objects of a leak report made by the process `tgid`.
fn objects_of(leak: &Value, tgid: u64) -> Vec<Value> {
    leak["object_list"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["tgid"] == tgid)
        .cloned()
        .collect()
}

#[test]
fn recorded_leak_reports_replay_to_what_the_live_tracer_said() {
    if !kernel_tests_allowed("recorded_leak_reports_replay_to_what_the_live_tracer_said") {
        return;
    }
    let _g = serial();
    const N: usize = 4;
    let rec = tmp("leaks.trace");
    let tracer = Tracer::start(&[
        "--record",
        rec.to_str().unwrap(),
        "--no-events",
        "--alloc-filter",
        "cache:filp",
        "--alloc-stack-per-object",
        "--leak-grace",
        "1s",
    ]);
    let m = TmpMount::new("rec-leak");
    let target = m.str().to_string();
    tracer.wait_for(
        "the live view charging the mount",
        Duration::from_secs(10),
        |v| {
            v["type"] == "alloc_live"
                && v["by_mount"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|m| m["target"] == target.as_str())
        },
    );
    // The true positive: files this process opens while the mount is alive and keeps.
    let kept: Vec<File> = (0..N).map(|_| File::open("/dev/null").unwrap()).collect();
    umount(&m.path).expect("umount");
    let live_report = tracer.wait_for("the leak report", Duration::from_secs(30), |v| {
        v["type"] == "leak_report" && v["mount"]["target"] == target.as_str()
    });
    let lines = tracer.stop();
    drop(kept);
    let tgid = std::process::id() as u64;
    let ours = objects_of(&live_report, tgid);
    assert_eq!(ours.len(), N, "{}", live_report["text"]);
    assert!(ours.iter().all(|o| o["cache"] == "filp"), "{ours:?}");

    // The report says what the live tracer said: every leak report, field for field, and
    // the same kmemleak text.
    let report = json_report(&rec, &[]);
    assert_eq!(report["recording"]["problems"], serde_json::json!([]));
    assert_eq!(
        report["recording"]["allocation_tracking"]["filter"]["terms"],
        serde_json::json!(["cache:filp"])
    );
    let mut live: Vec<Value> = lines
        .iter()
        .filter(|v| v["type"] == "leak_report")
        .map(|v| {
            let mut v = v.clone();
            v.as_object_mut().unwrap().remove("type");
            v
        })
        .collect();
    live.sort_by_key(leak_key);
    let replayed = report_leaks(&report);
    assert!(!live.is_empty());
    if replayed != live {
        let first = live
            .iter()
            .zip(&replayed)
            .find(|(a, b)| a != b)
            .map(|(a, b)| format!("live:     {a}\nreplayed: {b}"));
        panic!(
            "replayed leak reports differ: {} live, {} replayed\n{}",
            live.len(),
            replayed.len(),
            first.unwrap_or_default()
        );
    }
    let text = String::from_utf8(
        tracer_cmd()
            .args(["report", rec.to_str().unwrap()])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let live_text = live_report["text"].as_str().unwrap();
    // One cycle: its objects are listed, not yet confirmed leaks.
    assert!(live_text.contains(" object 0x"), "{live_text}");
    assert!(text.contains(&indent(live_text, "    ")), "{text}");

    // The outstanding allocations at the end: the last live view.
    let last_live = last_of(&lines, "alloc_live");
    let at_end =
        &report["tests"].as_array().unwrap().last().unwrap()["leaks"]["allocations"]["at_end"];
    for k in [
        "outstanding",
        "bytes",
        "by_call_site",
        "by_stack",
        "by_mount",
        "tracked_total",
        "freed_total",
        "untracked_map_full",
    ] {
        assert_eq!(at_end[k], last_live[k], "{k}");
    }

    // Shared without kernel addresses: objects and call sites become tokens.
    let redacted = json_report(&rec, &["--redact"]);
    let ptrs: Vec<String> = report_leaks(&redacted)
        .iter()
        .flat_map(|k| k["object_list"].as_array().unwrap().clone())
        .map(|o| o["ptr"].as_str().unwrap().to_string())
        .collect();
    assert!(ptrs.len() >= N, "{ptrs:?}");
    // A leaked object is a token (`file#N` when the engine also saw it as a file).
    assert!(
        ptrs.iter()
            .all(|p| p.starts_with("obj#") || p.starts_with("file#")),
        "{ptrs:?}"
    );
    assert!(
        !redacted.to_string().contains("0xffff"),
        "a kernel address survived --redact"
    );
}

/// `tracer run` with allocation tracking stays after the command for the leak report of its
/// last umount (made a grace period after it), and only then: the report is whole, not one
/// made early because the tracer stopped. (Without a pending report it does not wait the
/// grace period at all: that is measured in `cargo xtask bench`, not asserted here.)
/// `tracer run` makes its report from the items as it writes them (so it is ready when the
/// command ends): it must be exactly what replaying the recording it wrote gives.
fn assert_report_is_the_recordings(report: &Value, rec: &Path) {
    let replayed = json_report(rec, &[]);
    assert!(
        report == &replayed,
        "the run's report differs from its recording's replay:\n{report:#}\n---\n{replayed:#}"
    );
}

#[test]
fn run_stays_for_the_leak_report_of_the_commands_last_umount() {
    if !kernel_tests_allowed("run_stays_for_the_leak_report_of_the_commands_last_umount") {
        return;
    }
    let _g = serial();
    let rec = tmp("last-umount.trace");
    let report = tmp("last-umount.report.json");
    let dir = tmp("last-umount-mnt");
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.to_str().unwrap();
    let out = tracer_cmd()
        .args(["run", "--alloc-filter", "sym:shmem_", "--format", "json"])
        .args(["--record", rec.to_str().unwrap()])
        .args(["--report", report.to_str().unwrap(), "--"])
        .args([
            "sh",
            "-c",
            &format!("mount -t tmpfs lastumount {d} && echo x > {d}/f && umount {d}"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_report_is_the_recordings(&r, &rec);
    let reports: Vec<&Value> = r["tests"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| {
            t["leaks"]["allocations"]["leak_reports"]
                .as_array()
                .unwrap()
        })
        .filter(|l| l["mount"]["target"] == d)
        .collect();
    assert_eq!(reports.len(), 1, "{r:#}");
    let text = reports[0]["text"].as_str().unwrap();
    assert!(!text.contains("because the tracer stopped"), "{text}");
}

/// `tracer run` keeps recording after its command exits while releases are on their way
/// out, and only then (`--linger` is the most it waits): the command kills the owner of a
/// ring holding two files right after a umount failed on them, and exits; the ring's exit
/// work and delayed_fput release them after that, and the report must show both releases.
/// (That it stops at once when nothing is pending is measured in `cargo xtask bench`.)
#[test]
fn run_lingers_until_the_commands_last_deferred_releases_are_done() {
    if !kernel_tests_allowed("run_lingers_until_the_commands_last_deferred_releases_are_done") {
        return;
    }
    if !kernel_at_least(6, 7) {
        // Before 6.7 a file's free is an RCU callback run later by any task: its release
        // is seen, not where it happened (see `Tracer::release_seen_in_place`).
        eprintln!("skipped: the kernel frees files outside __fput before 6.7");
        return;
    }
    let _g = serial();
    let rec = tmp("linger.trace");
    let report = tmp("linger.report.json");
    let out_file = tmp("linger.child-out");
    let m = TmpMount::new("rec-linger");
    let (a, b) = (m.path.join("a"), m.path.join("b"));
    let script = format!(
        "TRACER_SCENARIO=uring TRACER_SCENARIO_ARGS={a},{b} {exe} scenario_child --exact \
         --nocapture --test-threads=1 > {out} & p=$!; \
         while ! grep -q READY {out}; do sleep 0.01; done; \
         umount {m}; kill -9 $p; wait $p; exit 0",
        a = a.display(),
        b = b.display(),
        exe = std::env::current_exe().unwrap().display(),
        out = out_file.display(),
        m = m.str(),
    );
    let out = tracer_cmd()
        .args(["run", "--format", "json", "--linger", "10s"])
        .args(["--record", rec.to_str().unwrap()])
        .args(["--report", report.to_str().unwrap(), "--"])
        .args(["sh", "-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    umount_eventually(&m.path);
    let r: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_report_is_the_recordings(&r, &rec);
    let notices = report_notices(&r);
    let target = m.str();
    assert!(
        notices
            .iter()
            .any(|n| n["notice"] == "verdict" && n["target"] == target),
        "no EBUSY verdict: {notices:#?}"
    );
    for f in [&a, &b] {
        let name = f.to_str().unwrap();
        let rel = notices
            .iter()
            .find(|n| n["notice"] == "culprit_released" && n["file"]["name"] == name)
            .unwrap_or_else(|| panic!("no release of {name} recorded: {notices:#?}"));
        let fns: Vec<&str> = rel["chain"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|l| l["function_name"].as_str())
            .collect();
        assert!(fns.contains(&"io_ring_exit_work"), "{rel:#}");
    }
}

#[test]
fn run_exits_with_the_command_status_and_leaves_nothing_attached() {
    if !kernel_tests_allowed("run_exits_with_the_command_status_and_leaves_nothing_attached") {
        return;
    }
    let _g = serial();
    let rec = tmp("exit3.trace");
    let report = tmp("exit3.report.txt");
    let out = tracer_cmd()
        .args([
            "run",
            "--record",
            rec.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            "exit 3",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(orphaned_programs(), Vec::<String>::new());
    for p in [&rec, &report] {
        let mode = std::fs::metadata(p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{}", p.display());
    }
    let text = std::fs::read_to_string(&report).unwrap();
    assert!(text.contains("command: sh -c 'exit 3'"), "{text}");
    assert!(text.contains("exit status 3"), "{text}");
    assert!(text.contains("recording ended cleanly"), "{text}");

    // Killed by a signal: 128 + N, like a shell says.
    let rec = tmp("kill.trace");
    let out = tracer_cmd()
        .args([
            "run",
            "--record",
            rec.to_str().unwrap(),
            "--linger",
            "0s",
            "--",
        ])
        .args(["sh", "-c", "kill -9 $$"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(137));
    assert_eq!(orphaned_programs(), Vec::<String>::new());

    // A command that cannot run: 127, and still a recording and a report.
    let rec = tmp("missing.trace");
    let out = tracer_cmd()
        .args(["run", "--record", rec.to_str().unwrap(), "--"])
        .arg("/nonexistent/command")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(127));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot run /nonexistent/command"), "{err}");
    assert_eq!(orphaned_programs(), Vec::<String>::new());
}

#[test]
fn run_fails_before_running_the_command_when_it_cannot_attach() {
    if !kernel_tests_allowed("run_fails_before_running_the_command_when_it_cannot_attach") {
        return;
    }
    let _g = serial();
    let marker = tmp("ran");
    let rec = tmp("unprivileged.trace");
    // As nobody, without capabilities: attaching is impossible.
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(env!("CARGO_BIN_EXE_tracer"))
        .args(["run", "--record", rec.to_str().unwrap(), "--", "touch"])
        .arg(&marker)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs root"), "{err}");
    assert!(!marker.exists(), "the command ran untraced");
    assert!(!rec.exists());
    // A recording path that exists is refused before anything runs, too.
    std::fs::write(&rec, "x").unwrap();
    let out = tracer_cmd()
        .args(["run", "--record", rec.to_str().unwrap(), "--", "touch"])
        .arg(&marker)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("never overwritten"));
    assert!(!marker.exists(), "the command ran untraced");
}

fn fake_check() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fake-check.sh")
}

#[test]
fn a_fake_xfstests_run_gives_per_test_sections() {
    use std::io::{BufRead, BufReader};
    if !kernel_tests_allowed("a_fake_xfstests_run_gives_per_test_sections") {
        return;
    }
    let _g = serial();
    let rec = tmp("fake.trace");
    let report = tmp("fake.report.json");
    let release = tmp("fake.release");
    let mut child = tracer_cmd()
        .args(["run", "--record", rec.to_str().unwrap(), "--format", "json"])
        .args([
            "--live",
            "json",
            "--alloc-filter",
            "cache:filp",
            "--leak-grace",
            "1s",
        ])
        .arg("--")
        .arg(fake_check())
        .env("FAKE_CHECK_RELEASE", &release)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The script says its scratch mount; the tracer's live lines come on stderr.
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    let scratch = first.trim().strip_prefix("scratch ").unwrap().to_string();
    let rest = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut out, &mut s);
        s
    });
    let err = child.stderr.take().unwrap();
    let (sc, rel) = (scratch.clone(), release.clone());
    let live = std::thread::spawn(move || {
        let mut leaks: Vec<Value> = Vec::new();
        let mut other = String::new();
        for line in BufReader::new(err).lines() {
            let Ok(line) = line else { break };
            let Ok(v) = serde_json::from_str::<Value>(&line) else {
                other.push_str(&line);
                other.push('\n');
                continue;
            };
            if v["type"] == "leak_report" && v["mount"]["target"] == sc.as_str() {
                // generic/002's report (its objects made by the script): the script may
                // close its files now.
                let script = v["object_list"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|o| o["comm"] == "fake-check.sh");
                leaks.push(v);
                if script {
                    std::fs::write(&rel, "").unwrap();
                }
            }
        }
        (leaks, other)
    });
    let status = child.wait().unwrap();
    let (live_leaks, stderr) = live.join().unwrap();
    let stdout = rest.join().unwrap();
    assert!(status.success(), "{stderr}");
    assert!(!stdout.contains("unexpected"), "{stdout}");
    assert!(
        release.exists(),
        "no live leak report with the script's files:\n{stderr}"
    );

    let v: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    // (Other people's xfstests markers on this machine would show up too: ours are those
    // while our command ran.)
    let cmd = &v["recording"]["command"];
    let (started, exited) = (
        cmd["started_ns"].as_u64().unwrap(),
        cmd["exited_ns"].as_u64().unwrap(),
    );
    let tests: Vec<&Value> = v["tests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| !t["test"].is_null())
        .filter(|t| (started..=exited).contains(&t["start_ns"].as_u64().unwrap()))
        .collect();
    let names: Vec<&str> = tests.iter().map(|t| t["test"].as_str().unwrap()).collect();
    for want in ["generic/001", "generic/002", "generic/388"] {
        assert!(names.contains(&want), "{names:?}");
    }
    let test = |name: &str| *tests.iter().find(|t| t["test"] == name).unwrap();
    let ours = |t: &Value| -> Vec<Value> {
        t["ebusy_stories"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["what"] == format!("umount {scratch}").as_str())
            .cloned()
            .collect()
    };
    let s1 = ours(test("generic/001"));
    assert_eq!(s1.len(), 1, "{s1:?}");
    let verdict = &s1[0]["notices"][0];
    assert_eq!(verdict["notice"], "verdict");
    assert_eq!(verdict["test"], "generic/001");
    assert!(
        verdict["culprits"][0]["path"]
            .as_str()
            .unwrap()
            .ends_with("/held-by-check"),
        "{verdict}"
    );
    assert!(s1[0]["closed_ns"].is_u64());
    assert_eq!(ours(test("generic/002")), Vec::<Value>::new());
    let s3 = ours(test("generic/388"));
    assert_eq!(s3.len(), 1, "{s3:?}");
    assert!(
        s3[0]["notices"][0]["culprits"][0]["path"]
            .as_str()
            .unwrap()
            .ends_with("/sleeper-out")
    );

    // Leaks: each test has the leak report of its own mount of the scratch directory, and
    // only generic/002's holds the script's three files.
    let pid = v["recording"]["command"]["pid"].as_u64().unwrap();
    let scratch_leaks = |name: &str| -> Vec<Value> {
        let a = &test(name)["leaks"]["allocations"];
        assert_eq!(a["tracked"], true, "{a}");
        a["leak_reports"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|k| k["mount"]["target"] == scratch.as_str())
            .cloned()
            .collect()
    };
    for name in ["generic/001", "generic/388"] {
        let k = scratch_leaks(name);
        assert_eq!(k.len(), 1, "{name}: {k:?}");
        assert_eq!(objects_of(&k[0], pid), Vec::<Value>::new(), "{name}");
    }
    let k = scratch_leaks("generic/002");
    assert_eq!(k.len(), 1, "{k:?}");
    let script = objects_of(&k[0], pid);
    assert_eq!(script.len(), 3, "{}", k[0]["text"]);
    for o in &script {
        assert_eq!(o["comm"], "fake-check.sh", "{o}");
        assert_eq!(o["cache"], "filp", "{o}");
    }
    let text = k[0]["text"].as_str().unwrap();
    assert!(
        text.contains(&format!("comm \"fake-check.sh\", pid {pid}, age ")),
        "{text}"
    );
    // The same report as the live one.
    let mut live = live_leaks
        .iter()
        .find(|l| l["mount"]["id"] == k[0]["mount"]["id"])
        .unwrap()
        .clone();
    live.as_object_mut().unwrap().remove("type");
    assert_eq!(live, k[0]);

    // --test keeps one test, and its leak report.
    let only = json_report(&rec, &["--test", "generic/002"]);
    let only: Vec<&Value> = only["tests"].as_array().unwrap().iter().collect();
    assert!(only.iter().all(|t| t["test"] == "generic/002"));
    assert_eq!(
        only[0]["leaks"]["allocations"]["leak_reports"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["mount"]["target"] == scratch.as_str())
            .count(),
        1
    );
    let text = String::from_utf8(
        tracer_cmd()
            .args([
                "report",
                rec.to_str().unwrap(),
                "--test",
                "generic/002",
                "--redact",
            ])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(text.contains("comm \"fake-check.sh\""), "{text}");
    // A leaked object is a token (`file#N` when the engine also saw it as a file).
    assert!(
        text.lines()
            .filter_map(|l| {
                let l = l.trim();
                ["unreferenced", "unconfirmed", "uncertain", "one-time"]
                    .iter()
                    .find_map(|c| l.strip_prefix(&format!("{c} object ")))
            })
            .all(|o| o.starts_with("obj#") || o.starts_with("file#")),
        "{text}"
    );
    assert!(!text.contains("0xffff"), "{text}");
}

#[test]
fn a_tracer_killed_mid_recording_leaves_a_readable_file() {
    if !kernel_tests_allowed("a_tracer_killed_mid_recording_leaves_a_readable_file") {
        return;
    }
    let _g = serial();
    let rec = tmp("killed.trace");
    let tracer = Tracer::start(&["--record", rec.to_str().unwrap(), "--no-events"]);
    let m = TmpMount::new("killed");
    let held = m.path.join("held");
    let mut child = spawn_scenario("scenario_child", "hold", held.to_str().unwrap());
    wait_ready(&mut child);
    assert_eq!(umount(&m.path), Err(EBUSY));
    let target = m.str().to_string();
    tracer.wait_notice("the verdict", "verdict", |v| v["target"] == target.as_str());
    // Blocks are closed every second: wait for the verdict's block to be written.
    std::thread::sleep(Duration::from_millis(2500));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(tracer.pid(), libc::SIGKILL) };
    drop(tracer);
    kill9(&mut child);
    umount_eventually(&m.path);
    assert_eq!(orphaned_programs(), Vec::<String>::new());

    let report = json_report(&rec, &[]);
    assert_eq!(report["recording"]["clean_end"], false);
    let problems: Vec<&str> = report["recording"]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["problem"].as_str().unwrap())
        .collect();
    assert!(problems.contains(&"no_end"), "{problems:?}");
    let stories = report_notices(&report);
    assert!(
        stories
            .iter()
            .any(|n| n["notice"] == "verdict" && n["target"] == target.as_str()),
        "the verdict written before the kill is in the report"
    );
}

/// Re-records the fixture of the golden reports (only with UPDATE_FIXTURE=1).
#[test]
fn make_fixture() {
    record_fixture("make_fixture", "fake-xfstests.trace", &[]);
}

/// Re-records the fixture with allocation tracking (only with UPDATE_FIXTURE=1): the leak
/// reports of the fake xfstests run, generic/002's with the script's three files.
#[test]
fn make_alloc_fixture() {
    record_fixture(
        "make_alloc_fixture",
        "fake-xfstests-alloc.trace",
        &[
            "--alloc-filter",
            "cache:filp",
            "--leak-grace",
            "1s",
            "--stats-every",
            "0.25",
        ],
    );
}

fn record_fixture(test: &str, name: &str, extra: &[&str]) {
    if std::env::var_os("UPDATE_FIXTURE").is_none() || !kernel_tests_allowed(test) {
        return;
    }
    let _g = serial();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let rec = dir.join(name);
    let _ = std::fs::remove_file(&rec);
    let out = tracer_cmd()
        .args(["run", "--record", rec.to_str().unwrap(), "--report"])
        .arg(tmp("fixture.report.txt"))
        .args(extra)
        .arg("--")
        .arg(fake_check())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Readable by the golden test whoever runs it.
    std::fs::set_permissions(&rec, std::fs::Permissions::from_mode(0o644)).unwrap();
}
