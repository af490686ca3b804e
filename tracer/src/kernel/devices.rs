//! Files that devices hold open, read when a umount fails: loop devices' backing files
//! (`/sys/block/loopN/loop/backing_file`) and active swap files (`/proc/swaps`). Each holds
//! a `struct file` on its mount, so the mount stays busy until `losetup -d` or `swapoff`;
//! no fd table or mapping shows them.

use std::{collections::HashSet, os::unix::fs::MetadataExt};

use tracer_fs::event::{BackingFile, BackingKind, MountInfo};

use crate::kernel::mountinfo::unescape;

/// The loop devices and swap files backed by files on one of `ids`, and what could not
/// be read.
pub fn backing_files(table: &[MountInfo], ids: &HashSet<i32>) -> (Vec<BackingFile>, Vec<String>) {
    let mut found = Vec::new();
    let mut errors = Vec::new();
    let mut add = |kind, device: String, path: String| {
        if let Some((mnt_id, ino)) = on_mount(table, ids, &path) {
            found.push(BackingFile {
                kind,
                device,
                path,
                mnt_id,
                ino,
            });
        }
    };
    match std::fs::read_dir("/sys/block") {
        Ok(dir) => {
            for entry in dir.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !name.starts_with("loop") {
                    continue;
                }
                // Only a bound loop device has a `loop` directory.
                let Ok(text) = std::fs::read_to_string(entry.path().join("loop/backing_file"))
                else {
                    continue;
                };
                add(BackingKind::Loop, format!("/dev/{name}"), clean(&text));
            }
        }
        Err(e) => errors.push(format!("loop devices not read (/sys/block: {e})")),
    }
    match std::fs::read_to_string("/proc/swaps") {
        Ok(text) => {
            for (path, kind) in swaps(&text) {
                if kind == "file" {
                    add(BackingKind::Swap, String::new(), path);
                }
            }
        }
        // A kernel without swap has no /proc/swaps.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => errors.push(format!("swap files not read (/proc/swaps: {e})")),
    }
    (found, errors)
}

/// A path as the kernel printed it (`d_path`): one line, maybe ` (deleted)`.
fn clean(text: &str) -> String {
    let p = text.trim_end_matches('\n');
    p.strip_suffix(" (deleted)").unwrap_or(p).to_string()
}

/// `/proc/swaps` entries: (path, type), paths unescaped.
fn swaps(text: &str) -> Vec<(String, String)> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let path = unescape(it.next()?);
            let kind = it.next()?.to_string();
            Some((clean(&path), kind))
        })
        .collect()
}

/// The mount among `ids` that `path` is on: the one with the longest mount point that is
/// a prefix of the path (the topmost there when mounts are stacked), checked against the
/// file's device when it can be stat'ed. Returns its id and the file's inode (0 when the
/// file cannot be stat'ed, e.g. deleted).
fn on_mount(table: &[MountInfo], ids: &HashSet<i32>, path: &str) -> Option<(i32, u64)> {
    let under = |mp: &str| {
        mp == "/"
            || path == mp
            || path
                .strip_prefix(mp)
                .is_some_and(|rest| rest.starts_with('/'))
    };
    let m = table
        .iter()
        .filter(|m| under(&m.mount_point))
        .max_by_key(|m| m.mount_point.len())?;
    if !ids.contains(&m.mount_id) {
        return None;
    }
    match std::fs::metadata(path) {
        Ok(md) => {
            let dev = md.dev();
            let (major, minor) = (libc::major(dev), libc::minor(dev));
            (major == m.major && minor == m.minor).then_some((m.mount_id, md.ino()))
        }
        Err(_) => Some((m.mount_id, 0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: i32, mp: &str) -> MountInfo {
        MountInfo {
            mount_id: id,
            parent_id: 1,
            major: 0,
            minor: id as u32,
            root: "/".into(),
            mount_point: mp.into(),
            fs_type: "tmpfs".into(),
            source: "x".into(),
        }
    }

    #[test]
    fn paths_go_to_the_deepest_mount_and_swaps_are_parsed() {
        let table = [
            m(1, "/"),
            m(40, "/mnt/a"),
            m(41, "/mnt/a/b"),
            m(42, "/mnt/ab"),
        ];
        let ids: HashSet<i32> = [40, 41].into();
        // Not stat'able here: matched by path alone, inode unknown.
        assert_eq!(on_mount(&table, &ids, "/mnt/a/img"), Some((40, 0)));
        assert_eq!(on_mount(&table, &ids, "/mnt/a/b/img"), Some((41, 0)));
        assert_eq!(on_mount(&table, &ids, "/mnt/ab/img"), None);
        assert_eq!(on_mount(&table, &ids, "/other"), None);
        assert_eq!(clean("/mnt/a/img (deleted)\n"), "/mnt/a/img");
        let s = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n\
                 /mnt/a/swap\\040file                         file\t\t16380\t\t0\t\t-2\n\
                 /dev/zram0                              partition\t4038652\t\t0\t\t100\n";
        assert_eq!(
            swaps(s),
            [
                ("/mnt/a/swap file".to_string(), "file".to_string()),
                ("/dev/zram0".to_string(), "partition".to_string())
            ]
        );
    }
}
