//! `tracer report FILE`: replays a recording through the same engine as the live view and
//! tells, per xfstests test, what pinned each mount (the EBUSY stories), what leaked, and
//! how long deferred work waited. Formats: text, JSON, a self-contained HTML page, and
//! Chrome trace JSON for Perfetto.
//!
//! Sections are split at the `run fstests <test> at <date>` markers the recording captured
//! from /dev/kmsg (`Payload::TestMarker`); what comes before the first marker is its own
//! section (or the only one, for recordings without markers).

pub mod alloc;
pub mod html;
pub mod json;
pub mod perfetto;
pub mod redact;
pub mod runs;
pub mod text;

use std::{
    collections::{BTreeMap, HashMap},
    io::{Read, Write as _},
    path::Path,
};

use anyhow::{Context, Result};
use serde::Serialize;
use tracer_fs::{
    Engine, EngineConfig, Notice,
    event::{Event, MountCallOp, Payload},
    stats::Stats,
    summary::AliveOnMount,
    verdict::{MountDesc, VerdictKind},
    work::{ChainLink, FnCounters},
};

use crate::record::{
    Item, Problem, ReadError, TraceEnd, TraceHeader, TraceReader, alloc::AllocRecord,
};

pub use redact::Redactor;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    /// Plain text, per test.
    Text,
    /// One JSON document.
    Json,
    /// A single self-contained HTML page with the timeline of each EBUSY story.
    Html,
    /// Chrome trace JSON, to open in Perfetto (ui.perfetto.dev) or chrome://tracing.
    Perfetto,
    /// KernelCI's KCIDB I/O JSON (schema v5.3): one test result per test per recording,
    /// with the tracer's findings.
    Kcidb,
}

impl ReportFormat {
    pub fn extension(self) -> &'static str {
        match self {
            ReportFormat::Text => "report.txt",
            ReportFormat::Json => "report.json",
            ReportFormat::Html => "report.html",
            ReportFormat::Perfetto => "perfetto.json",
            ReportFormat::Kcidb => "kcidb.json",
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct ReportOptions {
    /// Only sections of this test (e.g. `generic/388`).
    pub test: Option<String>,
    /// Replace kernel addresses by stable tokens.
    pub redact: bool,
    /// Collect the timeline of work runs, mount calls and chains (Perfetto).
    pub timeline: bool,
}

/// What a report says of a recording made without `--alloc-filter`.
pub const ALLOCATIONS_NOT_TRACKED: &str = "allocations: not tracked in this recording";

/// One EBUSY story: from the first EBUSY of a mount-table call to its success.
#[derive(Clone, Debug)]
pub struct Story {
    pub what: String,
    pub first_ebusy_ns: u64,
    pub mount: Option<MountDesc>,
    /// The story's notices in order (verdicts, culprits released, the close).
    pub notices: Vec<Notice>,
    pub failed_attempts: u32,
    /// When it succeeded (None: still busy at the end of the section).
    pub closed_ns: Option<u64>,
    /// A lock-conflict story (first "EBUSY" is the first conflict, the close the lock's
    /// release, failed attempts the conflicts).
    pub lock: bool,
    /// A deleted file's space held (from the delete to the file's release).
    pub space: bool,
}

impl Story {
    /// A failed umount's or mount's story (not a lock's, not a deleted file's).
    pub fn is_ebusy(&self) -> bool {
        !self.lock && !self.space
    }
}

impl Story {
    fn key_of(n: &Notice) -> Option<(String, u64)> {
        match n {
            Notice::Verdict(v) => {
                let what = match v.kind {
                    VerdictKind::UmountBusy => format!("umount {}", v.target),
                    VerdictKind::MountBusy => format!("mount {}", v.source),
                };
                Some((what, v.first_ebusy_ns))
            }
            Notice::CulpritReleased(c) => Some((c.story.what.clone(), c.story.first_ebusy_ns)),
            Notice::PinReleased(p) => Some((p.story.what.clone(), p.story.first_ebusy_ns)),
            Notice::PinFoundLate(p) => Some((p.story.what.clone(), p.story.first_ebusy_ns)),
            Notice::StoryClosed(s) => Some((s.story.what.clone(), s.story.first_ebusy_ns)),
            Notice::LockConflict(v) => Some((v.story_what(), v.first_ns())),
            Notice::LockStillHeld(h) => Some((h.story.story_what(), h.story.first_ns)),
            Notice::LockReleased(r) => Some((r.story.story_what(), r.story.first_ns)),
            Notice::SpaceHeld(s) => Some((s.story.story_what(), s.story.first_ns)),
            Notice::SpaceFreed(s) => Some((s.story.story_what(), s.story.first_ns)),
            _ => None,
        }
    }
}

/// Latency figures of one work function within a section.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Spread {
    pub count: u64,
    pub mean_ns: u64,
    pub p50_ns: u64,
    pub p90_ns: u64,
    pub p99_ns: u64,
    pub max_ns: u64,
}

impl Spread {
    fn of(mut v: Vec<u64>) -> Spread {
        if v.is_empty() {
            return Spread::default();
        }
        v.sort_unstable();
        let q = |p: u64| v[((v.len() as u64 - 1) * p / 100) as usize];
        Spread {
            count: v.len() as u64,
            mean_ns: (v.iter().map(|x| *x as u128).sum::<u128>() / v.len() as u128) as u64,
            p50_ns: q(50),
            p90_ns: q(90),
            p99_ns: q(99),
            max_ns: *v.last().unwrap(),
        }
    }
}

/// Deferred work of one function within a section.
#[derive(Clone, Debug, Serialize)]
pub struct WorkStats {
    #[serde(serialize_with = "tracer_fs::text::ser_hex")]
    pub function: u64,
    pub name: String,
    pub armed: u64,
    pub queued: u64,
    pub started: u64,
    pub ended: u64,
    /// Queue → start.
    pub latency: Spread,
    /// Start → end.
    pub run: Spread,
    /// Armed or queued and not started at the end of the section.
    pub waiting_at_end: usize,
}

/// One xfstests test (or what came before the first one).
#[derive(Clone, Debug)]
pub struct Section {
    /// `None`: before the first test marker (or no markers at all).
    pub test: Option<String>,
    pub start_ns: u64,
    pub end_ns: u64,
    pub events: u64,
    pub mount_calls: u64,
    pub ebusy_calls: u64,
    pub stories: Vec<Story>,
    /// Mounts detached while pinned, and detached mounts unpinned, in this section.
    pub detached: Vec<Notice>,
    /// Detached mounts still pinned by files at the end of the section: a mount that
    /// lives on invisibly (the leak a lazy umount hides).
    pub pinned_at_end: Vec<AliveOnMount>,
    pub work: Vec<WorkStats>,
    /// Allocation tracking in this section (`None`: not tracked in the recording).
    pub alloc: Option<alloc::SectionAlloc>,
}

/// The `tracer run` command as recorded.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CommandInfo {
    pub argv: Vec<String>,
    pub pid: u32,
    pub started_ns: Option<u64>,
    pub exited_ns: Option<u64>,
    pub status: Option<i32>,
    pub signal: Option<i32>,
}

