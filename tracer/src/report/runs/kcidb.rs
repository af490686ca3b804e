//! Export to KernelCI's KCIDB I/O format (schema v5.3, `kernelci/kcidb-io`): one KCIDB
//! `test` per xfstests test per recording, with the tracer's findings, so a CI system can
//! submit them with `kcidb-submit` next to its own results.
//!
//! - `path`: `fstests.` and the test with `/` as `.` (`fstests.generic.388`); characters
//!   KCIDB paths do not allow become `_`. Sections before the first test marker are left
//!   out.
//! - `status`: fstests' own verdict joined with the tracer's. `FAIL` when fstests failed the
//!   test (recordings of `tracer run ./check` hold its verdicts, read from `check.log`), or
//!   when the tracer found a confirmed leak, an EBUSY story nothing traced explains, or a
//!   detached mount still pinned at the test's end; `SKIP` when fstests did not run it and
//!   the tracer found nothing; `PASS` otherwise (also when the recording has no fstests
//!   verdict: then the status is the tracer's alone, and `comment` says so). `comment` says
//!   why in words; `misc.tracer` has the findings (stories with their holder kinds, chains
//!   and pinned times; leak groups by stack) and `misc.fstests_status`.
//! - `build_id`: `--kcidb-build-id` when the CI system has its own build object (then no
//!   `checkouts` or `builds` are written); otherwise one checkout and one build per kernel
//!   release, `<origin>:kernel-<release>`.
//! - `id`: `<origin>:<host>:<recording start>:<test>`, and `:<n>` for the n-th time a test
//!   ran in one recording (`check -i N`), so ids are unique.
//! - `start_time` (RFC 3339), `duration` (seconds), `environment.comment` (machine and
//!   kernel). No property is ever null: missing data is left out, as KCIDB asks.

use serde_json::{Map, Value, json};

use super::digest::{NO_TEST, RunDigest, StoryDigest, TestDigest};
use super::summary::CrossRunReport;

pub const KCIDB_MAJOR: u32 = 5;
pub const KCIDB_MINOR: u32 = 3;

/// Options of the export.
#[derive(Clone, Debug)]
pub struct KcidbOptions {
    /// The submitting CI system's name (`^[a-z0-9_]+$`).
    pub origin: String,
    /// An existing KCIDB build the tests belong to (`origin:...`).
    pub build_id: Option<String>,
}

/// A valid KCIDB origin: lower case letters, digits and `_`.
pub fn valid_origin(o: &str) -> bool {
    !o.is_empty()
        && o.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// `generic/388` → `fstests.generic.388`.
pub fn test_path(test: &str) -> String {
    let parts: Vec<String> = test
        .split('/')
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect()
        })
        .collect();
    format!("fstests.{}", parts.join("."))
}

/// Strings in KCIDB may not hold NUL.
fn clean(s: &str) -> String {
    s.replace('\0', "")
}

fn kernel_id(origin: &str, kernel: &str) -> String {
    let k = if kernel.is_empty() { "unknown" } else { kernel };
    clean(&format!("{origin}:kernel-{k}"))
}

fn story_json(s: &StoryDigest) -> Value {
    let mut v = json!({
        "culprit_kinds": s.culprit_kinds,
        "chains": s.chains.iter().map(|c| json!({"links": c.links, "releases": c.releases})).collect::<Vec<_>>(),
        "failed_attempts": s.failed_attempts,
        "unexplained": s.unexplained,
        "fs_type": s.fs_type,
    });
    if let Some(p) = s.pinned_ns {
        v["pinned_ns"] = json!(p);
    }
    v
}

/// The tracer's verdict and its reasons.
fn findings(t: &TestDigest) -> (bool, String) {
    let confirmed: u64 = t
        .leaks
        .iter()
        .filter(|l| l.class == "leak")
        .map(|l| l.objects)
        .sum();
    let unexplained = t.ebusy_stories.iter().filter(|s| s.unexplained).count();
    let mut why = Vec::new();
    if confirmed > 0 {
        why.push(format!("{confirmed} confirmed leaked objects"));
    }
    if unexplained > 0 {
        why.push(format!("{unexplained} unexplained EBUSY stories"));
    }
    if t.detached_pinned_at_end > 0 {
        why.push(format!(
            "{} detached mounts pinned at the end",
            t.detached_pinned_at_end
        ));
    }
    let fail = !why.is_empty();
    let mut comment = format!(
        "tracer: {} EBUSY stories, {} lock conflicts",
        t.ebusy_stories.len(),
        t.lock_stories.len()
    );
    if fail {
        comment.push_str("; FAIL: ");
        comment.push_str(&why.join(", "));
    }
    (fail, comment)
}

