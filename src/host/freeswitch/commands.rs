//! Dialplan apps `secure_pay [options]`, `secure_pay_wait [submit] [options]` (blocking, for IVR
//! flows without an agent) and `stop_secure_pay`; the APIs `uuid_secure_pay <uuid> <verb>
//! [args]` for agent desktops (ESL `api`/`bgapi`) and `secure_pay_list [json]`; fs_cli tab
//! completion for both APIs.

use std::ffi::{c_char, CStr};
use std::time::{Duration, Instant};

use crate::core::capture::{parse_command, Command, StopReason};
use crate::core::events::{Event, StatusSnapshot};
use crate::ffi::freeswitch as fs;
use crate::host::guard;

use super::channel::{self, StartError};
use super::util::{self, LockedSession};

const USAGE: &str = "-ERR usage: uuid_secure_pay <uuid> start [options]|capture <field>|clear|restart|submit|cancel|stop|status [json]\n";

/// Registers the apps and the API on the module interface.
///
/// # Safety
/// `mi` is the loader's module-interface out-parameter, already set to our interface.
pub unsafe fn register(mi: *mut *mut fs::switch_loadable_module_interface_t) -> Result<(), ()> {
    // SAFETY: all strings are 'static literals (the core stores the pointers, it does not copy);
    // the functions are 'static.
    let app = unsafe {
        fs::sp_fs_add_app(
            mi,
            c"secure_pay".as_ptr(),
            c"Start secure card capture (DTMF masking) on this channel".as_ptr(),
            c"Masks DTMF in the customer's audio, swallows RFC 2833 / SIP INFO digits and captures them into payment fields; emits CUSTOM secure_pay::* events. Options: key=value list (see docs/capture.md).".as_ptr(),
            Some(app_secure_pay),
            c"[options]".as_ptr(),
            0,
        )
    };
    // SAFETY: as above.
    let stop = unsafe {
        fs::sp_fs_add_app(
            mi,
            c"stop_secure_pay".as_ptr(),
            c"Stop secure card capture on this channel".as_ptr(),
            c"Ends secure mode started by secure_pay; captured data is wiped.".as_ptr(),
            Some(app_stop_secure_pay),
            c"".as_ptr(),
            0,
        )
    };
    // SAFETY: as above.
    let api = unsafe {
        fs::sp_fs_add_api(
            mi,
            c"uuid_secure_pay".as_ptr(),
            c"Control secure card capture on a channel".as_ptr(),
            Some(api_uuid_secure_pay),
            c"<uuid> start [options]|capture <field>|clear|restart|submit|cancel|stop|status [json]"
                .as_ptr(),
        )
    };
    // SAFETY: as above.
    let wait = unsafe {
        fs::sp_fs_add_app(
            mi,
            c"secure_pay_wait".as_ptr(),
            c"Secure card capture that blocks until it ends (IVR without an agent)".as_ptr(),
            c"Starts secure mode (or joins the one already on) and returns when the capture is complete, cancelled, timed out, given up or hung up; with 'submit' it also hands a complete card to the connector and waits for its answer. Branch on ${secure_pay_result}.".as_ptr(),
            Some(app_secure_pay_wait),
            c"[submit] [options]".as_ptr(),
            0,
        )
    };
    // SAFETY: as above.
    let list = unsafe {
        fs::sp_fs_add_api(
            mi,
            c"secure_pay_list".as_ptr(),
            c"List the channels in secure mode (masked state)".as_ptr(),
            Some(api_secure_pay_list),
            c"[json]".as_ptr(),
        )
    };
    if app.is_null() || stop.is_null() || api.is_null() || wait.is_null() || list.is_null() {
        log::error!("secure_pay: could not register the apps/API");
        return Err(());
    }
    completions(true);
    Ok(())
}

