//! Mounts: the mount table as the tracer last read it, plus mounts that left it while files
//! on them were still alive (lazy `umount -l`: detached but pinned), plus a bounded history
//! of mounts that are gone.

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;

use crate::event::MountInfo;
use crate::text::normalize_path;

/// How many umount attempts each mount keeps (the total is counted beyond that).
pub const MAX_ATTEMPTS_KEPT: usize = 64;

/// One `umount` of a mount, with its result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UmountAttempt {
    pub ts_ns: u64,
    /// The syscall's return (`-16` is EBUSY).
    pub ret: i64,
    /// `umount2` flags (`MNT_DETACH` = 2 is a lazy umount).
    pub flags: u32,
    pub pid: u32,
    pub tgid: u32,
    pub comm: crate::actor::Comm,
}

/// `umount2(2)` `MNT_DETACH`.
pub const MNT_DETACH: u32 = 2;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Mount {
    /// mountinfo's first column (the kernel reuses ids once a mount is really gone).
    pub id: i32,
    pub parent_id: i32,
    pub major: u32,
    pub minor: u32,
    pub root: String,
    pub mount_point: String,
    pub fs_type: String,
    pub source: String,
    /// When the engine first saw it in the table (not when it was mounted).
    pub first_seen_ns: u64,
    /// When it left the mount table (umount, lazy or not).
    pub left_table_ns: Option<u64>,
    /// When it was gone for good: left the table with no known file alive on it, or its
    /// last alive file was freed after it left.
    pub gone_ns: Option<u64>,
    /// The last [`MAX_ATTEMPTS_KEPT`] umount attempts.
    pub umount_attempts: Vec<UmountAttempt>,
    pub umount_attempts_total: u32,
    pub umount_ebusy_total: u32,
    /// Known from its mount call's record only (`Mounts::made`): its root, source and type
    /// are the call's, until a mount table read says (its identity is then its device).
    #[serde(skip)]
    pub from_call: bool,
}

impl Mount {
    fn from_info(mi: &MountInfo, ts: u64) -> Self {
        Mount {
            id: mi.mount_id,
            parent_id: mi.parent_id,
            major: mi.major,
            minor: mi.minor,
            root: mi.root.clone(),
            mount_point: normalize_path(&mi.mount_point),
            fs_type: mi.fs_type.clone(),
            source: mi.source.clone(),
            first_seen_ns: ts,
            left_table_ns: None,
            gone_ns: None,
            umount_attempts: Vec::new(),
            umount_attempts_total: 0,
            umount_ebusy_total: 0,
            from_call: false,
        }
    }

    /// The superblock's `s_dev` in the kernel's encoding (`major << 20 | minor`), as
    /// `FileRef.dev` carries it.
    pub fn dev(&self) -> u32 {
        (self.major << 20) | (self.minor & 0xf_ffff)
    }

    pub fn in_table(&self) -> bool {
        self.left_table_ns.is_none()
    }

    /// Left the table but still pinned by files that are alive.
    pub fn detached(&self) -> bool {
        self.left_table_ns.is_some() && self.gone_ns.is_none()
    }

    /// Same filesystem instance as a mountinfo line (a changed mount point is a move).
    fn same_identity(&self, mi: &MountInfo) -> bool {
        if self.from_call {
            return self.major == mi.major && self.minor == mi.minor;
        }
        self.major == mi.major
            && self.minor == mi.minor
            && self.fs_type == mi.fs_type
            && self.source == mi.source
            && self.root == mi.root
    }

    fn update(&mut self, mi: &MountInfo) {
        self.parent_id = mi.parent_id;
        self.mount_point = normalize_path(&mi.mount_point);
        if self.from_call {
            self.root = mi.root.clone();
            self.fs_type = mi.fs_type.clone();
            self.source = mi.source.clone();
            self.from_call = false;
        }
    }

    /// Its last umount went through: whatever has its id next is another mount.
    fn unmounted(&self) -> bool {
        self.umount_attempts.last().is_some_and(|a| a.ret == 0)
    }

