//! Loading the eBPF object and attaching every hook the kernel allows, recording for each
//! which mechanism served it or why none could. Dropping `Attached` detaches everything:
//! links are file descriptors owned by this process, nothing is pinned, so not even a
//! crash of the tracer leaves a probe behind.

use std::collections::{HashMap, HashSet};

use anyhow::{Context, Result, anyhow};
use aya::{
    Ebpf, EbpfLoader,
    maps::Array as BpfArray,
    maps::HashMap as BpfHashMap,
    programs::{Iter, Program, RawTracePoint, TracePoint},
};
use serde::Serialize;
use tracer_fs::wire::{Config, alloc::AllocConfig, followed};

use crate::{
    hooks::{HOOKS, Hook, Mechanism, Point},
    kallsyms::Kallsyms,
    kernel_btf::KernelBtf,
    layout::{self, Gaps, UringLayout},
    tracefs,
};

/// The eBPF object built from `tracer-ebpf` by build.rs.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(env!("TRACER_EBPF_OBJ"));

/// `Config` as aya's plain-old-data global.
#[derive(Clone, Copy)]
#[repr(transparent)]
struct PodConfig(Config);
// SAFETY: `Config` is `repr(C)`, `Copy`, and made of integers and integer arrays.
unsafe impl aya::Pod for PodConfig {}

#[derive(Debug, Clone)]
pub struct Options {
    /// Send queue/start/end records for every work function, not only the followed ones.
    pub all_work: bool,
    /// Extra work functions to follow, by kernel symbol name.
    pub follow_work: Vec<String>,
    /// Ring buffer size in bytes (a power of two, multiple of the page size).
    pub ring_bytes: u32,
    /// Allocation leak tracking (`--alloc-filter`); off when `None`.
    pub alloc: Option<crate::alloc::AllocOptions>,
    /// A blocking lock call waiting longer than this gets a verdict (`--lock-wait-ms`).
    pub lock_wait_ms: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            all_work: false,
            follow_work: Vec::new(),
            ring_bytes: 16 << 20,
            alloc: None,
            lock_wait_ms: tracer_fs::locks::DEFAULT_LOCK_WAIT_MS,
        }
    }
}

/// What became of one logical hook.
#[derive(Debug, Clone, Serialize)]
pub struct HookStatus {
    pub hook: &'static str,
    pub why: &'static str,
    /// The mechanism that serves it, if any.
    pub mechanism: Option<Mechanism>,
    /// The attach points used (`category/name` or function).
    pub points: Vec<String>,
    /// Why better mechanisms, or all of them, failed.
    pub notes: Vec<String>,
    /// A hook of the full-kernel tier (fentry/kprobe on the kernel function).
    pub precise: bool,
    /// `tracer doctor`: the function-level programs of this hook that were not used, loaded
    /// anyway to show they pass this kernel's verifier.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub spare_loads: Vec<SpareLoad>,
}

/// One unused program of a precise hook, loaded (not attached) by `tracer doctor`.
#[derive(Debug, Clone, Serialize)]
pub struct SpareLoad {
    pub program: &'static str,
    pub mechanism: Mechanism,
    pub ok: bool,
    pub detail: String,
}

impl HookStatus {
    pub fn live(&self) -> bool {
        self.mechanism.is_some()
    }
}

/// A followed work function.
#[derive(Debug, Clone, Serialize)]
pub struct FollowedFn {
    pub name: String,
    pub addrs: Vec<u64>,
    pub kind: u8,
}

pub struct Attached {
    pub ebpf: Ebpf,
    pub hooks: Vec<HookStatus>,
    pub followed: Vec<FollowedFn>,
    pub gaps: Gaps,
    pub uring: UringLayout,
    pub kallsyms: Kallsyms,
    pub btf: aya::Btf,
    /// The maps of allocation tracking, taken out of the object, when it is on.
    pub alloc: Option<crate::alloc::tracker::AllocMaps>,
    /// `Options::lock_wait_ms`, for the engine.
    pub lock_wait_ms: u64,
}

