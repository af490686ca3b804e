//! Figures the kernel side keeps: the programs' per-CPU counters (records sent, ring-buffer
//! drops, hook hit counts) and each program's `recursion_misses` (runs the kernel skipped
//! because the program was already running on that CPU, e.g. a free in IRQ context).

use std::{
    collections::BTreeMap,
    os::fd::{AsFd, AsRawFd},
    ptr::NonNull,
};

use anyhow::{Context, Result, bail};
use aya::{Ebpf, maps::Map};
use serde::Serialize;
use tracer_fs::wire::{RecordKind, counter};

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Figures {
    /// Records sent, by kind.
    pub records: BTreeMap<String, u64>,
    /// Records lost because the ring buffer was full, by kind.
    pub drops: BTreeMap<String, u64>,
    pub kmem_cache_alloc: u64,
    pub kmem_cache_free: u64,
    pub kmalloc: u64,
    pub kfree: u64,
    pub filp_alloc: u64,
    pub filp_free: u64,
    pub work_queued: u64,
    pub work_executed: u64,
    pub unmatched_exit: u64,
    pub map_full: u64,
    pub fd_walk_failed: u64,
    /// close(2)s of a file's only reference, told by the release that follows them.
    pub closes_folded: u64,
    /// io_uring completions whose request's taking of its file was not counted (before
    /// attach, or its (ring, file) count was evicted from the map).
    pub uring_done_unseen: u64,
    /// Ends of a ring's requests on a file that reached the stream after the next start
    /// and were dropped as stale (`tracer_fs::rings::RequestOrder`).
    pub stale_request_ends: u64,
    pub register_truncated: u64,
    /// Allocation tracking (`--alloc-filter`): allocations tracked, tracked ones freed,
    /// not tracked because the map was full, left out by sampling, stacks captured, stack
    /// captures that failed.
    pub alloc_tracked: u64,
    pub alloc_freed: u64,
    pub alloc_map_full: u64,
    pub alloc_sampled_out: u64,
    pub alloc_stacks: u64,
    pub alloc_stack_failed: u64,
    /// Tracked addresses allocated again before their free was seen (missed frees).
    pub alloc_reused: u64,
    /// Tracked objects found in kfree_rcu()'s queues (freed by `kfree_bulk()`, which has
    /// no tracepoint), and walks of those queues cut short by their step limit.
    pub alloc_rcu_freed: u64,
    pub alloc_rcu_truncated: u64,
    /// Tracked frees lost because the map's bucket was locked by the run they interrupted.
    pub alloc_free_busy: u64,
    /// Events a twin handled because the kernel skipped the program it follows (a free that
    /// interrupted the free program itself, `free_twin` in the eBPF crate; a release or a put
    /// that interrupted a run of `__fput`'s or `fput`'s trampoline program, or came while
    /// one was preempted): runs skipped, but not lost. By program.
    pub free_twin_handled: BTreeMap<String, u64>,
    /// Program runs the kernel skipped and nobody stood in for, by program: a free
    /// program's misses less its twin's handled frees; a twin's own misses are left out
    /// (the program it follows ran for those events).
    pub recursion_misses: BTreeMap<String, u64>,
}

/// Free (and release) programs, their twins and their twins' counter of the events they
/// stood in for.
const FREE_TWINS: [(&str, &str, u32); 5] = [
    (
        "raw_kmem_cache_free",
        "raw_kmem_cache_free_twin",
        counter::FREE_TWIN,
    ),
    ("raw_kfree", "raw_kfree_twin", counter::FREE_TWIN + 1),
    (
        "raw_percpu_free",
        "raw_percpu_free_twin",
        counter::FREE_TWIN + 2,
    ),
    (
        "fexit_real_fput",
        "fexit_real_fput_twin",
        counter::FPUT_TWIN,
    ),
    ("fentry_fput", "fentry_fput_twin", counter::FPUT_ENTRY_TWIN),
];

impl Figures {
    pub fn total_drops(&self) -> u64 {
        self.drops.values().sum()
    }

    pub fn total_records(&self) -> u64 {
        self.records.values().sum()
    }

    pub fn total_recursion_misses(&self) -> u64 {
        self.recursion_misses.values().sum()
    }

