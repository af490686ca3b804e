//! What the engine tells people: verdicts on EBUSY, culprits released, stories closed,
//! mounts detached-but-pinned and unpinned. Every type serializes to JSON (one notice per
//! line for the tracer) and displays as plain words with times relative to the EBUSY.

use std::fmt::{self, Display, Formatter, Write as _};

use serde::Serialize;

use crate::event::{BackingKind, HolderRef, MountCallOp, NameKind, RefHow};
use crate::files::{DropReason, FileState};
use crate::mounts::Mount;
use crate::tasks::{KillInfo, SIGKILL, TaskExitInfo, TaskScanInfo};
use crate::text::{boot, count, dur, exit_words, hex, rel};
use crate::work::{ChainLink, chain_text};

/// What times are told relative to: an event ("35.2ms after the EBUSY") or now ("3.0ms ago").
#[derive(Clone, Copy, Debug)]
pub struct Anchor<'a> {
    pub ts: u64,
    /// The event's name; `None` means "now".
    pub what: Option<&'a str>,
}

impl<'a> Anchor<'a> {
    pub fn event(ts: u64, what: &'a str) -> Self {
        Anchor {
            ts,
            what: Some(what),
        }
    }

    pub fn now(ts: u64) -> Self {
        Anchor { ts, what: None }
    }

    pub fn at(&self, ts: u64) -> String {
        match self.what {
            Some(w) => rel(ts, self.ts, w),
            None if ts <= self.ts => format!("{} ago", dur(self.ts - ts)),
            None => format!("{} from now", dur(ts - self.ts)),
        }
    }
}

/// A mount as reports name it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MountDesc {
    pub id: i32,
    pub parent_id: i32,
    pub fs_type: String,
    pub source: String,
    pub mount_point: String,
    pub major: u32,
    pub minor: u32,
    /// It left the mount table then (lazy umount) and is detached.
    pub left_table_ns: Option<u64>,
}

impl MountDesc {
    pub fn of(m: &Mount) -> Self {
        MountDesc {
            id: m.id,
            parent_id: m.parent_id,
            fs_type: m.fs_type.clone(),
            source: m.source.clone(),
            mount_point: m.mount_point.clone(),
            major: m.major,
            minor: m.minor,
            left_table_ns: m.left_table_ns,
        }
    }
}

impl Display for MountDesc {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        if self.left_table_ns.is_some() {
            write!(
                f,
                "mount {}: {} {} (was on {}, detached)",
                self.id, self.fs_type, self.source, self.mount_point
            )
        } else {
            write!(
                f,
                "mount {}: {} {} on {}",
                self.id, self.fs_type, self.source, self.mount_point
            )
        }
    }
}

/// A process as holder descriptions name it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TaskDesc {
    /// Process id (tgid).
    pub pid: u32,
    pub comm: String,
    /// The engine knows this process instance.
    pub known: bool,
    pub alive: bool,
    pub exit: Option<TaskExitInfo>,
    pub killed: Option<KillInfo>,
    /// Past its exit tracepoint but still inside `do_exit()`: its fd table or fs_struct
    /// not freed yet.
    pub exiting: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files_gone_ns: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fs_gone_ns: Option<u64>,
    /// The last task scan's view (state and kernel stack).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scan: Option<TaskScanInfo>,
}

impl TaskDesc {
    pub fn name(&self) -> String {
        format!("pid {} ({})", self.pid, self.comm)
    }

