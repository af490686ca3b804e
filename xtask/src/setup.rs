//! `cargo xtask setup`: installs what building and testing tracer need, idempotently.
//!
//! - the eBPF compiler route (see `ebpf_route`): on Debian/Ubuntu, Debian's `rustc-web` and
//!   `libstd-rust-web-dev-bpf`, unless a route is already there;
//! - the tools the tests use (`TEST_TOOLS`);
//! - `bpf-linker`, built with `cargo install` against the LLVM of the eBPF compiler
//!   (`llvm-<N>-dev` and friends from apt), unless one that runs is there already;
//! - rustfmt and clippy (only checked: rustup components).
//!
//! On Debian/Ubuntu, `apt-get update` runs once, and only when something must be installed.
//! Elsewhere, setup says exactly what to install. `ensure` is the cheap check the other
//! commands run first: it runs no apt when everything is there.

use std::{path::PathBuf, process::Command};

use anyhow::{Context as _, Result, bail};

use crate::{
    ebpf_route::{self, Route},
    util,
};

/// The BPF target the eBPF programs are built for.
const TARGET: &str = "bpfel-unknown-none";

/// Debian packages for the Debian route.
const ROUTE_PACKAGES: &[&str] = &["rustc-web", "libstd-rust-web-dev-bpf"];

/// Packages the bpf-linker build needs besides `llvm-<N>-dev` and `libpolly-<N>-dev`.
const LINKER_BUILD_PACKAGES: &[&str] = &["libzstd-dev", "zlib1g-dev"];

/// A tool the tests (or the developer) use: its Debian package and a program it provides,
/// which is how its presence is checked off Debian.
pub struct Tool {
    pub package: &'static str,
    pub program: &'static str,
}

/// The tools the tests use.
pub const TEST_TOOLS: &[Tool] = &[
    Tool {
        package: "util-linux",
        program: "losetup",
    },
    Tool {
        package: "xfsprogs",
        program: "mkfs.xfs",
    },
    Tool {
        package: "e2fsprogs",
        program: "mkfs.ext4",
    },
    Tool {
        package: "tmux",
        program: "tmux",
    },
    Tool {
        package: "bpftrace",
        program: "bpftrace",
    },
    Tool {
        package: "bpftool",
        program: "bpftool",
    },
    // The VM tier (`cargo xtask vm-test`): qemu boots Debian's cloud kernel with a busybox
    // initramfs made with cpio.
    Tool {
        package: "qemu-system-x86",
        program: "qemu-system-x86_64",
    },
    Tool {
        package: "busybox-static",
        program: "busybox",
    },
    Tool {
        package: "cpio",
        program: "cpio",
    },
    // leakyfs is built for each VM kernel with the host's compiler; 6.12's and 7.2's
    // modules are `.ko.xz`.
    Tool {
        package: "gcc",
        program: "gcc",
    },
    Tool {
        package: "make",
        program: "make",
    },
    Tool {
        package: "xz-utils",
        program: "xz",
    },
];

/// The tools only `cargo xtask bench` uses (not installed for building or testing).
pub const BENCH_TOOLS: &[Tool] = &[
    Tool {
        package: "dbench",
        program: "dbench",
    },
    Tool {
        package: "fio",
        program: "fio",
    },
    Tool {
        package: "bpfcc-tools",
        program: "memleak-bpfcc",
    },
];

/// Debian packages building and running fstests need (`cargo xtask fstests`, part of
/// `cargo xtask test`; the list is ../shared/fstests/README.md's). Kept apart from the
/// tracer's own, so `ensure(Level::Build)` never asks for them; plain `setup` and
/// `ensure(Level::Test)` install them.
pub const FSTESTS_PACKAGES: &[&str] = &[
    "build-essential",
    "autoconf",
    "automake",
    "libtool",
    "libtool-bin",
    "pkg-config",
    "xfslibs-dev",
    "uuid-dev",
    "libattr1-dev",
    "libacl1-dev",
    "libaio-dev",
    "liburing-dev",
    "libgdbm-dev",
    "libssl-dev",
    "gawk",
    "bc",
    "dump",
    "attr",
    "acl",
    "quota",
    "psmisc",
    "indent",
    "libcap-dev",
    "libinih-dev",
    "xfsprogs",
    "e2fsprogs",
];

/// Installs the fstests packages that are missing (Debian/Ubuntu); elsewhere says what to
/// install.
pub fn ensure_fstests_deps() -> Result<()> {
    if !is_debian_like() {
        eprintln!(
            "xtask: not Debian/Ubuntu: fstests needs the equivalents of {}",
            FSTESTS_PACKAGES.join(" ")
        );
        return Ok(());
    }
    Apt::default().install_missing(FSTESTS_PACKAGES)
}