/// A work run, for the timeline.
#[derive(Clone, Debug)]
pub struct WorkRun {
    pub function: u64,
    pub work: u64,
    pub pid: u32,
    pub comm: tracer_fs::actor::Comm,
    pub queued_ns: Option<u64>,
    pub start_ns: u64,
    pub end_ns: Option<u64>,
}

/// A mount-table call, for the timeline.
#[derive(Clone, Debug)]
pub struct MountCallMark {
    pub ts_ns: u64,
    pub enter_ns: u64,
    pub op: MountCallOp,
    pub ret: i64,
    pub target: String,
    pub source: String,
    pub pid: u32,
    pub tgid: u32,
    pub comm: tracer_fs::actor::Comm,
}

/// What Perfetto shows besides the stories.
#[derive(Clone, Debug, Default)]
pub struct Timeline {
    pub work_runs: Vec<WorkRun>,
    pub mount_calls: Vec<MountCallMark>,
    /// Names of threads seen (pid → comm), for track names.
    pub threads: BTreeMap<u32, (u32, tracer_fs::actor::Comm)>,
}

/// A replayed recording, ready to render.
pub struct Report {
    pub source: String,
    pub header: TraceHeader,
    pub end: Option<TraceEnd>,
    /// Replayed while still being written (the TUI's `s`): no end mark is no crash.
    pub in_progress: bool,
    pub problems: Vec<Problem>,
    pub items: u64,
    pub events: u64,
    pub bad_records: u64,
    pub bad_record_samples: Vec<String>,
    /// The last counters the kernel side sent (JSON of `counters::Figures`).
    pub figures: Option<serde_json::Value>,
    pub command: Option<CommandInfo>,
    pub ready_ns: Option<u64>,
    pub first_ns: Option<u64>,
    pub last_ns: u64,
    pub sections: Vec<Section>,
    /// Every test seen, in order (also those `--test` left out).
    pub tests_seen: Vec<String>,
    pub test_filter: Option<String>,
    pub stats: Stats,
    pub evidence_limits: Vec<String>,
    /// The engine's configuration at the end (with the symbols learnt at run time).
    pub config: EngineConfig,
    pub timeline: Timeline,
    pub redactor: Redactor,
    /// Allocation tracking (`None`: the recording was made without `--alloc-filter`).
    pub alloc: Option<alloc::AllocInfo>,
    /// fstests' own verdicts, when the recorded command was `./check` (test, status).
    pub fstests_results: Vec<(String, String)>,
}

