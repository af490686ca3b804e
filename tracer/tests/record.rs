//! The recording format without a kernel: round trips, and what the reader makes of
//! truncated, corrupted, foreign and newer files (a clear error or a partial read that says
//! what was skipped; never a panic).

mod common;

use common::tmp;
use std::{io::Write, os::unix::fs::PermissionsExt, path::Path};

use tracer::record::{
    FORMAT_VERSION, FRAME_HEADER_LEN, Item, MAGIC, Problem, ReadError, TraceEnd, TraceHeader,
    TraceReader, TraceWriter, writer::encode_frame,
};
use tracer_fs::{
    EngineConfig,
    event::{Event, HolderRef, NameKind, Payload, RefHow, WorkCtx},
};

fn header() -> TraceHeader {
    let mut engine = EngineConfig {
        delayed_fput: Some(0xffff_ffff_8140_0000),
        ..Default::default()
    };
    engine
        .symbols
        .insert(0xffff_ffff_8140_0000, "delayed_fput".into());
    TraceHeader {
        format_version: FORMAT_VERSION,
        wire_version: tracer_fs::wire::WIRE_VERSION,
        tracer_version: "test".into(),
        kernel_release: "6.18.0-test".into(),
        started_unix_ns: 1_750_000_000_000_000_000,
        started_boot_ns: 100_000_000_000,
        engine,
        ..Default::default()
    }
}

fn golden_events(name: &str) -> Vec<Event> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fs/tests/golden")
        .join(format!("{name}.events.jsonl"));
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Every kind of item, every payload variant.
fn sample_items() -> Vec<Item> {
    let mut items = vec![Item::Ready { ts_ns: 99 }];
    for n in [
        "fd_held",
        "uring_killed",
        "lazy_then_mount",
        "lock_dead_owner",
    ] {
        items.extend(golden_events(n).into_iter().map(Item::Event));
    }
    items.push(Item::Symbol {
        addr: 0xffff_ffff_8150_0000,
        name: "io_ring_exit_work".into(),
    });
    items.push(Item::EvidenceLimit("the ring buffer was full".into()));
    items.push(Item::Figures(r#"{"drops":{"FileRef":2}}"#.into()));
    items.push(Item::BadRecord("record too short (3 bytes)".into()));
    items.push(Item::CommandStarted {
        ts_ns: 5,
        pid: 77,
        argv: vec!["./check".into(), "generic/388".into()],
    });
    items.push(Item::Event(Event {
        ts_ns: 200_000_000_000,
        cpu: 3,
        pid: 10,
        tgid: 10,
        comm: "kworker/3:1".into(),
        work: Some(WorkCtx {
            work: 0xffff_8880_1111_0000,
            function: 0xffff_ffff_8140_0000,
        }),
        payload: Payload::TestMarker {
            test: "generic/388".into(),
        },
    }));
    items.push(Item::CommandExited {
        ts_ns: 6,
        pid: 77,
        status: 137,
        signal: Some(9),
    });
    items
}

fn file_ref(i: u64) -> Event {
    Event {
        ts_ns: 1_000_000_000 + i * 1000,
        cpu: (i % 8) as u16,
        pid: 1000 + (i % 50) as u32,
        tgid: 1000 + (i % 50) as u32,
        comm: "fsstress".into(),
        work: None,
        payload: Payload::FileRef(tracer_fs::event::FileRef {
            file: 0xffff_8880_0000_0000 + i * 0x100,
            holder: HolderRef::Fd {
                tgid: 1000 + (i % 50) as u32,
                fd: (3 + i % 20) as i32,
            },
            how: RefHow::Open,
            mnt_id: 42,
            dev: 7 << 20,
            ino: 100 + i,
            name_kind: NameKind::UserPath,
            name: format!("/mnt/scratch/p{}/f{}", i % 7, i),
        }),
    }
}

fn write(path: &Path, items: &[Item], clean: bool) -> u64 {
    let mut w = TraceWriter::create(path, &header()).unwrap();
    for i in items {
        w.push(i).unwrap();
    }
    if clean {
        w.finish(&TraceEnd {
            stopped_by: "test".into(),
            ..Default::default()
        })
        .unwrap()
    } else {
        w.flush().unwrap();
        w.bytes()
    }
}

/// What a reader got out of a file: items, problems, the end mark.
type Read = (Vec<Item>, Vec<Problem>, Option<TraceEnd>);

fn read_all(bytes: &[u8]) -> Result<Read, ReadError> {
    let mut r = TraceReader::new(bytes)?;
    let mut items = Vec::new();
    while let Some(i) = r.next_item()? {
        items.push(i);
    }
    Ok((items, r.problems().to_vec(), r.end().cloned()))
}

#[test]
fn round_trip_keeps_every_item_and_the_header() {
    let p = tmp("round.trace");
    let items = sample_items();
    write(&p, &items, true);
    let bytes = std::fs::read(&p).unwrap();
    let r = TraceReader::new(&bytes[..]).unwrap();
    assert_eq!(r.header(), &header());
    let (back, problems, end) = read_all(&bytes).unwrap();
    assert_eq!(back, items);
    assert_eq!(problems, vec![]);
    let end = end.expect("an end mark");
    assert_eq!(end.items, items.len() as u64);
    assert_eq!(end.stopped_by, "test");
}

#[test]
fn files_are_private_and_never_overwritten() {
    let p = tmp("private.trace");
    write(&p, &sample_items(), true);
    let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let err = TraceWriter::create(&p, &header()).err().expect("refused");
    assert!(format!("{err:#}").contains("never overwritten"), "{err:#}");
}

#[test]
fn many_events_make_several_blocks_and_stay_compact() {
    let p = tmp("many.trace");
    let items: Vec<Item> = (0..50_000).map(|i| Item::Event(file_ref(i))).collect();
    let size = write(&p, &items, true);
    let (back, problems, _) = read_all(&std::fs::read(&p).unwrap()).unwrap();
    assert_eq!(problems, vec![]);
    assert_eq!(back.len(), items.len());
    assert_eq!(back[49_999], items[49_999]);
    // A FileRef is 256 bytes on the wire; recorded, far less.
    let per_event = size as f64 / items.len() as f64;
    eprintln!("{per_event:.1} bytes per event");
    assert!(per_event < 40.0, "{per_event} bytes per event");
}

/// Frame boundaries of a recording: (offset, total length) of each frame after the preamble.
fn frames(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut v = Vec::new();
    let mut at = MAGIC.len() + 4;
    while at + FRAME_HEADER_LEN <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        v.push((at, FRAME_HEADER_LEN + len));
        at += FRAME_HEADER_LEN + len;
    }
    v
}

fn big_file() -> (Vec<u8>, Vec<Item>) {
    let p = tmp(&format!("big-{}.trace", rand_u64()));
    let items: Vec<Item> = (0..30_000).map(|i| Item::Event(file_ref(i))).collect();
    write(&p, &items, true);
    let bytes = std::fs::read(&p).unwrap();
    let _ = std::fs::remove_file(&p);
    (bytes, items)
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::Instant::now())
}

