//! What the engine tells people: verdicts on EBUSY, culprits released, stories closed,
//! mounts detached-but-pinned and unpinned. Every type serializes to JSON (one notice per
//! line for the tracer) and displays as plain words with times relative to the EBUSY.

use std::fmt::{self, Display, Formatter, Write as _};

use serde::Serialize;

use crate::event::MountCallOp;
use crate::text::{boot, count, dur, rel};
use crate::work::{ChainLink, chain_text};

pub use crate::desc::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VerdictKind {
    /// `umount` failed with EBUSY.
    UmountBusy,
    /// `mount` failed with EBUSY (the device is still in use).
    MountBusy,
}

/// A mount of the device a `mount` wanted, and what pins it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PinnedMount {
    pub mount: MountDesc,
    pub files: Vec<FileReport>,
    pub child_mounts: Vec<MountDesc>,
}

/// A file whose release came while a failing umount ran.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReleasedDuring {
    #[serde(flatten)]
    pub file: FileReport,
    pub released_ns: u64,
    /// The deferral chain of its release, as words.
    pub chain: String,
}

/// Why a mount-table syscall failed with EBUSY, as far as the traced evidence goes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub id: u64,
    pub kind: VerdictKind,
    pub op: MountCallOp,
    pub ts_ns: u64,
    pub enter_ns: u64,
    pub target: String,
    pub source: String,
    pub fs_type: String,
    pub flags: u32,
    pub caller: Caller,
    /// The xfstests test running then, if a marker was seen.
    pub test: Option<String>,
    /// Failed attempts so far on the same mount/device, this one included.
    pub attempt: u32,
    pub first_ebusy_ns: u64,
    /// Umount: the mount at the target (None: not a mount we know).
    pub mount: Option<MountDesc>,
    /// Umount: alive files on that mount.
    pub culprits: Vec<FileReport>,
    /// Umount: files on it released while the umount ran (after its entry, before its
    /// return): each may be what its check saw, gone by the time its failure was traced.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub released_during: Vec<ReleasedDuring>,
    /// Umount: mounts under it (they make umount fail too).
    pub child_mounts: Vec<MountDesc>,
    /// Umount: processes whose cwd/root is on it.
    pub task_pins: Vec<TaskPinDesc>,
    /// Umount: loop devices and swap files backed by files on it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub backing: Vec<BackingDesc>,
    /// Umount: processes with AIO requests not reaped that hold it or named files on it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub aio: Vec<AioDesc>,
    /// Umount: the mount's reference count as the task scan read it, against what the
    /// verdict names.
    pub refs: Option<RefCount>,
    /// A later attempt of a story with nothing new: every culprit and pin was named by an
    /// earlier verdict of the same story (the text is then one short paragraph).
    pub repeat: bool,
    /// Mount: existing or detached mounts of the same source and what pins them.
    pub pinned_mounts: Vec<PinnedMount>,
    /// Mount: files open whose path is the device path.
    pub device_openers: Vec<FileReport>,
    pub unattributed: Unattributed,
    /// Nothing traced explains it (no culprit file, no child mount, no opener).
    pub unexplained: bool,
    /// Umount: why no scan after this failure saw the mount in time (the umount went through
    /// before them), when they could not: only what the records show is named.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scan_missed: Option<String>,
    /// What the evidence cannot show (missing hooks, no snapshot, evictions).
    pub evidence_limits: Vec<String>,
}

/// Files shown in full per group of files with the same holders.
const SHOWN_PER_GROUP: usize = 3;

/// What a file's holders are, without times: files with the same one are one group.
pub(crate) fn holder_signature(f: &FileReport) -> Vec<String> {
    f.holders
        .iter()
        .map(|h| match h {
            HolderDesc::Fd { task, .. } => format!("fd of {}", task.pid),
            HolderDesc::UringFixed { ring, .. } => format!("ring {:x}", ring.ctx),
            HolderDesc::UringReq { ring, .. } => format!("request on {:x}", ring.ctx),
            HolderDesc::Mmap { task, .. } => format!("mapped by {}", task.pid),
            HolderDesc::Backing { device, .. } => format!("backing {device}"),
            HolderDesc::Aio { task, .. } => format!("aio of {}", task.pid),
            HolderDesc::DeferredPut { via, .. } => format!("deferred {via:?}"),
            HolderDesc::Unattributed { .. } => "unattributed".to_string(),
        })
        .collect()
}

