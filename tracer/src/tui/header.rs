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
    ui::{BAD, DIM, GOOD, HEAD, TITLE, WARN, clock, si},
};

pub fn height(_width: u16) -> u16 {
    4
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
    let p = Paragraph::new(vec![
        Line::from(l1),
        Line::from(l2),
        Line::from(l3),
        Line::from(l4),
    ]);
    f.render_widget(p, area);
}
