//! The JSON report: one document, the same content as the text report, for tools.
//!
//! ```text
//! { "report_version": 1,
//!   "recording": { file, format_version, wire_version, tracer_version, kernel_release,
//!                  started_at, started_boot_ns, duration_ns, command, clean_end,
//!                  stopped_by, items, events, records_lost, bad_records,
//!                  hooks_not_attached, problems, evidence_limits, tests_seen, only_test,
//!                  allocation_tracking: { filter, options } (with --alloc-filter) },
//!   "tests": [ { test (null before the first marker), start_ns, end_ns, started_at,
//!                events, mount_calls, ebusy_calls,
//!                ebusy_stories: [ { what, lock, mount, first_ebusy_ns, failed_attempts,
//!                                   closed_ns, busy_ns,
//!                                   timeline: [ { offset_ns, ts_ns, notice, summary } ],
//!                                   notices: [ <notice as `tracer attach` prints it> ] } ],
//!                leaks: { allocations: { tracked: false, note } without --alloc-filter, or
//!                           { tracked: true, filter, at_end: <alloc_live line>,
//!                             peak_outstanding, peak_bytes, counters, snapshots,
//!                             leak_reports: [ <leak_report line, as `tracer attach`
//!                                              prints it, without `type`> ] },
//!                         detached_mounts_pinned_at_end: [ AliveOnMount ],
//!                         detached_mount_notices: [ notice ] },
//!                deferred_work: [ WorkStats ] } ],
//!   "engine": Stats }
//! ```
//! Kernel addresses are `"0x…"` strings (tokens with `--redact`).

use serde::Serialize;
use serde_json::{Value, json};
use tracer_fs::{Notice, stats::Stats, summary::AliveOnMount, verdict::MountDesc};

use crate::record::Problem;

use super::{
    ALLOCATIONS_NOT_TRACKED, CommandInfo, Report, Section, Story, WorkStats, notice_summary,
    notice_ts,
};

pub const REPORT_VERSION: u32 = 1;

#[derive(Serialize)]
struct Doc<'a> {
    report_version: u32,
    recording: Recording<'a>,
    tests: Vec<Test<'a>>,
    engine: &'a Stats,
}

#[derive(Serialize)]
struct Recording<'a> {
    file: &'a str,
    format_version: u32,
    wire_version: u32,
    tracer_version: &'a str,
    kernel_release: &'a str,
    started_at: Option<String>,
    started_boot_ns: u64,
    duration_ns: u64,
    command: Option<&'a CommandInfo>,
    clean_end: bool,
    stopped_by: Option<&'a str>,
    items: u64,
    events: u64,
    records_lost: u64,
    bad_records: u64,
    hooks_not_attached: Vec<&'a str>,
    problems: Vec<ProblemDoc<'a>>,
    evidence_limits: &'a [String],
    tests_seen: &'a [String],
    only_test: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    allocation_tracking: Option<&'a Value>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Allocations {
    NotTracked { tracked: bool, note: &'static str },
    Tracked(Value),
}

#[derive(Serialize)]
struct Test<'a> {
    test: Option<&'a str>,
    /// fstests' own verdict (`pass`, `fail`, `notrun`), when the recording has it.
    #[serde(skip_serializing_if = "Option::is_none")]
    fstests_status: Option<&'static str>,
    start_ns: u64,
    end_ns: u64,
    started_at: Option<String>,
    events: u64,
    mount_calls: u64,
    ebusy_calls: u64,
    ebusy_stories: Vec<StoryDoc<'a>>,
    leaks: Leaks<'a>,
    deferred_work: &'a [WorkStats],
}

#[derive(Serialize)]
struct StoryDoc<'a> {
    what: &'a str,
    /// A lock conflict's story, not a umount's.
    lock: bool,
    /// A deleted file's space held until its release.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    space: bool,
    mount: Option<&'a MountDesc>,
    first_ebusy_ns: u64,
    failed_attempts: u32,
    closed_ns: Option<u64>,
    busy_ns: Option<u64>,
    timeline: Vec<Mark>,
    notices: Vec<NoticeDoc<'a>>,
}

#[derive(Serialize)]
struct Mark {
    offset_ns: u64,
    ts_ns: u64,
    notice: &'static str,
    summary: String,
}

#[derive(Serialize)]
struct Leaks<'a> {
    allocations: Allocations,
    detached_mounts_pinned_at_end: &'a [AliveOnMount],
    detached_mount_notices: Vec<NoticeDoc<'a>>,
}

/// A notice as `tracer attach --format json` prints it (minus the line's `type`).
pub fn notice_value(n: &Notice) -> Value {
    let mut v: Value = serde_json::from_str(&n.to_json_line()).unwrap_or(Value::Null);
    v["text"] = json!(n.to_string());
    v
}

