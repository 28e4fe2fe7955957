//! CUSTOM events `secure_pay::<name>`: subclasses reserved at load and freed at shutdown. A state
//! event carries the channel's standard headers (`switch_channel_event_set_data`), a per-key
//! event only the three that name the channel ([`changes_no_variable`]); both add the core
//! event's masked headers ([`Event::for_each_header`]).

use std::ffi::CStr;

use crate::core::events::{Event, SubmitResult};
use crate::ffi::freeswitch as fs;

use super::util::{self, cstring};

/// Owner string for reserve/free (must be identical in both calls).
const OWNER: &std::ffi::CStr = c"mod_secure_pay";

/// Every subclass the module fires. `error` also carries adapter errors (refused start).
pub const SUBCLASSES: [&std::ffi::CStr; 11] = [
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
    c"secure_pay::recording",
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

/// Events that set no channel variable (see [`set_vars`]) and come once per key press or field:
/// they name the channel (`Unique-ID`, `Channel-Name`, `Channel-Call-UUID`, as the basic headers
/// spell them) and carry no other channel header: no `Caller-*`, `Other-Leg-*` or `variable_*`.
/// The state events (`start`, `complete`, `stop`, ...) carry all of them.
fn changes_no_variable(event: &Event) -> bool {
    matches!(
        event,
        Event::Digit { .. } | Event::Capture { .. } | Event::Field { .. }
    )
}

/// Appends the header `k: v` (SWITCH_STACK_BOTTOM: the core copies both strings).
///
/// # Safety
/// `ev` is a live event that has not been fired.
unsafe fn add_header(ev: *mut fs::switch_event_t, k: &CStr, v: &str) {
    let v = cstring(v);
    // SAFETY: live event per the contract; both strings are NUL-terminated and outlive the call.
    unsafe {
        fs::switch_event_add_header_string(ev, fs::SWITCH_STACK_BOTTOM, k.as_ptr(), v.as_ptr())
    };
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
        // SAFETY: live session per the contract.
        let channel = unsafe { util::channel_of(session) };
        // SAFETY: the live session's channel.
        unsafe { set_vars(channel, event) };
        if changes_no_variable(event) {
            // The per-key events: only the headers that name the channel. For a CUSTOM event
            // `switch_channel_event_set_data` copies every channel variable (a hundred-odd
            // headers), and even the basic data is about 90 (the caller profiles of both
            // legs): each a few allocations here, a copy per event-socket listener and a
            // URL-encoded line on its socket, on every key press. The state events carry them.
            // SAFETY: live session per the contract.
            let uuid = unsafe { util::uuid_of(session) };
            // SAFETY: live channel; the name lives as long as the channel, copied at once.
            let name = unsafe { util::opt_str(fs::switch_channel_get_name(channel)) }
                .unwrap_or_default()
                .to_owned();
            // As `switch_channel_event_set_basic_data`: `call_uuid` if set, else the uuid.
            // SAFETY: live channel.
            let call =
                unsafe { util::get_var(channel, c"call_uuid") }.unwrap_or_else(|| uuid.clone());
            for (k, v) in [
                (c"Unique-ID", uuid.as_str()),
                (c"Channel-Name", name.as_str()),
                (c"Channel-Call-UUID", call.as_str()),
            ] {
                // SAFETY: `ev` is the live event we just created, not fired yet.
                unsafe { add_header(ev, k, v) };
            }
        } else {
            // SAFETY: live session per the contract; `ev` is the event we just created.
            unsafe { fs::switch_channel_event_set_data(channel, ev) };
        }
    }
    if let Some(uuid) = uuid {
        for k in [c"Unique-ID", c"Channel-Call-UUID"] {
            // SAFETY: `ev` is the live event we just created, not fired yet.
            unsafe { add_header(ev, k, uuid) };
        }
    }
    event.for_each_header(&mut |k: &str, v: &str| {
        let k = cstring(k);
        // SAFETY: `ev` is the live event we just created, not fired yet.
        unsafe { add_header(ev, &k, v) };
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

/// Channel variables the module sets (the dialplan branches on them after `secure_pay_wait`,
/// and CDRs keep the outcome). Masked values and codes only, never a digit that was keyed.
pub const VARIABLES: [&CStr; 10] = [
    c"secure_pay_result",
    c"secure_pay_stop_reason",
    c"secure_pay_captured",
    c"secure_pay_card_brand",
    c"secure_pay_card_number",
    c"secure_pay_expiration_date",
    c"secure_pay_charge_id",
    c"secure_pay_token_id",
    c"secure_pay_transaction_id",
    c"secure_pay_error",
];

/// Updates the channel variables from an event before it is fired (so the event's
/// `variable_*` headers already show them):
/// - `secure_pay_result`: `active` (started), `complete` (every field valid), `submitting`,
///   `success` / `failed` (the connector's answer), `cancelled`, `timeout` or `stopped` (ended
///   before an outcome; `secure_pay_stop_reason` says why: agent, dialplan, timeout, hangup,
///   error);
/// - `secure_pay_card_brand`, `secure_pay_card_number` (masked per `pan_display`),
///   `secure_pay_expiration_date` (only with `show_expiry`), `secure_pay_captured` (field list);
/// - `secure_pay_charge_id` / `secure_pay_token_id` (the connector's ids), `secure_pay_error`
///   (the last error code).
///
/// # Safety
/// `ch` belongs to a live session.
unsafe fn set_vars(ch: *mut fs::switch_channel_t, event: &Event) {
    let set = |k: &CStr, v: Option<&str>| {
        // SAFETY: live channel per the contract; FreeSWITCH copies the values.
        unsafe { util::set_var(ch, k, v) }
    };
    match event {
        Event::Start { .. } => {
            for k in VARIABLES {
                set(k, None);
            }
            set(c"secure_pay_result", Some("active"));
        }
        Event::Complete {
            captured,
            card_number,
            brand,
            expiration_date,
        } => {
            set(c"secure_pay_captured", Some(&captured.to_header()));
            set(c"secure_pay_card_number", card_number.as_deref());
            set(c"secure_pay_card_brand", brand.map(|b| b.name()));
            set(c"secure_pay_expiration_date", expiration_date.as_deref());
            set(c"secure_pay_result", Some("complete"));
        }
        Event::Submit {
            result,
            transaction_id,
            ..
        } => match result {
            SubmitResult::Pending { .. } => {
                set(c"secure_pay_transaction_id", Some(transaction_id));
                set(c"secure_pay_result", Some("submitting"))
            }
            SubmitResult::Success {
                charge_id,
                token_id,
            } => {
                set(c"secure_pay_charge_id", charge_id.as_deref());
                set(c"secure_pay_token_id", token_id.as_deref());
                set(c"secure_pay_result", Some("success"));
            }
            SubmitResult::Error { code, .. } => {
                set(c"secure_pay_error", Some(code));
                set(c"secure_pay_result", Some("failed"));
            }
            // Sent, no usable answer: may have been charged (never reported as failed).
            SubmitResult::Unknown { code, .. } => {
                set(c"secure_pay_error", Some(code));
                set(c"secure_pay_result", Some("unknown"));
            }
        },
        Event::Cancel => set(c"secure_pay_result", Some("cancelled")),
        Event::Stop { reason } => {
            set(c"secure_pay_stop_reason", Some(reason.name()));
            // SAFETY: live channel; copied at once.
            let now = unsafe { util::get_var(ch, c"secure_pay_result") };
            if matches!(now.as_deref(), None | Some("active" | "submitting")) {
                let r = if *reason == crate::core::capture::StopReason::Timeout {
                    "timeout"
                } else {
                    "stopped"
                };
                set(c"secure_pay_result", Some(r));
            }
        }
        Event::Error { code, .. } => set(c"secure_pay_error", Some(code)),
        Event::Capture { .. }
        | Event::Digit { .. }
        | Event::Field { .. }
        | Event::Status(_)
        | Event::Recording { .. } => {}
    }
}
