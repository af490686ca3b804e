//! Allocation tracking's part of the attach: before the object is loaded, the in-kernel
//! filter and the kfree_rcu() layout ([`prepare`]); after, the kfree_rcu(), percpu and
//! reachability programs and the tracking maps taken out of the object ([`finish`]).
//! `attach::attach` calls the two around `load_object_with_alloc`.

use anyhow::{Result, anyhow};
use aya::Ebpf;

use super::{
    AllocOptions,
    filter::{self, Built, FilterSummary},
    percpu, rcu, reach,
    symbols::SymTable,
    tracker::AllocMaps,
};
use crate::{kernel::btf::KernelBtf, kernel::kallsyms::Kallsyms};

/// What the loader needs of allocation tracking, and what [`finish`] needs after the load.
pub struct Prepared {
    /// `--alloc-max-entries`: the size of the map of outstanding allocations.
    pub max_entries: u32,
    /// The filter: its config goes into the object, its summary into the reports.
    pub built: Built,
    syms: SymTable,
}

/// Builds the filter and reads the kfree_rcu() layout.
pub fn prepare(a: &AllocOptions, kbtf: &KernelBtf, ksyms: &Kallsyms) -> Result<Prepared> {
    // One kallsyms read serves the attach and the allocation backtraces.
    let syms = SymTable::from_kallsyms(ksyms.clone());
    let mut b = filter::build(a, &syms)?;
    match rcu::layout(kbtf, ksyms) {
        Ok(l) => b.config.rcu = l,
        Err(e) => b.summary.notes.push(format!(
            "kfree_rcu() queues not followed ({e:#}): objects freed through them \
             stay listed until their address is reused"
        )),
    }
    Ok(Prepared {
        max_entries: a.max_entries,
        built: b,
        syms,
    })
}

/// With the object loaded: loads and attaches the programs of allocation tracking (what
/// fails is a note in the summary) and takes the tracking maps out of the object.
pub fn finish(
    ebpf: &mut Ebpf,
    btf: &aya::Btf,
    kbtf: &KernelBtf,
    ksyms: &Kallsyms,
    p: Prepared,
) -> Result<AllocMaps> {
    let Prepared {
        built: mut b, syms, ..
    } = p;
    let rcu = if b.config.rcu.kfree_rcu_work != 0 {
        match rcu::RcuScan::load(ebpf, btf, &b.config.rcu) {
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
    if b.config.rcu.kfree_rcu_work != 0
        && let Err(e) = rcu::attach_shrink_hook(ebpf, &b.config.rcu)
    {
        b.summary.notes.push(format!(
            "kfree_rcu() queues drained by its shrinker (memory pressure, drop_caches) are \
             not read first ({e:#}): objects freed there stay listed until their address \
             is reused"
        ));
    }
    match rcu::attach_call_hook(ebpf, btf) {
        Ok(m) => b.summary.notes.push(format!(
            "kfree_rcu() objects are forgotten at kvfree_call_rcu ({m})"
        )),
        Err(e) => b.summary.notes.push(format!(
            "kfree_rcu() objects are seen only in kfree_rcu()'s queues, not in slab \
             sheaves (kernels from 7.x put them there): {e:#}"
        )),
    }
    if let Err(e) = percpu::attach(ebpf, kbtf) {
        b.summary
            .notes
            .push(format!("percpu allocations are not tracked: {e:#}"));
    }
    let reach = reach::GlobalScan::load(ebpf, btf, kbtf, ksyms).map_err(|e| format!("{e:#}"));
    if let Ok(r) = &reach {
        b.summary.notes.push(r.ready.clone());
    }
    if let Err(e) = &reach {
        b.summary.notes.push(format!(
            "reachability is not scanned ({e}): objects held by global data are judged \
             by the cycle rule alone"
        ));
    }
    let mut maps = take_maps(ebpf, b.summary, syms)?;
    maps.rcu = rcu;
    maps.reach = reach;
    Ok(maps)
}

/// Takes the tracking maps out of the object.
fn take_maps(ebpf: &mut Ebpf, summary: FilterSummary, syms: SymTable) -> Result<AllocMaps> {
    let mut take = |name: &str| {
        ebpf.take_map(name)
            .ok_or_else(|| anyhow!("no {name} map in the object"))
    };
    Ok(AllocMaps {
        outstanding: aya::maps::HashMap::try_from(take("OUTSTANDING")?)?,
        batch_reads: true,
        stacks: aya::maps::StackTraceMap::try_from(take("STACKS")?)?,
        cache_names: aya::maps::HashMap::try_from(take("CACHE_NAMES")?)?,
        summary,
        syms,
        rcu: None,
        reach: Err("not loaded".into()),
    })
}
