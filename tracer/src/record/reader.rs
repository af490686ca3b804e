//! Reading a recording back: checks the preamble and header, then yields items in order.
//! Damage never panics: a truncated tail, a corrupt frame or an undecodable block becomes a
//! [`Problem`] (what was skipped, where), and reading goes on from the next intact frame.
//! Only what makes replay impossible is a [`ReadError`]: not a recording, a newer format,
//! a damaged header, an I/O error.

use std::{
    collections::VecDeque,
    fmt,
    fs::File,
    io::{BufReader, Read},
    path::Path,
};

use super::{
    BLOCK_PREFIX_LEN, FORMAT_VERSION, FRAME_HEADER_LEN, FRAME_SYNC, FrameKind, Item, MAGIC,
    MAX_BLOCK_RAW_LEN, MAX_FRAME_LEN, TraceEnd, TraceHeader, schema::WireItem,
};

/// Why a file cannot be replayed at all.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("not a tracer recording: {0}")]
    NotATrace(String),
    #[error(
        "this recording was written by a newer tracer (format version {found}); this tracer reads format version {supported}: use a newer tracer to read it"
    )]
    NewerVersion { found: u32, supported: u32 },
    #[error("unknown recording format version {0}")]
    BadVersion(u32),
    #[error("the recording's header is damaged ({0}): nothing can be replayed without it")]
    BadHeader(String),
    #[error("reading the recording: {0}")]
    Io(#[from] std::io::Error),
}

/// Something the reader had to skip or could not vouch for; the rest was read.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum Problem {
    /// The file ends in the middle of a frame: the tracer stopped mid-write (crash, kill,
    /// full disk). Everything before `offset` was read.
    TruncatedTail {
        offset: u64,
        /// Bytes of the cut frame that are there.
        present: u64,
        /// Bytes the frame would have had (when its header was complete).
        expected: Option<u64>,
    },
    /// Bytes that are not an intact frame (bad sync, absurd length or checksum mismatch),
    /// skipped up to the next intact frame (or the end of the file).
    Corrupt {
        offset: u64,
        skipped: u64,
        reason: String,
    },
    /// Items missing between two intact blocks (they were in the skipped bytes).
    ItemsLost { first: u64, count: u64 },
    /// A frame with a good checksum whose content could not be decoded.
    BadBlock {
        offset: u64,
        reason: String,
        /// Items of the block decoded before the failure (kept).
        decoded: u64,
        /// Items the block declared.
        declared: u64,
    },
    /// A frame of a kind this tracer does not know (written by a newer one), skipped.
    UnknownFrame { offset: u64, kind: u8, len: u64 },
    /// Allocation snapshots of a newer snapshot version than this tracer reads, skipped.
    AllocSnapshotsSkipped { count: u64, version: u16 },
    /// No end frame: the recording was cut short (the tracer crashed or was killed).
    NoEnd,
    /// The end frame counts more items than were read.
    ItemsMissing { expected: u64, read: u64 },
    /// Frames after the end frame, ignored.
    DataAfterEnd { offset: u64 },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::TruncatedTail {
                offset,
                present,
                expected,
            } => {
                write!(
                    f,
                    "truncated tail: the file ends in the middle of a frame at byte {offset} ({present} bytes"
                )?;
                if let Some(e) = expected {
                    write!(f, " of {e}")?;
                }
                write!(
                    f,
                    "), probably a crash of the tracer while writing; everything before it was read"
                )
            }
            Problem::Corrupt {
                offset,
                skipped,
                reason,
            } => write!(
                f,
                "corrupt data at byte {offset} ({reason}): {skipped} bytes skipped"
            ),
            Problem::ItemsLost { first, count } => write!(
                f,
                "{count} recorded items lost in the skipped bytes (items {first}..{}); the report may miss events there",
                first.saturating_add(*count)
            ),
            Problem::BadBlock {
                offset,
                reason,
                decoded,
                declared,
            } => write!(
                f,
                "undecodable block at byte {offset} ({reason}): {decoded} of its {declared} items read"
            ),
            Problem::UnknownFrame { offset, kind, len } => write!(
                f,
                "frame of unknown kind {kind} at byte {offset} ({len} bytes) skipped: written by a newer tracer?"
            ),
            Problem::AllocSnapshotsSkipped { count, version } => write!(
                f,
                "{count} allocation snapshots skipped: written by a newer tracer (snapshot version {version}, this one reads {}); allocations are missing from the report",
                super::ALLOC_SNAPSHOT_VERSION
            ),
            Problem::NoEnd => write!(
                f,
                "no end mark: the recording was cut short (the tracer crashed or was killed); the report covers what was written"
            ),
            Problem::ItemsMissing { expected, read } => write!(
                f,
                "the recording says it holds {expected} items but {read} could be read"
            ),
            Problem::DataAfterEnd { offset } => {
                write!(f, "data after the end mark at byte {offset} ignored")
            }
        }
    }
}

