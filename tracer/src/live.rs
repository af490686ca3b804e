//! The live engine: every event goes through `tracer_fs::Engine`, and what it concludes
//! (EBUSY verdicts, culprits released, stories closed) is written out as it happens, as JSON
//! lines or as plain text for a person watching.

use std::{collections::HashSet, io::Write};

use anyhow::Result;
use serde_json::json;
use tracer_fs::{
    Engine, EngineConfig, Notice,
    event::{Event, Payload},
    verdict::{CulpritReleased, released_group_text, same_release},
};

use crate::{
    attach::Attached, kernel::kallsyms::Kallsyms, stream::Sink, stream::counters::Figures,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object per line.
    Json,
    /// Verdicts and notices in plain words.
    Text,
}

/// What the engine needs from the attach: followed functions, ring layout, missing hooks.
pub fn engine_config(att: &Attached) -> EngineConfig {
    let mut cfg = EngineConfig::default();
    let first = |name: &str| {
        att.followed
            .iter()
            .find(|f| f.name == name)
            .and_then(|f| f.addrs.first().copied())
    };
    cfg.delayed_fput = first("delayed_fput");
    cfg.io_ring_exit_work = first("io_ring_exit_work");
    cfg.io_fallback_req_func = first("io_fallback_req_func");
    cfg.io_tctx_fallback_work = first("io_tctx_fallback_work");
    for f in &att.followed {
        for a in &f.addrs {
            cfg.symbols.insert(*a, f.name.clone());
        }
    }
    cfg.lock_wait_ms = Some(att.lock_wait_ms);
    cfg.ring_exit_work_offset = att.uring.exit_work;
    cfg.ring_fallback_work_offset = att.uring.fallback_work;
    cfg.missing_hooks = att
        .hooks
        .iter()
        .filter(|h| !h.live())
        .map(|h| format!("{} ({})", h.hook, h.why))
        .collect();
    // Without the lock members, conflicts are seen but their holders cannot be found.
    if att
        .gaps
        .btf_members
        .iter()
        .any(|g| g.starts_with("file_lock") || g.contains("i_flctx"))
    {
        cfg.missing_hooks
            .push("lock holders (struct file_lock members missing from BTF)".to_string());
    }
    cfg.exit_group_dead_unknown = att.gaps.tp_fields.iter().any(|g| g.contains("group_dead"));
    cfg.exit_resources_seen = att.hooks.iter().any(|h| {
        h.hook == "kmem_cache free"
            && h.mechanism == Some(crate::attach::hooks::Mechanism::RawTracepoint)
    });
    cfg.precise_release = att.hooks.iter().any(|h| {
        h.hook == "__fput"
            && h.mechanism
                .is_some_and(crate::attach::hooks::Mechanism::on_function)
    });
    cfg
}

/// `name`, or `name+0xoff`: a work function as the stream and the engine show it.
pub fn work_fn_name(syms: &Kallsyms, addr: u64) -> Option<String> {
    syms.resolve(addr).map(|(s, off)| {
        if off == 0 {
            s.name.clone()
        } else {
            format!("{}+{off:#x}", s.name)
        }
    })
}

/// Teaches `engine` the names of the work functions `ev` names (its worker's, a work
/// record's own) the first time each appears (`named`: those seen).
pub fn teach_work_names(
    engine: &mut Engine,
    named: &mut HashSet<u64>,
    syms: &Kallsyms,
    ev: &Event,
) {
    let mut addrs = vec![];
    if let Some(w) = ev.work {
        addrs.push(w.function);
    }
    if let Payload::WorkQueued { function, .. }
    | Payload::WorkStart { function, .. }
    | Payload::WorkEnd { function, .. }
    | Payload::WorkArmed { function, .. } = ev.payload
    {
        addrs.push(function);
    }
    for a in addrs {
        if named.insert(a)
            && let Some(name) = work_fn_name(syms, a)
        {
            engine.add_symbol(a, name);
        }
    }
}

pub struct LiveSink<'a, W: Write> {
    pub engine: Engine,
    out: W,
    format: Format,
    /// Also write every event (JSON only).
    events: bool,
    syms: &'a Kallsyms,
    named: HashSet<u64>,
    last_drops: u64,
    last_misses: u64,
    pub notices: u64,
    /// Text format: releases held back to be told as one (`verdict::released_group_text`),
    /// until a different notice, the next figures tick or the end.
    released: Vec<CulpritReleased>,
    /// Allocation tracking (`--alloc-filter`), when on.
    pub alloc: Option<crate::alloc::tracker::AllocTracker>,
    /// What the engine concluded from the last event, for a report gathered beside it
    /// (`EngineSink::take_notices`).
    pub(crate) last_notices: Vec<Notice>,
}

impl<'a, W: Write> LiveSink<'a, W> {
    pub fn new(engine: Engine, out: W, format: Format, events: bool, syms: &'a Kallsyms) -> Self {
        LiveSink {
            engine,
            out,
            format,
            events,
            syms,
            named: HashSet::new(),
            last_drops: 0,
            last_misses: 0,
            notices: 0,
            released: Vec::new(),
            alloc: None,
            last_notices: Vec::new(),
        }
    }

    /// Turns on the allocation live view and leak reports.
    pub fn set_alloc(&mut self, tracker: crate::alloc::tracker::AllocTracker) {
        self.alloc = Some(tracker);
    }

