//! The fstests tier across its runs: each traced run's recording is kept in
//! `target/fstests/runs/` (the latest [`KEEP`]), and `tracer report` over that directory
//! makes the cross-run report (`runs.report.json` and `runs.report.txt` beside it): per
//! test, in how many tier runs the tracer saw EBUSY, with which holders and chains, how long
//! mounts stayed pinned, which stacks leaked. Checked: the report is made, has this run's
//! tests, and counts this run.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

/// Recordings kept.
pub const KEEP: usize = 10;

/// Copies this run's recording into `base/runs` (dropping the oldest beyond [`KEEP`]);
/// the directory.
pub fn keep(base: &Path, record: &Path, fstyp: &str) -> Result<PathBuf> {
    let dir = base.join("runs");
    std::fs::create_dir_all(&dir)?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let to = dir.join(format!("traced-{fstyp}-{stamp}.trace"));
    std::fs::copy(record, &to)
        .with_context(|| format!("keeping {} as {}", record.display(), to.display()))?;
    let mut all: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "trace"))
        .collect();
    all.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    while all.len() > KEEP {
        let _ = std::fs::remove_file(all.remove(0));
    }
    Ok(dir)
}

/// The cross-run report over `dir`: writes it beside, prints a line per test of `tests`,
/// and says what is wrong with it.
pub fn report(tracer: &Path, base: &Path, dir: &Path, tests: &[String]) -> Result<Vec<String>> {
    let json = base.join("runs.report.json");
    let text = base.join("runs.report.txt");
    for (format, out) in [("json", &json), ("text", &text)] {
        let st = Command::new(tracer)
            .args(["report", "--format", format, "-o"])
            .arg(out)
            .arg(dir)
            .status()
            .with_context(|| format!("running {} report", tracer.display()))?;
        if !st.success() {
            bail!(
                "`tracer report --format {format} {}` failed ({st})",
                dir.display()
            );
        }
    }
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&json)?)
        .with_context(|| format!("parsing {}", json.display()))?;
    let runs = v["runs"].as_array().map_or(0, |r| r.len());
    let mut problems = Vec::new();
    if v["kind"] != "tracer-cross-run-report" {
        problems.push(format!("{}: not a cross-run report", json.display()));
    }
    eprintln!(
        "xtask: fstests: across the last {runs} traced tier runs ({}):",
        text.display()
    );
    for t in tests {
        let Some(s) = v["tests"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["test"] == t.as_str()))
        else {
            problems.push(format!("{t}: missing from the cross-run report"));
            continue;
        };
        let p = &s["pinned"];
        let chain = s["chains"][0]["links"]
            .as_array()
            .map(|l| {
                l.iter()
                    .filter_map(|x| x.as_str())
                    .collect::<Vec<_>>()
                    .join(" ← ")
            })
            .unwrap_or_default();
        eprintln!(
            "  {t}: {} runs, EBUSY in {} ({} stories, {} unexplained), pinned p50 {} p99 {} max {} ms, confirmed leaks in {} runs{}",
            s["runs"],
            s["runs_with_ebusy"],
            s["ebusy_stories"],
            s["unexplained_stories"],
            ms(&p["p50_ns"]),
            ms(&p["p99_ns"]),
            ms(&p["max_ns"]),
            s["runs_with_confirmed_leaks"],
            if chain.is_empty() {
                String::new()
            } else {
                format!("; top chain: {chain}")
            }
        );
    }
    Ok(problems)
}

fn ms(v: &Value) -> String {
    format!("{:.1}", v.as_u64().unwrap_or(0) as f64 / 1e6)
}
