//! What a person sees: each pane and view of the TUI drawn on ratatui's `TestBackend` from
//! engine states built by replaying real-looking event streams (the engine's golden
//! scenarios) through a real `Engine`, compared with the snapshots under `snapshots/`
//! (`INSTA_UPDATE=always cargo test -p tracer --test tui_render` rewrites them; review
//! the `.snap` files by eye: they are the screens).

use std::{os::unix::fs::PermissionsExt, path::PathBuf, sync::Arc};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::{Terminal, backend::TestBackend, buffer::Buffer, style::Color};
use tracer::counters::Figures;
use tracer::tui::{
    App, Meta, Model, Request, Snapshot, WallClock,
    app::{Pane, View},
    draw,
    model::HookLine,
};
use tracer_fs::{Engine, EngineConfig, event::Event};

const MS: u64 = 1_000_000;
/// The scenarios start at 100 s after boot.
const T0: u64 = 100_000_000_000;

const DELAYED_FPUT: u64 = 0xffff_ffff_8145_6780;
const IO_RING_EXIT_WORK: u64 = 0xffff_ffff_8178_9ab0;
const IO_FALLBACK_REQ_FUNC: u64 = 0xffff_ffff_8178_8c40;

/// The engine configuration the golden scenarios were written for.
fn config() -> EngineConfig {
    EngineConfig {
        symbols: [
            (DELAYED_FPUT, "delayed_fput".to_string()),
            (IO_RING_EXIT_WORK, "io_ring_exit_work".to_string()),
            (IO_FALLBACK_REQ_FUNC, "io_fallback_req_func".to_string()),
        ]
        .into_iter()
        .collect(),
        delayed_fput: Some(DELAYED_FPUT),
        io_ring_exit_work: Some(IO_RING_EXIT_WORK),
        io_fallback_req_func: Some(IO_FALLBACK_REQ_FUNC),
        ring_exit_work_offset: Some(0x318),
        ring_fallback_work_offset: Some(0x2c8),
        ..Default::default()
    }
}

/// The hooks as this project's machines serve them (tracepoints only).
fn meta() -> Arc<Meta> {
    let live = |name: &str, how: &str| HookLine {
        name: name.into(),
        why: "what it is for".into(),
        live: true,
        how: how.into(),
    };
    let missing = |name: &str| HookLine {
        name: name.into(),
        why: "what it is for".into(),
        live: false,
        how: "needs fentry or kprobe on the kernel function; this kernel allows neither".into(),
    };
    Arc::new(Meta {
        kernel: "Linux 6.18.0-test x86_64".into(),
        hooks: vec![
            missing("fput"),
            live("__fput", "raw tracepoint: kmem_cache_free"),
            missing("task_work_add(____fput)"),
            live("workqueue", "raw tracepoint: workqueue_queue_work, ..."),
            live(
                "mount/umount result",
                "tracepoint: syscalls/sys_exit_umount, ...",
            ),
            live("open", "tracepoint: syscalls/sys_exit_openat, ..."),
            live("close", "tracepoint: syscalls/sys_enter_close"),
            live("task exit", "tracepoint: sched/sched_process_exit"),
            live(
                "io_uring rings",
                "tracepoint: io_uring/io_uring_create, ...",
            ),
        ],
        recording: None,
    })
}

/// Wall-clock times as if the machine booted at 12:00:00 UTC.
fn clock() -> WallClock {
    WallClock {
        unix_minus_boot_ns: 1_750_000_000 * 1_000_000_000 - 1_750_000_000 % 86_400 * 1_000_000_000
            + 12 * 3600 * 1_000_000_000,
        utc_offset_s: 0,
    }
}

