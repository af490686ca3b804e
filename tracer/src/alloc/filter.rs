//! Turning `--alloc-filter` terms into the in-kernel filter (`wire::alloc::AllocConfig`):
//! call-site address ranges computed from kallsyms (a module's text, or the functions whose
//! name has a prefix), and cache names the programs match once per cache.

use std::path::Path;

use anyhow::{Result, bail};
use serde::Serialize;
use tracer_fs::wire::alloc::{
    ALL, AllocConfig, CACHE_NAME_LEN, MAX_CACHES, MAX_RANGES, REUSE_CHECK, STACK_PER_OBJECT,
};

use super::{AllocFilter, AllocOptions, symbols::SymTable};

/// What the filter became, for the stream's `alloc_filter` line.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FilterSummary {
    pub terms: Vec<String>,
    /// Address ranges given to the kernel.
    pub ranges: usize,
    /// Functions matching the terms.
    pub matched_functions: usize,
    /// Functions not matching but inside a range, because more ranges than the kernel side
    /// holds had to be merged across the smallest gaps (a few examples in `foreign_examples`).
    pub foreign_functions: usize,
    pub foreign_examples: Vec<String>,
    pub include_caches: Vec<String>,
    pub exclude_caches: Vec<String>,
    pub all: bool,
    /// Filesystem types the terms name, used to charge allocations to mounts.
    pub fs_types: Vec<String>,
    pub notes: Vec<String>,
}

pub struct Built {
    pub config: AllocConfig,
    pub summary: FilterSummary,
}

fn cache_name(name: &str) -> Result<[u8; CACHE_NAME_LEN]> {
    let b = name.as_bytes();
    if b.len() >= CACHE_NAME_LEN {
        bail!(
            "cache name {name} is longer than {} bytes",
            CACHE_NAME_LEN - 1
        );
    }
    let mut out = [0u8; CACHE_NAME_LEN];
    out[..b.len()].copy_from_slice(b);
    Ok(out)
}

/// Ranges `[start, end)` of the symbols `pick` selects, merged where contiguous.
fn ranges_of(syms: &SymTable, pick: impl Fn(&super::symbols::Sym) -> bool) -> Vec<[u64; 2]> {
    let mut out: Vec<[u64; 2]> = vec![];
    for s in syms.symbols().iter().filter(|s| pick(s)) {
        let (a, e) = (s.addr, s.addr + s.len);
        match out.last_mut() {
            Some(last) if last[1] >= a => last[1] = last[1].max(e),
            _ => out.push([a, e]),
        }
    }
    out
}

/// Sorts and merges ranges, then closes the smallest gaps until at most `max` remain.
pub fn merge_ranges(mut r: Vec<[u64; 2]>, max: usize) -> Vec<[u64; 2]> {
    r.sort();
    let mut merged: Vec<[u64; 2]> = vec![];
    for x in r {
        match merged.last_mut() {
            Some(last) if last[1] >= x[0] => last[1] = last[1].max(x[1]),
            _ => merged.push(x),
        }
    }
    if merged.len() <= max || max == 0 {
        return merged;
    }
    // Close the (len - max) smallest gaps.
    let mut gaps: Vec<(u64, usize)> = (1..merged.len())
        .map(|i| (merged[i][0] - merged[i - 1][1], i))
        .collect();
    gaps.sort();
    let mut close = vec![false; merged.len()];
    for &(_, i) in gaps.iter().take(merged.len() - max) {
        close[i] = true;
    }
    let mut out: Vec<[u64; 2]> = vec![];
    for (i, x) in merged.into_iter().enumerate() {
        if close[i] {
            out.last_mut().expect("gap after a range")[1] = x[1];
        } else {
            out.push(x);
        }
    }
    out
}

/// Filesystem types the kernel knows (`/proc/filesystems`).
fn known_fs_types() -> Vec<String> {
    std::fs::read_to_string("/proc/filesystems")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().last().map(str::to_string))
        .collect()
}

pub fn build(opts: &AllocOptions, syms: &SymTable) -> Result<Built> {
    build_with(opts, syms, &known_fs_types(), Path::new("/sys/module"))
}