impl Report {
    /// fstests' verdict on `test` in this run: `fail` when any of its runs failed, then
    /// `notrun`, then `pass`; `None` when the recording holds no verdicts for it.
    pub fn fstests_status(&self, test: &str) -> Option<&'static str> {
        let mut found = None;
        for (t, s) in &self.fstests_results {
            if t != test {
                continue;
            }
            let s = match s.as_str() {
                "fail" => "fail",
                "notrun" => "notrun",
                _ => "pass",
            };
            found = match (found, s) {
                (Some("fail"), _) | (_, "fail") => Some("fail"),
                (Some("notrun"), _) | (_, "notrun") => Some("notrun"),
                _ => Some("pass"),
            };
        }
        found
    }

    /// Wall-clock time of a boot-clock timestamp, RFC 3339 (UTC), when the header has both
    /// clocks.
    pub fn wall(&self, ts_ns: u64) -> Option<String> {
        let h = &self.header;
        if h.started_unix_ns == 0 {
            return None;
        }
        let unix = h.started_unix_ns as i128 + ts_ns as i128 - h.started_boot_ns as i128;
        let unix = u64::try_from(unix).ok()?;
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(unix);
        Some(humantime::format_rfc3339_millis(t).to_string())
    }

    /// Records the kernel side lost, per the last counters.
    /// From the start of the recording to its end line, or to its last item when it ended
    /// without one.
    pub fn duration_ns(&self) -> u64 {
        self.end
            .as_ref()
            .map(|e| e.ended_boot_ns)
            .unwrap_or(self.last_ns)
            .saturating_sub(self.header.started_boot_ns)
    }

    /// The header's count of events: `N (L records lost by the kernel side, B undecodable)`
    /// (text and HTML).
    pub fn events_line(&self) -> String {
        format!(
            "{} ({} records lost by the kernel side, {} undecodable)",
            self.events,
            self.records_lost(),
            self.bad_records
        )
    }

    /// The hooks of the recording that nothing served.
    pub fn hooks_not_attached(&self) -> Vec<&str> {
        self.header
            .hooks
            .iter()
            .filter(|k| k.mechanism.is_none())
            .map(|k| k.hook.as_str())
            .collect()
    }

    pub fn records_lost(&self) -> u64 {
        self.figures
            .as_ref()
            .and_then(|f| f["drops"].as_object())
            .map(|d| d.values().filter_map(|v| v.as_u64()).sum())
            .unwrap_or(0)
            .max(self.end.as_ref().map_or(0, |e| e.drops))
    }

    /// Renders in `format`, redacted when asked.
    pub fn render(&mut self, format: ReportFormat) -> String {
        let s = match format {
            ReportFormat::Text => text::render(self),
            ReportFormat::Json => json::render(self),
            ReportFormat::Html => html::render(self),
            ReportFormat::Perfetto => perfetto::render(self),
            // One recording's KCIDB export goes through the cross-run report (`main`).
            ReportFormat::Kcidb => {
                let run = runs::digest::digest(self);
                let summary = runs::summary::summarize(vec![run], Vec::new());
                let o = runs::kcidb::KcidbOptions {
                    origin: "tracer".to_string(),
                    build_id: None,
                };
                let mut s = serde_json::to_string_pretty(&runs::kcidb::export(&summary, &o))
                    .unwrap_or_default();
                s.push('\n');
                s
            }
        };
        if self.redactor.enabled() {
            self.redactor.apply(&s)
        } else {
            s
        }
    }
}

/// Per-function counters seen at the last work event, to spot new latencies and runs.
#[derive(Default)]
struct WorkWatch {
    last: HashMap<u64, (u64, u64)>,
    latencies: HashMap<u64, Vec<u64>>,
    runs: HashMap<u64, Vec<u64>>,
    at_start: BTreeMap<u64, FnCounters>,
}

/// What a report gathers from the events beside the engine that applied them (which it
/// does not own: `tracer run` gathers beside its live engine, a replay beside its own).
struct Replayer {
    opts: ReportOptions,
    sections: Vec<Section>,
    cur: Section,
    stories: Vec<Story>,
    watch: WorkWatch,
    timeline: Timeline,
    running: HashMap<u64, usize>,
    queued: HashMap<u64, u64>,
    tests_seen: Vec<String>,
    redactor: Redactor,
    alloc: alloc::AllocReplay,
    /// Every section closed: its start and, when kept, its index in `sections`.
    bounds: Vec<(u64, Option<usize>)>,
}

fn new_section(test: Option<String>, ts: u64) -> Section {
    Section {
        test,
        start_ns: ts,
        end_ns: ts,
        events: 0,
        mount_calls: 0,
        ebusy_calls: 0,
        stories: Vec::new(),
        detached: Vec::new(),
        pinned_at_end: Vec::new(),
        work: Vec::new(),
        alloc: None,
    }
}

impl Replayer {
    fn wanted(&self, s: &Section) -> bool {
        match &self.opts.test {
            None => true,
            Some(t) => s.test.as_deref() == Some(t.as_str()),
        }
    }