/// Installs the bench-only tools that are missing (Debian/Ubuntu), else says what to install.
pub fn ensure_bench_tools() -> Result<()> {
    let debian = is_debian_like();
    let missing: Vec<&Tool> = BENCH_TOOLS
        .iter()
        .filter(|t| !tool_present(t, debian))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let packages: Vec<&str> = missing.iter().map(|t| t.package).collect();
    if !debian {
        bail!("the benchmarks need {}: install them", packages.join(" "));
    }
    Apt::default().install_missing(&packages)?;
    for p in packages {
        report(p, "installed");
    }
    Ok(())
}

/// What the calling command needs.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Building tracer: an eBPF route and bpf-linker.
    Build,
    /// Testing: also the test tools, rustfmt and clippy.
    Test,
}

#[derive(clap::Args)]
pub struct Args {}

pub fn main(_args: Args) -> Result<()> {
    setup()
}

/// The cheap check: if anything `level` needs is missing, runs the full setup.
pub fn ensure(level: Level) -> Result<()> {
    let missing = quick_check(level);
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: missing {}: running setup first", missing.join(", "));
    setup()
}

fn quick_check(level: Level) -> Vec<String> {
    let mut missing = Vec::new();
    let route = ebpf_route::detect(TARGET).ok();
    if route.is_none() {
        missing.push("the eBPF compiler".to_string());
    }
    if !matches!(linker_state(route.as_ref()), LinkerState::Ok(_)) {
        missing.push("bpf-linker".to_string());
    }
    if level >= Level::Test {
        let debian = is_debian_like();
        for tool in TEST_TOOLS {
            if !tool_present(tool, debian) {
                missing.push(tool.package.to_string());
            }
        }
        for (name, _) in missing_components() {
            missing.push(name.to_string());
        }
        if debian {
            missing.extend(
                FSTESTS_PACKAGES
                    .iter()
                    .filter(|p| !dpkg_installed(p))
                    .map(|p| p.to_string()),
            );
        }
    }
    missing
}

/// One line per item.
fn report(item: &str, status: &str) {
    println!("setup: {item:<28} {status}");
}

