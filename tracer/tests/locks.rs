//! Lock conflicts explained, live (issue 15, the TigerBeetle race): a process takes a lock
//! on a file, an io_uring ring (or an in-flight request) holds that file too, the process
//! is SIGKILLed and reaped, and the parent's non-blocking lock fails for a few ms while
//! io_uring's teardown (io_ring_exit_work, then delayed_fput) still holds the file. Real
//! tmpfs mounts, real rings, real kill -9, on the machine's own kernel (tracepoints only).

mod common;

use std::{
    fs::{File, OpenOptions},
    os::fd::AsRawFd,
    path::Path,
    time::{Duration, Instant},
};

use common::*;
use serde_json::Value;

/// Not a test of its own: the child side of the scenarios (see `spawn_scenario`).
/// Args: `path,lock,holder` with lock `flock`/`ofd`/`posix` and holder `register` (the fd
/// registered in a ring), `inflight` (a read in flight on a FIFO at `path`), `plain`
/// (only our fd), `cue` (like plain, then unlock when a line comes on stdin).
#[test]
fn scenario_child() {
    let Some((scenario, args)) = scenario() else {
        return;
    };
    assert_eq!(scenario, "lock_holder");
    let a: Vec<&str> = args.split(',').collect();
    let (path, lock, holder) = (a[0], a[1], a[2]);
    if holder == "inflight" {
        let c = std::ffi::CString::new(path).unwrap();
        // SAFETY: a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    }
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(holder != "inflight")
        .truncate(false)
        .open(path)
        .unwrap();
    assert_eq!(try_lock(&f, lock), Ok(()), "the child's own lock");
    let mut ring = io_uring::IoUring::new(8).unwrap();
    let mut buf = vec![0u8; 4096];
    match holder {
        "register" => ring.submitter().register_files(&[f.as_raw_fd()]).unwrap(),
        "inflight" => {
            let read = io_uring::opcode::Read::new(
                io_uring::types::Fd(f.as_raw_fd()),
                buf.as_mut_ptr(),
                4096,
            )
            .build()
            .user_data(7);
            // SAFETY: `buf` outlives the request (this process only ends by being killed).
            unsafe { ring.submission().push(&read).unwrap() };
            ring.submit().unwrap();
        }
        _ => {}
    }
    println!("READY");
    if holder == "cue" {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).unwrap();
        // The parent is about to block on the lock: give it a moment to get there.
        std::thread::sleep(Duration::from_millis(line.trim().parse().unwrap_or(1)));
        // SAFETY: our own fd.
        unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_UN) };
        println!("UNLOCKED");
    }
    std::thread::sleep(Duration::from_secs(600));
    drop((ring, buf, f));
}

/// One non-blocking lock attempt: Ok, or the errno.
fn try_lock(f: &File, lock: &str) -> Result<(), i32> {
    let fd = f.as_raw_fd();
    // SAFETY: plain syscalls on our own fd with a valid `struct flock`.
    let rc = unsafe {
        match lock {
            "flock" => libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB),
            "ofd" | "posix" => {
                let mut fl: libc::flock = std::mem::zeroed();
                fl.l_type = libc::F_WRLCK as i16;
                fl.l_whence = libc::SEEK_SET as i16;
                let cmd = if lock == "ofd" {
                    libc::F_OFD_SETLK
                } else {
                    libc::F_SETLK
                };
                libc::fcntl(fd, cmd, &fl)
            }
            other => panic!("lock kind {other}"),
        }
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap())
    }
}

/// The parent's side of a round: right after the holder was reaped, lock the file
/// non-blocking until it works (the callers' retry loop). Returns the failed attempts.
fn lock_until_free(path: &Path, lock: &str) -> (u32, File) {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let start = Instant::now();
    let mut failed = 0;
    loop {
        match try_lock(&f, lock) {
            Ok(()) => return (failed, f),
            Err(e) if e == libc::EWOULDBLOCK || e == libc::EACCES => failed += 1,
            Err(e) => panic!("lock on {}: errno {e}", path.display()),
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{} still locked after 5 s",
            path.display()
        );
        std::thread::sleep(Duration::from_micros(500));
    }
}

