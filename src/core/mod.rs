//! The host-agnostic core: no FFI, no threads, no globals, no I/O. Tested without any PBX.
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod anchor;
pub mod audio;
pub mod capture;
pub mod config;
pub mod digit;
pub mod dtmf;
pub mod events;
pub mod g711;
pub mod guard;
pub mod notch;
pub mod payment;
pub mod secret;
pub mod suppress;
