//! What tracer reads of the running kernel, outside the eBPF programs: symbols
//! (`/proc/kallsyms`), types (BTF), tracefs and the tracepoint and structure layouts the
//! programs are configured with, the mount table, the kernel log's xfstests markers, the
//! boot-time clock, the slab caches of their own, the devices and AIO contexts that pin files, and the release.

pub mod aio;
pub mod btf;
pub mod clock;
pub mod devices;
pub mod kallsyms;
pub mod kmsg;
pub mod layout;
pub mod mountinfo;
pub mod preempt;
pub mod slabinfo;
pub mod tracefs;
pub mod uname;
