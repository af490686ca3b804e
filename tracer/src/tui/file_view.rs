//! One file: what it is, what holds it now, and its history as far as the engine keeps it
//! (first reference, holders taken, the last holder's drop, the release and its chain).

use ratatui::{
    Frame,
    layout::Rect,
    text::{Line, Span},
    widgets::Paragraph,
};
use tracer_fs::{files::FileKey, files::FileState, verdict::Anchor};

use super::{
    app::App,
    log::file_name,
    model::Snapshot,
    style::{BAD, DIM, GOOD, HEAD, WARN, pane_block, wrap},
};

pub fn draw(f: &mut Frame, area: Rect, app: &App, snap: &Snapshot, key: FileKey) {
    let Some(v) = snap.file_view.as_ref().filter(|v| v.key == key) else {
        let p = Paragraph::new(Span::styled(" loading…", DIM))
            .block(pane_block(format!(" File {:#x} ", key.file), true));
        f.render_widget(p, area);
        return;
    };
    let r = &v.report;
    let block = pane_block(
        format!(" File {} on mount {} ", file_name(r), r.id.mnt_id),
        true,
    );
    let (state, style) = match r.state {
        FileState::Held => ("held", WARN),
        FileState::PendingRelease => ("no holder left; its final put is deferred and pending", BAD),
        FileState::Unattributed => ("alive with no holder we can name", BAD),
        FileState::Released => ("released", GOOD),
    };
    let now = Anchor::now(snap.now_ns);
    let width = area.width as usize;
    let mut lines: Vec<Line> = wrap(&format!(" {}", r.id), width, usize::MAX)
        .into_iter()
        .map(Line::from)
        .collect();
    lines.push(Line::from(vec![
        Span::styled(" state: ", HEAD),
        Span::styled(state, style),
    ]));
    if !r.holders.is_empty() {
        lines.push(Line::from(Span::styled(" what keeps it alive now:", HEAD)));
        for h in &r.holders {
            for (i, row) in wrap(&h.words(&now), width.saturating_sub(5), usize::MAX)
                .into_iter()
                .enumerate()
            {
                let lead = if i == 0 { "   - " } else { "     " };
                lines.push(Line::from(format!("{lead}{row}")));
            }
        }
    }
    if !v.locks.is_empty() {
        lines.push(Line::from(Span::styled(" locks it holds:", HEAD)));
        for l in &v.locks {
            for (i, row) in wrap(l, width.saturating_sub(5), usize::MAX)
                .into_iter()
                .enumerate()
            {
                let lead = if i == 0 { "   - " } else { "     " };
                lines.push(Line::from(Span::styled(format!("{lead}{row}"), BAD)));
            }
        }
    }
    lines.push(Line::from(Span::styled(" history:", HEAD)));
    for (t, what) in &v.history {
        let time = format!("   {}  ", snap.time(*t));
        let tw = time.chars().count();
        for (i, row) in wrap(what, width.saturating_sub(tw), usize::MAX)
            .into_iter()
            .enumerate()
        {
            let lead = if i == 0 { time.clone() } else { " ".repeat(tw) };
            lines.push(Line::from(vec![Span::styled(lead, DIM), Span::raw(row)]));
        }
    }
    let p = Paragraph::new(lines).block(block).scroll((app.scroll, 0));
    f.render_widget(p, area);
}