    /// "exiting (killed by SIGKILL from pid 9 (pkill) 3.0ms before the EBUSY, in do_exit
    /// since 2.9ms before the EBUSY); waits in exit_aio ← __mmput ← do_exit (D), seen
    /// 1.1ms after the EBUSY".
    pub fn exiting_words(&self, a: &Anchor) -> String {
        let mut s = String::from("exiting");
        if let Some(e) = &self.exit {
            // The exit code may not be set yet when the exit tracepoint fires.
            let how = match (e.signal(), &self.killed) {
                (_, Some(k)) => format!(
                    "killed by SIGKILL from pid {} ({}) {}, ",
                    k.sender_tgid,
                    k.sender_comm,
                    a.at(k.ts_ns)
                ),
                (Some(SIGKILL), None) => "killed by SIGKILL, ".to_string(),
                _ => String::new(),
            };
            let _ = write!(s, " ({how}inside do_exit since {})", a.at(e.ts_ns));
        }
        let mut left = Vec::new();
        if self.files_gone_ns.is_none() {
            left.push("its fd table");
        }
        if self.fs_gone_ns.is_none() {
            left.push("its cwd and root");
        }
        if !left.is_empty() {
            let _ = write!(s, ", still holding {}", left.join(" and "));
        }
        if let Some(sc) = &self.scan {
            match sc.waits_in() {
                Some(w) => {
                    let st = if sc.state == 2 { " (D)" } else { "" };
                    let _ = write!(s, "; waits in {w}{st}, seen {}", a.at(sc.ts_ns));
                }
                None if sc.exiting => {
                    let _ = write!(s, "; running its exit, seen {}", a.at(sc.ts_ns));
                }
                None => {}
            }
        }
        s
    }

    /// "alive", "killed by SIGKILL from pid 1100 (bash) 1.0ms before the EBUSY, exited …".
    pub fn fate(&self, a: &Anchor) -> String {
        if !self.known {
            return "state unknown".to_string();
        }
        if self.exiting {
            return self.exiting_words(a);
        }
        match &self.exit {
            None => match &self.killed {
                Some(k) => format!(
                    "alive, but SIGKILL sent by pid {} ({}) {}",
                    k.sender_tgid,
                    k.sender_comm,
                    a.at(k.ts_ns)
                ),
                None => "alive".to_string(),
            },
            Some(e) => {
                let how = match (e.signal(), &self.killed) {
                    (Some(SIGKILL), Some(k)) => format!(
                        "killed by SIGKILL from pid {} ({}) {}",
                        k.sender_tgid,
                        k.sender_comm,
                        a.at(k.ts_ns)
                    ),
                    (Some(SIGKILL), None) => "killed by SIGKILL (sender not seen)".to_string(),
                    _ => exit_words(e.exit_code),
                };
                format!("{how}, exited {}", a.at(e.ts_ns))
            }
        }
    }
}

/// A ring as holder descriptions name it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RingDesc {
    #[serde(serialize_with = "crate::text::ser_hex")]
    pub ctx: u64,
    /// The engine has a record of the ring.
    pub known: bool,
    pub owner: Option<TaskDesc>,
    /// Created before attach: the owner is the first task seen using it.
    pub owner_inferred: bool,
    pub created_ns: Option<u64>,
    /// Its teardown work (`io_ring_exit_work`).
    pub teardown: TeardownDesc,
    pub torn_down_ns: Option<u64>,
}

impl RingDesc {
    fn name(&self) -> String {
        match &self.owner {
            Some(o) if self.owner_inferred => {
                format!("io_uring ring {} (probably of {})", hex(self.ctx), o.name())
            }
            Some(o) => format!("io_uring ring {} of {}", hex(self.ctx), o.name()),
            None => format!("io_uring ring {} (owner unknown)", hex(self.ctx)),
        }
    }

    fn owner_words(&self, a: &Anchor) -> String {
        match &self.owner {
            Some(o) if o.known && o.alive => format!("owner {}", o.fate(a)),
            Some(o) if o.known => format!("owner dead: {}", o.fate(a)),
            _ if !self.known => "ring not seen before (created before attach)".to_string(),
            _ => "owner unknown (created before attach)".to_string(),
        }
    }

    fn teardown_words(&self, a: &Anchor) -> String {
        let t = &self.teardown;
        let owner_dead = self.owner.as_ref().is_some_and(|o| o.known && !o.alive);
        let mut s = match &t.queued {
            Some(q) => format!(
                "teardown (io_ring_exit_work) queued {} by {}",
                a.at(q.ts_ns),
                q.who()
            ),
            None if t.started_ns.is_some() => "teardown (io_ring_exit_work)".to_string(),
            None if owner_dead => {
                return "teardown (io_ring_exit_work) not queued yet: something still holds the ring's file"
                    .to_string();
            }
            None => return String::new(),
        };
        match (&t.started_comm, t.started_ns, t.ended_ns) {
            (_, _, Some(e)) => {
                let _ = write!(s, ", ended {}", a.at(e));
            }
            (Some(c), Some(st), None) => {
                let _ = write!(s, ", running in {c} since {}", a.at(st));
            }
            _ => s.push_str(", not started yet"),
        }
        s
    }
}

