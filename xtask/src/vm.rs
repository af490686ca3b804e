//! `cargo xtask vm-test`: the full-kernel tier. Boots Debian's cloud kernels (`vm_kernel`:
//! bookworm's 6.1, trixie's 6.12, sid's 7.2; `--kernel` picks some), each with kprobes and
//! fentry, under qemu (TCG) with a busybox initramfs that holds the same release tracer,
//! the test filesystem module leakyfs built for that kernel and the tracer's kernel tests
//! (`vm_tests.rs`), checks what `tracer doctor` finds inside each and runs the tests there.
//!
//! 1. The kernels: `vm_kernel::fetch` downloads each suite's image, headers and kbuild tools
//!    with a private apt configuration and unpacks them into `target/vm-cache/<suite>/`
//!    (nothing is installed; cached, `--refresh` downloads again).
//! 2. Per kernel, in `target/vm/<kernel>/`: leakyfs built against its headers, and the
//!    initramfs (`initramfs.cpio.gz`, `cpio -H newc` + gzip): busybox, the release tracer
//!    and the test binaries (debug info stripped), `TOOLS`, the shared libraries `ldd`
//!    lists for them, the modules in `MODULES` with their dependencies (read from each
//!    module's `.modinfo`, as the packages ship no `modules.dep`; `.ko.xz` decompressed),
//!    leakyfs, and `/init` (`INIT`).
//! 3. qemu-system-x86_64 with TCG (KVM does not boot here), one per kernel, all at once
//!    (`--sequential`: one after another), serial console captured to
//!    `target/vm/<kernel>/serial.log`, killed after `--timeout` seconds.
//! 4. The markers `/init` prints are parsed per kernel: the modules loaded, `tracer doctor
//!    --json` ran and its capabilities are summarised (`REQUIRED` ones must be there),
//!    leakyfs's knobs work, and every test ran and passed; the summary ends with a table
//!    of every hook's mechanism and every test's result and time, per kernel.

use std::{
    collections::BTreeSet,
    fs,
    io::Read as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::{build, leakyfs, setup, util, vm_kernel, vm_kernel::Kernel, vm_tests};

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

/// The precise hooks (tracer/src/attach/hooks.rs) that must be served on the kernel function
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

/// How long the VM may run before qemu is killed (the whole tier, tests included): a hang
/// guard, not the tier's time goal (8 minutes). Three VMs sharing two CPUs took 540-600 s
/// each on 2026-12-06 (1.5x one VM alone), and 600 s killed 7.2's VM under its last tests.
pub const TIMEOUT_SECS: u64 = 900;

pub use crate::vm_tests::MARK;

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
# Half the rounds of the repeated lock scenarios (each round is seconds under TCG; the
# tier has a time budget): see `rounds` in tracer/tests/common.
export TRACER_TEST_ROUNDS_PERCENT=50
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
    /// Kill a VM's qemu after this many seconds.
    #[arg(long, default_value_t = TIMEOUT_SECS)]
    pub timeout: u64,
    /// Download the kernels again even when the cache has them.
    #[arg(long)]
    pub refresh: bool,
    /// The kernels to boot, by version or Debian suite (repeatable or comma-separated:
    /// `--kernel 6.1 --kernel 7.2`, `--kernel trixie`); all of them by default.
    #[arg(long = "kernel", value_name = "KERNEL")]
    pub kernels: Vec<String>,
    /// Boot the kernels one after another instead of all at once.
    #[arg(long)]
    pub sequential: bool,
    /// Run only the tests whose `target::name` contains this (repeatable), e.g.
    /// `--test vm_leakyfs::` or `--test fd_held`.
    #[arg(long = "test", value_name = "FILTER")]
    pub tests: Vec<String>,
    /// Run no cargo tests inside the VM (only the doctor and leakyfs's own checks).
    #[arg(long)]
    pub no_tests: bool,
}

