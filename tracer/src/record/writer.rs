//! Writing a recording: the preamble and header, then blocks of items closed by size and by
//! time, each written with one `write` so a crash cuts at most the block being written.

use std::{
    fs::File,
    io::Write,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use tracer_fs::event::Event;

use super::{
    BLOCK_PREFIX_LEN, FORMAT_VERSION, FRAME_HEADER_LEN, FRAME_SYNC, FrameKind, Item, MAGIC,
    TraceEnd, TraceHeader,
    alloc::AllocRecord,
    schema::{RecEvent, WireItem},
};

/// A block is closed when its items reach this many bytes (before compression)...
pub const BLOCK_BYTES: usize = 256 << 10;
/// ...or when its first item is this old.
pub const BLOCK_AGE: Duration = Duration::from_secs(1);
/// `fdatasync` at most this often (and at the end): a kernel crash loses little more.
pub const SYNC_EVERY: Duration = Duration::from_secs(5);
/// zstd level: fast enough to keep up with the ring buffer on one core.
const ZSTD_LEVEL: i32 = 3;

/// Encodes a frame (header + payload) into `out`.
pub fn encode_frame(out: &mut Vec<u8>, kind: u8, flags: u8, payload: &[u8]) {
    let len = payload.len() as u32;
    let mut h = crc32fast::Hasher::new();
    h.update(&[kind, flags]);
    h.update(&len.to_le_bytes());
    h.update(payload);
    let crc = h.finalize();
    out.reserve(FRAME_HEADER_LEN + payload.len());
    out.extend_from_slice(&FRAME_SYNC);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(payload);
}

/// The file preamble.
pub fn preamble() -> Vec<u8> {
    let mut v = MAGIC.to_vec();
    v.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    v
}

/// Appends the postcard encoding of `item` to `buf` (allocation records are not block
/// items: they have frames of their own, see [`TraceWriter::push_alloc`]).
pub fn encode_item(buf: &mut Vec<u8>, item: &Item) -> Result<()> {
    match wire_item(item) {
        Some(w) => encode_wire(buf, &w),
        None => anyhow::bail!("allocation records are written in their own frames"),
    }
}

fn encode_wire(buf: &mut Vec<u8>, w: &WireItem) -> Result<()> {
    let v = std::mem::take(buf);
    *buf = postcard::to_extend(w, v).context("encoding an item")?;
    Ok(())
}

fn wire_item(item: &Item) -> Option<WireItem<'_>> {
    Some(match item {
        Item::Event(e) => WireItem::Event(RecEvent::of(e)),
        Item::Symbol { addr, name } => WireItem::Symbol {
            addr: *addr,
            name: name.into(),
        },
        Item::EvidenceLimit(s) => WireItem::EvidenceLimit(s.into()),
        Item::Figures(s) => WireItem::Figures(s.into()),
        Item::BadRecord(s) => WireItem::BadRecord(s.into()),
        Item::Ready { ts_ns } => WireItem::Ready { ts_ns: *ts_ns },
        Item::CommandStarted { ts_ns, pid, argv } => WireItem::CommandStarted {
            ts_ns: *ts_ns,
            pid: *pid,
            argv: argv.iter().map(|a| a.into()).collect(),
        },
        Item::CommandExited {
            ts_ns,
            pid,
            status,
            signal,
        } => WireItem::CommandExited {
            ts_ns: *ts_ns,
            pid: *pid,
            status: *status,
            signal: *signal,
        },
        Item::TestResults(v) => WireItem::TestResults(
            v.iter()
                .map(|(t, s)| (t.as_str().into(), s.as_str().into()))
                .collect(),
        ),
        Item::Alloc(_) => return None,
    })
}

/// A block frame's payload: prefix + zstd of the items' bytes.
pub fn encode_block(first_item: u64, count: u32, raw: &[u8]) -> Result<Vec<u8>> {
    let z = zstd::bulk::compress(raw, ZSTD_LEVEL).context("compressing a block")?;
    let mut p = Vec::with_capacity(BLOCK_PREFIX_LEN + z.len());
    p.extend_from_slice(&first_item.to_le_bytes());
    p.extend_from_slice(&count.to_le_bytes());
    p.extend_from_slice(&(raw.len() as u32).to_le_bytes());
    p.extend_from_slice(&z);
    Ok(p)
}

pub struct TraceWriter {
    file: File,
    path: PathBuf,
    raw: Vec<u8>,
    block_count: u32,
    block_first: u64,
    block_since: Option<Instant>,
    next_item: u64,
    last_sync: Instant,
    bytes: u64,
    frame: Vec<u8>,
}

impl TraceWriter {
    /// Creates `path` (mode 0600; an existing file is refused) and writes the header.
    pub fn create(path: &Path, header: &TraceHeader) -> Result<Self> {
        let file = super::create_private(path, false).with_context(|| {
            format!(
                "creating the recording {} (an existing file is never overwritten)",
                path.display()
            )
        })?;
        Self::start(file, path.to_path_buf(), header)
    }