    pub fn record_attempt(&mut self, a: UmountAttempt) {
        self.umount_attempts_total = self.umount_attempts_total.saturating_add(1);
        if a.ret == -16 {
            self.umount_ebusy_total = self.umount_ebusy_total.saturating_add(1);
        }
        if self.umount_attempts.len() >= MAX_ATTEMPTS_KEPT {
            self.umount_attempts.remove(0);
        }
        self.umount_attempts.push(a);
    }
}

/// What a mount-table refresh changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableChanges {
    pub added: Vec<i32>,
    /// Left the table while files on it are alive: detached but pinned.
    pub detached: Vec<i32>,
    /// Left the table and gone for good.
    pub gone: Vec<i32>,
    /// An id came back for a different filesystem (or for a mount we thought detached):
    /// the old instance went to the history.
    pub replaced: Vec<i32>,
}

#[derive(Clone, Debug, Default)]
pub struct Mounts {
    /// In the table, or detached but pinned; by id.
    live: BTreeMap<i32, Mount>,
    history: VecDeque<Mount>,
    /// A mount table was received at least once.
    pub seeded: bool,
    pub evicted: u64,
    pub ids_reused: u64,
}

impl Mounts {
    pub fn get(&self, id: i32) -> Option<&Mount> {
        self.live.get(&id)
    }

    pub fn get_mut(&mut self, id: i32) -> Option<&mut Mount> {
        self.live.get_mut(&id)
    }

    /// Mounts in the table and detached-but-pinned ones, by id.
    pub fn live(&self) -> impl Iterator<Item = &Mount> {
        self.live.values()
    }

    /// Mounts that are gone, oldest first.
    pub fn history(&self) -> impl Iterator<Item = &Mount> {
        self.history.iter()
    }

    pub fn history_len(&self) -> usize {
        self.history.len()
    }

    /// Applies a whole mount table read at `ts`. `alive_on` says whether any file on a
    /// mount id is alive (a mount leaving the table with alive files is detached, not gone).
    pub fn apply_table(
        &mut self,
        ts: u64,
        table: &[MountInfo],
        alive_on: impl Fn(i32) -> bool,
    ) -> TableChanges {
        self.seeded = true;
        let mut ch = TableChanges::default();
        let mut seen: BTreeMap<i32, &MountInfo> = BTreeMap::new();
        for mi in table {
            seen.insert(mi.mount_id, mi);
        }
        for (&id, mi) in &seen {
            match self.live.get_mut(&id) {
                Some(m) if m.in_table() && m.same_identity(mi) => m.update(mi),
                Some(_) => {
                    // The id came back: the mount we had under it is gone (its files, if we
                    // still think some are alive, were freed unseen).
                    if let Some(mut old) = self.live.remove(&id) {
                        old.left_table_ns.get_or_insert(ts);
                        old.gone_ns = Some(ts);
                        self.history.push_back(old);
                    }
                    self.ids_reused += 1;
                    self.live.insert(id, Mount::from_info(mi, ts));
                    ch.replaced.push(id);
                }
                None => {
                    self.live.insert(id, Mount::from_info(mi, ts));
                    ch.added.push(id);
                }
            }
        }
        let left: Vec<i32> = self
            .live
            .values()
            .filter(|m| m.in_table() && !seen.contains_key(&m.id))
            .map(|m| m.id)
            .collect();
        for id in left {
            if alive_on(id) {
                if let Some(m) = self.live.get_mut(&id) {
                    m.left_table_ns = Some(ts);
                }
                ch.detached.push(id);
            } else {
                self.retire(id, ts);
                ch.gone.push(id);
            }
        }
        ch
    }

    /// Learns mounts seen ahead of the ordered stream (`Payload::MountsAppeared`): only ids
    /// not known at all are added. A known id is left alone even when the table says it is
    /// another filesystem now: records about the old mount may still be queued, and the
    /// ordered table read after the umount settles it. Returns the ids added.
    ///
    /// Except when the known mount's umount was seen succeed and the id now names another
    /// mount (point, source or type): the kernel gave the id to a new mount. Under load the ordered table
    /// that would retire the old one can come after the new mount is gone again, and the
    /// new mount's EBUSYs would then name no mount.
    pub fn learn(&mut self, ts: u64, table: &[MountInfo]) -> Vec<i32> {
        let mut added = Vec::new();
        for mi in table {
            let reused = self.live.get(&mi.mount_id).is_some_and(|m| {
                (m.mount_point != mi.mount_point
                    || m.source != mi.source
                    || m.fs_type != mi.fs_type)
                    && m.unmounted()
            });
            if reused {
                self.retire(mi.mount_id, ts);
                self.ids_reused += 1;
            }
            if let std::collections::btree_map::Entry::Vacant(slot) = self.live.entry(mi.mount_id) {
                slot.insert(Mount::from_info(mi, ts));
                added.push(mi.mount_id);
            }
        }
        added
    }

