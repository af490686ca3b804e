//! The cross-run report's replay throughput: `tracer bench-runs` (hidden) generates a set
//! of recordings (copies of the real fixture recordings, each naming a machine of 8 and a
//! kernel of 3) and replays them in parallel, one per worker at a time, once per round.
//! Reported (table line and `bench.json`'s `cross_run_replay`), never asserted. Also run
//! alone, without root: `cargo xtask bench-runs`.

use std::{path::Path, process::Command};

use anyhow::{Context as _, Result};
use serde_json::{Value, json};

use super::output;
use crate::util;

/// Recordings in the generated set.
pub const COUNT: usize = 300;

/// Runs the replay bench `rounds` times over `count` recordings in `dir`; the summary.
pub fn measure(tracer: &Path, dir: &Path, rounds: usize, count: usize) -> Result<Value> {
    let fixtures = util::workspace_root().join("tracer/tests/fixtures");
    let mut runs = Vec::new();
    for round in 0..rounds {
        eprintln!(
            "bench: round {}/{rounds}: cross-run replay of {count} recordings",
            round + 1
        );
        let set = dir.join("runs");
        let _ = std::fs::remove_dir_all(&set);
        let stdout = output(
            Command::new(tracer)
                .arg("bench-runs")
                .arg("--from")
                .arg(fixtures.join("fake-xfstests.trace"))
                .arg("--from")
                .arg(fixtures.join("fake-xfstests-alloc.trace"))
                .arg("--dir")
                .arg(&set)
                .arg("--count")
                .arg(count.to_string()),
        )?;
        let _ = std::fs::remove_dir_all(&set);
        runs.push(serde_json::from_str::<Value>(stdout.trim()).context("bench-runs output")?);
    }
    Ok(summary(&runs))
}

/// Medians (with min-max) of the runs' figures.
pub fn summary(runs: &[Value]) -> Value {
    let figure = |k: &str| super::figure_over(runs, k);
    let first = |k: &str| runs.first().map_or(Value::Null, |r| r[k].clone());
    json!({
        "recordings": first("recordings"),
        "events": first("events"),
        "bytes": first("bytes"),
        "workers": first("workers"),
        "cores": first("cores"),
        "recordings_per_s": figure("recordings_per_s"),
        "events_per_s": figure("events_per_s"),
        "seconds": figure("seconds"),
        "rounds": runs.len(),
    })
}

/// The table's line.
pub fn print(s: &Value) {
    let f = |k: &str, q: &str| s[k][q].as_f64().unwrap_or(f64::NAN);
    println!(
        "cross-run replay ({} recordings, {} events, {} workers on {} cores, {} rounds): \
         {:.1} recordings/s [{:.1}-{:.1}], {:.0} events/s",
        s["recordings"],
        s["events"],
        s["workers"],
        s["cores"],
        s["rounds"],
        f("recordings_per_s", "median"),
        f("recordings_per_s", "min"),
        f("recordings_per_s", "max"),
        f("events_per_s", "median"),
    );
}

#[derive(clap::Args)]
pub struct Args {
    /// Rounds.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Recordings in the generated set.
    #[arg(long, default_value_t = COUNT)]
    count: usize,
}

/// `cargo xtask bench-runs`: the release tracer's cross-run replay alone (no root needed).
pub fn main(args: Args) -> Result<()> {
    util::run(util::cargo_cmd(["build", "--release", "-p", "tracer"]).env_remove("RUSTFLAGS"))?;
    let tracer = util::target_dir().join("release/tracer");
    let dir = util::target_dir().join("bench-runs");
    std::fs::create_dir_all(&dir)?;
    let s = measure(&tracer, &dir, args.rounds, args.count)?;
    print(&s);
    let path = util::target_dir().join("bench-runs.json");
    std::fs::write(&path, serde_json::to_string_pretty(&s)?)?;
    eprintln!("bench: wrote {}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_takes_medians_and_ranges() {
        let runs: Vec<Value> = [10.0, 30.0, 20.0]
            .iter()
            .map(|&r| {
                json!({ "recordings": 300, "events": 9, "workers": 2, "cores": 2,
                              "recordings_per_s": r, "events_per_s": r * 3.0, "seconds": 1.0 })
            })
            .collect();
        let s = summary(&runs);
        assert_eq!(s["recordings_per_s"]["median"], 20.0);
        assert_eq!(s["recordings_per_s"]["min"], 10.0);
        assert_eq!(s["events_per_s"]["max"], 90.0);
        assert_eq!(s["rounds"], 3);
        assert_eq!(s["workers"], 2);
    }
}
