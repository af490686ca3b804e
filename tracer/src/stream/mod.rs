//! The live stream: drains the ring buffer, decodes records into events, adds the events
//! userspace makes (the fd snapshot, mount tables), and hands them to a sink in order.

pub mod counters;

use std::{
    collections::{HashSet, VecDeque},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use aya::maps::{MapData, RingBuf};
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{SignalKind, signal},
    sync::Notify,
};
use tracer_fs::{
    event::{self, Event, MountCallOp, MountInfo, Payload, RefHow},
    wire::RecordKind,
};

use crate::{
    attach::Attached, kernel::clock::boottime_ns, kernel::kmsg::Kmsg, kernel::mountinfo,
    stream::counters::Figures,
};

/// SIGINT and SIGTERM seen since [`catch_stop_signals_early`]. A signal that comes while the
/// programs load and attach (before the stream's loop listens) used to be lost, and the
/// tracer ran its whole `--duration`; these flags are set by the signal handler itself, so
/// the stream stops as soon as it starts.
static EARLY_SIGNALS: std::sync::OnceLock<[Arc<std::sync::atomic::AtomicBool>; 2]> =
    std::sync::OnceLock::new();

/// Starts catching SIGINT and SIGTERM for the stream, before anything slow happens.
pub fn catch_stop_signals_early() -> Result<()> {
    let flags = EARLY_SIGNALS.get_or_init(Default::default);
    // A second signal ends the process at once (exit code 1), as Ctrl-C twice would expect
    // of a tracer stuck anywhere; the programs go with it (their links are our fds).
    for (sig, flag) in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM]
        .into_iter()
        .zip(flags.iter())
    {
        signal_hook::flag::register_conditional_shutdown(sig, 1, flag.clone())
            .context("catching a second stop signal")?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGINT, flags[0].clone())
        .context("catching SIGINT")?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, flags[1].clone())
        .context("catching SIGTERM")?;
    Ok(())
}

/// The signal [`catch_stop_signals_early`] saw, if any.
fn early_signal() -> Option<&'static str> {
    let flags = EARLY_SIGNALS.get()?;
    let seen = |i: usize| flags[i].load(std::sync::atomic::Ordering::Relaxed);
    if seen(0) {
        Some("SIGINT")
    } else if seen(1) {
        Some("SIGTERM")
    } else {
        None
    }
}

/// Where events go: JSON lines, the engine, a recording, the TUI.
pub trait Sink {
    fn event(&mut self, ev: &Event) -> Result<()>;
    fn figures(&mut self, f: &Figures) -> Result<()>;
    /// A record that could not be decoded (counted and shown, never silently dropped).
    fn bad_record(&mut self, err: &str) -> Result<()>;
    /// Something the tracer could not do (a scan after EBUSY that found its mount gone, a
    /// sysfs file it could not read): said, but no record was lost or undecodable.
    fn warning(&mut self, msg: &str) -> Result<()>;
    /// Hooks attached and the snapshot of existing files taken: from here on nothing is missed.
    fn ready(&mut self) -> Result<()>;
    /// The stream stopped (after the last events and counters): what is still pending is
    /// said now (e.g. leak reports whose grace period had not ended).
    fn end(&mut self) -> Result<()> {
        Ok(())
    }
    /// When (boot clock, ns) the sink wants the counters before the next regular tick: a
    /// leak report falling due is made then, not up to a tick later.
    fn wake_ns(&self) -> Option<u64> {
        None
    }
    /// The ring buffer was found empty: every record submitted before `as_of_ns` (boot
    /// clock) has been handed on.
    fn caught_up(&mut self, _as_of_ns: u64) -> Result<()> {
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct StreamOptions {
    pub duration: Option<Duration>,
    pub stats_every: Duration,
    /// Stops the stream when notified (the TUI's quit), like SIGINT does.
    pub stop: Option<Arc<Notify>>,
    /// Stop on SIGINT/SIGTERM. `tracer run` turns it off: the command gets the signal too,
    /// and the stream goes on until the command exits (then `stop`).
    pub stop_on_signals: bool,
}

impl Default for StreamOptions {
    fn default() -> Self {
        StreamOptions {
            duration: None,
            stats_every: Duration::from_secs(1),
            stop: None,
            stop_on_signals: true,
        }
    }
}

#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub events: u64,
    pub bad_records: u64,
    pub figures: Figures,
    pub stopped_by: &'static str,
    /// The records of io_uring requests put back in order (stale ends dropped).
    pub requests: tracer_fs::rings::RequestOrder,
}

fn userspace_event(payload: Payload) -> Event {
    Event {
        ts_ns: boottime_ns(),
        cpu: 0,
        pid: std::process::id(),
        tgid: std::process::id(),
        comm: "tracer".into(),
        work: None,
        payload,
    }
}

/// Decodes the concatenated records a snapshot iterator wrote.
pub fn decode_snapshot(bytes: &[u8]) -> (Vec<Event>, Vec<String>) {
    let size = RecordKind::FileRef.size();
    let mut evs = Vec::new();
    let mut errs = Vec::new();
    for chunk in bytes.chunks(size) {
        match event::decode(chunk) {
            Ok(e) => evs.push(e),
            Err(e) => errs.push(format!("snapshot: {e}")),
        }
    }
    (evs, errs)
}

/// Waits until `/dev/kmsg` has records; never, without it.
async fn kmsg_readable(
    kmsg: &mut Option<AsyncFd<Kmsg>>,
) -> std::io::Result<tokio::io::unix::AsyncFdReadyMutGuard<'_, Kmsg>> {
    match kmsg {
        Some(k) => k.readable_mut().await,
        None => std::future::pending().await,
    }
}

