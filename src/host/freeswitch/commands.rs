//! Dialplan apps `secure_pay [options]` / `stop_secure_pay` and the API
//! `uuid_secure_pay <uuid> <verb> [args]` for agent desktops (ESL `api`/`bgapi`).

use std::ffi::c_char;

use crate::core::capture::{parse_command, Command, StopReason};
use crate::core::events::Event;
use crate::ffi::freeswitch as fs;
use crate::host::guard;

use super::channel::{self, StartError};
use super::util::{self, LockedSession};

const USAGE: &str = "-ERR usage: uuid_secure_pay <uuid> start [options]|capture <field>|clear|restart|submit|cancel|stop|status\n";

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
            c"Masks DTMF in the customer's audio, swallows RFC 2833 / SIP INFO digits and captures them into payment fields; emits CUSTOM secure_pay::* events. Options: key=value list (see README).".as_ptr(),
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
            c"<uuid> start [options]|capture <field>|clear|restart|submit|cancel|stop|status"
                .as_ptr(),
        )
    };
    if app.is_null() || stop.is_null() || api.is_null() {
        log::error!("secure_pay: could not register the apps/API");
        return Err(());
    }
    Ok(())
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
                // SAFETY: live channel.
                unsafe { util::set_var(channel, c"secure_pay_result", Some("refused")) };
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
