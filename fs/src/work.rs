//! Deferred work: every queue/run of a followed work item (an *instance*), who asked for
//! it (the arming context for a delayed work, else the queueing context), and per-function
//! latency (queue → start) and run time. Chains of "who queued whom" are built from here.

use std::collections::{BTreeMap, VecDeque};

use foldhash::HashMap;

use serde::Serialize;

use crate::actor::Actor;

/// One queue → start → end of a work item.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WorkInstance {
    pub serial: u64,
    /// The `work_struct *`.
    #[serde(serialize_with = "crate::text::ser_hex")]
    pub work: u64,
    #[serde(serialize_with = "crate::text::ser_hex")]
    pub function: u64,
    /// Who armed the timer of this delayed work (`WorkArmed`): the real asker.
    pub armed: Option<Actor>,
    /// Further arming requests before it ran (it runs once for all of them).
    pub extra_arms: u32,
    pub delay_jiffies: Option<u64>,
    /// The `queue_work` (for a delayed work: from its timer, so its task is meaningless).
    pub queued: Option<Actor>,
    pub target_cpu: Option<i32>,
    pub started: Option<Actor>,
    pub ended_ns: Option<u64>,
}

impl WorkInstance {
    fn new(serial: u64, work: u64, function: u64) -> Self {
        WorkInstance {
            serial,
            work,
            function,
            armed: None,
            extra_arms: 0,
            delay_jiffies: None,
            queued: None,
            target_cpu: None,
            started: None,
            ended_ns: None,
        }
    }

    /// Armed or queued, not started yet.
    pub fn waiting(&self) -> bool {
        self.started.is_none()
            && self.ended_ns.is_none()
            && (self.armed.is_some() || self.queued.is_some())
    }

    pub fn running(&self) -> bool {
        self.started.is_some() && self.ended_ns.is_none()
    }

    pub fn done(&self) -> bool {
        self.ended_ns.is_some()
    }

    /// Who asked for this run: the arming context when seen, else the queueing one.
    /// `delayed` says the function is a delayed work whose queueing comes from its timer
    /// (softirq context: the header names whatever task, or kworker, was interrupted).
    pub fn asker(&self, delayed: bool) -> Option<(&Actor, LinkRole)> {
        if let Some(a) = &self.armed {
            return Some((a, LinkRole::ArmedBy));
        }
        let q = self.queued.as_ref()?;
        if delayed {
            Some((q, LinkRole::QueuedByTimer))
        } else {
            Some((q, LinkRole::QueuedBy))
        }
    }
}

/// Count, last, worst and total of a duration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Durations {
    pub count: u64,
    pub last_ns: u64,
    pub worst_ns: u64,
    pub total_ns: u64,
}

impl Durations {
    pub fn add(&mut self, ns: u64) {
        self.count += 1;
        self.last_ns = ns;
        self.worst_ns = self.worst_ns.max(ns);
        self.total_ns = self.total_ns.saturating_add(ns);
    }

    pub fn mean_ns(&self) -> u64 {
        self.total_ns.checked_div(self.count).unwrap_or(0)
    }
}

/// Per work function counters since attach (not affected by eviction).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FnCounters {
    pub armed: u64,
    pub queued: u64,
    pub started: u64,
    pub ended: u64,
    /// Queue → start.
    pub latency: Durations,
    /// Start → end.
    pub run: Durations,
}

/// How a chain link relates to the one before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkRole {
    /// The work item that did the release (first link).
    Ran,
    /// The release ran from task_work (`____fput`) of a task (first link).
    TaskWork,
    /// Armed the timer of the previous link's delayed work.
    ArmedBy,
    /// Queued the previous link's work.
    QueuedBy,
    /// The previous link's delayed work was queued by its timer; who armed it was not seen.
    QueuedByTimer,
    /// Dropped the file's last reference we saw, handing it to the previous link.
    PutBy,
    /// The previous link's origin was not seen (queued before attach, or events lost).
    Unseen,
}

