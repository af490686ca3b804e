//! The allocation state as the TUI shows it: totals against the map's cap, what could not
//! be tracked, and per mount alive (and overall) the outstanding allocations by call site
//! with their growth since the previous read. Built by the tracker at each of its reads,
//! from the allocations it read anyway; pure data, cheap to clone into a snapshot.

use std::collections::HashMap;

use serde::Serialize;
use tracer_fs::alloc::{Allocation, Charging, MountWindow};

/// Outstanding allocations of one call site.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SiteRow {
    pub call_site: u64,
    /// `symbol+0xoff/0xlen`, or the address.
    pub function: String,
    /// The slab cache of its objects (empty: kmalloc).
    pub cache: String,
    pub count: u64,
    pub bytes: u64,
    /// Objects per second since the previous read (negative: being freed).
    pub growth_per_s: f64,
}

/// One mount alive and what is charged to it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct MountAlloc {
    pub target: String,
    pub source: String,
    pub fs_type: String,
    pub mounted_ns: u64,
    pub count: u64,
    pub bytes: u64,
    pub growth_per_s: f64,
    /// Largest first (bytes), at most [`SITES`].
    pub sites: Vec<SiteRow>,
}

/// A leak report waiting for its grace period.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PendingReport {
    pub target: String,
    pub due_ns: u64,
}

/// Everything allocation tracking has to say at one read.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct AllocView {
    pub ts_ns: u64,
    /// The filter's terms, as given.
    pub filter: Vec<String>,
    /// What the filter could not do, or why tracking is weaker (no raw tracepoint, ...).
    pub notes: Vec<String>,
    pub outstanding: u64,
    pub bytes: u64,
    pub growth_per_s: f64,
    /// The kernel map's size (`--alloc-max-entries`): outstanding can not exceed it.
    pub cap: u32,
    /// Track one allocation in this many.
    pub sample_every: u32,
    pub tracked_total: u64,
    pub freed_total: u64,
    /// Not tracked: the map was full.
    pub untracked_map_full: u64,
    /// Runs of the free programs the kernel skipped (frees possibly missed).
    pub free_misses: u64,
    /// Tracked addresses allocated again before their free was seen.
    pub reused: u64,
    pub stack_failures: u64,
    pub reports: u64,
    pub pending: Vec<PendingReport>,
    /// Every outstanding allocation by call site, largest first, at most [`SITES`].
    pub sites: Vec<SiteRow>,
    /// The mounts alive, in mount order.
    pub mounts: Vec<MountAlloc>,
}

/// Call sites kept per list.
pub const SITES: usize = 50;

/// What the previous read saw, for growth rates: (ts, objects) overall, per mount window,
/// per (window, call site) (window 0: overall).
#[derive(Default)]
pub struct Growth {
    last_ns: Option<u64>,
    total: u64,
    mounts: HashMap<u64, u64>,
    sites: HashMap<(u64, u64), u64>,
}

fn rate(now: u64, prev: Option<u64>, dt_s: Option<f64>) -> f64 {
    match (prev, dt_s) {
        (Some(p), Some(dt)) if dt > 0.0 => (now as f64 - p as f64) / dt,
        _ => 0.0,
    }
}

/// Groups by call site, largest first (bytes, then count, then address), at most `SITES`.
fn sites<'a>(
    allocs: impl Iterator<Item = &'a Allocation>,
    frame: &dyn Fn(u64) -> String,
) -> Vec<SiteRow> {
    let mut by: HashMap<u64, SiteRow> = HashMap::new();
    for a in allocs {
        let s = by.entry(a.call_site).or_insert_with(|| SiteRow {
            call_site: a.call_site,
            cache: a.cache.clone(),
            ..Default::default()
        });
        s.count += 1;
        s.bytes += a.size;
    }
    let mut v: Vec<SiteRow> = by.into_values().collect();
    v.sort_by(|a, b| {
        b.bytes
            .cmp(&a.bytes)
            .then(b.count.cmp(&a.count))
            .then(a.call_site.cmp(&b.call_site))
    });
    v.truncate(SITES);
    for s in &mut v {
        s.function = frame(s.call_site);
    }
    v
}

