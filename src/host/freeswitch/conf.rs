//! `autoload_configs/secure_pay.conf.xml` → [`Config`]: read at load and again after every
//! `reloadxml` (the core's RELOADXML event; `reload mod_secure_pay` also re-reads it):
//!
//! ```xml
//! <configuration name="secure_pay.conf" description="secure_pay">
//!   <settings>
//!     <param name="fields" value="payment-card-number,expiration-date,security-code"/>
//!     <param name="mode" value="beep"/>
//!   </settings>
//!   <connectors>
//!     <connector name="stripe">
//!       <param name="url" value="https://pay.example.com/charge"/>
//!     </connector>
//!   </connectors>
//! </configuration>
//! ```
//!
//! Every `<param>` is one `Config::set` pair (connector params go through
//! `Config::set_connector`), then `Config::resolve` checks the keys against each other.
//! All or nothing: a file with any bad key or a failed cross-key check is refused as a whole;
//! the previous settings stay in force and every bad key is logged by name. A new setting
//! applies to secure sessions started after it; a live session keeps the settings it started
//! with (each session holds its own copy).

use std::ffi::CStr;
use std::sync::Arc;

use crate::core::config::Config;
use crate::ffi::freeswitch as fs;

use super::util::{opt_str, EventBinding};

/// # Safety
/// `x` is NULL or a node of a live XML tree.
unsafe fn attr(x: fs::switch_xml_t, name: &CStr) -> String {
    if x.is_null() {
        return String::new();
    }
    // SAFETY: live node; attr_soft never returns NULL (empty string when absent).
    unsafe { opt_str(fs::switch_xml_attr_soft(x, name.as_ptr())) }
        .unwrap_or("")
        .to_owned()
}

/// Calls `f(name, value)` for each `<param>` child of `parent`.
///
/// # Safety
/// `parent` is NULL or a node of a live XML tree.
unsafe fn params(parent: fs::switch_xml_t, f: &mut dyn FnMut(&str, &str)) {
    if parent.is_null() {
        return;
    }
    // SAFETY: live node.
    let mut p = unsafe { fs::switch_xml_child(parent, c"param".as_ptr()) };
    while !p.is_null() {
        // SAFETY: live node.
        let (n, v) = unsafe { (attr(p, c"name"), attr(p, c"value")) };
        f(&n, &v);
        // SAFETY: `p` is a live node; `next` is the next sibling with the same name or NULL.
        p = unsafe { (*p).next };
    }
}

/// Reads and checks the configuration: `Ok` with the new settings (defaults when the file is
/// absent), or `Err` with one message per bad key (each naming the key).
pub fn read() -> Result<Config, Vec<String>> {
    let mut cfg = Config::default();
    let mut node: fs::switch_xml_t = std::ptr::null_mut();
    // SAFETY: literal file name; `node` is a local out-parameter; no params.
    let xml = unsafe {
        fs::switch_xml_open_cfg(c"secure_pay.conf".as_ptr(), &mut node, std::ptr::null_mut())
    };
    if xml.is_null() || node.is_null() {
        log::warn!("secure_pay: secure_pay.conf not found; using defaults");
        return resolved(cfg);
    }
    let mut errors = Vec::new();
    // SAFETY: `node` is the live <configuration> node of `xml`.
    let settings = unsafe { fs::switch_xml_child(node, c"settings".as_ptr()) };
    // SAFETY: live tree until switch_xml_free below.
    unsafe {
        params(settings, &mut |k, v| {
            if let Err(e) = cfg.set(k, v) {
                errors.push(e.to_string());
            }
        })
    };
    // SAFETY: live node.
    let connectors = unsafe { fs::switch_xml_child(node, c"connectors".as_ptr()) };
    if !connectors.is_null() {
        // SAFETY: live node.
        let mut c = unsafe { fs::switch_xml_child(connectors, c"connector".as_ptr()) };
        while !c.is_null() {
            // SAFETY: live node.
            let name = unsafe { attr(c, c"name") };
            // SAFETY: live tree.
            unsafe {
                params(c, &mut |k, v| {
                    if let Err(e) = cfg.set_connector(&name, k, v) {
                        errors.push(e.to_string());
                    }
                })
            };
            // SAFETY: live node; next <connector> sibling or NULL.
            c = unsafe { (*c).next };
        }
    }
    // SAFETY: `xml` is the root returned by open_cfg; freed once, no node used after.
    unsafe { fs::switch_xml_free(xml) };
    if !errors.is_empty() {
        return Err(errors);
    }
    resolved(cfg)
}

fn resolved(mut cfg: Config) -> Result<Config, Vec<String>> {
    match cfg.resolve() {
        Ok(()) => Ok(cfg),
        Err(e) => Err(vec![e.to_string()]),
    }
}

/// (Re)reads secure_pay.conf and installs it for new secure sessions; a bad file changes
/// nothing (the previous settings stay) and every bad key is logged. Returns whether the new
/// file was applied.
pub fn apply(why: &str) -> bool {
    match read() {
        Ok(cfg) => {
            *super::CONFIG.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(cfg);
            log::info!("secure_pay: secure_pay.conf applied ({why}); new secure sessions use it");
            true
        }
        Err(errors) => {
            for e in &errors {
                log::error!("secure_pay: {e}");
            }
            log::error!(
                "secure_pay: secure_pay.conf refused ({why}): {} bad setting(s); the previous settings stay in force",
                errors.len()
            );
            false
        }
    }
}

/// Our RELOADXML binding.
static RELOAD: EventBinding = EventBinding::new();

unsafe extern "C" fn on_reloadxml(_event: *mut fs::switch_event_t) {
    crate::host::guard("reloadxml", (), || {
        apply("reloadxml");
    });
}

/// Re-reads the file after every `reloadxml` (bound to the core's RELOADXML event).
pub fn watch() {
    if !RELOAD.bind(fs::SWITCH_EVENT_RELOADXML, on_reloadxml) {
        log::warn!(
            "secure_pay: could not bind RELOADXML; use reload mod_secure_pay after reloadxml"
        );
    }
}

/// Removes the RELOADXML binding (module shutdown).
pub fn unwatch() {
    RELOAD.unbind();
}
