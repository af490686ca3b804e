//! The recording sink: tees the stream into a recording and into the live sink (JSON
//! lines, text, the TUI), and records what the live engine learns along the way (symbols,
//! evidence limits) so that replay feeds the engine exactly what it was fed live.

use std::{collections::BTreeSet, io::Write};

use anyhow::Result;
use tracer_fs::{Engine, Notice, event::Event};

use super::{Item, TraceEnd, TraceHeader, TraceWriter, alloc::AllocRecord, unix_now_ns};
use crate::{
    kernel::clock::boottime_ns,
    live::LiveSink,
    report::{Report, ReportBuilder, ReportOptions},
    stream::Sink,
    stream::counters::Figures,
};

/// A sink that runs an engine the recording must mirror.
pub trait EngineSink: Sink {
    fn engine(&self) -> &Engine;
    /// From now on keep what allocation tracking concludes for the recording (false: it is
    /// off).
    fn record_alloc(&mut self) -> bool {
        false
    }
    /// What allocation tracking concluded since the last call, in order.
    fn take_alloc_records(&mut self) -> Vec<AllocRecord> {
        Vec::new()
    }
    /// Leak reports still waiting for their grace period.
    fn reports_due(&self) -> ReportsDue {
        ReportsDue::Unknown
    }
    /// What the engine concluded from the last event (empty where they are not kept).
    fn take_notices(&mut self) -> Vec<Notice> {
        Vec::new()
    }
}

/// Whether leak reports wait for their grace period (`tracer run` lingers for them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportsDue {
    /// None waits (or tracking is off).
    None,
    /// The last is due then (boot clock, ns); it is made right after (`Sink::wake_ns`).
    Until(u64),
    /// Not known here (the TUI's tracker runs on its own thread).
    Unknown,
}

impl ReportsDue {
    /// As one word for an atomic: 0 none, `u64::MAX` unknown.
    pub fn encode(self) -> u64 {
        match self {
            ReportsDue::None => 0,
            ReportsDue::Until(t) => t.clamp(1, u64::MAX - 1),
            ReportsDue::Unknown => u64::MAX,
        }
    }
    pub fn decode(v: u64) -> Self {
        match v {
            0 => ReportsDue::None,
            u64::MAX => ReportsDue::Unknown,
            t => ReportsDue::Until(t),
        }
    }
}

impl<W: Write> EngineSink for LiveSink<'_, W> {
    fn engine(&self) -> &Engine {
        &self.engine
    }
    fn record_alloc(&mut self) -> bool {
        self.alloc.as_mut().is_some_and(|t| {
            t.keep_records();
            true
        })
    }
    fn take_alloc_records(&mut self) -> Vec<AllocRecord> {
        self.alloc
            .as_mut()
            .map(|t| t.take_records())
            .unwrap_or_default()
    }
    fn reports_due(&self) -> ReportsDue {
        match self.alloc.as_ref().map(|t| t.reports_due_ns()) {
            Some(Some(t)) => ReportsDue::Until(t),
            _ => ReportsDue::None,
        }
    }
    fn take_notices(&mut self) -> Vec<Notice> {
        std::mem::take(&mut self.last_notices)
    }
}

/// Events between two looks at the writer's clocks (block age, sync).
const TICK_EVERY: u64 = 64;

pub struct RecordSink<S: EngineSink> {
    pub inner: S,
    writer: Option<TraceWriter>,
    symbols_seen: usize,
    symbols_written: BTreeSet<u64>,
    /// The first write error: recording stops there, the live view goes on.
    error: Option<String>,
    pub events: u64,
    pub bad_records: u64,
    pub drops: u64,
    /// The report, gathered beside the inner engine from what is recorded
    /// ([`RecordSink::gathering_report`]); gone if the recording stops early, since the report
    /// must be what replaying the recording gives.
    report: Option<ReportBuilder>,
    /// The end mark written, with the item count (for the report).
    end: Option<TraceEnd>,
}

impl<S: EngineSink> RecordSink<S> {
    pub fn new(inner: S, writer: TraceWriter) -> Self {
        Self::start(inner, writer, None)
    }

    /// A recording sink that also gathers the report of the recording (`header` is the one
    /// written), as replaying it would: beside the inner engine, which has applied nothing
    /// yet and is not applied twice. The sink must keep its notices
    /// (`EngineSink::take_notices`).
    pub fn gathering_report(
        inner: S,
        writer: TraceWriter,
        header: TraceHeader,
        opts: &ReportOptions,
    ) -> Self {
        Self::start(inner, writer, Some((header, opts)))
    }

    fn start(
        mut inner: S,
        writer: TraceWriter,
        report: Option<(TraceHeader, &ReportOptions)>,
    ) -> Self {
        inner.record_alloc();
        let report = report.map(|(h, o)| ReportBuilder::new(h, o, inner.engine()));
        let symbols = &inner.engine().config().symbols;
        let symbols_seen = symbols.len();
        let symbols_written = symbols.keys().copied().collect();
        let mut r = RecordSink {
            inner,
            writer: Some(writer),
            symbols_seen,
            symbols_written,
            error: None,
            events: 0,
            bad_records: 0,
            drops: 0,
            report,
            end: None,
        };
        // The tracking's setup first, before any event.
        r.write_alloc();
        r
    }

    /// The report gathered, once the recording is finished (`None`: not gathered, or the
    /// recording stopped early: read the file back).
    pub fn take_report(&mut self, source: &str) -> Option<Report> {
        let end = self.end.clone()?;
        let b = self.report.take()?;
        let items = end.items;
        Some(b.finish(self.inner.engine(), source, Some(end), Vec::new(), items))
    }