/// The files, grouped by holders: the first few of each group in full, then a count with
/// a few more names.
fn render_grouped(files: &[FileReport], a: &Anchor, indent: &str, out: &mut String) {
    let mut groups: Vec<(Vec<String>, Vec<&FileReport>)> = Vec::new();
    for f in files {
        let sig = holder_signature(f);
        match groups.iter_mut().find(|(s, _)| *s == sig) {
            Some((_, g)) => g.push(f),
            None => groups.push((sig, vec![f])),
        }
    }
    for (_, g) in groups {
        for f in g.iter().take(SHOWN_PER_GROUP) {
            f.render(a, indent, out);
        }
        if g.len() > SHOWN_PER_GROUP {
            let names: Vec<String> = g[SHOWN_PER_GROUP..]
                .iter()
                .take(3)
                .map(|f| f.id.path.clone().unwrap_or_else(|| f.id.name.clone()))
                .collect();
            let _ = writeln!(
                out,
                "{indent}… and {} with the same holders ({}{})",
                count(g.len() - SHOWN_PER_GROUP, "more file", "more files"),
                names.join(", "),
                if g.len() - SHOWN_PER_GROUP > names.len() {
                    ", …"
                } else {
                    ""
                }
            );
        }
    }
}

fn group_counts(files: &[FileReport]) -> String {
    let mut fd = 0;
    let mut ring = 0;
    let mut req = 0;
    let mut pending = 0;
    let mut unatt = 0;
    let mut mapped = 0;
    let mut backing = 0;
    let mut aio = 0;
    for f in files {
        if f.holders
            .iter()
            .any(|h| matches!(h, HolderDesc::Aio { .. }))
        {
            aio += 1;
        }
        if f.holders
            .iter()
            .any(|h| matches!(h, HolderDesc::Backing { .. }))
        {
            backing += 1;
        }
        if f.holders
            .iter()
            .any(|h| matches!(h, HolderDesc::Mmap { .. }))
        {
            mapped += 1;
        }
        if f.holders.iter().any(|h| matches!(h, HolderDesc::Fd { .. })) {
            fd += 1;
        }
        if f.holders
            .iter()
            .any(|h| matches!(h, HolderDesc::UringFixed { .. }))
        {
            ring += 1;
        }
        if f.holders
            .iter()
            .any(|h| matches!(h, HolderDesc::UringReq { .. }))
        {
            req += 1;
        }
        if f.holders
            .iter()
            .any(|h| matches!(h, HolderDesc::DeferredPut { .. }))
        {
            pending += 1;
        }
        if f.holders
            .iter()
            .any(|h| matches!(h, HolderDesc::Unattributed { .. }))
        {
            unatt += 1;
        }
    }
    let mut parts = Vec::new();
    if fd > 0 {
        parts.push(format!("{fd} held by an fd"));
    }
    if ring > 0 {
        parts.push(format!("{ring} registered in an io_uring ring"));
    }
    if req > 0 {
        parts.push(format!("{req} used by in-flight io_uring requests"));
    }
    if backing > 0 {
        parts.push(format!("{backing} backing a loop device or swap"));
    }
    if aio > 0 {
        parts.push(format!("{aio} named by AIO requests not reaped"));
    }
    if mapped > 0 {
        parts.push(format!("{mapped} mapped into a process's memory"));
    }
    if pending > 0 {
        parts.push(format!("{pending} waiting for a deferred put"));
    }
    if unatt > 0 {
        parts.push(format!("{unatt} unattributed"));
    }
    parts.join(", ")
}

impl Verdict {
    fn headline(&self) -> String {
        let what = match self.kind {
            VerdictKind::UmountBusy => format!("umount {}", self.target),
            VerdictKind::MountBusy => {
                format!(
                    "mount {} on {} ({})",
                    self.source, self.target, self.fs_type
                )
            }
        };
        let mut s = format!(
            "EBUSY: {what} by pid {} ({}) at {}",
            self.caller.tgid,
            self.caller.comm,
            boot(self.ts_ns)
        );
        if let Some(t) = &self.test {
            let _ = write!(s, " during {t}");
        }
        if self.attempt > 1 {
            let _ = write!(
                s,
                " (failed attempt {}, the first EBUSY was {} earlier)",
                self.attempt,
                dur(self.ts_ns.saturating_sub(self.first_ebusy_ns))
            );
        }
        s
    }

