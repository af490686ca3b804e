//! `cargo xtask bench`: what tracing costs the traced, on this machine's kernel, in one run.
//!
//! Configurations alternate in rounds (the order rotates every round), and every ratio is
//! a traced throughput over the untraced one of the same round; medians with min-max.
//! - `floor`: `tracer attach --floor`, count-only programs on the default mode's points;
//! - `default`: `tracer attach --no-tui --no-events`;
//! - `unfiltered`: the same with `--alloc-filter all` (when this tracer has it);
//! - `bpftrace`: `xtask/bench/equivalent.bt` (outstanding allocations by pointer with a
//!   kernel stack, filp frees, workqueue events);
//! - `memleak`: bcc's `memleak-bpfcc` in kernel mode, where it runs.
//!
//! Workloads: the micro loops of `workload.rs` (tmpfs files, io_uring on tmpfs, metadata on
//! xfs on loop, mount/umount), `dbench` and `fio --ioengine=io_uring` on the xfs mount, and
//! fstests' quick list through `tracer run` (`fstests.rs`).
//! Writes a table to stdout and `target/bench.json`. Never asserts a timing.
//! `--prog-cost WORKLOAD`: that workload's BPF time per program instead (`progcost.rs`).

mod fstests;
mod progcost;
mod record;
pub mod runs;
pub mod workload;

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

use crate::{setup, util};

#[derive(clap::Args)]
pub struct Args {
    /// Rounds (each runs every configuration once).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Seconds per micro workload run.
    #[arg(long, default_value_t = 2.0)]
    secs: f64,
    /// Seconds per dbench and fio run.
    #[arg(long, default_value_t = 4)]
    real_secs: u32,
    /// Skip the realistic workloads (dbench, fio).
    #[arg(long)]
    no_real: bool,
    /// Skip the fstests workload (the quick list, untraced and through `tracer run`).
    #[arg(long)]
    no_fstests: bool,
    /// Only the fstests workload: its table, without the micro loops and the rest
    /// (`target/bench.json` is left as it is).
    #[arg(long, conflicts_with = "no_fstests")]
    fstests_only: bool,
    /// Only this workload's BPF time per program (`kernel.bpf_stats_enabled`), once per
    /// configuration: files, uring, meta, mount, dbench or fio.
    #[arg(long, value_name = "WORKLOAD", conflicts_with = "fstests_only")]
    prog_cost: Option<String>,
}

const MICRO: &[&str] = &["files", "uring", "meta", "mount"];
const CONFIGS: &[&str] = &[
    "untraced",
    "floor",
    "default",
    "unfiltered",
    "bpftrace",
    "memleak",
];

/// The bpftrace script equivalent to tracer's default hooks plus allocation tracking.
const BPFTRACE_SCRIPT: &str = include_str!("../../bench/equivalent.bt");

