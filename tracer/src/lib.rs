//! tracer's userspace: loading and attaching the eBPF programs, reading their ring buffer,
//! and presenting what the `tracer-fs` engine makes of it. All I/O lives here.

pub mod aio;
pub mod alloc;
pub mod attach;
pub mod attach_args;
pub mod clock;
pub mod counters;
pub mod devices;
pub mod doctor;
pub mod hooks;
pub mod kallsyms;
pub mod kernel_btf;
pub mod kmsg;
pub mod layout;
pub mod live;
pub mod mountinfo;
pub mod record;
pub mod report;
pub mod stream;
pub mod tracefs;
pub mod tui;

/// Whether we run as root (needed to load eBPF).
pub fn is_root() -> bool {
    // SAFETY: no preconditions.
    unsafe { libc::geteuid() == 0 }
}

pub const NOT_ROOT: &str = "tracer needs root (CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN) to load \
    eBPF programs: run it with sudo";