/// Progress of a ring's teardown work (`io_ring_exit_work`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TeardownDesc {
    pub queued: Option<ChainLink>,
    pub started_ns: Option<u64>,
    pub started_comm: Option<String>,
    pub ended_ns: Option<u64>,
}

/// The precise hooks' account of a file's last reference.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LastPutDesc {
    pub ts_ns: u64,
    /// Who called the last `fput()`.
    pub by: ChainLink,
    /// `task_work_add(____fput)`: the task whose return to user space runs the release.
    pub queued_to: Option<crate::files::DeferredTo>,
}

impl LastPutDesc {
    pub fn words(&self, a: &Anchor) -> String {
        let mut s = format!(
            "last reference dropped (fput) by {} {}",
            self.by.who(),
            a.at(self.ts_ns)
        );
        match &self.queued_to {
            Some(t) => {
                let _ = write!(
                    s,
                    "; deferred put queued to task {} (pid {})'s return to user space",
                    t.pid, t.tgid
                );
            }
            None => s.push_str("; no task_work queued: the release goes to delayed_fput"),
        }
        s
    }
}

/// How a pending final put will run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeferVia {
    /// `____fput` from task_work, when the task returns to user space (or at its exit).
    TaskWork,
    /// The global `delayed_fput` list and work (puts from kworkers, interrupts, late exit).
    DelayedFput,
}

/// Where a work item stands (e.g. `delayed_fput_work` for a pending put).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WorkProgress {
    pub function_name: String,
    pub armed_ns: Option<u64>,
    pub armed_by: Option<ChainLink>,
    pub queued_ns: Option<u64>,
    pub started_ns: Option<u64>,
    pub started_comm: Option<String>,
    pub ended_ns: Option<u64>,
}

impl WorkProgress {
    fn words(&self, a: &Anchor) -> String {
        let f = &self.function_name;
        if let Some(e) = self.ended_ns {
            return format!("{f} last ran, ending {}", a.at(e));
        }
        if let (Some(s), Some(c)) = (self.started_ns, &self.started_comm) {
            return format!("{f} running in {c} since {}", a.at(s));
        }
        if let Some(q) = self.queued_ns {
            return format!("{f} queued {}, not started yet", a.at(q));
        }
        match (&self.armed_by, self.armed_ns) {
            (Some(by), Some(t)) => {
                format!("{f} armed {} by {}, timer not fired yet", a.at(t), by.who())
            }
            _ => format!("{f} not armed yet"),
        }
    }
}

/// A holder's drop, for reports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DropDesc {
    #[serde(serialize_with = "crate::text::ser_holder")]
    pub holder: HolderRef,
    pub reason: DropReason,
    pub ts_ns: u64,
    pub by: ChainLink,
}

impl DropDesc {
    pub fn words(&self) -> String {
        let by = self.by.who();
        match (&self.holder, self.reason) {
            (HolderRef::Fd { fd, .. }, DropReason::Close) => format!("fd {fd} closed by {by}"),
            (HolderRef::Fd { fd, tgid }, DropReason::ExitFiles) => {
                format!("fd {fd} closed when pid {tgid} ({}) exited", self.by.comm)
            }
            (HolderRef::Fd { fd, tgid }, DropReason::SlotReused) => format!(
                "fd {fd} of pid {tgid} was reused for another file without a close we saw (dup2, close-on-exec, close_range or a lost record)"
            ),
            (HolderRef::UringFixed { ctx }, DropReason::RingTeardown)
            | (HolderRef::UringReq { ctx, .. }, DropReason::RingTeardown) => {
                format!("ring {} freed by {}", hex(*ctx), self.by.who_without_ring())
            }
            (h, DropReason::RingGoneUnseen) => {
                format!(
                    "{} went away unseen (its pointer was reused)",
                    holder_name(h)
                )
            }
            (HolderRef::UringReq { ctx, req }, DropReason::RequestDone) => format!(
                "request {} of ring {} completed in {}",
                hex(*req),
                hex(*ctx),
                self.by.who_without_ring()
            ),
            (HolderRef::UringFixed { ctx }, DropReason::Unregistered) => {
                format!("unregistered from ring {} by {by}", hex(*ctx))
            }
            (HolderRef::Mmap { start, tgid, .. }, DropReason::ExitMm) => format!(
                "mapping at {} unmapped when pid {tgid} ({}) exited",
                hex(*start),
                self.by.comm
            ),
            (HolderRef::Mmap { start, tgid, .. }, DropReason::Unmapped) => format!(
                "mapping at {} of pid {tgid} no longer found by a VMA scan (munmap or exec)",
                hex(*start)
            ),
            (h, DropReason::SlotReused) => format!(
                "{} was reused for another file without a release we saw",
                holder_name(h)
            ),
            (h, DropReason::GoneAtLastPut) => format!(
                "{} let go unseen: {by} dropped the file's last reference",
                holder_name(h)
            ),
            (h, DropReason::Unref { how }) => {
                format!("{} dropped it ({how:?}) in {by}", holder_name(h))
            }
            (h, r) => format!("{} dropped it ({r:?}) in {by}", holder_name(h)),
        }
    }
}

