//! Pins that are not fds, named at a failed umount: memory mappings whose fd was closed,
//! loop devices and swap files backed by a file on the mount. Real mounts, real
//! processes, real losetup/swapon, on the machine's own kernel.

mod common;

use std::{io::BufRead, os::fd::AsRawFd, path::Path, time::Duration};

use common::*;
use serde_json::Value;

/// Not a test of its own: the child side of the scenarios (see `spawn_scenario`).
#[test]
fn scenario_child() {
    let Some((scenario, args)) = scenario() else {
        return;
    };
    let paths: Vec<&str> = args.split(',').filter(|p| !p.is_empty()).collect();
    match scenario.as_str() {
        // Map each file (8 KiB, shared, read-only), close its fd: the mappings are the only
        // holders. On the cue `munmap`, unmap the first one; then live on.
        "map_then_close" => {
            let mut maps = Vec::new();
            for p in &paths {
                let f = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(p)
                    .unwrap();
                f.set_len(8192).unwrap();
                // SAFETY: a fresh shared read-only mapping of a file we own.
                let addr = unsafe {
                    libc::mmap(
                        std::ptr::null_mut(),
                        8192,
                        libc::PROT_READ,
                        libc::MAP_SHARED,
                        f.as_raw_fd(),
                        0,
                    )
                };
                assert_ne!(addr, libc::MAP_FAILED);
                drop(f);
                maps.push(addr);
            }
            println!("READY");
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line).unwrap();
            // SAFETY: the mapping made above, not used after.
            assert_eq!(unsafe { libc::munmap(maps[0], 8192) }, 0);
            println!("UNMAPPED");
            std::thread::sleep(Duration::from_secs(600));
        }
        // An AIO poll (IOCB_CMD_POLL) on a FIFO under the mount: it stays in flight until
        // the FIFO has data, holding the file; our own fd is closed.
        "aio_poll_then_close" => {
            let fifo = std::ffi::CString::new(paths[0]).unwrap();
            // SAFETY: a valid C string.
            assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
            // Read-only and non-blocking (the kernel refuses an AIO poll of a FIFO opened
            // read-write); with no writer yet, the poll stays pending.
            let f = {
                use std::os::unix::fs::OpenOptionsExt;
                std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NONBLOCK)
                    .open(paths[0])
                    .unwrap()
            };
            let mut ctx: u64 = 0;
            // SAFETY: io_setup writes the context id into `ctx`.
            let rc = unsafe { libc::syscall(libc::SYS_io_setup, 8, &mut ctx as *mut u64) };
            assert_eq!(rc, 0, "io_setup: {}", std::io::Error::last_os_error());
            let iocb = Iocb {
                aio_lio_opcode: IOCB_CMD_POLL,
                aio_fildes: f.as_raw_fd() as u32,
                aio_buf: libc::POLLIN as u64,
                ..Default::default()
            };
            let list = [&iocb as *const Iocb];
            // SAFETY: one valid iocb, alive until this process is killed.
            let rc = unsafe { libc::syscall(libc::SYS_io_submit, ctx, 1, list.as_ptr()) };
            assert_eq!(rc, 1, "io_submit: {}", std::io::Error::last_os_error());
            drop(f);
            println!("READY");
            std::thread::sleep(Duration::from_secs(600));
        }
        other => panic!("unknown scenario {other}"),
    }
}

/// `struct iocb` (uapi, little-endian layout).
#[repr(C)]
#[derive(Default)]
struct Iocb {
    aio_data: u64,
    aio_key: u32,
    aio_rw_flags: i32,
    aio_lio_opcode: u16,
    aio_reqprio: i16,
    aio_fildes: u32,
    aio_buf: u64,
    aio_nbytes: u64,
    aio_offset: i64,
    aio_reserved2: u64,
    aio_flags: u32,
    aio_resfd: u32,
}

const IOCB_CMD_POLL: u16 = 5;

fn is_verdict_for(v: &Value, target: &str) -> bool {
    v["kind"] == "umount_busy" && v["target"] == target
}

fn culprit_named<'a>(verdict: &'a Value, name: &str) -> Option<&'a Value> {
    verdict["culprits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
}