impl Default for Args {
    fn default() -> Self {
        Args {
            debug: false,
            timeout: TIMEOUT_SECS,
            refresh: false,
            kernels: vec![],
            sequential: false,
            tests: vec![],
            no_tests: false,
        }
    }
}

pub fn main(args: Args) -> Result<()> {
    setup::ensure(setup::Level::Test)?;
    build::build_tracer(!args.debug)?;
    run(&args)
}

/// One kernel's VM: what was prepared for it, how its run ended, what its log says.
struct Vm {
    spec: &'static vm_kernel::Spec,
    kernel: Option<Kernel>,
    initramfs: PathBuf,
    log: PathBuf,
    outcome: String,
    secs: f64,
    checked: Checked,
}

/// The VM test on an already built tracer (`cargo xtask test` builds it first): every
/// selected kernel gets its leakyfs and initramfs, then they boot (at once unless
/// `--sequential`), then each serial log is checked.
pub fn run(args: &Args) -> Result<()> {
    let started = Instant::now();
    let specs = vm_kernel::select(&args.kernels)?;
    let cache = util::target_dir().join("vm-cache");
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
    let tracer = build::tracer_binary(!args.debug);
    let mut vms = vec![];
    for spec in specs {
        let work = util::target_dir().join("vm").join(spec.name);
        let mut vm = Vm {
            spec,
            kernel: None,
            initramfs: work.join("initramfs.cpio.gz"),
            log: work.join("serial.log"),
            outcome: "not booted".into(),
            secs: 0.0,
            checked: Checked::default(),
        };
        let prepared = (|| -> Result<Kernel> {
            fs::create_dir_all(&work)?;
            let kernel = vm_kernel::fetch(spec, &cache, args.refresh)?;
            let leakyfs = leakyfs::build(&kernel, &work)?;
            build_initramfs(
                &kernel,
                &leakyfs,
                &tracer,
                &tests,
                &work.join("initramfs"),
                &vm.initramfs,
            )?;
            Ok(kernel)
        })();
        match prepared {
            Ok(k) => vm.kernel = Some(k),
            Err(e) => vm
                .checked
                .failures
                .push(format!("preparing the VM failed: {e:#}")),
        }
        vms.push(vm);
    }
    let prepare_secs = started.elapsed().as_secs_f64();
    let timeout = Duration::from_secs(args.timeout);
    let boot_one = |vm: &mut Vm| {
        let Some(kernel) = &vm.kernel else { return };
        eprintln!(
            "vm: booting {} ({})",
            kernel.version,
            kernel.vmlinuz.display()
        );
        let t = Instant::now();
        match boot(kernel, &vm.initramfs, &vm.log, timeout) {
            Ok(o) => vm.outcome = o,
            Err(e) => {
                vm.outcome = format!("qemu failed: {e:#}");
                vm.checked.failures.push(vm.outcome.clone());
            }
        }
        vm.secs = t.elapsed().as_secs_f64();
        eprintln!("vm: {}: {} after {:.1}s", vm.spec.name, vm.outcome, vm.secs);
    };
    if args.sequential {
        vms.iter_mut().for_each(boot_one);
    } else {
        std::thread::scope(|s| {
            for vm in vms.iter_mut() {
                s.spawn(|| boot_one(vm));
            }
        });
    }
    for vm in vms.iter_mut() {
        let Some(kernel) = &vm.kernel else { continue };
        let serial = match fs::read(&vm.log) {
            Ok(b) => String::from_utf8_lossy(&b).replace('\r', ""),
            Err(e) => {
                vm.checked
                    .failures
                    .push(format!("reading {}: {e}", vm.log.display()));
                continue;
            }
        };
        let mut c = check(&serial, &kernel.version);
        check_tests(&serial, &tests, &mut c);
        c.failures.append(&mut vm.checked.failures);
        vm.checked = c;
    }
    print_summary(&vms, prepare_secs, started.elapsed().as_secs_f64());
    let failed: Vec<String> = vms
        .iter()
        .filter(|vm| !vm.checked.failures.is_empty())
        .map(|vm| {
            format!(
                "{} ({} failed, serial log {})",
                vm.spec.name,
                vm.checked.failures.len(),
                vm.log.display()
            )
        })
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        bail!("vm-test failed on {}", failed.join(", "))
    }
}

