//! The engine's side of lock conflicts: turns lock events into [`crate::locks`] stories,
//! names the holding file's holders with the engine's tables, and ends a story at the
//! lock's release (its unlock, or its file's free).

use super::Engine;
use crate::actor::Actor;
use crate::event::{Event, LockHolderRef, LockHook, LockSys};
use crate::files::FileObj;
use crate::locks::{
    LockHolderDesc, LockKind, LockOutcome, LockReleaseHow, LockReleased, LockStillHeld, LockStory,
    LockStoryRef, LockTable, LockVerdict, Waiting, call_words, holder_kinds,
};
use crate::verdict::{Caller, HolderDesc, MountDesc, Notice};
use crate::wire::lock_flags as lf;
use crate::work::{ChainLink, LinkRole};

const EAGAIN: i32 = -11;
const EACCES: i32 = -13;

/// A lock event's fields, as the engine takes them.
pub(super) struct LockEventArgs {
    pub hook: LockHook,
    pub fl: u64,
    pub file: u64,
    pub owner: u64,
    pub ino: u64,
    pub dev: u32,
    pub mnt_id: i32,
    pub flags: u32,
    pub ret: i32,
    pub lock_type: u8,
    pub holder: Option<LockHolderRef>,
}

impl Engine {
    pub(super) fn on_lock_event(&mut self, ev: &Event, l: &LockEventArgs, out: &mut Vec<Notice>) {
        if l.lock_type == lf::F_UNLCK {
            if l.ret == 0 {
                self.on_unlock(ev, l, out);
            }
            return;
        }
        match l.ret {
            lf::DEFERRED => self.on_lock_wait_begins(ev, l),
            EAGAIN | EACCES => self.on_lock_conflict(ev, l, out),
            0 => self.on_lock_taken_after_wait(ev, l, out),
            _ => {}
        }
    }

    /// Without the flock/fcntl syscall hooks, a wait ends when the lock is taken: from the
    /// request's first deferral to then (the time before the first deferral is not seen).
    fn on_lock_taken_after_wait(&mut self, ev: &Event, l: &LockEventArgs, out: &mut Vec<Notice>) {
        let calls_missing = self
            .cfg
            .missing_hooks
            .iter()
            .any(|m| m.starts_with("lock calls"));
        let waited = self.locks.waits.get(&ev.pid).is_some_and(|w| w.fl == l.fl);
        if !calls_missing || !waited {
            return;
        }
        let (since, sys) = match self.locks.waits.get(&ev.pid) {
            Some(w) if w.hook == LockHook::Flock => (w.since_ns, LockSys::Flock),
            Some(w) => (w.since_ns, LockSys::Fcntl),
            None => return,
        };
        self.on_lock_call(ev, (sys, 0, -1), 0, since, out);
    }

    /// A flock/fcntl call that met a conflict returned: a wait past the threshold is a
    /// verdict (a failed non-blocking call already had one, from its conflict).
    pub(super) fn on_lock_call(
        &mut self,
        ev: &Event,
        call: (LockSys, u32, i32),
        ret: i64,
        enter_ns: u64,
        out: &mut Vec<Notice>,
    ) {
        let Some(w) = self.locks.waits.remove(&ev.pid) else {
            return;
        };
        let enter_ns = enter_ns.min(w.since_ns);
        let wait_ns = ev.ts_ns.saturating_sub(enter_ns);
        if wait_ns < self.cfg.lock_wait_ns() {
            self.locks.short_waits += 1;
            return;
        }
        let Some(mut v) = w.verdict.map(|b| *b) else {
            return;
        };
        let (sys, cmd, fd) = call;
        self.locks.next_id += 1;
        v.id = self.locks.next_id;
        v.ts_ns = ev.ts_ns;
        v.caller_fd = v.caller_fd.or((fd >= 0).then_some(fd));
        v.outcome = LockOutcome::Waited {
            wait_ns,
            ret,
            sys,
            cmd,
            fd,
        };
        self.locks.verdicts += 1;
        let story = LockStory {
            id: v.id,
            kind: v.kind,
            holder: w.holder,
            first_ns: enter_ns.min(w.since_ns),
            last_ns: ev.ts_ns,
            conflicts: 1,
            path: v.path.clone(),
            mount: v.mount.clone(),
            holders_said: Vec::new(),
        };
        let key = LockTable::key(w.dev, w.ino, w.holder.as_ref());
        out.push(Notice::LockConflict(v));
        match w.released {
            Some(mut r) => {
                r.story = LockStoryRef::of(&story, w.ino, w.dev);
                out.push(Notice::LockReleased(r));
            }
            // Interrupted, or still held by others: follow it to its release.
            None if w.holder.is_some() => {
                self.locks.stories.insert(key, story);
                self.locks.enforce_cap();
            }
            None => {}
        }
    }

