//! tracer's filesystem-side model: the wire records the kernel side sends, and (with `std`)
//! the deterministic engine that turns them into mounts, files, holders, deferred work,
//! verdicts and leak reports. No kernel access happens here.
//!
//! With `std`, the entry point is [`engine::Engine`]: build it from an
//! [`config::EngineConfig`], feed it [`event::Event`]s in order with
//! [`engine::Engine::apply`], print or serialize the [`verdict::Notice`]s it returns, and
//! query it for the TUI ([`engine::Engine::alive_on_mount`],
//! [`engine::Engine::mount_summaries`], [`engine::Engine::work_summaries`],
//! [`engine::Engine::stats`]).
#![cfg_attr(not(feature = "std"), no_std)]

pub mod wire;

#[cfg(feature = "std")]
pub mod event;

#[cfg(feature = "std")]
pub mod actor;
#[cfg(feature = "std")]
pub mod alloc;
#[cfg(feature = "std")]
pub mod config;
#[cfg(feature = "std")]
pub mod desc;
#[cfg(feature = "std")]
pub mod engine;
#[cfg(feature = "std")]
pub mod files;
#[cfg(feature = "std")]
pub mod leakcheck;
#[cfg(feature = "std")]
pub mod locks;
#[cfg(feature = "std")]
pub mod mounts;
#[cfg(feature = "std")]
pub mod pins;
#[cfg(feature = "std")]
pub mod reach;
#[cfg(feature = "std")]
pub mod rings;
#[cfg(feature = "std")]
pub mod space;
#[cfg(feature = "std")]
pub mod stats;
#[cfg(feature = "std")]
pub mod summary;
#[cfg(feature = "std")]
pub mod tasks;
#[cfg(feature = "std")]
pub mod text;
#[cfg(feature = "std")]
pub mod verdict;
#[cfg(feature = "std")]
pub mod work;

#[cfg(feature = "std")]
pub use config::{Caps, EngineConfig};
#[cfg(feature = "std")]
pub use engine::Engine;
#[cfg(feature = "std")]
pub use verdict::Notice;
