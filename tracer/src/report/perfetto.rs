//! Chrome trace JSON (the "JSON trace event format"), which Perfetto (ui.perfetto.dev) and
//! chrome://tracing open: the deferral chains on a timeline.
//!
//! Tracks (as processes and threads of the trace):
//! - `xfstests`: one slice per test section;
//! - `EBUSY stories`: per story, the busy span with a mark per attempt, release and
//!   success, and per culprit file a track with its life until released;
//! - `mount-table calls`: every mount/umount, from syscall entry to exit, per caller;
//! - `deferred work`: every run of a followed work item, per kernel thread (queue → start
//!   latency in its args);
//! - `deferral chains`: for each release, one mark per link of its chain on the thread
//!   that link ran in, joined by flow arrows from who asked to who did it;
//! - `allocations` (with `--alloc-filter`): the outstanding allocations (objects and bytes)
//!   as counters, and per leak report the mount's lifetime and the report's mark.
//!
//! Times are µs since boot (the events' clock).

use serde_json::{Value, json};
use tracer_fs::{
    Notice,
    event::MountCallOp,
    text::{dur, errno_name},
    work::LinkRole,
};

use super::{
    Report, json::notice_kind, notice_chain, notice_summary, notice_ts, text::section_title,
};

const PID_TESTS: u32 = 1;
const PID_STORIES: u32 = 2;
const PID_CALLS: u32 = 3;
const PID_WORK: u32 = 4;
const PID_CHAINS: u32 = 5;
const PID_ALLOC: u32 = 6;

fn us(ns: u64) -> Value {
    // µs with ns precision, as a JSON number.
    json!(ns as f64 / 1000.0)
}

fn meta_process(out: &mut Vec<Value>, pid: u32, name: &str, sort: u32) {
    out.push(
        json!({"ph": "M", "name": "process_name", "pid": pid, "tid": 0, "args": {"name": name}}),
    );
    out.push(json!({"ph": "M", "name": "process_sort_index", "pid": pid, "tid": 0, "args": {"sort_index": sort}}));
}

