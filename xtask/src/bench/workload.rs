//! The benchmark's micro workloads, run in a child process (`cargo xtask bench-workload`)
//! for a fixed time; each prints one JSON line: `{"ops": N, "secs": S}`.
//!
//! - `files`: open(O_CREAT) + write 4 KiB + close + unlink, on tmpfs;
//! - `uring`: the same file life, with its writes (4 × 1 KiB) submitted through io_uring;
//! - `meta`: create + stat + rename + unlink, on xfs on a loop device;
//! - `mount`: mount + umount of a tmpfs.

use std::{
    ffi::CString,
    fs,
    io::Write as _,
    os::unix::{ffi::OsStrExt, fs::OpenOptionsExt, io::AsRawFd},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

#[derive(clap::Args)]
pub struct Args {
    /// files, uring, meta or mount.
    pub kind: String,
    /// The directory it works in (for `mount`: the mount point).
    pub dir: PathBuf,
    /// Seconds to run.
    pub secs: f64,
}

pub fn main(args: Args) -> Result<()> {
    let until = Duration::from_secs_f64(args.secs);
    let start = Instant::now();
    let ops = match args.kind.as_str() {
        "files" => files(&args.dir, start, until)?,
        "uring" => uring(&args.dir, start, until)?,
        "meta" => meta(&args.dir, start, until)?,
        "mount" => mount(&args.dir, start, until)?,
        other => bail!("unknown workload {other}"),
    };
    let secs = start.elapsed().as_secs_f64();
    println!("{}", serde_json::json!({ "ops": ops, "secs": secs }));
    Ok(())
}

/// Runs `step` in batches until the time is up; the number of steps.
fn timed(start: Instant, until: Duration, mut step: impl FnMut(u64) -> Result<()>) -> Result<u64> {
    let mut n = 0u64;
    while start.elapsed() < until {
        for _ in 0..64 {
            step(n)?;
            n += 1;
        }
    }
    Ok(n)
}

fn files(dir: &Path, start: Instant, until: Duration) -> Result<u64> {
    let buf = [0x5au8; 4096];
    timed(start, until, |i| {
        let p = dir.join(format!("f{}", i % 256));
        let mut f = fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&p)
            .with_context(|| format!("creating {}", p.display()))?;
        f.write_all(&buf)?;
        drop(f);
        fs::remove_file(&p)?;
        Ok(())
    })
}

fn uring(dir: &Path, start: Instant, until: Duration) -> Result<u64> {
    use io_uring::{IoUring, opcode, types};
    let mut ring = IoUring::new(64).context("io_uring_setup")?;
    let buf = [0xa5u8; 1024];
    timed(start, until, |i| {
        let p = dir.join(format!("u{}", i % 256));
        let f = fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(&p)
            .with_context(|| format!("creating {}", p.display()))?;
        let fd = types::Fd(f.as_raw_fd());
        for k in 0..4u64 {
            let e = opcode::Write::new(fd, buf.as_ptr(), buf.len() as u32)
                .offset(k * 1024)
                .build()
                .user_data(k);
            // SAFETY: `buf` outlives the submission: we wait for every completion below.
            unsafe { ring.submission().push(&e) }.map_err(|_| anyhow::anyhow!("SQ full"))?;
        }
        ring.submit_and_wait(4)?;
        let done: Vec<i32> = ring.completion().map(|c| c.result()).collect();
        if done.len() != 4 || done.iter().any(|&r| r < 0) {
            bail!("io_uring writes: {done:?}");
        }
        drop(f);
        fs::remove_file(&p)?;
        Ok(())
    })
}

fn meta(dir: &Path, start: Instant, until: Duration) -> Result<u64> {
    timed(start, until, |i| {
        let a = dir.join(format!("m{}", i % 512));
        let b = dir.join(format!("r{}", i % 512));
        fs::File::create(&a).with_context(|| format!("creating {}", a.display()))?;
        fs::metadata(&a)?;
        fs::rename(&a, &b)?;
        fs::remove_file(&b)?;
        Ok(())
    })
}

fn mount(dir: &Path, start: Instant, until: Duration) -> Result<u64> {
    let target = CString::new(dir.as_os_str().as_bytes())?;
    let (src, fstype, data) = (c"bench", c"tmpfs", c"size=1m");
    timed(start, until, |_| {
        // SAFETY: valid NUL-terminated strings.
        let rc = unsafe {
            libc::mount(
                src.as_ptr(),
                target.as_ptr(),
                fstype.as_ptr(),
                0,
                data.as_ptr().cast(),
            )
        };
        if rc != 0 {
            bail!(
                "mount tmpfs on {}: {}",
                dir.display(),
                std::io::Error::last_os_error()
            );
        }
        // SAFETY: as above.
        if unsafe { libc::umount2(target.as_ptr(), 0) } != 0 {
            bail!(
                "umount {}: {}",
                dir.display(),
                std::io::Error::last_os_error()
            );
        }
        Ok(())
    })
}
