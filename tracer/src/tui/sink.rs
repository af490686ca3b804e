//! The draining task's end of the TUI: a [`Sink`] that feeds the engine (through the
//! [`Model`]), handles what the UI asked for, and publishes a fresh [`Snapshot`] at every
//! counter tick. Publishing replaces the previous snapshot and never waits for the UI.

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    sync::{Arc, mpsc},
};

use anyhow::Result;
use tokio::sync::watch;
use tracer_fs::event::Event;

use super::{
    alloc_worker::AllocWorker,
    model::{Model, Request, Snapshot},
};
use crate::{
    kernel::clock::boottime_ns,
    kernel::kallsyms::Kallsyms,
    record::{EngineSink, alloc::AllocRecord},
    stream::Sink,
    stream::counters::Figures,
};

/// Answers a request from the UI; `dir` is where reports go.
pub fn answer(model: &mut Model, r: Request, dir: &Path, now_ns: u64) {
    match r {
        Request::Focus { mount, file } => model.set_focus(mount, file),
        Request::SaveReport => {
            let status = match super::report::save(model, dir, now_ns) {
                Ok(p) => format!("report saved: {}", p.display()),
                Err(e) => format!("report not saved: {e:#}"),
            };
            model.set_status(status);
        }
    }
}

/// How often allocation tracking reads the kernel's map (a syscall or two per entry: not
/// at every snapshot).
const ALLOC_EVERY_NS: u64 = 1_000_000_000;

pub struct TuiSink {
    pub model: Model,
    syms: Kallsyms,
    named: HashSet<u64>,
    tx: watch::Sender<Arc<Snapshot>>,
    requests: mpsc::Receiver<Request>,
    /// Where `s` writes reports.
    dir: PathBuf,
    pub notices: u64,
    alloc: Option<AllocWorker>,
    alloc_due_ns: u64,
    /// Allocation records for the recording, until it takes them.
    alloc_records: Vec<AllocRecord>,
}

impl TuiSink {
    pub fn new(
        model: Model,
        syms: Kallsyms,
        tx: watch::Sender<Arc<Snapshot>>,
        requests: mpsc::Receiver<Request>,
        dir: PathBuf,
    ) -> Self {
        TuiSink {
            model,
            syms,
            named: HashSet::new(),
            tx,
            requests,
            dir,
            notices: 0,
            alloc: None,
            alloc_due_ns: 0,
            alloc_records: Vec::new(),
        }
    }

    /// Turns on allocation tracking's live view and leak reports (on their own thread).
    pub fn set_alloc(&mut self, worker: AllocWorker) {
        self.alloc = Some(worker);
    }

    /// Takes what allocation tracking finished (the view for the next snapshots, leak
    /// reports into the events) and, once a second, asks for a new read of the map.
    fn alloc_tick(&mut self, f: &Figures, now: u64) {
        let Some(w) = self.alloc.as_mut() else {
            return;
        };
        for done in w.done() {
            self.alloc_records.extend(done.records);
            for v in &done.reports {
                self.notices += 1;
                self.model.leak_report(v, done.now_ns);
            }
            if let Some(e) = done.error {
                self.model
                    .warn(format!("allocation tracking: reading the map: {e}"), now);
            }
            if let Some(v) = done.view {
                self.model.set_alloc(v);
            }
        }
        if now >= self.alloc_due_ns {
            self.alloc_due_ns = now + ALLOC_EVERY_NS;
            w.tick(now, f);
        }
    }

    /// Handles the UI's requests and publishes a snapshot.
    pub fn publish(&mut self) {
        let now = boottime_ns();
        while let Ok(r) = self.requests.try_recv() {
            answer(&mut self.model, r, &self.dir, now);
        }
        let snap = self.model.snapshot(now);
        self.tx.send_replace(Arc::new(snap));
    }
}

impl Sink for TuiSink {
    fn event(&mut self, ev: &Event) -> Result<()> {
        crate::live::teach_work_names(&mut self.model.engine, &mut self.named, &self.syms, ev);
        if let Some(a) = self.alloc.as_mut() {
            a.on_event(ev);
        }
        self.notices += self.model.apply(ev).len() as u64;
        Ok(())
    }

    fn figures(&mut self, f: &Figures) -> Result<()> {
        let now = boottime_ns();
        self.model.set_figures(f, now);
        self.alloc_tick(f, now);
        self.publish();
        Ok(())
    }

    fn bad_record(&mut self, err: &str) -> Result<()> {
        self.model.bad_record(err, boottime_ns());
        Ok(())
    }

    fn warning(&mut self, _msg: &str) -> Result<()> {
        // The verdicts say when a scan could not run; the TUI's log shows those.
        Ok(())
    }

    fn ready(&mut self) -> Result<()> {
        self.model.set_ready();
        self.publish();
        Ok(())
    }
}

/// `tracer attach --record` with the TUI: the recording mirrors the TUI's engine, and
/// keeps what allocation tracking concluded (brought back from its thread at each tick).
impl EngineSink for TuiSink {
    fn engine(&self) -> &tracer_fs::Engine {
        &self.model.engine
    }
    fn record_alloc(&mut self) -> bool {
        self.alloc.as_mut().is_some_and(|w| {
            w.keep_records();
            true
        })
    }
    fn take_alloc_records(&mut self) -> Vec<AllocRecord> {
        std::mem::take(&mut self.alloc_records)
    }
}
