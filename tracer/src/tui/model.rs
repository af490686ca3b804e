//! The TUI's side of the engine: what the draining task keeps besides the engine (the
//! events log, the xfstests marker, counters, the selection the UI asked about), and the
//! immutable [`Snapshot`] built from all of it for the UI thread. Pure: no I/O except the
//! report the UI asks for.

use std::{
    collections::VecDeque,
    sync::Arc,
    time::{Duration, Instant},
};

use tracer_fs::{
    Engine, Notice,
    event::{Event, HolderRef, MountCallOp, Payload, RefHow},
    files::{FileKey, FileState, HolderDrop},
    mounts::UmountAttempt,
    summary::{MountSummary, WorkFnSummary},
    text::{count, errno_name},
    verdict::{DropDesc, FileReport, MountDesc},
    work::{ChainLink, LinkRole, chain_text},
};

use super::{
    log::{LogEntry, LogKind},
    trail::{Step, Trails},
};
use crate::{
    alloc::view::{AllocView, MountAlloc},
    stream::counters::Figures,
};

/// How many log entries the events pane keeps.
pub const LOG_CAP: usize = 1000;
/// How many leak reports a saved report repeats in full.
pub const LEAKS_KEPT: usize = 20;
/// How many files of one mount the mount view shows.
pub const MOUNT_VIEW_FILES: usize = 300;

/// What does not change while attached: the kernel and the hooks.
#[derive(Clone, Debug, Default)]
pub struct Meta {
    /// `Linux 6.18.0 x86_64`.
    pub kernel: String,
    pub hooks: Vec<HookLine>,
    /// Where `--record` writes, when it does.
    pub recording: Option<String>,
}

/// One hook and how it is served, for the header and the help screen.
#[derive(Clone, Debug)]
pub struct HookLine {
    pub name: String,
    /// What it is for.
    pub why: String,
    pub live: bool,
    /// The mechanism and points serving it, or why none could.
    pub how: String,
}

impl HookLine {
    pub fn of(h: &crate::attach::hooks::HookStatus) -> Self {
        HookLine {
            name: h.hook.to_string(),
            why: h.why.to_string(),
            live: h.live(),
            how: match h.mechanism {
                Some(m) => format!("{m}: {}", h.points.join(", ")),
                None => h.notes.join("; "),
            },
        }
    }
}

/// Boot-clock times as local wall-clock times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WallClock {
    /// Unix time minus boot time, in ns.
    pub unix_minus_boot_ns: i128,
    /// Local time minus UTC, in seconds.
    pub utc_offset_s: i64,
}

impl WallClock {
    /// `HH:MM:SS` of a boot-clock timestamp.
    pub fn hms(&self, boot_ns: u64) -> String {
        let unix_s = (boot_ns as i128 + self.unix_minus_boot_ns).div_euclid(1_000_000_000);
        let day_s = (unix_s + self.utc_offset_s as i128).rem_euclid(86_400);
        format!(
            "{:02}:{:02}:{:02}",
            day_s / 3600,
            (day_s / 60) % 60,
            day_s % 60
        )
    }
}

/// What the UI asks the draining task for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Build the view of this mount (and of this file) in the next snapshots.
    Focus {
        mount: Option<i32>,
        file: Option<FileKey>,
    },
    /// Write a report now.
    SaveReport,
}

/// One object table and its cap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tracked {
    pub what: &'static str,
    pub n: usize,
    pub cap: usize,
}

/// Files of a mount held one way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileGroup {
    pub title: &'static str,
    /// Files in the group (all of them, even when not all are listed).
    pub count: usize,
    pub files: Vec<FileReport>,
}

/// A mount and what pins it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountView {
    pub mount_id: i32,
    pub summary: Option<MountSummary>,
    /// The mount is gone (unmounted and nothing pins it): the last known description.
    pub gone: Option<MountDesc>,
    pub groups: Vec<FileGroup>,
    /// Files listed (at most [`MOUNT_VIEW_FILES`]) and alive in all.
    pub listed: usize,
    pub alive: usize,
    /// The latest umount attempts, oldest first.
    pub attempts: Vec<UmountAttempt>,
    pub children: Vec<MountDesc>,
}

