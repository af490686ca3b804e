//! `tracer run [options] -- CMD ARGS...`: attach, run the command once the hooks are live,
//! stop when it exits, write the recording and the report, and exit with its status (like
//! `perf record -- cmd`). Also the recording half of `tracer attach --record FILE`.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Result, bail};
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::Notify,
};
use tracer_fs::wire::WIRE_VERSION;

use super::{
    EngineSink, FORMAT_VERSION, HookRecord, Item, RecordSink, ReportsDue, TraceHeader, TraceWriter,
    unix_now_ns,
};
use crate::{
    NOT_ROOT,
    attach::{self, Attached},
    is_root,
    kernel::clock::boottime_ns,
    live::{self, Format, LiveSink},
    report::{self, ReportFormat, ReportOptions},
    stream::counters::Figures,
    stream::{self, Sink, StreamOptions, Summary},
};

/// The header of a recording of `att`, with the engine configuration the live engine
/// starts from.
pub fn header(
    att: &Attached,
    engine: &tracer_fs::EngineConfig,
    opts: &attach::Options,
    command: Option<Vec<String>>,
) -> TraceHeader {
    TraceHeader {
        format_version: FORMAT_VERSION,
        wire_version: WIRE_VERSION,
        tracer_version: env!("CARGO_PKG_VERSION").to_string(),
        kernel_release: crate::kernel::uname::kernel_release(),
        hostname: super::hostname(),
        started_unix_ns: unix_now_ns(),
        started_boot_ns: boottime_ns(),
        engine: engine.clone(),
        hooks: att
            .hooks
            .iter()
            .map(|h| HookRecord {
                hook: h.hook.to_string(),
                why: h.why.to_string(),
                mechanism: h.mechanism.map(|m| m.to_string()),
                points: h.points.clone(),
                notes: h.notes.clone(),
            })
            .collect(),
        missing_tracepoint_fields: att.gaps.tp_fields.clone(),
        missing_btf_members: att.gaps.btf_members.clone(),
        command,
        options: serde_json::json!({
            "all_work": opts.all_work,
            "follow_work": opts.follow_work,
            "ring_mib": opts.ring_bytes >> 20,
        }),
    }
}

/// What became of a recording.
#[derive(Debug)]
pub struct Recorded {
    pub path: PathBuf,
    /// Size in bytes, or why the recording is incomplete.
    pub outcome: Result<u64, String>,
    pub events: u64,
}

impl Recorded {
    /// Says on stderr where the recording is and whether it is complete.
    pub fn tell(&self) {
        match &self.outcome {
            Ok(bytes) => eprintln!(
                "tracer: recording {} ({} events, {bytes} bytes); `tracer report {}` replays it",
                self.path.display(),
                self.events,
                self.path.display()
            ),
            Err(e) => eprintln!(
                "tracer: the recording {} is incomplete: {e}",
                self.path.display()
            ),
        }
    }
}

/// Streams into `sink` while recording to `path` (`tracer attach --record`). The sink comes
/// back for the caller's closing lines.
pub async fn stream_recorded<S: EngineSink>(
    att: &mut Attached,
    attach_opts: &attach::Options,
    opts: StreamOptions,
    sink: S,
    path: &Path,
) -> Result<(Summary, S, Recorded)> {
    let h = header(att, sink.engine().config(), attach_opts, None);
    let writer = TraceWriter::create(path, &h)?;
    let mut rec = RecordSink::new(sink, writer);
    let r = stream::run(att, opts, &mut rec).await;
    let stopped_by = r.as_ref().map(|s| s.stopped_by).unwrap_or("error");
    let outcome = rec.finish(stopped_by, None).map(|(_, b)| b);
    let recorded = Recorded {
        path: path.to_path_buf(),
        outcome,
        events: rec.events,
    };
    Ok((r?, rec.inner, recorded))
}

