//! `cargo xtask vm-test`: the full-kernel tier. Boots Debian's cloud kernel (Linux 6.1, with
//! kprobes and fentry) under qemu (TCG) with a busybox initramfs that holds the tracer, the
//! test filesystem module leakyfs and the tracer's kernel tests (`vm_tests.rs`), checks what
//! `tracer doctor` finds inside it and runs the tests there.
//!
//! 1. The kernel: `apt-get download linux-image-cloud-amd64`, whose `Depends` names the
//!    versioned `linux-image-<version>-cloud-amd64`, downloaded too and unpacked with
//!    `dpkg-deb -x` into the cache (`target/vm-cache/`); nothing is installed. Skipped when
//!    the cache holds a complete unpack (`--refresh` downloads again).
//! 2. The initramfs (`target/vm/initramfs.cpio.gz`, `cpio -H newc` + gzip): busybox, the
//!    release tracer and the test binaries (debug info stripped), `TOOLS`, the shared
//!    libraries `ldd` lists for them, the modules in `MODULES` with their dependencies
//!    (read from each module's `.modinfo`, as the package ships no `modules.dep`),
//!    leakyfs, and `/init` (`INIT`).
//! 3. qemu-system-x86_64 with TCG (KVM does not boot here), serial console captured to
//!    `target/vm/serial.log`, killed after `--timeout` seconds.
//! 4. The markers `/init` prints are parsed: the modules loaded, `tracer doctor --json` ran
//!    and its capabilities are summarised (`REQUIRED` ones must be there), leakyfs's knobs
//!    work, and every test ran and passed.

