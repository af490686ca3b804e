//! Builds the eBPF programs (the `tracer-ebpf` crate) for `bpfel-unknown-none` and hands the
//! object to the tracer crate as `env!("TRACER_EBPF_OBJ")`, for
//! `aya::include_bytes_aligned!(env!("TRACER_EBPF_OBJ"))`.
//!
//! The compiler route (Debian's rustc-web, or a rustup nightly with rust-src) is detected by
//! `xtask/src/ebpf_route.rs`, shared with `cargo xtask setup`. The inner cargo runs with its
//! own target directory (`<target>/ebpf`), so it never waits on the outer cargo's lock, and
//! with the outer cargo's environment (wrappers, flags, target, profile) scrubbed. The eBPF
//! object is always built in release: debug eBPF code does not pass the verifier.

use std::{
    env,
    ffi::OsString,
    fs,
    io::{BufRead as _, BufReader, Write as _},
    path::{Path, PathBuf},
    process::{Command, ExitCode, Stdio},
};

#[allow(dead_code)]
#[path = "../xtask/src/ebpf_route.rs"]
mod ebpf_route;

use ebpf_route::{Route, RouteKind};

/// The `[[bin]]` name in tracer-ebpf/Cargo.toml: the object the build produces.
const EBPF_BIN: &str = "tracer";
/// What the object is copied to in OUT_DIR.
const OBJ_NAME: &str = "tracer-ebpf.o";

fn main() -> ExitCode {
    match build() {
        Ok(obj) => {
            println!("cargo:rustc-env=TRACER_EBPF_OBJ={}", obj.display());
            ExitCode::SUCCESS
        }
        Err(msg) => {
            eprintln!("\nerror: tracer's eBPF programs could not be built\n{msg}");
            ExitCode::FAILURE
        }
    }
}

