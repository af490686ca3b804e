//! The tracer's kernel tests run inside the VM: the integration-test binaries cargo built
//! (`TARGETS`), one `/init` block per test (run alone, with `--exact`, between markers on
//! the serial console), and reading their results back from the serial log.
//!
//! The VM-only tests are `#[ignore]`d on the host (its kernel has no modules); inside the
//! VM every test of the targets runs, ignored or not (`--include-ignored`).

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};

use crate::util;

/// The integration-test targets of the tracer crate run inside the VM: the EBUSY scenarios
/// (on the VM's kernel they get the kprobe/fentry hooks), leakyfs's scenarios, the lock
/// conflicts and the space a delete did not free.
pub const TARGETS: &[&str] = &["ebusy", "vm_leakyfs", "fsstress", "locks", "space"];

/// Targets run only when `--test` names them (none now: the fsstress kill -9 test runs by
/// default since scans that come too late on TCG's one slow CPU are made up for by pins
/// read at exit, and 6.1's counts are read from the namespace's mount list).
const OPT_IN: &[&str] = &[];

/// Functions that are `#[test]`s only to be re-executed as scenario children.
const NOT_TESTS: &[&str] = &["scenario_child"];

/// How long one test may run inside the VM before `timeout` kills it.
const TEST_TIMEOUT_SECS: u64 = 240;

/// Starts the lines the VM's init prints for the host to read (results, doctor output).
pub const MARK: &str = "@@TRACER-VM";

pub struct TestBinary {
    /// The cargo target (`ebusy`).
    pub target: String,
    pub exe: PathBuf,
    /// Its tests to run, by name.
    pub tests: Vec<String>,
}

/// Builds the test targets (a no-op when `cargo test` built them already) and lists their
/// tests, keeping those whose `target::name` contains one of `filters` (all without any).
pub fn build(filters: &[String]) -> Result<Vec<TestBinary>> {
    let mut cmd = util::cargo_cmd([
        "test",
        "--workspace",
        "--no-run",
        "--message-format=json-render-diagnostics",
    ]);
    for t in TARGETS {
        cmd.args(["--test", t]);
    }
    eprintln!("$ {}", util::show(&cmd));
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run cargo test --no-run")?;
    if !out.status.success() {
        bail!("building the test binaries failed ({})", out.status);
    }
    let exes = executables(&String::from_utf8_lossy(&out.stdout));
    let mut bins = vec![];
    for target in TARGETS {
        let exe = exes
            .iter()
            .find(|(t, _)| t == target)
            .map(|(_, e)| e.clone())
            .with_context(|| format!("cargo built no test binary for {target}"))?;
        let list = util::probe(Command::new(&exe).args(["--list", "--include-ignored"]))
            .with_context(|| format!("`{} --list` failed", exe.display()))?;
        let tests: Vec<String> = parse_list(&list)
            .into_iter()
            .filter(|t| !NOT_TESTS.contains(&t.as_str()))
            .filter(|t| {
                if filters.is_empty() {
                    !OPT_IN.contains(target)
                } else {
                    filters.iter().any(|f| format!("{target}::{t}").contains(f))
                }
            })
            .collect();
        if !tests.is_empty() {
            bins.push(TestBinary {
                target: target.to_string(),
                exe,
                tests,
            });
        }
    }
    if bins.is_empty() && !filters.is_empty() {
        bail!("no test inside the VM matches {filters:?}");
    }
    Ok(bins)
}

/// (target name, executable) of the test binaries in cargo's JSON messages.
fn executables(messages: &str) -> Vec<(String, PathBuf)> {
    messages
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["profile"]["test"] == true)
        .filter_map(|m| {
            Some((
                m["target"]["name"].as_str()?.to_string(),
                PathBuf::from(m["executable"].as_str()?),
            ))
        })
        .collect()
}

/// The test names of libtest's `--list` output (`name: test` lines).
fn parse_list(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| l.strip_suffix(": test"))
        .map(str::to_string)
        .collect()
}

/// Where a test binary goes inside the VM.
pub fn inside(bin: &TestBinary) -> PathBuf {
    Path::new("/tests").join(&bin.target)
}

/// The `/init` lines that run every test, each alone, between markers.
pub fn init_lines(bins: &[TestBinary]) -> String {
    let mut s = String::new();
    for bin in bins {
        for test in &bin.tests {
            let id = format!("{}::{test}", bin.target);
            s.push_str(&format!(
                "echo \"{MARK} TEST-BEGIN {id} $(cat /proc/uptime)\"\n\
                 timeout {TEST_TIMEOUT_SECS} {exe} {test} --exact --include-ignored --test-threads=1 --nocapture 2>&1\n\
                 rc=$?\n\
                 echo \"{MARK} TEST-END {id} rc=$rc $(cat /proc/uptime)\"\n",
                exe = inside(bin).display(),
            ));
        }
    }
    s
}

pub struct Outcome {
    pub id: String,
    pub passed: bool,
    /// Guest seconds the test took.
    pub secs: Option<f64>,
    /// Why it failed, and the end of its output.
    pub detail: String,
}

