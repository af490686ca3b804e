//! Which kernel this is, for the headers of recordings, `tracer doctor` and the TUI.

/// The kernel's release (`uname -r`), empty if unreadable.
pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// `Linux <release> <machine>` (`uname -srm`), `None` if uname fails.
pub fn kernel_line() -> Option<String> {
    // SAFETY: uname fills a zeroed struct.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::uname(&mut u) } != 0 {
        return None;
    }
    let s = |f: &[libc::c_char]| {
        // SAFETY: uname's fields are NUL-terminated.
        unsafe { std::ffi::CStr::from_ptr(f.as_ptr()) }
            .to_string_lossy()
            .into_owned()
    };
    Some(format!("Linux {} {}", s(&u.release), s(&u.machine)))
}
