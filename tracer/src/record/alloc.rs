//! Allocation tracking in recordings: what the tracker concluded at each counter tick (the
//! outstanding allocations by call site, stack and mount, its counters) and each leak report
//! (the mount's lifetime, its objects and groups, why it may be wrong), with the names of
//! the kernel addresses they use, so that a report made elsewhere (another machine, another
//! kernel, no `/proc/kallsyms`) says exactly what the live tracer said.
//!
//! The live tracer renders its `alloc_live` and `leak_report` lines from these same records
//! (through [`live_json`], [`leak_json`] and [`leak_text`]), so the recording cannot drift
//! from what was shown.
//!
//! # Encoding
//!
//! In `AllocSnapshot` frames (see [`super`]): snapshot version (u16 LE,
//! [`super::ALLOC_SNAPSHOT_VERSION`]), raw length (u32 LE), then zstd of the postcard
//! encoding of a `Vec<AllocRecord>` (the records of one tick). Postcard identifies fields and
//! variants by position: any change to the types below bumps the snapshot version, and a
//! reader skips versions newer than its own with a note (the rest of the recording is read).

use std::collections::{HashMap, HashSet};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tracer_fs::{
    alloc::{Allocation, Caveats, Group, MountWindow, Symbolizer, report_text_of},
    leakcheck::{self, Class, Part},
};

use super::{ALLOC_SNAPSHOT_VERSION, MAX_BLOCK_RAW_LEN};

/// One entry of an allocation snapshot frame.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum AllocRecord {
    /// Tracking is on: the filter and its options, as JSON (`filter`: the filter's summary,
    /// `options`: grace, sampling, sizes, ...). First, once.
    Setup(String),
    /// Names of kernel text addresses (`symbol+0xoff/0xlen [module]`), each written once,
    /// before the first record that uses it.
    Frames(Vec<(u64, String)>),
    /// The outstanding allocations at a counter tick.
    Live(LiveAlloc),
    /// A leak report (a mount's umount plus the grace period, or the tracer's stop).
    Leak(LeakRecord),
}

/// The kernel-side counters of allocation tracking, cumulative since the attach.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocCounters {
    pub tracked: u64,
    pub freed: u64,
    /// Not tracked: the outstanding map was full (`--alloc-max-entries`).
    pub map_full: u64,
    pub sampled_out: u64,
    pub stacks: u64,
    pub stack_failures: u64,
    /// Tracked addresses allocated again before their free was seen (missed frees).
    pub reused: u64,
    /// Runs of the free programs the kernel skipped (`recursion_misses`): frees not seen.
    pub free_misses: u64,
}

impl AllocCounters {
    /// What happened between `before` and `self`.
    pub fn since(&self, before: &AllocCounters) -> AllocCounters {
        AllocCounters {
            tracked: self.tracked.saturating_sub(before.tracked),
            freed: self.freed.saturating_sub(before.freed),
            map_full: self.map_full.saturating_sub(before.map_full),
            sampled_out: self.sampled_out.saturating_sub(before.sampled_out),
            stacks: self.stacks.saturating_sub(before.stacks),
            stack_failures: self.stack_failures.saturating_sub(before.stack_failures),
            reused: self.reused.saturating_sub(before.reused),
            free_misses: self.free_misses.saturating_sub(before.free_misses),
        }
    }
}

/// Outstanding allocations of one call site.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteCount {
    pub call_site: u64,
    pub count: u64,
    pub bytes: u64,
}

/// Outstanding allocations charged to a mount that is alive.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountCount {
    pub target: String,
    pub source: String,
    pub fs_type: String,
    pub mounted_ns: u64,
    pub count: u64,
    pub bytes: u64,
}

/// Allocations sharing a stack (or a call site, without one): `tracer_fs::alloc::Group`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRecord {
    pub stack_id: i32,
    pub call_site: u64,
    pub cache: String,
    pub count: u64,
    pub bytes: u64,
    pub oldest_ns: u64,
}

