//! The screen: header on top, the current view in the middle, keys (or what just
//! happened) at the bottom, help over it all. Each pane draws itself in its own module.

use ratatui::{
    Frame,
    layout::{Constraint, Layout, Rect},
    text::{Line, Span},
    widgets::Paragraph,
};

use super::{
    app::{App, Pane, Target, View},
    events, file_view, header, help,
    model::Snapshot,
    mount_view, mounts,
    style::{BAD, DIM, GOOD, KEY, hints},
    work,
};

fn footer(f: &mut Frame, area: Rect, app: &App, snap: &Snapshot) {
    let line = if app.editing {
        let filter = match (app.view(), app.pane) {
            (View::Mount(_), _) => &app.file_filter,
            (View::Main, Pane::Events) => &app.entry_filter,
            _ => &app.mount_filter,
        };
        Line::from(vec![
            Span::styled(" filter: ", KEY),
            Span::raw(filter.clone()),
            Span::styled("█", DIM),
            Span::styled("  Enter keep  Esc clear", DIM),
        ])
    } else if let Some(end) = &snap.ended {
        Line::from(Span::styled(format!(" tracing stopped: {end}"), BAD))
    } else if let Some(s) = app.status(snap) {
        let mut v = vec![Span::styled(format!(" {s} "), GOOD)];
        v.extend(hints(&[("?", "help"), ("q", "quit")]));
        Line::from(v)
    } else {
        let pairs: &[(&str, &str)] = match app.view() {
            View::Main => &[
                ("↑↓", "move"),
                ("Enter", "open"),
                ("Tab", "pane"),
                ("/", "filter"),
                ("p", "pause"),
                ("s", "save"),
                ("?", "help"),
                ("q", "quit"),
            ],
            View::Mount(_) => &[
                ("↑↓", "move"),
                ("Enter", "file"),
                ("Esc", "back"),
                ("/", "filter"),
                ("p", "pause"),
                ("s", "save"),
                ("q", "quit"),
            ],
            View::Entry(serial)
                if snap
                    .log
                    .iter()
                    .any(|e| e.serial == serial && e.mount_id.is_some()) =>
            {
                &[
                    ("↑↓", "scroll"),
                    ("Enter", "its mount"),
                    ("Esc", "back"),
                    ("s", "save"),
                    ("q", "quit"),
                ]
            }
            View::Entry(_) => &[
                ("↑↓", "scroll"),
                ("Esc", "back"),
                ("s", "save"),
                ("q", "quit"),
            ],
            View::File(..) => &[
                ("↑↓", "scroll"),
                ("Esc", "back"),
                ("p", "pause"),
                ("s", "save"),
                ("q", "quit"),
            ],
        };
        Line::from(hints(pairs))
    };
    f.render_widget(Paragraph::new(line), area);
}

/// Draws everything.
pub fn draw(f: &mut Frame, app: &App, snap: &Snapshot) {
    app.hits.borrow_mut().clear();
    let area = f.area();
    let header_h = header::height(snap);
    let [top, body, bottom] = Layout::vertical([
        Constraint::Length(header_h),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(area);
    header::draw(f, top, app, snap);
    match app.view() {
        View::Main => {
            // The mounts pane takes what its rows need, up to 35%; events get the rest.
            let work_h = work::height(snap).min(body.height / 3);
            let mounts_h = mounts::height(app, snap).min(body.height * 45 / 100).max(3);
            let [m, w, e] = Layout::vertical([
                Constraint::Length(mounts_h),
                Constraint::Length(work_h),
                Constraint::Min(3),
            ])
            .areas(body);
            app.hit(m, Target::Pane(Pane::Mounts));
            app.hit(e, Target::Pane(Pane::Events));
            mounts::draw(f, m, app, snap);
            work::draw(f, w, snap);
            events::draw(f, e, app, snap);
        }
        View::Mount(id) => mount_view::draw(f, body, app, snap, id),
        View::File(_, key) => file_view::draw(f, body, app, snap, key),
        View::Entry(serial) => events::draw_entry(f, body, app, snap, serial),
    }
    footer(f, bottom, app, snap);
    if app.help {
        help::draw(f, area, app, snap);
    }
}
