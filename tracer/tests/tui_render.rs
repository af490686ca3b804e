//! What a person sees: each pane and view of the TUI drawn on ratatui's `TestBackend` from
//! engine states built by replaying real-looking event streams (the engine's golden
//! scenarios) through a real `Engine`, compared with the snapshots under `snapshots/`
//! (`INSTA_UPDATE=always cargo test -p tracer --test tui_render` rewrites them; review
//! the `.snap` files by eye: they are the screens).

use std::{os::unix::fs::PermissionsExt, path::PathBuf, sync::Arc};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::{Terminal, backend::TestBackend, buffer::Buffer, style::Color};
use tracer::stream::counters::Figures;
use tracer::tui::sink::answer;
use tracer::tui::{
    App, Meta, Model, Request, Snapshot, WallClock,
    app::{Pane, View},
    draw,
    model::HookLine,
};
use tracer_fs::{Engine, event::Event};

const MS: u64 = 1_000_000;
/// The scenarios start at 100 s after boot.
const T0: u64 = 100_000_000_000;

#[path = "../../fs/tests/common/golden_config.rs"]
mod golden_config;
use golden_config::config;

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
        answer(m, r, std::path::Path::new("/nonexistent"), s.now_ns);
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
        answer(&mut m, r, std::path::Path::new("/nonexistent"), s0.now_ns);
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
    // With allocation tracking and a leak report too.
    m.set_alloc(alloc_view());
    let now = m.engine.now_ns();
    m.leak_report(&leak_report(3, now), now);
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
    let mut entry = App::new();
    key(&mut entry, &mut m, &mut s, KeyCode::Tab);
    key(&mut entry, &mut m, &mut s, KeyCode::Enter);
    assert!(matches!(entry.view(), View::Entry(_)));
    views.push(entry);
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
    answer(&mut m, Request::SaveReport, &dir, T0 + 3_000 * MS);
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
    answer(&mut m, Request::SaveReport, &dir, T0 + 3_000 * MS);
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2);
    std::fs::remove_dir_all(&dir).unwrap();
    // The UI's line says it.
    let t = render(&App::new(), &s, 80, 24);
    let last = lines(t.backend().buffer()).pop().unwrap();
    assert!(last.contains("report saved:"), "{last}");
}

// ---- Allocation tracking (`--alloc-filter`) ----

use tracer::alloc::view::{AllocView, MountAlloc, SiteRow};
use tracer_fs::alloc::{Allocation, Caveats, MountWindow, SortBy, Symbolizer, group, report_text};

fn site(call_site: u64, function: &str, cache: &str, count: u64, bytes: u64, g: f64) -> SiteRow {
    SiteRow {
        call_site,
        function: function.into(),
        cache: cache.into(),
        count,
        bytes,
        growth_per_s: g,
    }
}

/// What the tracker would have read with `--alloc-filter module:xfs` while /mnt/scratch
/// (mount 42 of the fd_held scenario) was mounted: its inodes growing, one buffer steady.
fn alloc_view() -> AllocView {
    let sites = vec![
        site(
            0xffff_ffff_c0a1_2345,
            "xfs_inode_alloc+0x25/0x1a0 [xfs]",
            "xfs_inode",
            1_234,
            1_283_360,
            41.5,
        ),
        site(
            0xffff_ffff_c0a0_1111,
            "xfs_buf_alloc+0x3c/0x2d0 [xfs]",
            "xfs_buf",
            310,
            119_040,
            0.0,
        ),
        site(
            0xffff_ffff_c0a0_2222,
            "xfs_initialize_perag+0x8b/0x2a0 [xfs]",
            "",
            4,
            2_048,
            -2.0,
        ),
    ];
    AllocView {
        ts_ns: T0 + 2_000 * MS,
        filter: vec!["module:xfs".into()],
        notes: vec![],
        outstanding: 1_600,
        bytes: 1_420_000,
        growth_per_s: 39.5,
        cap: 65_536,
        sample_every: 1,
        tracked_total: 5_120,
        freed_total: 3_520,
        untracked_map_full: 0,
        free_misses: 3,
        reused: 1,
        stack_failures: 0,
        reports: 0,
        pending: vec![],
        sites: sites.clone(),
        mounts: vec![MountAlloc {
            target: "/mnt/scratch".into(),
            source: "/dev/loop1".into(),
            fs_type: "xfs".into(),
            mounted_ns: T0 - 60_000 * MS,
            count: 1_548,
            bytes: 1_404_448,
            growth_per_s: 39.5,
            sites,
        }],
    }
}