impl GroupRecord {
    pub fn of(g: &Group) -> Self {
        GroupRecord {
            stack_id: g.stack_id,
            call_site: g.call_site,
            cache: g.cache.clone(),
            count: g.count,
            bytes: g.bytes,
            oldest_ns: g.oldest_ns,
        }
    }

    pub fn group(&self) -> Group {
        Group {
            stack_id: self.stack_id,
            call_site: self.call_site,
            cache: self.cache.clone(),
            count: self.count,
            bytes: self.bytes,
            oldest_ns: self.oldest_ns,
        }
    }
}

/// A kernel stack as reports print it: trimmed to start at the allocation's caller.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackRecord {
    pub stack_id: i32,
    pub call_site: u64,
    pub frames: Vec<u64>,
}

/// One outstanding allocation: `tracer_fs::alloc::Allocation`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjRecord {
    pub ptr: u64,
    pub ts_ns: u64,
    pub call_site: u64,
    pub cache: String,
    pub size: u64,
    pub stack_id: i32,
    pub pid: u32,
    pub tgid: u32,
    pub comm: tracer_fs::actor::Comm,
}

impl ObjRecord {
    pub fn of(a: &Allocation) -> Self {
        ObjRecord {
            ptr: a.ptr,
            ts_ns: a.ts_ns,
            call_site: a.call_site,
            cache: a.cache.clone(),
            size: a.size,
            stack_id: a.stack_id,
            pid: a.pid,
            tgid: a.tgid,
            comm: a.comm.clone(),
        }
    }

    pub fn allocation(&self) -> Allocation {
        Allocation {
            ptr: self.ptr,
            ts_ns: self.ts_ns,
            call_site: self.call_site,
            cache: self.cache.clone(),
            size: self.size,
            stack_id: self.stack_id,
            pid: self.pid,
            tgid: self.tgid,
            comm: self.comm.clone(),
        }
    }
}

/// The outstanding allocations at one counter tick (what `alloc_live` says).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LiveAlloc {
    pub ts_ns: u64,
    pub outstanding: u64,
    pub bytes: u64,
    pub growth_objects_per_s: f64,
    pub growth_bytes_per_s: f64,
    /// Largest first, at most `--alloc-top`.
    pub by_call_site: Vec<SiteCount>,
    /// Largest first, at most `--alloc-top`.
    pub by_stack: Vec<GroupRecord>,
    /// The mounts alive, with what is charged to them.
    pub by_mount: Vec<MountCount>,
    pub stacks: Vec<StackRecord>,
    pub counters: AllocCounters,
}

impl LiveAlloc {
    /// The same state as `o`, apart from the time and the growth rates.
    pub fn same_state(&self, o: &LiveAlloc) -> bool {
        self.outstanding == o.outstanding
            && self.bytes == o.bytes
            && self.by_call_site == o.by_call_site
            && self.by_stack == o.by_stack
            && self.by_mount == o.by_mount
            && self.counters == o.counters
    }
}

/// A mount's lifetime: `tracer_fs::alloc::MountWindow`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowRecord {
    pub id: u64,
    pub target: String,
    pub source: String,
    pub fs_type: String,
    pub start_ns: u64,
    pub end_ns: Option<u64>,
    pub lazy: bool,
}

impl WindowRecord {
    pub fn of(w: &MountWindow) -> Self {
        WindowRecord {
            id: w.id,
            target: w.target.clone(),
            source: w.source.clone(),
            fs_type: w.fs_type.clone(),
            start_ns: w.start_ns,
            end_ns: w.end_ns,
            lazy: w.lazy,
        }
    }

    pub fn window(&self) -> MountWindow {
        MountWindow {
            id: self.id,
            target: self.target.clone(),
            source: self.source.clone(),
            fs_type: self.fs_type.clone(),
            start_ns: self.start_ns,
            end_ns: self.end_ns,
            lazy: self.lazy,
            // Not in the recording format (yet): a replayed failed mount's report reads as
            // one after umount.
            failed: None,
        }
    }
}