    fn render_umount(&self, a: &Anchor, out: &mut String) {
        let Some(m) = &self.mount else {
            let _ = writeln!(
                out,
                "  not a mount we know: no mount in the table is at {}",
                self.target
            );
            return;
        };
        let _ = writeln!(out, "  {m}");
        if !self.task_pins.is_empty() {
            let _ = writeln!(
                out,
                "  held by {} (cwd or root on it):",
                count(self.task_pins.len(), "process", "processes")
            );
            for p in &self.task_pins {
                let _ = writeln!(out, "    - {}", p.words(a));
            }
        }
        if !self.backing.is_empty() {
            let _ = writeln!(
                out,
                "  held by {} backed by a file on it:",
                count(self.backing.len(), "device", "devices")
            );
            for b in &self.backing {
                let _ = writeln!(out, "    - {}", b.words(a));
            }
        }
        if !self.aio.is_empty() {
            let _ = writeln!(
                out,
                "  Linux AIO of {} (counted from io_submit/io_getevents; no tracepoint marks a completion):",
                count(self.aio.len(), "process", "processes")
            );
            // Those with nothing in flight say the same: one line for all of them.
            let (idle, busy): (Vec<&AioDesc>, Vec<&AioDesc>) =
                self.aio.iter().partition(|x| x.submitted <= x.reaped);
            for x in busy {
                let _ = writeln!(out, "    - {}", x.words(a));
            }
            match idle.as_slice() {
                [] => {}
                [x] => {
                    let _ = writeln!(out, "    - {}", x.words(a));
                }
                many => {
                    let who: Vec<String> = many
                        .iter()
                        .map(|x| format!("{} ({} submitted)", x.task.pid, x.submitted))
                        .collect();
                    let _ = writeln!(
                        out,
                        "    - {} ({}): every AIO request they submitted was reaped: nothing in flight, so what exit_aio() waits for is the teardown of their contexts (each kill of their percpu refs waits for an RCU grace period), not IO",
                        count(many.len(), "process", "processes"),
                        who.join(", ")
                    );
                }
            }
        }
        if self.culprits.is_empty() {
            let _ = writeln!(out, "  no open file on it that we know of");
        } else {
            let _ = writeln!(
                out,
                "  busy because of {} on it: {}",
                count(self.culprits.len(), "open file", "open files"),
                group_counts(&self.culprits)
            );
            render_grouped(&self.culprits, a, "  ", out);
        }
        if !self.released_during.is_empty() {
            let _ = writeln!(
                out,
                "  released while the umount ran (after it started, before it returned; each may be what its check saw): {}",
                count(self.released_during.len(), "file", "files")
            );
            for r in &self.released_during {
                let _ = writeln!(
                    out,
                    "    - {}: {}; released {} ({})",
                    r.file.id,
                    r.file.first_words(a),
                    a.at(r.released_ns),
                    r.chain
                );
            }
        }
        if let Some(r) = &self.refs {
            let _ = writeln!(out, "  {}", r.words(a));
        }
        if self.child_mounts.is_empty() {
            let _ = writeln!(out, "  child mounts under it: none");
        } else {
            let _ = writeln!(
                out,
                "  child mounts under it (each one alone makes umount fail):"
            );
            for c in &self.child_mounts {
                let _ = writeln!(out, "    - {c}");
            }
        }
    }

