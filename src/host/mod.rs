//! Thin PBX adapters. Everything the host calls enters through [`guard`].

use std::panic::{catch_unwind, AssertUnwindSafe};

pub use crate::panic_hook::{install as install_panic_hook, remove as remove_panic_hook};

#[cfg(feature = "asterisk")]
pub mod asterisk;
#[cfg(feature = "freeswitch")]
pub mod freeswitch;

/// Runs a host callback body, catching any panic so it never unwinds into C.
///
/// On a panic it logs a fixed message (never the panic payload, which could in theory carry
/// data) and returns `fail`: every caller picks a `fail` value that keeps secure mode closed
/// (e.g. "drop this frame / mute", "refuse the command").
pub fn guard<R>(what: &'static str, fail: R, body: impl FnOnce() -> R) -> R {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(r) => r,
        Err(_) => {
            log::error!("secure_pay: internal error in {what}; failing closed");
            fail
        }
    }
}