/// The xfstests markers among the kernel log lines read now, as events; true when the
/// log was read to its end.
fn kmsg_markers(kmsg: &mut Kmsg, sink: &mut dyn Sink, summary: &mut Summary) -> Result<bool> {
    let (lines, at_end) = kmsg.read_available();
    for line in lines {
        if let Some(test) = crate::kernel::kmsg::test_marker(&line) {
            summary.events += 1;
            sink.event(&userspace_event(Payload::TestMarker { test }))?;
        }
    }
    Ok(at_end)
}

/// Runs until the duration ends, SIGINT, SIGTERM or `opts.stop` is notified.
pub async fn run(att: &mut Attached, opts: StreamOptions, sink: &mut dyn Sink) -> Result<Summary> {
    let mut summary = Summary::default();
    let counters = counters::Counters::map(&att.ebpf)?;
    // xfstests' `run fstests <test> at` lines from now on; no /dev/kmsg, no markers. Read
    // only where the console hook is missing: its records are in order with the others,
    // while a line read here is stamped when it is read.
    let console_hooked = att
        .hooks
        .iter()
        .any(|h| h.hook == "test markers" && h.live());
    let kmsg = if console_hooked { None } else { Kmsg::open() };
    let mut kmsg = kmsg.and_then(|k| {
        // SAFETY: `Kmsg` owns its file and always returns the same open fd.
        unsafe { AsyncFd::register_with_interest(k, tokio::io::Interest::READABLE) }.ok()
    });

    // Hooks are live from here on; the snapshot then covers what was open before.
    let table = mountinfo::read()?;
    let (mut mounts, watch_err) = mountinfo::Feed::new(&table);
    if let Some(e) = watch_err {
        sink.bad_record(&format!("mount table watcher unavailable: {e:#}"))?;
    }
    sink.event(&userspace_event(Payload::MountTable { mounts: table }))?;
    let mut scans = Scans::default();
    let mut prescans = Prescans::default();
    match crate::attach::snapshot(&mut att.ebpf, &att.btf) {
        Ok(bytes) => {
            let (evs, errs) = decode_snapshot(&bytes);
            for e in &evs {
                summary.events += 1;
                sink.event(e)?;
            }
            for e in errs {
                summary.bad_records += 1;
                sink.bad_record(&e)?;
            }
        }
        Err(e) => sink.bad_record(&format!("fd snapshot unavailable: {e:#}"))?,
    }
    // Loaded (and the verifier's time paid) now rather than at the first EBUSY; the run
    // also learns the per-CPU offsets the mount reference counts need.
    if let Err(e) = crate::attach::task_scan(&mut att.ebpf, &att.btf) {
        sink.bad_record(&format!(
            "task scan unavailable (cwd/root pins and exiting tasks will not be named): {e:#}"
        ))?;
    }
    if let Err(e) = crate::attach::vma_scan(&mut att.ebpf, &att.btf, &[]) {
        sink.bad_record(&format!(
            "VMA scan unavailable (files mapped into memory will not be named): {e:#}"
        ))?;
    }
    // Every program is loaded: the parsed kernel BTF is not needed any more.
    att.release_btf();
    // Mapped only now (its data pages count twice in RSS: the ring is mapped twice for
    // its wrap-around), after the BTF went: the records wait in the kernel meanwhile.
    let ring = RingBuf::try_from(att.ebpf.take_map("EVENTS").context("no EVENTS map")?)?;
    // SAFETY: the ring buffer owns its map fd for as long as the AsyncFd holds it.
    let mut ring: AsyncFd<RingBuf<MapData>> =
        unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
            .map_err(|e| anyhow::anyhow!("watching the ring buffer: {e}"))?;

    // Failed umounts, copied to a small ring of their own that wakes us at once.
    let urgent = RingBuf::try_from(att.ebpf.take_map("URGENT").context("no URGENT map")?)?;
    // SAFETY: as above.
    let mut urgent: AsyncFd<RingBuf<MapData>> =
        unsafe { AsyncFd::register_with_interest(urgent, tokio::io::Interest::READABLE) }
            .map_err(|e| anyhow::anyhow!("watching the urgent ring buffer: {e}"))?;

    sink.ready()?;

    let stop = opts.stop.clone().unwrap_or_default();
    let signals = opts.stop_on_signals;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let deadline = opts.duration.map(|d| tokio::time::Instant::now() + d);
    let mut tick = tokio::time::interval(opts.stats_every);
    tick.tick().await;
    // The programs wake us only when a batch is waiting (see `submit` in the eBPF crate's
    // emit.rs); this bounds how late a trickle of records is seen.
    let mut poll = tokio::time::interval(RING_POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut early = if signals { early_signal() } else { None };
    summary.stopped_by = loop {
        if let Some(s) = early.take() {
            break s;
        }
        let sleep_until =
            deadline.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        // Not sooner than MIN_WAKE: a wish already past is met at once, but never in a loop.
        let wake = sink.wake_ns().map(|t| {
            tokio::time::Instant::now()
                + Duration::from_nanos(t.saturating_sub(boottime_ns())).max(MIN_WAKE)
        });
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard?;
                // A bounded batch, then a yield to the runtime (timers and signals are only
                // seen then), so the tick (counters, the TUI's snapshots) and the signals
                // get their turn under a flood of records.
                let mut side = Side { att: &mut *att, mounts: &mut mounts, scans: &mut scans, prescans: &mut prescans, counters: &counters, urgent: Some(urgent.get_mut()) };
                if drain(guard.get_inner_mut(), &mut side, sink, &mut summary, DRAIN_BATCH)? {
                    guard.clear_ready();
                } else {
                    drop(guard);
                    tokio::task::yield_now().await;
                }
            }
            guard = urgent.readable_mut() => {
                let mut guard = guard?;
                let mut side = Side { att: &mut *att, mounts: &mut mounts, scans: &mut scans, prescans: &mut prescans, counters: &counters, urgent: None };
                drain_urgent(guard.get_inner_mut(), &mut side)?;
                guard.clear_ready();
            }
            _ = poll.tick() => {
                let as_of_ns = boottime_ns();
                let mut side = Side { att: &mut *att, mounts: &mut mounts, scans: &mut scans, prescans: &mut prescans, counters: &counters, urgent: Some(urgent.get_mut()) };
                if drain(ring.get_mut(), &mut side, sink, &mut summary, DRAIN_BATCH)? {
                    sink.caught_up(as_of_ns)?;
                }
            }
            _ = tick.tick() => {
                let f = figures(&counters, att, &summary);
                sink.figures(&f)?;
            }
            _ = tokio::time::sleep_until(wake.unwrap_or(sleep_until)), if wake.is_some() => {
                let f = figures(&counters, att, &summary);
                sink.figures(&f)?;
            }
            new = mounts.changed() => appeared(new?, sink, &mut summary)?,
            guard = kmsg_readable(&mut kmsg) => {
                let mut guard = guard?;
                if kmsg_markers(guard.get_inner_mut(), sink, &mut summary)? {
                    guard.clear_ready();
                }
            }
            _ = stop.notified() => break "quit",
            _ = sigint.recv(), if signals => break "SIGINT",
            _ = sigterm.recv(), if signals => break "SIGTERM",
            _ = tokio::time::sleep_until(sleep_until), if deadline.is_some() => break "duration",
        }
    };
    let mut side = Side {
        att: &mut *att,
        mounts: &mut mounts,
        scans: &mut scans,
        prescans: &mut prescans,
        counters: &counters,
        urgent: Some(urgent.get_mut()),
    };
    drain(ring.get_mut(), &mut side, sink, &mut summary, usize::MAX)?;
    if let Some(table) = side.mounts.table_drained() {
        hand_on_table(table, sink, &mut summary)?;
    }
    summary.figures = figures(&counters, att, &summary);
    sink.figures(&summary.figures)?;
    sink.end()?;
    Ok(summary)
}

