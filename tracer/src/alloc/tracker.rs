//! The userspace side of allocation tracking at run time: reads the kernel's map of
//! outstanding allocations on every stats tick (never one event per allocation), follows
//! mount lifetimes, and produces the live view and, after an umount and the grace period,
//! the leak report of that mount. Both are built as recording records
//! ([`crate::record::alloc`]) and printed from them, so a recording (`--record`, `tracer
//! run`) holds exactly what was shown.

use std::collections::HashMap;

use anyhow::{Context, Result};
use aya::maps::{HashMap as BpfHashMap, MapData, StackTraceMap};
use serde_json::{Value, json};
use tracer_fs::{
    alloc::{
        Allocation, Caveats, Charging, MountWindow, MountWindows, Symbolizer, by_call_site, group,
        shown_objects,
    },
    event::Event,
    leakcheck::{self, Class, Doubts, Ledger},
    wire::{
        self,
        alloc::{CACHE_NAME_LEN, Outstanding, PERCPU_CACHE},
    },
};

use super::{
    AllocOptions,
    filter::FilterSummary,
    symbols::{SymTable, trim_to_call_site},
};
use crate::{
    record::alloc::{
        AllocCounters, AllocRecord, GroupRecord, LeakRecord, LiveAlloc, MountCount, ObjRecord,
        PartRecord, SiteCount, WindowRecord, addresses, leak_json, live_json, stacks_of,
    },
    stream::counters::Figures,
};

/// `Outstanding` as aya's plain-old-data map value.
#[derive(Clone, Copy)]
#[repr(transparent)]
pub struct PodOutstanding(pub Outstanding);
// SAFETY: `Outstanding` is `repr(C)`, `Copy`, made of integers.
unsafe impl aya::Pod for PodOutstanding {}

/// The maps taken out of the loaded object for tracking.
pub struct AllocMaps {
    pub outstanding: BpfHashMap<MapData, u64, PodOutstanding>,
    /// Whether `outstanding` is read in batches (false once the kernel refused them).
    pub batch_reads: bool,
    pub stacks: StackTraceMap<MapData>,
    pub cache_names: BpfHashMap<MapData, u64, [u8; CACHE_NAME_LEN]>,
    pub summary: FilterSummary,
    pub syms: SymTable,
    /// The scan of kfree_rcu()'s queues run before reports (`None`: not available).
    pub rcu: Option<super::rcu::RcuScan>,
    /// The reachability scan run before reports (`Err`: why not available).
    pub reach: std::result::Result<super::reach::GlobalScan, String>,
}

/// Programs whose skipped runs mean frees we did not see.
const FREE_PROGRAMS: &[&str] = &["raw_kfree", "raw_kmem_cache_free", "raw_percpu_free"];

/// Kernel figures at one tick, to say what happened inside a mount's lifetime.
#[derive(Clone, Copy, Debug, Default)]
struct Mark {
    ts_ns: u64,
    free_misses: u64,
    map_full: u64,
    reused: u64,
}

struct Pending {
    window: MountWindow,
    due_ns: u64,
    /// The `rcu_barrier()` before its report was done (at an earlier tick).
    barrier_done: bool,
    /// An early look ([`EARLY_LOOKS`], by index) after the umount: the report is made then
    /// only if it would list nothing (an empty report cannot change: nothing of the
    /// mount's is left to free); otherwise the next look, and after the last one the end
    /// of the grace period.
    early: Option<usize>,
}

/// When a report looks early whether anything of its mount is left (each after an RCU
/// barrier and a walk of kfree_rcu()'s queues, as at its grace period's end). A healthy
/// umount leaves nothing, and `tracer run` of one test then ends without waiting out the
/// grace period (2 s by default) after the command's last umount. The first look is enough
/// for most umounts (the xfs umounts of fstests' quick list on 6.18: their RCU callbacks
/// are what the barrier flushes); the second is for work items that free a little later.
const EARLY_LOOKS: [std::time::Duration; 2] = [
    std::time::Duration::from_millis(50),
    std::time::Duration::from_millis(200),
];

/// The wait after an umount until look `i`, or until the grace period's end (`None`).
fn early_look(i: usize, grace: std::time::Duration) -> Option<std::time::Duration> {
    EARLY_LOOKS.get(i).copied().filter(|&t| grace > 2 * t)
}

