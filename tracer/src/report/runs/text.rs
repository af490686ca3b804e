//! The cross-run report in plain text: the runs, then one block per test.

use std::fmt::Write;

use tracer_fs::text::{count, dur};

use super::summary::{ChainCount, CrossRunReport, KindCount, Percentiles, TestSummary};

pub fn percentiles(p: &Percentiles) -> String {
    if p.count == 0 {
        return "-".to_string();
    }
    format!(
        "p50 {} p99 {} max {} (of {})",
        dur(p.p50_ns),
        dur(p.p99_ns),
        dur(p.max_ns),
        p.count
    )
}

pub fn kinds(k: &[KindCount]) -> String {
    if k.is_empty() {
        // A story that began in an earlier test (its verdict is filed there).
        return "none named in this test (a story that began in an earlier one)".to_string();
    }
    k.iter()
        .map(|k| {
            format!(
                "{} ({} in {})",
                k.kind,
                k.stories,
                count(k.runs as usize, "run", "runs")
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn chain(c: &ChainCount) -> String {
    c.links.join(" ← ")
}

fn test_block(out: &mut String, t: &TestSummary) {
    let _ = writeln!(
        out,
        "\n== {} ({})",
        t.test,
        count(t.runs as usize, "run", "runs")
    );
    let _ = writeln!(
        out,
        "  EBUSY: {} of {} runs, {} ({} unexplained, {} not over at the test's end)",
        t.runs_with_ebusy,
        t.runs,
        count(t.ebusy_stories as usize, "story", "stories"),
        t.unexplained_stories,
        t.stories_not_closed
    );
    if t.ebusy_stories > 0 {
        let _ = writeln!(out, "    kernels: {}", t.ebusy_kernels.join(", "));
        let _ = writeln!(out, "    pinned: {}", percentiles(&t.pinned));
        let _ = writeln!(out, "    held by: {}", kinds(&t.culprit_kinds));
        for c in &t.chains {
            let _ = writeln!(
                out,
                "    chain: {} — {} in {} of {}",
                chain(c),
                count(c.releases as usize, "release", "releases"),
                count(c.stories as usize, "story", "stories"),
                count(c.runs as usize, "run", "runs")
            );
        }
    }
    let l = &t.lock_conflicts;
    if l.stories > 0 {
        let _ = writeln!(
            out,
            "  lock conflicts: {} in {} of {} runs; held {}",
            count(l.stories as usize, "story", "stories"),
            l.runs,
            t.runs,
            percentiles(&l.held)
        );
        let _ = writeln!(out, "    holders: {}", kinds(&l.holder_kinds));
        for c in &l.chains {
            let _ = writeln!(
                out,
                "    released by: {} — {} in {}",
                chain(c),
                count(c.releases as usize, "release", "releases"),
                count(c.runs as usize, "run", "runs")
            );
        }
    }
    if !t.leaks.is_empty() {
        let _ = writeln!(
            out,
            "  leaks: confirmed in {} of {} runs",
            t.runs_with_confirmed_leaks, t.runs
        );
        for s in &t.leak_call_sites {
            let _ = writeln!(
                out,
                "    {} at {}: {} ({} bytes) in {}, {}",
                s.class,
                s.call_site,
                count(s.objects as usize, "object", "objects"),
                s.bytes,
                count(s.runs as usize, "run", "runs"),
                count(s.stacks as usize, "stack", "stacks"),
            );
        }
        for g in &t.leaks {
            let kind = if g.kind.is_empty() {
                String::new()
            } else {
                format!(" ({})", g.kind)
            };
            let _ = writeln!(
                out,
                "    {}: {} ({} bytes) of {}{kind} in {} — kernels {}",
                g.class,
                count(g.objects as usize, "object", "objects"),
                g.bytes,
                g.cache,
                count(g.runs as usize, "run", "runs"),
                g.kernels.join(", ")
            );
            for f in &g.stack {
                let _ = writeln!(out, "        {f}");
            }
        }
    }
    if t.runs_with_detached_pinned > 0 {
        let _ = writeln!(
            out,
            "  detached mounts still pinned at the end: in {} of {} runs",
            t.runs_with_detached_pinned, t.runs
        );
    }
    if t.runs_failed_by_fstests > 0 {
        let _ = writeln!(
            out,
            "  failed by fstests itself: in {} of {} runs",
            t.runs_failed_by_fstests, t.runs
        );
    }
}

pub fn render(r: &CrossRunReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "tracer cross-run report: {} ({} unreadable), {}, {}",
        count(r.runs.len(), "recording", "recordings"),
        r.unreadable.len(),
        count(r.hosts.len(), "machine", "machines"),
        count(r.kernels.len(), "kernel", "kernels"),
    );
    for k in &r.kernels {
        let _ = writeln!(
            out,
            "  kernel {}: {}",
            k.name,
            count(k.runs as usize, "run", "runs")
        );
    }
    for h in &r.hosts {
        let name = if h.name.is_empty() {
            "(not recorded)"
        } else {
            &h.name
        };
        let _ = writeln!(
            out,
            "  machine {name}: {}",
            count(h.runs as usize, "run", "runs")
        );
    }
    let lost: u64 = r.runs.iter().map(|x| x.records_lost).sum();
    let cut = r.runs.iter().filter(|x| !x.clean_end).count();
    let damaged = r.runs.iter().filter(|x| !x.problems.is_empty()).count();
    if lost > 0 || cut > 0 || damaged > 0 {
        let _ = writeln!(
            out,
            "  evidence: {lost} records lost in all, {cut} recordings cut short, {damaged} with damage skipped"
        );
    }
    for u in &r.unreadable {
        let _ = writeln!(out, "  unreadable: {}: {}", u.file, u.error);
    }
    for t in &r.tests {
        test_block(&mut out, t);
    }
    out
}
