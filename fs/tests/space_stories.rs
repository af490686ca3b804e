//! Space a delete did not free: hand-written streams in, notices out (the live kernel
//! scenario is tracer/tests/space.rs).

mod common;

use common::locks::*;
use common::*;
use tracer_fs::Engine;
use tracer_fs::event::{Event, Payload};
use tracer_fs::verdict::{HolderDesc, Notice};

fn space_held(file: u64, ino: u64) -> Payload {
    Payload::SpaceHeld {
        file,
        ino,
        dev: SCRATCH_DEV,
        mnt_id: 42,
        size: 3 << 20,
        blocks: (3 << 20) / 512,
    }
}

/// The dead owner's stream (its ring holds the file until delayed_fput), with the parent
/// deleting the file after the kill, and `extra` records.
fn stream(extra: Vec<Event>) -> Vec<Event> {
    let mut v = dead_owner_stream(false);
    let parent = task(1100, "harness");
    v.push(ev(T0 + 2 * S + 350 * US, &parent, space_held(F, INO)));
    v.extend(extra);
    v.sort_by_key(|e| e.ts_ns);
    v
}

fn space(n: Vec<Notice>) -> Vec<Notice> {
    n.into_iter()
        .filter(|n| matches!(n, Notice::SpaceHeld(_) | Notice::SpaceFreed(_)))
        .collect()
}

#[test]
fn a_delete_a_dead_owners_ring_survives_holds_the_space_until_delayed_fput() {
    let n = space(Engine::new(config()).apply_all(&stream(vec![])));
    assert_eq!(n.len(), 2, "{n:#?}");
    let Notice::SpaceHeld(h) = &n[0] else {
        panic!("{n:#?}")
    };
    assert_eq!(h.story.path.as_deref(), Some(PATH));
    assert_eq!(h.story.mount.as_ref().map(|m| m.id), Some(42));
    assert_eq!(h.story.allocated, 3 << 20);
    assert_eq!(h.deleted_by.tgid, 1100);
    assert!(
        h.file.holders.iter().any(|d| matches!(
            d,
            HolderDesc::UringFixed { ring, .. } if ring.owner.as_ref().is_some_and(|o| o.pid == 1234 && !o.alive)
        )),
        "{h:#?}"
    );
    let text = h.to_string();
    assert!(
        text.contains("3.0 MiB") && text.contains("deleted by pid 1100"),
        "{text}"
    );
    let Notice::SpaceFreed(f) = &n[1] else {
        panic!("{n:#?}")
    };
    assert_eq!(f.story.id, h.story.id);
    assert_eq!(
        f.chain[0].function_name.as_deref(),
        Some("delayed_fput"),
        "{f:#?}"
    );
    assert!(
        f.chain
            .iter()
            .any(|l| l.function_name.as_deref() == Some("io_ring_exit_work")),
        "{f:#?}"
    );
    assert_eq!(f.held_ns, 14 * MS + 300 * US - 350 * US);
}

#[test]
fn a_stale_slot_or_a_second_delete_says_nothing_more() {
    let parent = task(1100, "harness");
    let t = T0 + 2 * S + 360 * US;
    let n = space(Engine::new(config()).apply_all(&stream(vec![
        // Another delete: the same file is said once.
        ev(t, &parent, space_held(F, INO)),
        // A slot naming a file released long ago (its memory now another file's).
        ev(t + US, &parent, space_held(0xffff_8880_0000_9000, 77)),
        // The right address, another inode: the slot's file was reused.
        ev(t + 2 * US, &parent, space_held(MINE, 999)),
    ])));
    let held = n
        .iter()
        .filter(|n| matches!(n, Notice::SpaceHeld(_)))
        .count();
    assert_eq!(held, 1, "{n:#?}");
}