fn build() -> Result<PathBuf, String> {
    let manifest_dir = PathBuf::from(env_var("CARGO_MANIFEST_DIR")?);
    let workspace = manifest_dir
        .parent()
        .ok_or("CARGO_MANIFEST_DIR has no parent")?
        .to_path_buf();
    let ebpf_dir = workspace.join("tracer-ebpf");
    let out_dir = PathBuf::from(env_var("OUT_DIR")?);

    for path in [
        ebpf_dir.join("src"),
        ebpf_dir.join("Cargo.toml"),
        ebpf_dir.join("Cargo.lock"),
        workspace.join("fs/src"),
        workspace.join("fs/Cargo.toml"),
    ] {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    for var in [
        ebpf_route::ROUTE_ENV,
        ebpf_route::TOOLCHAIN_ENV,
        "CARGO_TARGET_DIR",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }

    let endian = env::var("CARGO_CFG_TARGET_ENDIAN").unwrap_or_else(|_| "little".into());
    let target = if endian == "big" {
        "bpfeb-unknown-none"
    } else {
        "bpfel-unknown-none"
    };
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_else(|_| "x86_64".into());

    let route = ebpf_route::detect(target).map_err(|no| no.explain(target))?;
    let (linker, linker_version) = ebpf_route::find_bpf_linker().ok_or_else(|| {
        let llvm = route
            .llvm_major
            .map_or("<N>".to_string(), |n| n.to_string());
        format!(
            "bpf-linker was not found (or does not run) on PATH nor in ~/.cargo/bin.\n\
             Run `cargo xtask setup`, or by hand:\n  \
             PATH=/usr/lib/llvm-{llvm}/bin:$PATH cargo install bpf-linker \
             --no-default-features --features llvm-{llvm}\n\
             (LLVM {llvm} is the LLVM of the eBPF compiler: {})",
            route.describe()
        )
    })?;
    // Rebuild when the compiler or the linker is upgraded.
    println!("cargo:rerun-if-changed={}", route.program.display());
    println!("cargo:rerun-if-changed={}", linker.display());

    let target_root = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    let target_dir = target_root.join("ebpf");

    let mut cmd = inner_cargo(&route, target, &ebpf_dir, &target_dir, &target_root);
    // bpf-linker is found by rustc through PATH.
    let bin_dir = linker.parent().expect("bpf-linker has a directory");
    cmd.env("PATH", prepend_path(bin_dir));
    cmd.env(
        "CARGO_ENCODED_RUSTFLAGS",
        [
            format!("--cfg=bpf_target_arch=\"{arch}\""),
            "-Cdebuginfo=2".to_string(),
            // BTF for the maps and programs (bpf-linker emits it from the debug info).
            "-Clink-arg=--btf".to_string(),
        ]
        .join("\x1f"),
    );

    eprintln!("eBPF route: {}", route.describe());
    eprintln!("bpf-linker: {} ({linker_version})", linker.display());
    eprintln!("running: {}", show(&cmd));
    let warnings = run_streaming(&mut cmd).map_err(|output| {
        format!(
            "{output}\n\
             The eBPF build failed (its output is above). Route: {}.\n\
             Command: cd {} && {}\n\
             If a tool is missing, `cargo xtask setup` installs it.",
            route.describe(),
            ebpf_dir.display(),
            show(&cmd)
        )
    })?;
    for line in warnings {
        println!("cargo:warning=tracer-ebpf: {line}");
    }

    let built = target_dir.join(target).join("release").join(EBPF_BIN);
    let bytes = fs::read(&built).map_err(|e| {
        format!(
            "the eBPF build succeeded but {} cannot be read ({e}); \
             is the [[bin]] of tracer-ebpf/Cargo.toml still named `{EBPF_BIN}`?",
            built.display()
        )
    })?;
    check_bpf_elf(&bytes).map_err(|e| format!("{}: {e}", built.display()))?;
    // A copy in OUT_DIR: the outer crate includes a file that only changes when this script
    // runs, never one another concurrent build (clippy, test) is rewriting.
    let obj = out_dir.join(OBJ_NAME);
    fs::write(&obj, &bytes).map_err(|e| format!("writing {}: {e}", obj.display()))?;
    Ok(obj)
}

fn env_var(key: &str) -> Result<String, String> {
    env::var(key).map_err(|_| format!("{key} is not set (not run by cargo?)"))
}

/// The inner cargo command, per route, with the outer build's environment scrubbed.
fn inner_cargo(
    route: &Route,
    target: &str,
    ebpf_dir: &Path,
    target_dir: &Path,
    target_root: &Path,
) -> Command {
    let mut cmd = match route.kind {
        RouteKind::Debian => {
            // rustup's cargo driving Debian's rustc: the outer cargo is fine for that.
            Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        }
        RouteKind::Nightly => {
            let mut cmd = Command::new(&route.program);
            cmd.args(["run", &ebpf_route::nightly_toolchain(), "cargo"]);
            cmd
        }
    };
    cmd.current_dir(ebpf_dir).arg("build");
    if route.kind == RouteKind::Nightly {
        cmd.args(["-Z", "build-std=core"]);
    }
    cmd.args(["--release", "--bins", "--target", target, "--manifest-path"])
        .arg(ebpf_dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir);
    scrub_env(&mut cmd, target_root);
    match route.kind {
        RouteKind::Debian => {
            cmd.env("RUSTC", &route.program).env("RUSTC_BOOTSTRAP", "1");
        }
        RouteKind::Nightly => {
            // Never let the build download a toolchain.
            cmd.env("RUSTUP_AUTO_INSTALL", "0");
        }
    }
    cmd
}

/// Removes what the outer cargo (or clippy, or the user's shell for the outer build) set and
/// must not reach the eBPF build: compiler and wrappers, flags, target, target dir, profile
/// overrides, the build-script variables, the rustup toolchain choice.
fn scrub_env(cmd: &mut Command, target_root: &Path) {
    // Kept: where cargo lives and how it reaches registries, terminal settings, and the
    // jobserver (the inner build then shares the outer build's job slots).
    const KEEP_PREFIXES: &[&str] = &[
        "CARGO_HOME",
        "CARGO_MAKEFLAGS",
        "CARGO_NET_",
        "CARGO_HTTP_",
        "CARGO_REGISTRIES_",
        "CARGO_REGISTRY_",
        "CARGO_TERM_",
    ];
    const REMOVE: &[&str] = &[
        "RUSTC",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_LINKER",
        "RUSTC_BOOTSTRAP",
        "RUSTDOC",
        "RUSTFLAGS",
        "RUSTDOCFLAGS",
        "RUSTUP_TOOLCHAIN",
        "RUSTUP_TOOLCHAIN_SOURCE",
        "CLIPPY_ARGS",
        "CLIPPY_CONF_DIR",
        "CLIPPY_TERMINAL_WIDTH",
        "TARGET",
        "HOST",
        "OUT_DIR",
        "PROFILE",
        "OPT_LEVEL",
        "DEBUG",
        "NUM_JOBS",
    ];
    for (key, _) in env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let cargo_var = key.starts_with("CARGO_") || key.starts_with("__CARGO");
        if (cargo_var && !KEEP_PREFIXES.iter().any(|p| key.starts_with(p))) || REMOVE.contains(&key)
        {
            cmd.env_remove(key);
        }
    }
    // cargo points LD_LIBRARY_PATH at the outer toolchain and target dir for build scripts.
    if let Some(paths) = env::var_os("LD_LIBRARY_PATH") {
        let kept: Vec<PathBuf> = env::split_paths(&paths)
            .filter(|p| {
                !p.starts_with(target_root) && !p.to_string_lossy().contains("/toolchains/")
            })
            .collect();
        if kept.is_empty() {
            cmd.env_remove("LD_LIBRARY_PATH");
        } else if let Ok(joined) = env::join_paths(kept) {
            cmd.env("LD_LIBRARY_PATH", joined);
        }
    }
}

