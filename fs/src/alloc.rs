//! Allocation leak tracking, the pure part: mount lifetimes, charging outstanding
//! allocations to mounts, grouping them by stack, and kmemleak-style report text.
//!
//! The kernel keeps the outstanding allocations (those the filter selected, not yet freed);
//! userspace reads them periodically as [`Allocation`]s. Per-mount attribution is a
//! heuristic of time and code:
//! - a mount's lifetime runs from the entry of the `mount(2)` (or `move_mount(2)`) that
//!   created it to the exit of the `umount2(2)` that removed it, matched by target path;
//! - an allocation made during that lifetime by the filtered code (the filter is applied in
//!   the kernel) is charged to that mount, unless the filter names a filesystem type
//!   (`module:xfs`, `sym:xfs_`) and the mount is of another known type;
//! - limits: two mounts of the same filesystem type alive at once share every allocation
//!   (the report says so); allocations made by the filtered code for another reason
//!   (another superblock, global caches filled lazily) are charged too; allocations of the
//!   mount made from code outside the filter (generic VFS or mm helpers whose call site is
//!   not in the filtered text) are not seen; a lazy umount (`MNT_DETACH`) ends the lifetime
//!   when the mount leaves the namespace, possibly before the superblock dies.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use serde::Serialize;

use crate::event::{Event, MountCallOp, Payload};

/// One outstanding allocation, as read from the kernel's `OUTSTANDING` map.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Allocation {
    pub ptr: u64,
    pub ts_ns: u64,
    pub call_site: u64,
    /// The slab cache's name (empty for kmalloc).
    pub cache: String,
    pub size: u64,
    /// Stack id in the kernel's stack map (negative: none).
    pub stack_id: i32,
    pub pid: u32,
    pub tgid: u32,
    pub comm: crate::actor::Comm,
}

/// A mount's lifetime, from its mount call to its umount.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MountWindow {
    /// Sequence number, unique in this run.
    pub id: u64,
    pub target: String,
    pub source: String,
    pub fs_type: String,
    pub start_ns: u64,
    pub end_ns: Option<u64>,
    /// Ended by a lazy umount (`MNT_DETACH`).
    pub lazy: bool,
    /// The mount call failed with this error (negative errno): the window is the call
    /// itself, and what the filesystem allocated during it and kept is what its error path
    /// leaked.
    pub failed: Option<i64>,
}

impl MountWindow {
    pub fn contains(&self, ts: u64) -> bool {
        ts >= self.start_ns && self.end_ns.is_none_or(|e| ts <= e)
    }

    pub fn overlaps(&self, o: &MountWindow) -> bool {
        let end = self.end_ns.unwrap_or(u64::MAX);
        let oend = o.end_ns.unwrap_or(u64::MAX);
        self.start_ns <= oend && o.start_ns <= end
    }
}

const MNT_DETACH: u32 = 2;

fn norm(path: &str) -> &str {
    let t = path.trim_end_matches('/');
    if t.is_empty() { "/" } else { t }
}

/// Mount lifetimes learnt from `MountCall` events.
#[derive(Clone, Debug, Default)]
pub struct MountWindows {
    pub windows: Vec<MountWindow>,
    next_id: u64,
}

impl MountWindows {
    /// Follows a successful mount or umount; returns the window it closed, if any. A failed
    /// `mount(2)` is a window of its own, closed at once: from the call's entry to its exit.
    pub fn apply(&mut self, ev: &Event) -> Option<MountWindow> {
        let Payload::MountCall(crate::event::MountCall {
            op,
            flags,
            ret,
            enter_ns,
            source,
            target,
            fs_type,
        }) = &ev.payload
        else {
            return None;
        };
        const MS_REMOUNT: u32 = 32;
        if *ret != 0 {
            if *op != MountCallOp::Mount || flags & MS_REMOUNT != 0 {
                return None;
            }
            self.next_id += 1;
            let w = MountWindow {
                id: self.next_id,
                target: norm(target).to_string(),
                source: source.clone(),
                fs_type: fs_type.clone(),
                start_ns: *enter_ns,
                end_ns: Some(ev.ts_ns),
                lazy: false,
                failed: Some(*ret),
            };
            self.windows.push(w.clone());
            return Some(w);
        }
        match op {
            MountCallOp::Mount | MountCallOp::MoveMount => {
                // A remount or bind of a mounted target is not a new lifetime.
                if *op == MountCallOp::Mount && flags & MS_REMOUNT != 0 {
                    return None;
                }
                self.next_id += 1;
                self.windows.push(MountWindow {
                    id: self.next_id,
                    target: norm(target).to_string(),
                    source: source.clone(),
                    fs_type: fs_type.clone(),
                    start_ns: *enter_ns,
                    end_ns: None,
                    lazy: false,
                    failed: None,
                });
                None
            }
            MountCallOp::Umount => {
                let t = norm(target);
                let w = self
                    .windows
                    .iter_mut()
                    .rev()
                    .find(|w| w.end_ns.is_none() && w.target == t)?;
                w.end_ns = Some(ev.ts_ns);
                w.lazy = flags & MNT_DETACH != 0;
                Some(w.clone())
            }
            MountCallOp::Fsmount => None,
        }
    }