/// Everything about this kernel the loader needs.
pub fn build_config(kbtf: &KernelBtf, ksyms: &Kallsyms, opts: &Options) -> (Config, Gaps) {
    let mut cfg = Config::empty();
    cfg.self_tgid = std::process::id();
    cfg.all_work = opts.all_work as u32;
    cfg.delayed_work_timer_fn = ksyms
        .addrs("delayed_work_timer_fn")
        .first()
        .copied()
        .unwrap_or(0);
    cfg.fput_callback = ksyms.addrs("____fput").first().copied().unwrap_or(0);
    let gaps = layout::fill_config(&mut cfg, kbtf);
    (cfg, gaps)
}

pub fn load_object(cfg: &Config, ring_bytes: u32) -> Result<Ebpf> {
    load_object_with_alloc(cfg, ring_bytes, None)
}

/// `AllocConfig` as aya's plain-old-data global.
#[derive(Clone, Copy)]
#[repr(transparent)]
struct PodAllocConfig(AllocConfig);
// SAFETY: `AllocConfig` is `repr(C)`, `Copy`, and made of integers and integer arrays.
unsafe impl aya::Pod for PodAllocConfig {}

/// Loads the object; with `alloc`, allocation tracking is on, with that filter and map size.
/// Without it the tracking maps are created with one entry (a stack map preallocates).
pub fn load_object_with_alloc(
    cfg: &Config,
    ring_bytes: u32,
    alloc: Option<(&AllocConfig, u32)>,
) -> Result<Ebpf> {
    let pod = PodConfig(*cfg);
    let empty = AllocConfig::empty();
    let (acfg, entries, stacks) = match alloc {
        Some((a, n)) => (a, n, 4096),
        None => (&empty, 1, 1),
    };
    let apod = PodAllocConfig(*acfg);
    EbpfLoader::new()
        .override_global("CONFIG", &pod, true)
        .override_global("ALLOC_CONFIG", &apod, true)
        .map_max_entries("EVENTS", ring_bytes)
        .map_max_entries("OUTSTANDING", entries)
        .map_max_entries("STACKS", stacks)
        .map_max_entries("CALLSITE_STACK", stacks)
        .load(OBJECT)
        .context("loading the eBPF object (creating its maps)")
}

/// Takes the tracking maps out of the object.
fn take_alloc_maps(
    ebpf: &mut Ebpf,
    summary: crate::alloc::filter::FilterSummary,
    syms: crate::alloc::symbols::SymTable,
) -> Result<crate::alloc::tracker::AllocMaps> {
    let mut take = |name: &str| {
        ebpf.take_map(name)
            .ok_or_else(|| anyhow!("no {name} map in the object"))
    };
    Ok(crate::alloc::tracker::AllocMaps {
        outstanding: aya::maps::HashMap::try_from(take("OUTSTANDING")?)?,
        stacks: aya::maps::StackTraceMap::try_from(take("STACKS")?)?,
        cache_names: aya::maps::HashMap::try_from(take("CACHE_NAMES")?)?,
        summary,
        syms,
        rcu: None,
    })
}

