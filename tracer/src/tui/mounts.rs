//! The mounts pane: one row per mount with the files alive on it by holder kind; mounts
//! pinned after a failed umount (or detached but pinned) first, in red.

use ratatui::{
    Frame,
    layout::{Constraint, Rect},
    style::Style,
    text::{Line, Span},
    widgets::{Cell, Padding, Paragraph, Row, Table, TableState},
};
use tracer_fs::summary::MountSummary;

use super::{
    app::{App, Pane, Target, mount_rows},
    model::{Snapshot, pinned},
    style::{BAD, DIM, GOOD, HEAD, SELECTED, WARN, head, pane_block, si, tail},
};

/// Widths of the columns after the mount point (FS to unatt, then STATE).
const FIXED: [u16; 8] = [7, 5, 3, 4, 3, 5, 5, 9];
/// Widths of the allocation columns (ALLOC, BYTES), before STATE, when tracking is on.
const ALLOC: [u16; 2] = [5, 5];

/// (text, style) of the state column.
pub fn state(m: &MountSummary) -> (String, Style) {
    if m.detached && m.alive_files > 0 {
        ("DETACHED".into(), BAD)
    } else if m.umount_ebusy > 0 && m.alive_files > 0 {
        (format!("EBUSY ×{}", m.umount_ebusy), BAD)
    } else if m.umount_ebusy > 0 {
        ("was EBUSY".into(), GOOD)
    } else {
        (String::new(), Style::new())
    }
}

fn num(n: usize) -> Cell<'static> {
    if n == 0 {
        Cell::from(Span::styled("0", DIM))
    } else {
        Cell::from(n.to_string())
    }
}

/// Lines the pane wants: its rule, the column names, one line per mount.
pub fn height(app: &App, snap: &Snapshot) -> u16 {
    2 + mount_rows(snap, &app.mount_filter).len().max(1) as u16
}

pub fn draw(f: &mut Frame, area: Rect, app: &App, snap: &Snapshot) {
    let focused = app.pane == Pane::Mounts;
    let rows = mount_rows(snap, &app.mount_filter);
    let n_pinned = snap.mounts.iter().filter(|m| pinned(m)).count();
    let mut title = vec![Span::raw(format!(" Mounts ({}) ", snap.mounts.len()))];
    if n_pinned > 0 {
        title.push(Span::styled(format!("{n_pinned} pinned "), BAD));
    }
    if !app.mount_filter.is_empty() {
        title.push(Span::styled(
            format!("filter “{}” ", app.mount_filter),
            WARN,
        ));
    }
    let block = pane_block(Line::from(title), focused);
    if rows.is_empty() {
        let text = if snap.mounts.is_empty() {
            if snap.ready {
                " no mounts known"
            } else {
                " waiting for the mount table…"
            }
        } else {
            " no mount matches the filter"
        };
        f.render_widget(Paragraph::new(Span::styled(text, DIM)).block(block), area);
        return;
    }
    let block = block.padding(Padding::left(1));
    let id_w: u16 = 4;
    let mut fixed = FIXED.to_vec();
    let alloc_on = snap.alloc.is_some();
    if alloc_on {
        fixed.splice(7..7, ALLOC);
    }
    // Column gaps and the left padding.
    let spacing = fixed.len() as u16 + 2;
    let free = area
        .width
        .saturating_sub(id_w + fixed.iter().sum::<u16>() + spacing);
    // Wide enough: the source gets a column too (a third of the room, at most 30).
    let src_w = if free >= 50 { (free / 3).min(30) } else { 0 };
    let mp_w = free.saturating_sub(src_w + u16::from(src_w > 0)).max(8);
    let mut names = vec!["ID", "MOUNT POINT"];
    if src_w > 0 {
        names.push("SOURCE");
    }
    names.extend(["FS", "FILES", "fd", "ring", "req", "defer", "unatt"]);
    if alloc_on {
        names.extend(["ALLOC", "BYTES"]);
    }
    names.push("STATE");
    let header = Row::new(names.into_iter().map(|h| Cell::from(h).style(HEAD)));
    let body: Vec<Row> = rows
        .iter()
        .map(|m| {
            let (mp, fs, src) = match &m.mount {
                Some(d) => (
                    d.mount_point.as_str(),
                    d.fs_type.as_str(),
                    d.source.as_str(),
                ),
                None => ("(not in the mount table)", "?", "?"),
            };
            let (st, st_style) = state(m);
            let mut cells = vec![
                Cell::from(m.mount_id.to_string()),
                Cell::from(tail(mp, mp_w as usize)),
            ];
            if src_w > 0 {
                cells.push(Cell::from(tail(src, src_w as usize)));
            }
            cells.extend([
                Cell::from(head(fs, fixed[0] as usize)),
                num(m.alive_files),
                num(m.fd_tables),
                num(m.uring_rings),
                num(m.in_flight),
                num(m.deferred_pending),
                num(m.unattributed),
            ]);
            if alloc_on {
                // Mounts older than the tracer have no lifetime to charge to.
                match snap.alloc_of(m.mount_id) {
                    Some(a) => cells.extend([Cell::from(si(a.count)), Cell::from(si(a.bytes))]),
                    None => cells.extend([
                        Cell::from(Span::styled("-", DIM)),
                        Cell::from(Span::styled("-", DIM)),
                    ]),
                }
            }
            cells.push(Cell::from(Span::styled(st, st_style)));
            let row = Row::new(cells);
            if pinned(m) { row.style(BAD) } else { row }
        })
        .collect();
    let mut widths = vec![Constraint::Length(id_w), Constraint::Length(mp_w)];
    if src_w > 0 {
        widths.push(Constraint::Length(src_w));
    }
    widths.extend(fixed.iter().map(|w| Constraint::Length(*w)));
    let inner = block.inner(area);
    let table = Table::new(body, widths)
        .header(header)
        .block(block)
        .column_spacing(1)
        .row_highlight_style(if focused { SELECTED } else { Style::new() });
    let mut state = TableState::default().with_selected(Some(app.mount_index(&rows)));
    f.render_stateful_widget(table, area, &mut state);
    // Below the column names, from the row the table scrolled to.
    for (i, m) in rows.iter().enumerate().skip(state.offset()) {
        let y = inner.y + 1 + (i - state.offset()) as u16;
        if y >= inner.bottom() {
            break;
        }
        app.hit(
            Rect::new(area.x, y, area.width, 1),
            Target::MountRow(m.mount_id),
        );
    }
}