/// The kernel side's counters, with what the stream itself counted.
fn figures(counters: &counters::Counters, att: &Attached, summary: &Summary) -> Figures {
    with_stream_counts(counters.read(&att.ebpf), summary)
}

/// Counters read from the kernel side, with what the stream itself counted.
fn with_stream_counts(mut f: Figures, summary: &Summary) -> Figures {
    f.stale_request_ends = summary.requests.stale;
    f
}

/// Whether a record (`item`, decoded as `p`) that starts or ends a ring's requests on a
/// file is stale (`tracer_fs::rings::RequestOrder`). Only those records are read again for
/// their sequence number: every open's record would pay for it otherwise.
fn stale_request_change(
    p: &Payload,
    item: &[u8],
    order: &mut tracer_fs::rings::RequestOrder,
) -> bool {
    let request = matches!(
        p,
        Payload::FileRef(tracer_fs::event::FileRef {
            holder: tracer_fs::event::HolderRef::UringReq { .. },
            ..
        }) | Payload::UringReqDone { .. }
    );
    request && event::request_change(item).is_some_and(|c| !order.admit(c))
}

/// The shortest wait for a sink's early tick (`Sink::wake_ns`).
const MIN_WAKE: Duration = Duration::from_millis(5);

/// How often the ring buffer is drained without a wakeup.
const RING_POLL: Duration = Duration::from_millis(10);