/// Per kernel its details (capabilities, notes, failures), then one table: per kernel,
/// each hook's mechanism and each test's result and time.
fn print_summary(vms: &[Vm], prepare_secs: f64, total_secs: f64) {
    println!("vm-test summary");
    for vm in vms {
        let (version, package) = vm
            .kernel
            .as_ref()
            .map(|k| (k.version.as_str(), k.package.as_str()))
            .unwrap_or(("?", "?"));
        println!(
            "kernel {} (Debian {}: {package}, uname {version})",
            vm.spec.name, vm.spec.suite
        );
        println!(
            "  qemu:      {} after {:.1}s; serial log {}",
            vm.outcome,
            vm.secs,
            vm.log.display()
        );
        for line in &vm.checked.lines {
            println!("  {line}");
        }
        for failure in &vm.checked.failures {
            println!("  FAILED: {failure}");
        }
    }
    println!();
    for line in table(vms) {
        println!("{line}");
    }
    println!(
        "time: {prepare_secs:.0}s preparing (kernels, leakyfs, initramfs), {total_secs:.0}s in all"
    );
    // A plain closing line: `vm-test: N passed, N failed` and per kernel.
    let passed: usize = vms.iter().map(|v| v.checked.passed).sum();
    let failed: usize = vms.iter().map(|v| v.checked.failures.len()).sum();
    let per: Vec<String> = vms
        .iter()
        .map(|v| {
            format!(
                "{}: {} passed, {} failed",
                v.spec.name,
                v.checked.passed,
                v.checked.failures.len()
            )
        })
        .collect();
    println!(
        "vm-test: {passed} passed, {failed} failed ({})",
        per.join("; ")
    );
}

