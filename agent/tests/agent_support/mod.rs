//! Test support for the agent page service: a fake Asterisk AMI server on 127.0.0.1 that
//! speaks AMI (banner, Login, CoreShowChannels, the module's `SecurePay` action), records the
//! actions it receives, and produces `SecurePay*` events from the REAL capture engine
//! (`core::capture::Session`) with the same headers the Asterisk adapter publishes
//! (`Channel`, `Uniqueid`, `Linkedid` + `Event::for_each_header`). A simulated customer keys
//! digits with [`FakePbx::key`]. It can be stopped and restarted on the same port.
//!
//! Also a tiny HTTP client (raw TCP) for the service.
#![allow(dead_code)]

pub mod fake_esl;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use secure_pay::core::capture::{parse_command, CaptureConfig, Command, DigitSource, Session};
use secure_pay::core::digit::Digit;
use secure_pay::core::events::Event;
use secure_pay::core::payment::{ConnectorProfile, PaymentOutcome};
use secure_pay_agent::ami::Message;

pub const AMI_USER: &str = "agent";
pub const AMI_SECRET: &str = "s3cret-ami";
pub const LINK_SECRET: &[u8] = b"test-link-secret-0123456789abcdef";

/// A service on 127.0.0.1 (any port) following `pbx` with fast reconnects, `tune` applied to
/// its config; returns once it is logged in and connected.
pub fn service_tuned(
    pbx: &FakePbx,
    tune: impl FnOnce(&mut secure_pay_agent::Config),
) -> secure_pay_agent::Service {
    let t = Duration::from_secs(10);
    let mut ami = secure_pay_agent::ami::AmiConfig::new(&pbx.addr(), AMI_USER, AMI_SECRET);
    ami.backoff_min = Duration::from_millis(100);
    ami.backoff_max = Duration::from_millis(400);
    let signer = secure_pay_agent::sign::Signer::new(LINK_SECRET).unwrap();
    let mut cfg = secure_pay_agent::Config::new(ami, signer);
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    tune(&mut cfg);
    let svc = secure_pay_agent::Service::start(cfg).unwrap();
    assert!(pbx.wait_logins(1, t));
    assert!(wait_until(t, || svc.hub().pbx().connected));
    svc
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

pub struct Chan {
    pub name: String,
    pub uid: String,
    pub linked: String,
    pub session: Option<Session>,
}

struct State {
    chans: Vec<Chan>,
    clients: Vec<TcpStream>,
    actions: Vec<Message>,
    outcome: PaymentOutcome,
    clock_ms: u64,
    logins: u32,
    /// The PBX host vanished: nothing is answered or sent, the sockets stay open.
    frozen: bool,
    /// Refuse this many more `CoreShowChannels` (a resync that fails).
    refuse_list: u32,
}

/// The fake PBX.
pub struct FakePbx {
    pub port: u16,
    st: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    accept: Option<thread::JoinHandle<()>>,
}

fn wire(name: &str, c: &Chan, ev: Option<&Event>, extra: &[(&str, &str)]) -> String {
    let mut s = format!(
        "Event: {name}\r\nPrivilege: call,all\r\nChannel: {}\r\nUniqueid: {}\r\nLinkedid: {}\r\n",
        c.name, c.uid, c.linked
    );
    if let Some(ev) = ev {
        ev.for_each_header(&mut |k, v| s.push_str(&format!("{k}: {v}\r\n")));
    }
    for (k, v) in extra {
        s.push_str(&format!("{k}: {v}\r\n"));
    }
    s.push_str("\r\n");
    s
}

fn ami_name(ev: &Event) -> String {
    let n = ev.name();
    let mut s = String::from("SecurePay");
    s.push_str(&n[..1].to_ascii_uppercase());
    s.push_str(&n[1..]);
    s
}

fn broadcast(st: &mut State, text: &str) {
    if st.frozen {
        return;
    }
    st.clients
        .retain_mut(|c| c.write_all(text.as_bytes()).is_ok());
}

/// Runs a session call and publishes its events for channel `i`.
fn with_session(
    st: &mut State,
    i: usize,
    f: impl FnOnce(&mut Session, u64, &mut dyn FnMut(Event)) -> Result<(), String>,
) -> Result<(), String> {
    let now = st.clock_ms;
    let mut evs = Vec::new();
    let res = {
        let Some(s) = st.chans[i].session.as_mut() else {
            return Err("Secure mode is not active on this channel".into());
        };
        f(s, now, &mut |e| evs.push(e))
    };
    for e in &evs {
        let text = wire(&ami_name(e), &st.chans[i], Some(e), &[]);
        broadcast(st, &text);
    }
    if st.chans[i]
        .session
        .as_ref()
        .is_some_and(|s| s.is_finished())
    {
        st.chans[i].session = None;
    }
    res
}

pub fn capture_config() -> CaptureConfig {
    CaptureConfig {
        connector: Some(ConnectorProfile {
            name: "test".into(),
            url: "https://127.0.0.1:9/pay".into(),
            currency_code: "USD".into(),
            ..ConnectorProfile::default()
        }),
        charge_amount: Some(1000),
        ..CaptureConfig::default()
    }
}

fn handle_action(st: &mut State, m: &Message) -> String {
    let id = m.get("ActionID").unwrap_or("").to_string();
    let ok = |msg: &str| format!("Response: Success\r\nActionID: {id}\r\nMessage: {msg}\r\n\r\n");
    let err = |msg: &str| format!("Response: Error\r\nActionID: {id}\r\nMessage: {msg}\r\n\r\n");
    match m.get("Action").unwrap_or("").to_ascii_lowercase().as_str() {
        "coreshowchannels" if st.refuse_list > 0 => {
            st.refuse_list -= 1;
            err("Permission denied")
        }
        "coreshowchannels" => {
            let mut out = format!(
                "Response: Success\r\nActionID: {id}\r\nEventList: start\r\nMessage: Channels will follow\r\n\r\n"
            );
            for c in &st.chans {
                out.push_str(&format!(
                    "Event: CoreShowChannel\r\nActionID: {id}\r\nChannel: {}\r\nUniqueid: {}\r\nLinkedid: {}\r\n\r\n",
                    c.name, c.uid, c.linked
                ));
            }
            out.push_str(&format!(
                "Event: CoreShowChannelsComplete\r\nActionID: {id}\r\nEventList: Complete\r\nListItems: {}\r\n\r\n",
                st.chans.len()
            ));
            out
        }
        "securepay" => {
            let chan = m.get("Channel").unwrap_or("");
            // As the module: a channel name or a Uniqueid, exactly.
            let Some(i) = st
                .chans
                .iter()
                .position(|c| c.name == chan || c.uid == chan)
            else {
                return err(&format!("No such channel: {chan}"));
            };
            let command = m.get("Command").unwrap_or("");
            let field = m.get("Field").unwrap_or("");
            let verb = command
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_lowercase();
            match verb.as_str() {
                "start" => {
                    if st.chans[i].session.is_some() {
                        return err(
                            "start refused: secure capture is already running on this channel",
                        );
                    }
                    let now = st.clock_ms;
                    let mut evs = Vec::new();
                    let mut s = Session::start(&capture_config(), now, &mut |e| evs.push(e));
                    s.set_id(&st.chans[i].uid.clone());
                    st.chans[i].session = Some(s);
                    for e in &evs {
                        let text = wire(&ami_name(e), &st.chans[i], Some(e), &[]);
                        broadcast(st, &text);
                    }
                    ok("Secure mode started")
                }
                _ => {
                    let text = if field.is_empty() {
                        command.to_string()
                    } else {
                        format!("{command} {field}")
                    };
                    let cmd = match parse_command(&text) {
                        Ok(c) => c,
                        Err(e) => return err(&format!("bad command: {e}")),
                    };
                    let outcome = st.outcome.clone();
                    let r = with_session(st, i, |s, now, sink| {
                        s.command(&cmd, now, sink).map_err(|e| e.to_string())?;
                        if cmd == Command::Submit {
                            // the connector's answer (loopback HTTPS in the real module)
                            if let Some(req) = s.take_payment_request() {
                                drop(req);
                                s.on_payment_outcome(outcome, now, sink);
                            }
                        }
                        Ok(())
                    });
                    match r {
                        Ok(()) => ok(&format!("{verb} accepted")),
                        Err(e) if e.starts_with("Secure mode is not active") => err(&e),
                        Err(e) => err(&format!("{verb} refused: {e}")),
                    }
                }
            }
        }
        "ping" => ok("Pong"),
        "logoff" => ok("Goodbye"),
        _ => err("Invalid/unknown command"),
    }
}

fn serve_client(st: Arc<Mutex<State>>, stop: Arc<AtomicBool>, stream: TcpStream) {
    let mut w = stream.try_clone().unwrap();
    if w.write_all(b"Asterisk Call Manager/9.0.0\r\n").is_err() {
        return;
    }
    let mut r = BufReader::new(stream);
    let mut logged_in = false;
    while !stop.load(Ordering::SeqCst) {
        let m = match Message::read_from(&mut r) {
            Ok(Some(m)) => m,
            _ => return,
        };
        let mut g = st.lock().unwrap();
        g.actions.push(m.clone());
        if g.frozen {
            continue;
        }
        let id = m.get("ActionID").unwrap_or("").to_string();
        if !logged_in {
            if m.get("Action")
                .is_some_and(|a| a.eq_ignore_ascii_case("login"))
                && m.get("Username") == Some(AMI_USER)
                && m.get("Secret") == Some(AMI_SECRET)
            {
                logged_in = true;
                g.logins += 1;
                let _ = w.write_all(
                    format!("Response: Success\r\nActionID: {id}\r\nMessage: Authentication accepted\r\n\r\n")
                        .as_bytes(),
                );
                g.clients.push(w.try_clone().unwrap());
            } else {
                let _ = w.write_all(
                    format!("Response: Error\r\nActionID: {id}\r\nMessage: Authentication failed\r\n\r\n")
                        .as_bytes(),
                );
                return;
            }
            continue;
        }
        let reply = handle_action(&mut g, &m);
        // the response, then (like Asterisk) events already broadcast are in the socket
        let _ = w.write_all(reply.as_bytes());
    }
}

impl FakePbx {
    /// Starts on `port` (0 = any free port).
    pub fn start(port: u16) -> FakePbx {
        Self::start_with(
            port,
            Arc::new(Mutex::new(State {
                chans: Vec::new(),
                clients: Vec::new(),
                actions: Vec::new(),
                outcome: PaymentOutcome::Success {
                    charge_id: Some("ch_test_1".into()),
                    token_id: None,
                },
                clock_ms: unix_ms(),
                logins: 0,
                frozen: false,
                refuse_list: 0,
            })),
        )
    }

    fn start_with(port: u16, st: Arc<Mutex<State>>) -> FakePbx {
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", port)) {
                Ok(l) => break l,
                Err(e) if tries < 50 => {
                    tries += 1;
                    let _ = e;
                    thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("bind fake AMI: {e}"),
            }
        };
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let (s2, st2) = (Arc::clone(&stop), Arc::clone(&st));
        let accept = thread::spawn(move || {
            for c in listener.incoming() {
                if s2.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(c) = c {
                    let (s3, st3) = (Arc::clone(&s2), Arc::clone(&st2));
                    thread::spawn(move || serve_client(st3, s3, c));
                }
            }
        });
        FakePbx {
            port,
            st,
            stop,
            accept: Some(accept),
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Closes the listener and every client connection (the PBX "crashes").
    pub fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(h) = self.accept.take() {
            h.join().unwrap();
        }
        let mut g = self.st.lock().unwrap();
        for c in g.clients.drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Starts again on the same port with the same channels and sessions (the PBX came back).
    pub fn restart(mut self) -> FakePbx {
        self.shutdown();
        let st = Arc::clone(&self.st);
        FakePbx::start_with(self.port, st)
    }

    pub fn add_channel(&self, name: &str, uid: &str) {
        let mut g = self.st.lock().unwrap();
        let c = Chan {
            name: name.into(),
            uid: uid.into(),
            linked: uid.into(),
            session: None,
        };
        let text = wire("Newchannel", &c, None, &[("ChannelState", "4")]);
        g.chans.push(c);
        broadcast(&mut g, &text);
    }

    /// Adds a channel without telling anyone (it existed while the service was away).
    pub fn add_channel_silently(&self, name: &str, uid: &str) {
        self.st.lock().unwrap().chans.push(Chan {
            name: name.into(),
            uid: uid.into(),
            linked: uid.into(),
            session: None,
        });
    }

    /// Removes a channel without telling anyone (it ended while the service was away).
    pub fn remove_channel_silently(&self, uid: &str) {
        self.st.lock().unwrap().chans.retain(|c| c.uid != uid);
    }

    pub fn hangup(&self, uid: &str) {
        let mut g = self.st.lock().unwrap();
        if let Some(i) = g.chans.iter().position(|c| c.uid == uid) {
            let c = g.chans.remove(i);
            let text = wire("Hangup", &c, None, &[("Cause", "16")]);
            broadcast(&mut g, &text);
        }
    }

    fn idx(g: &State, uid: &str) -> usize {
        g.chans.iter().position(|c| c.uid == uid).expect("channel")
    }

    /// The customer keys `digits` (out-of-band DTMF), 250 ms apart.
    pub fn key(&self, uid: &str, digits: &str) {
        let mut g = self.st.lock().unwrap();
        let i = Self::idx(&g, uid);
        for ch in digits.chars() {
            g.clock_ms += 250;
            let d = Digit::from_char(ch).expect("dtmf digit");
            with_session(&mut g, i, |s, now, sink| {
                s.on_digit(d, DigitSource::Rfc4733, now, sink);
                Ok(())
            })
            .expect("session");
        }
    }

    /// Advances the session clock by `ms` (timeouts).
    pub fn advance(&self, uid: &str, ms: u64) {
        let mut g = self.st.lock().unwrap();
        let i = Self::idx(&g, uid);
        g.clock_ms += ms;
        let _ = with_session(&mut g, i, |s, now, sink| {
            s.tick(now, sink);
            Ok(())
        });
    }

    /// Starts secure mode from the PBX side (dialplan `SecurePay()`), without the service.
    pub fn start_session_silently(&self, uid: &str) {
        let mut g = self.st.lock().unwrap();
        let i = Self::idx(&g, uid);
        let now = g.clock_ms;
        g.chans[i].session = Some(Session::start(&capture_config(), now, &mut |_| {}));
    }

    /// Publishes a raw event for channel `uid` (e.g. hostile header values).
    pub fn emit(&self, uid: &str, event: &str, headers: &[(&str, &str)]) {
        let mut g = self.st.lock().unwrap();
        let i = Self::idx(&g, uid);
        let text = wire(event, &g.chans[i], None, headers);
        broadcast(&mut g, &text);
    }

    /// Publishes a raw event for a channel that may be gone (e.g. an outcome after hangup).
    pub fn emit_as(&self, name: &str, uid: &str, event: &str, headers: &[(&str, &str)]) {
        let mut g = self.st.lock().unwrap();
        let c = Chan {
            name: name.into(),
            uid: uid.into(),
            linked: uid.into(),
            session: None,
        };
        let text = wire(event, &c, None, headers);
        broadcast(&mut g, &text);
    }

    /// Stops (or resumes) answering anything, keeping every socket open: a half-open
    /// connection as the service sees it when the PBX host vanished.
    pub fn freeze(&self, on: bool) {
        self.st.lock().unwrap().frozen = on;
    }

    /// The next `n` `CoreShowChannels` are refused (`Response: Error`).
    pub fn refuse_channel_list(&self, n: u32) {
        self.st.lock().unwrap().refuse_list = n;
    }

    pub fn set_outcome(&self, o: PaymentOutcome) {
        self.st.lock().unwrap().outcome = o;
    }

    pub fn actions(&self) -> Vec<Message> {
        self.st.lock().unwrap().actions.clone()
    }

    pub fn logins(&self) -> u32 {
        self.st.lock().unwrap().logins
    }

    /// `SecurePay` actions received: (channel, command, field).
    pub fn secure_pay_actions(&self) -> Vec<(String, String, String)> {
        self.actions()
            .iter()
            .filter(|m| {
                m.get("Action")
                    .is_some_and(|a| a.eq_ignore_ascii_case("securepay"))
            })
            .map(|m| {
                (
                    m.get("Channel").unwrap_or("").to_string(),
                    m.get("Command").unwrap_or("").to_string(),
                    m.get("Field").unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    /// Waits until `n` logins happened.
    pub fn wait_logins(&self, n: u32, timeout: Duration) -> bool {
        wait_until(timeout, || self.logins() >= n)
    }
}

impl Drop for FakePbx {
    fn drop(&mut self) {
        if self.accept.is_some() {
            self.shutdown();
        }
    }
}

pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        thread::sleep(Duration::from_millis(20));
    }
    f()
}

// ---------------------------------------------------------------- HTTP client

pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, k: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(hk, _)| hk.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.as_str())
    }
}

/// One request (`Connection: close`), whole response.
pub fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> HttpResponse {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    parse_response(&String::from_utf8_lossy(&raw))
}

fn parse_response(text: &str) -> HttpResponse {
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    HttpResponse {
        status,
        headers,
        body: body.to_string(),
    }
}

/// A page session as a browser holds it: the signed link exchanged (once) for the session
/// cookie, and the page's CSRF token.
pub struct PageSession {
    pub uid: String,
    /// `sp_session=<value>` for a `Cookie` header.
    pub cookie: String,
    /// The `Set-Cookie` header of the exchange.
    pub set_cookie: String,
    pub token: String,
}

/// Opens the signed `link` (path + query) like a browser: the exchange, then the token-free
/// page with the cookie. Panics unless both answer 200.
pub fn open_session(addr: std::net::SocketAddr, uid: &str, link: &str) -> PageSession {
    let r = http(addr, "GET", link, &[], "");
    assert_eq!(r.status, 200, "link exchange: {}", r.body);
    let set_cookie = r
        .header("Set-Cookie")
        .unwrap_or_else(|| panic!("no Set-Cookie: {:?}", r.headers))
        .to_string();
    let cookie = set_cookie.split(';').next().unwrap().trim().to_string();
    assert!(cookie.starts_with("sp_session="), "{set_cookie}");
    assert!(
        r.body.contains(&format!("data-next=\"/call/{uid}\"")),
        "{}",
        r.body
    );
    let page = http(
        addr,
        "GET",
        &format!("/call/{uid}"),
        &[("Cookie", &cookie)],
        "",
    );
    assert_eq!(page.status, 200, "page: {}", page.body);
    let token = page
        .body
        .split("data-token=\"")
        .nth(1)
        .and_then(|t| t.split('"').next())
        .expect("token in page")
        .to_string();
    PageSession {
        uid: uid.to_string(),
        cookie,
        set_cookie,
        token,
    }
}

impl PageSession {
    /// The live-update stream of this page.
    pub fn events(&self, addr: std::net::SocketAddr) -> Sse {
        Sse::open_with(
            addr,
            &format!("/call/{}/events", self.uid),
            &[("Cookie", &self.cookie)],
        )
    }

    /// POSTs a command like the page does (same origin, token, cookie).
    pub fn command(&self, addr: std::net::SocketAddr, body: &str) -> HttpResponse {
        let origin = format!("http://{addr}");
        http(
            addr,
            "POST",
            &format!("/call/{}/action", self.uid),
            &[
                ("Origin", &origin),
                ("Cookie", &self.cookie),
                ("X-SecurePay-Token", &self.token),
                ("Content-Type", "application/json"),
                ("Sec-Fetch-Site", "same-origin"),
            ],
            body,
        )
    }
}

/// An open SSE stream: read snapshots one by one.
pub struct Sse {
    r: BufReader<TcpStream>,
    pub status: u16,
    /// The newest snapshot read so far. The stream sends state, not events: two changes close
    /// together come as one snapshot, so `until` first asks whether the state already holds.
    latest: serde_json::Value,
}

impl Sse {
    pub fn open(addr: std::net::SocketAddr, path: &str) -> Sse {
        Self::open_with(addr, path, &[])
    }

    pub fn open_with(addr: std::net::SocketAddr, path: &str, headers: &[(&str, &str)]) -> Sse {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut req =
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).unwrap();
        let mut r = BufReader::new(s);
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        loop {
            line.clear();
            r.read_line(&mut line).unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
        }
        Sse {
            r,
            status,
            latest: serde_json::Value::Null,
        }
    }

    /// Writes `bytes` up the stream, as no EventSource ever does.
    pub fn send(&mut self, bytes: &[u8]) {
        let _ = self.r.get_mut().write_all(bytes);
    }

    /// Reads (and drops) what the server sends until it closes the stream: true if it did
    /// within `timeout`, false if it was still open.
    pub fn closed_within(&mut self, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        let mut buf = [0u8; 4096];
        while Instant::now() < end {
            let left = end.saturating_duration_since(Instant::now());
            let _ = self
                .r
                .get_mut()
                .set_read_timeout(Some(left.max(Duration::from_millis(1))));
            match self.r.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    return false
                }
                Err(_) => return true,
            }
        }
        false
    }

    /// The next named event (`snapshot`, `ended`, `expired`) and its data; None at the end.
    pub fn next_event(&mut self) -> Option<(String, String)> {
        let mut event = String::new();
        let mut line = String::new();
        loop {
            line.clear();
            let n = self.r.read_line(&mut line).ok()?;
            if n == 0 {
                return None;
            }
            let l = line.trim_end();
            if let Some(e) = l.strip_prefix("event: ") {
                event = e.to_string();
            } else if let Some(d) = l.strip_prefix("data: ") {
                return Some((std::mem::take(&mut event), d.to_string()));
            }
        }
    }

    /// The next `snapshot` event's JSON.
    pub fn next_snapshot(&mut self) -> serde_json::Value {
        let mut event = String::new();
        let mut line = String::new();
        loop {
            line.clear();
            let n = self.r.read_line(&mut line).expect("sse read");
            assert!(n > 0, "SSE stream closed");
            let l = line.trim_end();
            if let Some(e) = l.strip_prefix("event: ") {
                event = e.to_string();
            } else if let Some(d) = l.strip_prefix("data: ") {
                if event == "snapshot" {
                    let v: serde_json::Value = serde_json::from_str(d).unwrap();
                    self.latest = v.clone();
                    return v;
                }
            }
        }
    }

    /// Waits until the call's state satisfies `f`: the newest snapshot already read, or the next
    /// ones (panics after `timeout`, showing the last one).
    pub fn until(
        &mut self,
        timeout: Duration,
        f: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let end = Instant::now() + timeout;
        let mut last = self.latest.clone();
        if !last.is_null() && f(&last) {
            return last;
        }
        loop {
            assert!(
                Instant::now() < end,
                "SSE condition not reached in time; last snapshot: {last}"
            );
            let v = match self.try_next() {
                Some(v) => v,
                None => {
                    panic!("SSE condition not reached (stream idle/closed); last snapshot: {last}")
                }
            };
            if f(&v) {
                return v;
            }
            last = v;
        }
    }

    fn try_next(&mut self) -> Option<serde_json::Value> {
        let mut event = String::new();
        let mut line = String::new();
        loop {
            line.clear();
            let n = self.r.read_line(&mut line).ok()?;
            if n == 0 {
                return None;
            }
            let l = line.trim_end();
            if let Some(e) = l.strip_prefix("event: ") {
                event = e.to_string();
            } else if let Some(d) = l.strip_prefix("data: ") {
                if event == "snapshot" {
                    let v: serde_json::Value = serde_json::from_str(d).ok()?;
                    self.latest = v.clone();
                    return Some(v);
                }
            }
        }
    }
}

