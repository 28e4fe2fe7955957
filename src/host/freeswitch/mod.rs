//! FreeSWITCH adapter: `mod_secure_pay`.
//!
//! - [`mod_secure_pay_module_interface`]: the module table the loader looks up (built from the
//!   bindgen type and the headers' `SWITCH_API_VERSION`);
//! - load: logger, config (`secure_pay.conf`, re-read at `reloadxml`), event subclasses,
//!   connector, apps and APIs (with fs_cli completion);
//! - runtime (FreeSWITCH's module thread): the dispatcher that feeds digits to capture
//!   sessions, runs timers and fires events (never on the media thread);
//! - shutdown: stop every secure channel, connector, subclasses.
//!
//! Files: `channel.rs` (media bug, DTMF hook, per-channel state), `watch.rs` (did FreeSWITCH run
//! our media bug on every frame?), `recording.rs` (native taps, `recording=pause`), `inbox.rs`
//! (digit queue), `commands.rs` (apps, API), `conf.rs` (XML config), `events.rs` (CUSTOM
//! events), `log.rs` (logger), `util.rs`.

mod channel;
mod commands;
mod conf;
mod events;
mod inbox;
mod log;
mod recording;
mod util;
mod watch;

use std::ffi::c_int;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
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
/// Our module interface (its rwlock is read-locked by every secure channel, see
/// [`module_rwlock`]).
static MODULE_IFACE: AtomicPtr<fs::switch_loadable_module_interface_t> =
    AtomicPtr::new(std::ptr::null_mut());
/// Bumped by every load: a runtime thread left over from a forced unload (see `mod_shutdown`)
/// hands over to the new one.
static GENERATION: AtomicU64 = AtomicU64::new(0);
/// A forced unload found secure channels and left them running (module kept mapped).
static ORPHANED: AtomicBool = AtomicBool::new(false);

/// The rwlock of our module interface, or NULL before load. A secure channel holds a read lock
/// on it, so the loader's busy check (`unload`/`reload` without `-f`: "Module in use") refuses
/// to unload the module while any channel is secure.
pub fn module_rwlock() -> *mut fs::switch_thread_rwlock_t {
    let mi = MODULE_IFACE.load(Ordering::Acquire);
    if mi.is_null() {
        return std::ptr::null_mut();
    }
    // SAFETY: `mi` is the interface the loader gave us at load; it lives in the module pool,
    // which is only destroyed after a successful (non-NOUNLOAD) shutdown.
    unsafe { (*mi).rwlock }
}

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
        crate::host::install_panic_hook();
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
        ORPHANED.store(false, Ordering::Release);
        GENERATION.fetch_add(1, Ordering::AcqRel);

        conf::apply("load");
        conf::watch();
        recording::watch_bugs();
        events::reserve();
        // Kept if a forced unload left secure channels running (their payments use it).
        CONNECTOR
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert_with(Connector::start);
        // Before the commands exist: a start needs the interface's lock (channel::attach).
        MODULE_IFACE.store(mi, Ordering::Release);
        // SAFETY: `module_interface` now points to the interface created above.
        if unsafe { commands::register(module_interface) }.is_err() {
            MODULE_IFACE.store(std::ptr::null_mut(), Ordering::Release);
            return fs::SWITCH_STATUS_GENERR;
        }
        ::log::info!("secure_pay: mod_secure_pay loaded");
        fs::SWITCH_STATUS_SUCCESS
    })
}

