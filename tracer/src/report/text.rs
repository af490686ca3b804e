//! The text report: the recording, then per test its EBUSY stories (a timeline, then what
//! the engine said), its leaks and its deferred-work latencies.

use std::fmt::Write as _;

use tracer_fs::{
    Notice,
    text::{boot, count, dur},
    verdict::{CulpritReleased, FileId, Told, group_released, released_group_text},
};

use super::{
    ALLOCATIONS_NOT_TRACKED, Report, Section, Spread, Story,
    alloc::{AllocInfo, SectionAlloc},
    notice_summary, notice_ts,
};

fn indent(text: &str, by: &str) -> String {
    text.lines()
        .map(|l| {
            if l.is_empty() {
                String::new()
            } else {
                format!("{by}{l}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// "exit status 3", "killed by SIGKILL (status 137)".
pub fn status_words(status: Option<i32>, signal: Option<i32>) -> String {
    match (status, signal) {
        (_, Some(sig)) => format!(
            "killed by {} (status {})",
            tracer_fs::text::signal_name(sig),
            128 + sig
        ),
        (Some(s), None) => format!("exit status {s}"),
        (None, None) => "did not exit while recording".to_string(),
    }
}

pub fn section_title(s: &Section) -> String {
    match &s.test {
        Some(t) => t.clone(),
        None => "before the first test".to_string(),
    }
}

fn header(r: &Report, out: &mut String) {
    let h = &r.header;
    let _ = writeln!(out, "tracer report of {}", r.source);
    let when = r
        .wall(h.started_boot_ns)
        .unwrap_or_else(|| "an unknown time".into());
    let span = r
        .end
        .as_ref()
        .map(|e| e.ended_boot_ns)
        .unwrap_or(r.last_ns)
        .saturating_sub(h.started_boot_ns);
    let _ = writeln!(
        out,
        "recorded at {when} for {} on Linux {} (tracer {}, format {}, wire {})",
        dur(span),
        if h.kernel_release.is_empty() {
            "?"
        } else {
            &h.kernel_release
        },
        h.tracer_version,
        h.format_version,
        h.wire_version
    );
    if let Some(c) = &r.command {
        let _ = writeln!(
            out,
            "command: {} (pid {}, {})",
            super::command_line(&c.argv),
            c.pid,
            status_words(c.status, c.signal)
        );
    }
    match &r.end {
        Some(e) => {
            let _ = writeln!(out, "recording ended cleanly (stopped by {})", e.stopped_by);
        }
        None if r.in_progress => {
            let _ = writeln!(out, "recording still in progress");
        }
        None => {
            let _ = writeln!(
                out,
                "recording was cut short: no end mark (the tracer crashed or was killed)"
            );
        }
    }
    let _ = writeln!(out, "events: {}", r.events_line());
    let missing = r.hooks_not_attached();
    if !missing.is_empty() {
        let _ = writeln!(out, "hooks not attached: {}", missing.join(", "));
    }
    if r.problems.is_empty() {
        let _ = writeln!(out, "problems reading the recording: none");
    } else {
        let _ = writeln!(
            out,
            "problems reading the recording (the report covers what could be read):"
        );
        for p in &r.problems {
            let _ = writeln!(out, "  - {p}");
        }
    }
    if !r.bad_record_samples.is_empty() {
        let _ = writeln!(
            out,
            "undecodable records (first {}):",
            r.bad_record_samples.len()
        );
        for b in &r.bad_record_samples {
            let _ = writeln!(out, "  - {b}");
        }
    }
    if r.evidence_limits.is_empty() {
        let _ = writeln!(out, "evidence limits: none known");
    } else {
        let _ = writeln!(out, "evidence limits:");
        for l in &r.evidence_limits {
            let _ = writeln!(out, "  - {l}");
        }
    }
    if let Some(a) = &r.alloc {
        let grace = a
            .grace_ns()
            .map(|g| format!(", leak reports {} after each umount", dur(g)))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "allocation tracking: {}{grace}; {} leak reports",
            a.terms().join(" "),
            a.leak_reports
        );
    }
    if let Some(t) = &r.test_filter {
        let _ = writeln!(out, "only test {t} (--test)");
    } else if !r.tests_seen.is_empty() {
        let _ = writeln!(
            out,
            "tests: {} ({})",
            r.tests_seen.len(),
            r.tests_seen.join(", ")
        );
    } else {
        let _ = writeln!(out, "tests: no xfstests markers were recorded");
    }
}

/// Verdicts of later attempts that name the same files as the previous one are summarised.
fn same_culprits(a: &Notice, b: &Notice) -> bool {
    fn ids(n: &Notice) -> Vec<&FileId> {
        match n {
            Notice::Verdict(v) => v
                .culprits
                .iter()
                .chain(v.pinned_mounts.iter().flat_map(|p| p.files.iter()))
                .chain(v.device_openers.iter())
                .map(|f| &f.id)
                .collect(),
            _ => Vec::new(),
        }
    }
    matches!((a, b), (Notice::Verdict(_), Notice::Verdict(_))) && ids(a) == ids(b)
}

/// A timeline line for releases told as one: `released: a, freed by …`, or
/// `released 12 files (a; b; c and 9 more), freed by …`.
pub fn released_summary(g: &[&CulpritReleased]) -> String {
    let Some(first) = g.first() else {
        return String::new();
    };
    let chain = tracer_fs::work::chain_text(&first.chain);
    let by = if chain.is_empty() {
        String::new()
    } else {
        format!(", freed by {chain}")
    };
    if g.len() == 1 {
        return format!("released: {}{by}", first.file);
    }
    let mut names: Vec<String> = g.iter().take(3).map(|c| c.file.to_string()).collect();
    if g.len() > 3 {
        names.push(format!("and {} more", g.len() - 3));
    }
    format!("released {} files ({}){by}", g.len(), names.join("; "))
}

pub fn story_title(s: &Story) -> String {
    let mut t = s.what.clone();
    if let Some(m) = &s.mount {
        let _ = write!(t, " ({m})");
    }
    t
}

pub fn story_outcome(s: &Story) -> String {
    if s.space {
        return match s.closed_ns {
            Some(c) => format!(
                "held for {} from the delete until the file's release",
                dur(c.saturating_sub(s.first_ebusy_ns))
            ),
            None => "still held at the end of the test".to_string(),
        };
    }
    if s.lock {
        let conflicts = count(s.failed_attempts as usize, "conflict", "conflicts");
        return match s.closed_ns {
            Some(c) => format!(
                "{conflicts}; held for {} from the first conflict until released",
                dur(c.saturating_sub(s.first_ebusy_ns))
            ),
            None => format!("{conflicts}; still held at the end of the test"),
        };
    }
    let attempts = count(
        s.failed_attempts as usize,
        "failed attempt",
        "failed attempts",
    );
    match s.closed_ns {
        Some(c) => format!(
            "{attempts}; busy for {} until it succeeded",
            dur(c.saturating_sub(s.first_ebusy_ns))
        ),
        None => format!("{attempts}; still busy at the end of the test"),
    }
}

fn story(s: &Story, out: &mut String) {
    let _ = writeln!(out, "  * {}", story_title(s));
    let _ = writeln!(out, "    {}", story_outcome(s));
    let _ = writeln!(
        out,
        "    timeline (from the first {} at {}):",
        if s.lock {
            "conflict"
        } else if s.space {
            "delete"
        } else {
            "EBUSY"
        },
        boot(s.first_ebusy_ns)
    );
    let told = group_released(&s.notices);
    for t in &told {
        let (ts, line) = match t {
            Told::One(n) => (notice_ts(n), notice_summary(n)),
            Told::Released(g) => (g[0].ts_ns, released_summary(g)),
        };
        let at = ts.saturating_sub(s.first_ebusy_ns);
        let _ = writeln!(out, "      +{:<9} {line}", dur(at));
    }
    let _ = writeln!(out, "    what the engine said:");
    let mut prev: Option<&Notice> = None;
    for t in &told {
        let n = match t {
            Told::One(n) => *n,
            Told::Released(g) => {
                let _ = writeln!(out, "{}", indent(&released_group_text(g), "      "));
                continue;
            }
        };
        if let (Some(p), Notice::Verdict(v)) = (prev, n)
            && same_culprits(p, n)
        {
            let _ = writeln!(
                out,
                "      EBUSY again (attempt {}) at {}: the same open files as before",
                v.attempt,
                boot(v.ts_ns)
            );
        } else {
            let _ = writeln!(out, "{}", indent(&n.to_string(), "      "));
        }
        if matches!(n, Notice::Verdict(_)) {
            prev = Some(n);
        }
    }
}

pub fn spread_words(s: &Spread) -> String {
    if s.count == 0 {
        return "none".into();
    }
    format!(
        "p50 {} p90 {} p99 {} max {} (mean {}, {} runs)",
        dur(s.p50_ns),
        dur(s.p90_ns),
        dur(s.p99_ns),
        dur(s.max_ns),
        dur(s.mean_ns),
        s.count
    )
}

fn mount_words(target: &str, fs_type: &str, source: &str) -> String {
    let or = |s: &str| {
        if s.is_empty() {
            "?".to_string()
        } else {
            s.to_string()
        }
    };
    format!("{target} ({} on {})", or(fs_type), or(source))
}

/// A section's allocations: the outstanding ones at its end, what the kernel side counted,
/// and the leak reports of the mounts unmounted in it, in kmemleak's format.
fn allocations(info: &AllocInfo, a: &SectionAlloc, out: &mut String) {
    let c = &a.counters;
    match &a.at_end {
        Some(l) => {
            let _ = writeln!(
                out,
                "  allocations ({}): {} outstanding ({} bytes) at the end of the test, peak {} ({} bytes)",
                info.terms().join(" "),
                l.outstanding,
                l.bytes,
                a.peak_outstanding,
                a.peak_bytes
            );
        }
        None => {
            let _ = writeln!(
                out,
                "  allocations ({}): no snapshot yet at the end of the test",
                info.terms().join(" ")
            );
        }
    }
    let _ = writeln!(
        out,
        "    during the test: {} tracked, {} freed; not tracked: {} (map full), {} (sampled out); frees missed: {} (free programs skipped), {} (address reused first); {} stacks not captured",
        c.tracked, c.freed, c.map_full, c.sampled_out, c.free_misses, c.reused, c.stack_failures
    );
    if let Some(l) = &a.at_end {
        if !l.by_call_site.is_empty() {
            let _ = writeln!(out, "    outstanding by call site:");
            for site in &l.by_call_site {
                let _ = writeln!(
                    out,
                    "      {}: {} objects, {} bytes",
                    info.names
                        .get(&site.call_site)
                        .cloned()
                        .unwrap_or_else(|| format!("{:#x}", site.call_site)),
                    site.count,
                    site.bytes
                );
            }
        }
        for m in &l.by_mount {
            let _ = writeln!(
                out,
                "    charged to {} (still mounted): {} objects, {} bytes",
                mount_words(&m.target, &m.fs_type, &m.source),
                m.count,
                m.bytes
            );
        }
    }
    if a.leaks.is_empty() {
        let _ = writeln!(
            out,
            "  leak reports: none (no tracked mount was unmounted in this test)"
        );
    } else {
        // Classified reports (cycle confirmation): this test's objects by verdict first.
        let classified: Vec<_> = a.leaks.iter().filter(|k| k.classified()).collect();
        let verdicts = if classified.is_empty() {
            String::new()
        } else {
            use tracer_fs::leakcheck::Class;
            let n = |c| -> u64 { classified.iter().map(|k| k.count(c, false)).sum() };
            let earlier: u64 = classified.iter().map(|k| k.count(Class::Leak, true)).sum();
            format!(
                " ({} confirmed leaks, {} unconfirmed, {} uncertain; from earlier cycles: {} confirmed)",
                n(Class::Leak),
                n(Class::Unconfirmed),
                n(Class::Uncertain),
                earlier
            )
        };
        let _ = writeln!(out, "  leak reports: {}{verdicts}", a.leaks.len());
        for k in &a.leaks {
            let _ = writeln!(out, "{}", indent(&info.leak_text(k), "    "));
        }
    }
}

fn section(r: &Report, s: &Section, out: &mut String) {
    let title = section_title(s);
    let when = r
        .wall(s.start_ns)
        .map(|w| format!("started {w}, "))
        .unwrap_or_default();
    let _ = writeln!(out);
    let _ = writeln!(out, "== {title} ==");
    let _ = writeln!(
        out,
        "{when}{} long, {} events, {} mount-table calls ({} EBUSY)",
        dur(s.end_ns.saturating_sub(s.start_ns)),
        s.events,
        s.mount_calls,
        s.ebusy_calls
    );
    if let Some(v) = s.test.as_deref().and_then(|t| r.fstests_status(t)) {
        let _ = writeln!(out, "fstests' verdict: {v}");
    }
    let _ = writeln!(out);
    let ebusy: Vec<&Story> = s.stories.iter().filter(|st| st.is_ebusy()).collect();
    let locks: Vec<&Story> = s.stories.iter().filter(|st| st.lock).collect();
    let space: Vec<&Story> = s.stories.iter().filter(|st| st.space).collect();
    if ebusy.is_empty() {
        let _ = writeln!(out, "EBUSY stories: none");
    } else {
        let _ = writeln!(out, "EBUSY stories: {}", ebusy.len());
        for st in ebusy {
            story(st, out);
        }
    }
    if !locks.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "lock conflicts: {}", locks.len());
        for st in locks {
            story(st, out);
        }
    }
    if !space.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "deleted files still held (space not freed): {}",
            space.len()
        );
        for st in space {
            story(st, out);
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "leaks:");
    match (&r.alloc, &s.alloc) {
        (Some(info), Some(a)) => allocations(info, a, out),
        _ => {
            let _ = writeln!(out, "  {ALLOCATIONS_NOT_TRACKED}");
        }
    }
    if s.pinned_at_end.is_empty() {
        let _ = writeln!(
            out,
            "  detached mounts still pinned at the end of the test: none"
        );
    } else {
        let _ = writeln!(
            out,
            "  detached mounts still pinned at the end of the test (they live on, invisible, until their files go):"
        );
        for a in &s.pinned_at_end {
            match &a.mount {
                Some(m) => {
                    let _ = writeln!(out, "    - {m}: {}", count(a.files, "file", "files"));
                }
                None => {
                    let _ = writeln!(
                        out,
                        "    - mount {}: {}",
                        a.mount_id,
                        count(a.files, "file", "files")
                    );
                }
            }
            let anchor = tracer_fs::verdict::Anchor::event(s.end_ns, "end of the test");
            let mut files = String::new();
            for f in a.distinct_files() {
                f.render(&anchor, "      ", &mut files);
            }
            out.push_str(&files);
        }
    }
    for n in &s.detached {
        let _ = writeln!(out, "{}", indent(&n.to_string(), "  "));
    }
    let _ = writeln!(out);
    if s.work.is_empty() {
        let _ = writeln!(out, "deferred work: none seen");
    } else {
        let _ = writeln!(out, "deferred work (queue → start latency, run time):");
        for w in &s.work {
            let _ = writeln!(
                out,
                "  {}: armed {}, queued {}, started {}, ended {}, waiting at the end {}",
                w.name, w.armed, w.queued, w.started, w.ended, w.waiting_at_end
            );
            let _ = writeln!(out, "    latency {}", spread_words(&w.latency));
            let _ = writeln!(out, "    run     {}", spread_words(&w.run));
        }
    }
}

pub fn render(r: &Report) -> String {
    let mut out = String::new();
    header(r, &mut out);
    if r.sections.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "no events were recorded");
    }
    for s in &r.sections {
        section(r, s, &mut out);
    }
    out
}
