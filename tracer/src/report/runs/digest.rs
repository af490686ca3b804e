//! What the cross-run report keeps of one replayed recording: per test, its EBUSY and
//! lock stories reduced to what recurs across machines and kernels (the kinds of holders,
//! the release chains by function name, how long the mount was pinned) and its leak
//! groups by symbolized stack (function names, offsets dropped). A digest is small: the
//! parallel replay keeps one [`crate::report::Report`] per core and only digests after.

use std::collections::{BTreeMap, BTreeSet};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tracer_fs::{
    Notice,
    leakcheck::Class,
    work::{ChainLink, LinkRole},
};

use crate::record::alloc::LeakRecord;
use crate::report::{Report, Section, Story, alloc::AllocInfo};

/// The test name of what came before the first xfstests marker (or a recording without
/// markers).
pub const NO_TEST: &str = "(no test)";

/// One recording, as the cross-run report sees it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunDigest {
    /// The recording's path, as given.
    pub file: String,
    /// The machine it was made on (`hostname` in its header; empty for recordings made
    /// before tracer wrote it).
    pub host: String,
    /// `uname -r` of the traced kernel.
    pub kernel: String,
    pub tracer_version: String,
    /// Start of the recording, RFC 3339 UTC.
    pub started_at: Option<String>,
    pub duration_ns: u64,
    /// The recording ended with its end frame (false: cut short).
    pub clean_end: bool,
    pub records_lost: u64,
    /// Damage the reader skipped, in words.
    pub problems: Vec<String>,
    /// Recorded with `--alloc-filter`.
    pub allocations_tracked: bool,
    pub tests: Vec<TestDigest>,
}

/// One test of one run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TestDigest {
    /// `generic/388`, or [`NO_TEST`].
    pub test: String,
    /// fstests' own verdict (`pass`, `fail`, `notrun`); absent when the recording has none
    /// (not made by `tracer run ./check`, or made before tracer recorded them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fstests_status: Option<String>,
    pub started_at: Option<String>,
    pub duration_ns: u64,
    pub ebusy_calls: u64,
    pub ebusy_stories: Vec<StoryDigest>,
    pub lock_stories: Vec<StoryDigest>,
    /// Leak-report objects of the mounts unmounted in this test, by stack and verdict.
    pub leaks: Vec<LeakDigest>,
    /// Detached mounts still pinned by files at the end of the test.
    pub detached_pinned_at_end: u64,
}

/// One EBUSY (or lock-conflict) story, reduced.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StoryDigest {
    /// The filesystem type of the mount (empty when not known).
    pub fs_type: String,
    /// What held it, by kind (`fd`, `uring_fixed`, `uring_req`, `mmap`, `aio`, `backing`,
    /// `deferred_put`, `unattributed`, `cwd`, `root`, `child_mount`, `device_opener`,
    /// `lock_holder`), sorted.
    pub culprit_kinds: Vec<String>,
    /// Release chains seen in the story, by function: each with how many releases took it.
    pub chains: Vec<ChainDigest>,
    /// First EBUSY (first conflict) to the umount that worked (the lock's release);
    /// `None`: not over at the end of the test.
    pub pinned_ns: Option<u64>,
    pub failed_attempts: u32,
    /// A verdict of the story said "nothing traced explains".
    pub unexplained: bool,
}

/// A release chain by the functions and roles of its links (no addresses, pids or
/// kworker names), e.g. `["delayed_fput", "armed by io_ring_exit_work", "queued by a
/// task at exit"]`: the first link released the culprit.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ChainDigest {
    pub links: Vec<String>,
    pub releases: u64,
}

/// Objects of one leak-report verdict sharing a stack, in one test of one run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LeakDigest {
    /// `leak` (confirmed by the cycle rule), `one_time`, `unconfirmed` or `uncertain`.
    pub class: String,
    /// The filesystem type of the reports (`xfs`, `failed xfs mounts`).
    pub kind: String,
    pub cache: String,
    /// Call site first, each frame `function [module]` (offsets dropped, so it is the
    /// same stack on another kernel build).
    pub stack: Vec<String>,
    pub objects: u64,
    pub bytes: u64,
}

/// `xfs_buf_alloc+0x1c/0x2a0 [xfs]` → `xfs_buf_alloc [xfs]`; `0xffff…` stays.
pub fn frame_function(name: &str) -> String {
    let (head, module) = match name.split_once(' ') {
        Some((h, m)) => (h, Some(m.trim())),
        None => (name, None),
    };
    let f = match head.split_once('+') {
        Some((f, _)) if !f.is_empty() => f,
        _ => head,
    };
    match module {
        Some(m) if !m.is_empty() => format!("{f} {m}"),
        _ => f.to_string(),
    }
}