pub fn main(args: Args) -> Result<()> {
    let args = &args;
    if !util::is_root() {
        bail!("cargo xtask bench attaches eBPF programs and mounts filesystems: run it as root");
    }
    setup::ensure(setup::Level::Test)?;
    setup::ensure_bench_tools()?;
    util::run(util::cargo_cmd(["build", "--release", "-p", "tracer"]).env_remove("RUSTFLAGS"))?;
    let tracer = util::target_dir().join("release/tracer");
    if args.fstests_only {
        util::interrupted_flag();
        let f = fstests::measure(&tracer, args.rounds)?;
        fstests::print(&f);
        return Ok(());
    }
    let load_start = loadavg();
    let env = Env::new()?;
    let script = env.base.join("equivalent.bt");
    std::fs::write(&script, BPFTRACE_SCRIPT)?;
    if let Some(w) = &args.prog_cost {
        util::interrupted_flag();
        return progcost::measure(args, &env, &tracer, &script, w);
    }

    // Which configurations can run here, and why not.
    let mut unavailable: BTreeMap<&str, String> = BTreeMap::new();
    let help = util::probe(Command::new(&tracer).args(["attach", "--help"])).unwrap_or_default();
    if !help.contains("--alloc-filter") {
        unavailable.insert(
            "unfiltered",
            "this tracer has no allocation tracking (`--alloc-filter`)".into(),
        );
    }
    if let Err(e) = Traced::start("memleak", &tracer, &script).and_then(|t| t.stop().map(drop)) {
        let e = format!("{e:#}");
        // bcc's traceback can push its first line ("Unable to find kernel headers") out.
        let why = if e.contains("kernel headers") || e.contains("/lib/modules/") {
            "memleak-bpfcc: \"Unable to find kernel headers\": bcc compiles its programs \
             against the running kernel's headers, and there is no Debian package of headers \
             for this kernel (no CONFIG_IKHEADERS either)"
                .to_string()
        } else {
            e
        };
        unavailable.insert("memleak", why);
    }
    for (c, why) in &unavailable {
        eprintln!("bench: {c}: unavailable: {why}");
    }
    let configs: Vec<&str> = CONFIGS
        .iter()
        .copied()
        .filter(|c| !unavailable.contains_key(c))
        .collect();
    let mut workloads: Vec<&str> = MICRO.to_vec();
    if !args.no_real {
        workloads.extend(["dbench", "fio"]);
    }

    // samples[workload][config] = one Sample per round.
    let mut samples: BTreeMap<String, BTreeMap<String, Vec<Sample>>> = BTreeMap::new();
    let mut procs: BTreeMap<String, Vec<ProcFigures>> = BTreeMap::new();
    let path = util::target_dir().join("bench.json");
    util::interrupted_flag();
    for round in 0..args.rounds {
        if let Err(e) = run_round(
            round,
            args,
            &env,
            &configs,
            &workloads,
            &tracer,
            &script,
            &mut samples,
            &mut procs,
        ) {
            // The tracer of the round was stopped, and `env` goes on drop (umount, loop).
            if round > 0 {
                eprintln!(
                    "bench: stopped in round {} ({e:#}); the {round} whole rounds are in {}",
                    round + 1,
                    path.display()
                );
            }
            return Err(e);
        }
        // Every whole round is written at once: a bench stopped later keeps them.
        let mut partial = report(
            &mut std::io::sink(),
            &samples,
            &procs,
            &unavailable,
            &configs,
        );
        mark_rounds(&mut partial, round + 1, false);
        std::fs::write(&path, serde_json::to_string_pretty(&partial)?)?;
    }

    println!(
        "bench: kernel {}, {} CPUs; load average at start {load_start}, at end {}; {} rounds, \
         micro loops {} s, dbench/fio {} s",
        util::probe(Command::new("uname").arg("-r"))
            .unwrap_or_default()
            .trim(),
        thread::available_parallelism().map_or(0, |n| n.get()),
        loadavg(),
        args.rounds,
        args.secs,
        args.real_secs
    );
    let mut out = report(
        &mut std::io::stdout(),
        &samples,
        &procs,
        &unavailable,
        &configs,
    );
    mark_rounds(&mut out, args.rounds, true);
    let writer = record::measure(&tracer, &env.tmpfs, args.rounds)?;
    record::print(&writer);
    if let Value::Object(m) = &mut out {
        m.insert("record_writer".into(), writer);
    }
    let replay = runs::measure(&tracer, &env.tmpfs, args.rounds, runs::COUNT)?;
    runs::print(&replay);
    if let Value::Object(m) = &mut out {
        m.insert("cross_run_replay".into(), replay);
    }
    if !args.no_fstests {
        let f = fstests::measure(&tracer, args.rounds)?;
        fstests::print(&f);
        if let Value::Object(m) = &mut out {
            m.insert("fstests_quick".into(), f);
        }
    }
    std::fs::write(&path, serde_json::to_string_pretty(&out)?)?;
    eprintln!("bench: wrote {}", path.display());
    drop(env);
    Ok(())
}

/// Says in the results how many whole rounds they hold, and whether that is all of them.
fn mark_rounds(out: &mut Value, rounds_done: usize, complete: bool) {
    if let Value::Object(m) = out {
        m.insert("rounds_done".into(), json!(rounds_done));
        m.insert("complete".into(), json!(complete));
    }
}