/// Records handled per wakeup before the other branches of the loop get a turn.
const DRAIN_BATCH: usize = 4096;

/// Hands on mounts seen for the first time, if any.
fn appeared(mounts: Vec<MountInfo>, sink: &mut dyn Sink, summary: &mut Summary) -> Result<()> {
    if !mounts.is_empty() {
        summary.events += 1;
        sink.event(&userspace_event(Payload::MountsAppeared { mounts }))?;
    }
    Ok(())
}

/// `-EBUSY` as the umount returns it.
const EBUSY: i64 = -16;

/// What the drain consults besides the ring buffer.
struct Side<'a> {
    att: &'a mut Attached,
    mounts: &'a mut mountinfo::Feed,
    scans: &'a mut Scans,
    prescans: &'a mut Prescans,
    /// The kernel side's counters, read again at each EBUSY (see [`ScanOut::figures`]).
    counters: &'a counters::Counters,
    /// The urgent ring, looked at every few records while a batch of the main one is
    /// handled (a batch can take tens of ms).
    urgent: Option<&'a mut RingBuf<MapData>>,
}

/// fd scans after failed umounts: when each ran, so a umount retried in a loop does not
/// walk every task's files each time.
#[derive(Default)]
struct Scans {
    /// When the last scan ran, and for which failure.
    last: Option<(Instant, String)>,
}

/// What failed with EBUSY: a umount(2) by its path, or `path_umount` by its mount.
#[derive(Clone, Copy)]
enum Failed<'a> {
    Path(&'a str),
    Mount(i32),
}

/// At most one scan per this interval.
const SCAN_INTERVAL: Duration = Duration::from_millis(250);