    /// Takes the events the twins handled (in `FREE_TWINS` order) off their programs'
    /// misses, and the twins' own misses out (the program each follows ran for those).
    fn take_twins_off(&mut self, handled: [u64; FREE_TWINS.len()]) {
        for ((first, twin, _), handled) in FREE_TWINS.into_iter().zip(handled) {
            self.recursion_misses.remove(twin);
            if handled == 0 {
                continue;
            }
            self.free_twin_handled.insert(first.to_string(), handled);
            if let Some(m) = self.recursion_misses.get_mut(first) {
                // Read a moment apart from the misses: never below zero.
                *m = m.saturating_sub(handled);
                if *m == 0 {
                    self.recursion_misses.remove(first);
                }
            }
        }
    }
}

fn kind_name(k: RecordKind) -> String {
    format!("{k:?}")
}

/// The programs' counters, mapped read-only. Read without bpf(2): a map lookup runs inside
/// `bpf_disable_instrumentation()`, and while a reader is preempted there every classic
/// tracepoint program on its CPU skips its runs (possible on kernels that preempt in the
/// kernel, such as 7.2's lazy preemption).
pub struct Counters {
    base: NonNull<u64>,
    bytes: usize,
    cpus: usize,
}

// SAFETY: the mapping is read-only shared memory owned by this value.
unsafe impl Send for Counters {}

impl Counters {
    pub fn map(ebpf: &Ebpf) -> Result<Counters> {
        let Some(Map::Array(data)) = ebpf.map("COUNTERS") else {
            bail!("no COUNTERS array in the eBPF object");
        };
        let entries = data
            .info()
            .context("reading the COUNTERS map's info")?
            .max_entries() as usize;
        let cpus = entries / counter::COUNT as usize;
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
        let bytes = (entries * size_of::<u64>()).div_ceil(page) * page;
        // SAFETY: a shared read-only mapping of an mmapable array map; the kernel checks
        // the length against the map.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ,
                libc::MAP_SHARED,
                data.fd().as_fd().as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error()).context("mapping the COUNTERS map");
        }
        let base = NonNull::new(p.cast::<u64>()).context("mmap returned null")?;
        Ok(Counters { base, bytes, cpus })
    }

    /// Counter `i` summed over CPUs.
    fn get(&self, i: u32) -> u64 {
        (0..self.cpus)
            .map(|cpu| {
                // SAFETY: `cpu * COUNT + i` is inside the mapped entries; the programs
                // write these words concurrently, so each is read once, volatile.
                unsafe {
                    std::ptr::read_volatile(
                        self.base
                            .as_ptr()
                            .add(cpu * counter::COUNT as usize + i as usize),
                    )
                }
            })
            .fold(0u64, u64::wrapping_add)
    }

    pub fn read(&self, ebpf: &Ebpf) -> Figures {
        let get = |i: u32| self.get(i);
        let mut f = Figures::default();
        for k in RecordKind::ALL {
            let sent = get(counter::RECORDS + k as u32);
            let lost = get(counter::DROPS + k as u32);
            if sent > 0 {
                f.records.insert(kind_name(k), sent);
            }
            if lost > 0 {
                f.drops.insert(kind_name(k), lost);
            }
        }
        f.kmem_cache_alloc = get(counter::KMEM_CACHE_ALLOC);
        f.kmem_cache_free = get(counter::KMEM_CACHE_FREE);
        f.kmalloc = get(counter::KMALLOC);
        f.kfree = get(counter::KFREE);
        f.filp_alloc = get(counter::FILP_ALLOC);
        f.filp_free = get(counter::FILP_FREE);
        f.work_queued = get(counter::WORK_QUEUED);
        f.work_executed = get(counter::WORK_EXECUTED);
        f.unmatched_exit = get(counter::UNMATCHED_EXIT);
        f.map_full = get(counter::MAP_FULL);
        f.fd_walk_failed = get(counter::FD_WALK_FAILED);
        f.closes_folded = get(counter::CLOSE_FOLDED);
        f.uring_done_unseen = get(counter::URING_DONE_UNSEEN);
        f.register_truncated = get(counter::REGISTER_TRUNCATED);
        f.alloc_tracked = get(counter::ALLOC_TRACKED);
        f.alloc_freed = get(counter::ALLOC_FREED);
        f.alloc_map_full = get(counter::ALLOC_MAP_FULL);
        f.alloc_sampled_out = get(counter::ALLOC_SAMPLED_OUT);
        f.alloc_stacks = get(counter::ALLOC_STACKS);
        f.alloc_stack_failed = get(counter::ALLOC_STACK_FAILED);
        f.alloc_reused = get(counter::ALLOC_REUSED);
        f.alloc_rcu_freed = get(counter::ALLOC_RCU_FREED);
        f.alloc_rcu_truncated = get(counter::ALLOC_RCU_TRUNCATED);
        for (name, prog) in ebpf.programs() {
            if let Ok(fd) = prog.fd()
                && let Some(m) = recursion_misses(fd.as_fd().as_raw_fd())
                && m > 0
            {
                f.recursion_misses.insert(name.to_string(), m);
            }
        }
        // A free program whose twin the attach left out (`attach::Needs`) skips only frees
        // that cannot matter: its misses are no loss.
        for (first, twin, _) in FREE_TWINS {
            if ebpf.program(twin).is_some_and(|p| p.fd().is_err()) {
                f.recursion_misses.remove(first);
            }
        }
        f.alloc_free_busy = get(counter::ALLOC_FREE_BUSY);
        f.take_twins_off(FREE_TWINS.map(|(_, _, c)| get(c)));
        f
    }
}