/// A leak report: what was still allocated, charged to a mount, after its umount.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeakRecord {
    pub window: WindowRecord,
    /// When the report was made (ages are counted to it).
    pub now_ns: u64,
    /// Every object charged to the mount, and their bytes.
    pub objects: u64,
    pub bytes: u64,
    pub uncertain: bool,
    pub reasons: Vec<String>,
    /// Each object has its own stack (`--alloc-stack-per-object`).
    pub per_object: bool,
    /// The objects printed in full: the oldest first, at most `max_objects` of them.
    pub shown: Vec<ObjRecord>,
    /// Largest first, at most `--alloc-top`.
    pub groups: Vec<GroupRecord>,
    pub stacks: Vec<StackRecord>,
    /// The window's cycle number among the cycles of its kind (since snapshot version 2;
    /// 0: recorded before reports were classified).
    pub cycle: u64,
    /// Its kind: the filesystem type, or `failed xfs mounts`.
    pub kind: String,
    /// The objects by verdict (this window's, then the earlier cycles' still allocated).
    pub parts: Vec<PartRecord>,
}

/// One object of a classified report, with the rule that decided it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JudgedObj {
    pub obj: ObjRecord,
    pub why: String,
}

/// A group of a classified report, with the rule that decided its objects.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JudgedGroup {
    pub group: GroupRecord,
    pub why: String,
}

/// The objects of one verdict: `tracer_fs::leakcheck::Part`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartRecord {
    pub class: Class,
    pub earlier: bool,
    pub objects: u64,
    pub bytes: u64,
    pub shown: Vec<JudgedObj>,
    pub groups: Vec<JudgedGroup>,
}

impl PartRecord {
    pub fn of(p: &Part) -> Self {
        PartRecord {
            class: p.class,
            earlier: p.earlier,
            objects: p.objects,
            bytes: p.bytes,
            shown: p
                .shown
                .iter()
                .map(|(a, why)| JudgedObj {
                    obj: ObjRecord::of(a),
                    why: why.clone(),
                })
                .collect(),
            groups: p
                .groups
                .iter()
                .map(|(g, why)| JudgedGroup {
                    group: GroupRecord::of(g),
                    why: why.clone(),
                })
                .collect(),
        }
    }

    pub fn part(&self) -> Part {
        Part {
            class: self.class,
            earlier: self.earlier,
            objects: self.objects,
            bytes: self.bytes,
            shown: self
                .shown
                .iter()
                .map(|o| (o.obj.allocation(), o.why.clone()))
                .collect(),
            groups: self
                .groups
                .iter()
                .map(|g| (g.group.group(), g.why.clone()))
                .collect(),
        }
    }
}

impl LeakRecord {
    /// The time the report is filed under: the umount.
    pub fn umount_ns(&self) -> u64 {
        self.window.end_ns.unwrap_or(self.now_ns)
    }

    /// Whether the report was classified (recorded by a tracer with cycle confirmation).
    pub fn classified(&self) -> bool {
        self.cycle > 0
    }

    /// Objects of `class` in this window (`earlier` false) or from earlier cycles.
    pub fn count(&self, class: Class, earlier: bool) -> u64 {
        self.parts
            .iter()
            .filter(|p| p.class == class && p.earlier == earlier)
            .map(|p| p.objects)
            .sum()
    }

    pub fn caveats(&self) -> Caveats {
        Caveats {
            uncertain: self.uncertain,
            reasons: self.reasons.clone(),
        }
    }
}

/// Names frames from a table of names and stacks from the record's own stacks.
pub struct RecordSyms<'a> {
    names: &'a HashMap<u64, String>,
    stacks: HashMap<(i32, u64), &'a [u64]>,
    per_object: bool,
}