fn golden(name: &str) -> Vec<Event> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fs/tests/golden")
        .join(format!("{name}.events.jsonl"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A model fed the first `n` events of a golden scenario (all with `usize::MAX`).
fn model(name: &str, n: usize) -> Model {
    let mut m = Model::new(Engine::new(config()), meta(), T0, Some(clock()));
    for e in golden(name).iter().take(n) {
        m.apply(e);
    }
    m.set_ready();
    m
}

/// The snapshot a little after the last event.
fn snap(m: &mut Model) -> Snapshot {
    let now = m.engine.now_ns().max(T0) + 5 * MS;
    m.snapshot(now)
}

fn render(app: &App, s: &Snapshot, w: u16, h: u16) -> Terminal<TestBackend> {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| draw(f, app, s)).unwrap();
    t
}

fn key(app: &mut App, m: &mut Model, s: &mut Snapshot, code: KeyCode) {
    for r in app.handle_key(KeyEvent::new(code, KeyModifiers::NONE), s) {
        m.request(r, std::path::Path::new("/nonexistent"), s.now_ns);
    }
    *s = snap(m);
}

/// The text of the screen's lines.
fn lines(b: &Buffer) -> Vec<String> {
    (0..b.area.height)
        .map(|y| {
            (0..b.area.width)
                .map(|x| b[(x, y)].symbol().to_string())
                .collect()
        })
        .collect()
}

/// The colour of the first cell of `text` on screen.
fn fg_of(b: &Buffer, text: &str) -> Color {
    for (y, l) in lines(b).iter().enumerate() {
        if let Some(byte) = l.find(text) {
            let x = l[..byte].chars().count() as u16;
            return b[(x, y as u16)].fg;
        }
    }
    panic!("{text:?} not on screen:\n{}", lines(b).join("\n"));
}

#[test]
fn empty_system_before_attach_80x24() {
    let s = Snapshot::empty(meta());
    let t = render(&App::new(), &s, 80, 24);
    insta::assert_snapshot!(t.backend());
}

#[test]
fn empty_engine_after_attach_80x24() {
    let mut m = Model::new(Engine::new(config()), meta(), T0, Some(clock()));
    m.set_ready();
    let s = m.snapshot(T0 + 3_000 * MS);
    let t = render(&App::new(), &s, 80, 24);
    insta::assert_snapshot!(t.backend());
}

/// The moment of the EBUSY: the mount pinned in red on top, the verdict in the events.
#[test]
fn fd_held_at_the_ebusy_80x24() {
    let mut m = model("fd_held", 3);
    let s = snap(&mut m);
    let t = render(&App::new(), &s, 80, 24);
    insta::assert_snapshot!(t.backend());
    let b = t.backend().buffer();
    assert_eq!(
        fg_of(b, "/mnt/scratch"),
        Color::Red,
        "the pinned mount stands out"
    );
    assert_eq!(fg_of(b, "EBUSY ×1"), Color::Red);
    assert_eq!(fg_of(b, "EBUSY  umount"), Color::Red);
}

#[test]
fn fd_held_at_the_ebusy_120x32() {
    let mut m = model("fd_held", 3);
    let s = snap(&mut m);
    let t = render(&App::new(), &s, 120, 32);
    insta::assert_snapshot!(t.backend());
}

/// After the holder closed its file and the umount worked: the follow-ups.
#[test]
fn fd_held_released_and_unmounted_80x24() {
    let mut m = model("fd_held", usize::MAX);
    let s = snap(&mut m);
    let t = render(&App::new(), &s, 80, 24);
    insta::assert_snapshot!(t.backend());
    let b = t.backend().buffer();
    assert_eq!(fg_of(b, "freed"), Color::Green);
    assert!(
        !lines(b).iter().any(|l| l.contains("/mnt/scratch  ")),
        "the unmounted mount left the pane"
    );
}

/// The io_uring ring of a SIGKILLed task, its teardown done, the final put waiting for
/// delayed_fput: the second EBUSY, the deferred-work pane with delayed_fput armed.
#[test]
fn uring_killed_deferred_put_pending_80x24() {
    let mut m = model("uring_killed", 15);
    let s = snap(&mut m);
    let t = render(&App::new(), &s, 80, 24);
    insta::assert_snapshot!(t.backend());
}

/// Enter on the pinned mount: its files by holder kind; Enter on the file: its history.
#[test]
fn uring_killed_drill_into_mount_and_file_80x24() {
    let mut m = model("uring_killed", 15);
    let mut s = snap(&mut m);
    let mut app = App::new();
    key(&mut app, &mut m, &mut s, KeyCode::Enter);
    assert_eq!(app.view(), View::Mount(42));
    let t = render(&app, &s, 80, 24);
    insta::assert_snapshot!("uring_killed_mount_view_80x24", t.backend());
    key(&mut app, &mut m, &mut s, KeyCode::Enter);
    assert!(matches!(app.view(), View::File(42, _)));
    let t = render(&app, &s, 80, 24);
    insta::assert_snapshot!("uring_killed_file_view_80x24", t.backend());
    // The file is released while the person looks at it: its history says by whom.
    for e in golden("uring_killed").iter().skip(15).take(4) {
        m.apply(e);
    }
    let s = snap(&mut m);
    let t = render(&app, &s, 80, 24);
    insta::assert_snapshot!("uring_killed_file_released_80x24", t.backend());
    // Back, back: the main screen, the cursor still on the mount.
    let mut s = s;
    key(&mut app, &mut m, &mut s, KeyCode::Esc);
    key(&mut app, &mut m, &mut s, KeyCode::Backspace);
    assert_eq!(app.view(), View::Main);
    assert_eq!(app.mount_sel, Some(42));
}

/// The verdict in full, from the events pane (Tab, Enter).
#[test]
fn verdict_in_full_80x24() {
    let mut m = model("uring_killed", 11);
    let mut s = snap(&mut m);
    let mut app = App::new();
    key(&mut app, &mut m, &mut s, KeyCode::Tab);
    assert_eq!(app.pane, Pane::Events);
    key(&mut app, &mut m, &mut s, KeyCode::Enter);
    assert!(matches!(app.view(), View::Entry(_)));
    let t = render(&app, &s, 80, 24);
    insta::assert_snapshot!(t.backend());
    // Enter again opens the mount it is about.
    key(&mut app, &mut m, &mut s, KeyCode::Enter);
    assert_eq!(app.view(), View::Mount(42));
}

/// A lazy umount left the mount detached and pinned; then mount(2) of its device fails.
#[test]
fn lazy_umount_detached_then_mount_ebusy_80x24() {
    let mut m = model("lazy_then_mount", 6);
    let s = snap(&mut m);
    let t = render(&App::new(), &s, 80, 24);
    insta::assert_snapshot!(t.backend());
    assert_eq!(fg_of(t.backend().buffer(), "DETACHED"), Color::Red);
}

#[test]
fn lazy_umount_detached_mount_view_80x24() {
    let mut m = model("lazy_then_mount", 6);
    let mut s = snap(&mut m);
    let mut app = App::new();
    key(&mut app, &mut m, &mut s, KeyCode::Enter);
    assert_eq!(app.view(), View::Mount(42));
    let t = render(&app, &s, 80, 24);
    insta::assert_snapshot!(t.backend());
}

#[test]
fn help_80x24() {
    let mut m = model("fd_held", 3);
    let mut s = snap(&mut m);
    let mut app = App::new();
    key(&mut app, &mut m, &mut s, KeyCode::Char('?'));
    let t = render(&app, &s, 80, 24);
    insta::assert_snapshot!(t.backend());
    key(&mut app, &mut m, &mut s, KeyCode::Esc);
    assert!(!app.help);
}

/// Lost records are red in the header, and said in the events pane and later verdicts.
#[test]
fn lost_records_are_red_and_logged() {
    let mut m = model("fd_held", 2);
    let mut f = Figures::default();
    f.drops.insert("FileRef".into(), 12);
    m.set_figures(&f, T0 + 1_500 * MS);
    for e in golden("fd_held").iter().skip(2).take(1) {
        m.apply(e);
    }
    let s = snap(&mut m);
    let t = render(&App::new(), &s, 80, 24);
    insta::assert_snapshot!(t.backend());
    let b = t.backend().buffer();
    assert_eq!(fg_of(b, "12 "), Color::Red);
    let verdict = s.log.iter().find(|e| e.full.starts_with("EBUSY")).unwrap();
    assert!(verdict.full.contains("12 records lost"), "{}", verdict.full);
}

#[test]
fn filter_pause_and_test_marker() {
    let mut m = model("uring_killed", 11);
    let mut s = snap(&mut m);
    let mut app = App::new();
    key(&mut app, &mut m, &mut s, KeyCode::Char('/'));
    for c in "vda".chars() {
        key(&mut app, &mut m, &mut s, KeyCode::Char(c));
    }
    key(&mut app, &mut m, &mut s, KeyCode::Enter);
    key(&mut app, &mut m, &mut s, KeyCode::Char('p'));
    assert!(app.paused);
    let t = render(&app, &s, 80, 24);
    insta::assert_snapshot!(t.backend());
    let text = lines(t.backend().buffer()).join("\n");
    assert!(
        text.contains("generic/388"),
        "the xfstests test is in the header"
    );
    assert!(text.contains("PAUSED"));
    assert!(!text.contains("/mnt/scratch  "), "filtered out");
}

/// While paused, the display keeps its snapshot; a drill-down still gets its answer.
#[test]
fn pause_keeps_the_snapshot_but_answers_drill_downs() {
    let mut m = model("uring_killed", 11);
    let s0 = snap(&mut m);
    let mut app = App::new();
    assert!(app.wants(&s0));
    app.handle_key(KeyEvent::new(KeyCode::Char('p'), KeyModifiers::NONE), &s0);
    assert!(!app.wants(&s0), "paused: no new snapshots");
    let reqs = app.handle_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE), &s0);
    assert_eq!(
        reqs,
        vec![Request::Focus {
            mount: Some(42),
            file: None
        }]
    );
    assert!(app.wants(&s0), "the mount view is awaited");
    for r in reqs {
        m.request(r, std::path::Path::new("/nonexistent"), s0.now_ns);
    }
    let s1 = snap(&mut m);
    app.took(&s1);
    assert!(!app.wants(&s1), "answered; paused again");
}

