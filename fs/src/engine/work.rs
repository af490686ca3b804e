//! io_uring rings and deferred work: ring set-up, requests, and the work items (fallback,
//! exit work, delayed_fput) that drop references out of line.

use super::*;

impl Engine {
    pub(super) fn teardown_ring(
        &mut self,
        ctx: u64,
        actor: &Actor,
        reason: DropReason,
        seen: bool,
    ) {
        for (h, k) in self.files.ring_holders_of(ctx) {
            self.files.remove_holder(k, &h, reason, actor);
        }
        self.rings.retire(ctx, actor.ts_ns, seen);
    }

    pub(super) fn on_uring_create(
        &mut self,
        ev: &Event,
        ctx: u64,
        fd: i32,
        sq: u32,
        cq: u32,
        flags: u32,
    ) {
        if ctx == 0 {
            self.c.nonsense += 1;
            return;
        }
        let task =
            self.tasks
                .observe_live(ev.tgid, ev.pid, &ev.comm, ev.ts_ns, self.cfg.caps.max_tasks);
        let actor = self.actor(ev);
        if self.rings.get(ctx).is_some() || !self.files.ring_holders_of(ctx).is_empty() {
            // The pointer is back for a new ring: the old one was freed unseen.
            self.teardown_ring(ctx, &actor, DropReason::RingGoneUnseen, false);
        }
        self.rings.create(ctx, &actor, task, fd, sq, cq, flags);
    }

    pub(super) fn on_uring_register(&mut self, ev: &Event, ctx: u64, ret: i64) {
        if ctx == 0 {
            self.c.nonsense += 1;
            return;
        }
        let actor = self.actor(ev);
        let task = self.tasks.current(ev.tgid).map(|t| t.serial);
        let r = self.rings.ensure(ctx, &actor, task);
        r.register_calls = r.register_calls.saturating_add(1);
        r.last_register_ret = Some(ret);
    }

    pub(super) fn on_req_done(&mut self, ev: &Event, ctx: u64, req: u64) {
        let holder = HolderRef::UringReq { ctx, req };
        let keys = self.files.holding(&holder);
        if keys.is_empty() {
            return; // requests that took no followed file complete all the time
        }
        let actor = self.actor(ev);
        for k in keys {
            self.files
                .remove_holder(k, &holder, DropReason::RequestDone, &actor);
        }
    }

    pub(super) fn ring_work_mut(
        &mut self,
        ctx: Option<u64>,
        function: u64,
    ) -> Option<&mut RingWork> {
        let exit = self.cfg.is_ring_exit_work(function);
        let fallback = self.cfg.is_ring_fallback_work(function);
        let r = self.rings.get_mut(ctx?)?;
        if exit {
            Some(&mut r.exit_work)
        } else if fallback {
            Some(&mut r.fallback_work)
        } else {
            None
        }
    }

    pub(super) fn on_work_armed(&mut self, ev: &Event, work: u64, function: u64, delay: u64) {
        if work == 0 {
            self.c.nonsense += 1;
            return;
        }
        let a = self.actor(ev);
        let ctx = self.ring_of_work(work, function);
        if let Some(w) = self.ring_work_mut(ctx, function)
            && w.queued.is_none()
        {
            w.queued = Some(a.clone());
        }
        self.work.arm(work, function, delay, a);
    }

    pub(super) fn on_work_queued(&mut self, ev: &Event, work: u64, function: u64, cpu: i32) {
        if work == 0 {
            self.c.nonsense += 1;
            return;
        }
        let a = self.actor(ev);
        let mut ctx = self.ring_of_work(work, function);
        if ctx.is_none()
            && self.cfg.is_ring_exit_work(function)
            && self.cfg.ring_exit_work_offset.is_none()
            && a.work.is_none()
        {
            ctx = self.rings.learn_exit_work(work, a.tgid);
        }
        // A delayed work's queueing fires from its timer: the arming context (set by
        // `on_work_armed`) is the one worth keeping.
        let from_timer = self.cfg.is_delayed_work_fn(function);
        if let Some(w) = self.ring_work_mut(ctx, function)
            && (w.queued.is_none() || w.ended_ns.is_some())
            && !from_timer
        {
            w.queued = Some(a.clone());
            w.started = None;
            w.ended_ns = None;
        }
        self.work.queue(work, function, cpu, a);
    }

    /// The context of a work item's own run (the event's header may not carry it yet).
    pub(super) fn run_actor(&self, ev: &Event, work: u64, function: u64) -> Actor {
        let mut a = self.actor(ev);
        a.work = Some(WorkCtx { work, function });
        a.ring = self.ring_of_work(work, function);
        a.task_exited = false;
        a
    }

    pub(super) fn on_work_start(&mut self, ev: &Event, work: u64, function: u64) {
        if work == 0 {
            self.c.nonsense += 1;
            return;
        }
        let a = self.run_actor(ev, work, function);
        let s = self.work.start(work, function, a);
        let started = self.work.get(s).and_then(|i| i.started.clone());
        if let Some(w) = self.ring_work_mut(self.ring_of_work(work, function), function) {
            w.started = started;
            w.ended_ns = None;
            w.runs = w.runs.saturating_add(1);
        }
    }

    pub(super) fn on_work_end(&mut self, ev: &Event, work: u64, function: u64) {
        if work == 0 {
            self.c.nonsense += 1;
            return;
        }
        let s = self.work.end(work, function, ev.ts_ns);
        let ctx = self.ring_of_work(work, function);
        if let Some(w) = self.ring_work_mut(ctx, function) {
            w.ended_ns = Some(ev.ts_ns);
        }
        if let Some(ctx) = ctx
            && self.cfg.is_ring_exit_work(function)
        {
            // io_ring_exit_work ends by freeing the ring: its registered files and requests
            // are put from this kworker, so their final puts go through delayed_fput.
            let mut actor = s
                .and_then(|s| self.work.get(s))
                .and_then(|i| i.started.clone())
                .unwrap_or_else(|| self.run_actor(ev, work, function));
            actor.ts_ns = ev.ts_ns;
            self.teardown_ring(ctx, &actor, DropReason::RingTeardown, true);
        }
    }

    /// A deferred-release work function entered (precise tier): the run is certain even
    /// when the workqueue tracepoints missed its start.
    pub(super) fn on_work_fn_entered(&mut self, ev: &Event, which: WorkFnKind, work: u64) {
        let function = match which {
            WorkFnKind::DelayedFput => self.cfg.delayed_fput,
            WorkFnKind::IoFallbackReqFunc => self.cfg.fallback_work_fn(),
            WorkFnKind::IoRingExitWork => self.cfg.io_ring_exit_work,
        };
        let Some(function) = function else { return };
        self.c.precise_work_entries += 1;
        if work != 0 && self.work.running_instance(work).is_none() {
            self.on_work_start(ev, work, function);
        }
    }
}