    fn render_mount(&self, a: &Anchor, out: &mut String) {
        if self.pinned_mounts.is_empty() {
            let _ = writeln!(out, "  no mount of {} that we know of", self.source);
        }
        for p in &self.pinned_mounts {
            let state = match p.mount.left_table_ns {
                Some(t) => format!("left the mount table {}", a.at(t)),
                None => "still in the mount table".to_string(),
            };
            let _ = writeln!(out, "  {} — {state}", p.mount);
            if p.files.is_empty() {
                let _ = writeln!(out, "    no open file on it that we know of");
            } else {
                let _ = writeln!(
                    out,
                    "    pinned by {}: {}",
                    count(p.files.len(), "open file", "open files"),
                    group_counts(&p.files)
                );
                for f in &p.files {
                    f.render(a, "    ", out);
                }
            }
            for c in &p.child_mounts {
                let _ = writeln!(out, "    child mount: {c}");
            }
        }
        if self.device_openers.is_empty() {
            let _ = writeln!(
                out,
                "  the device {} is not open by any process we know of",
                self.source
            );
        } else {
            for f in &self.device_openers {
                for h in &f.holders {
                    if let HolderDesc::Fd { fd, task, .. } = h {
                        let _ = writeln!(
                            out,
                            "  the block device {} is held open by {} fd {fd}",
                            self.source,
                            task.name()
                        );
                    }
                }
                f.render(a, "  ", out);
            }
        }
    }
}

impl Verdict {
    /// "4 processes (cwd), 2 open files (1 held by an fd, ...)".
    fn still_there(&self) -> String {
        let mut parts = Vec::new();
        if !self.task_pins.is_empty() {
            let exiting = self.task_pins.iter().filter(|p| p.task.exiting).count();
            parts.push(format!(
                "{} with cwd/root on it ({} exiting)",
                count(self.task_pins.len(), "process", "processes"),
                exiting
            ));
        }
        if !self.culprits.is_empty() {
            parts.push(format!(
                "{}: {}",
                count(self.culprits.len(), "open file", "open files"),
                group_counts(&self.culprits)
            ));
        }
        if !self.aio.is_empty() {
            parts.push(format!(
                "{} with Linux AIO ({} requests not reaped)",
                count(self.aio.len(), "process", "processes"),
                self.aio
                    .iter()
                    .map(|x| x.submitted.saturating_sub(x.reaped))
                    .sum::<u64>()
            ));
        }
        if !self.backing.is_empty() {
            parts.push(count(
                self.backing.len(),
                "loop device or swap file",
                "loop devices or swap files",
            ));
        }
        if !self.child_mounts.is_empty() {
            parts.push(count(
                self.child_mounts.len(),
                "child mount",
                "child mounts",
            ));
        }
        if let Some(r) = &self.refs {
            parts.push(format!("reference count {}", r.count));
        }
        if parts.is_empty() {
            "nothing we know of".to_string()
        } else {
            parts.join("; ")
        }
    }
}

impl Display for Verdict {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let a = Anchor::event(self.ts_ns, "EBUSY");
        let mut out = String::new();
        let _ = writeln!(out, "{}", self.headline());
        if self.repeat {
            let _ = write!(
                out,
                "  nothing new since the story's earlier verdicts; still there: {}",
                self.still_there()
            );
            return f.write_str(&out);
        }
        match self.kind {
            VerdictKind::UmountBusy => self.render_umount(&a, &mut out),
            VerdictKind::MountBusy => self.render_mount(&a, &mut out),
        }
        self.unattributed.render(&mut out);
        if self.unexplained {
            let _ = match &self.scan_missed {
                None => writeln!(
                    out,
                    "  nothing traced explains this EBUSY: no open file, mapping, child mount, process cwd/root, loop device or swap file on it that we know of; it may be pinned by in-flight AIO requests or another kernel-internal reference"
                ),
                Some(why) => writeln!(
                    out,
                    "  nothing traced explains this EBUSY, and no scan saw the mount in time after it ({why}): what pinned the mount only for that moment (an exiting task's cwd/root, files its exit was still closing, fds no hook saw taken) was not seen"
                ),
            };
        }
        if self.evidence_limits.is_empty() {
            let _ = writeln!(out, "  evidence limits: none known");
        } else {
            let _ = writeln!(out, "  evidence limits:");
            for l in &self.evidence_limits {
                let _ = writeln!(out, "    - {l}");
            }
        }
        f.write_str(out.trim_end())
    }
}

/// Which EBUSY story a notice belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StoryRef {
    /// "umount /mnt/scratch" or "mount /dev/loop1".
    pub what: String,
    pub mount: Option<MountDesc>,
    pub first_ebusy_ns: u64,
    pub last_ebusy_ns: u64,
    pub failed_attempts: u32,
}