/// Loads the object and attaches every hook it can.
pub fn attach(opts: &Options) -> Result<Attached> {
    tracefs::ensure_mounted()?;
    let kbtf = KernelBtf::load()?;
    let ksyms = Kallsyms::load()?;
    let btf = aya::Btf::from_sys_fs().context("reading the kernel's BTF for aya")?;
    let (cfg, gaps) = build_config(&kbtf, &ksyms, opts);
    let built = match &opts.alloc {
        Some(a) => {
            // One kallsyms read serves the attach and the allocation backtraces.
            let syms = crate::alloc::symbols::SymTable::from_kallsyms(ksyms.clone());
            let mut b = crate::alloc::filter::build(a, &syms)?;
            match crate::alloc::rcu::layout(&kbtf, &ksyms) {
                Ok(l) => b.config.rcu = l,
                Err(e) => b.summary.notes.push(format!(
                    "kfree_rcu() queues not followed ({e:#}): objects freed through them \
                     stay listed until their address is reused"
                )),
            }
            Some((a.max_entries, b, syms))
        }
        None => None,
    };
    let mut ebpf = load_object_with_alloc(
        &cfg,
        opts.ring_bytes,
        built.as_ref().map(|(n, b, _)| (&b.config, *n)),
    )?;
    let alloc = match built {
        Some((_, mut b, syms)) => {
            let rcu = if b.config.rcu.kfree_rcu_work != 0 {
                match crate::alloc::rcu::RcuScan::load(&mut ebpf, &btf) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        b.summary.notes.push(format!(
                            "kfree_rcu() queues are followed when their work runs, but not \
                             scanned before reports ({e:#})"
                        ));
                        None
                    }
                }
            } else {
                None
            };
            if let Err(e) = crate::alloc::percpu::attach(&mut ebpf, &kbtf) {
                b.summary
                    .notes
                    .push(format!("percpu allocations are not tracked: {e:#}"));
            }
            let mut maps = take_alloc_maps(&mut ebpf, b.summary, syms)?;
            maps.rcu = rcu;
            Some(maps)
        }
        None => None,
    };

    let followed = follow_work(&mut ebpf, &ksyms, opts)?;
    let mut loaded: HashMap<&'static str, Result<(), String>> = HashMap::new();
    let mut shared = HashSet::new();
    let mut hooks = Vec::new();
    for h in HOOKS {
        let status = attach_hook(&mut ebpf, &kbtf, &btf, &cfg, h, &mut loaded, &mut shared);
        if h.name == "__fput" && status.mechanism.is_some_and(Mechanism::on_function) {
            // From now on the `filp` slab free only counts: `__fput` reports releases.
            let mut flag: BpfArray<_, u32> = BpfArray::try_from(
                ebpf.map_mut("PRECISE_RELEASE")
                    .ok_or_else(|| anyhow!("no PRECISE_RELEASE map"))?,
            )?;
            flag.set(0, 1, 0).context("setting PRECISE_RELEASE")?;
        }
        hooks.push(status);
    }
    Ok(Attached {
        ebpf,
        hooks,
        followed,
        gaps,
        uring: layout::uring_layout(&kbtf),
        kallsyms: ksyms,
        btf,
        alloc,
        lock_wait_ms: opts.lock_wait_ms,
    })
}

fn follow_work(ebpf: &mut Ebpf, ksyms: &Kallsyms, opts: &Options) -> Result<Vec<FollowedFn>> {
    let mut wanted: Vec<(String, u8)> = vec![
        ("delayed_fput".into(), followed::DELAYED_FPUT),
        ("io_fallback_req_func".into(), followed::URING_FALLBACK),
        ("io_ring_exit_work".into(), followed::URING_EXIT),
    ];
    wanted.extend(opts.follow_work.iter().map(|n| (n.clone(), followed::USER)));
    let mut map: BpfHashMap<_, u64, u8> = BpfHashMap::try_from(
        ebpf.map_mut("FOLLOWED_WORK")
            .ok_or_else(|| anyhow!("no FOLLOWED_WORK map"))?,
    )?;
    let mut out = Vec::new();
    for (name, kind) in wanted {
        let addrs = ksyms.addrs(&name);
        if addrs.is_empty() && kind == followed::USER {
            anyhow::bail!("--follow-work {name}: no such function in /proc/kallsyms");
        }
        for a in &addrs {
            map.insert(a, kind, 0)
                .with_context(|| format!("following {name}"))?;
        }
        out.push(FollowedFn { name, addrs, kind });
    }
    Ok(out)
}

/// Checks a raw tracepoint's argument types against what the program assumes.
fn raw_args_match(kbtf: &KernelBtf, p: &Point) -> Result<(), String> {
    if p.raw_args.is_empty() {
        return Ok(());
    }
    let params = kbtf
        .tracepoint_params(p.target)
        .map_err(|e| e.to_string())?;
    for &(i, want) in p.raw_args {
        match params.get(i) {
            Some(have) if have.replace("const ", "") == want => {}
            Some(have) => {
                return Err(format!(
                    "argument {i} is `{have}`, the program assumes `{want}`"
                ));
            }
            None => return Err(format!("has no argument {i}")),
        }
    }
    Ok(())
}

