//! `cargo xtask build [--release]`: setup if something is missing, then `cargo build -p tracer`
//! (tracer/build.rs builds the eBPF programs on the way).

use anyhow::Result;

use crate::{setup, util};

#[derive(clap::Args)]
pub struct Args {
    /// Build the release profile.
    #[arg(long)]
    pub release: bool,
}

pub fn main(args: Args) -> Result<()> {
    setup::ensure(setup::Level::Build)?;
    build_tracer(args.release)
}

/// `cargo build -p tracer [--release]`.
pub fn build_tracer(release: bool) -> Result<()> {
    let mut cmd = util::cargo_cmd(["build", "-p", "tracer"]);
    if release {
        cmd.arg("--release");
    }
    util::run(&mut cmd)
}

/// The tracer binary a build of that profile produces.
pub fn tracer_binary(release: bool) -> std::path::PathBuf {
    util::target_dir()
        .join(if release { "release" } else { "debug" })
        .join("tracer")
}
