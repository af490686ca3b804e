//! xfstests markers from the kernel log: xfstests writes `run fstests <test> at <date>` to
//! `/dev/kmsg` before each test. [`Kmsg`] reads `/dev/kmsg` without blocking, from its end
//! at open time (older lines are not ours to report), and [`test_marker`] picks the test
//! name out of a record. Without `/dev/kmsg` (or the right to read it) there are simply no
//! markers: [`Kmsg::open`] returns `None`, never an error.

use std::{
    fs::File,
    io::{ErrorKind, Read, Seek, SeekFrom},
    os::{
        fd::{AsFd, AsRawFd, BorrowedFd, RawFd},
        unix::fs::OpenOptionsExt,
    },
    path::Path,
};

/// The longest record the kernel hands out in one read (`CONSOLE_EXT_LOG_MAX` is 8 KiB).
const RECORD_MAX: usize = 8192;

/// `/dev/kmsg`, opened non-blocking and positioned at its end.
#[derive(Debug)]
pub struct Kmsg {
    file: File,
    buf: Vec<u8>,
}

impl Kmsg {
    /// Opens `/dev/kmsg` from its end; `None` when it cannot be read here.
    pub fn open() -> Option<Kmsg> {
        Self::open_path(Path::new("/dev/kmsg"))
    }

    pub fn open_path(path: &Path) -> Option<Kmsg> {
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)
            .ok()?;
        // On /dev/kmsg, SEEK_END moves past every record logged so far.
        file.seek(SeekFrom::End(0)).ok()?;
        Some(Kmsg {
            file,
            buf: vec![0; RECORD_MAX],
        })
    }

    /// The messages logged since the last call (each read of `/dev/kmsg` returns one
    /// record), and whether the end of the log was reached (false: more are waiting; the
    /// reads are bounded so a flood of kernel messages cannot hold up the ring buffer).
    /// Records overwritten before we read them (`EPIPE`) are skipped; another error ends
    /// the reading as if at the end.
    pub fn read_available(&mut self) -> (Vec<String>, bool) {
        let mut out = Vec::new();
        for _ in 0..256 {
            match self.file.read(&mut self.buf) {
                Ok(0) => return (out, true),
                Ok(n) => {
                    if let Some(m) = message(&self.buf[..n]) {
                        out.push(m);
                    }
                }
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return (out, true),
            }
        }
        (out, false)
    }
}

impl AsRawFd for Kmsg {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

impl AsFd for Kmsg {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

/// The message of one `/dev/kmsg` record (`<prio>,<seq>,<usec>,<flags>[,...];<message>\n`
/// followed by ` KEY=value` continuation lines), without the prefix or the continuations.
pub fn message(record: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(record);
    let (_, rest) = text.split_once(';')?;
    let msg = rest.split('\n').next().unwrap_or("");
    Some(msg.to_string())
}

pub use tracer_fs::event::test_marker;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_records_and_markers() {
        let rec =
            b"12,2034,1234567,-;run fstests generic/001 at 2025-06-01 12:00:00\n SUBSYSTEM=x\n";
        let m = message(rec).unwrap();
        assert_eq!(m, "run fstests generic/001 at 2025-06-01 12:00:00");
        assert_eq!(test_marker(&m).as_deref(), Some("generic/001"));
        assert_eq!(
            test_marker("run fstests xfs/100 at Sun Jun  1 12:00:00 UTC 2025").as_deref(),
            Some("xfs/100")
        );
        // Not a marker: no "at", other text, or a record without a message.
        assert_eq!(test_marker("run fstests generic/001"), None);
        assert_eq!(test_marker("XFS (loop0): Mounting V5 Filesystem"), None);
        assert_eq!(message(b"no separator"), None);
    }

    #[test]
    fn a_missing_device_means_no_markers() {
        assert!(Kmsg::open_path(Path::new("/nonexistent/kmsg")).is_none());
    }
}
