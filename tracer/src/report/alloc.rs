//! Allocation tracking in a report: replays the recording's allocation records (the
//! tracking's setup, the outstanding allocations at each tick, the leak reports) and gives
//! each test section its summary and the leak reports of the mounts unmounted in it.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::record::alloc::{
    AllocCounters, AllocRecord, LeakRecord, LiveAlloc, leak_json, live_json, setup_value,
};

/// What a test section says about allocations.
#[derive(Clone, Debug, Default)]
pub struct SectionAlloc {
    /// The outstanding allocations at the end of the section (the last state recorded at or
    /// before it).
    pub at_end: Option<LiveAlloc>,
    /// The most outstanding (objects, then bytes) at any tick of the section.
    pub peak_outstanding: u64,
    pub peak_bytes: u64,
    /// What the kernel side counted during the section.
    pub counters: AllocCounters,
    /// States recorded during the section.
    pub snapshots: u64,
    /// Leak reports of the mounts unmounted during the section, in the order they were made.
    pub leaks: Vec<LeakRecord>,
}

/// A point of the outstanding-allocations timeline (Perfetto).
#[derive(Clone, Copy, Debug)]
pub struct LivePoint {
    pub ts_ns: u64,
    pub outstanding: u64,
    pub bytes: u64,
}

/// Allocation tracking over the whole recording.
#[derive(Clone, Debug, Default)]
pub struct AllocInfo {
    /// The tracking's setup (`filter`, `options`), when the recording says.
    pub setup: Option<Value>,
    /// Names of the kernel addresses the records use.
    pub names: HashMap<u64, String>,
    pub records: u64,
    pub leak_reports: u64,
    pub timeline: Vec<LivePoint>,
}

impl AllocInfo {
    /// The filter's terms (`cache:filp`, ...), as recorded.
    pub fn terms(&self) -> Vec<String> {
        self.setup
            .as_ref()
            .and_then(|s| s["filter"]["terms"].as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The grace period between an umount and its leak report, as recorded.
    pub fn grace_ns(&self) -> Option<u64> {
        self.setup.as_ref()?["options"]["grace_ns"].as_u64()
    }

    pub fn leak_json(&self, k: &LeakRecord) -> Value {
        leak_json(k, &self.names)
    }

    pub fn leak_text(&self, k: &LeakRecord) -> String {
        crate::record::alloc::leak_text(k, &self.names)
    }

    pub fn live_json(&self, l: &LiveAlloc) -> Value {
        live_json(l, &self.names)
    }

    /// A section's allocations as JSON (`leaks.allocations` of the JSON report).
    pub fn section_json(&self, s: &SectionAlloc) -> Value {
        json!({
            "tracked": true,
            "filter": self.terms(),
            "at_end": s.at_end.as_ref().map(|l| self.live_json(l)),
            "peak_outstanding": s.peak_outstanding,
            "peak_bytes": s.peak_bytes,
            "counters": s.counters,
            "snapshots": s.snapshots,
            "leak_reports": s.leaks.iter().map(|k| self.leak_json(k)).collect::<Vec<_>>(),
        })
    }
}

/// Replay state of allocation tracking.
#[derive(Default)]
pub struct AllocReplay {
    pub info: AllocInfo,
    pub setup_errors: Vec<String>,
    /// The last state recorded.
    state: Option<LiveAlloc>,
    /// The counters when the current section started.
    section_start: AllocCounters,
    peak: (u64, u64),
    snapshots: u64,
    /// Every leak report, filed into sections at the end (they are made a grace period
    /// after the umount they belong to, often in the next test).
    pub leaks: Vec<LeakRecord>,
    timeline: bool,
}

impl AllocReplay {
    pub fn new(timeline: bool) -> Self {
        AllocReplay {
            timeline,
            ..Default::default()
        }
    }

    /// Whether the recording tracked allocations.
    pub fn tracked(&self) -> bool {
        self.info.setup.is_some() || self.info.records > 0
    }

    pub fn apply(&mut self, rec: AllocRecord) {
        self.info.records += 1;
        match rec {
            AllocRecord::Setup(s) => match setup_value(&s) {
                Ok(v) => self.info.setup = Some(v),
                Err(e) => self.setup_errors.push(format!("{e:#}")),
            },
            AllocRecord::Frames(f) => self.info.names.extend(f),
            AllocRecord::Live(l) => {
                self.snapshots += 1;
                if (l.outstanding, l.bytes) > self.peak {
                    self.peak = (l.outstanding, l.bytes);
                }
                if self.timeline {
                    self.info.timeline.push(LivePoint {
                        ts_ns: l.ts_ns,
                        outstanding: l.outstanding,
                        bytes: l.bytes,
                    });
                }
                self.state = Some(l);
            }
            AllocRecord::Leak(k) => {
                self.info.leak_reports += 1;
                self.leaks.push(k);
            }
        }
    }

    /// Ends the current section: its summary (without leak reports, filed later), and the
    /// start of the next one.
    pub fn close_section(&mut self) -> Option<SectionAlloc> {
        if !self.tracked() {
            return None;
        }
        let now = self.state.as_ref().map(|l| l.counters).unwrap_or_default();
        let s = SectionAlloc {
            at_end: self.state.clone(),
            peak_outstanding: self.peak.0,
            peak_bytes: self.peak.1,
            counters: now.since(&self.section_start),
            snapshots: self.snapshots,
            leaks: Vec::new(),
        };
        self.section_start = now;
        // The next section starts from the state this one ended with.
        self.peak = self
            .state
            .as_ref()
            .map(|l| (l.outstanding, l.bytes))
            .unwrap_or_default();
        self.snapshots = 0;
        Some(s)
    }
}
