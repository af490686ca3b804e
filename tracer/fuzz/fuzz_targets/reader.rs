//! Fuzzes the recording reader, and replay and every report format behind it.
//!
//! Two kinds of input:
//! - a recording as is (anything not starting with `S`): the frame layer,
//!   resynchronisation, truncation, checksums;
//! - `S` then chunks `[kind u8][len u16 LE][bytes]` (`record::writer::framed_chunks`):
//!   framed with valid checksums after a real header, Items chunks compressed into real
//!   blocks, so the fuzzer reaches the item decoder, the engine and the renderers instead
//!   of stopping at a checksum.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracer::{
    record::{TraceReader, writer::framed_chunks},
    report::{ReportFormat, ReportOptions, replay},
};

fn check(bytes: &[u8]) {
    let Ok(reader) = TraceReader::new(bytes) else {
        return;
    };
    let opts = ReportOptions {
        test: None,
        redact: true,
        timeline: true,
    };
    if let Ok(mut r) = replay(reader, "fuzz", &opts) {
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

fuzz_target!(|data: &[u8]| {
    if data.first() == Some(&b'S') {
        check(&framed_chunks(&data[1..]));
    } else {
        check(data);
    }
});
