//! tracefs and bpffs: mounting them when the system has not, and reading tracepoint
//! record layouts from their `format` files.

use std::{collections::HashMap, fs, path::Path};

use anyhow::{Context, Result, bail};

pub const TRACEFS: &str = "/sys/kernel/tracing";
pub const BPFFS: &str = "/sys/fs/bpf";

fn mounted(path: &str, fstype: &str) -> bool {
    fs::read_to_string("/proc/self/mounts")
        .map(|m| {
            m.lines().any(|l| {
                let mut it = l.split_whitespace();
                let _src = it.next();
                it.next() == Some(path) && it.next() == Some(fstype)
            })
        })
        .unwrap_or(false)
}

fn mount_fs(fstype: &str, path: &str) -> Result<()> {
    let c = |s: &str| std::ffi::CString::new(s).expect("no NUL");
    let (src, target, ty) = (c("nodev"), c(path), c(fstype));
    // SAFETY: valid C strings; no data argument.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            ty.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        bail!(
            "mounting {fstype} on {path}: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// Mounts tracefs and bpffs where they are missing (many minimal systems boot without).
/// Returns what it mounted, for the record.
pub fn ensure_mounted() -> Result<Vec<&'static str>> {
    let mut done = Vec::new();
    if !Path::new(TRACEFS).join("events").exists() && !mounted(TRACEFS, "tracefs") {
        mount_fs("tracefs", TRACEFS).context("tracepoints need tracefs")?;
        done.push(TRACEFS);
    }
    if !mounted(BPFFS, "bpf") && Path::new(BPFFS).exists() {
        // bpffs is only needed for pinning, which tracer does not do; mount it anyway so the
        // tools people use alongside (bpftool) find it, but do not fail without it.
        if mount_fs("bpf", BPFFS).is_ok() {
            done.push(BPFFS);
        }
    }
    Ok(done)
}

/// A tracepoint's fields by name: (offset, size).
#[derive(Debug, Clone, Default)]
pub struct Format {
    pub fields: HashMap<String, (u16, u16)>,
}

impl Format {
    pub fn offset(&self, field: &str) -> Option<u16> {
        self.fields.get(field).map(|f| f.0)
    }
}

pub fn exists(category: &str, name: &str) -> bool {
    Path::new(TRACEFS)
        .join("events")
        .join(category)
        .join(name)
        .exists()
}

/// Reads `events/<category>/<name>/format`.
pub fn format(category: &str, name: &str) -> Result<Format> {
    let path = Path::new(TRACEFS)
        .join("events")
        .join(category)
        .join(name)
        .join("format");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    parse_format(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Parses lines like `field:const void * ptr; offset:16; size:8; signed:0;` (tab-separated).
pub fn parse_format(text: &str) -> Result<Format> {
    let mut fields = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        let Some(rest) = line.strip_prefix("field:") else {
            continue;
        };
        let mut decl = None;
        let mut offset = None;
        let mut size = None;
        for part in rest.split(';') {
            let part = part.trim();
            if let Some(v) = part.strip_prefix("offset:") {
                offset = v.parse::<u16>().ok();
            } else if let Some(v) = part.strip_prefix("size:") {
                size = v.parse::<u16>().ok();
            } else if decl.is_none() && !part.is_empty() && !part.contains(':') {
                decl = Some(part);
            }
        }
        let (Some(decl), Some(offset), Some(size)) = (decl, offset, size) else {
            bail!("malformed field line: {line}");
        };
        // The name is the last identifier of the declaration, after dropping an array
        // suffix (`char comm[16]`); `__data_loc char[] name` has its brackets before it.
        let decl = match decl.strip_suffix(']') {
            Some(d) => d.rsplit_once('[').map_or(d, |(d, _)| d),
            None => decl,
        };
        let name = decl
            .rsplit(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .find(|s| !s.is_empty())
            .unwrap_or(decl);
        fields.insert(name.to_string(), (offset, size));
    }
    if fields.is_empty() {
        bail!("no fields");
    }
    Ok(Format { fields })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kernel_format_lines() {
        let text = "name: kmem_cache_alloc\nID: 515\nformat:\n\
            \tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
            \tfield:const void * ptr;\toffset:16;\tsize:8;\tsigned:0;\n\
            \tfield:__data_loc char[] name;\toffset:24;\tsize:4;\tsigned:0;\n\
            \tfield:char comm[16];\toffset:8;\tsize:16;\tsigned:0;\n\n\
            print fmt: \"call_site=%pS\"\n";
        let f = parse_format(text).unwrap();
        assert_eq!(f.offset("ptr"), Some(16));
        assert_eq!(f.offset("name"), Some(24));
        assert_eq!(f.offset("comm"), Some(8));
        assert_eq!(f.offset("common_type"), Some(0));
        assert_eq!(f.offset("missing"), None);
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_format("field:int x;\toffset:zz;").is_err());
        assert!(parse_format("nothing here").is_err());
    }
}
