//! `tracer doctor`: what this kernel lets the tracer do, found by trying for real (loading
//! and attaching tiny programs), and which mechanism serves each hook.

use anyhow::Result;
use aya::programs::{BtfTracePoint, FEntry, Iter, KProbe, RawTracePoint, TracePoint};
use serde::Serialize;

use crate::{
    attach::hooks::HookStatus,
    attach::{self, Options},
    kernel::btf::KernelBtf,
    kernel::kallsyms::Kallsyms,
    kernel::tracefs,
};

#[derive(Debug, Clone, Serialize)]
pub struct Capability {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub kernel: String,
    pub capabilities: Vec<Capability>,
    pub hooks: Vec<HookStatus>,
    /// Tracepoint fields and kernel structure members (read from BTF) the programs would
    /// read and this kernel does not have: what the attach does without.
    pub missing_tracepoint_fields: Vec<String>,
    pub missing_btf_members: Vec<String>,
    /// Whether `tracer attach` can run at all here.
    pub can_run: bool,
}

impl Report {
    pub fn capability(&self, name: &str) -> Option<&Capability> {
        self.capabilities.iter().find(|c| c.name == name)
    }
}

pub const ROOT: &str = "root";
pub const BTF: &str = "BTF";
pub const TRACEFS: &str = "tracefs";
pub const RINGBUF: &str = "ring buffer";
pub const TRACEPOINT: &str = "tracepoints";
pub const RAW_TRACEPOINT: &str = "raw tracepoints";
pub const TP_BTF: &str = "BTF tracepoints (tp_btf)";
pub const ITERATOR: &str = "BPF iterators";
pub const KPROBE: &str = "kprobes";
pub const FENTRY: &str = "fentry/fexit";

fn cap(name: &'static str, r: Result<String, String>) -> Capability {
    match r {
        Ok(detail) => Capability {
            name,
            ok: true,
            detail,
        },
        Err(detail) => Capability {
            name,
            ok: false,
            detail,
        },
    }
}

pub fn run() -> Report {
    let mut caps = Vec::new();
    // SAFETY: no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    caps.push(cap(
        ROOT,
        if root {
            Ok("running as root".into())
        } else {
            Err("not root: loading eBPF needs root".into())
        },
    ));
    let kbtf = KernelBtf::load();
    caps.push(cap(
        BTF,
        kbtf.as_ref()
            .map(|_| kernel_btf_path())
            .map_err(|e| format!("{e:#}")),
    ));
    caps.push(cap(
        TRACEFS,
        tracefs::ensure_mounted()
            .map(|m| {
                if m.is_empty() {
                    "mounted".into()
                } else {
                    format!("mounted by tracer: {}", m.join(", "))
                }
            })
            .map_err(|e| format!("{e:#}")),
    ));
    let mut hooks = Vec::new();
    let mut gaps = crate::kernel::layout::Gaps::default();
    let (Ok(kbtf), true) = (kbtf, root) else {
        return finish(caps, hooks);
    };
    let ksyms = Kallsyms::load().unwrap_or_default();
    let (cfg, _) = attach::build_config(&kbtf, &ksyms, &Options::default());
    let btf = aya::Btf::from_sys_fs().ok();
    match attach::load_object(&cfg, 1 << 16, btf.as_ref()) {
        Ok(mut ebpf) => {
            caps.push(cap(RINGBUF, Ok("BPF_MAP_TYPE_RINGBUF created".into())));
            caps.push(cap(TRACEPOINT, try_tracepoint(&mut ebpf)));
            caps.push(cap(RAW_TRACEPOINT, try_raw(&mut ebpf)));
            caps.push(cap(
                TP_BTF,
                btf.as_ref()
                    .ok_or("no BTF".into())
                    .and_then(|b| try_tp_btf(&mut ebpf, b)),
            ));
            caps.push(cap(
                ITERATOR,
                btf.as_ref()
                    .ok_or("no BTF".into())
                    .and_then(|b| try_iter(&mut ebpf, b)),
            ));
            caps.push(cap(KPROBE, try_kprobe(&mut ebpf)));
            caps.push(cap(
                FENTRY,
                btf.as_ref()
                    .ok_or("no BTF".into())
                    .and_then(|b| try_fentry(&mut ebpf, b)),
            ));
        }
        Err(e) => caps.push(cap(RINGBUF, Err(format!("{e:#}")))),
    }
    // The hooks: what a real attach gets (then detached again when dropped).
    if let Ok(mut att) = attach::attach(&Options {
        ring_bytes: 1 << 16,
        alloc_hooks: true,
        ..Options::default()
    }) {
        attach::load_spares(&mut att);
        hooks = att.hooks.clone();
        gaps = att.gaps.clone();
        let kprobe_ok = caps.iter().any(|c| c.name == KPROBE && c.ok);
        let fentry_ok = caps.iter().any(|c| c.name == FENTRY && c.ok);
        for h in hooks
            .iter_mut()
            .filter(|h| !h.live() || h.precise && !h.mechanism.is_some_and(|m| m.on_function()))
        {
            h.notes.push(format!(
                "this kernel allows: fentry {}, kprobe {}",
                if fentry_ok { "yes" } else { "no" },
                if kprobe_ok { "yes" } else { "no" }
            ));
        }
    }
    let mut report = finish(caps, hooks);
    report.missing_tracepoint_fields = gaps.tp_fields;
    report.missing_btf_members = gaps.btf_members;
    report
}

