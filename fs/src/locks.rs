//! Lock conflicts: what the engine keeps between a conflicting lock request and the
//! release of the lock it ran into, and the notices it says about them.
//!
//! A story is one held lock (inode + owner) that someone could not take. It starts with a
//! verdict (who holds it, what keeps that holder's file alive), counts the caller's retries
//! as "still held" lines, and ends when the lock goes: unlocked (for a file's last
//! reference, by `__fput`'s `FL_CLOSE` unlock) or its file freed.

use std::collections::BTreeMap;
use std::fmt::{self, Display, Formatter, Write as _};

use serde::Serialize;

use crate::desc::{Anchor, Caller, FileReport, MountDesc, TaskDesc};
use crate::event::{LockHolderRef, LockHook, LockSys};
use crate::text::{boot, count, dur, errno_name, hex, rel};
use crate::wire::lock_flags as lf;
use crate::work::{ChainLink, chain_text};

/// The default of `--lock-wait-ms`: a blocking lock call waiting longer gets a verdict.
pub const DEFAULT_LOCK_WAIT_MS: u64 = 5;

/// Which kind of lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LockKind {
    /// flock(2): owned by the open file description, gone with its last reference.
    Flock,
    /// fcntl F_SETLK: owned by the process (its fd table), gone at any close of the file
    /// by it or at its exit.
    Posix,
    /// fcntl F_OFD_SETLK: owned by the open file description, like flock.
    Ofd,
}

impl LockKind {
    pub fn of(hook: LockHook, flags: u32) -> Self {
        match hook {
            LockHook::Flock => LockKind::Flock,
            LockHook::Posix if flags & lf::FL_OFDLCK != 0 => LockKind::Ofd,
            LockHook::Posix => LockKind::Posix,
        }
    }

    /// The holder of a posix-list lock: OFD locks are owned by their file.
    pub fn of_holder(hook: LockHook, h: &LockHolderRef) -> Self {
        match hook {
            LockHook::Flock => LockKind::Flock,
            LockHook::Posix if h.owner == h.file => LockKind::Ofd,
            LockHook::Posix => LockKind::Posix,
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            LockKind::Flock => "flock",
            LockKind::Posix => "POSIX",
            LockKind::Ofd => "OFD",
        }
    }

    /// Whether the lock lives as long as its open file description.
    pub fn owned_by_file(self) -> bool {
        !matches!(self, LockKind::Posix)
    }
}

/// "write", "read", "unlock".
pub fn type_word(t: u8) -> &'static str {
    match t {
        lf::F_RDLCK => "read",
        lf::F_WRLCK => "write",
        lf::F_UNLCK => "unlock",
        _ => "unknown",
    }
}

/// The lock call's name as the caller wrote it, from the request's kind and flags.
pub fn call_words(kind: LockKind, lock_type: u8, flags: u32) -> String {
    let sleep = flags & lf::FL_SLEEP != 0;
    match kind {
        LockKind::Flock => {
            let op = if lock_type == lf::F_WRLCK {
                "LOCK_EX"
            } else {
                "LOCK_SH"
            };
            if sleep {
                format!("flock({op})")
            } else {
                format!("flock({op}|LOCK_NB)")
            }
        }
        LockKind::Posix | LockKind::Ofd => {
            let ofd = if kind == LockKind::Ofd { "OFD_" } else { "" };
            let w = if sleep { "W" } else { "" };
            let t = if lock_type == lf::F_WRLCK {
                "F_WRLCK"
            } else {
                "F_RDLCK"
            };
            format!("fcntl(F_{ofd}SETLK{w}, {t})")
        }
    }
}

/// What a story is about: the inode and the owner holding the lock (0: not found).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LockKey {
    pub dev: u32,
    pub ino: u64,
    pub owner: u64,
}

/// One conflicting lock, from its verdict to its release.
#[derive(Clone, Debug)]
pub struct LockStory {
    pub id: u64,
    pub kind: LockKind,
    pub holder: Option<LockHolderRef>,
    pub first_ns: u64,
    pub last_ns: u64,
    /// Conflicts seen (failed attempts and waits), the first included.
    pub conflicts: u32,
    pub path: Option<String>,
    pub mount: Option<MountDesc>,
    /// What the verdict said of the holding file's holders (kinds only): a retry whose
    /// holders changed says so on its line.
    pub holders_said: Vec<String>,
}