    pub fn open(&self) -> impl Iterator<Item = &MountWindow> {
        self.windows.iter().filter(|w| w.end_ns.is_none())
    }

    /// Forgets closed windows that ended before `ts` (their reports are out).
    pub fn forget_closed_before(&mut self, ts: u64) {
        self.windows.retain(|w| w.end_ns.is_none_or(|e| e >= ts));
    }
}

/// Which mounts an allocation made by the filtered code is charged to.
#[derive(Clone, Debug, Default)]
pub struct Charging {
    /// Filesystem types the filter names (`module:xfs`, `sym:xfs_` -> `xfs`), restricted to
    /// types the kernel knows; empty: every mount is a candidate.
    pub fs_types: Vec<String>,
}

impl Charging {
    pub fn matches(&self, w: &MountWindow) -> bool {
        self.fs_types.is_empty() || w.fs_type.is_empty() || self.fs_types.contains(&w.fs_type)
    }

    pub fn charged<'a>(
        &self,
        w: &MountWindow,
        allocs: &'a [Allocation],
    ) -> impl Iterator<Item = &'a Allocation> {
        let ok = self.matches(w);
        let w = w.clone();
        allocs.iter().filter(move |a| ok && w.contains(a.ts_ns))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SortBy {
    #[default]
    Size,
    Count,
}

/// Allocations sharing a stack (or, without one, a call site).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Group {
    pub stack_id: i32,
    pub call_site: u64,
    pub cache: String,
    pub count: u64,
    pub bytes: u64,
    pub oldest_ns: u64,
}

/// Groups allocations by stack (by call site when there is none), largest first by
/// `sort`, at most `top` of them (0: all).
pub fn group<'a>(
    allocs: impl IntoIterator<Item = &'a Allocation>,
    sort: SortBy,
    top: usize,
) -> Vec<Group> {
    let mut by: HashMap<(i32, u64), Group> = HashMap::new();
    for a in allocs {
        let key = if a.stack_id >= 0 {
            (a.stack_id, 0)
        } else {
            (-1, a.call_site)
        };
        let g = by.entry(key).or_insert_with(|| Group {
            stack_id: a.stack_id,
            call_site: a.call_site,
            cache: a.cache.clone(),
            count: 0,
            bytes: 0,
            oldest_ns: a.ts_ns,
        });
        g.count += 1;
        g.bytes += a.size;
        g.oldest_ns = g.oldest_ns.min(a.ts_ns);
    }
    let mut v: Vec<Group> = by.into_values().collect();
    v.sort_by(|a, b| {
        let ka = match sort {
            SortBy::Size => (a.bytes, a.count),
            SortBy::Count => (a.count, a.bytes),
        };
        let kb = match sort {
            SortBy::Size => (b.bytes, b.count),
            SortBy::Count => (b.count, b.bytes),
        };
        kb.cmp(&ka)
            .then(a.stack_id.cmp(&b.stack_id))
            .then(a.call_site.cmp(&b.call_site))
    });
    if top > 0 {
        v.truncate(top);
    }
    v
}