/// Loads a program (once) for the point it serves.
fn load_program(
    prog: &mut Program,
    p: &Point,
    btf: &aya::Btf,
    loaded: &mut HashMap<&'static str, Result<(), String>>,
) -> Result<(), String> {
    loaded
        .entry(p.program)
        .or_insert_with(|| {
            match prog {
                Program::TracePoint(t) => t.load(),
                Program::RawTracePoint(t) => t.load(),
                Program::FEntry(t) => t.load(p.target, btf),
                Program::FExit(t) => t.load(p.target, btf),
                Program::KProbe(t) => t.load(),
                _ => return Err(format!("program {} has an unexpected type", p.program)),
            }
            .map_err(|e| load_error(p, &e))
        })
        .clone()
}

/// Why a program did not load, in a line or a few: a trampoline the kernel refuses says
/// so plainly; a verifier rejection keeps the end of its log.
fn load_error(p: &Point, e: &aya::programs::ProgramError) -> String {
    if matches!(p.mechanism, Mechanism::Fentry | Mechanism::Fexit) {
        let msg = format!("{e}");
        let head = msg.split(". Verifier output").next().unwrap_or(&msg);
        if !format!("{e:#}").contains("processed ") {
            return format!("loading {} {}: {head}", p.mechanism, p.target);
        }
    }
    verifier_error(e)
}

fn attach_point(
    ebpf: &mut Ebpf,
    p: &Point,
    btf: &aya::Btf,
    loaded: &mut HashMap<&'static str, Result<(), String>>,
) -> Result<(), String> {
    let prog = ebpf
        .program_mut(p.program)
        .ok_or_else(|| format!("program {} missing from the object", p.program))?;
    load_program(prog, p, btf, loaded)?;
    match (p.mechanism, prog) {
        (Mechanism::Fentry, Program::FEntry(t)) => t
            .attach()
            .map(drop)
            .map_err(|e| format!("attaching fentry {}: {e}", p.target)),
        (Mechanism::Fexit, Program::FExit(t)) => t
            .attach()
            .map(drop)
            .map_err(|e| format!("attaching fexit {}: {e}", p.target)),
        (Mechanism::Kprobe | Mechanism::Kretprobe, Program::KProbe(t)) => {
            t.attach(p.target, 0).map(drop).map_err(|e| {
                let msg = format!("{e}");
                if msg.contains("kprobe/type") {
                    "no kprobe PMU (/sys/bus/event_source/devices/kprobe is missing: a kernel \
                     without CONFIG_KPROBES)"
                        .to_string()
                } else {
                    format!("attaching {} {}: {msg}", p.mechanism, p.target)
                }
            })
        }
        (Mechanism::Tracepoint, Program::TracePoint(t)) => {
            let (cat, name) = p.target.split_once('/').expect("category/name");
            if !tracefs::exists(cat, name) {
                return Err(format!(
                    "tracepoint {} does not exist on this kernel",
                    p.target
                ));
            }
            t.attach(cat, name)
                .map(drop)
                .map_err(|e| format!("attaching {}: {e}", p.target))
        }
        (Mechanism::RawTracepoint, Program::RawTracePoint(t)) => t
            .attach(p.target)
            .map(drop)
            .map_err(|e| format!("attaching raw {}: {e}", p.target)),
        _ => Err(format!(
            "program {} does not match mechanism {}",
            p.program, p.mechanism
        )),
    }
}

pub(crate) fn verifier_error(e: &aya::programs::ProgramError) -> String {
    // The verifier log is long; its last lines say why.
    let full = format!("{e:#}");
    let lines: Vec<&str> = full.lines().collect();
    let tail = lines.len().saturating_sub(12);
    lines[tail..].join("\n")
}

