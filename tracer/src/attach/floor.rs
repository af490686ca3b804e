//! The benchmarks' floor (`tracer attach --floor`): the cost of the attach points alone,
//! with count-only programs where the real ones would run.

use std::collections::{HashMap, HashSet};

use anyhow::{Context, Result};
use aya::{Ebpf, programs::Program};

use super::{Needs, Options, build_config, load_object, needed, syscalls};
use crate::{
    attach::hooks::{HOOKS, Hook, HookStatus, Mechanism, Point, verifier_error},
    kernel::{btf::KernelBtf, kallsyms::Kallsyms, tracefs},
};

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
    let needs = Needs::of(&cfg, &kbtf, false);
    let btf = aya::Btf::from_sys_fs().context("reading the kernel's BTF for aya")?;
    let mut ebpf = load_object(&cfg, 1 << 16, Some(&btf))?;
    let mut real: HashMap<&'static str, Result<(), String>> = HashMap::new();
    let mut loaded: HashMap<&'static str, Result<(), String>> = HashMap::new();
    let mut hooks = Vec::new();
    let mut floor_shared = HashSet::new();
    // The dispatch programs themselves, with `floor_raw` in their tables.
    let sys_allowed = syscalls::route_allowed(&kbtf);
    let sys_route = sys_allowed
        .clone()
        .and_then(|()| syscalls::attach_dispatch(&mut ebpf, &cfg));
    for hook in HOOKS {
        // The same hooks as the default mode's.
        if !super::alloc_hook_wanted(hook, &Options::default()) {
            continue;
        }
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
                .filter(|p| needed(p, needs))
                .map(|p| Point {
                    program: match p.mechanism {
                        Mechanism::RawTracepoint | Mechanism::RawSyscalls => "floor_raw",
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
            (&sys_allowed, &sys_route),
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
    (sys_allowed, sys_route): (&Result<(), String>, &Result<(), String>),
    hook: &Hook,
    loaded: &mut HashMap<&'static str, Result<(), String>>,
    shared: &mut HashSet<(Mechanism, &'static str)>,
) -> HookStatus {
    let mut status = HookStatus::unserved(hook);
    'alternatives: for alt in hook.alternatives {
        for p in alt.iter() {
            if let Err(e) = syscalls::raw_point_allowed(kbtf, p, sys_allowed) {
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
            match floor_attach_point(ebpf, p, loaded, sys_route) {
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
    /// An entry of a `raw_syscalls` dispatch table.
    Sys(Point),
}

fn floor_attach_point(
    ebpf: &mut Ebpf,
    p: &Point,
    loaded: &mut HashMap<&'static str, Result<(), String>>,
    sys_route: &Result<(), String>,
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
        (Mechanism::RawSyscalls, Program::RawTracePoint(_)) => {
            sys_route.clone()?;
            syscalls::set(ebpf, p).map(|()| FloorLink::Sys(*p))
        }
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
        (_, FloorLink::Sys(p)) => syscalls::unset(ebpf, &p),
        _ => {}
    }
}