fn kernel_btf_path() -> String {
    crate::kernel::btf::VMLINUX_BTF.to_string()
}

fn finish(capabilities: Vec<Capability>, hooks: Vec<HookStatus>) -> Report {
    let ok = |n: &str| capabilities.iter().any(|c| c.name == n && c.ok);
    let can_run = ok(ROOT) && ok(BTF) && ok(TRACEFS) && ok(RINGBUF) && ok(TRACEPOINT);
    Report {
        kernel: crate::kernel::uname::kernel_line().unwrap_or_else(|| "unknown".into()),
        capabilities,
        hooks,
        missing_tracepoint_fields: vec![],
        missing_btf_members: vec![],
        can_run,
    }
}

fn e<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> String + '_ {
    move |err| format!("{what}: {err}")
}

fn try_tracepoint(ebpf: &mut aya::Ebpf) -> Result<String, String> {
    let p: &mut TracePoint = ebpf
        .program_mut("sched_process_exit")
        .ok_or("missing")?
        .try_into()
        .map_err(e("type"))?;
    p.load().map_err(e("load"))?;
    let id = p
        .attach("sched", "sched_process_exit")
        .map_err(e("attach sched/sched_process_exit"))?;
    p.detach(id).map_err(e("detach"))?;
    Ok("attached to sched/sched_process_exit".into())
}

fn try_raw(ebpf: &mut aya::Ebpf) -> Result<String, String> {
    let p: &mut RawTracePoint = ebpf
        .program_mut("raw_kfree")
        .ok_or("missing")?
        .try_into()
        .map_err(e("type"))?;
    p.load().map_err(e("load"))?;
    let id = p.attach("kfree").map_err(e("attach raw_tp kfree"))?;
    p.detach(id).map_err(e("detach"))?;
    Ok("attached to kfree".into())
}

fn try_tp_btf(ebpf: &mut aya::Ebpf, btf: &aya::Btf) -> Result<String, String> {
    let p: &mut BtfTracePoint = ebpf
        .program_mut("doctor_tp_btf")
        .ok_or("missing")?
        .try_into()
        .map_err(e("type"))?;
    p.load("sched_process_exit", btf).map_err(e("load"))?;
    let id = p.attach().map_err(e("attach tp_btf/sched_process_exit"))?;
    p.detach(id).map_err(e("detach"))?;
    Ok("attached to tp_btf/sched_process_exit".into())
}