use std::{
    collections::BTreeSet,
    fs,
    io::Read as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::{build, leakyfs, setup, util, vm_tests};

/// The meta package naming the current cloud kernel.
const KERNEL_META: &str = "linux-image-cloud-amd64";

/// Modules the tests need (loop devices, xfs); their dependencies come along.
const MODULES: &[&str] = &["loop", "xfs"];

/// Programs the tests run that busybox lacks (or whose busybox version lacks an option
/// they use: `losetup --find --show`).
const TOOLS: &[&str] = &["mkfs.xfs", "mkfs.ext4", "losetup", "xfs_io"];

/// Capabilities `tracer doctor` must find inside the VM (KERNEL.md: this kernel allows
/// kprobes and fentry on top of everything the machines' own kernel has).
const REQUIRED: &[&str] = &[
    "root",
    "BTF",
    "tracefs",
    "ring buffer",
    "tracepoints",
    "kprobes",
    "fentry/fexit",
];

/// The precise hooks (tracer/src/hooks.rs) that must be served on the kernel function
/// itself (fentry/fexit or kprobe/kretprobe) inside the VM, not by a tracepoint stand-in.
const PRECISE_HOOKS: &[&str] = &[
    "fput",
    "__fput",
    "task_work_add(____fput)",
    "delayed_fput",
    "io_fallback_req_func",
    "io_ring_exit_work",
    "path_umount return",
    "cleanup_mnt",
];

const ON_FUNCTION: &[&str] = &["fentry", "fexit", "kprobe", "kretprobe"];

/// How long the VM may run before qemu is killed (the whole tier, tests included).
pub const TIMEOUT_SECS: u64 = 600;

pub const MARK: &str = "@@TRACER-VM";

/// `/init`: mounts, modules, `tracer doctor --json` between markers, power off. `@MODULES@`
/// is replaced with the `insmod` lines.
const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/usr/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tracefs nodev /sys/kernel/tracing
mount -t bpf bpf /sys/fs/bpf
# Keep the kernel's messages off the console while results are printed.
dmesg -n 1
echo "@@TRACER-VM BOOTED $(cat /proc/uptime)"
echo "@@TRACER-VM UNAME $(uname -r)"
@MODULES@
echo "@@TRACER-VM DOCTOR-BEGIN"
/bin/tracer doctor --json
echo "@@TRACER-VM DOCTOR-END rc=$?"
# leakyfs, the test filesystem: its knobs do what they say (the truth tracer is checked against).
if insmod /lib/modules/leakyfs.ko leak_count=3 hold_ms=500 2>&1; then
  echo "@@TRACER-VM LEAKYFS insmod ok"
  mkdir -p /mnt/leaky
  if mount -t leakyfs none /mnt/leaky; then echo "@@TRACER-VM LEAKYFS mount ok"; fi
  # Opening "hold" keeps the file for hold_ms after close, from the module's delayed work.
  cat /mnt/leaky/hold
  if umount /mnt/leaky 2>/tmp/umount.err; then
    echo "@@TRACER-VM LEAKYFS held-umount succeeded"
  else
    echo "@@TRACER-VM LEAKYFS held-umount failed: $(cat /tmp/umount.err)"
  fi
  sleep 1
  if umount /mnt/leaky; then echo "@@TRACER-VM LEAKYFS later-umount ok"; fi
  echo 1 > /sys/module/leakyfs/parameters/fail_mount
  if mount -t leakyfs none /mnt/leaky 2>/tmp/mount.err; then
    echo "@@TRACER-VM LEAKYFS failing-mount succeeded"
  else
    echo "@@TRACER-VM LEAKYFS failing-mount failed: $(cat /tmp/mount.err)"
  fi
  rmmod leakyfs
else
  echo "@@TRACER-VM LEAKYFS insmod FAILED"
fi
# The tracer's kernel tests, each alone (see xtask/src/vm_tests.rs).
export CI=true TRACER_BIN=/bin/tracer LEAKYFS_KO=/lib/modules/leakyfs.ko HOME=/root RUST_BACKTRACE=1
# fstests' fsstress for tests/fsstress.rs: a few xfs cycles (this kernel's ext4 is a module
# the initramfs does not carry).
export FSSTRESS=/usr/bin/fsstress FSSTRESS_CYCLES=3 FSSTRESS_KINDS=xfs-shutdown,xfs,xfs-uring
echo "@@TRACER-VM TESTS-BEGIN $(cat /proc/uptime)"
@TESTS@
echo "@@TRACER-VM TESTS-END $(cat /proc/uptime)"
echo "@@TRACER-VM DMESG-BEGIN"
dmesg | tail -n 20
echo "@@TRACER-VM DMESG-END"
echo "@@TRACER-VM DONE $(cat /proc/uptime)"
poweroff -f
"#;

#[derive(clap::Args)]
pub struct Args {
    /// Put the debug build of tracer in the VM instead of the release one (under TCG its
    /// start-up is about 3x slower: ~35 s per attach instead of ~10 s).
    #[arg(long)]
    pub debug: bool,
    /// Kill qemu after this many seconds.
    #[arg(long, default_value_t = TIMEOUT_SECS)]
    pub timeout: u64,
    /// Download the kernel again even when the cache has one.
    #[arg(long)]
    pub refresh: bool,
    /// Run only the tests whose `target::name` contains this (repeatable), e.g.
    /// `--test vm_leakyfs::` or `--test fd_held`.
    #[arg(long = "test", value_name = "FILTER")]
    pub tests: Vec<String>,
    /// Run no cargo tests inside the VM (only the doctor and leakyfs's own checks).
    #[arg(long)]
    pub no_tests: bool,
}

pub fn main(args: Args) -> Result<()> {
    setup::ensure(setup::Level::Test)?;
    build::build_tracer(!args.debug)?;
    run(&args)
}

/// The VM test on an already built tracer (`cargo xtask test` builds it first).
pub fn run(args: &Args) -> Result<()> {
    let started = Instant::now();
    let cache = util::target_dir().join("vm-cache");
    let work = util::target_dir().join("vm");
    fs::create_dir_all(&work)?;
    let kernel = fetch_kernel(&cache, args.refresh)?;
    let leakyfs = leakyfs::build(&kernel.version, &work)?;
    // fstests' fsstress, for the fsstress test inside the VM (built once, cached).
    crate::fstests::run(&crate::fstests::Args {
        build_only: true,
        ..crate::fstests::Args::default()
    })?;
    let tests = if args.no_tests {
        vec![]
    } else {
        vm_tests::build(&args.tests)?
    };
    eprintln!(
        "vm: kernel {} ({})",
        kernel.version,
        kernel.vmlinuz.display()
    );
    let initramfs = work.join("initramfs.cpio.gz");
    build_initramfs(
        &kernel,
        &leakyfs,
        &build::tracer_binary(!args.debug),
        &tests,
        &work.join("initramfs"),
        &initramfs,
    )?;
    let log = work.join("serial.log");
    let booted = Instant::now();
    let outcome = boot(&kernel, &initramfs, &log, Duration::from_secs(args.timeout))?;
    let boot_secs = booted.elapsed().as_secs_f64();
    let serial = fs::read(&log).with_context(|| format!("reading {}", log.display()))?;
    let serial = String::from_utf8_lossy(&serial).replace('\r', "");
    let mut result = check(&serial, &kernel.version);
    check_tests(&serial, &tests, &mut result);
    println!("vm-test summary");
    println!(
        "  kernel:    {} (Debian {})",
        kernel.version, kernel.package
    );
    println!(
        "  qemu:      {outcome} after {boot_secs:.1}s (total {:.1}s); serial log {}",
        started.elapsed().as_secs_f64(),
        log.display()
    );
    for line in &result.lines {
        println!("  {line}");
    }
    for failure in &result.failures {
        println!("  FAILED: {failure}");
    }
    // A plain closing line: `vm-test: N passed, N failed`.
    println!(
        "vm-test: {} passed, {} failed",
        result.passed,
        result.failures.len()
    );
    if result.failures.is_empty() {
        Ok(())
    } else {
        bail!(
            "vm-test: {} check(s) failed (serial log: {})",
            result.failures.len(),
            log.display()
        )
    }
}

struct Kernel {
    /// `linux-image-<version>` (Debian's package).
    package: String,
    /// `uname -r` of it: the `/lib/modules` directory name.
    version: String,
    vmlinuz: PathBuf,
    /// `<unpack>/lib/modules/<version>`.
    modules: PathBuf,
}

/// The cloud kernel, downloaded and unpacked into `cache` unless it is there already.
fn fetch_kernel(cache: &Path, refresh: bool) -> Result<Kernel> {
    let unpacked = cache.join("kernel");
    let complete = unpacked.join(".complete");
    if refresh || !complete.exists() {
        if unpacked.exists() {
            fs::remove_dir_all(&unpacked)?;
        }
        let debs = cache.join("debs");
        if debs.exists() {
            fs::remove_dir_all(&debs)?;
        }
        fs::create_dir_all(&debs)?;
        apt_download(&debs, KERNEL_META)?;
        let meta = find_deb(&debs, KERNEL_META)?;
        let depends = util::probe(Command::new("dpkg-deb").arg("-f").arg(&meta).arg("Depends"))
            .with_context(|| format!("`dpkg-deb -f {} Depends` failed", meta.display()))?;
        let package = depends
            .split(',')
            .map(|d| d.split_whitespace().next().unwrap_or(""))
            .find(|d| d.starts_with("linux-image-"))
            .with_context(|| format!("{KERNEL_META} depends on no linux-image-*: {depends}"))?
            .to_string();
        apt_download(&debs, &package)?;
        let deb = find_deb(&debs, &package)?;
        fs::create_dir_all(&unpacked)?;
        util::run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked))?;
        fs::write(&complete, &package)?;
    } else {
        eprintln!("vm: kernel cached in {}", unpacked.display());
    }
    let package = fs::read_to_string(&complete)?.trim().to_string();
    let version = package
        .strip_prefix("linux-image-")
        .unwrap_or(&package)
        .to_string();
    let vmlinuz = unpacked.join("boot").join(format!("vmlinuz-{version}"));
    let modules = unpacked.join("lib/modules").join(&version);
    if !vmlinuz.exists() || !modules.is_dir() {
        bail!(
            "{} lacks boot/vmlinuz-{version} or lib/modules/{version}: run with --refresh",
            unpacked.display()
        );
    }
    Ok(Kernel {
        package,
        version,
        vmlinuz,
        modules,
    })
}

