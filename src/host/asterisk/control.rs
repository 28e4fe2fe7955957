//! How secure mode is driven: dialplan applications `SecurePay([options])` and
//! `StopSecurePay()`, the AMI action `SecurePay` (the agent desktop's buttons), and the hand-off
//! of a submitted card to the payment connector.

use std::ffi::{c_char, c_int, CString};

use crate::core::capture::{parse_command, StopReason, SubmitTicket};
use crate::core::payment::PaymentOutcome;
use crate::ffi::asterisk as ffi;
use crate::host::asterisk::channel::{self, ChannelState};
use crate::host::asterisk::events::ChanIds;
use crate::host::asterisk::{c_string, cstr, events, now_ms, with_connector};
use crate::host::guard;

/// Sets a channel variable (`SECUREPAY_STATUS`, `SECUREPAY_ERROR`) for the dialplan.
///
/// # Safety
/// `chan` is a valid channel (locked or owned by the calling PBX thread).
unsafe fn set_var(chan: *mut ffi::ast_channel, name: &str, value: &str) {
    let n = c_string(name);
    let v = c_string(value);
    // SAFETY: valid channel per contract; strings are NUL-terminated and copied by Asterisk.
    unsafe { ffi::pbx_builtin_setvar_helper(chan, n.as_ptr(), v.as_ptr()) };
}

/// `SecurePay([options])`: start secure mode on the channel running the application.
/// Sets `SECUREPAY_STATUS` to `STARTED`, `ALREADY` or `ERROR` (+ `SECUREPAY_ERROR`). Never
/// hangs up the call.
pub extern "C" fn app_secure_pay(chan: *mut ffi::ast_channel, data: *const c_char) -> c_int {
    guard("SecurePay", 0, || {
        if chan.is_null() {
            return 0;
        }
        // SAFETY: the PBX thread passes its own channel (valid, unlocked) and NULL or a
        // NUL-terminated argument string.
        let opts = unsafe { cstr(data) }.unwrap_or("").to_owned();
        // SAFETY: valid channel; datastore/framehook calls need the lock, released below.
        let res = unsafe {
            ffi::sp_ast_channel_lock(chan);
            let r = channel::start_locked(chan, &opts);
            ffi::sp_ast_channel_unlock(chan);
            r
        };
        // SAFETY: valid channel owned by this PBX thread.
        unsafe {
            match res {
                Ok(()) => set_var(chan, "SECUREPAY_STATUS", "STARTED"),
                Err(channel::StartError::AlreadyActive) => {
                    set_var(chan, "SECUREPAY_STATUS", "ALREADY")
                }
                Err(e) => {
                    let ids = channel::chan_ids(chan);
                    log::warn!("secure_pay: SecurePay on {}: {e}", ids.name);
                    events::publish_adapter_error(&ids, "start-refused", &e.to_string());
                    set_var(chan, "SECUREPAY_STATUS", "ERROR");
                    set_var(chan, "SECUREPAY_ERROR", &e.to_string());
                }
            }
        }
        0
    })
}

/// `StopSecurePay()`: stop secure mode on this channel (`SECUREPAY_STATUS` = `STOPPED` or
/// `NOTACTIVE`).
pub extern "C" fn app_stop_secure_pay(chan: *mut ffi::ast_channel, _data: *const c_char) -> c_int {
    guard("StopSecurePay", 0, || {
        if chan.is_null() {
            return 0;
        }
        // SAFETY: the PBX thread's own channel; locked around the datastore/framehook calls.
        let stopped = unsafe {
            ffi::sp_ast_channel_lock(chan);
            let r = channel::stop_locked(chan, StopReason::Dialplan);
            ffi::sp_ast_channel_unlock(chan);
            r
        };
        // SAFETY: valid channel owned by this PBX thread.
        unsafe {
            set_var(
                chan,
                "SECUREPAY_STATUS",
                if stopped { "STOPPED" } else { "NOTACTIVE" },
            )
        };
        0
    })
}

/// Reads an AMI header ("" when absent).
///
/// # Safety
/// `m` is the message passed to the action callback.
unsafe fn header(m: *const ffi::message, name: &str) -> String {
    let n = c_string(name);
    // SAFETY: astman_get_header only reads the name; the returned value is owned by `m` and
    // copied before `m` goes away.
    unsafe { cstr(ffi::astman_get_header(m, n.as_ptr().cast_mut())) }
        .unwrap_or("")
        .trim()
        .to_owned()
}

enum Reply {
    Ack(String),
    Error(String),
}

/// AMI action `SecurePay`: `Channel`, `Command` (start|capture|clear|restart|submit|cancel|
/// stop|status), `Options` (for start), `Field` (for capture, or write `Command: capture
/// expiration-date`).
pub extern "C" fn ami_secure_pay(s: *mut ffi::mansession, m: *const ffi::message) -> c_int {
    guard("AMI SecurePay", 0, || {
        // SAFETY: `m` is the action's message, valid during the callback.
        let (chan_name, command, options, field) = unsafe {
            (
                header(m, "Channel"),
                header(m, "Command"),
                header(m, "Options"),
                header(m, "Field"),
            )
        };
        let reply = ami_run(&chan_name, &command, &options, &field);
        let (ok, text) = match reply {
            Reply::Ack(t) => (true, c_string(&t)),
            Reply::Error(t) => (false, c_string(&t)),
        };
        // SAFETY: s/m are the session and message of this callback; the text is copied.
        unsafe {
            if ok {
                ffi::astman_send_ack(s, m, text.as_ptr().cast_mut());
            } else {
                ffi::astman_send_error(s, m, text.as_ptr().cast_mut());
            }
        }
        0
    })
}

