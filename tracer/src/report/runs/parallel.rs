//! Finding recordings and replaying them in parallel: one recording at a time per worker
//! thread (one per core by default), each reduced to its [`RunDigest`] before the next is
//! read, so memory is bounded by one replayed recording per worker. A progress bar goes to
//! stderr when it is a terminal.

use std::{
    io::IsTerminal,
    path::{Path, PathBuf},
    sync::{
        Mutex,
        atomic::{AtomicUsize, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result};

use super::{
    digest::{RunDigest, digest},
    summary::Unreadable,
};
use crate::record::MAGIC;
use crate::report::{ReportOptions, replay_file};

/// The recordings among `paths`: files as given (whatever their name), and every file
/// under a directory, recursively, that starts with the recording magic, in name order.
pub fn find_recordings(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).with_context(|| format!("reading {}", p.display()))?;
        if meta.is_dir() {
            walk(p, &mut out)?;
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading the directory {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for e in entries {
        let Ok(meta) = std::fs::symlink_metadata(&e) else {
            continue;
        };
        if meta.is_dir() {
            walk(&e, out)?;
        } else if meta.is_file() && is_recording(&e) {
            out.push(e);
        }
    }
    Ok(())
}

/// Starts with [`MAGIC`].
pub fn is_recording(p: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 8];
    std::fs::File::open(p)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && head == MAGIC
}

/// How the replay went.
pub struct Replayed {
    pub runs: Vec<RunDigest>,
    pub unreadable: Vec<Unreadable>,
    pub elapsed: Duration,
    pub workers: usize,
    pub events: u64,
}

/// Worker threads to use: `jobs`, or one per core.
pub fn workers(jobs: Option<usize>, files: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    jobs.unwrap_or(cores).clamp(1, files.max(1))
}

/// Replays every file on `workers` threads; results in the order of `files`.
pub fn replay_all(files: &[PathBuf], workers: usize, progress: bool) -> Replayed {
    let start = Instant::now();
    let next = AtomicUsize::new(0);
    let (tx, rx) = mpsc::channel::<(usize, Result<(RunDigest, u64), String>)>();
    let bar = progress_bar(files.len() as u64, progress);
    let opts = ReportOptions::default();
    let mut slots: Vec<Option<Result<RunDigest, String>>> = vec![None; files.len()];
    let events = Mutex::new(0u64);
    std::thread::scope(|s| {
        for _ in 0..workers {
            let tx = tx.clone();
            let next = &next;
            let opts = &opts;
            s.spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(f) = files.get(i) else { break };
                    let r = replay_one(f, opts);
                    if tx.send((i, r)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        for (i, r) in rx {
            if let Some(b) = &bar {
                b.inc(1);
            }
            slots[i] = Some(r.map(|(d, n)| {
                *events.lock().unwrap_or_else(|e| e.into_inner()) += n;
                d
            }));
        }
    });
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let mut runs = Vec::new();
    let mut unreadable = Vec::new();
    for (f, r) in files.iter().zip(slots) {
        match r {
            Some(Ok(d)) => runs.push(d),
            Some(Err(error)) => unreadable.push(Unreadable {
                file: f.display().to_string(),
                error,
            }),
            None => unreadable.push(Unreadable {
                file: f.display().to_string(),
                error: "not replayed (a worker stopped)".to_string(),
            }),
        }
    }
    Replayed {
        runs,
        unreadable,
        elapsed: start.elapsed(),
        workers,
        events: events.into_inner().unwrap_or_else(|e| e.into_inner()),
    }
}

/// One recording's digest; an error (or a panic of the replay, which would otherwise end
/// the whole report) as words.
fn replay_one(f: &Path, opts: &ReportOptions) -> Result<(RunDigest, u64), String> {
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        replay_file(f, opts)
            .map(|report| (digest(&report), report.events))
            .map_err(|e| format!("{e:#}"))
    }));
    r.unwrap_or_else(|p| {
        let why = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        Err(format!(
            "the replay failed (a bug in tracer: please report it): {why}"
        ))
    })
}

fn progress_bar(len: u64, wanted: bool) -> Option<indicatif::ProgressBar> {
    if !wanted || !std::io::stderr().is_terminal() {
        return None;
    }
    let b = indicatif::ProgressBar::new(len);
    b.set_style(
        indicatif::ProgressStyle::with_template(
            "replaying {bar:40} {pos}/{len} recordings, {per_sec}, eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    Some(b)
}