/// A file, what holds it, and what happened to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileView {
    pub key: FileKey,
    pub report: FileReport,
    /// (time, what happened), in time order.
    pub history: Vec<(u64, String)>,
    /// The locks it holds that someone could not take (open lock-conflict stories).
    pub locks: Vec<String>,
}

/// Everything the UI draws, built every ~250 ms by the draining task.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub meta: Arc<Meta>,
    pub clock: Option<WallClock>,
    /// Boot time when the tracer attached, and now.
    pub attach_ns: u64,
    pub now_ns: u64,
    pub elapsed: Duration,
    /// The attach-time snapshot is done: everything from here on is seen.
    pub ready: bool,
    /// Events applied since attach, and per second lately.
    pub events: u64,
    pub rate: u64,
    /// Records lost (ring buffer full), program runs skipped, undecodable records.
    pub drops: u64,
    pub skipped_runs: u64,
    pub bad_records: u64,
    pub tracked: Vec<Tracked>,
    pub evicted: u64,
    /// The xfstests test running now (from /dev/kmsg).
    pub test: Option<String>,
    /// In display order: pinned mounts first, then the newest.
    pub mounts: Vec<MountSummary>,
    pub work: Vec<WorkFnSummary>,
    pub log: Vec<Arc<LogEntry>>,
    pub mount_view: Option<MountView>,
    pub file_view: Option<FileView>,
    /// The last thing the draining task wants said (a report saved, ...).
    pub status: Option<String>,
    /// The stream ended (with why).
    pub ended: Option<String>,
    /// Allocation tracking, when on (`--alloc-filter`), as of its latest read.
    pub alloc: Option<Arc<AllocView>>,
    /// (mount id, index in `alloc.mounts`): which mount row each alive window is.
    pub mount_alloc: Vec<(i32, usize)>,
}

impl Snapshot {
    /// An empty system: nothing attached yet.
    pub fn empty(meta: Arc<Meta>) -> Self {
        Snapshot {
            meta,
            clock: None,
            attach_ns: 0,
            now_ns: 0,
            elapsed: Duration::ZERO,
            ready: false,
            events: 0,
            rate: 0,
            drops: 0,
            skipped_runs: 0,
            bad_records: 0,
            tracked: Vec::new(),
            evicted: 0,
            test: None,
            mounts: Vec::new(),
            work: Vec::new(),
            log: Vec::new(),
            mount_view: None,
            file_view: None,
            status: None,
            ended: None,
            alloc: None,
            mount_alloc: Vec::new(),
        }
    }

    /// The allocations charged to a mount, when tracking is on and the mount was mounted
    /// while the tracer watched.
    pub fn alloc_of(&self, mount_id: i32) -> Option<&MountAlloc> {
        let a = self.alloc.as_ref()?;
        self.mount_alloc
            .iter()
            .find(|(id, _)| *id == mount_id)
            .and_then(|(_, i)| a.mounts.get(*i))
    }

    /// A time as the UI shows it: wall clock when known, else seconds since boot.
    pub fn time(&self, ns: u64) -> String {
        match &self.clock {
            Some(c) => c.hms(ns),
            None => tracer_fs::text::boot(ns),
        }
    }
}

/// A holder in words: `fd 3 of pid 1234`, `io_uring ring 0x…`.
fn holder_words(h: &HolderRef) -> String {
    match h {
        HolderRef::Fd { tgid, fd } => format!("fd {fd} of pid {tgid}"),
        HolderRef::UringFixed { ctx } => format!("io_uring ring {ctx:#x}"),
        HolderRef::UringReq { ctx, .. } => format!("in-flight requests of io_uring ring {ctx:#x}"),
        HolderRef::Mmap { tgid, start, .. } => format!("mapping at {start:#x} of pid {tgid}"),
    }
}