    fn on_lock_wait_begins(&mut self, ev: &Event, l: &LockEventArgs) {
        self.locks.conflicts_seen += 1;
        let kind = LockKind::of(l.hook, l.flags);
        let placeholder = LockOutcome::Waited {
            wait_ns: 0,
            ret: 0,
            sys: LockSys::Flock,
            cmd: 0,
            fd: -1,
        };
        let verdict = self.lock_verdict(ev, l, kind, placeholder);
        self.locks.waits.insert(
            ev.pid,
            Waiting {
                fl: l.fl,
                since_ns: ev.ts_ns,
                hook: l.hook,
                flags: l.flags,
                lock_type: l.lock_type,
                ino: l.ino,
                dev: l.dev,
                mnt_id: l.mnt_id,
                file: l.file,
                holder: l.holder,
                verdict: Some(Box::new(verdict)),
                released: None,
            },
        );
        self.locks.enforce_cap();
    }

    fn on_lock_conflict(&mut self, ev: &Event, l: &LockEventArgs, out: &mut Vec<Notice>) {
        self.locks.conflicts_seen += 1;
        let mut key = LockTable::key(l.dev, l.ino, l.holder.as_ref());
        if l.holder.is_none() {
            // The holder's lock left the list between the conflict and its tracepoint: a
            // retry of the story open on the inode, or of one just released.
            match self.locks.open_on(l.dev, l.ino) {
                Some(k) => key = k,
                None => {
                    if let Some(s) = self.locks.raced_release(l.dev, l.ino, ev.ts_ns) {
                        s.conflicts += 1;
                        let story = LockStoryRef::of(s, l.ino, l.dev);
                        self.locks.retries += 1;
                        out.push(Notice::LockStillHeld(LockStillHeld {
                            story,
                            ts_ns: ev.ts_ns,
                            caller: caller(ev),
                            ret: i64::from(l.ret),
                            holders_now: None,
                            raced_release: true,
                        }));
                        return;
                    }
                }
            }
        }
        let now_kinds = l
            .holder
            .and_then(|h| self.files.alive(h.file))
            .and_then(|k| self.files.get(k))
            .map(|f| holder_kinds(&self.describe(f)));
        if let Some(s) = self.locks.stories.get_mut(&key) {
            s.conflicts += 1;
            s.last_ns = ev.ts_ns;
            self.locks.retries += 1;
            let changed = match now_kinds {
                Some(k) if k != s.holders_said => {
                    s.holders_said = k.clone();
                    Some(k)
                }
                _ => None,
            };
            let story = LockStoryRef::of(s, l.ino, l.dev);
            out.push(Notice::LockStillHeld(LockStillHeld {
                story,
                ts_ns: ev.ts_ns,
                caller: caller(ev),
                ret: i64::from(l.ret),
                holders_now: changed,
                raced_release: false,
            }));
            return;
        }
        let kind = LockKind::of(l.hook, l.flags);
        let mut v = self.lock_verdict(
            ev,
            l,
            kind,
            LockOutcome::Failed {
                ret: i64::from(l.ret),
            },
        );
        self.locks.next_id += 1;
        v.id = self.locks.next_id;
        self.locks.verdicts += 1;
        let story = LockStory {
            id: v.id,
            kind,
            holder: l.holder,
            first_ns: ev.ts_ns,
            last_ns: ev.ts_ns,
            conflicts: 1,
            path: v.path.clone(),
            mount: v.mount.clone(),
            holders_said: now_kinds.unwrap_or_default(),
        };
        out.push(Notice::LockConflict(v));
        // Followed even without a holder: its retries are "still held", any unlock there
        // ends it.
        self.locks.stories.insert(key, story);
        self.locks.enforce_cap();
    }

    fn on_unlock(&mut self, ev: &Event, l: &LockEventArgs, out: &mut Vec<Notice>) {
        let how = match (l.flags & lf::FL_CLOSE != 0, l.owner == l.file) {
            (true, true) => LockReleaseHow::FileClosed,
            (true, false) => LockReleaseHow::OwnerClosed,
            (false, _) => LockReleaseHow::Unlocked,
        };
        let actor = self.actor(ev);
        let chain = match how {
            LockReleaseHow::FileClosed => {
                let putter = self
                    .files
                    .alive(l.file)
                    .and_then(|k| self.files.get(k))
                    .and_then(|f| {
                        f.last_put
                            .as_ref()
                            .map(|p| &p.actor)
                            .or(f.last_drop.as_ref().map(|d| &d.actor))
                    });
                self.build_chain(&actor, putter)
            }
            _ => vec![self.link(&actor, LinkRole::Ran)],
        };
        for key in self.locks.ended_by_unlock(l.dev, l.ino, l.owner, l.file) {
            if let Some(s) = self.locks.stories.remove(&key) {
                out.push(Notice::LockReleased(released(
                    &s, key.ino, key.dev, &actor, how, &chain,
                )));
                self.locks.keep_ended(key, s, ev.ts_ns);
            }
        }
        for tid in self.locks.waits_on(l.dev, l.ino, l.owner, l.file) {
            if let Some(w) = self.locks.waits.get_mut(&tid) {
                let s = LockStory {
                    id: 0,
                    kind: LockKind::of(w.hook, w.flags),
                    holder: w.holder,
                    first_ns: w.since_ns,
                    last_ns: w.since_ns,
                    conflicts: 1,
                    path: None,
                    mount: None,
                    holders_said: Vec::new(),
                };
                w.released = Some(released(&s, w.ino, w.dev, &actor, how, &chain));
            }
        }
    }

