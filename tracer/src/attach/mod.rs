//! Loading the eBPF object and attaching every hook the kernel allows, recording for each
//! which mechanism served it or why none could. Dropping `Attached` detaches everything:
//! links are file descriptors owned by this process, nothing is pinned, so not even a
//! crash of the tracer leaves a probe behind.

pub mod args;
pub mod floor;
pub mod hooks;
pub mod syscalls;

pub use floor::{Floor, attach_floor};

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
    attach::hooks::{HOOKS, Hook, HookStatus, Mechanism, Point, SpareLoad, verifier_error},
    kernel::btf::KernelBtf,
    kernel::kallsyms::Kallsyms,
    kernel::layout::{self, Gaps, UringLayout},
    kernel::tracefs,
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
    /// Attach the hooks only allocation tracking needs ([`hooks::ALLOC_ONLY`]) even when it
    /// is off (`tracer doctor`).
    pub alloc_hooks: bool,
}

/// The ring buffer's default size. Its pages are mapped into the tracer at once, and twice
/// (for the wrap-around), so each MiB here is 2 MiB of resident memory. 8 MiB holds about
/// half a second of the heaviest bench workload's records while the reader is busy (it
/// drains every 10 ms); 4 MiB lost 54303 records in the fstests tier beside a busy machine
/// (16 MiB cost 32 MiB of RSS). What does not fit is counted and shown as lost.
pub const DEFAULT_RING_MIB: u32 = 8;