    /// With `--alloc-filter`: takes the tracking maps out of `att`, says what the filter
    /// covers (an `alloc_filter` line) and turns on the live view and leak reports.
    pub fn start_alloc(&mut self, att: &mut Attached, opts: &crate::attach::Options) -> Result<()> {
        let (Some(maps), Some(aopts)) = (att.alloc.take(), opts.alloc.clone()) else {
            return Ok(());
        };
        let mut tracker = crate::alloc::tracker::AllocTracker::new(maps, aopts);
        tracker.check_hooks(&att.hooks);
        let s = tracker.summary();
        self.json(&json!({ "type": "alloc_filter", "filter": s }))?;
        self.text(&format!(
            "allocation tracking: {} ({} ranges, {} functions){}",
            s.terms.join(" "),
            s.ranges,
            s.matched_functions,
            s.notes.iter().map(|n| format!("; {n}")).collect::<String>()
        ))?;
        self.set_alloc(tracker);
        Ok(())
    }

    /// The allocation live view and due leak reports, at each stats tick.
    fn alloc_tick(&mut self, f: &Figures) -> Result<()> {
        let Some(t) = self.alloc.as_mut() else {
            return Ok(());
        };
        let values = t.tick(crate::kernel::clock::boottime_ns(), f)?;
        self.alloc_out(values)
    }

    fn alloc_out(&mut self, values: Vec<serde_json::Value>) -> Result<()> {
        for v in values {
            if v["type"] == "leak_report" {
                self.notices += 1;
                if let Some(text) = v["text"].as_str() {
                    self.text(text)?;
                }
            }
            if let Some(w) = v["warning"].as_str() {
                self.text(&format!("tracer: {w}"))?;
            }
            self.json(&v)?;
        }
        Ok(())
    }

    pub fn json(&mut self, v: &serde_json::Value) -> Result<()> {
        if self.format == Format::Json {
            serde_json::to_writer(&mut self.out, v)?;
            self.out.write_all(b"\n")?;
            self.out.flush()?;
        }
        Ok(())
    }

    pub fn text(&mut self, s: &str) -> Result<()> {
        if self.format == Format::Text {
            writeln!(self.out, "{s}")?;
            self.out.flush()?;
        }
        Ok(())
    }

    fn symbol(&self, addr: u64) -> Option<String> {
        work_fn_name(self.syms, addr)
    }

    fn notice(&mut self, n: &Notice) -> Result<()> {
        self.notices += 1;
        if self.format == Format::Json {
            let mut v: serde_json::Value = serde_json::from_str(&n.to_json_line())?;
            v["type"] = json!("notice");
            v["text"] = json!(n.to_string());
            self.json(&v)
        } else if let Notice::CulpritReleased(c) = n {
            if self.released.last().is_some_and(|p| !same_release(p, c)) {
                self.flush_released()?;
            }
            self.released.push(c.clone());
            Ok(())
        } else {
            self.flush_released()?;
            self.text(&n.to_string())
        }
    }

    fn flush_released(&mut self) -> Result<()> {
        if self.released.is_empty() {
            return Ok(());
        }
        let group = std::mem::take(&mut self.released);
        let refs: Vec<&CulpritReleased> = group.iter().collect();
        self.text(&released_group_text(&refs))
    }
}

impl<W: Write> Sink for LiveSink<'_, W> {
    fn event(&mut self, ev: &Event) -> Result<()> {
        teach_work_names(&mut self.engine, &mut self.named, self.syms, ev);
        if let Some(a) = self.alloc.as_mut() {
            a.on_event(ev);
        }
        let notices = self.engine.apply(ev);
        if self.events && self.format == Format::Json {
            let mut v = json!({ "type": "event", "event": ev });
            if let Some(w) = ev.work {
                v["work_fn_name"] = json!(self.symbol(w.function));
            }
            if let Payload::WorkQueued { function, .. }
            | Payload::WorkStart { function, .. }
            | Payload::WorkEnd { function, .. }
            | Payload::WorkArmed { function, .. } = ev.payload
            {
                v["function_name"] = json!(self.symbol(function));
            }
            self.json(&v)?;
        }
        for n in &notices {
            self.notice(n)?;
        }
        self.last_notices = notices;
        Ok(())
    }

    fn figures(&mut self, f: &Figures) -> Result<()> {
        self.flush_released()?;
        // Lost records and skipped runs weaken every later verdict: say so in them.
        let drops = f.total_drops();
        if drops > self.last_drops {
            self.engine.add_evidence_limit(format!(
                "the ring buffer was full: {drops} records lost so far"
            ));
            self.text(&format!(
                "WARNING: {drops} records lost (ring buffer full); try --ring-mib"
            ))?;
            self.last_drops = drops;
        }
        let misses = f.total_recursion_misses();
        if misses > self.last_misses {
            self.engine.add_evidence_limit(format!(
                "{misses} program runs skipped by the kernel (recursion)"
            ));
            self.last_misses = misses;
        }
        self.json(&json!({ "type": "stats", "stats": f, "engine": self.engine.stats() }))?;
        self.alloc_tick(f)
    }

    fn bad_record(&mut self, err: &str) -> Result<()> {
        self.json(&json!({ "type": "error", "error": err }))?;
        self.text(&format!("ERROR: {err}"))
    }

    fn warning(&mut self, msg: &str) -> Result<()> {
        self.json(&json!({ "type": "warning", "warning": msg }))?;
        self.text(&format!("tracer: {msg}"))
    }

    fn ready(&mut self) -> Result<()> {
        self.json(&json!({ "type": "ready" }))?;
        self.text("tracer: attached; watching mounts, files and deferred work (Ctrl-C to stop)")
    }

    fn wake_ns(&self) -> Option<u64> {
        self.alloc.as_ref().and_then(|t| t.wake_ns())
    }

    fn end(&mut self) -> Result<()> {
        self.flush_released()?;
        let Some(t) = self.alloc.as_mut() else {
            return Ok(());
        };
        let values = t.finish(crate::kernel::clock::boottime_ns());
        self.alloc_out(values)
    }
}