    /// Ends the current section at `ts` with the engine's view of that moment.
    fn close_section(&mut self, engine: &Engine, ts: u64) {
        let mut s = std::mem::replace(&mut self.cur, new_section(None, ts));
        s.end_ns = ts.max(s.start_ns);
        let stories = std::mem::take(&mut self.stories);
        let watch = std::mem::take(&mut self.watch);
        let alloc = self.alloc.close_section();
        let start = s.start_ns;
        let mut kept = None;
        if self.wanted(&s) {
            s.alloc = alloc;
            s.stories = stories;
            s.pinned_at_end = engine
                .mount_summaries()
                .into_iter()
                .filter(|m| m.detached && m.alive_files > 0)
                .map(|m| engine.alive_on_mount(m.mount_id))
                .collect();
            s.work = Self::work_stats(engine, watch);
            // A section with nothing in it (e.g. before the first marker) is left out.
            if s.test.is_some() || s.events > 0 {
                kept = Some(self.sections.len());
                self.sections.push(s);
            }
        }
        self.bounds.push((start, kept));
        self.watch.at_start = engine.work().per_fn().clone();
    }

    fn work_stats(engine: &Engine, mut w: WorkWatch) -> Vec<WorkStats> {
        let waiting: HashMap<u64, usize> = engine
            .work_summaries()
            .into_iter()
            .map(|s| (s.function, s.waiting_now))
            .collect();
        engine
            .work()
            .per_fn()
            .iter()
            .filter_map(|(f, c)| {
                let z = FnCounters::default();
                let b = w.at_start.get(f).unwrap_or(&z);
                let d = |now: u64, then: u64| now.saturating_sub(then);
                let ws = WorkStats {
                    function: *f,
                    name: engine.config().symbol(*f),
                    armed: d(c.armed, b.armed),
                    queued: d(c.queued, b.queued),
                    started: d(c.started, b.started),
                    ended: d(c.ended, b.ended),
                    latency: Spread::of(w.latencies.remove(f).unwrap_or_default()),
                    run: Spread::of(w.runs.remove(f).unwrap_or_default()),
                    waiting_at_end: waiting.get(f).copied().unwrap_or(0),
                };
                let active =
                    ws.armed + ws.queued + ws.started + ws.ended > 0 || ws.waiting_at_end > 0;
                active.then_some(ws)
            })
            .collect()
    }

    fn watch_work(&mut self, engine: &Engine, function: u64) {
        let Some(c) = engine.work().per_fn().get(&function) else {
            return;
        };
        let last = self.watch.last.entry(function).or_insert((0, 0));
        if c.latency.count > last.0 {
            self.watch
                .latencies
                .entry(function)
                .or_default()
                .push(c.latency.last_ns);
        }
        if c.run.count > last.1 {
            self.watch
                .runs
                .entry(function)
                .or_default()
                .push(c.run.last_ns);
        }
        *last = (c.latency.count, c.run.count);
    }

    fn add_notice(&mut self, n: Notice) {
        match Story::key_of(&n) {
            Some((what, first)) => {
                let i = match self
                    .stories
                    .iter()
                    .position(|s| s.what == what && s.first_ebusy_ns == first)
                {
                    Some(i) => i,
                    None => {
                        self.stories.push(Story {
                            what,
                            first_ebusy_ns: first,
                            mount: None,
                            notices: Vec::new(),
                            failed_attempts: 0,
                            closed_ns: None,
                            lock: matches!(
                                n,
                                Notice::LockConflict(_)
                                    | Notice::LockStillHeld(_)
                                    | Notice::LockReleased(_)
                            ),
                            space: matches!(n, Notice::SpaceHeld(_) | Notice::SpaceFreed(_)),
                        });
                        self.stories.len() - 1
                    }
                };
                let s = &mut self.stories[i];
                match &n {
                    Notice::Verdict(v) => {
                        s.failed_attempts = s.failed_attempts.max(v.attempt);
                        if v.mount.is_some() {
                            s.mount = v.mount.clone();
                        }
                    }
                    Notice::CulpritReleased(c) if s.mount.is_none() => {
                        s.mount = c.story.mount.clone();
                    }
                    Notice::StoryClosed(c) => {
                        s.closed_ns = Some(c.ts_ns);
                        s.failed_attempts = s.failed_attempts.max(c.failed_attempts);
                        if s.mount.is_none() {
                            s.mount = c.story.mount.clone();
                        }
                    }
                    Notice::LockConflict(v) => {
                        s.failed_attempts = s.failed_attempts.max(1);
                        s.mount = s.mount.clone().or_else(|| v.mount.clone());
                    }
                    Notice::LockStillHeld(h) => {
                        s.failed_attempts = s.failed_attempts.max(h.story.conflicts);
                    }
                    Notice::LockReleased(r) => {
                        s.closed_ns = Some(r.ts_ns);
                        s.failed_attempts = s.failed_attempts.max(r.story.conflicts);
                        s.mount = s.mount.clone().or_else(|| r.story.mount.clone());
                    }
                    Notice::SpaceHeld(h) => {
                        s.mount = s.mount.clone().or_else(|| h.story.mount.clone());
                    }
                    Notice::SpaceFreed(f) => {
                        s.closed_ns = Some(f.ts_ns);
                        s.mount = s.mount.clone().or_else(|| f.story.mount.clone());
                    }
                    _ => {}
                }
                s.notices.push(n);
            }
            None => self.cur.detached.push(n),
        }
    }

