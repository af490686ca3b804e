//! Following `kfree_rcu()`'s queues (see `tracer-ebpf/src/alloc_rcu.rs`): their layout
//! from the running kernel's BTF and kallsyms, and the on-demand scan userspace runs before
//! a leak report.

use anyhow::{Context, Result, anyhow, bail};
use aya::Ebpf;
use tracer_fs::wire::alloc::RcuLayout;

use super::iter::IterProgram;
use crate::{kernel::btf::KernelBtf, kernel::kallsyms::Kallsyms};

pub const SCAN_PROGRAM: &str = "alloc_rcu_scan";

fn unique_addr(ksyms: &Kallsyms, name: &str) -> Result<u64> {
    match ksyms.addrs(name).as_slice() {
        [a] => Ok(*a),
        [] => bail!("kallsyms has no {name}"),
        _ => bail!("kallsyms has several {name}"),
    }
}

/// The layout of kfree_rcu()'s per-CPU queues on this kernel (6.1 to 6.18 share it: the
/// pages are `kvfree_rcu_bulk_data` on a `list_head`); an error says what is missing.
pub fn layout(btf: &KernelBtf, ksyms: &Kallsyms) -> Result<RcuLayout> {
    let krw = "kfree_rcu_cpu_work";
    let krc = "kfree_rcu_cpu";
    let bnode = "kvfree_rcu_bulk_data";
    let l = RcuLayout {
        kfree_rcu_work: unique_addr(ksyms, "kfree_rcu_work")?,
        kfree_rcu_monitor: unique_addr(ksyms, "kfree_rcu_monitor")?,
        krw_work: btf.offset_of(krw, &["rcu_work", "work"])?,
        krw_head_free: btf.offset_of(krw, &["head_free"])?,
        krw_bulk_head_free: btf.offset_of(krw, &["bulk_head_free"])?,
        krw_krcp: btf.offset_of(krw, &["krcp"])?,
        krw_size: btf.struct_size(krw)?,
        krcp_monitor_work: btf.offset_of(krc, &["monitor_work", "work"])?,
        krcp_head: btf.offset_of(krc, &["head"])?,
        krcp_bulk_head: btf.offset_of(krc, &["bulk_head"])?,
        krcp_krw_arr: btf.offset_of(krc, &["krw_arr"])?,
        channels: btf.array_len(krc, "bulk_head")?,
        batches: btf.array_len(krc, "krw_arr")?,
        bnode_list: btf.offset_of(bnode, &["list"])?,
        bnode_nr_records: btf.offset_of(bnode, &["nr_records"])?,
        bnode_records: btf.offset_of(bnode, &["records"])?,
        rcu_head_next: btf.offset_of("callback_head", &["next"])?,
        rcu_head_func: btf.offset_of("callback_head", &["func"])?,
        // Optional: without them the shrinker's direct drain is not followed (a note says so).
        kfree_rcu_shrink_scan: unique_addr(ksyms, "kfree_rcu_shrink_scan").unwrap_or(0),
        shrinker_scan_objects: btf.offset_of("shrinker", &["scan_objects"]).unwrap_or(0),
        krc_pcpu: btf.percpu_var_offset("krc").unwrap_or(0),
    };
    if btf.array_len(krw, "bulk_head_free")? != l.channels {
        bail!("kfree_rcu_cpu_work.bulk_head_free and kfree_rcu_cpu.bulk_head differ in size");
    }
    Ok(l)
}

/// The scan program, loaded; each `scan()` runs it once.
pub struct RcuScan {
    prog: IterProgram,
    /// Every CPU's queues are found from its per-CPU area (`krc` in the per-CPU section's
    /// BTF), learnt at the first work item the CPU runs; else only once its monitor is
    /// armed or runs (up to 5 s after the attach).
    pub per_cpu_known: bool,
}

impl RcuScan {
    pub fn load(ebpf: &mut Ebpf, btf: &aya::Btf, l: &RcuLayout) -> Result<Self> {
        let s = RcuScan {
            prog: IterProgram::load(ebpf, btf, SCAN_PROGRAM, "bpf_map")?,
            per_cpu_known: l.krc_pcpu != 0,
        };
        s.scan().context("a first kfree_rcu() queue scan")?;
        Ok(s)
    }

    /// Runs the scan once: every kfree_rcu() queue seen so far is read and the tracked
    /// objects in it are forgotten.
    pub fn scan(&self) -> Result<()> {
        self.prog.run().map(|_| ())
    }
}

pub const SHRINK_PROGRAM: &str = "raw_mm_shrink_slab_start";

/// Attaches the program at `vmscan/mm_shrink_slab_start` that reads kfree_rcu()'s queues
/// when its shrinker is about to drain them: `kfree_rcu_shrink_scan()` calls
/// `kfree_rcu_monitor()` directly, so the monitor's work-start walk does not run, and the
/// pages whose grace period is over are freed in bulk right there (under memory pressure,
/// or at `drop_caches`). An error says why it could not be.
pub fn attach_shrink_hook(ebpf: &mut Ebpf, l: &RcuLayout) -> Result<()> {
    if l.kfree_rcu_shrink_scan == 0 || l.shrinker_scan_objects == 0 {
        bail!("kallsyms has no kfree_rcu_shrink_scan, or BTF no shrinker.scan_objects");
    }
    let p: &mut aya::programs::RawTracePoint = ebpf
        .program_mut(SHRINK_PROGRAM)
        .ok_or_else(|| anyhow!("{SHRINK_PROGRAM} missing from the object"))?
        .try_into()?;
    p.load()
        .map_err(|e| anyhow!("{}", crate::attach::hooks::verifier_error(&e)))?;
    p.attach("mm_shrink_slab_start")?;
    Ok(())
}

/// Attaches the `kvfree_call_rcu()` hook (fentry, else kprobe; `tracer-ebpf/src/alloc_rcu.rs`)
/// that sees objects given to `kfree_rcu()` where the queues do not hold them (7.x's slab
/// sheaves); the mechanism it got, or why neither could be used (a tracepoint-only kernel:
/// the queue walks are all there is, and sheaves, where the kernel uses them, are missed).
pub fn attach_call_hook(ebpf: &mut Ebpf, btf: &aya::Btf) -> Result<&'static str> {
    const FUNCTION: &str = "kvfree_call_rcu";
    let fentry = (|| -> Result<()> {
        let p: &mut aya::programs::FEntry = ebpf
            .program_mut("fentry_kvfree_call_rcu")
            .ok_or_else(|| anyhow!("fentry_kvfree_call_rcu missing from the object"))?
            .try_into()?;
        p.load(FUNCTION, btf)
            .map_err(|e| anyhow!("{}", crate::attach::hooks::verifier_error(&e)))?;
        p.attach()?;
        Ok(())
    })();
    let Err(fentry_err) = fentry else {
        return Ok("fentry");
    };
    let kprobe = (|| -> Result<()> {
        let p: &mut aya::programs::KProbe = ebpf
            .program_mut("kprobe_kvfree_call_rcu")
            .ok_or_else(|| anyhow!("kprobe_kvfree_call_rcu missing from the object"))?
            .try_into()?;
        p.load()
            .map_err(|e| anyhow!("{}", crate::attach::hooks::verifier_error(&e)))?;
        p.attach(FUNCTION, 0)?;
        Ok(())
    })();
    match kprobe {
        Ok(()) => Ok("kprobe"),
        Err(kprobe_err) => {
            bail!("fentry {FUNCTION}: {fentry_err:#}; kprobe {FUNCTION}: {kprobe_err:#}")
        }
    }
}
