//! `tracer report` without a kernel: replay through the engine, per-test sections,
//! `--test`, `--redact`, every format, damaged input, and golden reports of a small real
//! recording (`tests/fixtures/fake-xfstests.trace`, made by `tests/record_kernel.rs`).
//! `UPDATE_GOLDEN=1 cargo test -p tracer --test report` rewrites the golden reports.

mod common;

use common::tmp;
use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::Value;
use tracer::{
    record::{FORMAT_VERSION, Item, MAGIC, TraceEnd, TraceHeader, TraceReader, TraceWriter},
    report::{self, ReportFormat, ReportOptions},
};
use tracer_fs::{
    Engine, Notice,
    event::{Event, Payload},
};

#[path = "../../fs/tests/common/golden_config.rs"]
mod golden_config;
use golden_config::config;

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn golden_events(name: &str) -> Vec<Event> {
    let p = manifest()
        .join("../fs/tests/golden")
        .join(format!("{name}.events.jsonl"));
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

const TESTS: [(&str, &str); 3] = [
    ("generic/001", "fd_held"),
    ("generic/388", "uring_killed"),
    ("xfs/100", "lazy_then_mount"),
];

/// The engine's three golden deferral chains as one xfstests-like run: a marker before
/// each (`uring_killed` has its own), 100 s apart.
fn xfstests_like_events() -> Vec<Event> {
    let mut all = Vec::new();
    for (i, (test, stream)) in TESTS.iter().enumerate() {
        let shift = i as u64 * 100_000_000_000;
        let evs = golden_events(stream);
        let has_marker = evs
            .iter()
            .any(|e| matches!(&e.payload, Payload::TestMarker { test: t } if t == test));
        if !has_marker {
            all.push(Event {
                ts_ns: evs[0].ts_ns + shift - 1,
                cpu: 0,
                pid: 1,
                tgid: 1,
                comm: "tracer".into(),
                work: None,
                payload: Payload::TestMarker {
                    test: test.to_string(),
                },
            });
        }
        for mut e in evs {
            e.ts_ns += shift;
            if let Payload::MountCall(tracer_fs::event::MountCall { enter_ns, .. }) = &mut e.payload
            {
                *enter_ns += shift;
            }
            all.push(e);
        }
    }
    all
}

fn write_trace(path: &Path, events: &[Event]) {
    let h = TraceHeader {
        format_version: FORMAT_VERSION,
        wire_version: tracer_fs::wire::WIRE_VERSION,
        tracer_version: "test".into(),
        kernel_release: "6.18.0-test".into(),
        started_unix_ns: 1_750_000_000_000_000_000,
        started_boot_ns: events[0].ts_ns - 1_000,
        engine: config(),
        ..Default::default()
    };
    let mut w = TraceWriter::create(path, &h).unwrap();
    for e in events {
        w.push(&Item::Event(e.clone())).unwrap();
    }
    w.finish(&TraceEnd {
        ended_boot_ns: events.last().unwrap().ts_ns + 1_000,
        stopped_by: "test".into(),
        ..Default::default()
    })
    .unwrap();
}

fn xfstests_like_trace(name: &str) -> PathBuf {
    let p = tmp(name);
    write_trace(&p, &xfstests_like_events());
    p
}

fn all_notices(r: &report::Report) -> Vec<Notice> {
    let mut v: Vec<Notice> = r
        .sections
        .iter()
        .flat_map(|s| {
            s.stories
                .iter()
                .flat_map(|st| st.notices.iter())
                .chain(s.detached.iter())
                .cloned()
        })
        .collect();
    v.sort_by_key(|n| (report::notice_ts(n), n.to_json_line()));
    v
}

#[test]
fn replay_says_what_the_engine_says_split_per_test() {
    let events = xfstests_like_events();
    let mut engine = Engine::new(config());
    let mut direct = engine.apply_all(&events);
    direct.sort_by_key(|n| (report::notice_ts(n), n.to_json_line()));
    assert!(direct.len() >= 10, "{}", direct.len());

    let p = xfstests_like_trace("split.trace");
    let r = report::replay_file(&p, &ReportOptions::default()).unwrap();
    assert_eq!(all_notices(&r), direct);
    let names: Vec<Option<&str>> = r.sections.iter().map(|s| s.test.as_deref()).collect();
    assert_eq!(
        names,
        vec![Some("generic/001"), Some("generic/388"), Some("xfs/100")]
    );
    assert_eq!(r.tests_seen, ["generic/001", "generic/388", "xfs/100"]);
    // Each test has its own EBUSY story, closed.
    for s in &r.sections {
        assert!(!s.stories.is_empty(), "{:?}", s.test);
        for st in &s.stories {
            assert!(
                matches!(st.notices[0], Notice::Verdict(_)),
                "{:?}",
                st.notices
            );
        }
    }
    let uring = &r.sections[1];
    assert!(uring.stories[0].closed_ns.is_some());
    let work: Vec<&str> = uring.work.iter().map(|w| w.name.as_str()).collect();
    assert!(work.contains(&"io_ring_exit_work"), "{work:?}");
    assert!(work.contains(&"delayed_fput"), "{work:?}");
    let exit = uring
        .work
        .iter()
        .find(|w| w.name == "io_ring_exit_work")
        .unwrap();
    assert_eq!(exit.latency.count, exit.started);
    // The lazy umount test leaves nothing pinned in the end, the others neither.
    assert!(r.sections.iter().all(|s| s.pinned_at_end.is_empty()));
}

#[test]
fn one_test_only_and_unknown_tests_are_refused() {
    let p = xfstests_like_trace("only.trace");
    let opts = ReportOptions {
        test: Some("generic/388".into()),
        ..Default::default()
    };
    let mut r = report::replay_file(&p, &opts).unwrap();
    assert_eq!(r.sections.len(), 1);
    assert_eq!(r.sections[0].test.as_deref(), Some("generic/388"));
    let text = r.render(ReportFormat::Text);
    assert!(text.contains("== generic/388 =="), "{text}");
    assert!(!text.contains("== generic/001 =="), "{text}");

    let opts = ReportOptions {
        test: Some("generic/999".into()),
        ..Default::default()
    };
    let e = report::replay_file(&p, &opts).err().unwrap();
    let e = format!("{e:#}");
    assert!(
        e.contains("no test generic/999 in this recording (tests recorded: generic/001, generic/388, xfs/100)"),
        "{e}"
    );
}

fn kernel_hex(s: &str) -> Vec<String> {
    let mut v = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find("0xffff") {
        v.push(rest[i..(i + 18).min(rest.len())].to_string());
        rest = &rest[i + 6..];
    }
    v
}

#[test]
fn redact_replaces_kernel_addresses_with_stable_tokens_in_every_format() {
    let p = xfstests_like_trace("redact.trace");
    let opts = ReportOptions {
        redact: true,
        timeline: true,
        ..Default::default()
    };
    let mut r = report::replay_file(&p, &opts).unwrap();
    let text = r.render(ReportFormat::Text);
    let json = r.render(ReportFormat::Json);
    let html = r.render(ReportFormat::Html);
    let perfetto = r.render(ReportFormat::Perfetto);
    for (name, out) in [
        ("text", &text),
        ("json", &json),
        ("html", &html),
        ("perfetto", &perfetto),
    ] {
        assert_eq!(kernel_hex(out), Vec::<String>::new(), "{name}");
        assert!(!out.contains("18446"), "{name}: a decimal kernel address");
    }
    // The first file of the recording is file#1 everywhere, the first ring ring#1.
    assert!(text.contains("file#1"), "{text}");
    assert!(json.contains("file#1"));
    assert!(html.contains("file#1"));
    assert!(text.contains("ring#1"), "{text}");
    // And without --redact the addresses are there.
    let mut plain = report::replay_file(&p, &ReportOptions::default()).unwrap();
    assert!(!kernel_hex(&plain.render(ReportFormat::Text)).is_empty());
}

#[test]
fn html_is_one_self_contained_page_with_a_timeline_per_story() {
    let p = xfstests_like_trace("html.trace");
    let mut r = report::replay_file(&p, &ReportOptions::default()).unwrap();
    let html = r.render(ReportFormat::Html);
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.trim_end().ends_with("</html>"));
    for outside in ["http://", "https://", "<script", "src=", "<link"] {
        assert!(!html.contains(outside), "{outside}");
    }
    let stories: usize = r.sections.iter().map(|s| s.stories.len()).sum();
    assert_eq!(html.matches("<svg").count(), stories);
    assert!(html.contains("Leak groups"));
    assert!(html.contains("allocations: not tracked in this recording"));
    assert!(html.contains("generic/388"));
}

