//! `s` in the TUI, written to `tracer-report-<timestamp>.txt` (mode 0600: it holds kernel
//! addresses). With `--record`, the report `tracer report` makes of the recording so far
//! (the same code, replaying what is written: up to a second behind). Without a
//! recording there are no events to replay: the verdicts, notices and mount summaries as
//! they stand, under a first line that says so.

use std::{
    fmt::Write as _,
    io::Write as _,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};

use super::model::Model;
use crate::alloc::view::AllocView;

/// Local time as `YYYYMMDD-HHMMSS` (for file names) and as `YYYY-MM-DD HH:MM:SS`.
fn local_now() -> (String, String) {
    // SAFETY: time(NULL) and localtime_r into a zeroed struct.
    unsafe {
        let t = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&t, &mut tm);
        let (y, mo, d, h, mi, s) = (
            tm.tm_year + 1900,
            tm.tm_mon + 1,
            tm.tm_mday,
            tm.tm_hour,
            tm.tm_min,
            tm.tm_sec,
        );
        (
            format!("{y:04}{mo:02}{d:02}-{h:02}{mi:02}{s:02}"),
            format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}"),
        )
    }
}

/// The report's text.
pub fn text(model: &Model, now_ns: u64, when: &str) -> String {
    let e = &model.engine;
    let meta = model.meta();
    let mut s = String::new();
    let _ = writeln!(s, "tracer report, {when} ({})", meta.kernel);
    if let Some(t) = model.test() {
        let _ = writeln!(s, "xfstests test running: {t}");
    }
    let f = model.figures();
    let _ = writeln!(
        s,
        "{} records lost (ring buffer full), {} program runs skipped by the kernel",
        f.total_drops(),
        f.total_recursion_misses()
    );
    let missing: Vec<String> = meta
        .hooks
        .iter()
        .filter(|h| !h.live)
        .map(|h| format!("{} ({})", h.name, h.how))
        .collect();
    if !missing.is_empty() {
        let _ = writeln!(s, "hooks not attached: {}", missing.join("; "));
    }
    let _ = writeln!(s, "engine: {}", e.stats());

    let _ = writeln!(s, "\n== Mounts ==");
    for m in model.mount_rows() {
        let flag = if super::model::pinned(&m) {
            "PINNED "
        } else {
            ""
        };
        let _ = writeln!(s, "{flag}{m}");
    }
    let _ = writeln!(s, "\n== Deferred work ==");
    for w in e.work_summaries() {
        let _ = writeln!(s, "{w}");
    }
    let verdicts: Vec<_> = e.verdicts().collect();
    let _ = writeln!(s, "\n== Verdicts ({}) ==", verdicts.len());
    for v in verdicts {
        let _ = writeln!(s, "{v}\n");
    }
    let _ = writeln!(s, "\n== Events (newest last) ==");
    for l in model.log() {
        let _ = writeln!(s, "[{}] {}\n", tracer_fs::text::boot(l.ts_ns), l.full);
    }
    if let Some(a) = model.alloc() {
        alloc_section(&mut s, a, model);
    }
    let _ = writeln!(s, "== Evidence limits ==");
    for l in e.evidence_limits() {
        let _ = writeln!(s, "- {l}");
    }
    let _ = writeln!(
        s,
        "\n(times are seconds since boot, as in dmesg; report written at {})",
        tracer_fs::text::boot(now_ns)
    );
    s
}

/// Allocation tracking as it stands: the totals and what was not seen, per mount alive its
/// outstanding allocations by call site, and the leak reports made so far, in full.
fn alloc_section(s: &mut String, a: &AllocView, model: &Model) {
    let _ = writeln!(s, "== Allocations ({}) ==", a.filter.join(" "));
    let _ = writeln!(
        s,
        "{} outstanding ({} bytes, {:+.1}/s) of at most {} tracked; {} tracked and {} freed since attach",
        a.outstanding, a.bytes, a.growth_per_s, a.cap, a.tracked_total, a.freed_total
    );
    let _ = writeln!(
        s,
        "not seen: {} allocations not tracked (map full), {} runs of the free programs skipped, {} addresses reused before their free was seen, {} stack captures failed{}",
        a.untracked_map_full,
        a.free_misses,
        a.reused,
        a.stack_failures,
        if a.sample_every > 1 {
            format!("; sampling one in {}", a.sample_every)
        } else {
            String::new()
        }
    );
    for n in &a.notes {
        let _ = writeln!(s, "note: {n}");
    }
    let site = |s: &mut String, r: &crate::alloc::view::SiteRow| {
        let cache = if r.cache.is_empty() {
            String::new()
        } else {
            format!(" ({})", r.cache)
        };
        let _ = writeln!(
            s,
            "  {:>7} objects {:>10} bytes {:>+9.1}/s  {}{cache}",
            r.count, r.bytes, r.growth_per_s, r.function
        );
    };
    for m in &a.mounts {
        let _ = writeln!(
            s,
            "\nmount {} ({} {}), mounted at {}: {} objects, {} bytes outstanding, {:+.1}/s",
            m.target,
            m.fs_type,
            m.source,
            tracer_fs::text::boot(m.mounted_ns),
            m.count,
            m.bytes,
            m.growth_per_s
        );
        for r in &m.sites {
            site(s, r);
        }
    }
    if !a.sites.is_empty() {
        let _ = writeln!(s, "\nall outstanding allocations by call site:");
        for r in &a.sites {
            site(s, r);
        }
    }
    for p in &a.pending {
        let _ = writeln!(
            s,
            "\nleak report of {} due at {}",
            p.target,
            tracer_fs::text::boot(p.due_ns)
        );
    }
    let leaks: Vec<_> = model.leaks().collect();
    let _ = writeln!(
        s,
        "\n== Leak reports ({} made, the latest {} here) ==",
        a.reports,
        leaks.len()
    );
    for (ts, text) in leaks {
        let _ = writeln!(s, "[{}] {text}", tracer_fs::text::boot(*ts));
    }
    let _ = writeln!(s);
}

/// The first line of a report saved without a recording.
pub const LIVE_ONLY: &str = "live summary (no recording: run with --record for the full report)";

/// Writes the report into `dir`; returns its path.
pub fn save(model: &Model, dir: &Path, now_ns: u64) -> Result<PathBuf> {
    let (stamp, when) = local_now();
    let body = match &model.meta().recording {
        Some(rec) => {
            let opts = crate::report::ReportOptions::default();
            let mut r = crate::report::replay_file(Path::new(rec), &opts)?;
            // Not cut short: still being written.
            r.in_progress = true;
            r.problems
                .retain(|p| !matches!(p, crate::record::reader::Problem::NoEnd));
            format!(
                "report of {rec} so far (still recording: its last second may be missing)\n{}",
                r.render(crate::report::ReportFormat::Text)
            )
        }
        None => format!("{LIVE_ONLY}\n{}", text(model, now_ns, &when)),
    };
    for n in 0.. {
        let name = if n == 0 {
            format!("tracer-report-{stamp}.txt")
        } else {
            format!("tracer-report-{stamp}-{n}.txt")
        };
        let path = dir.join(name);
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(mut f) => {
                f.write_all(body.as_bytes())
                    .with_context(|| format!("writing {}", path.display()))?;
                return Ok(path);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 100 => continue,
            Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
        }
    }
    unreachable!("the loop returns")
}
