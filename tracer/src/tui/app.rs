//! The UI's own state (where the person is, what is selected, filters, pause) and what keys
//! do to it. Selections are kept by identity (mount id, file, log serial), so rows moving
//! as numbers change do not move the cursor to another object.

use std::{cell::RefCell, sync::Arc};

use crossterm::event::{
    KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseButton, MouseEvent, MouseEventKind,
};
use ratatui::layout::{Position, Rect};
use tracer_fs::{files::FileKey, summary::MountSummary, verdict::FileReport};

use super::{
    log::{LogEntry, file_name},
    model::{Request, Snapshot},
};

/// A screen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    /// Header, mounts, deferred work, events.
    Main,
    /// One mount's files by holder kind.
    Mount(i32),
    /// One file and its history (on that mount).
    File(i32, FileKey),
    /// One events-pane entry in full (by serial).
    Entry(u64),
}

/// Which list of the main screen the cursor is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pane {
    Mounts,
    Events,
}

/// What is drawn where, for the mouse: filled by each frame's drawing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// A pane of the main screen (anywhere in it).
    Pane(Pane),
    MountRow(i32),
    EntryRow(u64),
    FileRow(usize, FileKey),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hit {
    pub area: Rect,
    pub target: Target,
}

/// A snapshot the UI waits for even while paused: the answer to something it asked.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Awaiting {
    Focus(Option<i32>, Option<FileKey>),
    Status(Option<String>),
}

#[derive(Clone, Debug)]
pub struct App {
    stack: Vec<View>,
    pub pane: Pane,
    /// Selected mount (None: the first row).
    pub mount_sel: Option<i32>,
    /// Selected log entry (None: follow the newest).
    pub entry_sel: Option<u64>,
    /// Selected file row in the mount view: (group, file).
    pub file_sel: Option<(usize, FileKey)>,
    /// Scroll of the text views (file, entry, help).
    pub scroll: u16,
    pub mount_filter: String,
    pub entry_filter: String,
    pub file_filter: String,
    /// Typing a filter.
    pub editing: bool,
    pub paused: bool,
    pub help: bool,
    pub quit: bool,
    /// A status line already shown long enough.
    pub status_hidden: Option<String>,
    awaiting: Option<Awaiting>,
    /// Where the last frame drew its panes and rows (the innermost last).
    pub hits: RefCell<Vec<Hit>>,
}

impl Default for App {
    fn default() -> Self {
        Self::new()
    }
}

/// The mounts the pane lists, filtered.
pub fn mount_rows<'a>(snap: &'a Snapshot, filter: &str) -> Vec<&'a MountSummary> {
    let f = filter.to_lowercase();
    snap.mounts
        .iter()
        .filter(|m| {
            f.is_empty()
                || m.mount_id.to_string() == f
                || m.mount.as_ref().is_some_and(|d| {
                    d.mount_point.to_lowercase().contains(&f)
                        || d.fs_type.to_lowercase().contains(&f)
                        || d.source.to_lowercase().contains(&f)
                })
        })
        .collect()
}

/// The log entries the pane lists, filtered, oldest first.
pub fn entry_rows<'a>(snap: &'a Snapshot, filter: &str) -> Vec<&'a Arc<LogEntry>> {
    let f = filter.to_lowercase();
    snap.log
        .iter()
        .filter(|e| f.is_empty() || e.full.to_lowercase().contains(&f))
        .collect()
}

/// The file rows of the mount view: (group, file), filtered.
pub fn file_rows<'a>(snap: &'a Snapshot, filter: &str) -> Vec<(usize, &'a FileReport)> {
    let f = filter.to_lowercase();
    let Some(v) = &snap.mount_view else {
        return vec![];
    };
    v.groups
        .iter()
        .enumerate()
        .flat_map(|(gi, g)| g.files.iter().map(move |r| (gi, r)))
        .filter(|(_, r)| f.is_empty() || file_name(r).to_lowercase().contains(&f))
        .collect()
}

/// Moves an index by `delta` within `0..len`.
fn step(i: usize, delta: isize, len: usize) -> usize {
    if len == 0 {
        return 0;
    }
    (i as isize + delta).clamp(0, len as isize - 1) as usize
}

