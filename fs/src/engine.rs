//! The engine: applies events in order to the tables (mounts, files, work, rings, tasks),
//! emits [`Notice`]s (verdicts on EBUSY and what follows them), and answers the TUI's
//! queries. Deterministic, no I/O; nonsense or out-of-order events are counted, never panics.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::actor::Actor;
use crate::config::EngineConfig;
use crate::event::{AioTask, BackingFile, ScannedTask, TaskRes};
use crate::event::{
    Event, HolderRef, MountCallOp, MountInfo, NameKind, Payload, RefHow, WorkCtx, WorkFnKind,
};
use crate::files::{
    DeferredTo, DropReason, FileKey, FileObj, FileState, Files, HolderDrop, HolderInfo, Release,
    Removal,
};
use crate::mounts::{MNT_DETACH, Mount, Mounts, UmountAttempt};
use crate::pins::{Pin, Pins};
use crate::rings::{RingWork, Rings};
use crate::stats::Stats;
use crate::summary::{AliveOnMount, MountSummary, WorkFnSummary};
use crate::tasks::{TaskScanInfo, Tasks};
use crate::text::normalize_path;
use crate::verdict::{
    AioDesc, BackingDesc, Caller, CulpritReleased, DeferVia, DetachedMountUnpinned, DropDesc,
    FileId, FileReport, HolderDesc, LastPutDesc, MountDesc, MountDetached, Notice, PinFoundLate,
    PinKind, PinReleased, PinnedMount, RefCount, RingDesc, StoryClosed, StoryRef, TaskDesc,
    TaskPinDesc, TeardownDesc, Unattributed, Verdict, VerdictKind, WorkProgress,
};
use crate::work::{ChainLink, LinkRole, WorkInstance, WorkTable};

mod locks;
mod space;

/// The signal a task's `exit_notify()` sends its parent.
const SIGCHLD: i32 = 17;

/// `-EBUSY` as syscalls return it.
pub const EBUSY: i64 = -16;

/// Chains longer than this are cut (a cycle in lost or nonsense data).
const MAX_CHAIN: usize = 8;

#[derive(Clone, Debug, Default)]
struct Counters {
    events: u64,
    nonsense: u64,
    snapshot_files: u64,
    rescan_found: u64,
    unknown_frees: u64,
    unknown_frees_by_mount: BTreeMap<i32, u64>,
    unknown_unrefs: u64,
    unref_holder_not_found: u64,
    unref_holder_not_held: u64,
    slot_reused: u64,
    files_lost: u64,
    evicted_verdicts: u64,
    evicted_stories: u64,
    precise_work_entries: u64,
    space_unknown_file: u64,
}

/// What an EBUSY story is about: a mount (umount), a path that is no mount we know, or a
/// device (mount).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum StoryKey {
    Mount(i32),
    Target(String),
    Device(String),
}

/// From the first EBUSY to the success of the same operation.
#[derive(Clone, Debug)]
struct Story {
    serial: u64,
    what: String,
    mount: Option<MountDesc>,
    /// Mounts whose unknown-file frees belong to this story.
    mount_ids: BTreeSet<i32>,
    first_ebusy_ns: u64,
    last_ebusy_ns: u64,
    failed: u32,
    culprits: BTreeSet<FileKey>,
    released: usize,
    unlisted_released: usize,
    /// Process cwd/root pins named in its verdicts.
    pins: BTreeSet<(u64, PinKind)>,
    /// What its last verdict said, in short (culprits with their kinds of holders, pins,
    /// exiting owners): an attempt that would say the same is a repeat.
    last_said: String,
}

impl Story {
    fn story_ref(&self) -> StoryRef {
        StoryRef {
            what: self.what.clone(),
            mount: self.mount.clone(),
            first_ebusy_ns: self.first_ebusy_ns,
            last_ebusy_ns: self.last_ebusy_ns,
            failed_attempts: self.failed,
        }
    }
}

/// Turns the event stream into state and verdicts. See the crate docs for the flow.
#[derive(Clone, Debug)]
pub struct Engine {
    cfg: EngineConfig,
    mounts: Mounts,
    files: Files,
    work: WorkTable,
    rings: Rings,
    tasks: Tasks,
    pins: Pins,
    /// The latest reference count read of each mount (task scans), with what the engine
    /// named on it at that moment.
    mount_refs: BTreeMap<i32, RefCount>,
    /// Files on each mount that back a loop device or an active swap file, as the latest
    /// scan after a failed umount read them (with its time).
    backing: BTreeMap<i32, (u64, Vec<BackingFile>)>,
    /// Processes with AIO requests submitted and not reaped, as the latest scan after a
    /// failed umount read the kernel-side counts (with its time).
    aio: (u64, BTreeMap<u32, AioTask>),
    verdicts: VecDeque<Verdict>,
    stories: BTreeMap<StoryKey, Story>,
    /// Lock conflicts followed to their release.
    locks: crate::locks::LockTable,
    /// Deleted files still held, followed to their release.
    space: crate::space::SpaceTable,
    c: Counters,
    extra_limits: Vec<String>,
    /// Umounts whose result `path_umount`'s return already gave, by thread: the syscall's
    /// exit that follows must not make a second verdict.
    precise_umounts: BTreeMap<u32, u64>,
    current_test: Option<String>,
    next_id: u64,
    next_verdict_id: u64,
    now_ns: u64,
}

impl Engine {
    pub fn new(cfg: EngineConfig) -> Self {
        Engine {
            cfg,
            mounts: Mounts::default(),
            files: Files::default(),
            work: WorkTable::default(),
            rings: Rings::default(),
            tasks: Tasks::default(),
            pins: Pins::default(),
            mount_refs: BTreeMap::new(),
            backing: BTreeMap::new(),
            aio: (0, BTreeMap::new()),
            verdicts: VecDeque::new(),
            stories: BTreeMap::new(),
            locks: Default::default(),
            space: Default::default(),
            c: Counters::default(),
            extra_limits: Vec::new(),
            precise_umounts: BTreeMap::new(),
            current_test: None,
            next_id: 0,
            next_verdict_id: 0,
            now_ns: 0,
        }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// Names a kernel function address learnt at run time (a work function first seen in
    /// the stream), so reports print it by name.
    pub fn add_symbol(&mut self, addr: u64, name: impl Into<String>) {
        self.cfg.symbols.entry(addr).or_insert_with(|| name.into());
    }

    /// Adds a limit of the evidence learnt at run time (e.g. "ring buffer lost 12 records"),
    /// quoted in later verdicts.
    pub fn add_evidence_limit(&mut self, limit: impl Into<String>) {
        let l = limit.into();
        // A counter that grew ("12 records lost" then "30 records lost") replaces its
        // earlier value: each limit is said once, with its latest total.
        let shape = |s: &str| s.replace(|c: char| c.is_ascii_digit(), "");
        match self.extra_limits.iter_mut().find(|e| shape(e) == shape(&l)) {
            Some(e) => *e = l,
            None => self.extra_limits.push(l),
        }
    }

    /// The latest event time seen.
    pub fn now_ns(&self) -> u64 {
        self.now_ns
    }

    pub fn mounts(&self) -> &Mounts {
        &self.mounts
    }

    pub fn files(&self) -> &Files {
        &self.files
    }

    pub fn work(&self) -> &WorkTable {
        &self.work
    }

    pub fn rings(&self) -> &Rings {
        &self.rings
    }

    pub fn tasks(&self) -> &Tasks {
        &self.tasks
    }

    /// Verdicts kept (the newest [`crate::config::Caps::max_verdicts`]), oldest first.
    pub fn verdicts(&self) -> impl Iterator<Item = &Verdict> {
        self.verdicts.iter()
    }

    /// The topmost mount in the table at `target` (see [`Mounts::mount_for_path`]).
    pub fn mount_for_path(&self, target: &str) -> Option<&Mount> {
        self.mounts.mount_for_path(target)
    }

    /// Applies every event in order and returns all notices.
    pub fn apply_all<'a>(&mut self, events: impl IntoIterator<Item = &'a Event>) -> Vec<Notice> {
        events.into_iter().flat_map(|e| self.apply(e)).collect()
    }

