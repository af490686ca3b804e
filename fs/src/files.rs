//! Files: one object per *generation* of a `struct file *` (pointers are reused after the
//! file is freed), with its mount, name, holders, how its last holder went away, and its
//! release (who freed it, through which deferral chain).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use foldhash::HashMap;

use serde::Serialize;

use crate::actor::Actor;
use crate::event::{HolderRef, NameKind, RefHow};
use crate::text::normalize_path;
use crate::work::ChainLink;

/// Identity of a file: the kernel pointer and the engine's generation for it (a global
/// serial, so it also orders files by first sight).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct FileKey {
    #[serde(serialize_with = "crate::text::ser_hex")]
    pub file: u64,
    pub generation: u64,
}

/// A holder's reference: when, how, and by which task it was taken.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HolderInfo {
    pub since_ns: u64,
    /// When a scan last found it (a mapping: a later scan that misses it says it went).
    #[serde(skip)]
    pub seen_ns: u64,
    pub how: RefHow,
    pub pid: u32,
    pub tgid: u32,
    pub comm: crate::actor::Comm,
    /// The [`crate::tasks::Task`] instance that took it.
    pub task: Option<u64>,
}

/// Why a holder let go of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// close(2) of the fd.
    Close,
    /// The process exited: the kernel closed its fd table (`exit_files`).
    ExitFiles,
    /// The ring was freed at the end of its `io_ring_exit_work`.
    RingTeardown,
    /// The ring pointer came back for a new ring: the old ring was freed unseen.
    RingGoneUnseen,
    /// The request completed or failed.
    RequestDone,
    /// `IORING_UNREGISTER_FILES`.
    Unregistered,
    /// Another unref the kernel side reported.
    Unref { how: RefHow },
    /// Another file took the same fd slot or request: this one was dropped without an event
    /// we saw (dup2, close-on-exec, close_range, a lost record).
    SlotReused,
    /// The precise `fput` hook saw the file's last reference go while this holder was
    /// still believed to hold it: its own drop went unseen.
    GoneAtLastPut,
    /// The process's address space went with its exit (`exit_mm()`).
    ExitMm,
    /// A later VMA scan no longer found the mapping (munmap or exec, unseen).
    Unmapped,
}

impl DropReason {
    /// The drop was observed, not inferred.
    pub fn seen(&self) -> bool {
        !matches!(
            self,
            DropReason::SlotReused
                | DropReason::RingGoneUnseen
                | DropReason::GoneAtLastPut
                | DropReason::Unmapped
        )
    }
}

/// A holder's drop: which holder, why, and in which context.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HolderDrop {
    pub holder: HolderRef,
    pub reason: DropReason,
    pub actor: Actor,
}

/// The end of a file generation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Release {
    /// The context of the `FileFree` (or of the event that proved it gone).
    pub actor: Actor,
    /// The deferral chain, first link = the context that freed it.
    pub chain: Vec<ChainLink>,
    /// False when the end was inferred (the pointer came back for another file, or the
    /// mount id was reused) rather than seen as a `FileFree`.
    pub seen: bool,
}

/// What the precise tier (`fput`, `task_work_add(____fput)`) saw of a file's last
/// reference.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LastPut {
    /// The `fput()` that dropped the last reference.
    pub actor: Actor,
    /// `task_work_add(____fput)`: the final `__fput` was queued to this task's return to
    /// user space. `None`: it went to `delayed_fput` (kworker, interrupt, exiting task).
    pub deferred_to: Option<DeferredTo>,
}

/// References a non-last `fput()` left behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct RefsLeft {
    pub ts_ns: u64,
    pub left: i64,
}

/// The task a deferred `____fput` was queued to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct DeferredTo {
    pub ts_ns: u64,
    pub pid: u32,
    pub tgid: u32,
}

