//! `/proc/self/mountinfo`, parsed into the engine's `MountInfo`.

use anyhow::{Context, Result};
use tracer_fs::event::MountInfo;

pub fn read() -> Result<Vec<MountInfo>> {
    let text =
        std::fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    Ok(parse(&text))
}

/// Undoes the kernel's octal escapes (`\040` for a space) in mountinfo paths.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue`
pub fn parse(text: &str) -> Vec<MountInfo> {
    text.lines()
        .filter_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            let mut a = pre.split(' ');
            let mount_id = a.next()?.parse().ok()?;
            let parent_id = a.next()?.parse().ok()?;
            let (major, minor) = a.next()?.split_once(':')?;
            let root = unescape(a.next()?);
            let mount_point = unescape(a.next()?);
            let mut b = post.split(' ');
            let fs_type = b.next()?.to_string();
            let source = unescape(b.next().unwrap_or(""));
            Some(MountInfo {
                mount_id,
                parent_id,
                major: major.parse().ok()?,
                minor: minor.parse().ok()?,
                root,
                mount_point,
                fs_type,
                source,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines_and_escapes() {
        let m = parse(
            "36 35 98:0 /mnt1 /mnt\\040two rw,noatime master:1 - ext3 /dev/root rw\n\
             garbage line\n\
             40 36 0:50 / /tmp/x rw - tmpfs tmpfs rw\n",
        );
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].mount_id, 36);
        assert_eq!(m[0].mount_point, "/mnt two");
        assert_eq!((m[0].major, m[0].minor), (98, 0));
        assert_eq!(m[0].root, "/mnt1");
        assert_eq!(m[1].fs_type, "tmpfs");
        assert_eq!(m[1].parent_id, 36);
    }
}
