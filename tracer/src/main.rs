use std::{io::IsTerminal, time::Duration};

use anyhow::{Result, bail};
use clap::{Parser, Subcommand};
use serde_json::json;
use tracer::{
    NOT_ROOT, attach, doctor, is_root,
    live::{self, Format, LiveSink},
    stream::{self, StreamOptions},
};

/// eBPF leak and refcount tracer for filesystem and io_uring developers.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// What this kernel lets tracer attach to, probed for real; exit status 0 when it can run.
    Doctor {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Attach the probes and follow file references, mounts and deferred work live.
    Attach {
        /// Stream JSON lines instead of opening the TUI.
        #[arg(long)]
        no_tui: bool,
        /// Stop after this long (e.g. `5s`, `2m`); default: until Ctrl-C / SIGTERM.
        #[arg(long, value_parser = humantime::parse_duration)]
        duration: Option<Duration>,
        /// Output format without the TUI.
        #[arg(long, value_enum, default_value_t = Format::Json)]
        format: Format,
        /// Do not write every event, only hooks, verdicts, notices and counters.
        #[arg(long)]
        no_events: bool,
        /// The benchmarks' floor: count-only programs on the default mode's attach points.
        #[arg(long, hide = true)]
        floor: bool,
        #[command(flatten)]
        probes: tracer::attach::args::AttachArgs,
        /// Also record every event to FILE (mode 0600; never overwritten), for `tracer report`.
        #[arg(long, value_name = "FILE")]
        record: Option<std::path::PathBuf>,
    },
    /// Attach, run CMD, detach when it exits; write a recording and its report, and exit
    /// with CMD's status (e.g. `tracer run -- ./check generic/388`).
    Run(tracer::record::run::RunArgs),
    /// Speed of writing and reading recordings (for `cargo xtask bench`).
    #[command(hide = true)]
    BenchRecord(tracer::record::bench::BenchArgs),
    /// Speed of the cross-run replay over a generated set of recordings (for `cargo xtask bench`).
    #[command(hide = true)]
    BenchRuns(tracer::report::runs::bench::BenchRunsArgs),
    /// Replay a recording (from `--record` or `tracer run`) and report per xfstests test:
    /// what pinned each mount, what leaked, deferred-work latencies.
    Report(tracer::report::ReportArgs),
}

/// `tracer attach --floor`: attach the count-only programs, print `hooks`, `ready`, `stats`
/// (`floor_runs`) and `end` as JSON lines, until the duration ends, SIGINT or SIGTERM.
fn run_floor(duration: Option<Duration>, every: Duration) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let floor = attach::attach_floor()?;
        println!("{}", json!({ "type": "hooks", "hooks": floor.hooks }));
        println!("{}", json!({ "type": "ready" }));
        let mut sigint = signal(SignalKind::interrupt())?;
        let mut sigterm = signal(SignalKind::terminate())?;
        let deadline = duration.map(|d| tokio::time::Instant::now() + d);
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        let stopped_by = loop {
            let until =
                deadline.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                _ = tick.tick() => {
                    println!("{}", json!({ "type": "stats", "floor_runs": floor.count()? }));
                }
                _ = sigint.recv() => break "SIGINT",
                _ = sigterm.recv() => break "SIGTERM",
                _ = tokio::time::sleep_until(until), if deadline.is_some() => break "duration",
            }
        };
        println!(
            "{}",
            json!({ "type": "end", "stopped_by": stopped_by, "floor_runs": floor.count()?, "drops": 0 })
        );
        drop(floor);
        Ok(())
    })
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Doctor { json } => {
            let report = doctor::run();
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                doctor::print_human(&report);
            }
            std::process::exit(if report.can_run { 0 } else { 1 });
        }
        Command::Run(args) => std::process::exit(tracer::record::run::cli(args)?),
        Command::Report(args) => tracer::report::main(args),
        Command::BenchRuns(args) => {
            println!("{}", tracer::report::runs::bench::run(&args)?);
            Ok(())
        }
        Command::BenchRecord(args) => {
            println!("{}", tracer::record::bench::run(&args)?);
            Ok(())
        }
        Command::Attach {
            no_tui,
            duration,
            format,
            no_events,
            floor,
            probes,
            record,
        } => {
            if !is_root() {
                bail!(NOT_ROOT);
            }
            if floor {
                return run_floor(duration, probes.stats_every());
            }
            let opts = probes.options()?;
            let stream_opts = StreamOptions {
                duration,
                stats_every: probes.stats_every(),
                stop: None,
                ..Default::default()
            };
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let tui = !no_tui && std::io::stdout().is_terminal();
            if tui {
                return runtime.block_on(tracer::tui::attach(
                    &opts,
                    stream_opts,
                    record.as_deref(),
                ));
            }
            runtime.block_on(async move {
                stream::catch_stop_signals_early()?;
                let mut att = attach::attach(&opts)?;
                let kallsyms = att.kallsyms.clone();
                let engine = tracer_fs::Engine::new(live::engine_config(&att));
                let mut out = LiveSink::new(
                    engine,
                    std::io::stdout().lock(),
                    format,
                    !no_events,
                    &kallsyms,
                );
                out.json(&json!({
                    "type": "hooks",
                    "hooks": att.hooks,
                    "followed_work": att.followed,
                    "missing_tracepoint_fields": att.gaps.tp_fields,
                    "missing_btf_members": att.gaps.btf_members,
                }))?;
                for h in &att.hooks {
                    let how = match h.mechanism {
                        Some(m) => format!("{m}: {}", h.points.join(", ")),
                        None => format!("NOT AVAILABLE: {}", h.notes.join("; ")),
                    };
                    out.text(&format!("hook {:<24} {how}", h.hook))?;
                }
                out.start_alloc(&mut att, &opts)?;
                let summary = match &record {
                    None => stream::run(&mut att, stream_opts, &mut out).await?,
                    Some(path) => {
                        let (summary, back, rec) = tracer::record::run::stream_recorded(
                            &mut att,
                            &opts,
                            stream_opts,
                            out,
                            path,
                        )
                        .await?;
                        out = back;
                        rec.tell();
                        summary
                    }
                };
                out.json(&json!({
                    "type": "end",
                    "stopped_by": summary.stopped_by,
                    "events": summary.events,
                    "bad_records": summary.bad_records,
                    "drops": summary.figures.total_drops(),
                    "notices": out.notices,
                }))?;
                out.text(&format!(
                    "tracer: stopped by {}; {} events, {} notices, {} records lost, {} undecodable",
                    summary.stopped_by,
                    summary.events,
                    out.notices,
                    summary.figures.total_drops(),
                    summary.bad_records
                ))?;
                drop(att);
                Ok(())
            })
        }
    }
}
