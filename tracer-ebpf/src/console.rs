//! fstests' test markers from the kernel log: `printk:console` fires in the task that
//! wrote to `/dev/kmsg`, so a `run fstests <test> at <date>` line lands in the ring buffer
//! in order with the records around it (reading `/dev/kmsg` instead stamps it late).

use aya_ebpf::{
    EbpfContext as _,
    helpers::{bpf_probe_read_kernel_buf, bpf_probe_read_kernel_str_bytes},
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};
use tracer_fs::wire::{CONSOLE_PREFIX, Console, tp_field};

use crate::{
    config::tp,
    emit::{record, reserve, submit},
};

#[tracepoint]
pub fn console(ctx: TracePointContext) -> u32 {
    let Some(off) = tp(tp_field::CONSOLE_MSG) else {
        return 0;
    };
    // SAFETY: offset from the format file; `msg` is a `__data_loc` (offset | len << 16).
    let Ok(loc) = (unsafe { ctx.read_at::<u32>(off) }) else {
        return 0;
    };
    let src = (ctx.as_ptr() as u64).wrapping_add((loc & 0xffff) as u64);
    marker(src, u64::MAX);
    0
}

/// `console(text, len)`: the text is not NUL-terminated at `len`.
#[raw_tracepoint(tracepoint = "console")]
pub fn raw_console(ctx: RawTracePointContext) -> i32 {
    marker(ctx.arg(0), ctx.arg(1));
    0
}

/// Sends the line at `src` (at most `len` bytes) if it is a test marker.
#[inline(always)]
fn marker(src: u64, len: u64) {
    let mut head = [0u8; 12];
    // SAFETY: the helper checks the address and bounds the copy.
    if len < head.len() as u64
        || unsafe { bpf_probe_read_kernel_buf(src as *const u8, &mut head) }.is_err()
        || &head != CONSOLE_PREFIX
    {
        return;
    }
    let Some(mut entry) = reserve::<Console>() else {
        return;
    };
    let rec = record(&mut entry);
    // SAFETY: as above; the copy is NUL-terminated within `text`.
    if unsafe { bpf_probe_read_kernel_str_bytes(src as *const u8, &mut rec.text) }.is_err() {
        rec.text[0] = 0;
    }
    // What follows the line in the kernel's buffer is not part of it.
    if len < rec.text.len() as u64 {
        let end = len as usize;
        if end < rec.text.len() {
            rec.text[end] = 0;
        }
    }
    submit(entry);
}