unsafe extern "C" fn mod_shutdown() -> fs::switch_status_t {
    guard("module shutdown", fs::SWITCH_STATUS_NOUNLOAD, || {
        // `unload`/`reload` without -f never get here while a channel is secure (each holds a
        // read lock on the module interface). With -f we must not stop them: secure mode would
        // end and later keys would reach the agent. Keep them masking and dropping until they
        // end: NOUNLOAD keeps the module mapped and the runtime thread (dispatcher) running;
        // the loader neither joins it nor dlcloses.
        let live = channel::count();
        // SAFETY: reads the core's runtime flags (no pointer involved).
        let process_exit = unsafe { fs::switch_core_flags() } & fs::SCF_SHUTTING_DOWN != 0;
        // At process exit every call is being hung up: stop them and let the loader join.
        if live > 0 && !process_exit {
            ORPHANED.store(true, Ordering::Release);
            ::log::error!(
                "secure_pay: unloaded with {live} secure channel(s) up: they stay secure until they end; the module stays in memory"
            );
            return fs::SWITCH_STATUS_NOUNLOAD;
        }
        MODULE_IFACE.store(std::ptr::null_mut(), Ordering::Release);
        SHUTTING_DOWN.store(true, Ordering::Release);
        conf::unwatch();
        recording::unwatch_bugs();
        commands::unregister();
        channel::stop_all();
        // A channel we could not stop (its session already going away) still has our bug and
        // hooks until its hangup removes them: never let the loader dlclose under it.
        let mut unstopped = channel::count() > 0;
        // Join the payment workers (bounded) before the event subclasses go: a late outcome
        // is still fired. Workers left running (a blocking DNS lookup) keep the module in
        // memory (NOUNLOAD), see SAFETY.md.
        let conn = CONNECTOR.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(c) = conn {
            let left = c.shutdown();
            if left > 0 {
                ::log::error!(
                    "secure_pay: {left} payment worker(s) still running at unload (bounded wait over): the module stays in memory"
                );
                unstopped = true;
            }
        }
        events::free();
        ::log::info!("secure_pay: mod_secure_pay shut down");
        if unstopped {
            // The module stays in memory (NOUNLOAD): its panic hook stays valid and installed.
            fs::SWITCH_STATUS_NOUNLOAD
        } else {
            crate::host::remove_panic_hook();
            fs::SWITCH_STATUS_SUCCESS
        }
    })
}

/// The module's runtime thread (FreeSWITCH calls it again until it returns TERM): when woken
/// (digit, outcome, media or recording change) services the channels that were kicked, and
/// every secure channel at least every 50 ms (timers, media polls). Wake-ups are coalesced: a
/// wake-up within 20 ms of the last pass waits for the rest of those 20 ms, so with many calls
/// keying at once one pass serves the key presses of all of them (a key's events go out at
/// most 20 ms later; the media path never waits for this thread). A thread left over from a
/// forced unload keeps going until its channels end or a new load starts a new thread.
unsafe extern "C" fn mod_runtime() -> fs::switch_status_t {
    guard("module runtime", fs::SWITCH_STATUS_SUCCESS, || {
        const SWEEP: Duration = Duration::from_millis(50);
        // 50 loopback calls keying in-band: secure/plain 1.06 coalesced, 1.10 waking for every
        // key press (docs/performance.md, "the dispatcher wakes at most every 20 ms").
        const COALESCE: Duration = Duration::from_millis(20);
        let generation = GENERATION.load(Ordering::Acquire);
        let mut last_sweep = std::time::Instant::now();
        let mut last_pass = last_sweep;
        while !SHUTTING_DOWN.load(Ordering::Acquire)
            && GENERATION.load(Ordering::Acquire) == generation
        {
            if ORPHANED.load(Ordering::Acquire) && channel::count() == 0 {
                break;
            }
            let woken = channel::wait_for_work(SWEEP);
            if woken {
                if let Some(rest) = COALESCE.checked_sub(last_pass.elapsed()) {
                    std::thread::sleep(rest);
                }
            }
            last_pass = std::time::Instant::now();
            let channels = if !woken || last_sweep.elapsed() >= SWEEP {
                last_sweep = std::time::Instant::now();
                channel::sweep()
            } else {
                channel::kicked()
            };
            for ch in channels {
                if SHUTTING_DOWN.load(Ordering::Acquire) {
                    break;
                }
                guard("dispatcher", (), || ch.service());
            }
        }
        fs::SWITCH_STATUS_TERM
    })
}
