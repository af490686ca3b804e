//! The engine's side of space a delete did not free: a `SpaceHeld` record opens a story on
//! the file (named with its holders from the engine's tables), the file's release ends it.

use super::Engine;
use crate::actor::Actor;
use crate::event::Event;
use crate::files::FileObj;
use crate::space::{SpaceFreed, SpaceHeld, SpaceStoryRef, SpaceTable};
use crate::verdict::{Caller, MountDesc, Notice};
use crate::work::ChainLink;

/// A `SpaceHeld` record's fields.
pub(super) struct SpaceArgs {
    pub file: u64,
    pub ino: u64,
    pub dev: u32,
    pub mnt_id: i32,
    pub size: u64,
    pub blocks: u64,
}

impl Engine {
    pub(super) fn on_space_held(&mut self, ev: &Event, a: &SpaceArgs, out: &mut Vec<Notice>) {
        if self.space.stories.contains_key(&a.file) {
            return;
        }
        // The kernel side reads a slot that may name a file released since (and its memory
        // reused by another): only a file we know alive, with that inode, is believed.
        let Some(f) = self
            .files
            .alive(a.file)
            .and_then(|k| self.files.get(k))
            .filter(|f| f.ino == a.ino || f.ino == 0)
        else {
            self.c.space_unknown_file += 1;
            return;
        };
        let mnt_id = if a.mnt_id >= 0 { a.mnt_id } else { f.mnt_id };
        let path = FileObj::path(f).or_else(|| (!f.name.is_empty()).then(|| f.name.clone()));
        let file = self.describe(f);
        self.space.next_id += 1;
        let story = SpaceStoryRef {
            id: self.space.next_id,
            file: a.file,
            ino: a.ino,
            dev: a.dev,
            path,
            mount: self.mounts.get(mnt_id).map(MountDesc::of),
            size: a.size,
            allocated: a.blocks.saturating_mul(512),
            first_ns: ev.ts_ns,
        };
        self.space.stories.insert(a.file, story.clone());
        out.push(Notice::SpaceHeld(SpaceHeld {
            story,
            ts_ns: ev.ts_ns,
            deleted_by: Caller {
                pid: ev.pid,
                tgid: ev.tgid,
                comm: ev.comm.clone(),
            },
            file,
            test: self.current_test.clone(),
        }));
    }

    /// A released file ends its space story.
    pub(super) fn space_on_file_free(
        &mut self,
        file: u64,
        actor: &Actor,
        chain: &[ChainLink],
        out: &mut Vec<Notice>,
    ) {
        if let Some(story) = self.space.stories.remove(&file) {
            out.push(Notice::SpaceFreed(SpaceFreed {
                held_ns: actor.ts_ns.saturating_sub(story.first_ns),
                story,
                ts_ns: actor.ts_ns,
                chain: chain.to_vec(),
            }));
        }
    }

    /// Deleted files still held (for the TUI and summaries).
    pub fn space_table(&self) -> &SpaceTable {
        &self.space
    }
}
