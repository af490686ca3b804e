//! Following `kfree_rcu()`'s queues (see `tracer-ebpf/src/alloc_rcu.rs`): their layout
//! from the running kernel's BTF and kallsyms, and the on-demand scan userspace runs before
//! a leak report.

use std::{
    io::Read,
    os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd},
};

use anyhow::{Context, Result, anyhow, bail};
use aya::{Ebpf, programs::Iter};
use tracer_fs::wire::alloc::RcuLayout;

use crate::{kallsyms::Kallsyms, kernel_btf::KernelBtf};

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
    };
    if btf.array_len(krw, "bulk_head_free")? != l.channels {
        bail!("kfree_rcu_cpu_work.bulk_head_free and kfree_rcu_cpu.bulk_head differ in size");
    }
    Ok(l)
}

/// The scan program, loaded; each `scan()` runs it once (a new iterator link each time).
pub struct RcuScan {
    prog: OwnedFd,
}

const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_ITER_CREATE: libc::c_long = 33;
const BPF_TRACE_ITER: u32 = 28;

fn bpf(cmd: libc::c_long, attr: &mut [u64; 8]) -> std::io::Result<OwnedFd> {
    // SAFETY: `attr` is a zeroed `union bpf_attr` prefix large enough for both commands.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.as_mut_ptr(),
            std::mem::size_of_val(attr),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just gave us this descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

impl RcuScan {
    pub fn load(ebpf: &mut Ebpf, btf: &aya::Btf) -> Result<Self> {
        let prog: &mut Iter = ebpf
            .program_mut(SCAN_PROGRAM)
            .ok_or_else(|| anyhow!("{SCAN_PROGRAM} missing from the object"))?
            .try_into()?;
        prog.load("bpf_map", btf).map_err(|e| {
            anyhow!(
                "loading {SCAN_PROGRAM}: {}",
                crate::attach::verifier_error(&e)
            )
        })?;
        let fd = prog.fd()?.as_fd().try_clone_to_owned()?;
        let s = RcuScan { prog: fd };
        s.scan().context("a first kfree_rcu() queue scan")?;
        Ok(s)
    }

    /// Runs the scan once: every kfree_rcu() queue seen so far is read and the tracked
    /// objects in it are forgotten.
    pub fn scan(&self) -> Result<()> {
        // union bpf_attr.link_create: prog_fd, target_fd, attach_type, flags, then zeroes.
        let mut attr = [0u64; 8];
        attr[0] = self.prog.as_raw_fd() as u32 as u64;
        attr[1] = BPF_TRACE_ITER as u64;
        let link = bpf(BPF_LINK_CREATE, &mut attr).context("BPF_LINK_CREATE (iterator)")?;
        // union bpf_attr.iter_create: link_fd, flags.
        let mut attr = [0u64; 8];
        attr[0] = link.as_raw_fd() as u32 as u64;
        let iter = bpf(BPF_ITER_CREATE, &mut attr).context("BPF_ITER_CREATE")?;
        let mut out = Vec::new();
        std::fs::File::from(iter)
            .read_to_end(&mut out)
            .context("running the kfree_rcu() scan")?;
        Ok(())
    }
}