/// A umount failed with EBUSY: walk every task's fd table now (the attach-time snapshot's
/// iterator) and hand on the fds holding files on that mount or below it, relabelled
/// `Rescan`. They go before the umount's record, so its verdict names holders that took
/// their reference in ways no hook sees (dup2, fork, fd passing). The scan is a little
/// after the failure: a holder gone meanwhile is not found, and the engine never lets a
/// scan rewrite what it traced. With the precise hooks the failure is known first from
/// `path_umount`'s return, by mount id (`Failed::Mount`), and its verdict is made there.
fn scan_after_ebusy(side: &mut Side, failed: Failed<'_>, out: &mut ScanOut) -> Result<()> {
    let table = mountinfo::read()?;
    let target = match failed {
        Failed::Path(p) => p.to_string(),
        Failed::Mount(id) => match table.iter().find(|m| m.mount_id == id) {
            Some(m) => m.mount_point.clone(),
            None => {
                // It failed with EBUSY, so it was mounted: say why its verdict has no scan.
                out.scan_missed(
                    id,
                    "",
                    format!(
                        "no scan after EBUSY: mount {id} was already gone from the mount table"
                    ),
                    "the mount was already gone from the mount table".into(),
                );
                return Ok(());
            }
        },
    };
    // Relative targets are not resolved; `/` alone would mean every mount.
    let target = target.trim_end_matches('/');
    if !target.starts_with('/') {
        return Ok(());
    }
    let below = format!("{target}/");
    // The mount the umount was about: the topmost at its path (the last one mounted there).
    let failed_id = match failed {
        Failed::Mount(id) => Some(id),
        Failed::Path(_) => table
            .iter()
            .rfind(|m| m.mount_point == target)
            .map(|m| m.mount_id),
    };
    // A retry loop on one mount is scanned at most every SCAN_INTERVAL; a failure on
    // another mount is scanned at once (generic/388 mounts anew at the same path each
    // round: each round's story must get its scan).
    let what = match failed_id {
        Some(id) => format!("mount {id}"),
        None => target.to_string(),
    };
    if side
        .scans
        .last
        .as_ref()
        .is_some_and(|(t, w)| *w == what && t.elapsed() < SCAN_INTERVAL)
    {
        return Ok(());
    }
    side.scans.last = Some((Instant::now(), what));
    let ids: HashSet<i32> = table
        .iter()
        .filter(|m| m.mount_point == target || m.mount_point.starts_with(&below))
        .map(|m| m.mount_id)
        .collect();
    if ids.is_empty() {
        out.scan_missed(
            failed_id.unwrap_or(-1),
            target,
            format!(
                "no scan after EBUSY: nothing was mounted at {target} any more (the umount went through before the scan: no fd scan, and the reference count of the mount was not read)"
            ),
            format!("the umount went through first: nothing was mounted at {target} any more"),
        );
        return Ok(());
    }
    // Loop devices and swap files backed by files there: read from sysfs and /proc/swaps.
    let (files, errs) = crate::kernel::devices::backing_files(&table, &ids);
    out.errors.extend(errs);
    let mut mounts: Vec<i32> = ids.iter().copied().collect();
    mounts.sort_unstable();
    out.events
        .push(userspace_event(Payload::BackingScan { mounts, files }));
    let bytes = match crate::attach::snapshot(&mut side.att.ebpf, &side.att.btf) {
        Ok(b) => b,
        Err(e) => {
            out.errors
                .push(format!("fd scan after EBUSY unavailable: {e:#}"));
            return Ok(());
        }
    };
    let (evs, errs) = decode_snapshot(&bytes);
    for mut e in evs {
        if let Payload::FileRef(tracer_fs::event::FileRef { how, mnt_id, .. }) = &mut e.payload {
            if !ids.contains(mnt_id) {
                continue;
            }
            *how = RefHow::Rescan;
            out.events.push(e);
        }
    }
    out.errors.extend(errs);
    scan_mappings(side, &ids, failed_id, out);
    match crate::kernel::aio::counts(&mut side.att.ebpf) {
        Ok(tasks) => out.events.push(userspace_event(Payload::AioScan { tasks })),
        Err(e) => out
            .errors
            .push(format!("AIO counts not read after EBUSY: {e:#}")),
    }
    // Not found by the kernel-side walk, and gone from the table too (a walk cut short in
    // a large mount tree finds nothing either).
    let gone = scan_tasks(side, &ids, failed_id, out)?
        && failed_id
            .is_some_and(|id| mountinfo::read().is_ok_and(|t| !t.iter().any(|m| m.mount_id == id)));
    // The failed mount had left the kernel's mount tree by the scan's end (the umount went
    // through while it ran) and the scan found nothing: it came too late to tell what held
    // the mount, which is not the same as nothing holding it.
    if let Some(id) = failed_id.filter(|_| gone && found_nothing(&out.events, &ids)) {
        out.scan_missed(
            id,
            target,
            format!(
                "the scan after EBUSY came too late: mount {id} had left the kernel's mount tree by its end, and it found nothing on it"
            ),
            format!(
                "it came too late: mount {id} had left the kernel's mount tree by its end (the umount went through meanwhile)"
            ),
        );
    }
    Ok(())
}