#[test]
fn allocations_per_mount_80x24() {
    let mut m = model("fd_held", 3);
    m.set_alloc(alloc_view());
    let s = snap(&mut m);
    let t = render(&App::new(), &s, 80, 24);
    insta::assert_snapshot!(t.backend());
    let text = lines(t.backend().buffer());
    let row = |id: &str| {
        text.iter()
            .find(|l| l.starts_with(&format!(" {id} ")))
            .unwrap()
    };
    assert!(row("42").contains("1.5k  1.4M"), "{}", row("42"));
    assert!(row("21").contains("-     -"), "not mounted while traced");
    let header = text.iter().find(|l| l.starts_with(" allocs ")).unwrap();
    assert!(header.contains("1.6k/65k"), "{header}");
    assert_eq!(fg_of(t.backend().buffer(), "missed frees"), Color::DarkGray);
    let b = t.backend().buffer();
    // The count after the label: red, frees were missed.
    let y = text.iter().position(|l| l.starts_with(" allocs ")).unwrap();
    let x = text[y].find("missed frees ").unwrap() + "missed frees ".len();
    assert_eq!(b[(x as u16, y as u16)].fg, Color::Red);
}

#[test]
fn allocations_in_the_mount_view_80x24() {
    let mut m = model("fd_held", 3);
    m.set_alloc(alloc_view());
    let mut s = snap(&mut m);
    let mut app = App::new();
    key(&mut app, &mut m, &mut s, KeyCode::Enter);
    assert_eq!(app.view(), View::Mount(42));
    let t = render(&app, &s, 80, 24);
    insta::assert_snapshot!(t.backend());
    let text = lines(t.backend().buffer()).join("\n");
    assert!(
        text.contains("allocations outstanding: 1548 objects, 1.4M bytes, +40/s"),
        "{text}"
    );
    assert!(text.contains("+42/s  xfs_inode_alloc+0x25/0x1a0 [xfs] (xfs_inode)"));
    assert!(text.contains("-2/s  xfs_initialize_perag"));
}

#[test]
fn empty_system_with_allocation_tracking_80x24() {
    let mut m = Model::new(Engine::new(config()), meta(), T0, Some(clock()));
    m.set_alloc(AllocView {
        filter: vec!["sym:shmem_".into()],
        cap: 65_536,
        sample_every: 1,
        ..Default::default()
    });
    m.set_ready();
    let s = m.snapshot(T0 + 3_000 * MS);
    let t = render(&App::new(), &s, 80, 24);
    insta::assert_snapshot!(t.backend());
}

struct Syms;
impl Symbolizer for Syms {
    fn frame(&self, addr: u64) -> String {
        match addr {
            0xffff_ffff_c0a1_2345 => "xfs_inode_alloc+0x25/0x1a0 [xfs]".into(),
            0xffff_ffff_c0a3_0000 => "xfs_iget+0x1c0/0x9a0 [xfs]".into(),
            0xffff_ffff_8140_0000 => "path_openat+0x6d/0x1b0".into(),
            a => format!("{a:#x}"),
        }
    }
    fn stack(&self, id: i32, call_site: u64) -> Vec<u64> {
        if id == 3 {
            vec![call_site, 0xffff_ffff_c0a3_0000, 0xffff_ffff_8140_0000]
        } else {
            vec![]
        }
    }
}

/// A leak report as the tracker writes it: `objects` xfs inodes left after the umount of
/// /mnt/scratch (the JSON fields the TUI reads, and the kmemleak-style text).
fn leak_report(objects: u64, now_ns: u64) -> serde_json::Value {
    let w = MountWindow {
        id: 1,
        target: "/mnt/scratch".into(),
        source: "/dev/loop1".into(),
        fs_type: "xfs".into(),
        start_ns: T0 - 60_000 * MS,
        end_ns: Some(now_ns - 2_000 * MS),
        lazy: false,
        failed: None,
    };
    let allocs: Vec<Allocation> = (0..objects)
        .map(|i| Allocation {
            ptr: 0xffff_8881_0420_0000 + i * 0x400,
            ts_ns: T0 - 30_000 * MS + i * MS,
            call_site: 0xffff_ffff_c0a1_2345,
            cache: "xfs_inode".into(),
            size: 1_040,
            stack_id: 3,
            pid: 4242,
            tgid: 4242,
            comm: "fsstress".into(),
        })
        .collect();
    let refs: Vec<&Allocation> = allocs.iter().collect();
    let groups = group(refs.iter().copied(), SortBy::Size, 10);
    let text = report_text(&w, &refs, &groups, &Caveats::default(), now_ns, 2, &Syms);
    serde_json::json!({
        "type": "leak_report",
        "mount": w,
        "objects": objects,
        "bytes": objects * 1_040,
        "uncertain": false,
        "reasons": [],
        "groups": groups.iter().map(|g| serde_json::json!({
            "count": g.count, "bytes": g.bytes, "cache": g.cache,
            "function": Syms.frame(g.call_site),
        })).collect::<Vec<_>>(),
        "text": text,
    })
}