/// A blocking request waiting for a lock (deferred), until its call returns.
#[derive(Clone, Debug)]
pub struct Waiting {
    pub fl: u64,
    pub since_ns: u64,
    pub hook: LockHook,
    pub flags: u32,
    pub lock_type: u8,
    pub ino: u64,
    pub dev: u32,
    pub mnt_id: i32,
    pub file: u64,
    pub holder: Option<LockHolderRef>,
    /// The verdict as it would read now (taken when the wait began: by the call's end
    /// the holder may be gone).
    pub verdict: Option<Box<LockVerdict>>,
    /// The holder's release, when seen during the wait.
    pub released: Option<LockReleased>,
}

/// The lock stories and waits in progress.
#[derive(Clone, Debug, Default)]
pub struct LockTable {
    pub stories: BTreeMap<LockKey, LockStory>,
    /// By thread id.
    pub waits: BTreeMap<u32, Waiting>,
    pub next_id: u64,
    /// Conflicts and waits seen, verdicts given, retries folded into "still held".
    pub conflicts_seen: u64,
    pub verdicts: u64,
    pub retries: u64,
    pub short_waits: u64,
    /// Stories ended lately, with the time of their release: a failed attempt traced just
    /// after a release (see [`LockTable::raced_release`]) belongs to one of them.
    pub ended: std::collections::VecDeque<(LockKey, LockStory, u64)>,
}

/// Ended stories kept for attempts that raced their release.
pub const MAX_ENDED_STORIES: usize = 64;

/// How long after a release a failed attempt with no holder left is taken as one that
/// raced it. The kernel traces `flock_lock_inode`/`posix_lock_inode` after dropping the
/// inode's lock list: an attempt that failed against the holder can be traced after the
/// holder's unlock, and then finds no holder to name. A preempted tracepoint can lag by
/// more than a scheduler tick, hence the margin.
pub const RACED_RELEASE_NS: u64 = 50_000_000;

/// Stories and waits kept at most (oldest dropped): a tracer runs for days.
pub const MAX_LOCK_STORIES: usize = 4096;

impl LockTable {
    pub fn key(dev: u32, ino: u64, holder: Option<&LockHolderRef>) -> LockKey {
        LockKey {
            dev,
            ino,
            owner: holder.map(|h| h.owner).unwrap_or(0),
        }
    }

    /// The stories an unlock by `owner` (or of `file`) on the inode ends.
    pub fn ended_by_unlock(&self, dev: u32, ino: u64, owner: u64, file: u64) -> Vec<LockKey> {
        self.stories
            .iter()
            .filter(|(k, s)| {
                k.dev == dev
                    && k.ino == ino
                    // A story whose holder was not found ends with any unlock there.
                    && s.holder.as_ref().is_none_or(|h| {
                        h.owner == owner || (s.kind.owned_by_file() && h.file == file)
                    })
            })
            .map(|(k, _)| *k)
            .collect()
    }

    /// The open story on the inode whose holder was not named in a conflict (the holder's
    /// lock went from the list before the conflict was traced).
    pub fn open_on(&self, dev: u32, ino: u64) -> Option<LockKey> {
        self.stories
            .iter()
            .filter(|(k, _)| k.dev == dev && k.ino == ino)
            .max_by_key(|(_, s)| s.last_ns)
            .map(|(k, _)| *k)
    }

    /// Keeps an ended story for attempts that raced its release.
    pub fn keep_ended(&mut self, key: LockKey, story: LockStory, released_ns: u64) {
        self.ended.push_back((key, story, released_ns));
        while self.ended.len() > MAX_ENDED_STORIES {
            self.ended.pop_front();
        }
    }

