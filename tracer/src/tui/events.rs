//! The events pane: EBUSY verdicts as they happen and their follow-ups (culprits freed,
//! the umount that finally worked), mounts and umounts, xfstests tests, warnings; newest
//! at the bottom, followed unless the person scrolled up. And one entry in full.

use ratatui::{
    Frame,
    layout::Rect,
    style::{Color, Style},
    text::{Line, Span},
    widgets::Paragraph,
};

use super::{
    app::{App, Pane, Target, entry_rows},
    log::{LogEntry, LogKind},
    model::Snapshot,
    style::{BAD, DIM, GOOD, HEAD, SELECTED, WARN, pane_block, wrap},
};

pub fn kind_style(k: LogKind) -> Style {
    match k {
        LogKind::Verdict => BAD,
        LogKind::Released | LogKind::Unpinned => GOOD,
        LogKind::Closed => GOOD.add_modifier(ratatui::style::Modifier::BOLD),
        LogKind::Detached => Style::new().fg(Color::Magenta),
        LogKind::Umount | LogKind::Mount => DIM,
        LogKind::Failed => WARN,
        LogKind::Test => Style::new().fg(Color::Blue),
        LogKind::Warning | LogKind::Leak => BAD,
        LogKind::NoLeak => GOOD,
        LogKind::Lock => BAD,
        LogKind::LockHeld => WARN,
        LogKind::Unlocked | LogKind::SpaceFreed => GOOD,
        LogKind::SpaceHeld => WARN,
    }
}

/// An entry's lines in the pane, `width` columns wide: the time and kind, then the
/// headline; the other lines under the headline, each wrapped to at most two rows.
fn entry_lines(snap: &Snapshot, e: &LogEntry, width: usize) -> Vec<Line<'static>> {
    let mut out = Vec::new();
    let text_style = match e.kind {
        LogKind::Umount | LogKind::Mount => DIM,
        LogKind::Verdict | LogKind::Leak | LogKind::Lock => HEAD,
        _ => Style::new(),
    };
    let time = format!(" {} ", snap.time(e.ts_ns));
    let prefix_w = time.chars().count() + e.kind.tag().chars().count() + 1;
    let pad = " ".repeat(prefix_w);
    let text_w = width.saturating_sub(prefix_w).max(10);
    for (i, l) in e.lines.iter().enumerate() {
        let rows = wrap(l.trim_start(), text_w, 2);
        for (j, row) in rows.into_iter().enumerate() {
            let mut spans = if i == 0 && j == 0 {
                vec![
                    Span::styled(time.clone(), DIM),
                    Span::styled(e.kind.tag(), kind_style(e.kind)),
                    Span::raw(" "),
                ]
            } else {
                vec![Span::raw(pad.clone())]
            };
            spans.push(Span::styled(
                row,
                if i == 0 { text_style } else { Style::new() },
            ));
            out.push(Line::from(spans));
        }
    }
    out
}

pub fn draw(f: &mut Frame, area: Rect, app: &App, snap: &Snapshot) {
    let focused = app.pane == Pane::Events;
    let rows = entry_rows(snap, &app.entry_filter);
    let mut title = vec![Span::raw(format!(" Events ({}) ", rows.len()))];
    if app.entry_sel.is_some() {
        title.push(Span::styled("scrolled: End to follow ", WARN));
    }
    if !app.entry_filter.is_empty() {
        title.push(Span::styled(
            format!("filter “{}” ", app.entry_filter),
            WARN,
        ));
    }
    let block = pane_block(Line::from(title), focused);
    let inner_h = area.height.saturating_sub(1) as usize;
    if rows.is_empty() {
        let text = if !app.entry_filter.is_empty() {
            " no event matches the filter"
        } else {
            " nothing yet: umounts, EBUSY verdicts and what follows them appear here"
        };
        f.render_widget(Paragraph::new(Span::styled(text, DIM)).block(block), area);
        return;
    }
    let sel = app.entry_index(&rows);
    // Only the entries that can be on screen: the selected one and those around it.
    let anchor = sel.unwrap_or(rows.len() - 1);
    let from = anchor.saturating_sub(inner_h);
    let to = (anchor + inner_h + 1).min(rows.len());
    let mut lines: Vec<Line> = Vec::new();
    let mut starts = Vec::new();
    let mut sel_range = (0, 0);
    for (i, e) in rows[from..to].iter().enumerate() {
        let start = lines.len();
        starts.push(start);
        let mut l = entry_lines(snap, e, area.width as usize);
        if focused && Some(from + i) == sel {
            for line in &mut l {
                *line = line.clone().patch_style(SELECTED);
            }
        }
        lines.extend(l);
        if from + i == anchor {
            sel_range = (start, lines.len());
        }
    }
    // The selected (or newest) entry at the bottom, and only whole entries above it: the
    // first shown starts at an entry (unless the selected one alone is taller).
    let (s, e) = sel_range;
    let lowest = e.saturating_sub(inner_h);
    let skip = starts
        .iter()
        .copied()
        .find(|&st| st >= lowest)
        .unwrap_or(s)
        .min(s);
    for (i, &start) in starts.iter().enumerate() {
        let end = starts.get(i + 1).copied().unwrap_or(lines.len());
        let (first, last) = (start.max(skip), end.min(skip + inner_h));
        if first < last {
            app.hit(
                Rect::new(
                    area.x,
                    area.y + 1 + (first - skip) as u16,
                    area.width,
                    (last - first) as u16,
                ),
                Target::EntryRow(rows[from + i].serial),
            );
        }
    }
    let p = Paragraph::new(lines).block(block).scroll((skip as u16, 0));
    f.render_widget(p, area);
}

pub fn draw_entry(f: &mut Frame, area: Rect, app: &App, snap: &Snapshot, serial: u64) {
    let Some(e) = snap.log.iter().find(|e| e.serial == serial) else {
        let block = pane_block(" Event ", true);
        let p = Paragraph::new(Span::styled(
            " this event is no longer kept (the log keeps the newest 1000)",
            DIM,
        ))
        .block(block);
        f.render_widget(p, area);
        return;
    };
    let mut title = vec![
        Span::raw(" "),
        Span::styled(e.kind.tag().trim_end(), kind_style(e.kind)),
        Span::raw(format!(" at {} ", snap.time(e.ts_ns))),
        Span::styled(
            format!("({} since boot) ", tracer_fs::text::boot(e.ts_ns)),
            DIM,
        ),
    ];
    if let Some(m) = e.mount_id {
        title.push(Span::styled(format!("Enter: mount {m} "), DIM));
    }
    let block = pane_block(Line::from(title), true);
    let width = area.width.saturating_sub(1) as usize;
    let mut lines: Vec<Line> = Vec::new();
    for l in e.full.lines() {
        let style = if l.starts_with("EBUSY")
            || (e.kind == LogKind::Leak && l.starts_with("leak report"))
        {
            BAD
        } else if l.starts_with(' ') {
            Style::new()
        } else {
            HEAD
        };
        for row in wrap(l, width, usize::MAX) {
            lines.push(Line::from(Span::styled(format!(" {row}"), style)));
        }
    }
    let p = Paragraph::new(lines).block(block).scroll((app.scroll, 0));
    f.render_widget(p, area);
}
