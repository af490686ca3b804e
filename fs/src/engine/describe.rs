//! Descriptions of what the engine knows, for notices and the TUI: actors, tasks, rings,
//! work progress, files with their holders, and the chains of deferred work behind a release.

use super::*;

impl Engine {
    pub(super) fn ring_of_work(&self, work: u64, function: u64) -> Option<u64> {
        self.cfg.ring_of_work(work, function).or_else(|| {
            self.cfg
                .is_ring_exit_work(function)
                .then(|| self.rings.learned(work))
                .flatten()
        })
    }

    pub(super) fn actor(&self, ev: &Event) -> Actor {
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

    pub(super) fn name(&self, f: u64) -> String {
        self.cfg.symbol(f)
    }

    pub(super) fn link(&self, a: &Actor, role: LinkRole) -> ChainLink {
        ChainLink::from_actor(a, role, |f| self.name(f))
    }

    pub(super) fn asker_of(&self, serial: Option<u64>) -> Option<(&Actor, LinkRole)> {
        let i = self.work.get(serial?)?;
        i.asker(self.cfg.is_delayed_work_fn(i.function))
    }

    /// The deferral chain of a release in context `rel`: the freeing context, then who
    /// handed it the file or asked for its run, and so on back to a plain task.
    /// `putter` is who dropped the last reference (the precise `fput`), else the last holder.
    pub(super) fn build_chain(&self, rel: &Actor, putter: Option<&Actor>) -> Vec<ChainLink> {
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

    pub(super) fn task_desc(&self, serial: Option<u64>, tgid: u32, comm: &str) -> TaskDesc {
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
                comm: comm.into(),
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

    pub(super) fn teardown_desc(&self, w: &RingWork) -> TeardownDesc {
        TeardownDesc {
            queued: w.queued.as_ref().map(|a| self.link(a, LinkRole::QueuedBy)),
            started_ns: w.started.as_ref().map(|a| a.ts_ns),
            started_comm: w.started.as_ref().map(|a| a.comm.clone()),
            ended_ns: w.ended_ns,
        }
    }

    pub(super) fn ring_desc(&self, ctx: u64) -> RingDesc {
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

    pub(super) fn drop_desc(&self, d: &HolderDrop) -> DropDesc {
        DropDesc {
            holder: d.holder,
            reason: d.reason,
            ts_ns: d.actor.ts_ns,
            by: self.link(&d.actor, LinkRole::PutBy),
        }
    }

    pub(super) fn progress(&self, i: &WorkInstance) -> WorkProgress {
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

    pub(super) fn file_id(f: &FileObj) -> FileId {
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
}
