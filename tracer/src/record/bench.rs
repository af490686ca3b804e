//! How fast recordings are written and read back (`tracer bench-record`, hidden; run by
//! `cargo xtask bench`, which reports the figures and asserts nothing): the events of an
//! existing recording, repeated with shifted times up to `events`, written to a new file,
//! then read back.

use std::{path::PathBuf, time::Instant};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

use super::{FORMAT_VERSION, Item, TraceEnd, TraceHeader, TraceReader, TraceWriter};

#[derive(clap::Args)]
pub struct BenchArgs {
    /// A recording whose events make the mix (e.g. tracer/tests/fixtures/fake-xfstests.trace).
    #[arg(long)]
    pub from: PathBuf,
    /// Where to write the new recording (must not exist; removed afterwards).
    #[arg(long)]
    pub out: PathBuf,
    /// How many events to write.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: usize,
}

/// Writes and reads the recording; one JSON object with the figures.
pub fn run(args: &BenchArgs) -> Result<Value> {
    let mut r = TraceReader::open(&args.from)
        .with_context(|| format!("reading {}", args.from.display()))?;
    let mut mix = Vec::new();
    while let Some(i) = r.next_item()? {
        if let Item::Event(e) = i {
            mix.push(e);
        }
    }
    let (Some(first), Some(last)) = (mix.first(), mix.last()) else {
        bail!("{} holds no events", args.from.display());
    };
    let span = last.ts_ns.saturating_sub(first.ts_ns) + 1;
    let header = TraceHeader {
        format_version: FORMAT_VERSION,
        wire_version: tracer_fs::wire::WIRE_VERSION,
        tracer_version: env!("CARGO_PKG_VERSION").into(),
        ..Default::default()
    };
    let n = args.events;
    // The clones are made before the clock starts: only the writer is timed.
    let events: Vec<_> = (0..n)
        .map(|i| {
            let mut e = mix[i % mix.len()].clone();
            e.ts_ns += (i / mix.len()) as u64 * span;
            e
        })
        .collect();
    let start = Instant::now();
    let mut w = TraceWriter::create(&args.out, &header)?;
    for e in &events {
        w.push_event(e)?;
    }
    let bytes = w.finish(&TraceEnd::default())?;
    let write_s = start.elapsed().as_secs_f64();
    drop(events);

    let start = Instant::now();
    let mut r = TraceReader::open(&args.out)?;
    let mut read = 0usize;
    while let Some(i) = r.next_item()? {
        if matches!(i, Item::Event(_)) {
            read += 1;
        }
    }
    let read_s = start.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&args.out);
    if read != n {
        bail!("wrote {n} events, read {read} back");
    }
    Ok(json!({
        "events": n,
        "bytes": bytes,
        "bytes_per_event": bytes as f64 / n as f64,
        "write_s": write_s,
        "write_events_per_s": n as f64 / write_s,
        "read_s": read_s,
        "read_events_per_s": n as f64 / read_s,
    }))
}