/// A holder taking its reference, in words.
fn took_words(h: &HolderRef, how: RefHow, tgid: u32, comm: &str) -> String {
    match (h, how) {
        (HolderRef::Fd { fd, tgid: t }, RefHow::Snapshot) => {
            format!("fd {fd} of pid {t} ({comm}) had it open before the tracer attached")
        }
        (HolderRef::Fd { fd, tgid: t }, RefHow::Rescan) => {
            format!(
                "fd {fd} of pid {t} ({comm}) found holding it by an fd scan after a failed umount"
            )
        }
        (HolderRef::Fd { fd, tgid: t }, _) => format!("opened as fd {fd} of pid {t} ({comm})"),
        (HolderRef::UringFixed { ctx }, _) => {
            format!("registered in io_uring ring {ctx:#x} by pid {tgid} ({comm})")
        }
        (HolderRef::UringReq { ctx, .. }, _) => {
            format!("taken by in-flight requests of io_uring ring {ctx:#x} (pid {tgid}, {comm})")
        }
        (HolderRef::Mmap { tgid: t, start, .. }, _) => format!(
            "mapped at {start:#x} by pid {t} ({comm}), found by a VMA scan after a failed umount"
        ),
    }
}

fn op_name(op: MountCallOp) -> &'static str {
    match op {
        MountCallOp::Mount => "mount",
        MountCallOp::Umount => "umount",
        MountCallOp::MoveMount => "move_mount",
        MountCallOp::Fsmount => "fsmount",
    }
}

/// Is this mount one a person must look at: pinned after a failed umount, or detached
/// (lazily unmounted) but still pinned by open files.
pub fn pinned(m: &MountSummary) -> bool {
    m.alive_files > 0 && (m.detached || m.umount_ebusy > 0)
}

/// Which mount row each alive mount window of allocation tracking is: the mounts with its
/// path as mount point; when several are stacked there, the newest window goes with the
/// newest mount, the one before with the one under it, and so on.
pub fn alloc_rows(mounts: &[MountSummary], a: &AllocView) -> Vec<(i32, usize)> {
    let mut out: Vec<(i32, usize)> = Vec::new();
    let mut paths: Vec<&str> = a.mounts.iter().map(|w| w.target.as_str()).collect();
    paths.sort_unstable();
    paths.dedup();
    for path in paths {
        let windows = a
            .mounts
            .iter()
            .enumerate()
            .filter(|(_, w)| w.target == path)
            .map(|(i, _)| i);
        let mut ids: Vec<i32> = mounts
            .iter()
            .filter(|m| !m.detached && m.mount.as_ref().is_some_and(|d| d.mount_point == path))
            .map(|m| m.mount_id)
            .collect();
        ids.sort_unstable();
        out.extend(ids.into_iter().rev().zip(windows.rev()));
    }
    out
}

/// The engine plus what the TUI keeps beside it.
pub struct Model {
    pub engine: Engine,
    meta: Arc<Meta>,
    clock: Option<WallClock>,
    attach_ns: u64,
    started: Option<Instant>,
    log: VecDeque<Arc<LogEntry>>,
    next_serial: u64,
    test: Option<String>,
    figures: Figures,
    bad_records: u64,
    ready: bool,
    rate_window: VecDeque<(u64, u64)>,
    focus: (Option<i32>, Option<FileKey>),
    status: Option<String>,
    ended: Option<String>,
    last_drops: u64,
    last_misses: u64,
    trails: Trails,
    alloc: Option<Arc<AllocView>>,
    /// The latest leak reports' texts (boot time, text), oldest first.
    leaks: VecDeque<(u64, String)>,
}