fn holder_name(h: &HolderRef) -> String {
    match h {
        HolderRef::Fd { tgid, fd } => format!("fd {fd} of pid {tgid}"),
        HolderRef::UringFixed { ctx } => format!("io_uring ring {}", hex(*ctx)),
        HolderRef::UringReq { ctx, req } => {
            format!("io_uring request {} of ring {}", hex(*req), hex(*ctx))
        }
        HolderRef::Mmap { tgid, start, .. } => {
            format!("mapping at {} of pid {tgid}", hex(*start))
        }
    }
}

/// One reason a file is alive, in plain terms.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HolderDesc {
    /// An fd table slot.
    Fd {
        fd: i32,
        task: TaskDesc,
        since_ns: u64,
        how: RefHow,
    },
    /// A registered (fixed) file of a ring.
    UringFixed { ring: RingDesc, since_ns: u64 },
    /// An in-flight request of a ring.
    UringReq {
        #[serde(serialize_with = "crate::text::ser_hex")]
        req: u64,
        ring: RingDesc,
        since_ns: u64,
    },
    /// A memory mapping of a process (`vm_file`), found by a VMA scan.
    Mmap {
        #[serde(serialize_with = "crate::text::ser_hex")]
        start: u64,
        #[serde(serialize_with = "crate::text::ser_hex")]
        end: u64,
        task: TaskDesc,
        /// When a scan first found it.
        since_ns: u64,
        /// The same process also has it open by an fd.
        fd_open: bool,
    },
    /// AIO requests of a process that named this file and are not all reaped (those in
    /// flight hold it; the syscall counts cannot say how many are).
    Aio { task: TaskDesc, unreaped: u64 },
    /// A loop device's backing file or an active swap file (read at the failure).
    Backing { what: BackingKind, device: String },
    /// No holder left; the final put is deferred (task_work or delayed_fput) and pending.
    DeferredPut {
        since_ns: u64,
        via: DeferVia,
        last_drop: Option<DropDesc>,
        delayed_fput: Option<WorkProgress>,
        /// The last reference's `fput()` and where its release was queued, when the
        /// precise hooks saw it.
        #[serde(skip_serializing_if = "Option::is_none")]
        last_put: Option<Box<LastPutDesc>>,
    },
    /// Alive with no holder we can name.
    Unattributed {
        since_ns: Option<u64>,
        last_drop: Option<DropDesc>,
        /// The precise `fput` hook saw the last holder's put leave this many references
        /// (taken where the tracer does not look: dup, fork, SCM_RIGHTS, kernel code).
        #[serde(skip_serializing_if = "Option::is_none")]
        refs_left: Option<i64>,
    },
}

/// `what` since when, who owns the ring, and how far its teardown got.
fn ring_holder(what: String, ring: &RingDesc, since_ns: u64, a: &Anchor) -> String {
    let mut s = format!("{what} since {} — {}", a.at(since_ns), ring.owner_words(a));
    let t = ring.teardown_words(a);
    if !t.is_empty() {
        let _ = write!(s, "; {t}");
    }
    s
}

