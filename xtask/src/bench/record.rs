//! The recording writer's throughput: `tracer bench-record` (hidden) writes a million
//! events of the xfstests-like fixture's mix to a new recording on the bench's tmpfs and
//! reads them back, once per round. Reported (table line and `bench.json`'s
//! `record_writer`), not asserted. On tmpfs it measures the encoding (postcard + zstd +
//! CRC framing) and decoding, not a disk.

use std::{path::Path, process::Command};

use anyhow::{Context as _, Result};
use serde_json::{Value, json};

use super::output;
use crate::util;

/// Runs the writer bench `rounds` times; the summary.
pub fn measure(tracer: &Path, dir: &Path, rounds: usize) -> Result<Value> {
    let fixture = util::workspace_root().join("tracer/tests/fixtures/fake-xfstests.trace");
    let mut runs = Vec::new();
    for round in 0..rounds {
        eprintln!("bench: round {}/{rounds}: recording writer", round + 1);
        let out = dir.join(format!("writer-{round}.trace"));
        let _ = std::fs::remove_file(&out);
        let stdout = output(
            Command::new(tracer)
                .arg("bench-record")
                .arg("--from")
                .arg(&fixture)
                .arg("--out")
                .arg(&out),
        )?;
        runs.push(serde_json::from_str::<Value>(stdout.trim()).context("bench-record output")?);
    }
    Ok(summary(&runs))
}

/// Medians (with min-max) of the runs' figures.
pub fn summary(runs: &[Value]) -> Value {
    let figure = |k: &str| super::figure_over(runs, k);
    json!({
        "events": runs.first().map_or(Value::Null, |r| r["events"].clone()),
        "bytes_per_event": figure("bytes_per_event"),
        "write_events_per_s": figure("write_events_per_s"),
        "read_events_per_s": figure("read_events_per_s"),
        "rounds": runs.len(),
    })
}

/// The table's line.
pub fn print(s: &Value) {
    let f = |k: &str| s[k]["median"].as_f64().unwrap_or(f64::NAN);
    let r = |k: &str| {
        format!(
            "{:.0}-{:.0}",
            s[k]["min"].as_f64().unwrap_or(f64::NAN),
            s[k]["max"].as_f64().unwrap_or(f64::NAN)
        )
    };
    println!(
        "recording writer ({} events, {} rounds): written {:.0} events/s [{}], read {:.0} \
         events/s [{}], {:.1} bytes/event",
        s["events"],
        s["rounds"],
        f("write_events_per_s"),
        r("write_events_per_s"),
        f("read_events_per_s"),
        r("read_events_per_s"),
        f("bytes_per_event"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_takes_medians_and_ranges() {
        let runs: Vec<Value> = [(1e6, 3e6), (3e6, 2e6), (2e6, 4e6)]
            .iter()
            .map(|&(w, r)| {
                json!({ "events": 1000, "bytes_per_event": 13.5, "write_events_per_s": w,
                        "read_events_per_s": r })
            })
            .collect();
        let s = summary(&runs);
        assert_eq!(s["write_events_per_s"]["median"], 2e6);
        assert_eq!(s["write_events_per_s"]["min"], 1e6);
        assert_eq!(s["read_events_per_s"]["max"], 4e6);
        assert_eq!(s["bytes_per_event"]["median"], 13.5);
        assert_eq!(s["events"], 1000);
        assert_eq!(s["rounds"], 3);
    }

    #[test]
    fn summary_of_no_runs_is_empty() {
        let s = summary(&[]);
        assert!(s["write_events_per_s"].is_null());
        assert_eq!(s["rounds"], 0);
    }
}
