//! One mount: its files alive grouped by what holds them (fd tables, io_uring rings,
//! in-flight requests, deferred puts pending, unattributed), its umount attempts and child
//! mounts. Enter on a file opens its history.

use ratatui::{
    Frame,
    layout::{Constraint, Layout, Rect},
    text::{Line, Span},
    widgets::Paragraph,
};
use tracer_fs::{
    text::{count, errno_name},
    verdict::Anchor,
};

use super::{
    app::{App, Target, file_rows},
    log::file_name,
    model::{Snapshot, pinned},
    style::{BAD, DIM, GOOD, HEAD, SELECTED, WARN, head, pane_block, si, tail},
};

/// `+12/s`, `-3/s`, `+0.5/s`.
pub fn per_s(r: f64) -> String {
    if r != 0.0 && r.abs() < 10.0 && r.fract() != 0.0 {
        format!("{r:+.1}/s")
    } else {
        format!("{r:+.0}/s")
    }
}

/// The mount's outstanding allocations by call site (with `--alloc-filter`): a title, the
/// column names, one line per call site, largest first.
fn alloc_lines(snap: &Snapshot, id: i32, width: usize) -> Vec<Line<'static>> {
    if snap.alloc.is_none() {
        return vec![];
    }
    let Some(a) = snap.alloc_of(id) else {
        return vec![Line::from(Span::styled(
            " allocations: none charged (mounted before the tracer attached, or gone)",
            DIM,
        ))];
    };
    let mut out = vec![Line::from(vec![
        Span::styled(" allocations outstanding: ", HEAD),
        Span::raw(format!(
            "{}, {} bytes, {}",
            count(a.count as usize, "object", "objects"),
            si(a.bytes),
            per_s(a.growth_per_s)
        )),
        Span::styled(format!("  mounted {}", snap.time(a.mounted_ns)), DIM),
    ])];
    if a.sites.is_empty() {
        return out;
    }
    out.push(Line::from(Span::styled(
        "   COUNT  BYTES   GROWTH  CALL SITE (cache)",
        DIM,
    )));
    let room = width.saturating_sub(27);
    for s in &a.sites {
        let cache = if s.cache.is_empty() {
            String::new()
        } else {
            format!(" ({})", s.cache)
        };
        let growth = per_s(s.growth_per_s);
        out.push(Line::from(vec![
            Span::raw(format!("   {:>5}  {:>5} ", si(s.count), si(s.bytes))),
            Span::styled(
                format!("{growth:>8}"),
                if s.growth_per_s > 0.0 { WARN } else { DIM },
            ),
            Span::raw("  "),
            Span::raw(head(&format!("{}{cache}", s.function), room)),
        ]));
    }
    out
}

