//! The engine configuration the golden event streams were written for: the addresses of
//! the work functions they name. One definition for fs's tests and tracer's (report.rs and
//! tui_render.rs include this file with `#[path]`).
#![allow(dead_code)]

use tracer_fs::EngineConfig;

pub const DELAYED_FPUT: u64 = 0xffff_ffff_8145_6780;
pub const IO_RING_EXIT_WORK: u64 = 0xffff_ffff_8178_9ab0;
pub const IO_FALLBACK_REQ_FUNC: u64 = 0xffff_ffff_8178_8c40;
/// `&delayed_fput_work.work` (a static delayed work).
pub const DELAYED_FPUT_WORK: u64 = 0xffff_ffff_8300_1d40;
pub const EXIT_WORK_OFF: u64 = 0x318;
pub const FALLBACK_WORK_OFF: u64 = 0x2c8;

pub fn config() -> EngineConfig {
    EngineConfig {
        symbols: [
            (DELAYED_FPUT, "delayed_fput".to_string()),
            (IO_RING_EXIT_WORK, "io_ring_exit_work".to_string()),
            (IO_FALLBACK_REQ_FUNC, "io_fallback_req_func".to_string()),
        ]
        .into_iter()
        .collect(),
        delayed_fput: Some(DELAYED_FPUT),
        io_ring_exit_work: Some(IO_RING_EXIT_WORK),
        io_fallback_req_func: Some(IO_FALLBACK_REQ_FUNC),
        ring_exit_work_offset: Some(EXIT_WORK_OFF),
        ring_fallback_work_offset: Some(FALLBACK_WORK_OFF),
        ..Default::default()
    }
}