fn prepend_path(dir: &Path) -> OsString {
    let current = env::var_os("PATH").unwrap_or_default();
    let mut paths: Vec<PathBuf> = vec![dir.to_path_buf()];
    paths.extend(env::split_paths(&current).filter(|p| p != dir));
    env::join_paths(paths).unwrap_or(current)
}

/// Runs `cmd`, copying its output to this script's stderr as it comes (cargo shows it on
/// failure, or with `-vv`). Returns the warning lines on success, the whole output on failure.
fn run_streaming(cmd: &mut Command) -> Result<Vec<String>, String> {
    // The inner cargo's stdout must not reach ours: cargo reads `cargo:` lines from it.
    cmd.stdout(Stdio::from(std::io::stderr()))
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", show(cmd)))?;
    let stderr = child.stderr.take().expect("piped stderr");
    let mut lines = Vec::new();
    let mut out = std::io::stderr().lock();
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { break };
        let _ = writeln!(out, "{line}");
        lines.push(line);
    }
    drop(out);
    let status = child
        .wait()
        .map_err(|e| format!("waiting for {}: {e}", show(cmd)))?;
    if !status.success() {
        return Err(format!("(inner cargo exited with {status})"));
    }
    Ok(warning_lines(&lines))
}

/// The first line of each diagnostic block that is a warning, without cargo's summaries.
fn warning_lines(lines: &[String]) -> Vec<String> {
    let mut warnings = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = &lines[i];
        if line.starts_with("warning:") && !line.contains("generated") {
            // The message and its location (`  --> src/x.rs:1:2`).
            let mut text = line.clone();
            if let Some(loc) = lines
                .get(i + 1)
                .filter(|l| l.trim_start().starts_with("-->"))
            {
                text.push_str(&format!(
                    " ({})",
                    loc.trim_start().trim_start_matches("--> ")
                ));
                i += 1;
            }
            warnings.push(text);
        }
        i += 1;
    }
    warnings
}

/// An ELF64 little- or big-endian relocatable object for EM_BPF (247).
fn check_bpf_elf(bytes: &[u8]) -> Result<(), String> {
    if bytes.len() < 20 || &bytes[..4] != b"\x7fELF" {
        return Err("not an ELF file".into());
    }
    let machine = match bytes[5] {
        1 => u16::from_le_bytes([bytes[18], bytes[19]]),
        _ => u16::from_be_bytes([bytes[18], bytes[19]]),
    };
    if machine != 247 {
        return Err(format!("ELF machine is {machine}, not BPF (247)"));
    }
    Ok(())
}

/// A shell-like rendering of a command with the environment it sets.
fn show(cmd: &Command) -> String {
    let mut s = String::new();
    for (key, value) in cmd.get_envs() {
        let key = key.to_string_lossy();
        if let (Some(value), "RUSTC" | "RUSTC_BOOTSTRAP") = (value, &*key) {
            s.push_str(&format!("{key}={} ", value.to_string_lossy()));
        }
    }
    s.push_str(&cmd.get_program().to_string_lossy());
    for arg in cmd.get_args() {
        s.push(' ');
        s.push_str(&arg.to_string_lossy());
    }
    s
}