impl Model {
    /// `attach_ns`: boot time of the attach; `clock`: for wall-clock times (None in tests
    /// that want boot times).
    pub fn new(engine: Engine, meta: Arc<Meta>, attach_ns: u64, clock: Option<WallClock>) -> Self {
        Model {
            engine,
            meta,
            clock,
            attach_ns,
            started: None,
            log: VecDeque::new(),
            next_serial: 0,
            test: None,
            figures: Figures::default(),
            bad_records: 0,
            ready: false,
            rate_window: VecDeque::new(),
            focus: (None, None),
            status: None,
            ended: None,
            last_drops: 0,
            last_misses: 0,
            trails: Trails::default(),
            alloc: None,
            leaks: VecDeque::new(),
        }
    }

    /// Measures elapsed time with the real clock from now on (live use).
    pub fn start_clock(&mut self) {
        self.started = Some(Instant::now());
    }

    pub fn meta(&self) -> &Arc<Meta> {
        &self.meta
    }

    pub fn test(&self) -> Option<&str> {
        self.test.as_deref()
    }

    pub fn figures(&self) -> &Figures {
        &self.figures
    }

    /// Log entries kept, oldest first.
    pub fn log(&self) -> impl Iterator<Item = &Arc<LogEntry>> {
        self.log.iter()
    }

    fn push(&mut self, ts_ns: u64, kind: LogKind, lines: Vec<String>, full: String) {
        self.next_serial += 1;
        let mount_id = None;
        self.log.push_back(Arc::new(LogEntry {
            serial: self.next_serial,
            ts_ns,
            kind,
            lines,
            full,
            mount_id,
        }));
        if self.log.len() > LOG_CAP {
            self.log.pop_front();
        }
    }

    fn push_entry(&mut self, mut e: LogEntry) {
        self.next_serial += 1;
        e.serial = self.next_serial;
        self.log.push_back(Arc::new(e));
        if self.log.len() > LOG_CAP {
            self.log.pop_front();
        }
    }

    /// Applies one event; what the engine concludes goes to the log.
    pub fn apply(&mut self, ev: &Event) -> Vec<Notice> {
        let before = Trails::before(&self.engine, ev);
        let notices = self.engine.apply(ev);
        self.trails.after(&self.engine, ev, before);
        match &ev.payload {
            Payload::TestMarker { test } => {
                self.test = Some(test.clone());
                self.push(
                    ev.ts_ns,
                    LogKind::Test,
                    vec![format!("xfstests {test} started")],
                    format!("xfstests: run fstests {test}"),
                );
            }
            Payload::MountCall(tracer_fs::event::MountCall {
                op,
                ret,
                target,
                source,
                fs_type,
                flags,
                ..
            }) => {
                // EBUSY has its verdict, and a success that ends a story its notice.
                let covered = *ret == tracer_fs::engine::EBUSY
                    || notices.iter().any(|n| matches!(n, Notice::StoryClosed(_)));
                if !covered {
                    let who = format!("pid {} ({})", ev.tgid, ev.comm);
                    let (kind, line) = match (op, *ret) {
                        (MountCallOp::Umount, 0) => {
                            let lazy = if flags & tracer_fs::mounts::MNT_DETACH != 0 {
                                " (lazy)"
                            } else {
                                ""
                            };
                            (LogKind::Umount, format!("umount{lazy} {target} by {who}"))
                        }
                        (MountCallOp::Umount, r) => (
                            LogKind::Failed,
                            format!("umount {target}: {} by {who}", errno_name(r)),
                        ),
                        (MountCallOp::Mount, 0) => (
                            LogKind::Mount,
                            format!("mount {fs_type} {source} on {target} by {who}"),
                        ),
                        (MountCallOp::Mount, r) => (
                            LogKind::Failed,
                            format!("mount {source} on {target}: {} by {who}", errno_name(r)),
                        ),
                        (op, 0) => (
                            LogKind::Mount,
                            format!("{} {target} by {who}", op_name(*op)),
                        ),
                        (op, r) => (
                            LogKind::Failed,
                            format!("{} {target}: {} by {who}", op_name(*op), errno_name(r)),
                        ),
                    };
                    self.push(ev.ts_ns, kind, vec![line.clone()], line);
                }
            }
            _ => {}
        }
        for n in &notices {
            self.push_entry(LogEntry::of_notice(n));
        }
        notices
    }