/// One link of a chain in words, without addresses or task names.
pub fn link_key(l: &ChainLink) -> String {
    let f = l.function_name.as_deref().map(frame_function);
    let at_exit = if l.task_exited { " at exit" } else { "" };
    let who = |f: Option<String>| f.unwrap_or_else(|| format!("a task{at_exit}"));
    match l.role {
        LinkRole::Ran => who(f),
        LinkRole::TaskWork => format!("task_work (____fput){at_exit}"),
        LinkRole::ArmedBy => format!("armed by {}", who(f)),
        LinkRole::QueuedBy => format!("queued by {}", who(f)),
        LinkRole::QueuedByTimer => "queued by its timer".to_string(),
        LinkRole::PutBy => format!("put by {}", who(f)),
        LinkRole::Unseen => "origin not seen".to_string(),
    }
}

pub fn chain_key(chain: &[ChainLink]) -> Vec<String> {
    chain.iter().map(link_key).collect()
}

/// The holder kinds a notice names.
fn culprit_kinds(n: &Notice, into: &mut BTreeSet<String>) {
    match n {
        Notice::Verdict(v) => {
            let files = v
                .culprits
                .iter()
                .chain(v.pinned_mounts.iter().flat_map(|p| p.files.iter()));
            for f in files {
                for h in &f.holders {
                    if let Some(k) = serde_json::to_value(h)
                        .ok()
                        .and_then(|v| v["kind"].as_str().map(str::to_string))
                    {
                        into.insert(k);
                    }
                }
                if f.holders.is_empty() {
                    into.insert("unattributed".to_string());
                }
            }
            for p in &v.task_pins {
                for w in &p.what {
                    into.insert(w.word().to_string());
                }
            }
            if !v.child_mounts.is_empty() {
                into.insert("child_mount".to_string());
            }
            if !v.device_openers.is_empty() {
                into.insert("device_opener".to_string());
            }
            if !v.backing.is_empty() {
                into.insert("backing".to_string());
            }
            if !v.aio.is_empty() {
                into.insert("aio".to_string());
            }
        }
        Notice::PinFoundLate(p) => {
            into.insert(p.what.word().to_string());
        }
        Notice::LockConflict(v) => {
            into.insert(if v.holder.is_some() {
                "lock_holder".to_string()
            } else {
                "lock_holder_not_found".to_string()
            });
        }
        _ => {}
    }
}

/// The release chain a notice tells of, if any.
fn release_chain(n: &Notice) -> Option<Vec<String>> {
    match n {
        Notice::CulpritReleased(c) if c.chain.is_empty() => Some(vec![if c.seen {
            "release seen, chain not known".to_string()
        } else {
            "release inferred (pointer or mount id reused)".to_string()
        }]),
        Notice::CulpritReleased(c) => Some(chain_key(&c.chain)),
        Notice::PinReleased(p) => Some(vec![format!(
            "{} let go: {}",
            p.what.word(),
            if p.seen {
                "fs_struct freed (exit_fs)"
            } else {
                "gone by a later scan"
            }
        )]),
        Notice::LockReleased(r) if r.chain.is_empty() => Some(vec![format!("{:?}", r.how)]),
        Notice::LockReleased(r) => Some(chain_key(&r.chain)),
        _ => None,
    }
}

/// A story, reduced.
pub fn story_digest(s: &Story) -> StoryDigest {
    let mut kinds = BTreeSet::new();
    let mut chains: BTreeMap<Vec<String>, u64> = BTreeMap::new();
    let mut unexplained = false;
    for n in &s.notices {
        culprit_kinds(n, &mut kinds);
        if let Some(c) = release_chain(n) {
            *chains.entry(c).or_default() += 1;
        }
        if let Notice::Verdict(v) = n {
            unexplained |= v.unexplained;
        }
    }
    StoryDigest {
        fs_type: s
            .mount
            .as_ref()
            .map(|m| m.fs_type.clone())
            .unwrap_or_default(),
        culprit_kinds: kinds.into_iter().collect(),
        chains: chains
            .into_iter()
            .map(|(links, releases)| ChainDigest { links, releases })
            .collect(),
        pinned_ns: s.closed_ns.map(|c| c.saturating_sub(s.first_ebusy_ns)),
        failed_attempts: s.failed_attempts,
        unexplained,
    }
}

fn class_name(c: Class) -> String {
    serde_json::to_value(c)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{c:?}"))
}