/// Names mechanisms (`fentry,fexit`, comma-separated) the attach must not use, so that the
/// fallbacks can be exercised on a kernel where the better ones work (the VM tier).
pub const AVOID_ENV: &str = "TRACER_AVOID_MECHANISMS";

fn avoided_mechanisms() -> Vec<Mechanism> {
    let all = [
        Mechanism::Fentry,
        Mechanism::Fexit,
        Mechanism::Kprobe,
        Mechanism::Kretprobe,
        Mechanism::RawTracepoint,
    ];
    let Ok(v) = std::env::var(AVOID_ENV) else {
        return Vec::new();
    };
    v.split(',')
        .filter_map(|n| {
            let n = n.trim().replace(['_', '-'], " ");
            all.into_iter().find(|m| m.to_string() == n)
        })
        .collect()
}

/// The open family's entry programs only keep the path pointer for the exit, which reads
/// it from the saved registers instead where the kernel's BTF says where they are
/// (`tracer-ebpf/src/files.rs`). Not attaching them then saves each open a syscall
/// tracepoint hit, and detaching four perf events (each waits for RCU grace periods).
const OPEN_ENTRIES: &[&str] = &[
    "sys_enter_openat",
    "sys_enter_openat2",
    "sys_enter_open",
    "sys_enter_creat",
];

/// Whether point `p` is needed with this configuration.
fn needed(p: &Point, cfg: &Config) -> bool {
    !(OPEN_ENTRIES.contains(&p.program)
        && cfg.btf[tracer_fs::wire::btf_off::PT_REGS_SYSCALL_ARG0] != tracer_fs::wire::MISSING_U32)
}

/// Points already attached, by (program, target): a hook whose alternative includes one
/// shares it instead of attaching it twice (which would double its events).
type Shared = HashSet<(&'static str, &'static str)>;

fn attach_hook(
    ebpf: &mut Ebpf,
    kbtf: &KernelBtf,
    btf: &aya::Btf,
    cfg: &Config,
    hook: &Hook,
    loaded: &mut HashMap<&'static str, Result<(), String>>,
    shared: &mut Shared,
) -> HookStatus {
    let mut status = HookStatus {
        hook: hook.name,
        why: hook.why,
        mechanism: None,
        points: vec![],
        notes: vec![],
        precise: hook.precise,
        spare_loads: vec![],
    };
    let avoided = avoided_mechanisms();
    'alternatives: for alt in hook.alternatives {
        if let Some(p) = alt.iter().find(|p| avoided.contains(&p.mechanism)) {
            status.notes.push(format!(
                "{} {}: not tried ({AVOID_ENV} says to avoid {})",
                p.mechanism, p.target, p.mechanism
            ));
            continue;
        }
        for p in alt.iter() {
            if let Err(e) = raw_args_match(kbtf, p) {
                status
                    .notes
                    .push(format!("{} {}: {e}", p.mechanism, p.target));
                continue 'alternatives;
            }
        }
        // Attach the whole alternative or none of it: a partial one would mislead.
        let mut points = vec![];
        let mut fresh = vec![];
        for p in alt.iter().filter(|p| needed(p, cfg)) {
            if shared.contains(&(p.program, p.target)) {
                points.push(p.target.to_string());
                continue;
            }
            match attach_point(ebpf, p, btf, loaded) {
                Ok(()) => {
                    points.push(p.target.to_string());
                    fresh.push(p);
                }
                Err(e) => {
                    status
                        .notes
                        .push(format!("{} {}: {e}", p.mechanism, p.target));
                    for p in fresh {
                        detach_program(ebpf, p.program);
                    }
                    continue 'alternatives;
                }
            }
        }
        for p in fresh {
            shared.insert((p.program, p.target));
        }
        status.mechanism = alt.first().map(|p| p.mechanism);
        status.points = points;
        break;
    }
    if hook.precise && !status.mechanism.is_some_and(Mechanism::on_function) {
        status.notes.push(match status.mechanism {
            Some(m) => format!(
                "approximated by the tracepoint tier ({m}): neither fentry nor kprobe could be used"
            ),
            None => "neither fentry nor kprobe could be used, and the tracepoint tier has no \
                     stand-in"
                .into(),
        });
    }
    status
}