/// Whether a scan's events name nothing on mounts `ids`: no fd, mapping, backing file,
/// task cwd/root or AIO context (only its bookkeeping: the ends of the scans, counts).
fn found_nothing(events: &[Event], ids: &HashSet<i32>) -> bool {
    events.iter().all(|e| match &e.payload {
        Payload::TaskSeen { task } => !ids.contains(&task.cwd_mnt) && !ids.contains(&task.root_mnt),
        Payload::BackingScan { files, .. } => files.is_empty(),
        Payload::AioScan { tasks } => tasks.is_empty(),
        Payload::MmapScanDone { .. } | Payload::PinScanDone { .. } | Payload::MountRefs { .. } => {
            true
        }
        _ => false,
    })
}

/// The VMA scan that goes with the fd scan: every process's mappings of files on `ids`
/// (a mapped file whose fd was closed pins the mount as well), then the end of the scan,
/// so the engine knows which mappings on `ids` are gone. A scan that fails says so and
/// sends no end: the mappings known stay as they were, not taken for unmapped.
fn scan_mappings(side: &mut Side, ids: &HashSet<i32>, failed_id: Option<i32>, out: &mut ScanOut) {
    let started_ns = boottime_ns();
    // The failed mount first: the kernel side looks for a few mounts only.
    let mut mounts: Vec<i32> = ids.iter().copied().collect();
    mounts.sort_unstable_by_key(|m| (Some(*m) != failed_id, *m));
    mounts.truncate(tracer_fs::wire::VMA_SCAN_MOUNTS);
    let bytes = match crate::attach::vma_scan(&mut side.att.ebpf, &side.att.btf, &mounts) {
        Ok(b) => b,
        Err(e) => {
            out.errors.push(format!(
                "VMA scan after EBUSY failed (mappings not looked for, those known not re-checked): {e:#}"
            ));
            return;
        }
    };
    let (evs, errs) = decode_snapshot(&bytes);
    out.events.extend(evs);
    out.errors
        .extend(errs.into_iter().map(|e| format!("VMA scan: {e}")));
    mounts.sort_unstable();
    out.events.push(userspace_event(Payload::MmapScanDone {
        started_ns,
        mounts,
    }));
}

/// Tells the task scan which mount's reference count to read.
fn set_scan_target(ebpf: &mut aya::Ebpf, id: i32) -> Result<()> {
    let map = ebpf
        .map_mut("SCAN_TARGETS")
        .context("no SCAN_TARGETS map")?;
    let mut arr: aya::maps::Array<_, i32> = aya::maps::Array::try_from(map)?;
    arr.set(0, id, 0)?;
    Ok(())
}

/// The task scan that goes with the fd scan: the processes whose cwd or root is on one
/// of `ids`, and every task inside `do_exit()` (with where it waits), then the end of the
/// scan, so the engine knows which pins on `ids` are gone; with it the failed mount's
/// reference count. True when the walk of the mount tree did not find that mount.
fn scan_tasks(
    side: &mut Side,
    ids: &HashSet<i32>,
    failed_id: Option<i32>,
    out: &mut ScanOut,
) -> Result<bool> {
    let started_ns = boottime_ns();
    let mut mounts: Vec<i32> = ids.iter().copied().collect();
    mounts.sort_unstable();
    if let Some(id) = failed_id
        && let Err(e) = set_scan_target(&mut side.att.ebpf, id)
    {
        out.errors
            .push(format!("mount reference counts unavailable: {e:#}"));
    }
    let bytes = match crate::attach::task_scan(&mut side.att.ebpf, &side.att.btf) {
        Ok(b) => b,
        Err(e) => {
            out.errors
                .push(format!("task scan after EBUSY unavailable: {e:#}"));
            return Ok(false);
        }
    };
    let mut refs = None;
    let mut gone = false;
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        // Task records and, at the end, mount reference counts: each says its size.
        let size = match tracer_fs::wire::parse_header(rest) {
            Ok((kind, _)) => kind.size(),
            Err(_) => rest.len(),
        };
        let (chunk, tail) = rest.split_at(size.min(rest.len()));
        rest = tail;
        let mut e = match event::decode(chunk) {
            Ok(e) => e,
            Err(e) => {
                out.errors.push(format!("task scan: {e}"));
                continue;
            }
        };
        let Payload::TaskSeen { task } = &mut e.payload else {
            match e.payload {
                Payload::MountRefs {
                    mnt_id,
                    count: at,
                    cpus,
                    cpus_possible: 0,
                } => {
                    gone = Some(mnt_id) == failed_id;
                    out.errors.push(format!(
                        "the reference count of mount {mnt_id} was not read: not found in the tracer's mount tree ({cpus} steps walked, stopped at mount {at})"
                    ))
                }
                // After the scan's end, so it is set against the pins the scan left.
                Payload::MountRefs { .. } => refs = Some(e),
                _ => {}
            }
            continue;
        };
        let on_ids = ids.contains(&task.cwd_mnt) || ids.contains(&task.root_mnt);
        let dying = task.exiting && !task.zombie;
        if !on_ids && !dying {
            continue;
        }
        for frame in &mut task.stack {
            let Some(addr) = frame
                .strip_prefix("0x")
                .and_then(|h| u64::from_str_radix(h, 16).ok())
            else {
                continue;
            };
            if let Some((sym, off)) = side.att.kallsyms.resolve(addr) {
                *frame = format!("{}+{off:#x}", sym.name);
            }
        }
        out.events.push(e);
    }
    out.events
        .push(userspace_event(Payload::PinScanDone { started_ns, mounts }));
    out.events.extend(refs);
    Ok(gone)
}