/// A process maps two files on the mount and closes their fds: only the mappings hold
/// them. The failed umount's verdict names both mappings and the process (found by the
/// VMA scan), and counts them in the mount's reference count; munmap of one releases it
/// (and a later verdict names only the other); the process's death releases the other.
#[test]
fn files_mapped_with_their_fds_closed() {
    if !kernel_tests_allowed("files_mapped_with_their_fds_closed") {
        return;
    }
    let _g = serial();
    let tracer = Tracer::start(&[]);
    let m = TmpMount::new("mmap");
    let id = m.mount_id();
    let (a, b) = (m.path.join("mapped-a"), m.path.join("mapped-b"));
    let (a_s, b_s) = (a.to_str().unwrap(), b.to_str().unwrap());
    let mut child = spawn_scenario("scenario_child", "map_then_close", &format!("{a_s},{b_s}"));
    wait_ready(&mut child);
    let pid = child.id() as i64;

    assert_eq!(umount(&m.path), Err(EBUSY));
    let target = m.str().to_string();
    let v = tracer.wait_notice("the verdict", "verdict", |v| is_verdict_for(v, &target));
    let text = v["text"].as_str().unwrap();
    eprintln!("{text}");
    assert_eq!(v["mount"]["id"], id, "{v:#}");
    assert_eq!(v["unexplained"], false, "{v:#}");
    for name in [a_s, b_s] {
        let c = culprit_named(&v, name).unwrap_or_else(|| panic!("{name} not named: {v:#}"));
        assert_eq!(c["state"], "held", "{c:#}");
        let holders = c["holders"].as_array().unwrap();
        assert_eq!(holders.len(), 1, "{c:#}");
        let h = &holders[0];
        assert_eq!(h["kind"], "mmap", "{c:#}");
        assert_eq!(h["task"]["pid"], pid, "{c:#}");
        assert_eq!(h["fd_open"], false, "{c:#}");
        let start =
            u64::from_str_radix(h["start"].as_str().unwrap().trim_start_matches("0x"), 16).unwrap();
        let end =
            u64::from_str_radix(h["end"].as_str().unwrap().trim_start_matches("0x"), 16).unwrap();
        assert_eq!(end - start, 8192, "{h:#}");
    }
    assert!(text.contains(&format!("mapped by pid {pid}")), "{text}");
    assert!(text.contains("fd closed"), "{text}");
    // The reference count: 1 for being mounted and one per mapped file.
    if let Some(r) = v["refs"].as_object().filter(|r| r["complete"] == true) {
        assert_eq!(r["count"], 3, "{v:#}");
        assert_eq!(r["files"], 2, "{v:#}");
        assert!(text.contains("every reference explained"), "{text}");
    }

    // munmap of the first: its file is released, the umount still fails on the second.
    let file_a = culprit_named(&v, a_s).unwrap()["file"].clone();
    child.cue("munmap");
    wait_line(&mut child, "UNMAPPED");
    let r = tracer.wait_notice(
        "the release of the unmapped file",
        "culprit_released",
        |n| n["file"]["file"] == file_a,
    );
    eprintln!("{}", r["text"].as_str().unwrap());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(umount(&m.path), Err(EBUSY));
    let v2 = tracer.wait_notice("the second verdict", "verdict", |v| {
        is_verdict_for(v, &target) && v["attempt"] == 2
    });
    eprintln!("{}", v2["text"].as_str().unwrap());
    assert!(culprit_named(&v2, a_s).is_none(), "{v2:#}");
    let c = culprit_named(&v2, b_s).unwrap_or_else(|| panic!("{b_s} not named: {v2:#}"));
    assert_eq!(c["holders"][0]["kind"], "mmap", "{c:#}");

    // The process dies: its address space goes, and the second file with it.
    let file_b = c["file"].clone();
    kill9(&mut child);
    let r = tracer.wait_notice("the release of the second file", "culprit_released", |n| {
        n["file"]["file"] == file_b
    });
    eprintln!("{}", r["text"].as_str().unwrap());
    umount_eventually(&m.path);
    tracer.stop();
}

/// A loop device bound to a file; detached on drop (even when the test fails).
struct LoopDev(String);