impl StoryRef {
    fn after(&self, ts: u64) -> String {
        let what = if self.failed_attempts > 1 {
            "first EBUSY"
        } else {
            "EBUSY"
        };
        rel(ts, self.first_ebusy_ns, what)
    }

    fn label(&self) -> String {
        match &self.mount {
            Some(m) => format!("{} (mount {})", self.what, m.id),
            None => self.what.clone(),
        }
    }
}

/// A process's cwd/root that kept a mount busy let go of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PinReleased {
    pub story: StoryRef,
    pub task: TaskDesc,
    pub what: PinKind,
    /// Seen (its fs_struct freed by `exit_fs()`, or `chdir`) or inferred (a later task
    /// scan no longer found it).
    pub seen: bool,
    pub ts_ns: u64,
    pub pins_alive: usize,
    pub culprits_alive: usize,
}

impl Display for PinReleased {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let s = &self.story;
        let how = if self.seen {
            if self.task.exit.is_some() {
                "its fs_struct freed by exit_fs() at the end of its exit".to_string()
            } else {
                "its fs_struct freed".to_string()
            }
        } else {
            "no longer found by a later task scan".to_string()
        };
        let mut rest = String::new();
        if let Some(e) = &self.task.exit {
            let _ = write!(
                rest,
                ", {} after its exit tracepoint",
                dur(self.ts_ns.saturating_sub(e.ts_ns))
            );
        }
        write!(
            f,
            "culprit released {} of {}: {} of {} ({how}{rest}); still pinning: {} process pin{}, {} file{}",
            s.after(self.ts_ns),
            s.label(),
            self.what.word(),
            self.task.name(),
            self.pins_alive,
            if self.pins_alive == 1 { "" } else { "s" },
            self.culprits_alive,
            if self.culprits_alive == 1 { "" } else { "s" },
        )
    }
}

/// A process's cwd/root on a busy mount, learnt after the story's verdict: its exit
/// tracepoint, after the EBUSY, read it there (on older kernels the tracepoint comes after
/// `exit_mm()`, where a killed task waits for its AIO; a scan may run too late to see it).
/// It held the mount at the EBUSY unless it entered it after (cwd/root change only by
/// chdir/chroot, rare in the middle of an exit).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PinFoundLate {
    pub story: StoryRef,
    pub task: TaskDesc,
    pub what: PinKind,
    pub ts_ns: u64,
}

impl Display for PinFoundLate {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let s = &self.story;
        let what = if s.failed_attempts > 1 {
            "first EBUSY"
        } else {
            "EBUSY"
        };
        write!(
            f,
            "pin found after the verdict {} of {}: {} of {} ({}): its exit tracepoint read it \
             on the mount; it held the mount at the EBUSY (its release follows)",
            s.after(self.ts_ns),
            s.label(),
            self.what.word(),
            self.task.name(),
            self.task.fate(&Anchor::event(s.first_ebusy_ns, what)),
        )
    }
}

/// A file that kept a mount busy was freed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CulpritReleased {
    pub story: StoryRef,
    pub file: FileId,
    /// The file was listed in a verdict (false: a file on the mount we never saw referenced).
    pub listed: bool,
    /// The free was seen (false: inferred from a reused pointer or mount id).
    pub seen: bool,
    pub ts_ns: u64,
    /// Who freed it, and the deferral chain that led there (first link = the freeing context).
    pub chain: Vec<ChainLink>,
    pub last_drop: Option<DropDesc>,
    pub culprits_alive: usize,
    pub culprits_total: usize,
}

impl Display for CulpritReleased {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let s = &self.story;
        if self.listed {
            writeln!(
                f,
                "culprit released {} of {}: {}",
                s.after(self.ts_ns),
                s.label(),
                self.file
            )?;
        } else {
            writeln!(
                f,
                "a file we never saw referenced was released on the mount {} of {}: {}",
                s.after(self.ts_ns),
                s.label(),
                self.file
            )?;
        }
        if !self.seen {
            writeln!(
                f,
                "  its release was not seen: inferred because its pointer or mount id was reused"
            )?;
        } else if !self.chain.is_empty() {
            writeln!(f, "  freed by: {}", chain_text(&self.chain))?;
        }
        if let Some(d) = &self.last_drop {
            writeln!(
                f,
                "  its last holder went away {}: {}",
                s.after(d.ts_ns),
                d.words()
            )?;
        }
        write!(
            f,
            "  listed culprit files still alive: {} of {}",
            self.culprits_alive, self.culprits_total
        )
    }
}

