//! Answers about the current state (the TUI's panes, the run's figures) and the checks of
//! the tables' invariants.

use super::*;

impl Engine {
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

    /// References still on their way out: alive files whose last drop is deferred
    /// (`PendingRelease`), files held by a ring or an in-flight request of a task that
    /// exited, and followed work queued or running. `tracer run` keeps recording after its
    /// command exits while any is left (up to `--linger`).
    pub fn releases_pending(&self) -> usize {
        let dead_ring = |ctx: u64| {
            self.rings
                .get(ctx)
                .and_then(|r| r.owner_tgid)
                .is_some_and(|t| self.tasks.is_exited(t))
        };
        let files = self
            .files
            .alive_iter()
            .filter(|f| match f.state() {
                FileState::PendingRelease => true,
                FileState::Held => f.holders.keys().any(|h| match h {
                    HolderRef::UringFixed { ctx } | HolderRef::UringReq { ctx, .. } => {
                        dead_ring(*ctx)
                    }
                    HolderRef::Fd { .. } | HolderRef::Mmap { .. } => false,
                }),
                FileState::Unattributed | FileState::Released => false,
            })
            .count();
        files
            + self
                .work
                .iter()
                .filter(|w| w.waiting() || w.running())
                .count()
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
}
