//! FreeSWITCH adapter: `mod_secure_pay`.
//!
//! - [`mod_secure_pay_module_interface`]: the module table the loader looks up (built from the
//!   bindgen type and the headers' `SWITCH_API_VERSION`);
//! - load: logger, config (`secure_pay.conf`), event subclasses, connector, apps and API;
//! - runtime (FreeSWITCH's module thread): the dispatcher that feeds digits to capture
//!   sessions, runs timers and fires events (never on the media thread);
//! - shutdown: stop every secure channel, connector, subclasses.
//!
//! Files: `channel.rs` (media bug, DTMF hook, per-channel state), `commands.rs` (apps, API),
//! `conf.rs` (XML config), `events.rs` (CUSTOM events), `log.rs` (logger), `util.rs`.

mod channel;
mod commands;
mod conf;
mod events;
mod log;
mod util;

use std::ffi::c_int;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex, RwLock};
use std::time::Duration;

use crate::connector::Connector;
use crate::core::config::Config;
use crate::core::payment::{PaymentOutcome, PaymentRequest};
use crate::ffi::freeswitch as fs;
use crate::host::guard;

/// The table FreeSWITCH's loader finds by name (`<file name without .so>_module_interface`).
/// Same fields `SWITCH_MODULE_DEFINITION` fills in; the type comes from the installed headers
/// and the version from their `SWITCH_API_VERSION`.
#[no_mangle]
#[used]
pub static mod_secure_pay_module_interface: fs::switch_loadable_module_function_table_t =
    fs::switch_loadable_module_function_table_t {
        switch_api_version: fs::SWITCH_API_VERSION as c_int,
        load: Some(mod_load),
        shutdown: Some(mod_shutdown),
        runtime: Some(mod_runtime),
        flags: fs::SMODF_NONE as _,
    };

static CONFIG: LazyLock<RwLock<Arc<Config>>> =
    LazyLock::new(|| RwLock::new(Arc::new(Config::default())));
static CONNECTOR: Mutex<Option<Connector>> = Mutex::new(None);
static SHUTTING_DOWN: AtomicBool = AtomicBool::new(false);

/// The configuration new secure sessions start from.
pub fn config() -> Arc<Config> {
    Arc::clone(&CONFIG.read().unwrap_or_else(|p| p.into_inner()))
}

/// Hands a payment request to the module's connector. `Err` carries a stable error code.
pub fn submit(
    cfg: &Config,
    req: Box<PaymentRequest>,
    done: Box<dyn FnOnce(PaymentOutcome) + Send>,
) -> Result<(), &'static str> {
    let Some(profile) = cfg.capture.connector.as_ref() else {
        return Err("no-connector");
    };
    let guard = CONNECTOR.lock().unwrap_or_else(|p| p.into_inner());
    let Some(conn) = guard.as_ref() else {
        return Err("connector-down");
    };
    conn.submit(profile, req, done).map_err(|e| match e {
        crate::connector::SubmitError::QueueFull => "connector-busy",
        crate::connector::SubmitError::ShutDown => "connector-down",
    })
}

unsafe extern "C" fn mod_load(
    module_interface: *mut *mut fs::switch_loadable_module_interface_t,
    pool: *mut fs::switch_memory_pool_t,
) -> fs::switch_status_t {
    guard("module load", fs::SWITCH_STATUS_GENERR, || {
        log::install();
        if module_interface.is_null() || pool.is_null() {
            return fs::SWITCH_STATUS_GENERR;
        }
        // SAFETY: `pool` is the module pool the loader passes; the name is a 'static literal.
        let mi = unsafe {
            fs::switch_loadable_module_create_module_interface(pool, c"mod_secure_pay".as_ptr())
        };
        if mi.is_null() {
            return fs::SWITCH_STATUS_GENERR;
        }
        // SAFETY: the loader's out-parameter, checked non-NULL above.
        unsafe { *module_interface = mi };
        SHUTTING_DOWN.store(false, Ordering::Release);

        let cfg = conf::load();
        *CONFIG.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(cfg);
        events::reserve();
        *CONNECTOR.lock().unwrap_or_else(|p| p.into_inner()) = Some(Connector::start());
        // SAFETY: `module_interface` now points to the interface created above.
        if unsafe { commands::register(module_interface) }.is_err() {
            return fs::SWITCH_STATUS_GENERR;
        }
        ::log::info!("secure_pay: mod_secure_pay loaded");
        fs::SWITCH_STATUS_SUCCESS
    })
}

unsafe extern "C" fn mod_shutdown() -> fs::switch_status_t {
    guard("module shutdown", fs::SWITCH_STATUS_SUCCESS, || {
        SHUTTING_DOWN.store(true, Ordering::Release);
        channel::stop_all();
        // Join the payment workers (bounded) before the event subclasses go: a late outcome
        // is still fired. Workers left running (a blocking DNS lookup) are logged; FreeSWITCH
        // cannot refuse an unload, see SAFETY.md.
        let conn = CONNECTOR.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(c) = conn {
            let left = c.shutdown();
            if left > 0 {
                ::log::error!(
                    "secure_pay: {left} payment worker(s) still running at unload (bounded wait over)"
                );
            }
        }
        events::free();
        ::log::info!("secure_pay: mod_secure_pay shut down");
        fs::SWITCH_STATUS_SUCCESS
    })
}

/// The module's runtime thread (FreeSWITCH calls it again until it returns TERM): services
/// every secure channel when woken (digit, outcome) and at least every 50 ms (timers).
unsafe extern "C" fn mod_runtime() -> fs::switch_status_t {
    guard("module runtime", fs::SWITCH_STATUS_SUCCESS, || {
        while !SHUTTING_DOWN.load(Ordering::Acquire) {
            channel::wait_for_work(Duration::from_millis(50));
            for ch in channel::active() {
                if SHUTTING_DOWN.load(Ordering::Acquire) {
                    break;
                }
                guard("dispatcher", (), || ch.service());
            }
        }
        fs::SWITCH_STATUS_TERM
    })
}
