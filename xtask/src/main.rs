//! Build, run and test orchestration for tracer: `cargo xtask <command>`.
//!
//! One module per command; `util` holds the shared helpers (printing and running commands,
//! workspace paths, root checks) and `ebpf_route` the detection shared with tracer/build.rs.

mod bench;
mod build;
mod ebpf_route;
mod fstests;
mod fstests_runs;
mod leakyfs;
mod run;
mod setup;
mod test;
mod util;
mod vm;
mod vm_kernel;
mod vm_tests;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Build, run and test tracer")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what building and testing need (idempotent; apt on Debian/Ubuntu).
    Setup(setup::Args),
    /// Build tracer (and its eBPF programs), running setup first if something is missing.
    Build(build::Args),
    /// Build, then run tracer as root: `cargo xtask run -- attach`.
    Run(run::Args),
    /// Formatting, clippy and the workspace tests (kernel tests need root).
    Test(test::Args),
    /// The real fstests under `tracer run`: build it, loop devices, the curated tests
    /// untraced then traced, checks (root).
    Fstests(fstests::Args),
    /// Boot Debian's cloud kernel (kprobes, fentry) under qemu and run tracer doctor in it.
    VmTest(vm::Args),
    /// Measure what tracing costs workloads: tracer's configurations, its floor, bpftrace,
    /// bcc's memleak (a few minutes; root; not part of `test`).
    Bench(bench::Args),
    /// The cross-run report's replay throughput over a generated set of recordings
    /// (release build; no root; also part of `bench`).
    BenchRuns(bench::runs::Args),
    /// One benchmark workload run (used by `bench`).
    #[command(hide = true)]
    BenchWorkload(bench::workload::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Setup(args) => setup::main(args),
        Cmd::Build(args) => build::main(args),
        Cmd::Run(args) => run::main(args),
        Cmd::Test(args) => test::main(args),
        Cmd::Fstests(args) => fstests::main(args),
        Cmd::VmTest(args) => vm::main(args),
        Cmd::Bench(args) => bench::main(args),
        Cmd::BenchWorkload(args) => bench::workload::main(args),
        Cmd::BenchRuns(args) => bench::runs::main(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