    /// The latest kernel-side figures; lost records weaken later verdicts (said in them).
    pub fn set_figures(&mut self, f: &Figures, now_ns: u64) {
        let drops = f.total_drops();
        if drops > self.last_drops {
            self.engine.add_evidence_limit(format!(
                "the ring buffer was full: {drops} records lost so far"
            ));
            let line =
                format!("{drops} records lost so far: the ring buffer was full (try --ring-mib)");
            self.push(now_ns, LogKind::Warning, vec![line.clone()], line);
            self.last_drops = drops;
        }
        let misses = f.total_recursion_misses();
        if misses > self.last_misses {
            self.engine.add_evidence_limit(format!(
                "{misses} program runs skipped by the kernel (recursion)"
            ));
            self.last_misses = misses;
        }
        self.figures = f.clone();
    }

    /// Allocation tracking's latest read.
    pub fn set_alloc(&mut self, v: AllocView) {
        self.alloc = Some(Arc::new(v));
    }

    pub fn alloc(&self) -> Option<&AllocView> {
        self.alloc.as_deref()
    }

    /// The leak reports kept for a saved report, oldest first.
    pub fn leaks(&self) -> impl Iterator<Item = &(u64, String)> {
        self.leaks.iter()
    }

    /// A leak report (the tracker's `leak_report` object) made at `now_ns`: into the log.
    pub fn leak_report(&mut self, v: &serde_json::Value, now_ns: u64) {
        let e = LogEntry::of_leak_report(v, now_ns);
        self.leaks.push_back((now_ns, e.full.clone()));
        if self.leaks.len() > LEAKS_KEPT {
            self.leaks.pop_front();
        }
        self.push_entry(e);
    }

    /// A line for the events pane from outside the engine (allocation tracking's notes).
    pub fn warn(&mut self, line: String, now_ns: u64) {
        self.push(now_ns, LogKind::Warning, vec![line.clone()], line);
    }

    pub fn bad_record(&mut self, err: &str, now_ns: u64) {
        self.bad_records += 1;
        // The first few are worth a line; after that the header's count says it.
        if self.bad_records <= 3 {
            let line = format!("undecodable record: {err}");
            self.push(now_ns, LogKind::Warning, vec![line.clone()], line);
        }
    }

    pub fn set_ready(&mut self) {
        self.ready = true;
    }

    pub fn set_status(&mut self, s: impl Into<String>) {
        self.status = Some(s.into());
    }

    pub fn set_ended(&mut self, why: impl Into<String>) {
        self.ended = Some(why.into());
    }

    /// The mount and file the UI shows in detail (`Request::Focus`).
    pub fn set_focus(&mut self, mount: Option<i32>, file: Option<FileKey>) {
        self.focus = (mount, file);
    }

    fn rate(&mut self, now_ns: u64, events: u64) -> u64 {
        self.rate_window.push_back((now_ns, events));
        while self
            .rate_window
            .front()
            .is_some_and(|(t, _)| now_ns.saturating_sub(*t) > 2_000_000_000)
        {
            self.rate_window.pop_front();
        }
        match (self.rate_window.front(), self.rate_window.back()) {
            (Some(&(t0, e0)), Some(&(t1, e1))) if t1 > t0 => {
                ((e1 - e0) as u128 * 1_000_000_000 / (t1 - t0) as u128) as u64
            }
            _ => 0,
        }
    }

    /// Mounts in display order: pinned first, then the newest (highest id) first.
    pub fn mount_rows(&self) -> Vec<MountSummary> {
        let mut v = self.engine.mount_summaries();
        v.sort_by_key(|m| (!pinned(m), std::cmp::Reverse(m.mount_id)));
        v
    }