// ---------------------------------------------------------------- browser test runner

/// The Node + Chromium page test (tests/agent_e2e/page.test.mjs), or why it cannot run.
pub fn browser_ready() -> Result<std::path::PathBuf, String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/agent_e2e");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !std::path::Path::new(&chromium).exists() {
        return Err(format!(
            "{chromium} missing: run scripts/setup-deps (Debian chromium)"
        ));
    }
    if !dir.join("node_modules/playwright-core").is_dir() {
        return Err(format!(
            "playwright-core missing: run `npm install` in {} (scripts/test does)",
            dir.display()
        ));
    }
    Ok(dir)
}

/// The repository root (this crate is agent/; the shared target/ and PBX harnesses are there).
#[allow(dead_code)]
pub fn repo_root() -> std::path::PathBuf {
    let m = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    m.parent().unwrap_or(m).to_path_buf()
}

/// Where the screenshots go: target/agent-e2e/<name>/.
pub fn shot_dir(name: &str) -> std::path::PathBuf {
    let d = repo_root().join("target/agent-e2e").join(name);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Kills the browser driver (by its PID, via `Child::kill`) if the test panics.
struct ChildGuard(std::process::Child);
impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Runs the page test with `env`; `step(name)` performs each `NEED <name>` (the customer
/// keys, the PBX goes down/up). Panics unless the script prints PASS and exits 0.
pub fn run_page_test(env: &[(&str, &str)], mut step: impl FnMut(&str)) {
    let dir = browser_ready().unwrap_or_else(|e| panic!("browser test cannot run: {e}"));
    let mut cmd = std::process::Command::new("node");
    cmd.arg("page.test.mjs")
        .current_dir(&dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut guard = ChildGuard(cmd.spawn().expect("spawn node"));
    let mut stdin = guard.0.stdin.take().unwrap();
    let out = BufReader::new(guard.0.stdout.take().unwrap());
    let mut passed = false;
    let mut transcript = String::new();
    for line in out.lines() {
        let line = line.unwrap();
        eprintln!("[page] {line}");
        transcript.push_str(&line);
        transcript.push('\n');
        if let Some(s) = line.strip_prefix("NEED ") {
            step(s.trim());
            stdin.write_all(b"OK\n").unwrap();
            stdin.flush().unwrap();
        } else if line == "PASS" {
            passed = true;
        }
    }
    let status = guard.0.wait().unwrap();
    assert!(
        passed && status.success(),
        "page test failed ({status}):\n{transcript}"
    );
}

// ---------------------------------------------------------------- many clients

/// Connects to `dst` from the loopback address `src` (127.x.y.z: each is a different client
/// to the service's per-client cap).
pub fn connect_from(
    src: std::net::Ipv4Addr,
    dst: std::net::SocketAddr,
) -> std::io::Result<TcpStream> {
    use std::os::fd::FromRawFd;
    let std::net::SocketAddr::V4(dst) = dst else {
        panic!("IPv4 only")
    };
    let sa = |ip: std::net::Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: plain socket(2) call; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh socket we own; the TcpStream closes it on drop.
    let s = unsafe { TcpStream::from_raw_fd(fd) };
    let local = sa(src, 0);
    let remote = sa(*dst.ip(), dst.port());
    // SAFETY: `local` is a valid sockaddr_in of `len` bytes that outlives the call.
    if unsafe { libc::bind(fd, (&local as *const libc::sockaddr_in).cast(), len) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `remote` is a valid sockaddr_in of `len` bytes that outlives the call.
    if unsafe { libc::connect(fd, (&remote as *const libc::sockaddr_in).cast(), len) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(s)
}

/// Sends one raw request on `s` and reads the whole response (or what came before `timeout`).
pub fn raw_request(mut s: TcpStream, req: &str, timeout: Duration) -> HttpResponse {
    s.set_read_timeout(Some(timeout)).unwrap();
    let _ = s.write_all(req.as_bytes());
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    parse_response(&String::from_utf8_lossy(&raw))
}

/// A `secure-pay-agent serve` process on 127.0.0.1 following `pbx`'s AMI, its stderr collected
/// in `log`. Dropping it kills the process (by its PID, through `Child::kill`).
pub struct AgentProcess {
    child: std::process::Child,
    pub addr: std::net::SocketAddr,
    pub log: Arc<Mutex<String>>,
    reader: Option<thread::JoinHandle<()>>,
}

impl AgentProcess {
    /// Starts the binary with `extra` arguments after the listen/AMI ones and waits for its
    /// "listening on" line and its AMI login.
    pub fn spawn(pbx: &FakePbx, extra: &[&str]) -> AgentProcess {
        let t = Duration::from_secs(15);
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_secure-pay-agent"))
            .args(["serve", "--listen", "127.0.0.1:0", "--ami", &pbx.addr()])
            .args(["--ami-user", AMI_USER])
            .args(extra)
            .env(
                "SECURE_PAY_AGENT_SECRET",
                std::str::from_utf8(LINK_SECRET).unwrap(),
            )
            .env("SECURE_PAY_AMI_SECRET", AMI_SECRET)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let l2 = Arc::clone(&log);
        let err = child.stderr.take().unwrap();
        let reader = thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                let mut g = l2.lock().unwrap();
                g.push_str(&line);
                g.push('\n');
            }
        });
        let mut addr = None;
        let found = wait_until(t, || {
            addr = log
                .lock()
                .unwrap()
                .split("listening on http://")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .and_then(|a| a.parse::<std::net::SocketAddr>().ok());
            addr.is_some()
        });
        let mut p = AgentProcess {
            child,
            addr: "127.0.0.1:1".parse().unwrap(),
            log,
            reader: Some(reader),
        };
        assert!(found, "no listening line: {}", p.log.lock().unwrap());
        p.addr = addr.unwrap();
        assert!(
            pbx.wait_logins(1, t),
            "the service never logged in to the AMI"
        );
        p
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the process and returns everything it wrote to stderr.
    pub fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        let log = self.log.lock().unwrap().clone();
        log
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Puts the PBX module named by the environment variable `var` (a path relative to the
/// repository) where the PBX harnesses look for it (target/release/libsecure_pay.so next to
/// this test binary's deps, made the newest candidate).
pub fn install_module(var: &str) {
    let src = std::env::var(var)
        .unwrap_or_else(|_| panic!("set {var} to a secure_pay module build (see the file header)"));
    let src = repo_root().join(src);
    let bytes = std::fs::read(&src).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
    let exe = std::env::current_exe().unwrap();
    let dst = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("libsecure_pay.so");
    // unlink first: cargo hard-links this path to deps/libsecure_pay.so
    let _ = std::fs::remove_file(&dst);
    std::fs::write(&dst, bytes).unwrap();
}
