//! tracer's filesystem-side model: the wire records the kernel side sends, and (with `std`)
//! the deterministic engine that turns them into mounts, files, holders, deferred work,
//! verdicts and leak reports. No kernel access happens here.
#![cfg_attr(not(feature = "std"), no_std)]

pub mod wire;

#[cfg(feature = "std")]
pub mod event;
