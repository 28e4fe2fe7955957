//! A minimal Asterisk Manager Interface (AMI) client: TCP, `Action: Login` with `Events: on`,
//! one reader thread that feeds events into the [`Hub`] and routes responses to waiting
//! callers by `ActionID`, and reconnection with exponential backoff after any loss. After every
//! login it resynchronises: `CoreShowChannels` (which calls still exist) and `SecurePay
//! Command: status` per live channel (the module answers with a masked `SecurePayStatus`
//! event, or an error when secure mode is off), so a page shows the true state again.

use std::collections::HashMap;
use std::io::{BufRead, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::link::{self, lock};
use crate::state::Hub;
use crate::PbxControl;

/// Longest accepted AMI line and message (anything longer is a broken peer).
const MAX_LINE: usize = 8 * 1024;
const MAX_HEADERS: usize = 256;

/// One AMI message (`Key: value` lines up to a blank line), keys compared case-insensitively.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Message {
    pub headers: Vec<(String, String)>,
}

impl Message {
    pub fn new(pairs: &[(&str, &str)]) -> Message {
        Message {
            headers: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// The first value of header `k`.
    pub fn get(&self, k: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(hk, _)| hk.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.as_str())
    }

    /// Wire form. Values with CR/LF are refused (header injection).
    pub fn to_wire(&self) -> Result<String, String> {
        let mut s = String::new();
        for (k, v) in &self.headers {
            if k.contains(['\r', '\n', ':']) || v.contains(['\r', '\n']) {
                return Err(format!("refusing AMI header {k:?} with a line break"));
            }
            s.push_str(k);
            s.push_str(": ");
            s.push_str(v);
            s.push_str("\r\n");
        }
        s.push_str("\r\n");
        Ok(s)
    }

    /// Reads one message. `Ok(None)` at a clean end of stream.
    pub fn read_from(r: &mut impl BufRead) -> std::io::Result<Option<Message>> {
        let mut m = Message::default();
        let mut line = Vec::with_capacity(128);
        loop {
            line.clear();
            let n = Read::take(&mut *r, MAX_LINE as u64).read_until(b'\n', &mut line)?;
            if n == 0 {
                return if m.headers.is_empty() {
                    Ok(None)
                } else {
                    Ok(Some(m))
                };
            }
            if line.last() != Some(&b'\n') && n >= MAX_LINE {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "AMI line too long",
                ));
            }
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end_matches(['\r', '\n']);
            if text.is_empty() {
                if m.headers.is_empty() {
                    continue;
                }
                return Ok(Some(m));
            }
            if m.headers.len() >= MAX_HEADERS {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "AMI message too large",
                ));
            }
            match text.split_once(':') {
                Some((k, v)) => m
                    .headers
                    .push((k.trim().to_string(), v.trim_start().to_string())),
                None => m.headers.push((text.to_string(), String::new())),
            }
        }
    }
}

/// AMI connection settings.
#[derive(Clone, Debug)]
pub struct AmiConfig {
    /// `host:port` (default `127.0.0.1:5038`).
    pub addr: String,
    pub username: String,
    pub secret: String,
    /// First retry delay; doubles up to `backoff_max`.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// How long an action waits for its response.
    pub action_timeout: Duration,
    /// After this long without a byte from Asterisk, send `Action: Ping`...
    pub keepalive: Duration,
    /// ...which must be answered within this (else the connection is declared dead).
    pub keepalive_timeout: Duration,
}

impl AmiConfig {
    pub fn new(addr: &str, username: &str, secret: &str) -> AmiConfig {
        AmiConfig {
            addr: addr.to_string(),
            username: username.to_string(),
            secret: secret.to_string(),
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(10),
            action_timeout: Duration::from_secs(5),
            keepalive: Duration::from_secs(4),
            keepalive_timeout: Duration::from_secs(4),
        }
    }
}

type Pending = Arc<Mutex<HashMap<String, Sender<Message>>>>;

