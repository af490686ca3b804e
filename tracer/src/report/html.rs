//! The HTML report: one self-contained page (inline CSS and SVG, no scripts, nothing
//! fetched), per test the timeline of each EBUSY story, the leak groups and the
//! deferred-work latencies.

use std::fmt::Write as _;

use tracer_fs::{
    Notice,
    leakcheck::{self, Class},
    text::{boot, count, dur},
    verdict::FileReport,
};

use super::{
    ALLOCATIONS_NOT_TRACKED, Report, Section, Story,
    alloc::{AllocInfo, SectionAlloc},
    notice_chain, notice_summary, notice_ts,
    text::{section_title, spread_words, status_words, story_outcome, story_title},
};

pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

const STYLE: &str = "
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{border-bottom:2px solid #ccd;padding-bottom:.2em;margin-top:2em}
h3{font-size:1.05em;margin:1.2em 0 .3em}
pre{background:#f6f6f8;padding:.6em;overflow-x:auto;font-size:12.5px;border-radius:4px}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccd;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#eef}.muted{color:#777}.bad{color:#b00}.ok{color:#070}
details{margin:.6em 0;border:1px solid #dde;border-radius:6px;padding:.4em .8em}
summary{cursor:pointer;font-weight:600}
svg text{font:11px system-ui,sans-serif}
.toc a{margin-right:1em}
";

/// Rows of a story's timeline: the call's attempts, then each culprit file.
fn timeline_svg(s: &Story) -> String {
    // Culprit files of the first verdict, and when each was released.
    let mut files: Vec<(&FileReport, Option<u64>, Option<&Notice>)> = Vec::new();
    for n in &s.notices {
        if let Notice::Verdict(v) = n {
            for f in v
                .culprits
                .iter()
                .chain(v.pinned_mounts.iter().flat_map(|p| p.files.iter()))
                .chain(v.device_openers.iter())
            {
                if !files.iter().any(|(g, _, _)| g.id == f.id) {
                    files.push((f, None, None));
                }
            }
        }
    }
    for n in &s.notices {
        if let Notice::CulpritReleased(c) = n
            && let Some(e) = files.iter_mut().find(|(f, _, _)| f.id.file == c.file.file)
        {
            e.1 = Some(c.ts_ns);
            e.2 = Some(n);
        }
    }
    let files: Vec<_> = files.into_iter().take(40).collect();
    let t0 = s.first_ebusy_ns;
    let last = s
        .notices
        .iter()
        .map(notice_ts)
        .chain(s.closed_ns)
        .max()
        .unwrap_or(t0);
    let span = last.saturating_sub(t0).max(1_000_000);
    let left = t0.saturating_sub(span / 10);
    let right = last.saturating_add(span / 20);
    let (w, label_w, row_h) = (1000.0f64, 260.0f64, 22.0f64);
    let plot = w - label_w - 10.0;
    let x = |t: u64| label_w + (t.clamp(left, right) - left) as f64 / (right - left) as f64 * plot;
    let rows = 1 + files.len();
    let h = 30.0 + rows as f64 * row_h;
    let mut o = String::new();
    let _ = write!(
        o,
        r#"<svg width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="timeline">"#
    );
    // Axis: ticks relative to the first EBUSY.
    let _ = write!(
        o,
        "<line x1=\"{label_w}\" y1=\"18\" x2=\"{}\" y2=\"18\" stroke=\"#999\"/>",
        w - 10.0
    );
    for i in 0..=4u64 {
        let t = t0.saturating_add(right.saturating_sub(t0) / 4 * i);
        let anchor = match i {
            0 => "start",
            4 => "end",
            _ => "middle",
        };
        let _ = write!(
            o,
            "<text x=\"{:.1}\" y=\"12\" text-anchor=\"{anchor}\" fill=\"#555\">+{}</text>",
            x(t),
            esc(&dur(t.saturating_sub(t0)))
        );
    }
    // Row 0: the attempts and the success.
    let y0 = 30.0 + row_h / 2.0;
    let _ = write!(
        o,
        "<text x=\"4\" y=\"{:.1}\">{}</text>",
        y0 + 4.0,
        esc(&short(&s.what, 40))
    );
    let end = s.closed_ns.unwrap_or(right);
    let _ = write!(
        o,
        "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"8\" fill=\"#f3c6c6\"><title>busy for {}</title></rect>",
        x(t0),
        y0 - 4.0,
        (x(end) - x(t0)).max(1.0),
        esc(&dur(end.saturating_sub(t0)))
    );
    for n in &s.notices {
        let (color, shape) = match n {
            Notice::Verdict(_) => ("#c00", "circle"),
            Notice::StoryClosed(_) => ("#06c", "rect"),
            _ => continue,
        };
        let cx = x(notice_ts(n));
        let tip = esc(&format!(
            "+{} {}",
            dur(notice_ts(n).saturating_sub(t0)),
            notice_summary(n)
        ));
        if shape == "circle" {
            let _ = write!(
                o,
                "<circle cx=\"{cx:.1}\" cy=\"{y0:.1}\" r=\"5\" fill=\"{color}\"><title>{tip}</title></circle>"
            );
        } else {
            let _ = write!(
                o,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"10\" height=\"10\" fill=\"{color}\"><title>{tip}</title></rect>",
                cx - 5.0,
                y0 - 5.0
            );
        }
    }
    // One row per culprit file: alive until released, with its deferral chain.
    for (i, (f, released, notice)) in files.iter().enumerate() {
        let y = 30.0 + (i + 1) as f64 * row_h + row_h / 2.0;
        let name = f.id.path.clone().unwrap_or_else(|| f.id.name.clone());
        let _ = write!(
            o,
            "<text x=\"4\" y=\"{:.1}\"><title>{}</title>{}</text>",
            y + 4.0,
            esc(&f.id.to_string()),
            esc(&short(&name, 40))
        );
        let from = f.first_ref_ns.max(left);
        let to = released.unwrap_or(right);
        let color = if released.is_some() { "#9c9" } else { "#e99" };
        let _ = write!(
            o,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"8\" fill=\"{color}\"><title>{}</title></rect>",
            x(from),
            y - 4.0,
            (x(to) - x(from)).max(1.0),
            esc(&match released {
                Some(r) => format!("released +{}", dur(r.saturating_sub(t0))),
                None => "not released while the story lasted".into(),
            })
        );
        if let Some(chain) = notice.and_then(|n| notice_chain(n)) {
            for l in chain {
                if l.ts_ns == 0 {
                    continue;
                }
                let cx = x(l.ts_ns);
                let _ = write!(
                    o,
                    "<path d=\"M{:.1} {:.1} l4 4 l-4 4 l-4 -4 z\" fill=\"#383\"><title>{}</title></path>",
                    cx,
                    y - 4.0,
                    esc(&format!("{} at {}", l, boot(l.ts_ns)))
                );
            }
        }
    }
    o.push_str("</svg>");
    o
}

fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let tail: String = s
            .chars()
            .rev()
            .take(n - 1)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        format!("…{tail}")
    }
}

fn story(s: &Story, o: &mut String) {
    let _ = write!(
        o,
        "<details open><summary>{}</summary><p>{}</p>",
        esc(&story_title(s)),
        esc(&story_outcome(s))
    );
    o.push_str(&timeline_svg(s));
    o.push_str("<table><tr><th>after the first EBUSY</th><th>what</th></tr>");
    for n in &s.notices {
        let _ = write!(
            o,
            "<tr><td>+{}</td><td>{}</td></tr>",
            esc(&dur(notice_ts(n).saturating_sub(s.first_ebusy_ns))),
            esc(&notice_summary(n))
        );
    }
    o.push_str("</table>");
    for n in &s.notices {
        let _ = write!(o, "<pre>{}</pre>", esc(&n.to_string()));
    }
    o.push_str("</details>");
}

/// A section's allocations: a summary line, then each leak report (its groups, largest
/// first, with their backtraces, and the kmemleak-style text).
fn allocations(info: &AllocInfo, a: &SectionAlloc, o: &mut String) {
    let c = &a.counters;
    let at_end = a
        .at_end
        .as_ref()
        .map(|l| {
            format!(
                "{} outstanding ({} bytes) at the end of the test",
                l.outstanding, l.bytes
            )
        })
        .unwrap_or_else(|| "no snapshot at the end of the test".into());
    let _ = write!(
        o,
        "<p>allocations ({}): {}, peak {} ({} bytes); during the test {} tracked, {} freed; not tracked: {} (map full), {} (sampled out); frees missed: {} + {} (address reused)</p>",
        esc(&info.terms().join(" ")),
        esc(&at_end),
        a.peak_outstanding,
        a.peak_bytes,
        c.tracked,
        c.freed,
        c.map_full,
        c.sampled_out,
        c.free_misses,
        c.reused
    );
    if a.leaks.is_empty() {
        o.push_str(
            "<p class=\"ok\">leak reports: none (no tracked mount was unmounted in this test)</p>",
        );
    }
    for k in &a.leaks {
        let v = info.leak_json(k);
        let class = if k.objects == 0 { "ok" } else { "bad" };
        let class =
            if k.classified() && k.count(Class::Leak, false) + k.count(Class::Leak, true) == 0 {
                "ok"
            } else {
                class
            };
        let verdicts = if k.classified() {
            let parts: Vec<_> = k.parts.iter().map(|p| p.part()).collect();
            let now = leakcheck::counts_text(&parts, false);
            let before = leakcheck::counts_text(&parts, true);
            let mut s = format!(" (cycle {} of {})", k.cycle, k.kind);
            if !now.is_empty() {
                s.push_str(": ");
                s.push_str(&now);
            }
            if !before.is_empty() {
                s.push_str("; from earlier cycles: ");
                s.push_str(&before);
            }
            s
        } else {
            String::new()
        };
        let _ = write!(
            o,
            "<details open><summary class=\"{class}\">{}: {} objects, {} bytes after umount{}{}</summary>",
            esc(&k.window.target),
            k.objects,
            k.bytes,
            if k.uncertain { " (uncertain)" } else { "" },
            esc(&verdicts)
        );
        for r in &k.reasons {
            let _ = write!(o, "<p class=\"muted\">note: {}</p>", esc(r));
        }
        // Classified: the groups of every verdict, with the rule that decided them.
        let classified: Vec<serde_json::Value> = v["parts"]
            .as_array()
            .map(|parts| {
                parts
                    .iter()
                    .flat_map(|p| {
                        let verdict = format!(
                            "{}{}",
                            p["class"].as_str().unwrap_or(""),
                            if p["earlier"] == true {
                                " (earlier cycle)"
                            } else {
                                ""
                            }
                        );
                        p["groups"]
                            .as_array()
                            .cloned()
                            .unwrap_or_default()
                            .into_iter()
                            .map(move |mut g| {
                                g["verdict"] = serde_json::json!(verdict);
                                g
                            })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let groups = if classified.is_empty() {
            v["groups"].as_array().cloned().unwrap_or_default()
        } else {
            classified
        };
        if !groups.is_empty() {
            o.push_str(
                "<table><tr><th>objects</th><th>bytes</th><th>cache</th><th>verdict</th><th>backtrace</th></tr>",
            );
            for g in &groups {
                let frames: Vec<&str> = g["backtrace"]
                    .as_array()
                    .map(|b| b.iter().filter_map(|f| f.as_str()).collect())
                    .unwrap_or_default();
                let bt = if frames.is_empty() {
                    g["function"].as_str().unwrap_or("").to_string()
                } else {
                    frames.join("\n")
                };
                let verdict = match (g["verdict"].as_str(), g["why"].as_str()) {
                    (Some(c), Some(w)) => format!("{c}: {w}"),
                    _ => String::new(),
                };
                let _ = write!(
                    o,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><pre>{}</pre></td></tr>",
                    g["count"],
                    g["bytes"],
                    esc(g["cache"].as_str().unwrap_or("")),
                    esc(&verdict),
                    esc(&bt)
                );
            }
            o.push_str("</table>");
        }
        let _ = write!(o, "<pre>{}</pre></details>", esc(&info.leak_text(k)));
    }
}

fn section(r: &Report, s: &Section, idx: usize, o: &mut String) {
    let _ = write!(
        o,
        "<h2 id=\"s{idx}\">{}</h2><p class=\"muted\">{}{} long, {} events, {} mount-table calls ({} EBUSY)</p>",
        esc(&section_title(s)),
        r.wall(s.start_ns)
            .map(|w| format!("started {}, ", esc(&w)))
            .unwrap_or_default(),
        esc(&dur(s.end_ns.saturating_sub(s.start_ns))),
        s.events,
        s.mount_calls,
        s.ebusy_calls
    );
    let _ = write!(o, "<h3>EBUSY stories ({})</h3>", s.stories.len());
    if s.stories.is_empty() {
        o.push_str("<p class=\"ok\">none</p>");
    }
    for st in &s.stories {
        story(st, o);
    }
    o.push_str("<h3>Leak groups</h3>");
    match (&r.alloc, &s.alloc) {
        (Some(info), Some(a)) => allocations(info, a, o),
        _ => {
            let _ = write!(o, "<p class=\"muted\">{}</p>", esc(ALLOCATIONS_NOT_TRACKED));
        }
    }
    if s.pinned_at_end.is_empty() {
        o.push_str("<p class=\"ok\">detached mounts still pinned at the end of the test: none</p>");
    } else {
        o.push_str("<p class=\"bad\">detached mounts still pinned at the end of the test (they live on, invisible, until their files go):</p>");
        for a in &s.pinned_at_end {
            let title = match &a.mount {
                Some(m) => m.to_string(),
                None => format!("mount {}", a.mount_id),
            };
            let anchor = tracer_fs::verdict::Anchor::event(s.end_ns, "end of the test");
            let mut files = String::new();
            for f in a.distinct_files() {
                f.render(&anchor, "", &mut files);
            }
            let _ = write!(
                o,
                "<details open><summary>{}: {}</summary><pre>{}</pre></details>",
                esc(&title),
                esc(&count(a.files, "file", "files")),
                esc(&files)
            );
        }
    }
    for n in &s.detached {
        let _ = write!(o, "<pre>{}</pre>", esc(&n.to_string()));
    }
    o.push_str("<h3>Deferred work</h3>");
    if s.work.is_empty() {
        o.push_str("<p class=\"muted\">none seen</p>");
    } else {
        o.push_str("<table><tr><th>function</th><th>armed</th><th>queued</th><th>started</th><th>ended</th><th>waiting at end</th><th>queue → start</th><th>run time</th></tr>");
        for w in &s.work {
            let _ = write!(
                o,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&w.name),
                w.armed,
                w.queued,
                w.started,
                w.ended,
                w.waiting_at_end,
                esc(&spread_words(&w.latency)),
                esc(&spread_words(&w.run))
            );
        }
        o.push_str("</table>");
    }
}

pub fn render(r: &Report) -> String {
    let h = &r.header;
    let mut o = String::new();
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>tracer report: {}</title><style>{STYLE}</style></head><body>",
        esc(&r.source)
    );
    let _ = write!(o, "<h1>tracer report</h1><table>");
    let mut row = |k: &str, v: String| {
        let _ = write!(o, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(&v));
    };
    row("recording", r.source.clone());
    row(
        "recorded",
        format!(
            "{} on Linux {} (tracer {}, format {}, wire {})",
            r.wall(h.started_boot_ns).unwrap_or_else(|| "?".into()),
            h.kernel_release,
            h.tracer_version,
            h.format_version,
            h.wire_version
        ),
    );
    if let Some(c) = &r.command {
        row(
            "command",
            format!(
                "{} ({})",
                super::command_line(&c.argv),
                status_words(c.status, c.signal)
            ),
        );
    }
    row(
        "end",
        match &r.end {
            Some(e) => format!("clean (stopped by {})", e.stopped_by),
            None => "cut short: no end mark (the tracer crashed or was killed)".into(),
        },
    );
    row("events", r.events_line());
    let missing = r.hooks_not_attached();
    row(
        "hooks not attached",
        if missing.is_empty() {
            "none".into()
        } else {
            missing.join(", ")
        },
    );
    row(
        "problems reading it",
        if r.problems.is_empty() {
            "none".into()
        } else {
            r.problems
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        },
    );
    row(
        "evidence limits",
        if r.evidence_limits.is_empty() {
            "none known".into()
        } else {
            r.evidence_limits.join("\n")
        },
    );
    o.push_str("</table>");
    if r.sections.len() > 1 {
        o.push_str("<p class=\"toc\">");
        for (i, s) in r.sections.iter().enumerate() {
            let mark = if s.stories.is_empty() && s.pinned_at_end.is_empty() {
                ""
            } else {
                " ⚠"
            };
            let _ = write!(o, "<a href=\"#s{i}\">{}{mark}</a>", esc(&section_title(s)));
        }
        o.push_str("</p>");
    }
    if r.sections.is_empty() {
        o.push_str("<p>no events were recorded</p>");
    }
    for (i, s) in r.sections.iter().enumerate() {
        section(r, s, i, &mut o);
    }
    o.push_str("</body></html>\n");
    o
}