/// `tracer doctor`: loads (without attaching) every function-level program of the precise
/// hooks that the attach did not use, so that a verifier rejection of a fallback shows on
/// the kernel that has it, not only once the preferred mechanism is gone.
pub fn load_spares(att: &mut Attached) {
    let mut loaded: HashMap<&'static str, Result<(), String>> = HashMap::new();
    for (hook, status) in HOOKS.iter().zip(att.hooks.iter_mut()) {
        let Some(chosen) = status.mechanism.filter(|m| m.on_function()) else {
            continue; // every function-level alternative was tried: the notes say why
        };
        // The alternatives after the chosen one were never tried.
        let rest = hook
            .alternatives
            .iter()
            .skip_while(|a| a.first().map(|p| p.mechanism) != Some(chosen))
            .skip(1);
        for p in rest.flat_map(|a| a.iter()) {
            if !p.mechanism.on_function() {
                continue;
            }
            let Some(prog) = att.ebpf.program_mut(p.program) else {
                continue;
            };
            let r = load_program(prog, p, &att.btf, &mut loaded);
            status.spare_loads.push(SpareLoad {
                program: p.program,
                mechanism: p.mechanism,
                ok: r.is_ok(),
                detail: match r {
                    Ok(()) => "passes the verifier".into(),
                    Err(e) => e,
                },
            });
        }
    }
}

/// Drops every link of a program (used to undo a partly attached alternative).
fn detach_program(ebpf: &mut Ebpf, name: &str) {
    if let Some(prog) = ebpf.program_mut(name) {
        let _ = match prog {
            Program::TracePoint(t) => t.unload().and_then(|_| t.load()),
            Program::RawTracePoint(t) => t.unload().and_then(|_| t.load()),
            Program::KProbe(t) => t.unload().and_then(|_| t.load()),
            _ => Ok(()),
        };
    }
}

/// Runs the `task_file` iterator once and returns the raw records it wrote.
pub fn snapshot(ebpf: &mut Ebpf, btf: &aya::Btf) -> Result<Vec<u8>> {
    run_iter(ebpf, btf, crate::hooks::SNAPSHOT_PROGRAM, "task_file")
}

/// Runs the `task` iterator (`task_scan`) once and returns the raw records it wrote.
pub fn task_scan(ebpf: &mut Ebpf, btf: &aya::Btf) -> Result<Vec<u8>> {
    run_iter(ebpf, btf, crate::hooks::TASK_SCAN_PROGRAM, "task")
}

/// Runs the `task_vma` iterator (`vma_scan`) once for the mappings of files on `mounts`
/// (at most `VMA_SCAN_MOUNTS` of them; empty: only loads it) and returns the raw
/// `FileRef` records it wrote.
pub fn vma_scan(ebpf: &mut Ebpf, btf: &aya::Btf, mounts: &[i32]) -> Result<Vec<u8>> {
    use tracer_fs::wire::VMA_SCAN_MOUNTS;
    {
        let map = ebpf.map_mut("VMA_MOUNTS").context("no VMA_MOUNTS map")?;
        let mut arr: aya::maps::Array<_, i32> = aya::maps::Array::try_from(map)?;
        for i in 0..VMA_SCAN_MOUNTS {
            arr.set(i as u32, mounts.get(i).copied().unwrap_or(-1), 0)?;
        }
    }
    run_iter(ebpf, btf, crate::hooks::VMA_SCAN_PROGRAM, "task_vma")
}

