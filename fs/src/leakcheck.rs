//! Which objects of a leak report are leaks: cycle confirmation.
//!
//! "Allocated by the filesystem's code during the mount and still allocated after its
//! umount" is true of leaks, but also of what a first mount creates lazily and keeps on
//! purpose for later mounts (xfs's UUID table on the first xfs mount since boot, caches,
//! per-filesystem-type structures): a single mount cycle cannot tell them apart. Repeating
//! the cycle can. A call site that leaks keeps objects from every cycle that takes its path;
//! a table made at first use is made once and reused. So each report is judged against the
//! earlier cycles (mount windows) of the same filesystem type seen by this tracer:
//!
//! - **leak (confirmed)**: the object's call site still has objects allocated from two or
//!   more cycles (this one and an earlier one, or two earlier ones);
//! - **one-time**: an object of an earlier cycle, still allocated, whose call site kept
//!   objects from that cycle only, none from the cycles since: a first-use allocation (or a
//!   leak on a path taken once: repeating that path tells);
//! - **unconfirmed**: an object of this cycle whose call site has nothing left from any
//!   earlier cycle: one cycle cannot say (the next cycle of the same type decides);
//! - **uncertain**: an object of this cycle whose free may have been missed (the kernel
//!   skipped runs of the free programs, or tracked addresses were reused unseen, after it
//!   was allocated), or whose owner is unclear (a lazy umount, another mount of the same
//!   type alive when it was allocated). A missed free leaves a free slot that the slab hands
//!   out again, which the reuse check sees and drops: an object still allocated after a
//!   later cycle of its type is verified, and judged like the others from then on (doubts
//!   about its owner stay).
//!
//! Failed mounts are compared with failed mounts of the same type only (an error path is
//! not taken by healthy mounts). Only objects still allocated count: the rule needs no
//! memory reads, and works the same on a live tracer and on its recording.
//!
//! Reachability (kmemleak's scan of global data and live objects for the object's address)
//! would decide a first cycle's objects at once; it needs the kernel's memory read at report
//! time and is not done here.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::alloc::{Allocation, MountWindow};

/// What the report concludes about one object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// Confirmed by the cycle rule.
    Leak,
    /// Kept from one earlier cycle only.
    OneTime,
    /// Seen in one cycle: not decided yet.
    Unconfirmed,
    /// Its free may have been missed, or its owner is unclear.
    Uncertain,
}

impl Class {
    pub const ALL: [Class; 4] = [
        Class::Leak,
        Class::OneTime,
        Class::Unconfirmed,
        Class::Uncertain,
    ];

    /// The name used in JSON and headings.
    pub fn name(self) -> &'static str {
        match self {
            Class::Leak => "confirmed",
            Class::OneTime => "one_time",
            Class::Unconfirmed => "unconfirmed",
            Class::Uncertain => "uncertain",
        }
    }
}

/// Why an object of the current cycle may not be what the report says. `owner` doubts
/// (lazy umount, another mount alive) are not resolved by time; `free` doubts (a free that
/// may have been missed) are, once the object outlives a later cycle.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Doubts {
    pub free: Vec<String>,
    pub owner: Vec<String>,
}

impl Doubts {
    pub fn is_empty(&self) -> bool {
        self.free.is_empty() && self.owner.is_empty()
    }
}

/// One object and the verdict on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Judged<'a> {
    pub obj: &'a Allocation,
    pub class: Class,
    /// The rule that decided, in words.
    pub why: String,
    /// The cycle (of its filesystem type) it was allocated in.
    pub cycle: u64,
    /// It belongs to an earlier cycle than the report's.
    pub earlier: bool,
}

/// A report's verdicts: on the objects of its own window, and on those of earlier cycles of
/// the same filesystem type that are still allocated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Judgement<'a> {
    /// This window's cycle number among its filesystem type's (1: the first seen).
    pub cycle: u64,
    /// `xfs`, or `failed xfs mounts`.
    pub kind: String,
    pub current: Vec<Judged<'a>>,
    pub earlier: Vec<Judged<'a>>,
}

impl Judgement<'_> {
    pub fn count(&self, class: Class) -> usize {
        self.current
            .iter()
            .chain(&self.earlier)
            .filter(|j| j.class == class)
            .count()
    }
}

#[derive(Clone, Debug)]
struct Cycle {
    number: u64,
    window: MountWindow,
}

#[derive(Clone, Debug, Default)]
struct Kind {
    cycles: u64,
    /// Earlier cycles that may still have objects allocated (emptied ones are dropped: a
    /// window gains no objects after it closed).
    kept: Vec<Cycle>,
}