/// Where a file stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileState {
    /// At least one known holder.
    Held,
    /// Its last known holder dropped it (or the precise `fput` hook saw its last
    /// reference go); the final `__fput` is deferred (task_work or `delayed_fput`) and has
    /// not happened yet.
    PendingRelease,
    /// Alive, but no known holder and no observed drop explains it.
    Unattributed,
    Released,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileObj {
    pub key: FileKey,
    /// The mount it pins (mountinfo id); -1 when the kernel side could not read it.
    pub mnt_id: i32,
    pub dev: u32,
    pub ino: u64,
    pub name_kind: NameKind,
    pub name: String,
    /// The first reference we saw and its context.
    pub first_how: RefHow,
    pub first_ref: Actor,
    pub holders: BTreeMap<HolderRef, HolderInfo>,
    /// The most recent holder drop.
    pub last_drop: Option<HolderDrop>,
    /// Since when it has had no known holder.
    pub no_holder_since: Option<u64>,
    /// Drops by holders we never saw take a reference (so references we did not see exist).
    pub unseen_refs: u32,
    /// `fput()` calls seen on it (precise tier), the last one included.
    pub puts: u32,
    pub last_put: Option<LastPut>,
    /// The latest `fput()` that was not the last: references remained, held by what.
    pub refs_left: Option<RefsLeft>,
    pub release: Option<Release>,
}

impl FileObj {
    pub fn state(&self) -> FileState {
        if self.release.is_some() {
            FileState::Released
        } else if !self.holders.is_empty() {
            FileState::Held
        } else if self.last_put.is_some() {
            FileState::PendingRelease
        } else if self.refs_left.is_some_and(|r| {
            self.last_drop
                .as_ref()
                .is_none_or(|d| r.ts_ns >= d.actor.ts_ns)
        }) {
            // The last holder's put was not the last reference: something unseen holds it.
            FileState::Unattributed
        } else if self.last_drop.as_ref().is_some_and(|d| d.reason.seen()) {
            FileState::PendingRelease
        } else {
            FileState::Unattributed
        }
    }

    pub fn alive(&self) -> bool {
        self.release.is_none()
    }

    /// The absolute path, when the opener gave one (lexically normalized).
    pub fn path(&self) -> Option<String> {
        (self.name_kind == NameKind::UserPath && self.name.starts_with('/'))
            .then(|| normalize_path(&self.name))
    }
}

fn name_rank(kind: NameKind, name: &str) -> u8 {
    match kind {
        _ if name.is_empty() => 0,
        NameKind::None => 0,
        NameKind::Dentry => 1,
        NameKind::UserPath if name.starts_with('/') => 3,
        NameKind::UserPath => 2,
    }
}

/// Result of removing a holder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Removal {
    /// The file did not have that holder.
    NotHeld,
    /// Removed; `last` when no holder is left.
    Removed { last: bool },
}

#[derive(Clone, Debug, Default)]
pub struct Files {
    /// Boxed: a B-tree node moves its values on every insert and remove, and a `FileObj`
    /// is a few hundred bytes (evicting the oldest released file was 6% of the tracer's
    /// CPU on an open/close loop, in `memmove`).
    objs: BTreeMap<u64, Box<FileObj>>,
    alive_by_ptr: HashMap<u64, u64>,
    by_holder: BTreeMap<HolderRef, BTreeSet<FileKey>>,
    alive_by_mount: BTreeMap<i32, BTreeSet<FileKey>>,
    released_order: VecDeque<u64>,
    next_gen: u64,
    pub evicted_released: u64,
    pub evicted_alive: u64,
}

impl Files {
    pub fn get(&self, key: FileKey) -> Option<&FileObj> {
        self.objs
            .get(&key.generation)
            .map(|f| &**f)
            .filter(|f| f.key == key)
    }

    fn get_mut(&mut self, key: FileKey) -> Option<&mut FileObj> {
        self.objs
            .get_mut(&key.generation)
            .map(|f| &mut **f)
            .filter(|f| f.key == key)
    }

