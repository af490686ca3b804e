//! Linux AIO at a failed umount: the kernel-side counts (`AIO_TASKS`, see the eBPF
//! crate's aio.rs) of every process with requests submitted and not reaped, read now.

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

/// The processes with requests not reaped. Entries of processes that are gone (no
/// `/proc/<tgid>`) are deleted: their requests went with their exit.
pub fn unreaped(ebpf: &mut aya::Ebpf) -> Result<Vec<AioTask>> {
    let map = ebpf.map_mut("AIO_TASKS").context("no AIO_TASKS map")?;
    let mut m: BpfHashMap<&mut MapData, u32, PodAio> = BpfHashMap::try_from(map)?;
    let mut out = Vec::new();
    let mut gone = Vec::new();
    for (tgid, PodAio(a)) in m.iter().flatten() {
        if a.submitted <= a.reaped {
            continue;
        }
        if !std::path::Path::new(&format!("/proc/{tgid}")).exists() {
            gone.push(tgid);
            continue;
        }
        if out.len() < MAX_LISTED {
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
    Ok(out)
}