    /// The mount a mount call's record says the call made (`Payload::MountMade`), in stream
    /// order. The kernel gives a live mount's id to no other, so a different mount known
    /// under that id (another device or type, or one whose umount went through) is gone:
    /// it goes to the history and its id is returned, for its files to be let go. The
    /// same mount known already (a move, or the watcher was first) is updated.
    pub fn made(&mut self, ts: u64, mi: &MountInfo) -> Option<i32> {
        let mut replaced = None;
        match self.live.get_mut(&mi.mount_id) {
            Some(m)
                if m.in_table() && !m.unmounted() && m.major == mi.major && m.minor == mi.minor =>
            {
                m.parent_id = mi.parent_id;
                m.mount_point = normalize_path(&mi.mount_point);
                return None;
            }
            Some(_) => {
                self.retire(mi.mount_id, ts);
                self.ids_reused += 1;
                replaced = Some(mi.mount_id);
            }
            None => {}
        }
        let mut m = Mount::from_info(mi, ts);
        m.from_call = true;
        self.live.insert(mi.mount_id, m);
        replaced
    }

    /// A detached mount's last file went away (or a mount is otherwise gone): to history.
    pub fn retire(&mut self, id: i32, ts: u64) -> Option<&Mount> {
        let mut m = self.live.remove(&id)?;
        m.left_table_ns.get_or_insert(ts);
        m.gone_ns = Some(ts);
        self.history.push_back(m);
        self.history.back()
    }

    pub fn evict_history_to(&mut self, cap: usize) {
        while self.history.len() > cap {
            self.history.pop_front();
            self.evicted += 1;
        }
    }

    /// The topmost mount in the table at `target`: among mounts at that exact path (stacked
    /// mounts), the one no other mount at that path has as its parent.
    pub fn mount_for_path(&self, target: &str) -> Option<&Mount> {
        let target = normalize_path(target);
        if target.is_empty() {
            return None;
        }
        let at: Vec<&Mount> = self
            .live
            .values()
            .filter(|m| m.in_table() && m.mount_point == target)
            .collect();
        let top = at
            .iter()
            .filter(|m| !at.iter().any(|o| o.parent_id == m.id && o.id != m.id))
            .max_by_key(|m| (m.first_seen_ns, m.id));
        top.or_else(|| at.iter().max_by_key(|m| (m.first_seen_ns, m.id)))
            .copied()
    }

    /// Mounts (in the table or detached) whose source is `source` (e.g. `/dev/loop1`).
    pub fn by_source(&self, source: &str) -> Vec<&Mount> {
        self.live.values().filter(|m| m.source == source).collect()
    }

