//! Allocation leak tracking per mount (`tracer attach --alloc-filter ...`): building the
//! in-kernel filter, reading the kernel's map of outstanding allocations, symbolizing
//! stacks, and the live view and leak reports. The pure parts (mount lifetimes, charging,
//! grouping, kmemleak text) are in `tracer_fs::alloc`.
//!
//! Off by default: without `--alloc-filter` the kmem programs only count.

pub mod batch;
pub mod filter;
pub mod iter;
pub mod module_syms;
pub mod percpu;
pub mod rcu;

pub mod reach;
pub mod setup;
pub mod symbols;
pub mod tracker;
pub mod view;

use std::time::Duration;

use anyhow::{Result, bail};
pub use tracer_fs::alloc::SortBy;

/// One `--alloc-filter` term; several are OR-ed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllocFilter {
    /// Call sites in a module's text (`module:xfs`); for built-in code, the functions whose
    /// name starts with `<module>_`.
    Module(String),
    /// Call sites in functions whose name starts with a prefix (`sym:xfs_`).
    Sym(String),
    /// Objects of a slab cache, by name (`cache:filp`).
    Cache(String),
    /// Every allocation (`all`), except caches whose objects die within the syscall that
    /// made them (`names_cache`) unless named with `cache:`.
    All,
}

impl std::str::FromStr for AllocFilter {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let nonempty = |v: &str, what: &str| {
            if v.is_empty() {
                Err(format!("--alloc-filter {what}: needs a value"))
            } else {
                Ok(v.to_string())
            }
        };
        match s.split_once(':') {
            Some(("module", v)) => Ok(AllocFilter::Module(nonempty(v, "module:")?)),
            Some(("sym", v)) => Ok(AllocFilter::Sym(nonempty(v, "sym:")?)),
            Some(("cache", v)) => Ok(AllocFilter::Cache(nonempty(v, "cache:")?)),
            None if s == "all" => Ok(AllocFilter::All),
            _ => Err(format!(
                "--alloc-filter {s}: expected module:NAME, sym:PREFIX, cache:NAME or all"
            )),
        }
    }
}

/// The controls of allocation tracking (bcc memleak's, mostly).
#[derive(Debug, Clone)]
pub struct AllocOptions {
    pub filters: Vec<AllocFilter>,
    /// Track one allocation in N (per CPU); 1: all.
    pub sample_every: u32,
    pub min_size: u64,
    pub max_size: u64,
    /// Only allocations at least this old appear in the live view and reports.
    pub older: Duration,
    /// Groups shown (live view and reports); 0: all.
    pub top: usize,
    pub sort: SortBy,
    /// Time between an umount and its leak report, for deferred frees to happen.
    pub grace: Duration,
    /// Also ask the kernel for an `rcu_barrier()` before each report (when it offers
    /// `/sys/module/rcutree/parameters/do_rcu_barrier`).
    pub rcu_barrier: bool,
    /// Size of the kernel's map of outstanding allocations.
    pub max_entries: u32,
    /// Objects printed in full in a report's text (the groups cover the rest).
    pub max_objects: usize,
    /// Every allocation removes its address from the outstanding map (`REUSE_CHECK`).
    pub reuse_check: bool,
    /// A stack per tracked allocation instead of one per call site.
    pub stack_per_object: bool,
}

impl Default for AllocOptions {
    fn default() -> Self {
        AllocOptions {
            filters: vec![],
            sample_every: 1,
            min_size: 0,
            max_size: u64::MAX,
            older: Duration::ZERO,
            top: 10,
            sort: SortBy::Size,
            grace: Duration::from_secs(2),
            rcu_barrier: true,
            max_entries: 65536,
            max_objects: 50,
            reuse_check: true,
            stack_per_object: false,
        }
    }
}

