//! leakyfs, the test filesystem module (`xtask/vm/leakyfs/`), built for each VM kernel
//! against that kernel's headers and kbuild tools as `vm_kernel` unpacked them. It
//! misbehaves on purpose (leaks at mount, leaks on a failed mount, drops file references
//! from its own delayed work) so the tracer's reports can be checked against a known truth.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::{util, vm_kernel::Kernel};

/// The host's gcc standing in for the kernel's own (gcc-14 for 6.12, gcc-16 for 7.2, not
/// on the host): the options the kernel's configuration found in the newer compiler and
/// the host's lacks, rewritten to what the kernel uses without them.
const CC_COMPAT: &str = r#"#!/bin/sh
for a in "$@"; do
  shift
  case "$a" in
    -fmin-function-alignment=*) set -- "$@" "-falign-functions=${a#-fmin-function-alignment=}" ;;
    *) set -- "$@" "$a" ;;
  esac
done
exec gcc "$@"
"#;

/// Builds `leakyfs.ko` for `kernel` in `work/leakyfs-build`.
pub fn build(kernel: &Kernel, work: &Path) -> Result<PathBuf> {
    let src = util::workspace_root().join("xtask/vm/leakyfs");
    let dir = work.join("leakyfs-build");
    if dir.exists() {
        fs::remove_dir_all(&dir)?;
    }
    fs::create_dir_all(&dir)?;
    for f in ["leakyfs.c", "Kbuild"] {
        fs::copy(src.join(f), dir.join(f)).with_context(|| format!("copying {f}"))?;
    }
    let cc = work.join("cc-compat");
    fs::write(&cc, CC_COMPAT)?;
    crate::util::set_mode(&cc, 0o755)?;
    util::run(
        Command::new("make")
            .arg("-s")
            .arg("-C")
            .arg(&kernel.headers)
            .arg(format!("M={}", dir.display()))
            .arg(format!("CC={}", cc.display()))
            // No BTF for the module (it needs the kernel's pahole; nothing reads it).
            .arg("CONFIG_DEBUG_INFO_BTF_MODULES=")
            // The newer headers' `__counted_by` is unknown to the host's gcc: one warning
            // per use.
            .arg("KCFLAGS=-Wno-attributes")
            .arg("modules"),
    )
    .context("building leakyfs.ko (gcc and make are needed)")?;
    let ko = dir.join("leakyfs.ko");
    if !ko.exists() {
        bail!("the module build made no {}", ko.display());
    }
    Ok(ko)
}