/// fs_cli tab completion entries (`switch_console_set_complete`; kept in the core database,
/// so FreeSWITCH started with `-nosql` has no completion at all).
const COMPLETE_VERBS: [&str; 8] = [
    "start", "capture", "clear", "restart", "submit", "cancel", "stop", "status",
];

fn completions(add: bool) {
    let mut lines = Vec::new();
    if add {
        for v in COMPLETE_VERBS {
            lines.push(format!("add uuid_secure_pay ::console::list_uuid {v}"));
        }
        for f in crate::core::capture::field::FieldKind::ALL {
            lines.push(format!(
                "add uuid_secure_pay ::console::list_uuid capture {}",
                f.name()
            ));
        }
        lines.push("add uuid_secure_pay ::console::list_uuid status json".into());
        lines.push("add secure_pay_list json".into());
    } else {
        lines.push("del uuid_secure_pay".into());
        lines.push("del secure_pay_list".into());
    }
    for l in lines {
        let c = util::cstring(&l);
        // SAFETY: NUL-terminated string valid for the call; the core copies what it keeps.
        unsafe { fs::switch_console_set_complete(c.as_ptr()) };
    }
}

/// Removes the completion entries (module shutdown).
pub fn unregister() {
    completions(false);
}

/// # Safety
/// `stream` is the live stream of the current API call.
unsafe fn write(stream: *mut fs::switch_stream_handle_t, text: &str) {
    let c = util::cstring(text);
    // SAFETY: live stream; the shim writes with a "%s" format.
    unsafe { fs::sp_fs_stream_write(stream, c.as_ptr()) };
}

unsafe extern "C" fn app_secure_pay(session: *mut fs::switch_core_session_t, data: *const c_char) {
    guard("secure_pay app", (), || {
        if session.is_null() {
            return;
        }
        // SAFETY: the core passes a NUL-terminated argument string or NULL.
        let opts = unsafe { util::opt_str(data) }.unwrap_or("");
        // SAFETY: apps run on the session's own thread.
        let channel = unsafe { util::channel_of(session) };
        // SAFETY: the app runs on the session's own thread, so it is live.
        match unsafe { channel::start(session, &super::config(), opts) } {
            Ok(()) => {
                // SAFETY: live channel.
                unsafe { util::set_var(channel, c"secure_pay_result", Some("active")) }
            }
            Err(e) => {
                log::error!("secure_pay: app secure_pay refused: {e}");
                // Already on (the agent started it first): `active` stays true.
                if !matches!(e, StartError::AlreadyActive) {
                    // SAFETY: live channel.
                    unsafe { util::set_var(channel, c"secure_pay_result", Some("refused")) };
                }
                if matches!(e, StartError::BadOptions(_) | StartError::Attach) {
                    // SAFETY: live session.
                    unsafe {
                        super::events::fire_error(
                            session,
                            "start-refused",
                            "secure_pay could not start; see the FreeSWITCH log",
                        )
                    };
                }
            }
        }
    })
}

unsafe extern "C" fn app_stop_secure_pay(
    session: *mut fs::switch_core_session_t,
    _data: *const c_char,
) {
    guard("stop_secure_pay app", (), || {
        if session.is_null() {
            return;
        }
        // SAFETY: apps run on the session's own thread.
        if !unsafe { channel::stop(session, StopReason::Dialplan) } {
            log::warn!("secure_pay: stop_secure_pay: secure mode was not active");
        }
    })
}

/// Formats the headers of events for an API answer (masked data only).
fn describe(events: &[Event], want: &str) -> String {
    let mut s = String::new();
    for e in events.iter().filter(|e| e.name() == want) {
        e.for_each_header(&mut |k, v| {
            s.push_str(k);
            s.push_str(": ");
            s.push_str(v);
            s.push('\n');
        });
    }
    s
}

