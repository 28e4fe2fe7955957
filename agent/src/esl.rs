//! A minimal FreeSWITCH event socket (ESL, inbound mode) client, the FreeSWITCH counterpart of
//! [`ami`](crate::ami): `auth`, `event plain CHANNEL_CREATE CHANNEL_DESTROY CUSTOM
//! secure_pay::...`, commands with `api uuid_secure_pay <uuid> <verb> [args]`, reconnection with
//! backoff and, after every (re)connect, a resync (`api show channels as json`, then
//! `uuid_secure_pay <uuid> status` per channel).
//!
//! Events are translated into the same shape the state tracker reads from AMI: `Event:
//! SecurePay<Name>` (from `secure_pay::<name>`), `Newchannel` (CHANNEL_CREATE), `Hangup`
//! (CHANNEL_DESTROY), with `Channel` = `Channel-Name`, `Uniqueid` = `Unique-ID` (the call key on
//! FreeSWITCH is the channel UUID) and every other header as sent (URL-decoded).

use std::collections::VecDeque;
use std::io::{BufRead, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::ami::Message;
use crate::link::{self, lock};
use crate::sign::valid_call_id;
use crate::state::Hub;
use crate::PbxControl;

const MAX_LINE: usize = 8 * 1024;
/// Largest event (or other non-API) frame body.
pub const MAX_EVENT_BODY: usize = 1024 * 1024;
/// Largest `api/response` body: `show channels as json` is about 2 KiB per channel, so this
/// holds ~30,000 channels. Bodies are read as they arrive (no allocation up front).
pub const MAX_API_BODY: usize = 64 * 1024 * 1024;

/// The event subscription (plain format).
pub const SUBSCRIBE: &str = "event plain CHANNEL_CREATE CHANNEL_DESTROY CUSTOM \
secure_pay::start secure_pay::capture secure_pay::digit secure_pay::field secure_pay::complete \
secure_pay::submit secure_pay::cancel secure_pay::stop secure_pay::error secure_pay::status";

/// ESL connection settings.
#[derive(Clone, Debug)]
pub struct EslConfig {
    /// `host:port` (FreeSWITCH default `127.0.0.1:8021`).
    pub addr: String,
    pub password: String,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    pub command_timeout: Duration,
    /// After this long without a byte from FreeSWITCH, send `api status`...
    pub keepalive: Duration,
    /// ...which must be answered within this (else the connection is declared dead).
    pub keepalive_timeout: Duration,
}

impl EslConfig {
    pub fn new(addr: &str, password: &str) -> EslConfig {
        EslConfig {
            addr: addr.to_string(),
            password: password.to_string(),
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(10),
            command_timeout: Duration::from_secs(5),
            keepalive: Duration::from_secs(4),
            keepalive_timeout: Duration::from_secs(4),
        }
    }
}

/// One ESL frame: its headers and body.
#[derive(Debug, Default)]
pub struct Frame {
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Frame {
    pub fn get(&self, k: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(hk, _)| hk.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.as_str())
    }
}

/// `%XX` decoding (ESL plain event values are URL-encoded).
pub fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Some(v) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_headers(text: &str, decode: bool) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| {
            let v = v.trim_start();
            (
                k.trim().to_string(),
                if decode { url_decode(v) } else { v.to_string() },
            )
        })
        .collect()
}

/// Reads one frame (`Ok(None)` at end of stream).
pub fn read_frame(r: &mut impl BufRead) -> std::io::Result<Option<Frame>> {
    let mut head = String::new();
    let mut line = String::new();
    loop {
        line.clear();
        let n = Read::take(&mut *r, MAX_LINE as u64).read_line(&mut line)?;
        if n == 0 {
            return Ok(None);
        }
        if line.trim_end().is_empty() {
            if head.is_empty() {
                continue;
            }
            break;
        }
        if head.len() > 64 * 1024 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "ESL header too large",
            ));
        }
        head.push_str(&line);
    }
    let mut f = Frame {
        headers: parse_headers(&head, false),
        body: String::new(),
    };
    if let Some(len) = f.get("Content-Length") {
        let len: usize = len.trim().parse().map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "bad ESL Content-Length")
        })?;
        let max = if f.get("Content-Type") == Some("api/response") {
            MAX_API_BODY
        } else {
            MAX_EVENT_BODY
        };
        if len > max {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("ESL body of {len} bytes is over the limit of {max}"),
            ));
        }
        // grows as the bytes arrive: a peer announcing a huge body costs nothing until sent
        let mut body = Vec::with_capacity(len.min(64 * 1024));
        Read::take(&mut *r, len as u64).read_to_end(&mut body)?;
        if body.len() < len {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        f.body = String::from_utf8_lossy(&body).into_owned();
    }
    Ok(Some(f))
}

