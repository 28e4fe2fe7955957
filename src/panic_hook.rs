//! The module's panic hook: no panic message or source location from our code reaches the
//! PBX's stderr or log. Installed by both adapters at module load, removed at unload (see
//! `host::install_panic_hook`). No FFI; tested in `tests/panic_hook.rs`.

use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// The hook that was in place before [`install`] (type-erased: restored by
/// [`remove`]).
static PREVIOUS_HOOK: Mutex<Option<Box<dyn Any + Send>>> = Mutex::new(None);
/// Panics seen by our hook (for tests and `securepay show settings`-style diagnostics).
static PANICS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static IN_HOOK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Installs the module's panic hook (call at module load, before anything else).
///
/// Rust's default hook prints the panic message and its source location to stderr, which the
/// PBX sends to its console and log. A message can carry data (a formatted value), so our hook
/// prints neither: it counts the panic and logs one fixed line. `host::guard` then fails closed.
/// Each Rust module links its own copy of std, so this hook only sees panics of this module.
/// Installing twice keeps the first previous hook.
pub fn install() {
    let mut prev = PREVIOUS_HOOK.lock().unwrap_or_else(|p| p.into_inner());
    let old = std::panic::take_hook();
    if prev.is_none() {
        *prev = Some(Box::new(old));
    }
    std::panic::set_hook(Box::new(|_info| {
        PANICS.fetch_add(1, Ordering::Relaxed);
        // A panic inside the logger must not recurse.
        let again = IN_HOOK.with(|f| f.replace(true));
        if !again {
            log::error!("secure_pay: internal error (panic); message and location suppressed");
            IN_HOOK.with(|f| f.set(false));
        }
    }));
}

/// Puts back the hook found by [`install`] (call at module unload, after every
/// thread of ours has stopped). Without an install it does nothing.
pub fn remove() {
    let mut prev = PREVIOUS_HOOK.lock().unwrap_or_else(|p| p.into_inner());
    let Some(saved) = prev.take() else { return };
    let ours = std::panic::take_hook();
    match downcast_like(&ours, saved) {
        Ok(old) => std::panic::set_hook(old),
        // Cannot happen (same type); keep ours rather than the printing default.
        Err(saved) => {
            std::panic::set_hook(ours);
            *prev = Some(saved);
        }
    }
}

/// `b` as the type of `_like` (the hook box type, never named: it changed across Rust versions).
fn downcast_like<T: 'static>(_like: &T, b: Box<dyn Any + Send>) -> Result<T, Box<dyn Any + Send>> {
    b.downcast::<T>().map(|t| *t)
}

/// Panics seen by the module's hook since load.
pub fn panics_seen() -> u64 {
    PANICS.load(Ordering::Relaxed)
}
