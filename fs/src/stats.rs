//! What the engine could not attribute or had to drop, for the status line and verdicts.

use std::collections::BTreeMap;
use std::fmt::{self, Display, Formatter};

use serde::Serialize;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub events: u64,
    /// Events with impossible values (null file pointers, ...), ignored.
    pub nonsense_events: u64,
    pub files_alive: usize,
    pub files_kept: usize,
    /// Files first seen by the attach-time snapshot.
    pub snapshot_files: u64,
    /// fd holders the scans after failed umounts found that no hook had shown.
    pub rescan_found: u64,
    /// Frees of files never seen referenced: opened before attach and missed by the
    /// snapshot (held by rings or the kernel only), or records lost.
    pub unknown_file_frees: u64,
    pub unknown_file_frees_by_mount: BTreeMap<i32, u64>,
    /// Unrefs naming a file the engine did not know.
    pub unknown_file_unrefs: u64,
    /// Unrefs by holder only (file 0) for a holder no file has.
    pub unref_holder_not_found: u64,
    /// Unrefs of a known file by a holder it did not have.
    pub unref_holder_not_held: u64,
    /// An fd slot or request taken by another file before its drop was seen.
    pub holder_slot_reused: u64,
    /// Deletes said to leave space held on a file the engine did not know alive (a slot
    /// read after the file went): ignored.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub space_unknown_file: u64,
    /// Files whose end was inferred (pointer or mount id reused) rather than seen.
    pub files_lost: u64,
    pub mount_ids_reused: u64,
    pub work_unmatched_starts: u64,
    pub work_unmatched_ends: u64,
    pub work_missed_ends: u64,
    pub evicted_files_released: u64,
    pub evicted_files_alive: u64,
    pub evicted_work_done: u64,
    pub evicted_work_active: u64,
    pub evicted_verdicts: u64,
    pub evicted_stories: u64,
    pub evicted_tasks: u64,
    pub evicted_rings: u64,
    pub evicted_mounts: u64,
    pub missing_hooks: Vec<String>,
}

impl Stats {
    pub fn evicted_total(&self) -> u64 {
        self.evicted_files_released
            + self.evicted_files_alive
            + self.evicted_work_done
            + self.evicted_work_active
            + self.evicted_verdicts
            + self.evicted_stories
            + self.evicted_tasks
            + self.evicted_rings
            + self.evicted_mounts
    }

    /// Evictions that can leave a verdict short of what it should name: not the routine
    /// ones of released files and past verdicts (history only).
    pub fn evicted_live(&self) -> u64 {
        self.evicted_total() - self.evicted_files_released - self.evicted_verdicts
    }
}

impl Display for Stats {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} events, {} files alive ({} from the snapshot); not attributed: {} frees and {} unrefs of unknown files, {} unrefs by unknown holders, {} holders replaced unseen, {} files lost; {} objects evicted",
            self.events,
            self.files_alive,
            self.snapshot_files,
            self.unknown_file_frees,
            self.unknown_file_unrefs,
            self.unref_holder_not_found + self.unref_holder_not_held,
            self.holder_slot_reused,
            self.files_lost,
            self.evicted_total()
        )?;
        if !self.missing_hooks.is_empty() {
            write!(f, "; hooks missing: {}", self.missing_hooks.join(", "))?;
        }
        Ok(())
    }
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}