/// `tracer run`'s command line.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Where to write the recording (default: `tracer-<UTC time>.trace` here; never
    /// overwritten; mode 0600).
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
    /// Where to write the report (default: next to the recording, `<name>.report.txt`,
    /// `.report.json`, `.report.html` or `.perfetto.json` by format).
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Format of the report.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,
    /// Replace kernel addresses in the report by stable tokens, for sharing it.
    #[arg(long)]
    pub redact: bool,
    /// Also print the live verdicts and notices on stderr while the command runs.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub live: Option<Format>,
    /// Keep recording up to this long after the command exits while deferred releases are
    /// still on their way out (not at all when none is); with --alloc-filter, also until the
    /// leak report of the command's last umount is made, a grace period after it (not at all
    /// when no report waits).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "200ms")]
    pub linger: Duration,
    #[command(flatten)]
    pub probes: crate::attach::args::AttachArgs,
    /// The command to run and its arguments (after `--`).
    #[arg(
        value_name = "CMD",
        required = true,
        num_args = 1..,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<String>,
}

/// `tracer run` from its command line: returns the exit status to leave with.
pub fn cli(a: RunArgs) -> Result<i32> {
    main(RunOptions {
        attach: a.probes.options()?,
        stats_every: a.probes.stats_every(),
        record: a.record,
        report: a.report,
        report_format: a.format,
        redact: a.redact,
        live: a.live,
        linger: a.linger,
        command: a.command,
    })
}

/// Options of `tracer run`.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub attach: attach::Options,
    pub stats_every: Duration,
    /// Recording path (default `tracer-<UTC time>.trace` here).
    pub record: Option<PathBuf>,
    /// Report path (default: the recording's path with the format's extension).
    pub report: Option<PathBuf>,
    pub report_format: ReportFormat,
    pub redact: bool,
    /// Print the live engine's notices on stderr while the command runs.
    pub live: Option<Format>,
    /// Keep recording this long after the command exits (deferred releases finishing).
    pub linger: Duration,
    pub command: Vec<String>,
}

/// `tracer-20250601T120000Z`.
pub fn default_stem() -> String {
    let t = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let compact: String = t.chars().filter(|c| *c != '-' && *c != ':').collect();
    format!("tracer-{compact}")
}

/// The report's path next to the recording: `x.trace` → `x.report.txt`.
pub fn report_path_for(record: &Path, format: ReportFormat) -> PathBuf {
    let stem = record
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "tracer".into());
    record.with_file_name(format!("{stem}.{}", format.extension()))
}

/// The command's exit, as the waiting thread saw it.
#[derive(Clone, Copy, Debug)]
struct Exit {
    ts_ns: u64,
    status: i32,
    signal: Option<i32>,
}

#[derive(Default)]
struct Shared {
    pid: Option<u32>,
    exit: Option<Exit>,
    spawn_error: Option<String>,
}

/// Spawns the command when the stream is ready (everything attached, snapshot taken).
struct RunSink<S: EngineSink> {
    rec: RecordSink<S>,
    argv: Vec<String>,
    shared: Arc<Mutex<Shared>>,
    stop: Arc<Notify>,
    linger: Linger,
    stats_every: Duration,
    /// `ReportsDue::encode` of the live sink's pending leak reports, kept current for the
    /// thread that stops the stream after the command.
    due: Arc<std::sync::atomic::AtomicU64>,
    /// Set once the stream has caught up past the command's exit with no release left on
    /// its way out (`Engine::releases_pending`): the linger ends there.
    settled: Arc<std::sync::atomic::AtomicBool>,
}

/// How long the recording goes on after the command exits.
#[derive(Clone, Copy, Debug)]
struct Linger {
    /// At most (`--linger`), while releases are on their way out: deferred releases of the
    /// command's last files finishing.
    base: Duration,
    /// With allocation tracking, the leak grace: waited after `base` while a leak report
    /// waits for its grace period, or whole where that is not known (the TUI); never when
    /// no report waits.
    grace: Option<Duration>,
}