#[test]
fn a_truncated_tail_is_reported_and_everything_before_it_is_read() {
    let (bytes, items) = big_file();
    let fr = frames(&bytes);
    assert!(fr.len() >= 4, "{} frames", fr.len());
    // Cut in the middle of the third frame (the second block).
    let (off, len) = fr[2];
    let cut = &bytes[..off + len / 2];
    let (back, problems, end) = read_all(cut).unwrap();
    assert!(end.is_none());
    assert!(!back.is_empty() && back.len() < items.len());
    assert_eq!(
        back[..],
        items[..back.len()],
        "a prefix of what was written"
    );
    assert!(
        matches!(problems[0], Problem::TruncatedTail { offset, .. } if offset as usize == off),
        "{problems:?}"
    );
    assert!(problems.contains(&Problem::NoEnd));
    let text = problems[0].to_string();
    assert!(text.contains("truncated tail"), "{text}");
    // Cut right after a whole frame: no truncation, just no end.
    let (back, problems, _) = read_all(&bytes[..off]).unwrap();
    assert_eq!(back[..], items[..back.len()]);
    assert_eq!(problems, vec![Problem::NoEnd]);
    // Cut inside a frame header.
    let (_, problems, _) = read_all(&bytes[..off + 5]).unwrap();
    assert!(
        matches!(
            problems[0],
            Problem::TruncatedTail {
                present: 5,
                expected: None,
                ..
            }
        ),
        "{problems:?}"
    );
}