    /// Applies one event. Events must come in time order; anything else is tolerated.
    pub fn apply(&mut self, ev: &Event) -> Vec<Notice> {
        let mut out = Vec::new();
        self.c.events += 1;
        self.now_ns = self.now_ns.max(ev.ts_ns);
        match &ev.payload {
            Payload::MountTable { mounts } => self.on_mount_table(ev, mounts, &mut out),
            Payload::MountsAppeared { mounts } => {
                self.mounts.learn(ev.ts_ns, mounts);
            }
            Payload::MountMade { mount } => {
                if let Some(id) = self.mounts.made(ev.ts_ns, mount) {
                    self.lose_files_on(id, ev, &mut out);
                }
            }
            Payload::MountCall {
                op,
                flags,
                ret,
                enter_ns,
                source,
                target,
                fs_type,
            } => {
                let call = MountCallArgs {
                    op: *op,
                    flags: *flags,
                    ret: *ret,
                    enter_ns: *enter_ns,
                    source,
                    target,
                    fs_type,
                };
                self.on_mount_call(ev, &call, &mut out)
            }
            Payload::TaskExit {
                exit_code,
                group_dead,
                cwd_mnt,
                root_mnt,
            } => self.on_task_exit(ev, *exit_code, *group_dead, (*cwd_mnt, *root_mnt), &mut out),
            Payload::Signal {
                sig,
                result,
                target_pid,
                target_comm,
                ..
            } => {
                if *sig == SIGCHLD {
                    // Only sent from inside do_exit() (exit_notify): all it held is gone.
                    self.on_task_res_freed(ev, TaskRes::Files, &mut out);
                    self.on_task_res_freed(ev, TaskRes::Fs, &mut out);
                } else {
                    let a = self.actor(ev);
                    self.tasks
                        .signal(*target_pid, *sig, *result, target_comm, &a);
                }
            }
            Payload::UringCreate {
                ctx,
                fd,
                sq_entries,
                cq_entries,
                flags,
            } => self.on_uring_create(ev, *ctx, *fd, *sq_entries, *cq_entries, *flags),
            Payload::UringRegister { ctx, ret, .. } => self.on_uring_register(ev, *ctx, *ret),
            Payload::FileRef {
                file,
                holder,
                how,
                mnt_id,
                dev,
                ino,
                name_kind,
                name,
            } => {
                let r = FileRefArgs {
                    file: *file,
                    holder: *holder,
                    how: *how,
                    mnt_id: *mnt_id,
                    dev: *dev,
                    ino: *ino,
                    name_kind: *name_kind,
                    name,
                };
                self.on_file_ref(ev, &r, &mut out)
            }
            Payload::FileUnref { file, holder, how } => {
                self.on_file_unref(ev, *file, *holder, *how)
            }
            Payload::FileFree { file, mnt_id, ino } => {
                self.on_file_free(ev, *file, *mnt_id, *ino, &mut out)
            }
            Payload::WorkQueued {
                work,
                function,
                target_cpu,
            } => self.on_work_queued(ev, *work, *function, *target_cpu),
            Payload::WorkStart { work, function } => self.on_work_start(ev, *work, *function),
            Payload::WorkEnd { work, function } => self.on_work_end(ev, *work, *function),
            Payload::WorkArmed {
                work,
                function,
                delay_jiffies,
            } => self.on_work_armed(ev, *work, *function, *delay_jiffies),
            Payload::UringReqDone { ctx, req, .. } => self.on_req_done(ev, *ctx, *req),
            Payload::TestMarker { test } => self.current_test = Some(test.clone()),
            Payload::LockEvent {
                hook,
                fl,
                file,
                owner,
                ino,
                dev,
                mnt_id,
                flags,
                ret,
                lock_pid: _,
                lock_type,
                holder,
            } => {
                let l = locks::LockEventArgs {
                    hook: *hook,
                    fl: *fl,
                    file: *file,
                    owner: *owner,
                    ino: *ino,
                    dev: *dev,
                    mnt_id: *mnt_id,
                    flags: *flags,
                    ret: *ret,
                    lock_type: *lock_type,
                    holder: *holder,
                };
                self.on_lock_event(ev, &l, &mut out)
            }
            Payload::LockCall {
                sys,
                cmd,
                fd,
                ret,
                enter_ns,
            } => self.on_lock_call(ev, (*sys, *cmd, *fd), *ret, *enter_ns, &mut out),
            Payload::SpaceHeld {
                file,
                ino,
                dev,
                mnt_id,
                size,
                blocks,
            } => {
                let a = space::SpaceArgs {
                    file: *file,
                    ino: *ino,
                    dev: *dev,
                    mnt_id: *mnt_id,
                    size: *size,
                    blocks: *blocks,
                };
                self.on_space_held(ev, &a, &mut out)
            }
            Payload::FilePut {
                file,
                mnt_id,
                count,
                last,
                ..
            } => self.on_file_put(ev, *file, *mnt_id, *count, *last),
            Payload::FputDeferred {
                file,
                target_pid,
                target_tgid,
                ..
            } => self.on_fput_deferred(ev, *file, *target_pid, *target_tgid),
            Payload::WorkFnEntered { which, work } => self.on_work_fn_entered(ev, *which, *work),
            Payload::UmountRet {
                mnt_id,
                ret,
                flags,
                enter_ns,
            } => self.on_umount_ret(ev, *mnt_id, *ret, *flags, *enter_ns, &mut out),
            Payload::MountCleanup { mnt_id } => self.on_mount_cleanup(ev, *mnt_id, &mut out),
            Payload::TaskResFreed { what, .. } => self.on_task_res_freed(ev, *what, &mut out),
            Payload::TaskSeen { task } => self.on_task_seen(ev, task, &mut out),
            Payload::MountRefs {
                mnt_id,
                count,
                cpus,
                cpus_possible,
            } => {
                if self.mount_refs.len() > self.cfg.caps.max_mount_history {
                    self.mount_refs.clear();
                }
                let r = RefCount {
                    read_ns: ev.ts_ns,
                    count: *count,
                    complete: cpus == cpus_possible,
                    files: self.files.alive_count_on(*mnt_id),
                    pins: self.pins.held_on(*mnt_id),
                    children: self.mounts.children(*mnt_id).len(),
                    backing: self.backing_unlisted_on(*mnt_id),
                };
                self.mount_refs.insert(*mnt_id, r);
            }
            Payload::BackingScan { mounts, files } => self.on_backing_scan(ev, mounts, files),
            Payload::AioScan { tasks } => {
                // The kernel-side counts of every process: the new list replaces the old.
                let cap = self.cfg.caps.max_tasks;
                self.aio = (
                    ev.ts_ns,
                    tasks
                        .iter()
                        .take(cap)
                        .map(|t| (t.tgid, t.clone()))
                        .collect(),
                );
            }
            Payload::MmapScanDone { started_ns, mounts } => {
                self.on_mmap_scan_done(ev, *started_ns, mounts)
            }
            Payload::PinScanDone { started_ns, mounts } => {
                // An exiting process's pin the scan missed went between the EBUSY and the
                // scan: its exit's end, still queued behind the scan, says when.
                let tasks = &self.tasks;
                let awaits = |p: &Pin| {
                    tasks
                        .get(p.task)
                        .is_some_and(|t| t.exit.is_some() && t.fs_gone_ns.is_none())
                };
                for p in self.pins.stale(mounts, *started_ns, awaits) {
                    self.pin_released(&p, ev.ts_ns, false, &mut out);
                }
            }
        }
        self.enforce_caps();
        out
    }

    // ----- context -----

    fn ring_of_work(&self, work: u64, function: u64) -> Option<u64> {
        self.cfg.ring_of_work(work, function).or_else(|| {
            self.cfg
                .is_ring_exit_work(function)
                .then(|| self.rings.learned(work))
                .flatten()
        })
    }

    fn actor(&self, ev: &Event) -> Actor {
        Actor {
            ts_ns: ev.ts_ns,
            pid: ev.pid,
            tgid: ev.tgid,
            comm: ev.comm.clone(),
            work: ev.work,
            work_instance: ev.work.and_then(|w| self.work.running_instance(w.work)),
            ring: ev.work.and_then(|w| self.ring_of_work(w.work, w.function)),
            task_exited: ev.work.is_none() && self.tasks.is_exited(ev.tgid),
        }
    }

    fn name(&self, f: u64) -> String {
        self.cfg.symbol(f)
    }

    fn link(&self, a: &Actor, role: LinkRole) -> ChainLink {
        ChainLink::from_actor(a, role, |f| self.name(f))
    }

    fn asker_of(&self, serial: Option<u64>) -> Option<(&Actor, LinkRole)> {
        let i = self.work.get(serial?)?;
        i.asker(self.cfg.is_delayed_work_fn(i.function))
    }

    /// The deferral chain of a release in context `rel`: the freeing context, then who
    /// handed it the file or asked for its run, and so on back to a plain task.
    /// `putter` is who dropped the last reference (the precise `fput`), else the last holder.
    fn build_chain(&self, rel: &Actor, putter: Option<&Actor>) -> Vec<ChainLink> {
        if rel.work.is_none() {
            return vec![self.link(rel, LinkRole::TaskWork)];
        }
        let mut links = vec![self.link(rel, LinkRole::Ran)];
        let asker = self.asker_of(rel.work_instance);
        let mut next: Option<(Actor, LinkRole)> = match (putter, asker) {
            (Some(d), Some((a, role))) if d.same_context(a) => Some((a.clone(), role)),
            (Some(d), _) if !d.same_context(rel) => Some((d.clone(), LinkRole::PutBy)),
            (_, Some((a, role))) => Some((a.clone(), role)),
            _ => None,
        };
        if next.is_none() {
            links.push(ChainLink::unseen(rel.ts_ns));
        }
        while let Some((a, role)) = next.take() {
            links.push(self.link(&a, role));
            if a.work.is_none() || role == LinkRole::QueuedByTimer {
                break;
            }
            if links.len() >= MAX_CHAIN {
                links.push(ChainLink::unseen(a.ts_ns));
                break;
            }
            match self.asker_of(a.work_instance) {
                Some((q, r)) => next = Some((q.clone(), r)),
                None => links.push(ChainLink::unseen(a.ts_ns)),
            }
        }
        links
    }

    // ----- descriptions -----

    fn task_desc(&self, serial: Option<u64>, tgid: u32, comm: &str) -> TaskDesc {
        let t = match serial {
            Some(s) => self.tasks.get(s),
            None => self.tasks.current(tgid),
        };
        match t {
            Some(t) => TaskDesc {
                pid: t.tgid,
                comm: t.comm.clone(),
                known: true,
                alive: t.alive(),
                exit: t.exit.clone(),
                killed: t.killed.clone(),
                // Without the fd table's free in the stream, an exit is as far as we see.
                exiting: self.cfg.exit_resources_seen && t.exiting(),
                files_gone_ns: t.files_gone_ns,
                fs_gone_ns: t.fs_gone_ns,
                scan: t.scan.clone(),
            },
            None => TaskDesc {
                pid: tgid,
                comm: comm.to_string(),
                known: false,
                alive: false,
                exit: None,
                killed: None,
                exiting: false,
                files_gone_ns: None,
                fs_gone_ns: None,
                scan: None,
            },
        }
    }

    fn teardown_desc(&self, w: &RingWork) -> TeardownDesc {
        TeardownDesc {
            queued: w.queued.as_ref().map(|a| self.link(a, LinkRole::QueuedBy)),
            started_ns: w.started.as_ref().map(|a| a.ts_ns),
            started_comm: w.started.as_ref().map(|a| a.comm.clone()),
            ended_ns: w.ended_ns,
        }
    }