    fn timeline_event(&mut self, ev: &Event) {
        self.timeline
            .threads
            .entry(ev.pid)
            .or_insert_with(|| (ev.tgid, ev.comm.clone()));
        match &ev.payload {
            Payload::WorkQueued { work, .. } => {
                self.queued.insert(*work, ev.ts_ns);
            }
            Payload::WorkStart { work, function } => {
                self.running.insert(*work, self.timeline.work_runs.len());
                self.timeline.work_runs.push(WorkRun {
                    function: *function,
                    work: *work,
                    pid: ev.pid,
                    comm: ev.comm.clone(),
                    queued_ns: self.queued.remove(work),
                    start_ns: ev.ts_ns,
                    end_ns: None,
                });
            }
            Payload::WorkEnd { work, .. } => {
                if let Some(i) = self.running.remove(work) {
                    self.timeline.work_runs[i].end_ns = Some(ev.ts_ns);
                }
            }
            Payload::MountCall(tracer_fs::event::MountCall {
                op,
                ret,
                enter_ns,
                source,
                target,
                ..
            }) => self.timeline.mount_calls.push(MountCallMark {
                ts_ns: ev.ts_ns,
                enter_ns: *enter_ns,
                op: *op,
                ret: *ret,
                target: target.clone(),
                source: source.clone(),
                pid: ev.pid,
                tgid: ev.tgid,
                comm: ev.comm.clone(),
            }),
            _ => {}
        }
    }

    /// Files each leak report under the section its umount happened in (reports are made a
    /// grace period later, often during the next test).
    fn file_leaks(&mut self) {
        for k in std::mem::take(&mut self.alloc.leaks) {
            let at = k.umount_ns();
            let i = self.bounds.partition_point(|(start, _)| *start <= at);
            let Some((_, Some(idx))) = self.bounds.get(i.saturating_sub(1)) else {
                continue;
            };
            if let Some(a) = self.sections[*idx].alloc.as_mut() {
                a.leaks.push(k);
            }
        }
    }

    /// Before the engine applies `ev`: a test's marker closes the section with the
    /// engine's view of the moment before it.
    fn before_event(&mut self, engine: &Engine, ev: &Event) {
        if let Payload::TestMarker { test } = &ev.payload {
            self.close_section(engine, ev.ts_ns);
            self.cur = new_section(Some(test.clone()), ev.ts_ns);
            if !self.tests_seen.contains(test) {
                self.tests_seen.push(test.clone());
            }
        }
    }

    /// After the engine applied `ev`, with what it concluded.
    fn after_event(&mut self, engine: &Engine, ev: &Event, notices: Vec<Notice>) {
        self.redactor.observe(ev);
        let s = &mut self.cur;
        s.events += 1;
        s.end_ns = s.end_ns.max(ev.ts_ns);
        if let Payload::MountCall(tracer_fs::event::MountCall { ret, .. }) = ev.payload {
            s.mount_calls += 1;
            if ret == tracer_fs::engine::EBUSY {
                s.ebusy_calls += 1;
            }
        }
        match ev.payload {
            Payload::WorkStart { function, .. } | Payload::WorkEnd { function, .. } => {
                self.watch_work(engine, function)
            }
            _ => {}
        }
        if self.opts.timeline {
            self.timeline_event(ev);
        }
        for n in notices {
            self.add_notice(n);
        }
    }
}

/// A report gathered one item at a time beside an engine that applies the events: its own
/// in a replay ([`Replay`]), or `tracer run`'s live engine, which then makes the report as
/// the command runs without applying every event a second time (that replay was a third
/// of `tracer run`'s CPU).
pub struct ReportBuilder {
    r: Replayer,
    header: TraceHeader,
    events: u64,
    bad_records: u64,
    bad_record_samples: Vec<String>,
    figures: Option<serde_json::Value>,
    command: Option<CommandInfo>,
    ready_ns: Option<u64>,
    first_ns: Option<u64>,
    last_ns: u64,
    fstests_results: Vec<(String, String)>,
}

impl ReportBuilder {
    /// Starts beside `engine`, which has applied no event yet.
    pub fn new(header: TraceHeader, opts: &ReportOptions, engine: &Engine) -> ReportBuilder {
        let r = Replayer {
            watch: WorkWatch {
                at_start: engine.work().per_fn().clone(),
                ..Default::default()
            },
            opts: opts.clone(),
            sections: Vec::new(),
            cur: new_section(None, header.started_boot_ns),
            stories: Vec::new(),
            timeline: Timeline::default(),
            running: HashMap::new(),
            queued: HashMap::new(),
            tests_seen: Vec::new(),
            redactor: Redactor::new(opts.redact),
            alloc: alloc::AllocReplay::new(opts.timeline),
            bounds: Vec::new(),
        };
        ReportBuilder {
            r,
            header,
            events: 0,
            bad_records: 0,
            bad_record_samples: Vec::new(),
            figures: None,
            command: None,
            ready_ns: None,
            first_ns: None,
            last_ns: 0,
            fstests_results: Vec::new(),
        }
    }