    /// The alive generation of a kernel pointer.
    pub fn alive(&self, file: u64) -> Option<FileKey> {
        let generation = *self.alive_by_ptr.get(&file)?;
        Some(FileKey { file, generation })
    }

    /// Files alive and released (kept), oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &FileObj> {
        self.objs.values().map(|f| &**f)
    }

    pub fn alive_iter(&self) -> impl Iterator<Item = &FileObj> {
        self.objs.values().map(|f| &**f).filter(|f| f.alive())
    }

    pub fn len(&self) -> usize {
        self.objs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objs.is_empty()
    }

    pub fn alive_len(&self) -> usize {
        self.alive_by_ptr.len()
    }

    #[allow(clippy::too_many_arguments)]
    pub fn create(
        &mut self,
        file: u64,
        mnt_id: i32,
        dev: u32,
        ino: u64,
        name_kind: NameKind,
        name: &str,
        how: RefHow,
        actor: Actor,
    ) -> FileKey {
        self.next_gen += 1;
        let key = FileKey {
            file,
            generation: self.next_gen,
        };
        self.objs.insert(
            key.generation,
            Box::new(FileObj {
                key,
                mnt_id,
                dev,
                ino,
                name_kind,
                name: name.to_string(),
                first_how: how,
                first_ref: actor,
                holders: BTreeMap::new(),
                last_drop: None,
                no_holder_since: None,
                unseen_refs: 0,
                puts: 0,
                last_put: None,
                refs_left: None,
                release: None,
            }),
        );
        self.alive_by_ptr.insert(file, key.generation);
        self.alive_by_mount.entry(mnt_id).or_default().insert(key);
        key
    }

    /// Keeps the most informative name seen for the file.
    pub fn update_name(&mut self, key: FileKey, kind: NameKind, name: &str) {
        if let Some(f) = self.get_mut(key)
            && name_rank(kind, name) > name_rank(f.name_kind, &f.name)
        {
            f.name_kind = kind;
            f.name = name.to_string();
        }
    }

    /// Learns the mount of a file whose mount was unreadable at its first reference.
    pub fn set_mount(&mut self, key: FileKey, mnt_id: i32) {
        let Some(f) = self.get_mut(key) else { return };
        if f.mnt_id == mnt_id || f.mnt_id != -1 || !f.alive() {
            return;
        }
        let old = f.mnt_id;
        f.mnt_id = mnt_id;
        self.unindex_mount(old, key);
        self.alive_by_mount.entry(mnt_id).or_default().insert(key);
    }

    fn unindex_mount(&mut self, mnt_id: i32, key: FileKey) {
        if let Some(set) = self.alive_by_mount.get_mut(&mnt_id) {
            set.remove(&key);
            if set.is_empty() {
                self.alive_by_mount.remove(&mnt_id);
            }
        }
    }

    fn unindex_holder(&mut self, holder: &HolderRef, key: FileKey) {
        if let Some(set) = self.by_holder.get_mut(holder) {
            set.remove(&key);
            if set.is_empty() {
                self.by_holder.remove(holder);
            }
        }
    }

    /// Adds (or refreshes) a holder of an alive file.
    pub fn add_holder(&mut self, key: FileKey, holder: HolderRef, info: HolderInfo) {
        let Some(f) = self.get_mut(key) else { return };
        if !f.alive() {
            return;
        }
        f.holders.insert(holder, info);
        f.no_holder_since = None;
        self.by_holder.entry(holder).or_default().insert(key);
    }

    /// Removes every holder of `key` that `which` picks, each for `reason` by `actor`.
    pub fn remove_holders_where(
        &mut self,
        key: FileKey,
        which: impl Fn(&HolderRef) -> bool,
        reason: DropReason,
        actor: &Actor,
    ) {
        let picked: Vec<HolderRef> = self
            .get(key)
            .map(|f| f.holders.keys().filter(|h| which(h)).copied().collect())
            .unwrap_or_default();
        for h in picked {
            self.remove_holder(key, &h, reason, actor);
        }
    }

    pub fn remove_holder(
        &mut self,
        key: FileKey,
        holder: &HolderRef,
        reason: DropReason,
        actor: &Actor,
    ) -> Removal {
        let Some(f) = self.get_mut(key) else {
            return Removal::NotHeld;
        };
        if f.holders.remove(holder).is_none() {
            return Removal::NotHeld;
        }
        let last = f.holders.is_empty();
        f.last_drop = Some(HolderDrop {
            holder: *holder,
            reason,
            actor: actor.clone(),
        });
        if last {
            f.no_holder_since = Some(actor.ts_ns);
        }
        self.unindex_holder(holder, key);
        Removal::Removed { last }
    }

    /// A holder dropped a reference it was never seen to take.
    /// An `fput()` of the file; `last` when it dropped the last reference.
    pub fn note_put(&mut self, key: FileKey, actor: &Actor, held: i64, last: bool) {
        if let Some(f) = self.get_mut(key) {
            f.puts = f.puts.saturating_add(1);
            if !last {
                f.refs_left = Some(RefsLeft {
                    ts_ns: actor.ts_ns,
                    left: held - 1,
                });
            } else {
                f.refs_left = None;
                f.last_put = Some(LastPut {
                    actor: actor.clone(),
                    deferred_to: None,
                });
            }
        }
    }

    /// `task_work_add(____fput)` for the file: its final `__fput` waits for `to`.
    pub fn note_deferred(&mut self, key: FileKey, to: DeferredTo, actor: &Actor) {
        if let Some(f) = self.get_mut(key) {
            // The fput record comes first from the same call; without it (a lost record),
            // the task_work_add proves the last reference went all the same.
            let lp = f.last_put.get_or_insert_with(|| LastPut {
                actor: actor.clone(),
                deferred_to: None,
            });
            lp.deferred_to = Some(to);
        }
    }

    pub fn note_unseen_ref(&mut self, key: FileKey) {
        if let Some(f) = self.get_mut(key) {
            f.unseen_refs = f.unseen_refs.saturating_add(1);
        }
    }

    /// Alive files holding through `holder`.
    pub fn holding(&self, holder: &HolderRef) -> Vec<FileKey> {
        self.by_holder
            .get(holder)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    fn holders_in(&self, lo: HolderRef, hi: HolderRef) -> Vec<(HolderRef, FileKey)> {
        self.by_holder
            .range(lo..=hi)
            .flat_map(|(h, set)| set.iter().map(move |k| (*h, *k)))
            .collect()
    }

    /// Every fd-table holder of process `tgid`.
    pub fn fd_holders_of(&self, tgid: u32) -> Vec<(HolderRef, FileKey)> {
        self.holders_in(
            HolderRef::Fd { tgid, fd: i32::MIN },
            HolderRef::Fd { tgid, fd: i32::MAX },
        )
    }

    /// Every mapping of process `tgid`.
    pub fn mmap_holders_of(&self, tgid: u32) -> Vec<(HolderRef, FileKey)> {
        self.holders_in(
            HolderRef::Mmap {
                tgid,
                start: 0,
                end: 0,
            },
            HolderRef::Mmap {
                tgid,
                start: u64::MAX,
                end: u64::MAX,
            },
        )
    }

    /// A scan found `holder` of `key` again at `ts`.
    pub fn refresh_holder(&mut self, key: FileKey, holder: &HolderRef, ts: u64) {
        if let Some(i) = self.get_mut(key).and_then(|f| f.holders.get_mut(holder)) {
            i.seen_ns = i.seen_ns.max(ts);
        }
    }

    /// Every holder belonging to ring `ctx`: its registered files and in-flight requests.
    pub fn ring_holders_of(&self, ctx: u64) -> Vec<(HolderRef, FileKey)> {
        let mut v = self.holders_in(HolderRef::UringFixed { ctx }, HolderRef::UringFixed { ctx });
        v.extend(self.holders_in(
            HolderRef::UringReq { ctx, req: 0 },
            HolderRef::UringReq { ctx, req: u64::MAX },
        ));
        v
    }

    /// Ends a file generation: no holder survives a release.
    pub fn release(&mut self, key: FileKey, release: Release) {
        let Some(f) = self.get_mut(key) else { return };
        if !f.alive() {
            return;
        }
        let holders: Vec<HolderRef> = f.holders.keys().copied().collect();
        f.holders.clear();
        f.no_holder_since.get_or_insert(release.actor.ts_ns);
        f.release = Some(release);
        let mnt = f.mnt_id;
        for h in &holders {
            self.unindex_holder(h, key);
        }
        self.unindex_mount(mnt, key);
        if self.alive_by_ptr.get(&key.file) == Some(&key.generation) {
            self.alive_by_ptr.remove(&key.file);
        }
        self.released_order.push_back(key.generation);
    }

    /// Files on mount `mnt_id` released at or after `since_ns` (and still kept), oldest
    /// release first.
    pub fn released_on_since(&self, mnt_id: i32, since_ns: u64) -> Vec<&FileObj> {
        let mut v: Vec<&FileObj> = self
            .released_order
            .iter()
            .rev()
            .filter_map(|g| self.objs.get(g).map(|f| &**f))
            .take_while(|f| f.release.as_ref().is_none_or(|r| r.actor.ts_ns >= since_ns))
            .filter(|f| f.mnt_id == mnt_id && f.release.is_some())
            .collect();
        v.reverse();
        v
    }

    /// Alive files on mount `mnt_id`, oldest first.
    pub fn alive_on_mount(&self, mnt_id: i32) -> Vec<&FileObj> {
        self.alive_by_mount
            .get(&mnt_id)
            .map(|s| s.iter().filter_map(|k| self.get(*k)).collect())
            .unwrap_or_default()
    }

    pub fn alive_count_on(&self, mnt_id: i32) -> usize {
        self.alive_by_mount.get(&mnt_id).map_or(0, |s| s.len())
    }

    /// Mount ids with at least one alive file.
    pub fn mounts_with_alive(&self) -> impl Iterator<Item = i32> + '_ {
        self.alive_by_mount.keys().copied()
    }

    /// Keeps at most `cap` released files, dropping the oldest releases.
    pub fn evict_released_to(&mut self, cap: usize) {
        while self.objs.len().saturating_sub(self.alive_by_ptr.len()) > cap {
            let Some(g) = self.released_order.pop_front() else {
                break;
            };
            if self.objs.get(&g).is_some_and(|f| !f.alive()) {
                self.objs.remove(&g);
                self.evicted_released += 1;
            }
        }
    }

    /// Keeps at most `cap` files: released ones go first (oldest release first), then the
    /// oldest alive ones. Returns the alive files evicted (their mounts may need updating).
    pub fn evict_to(&mut self, cap: usize) -> Vec<FileObj> {
        let mut evicted_alive = Vec::new();
        while self.objs.len() > cap {
            let released = loop {
                match self.released_order.pop_front() {
                    Some(g) if self.objs.contains_key(&g) => break Some(g),
                    Some(_) => continue,
                    None => break None,
                }
            };
            if let Some(g) = released {
                self.objs.remove(&g);
                self.evicted_released += 1;
                continue;
            }
            let Some((&g, _)) = self.objs.iter().next() else {
                break;
            };
            let Some(f) = self.objs.remove(&g) else { break };
            for h in f.holders.keys() {
                self.unindex_holder(h, f.key);
            }
            self.unindex_mount(f.mnt_id, f.key);
            if self.alive_by_ptr.get(&f.key.file) == Some(&g) {
                self.alive_by_ptr.remove(&f.key.file);
            }
            self.evicted_alive += 1;
            evicted_alive.push(*f);
        }
        evicted_alive
    }

    /// Internal consistency of the indexes (used by tests and debug builds).
    pub fn check(&self) -> Result<(), String> {
        for f in self.objs.values() {
            let indexed_alive = self.alive_by_ptr.get(&f.key.file) == Some(&f.key.generation);
            if f.alive() != indexed_alive {
                return Err(format!(
                    "file {:?}: alive={} but pointer index says {}",
                    f.key,
                    f.alive(),
                    indexed_alive
                ));
            }
            if !f.alive() && !f.holders.is_empty() {
                return Err(format!("released file {:?} still has holders", f.key));
            }
            let in_mount = self
                .alive_by_mount
                .get(&f.mnt_id)
                .is_some_and(|s| s.contains(&f.key));
            if f.alive() != in_mount {
                return Err(format!("file {:?}: mount index disagrees", f.key));
            }
            for h in f.holders.keys() {
                if !self.by_holder.get(h).is_some_and(|s| s.contains(&f.key)) {
                    return Err(format!("file {:?}: holder {h:?} not indexed", f.key));
                }
            }
            if f.alive()
                && f.holders.is_empty()
                && f.no_holder_since.is_none()
                && f.last_drop.is_some()
            {
                return Err(format!("file {:?}: dropped but no time", f.key));
            }
        }
        for (h, set) in &self.by_holder {
            for k in set {
                if !self.get(*k).is_some_and(|f| f.holders.contains_key(h)) {
                    return Err(format!("holder index {h:?} -> {k:?} is stale"));
                }
            }
        }
        for (&file, &generation) in &self.alive_by_ptr {
            if !self
                .objs
                .get(&generation)
                .is_some_and(|f| f.key.file == file && f.alive())
            {
                return Err(format!("pointer index {file:#x} -> {generation} is stale"));
            }
        }
        for (m, set) in &self.alive_by_mount {
            if set.is_empty() {
                return Err(format!("empty mount index entry {m}"));
            }
            for k in set {
                if !self.get(*k).is_some_and(|f| f.alive() && f.mnt_id == *m) {
                    return Err(format!("mount index {m} -> {k:?} is stale"));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(ts: u64) -> Actor {
        Actor {
            ts_ns: ts,
            pid: 1,
            tgid: 1,
            comm: "p".into(),
            work: None,
            work_instance: None,
            ring: None,
            task_exited: false,
        }
    }

    fn info(ts: u64) -> HolderInfo {
        HolderInfo {
            since_ns: ts,
            seen_ns: ts,
            how: RefHow::Open,
            pid: 1,
            tgid: 1,
            comm: "p".into(),
            task: None,
        }
    }

    #[test]
    fn holders_states_and_release() {
        let mut fs = Files::default();
        let k = fs.create(0xf1, 42, 0, 7, NameKind::Dentry, "f3", RefHow::Open, a(1));
        let fd = HolderRef::Fd { tgid: 1, fd: 3 };
        let ring = HolderRef::UringFixed { ctx: 0x100 };
        fs.add_holder(k, fd, info(1));
        fs.add_holder(k, ring, info(2));
        assert_eq!(fs.get(k).unwrap().state(), FileState::Held);
        assert_eq!(fs.fd_holders_of(1), vec![(fd, k)]);
        assert_eq!(fs.ring_holders_of(0x100), vec![(ring, k)]);
        assert_eq!(
            fs.remove_holder(k, &fd, DropReason::Close, &a(3)),
            Removal::Removed { last: false }
        );
        assert_eq!(
            fs.remove_holder(k, &fd, DropReason::Close, &a(3)),
            Removal::NotHeld
        );
        assert_eq!(
            fs.remove_holder(k, &ring, DropReason::RingTeardown, &a(4)),
            Removal::Removed { last: true }
        );
        let f = fs.get(k).unwrap();
        assert_eq!(f.state(), FileState::PendingRelease);
        assert_eq!(f.no_holder_since, Some(4));
        fs.update_name(k, NameKind::UserPath, "/mnt/x/f3");
        fs.update_name(k, NameKind::Dentry, "other");
        assert_eq!(fs.get(k).unwrap().path().as_deref(), Some("/mnt/x/f3"));
        fs.check().unwrap();
        fs.release(
            k,
            Release {
                actor: a(5),
                chain: vec![],
                seen: true,
            },
        );
        assert_eq!(fs.get(k).unwrap().state(), FileState::Released);
        assert_eq!(fs.alive(0xf1), None);
        assert_eq!(fs.alive_count_on(42), 0);
        fs.check().unwrap();
        // the pointer is reused: a new generation
        let k2 = fs.create(0xf1, 42, 0, 8, NameKind::None, "", RefHow::Open, a(6));
        assert_ne!(k, k2);
        assert_eq!(fs.alive(0xf1), Some(k2));
        assert_eq!(fs.get(k2).unwrap().state(), FileState::Unattributed);
    }

    #[test]
    fn slot_reuse_is_unattributed_and_release_clears_holders() {
        let mut fs = Files::default();
        let k = fs.create(0xf1, 1, 0, 7, NameKind::None, "", RefHow::Snapshot, a(1));
        let fd = HolderRef::Fd { tgid: 1, fd: 3 };
        fs.add_holder(k, fd, info(1));
        fs.remove_holder(k, &fd, DropReason::SlotReused, &a(2));
        assert_eq!(fs.get(k).unwrap().state(), FileState::Unattributed);
        fs.add_holder(k, fd, info(3));
        fs.release(
            k,
            Release {
                actor: a(4),
                chain: vec![],
                seen: true,
            },
        );
        assert!(fs.get(k).unwrap().holders.is_empty());
        assert!(fs.holding(&fd).is_empty());
        fs.check().unwrap();
    }

    #[test]
    fn eviction_prefers_released() {
        let mut fs = Files::default();
        let keys: Vec<FileKey> = (0..4)
            .map(|i| fs.create(0x10 + i, 1, 0, i, NameKind::None, "", RefHow::Open, a(i)))
            .collect();
        fs.release(
            keys[2],
            Release {
                actor: a(9),
                chain: vec![],
                seen: true,
            },
        );
        let gone = fs.evict_to(3);
        assert!(gone.is_empty());
        assert!(fs.get(keys[2]).is_none());
        let gone = fs.evict_to(2);
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].key, keys[0]);
        assert_eq!((fs.evicted_released, fs.evicted_alive), (1, 1));
        assert_eq!(fs.alive_count_on(1), 2);
        fs.check().unwrap();
    }

    #[test]
    fn released_history_is_bounded_and_alive_files_stay() {
        let mut fs = Files::default();
        let keys: Vec<FileKey> = (0..6)
            .map(|i| fs.create(0x10 + i, 1, 0, i, NameKind::None, "", RefHow::Open, a(i)))
            .collect();
        for &k in &keys[..4] {
            let release = Release {
                actor: a(9),
                chain: vec![],
                seen: true,
            };
            fs.release(k, release);
            fs.evict_released_to(2);
        }
        // the two latest releases kept, the older two dropped; the alive ones untouched
        assert!(fs.get(keys[0]).is_none() && fs.get(keys[1]).is_none());
        assert!(fs.get(keys[2]).is_some() && fs.get(keys[3]).is_some());
        assert_eq!(fs.alive_len(), 2);
        assert_eq!(fs.evicted_released, 2);
        fs.check().unwrap();
    }

    #[test]
    fn unknown_mount_is_learnt() {
        let mut fs = Files::default();
        let k = fs.create(0xf1, -1, 0, 7, NameKind::None, "", RefHow::Open, a(1));
        fs.set_mount(k, 5);
        assert_eq!(fs.alive_count_on(5), 1);
        assert_eq!(fs.alive_count_on(-1), 0);
        // a known mount is not overwritten
        fs.set_mount(k, 6);
        assert_eq!(fs.get(k).unwrap().mnt_id, 5);
        fs.check().unwrap();
    }
}