impl HolderDesc {
    pub fn words(&self, a: &Anchor) -> String {
        match self {
            HolderDesc::Fd {
                fd,
                task,
                since_ns,
                how,
            } => {
                let state = if task.exiting || (task.alive && task.known) {
                    format!("[{}]", task.fate(a))
                } else if task.known {
                    format!("[exited: {}]", task.fate(a))
                } else {
                    "[state unknown]".to_string()
                };
                let since = match how {
                    RefHow::Snapshot => "open since before the tracer attached".to_string(),
                    RefHow::Rescan => format!(
                        "found by an fd scan {} (taken unseen: dup, fork, fd passing)",
                        a.at(*since_ns)
                    ),
                    _ => format!("opened {}", a.at(*since_ns)),
                };
                format!("fd {fd} of {} {state}, {since}", task.name())
            }
            HolderDesc::UringFixed { ring, since_ns } => {
                ring_holder(format!("registered in {}", ring.name()), ring, *since_ns, a)
            }
            HolderDesc::UringReq {
                req,
                ring,
                since_ns,
            } => ring_holder(
                format!("in-flight request {} on {}", hex(*req), ring.name()),
                ring,
                *since_ns,
                a,
            ),
            HolderDesc::Mmap {
                start,
                end,
                task,
                since_ns,
                fd_open,
            } => {
                let state = if task.exiting || (task.alive && task.known) {
                    format!("[{}]", task.fate(a))
                } else if task.known {
                    format!("[exited: {}]", task.fate(a))
                } else {
                    "[state unknown]".to_string()
                };
                format!(
                    "mapped by {} {state} at {}-{} ({} KiB), found by a VMA scan {}{}",
                    task.name(),
                    hex(*start),
                    hex(*end),
                    end.saturating_sub(*start) / 1024,
                    a.at(*since_ns),
                    if *fd_open {
                        ""
                    } else {
                        ", fd closed: only the mapping holds it"
                    }
                )
            }
            HolderDesc::Aio { task, unreaped } => format!(
                "named by AIO requests of {} [{}]: {} not reaped (in flight, or completed and not collected; the file alive with no other holder says one is in flight)",
                task.name(),
                task.fate(a),
                unreaped
            ),
            HolderDesc::Backing { what, device } => match what {
                BackingKind::Loop => format!("backing file of loop device {device}"),
                BackingKind::Swap => "active swap file".to_string(),
            },
            HolderDesc::DeferredPut {
                since_ns,
                via,
                last_drop,
                delayed_fput,
                last_put,
            } => {
                let mut s = format!("deferred put pending since {}", a.at(*since_ns));
                if let Some(d) = last_drop {
                    let _ = write!(s, ": last holder gone when {}", d.words());
                }
                if let Some(p) = last_put {
                    let _ = write!(s, "; {}", p.words(a));
                }
                match via {
                    DeferVia::TaskWork => {
                        let who = last_drop
                            .as_ref()
                            .map(|d| format!(" of pid {} ({})", d.by.tgid, d.by.comm))
                            .unwrap_or_default();
                        let _ = write!(s, "; the final __fput runs from task_work{who}");
                    }
                    DeferVia::DelayedFput => {
                        s.push_str("; the final __fput goes through delayed_fput");
                        if let Some(p) = delayed_fput {
                            let _ = write!(s, " ({})", p.words(a));
                        }
                    }
                }
                s
            }
            HolderDesc::Unattributed {
                since_ns,
                last_drop,
                refs_left,
            } => {
                let mut s = "unattributed: no holder we can name".to_string();
                if let Some(d) = last_drop {
                    let _ = write!(s, " ({})", d.words());
                }
                if let Some(n) = refs_left {
                    let _ = write!(
                        s,
                        ", and that put was not the last: fput left {n} reference{} taken where the tracer does not look (dup, fork, SCM_RIGHTS, kernel code)",
                        if *n == 1 { "" } else { "s" }
                    );
                }
                if let Some(t) = since_ns {
                    let _ = write!(s, ", since {}", a.at(*t));
                }
                s
            }
        }
    }
}

/// A mount's reference count (`mnt_count`, summed over CPUs) against what the engine named
/// on it when the count was read: one for being mounted, one per file open on it (each
/// `struct file` holds one), one per cwd and root on it, one per child mount.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RefCount {
    pub read_ns: u64,
    pub count: i32,
    /// Every possible CPU's count was summed (else the count is a lower bound).
    pub complete: bool,
    pub files: usize,
    pub pins: usize,
    pub children: usize,
    /// Files backing a loop device or an active swap file that are not among `files`.
    #[serde(skip_serializing_if = "crate::text::is_zero")]
    pub backing: usize,
}

