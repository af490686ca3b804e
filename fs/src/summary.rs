//! Views for the TUI: what is alive on a mount grouped by holder kind, one summary line per
//! mount, one per followed work function.

use std::fmt::{self, Display, Formatter};

use serde::Serialize;

use crate::text::{count, dur};
use crate::verdict::{FileReport, MountDesc};
use crate::work::FnCounters;

/// Alive files on a mount, grouped by what holds them. A file with several holders appears
/// in each of their groups; `deferred_pending` and `unattributed` hold the files with no
/// holder, so every alive file is in at least one group.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AliveOnMount {
    pub mount_id: i32,
    pub mount: Option<MountDesc>,
    /// Distinct alive files on the mount.
    pub files: usize,
    pub fd_tables: Vec<FileReport>,
    pub uring_rings: Vec<FileReport>,
    pub in_flight: Vec<FileReport>,
    pub deferred_pending: Vec<FileReport>,
    pub unattributed: Vec<FileReport>,
}

impl AliveOnMount {
    /// Each alive file once (a file with several holders is in several groups).
    pub fn distinct_files(&self) -> impl Iterator<Item = &FileReport> {
        let mut seen = std::collections::BTreeSet::new();
        self.fd_tables
            .iter()
            .chain(&self.uring_rings)
            .chain(&self.in_flight)
            .chain(&self.deferred_pending)
            .chain(&self.unattributed)
            .filter(move |f| seen.insert((f.id.file, f.id.generation)))
    }
}

/// One line of the TUI's mounts pane.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MountSummary {
    pub mount_id: i32,
    /// None for a mount id files point at but the table never showed (another namespace,
    /// or gone before attach).
    pub mount: Option<MountDesc>,
    pub detached: bool,
    pub alive_files: usize,
    pub fd_tables: usize,
    pub uring_rings: usize,
    pub in_flight: usize,
    pub deferred_pending: usize,
    pub unattributed: usize,
    /// Files on it freed that were never seen referenced.
    pub unknown_frees: u64,
    pub umount_attempts: u32,
    pub umount_ebusy: u32,
}

impl Display for MountSummary {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match &self.mount {
            Some(m) => write!(f, "{m}")?,
            None => write!(f, "mount {} (not in the mount table)", self.mount_id)?,
        }
        write!(
            f,
            ": {}",
            count(self.alive_files, "alive file", "alive files")
        )?;
        if self.alive_files > 0 {
            write!(
                f,
                " (fd {}, ring {}, in-flight {}, deferred {}, unattributed {})",
                self.fd_tables,
                self.uring_rings,
                self.in_flight,
                self.deferred_pending,
                self.unattributed
            )?;
        }
        if self.umount_attempts > 0 {
            write!(
                f,
                "; umount tried {} times, {} EBUSY",
                self.umount_attempts, self.umount_ebusy
            )?;
        }
        if self.unknown_frees > 0 {
            write!(f, "; {} unknown files freed", self.unknown_frees)?;
        }
        Ok(())
    }
}

/// Latency and run time of one followed work function.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct WorkFnSummary {
    #[serde(serialize_with = "crate::text::ser_hex")]
    pub function: u64,
    pub name: String,
    pub counters: FnCounters,
    /// Instances armed or queued and not started now.
    pub waiting_now: usize,
    pub running_now: usize,
    /// Since when the oldest waiting instance has been waiting.
    pub oldest_waiting_since_ns: Option<u64>,
}

impl Display for WorkFnSummary {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let c = &self.counters;
        write!(
            f,
            "{}: queued {}, ran {}, waiting {}, running {}",
            self.name, c.queued, c.ended, self.waiting_now, self.running_now
        )?;
        if c.latency.count > 0 {
            write!(
                f,
                "; queue→start last {} worst {} mean {}",
                dur(c.latency.last_ns),
                dur(c.latency.worst_ns),
                dur(c.latency.mean_ns())
            )?;
        }
        if c.run.count > 0 {
            write!(
                f,
                "; run last {} worst {} mean {}",
                dur(c.run.last_ns),
                dur(c.run.worst_ns),
                dur(c.run.mean_ns())
            )?;
        }
        Ok(())
    }
}
