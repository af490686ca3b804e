//! Plain-words formatting shared by verdicts, notices and summaries: durations, times
//! relative to an event ("35.2ms after the EBUSY"), kernel addresses, signals, exit codes.

/// A kernel address or pointer as `0xffff…` hex.
pub fn hex(v: u64) -> String {
    format!("{v:#x}")
}

/// A duration with a unit a human reads at a glance: `850ns`, `12.5µs`, `35.2ms`, `1.204s`.
/// Integer arithmetic only, so the text is the same on every machine.
pub fn dur(ns: u64) -> String {
    if ns < 1_000 {
        return format!("{ns}ns");
    }
    let us10 = (ns + 50) / 100;
    if us10 < 10_000 {
        return format!("{}.{}µs", us10 / 10, us10 % 10);
    }
    let ms10 = (ns + 50_000) / 100_000;
    if ms10 < 10_000 {
        return format!("{}.{}ms", ms10 / 10, ms10 % 10);
    }
    let ms = (ns + 500_000) / 1_000_000;
    format!("{}.{:03}s", ms / 1000, ms % 1000)
}

/// `ts` relative to `anchor`, named `what`: "35.2ms after the EBUSY", "1.204s before the
/// EBUSY", "at the same time as the EBUSY".
pub fn rel(ts: u64, anchor: u64, what: &str) -> String {
    match ts.cmp(&anchor) {
        std::cmp::Ordering::Equal => format!("at the same time as the {what}"),
        std::cmp::Ordering::Greater => format!("{} after the {what}", dur(ts - anchor)),
        std::cmp::Ordering::Less => format!("{} before the {what}", dur(anchor - ts)),
    }
}

/// A boot-clock timestamp as seconds since boot with microseconds: `2.001000s`.
pub fn boot(ns: u64) -> String {
    format!(
        "{}.{:06}s",
        ns / 1_000_000_000,
        (ns % 1_000_000_000) / 1_000
    )
}

/// `SIGKILL`, `SIGTERM`, ... or `signal 42`.
pub fn signal_name(sig: i32) -> String {
    let name = match sig {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        10 => "SIGUSR1",
        11 => "SIGSEGV",
        12 => "SIGUSR2",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        _ => return format!("signal {sig}"),
    };
    name.to_string()
}

/// The signal that killed a task, from `task->exit_code` (low 7 bits), if any.
pub fn exit_signal(exit_code: i32) -> Option<i32> {
    let sig = exit_code & 0x7f;
    (sig != 0).then_some(sig)
}

/// "killed by SIGKILL", "killed by SIGSEGV (core dumped)", "exited with status 1".
pub fn exit_words(exit_code: i32) -> String {
    match exit_signal(exit_code) {
        Some(sig) if exit_code & 0x80 != 0 => {
            format!("killed by {} (core dumped)", signal_name(sig))
        }
        Some(sig) => format!("killed by {}", signal_name(sig)),
        None => format!("exited with status {}", (exit_code >> 8) & 0xff),
    }
}

/// An errno-style syscall return in words: `EBUSY`, `EINVAL`, `ok`, `error 42`.
pub fn errno_name(ret: i64) -> String {
    let name = match ret {
        0 => "ok",
        -1 => "EPERM",
        -2 => "ENOENT",
        -4 => "EINTR",
        -11 => "EAGAIN/EWOULDBLOCK",
        -13 => "EACCES",
        -16 => "EBUSY",
        -20 => "ENOTDIR",
        -22 => "EINVAL",
        -35 => "EDEADLK",
        _ if ret > 0 => return format!("returned {ret}"),
        _ => return format!("error {}", -ret),
    };
    name.to_string()
}

/// Plural helper: `n file`/`n files`.
pub fn count(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("{n} {one}")
    } else {
        format!("{n} {many}")
    }
}

/// Lexically normalizes an absolute path: collapses `//` and `/./`, drops a trailing `/`.
/// `..` is left alone (it may cross a symlink). Relative paths are only cleaned the same way.
pub fn normalize_path(p: &str) -> String {
    if p.is_empty() {
        return String::new();
    }
    let absolute = p.starts_with('/');
    let parts: Vec<&str> = p
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    let joined = parts.join("/");
    if absolute {
        format!("/{joined}")
    } else if joined.is_empty() {
        ".".to_string()
    } else {
        joined
    }
}

/// Serializes a kernel address as a `"0xffff…"` string (JSON numbers lose precision above
/// 2^53, and people read hex).
pub fn ser_hex<S: serde::Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex(*v))
}

/// For `skip_serializing_if`: a count that is zero is left out.
pub fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// [`ser_hex`] for an optional address.
pub fn ser_hex_opt<S: serde::Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.serialize_some(&hex(*v)),
        None => s.serialize_none(),
    }
}

/// A work context with its addresses as hex strings.
pub fn ser_work_ctx<S: serde::Serializer>(
    v: &Option<crate::event::WorkCtx>,
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeStruct;
    match v {
        None => s.serialize_none(),
        Some(w) => {
            struct W<'a>(&'a crate::event::WorkCtx);
            impl serde::Serialize for W<'_> {
                fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                    let mut st = s.serialize_struct("WorkCtx", 2)?;
                    st.serialize_field("work", &hex(self.0.work))?;
                    st.serialize_field("function", &hex(self.0.function))?;
                    st.end()
                }
            }
            s.serialize_some(&W(w))
        }
    }
}