/// The running client: send actions, stop.
pub struct Ami {
    cfg: AmiConfig,
    writer: Mutex<Option<TcpStream>>,
    pending: Pending,
    next_id: AtomicU64,
    stop: AtomicBool,
    hub: Arc<Hub>,
}

impl Ami {
    /// Starts the connection thread (connects, logs in, reconnects forever until [`Ami::stop`]).
    pub fn start(cfg: AmiConfig, hub: Arc<Hub>) -> Arc<Ami> {
        let ami = Arc::new(Ami {
            cfg,
            writer: Mutex::new(None),
            pending: Arc::new(Mutex::new(HashMap::new())),
            next_id: AtomicU64::new(1),
            stop: AtomicBool::new(false),
            hub,
        });
        let a = Arc::clone(&ami);
        let _ = thread::Builder::new()
            .name("ami".into())
            .spawn(move || a.run());
        ami
    }

    /// Stops reconnecting and closes the connection.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(s) = lock(&self.writer).take() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    /// AMI `Action: SecurePay` (see [`PbxControl::command`]).
    pub fn secure_pay(
        &self,
        channel: &str,
        verb: &str,
        field: Option<&str>,
        options: &str,
    ) -> Result<Result<String, String>, String> {
        let mut pairs: Vec<(&str, &str)> = vec![
            ("Action", "SecurePay"),
            ("Channel", channel),
            ("Command", verb),
        ];
        if !options.is_empty() {
            pairs.push(("Options", options));
        }
        if let Some(f) = field {
            pairs.push(("Field", f));
        }
        let r = self.action(&pairs)?;
        let text = r.get("Message").unwrap_or("").to_string();
        if r.get("Response")
            .is_some_and(|v| v.eq_ignore_ascii_case("success"))
        {
            Ok(Ok(text))
        } else {
            Ok(Err(text))
        }
    }

    fn run(self: Arc<Self>) {
        let mut ever_connected = false;
        link::keep_connected(
            &format!("AMI {}", self.cfg.addr),
            &self.stop,
            (self.cfg.backoff_min, self.cfg.backoff_max),
            &self.hub,
            "the PBX closed the AMI connection",
            || self.session(&mut ever_connected),
            || {
                *lock(&self.writer) = None;
                // wake every waiter: their responses will never come
                lock(&self.pending).clear();
            },
        );
    }

    /// One connection: connect, log in, read until the connection ends. Err carries whether
    /// the login had succeeded.
    fn session(self: &Arc<Self>, ever_connected: &mut bool) -> Result<(), (bool, String)> {
        let mut c = link::connect(&self.cfg.addr)?;
        // banner: "Asterisk Call Manager/x.y.z"
        let mut banner = String::new();
        c.reader
            .by_ref()
            .take(MAX_LINE as u64)
            .read_line(&mut banner)
            .map_err(|e| (false, format!("no AMI banner: {e}")))?;
        if !banner.contains("Call Manager") {
            return Err((
                false,
                format!("not an AMI server (banner {:?})", banner.trim()),
            ));
        }
        let mut w = c.stream.try_clone().map_err(|e| (false, e.to_string()))?;
        let login = Message::new(&[
            ("Action", "Login"),
            ("ActionID", "sp-agent-login"),
            ("Username", &self.cfg.username),
            ("Secret", &self.cfg.secret),
            ("Events", "on"),
        ])
        .to_wire()
        .map_err(|e| (false, e))?;
        w.write_all(login.as_bytes())
            .map_err(|e| (false, format!("login write failed: {e}")))?;
        // wait for the login response (events may not come before it, but skip any)
        loop {
            let m = Message::read_from(&mut c.reader)
                .map_err(|e| (false, format!("login failed: {e}")))?
                .ok_or((false, "connection closed during login".to_string()))?;
            if m.get("ActionID") == Some("sp-agent-login") || m.get("Response").is_some() {
                if m.get("Response")
                    .is_some_and(|r| r.eq_ignore_ascii_case("success"))
                {
                    break;
                }
                return Err((
                    false,
                    format!(
                        "login refused: {}",
                        m.get("Message").unwrap_or("no reason given")
                    ),
                ));
            }
        }
        let me = Arc::clone(self);
        let w = c.logged_in(
            "ami",
            self.cfg.action_timeout,
            (self.cfg.keepalive, self.cfg.keepalive_timeout),
            move |t| me.action_within(&[("Action", "Ping")], t).map(|_| ()),
        )?;
        *lock(&self.writer) = Some(w);
        link::mark_connected(&self.hub, ever_connected);
        log::info!("secure-pay-agent: AMI connected to {}", self.cfg.addr);
        let me = Arc::clone(self);
        c.spawn_resync("ami", move || me.resync())?;
        loop {
            let r = Message::read_from(&mut c.reader);
            if let Some(end) = c.ended(&r, &self.stop) {
                return end;
            }
            if let Ok(Some(m)) = r {
                log::trace!(
                    "secure-pay-agent: AMI {} {}",
                    if m.get("Event").is_some() {
                        "event"
                    } else {
                        "response"
                    },
                    m.get("Event").or(m.get("Response")).unwrap_or("?")
                );
                self.dispatch(m)
            }
        }
    }

