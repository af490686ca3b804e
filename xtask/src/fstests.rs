//! `cargo xtask fstests`: the real fstests (xfstests) under `tracer run`.
//!
//! Our users run fstests; the tracer must change no outcome of theirs, give every test its
//! own section, and explain what it reports. This tier checks exactly that on the real
//! suite, on this machine's kernel:
//!
//! 1. fstests is unpacked from `../shared/fstests/fstests-*.tar.gz` into
//!    `target/fstests/fstests` and built there (`make -j2`; cached: rebuilt only when the
//!    tarball's name, size or mtime change, `target/fstests/built.stamp`), its Debian build
//!    dependencies installed first (`setup::FSTESTS_PACKAGES`); our own tests
//!    (`xtask/fstests/tests/`: `generic/388-sigkill`) are copied in and added to their
//!    group list on every run.
//! 2. Two sparse files of 4 GiB in `target/fstests/` on loop devices (`losetup -f
//!    --show`), TEST_DEV made with mkfs (xfs, or ext4 with `--fstyp ext4`), `local.config`
//!    written, the users fstests wants (fsgqa, fsgqa2, 123456-fsgqa) created when missing.
//!    A guard tears it all down (umount, `losetup -d`, the files removed) when the command
//!    ends, fails or is interrupted (Ctrl-C reaches check and the tracer through the
//!    terminal; our handler only notes it, so the guard still runs).
//! 3. The tests run once untraced, then under `tracer run --alloc-filter sym:<fstyp>_
//!    --format json` (each run with its own `RESULT_BASE` under `target/fstests/results/`,
//!    `check -R xunit` so verdicts come from `result.xml`).
//! 4. Checks, each a one-line reason when it fails (the command then exits non-zero): the
//!    same verdict traced and untraced per test; a report section per test; no EBUSY story
//!    on a test whose `.full`/`.out.bad` shows no EBUSY; no unexplained EBUSY story; no
//!    leak (a leak report with objects, or a detached mount pinned at the end) on a test
//!    that passed; 0 records lost; a `.tracer.txt` (mode 0600) beside the results of each
//!    test with an EBUSY story or a leak, and a `result.xml` that still parses. The wall
//!    times of both runs are printed, not checked.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use quick_xml::{Reader, events::Event};
use serde_json::Value;

use crate::{build, setup, util};

/// The curated list: quick tests (seconds each on 2 cores) covering mount/umount cycles,
/// shutdowns, fsstress (whose workers submit io_uring and AIO IO), io_uring fsx, then
/// stock generic/388 and our SIGKILL variant of it (both bounded by SOAK_DURATION).
pub const CURATED: &[&str] = &[
    "generic/013",         // fsstress on TEST_DIR
    "generic/042",         // shutdown after a falloc'd file, mount cycles
    "generic/050",         // read-only block device mounts, shutdown
    "generic/052",         // shutdown, log recovery on mount
    "generic/083",         // fsstress to ENOSPC, mount cycles
    "generic/392",         // fsync, shutdown, mount cycles
    "generic/468",         // fsync after falloc, shutdown
    "generic/505",         // fsync, shutdown, remount
    "generic/616",         // io_uring fsx (buffered)
    "generic/388",         // stock: fsstress, shutdown, cycle mount (SIGPIPE'd fsstress)
    "generic/388-sigkill", // ours: fsstress killed with -9, umount EBUSY retried
];

/// Sparse file size of each loop device.
const DEVICE_BYTES: u64 = 4 << 30;

const USERS: &[&str] = &["fsgqa", "fsgqa2", "123456-fsgqa"];

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Fstyp {
    Xfs,
    Ext4,
}

impl Fstyp {
    fn name(self) -> &'static str {
        match self {
            Fstyp::Xfs => "xfs",
            Fstyp::Ext4 => "ext4",
        }
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// A test to run, as check names it (repeatable; default: the curated list).
    #[arg(long = "test", value_name = "TEST")]
    pub tests: Vec<String>,
    /// The filesystem under test.
    #[arg(long, value_enum, default_value_t = Fstyp::Xfs)]
    pub fstyp: Fstyp,
    /// SOAK_DURATION for soak tests (generic/388 and its SIGKILL variant), in seconds.
    #[arg(long, default_value_t = 12)]
    pub soak_duration: u64,
    /// Skip the untraced run (then verdicts are not compared).
    #[arg(long)]
    pub no_untraced: bool,
    /// Trace with the debug tracer (default: the release one, as users run it and as the
    /// VM tier ships it: the debug engine is several times slower, and under a burst of
    /// records it falls behind the ring buffer where the release one keeps up).
    #[arg(long)]
    pub debug: bool,
    /// Only build fstests (and install our tests into it); no root needed.
    #[arg(long)]
    pub build_only: bool,
}