/// `nth`: this test's occurrence in the run, from 1 (`check -i 3` runs a test 3 times in one
/// recording); ids after the first get `:<nth>`.
fn test_json(o: &KcidbOptions, r: &RunDigest, t: &TestDigest, nth: usize) -> Value {
    let build_id = o
        .build_id
        .clone()
        .unwrap_or_else(|| kernel_id(&o.origin, &r.kernel));
    let run = r
        .started_at
        .clone()
        .unwrap_or_else(|| r.file.rsplit('/').next().unwrap_or(&r.file).to_string());
    let host = if r.host.is_empty() {
        "unknown"
    } else {
        &r.host
    };
    let (tracer_fail, tracer_comment) = findings(t);
    let (status, comment) = match t.fstests_status.as_deref() {
        Some("fail") => ("FAIL", format!("fstests: failed; {tracer_comment}")),
        Some("notrun") if !tracer_fail => ("SKIP", format!("fstests: not run; {tracer_comment}")),
        Some(v) => (
            if tracer_fail { "FAIL" } else { "PASS" },
            format!("fstests: {v}; {tracer_comment}"),
        ),
        None => (
            if tracer_fail { "FAIL" } else { "PASS" },
            format!("fstests: no verdict recorded; {tracer_comment}"),
        ),
    };
    let mut m = Map::new();
    m.insert(
        "id".into(),
        json!(clean(&if nth > 1 {
            format!("{}:{host}:{run}:{}:{nth}", o.origin, t.test)
        } else {
            format!("{}:{host}:{run}:{}", o.origin, t.test)
        })),
    );
    m.insert("build_id".into(), json!(build_id));
    m.insert("origin".into(), json!(o.origin));
    m.insert("path".into(), json!(test_path(&t.test)));
    m.insert("status".into(), json!(status));
    m.insert("comment".into(), json!(clean(&comment)));
    if let Some(s) = &t.started_at {
        m.insert("start_time".into(), json!(s));
    }
    m.insert("duration".into(), json!(t.duration_ns as f64 / 1e9));
    m.insert(
        "environment".into(),
        json!({
            "comment": clean(&format!("{host}, Linux {}", r.kernel)),
            "misc": { "host": r.host, "kernel_release": r.kernel },
        }),
    );
    let mut misc = json!({ "tracer": {
            "recording": r.file,
            "tracer_version": r.tracer_version,
            "records_lost": r.records_lost,
            "clean_end": r.clean_end,
            "allocations_tracked": r.allocations_tracked,
            "ebusy_calls": t.ebusy_calls,
            "ebusy_stories": t.ebusy_stories.iter().map(story_json).collect::<Vec<_>>(),
            "lock_stories": t.lock_stories.iter().map(story_json).collect::<Vec<_>>(),
            "leaks": t.leaks,
            "detached_pinned_at_end": t.detached_pinned_at_end,
    }});
    if let Some(v) = &t.fstests_status {
        misc["fstests_status"] = json!(v);
    }
    m.insert("misc".into(), misc);
    Value::Object(m)
}

/// The KCIDB document.
pub fn export(r: &CrossRunReport, o: &KcidbOptions) -> Value {
    let mut tests = Vec::new();
    let mut kernels = std::collections::BTreeSet::new();
    for run in &r.runs {
        let mut seen: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        for t in run.tests.iter().filter(|t| t.test != NO_TEST) {
            kernels.insert(run.kernel.clone());
            let nth = seen.entry(t.test.as_str()).or_default();
            *nth += 1;
            tests.push(test_json(o, run, t, *nth));
        }
    }
    let mut doc = json!({
        "version": { "major": KCIDB_MAJOR, "minor": KCIDB_MINOR },
        "tests": tests,
    });
    if o.build_id.is_none() {
        doc["checkouts"] = kernels
            .iter()
            .map(|k| {
                json!({
                    "id": kernel_id(&o.origin, k),
                    "origin": o.origin,
                    "comment": clean(&format!("the kernel of release {k}, as traced")),
                })
            })
            .collect();
        doc["builds"] = kernels
            .iter()
            .map(|k| {
                json!({
                    "id": kernel_id(&o.origin, k),
                    "checkout_id": kernel_id(&o.origin, k),
                    "origin": o.origin,
                    "comment": clean(&format!("Linux {k}")),
                })
            })
            .collect();
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_origins() {
        assert_eq!(test_path("generic/388"), "fstests.generic.388");
        assert_eq!(
            test_path("generic/388-sigkill"),
            "fstests.generic.388-sigkill"
        );
        assert_eq!(test_path("xfs/1 2"), "fstests.xfs.1_2");
        assert!(valid_origin("tracer"));
        assert!(valid_origin("my_ci2"));
        assert!(!valid_origin("My-CI"));
        assert!(!valid_origin(""));
    }

    #[test]
    fn a_test_run_twice_in_one_recording_gets_two_ids() {
        let t = TestDigest {
            test: "generic/001".into(),
            ..Default::default()
        };
        let run = RunDigest {
            host: "vm1".into(),
            kernel: "6.1".into(),
            started_at: Some("2026-12-05T10:00:00.000Z".into()),
            tests: vec![t.clone(), t],
            ..Default::default()
        };
        let r = super::super::summary::summarize(vec![run], Vec::new());
        let o = KcidbOptions {
            origin: "lab".into(),
            build_id: None,
        };
        let doc = export(&r, &o);
        let ids: Vec<&str> = doc["tests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap())
            .collect();
        assert_eq!(
            ids,
            [
                "lab:vm1:2026-12-05T10:00:00.000Z:generic/001",
                "lab:vm1:2026-12-05T10:00:00.000Z:generic/001:2"
            ]
        );
    }
}
