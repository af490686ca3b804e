//! File references: taken, dropped, deferred, released, and what an exiting task still
//! held.

use super::*;

impl Engine {
    /// An `fput()` (precise tier) of a file the engine follows.
    pub(super) fn on_file_put(
        &mut self,
        ev: &Event,
        file: u64,
        mnt_id: i32,
        held: i64,
        last: bool,
    ) {
        let Some(key) = self.files.alive(file) else {
            return; // pipes, sockets, files opened before attach: not followed
        };
        if mnt_id != -1 {
            self.files.set_mount(key, mnt_id);
        }
        let actor = self.actor(ev);
        if last {
            self.close_own_fds(key, ev.tgid, &actor);
            // The last reference went: holders still on our books let go unseen.
            self.files
                .remove_holders_where(key, |_| true, DropReason::GoneAtLastPut, &actor);
        }
        self.files.note_put(key, &actor, held, last);
    }

    /// The fds of process `tgid` still listed on `key` as its last reference goes (the
    /// release, or the last `fput()`) by a task of that process: closed by it just now.
    /// The kernel side sends no record for a close of a file's only reference (what follows
    /// in the same syscall tells it), and no fd outlives its file's last reference. Not for
    /// a process past its exit: its fds go with its fd table (`exit_files()`).
    fn close_own_fds(&mut self, key: FileKey, tgid: u32, actor: &Actor) {
        if self.tasks.is_exited(tgid) {
            return;
        }
        self.files.remove_holders_where(
            key,
            |h| matches!(h, HolderRef::Fd { tgid: t, .. } if *t == tgid),
            DropReason::Close,
            actor,
        );
    }

    pub(super) fn on_fput_deferred(&mut self, ev: &Event, file: u64, pid: u32, tgid: u32) {
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

    /// Ends a file generation and reports it to the stories listing it and, if it was the
    /// last file of a detached mount, that the mount is unpinned.
    pub(super) fn end_file(&mut self, key: FileKey, release: Release, out: &mut Vec<Notice>) {
        let Some(f) = self.files.get(key) else { return };
        if !f.alive() {
            return;
        }
        let mnt = f.mnt_id;
        let keys: Vec<StoryKey> = self
            .stories
            .iter()
            .filter(|(_, s)| s.culprits.contains(&key))
            .map(|(k, _)| k.clone())
            .collect();
        // Told only where it is heard: by a story listing the file, or as the last file of
        // a detached mount. Most files are neither, and the telling copies names and chains.
        let heard = !keys.is_empty() || self.mounts.get(mnt).is_some_and(|m| m.detached());
        let went = heard.then(|| self.went(f, &release));
        self.files.release(key, release);
        if let Some(went) = went {
            self.culprits_went(&keys, &went, out);
            self.check_unpinned(mnt, went.ts_ns, &went.file, &went.chain, out);
        }
    }

    pub(super) fn check_unpinned(
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
    pub(super) fn lose_file(&mut self, key: FileKey, ev: &Event, out: &mut Vec<Notice>) {
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

    pub(super) fn on_file_ref(&mut self, ev: &Event, r: &FileRef, out: &mut Vec<Notice>) {
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
                self.files.update_name(k, r.name_kind, &r.name);
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
                &r.name,
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

    pub(super) fn drop_holder(
        &mut self,
        key: FileKey,
        holder: &HolderRef,
        reason: DropReason,
        actor: &Actor,
    ) {
        if self.files.remove_holder(key, holder, reason, actor) == Removal::NotHeld {
            self.c.unref_holder_not_held += 1;
            self.files.note_unseen_ref(key);
        }
    }

    pub(super) fn on_file_unref(&mut self, ev: &Event, file: u64, holder: HolderRef, how: RefHow) {
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

    pub(super) fn on_file_free(
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
        self.close_own_fds(key, ev.tgid, &actor);
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
        self.files.remove_holders_where(
            key,
            |h| matches!(h, HolderRef::Mmap { .. }),
            DropReason::GoneAtLastPut,
            &actor,
        );
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

    /// How a listed file's `release` is told to the stories it pinned.
    pub(super) fn went(&self, f: &FileObj, release: &Release) -> Went {
        Went {
            file: Self::file_id(f),
            listed: true,
            seen: release.seen,
            ts_ns: release.actor.ts_ns,
            chain: release.chain.clone(),
            last_drop: f.last_drop.as_ref().map(|d| self.drop_desc(d)),
        }
    }

    /// A file went that pinned the stories `keys`' mounts: one of their culprits
    /// (`listed`), or one on the mount they did not list (its free was all that was seen).
    pub(super) fn culprits_went(&mut self, keys: &[StoryKey], w: &Went, out: &mut Vec<Notice>) {
        for sk in keys {
            let files = &self.files;
            let Some(s) = self.stories.get_mut(sk) else {
                continue;
            };
            if w.listed {
                s.released += 1;
            } else {
                s.unlisted_released += 1;
            }
            let alive = s
                .culprits
                .iter()
                .filter(|k| files.get(**k).is_some_and(FileObj::alive))
                .count();
            out.push(Notice::CulpritReleased(CulpritReleased {
                story: s.story_ref(),
                file: w.file.clone(),
                listed: w.listed,
                seen: w.seen,
                ts_ns: w.ts_ns,
                chain: w.chain.clone(),
                last_drop: w.last_drop.clone(),
                culprits_alive: alive,
                culprits_total: s.culprits.len(),
            }));
        }
    }

    pub(super) fn unknown_free(
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
        let went = Went {
            file: id,
            listed: false,
            seen: true,
            ts_ns: actor.ts_ns,
            chain,
            last_drop: None,
        };
        self.culprits_went(&keys, &went, out);
    }

    pub(super) fn on_task_exit(
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
    pub(super) fn drop_exit_holders(&mut self, tgid: u32, actor: &Actor) {
        for (h, k) in self.files.mmap_holders_of(tgid) {
            self.files.remove_holder(k, &h, DropReason::ExitMm, actor);
        }
        for (h, k) in self.files.fd_holders_of(tgid) {
            self.files
                .remove_holder(k, &h, DropReason::ExitFiles, actor);
        }
    }
}

/// A file that went, as every story it pinned is told.
pub(super) struct Went {
    pub(super) file: FileId,
    pub(super) listed: bool,
    pub(super) seen: bool,
    pub(super) ts_ns: u64,
    pub(super) chain: Vec<ChainLink>,
    pub(super) last_drop: Option<DropDesc>,
}
