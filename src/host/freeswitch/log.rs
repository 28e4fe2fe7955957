//! The `log` crate backend: every record goes to `switch_log_printf` through the shim with a
//! `"%s"` format. Messages never contain captured digits (the core does not log; the adapter
//! logs only fixed texts, uuids, field names and counts).

use std::ffi::CString;
use std::sync::atomic::{AtomicU8, Ordering};

use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::ffi::freeswitch as fs;

/// FreeSWITCH's console level at load (SWITCH_LOG_*), refreshed on reload.
static HOST_LEVEL: AtomicU8 = AtomicU8::new(fs::SWITCH_LOG_DEBUG as u8);

struct FsLogger;

static LOGGER: FsLogger = FsLogger;

fn fs_level(l: Level) -> u32 {
    match l {
        Level::Error => fs::SWITCH_LOG_ERROR as u32,
        Level::Warn => fs::SWITCH_LOG_WARNING as u32,
        Level::Info => fs::SWITCH_LOG_INFO as u32,
        Level::Debug | Level::Trace => fs::SWITCH_LOG_DEBUG as u32,
    }
}

impl Log for FsLogger {
    fn enabled(&self, m: &Metadata) -> bool {
        fs_level(m.level()) <= u32::from(HOST_LEVEL.load(Ordering::Relaxed))
    }

    fn log(&self, r: &Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let msg = CString::new(format!("{}\n", r.args()).replace('\0', "?")).unwrap_or_default();
        let file = CString::new(r.file().unwrap_or("mod_secure_pay")).unwrap_or_default();
        let line = r.line().unwrap_or(0) as i32;
        // SAFETY: all pointers are valid NUL-terminated strings for the duration of the call;
        // the shim calls switch_log_printf with a constant "%s" format, so `msg` is data.
        unsafe {
            fs::sp_fs_log(
                file.as_ptr(),
                c"secure_pay".as_ptr(),
                line,
                std::ptr::null(),
                fs_level(r.level()) as i32,
                msg.as_ptr(),
            )
        };
    }

    fn flush(&self) {}
}

/// Installs the logger (a second install after a reload is fine). FreeSWITCH filters by its
/// own level inside switch_log_printf; there is no read-only getter for it (SCSC_LOGLEVEL with
/// -1 would SET it to "disabled"), so every level up to debug is forwarded.
pub fn install() {
    HOST_LEVEL.store(fs::SWITCH_LOG_DEBUG as u8, Ordering::Relaxed);
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(LevelFilter::Debug);
}