impl Default for Args {
    fn default() -> Self {
        Args {
            tests: vec![],
            fstyp: Fstyp::Xfs,
            soak_duration: 12,
            no_untraced: false,
            debug: false,
            build_only: false,
        }
    }
}

pub fn main(args: Args) -> Result<()> {
    run(&args)
}

pub fn run(args: &Args) -> Result<()> {
    if args.build_only {
        setup::ensure_fstests_deps()?;
        let base = util::target_dir().join("fstests");
        std::fs::create_dir_all(&base)?;
        let tree = build_fstests(&base)?;
        return install_our_tests(&tree);
    }
    if !util::is_root() {
        if util::in_ci() {
            bail!("CI=true but not running as root: fstests and the tracer need root");
        }
        eprintln!(
            "xtask: fstests SKIPPED: not running as root (fstests mounts filesystems and the \
             tracer loads eBPF programs; `sudo -E cargo xtask fstests`)"
        );
        return Ok(());
    }
    let mut tests: Vec<String> = if args.tests.is_empty() {
        CURATED.iter().map(|s| s.to_string()).collect()
    } else {
        args.tests.clone()
    };
    // check runs a test named twice once: one row each.
    let mut named = std::collections::HashSet::new();
    tests.retain(|t| named.insert(t.clone()));
    let started = Instant::now();
    util::interrupted_flag();
    setup::ensure_fstests_deps()?;
    build::build_tracer(!args.debug)?;
    let tracer = build::tracer_binary(!args.debug);
    if !bpf_usable(&tracer)? {
        return Ok(());
    }
    let base = util::target_dir().join("fstests");
    let (tree, mut devices) = prepare(&base, args.fstyp)?;
    let results_root = base.join("results");
    let soak = args.soak_duration.to_string();

    let untraced = if args.no_untraced {
        None
    } else {
        let dir = results_root.join("untraced");
        let _ = std::fs::remove_dir_all(&dir);
        let mut cmd = Command::new("./check");
        cmd.arg("-R").arg("xunit").args(&tests);
        let wall = run_check(&mut cmd, &tree, &dir, &soak)?;
        util::check_interrupted()?;
        Some((dir, wall))
    };

    let dir = results_root.join("traced");
    let _ = std::fs::remove_dir_all(&dir);
    let record = base.join("traced.trace");
    let report = base.join("traced.report.json");
    let _ = std::fs::remove_file(&record);
    let _ = std::fs::remove_file(&report);
    let mut cmd = Command::new(&tracer);
    cmd.arg("run")
        .arg("--alloc-filter")
        .arg(format!("sym:{}_", args.fstyp.name()))
        .arg("--format")
        .arg("json")
        .arg("--record")
        .arg(&record)
        .arg("--report")
        .arg(&report)
        .arg("--")
        .arg("./check")
        .arg("-R")
        .arg("xunit")
        .args(&tests);
    let traced_wall = run_check(&mut cmd, &tree, &dir, &soak)?;
    util::check_interrupted()?;
    devices.teardown();

    let mut outcome = assess(
        &tests,
        untraced.as_ref().map(|(d, w)| (d.as_path(), *w)),
        (&dir, traced_wall),
        &report,
    )?;
    print!("{}", outcome.table);
    // Across the tier's runs: this recording joins the kept ones.
    if record.is_file() {
        let runs = crate::fstests_runs::keep(&base, &record, args.fstyp.name())?;
        outcome
            .failures
            .extend(crate::fstests_runs::report(&tracer, &base, &runs, &tests)?);
    }
    eprintln!(
        "xtask: fstests ({}): {} tests, untraced {}, traced {}; whole step {:.0} s",
        args.fstyp.name(),
        tests.len(),
        untraced
            .as_ref()
            .map_or("not run".to_string(), |(_, w)| format!(
                "{:.1} s",
                w.as_secs_f64()
            )),
        format_args!("{:.1} s", traced_wall.as_secs_f64()),
        started.elapsed().as_secs_f64()
    );
    if !outcome.failures.is_empty() {
        for f in &outcome.failures {
            eprintln!("xtask: fstests: FAILED: {f}");
        }
        bail!("fstests: {} check(s) failed", outcome.failures.len());
    }
    eprintln!("xtask: fstests: all checks passed");
    Ok(())
}