pub fn build_with(
    opts: &AllocOptions,
    syms: &SymTable,
    fs_types: &[String],
    sys_module: &Path,
) -> Result<Built> {
    opts.check()?;
    let mut cfg = AllocConfig::empty();
    let mut sum = FilterSummary::default();
    let mut ranges: Vec<[u64; 2]> = vec![];
    let mut prefixes: Vec<String> = vec![];
    let mut modules: Vec<String> = vec![];
    let fs_hint = |name: &str, sum: &mut FilterSummary| {
        let t = name.trim_end_matches('_');
        // tmpfs is shmem's code.
        let t = if t == "shmem" { "tmpfs" } else { t };
        if fs_types.iter().any(|f| f == t) && !sum.fs_types.iter().any(|f| f == t) {
            sum.fs_types.push(t.to_string());
        }
    };
    for f in &opts.filters {
        match f {
            AllocFilter::Module(m) => {
                sum.terms.push(format!("module:{m}"));
                fs_hint(m, &mut sum);
                if syms
                    .symbols()
                    .iter()
                    .any(|s| s.module.as_deref() == Some(m))
                {
                    modules.push(m.clone());
                } else if sys_module.join(m).join("sections").exists() {
                    bail!("module {m} is loaded but /proc/kallsyms lists none of its functions");
                } else {
                    sum.notes.push(format!(
                        "module {m} is not a loaded module (built in?): using the functions named {m}_*"
                    ));
                    prefixes.push(format!("{m}_"));
                }
            }
            AllocFilter::Sym(p) => {
                sum.terms.push(format!("sym:{p}"));
                fs_hint(p, &mut sum);
                prefixes.push(p.clone());
            }
            AllocFilter::Cache(c) => {
                sum.terms.push(format!("cache:{c}"));
                sum.include_caches.push(c.clone());
            }
            AllocFilter::All => {
                sum.terms.push("all".into());
                sum.all = true;
            }
        }
    }
    let pick = |s: &super::symbols::Sym| {
        s.module.as_ref().is_some_and(|m| modules.contains(m))
            || prefixes.iter().any(|p| s.name.starts_with(p.as_str()))
    };
    if !modules.is_empty() || !prefixes.is_empty() {
        ranges.extend(ranges_of(syms, pick));
        sum.matched_functions = syms.symbols().iter().filter(|s| pick(s)).count();
        if sum.matched_functions == 0 {
            sum.notes
                .push("no function matches the module/sym terms: they track nothing".into());
        }
    }
    let ranges = merge_ranges(ranges, MAX_RANGES);
    for r in &ranges {
        let i0 = syms.symbols().partition_point(|s| s.addr < r[0]);
        for s in syms.symbols()[i0..].iter().take_while(|s| s.addr < r[1]) {
            if !pick(s) {
                sum.foreign_functions += 1;
                if sum.foreign_examples.len() < 8 {
                    sum.foreign_examples.push(s.name.clone());
                }
            }
        }
    }
    if sum.foreign_functions > 0 {
        sum.notes.push(format!(
            "more than {MAX_RANGES} ranges: merged across the smallest gaps, which adds {} other functions",
            sum.foreign_functions
        ));
    }
    for (i, r) in ranges.iter().enumerate() {
        cfg.ranges[i] = *r;
    }
    cfg.nr_ranges = ranges.len() as u32;
    sum.ranges = ranges.len();
    // Objects of names_cache (path names) live for one syscall: tracking them costs a hash
    // insert and delete per path lookup and finds nothing. Left out of `all` unless named.
    if sum.all && !sum.include_caches.iter().any(|c| c == "names_cache") {
        sum.exclude_caches.push("names_cache".into());
    }
    if sum.include_caches.len() > MAX_CACHES || sum.exclude_caches.len() > MAX_CACHES {
        bail!("at most {MAX_CACHES} cache: terms");
    }
    for (i, c) in sum.include_caches.iter().enumerate() {
        cfg.include_caches[i] = cache_name(c)?;
    }
    for (i, c) in sum.exclude_caches.iter().enumerate() {
        cfg.exclude_caches[i] = cache_name(c)?;
    }
    cfg.nr_include = sum.include_caches.len() as u32;
    cfg.nr_exclude = sum.exclude_caches.len() as u32;
    cfg.enabled = 1;
    cfg.flags = if sum.all { ALL } else { 0 }
        | if opts.reuse_check { REUSE_CHECK } else { 0 }
        | if opts.stack_per_object {
            STACK_PER_OBJECT
        } else {
            0
        };
    cfg.sample_every = opts.sample_every.max(1);
    cfg.min_size = opts.min_size;
    cfg.max_size = opts.max_size;
    Ok(Built {
        config: cfg,
        summary: sum,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "ffffffff81000000 T xfs_a\n\
        ffffffff81000100 t helper\n\
        ffffffff81000200 t xfs_b\n\
        ffffffff81000300 t xfs_c\n\
        ffffffff81000400 t other\n\
        ffffffffc0000000 t m_fn\t[mymod]\n\
        ffffffffc0000100 t m_fn2\t[mymod]\n\
        ffffffffc0001000 t n_fn\t[othermod]\n";

    fn opts(f: &[&str]) -> AllocOptions {
        AllocOptions {
            filters: f.iter().map(|s| s.parse().unwrap()).collect(),
            ..AllocOptions::default()
        }
    }

    #[test]
    fn prefix_and_module_ranges() {
        let t = SymTable::parse(TEXT);
        let fs = vec!["xfs".to_string(), "tmpfs".to_string()];
        let b = build_with(
            &opts(&["sym:xfs_", "module:mymod"]),
            &t,
            &fs,
            Path::new("/none"),
        )
        .unwrap();
        let r = &b.config.ranges[..b.config.nr_ranges as usize];
        assert_eq!(
            r,
            &[
                [0xffffffff81000000, 0xffffffff81000100],
                [0xffffffff81000200, 0xffffffff81000400],
                [0xffffffffc0000000, 0xffffffffc0001000],
            ]
        );
        assert_eq!(b.summary.fs_types, vec!["xfs"]);
        assert_eq!(b.summary.matched_functions, 5);
        assert_eq!(b.config.enabled, 1);
        assert_eq!(b.config.flags, REUSE_CHECK);
    }

    #[test]
    fn builtin_module_falls_back_to_prefix() {
        let t = SymTable::parse(TEXT);
        let b = build_with(&opts(&["module:xfs"]), &t, &[], Path::new("/none")).unwrap();
        assert_eq!(b.config.nr_ranges, 2);
        assert!(b.summary.notes[0].contains("built in"));
    }

    #[test]
    fn nothing_matches_tracks_nothing() {
        let t = SymTable::parse(TEXT);
        let b = build_with(&opts(&["sym:nope_"]), &t, &[], Path::new("/none")).unwrap();
        assert_eq!((b.config.enabled, b.config.nr_ranges), (1, 0));
        assert!(b.summary.notes.iter().any(|n| n.contains("track nothing")));
    }

    #[test]
    fn caches_and_all() {
        let t = SymTable::parse(TEXT);
        let b = build_with(&opts(&["all", "cache:filp"]), &t, &[], Path::new("/none")).unwrap();
        assert_eq!(b.config.flags, ALL | REUSE_CHECK);
        assert_eq!((b.config.nr_include, b.config.nr_exclude), (1, 1));
        assert_eq!(&b.config.include_caches[0][..5], b"filp\0");
        assert_eq!(&b.config.exclude_caches[0][..12], b"names_cache\0");
    }

    #[test]
    fn too_many_ranges_merge_smallest_gaps() {
        let r = vec![[0, 1], [10, 11], [12, 13], [100, 101]];
        assert_eq!(
            merge_ranges(r.clone(), 3),
            vec![[0, 1], [10, 13], [100, 101]]
        );
        assert_eq!(merge_ranges(r.clone(), 2), vec![[0, 13], [100, 101]]);
        assert_eq!(merge_ranges(r, 10).len(), 4);
    }
}