    /// The state as the UI draws it, at boot time `now_ns`.
    pub fn snapshot(&mut self, now_ns: u64) -> Snapshot {
        let stats = self.engine.stats();
        let caps = &self.engine.config().caps;
        let tracked = vec![
            Tracked {
                what: "files",
                n: self.engine.files().len(),
                cap: caps.max_files,
            },
            Tracked {
                what: "work",
                n: self.engine.work().len(),
                cap: caps.max_work_instances,
            },
            Tracked {
                what: "tasks",
                n: self.engine.tasks().len(),
                cap: caps.max_tasks,
            },
            Tracked {
                what: "rings",
                n: self.engine.rings().len(),
                cap: caps.max_rings,
            },
            Tracked {
                what: "verdicts",
                n: self.engine.verdicts().count(),
                cap: caps.max_verdicts,
            },
        ];
        let elapsed = match self.started {
            Some(s) => s.elapsed(),
            None => Duration::from_nanos(now_ns.saturating_sub(self.attach_ns)),
        };
        let rate = self.rate(now_ns, stats.events);
        let (fm, ff) = self.focus;
        let mounts = self.mount_rows();
        let mount_alloc = match &self.alloc {
            Some(a) => alloc_rows(&mounts, a),
            None => Vec::new(),
        };
        Snapshot {
            meta: self.meta.clone(),
            clock: self.clock,
            attach_ns: self.attach_ns,
            now_ns,
            elapsed,
            ready: self.ready,
            events: stats.events,
            rate,
            drops: self.figures.total_drops(),
            skipped_runs: self.figures.total_recursion_misses(),
            bad_records: self.bad_records,
            tracked,
            evicted: stats.evicted_total(),
            test: self.test.clone(),
            mounts,
            work: self.engine.work_summaries(),
            log: self.log.iter().cloned().collect(),
            mount_view: fm.map(|id| self.mount_view(id)),
            file_view: ff.and_then(|k| self.file_view(k, now_ns)),
            status: self.status.clone(),
            ended: self.ended.clone(),
            alloc: self.alloc.clone(),
            mount_alloc,
        }
    }

    /// The files of a mount by holder kind (like `Engine::alive_on_mount`, but bounded:
    /// files without a holder first, then the newest).
    pub fn mount_view(&self, id: i32) -> MountView {
        let e = &self.engine;
        let summary = e.mount_summaries().into_iter().find(|m| m.mount_id == id);
        let gone = match e.mounts().get(id) {
            Some(_) => None,
            None => e
                .mounts()
                .history()
                .filter(|m| m.id == id)
                .last()
                .map(MountDesc::of),
        };
        let mut files = e.files().alive_on_mount(id);
        let alive = files.len();
        files.sort_by_key(|f| {
            let orphan = matches!(
                f.state(),
                FileState::PendingRelease | FileState::Unattributed
            );
            (!orphan, std::cmp::Reverse(f.first_ref.ts_ns))
        });
        files.truncate(MOUNT_VIEW_FILES);
        let mut groups = vec![
            FileGroup {
                title: "fd tables",
                count: summary.as_ref().map_or(0, |s| s.fd_tables),
                files: vec![],
            },
            FileGroup {
                title: "io_uring rings (registered files)",
                count: summary.as_ref().map_or(0, |s| s.uring_rings),
                files: vec![],
            },
            FileGroup {
                title: "in-flight io_uring requests",
                count: summary.as_ref().map_or(0, |s| s.in_flight),
                files: vec![],
            },
            FileGroup {
                title: "deferred puts pending",
                count: summary.as_ref().map_or(0, |s| s.deferred_pending),
                files: vec![],
            },
            FileGroup {
                title: "unattributed",
                count: summary.as_ref().map_or(0, |s| s.unattributed),
                files: vec![],
            },
        ];
        for f in &files {
            let r = e.describe(f);
            let has = |p: fn(&HolderRef) -> bool| f.holders.keys().any(p);
            if has(|h| matches!(h, HolderRef::Fd { .. })) {
                groups[0].files.push(r.clone());
            }
            if has(|h| matches!(h, HolderRef::UringFixed { .. })) {
                groups[1].files.push(r.clone());
            }
            if has(|h| matches!(h, HolderRef::UringReq { .. })) {
                groups[2].files.push(r.clone());
            }
            match f.state() {
                FileState::PendingRelease => groups[3].files.push(r),
                FileState::Unattributed => groups[4].files.push(r),
                FileState::Held | FileState::Released => {}
            }
        }
        let mount = e.mounts().get(id);
        MountView {
            mount_id: id,
            summary,
            gone,
            groups,
            listed: files.len(),
            alive,
            attempts: mount
                .map(|m| {
                    let n = m.umount_attempts.len();
                    m.umount_attempts[n.saturating_sub(5)..].to_vec()
                })
                .unwrap_or_default(),
            children: e
                .mounts()
                .children(id)
                .into_iter()
                .map(MountDesc::of)
                .collect(),
        }
    }