    fn ring_desc(&self, ctx: u64) -> RingDesc {
        let r = self
            .rings
            .get(ctx)
            .or_else(|| self.rings.retired().rev().find(|r| r.ctx == ctx));
        match r {
            Some(r) => RingDesc {
                ctx,
                known: true,
                owner: r
                    .owner_tgid
                    .map(|t| self.task_desc(r.owner_task, t, &r.owner_comm)),
                owner_inferred: r.owner_inferred,
                created_ns: r.created_ns,
                teardown: self.teardown_desc(&r.exit_work),
                torn_down_ns: r.torn_down_ns,
            },
            None => RingDesc {
                ctx,
                known: false,
                owner: None,
                owner_inferred: false,
                created_ns: None,
                teardown: TeardownDesc::default(),
                torn_down_ns: None,
            },
        }
    }

    fn drop_desc(&self, d: &HolderDrop) -> DropDesc {
        DropDesc {
            holder: d.holder,
            reason: d.reason,
            ts_ns: d.actor.ts_ns,
            by: self.link(&d.actor, LinkRole::PutBy),
        }
    }

    fn progress(&self, i: &WorkInstance) -> WorkProgress {
        WorkProgress {
            function_name: self.name(i.function),
            armed_ns: i.armed.as_ref().map(|a| a.ts_ns),
            armed_by: i.armed.as_ref().map(|a| self.link(a, LinkRole::ArmedBy)),
            queued_ns: i.queued.as_ref().map(|a| a.ts_ns),
            started_ns: i.started.as_ref().map(|a| a.ts_ns),
            started_comm: i.started.as_ref().map(|a| a.comm.clone()),
            ended_ns: i.ended_ns,
        }
    }

    fn file_id(f: &FileObj) -> FileId {
        FileId {
            file: f.key.file,
            generation: f.key.generation,
            mnt_id: f.mnt_id,
            ino: f.ino,
            name_kind: f.name_kind,
            name: f.name.clone(),
            path: f.path(),
        }
    }

    /// A file and everything that keeps it alive, in plain terms.
    pub fn describe(&self, f: &FileObj) -> FileReport {
        let mut holders: Vec<HolderDesc> = f
            .holders
            .iter()
            .map(|(h, i)| match *h {
                HolderRef::Fd { tgid, fd } => HolderDesc::Fd {
                    fd,
                    task: self.task_desc(i.task, tgid, &i.comm),
                    since_ns: i.since_ns,
                    how: i.how,
                },
                HolderRef::UringFixed { ctx } => HolderDesc::UringFixed {
                    ring: self.ring_desc(ctx),
                    since_ns: i.since_ns,
                },
                HolderRef::UringReq { ctx, req } => HolderDesc::UringReq {
                    req,
                    ring: self.ring_desc(ctx),
                    since_ns: i.since_ns,
                },
                HolderRef::Mmap { tgid, start, end } => HolderDesc::Mmap {
                    start,
                    end,
                    task: self.task_desc(i.task, tgid, &i.comm),
                    since_ns: i.since_ns,
                    fd_open: f
                        .holders
                        .keys()
                        .any(|k| matches!(k, HolderRef::Fd { tgid: t, .. } if *t == tgid)),
                },
            })
            .collect();
        // AIO requests of a process named it and are not all reaped: those still in flight
        // hold it (the counts cannot say which).
        let mut by_aio = false;
        for t in self.aio.1.values() {
            if t.unreaped() > 0 && t.files.iter().any(|a| a.file == f.key.file) {
                by_aio = true;
                holders.push(HolderDesc::Aio {
                    task: self.task_desc(None, t.tgid, ""),
                    unreaped: t.unreaped(),
                });
            }
        }
        // A loop device or swap file holds it: that is its holder, whatever the tracer saw
        // of the fds that opened it.
        let backs = self.backing_of(f);
        if let Some(b) = backs {
            holders.push(HolderDesc::Backing {
                what: b.kind,
                device: b.device.clone(),
            });
        }
        // Alive with no other holder left: a request still in flight is what holds it.
        let state = match f.state() {
            FileState::PendingRelease | FileState::Unattributed if backs.is_some() || by_aio => {
                FileState::Held
            }
            s => s,
        };
        match state {
            FileState::PendingRelease => {
                let drop = f.last_drop.as_ref();
                let since = f
                    .no_holder_since
                    .or(drop.map(|d| d.actor.ts_ns))
                    .unwrap_or(0);
                let put = f.last_put.as_ref();
                let since = match put {
                    Some(p) if f.no_holder_since.is_none() => p.actor.ts_ns,
                    _ => since,
                };
                // The precise hooks say where the release went; else guess from who
                // dropped the last holder (kworkers defer to delayed_fput).
                let via = match put {
                    Some(p) if p.deferred_to.is_some() => DeferVia::TaskWork,
                    Some(_) => DeferVia::DelayedFput,
                    None if drop.is_some_and(|d| d.actor.work.is_some()) => DeferVia::DelayedFput,
                    None => DeferVia::TaskWork,
                };
                let delayed_fput = match (via, self.cfg.delayed_fput) {
                    (DeferVia::DelayedFput, Some(func)) => Some(
                        self.work
                            .latest_of_fn(func)
                            .filter(|i| i.ended_ns.is_none_or(|e| e >= since))
                            .map(|i| self.progress(i))
                            .unwrap_or(WorkProgress {
                                function_name: self.name(func),
                                armed_ns: None,
                                armed_by: None,
                                queued_ns: None,
                                started_ns: None,
                                started_comm: None,
                                ended_ns: None,
                            }),
                    ),
                    _ => None,
                };
                holders.push(HolderDesc::DeferredPut {
                    since_ns: since,
                    via,
                    last_drop: drop.map(|d| self.drop_desc(d)),
                    delayed_fput,
                    last_put: put.map(|p| {
                        Box::new(LastPutDesc {
                            ts_ns: p.actor.ts_ns,
                            by: self.link(&p.actor, LinkRole::PutBy),
                            queued_to: p.deferred_to,
                        })
                    }),
                });
            }
            FileState::Unattributed => holders.push(HolderDesc::Unattributed {
                since_ns: f.no_holder_since,
                last_drop: f.last_drop.as_ref().map(|d| self.drop_desc(d)),
                refs_left: f.refs_left.map(|r| r.left),
            }),
            FileState::Held | FileState::Released => {}
        }
        FileReport {
            id: Self::file_id(f),
            dev: f.dev,
            state,
            first_ref_ns: f.first_ref.ts_ns,
            first_how: f.first_how,
            first_pid: f.first_ref.tgid,
            first_comm: f.first_ref.comm.clone(),
            holders,
            unseen_refs: f.unseen_refs,
        }
    }

    /// Describes a file by key (alive or kept after release).
    pub fn describe_file(&self, key: FileKey) -> Option<FileReport> {
        self.files.get(key).map(|f| self.describe(f))
    }

    // ----- queries -----

    /// Alive files on a mount grouped by holder kind.
    pub fn alive_on_mount(&self, mount_id: i32) -> AliveOnMount {
        let mut v = AliveOnMount {
            mount_id,
            mount: self.mounts.get(mount_id).map(MountDesc::of),
            ..Default::default()
        };
        for f in self.files.alive_on_mount(mount_id) {
            v.files += 1;
            let r = self.describe(f);
            let has = |p: fn(&HolderRef) -> bool| f.holders.keys().any(p);
            if has(|h| matches!(h, HolderRef::Fd { .. })) {
                v.fd_tables.push(r.clone());
            }
            if has(|h| matches!(h, HolderRef::UringFixed { .. })) {
                v.uring_rings.push(r.clone());
            }
            if has(|h| matches!(h, HolderRef::UringReq { .. })) {
                v.in_flight.push(r.clone());
            }
            match f.state() {
                FileState::PendingRelease => v.deferred_pending.push(r),
                FileState::Unattributed => v.unattributed.push(r),
                FileState::Held | FileState::Released => {}
            }
        }
        v
    }

    /// One summary per mount: those in the table, detached ones, and mount ids that only
    /// files point at.
    pub fn mount_summaries(&self) -> Vec<MountSummary> {
        let ids: BTreeSet<i32> = self
            .mounts
            .live()
            .map(|m| m.id)
            .chain(self.files.mounts_with_alive())
            .collect();
        ids.into_iter()
            .map(|id| {
                let m = self.mounts.get(id);
                let mut s = MountSummary {
                    mount_id: id,
                    mount: m.map(MountDesc::of),
                    detached: m.is_some_and(Mount::detached),
                    unknown_frees: self.c.unknown_frees_by_mount.get(&id).copied().unwrap_or(0),
                    umount_attempts: m.map_or(0, |m| m.umount_attempts_total),
                    umount_ebusy: m.map_or(0, |m| m.umount_ebusy_total),
                    ..Default::default()
                };
                for f in self.files.alive_on_mount(id) {
                    s.alive_files += 1;
                    let mut fd = false;
                    let mut ring = false;
                    let mut req = false;
                    for h in f.holders.keys() {
                        match h {
                            HolderRef::Fd { .. } => fd = true,
                            HolderRef::UringFixed { .. } => ring = true,
                            HolderRef::UringReq { .. } => req = true,
                            HolderRef::Mmap { .. } => {}
                        }
                    }
                    s.fd_tables += usize::from(fd);
                    s.uring_rings += usize::from(ring);
                    s.in_flight += usize::from(req);
                    match f.state() {
                        FileState::PendingRelease => s.deferred_pending += 1,
                        FileState::Unattributed => s.unattributed += 1,
                        _ => {}
                    }
                }
                s
            })
            .collect()
    }

    /// Latency (queue → start) and run time per followed work function.
    pub fn work_summaries(&self) -> Vec<WorkFnSummary> {
        let mut now: BTreeMap<u64, (usize, usize, Option<u64>)> = BTreeMap::new();
        for i in self.work.iter() {
            let e = now.entry(i.function).or_default();
            if i.waiting() {
                e.0 += 1;
                let since = i
                    .armed
                    .as_ref()
                    .or(i.queued.as_ref())
                    .map(|a| a.ts_ns)
                    .unwrap_or(0);
                e.2 = Some(e.2.map_or(since, |s| s.min(since)));
            }
            if i.running() {
                e.1 += 1;
            }
        }
        self.work
            .per_fn()
            .iter()
            .map(|(&function, c)| {
                let (waiting, running, oldest) = now.get(&function).copied().unwrap_or_default();
                WorkFnSummary {
                    function,
                    name: self.name(function),
                    counters: *c,
                    waiting_now: waiting,
                    running_now: running,
                    oldest_waiting_since_ns: oldest,
                }
            })
            .collect()
    }