fn setup() -> Result<()> {
    let debian = is_debian_like();
    let mut apt = Apt::default();
    let mut problems: Vec<String> = Vec::new();

    // What is there.
    let mut route = ebpf_route::detect(TARGET);
    let linker_before = linker_state(route.as_ref().ok());
    let linker_needed = !matches!(linker_before, LinkerState::Ok(_));
    let missing_tools: Vec<&Tool> = TEST_TOOLS
        .iter()
        .filter(|t| !tool_present(t, debian))
        .collect();

    // First apt round: the route's packages, the test tools, the linker's build libraries.
    if debian {
        let mut wanted: Vec<&str> = Vec::new();
        if route.is_err() {
            wanted.extend(ROUTE_PACKAGES);
        }
        wanted.extend(missing_tools.iter().map(|t| t.package));
        if linker_needed {
            wanted.extend(LINKER_BUILD_PACKAGES);
        }
        apt.install_missing(&wanted)?;
        if route.is_err() {
            route = ebpf_route::detect(TARGET);
        }
    }

    // fstests' build and run dependencies (`cargo xtask fstests`).
    if debian {
        apt.install_missing(FSTESTS_PACKAGES)?;
        let how = if apt.installed_any(FSTESTS_PACKAGES) {
            "installed"
        } else {
            "present"
        };
        report("fstests packages", how);
    }

    // The eBPF compiler.
    let route = match route {
        Ok(route) => {
            let how = if apt.installed_any(ROUTE_PACKAGES) {
                "installed"
            } else {
                "present"
            };
            report("eBPF compiler", &format!("{how}: {}", route.describe()));
            Some(route)
        }
        Err(no) => {
            report("eBPF compiler", "missing");
            problems.push(no.explain(TARGET));
            None
        }
    };

    // The test tools.
    for tool in TEST_TOOLS {
        if apt.installed(tool.package) {
            report(tool.package, "installed");
        } else if tool_present(tool, debian) {
            report(tool.package, "present");
        } else {
            report(
                tool.package,
                &format!("missing (provides {})", tool.program),
            );
            problems.push(format!(
                "install {} (it provides {}; the tests use it)",
                tool.package, tool.program
            ));
        }
    }

    // bpf-linker.
    match (linker_before, route.as_ref()) {
        (LinkerState::Ok(version), _) => report("bpf-linker", &format!("present ({version})")),
        (state, Some(route)) if debian => {
            if let LinkerState::Outdated { linker, rustc } = state {
                report(
                    "bpf-linker",
                    &format!(
                        "outdated (built for LLVM {linker}, the compiler uses LLVM {rustc}): \
                         reinstalling"
                    ),
                );
            }
            let llvm = route.llvm_major.context(
                "cannot tell the eBPF compiler's LLVM version (`rustc -vV` has no LLVM line)",
            )?;
            apt.install_missing(&[
                format!("llvm-{llvm}-dev").as_str(),
                format!("libpolly-{llvm}-dev").as_str(),
            ])?;
            for pkg in [format!("llvm-{llvm}-dev"), format!("libpolly-{llvm}-dev")]
                .iter()
                .map(String::as_str)
                .chain(LINKER_BUILD_PACKAGES.iter().copied())
            {
                if apt.installed(pkg) {
                    report(pkg, "installed");
                }
            }
            install_bpf_linker(llvm, matches!(state, LinkerState::Outdated { .. }))?;
            match linker_state(Some(route)) {
                LinkerState::Ok(version) => report("bpf-linker", &format!("installed ({version})")),
                _ => bail!("bpf-linker was installed but does not run (`bpf-linker --version`)"),
            }
        }
        (state, route) => {
            let llvm = route
                .and_then(|r| r.llvm_major)
                .map_or("<N>".to_string(), |n| n.to_string());
            let what = match state {
                LinkerState::Outdated { linker, rustc } => {
                    format!("outdated (built for LLVM {linker}, the compiler uses LLVM {rustc})")
                }
                _ => "missing".to_string(),
            };
            report("bpf-linker", &what);
            problems.push(format!(
                "install bpf-linker against LLVM {llvm} (its development files, with \
                 llvm-config on PATH): `cargo install bpf-linker --force \
                 --no-default-features --features llvm-{llvm}`"
            ));
        }
    }

    // rustfmt and clippy.
    let missing = missing_components();
    for name in ["rustfmt", "clippy"] {
        if missing.iter().any(|(n, _)| *n == name) {
            report(name, "missing");
        } else {
            report(name, "present");
        }
    }
    if !missing.is_empty() {
        let names: Vec<&str> = missing.iter().map(|(_, component)| *component).collect();
        problems.push(format!("rustup component add {}", names.join(" ")));
    }

    if problems.is_empty() {
        return Ok(());
    }
    if !debian {
        eprintln!(
            "setup: this is not Debian/Ubuntu, so nothing was installed automatically. To do:"
        );
    } else {
        eprintln!("setup: still missing:");
    }
    for problem in &problems {
        eprintln!("  - {}", problem.replace('\n', "\n    "));
    }
    bail!("setup is incomplete")
}

/// Debian, Ubuntu or a derivative, with apt-get and dpkg-query.
fn is_debian_like() -> bool {
    let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let debian = os_release.lines().any(|line| {
        let Some((key, value)) = line.split_once('=') else {
            return false;
        };
        let value = value.trim_matches('"');
        (key == "ID" && (value == "debian" || value == "ubuntu"))
            || (key == "ID_LIKE" && value.split_whitespace().any(|v| v == "debian"))
    });
    debian && util::find_program("apt-get").is_some() && util::find_program("dpkg-query").is_some()
}

fn dpkg_installed(package: &str) -> bool {
    util::probe(Command::new("dpkg-query").args(["-W", "-f=${Status}", package]))
        .is_some_and(|status| status.trim() == "install ok installed")
}

fn tool_present(tool: &Tool, debian: bool) -> bool {
    if debian {
        dpkg_installed(tool.package)
    } else {
        util::find_program(tool.program).is_some() || sbin_has(tool.program)
    }
}

fn sbin_has(program: &str) -> bool {
    ["/usr/sbin", "/sbin"]
        .iter()
        .any(|dir| PathBuf::from(dir).join(program).exists())
}

/// rustup components `cargo xtask test` runs: (name, component) for the missing ones.
fn missing_components() -> Vec<(&'static str, &'static str)> {
    [
        ("rustfmt", "fmt", "rustfmt"),
        ("clippy", "clippy", "clippy"),
    ]
    .into_iter()
    .filter(|(_, sub, _)| util::probe(&mut util::cargo_cmd([*sub, "--version"])).is_none())
    .map(|(name, _, component)| (name, component))
    .collect()
}

/// apt-get, run as root (through sudo when we are not root), `update` at most once.
#[derive(Default)]
struct Apt {
    updated: bool,
    installed: Vec<String>,
}

