//! Which route this machine offers for compiling Rust to BPF, and where bpf-linker is.
//!
//! Shared, through `#[path]`, by `xtask` (setup) and `tracer/build.rs` (the eBPF build), so
//! the two always agree. Keep it std-only: the build script has no other dependencies.
//!
//! The routes:
//! - **Debian**: Debian's `rustc-web` at `/usr/bin/rustc`, whose sysroot holds a prebuilt
//!   `core` for the BPF targets (package `libstd-rust-web-dev-bpf`). The unstable features
//!   `aya-ebpf` needs are unlocked with `RUSTC_BOOTSTRAP=1` for the eBPF build only.
//! - **Nightly**: a rustup `nightly` toolchain with the `rust-src` component, building `core`
//!   with `-Z build-std=core` (the usual aya recipe).
//!
//! Both need `bpf-linker` on PATH, built against an LLVM at least as new as the compiler's.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

/// Debian's rustc (package `rustc-web`).
pub const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
/// Set to `debian` or `nightly` to force a route (both sides honour it).
pub const ROUTE_ENV: &str = "TRACER_EBPF_ROUTE";
/// The rustup toolchain of the nightly route: `nightly` unless this says otherwise
/// (e.g. `nightly-2025-06-01`).
pub const TOOLCHAIN_ENV: &str = "TRACER_EBPF_TOOLCHAIN";

/// The rustup toolchain of the nightly route.
pub fn nightly_toolchain() -> String {
    env::var(TOOLCHAIN_ENV)
        .ok()
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "nightly".to_string())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteKind {
    Debian,
    Nightly,
}

#[derive(Debug, Clone)]
pub struct Route {
    pub kind: RouteKind,
    /// Debian: the rustc binary. Nightly: the rustup binary.
    pub program: PathBuf,
    /// `release:` of `rustc -vV`, e.g. `1.96.0`.
    pub rustc_release: String,
    /// Major version of the LLVM the compiler uses (`LLVM version:` of `rustc -vV`).
    pub llvm_major: Option<u32>,
}

impl Route {
    pub fn describe(&self) -> String {
        let llvm = self
            .llvm_major
            .map(|n| format!(", LLVM {n}"))
            .unwrap_or_default();
        match self.kind {
            RouteKind::Debian => format!(
                "Debian rustc-web {}{llvm} ({} + prebuilt core, RUSTC_BOOTSTRAP=1)",
                self.rustc_release,
                self.program.display()
            ),
            RouteKind::Nightly => format!(
                "rustup {} {}{llvm} (rust-src, -Z build-std=core)",
                nightly_toolchain(),
                self.rustc_release
            ),
        }
    }
}

/// Why neither route is available: one reason per route.
#[derive(Debug, Clone)]
pub struct NoRoute {
    pub debian: String,
    pub nightly: String,
}

impl NoRoute {
    /// A multi-line explanation naming what to install.
    pub fn explain(&self, target: &str) -> String {
        format!(
            "no way to compile Rust for {target} on this machine:\n  \
             - Debian route: {}\n  \
             - nightly route: {}\n\
             Install one of:\n  \
             - Debian/Ubuntu: `apt-get install rustc-web libstd-rust-web-dev-bpf` \
             (or just run `cargo xtask setup`, which installs everything)\n  \
             - elsewhere: `rustup toolchain install {} --component rust-src`\n\
             and bpf-linker (`cargo xtask setup` installs it; by hand: \
             `cargo install bpf-linker --no-default-features --features llvm-<N>` \
             with /usr/lib/llvm-<N>/bin first on PATH, N = the compiler's LLVM major version).",
            self.debian,
            self.nightly,
            nightly_toolchain()
        )
    }
}

/// Detects the route, honouring `TRACER_EBPF_ROUTE`. The Debian route wins when both exist.
pub fn detect(target: &str) -> Result<Route, NoRoute> {
    let forced = env::var(ROUTE_ENV).unwrap_or_default();
    let skipped = |name: &str| format!("not tried ({ROUTE_ENV}={name})");
    match forced.as_str() {
        "debian" => probe_debian(target).map_err(|debian| NoRoute {
            debian,
            nightly: skipped("debian"),
        }),
        "nightly" => probe_nightly().map_err(|nightly| NoRoute {
            debian: skipped("nightly"),
            nightly,
        }),
        _ => match probe_debian(target) {
            Ok(route) => Ok(route),
            Err(debian) => probe_nightly().map_err(|nightly| NoRoute { debian, nightly }),
        },
    }
}