    pub fn stats(&self) -> Stats {
        Stats {
            events: self.c.events,
            nonsense_events: self.c.nonsense,
            files_alive: self.files.alive_len(),
            files_kept: self.files.len(),
            snapshot_files: self.c.snapshot_files,
            rescan_found: self.c.rescan_found,
            unknown_file_frees: self.c.unknown_frees,
            unknown_file_frees_by_mount: self.c.unknown_frees_by_mount.clone(),
            unknown_file_unrefs: self.c.unknown_unrefs,
            unref_holder_not_found: self.c.unref_holder_not_found,
            unref_holder_not_held: self.c.unref_holder_not_held,
            holder_slot_reused: self.c.slot_reused,
            space_unknown_file: self.c.space_unknown_file,
            files_lost: self.c.files_lost,
            mount_ids_reused: self.mounts.ids_reused,
            work_unmatched_starts: self.work.unmatched_starts,
            work_unmatched_ends: self.work.unmatched_ends,
            work_missed_ends: self.work.missed_ends,
            evicted_files_released: self.files.evicted_released,
            evicted_files_alive: self.files.evicted_alive,
            evicted_work_done: self.work.evicted_done,
            evicted_work_active: self.work.evicted_active,
            evicted_verdicts: self.c.evicted_verdicts,
            evicted_stories: self.c.evicted_stories,
            evicted_tasks: self.tasks.evicted,
            evicted_rings: self.rings.evicted,
            evicted_mounts: self.mounts.evicted,
            missing_hooks: self.cfg.missing_hooks.clone(),
        }
    }

    /// What the evidence cannot show, as quoted in verdicts.
    pub fn evidence_limits(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .cfg
            .missing_hooks
            .iter()
            .map(|h| format!("hook not attached: {h}"))
            .collect();
        v.extend(self.extra_limits.iter().cloned());
        if self.c.snapshot_files == 0 {
            v.push(
                "no attach-time snapshot of open files was seen: files opened before the tracer attached are invisible"
                    .into(),
            );
        }
        if !self.mounts.seeded {
            v.push("no mount table was received: mounts are unknown".into());
        }
        if self.cfg.delayed_fput.is_none() {
            v.push(
                "the address of delayed_fput is unknown: deferred puts cannot be followed".into(),
            );
        }
        if self.cfg.io_ring_exit_work.is_some() && self.cfg.ring_exit_work_offset.is_none() {
            v.push(
                "the offset of exit_work in struct io_ring_ctx is unknown: ring teardowns are matched to rings by their owner only"
                    .into(),
            );
        }
        let evicted = self.stats().evicted_live();
        if evicted > 0 {
            v.push(format!(
                "{evicted} objects were evicted to stay within memory caps: older history is incomplete"
            ));
        }
        v
    }

    /// Consistency of the engine's tables (for tests; cheap enough for debug builds).
    pub fn check_invariants(&self) -> Result<(), String> {
        self.files.check()?;
        let caps = &self.cfg.caps;
        let checks = [
            ("files", self.files.len(), caps.max_files),
            ("work instances", self.work.len(), caps.max_work_instances),
            ("verdicts", self.verdicts.len(), caps.max_verdicts),
            ("stories", self.stories.len(), caps.max_verdicts),
            ("tasks", self.tasks.len(), caps.max_tasks),
            ("rings", self.rings.len(), caps.max_rings),
            (
                "mount history",
                self.mounts.history_len(),
                caps.max_mount_history,
            ),
        ];
        for (what, n, cap) in checks {
            if n > cap {
                return Err(format!("{what}: {n} kept, cap {cap}"));
            }
        }
        for m in self.mounts.live() {
            if m.detached() && self.files.alive_count_on(m.id) == 0 {
                return Err(format!("mount {} detached with no alive file", m.id));
            }
        }
        Ok(())
    }

    // ----- mounts and verdicts -----

    fn on_mount_table(&mut self, ev: &Event, table: &[MountInfo], out: &mut Vec<Notice>) {
        let files = &self.files;
        let ch = self
            .mounts
            .apply_table(ev.ts_ns, table, |id| files.alive_count_on(id) > 0);
        for id in ch.replaced {
            self.lose_files_on(id, ev, out);
        }
        for id in ch.detached {
            let Some(m) = self.mounts.get(id) else {
                continue;
            };
            let files = self
                .files
                .alive_on_mount(id)
                .into_iter()
                .map(|f| self.describe(f))
                .collect();
            out.push(Notice::MountDetachedPinned(MountDetached {
                mount: MountDesc::of(m),
                ts_ns: ev.ts_ns,
                files,
            }));
        }
    }

    /// The kernel reuses a mount id only once the old mount is freed, so the files we
    /// believed alive on the mount that had `id` were freed unseen.
    fn lose_files_on(&mut self, id: i32, ev: &Event, out: &mut Vec<Notice>) {
        let keys: Vec<FileKey> = self
            .files
            .alive_on_mount(id)
            .iter()
            .map(|f| f.key)
            .collect();
        for k in keys {
            self.lose_file(k, ev, out);
        }
    }

    fn on_mount_call(&mut self, ev: &Event, call: &MountCallArgs, out: &mut Vec<Notice>) {
        match call.op {
            MountCallOp::Umount => {
                // path_umount's return came first, from inside this very syscall.
                if let Some(ts) = self.precise_umounts.remove(&ev.pid)
                    && ts >= call.enter_ns
                    && ts <= ev.ts_ns
                {
                    return;
                }
                let mid = self.mounts.mount_for_path(call.target).map(|m| m.id);
                self.umount_result(ev, call, mid, out);
            }
            MountCallOp::Mount => {
                if call.ret == EBUSY {
                    self.mount_busy(ev, call, out);
                } else if call.ret == 0 {
                    let k = StoryKey::Device(call.source.to_string());
                    self.close_story(&k, ev, false, 0, out);
                }
            }
            MountCallOp::MoveMount | MountCallOp::Fsmount => {}
        }
    }

    /// `path_umount()` returned (precise tier): the result for a mount known by id, ahead
    /// of the syscall's exit (which is then skipped for this thread).
    fn on_umount_ret(
        &mut self,
        ev: &Event,
        mnt_id: i32,
        ret: i64,
        flags: u32,
        enter_ns: u64,
        out: &mut Vec<Notice>,
    ) {
        // Without a mount the syscall tracepoint, which has the path, says it better.
        let Some(target) = self.mounts.get(mnt_id).map(|m| m.mount_point.clone()) else {
            return;
        };
        self.precise_umounts.insert(ev.pid, ev.ts_ns);
        let call = MountCallArgs {
            op: MountCallOp::Umount,
            flags,
            ret,
            enter_ns: if enter_ns == 0 { ev.ts_ns } else { enter_ns },
            source: "",
            target: &target,
            fs_type: "",
        };
        self.umount_result(ev, &call, Some(mnt_id), out);
    }

    /// `cleanup_mnt()`: the mount's last reference is gone. When releases are hooked
    /// precisely, files still believed alive on it were freed unseen.
    fn on_mount_cleanup(&mut self, ev: &Event, mnt_id: i32, out: &mut Vec<Notice>) {
        if self.cfg.precise_release {
            let keys: Vec<FileKey> = self
                .files
                .alive_on_mount(mnt_id)
                .iter()
                .map(|f| f.key)
                .collect();
            for k in keys {
                self.lose_file(k, ev, out);
            }
        }
        if let Some(m) = self.mounts.get_mut(mnt_id)
            && !m.in_table()
        {
            m.gone_ns.get_or_insert(ev.ts_ns);
        }
    }

    /// An `fput()` (precise tier) of a file the engine follows.
    fn on_file_put(&mut self, ev: &Event, file: u64, mnt_id: i32, held: i64, last: bool) {
        let Some(key) = self.files.alive(file) else {
            return; // pipes, sockets, files opened before attach: not followed
        };
        if mnt_id != -1 {
            self.files.set_mount(key, mnt_id);
        }
        let actor = self.actor(ev);
        if last {
            // The last reference went: holders still on our books let go unseen.
            let held: Vec<HolderRef> = self
                .files
                .get(key)
                .map(|f| f.holders.keys().copied().collect())
                .unwrap_or_default();
            for h in held {
                self.files
                    .remove_holder(key, &h, DropReason::GoneAtLastPut, &actor);
            }
        }
        self.files.note_put(key, &actor, held, last);
    }

    fn on_fput_deferred(&mut self, ev: &Event, file: u64, pid: u32, tgid: u32) {
        let Some(key) = self.files.alive(file) else {
            return;
        };
        let actor = self.actor(ev);
        let to = DeferredTo {
            ts_ns: ev.ts_ns,
            pid,
            tgid,
        };
        self.files.note_deferred(key, to, &actor);
    }

    /// A deferred-release work function entered (precise tier): the run is certain even
    /// when the workqueue tracepoints missed its start.
    fn on_work_fn_entered(&mut self, ev: &Event, which: WorkFnKind, work: u64) {
        let function = match which {
            WorkFnKind::DelayedFput => self.cfg.delayed_fput,
            WorkFnKind::IoFallbackReqFunc => self.cfg.fallback_work_fn(),
            WorkFnKind::IoRingExitWork => self.cfg.io_ring_exit_work,
        };
        let Some(function) = function else { return };
        self.c.precise_work_entries += 1;
        if work != 0 && self.work.running_instance(work).is_none() {
            self.on_work_start(ev, work, function);
        }
    }