/// The results of the tests `/init` ran, from the serial log; a test that started and
/// never ended failed (the VM died or timed out under it).
pub fn results(serial: &str) -> Vec<Outcome> {
    let mut out = vec![];
    let lines: Vec<&str> = serial.lines().collect();
    let marker = |l: &str, what: &str| -> Option<String> {
        let at = l.find(MARK)?;
        l[at + MARK.len()..]
            .trim()
            .strip_prefix(what)
            .map(|r| r.trim().to_string())
    };
    let mut i = 0;
    while i < lines.len() {
        let Some(begin) = marker(lines[i], "TEST-BEGIN") else {
            i += 1;
            continue;
        };
        let mut words = begin.split_whitespace();
        let id = words.next().unwrap_or("?").to_string();
        let t0: Option<f64> = words.next().and_then(|w| w.parse().ok());
        let start = i + 1;
        let mut j = start;
        let mut end = None;
        while j < lines.len() {
            if let Some(e) = marker(lines[j], "TEST-END") {
                end = Some(e);
                break;
            }
            if marker(lines[j], "TEST-BEGIN").is_some() {
                break;
            }
            j += 1;
        }
        let body = &lines[start..j.min(lines.len())];
        let tail = body[body.len().saturating_sub(60)..].join("\n");
        let outcome = match end {
            None => Outcome {
                id,
                passed: false,
                secs: None,
                detail: format!("never finished (the VM stopped under it)\n{tail}"),
            },
            Some(e) => {
                let mut w = e.split_whitespace();
                let end_id = w.next().unwrap_or("");
                let rc = w.next().and_then(|r| r.strip_prefix("rc=")).unwrap_or("?");
                let t1: Option<f64> = w.next().and_then(|w| w.parse().ok());
                let secs = t0.zip(t1).map(|(a, b)| b - a);
                // libtest exits 0 also when the name matched nothing: one test must have run.
                let ran_one = body
                    .iter()
                    .any(|l| l.contains("test result: ok. 1 passed; 0 failed"));
                let passed = end_id == id && rc == "0" && ran_one;
                let detail = if passed {
                    String::new()
                } else if rc == "124" || rc == "143" {
                    format!("killed after {TEST_TIMEOUT_SECS}s (rc={rc})\n{tail}")
                } else if rc == "0" {
                    format!("exited 0 but libtest ran no test\n{tail}")
                } else {
                    format!("rc={rc}\n{tail}")
                };
                Outcome {
                    id,
                    passed,
                    secs,
                    detail,
                }
            }
        };
        out.push(outcome);
        i = j.max(start);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_executables() {
        assert_eq!(
            parse_list("a: test\nb::c: test\nd: bench\n\n2 tests, 0 benchmarks\n"),
            vec!["a", "b::c"]
        );
        let msgs = r#"{"reason":"compiler-artifact","target":{"name":"ebusy"},"profile":{"test":true},"executable":"/t/ebusy-1"}
{"reason":"compiler-artifact","target":{"name":"tracer"},"profile":{"test":false},"executable":"/t/tracer"}
{"reason":"build-finished","success":true}"#;
        assert_eq!(
            executables(msgs),
            vec![("ebusy".to_string(), PathBuf::from("/t/ebusy-1"))]
        );
    }

    #[test]
    fn results_from_markers() {
        let serial = "\
@@TRACER-VM TEST-BEGIN ebusy::a 10.00 1\n\
running 1 test\n\
test a ... ok\n\
test result: ok. 1 passed; 0 failed; 0 ignored\n\
@@TRACER-VM TEST-END ebusy::a rc=0 22.50 2\n\
@@TRACER-VM TEST-BEGIN ebusy::b 22.60 2\n\
thread 'b' panicked at x\n\
@@TRACER-VM TEST-END ebusy::b rc=101 30.00 3\n\
@@TRACER-VM TEST-BEGIN vm::c 30.10 3\n\
test result: ok. 0 passed; 0 failed; 0 ignored\n\
@@TRACER-VM TEST-END vm::c rc=0 30.20 3\n\
@@TRACER-VM TEST-BEGIN vm::d 30.30 3\n\
half of it\n";
        let r = results(serial);
        let ids: Vec<(&str, bool)> = r.iter().map(|o| (o.id.as_str(), o.passed)).collect();
        assert_eq!(
            ids,
            [
                ("ebusy::a", true),
                ("ebusy::b", false),
                ("vm::c", false),
                ("vm::d", false)
            ]
        );
        assert_eq!(r[0].secs, Some(12.5));
        assert!(r[1].detail.starts_with("rc=101") && r[1].detail.contains("panicked"));
        assert!(r[2].detail.contains("ran no test"));
        assert!(r[3].detail.contains("never finished") && r[3].detail.contains("half of it"));
    }

    #[test]
    fn init_runs_each_test_alone() {
        let bins = [TestBinary {
            target: "ebusy".into(),
            exe: "/x".into(),
            tests: vec!["t1".into()],
        }];
        let s = init_lines(&bins);
        assert!(s.contains("TEST-BEGIN ebusy::t1"));
        assert!(s.contains("/tests/ebusy t1 --exact --include-ignored"));
        assert!(s.contains("TEST-END ebusy::t1 rc=$rc"));
    }
}
