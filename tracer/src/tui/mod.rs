//! The live TUI of `tracer attach` on a terminal: a header (kernel, hooks, rates, lost
//! records, tracked objects, the xfstests test), the mounts pane, the deferred-work pane
//! and the events pane, with drill-down into a mount's files and a file's history.
//!
//! The task draining the ring buffer owns the engine ([`sink::TuiSink`]) and publishes an
//! immutable [`model::Snapshot`] every 250 ms over a `watch` channel; the UI thread
//! ([`term`]) draws the latest one and sends [`model::Request`]s back. Nothing the UI does
//! can hold up the draining.

pub mod alloc_worker;
pub mod app;
pub mod events;
pub mod file_view;
pub mod header;
pub mod help;
pub mod log;
pub mod model;
pub mod mount_view;
pub mod mounts;
pub mod report;
pub mod sink;
pub mod style;
pub mod term;
pub mod trail;
pub mod ui;
pub mod work;

use std::{
    path::Path,
    sync::{Arc, mpsc},
    time::Duration,
};

use anyhow::{Result, anyhow};
use tokio::sync::{Notify, watch};

pub use app::App;
pub use model::{Meta, Model, Request, Snapshot, WallClock};
pub use ui::draw;

use crate::{
    alloc::{tracker::AllocTracker, view::AllocView},
    attach::{self, Options},
    kernel::clock::boottime_ns,
    live,
    stream::{self, StreamOptions},
};

impl WallClock {
    /// The offsets as they are now.
    pub fn now() -> Self {
        let unix_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as i128)
            .unwrap_or(0);
        // SAFETY: time(NULL) and localtime_r into a zeroed struct.
        let utc_offset_s = unsafe {
            let t = libc::time(std::ptr::null_mut());
            let mut tm: libc::tm = std::mem::zeroed();
            libc::localtime_r(&t, &mut tm);
            tm.tm_gmtoff
        };
        WallClock {
            unix_minus_boot_ns: unix_ns - boottime_ns() as i128,
            utc_offset_s,
        }
    }
}

/// `tracer attach` with the TUI: attaches, runs the UI until `q` (or SIGTERM, or the
/// duration), detaches, and prints a one-line summary. With allocation tracking on
/// (`opts.alloc`) the panes show allocations and the events leak reports; with `record`
/// every event is also recorded there, as with `--no-tui`.
pub async fn attach(
    opts: &Options,
    mut stream_opts: StreamOptions,
    record: Option<&Path>,
) -> Result<()> {
    eprintln!("tracer: attaching the probes…");
    let mut att = attach::attach(opts)?;
    let kallsyms = att.kallsyms.clone();
    let engine = tracer_fs::Engine::new(live::engine_config(&att));
    let meta = Arc::new(Meta {
        kernel: crate::kernel::uname::kernel_line().unwrap_or_else(|| "Linux".into()),
        hooks: att.hooks.iter().map(model::HookLine::of).collect(),
        recording: record.map(|p| p.display().to_string()),
    });
    let attach_ns = boottime_ns();
    let mut model = Model::new(engine, meta, attach_ns, Some(WallClock::now()));
    model.start_clock();
    let tracker = match (att.alloc.take(), opts.alloc.clone()) {
        (Some(maps), Some(aopts)) => {
            let mut t = AllocTracker::new(maps, aopts.clone());
            t.check_hooks(&att.hooks);
            let s = t.summary();
            for n in &s.notes {
                model.warn(format!("allocation tracking: {n}"), attach_ns);
            }
            // Until the first read: the filter, the cap, nothing outstanding.
            model.set_alloc(AllocView {
                filter: s.terms.clone(),
                notes: s.notes.clone(),
                cap: aopts.max_entries,
                sample_every: aopts.sample_every,
                ..Default::default()
            });
            Some(alloc_worker::AllocWorker::spawn(t)?)
        }
        _ => None,
    };
    let (tx, rx) = watch::channel(Arc::new(model.snapshot(attach_ns)));
    let (req_tx, req_rx) = mpsc::channel();
    let stop = Arc::new(Notify::new());
    stream_opts.stop = Some(stop.clone());
    stream_opts.stats_every = stream_opts.stats_every.min(Duration::from_millis(250));
    let ui = std::thread::Builder::new()
        .name("tracer-tui".into())
        .spawn(move || term::run(rx, req_tx, stop))?;
    let dir = std::env::current_dir().unwrap_or_else(|_| ".".into());
    let mut sink = sink::TuiSink::new(model, kallsyms, tx, req_rx, dir);
    if let Some(w) = tracker {
        sink.set_alloc(w);
    }
    let (result, notices, recorded) = match record {
        None => {
            let r = stream::run(&mut att, stream_opts, &mut sink).await;
            let n = sink.notices;
            drop(sink);
            (r, n, None)
        }
        Some(path) => {
            match crate::record::run::stream_recorded(&mut att, opts, stream_opts, sink, path).await
            {
                Ok((summary, back, rec)) => (Ok(summary), back.notices, Some(rec)),
                Err(e) => (Err(e), 0, None),
            }
        }
    };
    // The sink is gone: the closed channel ends the UI, which puts the terminal back.
    let ui_result = ui.join();
    term::restore();
    eprintln!("tracer: detaching the probes…");
    drop(att);
    if let Some(rec) = &recorded {
        rec.tell();
    }
    let summary = result?;
    match ui_result {
        Ok(r) => r?,
        Err(_) => return Err(anyhow!("the TUI thread panicked (the probes are detached)")),
    }
    println!(
        "tracer: stopped by {}; {} events, {notices} notices, {} records lost, {} undecodable; all probes detached",
        summary.stopped_by,
        summary.events,
        summary.figures.total_drops(),
        summary.bad_records
    );
    Ok(())
}