impl Linger {
    /// Runs in the thread that saw the command exit: returns when the stream may stop.
    fn wait(
        self,
        due: &std::sync::atomic::AtomicU64,
        settled: &std::sync::atomic::AtomicBool,
        stats_every: Duration,
    ) {
        let start = std::time::Instant::now();
        while start.elapsed() < self.base && !settled.load(std::sync::atomic::Ordering::SeqCst) {
            std::thread::sleep(LINGER_POLL);
        }
        let Some(grace) = self.grace else { return };
        let start = std::time::Instant::now();
        // A report is made right after its due time (`Sink::wake_ns`); then none waits. The
        // cap is for a stream too busy to get there.
        let cap = grace + 2 * stats_every + Duration::from_secs(1);
        loop {
            match ReportsDue::decode(due.load(std::sync::atomic::Ordering::SeqCst)) {
                ReportsDue::None => return,
                ReportsDue::Unknown if start.elapsed() + self.base >= grace => return,
                _ if start.elapsed() >= cap => return,
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}

/// How often the linger looks whether the releases are done.
const LINGER_POLL: Duration = Duration::from_millis(5);

impl<S: EngineSink> RunSink<S> {
    /// Keeps `due` current for the thread that stops the stream after the command.
    fn note_reports_due(&self) {
        self.due.store(
            self.rec.inner.reports_due().encode(),
            std::sync::atomic::Ordering::SeqCst,
        );
    }

    fn spawn(&mut self) -> Result<()> {
        let mut cmd = Command::new(&self.argv[0]);
        cmd.args(&self.argv[1..])
            .stdin(Stdio::inherit())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit());
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                let msg = format!("cannot run {}: {e}", self.argv[0]);
                self.shared.lock().unwrap().spawn_error = Some(msg.clone());
                bail!(msg);
            }
        };
        let pid = child.id();
        self.shared.lock().unwrap().pid = Some(pid);
        self.rec.push(&Item::CommandStarted {
            ts_ns: boottime_ns(),
            pid,
            argv: self.argv.clone(),
        });
        let shared = self.shared.clone();
        let stop = self.stop.clone();
        let linger = self.linger;
        let due = self.due.clone();
        let settled = self.settled.clone();
        let stats_every = self.stats_every;
        std::thread::spawn(move || {
            use std::os::unix::process::ExitStatusExt;
            let st = child.wait();
            let ts_ns = boottime_ns();
            let exit = match st {
                Ok(s) => match (s.code(), s.signal()) {
                    (Some(c), _) => Exit {
                        ts_ns,
                        status: c,
                        signal: None,
                    },
                    (None, Some(sig)) => Exit {
                        ts_ns,
                        status: 128 + sig,
                        signal: Some(sig),
                    },
                    (None, None) => Exit {
                        ts_ns,
                        status: 1,
                        signal: None,
                    },
                },
                Err(_) => Exit {
                    ts_ns,
                    status: 1,
                    signal: None,
                },
            };
            shared.lock().unwrap().exit = Some(exit);
            // Deferred releases of the command's last files finish after it is reaped, and
            // the leak report of its last umount comes a grace period after that umount.
            linger.wait(&due, &settled, stats_every);
            stop.notify_one();
        });
        Ok(())
    }
}

impl<S: EngineSink> Sink for RunSink<S> {
    fn event(&mut self, ev: &tracer_fs::event::Event) -> Result<()> {
        self.rec.event(ev)?;
        // An umount starts a report's grace period.
        if matches!(ev.payload, tracer_fs::event::Payload::MountCall { .. }) {
            self.note_reports_due();
        }
        Ok(())
    }

    fn figures(&mut self, f: &Figures) -> Result<()> {
        self.rec.figures(f)?;
        // Due reports are made at the tick.
        self.note_reports_due();
        Ok(())
    }

    fn bad_record(&mut self, err: &str) -> Result<()> {
        self.rec.bad_record(err)
    }

    fn warning(&mut self, msg: &str) -> Result<()> {
        self.rec.warning(msg)
    }

    fn ready(&mut self) -> Result<()> {
        self.rec.ready()?;
        self.spawn()
    }

    fn end(&mut self) -> Result<()> {
        self.rec.end()
    }

    fn wake_ns(&self) -> Option<u64> {
        self.rec.wake_ns()
    }