/// Translates a plain event body into the tracker's message shape (None: not ours).
pub fn event_message(body: &str) -> Option<Message> {
    let h = parse_headers(body.split("\n\n").next().unwrap_or(""), true);
    let get = |k: &str| {
        h.iter()
            .find(|(hk, _)| hk.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.as_str())
    };
    let name = match get("Event-Name")? {
        "CHANNEL_CREATE" => "Newchannel".to_string(),
        "CHANNEL_DESTROY" => "Hangup".to_string(),
        "CUSTOM" => {
            let sub = get("Event-Subclass")?.strip_prefix("secure_pay::")?;
            let mut n = String::from("SecurePay");
            let mut cs = sub.chars();
            let first = cs.next()?;
            n.push(first.to_ascii_uppercase());
            n.extend(cs);
            n
        }
        _ => return None,
    };
    let mut m = Message::new(&[
        ("Event", &name),
        ("Channel", get("Channel-Name").unwrap_or("")),
        ("Uniqueid", get("Unique-ID").unwrap_or("")),
        ("Linkedid", get("Channel-Call-UUID").unwrap_or("")),
    ]);
    for (k, v) in &h {
        if k.starts_with("SecurePay-") || k == "Reason" {
            m.headers.push((k.clone(), v.clone()));
        }
    }
    Some(m)
}

