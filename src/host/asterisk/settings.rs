//! `secure_pay.conf` (Asterisk's own config format, read with `ast_config_load2`) and the CLI
//! commands `securepay show channels` / `securepay show settings`.
//!
//! Every variable of `[general]` is fed to [`Config::set`] as `key = value`; any other section
//! `[name]` is a connector profile of that name ([`Config::set_in_section`]). A bad value
//! refuses the load (module load declines) or the reload (previous settings stay), with the
//! core's error naming the key.

use std::ffi::{c_char, c_int, CString};
use std::fmt::Write;
use std::sync::{Arc, Mutex, RwLock};

use crate::core::config::Config;
use crate::ffi::asterisk as ffi;
use crate::host::asterisk::channel::REGISTRY;
use crate::host::asterisk::cstr;
use crate::host::guard;

pub const CONF_FILE: &str = "secure_pay.conf";

static CURRENT: RwLock<Option<Arc<Config>>> = RwLock::new(None);
/// The `(section, key, value)` triples of the loaded file, for `securepay show settings`.
static SHOWN: Mutex<Vec<(String, String, String)>> = Mutex::new(Vec::new());

struct Pending {
    cfg: Config,
    errors: Vec<String>,
    pairs: Vec<(String, String, String)>,
}

static PENDING: Mutex<Option<Pending>> = Mutex::new(None);

/// The settings sessions start from (a snapshot; a reload never changes a running session).
pub fn current() -> Arc<Config> {
    match CURRENT.read() {
        Ok(g) => g.clone().unwrap_or_default(),
        Err(p) => p.into_inner().clone().unwrap_or_default(),
    }
}

fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.contains("password") || k.contains("secret") || k.ends_with("key") || k.contains("token")
}

/// Loads (or, with `reload`, re-reads if changed) `secure_pay.conf`.
pub fn load(reload: bool) -> Result<(), String> {
    {
        let mut p = PENDING
            .lock()
            .map_err(|_| "settings lock poisoned".to_owned())?;
        *p = Some(Pending {
            cfg: Config::default(),
            errors: Vec::new(),
            pairs: Vec::new(),
        });
    }
    let file = CString::new(CONF_FILE).unwrap_or_default();
    // SAFETY: NUL-terminated file name; the shim calls sp_rs_config_pair synchronously on this
    // thread and destroys the parsed config before returning.
    let status = unsafe { ffi::sp_ast_config_load(file.as_ptr(), c_int::from(reload)) } as u32;
    let pending = PENDING
        .lock()
        .map_err(|_| "settings lock poisoned".to_owned())?
        .take();
    let Some(p) = pending else {
        return Err("settings were not collected".into());
    };
    match status {
        ffi::SP_AST_CONFIG_UNCHANGED => return Ok(()),
        ffi::SP_AST_CONFIG_INVALID => {
            return Err(format!("{CONF_FILE} is not a valid config file"))
        }
        ffi::SP_AST_CONFIG_MISSING => {
            log::info!("secure_pay: {CONF_FILE} not found; using built-in defaults");
        }
        _ => {}
    }
    let mut p = p;
    if p.errors.is_empty() {
        if let Err(e) = p.cfg.resolve() {
            p.errors.push(e.to_string());
        }
    }
    if !p.errors.is_empty() {
        return Err(format!("{CONF_FILE}: {}", p.errors.join("; ")));
    }
    if let Ok(mut g) = CURRENT.write() {
        *g = Some(Arc::new(p.cfg));
    }
    if let Ok(mut g) = SHOWN.lock() {
        *g = p.pairs;
    }
    if status == ffi::SP_AST_CONFIG_OK {
        log::info!("secure_pay: {CONF_FILE} loaded");
    }
    Ok(())
}

#[no_mangle]
pub extern "C" fn sp_rs_config_pair(
    section: *const c_char,
    key: *const c_char,
    value: *const c_char,
) {
    guard("config", (), || {
        // SAFETY: the shim passes the category and variable strings of the parsed config,
        // valid during this call.
        let (Some(section), Some(key), Some(value)) =
            (unsafe { cstr(section) }, unsafe { cstr(key) }, unsafe {
                cstr(value)
            })
        else {
            return;
        };
        let Ok(mut g) = PENDING.lock() else { return };
        let Some(p) = g.as_mut() else { return };
        if let Err(e) = p.cfg.set_in_section(section, key, value) {
            p.errors.push(format!("[{section}] {e}"));
        }
        let shown = if is_secret_key(key) {
            "********".to_owned()
        } else {
            value.to_owned()
        };
        p.pairs.push((section.to_owned(), key.to_owned(), shown));
    });
}

fn channels_text() -> String {
    let mut out = String::new();
    let reg = match REGISTRY.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    let _ = writeln!(
        out,
        "{:<40} {:<24} {:<10} {:<24} Entered (masked)",
        "Channel", "Uniqueid", "Last", "Field"
    );
    for s in reg.values() {
        let _ = writeln!(
            out,
            "{:<40} {:<24} {:<10} {:<24} {}",
            s.channel, s.uniqueid, s.last_event, s.field, s.entered
        );
    }
    let _ = writeln!(out, "{} channel(s) with secure mode hooks", reg.len());
    out
}

fn settings_text() -> String {
    let mut out = String::new();
    let _ = writeln!(out, "secure_pay settings ({CONF_FILE}; secrets hidden):");
    let shown = match SHOWN.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    if shown.is_empty() {
        let _ = writeln!(out, "  (no {CONF_FILE} values: built-in defaults)");
    }
    let mut last = "";
    for (sec, k, v) in shown.iter() {
        if sec != last {
            let _ = writeln!(out, "[{sec}]");
            last = sec;
        }
        let _ = writeln!(out, "  {k} = {v}");
    }
    out
}

#[no_mangle]
pub extern "C" fn sp_rs_cli_text(which: c_int) -> *mut c_char {
    guard("CLI", std::ptr::null_mut(), || {
        let text = match which as u32 {
            ffi::SP_AST_CLI_SHOW_CHANNELS => channels_text(),
            ffi::SP_AST_CLI_SHOW_SETTINGS => settings_text(),
            _ => return std::ptr::null_mut(),
        };
        crate::host::asterisk::c_string(&text).into_raw()
    })
}

#[no_mangle]
pub extern "C" fn sp_rs_free_text(text: *mut c_char) {
    guard("CLI", (), || {
        if !text.is_null() {
            // SAFETY: `text` came from CString::into_raw in sp_rs_cli_text and is freed once.
            drop(unsafe { CString::from_raw(text) });
        }
    });
}