    fn dispatch(&self, m: Message) {
        if let Some(id) = m.get("ActionID") {
            let tx = lock(&self.pending).get(id).cloned();
            if let Some(tx) = tx {
                let is_event = m.get("Event").is_some();
                let _ = tx.send(m.clone());
                if !is_event {
                    return;
                }
            }
        }
        if m.get("Event").is_some() {
            self.hub.apply_event(&m);
        }
    }

    fn register(&self) -> (String, Receiver<Message>) {
        let id = format!("sp-agent-{}", self.next_id.fetch_add(1, Ordering::SeqCst));
        let (tx, rx) = channel();
        lock(&self.pending).insert(id.clone(), tx);
        (id, rx)
    }

    fn write(&self, m: &Message) -> Result<(), String> {
        let wire = m.to_wire()?;
        let mut g = lock(&self.writer);
        let Some(w) = g.as_mut() else {
            return Err("not connected to the PBX (reconnecting)".into());
        };
        w.write_all(wire.as_bytes())
            .map_err(|e| format!("cannot send to the PBX: {e}"))
    }

    /// Sends an action and waits for its `Response`. `Ok` carries the response (which may be
    /// `Response: Error`).
    pub fn action(&self, pairs: &[(&str, &str)]) -> Result<Message, String> {
        self.action_within(pairs, self.cfg.action_timeout)
    }

