//! How secure mode is driven: dialplan applications `SecurePay([options])` and
//! `StopSecurePay()`, the AMI action `SecurePay` (the agent desktop's buttons), and the hand-off
//! of a submitted card to the payment connector.

use std::ffi::{c_char, c_int};

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
        let raw = unsafe { cstr(data) }.unwrap_or("").to_owned();
        let (opts, wait) = split_wait(&raw);
        // SAFETY: the PBX thread's own channel, unlocked; start_anchored locks it as needed.
        let res = unsafe { channel::start_anchored(chan, &opts, channel::ANCHOR_TIMEOUT) };
        let started = res.is_ok();
        // SAFETY: valid channel owned by this PBX thread.
        unsafe {
            match res {
                Ok(()) => set_var(chan, "SECUREPAY_STATUS", "STARTED"),
                Err(channel::StartError::AlreadyActive) => {
                    set_var(chan, "SECUREPAY_STATUS", "ALREADY")
                }
                Err(e) => {
                    let ids = channel::locked(chan, || channel::chan_ids(chan));
                    log::warn!("secure_pay: SecurePay on {}: {e}", ids.name);
                    events::publish_adapter_error(&ids, "start-refused", &e.to_string());
                    set_var(chan, "SECUREPAY_STATUS", "ERROR");
                    set_var(chan, "SECUREPAY_ERROR", &e.to_string());
                }
            }
        }
        if wait && started {
            // SAFETY: the PBX thread's own channel, unlocked.
            return unsafe { wait_for_outcome(chan) };
        }
        0
    })
}

/// `Set(SECURE_PAY(cmd)=value)`: drives secure mode on the channel itself, from the dialplan or
/// from an ARI application (`POST /channels/{id}/variable?variable=SECURE_PAY(start)&value=...`,
/// run by the channel's Stasis control thread). `cmd`: `start` (value = options), `stop`, or an
/// agent command (`capture` with the field as value, `clear`, `restart`, `submit`, `cancel`,
/// `status`). Sets `SECUREPAY_STATUS` like the applications; a refusal returns -1 (the ARI
/// request fails) with `SECUREPAY_ERROR`.
#[no_mangle]
pub extern "C" fn sp_rs_func_write(
    chan: *mut ffi::ast_channel,
    cmd: *const c_char,
    value: *const c_char,
) -> c_int {
    guard("SECURE_PAY()", -1, || {
        if chan.is_null() {
            return -1;
        }
        // SAFETY: the shim passes NUL-terminated strings valid for the call.
        let (cmd, value) = unsafe {
            (
                cstr(cmd).unwrap_or("").trim().to_ascii_lowercase(),
                cstr(value).unwrap_or("").trim().to_owned(),
            )
        };
        let result: Result<&str, String> = match cmd.as_str() {
            "start" => {
                // SAFETY: the calling thread's channel, unlocked (function write contract).
                let r = unsafe { channel::start_anchored(chan, &value, channel::ANCHOR_TIMEOUT) };
                match r {
                    Ok(()) => Ok("STARTED"),
                    Err(channel::StartError::AlreadyActive) => Ok("ALREADY"),
                    Err(e) => Err(e.to_string()),
                }
            }
            // SAFETY: as above; locked around the state access.
            "stop" => Ok(unsafe {
                let r = channel::locked(chan, || channel::stop_locked(chan, StopReason::Agent));
                crate::host::asterisk::recording::resume_ended();
                if r {
                    "STOPPED"
                } else {
                    "NOTACTIVE"
                }
            }),
            _ => {
                let text = if value.is_empty() {
                    cmd.clone()
                } else {
                    format!("{cmd} {value}")
                };
                match parse_command(&text) {
                    Err(e) => Err(format!("bad command: {e}")),
                    Ok(c) => {
                        // SAFETY: as above; locked around the state access.
                        let r =
                            unsafe { channel::locked(chan, || channel::command_locked(chan, &c)) };
                        match r {
                            None => Err("secure mode is not active on this channel".into()),
                            Some(Ok(())) => Ok("ACCEPTED"),
                            Some(Err(e)) => Err(e),
                        }
                    }
                }
            }
        };
        // SAFETY: the calling thread's channel.
        unsafe {
            match result {
                Ok(status) => {
                    set_var(chan, "SECUREPAY_STATUS", status);
                    0
                }
                Err(e) => {
                    set_var(chan, "SECUREPAY_STATUS", "ERROR");
                    set_var(chan, "SECUREPAY_ERROR", &e);
                    -1
                }
            }
        }
    })
}