#[test]
fn perfetto_has_tracks_slices_and_chain_flows() {
    let p = xfstests_like_trace("perfetto.trace");
    let opts = ReportOptions {
        timeline: true,
        ..Default::default()
    };
    let mut r = report::replay_file(&p, &opts).unwrap();
    let v: Value = serde_json::from_str(&r.render(ReportFormat::Perfetto)).unwrap();
    let evs = v["traceEvents"].as_array().unwrap();
    let names = |ph: &str| -> Vec<String> {
        evs.iter()
            .filter(|e| e["ph"] == ph)
            .map(|e| e["name"].as_str().unwrap_or("").to_string())
            .collect()
    };
    let slices = names("X");
    for t in ["generic/001", "generic/388", "xfs/100"] {
        assert!(slices.iter().any(|n| n == t), "{t}");
    }
    assert!(slices.iter().any(|n| n.starts_with("busy: umount")));
    assert!(
        slices.iter().any(|n| n == "io_ring_exit_work"),
        "{slices:?}"
    );
    assert!(slices.iter().any(|n| n.contains("→ EBUSY")), "{slices:?}");
    // Flows: each start has its finish.
    let starts = names("s").len();
    assert!(starts > 0);
    assert_eq!(starts, names("f").len());
    for e in evs {
        if e["ph"] == "X" {
            assert!(
                e["ts"].is_number() && e["dur"].as_f64().unwrap() > 0.0,
                "{e}"
            );
        }
    }
    let procs = names("M");
    assert!(procs.iter().any(|n| n == "process_name"));
}

