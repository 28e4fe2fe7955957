//! Asterisk 22 adapter: `res_secure_pay.so`.
//!
//! - `c_shim/ast_shim.c` holds `AST_MODULE_INFO`, the framehook trampoline and wrappers for the
//!   macro-only APIs; it calls the `sp_rs_*` functions defined here.
//! - [`channel`]: per-channel state (capture session + masker) behind a READ framehook on the
//!   customer channel, its datastore, start/stop, and the media callbacks.
//! - [`control`]: the dialplan applications `SecurePay` / `StopSecurePay` and the AMI action
//!   `SecurePay`.
//! - [`events`]: publishing core events as AMI `SecurePay<Name>` events.
//! - [`settings`]: `secure_pay.conf`, CLI `securepay show channels|settings`.
//! - [`logger`]: the `log::Log` implementation writing to Asterisk's logger.
//!
//! Every function Asterisk calls goes through [`crate::host::guard`]. Threads: see SAFETY.md.

pub mod channel;
pub mod control;
pub mod events;
pub mod logger;
pub mod recording;
pub mod settings;

use std::ffi::{c_char, c_int, CStr, CString};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::connector::Connector;
use crate::ffi::asterisk as ffi;
use crate::host::guard;

/// Unix time in milliseconds: the capture engine's clock (it uses differences for timeouts
/// and the calendar month for expiry checks).
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The payment connector: started at load, shut down at unload.
static CONNECTOR: Mutex<Option<Connector>> = Mutex::new(None);
/// Connectors whose workers did not finish within an unload's bounded wait (unload was
/// refused then); joined by the next unload.
static LEFTOVER: Mutex<Vec<Connector>> = Mutex::new(Vec::new());
static LOADED: AtomicBool = AtomicBool::new(false);

/// The timer thread: ticks every session about once a second so timeouts fire even on a
/// channel that carries no audio. Started at load, stopped and joined at unload.
static TICKER: Mutex<Option<std::thread::JoinHandle<()>>> = Mutex::new(None);
static TICKER_STOP: AtomicBool = AtomicBool::new(false);

fn start_ticker() {
    let Ok(mut g) = TICKER.lock() else { return };
    if g.is_some() {
        return;
    }
    TICKER_STOP.store(false, Ordering::SeqCst);
    let spawned = std::thread::Builder::new()
        .name("secure_pay-ticker".into())
        .spawn(|| {
            let mut n = 0u32;
            while !TICKER_STOP.load(Ordering::SeqCst) {
                std::thread::sleep(std::time::Duration::from_millis(250));
                n = n.wrapping_add(1);
                if n % 4 == 0 {
                    guard("ticker", (), channel::tick_all);
                }
                // recording=pause: resume ended sessions within 250 ms; re-mute live ones
                guard("ticker", (), || recording::tick(n % 4 == 0));
            }
        });
    match spawned {
        Ok(h) => *g = Some(h),
        Err(e) => log::error!(
            "secure_pay: cannot start the timer thread ({e}); timeouts only fire on media frames"
        ),
    }
}

fn stop_ticker() {
    TICKER_STOP.store(true, Ordering::SeqCst);
    let h = match TICKER.lock() {
        Ok(mut g) => g.take(),
        Err(p) => p.into_inner().take(),
    };
    if let Some(h) = h {
        let _ = h.join();
    }
}

pub(crate) fn with_connector<R>(f: impl FnOnce(Option<&Connector>) -> R) -> R {
    match CONNECTOR.lock() {
        Ok(g) => f(g.as_ref()),
        Err(p) => f(p.into_inner().as_ref()),
    }
}

/// Converts a C string from Asterisk into `&str`; NULL or invalid UTF-8 gives `None`.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string valid for the returned lifetime.
pub(crate) unsafe fn cstr<'a>(p: *const c_char) -> Option<&'a str> {
    if p.is_null() {
        return None;
    }
    // SAFETY: non-NULL and NUL-terminated per this function's contract.
    unsafe { CStr::from_ptr(p) }.to_str().ok()
}

/// A `CString` with interior NULs removed (values from configs or channels never have them,
/// but a header must never be cut or refused because of one).
pub(crate) fn c_string(s: &str) -> CString {
    CString::new(s.replace('\0', "")).unwrap_or_default()
}

const APP_START: &CStr = c"SecurePay";
const APP_STOP: &CStr = c"StopSecurePay";
const AMI_ACTION: &CStr = c"SecurePay";

