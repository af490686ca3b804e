//! Descriptions of what pins a mount, shared by every kind of notice (EBUSY verdicts,
//! lock and space stories): mounts, tasks, rings, holders, files, reference counts, and
//! the anchor their times are told against.

use std::fmt::{self, Display, Formatter, Write as _};

use serde::Serialize;

use crate::event::{BackingKind, HolderRef, NameKind, RefHow};
use crate::files::{DropReason, FileState};
use crate::mounts::Mount;
use crate::tasks::{KillInfo, SIGKILL, TaskExitInfo, TaskScanInfo};
use crate::text::{count, dur, exit_words, hex, rel};
use crate::work::ChainLink;

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
    pub comm: crate::actor::Comm,
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

    /// "; inside renameat2 (in xfs_rename ← vfs_rename ← do_renameat2 (D)), seen 1.1ms
    /// after the EBUSY", for a living task the last scan found inside a syscall.
    fn syscall_words(&self, a: &Anchor) -> String {
        let Some(sc) = self.scan.as_ref().filter(|sc| !sc.exiting) else {
            return String::new();
        };
        let Some(call) = sc.syscall() else {
            return String::new();
        };
        let st = if sc.state == 2 { " (D)" } else { "" };
        match sc.waits_in() {
            Some(w) => format!("; inside {call} (in {w}{st}), seen {}", a.at(sc.ts_ns)),
            None => format!("; inside {call}, seen {}", a.at(sc.ts_ns)),
        }
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
            None => {
                let mut s = match &self.killed {
                    Some(k) => format!(
                        "alive, but SIGKILL sent by pid {} ({}) {}",
                        k.sender_tgid,
                        k.sender_comm,
                        a.at(k.ts_ns)
                    ),
                    None => "alive".to_string(),
                };
                s.push_str(&self.syscall_words(a));
                s
            }
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
    pub started_comm: Option<crate::actor::Comm>,
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
    pub started_comm: Option<crate::actor::Comm>,
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
            (HolderRef::UringReq { ctx, .. }, DropReason::RequestDone) => format!(
                "in-flight requests of ring {} on it completed, the last in {}",
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
        HolderRef::UringReq { ctx, .. } => {
            format!("in-flight io_uring requests of ring {}", hex(*ctx))
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
    /// In-flight requests of a ring (those that took the file by fd; the kernel side counts
    /// them, see `wire::UringReqDone`).
    UringReq {
        /// What names them: the file (a request's `io_kiocb` in recordings made before
        /// 2026-12-08, when each request was told).
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

/// A holding task's state in brackets: alive or exiting (its fate), exited, or unknown.
fn task_state(task: &TaskDesc, a: &Anchor) -> String {
    if task.exiting || (task.alive && task.known) {
        format!("[{}]", task.fate(a))
    } else if task.known {
        format!("[exited: {}]", task.fate(a))
    } else {
        "[state unknown]".to_string()
    }
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
                let state = task_state(task, a);
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
            HolderDesc::UringReq { ring, since_ns, .. } => ring_holder(
                format!("in-flight requests on {}", ring.name()),
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
                let state = task_state(task, a);
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
    /// Processes pinning the mount whose threads the scan found inside a syscall: each may
    /// hold up to `SYSCALL_REFS_MAX` references not named (a path lookup, an open, a
    /// rename's two parents) until it returns.
    #[serde(skip_serializing_if = "crate::text::is_zero")]
    pub in_syscall: usize,
}

/// References one syscall in progress can hold on a mount beyond its process's files and
/// cwd: a rename's or link's two parent paths (or a lookup's path plus the file an open is
/// making), and the root a lookup grabbed when the process's root is on that mount.
pub const SYSCALL_REFS_MAX: usize = 3;

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
            std::cmp::Ordering::Greater if self.in_syscall > 0 => {
                let _ = write!(
                    s,
                    ": {gap} not explained: {} inside a syscall at the scan (a lookup, open or rename in progress holds up to {SYSCALL_REFS_MAX} references until it returns), else in-flight AIO requests, io_uring requests not traced, other kernel references, a umount in flight",
                    count(self.in_syscall, "holder was", "holders were")
                );
            }
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
    pub first_comm: crate::actor::Comm,
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

    pub(crate) fn render(&self, out: &mut String) {
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

/// The caller of the failed syscall.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Caller {
    pub pid: u32,
    pub tgid: u32,
    pub comm: crate::actor::Comm,
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
            in_syscall: 0,
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
        // A gap beside holders inside syscalls says so; with no gap, nothing is said.
        let mut busy = r(6, 1, 2, 0);
        busy.in_syscall = 2;
        assert!(
            busy.words(&a).contains(
                ": 2 not explained: 2 holders were inside a syscall at the scan (a lookup"
            )
        );
        busy.count = 4;
        assert!(busy.words(&a).ends_with("every reference explained"));
    }
}
