//! Iterator programs that userspace runs on demand, again and again (the kfree_rcu() queue
//! scan, the kernel-memory reader): loaded once, linked once; each run is a new iterator
//! fd from the link, read to its end. Raw bpf(2), because aya's `Iter` link is consumed by
//! its first run.

use std::{
    io::Read,
    os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd},
};

use anyhow::{Context, Result, anyhow};
use aya::{Ebpf, programs::Iter};

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

/// A loaded and linked iterator program.
pub struct IterProgram {
    name: &'static str,
    link: OwnedFd,
}

impl IterProgram {
    /// Loads program `name` for iterator `target` (`bpf_map`) and links it.
    pub fn load(ebpf: &mut Ebpf, btf: &aya::Btf, name: &'static str, target: &str) -> Result<Self> {
        let prog: &mut Iter = ebpf
            .program_mut(name)
            .ok_or_else(|| anyhow!("{name} missing from the object"))?
            .try_into()?;
        prog.load(target, btf).map_err(|e| {
            anyhow!(
                "loading {name}: {}",
                crate::attach::hooks::verifier_error(&e)
            )
        })?;
        let fd = prog.fd()?.as_fd().try_clone_to_owned()?;
        // union bpf_attr.link_create: prog_fd, target_fd, attach_type, flags, then zeroes.
        let mut attr = [0u64; 8];
        attr[0] = fd.as_raw_fd() as u32 as u64;
        attr[1] = BPF_TRACE_ITER as u64;
        let link = bpf(BPF_LINK_CREATE, &mut attr)
            .with_context(|| format!("BPF_LINK_CREATE ({name} iterator)"))?;
        Ok(IterProgram { name, link })
    }

    /// Runs the program once and returns what it wrote.
    pub fn run(&self) -> Result<Vec<u8>> {
        // union bpf_attr.iter_create: link_fd, flags.
        let mut attr = [0u64; 8];
        attr[0] = self.link.as_raw_fd() as u32 as u64;
        let iter = bpf(BPF_ITER_CREATE, &mut attr).context("BPF_ITER_CREATE")?;
        let mut out = Vec::new();
        std::fs::File::from(iter)
            .read_to_end(&mut out)
            .with_context(|| format!("running {}", self.name))?;
        Ok(out)
    }
}