pub fn draw(f: &mut Frame, area: Rect, app: &App, snap: &Snapshot, id: i32) {
    let Some(v) = snap.mount_view.as_ref().filter(|v| v.mount_id == id) else {
        let p = Paragraph::new(Span::styled(" loading…", DIM))
            .block(pane_block(format!(" Mount {id} "), true));
        f.render_widget(p, area);
        return;
    };
    let desc = v
        .summary
        .as_ref()
        .and_then(|s| s.mount.clone())
        .or_else(|| v.gone.clone());
    let mut title = vec![Span::raw(" ")];
    match &desc {
        Some(d) => title.push(Span::raw(format!(
            "Mount {}: {} {} on {} ",
            d.id, d.fs_type, d.source, d.mount_point
        ))),
        None => title.push(Span::raw(format!("Mount {id} (not in the mount table) "))),
    }
    let block = pane_block(Line::from(title), true);
    let inner = block.inner(area);
    f.render_widget(block, area);

    // Summary lines.
    let mut top: Vec<Line> = Vec::new();
    match (&v.summary, &v.gone) {
        (_, Some(_)) => top.push(Line::from(Span::styled(
            " gone: unmounted, and no file we know of pins it any more",
            GOOD,
        ))),
        (Some(s), None) => {
            let mut l = vec![Span::raw(format!(
                " {} alive",
                count(s.alive_files, "file", "files")
            ))];
            if s.alive_files > 0 {
                l.push(Span::styled(
                    format!(
                        ": fd {}, ring {}, in-flight {}, deferred {}, unattributed {}",
                        s.fd_tables, s.uring_rings, s.in_flight, s.deferred_pending, s.unattributed
                    ),
                    DIM,
                ));
            }
            top.push(Line::from(l));
            if pinned(s) && s.detached {
                top.push(Line::from(Span::styled(
                    " lazily unmounted: it lives on, detached, until these files are released",
                    BAD,
                )));
            } else if pinned(s) {
                top.push(Line::from(Span::styled(
                    " umount failed with EBUSY and these files still pin it:",
                    BAD,
                )));
            }
            if s.unknown_frees > 0 {
                top.push(Line::from(Span::styled(
                    format!(
                        " {} freed that we never saw referenced: files invisible to the tracer exist here",
                        count(s.unknown_frees as usize, "file", "files")
                    ),
                    WARN,
                )));
            }
        }
        (None, None) => top.push(Line::from(Span::styled(" no alive file on it", DIM))),
    }
    if v.alive > v.listed {
        top.push(Line::from(Span::styled(
            format!(" listing {} of {} alive files", v.listed, v.alive),
            DIM,
        )));
    }
    if !app.file_filter.is_empty() {
        top.push(Line::from(Span::styled(
            format!(" filter “{}”", app.file_filter),
            WARN,
        )));
    }

    // Bottom lines: umount attempts, child mounts.
    let mut bottom: Vec<Line> = Vec::new();
    if let Some(last) = v.attempts.last() {
        let (tries, busy) = v
            .summary
            .as_ref()
            .map(|s| (s.umount_attempts as usize, s.umount_ebusy as usize))
            .unwrap_or_else(|| {
                let busy = v.attempts.iter().filter(|a| a.ret == -16).count();
                (v.attempts.len(), busy)
            });
        let style = if last.ret == 0 { GOOD } else { BAD };
        bottom.push(Line::from(vec![
            Span::styled(" umount: ", HEAD),
            Span::raw(format!(
                "{}, {busy} EBUSY; last at {} ",
                count(tries, "attempt", "attempts"),
                snap.time(last.ts_ns)
            )),
            Span::styled(errno_name(last.ret), style),
            Span::raw(format!(" by pid {} ({})", last.tgid, last.comm)),
        ]));
    }
    if !v.children.is_empty() {
        let names: Vec<String> = v
            .children
            .iter()
            .map(|c| format!("{} ({})", c.mount_point, c.id))
            .collect();
        bottom.push(Line::from(vec![
            Span::styled(" child mounts (each makes umount fail): ", WARN),
            Span::raw(names.join(", ")),
        ]));
    }

    let allocs = alloc_lines(snap, id, inner.width as usize);
    let [t, mid, a, b] = Layout::vertical([
        Constraint::Length(top.len() as u16),
        Constraint::Min(1),
        Constraint::Length((allocs.len() as u16).min(inner.height / 2)),
        Constraint::Length(bottom.len() as u16),
    ])
    .areas(inner);
    f.render_widget(Paragraph::new(top), t);
    f.render_widget(Paragraph::new(allocs), a);
    f.render_widget(Paragraph::new(bottom), b);

    // The groups and their files.
    let rows = file_rows(snap, &app.file_filter);
    let sel = app.file_index(&rows);
    let now = Anchor::now(snap.now_ns);
    let longest = rows
        .iter()
        .map(|(_, r)| file_name(r).chars().count())
        .max()
        .unwrap_or(0);
    let name_w = longest.clamp(8, (mid.width as usize / 3).max(8));
    let mut lines: Vec<Line> = Vec::new();
    let mut sel_line = 0;
    let mut row_i = 0;
    // (line, group, file) of each file row, for the mouse.
    let mut drawn = Vec::new();
    for (gi, g) in v.groups.iter().enumerate() {
        let files: Vec<_> = rows.iter().filter(|(rg, _)| *rg == gi).collect();
        let style = if g.count == 0 { DIM } else { HEAD };
        let shown = if files.len() < g.count {
            format!(" ({} listed)", files.len())
        } else {
            String::new()
        };
        lines.push(Line::from(Span::styled(
            format!(" {} ({}){shown}", g.title, g.count),
            style,
        )));
        for (_, r) in files {
            // The holder of this group, in words.
            let holder = r
                .holders
                .iter()
                .find(|h| {
                    use tracer_fs::verdict::HolderDesc as H;
                    matches!(
                        (gi, h),
                        (0, H::Fd { .. })
                            | (1, H::UringFixed { .. })
                            | (2, H::UringReq { .. })
                            | (3, H::DeferredPut { .. })
                            | (4, H::Unattributed { .. })
                    )
                })
                .map(|h| h.words(&now))
                .unwrap_or_default();
            let more = r.holders.len().saturating_sub(1);
            let mut l = Line::from(vec![
                Span::raw("   "),
                Span::styled(format!("{:<name_w$}", tail(&file_name(r), name_w)), HEAD),
                Span::raw(" "),
                Span::raw(holder),
                Span::styled(
                    if more > 0 {
                        format!(" (+{more} more)")
                    } else {
                        String::new()
                    },
                    DIM,
                ),
            ]);
            if row_i == sel {
                l = l.patch_style(SELECTED);
                sel_line = lines.len();
            }
            drawn.push((lines.len(), gi, r.id.file, r.id.generation));
            row_i += 1;
            lines.push(l);
        }
    }
    let h = mid.height as usize;
    let skip = (sel_line + 1).saturating_sub(h);
    for (line, g, file, generation) in drawn {
        if line >= skip && line < skip + h {
            app.hit(
                Rect::new(mid.x, mid.y + (line - skip) as u16, mid.width, 1),
                Target::FileRow(g, tracer_fs::files::FileKey { file, generation }),
            );
        }
    }
    f.render_widget(Paragraph::new(lines).scroll((skip as u16, 0)), mid);
}