/// Whether two releases say the same but for the file: one story, freed the same way (the
/// same chain). Real runs free hundreds of culprits in one `delayed_fput` run; they are told
/// as one group ([`released_group_text`]).
pub fn same_release(a: &CulpritReleased, b: &CulpritReleased) -> bool {
    a.story.what == b.story.what
        && a.story.mount == b.story.mount
        && a.story.first_ebusy_ns == b.story.first_ebusy_ns
        && a.listed == b.listed
        && a.seen == b.seen
        && chain_text(&a.chain) == chain_text(&b.chain)
}

/// A notice, or consecutive releases told as one (see [`same_release`]).
#[derive(Debug)]
pub enum Told<'a> {
    One(&'a Notice),
    Released(Vec<&'a CulpritReleased>),
}

/// `notices` in order, with runs of [`same_release`] releases gathered.
pub fn group_released(notices: &[Notice]) -> Vec<Told<'_>> {
    let mut out: Vec<Told<'_>> = Vec::new();
    for n in notices {
        if let Notice::CulpritReleased(c) = n {
            if let Some(Told::Released(g)) = out.last_mut()
                && g.last().is_some_and(|p| same_release(p, c))
            {
                g.push(c);
                continue;
            }
            out.push(Told::Released(vec![c]));
        } else {
            out.push(Told::One(n));
        }
    }
    out
}

/// How many files a group's text names before "and N more".
const GROUP_NAMED: usize = 3;

/// Releases that are [`same_release`] as one notice: the files (a few, and a count), the
/// time span, the chain once, the last holders (a few), and what is still alive after the
/// last of them. One release is told as [`CulpritReleased`] tells itself.
pub fn released_group_text(group: &[&CulpritReleased]) -> String {
    let (Some(first), Some(last)) = (group.first(), group.last()) else {
        return String::new();
    };
    if group.len() == 1 {
        return first.to_string();
    }
    let s = &first.story;
    let mut files: Vec<String> = group
        .iter()
        .take(GROUP_NAMED)
        .map(|c| c.file.to_string())
        .collect();
    if group.len() > GROUP_NAMED {
        files.push(format!("and {} more", group.len() - GROUP_NAMED));
    }
    let when = if first.ts_ns == last.ts_ns {
        s.after(first.ts_ns)
    } else {
        format!(
            "{} to {}",
            dur(first.ts_ns.saturating_sub(s.first_ebusy_ns)),
            s.after(last.ts_ns)
        )
    };
    let what = if first.listed {
        "culprits released"
    } else {
        "files we never saw referenced were released on the mount"
    };
    let mut out = format!(
        "{} {what} {when} of {}: {}\n",
        group.len(),
        s.label(),
        files.join("; ")
    );
    if !first.seen {
        out.push_str(
            "  their releases were not seen: inferred because their pointers or mount ids were reused\n",
        );
    } else if !first.chain.is_empty() {
        let _ = writeln!(out, "  freed by: {}", chain_text(&first.chain));
    }
    let drops: Vec<String> = group
        .iter()
        .filter_map(|c| c.last_drop.as_ref().map(|d| d.words()))
        .collect();
    if let Some(d) = drops.first() {
        let more = drops.len() - 1;
        let _ = write!(out, "  their last holders went away: {d}");
        if more > 0 {
            let _ = write!(out, " (and {more} more)");
        }
        out.push('\n');
    }
    let _ = write!(
        out,
        "  listed culprit files still alive: {} of {}",
        last.culprits_alive, last.culprits_total
    );
    out
}

/// The mount-table syscall finally succeeded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StoryClosed {
    pub story: StoryRef,
    pub ts_ns: u64,
    /// First EBUSY → success.
    pub pinned_ns: u64,
    pub failed_attempts: u32,
    pub caller: Caller,
    /// A lazy umount (`MNT_DETACH`): the mount may live on detached.
    pub lazy: bool,
    /// Alive files still on the mount at success (a lazy umount leaves them pinning it).
    pub still_pinned_by: usize,
    pub culprits_total: usize,
    pub culprits_released: usize,
    pub unlisted_released: usize,
}