    fn umount_result(
        &mut self,
        ev: &Event,
        call: &MountCallArgs,
        mid: Option<i32>,
        out: &mut Vec<Notice>,
    ) {
        {
            {
                if let Some(m) = mid.and_then(|id| self.mounts.get_mut(id)) {
                    m.record_attempt(UmountAttempt {
                        ts_ns: ev.ts_ns,
                        ret: call.ret,
                        flags: call.flags,
                        pid: ev.pid,
                        tgid: ev.tgid,
                        comm: ev.comm.clone(),
                    });
                }
                if call.ret == EBUSY {
                    self.umount_busy(ev, call, mid, out);
                } else if call.ret == 0 {
                    // Gone from the tree: its id may come back with another mount.
                    if let Some(id) = mid {
                        self.pins.clear_mount(id);
                        self.backing.remove(&id);
                        self.mount_refs.remove(&id);
                    }
                    let lazy = call.flags & MNT_DETACH != 0;
                    let still = mid.map_or(0, |id| self.files.alive_count_on(id));
                    let keys = [
                        mid.map(StoryKey::Mount),
                        Some(StoryKey::Target(normalize_path(call.target))),
                    ];
                    for k in keys.into_iter().flatten() {
                        if self.close_story(&k, ev, lazy, if lazy { still } else { 0 }, out) {
                            break;
                        }
                    }
                }
            }
        }
    }

    fn unattributed_for(&self, mount_ids: &[i32], reports: &[&FileReport]) -> Unattributed {
        Unattributed {
            files_without_holder: reports
                .iter()
                .filter(|r| r.state == FileState::Unattributed)
                .count(),
            unknown_frees_on_mount: mount_ids
                .iter()
                .map(|id| self.c.unknown_frees_by_mount.get(id).copied().unwrap_or(0))
                .sum(),
            unknown_frees_total: self.c.unknown_frees,
            unknown_unrefs_total: self.c.unknown_unrefs,
            unseen_refs: reports.iter().map(|r| u64::from(r.unseen_refs)).sum(),
        }
    }

    /// Opens or continues the story of `key`; returns (attempt number, first EBUSY time).
    fn story_ebusy(
        &mut self,
        key: StoryKey,
        what: String,
        mount: Option<MountDesc>,
        mount_ids: &[i32],
        culprits: &[FileKey],
        ts: u64,
    ) -> (u32, u64) {
        self.next_id += 1;
        let serial = self.next_id;
        let s = self.stories.entry(key).or_insert_with(|| Story {
            serial,
            what,
            mount: None,
            mount_ids: BTreeSet::new(),
            first_ebusy_ns: ts,
            last_ebusy_ns: ts,
            failed: 0,
            culprits: BTreeSet::new(),
            released: 0,
            unlisted_released: 0,
            pins: BTreeSet::new(),
            last_said: String::new(),
        });
        s.failed = s.failed.saturating_add(1);
        s.last_ebusy_ns = ts;
        if mount.is_some() {
            s.mount = mount;
        }
        s.mount_ids.extend(mount_ids.iter().copied());
        s.culprits.extend(culprits.iter().copied());
        (s.failed, s.first_ebusy_ns)
    }

    fn caller(ev: &Event) -> Caller {
        Caller {
            pid: ev.pid,
            tgid: ev.tgid,
            comm: ev.comm.clone(),
        }
    }

    fn umount_busy(
        &mut self,
        ev: &Event,
        call: &MountCallArgs,
        mid: Option<i32>,
        out: &mut Vec<Notice>,
    ) {
        let mount = mid.and_then(|id| self.mounts.get(id)).map(MountDesc::of);
        let files = mid
            .map(|id| self.files.alive_on_mount(id))
            .unwrap_or_default();
        let keys: Vec<FileKey> = files.iter().map(|f| f.key).collect();
        let culprits: Vec<FileReport> = files.into_iter().map(|f| self.describe(f)).collect();
        let child_mounts: Vec<MountDesc> = mid
            .map(|id| {
                self.mounts
                    .children(id)
                    .into_iter()
                    .map(MountDesc::of)
                    .collect()
            })
            .unwrap_or_default();
        let ids: Vec<i32> = mid.into_iter().collect();
        let unattributed = self.unattributed_for(&ids, &culprits.iter().collect::<Vec<_>>());
        let task_pins = mid.map(|id| self.task_pins_on(id)).unwrap_or_default();
        let backing = mid.map(|id| self.backing_descs(id)).unwrap_or_default();
        let aio = mid
            .map(|id| self.aio_descs(id, &task_pins, &culprits))
            .unwrap_or_default();
        let pin_keys: Vec<(u64, PinKind)> = mid
            .map(|id| {
                self.pins
                    .on_mount(id)
                    .iter()
                    .map(|p| (p.task, p.kind))
                    .collect()
            })
            .unwrap_or_default();
        let key = match mid {
            Some(id) => StoryKey::Mount(id),
            None => StoryKey::Target(normalize_path(call.target)),
        };
        // Nothing new since the story's last verdict: the text says so instead of
        // repeating every culprit (real runs retry dozens of times).
        let said = format!(
            "{:?}|{:?}|{:?}",
            culprits
                .iter()
                .map(|c| (c.id.file, crate::verdict::holder_signature(c)))
                .collect::<Vec<_>>(),
            task_pins
                .iter()
                .map(|p| (p.task.pid, &p.what, p.task.exiting))
                .collect::<Vec<_>>(),
            child_mounts.iter().map(|m| m.id).collect::<Vec<_>>()
        ) + &format!(
            "|{:?}|{:?}",
            backing
                .iter()
                .map(|b| (&b.device, &b.path))
                .collect::<Vec<_>>(),
            aio.iter()
                .map(|a| (a.task.pid, a.task.exiting))
                .collect::<Vec<_>>()
        );
        let repeat = self.stories.get(&key).is_some_and(|s| s.last_said == said);
        let (attempt, first) = self.story_ebusy(
            key.clone(),
            format!("umount {}", call.target),
            mount.clone(),
            &ids,
            &keys,
            ev.ts_ns,
        );
        if let Some(s) = self.stories.get_mut(&key) {
            s.pins.extend(pin_keys);
            s.last_said = said;
        }
        let unexplained = mount.is_some()
            && culprits.is_empty()
            && child_mounts.is_empty()
            && task_pins.is_empty()
            && backing.is_empty();
        // A count read for an earlier story (or an earlier mount with the same id) is not
        // this one's: the scan of a failure runs after it.
        let refs = mid
            .and_then(|id| self.mount_refs.get(&id).cloned())
            .filter(|r| r.read_ns >= first);
        let v = self.verdict(
            ev,
            call,
            VerdictKind::UmountBusy,
            attempt,
            first,
            unattributed,
            unexplained,
        );
        let v = Verdict {
            mount,
            culprits,
            child_mounts,
            task_pins,
            backing,
            aio,
            repeat,
            refs,
            ..v
        };
        self.push_verdict(v, out);
    }

    fn mount_busy(&mut self, ev: &Event, call: &MountCallArgs, out: &mut Vec<Notice>) {
        let mut pinned = Vec::new();
        let mut keys = Vec::new();
        let mut ids = Vec::new();
        for m in self.mounts.by_source(call.source) {
            let files = self.files.alive_on_mount(m.id);
            keys.extend(files.iter().map(|f| f.key));
            ids.push(m.id);
            pinned.push(PinnedMount {
                mount: MountDesc::of(m),
                files: files.into_iter().map(|f| self.describe(f)).collect(),
                child_mounts: self
                    .mounts
                    .children(m.id)
                    .into_iter()
                    .map(MountDesc::of)
                    .collect(),
            });
        }
        let dev_path = normalize_path(call.source);
        let openers: Vec<&FileObj> = if dev_path.starts_with('/') {
            self.files
                .alive_iter()
                .filter(|f| f.path().as_deref() == Some(dev_path.as_str()))
                .collect()
        } else {
            Vec::new()
        };
        keys.extend(openers.iter().map(|f| f.key));
        let device_openers: Vec<FileReport> =
            openers.into_iter().map(|f| self.describe(f)).collect();
        let all: Vec<&FileReport> = pinned
            .iter()
            .flat_map(|p| p.files.iter())
            .chain(device_openers.iter())
            .collect();
        let unattributed = self.unattributed_for(&ids, &all);
        let unexplained = all.is_empty() && pinned.iter().all(|p| p.child_mounts.is_empty());
        let (attempt, first) = self.story_ebusy(
            StoryKey::Device(call.source.to_string()),
            format!("mount {}", call.source),
            None,
            &ids,
            &keys,
            ev.ts_ns,
        );
        let v = self.verdict(
            ev,
            call,
            VerdictKind::MountBusy,
            attempt,
            first,
            unattributed,
            unexplained,
        );
        let v = Verdict {
            pinned_mounts: pinned,
            device_openers,
            ..v
        };
        self.push_verdict(v, out);
    }

    #[allow(clippy::too_many_arguments)]
    fn verdict(
        &mut self,
        ev: &Event,
        call: &MountCallArgs,
        kind: VerdictKind,
        attempt: u32,
        first_ebusy_ns: u64,
        unattributed: Unattributed,
        unexplained: bool,
    ) -> Verdict {
        self.next_verdict_id += 1;
        Verdict {
            id: self.next_verdict_id,
            kind,
            op: call.op,
            ts_ns: ev.ts_ns,
            enter_ns: call.enter_ns,
            target: call.target.to_string(),
            source: call.source.to_string(),
            fs_type: call.fs_type.to_string(),
            flags: call.flags,
            caller: Self::caller(ev),
            test: self.current_test.clone(),
            attempt,
            first_ebusy_ns,
            mount: None,
            culprits: Vec::new(),
            child_mounts: Vec::new(),
            task_pins: Vec::new(),
            backing: Vec::new(),
            aio: Vec::new(),
            repeat: false,
            refs: None,
            pinned_mounts: Vec::new(),
            device_openers: Vec::new(),
            unattributed,
            unexplained,
            evidence_limits: self.evidence_limits(),
        }
    }

    fn push_verdict(&mut self, v: Verdict, out: &mut Vec<Notice>) {
        out.push(Notice::Verdict(v.clone()));
        self.verdicts.push_back(v);
    }