    /// Writes what allocation tracking concluded since the last call.
    fn write_alloc(&mut self) {
        let records = self.inner.take_alloc_records();
        let Some(w) = self.writer.as_mut() else {
            return;
        };
        match w.push_alloc(&records) {
            Ok(()) => {
                if let Some(b) = self.report.as_mut() {
                    records.into_iter().for_each(|r| b.item(Item::Alloc(r)));
                }
            }
            Err(e) => self.fail(e),
        }
    }

    /// Appends an item (the recording stops, with a warning, at the first write error).
    pub fn push(&mut self, item: &Item) {
        let Some(w) = self.writer.as_mut() else {
            return;
        };
        match w.push(item) {
            Ok(()) => {
                if let Some(b) = self.report.as_mut() {
                    b.item(item.clone());
                }
            }
            Err(e) => self.fail(e),
        }
    }

    fn fail(&mut self, e: anyhow::Error) {
        let path = self
            .writer
            .as_ref()
            .map(|w| w.path().display().to_string())
            .unwrap_or_default();
        eprintln!("tracer: WARNING: recording stopped: {e:#}; {path} holds what came before");
        self.error = Some(format!("{e:#}"));
        self.writer = None;
        self.report = None;
    }

    fn tick(&mut self) {
        if let Some(w) = self.writer.as_mut()
            && let Err(e) = w.tick()
        {
            self.fail(e);
        }
    }

    /// Symbols the live engine learnt since the last call, in address order.
    fn new_symbols(&mut self) -> Vec<Item> {
        let syms = &self.inner.engine().config().symbols;
        if syms.len() == self.symbols_seen {
            return Vec::new();
        }
        // Symbols only grow (`add_symbol` never replaces a name): the new ones are those
        // not written yet.
        self.symbols_seen = syms.len();
        let new: Vec<Item> = syms
            .iter()
            .filter(|(a, _)| !self.symbols_written.contains(a))
            .map(|(a, n)| Item::Symbol {
                addr: *a,
                name: n.clone(),
            })
            .collect();
        for i in &new {
            if let Item::Symbol { addr, .. } = i {
                self.symbols_written.insert(*addr);
            }
        }
        new
    }

    /// Writes the end mark; returns the path and size, or why the recording is incomplete.
    pub fn finish(
        &mut self,
        stopped_by: &str,
        command_status: Option<i32>,
    ) -> Result<(std::path::PathBuf, u64), String> {
        let Some(w) = self.writer.take() else {
            return Err(self
                .error
                .clone()
                .unwrap_or_else(|| "the recording was already finished".into()));
        };
        let path = w.path().to_path_buf();
        let end = TraceEnd {
            ended_unix_ns: unix_now_ns(),
            ended_boot_ns: boottime_ns(),
            // What the writer puts in the end mark.
            items: w.items(),
            events: self.events,
            bad_records: self.bad_records,
            drops: self.drops,
            stopped_by: stopped_by.to_string(),
            command_status,
        };
        match w.finish(&end) {
            Ok(bytes) => {
                self.end = Some(end);
                Ok((path, bytes))
            }
            Err(e) => {
                self.report = None;
                Err(format!("{e:#}"))
            }
        }
    }

    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }
}

impl<S: EngineSink> Sink for RecordSink<S> {
    fn event(&mut self, ev: &Event) -> Result<()> {
        if let Some(b) = self.report.as_mut() {
            b.before_event(self.inner.engine(), ev);
        }
        self.inner.event(ev)?;
        self.events += 1;
        // The live sink teaches its engine symbols before applying the event: write them
        // first so replay does the same.
        for s in self.new_symbols() {
            self.push(&s);
        }
        self.push_event(ev);
        if let Some(b) = self.report.as_mut() {
            let notices = self.inner.take_notices();
            b.after_event(self.inner.engine(), ev, notices);
        }
        // The writer's clocks are read every so many events, not at each (two clock reads
        // an event were 2.6% of `tracer run`'s CPU under fstests); a drain that empties
        // the ring buffer and each counter tick look too.
        if self.events.is_multiple_of(TICK_EVERY) {
            self.tick();
        }
        Ok(())
    }

    fn figures(&mut self, f: &Figures) -> Result<()> {
        let before = self.inner.engine().evidence_limits();
        self.inner.figures(f)?;
        self.drops = f.total_drops();
        self.push(&Item::Figures(serde_json::to_string(f)?));
        let after = self.inner.engine().evidence_limits();
        for l in after {
            if !before.contains(&l) {
                self.push(&Item::EvidenceLimit(l));
            }
        }
        self.write_alloc();
        self.tick();
        Ok(())
    }

    fn end(&mut self) -> Result<()> {
        let r = self.inner.end();
        self.write_alloc();
        r
    }

    fn warning(&mut self, msg: &str) -> Result<()> {
        self.inner.warning(msg)
    }

    fn wake_ns(&self) -> Option<u64> {
        self.inner.wake_ns()
    }

    fn caught_up(&mut self, as_of_ns: u64) -> Result<()> {
        self.tick();
        self.inner.caught_up(as_of_ns)
    }

    fn bad_record(&mut self, err: &str) -> Result<()> {
        self.bad_records += 1;
        self.push(&Item::BadRecord(err.to_string()));
        self.inner.bad_record(err)
    }

    fn ready(&mut self) -> Result<()> {
        self.push(&Item::Ready {
            ts_ns: boottime_ns(),
        });
        if let Some(w) = self.writer.as_mut()
            && let Err(e) = w.flush()
        {
            self.fail(e);
        }
        self.inner.ready()
    }
}

impl<S: EngineSink> RecordSink<S> {
    fn push_event(&mut self, ev: &Event) {
        let Some(w) = self.writer.as_mut() else {
            return;
        };
        if let Err(e) = w.push_event(ev) {
            self.fail(e);
        }
    }
}