/// The table's lines: a column per kernel; rows for the run, every hook, every test.
fn table(vms: &[Vm]) -> Vec<String> {
    let mut rows: Vec<(String, Vec<String>)> = vec![];
    let mut row = |name: String, cell: &dyn Fn(&Vm) -> String| {
        let cells = vms.iter().map(cell).collect();
        rows.push((name, cells));
    };
    row("kernel".into(), &|vm| {
        vm.kernel
            .as_ref()
            .map(|k| k.version.clone())
            .unwrap_or("not prepared".into())
    });
    row("vm run".into(), &|vm| {
        format!(
            "{} {:.0}s",
            if vm.outcome == "qemu exited" {
                "exited"
            } else {
                vm.outcome.as_str()
            },
            vm.secs
        )
    });
    row("checks".into(), &|vm| {
        format!(
            "{} ok, {} failed",
            vm.checked.passed,
            vm.checked.failures.len()
        )
    });
    let mut hooks: Vec<String> = vec![];
    let mut test_ids: Vec<String> = vec![];
    for vm in vms {
        for (h, _) in &vm.checked.hooks {
            if !hooks.contains(h) {
                hooks.push(h.clone());
            }
        }
        for (t, _) in &vm.checked.tests {
            if !test_ids.contains(t) {
                test_ids.push(t.clone());
            }
        }
    }
    for h in &hooks {
        row(format!("hook {h}"), &|vm| {
            vm.checked
                .hooks
                .iter()
                .find(|(n, _)| n == h)
                .map(|(_, m)| m.clone())
                .unwrap_or("-".into())
        });
    }
    for t in &test_ids {
        row(t.clone(), &|vm| {
            vm.checked
                .tests
                .iter()
                .find(|(n, _)| n == t)
                .map(|(_, r)| r.clone())
                .unwrap_or("-".into())
        });
    }
    let first = rows.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    let widths: Vec<usize> = (0..vms.len())
        .map(|i| {
            rows.iter()
                .map(|(_, c)| c[i].len())
                .chain([vms[i].spec.name.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = vec![];
    let mut header = format!("{:first$}", "");
    for (vm, w) in vms.iter().zip(&widths) {
        header.push_str(&format!("  {:w$}", vm.spec.name));
    }
    out.push(header.trim_end().to_string());
    for (name, cells) in rows {
        let mut line = format!("{name:first$}");
        for (c, w) in cells.iter().zip(&widths) {
            line.push_str(&format!("  {c:w$}"));
        }
        out.push(line.trim_end().to_string());
    }
    out
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
        // Uncompressed (6.12 and later ship `.ko.xz`): busybox's insmod reads plain ELF.
        let rel = path
            .strip_prefix(&kernel.modules)?
            .with_file_name(format!("{name}.ko"));
        let inside = Path::new("/lib/modules").join(&kernel.version).join(rel);
        let to = root.join(inside.strip_prefix("/")?);
        if let Some(dir) = to.parent() {
            fs::create_dir_all(dir)?;
        }
        fs::write(&to, read_module(path)?)?;
        insmods.push_str(&format!(
            "if insmod {inside} 2>&1; then echo \"{MARK} MODULE {name} ok\"; \
             else echo \"{MARK} MODULE {name} FAILED\"; fi\n",
            inside = inside.display()
        ));
    }
    copy(leakyfs, &root.join("lib/modules/leakyfs.ko"))?;
    // The kernel's build configuration where a Debian install keeps it: the tracer reads
    // the preemption mode from it (`kernel::preempt`), as it would on such a machine.
    fs::create_dir_all(root.join("boot"))?;
    copy(
        &kernel.headers.join(".config"),
        &root.join(format!("boot/config-{}", kernel.version)),
    )?;
    let init = root.join("init");
    fs::write(
        &init,
        INIT.replace("@MODULES@", insmods.trim_end())
            .replace("@TESTS@", vm_tests::init_lines(tests).trim_end()),
    )?;
    util::set_mode(&init, 0o755)?;

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
        } else if let Some(stem) = path.file_name().and_then(|n| n.to_str()).and_then(|n| {
            [".ko", ".ko.xz", ".ko.zst", ".ko.gz"]
                .iter()
                .find_map(|ext| n.strip_suffix(ext))
        }) {
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
    let data = read_module(path)?;
    let modinfo = elf_section(&data, ".modinfo")
        .with_context(|| format!("{} has no .modinfo section", path.display()))?;
    for dep in modinfo_depends(modinfo) {
        visit_module(&normalize(&dep), index, seen, order, depth + 1)?;
    }
    order.push((name.to_string(), path.clone()));
    Ok(())
}

/// A module's ELF, decompressed when its name says it is (`.ko.xz`, `.ko.zst`, `.ko.gz`).
fn read_module(path: &Path) -> Result<Vec<u8>> {
    let name = path.to_string_lossy();
    let tool = [(".xz", "xz"), (".zst", "zstd"), (".gz", "gzip")]
        .iter()
        .find(|(ext, _)| name.ends_with(ext))
        .map(|(_, tool)| *tool);
    let Some(tool) = tool else {
        return fs::read(path).with_context(|| format!("reading {}", path.display()));
    };
    let out = Command::new(tool)
        .arg("-dc")
        .arg(path)
        .output()
        .with_context(|| format!("cannot run {tool} (xz-utils, zstd, gzip)"))?;
    if !out.status.success() {
        bail!("`{tool} -dc {}` failed ({})", path.display(), out.status);
    }
    Ok(out.stdout)
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
    /// Every hook the doctor reported, with the mechanism it got.
    hooks: Vec<(String, String)>,
    /// Every test expected, with its result and time (`ok 12.3s`).
    tests: Vec<(String, String)>,
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
    for (what, key) in [
        ("tracepoint field", "missing_tracepoint_fields"),
        ("BTF member", "missing_btf_members"),
    ] {
        for g in report[key].as_array().into_iter().flatten() {
            c.lines
                .push(format!("missing {what}: {}", g.as_str().unwrap_or("?")));
        }
    }
    if let Some(hooks) = report["hooks"].as_array() {
        c.lines.push(format!("hooks:     {}", hooks.len()));
        for hook in hooks {
            let points: Vec<&str> = hook["points"]
                .as_array()
                .map(|p| p.iter().filter_map(|p| p.as_str()).collect())
                .unwrap_or_default();
            let name = hook["hook"].as_str().unwrap_or("?");
            let mech = hook["mechanism"].as_str().unwrap_or("not attached");
            c.lines
                .push(format!("  {name}: {mech} ({})", points.join(", ")));
            c.hooks.push((name.to_string(), mech.to_string()));
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

/// Every precise hook got fentry/fexit or kprobe/kretprobe, none of its programs was refused
/// by the verifier, and its unused function-level programs (loaded by the doctor) pass the
/// verifier too.
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
        // A better alternative refused by the verifier is our bug, not the kernel's limit
        // (one that cannot hook the function says so without a verifier log): `__fput`'s
        // fexit was refused from 2026-12-05 to 12-07 and its kprobe at entry served unnoticed.
        let refused: Vec<&str> = h["notes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n.as_str())
            .filter(|n| n.contains("processed ") && n.contains(" insns"))
            .collect();
        if !refused.is_empty() {
            c.failures.push(format!(
                "precise hook `{want}` got {mech}: a preferred program was refused by the verifier: {}",
                refused.join("; ")
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
            None => {
                c.failures.push(format!("test {id} never started"));
                c.tests.push((id.clone(), "not run".into()));
            }
            Some(o) => {
                let secs = o.secs.map(|s| format!("{s:.1}s")).unwrap_or("?".into());
                if o.passed {
                    c.passed += 1;
                    c.lines.push(format!("  ok     {id} ({secs})"));
                    c.tests.push((id.clone(), format!("ok {secs}")));
                } else {
                    c.lines.push(format!("  FAILED {id} ({secs})"));
                    c.tests.push((id.clone(), format!("FAILED {secs}")));
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
    fn the_table_has_a_column_per_kernel() {
        let vm = |i: usize, mech: &str, test: &str| Vm {
            spec: &vm_kernel::KERNELS[i],
            kernel: None,
            initramfs: PathBuf::new(),
            log: PathBuf::new(),
            outcome: "qemu exited".into(),
            secs: 300.0,
            checked: Checked {
                passed: 2,
                hooks: vec![("fput".into(), mech.into())],
                tests: vec![("ebusy::a".into(), test.into())],
                ..Checked::default()
            },
        };
        let mut second = vm(2, "kprobe", "FAILED 3.0s");
        second
            .checked
            .tests
            .push(("locks::b".into(), "ok 1.0s".into()));
        let t = table(&[vm(0, "fentry", "ok 12.5s"), second]);
        assert!(
            t[0].trim_start().starts_with("6.1") && t[0].ends_with("7.2"),
            "{t:?}"
        );
        let row = |name: &str| {
            t.iter()
                .find(|l| l.starts_with(name))
                .map(|l| {
                    l.split_whitespace()
                        .skip(name.split_whitespace().count())
                        .collect::<Vec<_>>()
                })
                .unwrap()
        };
        assert_eq!(row("vm run"), ["exited", "300s", "exited", "300s"]);
        assert_eq!(row("hook fput"), ["fentry", "kprobe"]);
        assert_eq!(row("ebusy::a"), ["ok", "12.5s", "FAILED", "3.0s"]);
        // A test one kernel did not list is `-` there.
        assert_eq!(row("locks::b"), ["-", "ok", "1.0s"]);
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
