//! Syscall handlers on two routes. The classic one attaches each handler to its own
//! `syscalls/sys_{enter,exit}_*` tracepoint, a perf event whose detach waits for RCU grace
//! periods one after another under the kernel's `event_mutex` (27 of them took over a
//! second at exit). The other attaches two raw tracepoints, `raw_syscalls:sys_enter` and
//! `sys_exit`, whose programs tail-call the handler a table holds at the syscall's number;
//! a raw tracepoint detaches without waiting. A handler reads its arguments through
//! [`SysCtx`], which both routes implement.

use aya_ebpf::{
    macros::{map, raw_tracepoint},
    maps::ProgramArray,
    programs::{RawTracePointContext, TracePointContext},
};
use tracer_fs::wire::{SYSCALL_SLOTS, btf_off, tp_field};

use crate::{
    config::{btf, field, tp},
    kernel::{current_member, current_regs_member, read},
};

/// The handlers of syscall entries, by syscall number (userspace fills it).
#[map]
pub static SYS_ENTER_PROGS: ProgramArray = ProgramArray::with_max_entries(SYSCALL_SLOTS, 0);

/// The handlers of syscall exits, by syscall number.
#[map]
pub static SYS_EXIT_PROGS: ProgramArray = ProgramArray::with_max_entries(SYSCALL_SLOTS, 0);

/// What a syscall handler reads.
pub trait SysCtx {
    /// Field `f` (`tp_field::*`) of the classic `syscalls/sys_{enter,exit}_*` record: an
    /// argument at entry, `ret` at exit; 0 where the kernel has no such field.
    fn arg(&self, f: usize) -> u64;
}

impl SysCtx for TracePointContext {
    #[inline(always)]
    fn arg(&self, f: usize) -> u64 {
        field::<u64>(self, f)
    }
}

/// A syscall entry seen through `raw_syscalls:sys_enter`: its saved registers.
pub struct RawEnter {
    regs: u64,
}

/// A syscall exit seen through `raw_syscalls:sys_exit`: its return value.
pub struct RawExit {
    ret: i64,
}

impl RawEnter {
    /// `None` for a 32-bit syscall (its number named another syscall).
    #[inline(always)]
    pub fn of(ctx: &RawTracePointContext) -> Option<RawEnter> {
        (!compat()).then(|| RawEnter { regs: ctx.arg(0) })
    }
}

impl RawExit {
    #[inline(always)]
    pub fn of(ctx: &RawTracePointContext) -> Option<RawExit> {
        (!compat()).then(|| RawExit { ret: ctx.arg(1) })
    }
}

impl SysCtx for RawEnter {
    #[inline(always)]
    fn arg(&self, f: usize) -> u64 {
        // A syscall record has `__syscall_nr` at 8 and the arguments from 16, eight bytes
        // each: the format's offset says which argument the field is.
        let Some(off) = tp(f) else { return 0 };
        let Some(reg) = arg_reg(off.wrapping_sub(16) / 8) else {
            return 0;
        };
        read::<u64>(self.regs.wrapping_add(reg)).unwrap_or(0)
    }
}

impl SysCtx for RawExit {
    #[inline(always)]
    fn arg(&self, f: usize) -> u64 {
        if f == tp_field::SYS_RET {
            self.ret as u64
        } else {
            0
        }
    }
}

/// Where argument `i` of a syscall sits in its saved `struct pt_regs`.
#[inline(always)]
fn arg_reg(i: usize) -> Option<u64> {
    match i {
        0 => btf(btf_off::PT_REGS_SYSCALL_ARG0),
        1 => btf(btf_off::PT_REGS_SYSCALL_ARG1),
        2..=5 => btf(btf_off::PT_REGS_SYSCALL_ARG2 + i - 2),
        _ => None,
    }
}

/// `TS_COMPAT` (arch/x86/include/asm/thread_info.h): a 32-bit syscall is running.
const TS_COMPAT: u32 = 0x0002;

#[inline(always)]
fn compat() -> bool {
    current_member::<u32>(btf_off::THREAD_INFO_STATUS).is_some_and(|s| s & TS_COMPAT != 0)
}

#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn raw_sys_enter(ctx: RawTracePointContext) -> i32 {
    let nr: i64 = ctx.arg(1);
    if (0..SYSCALL_SLOTS as i64).contains(&nr) {
        // SAFETY: the call jumps to the handler with this context, or returns where the
        // table has none.
        unsafe { SYS_ENTER_PROGS.tail_call(&ctx, nr as u32) };
    }
    0
}

#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn raw_sys_exit(ctx: RawTracePointContext) -> i32 {
    // Every syscall's exit in the system comes here: its number is read with a plain load
    // from the saved registers (the same the tracepoint passes), not a helper call.
    let Some(nr) = current_regs_member::<i64>(btf_off::PT_REGS_SYSCALL_NR) else {
        return 0;
    };
    if (0..SYSCALL_SLOTS as i64).contains(&nr) {
        // SAFETY: as above.
        unsafe { SYS_EXIT_PROGS.tail_call(&ctx, nr as u32) };
    }
    0
}

/// A syscall handler's two programs: `$tp` for its classic tracepoint, `$raw` for the
/// dispatch table; `$body` takes a `&impl SysCtx`.
macro_rules! sys_programs {
    (enter $tp:ident, $raw:ident => $body:expr) => {
        $crate::sys::sys_programs!(@ RawEnter, $tp, $raw, $body);
    };
    (exit $tp:ident, $raw:ident => $body:expr) => {
        $crate::sys::sys_programs!(@ RawExit, $tp, $raw, $body);
    };
    (@ $side:ident, $tp:ident, $raw:ident, $body:expr) => {
        #[aya_ebpf::macros::tracepoint]
        pub fn $tp(ctx: aya_ebpf::programs::TracePointContext) -> u32 {
            ($body)(&ctx)
        }
        #[aya_ebpf::macros::raw_tracepoint]
        pub fn $raw(ctx: aya_ebpf::programs::RawTracePointContext) -> i32 {
            if let Some(s) = $crate::sys::$side::of(&ctx) {
                ($body)(&s);
            }
            0
        }
    };
}
pub(crate) use sys_programs;
