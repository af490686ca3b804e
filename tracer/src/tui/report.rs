//! `s` in the TUI: the verdicts, notices and mount summaries as they stand, written to
//! `tracer-report-<timestamp>.txt` (mode 0600: it holds kernel addresses). A small
//! stand-in until the full `tracer report` exists.

use std::{
    fmt::Write as _,
    io::Write as _,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};

use super::model::Model;

/// Local time as `YYYYMMDD-HHMMSS` (for file names) and as `YYYY-MM-DD HH:MM:SS`.
fn local_now() -> (String, String) {
    // SAFETY: time(NULL) and localtime_r into a zeroed struct.
    unsafe {
        let t = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&t, &mut tm);
        let (y, mo, d, h, mi, s) = (
            tm.tm_year + 1900,
            tm.tm_mon + 1,
            tm.tm_mday,
            tm.tm_hour,
            tm.tm_min,
            tm.tm_sec,
        );
        (
            format!("{y:04}{mo:02}{d:02}-{h:02}{mi:02}{s:02}"),
            format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}"),
        )
    }
}

/// The report's text.
pub fn text(model: &Model, now_ns: u64, when: &str) -> String {
    let e = &model.engine;
    let meta = model.meta();
    let mut s = String::new();
    let _ = writeln!(s, "tracer report, {when} ({})", meta.kernel);
    if let Some(t) = model.test() {
        let _ = writeln!(s, "xfstests test running: {t}");
    }
    let f = model.figures();
    let _ = writeln!(
        s,
        "{} records lost (ring buffer full), {} program runs skipped by the kernel",
        f.total_drops(),
        f.total_recursion_misses()
    );
    let missing: Vec<String> = meta
        .hooks
        .iter()
        .filter(|h| !h.live)
        .map(|h| format!("{} ({})", h.name, h.how))
        .collect();
    if !missing.is_empty() {
        let _ = writeln!(s, "hooks not attached: {}", missing.join("; "));
    }
    let _ = writeln!(s, "engine: {}", e.stats());

    let _ = writeln!(s, "\n== Mounts ==");
    for m in model.mount_rows() {
        let flag = if super::model::pinned(&m) {
            "PINNED "
        } else {
            ""
        };
        let _ = writeln!(s, "{flag}{m}");
    }
    let _ = writeln!(s, "\n== Deferred work ==");
    for w in e.work_summaries() {
        let _ = writeln!(s, "{w}");
    }
    let verdicts: Vec<_> = e.verdicts().collect();
    let _ = writeln!(s, "\n== Verdicts ({}) ==", verdicts.len());
    for v in verdicts {
        let _ = writeln!(s, "{v}\n");
    }
    let _ = writeln!(s, "\n== Events (newest last) ==");
    for l in model.log() {
        let _ = writeln!(s, "[{}] {}\n", tracer_fs::text::boot(l.ts_ns), l.full);
    }
    let _ = writeln!(s, "== Evidence limits ==");
    for l in e.evidence_limits() {
        let _ = writeln!(s, "- {l}");
    }
    let _ = writeln!(
        s,
        "\n(times are seconds since boot, as in dmesg; report written at {})",
        tracer_fs::text::boot(now_ns)
    );
    s
}

/// Writes the report into `dir`; returns its path.
pub fn save(model: &Model, dir: &Path, now_ns: u64) -> Result<PathBuf> {
    let (stamp, when) = local_now();
    let body = text(model, now_ns, &when);
    for n in 0.. {
        let name = if n == 0 {
            format!("tracer-report-{stamp}.txt")
        } else {
            format!("tracer-report-{stamp}-{n}.txt")
        };
        let path = dir.join(name);
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(mut f) => {
                f.write_all(body.as_bytes())
                    .with_context(|| format!("writing {}", path.display()))?;
                return Ok(path);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 100 => continue,
            Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
        }
    }
    unreachable!("the loop returns")
}
