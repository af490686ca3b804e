//! Recordings: `tracer attach --record FILE` and `tracer run` write every event the engine
//! sees to a compact, versioned, append-only file that `tracer report` replays through the
//! same engine.
//!
//! # File format (version [`FORMAT_VERSION`])
//!
//! ```text
//! preamble  MAGIC (8 bytes) | format version (u32 LE)
//! frame*    SYNC (2 bytes) | kind (u8) | flags (u8) | len (u32 LE) | crc32 (u32 LE) | payload
//! ```
//!
//! The CRC-32 covers kind, flags, len and the payload, so a damaged length is caught too.
//! Frames are self-delimiting: a crash of the tracer in the middle of a write loses at most
//! the frame being written (the reader reports a truncated tail and reads everything
//! before it), and a frame damaged in the middle of the file is detected by its checksum;
//! the reader then looks for the next intact frame (the SYNC bytes, a sane length and a
//! matching checksum) and says how many bytes and items it skipped.
//!
//! Frame kinds ([`FrameKind`]):
//! - `Header` (JSON, always first): [`TraceHeader`]: format and wire versions, the
//!   `EngineConfig` the live engine started from (symbols, ring offsets, missing hooks),
//!   kernel release, hook statuses, start times, the command of `tracer run`.
//! - `Items`: a block of [`Item`]s (events, symbols learnt at run time, evidence limits,
//!   counters, undecodable records, the command's start and exit), postcard-encoded
//!   (see [`schema`]) and zstd-compressed as one unit. Items are numbered from 0 across the
//!   file; a block starts with the number of its first item and its count, so the reader
//!   knows how many items a damaged block held.
//! - `AllocSnapshot` (with `--alloc-filter`): what allocation tracking concluded at a
//!   counter tick ([`alloc::AllocRecord`]: the filter, names of kernel addresses, the
//!   outstanding allocations by call site, stack and mount with the counters, and the leak
//!   reports with their objects, groups, symbolized backtraces and caveats). Payload:
//!   snapshot version (u16 LE, [`ALLOC_SNAPSHOT_VERSION`]), then data in that version's
//!   encoding (see [`alloc`]). A reader skips snapshots of a newer version, and says how
//!   many; tracers older than allocation tracking skip every snapshot, with a note, and
//!   read the rest.
//! - `End` (JSON): [`TraceEnd`], written by a clean stop. Without it the recording was cut
//!   short (crash, kill -9, power loss) and the report says so.
//!
//! A reader skips frame kinds it does not know (with a note), so a later version may add
//! frame kinds without a format bump; anything that changes the meaning of existing frames
//! or items bumps [`FORMAT_VERSION`], and a reader refuses files newer than itself.
//!
//! Order: items are applied in file order; the writer closes the open block before writing
//! any other frame, so frame order is item order.
//!
//! Why blocks of compressed items instead of one frame per event: a busy xfstests run makes
//! millions of events; per-event frames would spend 12 bytes of framing on ~60-byte items
//! and could not be compressed. Blocks are closed by size (256 KiB of items) and by time
//! (every second), so a crash loses at most about a second of events.

pub mod alloc;
pub mod bench;
pub mod fstests;
pub mod reader;
pub mod run;
pub(crate) mod schema;
pub mod sink;
pub mod writer;

use serde::{Deserialize, Serialize};
use tracer_fs::{EngineConfig, event::Event};

pub use reader::{Problem, ReadError, TraceReader};
pub use sink::{EngineSink, RecordSink, ReportsDue};
pub use writer::TraceWriter;

/// The first bytes of every recording (a high byte first, so it is never mistaken for text).
pub const MAGIC: [u8; 8] = *b"\x89TRACER\n";

/// Version of the file layout and of the item encoding. Bump on any change that an older
/// reader would misread.
pub const FORMAT_VERSION: u32 = 1;

/// The two bytes every frame starts with.
pub const FRAME_SYNC: [u8; 2] = [0xF7, 0x1A];

/// Frame header size: sync, kind, flags, len, crc.
pub const FRAME_HEADER_LEN: usize = 12;

/// Largest frame payload a reader accepts (a damaged length must not make it allocate GiBs).
pub const MAX_FRAME_LEN: usize = 32 << 20;

/// Largest decompressed block a reader accepts.
pub const MAX_BLOCK_RAW_LEN: usize = 64 << 20;

/// Bytes of the block prefix: first item number (u64 LE), item count (u32 LE), raw length (u32 LE).
pub const BLOCK_PREFIX_LEN: usize = 16;

/// Version of the allocation snapshot payload ([`alloc`]) this build writes and reads (it
/// also reads every older one). 2: leak reports carry their cycle and the verdict on each
/// object (cycle confirmation, `tracer_fs::leakcheck`).
pub const ALLOC_SNAPSHOT_VERSION: u16 = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    Header = 1,
    Items = 2,
    AllocSnapshot = 3,
    End = 4,
}