/// Loads (once) the iterator program `name` of `target`, runs it and returns its output.
fn run_iter(ebpf: &mut Ebpf, btf: &aya::Btf, name: &str, target: &str) -> Result<Vec<u8>> {
    use std::io::Read;
    let prog: &mut Iter = ebpf
        .program_mut(name)
        .ok_or_else(|| anyhow!("program {name} missing"))?
        .try_into()?;
    if prog.fd().is_err() {
        prog.load(target, btf)
            .map_err(|e| anyhow!("loading the {target} iterator: {}", verifier_error(&e)))?;
    }
    let link_id = prog
        .attach()
        .with_context(|| format!("attaching the {target} iterator"))?;
    let link = prog.take_link(link_id)?;
    let mut file = link.into_file().context("opening the iterator")?;
    let mut buf = Vec::new();
    file.read_to_end(&mut buf).context("reading the iterator")?;
    Ok(buf)
}

/// The benchmarks' floor (`tracer attach --floor`): count-only programs (`floor_raw`,
/// `floor_tp`) attached to exactly the points the default configuration would use. The
/// same `HOOKS` walk decides: each real program is loaded (so a verifier rejection falls
/// back as it would), raw argument types are checked, and the floor program of the same
/// kind takes the real one's place at the attach point.
pub struct Floor {
    pub ebpf: Ebpf,
    pub hooks: Vec<HookStatus>,
}

impl Floor {
    /// Runs of the floor programs so far, summed over CPUs.
    pub fn count(&self) -> Result<u64> {
        let map = self.ebpf.map("FLOOR_COUNT").context("no FLOOR_COUNT map")?;
        let arr: aya::maps::PerCpuArray<_, u64> = aya::maps::PerCpuArray::try_from(map)?;
        Ok(arr.get(&0, 0)?.iter().sum())
    }
}

pub fn attach_floor() -> Result<Floor> {
    tracefs::ensure_mounted()?;
    let kbtf = KernelBtf::load()?;
    let ksyms = Kallsyms::load()?;
    let (cfg, _) = build_config(&kbtf, &ksyms, &Options::default());
    let mut ebpf = load_object(&cfg, 1 << 16)?;
    let mut real: HashMap<&'static str, Result<(), String>> = HashMap::new();
    let mut loaded: HashMap<&'static str, Result<(), String>> = HashMap::new();
    let mut hooks = Vec::new();
    let mut floor_shared = HashSet::new();
    for hook in HOOKS {
        let mut rejected = Vec::new();
        let mut alternatives: Vec<&'static [Point]> = Vec::new();
        for alt in hook.alternatives {
            if alt.iter().any(|p| p.mechanism.on_function()) {
                rejected.push(format!(
                    "{}: the floor has no fentry/kprobe programs",
                    alt[0].mechanism
                ));
                continue;
            }
            // The real programs must pass the verifier, as they must in the default mode.
            let mut ok = true;
            for p in alt.iter() {
                let r = real.entry(p.program).or_insert_with(|| {
                    match ebpf.program_mut(p.program) {
                        Some(Program::TracePoint(t)) => t.load(),
                        Some(Program::RawTracePoint(t)) => t.load(),
                        _ => return Err(format!("program {} missing", p.program)),
                    }
                    .map_err(|e| verifier_error(&e))
                });
                if let Err(e) = r {
                    rejected.push(format!("{} {}: {e}", p.mechanism, p.target));
                    ok = false;
                }
            }
            if !ok {
                continue;
            }
            let floor: Vec<Point> = alt
                .iter()
                .filter(|p| needed(p, &cfg))
                .map(|p| Point {
                    program: match p.mechanism {
                        Mechanism::RawTracepoint => "floor_raw",
                        _ => "floor_tp",
                    },
                    ..*p
                })
                .collect();
            alternatives.push(Box::leak(floor.into_boxed_slice()));
        }
        let floor_hook = Hook {
            alternatives: Box::leak(alternatives.into_boxed_slice()),
            ..*hook
        };
        // No partial undo here: `detach_program` would drop every link of the shared floor
        // program, so an alternative is attached point by point and kept only when whole.
        let mut status = attach_floor_hook(
            &mut ebpf,
            &kbtf,
            &floor_hook,
            &mut loaded,
            &mut floor_shared,
        );
        status.notes.splice(0..0, rejected);
        hooks.push(status);
    }
    Ok(Floor { ebpf, hooks })
}