/// What the scans after an EBUSY found, handed on just before the umount's record.
#[derive(Default)]
struct ScanOut {
    /// The counters as the failure was seen: handed on before its record, so its verdict
    /// weighs the runs the kernel skipped and the records lost before it, not only those
    /// of the last stats tick (a skipped open just before the umount was missed so).
    figures: Option<Figures>,
    events: Vec<Event>,
    errors: Vec<String>,
}

impl ScanOut {
    /// The scans could not tell what held mount `mnt_id` at its EBUSY: the warning `said`,
    /// and the event that puts `why` into the failure's verdict.
    fn scan_missed(&mut self, mnt_id: i32, target: &str, said: String, why: String) {
        self.errors.push(said);
        self.events.push(userspace_event(Payload::ScanMissed {
            mnt_id,
            target: target.to_string(),
            why,
        }));
    }

    /// The scans after an EBUSY, with the counters read first.
    fn after(side: &mut Side, failed: Failed<'_>) -> Result<ScanOut> {
        let mut out = ScanOut {
            figures: Some(side.counters.read(&side.att.ebpf)),
            ..ScanOut::default()
        };
        scan_after_ebusy(side, failed, &mut out)?;
        Ok(out)
    }

    fn hand_on(self, sink: &mut dyn Sink, summary: &mut Summary) -> Result<()> {
        if let Some(f) = self.figures {
            sink.figures(&with_stream_counts(f, summary))?;
        }
        for e in &self.events {
            summary.events += 1;
            sink.event(e)?;
        }
        for e in &self.errors {
            sink.warning(e)?;
        }
        Ok(())
    }
}

/// Scans run when the urgent ring said a umount failed, before its record comes through
/// the main ring (which may lag by thousands of records): by the umount's (thread, time).
#[derive(Default)]
struct Prescans {
    ready: VecDeque<((u32, u64), ScanOut)>,
}

/// Records of the main ring handled between two looks at the urgent one.
const URGENT_EVERY: usize = 64;

/// Scans kept waiting for their umount's record at most.
const MAX_PRESCANS: usize = 64;

impl Prescans {
    fn take(&mut self, key: (u32, u64)) -> Option<ScanOut> {
        let i = self.ready.iter().position(|(k, _)| *k == key)?;
        self.ready.remove(i).map(|(_, o)| o)
    }
}

/// The failure an EBUSY record reports, if it is one.
fn failed_of(p: &Payload) -> Option<Failed<'_>> {
    match p {
        Payload::MountCall(tracer_fs::event::MountCall {
            op: MountCallOp::Umount,
            ret: EBUSY,
            target,
            ..
        }) => Some(Failed::Path(target)),
        Payload::UmountRet {
            ret: EBUSY, mnt_id, ..
        } => Some(Failed::Mount(*mnt_id)),
        _ => None,
    }
}

/// A mount-table change that went through (the urgent ring's copies of them).
fn succeeded(p: &Payload) -> bool {
    matches!(
        p,
        Payload::MountCall(tracer_fs::event::MountCall { ret: 0, .. })
            | Payload::UmountRet { ret: 0, .. }
    )
}