impl Default for Options {
    fn default() -> Self {
        Options {
            all_work: false,
            follow_work: Vec::new(),
            ring_bytes: DEFAULT_RING_MIB << 20,
            alloc: None,
            lock_wait_ms: tracer_fs::locks::DEFAULT_LOCK_WAIT_MS,
            alloc_hooks: false,
        }
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

impl Attached {
    /// Frees aya's parsed kernel BTF (about 18 MiB of heap) once every program that needs
    /// it is loaded (the scans' iterators: a scan that could not load then stays
    /// unavailable), and hands freed heap back to the system, which glibc would keep.
    pub fn release_btf(&mut self) {
        self.btf = aya::Btf::new();
        trim_heap();
    }
}

/// Returns the heap's free memory to the system (glibc's `malloc_trim`).
pub fn trim_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: no preconditions; it only releases free memory.
    unsafe {
        libc::malloc_trim(0);
    }
}

impl Drop for Attached {
    /// Detaching a classic tracepoint (a perf event) waits for RCU grace periods, under the
    /// kernel's `event_mutex`, so those waits follow one another whatever the threads (which
    /// is why the syscall hooks go through `raw_syscalls`); the programs are still unloaded
    /// from a few threads at once, so the rest does not queue behind them. (The object's own
    /// drop then finds nothing left to detach.)
    fn drop(&mut self) {
        let mut progs: Vec<&mut Program> = self.ebpf.programs_mut().map(|(_, p)| p).collect();
        let per_thread = progs.len().div_ceil(DETACH_THREADS).max(1);
        std::thread::scope(|s| {
            for chunk in progs.chunks_mut(per_thread) {
                s.spawn(move || {
                    for p in chunk {
                        let _ = match p {
                            Program::TracePoint(t) => t.unload(),
                            Program::RawTracePoint(t) => t.unload(),
                            Program::KProbe(t) => t.unload(),
                            Program::FEntry(t) => t.unload(),
                            Program::FExit(t) => t.unload(),
                            Program::BtfTracePoint(t) => t.unload(),
                            _ => Ok(()),
                        };
                    }
                });
            }
        });
    }
}

/// Threads that detach at exit (each detach mostly waits).
const DETACH_THREADS: usize = 16;

/// Everything about this kernel the loader needs.
pub fn build_config(kbtf: &KernelBtf, ksyms: &Kallsyms, opts: &Options) -> (Config, Gaps) {
    let (mut cfg, gaps) = btf_config(kbtf, opts);
    symbol_config(&mut cfg, ksyms, opts);
    (cfg, gaps)
}

/// The loader's configuration from the kernel's BTF and tracefs: all but the symbols.
fn btf_config(kbtf: &KernelBtf, opts: &Options) -> (Config, Gaps) {
    let mut cfg = Config::empty();
    cfg.self_tgid = std::process::id();
    cfg.all_work = opts.all_work as u32;
    let gaps = layout::fill_config(&mut cfg, kbtf);
    (cfg, gaps)
}

/// The addresses of the functions the programs compare against, from kallsyms.
fn symbol_config(cfg: &mut Config, ksyms: &Kallsyms, opts: &Options) {
    let addrs: Vec<u64> = followed_work_fns(opts)
        .iter()
        .flat_map(|(name, _)| ksyms.addrs(name))
        .collect();
    if addrs.len() <= cfg.followed_fns.len() {
        cfg.followed_fns[..addrs.len()].copy_from_slice(&addrs);
        cfg.nr_followed_fns = addrs.len() as u32;
    } else {
        cfg.nr_followed_fns = tracer_fs::wire::FOLLOWED_IN_MAP;
    }
    cfg.delayed_work_timer_fn = ksyms
        .addrs("delayed_work_timer_fn")
        .first()
        .copied()
        .unwrap_or(0);
    cfg.fput_callback = ksyms.addrs("____fput").first().copied().unwrap_or(0);
}

/// Loads the object (`btf`: the kernel's, parsed once by the caller; without it aya would
/// parse `/sys/kernel/btf/vmlinux` again itself).
pub fn load_object(cfg: &Config, ring_bytes: u32, btf: Option<&aya::Btf>) -> Result<Ebpf> {
    load_object_with_alloc(cfg, ring_bytes, None, btf)
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
    btf: Option<&aya::Btf>,
) -> Result<Ebpf> {
    let pod = PodConfig(*cfg);
    let empty = AllocConfig::empty();
    let (acfg, entries, stacks, marks) = match alloc {
        Some((a, n)) => (a, n, 4096, tracer_fs::wire::alloc::MARK_CHUNKS),
        None => (&empty, 1, 1, 1),
    };
    let apod = PodAllocConfig(*acfg);
    EbpfLoader::new()
        .btf(btf)
        .override_global("CONFIG", &pod, true)
        .override_global("ALLOC_CONFIG", &apod, true)
        .map_max_entries("EVENTS", ring_bytes)
        .map_max_entries("COUNTERS", crate::stream::counters::entries(cfg.nr_cpus))
        .map_max_entries("OUTSTANDING", entries)
        .map_max_entries("STACKS", stacks)
        .map_max_entries("CALLSITE_STACK", stacks)
        .map_max_entries("MARKS", marks)
        .load(OBJECT)
        .context("loading the eBPF object (creating its maps)")
}

fn aya_btf() -> Result<aya::Btf> {
    aya::Btf::from_sys_fs().context("reading the kernel's BTF for aya")
}

/// Loads the object and attaches every hook it can.
pub fn attach(opts: &Options) -> Result<Attached> {
    tracefs::ensure_mounted()?;
    // kallsyms is read on a thread of its own while the BTF is (each takes over a tenth of
    // a second: the kernel prints kallsyms slowly, and btf-rs scans every type's name per
    // lookup); only what needs addresses waits for it.
    let ksyms = std::thread::spawn(Kallsyms::load);
    // btf-rs's parse of the kernel's BTF is the biggest allocation of the attach (about
    // 40 MiB): all that needs it is read first, and it goes before aya parses the BTF
    // again (about 24 MiB) and loads the object, so the two never peak together.
    let kbtf = KernelBtf::load()?;
    let (mut cfg, gaps) = btf_config(&kbtf, opts);
    let uring = layout::uring_layout(&kbtf);
    let sys_allowed = syscalls::route_allowed(&kbtf);
    let raw = raw_checks(&kbtf, &sys_allowed);
    let needs = Needs::of(&cfg, &kbtf, opts.alloc.is_some());
    cfg.cache_free_twin = needs.cache_free_twin as u32;
    // Allocation tracking needs btf-rs's parse until its programs are loaded; otherwise it
    // goes now, and aya parses while kallsyms is still being read.
    let (kbtf, early_btf) = if opts.alloc.is_some() {
        (Some(kbtf), None)
    } else {
        drop(kbtf);
        trim_heap();
        (None, Some(aya_btf()?))
    };
    let ksyms = ksyms
        .join()
        .map_err(|_| anyhow!("reading /proc/kallsyms panicked"))??;
    symbol_config(&mut cfg, &ksyms, opts);
    let prepared = match (&opts.alloc, &kbtf) {
        (Some(a), Some(kbtf)) => Some(crate::alloc::setup::prepare(a, kbtf, &ksyms)?),
        _ => None,
    };
    let btf = match early_btf {
        Some(b) => b,
        None => aya_btf()?,
    };
    let mut ebpf = load_object_with_alloc(
        &cfg,
        opts.ring_bytes,
        prepared.as_ref().map(|p| (&p.built.config, p.max_entries)),
        Some(&btf),
    )?;
    let alloc = match (prepared, &kbtf) {
        (Some(p), Some(kbtf)) => Some(crate::alloc::setup::finish(
            &mut ebpf, &btf, kbtf, &ksyms, p,
        )?),
        _ => None,
    };
    drop(kbtf);

    let followed = follow_work(&mut ebpf, &ksyms, opts)?;
    mark_merged_caches(&mut ebpf)?;
    let mut loaded = Loaded::new();
    let mut shared = HashSet::new();
    let mut hooks = Vec::new();
    let sys_route = if avoided_mechanisms().contains(&Mechanism::RawSyscalls) {
        Err(format!("{AVOID_ENV} says to avoid raw_syscalls"))
    } else {
        sys_allowed.and_then(|()| syscalls::attach_dispatch(&mut ebpf, &cfg))
    };
    let ctx = HookCtx {
        raw: &raw,
        btf: &btf,
        needs,
        sys_route: &sys_route,
    };
    preload(&mut ebpf, &ctx, opts, &mut loaded);
    for h in HOOKS {
        if !alloc_hook_wanted(h, opts) {
            continue;
        }
        let status = attach_hook(&mut ebpf, &ctx, h, &mut loaded, &mut shared);
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
    // No handler in the dispatch's tables: the two programs would run for nothing.
    let routed = HOOKS
        .iter()
        .flat_map(|h| h.alternatives.iter())
        .flat_map(|a| a.iter())
        .any(|p| p.mechanism == Mechanism::RawSyscalls && shared.contains(&(p.program, p.target)));
    if sys_route.is_ok() && !routed {
        syscalls::detach_dispatch(&mut ebpf);
    }
    Ok(Attached {
        ebpf,
        hooks,
        followed,
        gaps,
        uring,
        kallsyms: ksyms,
        btf,
        alloc,
        lock_wait_ms: opts.lock_wait_ms,
    })
}

/// Marks the slab caches SLUB merged into another (an alias: slabinfo lists it nowhere)
/// as unusable in `CACHES`: no free shows their name, so the programs would otherwise read
/// a cache's name at every slab free in the system, looking for them. Without slabinfo
/// the programs keep looking (a cost, not a loss).
fn mark_merged_caches(ebpf: &mut Ebpf) -> Result<()> {
    use tracer_fs::wire::slab_cache;
    let Ok(names) = crate::kernel::slabinfo::cache_names() else {
        return Ok(());
    };
    let mut caches: BpfArray<_, u64> = BpfArray::try_from(
        ebpf.map_mut("CACHES")
            .ok_or_else(|| anyhow!("no CACHES map"))?,
    )?;
    for (slot, name) in slab_cache::NAMES.iter().enumerate() {
        if !names.contains(*name) {
            caches
                .set(slot as u32, slab_cache::UNUSABLE, 0)
                .context("setting CACHES")?;
        }
    }
    Ok(())
}

/// The work functions followed (by name), and why.
fn followed_work_fns(opts: &Options) -> Vec<(String, u8)> {
    let mut wanted: Vec<(String, u8)> = vec![
        ("delayed_fput".into(), followed::DELAYED_FPUT),
        ("io_fallback_req_func".into(), followed::URING_FALLBACK),
        // Its successor on newer kernels (7.2): the task context's fallback work.
        ("io_tctx_fallback_work".into(), followed::URING_FALLBACK),
        ("io_ring_exit_work".into(), followed::URING_EXIT),
    ];
    wanted.extend(opts.follow_work.iter().map(|n| (n.clone(), followed::USER)));
    wanted
}

/// Fills `FOLLOWED_WORK` (the programs look there when more functions are followed than
/// `Config` holds) and says what is followed.
fn follow_work(ebpf: &mut Ebpf, ksyms: &Kallsyms, opts: &Options) -> Result<Vec<FollowedFn>> {
    let wanted = followed_work_fns(opts);
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
/// What `raw_args_match` says of each raw point of `HOOKS`, by (program, target): read
/// while btf-rs's parse is at hand, so it can go before the object is loaded.
type RawChecks = HashMap<(&'static str, &'static str), Result<(), String>>;

fn raw_checks(kbtf: &KernelBtf, sys_allowed: &Result<(), String>) -> RawChecks {
    HOOKS
        .iter()
        .flat_map(|h| h.alternatives.iter())
        .flat_map(|a| a.iter())
        .filter(|p| !p.raw_args.is_empty())
        .map(|p| {
            (
                (p.program, p.target),
                syscalls::raw_point_allowed(kbtf, p, sys_allowed),
            )
        })
        .collect()
}

pub(crate) fn raw_args_match(kbtf: &KernelBtf, p: &Point) -> Result<(), String> {
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

/// Programs loaded, by (program, function for fentry/fexit): the load of a fentry or fexit
/// program names its function, so one that found no such function (a function renamed in
/// a later kernel) can be tried again on another.
type Loaded = HashMap<(&'static str, &'static str), Result<(), String>>;

/// The key of `p`'s program in [`Loaded`].
fn loaded_key(p: &Point) -> (&'static str, &'static str) {
    let function = match p.mechanism {
        Mechanism::Fentry | Mechanism::Fexit => p.target,
        _ => "",
    };
    (p.program, function)
}

/// Loads (verifies) a program for the point it serves.
fn load_for(prog: &mut Program, p: &Point, btf: &aya::Btf) -> Result<(), String> {
    match prog {
        Program::TracePoint(t) => t.load(),
        Program::RawTracePoint(t) => t.load(),
        Program::FEntry(t) => t.load(p.target, btf),
        Program::FExit(t) => t.load(p.target, btf),
        Program::KProbe(t) => t.load(),
        _ => return Err(format!("program {} has an unexpected type", p.program)),
    }
    .map_err(|e| load_error(p, &e))
}

/// Loads a program (once) for the point it serves.
fn load_program(
    prog: &mut Program,
    p: &Point,
    btf: &aya::Btf,
    loaded: &mut Loaded,
) -> Result<(), String> {
    loaded
        .entry(loaded_key(p))
        .or_insert_with(|| load_for(prog, p, btf))
        .clone()
}

/// Loads, ahead of the attaches and on two threads, the programs of the alternative each
/// hook will try first. Verifying is most of an attach's time (84 loads, about 70 ms by
/// default and twice that with allocation tracking), and the kernel verifies privileged
/// loads in parallel. A program the attach then does not use stays loaded, unattached,
/// until the object goes.
fn preload(ebpf: &mut Ebpf, ctx: &HookCtx, opts: &Options, loaded: &mut Loaded) {
    let avoided = avoided_mechanisms();
    // As the attach goes: not tried, or failing at once without the `raw_syscalls` route.
    let usable = |alt: &[Point]| {
        not_tried(alt, ctx.raw, &avoided).is_none()
            && (ctx.sys_route.is_ok() || alt.iter().all(|p| p.mechanism != Mechanism::RawSyscalls))
    };
    let mut points: Vec<&'static Point> = Vec::new();
    for h in HOOKS.iter().filter(|h| alloc_hook_wanted(h, opts)) {
        let Some(alt) = h.alternatives.iter().find(|a| usable(a)) else {
            continue;
        };
        for p in alt.iter().filter(|p| needed(p, ctx.needs)) {
            // One load per program: a second function of the same program waits for the
            // attach (a program is loaded for one function).
            if !points.iter().any(|q| q.program == p.program) {
                points.push(p);
            }
        }
    }
    let mut work: Vec<(&'static Point, &mut Program)> = Vec::new();
    for (name, prog) in ebpf.programs_mut() {
        if let Some(p) = points.iter().find(|p| p.program == name) {
            work.push((p, prog));
        }
    }
    let queue = std::sync::Mutex::new(work.into_iter());
    let btf = ctx.btf;
    let worker = || {
        let mut done = Vec::new();
        loop {
            // Taken one at a time: program sizes differ by tens of times.
            let next = queue.lock().map(|mut q| q.next()).unwrap_or(None);
            let Some((p, prog)) = next else { break };
            done.push((loaded_key(p), load_for(prog, p, btf)));
        }
        done
    };
    let results = std::thread::scope(|s| {
        let other = s.spawn(worker);
        let mut mine = worker();
        mine.extend(other.join().unwrap_or_default());
        mine
    });
    loaded.extend(results);
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
    loaded: &mut Loaded,
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
        Mechanism::RawSyscalls,
    ];
    let Ok(v) = std::env::var(AVOID_ENV) else {
        return Vec::new();
    };
    let plain = |n: &str| n.trim().replace(['_', '-'], " ");
    v.split(',')
        .filter_map(|n| all.into_iter().find(|m| plain(&m.to_string()) == plain(n)))
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

/// Whether hook `h` is wanted: every hook but those only allocation tracking needs, which
/// are wanted with it (or when asked for).
pub(crate) fn alloc_hook_wanted(h: &Hook, opts: &Options) -> bool {
    !hooks::ALLOC_ONLY.contains(&h.name) || opts.alloc.is_some() || opts.alloc_hooks
}

/// The `kmem_cache_free` program's twin (`free_twin` in the eBPF crate), which does its
/// work for a free that interrupted it (and was skipped).
pub(crate) const CACHE_FREE_TWIN: &str = "raw_kmem_cache_free_twin";

/// What decides which points of a hook's alternative are attached.
#[derive(Clone, Copy)]
pub(crate) struct Needs {
    /// The open family's exits read the path from the saved registers ([`OPEN_ENTRIES`]).
    open_path_from_regs: bool,
    /// Whether a skipped `kmem_cache_free` run can lose anything: with allocation
    /// tracking, or where files are freed by an RCU callback (a `struct file` with an
    /// `f_rcuhead`: before 6.7), whose batch runs in a softirq that can interrupt the
    /// program. From 6.7 a file is freed where `__fput` runs (process context), as are fd
    /// tables and fs_structs, so in the default mode no free that matters comes in an
    /// interrupt, and the twin (a second program on every slab free) is left out.
    cache_free_twin: bool,
}

impl Needs {
    pub(crate) fn of(cfg: &Config, kbtf: &KernelBtf, alloc: bool) -> Needs {
        Needs {
            open_path_from_regs: cfg.btf[tracer_fs::wire::btf_off::PT_REGS_SYSCALL_ARG0]
                != tracer_fs::wire::MISSING_U32,
            cache_free_twin: alloc || files_freed_by_rcu(kbtf),
        }
    }
}

/// Whether this kernel frees a `struct file` through `call_rcu()` (its `f_rcuhead`).
fn files_freed_by_rcu(kbtf: &KernelBtf) -> bool {
    kbtf.offset_of("file", &["f_rcuhead"]).is_ok()
}

/// Whether point `p` is needed.
pub(crate) fn needed(p: &Point, needs: Needs) -> bool {
    !(OPEN_ENTRIES.contains(&p.program) && needs.open_path_from_regs)
        && (p.program != CACHE_FREE_TWIN || needs.cache_free_twin)
}

/// Points already attached, by (program, target): a hook whose alternative includes one
/// shares it instead of attaching it twice (which would double its events).
type Shared = HashSet<(&'static str, &'static str)>;

/// What every hook's attach consults.
struct HookCtx<'a> {
    raw: &'a RawChecks,
    btf: &'a aya::Btf,
    needs: Needs,
    /// Whether the `raw_syscalls` dispatch is attached (`Err`: why not).
    sys_route: &'a Result<(), String>,
}

/// Attaches point `p`: a syscall handler goes into the dispatch table, anything else on
/// its own attach point.
fn attach_any(
    ebpf: &mut Ebpf,
    ctx: &HookCtx,
    p: &Point,
    loaded: &mut Loaded,
) -> Result<(), String> {
    if p.mechanism != Mechanism::RawSyscalls {
        return attach_point(ebpf, p, ctx.btf, loaded);
    }
    ctx.sys_route.clone()?;
    let prog = ebpf
        .program_mut(p.program)
        .ok_or_else(|| format!("program {} missing from the object", p.program))?;
    load_program(prog, p, ctx.btf, loaded)?;
    syscalls::set(ebpf, p)
}

/// Why alternative `alt` is not tried, if it is not: a mechanism the environment says to
/// avoid, or a raw tracepoint whose arguments this kernel's BTF does not confirm.
fn not_tried(alt: &[Point], raw: &RawChecks, avoided: &[Mechanism]) -> Option<String> {
    if let Some(p) = alt.iter().find(|p| avoided.contains(&p.mechanism)) {
        return Some(format!(
            "{} {}: not tried ({AVOID_ENV} says to avoid {})",
            p.mechanism, p.target, p.mechanism
        ));
    }
    alt.iter()
        .find_map(|p| match raw.get(&(p.program, p.target)) {
            Some(Err(e)) => Some(format!("{} {}: {e}", p.mechanism, p.target)),
            _ => None,
        })
}

fn attach_hook(
    ebpf: &mut Ebpf,
    ctx: &HookCtx,
    hook: &Hook,
    loaded: &mut Loaded,
    shared: &mut Shared,
) -> HookStatus {
    let raw = ctx.raw;
    let mut status = HookStatus::unserved(hook);
    let avoided = avoided_mechanisms();
    'alternatives: for alt in hook.alternatives {
        if let Some(why) = not_tried(alt, raw, &avoided) {
            status.notes.push(why);
            continue;
        }
        // Attach the whole alternative or none of it: a partial one would mislead.
        let mut points = vec![];
        let mut fresh = vec![];
        for p in alt.iter().filter(|p| needed(p, ctx.needs)) {
            if shared.contains(&(p.program, p.target)) {
                points.push(p.target.to_string());
                continue;
            }
            match attach_any(ebpf, ctx, p, loaded) {
                Ok(()) => {
                    points.push(p.target.to_string());
                    fresh.push(p);
                }
                Err(e) => {
                    status
                        .notes
                        .push(format!("{} {}: {e}", p.mechanism, p.target));
                    for p in fresh {
                        match p.mechanism {
                            Mechanism::RawSyscalls => syscalls::unset(ebpf, p),
                            _ => detach_program(ebpf, p.program),
                        }
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
    let mut loaded = Loaded::new();
    for (hook, status) in HOOKS.iter().zip(att.hooks.iter_mut()) {
        let Some(chosen) = status.mechanism.filter(|m| m.on_function()) else {
            continue; // every function-level alternative was tried: the notes say why
        };
        // The alternatives after the chosen one were never tried.
        let is_chosen = |a: &&&[Point]| {
            a.first().is_some_and(|p| {
                p.mechanism == chosen && status.points.iter().any(|t| t == p.target)
            })
        };
        let rest = hook
            .alternatives
            .iter()
            .skip_while(|a| !is_chosen(a))
            .skip(1);
        for p in rest.flat_map(|a| a.iter()) {
            // Nor are a function this kernel does not have (the name of another version).
            if !p.mechanism.on_function() || att.kallsyms.addrs(p.target).is_empty() {
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
    run_iter(
        ebpf,
        btf,
        crate::attach::hooks::SNAPSHOT_PROGRAM,
        "task_file",
    )
}

/// Runs the `task` iterator (`task_scan`) once and returns the raw records it wrote.
pub fn task_scan(ebpf: &mut Ebpf, btf: &aya::Btf) -> Result<Vec<u8>> {
    run_iter(ebpf, btf, crate::attach::hooks::TASK_SCAN_PROGRAM, "task")
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
    run_iter(
        ebpf,
        btf,
        crate::attach::hooks::VMA_SCAN_PROGRAM,
        "task_vma",
    )
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

/// A raw tracepoint or tracepoint program by name, for tests and doctor.
pub fn program_names(ebpf: &Ebpf) -> Vec<String> {
    ebpf.programs().map(|(n, _)| n.to_string()).collect()
}

#[allow(dead_code)]
fn _assert_types(_: &RawTracePoint, _: &TracePoint) {}
