//! `?`: the keys, what the panes mean, and which hooks are live (and why the others are
//! not), over the current screen.

use ratatui::{
    Frame,
    layout::{Constraint, Layout, Rect},
    text::{Line, Span},
    widgets::{Block, Clear, Padding, Paragraph},
};

use super::{
    app::App,
    model::Snapshot,
    style::{BAD, DIM, GOOD, HEAD, KEY, TITLE, wrap},
};

const MOUNTS_HELP: &str = "  Files alive on each mount, by what holds them: fd = an fd table, ring = registered in an io_uring ring, req = an in-flight io_uring request, defer = no holder left but the final put is pending (task_work or delayed_fput), unatt = no holder we can name. Red: pinned after a failed umount, or detached by a lazy umount and still pinned. With --alloc-filter: ALLOC and BYTES = allocations made by the filtered code during the mount's lifetime and not freed yet (- for mounts older than the tracer); Enter shows them by call site; after an umount and the grace period a LEAK (or noleak) event holds the kmemleak-style report (Enter opens it).";

const ALLOC_HELP: &str = "  Header: allocs = outstanding allocations tracked / the kernel map's size (--alloc-max-entries), their bytes and growth per second; untracked = allocations not tracked because the map was full; missed frees = runs of the free programs the kernel skipped (objects may show that were freed); reused = addresses allocated again before their free was seen (kfree_rcu() batches); reports = leak reports made, and due after their grace period.";

const KEYS: &[(&str, &str)] = &[
    ("↑↓ j k", "move (PgUp/PgDn, g/G: first/last)"),
    (
        "Enter →",
        "open: mount → its files → a file's history; event → in full",
    ),
    ("Esc ← Bksp", "back"),
    ("Tab", "switch between the mounts and events panes"),
    ("/", "filter the list (Enter keeps it, Esc clears it)"),
    ("p", "pause the display (tracing goes on)"),
    (
        "s",
        "save a report now (tracer-report-<time>.txt, mode 0600)",
    ),
    ("q Ctrl-C", "quit: detach every probe and exit"),
];

pub fn draw(f: &mut Frame, area: Rect, app: &App, snap: &Snapshot) {
    let w = area.width.saturating_sub(4).min(100);
    let h = area.height.saturating_sub(2);
    let [_, mid, _] = Layout::horizontal([
        Constraint::Fill(1),
        Constraint::Length(w),
        Constraint::Fill(1),
    ])
    .areas(area);
    let [_, popup, _] = Layout::vertical([
        Constraint::Fill(1),
        Constraint::Length(h),
        Constraint::Fill(1),
    ])
    .areas(mid);
    let mut lines = vec![Line::from(Span::styled("Keys", HEAD))];
    for (k, what) in KEYS {
        lines.push(Line::from(vec![
            Span::styled(format!("  {k:<11}"), KEY),
            Span::raw(*what),
        ]));
    }
    lines.push(Line::from(""));
    lines.push(Line::from(Span::styled("Mounts pane", HEAD)));
    let width = w.saturating_sub(4) as usize;
    for row in wrap(MOUNTS_HELP, width, usize::MAX) {
        lines.push(Line::from(row));
    }
    lines.push(Line::from(""));
    lines.push(Line::from(Span::styled(
        format!(
            "Hooks ({} of {} live)",
            snap.meta.hooks.iter().filter(|h| h.live).count(),
            snap.meta.hooks.len()
        ),
        HEAD,
    )));
    for hk in &snap.meta.hooks {
        let (mark, style) = if hk.live {
            ("live   ", GOOD)
        } else {
            ("MISSING", BAD)
        };
        lines.push(Line::from(vec![
            Span::raw("  "),
            Span::styled(mark, style),
            Span::raw(format!(" {}", hk.name)),
            Span::styled(format!(" — {}", hk.why), DIM),
        ]));
        for row in wrap(&format!("          {}", hk.how), width, usize::MAX) {
            lines.push(Line::from(Span::styled(row, DIM)));
        }
    }
    if let Some(a) = &snap.alloc {
        lines.push(Line::from(""));
        lines.push(Line::from(Span::styled(
            format!("Allocation tracking ({})", a.filter.join(" ")),
            HEAD,
        )));
        for row in wrap(ALLOC_HELP, width, usize::MAX) {
            lines.push(Line::from(row));
        }
        for n in &a.notes {
            for row in wrap(&format!("  note: {n}"), width, usize::MAX) {
                lines.push(Line::from(Span::styled(row, BAD)));
            }
        }
    }
    let block = Block::bordered()
        .title(Span::styled(
            " tracer help  (j/k scroll, any other key closes) ",
            TITLE,
        ))
        .border_style(TITLE)
        .padding(Padding::horizontal(1));
    f.render_widget(Clear, popup);
    f.render_widget(
        Paragraph::new(lines).block(block).scroll((app.scroll, 0)),
        popup,
    );
}