impl FrameKind {
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::Header),
            2 => Some(Self::Items),
            3 => Some(Self::AllocSnapshot),
            4 => Some(Self::End),
            _ => None,
        }
    }
}

/// One attach hook and what became of it (from `attach::HookStatus`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HookRecord {
    pub hook: String,
    pub why: String,
    /// The mechanism that served it (`tracepoint`, ...); `None`: not available.
    pub mechanism: Option<String>,
    pub points: Vec<String>,
    pub notes: Vec<String>,
}

/// The first frame: everything replay needs that is not in the items.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TraceHeader {
    pub format_version: u32,
    pub wire_version: u32,
    pub tracer_version: String,
    /// `uname -r` of the traced machine.
    pub kernel_release: String,
    /// `uname -n` of the traced machine (empty in recordings made before it was written).
    pub hostname: String,
    /// Wall clock at the start (ns since the Unix epoch) and the boot clock events use, read
    /// together: `wall = started_unix_ns + (ts_ns - started_boot_ns)`.
    pub started_unix_ns: u64,
    pub started_boot_ns: u64,
    /// The configuration the live engine was created with; replay starts from it.
    pub engine: EngineConfig,
    pub hooks: Vec<HookRecord>,
    pub missing_tracepoint_fields: Vec<String>,
    pub missing_btf_members: Vec<String>,
    /// `tracer run`'s command, if any.
    pub command: Option<Vec<String>>,
    /// The attach options (`all_work`, `follow_work`, `ring_mib`), for the record.
    pub options: serde_json::Value,
}

/// The last frame of a recording that ended cleanly.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TraceEnd {
    pub ended_unix_ns: u64,
    pub ended_boot_ns: u64,
    /// Items written in all (the reader compares with what it read).
    pub items: u64,
    pub events: u64,
    pub bad_records: u64,
    /// Records the kernel side lost (ring buffer full).
    pub drops: u64,
    pub stopped_by: String,
    /// `tracer run`: the command's exit status (128 + N when killed by signal N).
    pub command_status: Option<i32>,
}

/// One entry of a recording, in the order the live engine saw it.
#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    Event(Event),
    /// A kernel function name learnt at run time (`Engine::add_symbol`), before the event
    /// that needed it.
    Symbol {
        addr: u64,
        name: String,
    },
    /// A limit of the evidence learnt at run time (`Engine::add_evidence_limit`).
    EvidenceLimit(String),
    /// The kernel-side counters (`counters::Figures` as JSON), as sent periodically.
    Figures(String),
    /// A record the tracer could not decode.
    BadRecord(String),
    /// Hooks attached and snapshot taken: nothing is missed from here on.
    Ready {
        ts_ns: u64,
    },
    CommandStarted {
        ts_ns: u64,
        pid: u32,
        argv: Vec<String>,
    },
    CommandExited {
        ts_ns: u64,
        pid: u32,
        /// Exit code, or 128 + signal.
        status: i32,
        signal: Option<i32>,
    },
    /// What allocation tracking concluded (its own frames, not counted among the items).
    Alloc(alloc::AllocRecord),
    /// fstests' own verdict on each test the command ran (`./check` in a checkout), read
    /// from its `check.log` after it exited: (test, `pass` / `fail` / `notrun`).
    TestResults(Vec<(String, String)>),
}

/// `uname -n`.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Nanoseconds since the Unix epoch.
pub fn unix_now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// A new file with mode 0600 (recordings and reports hold kernel addresses). Refuses to
/// replace an existing file when `replace` is false; otherwise truncates it and resets its
/// mode. When run through sudo, the file is given to the invoking user so they can read it.
pub fn create_private(path: &std::path::Path, replace: bool) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut o = std::fs::OpenOptions::new();
    o.write(true).mode(0o600).custom_flags(libc::O_NOFOLLOW);
    if replace {
        o.create(true).truncate(true);
    } else {
        o.create_new(true);
    }
    let f = o.open(path)?;
    // Only a regular file of ours: `--report /dev/stdout` must not chmod a device.
    if f.metadata()?.is_file() {
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        give_to_sudo_user(&f);
    }
    Ok(f)
}

/// `chown $SUDO_UID:$SUDO_GID` (best effort): `sudo tracer run ...` leaves files the user
/// who asked can read, still mode 0600.
fn give_to_sudo_user(f: &std::fs::File) {
    use std::os::fd::AsRawFd;
    if !crate::is_root() {
        return;
    }
    let id = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u32>().ok());
    if let (Some(uid), Some(gid)) = (id("SUDO_UID"), id("SUDO_GID")) {
        // SAFETY: a valid fd; failure is harmless (the file stays root's).
        unsafe { libc::fchown(f.as_raw_fd(), uid, gid) };
    }
}