/// The fstests tree built (our tests in it), its users, and its loop devices with the tree's
/// `local.config` naming them: what the tier and the bench's fstests workload run check on.
pub(crate) fn prepare(base: &Path, fstyp: Fstyp) -> Result<(PathBuf, Devices)> {
    std::fs::create_dir_all(base)?;
    let tree = build_fstests(base)?;
    install_our_tests(&tree)?;
    ensure_users()?;
    util::check_interrupted()?;
    let devices = Devices::create(base, fstyp)?;
    devices.write_local_config(&tree)?;
    Ok((tree, devices))
}

/// `tracer doctor --json`'s `can_run`; under CI a tracer that cannot run is an error,
/// elsewhere a skip.
fn bpf_usable(tracer: &Path) -> Result<bool> {
    let out = util::probe(Command::new(tracer).args(["doctor", "--json"]));
    let can_run = out
        .and_then(|o| serde_json::from_str::<Value>(&o).ok())
        .and_then(|v| v["can_run"].as_bool())
        .unwrap_or(false);
    if can_run {
        return Ok(true);
    }
    if util::in_ci() {
        bail!("CI=true but the tracer cannot run here (`tracer doctor` says why)");
    }
    eprintln!("xtask: fstests SKIPPED: the tracer cannot run here (`tracer doctor` says why)");
    Ok(false)
}

/// The tarball in ../shared/fstests (the newest, if several).
fn tarball() -> Result<PathBuf> {
    let dir = util::workspace_root().join("../shared/fstests");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {} (the fstests tarball)", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("fstests-") && n.ends_with(".tar.gz"))
        })
        .collect();
    found.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    found
        .pop()
        .with_context(|| format!("no fstests-*.tar.gz in {}", dir.display()))
}

/// Unpacks and builds fstests under `base` unless the stamp says this tarball was built.
fn build_fstests(base: &Path) -> Result<PathBuf> {
    let tarball = tarball()?;
    let meta = std::fs::metadata(&tarball)?;
    let mtime = meta
        .modified()?
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let stamp_text = format!(
        "{} {} {mtime}\n",
        tarball.file_name().unwrap().to_string_lossy(),
        meta.len()
    );
    let stamp = base.join("built.stamp");
    let tree = base.join("fstests");
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s == stamp_text)
        && tree.join("check").is_file()
        && tree.join("ltp/fsstress").is_file()
    {
        eprintln!(
            "xtask: fstests already built from {} ({})",
            tarball.display(),
            tree.display()
        );
        return Ok(tree);
    }
    let _ = std::fs::remove_file(&stamp);
    if tree.exists() {
        std::fs::remove_dir_all(&tree).with_context(|| format!("removing {}", tree.display()))?;
    }
    util::run(
        Command::new("tar")
            .arg("xzf")
            .arg(&tarball)
            .arg("-C")
            .arg(base),
    )?;
    if !tree.join("check").is_file() {
        bail!(
            "{} did not unpack to {} (no check script there)",
            tarball.display(),
            tree.display()
        );
    }
    let log = base.join("build.log");
    let t0 = Instant::now();
    let mut make = Command::new("make");
    make.arg("-j2").current_dir(&tree);
    eprintln!(
        "$ (cd {} && make -j2) > {} 2>&1",
        tree.display(),
        log.display()
    );
    let f = std::fs::File::create(&log)?;
    let status = make
        .stdout(f.try_clone()?)
        .stderr(f)
        .status()
        .context("cannot start make")?;
    if !status.success() {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        for l in tail.iter().rev() {
            eprintln!("  {l}");
        }
        bail!(
            "building fstests failed ({status}); the log: {}",
            log.display()
        );
    }
    eprintln!(
        "xtask: fstests built in {:.0} s",
        t0.elapsed().as_secs_f64()
    );
    std::fs::write(&stamp, stamp_text)?;
    Ok(tree)
}

