//! What the engine is told at start: the kernel functions it follows, the offsets that map a
//! work item back to its io_uring ring, the hooks the tracer could not attach, and memory caps.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::text::hex;

/// Upper bounds on what the engine keeps. When a table is full, the oldest released/ended
/// objects are evicted first; only then the oldest live ones. Every eviction is counted in
/// [`crate::stats::Stats`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Caps {
    /// Files, alive and released (kept for history).
    pub max_files: usize,
    /// Released files kept for history, the latest releases: a released file with its
    /// release chain is about 1.5 KiB, and a busy tracer releases tens of thousands a
    /// second (kept by the million, they were most of a 560 MiB peak RSS).
    pub max_released_files: usize,
    /// Work item instances (one per queue/run of a work item).
    pub max_work_instances: usize,
    /// Verdicts kept for [`crate::engine::Engine::verdicts`]; also bounds open EBUSY stories.
    pub max_verdicts: usize,
    /// Task instances (processes), alive and exited.
    pub max_tasks: usize,
    /// io_uring rings, alive and torn down.
    pub max_rings: usize,
    /// Mounts that are gone (kept for history); mounts in the table are never evicted.
    pub max_mount_history: usize,
}

impl Default for Caps {
    fn default() -> Self {
        Caps {
            max_files: 1_000_000,
            max_released_files: 8_192,
            max_work_instances: 100_000,
            max_verdicts: 10_000,
            max_tasks: 100_000,
            max_rings: 100_000,
            max_mount_history: 10_000,
        }
    }
}

/// Everything the engine needs to know that is not in the event stream.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EngineConfig {
    /// Kernel function addresses the tracer resolved, by address (work functions and any
    /// other symbol worth printing by name).
    pub symbols: BTreeMap<u64, String>,
    /// Address of `delayed_fput` (the work function of `delayed_fput_work`).
    pub delayed_fput: Option<u64>,
    /// Address of `io_ring_exit_work`.
    pub io_ring_exit_work: Option<u64>,
    /// Address of `io_fallback_req_func` (the ring's fallback work, a `delayed_work`).
    pub io_fallback_req_func: Option<u64>,
    /// Address of `io_tctx_fallback_work`: newer kernels' (7.2) fallback work, a plain work
    /// item of the task context (`io_uring_task`), not of a ring, queued by the exiting task.
    pub io_tctx_fallback_work: Option<u64>,
    /// Byte offset of `exit_work` in `struct io_ring_ctx` (from BTF): `ctx = work - offset`.
    pub ring_exit_work_offset: Option<u64>,
    /// Byte offset of `fallback_work` in `struct io_ring_ctx` (from BTF).
    pub ring_fallback_work_offset: Option<u64>,
    /// Hooks the tracer could not attach on this kernel; quoted in every verdict as limits
    /// of the evidence.
    pub missing_hooks: Vec<String>,
    /// The kernel's `sched_process_exit` has no `group_dead` field (it always reads 0): treat
    /// the exit of a thread-group leader as its process's exit instead.
    pub exit_group_dead_unknown: bool,
    /// `__fput` itself is hooked (fentry/kprobe), not approximated by the `filp` slab
    /// free: a file is released when `FileFree` says so, so a mount whose last reference
    /// went (`cleanup_mnt`) has no file alive left.
    pub precise_release: bool,
    /// The frees of fd tables and fs_structs are seen (`TaskResFreed`): an exiting
    /// process keeps its fds (and cwd/root) until its `exit_files()`/`exit_fs()`, not just
    /// until its exit tracepoint, which fires early in `do_exit()`.
    pub exit_resources_seen: bool,
    /// A blocking lock call that waits longer than this (milliseconds) gets a verdict
    /// (`--lock-wait-ms`); None: [`crate::locks::DEFAULT_LOCK_WAIT_MS`].
    pub lock_wait_ms: Option<u64>,
    pub caps: Caps,
}

impl EngineConfig {
    /// The lock-wait threshold in nanoseconds.
    pub fn lock_wait_ns(&self) -> u64 {
        self.lock_wait_ms
            .unwrap_or(crate::locks::DEFAULT_LOCK_WAIT_MS)
            .saturating_mul(1_000_000)
    }