fn try_iter(ebpf: &mut aya::Ebpf, btf: &aya::Btf) -> Result<String, String> {
    let p: &mut Iter = ebpf
        .program_mut(crate::attach::hooks::SNAPSHOT_PROGRAM)
        .ok_or("missing")?
        .try_into()
        .map_err(e("type"))?;
    p.load("task_file", btf).map_err(e("load"))?;
    let id = p.attach().map_err(e("attach iter/task_file"))?;
    p.detach(id).map_err(e("detach"))?;
    Ok("iter/task_file loaded and attached".into())
}

fn try_kprobe(ebpf: &mut aya::Ebpf) -> Result<String, String> {
    let p: &mut KProbe = ebpf
        .program_mut("doctor_kprobe")
        .ok_or("missing")?
        .try_into()
        .map_err(e("type"))?;
    p.load().map_err(e("load"))?;
    let id = p.attach("fput", 0).map_err(|err| {
        let msg = format!("{err}");
        if msg.contains("kprobe/type") {
            "no kprobe PMU (/sys/bus/event_source/devices/kprobe is missing: a kernel without \
             CONFIG_KPROBES)"
                .to_string()
        } else {
            format!("attach kprobe fput: {msg}")
        }
    })?;
    p.detach(id).map_err(e("detach"))?;
    Ok("attached to fput".into())
}

fn try_fentry(ebpf: &mut aya::Ebpf, btf: &aya::Btf) -> Result<String, String> {
    let p: &mut FEntry = ebpf
        .program_mut("doctor_fentry")
        .ok_or("missing")?
        .try_into()
        .map_err(e("type"))?;
    p.load("fput", btf).map_err(|err| {
        let msg = format!("{err}");
        let msg = msg
            .split(". Verifier output")
            .next()
            .unwrap_or(&msg)
            .to_string();
        format!("loading fentry/fput: {msg}")
    })?;
    let id = p.attach().map_err(e("attach fentry/fput"))?;
    p.detach(id).map_err(e("detach"))?;
    Ok("attached to fput".into())
}

pub fn print_human(r: &Report) {
    println!("tracer doctor: {}", r.kernel);
    println!();
    println!("Kernel features (probed by loading and attaching tiny programs):");
    for c in &r.capabilities {
        let first = c.detail.lines().next().unwrap_or("");
        println!(
            "  {:<26} {:<4} {}",
            c.name,
            if c.ok { "yes" } else { "no" },
            first
        );
    }
    println!();
    println!("Hooks:");
    println!("  {:<24} {:<16} WHERE / WHY NOT", "HOOK", "SERVED BY");
    for h in &r.hooks {
        let by = h
            .mechanism
            .map(|m| m.to_string())
            .unwrap_or_else(|| "none".into());
        let detail = if h.live() {
            h.points.join(", ")
        } else {
            h.notes.join("; ")
        };
        println!("  {:<24} {:<16} {}", h.hook, by, detail);
        if h.live() {
            for n in &h.notes {
                println!("  {:<24} {:<16} (fell back: {n})", "", "");
            }
        }
        for l in &h.spare_loads {
            println!(
                "  {:<24} {:<16} (unused {} program {}: {})",
                "",
                "",
                l.mechanism,
                l.program,
                if l.ok {
                    "passes the verifier"
                } else {
                    "REJECTED"
                }
            );
            if !l.ok {
                for line in l.detail.lines().take(3) {
                    println!("  {:<24} {:<16}   {line}", "", "");
                }
            }
        }
    }
    for (what, gaps) in [
        ("tracepoint field", &r.missing_tracepoint_fields),
        ("kernel structure member", &r.missing_btf_members),
    ] {
        for g in gaps {
            println!("Missing {what} (done without): {g}");
        }
    }
    let live = r.hooks.iter().filter(|h| h.live()).count();
    println!();
    println!(
        "tracer can run: {} ({live} of {} hooks live)",
        if r.can_run { "yes" } else { "no" },
        r.hooks.len()
    );
}