/// After the umount and the grace period: a LEAK in the events pane, and Enter on it
/// opens the kmemleak-style report.
#[test]
fn leak_report_in_the_events_and_in_full_80x24() {
    let mut m = model("fd_held", usize::MAX);
    let now = m.engine.now_ns() + 2_500 * MS;
    m.set_alloc(AllocView {
        reports: 1,
        ..alloc_view()
    });
    m.leak_report(&leak_report(3, now), now);
    let mut s = snap(&mut m);
    let mut app = App::new();
    let t = render(&app, &s, 80, 24);
    insta::assert_snapshot!("leak_report_in_the_events_80x24", t.backend());
    assert_eq!(fg_of(t.backend().buffer(), "LEAK"), Color::Red);
    let text = lines(t.backend().buffer()).join("\n");
    assert!(
        text.contains("/mnt/scratch (xfs): 3 objects, 3120 bytes still allocated"),
        "{text}"
    );
    key(&mut app, &mut m, &mut s, KeyCode::Tab);
    key(&mut app, &mut m, &mut s, KeyCode::Enter);
    assert!(matches!(app.view(), View::Entry(_)));
    let t = render(&app, &s, 80, 24);
    insta::assert_snapshot!("leak_report_in_full_80x24", t.backend());
    let text = lines(t.backend().buffer()).join("\n");
    for want in [
        "unreferenced object 0xffff888104200000 (size 1040):",
        "comm \"fsstress\", pid 4242, age",
        "xfs_iget+0x1c0/0x9a0 [xfs]",
        "... and 1 more objects",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    // Scrolled down: the objects grouped by stack, with counts and bytes.
    key(&mut app, &mut m, &mut s, KeyCode::PageDown);
    let t = render(&app, &s, 80, 24);
    let text = lines(t.backend().buffer()).join("\n");
    assert!(
        text.contains("by stack:") && text.contains("3 objects, 3120 bytes (xfs_inode):"),
        "{text}"
    );
    assert!(!text.contains("Enter its mount"), "the mount is gone");
}

/// A clean umount: a green noleak line.
#[test]
fn no_leak_is_green() {
    let mut m = model("fd_held", usize::MAX);
    let now = m.engine.now_ns() + 2_500 * MS;
    m.set_alloc(alloc_view());
    m.leak_report(&leak_report(0, now), now);
    let s = snap(&mut m);
    let t = render(&App::new(), &s, 80, 24);
    assert_eq!(fg_of(t.backend().buffer(), "noleak"), Color::Green);
    let text = lines(t.backend().buffer()).join("\n");
    assert!(
        text.contains("/mnt/scratch (xfs): nothing left allocated after umount"),
        "{text}"
    );
}

#[test]
fn saved_report_holds_the_allocation_state() {
    let dir = std::env::temp_dir().join(format!("tracer-tui-alloc-report-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut m = model("fd_held", 3);
    m.set_alloc(alloc_view());
    let now = T0 + 3_000 * MS;
    m.leak_report(&leak_report(2, now), now);
    answer(&mut m, Request::SaveReport, &dir, now);
    let s = snap(&mut m);
    let status = s.status.clone().expect("a status line");
    let path = PathBuf::from(status.trim_start_matches("report saved: "));
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    for want in [
        "== Allocations (module:xfs) ==",
        "1600 outstanding (1420000 bytes, +39.5/s) of at most 65536 tracked",
        "3 runs of the free programs skipped, 1 addresses reused",
        "mount /mnt/scratch (xfs /dev/loop1), mounted at 40.000000s: 1548 objects, 1404448 bytes outstanding, +39.5/s",
        "1234 objects    1283360 bytes     +41.5/s  xfs_inode_alloc+0x25/0x1a0 [xfs] (xfs_inode)",
        "== Leak reports (0 made, the latest 1 here) ==",
        "leak report for /mnt/scratch (xfs on /dev/loop1): 2 objects, 2080 bytes still allocated after umount",
        "unreferenced object 0xffff888104200400 (size 1040):",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
}

// ---- The mouse ----

use crossterm::event::{MouseButton, MouseEvent, MouseEventKind};

fn mouse(app: &mut App, m: &mut Model, s: &mut Snapshot, kind: MouseEventKind, x: u16, y: u16) {
    let ev = MouseEvent {
        kind,
        column: x,
        row: y,
        modifiers: KeyModifiers::NONE,
    };
    for r in app.handle_mouse(ev, s) {
        answer(m, r, std::path::Path::new("/nonexistent"), s.now_ns);
    }
    *s = snap(m);
}

/// The line on screen where `text` is.
fn row_of(t: &Terminal<TestBackend>, text: &str) -> u16 {
    lines(t.backend().buffer())
        .iter()
        .position(|l| l.contains(text))
        .unwrap_or_else(|| panic!("{text:?} not on screen")) as u16
}

/// A click selects a row (and its pane), a second click opens it; the wheel scrolls the
/// list under it; in a mount's view a click picks a file.
#[test]
fn mouse_clicks_select_and_open_and_the_wheel_scrolls() {
    let mut m = model("uring_killed", 15);
    let mut s = snap(&mut m);
    let mut app = App::new();
    let click = MouseEventKind::Down(MouseButton::Left);
    // Rows: 42 (/mnt/scratch, pinned, first), 21 (/).
    let t = render(&app, &s, 80, 24);
    let root = row_of(&t, " 21   /  ");
    mouse(&mut app, &mut m, &mut s, click, 10, root);
    assert_eq!((app.pane, app.mount_sel), (Pane::Mounts, Some(21)));
    assert_eq!(app.view(), View::Main, "one click selects");
    // The wheel over the mounts moves the selection.
    let t = render(&app, &s, 80, 24);
    mouse(&mut app, &mut m, &mut s, MouseEventKind::ScrollUp, 10, root);
    assert_eq!(app.mount_sel, Some(42));
    // A click on an event: the events pane, that entry.
    let ebusy = row_of(&t, "EBUSY  umount");
    let t = render(&app, &s, 80, 24);
    mouse(&mut app, &mut m, &mut s, click, 30, ebusy);
    assert_eq!(app.pane, Pane::Events);
    let first = s.log.iter().find(|e| e.full.starts_with("EBUSY")).unwrap();
    assert_eq!(app.entry_sel, Some(first.serial));
    // A click on the selected mount row opens the mount; there, a click on a file
    // selects it and a second opens it.
    let row42 = row_of(&t, " 42   ");
    mouse(&mut app, &mut m, &mut s, click, 10, row42);
    assert_eq!(app.view(), View::Main);
    let t = render(&app, &s, 80, 24);
    mouse(&mut app, &mut m, &mut s, click, 10, row_of(&t, " 42   "));
    assert_eq!(app.view(), View::Mount(42));
    let t = render(&app, &s, 80, 24);
    let file = row_of(&t, "…/p0/f3");
    mouse(&mut app, &mut m, &mut s, click, 10, file);
    assert!(app.file_sel.is_some());
    render(&app, &s, 80, 24);
    mouse(&mut app, &mut m, &mut s, click, 10, file);
    assert!(matches!(app.view(), View::File(42, _)));
    // Text views scroll with the wheel.
    render(&app, &s, 80, 24);
    mouse(&mut app, &mut m, &mut s, MouseEventKind::ScrollDown, 10, 10);
    assert_eq!(app.scroll, 3);
}

/// A classified leak report (cycle confirmation), built as the tracker builds it: cycle 2 of
/// xfs kept a leak whose call site also kept one in cycle 1 (confirmed), and cycle 1's
/// table is one-time. The events pane says the verdicts; in full, confirmed leaks are
/// kmemleak's `unreferenced object`, the table a `one-time object`, each with its rule.
#[test]
fn a_classified_leak_report_in_the_events_and_in_full() {
    use tracer::record::alloc::{LeakRecord, PartRecord, WindowRecord, leak_json};
    use tracer_fs::leakcheck::{Doubts, Ledger, parts};
    let mut m = model("fd_held", usize::MAX);
    let now = m.engine.now_ns() + 2_500 * MS;
    let win = |id: u64, start: u64, end: u64| MountWindow {
        id,
        target: "/mnt/scratch".into(),
        source: "/dev/loop1".into(),
        fs_type: "xfs".into(),
        start_ns: start,
        end_ns: Some(end),
        lazy: false,
        failed: None,
    };
    let obj = |ptr: u64, ts: u64, site: u64, size: u64| Allocation {
        ptr,
        ts_ns: ts,
        call_site: site,
        cache: String::new(),
        size,
        stack_id: -1,
        pid: 4242,
        tgid: 4242,
        comm: "mount".into(),
    };
    const LEAK: u64 = 0xffff_ffff_c0a1_2345;
    const TABLE: u64 = 0xffff_ffff_c0a3_0000;
    let (w1, w2) = (win(1, 1_000, 2_000), win(2, 3_000, now - 2_000 * MS));
    let allocs = vec![
        obj(0xffff_8881_0000_1000, 1_100, LEAK, 200),
        obj(0xffff_8881_0000_2000, 1_200, TABLE, 16),
        obj(0xffff_8881_0000_3000, 3_100, LEAK, 200),
    ];
    let mut ledger = Ledger::default();
    let none = |_: &Allocation| Doubts::default();
    ledger.judge(&w1, &[&allocs[0], &allocs[1]], &allocs, &none, &|_| None);
    let j = ledger.judge(&w2, &[&allocs[2]], &allocs, &none, &|_| None);
    let k = LeakRecord {
        window: WindowRecord::of(&w2),
        now_ns: now,
        objects: 1,
        bytes: 200,
        uncertain: false,
        reasons: vec![],
        per_object: false,
        shown: vec![],
        groups: vec![],
        stacks: vec![],
        cycle: j.cycle,
        kind: j.kind.clone(),
        parts: parts(&j, SortBy::Size, 0, 10)
            .iter()
            .map(PartRecord::of)
            .collect(),
    };
    let names = [LEAK, TABLE]
        .into_iter()
        .map(|a| (a, Syms.frame(a)))
        .collect();
    let mut v = leak_json(&k, &names);
    v["type"] = serde_json::json!("leak_report");
    m.leak_report(&v, now);
    let mut s = snap(&mut m);
    let mut app = App::new();
    let t = render(&app, &s, 120, 32);
    let text = lines(t.backend().buffer()).join("\n");
    assert!(
        text.contains("cycle 2 of xfs: 1 confirmed, 2 from earlier cycles (1 confirmed)"),
        "{text}"
    );
    key(&mut app, &mut m, &mut s, KeyCode::Tab);
    key(&mut app, &mut m, &mut s, KeyCode::Enter);
    let t = render(&app, &s, 120, 100);
    // Words only: the view wraps long lines.
    let text = lines(t.backend().buffer()).join(" ");
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    for want in [
        "(cycle 2 of xfs): 1 confirmed leak; from earlier cycles: 1 confirmed leak, 1 one-time",
        "unreferenced object 0xffff888100003000 (size 200):",
        "rule: cycle rule: its call site kept objects from cycles 1-2 of xfs",
        "one-time object 0xffff888100002000 (size 16):",
        "rule: one-time: from cycle 1 of xfs (/mnt/scratch)",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
}

/// A lock conflict in the events pane (LOCK, then a "held" line per retry), and the
/// holding file's view lists the lock it holds.
#[test]
fn lock_conflict_in_events_and_file_view_120x32() {
    let mut m = model("lock_dead_owner", 11);
    let s = snap(&mut m);
    let t = render(&App::new(), &s, 120, 32);
    let screen = lines(t.backend().buffer());
    assert!(
        screen
            .iter()
            .any(|l| l.contains("LOCK") && l.contains("flock(LOCK_EX|LOCK_NB)")),
        "{}",
        screen.join("\n")
    );
    assert!(
        screen
            .iter()
            .any(|l| l.contains("held") && l.contains("still held")),
        "{}",
        screen.join("\n")
    );
    let key = m.engine.files().alive(0xffff_8880_0000_1000).unwrap();
    let v = m.file_view(key, s.now_ns).unwrap();
    assert_eq!(v.locks.len(), 1, "{:?}", v.locks);
    assert!(
        v.locks[0].starts_with(
            "a flock write lock others could not take (lock conflict #1): 2 conflicts since"
        ),
        "{:?}",
        v.locks
    );
}
