//! The terminal: raw mode and the alternate screen (restored on every way out, panics
//! included), and the UI loop on its own thread: keys in, requests out, the latest
//! snapshot drawn. A slow terminal only delays this thread; snapshots it did not get to
//! are replaced by newer ones, never queued.

use std::{
    io::Stdout,
    sync::{Arc, Once, mpsc},
    time::{Duration, Instant},
};

/// How long a status line stays.
const STATUS_FOR: Duration = Duration::from_secs(10);

use anyhow::Result;
use crossterm::{
    cursor,
    event::{self, DisableMouseCapture, EnableMouseCapture, Event},
    execute,
    terminal::{self, EnterAlternateScreen, LeaveAlternateScreen},
};
use ratatui::{Terminal, backend::CrosstermBackend};
use tokio::sync::{Notify, watch};

use super::{
    app::App,
    model::{Request, Snapshot},
    ui,
};

/// Puts the terminal back as it was. Safe to call more than once.
pub fn restore() {
    let _ = terminal::disable_raw_mode();
    let _ = execute!(
        std::io::stdout(),
        DisableMouseCapture,
        LeaveAlternateScreen,
        cursor::Show
    );
}

/// The terminal in TUI mode for as long as it lives.
struct Screen {
    terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl Screen {
    fn enter() -> Result<Screen> {
        static HOOK: Once = Once::new();
        HOOK.call_once(|| {
            let prev = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                restore();
                prev(info);
            }));
        });
        terminal::enable_raw_mode()?;
        let mut out = std::io::stdout();
        if let Err(e) = execute!(out, EnterAlternateScreen, EnableMouseCapture, cursor::Hide) {
            restore();
            return Err(e.into());
        }
        let terminal = Terminal::new(CrosstermBackend::new(out))?;
        Ok(Screen { terminal })
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore();
    }
}

/// Stops the stream when the UI ends, however it ends (quit, error, panic).
struct StopOnDrop(Arc<Notify>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.notify_one();
    }
}

/// The UI loop; returns when the person quits or the stream ends (the sender is dropped).
pub fn run(
    rx: watch::Receiver<Arc<Snapshot>>,
    requests: mpsc::Sender<Request>,
    stop: Arc<Notify>,
) -> Result<()> {
    let _stop = StopOnDrop(stop);
    let mut screen = Screen::enter()?;
    let mut rx = rx;
    let mut app = App::new();
    let mut snap = rx.borrow_and_update().clone();
    let mut dirty = true;
    // A status line (a report saved) shows for a while, then the keys come back.
    let mut status_since: Option<(String, Instant)> = None;
    loop {
        match (&snap.status, &status_since) {
            (Some(s), Some((old, _))) if s == old => {}
            (Some(s), _) => status_since = Some((s.clone(), Instant::now())),
            (None, _) => status_since = None,
        }
        if let Some((s, t)) = &status_since
            && t.elapsed() > STATUS_FOR
            && app.status_hidden.as_ref() != Some(s)
        {
            app.status_hidden = Some(s.clone());
            dirty = true;
        }
        match rx.has_changed() {
            Ok(true) if app.wants(&snap) => {
                snap = rx.borrow_and_update().clone();
                app.took(&snap);
                dirty = true;
            }
            Ok(_) => {}
            // The stream ended.
            Err(_) => break,
        }
        if dirty {
            screen.terminal.draw(|f| ui::draw(f, &app, &snap))?;
            dirty = false;
        }
        if event::poll(Duration::from_millis(50))? {
            match event::read()? {
                Event::Key(k) => {
                    for r in app.handle_key(k, &snap) {
                        let _ = requests.send(r);
                    }
                    dirty = true;
                }
                // Moves without a button change nothing.
                Event::Mouse(m) if m.kind != event::MouseEventKind::Moved => {
                    for r in app.handle_mouse(m, &snap) {
                        let _ = requests.send(r);
                    }
                    dirty = true;
                }
                Event::Resize(..) => {
                    screen.terminal.autoresize()?;
                    dirty = true;
                }
                _ => {}
            }
        }
        if app.quit {
            break;
        }
    }
    Ok(())
}