impl App {
    pub fn new() -> Self {
        App {
            stack: vec![View::Main],
            pane: Pane::Mounts,
            mount_sel: None,
            entry_sel: None,
            file_sel: None,
            scroll: 0,
            mount_filter: String::new(),
            entry_filter: String::new(),
            file_filter: String::new(),
            editing: false,
            paused: false,
            help: false,
            quit: false,
            status_hidden: None,
            awaiting: None,
            hits: RefCell::new(Vec::new()),
        }
    }

    /// The status line to show, if any.
    pub fn status<'a>(&self, snap: &'a Snapshot) -> Option<&'a str> {
        snap.status
            .as_deref()
            .filter(|s| self.status_hidden.as_deref() != Some(*s))
    }

    pub fn view(&self) -> View {
        *self.stack.last().expect("the main view is never popped")
    }

    /// The mount and file the views on the stack need the draining task to describe.
    fn focus(&self) -> (Option<i32>, Option<FileKey>) {
        for v in self.stack.iter().rev() {
            match *v {
                View::File(m, k) => return (Some(m), Some(k)),
                View::Mount(m) => return (Some(m), None),
                _ => {}
            }
        }
        (None, None)
    }

    fn focus_request(&mut self) -> Request {
        let (mount, file) = self.focus();
        self.awaiting = Some(Awaiting::Focus(mount, file));
        Request::Focus { mount, file }
    }

    fn push(&mut self, v: View, out: &mut Vec<Request>) {
        self.stack.push(v);
        self.scroll = 0;
        if matches!(v, View::Mount(_)) {
            self.file_sel = None;
            self.file_filter.clear();
        }
        out.push(self.focus_request());
    }

    fn pop(&mut self, out: &mut Vec<Request>) {
        if self.stack.len() > 1 {
            self.stack.pop();
            self.scroll = 0;
            out.push(self.focus_request());
        }
    }

    /// Whether to take a new snapshot: always, unless paused; while paused only when it
    /// answers a request (a drill-down, a saved report).
    pub fn wants(&self, current: &Snapshot) -> bool {
        if !self.paused {
            return true;
        }
        match &self.awaiting {
            None => false,
            Some(Awaiting::Focus(m, f)) => {
                current.mount_view.as_ref().map(|v| v.mount_id) != *m
                    || current.file_view.as_ref().map(|v| v.key) != *f
            }
            Some(Awaiting::Status(old)) => current.status == *old,
        }
    }

    /// A snapshot was taken: forget a request it answers.
    pub fn took(&mut self, snap: &Snapshot) {
        let done = match &self.awaiting {
            None => false,
            Some(Awaiting::Focus(m, f)) => {
                snap.mount_view.as_ref().map(|v| v.mount_id) == *m
                    && snap.file_view.as_ref().map(|v| v.key) == *f
            }
            Some(Awaiting::Status(old)) => snap.status != *old,
        };
        if done {
            self.awaiting = None;
        }
    }

    fn filter_mut(&mut self) -> &mut String {
        match (self.view(), self.pane) {
            (View::Mount(_), _) => &mut self.file_filter,
            (View::Main, Pane::Events) => &mut self.entry_filter,
            _ => &mut self.mount_filter,
        }
    }

    /// Handles a key; returns what to ask the draining task.
    pub fn handle_key(&mut self, key: KeyEvent, snap: &Snapshot) -> Vec<Request> {
        let mut out = Vec::new();
        if key.kind == KeyEventKind::Release {
            return out;
        }
        if key.modifiers.contains(KeyModifiers::CONTROL)
            && matches!(key.code, KeyCode::Char('c') | KeyCode::Char('d'))
        {
            self.quit = true;
            return out;
        }
        if self.editing {
            match key.code {
                KeyCode::Enter => self.editing = false,
                KeyCode::Esc => {
                    self.filter_mut().clear();
                    self.editing = false;
                }
                KeyCode::Backspace => {
                    self.filter_mut().pop();
                }
                KeyCode::Char(c) => self.filter_mut().push(c),
                _ => {}
            }
            return out;
        }
        if self.help {
            match key.code {
                KeyCode::Char('q') => self.quit = true,
                KeyCode::Down | KeyCode::Char('j') => self.scroll = self.scroll.saturating_add(1),
                KeyCode::Up | KeyCode::Char('k') => self.scroll = self.scroll.saturating_sub(1),
                _ => {
                    self.help = false;
                    self.scroll = 0;
                }
            }
            return out;
        }
        match key.code {
            KeyCode::Char('q') => self.quit = true,
            KeyCode::Char('?') | KeyCode::F(1) => {
                self.help = true;
                self.scroll = 0;
            }
            KeyCode::Char('p') => self.paused = !self.paused,
            KeyCode::Char('s') => {
                self.awaiting = Some(Awaiting::Status(snap.status.clone()));
                out.push(Request::SaveReport);
            }
            KeyCode::Char('/') if matches!(self.view(), View::Main | View::Mount(_)) => {
                self.filter_mut().clear();
                self.editing = true;
            }
            KeyCode::Tab | KeyCode::BackTab if self.view() == View::Main => {
                self.pane = match self.pane {
                    Pane::Mounts => Pane::Events,
                    Pane::Events => Pane::Mounts,
                };
            }
            KeyCode::Esc | KeyCode::Backspace | KeyCode::Left | KeyCode::Char('h') => {
                if self.view() == View::Main {
                    self.filter_mut().clear();
                } else {
                    self.pop(&mut out);
                }
            }
            KeyCode::Enter | KeyCode::Right | KeyCode::Char('l') => self.enter(snap, &mut out),
            KeyCode::Down | KeyCode::Char('j') => self.move_by(1, snap),
            KeyCode::Up | KeyCode::Char('k') => self.move_by(-1, snap),
            KeyCode::PageDown => self.move_by(10, snap),
            KeyCode::PageUp => self.move_by(-10, snap),
            KeyCode::Home | KeyCode::Char('g') => self.move_by(-1_000_000, snap),
            KeyCode::End | KeyCode::Char('G') => {
                self.move_by(1_000_000, snap);
                if self.view() == View::Main && self.pane == Pane::Events {
                    self.entry_sel = None;
                }
            }
            _ => {}
        }
        out
    }

    /// Notes where a pane or a row was drawn (the drawing code calls it).
    pub fn hit(&self, area: Rect, target: Target) {
        self.hits.borrow_mut().push(Hit { area, target });
    }

    /// The innermost thing drawn at a cell.
    fn target_at(&self, col: u16, row: u16) -> Option<Target> {
        self.hits
            .borrow()
            .iter()
            .rev()
            .find(|h| h.area.contains(Position::new(col, row)))
            .map(|h| h.target)
    }

    /// The mouse: a click selects a row (and its pane), a click on the selected row opens
    /// it; the wheel scrolls the list or text under it.
    pub fn handle_mouse(&mut self, m: MouseEvent, snap: &Snapshot) -> Vec<Request> {
        let mut out = Vec::new();
        if self.editing || self.help {
            if self.help {
                match m.kind {
                    MouseEventKind::ScrollDown => self.scroll = self.scroll.saturating_add(3),
                    MouseEventKind::ScrollUp => self.scroll = self.scroll.saturating_sub(3),
                    _ => {}
                }
            }
            return out;
        }
        let target = self.target_at(m.column, m.row);
        match m.kind {
            MouseEventKind::Down(MouseButton::Left) => match target {
                Some(Target::Pane(p)) => self.pane = p,
                Some(Target::MountRow(id)) => {
                    let again = self.pane == Pane::Mounts && self.mount_sel == Some(id);
                    self.pane = Pane::Mounts;
                    self.mount_sel = Some(id);
                    if again {
                        self.enter(snap, &mut out);
                    }
                }
                Some(Target::EntryRow(serial)) => {
                    let again = self.pane == Pane::Events && self.entry_sel == Some(serial);
                    self.pane = Pane::Events;
                    self.entry_sel = Some(serial);
                    if again {
                        self.enter(snap, &mut out);
                    }
                }
                Some(Target::FileRow(g, key)) => {
                    let again = self.file_sel == Some((g, key));
                    self.file_sel = Some((g, key));
                    if again {
                        self.enter(snap, &mut out);
                    }
                }
                None => {}
            },
            MouseEventKind::ScrollDown | MouseEventKind::ScrollUp => {
                let delta = if m.kind == MouseEventKind::ScrollDown {
                    3
                } else {
                    -3
                };
                if self.view() == View::Main {
                    match target {
                        Some(Target::Pane(p)) => self.pane = p,
                        Some(Target::MountRow(_)) => self.pane = Pane::Mounts,
                        Some(Target::EntryRow(_)) => self.pane = Pane::Events,
                        _ => return out,
                    }
                }
                self.move_by(delta, snap);
            }
            _ => {}
        }
        out
    }

    /// The index of the selected mount row.
    pub fn mount_index(&self, rows: &[&MountSummary]) -> usize {
        self.mount_sel
            .and_then(|id| rows.iter().position(|m| m.mount_id == id))
            .unwrap_or(0)
    }

    /// The index of the selected entry (the newest when following).
    pub fn entry_index(&self, rows: &[&Arc<LogEntry>]) -> Option<usize> {
        match self.entry_sel {
            Some(s) => rows
                .iter()
                .position(|e| e.serial == s)
                .or_else(|| rows.iter().position(|e| e.serial > s))
                .or(rows.len().checked_sub(1)),
            None => rows.len().checked_sub(1),
        }
    }

    pub fn file_index(&self, rows: &[(usize, &FileReport)]) -> usize {
        self.file_sel
            .and_then(|(g, k)| {
                rows.iter().position(|(rg, r)| {
                    *rg == g && r.id.file == k.file && r.id.generation == k.generation
                })
            })
            .unwrap_or(0)
    }

    fn move_by(&mut self, delta: isize, snap: &Snapshot) {
        match self.view() {
            View::Main => match self.pane {
                Pane::Mounts => {
                    let rows = mount_rows(snap, &self.mount_filter);
                    let i = step(self.mount_index(&rows), delta, rows.len());
                    self.mount_sel = rows.get(i).map(|m| m.mount_id);
                }
                Pane::Events => {
                    let rows = entry_rows(snap, &self.entry_filter);
                    if let Some(cur) = self.entry_index(&rows) {
                        let i = step(cur, delta, rows.len());
                        self.entry_sel = rows.get(i).map(|e| e.serial);
                    }
                }
            },
            View::Mount(_) => {
                let rows = file_rows(snap, &self.file_filter);
                let i = step(self.file_index(&rows), delta, rows.len());
                self.file_sel = rows.get(i).map(|(g, r)| {
                    (
                        *g,
                        FileKey {
                            file: r.id.file,
                            generation: r.id.generation,
                        },
                    )
                });
            }
            View::File(..) | View::Entry(_) => {
                self.scroll = (self.scroll as isize + delta).clamp(0, u16::MAX as isize) as u16;
            }
        }
    }

    fn enter(&mut self, snap: &Snapshot, out: &mut Vec<Request>) {
        match self.view() {
            View::Main => match self.pane {
                Pane::Mounts => {
                    let rows = mount_rows(snap, &self.mount_filter);
                    if let Some(m) = rows.get(self.mount_index(&rows)) {
                        self.mount_sel = Some(m.mount_id);
                        self.push(View::Mount(m.mount_id), out);
                    }
                }
                Pane::Events => {
                    let rows = entry_rows(snap, &self.entry_filter);
                    if let Some(e) = self.entry_index(&rows).and_then(|i| rows.get(i)) {
                        self.push(View::Entry(e.serial), out);
                    }
                }
            },
            View::Mount(m) => {
                let rows = file_rows(snap, &self.file_filter);
                if let Some((g, r)) = rows.get(self.file_index(&rows)) {
                    let key = FileKey {
                        file: r.id.file,
                        generation: r.id.generation,
                    };
                    self.file_sel = Some((*g, key));
                    self.push(View::File(m, key), out);
                }
            }
            View::Entry(serial) => {
                let mount = snap
                    .log
                    .iter()
                    .find(|e| e.serial == serial)
                    .and_then(|e| e.mount_id);
                if let Some(m) = mount {
                    self.push(View::Mount(m), out);
                }
            }
            View::File(..) => {}
        }
    }
}
