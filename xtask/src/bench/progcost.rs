//! `cargo xtask bench --prog-cost WORKLOAD`: where the BPF time of one bench workload goes,
//! program by program. With `kernel.bpf_stats_enabled` on (restored after), each
//! configuration's tracer is attached, the workload runs once, and the kernel's own counts
//! (`bpftool prog show`: `run_cnt`, `run_time_ns`, `recursion_misses`) are compared before
//! and after. Repeatable where the bench's ratios are not: a program's nanoseconds per run
//! move by a few percent between runs, a throughput ratio by ten. (The counting itself
//! adds two clock reads per run, about 20-40 ns here: compare configurations, not these
//! figures with the bench's.)

use std::{collections::BTreeMap, path::Path, process::Command};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use super::{Args, Env, Traced};
use crate::util;

/// A program's cumulative counts, by program id.
type Counts = BTreeMap<u64, ProgCounts>;

#[derive(Clone, Default)]
struct ProgCounts {
    name: String,
    runs: u64,
    ns: u64,
    recursion_misses: u64,
}

fn counts() -> Result<Counts> {
    let out = util::probe(Command::new("bpftool").args(["prog", "show", "--json"]))
        .context("bpftool prog show --json (bpftool is in Debian's bpftool package)")?;
    let v: Value = serde_json::from_str(&out).context("bpftool's JSON")?;
    let mut c = Counts::new();
    for p in v.as_array().into_iter().flatten() {
        let Some(id) = p["id"].as_u64() else { continue };
        c.insert(
            id,
            ProgCounts {
                name: p["name"].as_str().unwrap_or("?").to_string(),
                runs: p["run_cnt"].as_u64().unwrap_or(0),
                ns: p["run_time_ns"].as_u64().unwrap_or(0),
                recursion_misses: p["recursion_misses"].as_u64().unwrap_or(0),
            },
        );
    }
    Ok(c)
}

/// Puts `kernel.bpf_stats_enabled` back as it was, also on error.
struct StatsOn(String);

impl StatsOn {
    fn new() -> Result<StatsOn> {
        let path = "/proc/sys/kernel/bpf_stats_enabled";
        let was = std::fs::read_to_string(path)
            .with_context(|| format!("reading {path}"))?
            .trim()
            .to_string();
        std::fs::write(path, "1").with_context(|| format!("writing {path}"))?;
        Ok(StatsOn(was))
    }
}

impl Drop for StatsOn {
    fn drop(&mut self) {
        let _ = std::fs::write("/proc/sys/kernel/bpf_stats_enabled", &self.0);
    }
}

pub fn measure(args: &Args, env: &Env, tracer: &Path, script: &Path, w: &str) -> Result<()> {
    if !["files", "uring", "meta", "mount", "dbench", "fio"].contains(&w) {
        bail!("--prog-cost {w}: not a bench workload (files, uring, meta, mount, dbench, fio)");
    }
    let _stats = StatsOn::new()?;
    let secs = match w {
        "dbench" | "fio" => args.real_secs as f64,
        _ => args.secs,
    };
    for config in ["untraced", "floor", "default", "unfiltered"] {
        util::check_interrupted()?;
        let traced = match config {
            "untraced" => None,
            c => Some(Traced::start(c, tracer, script)?),
        };
        let before = counts()?;
        let ops_per_s = env.run(w, args)?;
        let after = counts()?;
        if let Some(t) = traced {
            t.stop()?;
        }
        let ops = ops_per_s * secs;
        let mut rows: Vec<(u64, &ProgCounts, u64, u64)> = after
            .iter()
            .filter_map(|(id, a)| {
                let b = before.get(id).cloned().unwrap_or_default();
                let runs = a.runs.saturating_sub(b.runs);
                (runs > 0).then(|| {
                    (
                        a.ns.saturating_sub(b.ns),
                        a,
                        runs,
                        a.recursion_misses.saturating_sub(b.recursion_misses),
                    )
                })
            })
            .collect();
        rows.sort_by_key(|r| std::cmp::Reverse(r.0));
        let total: u64 = rows.iter().map(|r| r.0).sum();
        println!(
            "{w} {config}: {ops_per_s:.0} ops/s; BPF {:.1} ms in all, {:.0} ns per op",
            total as f64 / 1e6,
            if ops > 0.0 { total as f64 / ops } else { 0.0 }
        );
        for (ns, p, runs, misses) in rows.iter().take(16) {
            println!(
                "  {:<30} {runs:>10} runs {:>7.0} ns/run {:>8.1} ms {:>7.2} runs/op{}",
                p.name,
                *ns as f64 / *runs as f64,
                *ns as f64 / 1e6,
                if ops > 0.0 { *runs as f64 / ops } else { 0.0 },
                if *misses > 0 {
                    format!("  ({misses} skipped: recursion)")
                } else {
                    String::new()
                }
            );
        }
    }
    Ok(())
}