unsafe extern "C" fn api_uuid_secure_pay(
    cmd: *const c_char,
    _session: *mut fs::switch_core_session_t,
    stream: *mut fs::switch_stream_handle_t,
) -> fs::switch_status_t {
    guard("uuid_secure_pay api", fs::SWITCH_STATUS_SUCCESS, || {
        if stream.is_null() {
            return fs::SWITCH_STATUS_SUCCESS;
        }
        // SAFETY: the core passes a NUL-terminated command string or NULL.
        let line = unsafe { util::opt_str(cmd) }.unwrap_or("").trim();
        let answer = api(line);
        // SAFETY: live stream of this call.
        unsafe { write(stream, &answer) };
        fs::SWITCH_STATUS_SUCCESS
    })
}

/// The whole API command, as text in, answer out (`+OK ...` / `-ERR ...`).
fn api(line: &str) -> String {
    let (uuid, rest) = match line.split_once(char::is_whitespace) {
        Some((u, r)) => (u, r.trim()),
        None => (line, ""),
    };
    if uuid.is_empty() || rest.is_empty() {
        return USAGE.to_string();
    }
    if uuid.len() > 256
        || !uuid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return "-ERR invalid uuid\n".to_string();
    }
    if rest.eq_ignore_ascii_case("status json") {
        let Some(ls) = LockedSession::locate(uuid) else {
            return format!("-ERR no such channel {uuid}\n");
        };
        return match channel::lookup(ls.as_ptr()) {
            Some(ch) => format!("{}\n", snapshot_json(&ch.uuid, Some(&ch.snapshot()))),
            None => format!("{}\n", snapshot_json(uuid, None)),
        };
    }
    let cmd = match parse_command(rest) {
        Ok(c) => c,
        Err(e) => return format!("-ERR {e}\n{USAGE}"),
    };
    let Some(ls) = LockedSession::locate(uuid) else {
        return format!("-ERR no such channel {uuid}\n");
    };
    let session = ls.as_ptr();
    match cmd {
        Command::Start(opts) => {
            // SAFETY: `ls` holds the session's read lock.
            match unsafe { channel::start(session, &super::config(), &opts) } {
                Ok(()) => "+OK secure mode on\n".to_string(),
                Err(e) => format!("-ERR {e}\n"),
            }
        }
        Command::Stop => {
            // SAFETY: read-locked session.
            if unsafe { channel::stop(session, StopReason::Agent) } {
                "+OK secure mode off\n".to_string()
            } else {
                "-ERR secure mode is not active on this channel\n".to_string()
            }
        }
        other => {
            let Some(ch) = channel::lookup(session) else {
                return if matches!(other, Command::Status) {
                    "+OK inactive\n".to_string()
                } else {
                    "-ERR secure mode is not active on this channel\n".to_string()
                };
            };
            // SAFETY: read-locked session, and `ch` belongs to it.
            match unsafe { ch.command(session, &other) } {
                Ok(events) if matches!(other, Command::Status) => {
                    format!("+OK active\n{}", describe(&events, "status"))
                }
                Ok(_) => format!("+OK {}\n", other.verb()),
                Err(e) => format!("-ERR {e}\n"),
            }
        }
    }
}

/// JSON string literal (RFC 8259 escaping).
fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// The masked snapshot as (key, value) pairs, in a fixed order (empty values omitted).
fn snapshot_pairs(s: &StatusSnapshot) -> Vec<(&'static str, String)> {
    let mut v = vec![("state", s.state.to_string())];
    if let Some(f) = s.field {
        v.push(("field", f.name().to_string()));
    }
    if let Some(l) = s.length {
        v.push(("length", l.to_string()));
    }
    if let Some(a) = s.attempt {
        v.push(("attempt", a.to_string()));
    }
    v.push(("required", s.required.to_header().to_string()));
    v.push(("captured", s.captured.to_header().to_string()));
    if let Some(m) = &s.card_number {
        v.push(("card_number", m.to_string()));
    }
    if let Some(b) = s.brand {
        v.push(("card_brand", b.name().to_string()));
    }
    if let Some(e) = &s.expiration_date {
        v.push(("expiration_date", e.to_string()));
    }
    v
}

