//! Shared pieces of the kernel tests: root checks, a running tracer, real mounts, and
//! child processes that play the scenarios.
#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use serde_json::Value;

/// Kernel tests attach probes system-wide and check that nothing stays attached after:
/// they must not overlap.
static KERNEL: Mutex<()> = Mutex::new(());

pub fn serial() -> MutexGuard<'static, ()> {
    KERNEL.lock().unwrap_or_else(|e| e.into_inner())
}

/// True when the test may touch the kernel. Without root: fails under CI, skips loudly
/// elsewhere.
pub fn kernel_tests_allowed(test: &str) -> bool {
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!(
            "{test}: needs root to load eBPF programs, and CI=true: a kernel test must not skip in CI"
        );
    }
    eprintln!(
        "SKIPPED {test}: needs root to load eBPF programs (run `sudo -E cargo test` or `cargo xtask test` as root)"
    );
    false
}

/// The tracer binary the tests run: `TRACER_BIN` when set (inside the test VM, where the
/// binary cargo built is not at the path compiled in), else cargo's own build of it.
pub fn tracer_bin() -> std::ffi::OsString {
    std::env::var_os("TRACER_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_tracer").into())
}

/// A running `tracer attach --no-tui`, its JSON lines collected as they come.
pub struct Tracer {
    child: Child,
    lines: Arc<Mutex<Vec<Value>>>,
}

impl Tracer {
    pub fn start(extra: &[&str]) -> Tracer {
        Tracer::start_ticking("0.2", extra)
    }

    /// [`Tracer::start`] with stats (and the counters' reads) every `secs` seconds.
    pub fn start_ticking(secs: &str, extra: &[&str]) -> Tracer {
        Tracer::start_env(secs, extra, &[])
    }

    /// [`Tracer::start_ticking`] with these environment variables set.
    pub fn start_env(secs: &str, extra: &[&str], env: &[(&str, &str)]) -> Tracer {
        let mut child = Command::new(tracer_bin())
            .envs(env.iter().copied())
            .args([
                "attach",
                "--no-tui",
                "--duration",
                "120s",
                "--stats-every",
                secs,
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawning tracer");
        let out = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let v: Value =
                    serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON: {line}: {e}"));
                sink.lock().unwrap().push(v);
            }
        });
        let t = Tracer { child, lines };
        t.wait_for("the ready line", Duration::from_secs(60), |v| {
            v["type"] == "ready"
        });
        t
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn lines(&self) -> Vec<Value> {
        self.lines.lock().unwrap().clone()
    }

    /// Event payloads (with the event's header fields merged in) matching `pred`.
    pub fn events(&self, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        self.lines()
            .into_iter()
            .filter(|v| v["type"] == "event")
            .map(|v| v["event"].clone())
            .filter(|e| pred(e))
            .collect()
    }

    /// A tracer tracking allocations of `filter` (no event lines, a 1 s leak grace, then
    /// `extra`), once its filter line has come (within `wait`: a VM is slower); with that
    /// line's `filter` object.
    pub fn tracking(filter: &str, extra: &[&str], wait: Duration) -> (Tracer, Value) {
        let mut args = vec!["--no-events", "--alloc-filter", filter];
        if !extra.contains(&"--leak-grace") {
            args.extend_from_slice(&["--leak-grace", "1s"]);
        }
        args.extend_from_slice(extra);
        let t = Tracer::start(&args);
        let line = t.wait_for("the filter line", wait, |v| v["type"] == "alloc_filter");
        (t, line["filter"].clone())
    }

    /// The leak report of the mount at `target`.
    pub fn leak_report(&self, target: &str, timeout: Duration) -> Value {
        self.wait_for(&format!("the leak report of {target}"), timeout, |v| {
            v["type"] == "leak_report" && v["mount"]["target"] == target
        })
    }

