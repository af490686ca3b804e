//! leakyfs, the test filesystem module (`xtask/vm/leakyfs/`), built for the VM's kernel with
//! Debian's matching `linux-headers-<version>` package. It misbehaves on purpose (leaks at
//! mount, leaks on a failed mount, drops file references from its own delayed work) so the
//! tracer's reports can be checked against a known truth.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::util;

/// Builds `leakyfs.ko` for kernel `version` in `work`, installing the headers when missing.
pub fn build(version: &str, work: &Path) -> Result<PathBuf> {
    let headers = Path::new("/usr/src").join(format!("linux-headers-{version}"));
    if !headers.join("Makefile").exists() {
        install_headers(version)?;
    }
    let src = util::workspace_root().join("xtask/vm/leakyfs");
    let dir = work.join("leakyfs-build");
    if dir.exists() {
        fs::remove_dir_all(&dir)?;
    }
    fs::create_dir_all(&dir)?;
    for f in ["leakyfs.c", "Kbuild"] {
        fs::copy(src.join(f), dir.join(f)).with_context(|| format!("copying {f}"))?;
    }
    util::run(
        Command::new("make")
            .arg("-s")
            .arg("-C")
            .arg(&headers)
            .arg(format!("M={}", dir.display()))
            .arg("modules"),
    )
    .context("building leakyfs.ko (kernel headers, gcc and make are needed)")?;
    let ko = dir.join("leakyfs.ko");
    if !ko.exists() {
        bail!("the module build made no {}", ko.display());
    }
    Ok(ko)
}

fn install_headers(version: &str) -> Result<()> {
    let package = format!("linux-headers-{version}");
    if !util::is_root() {
        bail!("{package} is missing and installing it needs root");
    }
    let install = |cmd: &mut Command| util::run(cmd.env("DEBIAN_FRONTEND", "noninteractive"));
    let apt_install = || {
        install(
            Command::new("apt-get")
                .args(["install", "-y", "--no-install-recommends"])
                .arg(&package),
        )
    };
    if apt_install().is_err() {
        // A fresh machine may have no package lists yet.
        install(Command::new("apt-get").arg("update"))?;
        apt_install()?;
    }
    Ok(())
}