impl RefCount {
    /// References held beyond being mounted.
    pub fn held(&self) -> i64 {
        i64::from(self.count) - 1
    }

    pub fn explained(&self) -> i64 {
        (self.files + self.pins + self.children + self.backing) as i64
    }

    pub fn words(&self, a: &Anchor) -> String {
        let mut s = format!(
            "mount reference count {}{} (read {}): 1 for being mounted, {} held; named then: {} open file{}, {} cwd/root, {} child mount{}",
            self.count,
            if self.complete {
                ""
            } else {
                " or more (some CPUs not summed)"
            },
            a.at(self.read_ns),
            self.held(),
            self.files,
            if self.files == 1 { "" } else { "s" },
            self.pins,
            self.children,
            if self.children == 1 { "" } else { "s" },
        );
        if self.backing > 0 {
            let _ = write!(
                s,
                ", {} more backing a loop device or swap",
                count(self.backing, "file", "files")
            );
        }
        let gap = self.held() - self.explained();
        match gap.cmp(&0) {
            std::cmp::Ordering::Equal => s.push_str(": every reference explained"),
            std::cmp::Ordering::Greater => {
                let _ = write!(
                    s,
                    ": {gap} not explained (in-flight AIO requests, io_uring requests not traced, other kernel references, a umount in flight)"
                );
            }
            std::cmp::Ordering::Less => {
                let _ = write!(
                    s,
                    ": {} named but already gone from the count (releases not seen yet, or the count read at another moment)",
                    -gap
                );
            }
        }
        s
    }
}

/// What a task holds on a mount besides files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PinKind {
    /// Its working directory (`fs->pwd`).
    Cwd,
    /// Its root directory (`fs->root`, chroot).
    Root,
}

impl PinKind {
    pub fn word(self) -> &'static str {
        match self {
            PinKind::Cwd => "cwd",
            PinKind::Root => "root",
        }
    }
}

/// A file on the mount that a device holds open: a loop device's backing file or an
/// active swap file, read from sysfs and /proc/swaps when the umount failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BackingDesc {
    pub kind: BackingKind,
    /// The loop device; empty for a swap file.
    pub device: String,
    pub path: String,
    pub ino: u64,
    pub found_ns: u64,
    /// The file is among the verdict's open files (the tracer knows its `struct file`).
    pub file_listed: bool,
}

impl BackingDesc {
    pub fn words(&self, a: &Anchor) -> String {
        let ino = if self.ino != 0 {
            format!(" (inode {})", self.ino)
        } else {
            String::new()
        };
        let mut s = match self.kind {
            BackingKind::Loop => format!(
                "backing file of {}: {}{ino}, read from sysfs {}",
                self.device,
                self.path,
                a.at(self.found_ns)
            ),
            BackingKind::Swap => format!(
                "active swap file {}{ino}, read from /proc/swaps {}",
                self.path,
                a.at(self.found_ns)
            ),
        };
        let release = match self.kind {
            BackingKind::Loop => format!("losetup -d {}", self.device),
            BackingKind::Swap => format!("swapoff {}", self.path),
        };
        let _ = write!(
            s,
            "; {}; it holds until {release}",
            if self.file_listed {
                "its file is listed below"
            } else {
                "a file the tracer did not see opened"
            }
        );
        s
    }
}

/// A process with Linux AIO requests submitted and not reaped, as the syscall counts
/// stood at the failure.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AioDesc {
    pub task: TaskDesc,
    #[serde(serialize_with = "crate::text::ser_hex")]
    pub ctx: u64,
    pub submitted: u64,
    pub reaped: u64,
    pub last_submit_ns: u64,
    /// Names of the files of its latest submissions that are on this mount.
    pub files_on_mount: Vec<String>,
    pub found_ns: u64,
}