impl LoopDev {
    fn attach(img: &Path) -> LoopDev {
        let out = run("losetup", &["--find", "--show", img.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "losetup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        LoopDev(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    fn detach(&mut self) {
        if !self.0.is_empty() {
            let out = run("losetup", &["-d", &self.0]);
            assert!(out.status.success(), "losetup -d {}: {out:?}", self.0);
            self.0.clear();
        }
    }
}

impl Drop for LoopDev {
    fn drop(&mut self) {
        if !self.0.is_empty() {
            let _ = run("losetup", &["-d", &self.0]);
        }
    }
}

/// An active swap file; swapped off on drop (even when the test fails).
struct SwapOn(String);

impl Drop for SwapOn {
    fn drop(&mut self) {
        if !self.0.is_empty() {
            let _ = run("swapoff", &[&self.0]);
        }
    }
}

fn backing_named<'a>(v: &'a Value, kind: &str, path: &str) -> &'a Value {
    v["backing"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["kind"] == kind && b["path"] == path)
        .unwrap_or_else(|| panic!("no {kind} backing file {path} in {v:#}"))
}

/// A loop device whose backing file is on the mount: the verdict names the device and
/// its file (read from sysfs at the failure), the file's holder is the loop device, and
/// every reference is explained; `losetup -d` releases it.
#[test]
fn a_loop_device_backed_by_a_file_on_the_mount() {
    if !kernel_tests_allowed("a_loop_device_backed_by_a_file_on_the_mount") {
        return;
    }
    let _g = serial();
    let tracer = Tracer::start(&[]);
    let m = TmpMount::new("loopback");
    let img = m.path.join("backing.img");
    let img_s = img.to_str().unwrap().to_string();
    std::fs::File::create(&img)
        .unwrap()
        .set_len(4 << 20)
        .unwrap();
    let mut dev = LoopDev::attach(&img);

    assert_eq!(umount(&m.path), Err(EBUSY));
    let target = m.str().to_string();
    let v = tracer.wait_notice("the verdict", "verdict", |v| is_verdict_for(v, &target));
    let text = v["text"].as_str().unwrap();
    eprintln!("{text}");
    assert_eq!(v["unexplained"], false, "{v:#}");
    let b = backing_named(&v, "loop", &img_s);
    assert_eq!(b["device"], dev.0.as_str(), "{b:#}");
    assert!(b["ino"].as_u64().unwrap() > 0, "{b:#}");
    assert!(
        text.contains(&format!("backing file of {}", dev.0)),
        "{text}"
    );
    // The tracer saw losetup open the file: it is listed, held by the loop device.
    assert_eq!(b["file_listed"], true, "{b:#}");
    let c = culprit_named(&v, &img_s).unwrap_or_else(|| panic!("{img_s} not listed: {v:#}"));
    assert_eq!(c["state"], "held", "{c:#}");
    assert!(
        c["holders"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["kind"] == "backing"
                && h["what"] == "loop"
                && h["device"] == dev.0.as_str()),
        "{c:#}"
    );
    if let Some(r) = v["refs"].as_object().filter(|r| r["complete"] == true) {
        assert_eq!(r["count"], 2, "{v:#}");
        assert!(text.contains("every reference explained"), "{text}");
    }

    let file = c["file"].clone();
    dev.detach();
    let r = tracer.wait_notice("the backing file's release", "culprit_released", |n| {
        n["file"]["file"] == file
    });
    eprintln!("{}", r["text"].as_str().unwrap());
    umount_eventually(&m.path);
    tracer.stop();
}

