//! `tracer report` over many recordings (files or directories, from many machines and
//! kernels): what recurs per test. Each recording is replayed on its own (in parallel, one
//! at a time per worker) and reduced to a [`digest::RunDigest`]; [`summary::summarize`]
//! groups the digests per test (runs, runs with EBUSY stories, holder kinds, release chains
//! by function, pinned time p50/p99/max, leak groups by symbolized stack, lock conflicts);
//! [`text`], [`html`], JSON (the summary serialized; schema in [`schema`]) and [`kcidb`]
//! render it.

pub mod bench;
pub mod digest;
pub mod html;
pub mod kcidb;
pub mod parallel;
pub mod schema;
pub mod summary;
pub mod text;

use std::{io::Write, path::PathBuf};

use anyhow::{Context, Result, bail};

use super::ReportFormat;

/// What `tracer report` was asked, for several recordings.
#[derive(Clone, Debug)]
pub struct RunsOptions {
    pub paths: Vec<PathBuf>,
    pub format: ReportFormat,
    pub test: Option<String>,
    pub jobs: Option<usize>,
    pub output: Option<PathBuf>,
    pub kcidb: kcidb::KcidbOptions,
    /// Show a progress bar (when stderr is a terminal).
    pub progress: bool,
}

/// Replays and summarizes; keeps only `test` when given.
pub fn build(o: &RunsOptions) -> Result<(summary::CrossRunReport, parallel::Replayed)> {
    let files = parallel::find_recordings(&o.paths)?;
    if files.is_empty() {
        bail!(
            "no recordings found in {}",
            o.paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let workers = parallel::workers(o.jobs, files.len());
    let mut replayed = parallel::replay_all(&files, workers, o.progress);
    let runs = std::mem::take(&mut replayed.runs);
    let unreadable = std::mem::take(&mut replayed.unreadable);
    let mut report = summary::summarize(runs, unreadable);
    if let Some(t) = &o.test {
        report.tests.retain(|x| &x.test == t);
        for r in &mut report.runs {
            r.tests.retain(|x| &x.test == t);
        }
    }
    Ok((report, replayed))
}

/// Renders the cross-run report in `format`.
pub fn render(r: &summary::CrossRunReport, o: &RunsOptions) -> Result<String> {
    Ok(match o.format {
        ReportFormat::Text => text::render(r),
        ReportFormat::Html => html::render(r),
        ReportFormat::Json => {
            let mut s = serde_json::to_string_pretty(r)?;
            s.push('\n');
            s
        }
        ReportFormat::Kcidb => {
            let mut s = serde_json::to_string_pretty(&kcidb::export(r, &o.kcidb))?;
            s.push('\n');
            s
        }
        ReportFormat::Perfetto => {
            bail!(
                "--format perfetto is for one recording; over several, use text, json, html or kcidb"
            )
        }
    })
}

/// `tracer report` with several recordings, a directory, or `--format kcidb`.
pub fn main(o: RunsOptions) -> Result<()> {
    if !kcidb::valid_origin(&o.kcidb.origin) {
        bail!(
            "--kcidb-origin {:?}: KCIDB origins are lower-case letters, digits and '_'",
            o.kcidb.origin
        );
    }
    if o.format == ReportFormat::Perfetto {
        render(&summary::CrossRunReport::default(), &o)?;
    }
    let (report, replayed) = build(&o)?;
    let secs = replayed.elapsed.as_secs_f64();
    eprintln!(
        "tracer report: {} recordings replayed ({} unreadable, {} events) in {:.1} s on {} workers: {:.1} recordings/s",
        report.runs.len(),
        report.unreadable.len(),
        replayed.events,
        secs,
        replayed.workers,
        (report.runs.len() + report.unreadable.len()) as f64 / secs.max(1e-9),
    );
    let out = render(&report, &o)?;
    match &o.output {
        Some(path) => {
            let mut f = crate::record::create_private(path, true)
                .with_context(|| format!("creating the report {}", path.display()))?;
            f.write_all(out.as_bytes())
                .with_context(|| format!("writing the report {}", path.display()))
        }
        None => match std::io::stdout().lock().write_all(out.as_bytes()) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            r => r.context("writing the report"),
        },
    }
}
