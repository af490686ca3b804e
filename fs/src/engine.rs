//! The engine: applies events in order to the tables (mounts, files, work, rings, tasks),
//! emits [`Notice`]s (verdicts on EBUSY and what follows them), and answers the TUI's
//! queries. Deterministic, no I/O; nonsense or out-of-order events are counted, never panics.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::actor::Actor;
use crate::config::EngineConfig;
use crate::event::{AioTask, BackingFile, ScannedTask, TaskRes};
use crate::event::{
    Event, FileRef, HolderRef, MountCall, MountCallOp, MountInfo, NameKind, Payload, RefHow,
    WorkCtx, WorkFnKind,
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

mod describe;
mod holders;
mod locks;
mod queries;
mod refs;
mod space;
mod stories;
mod work;

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
    /// (mount, process) pairs the running task scan found pinning the mount with a thread
    /// inside a syscall: counted into the mount's `RefCount` at the scan's end.
    in_syscall: BTreeSet<(i32, u32)>,
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
    /// The scans after the failure whose record comes next could not run: (mount id or
    /// -1, target, why).
    scan_missed: Option<(i32, String, String)>,
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
            in_syscall: BTreeSet::new(),
            backing: BTreeMap::new(),
            aio: (0, BTreeMap::new()),
            verdicts: VecDeque::new(),
            stories: BTreeMap::new(),
            locks: Default::default(),
            space: Default::default(),
            c: Counters::default(),
            extra_limits: Vec::new(),
            precise_umounts: BTreeMap::new(),
            scan_missed: None,
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
            Payload::MountCall(call) => self.on_mount_call(ev, call, &mut out),
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
            Payload::FileRef(r) => self.on_file_ref(ev, r, &mut out),
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
                    in_syscall: self
                        .in_syscall
                        .range((*mnt_id, 0)..=(*mnt_id, u32::MAX))
                        .count(),
                };
                // The end of a scan: the next one finds its own.
                self.in_syscall.clear();
                self.mount_refs.insert(*mnt_id, r);
            }
            Payload::BackingScan { mounts, files } => self.on_backing_scan(ev, mounts, files),
            Payload::ScanMissed {
                mnt_id,
                target,
                why,
            } => self.scan_missed = Some((*mnt_id, normalize_path(target), why.clone())),
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

    // ----- descriptions -----

    // ----- queries -----

    // ----- mounts and verdicts -----

    // ----- files -----

    // ----- tasks and rings -----

    // ----- work -----

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
