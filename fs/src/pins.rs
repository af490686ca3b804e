//! What processes hold on mounts besides files: their cwd and root (`fs_struct`). No hook
//! sees a `chdir` or the `fs_struct` a child inherits, so pins are learnt from task scans
//! (run when a umount fails) and from each process's exit tracepoint (which reads them as
//! its exit begins: a killed process can take many ms more to let go, and may be gone by
//! the time a scan runs). A pin ends when the process's `fs_struct` is freed (its
//! `exit_fs()`), or when a later scan of the same mount no longer finds it; an exiting
//! process's pin that a scan missed waits for its exit's end (still to come in the
//! stream, since scans run ahead of it), or for a second scan that misses it.

use std::collections::BTreeMap;

use crate::verdict::PinKind;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pin {
    /// The process instance (`Tasks` serial).
    pub task: u64,
    pub tgid: u32,
    pub kind: PinKind,
    pub mnt_id: i32,
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
    /// Read at the process's exit tracepoint (not only found by a scan).
    pub from_exit: bool,
    /// A scan started then did not find it: let go before the scan, its release not seen yet.
    pub gone_ns: Option<u64>,
}

#[derive(Clone, Debug, Default)]
pub struct Pins {
    by_key: BTreeMap<(u64, PinKind), Pin>,
    pub evicted: u64,
}

impl Pins {
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// A scan found `kind` of process instance `task` on `mnt_id`. Returns the pin it
    /// replaced when that was on another mount (the process moved: the old one let go).
    pub fn seen(
        &mut self,
        task: u64,
        tgid: u32,
        kind: PinKind,
        mnt_id: i32,
        ts: u64,
    ) -> Option<Pin> {
        self.learnt(task, tgid, kind, mnt_id, ts, false)
    }

    /// The exit tracepoint of process instance `task` read its `kind` on `mnt_id`.
    pub fn at_exit(
        &mut self,
        task: u64,
        tgid: u32,
        kind: PinKind,
        mnt_id: i32,
        ts: u64,
    ) -> Option<Pin> {
        self.learnt(task, tgid, kind, mnt_id, ts, true)
    }

    fn learnt(
        &mut self,
        task: u64,
        tgid: u32,
        kind: PinKind,
        mnt_id: i32,
        ts: u64,
        from_exit: bool,
    ) -> Option<Pin> {
        let key = (task, kind);
        match self.by_key.get_mut(&key) {
            Some(p) if p.mnt_id == mnt_id => {
                p.last_seen_ns = p.last_seen_ns.max(ts);
                p.from_exit |= from_exit;
                if !from_exit {
                    p.gone_ns = None;
                }
                None
            }
            _ => self.by_key.insert(
                key,
                Pin {
                    task,
                    tgid,
                    kind,
                    mnt_id,
                    first_seen_ns: ts,
                    last_seen_ns: ts,
                    from_exit,
                    gone_ns: None,
                },
            ),
        }
    }

    /// The pins on `mnt_id` that the last scan did not find gone.
    pub fn held_on(&self, mnt_id: i32) -> usize {
        self.by_key
            .values()
            .filter(|p| p.mnt_id == mnt_id && p.gone_ns.is_none())
            .count()
    }

    /// The pins on `mnt_id`, by process then kind.
    pub fn on_mount(&self, mnt_id: i32) -> Vec<&Pin> {
        self.by_key
            .values()
            .filter(|p| p.mnt_id == mnt_id)
            .collect()
    }

    /// Removes every pin of process instance `task` (its fs_struct is gone).
    pub fn release_task(&mut self, task: u64) -> Vec<Pin> {
        let keys: Vec<_> = self
            .by_key
            .range((task, PinKind::Cwd)..=(task, PinKind::Root))
            .map(|(k, _)| *k)
            .collect();
        keys.iter().filter_map(|k| self.by_key.remove(k)).collect()
    }