pub struct AllocTracker {
    maps: AllocMaps,
    opts: AllocOptions,
    charging: Charging,
    windows: MountWindows,
    pending: Vec<Pending>,
    /// The cycles judged so far, per filesystem type (cycle confirmation).
    ledger: Ledger,
    marks: Vec<Mark>,
    cache_names: HashMap<u64, String>,
    last_total: Option<(u64, u64, u64)>,
    /// Reports wait until then: a CPU's kfree_rcu() queue is learnt at the first work item
    /// it runs (`FIRST_WORK`), or, where `krc` is not in BTF, when its monitor is armed or
    /// runs (one armed before the attach runs within `KFREE_DRAIN` of it).
    rcu_ready_ns: u64,
    pub reports: u64,
    growth: super::view::Growth,
    view: Option<super::view::AllocView>,
    /// Names of every kernel address a record used so far.
    names: HashMap<u64, String>,
    /// Records kept for the recording (`None`: not recording).
    records: Option<Vec<AllocRecord>>,
    /// The last live state recorded (an unchanged state is not recorded again).
    last_recorded: Option<LiveAlloc>,
    /// Mounts that got no leak report: [`MAX_PENDING_REPORTS`] were waiting already.
    reports_not_made: u64,
    /// Whether the first of them was said (once, at the next tick).
    said_not_made: bool,
}

/// Leak reports waiting for their grace period at most. A mount loop closes thousands of
/// mounts a second and each report reads every tracked allocation: held without a bound,
/// they took the tracer's memory to a gigabyte and its exit to half a minute. The mounts
/// beyond it get no report; they are counted and said.
pub const MAX_PENDING_REPORTS: usize = 32;

/// The longest a kfree_rcu() batch waits for its monitor (`KFREE_DRAIN_JIFFIES`, 5 s since
/// Linux 6.0), plus a margin.
const KFREE_DRAIN: std::time::Duration = std::time::Duration::from_secs(6);

/// Within this every CPU runs a work item (`vmstat_update` runs on each CPU every second).
const FIRST_WORK: std::time::Duration = std::time::Duration::from_millis(1500);

struct Syms<'a> {
    syms: &'a SymTable,
    stacks: &'a StackTraceMap<MapData>,
    cache: std::cell::RefCell<HashMap<i32, Vec<u64>>>,
    per_object: bool,
}

impl Symbolizer for Syms<'_> {
    fn per_object(&self) -> bool {
        self.per_object
    }
    fn frame(&self, addr: u64) -> String {
        self.syms.frame(addr)
    }
    fn stack(&self, id: i32, call_site: u64) -> Vec<u64> {
        if let Some(v) = self.cache.borrow().get(&id) {
            return trim_to_call_site(v, call_site, self.syms);
        }
        let frames: Vec<u64> = self
            .stacks
            .get(&(id as u32), 0)
            .map(|s| s.frames().iter().map(|f| f.ip).collect())
            .unwrap_or_default();
        self.cache.borrow_mut().insert(id, frames.clone());
        trim_to_call_site(&frames, call_site, self.syms)
    }
}

fn hex(v: u64) -> String {
    format!("{v:#x}")
}

impl AllocTracker {
    pub fn new(maps: AllocMaps, opts: AllocOptions) -> Self {
        let charging = Charging {
            fs_types: maps.summary.fs_types.clone(),
        };
        let rcu_ready_ns = match &maps.rcu {
            Some(r) if r.per_cpu_known => {
                crate::kernel::clock::boottime_ns() + FIRST_WORK.as_nanos() as u64
            }
            Some(_) => crate::kernel::clock::boottime_ns() + KFREE_DRAIN.as_nanos() as u64,
            None => 0,
        };
        AllocTracker {
            maps,
            opts,
            charging,
            windows: MountWindows::default(),
            pending: vec![],
            ledger: Ledger::default(),
            marks: vec![],
            cache_names: HashMap::new(),
            last_total: None,
            rcu_ready_ns,
            reports: 0,
            growth: Default::default(),
            view: None,
            names: HashMap::new(),
            records: None,
            last_recorded: None,
            reports_not_made: 0,
            said_not_made: false,
        }
    }

    /// From now on keep records for a recording, starting with the setup (filter, options).
    pub fn keep_records(&mut self) {
        if self.records.is_none() {
            self.records = Some(vec![AllocRecord::Setup(self.setup_json().to_string())]);
        }
    }