struct Frame {
    offset: u64,
    kind: u8,
    payload: Vec<u8>,
}

/// Reads a recording item by item.
pub struct TraceReader<R: Read> {
    src: R,
    buf: Vec<u8>,
    pos: usize,
    /// File offset of `buf[0]`.
    base: u64,
    eof: bool,
    header: TraceHeader,
    pending: VecDeque<Item>,
    problems: Vec<Problem>,
    end: Option<TraceEnd>,
    next_item: u64,
    items_read: u64,
    alloc_snapshots: u64,
    /// Snapshots of a newer version skipped, and the newest such version.
    alloc_skipped: (u64, u16),
    done: bool,
}

impl TraceReader<BufReader<File>> {
    pub fn open(path: &Path) -> Result<Self, ReadError> {
        let f = File::open(path)?;
        Self::new(BufReader::with_capacity(1 << 20, f))
    }
}

impl<R: Read> TraceReader<R> {
    /// Reads and checks the preamble and the header.
    pub fn new(src: R) -> Result<Self, ReadError> {
        let mut r = TraceReader {
            src,
            buf: Vec::new(),
            pos: 0,
            base: 0,
            eof: false,
            header: TraceHeader::default(),
            pending: VecDeque::new(),
            problems: Vec::new(),
            end: None,
            next_item: 0,
            items_read: 0,
            alloc_snapshots: 0,
            alloc_skipped: (0, 0),
            done: false,
        };
        let pre = MAGIC.len() + 4;
        r.ensure(pre)?;
        let avail = &r.buf[r.pos..];
        if avail.len() < MAGIC.len() || avail[..MAGIC.len()] != MAGIC {
            return Err(ReadError::NotATrace(describe_start(avail)));
        }
        if avail.len() < pre {
            return Err(ReadError::NotATrace(
                "the file ends inside the preamble".into(),
            ));
        }
        let version = u32::from_le_bytes(avail[MAGIC.len()..pre].try_into().unwrap());
        if version > FORMAT_VERSION {
            return Err(ReadError::NewerVersion {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        if version == 0 {
            return Err(ReadError::BadVersion(version));
        }
        r.pos += pre;
        let header = match r.frame_at_pos()? {
            FrameAt::Ok(f) if f.kind == FrameKind::Header as u8 => f,
            FrameAt::Ok(f) => {
                return Err(ReadError::BadHeader(format!(
                    "the first frame is of kind {}, not a header",
                    f.kind
                )));
            }
            FrameAt::Eof => {
                return Err(ReadError::BadHeader(
                    "the file ends after the preamble".into(),
                ));
            }
            FrameAt::Short { present, .. } => {
                return Err(ReadError::BadHeader(format!(
                    "the file ends inside it ({present} bytes)"
                )));
            }
            FrameAt::Bad(why) => return Err(ReadError::BadHeader(why)),
        };
        r.header = serde_json::from_slice(&header.payload)
            .map_err(|e| ReadError::BadHeader(format!("not valid JSON: {e}")))?;
        Ok(r)
    }

    pub fn header(&self) -> &TraceHeader {
        &self.header
    }

    /// What was skipped so far (complete once [`Self::next_item`] returned `None`).
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }

    /// The end frame, if the recording ended cleanly (known once items are exhausted).
    pub fn end(&self) -> Option<&TraceEnd> {
        self.end.as_ref()
    }

    /// Items read so far (allocation records are not items).
    pub fn items_read(&self) -> u64 {
        self.items_read
    }

    /// Allocation snapshot frames read so far.
    pub fn alloc_snapshots(&self) -> u64 {
        self.alloc_snapshots
    }

    /// The next item, or `None` at the end (of the file, or of what could be read).
    pub fn next_item(&mut self) -> Result<Option<Item>, ReadError> {
        loop {
            if let Some(i) = self.pending.pop_front() {
                if !matches!(i, Item::Alloc(_)) {
                    self.items_read += 1;
                }
                return Ok(Some(i));
            }
            if self.done {
                return Ok(None);
            }
            match self.next_frame()? {
                Some(f) => self.on_frame(f),
                None => self.finish(),
            }
        }
    }

    fn finish(&mut self) {
        self.done = true;
        if self.alloc_skipped.0 > 0 {
            self.problems.push(Problem::AllocSnapshotsSkipped {
                count: self.alloc_skipped.0,
                version: self.alloc_skipped.1,
            });
        }
        match &self.end {
            None => self.problems.push(Problem::NoEnd),
            Some(e) if e.items > self.items_read + self.pending.len() as u64 => {
                self.problems.push(Problem::ItemsMissing {
                    expected: e.items,
                    read: self.items_read + self.pending.len() as u64,
                })
            }
            Some(_) => {}
        }
    }

    fn on_frame(&mut self, f: Frame) {
        if self.end.is_some() {
            self.problems
                .push(Problem::DataAfterEnd { offset: f.offset });
            self.done = true;
            return;
        }
        match FrameKind::from_u8(f.kind) {
            Some(FrameKind::Items) => self.on_block(f),
            Some(FrameKind::End) => match serde_json::from_slice::<TraceEnd>(&f.payload) {
                Ok(e) => self.end = Some(e),
                Err(e) => self.problems.push(Problem::BadBlock {
                    offset: f.offset,
                    reason: format!("end mark is not valid JSON: {e}"),
                    decoded: 0,
                    declared: 0,
                }),
            },
            Some(FrameKind::AllocSnapshot) => match super::alloc::decode(&f.payload) {
                Ok(records) => {
                    self.alloc_snapshots += 1;
                    self.pending.extend(records.into_iter().map(Item::Alloc));
                }
                Err(super::alloc::DecodeError::Newer(v)) => {
                    self.alloc_skipped.0 += 1;
                    self.alloc_skipped.1 = self.alloc_skipped.1.max(v);
                }
                Err(super::alloc::DecodeError::Bad(reason)) => {
                    self.problems.push(Problem::BadBlock {
                        offset: f.offset,
                        reason: format!("allocation snapshot: {reason}"),
                        decoded: 0,
                        declared: 0,
                    })
                }
            },
            Some(FrameKind::Header) => self.problems.push(Problem::BadBlock {
                offset: f.offset,
                reason: "a second header".into(),
                decoded: 0,
                declared: 0,
            }),
            None => self.problems.push(Problem::UnknownFrame {
                offset: f.offset,
                kind: f.kind,
                len: f.payload.len() as u64,
            }),
        }
    }

    fn on_block(&mut self, f: Frame) {
        let p = &f.payload;
        let bad = |reason: String, decoded: u64, declared: u64| Problem::BadBlock {
            offset: f.offset,
            reason,
            decoded,
            declared,
        };
        if p.len() < BLOCK_PREFIX_LEN {
            self.problems
                .push(bad("shorter than its prefix".into(), 0, 0));
            return;
        }
        let first = u64::from_le_bytes(p[0..8].try_into().unwrap());
        let count = u32::from_le_bytes(p[8..12].try_into().unwrap()) as u64;
        let raw_len = u32::from_le_bytes(p[12..16].try_into().unwrap()) as usize;
        if first > self.next_item {
            self.problems.push(Problem::ItemsLost {
                first: self.next_item,
                count: first - self.next_item,
            });
        }
        self.next_item = self.next_item.max(first.saturating_add(count));
        if raw_len > MAX_BLOCK_RAW_LEN {
            self.problems.push(bad(
                format!("declares {raw_len} bytes of items, more than {MAX_BLOCK_RAW_LEN}"),
                0,
                count,
            ));
            return;
        }
        let raw = match zstd::bulk::decompress(&p[BLOCK_PREFIX_LEN..], raw_len) {
            Ok(r) if r.len() == raw_len => r,
            Ok(r) => {
                self.problems.push(bad(
                    format!("decompressed to {} bytes, {raw_len} declared", r.len()),
                    0,
                    count,
                ));
                return;
            }
            Err(e) => {
                self.problems
                    .push(bad(format!("decompression failed: {e}"), 0, count));
                return;
            }
        };
        let mut rest: &[u8] = &raw;
        let mut decoded = 0u64;
        while decoded < count {
            match postcard::take_from_bytes::<WireItem>(rest) {
                Ok((w, r)) => {
                    self.pending.push_back(item_of(w));
                    rest = r;
                    decoded += 1;
                }
                Err(e) => {
                    self.problems.push(bad(
                        format!(
                            "item {} does not decode: {e}",
                            first.saturating_add(decoded)
                        ),
                        decoded,
                        count,
                    ));
                    return;
                }
            }
        }
        if !rest.is_empty() {
            self.problems.push(bad(
                format!("{} bytes after its last item", rest.len()),
                decoded,
                count,
            ));
        }
    }

    /// Makes `n` bytes available at `pos` if the file has them; false at EOF.
    fn ensure(&mut self, n: usize) -> std::io::Result<bool> {
        while self.buf.len() - self.pos < n && !self.eof {
            if self.pos > (4 << 20) && self.pos * 2 > self.buf.len() {
                self.buf.drain(..self.pos);
                self.base += self.pos as u64;
                self.pos = 0;
            }
            let want = (n - (self.buf.len() - self.pos)).max(64 << 10);
            let got = loop {
                match (&mut self.src).take(want as u64).read_to_end(&mut self.buf) {
                    Ok(g) => break g,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            };
            if got == 0 {
                self.eof = true;
            }
        }
        Ok(self.buf.len() - self.pos >= n)
    }

    fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// The frame at `pos`, consumed when intact.
    fn frame_at_pos(&mut self) -> std::io::Result<FrameAt> {
        match self.check_frame(false)? {
            Check::Ok { len } => {
                let at = self.pos;
                let kind = self.buf[at + 2];
                let payload = self.buf[at + FRAME_HEADER_LEN..at + FRAME_HEADER_LEN + len].to_vec();
                let offset = self.offset();
                self.pos = at + FRAME_HEADER_LEN + len;
                Ok(FrameAt::Ok(Frame {
                    offset,
                    kind,
                    payload,
                }))
            }
            Check::Eof => Ok(FrameAt::Eof),
            Check::Short { present, expected } => Ok(FrameAt::Short { present, expected }),
            Check::Bad(why) => Ok(FrameAt::Bad(why)),
        }
    }

    /// Checks whether an intact frame starts at `pos`. With `strict` (resynchronising),
    /// only known frame kinds count.
    fn check_frame(&mut self, strict: bool) -> std::io::Result<Check> {
        if !self.ensure(1)? {
            return Ok(Check::Eof);
        }
        if !self.ensure(FRAME_HEADER_LEN)? {
            return Ok(Check::Short {
                present: (self.buf.len() - self.pos) as u64,
                expected: None,
            });
        }
        let at = self.pos;
        let h: [u8; FRAME_HEADER_LEN] = self.buf[at..at + FRAME_HEADER_LEN].try_into().unwrap();
        if h[..2] != FRAME_SYNC {
            return Ok(Check::Bad(format!(
                "no frame starts here (bytes {:02x} {:02x})",
                h[0], h[1]
            )));
        }
        let kind = h[2];
        if strict && FrameKind::from_u8(kind).is_none() {
            return Ok(Check::Bad(format!("unknown frame kind {kind}")));
        }
        let len = u32::from_le_bytes(h[4..8].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(h[8..12].try_into().unwrap());
        if len > MAX_FRAME_LEN {
            return Ok(Check::Bad(format!(
                "a frame length of {len} bytes, more than {MAX_FRAME_LEN}"
            )));
        }
        if !self.ensure(FRAME_HEADER_LEN + len)? {
            return Ok(Check::Short {
                present: (self.buf.len() - self.pos) as u64,
                expected: Some((FRAME_HEADER_LEN + len) as u64),
            });
        }
        // `ensure` may have moved the data.
        let at = self.pos;
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&self.buf[at + 2..at + 8]);
        hasher.update(&self.buf[at + FRAME_HEADER_LEN..at + FRAME_HEADER_LEN + len]);
        if hasher.finalize() != crc {
            return Ok(Check::Bad("checksum mismatch".into()));
        }
        Ok(Check::Ok { len })
    }

    /// The next intact frame, resynchronising over damage. `None` at the end.
    fn next_frame(&mut self) -> std::io::Result<Option<Frame>> {
        let start = self.offset();
        let (reason, short) = match self.frame_at_pos()? {
            FrameAt::Ok(f) => return Ok(Some(f)),
            FrameAt::Eof => return Ok(None),
            FrameAt::Short { present, expected } => (None, Some((present, expected))),
            FrameAt::Bad(why) => (Some(why), None),
        };
        // Look for the next intact frame after the damage, byte by byte.
        loop {
            self.pos += 1;
            if !self.ensure(FRAME_SYNC.len())? {
                break;
            }
            if self.buf[self.pos..self.pos + 2] == FRAME_SYNC
                && let Check::Ok { .. } = self.check_frame(true)?
            {
                self.problems.push(Problem::Corrupt {
                    offset: start,
                    skipped: self.offset() - start,
                    reason: reason.unwrap_or_else(|| "a frame cut short".into()),
                });
                return self.frame_at_pos().map(|f| match f {
                    FrameAt::Ok(f) => Some(f),
                    _ => None,
                });
            }
        }
        self.pos = self.buf.len();
        match short {
            Some((present, expected)) => self.problems.push(Problem::TruncatedTail {
                offset: start,
                present,
                expected,
            }),
            None => self.problems.push(Problem::Corrupt {
                offset: start,
                skipped: self.offset() - start,
                reason: reason.unwrap_or_default(),
            }),
        }
        Ok(None)
    }
}

impl<R: Read> Iterator for TraceReader<R> {
    type Item = Result<Item, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_item().transpose()
    }
}

enum FrameAt {
    Ok(Frame),
    Eof,
    Short { present: u64, expected: Option<u64> },
    Bad(String),
}

enum Check {
    Ok { len: usize },
    Eof,
    Short { present: u64, expected: Option<u64> },
    Bad(String),
}

fn item_of(w: WireItem) -> Item {
    match w {
        WireItem::Event(e) => Item::Event(e.into_event()),
        WireItem::Symbol { addr, name } => Item::Symbol {
            addr,
            name: name.into_owned(),
        },
        WireItem::EvidenceLimit(s) => Item::EvidenceLimit(s.into_owned()),
        WireItem::Figures(s) => Item::Figures(s.into_owned()),
        WireItem::BadRecord(s) => Item::BadRecord(s.into_owned()),
        WireItem::Ready { ts_ns } => Item::Ready { ts_ns },
        WireItem::CommandStarted { ts_ns, pid, argv } => Item::CommandStarted {
            ts_ns,
            pid,
            argv: argv.into_iter().map(|a| a.into_owned()).collect(),
        },
        WireItem::CommandExited {
            ts_ns,
            pid,
            status,
            signal,
        } => Item::CommandExited {
            ts_ns,
            pid,
            status,
            signal,
        },
        WireItem::TestResults(v) => Item::TestResults(
            v.into_iter()
                .map(|(t, s)| (t.into_owned(), s.into_owned()))
                .collect(),
        ),
    }
}

/// A few words on what a file that is not a recording starts with.
fn describe_start(b: &[u8]) -> String {
    if b.is_empty() {
        return "the file is empty".into();
    }
    let head = &b[..b.len().min(16)];
    if head
        .iter()
        .all(|c| c.is_ascii_graphic() || c.is_ascii_whitespace())
    {
        format!(
            "it starts with the text {:?}",
            String::from_utf8_lossy(head)
        )
    } else {
        format!(
            "it starts with the bytes {}",
            head.iter()
                .map(|c| format!("{c:02x}"))
                .collect::<Vec<_>>()
                .join(" ")
        )
    }
}