/// Copies `xtask/fstests/tests/<group>/<test>{,.out}` into the tree, and adds each test to
/// its group's `group.list` (check ignores tests that are not listed there).
fn install_our_tests(tree: &Path) -> Result<()> {
    let ours = util::workspace_root().join("xtask/fstests/tests");
    for group in std::fs::read_dir(&ours)? {
        let group = group?.path();
        let gname = group.file_name().unwrap().to_string_lossy().into_owned();
        let dest = tree.join("tests").join(&gname);
        for f in std::fs::read_dir(&group)? {
            let f = f?.path();
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            let to = dest.join(&name);
            std::fs::copy(&f, &to)
                .with_context(|| format!("copying {} to {}", f.display(), to.display()))?;
            if name.ends_with(".out") {
                continue;
            }
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755))?;
            let groups = groups_of(&std::fs::read_to_string(&f)?)
                .with_context(|| format!("{}: no _begin_fstest line", f.display()))?;
            let list = dest.join("group.list");
            let text = std::fs::read_to_string(&list).unwrap_or_default();
            if !text
                .lines()
                .any(|l| l.split_whitespace().next() == Some(name.as_str()))
            {
                let mut text = text;
                if !text.is_empty() && !text.ends_with('\n') {
                    text.push('\n');
                }
                writeln!(text, "{name} {groups}")?;
                std::fs::write(&list, text)?;
            }
        }
    }
    Ok(())
}

/// The groups of a test script (`_begin_fstest g1 g2 ...`).
fn groups_of(script: &str) -> Option<String> {
    script
        .lines()
        .find_map(|l| l.strip_prefix("_begin_fstest "))
        .map(|g| g.trim().to_string())
}

fn ensure_users() -> Result<()> {
    for user in USERS {
        if util::probe(Command::new("getent").args(["passwd", user])).is_some() {
            continue;
        }
        util::run(Command::new("useradd").args(["-m", user]))?;
    }
    Ok(())
}

/// The loop devices, their files and mount points; torn down on drop.
pub(crate) struct Devices {
    files: Vec<PathBuf>,
    loops: Vec<String>,
    mount_points: Vec<PathBuf>,
    fstyp: Fstyp,
}

impl Devices {
    fn create(base: &Path, fstyp: Fstyp) -> Result<Devices> {
        let mut d = Devices {
            files: vec![base.join("test.img"), base.join("scratch.img")],
            loops: vec![],
            mount_points: vec![base.join("mnt/test"), base.join("mnt/scratch")],
            fstyp,
        };
        // What a killed earlier run left behind.
        d.release_stale();
        for m in &d.mount_points {
            std::fs::create_dir_all(m)?;
        }
        for f in d.files.clone() {
            let _ = std::fs::remove_file(&f);
            let file =
                std::fs::File::create(&f).with_context(|| format!("creating {}", f.display()))?;
            file.set_len(DEVICE_BYTES)?;
            drop(file);
            let out = Command::new("losetup")
                .args(["-f", "--show"])
                .arg(&f)
                .output()
                .context("cannot run losetup")?;
            if !out.status.success() {
                bail!(
                    "losetup -f --show {} failed: {}",
                    f.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            let dev = String::from_utf8_lossy(&out.stdout).trim().to_string();
            eprintln!("$ losetup -f --show {}  # {dev}", f.display());
            d.loops.push(dev);
        }
        let mut mkfs = match fstyp {
            Fstyp::Xfs => {
                let mut c = Command::new("mkfs.xfs");
                c.args(["-f", "-q"]);
                c
            }
            Fstyp::Ext4 => {
                let mut c = Command::new("mkfs.ext4");
                c.args(["-F", "-q"]);
                c
            }
        };
        util::run(mkfs.arg(&d.loops[0]))?;
        Ok(d)
    }

    fn write_local_config(&self, tree: &Path) -> Result<()> {
        let text = format!(
            "# Written by `cargo xtask fstests`.\nexport FSTYP={}\nexport TEST_DEV={}\n\
             export TEST_DIR={}\nexport SCRATCH_DEV={}\nexport SCRATCH_MNT={}\n",
            self.fstyp.name(),
            self.loops[0],
            self.mount_points[0].display(),
            self.loops[1],
            self.mount_points[1].display()
        );
        std::fs::write(tree.join("local.config"), text)?;
        Ok(())
    }

    /// Loop devices still backed by our files, and mounts on our mount points.
    fn release_stale(&self) {
        for m in &self.mount_points {
            unmount_all(m);
        }
        for f in &self.files {
            let Some(out) = util::probe(Command::new("losetup").arg("-j").arg(f)) else {
                continue;
            };
            for line in out.lines() {
                if let Some((dev, _)) = line.split_once(':') {
                    eprintln!("xtask: detaching {dev}, left by an earlier run");
                    unmount_source(dev);
                    let _ = util::status(Command::new("losetup").args(["-d", dev]));
                }
            }
        }
    }

    pub(crate) fn teardown(&mut self) {
        for m in &self.mount_points {
            unmount_all(m);
        }
        for dev in std::mem::take(&mut self.loops) {
            unmount_source(&dev);
            let _ = util::status(Command::new("losetup").args(["-d", &dev]));
        }
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
    }
}

impl Drop for Devices {
    fn drop(&mut self) {
        if !self.loops.is_empty() {
            self.teardown();
        }
    }
}

/// Mount points (field 5 of mountinfo, octal escapes undone) with their sources.
fn mounts() -> Vec<(String, String)> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let unescape = |s: &str| {
        s.replace("\\040", " ")
            .replace("\\011", "\t")
            .replace("\\012", "\n")
            .replace("\\134", "\\")
    };
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let sep = f.iter().position(|x| *x == "-")?;
            Some((unescape(f.get(4)?), unescape(f.get(sep + 2)?)))
        })
        .collect()
}