impl Apt {
    /// Installs those of `packages` dpkg does not have.
    fn install_missing(&mut self, packages: &[&str]) -> Result<()> {
        let mut missing: Vec<&str> = Vec::new();
        for &pkg in packages {
            if !missing.contains(&pkg) && !dpkg_installed(pkg) {
                missing.push(pkg);
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        if !util::is_root() && util::find_program("sudo").is_none() {
            bail!(
                "installing {} needs root, and sudo was not found: run `cargo xtask setup` as \
                 root, or `apt-get install {}` as root",
                missing.join(" "),
                missing.join(" ")
            );
        }
        if !self.updated {
            // A source that cannot be reached makes `update` fail while the others are fine:
            // go on, and let `install` tell whether what we need is there.
            if !util::status(&mut self.apt_get(&["update"]))?.success() {
                eprintln!("setup: warning: apt-get update failed; trying to install anyway");
            }
            self.updated = true;
        }
        let mut args = vec!["install", "-y", "--no-install-recommends"];
        args.extend(&missing);
        util::run(&mut self.apt_get(&args)).with_context(|| {
            format!(
                "apt-get could not install {}; on a system without these packages, use the \
                 nightly route instead (`rustup toolchain install nightly --component rust-src`)",
                missing.join(" ")
            )
        })?;
        self.installed.extend(missing.iter().map(|p| p.to_string()));
        Ok(())
    }

    fn apt_get(&self, args: &[&str]) -> Command {
        let mut cmd = if util::is_root() {
            Command::new("apt-get")
        } else {
            let mut cmd = Command::new("sudo");
            cmd.arg("apt-get");
            cmd
        };
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        cmd
    }

    fn installed(&self, package: &str) -> bool {
        self.installed.iter().any(|p| p == package)
    }

    fn installed_any(&self, packages: &[&str]) -> bool {
        packages.iter().any(|p| self.installed(p))
    }
}

enum LinkerState {
    /// Runs; its version line (and LLVM, when known).
    Ok(String),
    /// Runs, but was built for an older LLVM than the compiler's: it cannot read the
    /// compiler's bitcode.
    Outdated {
        linker: u32,
        rustc: u32,
    },
    Missing,
}

fn linker_state(route: Option<&Route>) -> LinkerState {
    let Some((_path, version)) = ebpf_route::find_bpf_linker() else {
        return LinkerState::Missing;
    };
    let linker_llvm = installed_linker_llvm();
    match (linker_llvm, route.and_then(|r| r.llvm_major)) {
        (Some(linker), Some(rustc)) if linker < rustc => LinkerState::Outdated { linker, rustc },
        (Some(linker), _) => LinkerState::Ok(format!("{version}, LLVM {linker}")),
        (None, _) => LinkerState::Ok(version),
    }
}

/// The `llvm-<N>` feature bpf-linker was installed with, from cargo's install record.
fn installed_linker_llvm() -> Option<u32> {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
    let record = std::fs::read_to_string(home.join(".crates2.json")).ok()?;
    linker_llvm_from_record(&record)
}

fn linker_llvm_from_record(record: &str) -> Option<u32> {
    let json: serde_json::Value = serde_json::from_str(record).ok()?;
    let (_, install) = json
        .get("installs")?
        .as_object()?
        .iter()
        .find(|(key, _)| key.starts_with("bpf-linker "))?;
    install
        .get("features")?
        .as_array()?
        .iter()
        .filter_map(|f| f.as_str()?.strip_prefix("llvm-")?.parse().ok())
        .max()
}

/// `cargo install bpf-linker` against `/usr/lib/llvm-<llvm>`.
fn install_bpf_linker(llvm: u32, force: bool) -> Result<()> {
    let llvm_bin = PathBuf::from(format!("/usr/lib/llvm-{llvm}/bin"));
    if !llvm_bin.join("llvm-config").exists() {
        bail!(
            "{}/llvm-config is missing: install llvm-{llvm}-dev",
            llvm_bin.display()
        );
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let path = std::env::join_paths(std::iter::once(llvm_bin).chain(std::env::split_paths(&path)))?;
    let mut cmd = util::cargo_cmd(["install", "bpf-linker"]);
    if force {
        cmd.arg("--force");
    }
    cmd.args([
        "--no-default-features",
        "--features",
        &format!("llvm-{llvm}"),
    ])
    .env("PATH", path);
    util::run(&mut cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linker_llvm_from_cargo_install_record() {
        let record = r#"{"installs":{"bpf-linker 0.13.0 (registry+https://github.com/rust-lang/crates.io-index)":{"version_req":null,"bins":["bpf-linker"],"features":["llvm-22"],"all_features":false,"no_default_features":true}}}"#;
        assert_eq!(linker_llvm_from_record(record), Some(22));
        assert_eq!(linker_llvm_from_record(r#"{"installs":{}}"#), None);
        assert_eq!(linker_llvm_from_record("not json"), None);
    }
}
