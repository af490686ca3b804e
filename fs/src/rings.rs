//! io_uring rings: owner, registered files and in-flight requests (as file holders, kept in
//! [`crate::files`]), the owner's fate, and the ring's teardown work (`io_ring_exit_work`).

use std::collections::{BTreeMap, VecDeque};

use foldhash::HashMap;

use serde::Serialize;

use crate::actor::Actor;

/// Progress of a ring's work item (teardown or fallback).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RingWork {
    pub queued: Option<Actor>,
    pub started: Option<Actor>,
    pub ended_ns: Option<u64>,
    pub runs: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Ring {
    /// The `io_ring_ctx *`.
    #[serde(serialize_with = "crate::text::ser_hex")]
    pub ctx: u64,
    pub serial: u64,
    pub owner_tgid: Option<u32>,
    pub owner_comm: crate::actor::Comm,
    /// The owner's [`crate::tasks::Task`] instance.
    pub owner_task: Option<u64>,
    /// The ring was created before attach: the owner is the first task seen using it.
    pub owner_inferred: bool,
    pub fd: Option<i32>,
    /// `UringCreate` time (None: created before attach).
    pub created_ns: Option<u64>,
    pub first_seen_ns: u64,
    pub sq_entries: u32,
    pub cq_entries: u32,
    pub flags: u32,
    pub register_calls: u32,
    pub last_register_ret: Option<i64>,
    /// `io_ring_exit_work`: the ring's teardown after its last file reference went.
    pub exit_work: RingWork,
    /// `io_fallback_req_func`: completes requests whose task is gone.
    pub fallback_work: RingWork,
    /// The ring was freed (its exit work ended), or vanished unseen.
    pub torn_down_ns: Option<u64>,
    pub teardown_seen: bool,
}

#[derive(Clone, Debug, Default)]
pub struct Rings {
    live: BTreeMap<u64, Ring>,
    retired: VecDeque<Ring>,
    /// Exit-work pointers matched to rings without the BTF offset (see `learn_exit_work`).
    work_to_ctx: HashMap<u64, u64>,
    next_serial: u64,
    pub evicted: u64,
}

impl Rings {
    pub fn get(&self, ctx: u64) -> Option<&Ring> {
        self.live.get(&ctx)
    }

    pub fn get_mut(&mut self, ctx: u64) -> Option<&mut Ring> {
        self.live.get_mut(&ctx)
    }

    pub fn live(&self) -> impl Iterator<Item = &Ring> {
        self.live.values()
    }

    pub fn retired(&self) -> impl DoubleEndedIterator<Item = &Ring> {
        self.retired.iter()
    }

