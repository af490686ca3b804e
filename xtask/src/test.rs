//! `cargo xtask test`: setup if something is missing, then formatting, clippy and the
//! workspace tests. The kernel tests need root: under CI (`CI=true`) not being root is an
//! error; elsewhere a warning, and the tests that need root skip themselves. Then the real
//! fstests under the tracer (`cargo xtask fstests`, its curated list), unless
//! `--no-fstests`. Then the VM
//! tier (`cargo xtask vm-test`: tracer doctor, the EBUSY and leakyfs tests inside Debian's
//! cloud kernel under qemu, with the release tracer),
//! unless `--no-vm`.

use anyhow::{Result, bail};

use crate::{build, fstests, setup, util, vm};

#[derive(clap::Args)]
pub struct Args {
    /// Skip the VM tier (`cargo xtask vm-test`) after the cargo tests.
    #[arg(long)]
    pub no_vm: bool,
    /// Skip the fstests tier (`cargo xtask fstests`) after the cargo tests.
    #[arg(long)]
    pub no_fstests: bool,
}

pub fn main(args: Args) -> Result<()> {
    check_root()?;
    setup::ensure(setup::Level::Test)?;
    fmt()?;
    clippy()?;
    // fstests' fsstress drives the real kill -9 EBUSY test (tracer/tests/fsstress.rs),
    // which looks for it under target/fstests: build it first (cached).
    if util::is_root() {
        fstests::run(&fstests::Args {
            build_only: true,
            ..fstests::Args::default()
        })?;
    }
    cargo_test()?;
    fuzz()?;
    // The release tracer, for both tiers: the fstests tier traces with it (the debug
    // engine can fall behind a burst of records and lose some), and it goes in the VM
    // (under TCG the debug one's start-up takes 3x longer).
    if util::is_root() {
        build::build_tracer(true)?;
    }
    // A failing fstests tier does not hide the VM tier's results: its error comes last.
    let fstests = if args.no_fstests {
        eprintln!("xtask: --no-fstests: skipping the fstests tier");
        Ok(())
    } else {
        fstests::run(&fstests::Args::default())
    };
    if let Err(e) = &fstests {
        eprintln!("xtask: the fstests tier failed ({e:#}); going on with the VM tier");
    }
    if args.no_vm {
        eprintln!("xtask: --no-vm: skipping the VM tier");
        return fstests;
    }
    build::build_tracer(true)?;
    vm::run(&vm::Args::default())?;
    fstests
}

fn check_root() -> Result<()> {
    if util::is_root() {
        return Ok(());
    }
    if util::in_ci() {
        bail!("CI=true but not running as root: the kernel tests need root");
    }
    eprintln!(
        "xtask: WARNING: not running as root: the tests that load eBPF programs or mount \
         filesystems will be SKIPPED. Run `sudo -E cargo xtask test` for the full suite."
    );
    Ok(())
}

/// `cargo fmt --check` for the workspace and for tracer-ebpf (excluded from the workspace, so
/// `--all` does not reach it).
fn fmt() -> Result<()> {
    util::run(&mut util::cargo_cmd(["fmt", "--all", "--", "--check"]))?;
    util::run(&mut util::cargo_cmd([
        "fmt",
        "--manifest-path",
        "tracer-ebpf/Cargo.toml",
        "--",
        "--check",
    ]))
}

/// Clippy for the workspace and for tracer-ebpf (checked for the host target, as its fmt).
fn clippy() -> Result<()> {
    util::run(&mut util::cargo_cmd([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    util::run(&mut util::cargo_cmd([
        "clippy",
        "--manifest-path",
        "tracer-ebpf/Cargo.toml",
        "--",
        "-D",
        "warnings",
    ]))
}

fn cargo_test() -> Result<()> {
    util::run(&mut util::cargo_cmd([
        "test",
        "--workspace",
        "--no-fail-fast",
    ]))
}

/// A short run of the recording reader's fuzz target (`tracer/fuzz`, `cargo fuzz`), when a
/// rustup `nightly` toolchain is there (cargo-fuzz needs one); cargo-fuzz is installed the
/// first time. `TRACER_FUZZ_SECONDS` sets how long (default 20; 0 skips). New inputs go to
/// `tracer/fuzz/corpus/` (not checked in); the checked-in seeds are `tracer/fuzz/seeds/`.
fn fuzz() -> Result<()> {
    let secs: u64 = std::env::var("TRACER_FUZZ_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    if secs == 0 {
        eprintln!("xtask: fuzzing skipped (TRACER_FUZZ_SECONDS=0)");
        return Ok(());
    }
    let nightly = |args: &[&str]| {
        let mut c = std::process::Command::new("rustup");
        c.args(["run", "nightly", "cargo"]).args(args);
        c
    };
    if util::probe(&mut nightly(&["--version"])).is_none() {
        eprintln!(
            "xtask: WARNING: fuzzing skipped: no rustup nightly toolchain (cargo fuzz needs one)"
        );
        return Ok(());
    }
    if util::find_program("cargo-fuzz").is_none() {
        util::run(&mut util::cargo_cmd(["install", "cargo-fuzz", "--locked"]))?;
    }
    let dir = util::workspace_root().join("tracer/fuzz");
    std::fs::create_dir_all(dir.join("corpus/reader"))?;
    let max_time = format!("-max_total_time={secs}");
    util::run(
        nightly(&[
            "fuzz",
            "run",
            "--sanitizer",
            "none",
            "--debug-assertions",
            "reader",
            "corpus/reader",
            "seeds/reader",
            "--",
            &max_time,
            "-max_len=8192",
            "-rss_limit_mb=4096",
        ])
        .current_dir(&dir),
    )
}