/// Outstanding counts and bytes by call site, largest first (the live view).
pub fn by_call_site(allocs: &[Allocation], top: usize) -> Vec<(u64, u64, u64)> {
    let mut m: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    for a in allocs {
        let e = m.entry(a.call_site).or_default();
        e.0 += 1;
        e.1 += a.size;
    }
    let mut v: Vec<(u64, u64, u64)> = m.into_iter().map(|(k, (c, b))| (k, c, b)).collect();
    v.sort_by(|a, b| b.2.cmp(&a.2).then(b.1.cmp(&a.1)).then(a.0.cmp(&b.0)));
    if top > 0 {
        v.truncate(top);
    }
    v
}

/// How report text names kernel addresses and finds stacks.
pub trait Symbolizer {
    /// `symbol+0xoff/0xlen` (with ` [module]` for module code), or the raw address.
    fn frame(&self, addr: u64) -> String;
    /// The frames of stack `id`, innermost first, already trimmed to start at the
    /// allocation's caller where possible.
    fn stack(&self, id: i32, call_site: u64) -> Vec<u64>;
    /// Whether each object has its own stack (otherwise: the first seen at its call site).
    fn per_object(&self) -> bool {
        false
    }
}

fn age(now_ns: u64, ts_ns: u64) -> String {
    let d = now_ns.saturating_sub(ts_ns);
    format!("{}.{:03}s", d / 1_000_000_000, (d / 1_000_000) % 1000)
}

/// One object in kmemleak's format (without the hex dump: the tracer does not read the
/// object's memory).
pub fn kmemleak_object(a: &Allocation, now_ns: u64, sym: &dyn Symbolizer) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "unreferenced object {:#x} (size {}):", a.ptr, a.size);
    let _ = writeln!(
        s,
        "  comm \"{}\", pid {}, age {}",
        a.comm,
        a.pid,
        age(now_ns, a.ts_ns)
    );
    if !a.cache.is_empty() {
        let _ = writeln!(s, "  cache {}", a.cache);
    }
    backtrace(&mut s, a.stack_id, a.call_site, sym);
    s
}

/// The backtrace lines of an object or group (`  backtrace...:` and its frames).
pub fn backtrace(s: &mut String, stack_id: i32, call_site: u64, sym: &dyn Symbolizer) {
    let frames = if stack_id >= 0 {
        sym.stack(stack_id, call_site)
    } else {
        vec![]
    };
    if frames.is_empty() {
        let _ = writeln!(s, "  backtrace (call site only; no stack captured):");
        let _ = writeln!(s, "    {}", sym.frame(call_site));
    } else {
        if sym.per_object() {
            let _ = writeln!(s, "  backtrace:");
        } else {
            let _ = writeln!(s, "  backtrace (first stack seen at this call site):");
        }
        for f in frames {
            let _ = writeln!(s, "    {}", sym.frame(f));
        }
    }
}

/// What a leak report says beyond the objects: why it may be wrong.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Caveats {
    pub uncertain: bool,
    pub reasons: Vec<String>,
}

/// The objects a report prints in full: the oldest first (by time, then address), at most
/// `max_objects` of them.
pub fn shown_objects<'a>(objects: &[&'a Allocation], max_objects: usize) -> Vec<&'a Allocation> {
    let mut sorted: Vec<&Allocation> = objects.to_vec();
    sorted.sort_by_key(|a| (a.ts_ns, a.ptr));
    sorted.truncate(max_objects);
    sorted
}

/// The report text: every object (up to `max_objects`) in kmemleak's format, then the
/// groups with counts and bytes.
pub fn report_text(
    w: &MountWindow,
    objects: &[&Allocation],
    groups: &[Group],
    caveats: &Caveats,
    now_ns: u64,
    max_objects: usize,
    sym: &dyn Symbolizer,
) -> String {
    let bytes: u64 = objects.iter().map(|a| a.size).sum();
    report_text_of(
        w,
        objects.len() as u64,
        bytes,
        &shown_objects(objects, max_objects),
        groups,
        caveats,
        now_ns,
        sym,
    )
}