fn conflicts_on(tracer: &Tracer, path: &str) -> Vec<Value> {
    tracer
        .notices("lock_conflict")
        .into_iter()
        .filter(|n| n["path"] == path)
        .collect()
}

/// What the verdict says holds the dead process's file: its ring, its in-flight request,
/// or (when the ring let go between the kill and the conflict) the deferred put.
fn holder_kinds(v: &Value) -> Vec<String> {
    v["holder"]["file"]["holders"]
        .as_array()
        .map(|hs| {
            hs.iter()
                .map(|h| h["kind"].as_str().unwrap_or("?").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Rounds of: child locks and lets io_uring hold the file, kill -9, reap, parent locks
/// non-blocking in a loop. Every round that saw conflicts must have one verdict naming the
/// file, the dead owner (killed by us), io_uring as the holder, and the release.
/// Rounds of the scenario until `enough` of them conflicted or `rounds` were run: the
/// conflicted rounds and the failed attempts in all.
fn dead_holder_rounds(
    test: &str,
    lock: &str,
    holder: &str,
    rounds: u32,
    enough: u32,
) -> (u32, u32) {
    let tracer = Tracer::start(&[]);
    let me = std::process::id() as i64;
    let m = TmpMount::new(test);
    let mut conflicted_rounds = 0;
    let mut conflicts = 0;
    let mut raced = 0;
    let mut kept = Vec::new();
    let mut ran = 0;
    for round in 0..rounds {
        if conflicted_rounds >= enough {
            break;
        }
        ran += 1;
        let path = m.path.join(format!("data-{round}"));
        let ps = path.to_str().unwrap().to_string();
        let mut child = spawn_scenario(
            "scenario_child",
            "lock_holder",
            &format!("{ps},{lock},{holder}"),
        );
        wait_ready(&mut child);
        let pid = child.id() as i64;
        kill9(&mut child);
        let (failed, f) = lock_until_free(&path, lock);
        kept.push(f);
        if failed == 0 {
            assert!(
                conflicts_on(&tracer, &ps).is_empty(),
                "a verdict without a conflict"
            );
            continue;
        }
        conflicted_rounds += 1;
        conflicts += failed;
        let v = tracer.wait_notice("the lock verdict", "lock_conflict", |n| n["path"] == ps);
        eprintln!(
            "round {round}: {failed} failed attempts\n{}",
            v["text"].as_str().unwrap()
        );
        assert_eq!(v["caller"]["tgid"], me, "{v:#}");
        assert_eq!(v["outcome"]["kind"], "failed", "{v:#}");
        if v["holder"].is_null() {
            // The holding lock left the inode's list between the conflict and the
            // tracepoint that reads the list (the dead task's ring let go right then; a
            // kernel that preempts can stop the caller in between, as 7.2 did once): the
            // verdict must say so. Most rounds must still name the holder (below).
            let text = v["text"].as_str().unwrap();
            assert!(
                text.contains("went between the conflict and the look"),
                "{v:#}"
            );
            raced += 1;
            continue;
        }
        let h = &v["holder"];
        assert_eq!(h["taken_by"]["pid"], pid, "{v:#}");
        assert_eq!(h["taken_by"]["alive"], false, "{v:#}");
        assert_eq!(h["taken_by"]["killed"]["sig"], 9, "{v:#}");
        assert_eq!(h["taken_by"]["killed"]["sender_tgid"], me, "{v:#}");
        assert_eq!(h["plain"], false, "{v:#}");
        assert_eq!(h["file"]["name"], ps, "{v:#}");
        let kinds = holder_kinds(&v);
        let want = if holder == "register" {
            "uring_fixed"
        } else {
            "uring_req"
        };
        assert!(
            kinds.iter().all(|k| k == want || k == "deferred_put") && !kinds.is_empty(),
            "holders {kinds:?}: {v:#}"
        );
        if let Some(ring) = v["holder"]["file"]["holders"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["kind"] == want)
        {
            assert_eq!(ring["ring"]["owner"]["pid"], pid, "{v:#}");
            assert_eq!(ring["ring"]["owner"]["alive"], false, "{v:#}");
        }
        let text = v["text"].as_str().unwrap();
        assert!(text.contains("killed by SIGKILL"), "{text}");
        assert!(
            text.contains("io_uring") || text.contains("deferred put"),
            "{text}"
        );
        let id = v["id"].clone();
        // One verdict per round; the retries are "still held" lines of its story.
        assert_eq!(conflicts_on(&tracer, &ps).len(), 1, "one verdict per story");
        let r = tracer.wait_notice("the lock's release", "lock_released", |n| {
            n["story"]["verdict_id"] == id
        });
        eprintln!("{}", r["text"].as_str().unwrap());
        assert_eq!(r["how"], "file_closed", "{r:#}");
        let chain = r["chain"].as_array().unwrap();
        let fns: Vec<&str> = chain
            .iter()
            .filter_map(|l| l["function_name"].as_str())
            .collect();
        // The last __fput ran from the deferred-release work (delayed_fput), or from the
        // ring's own teardown when io_uring dropped the last reference in place.
        assert!(
            fns.first().is_some_and(|f| *f == "delayed_fput"
                || *f == "io_ring_exit_work"
                || *f == "io_fallback_req_func"
                || *f == "io_tctx_fallback_work"),
            "{r:#}"
        );
        assert!(r["held_ns"].as_u64().unwrap() > 0, "{r:#}");
        assert!(r["story"]["conflicts"].as_u64().unwrap() >= 1, "{r:#}");
    }
    assert!(
        raced * 2 < conflicted_rounds.max(1),
        "{raced} of {conflicted_rounds} conflicted rounds named no holder"
    );
    // Every failed attempt is a verdict or a "still held" line.
    let paths: Vec<String> = (0..ran)
        .map(|r| {
            m.path
                .join(format!("data-{r}"))
                .to_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let said = tracer.notices("lock_conflict").len() + tracer.notices("lock_still_held").len();
    let said_here = tracer
        .notices("lock_conflict")
        .iter()
        .chain(tracer.notices("lock_still_held").iter())
        .filter(|n| {
            paths
                .iter()
                .any(|p| n["path"] == *p || n["story"]["path"] == *p)
        })
        .count();
    assert_eq!(said_here as u32, conflicts, "all notices: {said}");
    drop(kept);
    tracer.stop();
    (conflicted_rounds, conflicts)
}

#[test]
fn flock_held_by_a_killed_tasks_registered_file() {
    if !kernel_tests_allowed("flock_held_by_a_killed_tasks_registered_file") {
        return;
    }
    let _g = serial();
    // Up to 20 rounds, until 10 conflicted (each one's verdict and release checked): the
    // same bar as 10 of 20, in half the time where the race is lost every time.
    let (most, enough) = (rounds(20), rounds(10));
    let (conflicted, conflicts) =
        dead_holder_rounds("lock-flock-ring", "flock", "register", most, enough);
    eprintln!(
        "flock + registered file: {conflicted} rounds conflicted (of up to {most}), {conflicts} failed attempts"
    );
    // The race the issue is about: on this kernel it is lost nearly every time.
    assert!(
        conflicted >= enough,
        "only {conflicted} of {most} rounds saw the conflict"
    );
}

#[test]
fn ofd_lock_held_by_a_killed_tasks_registered_file() {
    if !kernel_tests_allowed("ofd_lock_held_by_a_killed_tasks_registered_file") {
        return;
    }
    let _g = serial();
    let most = rounds(10);
    let (conflicted, conflicts) =
        dead_holder_rounds("lock-ofd-ring", "ofd", "register", most, most);
    eprintln!(
        "OFD lock + registered file: {conflicted} of {most} rounds conflicted, {conflicts} failed attempts"
    );
    assert!(
        conflicted * 2 >= most,
        "only {conflicted} of {most} rounds saw the conflict"
    );
}

/// A POSIX lock belongs to the process, not the file: its exit (exit_files) removes it
/// whatever io_uring still holds, so no conflict follows the reap, and no verdict.
#[test]
fn posix_lock_of_a_killed_task_goes_with_its_exit() {
    if !kernel_tests_allowed("posix_lock_of_a_killed_task_goes_with_its_exit") {
        return;
    }
    let _g = serial();
    let most = rounds(10);
    let (conflicted, _) = dead_holder_rounds("lock-posix-ring", "posix", "register", most, most);
    eprintln!("POSIX lock + registered file: {conflicted} of {most} rounds conflicted");
    // exit_files() runs before the exit is reported to the parent: never a conflict.
    assert_eq!(conflicted, 0);
}

#[test]
fn flock_held_by_a_killed_tasks_in_flight_read() {
    if !kernel_tests_allowed("flock_held_by_a_killed_tasks_in_flight_read") {
        return;
    }
    let _g = serial();
    // Up to 30 rounds, until 10 conflicted: whether the race is lost depends on timing.
    let (most, enough) = (rounds(30), rounds(10));
    let (conflicted, conflicts) =
        dead_holder_rounds("lock-flock-req", "flock", "inflight", most, enough);
    eprintln!(
        "flock + in-flight read: {conflicted} rounds conflicted (of up to {most}), {conflicts} failed attempts"
    );
    // Measured: 10 of 10 on 6.18 (the cancelled read completes in io_fallback_req_func, a
    // kworker, and its put goes through delayed_fput); 4 of 10 on 7.2 under TCG with three
    // VMs on two cores; 0 of 10 on Debian's 6.1 in the VM (the exiting task completes it
    // itself, before it is reaped). Every conflict that happens is checked above either
    // way; from 6.18 on, some must happen.
    if kernel_at_least(6, 18) {
        assert!(
            conflicted >= 3,
            "only {conflicted} rounds of {most} saw the conflict"
        );
    }
}

/// A live process holding the lock through its fd is named plainly; the story ends with
/// its unlock.
#[test]
fn a_live_holder_is_named_plainly() {
    if !kernel_tests_allowed("a_live_holder_is_named_plainly") {
        return;
    }
    let _g = serial();
    let tracer = Tracer::start(&[]);
    let m = TmpMount::new("lock-live");
    for lock in ["flock", "posix"] {
        let path = m.path.join(format!("live-{lock}"));
        let ps = path.to_str().unwrap().to_string();
        let mut child =
            spawn_scenario("scenario_child", "lock_holder", &format!("{ps},{lock},cue"));
        wait_ready(&mut child);
        let pid = child.id() as i64;
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        for _ in 0..3 {
            assert!(try_lock(&f, lock).is_err(), "the child holds it");
        }
        let v = tracer.wait_notice("the lock verdict", "lock_conflict", |n| n["path"] == ps);
        eprintln!("{}", v["text"].as_str().unwrap());
        let h = &v["holder"];
        assert_eq!(h["taken_by"]["pid"], pid, "{v:#}");
        assert_eq!(h["taken_by"]["alive"], true, "{v:#}");
        assert_eq!(h["plain"], true, "{v:#}");
        let fds = &h["file"]["holders"];
        assert_eq!(fds[0]["kind"], "fd", "{v:#}");
        assert_eq!(fds[0]["task"]["pid"], pid, "{v:#}");
        assert!(fds[0]["fd"].as_i64().unwrap() >= 0, "{v:#}");
        let text = v["text"].as_str().unwrap();
        assert!(text.contains("held by fd"), "{text}");
        assert!(text.contains(&format!("of pid {pid}")), "{text}");
        // The two retries are "still held" lines, not verdicts.
        let id = v["id"].clone();
        let held = tracer.wait_for("the retries", Duration::from_secs(20), |n| {
            n["notice"] == "lock_still_held"
                && n["story"]["verdict_id"] == id
                && n["story"]["conflicts"] == 3
        });
        assert_eq!(
            held["caller"]["tgid"],
            std::process::id() as i64,
            "{held:#}"
        );
        assert_eq!(conflicts_on(&tracer, &ps).len(), 1);
        // flock: unlocked by hand; POSIX: the same call unlocks record locks too.
        if lock == "flock" {
            child.cue("0");
            wait_line(&mut child, "UNLOCKED");
            let r = tracer.wait_notice("the unlock", "lock_released", |n| {
                n["story"]["verdict_id"] == id
            });
            assert_eq!(r["how"], "unlocked", "{r:#}");
            assert_eq!(r["chain"][0]["tgid"], pid, "{r:#}");
        } else {
            kill9(&mut child);
            let r = tracer.wait_notice("the owner's exit", "lock_released", |n| {
                n["story"]["verdict_id"] == id
            });
            assert_eq!(r["how"], "owner_closed", "{r:#}");
        }
        drop(f);
    }
    tracer.stop();
}

/// No verdict for a lock that is free, none for a blocking call whose wait stays under
/// the threshold, one for a wait past it (with its holder and release).
#[test]
fn free_locks_and_short_waits_say_nothing() {
    if !kernel_tests_allowed("free_locks_and_short_waits_say_nothing") {
        return;
    }
    let _g = serial();
    let threshold_ms = 150;
    let tracer = Tracer::start(&["--lock-wait-ms", &threshold_ms.to_string()]);
    let m = TmpMount::new("lock-waits");
    // A free lock: taken at once, nothing to say.
    let free = m.path.join("free");
    File::create(&free).unwrap();
    for lock in ["flock", "ofd", "posix"] {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&free)
            .unwrap();
        assert_eq!(try_lock(&f, lock), Ok(()));
        drop(f);
    }
    // Blocking waits: one the holder ends at once, one it ends after twice the threshold.
    let mut waited = Vec::new();
    for (name, hold_ms) in [("short", 0u64), ("long", 2 * threshold_ms)] {
        let path = m.path.join(name);
        let ps = path.to_str().unwrap().to_string();
        let mut child = spawn_scenario("scenario_child", "lock_holder", &format!("{ps},flock,cue"));
        wait_ready(&mut child);
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        child.cue(&hold_ms.to_string());
        let t = Instant::now();
        // SAFETY: our own fd.
        assert_eq!(unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) }, 0);
        let w = t.elapsed();
        eprintln!("{name}: blocked {w:?}");
        waited.push((ps, w, child.id() as i64));
        drop(f);
        drop(child);
    }
    let (long, long_wait, long_pid) = waited[1].clone();
    assert!(long_wait > Duration::from_millis(threshold_ms));
    let v = tracer.wait_notice("the long wait's verdict", "lock_conflict", |n| {
        n["path"] == long
    });
    eprintln!("{}", v["text"].as_str().unwrap());
    assert_eq!(v["outcome"]["kind"], "waited", "{v:#}");
    assert_eq!(v["outcome"]["ret"], 0, "{v:#}");
    let wait_ns = v["outcome"]["wait_ns"].as_u64().unwrap();
    assert!(wait_ns >= threshold_ms * 1_000_000, "{v:#}");
    assert!(wait_ns <= long_wait.as_nanos() as u64 + 50_000_000, "{v:#}");
    assert_eq!(v["holder"]["taken_by"]["pid"], long_pid, "{v:#}");
    assert_eq!(v["holder"]["plain"], true, "{v:#}");
    let id = v["id"].clone();
    let r = tracer.wait_notice("its release", "lock_released", |n| {
        n["story"]["verdict_id"] == id
    });
    assert_eq!(r["how"], "unlocked", "{r:#}");
    // The short wait (under the threshold) and the free lock said nothing.
    let (short, short_wait, _) = &waited[0];
    if *short_wait < Duration::from_millis(threshold_ms) {
        assert!(
            conflicts_on(&tracer, short).is_empty(),
            "short wait got a verdict"
        );
    }
    assert!(conflicts_on(&tracer, free.to_str().unwrap()).is_empty());
    let lines = tracer.stop();
    assert!(
        !lines.iter().any(|l| l["type"] == "notice"
            && l["notice"].as_str().is_some_and(|k| k.starts_with("lock"))
            && (l["path"] == free.to_str().unwrap()
                || l["story"]["path"] == free.to_str().unwrap())),
        "a notice about the free lock"
    );
}