    fn close_story(
        &mut self,
        key: &StoryKey,
        ev: &Event,
        lazy: bool,
        still: usize,
        out: &mut Vec<Notice>,
    ) -> bool {
        let Some(s) = self.stories.remove(key) else {
            return false;
        };
        out.push(Notice::StoryClosed(StoryClosed {
            story: s.story_ref(),
            ts_ns: ev.ts_ns,
            pinned_ns: ev.ts_ns.saturating_sub(s.first_ebusy_ns),
            failed_attempts: s.failed,
            caller: Self::caller(ev),
            lazy,
            still_pinned_by: still,
            culprits_total: s.culprits.len(),
            culprits_released: s.released,
            unlisted_released: s.unlisted_released,
        }));
        true
    }

    // ----- files -----

    /// Ends a file generation and reports it to the stories listing it and, if it was the
    /// last file of a detached mount, that the mount is unpinned.
    fn end_file(&mut self, key: FileKey, release: Release, out: &mut Vec<Notice>) {
        let Some(f) = self.files.get(key) else { return };
        if !f.alive() {
            return;
        }
        let mnt = f.mnt_id;
        let id = Self::file_id(f);
        let last_drop = f.last_drop.as_ref().map(|d| self.drop_desc(d));
        let seen = release.seen;
        let ts = release.actor.ts_ns;
        let chain = release.chain.clone();
        self.files.release(key, release);
        let keys: Vec<StoryKey> = self
            .stories
            .iter()
            .filter(|(_, s)| s.culprits.contains(&key))
            .map(|(k, _)| k.clone())
            .collect();
        for sk in keys {
            let files = &self.files;
            let Some(s) = self.stories.get_mut(&sk) else {
                continue;
            };
            s.released += 1;
            let alive = s
                .culprits
                .iter()
                .filter(|k| files.get(**k).is_some_and(FileObj::alive))
                .count();
            out.push(Notice::CulpritReleased(CulpritReleased {
                story: s.story_ref(),
                file: id.clone(),
                listed: true,
                seen,
                ts_ns: ts,
                chain: chain.clone(),
                last_drop: last_drop.clone(),
                culprits_alive: alive,
                culprits_total: s.culprits.len(),
            }));
        }
        self.check_unpinned(mnt, ts, &id, &chain, out);
    }

    fn check_unpinned(
        &mut self,
        mnt: i32,
        ts: u64,
        last: &FileId,
        chain: &[ChainLink],
        out: &mut Vec<Notice>,
    ) {
        let Some(m) = self.mounts.get(mnt) else {
            return;
        };
        if !m.detached() || self.files.alive_count_on(mnt) > 0 {
            return;
        }
        let mount = MountDesc::of(m);
        let detached_ns = m.left_table_ns.unwrap_or(ts);
        self.mounts.retire(mnt, ts);
        out.push(Notice::DetachedMountUnpinned(DetachedMountUnpinned {
            mount,
            detached_ns,
            ts_ns: ts,
            last_file: last.clone(),
            chain: chain.to_vec(),
        }));
    }

    /// A file's end inferred, not seen (its pointer or mount id was reused).
    fn lose_file(&mut self, key: FileKey, ev: &Event, out: &mut Vec<Notice>) {
        self.c.files_lost += 1;
        let actor = self.actor(ev);
        self.end_file(
            key,
            Release {
                actor,
                chain: Vec::new(),
                seen: false,
            },
            out,
        );
    }

    fn on_file_ref(&mut self, ev: &Event, r: &FileRefArgs, out: &mut Vec<Notice>) {
        if r.file == 0 {
            self.c.nonsense += 1;
            return;
        }
        let cap = self.cfg.caps.max_tasks;
        let (tgid, pid) = match r.holder {
            HolderRef::Fd { tgid, .. } if tgid != ev.tgid => (tgid, tgid),
            HolderRef::UringFixed { ctx: 0 } | HolderRef::UringReq { ctx: 0, .. } => {
                self.c.nonsense += 1;
                return;
            }
            _ => (ev.tgid, ev.pid),
        };
        let existing = self.files.alive(r.file).and_then(|k| self.files.get(k));
        if r.how == RefHow::Rescan {
            // The scan confirms what was traced, or finds a reference taken unseen; it
            // never rewrites a holder's history.
            if existing.is_some_and(|f| f.holders.contains_key(&r.holder)) {
                return;
            }
            self.c.rescan_found += 1;
        }
        if r.how == RefHow::VmaScan
            && let Some(k) = existing
                .filter(|f| f.holders.contains_key(&r.holder))
                .map(|f| f.key)
        {
            // Found again: still mapped (a later scan that misses it says it went).
            self.files.refresh_holder(k, &r.holder, ev.ts_ns);
            return;
        }
        // A scan reads fd tables as they are: an exiting process still has its own, so a
        // scan finding it says nothing about a new process behind the pid.
        let task = if matches!(r.how, RefHow::Rescan | RefHow::Snapshot | RefHow::VmaScan) {
            self.tasks.observe(tgid, pid, &ev.comm, ev.ts_ns, cap)
        } else {
            self.tasks.observe_live(tgid, pid, &ev.comm, ev.ts_ns, cap)
        };
        let actor = self.actor(ev);
        let key = match existing {
            Some(f)
                if (r.mnt_id != -1 && f.mnt_id != -1 && r.mnt_id != f.mnt_id)
                    || (r.ino != 0 && f.ino != 0 && r.ino != f.ino) =>
            {
                // Another file at the same pointer: the old one was freed unseen.
                let old = f.key;
                self.lose_file(old, ev, out);
                None
            }
            Some(f) => Some(f.key),
            None => None,
        };
        let key = match key {
            Some(k) => {
                self.files.update_name(k, r.name_kind, r.name);
                if r.mnt_id != -1 {
                    self.files.set_mount(k, r.mnt_id);
                }
                k
            }
            None => self.files.create(
                r.file,
                r.mnt_id,
                r.dev,
                r.ino,
                r.name_kind,
                r.name,
                r.how,
                actor.clone(),
            ),
        };
        if r.how == RefHow::Snapshot {
            self.c.snapshot_files += 1;
        }
        // An fd slot or a request holds one file: a previous file there was dropped unseen.
        if matches!(
            r.holder,
            HolderRef::Fd { .. } | HolderRef::UringReq { .. } | HolderRef::Mmap { .. }
        ) {
            for other in self.files.holding(&r.holder) {
                if other != key {
                    self.c.slot_reused += 1;
                    self.files
                        .remove_holder(other, &r.holder, DropReason::SlotReused, &actor);
                }
            }
        }
        if let HolderRef::UringFixed { ctx } | HolderRef::UringReq { ctx, .. } = r.holder {
            self.rings.ensure(ctx, &actor, Some(task));
        }
        self.files.add_holder(
            key,
            r.holder,
            HolderInfo {
                since_ns: ev.ts_ns,
                seen_ns: ev.ts_ns,
                how: r.how,
                pid: ev.pid,
                tgid: ev.tgid,
                comm: ev.comm.clone(),
                task: Some(task),
            },
        );
    }

    fn drop_holder(&mut self, key: FileKey, holder: &HolderRef, reason: DropReason, actor: &Actor) {
        if self.files.remove_holder(key, holder, reason, actor) == Removal::NotHeld {
            self.c.unref_holder_not_held += 1;
            self.files.note_unseen_ref(key);
        }
    }

    fn on_file_unref(&mut self, ev: &Event, file: u64, holder: HolderRef, how: RefHow) {
        let actor = self.actor(ev);
        let reason = match how {
            RefHow::Close => DropReason::Close,
            RefHow::UringReqDone => DropReason::RequestDone,
            RefHow::UringUnregister => DropReason::Unregistered,
            h => DropReason::Unref { how: h },
        };
        if file != 0 {
            match self.files.alive(file) {
                Some(k) => self.drop_holder(k, &holder, reason, &actor),
                None => self.c.unknown_unrefs += 1,
            }
            return;
        }
        let keys = self.files.holding(&holder);
        if keys.is_empty() {
            self.c.unref_holder_not_found += 1;
        }
        for k in keys {
            self.drop_holder(k, &holder, reason, &actor);
        }
    }

    fn on_file_free(
        &mut self,
        ev: &Event,
        file: u64,
        mnt_id: i32,
        ino: u64,
        out: &mut Vec<Notice>,
    ) {
        if file == 0 {
            self.c.nonsense += 1;
            return;
        }
        let actor = self.actor(ev);
        let Some(key) = self.files.alive(file) else {
            self.unknown_free(&actor, file, mnt_id, ino, out);
            return;
        };
        if mnt_id != -1 {
            self.files.set_mount(key, mnt_id);
        }
        let chain = {
            let f = self.files.get(key);
            let putter = f.and_then(|f| {
                f.last_put
                    .as_ref()
                    .map(|p| &p.actor)
                    .or(f.last_drop.as_ref().map(|d| &d.actor))
            });
            self.build_chain(&actor, putter)
        };
        // A mapping still held at the free went with it (munmap, exec: no hook sees them),
        // its last reference put by the freeing task.
        let mapped: Vec<HolderRef> = self
            .files
            .get(key)
            .map(|f| {
                f.holders
                    .keys()
                    .filter(|h| matches!(h, HolderRef::Mmap { .. }))
                    .copied()
                    .collect()
            })
            .unwrap_or_default();
        for h in mapped {
            self.files
                .remove_holder(key, &h, DropReason::GoneAtLastPut, &actor);
        }
        self.locks_on_file_free(file, &actor, &chain, out);
        self.space_on_file_free(file, &actor, &chain, out);
        self.end_file(
            key,
            Release {
                actor,
                chain,
                seen: true,
            },
            out,
        );
    }