/// An active swap file on the mount (ext4 on a loop device): the verdict names it (read
/// from /proc/swaps at the failure); swapoff lets the umount through.
#[test]
fn an_active_swap_file_on_the_mount() {
    if !kernel_tests_allowed("an_active_swap_file_on_the_mount") {
        return;
    }
    if !Path::new("/proc/swaps").exists() {
        eprintln!(
            "SKIPPED an_active_swap_file_on_the_mount: this kernel has no swap (no /proc/swaps)"
        );
        return;
    }
    let _g = serial();
    let fs = LoopXfs::of_type("swapfile", "ext4");
    let swap = fs.dir.join("swapfile");
    let swap_s = swap.to_str().unwrap().to_string();
    {
        use std::{io::Write, os::unix::fs::PermissionsExt};
        let mut f = std::fs::File::create(&swap).unwrap();
        f.write_all(&vec![0u8; 16 << 20]).unwrap();
        f.sync_all().unwrap();
        std::fs::set_permissions(&swap, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let out = run("mkswap", &[&swap_s]);
    assert!(out.status.success(), "mkswap: {out:?}");
    let out = run("swapon", &[&swap_s]);
    if !out.status.success() {
        eprintln!(
            "SKIPPED an_active_swap_file_on_the_mount: swapon of a file on ext4 is refused here: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return;
    }
    let mut on = SwapOn(swap_s.clone());
    let tracer = Tracer::start(&[]);

    assert_eq!(umount(&fs.dir), Err(EBUSY));
    let target = fs.dir_s();
    let v = tracer.wait_notice("the verdict", "verdict", |v| is_verdict_for(v, &target));
    let text = v["text"].as_str().unwrap();
    eprintln!("{text}");
    assert_eq!(v["unexplained"], false, "{v:#}");
    let b = backing_named(&v, "swap", &swap_s);
    assert!(b["ino"].as_u64().unwrap() > 0, "{b:#}");
    // swapon ran before the tracer attached: the file is known from /proc/swaps alone,
    // and counts as one reference of its own.
    assert_eq!(b["file_listed"], false, "{b:#}");
    assert!(
        text.contains(&format!("active swap file {swap_s}")),
        "{text}"
    );
    if let Some(r) = v["refs"].as_object().filter(|r| r["complete"] == true) {
        assert_eq!(r["backing"], 1, "{v:#}");
        assert!(text.contains("every reference explained"), "{text}");
    }

    let out = run("swapoff", &[&swap_s]);
    assert!(out.status.success(), "swapoff: {out:?}");
    on.0.clear();
    umount_eventually(&fs.dir);
    tracer.stop();
}

/// A Linux AIO request in flight (a poll on a FIFO under the mount) holds its file after
/// the process closed its fd: the verdict names the process's AIO (1 submitted, none
/// reaped, on that file) and marks the file as named by it; SIGKILL makes exit_aio()
/// cancel the request, the file is released, and the umount goes through.
#[test]
fn an_aio_request_in_flight_holds_its_file() {
    if !kernel_tests_allowed("an_aio_request_in_flight_holds_its_file") {
        return;
    }
    let _g = serial();
    let tracer = Tracer::start(&[]);
    let m = TmpMount::new("aiopoll");
    let fifo = m.path.join("fifo");
    let fifo_s = fifo.to_str().unwrap().to_string();
    let mut child = spawn_scenario("scenario_child", "aio_poll_then_close", &fifo_s);
    wait_ready(&mut child);
    let pid = child.id() as i64;

    assert_eq!(umount(&m.path), Err(EBUSY));
    let target = m.str().to_string();
    let v = tracer.wait_notice("the verdict", "verdict", |v| is_verdict_for(v, &target));
    let text = v["text"].as_str().unwrap();
    eprintln!("{text}");
    let aio = v["aio"]
        .as_array()
        .unwrap_or_else(|| panic!("no AIO in {v:#}"))
        .iter()
        .find(|a| a["task"]["pid"] == pid)
        .unwrap_or_else(|| panic!("no AIO of pid {pid} in {v:#}"));
    assert_eq!(aio["submitted"], 1, "{aio:#}");
    assert_eq!(aio["reaped"], 0, "{aio:#}");
    assert_eq!(aio["files_on_mount"][0], fifo_s.as_str(), "{aio:#}");
    let c = culprit_named(&v, &fifo_s).unwrap_or_else(|| panic!("{fifo_s} not named: {v:#}"));
    // Its fd closed, the file alive: the request holds it.
    assert_eq!(c["state"], "held", "{c:#}");
    assert!(
        c["holders"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["kind"] == "aio" && h["task"]["pid"] == pid && h["unreaped"] == 1),
        "{c:#}"
    );
    assert!(
        text.contains("1 request submitted and not reaped"),
        "{text}"
    );
    if let Some(r) = v["refs"].as_object().filter(|r| r["complete"] == true) {
        assert_eq!(r["count"], 2, "{v:#}");
        assert!(text.contains("every reference explained"), "{text}");
    }

    let file = c["file"].clone();
    kill9(&mut child);
    let r = tracer.wait_notice("the FIFO's release", "culprit_released", |n| {
        n["file"]["file"] == file
    });
    eprintln!("{}", r["text"].as_str().unwrap());
    umount_eventually(&m.path);
    tracer.stop();
}