impl AllocOptions {
    pub fn check(&self) -> Result<()> {
        if self.filters.is_empty() {
            bail!("allocation tracking needs at least one --alloc-filter");
        }
        if self.min_size > self.max_size {
            bail!("--alloc-min-size is larger than --alloc-max-size");
        }
        if self.max_entries == 0 {
            bail!("--alloc-max-entries must be positive");
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SortArg {
    Size,
    Count,
}

/// `tracer attach`'s allocation tracking flags.
#[derive(Debug, Clone, clap::Args)]
pub struct AllocArgs {
    /// Track allocations (off without it): `module:NAME` (call sites in a module's text; for
    /// built-in code, functions named NAME_*), `sym:PREFIX` (call sites in functions whose
    /// name starts with PREFIX), `cache:NAME` (objects of a slab cache) or `all`; repeatable,
    /// OR-ed.
    #[arg(long = "alloc-filter", value_name = "FILTER")]
    pub filter: Vec<AllocFilter>,
    /// Track one allocation in N.
    #[arg(long = "alloc-sample", value_name = "N", default_value_t = 1)]
    pub sample: u32,
    /// Track only allocations of at least this many bytes.
    #[arg(long = "alloc-min-size", value_name = "BYTES", default_value_t = 0)]
    pub min_size: u64,
    /// Track only allocations of at most this many bytes.
    #[arg(long = "alloc-max-size", value_name = "BYTES")]
    pub max_size: Option<u64>,
    /// Show only allocations older than this (e.g. `5s`) in the live view and reports.
    #[arg(long = "alloc-older", value_name = "AGE", value_parser = humantime::parse_duration)]
    pub older: Option<Duration>,
    /// Stacks (groups) shown, largest first; 0: all.
    #[arg(long = "alloc-top", value_name = "N", default_value_t = 10)]
    pub top: usize,
    /// Order of groups.
    #[arg(long = "alloc-sort", value_enum, default_value_t = SortArg::Size)]
    pub sort: SortArg,
    /// Time between an umount and its leak report. Objects of a filesystem are often freed
    /// after its umount returns: inodes and dentries through call_rcu() (batched, and
    /// with lazy RCU held for seconds), kfree_rcu() batches, delayed_fput and other work.
    /// 2s covers the usual RCU grace periods and work queues; before reporting, tracer also
    /// asks for an rcu_barrier() (see --no-rcu-barrier), which flushes lazy callbacks, and
    /// reads kfree_rcu()'s queues (objects in them count as freed). Reports also wait until
    /// 1.5s after the attach (each CPU's kfree_rcu() queues are found at the first work item
    /// it runs; 6s where the kernel's BTF does not show them: then when its monitor runs).
    #[arg(long = "leak-grace", value_name = "TIME", value_parser = humantime::parse_duration,
          default_value = "2s")]
    pub grace: Duration,
    /// Do not ask the kernel for an rcu_barrier() before a leak report.
    #[arg(long = "no-rcu-barrier")]
    pub no_rcu_barrier: bool,
    /// Do not make every allocation check whether its address was tracked (proof of a free
    /// we did not see: kfree_rcu() of slab caches with sheaves, batches freed by the memory
    /// shrinker). Saves one hash delete per allocation; reports then keep such objects.
    #[arg(long = "alloc-no-reuse-check")]
    pub no_reuse_check: bool,
    /// Capture the kernel stack of every tracked allocation (~2 us each) instead of the
    /// first one at each call site (which then stands for all the call site's objects).
    #[arg(long = "alloc-stack-per-object")]
    pub stack_per_object: bool,
    /// Size of the kernel's map of outstanding allocations (when full, what is not tracked
    /// is counted and shown).
    #[arg(long = "alloc-max-entries", value_name = "N", default_value_t = 65536)]
    pub max_entries: u32,
}

impl AllocArgs {
    /// The options, when tracking was asked for.
    pub fn options(&self) -> Option<AllocOptions> {
        if self.filter.is_empty() {
            return None;
        }
        Some(AllocOptions {
            filters: self.filter.clone(),
            sample_every: self.sample.max(1),
            min_size: self.min_size,
            max_size: self.max_size.unwrap_or(u64::MAX),
            older: self.older.unwrap_or(Duration::ZERO),
            top: self.top,
            sort: match self.sort {
                SortArg::Size => SortBy::Size,
                SortArg::Count => SortBy::Count,
            },
            grace: self.grace,
            rcu_barrier: !self.no_rcu_barrier,
            max_entries: self.max_entries,
            reuse_check: !self.no_reuse_check,
            stack_per_object: self.stack_per_object,
            ..AllocOptions::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_filters() {
        assert_eq!(
            "module:xfs".parse::<AllocFilter>(),
            Ok(AllocFilter::Module("xfs".into()))
        );
        assert_eq!(
            "sym:xfs_".parse::<AllocFilter>(),
            Ok(AllocFilter::Sym("xfs_".into()))
        );
        assert_eq!(
            "cache:filp".parse::<AllocFilter>(),
            Ok(AllocFilter::Cache("filp".into()))
        );
        assert_eq!("all".parse::<AllocFilter>(), Ok(AllocFilter::All));
        assert!("sym:".parse::<AllocFilter>().is_err());
        assert!("xfs".parse::<AllocFilter>().is_err());
    }
}