    /// The story on the inode released at most [`RACED_RELEASE_NS`] before `ts_ns`.
    pub fn raced_release(&mut self, dev: u32, ino: u64, ts_ns: u64) -> Option<&mut LockStory> {
        self.ended
            .iter_mut()
            .rev()
            .find(|(k, _, at)| {
                k.dev == dev && k.ino == ino && ts_ns.saturating_sub(*at) <= RACED_RELEASE_NS
            })
            .map(|(_, s, _)| s)
    }

    /// The stories whose holding lock belongs to `file` (ended by its free).
    pub fn held_by_file(&self, file: u64) -> Vec<LockKey> {
        self.stories
            .iter()
            .filter(|(_, s)| s.holder.as_ref().is_some_and(|h| h.file == file))
            .map(|(k, _)| *k)
            .collect()
    }

    /// The waits whose holder is ended by an unlock by `owner` / of `file` on the inode.
    pub fn waits_on(&self, dev: u32, ino: u64, owner: u64, file: u64) -> Vec<u32> {
        self.waits
            .iter()
            .filter(|(_, w)| {
                w.dev == dev
                    && w.ino == ino
                    && w.released.is_none()
                    && w.holder
                        .as_ref()
                        .is_some_and(|h| h.owner == owner || h.file == file)
            })
            .map(|(t, _)| *t)
            .collect()
    }

    pub fn enforce_cap(&mut self) {
        while self.stories.len() > MAX_LOCK_STORIES {
            let oldest = self
                .stories
                .iter()
                .min_by_key(|(_, s)| s.last_ns)
                .map(|(k, _)| *k);
            match oldest {
                Some(k) => {
                    self.stories.remove(&k);
                }
                None => break,
            }
        }
        while self.waits.len() > MAX_LOCK_STORIES {
            let oldest = self
                .waits
                .iter()
                .min_by_key(|(_, w)| w.since_ns)
                .map(|(t, _)| *t);
            match oldest {
                Some(t) => {
                    self.waits.remove(&t);
                }
                None => break,
            }
        }
    }
}

/// How the request failed or waited.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LockOutcome {
    /// A non-blocking request failed (`ret`: -EAGAIN/-EWOULDBLOCK or -EACCES).
    Failed { ret: i64 },
    /// A blocking call waited `wait_ns` (longer than the threshold) and returned `ret`.
    Waited {
        wait_ns: u64,
        ret: i64,
        sys: LockSys,
        cmd: u32,
        fd: i32,
    },
}

/// The lock that was in the way and what keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LockHolderDesc {
    pub kind: LockKind,
    pub lock_type: u8,
    #[serde(serialize_with = "crate::text::ser_hex")]
    pub lock: u64,
    #[serde(serialize_with = "crate::text::ser_hex")]
    pub owner: u64,
    /// The process that took it (`flc_pid`) and its fate.
    pub taken_by: TaskDesc,
    /// Its open file description and that file's holders (None: a file the tracer never
    /// saw referenced, opened before attach and missed by the snapshot).
    #[serde(serialize_with = "crate::text::ser_hex")]
    pub file_addr: u64,
    pub file: Option<FileReport>,
    /// Holders that are plain live fds only: the conflict is an ordinary one.
    pub plain: bool,
}

impl LockHolderDesc {
    /// "fd 5 of pid 1300 (sleeper)" for a plain holder.
    pub fn plain_words(&self) -> Option<String> {
        let f = self.file.as_ref()?;
        let fds: Vec<String> = f
            .holders
            .iter()
            .filter_map(|h| match h {
                crate::desc::HolderDesc::Fd { fd, task, .. } => {
                    Some(format!("fd {fd} of {}", task.name()))
                }
                _ => None,
            })
            .collect();
        (!fds.is_empty()).then(|| fds.join(", "))
    }
}

/// A lock request that could not be served (failed, or waited past the threshold).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LockVerdict {
    pub id: u64,
    pub ts_ns: u64,
    pub kind: LockKind,
    /// "flock(LOCK_EX|LOCK_NB)", "fcntl(F_OFD_SETLK, F_WRLCK)".
    pub call: String,
    pub lock_type: u8,
    pub caller: Caller,
    /// The caller's fd on the file, when the engine knows it.
    pub caller_fd: Option<i32>,
    pub outcome: LockOutcome,
    pub ino: u64,
    pub dev: u32,
    pub path: Option<String>,
    pub mount: Option<MountDesc>,
    /// None: the holder was not found in the inode's lock list.
    pub holder: Option<LockHolderDesc>,
    pub test: Option<String>,
    pub evidence_limits: Vec<String>,
}

