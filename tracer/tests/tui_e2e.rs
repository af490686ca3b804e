//! The TUI driven as a person would: the real binary in a tmux pane (keys in with
//! `send-keys`, the screen read back with `capture-pane`), watching a real EBUSY on a real
//! tmpfs, drilling into the mount and the file, following the release, saving a report,
//! and quitting with every probe detached. The screens are printed (see them with
//! `--nocapture`).

mod common;

use std::{
    io::{BufRead, BufReader},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::*;

/// The screen's words with every run of blanks (line ends included) made one space, so a
/// phrase is found even when the TUI wrapped it.
fn flat(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A tmux server of our own (its own socket), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// Runs `cmd` in a detached session of `w`x`h`; the pane stays after it exits, with
    /// `TRACER-EXIT=<status>` on screen.
    ///
    /// Each test gets its own server: the socket is named after the process, the test and
    /// a counter, because a server killed by the previous test can still be exiting when
    /// the next one starts (tmux then says "server exited unexpectedly"). A server left on
    /// that socket by an earlier run (a reused pid) is killed and its socket removed first.
    fn start(test: &str, w: u16, h: u16, dir: &Path, cmd: &str) -> Tmux {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let t = Tmux {
            socket: format!("tracer-tui-{}-{test}-{n}", std::process::id()),
        };
        let _ = t.tmux().arg("kill-server").output();
        let _ = std::fs::remove_file(t.socket_path());
        let shell = format!("{cmd}; echo TRACER-EXIT=$?; sleep 600");
        let out = t
            .tmux()
            .args(["new-session", "-d", "-s", "tui", "-x"])
            .arg(w.to_string())
            .arg("-y")
            .arg(h.to_string())
            .arg("-c")
            .arg(dir)
            .arg(shell)
            .output()
            .expect("running tmux (cargo xtask setup installs it)");
        assert!(
            out.status.success(),
            "tmux new-session: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        t
    }

    fn tmux(&self) -> Command {
        let mut c = Command::new("tmux");
        // Inside a tmux of the user's, TMUX would point new-session at it.
        c.env_remove("TMUX").args(["-L", &self.socket]);
        c
    }

    /// Where tmux puts the socket of `-L NAME`: `$TMUX_TMPDIR` (else /tmp)/tmux-UID/NAME.
    fn socket_path(&self) -> PathBuf {
        let base = std::env::var_os("TMUX_TMPDIR").unwrap_or_else(|| "/tmp".into());
        // SAFETY: no preconditions.
        let uid = unsafe { libc::getuid() };
        PathBuf::from(base)
            .join(format!("tmux-{uid}"))
            .join(&self.socket)
    }

    /// Sends keys (tmux key names), one at a time, as a person types them.
    fn keys(&self, keys: &[&str]) {
        for k in keys {
            let out = self
                .tmux()
                .args(["send-keys", "-t", "tui", k])
                .output()
                .unwrap();
            assert!(out.status.success(), "send-keys {k}");
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    /// Types text literally.
    fn type_text(&self, text: &str) {
        let out = self
            .tmux()
            .args(["send-keys", "-l", "-t", "tui", text])
            .output()
            .unwrap();
        assert!(out.status.success(), "send-keys -l {text}");
        std::thread::sleep(Duration::from_millis(150));
    }

    /// A left click at a cell (0-based), as a terminal sends it in SGR mouse mode.
    fn click(&self, x: u16, y: u16) {
        for end in ['M', 'm'] {
            let seq = format!("\x1b[<0;{};{}{end}", x + 1, y + 1);
            let out = self
                .tmux()
                .args(["send-keys", "-l", "-t", "tui", &seq])
                .output()
                .unwrap();
            assert!(out.status.success(), "send-keys (mouse)");
        }
        std::thread::sleep(Duration::from_millis(150));
    }

    fn resize(&self, w: u16, h: u16) {
        let out = self
            .tmux()
            .args(["resize-window", "-t", "tui", "-x"])
            .arg(w.to_string())
            .arg("-y")
            .arg(h.to_string())
            .output()
            .unwrap();
        assert!(out.status.success(), "resize-window");
    }

    fn screen(&self) -> String {
        let out = self
            .tmux()
            .args(["capture-pane", "-p", "-t", "tui"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until the screen shows what `pred` wants; prints and returns it.
    fn wait(&self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if pred(&s) {
                println!("---- screen: {what}\n{s}");
                return s;
            }
            if start.elapsed() > timeout {
                panic!("timed out waiting for {what}; the screen:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux().arg("kill-server").output();
        let _ = std::fs::remove_file(self.socket_path());
    }
}

/// A directory of the test's, removed (with the reports in it) however the test ends.
struct Dir(PathBuf);

impl Dir {
    fn new(path: PathBuf) -> Dir {
        std::fs::create_dir_all(&path).unwrap();
        Dir(path)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A process holding `path` open as fd 3 (`sh` opens it there, then becomes `sleep`).
struct Holder(Child);

impl Holder {
    fn start(path: &Path) -> Holder {
        let mut child = Command::new("sh")
            .arg("-c")
            // fd 3 closed first: an fd inherited there (cargo's jobserver pipe) would make the
            // shell open the file on another fd and dup2 it to 3.
            .arg(r#"exec 3>&-; exec 3>"$1"; echo READY; exec sleep 600"#)
            .arg("sh")
            .arg(path)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "READY");
        Holder(child)
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }

    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        self.kill();
    }
}

#[test]
fn a_person_watches_an_ebusy_in_the_tui() {
    if !kernel_tests_allowed("a_person_watches_an_ebusy_in_the_tui") {
        return;
    }
    let _g = serial();
    let secs = |s| Duration::from_secs(s);

    // Reports go to the tracer's working directory.
    let cwd = Dir::new(std::env::temp_dir().join(format!("tracer-tui-e2e-{}", std::process::id())));
    let tracer = env!("CARGO_BIN_EXE_tracer");
    let tmux = Tmux::start("ebusy", 80, 24, &cwd.0, &format!("{tracer} attach"));
    tmux.wait("the TUI, attached", secs(60), |s| {
        s.contains("hooks ") && s.contains("Mounts (") && !s.contains("attaching…")
    });

    // A tmpfs, a file on it held open, an xfstests-style marker, and a umount: EBUSY.
    let m = TmpMount::new("tui");
    let id = m.mount_id();
    let held = m.path.join("held");
    let mut holder = Holder::start(&held);
    let pid = holder.pid();
    let test = format!("tracer/e2e-{}", std::process::id());
    std::fs::write(
        "/dev/kmsg",
        format!("run fstests {test} at 2025-01-01 00:00:00\n"),
    )
    .expect("writing the xfstests marker to /dev/kmsg");
    assert_eq!(umount(&m.path), Err(EBUSY));
    let target = m.str().to_string();
    let s = tmux.wait("the EBUSY verdict", secs(20), |s| {
        s.contains(&format!("EBUSY  umount {target}")) && s.contains("held")
    });
    assert!(
        s.contains(&format!("test {test}")),
        "the xfstests test in the header"
    );
    assert!(
        flat(&s).contains("busy: 1 open file: 1 held by an fd"),
        "{s}"
    );
    // (The holder's command is `sh` or already `sleep`, depending on when it exec'd.)
    assert!(flat(&s).contains(&format!("fd 3 of pid {pid} (")), "{s}");
    assert!(s.contains("EBUSY ×1"), "the mount is marked pinned: {s}");

    // Find the mount with the filter, open it: its file and holder.
    let dir = m.path.file_name().unwrap().to_str().unwrap().to_string();
    tmux.keys(&["/"]);
    tmux.type_text(&dir);
    tmux.keys(&["Enter", "Enter"]);
    let s = tmux.wait("the mount view", secs(10), |s| {
        s.contains(&format!("Mount {id}: tmpfs tracer-test on {target}"))
            && s.contains("fd tables (1)")
    });
    assert!(
        s.contains("umount failed with EBUSY and these files still pin it"),
        "{s}"
    );
    assert!(flat(&s).contains(&format!("fd 3 of pid {pid} (")), "{s}");
    assert!(s.contains("[alive]"), "{s}");
    assert!(s.contains("umount: 1 attempt, 1 EBUSY"), "{s}");

    // The file and its history.
    tmux.keys(&["Enter"]);
    let s = tmux.wait("the file view", secs(10), |s| s.contains("history:"));
    assert!(
        flat(&s).contains(&format!("opened as fd 3 of pid {pid} (sh)")),
        "{s}"
    );
    assert!(s.contains("state: held"), "{s}");

    // Back to the main screen; the holder dies; the follow-up and the umount that works.
    tmux.keys(&["Escape", "Escape"]);
    tmux.wait("the main screen", secs(10), |s| s.contains("Events ("));
    holder.kill();
    let s = tmux.wait("the culprit released", secs(20), |s| s.contains("freed  "));
    assert!(flat(&s).contains("0 of 1 culprits left"), "{s}");
    umount(&m.path).expect("umount once the holder is gone");
    let s = tmux.wait("the umount that worked", secs(20), |s| {
        flat(s).contains(&format!("done umount {target} worked after"))
    });
    assert!(flat(&s).contains("1 failed attempt"), "{s}");

    // Esc clears the filter: the other mounts are back.
    tmux.keys(&["Escape"]);
    tmux.wait("the filter cleared", secs(10), |s| !s.contains("filter “"));

    // A bigger terminal: the same screen, wider (the source column appears).
    tmux.resize(140, 40);
    tmux.wait("the wider screen", secs(10), |s| s.contains("SOURCE"));
    tmux.resize(80, 24);
    tmux.wait("back to 80x24", secs(10), |s| {
        !s.contains("SOURCE") && s.contains("Mounts (")
    });

    // A report, saved now, readable by root only.
    tmux.keys(&["s"]);
    let s = tmux.wait("the report saved", secs(10), |s| {
        s.contains("report saved: ")
    });
    let path: PathBuf = s
        .lines()
        .find_map(|l| l.split("report saved: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .into();
    let meta = std::fs::metadata(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let report = std::fs::read_to_string(&path).unwrap();
    // No recording: the live state, said to be only that.
    assert!(report.starts_with("live summary (no recording"), "{report}");
    assert!(
        report.contains(&format!("EBUSY: umount {target}")),
        "{report}"
    );

    // Quit: the terminal comes back, the probes go.
    tmux.keys(&["q"]);
    let s = tmux.wait("the tracer's exit", secs(30), |s| {
        s.contains("TRACER-EXIT=")
    });
    assert!(s.contains("TRACER-EXIT=0"), "{s}");
    assert!(s.contains("stopped by quit"), "{s}");
    assert!(s.contains("all probes detached"), "{s}");
    assert_eq!(
        leftover_programs(),
        Vec::<String>::new(),
        "probes left attached"
    );
}

/// `1.2k` -> 1200, `950` -> 950 (the TUI's compact numbers).
fn compact(s: &str) -> Option<u64> {
    let (num, mul) = match s.chars().last()? {
        'k' => (&s[..s.len() - 1], 1_000.0),
        'M' => (&s[..s.len() - 1], 1_000_000.0),
        _ => (s, 1.0),
    };
    num.parse::<f64>().ok().map(|n| (n * mul) as u64)
}

/// umount2(MNT_DETACH).
fn umount_lazy(path: &Path) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid C string.
    assert_eq!(unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) }, 0);
}

/// Allocation tracking in the TUI, recording at the same time: a real tmpfs filled with
/// files under `--alloc-filter sym:shmem_`, its outstanding allocations on its row and by
/// call site in its view; a lazy umount while a file is held open, and the leak report
/// that follows in the events pane and in full; a saved report with the allocations; quit
/// with the recording complete and nothing left attached.
#[test]
fn a_person_watches_allocations_in_the_tui_while_recording() {
    if !kernel_tests_allowed("a_person_watches_allocations_in_the_tui_while_recording") {
        return;
    }
    let _g = serial();
    let secs = |s| Duration::from_secs(s);
    let cwd =
        Dir::new(std::env::temp_dir().join(format!("tracer-tui-alloc-e2e-{}", std::process::id())));
    let rec = cwd.0.join("live.trace");
    let tracer = env!("CARGO_BIN_EXE_tracer");
    let tmux = Tmux::start(
        "alloc",
        120,
        32,
        &cwd.0,
        &format!(
            "{tracer} attach --alloc-filter sym:shmem_ --leak-grace 1s --record {}",
            rec.display()
        ),
    );
    let s = tmux.wait("the TUI, attached and tracking", secs(60), |s| {
        s.contains("allocs ") && s.contains("Mounts (") && !s.contains("attaching…")
    });
    assert!(s.contains("rec "), "recording is shown: {s}");
    assert!(s.contains("ALLOC") && s.contains("BYTES"), "{s}");

    // A tmpfs with 40 files: 40 inodes (and more) from shmem_alloc_inode, charged to it.
    let m = TmpMount::new("tuialloc");
    let target = m.str().to_string();
    let id = m.mount_id();
    for i in 0..40 {
        std::fs::write(m.path.join(format!("f{i}")), b"data").unwrap();
    }
    let row_alloc = |s: &str| -> Option<(u64, u64)> {
        let row = s.lines().find(|l| l.contains(&format!(" {target} ")))?;
        let t: Vec<&str> = row.split_whitespace().collect();
        Some((compact(t[t.len() - 2])?, compact(t[t.len() - 1])?))
    };
    let s = tmux.wait("the mount's allocations on its row", secs(20), |s| {
        row_alloc(s).is_some_and(|(n, _)| n >= 40)
    });
    let (n, bytes) = row_alloc(&s).unwrap();
    assert!(
        bytes >= n * 100,
        "an inode is more than 100 bytes: {n} {bytes}"
    );
    let header = s.lines().find(|l| l.contains(" allocs ")).unwrap();
    let outstanding = compact(
        header
            .split_whitespace()
            .nth(1)
            .and_then(|f| f.split('/').next())
            .unwrap(),
    )
    .unwrap();
    assert!(
        outstanding >= n,
        "the header counts every mount's: {header}"
    );

    // Its view, opened with the mouse (filtered first, so no new mount moves its row):
    // a click selects the row, a second opens it; by call site, the inodes first.
    let dir = m.path.file_name().unwrap().to_str().unwrap().to_string();
    tmux.keys(&["/"]);
    tmux.type_text(&dir);
    tmux.keys(&["Enter"]);
    let s = tmux.wait("the mount alone", secs(10), |s| s.contains("filter “"));
    let y = s
        .lines()
        .position(|l| l.contains(&format!(" {target} ")))
        .unwrap();
    tmux.click(5, y as u16);
    tmux.click(5, y as u16);
    let s = tmux.wait("the mount view's allocations", secs(10), |s| {
        s.contains(&format!("Mount {id}: tmpfs tracer-test on {target}"))
            && s.contains("allocations outstanding: ")
            && s.contains("shmem_alloc_inode+")
    });
    assert!(s.contains("COUNT  BYTES   GROWTH  CALL SITE"), "{s}");
    assert!(s.contains("(shmem_inode_cache)"), "{s}");
    tmux.keys(&["Escape", "Escape"]);
    tmux.wait("the main screen, unfiltered", secs(10), |s| {
        s.contains("Events (") && !s.contains("filter “")
    });

    // A file held open, a lazy umount: the superblock and its inodes live on.
    let mut holder = Holder::start(&m.path.join("held"));
    umount_lazy(&m.path);
    tmux.keys(&["Tab", "/"]);
    tmux.type_text(&format!("leak report for {target}"));
    tmux.keys(&["Enter"]);
    let s = tmux.wait("the leak report in the events pane", secs(30), |s| {
        flat(s).contains(&format!("LEAK {target} (tmpfs): "))
    });
    assert!(
        flat(&s).contains("still allocated after umount (uncertain)"),
        "{s}"
    );
    assert!(flat(&s).contains("shmem_alloc_inode+"), "{s}");
    tmux.keys(&["Enter"]);
    // A lazy umount: its objects are uncertain (the filesystem may still be in use).
    let s = tmux.wait("the leak report in full", secs(10), |s| {
        s.contains("uncertain object 0x")
    });
    assert!(
        flat(&s).contains(&format!(
            "leak report for {target} (tmpfs on tracer-test): "
        )),
        "{s}"
    );
    assert!(flat(&s).contains("lazy umount (MNT_DETACH)"), "{s}");
    assert!(s.contains("backtrace"), "{s}");
    holder.kill();

    // The saved report holds the allocation state and the leak report.
    tmux.keys(&["s"]);
    let s = tmux.wait("the report saved", secs(10), |s| {
        s.contains("report saved: ")
    });
    let path: PathBuf = s
        .lines()
        .find_map(|l| l.split("report saved: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .into();
    let report = std::fs::read_to_string(&path).unwrap();
    // Recording: `tracer report`'s own report of the recording so far.
    assert!(report.starts_with("report of "), "{report}");
    assert!(report.contains("so far (still recording"), "{report}");
    assert!(report.contains("recording still in progress"), "{report}");
    assert!(!report.contains("cut short"), "{report}");
    assert!(
        report.contains("allocation tracking: sym:shmem_"),
        "{report}"
    );
    assert!(
        report.contains(&format!(
            "leak report for {target} (tmpfs on tracer-test): "
        )),
        "{report}"
    );
    // The lazy umount leaves its objects uncertain: none is called a leak.
    assert!(report.contains("lazy umount (MNT_DETACH)"), "{report}");
    assert!(report.contains(" uncertain"), "{report}");
    assert!(!report.contains("unreferenced object"), "{report}");

    tmux.keys(&["q"]);
    let s = tmux.wait("the tracer's exit", secs(30), |s| {
        s.contains("TRACER-EXIT=")
    });
    assert!(s.contains("TRACER-EXIT=0"), "{s}");
    assert!(flat(&s).contains("all probes detached"), "{s}");
    assert!(
        flat(&s).contains(&format!("tracer: recording {}", rec.display())),
        "{s}"
    );
    assert_eq!(
        leftover_programs(),
        Vec::<String>::new(),
        "probes left attached"
    );
    // The recording is complete and replays.
    let out = run(tracer, &["report", rec.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("recording ended cleanly (stopped by quit)"),
        "{text}"
    );
    assert!(
        text.contains(&format!("umount {target}")) || text.contains("mount-table calls"),
        "{text}"
    );
    // With what allocation tracking concluded: the leak report seen on screen.
    assert!(text.contains("allocation tracking: sym:shmem_"), "{text}");
    assert!(
        text.contains(&format!(
            "leak report for {target} (tmpfs on tracer-test): "
        )),
        "{text}"
    );
    drop(m);
}
