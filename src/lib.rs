//! secure_pay: DTMF masking and secure card capture inside FreeSWITCH and Asterisk.
//!
//! Layout (a newcomer finds any behaviour in one obvious file):
//! - [`core`]: host-agnostic, `#![forbid(unsafe_code)]`, tested without any PBX:
//!   DSP (`core::dtmf` detector, `core::suppress` masker, `core::g711`), capture
//!   (`core::capture`: fields, validation, masking, the session state machine), events as plain
//!   data (`core::events`) and configuration (`core::config`).
//! - [`connector`]: the payment hand-off (HTTPS POST on a worker thread). Safe Rust, no FFI.
//! - [`wav`]: 16-bit PCM WAV reading/writing for the offline CLI and tests.
//! - `host` (behind the `asterisk` / `freeswitch` features): the thin adapters. All `unsafe` and
//!   FFI lives there and in `ffi`; every host callback goes through `host::guard`.

#[cfg(panic = "abort")]
compile_error!("secure_pay needs panic = \"unwind\": host callbacks rely on catch_unwind");

#[cfg(all(feature = "asterisk", feature = "freeswitch"))]
compile_error!("build one host adapter at a time: --features asterisk OR --features freeswitch");

pub mod connector;
pub mod core;
pub mod gen;
pub mod panic_hook;
pub mod wav;

#[cfg(any(feature = "asterisk", feature = "freeswitch"))]
mod ffi;
#[cfg(any(feature = "asterisk", feature = "freeswitch"))]
mod host;