/// Records of the urgent ring (a copy of each failed umount's record, with a wakeup of
/// its own): the scans run now, while what pinned the mount is still there.
fn drain_urgent(ring: &mut RingBuf<MapData>, side: &mut Side) -> Result<()> {
    while let Some(item) = ring.next() {
        let Ok(ev) = event::decode(&item) else {
            continue;
        };
        let Some(failed) = failed_of(&ev.payload) else {
            if succeeded(&ev.payload) {
                // A mount or umount went through: whatever fails next is a new story, to
                // scan at once even with the same (reused) mount id.
                side.scans.last = None;
                // The table is read for the record only where the record cannot tell
                // which mount the call made.
                if let Payload::MountCall(tracer_fs::event::MountCall { op, target, .. }) =
                    &ev.payload
                    && *op != MountCallOp::Umount
                    && event::made_mount(&item).is_none()
                {
                    side.mounts.note_early((ev.pid, ev.ts_ns), target)?;
                }
            }
            continue;
        };
        let out = ScanOut::after(side, failed)?;
        if side.prescans.ready.len() >= MAX_PRESCANS {
            side.prescans.ready.pop_front();
        }
        side.prescans.ready.push_back(((ev.pid, ev.ts_ns), out));
    }
    Ok(())
}

/// Hands up to `max` records to the sink; true when the ring buffer was emptied.
fn drain(
    ring: &mut RingBuf<MapData>,
    side: &mut Side,
    sink: &mut dyn Sink,
    summary: &mut Summary,
    max: usize,
) -> Result<bool> {
    let drained = drain_records(ring, side, sink, summary, max)?;
    // Every record made before the waiting table's read has been handed on.
    if drained && let Some(table) = side.mounts.table_drained() {
        hand_on_table(table, sink, summary)?;
    }
    side.mounts.read_table_if_due(drained)?;
    Ok(drained)
}

/// The whole mount table, as read at its time.
fn hand_on_table(
    (ts_ns, mounts): (u64, Vec<tracer_fs::event::MountInfo>),
    sink: &mut dyn Sink,
    summary: &mut Summary,
) -> Result<()> {
    summary.events += 1;
    sink.event(&Event {
        ts_ns,
        ..userspace_event(Payload::MountTable { mounts })
    })
}

fn drain_records(
    ring: &mut RingBuf<MapData>,
    side: &mut Side,
    sink: &mut dyn Sink,
    summary: &mut Summary,
    max: usize,
) -> Result<bool> {
    for n in 0..max {
        if n % URGENT_EVERY == 0
            && let Some(u) = side.urgent.take()
        {
            let r = drain_urgent(u, side);
            side.urgent = Some(u);
            r?;
        }
        let Some(item) = ring.next() else {
            return Ok(true);
        };
        match event::decode(&item) {
            Ok(ev) if stale_request_change(&ev.payload, &item, &mut summary.requests) => {
                // Dropped: the next start of these requests came first (`RequestOrder`).
            }
            Ok(ev) => {
                if let Some(table) = side.mounts.table_before(ev.ts_ns) {
                    hand_on_table(table, sink, summary)?;
                }
                if let Some(failed) = failed_of(&ev.payload) {
                    let out = match side.prescans.take((ev.pid, ev.ts_ns)) {
                        Some(out) => out,
                        None => ScanOut::after(side, failed)?,
                    };
                    out.hand_on(sink, summary)?;
                }
                summary.events += 1;
                sink.event(&ev)?;
                if let Payload::MountCall(tracer_fs::event::MountCall { ret: 0, op, .. }) =
                    ev.payload
                {
                    // New mounts at once, so the records that follow see them (a umount
                    // adds none); removals once the ring is drained (see `mountinfo::Feed`).
                    if op != MountCallOp::Umount {
                        // The mount the record says the call made, in order; the mount
                        // table read at its urgent copy where the record could not tell.
                        let key = (ev.pid, ev.ts_ns);
                        match event::made_mount(&item) {
                            Some(mount) => {
                                side.mounts.made(key);
                                let made = Event {
                                    payload: Payload::MountMade { mount },
                                    ..ev.clone()
                                };
                                summary.events += 1;
                                sink.event(&made)?;
                            }
                            None => appeared(side.mounts.appeared_at(key)?, sink, summary)?,
                        }
                    }
                    side.mounts.table_due();
                }
            }
            Err(e) => {
                summary.bad_records += 1;
                sink.bad_record(&format!("{e} ({} bytes)", item.len()))?;
            }
        }
    }
    Ok(false)
}