    /// A file and its history as far as the engine keeps it.
    pub fn file_view(&self, key: FileKey, now_ns: u64) -> Option<FileView> {
        let e = &self.engine;
        let f = e.files().get(key)?;
        let report = e.describe(f);
        let name = |a: u64| e.config().symbol(a);
        let who = |pid: u32, comm: &str| format!("pid {pid} ({comm})");
        let mut history = Vec::new();
        let first = &f.first_ref;
        // The holder the first reference made, told with it.
        let first_holder = f
            .holders
            .iter()
            .find(|(_, i)| i.since_ns == first.ts_ns && i.how == f.first_how)
            .map(|(h, _)| *h);
        let first_line = match (f.first_how, first_holder) {
            (RefHow::Open, Some(HolderRef::Fd { fd, .. })) => {
                format!("opened by {} as fd {fd}", who(first.tgid, &first.comm))
            }
            (RefHow::Snapshot, Some(HolderRef::Fd { fd, tgid })) => format!(
                "already open as fd {fd} of pid {tgid} ({}) when the tracer attached",
                first.comm
            ),
            (RefHow::Open, _) => format!("opened by {}", who(first.tgid, &first.comm)),
            (RefHow::Snapshot, _) => {
                "already open when the tracer attached (found by the snapshot)".to_string()
            }
            (RefHow::UringRegister, _) => format!(
                "first seen registered in an io_uring ring by {}",
                who(first.tgid, &first.comm)
            ),
            (RefHow::UringFileGet, _) => format!(
                "first seen taken by an io_uring request of {}",
                who(first.tgid, &first.comm)
            ),
            (how, _) => format!("first seen ({how:?})"),
        };
        let steps = self.trails.steps(key);
        // The trail starts with the first reference when it saw it; else say it here.
        let first_in_trail =
            matches!(steps.first(), Some(Step::Took { ts_ns, .. }) if *ts_ns == first.ts_ns);
        if !first_in_trail {
            history.push((first.ts_ns, first_line));
        }
        let drop_words = |d: &HolderDrop| {
            DropDesc {
                holder: d.holder,
                reason: d.reason,
                ts_ns: d.actor.ts_ns,
                by: ChainLink::from_actor(&d.actor, LinkRole::PutBy, name),
            }
            .words()
        };
        if steps.is_empty() {
            // No trail (evicted, or nothing happened since the first reference): what the
            // engine keeps.
            for (h, i) in &f.holders {
                if Some(*h) != first_holder {
                    history.push((i.since_ns, took_words(h, i.how, i.tgid, &i.comm)));
                }
            }
            if let Some(d) = &f.last_drop {
                history.push((d.actor.ts_ns, drop_words(d)));
            }
        }
        for st in steps {
            let line = match st {
                Step::Took {
                    holder,
                    how,
                    tgid,
                    comm,
                    ..
                } => took_words(holder, *how, *tgid, comm),
                Step::LetGo { drop: Some(d), .. } => drop_words(d),
                Step::LetGo { holder, .. } => format!("{} let go", holder_words(holder)),
            };
            history.push((st.ts_ns(), line));
        }
        if let Some(r) = &f.release {
            let line = if !r.seen {
                "released (not seen: inferred because its pointer or mount id was reused)"
                    .to_string()
            } else if r.chain.is_empty() {
                "released".to_string()
            } else {
                format!("released by {}", chain_text(&r.chain))
            };
            history.push((r.actor.ts_ns, line));
        }
        if f.unseen_refs > 0 {
            history.push((
                now_ns,
                format!(
                    "{} dropped by holders we never saw take them: other holders may exist",
                    count(f.unseen_refs as usize, "reference was", "references were")
                ),
            ));
        }
        history.sort_by_key(|(t, _)| *t);
        let locks = e
            .lock_table()
            .stories
            .values()
            .filter(|s| s.holder.as_ref().is_some_and(|h| h.file == key.file))
            .map(|s| {
                let ty = s
                    .holder
                    .as_ref()
                    .map(|h| tracer_fs::locks::type_word(h.lock_type))
                    .unwrap_or("?");
                format!(
                    "a {} {ty} lock others could not take (lock conflict #{}): {} since {}",
                    s.kind.word(),
                    s.id,
                    tracer_fs::text::count(s.conflicts as usize, "conflict", "conflicts"),
                    tracer_fs::verdict::Anchor::now(now_ns).at(s.first_ns)
                )
            })
            .collect();
        Some(FileView {
            key,
            report,
            history,
            locks,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wall_clock_times() {
        // Booted at 1970-01-02 23:59:50 UTC; local time is UTC+2.
        let c = WallClock {
            unix_minus_boot_ns: (86_400 + 86_390) * 1_000_000_000,
            utc_offset_s: 7200,
        };
        assert_eq!(c.hms(0), "01:59:50");
        assert_eq!(c.hms(15_000_000_000), "02:00:05");
    }

    #[test]
    fn allocations_go_to_the_top_mount_at_their_path() {
        let m = |id, path: &str, detached| MountSummary {
            mount_id: id,
            detached,
            mount: Some(MountDesc {
                id,
                parent_id: 1,
                fs_type: "tmpfs".into(),
                source: "none".into(),
                mount_point: path.into(),
                major: 0,
                minor: 0,
                left_table_ns: None,
            }),
            ..Default::default()
        };
        let w = |target: &str| MountAlloc {
            target: target.into(),
            ..Default::default()
        };
        let mounts = [
            m(30, "/mnt/a", false),
            m(31, "/mnt/a", false),
            m(32, "/mnt/b", true),
        ];
        let a = AllocView {
            mounts: vec![w("/mnt/a"), w("/mnt/a"), w("/mnt/b"), w("/elsewhere")],
            ..Default::default()
        };
        // Mounted over: the newer window is the top mount's, the older the one under it;
        // a detached mount has no window alive; a window without a mount in the table
        // shows nowhere.
        let mut rows = alloc_rows(&mounts, &a);
        rows.sort_unstable();
        assert_eq!(rows, vec![(30, 0), (31, 1)]);
    }

    #[test]
    fn pinned_mounts() {
        let m = |alive, detached, ebusy| MountSummary {
            alive_files: alive,
            detached,
            umount_ebusy: ebusy,
            ..Default::default()
        };
        assert!(pinned(&m(1, false, 1)), "EBUSY and still busy");
        assert!(pinned(&m(2, true, 0)), "detached and pinned");
        assert!(!pinned(&m(0, false, 3)), "was EBUSY, free now");
        assert!(!pinned(&m(5, false, 0)), "busy, never asked to go");
    }
}
