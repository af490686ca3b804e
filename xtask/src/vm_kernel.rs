//! The kernels of the VM tier: Debian's cloud kernel of three suites (bookworm's 6.1,
//! trixie's 6.12, sid's 7.2), each downloaded with a private apt configuration (its own
//! sources list, package lists and cache under `target/vm-cache/<suite>/`: the host's apt
//! state is neither read nor changed), unpacked with `dpkg-deb -x` (nothing is installed),
//! with its headers and kbuild tools for building leakyfs.
//!
//! The newer suites' kbuild tools (fixdep, modpost, objtool, ...) need a newer glibc than
//! the host's: the suite's own `libc6` (and the libraries the tools link) are unpacked
//! beside them, and each tool is replaced by a two-line script that runs it with that
//! glibc's loader (`ld-linux-x86-64.so.2 --library-path`). Their compiler (gcc-14, gcc-16)
//! is not there: the host's gcc builds the module, through `cc-compat` (below), which
//! rewrites the one option it lacks.

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::util;

/// One kernel of the tier: a Debian suite's `linux-image-cloud-amd64`.
pub struct Spec {
    /// What `--kernel` names it by, and the summary's column.
    pub name: &'static str,
    pub suite: &'static str,
    /// apt sources lines (`deb URI SUITE main`).
    pub sources: &'static [&'static str],
    /// The libraries its kbuild tools link (with the loader: `libc6`).
    pub libs: &'static [&'static str],
}

const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

pub const KERNELS: &[Spec] = &[
    Spec {
        name: "6.1",
        suite: "bookworm",
        sources: &[
            "http://deb.debian.org/debian bookworm main",
            "http://deb.debian.org/debian bookworm-updates main",
            "http://deb.debian.org/debian-security bookworm-security main",
        ],
        libs: &["libc6", "libelf1", "zlib1g", "libzstd1"],
    },
    Spec {
        name: "6.12",
        suite: "trixie",
        sources: &[
            "http://deb.debian.org/debian trixie main",
            "http://deb.debian.org/debian trixie-updates main",
            "http://deb.debian.org/debian-security trixie-security main",
        ],
        libs: &["libc6", "libelf1t64", "zlib1g", "libzstd1"],
    },
    Spec {
        name: "7.2",
        suite: "sid",
        sources: &["http://deb.debian.org/debian sid main"],
        libs: &["libc6", "libelf1t64", "zlib1g", "libzstd1"],
    },
];