    /// Waits for a line matching `pred`; panics with the tail of the stream if none comes.
    pub fn wait_for(&self, what: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        // Only new lines are looked at on each pass: the stream can be long.
        let mut seen = 0;
        loop {
            // Copied out first: `pred` may look at the stream itself (and so take the lock).
            let fresh: Vec<Value> = self.lines.lock().unwrap()[seen..].to_vec();
            seen += fresh.len();
            if let Some(v) = fresh.into_iter().find(|v| pred(v)) {
                return v;
            }
            if start.elapsed() > timeout {
                let lines = self.lines();
                let tail: Vec<String> =
                    lines.iter().rev().take(30).map(|v| v.to_string()).collect();
                // How far behind the kernel the tracer's output is tells a loaded machine
                // (the tracer still draining old records) from a notice that never came.
                let last_ts = lines
                    .iter()
                    .rev()
                    .find_map(|v| v["event"]["ts_ns"].as_u64());
                let behind = last_ts.map_or("no events yet".to_string(), |ts| {
                    format!(
                        "{:.1} s behind",
                        (tracer::kernel::clock::boottime_ns().saturating_sub(ts)) as f64 / 1e9
                    )
                });
                panic!(
                    "timed out waiting for {what}; the tracer's output is {behind}; last lines, newest first:\n{}",
                    tail.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for an engine notice (`verdict`, `culprit_released`, `story_closed`, ...).
    pub fn wait_notice(&self, what: &str, kind: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.wait_for(what, Duration::from_secs(20), |v| {
            v["type"] == "notice" && v["notice"] == kind && pred(v)
        })
    }

    pub fn notices(&self, kind: &str) -> Vec<Value> {
        self.lines()
            .into_iter()
            .filter(|v| v["type"] == "notice" && v["notice"] == kind)
            .collect()
    }

    pub fn wait_event(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.wait_for(what, Duration::from_secs(20), |v| {
            v["type"] == "event" && pred(&v["event"])
        })["event"]
            .clone()
    }

    /// The mechanism the tracer got for `hook` (`fentry`, `kprobe`, `raw_tracepoint`, ...),
    /// from its `hooks` line; None when the hook is not attached.
    pub fn mechanism(&self, hook: &str) -> Option<String> {
        self.lines()
            .iter()
            .filter(|v| v["type"] == "hooks")
            .flat_map(|v| v["hooks"].as_array().cloned().unwrap_or_default())
            .find(|h| h["hook"] == hook)
            .and_then(|h| h["mechanism"].as_str().map(str::to_string))
    }

    /// Whether a file's release is seen where it happens (so who released it, and through
    /// which deferred work, can be checked): with a kernel-function hook on `__fput`
    /// (fentry/fexit or kprobe/kretprobe), or on
    /// kernels (6.7 on) that free the `struct file` inside `__fput`. Before 6.7 the free is
    /// an RCU callback, run later by whichever task is on the CPU: there the tracepoint
    /// tier (the `filp` cache's free) knows when a file went, not by whom.
    pub fn release_seen_in_place(&self) -> bool {
        matches!(
            self.mechanism("__fput").as_deref(),
            Some("fentry" | "fexit" | "kprobe" | "kretprobe")
        ) || kernel_at_least(6, 7)
    }

    /// SIGTERM, then the `end` line; asserts a clean exit.
    pub fn stop(mut self) -> Vec<Value> {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().expect("waiting for tracer");
        assert!(status.success(), "tracer exited with {status}");
        std::thread::sleep(Duration::from_millis(100));
        let lines = self.lines();
        let end = lines
            .iter()
            .find(|v| v["type"] == "end")
            .expect("an end line");
        assert_eq!(end["stopped_by"], "SIGTERM");
        lines
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        // A failed test shows what the kernel side counted: records lost, runs skipped
        // by recursion (per program), records sent per kind.
        if std::thread::panicking()
            && let Some(s) = self.lines().iter().rev().find(|v| v["type"] == "stats")
        {
            eprintln!(
                "tracer's last stats: drops {} recursion_misses {} records {} engine {}",
                s["stats"]["drops"],
                s["stats"]["recursion_misses"],
                s["stats"]["records"],
                s["engine"]
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `n` rounds of a repeated scenario, scaled by `TRACER_TEST_ROUNDS_PERCENT` (default 100;
/// the VM tier runs 50: a round takes seconds in its emulated guests), at least 1.
pub fn rounds(n: u32) -> u32 {
    let pct: u32 = std::env::var("TRACER_TEST_ROUNDS_PERCENT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    (n * pct / 100).max(1)
}

/// Whether the running kernel's release is at least `major.minor`.
pub fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut it = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0)) >= (major, minor)
}

/// Our programs still loaded after the tracer exited, given the kernel a moment to free
/// them (program release is deferred to RCU after the last fd closes).
pub fn leftover_programs() -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let left = our_programs_loaded();
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The names of our programs loaded in the kernel right now.
pub fn our_programs_loaded() -> Vec<String> {
    // Full program names; the kernel keeps the first 15 bytes.
    const OURS: &[&str] = &[
        "sys_enter_umount",
        "sys_exit_mount_family",
        "raw_kmem_cache_free",
        "raw_workqueue_execute_start",
        "sys_exit_open_family",
        "io_uring_file_get",
        "snapshot_task_file",
        "alloc_rcu_scan",
        "raw_percpu_alloc",
    ];
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter_map(|p| p.name_as_str().map(str::to_string))
        .filter(|n| {
            OURS.iter()
                .any(|o| o.as_bytes()[..o.len().min(15)] == *n.as_bytes())
        })
        .collect()
}

pub fn run(cmd: &str, args: &[&str]) -> std::process::Output {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {cmd}: {e}"))
}

/// A real tmpfs mount in a fresh directory, lazily unmounted and removed on drop.
pub struct TmpMount {
    pub path: PathBuf,
}

impl TmpMount {
    pub fn new(tag: &str) -> TmpMount {
        let path = std::env::temp_dir().join(format!("tracer-test-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap();
        let out = run(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                "size=16m",
                "tracer-test",
                path.to_str().unwrap(),
            ],
        );
        assert!(
            out.status.success(),
            "mount failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        TmpMount { path }
    }

    pub fn str(&self) -> &str {
        self.path.to_str().unwrap()
    }

    pub fn mount_id(&self) -> i64 {
        mount_id_of(&self.path).expect("mount in mountinfo")
    }
}

impl Drop for TmpMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).output();
        let _ = std::fs::remove_dir(&self.path);
    }
}

/// The mount id of the topmost mount at `path`, from /proc/self/mountinfo.
pub fn mount_id_of(path: &Path) -> Option<i64> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    text.lines()
        .filter(|l| l.split(' ').nth(4) == path.to_str())
        .filter_map(|l| l.split(' ').next()?.parse().ok())
        .next_back()
}

/// umount(2) directly: the errno, not umount(8)'s exit code.
pub fn umount(path: &Path) -> Result<(), i32> {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid C string.
    if unsafe { libc::umount2(c.as_ptr(), 0) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap())
    }
}

/// umount(2)'s "device or resource busy".
pub const EBUSY: i32 = 16;

/// Retries umount until it succeeds (the references go away out of line), for up to 15 s;
/// how many EBUSY came first.
pub fn umount_eventually(path: &Path) -> usize {
    umount_within(path, Duration::from_secs(15), Duration::from_millis(20))
}

/// Retries umount every `poll` until it succeeds, for up to `limit`; how many EBUSY came
/// first.
pub fn umount_within(path: &Path, limit: Duration, poll: Duration) -> usize {
    let deadline = Instant::now() + limit;
    let mut failures = 0;
    loop {
        match umount(path) {
            Ok(()) => return failures,
            Err(EBUSY) if Instant::now() < deadline => {
                failures += 1;
                std::thread::sleep(poll);
            }
            Err(e) => panic!(
                "umount {}: errno {e} after {failures} EBUSY",
                path.display()
            ),
        }
    }
}

/// A fresh path `name` in this test binary's own temporary directory.
pub fn tmp(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let stem = exe.file_stem().unwrap().to_string_lossy().into_owned();
    let dir = std::env::temp_dir().join(format!("tracer-test-{stem}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    let _ = std::fs::remove_file(&p);
    p
}

/// In a scenario child (`scenario_child` in the test files): the scenario to play and its
/// arguments; `None` in the test run itself.
pub fn scenario() -> Option<(String, String)> {
    let scenario = std::env::var("TRACER_SCENARIO").ok()?;
    Some((
        scenario,
        std::env::var("TRACER_SCENARIO_ARGS").unwrap_or_default(),
    ))
}

/// The `hold` scenario: creates the comma-separated files and keeps them open.
pub fn hold_files(args: &str) -> Vec<std::fs::File> {
    args.split(',')
        .map(|p| std::fs::File::create(p).unwrap())
        .collect()
}

/// The `uring` scenario: the comma-separated files registered in an io_uring ring, our
/// own fds closed, so that the ring is their only holder.
pub fn ring_holding(args: &str) -> io_uring::IoUring {
    use std::os::fd::AsRawFd as _;
    let files = hold_files(args);
    let ring = io_uring::IoUring::new(8).unwrap();
    let fds: Vec<i32> = files.iter().map(|f| f.as_raw_fd()).collect();
    ring.submitter().register_files(&fds).unwrap();
    drop(files);
    ring
}

/// Plays the scenarios several test binaries share (`hold`: the files kept open; `uring`:
/// held by a ring alone, which after a kill -9 lets them go through io_ring_exit_work and
/// delayed_fput; `sleep`: nothing held), then READY and the long sleep.
pub fn play_shared_scenario(scenario: &str, args: &str) {
    let held: (Vec<std::fs::File>, Option<io_uring::IoUring>) = match scenario {
        "hold" => (hold_files(args), None),
        "uring" => (vec![], Some(ring_holding(args))),
        "sleep" => (vec![], None),
        other => panic!("unknown scenario {other}"),
    };
    ready_then_sleep();
    drop(held);
}

/// A scenario child's last words: READY to the test, then a long sleep (the test kills it).
pub fn ready_then_sleep() {
    println!("READY");
    std::thread::sleep(Duration::from_secs(600));
}

/// Runs this test binary again as a child playing `scenario` (see `scenario_child` in the
/// test files), with `args` in TRACER_SCENARIO_ARGS.
pub fn spawn_scenario(test_fn: &str, scenario: &str, args: &str) -> Scenario {
    let child = Command::new(std::env::current_exe().unwrap())
        .args([test_fn, "--exact", "--nocapture", "--test-threads=1"])
        .env("TRACER_SCENARIO", scenario)
        .env("TRACER_SCENARIO_ARGS", args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawning scenario child");
    Scenario(child)
}

/// A scenario child; killed if a test fails while it runs.
pub struct Scenario(pub Child);

impl Scenario {
    pub fn id(&self) -> u32 {
        self.0.id()
    }

    /// Sends a line to the child's stdin (scenarios that wait for a cue read one).
    pub fn cue(&mut self, line: &str) {
        use std::io::Write;
        let stdin = self.0.stdin.as_mut().expect("piped stdin");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }
}

impl Drop for Scenario {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads the child's stdout until it prints `READY` (it then holds its references). The
/// test harness writes `test scenario_child ... ` before it on the same line.
pub fn wait_ready(child: &mut Scenario) {
    wait_line(child, "READY")
}

/// Reads the child's stdout until a line ends with `word`. Reads byte by byte so nothing
/// after the line is swallowed by a buffer.
pub fn wait_line(child: &mut Scenario, word: &str) {
    let out = child.0.stdout.as_mut().unwrap();
    let mut r = BufReader::with_capacity(1, out);
    let mut line = String::new();
    loop {
        line.clear();
        let n = r.read_line(&mut line).unwrap();
        assert!(n > 0, "scenario child exited before {word}");
        if line.trim_end().ends_with(word) {
            return;
        }
    }
}

pub fn kill9(child: &mut Scenario) -> std::process::ExitStatus {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.0.wait().unwrap()
}

/// An xfs (or another type's) filesystem on a free loop device (`losetup --find`), torn
/// down on drop.
pub struct LoopXfs {
    pub img: std::path::PathBuf,
    pub dev: String,
    pub dir: std::path::PathBuf,
    pub fs_type: &'static str,
}

impl LoopXfs {
    pub fn new(tag: &str) -> LoopXfs {
        Self::of_type(tag, "xfs")
    }

    /// `fs_type`'s mkfs (`mkfs.xfs`, `mkfs.ext4`, ...) on a fresh image.
    pub fn of_type(tag: &str, fs_type: &'static str) -> LoopXfs {
        let base = std::env::temp_dir().join(format!("tracer-test-{tag}-{}", std::process::id()));
        let img = base.with_extension("img");
        let dir = base;
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::File::create(&img)
            .unwrap()
            .set_len(320 << 20)
            .unwrap();
        let mkfs = format!("mkfs.{fs_type}");
        let force = if fs_type == "xfs" { "-f" } else { "-F" };
        let out = run(&mkfs, &["-q", force, img.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{mkfs}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = run("losetup", &["--find", "--show", img.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "losetup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let dev = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let l = LoopXfs {
            img,
            dev,
            dir,
            fs_type,
        };
        l.mount().expect("mounting the fresh xfs");
        l
    }

    pub fn mount(&self) -> Result<(), i32> {
        let c = |s: &str| std::ffi::CString::new(s).unwrap();
        let (dev, dir, ty) = (c(&self.dev), c(self.dir.to_str().unwrap()), c(self.fs_type));
        // SAFETY: valid C strings, no data.
        let rc =
            unsafe { libc::mount(dev.as_ptr(), dir.as_ptr(), ty.as_ptr(), 0, std::ptr::null()) };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error().raw_os_error().unwrap())
        }
    }

    pub fn dir_s(&self) -> String {
        self.dir.to_str().unwrap().to_string()
    }
}

impl Drop for LoopXfs {
    fn drop(&mut self) {
        let _ = run("umount", &["-l", self.dir.to_str().unwrap()]);
        // The loop device goes once nothing uses it any more.
        for _ in 0..50 {
            if run("losetup", &["-d", &self.dev]).status.success() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = std::fs::remove_file(&self.img);
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// The objects of a classified leak report's parts of `class` (`earlier` or this window's):
/// their addresses.
pub fn part_ptrs(report: &Value, class: &str, earlier: bool) -> Vec<String> {
    report["parts"]
        .as_array()
        .unwrap_or_else(|| panic!("a classified report: {report:#}"))
        .iter()
        .filter(|p| p["class"] == class && p["earlier"] == earlier)
        .flat_map(|p| p["object_list"].as_array().unwrap().clone())
        .map(|o| o["ptr"].as_str().unwrap().to_string())
        .collect()
}

/// Checks the reports of healthy mount cycles of one filesystem type, whatever the machine
/// did before (the first mount of a type since boot makes tables it keeps, e.g. xfs's UUID
/// table): no confirmed leak in any of them; what the first cycle kept is unconfirmed (or
/// uncertain) there, and listed as one-time by every later report while still allocated.
pub fn assert_healthy_cycles(reports: &[Value]) {
    let mut first_kept: Vec<String> = vec![];
    for (i, r) in reports.iter().enumerate() {
        let text = r["text"].as_str().unwrap();
        eprintln!("{text}");
        assert_eq!(r["cycle"], i as u64 + 1, "{text}");
        assert_eq!(
            r["confirmed"],
            0,
            "confirmed leaks in cycle {}:\n{text}",
            i + 1
        );
        assert!(!text.contains("unreferenced object"), "{text}");
        let counts = &r["counts"];
        if i == 0 {
            assert_eq!(counts["one_time"], 0, "{text}");
            first_kept = part_ptrs(r, "unconfirmed", false);
            if !first_kept.is_empty() {
                assert!(text.contains("unconfirmed object 0x"), "{text}");
                assert!(
                    text.contains("rule: unconfirmed: seen in 1 cycle"),
                    "{text}"
                );
            }
        } else {
            // Objects a later cycle keeps are possible (a free no counter showed as missed):
            // they must not be confirmed, which the check above makes sure of.
            if counts["unconfirmed"] != 0 {
                eprintln!(
                    "note: cycle {} kept {} unconfirmed objects",
                    i + 1,
                    counts["unconfirmed"]
                );
            }
            let one_time = part_ptrs(r, "one_time", true);
            let referenced = part_ptrs(r, "referenced", true);
            for p in &first_kept {
                assert!(
                    one_time.contains(p) || referenced.contains(p),
                    "{p}, kept by cycle 1, is neither one-time nor referenced in cycle {}:\n{text}",
                    i + 1
                );
            }
            // Everything from earlier cycles is one-time or uncertain: nothing else.
            assert_eq!(r["earlier_counts"]["confirmed"], 0, "{text}");
            if !one_time.is_empty() {
                assert!(text.contains("one-time object 0x"), "{text}");
                assert!(text.contains("rule: one-time: from cycle 1 of "), "{text}");
            }
        }
    }
}

/// The `mount_made` event the mount call of mount `id` at `target` got agrees with
/// mountinfo: id, parent, device, mount point (what the program read from the kernel's
/// `struct mount` at the call's exit).
pub fn mount_made_agrees(tracer: &Tracer, id: i64, target: &str) -> Value {
    let line = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .find(|l| l.split(' ').next() == Some(&id.to_string()))
        .map(str::to_string)
        .expect("the mount in mountinfo");
    let cols: Vec<&str> = line.split(' ').collect();
    let (major, minor) = cols[2].split_once(':').unwrap();
    let seen = tracer.wait_for("the mount the call made", Duration::from_secs(30), |v| {
        v["event"]["payload"]["type"] == "mount_made"
            && v["event"]["payload"]["mount"]["mount_id"] == id
            && v["event"]["payload"]["mount"]["mount_point"] == target
    });
    let mi = &seen["event"]["payload"]["mount"];
    assert_eq!(mi["parent_id"].to_string(), cols[1], "{seen:#}");
    assert_eq!(mi["major"].to_string(), major, "{seen:#}");
    assert_eq!(mi["minor"].to_string(), minor, "{seen:#}");
    seen
}

/// The last line of type `kind` in a stopped tracer's output.
pub fn last_of<'a>(lines: &'a [Value], kind: &str) -> &'a Value {
    lines
        .iter()
        .rev()
        .find(|v| v["type"] == kind)
        .unwrap_or_else(|| panic!("no {kind} line in the tracer's output"))
}