#[no_mangle]
pub extern "C" fn sp_rs_load() -> c_int {
    guard("load", -1, || {
        crate::host::install_panic_hook();
        logger::install();
        if let Err(e) = settings::load(false) {
            log::error!("secure_pay: {e}; module not loaded");
            return -1;
        }
        match CONNECTOR.lock() {
            Ok(mut g) => {
                if g.is_none() {
                    *g = Some(Connector::start());
                }
            }
            Err(_) => return -1,
        }
        // SAFETY: called from the module's load callback (loader thread) with static NUL-terminated
        // names and function pointers that stay valid until unload unregisters them;
        // sp_ast_self() is this module's handle.
        let rc = unsafe {
            let module = ffi::sp_ast_self();
            // NULL synopsis/description: Asterisk takes the documentation from the module's
            // XML (dialplan/asterisk/secure_pay-en_US.xml installed as
            // <astdatadir>/documentation/thirdparty/secure_pay-en_US.xml).
            let mut rc = ffi::ast_register_application2(
                APP_START.as_ptr(),
                Some(control::app_secure_pay),
                std::ptr::null(),
                std::ptr::null(),
                module.cast(),
            );
            rc |= ffi::ast_register_application2(
                APP_STOP.as_ptr(),
                Some(control::app_stop_secure_pay),
                std::ptr::null(),
                std::ptr::null(),
                module.cast(),
            );
            rc |= ffi::ast_manager_register2(
                AMI_ACTION.as_ptr(),
                (ffi::EVENT_FLAG_CALL | ffi::EVENT_FLAG_SYSTEM) as c_int,
                Some(control::ami_secure_pay),
                module,
                std::ptr::null(),
                std::ptr::null(),
            );
            rc |= ffi::sp_ast_cli_register();
            rc |= ffi::sp_ast_func_register();
            rc
        };
        if rc != 0 {
            log::error!("secure_pay: registering applications/AMI/CLI failed");
            unregister();
            // The loader unmaps a module whose load failed: no worker of ours may outlive it
            // (idle workers join at once).
            if !join_connectors() {
                log::error!("secure_pay: a payment worker outlived the failed load");
            }
            return -1;
        }
        start_ticker();
        // (a library the loader kept mapped after an unload starts again here)
        channel::allow_starts();
        LOADED.store(true, Ordering::SeqCst);
        log::info!("secure_pay: loaded");
        0
    })
}

fn unregister() {
    // SAFETY: loader thread; unregistering names that may or may not be registered is allowed.
    unsafe {
        ffi::ast_unregister_application(APP_START.as_ptr());
        ffi::ast_unregister_application(APP_STOP.as_ptr());
        ffi::ast_manager_unregister(AMI_ACTION.as_ptr());
        ffi::sp_ast_cli_unregister();
        ffi::sp_ast_func_unregister();
    }
}

#[no_mangle]
pub extern "C" fn sp_rs_unload() -> c_int {
    guard("unload", -1, || {
        // No start may attach a hook from here on (the connectors' bounded wait below can
        // take seconds, and the loader unmaps the code once we return 0).
        if !channel::quiesce_starts() {
            channel::allow_starts();
            log::warn!("secure_pay: unload refused: a secure mode start is still under way");
            return -1;
        }
        let live = channel::live_hooks();
        if live > 0 {
            channel::allow_starts();
            // The module's code runs inside those hooks: never pull it out from under them.
            log::warn!(
                "secure_pay: unload refused: {live} channel(s) still have secure mode hooks; stop \
                 them (StopSecurePay / AMI SecurePay Command: stop) or hang up first"
            );
            return -1;
        }
        if !join_connectors() {
            channel::allow_starts();
            log::error!(
                "secure_pay: unload refused: a payment hand-off is still running after the \
                 bounded wait; try again later"
            );
            return -1;
        }
        unregister();
        stop_ticker();
        // no hook is live: every paused recording is resumed before the code goes away
        recording::resume_ended();
        LOADED.store(false, Ordering::SeqCst);
        log::info!("secure_pay: unloaded");
        crate::host::remove_panic_hook();
        0
    })
}

/// Stops the connector and joins its workers with a bounded wait (see
/// [`Connector::shutdown_bounded`]: queued jobs fail with `shutdown`, exchanges still waiting
/// after `shutdown_wait` are broken and reported `unknown`; every outcome is published before
/// its worker ends). True when every worker thread was joined; otherwise the module's code is
/// still running on a worker, so unload must be refused: the stopped connector is kept for
/// the next attempt and a fresh one takes new payments.
fn join_connectors() -> bool {
    let mut leftover = LEFTOVER.lock().unwrap_or_else(|p| p.into_inner());
    leftover.retain_mut(|c| c.shutdown_bounded() > 0);
    let mut g = CONNECTOR.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(mut c) = g.take() {
        if c.shutdown_bounded() > 0 {
            leftover.push(c);
            *g = Some(Connector::start());
        }
    }
    leftover.is_empty()
}

#[no_mangle]
pub extern "C" fn sp_rs_reload() -> c_int {
    guard("reload", -1, || match settings::load(true) {
        Ok(()) => 0,
        Err(e) => {
            log::error!("secure_pay: reload failed, keeping the previous settings: {e}");
            -1
        }
    })
}
