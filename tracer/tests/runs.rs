//! `tracer report` over many recordings, without a kernel: the cross-run report of copies
//! of the real recordings in `tests/fixtures/` (made by `tests/record_kernel.rs`) given as
//! machines and kernels of their own, in every format; the JSON against its committed
//! schema, the KCIDB export against KernelCI's schema (vendored in `tests/schema/`), and a
//! generated set of a few hundred recordings replayed in parallel (its throughput is
//! printed, never asserted).
//!
//! `UPDATE_SCHEMA=1 cargo test -p tracer --test runs` rewrites
//! `tracer/schema/cross-run-report.schema.json` from the report's types.

use std::{path::PathBuf, process::Command};

use serde_json::Value;
use tracer::report::runs::{bench, parallel, schema, summary};

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixtures() -> Vec<PathBuf> {
    ["fake-xfstests.trace", "fake-xfstests-alloc.trace"]
        .iter()
        .map(|f| manifest().join("tests/fixtures").join(f))
        .collect()
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tracer-runs-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn tracer() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tracer"))
}

fn stdout_of(c: &mut Command) -> String {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{:?}: {}",
        c,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Formats (`date-time`, `uri`, ...) are checked too.
fn validator(schema: &Value) -> jsonschema::Validator {
    jsonschema::options()
        .should_validate_formats(true)
        .build(schema)
        .unwrap()
}

fn assert_valid(schema: &Value, doc: &Value, what: &str) {
    let v = validator(schema);
    let errors: Vec<String> = v
        .iter_errors(doc)
        .take(10)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{what} is not valid: {errors:#?}");
}

fn committed_schema_path() -> PathBuf {
    manifest().join("schema/cross-run-report.schema.json")
}

fn committed_schema() -> Value {
    serde_json::from_str(&std::fs::read_to_string(committed_schema_path()).unwrap()).unwrap()
}

#[test]
fn the_committed_schema_is_the_generated_one() {
    let generated = schema::json_schema();
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::create_dir_all(committed_schema_path().parent().unwrap()).unwrap();
        std::fs::write(committed_schema_path(), &generated).unwrap();
    }
    let committed = std::fs::read_to_string(committed_schema_path()).unwrap_or_default();
    assert!(
        committed == generated,
        "tracer/schema/cross-run-report.schema.json differs from the report's types: \
         bump summary::SCHEMA_VERSION if a consumer could misread the change, then \
         UPDATE_SCHEMA=1 cargo test -p tracer --test runs"
    );
    // `tracer report --json-schema` prints the same.
    assert_eq!(
        stdout_of(tracer().args(["report", "--json-schema"])),
        generated
    );
    // It is a valid schema (the metaschema check happens when a validator is built).
    let s: Value = serde_json::from_str(&generated).unwrap();
    assert!(jsonschema::meta::is_valid(&s));
}

/// Six copies of the two fixtures as three machines with two kernels, in nested
/// directories, beside a file that is not a recording.
fn fleet(name: &str) -> PathBuf {
    let d = tmpdir(name);
    bench::generate(&fixtures(), &d.join("fleet"), 6, 3).unwrap();
    std::fs::write(d.join("fleet/vm-0/notes.txt"), "not a recording").unwrap();
    d
}

#[test]
fn cross_run_json_groups_per_test_and_matches_its_schema() {
    let d = fleet("json");
    // A file given by name that is not a recording is reported unreadable, not fatal.
    let junk = d.join("junk.trace");
    std::fs::write(&junk, "junk").unwrap();
    let out = stdout_of(
        tracer()
            .args(["report", "--format", "json", "-j", "2"])
            .arg(d.join("fleet"))
            .arg(&junk),
    );
    let doc: Value = serde_json::from_str(&out).unwrap();
    assert_valid(&committed_schema(), &doc, "the cross-run report");
    assert_eq!(doc["schema_version"], summary::SCHEMA_VERSION);
    assert_eq!(doc["kind"], "tracer-cross-run-report");
    assert_eq!(doc["runs"].as_array().unwrap().len(), 6);
    assert_eq!(doc["unreadable"].as_array().unwrap().len(), 1);
    assert_eq!(doc["hosts"].as_array().unwrap().len(), 3);
    assert_eq!(doc["kernels"].as_array().unwrap().len(), 3);
    let test = |name: &str| -> Value {
        doc["tests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["test"] == name)
            .unwrap_or_else(|| panic!("no {name} in {out}"))
            .clone()
    };
    // generic/001: the script holds a file open across the umount, then closes it.
    let g001 = test("generic/001");
    assert_eq!(g001["runs"], 6);
    assert_eq!(g001["runs_with_ebusy"], 6);
    assert_eq!(g001["unexplained_stories"], 0);
    assert_eq!(g001["pinned"]["count"], 6);
    assert!(g001["pinned"]["p50_ns"].as_u64().unwrap() > 0);
    assert!(g001["pinned"]["p50_ns"].as_u64() <= g001["pinned"]["p99_ns"].as_u64());
    assert_eq!(g001["culprit_kinds"][0]["kind"], "fd");
    assert_eq!(g001["culprit_kinds"][0]["runs"], 6);
    // One chain across every machine and kernel: the chains are keyed by function.
    assert_eq!(g001["chains"].as_array().unwrap().len(), 1, "{g001:#}");
    assert_eq!(g001["chains"][0]["runs"], 6);
    assert_eq!(g001["chains"][0]["links"][0], "task_work (____fput)");
    assert_eq!(g001["ebusy_kernels"].as_array().unwrap().len(), 3);
    // generic/388: a killed background shell's file, released at its exit.
    let g388 = test("generic/388");
    assert_eq!(g388["runs_with_ebusy"], 6);
    assert!(
        g388["chains"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["links"][0] == "task_work (____fput) at exit"),
        "{g388:#}"
    );
    // generic/002: the three files kept past the umount, in the runs that tracked
    // allocations (every other copy), one group by stack across kernels.
    let g002 = test("generic/002");
    assert_eq!(g002["runs_with_ebusy"], 0);
    let leaks = g002["leaks"].as_array().unwrap();
    assert_eq!(leaks.len(), 1, "{g002:#}");
    assert_eq!(leaks[0]["runs"], 3);
    assert_eq!(leaks[0]["objects"], 9);
    assert_eq!(leaks[0]["stack"][0], "alloc_empty_file");
    assert!(
        leaks[0]["stack"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| !f.as_str().unwrap().contains("+0x")),
        "frames without offsets"
    );
    assert_eq!(g002["per_run"].as_array().unwrap().len(), 6);

    // --test keeps one test.
    let one: Value = serde_json::from_str(&stdout_of(
        tracer()
            .args(["report", "--format", "json", "--test", "generic/388"])
            .arg(d.join("fleet")),
    ))
    .unwrap();
    assert_eq!(one["tests"].as_array().unwrap().len(), 1);
    assert_valid(&committed_schema(), &one, "the report of one test");
}

#[test]
fn cross_run_text_and_html() {
    let d = fleet("text");
    let text = stdout_of(tracer().arg("report").arg(d.join("fleet")));
    for want in [
        "tracer cross-run report: 6 recordings (0 unreadable), 3 machines, 3 kernels",
        "== generic/001 (6 runs)",
        "EBUSY: 6 of 6 runs, 6 stories (0 unexplained",
        "held by: fd (6 in 6 runs)",
        "chain: task_work (____fput) — 6 releases in 6 stories of 6 runs",
        "pinned: p50 ",
        "alloc_empty_file",
    ] {
        assert!(text.contains(want), "no {want:?} in:\n{text}");
    }
    let out = d.join("report.html");
    stdout_of(
        tracer()
            .args(["report", "--format", "html", "-o"])
            .arg(&out)
            .arg(d.join("fleet")),
    );
    let html = std::fs::read_to_string(&out).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("<a href=\"#generic-388\">generic/388</a>"));
    assert!(html.contains("task_work (____fput) at exit"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // Perfetto is for one recording.
    let o = tracer()
        .args(["report", "--format", "perfetto"])
        .arg(d.join("fleet"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("one recording"));
}

/// KCIDB's schema as vendored, but for one spelling: its patterns say NUL as `\0`
/// (ECMA-262, which Python's `jsonschema` accepts); the regex engines of the `jsonschema`
/// crate do not know that escape, so it is given as `\x00`, the same character.
fn kcidb_schema() -> Value {
    let text =
        std::fs::read_to_string(manifest().join("tests/schema/kcidb.v5.3.schema.json")).unwrap();
    serde_json::from_str(&text.replace(r"\\0", r"\\x00")).unwrap()
}

#[test]
fn kcidb_export_matches_kernelcis_schema() {
    let d = fleet("kcidb");
    let doc: Value = serde_json::from_str(&stdout_of(
        tracer()
            .args(["report", "--format", "kcidb", "--kcidb-origin", "my_lab"])
            .arg(d.join("fleet")),
    ))
    .unwrap();
    assert_valid(&kcidb_schema(), &doc, "the KCIDB export");
    assert_eq!(doc["version"]["major"], 5);
    // The formats, by hand (see `validator`).
    for t in doc["tests"].as_array().unwrap() {
        let s = t["start_time"].as_str().unwrap();
        humantime::parse_rfc3339(s).unwrap_or_else(|e| panic!("start_time {s}: {e}"));
    }
    let tests = doc["tests"].as_array().unwrap();
    // 6 runs of 3 tests (the part before the first marker is left out).
    assert_eq!(tests.len(), 18);
    let ids: std::collections::BTreeSet<&str> =
        tests.iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 18, "ids are unique");
    assert!(tests.iter().all(|t| t["origin"] == "my_lab"));
    assert!(
        tests
            .iter()
            .any(|t| t["path"] == "fstests.generic.388" && t["status"] == "PASS")
    );
    assert_eq!(doc["builds"].as_array().unwrap().len(), 3);
    assert_eq!(doc["checkouts"].as_array().unwrap().len(), 3);
    let g001 = tests
        .iter()
        .find(|t| t["path"] == "fstests.generic.001")
        .unwrap();
    assert_eq!(
        g001["misc"]["tracer"]["ebusy_stories"][0]["culprit_kinds"][0],
        "fd"
    );

    // With the CI's own build: no checkouts or builds, the tests point at it.
    let doc: Value = serde_json::from_str(&stdout_of(
        tracer()
            .args([
                "report",
                "--format",
                "kcidb",
                "--kcidb-origin",
                "my_lab",
                "--kcidb-build-id",
                "my_lab:build-42",
            ])
            .arg(&fixtures()[0]),
    ))
    .unwrap();
    assert_valid(&kcidb_schema(), &doc, "the KCIDB export of one recording");
    assert!(doc.get("builds").is_none());
    assert!(
        doc["tests"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["build_id"] == "my_lab:build-42")
    );
    // A bad origin is refused before any work.
    let o = tracer()
        .args(["report", "--format", "kcidb", "--kcidb-origin", "My-Lab"])
        .arg(&fixtures()[0])
        .output()
        .unwrap();
    assert!(!o.status.success());
}

/// The KCIDB schema catches what it should (so the test above checks something).
#[test]
fn the_vendored_kcidb_schema_rejects_a_bad_export() {
    let v = validator(&kcidb_schema());
    let bad = serde_json::json!({
        "version": {"major": 5, "minor": 3},
        "tests": [{"id": "no-origin-prefix", "build_id": "x:1", "origin": "x", "path": "fstests.generic/388"}],
    });
    assert!(!v.is_valid(&bad));
    let null = serde_json::json!({
        "version": {"major": 5, "minor": 3},
        "tests": [{"id": "x:1", "build_id": "x:1", "origin": "x", "start_time": null}],
    });
    assert!(!v.is_valid(&null), "KCIDB allows no nulls");
}

#[test]
fn one_recording_reports_as_before() {
    let golden = manifest().join("tests/fixtures/fake-xfstests.report.txt");
    let out = stdout_of(
        tracer()
            .current_dir(manifest())
            .args(["report", "tests/fixtures/fake-xfstests.trace"]),
    );
    assert_eq!(out, std::fs::read_to_string(golden).unwrap());
}

/// A few hundred recordings replayed in parallel, one per worker at a time. The figure is
/// printed (`--nocapture` shows it); `cargo xtask bench` measures it with the release build.
#[test]
fn a_generated_set_of_a_few_hundred_recordings_replays_in_parallel() {
    let d = tmpdir("generated");
    let files = bench::generate(&fixtures(), &d, 240, 8).unwrap();
    let workers = parallel::workers(None, files.len());
    let found = parallel::find_recordings(std::slice::from_ref(&d)).unwrap();
    assert_eq!(found.len(), 240);
    let r = parallel::replay_all(&found, workers, false);
    eprintln!(
        "cross-run replay (debug build): {} recordings, {} events in {:.2} s on {} workers: {:.1} recordings/s",
        r.runs.len(),
        r.events,
        r.elapsed.as_secs_f64(),
        r.workers,
        r.runs.len() as f64 / r.elapsed.as_secs_f64()
    );
    assert_eq!(r.runs.len(), 240);
    assert!(r.unreadable.is_empty());
    let s = summary::summarize(r.runs, r.unreadable);
    assert_eq!(s.kernels.len(), 3);
    assert_eq!(s.hosts.len(), 8);
    let g001 = s.tests.iter().find(|t| t.test == "generic/001").unwrap();
    assert_eq!((g001.runs, g001.runs_with_ebusy), (240, 240));
    let _ = std::fs::remove_dir_all(&d);
}