    /// An event, before `engine` applies it.
    pub fn before_event(&mut self, engine: &Engine, ev: &Event) {
        self.r.before_event(engine, ev);
    }

    /// An event `engine` has just applied, with what it concluded.
    pub fn after_event(&mut self, engine: &Engine, ev: &Event, notices: Vec<Notice>) {
        self.events += 1;
        self.first_ns.get_or_insert(ev.ts_ns);
        self.last_ns = self.last_ns.max(ev.ts_ns);
        self.r.after_event(engine, ev, notices);
    }

    /// The next item that is not an event, in recording order. Symbols and evidence limits
    /// are the engine's: whoever owns it teaches it them.
    pub fn item(&mut self, item: Item) {
        let r = &mut self.r;
        match item {
            Item::Event(_) | Item::Symbol { .. } | Item::EvidenceLimit(_) => {}
            Item::Figures(f) => self.figures = serde_json::from_str(&f).ok(),
            Item::BadRecord(b) => {
                self.bad_records += 1;
                if self.bad_record_samples.len() < 10 {
                    self.bad_record_samples.push(b);
                }
            }
            Item::Ready { ts_ns } => {
                self.ready_ns = Some(ts_ns);
            }
            Item::CommandStarted { ts_ns, pid, argv } => {
                let c = self.command.get_or_insert_with(CommandInfo::default);
                c.argv = argv;
                c.pid = pid;
                c.started_ns = Some(ts_ns);
            }
            Item::CommandExited {
                ts_ns,
                pid,
                status,
                signal,
            } => {
                let c = self.command.get_or_insert_with(CommandInfo::default);
                c.pid = pid;
                c.exited_ns = Some(ts_ns);
                c.status = Some(status);
                c.signal = signal;
            }
            Item::TestResults(v) => self.fstests_results.extend(v),
            Item::Alloc(rec) => {
                match &rec {
                    AllocRecord::Leak(k) => r.redactor.observe_leak(k),
                    AllocRecord::Live(l) => r.redactor.observe_live(l),
                    _ => {}
                }
                r.alloc.apply(rec);
            }
        }
    }

    /// The report, once every item was given, with `engine`'s view at the end: `end`,
    /// `problems` and `items` are what the recording says of itself (its end mark, what
    /// could not be read, its item count).
    pub fn finish(
        mut self,
        engine: &Engine,
        source: &str,
        end: Option<TraceEnd>,
        problems: Vec<Problem>,
        items: u64,
    ) -> Report {
        let header = self.header;
        let mut r = self.r;
        if self.command.is_none()
            && let Some(argv) = &header.command
        {
            self.command = Some(CommandInfo {
                argv: argv.clone(),
                ..Default::default()
            });
        }
        let end_ts = end
            .as_ref()
            .map(|e| e.ended_boot_ns)
            .unwrap_or(self.last_ns)
            .max(self.last_ns);
        r.close_section(engine, end_ts);
        r.file_leaks();
        for e in &r.alloc.setup_errors {
            self.bad_record_samples.push(e.clone());
        }
        Report {
            source: source.to_string(),
            end,
            in_progress: false,
            problems,
            items,
            header,
            events: self.events,
            bad_records: self.bad_records,
            bad_record_samples: self.bad_record_samples,
            figures: self.figures,
            command: self.command,
            ready_ns: self.ready_ns,
            first_ns: self.first_ns,
            last_ns: self.last_ns,
            sections: r.sections,
            tests_seen: r.tests_seen,
            test_filter: r.opts.test.clone(),
            stats: engine.stats(),
            evidence_limits: engine.evidence_limits(),
            config: engine.config().clone(),
            timeline: r.timeline,
            redactor: r.redactor,
            alloc: r.alloc.tracked().then(|| r.alloc.info.clone()),
            fstests_results: self.fstests_results,
        }
    }
}

/// A replay fed one item at a time, through an engine of its own.
pub struct Replay {
    engine: Engine,
    builder: ReportBuilder,
}

impl Replay {
    pub fn new(header: TraceHeader, opts: &ReportOptions) -> Replay {
        let engine = Engine::new(header.engine.clone());
        let builder = ReportBuilder::new(header, opts, &engine);
        Replay { engine, builder }
    }

    /// The next item, in recording order.
    pub fn item(&mut self, item: Item) {
        match item {
            Item::Event(ev) => {
                self.builder.before_event(&self.engine, &ev);
                let notices = self.engine.apply(&ev);
                self.builder.after_event(&self.engine, &ev, notices);
            }
            Item::Symbol { addr, name } => self.engine.add_symbol(addr, name),
            Item::EvidenceLimit(l) => self.engine.add_evidence_limit(l),
            other => self.builder.item(other),
        }
    }