/// The Debian route: `/usr/bin/rustc` whose sysroot has a prebuilt `core` for `target`.
pub fn probe_debian(target: &str) -> Result<Route, String> {
    let rustc = Path::new(DEBIAN_RUSTC);
    if !rustc.exists() {
        return Err(format!("{DEBIAN_RUSTC} not found (package rustc-web)"));
    }
    let sysroot = output(Command::new(rustc).args(["--print", "sysroot"]))?;
    let libdir = Path::new(sysroot.trim())
        .join("lib/rustlib")
        .join(target)
        .join("lib");
    if !has_rlib(&libdir, "libcore-") {
        return Err(format!(
            "{DEBIAN_RUSTC} has no prebuilt core for {target} in {} (package libstd-rust-web-dev-bpf)",
            libdir.display()
        ));
    }
    let vv = output(Command::new(rustc).arg("-vV"))?;
    Ok(Route {
        kind: RouteKind::Debian,
        program: rustc.to_path_buf(),
        rustc_release: field(&vv, "release").unwrap_or_default(),
        llvm_major: parse_llvm_major(&vv),
    })
}

/// The nightly route: rustup with a `nightly` toolchain that has `rust-src`.
pub fn probe_nightly() -> Result<Route, String> {
    let rustup = find_program("rustup").ok_or_else(|| "rustup not found".to_string())?;
    let toolchain = nightly_toolchain();
    let run = |args: &[&str]| {
        let mut cmd = Command::new(&rustup);
        // Never let a probe download a toolchain.
        cmd.env("RUSTUP_AUTO_INSTALL", "0")
            .env_remove("RUSTUP_TOOLCHAIN")
            .args(["run", &toolchain, "rustc"])
            .args(args);
        output(&mut cmd)
    };
    let sysroot = run(&["--print", "sysroot"])
        .map_err(|e| format!("no rustup {toolchain} toolchain ({e})"))?;
    let core = Path::new(sysroot.trim()).join("lib/rustlib/src/rust/library/core/Cargo.toml");
    if !core.exists() {
        return Err(format!(
            "rustup {toolchain} has no rust-src component ({} missing)",
            core.display()
        ));
    }
    let vv = run(&["-vV"])?;
    Ok(Route {
        kind: RouteKind::Nightly,
        program: rustup,
        rustc_release: field(&vv, "release").unwrap_or_default(),
        llvm_major: parse_llvm_major(&vv),
    })
}

/// `LLVM version: 22.1.8` in `rustc -vV` → 22.
pub fn parse_llvm_major(rustc_vv: &str) -> Option<u32> {
    field(rustc_vv, "LLVM version")?
        .split('.')
        .next()?
        .trim()
        .parse()
        .ok()
}

fn field(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        (k.trim() == key).then(|| v.trim().to_string())
    })
}

fn has_rlib(dir: &Path, prefix: &str) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with(prefix) && name.ends_with(".rlib")
        })
    })
}

fn output(cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "{cmd:?} failed ({}): {}",
            out.status,
            stderr.lines().next().unwrap_or("").trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Where `cargo install` puts binaries: `$CARGO_INSTALL_ROOT/bin`, `$CARGO_HOME/bin`,
/// `~/.cargo/bin` (those that are set).
pub fn cargo_bin_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(root) = env::var_os("CARGO_INSTALL_ROOT") {
        dirs.push(PathBuf::from(root).join("bin"));
    }
    if let Some(home) = env::var_os("CARGO_HOME") {
        dirs.push(PathBuf::from(home).join("bin"));
    }
    if let Some(home) = env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo/bin"));
    }
    dirs.dedup();
    dirs
}

/// A program on PATH, else in the cargo install directories.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH").unwrap_or_default();
    env::split_paths(&path)
        .chain(cargo_bin_dirs())
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// bpf-linker, when it is there and runs (`bpf-linker --version`): its path and version line.
pub fn find_bpf_linker() -> Option<(PathBuf, String)> {
    let path = find_program("bpf-linker")?;
    let version = output(Command::new(&path).arg("--version")).ok()?;
    Some((path, version.trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llvm_major_from_rustc_vv() {
        let vv = "rustc 1.96.0 (ac68faa20 2026-05-25)\nbinary: rustc\n\
                  host: x86_64-unknown-linux-gnu\nrelease: 1.96.0\nLLVM version: 22.1.8\n";
        assert_eq!(parse_llvm_major(vv), Some(22));
        assert_eq!(field(vv, "release").as_deref(), Some("1.96.0"));
        assert_eq!(parse_llvm_major("rustc 1.0\nrelease: 1.0\n"), None);
    }
}