/// One step of a deferral chain, e.g. "armed by io_ring_exit_work (kworker/u8:3) for ring 0x…".
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChainLink {
    pub role: LinkRole,
    pub ts_ns: u64,
    pub pid: u32,
    pub tgid: u32,
    pub comm: crate::actor::Comm,
    /// The work item this context was executing.
    #[serde(serialize_with = "crate::text::ser_hex_opt")]
    pub work: Option<u64>,
    #[serde(serialize_with = "crate::text::ser_hex_opt")]
    pub function: Option<u64>,
    pub function_name: Option<String>,
    #[serde(serialize_with = "crate::text::ser_hex_opt")]
    pub ring: Option<u64>,
    /// The task's process had exited (this happened on its exit path).
    pub task_exited: bool,
}

impl ChainLink {
    pub fn from_actor(a: &Actor, role: LinkRole, name: impl Fn(u64) -> String) -> Self {
        ChainLink {
            role,
            ts_ns: a.ts_ns,
            pid: a.pid,
            tgid: a.tgid,
            comm: a.comm.clone(),
            work: a.work.map(|w| w.work),
            function: a.work.map(|w| w.function),
            function_name: a.work.map(|w| name(w.function)),
            ring: a.ring,
            task_exited: a.task_exited,
        }
    }

    pub fn unseen(ts_ns: u64) -> Self {
        ChainLink {
            role: LinkRole::Unseen,
            ts_ns,
            pid: 0,
            tgid: 0,
            comm: Default::default(),
            work: None,
            function: None,
            function_name: None,
            ring: None,
            task_exited: false,
        }
    }

    /// [`ChainLink::who`] without the ring (when the sentence already names it).
    pub fn who_without_ring(&self) -> String {
        ChainLink {
            ring: None,
            ..self.clone()
        }
        .who()
    }

    /// The context in words: `io_ring_exit_work (kworker/u8:3) for ring 0x…`, `pid 1234 (fsstress) at exit`.
    pub fn who(&self) -> String {
        let mut s = match &self.function_name {
            Some(f) => format!("{f} ({})", self.comm),
            None => format!("pid {} ({})", self.tgid, self.comm),
        };
        if let Some(r) = self.ring {
            s.push_str(&format!(" for ring {}", crate::text::hex(r)));
        }
        if self.function_name.is_none() && self.task_exited {
            s.push_str(" at exit");
        }
        s
    }
}

impl std::fmt::Display for ChainLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.role {
            LinkRole::Ran => write!(f, "{}", self.who()),
            LinkRole::TaskWork => {
                write!(
                    f,
                    "task_work (____fput) of pid {} ({})",
                    self.tgid, self.comm
                )?;
                if self.task_exited {
                    write!(f, " at exit")?;
                }
                Ok(())
            }
            LinkRole::ArmedBy => write!(f, "armed by {}", self.who()),
            LinkRole::QueuedBy => write!(f, "queued by {}", self.who()),
            LinkRole::QueuedByTimer => write!(f, "queued by its timer (who armed it was not seen)"),
            LinkRole::PutBy => write!(f, "last reference put by {}", self.who()),
            LinkRole::Unseen => write!(f, "(who queued it was not seen)"),
        }
    }
}

/// A chain as one line: `delayed_fput (kworker/1:2) ← armed by … ← queued by …`.
pub fn chain_text(chain: &[ChainLink]) -> String {
    chain
        .iter()
        .map(|l| l.to_string())
        .collect::<Vec<_>>()
        .join(" ← ")
}

#[derive(Clone, Debug, Default)]
pub struct WorkTable {
    instances: BTreeMap<u64, WorkInstance>,
    by_work: HashMap<u64, VecDeque<u64>>,
    running: HashMap<u64, u64>,
    done_order: VecDeque<u64>,
    last_by_fn: HashMap<u64, u64>,
    per_fn: BTreeMap<u64, FnCounters>,
    next_serial: u64,
    pub unmatched_starts: u64,
    pub unmatched_ends: u64,
    /// A start came while the previous run of the same work had not ended.
    pub missed_ends: u64,
    pub evicted_done: u64,
    pub evicted_active: u64,
}

impl WorkTable {
    pub fn get(&self, serial: u64) -> Option<&WorkInstance> {
        self.instances.get(&serial)
    }

