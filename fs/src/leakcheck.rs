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
//!   leak on a path taken once: repeating that path tells); when the site's only objects of
//!   this cycle are unverified (below), the earlier object stays uncertain until the next;
//! - **unconfirmed**: an object of this cycle whose call site has nothing left from any
//!   earlier cycle: one cycle cannot say (the next cycle of the same type decides);
//! - **uncertain**: an object of this cycle whose free may have been missed (the kernel
//!   skipped runs of the free programs, or tracked addresses were reused unseen, after it
//!   was allocated), or whose owner is unclear (a lazy umount, another mount of the same
//!   type alive when it was allocated). A missed free leaves a free slot that the slab
//!   hands out again, which the reuse check sees and drops; but a slot can stay unused for
//!   cycles (seen under qemu: `xfs_buf` objects freed from RCU callbacks while a program
//!   ran). So an object whose free may have been missed and that is still allocated later
//!   counts as evidence only next to a certain object of its call site: then it is a
//!   confirmed leak like the others; otherwise it stays uncertain ("freed unseen, or
//!   kept"), never one-time by itself. Doubts about the owner stay for good.
//!
//! Only objects without doubts are evidence for the rule. Failed mounts are compared with
//! failed mounts of the same type only (an error path is not taken by healthy mounts). Only
//! objects still allocated count: the rule needs no memory reads, and the verdicts are made
//! once, live, and recorded, so a report of the recording says the same.
//!
//! - **referenced**: reachability, kmemleak's rule, decides before all of the above: an
//!   object whose address global data holds (the scan of [`crate::reach`], run by the
//!   tracer when it makes the report) is kept on purpose, in its first cycle already, and is
//!   no evidence for its call site. Only global data is scanned, not the heap: an object
//!   reached only through another heap object is judged by the cycle rule.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::alloc::{
    Allocation, Caveats, Group, MountWindow, SortBy, Symbolizer, backtrace, group, kmemleak_object,
    shown_objects,
};

/// What the report concludes about one object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// Confirmed by the cycle rule.
    Leak,
    /// Kept from one earlier cycle only.
    OneTime,
    /// Its address is held in global data (kmemleak's rule): kept on purpose.
    Referenced,
    /// Seen in one cycle: not decided yet.
    Unconfirmed,
    /// Its free may have been missed, or its owner is unclear.
    Uncertain,
}

impl Class {
    pub const ALL: [Class; 5] = [
        Class::Leak,
        Class::OneTime,
        Class::Referenced,
        Class::Unconfirmed,
        Class::Uncertain,
    ];

    /// The name used in JSON and headings.
    pub fn name(self) -> &'static str {
        match self {
            Class::Leak => "confirmed",
            Class::OneTime => "one_time",
            Class::Referenced => "referenced",
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
    /// Earlier cycles of this kind no longer followed (`MAX_KEPT_CYCLES`): objects they
    /// still had allocated are not judged any more.
    pub forgotten_cycles: u64,
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
    /// Doubts about the owner of its objects, by (address, time): time does not lift them.
    owner: BTreeMap<(u64, u64), Vec<String>>,
    /// Its objects whose free may have been missed when it was judged.
    free_doubted: BTreeSet<(u64, u64)>,
}

#[derive(Clone, Debug, Default)]
struct Kind {
    cycles: u64,
    /// Earlier cycles that may still have objects allocated (emptied ones are dropped: a
    /// window gains no objects after it closed); the latest `MAX_KEPT_CYCLES` of them.
    kept: Vec<Cycle>,
    /// Cycles with objects still allocated that were let go for the cap.
    forgotten: u64,
}

/// Earlier cycles followed per kind. Each holds its window and its objects' doubts, and
/// every report walks them per object; a mount loop tracked with `--alloc-filter all`
/// (where every cycle is charged some long-lived kernel object) would add one per cycle
/// for good. Older ones are forgotten, and the reports say so.
pub const MAX_KEPT_CYCLES: usize = 64;

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

    /// Whether earlier cycles of `w`'s kind may still have objects allocated (a report of
    /// `w` with no objects of its own then still judges those).
    pub fn keeps_objects_of(&self, w: &MountWindow) -> bool {
        self.kinds
            .get(&kind_of(w))
            .is_some_and(|k| !k.kept.is_empty())
    }