    /// See [`ReportBuilder::finish`].
    pub fn finish(
        self,
        source: &str,
        end: Option<TraceEnd>,
        problems: Vec<Problem>,
        items: u64,
    ) -> Report {
        self.builder
            .finish(&self.engine, source, end, problems, items)
    }
}

/// Replays a recording through the engine and gathers the report.
pub fn replay<R: Read>(
    mut reader: TraceReader<R>,
    source: &str,
    opts: &ReportOptions,
) -> Result<Report, ReadError> {
    let mut replay = Replay::new(reader.header().clone(), opts);
    while let Some(item) = reader.next_item()? {
        replay.item(item);
    }
    let end = reader.end().cloned();
    let problems = reader.problems().to_vec();
    Ok(replay.finish(source, end, problems, reader.items_read()))
}

/// Opens and replays `path`.
pub fn replay_file(path: &Path, opts: &ReportOptions) -> Result<Report> {
    let reader = TraceReader::open(path).with_context(|| format!("reading {}", path.display()))?;
    let report = replay(reader, &path.display().to_string(), opts)
        .with_context(|| format!("reading {}", path.display()))?;
    if let Some(t) = &opts.test
        && !report.tests_seen.contains(t)
    {
        let seen = if report.tests_seen.is_empty() {
            "no xfstests markers were recorded".to_string()
        } else {
            format!("tests recorded: {}", report.tests_seen.join(", "))
        };
        anyhow::bail!("{}: no test {t} in this recording ({seen})", path.display());
    }
    Ok(report)
}

/// The chains of a notice (for the timeline views).
pub fn notice_chain(n: &Notice) -> Option<&[ChainLink]> {
    match n {
        Notice::CulpritReleased(c) if !c.chain.is_empty() => Some(&c.chain),
        Notice::DetachedMountUnpinned(d) if !d.chain.is_empty() => Some(&d.chain),
        Notice::LockReleased(r) if !r.chain.is_empty() => Some(&r.chain),
        Notice::SpaceFreed(s) if !s.chain.is_empty() => Some(&s.chain),
        _ => None,
    }
}

/// The time of a notice.
pub fn notice_ts(n: &Notice) -> u64 {
    match n {
        Notice::Verdict(v) => v.ts_ns,
        Notice::CulpritReleased(c) => c.ts_ns,
        Notice::PinReleased(p) => p.ts_ns,
        Notice::PinFoundLate(p) => p.ts_ns,
        Notice::StoryClosed(s) => s.ts_ns,
        Notice::MountDetachedPinned(m) => m.ts_ns,
        Notice::DetachedMountUnpinned(m) => m.ts_ns,
        Notice::LockConflict(v) => v.ts_ns,
        Notice::LockStillHeld(h) => h.ts_ns,
        Notice::LockReleased(r) => r.ts_ns,
        Notice::SpaceHeld(s) => s.ts_ns,
        Notice::SpaceFreed(s) => s.ts_ns,
    }
}

/// One line about a notice, for timelines: "EBUSY (attempt 2) by pid 12 (umount)".
pub fn notice_summary(n: &Notice) -> String {
    use tracer_fs::text::count;
    match n {
        Notice::Verdict(v) => {
            let files = v.culprits.len()
                + v.pinned_mounts.iter().map(|p| p.files.len()).sum::<usize>()
                + v.device_openers.len();
            let pins = if v.task_pins.is_empty() {
                String::new()
            } else {
                format!(
                    ", {} with cwd/root on it",
                    count(v.task_pins.len(), "process", "processes")
                )
            };
            format!(
                "EBUSY (attempt {}) by pid {} ({}): {} on it{pins}{}",
                v.attempt,
                v.caller.tgid,
                v.caller.comm,
                count(files, "open file", "open files"),
                if v.unexplained {
                    ", nothing traced explains it"
                } else {
                    ""
                }
            )
        }
        Notice::CulpritReleased(c) => text::released_summary(&[c]),
        Notice::PinReleased(p) => format!(
            "released: {} of {}{}",
            p.what.word(),
            p.task.name(),
            if p.seen {
                " (its fs_struct freed)"
            } else {
                " (gone by a later scan)"
            }
        ),
        Notice::PinFoundLate(p) => format!(
            "found after the verdict: {} of {} (read at its exit tracepoint)",
            p.what.word(),
            p.task.name()
        ),
        Notice::StoryClosed(s) => format!(
            "{}succeeded by pid {} ({})",
            if s.lazy { "lazy umount " } else { "" },
            s.caller.tgid,
            s.caller.comm
        ),
        Notice::MountDetachedPinned(m) => format!(
            "mount {} left the table, still pinned by {}",
            m.mount.id,
            count(m.files.len(), "file", "files")
        ),
        Notice::DetachedMountUnpinned(m) => format!("detached mount {} unpinned", m.mount.id),
        Notice::LockConflict(v) => {
            let held = match &v.holder {
                Some(h) => format!(
                    "held by pid {} ({}), file {}",
                    h.taken_by.pid,
                    h.taken_by.comm,
                    tracer_fs::text::hex(h.file_addr)
                ),
                None => "holder not found".to_string(),
            };
            format!(
                "{} by pid {} ({}): {held}",
                v.call, v.caller.tgid, v.caller.comm
            )
        }
        Notice::LockStillHeld(h) => format!(
            "still held (attempt {}) by pid {} ({})",
            h.story.conflicts, h.caller.tgid, h.caller.comm
        ),
        Notice::LockReleased(r) => format!("lock released ({:?})", r.how),
        Notice::SpaceHeld(s) => format!(
            "deleted by pid {} ({}) while held: {} ({})",
            s.deleted_by.tgid,
            s.deleted_by.comm,
            tracer_fs::space::bytes(s.story.allocated),
            tracer_fs::locks::holder_kinds(&s.file).join(", ")
        ),
        Notice::SpaceFreed(s) => format!("space freed after {}", tracer_fs::text::dur(s.held_ns)),
    }
}

