//! Mount calls and the EBUSY stories: a failed umount (or mount) opens a story and gets a
//! verdict naming what pinned the mount; the umount that works, or the mount going, closes it.

use super::refs::Went;
use super::*;
use crate::verdict::ReleasedDuring;
use crate::work::chain_text;

impl Engine {
    pub(super) fn on_mount_table(
        &mut self,
        ev: &Event,
        table: &[MountInfo],
        out: &mut Vec<Notice>,
    ) {
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
    pub(super) fn lose_files_on(&mut self, id: i32, ev: &Event, out: &mut Vec<Notice>) {
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

    pub(super) fn on_mount_call(&mut self, ev: &Event, call: &MountCall, out: &mut Vec<Notice>) {
        match call.op {
            MountCallOp::Umount => {
                // path_umount's return came first, from inside this very syscall.
                if let Some(ts) = self.precise_umounts.remove(&ev.pid)
                    && ts >= call.enter_ns
                    && ts <= ev.ts_ns
                {
                    self.scan_missed = None;
                    return;
                }
                let mid = self.mounts.mount_for_path(&call.target).map(|m| m.id);
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
    pub(super) fn on_umount_ret(
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
        let call = MountCall {
            op: MountCallOp::Umount,
            flags,
            ret,
            enter_ns: if enter_ns == 0 { ev.ts_ns } else { enter_ns },
            source: String::new(),
            target,
            fs_type: String::new(),
        };
        self.umount_result(ev, &call, Some(mnt_id), out);
    }

    /// `cleanup_mnt()`: the mount's last reference is gone. When releases are hooked
    /// precisely, files still believed alive on it were freed unseen.
    pub(super) fn on_mount_cleanup(&mut self, ev: &Event, mnt_id: i32, out: &mut Vec<Notice>) {
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

    pub(super) fn umount_result(
        &mut self,
        ev: &Event,
        call: &MountCall,
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
                    self.scan_missed = None;
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
                        Some(StoryKey::Target(normalize_path(&call.target))),
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

    pub(super) fn unattributed_for(
        &self,
        mount_ids: &[i32],
        reports: &[&FileReport],
    ) -> Unattributed {
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
    pub(super) fn story_ebusy(
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

    pub(super) fn caller(ev: &Event) -> Caller {
        Caller {
            pid: ev.pid,
            tgid: ev.tgid,
            comm: ev.comm.clone(),
        }
    }

    pub(super) fn umount_busy(
        &mut self,
        ev: &Event,
        call: &MountCall,
        mid: Option<i32>,
        out: &mut Vec<Notice>,
    ) {
        let mount = mid.and_then(|id| self.mounts.get(id)).map(MountDesc::of);
        // The stream hands a missed scan on right before its failure's record.
        let target = normalize_path(&call.target);
        let scan_missed = self
            .scan_missed
            .take()
            .filter(|(id, t, _)| Some(*id) == mid || *t == target)
            .map(|(_, _, why)| why);
        let files = mid
            .map(|id| self.files.alive_on_mount(id))
            .unwrap_or_default();
        let mut keys: Vec<FileKey> = files.iter().map(|f| f.key).collect();
        let culprits: Vec<FileReport> = files.into_iter().map(|f| self.describe(f)).collect();
        // A release between the umount's entry and its failure's record: the check may have
        // seen that file (the last pin often goes just then, when a killed task's exit
        // closes its files while the umount runs).
        let during: Vec<(FileKey, ReleasedDuring, Went)> = mid
            .map(|id| self.files.released_on_since(id, call.enter_ns))
            .unwrap_or_default()
            .into_iter()
            .filter_map(|f| {
                // An inferred end (the pointer came back) has no time of its own.
                let r = f.release.as_ref().filter(|r| r.seen)?;
                let went = self.went(f, r);
                let desc = ReleasedDuring {
                    file: self.describe(f),
                    released_ns: r.actor.ts_ns,
                    chain: chain_text(&r.chain),
                };
                Some((f.key, desc, went))
            })
            .collect();
        keys.extend(during.iter().map(|(k, _, _)| *k));
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
            None => StoryKey::Target(normalize_path(&call.target)),
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
        // Culprits an earlier verdict of the story listed were told of at their release.
        let told: BTreeSet<FileKey> = self
            .stories
            .get(&key)
            .map(|s| s.culprits.clone())
            .unwrap_or_default();
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
            && during.is_empty()
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
        let (during_keys, during): (Vec<(FileKey, Went)>, Vec<ReleasedDuring>) =
            during.into_iter().map(|(k, d, w)| ((k, w), d)).unzip();
        let mut v = Verdict {
            mount,
            culprits,
            released_during: during,
            child_mounts,
            task_pins,
            backing,
            aio,
            repeat,
            refs,
            ..v
        };
        if let Some(why) = scan_missed {
            v.evidence_limits.push(format!(
                "no scan in time after this EBUSY ({why}): holders only a scan finds (an exiting task's cwd/root, fds no hook saw taken, mappings) are not known, and the mount's reference count was not read"
            ));
            v.scan_missed = Some(why);
        }
        self.push_verdict(v, out);
        // Their release is seen (it came first): the story hears of it right after.
        for (k, went) in during_keys {
            if !told.contains(&k) {
                self.culprits_went(std::slice::from_ref(&key), &went, out);
            }
        }
    }

    pub(super) fn mount_busy(&mut self, ev: &Event, call: &MountCall, out: &mut Vec<Notice>) {
        let mut pinned = Vec::new();
        let mut keys = Vec::new();
        let mut ids = Vec::new();
        for m in self.mounts.by_source(&call.source) {
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
        let dev_path = normalize_path(&call.source);
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
    pub(super) fn verdict(
        &mut self,
        ev: &Event,
        call: &MountCall,
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
            released_during: Vec::new(),
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
            scan_missed: None,
            evidence_limits: self.evidence_limits(),
        }
    }

    pub(super) fn push_verdict(&mut self, v: Verdict, out: &mut Vec<Notice>) {
        out.push(Notice::Verdict(v.clone()));
        self.verdicts.push_back(v);
    }

    pub(super) fn close_story(
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
}
