//! The cross-run report as one self-contained HTML page: a table of tests, then per test
//! its EBUSY chains, holders, lock conflicts, leak stacks and runs.

use std::fmt::Write;

use tracer_fs::text::{count, dur};

use super::summary::{CrossRunReport, TestSummary};
use super::text::{chain, kinds, percentiles};
use crate::report::html::esc;

const STYLE: &str = "body{font-family:sans-serif;margin:1.5em;max-width:80em}\
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.2em .5em;\
text-align:left;vertical-align:top}th{background:#eee}.bad{color:#b00;font-weight:bold}\
pre{background:#f6f6f6;padding:.4em;margin:.2em 0}h2{margin-top:1.5em}";

fn anchor(test: &str) -> String {
    test.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

fn test_section(out: &mut String, t: &TestSummary) {
    let _ = writeln!(
        out,
        "<h2 id=\"{}\">{}</h2><p>{}; EBUSY in {} of them: {} ({} unexplained, {} not over); pinned {}</p>",
        anchor(&t.test),
        esc(&t.test),
        count(t.runs as usize, "run", "runs"),
        t.runs_with_ebusy,
        count(t.ebusy_stories as usize, "story", "stories"),
        t.unexplained_stories,
        t.stories_not_closed,
        esc(&percentiles(&t.pinned)),
    );
    if !t.culprit_kinds.is_empty() {
        let _ = writeln!(out, "<p>Held by: {}</p>", esc(&kinds(&t.culprit_kinds)));
    }
    if !t.chains.is_empty() {
        out.push_str("<table><tr><th>release chain</th><th>releases</th><th>stories</th><th>runs</th></tr>\n");
        for c in &t.chains {
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&chain(c)),
                c.releases,
                c.stories,
                c.runs
            );
        }
        out.push_str("</table>\n");
    }
    let l = &t.lock_conflicts;
    if l.stories > 0 {
        let _ = writeln!(
            out,
            "<p>Lock conflicts: {} in {} runs; held {}; holders {}</p>",
            l.stories,
            l.runs,
            esc(&percentiles(&l.held)),
            esc(&kinds(&l.holder_kinds))
        );
    }
    if !t.leaks.is_empty() {
        out.push_str("<table><tr><th>verdict</th><th>objects</th><th>bytes</th><th>cache</th><th>runs</th><th>kernels</th><th>stack</th></tr>\n");
        for g in &t.leaks {
            let class = if g.class == "leak" {
                "<span class=\"bad\">leak</span>".to_string()
            } else {
                esc(&g.class)
            };
            let _ = writeln!(
                out,
                "<tr><td>{class}</td><td>{}</td><td>{}</td><td>{} ({})</td><td>{}</td><td>{}</td><td><pre>{}</pre></td></tr>",
                g.objects,
                g.bytes,
                esc(&g.cache),
                esc(&g.kind),
                g.runs,
                esc(&g.kernels.join(", ")),
                esc(&g.stack.join("\n"))
            );
        }
        out.push_str("</table>\n");
    }
    out.push_str("<details><summary>runs</summary><table><tr><th>run</th><th>machine</th><th>kernel</th><th>started</th><th>time</th><th>EBUSY stories</th><th>locks</th><th>leak objects</th></tr>\n");
    for r in &t.per_run {
        let leaks: Vec<String> = r
            .leak_objects
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            r.run,
            esc(&r.host),
            esc(&r.kernel),
            esc(r.started_at.as_deref().unwrap_or("")),
            dur(r.duration_ns),
            r.ebusy_stories,
            r.lock_stories,
            esc(&leaks.join(", "))
        );
    }
    out.push_str("</table></details>\n");
}

pub fn render(r: &CrossRunReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>tracer: {} recordings</title><style>{STYLE}</style></head><body>",
        r.runs.len()
    );
    let _ = writeln!(
        out,
        "<h1>tracer cross-run report</h1><p>{} ({} unreadable) from {} on {}: {}</p>",
        count(r.runs.len(), "recording", "recordings"),
        r.unreadable.len(),
        count(r.hosts.len(), "machine", "machines"),
        count(r.kernels.len(), "kernel", "kernels"),
        esc(&r
            .kernels
            .iter()
            .map(|k| format!("{} ({} runs)", k.name, k.runs))
            .collect::<Vec<_>>()
            .join(", "))
    );
    for u in &r.unreadable {
        let _ = writeln!(
            out,
            "<p class=\"bad\">unreadable: {}: {}</p>",
            esc(&u.file),
            esc(&u.error)
        );
    }
    out.push_str("<table><tr><th>test</th><th>runs</th><th>runs with EBUSY</th><th>stories</th><th>unexplained</th><th>pinned p50 / p99 / max</th><th>runs with confirmed leaks</th><th>lock conflicts</th></tr>\n");
    for t in &r.tests {
        let p = &t.pinned;
        let pinned = if p.count == 0 {
            "-".to_string()
        } else {
            format!("{} / {} / {}", dur(p.p50_ns), dur(p.p99_ns), dur(p.max_ns))
        };
        let _ = writeln!(
            out,
            "<tr><td><a href=\"#{}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            anchor(&t.test),
            esc(&t.test),
            t.runs,
            t.runs_with_ebusy,
            t.ebusy_stories,
            t.unexplained_stories,
            esc(&pinned),
            t.runs_with_confirmed_leaks,
            t.lock_conflicts.stories
        );
    }
    out.push_str("</table>\n");
    for t in &r.tests {
        test_section(&mut out, t);
    }
    out.push_str("</body></html>\n");
    out
}