    /// The records kept since the last call (empty when not recording).
    pub fn take_records(&mut self) -> Vec<AllocRecord> {
        self.records
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// What the recording says about the tracking: the filter's summary and the options.
    pub fn setup_json(&self) -> Value {
        let o = &self.opts;
        json!({
            "filter": self.maps.summary,
            "options": {
                "sample_every": o.sample_every,
                "min_size": o.min_size,
                "max_size": (o.max_size != u64::MAX).then_some(o.max_size),
                "older_ns": o.older.as_nanos() as u64,
                "top": o.top,
                "sort": o.sort,
                "grace_ns": o.grace.as_nanos() as u64,
                "rcu_barrier": o.rcu_barrier,
                "max_entries": o.max_entries,
                "max_objects": o.max_objects,
                "reuse_check": o.reuse_check,
                "stack_per_object": o.stack_per_object,
            },
        })
    }

    /// Names the new addresses of `rec` and, when `keep`, keeps it (after its names) for
    /// the recording.
    fn learn(&mut self, rec: &AllocRecord, keep: bool) {
        let mut new = Vec::new();
        for a in addresses(rec) {
            if !self.names.contains_key(&a) {
                let name = self.maps.syms.frame(a);
                self.names.insert(a, name.clone());
                new.push((a, name));
            }
        }
        if let Some(r) = self.records.as_mut() {
            if !new.is_empty() {
                new.sort_unstable();
                r.push(AllocRecord::Frames(new));
            }
            if keep {
                r.push(rec.clone());
            }
        }
    }

    pub fn summary(&self) -> &FilterSummary {
        &self.maps.summary
    }

    pub fn summary_mut(&mut self) -> &mut FilterSummary {
        &mut self.maps.summary
    }

    /// Notes when the kmem hooks did not get their raw tracepoints, the only programs that
    /// track (the classic fallbacks only count).
    pub fn check_hooks(&mut self, hooks: &[crate::attach::hooks::HookStatus]) {
        for h in hooks {
            if matches!(h.hook, "__fput" | "kmem_cache alloc" | "kmalloc/kfree")
                && h.mechanism != Some(crate::attach::hooks::Mechanism::RawTracepoint)
            {
                self.maps.summary.notes.push(format!(
                    "hook {} is not on its raw tracepoint: allocation tracking through it is off",
                    h.hook
                ));
            }
        }
    }

    /// Follows mounts and umounts.
    pub fn on_event(&mut self, ev: &Event) {
        if let Some(w) = self.windows.apply(ev) {
            if self.pending.len() >= MAX_PENDING_REPORTS {
                self.reports_not_made += 1;
                return;
            }
            let end_ns = w.end_ns.unwrap_or(ev.ts_ns);
            let look = early_look(0, self.opts.grace);
            let wait = look.unwrap_or(self.opts.grace);
            self.pending.push(Pending {
                window: w,
                due_ns: end_ns + wait.as_nanos() as u64,
                barrier_done: !self.opts.rcu_barrier,
                early: look.map(|_| 0),
            });
        }
    }

    fn refresh_cache_names(&mut self) {
        for (k, v) in self.maps.cache_names.iter().flatten() {
            self.cache_names
                .entry(k)
                .or_insert_with(|| String::from_utf8_lossy(wire::c_str_bytes(&v)).into_owned());
        }
    }

    /// The outstanding allocations at least `--alloc-older` old.
    /// The outstanding map's entries: in batches, or, where the kernel refuses those
    /// (said once), by iterating.
    fn outstanding(&mut self) -> Vec<(u64, PodOutstanding)> {
        use std::os::fd::AsFd;

        use aya::maps::IterableMap;
        if self.maps.batch_reads {
            match super::batch::lookup_all(self.maps.outstanding.map().fd().as_fd()) {
                Ok(all) => return all,
                Err(e) => {
                    self.maps.summary.notes.push(format!(
                        "the outstanding map is read entry by entry: batch lookup failed ({e})"
                    ));
                    self.maps.batch_reads = false;
                }
            }
        }
        self.maps.outstanding.iter().flatten().collect()
    }

    fn read(&mut self, now_ns: u64) -> Vec<Allocation> {
        self.refresh_cache_names();
        let older = self.opts.older.as_nanos() as u64;
        let mut out = vec![];
        for (ptr, PodOutstanding(o)) in self.outstanding() {
            if now_ns.saturating_sub(o.ts_ns) < older {
                continue;
            }
            out.push(Allocation {
                ptr,
                ts_ns: o.ts_ns,
                call_site: o.call_site,
                cache: if o.cache == 0 {
                    String::new()
                } else if o.cache == PERCPU_CACHE {
                    "percpu".to_string()
                } else {
                    self.cache_names
                        .get(&o.cache)
                        .cloned()
                        .unwrap_or_else(|| hex(o.cache))
                },
                size: o.size as u64,
                stack_id: o.stack_id,
                pid: o.pid,
                tgid: o.tgid,
                comm: tracer_fs::actor::Comm::from_utf8_lossy(wire::c_str_bytes(&o.comm)),
            });
        }
        out
    }

    fn mark_at(&self, ts: u64) -> Mark {
        // The last tick at or before `ts`; none: the attach (zeroes).
        self.marks
            .iter()
            .rev()
            .find(|m| m.ts_ns <= ts)
            .copied()
            .unwrap_or_default()
    }

    /// One stats tick: the live view, and the reports that are due.
    pub fn tick(&mut self, now_ns: u64, f: &Figures) -> Result<Vec<Value>> {
        let free_misses: u64 = FREE_PROGRAMS
            .iter()
            .filter_map(|p| f.recursion_misses.get(*p))
            .sum::<u64>()
            + f.alloc_free_busy;
        let mark = Mark {
            ts_ns: now_ns,
            free_misses,
            map_full: f.alloc_map_full,
            reused: f.alloc_reused,
        };
        self.marks.push(mark);
        // Modules loaded since the attach get their symbols while they are loaded.
        self.maps.syms.refresh_modules();
        let mut out = vec![];
        let due: Vec<Pending> = {
            let (due, keep) = std::mem::take(&mut self.pending)
                .into_iter()
                .partition(|p| p.due_ns <= now_ns && self.rcu_ready_ns <= now_ns);
            self.pending = keep;
            due
        };
        // A report is made one tick after its rcu_barrier(): the RCU callbacks the barrier
        // runs free in softirqs, and a batch of frees that interrupts a free program's run
        // is skipped whole (recursion_misses); those skips are in the next tick's figures,
        // and the report must know them to call its objects uncertain. (That tick comes at
        // once: `wake_ns`.)
        let (due, barrier): (Vec<Pending>, Vec<Pending>) =
            due.into_iter().partition(|p| p.barrier_done);
        if !barrier.is_empty() {
            rcu_barrier();
            self.pending.extend(barrier.into_iter().map(|p| Pending {
                barrier_done: true,
                ..p
            }));
        }
        // Objects handed to kfree_rcu() whose batch has not been freed yet are released.
        if !due.is_empty()
            && let Some(scan) = &self.maps.rcu
            && let Err(e) = scan.scan()
        {
            self.maps
                .summary
                .notes
                .push(format!("kfree_rcu() scan failed: {e:#}"));
        }
        if self.reports_not_made > 0 && !self.said_not_made {
            self.said_not_made = true;
            out.push(self.not_made_warning());
        }
        let allocs = self.read(now_ns);
        out.push(self.live(now_ns, f, free_misses, &allocs));
        // The reports made together share one reachability scan: it reads megabytes, and
        // a mount loop makes thousands of reports.
        let mut memo = None;
        for p in due {
            if let Some(i) = p.early
                && self.charging.charged(&p.window, &allocs).next().is_some()
            {
                // Something of the mount's is left: it may still be freed, so the report
                // waits for the next look, or out its grace period after all.
                let next = early_look(i + 1, self.opts.grace);
                let wait = next.unwrap_or(self.opts.grace);
                self.pending.push(Pending {
                    due_ns: p.window.end_ns.unwrap_or(now_ns) + wait.as_nanos() as u64,
                    barrier_done: !self.opts.rcu_barrier,
                    early: next.map(|_| i + 1),
                    window: p.window,
                });
                continue;
            }
            out.push(self.report(&p.window, now_ns, mark, &allocs, 0, &mut memo));
        }
        self.update_view(now_ns, f, &allocs);
        // Forget what no report will need any more.
        let oldest_needed = self
            .pending
            .iter()
            .map(|p| p.window.start_ns)
            .chain(self.windows.open().map(|w| w.start_ns))
            .min()
            .unwrap_or(now_ns);
        let keep_from = self
            .marks
            .iter()
            .rposition(|m| m.ts_ns <= oldest_needed)
            .unwrap_or(0);
        self.marks.drain(..keep_from);
        // Closed windows are kept while a report to come may overlap them.
        self.windows.forget_closed_before(
            self.pending
                .iter()
                .map(|p| p.window.start_ns)
                .chain(self.windows.open().map(|w| w.start_ns))
                .min()
                .unwrap_or(now_ns),
        );
        Ok(out)
    }

    /// A `warning` notice: how many mounts got no leak report so far, and why.
    fn not_made_warning(&self) -> Value {
        json!({
            "type": "warning",
            "warning": self.not_made_text(),
            "leak_reports_not_made": self.reports_not_made,
        })
    }

    fn not_made_text(&self) -> String {
        format!(
            "{} unmounts got no leak report: {MAX_PENDING_REPORTS} reports were already waiting \
             for their grace period (a mount loop; their cycles are not judged)",
            self.reports_not_made
        )
    }

    /// The state at the latest tick, for the TUI (None before the first).
    pub fn view(&self) -> Option<&super::view::AllocView> {
        self.view.as_ref()
    }

    fn update_view(&mut self, now_ns: u64, f: &Figures, allocs: &[Allocation]) {
        let syms = &self.maps.syms;
        let mut v = self
            .growth
            .update(now_ns, allocs, self.windows.open(), &self.charging, &|a| {
                syms.frame(a)
            });
        let s = &self.maps.summary;
        v.filter = s.terms.clone();
        v.notes = s.notes.clone();
        if self.reports_not_made > 0 {
            v.notes.push(self.not_made_text());
        }
        v.cap = self.opts.max_entries;
        v.sample_every = self.opts.sample_every;
        v.tracked_total = f.alloc_tracked;
        v.freed_total = f.alloc_freed;
        v.untracked_map_full = f.alloc_map_full;
        v.free_misses = FREE_PROGRAMS
            .iter()
            .filter_map(|p| f.recursion_misses.get(*p))
            .sum();
        v.reused = f.alloc_reused;
        v.stack_failures = f.alloc_stack_failed;
        v.reports = self.reports;
        v.pending = self
            .pending
            .iter()
            .map(|p| super::view::PendingReport {
                target: p.window.target.clone(),
                due_ns: p.due_ns,
            })
            .collect();
        self.view = Some(v);
    }

    /// When the last report waiting for its grace period is due (`None`: none waits).
    pub fn reports_due_ns(&self) -> Option<u64> {
        self.pending
            .iter()
            .map(|p| p.due_ns.max(self.rcu_ready_ns))
            .max()
    }

    /// When the next tick is wanted for a report waiting for its grace period: at its due
    /// time (the tick that asks for its rcu_barrier()), then at once (the tick that makes it).
    pub fn wake_ns(&self) -> Option<u64> {
        self.pending
            .iter()
            .map(|p| p.due_ns.max(self.rcu_ready_ns))
            .min()
    }

    /// The tracer stops: the reports still waiting for their grace period are made now
    /// (marked uncertain when they list objects: some may have been freed later).
    pub fn finish(&mut self, now_ns: u64) -> Vec<Value> {
        let pending = std::mem::take(&mut self.pending);
        let said = (self.reports_not_made > 0).then(|| self.not_made_warning());
        if pending.is_empty() {
            return said.into_iter().collect();
        }
        if self.opts.rcu_barrier {
            rcu_barrier();
        }
        let mark = Mark {
            ts_ns: now_ns,
            ..self.marks.last().copied().unwrap_or_default()
        };
        let allocs = self.read(now_ns);
        let mut memo = None;
        pending
            .into_iter()
            .map(|p| {
                // How long before the end of its grace period (not of an early look).
                let grace_end = match p.window.end_ns {
                    Some(end) if p.early.is_some() => end + self.opts.grace.as_nanos() as u64,
                    _ => p.due_ns,
                };
                let early = grace_end.saturating_sub(now_ns);
                self.report(&p.window, now_ns, mark, &allocs, early, &mut memo)
            })
            .chain(said)
            .collect()
    }

    fn syms(&self) -> Syms<'_> {
        Syms {
            syms: &self.maps.syms,
            stacks: &self.maps.stacks,
            cache: Default::default(),
            per_object: self.opts.stack_per_object,
        }
    }