pub fn notice_kind(n: &Notice) -> &'static str {
    match n {
        Notice::Verdict(_) => "verdict",
        Notice::CulpritReleased(_) => "culprit_released",
        Notice::PinReleased(_) => "pin_released",
        Notice::PinFoundLate(_) => "pin_found_late",
        Notice::StoryClosed(_) => "story_closed",
        Notice::MountDetachedPinned(_) => "mount_detached_pinned",
        Notice::DetachedMountUnpinned(_) => "detached_mount_unpinned",
        Notice::LockConflict(_) => "lock_conflict",
        Notice::LockStillHeld(_) => "lock_still_held",
        Notice::LockReleased(_) => "lock_released",
        Notice::SpaceHeld(_) => "space_held",
        Notice::SpaceFreed(_) => "space_freed",
    }
}

fn story(s: &Story) -> StoryDoc<'_> {
    StoryDoc {
        what: &s.what,
        lock: s.lock,
        space: s.space,
        mount: s.mount.as_ref(),
        first_ebusy_ns: s.first_ebusy_ns,
        failed_attempts: s.failed_attempts,
        closed_ns: s.closed_ns,
        busy_ns: s.closed_ns.map(|c| c.saturating_sub(s.first_ebusy_ns)),
        timeline: s
            .notices
            .iter()
            .map(|n| Mark {
                offset_ns: notice_ts(n).saturating_sub(s.first_ebusy_ns),
                ts_ns: notice_ts(n),
                notice: notice_kind(n),
                summary: notice_summary(n),
            })
            .collect(),
        notices: s.notices.iter().map(notice_doc).collect(),
    }
}

fn section<'a>(r: &Report, s: &'a Section) -> Test<'a> {
    Test {
        test: s.test.as_deref(),
        fstests_status: s.test.as_deref().and_then(|t| r.fstests_status(t)),
        start_ns: s.start_ns,
        end_ns: s.end_ns,
        started_at: r.wall(s.start_ns),
        events: s.events,
        mount_calls: s.mount_calls,
        ebusy_calls: s.ebusy_calls,
        ebusy_stories: s.stories.iter().map(story).collect(),
        leaks: Leaks {
            allocations: match (&r.alloc, &s.alloc) {
                (Some(info), Some(a)) => Allocations::Tracked(info.section_json(a)),
                _ => Allocations::NotTracked {
                    tracked: false,
                    note: ALLOCATIONS_NOT_TRACKED,
                },
            },
            detached_mounts_pinned_at_end: &s.pinned_at_end,
            detached_mount_notices: s.detached.iter().map(notice_doc).collect(),
        },
        deferred_work: &s.work,
    }
}

/// A notice with its text, fields in the engine's order.
#[derive(Serialize)]
pub struct NoticeDoc<'a> {
    #[serde(flatten)]
    notice: &'a Notice,
    text: String,
}

pub fn notice_doc(n: &Notice) -> NoticeDoc<'_> {
    NoticeDoc {
        notice: n,
        text: n.to_string(),
    }
}

#[derive(Serialize)]
struct ProblemDoc<'a> {
    #[serde(flatten)]
    problem: &'a Problem,
    text: String,
}

fn doc(r: &Report) -> Doc<'_> {
    let h = &r.header;
    Doc {
        report_version: REPORT_VERSION,
        recording: Recording {
            file: &r.source,
            format_version: h.format_version,
            wire_version: h.wire_version,
            tracer_version: &h.tracer_version,
            kernel_release: &h.kernel_release,
            started_at: r.wall(h.started_boot_ns),
            started_boot_ns: h.started_boot_ns,
            duration_ns: r.duration_ns(),
            command: r.command.as_ref(),
            clean_end: r.end.is_some(),
            stopped_by: r.end.as_ref().map(|e| e.stopped_by.as_str()),
            items: r.items,
            events: r.events,
            records_lost: r.records_lost(),
            bad_records: r.bad_records,
            hooks_not_attached: h
                .hooks
                .iter()
                .filter(|k| k.mechanism.is_none())
                .map(|k| k.hook.as_str())
                .collect(),
            problems: r
                .problems
                .iter()
                .map(|p| ProblemDoc {
                    problem: p,
                    text: p.to_string(),
                })
                .collect(),
            evidence_limits: &r.evidence_limits,
            tests_seen: &r.tests_seen,
            only_test: r.test_filter.as_deref(),
            allocation_tracking: r.alloc.as_ref().and_then(|a| a.setup.as_ref()),
        },
        tests: r.sections.iter().map(|s| section(r, s)).collect(),
        engine: &r.stats,
    }
}

/// The report as a JSON value (keys sorted; [`render`] keeps the document's order).
pub fn value(r: &Report) -> Value {
    serde_json::to_value(doc(r)).unwrap_or(Value::Null)
}

pub fn render(r: &Report) -> String {
    let mut s = serde_json::to_string_pretty(&doc(r)).unwrap_or_default();
    s.push('\n');
    s
}