#[test]
fn every_cut_point_reads_a_prefix_or_fails_clearly() {
    let p = tmp("cuts.trace");
    let items = sample_items();
    write(&p, &items, true);
    let bytes = std::fs::read(&p).unwrap();
    for cut in 0..bytes.len() {
        match read_all(&bytes[..cut]) {
            Ok((back, problems, _)) => {
                assert_eq!(back[..], items[..back.len()], "cut at {cut}");
                assert!(!problems.is_empty(), "cut at {cut} went unnoticed");
            }
            Err(e) => {
                // Only a cut in the preamble or the header is fatal.
                assert!(
                    matches!(e, ReadError::NotATrace(_) | ReadError::BadHeader(_)),
                    "cut at {cut}: {e}"
                );
                assert!(cut < frames(&bytes)[1].0, "cut at {cut}: {e}");
            }
        }
    }
}

#[test]
fn corruption_in_the_middle_skips_one_block_and_reads_on() {
    let (mut bytes, items) = big_file();
    let fr = frames(&bytes);
    let (off, len) = fr[2];
    bytes[off + len / 2] ^= 0x5a;
    let (back, problems, end) = read_all(&bytes).unwrap();
    assert!(end.is_some(), "the end mark is still read");
    assert!(
        matches!(&problems[0], Problem::Corrupt { offset, skipped, reason }
            if *offset as usize == off && *skipped as usize == len && reason == "checksum mismatch"),
        "{problems:?}"
    );
    let lost = problems
        .iter()
        .find_map(|p| match p {
            Problem::ItemsLost { count, .. } => Some(*count),
            _ => None,
        })
        .expect("items lost are counted");
    assert_eq!(back.len() as u64 + lost, items.len() as u64);
    assert_eq!(back.last(), items.last(), "items after the damage are read");
    assert!(
        problems
            .iter()
            .any(|p| matches!(p, Problem::ItemsMissing { .. }))
    );
}

#[test]
fn garbage_between_frames_is_skipped() {
    let (bytes, items) = big_file();
    let fr = frames(&bytes);
    let (off, _) = fr[2];
    let mut b = bytes[..off].to_vec();
    b.extend_from_slice(b"\xF7\x1A garbage that looks like a sync mark\0\0\0\0");
    b.extend_from_slice(&bytes[off..]);
    let (back, problems, end) = read_all(&b).unwrap();
    assert_eq!(back, items);
    assert!(end.is_some());
    assert!(
        matches!(problems[..], [Problem::Corrupt { skipped: 42, .. }]),
        "{problems:?}"
    );
}

#[test]
fn a_damaged_length_is_caught() {
    let (mut bytes, items) = big_file();
    let fr = frames(&bytes);
    let (off, _) = fr[1];
    // A longer length that still fits in the file: the checksum covers it.
    bytes[off + 6] ^= 0x01;
    let (back, problems, _) = read_all(&bytes).unwrap();
    assert!(
        matches!(problems[0], Problem::Corrupt { .. }),
        "{problems:?}"
    );
    assert_eq!(back.last(), items.last());
}

#[test]
fn not_a_trace_newer_versions_and_damaged_headers_are_clear_errors() {
    let err = |b: &[u8]| TraceReader::new(b).err().expect("an error").to_string();
    assert_eq!(err(b""), "not a tracer recording: the file is empty");
    let e = err(b"{\"type\":\"hooks\"}\n{\"type\":\"ready\"}\n");
    assert!(
        e.starts_with("not a tracer recording: it starts with the text"),
        "{e}"
    );
    let e = err(&[0u8, 1, 2, 3, 200, 201]);
    assert!(e.contains("starts with the bytes 00 01 02 03 c8 c9"), "{e}");

    let p = tmp("newer.trace");
    write(&p, &sample_items(), true);
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[MAGIC.len()..MAGIC.len() + 4].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    let e = err(&bytes);
    assert!(e.contains("newer tracer"), "{e}");
    assert!(
        e.contains(&format!("format version {}", FORMAT_VERSION + 1)),
        "{e}"
    );

    let mut bytes = std::fs::read(&p).unwrap();
    bytes[MAGIC.len() + 4 + FRAME_HEADER_LEN + 3] ^= 0xff;
    let e = err(&bytes);
    assert!(
        e.starts_with("the recording's header is damaged (checksum mismatch)"),
        "{e}"
    );

    // A header frame with a good checksum but no JSON.
    let mut b = MAGIC.to_vec();
    b.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    encode_frame(&mut b, 1, 0, b"not json");
    let e = err(&b);
    assert!(e.contains("not valid JSON"), "{e}");
}