impl Display for StoryClosed {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let s = &self.story;
        let lazy = if self.lazy { " (lazy)" } else { "" };
        writeln!(
            f,
            "{}{lazy} succeeded {} by pid {} ({})",
            s.what,
            s.after(self.ts_ns),
            self.caller.tgid,
            self.caller.comm
        )?;
        if let Some(m) = &s.mount {
            writeln!(f, "  {m}")?;
        }
        write!(
            f,
            "  busy for {} from the first EBUSY, {}; {} of {} listed culprit files released",
            dur(self.pinned_ns),
            count(
                self.failed_attempts as usize,
                "failed attempt",
                "failed attempts"
            ),
            self.culprits_released,
            self.culprits_total
        )?;
        if self.unlisted_released > 0 {
            write!(
                f,
                ", plus {} we never saw referenced",
                count(self.unlisted_released, "file", "files")
            )?;
        }
        if self.still_pinned_by > 0 {
            write!(
                f,
                "\n  the mount is detached but still pinned by {} until they are released",
                count(self.still_pinned_by, "open file", "open files")
            )?;
        }
        Ok(())
    }
}

/// A mount left the table while files on it are alive (lazy umount): it lives on, detached.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MountDetached {
    pub mount: MountDesc,
    pub ts_ns: u64,
    pub files: Vec<FileReport>,
}

impl Display for MountDetached {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let a = Anchor::event(self.ts_ns, "detach");
        let mut out = String::new();
        let _ = writeln!(
            out,
            "mount {} ({} {}, was on {}) left the mount table at {} but is still pinned by {}: it lives on, detached, until they are released",
            self.mount.id,
            self.mount.fs_type,
            self.mount.source,
            self.mount.mount_point,
            boot(self.ts_ns),
            count(self.files.len(), "open file", "open files")
        );
        for file in &self.files {
            file.render(&a, "  ", &mut out);
        }
        f.write_str(out.trim_end())
    }
}

/// A detached mount's last known file was released: nothing we know of pins it any more.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DetachedMountUnpinned {
    pub mount: MountDesc,
    pub detached_ns: u64,
    pub ts_ns: u64,
    pub last_file: FileId,
    pub chain: Vec<ChainLink>,
}

impl Display for DetachedMountUnpinned {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "detached mount {} ({} {}, was on {}) is no longer pinned by any file we know of: its last file was released at {}, {} after it left the mount table",
            self.mount.id,
            self.mount.fs_type,
            self.mount.source,
            self.mount.mount_point,
            boot(self.ts_ns),
            dur(self.ts_ns.saturating_sub(self.detached_ns))
        )?;
        write!(f, "  last file: {}", self.last_file)?;
        if !self.chain.is_empty() {
            write!(f, "\n  freed by: {}", chain_text(&self.chain))?;
        }
        Ok(())
    }
}

/// Everything [`crate::engine::Engine::apply`] reports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "notice", rename_all = "snake_case")]
pub enum Notice {
    Verdict(Verdict),
    CulpritReleased(CulpritReleased),
    PinReleased(PinReleased),
    PinFoundLate(PinFoundLate),
    StoryClosed(StoryClosed),
    MountDetachedPinned(MountDetached),
    DetachedMountUnpinned(DetachedMountUnpinned),
    /// A lock request failed (or waited past the threshold) on a lock someone holds.
    LockConflict(crate::locks::LockVerdict),
    /// A retry of a conflict already explained.
    LockStillHeld(crate::locks::LockStillHeld),
    /// The lock of a conflict went away.
    LockReleased(crate::locks::LockReleased),
    /// A delete left a file with no link while a ring or a request still holds it.
    SpaceHeld(crate::space::SpaceHeld),
    /// That file's last reference went: its space is free.
    SpaceFreed(crate::space::SpaceFreed),
}

impl Notice {
    /// One JSON line (no trailing newline).
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).expect("notices serialize")
    }
}

