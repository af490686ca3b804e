//! Each file's holders as they came and went. The engine keeps a file's first reference,
//! its current holders, its last drop and its release; the file view also wants the
//! holders in between (the fd closed at exit before the ring's teardown dropped the last
//! reference, say). Before and after each event that can change holders, the holders of
//! the files it can touch are compared; the differences are kept here, bounded.

use std::collections::{HashMap, VecDeque};

use tracer_fs::{
    Engine,
    event::{Event, HolderRef, Payload, RefHow},
    files::{FileKey, HolderDrop},
};

/// Files with a trail kept (the oldest trails go first).
pub const MAX_FILES: usize = 50_000;
/// Steps kept per file (the first ones: how the story started matters most).
pub const MAX_STEPS: usize = 32;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// A holder took a reference.
    Took {
        ts_ns: u64,
        holder: HolderRef,
        how: RefHow,
        tgid: u32,
        comm: tracer_fs::actor::Comm,
    },
    /// A holder let go; `drop` says why and in which context, when the engine recorded it.
    LetGo {
        ts_ns: u64,
        holder: HolderRef,
        drop: Option<HolderDrop>,
    },
}

impl Step {
    pub fn ts_ns(&self) -> u64 {
        match self {
            Step::Took { ts_ns, .. } | Step::LetGo { ts_ns, .. } => *ts_ns,
        }
    }
}

/// The files an event can change the holders of, with their holders before it (files
/// have one or two holders: a plain vector is cheapest).
pub struct Before(Vec<(FileKey, Vec<HolderRef>)>);

#[derive(Default)]
pub struct Trails {
    map: HashMap<FileKey, Vec<Step>>,
    order: VecDeque<FileKey>,
}

fn holders(engine: &Engine, key: FileKey) -> Vec<HolderRef> {
    engine
        .files()
        .get(key)
        .map(|f| f.holders.keys().copied().collect())
        .unwrap_or_default()
}

impl Trails {
    /// Call before the engine applies `ev`.
    pub fn before(engine: &Engine, ev: &Event) -> Before {
        let files = engine.files();
        let mut keys: Vec<FileKey> = Vec::new();
        let ring_of = |ctx: u64| -> Vec<FileKey> {
            files
                .ring_holders_of(ctx)
                .into_iter()
                .map(|(_, k)| k)
                .collect()
        };
        match &ev.payload {
            // Most events change no holder: nothing to look up.
            Payload::FileRef(tracer_fs::event::FileRef { file, holder, .. }) => {
                keys.extend(files.alive(*file));
                keys.extend(files.holding(holder));
            }
            Payload::FileUnref {
                file: 0, holder, ..
            } => keys.extend(files.holding(holder)),
            Payload::FileUnref { file, .. } => keys.extend(files.alive(*file)),
            Payload::TaskExit { .. } => {
                keys.extend(files.fd_holders_of(ev.tgid).into_iter().map(|(_, k)| k))
            }
            Payload::UringReqDone { ctx, req, .. } => {
                keys.extend(files.holding(&HolderRef::UringReq {
                    ctx: *ctx,
                    req: *req,
                }))
            }
            Payload::UringCreate { ctx, .. } => keys.extend(ring_of(*ctx)),
            Payload::WorkEnd { work, function } if engine.config().is_ring_exit_work(*function) => {
                let ctx = engine
                    .config()
                    .ring_of_work(*work, *function)
                    .or_else(|| engine.rings().learned(*work));
                if let Some(ctx) = ctx {
                    keys.extend(ring_of(ctx));
                }
            }
            _ => {}
        }
        keys.sort();
        keys.dedup();
        Before(keys.into_iter().map(|k| (k, holders(engine, k))).collect())
    }

    /// Call after the engine applied `ev`.
    pub fn after(&mut self, engine: &Engine, ev: &Event, before: Before) {
        // A file's first reference is its first step.
        if let Payload::FileRef(tracer_fs::event::FileRef { file, .. }) = &ev.payload
            && let Some(key) = engine.files().alive(*file)
            && !before.0.iter().any(|(k, _)| *k == key)
            && let Some(f) = engine.files().get(key)
        {
            let steps = f
                .holders
                .iter()
                .map(|(h, i)| Step::Took {
                    ts_ns: i.since_ns,
                    holder: *h,
                    how: i.how,
                    tgid: i.tgid,
                    comm: i.comm.clone(),
                })
                .collect();
            self.add(key, steps);
        }
        for (key, was) in before.0 {
            let Some(f) = engine.files().get(key) else {
                continue;
            };
            let mut steps = Vec::new();
            for h in was.iter().filter(|h| !f.holders.contains_key(h)) {
                let drop = f.last_drop.clone().filter(|d| d.holder == *h);
                steps.push(Step::LetGo {
                    ts_ns: ev.ts_ns,
                    holder: *h,
                    drop,
                });
            }
            for (h, i) in f.holders.iter().filter(|(h, _)| !was.contains(h)) {
                steps.push(Step::Took {
                    ts_ns: i.since_ns,
                    holder: *h,
                    how: i.how,
                    tgid: i.tgid,
                    comm: i.comm.clone(),
                });
            }
            if !steps.is_empty() {
                self.add(key, steps);
            }
        }
    }

    fn add(&mut self, key: FileKey, steps: Vec<Step>) {
        let v = self.map.entry(key).or_insert_with(|| {
            self.order.push_back(key);
            Vec::new()
        });
        for s in steps {
            if v.len() < MAX_STEPS {
                v.push(s);
            }
        }
        while self.map.len() > MAX_FILES {
            match self.order.pop_front() {
                Some(old) => {
                    self.map.remove(&old);
                }
                None => break,
            }
        }
    }

    /// The steps of a file, oldest first.
    pub fn steps(&self, key: FileKey) -> &[Step] {
        self.map.get(&key).map_or(&[], |v| v.as_slice())
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}
