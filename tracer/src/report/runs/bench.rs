//! A generated set of recordings for the cross-run replay's throughput: copies of a real
//! recording (the xfstests-like fixtures), each with its own machine and kernel in the
//! header, replayed in parallel. `tracer bench-runs` (hidden) prints the figures as JSON;
//! `cargo xtask bench` reports them. A figure, never an assertion.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::{Value, json};

use crate::record::{TraceReader, TraceWriter};

/// The kernels the generated runs claim, in turn.
pub const KERNELS: [&str; 3] = ["6.1.0-28-cloud-amd64", "6.12.9", "6.18.44-fc-v657"];

/// Writes `count` recordings into `dir`, cycling over `from`: run `i` says it was made on
/// `vm-(i % machines)` with kernel `KERNELS[i % 3]`; events and allocation records are the
/// source's.
pub fn generate(
    from: &[PathBuf],
    dir: &Path,
    count: usize,
    machines: usize,
) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let src = &from[i % from.len()];
        let mut reader =
            TraceReader::open(src).with_context(|| format!("reading {}", src.display()))?;
        let mut header = reader.header().clone();
        header.hostname = format!("vm-{}", i % machines.max(1));
        header.kernel_release = KERNELS[i % KERNELS.len()].to_string();
        let path = dir
            .join(format!("vm-{}", i % machines.max(1)))
            .join(format!("run-{i:05}.trace"));
        if let Some(p) = path.parent() {
            std::fs::create_dir_all(p)?;
        }
        let _ = std::fs::remove_file(&path);
        let mut w = TraceWriter::create(&path, &header)?;
        while let Some(item) = reader
            .next_item()
            .with_context(|| format!("reading {}", src.display()))?
        {
            w.push(&item)?;
        }
        let end = reader.end().cloned().unwrap_or_default();
        w.finish(&end)?;
        out.push(path);
    }
    Ok(out)
}

#[derive(clap::Args, Debug)]
pub struct BenchRunsArgs {
    /// Recordings to copy (e.g. tracer/tests/fixtures/*.trace).
    #[arg(long, required = true)]
    pub from: Vec<PathBuf>,
    /// Directory for the generated set (made; its files are replaced).
    #[arg(long)]
    pub dir: PathBuf,
    #[arg(long, default_value_t = 300)]
    pub count: usize,
    /// Workers (default: one per core).
    #[arg(long)]
    pub jobs: Option<usize>,
}

/// Generates the set, replays it, and says how fast.
pub fn run(a: &BenchRunsArgs) -> Result<Value> {
    let files = generate(&a.from, &a.dir, a.count, 8)?;
    let bytes: u64 = files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    let workers = super::parallel::workers(a.jobs, files.len());
    let r = super::parallel::replay_all(&files, workers, false);
    let secs = r.elapsed.as_secs_f64().max(1e-9);
    let summary = super::summary::summarize(r.runs, r.unreadable);
    Ok(json!({
        "recordings": files.len(),
        "replayed": summary.runs.len(),
        "unreadable": summary.unreadable.len(),
        "bytes": bytes,
        "events": r.events,
        "workers": workers,
        "cores": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "seconds": secs,
        "recordings_per_s": files.len() as f64 / secs,
        "events_per_s": r.events as f64 / secs,
        "tests": summary.tests.len(),
        "kernels": summary.kernels.len(),
        "hosts": summary.hosts.len(),
    }))
}