fn attach_floor_hook(
    ebpf: &mut Ebpf,
    kbtf: &KernelBtf,
    hook: &Hook,
    loaded: &mut HashMap<&'static str, Result<(), String>>,
    shared: &mut HashSet<(Mechanism, &'static str)>,
) -> HookStatus {
    let mut status = HookStatus {
        hook: hook.name,
        why: hook.why,
        mechanism: None,
        points: vec![],
        notes: vec![],
        precise: hook.precise,
        spare_loads: vec![],
    };
    'alternatives: for alt in hook.alternatives {
        for p in alt.iter() {
            if let Err(e) = raw_args_match(kbtf, p) {
                status
                    .notes
                    .push(format!("{} {}: {e}", p.mechanism, p.target));
                continue 'alternatives;
            }
        }
        let mut links = vec![];
        for p in alt.iter() {
            // A point another hook attached counts once, as in the default mode.
            if shared.contains(&(p.mechanism, p.target)) {
                continue;
            }
            match floor_attach_point(ebpf, p, loaded) {
                Ok(link) => links.push((p.program, link)),
                Err(e) => {
                    status
                        .notes
                        .push(format!("{} {}: {e}", p.mechanism, p.target));
                    for (prog, link) in links {
                        floor_detach(ebpf, prog, link);
                    }
                    continue 'alternatives;
                }
            }
        }
        shared.extend(alt.iter().map(|p| (p.mechanism, p.target)));
        status.mechanism = alt.first().map(|p| p.mechanism);
        status.points = alt.iter().map(|p| p.target.to_string()).collect();
        break;
    }
    status
}

enum FloorLink {
    Tp(aya::programs::trace_point::TracePointLinkId),
    Raw(aya::programs::raw_trace_point::RawTracePointLinkId),
}

fn floor_attach_point(
    ebpf: &mut Ebpf,
    p: &Point,
    loaded: &mut HashMap<&'static str, Result<(), String>>,
) -> Result<FloorLink, String> {
    let prog = ebpf
        .program_mut(p.program)
        .ok_or_else(|| format!("program {} missing from the object", p.program))?;
    let load = loaded.entry(p.program).or_insert_with(|| {
        match prog {
            Program::TracePoint(t) => t.load(),
            Program::RawTracePoint(t) => t.load(),
            _ => return Err(format!("program {} has an unexpected type", p.program)),
        }
        .map_err(|e| verifier_error(&e))
    });
    load.clone()?;
    match (p.mechanism, prog) {
        (Mechanism::Tracepoint, Program::TracePoint(t)) => {
            let (cat, name) = p.target.split_once('/').expect("category/name");
            if !tracefs::exists(cat, name) {
                return Err(format!(
                    "tracepoint {} does not exist on this kernel",
                    p.target
                ));
            }
            t.attach(cat, name)
                .map(FloorLink::Tp)
                .map_err(|e| format!("attaching {}: {e}", p.target))
        }
        (Mechanism::RawTracepoint, Program::RawTracePoint(t)) => t
            .attach(p.target)
            .map(FloorLink::Raw)
            .map_err(|e| format!("attaching raw {}: {e}", p.target)),
        _ => Err(format!(
            "program {} does not match mechanism {}",
            p.program, p.mechanism
        )),
    }
}

fn floor_detach(ebpf: &mut Ebpf, program: &str, link: FloorLink) {
    match (ebpf.program_mut(program), link) {
        (Some(Program::TracePoint(t)), FloorLink::Tp(id)) => drop(t.detach(id)),
        (Some(Program::RawTracePoint(t)), FloorLink::Raw(id)) => drop(t.detach(id)),
        _ => {}
    }
}

/// A raw tracepoint or tracepoint program by name, for tests and doctor.
pub fn program_names(ebpf: &Ebpf) -> Vec<String> {
    ebpf.programs().map(|(n, _)| n.to_string()).collect()
}

#[allow(dead_code)]
fn _assert_types(_: &RawTracePoint, _: &TracePoint) {}