    fn live(&mut self, now_ns: u64, f: &Figures, free_misses: u64, allocs: &[Allocation]) -> Value {
        let count = allocs.len() as u64;
        let bytes: u64 = allocs.iter().map(|a| a.size).sum();
        let (growth_objs, growth_bytes) = match self.last_total {
            Some((t, c, b)) if now_ns > t => {
                let dt = (now_ns - t) as f64 / 1e9;
                (
                    (count as f64 - c as f64) / dt,
                    (bytes as f64 - b as f64) / dt,
                )
            }
            _ => (0.0, 0.0),
        };
        self.last_total = Some((now_ns, count, bytes));
        let by_stack = group(allocs, self.opts.sort, self.opts.top);
        let stacks = stacks_of(
            by_stack.iter().map(|g| (g.stack_id, g.call_site)),
            &self.syms(),
        );
        let live = LiveAlloc {
            ts_ns: now_ns,
            outstanding: count,
            bytes,
            growth_objects_per_s: growth_objs,
            growth_bytes_per_s: growth_bytes,
            by_call_site: by_call_site(allocs, self.opts.top)
                .into_iter()
                .map(|(call_site, count, bytes)| SiteCount {
                    call_site,
                    count,
                    bytes,
                })
                .collect(),
            by_stack: by_stack.iter().map(GroupRecord::of).collect(),
            by_mount: self
                .windows
                .open()
                .map(|w| {
                    let (c, b) = self
                        .charging
                        .charged(w, allocs)
                        .fold((0u64, 0u64), |(c, b), a| (c + 1, b + a.size));
                    MountCount {
                        target: w.target.clone(),
                        source: w.source.clone(),
                        fs_type: w.fs_type.clone(),
                        mounted_ns: w.start_ns,
                        count: c,
                        bytes: b,
                    }
                })
                .collect(),
            stacks,
            counters: AllocCounters {
                tracked: f.alloc_tracked,
                freed: f.alloc_freed,
                map_full: f.alloc_map_full,
                sampled_out: f.alloc_sampled_out,
                stacks: f.alloc_stacks,
                stack_failures: f.alloc_stack_failed,
                reused: f.alloc_reused,
                free_misses,
            },
        };
        let changed = self
            .last_recorded
            .as_ref()
            .is_none_or(|l| !l.same_state(&live));
        // An unchanged state is not recorded again: replay keeps the last one.
        let rec = AllocRecord::Live(live);
        self.learn(&rec, changed);
        let AllocRecord::Live(live) = &rec else {
            unreachable!()
        };
        if changed && self.records.is_some() {
            self.last_recorded = Some(live.clone());
        }
        let mut v = live_json(live, &self.names);
        v["type"] = json!("alloc_live");
        // Live-only figures (not in the recorded snapshot's format).
        v["percpu_outstanding"] = json!(allocs.iter().filter(|a| a.cache == "percpu").count());
        v["freed_by_kfree_rcu"] = json!(f.alloc_rcu_freed);
        v["kfree_rcu_walks_truncated"] = json!(f.alloc_rcu_truncated);
        v
    }

