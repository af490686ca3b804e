//! Allocation tracking for the TUI on a thread of its own. Reading the kernel's map of
//! outstanding allocations costs a syscall or two per entry (about a second for 30k
//! entries in a debug build), and a leak report waits for `rcu_barrier()`: neither may hold
//! up the task draining the ring buffer. That task hands this thread the mount calls (the
//! tracker follows mount lifetimes from them) and, once a second, a tick; it takes back the
//! latest view and the leak reports whenever they are ready. A tick that finds the thread
//! still busy with the previous one is skipped: the view is late, no event is lost.

use std::{
    sync::mpsc::{self, Receiver, Sender},
    thread::JoinHandle,
};

use anyhow::Result;
use serde_json::Value;
use tracer_fs::event::{Event, Payload};

use crate::{
    alloc::{tracker::AllocTracker, view::AllocView},
    record::alloc::AllocRecord,
    stream::counters::Figures,
};

enum ToWorker {
    Mount(Event),
    Tick {
        now_ns: u64,
        figures: Figures,
    },
    /// `--record`: keep the tracker's records for the recording.
    KeepRecords,
}

/// What one tick produced.
pub struct Done {
    pub now_ns: u64,
    /// The tracker's `leak_report` objects that were due.
    pub reports: Vec<Value>,
    pub view: Option<AllocView>,
    pub error: Option<String>,
    /// What the recording keeps of this tick (empty when not recording).
    pub records: Vec<AllocRecord>,
}

pub struct AllocWorker {
    tx: Option<Sender<ToWorker>>,
    rx: Receiver<Done>,
    busy: bool,
    thread: Option<JoinHandle<()>>,
}

impl AllocWorker {
    pub fn spawn(mut tracker: AllocTracker) -> Result<AllocWorker> {
        let (tx, in_rx) = mpsc::channel::<ToWorker>();
        let (out_tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("tracer-alloc".into())
            .spawn(move || {
                for msg in in_rx {
                    match msg {
                        ToWorker::Mount(ev) => tracker.on_event(&ev),
                        ToWorker::KeepRecords => tracker.keep_records(),
                        ToWorker::Tick { now_ns, figures } => {
                            let (reports, error) = match tracker.tick(now_ns, &figures) {
                                Ok(values) => (
                                    values
                                        .into_iter()
                                        .filter(|v| v["type"] == "leak_report")
                                        .collect(),
                                    None,
                                ),
                                Err(e) => (vec![], Some(format!("{e:#}"))),
                            };
                            let done = Done {
                                now_ns,
                                reports,
                                view: tracker.view().cloned(),
                                error,
                                records: tracker.take_records(),
                            };
                            if out_tx.send(done).is_err() {
                                return;
                            }
                        }
                    }
                }
            })?;
        Ok(AllocWorker {
            tx: Some(tx),
            rx,
            busy: false,
            thread: Some(thread),
        })
    }

    fn send(&mut self, m: ToWorker) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(m);
        }
    }

    /// Hands on the events the tracker follows (successful mount-table calls and the rest
    /// of the mount calls: it picks what it needs).
    pub fn on_event(&mut self, ev: &Event) {
        if matches!(
            ev.payload,
            Payload::MountCall(tracer_fs::event::MountCall { .. })
        ) {
            self.send(ToWorker::Mount(ev.clone()));
        }
    }

    /// From now on the ticks bring back what a recording keeps (`Done::records`).
    pub fn keep_records(&mut self) {
        self.send(ToWorker::KeepRecords);
    }

    /// Asks for a read of the map, unless the previous one is not done yet.
    pub fn tick(&mut self, now_ns: u64, figures: &Figures) {
        if !self.busy {
            self.busy = true;
            self.send(ToWorker::Tick {
                now_ns,
                figures: figures.clone(),
            });
        }
    }

    /// The ticks done since the last call, oldest first.
    pub fn done(&mut self) -> Vec<Done> {
        let v: Vec<Done> = self.rx.try_iter().collect();
        if !v.is_empty() {
            self.busy = false;
        }
        v
    }
}

impl Drop for AllocWorker {
    fn drop(&mut self) {
        // Closing the channel ends the thread after the tick it is on, if any.
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