/// The selection follows the mount, not the row, when rows move.
#[test]
fn selection_is_kept_by_identity() {
    let mut m = model("fd_held", 2);
    let mut s = snap(&mut m);
    let mut app = App::new();
    // Rows: 42 (/mnt/scratch), 21 (/). Select /.
    key(&mut app, &mut m, &mut s, KeyCode::Down);
    assert_eq!(app.mount_sel, Some(21));
    // The EBUSY moves nothing here (42 was first already), but re-sorting must not move us.
    for e in golden("fd_held").iter().skip(2).take(1) {
        m.apply(e);
    }
    let s = snap(&mut m);
    let rows = tracer::tui::app::mount_rows(&s, "");
    assert_eq!(rows[app.mount_index(&rows)].mount_id, 21);
}

/// Every view at sizes from tiny to large draws without panicking.
#[test]
fn every_view_draws_at_any_size() {
    let mut m = model("uring_killed", 15);
    let mut s = snap(&mut m);
    let mut app = App::new();
    let mut views = vec![];
    views.push(app.clone());
    key(&mut app, &mut m, &mut s, KeyCode::Enter);
    views.push(app.clone());
    key(&mut app, &mut m, &mut s, KeyCode::Enter);
    views.push(app.clone());
    let mut help = App::new();
    help.help = true;
    views.push(help);
    for a in &views {
        for (w, h) in [(1, 1), (10, 3), (40, 10), (80, 24), (100, 30), (250, 80)] {
            render(a, &s, w, h);
        }
    }
    // A resize between frames.
    let mut t = render(&views[0], &s, 80, 24);
    t.backend_mut().resize(60, 15);
    t.autoresize().unwrap();
    t.draw(|f| draw(f, &views[0], &s)).unwrap();
    assert_eq!(t.backend().buffer().area.width, 60);
}