/// `{"uuid":..,"active":..,<snapshot>}` (masked data only).
fn snapshot_json(uuid: &str, s: Option<&StatusSnapshot>) -> String {
    let mut o = format!("{{\"uuid\":{},\"active\":{}", json_str(uuid), s.is_some());
    for (k, v) in s.map(snapshot_pairs).unwrap_or_default() {
        o.push_str(&format!(",{}:{}", json_str(k), json_str(&v)));
    }
    o.push('}');
    o
}

const LIST_COLUMNS: [&str; 10] = [
    "uuid",
    "state",
    "field",
    "length",
    "attempt",
    "required",
    "captured",
    "card_number",
    "card_brand",
    "expiration_date",
];

/// `secure_pay_list [json]`: every channel in secure mode, masked, like `show channels`
/// (plain: a `|`-separated header row, one row per channel, `N total.`; json:
/// `{"row_count":N,"rows":[...]}`).
fn list(args: &str) -> String {
    let mut rows: Vec<(String, StatusSnapshot)> = channel::active()
        .iter()
        .map(|ch| (ch.uuid.clone(), ch.snapshot()))
        .filter(|(_, s)| s.state != "finished")
        .collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    match args.trim() {
        "" => {
            let mut o = LIST_COLUMNS.join("|");
            o.push('\n');
            for (uuid, s) in &rows {
                let pairs = snapshot_pairs(s);
                let cells: Vec<&str> = LIST_COLUMNS
                    .iter()
                    .map(|c| {
                        if *c == "uuid" {
                            uuid.as_str()
                        } else {
                            pairs
                                .iter()
                                .find(|(k, _)| k == c)
                                .map_or("", |(_, v)| v.as_str())
                        }
                    })
                    .collect();
                o.push_str(&cells.join("|"));
                o.push('\n');
            }
            o.push_str(&format!("\n{} total.\n", rows.len()));
            o
        }
        a if a.eq_ignore_ascii_case("json") => {
            let items: Vec<String> = rows
                .iter()
                .map(|(u, s)| snapshot_json(u, Some(s)))
                .collect();
            format!(
                "{{\"row_count\":{},\"rows\":[{}]}}\n",
                rows.len(),
                items.join(",")
            )
        }
        _ => "-ERR usage: secure_pay_list [json]\n".to_string(),
    }
}

unsafe extern "C" fn api_secure_pay_list(
    cmd: *const c_char,
    _session: *mut fs::switch_core_session_t,
    stream: *mut fs::switch_stream_handle_t,
) -> fs::switch_status_t {
    guard("secure_pay_list api", fs::SWITCH_STATUS_SUCCESS, || {
        if stream.is_null() {
            return fs::SWITCH_STATUS_SUCCESS;
        }
        // SAFETY: the core passes a NUL-terminated command string or NULL.
        let args = unsafe { util::opt_str(cmd) }.unwrap_or("");
        let answer = list(args);
        // SAFETY: live stream of this call.
        unsafe { write(stream, &answer) };
        fs::SWITCH_STATUS_SUCCESS
    })
}

/// # Safety
/// `session` is live (the app's own thread).
unsafe fn var(session: *mut fs::switch_core_session_t, name: &CStr) -> Option<String> {
    // SAFETY: live session.
    unsafe { util::get_var(util::channel_of(session), name) }
}