#[test]
fn damaged_recordings_give_partial_reports_that_say_what_was_skipped() {
    let p = xfstests_like_trace("damaged.trace");
    let bytes = std::fs::read(&p).unwrap();
    // Truncated: the end mark and part of the only block are gone.
    let cut = tmp("cut.trace");
    std::fs::write(&cut, &bytes[..bytes.len() - 40]).unwrap();
    let mut r = report::replay_file(&cut, &ReportOptions::default()).unwrap();
    let text = r.render(ReportFormat::Text);
    assert!(text.contains("truncated tail"), "{text}");
    assert!(text.contains("cut short"), "{text}");
    let json: Value = serde_json::from_str(&r.render(ReportFormat::Json)).unwrap();
    assert_eq!(json["recording"]["clean_end"], false);
    assert_eq!(
        json["recording"]["problems"][0]["problem"],
        "truncated_tail"
    );
}

fn tracer(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tracer"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn the_cli_reports_bad_input_clearly_and_writes_private_files() {
    let not = tmp("not-a-trace.jsonl");
    std::fs::write(&not, "{\"type\":\"ready\"}\n").unwrap();
    let out = tracer(&["report", not.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a tracer recording"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    let newer = tmp("newer.trace");
    let mut b = MAGIC.to_vec();
    b.extend_from_slice(&(FORMAT_VERSION + 7).to_le_bytes());
    std::fs::write(&newer, &b).unwrap();
    let out = tracer(&["report", newer.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("written by a newer tracer"), "{err}");

    let out = tracer(&["report", "/nonexistent/x.trace"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("No such file"));

    let p = xfstests_like_trace("cli.trace");
    for (format, ext) in [
        ("text", "txt"),
        ("json", "json"),
        ("html", "html"),
        ("perfetto", "pf.json"),
    ] {
        let o = tmp(&format!("cli.{ext}"));
        let out = tracer(&[
            "report",
            p.to_str().unwrap(),
            "--format",
            format,
            "-o",
            o.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{out:?}");
        let mode = std::fs::metadata(&o).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{format}");
    }
    let out = tracer(&["report", p.to_str().unwrap(), "--test", "xfs/100"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("== xfs/100 =="), "{text}");
}

// ----- golden reports of a real recording -----

fn compare(file: &str, actual: &str) {
    let path = manifest().join("tests/fixtures").join(file);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
    if expected != actual {
        let first = expected
            .lines()
            .zip(actual.lines())
            .enumerate()
            .find(|(_, (e, a))| e != a)
            .map(|(i, (e, a))| format!("line {}:\n  expected: {e}\n  actual:   {a}", i + 1))
            .unwrap_or_else(|| "(one is a prefix of the other)".into());
        panic!(
            "{} differs from the report ({} vs {} lines); first difference: {first}\n\nUPDATE_GOLDEN=1 rewrites it after a deliberate change.\n\nfull report:\n{actual}",
            path.display(),
            expected.lines().count(),
            actual.lines().count()
        );
    }
}

fn fixture_report(format: ReportFormat) -> String {
    fixture_report_of("fake-xfstests.trace", format, &ReportOptions::default())
}

fn fixture_report_of(name: &str, format: ReportFormat, opts: &ReportOptions) -> String {
    // A path relative to the crate, so the report's first line does not depend on where
    // the checkout is.
    let rel = Path::new("tests/fixtures").join(name);
    let reader = TraceReader::open(&manifest().join(&rel)).unwrap();
    let opts = ReportOptions {
        timeline: format == ReportFormat::Perfetto,
        ..opts.clone()
    };
    let mut r = report::replay(reader, &rel.display().to_string(), &opts).unwrap();
    r.render(format)
}

#[test]
fn golden_text_report_of_a_real_recording() {
    let text = fixture_report(ReportFormat::Text);
    // What a person looks for: each test, what pinned each mount.
    for t in [
        "== generic/001 ==",
        "== generic/002 ==",
        "== generic/388 ==",
    ] {
        assert!(text.contains(t), "{t}");
    }
    assert!(text.contains("held-by-check"));
    compare("fake-xfstests.report.txt", &text);
}

#[test]
fn golden_json_report_of_a_real_recording() {
    let json = fixture_report(ReportFormat::Json);
    let v: Value = serde_json::from_str(&json).unwrap();
    let tests: Vec<&str> = v["tests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["test"].as_str())
        .collect();
    assert_eq!(tests, ["generic/001", "generic/002", "generic/388"]);
    compare("fake-xfstests.report.json", &json);
}

// ----- golden reports of a real recording with allocation tracking -----

const ALLOC_FIXTURE: &str = "fake-xfstests-alloc.trace";

/// The leak reports of the fixture's scratch mount (`/tmp/fake-scratch.*`) in `test`.
fn scratch_leaks<'a>(v: &'a Value, test: &str) -> Vec<&'a Value> {
    let t = v["tests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["test"] == test)
        .unwrap();
    t["leaks"]["allocations"]["leak_reports"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| {
            k["mount"]["target"]
                .as_str()
                .unwrap()
                .starts_with("/tmp/fake-scratch.")
        })
        .collect()
}

#[test]
fn golden_json_report_of_a_recording_with_allocations() {
    let json = fixture_report_of(ALLOC_FIXTURE, ReportFormat::Json, &ReportOptions::default());
    let v: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        v["recording"]["allocation_tracking"]["filter"]["terms"],
        serde_json::json!(["cache:filp"])
    );
    let pid = v["recording"]["command"]["pid"].clone();
    // Each test's own mount of the scratch directory has its leak report; generic/002's
    // lists the script's three files (the fixture's true positive), the others none of it.
    for (test, script_objects) in [("generic/001", 0), ("generic/002", 3), ("generic/388", 0)] {
        let k = scratch_leaks(&v, test);
        assert_eq!(k.len(), 1, "{test}");
        let of_script: Vec<&Value> = k[0]["object_list"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| o["tgid"] == pid)
            .collect();
        assert_eq!(of_script.len(), script_objects, "{test}: {}", k[0]["text"]);
        for o in of_script {
            assert_eq!(o["comm"], "fake-check.sh");
            assert_eq!(o["cache"], "filp");
        }
    }
    compare("fake-xfstests-alloc.report.json", &json);
}

#[test]
fn golden_text_report_of_a_recording_with_allocations() {
    let text = fixture_report_of(ALLOC_FIXTURE, ReportFormat::Text, &ReportOptions::default());
    assert!(text.contains("allocation tracking: cache:filp"), "{text}");
    let g2 =
        &text[text.find("== generic/002 ==").unwrap()..text.find("== generic/388 ==").unwrap()];
    assert!(g2.contains("leak report for /tmp/fake-scratch."), "{g2}");
    assert_eq!(g2.matches("comm \"fake-check.sh\"").count(), 3, "{g2}");
    assert!(g2.contains("unreferenced object 0x"), "{g2}");
    assert!(g2.contains("    by stack:\n"), "{g2}");
    compare("fake-xfstests-alloc.report.txt", &text);
}

/// `--test` and `--redact` apply to the leak reports; HTML and Perfetto show them.
#[test]
fn leak_reports_in_every_format_with_test_and_redact() {
    let only = ReportOptions {
        test: Some("generic/002".into()),
        redact: true,
        ..Default::default()
    };
    let text = fixture_report_of(ALLOC_FIXTURE, ReportFormat::Text, &only);
    assert!(text.contains("== generic/002 =="));
    assert!(!text.contains("== generic/001 =="));
    assert_eq!(
        text.matches("leak report for /tmp/fake-scratch.").count(),
        1
    );
    assert!(text.contains("unreferenced object "), "{text}");
    assert_eq!(kernel_hex(&text), Vec::<String>::new());
    for l in text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("unreferenced object "))
    {
        assert!(l.starts_with("obj#") || l.starts_with("file#"), "{l}");
    }
    let json = fixture_report_of(ALLOC_FIXTURE, ReportFormat::Json, &only);
    assert_eq!(kernel_hex(&json), Vec::<String>::new());
    assert!(!json.contains("18446"), "a decimal kernel address");
    let v: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(scratch_leaks(&v, "generic/002").len(), 1);

    let html = fixture_report_of(ALLOC_FIXTURE, ReportFormat::Html, &ReportOptions::default());
    assert!(html.contains("unreferenced object 0x"));
    assert!(html.contains("comm &quot;fake-check.sh&quot;"));
    assert!(!html.contains(report::ALLOCATIONS_NOT_TRACKED));

    let pf = fixture_report_of(
        ALLOC_FIXTURE,
        ReportFormat::Perfetto,
        &ReportOptions::default(),
    );
    let v: Value = serde_json::from_str(&pf).unwrap();
    let evs = v["traceEvents"].as_array().unwrap();
    assert!(
        evs.iter()
            .any(|e| e["ph"] == "C" && e["name"] == "outstanding allocations")
    );
    let leaks: Vec<&str> = evs
        .iter()
        .filter(|e| e["ph"] == "i" && e["cat"] == "leak")
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert!(
        leaks
            .iter()
            .any(|n| n.starts_with("/tmp/fake-scratch.") && n.contains(" objects, ")),
        "{leaks:?}"
    );
}

/// A recording with allocation snapshots cut anywhere (a tracer killed mid-write) still
/// replays: what was written before the cut is reported, the cut is said.
#[test]
fn a_recording_with_allocations_cut_anywhere_still_reports() {
    let whole = std::fs::read(manifest().join("tests/fixtures").join(ALLOC_FIXTURE)).unwrap();
    // Past the header (without it nothing can be replayed, and the reader says so).
    let pre = MAGIC.len() + 4;
    let header_end =
        pre + 12 + u32::from_le_bytes(whole[pre + 4..pre + 8].try_into().unwrap()) as usize;
    let mut leaks_seen = Vec::new();
    for i in 1..40 {
        let cut = header_end + (whole.len() - header_end) * i / 40;
        let reader = TraceReader::new(&whole[..cut]).unwrap();
        let mut r = report::replay(reader, "cut", &ReportOptions::default()).unwrap();
        assert!(
            r.problems
                .iter()
                .any(|p| matches!(p, tracer::record::Problem::NoEnd)),
            "cut at {cut}"
        );
        for f in [ReportFormat::Text, ReportFormat::Json, ReportFormat::Html] {
            let _ = r.render(f);
        }
        leaks_seen.push(r.alloc.as_ref().map_or(0, |a| a.leak_reports));
    }
    // The further the cut, the more of the leak reports were read.
    assert!(
        leaks_seen.windows(2).all(|w| w[0] <= w[1]),
        "{leaks_seen:?}"
    );
    assert!(*leaks_seen.last().unwrap() >= 2, "{leaks_seen:?}");
}

fn replay_and_render_all(bytes: &[u8]) {
    let Ok(reader) = TraceReader::new(bytes) else {
        return;
    };
    let opts = ReportOptions {
        redact: true,
        timeline: true,
        ..Default::default()
    };
    if let Ok(mut r) = report::replay(reader, "mutated", &opts) {
        for f in [
            ReportFormat::Text,
            ReportFormat::Json,
            ReportFormat::Html,
            ReportFormat::Perfetto,
        ] {
            let _ = r.render(f);
        }
    }
}

/// Items damaged behind valid checksums (what the fuzz target does, briefly and without
/// nightly): replay and every renderer take whatever decodes, without a panic. Includes
/// the fuzz target's finds (`tracer/fuzz/seeds/reader/regress-*`).
#[test]
fn mutated_items_never_panic_the_engine_or_the_renderers() {
    use tracer::record::writer::framed_chunks;
    let seeds = manifest().join("fuzz/seeds/reader");
    for e in std::fs::read_dir(&seeds).unwrap() {
        let b = std::fs::read(e.unwrap().path()).unwrap();
        if b.first() == Some(&b'S') {
            replay_and_render_all(&framed_chunks(&b[1..]));
        } else {
            replay_and_render_all(&b);
        }
    }
    let base = std::fs::read(seeds.join("structured")).unwrap();
    // The seed reaches the allocation records too (a leak report, filed under its umount).
    let r = report::replay(
        TraceReader::new(&framed_chunks(&base[1..])[..]).unwrap(),
        "seed",
        &ReportOptions::default(),
    )
    .unwrap();
    assert_eq!(r.alloc.as_ref().map(|a| a.leak_reports), Some(1));
    let mut s = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    for _ in 0..3000 {
        let mut b = base.clone();
        for _ in 0..(1 + next() % 6) {
            // Past `S`, the chunk header and the item count: the items themselves.
            let at = 5 + (next() as usize) % (b.len() - 5);
            match next() % 3 {
                0 => b[at] ^= 1 << (next() % 8),
                1 => b[at] = next() as u8,
                _ => b[at] = [0, 0x7f, 0x80, 0xff][(next() % 4) as usize],
            }
        }
        replay_and_render_all(&framed_chunks(&b[1..]));
    }
}

/// Names the live engine learnt at run time (`Symbol` items) name the work in the report.
#[test]
fn symbols_learnt_while_recording_name_the_work_in_the_report() {
    const MY_WORK_FN: u64 = 0xffff_ffff_8123_4560;
    const WORK: u64 = 0xffff_8880_0abc_0000;
    let p = tmp("symbols.trace");
    let h = TraceHeader {
        format_version: FORMAT_VERSION,
        engine: config(),
        started_boot_ns: 1_000,
        ..Default::default()
    };
    let ev = |ts: u64, payload: Payload| Event {
        ts_ns: ts,
        cpu: 0,
        pid: 40,
        tgid: 40,
        comm: "kworker/0:1".into(),
        work: None,
        payload,
    };
    let mut w = TraceWriter::create(&p, &h).unwrap();
    w.push(&Item::Symbol {
        addr: MY_WORK_FN,
        name: "my_work_fn".into(),
    })
    .unwrap();
    for base in [10_000u64, 50_000] {
        for e in [
            ev(
                base,
                Payload::WorkQueued {
                    work: WORK,
                    function: MY_WORK_FN,
                    target_cpu: 0,
                },
            ),
            ev(
                base + 3_000,
                Payload::WorkStart {
                    work: WORK,
                    function: MY_WORK_FN,
                },
            ),
            ev(
                base + 5_000,
                Payload::WorkEnd {
                    work: WORK,
                    function: MY_WORK_FN,
                },
            ),
        ] {
            w.push(&Item::Event(e)).unwrap();
        }
    }
    w.finish(&TraceEnd::default()).unwrap();
    let mut r = report::replay_file(&p, &ReportOptions::default()).unwrap();
    let work = &r.sections[0].work;
    assert_eq!(work.len(), 1, "{work:?}");
    assert_eq!(work[0].name, "my_work_fn");
    assert_eq!((work[0].queued, work[0].started, work[0].ended), (2, 2, 2));
    assert_eq!(work[0].latency.count, 2);
    assert_eq!(work[0].latency.max_ns, 3_000);
    assert_eq!(work[0].run.p50_ns, 2_000);
    let text = r.render(ReportFormat::Text);
    assert!(
        text.contains("my_work_fn: armed 0, queued 2, started 2, ended 2"),
        "{text}"
    );
}

/// Lock-conflict stories go where the EBUSY stories go: the text report (its own list),
/// HTML (a timeline each), Perfetto (a "held" slice each) and JSON.
#[test]
fn lock_stories_in_every_format() {
    let mut events = golden_events("lock_dead_owner");
    events.insert(
        0,
        Event {
            ts_ns: events[0].ts_ns - 1,
            cpu: 0,
            pid: 1,
            tgid: 1,
            comm: "tracer".into(),
            work: None,
            payload: Payload::TestMarker {
                test: "generic/999".into(),
            },
        },
    );
    let p = tmp("locks.trace");
    write_trace(&p, &events);
    let mut r = report::replay_file(&p, &ReportOptions::default()).unwrap();
    let s = &r.sections[0];
    assert_eq!(s.stories.len(), 2);
    assert!(s.stories.iter().all(|st| st.lock && st.closed_ns.is_some()));
    assert_eq!(s.stories[0].failed_attempts, 3);
    let text = r.render(ReportFormat::Text);
    assert!(text.contains("EBUSY stories: none"), "{text}");
    assert!(text.contains("lock conflicts: 2"), "{text}");
    assert!(
        text.contains("3 conflicts; held for 13.8ms from the first conflict until released"),
        "{text}"
    );
    assert!(
        text.contains("timeline (from the first conflict at"),
        "{text}"
    );
    assert!(
        text.contains("released by: delayed_fput (kworker/1:2) ← armed by io_ring_exit_work"),
        "{text}"
    );
    let html = r.render(ReportFormat::Html);
    assert_eq!(html.matches("<svg").count(), 2);
    assert!(html.contains("lock conflict #1 on /mnt/scratch/data"));
    let v: Value = serde_json::from_str(&r.render(ReportFormat::Perfetto)).unwrap();
    let held: Vec<&str> = v["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["ph"] == "X" && e["cat"] == "lock")
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert_eq!(
        held,
        [
            "held: lock conflict #1 on /mnt/scratch/data",
            "held: lock conflict #2 on /mnt/scratch/data"
        ]
    );
    let j = r.render(ReportFormat::Json);
    for kind in ["lock_conflict", "lock_still_held", "lock_released"] {
        assert!(j.contains(&format!("\"{kind}\"")), "{kind}: {j}");
    }
}