    pub fn len(&self) -> usize {
        self.live.len() + self.retired.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn blank(&mut self, ctx: u64, ts: u64) -> Ring {
        self.next_serial += 1;
        Ring {
            ctx,
            serial: self.next_serial,
            owner_tgid: None,
            owner_comm: Default::default(),
            owner_task: None,
            owner_inferred: false,
            fd: None,
            created_ns: None,
            first_seen_ns: ts,
            sq_entries: 0,
            cq_entries: 0,
            flags: 0,
            register_calls: 0,
            last_register_ret: None,
            exit_work: RingWork::default(),
            fallback_work: RingWork::default(),
            torn_down_ns: None,
            teardown_seen: false,
        }
    }

    /// `UringCreate`. If a ring with this pointer existed, it was freed unseen: it is
    /// retired and returned (its holders must be dropped by the caller).
    #[allow(clippy::too_many_arguments)]
    pub fn create(
        &mut self,
        ctx: u64,
        owner: &Actor,
        owner_task: u64,
        fd: i32,
        sq: u32,
        cq: u32,
        flags: u32,
    ) -> Option<u64> {
        let old = self.live.contains_key(&ctx).then(|| {
            self.retire(ctx, owner.ts_ns, false);
            ctx
        });
        let mut r = self.blank(ctx, owner.ts_ns);
        r.owner_tgid = Some(owner.tgid);
        r.owner_comm = owner.comm.clone();
        r.owner_task = Some(owner_task);
        r.fd = Some(fd);
        r.created_ns = Some(owner.ts_ns);
        r.sq_entries = sq;
        r.cq_entries = cq;
        r.flags = flags;
        self.live.insert(ctx, r);
        old
    }

    /// A ring seen in use but created before attach: created with the user as probable owner.
    pub fn ensure(&mut self, ctx: u64, user: &Actor, user_task: Option<u64>) -> &mut Ring {
        if !self.live.contains_key(&ctx) {
            let mut r = self.blank(ctx, user.ts_ns);
            if user.work.is_none() {
                r.owner_tgid = Some(user.tgid);
                r.owner_comm = user.comm.clone();
                r.owner_task = user_task;
                r.owner_inferred = true;
            }
            self.live.insert(ctx, r);
        }
        self.live.get_mut(&ctx).expect("inserted above")
    }

    /// The ring is gone: kept in the history of retired rings.
    pub fn retire(&mut self, ctx: u64, ts: u64, seen: bool) -> Option<&Ring> {
        let mut r = self.live.remove(&ctx)?;
        r.torn_down_ns.get_or_insert(ts);
        r.teardown_seen = seen;
        self.work_to_ctx.retain(|_, c| *c != ctx);
        self.retired.push_back(r);
        self.retired.back()
    }

    /// Without the `exit_work` offset: an `io_ring_exit_work` queued by a plain task is the
    /// teardown of that task's only ring whose teardown was not queued yet.
    pub fn learn_exit_work(&mut self, work: u64, queuer_tgid: u32) -> Option<u64> {
        if let Some(ctx) = self.work_to_ctx.get(&work) {
            return Some(*ctx);
        }
        let mut candidates = self
            .live
            .values()
            .filter(|r| r.owner_tgid == Some(queuer_tgid) && r.exit_work.queued.is_none());
        let first = candidates.next()?;
        if candidates.next().is_some() {
            return None;
        }
        let ctx = first.ctx;
        self.work_to_ctx.insert(work, ctx);
        Some(ctx)
    }

    /// A work pointer matched earlier by [`Rings::learn_exit_work`].
    pub fn learned(&self, work: u64) -> Option<u64> {
        self.work_to_ctx.get(&work).copied()
    }

    /// Keeps at most `cap` rings: retired ones first, then the oldest live ones.
    pub fn evict_to(&mut self, cap: usize) {
        while self.len() > cap {
            if self.retired.pop_front().is_none() {
                let oldest = self.live.values().min_by_key(|r| r.serial).map(|r| r.ctx);
                let Some(ctx) = oldest else { break };
                self.live.remove(&ctx);
                self.work_to_ctx.retain(|_, c| *c != ctx);
            }
            self.evicted += 1;
        }
    }
}

/// Puts the records of a ring's requests on a file back in order before the engine sees
/// them. The kernel side counts those requests per (ring, file) and sends a record when
/// the count goes 0 -> 1 (`up`) or 1 -> 0; each carries the sequence number its change
/// made (`wire::UringReqDone`). A 1 -> 0 record can reach the ring buffer after the next
/// 0 -> 1 one from another CPU: its requests are over, but the newer ones are not, and
/// applied last it would end their hold. Such a stale end is dropped here; the record it
/// lost to already told everything that matters. (The reverse cannot happen: a request is
/// issued only after the record of its taking the file was sent.)
#[derive(Clone, Debug, Default)]
pub struct RequestOrder {
    /// (ring, file) -> the sequence number of the last `up` let through, until its end.
    started: HashMap<(u64, u64), u32>,
    /// Stale ends dropped.
    pub stale: u64,
}

/// (ring, file)s whose end has not come yet that [`RequestOrder`] keeps; past that it
/// forgets them all (an end never comes for a request that posts no completion).
const MAX_STARTED: usize = 1 << 16;

impl RequestOrder {
    /// Whether the record telling `c` goes on to the engine.
    pub fn admit(&mut self, c: crate::event::RequestChange) -> bool {
        let key = (c.ring, c.file);
        if c.up {
            if self.started.len() >= MAX_STARTED && !self.started.contains_key(&key) {
                self.started.clear();
            }
            self.started.insert(key, c.seq);
            return true;
        }
        match self.started.get(&key) {
            // A start newer than this end (sequence numbers wrap).
            Some(&up) if (up.wrapping_sub(c.seq) as i32) > 0 => {
                self.stale += 1;
                false
            }
            _ => {
                self.started.remove(&key);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RequestOrder;
    use crate::event::RequestChange;

    fn up(seq: u32) -> RequestChange {
        RequestChange {
            ring: 1,
            file: 2,
            seq,
            up: true,
        }
    }
    fn down(seq: u32) -> RequestChange {
        RequestChange {
            up: false,
            ..up(seq)
        }
    }

    #[test]
    fn request_changes_in_order_all_go_through() {
        let mut o = RequestOrder::default();
        // Two requests, then one more after both completed.
        for c in [up(1), down(4), up(5), down(6)] {
            assert!(o.admit(c), "{c:?}");
        }
        assert_eq!(o.stale, 0);
    }

    #[test]
    fn an_end_overtaken_by_the_next_start_is_dropped() {
        let mut o = RequestOrder::default();
        assert!(o.admit(up(1)));
        // The count went 1 -> 0 (seq 2) and 0 -> 1 (seq 3) on two CPUs; the second
        // record came first.
        assert!(o.admit(up(3)));
        assert!(
            !o.admit(down(2)),
            "stale: the newer requests still hold the file"
        );
        assert_eq!(o.stale, 1);
        // The newer requests' own end goes through, and nothing is left waiting.
        assert!(o.admit(down(4)));
        assert!(o.started.is_empty());
    }

    #[test]
    fn an_end_that_comes_after_a_later_end_changes_nothing_the_engine_keeps() {
        let mut o = RequestOrder::default();
        // up 1, down 2 (delayed), up 3, down 4: the delayed end comes last.
        assert!(o.admit(up(1)));
        assert!(o.admit(up(3)));
        assert!(o.admit(down(4)));
        // No start is known any more: it goes on, and finds no holder in the engine.
        assert!(o.admit(down(2)));
        // Another start after it, and the delayed end arriving only now is stale.
        assert!(o.admit(up(5)));
        assert!(!o.admit(down(2)));
    }

    #[test]
    fn sequence_numbers_wrap() {
        let mut o = RequestOrder::default();
        assert!(o.admit(up(u32::MAX)));
        assert!(o.admit(up(1)));
        assert!(!o.admit(down(0)), "0 comes before 1 across the wrap");
        assert!(o.admit(down(2)));
    }

    #[test]
    fn rings_and_files_are_ordered_apart() {
        let mut o = RequestOrder::default();
        assert!(o.admit(up(10)));
        let other = RequestChange { file: 3, ..down(2) };
        assert!(
            o.admit(other),
            "another file's end is not compared with this start"
        );
    }

    use super::*;

    fn a(ts: u64, pid: u32) -> Actor {
        Actor {
            ts_ns: ts,
            pid,
            tgid: pid,
            comm: format!("p{pid}").into(),
            work: None,
            work_instance: None,
            ring: None,
            task_exited: false,
        }
    }

    #[test]
    fn create_reuse_retire_evict() {
        let mut r = Rings::default();
        assert_eq!(r.create(0x100, &a(1, 5), 1, 4, 8, 16, 0), None);
        assert_eq!(r.get(0x100).unwrap().owner_comm, "p5");
        // the pointer comes back: the old ring was freed unseen
        assert_eq!(r.create(0x100, &a(2, 6), 2, 4, 8, 16, 0), Some(0x100));
        assert_eq!(r.retired().next().unwrap().owner_tgid, Some(5));
        assert!(!r.retired().next().unwrap().teardown_seen);
        // a ring from before attach
        let g = r.ensure(0x200, &a(3, 7), Some(3));
        assert!(g.owner_inferred && g.created_ns.is_none());
        r.retire(0x200, 4, true);
        assert_eq!(r.len(), 3);
        r.evict_to(1);
        assert_eq!(r.len(), 1);
        assert!(r.get(0x100).is_some());
        r.evict_to(0);
        assert!(r.is_empty());
        assert_eq!(r.evicted, 3);
    }

    #[test]
    fn exit_work_learnt_only_when_unambiguous() {
        let mut r = Rings::default();
        r.create(0x100, &a(1, 5), 1, 4, 8, 16, 0);
        assert_eq!(r.learn_exit_work(0x999, 5), Some(0x100));
        assert_eq!(r.learned(0x999), Some(0x100));
        r.create(0x300, &a(1, 8), 1, 4, 8, 16, 0);
        r.create(0x400, &a(1, 8), 1, 5, 8, 16, 0);
        assert_eq!(r.learn_exit_work(0x777, 8), None);
        r.retire(0x100, 9, true);
        assert_eq!(r.learned(0x999), None);
    }
}