/// Splits the `wait` item (blocking variant) off the application's option string.
fn split_wait(raw: &str) -> (String, bool) {
    let mut wait = false;
    let kept: Vec<&str> = raw
        .split(',')
        .filter(|item| {
            if item.trim().eq_ignore_ascii_case("wait") {
                wait = true;
                false
            } else {
                true
            }
        })
        .collect();
    (kept.join(","), wait)
}

/// `SecurePay(...,wait)`: services the channel (so its media reaches the hook even without a
/// bridge, e.g. an IVR) until the capture ends: on complete it submits when a connector
/// profile is configured (else it stops secure mode, wiping the card), then waits for the
/// payment outcome; too many failed attempts, cancel, timeout, stop and hangup end it too.
/// Sets `SECUREPAY_RESULT` (complete|success|error|failed|cancelled|timeout|stopped|hangup), `SECUREPAY_CARD_BRAND`,
/// `SECUREPAY_CARD_NUMBER` (masked), `SECUREPAY_CHARGE_ID`, `SECUREPAY_TOKEN_ID`,
/// `SECUREPAY_ERROR`: masked data only. Returns -1 (hang up) only if the caller hung up.
///
/// # Safety
/// `chan` is the PBX thread's own channel, unlocked.
unsafe fn wait_for_outcome(chan: *mut ffi::ast_channel) -> c_int {
    // SAFETY: own channel, locked around the state access.
    let sid = unsafe { channel::locked(chan, || channel::session_id_locked(chan)) };
    let Some(sid) = sid else {
        return 0;
    };
    channel::watch_outcome(sid);
    let mut submitted = false;
    let mut hung_up = false;
    loop {
        // SAFETY: own channel; ast_safe_sleep reads (and drops) its frames, which runs the
        // framehook on the customer's media; -1 = hangup.
        if unsafe { ffi::ast_safe_sleep(chan, 100) } != 0 {
            hung_up = true;
            break;
        }
        let o = channel::outcome_of(sid, false).unwrap_or_default();
        // SAFETY: own channel, locked around the state access.
        let done = unsafe {
            let l = channel::ChanLock::new(chan);
            let active = channel::session_id_locked(chan) == Some(sid);
            let done = if !active {
                true
            } else if o.result == "complete" && !submitted {
                if channel::has_connector_locked(chan) {
                    submitted = true;
                    let _ = channel::command_locked(chan, &crate::core::capture::Command::Submit);
                    false
                } else {
                    channel::stop_locked(chan, StopReason::Dialplan);
                    true
                }
            } else {
                matches!(o.result.as_str(), "success" | "error" | "failed")
            };
            if done && active && channel::session_id_locked(chan) == Some(sid) {
                channel::stop_locked(chan, StopReason::Dialplan);
            }
            drop(l);
            crate::host::asterisk::recording::resume_ended();
            done
        };
        if done {
            break;
        }
    }
    let mut o = channel::outcome_of(sid, true).unwrap_or_default();
    if hung_up && o.result.is_empty() {
        o.result = "hangup".into();
    }
    if o.result.is_empty() {
        o.result = "stopped".into();
    }
    // SAFETY: own channel.
    unsafe {
        set_var(chan, "SECUREPAY_RESULT", &o.result);
        set_var(chan, "SECUREPAY_CARD_BRAND", &o.brand);
        set_var(chan, "SECUREPAY_CARD_NUMBER", &o.card_number);
        set_var(chan, "SECUREPAY_CHARGE_ID", &o.charge_id);
        set_var(chan, "SECUREPAY_TOKEN_ID", &o.token_id);
        set_var(chan, "SECUREPAY_ERROR", &o.error);
    }
    if hung_up {
        -1
    } else {
        0
    }
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
            let r = channel::locked(chan, || channel::stop_locked(chan, StopReason::Dialplan));
            crate::host::asterisk::recording::resume_ended();
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
        if command
            .split_whitespace()
            .next()
            .is_some_and(|v| v.eq_ignore_ascii_case("status"))
        {
            // a list response: EventList start, SecurePayStatus, SecurePayStatusComplete, each
            // with the request's ActionID
            match ami_status(&chan_name) {
                Ok(body) => {
                    let body = c_string(&body);
                    // SAFETY: s/m are this callback's session and message; body is copied.
                    unsafe { ffi::sp_ast_status_list(s, m, body.as_ptr()) };
                }
                Err(t) => {
                    let t = c_string(&t);
                    // SAFETY: as above.
                    unsafe { ffi::astman_send_error(s, m, t.as_ptr().cast_mut()) };
                }
            }
            return 0;
        }
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

/// Finds the channel `chan_name` (exact name or uniqueid): a new reference, or the error text.
fn find_channel(chan_name: &str) -> Result<channel::ChanRef, String> {
    if chan_name.is_empty() {
        return Err("Channel header is required".into());
    }
    let cname = c_string(chan_name);
    // SAFETY: NUL-terminated name; returns a new reference or NULL.
    let chan = unsafe { ffi::ast_channel_get_by_name(cname.as_ptr()) };
    if chan.is_null() {
        return Err(format!("No such channel: {chan_name}"));
    }
    // SAFETY: `chan` is a new reference; the ChanRef gives it back exactly once.
    let chan = unsafe { channel::ChanRef::adopt(chan) };
    // SAFETY: referenced channel; its name is only read under its lock.
    let exact = unsafe {
        channel::locked(chan.as_ptr(), || {
            cstr(ffi::ast_channel_name(chan.as_ptr())) == Some(chan_name)
                || cstr(ffi::ast_channel_uniqueid(chan.as_ptr())) == Some(chan_name)
        })
    };
    if exact {
        Ok(chan)
    } else {
        Err(format!("No such channel: {chan_name}"))
    }
}

/// `Command: status`: the masked status event body (with the channel headers).
fn ami_status(chan_name: &str) -> Result<String, String> {
    let chan = find_channel(chan_name)?;
    // SAFETY: referenced channel, locked around the state access.
    let r = unsafe { channel::locked(chan.as_ptr(), || channel::status_locked(chan.as_ptr())) };
    match r {
        None => Err("Secure mode is not active on this channel".into()),
        Some(Ok(body)) => Ok(body),
        Some(Err(e)) => Err(format!("status refused: {e}")),
    }
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
    let chan_ref = match find_channel(chan_name) {
        Ok(c) => c,
        Err(e) => return Reply::Error(e),
    };
    // the reference is released when `chan_ref` drops, after every use of `chan`
    let chan = chan_ref.as_ptr();
    if verb == "start" {
        // SAFETY: we hold a reference and the channel is unlocked.
        return match unsafe { channel::start_anchored(chan, options, channel::ANCHOR_TIMEOUT) } {
            Ok(()) => Reply::Ack("Secure mode started".into()),
            Err(e) => {
                let code = match e {
                    channel::StartError::NotAnchored => Some("media-bypass"),
                    channel::StartError::ForeignHookFirst => Some("framehook-order"),
                    _ => None,
                };
                if let Some(code) = code {
                    // SAFETY: referenced channel, locked while its identity is read.
                    let ids = unsafe { channel::locked(chan, || channel::chan_ids(chan)) };
                    events::publish_adapter_error(&ids, code, &e.to_string());
                }
                Reply::Error(format!("start refused: {e}"))
            }
        };
    }
    // SAFETY: we hold a reference to `chan`; it is locked for the state access.
    unsafe {
        let l = channel::ChanLock::new(chan);
        let r = match (verb.as_str(), parsed) {
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
        drop(l);
        // a stop (or a cancel ending the session) resumes paused recordings before the reply
        crate::host::asterisk::recording::resume_ended();
        r
    }
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
    // For a late outcome (the session gone): names only. The channel pointer is dropped here,
    // since the channel may be freed by then (no Stasis user event for a late outcome; AMI
    // gets it, with the headers looked up by uniqueid).
    let ids = ChanIds {
        chan: 0,
        ..st.ids.clone()
    };
    let sid = st.id();
    let outcome_now = |st: &mut ChannelState, o: PaymentOutcome| {
        let ids = st.ids.clone();
        let mut sink = |ev: crate::core::events::Event| {
            channel::note_outcome(sid, &ev);
            events::publish(&ids, &ev)
        };
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
/// still waiting for it, reaching the channel through the session's own reference (no search
/// over all channels); otherwise straight to the AMI bus from the ticket (the channel hung up,
/// or secure mode was cancelled/stopped/timed out meanwhile). `manager_event` needs no
/// channel, so the event goes out after hangup too.
fn deliver_outcome(ids: &ChanIds, sid: u64, ticket: &SubmitTicket, o: PaymentOutcome) {
    guard("payment outcome", (), || {
        let mut o = Some(o);
        if let Some(chan) = channel::channel_of(sid) {
            // SAFETY: referenced channel (released when `chan` drops), locked around the state
            // access.
            unsafe {
                channel::locked(chan.as_ptr(), || {
                    channel::outcome_locked(chan.as_ptr(), sid, &mut o)
                })
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