/// One round: every configuration once, over every workload; stops early (with the
/// round's tracer stopped) on Ctrl-C or SIGTERM.
#[allow(clippy::too_many_arguments)]
fn run_round(
    round: usize,
    args: &Args,
    env: &Env,
    configs: &[&str],
    workloads: &[&str],
    tracer: &Path,
    script: &Path,
    samples: &mut BTreeMap<String, BTreeMap<String, Vec<Sample>>>,
    procs: &mut BTreeMap<String, Vec<ProcFigures>>,
) -> Result<()> {
    for k in 0..configs.len() {
        util::check_interrupted()?;
        let config = configs[(k + round) % configs.len()];
        eprintln!("bench: round {}/{}: {config}", round + 1, args.rounds);
        let traced = match config {
            "untraced" => None,
            c => Some(Traced::start(c, tracer, script)?),
        };
        for w in workloads {
            util::check_interrupted()?;
            let before = traced.as_ref().map(|t| t.snapshot());
            let ops_per_s = env.run(w, args)?;
            let mut s = Sample {
                ops_per_s,
                ..Default::default()
            };
            if let (Some(t), Some(b)) = (&traced, before) {
                thread::sleep(Duration::from_millis(350)); // the next stats line
                let a = t.snapshot();
                let dt = (a.at - b.at).as_secs_f64().max(1e-3);
                s.events_per_s = a.events.zip(b.events).map(|(a, b)| (a - b) as f64 / dt);
                s.drops = a.drops.zip(b.drops).map(|(a, b)| a - b);
                s.cpu = Some((a.cpu_s - b.cpu_s) / dt);
            }
            samples
                .entry(w.to_string())
                .or_default()
                .entry(config.to_string())
                .or_default()
                .push(s);
        }
        if let Some(t) = traced {
            let f = t.stop()?;
            procs.entry(config.to_string()).or_default().push(f);
        }
    }
    Ok(())
}

#[derive(Default, Clone)]
struct Sample {
    ops_per_s: f64,
    events_per_s: Option<f64>,
    drops: Option<u64>,
    /// Tracer CPU seconds per second of workload.
    cpu: Option<f64>,
}

/// What a tracing process cost, once per run.
#[derive(Clone, Debug)]
struct ProcFigures {
    attach_s: f64,
    detach_s: f64,
    peak_rss_kib: u64,
    map_memlock_kib: u64,
    total_drops: Option<u64>,
}

// ---------------------------------------------------------------- the environment

/// tmpfs, xfs on a loop device, a mount point for the mount loop; torn down on drop.
struct Env {
    base: PathBuf,
    tmpfs: PathBuf,
    xfs: PathBuf,
    mnt: PathBuf,
    loopdev: Option<String>,
    mounted: Vec<PathBuf>,
}

impl Env {
    fn new() -> Result<Env> {
        let base = PathBuf::from(format!("/tmp/tracer-bench-{}", std::process::id()));
        let mut env = Env {
            tmpfs: base.join("tmpfs"),
            xfs: base.join("xfs"),
            mnt: base.join("mnt"),
            base,
            loopdev: None,
            mounted: vec![],
        };
        for d in [&env.tmpfs, &env.xfs, &env.mnt] {
            std::fs::create_dir_all(d)?;
        }
        util::run(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o", "size=256m", "bench"])
                .arg(&env.tmpfs),
        )?;
        env.mounted.push(env.tmpfs.clone());
        let img = env.base.join("xfs.img");
        std::fs::File::create(&img)?.set_len(320 << 20)?;
        util::run(Command::new("mkfs.xfs").arg("-q").arg(&img))?;
        let dev = util::probe(Command::new("losetup").args(["--find", "--show"]).arg(&img))
            .context("losetup --find --show")?
            .trim()
            .to_string();
        env.loopdev = Some(dev.clone());
        util::run(Command::new("mount").arg(&dev).arg(&env.xfs))?;
        env.mounted.push(env.xfs.clone());
        Ok(env)
    }