/// `apt-get download PACKAGE` into `dir`; after an `apt-get update` when the first try
/// fails (a fresh machine may have no package lists).
fn apt_download(dir: &Path, package: &str) -> Result<()> {
    let download = || {
        let mut cmd = Command::new("apt-get");
        cmd.current_dir(dir).args(["download", package]);
        util::status(&mut cmd)
    };
    if download()?.success() {
        return Ok(());
    }
    eprintln!("vm: apt-get download {package} failed: updating the package lists and retrying");
    util::run(Command::new("apt-get").arg("update"))?;
    if !download()?.success() {
        bail!("`apt-get download {package}` failed (in {})", dir.display());
    }
    Ok(())
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

/// Builds the initramfs in `root` (emptied first) and packs it into `out`.
fn build_initramfs(
    kernel: &Kernel,
    leakyfs: &Path,
    tracer: &Path,
    tests: &[vm_tests::TestBinary],
    root: &Path,
    out: &Path,
) -> Result<()> {
    if !tracer.exists() {
        bail!(
            "{} is missing: build tracer first (`cargo xtask build`)",
            tracer.display()
        );
    }
    if root.exists() {
        fs::remove_dir_all(root)?;
    }
    for dir in [
        "bin", "dev", "proc", "sys", "tmp", "run", "etc", "lib64", "root",
    ] {
        fs::create_dir_all(root.join(dir))?;
    }
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .context("busybox is missing: `cargo xtask setup` installs busybox-static")?;
    copy(&busybox, &root.join("bin/busybox"))?;

    // The tracer and the test binaries, without their debug info (a debug build is
    // ~90 MB), and the tools the tests need that busybox lacks; with the shared libraries
    // they all need.
    let mut binaries = vec![(tracer.to_path_buf(), PathBuf::from("/bin/tracer"))];
    for t in tests {
        binaries.push((t.exe.clone(), vm_tests::inside(t)));
    }
    binaries.push((
        util::target_dir().join("fstests/fstests/ltp/fsstress"),
        PathBuf::from("/usr/bin/fsstress"),
    ));
    for tool in TOOLS {
        let path = util::find_program(tool)
            .or_else(|| {
                ["/usr/sbin", "/sbin"]
                    .iter()
                    .map(|d| Path::new(d).join(tool))
                    .find(|p| p.exists())
            })
            .with_context(|| format!("{tool} is missing: `cargo xtask setup` installs it"))?;
        binaries.push((path, Path::new("/usr/sbin").join(tool)));
    }
    let mut libs = BTreeSet::new();
    for (from, to) in &binaries {
        copy_stripped(from, &root.join(to.strip_prefix("/")?))?;
        libs.extend(shared_libraries(from)?);
    }
    // At the paths ldd names, the dynamic loader included.
    for lib in libs {
        let rel = lib.strip_prefix("/").unwrap_or(&lib);
        // Follow symlinks: the file's content goes where the link was.
        copy(&fs::canonicalize(&lib)?, &root.join(rel))?;
    }

    // The modules and their dependencies, in load order.
    let modules = module_load_order(&kernel.modules, MODULES)?;
    let mut insmods = String::new();
    for (name, path) in &modules {
        let rel = path.strip_prefix(&kernel.modules)?;
        let inside = Path::new("/lib/modules").join(&kernel.version).join(rel);
        copy(path, &root.join(inside.strip_prefix("/")?))?;
        insmods.push_str(&format!(
            "if insmod {inside} 2>&1; then echo \"{MARK} MODULE {name} ok\"; \
             else echo \"{MARK} MODULE {name} FAILED\"; fi\n",
            inside = inside.display()
        ));
    }
    copy(leakyfs, &root.join("lib/modules/leakyfs.ko"))?;
    let init = root.join("init");
    fs::write(
        &init,
        INIT.replace("@MODULES@", insmods.trim_end())
            .replace("@TESTS@", vm_tests::init_lines(tests).trim_end()),
    )?;
    set_mode(&init, 0o755)?;

    // cpio -H newc, gzip.
    let script = format!(
        "find . -print0 | LC_ALL=C sort -z | cpio --null --quiet -o -H newc | gzip -1 > {}",
        shell_quote(&out.to_string_lossy())
    );
    util::run(Command::new("sh").arg("-c").arg(script).current_dir(root))?;
    let size = fs::metadata(out)?.len();
    eprintln!(
        "vm: initramfs {} ({:.1} MiB; modules: {})",
        out.display(),
        size as f64 / (1 << 20) as f64,
        modules
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

/// Copies a binary without its debug info (when `strip` is there).
fn copy_stripped(from: &Path, to: &Path) -> Result<()> {
    if let Some(dir) = to.parent() {
        fs::create_dir_all(dir)?;
    }
    let stripped = util::find_program("strip").is_some_and(|strip| {
        Command::new(strip)
            .arg("--strip-debug")
            .arg("-o")
            .arg(to)
            .arg(from)
            .status()
            .is_ok_and(|s| s.success())
    });
    if stripped { Ok(()) } else { copy(from, to) }
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    if let Some(dir) = to.parent() {
        fs::create_dir_all(dir)?;
    }
    fs::copy(from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    Ok(())
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The absolute paths `ldd` lists for `binary` (libraries and the loader).
fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>> {
    let out = util::probe(Command::new("ldd").arg(binary))
        .with_context(|| format!("`ldd {}` failed", binary.display()))?;
    Ok(parse_ldd(&out))
}

fn parse_ldd(out: &str) -> Vec<PathBuf> {
    out.lines()
        .filter_map(|line| {
            // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or
            // "/lib64/ld-linux-x86-64.so.2 (0x...)"; the vdso has no path.
            let line = line.trim();
            let path = match line.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next()?,
                None => line.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// `wanted` and their dependencies as (name, path), each after what it depends on.
fn module_load_order(tree: &Path, wanted: &[&str]) -> Result<Vec<(String, PathBuf)>> {
    let mut index = std::collections::BTreeMap::new();
    index_modules(&tree.join("kernel"), &mut index)?;
    let mut order = Vec::new();
    let mut seen = BTreeSet::new();
    for name in wanted {
        visit_module(&normalize(name), &index, &mut seen, &mut order, 0)?;
    }
    Ok(order)
}

fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// Every `*.ko` under `dir`, by module name (dashes as underscores).
fn index_modules(
    dir: &Path,
    index: &mut std::collections::BTreeMap<String, PathBuf>,
) -> Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            index_modules(&path, index)?;
        } else if let Some(stem) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".ko"))
        {
            index.insert(normalize(stem), path);
        }
    }
    Ok(())
}

fn visit_module(
    name: &str,
    index: &std::collections::BTreeMap<String, PathBuf>,
    seen: &mut BTreeSet<String>,
    order: &mut Vec<(String, PathBuf)>,
    depth: usize,
) -> Result<()> {
    if depth > 32 {
        bail!("module dependencies nest too deep at {name}");
    }
    if !seen.insert(name.to_string()) {
        return Ok(());
    }
    let path = index.get(name).with_context(|| {
        format!("module {name} is not in the kernel package (compressed or built in?)")
    })?;
    let data = fs::read(path)?;
    let modinfo = elf_section(&data, ".modinfo")
        .with_context(|| format!("{} has no .modinfo section", path.display()))?;
    for dep in modinfo_depends(modinfo) {
        visit_module(&normalize(&dep), index, seen, order, depth + 1)?;
    }
    order.push((name.to_string(), path.clone()));
    Ok(())
}

/// The `depends=` entry of a `.modinfo` section (NUL-separated `key=value` strings).
fn modinfo_depends(modinfo: &[u8]) -> Vec<String> {
    modinfo
        .split(|&b| b == 0)
        .filter_map(|entry| entry.strip_prefix(b"depends="))
        .flat_map(|deps| {
            String::from_utf8_lossy(deps)
                .split(',')
                .filter(|d| !d.is_empty())
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The contents of a section of a little-endian ELF64 file, by name.
fn elf_section<'a>(data: &'a [u8], wanted: &str) -> Option<&'a [u8]> {
    let u16_at = |off: usize| Some(u16::from_le_bytes(data.get(off..off + 2)?.try_into().ok()?));
    let u32_at = |off: usize| Some(u32::from_le_bytes(data.get(off..off + 4)?.try_into().ok()?));
    let u64_at =
        |off: usize| Some(u64::from_le_bytes(data.get(off..off + 8)?.try_into().ok()?) as usize);
    if data.get(..4)? != b"\x7fELF" || data.get(4)? != &2 || data.get(5)? != &1 {
        return None;
    }
    let shoff = u64_at(0x28)?;
    let shentsize = u16_at(0x3a)? as usize;
    let shnum = u16_at(0x3c)? as usize;
    let shstrndx = u16_at(0x3e)? as usize;
    let header = |i: usize| shoff + i * shentsize;
    let strtab = u64_at(header(shstrndx) + 0x18)?;
    for i in 0..shnum {
        let h = header(i);
        let name_off = strtab + u32_at(h)? as usize;
        let name_end = name_off + data.get(name_off..)?.iter().position(|&b| b == 0)?;
        if &data[name_off..name_end] == wanted.as_bytes() {
            let offset = u64_at(h + 0x18)?;
            let size = u64_at(h + 0x20)?;
            return data.get(offset..offset + size);
        }
    }
    None
}

/// Boots the VM, serial console to `log`; how it ended.
fn boot(kernel: &Kernel, initramfs: &Path, log: &Path, timeout: Duration) -> Result<String> {
    let qemu = util::find_program("qemu-system-x86_64")
        .context("qemu-system-x86_64 is missing: `cargo xtask setup` installs qemu-system-x86")?;
    let mut cmd = Command::new(qemu);
    // 2 GiB: the xfs scenario's image and the test binaries live in the initramfs's tmpfs.
    cmd.args(["-accel", "tcg", "-cpu", "max", "-smp", "1", "-m", "2048"])
        .args(["-nographic", "-no-reboot", "-kernel"])
        .arg(&kernel.vmlinuz)
        .arg("-initrd")
        .arg(initramfs)
        .args(["-append", "console=ttyS0 panic=-1 quiet"])
        .stdin(Stdio::null())
        .stdout(fs::File::create(log)?)
        .stderr(Stdio::piped());
    eprintln!("$ {} > {}", util::show(&cmd), log.display());
    let mut child = cmd.spawn().context("cannot start qemu-system-x86_64")?;
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                pipe.read_to_string(&mut stderr).ok();
            }
            if !status.success() {
                bail!("qemu failed ({status}): {}", stderr.trim());
            }
            return Ok("qemu exited".into());
        }
        if Instant::now() >= deadline {
            child.kill().ok();
            child.wait().ok();
            return Ok(format!("TIMED OUT (killed after {}s)", timeout.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[derive(Default)]
struct Checked {
    /// The summary, one line each.
    lines: Vec<String>,
    /// How many checks passed.
    passed: usize,
    failures: Vec<String>,
}

/// Reads the markers `/init` printed.
fn check(serial: &str, version: &str) -> Checked {
    let mut c = Checked::default();
    let marked = |what: &str| {
        serial
            .lines()
            // The first line may follow the console's reset sequences.
            .filter_map(|l| {
                let at = l.find(MARK)?;
                l[at + MARK.len()..].trim().strip_prefix(what)
            })
            .map(str::trim)
            .collect::<Vec<_>>()
    };
    let uptime =
        |s: Option<&&str>| s.and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok());
    match uptime(marked("BOOTED").first()) {
        Some(t) => {
            c.passed += 1;
            c.lines.push(format!(
                "booted:    /init started at {t:.1}s of guest uptime"
            ))
        }
        None => {
            c.failures
                .push("/init never started (no BOOTED marker)".into());
            return c;
        }
    }
    if let Some(t) = uptime(marked("DONE").first()) {
        c.lines
            .push(format!("done:      at {t:.1}s of guest uptime"));
    }
    match marked("UNAME").first() {
        Some(&u) if u == version => c.passed += 1,
        other => c.failures.push(format!(
            "uname -r in the VM is {other:?}, expected {version}"
        )),
    }
    let modules = marked("MODULE");
    c.lines.push(format!("modules:   {}", modules.join(", ")));
    for m in &modules {
        if m.ends_with("FAILED") {
            c.failures.push(format!("insmod {m}"));
        } else {
            c.passed += 1;
        }
    }
    check_leakyfs(&marked("LEAKYFS"), &mut c);
    let Some(json) = between(
        serial,
        &format!("{MARK} DOCTOR-BEGIN"),
        &format!("{MARK} DOCTOR-END"),
    ) else {
        c.failures
            .push("no `tracer doctor` output between the markers".into());
        return c;
    };
    let rc = marked("DOCTOR-END")
        .first()
        .copied()
        .unwrap_or("?")
        .to_string();
    if rc != "rc=0" {
        c.failures
            .push(format!("tracer doctor --json exited with {rc}"));
    } else {
        c.passed += 1;
    }
    let report: serde_json::Value = match serde_json::from_str(json.trim()) {
        Ok(v) => {
            c.passed += 1;
            v
        }
        Err(err) => {
            c.failures
                .push(format!("tracer doctor's output is not JSON: {err}"));
            return c;
        }
    };
    c.lines.push(format!(
        "doctor:    ran; kernel {}, can_run {}",
        report["kernel"].as_str().unwrap_or("?"),
        report["can_run"]
    ));
    if report["can_run"] != serde_json::Value::Bool(true) {
        c.failures.push("tracer doctor says can_run: false".into());
    } else {
        c.passed += 1;
    }
    let caps = report["capabilities"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for cap in &caps {
        let name = cap["name"].as_str().unwrap_or("?");
        let ok = cap["ok"].as_bool().unwrap_or(false);
        c.lines.push(format!(
            "  {} {name}: {}",
            if ok { "yes" } else { "NO " },
            cap["detail"].as_str().unwrap_or("")
        ));
    }
    for want in REQUIRED {
        let ok = caps
            .iter()
            .any(|cap| cap["name"] == *want && cap["ok"] == serde_json::Value::Bool(true));
        if !ok {
            c.failures
                .push(format!("capability `{want}` missing inside the VM"));
        } else {
            c.passed += 1;
        }
    }
    check_precise_hooks(&report, &mut c);
    if let Some(hooks) = report["hooks"].as_array() {
        c.lines.push(format!("hooks:     {}", hooks.len()));
        for hook in hooks {
            let points: Vec<&str> = hook["points"]
                .as_array()
                .map(|p| p.iter().filter_map(|p| p.as_str()).collect())
                .unwrap_or_default();
            c.lines.push(format!(
                "  {}: {} ({})",
                hook["hook"].as_str().unwrap_or("?"),
                hook["mechanism"].as_str().unwrap_or("not attached"),
                points.join(", ")
            ));
            for note in hook["notes"].as_array().into_iter().flatten() {
                c.lines
                    .push(format!("      note: {}", note.as_str().unwrap_or("?")));
            }
            for l in hook["spare_loads"].as_array().into_iter().flatten() {
                c.lines.push(format!(
                    "      unused {} {}: {}",
                    l["mechanism"].as_str().unwrap_or("?"),
                    l["program"].as_str().unwrap_or("?"),
                    l["detail"].as_str().unwrap_or("?")
                ));
            }
        }
    }
    c
}

/// Every precise hook got fentry/fexit or kprobe/kretprobe, and its unused function-level
/// programs (loaded by the doctor) pass the verifier too.
fn check_precise_hooks(report: &serde_json::Value, c: &mut Checked) {
    let hooks = report["hooks"].as_array().cloned().unwrap_or_default();
    for want in PRECISE_HOOKS {
        let Some(h) = hooks.iter().find(|h| h["hook"] == *want) else {
            c.failures.push(format!(
                "precise hook `{want}` missing from doctor's report"
            ));
            continue;
        };
        let mech = h["mechanism"].as_str().unwrap_or("none");
        if !ON_FUNCTION.contains(&mech) {
            c.failures.push(format!(
                "precise hook `{want}` got {mech}, not fentry or kprobe"
            ));
            continue;
        }
        let rejected: Vec<String> = h["spare_loads"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|l| l["ok"] != serde_json::Value::Bool(true))
            .map(|l| {
                format!(
                    "{}: {}",
                    l["program"].as_str().unwrap_or("?"),
                    l["detail"].as_str().unwrap_or("?")
                )
            })
            .collect();
        if rejected.is_empty() {
            c.passed += 1;
        } else {
            c.failures.push(format!(
                "precise hook `{want}`: an unused program fails to load: {}",
                rejected.join("; ")
            ));
        }
    }
}

/// leakyfs's knobs, as /init exercised them: it loads, mounts, keeps the mount busy while
/// its delayed work holds a file, lets go after, and fails a mount when told to.
fn check_leakyfs(lines: &[&str], c: &mut Checked) {
    c.lines.push(format!("leakyfs:   {}", lines.join("; ")));
    let expect = [
        ("insmod ok", "leakyfs loads"),
        ("mount ok", "a leakyfs mount"),
        (
            "held-umount failed: umount: can't unmount /mnt/leaky: Device or resource busy",
            "umount is EBUSY while leakyfs holds a file",
        ),
        (
            "later-umount ok",
            "umount succeeds once leakyfs's delayed work dropped the file",
        ),
        ("failing-mount failed", "fail_mount=1 makes mount fail"),
    ];
    for (want, what) in expect {
        if lines.iter().any(|l| l.starts_with(want)) {
            c.passed += 1;
        } else {
            c.failures
                .push(format!("{what} (no `LEAKYFS {want}` marker)"));
        }
    }
}

/// The cargo tests `/init` ran: each one expected must have run and passed.
fn check_tests(serial: &str, tests: &[vm_tests::TestBinary], c: &mut Checked) {
    let results = vm_tests::results(serial);
    let expected: Vec<String> = tests
        .iter()
        .flat_map(|b| b.tests.iter().map(move |t| format!("{}::{t}", b.target)))
        .collect();
    if expected.is_empty() {
        return;
    }
    let total: f64 = results.iter().filter_map(|o| o.secs).sum();
    c.lines.push(format!(
        "tests:     {} of {} ran inside the VM in {total:.1}s",
        results.len(),
        expected.len()
    ));
    for id in &expected {
        match results.iter().find(|o| &o.id == id) {
            None => c.failures.push(format!("test {id} never started")),
            Some(o) => {
                let secs = o.secs.map(|s| format!("{s:.1}s")).unwrap_or("?".into());
                if o.passed {
                    c.passed += 1;
                    c.lines.push(format!("  ok     {id} ({secs})"));
                } else {
                    c.lines.push(format!("  FAILED {id} ({secs})"));
                    let detail: String =
                        o.detail.lines().map(|l| format!("\n      | {l}")).collect();
                    c.failures.push(format!("test {id}:{detail}"));
                }
            }
        }
    }
}

/// The text between the line holding `begin` and the line holding `end`.
fn between<'a>(s: &'a str, begin: &str, end: &str) -> Option<&'a str> {
    let start = s.find(begin)?;
    let start = start + s[start..].find('\n')? + 1;
    let stop = start + s[start..].find(end)?;
    Some(&s[start..stop])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_lines() {
        let out = "\tlinux-vdso.so.1 (0x00007f)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x1)\n\t/lib64/ld-linux-x86-64.so.2 (0x2)\n";
        assert_eq!(
            parse_ldd(out),
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2")
            ]
        );
    }

    #[test]
    fn modinfo_depends_entries() {
        let info = b"license=GPL\0depends=libcrc32c,foo-bar\0intree=Y\0";
        assert_eq!(modinfo_depends(info), vec!["libcrc32c", "foo-bar"]);
        assert!(modinfo_depends(b"depends=\0").is_empty());
    }

    #[test]
    fn markers() {
        let serial = "noise\n\x1bc\x1b[2J@@TRACER-VM BOOTED 1.50 0.3\n@@TRACER-VM UNAME 6.1.0-1-cloud-amd64\n\
            @@TRACER-VM MODULE loop ok\n@@TRACER-VM LEAKYFS insmod ok\n@@TRACER-VM LEAKYFS mount ok\n\
            @@TRACER-VM LEAKYFS held-umount failed: umount: can't unmount /mnt/leaky: Device or resource busy\n\
            @@TRACER-VM LEAKYFS later-umount ok\n@@TRACER-VM LEAKYFS failing-mount failed: mount: EIO\n\
            @@TRACER-VM DOCTOR-BEGIN\n\
            {\"kernel\":\"Linux 6.1\",\"can_run\":true,\"capabilities\":[{\"name\":\"kprobes\",\"ok\":true,\"detail\":\"d\"}],\"hooks\":[]}\n\
            @@TRACER-VM DOCTOR-END rc=0\n@@TRACER-VM DONE 3.0 1\n";
        let c = check(serial, "6.1.0-1-cloud-amd64");
        // Only the other REQUIRED capabilities and the precise hooks are missing.
        assert_eq!(
            c.failures.len(),
            REQUIRED.len() - 1 + PRECISE_HOOKS.len(),
            "{:?}",
            c.failures
        );
        // booted, uname, 1 module, 5 leakyfs knobs, rc, JSON, can_run, kprobes.
        assert_eq!(c.passed, 12);
        // Without the leakyfs markers, each of its five checks fails.
        let without: String = serial
            .lines()
            .filter(|l| !l.contains("LEAKYFS"))
            .map(|l| format!("{l}\n"))
            .collect();
        let c = check(&without, "6.1.0-1-cloud-amd64");
        assert_eq!(
            c.failures.len(),
            REQUIRED.len() - 1 + PRECISE_HOOKS.len() + 5,
            "{:?}",
            c.failures
        );
        assert!(c.lines.iter().any(|l| l.contains("yes kprobes")));
        let c = check("nothing", "x");
        assert_eq!(c.failures.len(), 1);
    }

    #[test]
    fn precise_hooks_need_fentry_or_kprobe() {
        let hook = |name: &str, mech: &str, spare_ok: bool| {
            serde_json::json!({"hook": name, "mechanism": mech,
                "spare_loads": [{"program": "p", "ok": spare_ok, "detail": "d"}]})
        };
        let all: Vec<_> = PRECISE_HOOKS
            .iter()
            .map(|h| hook(h, "fentry", true))
            .collect();
        let mut c = Checked::default();
        check_precise_hooks(&serde_json::json!({ "hooks": all }), &mut c);
        assert!(c.failures.is_empty(), "{:?}", c.failures);
        assert_eq!(c.passed, PRECISE_HOOKS.len());
        // A tracepoint stand-in, a rejected spare program and a missing hook each fail.
        let mut some = all.clone();
        some[0] = hook(PRECISE_HOOKS[0], "raw_tracepoint", true);
        some[1] = hook(PRECISE_HOOKS[1], "kprobe", false);
        some.pop();
        let mut c = Checked::default();
        check_precise_hooks(&serde_json::json!({ "hooks": some }), &mut c);
        assert_eq!(c.failures.len(), 3, "{:?}", c.failures);
    }
}