impl LockVerdict {
    fn anchor_word(&self) -> &'static str {
        match self.outcome {
            LockOutcome::Failed { .. } => "conflict",
            LockOutcome::Waited { .. } => "wait",
        }
    }

    fn lock_name(&self) -> String {
        let what = match &self.path {
            Some(p) => format!("{p} (inode {})", self.ino),
            None => format!("inode {}", self.ino),
        };
        let on = match &self.mount {
            Some(m) => format!(", {m}"),
            None => format!(", dev {}:{}", self.dev >> 20, self.dev & 0xfffff),
        };
        format!("{what}{on}")
    }
}

impl Display for LockVerdict {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let a = Anchor::event(
            match self.outcome {
                LockOutcome::Failed { .. } => self.ts_ns,
                LockOutcome::Waited { wait_ns, .. } => self.ts_ns.saturating_sub(wait_ns),
            },
            self.anchor_word(),
        );
        let mut out = String::new();
        let who = format!("pid {} ({})", self.caller.tgid, self.caller.comm);
        let fd = self
            .caller_fd
            .map(|d| format!(" on fd {d}"))
            .unwrap_or_default();
        match &self.outcome {
            LockOutcome::Failed { ret } => {
                let _ = writeln!(
                    out,
                    "lock conflict #{}: {}{fd} by {who} failed with {} at {}: {} lock on {}",
                    self.id,
                    self.call,
                    errno_name(*ret),
                    boot(self.ts_ns),
                    self.kind.word(),
                    self.lock_name()
                );
            }
            LockOutcome::Waited { wait_ns, ret, .. } => {
                let res = if *ret == 0 {
                    "then got it".to_string()
                } else {
                    format!("then returned {}", errno_name(*ret))
                };
                let _ = writeln!(
                    out,
                    "lock wait #{}: {}{fd} by {who} waited {} (from {}), {res}: {} lock on {}",
                    self.id,
                    self.call,
                    dur(*wait_ns),
                    boot(a.ts),
                    self.kind.word(),
                    self.lock_name()
                );
            }
        }
        if let Some(t) = &self.test {
            let _ = writeln!(out, "  during test {t}");
        }
        match &self.holder {
            None => {
                let _ = writeln!(
                    out,
                    "  held by: not found (the holding lock was not among the inode's first locks, or went between the conflict and the look)"
                );
            }
            Some(h) => {
                let plain = if h.plain {
                    h.plain_words().map(|w| format!(" — held by {w}"))
                } else {
                    None
                };
                let _ = writeln!(
                    out,
                    "  held by: {} {} lock of file {}, taken by {} [{}]{}",
                    h.kind.word(),
                    type_word(h.lock_type),
                    hex(h.file_addr),
                    h.taken_by.name(),
                    h.taken_by.fate(&a),
                    plain.unwrap_or_default()
                );
                match (&h.file, h.kind.owned_by_file()) {
                    (Some(file), true) => {
                        let _ = writeln!(
                            out,
                            "  the lock lives as long as that open file description; what holds it:"
                        );
                        file.render(&a, "    ", &mut out);
                    }
                    (Some(file), false) => {
                        let _ = writeln!(
                            out,
                            "  a POSIX lock goes when its owner closes the file or exits; the file:"
                        );
                        file.render(&a, "    ", &mut out);
                    }
                    (None, _) => {
                        let _ = writeln!(
                            out,
                            "  its file was never seen referenced by the tracer (opened before attach and missed by the snapshot, or records lost)"
                        );
                    }
                }
            }
        }
        for l in &self.evidence_limits {
            let _ = writeln!(out, "  evidence limit: {l}");
        }
        f.write_str(out.trim_end())
    }
}