/// The specs `--kernel` names (all when none); an unknown name is an error.
pub fn select(names: &[String]) -> Result<Vec<&'static Spec>> {
    if names.is_empty() {
        return Ok(KERNELS.iter().collect());
    }
    let mut out = vec![];
    for n in names.iter().flat_map(|n| n.split(',')) {
        let spec = KERNELS
            .iter()
            .find(|k| k.name == n || k.suite == n)
            .with_context(|| {
                format!(
                    "unknown kernel {n:?}: the VM tier has {}",
                    KERNELS
                        .iter()
                        .map(|k| k.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?;
        if !out.iter().any(|s: &&Spec| s.name == spec.name) {
            out.push(spec);
        }
    }
    Ok(out)
}

/// The meta packages naming the suite's current cloud kernel and its headers.
const IMAGE_META: &str = "linux-image-cloud-amd64";
const HEADERS_META: &str = "linux-headers-cloud-amd64";

pub struct Kernel {
    /// `linux-image-<version>` (Debian's package).
    pub package: String,
    /// `uname -r` of it: the `/lib/modules` directory name.
    pub version: String,
    pub vmlinuz: PathBuf,
    /// `<unpack>/lib/modules/<version>` (or under `usr/` on newer suites).
    pub modules: PathBuf,
    /// `<unpack>/usr/src/linux-headers-<version>`, ready for `make -C`.
    pub headers: PathBuf,
}

/// The suite's cloud kernel, headers and kbuild tools, downloaded and unpacked into
/// `cache/<suite>/` unless they are there already.
pub fn fetch(spec: &'static Spec, cache: &Path, refresh: bool) -> Result<Kernel> {
    let dir = cache.join(spec.suite);
    let root = dir.join("root");
    let complete = dir.join(".complete");
    if refresh || !complete.exists() {
        download(spec, &dir, &root)?;
    } else {
        eprintln!("vm: kernel {} cached in {}", spec.name, root.display());
    }
    let package = fs::read_to_string(&complete)?.trim().to_string();
    let version = package
        .strip_prefix("linux-image-")
        .unwrap_or(&package)
        .to_string();
    let modules = ["lib/modules", "usr/lib/modules"]
        .iter()
        .map(|d| root.join(d).join(&version))
        .find(|d| d.join("kernel").is_dir())
        .with_context(|| format!("{} has no lib/modules/{version}", root.display()))?;
    let vmlinuz = [
        root.join("boot").join(format!("vmlinuz-{version}")),
        modules.join("vmlinuz"),
    ]
    .into_iter()
    .find(|p| p.exists())
    .with_context(|| format!("{} has no vmlinuz of {version}", root.display()))?;
    let headers = root
        .join("usr/src")
        .join(format!("linux-headers-{version}"));
    if !headers.join("Makefile").exists() {
        bail!("{} is missing: run with --refresh", headers.display());
    }
    Ok(Kernel {
        package,
        version,
        vmlinuz,
        modules,
        headers,
    })
}

fn download(spec: &Spec, dir: &Path, root: &Path) -> Result<()> {
    for d in [root.to_path_buf(), dir.join("debs")] {
        if d.exists() {
            fs::remove_dir_all(&d)?;
        }
    }
    let apt = Apt::new(spec, dir)?;
    apt.update()?;
    let debs = dir.join("debs");
    fs::create_dir_all(&debs)?;
    // The meta packages, then the versioned packages they name, transitively (6.1 and
    // 6.12: linux-image-<v>; 7.2: linux-binary-<v>, linux-modules-<v>, linux-base-<v>; the
    // headers: -common and linux-kbuild-<v>).
    let mut wanted: Vec<String> = vec![IMAGE_META.into(), HEADERS_META.into()];
    let mut seen = BTreeSet::new();
    let mut image = None;
    while let Some(package) = wanted.pop() {
        if !seen.insert(package.clone()) {
            continue;
        }
        apt.download(&debs, &package)?;
        let deb = find_deb(&debs, &package)?;
        let depends = util::probe(Command::new("dpkg-deb").arg("-f").arg(&deb).arg("Depends"))
            .unwrap_or_default();
        for dep in kernel_depends(&depends) {
            if package == IMAGE_META && dep.starts_with("linux-image-") {
                image = Some(dep.clone());
            }
            wanted.push(dep);
        }
    }
    let image = image.with_context(|| format!("{IMAGE_META} names no linux-image-*"))?;
    for lib in spec.libs {
        apt.download(&debs, lib)?;
    }
    fs::create_dir_all(root)?;
    for entry in fs::read_dir(&debs)? {
        let deb = entry?.path();
        let name = deb.file_name().unwrap_or_default().to_string_lossy();
        if name.ends_with(".deb") && !name.starts_with("linux-image-cloud-amd64_") {
            util::run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(root))?;
        }
    }
    let version = image.strip_prefix("linux-image-").unwrap_or(&image);
    prepare_headers(root, version)?;
    fs::write(dir.join(".complete"), &image)?;
    Ok(())
}

/// The versioned kernel packages a `Depends` field names (first alternatives; not the
/// unversioned helpers like `linux-base` or `linux-initramfs-tool`).
fn kernel_depends(depends: &str) -> Vec<String> {
    depends
        .split(',')
        .filter_map(|d| d.split('|').next()?.split_whitespace().next())
        .filter(|d| {
            [
                "linux-image-",
                "linux-binary-",
                "linux-modules-",
                "linux-base-",
                "linux-headers-",
                "linux-kbuild-",
            ]
            .iter()
            .any(|p| d.starts_with(p))
                && d.chars().any(|c| c.is_ascii_digit())
        })
        .map(str::to_string)
        .collect()
}

/// Makes the unpacked headers usable where they are: their Makefile names
/// `/usr/src/...` (pointed at the unpack), and the kbuild tools run on the suite's glibc.
fn prepare_headers(root: &Path, version: &str) -> Result<()> {
    let headers = root
        .join("usr/src")
        .join(format!("linux-headers-{version}"));
    let makefile = headers.join("Makefile");
    let text =
        fs::read_to_string(&makefile).with_context(|| format!("reading {}", makefile.display()))?;
    let here = format!("{}/", root.join("usr/src").display());
    fs::write(&makefile, text.replace("/usr/src/", &here))?;
    // bookworm's libc6 is under lib/, the later ones' under usr/lib/.
    let libdirs = [
        root.join("usr/lib/x86_64-linux-gnu"),
        root.join("lib/x86_64-linux-gnu"),
    ];
    let loader = libdirs
        .iter()
        .map(|d| d.join("ld-linux-x86-64.so.2"))
        .find(|l| l.exists())
        .with_context(|| format!("no ld-linux-x86-64.so.2 in {} (libc6?)", root.display()))?;
    let libdir = libdirs
        .iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    let mut wrapped = 0;
    for entry in fs::read_dir(root.join("usr/lib"))? {
        let dir = entry?.path();
        let name = dir.file_name().unwrap_or_default().to_string_lossy();
        if name.starts_with("linux-kbuild-") {
            wrapped += wrap_elves(&dir, &loader, &libdir)?;
        }
    }
    if wrapped == 0 {
        bail!("no kbuild tools under {}/usr/lib", root.display());
    }
    Ok(())
}

/// Replaces every ELF executable under `dir` with a script running it (renamed `.elf`)
/// with `loader`; how many.
fn wrap_elves(dir: &Path, loader: &Path, libdir: &str) -> Result<usize> {
    let mut n = 0;
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let meta = fs::symlink_metadata(&path)?;
        if meta.is_dir() {
            n += wrap_elves(&path, loader, libdir)?;
            continue;
        }
        if !meta.is_file() {
            continue;
        }
        let mut magic = [0u8; 4];
        let is_elf = fs::File::open(&path)
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
            .is_ok()
            && &magic == b"\x7fELF";
        if !is_elf {
            continue;
        }
        let real = path.with_file_name(format!(
            "{}.elf",
            path.file_name().unwrap_or_default().to_string_lossy()
        ));
        fs::rename(&path, &real)?;
        fs::write(
            &path,
            format!(
                "#!/bin/sh\nexec {} --library-path {} --argv0 \"$0\" {} \"$@\"\n",
                loader.display(),
                libdir,
                real.display()
            ),
        )?;
        crate::util::set_mode(&path, 0o755)?;
        n += 1;
    }
    Ok(n)
}

/// `apt-get` with the suite's own sources, lists and cache under `dir`.
struct Apt {
    options: Vec<String>,
}

impl Apt {
    fn new(spec: &Spec, dir: &Path) -> Result<Apt> {
        let apt = dir.join("apt");
        for d in ["lists/partial", "cache/archives/partial", "sources.list.d"] {
            fs::create_dir_all(apt.join(d))?;
        }
        let list: String = spec
            .sources
            .iter()
            .map(|s| format!("deb [signed-by={KEYRING}] {s}\n"))
            .collect();
        let sources = apt.join("sources.list");
        fs::write(&sources, list)?;
        let opt = |k: &str, v: &Path| format!("-o{k}={}", v.display());
        Ok(Apt {
            options: vec![
                opt("Dir::Etc::SourceList", &sources),
                opt("Dir::Etc::SourceParts", &apt.join("sources.list.d")),
                opt("Dir::State::Lists", &apt.join("lists")),
                opt("Dir::Cache", &apt.join("cache")),
                // Downloads into target/ as root, not as the sandbox user `_apt`.
                "-oAPT::Sandbox::User=root".into(),
            ],
        })
    }

    fn update(&self) -> Result<()> {
        util::run(
            Command::new("apt-get")
                .args(&self.options)
                .args(["-q", "update"]),
        )
    }

    fn download(&self, dir: &Path, package: &str) -> Result<()> {
        util::run(
            Command::new("apt-get")
                .current_dir(dir)
                .args(&self.options)
                .args(["-q", "download", package]),
        )
        .with_context(|| format!("`apt-get download {package}` failed"))
    }
}

fn find_deb(dir: &Path, package: &str) -> Result<PathBuf> {
    let prefix = format!("{package}_");
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if name.starts_with(&prefix) && name.ends_with(".deb") {
            return Ok(path);
        }
    }
    bail!("no {package}_*.deb in {}", dir.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versioned_kernel_depends() {
        let d = "dracut | initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool, \
                 linux-base-7.2.13+deb14-cloud-amd64 (= 7.2.13-1), linux-binary-7.2.13+deb14-cloud-amd64 (= 7.2.13-1)";
        assert_eq!(
            kernel_depends(d),
            vec![
                "linux-base-7.2.13+deb14-cloud-amd64",
                "linux-binary-7.2.13+deb14-cloud-amd64"
            ]
        );
        let h = "gcc-16-for-host, linux-base (>= 4.12~), linux-headers-7.2.13+deb14-common (= 7.2.13-1), linux-kbuild-7.2.13+deb14";
        assert_eq!(
            kernel_depends(h),
            vec![
                "linux-headers-7.2.13+deb14-common",
                "linux-kbuild-7.2.13+deb14"
            ]
        );
    }

    #[test]
    fn selects_kernels() {
        assert_eq!(select(&[]).unwrap().len(), KERNELS.len());
        let s = select(&["7.2".into(), "6.1,trixie".into()]).unwrap();
        let names: Vec<_> = s.iter().map(|k| k.name).collect();
        assert_eq!(names, ["7.2", "6.1", "6.12"]);
        assert!(select(&["5.10".into()]).is_err());
    }
}
