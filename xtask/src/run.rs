//! `cargo xtask run [--release] -- ARGS`: build, then run `target/<profile>/tracer ARGS` as
//! root (re-executed through `sudo -E` when we are not root).

use std::{ffi::OsString, os::unix::process::CommandExt as _, process::Command};

use anyhow::{Result, bail};

use crate::{build, setup, util};

#[derive(clap::Args)]
pub struct Args {
    /// Build and run the release profile.
    #[arg(long)]
    pub release: bool,
    /// Arguments for tracer, after `--` (e.g. `-- attach`).
    #[arg(last = true)]
    pub args: Vec<OsString>,
}

pub fn main(args: Args) -> Result<()> {
    // Before building: without root nor sudo there is nothing to run it with.
    let sudo = if util::is_root() {
        None
    } else if let Some(sudo) = util::find_program("sudo") {
        Some(sudo)
    } else {
        bail!(
            "tracer needs root (CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN) to load eBPF programs, \
             and sudo was not found: run `cargo xtask build{}` and then `{}` as root",
            if args.release { " --release" } else { "" },
            build::tracer_binary(args.release).display()
        );
    };
    setup::ensure(setup::Level::Build)?;
    build::build_tracer(args.release)?;
    let binary = build::tracer_binary(args.release);
    let mut cmd = match sudo {
        None => Command::new(&binary),
        Some(sudo) => {
            let mut cmd = Command::new(sudo);
            cmd.arg("-E").arg(&binary);
            cmd
        }
    };
    cmd.args(&args.args);
    eprintln!("$ {}", util::show(&cmd));
    // Replace this process: tracer gets the terminal's signals (Ctrl-C) and its exit status
    // becomes ours.
    let err = cmd.exec();
    bail!("cannot run `{}`: {err}", util::show(&cmd))
}
