//! Holders found by the scans after a failed umount: loop and swap backing files, Linux AIO,
//! mappings, and tasks whose cwd or root pins a mount.

use super::*;

impl Engine {
    /// Loop devices and swap files backed by files on `mounts`, read now: they replace
    /// what an earlier scan read of those mounts.
    pub(super) fn on_backing_scan(&mut self, ev: &Event, mounts: &[i32], files: &[BackingFile]) {
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
    pub(super) fn backing_of(&self, f: &FileObj) -> Option<&BackingFile> {
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
    pub(super) fn backing_unlisted_on(&self, mnt_id: i32) -> usize {
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
    pub(super) fn aio_descs(
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

    pub(super) fn backing_descs(&self, mnt_id: i32) -> Vec<BackingDesc> {
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
    pub(super) fn on_mmap_scan_done(&mut self, ev: &Event, started_ns: u64, mounts: &[i32]) {
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
    pub(super) fn on_task_res_freed(&mut self, ev: &Event, what: TaskRes, out: &mut Vec<Notice>) {
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

    pub(super) fn on_task_seen(&mut self, ev: &Event, t: &ScannedTask, out: &mut Vec<Notice>) {
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
        let in_syscall = !t.exiting && info.syscall().is_some();
        let cap = self.cfg.caps.max_tasks;
        let serial = self.tasks.scanned(ev.tgid, ev.pid, &ev.comm, info, cap);
        if t.zombie || !t.has_fs {
            return;
        }
        for (kind, m) in [(PinKind::Cwd, t.cwd_mnt), (PinKind::Root, t.root_mnt)] {
            if m < 0 {
                continue;
            }
            if in_syscall && self.in_syscall.len() < cap {
                self.in_syscall.insert((m, ev.tgid));
            }
            if let Some(old) = self.pins.seen(serial, ev.tgid, kind, m, ev.ts_ns) {
                self.pin_released(&old, ev.ts_ns, false, out);
            }
        }
    }

    /// A pin read at an exit tracepoint after a story's EBUSY, on its mount, that its
    /// verdicts did not name: the story hears of it (and of its release, later).
    pub(super) fn pin_found_late(
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
    pub(super) fn pin_released(&mut self, p: &Pin, ts: u64, seen: bool, out: &mut Vec<Notice>) {
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
    pub(super) fn task_pins_on(&self, mnt_id: i32) -> Vec<TaskPinDesc> {
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
}