impl Growth {
    /// The per-mount and per-call-site part of the view (the caller fills the counters),
    /// with growth against the previous call.
    pub fn update<'w>(
        &mut self,
        now_ns: u64,
        allocs: &[Allocation],
        open: impl Iterator<Item = &'w MountWindow>,
        charging: &Charging,
        frame: &dyn Fn(u64) -> String,
    ) -> AllocView {
        let dt = self
            .last_ns
            .filter(|&t| now_ns > t)
            .map(|t| (now_ns - t) as f64 / 1e9);
        let mut next = Growth {
            last_ns: Some(now_ns),
            total: allocs.len() as u64,
            ..Default::default()
        };
        let mut site_rows = sites(allocs.iter(), frame);
        for s in &mut site_rows {
            next.sites.insert((0, s.call_site), s.count);
            s.growth_per_s = rate(
                s.count,
                self.last_ns
                    .map(|_| *self.sites.get(&(0, s.call_site)).unwrap_or(&0)),
                dt,
            );
        }
        let mut mounts = vec![];
        for w in open {
            let charged: Vec<&Allocation> = charging.charged(w, allocs).collect();
            let count = charged.len() as u64;
            let mut rows = sites(charged.iter().copied(), frame);
            // A window first seen now grew from nothing since its mount.
            let known = self.mounts.contains_key(&w.id);
            for s in &mut rows {
                next.sites.insert((w.id, s.call_site), s.count);
                s.growth_per_s = rate(
                    s.count,
                    known.then(|| *self.sites.get(&(w.id, s.call_site)).unwrap_or(&0)),
                    dt,
                );
            }
            next.mounts.insert(w.id, count);
            mounts.push(MountAlloc {
                target: w.target.clone(),
                source: w.source.clone(),
                fs_type: w.fs_type.clone(),
                mounted_ns: w.start_ns,
                count,
                bytes: charged.iter().map(|a| a.size).sum(),
                growth_per_s: rate(count, self.mounts.get(&w.id).copied(), dt),
                sites: rows,
            });
        }
        let view = AllocView {
            ts_ns: now_ns,
            outstanding: allocs.len() as u64,
            bytes: allocs.iter().map(|a| a.size).sum(),
            growth_per_s: rate(allocs.len() as u64, self.last_ns.map(|_| self.total), dt),
            sites: site_rows,
            mounts,
            ..Default::default()
        };
        *self = next;
        view
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(ptr: u64, ts: u64, site: u64, size: u64) -> Allocation {
        Allocation {
            ptr,
            ts_ns: ts,
            call_site: site,
            cache: String::new(),
            size,
            stack_id: -1,
            pid: 1,
            tgid: 1,
            comm: "t".into(),
        }
    }

    fn window(id: u64, target: &str, start: u64) -> MountWindow {
        MountWindow {
            id,
            target: target.into(),
            source: "none".into(),
            fs_type: "tmpfs".into(),
            start_ns: start,
            end_ns: None,
            lazy: false,
            failed: None,
        }
    }

    #[test]
    fn charges_mounts_by_call_site_and_measures_growth() {
        let frame = |s: u64| format!("f{s:x}");
        let w = [window(1, "/mnt/a", 100)];
        let mut g = Growth::default();
        let first = vec![a(1, 50, 0x10, 8), a(2, 150, 0x10, 8), a(3, 160, 0x20, 100)];
        let v = g.update(
            1_000_000_000,
            &first,
            w.iter(),
            &Charging::default(),
            &frame,
        );
        assert_eq!((v.outstanding, v.bytes), (3, 116));
        assert_eq!(v.growth_per_s, 0.0, "no previous read: no rate");
        let m = &v.mounts[0];
        assert_eq!(
            (m.count, m.bytes),
            (2, 108),
            "the one before the mount is not its"
        );
        assert_eq!(m.sites[0].function, "f20", "largest bytes first");
        // Half a second later: three more at 0x10, the 0x20 one freed.
        let second = vec![
            a(1, 50, 0x10, 8),
            a(2, 150, 0x10, 8),
            a(4, 170, 0x10, 8),
            a(5, 180, 0x10, 8),
            a(6, 190, 0x10, 8),
        ];
        let v = g.update(
            1_500_000_000,
            &second,
            w.iter(),
            &Charging::default(),
            &frame,
        );
        assert_eq!(v.growth_per_s, 4.0);
        let m = &v.mounts[0];
        assert_eq!(m.growth_per_s, 4.0);
        assert_eq!((m.sites[0].count, m.sites[0].growth_per_s), (4, 6.0));
        assert_eq!(m.sites.len(), 1, "the freed call site is gone");
        assert_eq!(v.sites[0].growth_per_s, 6.0);
    }
}