    /// Removes the pins on `mounts` that a scan started at `started_ns` did not find, but
    /// for those `awaits_release` says will be released by an event still to come (an
    /// exiting process's): those are marked gone, and removed by the next scan that misses
    /// them if that event never came.
    pub fn stale(
        &mut self,
        mounts: &[i32],
        started_ns: u64,
        awaits_release: impl Fn(&Pin) -> bool,
    ) -> Vec<Pin> {
        let mut keys = Vec::new();
        for (k, p) in self.by_key.iter_mut() {
            if !mounts.contains(&p.mnt_id) || p.last_seen_ns >= started_ns {
                continue;
            }
            if p.gone_ns.is_none() && awaits_release(p) {
                p.gone_ns = Some(started_ns);
            } else {
                keys.push(*k);
            }
        }
        keys.iter().filter_map(|k| self.by_key.remove(k)).collect()
    }

    /// Forgets every pin on `mnt_id` (the mount is gone; its id may be reused).
    pub fn clear_mount(&mut self, mnt_id: i32) {
        self.by_key.retain(|_, p| p.mnt_id != mnt_id);
    }

    /// Keeps at most `cap` pins, the least recently seen go first.
    pub fn evict_to(&mut self, cap: usize) {
        while self.by_key.len() > cap {
            let Some(k) = self
                .by_key
                .iter()
                .min_by_key(|(_, p)| p.last_seen_ns)
                .map(|(k, _)| *k)
            else {
                break;
            };
            self.by_key.remove(&k);
            self.evicted += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_moved_released_and_stale() {
        let mut p = Pins::default();
        assert_eq!(p.seen(1, 10, PinKind::Cwd, 40, 100), None);
        assert_eq!(p.seen(1, 10, PinKind::Root, 1, 100), None);
        assert_eq!(p.seen(2, 20, PinKind::Cwd, 40, 100), None);
        // seen again on the same mount: refreshed
        assert_eq!(p.seen(2, 20, PinKind::Cwd, 40, 300), None);
        assert_eq!(p.on_mount(40).len(), 2);
        // process 1 moved its cwd elsewhere
        let old = p.seen(1, 10, PinKind::Cwd, 41, 300).unwrap();
        assert_eq!(old.mnt_id, 40);
        assert_eq!(p.on_mount(40).len(), 1);
        // a scan of mount 41 at 400 did not find process 1 there
        let gone = p.stale(&[41], 400, |_| false);
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].task, 1);
        // process 1's fs_struct freed: its root pin goes too
        assert_eq!(p.release_task(1).len(), 1);
        assert_eq!(p.len(), 1);
        p.evict_to(0);
        assert!(p.is_empty());
        assert_eq!(p.evicted, 1);
    }

    #[test]
    fn exit_pins_missed_by_a_scan_wait_for_their_release() {
        let mut p = Pins::default();
        // read at the exit tracepoint of process 7 (cwd on 48) at 100
        assert_eq!(p.at_exit(7, 70, PinKind::Cwd, 48, 100), None);
        assert!(p.on_mount(48)[0].from_exit);
        assert_eq!(p.held_on(48), 1);
        // a scan at 200 misses it: the exit's end is still to come in the stream
        assert!(p.stale(&[48], 200, |_| true).is_empty());
        assert_eq!(p.on_mount(48)[0].gone_ns, Some(200));
        assert_eq!(p.held_on(48), 0);
        assert_eq!(p.on_mount(48).len(), 1);
        // its exit's end never came: the next scan that misses it removes it
        assert_eq!(p.stale(&[48], 300, |_| true).len(), 1);
        assert!(p.is_empty());
        // a scan finding it again clears the mark
        p.at_exit(8, 80, PinKind::Cwd, 48, 100);
        p.stale(&[48], 200, |_| true);
        p.seen(8, 80, PinKind::Cwd, 48, 210);
        assert_eq!(p.held_on(48), 1);
        assert!(p.on_mount(48)[0].from_exit);
    }
}