    /// Judges the report of window `w` (closed): `current` are the objects charged to it,
    /// `allocs` everything allocated now, `doubts` says why an object of `current` may be
    /// wrong, `held` where global data holds an object's address (the reachability scan;
    /// `None`: not found, or not scanned). Then `w` becomes the latest cycle of its kind.
    pub fn judge<'a>(
        &mut self,
        w: &MountWindow,
        current: &[&'a Allocation],
        allocs: &'a [Allocation],
        doubts: &dyn Fn(&Allocation) -> Doubts,
        held: &dyn Fn(&Allocation) -> Option<String>,
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
        let current: Vec<(&'a Allocation, Doubts)> =
            current.into_iter().map(|a| (a, doubts(a))).collect();
        // Cycles with objects still allocated, per call site: the evidence. An object whose
        // owner is unclear is none; one whose free may have been missed is none in its own
        // cycle, and afterwards (its address not reused since) counts only next to a certain
        // object of its call site: slots whose free was missed can stay unused for a while,
        // cycle after cycle, and must not confirm a leak by themselves.
        let mut sites: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
        let mut certain: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
        for (n, a) in &earlier {
            let c = k.kept.iter().find(|c| c.number == *n).expect("kept cycle");
            if !c.owner.contains_key(&(a.ptr, a.ts_ns)) && !c.window.lazy && held(a).is_none() {
                sites.entry(a.call_site).or_default().insert(*n);
                if !c.free_doubted.contains(&(a.ptr, a.ts_ns)) {
                    certain.entry(a.call_site).or_default().insert(*n);
                }
            }
        }
        // Call sites with objects of this cycle whose free may have been missed: the next
        // cycle tells whether they count.
        let mut pending_sites: BTreeSet<u64> = BTreeSet::new();
        for (a, d) in &current {
            if held(a).is_some() {
                continue;
            }
            if d.is_empty() {
                sites.entry(a.call_site).or_default().insert(cycle);
                certain.entry(a.call_site).or_default().insert(cycle);
            } else if d.owner.is_empty() {
                pending_sites.insert(a.call_site);
            }
        }
        // Only call sites with a certain object somewhere have evidence.
        sites.retain(|site, _| certain.contains_key(site));
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
        let mut owner = BTreeMap::new();
        let mut free_doubted = BTreeSet::new();
        for (a, d) in current {
            let cs = site_cycles(a.call_site);
            let others: Vec<u64> = cs.iter().copied().filter(|&n| n != cycle).collect();
            if !d.owner.is_empty() {
                owner.insert((a.ptr, a.ts_ns), d.owner.clone());
            } else if !d.free.is_empty() {
                free_doubted.insert((a.ptr, a.ts_ns));
            }
            let (class, why) = if let Some(h) = held(a) {
                (Class::Referenced, referenced_why(&h))
            } else if !d.is_empty() {
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
                        "; not verified yet (confirmed if still allocated when a later cycle of {kind_name} keeps a certain object of its call site)"
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
                        "unconfirmed: seen in 1 cycle (cycle {cycle} of {kind_name}; the {} before kept nothing certain from its call site): a later cycle confirms it or shows it one-time",
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
            let (class, why) = if let Some(h) = held(a) {
                (
                    Class::Referenced,
                    format!("from cycle {n} of {kind_name}: {}", referenced_why(&h)),
                )
            } else if let Some(d) = c.owner.get(&(a.ptr, a.ts_ns)) {
                (
                    Class::Uncertain,
                    format!("from cycle {n} of {kind_name}: {}", d.join("; ")),
                )
            } else if c.window.lazy {
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
            } else if c.free_doubted.contains(&(a.ptr, a.ts_ns)) {
                (
                    Class::Uncertain,
                    format!(
                        "from cycle {n} of {kind_name} ({}), when its free may have been missed; its address was not handed out again since: freed unseen, or kept (one-time?); no certain object of its call site confirms it",
                        c.window.target
                    ),
                )
            } else if pending_sites.contains(&a.call_site) {
                (
                    Class::Uncertain,
                    format!(
                        "from cycle {n} of {kind_name} ({}); its call site also kept objects from this cycle, whose free may have been missed: the next cycle of {kind_name} tells a leak from a one-time allocation",
                        c.window.target
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
                owner,
                free_doubted,
            });
        }
        if k.kept.len() > MAX_KEPT_CYCLES {
            let excess = k.kept.len() - MAX_KEPT_CYCLES;
            k.kept.drain(..excess);
            k.forgotten += excess as u64;
        }
        out.forgotten_cycles = k.forgotten;
        out
    }
}

fn referenced_why(held: &str) -> String {
    format!(
        "referenced: its address is held in global data at {held}: kept on purpose, not \
         leaked (kmemleak's rule; only global data is scanned, not the heap)"
    )
}

/// The objects of one class in a report, of its own window or of earlier cycles.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Part {
    pub class: Class,
    pub earlier: bool,
    pub objects: u64,
    pub bytes: u64,
    /// The objects printed in full (the oldest first, at most `max_objects`), each with the
    /// rule that decided it.
    pub shown: Vec<(Allocation, String)>,
    /// By stack and rule, largest first, at most `top`.
    pub groups: Vec<(Group, String)>,
}

/// The parts of a judgement, in the order reports print them: this window's confirmed
/// leaks, unconfirmed and uncertain objects, then the earlier cycles' objects (confirmed,
/// one-time, uncertain). Empty parts are left out.
pub fn parts(j: &Judgement, sort: SortBy, top: usize, max_objects: usize) -> Vec<Part> {
    let mut out = vec![];
    for earlier in [false, true] {
        for class in Class::ALL {
            let of: Vec<&Judged> = if earlier { &j.earlier } else { &j.current }
                .iter()
                .filter(|x| x.class == class)
                .collect();
            if of.is_empty() {
                continue;
            }
            let objs: Vec<&Allocation> = of.iter().map(|x| x.obj).collect();
            let why_of = |a: &Allocation| -> String {
                of.iter()
                    .find(|x| std::ptr::eq(x.obj, a))
                    .map(|x| x.why.clone())
                    .unwrap_or_default()
            };
            let shown = shown_objects(&objs, max_objects)
                .into_iter()
                .map(|a| (a.clone(), why_of(a)))
                .collect();
            // Grouped by stack within each rule (one rule per call site, mostly).
            let mut whys: Vec<&str> = of.iter().map(|x| x.why.as_str()).collect();
            whys.sort_unstable();
            whys.dedup();
            let mut groups: Vec<(Group, String)> = vec![];
            for why in whys {
                let these = of.iter().filter(|x| x.why == why).map(|x| x.obj);
                groups.extend(
                    group(these, sort, 0)
                        .into_iter()
                        .map(|g| (g, why.to_string())),
                );
            }
            groups.sort_by(|(a, _), (b, _)| {
                let k = |g: &Group| match sort {
                    SortBy::Size => (g.bytes, g.count),
                    SortBy::Count => (g.count, g.bytes),
                };
                k(b).cmp(&k(a))
                    .then(a.stack_id.cmp(&b.stack_id))
                    .then(a.call_site.cmp(&b.call_site))
            });
            if top > 0 {
                groups.truncate(top);
            }
            out.push(Part {
                class,
                earlier,
                objects: objs.len() as u64,
                bytes: objs.iter().map(|a| a.size).sum(),
                shown,
                groups,
            });
        }
    }
    out
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `2 confirmed leaks, 1 unconfirmed` of this window's (or the earlier cycles') parts.
pub fn counts_text(parts: &[Part], earlier: bool) -> String {
    parts
        .iter()
        .filter(|p| p.earlier == earlier)
        .map(|p| match p.class {
            Class::Leak => plural(p.objects, "confirmed leak", "confirmed leaks"),
            Class::OneTime => format!("{} one-time", p.objects),
            Class::Referenced => format!("{} referenced", p.objects),
            Class::Unconfirmed => format!("{} unconfirmed", p.objects),
            Class::Uncertain => format!("{} uncertain", p.objects),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn heading(p: &Part, kind: &str) -> String {
    let what = match p.class {
        Class::Leak => "confirmed leaks (cycle rule)",
        Class::OneTime => "one-time allocations, not leaks (first use since boot?)",
        Class::Referenced => "referenced from global data, not leaks (kmemleak's rule)",
        Class::Unconfirmed => "unconfirmed (seen in 1 cycle)",
        Class::Uncertain => "uncertain (a free may have been missed, or the owner is unclear)",
    };
    let from = if p.earlier {
        format!(" still allocated from earlier cycles of {kind}")
    } else {
        String::new()
    };
    format!(
        "{what}{from}: {}, {} bytes:",
        plural(p.objects, "object", "objects"),
        p.bytes
    )
}

/// A classified leak report: the header of [`crate::alloc::report_text_of`] with this
/// window's counts per class, the notes, then each part: its objects (confirmed leaks in
/// kmemleak's format, `unreferenced object 0x…`; the others as `one-time object`,
/// `unconfirmed object`, `uncertain object`), each with the rule that decided it, and its
/// groups by stack.
#[allow(clippy::too_many_arguments)]
pub fn report_text(
    w: &MountWindow,
    cycle: u64,
    kind: &str,
    count: u64,
    bytes: u64,
    parts: &[Part],
    caveats: &Caveats,
    now_ns: u64,
    sym: &dyn Symbolizer,
) -> String {
    let mut s = String::new();
    let after = match w.failed {
        Some(err) => format!("after the mount failed (error {err})"),
        None => "after umount".to_string(),
    };
    let mut summary = counts_text(parts, false);
    let earlier = counts_text(parts, true);
    if !earlier.is_empty() {
        if !summary.is_empty() {
            summary.push_str("; ");
        }
        let _ = write!(summary, "from earlier cycles: {earlier}");
    }
    let _ = writeln!(
        s,
        "leak report for {} ({} on {}): {} objects, {} bytes still allocated {after} (cycle {cycle} of {kind}){}{summary}",
        w.target,
        if w.fs_type.is_empty() {
            "?"
        } else {
            &w.fs_type
        },
        if w.source.is_empty() { "?" } else { &w.source },
        count,
        bytes,
        if summary.is_empty() { "" } else { ": " },
    );
    for r in &caveats.reasons {
        let _ = writeln!(s, "  note: {r}");
    }
    for p in parts {
        let _ = writeln!(s, "{}", heading(p, kind));
        for (a, why) in &p.shown {
            let obj = kmemleak_object(a, now_ns, sym);
            let obj = match p.class {
                Class::Leak => obj,
                c => obj.replacen(
                    "unreferenced object",
                    match c {
                        Class::OneTime => "one-time object",
                        Class::Referenced => "referenced object",
                        Class::Unconfirmed => "unconfirmed object",
                        _ => "uncertain object",
                    },
                    1,
                ),
            };
            // The rule goes after the comm (and cache) lines, before the backtrace.
            match obj.find("  backtrace") {
                Some(i) => {
                    s.push_str(&obj[..i]);
                    let _ = writeln!(s, "  rule: {why}");
                    s.push_str(&obj[i..]);
                }
                None => {
                    s.push_str(&obj);
                    let _ = writeln!(s, "  rule: {why}");
                }
            }
        }
        if p.objects > p.shown.len() as u64 {
            let _ = writeln!(
                s,
                "... and {} more objects",
                p.objects - p.shown.len() as u64
            );
        }
        if !p.groups.is_empty() {
            let _ = writeln!(s, "by stack:");
            for (g, why) in &p.groups {
                let _ = writeln!(
                    s,
                    "{} objects, {} bytes{}:",
                    g.count,
                    g.bytes,
                    if g.cache.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", g.cache)
                    }
                );
                let _ = writeln!(s, "  rule: {why}");
                backtrace(&mut s, g.stack_id, g.call_site, sym);
            }
        }
    }
    s
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

    fn nobody(_: &Allocation) -> Option<String> {
        None
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
        l.judge(w, &cur, allocs, &none, &nobody)
    }

    /// A loop of mounts each keeping one object for good: the ledger follows the latest
    /// `MAX_KEPT_CYCLES` cycles, not all of them, and says how many it let go.
    #[test]
    fn the_ledger_follows_a_bounded_number_of_cycles() {
        let mut l = Ledger::default();
        let n = MAX_KEPT_CYCLES as u64 + 10;
        let allocs: Vec<Allocation> = (0..n).map(|i| obj(i + 1, i * 10 + 5, 0xa)).collect();
        let mut last = 0;
        for i in 0..n {
            let j = judge(&mut l, &win(i + 1, i * 10, i * 10 + 9), &allocs);
            // Its own object, and those of the cycles still followed.
            assert_eq!(
                j.earlier.len() as u64,
                i.min(MAX_KEPT_CYCLES as u64),
                "cycle {}",
                i + 1
            );
            assert_eq!(
                j.forgotten_cycles,
                (i + 1).saturating_sub(MAX_KEPT_CYCLES as u64)
            );
            last = j.forgotten_cycles;
        }
        assert_eq!(last, 10);
        let k = l.kinds.values().next().unwrap();
        assert_eq!(k.kept.len(), MAX_KEPT_CYCLES);
        // The latest are the ones kept.
        assert_eq!(k.kept.last().unwrap().number, n);
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

    /// An object whose address global data holds is referenced at once, in its first
    /// cycle, doubts or not, and is no evidence for its call site.
    #[test]
    fn referenced_objects_are_kept_not_leaked_and_confirm_nothing() {
        let mut l = Ledger::default();
        let allocs = vec![obj(1, 15, 0xb), obj(2, 35, 0xb), obj(3, 36, 0xc)];
        let held = |a: &Allocation| (a.ptr != 3).then(|| "leakyfs_table+0x0".to_string());
        let missed = |_: &Allocation| Doubts {
            free: vec!["1 runs of the free programs were skipped".into()],
            owner: vec![],
        };
        let cur: Vec<&Allocation> = allocs[..1].iter().collect();
        let j = l.judge(&win(1, 10, 20), &cur, &allocs[..1], &missed, &held);
        assert_eq!(classes(&j), vec![(1, Class::Referenced, false)]);
        assert!(
            j.current[0]
                .why
                .contains("held in global data at leakyfs_table+0x0"),
            "{}",
            j.current[0].why
        );
        // Cycle 2: another object of the same site, referenced too: no cycle rule from
        // the two; an object of another site is unconfirmed as usual.
        let cur: Vec<&Allocation> = allocs[1..].iter().collect();
        let j = l.judge(&win(2, 30, 40), &cur, &allocs, &none, &held);
        assert_eq!(j.count(Class::Leak), 0);
        assert_eq!(j.count(Class::Referenced), 2);
        assert_eq!(j.count(Class::Unconfirmed), 1);
        assert!(
            j.earlier[0]
                .why
                .starts_with("from cycle 1 of xfs: referenced")
        );
        let parts = parts(&j, SortBy::Size, 10, 10);
        assert_eq!(counts_text(&parts, false), "1 referenced, 1 unconfirmed");
        assert_eq!(counts_text(&parts, true), "1 referenced");
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
        let j = l.judge(&win(1, 10, 20), &cur, &allocs, &missed, &nobody);
        assert_eq!(classes(&j), vec![(1, Class::Uncertain, false)]);
        assert!(
            j.current[0].why.contains("skipped; not verified yet"),
            "{}",
            j.current[0].why
        );
        // Still there after cycle 2 (which kept nothing): its free may have been missed and
        // its slot left unused, or it is kept: still uncertain, never one-time by itself.
        let j = judge(&mut l, &win(2, 30, 40), &allocs);
        assert_eq!(classes(&j), vec![(1, Class::Uncertain, true)]);
        assert!(
            j.earlier[0].why.contains("freed unseen, or kept"),
            "{}",
            j.earlier[0].why
        );
    }

    /// Missed frees whose slots stay unused, cycle after cycle, at one call site: they
    /// never confirm a leak by themselves; a certain object of the site does.
    #[test]
    fn missed_frees_alone_never_confirm() {
        let mut l = Ledger::default();
        let allocs = vec![
            obj(1, 15, 0xb),
            obj(2, 35, 0xb),
            obj(3, 55, 0xb),
            obj(4, 75, 0xb),
        ];
        let missed = |_: &Allocation| Doubts {
            free: vec!["1 runs of the free programs were skipped".into()],
            owner: vec![],
        };
        for (n, w) in [
            (1usize, win(1, 10, 20)),
            (2, win(2, 30, 40)),
            (3, win(3, 50, 60)),
        ] {
            let cur: Vec<&Allocation> = allocs[n - 1..n].iter().collect();
            let j = l.judge(&w, &cur, &allocs[..n], &missed, &nobody);
            assert_eq!(j.count(Class::Leak), 0, "cycle {n}");
            assert_eq!(j.count(Class::Uncertain), n, "cycle {n}");
        }
        // Cycle 4 keeps a certain object of the site: with the survivors of cycles 1-3,
        // the site kept objects from four cycles.
        let j = judge(&mut l, &win(4, 70, 80), &allocs);
        assert_eq!(j.count(Class::Leak), 4);
        assert!(
            j.current[0].why.contains("cycles 1-4 of xfs"),
            "{}",
            j.current[0].why
        );
    }

    #[test]
    fn an_unverified_object_of_this_cycle_leaves_its_site_undecided() {
        let mut l = Ledger::default();
        let allocs = vec![obj(1, 15, 0xb), obj(2, 35, 0xb), obj(3, 55, 0xb)];
        judge(&mut l, &win(1, 10, 20), &allocs[..1]);
        let missed = |_: &Allocation| Doubts {
            free: vec!["1 runs of the free programs were skipped".into()],
            owner: vec![],
        };
        let cur: Vec<&Allocation> = allocs[1..2].iter().collect();
        let j = l.judge(&win(2, 30, 40), &cur, &allocs[..2], &missed, &nobody);
        // Neither a leak (cycle 2's object may be gone) nor one-time (it may not).
        assert_eq!(
            classes(&j),
            vec![(1, Class::Uncertain, true), (2, Class::Uncertain, false)]
        );
        assert!(
            j.earlier[0].why.contains("the next cycle of xfs tells"),
            "{}",
            j.earlier[0].why
        );
        // Cycle 3 keeps one too, and cycle 2's survived: all three confirmed.
        let j = judge(&mut l, &win(3, 50, 60), &allocs);
        assert_eq!(j.count(Class::Leak), 3);
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
        let j = l.judge(&w, &cur, &allocs, &lazy, &nobody);
        assert_eq!(j.current[0].class, Class::Uncertain);
        assert!(!j.current[0].why.contains("not verified yet"));
        let j = judge(&mut l, &win(2, 30, 40), &allocs);
        assert_eq!(classes(&j), vec![(1, Class::Uncertain, true)]);
    }

    #[test]
    fn owner_doubts_outlive_later_cycles() {
        let mut l = Ledger::default();
        let allocs = vec![obj(1, 15, 0xb), obj(2, 35, 0xb)];
        let foreign = |a: &Allocation| Doubts {
            free: vec![],
            owner: if a.ptr == 1 {
                vec!["xfs is also mounted at /srv".into()]
            } else {
                vec![]
            },
        };
        let cur: Vec<&Allocation> = allocs[..1].iter().collect();
        let j = l.judge(&win(1, 10, 20), &cur, &allocs, &foreign, &nobody);
        assert_eq!(classes(&j), vec![(1, Class::Uncertain, false)]);
        // Cycle 2 keeps an object from the same site: an object whose owner is unclear
        // confirms nothing, so the new one is unconfirmed; the old one stays uncertain,
        // with its reason.
        let cur: Vec<&Allocation> = allocs[1..].iter().collect();
        let j = l.judge(&win(2, 30, 40), &cur, &allocs, &foreign, &nobody);
        assert_eq!(
            classes(&j),
            vec![(1, Class::Uncertain, true), (2, Class::Unconfirmed, false)]
        );
        assert!(
            j.earlier[0].why.contains("also mounted at /srv"),
            "{}",
            j.earlier[0].why
        );
    }

    struct Syms;
    impl Symbolizer for Syms {
        fn frame(&self, addr: u64) -> String {
            format!("f{addr:x}+0x4/0x10")
        }
        fn stack(&self, _: i32, _: u64) -> Vec<u64> {
            vec![]
        }
    }

    /// The whole text of a classified report, as reports print it.
    #[test]
    fn report_text_separates_the_verdicts() {
        let mut l = Ledger::default();
        let allocs = vec![
            obj(1, 15, 0xa),
            obj(2, 16, 0xb),
            obj(3, 35, 0xb),
            obj(4, 36, 0xc),
        ];
        judge(&mut l, &win(1, 10, 20), &allocs);
        let w = win(2, 30, 40);
        let cur: Vec<&Allocation> = allocs[2..].iter().collect();
        let doubt = |a: &Allocation| Doubts {
            free: if a.ptr == 4 {
                vec!["1 runs of the free programs were skipped".into()]
            } else {
                vec![]
            },
            owner: vec![],
        };
        let j = l.judge(&w, &cur, &allocs, &doubt, &nobody);
        let p = parts(&j, SortBy::Size, 0, 10);
        let t = report_text(
            &w,
            j.cycle,
            &j.kind,
            2,
            32,
            &p,
            &Caveats::default(),
            1_000_000_036,
            &Syms,
        );
        let want = "\
leak report for /mnt/2 (xfs on /dev/loop0): 2 objects, 32 bytes still allocated after umount (cycle 2 of xfs): 1 confirmed leak, 1 uncertain; from earlier cycles: 1 confirmed leak, 1 one-time
confirmed leaks (cycle rule): 1 object, 16 bytes:
unreferenced object 0x3 (size 16):
  comm \"mount\", pid 1, age 1.000s
  rule: cycle rule: its call site kept objects from cycles 1-2 of xfs (of 2 so far), still allocated
  backtrace (call site only; no stack captured):
    fb+0x4/0x10
by stack:
1 objects, 16 bytes:
  rule: cycle rule: its call site kept objects from cycles 1-2 of xfs (of 2 so far), still allocated
  backtrace (call site only; no stack captured):
    fb+0x4/0x10
uncertain (a free may have been missed, or the owner is unclear): 1 object, 16 bytes:
uncertain object 0x4 (size 16):
  comm \"mount\", pid 1, age 1.000s
  rule: 1 runs of the free programs were skipped; not verified yet (confirmed if still allocated when a later cycle of xfs keeps a certain object of its call site)
  backtrace (call site only; no stack captured):
    fc+0x4/0x10
by stack:
1 objects, 16 bytes:
  rule: 1 runs of the free programs were skipped; not verified yet (confirmed if still allocated when a later cycle of xfs keeps a certain object of its call site)
  backtrace (call site only; no stack captured):
    fc+0x4/0x10
confirmed leaks (cycle rule) still allocated from earlier cycles of xfs: 1 object, 16 bytes:
unreferenced object 0x2 (size 16):
  comm \"mount\", pid 1, age 1.000s
  rule: cycle rule: from cycle 1 (/mnt/1); its call site kept objects from cycles 1-2 of xfs (of 2 so far), still allocated
  backtrace (call site only; no stack captured):
    fb+0x4/0x10
by stack:
1 objects, 16 bytes:
  rule: cycle rule: from cycle 1 (/mnt/1); its call site kept objects from cycles 1-2 of xfs (of 2 so far), still allocated
  backtrace (call site only; no stack captured):
    fb+0x4/0x10
one-time allocations, not leaks (first use since boot?) still allocated from earlier cycles of xfs: 1 object, 16 bytes:
one-time object 0x1 (size 16):
  comm \"mount\", pid 1, age 1.000s
  rule: one-time: from cycle 1 of xfs (/mnt/1); its call site kept nothing from the 1 cycle of xfs since: made once and kept for later mounts (a table or cache made at first use since boot?); a leak on a path taken only once looks the same
  backtrace (call site only; no stack captured):
    fa+0x4/0x10
by stack:
1 objects, 16 bytes:
  rule: one-time: from cycle 1 of xfs (/mnt/1); its call site kept nothing from the 1 cycle of xfs since: made once and kept for later mounts (a table or cache made at first use since boot?); a leak on a path taken only once looks the same
  backtrace (call site only; no stack captured):
    fa+0x4/0x10
";
        assert_eq!(t, want, "{t}");
    }

    #[test]
    fn ranges_compress() {
        assert_eq!(ranges(&[1, 2, 3, 5, 7, 8]), "1-3, 5, 7-8");
        assert_eq!(ranges(&[4]), "4");
        assert_eq!(ranges(&[]), "");
    }
}