/// [`report_text`] from the totals and the objects shown (what a recording keeps).
#[allow(clippy::too_many_arguments)]
pub fn report_text_of(
    w: &MountWindow,
    count: u64,
    bytes: u64,
    shown: &[&Allocation],
    groups: &[Group],
    caveats: &Caveats,
    now_ns: u64,
    sym: &dyn Symbolizer,
) -> String {
    let mut s = String::new();
    let after = match w.failed {
        Some(err) => format!("after the mount failed (error {err})"),
        None => "after umount".to_string(),
    };
    let _ = writeln!(
        s,
        "leak report for {} ({} on {}): {} objects, {} bytes still allocated {after}{}",
        w.target,
        if w.fs_type.is_empty() {
            "?"
        } else {
            &w.fs_type
        },
        if w.source.is_empty() { "?" } else { &w.source },
        count,
        bytes,
        if caveats.uncertain {
            " (UNCERTAIN)"
        } else {
            ""
        }
    );
    for r in &caveats.reasons {
        let _ = writeln!(s, "  note: {r}");
    }
    for a in shown {
        s.push_str(&kmemleak_object(a, now_ns, sym));
    }
    if count > shown.len() as u64 {
        let _ = writeln!(s, "... and {} more objects", count - shown.len() as u64);
    }
    if !groups.is_empty() {
        let _ = writeln!(s, "by stack:");
        for g in groups {
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
            backtrace(&mut s, g.stack_id, g.call_site, sym);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Syms;
    impl Symbolizer for Syms {
        fn frame(&self, addr: u64) -> String {
            format!("f{:x}+0x4/0x10", addr)
        }
        fn stack(&self, id: i32, call_site: u64) -> Vec<u64> {
            if id == 7 {
                vec![call_site, 0x99]
            } else {
                vec![]
            }
        }
    }

    fn mount_ev(op: MountCallOp, ts: u64, target: &str, fs: &str, flags: u32) -> Event {
        Event {
            ts_ns: ts,
            cpu: 0,
            pid: 1,
            tgid: 1,
            comm: "mount".into(),
            work: None,
            payload: Payload::MountCall(crate::event::MountCall {
                op,
                flags,
                ret: 0,
                enter_ns: ts - 5,
                source: "/dev/loop0".into(),
                target: target.into(),
                fs_type: fs.into(),
            }),
        }
    }

    fn alloc(ptr: u64, ts: u64, site: u64, size: u64, stack: i32) -> Allocation {
        Allocation {
            ptr,
            ts_ns: ts,
            call_site: site,
            cache: String::new(),
            size,
            stack_id: stack,
            pid: 10,
            tgid: 10,
            comm: "cat".into(),
        }
    }

    #[test]
    fn windows_open_and_close_by_target() {
        let mut m = MountWindows::default();
        assert!(
            m.apply(&mount_ev(MountCallOp::Mount, 100, "/mnt/a/", "xfs", 0))
                .is_none()
        );
        let w = m
            .apply(&mount_ev(
                MountCallOp::Umount,
                200,
                "/mnt/a",
                "",
                MNT_DETACH,
            ))
            .unwrap();
        assert_eq!((w.start_ns, w.end_ns, w.lazy), (95, Some(200), true));
        assert!(w.contains(95) && w.contains(200) && !w.contains(201));
        // An umount of something never seen mounted closes nothing.
        assert!(
            m.apply(&mount_ev(MountCallOp::Umount, 300, "/x", "", 0))
                .is_none()
        );
        // A remount is not a new lifetime.
        m.apply(&mount_ev(MountCallOp::Mount, 400, "/mnt/a", "xfs", 32));
        assert_eq!(m.open().count(), 0);
        m.forget_closed_before(250);
        assert!(m.windows.is_empty());
    }

    #[test]
    fn a_failed_mount_is_a_closed_window_of_its_own() {
        let mut m = MountWindows::default();
        let mut ev = mount_ev(MountCallOp::Mount, 100, "/mnt/l", "leakyfs", 0);
        if let Payload::MountCall(crate::event::MountCall { ret, .. }) = &mut ev.payload {
            *ret = -5;
        }
        let w = m
            .apply(&ev)
            .expect("a failed mount closes its window at once");
        assert_eq!((w.start_ns, w.end_ns, w.failed), (95, Some(100), Some(-5)));
        assert_eq!(m.open().count(), 0);
        // A later umount of the same path closes nothing (nothing was mounted).
        assert!(
            m.apply(&mount_ev(MountCallOp::Umount, 200, "/mnt/l", "", 0))
                .is_none()
        );
        let allocs = vec![alloc(1, 97, 1, 8, -1), alloc(2, 150, 1, 8, -1)];
        let c = Charging {
            fs_types: vec!["leakyfs".into()],
        };
        let got: Vec<u64> = c.charged(&w, &allocs).map(|a| a.ptr).collect();
        assert_eq!(got, vec![1]);
        let t = report_text(&w, &[&allocs[0]], &[], &Caveats::default(), 200, 10, &Syms);
        assert!(
            t.starts_with("leak report for /mnt/l (leakyfs on /dev/loop0): 1 objects, 8 bytes still allocated after the mount failed (error -5)\n"),
            "{t}"
        );
        // A failed umount or remount is no window.
        let mut ev = mount_ev(MountCallOp::Umount, 300, "/mnt/x", "", 0);
        if let Payload::MountCall(crate::event::MountCall { ret, .. }) = &mut ev.payload {
            *ret = -16;
        }
        assert!(m.apply(&ev).is_none());
    }

    #[test]
    fn charging_by_time_and_type() {
        let mut m = MountWindows::default();
        m.apply(&mount_ev(MountCallOp::Mount, 100, "/a", "xfs", 0));
        let w = m
            .apply(&mount_ev(MountCallOp::Umount, 200, "/a", "", 0))
            .unwrap();
        let allocs = vec![
            alloc(1, 50, 1, 8, -1),
            alloc(2, 150, 1, 8, -1),
            alloc(3, 250, 1, 8, -1),
        ];
        let c = Charging::default();
        let got: Vec<u64> = c.charged(&w, &allocs).map(|a| a.ptr).collect();
        assert_eq!(got, vec![2]);
        let c = Charging {
            fs_types: vec!["ext4".into()],
        };
        assert_eq!(c.charged(&w, &allocs).count(), 0);
    }

    #[test]
    fn groups_sorted_and_truncated() {
        let allocs = vec![
            alloc(1, 1, 0x10, 100, 7),
            alloc(2, 2, 0x10, 100, 7),
            alloc(3, 3, 0x20, 500, -1),
            alloc(4, 4, 0x30, 1, -1),
            alloc(5, 5, 0x30, 1, -1),
            alloc(6, 6, 0x30, 1, -1),
        ];
        let g = group(&allocs, SortBy::Size, 0);
        assert_eq!(
            g.iter().map(|g| (g.count, g.bytes)).collect::<Vec<_>>(),
            vec![(1, 500), (2, 200), (3, 3)]
        );
        let g = group(&allocs, SortBy::Count, 1);
        assert_eq!((g.len(), g[0].call_site, g[0].count), (1, 0x30, 3));
        let sites = by_call_site(&allocs, 2);
        assert_eq!(sites, vec![(0x20, 1, 500), (0x10, 2, 200)]);
    }

    #[test]
    fn kmemleak_format() {
        let a = alloc(0xffff888012345678, 1_000_000_000, 0x10, 64, 7);
        let s = kmemleak_object(&a, 3_500_000_000, &Syms);
        assert_eq!(
            s,
            "unreferenced object 0xffff888012345678 (size 64):\n  comm \"cat\", pid 10, age 2.500s\n  \
             backtrace (first stack seen at this call site):\n    f10+0x4/0x10\n    f99+0x4/0x10\n"
        );
        let b = alloc(0xffff888000000000, 0, 0x20, 8, -1);
        assert!(kmemleak_object(&b, 0, &Syms).contains("call site only"));
        let w = MountWindow {
            id: 1,
            target: "/mnt".into(),
            source: "tmpfs".into(),
            fs_type: "tmpfs".into(),
            start_ns: 0,
            end_ns: Some(1),
            lazy: false,
            failed: None,
        };
        let objs = vec![&a, &b];
        let groups = group(objs.iter().copied(), SortBy::Size, 0);
        let caveats = Caveats {
            uncertain: true,
            reasons: vec!["3 frees missed".into()],
        };
        let t = report_text(&w, &objs, &groups, &caveats, 4_000_000_000, 1, &Syms);
        assert!(t.starts_with(
            "leak report for /mnt (tmpfs on tmpfs): 2 objects, 72 bytes still allocated after umount (UNCERTAIN)\n  note: 3 frees missed\n"
        ));
        assert!(t.contains("... and 1 more objects"));
        assert!(t.contains("by stack:\n2 objects") || t.contains("by stack:\n1 objects, 64 bytes"));
    }
}
