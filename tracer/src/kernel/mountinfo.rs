//! `/proc/self/mountinfo`, parsed into the engine's `MountInfo`.
//!
//! Parsed here rather than with `procfs-core` (0.18): its `MountInfo` leaves the kernel's
//! octal escapes in paths (`\040`), turns a `none` source into no source, and builds two
//! option maps per line, on a path a mount loop takes hundreds of times a second.

use std::{
    collections::{HashSet, VecDeque},
    fs::File,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use tokio::io::{Interest, unix::AsyncFd};
use tracer_fs::event::MountInfo;

/// What the live stream tells the engine about the mount table, and when.
///
/// Records can sit in the ring buffer a while; a table read now may be ahead of them. So:
/// - new mounts are handed on as soon as they are seen (`MountsAppeared`: the engine only
///   adds unknown ids from it), by the watcher the kernel wakes with POLLPRI on every
///   change of our namespace's table, and right after each mount call's record;
/// - the whole table, with its removals, in stream order: it is read once the ring buffer
///   has been drained after a mount call (or after `TABLE_DUE_MAX_BATCHES` batches of a
///   ring that never empties), stamped with the time of the read, and handed on only when
///   every record made before that time has been (a record stamped later comes, or the
///   ring is drained again). So the removal of a mount is never applied before records of
///   that mount still queued (a mount made, used and unmounted while the ring lagged, or
///   while the tracer waited for a CPU between a drain and the read).
pub struct Feed {
    watch: Option<AsyncFd<File>>,
    known: HashSet<i32>,
    /// Batches drained since a mount call asked for the whole table.
    table_due: Option<u32>,
    /// The mount at a successful mount call's target, read when the urgent ring brought
    /// the call (at once), by the call's (thread, time), for its record in the main ring:
    /// a tracer far behind (seconds, under load) may reach the record after the mount is
    /// gone again, and would never know the mount its EBUSYs were about.
    early: VecDeque<(CallKey, MountInfo)>,
    /// When the whole table was last read for the engine, and by the watcher: a loop of
    /// mounts would otherwise have the table read (and parsed) several times per mount.
    table_read: Option<Instant>,
    watch_read: Option<Instant>,
    /// The whole table as read at a time (boot clock), waiting for the records before it.
    table: TableGate,
}

/// A whole-table read waiting for its place in the stream: the records made before the
/// read. Reading it "now" and handing it on at once put it ahead of queued records: under
/// load (a lagging ring, or the tracer waiting for a CPU right after a drain), the umount
/// of a mount whose opens were still queued was applied first, the mount retired, and its
/// files' opens then belonged to no mount we knew ("no open file on it that we know of").
#[derive(Debug, Default)]
pub struct TableGate {
    pending: Option<(u64, Vec<MountInfo>)>,
}

impl TableGate {
    /// A table read at `ts_ns`; true when none was waiting (else this one is dropped: the
    /// waiting one goes first, and the next is read after it).
    pub fn offer(&mut self, ts_ns: u64, table: Vec<MountInfo>) -> bool {
        if self.pending.is_some() {
            return false;
        }
        self.pending = Some((ts_ns, table));
        true
    }

    pub fn waiting(&self) -> bool {
        self.pending.is_some()
    }

    /// The table, with its time, if a record stamped `ts_ns` is about to be handed on and
    /// the table was read before it.
    pub fn before(&mut self, ts_ns: u64) -> Option<(u64, Vec<MountInfo>)> {
        if self.pending.as_ref().is_some_and(|(t, _)| *t <= ts_ns) {
            self.pending.take()
        } else {
            None
        }
    }

    /// The table, with its time, once the ring was drained after the read.
    pub fn drained(&mut self) -> Option<(u64, Vec<MountInfo>)> {
        self.pending.take()
    }
}

/// The whole table is handed on at most this often (removals wait that long at most;
/// additions come from the records, or the watcher).
const TABLE_GAP: Duration = Duration::from_millis(250);

/// The watcher reads the table at most this often.
const WATCH_GAP: Duration = Duration::from_millis(100);

/// A record's (thread id, time): the same on its urgent copy and in the main ring.
pub type CallKey = (u32, u64);

/// Mounts kept from early reads at most.
const EARLY_MAX: usize = 256;

/// A ring buffer that never empties still gets the whole table after this many batches.
const TABLE_DUE_MAX_BATCHES: u32 = 16;

impl Feed {
    /// `table` is the table the caller already handed on (read at attach). Without the
    /// watcher (an error says why), new mounts are learnt from mount calls' records only.
    pub fn new(table: &[MountInfo]) -> (Feed, Option<anyhow::Error>) {
        let watch = File::open("/proc/self/mountinfo")
            .context("opening /proc/self/mountinfo")
            .and_then(|file| {
                // SAFETY: the feed owns the file, so the fd stays open while registered.
                unsafe { AsyncFd::register_with_interest(file, Interest::PRIORITY) }
                    .context("watching /proc/self/mountinfo")
            });
        let (watch, err) = match watch {
            Ok(w) => (Some(w), None),
            Err(e) => (None, Some(e)),
        };
        let feed = Feed {
            watch,
            known: table.iter().map(|m| m.mount_id).collect(),
            table_due: None,
            early: VecDeque::new(),
            table_read: None,
            watch_read: None,
            table: TableGate::default(),
        };
        (feed, err)
    }

    /// Waits for the kernel to flag a table change (never, without the watcher), then
    /// returns the mounts not handed on before (often none: a umount, or already seen).
    /// Changes coming faster than `WATCH_GAP` are read together.
    pub async fn changed(&mut self) -> Result<Vec<MountInfo>> {
        let last = self.watch_read;
        let Some(w) = &mut self.watch else {
            return std::future::pending().await;
        };
        let mut ready = w.ready_mut(Interest::PRIORITY).await?;
        if let Some(t) = last {
            // Cancel-safe: dropped while asleep, the readiness is still set.
            tokio::time::sleep(WATCH_GAP.saturating_sub(t.elapsed())).await;
        }
        ready.clear_ready();
        drop(ready);
        self.watch_read = Some(Instant::now());
        self.appeared()
    }

    /// Reads the table now and returns the mounts not handed on before.
    pub fn appeared(&mut self) -> Result<Vec<MountInfo>> {
        let table = read()?;
        let new = table
            .iter()
            .filter(|m| !self.known.contains(&m.mount_id))
            .cloned()
            .collect();
        self.known = table.iter().map(|m| m.mount_id).collect();
        Ok(new)
    }

    /// The urgent ring said the mount call `key` at `target` succeeded: the mount now at
    /// `target` is kept for the call's record (`appeared_at`), whether handed on before or
    /// not (the watcher's hand-on may have reached the engine while it still held that id
    /// for the mount before: the kernel reuses the smallest free id).
    pub fn note_early(&mut self, key: CallKey, target: &str) -> Result<()> {
        if let Some(m) = top_at(read()?, target) {
            if self.early.len() >= EARLY_MAX {
                self.early.pop_front();
            }
            self.early.push_back((key, m));
        }
        Ok(())
    }

    /// The mount call `key`'s record told the mount it made: its early read is not needed.
    pub fn made(&mut self, key: CallKey) {
        take_early(&mut self.early, key);
    }

    /// The mount call `key`'s record: the mounts not handed on before, and the mount the
    /// early read saw at its target, again, in stream order, where the engine can tell it
    /// from the mount that had its id before (CI's fsstress test saw EBUSYs that named no
    /// mount when that hand-on depended on whether the watcher had been first).
    pub fn appeared_at(&mut self, key: CallKey) -> Result<Vec<MountInfo>> {
        let mut new = self.appeared()?;
        if let Some(m) = take_early(&mut self.early, key)
            && !new
                .iter()
                .any(|n| n.mount_id == m.mount_id && n.mount_point == m.mount_point)
        {
            new.push(m);
        }
        Ok(new)
    }

    /// A mount call succeeded: the whole table is due once the ring is drained.
    pub fn table_due(&mut self) {
        self.table_due.get_or_insert(0);
    }

    /// Reads the whole table if it is due (`drained`: the ring buffer was emptied, else one
    /// more batch went by), for `table_before`/`table_drained` to hand on in its place.
    pub fn read_table_if_due(&mut self, drained: bool) -> Result<()> {
        let Some(batches) = self.table_due else {
            return Ok(());
        };
        let recent = self.table_read.is_some_and(|t| t.elapsed() < TABLE_GAP);
        if (!drained && batches < TABLE_DUE_MAX_BATCHES) || recent || self.table.waiting() {
            self.table_due = Some(batches.saturating_add(1));
            return Ok(());
        }
        self.table_due = None;
        self.table_read = Some(Instant::now());
        let at = crate::kernel::clock::boottime_ns();
        let table = read()?;
        self.known = table.iter().map(|m| m.mount_id).collect();
        self.table.offer(at, table);
        Ok(())
    }

    /// The table read before a record stamped `ts_ns`, to hand on before that record.
    pub fn table_before(&mut self, ts_ns: u64) -> Option<(u64, Vec<MountInfo>)> {
        self.table.before(ts_ns)
    }

    /// The table waiting, once the ring was drained after it was read.
    pub fn table_drained(&mut self) -> Option<(u64, Vec<MountInfo>)> {
        self.table.drained()
    }
}

/// The topmost mount at `target` (mountinfo lists a mount stacked on another after it).
fn top_at(table: Vec<MountInfo>, target: &str) -> Option<MountInfo> {
    if target.is_empty() {
        return None; // fsmount(): no path yet
    }
    let target = match target.trim_end_matches('/') {
        "" => "/",
        t => t,
    };
    table.into_iter().rfind(|m| m.mount_point == target)
}

/// The early read kept for `key`. Calls reach the main ring in the order their urgent
/// copies came, so reads kept for earlier calls (whose records were lost) go too.
fn take_early(early: &mut VecDeque<(CallKey, MountInfo)>, key: CallKey) -> Option<MountInfo> {
    let i = early.iter().position(|(k, _)| *k == key)?;
    early.drain(..i);
    early.pop_front().map(|(_, m)| m)
}

pub fn read() -> Result<Vec<MountInfo>> {
    let text =
        std::fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    Ok(parse(&text))
}

/// Undoes the kernel's octal escapes (`\040` for a space) in mountinfo paths.
pub(crate) fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue`
pub fn parse(text: &str) -> Vec<MountInfo> {
    text.lines()
        .filter_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            let mut a = pre.split(' ');
            let mount_id = a.next()?.parse().ok()?;
            let parent_id = a.next()?.parse().ok()?;
            let (major, minor) = a.next()?.split_once(':')?;
            let root = unescape(a.next()?);
            let mount_point = unescape(a.next()?);
            let mut b = post.split(' ');
            let fs_type = b.next()?.to_string();
            let source = unescape(b.next().unwrap_or(""));
            Some(MountInfo {
                mount_id,
                parent_id,
                major: major.parse().ok()?,
                minor: minor.parse().ok()?,
                root,
                mount_point,
                fs_type,
                source,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {

    fn at(id: i32, point: &str) -> MountInfo {
        MountInfo {
            mount_id: id,
            parent_id: 1,
            major: 7,
            minor: 0,
            root: "/".into(),
            mount_point: point.into(),
            fs_type: "xfs".into(),
            source: "/dev/loop0".into(),
        }
    }

    #[test]
    fn a_table_waits_for_the_records_made_before_its_read() {
        let mut g = TableGate::default();
        assert!(g.offer(100, vec![at(7, "/a")]));
        // Another read while one waits is not taken: the waiting one goes first.
        assert!(!g.offer(150, vec![]));
        // Records made before the read are handed on first.
        assert!(g.before(40).is_none());
        assert!(g.before(99).is_none());
        let (ts, t) = g
            .before(100)
            .expect("the table, before the first later record");
        assert_eq!((ts, t[0].mount_id), (100, 7));
        assert!(g.before(500).is_none());
        // A drained ring hands on what waits, whatever the records' times.
        assert!(g.offer(300, vec![]));
        assert!(g.drained().is_some());
        assert!(g.drained().is_none());
    }

    #[test]
    fn an_early_read_is_kept_for_its_own_call() {
        let mut early: VecDeque<(CallKey, MountInfo)> = [
            ((1, 10), at(48, "/mnt/s")),
            ((2, 20), at(49, "/mnt/t")),
            ((1, 30), at(48, "/mnt/u")),
        ]
        .into();
        // an unknown call takes nothing and drops nothing
        assert!(take_early(&mut early, (9, 9)).is_none());
        assert_eq!(early.len(), 3);
        // the second call's read; the first one's (its record lost) goes with it
        assert_eq!(
            take_early(&mut early, (2, 20)).map(|m| m.mount_point),
            Some("/mnt/t".into())
        );
        assert_eq!(early.len(), 1);
        assert!(take_early(&mut early, (1, 10)).is_none());
        assert_eq!(
            take_early(&mut early, (1, 30)).map(|m| m.mount_id),
            Some(48)
        );
    }

    #[test]
    fn the_top_mount_at_a_path_is_the_last_listed() {
        let table = vec![at(40, "/mnt/s"), at(41, "/mnt/t"), at(42, "/mnt/s")];
        assert_eq!(
            top_at(table.clone(), "/mnt/s/").map(|m| m.mount_id),
            Some(42)
        );
        assert!(top_at(table, "/mnt").is_none());
    }

    use super::*;

    #[test]
    fn parses_lines_and_escapes() {
        let m = parse(
            "36 35 98:0 /mnt1 /mnt\\040two rw,noatime master:1 - ext3 /dev/root rw\n\
             garbage line\n\
             40 36 0:50 / /tmp/x rw - tmpfs tmpfs rw\n",
        );
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].mount_id, 36);
        assert_eq!(m[0].mount_point, "/mnt two");
        assert_eq!((m[0].major, m[0].minor), (98, 0));
        assert_eq!(m[0].root, "/mnt1");
        assert_eq!(m[1].fs_type, "tmpfs");
        assert_eq!(m[1].parent_id, 36);
    }
}