    /// Mounts in the table directly under mount `id` (they make its umount fail too).
    pub fn children(&self, id: i32) -> Vec<&Mount> {
        self.live
            .values()
            .filter(|m| m.in_table() && m.parent_id == id && m.id != id)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn mi(id: i32, parent: i32, mp: &str, fs: &str, src: &str) -> MountInfo {
        MountInfo {
            mount_id: id,
            parent_id: parent,
            major: 7,
            minor: id as u32,
            root: "/".into(),
            mount_point: mp.into(),
            fs_type: fs.into(),
            source: src.into(),
        }
    }

    #[test]
    fn mounts_seen_early_add_only_unknown_ids() {
        let mut m = Mounts::default();
        m.apply_table(
            5,
            &[
                mi(1, 0, "/", "ext4", "/dev/vda1"),
                mi(40, 1, "/mnt", "xfs", "/dev/loop0"),
            ],
            |_| false,
        );
        // Id 40 now names a tmpfs in the table read ahead, but the xfs mount's umount may
        // still be queued: it stays. Id 41 is new: learnt.
        let added = m.learn(
            9,
            &[
                mi(40, 1, "/mnt", "tmpfs", "tmpfs"),
                mi(41, 1, "/scratch", "tmpfs", "tmpfs"),
            ],
        );
        assert_eq!(added, vec![41]);
        assert_eq!(m.get(40).unwrap().fs_type, "xfs");
        assert_eq!(m.mount_for_path("/scratch").unwrap().id, 41);
        // The ordered table read later settles both: 40 replaced, 41 gone (unmounted meanwhile).
        let ch = m.apply_table(
            12,
            &[
                mi(1, 0, "/", "ext4", "/dev/vda1"),
                mi(40, 1, "/mnt", "tmpfs", "tmpfs"),
            ],
            |_| false,
        );
        assert_eq!(ch.replaced, vec![40]);
        assert_eq!(ch.gone, vec![41]);
        assert!(
            m.history()
                .any(|h| h.id == 41 && h.mount_point == "/scratch")
        );
    }

    /// A mount call's record names the mount it made, in stream order: a different mount
    /// under that id is gone (its id returned), the same one (the watcher was first) is
    /// kept, and a table read later fills in what the record could not say.
    #[test]
    fn a_mount_made_replaces_what_had_its_id_before() {
        let mut m = Mounts::default();
        m.apply_table(5, &[mi(40, 1, "/mnt/fss3", "xfs", "/dev/loop0")], |_| false);
        // still mounted, same device: the same mount (moved, or seen early)
        assert_eq!(m.made(6, &mi(40, 1, "/mnt/fss3", "", "")), None);
        assert_eq!(m.get(40).unwrap().fs_type, "xfs");
        // its umount went through: the same device at the same id is a new mount
        let ok = UmountAttempt {
            ts_ns: 7,
            ret: 0,
            flags: 0,
            pid: 9,
            tgid: 9,
            comm: "umount".into(),
        };
        m.get_mut(40).unwrap().record_attempt(ok);
        let mut ext4 = mi(40, 1, "/mnt/fss3", "ext4", "/dev/loop0");
        ext4.root = "/".into();
        assert_eq!(m.made(8, &ext4), Some(40));
        assert_eq!(m.mount_for_path("/mnt/fss3").unwrap().fs_type, "ext4");
        // another device under the id: replaced, whatever its umount said
        let mut other = mi(40, 1, "/mnt/fss4", "xfs", "/dev/loop1");
        other.minor = 1;
        assert_eq!(m.made(9, &other), Some(40));
        assert!(m.mount_for_path("/mnt/fss3").is_none());
        assert_eq!(m.mount_for_path("/mnt/fss4").unwrap().id, 40);
        // the table agrees on the device: kept, with the table's fields
        let mut listed = other.clone();
        listed.source = "/dev/loop1p0".into();
        listed.root = "/sub".into();
        let ch = m.apply_table(10, &[listed], |_| false);
        assert!(ch.replaced.is_empty() && ch.added.is_empty());
        assert_eq!(m.get(40).unwrap().root, "/sub");
        assert!(!m.get(40).unwrap().from_call);
        assert_eq!(m.history().filter(|h| h.id == 40).count(), 2);
    }

    /// CI: under load the ordered table that retires an unmounted mount came after the
    /// next mount, which got its id, had been used and unmounted: its EBUSYs named no mount.
    #[test]
    fn an_id_seen_unmounted_is_learnt_again_for_the_next_mount() {
        let mut m = Mounts::default();
        m.apply_table(5, &[mi(40, 1, "/mnt/fss3", "xfs", "/dev/loop0")], |_| false);
        let ok = UmountAttempt {
            ts_ns: 6,
            ret: 0,
            flags: 0,
            pid: 9,
            tgid: 9,
            comm: "umount".into(),
        };
        m.get_mut(40).unwrap().record_attempt(ok);
        let added = m.learn(7, &[mi(40, 1, "/mnt/fss4", "xfs", "/dev/loop0")]);
        assert_eq!(added, vec![40]);
        assert_eq!(m.mount_for_path("/mnt/fss4").unwrap().id, 40);
        assert!(m.mount_for_path("/mnt/fss3").is_none());
        assert!(
            m.history()
                .any(|h| h.id == 40 && h.mount_point == "/mnt/fss3")
        );
        // The same mount handed on again changes nothing.
        assert!(
            m.learn(8, &[mi(40, 1, "/mnt/fss4", "xfs", "/dev/loop0")])
                .is_empty()
        );
    }

    #[test]
    fn stacked_mounts_pick_the_top_one() {
        let mut m = Mounts::default();
        let t = vec![
            mi(1, 0, "/", "ext4", "/dev/vda1"),
            mi(30, 1, "/mnt", "tmpfs", "tmpfs"),
            mi(31, 30, "/mnt", "xfs", "/dev/loop0"),
            mi(32, 31, "/mnt", "xfs", "/dev/loop1"),
            mi(33, 32, "/mnt/sub", "tmpfs", "tmpfs"),
        ];
        m.apply_table(5, &t, |_| false);
        assert_eq!(m.mount_for_path("/mnt/").unwrap().id, 32);
        assert_eq!(m.mount_for_path("/mnt//sub").unwrap().id, 33);
        assert_eq!(m.mount_for_path("/").unwrap().id, 1);
        assert!(m.mount_for_path("/nope").is_none());
        assert!(m.mount_for_path("").is_none());
        assert_eq!(
            m.children(32).iter().map(|m| m.id).collect::<Vec<_>>(),
            vec![33]
        );
        assert_eq!(m.get(31).unwrap().dev(), (7 << 20) | 31);
    }

    #[test]
    fn leaving_the_table_detaches_or_retires() {
        let mut m = Mounts::default();
        m.apply_table(
            1,
            &[
                mi(1, 0, "/", "ext4", "a"),
                mi(2, 1, "/x", "xfs", "b"),
                mi(3, 1, "/y", "xfs", "c"),
            ],
            |_| false,
        );
        let ch = m.apply_table(2, &[mi(1, 0, "/", "ext4", "a")], |id| id == 2);
        assert_eq!(ch.detached, vec![2]);
        assert_eq!(ch.gone, vec![3]);
        assert!(m.get(2).unwrap().detached());
        assert!(m.get(3).is_none());
        assert_eq!(m.history().next().unwrap().id, 3);
        // detached mounts are not at any path
        assert!(m.mount_for_path("/x").is_none());
        assert_eq!(m.by_source("b").len(), 1);
        // the id comes back for another filesystem: the detached one is replaced
        let ch = m.apply_table(
            3,
            &[mi(1, 0, "/", "ext4", "a"), mi(2, 1, "/z", "tmpfs", "t")],
            |_| true,
        );
        assert_eq!(ch.replaced, vec![2]);
        assert_eq!(m.get(2).unwrap().fs_type, "tmpfs");
        assert_eq!(m.ids_reused, 1);
        m.evict_history_to(1);
        assert_eq!(m.history_len(), 1);
        assert_eq!(m.evicted, 1);
    }

    #[test]
    fn a_move_keeps_the_mount() {
        let mut m = Mounts::default();
        m.apply_table(1, &[mi(2, 1, "/x", "xfs", "b")], |_| false);
        let ch = m.apply_table(2, &[mi(2, 1, "/moved", "xfs", "b")], |_| false);
        assert_eq!(ch, TableChanges::default());
        assert_eq!(m.get(2).unwrap().mount_point, "/moved");
        assert_eq!(m.get(2).unwrap().first_seen_ns, 1);
    }

    #[test]
    fn attempts_are_bounded() {
        let mut m = Mounts::default();
        m.apply_table(1, &[mi(2, 1, "/x", "xfs", "b")], |_| false);
        for i in 0..100 {
            m.get_mut(2).unwrap().record_attempt(UmountAttempt {
                ts_ns: i,
                ret: -16,
                flags: 0,
                pid: 1,
                tgid: 1,
                comm: "umount".into(),
            });
        }
        let mnt = m.get(2).unwrap();
        assert_eq!(mnt.umount_attempts.len(), MAX_ATTEMPTS_KEPT);
        assert_eq!(mnt.umount_attempts_total, 100);
        assert_eq!(mnt.umount_ebusy_total, 100);
        assert_eq!(mnt.umount_attempts[0].ts_ns, 36);
    }
}