    /// [`Ami::action`] with its own timeout.
    pub fn action_within(
        &self,
        pairs: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<Message, String> {
        let (id, rx) = self.register();
        let mut all = vec![("ActionID", id.as_str())];
        all.extend_from_slice(pairs);
        let res = self.write(&Message::new(&all)).and_then(|()| {
            let deadline = Instant::now() + timeout;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match rx.recv_timeout(left) {
                    Ok(m) if m.get("Response").is_some() => return Ok(m),
                    Ok(_) => continue,
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                        return Err("the PBX did not answer in time".into())
                    }
                    Err(_) => return Err("the connection to the PBX was lost".into()),
                }
            }
        });
        lock(&self.pending).remove(&id);
        res
    }

    /// `CoreShowChannels`: (channel, uniqueid, linkedid) of every channel.
    fn core_show_channels(&self) -> Result<Vec<(String, String, String)>, String> {
        let (id, rx) = self.register();
        let res = self
            .write(&Message::new(&[
                ("Action", "CoreShowChannels"),
                ("ActionID", &id),
            ]))
            .and_then(|()| {
                let mut out = Vec::new();
                let deadline = Instant::now() + self.cfg.action_timeout;
                loop {
                    let left = deadline.saturating_duration_since(Instant::now());
                    let m = rx
                        .recv_timeout(left)
                        .map_err(|_| "CoreShowChannels did not complete".to_string())?;
                    if m.get("Response")
                        .is_some_and(|r| r.eq_ignore_ascii_case("error"))
                    {
                        return Err(format!(
                            "CoreShowChannels refused: {}",
                            m.get("Message").unwrap_or("")
                        ));
                    }
                    match m.get("Event") {
                        Some("CoreShowChannel") => out.push((
                            m.get("Channel").unwrap_or("").to_string(),
                            m.get("Uniqueid").unwrap_or("").to_string(),
                            m.get("Linkedid").unwrap_or("").to_string(),
                        )),
                        Some("CoreShowChannelsComplete") => return Ok(out),
                        _ => {}
                    }
                }
            });
        lock(&self.pending).remove(&id);
        res
    }

    /// After a login: which calls still exist (`CoreShowChannels`), then each live call's
    /// secure state. An error ends the connection (see [`link::Conn::spawn_resync`]): the page must not
    /// show calls that may be stale while the link is reported up.
    fn resync(&self) -> Result<(), String> {
        let list = self.core_show_channels()?;
        self.hub.resync_channels(&list);
        for (id, chan) in self.hub.live_calls(crate::state::MAX_CALLS) {
            if self.stop.load(Ordering::SeqCst) {
                return Ok(());
            }
            match self.action(&[
                ("Action", "SecurePay"),
                ("Channel", address(&id, &chan)),
                ("Command", "status"),
            ]) {
                Ok(r)
                    if r.get("Response")
                        .is_some_and(|v| v.eq_ignore_ascii_case("error")) =>
                {
                    // "Secure mode is not active on this channel" (or no such channel)
                    self.hub.mark_not_secure(&id);
                }
                Ok(_) => {} // the SecurePayStatus event carries the state
                Err(e) => return Err(format!("status of a call: {e}")),
            }
        }
        Ok(())
    }
}

/// What an action names the call by: its Uniqueid (the call's key here), which the module
/// takes as exactly as a channel name, or the name for a call known without one. Never the
/// name when the Uniqueid is known: channel names are reused (their counter starts again when
/// Asterisk restarts), so an old page could otherwise drive another customer's call that now
/// has the same name; a Uniqueid carries its creation time.
fn address<'a>(call_id: &'a str, channel: &'a str) -> &'a str {
    if call_id.is_empty() {
        channel
    } else {
        call_id
    }
}

impl PbxControl for Ami {
    fn command(
        &self,
        channel: &str,
        call_id: &str,
        verb: &str,
        field: Option<&str>,
        options: &str,
    ) -> Result<Result<String, String>, String> {
        self.secure_pay(address(call_id, channel), verb, field, options)
    }

    fn stop(&self) {
        Ami::stop(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_wire() {
        let raw = b"Event: SecurePayDigit\r\nChannel: Local/a@b-0001;1\r\nSecurePay-Masked: ***\r\n\r\nResponse: Success\r\n\r\n";
        let mut r = std::io::Cursor::new(&raw[..]);
        let m = Message::read_from(&mut r).unwrap().unwrap();
        assert_eq!(m.get("event"), Some("SecurePayDigit"));
        assert_eq!(m.get("Channel"), Some("Local/a@b-0001;1"));
        assert_eq!(m.get("SecurePay-Masked"), Some("***"));
        let m2 = Message::read_from(&mut r).unwrap().unwrap();
        assert_eq!(m2.get("Response"), Some("Success"));
        assert_eq!(Message::read_from(&mut r).unwrap(), None);
        assert!(Message::new(&[("Channel", "x\r\nAction: Originate")])
            .to_wire()
            .is_err());
        assert_eq!(
            Message::new(&[("Action", "Ping")]).to_wire().unwrap(),
            "Action: Ping\r\n\r\n"
        );
    }
}
