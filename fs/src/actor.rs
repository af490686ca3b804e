//! Who did something and when: a task, and the work item it was executing, if any.

use serde::Serialize;

use crate::event::WorkCtx;

/// A task's name (`comm`, at most 15 bytes): inline, so copying it into every actor, holder
/// drop and chain link allocates nothing.
pub type Comm = compact_str::CompactString;

/// The context of one event, as the engine resolved it when the event was applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Actor {
    pub ts_ns: u64,
    /// Thread id.
    pub pid: u32,
    /// Process id.
    pub tgid: u32,
    pub comm: Comm,
    /// The work item the CPU was executing (the task is then a kworker).
    #[serde(serialize_with = "crate::text::ser_work_ctx")]
    pub work: Option<WorkCtx>,
    /// The engine's instance serial of that work item's current run, when its start was seen.
    pub work_instance: Option<u64>,
    /// The io_uring ring that work item belongs to (`io_ring_exit_work`,
    /// `io_fallback_req_func`), when known.
    #[serde(serialize_with = "crate::text::ser_hex_opt")]
    pub ring: Option<u64>,
    /// The task's process had already exited (the event came from its exit path).
    pub task_exited: bool,
}

impl Actor {
    /// Same execution context: the same work item, or the same plain task.
    pub fn same_context(&self, other: &Actor) -> bool {
        match (self.work, other.work) {
            (Some(a), Some(b)) => a == b,
            (None, None) => self.pid == other.pid,
            _ => false,
        }
    }
}
