//! `cargo xtask test`: setup if something is missing, then formatting, clippy and the
//! workspace tests. The kernel tests need root: under CI (`CI=true`) not being root is an
//! error; elsewhere a warning, and the tests that need root skip themselves.

use anyhow::{Result, bail};

use crate::{setup, util};

#[derive(clap::Args)]
pub struct Args {}

pub fn main(_args: Args) -> Result<()> {
    check_root()?;
    setup::ensure(setup::Level::Test)?;
    fmt()?;
    clippy()?;
    cargo_test()
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

fn clippy() -> Result<()> {
    util::run(&mut util::cargo_cmd([
        "clippy",
        "--workspace",
        "--all-targets",
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