/// The cycles seen so far, per filesystem type (and failed or not).
#[derive(Clone, Debug, Default)]
pub struct Ledger {
    kinds: BTreeMap<(String, bool), Kind>,
}

fn kind_of(w: &MountWindow) -> (String, bool) {
    let t = if w.fs_type.is_empty() {
        "?".to_string()
    } else {
        w.fs_type.clone()
    };
    (t, w.failed.is_some())
}

/// `1-3, 7` from sorted numbers.
pub fn ranges(v: &[u64]) -> String {
    let mut s = String::new();
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j + 1 < v.len() && v[j + 1] == v[j] + 1 {
            j += 1;
        }
        if !s.is_empty() {
            s.push_str(", ");
        }
        if j == i {
            let _ = write!(s, "{}", v[i]);
        } else {
            let _ = write!(s, "{}-{}", v[i], v[j]);
        }
        i = j + 1;
    }
    s
}

fn cycles_word(n: usize) -> &'static str {
    if n == 1 { "cycle" } else { "cycles" }
}

impl Ledger {
    /// How many cycles of `w`'s kind were judged so far.
    pub fn cycles(&self, w: &MountWindow) -> u64 {
        self.kinds.get(&kind_of(w)).map_or(0, |k| k.cycles)
    }

    /// Judges the report of window `w` (closed): `current` are the objects charged to it,
    /// `allocs` everything allocated now, `doubts` says why an object of `current` may be
    /// wrong. Then `w` becomes the latest cycle of its kind.
    pub fn judge<'a>(
        &mut self,
        w: &MountWindow,
        current: &[&'a Allocation],
        allocs: &'a [Allocation],
        doubts: &dyn Fn(&Allocation) -> Doubts,
    ) -> Judgement<'a> {
        let key = kind_of(w);
        let kind_name = if key.1 {
            format!("failed {} mounts", key.0)
        } else {
            key.0.clone()
        };
        let k = self.kinds.entry(key).or_default();
        k.cycles += 1;
        let cycle = k.cycles;
        // Earlier cycles' objects still allocated: each object to the earliest cycle whose
        // window holds it (windows of one kind rarely overlap; an object of this window
        // that an earlier one also holds is that one's).
        let mut earlier: Vec<(u64, &'a Allocation)> = Vec::new();
        let mut nonempty: BTreeSet<u64> = BTreeSet::new();
        for a in allocs {
            if let Some(c) = k.kept.iter().find(|c| c.window.contains(a.ts_ns)) {
                earlier.push((c.number, a));
                nonempty.insert(c.number);
            }
        }
        let current: Vec<&'a Allocation> = current
            .iter()
            .copied()
            .filter(|a| !k.kept.iter().any(|c| c.window.contains(a.ts_ns)))
            .collect();
        // Cycles with objects still allocated, per call site.
        let mut sites: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
        for (n, a) in &earlier {
            sites.entry(a.call_site).or_default().insert(*n);
        }
        for a in &current {
            sites.entry(a.call_site).or_default().insert(cycle);
        }
        let site_cycles = |site: u64| -> Vec<u64> {
            sites
                .get(&site)
                .map(|s| s.iter().copied().collect())
                .unwrap_or_default()
        };
        let mut out = Judgement {
            cycle,
            kind: kind_name.clone(),
            ..Default::default()
        };
        for a in current {
            let cs = site_cycles(a.call_site);
            let others: Vec<u64> = cs.iter().copied().filter(|&n| n != cycle).collect();
            let d = doubts(a);
            let (class, why) = if !d.is_empty() {
                let mut why = d
                    .owner
                    .iter()
                    .chain(&d.free)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("; ");
                if d.owner.is_empty() {
                    let _ = write!(
                        why,
                        "; not verified yet (it is, if still allocated after a later cycle of {kind_name})"
                    );
                }
                if !others.is_empty() {
                    let _ = write!(
                        why,
                        "; its call site also kept objects from {} {} of {kind_name}",
                        cycles_word(others.len()),
                        ranges(&others)
                    );
                }
                (Class::Uncertain, why)
            } else if !others.is_empty() {
                (
                    Class::Leak,
                    format!(
                        "cycle rule: its call site kept objects from {} {} of {kind_name} (of {cycle} so far), still allocated",
                        cycles_word(cs.len()),
                        ranges(&cs)
                    ),
                )
            } else if cycle == 1 {
                (
                    Class::Unconfirmed,
                    format!(
                        "unconfirmed: seen in 1 cycle (the first {kind_name} cycle seen): a later cycle of {kind_name} confirms it (objects from its call site again) or shows it one-time (none)"
                    ),
                )
            } else {
                (
                    Class::Unconfirmed,
                    format!(
                        "unconfirmed: seen in 1 cycle (cycle {cycle} of {kind_name}; the {} before kept nothing from its call site): a later cycle confirms it or shows it one-time",
                        cycles_word((cycle - 1) as usize)
                    ),
                )
            };
            out.current.push(Judged {
                obj: a,
                class,
                why,
                cycle,
                earlier: false,
            });
        }
        for (n, a) in earlier {
            let cs = site_cycles(a.call_site);
            let c = k.kept.iter().find(|c| c.number == n).expect("kept cycle");
            let (class, why) = if c.window.lazy {
                (
                    Class::Uncertain,
                    format!(
                        "from cycle {n} of {kind_name}, ended by a lazy umount (MNT_DETACH) of {}: that filesystem may still be alive",
                        c.window.target
                    ),
                )
            } else if cs.len() >= 2 {
                (
                    Class::Leak,
                    format!(
                        "cycle rule: from cycle {n} ({}); its call site kept objects from {} {} of {kind_name} (of {cycle} so far), still allocated",
                        c.window.target,
                        cycles_word(cs.len()),
                        ranges(&cs)
                    ),
                )
            } else {
                let since = cycle - n;
                (
                    Class::OneTime,
                    format!(
                        "one-time: from cycle {n} of {kind_name} ({}); its call site kept nothing from the {since} {} of {kind_name} since: made once and kept for later mounts (a table or cache made at first use since boot?); a leak on a path taken only once looks the same",
                        c.window.target,
                        cycles_word(since as usize)
                    ),
                )
            };
            out.earlier.push(Judged {
                obj: a,
                class,
                why,
                cycle: n,
                earlier: true,
            });
        }
        k.kept.retain(|c| nonempty.contains(&c.number));
        if !out.current.is_empty() {
            k.kept.push(Cycle {
                number: cycle,
                window: w.clone(),
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn win(id: u64, start: u64, end: u64) -> MountWindow {
        MountWindow {
            id,
            target: format!("/mnt/{id}"),
            source: "/dev/loop0".into(),
            fs_type: "xfs".into(),
            start_ns: start,
            end_ns: Some(end),
            lazy: false,
            failed: None,
        }
    }

    fn obj(ptr: u64, ts: u64, site: u64) -> Allocation {
        Allocation {
            ptr,
            ts_ns: ts,
            call_site: site,
            cache: String::new(),
            size: 16,
            stack_id: -1,
            pid: 1,
            tgid: 1,
            comm: "mount".into(),
        }
    }

    fn none(_: &Allocation) -> Doubts {
        Doubts::default()
    }

    fn classes(j: &Judgement) -> Vec<(u64, Class, bool)> {
        let mut v: Vec<_> = j
            .current
            .iter()
            .chain(&j.earlier)
            .map(|x| (x.obj.ptr, x.class, x.earlier))
            .collect();
        v.sort();
        v
    }

    /// Judges window `w` with everything in `allocs` charged by time.
    fn judge<'a>(l: &mut Ledger, w: &MountWindow, allocs: &'a [Allocation]) -> Judgement<'a> {
        let cur: Vec<&Allocation> = allocs.iter().filter(|a| w.contains(a.ts_ns)).collect();
        l.judge(w, &cur, allocs, &none)
    }

    #[test]
    fn a_first_use_table_is_unconfirmed_then_one_time() {
        let mut l = Ledger::default();
        // Cycle 1 allocates the table (site 0xa) and nothing else stays.
        let allocs = vec![obj(1, 15, 0xa)];
        let j = judge(&mut l, &win(1, 10, 20), &allocs);
        assert_eq!(classes(&j), vec![(1, Class::Unconfirmed, false)]);
        assert!(
            j.current[0].why.contains("seen in 1 cycle"),
            "{}",
            j.current[0].why
        );
        // Cycles 2 and 3 keep nothing: the table is one-time.
        let j = judge(&mut l, &win(2, 30, 40), &allocs);
        assert_eq!(classes(&j), vec![(1, Class::OneTime, true)]);
        let j = judge(&mut l, &win(3, 50, 60), &allocs);
        assert_eq!(classes(&j), vec![(1, Class::OneTime, true)]);
        assert!(
            j.earlier[0].why.contains("nothing from the 2 cycles"),
            "{}",
            j.earlier[0].why
        );
        assert_eq!(j.cycle, 3);
    }

    #[test]
    fn a_leak_per_cycle_is_confirmed_from_the_second_cycle() {
        let mut l = Ledger::default();
        let mut allocs = vec![obj(1, 15, 0xb), obj(2, 16, 0xb)];
        let j = judge(&mut l, &win(1, 10, 20), &allocs);
        assert_eq!(j.count(Class::Unconfirmed), 2);
        allocs.extend([obj(3, 35, 0xb), obj(4, 36, 0xb)]);
        let j = judge(&mut l, &win(2, 30, 40), &allocs);
        assert_eq!(
            classes(&j),
            vec![
                (1, Class::Leak, true),
                (2, Class::Leak, true),
                (3, Class::Leak, false),
                (4, Class::Leak, false)
            ]
        );
        assert!(
            j.current[0].why.contains("cycles 1-2 of xfs"),
            "{}",
            j.current[0].why
        );
        // A cycle that does not take the path: the earlier ones stay confirmed.
        let j = judge(&mut l, &win(3, 50, 60), &allocs);
        assert_eq!(j.count(Class::Leak), 4);
        assert!(j.current.is_empty());
    }

    #[test]
    fn freed_objects_leave_the_ledger() {
        let mut l = Ledger::default();
        let allocs = vec![obj(1, 15, 0xb)];
        judge(&mut l, &win(1, 10, 20), &allocs);
        // Freed before the second report: nothing left, the site is not confirmed.
        let allocs2 = vec![obj(3, 35, 0xb)];
        let j = judge(&mut l, &win(2, 30, 40), &allocs2);
        assert_eq!(classes(&j), vec![(3, Class::Unconfirmed, false)]);
        assert!(
            j.current[0].why.contains("cycle 2 of xfs"),
            "{}",
            j.current[0].why
        );
    }

    #[test]
    fn doubts_make_objects_uncertain_until_a_later_cycle_verifies_them() {
        let mut l = Ledger::default();
        let allocs = vec![obj(1, 15, 0xb)];
        let cur: Vec<&Allocation> = allocs.iter().collect();
        let missed = |_: &Allocation| Doubts {
            free: vec!["3 runs of the free programs were skipped".into()],
            owner: vec![],
        };
        let j = l.judge(&win(1, 10, 20), &cur, &allocs, &missed);
        assert_eq!(classes(&j), vec![(1, Class::Uncertain, false)]);
        assert!(
            j.current[0].why.contains("skipped; not verified yet"),
            "{}",
            j.current[0].why
        );
        // Still there after cycle 2 (which kept nothing): verified, and one-time.
        let j = judge(&mut l, &win(2, 30, 40), &allocs);
        assert_eq!(classes(&j), vec![(1, Class::OneTime, true)]);
    }

    #[test]
    fn failed_mounts_and_other_types_are_separate_kinds() {
        let mut l = Ledger::default();
        let allocs = vec![obj(1, 15, 0xb), obj(2, 35, 0xb), obj(3, 55, 0xb)];
        judge(&mut l, &win(1, 10, 20), &allocs);
        let mut f = win(2, 30, 40);
        f.failed = Some(-5);
        let j = judge(&mut l, &f, &allocs);
        assert_eq!(j.kind, "failed xfs mounts");
        assert_eq!(classes(&j), vec![(2, Class::Unconfirmed, false)]);
        let mut e = win(3, 50, 60);
        e.fs_type = "ext4".into();
        let j = judge(&mut l, &e, &allocs);
        assert_eq!(classes(&j), vec![(3, Class::Unconfirmed, false)]);
        // The next xfs cycle sees cycle 1's object (kind xfs) only.
        let j = judge(&mut l, &win(4, 70, 80), &allocs);
        assert_eq!(classes(&j), vec![(1, Class::OneTime, true)]);
    }

    #[test]
    fn lazy_umounts_keep_their_objects_uncertain() {
        let mut l = Ledger::default();
        let allocs = vec![obj(1, 15, 0xb)];
        let mut w = win(1, 10, 20);
        w.lazy = true;
        let cur: Vec<&Allocation> = allocs.iter().collect();
        let lazy = |_: &Allocation| Doubts {
            free: vec![],
            owner: vec!["lazy umount".into()],
        };
        let j = l.judge(&w, &cur, &allocs, &lazy);
        assert_eq!(j.current[0].class, Class::Uncertain);
        assert!(!j.current[0].why.contains("not verified yet"));
        let j = judge(&mut l, &win(2, 30, 40), &allocs);
        assert_eq!(classes(&j), vec![(1, Class::Uncertain, true)]);
    }

    #[test]
    fn ranges_compress() {
        assert_eq!(ranges(&[1, 2, 3, 5, 7, 8]), "1-3, 5, 7-8");
        assert_eq!(ranges(&[4]), "4");
        assert_eq!(ranges(&[]), "");
    }
}