/// `tracer report`'s command line.
#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// The recording (`tracer attach --record FILE`, `tracer run`); or several recordings
    /// and directories (searched recursively for recordings) for the cross-run report.
    #[arg(value_name = "RECORDING", required_unless_present = "json_schema")]
    pub files: Vec<std::path::PathBuf>,
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,
    /// Only this xfstests test (e.g. `generic/388`).
    #[arg(long, value_name = "TEST")]
    pub test: Option<String>,
    /// Replace kernel addresses by stable tokens (`file#3`, `ring#1`, ...), for sharing.
    /// One recording only (the cross-run report names functions, not addresses).
    #[arg(long)]
    pub redact: bool,
    /// Write the report to FILE (mode 0600) instead of stdout.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<std::path::PathBuf>,
    /// Cross-run report: recordings replayed at once (default: one per core).
    #[arg(long, short = 'j', value_name = "N")]
    pub jobs: Option<usize>,
    /// `--format kcidb`: the submitting CI system's name (KCIDB `origin`).
    #[arg(long, value_name = "ORIGIN", default_value = "tracer")]
    pub kcidb_origin: String,
    /// `--format kcidb`: an existing KCIDB build the tests belong to (`origin:id`);
    /// without it one checkout and build per kernel release are written.
    #[arg(long, value_name = "ID")]
    pub kcidb_build_id: Option<String>,
    /// Print the JSON schema of the cross-run report and exit.
    #[arg(long)]
    pub json_schema: bool,
}

/// `tracer report`.
pub fn main(a: ReportArgs) -> Result<()> {
    if a.json_schema {
        print!("{}", runs::schema::json_schema());
        return Ok(());
    }
    let many =
        a.files.len() > 1 || a.files.iter().any(|f| f.is_dir()) || a.format == ReportFormat::Kcidb;
    if many {
        if a.redact {
            anyhow::bail!(
                "--redact is for one recording: the cross-run report names functions, not kernel addresses"
            );
        }
        return runs::main(runs::RunsOptions {
            paths: a.files,
            format: a.format,
            test: a.test,
            jobs: a.jobs,
            output: a.output,
            kcidb: runs::kcidb::KcidbOptions {
                origin: a.kcidb_origin,
                build_id: a.kcidb_build_id,
            },
            progress: true,
        });
    }
    let file = &a.files[0];
    let opts = ReportOptions {
        test: a.test,
        redact: a.redact,
        timeline: a.format == ReportFormat::Perfetto,
    };
    match &a.output {
        Some(out) => write_report(file, out, a.format, &opts),
        None => {
            let mut r = replay_file(file, &opts)?;
            let text = r.render(a.format);
            use std::io::Write;
            let mut stdout = std::io::stdout().lock();
            match stdout.write_all(text.as_bytes()) {
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                r => r.context("writing the report"),
            }
        }
    }
}

/// Replays `record` and writes the report (mode 0600) to `out`.
pub fn write_report(
    record: &Path,
    out: &Path,
    format: ReportFormat,
    opts: &ReportOptions,
) -> Result<()> {
    let mut r = replay_file(record, opts)?;
    write_rendered(&mut r, out, format)
}

/// Writes the report `r` in `format` (mode 0600) to `out`.
pub fn write_rendered(r: &mut Report, out: &Path, format: ReportFormat) -> Result<()> {
    let text = r.render(format);
    let mut f = crate::record::create_private(out, true)
        .with_context(|| format!("creating the report {}", out.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("writing the report {}", out.display()))?;
    Ok(())
}

/// A command line as a shell would take it back: `sh -c 'exit 3'`.
pub fn command_line(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            let plain = !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_./=:@%+,-".contains(c));
            if plain {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
