//! The deferred-work pane: per followed work function, instances pending and running now,
//! how long the oldest has waited, and queue→start latency and run time (last and worst).

use ratatui::{
    Frame,
    layout::{Constraint, Rect},
    text::Span,
    widgets::{Cell, Padding, Paragraph, Row, Table},
};
use tracer_fs::text::dur;

use super::{
    model::Snapshot,
    style::{BAD, DIM, HEAD, WARN, head, pane_block},
};

const FIXED: [u16; 8] = [4, 3, 7, 7, 7, 7, 7, 5];

/// Lines the pane wants: its rule, the column names, one row per function.
pub fn height(snap: &Snapshot) -> u16 {
    2 + snap.work.len().max(1) as u16
}

fn time(ns: u64, count: u64) -> Cell<'static> {
    if count == 0 {
        Cell::from(Span::styled("-", DIM))
    } else {
        Cell::from(dur(ns))
    }
}

pub fn draw(f: &mut Frame, area: Rect, snap: &Snapshot) {
    let block = pane_block(
        " Deferred work  (wait: queued→started, run: run time; last and max) ",
        false,
    );
    if snap.work.is_empty() {
        let text = " no followed work function has run yet";
        f.render_widget(Paragraph::new(Span::styled(text, DIM)).block(block), area);
        return;
    }
    let block = block.padding(Padding::left(1));
    let name_w = area
        .width
        .saturating_sub(FIXED.iter().sum::<u16>() + FIXED.len() as u16 + 1)
        .max(8);
    let header = Row::new(
        [
            "WORK FUNCTION",
            "pend",
            "run",
            "oldest",
            "wait",
            "max",
            "run",
            "max",
            "done",
        ]
        .map(|h| Cell::from(h).style(HEAD)),
    );
    let rows: Vec<Row> = snap
        .work
        .iter()
        .map(|w| {
            let c = &w.counters;
            let oldest = match w.oldest_waiting_since_ns {
                Some(t) => {
                    let age = snap.now_ns.saturating_sub(t);
                    // A wait past a second is worth a look (delayed_fput waits ~1 jiffy).
                    let style = if age >= 1_000_000_000 { BAD } else { WARN };
                    Cell::from(Span::styled(dur(age), style))
                }
                None => Cell::from(Span::styled("-", DIM)),
            };
            let n = |v: usize| {
                if v == 0 {
                    Cell::from(Span::styled("0", DIM))
                } else {
                    Cell::from(Span::styled(v.to_string(), WARN))
                }
            };
            Row::new(vec![
                Cell::from(head(&w.name, name_w as usize)),
                n(w.waiting_now),
                n(w.running_now),
                oldest,
                time(c.latency.last_ns, c.latency.count),
                time(c.latency.worst_ns, c.latency.count),
                time(c.run.last_ns, c.run.count),
                time(c.run.worst_ns, c.run.count),
                Cell::from(c.ended.to_string()),
            ])
        })
        .collect();
    let mut widths = vec![Constraint::Length(name_w)];
    widths.extend(FIXED.iter().map(|w| Constraint::Length(*w)));
    let table = Table::new(rows, widths)
        .header(header)
        .block(block)
        .column_spacing(1);
    f.render_widget(table, area);
}