/// The channels in a `show channels as json` answer: (name, uuid, call_uuid) per row; None
/// when it is not such an answer (e.g. `-ERR SQL disabled`). Only the three columns are
/// decoded, whatever else a row carries.
pub fn channel_rows(body: &str) -> Option<Vec<(String, String, String)>> {
    #[derive(serde::Deserialize)]
    struct Row {
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        uuid: Option<String>,
        #[serde(default)]
        call_uuid: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Rows {
        #[serde(default)]
        rows: Vec<Row>,
    }
    let v: Rows = serde_json::from_str(body.trim()).ok()?;
    Some(
        v.rows
            .into_iter()
            .map(|r| {
                (
                    r.name.unwrap_or_default(),
                    r.uuid.unwrap_or_default(),
                    r.call_uuid.unwrap_or_default(),
                )
            })
            .collect(),
    )
}

type Reply = Sender<Frame>;

/// The running ESL client.
pub struct Esl {
    cfg: EslConfig,
    writer: Mutex<Option<TcpStream>>,
    /// Waiters for `command/reply` and `api/response` frames, in request order.
    pending: Mutex<VecDeque<Reply>>,
    stop: AtomicBool,
    hub: Arc<Hub>,
}

impl Esl {
    pub fn start(cfg: EslConfig, hub: Arc<Hub>) -> Arc<Esl> {
        let esl = Arc::new(Esl {
            cfg,
            writer: Mutex::new(None),
            pending: Mutex::new(VecDeque::new()),
            stop: AtomicBool::new(false),
            hub,
        });
        let e = Arc::clone(&esl);
        let _ = thread::Builder::new()
            .name("esl".into())
            .spawn(move || e.run());
        esl
    }

    fn run(self: Arc<Self>) {
        let mut ever = false;
        link::keep_connected(
            &format!("ESL {}", self.cfg.addr),
            &self.stop,
            (self.cfg.backoff_min, self.cfg.backoff_max),
            &self.hub,
            "FreeSWITCH closed the event socket",
            || self.session(&mut ever),
            || {
                *lock(&self.writer) = None;
                lock(&self.pending).clear();
            },
        );
    }

    fn session(self: &Arc<Self>, ever: &mut bool) -> Result<(), (bool, String)> {
        let mut c = link::connect(&self.cfg.addr)?;
        let r = &mut c.reader;
        let mut w = c.stream.try_clone().map_err(|e| (false, e.to_string()))?;
        let f = read_frame(&mut *r)
            .map_err(|e| (false, format!("no ESL greeting: {e}")))?
            .ok_or((false, "connection closed".to_string()))?;
        if f.get("Content-Type") != Some("auth/request") {
            return Err((false, "not a FreeSWITCH event socket".into()));
        }
        if self.cfg.password.contains(['\r', '\n']) {
            return Err((false, "the ESL password contains a line break".into()));
        }
        let mut expect_ok = |cmd: &str, what: &str| -> Result<(), (bool, String)> {
            w.write_all(format!("{cmd}\n\n").as_bytes())
                .map_err(|e| (false, format!("{what}: {e}")))?;
            loop {
                let f = read_frame(&mut *r)
                    .map_err(|e| (false, format!("{what}: {e}")))?
                    .ok_or((false, format!("{what}: connection closed")))?;
                if f.get("Content-Type") == Some("command/reply") {
                    let t = f.get("Reply-Text").unwrap_or("");
                    return if t.starts_with("+OK") {
                        Ok(())
                    } else {
                        Err((false, format!("{what} refused: {t}")))
                    };
                }
            }
        };
        expect_ok(&format!("auth {}", self.cfg.password), "login")?;
        expect_ok(SUBSCRIBE, "event subscription")?;
        let me = Arc::clone(self);
        let w = c.logged_in(
            "esl",
            self.cfg.command_timeout,
            (self.cfg.keepalive, self.cfg.keepalive_timeout),
            move |t| me.api_within("status", t).map(|_| ()),
        )?;
        *lock(&self.writer) = Some(w);
        link::mark_connected(&self.hub, ever);
        let me = Arc::clone(self);
        c.spawn_resync("esl", move || me.resync())?;
        loop {
            let got = read_frame(&mut c.reader);
            if let Some(end) = c.ended(&got, &self.stop) {
                return end;
            }
            if let Ok(Some(f)) = got {
                match f.get("Content-Type").unwrap_or("") {
                    "text/event-plain" => {
                        if let Some(m) = event_message(&f.body) {
                            log::trace!(
                                "secure-pay-agent: ESL event {}",
                                m.get("Event").unwrap_or("?")
                            );
                            self.hub.apply_event(&m);
                        }
                    }
                    "command/reply" | "api/response" => {
                        if let Some(tx) = lock(&self.pending).pop_front() {
                            let _ = tx.send(f);
                        }
                    }
                    "text/disconnect-notice" => return Ok(()),
                    _ => {}
                }
            }
        }
    }

    /// `api <cmd>`: the response body.
    pub fn api(&self, cmd: &str) -> Result<String, String> {
        self.api_within(cmd, self.cfg.command_timeout)
    }

    /// [`Esl::api`] with its own timeout.
    pub fn api_within(&self, cmd: &str, timeout: Duration) -> Result<String, String> {
        if cmd.contains(['\r', '\n']) {
            return Err("refusing an ESL command with a line break".into());
        }
        let (tx, rx) = channel();
        {
            let mut w = lock(&self.writer);
            let Some(s) = w.as_mut() else {
                return Err("not connected to FreeSWITCH (reconnecting)".into());
            };
            // queue before writing, under the writer lock, so replies match requests in order
            lock(&self.pending).push_back(tx);
            s.write_all(format!("api {cmd}\n\n").as_bytes())
                .map_err(|e| format!("cannot send to FreeSWITCH: {e}"))?;
        }
        rx.recv_timeout(timeout)
            .map(|f| f.body)
            .map_err(|_| "FreeSWITCH did not answer in time (or the connection was lost)".into())
    }

    /// After a login: which calls still exist (`show channels as json`; per call with
    /// `uuid_exists` when the core has no SQL), then each live call's secure state. An error
    /// ends the connection (see [`link::Conn::spawn_resync`]): the page must not show calls that may be
    /// stale while the link is reported up.
    fn resync(&self) -> Result<(), String> {
        let body = self.api("show channels as json")?;
        match channel_rows(&body) {
            Some(list) => {
                log::debug!("secure-pay-agent: ESL resync: {} channels", list.len());
                self.hub.resync_channels(&list);
            }
            None => {
                // no channel list (e.g. core SQL disabled: "-ERR SQL disabled"): ask per call
                for (id, _) in self.hub.live_calls(crate::state::MAX_CALLS) {
                    if valid_call_id(&id)
                        && self
                            .api(&format!("uuid_exists {id}"))
                            .map_err(|e| format!("uuid_exists: {e}"))?
                            .trim()
                            == "false"
                    {
                        self.hub.end(&id);
                    }
                }
            }
        }
        for (id, _) in self.hub.live_calls(crate::state::MAX_CALLS) {
            if self.stop.load(Ordering::SeqCst) {
                return Ok(());
            }
            if !valid_call_id(&id) {
                continue;
            }
            match self.api(&format!("uuid_secure_pay {id} status")) {
                // "+OK inactive" (FreeSWITCH module) or "-ERR ...": secure mode is off
                Ok(b)
                    if b.trim_start().starts_with("-ERR")
                        || b.trim_start().starts_with("+OK inactive") =>
                {
                    self.hub.mark_not_secure(&id)
                }
                Ok(_) => {}
                Err(e) => return Err(format!("status of a call: {e}")),
            }
        }
        Ok(())
    }
}

impl PbxControl for Esl {
    fn command(
        &self,
        _channel: &str,
        call_id: &str,
        verb: &str,
        field: Option<&str>,
        options: &str,
    ) -> Result<Result<String, String>, String> {
        if !valid_call_id(call_id) {
            return Ok(Err("bad call id".into()));
        }
        let mut cmd = format!("uuid_secure_pay {call_id} {verb}");
        if let Some(f) = field {
            cmd.push(' ');
            cmd.push_str(f);
        }
        if !options.is_empty() {
            cmd.push(' ');
            cmd.push_str(options);
        }
        let body = self.api(&cmd)?;
        let t = body.trim().to_string();
        if t.starts_with("+OK") {
            Ok(Ok(t))
        } else {
            Ok(Err(t.trim_start_matches("-ERR").trim().to_string()))
        }
    }

    fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(s) = lock(&self.writer).take() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    fn probe(&self, call_id: &str) -> Option<String> {
        if !valid_call_id(call_id)
            || self.api(&format!("uuid_exists {call_id}")).ok()?.trim() != "true"
        {
            return None;
        }
        let name = self
            .api(&format!("uuid_getvar {call_id} channel_name"))
            .ok()?;
        let name = name.trim();
        if name.is_empty() || name.starts_with("-ERR") || name == "_undef_" {
            return None;
        }
        Some(name.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_and_events() {
        let body = "Event-Name: CUSTOM\nEvent-Subclass: secure_pay%3A%3Adigit\nUnique-ID: 6f0c\nChannel-Name: sofia/internal/1000%40127.0.0.1\nSecurePay-Masked: ****\nSecurePay-Length: 4\n\n";
        let raw = format!(
            "Content-Length: {}\nContent-Type: text/event-plain\n\n{body}Content-Type: api/response\nContent-Length: 3\n\n+OK",
            body.len()
        );
        let mut r = std::io::Cursor::new(raw.into_bytes());
        let f = read_frame(&mut r).unwrap().unwrap();
        assert_eq!(f.get("Content-Type"), Some("text/event-plain"));
        let m = event_message(&f.body).unwrap();
        assert_eq!(m.get("Event"), Some("SecurePayDigit"));
        assert_eq!(m.get("Channel"), Some("sofia/internal/1000@127.0.0.1"));
        assert_eq!(m.get("Uniqueid"), Some("6f0c"));
        assert_eq!(m.get("SecurePay-Masked"), Some("****"));
        let f2 = read_frame(&mut r).unwrap().unwrap();
        assert_eq!(f2.body, "+OK");
        assert!(read_frame(&mut r).unwrap().is_none());
        assert!(event_message("Event-Name: HEARTBEAT\n\n").is_none());
        assert_eq!(
            event_message("Event-Name: CHANNEL_DESTROY\nUnique-ID: x\n\n")
                .unwrap()
                .get("Event"),
            Some("Hangup")
        );
        assert_eq!(url_decode("a%20b%zz%4"), "a b%zz%4");
    }
}
