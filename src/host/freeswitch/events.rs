//! CUSTOM events `secure_pay::<name>`: subclasses reserved at load and freed at shutdown; each
//! event carries the channel's standard headers (`switch_channel_event_set_data`) plus the core
//! event's masked headers ([`Event::for_each_header`]).

use crate::core::events::Event;
use crate::ffi::freeswitch as fs;

use super::util::cstring;

/// Owner string for reserve/free (must be identical in both calls).
const OWNER: &std::ffi::CStr = c"mod_secure_pay";

/// Every subclass the module fires. `error` also carries adapter errors (refused start).
pub const SUBCLASSES: [&std::ffi::CStr; 10] = [
    c"secure_pay::start",
    c"secure_pay::capture",
    c"secure_pay::digit",
    c"secure_pay::field",
    c"secure_pay::complete",
    c"secure_pay::submit",
    c"secure_pay::cancel",
    c"secure_pay::stop",
    c"secure_pay::error",
    c"secure_pay::status",
];

pub fn reserve() {
    for s in SUBCLASSES {
        // SAFETY: both strings are 'static NUL-terminated literals; the core copies them.
        let st = unsafe { fs::switch_event_reserve_subclass_detailed(OWNER.as_ptr(), s.as_ptr()) };
        if st != fs::SWITCH_STATUS_SUCCESS {
            log::warn!(
                "secure_pay: could not reserve event subclass {}",
                s.to_string_lossy()
            );
        }
    }
}

pub fn free() {
    for s in SUBCLASSES {
        // SAFETY: same owner and name as in `reserve`.
        unsafe { fs::switch_event_free_subclass_detailed(OWNER.as_ptr(), s.as_ptr()) };
    }
}

/// Fires a core event as CUSTOM `secure_pay::<name>`: the channel headers of `session` (if
/// any) plus the event's masked headers.
///
/// # Safety
/// `session` is NULL or a live session (its own thread, a callback, or read-locked).
pub unsafe fn fire(session: *mut fs::switch_core_session_t, event: &Event) {
    // SAFETY: forwarded contract.
    unsafe { fire_with(session, None, event) }
}

/// Fires a core event for a channel that may be gone (a payment outcome that arrived after
/// hangup or after secure mode ended): no session needed, the channel is named by
/// `Unique-ID` (and `Channel-Call-UUID`) = `uuid`, which is what event-socket clients key on.
/// Safe from any thread (the event system copies everything).
pub fn fire_for_uuid(uuid: &str, event: &Event) {
    // SAFETY: NULL session: only the event system is used.
    unsafe { fire_with(std::ptr::null_mut(), Some(uuid), event) }
}

/// # Safety
/// As [`fire`].
unsafe fn fire_with(session: *mut fs::switch_core_session_t, uuid: Option<&str>, event: &Event) {
    let name = event.name();
    let subclass = cstring(&format!("secure_pay::{name}"));
    let mut ev: *mut fs::switch_event_t = std::ptr::null_mut();
    // SAFETY: out-pointer to a local; file/func are literals; CUSTOM allows a subclass.
    let st = unsafe {
        fs::switch_event_create_subclass_detailed(
            c"mod_secure_pay".as_ptr(),
            c"secure_pay".as_ptr(),
            0,
            &mut ev,
            fs::SWITCH_EVENT_CUSTOM,
            subclass.as_ptr(),
        )
    };
    if st != fs::SWITCH_STATUS_SUCCESS || ev.is_null() {
        log::error!("secure_pay: could not create a {name} event");
        return;
    }
    if !session.is_null() {
        // SAFETY: live session per the contract; `ev` is the event we just created.
        unsafe { fs::switch_channel_event_set_data(super::util::channel_of(session), ev) };
    }
    if let Some(uuid) = uuid {
        let v = cstring(uuid);
        for k in [c"Unique-ID", c"Channel-Call-UUID"] {
            // SAFETY: `ev` is live until fired; the core copies both strings.
            unsafe {
                fs::switch_event_add_header_string(
                    ev,
                    fs::SWITCH_STACK_BOTTOM,
                    k.as_ptr(),
                    v.as_ptr(),
                )
            };
        }
    }
    event.for_each_header(&mut |k: &str, v: &str| {
        let (k, v) = (cstring(k), cstring(v));
        // SAFETY: `ev` is live until fired; the core copies both strings (SWITCH_STACK_BOTTOM).
        unsafe {
            fs::switch_event_add_header_string(ev, fs::SWITCH_STACK_BOTTOM, k.as_ptr(), v.as_ptr())
        };
    });
    // SAFETY: fire takes ownership of `ev` (and NULLs our pointer).
    unsafe {
        fs::switch_event_fire_detailed(
            c"mod_secure_pay".as_ptr(),
            c"secure_pay".as_ptr(),
            0,
            &mut ev,
            std::ptr::null_mut(),
        )
    };
}

/// Fires an adapter-level `secure_pay::error` (e.g. secure mode refused because media is not in
/// the core), with the same headers as a core error event. `code` and `message` are fixed
/// strings: never data.
///
/// # Safety
/// As [`fire`].
pub unsafe fn fire_error(
    session: *mut fs::switch_core_session_t,
    code: &'static str,
    message: &'static str,
) {
    // SAFETY: forwarded contract.
    unsafe {
        fire(
            session,
            &Event::Error {
                code,
                message,
                field: None,
            },
        )
    };
}
