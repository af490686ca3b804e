//! The command-line options of attaching (which work to follow, the ring buffer, counter
//! ticks, allocation tracking), one definition flattened into both `tracer attach` and
//! `tracer run`, so the two take the same flags with the same meaning.

use std::time::Duration;

use anyhow::{Result, bail};

use crate::{alloc::AllocArgs, attach::Options};

#[derive(Debug, Clone, clap::Args)]
pub struct AttachArgs {
    /// Send events for every work function, not only the followed ones.
    #[arg(long)]
    pub all_work: bool,
    /// Also follow this work function (kernel symbol); repeatable.
    #[arg(long = "follow-work", value_name = "FUNCTION")]
    pub follow_work: Vec<String>,
    /// Ring buffer size in MiB (a power of two).
    #[arg(long, default_value_t = super::DEFAULT_RING_MIB)]
    pub ring_mib: u32,
    /// Ring buffer size in KiB instead (a power of two, at least the page size): tiny
    /// rings show how lost records are reported.
    #[arg(long, hide = true)]
    pub ring_kib: Option<u32>,
    /// Seconds between counter updates (and allocation snapshots).
    #[arg(long, default_value_t = 1.0)]
    pub stats_every: f64,
    /// A blocking lock call (flock, fcntl F_SETLKW/F_OFD_SETLKW) that waits longer than
    /// this for a lock someone holds gets a lock-conflict verdict.
    #[arg(long, default_value_t = tracer_fs::locks::DEFAULT_LOCK_WAIT_MS, value_name = "MS")]
    pub lock_wait_ms: u64,
    #[command(flatten)]
    pub alloc: AllocArgs,
}

impl AttachArgs {
    /// The attach options, checked.
    pub fn options(&self) -> Result<Options> {
        let ring_bytes = match self.ring_kib {
            Some(kib) if kib.is_power_of_two() && kib >= 4 => kib << 10,
            Some(kib) => bail!("--ring-kib must be a power of two, at least 4 (got {kib})"),
            None if self.ring_mib.is_power_of_two() => self.ring_mib << 20,
            None => bail!("--ring-mib must be a power of two (got {})", self.ring_mib),
        };
        let alloc = self.alloc.options();
        if let Some(a) = &alloc {
            a.check()?;
        }
        Ok(Options {
            all_work: self.all_work,
            follow_work: self.follow_work.clone(),
            ring_bytes,
            alloc,
            lock_wait_ms: self.lock_wait_ms,
            alloc_hooks: false,
        })
    }

    pub fn stats_every(&self) -> Duration {
        Duration::from_secs_f64(self.stats_every.max(0.05))
    }
}