/// How reports name a lock story: "lock conflict #3 on /mnt/x/data".
pub fn story_what(id: u64, path: Option<&str>, ino: u64) -> String {
    match path {
        Some(p) => format!("lock conflict #{id} on {p}"),
        None => format!("lock conflict #{id} on inode {ino}"),
    }
}

impl LockVerdict {
    /// When its story began: the failed call, or the start of the wait.
    pub fn first_ns(&self) -> u64 {
        match self.outcome {
            LockOutcome::Failed { .. } => self.ts_ns,
            LockOutcome::Waited { wait_ns, .. } => self.ts_ns.saturating_sub(wait_ns),
        }
    }

    pub fn story_what(&self) -> String {
        story_what(self.id, self.path.as_deref(), self.ino)
    }
}

/// Which lock story a notice belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LockStoryRef {
    pub verdict_id: u64,
    pub kind: LockKind,
    pub ino: u64,
    pub dev: u32,
    pub path: Option<String>,
    pub mount: Option<MountDesc>,
    #[serde(serialize_with = "crate::text::ser_hex")]
    pub holder_file: u64,
    pub first_ns: u64,
    pub conflicts: u32,
}

impl LockStoryRef {
    pub fn of(s: &LockStory, ino: u64, dev: u32) -> Self {
        LockStoryRef {
            verdict_id: s.id,
            kind: s.kind,
            ino,
            dev,
            path: s.path.clone(),
            mount: s.mount.clone(),
            holder_file: s.holder.as_ref().map(|h| h.file).unwrap_or(0),
            first_ns: s.first_ns,
            conflicts: s.conflicts,
        }
    }

    pub fn story_what(&self) -> String {
        story_what(self.verdict_id, self.path.as_deref(), self.ino)
    }

    fn label(&self) -> String {
        let what = match &self.path {
            Some(p) => p.clone(),
            None => format!("inode {}", self.ino),
        };
        format!(
            "{} lock on {what} (lock conflict #{})",
            self.kind.word(),
            self.verdict_id
        )
    }
}

/// A retry of a conflict already explained: one line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LockStillHeld {
    pub story: LockStoryRef,
    pub ts_ns: u64,
    pub caller: Caller,
    pub ret: i64,
    /// The holding file's holders now, in short, when they changed since the verdict.
    pub holders_now: Option<Vec<String>>,
    /// Traced after the story's release: the attempt failed against the holder, which
    /// let go before the kernel traced the failure.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub raced_release: bool,
}

impl Display for LockStillHeld {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let s = &self.story;
        write!(
            f,
            "still held: {} — attempt {} by pid {} ({}) failed with {} {}",
            s.label(),
            s.conflicts,
            self.caller.tgid,
            self.caller.comm,
            errno_name(self.ret),
            rel(self.ts_ns, s.first_ns, "first conflict")
        )?;
        if self.raced_release {
            write!(
                f,
                "; the holder let go as this attempt failed (traced after the release)"
            )?;
        } else if let Some(h) = &self.holders_now {
            if h.is_empty() {
                write!(f, "; its file has no holder left, its release is pending")?;
            } else {
                write!(f, "; its file is now held by: {}", h.join(", "))?;
            }
        }
        Ok(())
    }
}

/// How a lock went away.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LockReleaseHow {
    /// Unlocked as its file's last reference went (`__fput` -> `locks_remove_file`).
    FileClosed,
    /// Unlocked as its owner closed the file or exited (POSIX: `locks_remove_posix`).
    OwnerClosed,
    /// Unlocked explicitly (LOCK_UN, F_UNLCK).
    Unlocked,
    /// Its file was freed (the unlock itself was not seen).
    FileFreed,
}

/// The lock a conflict ran into is gone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LockReleased {
    pub story: LockStoryRef,
    pub ts_ns: u64,
    pub how: LockReleaseHow,
    /// Who released it, and the deferral chain that led there (first: the releasing context).
    pub chain: Vec<ChainLink>,
    /// From the first conflict to the release.
    pub held_ns: u64,
}

