//! `autoload_configs/secure_pay.conf.xml` → [`Config`] (read at load; `reloadxml` then
//! `reload mod_secure_pay` re-reads it):
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
//! `Config::set_connector`). A bad value is logged (naming the key) and skipped; the rest of the
//! file still applies.

use std::ffi::CStr;

use crate::core::config::Config;
use crate::ffi::freeswitch as fs;

use super::util::opt_str;

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

/// Reads the configuration (defaults when the file is absent).
pub fn load() -> Config {
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
    let mut errors = 0u32;
    // SAFETY: `node` is the live <configuration> node of `xml`.
    let settings = unsafe { fs::switch_xml_child(node, c"settings".as_ptr()) };
    // SAFETY: live tree until switch_xml_free below.
    unsafe {
        params(settings, &mut |k, v| {
            if let Err(e) = cfg.set(k, v) {
                errors += 1;
                log::error!("secure_pay: {e}");
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
                        errors += 1;
                        log::error!("secure_pay: {e}");
                    }
                })
            };
            // SAFETY: live node; next <connector> sibling or NULL.
            c = unsafe { (*c).next };
        }
    }
    // SAFETY: `xml` is the root returned by open_cfg; freed once, no node used after.
    unsafe { fs::switch_xml_free(xml) };
    if errors > 0 {
        log::error!("secure_pay: secure_pay.conf has {errors} bad setting(s); they were skipped");
    }
    resolved(cfg)
}

fn resolved(mut cfg: Config) -> Config {
    if let Err(e) = cfg.resolve() {
        log::error!("secure_pay: {e}");
    }
    cfg
}
