//! `tracer doctor` against direct attempts: each capability it reports is tried here again
//! by hand, through the raw bpf(2) and perf_event_open(2) syscalls and tracefs (no aya, no
//! tracer code), and the answers must agree. Nothing is hard-coded about this kernel.

mod common;

use std::{
    ffi::CString,
    os::fd::{FromRawFd, OwnedFd},
};

use common::*;
use serde_json::Value;

const BPF_PROG_LOAD: i64 = 5;
const BPF_RAW_TRACEPOINT_OPEN: i64 = 17;
const BPF_LINK_CREATE: i64 = 28;
const PROG_TYPE_TRACEPOINT: u32 = 5;
const PROG_TYPE_RAW_TRACEPOINT: u32 = 17;
const PROG_TYPE_TRACING: u32 = 26;
const TRACE_RAW_TP: u32 = 23;
const TRACE_FENTRY: u32 = 24;
const TRACE_ITER: u32 = 28;

fn bpf(cmd: i64, attr: &mut [u8; 128]) -> Result<OwnedFd, i32> {
    // SAFETY: a zero-padded bpf_attr of the size the kernel accepts.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len() as u32) };
    if fd < 0 {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap())
    } else {
        // SAFETY: a new fd the kernel handed us.
        Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
    }
}

fn put32(a: &mut [u8; 128], off: usize, v: u32) {
    a[off..off + 4].copy_from_slice(&v.to_ne_bytes());
}

fn put64(a: &mut [u8; 128], off: usize, v: u64) {
    a[off..off + 8].copy_from_slice(&v.to_ne_bytes());
}

/// Loads `r0 = 0; exit` as a program of `prog_type` (offsets are those of `union bpf_attr`).
fn load(prog_type: u32, attach_type: u32, attach_btf_id: u32) -> Result<OwnedFd, i32> {
    // BPF_MOV64_IMM(R0, 0); BPF_EXIT_INSN()
    let insns: [u64; 2] = [0x0000_0000_0000_00b7, 0x0000_0000_0000_0095];
    let license = CString::new("GPL").unwrap();
    let mut a = [0u8; 128];
    put32(&mut a, 0, prog_type);
    put32(&mut a, 4, 2);
    put64(&mut a, 8, insns.as_ptr() as u64);
    put64(&mut a, 16, license.as_ptr() as u64);
    put32(&mut a, 68, attach_type);
    put32(&mut a, 108, attach_btf_id);
    bpf(BPF_PROG_LOAD, &mut a)
}

fn raw_tp_open(name: Option<&str>, prog: &OwnedFd) -> Result<OwnedFd, i32> {
    use std::os::fd::AsRawFd;
    let name = name.map(|n| CString::new(n).unwrap());
    let mut a = [0u8; 128];
    put64(&mut a, 0, name.as_ref().map_or(0, |n| n.as_ptr() as u64));
    put32(&mut a, 8, prog.as_raw_fd() as u32);
    bpf(BPF_RAW_TRACEPOINT_OPEN, &mut a)
}

fn btf_id(name: &str) -> Option<u32> {
    let btf = btf_rs::Btf::from_file("/sys/kernel/btf/vmlinux").ok()?;
    btf.resolve_ids_by_name(name).ok()?.first().copied()
}

fn try_tracepoint() -> bool {
    use std::os::fd::AsRawFd;
    let Ok(prog) = load(PROG_TYPE_TRACEPOINT, 0, 0) else {
        return false;
    };
    let Ok(id) = std::fs::read_to_string("/sys/kernel/tracing/events/sched/sched_process_exit/id")
    else {
        return false;
    };
    // struct perf_event_attr, first version (64 bytes): type, size, config, sample_period,
    // sample_type, read_format, flags, wakeup_events.
    let mut attr = [0u8; 64];
    attr[0..4].copy_from_slice(&2u32.to_ne_bytes()); // PERF_TYPE_TRACEPOINT
    attr[4..8].copy_from_slice(&64u32.to_ne_bytes());
    attr[8..16].copy_from_slice(&id.trim().parse::<u64>().unwrap().to_ne_bytes());
    attr[16..24].copy_from_slice(&1u64.to_ne_bytes());
    attr[48..52].copy_from_slice(&1u32.to_ne_bytes());
    const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;
    // SAFETY: a valid attr; any pid, cpu 0.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            attr.as_ptr(),
            -1,
            0,
            -1,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    if fd < 0 {
        return false;
    }
    // SAFETY: the fd is ours.
    let pe = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // SAFETY: PERF_EVENT_IOC_SET_BPF with a program fd.
    let rc = unsafe { libc::ioctl(pe.as_raw_fd(), 0x4004_2408, prog.as_raw_fd()) };
    rc == 0
}

