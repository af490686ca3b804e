//! Helpers shared by the commands: workspace paths, printing and running commands, root.

use std::{
    env,
    ffi::OsString,
    path::PathBuf,
    process::{Command, ExitStatus},
};

use anyhow::{Context as _, Result, bail};

/// The workspace root (the parent of xtask/).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// The cargo that runs us (`cargo xtask` sets `CARGO`), else the one on PATH.
pub fn cargo() -> OsString {
    env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// A `cargo` command run from the workspace root.
pub fn cargo_cmd<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut cmd = Command::new(cargo());
    cmd.current_dir(workspace_root()).args(args);
    cmd
}

/// The workspace's target directory.
pub fn target_dir() -> PathBuf {
    env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// A shell-like rendering: the variables the command sets, the program (`cargo` for the
/// cargo that runs us), the arguments.
pub fn show(cmd: &Command) -> String {
    let mut parts = Vec::new();
    for (key, value) in cmd.get_envs() {
        let Some(value) = value else { continue };
        let mut value = quote(&value.to_string_lossy());
        // A PATH we prepended to reads as `PREFIX:$PATH`.
        if key == "PATH" {
            let current = env::var("PATH").unwrap_or_default();
            if let Some(prefix) = value.strip_suffix(&format!(":{current}")) {
                value = format!("{prefix}:$PATH");
            }
        }
        parts.push(format!("{}={value}", key.to_string_lossy()));
    }
    let program = cmd.get_program();
    parts.push(if program == cargo() {
        "cargo".to_string()
    } else {
        program.to_string_lossy().into_owned()
    });
    parts.extend(cmd.get_args().map(|a| quote(&a.to_string_lossy())));
    parts.join(" ")
}

fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Prints the command, then runs it with inherited stdio; fails when it fails.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = status(cmd)?;
    if !status.success() {
        bail!("`{}` failed ({status})", show(cmd));
    }
    Ok(())
}

/// Prints the command, then runs it with inherited stdio, returning its status.
pub fn status(cmd: &mut Command) -> Result<ExitStatus> {
    eprintln!("$ {}", show(cmd));
    cmd.status()
        .with_context(|| format!("cannot start `{}`", show(cmd)))
}

/// Runs a command quietly (a probe); its stdout when it succeeds.
pub fn probe(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Under CI (`CI=true`, as CI runs .ci/run).
pub fn in_ci() -> bool {
    env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// A program on PATH (or in the cargo install directories).
pub fn find_program(name: &str) -> Option<PathBuf> {
    crate::ebpf_route::find_program(name)
}

pub fn set_mode(path: &std::path::Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// Ctrl-C or SIGTERM seen (a terminal's Ctrl-C reaches the running command too): the
/// long commands stop at their next step and tear down what they set up.
pub fn interrupted_flag() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    use std::sync::{Arc, OnceLock, atomic::AtomicBool, atomic::Ordering};
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        let f = flag.clone();
        if let Err(e) = ctrlc::set_handler(move || {
            f.store(true, Ordering::SeqCst);
            eprintln!("xtask: interrupted: tearing down after the running command exits");
        }) {
            eprintln!("xtask: warning: no Ctrl-C handler ({e}); Ctrl-C may leave loop devices");
        }
        flag
    })
    .clone()
}

/// An error once [`interrupted_flag`] is set.
pub fn check_interrupted() -> Result<()> {
    if interrupted_flag().load(std::sync::atomic::Ordering::SeqCst) {
        bail!("interrupted (Ctrl-C or SIGTERM)");
    }
    Ok(())
}