    fn caught_up(&mut self, as_of_ns: u64) -> Result<()> {
        use std::sync::atomic::Ordering::SeqCst;
        let exited_ns = self.shared.lock().unwrap().exit.map(|e| e.ts_ns);
        if exited_ns.is_some_and(|t| t < as_of_ns)
            && !self.settled.load(SeqCst)
            && self.rec.inner.engine().releases_pending() == 0
        {
            self.settled.store(true, SeqCst);
        }
        self.rec.caught_up(as_of_ns)
    }
}

/// `tracer run`: returns the exit status to leave with.
pub fn main(opts: RunOptions) -> Result<i32> {
    if opts.command.is_empty() {
        bail!("tracer run: no command given (tracer run [options] -- CMD ARGS...)");
    }
    // Everything that can fail before the command runs fails here: the command never runs
    // untraced.
    if !is_root() {
        bail!(NOT_ROOT);
    }
    let record = opts
        .record
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.trace", default_stem())));
    if record.exists() {
        bail!(
            "{} exists: give another --record path (recordings are never overwritten)",
            record.display()
        );
    }
    let report_path = opts
        .report
        .clone()
        .unwrap_or_else(|| report_path_for(&record, opts.report_format));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let started = std::time::SystemTime::now();
    let (status, recorded, att, gathered) = runtime.block_on(run_traced(&opts, &record))?;
    // Detaching mostly waits for the kernel's RCU grace periods and the report's rendering
    // below (or a replay of the file, if the recording stopped early) is all CPU, so they
    // overlap; the detach is joined before we return (never exit with probes attached).
    let detach = Detach::start(att);
    let mut err = std::io::stderr().lock();
    match &recorded.outcome {
        Ok(bytes) => {
            let _ = writeln!(
                err,
                "tracer: recording {} ({} events, {} bytes)",
                record.display(),
                recorded.events,
                bytes
            );
        }
        Err(e) => {
            let _ = writeln!(
                err,
                "tracer: the recording {} is incomplete: {e}",
                record.display()
            );
        }
    }
    drop(err);
    let replayed = match gathered {
        Some(r) => Ok(r),
        None => report::replay_file(&record, &report_options(&opts)),
    };
    match replayed {
        Ok(mut r) => {
            match report::write_rendered(&mut r, &report_path, opts.report_format) {
                Ok(()) => eprintln!("tracer: report {}", report_path.display()),
                Err(e) => eprintln!("tracer: no report: {e:#}"),
            }
            // `./check` of an fstests checkout: findings beside its results
            // (record/fstests.rs), from the same replay.
            super::fstests::after_run(&mut r, &opts.command, started);
        }
        Err(e) => eprintln!("tracer: no report: {e:#}"),
    }
    drop(detach);
    Ok(status)
}

/// Probes being detached on a thread of their own; dropping it waits until they are.
struct Detach(Option<std::thread::JoinHandle<()>>);

impl Detach {
    fn start(att: Attached) -> Detach {
        Detach(Some(std::thread::spawn(move || drop(att))))
    }
}

impl Drop for Detach {
    fn drop(&mut self) {
        if let Some(t) = self.0.take() {
            let _ = t.join();
        }
    }
}

fn report_options(opts: &RunOptions) -> ReportOptions {
    ReportOptions {
        test: None,
        redact: opts.redact,
        timeline: opts.report_format == ReportFormat::Perfetto,
    }
}