    /// A function address by name when known, else as hex.
    pub fn symbol(&self, addr: u64) -> String {
        match self.symbols.get(&addr) {
            Some(name) => name.clone(),
            None => {
                let name = if Some(addr) == self.delayed_fput {
                    "delayed_fput"
                } else if Some(addr) == self.io_ring_exit_work {
                    "io_ring_exit_work"
                } else if Some(addr) == self.io_fallback_req_func {
                    "io_fallback_req_func"
                } else if Some(addr) == self.io_tctx_fallback_work {
                    "io_tctx_fallback_work"
                } else {
                    return hex(addr);
                };
                name.to_string()
            }
        }
    }

    /// The io_uring ring a work item belongs to, when its function is one of the ring's own
    /// work functions and the offset is known.
    pub fn ring_of_work(&self, work: u64, function: u64) -> Option<u64> {
        let off = if Some(function) == self.io_ring_exit_work {
            self.ring_exit_work_offset?
        } else if Some(function) == self.io_fallback_req_func {
            self.ring_fallback_work_offset?
        } else {
            return None;
        };
        work.checked_sub(off).filter(|ctx| *ctx != 0)
    }

    /// Work functions that are `delayed_work`s (queued from a timer, so the queueing
    /// context says nothing about who asked).
    pub fn is_delayed_work_fn(&self, function: u64) -> bool {
        Some(function) == self.delayed_fput || Some(function) == self.io_fallback_req_func
    }

    pub fn is_ring_exit_work(&self, function: u64) -> bool {
        Some(function) == self.io_ring_exit_work
    }

    /// io_uring's fallback work, either kind (only the ring's belongs to a ring).
    pub fn is_ring_fallback_work(&self, function: u64) -> bool {
        Some(function) == self.io_fallback_req_func || Some(function) == self.io_tctx_fallback_work
    }

    /// The function the precise tier's fallback entry stands for: the kernel has one of them.
    pub fn fallback_work_fn(&self) -> Option<u64> {
        self.io_fallback_req_func.or(self.io_tctx_fallback_work)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> EngineConfig {
        EngineConfig {
            symbols: [(0x10, "delayed_fput".to_string())].into_iter().collect(),
            delayed_fput: Some(0x10),
            io_ring_exit_work: Some(0x20),
            io_fallback_req_func: Some(0x30),
            ring_exit_work_offset: Some(0x300),
            ring_fallback_work_offset: None,
            ..Default::default()
        }
    }

    #[test]
    fn names_and_rings() {
        let c = cfg();
        assert_eq!(c.symbol(0x10), "delayed_fput");
        assert_eq!(c.symbol(0x20), "io_ring_exit_work");
        assert_eq!(c.symbol(0xffff_ffff_8100_0000), "0xffffffff81000000");
        assert_eq!(c.ring_of_work(0x1300, 0x20), Some(0x1000));
        // offset unknown: no guess
        assert_eq!(c.ring_of_work(0x1300, 0x30), None);
        // not a ring function
        assert_eq!(c.ring_of_work(0x1300, 0x10), None);
        // nonsense pointer below the offset
        assert_eq!(c.ring_of_work(0x100, 0x20), None);
        assert!(c.is_delayed_work_fn(0x10) && !c.is_delayed_work_fn(0x20));
    }

    #[test]
    fn the_task_contexts_fallback_work() {
        // 7.2: no io_fallback_req_func; the task context's work is not delayed and belongs
        // to no ring.
        let c = EngineConfig {
            io_fallback_req_func: None,
            io_tctx_fallback_work: Some(0x40),
            ring_fallback_work_offset: Some(0x200),
            ..cfg()
        };
        assert_eq!(c.symbol(0x40), "io_tctx_fallback_work");
        assert_eq!(c.fallback_work_fn(), Some(0x40));
        assert!(c.is_ring_fallback_work(0x40));
        assert!(!c.is_delayed_work_fn(0x40));
        assert_eq!(c.ring_of_work(0x1200, 0x40), None);
        assert_eq!(cfg().fallback_work_fn(), Some(0x30));
    }

    #[test]
    fn default_caps_and_serde() {
        let c = EngineConfig::default();
        assert_eq!(c.caps.max_files, 1_000_000);
        let j = serde_json::to_string(&cfg()).unwrap();
        let back: EngineConfig = serde_json::from_str(&j).unwrap();
        assert_eq!(back, cfg());
        let partial: EngineConfig = serde_json::from_str(r#"{"caps":{"max_files":5}}"#).unwrap();
        assert_eq!(partial.caps.max_files, 5);
        assert_eq!(partial.caps.max_verdicts, 10_000);
    }
}