/// A holder with its addresses as hex strings (`{"kind":"uring_fixed","ctx":"0x…"}`).
pub fn ser_holder<S: serde::Serializer>(
    h: &crate::event::HolderRef,
    s: S,
) -> Result<S::Ok, S::Error> {
    use crate::event::HolderRef;
    use serde::ser::SerializeStruct;
    match h {
        HolderRef::Fd { tgid, fd } => {
            let mut st = s.serialize_struct("HolderRef", 3)?;
            st.serialize_field("kind", "fd")?;
            st.serialize_field("tgid", tgid)?;
            st.serialize_field("fd", fd)?;
            st.end()
        }
        HolderRef::UringFixed { ctx } => {
            let mut st = s.serialize_struct("HolderRef", 2)?;
            st.serialize_field("kind", "uring_fixed")?;
            st.serialize_field("ctx", &hex(*ctx))?;
            st.end()
        }
        HolderRef::UringReq { ctx, req } => {
            let mut st = s.serialize_struct("HolderRef", 3)?;
            st.serialize_field("kind", "uring_req")?;
            st.serialize_field("ctx", &hex(*ctx))?;
            st.serialize_field("req", &hex(*req))?;
            st.end()
        }
        HolderRef::Mmap { tgid, start, end } => {
            let mut st = s.serialize_struct("HolderRef", 4)?;
            st.serialize_field("kind", "mmap")?;
            st.serialize_field("tgid", tgid)?;
            st.serialize_field("start", &hex(*start))?;
            st.serialize_field("end", &hex(*end))?;
            st.end()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_pick_a_readable_unit() {
        assert_eq!(dur(0), "0ns");
        assert_eq!(dur(999), "999ns");
        assert_eq!(dur(1_000), "1.0µs");
        assert_eq!(dur(12_345), "12.3µs");
        assert_eq!(dur(999_949), "999.9µs");
        assert_eq!(dur(999_950), "1.0ms");
        assert_eq!(dur(35_240_000), "35.2ms");
        assert_eq!(dur(999_960_000), "1.000s");
        assert_eq!(dur(1_204_000_000), "1.204s");
        assert_eq!(dur(75_000_000_000), "75.000s");
    }

    #[test]
    fn relative_times_say_before_or_after() {
        assert_eq!(rel(10, 10, "EBUSY"), "at the same time as the EBUSY");
        assert_eq!(rel(35_200_000, 0, "EBUSY"), "35.2ms after the EBUSY");
        assert_eq!(rel(0, 1_500_000, "EBUSY"), "1.5ms before the EBUSY");
    }

    #[test]
    fn exit_codes_in_words() {
        assert_eq!(exit_words(9), "killed by SIGKILL");
        assert_eq!(exit_words(0x8b), "killed by SIGSEGV (core dumped)");
        assert_eq!(exit_words(1 << 8), "exited with status 1");
        assert_eq!(exit_words(0), "exited with status 0");
        assert_eq!(exit_signal(0x0100), None);
        assert_eq!(signal_name(64), "signal 64");
    }

    #[test]
    fn addresses_serialize_as_hex() {
        #[derive(serde::Serialize)]
        struct T {
            #[serde(serialize_with = "ser_hex")]
            a: u64,
            #[serde(serialize_with = "ser_hex_opt")]
            b: Option<u64>,
            #[serde(serialize_with = "ser_hex_opt")]
            c: Option<u64>,
            #[serde(serialize_with = "ser_work_ctx")]
            w: Option<crate::event::WorkCtx>,
            #[serde(serialize_with = "ser_holder")]
            h: crate::event::HolderRef,
        }
        let t = T {
            a: 0xffff_8880_0000_1000,
            b: Some(16),
            c: None,
            w: Some(crate::event::WorkCtx {
                work: 1,
                function: 2,
            }),
            h: crate::event::HolderRef::UringReq { ctx: 3, req: 4 },
        };
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            r#"{"a":"0xffff888000001000","b":"0x10","c":null,"w":{"work":"0x1","function":"0x2"},"h":{"kind":"uring_req","ctx":"0x3","req":"0x4"}}"#
        );
    }

    #[test]
    fn paths_and_misc() {
        assert_eq!(normalize_path("/mnt//scratch/./"), "/mnt/scratch");
        assert_eq!(normalize_path("/"), "/");
        assert_eq!(normalize_path("a/../b/"), "a/../b");
        assert_eq!(normalize_path("./"), ".");
        assert_eq!(normalize_path(""), "");
        assert_eq!(hex(0xffff_8880_0000_1000), "0xffff888000001000");
        assert_eq!(boot(2_001_000_123), "2.001000s");
        assert_eq!(errno_name(-16), "EBUSY");
        assert_eq!(errno_name(-99), "error 99");
        assert_eq!(count(1, "file", "files"), "1 file");
        assert_eq!(count(2, "file", "files"), "2 files");
    }
}