    fn unknown_free(
        &mut self,
        actor: &Actor,
        file: u64,
        mnt_id: i32,
        ino: u64,
        out: &mut Vec<Notice>,
    ) {
        self.c.unknown_frees += 1;
        *self.c.unknown_frees_by_mount.entry(mnt_id).or_default() += 1;
        let keys: Vec<StoryKey> = self
            .stories
            .iter()
            .filter(|(_, s)| s.mount_ids.contains(&mnt_id))
            .map(|(k, _)| k.clone())
            .collect();
        if keys.is_empty() {
            return;
        }
        let chain = self.build_chain(actor, None);
        let id = FileId {
            file,
            generation: 0,
            mnt_id,
            ino,
            name_kind: NameKind::None,
            name: String::new(),
            path: None,
        };
        for sk in keys {
            let files = &self.files;
            let Some(s) = self.stories.get_mut(&sk) else {
                continue;
            };
            s.unlisted_released += 1;
            let alive = s
                .culprits
                .iter()
                .filter(|k| files.get(**k).is_some_and(FileObj::alive))
                .count();
            out.push(Notice::CulpritReleased(CulpritReleased {
                story: s.story_ref(),
                file: id.clone(),
                listed: false,
                seen: true,
                ts_ns: actor.ts_ns,
                chain: chain.clone(),
                last_drop: None,
                culprits_alive: alive,
                culprits_total: s.culprits.len(),
            }));
        }
    }

    // ----- tasks and rings -----

    fn on_task_exit(
        &mut self,
        ev: &Event,
        exit_code: i32,
        group_dead: bool,
        fs: (i32, i32),
        out: &mut Vec<Notice>,
    ) {
        let group_dead = group_dead || (self.cfg.exit_group_dead_unknown && ev.pid == ev.tgid);
        // A thread killed while it waited for a lock never returns from its call.
        self.locks.waits.remove(&ev.pid);
        let serial = self
            .tasks
            .exit(ev.tgid, ev.pid, &ev.comm, exit_code, group_dead, ev.ts_ns);
        // Its cwd and root, held until exit_fs() (the SIGCHLD of exit_notify at the latest).
        if let Some(serial) = serial {
            for (kind, m) in [(PinKind::Cwd, fs.0), (PinKind::Root, fs.1)] {
                if m >= 0 {
                    self.pins.at_exit(serial, ev.tgid, kind, m, ev.ts_ns);
                    self.pin_found_late(serial, ev.tgid, kind, m, ev.ts_ns, out);
                }
            }
        }
        if !group_dead || self.cfg.exit_resources_seen {
            // With the fd table's free seen, its fds go when it goes (`exit_files()`, later
            // in `do_exit()`; an exit can wait long before it, e.g. in `exit_aio`).
            return;
        }
        // exit_files: the kernel closes the whole fd table; no close syscalls are seen.
        let actor = self.actor(ev);
        self.drop_exit_holders(ev.tgid, &actor);
    }

    /// What a process's exit lets go of: its mappings (`exit_mm()`) and then its fds
    /// (`exit_files()`).
    fn drop_exit_holders(&mut self, tgid: u32, actor: &Actor) {
        for (h, k) in self.files.mmap_holders_of(tgid) {
            self.files.remove_holder(k, &h, DropReason::ExitMm, actor);
        }
        for (h, k) in self.files.fd_holders_of(tgid) {
            self.files
                .remove_holder(k, &h, DropReason::ExitFiles, actor);
        }
    }

    /// Loop devices and swap files backed by files on `mounts`, read now: they replace
    /// what an earlier scan read of those mounts.
    fn on_backing_scan(&mut self, ev: &Event, mounts: &[i32], files: &[BackingFile]) {
        for m in mounts {
            self.backing.remove(m);
        }
        for f in files.iter().filter(|f| mounts.contains(&f.mnt_id)) {
            let e = self
                .backing
                .entry(f.mnt_id)
                .or_insert_with(|| (ev.ts_ns, Vec::new()));
            e.1.push(f.clone());
        }
        // Bounded like the reference counts: the mounts scanned longest ago go first.
        while self.backing.len() > self.cfg.caps.max_mount_history {
            let Some(oldest) = self
                .backing
                .iter()
                .min_by_key(|(_, v)| v.0)
                .map(|(k, _)| *k)
            else {
                break;
            };
            self.backing.remove(&oldest);
        }
    }

    /// The loop device or swap file a file backs, if the latest scan of its mount saw one
    /// (matched by inode).
    fn backing_of(&self, f: &FileObj) -> Option<&BackingFile> {
        if f.ino == 0 || !f.alive() {
            return None;
        }
        self.backing
            .get(&f.mnt_id)?
            .1
            .iter()
            .find(|b| b.ino == f.ino)
    }

    /// Backing files on `mnt_id` that are not among the alive files the engine knows (those
    /// count as files): each is one more reference on the mount.
    fn backing_unlisted_on(&self, mnt_id: i32) -> usize {
        let Some((_, v)) = self.backing.get(&mnt_id) else {
            return 0;
        };
        let alive = self.files.alive_on_mount(mnt_id);
        v.iter()
            .filter(|b| b.ino == 0 || !alive.iter().any(|f| f.ino == b.ino))
            .count()
    }

    /// The processes with AIO requests not reaped that have to do with `mnt_id`: a file of
    /// their submissions is on it, or they hold it (cwd/root, an fd on a culprit).
    fn aio_descs(
        &self,
        mnt_id: i32,
        task_pins: &[TaskPinDesc],
        culprits: &[FileReport],
    ) -> Vec<AioDesc> {
        let holds = |tgid: u32| {
            task_pins.iter().any(|p| p.task.pid == tgid)
                || culprits.iter().any(|c| {
                    c.holders
                        .iter()
                        .any(|h| matches!(h, HolderDesc::Fd { task, .. } if task.pid == tgid))
                })
        };
        // A dying holder in exit_aio() with nothing in flight is named too: what it waits
        // for then is its contexts' teardown, not IO.
        let in_exit_aio = |tgid: u32| {
            // Anywhere in exit_aio() (waiting, or still killing its contexts).
            self.tasks.current(tgid).is_some_and(|t| {
                t.exiting()
                    && t.scan
                        .as_ref()
                        .is_some_and(|s| s.stack.iter().any(|f| f.starts_with("exit_aio")))
            })
        };
        self.aio
            .1
            .values()
            .filter(|t| {
                (t.unreaped() > 0 && t.files.iter().any(|f| f.mnt_id == mnt_id))
                    || (holds(t.tgid) && (t.unreaped() > 0 || in_exit_aio(t.tgid)))
            })
            .map(|t| AioDesc {
                task: self.task_desc(None, t.tgid, ""),
                ctx: t.ctx,
                submitted: t.submitted,
                reaped: t.reaped,
                last_submit_ns: t.last_submit_ns,
                files_on_mount: t
                    .files
                    .iter()
                    .filter(|f| f.mnt_id == mnt_id)
                    .map(|f| {
                        self.files
                            .alive(f.file)
                            .and_then(|k| self.files.get(k))
                            .map(|o| o.path().unwrap_or_else(|| o.name.clone()))
                            .unwrap_or_else(|| crate::text::hex(f.file))
                    })
                    .collect(),
                found_ns: self.aio.0,
            })
            .collect()
    }

    fn backing_descs(&self, mnt_id: i32) -> Vec<BackingDesc> {
        let Some((ts, v)) = self.backing.get(&mnt_id) else {
            return Vec::new();
        };
        let alive = self.files.alive_on_mount(mnt_id);
        v.iter()
            .map(|b| BackingDesc {
                kind: b.kind,
                device: b.device.clone(),
                path: b.path.clone(),
                ino: b.ino,
                found_ns: *ts,
                file_listed: b.ino != 0 && alive.iter().any(|f| f.ino == b.ino),
            })
            .collect()
    }

    /// A VMA scan of `mounts` that started at `started_ns` ran to its end: a mapping on
    /// them it did not find again was unmapped in between (munmap, exec, the mm's end).
    fn on_mmap_scan_done(&mut self, ev: &Event, started_ns: u64, mounts: &[i32]) {
        let actor = self.actor(ev);
        let mut gone = Vec::new();
        for &m in mounts {
            for f in self.files.alive_on_mount(m) {
                for (h, i) in &f.holders {
                    if matches!(h, HolderRef::Mmap { .. }) && i.seen_ns < started_ns {
                        gone.push((f.key, *h));
                    }
                }
            }
        }
        for (k, h) in gone {
            self.files
                .remove_holder(k, &h, DropReason::Unmapped, &actor);
        }
    }

    /// An fd table or fs_struct freed: for an exited process, the end of what its exit
    /// still held (`exit_files()`: every fd put; `exit_fs()`: cwd and root let go).
    fn on_task_res_freed(&mut self, ev: &Event, what: TaskRes, out: &mut Vec<Notice>) {
        if what == TaskRes::Files {
            // exit_files() comes after exit_aio() (in exit_mm): its requests are done.
            self.aio.1.remove(&ev.tgid);
        }
        let Some(serial) = self.tasks.res_freed(ev.tgid, what, ev.ts_ns) else {
            return;
        };
        match what {
            TaskRes::Files if self.cfg.exit_resources_seen => {
                let actor = self.actor(ev);
                self.drop_exit_holders(ev.tgid, &actor);
            }
            TaskRes::Files => {}
            TaskRes::Fs => {
                for p in self.pins.release_task(serial) {
                    self.pin_released(&p, ev.ts_ns, true, out);
                }
            }
        }
    }

    fn on_task_seen(&mut self, ev: &Event, t: &ScannedTask, out: &mut Vec<Notice>) {
        let info = TaskScanInfo {
            ts_ns: ev.ts_ns,
            pid: ev.pid,
            exiting: t.exiting,
            zombie: t.zombie,
            state: t.state,
            has_files: t.has_files,
            has_fs: t.has_fs,
            has_mm: t.has_mm,
            stack: t.stack.clone(),
        };
        let cap = self.cfg.caps.max_tasks;
        let serial = self.tasks.scanned(ev.tgid, ev.pid, &ev.comm, info, cap);
        if t.zombie || !t.has_fs {
            return;
        }
        for (kind, m) in [(PinKind::Cwd, t.cwd_mnt), (PinKind::Root, t.root_mnt)] {
            if m < 0 {
                continue;
            }
            if let Some(old) = self.pins.seen(serial, ev.tgid, kind, m, ev.ts_ns) {
                self.pin_released(&old, ev.ts_ns, false, out);
            }
        }
    }

