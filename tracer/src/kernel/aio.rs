//! Linux AIO at a failed umount: the kernel-side counts (`AIO_TASKS`, see the eBPF
//! crate's aio.rs) of the processes with an AIO context, read now: those with requests
//! not reaped, and the others too (a dying one waits in exit_aio() for its contexts'
//! teardown even with nothing in flight, which the verdict tells apart).

use anyhow::{Context, Result};
use aya::maps::{HashMap as BpfHashMap, MapData};
use tracer_fs::{
    event::{AioFile, AioTask},
    wire::AioAcct,
};

/// `AioAcct` as aya's plain-old-data map value.
#[derive(Clone, Copy)]
#[repr(transparent)]
pub struct PodAio(pub AioAcct);
// SAFETY: `AioAcct` is `repr(C)`, `Copy`, made of integers.
unsafe impl aya::Pod for PodAio {}

/// Processes listed per scan at most.
const MAX_LISTED: usize = 256;

/// The processes with an AIO context, those with requests not reaped first. Entries of
/// processes that are gone (no `/proc/<tgid>`) are deleted: their requests went with
/// their exit.
pub fn counts(ebpf: &mut aya::Ebpf) -> Result<Vec<AioTask>> {
    let map = ebpf.map_mut("AIO_TASKS").context("no AIO_TASKS map")?;
    let mut m: BpfHashMap<&mut MapData, u32, PodAio> = BpfHashMap::try_from(map)?;
    let mut out = Vec::new();
    let mut gone = Vec::new();
    for (tgid, PodAio(a)) in m.iter().flatten() {
        if !std::path::Path::new(&format!("/proc/{tgid}")).exists() {
            gone.push(tgid);
            continue;
        }
        {
            out.push(AioTask {
                tgid,
                ctx: a.ctx,
                submitted: a.submitted,
                reaped: a.reaped,
                last_submit_ns: a.last_submit_ns,
                files: a
                    .files
                    .iter()
                    .zip(a.mnt_ids)
                    .filter(|(f, _)| **f != 0)
                    .map(|(f, mnt_id)| AioFile { file: *f, mnt_id })
                    .collect(),
            });
        }
    }
    for tgid in gone {
        let _ = m.remove(&tgid);
    }
    out.sort_by_key(|t| std::cmp::Reverse(t.unreaped()));
    out.truncate(MAX_LISTED);
    Ok(out)
}