impl<'a> RecordSyms<'a> {
    pub fn new(
        names: &'a HashMap<u64, String>,
        stacks: &'a [StackRecord],
        per_object: bool,
    ) -> Self {
        RecordSyms {
            names,
            stacks: stacks
                .iter()
                .map(|s| ((s.stack_id, s.call_site), s.frames.as_slice()))
                .collect(),
            per_object,
        }
    }
}

impl Symbolizer for RecordSyms<'_> {
    fn frame(&self, addr: u64) -> String {
        self.names
            .get(&addr)
            .cloned()
            .unwrap_or_else(|| format!("{addr:#x}"))
    }
    fn stack(&self, id: i32, call_site: u64) -> Vec<u64> {
        self.stacks
            .get(&(id, call_site))
            .map(|f| f.to_vec())
            .unwrap_or_default()
    }
    fn per_object(&self) -> bool {
        self.per_object
    }
}

/// The stacks a report prints: one per distinct (stack, call site) of `keys`, from `sym`.
pub fn stacks_of(
    keys: impl IntoIterator<Item = (i32, u64)>,
    sym: &dyn Symbolizer,
) -> Vec<StackRecord> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (id, site) in keys {
        if id >= 0 && seen.insert((id, site)) {
            out.push(StackRecord {
                stack_id: id,
                call_site: site,
                frames: sym.stack(id, site),
            });
        }
    }
    out
}

/// Every kernel text address a record names (call sites and frames).
pub fn addresses(r: &AllocRecord) -> Vec<u64> {
    let stacks = |s: &[StackRecord]| s.iter().flat_map(|s| s.frames.clone()).collect::<Vec<_>>();
    match r {
        AllocRecord::Setup(_) | AllocRecord::Frames(_) => vec![],
        AllocRecord::Live(l) => l
            .by_call_site
            .iter()
            .map(|s| s.call_site)
            .chain(l.by_stack.iter().map(|g| g.call_site))
            .chain(stacks(&l.stacks))
            .collect(),
        AllocRecord::Leak(k) => k
            .shown
            .iter()
            .map(|o| o.call_site)
            .chain(k.groups.iter().map(|g| g.call_site))
            .chain(k.parts.iter().flat_map(|p| {
                p.shown
                    .iter()
                    .map(|o| o.obj.call_site)
                    .chain(p.groups.iter().map(|g| g.group.call_site))
            }))
            .chain(stacks(&k.stacks))
            .collect(),
    }
}

fn hex(v: u64) -> String {
    format!("{v:#x}")
}

fn group_json(g: &GroupRecord, sym: &dyn Symbolizer) -> Value {
    let frames = if g.stack_id >= 0 {
        sym.stack(g.stack_id, g.call_site)
    } else {
        vec![]
    };
    json!({
        "count": g.count, "bytes": g.bytes, "cache": g.cache,
        "call_site": hex(g.call_site), "function": sym.frame(g.call_site),
        "stack_id": g.stack_id,
        "backtrace": frames.iter().map(|f| sym.frame(*f)).collect::<Vec<_>>(),
    })
}

/// The kmemleak-style text of a leak report.
pub fn leak_text(k: &LeakRecord, names: &HashMap<u64, String>) -> String {
    let sym = RecordSyms::new(names, &k.stacks, k.per_object);
    let shown: Vec<Allocation> = k.shown.iter().map(ObjRecord::allocation).collect();
    let shown: Vec<&Allocation> = shown.iter().collect();
    if k.classified() {
        let parts: Vec<Part> = k.parts.iter().map(PartRecord::part).collect();
        return leakcheck::report_text(
            &k.window.window(),
            k.cycle,
            &k.kind,
            k.objects,
            k.bytes,
            &parts,
            &k.caveats(),
            k.now_ns,
            &sym,
        );
    }
    let groups: Vec<Group> = k.groups.iter().map(GroupRecord::group).collect();
    report_text_of(
        &k.window.window(),
        k.objects,
        k.bytes,
        &shown,
        &groups,
        &k.caveats(),
        k.now_ns,
        &sym,
    )
}