/// Unmounts whatever is mounted on `point` (innermost first), lazily if it stays busy.
fn unmount_all(point: &Path) {
    let p = point.display().to_string();
    for _ in 0..20 {
        if !mounts().iter().any(|(m, _)| *m == p) {
            return;
        }
        if util::probe(Command::new("umount").arg(&p)).is_none() {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let _ = util::status(Command::new("umount").arg("-l").arg(&p));
}

fn unmount_source(dev: &str) {
    for (point, source) in mounts() {
        if source == dev {
            unmount_all(Path::new(&point));
        }
    }
}

/// Runs `cmd` (check, or the tracer running check) in the tree with its own RESULT_BASE;
/// its wall time. A failing check is no error here: verdicts are read from result.xml.
pub(crate) fn run_check(
    cmd: &mut Command,
    tree: &Path,
    result_base: &Path,
    soak: &str,
) -> Result<Duration> {
    cmd.current_dir(tree)
        .env("RESULT_BASE", result_base)
        .env("SOAK_DURATION", soak);
    let t0 = Instant::now();
    let status = util::status(cmd)?;
    let wall = t0.elapsed();
    eprintln!(
        "xtask: ({status} after {:.1} s; results in {})",
        wall.as_secs_f64(),
        result_base.display()
    );
    Ok(wall)
}

/// A test's outcome as check's xunit report gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Verdict {
    status: &'static str,
    time: String,
}

/// `<testcase name time>` → pass, fail or notrun (`<failure>`/`<error>`, `<skipped>`).
fn verdicts(xml_path: &Path) -> Result<BTreeMap<String, Verdict>> {
    let xml = std::fs::read_to_string(xml_path)
        .with_context(|| format!("reading {}", xml_path.display()))?;
    let mut reader = Reader::from_str(&xml);
    let mut out = BTreeMap::new();
    let mut current: Option<(String, Verdict)> = None;
    let attr = |e: &quick_xml::events::BytesStart, k: &str| -> Result<String> {
        Ok(match e.try_get_attribute(k)? {
            Some(a) => a
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)?
                .into_owned(),
            None => String::new(),
        })
    };
    loop {
        let ev = reader
            .read_event()
            .with_context(|| format!("{} does not parse", xml_path.display()))?;
        match ev {
            Event::Eof => break,
            Event::Start(e) | Event::Empty(e) if e.name().as_ref() == "testcase" => {
                let v = Verdict {
                    status: "pass",
                    time: attr(&e, "time")?,
                };
                let name = attr(&e, "name")?;
                // An empty element has no children and no end event.
                if let Some((n, v)) = current.replace((name, v)) {
                    out.insert(n, v);
                }
            }
            Event::Start(e) | Event::Empty(e) => {
                if let Some((_, v)) = current.as_mut() {
                    match e.name().as_ref() {
                        "failure" | "error" => v.status = "fail",
                        "skipped" => v.status = "notrun",
                        _ => {}
                    }
                }
            }
            Event::End(e) if e.name().as_ref() == "testcase" => {
                if let Some((n, v)) = current.take() {
                    out.insert(n, v);
                }
            }
            _ => {}
        }
    }
    if let Some((n, v)) = current.take() {
        out.insert(n, v);
    }
    Ok(out)
}