#[test]
fn save_report_writes_a_private_file() {
    let dir = std::env::temp_dir().join(format!("tracer-tui-report-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut m = model("uring_killed", 15);
    m.request(Request::SaveReport, &dir, T0 + 3_000 * MS);
    let s = snap(&mut m);
    let status = s.status.clone().expect("a status line");
    assert!(status.starts_with("report saved: "), "{status}");
    let path = PathBuf::from(status.trim_start_matches("report saved: "));
    assert!(path.starts_with(&dir));
    let name = path.file_name().unwrap().to_str().unwrap();
    assert!(
        name.starts_with("tracer-report-") && name.ends_with(".txt"),
        "{name}"
    );
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&path).unwrap();
    for want in [
        "Linux 6.18.0-test x86_64",
        "xfstests test running: generic/388",
        "PINNED mount 42: xfs /dev/loop1 on /mnt/scratch",
        "== Verdicts (2) ==",
        "EBUSY: umount /mnt/scratch by pid 2001 (umount)",
        "delayed_fput",
        "hooks not attached: fput",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    // A second save does not overwrite the first.
    m.request(Request::SaveReport, &dir, T0 + 3_000 * MS);
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2);
    std::fs::remove_dir_all(&dir).unwrap();
    // The UI's line says it.
    let t = render(&App::new(), &s, 80, 24);
    let last = lines(t.backend().buffer()).pop().unwrap();
    assert!(last.contains("report saved:"), "{last}");
}