/// A leak report as `tracer attach` prints it (the `leak_report` line, without `type`).
pub fn leak_json(k: &LeakRecord, names: &HashMap<u64, String>) -> Value {
    let sym = RecordSyms::new(names, &k.stacks, k.per_object);
    let mut v = json!({
        "mount": k.window.window(),
        "objects": k.objects,
        "bytes": k.bytes,
        "uncertain": k.uncertain,
        "reasons": k.reasons,
        "groups": k.groups.iter().map(|g| group_json(g, &sym)).collect::<Vec<_>>(),
        "object_list": k.shown.iter().map(|a| json!({
            "ptr": hex(a.ptr), "size": a.size, "cache": a.cache,
            "call_site": hex(a.call_site), "comm": a.comm, "pid": a.pid, "tgid": a.tgid,
            "age_ns": k.now_ns.saturating_sub(a.ts_ns),
        })).collect::<Vec<_>>(),
        "text": leak_text(k, names),
    });
    if k.classified() {
        let counts = |earlier: bool| {
            let mut m = serde_json::Map::new();
            for c in Class::ALL {
                m.insert(c.name().into(), json!(k.count(c, earlier)));
            }
            Value::Object(m)
        };
        v["cycle"] = json!(k.cycle);
        v["kind"] = json!(k.kind);
        v["confirmed"] = json!(k.count(Class::Leak, false) + k.count(Class::Leak, true));
        v["counts"] = counts(false);
        v["earlier_counts"] = counts(true);
        v["parts"] = k
            .parts
            .iter()
            .map(|p| {
                json!({
                    "class": p.class.name(),
                    "earlier": p.earlier,
                    "objects": p.objects,
                    "bytes": p.bytes,
                    "groups": p.groups.iter().map(|g| {
                        let mut v = group_json(&g.group, &sym);
                        v["why"] = json!(g.why);
                        v
                    }).collect::<Vec<_>>(),
                    "object_list": p.shown.iter().map(|o| {
                        let a = &o.obj;
                        json!({
                            "ptr": hex(a.ptr), "size": a.size, "cache": a.cache,
                            "call_site": hex(a.call_site), "function": sym.frame(a.call_site),
                            "comm": a.comm, "pid": a.pid, "tgid": a.tgid,
                            "age_ns": k.now_ns.saturating_sub(a.ts_ns), "why": o.why,
                        })
                    }).collect::<Vec<_>>(),
                })
            })
            .collect();
    }
    v
}

/// The outstanding allocations as `tracer attach` prints them (the `alloc_live` line,
/// without `type`).
pub fn live_json(l: &LiveAlloc, names: &HashMap<u64, String>) -> Value {
    let sym = RecordSyms::new(names, &l.stacks, false);
    let c = &l.counters;
    json!({
        "ts_ns": l.ts_ns,
        "outstanding": l.outstanding,
        "bytes": l.bytes,
        "growth_objects_per_s": l.growth_objects_per_s,
        "growth_bytes_per_s": l.growth_bytes_per_s,
        "by_call_site": l.by_call_site.iter().map(|s| json!({
            "call_site": hex(s.call_site), "function": sym.frame(s.call_site),
            "count": s.count, "bytes": s.bytes,
        })).collect::<Vec<_>>(),
        "by_stack": l.by_stack.iter().map(|g| group_json(g, &sym)).collect::<Vec<_>>(),
        "by_mount": l.by_mount.iter().map(|m| json!({
            "target": m.target, "source": m.source, "fs_type": m.fs_type,
            "mounted_ns": m.mounted_ns, "count": m.count, "bytes": m.bytes,
        })).collect::<Vec<_>>(),
        "tracked_total": c.tracked,
        "freed_total": c.freed,
        "untracked_map_full": c.map_full,
        "sampled_out": c.sampled_out,
        "stacks": c.stacks,
        "stack_failures": c.stack_failures,
        "reused_unseen_free": c.reused,
        "free_misses": c.free_misses,
    })
}