/// Whether an EBUSY story, as the JSON of a report (its `notices`, each the JSON of a
/// [`Notice`] with its `text`), is unexplained: one of its verdicts is (`unexplained`, or
/// its text says nothing traced explains it) and no pin was found after it. Shared by
/// `tracer record`'s fstests findings and `cargo xtask fstests`.
pub fn story_unexplained(story: &serde_json::Value) -> bool {
    let notices = || story["notices"].as_array().into_iter().flatten();
    // A pin read at an exit after the verdict explains what the verdict could not.
    let found_late = notices().any(|n| n["notice"] == "pin_found_late");
    !found_late
        && notices().any(|n| {
            n["unexplained"].as_bool() == Some(true)
                || n["text"]
                    .as_str()
                    .is_some_and(|t| t.contains("nothing traced explains"))
        })
}

impl Display for Notice {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Notice::Verdict(v) => v.fmt(f),
            Notice::CulpritReleased(c) => c.fmt(f),
            Notice::PinReleased(p) => p.fmt(f),
            Notice::PinFoundLate(p) => p.fmt(f),
            Notice::StoryClosed(s) => s.fmt(f),
            Notice::MountDetachedPinned(m) => m.fmt(f),
            Notice::DetachedMountUnpinned(m) => m.fmt(f),
            Notice::LockConflict(v) => v.fmt(f),
            Notice::LockStillHeld(s) => s.fmt(f),
            Notice::LockReleased(r) => r.fmt(f),
            Notice::SpaceHeld(s) => s.fmt(f),
            Notice::SpaceFreed(s) => s.fmt(f),
        }
    }
}

#[cfg(test)]
mod release_group_tests {
    use super::*;
    use crate::event::NameKind;
    use crate::work::LinkRole;

    fn story(first: u64) -> StoryRef {
        StoryRef {
            what: "umount /mnt/t".into(),
            mount: None,
            first_ebusy_ns: first,
            last_ebusy_ns: first,
            failed_attempts: 1,
        }
    }

    fn released(file: u64, ts_ns: u64, by: &str, first: u64) -> CulpritReleased {
        let mut link = ChainLink::unseen(ts_ns);
        link.role = LinkRole::Ran;
        link.comm = "kworker/0:1".into();
        link.function_name = Some(by.into());
        CulpritReleased {
            story: story(first),
            file: FileId {
                file,
                generation: 1,
                mnt_id: 48,
                ino: file,
                name_kind: NameKind::Dentry,
                name: format!("f{file}"),
                path: None,
            },
            listed: true,
            seen: true,
            ts_ns,
            chain: vec![link],
            last_drop: None,
            culprits_alive: 0,
            culprits_total: 5,
        }
    }

    #[test]
    fn releases_freed_the_same_way_are_told_as_one() {
        let notices: Vec<Notice> = [
            released(1, 2_000_000, "delayed_fput", 1_000_000),
            released(2, 2_100_000, "delayed_fput", 1_000_000),
            released(3, 2_200_000, "delayed_fput", 1_000_000),
            released(4, 2_300_000, "delayed_fput", 1_000_000),
            // Another chain, then another story: each starts a group of its own.
            released(5, 2_400_000, "io_ring_exit_work", 1_000_000),
            released(6, 2_500_000, "io_ring_exit_work", 2_000_000),
        ]
        .into_iter()
        .map(Notice::CulpritReleased)
        .collect();
        let told = group_released(&notices);
        let sizes: Vec<usize> = told
            .iter()
            .map(|t| match t {
                Told::Released(g) => g.len(),
                Told::One(_) => 0,
            })
            .collect();
        assert_eq!(sizes, [4, 1, 1]);
        let Told::Released(g) = &told[0] else {
            unreachable!()
        };
        let text = released_group_text(g);
        assert!(
            text.starts_with("4 culprits released 1.0ms to 1.3ms after the EBUSY of umount /mnt/t"),
            "{text}"
        );
        assert!(text.contains("…/f3 (inode 3); and 1 more"), "{text}");
        assert!(!text.contains("f4"), "{text}");
        assert_eq!(text.matches("freed by: delayed_fput").count(), 1, "{text}");
        // One release reads as the notice itself.
        let Told::Released(one) = &told[1] else {
            unreachable!()
        };
        assert_eq!(released_group_text(one), one[0].to_string());
    }
}