    /// A pin read at an exit tracepoint after a story's EBUSY, on its mount, that its
    /// verdicts did not name: the story hears of it (and of its release, later).
    fn pin_found_late(
        &mut self,
        task: u64,
        tgid: u32,
        kind: PinKind,
        mnt_id: i32,
        ts: u64,
        out: &mut Vec<Notice>,
    ) {
        let desc = self.task_desc(Some(task), tgid, "");
        for s in self.stories.values_mut() {
            if ts < s.first_ebusy_ns || !s.mount_ids.contains(&mnt_id) {
                continue;
            }
            if !s.pins.insert((task, kind)) {
                continue;
            }
            out.push(Notice::PinFoundLate(PinFoundLate {
                story: s.story_ref(),
                task: desc.clone(),
                what: kind,
                ts_ns: ts,
            }));
        }
    }

    /// A pin let go: every story that named it hears of it.
    fn pin_released(&mut self, p: &Pin, ts: u64, seen: bool, out: &mut Vec<Notice>) {
        let key = (p.task, p.kind);
        let task = self.task_desc(Some(p.task), p.tgid, "");
        let files = &self.files;
        for s in self.stories.values_mut() {
            if !s.pins.remove(&key) {
                continue;
            }
            let pins_alive = s.pins.len();
            let culprits_alive = s
                .culprits
                .iter()
                .filter(|k| files.get(**k).is_some_and(FileObj::alive))
                .count();
            out.push(Notice::PinReleased(PinReleased {
                story: s.story_ref(),
                task: task.clone(),
                what: p.kind,
                seen,
                ts_ns: ts,
                pins_alive,
                culprits_alive,
            }));
        }
    }

    /// The processes whose cwd/root is on `mnt_id`, one entry per process.
    fn task_pins_on(&self, mnt_id: i32) -> Vec<TaskPinDesc> {
        let mut out: Vec<TaskPinDesc> = Vec::new();
        for p in self.pins.on_mount(mnt_id) {
            match out.last_mut() {
                Some(d) if self.tasks.get(p.task).is_some_and(|t| t.tgid == d.task.pid) => {
                    d.what.push(p.kind);
                    d.found_ns = d.found_ns.min(p.first_seen_ns);
                }
                _ => out.push(TaskPinDesc {
                    task: self.task_desc(Some(p.task), p.tgid, ""),
                    what: vec![p.kind],
                    found_ns: p.first_seen_ns,
                    from_exit: p.from_exit,
                    gone_ns: p.gone_ns,
                }),
            }
        }
        out
    }

    fn teardown_ring(&mut self, ctx: u64, actor: &Actor, reason: DropReason, seen: bool) {
        for (h, k) in self.files.ring_holders_of(ctx) {
            self.files.remove_holder(k, &h, reason, actor);
        }
        self.rings.retire(ctx, actor.ts_ns, seen);
    }

    fn on_uring_create(&mut self, ev: &Event, ctx: u64, fd: i32, sq: u32, cq: u32, flags: u32) {
        if ctx == 0 {
            self.c.nonsense += 1;
            return;
        }
        let task =
            self.tasks
                .observe_live(ev.tgid, ev.pid, &ev.comm, ev.ts_ns, self.cfg.caps.max_tasks);
        let actor = self.actor(ev);
        if self.rings.get(ctx).is_some() || !self.files.ring_holders_of(ctx).is_empty() {
            // The pointer is back for a new ring: the old one was freed unseen.
            self.teardown_ring(ctx, &actor, DropReason::RingGoneUnseen, false);
        }
        self.rings.create(ctx, &actor, task, fd, sq, cq, flags);
    }

    fn on_uring_register(&mut self, ev: &Event, ctx: u64, ret: i64) {
        if ctx == 0 {
            self.c.nonsense += 1;
            return;
        }
        let actor = self.actor(ev);
        let task = self.tasks.current(ev.tgid).map(|t| t.serial);
        let r = self.rings.ensure(ctx, &actor, task);
        r.register_calls = r.register_calls.saturating_add(1);
        r.last_register_ret = Some(ret);
    }

    fn on_req_done(&mut self, ev: &Event, ctx: u64, req: u64) {
        let holder = HolderRef::UringReq { ctx, req };
        let keys = self.files.holding(&holder);
        if keys.is_empty() {
            return; // requests that took no followed file complete all the time
        }
        let actor = self.actor(ev);
        for k in keys {
            self.files
                .remove_holder(k, &holder, DropReason::RequestDone, &actor);
        }
    }

    // ----- work -----

    fn ring_work_mut(&mut self, ctx: Option<u64>, function: u64) -> Option<&mut RingWork> {
        let exit = self.cfg.is_ring_exit_work(function);
        let fallback = self.cfg.is_ring_fallback_work(function);
        let r = self.rings.get_mut(ctx?)?;
        if exit {
            Some(&mut r.exit_work)
        } else if fallback {
            Some(&mut r.fallback_work)
        } else {
            None
        }
    }

    fn on_work_armed(&mut self, ev: &Event, work: u64, function: u64, delay: u64) {
        if work == 0 {
            self.c.nonsense += 1;
            return;
        }
        let a = self.actor(ev);
        let ctx = self.ring_of_work(work, function);
        if let Some(w) = self.ring_work_mut(ctx, function)
            && w.queued.is_none()
        {
            w.queued = Some(a.clone());
        }
        self.work.arm(work, function, delay, a);
    }

    fn on_work_queued(&mut self, ev: &Event, work: u64, function: u64, cpu: i32) {
        if work == 0 {
            self.c.nonsense += 1;
            return;
        }
        let a = self.actor(ev);
        let mut ctx = self.ring_of_work(work, function);
        if ctx.is_none()
            && self.cfg.is_ring_exit_work(function)
            && self.cfg.ring_exit_work_offset.is_none()
            && a.work.is_none()
        {
            ctx = self.rings.learn_exit_work(work, a.tgid);
        }
        // A delayed work's queueing fires from its timer: the arming context (set by
        // `on_work_armed`) is the one worth keeping.
        let from_timer = self.cfg.is_delayed_work_fn(function);
        if let Some(w) = self.ring_work_mut(ctx, function)
            && (w.queued.is_none() || w.ended_ns.is_some())
            && !from_timer
        {
            w.queued = Some(a.clone());
            w.started = None;
            w.ended_ns = None;
        }
        self.work.queue(work, function, cpu, a);
    }

    /// The context of a work item's own run (the event's header may not carry it yet).
    fn run_actor(&self, ev: &Event, work: u64, function: u64) -> Actor {
        let mut a = self.actor(ev);
        a.work = Some(WorkCtx { work, function });
        a.ring = self.ring_of_work(work, function);
        a.task_exited = false;
        a
    }

    fn on_work_start(&mut self, ev: &Event, work: u64, function: u64) {
        if work == 0 {
            self.c.nonsense += 1;
            return;
        }
        let a = self.run_actor(ev, work, function);
        let s = self.work.start(work, function, a);
        let started = self.work.get(s).and_then(|i| i.started.clone());
        if let Some(w) = self.ring_work_mut(self.ring_of_work(work, function), function) {
            w.started = started;
            w.ended_ns = None;
            w.runs = w.runs.saturating_add(1);
        }
    }

    fn on_work_end(&mut self, ev: &Event, work: u64, function: u64) {
        if work == 0 {
            self.c.nonsense += 1;
            return;
        }
        let s = self.work.end(work, function, ev.ts_ns);
        let ctx = self.ring_of_work(work, function);
        if let Some(w) = self.ring_work_mut(ctx, function) {
            w.ended_ns = Some(ev.ts_ns);
        }
        if let Some(ctx) = ctx
            && self.cfg.is_ring_exit_work(function)
        {
            // io_ring_exit_work ends by freeing the ring: its registered files and requests
            // are put from this kworker, so their final puts go through delayed_fput.
            let mut actor = s
                .and_then(|s| self.work.get(s))
                .and_then(|i| i.started.clone())
                .unwrap_or_else(|| self.run_actor(ev, work, function));
            actor.ts_ns = ev.ts_ns;
            self.teardown_ring(ctx, &actor, DropReason::RingTeardown, true);
        }
    }

    fn enforce_caps(&mut self) {
        let caps = self.cfg.caps.clone();
        self.files.evict_released_to(caps.max_released_files);
        for f in self.files.evict_to(caps.max_files) {
            if self.mounts.get(f.mnt_id).is_some_and(Mount::detached)
                && self.files.alive_count_on(f.mnt_id) == 0
            {
                self.mounts.retire(f.mnt_id, self.now_ns);
            }
        }
        self.work.evict_to(caps.max_work_instances);
        while self.verdicts.len() > caps.max_verdicts {
            self.verdicts.pop_front();
            self.c.evicted_verdicts += 1;
        }
        while self.stories.len() > caps.max_verdicts {
            let oldest = self
                .stories
                .iter()
                .min_by_key(|(_, s)| s.serial)
                .map(|(k, _)| k.clone());
            let Some(k) = oldest else { break };
            self.stories.remove(&k);
            self.c.evicted_stories += 1;
        }
        self.tasks.evict_to(caps.max_tasks);
        self.pins.evict_to(caps.max_tasks);
        self.rings.evict_to(caps.max_rings);
        self.mounts.evict_history_to(caps.max_mount_history);
    }
}

struct MountCallArgs<'a> {
    op: MountCallOp,
    flags: u32,
    ret: i64,
    enter_ns: u64,
    source: &'a str,
    target: &'a str,
    fs_type: &'a str,
}

struct FileRefArgs<'a> {
    file: u64,
    holder: HolderRef,
    how: RefHow,
    mnt_id: i32,
    dev: u32,
    ino: u64,
    name_kind: NameKind,
    name: &'a str,
}