/// Lines of a test's `.full` and `.out.bad` saying a umount or mount was busy.
fn ebusy_lines(result_base: &Path, test: &str) -> usize {
    ["full", "out.bad"]
        .iter()
        .filter_map(|ext| std::fs::read(result_base.join(format!("{test}.{ext}"))).ok())
        .map(|b| {
            String::from_utf8_lossy(&b)
                .lines()
                .filter(|l| {
                    l.contains("target is busy")
                        || l.contains("EBUSY")
                        || l.contains("Device or resource busy")
                })
                .count()
        })
        .sum()
}

struct Outcome {
    table: String,
    failures: Vec<String>,
}

fn assess(
    tests: &[String],
    untraced: Option<(&Path, Duration)>,
    traced: (&Path, Duration),
    report_path: &Path,
) -> Result<Outcome> {
    let mut failures = Vec::new();
    let traced_xml = traced.0.join("result.xml");
    // The tracer rewrote it when a test had findings: it must still parse.
    let traced_v = verdicts(&traced_xml)?;
    let untraced_v = match untraced {
        Some((dir, _)) => Some(verdicts(&dir.join("result.xml"))?),
        None => None,
    };
    let report: Value = serde_json::from_str(
        &std::fs::read_to_string(report_path)
            .with_context(|| format!("reading the report {}", report_path.display()))?,
    )
    .with_context(|| format!("{} is not JSON", report_path.display()))?;
    let lost = report["recording"]["records_lost"].as_u64().unwrap_or(0);
    if lost > 0 {
        failures.push(format!("{lost} records lost by the kernel side"));
    }
    let bad = report["recording"]["bad_records"].as_u64().unwrap_or(0);
    if bad > 0 {
        failures.push(format!("{bad} undecodable records"));
    }
    // Sections by test (a test run twice would have two).
    let mut sections: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    for t in report["tests"].as_array().into_iter().flatten() {
        if let Some(name) = t["test"].as_str() {
            sections.entry(name).or_default().push(t);
        }
    }

    let mut table = String::new();
    writeln!(
        table,
        "{:<20} {:>9} {:>9} {:>6} {:>6} {:>10} {:>7} {:>7} {:>11} {:>10}",
        "test",
        "untraced",
        "traced",
        "time u",
        "time t",
        "EBUSY u/t/s",
        "stories",
        "unexpl",
        "leaks(objs)",
        "tracer.txt"
    )?;
    for test in tests {
        let tv = traced_v.get(test);
        let uv = untraced_v.as_ref().map(|m| m.get(test));
        let status_t = tv.map_or("missing", |v| v.status);
        let status_u = match uv {
            None => "-",
            Some(v) => v.map_or("missing", |v| v.status),
        };
        if tv.is_none() {
            failures.push(format!("{test}: no verdict in the traced run's result.xml"));
        }
        if let Some(u) = uv
            && u.map(|v| v.status) != tv.map(|v| v.status)
        {
            failures.push(format!(
                "{test}: fstests says {status_u} untraced but {status_t} traced"
            ));
        }
        let secs = sections.get(test.as_str()).cloned().unwrap_or_default();
        if secs.is_empty() {
            failures.push(format!(
                "{test}: no section of its own in the tracer report"
            ));
        }
        let stories: Vec<&Value> = secs
            .iter()
            .flat_map(|s| s["ebusy_stories"].as_array().into_iter().flatten())
            // Lock conflicts are stories too, but not EBUSY ones (a conflict of some other
            // process on this machine, cargo's package-cache lock, can fall in a test).
            .filter(|s| s["lock"] != true && s["space"] != true)
            .collect();
        let unexplained = stories
            .iter()
            .filter(|s| tracer_fs::verdict::story_unexplained(s))
            .count();
        let ebusy_calls: u64 = secs
            .iter()
            .map(|s| s["ebusy_calls"].as_u64().unwrap_or(0))
            .sum();
        let in_run = ebusy_lines(traced.0, test);
        if !stories.is_empty() && in_run == 0 {
            failures.push(format!(
                "{test}: {} EBUSY stories, but its .full/.out.bad show no EBUSY",
                stories.len()
            ));
        }
        if unexplained > 0 {
            failures.push(format!(
                "{test}: {unexplained} of {} EBUSY stories unexplained (nothing traced explains the EBUSY)",
                stories.len()
            ));
        }
        // A leak is a confirmed one (kmemleak's "unreferenced object": its call site kept
        // objects over several cycles); one-time, unconfirmed and uncertain objects are
        // listed in the report, not counted (a report without classes counts whole).
        let mut leak_reports = 0;
        let mut objects = 0;
        let mut pinned = 0;
        let mut listed = 0;
        for s in &secs {
            for lr in s["leaks"]["allocations"]["leak_reports"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let all = lr["objects"].as_u64().unwrap_or(0);
                let n = lr["confirmed"].as_u64().unwrap_or(all);
                listed += all - n.min(all);
                if n > 0 {
                    leak_reports += 1;
                    objects += n;
                }
            }
            pinned += s["leaks"]["detached_mounts_pinned_at_end"]
                .as_array()
                .map_or(0, Vec::len);
        }
        if status_t == "pass" && (leak_reports > 0 || pinned > 0) {
            failures.push(format!(
                "{test}: passed, yet {leak_reports} leak reports with {objects} confirmed leaked objects ({listed} more one-time, unconfirmed or uncertain) and {pinned} detached mounts pinned at its end"
            ));
        }
        // Findings beside check's results, mode 0600.
        let txt = traced.0.join(format!("{test}.tracer.txt"));
        let has_findings = !stories.is_empty() || leak_reports > 0 || pinned > 0 || lost > 0;
        let txt_state = match std::fs::metadata(&txt) {
            Ok(m) if m.permissions().mode() & 0o777 == 0o600 => "yes",
            Ok(_) => {
                failures.push(format!("{}: not mode 0600", txt.display()));
                "bad mode"
            }
            Err(_) => "no",
        };
        if has_findings && txt_state == "no" {
            failures.push(format!(
                "{test}: findings, but no {} beside its results",
                txt.display()
            ));
        }
        writeln!(
            table,
            "{:<20} {:>9} {:>9} {:>6} {:>6} {:>10} {:>7} {:>7} {:>11} {:>10}",
            test,
            status_u,
            status_t,
            uv.flatten().map_or("-".into(), |v| format!("{}s", v.time)),
            tv.map_or("-".into(), |v| format!("{}s", v.time)),
            format!(
                "{}/{in_run}/{ebusy_calls}",
                untraced.map_or("-".to_string(), |(d, _)| ebusy_lines(d, test).to_string())
            ),
            stories.len(),
            unexplained,
            format!("{leak_reports}({objects})"),
            txt_state
        )?;
    }
    writeln!(
        table,
        "EBUSY u/t/s: lines saying so in the .full/.out.bad of the untraced / traced run; umount and mount calls the tracer saw fail with EBUSY"
    )?;
    writeln!(
        table,
        "wall time: untraced {}, traced {}; records lost: {lost}",
        untraced.map_or("not run".to_string(), |(_, w)| format!(
            "{:.1} s",
            w.as_secs_f64()
        )),
        format_args!("{:.1} s", traced.1.as_secs_f64())
    )?;
    Ok(Outcome { table, failures })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_come_from_begin_fstest() {
        let script = "#! /bin/bash\n. ./common/preamble\n_begin_fstest shutdown log metadata\n";
        assert_eq!(groups_of(script).as_deref(), Some("shutdown log metadata"));
        let ours = std::fs::read_to_string(
            util::workspace_root().join("xtask/fstests/tests/generic/388-sigkill"),
        )
        .unwrap();
        assert!(groups_of(&ours).unwrap().contains("shutdown"));
    }
}