impl Drop for Counters {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, unmapped once.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.bytes) };
    }
}

/// Entries the COUNTERS map needs: a block of `counter::COUNT` per possible CPU id
/// (`nr_cpus` from `/sys/devices/system/cpu/possible`; unknown: the object's default).
pub fn entries(nr_cpus: u32) -> u32 {
    counter::COUNT
        * if nr_cpus == 0 {
            counter::DEFAULT_CPU_BLOCKS
        } else {
            nr_cpus
        }
}

/// `bpf_prog_info.recursion_misses` through `BPF_OBJ_GET_INFO_BY_FD` (aya does not expose it).
fn recursion_misses(prog_fd: i32) -> Option<u64> {
    use aya_obj::generated::bpf_prog_info;
    #[repr(C)]
    struct InfoAttr {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
    }
    // SAFETY: bpf_prog_info is plain old data; zero is a valid value.
    let mut info: bpf_prog_info = unsafe { std::mem::zeroed() };
    let mut attr = [0u8; 128];
    let a = InfoAttr {
        bpf_fd: prog_fd as u32,
        info_len: size_of::<bpf_prog_info>() as u32,
        info: &mut info as *mut _ as u64,
    };
    // SAFETY: the attribute prefix is written into a zeroed, larger buffer.
    unsafe { std::ptr::write_unaligned(attr.as_mut_ptr().cast::<InfoAttr>(), a) };
    const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
    // SAFETY: a valid bpf(2) call with a buffer the kernel fills.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET_INFO_BY_FD,
            attr.as_mut_ptr(),
            attr.len() as u32,
        )
    };
    (rc == 0).then_some(info.recursion_misses)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_twins_handled_frees_are_not_misses() {
        let mut f = Figures::default();
        for (p, n) in [
            ("raw_kmem_cache_free", 120),
            ("raw_kmem_cache_free_twin", 7),
            ("raw_kfree", 3),
            ("timer_start", 2),
        ] {
            f.recursion_misses.insert(p.into(), n);
        }
        f.take_twins_off([100, 5, 0, 0, 0]);
        let left: Vec<(&str, u64)> = f
            .recursion_misses
            .iter()
            .map(|(k, v)| (k.as_str(), *v))
            .collect();
        // 20 of the cache free's runs were lost; kfree's 5 handled exceed the 3 read a
        // moment earlier; the twin's own misses go, other programs' stay as they are.
        assert_eq!(left, [("raw_kmem_cache_free", 20), ("timer_start", 2)]);
        assert_eq!(f.free_twin_handled["raw_kmem_cache_free"], 100);
        assert_eq!(f.free_twin_handled["raw_kfree"], 5);
        assert!(!f.free_twin_handled.contains_key("raw_percpu_free"));
    }

    #[test]
    fn fputs_twin_takes_what_it_stood_in_for_off_its_misses() {
        let mut f = Figures::default();
        for (p, n) in [
            ("fentry_fput", 40),
            ("fentry_fput_twin", 2),
            ("raw_sys_exit", 9),
        ] {
            f.recursion_misses.insert(p.into(), n);
        }
        f.take_twins_off([0, 0, 0, 0, 38]);
        // Two puts were skipped by both (lost); the twin's own misses go; other programs'
        // stay.
        let left: Vec<(&str, u64)> = f
            .recursion_misses
            .iter()
            .map(|(k, v)| (k.as_str(), *v))
            .collect();
        assert_eq!(left, [("fentry_fput", 2), ("raw_sys_exit", 9)]);
        assert_eq!(f.free_twin_handled["fentry_fput"], 38);
    }
}