/// An allocation snapshot frame's payload.
pub fn encode(records: &[AllocRecord]) -> Result<Vec<u8>> {
    let raw = postcard::to_allocvec(records).context("encoding allocation records")?;
    let z = zstd::bulk::compress(&raw, 3).context("compressing allocation records")?;
    let mut p = Vec::with_capacity(6 + z.len());
    p.extend_from_slice(&ALLOC_SNAPSHOT_VERSION.to_le_bytes());
    p.extend_from_slice(&(raw.len() as u32).to_le_bytes());
    p.extend_from_slice(&z);
    Ok(p)
}

/// Why a snapshot frame was not read.
#[derive(Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Written by a newer tracer: skipped.
    Newer(u16),
    Bad(String),
}

/// Reads an allocation snapshot frame's payload.
pub fn decode(p: &[u8]) -> Result<Vec<AllocRecord>, DecodeError> {
    let bad = |s: String| DecodeError::Bad(s);
    if p.len() < 6 {
        return Err(bad("shorter than its prefix".into()));
    }
    let version = u16::from_le_bytes([p[0], p[1]]);
    if version > ALLOC_SNAPSHOT_VERSION {
        return Err(DecodeError::Newer(version));
    }
    if version == 0 {
        return Err(bad("snapshot version 0".into()));
    }
    let raw_len = u32::from_le_bytes([p[2], p[3], p[4], p[5]]) as usize;
    if raw_len > MAX_BLOCK_RAW_LEN {
        return Err(bad(format!(
            "declares {raw_len} bytes, more than {MAX_BLOCK_RAW_LEN}"
        )));
    }
    let raw = zstd::bulk::decompress(&p[6..], raw_len)
        .map_err(|e| bad(format!("decompression failed: {e}")))?;
    if raw.len() != raw_len {
        return Err(bad(format!(
            "decompressed to {} bytes, {raw_len} declared",
            raw.len()
        )));
    }
    let done = |r: Result<(Vec<AllocRecord>, &[u8]), postcard::Error>| match r {
        Ok((v, [])) => Ok(v),
        Ok((_, rest)) => Err(bad(format!("{} bytes after its records", rest.len()))),
        Err(e) => Err(bad(format!("records do not decode: {e}"))),
    };
    match version {
        1 => done(
            postcard::take_from_bytes::<Vec<v1::AllocRecord>>(&raw)
                .map(|(v, rest)| (v.into_iter().map(v1::AllocRecord::upgrade).collect(), rest)),
        ),
        _ => done(postcard::take_from_bytes::<Vec<AllocRecord>>(&raw)),
    }
}

/// Snapshot version 1 (before leak reports were classified), read into today's records.
pub(crate) mod v1 {
    use serde::{Deserialize, Serialize};

    use super::{GroupRecord, LiveAlloc, ObjRecord, StackRecord, WindowRecord};

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub enum AllocRecord {
        Setup(String),
        Frames(Vec<(u64, String)>),
        Live(LiveAlloc),
        Leak(LeakRecord),
    }

    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub struct LeakRecord {
        pub window: WindowRecord,
        pub now_ns: u64,
        pub objects: u64,
        pub bytes: u64,
        pub uncertain: bool,
        pub reasons: Vec<String>,
        pub per_object: bool,
        pub shown: Vec<ObjRecord>,
        pub groups: Vec<GroupRecord>,
        pub stacks: Vec<StackRecord>,
    }