#[test]
fn unknown_frames_and_newer_or_damaged_alloc_snapshots_are_skipped_with_a_note() {
    use tracer::record::ALLOC_SNAPSHOT_VERSION;
    let p = tmp("unknown.trace");
    let items = sample_items();
    write(&p, &items, false);
    let mut bytes = std::fs::read(&p).unwrap();
    encode_frame(&mut bytes, 99, 0, b"from the future");
    let mut newer = (ALLOC_SNAPSHOT_VERSION + 1).to_le_bytes().to_vec();
    newer.extend_from_slice(b"alloc data of a later tracer");
    encode_frame(&mut bytes, 3, 0, &newer);
    encode_frame(&mut bytes, 3, 0, &newer);
    let mut damaged = ALLOC_SNAPSHOT_VERSION.to_le_bytes().to_vec();
    damaged.extend_from_slice(b"\x10\0\0\0not zstd");
    encode_frame(&mut bytes, 3, 0, &damaged);
    let (back, problems, _) = read_all(&bytes).unwrap();
    assert_eq!(back, items);
    assert!(
        problems
            .iter()
            .any(|p| matches!(p, Problem::UnknownFrame { kind: 99, .. }))
    );
    assert!(problems.contains(&Problem::AllocSnapshotsSkipped {
        count: 2,
        version: ALLOC_SNAPSHOT_VERSION + 1
    }));
    assert!(
        problems
            .iter()
            .any(|p| matches!(p, Problem::BadBlock { reason, .. }
            if reason.starts_with("allocation snapshot: decompression failed"))),
        "{problems:?}"
    );
}

#[test]
fn alloc_records_come_back_in_order_between_the_items_around_them() {
    use tracer::record::alloc::{AllocCounters, AllocRecord, LiveAlloc, SiteCount};
    let p = tmp("alloc.trace");
    let items = sample_items();
    let live = AllocRecord::Live(LiveAlloc {
        ts_ns: 5,
        outstanding: 2,
        bytes: 512,
        growth_objects_per_s: 1.5,
        growth_bytes_per_s: -3.0,
        by_call_site: vec![SiteCount {
            call_site: 0xffff_ffff_8100_0010,
            count: 2,
            bytes: 512,
        }],
        by_stack: vec![],
        by_mount: vec![],
        stacks: vec![],
        counters: AllocCounters {
            tracked: 9,
            ..Default::default()
        },
    });
    let frames = AllocRecord::Frames(vec![(0xffff_ffff_8100_0010, "f+0x10/0x20".into())]);
    let mut w = TraceWriter::create(&p, &header()).unwrap();
    w.push(&items[0]).unwrap();
    w.push(&Item::Alloc(AllocRecord::Setup("{}".into())))
        .unwrap();
    w.push_alloc(&[frames.clone(), live.clone()]).unwrap();
    w.push(&items[1]).unwrap();
    w.finish(&TraceEnd::default()).unwrap();
    let bytes = std::fs::read(&p).unwrap();
    let mut r = TraceReader::new(&bytes[..]).unwrap();
    let mut back = Vec::new();
    while let Some(i) = r.next_item().unwrap() {
        back.push(i);
    }
    assert_eq!(
        back,
        vec![
            items[0].clone(),
            Item::Alloc(AllocRecord::Setup("{}".into())),
            Item::Alloc(frames),
            Item::Alloc(live),
            items[1].clone(),
        ]
    );
    // Not items: the end mark's count still matches, nothing is reported missing.
    assert_eq!(r.items_read(), 2);
    assert_eq!(r.alloc_snapshots(), 2);
    assert_eq!(r.problems(), &[] as &[Problem]);
}