fn ami_run(chan_name: &str, command: &str, options: &str, field: &str) -> Reply {
    if chan_name.is_empty() {
        return Reply::Error("Channel header is required".into());
    }
    if command.is_empty() {
        return Reply::Error(
            "Command header is required (start|capture|clear|restart|submit|cancel|stop|status)"
                .into(),
        );
    }
    let verb = command
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    // Parse before touching the channel so bad input never changes state.
    let parsed = match verb.as_str() {
        "start" | "stop" => None,
        _ => {
            let text = if field.is_empty() {
                command.to_owned()
            } else {
                format!("{command} {field}")
            };
            match parse_command(&text) {
                Ok(c) => Some(c),
                Err(e) => return Reply::Error(format!("bad command: {e}")),
            }
        }
    };
    let cname = c_string(chan_name);
    // SAFETY: NUL-terminated name; returns a new reference or NULL.
    let chan = unsafe { ffi::ast_channel_get_by_name(cname.as_ptr()) };
    if chan.is_null() {
        return Reply::Error(format!("No such channel: {chan_name}"));
    }
    // SAFETY: we hold a reference; name/uniqueid are read-only strings owned by the channel.
    let exact = unsafe {
        cstr(ffi::ast_channel_name(chan)) == Some(chan_name)
            || cstr(ffi::ast_channel_uniqueid(chan)) == Some(chan_name)
    };
    if !exact {
        // SAFETY: releases the reference taken above, exactly once.
        unsafe { ffi::sp_ast_channel_unref(chan) };
        return Reply::Error(format!("No such channel: {chan_name}"));
    }
    // SAFETY: we hold a reference to `chan`; it is locked for the state access and unlocked and
    // unreferenced exactly once below.
    let reply = unsafe {
        ffi::sp_ast_channel_lock(chan);
        let r = match (verb.as_str(), parsed) {
            ("start", _) => match channel::start_locked(chan, options) {
                Ok(()) => Reply::Ack("Secure mode started".into()),
                Err(e) => Reply::Error(format!("start refused: {e}")),
            },
            ("stop", _) => {
                if channel::stop_locked(chan, StopReason::Agent) {
                    Reply::Ack("Secure mode stopped".into())
                } else {
                    Reply::Error("Secure mode is not active on this channel".into())
                }
            }
            (_, Some(cmd)) => match channel::command_locked(chan, &cmd) {
                None => Reply::Error("Secure mode is not active on this channel".into()),
                Some(Ok(())) => Reply::Ack(format!("{verb} accepted")),
                Some(Err(e)) => Reply::Error(format!("{verb} refused: {e}")),
            },
            (_, None) => Reply::Error("bad command".into()),
        };
        ffi::sp_ast_channel_unlock(chan);
        ffi::sp_ast_channel_unref(chan);
        r
    };
    reply
}

/// After an accepted `submit`: hands the payment request to the connector (non-blocking).
/// The outcome comes back on the connector's worker thread and is delivered to the session
/// by [`deliver_outcome`]; if the session is gone by then (cancel, stop, timeout, hangup) the
/// outcome is still published as `SecurePaySubmit` with the channel's ids (exactly once
/// either way). Called with the channel locked.
pub fn hand_off(st: &mut ChannelState) {
    let Some((req, ticket)) = st.session_mut().take_submission() else {
        return;
    };
    let cfg = st.config().clone();
    let profile = cfg.active_connector();
    let ids = st.ids.clone();
    let sid = st.id();
    let outcome_now = |st: &mut ChannelState, o: PaymentOutcome| {
        let ids = st.ids.clone();
        let mut sink = |ev: crate::core::events::Event| events::publish(&ids, &ev);
        st.session_mut().on_payment_outcome(o, now_ms(), &mut sink);
    };
    let Some(profile) = profile else {
        drop(req);
        outcome_now(
            st,
            PaymentOutcome::Error {
                code: "no-connector".into(),
                message: "no connector profile is configured".into(),
            },
        );
        return;
    };
    let done: Box<dyn FnOnce(PaymentOutcome) + Send> =
        Box::new(move |o| deliver_outcome(&ids, sid, &ticket, o));
    let res = with_connector(|c| match c {
        Some(c) => c.submit(profile, req, done).map_err(|e| e.to_string()),
        None => Err("connector not running".to_owned()),
    });
    if let Err(e) = res {
        outcome_now(
            st,
            PaymentOutcome::Error {
                code: "submit-failed".into(),
                message: e,
            },
        );
    }
}

/// Delivers a connector outcome (worker thread): to the session `sid` of the channel if it is
/// still waiting for it, otherwise straight to the AMI bus from the ticket (the channel hung
/// up, or secure mode was cancelled/stopped/timed out meanwhile). `manager_event` needs no
/// channel, so the event goes out after hangup too.
fn deliver_outcome(ids: &ChanIds, sid: u64, ticket: &SubmitTicket, o: PaymentOutcome) {
    guard("payment outcome", (), || {
        let u: CString = c_string(&ids.uniqueid);
        // SAFETY: NUL-terminated id; returns a new reference or NULL.
        let chan = unsafe { ffi::sp_ast_channel_get_by_uniqueid_exact(u.as_ptr()) };
        let mut o = Some(o);
        if !chan.is_null() {
            // SAFETY: referenced channel, locked around the state access, then unlocked and
            // unreferenced exactly once.
            unsafe {
                ffi::sp_ast_channel_lock(chan);
                channel::outcome_locked(chan, sid, &mut o);
                ffi::sp_ast_channel_unlock(chan);
                ffi::sp_ast_channel_unref(chan);
            }
        }
        if let Some(o) = o {
            log::info!(
                "secure_pay: payment outcome for {} after secure mode ended: published",
                ids.uniqueid
            );
            events::publish(ids, &ticket.outcome_event(o));
        }
    });
}
