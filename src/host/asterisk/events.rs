//! Core events published as AMI events `SecurePay<Name>` (`SecurePayStart`, `SecurePayDigit`,
//! ...). Headers: the customer channel's standard snapshot headers (`Channel`, `ChannelState`,
//! `CallerIDNum`, ..., `Uniqueid`, `Linkedid`), then exactly the core's
//! [`Event::for_each_header`] headers (masked data only).

use std::fmt::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::core::events::Event;
use crate::ffi::asterisk as ffi;
use crate::host::asterisk::c_string;

/// Channel identity carried by every event.
#[derive(Clone, Default)]
pub struct ChanIds {
    pub name: String,
    pub uniqueid: String,
    pub linkedid: String,
    /// The channel itself (0 = unknown), for the Stasis user event. Only dereferenced while the
    /// channel is alive: ids are taken from a locked channel and refreshed in a masquerade, and
    /// events are only published while the hook (which lives on that channel) is alive.
    pub chan: usize,
}

/// `start` -> `SecurePayStart`.
pub fn ami_name(ev: &Event) -> String {
    let n = ev.name();
    let mut s = String::with_capacity(9 + n.len());
    s.push_str("SecurePay");
    let mut chars = n.chars();
    if let Some(c) = chars.next() {
        s.push(c.to_ascii_uppercase());
        s.extend(chars);
    }
    s
}

fn push_header(body: &mut String, key: &str, value: &str) {
    let _ = write!(body, "{key}: ");
    // a header value must stay on one line
    body.extend(
        value
            .chars()
            .map(|c| if c == '\r' || c == '\n' { ' ' } else { c }),
    );
    body.push_str("\r\n");
}

/// The channel headers: Asterisk's standard channel snapshot headers (Channel, ChannelState,
/// CallerIDNum, ConnectedLineNum, Language, AccountCode, Context, Exten, Priority, Uniqueid,
/// Linkedid, like every stock channel event), or just Channel/Uniqueid/Linkedid when the
/// channel has no snapshot.
fn push_channel_headers(body: &mut String, ids: &ChanIds) {
    let u = c_string(&ids.uniqueid);
    // SAFETY: NUL-terminated id; the result is NULL or a string we own until sp_ast_free.
    let p = unsafe { ffi::sp_ast_channel_state_headers(u.as_ptr()) };
    // SAFETY: NULL or a NUL-terminated string (above).
    if let Some(s) = unsafe { crate::host::asterisk::cstr(p) } {
        body.push_str(s);
        if !s.ends_with("\r\n") {
            body.push_str("\r\n");
        }
    } else {
        push_header(body, "Channel", &ids.name);
        push_header(body, "Uniqueid", &ids.uniqueid);
        push_header(body, "Linkedid", &ids.linkedid);
    }
    if !p.is_null() {
        // SAFETY: allocated by the shim with ast_strdup, freed exactly once.
        unsafe { ffi::sp_ast_free(p.cast()) };
    }
}

/// The AMI body ("Key: value\r\n" lines) for an event.
pub fn ami_body(ids: &ChanIds, ev: &Event) -> String {
    let mut body = String::with_capacity(512);
    push_channel_headers(&mut body, ids);
    ev.for_each_header(&mut |k, v| push_header(&mut body, k, v));
    body
}

/// Publishes one event on the AMI bus (category `call`) and, as a channel user event
/// (`ChannelUserevent` with `eventname` = the AMI name and the masked headers), to Stasis, so
/// ARI applications subscribed to the channel receive it too.
///
/// The Stasis copy is only published while `res_stasis.so` (ARI applications) is loaded:
/// without it nobody but AMI consumes it, and AMI already has the event as `SecurePay<Name>`.
/// It was half of the module's AMI traffic (each copy also reaches AMI as a `UserEvent`, with a
/// fresh channel snapshot and a JSON blob) and the largest single cost of a secure call
/// (docs/performance.md).
pub fn publish(ids: &ChanIds, ev: &Event) {
    let name = c_string(&ami_name(ev));
    let body = c_string(&ami_body(ids, ev));
    // SAFETY: both strings are NUL-terminated and outlive the call; manager_event copies them
    // and is safe from any thread (the shim passes the body as a "%s" argument).
    unsafe { ffi::sp_ast_manager_event(name.as_ptr(), body.as_ptr()) };
    if !ari_possible(ids) {
        return;
    }
    let mut own = String::with_capacity(256);
    ev.for_each_header(&mut |k, v| push_header(&mut own, k, v));
    user_event(ids, &name, &own);
}

/// `res_stasis.so` was loaded when secure mode last started (on any channel).
static STASIS_LOADED: AtomicBool = AtomicBool::new(false);

/// Asks the loader whether `res_stasis.so` is loaded, for the events of the secure sessions
/// from now on. Called by every start before it locks the channel and before it counts itself
/// as a start under way: the loader's module-list lock is never taken with a channel locked
/// (where a `core reload` would stall the media path) nor where an unload holding that lock
/// waits for us. ARI loaded later gets its copies from the next start on; unloaded later, a
/// user event nobody consumes is published.
pub fn refresh_stasis_loaded() {
    // SAFETY: no arguments; the shim only looks the module up in the loader's list.
    let loaded = unsafe { ffi::sp_ast_stasis_loaded() } != 0;
    STASIS_LOADED.store(loaded, Ordering::Relaxed);
}

/// A Stasis channel user event can reach an ARI application: the channel is known and the ARI
/// application layer was loaded at the last start ([`refresh_stasis_loaded`]).
fn ari_possible(ids: &ChanIds) -> bool {
    ids.chan != 0 && STASIS_LOADED.load(Ordering::Relaxed)
}

fn user_event(ids: &ChanIds, name: &std::ffi::CStr, body: &str) {
    if !ari_possible(ids) {
        return;
    }
    let body = c_string(body);
    // SAFETY: `ids.chan` is the live customer channel (see ChanIds::chan); the shim locks it
    // (recursively) around the snapshot and copies both strings.
    unsafe {
        ffi::sp_ast_user_event(
            ids.chan as *mut ffi::ast_channel,
            name.as_ptr(),
            body.as_ptr(),
        )
    };
}

/// An adapter-level `SecurePayError` (not from a session: start refused, codec muted), with
/// the core's error headers `SecurePay-Error-Code` and `SecurePay-Error-Message`.
pub fn publish_adapter_error(ids: &ChanIds, code: &str, message: &str) {
    let mut body = String::with_capacity(512);
    push_channel_headers(&mut body, ids);
    push_header(&mut body, "SecurePay-Error-Code", code);
    push_header(&mut body, "SecurePay-Error-Message", message);
    let body = c_string(&body);
    // SAFETY: as in `publish`.
    unsafe { ffi::sp_ast_manager_event(c"SecurePayError".as_ptr(), body.as_ptr()) };
    let mut own = String::with_capacity(160);
    push_header(&mut own, "SecurePay-Error-Code", code);
    push_header(&mut own, "SecurePay-Error-Message", message);
    user_event(ids, c"SecurePayError", &own);
}
