//! tracer's userspace: loading and attaching the eBPF programs, reading their ring buffer,
//! and presenting what the `tracer-fs` engine makes of it. All I/O lives here.
//!
//! The folders follow an event: [`kernel`] reads what the programs need to know of the
//! running kernel, [`attach`] loads the programs and attaches their hooks ([`alloc`]: the
//! allocation tracking's part), [`stream`] drains the ring buffer and decodes each record
//! into the engine's `Event`, the sinks ([`live`], [`record`], [`tui`]) feed the engine and
//! show, record or draw what it says, and [`report`] replays recordings into reports.

pub mod alloc;
pub mod attach;
pub mod doctor;
pub mod kernel;
pub mod live;
pub mod record;
pub mod report;
pub mod stream;
pub mod tui;

/// Whether we run as root (needed to load eBPF).
pub fn is_root() -> bool {
    // SAFETY: no preconditions.
    unsafe { libc::geteuid() == 0 }
}

pub const NOT_ROOT: &str = "tracer needs root (CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN) to load \
    eBPF programs: run it with sudo";