/// Random damage (xorshift, fixed seed): no panic, ever; what is read is in order.
#[test]
fn random_damage_never_panics() {
    let p = tmp("random.trace");
    let items = sample_items();
    write(&p, &items, true);
    let good = std::fs::read(&p).unwrap();
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    for round in 0..10_000 {
        let mut b = good.clone();
        for _ in 0..(1 + next() % 4) {
            let at = (next() as usize) % b.len();
            match next() % 4 {
                0 => b[at] ^= 1 << (next() % 8),
                1 => b.truncate(at.max(1)),
                2 => {
                    let n = (next() % 64) as usize;
                    let junk: Vec<u8> = (0..n).map(|_| next() as u8).collect();
                    b.splice(at..at, junk);
                }
                _ => {
                    let end = (at + (next() % 300) as usize).min(b.len());
                    b.drain(at..end);
                }
            }
            if b.is_empty() {
                break;
            }
        }
        if let Ok((back, _, _)) = read_all(&b) {
            // Items that come back are real items, in order (a subsequence).
            let mut it = items.iter();
            for x in &back {
                assert!(it.any(|y| y == x), "round {round}: an item out of nowhere");
            }
        }
    }
}

#[test]
fn a_writer_killed_mid_write_leaves_a_readable_file() {
    // What a crash leaves: the bytes of some frames, then part of one.
    let p = tmp("crash.trace");
    let items: Vec<Item> = (0..20_000).map(|i| Item::Event(file_ref(i))).collect();
    write(&p, &items, false);
    let bytes = std::fs::read(&p).unwrap();
    let last = *frames(&bytes).last().unwrap();
    let mut f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
    f.set_len((last.0 + last.1 / 3) as u64).unwrap();
    f.flush().unwrap();
    let mut r = TraceReader::open(&p).unwrap();
    let mut n = 0;
    while r.next_item().unwrap().is_some() {
        n += 1;
    }
    assert!(n > 0 && n < items.len());
    let problems = r.problems();
    assert!(
        matches!(problems[0], Problem::TruncatedTail { .. }),
        "{problems:?}"
    );
    assert_eq!(problems[1], Problem::NoEnd);
}

/// Allocation records as the tracker writes them: setup, names, a leak report.
fn alloc_records() -> Vec<tracer::record::alloc::AllocRecord> {
    use tracer::record::alloc::*;
    const SITE: u64 = 0xffff_ffff_8100_0010;
    vec![
        AllocRecord::Setup(
            r#"{"filter":{"terms":["cache:filp"]},"options":{"grace_ns":1000000000}}"#.into(),
        ),
        AllocRecord::Frames(vec![(SITE, "alloc_empty_file+0x10/0x110".into())]),
        AllocRecord::Leak(LeakRecord {
            window: WindowRecord {
                id: 1,
                target: "/mnt/t".into(),
                source: "tmpfs".into(),
                fs_type: "tmpfs".into(),
                start_ns: 10,
                end_ns: Some(500),
                lazy: false,
            },
            now_ns: 1_000_000_500,
            objects: 1,
            bytes: 184,
            uncertain: false,
            reasons: vec![],
            per_object: false,
            shown: vec![ObjRecord {
                ptr: 0xffff_8880_1234_5600,
                ts_ns: 20,
                call_site: SITE,
                cache: "filp".into(),
                size: 184,
                stack_id: 3,
                pid: 7,
                tgid: 7,
                comm: "cat".into(),
            }],
            groups: vec![GroupRecord {
                stack_id: 3,
                call_site: SITE,
                cache: "filp".into(),
                count: 1,
                bytes: 184,
                oldest_ns: 20,
            }],
            stacks: vec![StackRecord {
                stack_id: 3,
                call_site: SITE,
                frames: vec![SITE],
            }],
            cycle: 1,
            kind: "tmpfs".into(),
            parts: vec![PartRecord {
                class: tracer_fs::leakcheck::Class::Unconfirmed,
                earlier: false,
                objects: 1,
                bytes: 184,
                shown: vec![],
                groups: vec![],
            }],
        }),
    ]
}