    pub fn len(&self) -> usize {
        self.instances.len()
    }

    pub fn is_empty(&self) -> bool {
        self.instances.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &WorkInstance> {
        self.instances.values()
    }

    pub fn per_fn(&self) -> &BTreeMap<u64, FnCounters> {
        &self.per_fn
    }

    /// The instance of `work` running now.
    pub fn running_instance(&self, work: u64) -> Option<u64> {
        self.running.get(&work).copied()
    }

    /// The latest instance of a work function (e.g. the one `delayed_fput_work`).
    pub fn latest_of_fn(&self, function: u64) -> Option<&WorkInstance> {
        self.last_by_fn
            .get(&function)
            .and_then(|s| self.instances.get(s))
    }

    fn latest(&self, work: u64, function: u64) -> Option<u64> {
        let s = *self.by_work.get(&work)?.back()?;
        (self.instances.get(&s)?.function == function).then_some(s)
    }

    fn create(&mut self, work: u64, function: u64) -> u64 {
        self.next_serial += 1;
        let s = self.next_serial;
        self.instances
            .insert(s, WorkInstance::new(s, work, function));
        self.by_work.entry(work).or_default().push_back(s);
        self.last_by_fn.insert(function, s);
        s
    }

    fn inst(&mut self, s: u64) -> &mut WorkInstance {
        self.instances.get_mut(&s).expect("instance just looked up")
    }

    /// `WorkArmed`: a delayed work's timer armed by `actor`.
    pub fn arm(&mut self, work: u64, function: u64, delay: u64, actor: Actor) -> u64 {
        self.per_fn.entry(function).or_default().armed += 1;
        if let Some(s) = self.latest(work, function) {
            let i = self.inst(s);
            if i.armed.is_some()
                && i.queued.is_none()
                && i.started.is_none()
                && i.ended_ns.is_none()
            {
                i.extra_arms = i.extra_arms.saturating_add(1);
                return s;
            }
        }
        let s = self.create(work, function);
        let i = self.inst(s);
        i.armed = Some(actor);
        i.delay_jiffies = Some(delay);
        s
    }

    /// `WorkQueued`: for an armed delayed work this is its timer firing.
    pub fn queue(&mut self, work: u64, function: u64, cpu: i32, actor: Actor) -> u64 {
        self.per_fn.entry(function).or_default().queued += 1;
        if let Some(s) = self.latest(work, function) {
            let i = self.inst(s);
            if i.armed.is_some()
                && i.queued.is_none()
                && i.started.is_none()
                && i.ended_ns.is_none()
            {
                i.queued = Some(actor);
                i.target_cpu = Some(cpu);
                return s;
            }
        }
        let s = self.create(work, function);
        let i = self.inst(s);
        i.queued = Some(actor);
        i.target_cpu = Some(cpu);
        s
    }

    /// `WorkStart`: the oldest waiting instance of `work` starts (or a new one, if its
    /// queueing was not seen).
    pub fn start(&mut self, work: u64, function: u64, actor: Actor) -> u64 {
        self.per_fn.entry(function).or_default().started += 1;
        if let Some(prev) = self.running.remove(&work) {
            // A work item does not run concurrently with itself: its end was missed.
            self.missed_ends += 1;
            self.finish(prev, actor.ts_ns, false);
        }
        // Runs start in queue order, so the waiting instances are the newest ones: scan
        // from the back (a static work like `delayed_fput_work` has a long history).
        let mut waiting = None;
        for s in self
            .by_work
            .get(&work)
            .into_iter()
            .flat_map(|q| q.iter().rev())
        {
            match self.instances.get(s) {
                Some(i) if i.function == function && i.waiting() => waiting = Some(*s),
                Some(i) if i.function == function => break,
                _ => {}
            }
        }
        let s = match waiting {
            Some(s) => s,
            None => {
                self.unmatched_starts += 1;
                self.create(work, function)
            }
        };
        let ts = actor.ts_ns;
        let i = self.inst(s);
        let latency = i.queued.as_ref().map(|q| ts.saturating_sub(q.ts_ns));
        i.started = Some(actor);
        if let Some(l) = latency {
            self.per_fn.entry(function).or_default().latency.add(l);
        }
        self.running.insert(work, s);
        s
    }

    fn finish(&mut self, s: u64, ts: u64, count_run: bool) {
        let Some(i) = self.instances.get_mut(&s) else {
            return;
        };
        if i.ended_ns.is_some() {
            return;
        }
        i.ended_ns = Some(ts);
        let run = i.started.as_ref().map(|a| ts.saturating_sub(a.ts_ns));
        let function = i.function;
        if let (true, Some(r)) = (count_run, run) {
            self.per_fn.entry(function).or_default().run.add(r);
        }
        self.done_order.push_back(s);
    }

    /// `WorkEnd`: the running instance of `work` ends. `None` when no run was seen.
    pub fn end(&mut self, work: u64, function: u64, ts: u64) -> Option<u64> {
        match self.running.get(&work).copied() {
            Some(s)
                if self
                    .instances
                    .get(&s)
                    .is_some_and(|i| i.function == function) =>
            {
                self.running.remove(&work);
                self.per_fn.entry(function).or_default().ended += 1;
                self.finish(s, ts, true);
                Some(s)
            }
            _ => {
                self.unmatched_ends += 1;
                None
            }
        }
    }

    /// Keeps at most `cap` instances, evicting finished ones first (oldest first).
    pub fn evict_to(&mut self, cap: usize) {
        while self.instances.len() > cap {
            let victim = loop {
                match self.done_order.pop_front() {
                    Some(s) if self.instances.contains_key(&s) => break Some((s, true)),
                    Some(_) => continue,
                    None => break self.instances.keys().next().map(|s| (*s, false)),
                }
            };
            let Some((s, done)) = victim else { break };
            self.remove(s);
            if done {
                self.evicted_done += 1;
            } else {
                self.evicted_active += 1;
            }
        }
    }

    fn remove(&mut self, s: u64) {
        let Some(i) = self.instances.remove(&s) else {
            return;
        };
        if let Some(q) = self.by_work.get_mut(&i.work) {
            // Eviction takes the oldest first: usually the front.
            if q.front() == Some(&s) {
                q.pop_front();
            } else {
                q.retain(|x| *x != s);
            }
            if q.is_empty() {
                self.by_work.remove(&i.work);
            }
        }
        if self.running.get(&i.work) == Some(&s) {
            self.running.remove(&i.work);
        }
        if self.last_by_fn.get(&i.function) == Some(&s) {
            self.last_by_fn.remove(&i.function);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::WorkCtx;

    fn a(ts: u64, pid: u32, comm: &str, work: Option<(u64, u64)>) -> Actor {
        Actor {
            ts_ns: ts,
            pid,
            tgid: pid,
            comm: comm.into(),
            work: work.map(|(work, function)| WorkCtx { work, function }),
            work_instance: None,
            ring: None,
            task_exited: false,
        }
    }

    #[test]
    fn delayed_work_arm_queue_start_end() {
        let mut t = WorkTable::default();
        let s = t.arm(0xd0, 0xf1, 1, a(10, 77, "kworker/u8:3", Some((0xe0, 0xf2))));
        // a second arming before it ran joins the same run
        assert_eq!(t.arm(0xd0, 0xf1, 1, a(11, 5, "x", None)), s);
        assert_eq!(t.queue(0xd0, 0xf1, 1, a(14, 0, "swapper/1", None)), s);
        assert_eq!(t.start(0xd0, 0xf1, a(15, 88, "kworker/1:2", None)), s);
        assert_eq!(t.running_instance(0xd0), Some(s));
        assert_eq!(t.end(0xd0, 0xf1, 25), Some(s));
        let i = t.get(s).unwrap();
        assert_eq!(i.extra_arms, 1);
        let (asker, role) = i.asker(true).unwrap();
        assert_eq!((asker.pid, role), (77, LinkRole::ArmedBy));
        let c = t.per_fn()[&0xf1];
        assert_eq!((c.armed, c.queued, c.started, c.ended), (2, 1, 1, 1));
        assert_eq!(c.latency.last_ns, 1);
        assert_eq!(c.run.worst_ns, 10);
        assert_eq!(t.running_instance(0xd0), None);
        // the next arming is a new run
        assert_ne!(t.arm(0xd0, 0xf1, 1, a(30, 5, "x", None)), s);
    }

    #[test]
    fn requeue_while_running_and_unmatched() {
        let mut t = WorkTable::default();
        let s1 = t.queue(0x1, 0xf, 0, a(1, 1, "p", None));
        t.start(0x1, 0xf, a(2, 9, "kw", None));
        let s2 = t.queue(0x1, 0xf, 0, a(3, 1, "p", None));
        assert_ne!(s1, s2);
        assert_eq!(t.end(0x1, 0xf, 4), Some(s1));
        assert_eq!(t.start(0x1, 0xf, a(5, 9, "kw", None)), s2);
        // start without a queue, end without a start
        let s3 = t.start(0x2, 0xf, a(6, 9, "kw", None));
        assert_eq!(t.unmatched_starts, 1);
        assert_eq!(t.get(s3).unwrap().asker(false), None);
        assert_eq!(t.end(0x3, 0xf, 7), None);
        assert_eq!(t.unmatched_ends, 1);
        // a second start of a running work closes the previous run
        t.start(0x2, 0xf, a(8, 9, "kw", None));
        assert_eq!(t.missed_ends, 1);
        assert!(t.get(s3).unwrap().done());
        // queued from a timer with no arming seen, even if a kworker was interrupted
        let s4 = t.queue(0x4, 0xf, 0, a(9, 0, "swapper/0", None));
        assert_eq!(
            t.get(s4).unwrap().asker(true).unwrap().1,
            LinkRole::QueuedByTimer
        );
        let s5 = t.queue(0x5, 0xf, 0, a(9, 12, "kworker/0:0", Some((0x77, 0xee))));
        assert_eq!(
            t.get(s5).unwrap().asker(true).unwrap().1,
            LinkRole::QueuedByTimer
        );
        assert_eq!(
            t.get(s5).unwrap().asker(false).unwrap().1,
            LinkRole::QueuedBy
        );
        assert_eq!(
            t.get(s4).unwrap().asker(false).unwrap().1,
            LinkRole::QueuedBy
        );
    }

    #[test]
    fn eviction_prefers_done_instances() {
        let mut t = WorkTable::default();
        let done = t.queue(0x1, 0xf, 0, a(1, 1, "p", None));
        t.start(0x1, 0xf, a(2, 1, "kw", None));
        t.end(0x1, 0xf, 3);
        let waiting = t.queue(0x2, 0xf, 0, a(0, 1, "p", None));
        let _w3 = t.queue(0x3, 0xf, 0, a(4, 1, "p", None));
        t.evict_to(2);
        assert!(t.get(done).is_none());
        assert!(t.get(waiting).is_some());
        t.evict_to(1);
        assert!(t.get(waiting).is_none());
        assert_eq!((t.evicted_done, t.evicted_active), (1, 1));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn chain_words() {
        let ring = 0xffff_8880_0456_0000;
        let mut exit = ChainLink::from_actor(
            &a(1, 77, "kworker/u8:3", Some((ring + 0x2d8, 0xf2))),
            LinkRole::ArmedBy,
            |_| "io_ring_exit_work".into(),
        );
        exit.ring = Some(ring);
        let mut task =
            ChainLink::from_actor(&a(0, 1234, "fsstress", None), LinkRole::QueuedBy, |_| {
                String::new()
            });
        task.task_exited = true;
        let ran = ChainLink::from_actor(
            &a(2, 88, "kworker/1:2", Some((0xd0, 0xf1))),
            LinkRole::Ran,
            |_| "delayed_fput".into(),
        );
        assert_eq!(
            chain_text(&[ran, exit, task]),
            "delayed_fput (kworker/1:2) ← armed by io_ring_exit_work (kworker/u8:3) for ring 0xffff888004560000 ← queued by pid 1234 (fsstress) at exit"
        );
    }
}
