//! The header: kernel, elapsed time, the xfstests test running, event rate, lost records
//! (red when any), tracked objects against their caps, and hook coverage.

use ratatui::{
    Frame,
    layout::Rect,
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::Paragraph,
};

use super::{
    app::App,
    model::Snapshot,
    style::{BAD, DIM, GOOD, HEAD, TITLE, WARN, clock, si, tail},
};

/// Four lines; five with allocation tracking.
pub fn height(snap: &Snapshot) -> u16 {
    if snap.alloc.is_some() { 5 } else { 4 }
}

/// Allocation tracking: outstanding against the map's cap (red when nearly full), bytes,
/// growth, and what it could not see: allocations not tracked (map full, red), runs of
/// the free programs skipped (frees missed, red), addresses reused before their free was
/// seen (yellow), then the leak reports made and due.
fn alloc_line(a: &crate::alloc::view::AllocView) -> Line<'static> {
    let cap = a.cap as u64;
    let full = cap > 0 && a.outstanding * 10 >= cap * 9;
    let mut l = vec![
        Span::styled(" allocs ", DIM),
        Span::styled(
            format!("{}/{}", si(a.outstanding), si(cap)),
            if full { BAD } else { Style::new() },
        ),
        Span::raw(format!(" {}B {:+.0}/s  ", si(a.bytes), a.growth_per_s)),
    ];
    l.extend(figure("untracked", a.untracked_map_full, true));
    l.extend(figure("missed frees", a.free_misses, true));
    l.push(Span::styled("reused ", DIM));
    l.push(Span::styled(
        si(a.reused),
        if a.reused > 0 { WARN } else { Style::new() },
    ));
    l.push(Span::raw("  "));
    l.push(Span::styled("reports ", DIM));
    l.push(Span::raw(si(a.reports)));
    if !a.pending.is_empty() {
        l.push(Span::styled(format!(" +{} due", a.pending.len()), WARN));
    }
    if a.sample_every > 1 {
        l.push(Span::styled(format!("  1 in {}", a.sample_every), DIM));
    }
    Line::from(l)
}

fn figure(label: &str, n: u64, bad_when_nonzero: bool) -> Vec<Span<'static>> {
    let style = if n > 0 && bad_when_nonzero {
        BAD
    } else {
        Style::new()
    };
    vec![
        Span::styled(format!("{label} "), DIM),
        Span::styled(si(n), style),
        Span::raw("  "),
    ]
}

pub fn draw(f: &mut Frame, area: Rect, app: &App, snap: &Snapshot) {
    let mut l1 = vec![
        Span::styled(" tracer ", TITLE),
        Span::raw(snap.meta.kernel.clone()),
        Span::styled("  up ", DIM),
        Span::raw(clock(snap.elapsed)),
        Span::styled("  test ", DIM),
    ];
    match &snap.test {
        Some(t) => l1.push(Span::styled(t.clone(), HEAD)),
        None => l1.push(Span::styled("none seen", DIM)),
    }
    if let Some(r) = &snap.meta.recording {
        l1.push(Span::styled("  rec ", DIM));
        l1.push(Span::styled(tail(r, 24), BAD));
    }
    if app.paused {
        l1.push(Span::raw("  "));
        l1.push(Span::styled(
            " PAUSED ",
            Style::new()
                .fg(Color::Black)
                .bg(Color::Yellow)
                .add_modifier(Modifier::BOLD),
        ));
    }
    if !snap.ready && snap.ended.is_none() {
        l1.push(Span::styled("  attaching…", WARN));
    }

    let mut l2 = vec![
        Span::styled(" events ", DIM),
        Span::styled(format!("{}/s", si(snap.rate)), HEAD),
        Span::styled(" total ", DIM),
        Span::raw(si(snap.events)),
        Span::raw("  "),
    ];
    l2.extend(figure("lost", snap.drops, true));
    l2.extend(figure("skipped runs", snap.skipped_runs, true));
    l2.extend(figure("undecodable", snap.bad_records, true));
    if snap.drops > 0 {
        l2.push(Span::styled("(try --ring-mib)", BAD));
    }

    let mut l3 = vec![Span::styled(" tracked ", DIM)];
    for t in &snap.tracked {
        let full = t.cap > 0 && t.n * 10 >= t.cap * 9;
        l3.push(Span::styled(format!("{} ", t.what), DIM));
        l3.push(Span::styled(
            format!("{}/{}", si(t.n as u64), si(t.cap as u64)),
            if full { BAD } else { Style::new() },
        ));
        l3.push(Span::raw("  "));
    }
    if snap.evicted > 0 {
        l3.extend(figure("evicted", snap.evicted, true));
    }

    let hooks = &snap.meta.hooks;
    let live = hooks.iter().filter(|h| h.live).count();
    let missing: Vec<&str> = hooks
        .iter()
        .filter(|h| !h.live)
        .map(|h| h.name.as_str())
        .collect();
    let mut l4 = vec![
        Span::styled(" hooks ", DIM),
        Span::styled(
            format!("{live}/{} live", hooks.len()),
            if missing.is_empty() { GOOD } else { WARN },
        ),
    ];
    if !missing.is_empty() {
        l4.push(Span::styled("  missing: ", DIM));
        l4.push(Span::styled(missing.join(", "), WARN));
        l4.push(Span::styled("  (? why)", DIM));
    }
    let mut lines = vec![Line::from(l1), Line::from(l2), Line::from(l3)];
    if let Some(a) = &snap.alloc {
        lines.push(alloc_line(a));
    }
    lines.push(Line::from(l4));
    let p = Paragraph::new(lines);
    f.render_widget(p, area);
}