/// The fuzz target's seeds (tracer/fuzz/seeds/reader): small, and each one read as
/// expected. `UPDATE_FUZZ_SEEDS=1` rewrites them.
#[test]
fn fuzz_seeds_are_small_and_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/reader");
    let p = tmp("seed.trace");
    let items: Vec<Item> = sample_items();
    write(&p, &items, true);
    let whole = std::fs::read(&p).unwrap();
    let fr = frames(&whole);
    let cut = whole[..fr[1].0 + fr[1].1 / 2].to_vec();
    // The structured form: `S`, then [kind][len u16][count][postcard items] chunks.
    let mut raw = Vec::new();
    for i in &items[..6] {
        tracer::record::writer::encode_item(&mut raw, i).unwrap();
    }
    let mut structured = vec![b'S', 2];
    structured.extend_from_slice(&((raw.len() + 1) as u16).to_le_bytes());
    structured.push(6);
    structured.extend_from_slice(&raw);
    // An allocation snapshot: the tracking's setup, names, and a leak report.
    let alloc = tracer::record::alloc::encode(&alloc_records()).unwrap();
    structured.push(3);
    structured.extend_from_slice(&(alloc.len() as u16).to_le_bytes());
    structured.extend_from_slice(&alloc);
    structured.extend_from_slice(&[4, 2, 0, b'{', b'}']);
    let seeds = [
        ("golden", whole),
        ("truncated", cut),
        ("structured", structured),
    ];
    if std::env::var_os("UPDATE_FUZZ_SEEDS").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in &seeds {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
    for (name, _) in &seeds {
        let b = std::fs::read(dir.join(name))
            .unwrap_or_else(|e| panic!("{name}: {e} (UPDATE_FUZZ_SEEDS=1 writes it)"));
        assert!(
            b.len() < 8192,
            "seed {name} is {} bytes: keep seeds small",
            b.len()
        );
        match *name {
            "golden" => {
                let (back, problems, end) = read_all(&b).unwrap();
                assert!(!back.is_empty() && problems.is_empty() && end.is_some());
            }
            "truncated" => assert!(matches!(
                read_all(&b).unwrap().1[0],
                Problem::TruncatedTail { .. }
            )),
            _ => assert_eq!(b[0], b'S'),
        }
    }
}

/// `tracer run` gathers its report beside the live engine from what it records, instead of
/// applying every event again: that report must be exactly what replaying the recording it
/// wrote gives. Recordings of fstests runs (one with allocation tracking) go through a live
/// sink and a recording sink, and each gathered report is compared with the replay of the
/// new file, in JSON and in text. (The kernel tier compares real `tracer run`s the same way,
/// with deferred work whose function names the live sink learns as it goes.)
#[test]
fn the_report_gathered_while_recording_is_the_recordings_replay() {
    use tracer::{
        kernel::kallsyms::Kallsyms,
        live::{Format, LiveSink},
        record::RecordSink,
        report::{ReportFormat, ReportOptions, replay_file},
        stream::Sink,
    };
    for name in ["fake-xfstests", "fake-xfstests-alloc"] {
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(format!("{name}.trace"));
        let mut reader = TraceReader::open(&fixture).unwrap();
        let h = reader.header().clone();
        let mut items = Vec::new();
        while let Some(i) = reader.next_item().unwrap() {
            items.push(i);
        }
        let events = items.iter().filter(|i| matches!(i, Item::Event(_))).count();
        assert!(events > 1000, "{name}: a real recording: {events} events");

        let out = tmp(&format!("{name}.gathered.trace"));
        let syms = Kallsyms::parse("");
        let live = LiveSink::new(
            tracer_fs::Engine::new(h.engine.clone()),
            std::io::sink(),
            Format::Text,
            false,
            &syms,
        );
        let opts = ReportOptions::default();
        let writer = TraceWriter::create(&out, &h).unwrap();
        let mut rec = RecordSink::gathering_report(live, writer, h.clone(), &opts);
        for i in items {
            match i {
                Item::Event(ev) => rec.event(&ev).unwrap(),
                Item::Ready { .. } => rec.ready().unwrap(),
                Item::BadRecord(b) => rec.bad_record(&b).unwrap(),
                other => rec.push(&other),
            }
        }
        rec.finish("command exited", Some(0)).unwrap();
        let mut gathered = rec.take_report(&out.display().to_string()).unwrap();
        let mut replayed = replay_file(&out, &opts).unwrap();
        assert!(gathered.sections.len() > 1, "{name}: per-test sections");
        assert!(
            gathered.sections.iter().any(|s| !s.stories.is_empty()),
            "{name}: EBUSY stories"
        );
        for f in [ReportFormat::Json, ReportFormat::Text] {
            assert_eq!(gathered.render(f), replayed.render(f), "{name}: {f:?}");
        }
    }
}