fn try_raw_tracepoint() -> bool {
    load(PROG_TYPE_RAW_TRACEPOINT, 0, 0)
        .and_then(|p| raw_tp_open(Some("kfree"), &p))
        .is_ok()
}

fn try_tp_btf() -> bool {
    let Some(id) = btf_id("btf_trace_sched_process_exit") else {
        return false;
    };
    load(PROG_TYPE_TRACING, TRACE_RAW_TP, id)
        .and_then(|p| raw_tp_open(None, &p))
        .is_ok()
}

fn try_fentry() -> bool {
    let Some(id) = btf_id("fput") else {
        return false;
    };
    load(PROG_TYPE_TRACING, TRACE_FENTRY, id)
        .and_then(|p| raw_tp_open(None, &p))
        .is_ok()
}

fn try_iterator() -> bool {
    use std::os::fd::AsRawFd;
    let Some(id) = btf_id("bpf_iter_task_file") else {
        return false;
    };
    let Ok(prog) = load(PROG_TYPE_TRACING, TRACE_ITER, id) else {
        return false;
    };
    let mut a = [0u8; 128];
    put32(&mut a, 0, prog.as_raw_fd() as u32);
    put32(&mut a, 8, TRACE_ITER);
    bpf(BPF_LINK_CREATE, &mut a).is_ok()
}

/// A kprobe through tracefs, the way perf and bpftrace users know it.
fn try_kprobe() -> bool {
    let events = "/sys/kernel/tracing/kprobe_events";
    if !std::path::Path::new(events).exists() {
        return false;
    }
    let ok = std::fs::write(events, "p:tracer_doctor_test fput\n").is_ok();
    let _ = std::fs::OpenOptions::new()
        .append(true)
        .open(events)
        .and_then(|mut f| {
            use std::io::Write;
            f.write_all(b"-:tracer_doctor_test\n")
        });
    ok
}

fn doctor_json() -> (Value, bool) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tracer"))
        .args(["doctor", "--json"])
        .output()
        .unwrap();
    (
        serde_json::from_slice(&out.stdout).expect("doctor --json prints JSON"),
        out.status.success(),
    )
}

fn says(report: &Value, name: &str) -> bool {
    report["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("doctor does not report {name}: {report:#}"))["ok"]
        .as_bool()
        .unwrap()
}

#[test]
fn doctor_agrees_with_direct_attempts() {
    if !kernel_tests_allowed("doctor_agrees_with_direct_attempts") {
        return;
    }
    let _g = serial();
    let (report, ok) = doctor_json();
    let direct = [
        ("tracepoints", try_tracepoint()),
        ("raw tracepoints", try_raw_tracepoint()),
        ("BTF tracepoints (tp_btf)", try_tp_btf()),
        ("BPF iterators", try_iterator()),
        ("kprobes", try_kprobe()),
        ("fentry/fexit", try_fentry()),
    ];
    eprintln!("direct attempts: {direct:?}");
    for (name, by_hand) in direct {
        assert_eq!(
            says(&report, name),
            by_hand,
            "doctor and a direct attempt disagree on {name}: {report:#}"
        );
    }
    assert_eq!(
        says(&report, "BTF"),
        std::path::Path::new("/sys/kernel/btf/vmlinux").exists()
    );
    // The exit status is the verdict "can the tracer run at all".
    assert_eq!(ok, report["can_run"].as_bool().unwrap());
    assert_eq!(
        ok,
        says(&report, "tracepoints") && says(&report, "BTF") && says(&report, "ring buffer")
    );
    // Every hook is either served by a mechanism or says why not.
    for h in report["hooks"].as_array().unwrap() {
        let live = !h["mechanism"].is_null();
        assert!(live || !h["notes"].as_array().unwrap().is_empty(), "{h:#}");
        if h["mechanism"] == "raw_tracepoint" {
            assert!(says(&report, "raw tracepoints"));
        }
    }
    assert_eq!(
        leftover_programs(),
        Vec::<String>::new(),
        "doctor leaves nothing loaded"
    );
}

#[test]
fn doctor_human_table_names_every_capability() {
    if !kernel_tests_allowed("doctor_human_table_names_every_capability") {
        return;
    }
    let _g = serial();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tracer"))
        .arg("doctor")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for word in [
        "tracepoints",
        "raw tracepoints",
        "BPF iterators",
        "kprobes",
        "fentry/fexit",
        "Hooks:",
        "tracer can run:",
    ] {
        assert!(text.contains(word), "missing {word} in:\n{text}");
    }
}