    /// A freed file ends the stories of the locks it held (when their unlock was not seen).
    /// Where releases are hooked precisely the "free" is `__fput`'s entry, and the locks
    /// are still held until its `locks_remove_file()`, whose unlock record follows: that
    /// ends them (a conflict in between is still the same story, not a new verdict).
    pub(super) fn locks_on_file_free(
        &mut self,
        file: u64,
        actor: &Actor,
        chain: &[ChainLink],
        out: &mut Vec<Notice>,
    ) {
        if self.cfg.precise_release {
            return;
        }
        for key in self.locks.held_by_file(file) {
            if let Some(s) = self.locks.stories.remove(&key) {
                out.push(Notice::LockReleased(released(
                    &s,
                    key.ino,
                    key.dev,
                    actor,
                    LockReleaseHow::FileFreed,
                    chain,
                )));
                self.locks.keep_ended(key, s, actor.ts_ns);
            }
        }
    }

    fn lock_verdict(
        &self,
        ev: &Event,
        l: &LockEventArgs,
        kind: LockKind,
        outcome: LockOutcome,
    ) -> LockVerdict {
        let known = |f: u64| self.files.alive(f).and_then(|k| self.files.get(k));
        let mine = known(l.file);
        let theirs = l.holder.and_then(|h| known(h.file));
        let caller_fd = mine.and_then(|f| {
            f.holders.keys().find_map(|h| match h {
                crate::event::HolderRef::Fd { tgid, fd } if *tgid == ev.tgid => Some(*fd),
                _ => None,
            })
        });
        let path = theirs
            .and_then(FileObj::path)
            .or_else(|| mine.and_then(FileObj::path))
            .or_else(|| {
                theirs
                    .or(mine)
                    .filter(|f| !f.name.is_empty())
                    .map(|f| f.name.clone())
            });
        let mnt_id = if l.mnt_id >= 0 {
            l.mnt_id
        } else {
            theirs.map(|f| f.mnt_id).unwrap_or(-1)
        };
        let holder = l.holder.map(|h| {
            let file = theirs.map(|f| self.describe(f));
            let plain = file.as_ref().is_some_and(|f| {
                !f.holders.is_empty()
                    && f.holders.iter().all(|d| {
                        matches!(d, HolderDesc::Fd { task, .. } if task.known && task.alive && !task.exiting)
                    })
            });
            LockHolderDesc {
                kind: LockKind::of_holder(l.hook, &h),
                lock_type: h.lock_type,
                lock: h.lock,
                owner: h.owner,
                taken_by: self.task_desc(None, h.pid, "unknown"),
                file_addr: h.file,
                file,
                plain,
            }
        });
        let mut limits = Vec::new();
        for m in &self.cfg.missing_hooks {
            if m.contains("lock") {
                limits.push(format!("hook missing: {m}"));
            }
        }
        if l.holder.is_some() && theirs.is_none() {
            limits.push(
                "the holding file was never seen referenced: its holders cannot be named"
                    .to_string(),
            );
        }
        LockVerdict {
            id: 0,
            ts_ns: ev.ts_ns,
            kind,
            call: call_words(kind, l.lock_type, l.flags),
            lock_type: l.lock_type,
            caller: caller(ev),
            caller_fd,
            outcome,
            ino: l.ino,
            dev: l.dev,
            path,
            mount: self.mounts.get(mnt_id).map(MountDesc::of),
            holder,
            test: self.current_test.clone(),
            evidence_limits: limits,
        }
    }

    /// Lock stories still open (for the TUI and summaries).
    pub fn lock_table(&self) -> &LockTable {
        &self.locks
    }
}

fn caller(ev: &Event) -> Caller {
    Caller {
        pid: ev.pid,
        tgid: ev.tgid,
        comm: ev.comm.clone(),
    }
}

fn released(
    s: &LockStory,
    ino: u64,
    dev: u32,
    actor: &Actor,
    how: LockReleaseHow,
    chain: &[ChainLink],
) -> LockReleased {
    LockReleased {
        story: LockStoryRef::of(s, ino, dev),
        ts_ns: actor.ts_ns,
        how,
        chain: chain.to_vec(),
        held_ns: actor.ts_ns.saturating_sub(s.first_ns),
    }
}
