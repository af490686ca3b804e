//! The events pane's entries: the engine's notices (EBUSY verdicts, culprits released,
//! stories closed, mounts detached and unpinned), mount-table calls, xfstests markers and
//! warnings, each with a few short lines for the pane and the full text for its detail.

use tracer_fs::{
    Notice,
    text::{count, dur, rel},
    verdict::{FileReport, HolderDesc, Verdict, VerdictKind},
    work::chain_text,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogKind {
    /// An EBUSY verdict.
    Verdict,
    /// A culprit of an EBUSY released.
    Released,
    /// The operation that failed with EBUSY finally succeeded.
    Closed,
    /// A mount left the table but is pinned (lazy umount).
    Detached,
    /// A detached mount's last file went.
    Unpinned,
    /// A umount that worked.
    Umount,
    /// A mount that worked.
    Mount,
    /// A mount-table call that failed otherwise than with EBUSY.
    Failed,
    /// An xfstests test started.
    Test,
    /// Lost records, undecodable records.
    Warning,
    /// A leak report: allocations still outstanding after a mount's umount and grace.
    Leak,
    /// A leak report that found nothing.
    NoLeak,
    /// A lock request that failed or waited on a lock someone holds.
    Lock,
    /// A retry of an explained lock conflict.
    LockHeld,
    /// The lock of a conflict was released.
    Unlocked,
    /// A deleted file's space held by a ring or a request.
    SpaceHeld,
    /// That space freed.
    SpaceFreed,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    pub serial: u64,
    pub ts_ns: u64,
    pub kind: LogKind,
    /// What the pane shows: a headline, then a few indented lines.
    pub lines: Vec<String>,
    /// The whole text, for the detail view.
    pub full: String,
    /// The mount it is about, when there is one (Enter in the detail opens it).
    pub mount_id: Option<i32>,
}

/// `…/name` or the path: the shortest useful name of a file.
pub fn file_name(r: &FileReport) -> String {
    match &r.id.path {
        Some(p) => p.clone(),
        None if r.id.name.is_empty() => format!("inode {}", r.id.ino),
        None => format!("…/{}", r.id.name),
    }
}

/// "2 held by an fd, 1 waiting for a deferred put".
fn groups(files: &[FileReport]) -> String {
    let n = |p: fn(&HolderDesc) -> bool| files.iter().filter(|f| f.holders.iter().any(p)).count();
    let parts = [
        (n(|h| matches!(h, HolderDesc::Fd { .. })), "held by an fd"),
        (
            n(|h| matches!(h, HolderDesc::UringFixed { .. })),
            "registered in an io_uring ring",
        ),
        (
            n(|h| matches!(h, HolderDesc::UringReq { .. })),
            "used by an in-flight io_uring request",
        ),
        (
            n(|h| matches!(h, HolderDesc::DeferredPut { .. })),
            "waiting for a deferred put",
        ),
        (
            n(|h| matches!(h, HolderDesc::Unattributed { .. })),
            "unattributed",
        ),
    ];
    parts
        .iter()
        .filter(|(c, _)| *c > 0)
        .map(|(c, w)| format!("{c} {w}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One line per culprit (at most `max`): its name and what holds it.
fn culprit_lines(v: &Verdict, files: &[FileReport], max: usize, out: &mut Vec<String>) {
    let a = tracer_fs::verdict::Anchor::event(v.ts_ns, "EBUSY");
    for f in files.iter().take(max) {
        let holder = f
            .holders
            .first()
            .map(|h| h.words(&a))
            .unwrap_or_else(|| "no holder".into());
        out.push(format!("  {}: {holder}", file_name(f)));
    }
    if files.len() > max {
        out.push(format!(
            "  … and {} more (Enter for all)",
            files.len() - max
        ));
    }
}

fn verdict_lines(v: &Verdict) -> Vec<String> {
    let mut head = match v.kind {
        VerdictKind::UmountBusy => format!("umount {}", v.target),
        VerdictKind::MountBusy => format!("mount {} on {}", v.source, v.target),
    };
    head.push_str(&format!(" by pid {} ({})", v.caller.tgid, v.caller.comm));
    if v.attempt > 1 {
        head.push_str(&format!(", attempt {}", v.attempt));
    }
    if let Some(t) = &v.test {
        head.push_str(&format!(" during {t}"));
    }
    let mut lines = vec![head];
    match v.kind {
        VerdictKind::UmountBusy => {
            if v.mount.is_none() {
                lines.push("  not a mount we know".into());
            } else if !v.culprits.is_empty() {
                lines.push(format!(
                    "  busy: {}: {}",
                    count(v.culprits.len(), "open file", "open files"),
                    groups(&v.culprits)
                ));
                culprit_lines(v, &v.culprits, 2, &mut lines);
            }
            if !v.child_mounts.is_empty() {
                lines.push(format!(
                    "  {} under it",
                    count(v.child_mounts.len(), "child mount", "child mounts")
                ));
            }
        }
        VerdictKind::MountBusy => {
            let files: Vec<FileReport> = v
                .pinned_mounts
                .iter()
                .flat_map(|p| p.files.iter().cloned())
                .collect();
            if !v.pinned_mounts.is_empty() {
                lines.push(format!(
                    "  {} of {} pinned by {}",
                    count(v.pinned_mounts.len(), "mount", "mounts"),
                    v.source,
                    count(files.len(), "open file", "open files")
                ));
            }
            culprit_lines(v, &files, 2, &mut lines);
            if !v.device_openers.is_empty() {
                lines.push(format!(
                    "  the device is open by {}",
                    count(v.device_openers.len(), "file", "files")
                ));
            }
        }
    }
    if v.unexplained {
        lines.push("  nothing traced explains it (cwd, mmap, loop device…?)".into());
    }
    lines
}

impl LogKind {
    /// The pane's label for the kind, 6 columns wide.
    pub fn tag(self) -> &'static str {
        match self {
            LogKind::Verdict => "EBUSY ",
            LogKind::Released => "freed ",
            LogKind::Closed => "done  ",
            LogKind::Detached => "detach",
            LogKind::Unpinned => "unpin ",
            LogKind::Umount | LogKind::Mount => "ok    ",
            LogKind::Failed => "error ",
            LogKind::Test => "test  ",
            LogKind::Warning => "WARN  ",
            LogKind::Leak => "LEAK  ",
            LogKind::NoLeak => "noleak",
            LogKind::Lock => "LOCK  ",
            LogKind::LockHeld => "held  ",
            LogKind::Unlocked => "unlock",
            LogKind::SpaceHeld => "SPACE ",
            LogKind::SpaceFreed => "spfree",
        }
    }
}

impl LogEntry {
    /// A leak report (allocation tracking's `leak_report` object): a headline with the
    /// mount, objects and bytes, the largest groups; in full, the kmemleak-style text.
    pub fn of_leak_report(v: &serde_json::Value, ts_ns: u64) -> LogEntry {
        let str_of = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
        let m = &v["mount"];
        let target = str_of(&m["target"]);
        let fs = match m["fs_type"].as_str() {
            Some(t) if !t.is_empty() => t.to_string(),
            _ => "?".to_string(),
        };
        let objects = v["objects"].as_u64().unwrap_or(0);
        let bytes = v["bytes"].as_u64().unwrap_or(0);
        let uncertain = v["uncertain"].as_bool().unwrap_or(false);
        let maybe = if uncertain { " (uncertain)" } else { "" };
        // A failed mount's report covers the call itself.
        let after = match m["failed"].as_i64() {
            Some(err) => format!("after the mount failed (error {err})"),
            None => "after umount".to_string(),
        };
        let mut lines = if objects == 0 {
            vec![format!(
                "{target} ({fs}): nothing left allocated {after}{maybe}"
            )]
        } else {
            vec![format!(
                "{target} ({fs}): {}, {bytes} bytes still allocated {after}{maybe}",
                count(objects as usize, "object", "objects")
            )]
        };
        // A classified report (cycle confirmation): what each object is.
        if let Some(counts) = v["counts"].as_object() {
            let mut by: Vec<String> = counts
                .iter()
                .filter_map(|(k, n)| Some((k, n.as_u64()?)))
                .filter(|(_, n)| *n > 0)
                .map(|(k, n)| format!("{n} {}", k.replace('_', "-")))
                .collect();
            let earlier: u64 = v["earlier_counts"]
                .as_object()
                .map(|m| m.values().filter_map(|n| n.as_u64()).sum())
                .unwrap_or(0);
            if earlier > 0 {
                by.push(format!(
                    "{earlier} from earlier cycles ({} confirmed)",
                    v["earlier_counts"]["confirmed"].as_u64().unwrap_or(0)
                ));
            }
            if !by.is_empty() {
                lines.push(format!(
                    "  cycle {} of {}: {}",
                    v["cycle"].as_u64().unwrap_or(0),
                    str_of(&v["kind"]),
                    by.join(", ")
                ));
            }
        }
        let groups = v["groups"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        for g in groups.iter().take(2) {
            let cache = match g["cache"].as_str() {
                Some(c) if !c.is_empty() => format!(" ({c})"),
                _ => String::new(),
            };
            lines.push(format!(
                "  {} × {}{cache}, {} bytes",
                g["count"].as_u64().unwrap_or(0),
                str_of(&g["function"]),
                g["bytes"].as_u64().unwrap_or(0)
            ));
        }
        if groups.len() > 2 {
            lines.push(format!("  and {} more stacks", groups.len() - 2));
        }
        if uncertain && let Some(r) = v["reasons"].get(0).and_then(|r| r.as_str()) {
            lines.push(format!("  {r}"));
        }
        LogEntry {
            serial: 0,
            ts_ns,
            kind: if objects == 0 {
                LogKind::NoLeak
            } else {
                LogKind::Leak
            },
            lines,
            full: str_of(&v["text"]),
            mount_id: None,
        }
    }

    pub fn of_notice(n: &Notice) -> LogEntry {
        let full = n.to_string();
        let (ts_ns, kind, lines, mount_id) = match n {
            Notice::LockConflict(v) => {
                let mut lines: Vec<String> = full.lines().take(6).map(str::to_string).collect();
                if lines.len() < full.lines().count() {
                    lines.push("  …".to_string());
                }
                (
                    v.ts_ns,
                    LogKind::Lock,
                    lines,
                    v.mount.as_ref().map(|m| m.id),
                )
            }
            Notice::LockStillHeld(h) => (
                h.ts_ns,
                LogKind::LockHeld,
                vec![full.clone()],
                h.story.mount.as_ref().map(|m| m.id),
            ),
            Notice::SpaceHeld(s) => (
                s.ts_ns,
                LogKind::SpaceHeld,
                full.lines().take(6).map(str::to_string).collect(),
                s.story.mount.as_ref().map(|m| m.id),
            ),
            Notice::SpaceFreed(s) => (
                s.ts_ns,
                LogKind::SpaceFreed,
                full.lines().map(str::to_string).collect(),
                s.story.mount.as_ref().map(|m| m.id),
            ),
            Notice::LockReleased(r) => (
                r.ts_ns,
                LogKind::Unlocked,
                full.lines().map(str::to_string).collect(),
                r.story.mount.as_ref().map(|m| m.id),
            ),
            Notice::Verdict(v) => (
                v.ts_ns,
                LogKind::Verdict,
                verdict_lines(v),
                v.mount
                    .as_ref()
                    .map(|m| m.id)
                    .or_else(|| v.pinned_mounts.first().map(|p| p.mount.id)),
            ),
            Notice::CulpritReleased(c) => {
                let s = &c.story;
                let after = rel(
                    c.ts_ns,
                    s.first_ebusy_ns,
                    if s.failed_attempts > 1 {
                        "first EBUSY"
                    } else {
                        "EBUSY"
                    },
                );
                let name = match &c.file.path {
                    Some(p) => p.clone(),
                    None if c.file.name.is_empty() => format!("inode {}", c.file.ino),
                    None => format!("…/{}", c.file.name),
                };
                let what = if c.listed { "" } else { "(unlisted) " };
                let mut lines = vec![format!(
                    "{what}{name} {after}; {} of {} culprits left",
                    c.culprits_alive, c.culprits_total
                )];
                if !c.seen {
                    lines.push("  not seen: inferred from a reused pointer or mount id".into());
                } else if !c.chain.is_empty() {
                    lines.push(format!("  by {}", chain_text(&c.chain)));
                }
                (
                    c.ts_ns,
                    LogKind::Released,
                    lines,
                    s.mount.as_ref().map(|m| m.id),
                )
            }
            Notice::PinReleased(p) => {
                let s = &p.story;
                let after = rel(
                    p.ts_ns,
                    s.first_ebusy_ns,
                    if s.failed_attempts > 1 {
                        "first EBUSY"
                    } else {
                        "EBUSY"
                    },
                );
                let lines = vec![format!(
                    "{} of {} {after}; {} pins, {} files left",
                    p.what.word(),
                    p.task.name(),
                    p.pins_alive,
                    p.culprits_alive
                )];
                (
                    p.ts_ns,
                    LogKind::Released,
                    lines,
                    s.mount.as_ref().map(|m| m.id),
                )
            }
            Notice::PinFoundLate(p) => (
                p.ts_ns,
                LogKind::Verdict,
                vec![format!(
                    "found late: {} of {} was on it at the EBUSY (read at its exit)",
                    p.what.word(),
                    p.task.name()
                )],
                p.story.mount.as_ref().map(|m| m.id),
            ),
            Notice::StoryClosed(s) => {
                let lazy = if s.lazy { " (lazy)" } else { "" };
                let mut lines = vec![
                    format!(
                        "{}{lazy} worked after {} busy, {}",
                        s.story.what,
                        dur(s.pinned_ns),
                        count(
                            s.failed_attempts as usize,
                            "failed attempt",
                            "failed attempts"
                        )
                    ),
                    format!(
                        "  by pid {} ({}); {} of {} listed culprits released",
                        s.caller.tgid, s.caller.comm, s.culprits_released, s.culprits_total
                    ),
                ];
                if s.still_pinned_by > 0 {
                    lines.push(format!(
                        "  detached but still pinned by {}",
                        count(s.still_pinned_by, "open file", "open files")
                    ));
                }
                (
                    s.ts_ns,
                    LogKind::Closed,
                    lines,
                    s.story.mount.as_ref().map(|m| m.id),
                )
            }
            Notice::MountDetachedPinned(m) => (
                m.ts_ns,
                LogKind::Detached,
                vec![format!(
                    "mount {} ({} on {}) left the table, pinned by {}",
                    m.mount.id,
                    m.mount.fs_type,
                    m.mount.mount_point,
                    count(m.files.len(), "open file", "open files")
                )],
                Some(m.mount.id),
            ),
            Notice::DetachedMountUnpinned(m) => (
                m.ts_ns,
                LogKind::Unpinned,
                vec![format!(
                    "mount {} ({} on {}) no longer pinned, {} after it left the table",
                    m.mount.id,
                    m.mount.fs_type,
                    m.mount.mount_point,
                    dur(m.ts_ns.saturating_sub(m.detached_ns))
                )],
                Some(m.mount.id),
            ),
        };
        LogEntry {
            serial: 0,
            ts_ns,
            kind,
            lines,
            full,
            mount_id,
        }
    }
}