/// `secure_pay_wait [submit] [options]`: blocks the dialplan (reading the channel's media, so
/// masking and DTMF capture go on) until the capture ends. Returns when:
/// - every field is valid (`secure_pay_result=complete`; secure mode stays on so an agent or a
///   later `secure_pay_wait submit` can submit, `stop_secure_pay` ends it), or with `submit`,
///   after the connector's answer (`success` / `failed`; secure mode is then stopped);
/// - the session ended: cancelled, timed out (`session_timeout_ms`), stopped, hung up;
/// - no field is being captured and the card is not complete for 1 s (fields given up after
///   `max_attempts`): `secure_pay_result=incomplete`, secure mode stopped.
unsafe extern "C" fn app_secure_pay_wait(
    session: *mut fs::switch_core_session_t,
    data: *const c_char,
) {
    guard("secure_pay_wait app", (), || {
        if session.is_null() {
            return;
        }
        // SAFETY: the core passes a NUL-terminated argument string or NULL.
        let data = unsafe { util::opt_str(data) }.unwrap_or("").trim();
        let (submit, opts) = match data.split_once(char::is_whitespace) {
            Some((w, rest)) if w.eq_ignore_ascii_case("submit") => (true, rest.trim()),
            _ if data.eq_ignore_ascii_case("submit") => (true, ""),
            _ => (false, data),
        };
        // SAFETY: apps run on the session's own thread.
        let chan = unsafe { util::channel_of(session) };
        if channel::lookup(session).is_none() {
            // SAFETY: the app runs on the session's own thread.
            if let Err(e) = unsafe { channel::start(session, &super::config(), opts) } {
                log::error!("secure_pay: app secure_pay_wait refused: {e}");
                // SAFETY: live channel.
                unsafe { util::set_var(chan, c"secure_pay_result", Some("refused")) };
                return;
            }
        } else if !opts.is_empty() {
            log::warn!("secure_pay: secure_pay_wait: secure mode already on; options ignored");
        }
        let mut submitted = false;
        let mut waiting_since: Option<Instant> = None;
        loop {
            // SAFETY: live channel (own thread).
            if unsafe { fs::switch_channel_test_ready(chan, fs::SWITCH_TRUE, fs::SWITCH_FALSE) }
                == 0
            {
                return; // hung up: CLOSE stops secure mode (reason hangup)
            }
            let Some(ch) = channel::lookup(session) else {
                // Finished (cancel/stop/timeout): the last events set the variables right
                // after the registry drops the channel; give them a moment.
                let deadline = Instant::now() + Duration::from_secs(1);
                while Instant::now() < deadline {
                    // SAFETY: live session (own thread).
                    let r = unsafe { var(session, c"secure_pay_result") };
                    // SAFETY: as above.
                    let why = unsafe { var(session, c"secure_pay_stop_reason") };
                    if why.is_some() || r.as_deref() == Some("cancelled") {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                return;
            };
            let state = ch.snapshot().state;
            match state {
                "complete" if !submit => return,
                "complete" if !submitted => {
                    submitted = true;
                    // SAFETY: own thread; `ch` belongs to this session.
                    if let Err(e) = unsafe { ch.command(session, &Command::Submit) } {
                        log::error!("secure_pay: secure_pay_wait: submit refused: {e}");
                        // SAFETY: live channel.
                        unsafe { util::set_var(chan, c"secure_pay_result", Some("failed")) };
                        return;
                    }
                }
                "done" => {
                    // The connector answered (variables set by the submit event).
                    // SAFETY: own thread.
                    unsafe { channel::stop(session, StopReason::Dialplan) };
                    return;
                }
                "waiting" => {
                    let since = *waiting_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= Duration::from_secs(1) {
                        // SAFETY: own thread.
                        unsafe { channel::stop(session, StopReason::Dialplan) };
                        // SAFETY: live channel; after the stop event's own update.
                        unsafe { util::set_var(chan, c"secure_pay_result", Some("incomplete")) };
                        return;
                    }
                }
                _ => waiting_since = None,
            }
            // Reads (and so masks) the channel's media for 60 ms; digits are not touched (no
            // input args). Not `sync`: that flushes the channel's queued audio on every call.
            // SAFETY: own thread; NULL args.
            unsafe { fs::switch_ivr_sleep(session, 60, fs::SWITCH_FALSE, std::ptr::null_mut()) };
        }
    })
}