    /// One workload run; its throughput (ops/s; dbench: MB/s; fio: IOPS).
    fn run(&self, w: &str, args: &Args) -> Result<f64> {
        match w {
            "dbench" => {
                let dir = self.xfs.join("dbench");
                std::fs::create_dir_all(&dir)?;
                let out = output(Command::new("dbench").args([
                    "-t",
                    &args.real_secs.to_string(),
                    "-D",
                    &dir.to_string_lossy(),
                    "2",
                ]))?;
                let line = out
                    .lines()
                    .find(|l| l.starts_with("Throughput"))
                    .context("no Throughput line from dbench")?;
                let mbs = line.split_whitespace().nth(1).context("dbench line")?;
                Ok(mbs.parse()?)
            }
            "fio" => {
                let dir = self.xfs.join("fio");
                std::fs::create_dir_all(&dir)?;
                let out = output(Command::new("fio").args([
                    "--name=bench",
                    "--ioengine=io_uring",
                    "--rw=randrw",
                    "--bs=4k",
                    "--size=64m",
                    "--iodepth=16",
                    "--time_based",
                    &format!("--runtime={}", args.real_secs),
                    &format!("--directory={}", dir.display()),
                    "--output-format=json",
                ]))?;
                let v: Value = serde_json::from_str(&out).context("fio's JSON")?;
                let job = &v["jobs"][0];
                Ok(job["read"]["iops"].as_f64().unwrap_or(0.0)
                    + job["write"]["iops"].as_f64().unwrap_or(0.0))
            }
            micro => {
                let dir = match micro {
                    "files" | "uring" => &self.tmpfs,
                    "meta" => &self.xfs,
                    _ => &self.mnt,
                };
                let exe = std::env::current_exe()?;
                let out = output(Command::new(exe).args([
                    "bench-workload",
                    micro,
                    &dir.to_string_lossy(),
                    &args.secs.to_string(),
                ]))?;
                let v: Value = serde_json::from_str(out.trim()).context("workload output")?;
                Ok(v["ops"].as_f64().unwrap_or(0.0) / v["secs"].as_f64().unwrap_or(1.0))
            }
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        for m in self.mounted.iter().rev() {
            let _ = Command::new("umount").arg(m).status();
        }
        if let Some(dev) = &self.loopdev {
            let _ = Command::new("losetup").args(["-d", dev]).status();
        }
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("starting `{}`", util::show(cmd)))?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            util::show(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

// ---------------------------------------------------------------- tracing processes

#[derive(Default)]
struct Shared {
    ready: Option<Instant>,
    /// Latest cumulative figures: events handled (records sent, or floor program runs)
    /// and ring-buffer drops.
    events: Option<u64>,
    drops: Option<u64>,
    /// The last lines of output, for errors.
    tail: Vec<String>,
}

struct Traced {
    child: Child,
    shared: Arc<Mutex<Shared>>,
    started: Instant,
    ready_at: Instant,
    readers: Vec<thread::JoinHandle<()>>,
}

#[derive(Clone, Copy)]
struct Snapshot {
    at: Instant,
    events: Option<u64>,
    drops: Option<u64>,
    cpu_s: f64,
}

impl Traced {
    fn start(config: &str, tracer: &Path, script: &Path) -> Result<Traced> {
        let attach = |extra: &[&str]| {
            let mut c = Command::new(tracer);
            c.args(["attach", "--no-tui", "--format", "json", "--no-events"])
                .args(["--stats-every", "0.25"])
                .args(extra);
            c
        };
        let (mut cmd, ready_word) = match config {
            "floor" => (attach(&["--floor"]), "\"ready\""),
            "default" => (attach(&[]), "\"ready\""),
            "unfiltered" => (attach(&["--alloc-filter", "all"]), "\"ready\""),
            "bpftrace" => {
                let mut c = Command::new("bpftrace");
                c.arg(script).env("BPFTRACE_MAP_KEYS_MAX", "65536");
                (c, "Attaching")
            }
            "memleak" => {
                let mut c = Command::new("memleak-bpfcc");
                c.arg("3600");
                (c, "Attaching to kernel allocators")
            }
            other => bail!("unknown configuration {other}"),
        };
        let started = Instant::now();
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting `{}`", util::show(&cmd)))?;
        let shared = Arc::new(Mutex::new(Shared::default()));
        let mut readers = vec![];
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let shared = shared.clone();
            let ready_word = ready_word.to_string();
            readers.push(thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let mut s = shared.lock().unwrap();
                    if s.ready.is_none() && line.contains(&ready_word) {
                        s.ready = Some(Instant::now());
                    }
                    if let Ok(v) = serde_json::from_str::<Value>(&line) {
                        take_figures(&v, &mut s);
                    }
                    s.tail.push(line);
                    if s.tail.len() > 8 {
                        s.tail.remove(0);
                    }
                }
            }));
        }
        // Wait until attached (or gone).
        loop {
            let (ready, figures) = {
                let s = shared.lock().unwrap();
                (s.ready, s.events.is_some())
            };
            // tracer: also its first `stats` line, so the first workload has a baseline.
            let waited = ready.is_some_and(|at| at.elapsed() > Duration::from_secs(2));
            if let Some(at) = ready.filter(|_| figures || ready_word != "\"ready\"" || waited) {
                return Ok(Traced {
                    child,
                    shared,
                    started,
                    ready_at: at,
                    readers,
                });
            }
            if let Some(status) = child.try_wait()? {
                for r in readers {
                    let _ = r.join();
                }
                let tail = shared.lock().unwrap().tail.join(" | ");
                bail!(
                    "`{}` exited before attaching ({status}): {tail}",
                    util::show(&cmd)
                );
            }
            if started.elapsed() > Duration::from_secs(120) {
                let _ = child.kill();
                let _ = child.wait();
                bail!("`{}` did not attach within 120 s", util::show(&cmd));
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn snapshot(&self) -> Snapshot {
        let s = self.shared.lock().unwrap();
        Snapshot {
            at: Instant::now(),
            events: s.events,
            drops: s.drops,
            cpu_s: cpu_seconds(self.child.id()),
        }
    }

    /// Stops it (SIGINT: bpftrace and memleak print their maps at exit; tracer stops on
    /// either) and returns what it cost.
    fn stop(mut self) -> Result<ProcFigures> {
        let pid = self.child.id();
        let peak_rss_kib = status_kib(pid, "VmHWM:");
        let map_memlock_kib = map_memlock(pid) / 1024;
        let t = Instant::now();
        // SAFETY: a child we started and have not reaped.
        unsafe { libc::kill(pid as i32, libc::SIGINT) };
        let status = self.child.wait()?;
        let detach_s = t.elapsed().as_secs_f64();
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        let s = self.shared.lock().unwrap();
        if !status.success() && status.code() != Some(130) {
            eprintln!("bench: warning: exit {status}: {}", s.tail.join(" | "));
        }
        Ok(ProcFigures {
            attach_s: (self.ready_at - self.started).as_secs_f64(),
            detach_s,
            peak_rss_kib,
            map_memlock_kib,
            total_drops: s.drops,
        })
    }
}

/// A tracing process the bench did not stop (an error or an interrupt in its round) is
/// stopped here, so that no probes stay attached behind a failed bench.
impl Drop for Traced {
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        // SAFETY: a child we started and have not reaped.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let t = Instant::now();
        while matches!(self.child.try_wait(), Ok(None)) {
            if t.elapsed() > Duration::from_secs(10) {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Cumulative figures from a `stats` or `end` line of `tracer attach` (or `--floor`).
fn take_figures(v: &Value, s: &mut Shared) {
    let sum = |m: &Value| -> u64 {
        m.as_object()
            .map(|o| o.values().filter_map(Value::as_u64).sum())
            .unwrap_or(0)
    };
    match v["type"].as_str() {
        Some("stats") | Some("end") => {
            if let Some(n) = v["floor_runs"].as_u64() {
                s.events = Some(n);
                s.drops = Some(0);
            } else if v["stats"].is_object() {
                s.events = Some(sum(&v["stats"]["records"]));
                s.drops = Some(sum(&v["stats"]["drops"]));
            }
        }
        _ => {}
    }
}

/// The 1-, 5- and 15-minute load averages (other work on the machine skews every ratio).
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command (which may hold spaces) start at field 3.
    let rest = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz
}

fn status_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Bytes the process's BPF maps charge (`memlock` of each map fd in its fdinfo).
fn map_memlock(pid: u32) -> u64 {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return 0;
    };
    let mut total = 0;
    for e in dir.flatten() {
        let is_map = std::fs::read_link(e.path())
            .map(|l| l.to_string_lossy() == "anon_inode:bpf-map")
            .unwrap_or(false);
        if !is_map {
            continue;
        }
        let info = std::fs::read_to_string(format!(
            "/proc/{pid}/fdinfo/{}",
            e.file_name().to_string_lossy()
        ))
        .unwrap_or_default();
        total += info
            .lines()
            .find_map(|l| l.strip_prefix("memlock:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
    }
    total
}

// ---------------------------------------------------------------- the report

/// `{median, min, max}` of figure `k` over the runs' JSON lines (null without one).
fn figure_over(runs: &[Value], k: &str) -> Value {
    match median_min_max(runs.iter().filter_map(|r| r[k].as_f64()).collect()) {
        Some((m, lo, hi)) => json!({ "median": m, "min": lo, "max": hi }),
        None => Value::Null,
    }
}

fn median_min_max(mut v: Vec<f64>) -> Option<(f64, f64, f64)> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    let med = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some((med, v[0], v[n - 1]))
}

fn report(
    w_out: &mut dyn std::io::Write,
    samples: &BTreeMap<String, BTreeMap<String, Vec<Sample>>>,
    procs: &BTreeMap<String, Vec<ProcFigures>>,
    unavailable: &BTreeMap<&str, String>,
    configs: &[&str],
) -> Value {
    let med = |v: Vec<f64>| median_min_max(v).map(|(m, _, _)| m);
    let mut out = serde_json::Map::new();
    let order = ["files", "uring", "meta", "mount", "dbench", "fio"];
    let unit = |w: &str| match w {
        "dbench" => "MB/s",
        "fio" => "IOPS",
        _ => "ops/s",
    };
    let _ = writeln!(
        w_out,
        "{:<8} {:<11} {:>21} {:>12} {:>10} {:>6} {:>7} {:>8} {:>8} {:>8} {:>8}",
        "workload",
        "config",
        "ratio med [min-max]",
        "throughput",
        "events/s",
        "drops",
        "cpu %",
        "attach s",
        "detach s",
        "rss MiB",
        "maps MiB"
    );
    for w in order {
        let Some(by_config) = samples.get(w) else {
            continue;
        };
        let base = &by_config["untraced"];
        let mut wj = serde_json::Map::new();
        let base_med = med(base.iter().map(|s| s.ops_per_s).collect()).unwrap_or(0.0);
        wj.insert(
            "untraced".into(),
            json!({ "throughput_median": base_med, "unit": unit(w) }),
        );
        let _ = writeln!(
            w_out,
            "{w:<8} {:<11} {:>21} {:>12.0} {:>10} {:>6} {:>7} {:>8} {:>8} {:>8} {:>8}",
            "untraced", "1", base_med, "-", "-", "-", "-", "-", "-", "-"
        );
        for &c in &configs[1..] {
            let Some(ss) = by_config.get(c) else { continue };
            let ratios: Vec<f64> = ss
                .iter()
                .zip(base)
                .map(|(s, b)| s.ops_per_s / b.ops_per_s.max(1e-9))
                .collect();
            let (rm, rmin, rmax) = median_min_max(ratios).unwrap();
            let thr = med(ss.iter().map(|s| s.ops_per_s).collect()).unwrap_or(0.0);
            let ev = med(ss.iter().filter_map(|s| s.events_per_s).collect());
            let cpu = med(ss.iter().filter_map(|s| s.cpu).collect());
            let drops: Option<u64> = ss.iter().map(|s| s.drops).sum();
            let p = procs.get(c).cloned().unwrap_or_default();
            let attach = med(p.iter().map(|p| p.attach_s).collect());
            let detach = med(p.iter().map(|p| p.detach_s).collect());
            let rss = p.iter().map(|p| p.peak_rss_kib).max().unwrap_or(0);
            let maps = p.iter().map(|p| p.map_memlock_kib).max().unwrap_or(0);
            wj.insert(
                c.into(),
                json!({
                    "ratio_median": rm, "ratio_min": rmin, "ratio_max": rmax,
                    "throughput_median": thr, "unit": unit(w),
                    "events_per_s_median": ev,
                    "ring_drops": drops,
                    "tracer_cpu_fraction_median": cpu,
                    "attach_s_median": attach, "detach_s_median": detach,
                    "peak_rss_kib": rss, "bpf_map_memlock_kib": maps,
                    "ring_drops_whole_runs": p.iter().filter_map(|p| p.total_drops).sum::<u64>(),
                    "rounds": ss.len(),
                }),
            );
            let opt = |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map_or("-".into(), f);
            let _ = writeln!(
                w_out,
                "{w:<8} {c:<11} {:>21} {:>12.0} {:>10} {:>6} {:>7} {:>8} {:>8} {:>8.1} {:>8.1}",
                format!("{rm:.3} [{rmin:.3}-{rmax:.3}]"),
                thr,
                opt(ev, &|v| format!("{v:.0}")),
                drops.map_or("-".into(), |d| d.to_string()),
                opt(cpu, &|v| format!("{:.1}", v * 100.0)),
                opt(attach, &|v| format!("{v:.2}")),
                opt(detach, &|v| format!("{v:.2}")),
                rss as f64 / 1024.0,
                maps as f64 / 1024.0,
            );
        }
        for (c, why) in unavailable {
            wj.insert(
                c.to_string(),
                json!({ "status": "unavailable", "why": why }),
            );
            let _ = writeln!(w_out, "{w:<8} {c:<11} unavailable");
        }
        out.insert(w.into(), Value::Object(wj));
    }
    for (c, why) in unavailable {
        let _ = writeln!(w_out, "{c}: unavailable: {why}");
    }
    Value::Object(out)
}