impl AioDesc {
    pub fn words(&self, a: &Anchor) -> String {
        let n = self.submitted.saturating_sub(self.reaped);
        if n == 0 {
            return format!(
                "{} [{}]: every AIO request it submitted was reaped ({} submitted) on AIO context {}: nothing in flight, so what exit_aio() waits for is the teardown of its contexts (each kill of their percpu refs waits for an RCU grace period), not IO",
                self.task.name(),
                self.task.fate(a),
                self.submitted,
                hex(self.ctx)
            );
        }
        let mut s = format!(
            "{} [{}]: {} submitted and not reaped ({} submitted, {} reaped, the latest {}) on AIO context {}",
            self.task.name(),
            self.task.fate(a),
            count(n as usize, "request", "requests"),
            self.submitted,
            self.reaped,
            a.at(self.last_submit_ns),
            hex(self.ctx)
        );
        if !self.files_on_mount.is_empty() {
            let _ = write!(s, ", on {}", self.files_on_mount.join(", "));
        }
        s.push_str(
            "; those still in flight hold their files, and a dying process waits for them in exit_aio() before it lets go of its fd table and cwd",
        );
        s
    }
}

/// A process whose cwd/root is on the mount, found by a task scan or read as its exit
/// began.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TaskPinDesc {
    pub task: TaskDesc,
    pub what: Vec<PinKind>,
    /// When it was first learnt (its exit tracepoint or a scan).
    pub found_ns: u64,
    /// Read at its exit tracepoint.
    pub from_exit: bool,
    /// A scan started then no longer found it (let go in between; release not seen yet).
    pub gone_ns: Option<u64>,
}

impl TaskPinDesc {
    pub fn words(&self, a: &Anchor) -> String {
        let what: Vec<&str> = self.what.iter().map(|k| k.word()).collect();
        let how = if self.from_exit {
            "read at its exit tracepoint"
        } else {
            "found by a task scan"
        };
        let mut s = format!(
            "{} of {} [{}], {how} {}",
            what.join(" and "),
            self.task.name(),
            self.task.fate(a),
            a.at(self.found_ns)
        );
        if let Some(g) = self.gone_ns {
            let _ = write!(s, "; already let go by the scan {}", a.at(g));
        }
        s
    }
}

/// A file as reports name it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FileId {
    #[serde(serialize_with = "crate::text::ser_hex")]
    pub file: u64,
    /// The engine's generation of the pointer (0: a file the engine never saw referenced).
    pub generation: u64,
    pub mnt_id: i32,
    pub ino: u64,
    pub name_kind: NameKind,
    pub name: String,
    /// Absolute path, when the opener gave one.
    pub path: Option<String>,
}

impl Display for FileId {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "file {} ", hex(self.file))?;
        match (&self.path, self.name_kind) {
            (Some(p), _) => write!(f, "{p} (inode {})", self.ino),
            (None, _) if self.name.is_empty() => write!(f, "(name unknown, inode {})", self.ino),
            (None, NameKind::UserPath) => write!(
                f,
                "{} (inode {}, path relative to the opener's cwd)",
                self.name, self.ino
            ),
            (None, _) => write!(f, "…/{} (inode {})", self.name, self.ino),
        }
    }
}

/// An alive file and everything that keeps it alive.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FileReport {
    #[serde(flatten)]
    pub id: FileId,
    pub dev: u32,
    pub state: FileState,
    pub first_ref_ns: u64,
    pub first_how: RefHow,
    pub first_pid: u32,
    pub first_comm: String,
    pub holders: Vec<HolderDesc>,
    /// References dropped by holders we never saw take them: more holders may exist.
    pub unseen_refs: u32,
}

impl FileReport {
    pub fn first_words(&self, a: &Anchor) -> String {
        let who = format!("pid {} ({})", self.first_pid, self.first_comm);
        match self.first_how {
            RefHow::Open => format!("opened {} by {who}", a.at(self.first_ref_ns)),
            RefHow::Snapshot => "open since before the tracer attached".to_string(),
            RefHow::Rescan => format!(
                "first seen {} by an fd scan after a failed umount",
                a.at(self.first_ref_ns)
            ),
            RefHow::UringRegister => format!(
                "first seen {} when {who} registered it in a ring",
                a.at(self.first_ref_ns)
            ),
            RefHow::UringFileGet => format!(
                "first seen {} taken by an io_uring request of {who}",
                a.at(self.first_ref_ns)
            ),
            _ => format!("first seen {}", a.at(self.first_ref_ns)),
        }
    }