    /// Writes the preamble and header into an open, empty file.
    pub fn start(file: File, path: PathBuf, header: &TraceHeader) -> Result<Self> {
        let mut w = TraceWriter {
            file,
            path,
            raw: Vec::with_capacity(BLOCK_BYTES + 4096),
            block_count: 0,
            block_first: 0,
            block_since: None,
            next_item: 0,
            last_sync: Instant::now(),
            bytes: 0,
            frame: Vec::new(),
        };
        let json = serde_json::to_vec(header)?;
        let mut first = preamble();
        encode_frame(&mut first, FrameKind::Header as u8, 0, &json);
        w.write(&first)?;
        Ok(w)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Items appended so far.
    pub fn items(&self) -> u64 {
        self.next_item
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.file
            .write_all(bytes)
            .with_context(|| format!("writing the recording {}", self.path.display()))?;
        self.bytes += bytes.len() as u64;
        Ok(())
    }

    /// Appends an item; closes the block when it is big enough.
    pub fn push(&mut self, item: &Item) -> Result<()> {
        match (wire_item(item), item) {
            (Some(w), _) => self.push_wire(&w),
            (None, Item::Alloc(r)) => self.push_alloc(std::slice::from_ref(r)),
            (None, _) => unreachable!("only allocation records have no block encoding"),
        }
    }

    /// Appends an event (without copying it into an [`Item`]).
    pub fn push_event(&mut self, ev: &Event) -> Result<()> {
        let w = WireItem::Event(RecEvent::of(ev));
        self.push_wire(&w)
    }

    fn push_wire(&mut self, w: &WireItem) -> Result<()> {
        if self.block_count == 0 {
            self.block_first = self.next_item;
            self.block_since = Some(Instant::now());
        }
        encode_wire(&mut self.raw, w)?;
        self.block_count += 1;
        self.next_item += 1;
        if self.raw.len() >= BLOCK_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    /// Closes the block if its first item is older than [`BLOCK_AGE`]; syncs now and then.
    pub fn tick(&mut self) -> Result<()> {
        if self.block_since.is_some_and(|t| t.elapsed() >= BLOCK_AGE) {
            self.flush()?;
        }
        if self.last_sync.elapsed() >= SYNC_EVERY {
            self.sync()?;
        }
        Ok(())
    }

    /// Writes the open block, if any, as one frame.
    pub fn flush(&mut self) -> Result<()> {
        if self.block_count == 0 {
            return Ok(());
        }
        let payload = encode_block(self.block_first, self.block_count, &self.raw)?;
        let mut frame = std::mem::take(&mut self.frame);
        frame.clear();
        encode_frame(&mut frame, FrameKind::Items as u8, 0, &payload);
        let r = self.write(&frame);
        self.frame = frame;
        self.raw.clear();
        self.block_count = 0;
        self.block_since = None;
        r
    }

    fn sync(&mut self) -> Result<()> {
        self.last_sync = Instant::now();
        self.file
            .sync_data()
            .with_context(|| format!("syncing the recording {}", self.path.display()))
    }

    /// Writes allocation records as one snapshot frame. The open block is closed first, so
    /// the snapshot sits after the items that came before it.
    pub fn push_alloc(&mut self, records: &[AllocRecord]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let payload = super::alloc::encode(records)?;
        self.push_frame(FrameKind::AllocSnapshot as u8, &payload)
    }

    /// Writes a frame of `kind` as is, after the open block (tests of readers use it for
    /// frames this tracer would not write).
    pub fn push_frame(&mut self, kind: u8, payload: &[u8]) -> Result<()> {
        self.flush()?;
        let mut frame = Vec::new();
        encode_frame(&mut frame, kind, 0, payload);
        self.write(&frame)
    }

    /// Closes the open block and writes the end frame; the file is complete.
    pub fn finish(mut self, end: &TraceEnd) -> Result<u64> {
        self.flush()?;
        let end = TraceEnd {
            items: self.next_item,
            ..end.clone()
        };
        let mut frame = Vec::new();
        encode_frame(
            &mut frame,
            FrameKind::End as u8,
            0,
            &serde_json::to_vec(&end)?,
        );
        self.write(&frame)?;
        self.sync()?;
        Ok(self.bytes)
    }
}

/// For fuzzing and tests: a recording made of arbitrary chunks, each framed with a valid
/// checksum after a real header, so that damage reaches the block and item decoders, the
/// engine and the renderers instead of stopping at a checksum. `data` is a sequence of
/// `[kind u8][len u16 LE][bytes]`; the bytes of an `Items` chunk are an item count (one
/// byte) then postcard items, compressed into a real block.
pub fn framed_chunks(mut data: &[u8]) -> Vec<u8> {
    let mut out = preamble();
    let header = serde_json::to_vec(&TraceHeader::default()).unwrap_or_default();
    encode_frame(&mut out, FrameKind::Header as u8, 0, &header);
    let mut first = 0u64;
    while data.len() >= 3 {
        let kind = data[0];
        let len = (u16::from_le_bytes([data[1], data[2]]) as usize).min(data.len() - 3);
        let chunk = &data[3..3 + len];
        data = &data[3 + len..];
        if kind == FrameKind::Items as u8 {
            let count = chunk.first().copied().unwrap_or(0) as u32;
            let raw = chunk.get(1..).unwrap_or(&[]);
            if let Ok(p) = encode_block(first, count, raw) {
                encode_frame(&mut out, kind, 0, &p);
            }
            first += count as u64;
        } else {
            encode_frame(&mut out, kind, 0, chunk);
        }
    }
    out
}