    /// Mounts of `w`'s filesystem type in the mount table now that no window of the
    /// tracker's covers (one per filesystem, `mount point (source)`); a mount of `w`'s own
    /// target (its next cycle) is not one.
    fn foreign_mounts(&self, w: &MountWindow) -> Vec<String> {
        // Without a type in the filter every mount is charged everything anyway.
        if w.fs_type.is_empty() || self.charging.fs_types.is_empty() || !self.charging.matches(w) {
            return vec![];
        }
        let Ok(table) = crate::kernel::mountinfo::read() else {
            return vec![];
        };
        let mut seen = std::collections::BTreeSet::new();
        table
            .iter()
            .filter(|m| m.fs_type == w.fs_type)
            .filter(|m| {
                let t = m.mount_point.trim_end_matches('/');
                let t = if t.is_empty() { "/" } else { t };
                t != w.target && !self.windows.open().any(|o| o.target == t)
            })
            .filter(|m| seen.insert((m.major, m.minor)))
            .map(|m| format!("{} ({})", m.mount_point, m.source))
            .collect()
    }

    /// The leak report of `w`; `early_ns`: how long before its grace period ended it is made
    /// (the tracer stops); `reach_memo`: the reachability scan of `allocs`, made by the first
    /// report of a batch that needs it.
    fn report(
        &mut self,
        w: &MountWindow,
        now_ns: u64,
        now: Mark,
        allocs: &[Allocation],
        early_ns: u64,
        reach_memo: &mut Option<Result<super::reach::Scan, String>>,
    ) -> Value {
        self.reports += 1;
        let objects: Vec<&Allocation> = self.charging.charged(w, allocs).collect();
        let groups = group(objects.iter().copied(), self.opts.sort, self.opts.top);
        let start = self.mark_at(w.start_ns);
        let mut c = Caveats::default();
        let missed = now.free_misses.saturating_sub(start.free_misses);
        if missed > 0 {
            c.reasons.push(format!(
                "{missed} runs of the free programs were skipped by the kernel (recursion_misses) \
                 since the mount: objects allocated before a skipped run are uncertain until a \
                 later cycle finds them still allocated"
            ));
        }
        let reused = now.reused.saturating_sub(start.reused);
        if reused > 0 {
            c.reasons.push(format!(
                "{reused} tracked addresses were allocated again before their free was seen \
                 since the mount: some frees pass no tracepoint (kfree_rcu() of slab caches \
                 with sheaves, kfree_rcu() batches freed by the memory shrinker); objects \
                 allocated before are uncertain until a later cycle finds them still allocated"
            ));
        }
        if self.maps.rcu.is_none()
            && objects
                .iter()
                .any(|a| a.cache.is_empty() || a.cache.starts_with("kmalloc"))
        {
            c.reasons.push(
                "kfree_rcu()'s queues are not followed on this kernel: kmalloc objects freed \
                 by kfree_rcu() (kfree_bulk(), no tracepoint) stay listed until their \
                 address is reused"
                    .into(),
            );
        }
        if w.lazy {
            c.reasons.push(
                "lazy umount (MNT_DETACH): the filesystem may still be alive, its objects in use"
                    .into(),
            );
        }
        let others: Vec<&MountWindow> = self
            .windows
            .windows
            .iter()
            .filter(|o| o.id != w.id && o.overlaps(w) && self.charging.matches(o))
            .collect();
        if !others.is_empty() {
            c.reasons.push(format!(
                "other mounts were alive at the same time ({}): allocations in the overlap are \
                 charged to each of them",
                others
                    .iter()
                    .map(|o| o.target.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let full = now.map_full.saturating_sub(start.map_full);
        if full > 0 {
            c.reasons.push(format!(
                "{full} allocations were not tracked (the outstanding map was full; \
                 --alloc-max-entries): leaks among them are not listed"
            ));
        }
        if early_ns > 0 {
            c.reasons.push(format!(
                "made {} before the end of its grace period (--leak-grace), because the tracer \
                 stopped: objects freed late are listed",
                tracer_fs::text::dur(early_ns)
            ));
        }
        // Filesystems of this type mounted without a window (mounted before the attach, the
        // root filesystem): what they allocate while this one is mounted is charged to it.
        let foreign = self.foreign_mounts(w);
        if !foreign.is_empty() {
            c.reasons.push(format!(
                "{} is also mounted at {}, not seen mounted by the tracer: its allocations during \
                 this mount's lifetime are charged here too, so this mount's objects are uncertain",
                w.fs_type,
                foreign.join(", ")
            ));
        }
        // Reachability: objects whose address global data holds are kept on purpose.
        let held = match &mut self.maps.reach {
            // Only when there is something to judge: a scan reads megabytes.
            Ok(scan) if !objects.is_empty() || self.ledger.keeps_objects_of(w) => {
                let r = reach_memo.get_or_insert_with(|| {
                    scan.scan(allocs.iter().map(|a| (a.ptr, a.size)))
                        .map_err(|e| format!("{e:#}"))
                });
                match r {
                    Ok(r) => {
                        if !objects.is_empty() {
                            c.reasons.push(r.summary.clone());
                        }
                        r.held.clone()
                    }
                    Err(e) => {
                        c.reasons.push(format!("reachability not scanned: {e}"));
                        Default::default()
                    }
                }
            }
            Err(e) if !objects.is_empty() => {
                c.reasons.push(format!("reachability not scanned: {e}"));
                Default::default()
            }
            _ => Default::default(),
        };
        // Each object judged against the earlier cycles of its filesystem type, with what
        // may make it wrong: frees missed or addresses reused after it was allocated, another
        // mount of the type alive then, a lazy umount, a report made early.
        let other_windows: Vec<MountWindow> = others.iter().map(|o| (*o).clone()).collect();
        let marks = &self.marks;
        let doubts = |a: &Allocation| -> Doubts {
            let at = marks
                .iter()
                .rev()
                .find(|m| m.ts_ns <= a.ts_ns)
                .copied()
                .unwrap_or_default();
            let mut d = Doubts::default();
            let missed = now.free_misses.saturating_sub(at.free_misses);
            if missed > 0 {
                d.free.push(format!(
                    "{missed} runs of the free programs were skipped by the kernel \
                     (recursion_misses) since it was allocated: its free may have been missed"
                ));
            }
            let reused = now.reused.saturating_sub(at.reused);
            if reused > 0 {
                d.free.push(format!(
                    "{reused} tracked addresses were reused before their free was seen since \
                     it was allocated: it may have been freed where no tracepoint shows"
                ));
            }
            if early_ns > 0 {
                d.free
                    .push("the report was made before its grace period ended".into());
            }
            if w.lazy {
                d.owner.push(
                    "lazy umount (MNT_DETACH): the filesystem may still be alive, this object in use"
                        .into(),
                );
            }
            if !foreign.is_empty() {
                d.owner.push(format!(
                    "{} is also mounted at {}: it may be that filesystem's",
                    w.fs_type,
                    foreign.join(", ")
                ));
            }
            for o in other_windows.iter().filter(|o| o.contains(a.ts_ns)) {
                d.owner.push(format!(
                    "allocated while {} ({}) was mounted too: it may be that mount's",
                    o.target, o.fs_type
                ));
            }
            d
        };
        let judgement = self
            .ledger
            .judge(w, &objects, allocs, &doubts, &|a| held.get(&a.ptr).cloned());
        let parts = leakcheck::parts(
            &judgement,
            self.opts.sort,
            self.opts.top,
            self.opts.max_objects,
        );
        c.uncertain = judgement
            .current
            .iter()
            .any(|j| j.class == Class::Uncertain);
        if judgement.forgotten_cycles > 0 {
            c.reasons.push(format!(
                "{} earlier cycles of {} that still had objects allocated are no longer \
                 followed (the latest {} are): their objects are not judged here",
                judgement.forgotten_cycles,
                judgement.kind,
                leakcheck::MAX_KEPT_CYCLES
            ));
        }
        if self.opts.sample_every > 1 {
            c.reasons.push(format!(
                "sampling: one allocation in {} is tracked",
                self.opts.sample_every
            ));
        }
        let shown = shown_objects(&objects, self.opts.max_objects);
        let stacks = stacks_of(
            shown
                .iter()
                .map(|a| (a.stack_id, a.call_site))
                .chain(groups.iter().map(|g| (g.stack_id, g.call_site)))
                .chain(parts.iter().flat_map(|p| {
                    p.shown
                        .iter()
                        .map(|(a, _)| (a.stack_id, a.call_site))
                        .chain(p.groups.iter().map(|(g, _)| (g.stack_id, g.call_site)))
                })),
            &self.syms(),
        );
        let rec = LeakRecord {
            window: WindowRecord::of(w),
            now_ns,
            objects: objects.len() as u64,
            bytes: objects.iter().map(|a| a.size).sum(),
            uncertain: c.uncertain,
            reasons: c.reasons,
            per_object: self.opts.stack_per_object,
            shown: shown.iter().map(|a| ObjRecord::of(a)).collect(),
            groups: groups.iter().map(GroupRecord::of).collect(),
            stacks,
            cycle: judgement.cycle,
            kind: judgement.kind.clone(),
            parts: parts.iter().map(PartRecord::of).collect(),
        };
        let rec = AllocRecord::Leak(rec);
        self.learn(&rec, true);
        let AllocRecord::Leak(rec) = &rec else {
            unreachable!()
        };
        let mut v = leak_json(rec, &self.names);
        v["type"] = json!("leak_report");
        // Why some frames have no names (a module's symbols unreadable): live only, and
        // only when there is something to say, so replays match the live line otherwise.
        let notes = self.maps.syms.module_notes();
        if !notes.is_empty() {
            v["symbol_notes"] = json!(notes);
        }
        // The recording format does not keep a failed mount yet: the live report says it.
        if let Some(err) = w.failed {
            v["mount"]["failed"] = json!(err);
            if let Some(t) = v["text"].as_str() {
                let t = t.replacen(
                    "still allocated after umount",
                    &format!("still allocated after the mount failed (error {err})"),
                    1,
                );
                v["text"] = json!(t);
            }
        }
        v
    }
}

/// Asks the kernel to wait for every pending RCU callback (`rcu_barrier()`), so objects
/// freed through `call_rcu` after the umount are gone before the report. Blocks for as long
/// as that takes (milliseconds usually); does nothing on kernels without the knob.
fn rcu_barrier() {
    let _ =
        std::fs::write("/sys/module/rcutree/parameters/do_rcu_barrier", "1").context("rcu_barrier");
}