impl Display for LockReleased {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let s = &self.story;
        let how = match self.how {
            LockReleaseHow::FileClosed => "unlocked by the last release of its file (__fput)",
            LockReleaseHow::OwnerClosed => "unlocked as its owner closed the file or exited",
            LockReleaseHow::Unlocked => "unlocked by its owner",
            LockReleaseHow::FileFreed => "its file was freed",
        };
        writeln!(
            f,
            "lock released {}: {} — {how}; held {} from the first conflict, {} while held",
            rel(self.ts_ns, s.first_ns, "first conflict"),
            s.label(),
            dur(self.held_ns),
            count(s.conflicts as usize, "conflict", "conflicts")
        )?;
        if self.chain.is_empty() {
            write!(f, "  released by: (not seen)")
        } else {
            write!(f, "  released by: {}", chain_text(&self.chain))
        }
    }
}

/// A file's holders in short (no times), for "still held" lines.
pub fn holder_kinds(f: &FileReport) -> Vec<String> {
    use crate::desc::{DeferVia, HolderDesc};
    f.holders
        .iter()
        .map(|h| match h {
            HolderDesc::Fd { fd, task, .. } => format!("fd {fd} of {}", task.name()),
            HolderDesc::UringFixed { ring, .. } => format!("io_uring ring {}", hex(ring.ctx)),
            HolderDesc::UringReq { ring, .. } => {
                format!("in-flight requests of io_uring ring {}", hex(ring.ctx))
            }
            HolderDesc::DeferredPut {
                via: DeferVia::DelayedFput,
                ..
            } => "a deferred put (delayed_fput)".to_string(),
            HolderDesc::DeferredPut { .. } => "a deferred put (task_work)".to_string(),
            HolderDesc::Mmap { task, start, .. } => {
                format!("a mapping at {} of {}", hex(*start), task.name())
            }
            HolderDesc::Aio { task, .. } => format!("AIO requests of {}", task.name()),
            HolderDesc::Backing { device, .. } => format!("the backing of {device}"),
            HolderDesc::Unattributed { .. } => "no holder we can name".to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(file: u64, owner: u64) -> LockHolderRef {
        LockHolderRef {
            lock: 0x10,
            file,
            owner,
            pid: 7,
            lock_type: lf::F_WRLCK,
        }
    }

    #[test]
    fn kinds_and_calls() {
        assert_eq!(LockKind::of(LockHook::Flock, 2), LockKind::Flock);
        assert_eq!(LockKind::of(LockHook::Posix, 1), LockKind::Posix);
        assert_eq!(LockKind::of(LockHook::Posix, 1 | 1024), LockKind::Ofd);
        assert_eq!(
            LockKind::of_holder(LockHook::Posix, &holder(5, 5)),
            LockKind::Ofd
        );
        assert_eq!(
            call_words(LockKind::Flock, lf::F_WRLCK, lf::FL_FLOCK),
            "flock(LOCK_EX|LOCK_NB)"
        );
        assert_eq!(
            call_words(LockKind::Ofd, lf::F_RDLCK, lf::FL_SLEEP),
            "fcntl(F_OFD_SETLKW, F_RDLCK)"
        );
    }

    #[test]
    fn unlocks_end_the_stories_of_their_owner_only() {
        let mut t = LockTable::default();
        for (owner, kind) in [(5u64, LockKind::Flock), (9, LockKind::Posix)] {
            let h = holder(if owner == 9 { 6 } else { 5 }, owner);
            t.stories.insert(
                LockTable::key(1, 2, Some(&h)),
                LockStory {
                    id: owner,
                    kind,
                    holder: Some(h),
                    first_ns: 0,
                    last_ns: 0,
                    conflicts: 1,
                    path: None,
                    mount: None,
                    holders_said: Vec::new(),
                },
            );
        }
        assert_eq!(t.ended_by_unlock(1, 2, 5, 5).len(), 1);
        // A POSIX lock is not its file's: closing the file elsewhere does not end it.
        assert_eq!(t.ended_by_unlock(1, 2, 1, 6).len(), 0);
        assert_eq!(t.ended_by_unlock(1, 2, 9, 6).len(), 1);
        assert_eq!(t.ended_by_unlock(1, 3, 9, 6).len(), 0);
        assert_eq!(t.held_by_file(6).len(), 1);
    }
}