    /// The file line and one line per holder, each prefixed with `indent`.
    pub fn render(&self, a: &Anchor, indent: &str, out: &mut String) {
        let _ = writeln!(out, "{indent}{}, {}", self.id, self.first_words(a));
        for h in &self.holders {
            let _ = writeln!(out, "{indent}  - {}", h.words(a));
        }
        if self.unseen_refs > 0 {
            let _ = writeln!(
                out,
                "{indent}  ({} dropped by holders we never saw take them: other holders may exist)",
                count(
                    self.unseen_refs as usize,
                    "reference was",
                    "references were"
                )
            );
        }
    }
}

/// Counts of what could not be attributed, as far as a verdict is concerned.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Unattributed {
    /// Alive files on the mount with no holder we can name.
    pub files_without_holder: usize,
    /// Files on the mount freed without our having seen any reference to them (opened
    /// before attach and missed by the snapshot, or records lost): evidence of invisible files.
    pub unknown_frees_on_mount: u64,
    /// The same, over all mounts.
    pub unknown_frees_total: u64,
    /// Unrefs of files the engine did not know.
    pub unknown_unrefs_total: u64,
    /// References dropped by holders never seen taking them, over the culprit files.
    pub unseen_refs: u64,
}

impl Unattributed {
    pub fn is_empty(&self) -> bool {
        self.files_without_holder == 0
            && self.unknown_frees_on_mount == 0
            && self.unknown_unrefs_total == 0
            && self.unseen_refs == 0
    }

    fn render(&self, out: &mut String) {
        if self.is_empty() {
            let _ = writeln!(out, "  unattributed references: none seen");
            return;
        }
        let _ = writeln!(out, "  unattributed references:");
        if self.files_without_holder > 0 {
            let _ = writeln!(
                out,
                "    - {} on it with no holder we can name",
                count(self.files_without_holder, "alive file", "alive files")
            );
        }
        if self.unknown_frees_on_mount > 0 {
            let _ = writeln!(
                out,
                "    - {} on it freed that we never saw referenced: files invisible to the tracer exist on this mount",
                count(self.unknown_frees_on_mount as usize, "file", "files")
            );
        }
        if self.unknown_unrefs_total > 0 {
            let _ = writeln!(
                out,
                "    - {} dropped on files we never saw (any mount)",
                count(
                    self.unknown_unrefs_total as usize,
                    "reference",
                    "references"
                )
            );
        }
        if self.unseen_refs > 0 {
            let _ = writeln!(
                out,
                "    - {} on the files above dropped by holders we never saw take them",
                count(self.unseen_refs as usize, "reference", "references")
            );
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VerdictKind {
    /// `umount` failed with EBUSY.
    UmountBusy,
    /// `mount` failed with EBUSY (the device is still in use).
    MountBusy,
}

/// The caller of the failed syscall.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Caller {
    pub pid: u32,
    pub tgid: u32,
    pub comm: String,
}

/// A mount of the device a `mount` wanted, and what pins it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PinnedMount {
    pub mount: MountDesc,
    pub files: Vec<FileReport>,
    pub child_mounts: Vec<MountDesc>,
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
        parts.push(format!("{req} used by an in-flight io_uring request"));
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
            let _ = writeln!(
                out,
                "  nothing traced explains this EBUSY: no open file, mapping, child mount, process cwd/root, loop device or swap file on it that we know of; it may be pinned by in-flight AIO requests or another kernel-internal reference"
            );
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
mod refcount_tests {
    use super::*;

    fn r(count: i32, files: usize, pins: usize, children: usize) -> RefCount {
        RefCount {
            read_ns: 10,
            count,
            complete: true,
            files,
            pins,
            children,
            backing: 0,
        }
    }

    #[test]
    fn reference_counts_against_what_is_named() {
        let a = Anchor::event(10, "EBUSY");
        assert!(
            r(5, 0, 4, 0)
                .words(&a)
                .ends_with("every reference explained")
        );
        assert!(r(7, 1, 2, 1).words(&a).contains(": 2 not explained"));
        assert!(r(2, 3, 0, 0).words(&a).contains("2 named but already gone"));
        let mut partial = r(3, 2, 0, 0);
        partial.complete = false;
        assert!(partial.words(&a).contains("3 or more"));
    }
}

#[cfg(test)]
mod release_group_tests {
    use super::*;
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