fn meta_thread(out: &mut Vec<Value>, pid: u32, tid: u64, name: &str) {
    out.push(
        json!({"ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "args": {"name": name}}),
    );
}

fn slice(pid: u32, tid: u64, name: &str, cat: &str, start: u64, end: u64, args: Value) -> Value {
    json!({
        "ph": "X", "pid": pid, "tid": tid, "name": name, "cat": cat,
        "ts": us(start), "dur": us(end.saturating_sub(start).max(1)), "args": args,
    })
}

fn instant(pid: u32, tid: u64, name: &str, cat: &str, ts: u64, args: Value) -> Value {
    json!({"ph": "i", "s": "t", "pid": pid, "tid": tid, "name": name, "cat": cat, "ts": us(ts), "args": args})
}

fn allocations(ev: &mut Vec<Value>, r: &Report, info: &super::alloc::AllocInfo) {
    meta_process(ev, PID_ALLOC, "allocations", 6);
    meta_thread(ev, PID_ALLOC, 1, "leak reports");
    for p in &info.timeline {
        ev.push(json!({
            "ph": "C", "pid": PID_ALLOC, "tid": 0, "name": "outstanding allocations",
            "ts": us(p.ts_ns), "args": {"objects": p.outstanding},
        }));
        ev.push(json!({
            "ph": "C", "pid": PID_ALLOC, "tid": 0, "name": "outstanding bytes",
            "ts": us(p.ts_ns), "args": {"bytes": p.bytes},
        }));
    }
    for s in &r.sections {
        for k in s.alloc.iter().flat_map(|a| &a.leaks) {
            let what = format!(
                "{}: {} objects, {} bytes after umount{}",
                k.window.target,
                k.objects,
                k.bytes,
                if k.uncertain { " (uncertain)" } else { "" }
            );
            ev.push(slice(
                PID_ALLOC,
                1,
                &format!("mounted: {}", k.window.target),
                "leak",
                k.window.start_ns,
                k.umount_ns(),
                json!({"source": k.window.source, "fs_type": k.window.fs_type, "test": s.test}),
            ));
            ev.push(instant(
                PID_ALLOC,
                1,
                &what,
                "leak",
                k.now_ns,
                json!({"reasons": k.reasons, "text": info.leak_text(k)}),
            ));
        }
    }
}

pub fn value(r: &Report) -> Value {
    let mut ev: Vec<Value> = Vec::new();
    let end_of_trace = r
        .end
        .as_ref()
        .map(|e| e.ended_boot_ns)
        .unwrap_or(r.last_ns)
        .max(r.last_ns);
    meta_process(&mut ev, PID_TESTS, "xfstests", 1);
    meta_process(&mut ev, PID_STORIES, "EBUSY stories", 2);
    meta_process(&mut ev, PID_CALLS, "mount-table calls", 3);
    meta_process(&mut ev, PID_WORK, "deferred work", 4);
    meta_process(&mut ev, PID_CHAINS, "deferral chains", 5);
    meta_thread(&mut ev, PID_TESTS, 1, "tests");

    let mut story_tid = 0u64;
    let mut flow_id = 0u64;
    for s in &r.sections {
        ev.push(slice(
            PID_TESTS,
            1,
            &section_title(s),
            "test",
            s.start_ns,
            s.end_ns,
            json!({"events": s.events, "ebusy_stories": s.stories.len(), "ebusy_calls": s.ebusy_calls}),
        ));
        for st in &s.stories {
            story_tid += 1;
            let tid = story_tid * 1000;
            meta_thread(&mut ev, PID_STORIES, tid, &st.what);
            let end = st.closed_ns.unwrap_or(s.end_ns.max(st.first_ebusy_ns));
            ev.push(slice(
                PID_STORIES,
                tid,
                &format!(
                    "{}: {}",
                    if st.is_ebusy() { "busy" } else { "held" },
                    st.what
                ),
                if st.lock {
                    "lock"
                } else if st.space {
                    "space"
                } else {
                    "ebusy"
                },
                st.first_ebusy_ns,
                end,
                json!({
                    "mount": st.mount.as_ref().map(|m| m.to_string()),
                    "failed_attempts": st.failed_attempts,
                    "busy_for": dur(end.saturating_sub(st.first_ebusy_ns)),
                    "test": s.test,
                }),
            ));
            let mut file_tids: Vec<(u64, u64)> = Vec::new();
            for n in &st.notices {
                ev.push(instant(
                    PID_STORIES,
                    tid,
                    &notice_summary(n),
                    notice_kind(n),
                    notice_ts(n),
                    json!({"text": n.to_string()}),
                ));
                if let Notice::Verdict(v) = n {
                    for f in &v.culprits {
                        if file_tids.iter().any(|(file, _)| *file == f.id.file) {
                            continue;
                        }
                        let ftid = tid + 1 + file_tids.len() as u64;
                        file_tids.push((f.id.file, ftid));
                        meta_thread(&mut ev, PID_STORIES, ftid, &format!("  {}", f.id));
                        let released = st.notices.iter().find_map(|m| match m {
                            Notice::CulpritReleased(c) if c.file.file == f.id.file => Some(c.ts_ns),
                            _ => None,
                        });
                        ev.push(slice(
                            PID_STORIES,
                            ftid,
                            &format!("alive: {}", f.id),
                            "file",
                            f.first_ref_ns,
                            released.unwrap_or(end),
                            json!({
                                "holders": f.holders.iter().map(|h| h.words(&tracer_fs::verdict::Anchor::event(v.ts_ns, "EBUSY"))).collect::<Vec<_>>(),
                                "released": released.is_some(),
                            }),
                        ));
                    }
                }
            }
            for n in &st.notices {
                chain(&mut ev, n, &mut flow_id);
            }
        }
        for n in &s.detached {
            ev.push(instant(
                PID_STORIES,
                0,
                &notice_summary(n),
                notice_kind(n),
                notice_ts(n),
                json!({"text": n.to_string()}),
            ));
            chain(&mut ev, n, &mut flow_id);
        }
    }

    if let Some(info) = &r.alloc {
        allocations(&mut ev, r, info);
    }

    // Mount-table calls.
    let mut callers = std::collections::BTreeSet::new();
    for c in &r.timeline.mount_calls {
        if callers.insert(c.pid) {
            meta_thread(
                &mut ev,
                PID_CALLS,
                c.pid as u64,
                &format!("{} ({})", c.comm, c.pid),
            );
        }
        let op = match c.op {
            MountCallOp::Mount => "mount",
            MountCallOp::Umount => "umount",
            MountCallOp::MoveMount => "move_mount",
            MountCallOp::Fsmount => "fsmount",
        };
        let what = if c.op == MountCallOp::Mount {
            format!("{op} {} on {}", c.source, c.target)
        } else {
            format!("{op} {}", c.target)
        };
        let result = if c.ret == 0 {
            "ok".to_string()
        } else {
            errno_name(c.ret)
        };
        let mut s = slice(
            PID_CALLS,
            c.pid as u64,
            &format!("{what} → {result}"),
            if c.ret == tracer_fs::engine::EBUSY {
                "ebusy"
            } else {
                "mount"
            },
            c.enter_ns.min(c.ts_ns),
            c.ts_ns,
            json!({"ret": c.ret, "tgid": c.tgid}),
        );
        if c.ret == tracer_fs::engine::EBUSY {
            s["cname"] = json!("terrible");
        }
        ev.push(s);
    }

    // Work runs, per kernel thread.
    let mut threads = std::collections::BTreeSet::new();
    let cfg = &r.config;
    let mut names: std::collections::HashMap<u64, String> = std::collections::HashMap::new();
    for w in &r.timeline.work_runs {
        if threads.insert(w.pid) {
            meta_thread(
                &mut ev,
                PID_WORK,
                w.pid as u64,
                &format!("{} ({})", w.comm, w.pid),
            );
        }
        let name = names
            .entry(w.function)
            .or_insert_with(|| cfg.symbol(w.function))
            .clone();
        let mut args = json!({"work": format!("{:#x}", w.work)});
        if let Some(q) = w.queued_ns {
            args["queued_at_us"] = us(q);
            args["latency"] = json!(dur(w.start_ns.saturating_sub(q)));
        }
        ev.push(slice(
            PID_WORK,
            w.pid as u64,
            &name,
            "work",
            w.start_ns,
            w.end_ns.unwrap_or(end_of_trace),
            args,
        ));
    }

    json!({
        "displayTimeUnit": "ns",
        "otherData": {
            "recording": r.source,
            "kernel_release": r.header.kernel_release,
            "tracer_version": r.header.tracer_version,
        },
        "traceEvents": ev,
    })
}

/// A release's deferral chain: a mark per link on its thread, arrows from asker to doer.
fn chain(ev: &mut Vec<Value>, n: &Notice, flow_id: &mut u64) {
    let Some(links) = notice_chain(n) else {
        return;
    };
    let seen: Vec<_> = links
        .iter()
        .filter(|l| l.role != LinkRole::Unseen && l.ts_ns != 0)
        .collect();
    for l in &seen {
        meta_thread(
            ev,
            PID_CHAINS,
            l.pid as u64,
            &format!("{} ({})", l.comm, l.pid),
        );
        ev.push(slice(
            PID_CHAINS,
            l.pid as u64,
            &l.to_string(),
            "chain",
            l.ts_ns,
            l.ts_ns.saturating_add(1_000),
            json!({"release": notice_summary(n)}),
        ));
    }
    // links[0] is the freeing context; each next one asked for the previous.
    for pair in seen.windows(2) {
        let (doer, asker) = (pair[0], pair[1]);
        *flow_id += 1;
        ev.push(json!({"ph": "s", "id": *flow_id, "pid": PID_CHAINS, "tid": asker.pid, "ts": us(asker.ts_ns), "name": "deferred", "cat": "chain"}));
        ev.push(json!({"ph": "f", "bp": "e", "id": *flow_id, "pid": PID_CHAINS, "tid": doer.pid, "ts": us(doer.ts_ns), "name": "deferred", "cat": "chain"}));
    }
}

pub fn render(r: &Report) -> String {
    let mut s = serde_json::to_string(&value(r)).unwrap_or_default();
    s.push('\n');
    s
}