async fn run_traced(
    opts: &RunOptions,
    record: &Path,
) -> Result<(i32, Recorded, Attached, Option<report::Report>)> {
    // Our own handlers first: from here on SIGINT/SIGTERM do not kill the tracer, the
    // command gets them and the recording goes on until it exits.
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let check_logs = super::fstests::CheckLogs::before_run(&opts.command);
    let mut att = attach::attach(&opts.attach)?;
    let kallsyms = att.kallsyms.clone();
    let engine = tracer_fs::Engine::new(live::engine_config(&att));
    let out: Box<dyn Write> = match opts.live {
        Some(_) => Box::new(std::io::stderr()),
        None => Box::new(std::io::sink()),
    };
    let mut live = LiveSink::new(
        engine,
        out,
        opts.live.unwrap_or(Format::Text),
        false,
        &kallsyms,
    );
    live.start_alloc(&mut att, &opts.attach)?;
    let h = header(
        &att,
        live.engine.config(),
        &opts.attach,
        Some(opts.command.clone()),
    );
    let writer = TraceWriter::create(record, &h)?;
    let missing = att.hooks.iter().filter(|h| !h.live()).count();
    eprintln!(
        "tracer: attached ({} hooks live, {missing} not available; `tracer doctor` says why); recording to {}",
        att.hooks.len() - missing,
        record.display()
    );
    let stop = Arc::new(Notify::new());
    let shared = Arc::new(Mutex::new(Shared::default()));
    // The report is gathered beside the live engine from the items as they are recorded,
    // so it is ready when the command ends (reading the file back took 0.4-0.7 s after
    // every fstests run) and no event is applied twice; the file is read back only if the
    // recording stopped early.
    let rec = RecordSink::gathering_report(live, writer, h, &report_options(opts));
    let mut sink = RunSink {
        rec,
        argv: opts.command.clone(),
        shared: shared.clone(),
        stop: stop.clone(),
        // With allocation tracking, long enough for the leak report of the command's last
        // umount (made a grace period after it) to be made and recorded.
        linger: Linger {
            base: opts.linger,
            grace: opts.attach.alloc.as_ref().map(|a| a.grace),
        },
        due: Default::default(),
        settled: Default::default(),
        stats_every: opts.stats_every,
    };
    sink.note_reports_due();
    let sopts = StreamOptions {
        stats_every: opts.stats_every,
        stop: Some(stop.clone()),
        stop_on_signals: false,
        ..Default::default()
    };
    let mut interrupted = 0;
    let result = {
        let fut = stream::run(&mut att, sopts, &mut sink);
        tokio::pin!(fut);
        loop {
            tokio::select! {
                r = &mut fut => break r,
                _ = sigint.recv() => {
                    // The terminal sent SIGINT to the command as well.
                    interrupted += 1;
                    if interrupted == 1 {
                        eprintln!("tracer: waiting for the command to exit (Ctrl-C again: stop recording now)");
                    } else {
                        stop.notify_one();
                    }
                }
                _ = sigterm.recv() => {
                    let pid = shared.lock().unwrap().pid;
                    match pid {
                        // SAFETY: signalling our own child.
                        Some(pid) => unsafe { libc::kill(pid as i32, libc::SIGTERM); },
                        None => stop.notify_one(),
                    }
                }
            }
        }
    };
    let (pid, exit, spawn_error) = {
        let s = shared.lock().unwrap();
        (s.pid, s.exit, s.spawn_error.clone())
    };
    if let (Some(pid), Some(e)) = (pid, exit) {
        sink.rec.push(&Item::CommandExited {
            ts_ns: e.ts_ns,
            pid,
            status: e.status,
            signal: e.signal,
        });
    }
    // fstests' own verdicts, so reports and CI exports can join them with the findings.
    if let Some(logs) = &check_logs {
        let results = logs.results();
        if !results.is_empty() {
            sink.rec.push(&Item::TestResults(results));
        }
    }
    let stopped_by = match (&result, exit) {
        (Err(_), _) => "error",
        (Ok(_), Some(_)) => "command exited",
        (Ok(s), None) => s.stopped_by,
    };
    let status = match (exit, &spawn_error) {
        (Some(e), _) => e.status,
        (None, Some(_)) => 127,
        (None, None) => 130,
    };
    let outcome = sink
        .rec
        .finish(stopped_by, exit.map(|e| e.status))
        .map(|(_, b)| b);
    let recorded = Recorded {
        path: record.to_path_buf(),
        outcome,
        events: sink.rec.events,
    };
    let gathered = sink.rec.take_report(&record.display().to_string());
    drop(sink);
    if let Err(e) = result {
        match spawn_error {
            Some(msg) => eprintln!("tracer: {msg}"),
            None => eprintln!("tracer: the stream failed: {e:#}"),
        }
    }
    if exit.is_none()
        && let Some(pid) = pid
    {
        eprintln!("tracer: stopped recording; the command (pid {pid}) is still running");
    }
    Ok((status, recorded, att, gathered))
}
