//! Space a delete did not free ("df says full, du says empty"): a file whose last link was
//! removed while an io_uring ring or an in-flight request still held it keeps its blocks
//! until its last reference goes. A `SpaceHeld` notice names the file and its holders at
//! the delete; `SpaceFreed` closes the story when the file is released, with the chain of
//! deferred work that released it.

use std::collections::BTreeMap;
use std::fmt::{self, Display, Formatter, Write as _};

use serde::Serialize;

use crate::desc::{Anchor, Caller, FileReport, MountDesc};
use crate::text::{boot, dur, rel};
use crate::work::{ChainLink, chain_text};

/// A deleted file still held, by `struct file *`.
#[derive(Clone, Debug, Default)]
pub struct SpaceTable {
    pub stories: BTreeMap<u64, SpaceStoryRef>,
    pub next_id: u64,
}

/// Which space story a notice belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SpaceStoryRef {
    pub id: u64,
    #[serde(serialize_with = "crate::text::ser_hex")]
    pub file: u64,
    pub ino: u64,
    pub dev: u32,
    pub path: Option<String>,
    pub mount: Option<MountDesc>,
    /// `i_size` and `i_blocks * 512` right after the delete.
    pub size: u64,
    pub allocated: u64,
    /// The delete.
    pub first_ns: u64,
}

impl SpaceStoryRef {
    pub fn story_what(&self) -> String {
        format!("space held #{} by {}", self.id, self.what())
    }

    fn what(&self) -> String {
        match &self.path {
            Some(p) => p.clone(),
            None => format!("inode {}", self.ino),
        }
    }
}

/// The delete of a file its holders keep: what is held, by what.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SpaceHeld {
    pub story: SpaceStoryRef,
    pub ts_ns: u64,
    /// Who deleted it.
    pub deleted_by: Caller,
    /// The file and what holds it now.
    pub file: FileReport,
    pub test: Option<String>,
}

impl Display for SpaceHeld {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let s = &self.story;
        let a = Anchor::event(self.ts_ns, "delete");
        let mut out = String::new();
        let mount = s
            .mount
            .as_ref()
            .map(|m| format!(" on {} ({})", m.mount_point, m.fs_type))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "space held #{}: {} (inode {}{mount}) deleted by pid {} ({}) at {}, but still held: \
             {} allocated ({} bytes long) stay in use until its last reference goes",
            s.id,
            s.what(),
            s.ino,
            self.deleted_by.tgid,
            self.deleted_by.comm,
            boot(self.ts_ns),
            bytes(s.allocated),
            s.size,
        );
        if let Some(t) = &self.test {
            let _ = writeln!(out, "  during test {t}");
        }
        let _ = writeln!(out, "  what holds it:");
        self.file.render(&a, "    ", &mut out);
        f.write_str(out.trim_end())
    }
}

/// The deleted file's last reference went: its space is free.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SpaceFreed {
    pub story: SpaceStoryRef,
    pub ts_ns: u64,
    /// Who released it, and the deferral chain that led there (first: the releasing context).
    pub chain: Vec<ChainLink>,
    /// From the delete to the release.
    pub held_ns: u64,
}

impl Display for SpaceFreed {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let s = &self.story;
        writeln!(
            f,
            "space freed {}: {} — its last reference went; {} held for {} after the delete",
            rel(self.ts_ns, s.first_ns, "delete"),
            s.story_what(),
            bytes(s.allocated),
            dur(self.held_ns),
        )?;
        if self.chain.is_empty() {
            write!(f, "  released by: (not seen)")
        } else {
            write!(f, "  released by: {}", chain_text(&self.chain))
        }
    }
}

/// "1.5 MiB", "12 KiB", "512 B".
pub fn bytes(n: u64) -> String {
    const K: f64 = 1024.0;
    let v = n as f64;
    if v >= K * K * K {
        format!("{:.1} GiB", v / (K * K * K))
    } else if v >= K * K {
        format!("{:.1} MiB", v / (K * K))
    } else if v >= K {
        format!("{:.0} KiB", v / K)
    } else {
        format!("{n} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(8 * 1024), "8 KiB");
        assert_eq!(bytes(3 * 1024 * 1024 / 2), "1.5 MiB");
        assert_eq!(bytes(2 << 30), "2.0 GiB");
    }
}