    impl AllocRecord {
        pub fn upgrade(self) -> super::AllocRecord {
            match self {
                AllocRecord::Setup(s) => super::AllocRecord::Setup(s),
                AllocRecord::Frames(f) => super::AllocRecord::Frames(f),
                AllocRecord::Live(l) => super::AllocRecord::Live(l),
                AllocRecord::Leak(k) => super::AllocRecord::Leak(super::LeakRecord {
                    window: k.window,
                    now_ns: k.now_ns,
                    objects: k.objects,
                    bytes: k.bytes,
                    uncertain: k.uncertain,
                    reasons: k.reasons,
                    per_object: k.per_object,
                    shown: k.shown,
                    groups: k.groups,
                    stacks: k.stacks,
                    cycle: 0,
                    kind: String::new(),
                    parts: vec![],
                }),
            }
        }
    }
}

/// Checks a setup's JSON (the tracker writes it; a damaged one is reported, not trusted).
pub fn setup_value(s: &str) -> Result<Value> {
    match serde_json::from_str::<Value>(s) {
        Ok(v) if v.is_object() => Ok(v),
        Ok(_) => bail!("allocation setup is not a JSON object"),
        Err(e) => bail!("allocation setup is not valid JSON: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample_leak() -> LeakRecord {
        LeakRecord {
            window: WindowRecord {
                id: 1,
                target: "/mnt/t".into(),
                source: "tmpfs".into(),
                fs_type: "tmpfs".into(),
                start_ns: 1_000,
                end_ns: Some(5_000),
                lazy: false,
            },
            now_ns: 2_000_005_000,
            objects: 3,
            bytes: 768,
            uncertain: true,
            reasons: vec!["other mounts were alive".into()],
            per_object: false,
            shown: vec![ObjRecord {
                ptr: 0xffff_8880_1234_5600,
                ts_ns: 2_000,
                call_site: 0xffff_ffff_8100_0010,
                cache: "filp".into(),
                size: 256,
                stack_id: 4,
                pid: 77,
                tgid: 77,
                comm: "cat".into(),
            }],
            groups: vec![GroupRecord {
                stack_id: 4,
                call_site: 0xffff_ffff_8100_0010,
                cache: "filp".into(),
                count: 3,
                bytes: 768,
                oldest_ns: 2_000,
            }],
            stacks: vec![StackRecord {
                stack_id: 4,
                call_site: 0xffff_ffff_8100_0010,
                frames: vec![0xffff_ffff_8100_0010, 0xffff_ffff_8100_0200],
            }],
            cycle: 0,
            kind: String::new(),
            parts: vec![],
        }
    }

    #[test]
    fn snapshots_round_trip_and_newer_versions_are_refused() {
        let names: Vec<(u64, String)> = vec![(0xffff_ffff_8100_0010, "f+0x10/0x100".into())];
        let recs = vec![
            AllocRecord::Setup("{}".into()),
            AllocRecord::Frames(names),
            AllocRecord::Leak(sample_leak()),
        ];
        let p = encode(&recs).unwrap();
        assert_eq!(decode(&p).unwrap(), recs);
        let mut newer = p.clone();
        newer[..2].copy_from_slice(&(ALLOC_SNAPSHOT_VERSION + 1).to_le_bytes());
        assert_eq!(
            decode(&newer),
            Err(DecodeError::Newer(ALLOC_SNAPSHOT_VERSION + 1))
        );
        assert!(matches!(
            decode(&p[..p.len() - 3]),
            Err(DecodeError::Bad(_))
        ));
        assert!(matches!(decode(&[1, 0]), Err(DecodeError::Bad(_))));
    }

    /// Recordings made before reports were classified (snapshot version 1, like the
    /// `fake-xfstests-alloc.trace` fixture) read as unclassified reports, in the old text.
    #[test]
    fn version_1_snapshots_read_as_unclassified_reports() {
        let k = sample_leak();
        let old = vec![
            v1::AllocRecord::Setup("{}".into()),
            v1::AllocRecord::Leak(v1::LeakRecord {
                window: k.window.clone(),
                now_ns: k.now_ns,
                objects: k.objects,
                bytes: k.bytes,
                uncertain: k.uncertain,
                reasons: k.reasons.clone(),
                per_object: k.per_object,
                shown: k.shown.clone(),
                groups: k.groups.clone(),
                stacks: k.stacks.clone(),
            }),
        ];
        let raw = postcard::to_allocvec(&old).unwrap();
        let mut p = 1u16.to_le_bytes().to_vec();
        p.extend_from_slice(&(raw.len() as u32).to_le_bytes());
        p.extend_from_slice(&zstd::bulk::compress(&raw, 3).unwrap());
        let back = decode(&p).unwrap();
        assert_eq!(
            back,
            vec![
                AllocRecord::Setup("{}".into()),
                AllocRecord::Leak(k.clone())
            ]
        );
        let AllocRecord::Leak(k) = &back[1] else {
            unreachable!()
        };
        assert!(!k.classified());
        let t = leak_text(k, &HashMap::new());
        assert!(t.contains("unreferenced object 0xffff888012345600"), "{t}");
        assert!(!t.contains("cycle"), "{t}");
        assert!(leak_json(k, &HashMap::new()).get("parts").is_none());
        // Today's records carry the verdicts, and read back whole.
        let mut k2 = k.clone();
        k2.cycle = 2;
        k2.kind = "tmpfs".into();
        k2.parts = vec![PartRecord {
            class: Class::OneTime,
            earlier: true,
            objects: 1,
            bytes: 256,
            shown: vec![JudgedObj {
                obj: k.shown[0].clone(),
                why: "one-time: from cycle 1".into(),
            }],
            groups: vec![JudgedGroup {
                group: k.groups[0].clone(),
                why: "one-time: from cycle 1".into(),
            }],
        }];
        let recs = vec![AllocRecord::Leak(k2.clone())];
        assert_eq!(decode(&encode(&recs).unwrap()).unwrap(), recs);
        let t = leak_text(&k2, &HashMap::new());
        assert!(
            t.contains("(cycle 2 of tmpfs): from earlier cycles: 1 one-time"),
            "{t}"
        );
        assert!(
            t.contains("one-time object 0xffff888012345600 (size 256):"),
            "{t}"
        );
        assert!(!t.contains("unreferenced object"), "{t}");
        let v = leak_json(&k2, &HashMap::new());
        assert_eq!(v["earlier_counts"]["one_time"], 1);
        assert_eq!(v["confirmed"], 0);
        assert_eq!(
            v["parts"][0]["object_list"][0]["why"],
            "one-time: from cycle 1"
        );
    }

    #[test]
    fn text_names_frames_from_the_recorded_names() {
        let k = sample_leak();
        let names: HashMap<u64, String> = [
            (
                0xffff_ffff_8100_0010,
                "alloc_empty_file+0x10/0x100".to_string(),
            ),
            (
                0xffff_ffff_8100_0200,
                "do_sys_openat2+0x20/0x90".to_string(),
            ),
        ]
        .into_iter()
        .collect();
        let t = leak_text(&k, &names);
        assert!(t.starts_with(
            "leak report for /mnt/t (tmpfs on tmpfs): 3 objects, 768 bytes still allocated after umount (UNCERTAIN)\n"
        ), "{t}");
        assert!(t.contains("unreferenced object 0xffff888012345600 (size 256):\n  comm \"cat\", pid 77, age 2.000s\n  cache filp\n"), "{t}");
        assert!(
            t.contains("    alloc_empty_file+0x10/0x100\n    do_sys_openat2+0x20/0x90\n"),
            "{t}"
        );
        assert!(t.contains("... and 2 more objects"), "{t}");
        let v = leak_json(&k, &names);
        assert_eq!(v["groups"][0]["backtrace"][1], "do_sys_openat2+0x20/0x90");
        assert_eq!(v["object_list"][0]["age_ns"], 2_000_003_000u64);
        // Without names (a damaged recording), raw addresses.
        let t = leak_text(&k, &HashMap::new());
        assert!(t.contains("    0xffffffff81000200\n"), "{t}");
    }
}