/// A leak report's objects of this window (not earlier cycles', listed again by every
/// later report), by verdict and symbolized stack.
pub fn leak_digests(k: &LeakRecord, names: &AllocInfo, into: &mut Vec<LeakDigest>) {
    let stacks: BTreeMap<(i32, u64), &[u64]> = k
        .stacks
        .iter()
        .map(|s| ((s.stack_id, s.call_site), s.frames.as_slice()))
        .collect();
    let name = |a: u64| {
        names
            .names
            .get(&a)
            .map(|n| frame_function(n))
            .unwrap_or_else(|| format!("{a:#x}"))
    };
    for p in k.parts.iter().filter(|p| !p.earlier) {
        for g in &p.groups {
            let g = &g.group;
            let mut stack: Vec<String> = match stacks.get(&(g.stack_id, g.call_site)) {
                Some(frames) if !frames.is_empty() => frames.iter().map(|a| name(*a)).collect(),
                _ => vec![name(g.call_site)],
            };
            stack.dedup();
            into.push(LeakDigest {
                class: class_name(p.class),
                kind: k.kind.clone(),
                cache: g.cache.clone(),
                stack,
                objects: g.count,
                bytes: g.bytes,
            });
        }
    }
    // Reports of tracers before cycle confirmation: their groups, unclassified.
    if k.parts.is_empty() {
        for g in &k.groups {
            let stack = match stacks.get(&(g.stack_id, g.call_site)) {
                Some(frames) if !frames.is_empty() => frames.iter().map(|a| name(*a)).collect(),
                _ => vec![name(g.call_site)],
            };
            into.push(LeakDigest {
                class: "unclassified".to_string(),
                kind: k.kind.clone(),
                cache: g.cache.clone(),
                stack,
                objects: g.count,
                bytes: g.bytes,
            });
        }
    }
}

fn test_digest(r: &Report, s: &Section) -> TestDigest {
    let mut leaks = Vec::new();
    if let (Some(info), Some(a)) = (&r.alloc, &s.alloc) {
        for k in &a.leaks {
            leak_digests(k, info, &mut leaks);
        }
    }
    TestDigest {
        test: s.test.clone().unwrap_or_else(|| NO_TEST.to_string()),
        fstests_status: s
            .test
            .as_deref()
            .and_then(|t| r.fstests_status(t))
            .map(str::to_string),
        started_at: r.wall(s.start_ns),
        duration_ns: s.end_ns.saturating_sub(s.start_ns),
        ebusy_calls: s.ebusy_calls,
        ebusy_stories: s
            .stories
            .iter()
            .filter(|x| x.is_ebusy())
            .map(story_digest)
            .collect(),
        lock_stories: s
            .stories
            .iter()
            .filter(|x| x.lock)
            .map(story_digest)
            .collect(),
        leaks,
        detached_pinned_at_end: s.pinned_at_end.len() as u64,
    }
}

/// A replayed recording, reduced.
pub fn digest(r: &Report) -> RunDigest {
    let h = &r.header;
    RunDigest {
        file: r.source.clone(),
        host: h.hostname.clone(),
        kernel: h.kernel_release.clone(),
        tracer_version: h.tracer_version.clone(),
        started_at: r.wall(h.started_boot_ns),
        duration_ns: r.duration_ns(),
        clean_end: r.end.is_some(),
        records_lost: r.records_lost(),
        problems: r.problems.iter().map(|p| p.to_string()).collect(),
        allocations_tracked: r.alloc.is_some(),
        tests: r.sections.iter().map(|s| test_digest(r, s)).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_lose_their_offsets_and_keep_their_module() {
        assert_eq!(
            frame_function("xfs_buf_alloc+0x1c/0x2a0 [xfs]"),
            "xfs_buf_alloc [xfs]"
        );
        assert_eq!(frame_function("kmalloc_trace+0x25/0x90"), "kmalloc_trace");
        assert_eq!(frame_function("delayed_fput"), "delayed_fput");
        assert_eq!(frame_function("0xffffffff81000000"), "0xffffffff81000000");
    }

    fn link(role: LinkRole, f: Option<&str>, exited: bool) -> ChainLink {
        ChainLink {
            role,
            ts_ns: 1,
            pid: 7,
            tgid: 7,
            comm: "kworker/1:1".into(),
            work: f.map(|_| 0xffff_8880_0000_1000),
            function: f.map(|_| 0xffff_ffff_8100_0000),
            function_name: f.map(str::to_string),
            ring: None,
            task_exited: exited,
        }
    }

    #[test]
    fn chains_are_keyed_by_functions_not_addresses_or_tasks() {
        let a = [
            link(LinkRole::Ran, Some("delayed_fput"), false),
            link(LinkRole::ArmedBy, Some("io_ring_exit_work"), false),
            link(LinkRole::QueuedBy, None, true),
        ];
        let mut b = a.clone();
        for l in &mut b {
            l.pid = 99;
            l.comm = "kworker/0:2".into();
            l.function = l.function.map(|f| f + 0x1000);
        }
        assert_eq!(chain_key(&a), chain_key(&b));
        assert_eq!(
            chain_key(&a),
            [
                "delayed_fput",
                "armed by io_ring_exit_work",
                "queued by a task at exit"
            ]
        );
    }
}
