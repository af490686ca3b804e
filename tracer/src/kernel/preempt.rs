//! Whether this kernel preempts tasks inside kernel code (`preempt=full` or `lazy`, or a
//! real-time kernel). Where it also runs the programs of syscall tracepoints preemptibly
//! (Linux 7.2 does: its faultable syscall tracepoints call BPF without disabling
//! preemption), a program preempted while it runs keeps its per-CPU "running" mark, and the
//! kernel skips that program for every other task on the CPU until it resumes. With one
//! `raw_syscalls` dispatch program for every syscall, that skips whole syscalls; the
//! per-syscall classic tracepoints do not share one program.

/// The dynamic preemption mode, as `/sys/kernel/debug/sched/preempt` shows it
/// (`none voluntary (full) lazy`).
/// (Read where debugfs is mounted and readable; not mounted for this.)
const PREEMPT_FILE: &str = "/sys/kernel/debug/sched/preempt";

/// Whether kernel code is preemptible here, and how that was learnt; `None`: unknown.
pub fn kernel_code_preemptible() -> Option<(bool, String)> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let config = read_config_gz("/proc/config.gz")
        .or_else(|| std::fs::read_to_string(format!("/boot/config-{}", release.trim())).ok());
    judge(
        std::fs::read_to_string(PREEMPT_FILE).ok().as_deref(),
        &std::fs::read_to_string("/proc/cmdline").unwrap_or_default(),
        config.as_deref(),
    )
}

/// The kernel's build configuration from `/proc/config.gz` (`CONFIG_IKCONFIG_PROC`).
fn read_config_gz(path: &str) -> Option<String> {
    use std::io::Read as _;
    let f = std::fs::File::open(path).ok()?;
    let mut s = String::new();
    flate2::read::GzDecoder::new(f)
        .read_to_string(&mut s)
        .ok()?;
    Some(s)
}

/// The judgement from what the kernel shows: its dynamic mode, else `preempt=` on its
/// command line, else its build configuration.
fn judge(dynamic: Option<&str>, cmdline: &str, config: Option<&str>) -> Option<(bool, String)> {
    let preemptible = |mode: &str| matches!(mode, "full" | "lazy" | "rt");
    if let Some(mode) = dynamic.and_then(|d| {
        d.split_whitespace()
            .find_map(|w| w.strip_prefix('(')?.strip_suffix(')'))
    }) {
        return Some((
            preemptible(mode),
            format!("preempt={mode} ({PREEMPT_FILE})"),
        ));
    }
    if let Some(mode) = cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("preempt="))
    {
        return Some((preemptible(mode), format!("preempt={mode} (command line)")));
    }
    let config = config?;
    let set = |k: &str| config.lines().any(|l| l.trim() == format!("{k}=y"));
    let (yes, which) = if set("CONFIG_PREEMPT_RT") {
        (true, "CONFIG_PREEMPT_RT")
    } else if set("CONFIG_PREEMPT") {
        (true, "CONFIG_PREEMPT")
    } else if set("CONFIG_PREEMPT_LAZY") {
        (true, "CONFIG_PREEMPT_LAZY")
    } else if set("CONFIG_PREEMPT_VOLUNTARY") {
        (false, "CONFIG_PREEMPT_VOLUNTARY")
    } else if set("CONFIG_PREEMPT_NONE") {
        (false, "CONFIG_PREEMPT_NONE")
    } else {
        return None;
    };
    Some((yes, format!("{which} (build configuration)")))
}

#[cfg(test)]
mod tests {
    use super::judge;

    #[test]
    fn the_dynamic_mode_wins_then_the_command_line_then_the_build() {
        assert_eq!(
            judge(Some("none voluntary (full) lazy\n"), "preempt=none", None).map(|j| j.0),
            Some(true)
        );
        assert_eq!(
            judge(Some("(none) voluntary full lazy\n"), "", None).map(|j| j.0),
            Some(false)
        );
        assert_eq!(
            judge(Some("none voluntary full (lazy)"), "", None).map(|j| j.0),
            Some(true)
        );
        assert_eq!(
            judge(None, "quiet preempt=lazy", None).map(|j| j.0),
            Some(true)
        );
        let config =
            "# CONFIG_PREEMPT is not set\nCONFIG_PREEMPT_LAZY=y\nCONFIG_PREEMPT_DYNAMIC=y\n";
        let j = judge(None, "quiet", Some(config)).unwrap();
        assert!(j.0 && j.1.contains("CONFIG_PREEMPT_LAZY"), "{j:?}");
        let config = "CONFIG_PREEMPT_NONE=y\n# CONFIG_PREEMPT is not set\n";
        assert_eq!(judge(None, "", Some(config)).map(|j| j.0), Some(false));
        assert_eq!(judge(None, "", Some("CONFIG_PREEMPT_COUNT=y\n")), None);
        assert_eq!(judge(None, "", None), None);
    }
}
