//! `secure-pay-agent`: the agent payment page. Follows one or many PBX nodes at once (Asterisk
//! AMI, FreeSWITCH event socket; [`Config::nodes`], `serve --config`), tracks each call's
//! masked `SecurePay*` events per node ([`state`]) and serves one embeddable page per call,
//! keyed by the call key (the customer channel's **Uniqueid** / UUID, prefixed `<node>~` for a
//! named node), reachable only through a signed, expiring link ([`sign`]). Operations:
//! `/healthz` (alive), `/readyz` (every PBX link up, else 503), `/metrics` ([`metrics`]);
//! docs/scaling.md.
//! The page gets live updates over Server-Sent Events (a full snapshot on every change and on
//! every (re)connect) and drives the module with the AMI action `SecurePay`.
//!
//! Routes:
//! - `GET /call/<uniqueid>?exp=..&sig=..` the signed link, good ONCE: exchanged for a session
//!   cookie (`sp_session`, HttpOnly, Secure, SameSite=Strict, `Path=/call/<uniqueid>`) and a tiny
//!   page that moves on to the token-free address (403 unsigned/expired/tampered/used, 404
//!   unknown, 410 call ended).
//! - `GET /call/<uniqueid>` the page (session cookie).
//! - `GET /call/<uniqueid>/events` SSE stream of JSON snapshots (session cookie).
//! - `POST /call/<uniqueid>/action` body `{"command":"capture","field":"..."}`, session cookie,
//!   header `X-SecurePay-Token` (the page's CSRF token) and a same-origin `Origin`.
//! - `GET /static/page.js|page.css|enter.js` assets (no data).
//! - `GET /healthz`, `GET /readyz`, `GET /metrics` (no call data).
//!
//! A session stops working when the call ends (410), except that an open page may keep
//! watching, read-only, for the outcome of a payment submitted before the hangup.
//!
//! Connections: each request is read by a short-lived thread under one deadline for the whole
//! request (slow-loris: 408); open connections are capped in total and per client address
//! (503 / 429 with `Retry-After`); live-update streams are held by one writer thread
//! ([`streams`]), capped per call (429).
//!
//! Safe Rust, std threads, no async runtime.

pub mod ami;
pub mod config;
pub mod esl;
pub mod fuzzing;
pub mod http;
pub mod limits;
mod link;
pub mod logger;
pub mod metrics;
pub mod sign;
pub mod state;
pub mod streams;

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use crate::ami::{Ami, AmiConfig};
use crate::esl::{Esl, EslConfig};
use crate::http::{html_escape, read_request, ReadError, Request, Response};
use crate::limits::{Limits, Refused, Slot};
use crate::link::lock;
use crate::metrics::Metrics;
use crate::sign::{valid_call_key, valid_node_name, Signer, NODE_SEP, SESSION_COOKIE};
use crate::state::{Access, Hub, Mode, Notifier};
use crate::streams::{Stream, StreamTiming, Streams};
use secure_pay::core::capture::{parse_command, Command};

const PAGE_HTML: &str = include_str!("page.html");
const PAGE_JS: &str = include_str!("page.js");
const PAGE_CSS: &str = include_str!("page.css");
const MESSAGE_HTML: &str = include_str!("message.html");
const ENTER_HTML: &str = include_str!("enter.html");
const ENTER_JS: &str = include_str!("enter.js");

/// Used links remembered (until their expiry) so each is exchanged only once.
pub const MAX_USED_LINKS: usize = 200_000;
/// Stack of a request thread (parsing and answering one request needs little).
const REQUEST_STACK: usize = 256 * 1024;

/// How the service reaches one PBX node.
#[derive(Clone, Debug)]
pub enum PbxLink {
    /// Asterisk's manager interface (AMI).
    Asterisk(AmiConfig),
    /// FreeSWITCH's event socket (ESL).
    FreeSwitch(EslConfig),
}

impl PbxLink {
    /// `asterisk` or `freeswitch`.
    pub fn kind(&self) -> &'static str {
        match self {
            PbxLink::Asterisk(_) => "asterisk",
            PbxLink::FreeSwitch(_) => "freeswitch",
        }
    }

    /// The `host:port` the link connects to.
    pub fn addr(&self) -> &str {
        match self {
            PbxLink::Asterisk(a) => &a.addr,
            PbxLink::FreeSwitch(e) => &e.addr,
        }
    }
}

/// One PBX node the service follows.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// The node's name in call keys and links (`<name>~<call-id>`), metrics and logs: 1-32 of
    /// letters, digits, `-`, `_`.
    pub name: String,
    pub link: PbxLink,
}

/// Service settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// HTTP listen address (default `127.0.0.1:8090`).
    pub listen: SocketAddr,
    /// The single unnamed node (when `nodes` is empty): Asterisk's AMI...
    pub ami: AmiConfig,
    /// ...or FreeSWITCH's event socket (ESL) instead; `ami` is then unused.
    pub esl: Option<EslConfig>,
    /// The named PBX nodes to follow, all at once (the configuration file's `[[node]]`s). When
    /// set, `ami`/`esl` are unused and every call key names its node: `<node>~<call-id>`.
    pub nodes: Vec<NodeConfig>,
    pub signer: Signer,
    /// CSP `frame-ancestors` sources allowed to embed the page (default `'none'`), e.g.
    /// `https://desktop.example.com`.
    pub frame_ancestors: String,
    /// Options sent with `Command: start` (e.g. `fields=payment-card-number,security-code`);
    /// set by the operator, never by the page.
    pub start_options: String,
    /// Extra origins accepted on POST besides the page's own (`http(s)://<Host>`), e.g. the
    /// public origin behind a TLS reverse proxy.
    pub allowed_origins: Vec<String>,
    /// Open HTTP connections in total, live-update streams included (each needs a file
    /// descriptor: see docs/agent-page.md for `ulimit -n`).
    pub max_connections: usize,
    /// Open connections per client address (agents behind one NAT share an address: set it
    /// above the number of agents there).
    pub max_per_client: usize,
    /// Live-update streams per call (an agent's tabs).
    pub max_streams_per_call: usize,
    /// Deadline for reading a whole request (head and body): slower clients get 408.
    pub request_timeout: Duration,
    /// Mark the session cookie `Secure` (the browser sends it over HTTPS only; browsers also
    /// accept it from http://localhost). Turn off only for plain-HTTP labs.
    pub cookie_secure: bool,
    /// After a hangup, how long an open page may keep watching for the outcome of a payment
    /// submitted before it.
    pub outcome_grace: Duration,
    /// Keep-alive comment interval on idle SSE streams.
    pub sse_keepalive: Duration,
}

impl Config {
    pub fn new(ami: AmiConfig, signer: Signer) -> Config {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8090)),
            ami,
            esl: None,
            nodes: Vec::new(),
            signer,
            frame_ancestors: "'none'".into(),
            start_options: String::new(),
            allowed_origins: Vec::new(),
            max_connections: 4096,
            max_per_client: 256,
            max_streams_per_call: 8,
            request_timeout: Duration::from_secs(10),
            cookie_secure: true,
            outcome_grace: Duration::from_secs(120),
            sse_keepalive: Duration::from_secs(15),
        }
    }

    /// Checks values that end up in headers.
    pub fn validate(&self) -> Result<(), String> {
        if self.frame_ancestors.trim().is_empty()
            || self.frame_ancestors.contains([';', ',', '\r', '\n', '"'])
        {
            return Err(format!(
                "frame-ancestors {:?}: give space-separated CSP sources, e.g. \"'self' https://desktop.example.com\"",
                self.frame_ancestors
            ));
        }
        if self.start_options.contains(['\r', '\n']) {
            return Err("start options must be one line".into());
        }
        if self.max_connections == 0 || self.max_per_client == 0 || self.max_streams_per_call == 0 {
            return Err("connection limits must be at least 1".into());
        }
        if self.request_timeout < Duration::from_millis(100)
            || self.request_timeout > Duration::from_secs(300)
        {
            // Above 300 s the slow-client deadline means nothing (and an instant that far
            // ahead can overflow).
            return Err("the request timeout must be 100 ms to 300 s".into());
        }
        let mut seen = std::collections::HashSet::new();
        for n in &self.nodes {
            if !valid_node_name(&n.name) {
                return Err(format!(
                    "node name {:?}: give 1-32 letters, digits, '-' or '_'",
                    n.name
                ));
            }
            if !seen.insert(n.name.as_str()) {
                return Err(format!("node name {:?} is used twice", n.name));
            }
        }
        Ok(())
    }

    /// The nodes the service follows: the named ones, else the single unnamed node (name "")
    /// of `ami` / `esl`.
    pub fn effective_nodes(&self) -> Vec<NodeConfig> {
        if !self.nodes.is_empty() {
            return self.nodes.clone();
        }
        vec![NodeConfig {
            name: String::new(),
            link: match &self.esl {
                Some(e) => PbxLink::FreeSwitch(e.clone()),
                None => PbxLink::Asterisk(self.ami.clone()),
            },
        }]
    }
}

/// How the service drives the module on the PBX (AMI action `SecurePay` on Asterisk, API
/// `uuid_secure_pay` over ESL on FreeSWITCH).
pub trait PbxControl: Send + Sync {
    /// Sends `verb` (`start`, `capture`, ...) for the call (`channel` name, `call_id` =
    /// Asterisk Uniqueid / FreeSWITCH UUID), with `field` for `capture` and `options` for
    /// `start`. `Ok(Ok(text))`: accepted; `Ok(Err(text))`: refused by the module (its reason);
    /// `Err(text)`: the PBX could not be reached.
    fn command(
        &self,
        channel: &str,
        call_id: &str,
        verb: &str,
        field: Option<&str>,
        options: &str,
    ) -> Result<Result<String, String>, String>;

    /// Stops reconnecting and closes the connection.
    fn stop(&self);

    /// Looks for a channel the service has not heard of (created before it connected, when
    /// the PBX cannot list channels): its name if it exists. Default: no probing.
    fn probe(&self, _call_id: &str) -> Option<String> {
        None
    }
}

/// Current unix time in seconds.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// One PBX node at run time: its calls and its link.
struct Node {
    name: String,
    kind: &'static str,
    hub: Arc<Hub>,
    pbx: Arc<dyn PbxControl>,
    metrics: metrics::NodeMetrics,
}

struct Ctx {
    cfg: Config,
    nodes: Vec<Node>,
    notifier: Arc<Notifier>,
    metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
    limits: Arc<Limits>,
    streams: Streams,
    /// Signatures of exchanged links -> their expiry (each link works once).
    used_links: Mutex<HashMap<String, u64>>,
    /// Unix seconds of the last "connections refused" warning (rate-limited log).
    last_refusal_log: AtomicU64,
}

/// The running service.
pub struct Service {
    addr: SocketAddr,
    ctx: Arc<Ctx>,
    accept: Option<JoinHandle<()>>,
    writer: Option<JoinHandle<()>>,
}

impl Service {
    /// Binds the HTTP listener and starts the AMI client.
    pub fn start(cfg: Config) -> Result<Service, String> {
        cfg.validate()?;
        let listener = TcpListener::bind(cfg.listen)
            .map_err(|e| format!("cannot listen on {}: {e}", cfg.listen))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let notifier = Notifier::new();
        let metrics = Metrics::new();
        let nodes: Vec<Node> = cfg
            .effective_nodes()
            .into_iter()
            .map(|n| {
                let kind = n.link.kind();
                let m = metrics.node(&n.name, kind);
                let hub = Arc::new(Hub::for_node(Arc::clone(&notifier), Some(m.clone())));
                // each node reconnects on its own (its own thread and backoff)
                let pbx: Arc<dyn PbxControl> = match n.link {
                    PbxLink::FreeSwitch(e) => Esl::start(e, Arc::clone(&hub)),
                    PbxLink::Asterisk(a) => Ami::start(a, Arc::clone(&hub)),
                };
                Node {
                    name: n.name,
                    kind,
                    hub,
                    pbx,
                    metrics: m,
                }
            })
            .collect();
        let ctx = Arc::new(Ctx {
            limits: Limits::new(cfg.max_connections, cfg.max_per_client),
            streams: Streams::new(cfg.max_streams_per_call),
            cfg,
            nodes,
            notifier,
            metrics,
            stop: Arc::new(AtomicBool::new(false)),
            used_links: Mutex::new(HashMap::new()),
            last_refusal_log: AtomicU64::new(0),
        });
        let c = Arc::clone(&ctx);
        let writer = thread::Builder::new()
            .name("http-streams".into())
            .spawn(move || {
                let t = StreamTiming {
                    keepalive: c.cfg.sse_keepalive,
                    outcome_grace: c.cfg.outcome_grace,
                };
                c.streams.run(&c.notifier, &c.stop, t)
            })
            .map_err(|e| e.to_string())?;
        let (tx, rx) = sync_channel(REFUSE_QUEUE);
        let c = Arc::clone(&ctx);
        thread::Builder::new()
            .name("http-refuse".into())
            .spawn(move || refuse_loop(rx, &c.stop))
            .map_err(|e| e.to_string())?;
        let c = Arc::clone(&ctx);
        let accept = thread::Builder::new()
            .name("http-accept".into())
            .spawn(move || accept_loop(listener, c, tx))
            .map_err(|e| e.to_string())?;
        log::info!(
            "secure-pay-agent: HTTP on {addr}: at most {} connections, {} per client, {} streams per call, {} ms request deadline",
            ctx.cfg.max_connections,
            ctx.cfg.max_per_client,
            ctx.cfg.max_streams_per_call,
            ctx.cfg.request_timeout.as_millis()
        );
        Ok(Service {
            addr,
            ctx,
            accept: Some(accept),
            writer: Some(writer),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The first node's state (the single node of `--ami`/`--esl`).
    pub fn hub(&self) -> &Arc<Hub> {
        &self.ctx.nodes[0].hub
    }

    /// The state of node `name` (`""`: the single unnamed node).
    pub fn node_hub(&self, name: &str) -> Option<&Arc<Hub>> {
        self.ctx
            .nodes
            .iter()
            .find(|n| n.name == name)
            .map(|n| &n.hub)
    }

    /// The `/metrics` text now.
    pub fn metrics_text(&self) -> String {
        metrics_text(&self.ctx)
    }

    /// Open HTTP connections (live-update streams included).
    pub fn open_connections(&self) -> usize {
        self.ctx.limits.open()
    }

    /// Open live-update streams.
    pub fn open_streams(&self) -> usize {
        self.ctx.streams.len()
    }

    /// Blocks until the service stops (the binary's main thread).
    pub fn wait(mut self) {
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }

    /// Stops accepting, ends the SSE streams and the AMI client.
    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        self.ctx.stop.store(true, Ordering::SeqCst);
        for n in &self.ctx.nodes {
            n.pbx.stop();
        }
        // unblock accept()
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
        if let Some(h) = self.writer.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if self.accept.is_some() {
            self.stop_now();
        }
    }
}

/// Logs refused connections at most every 10 s (a flood must not flood the log).
fn log_refusal(ctx: &Ctx, what: &str) {
    let now = unix_now();
    let last = ctx.last_refusal_log.load(Ordering::Relaxed);
    if now >= last + 10
        && ctx
            .last_refusal_log
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        log::warn!(
            "secure-pay-agent: refusing connections ({what}); {} open",
            ctx.limits.open()
        );
    }
}

fn accept_loop(listener: TcpListener, ctx: Arc<Ctx>, refuse: SyncSender<(TcpStream, Vec<u8>)>) {
    for conn in listener.incoming() {
        if ctx.stop.load(Ordering::SeqCst) {
            break;
        }
        let stream = match conn {
            Ok(s) => s,
            Err(e) => {
                // e.g. EMFILE (out of file descriptors): back off instead of spinning
                log_refusal(&ctx, &format!("accept failed: {e}"));
                thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let ip = stream
            .peer_addr()
            .map(|a| a.ip())
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let slot = match ctx.limits.acquire(ip) {
            Ok(slot) => slot,
            Err(r) => {
                let (status, what) = match r {
                    Refused::Full => (503, "the service is at its connection limit"),
                    Refused::Client => (429, "too many connections from one client"),
                };
                log_refusal(&ctx, what);
                let mut bytes = Vec::new();
                let _ = message(
                    &ctx,
                    status,
                    "Busy",
                    &format!("Refused: {what}. Try again shortly."),
                )
                .with("Retry-After", "5")
                .write_to(&mut bytes);
                // answered off this thread; dropped (closed) when that queue is full
                let _ = refuse.try_send((stream, bytes));
                continue;
            }
        };
        let c = Arc::clone(&ctx);
        let spawned = thread::Builder::new()
            .name("http".into())
            .stack_size(REQUEST_STACK)
            .spawn(move || handle(&c, stream, slot));
        if spawned.is_err() {
            log_refusal(&ctx, "cannot start a request thread");
        }
    }
}

/// Refused connections held open at once (waiting for their request head) by
/// [`refuse_loop`]; more are closed at once without an answer. Counted in the open-files
/// budget of the binary.
pub const REFUSE_HELD_MAX: usize = 256;
/// Refused connections queued for [`refuse_loop`] (more are closed by the accept thread).
pub const REFUSE_QUEUE: usize = 64;

/// Answers refused connections without holding a thread each: waits (non-blocking, at most
/// 500 ms) for the request so closing does not reset it, writes the refusal, closes. At most
/// [`REFUSE_HELD_MAX`] are held: a client over its limit that opens and closes connections in a
/// loop must not run the service out of descriptors (the PBX links need some), and one whose
/// peer has already closed is let go at once.
fn refuse_loop(rx: Receiver<(TcpStream, Vec<u8>)>, stop: &AtomicBool) {
    let mut open: Vec<(TcpStream, Vec<u8>, Instant)> = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        // At most a queue's worth per round, so the held ones are looked at between (a flood
        // would otherwise keep this loop taking new ones).
        for _ in 0..REFUSE_QUEUE {
            let got = if open.is_empty() {
                match rx.recv_timeout(Duration::from_millis(250)) {
                    Ok(x) => Some(x),
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => None,
                    Err(_) => return,
                }
            } else {
                match rx.try_recv() {
                    Ok(x) => Some(x),
                    Err(TryRecvError::Empty) => None,
                    Err(_) => return,
                }
            };
            let Some((s, bytes)) = got else { break };
            // Over the cap: dropped here, i.e. closed without an answer.
            if open.len() < REFUSE_HELD_MAX && s.set_nonblocking(true).is_ok() {
                open.push((s, bytes, Instant::now() + Duration::from_millis(500)));
            }
        }
        let now = Instant::now();
        open.retain_mut(|(s, bytes, deadline)| {
            let mut buf = [0u8; 4096];
            let (mut head_done, mut eof) = (false, false);
            loop {
                match s.read(&mut buf) {
                    Ok(0) => {
                        eof = true;
                        break;
                    }
                    Ok(n) => head_done |= buf[..n].windows(4).any(|w| w == b"\r\n\r\n"),
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => return false,
                }
            }
            if eof && !head_done {
                return false; // gone before asking: nobody to answer
            }
            if !head_done && now < *deadline {
                return true;
            }
            let _ = s.write(bytes);
            let _ = s.shutdown(std::net::Shutdown::Write);
            false
        });
        if !open.is_empty() {
            thread::sleep(Duration::from_millis(10));
        }
    }
}

fn security_headers(ctx: &Ctx, r: Response) -> Response {
    r.with(
        "Content-Security-Policy",
        format!(
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
             img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors {}",
            ctx.cfg.frame_ancestors
        ),
    )
    .with("X-Content-Type-Options", "nosniff")
    .with("Referrer-Policy", "no-referrer")
    .with("Cache-Control", "no-store")
    .with("Cross-Origin-Resource-Policy", "same-origin")
}

/// A small HTML page with a title and a message (errors, refusals).
fn message(ctx: &Ctx, status: u16, title: &str, text: &str) -> Response {
    let body = MESSAGE_HTML
        .replace("{{TITLE}}", &html_escape(title))
        .replace("{{TEXT}}", &html_escape(text));
    security_headers(ctx, Response::new(status, "text/html; charset=utf-8", body))
}

fn json(ctx: &Ctx, status: u16, ok: bool, text: &str) -> Response {
    let body = serde_json::json!({ "ok": ok, "message": text }).to_string();
    security_headers(ctx, Response::new(status, "application/json", body))
}

fn handle(ctx: &Ctx, stream: TcpStream, slot: Slot) {
    let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
    let req = match read_request(&stream, ctx.cfg.request_timeout) {
        Ok(r) => r,
        Err(ReadError::Timeout) => {
            log::debug!("secure-pay-agent: request not complete within its deadline: 408");
            let _ = message(
                ctx,
                408,
                "Request timeout",
                "The request did not arrive in time.",
            )
            .write_to(&stream);
            return;
        }
        Err(ReadError::Closed(_)) => return,
        Err(ReadError::Bad(e)) => {
            log::debug!("secure-pay-agent: bad request: {e}");
            let _ = message(ctx, 400, "Bad request", &e).write_to(&stream);
            return;
        }
    };
    let segs: Vec<&str> = req.path.split('/').collect();
    let resp = match (req.method.as_str(), segs.as_slice()) {
        ("GET", ["", "static", "page.js"]) => security_headers(
            ctx,
            Response::new(200, "text/javascript; charset=utf-8", PAGE_JS),
        ),
        ("GET", ["", "static", "enter.js"]) => security_headers(
            ctx,
            Response::new(200, "text/javascript; charset=utf-8", ENTER_JS),
        ),
        ("GET", ["", "static", "page.css"]) => {
            security_headers(ctx, Response::new(200, "text/css; charset=utf-8", PAGE_CSS))
        }
        ("GET", ["", "favicon.ico"]) => {
            security_headers(ctx, Response::new(204, "image/x-icon", ""))
        }
        // alive: the process answers (whatever the PBX links)
        ("GET", ["", "healthz"]) => security_headers(ctx, Response::new(200, "text/plain", "ok\n")),
        // ready: every configured PBX link is up
        ("GET", ["", "readyz"]) => {
            let (ready, text) = readiness(ctx);
            security_headers(
                ctx,
                Response::new(if ready { 200 } else { 503 }, "text/plain", text),
            )
        }
        ("GET", ["", "metrics"]) => security_headers(
            ctx,
            Response::new(200, metrics::CONTENT_TYPE, metrics_text(ctx)),
        ),
        ("GET", ["", "call", id]) if req.query("exp").is_some() || req.query("sig").is_some() => {
            exchange(ctx, id, &req)
        }
        ("GET", ["", "call", id]) => page(ctx, id, &req),
        ("GET", ["", "call", id, "events"]) => {
            log::debug!("secure-pay-agent: GET {} (stream)", route_label(&segs));
            events(ctx, id, &req, stream, slot);
            return;
        }
        ("POST", ["", "call", id, "action"]) => action(ctx, id, &req),
        (_, ["", "call", ..]) | (_, ["", "static", ..]) => message(
            ctx,
            405,
            "Method not allowed",
            "This address does not accept that method.",
        ),
        _ => message(
            ctx,
            404,
            "Not found",
            "Open the payment page through the signed link from your agent desktop.",
        ),
    };
    // the route only: never the query (it may hold a link signature) nor unknown paths
    log::debug!(
        "secure-pay-agent: {} {} -> {}",
        if matches!(req.method.as_str(), "GET" | "POST" | "HEAD") {
            req.method.as_str()
        } else {
            "(other method)"
        },
        route_label(&segs),
        resp.status
    );
    let _ = resp.write_to(&stream);
    drop(slot);
}

/// The request's route for the log: a known route with its (valid) call id, or a placeholder.
fn route_label(segs: &[&str]) -> String {
    match segs {
        ["", "call", id] if valid_call_key(id) => format!("/call/{id}"),
        ["", "call", id, tail @ ("events" | "action")] if valid_call_key(id) => {
            format!("/call/{id}/{tail}")
        }
        ["", "static", f @ ("page.js" | "page.css" | "enter.js")] => format!("/static/{f}"),
        ["", "healthz" | "readyz" | "metrics" | "favicon.ico"] => segs.join("/"),
        _ => "(other path)".into(),
    }
}

/// The node a call key names and the call's id there (None: a node this service does not
/// follow: a key without a node when the service follows named nodes, or an unknown name).
fn route<'c, 'k>(ctx: &'c Ctx, key: &'k str) -> Option<(&'c Node, &'k str)> {
    let (name, id) = key.split_once(NODE_SEP).unwrap_or(("", key));
    ctx.nodes.iter().find(|n| n.name == name).map(|n| (n, id))
}

fn unknown_node(ctx: &Ctx) -> Response {
    message(
        ctx,
        403,
        "Access refused",
        "Access refused: this link names a phone system node this service does not follow. \
         Open the payment page again from your agent desktop.",
    )
}

/// `/readyz`: (every configured PBX link up, the per-node lines).
fn readiness(ctx: &Ctx) -> (bool, String) {
    let mut ready = true;
    let mut text = String::new();
    for n in &ctx.nodes {
        let up = n.hub.pbx().connected;
        ready &= up;
        text.push_str(&format!(
            "node {:?} {} {}\n",
            n.name,
            n.kind,
            if up { "up" } else { "down" }
        ));
    }
    (
        ready,
        format!("{}\n{text}", if ready { "ready" } else { "not ready" }),
    )
}

/// `/metrics`: the gauges read now, then the whole registry.
fn metrics_text(ctx: &Ctx) -> String {
    for n in &ctx.nodes {
        n.metrics.set_active(n.hub.active_sessions());
        n.metrics.set_up(n.hub.pbx().connected);
    }
    ctx.metrics.encode()
}

/// Checks the link of a request for call `id`: Ok(expiry) or the refusal page.
fn check_link(ctx: &Ctx, id: &str, req: &Request) -> Result<u64, Response> {
    if !valid_call_key(id) {
        return Err(message(
            ctx,
            403,
            "Access refused",
            "This link is not valid: the call id is malformed. Open the payment page again \
             from your agent desktop.",
        ));
    }
    ctx.cfg
        .signer
        .verify(id, req.query("exp"), req.query("sig"), unix_now())
        .map_err(|e| {
            message(
                ctx,
                403,
                "Access refused",
                &format!(
                    "Access refused: {e}. Open the payment page again from your agent desktop \
                     to get a fresh link."
                ),
            )
        })
}

fn no_such_call(ctx: &Ctx, node: &Node, id: &str) -> Response {
    let pbx = node.hub.pbx();
    let extra = if pbx.connected {
        ""
    } else {
        " The service is not connected to the phone system right now, so it may not know the call yet."
    };
    message(
        ctx,
        404,
        "No such call",
        &format!(
            "There is no call with id {id} on the phone system (it may have ended long ago or \
             the id is wrong).{extra}"
        ),
    )
}

/// Is the call known on its node, or does that node's PBX have it (then it is added)?
fn known_or_probed(node: &Node, id: &str) -> bool {
    if node.hub.knows(id) {
        return true;
    }
    match node.pbx.probe(id) {
        Some(name) => {
            node.hub.add_call(id, &name);
            true
        }
        None => false,
    }
}

fn cookie_header(ctx: &Ctx, id: &str, value: &str, max_age: u64) -> String {
    format!(
        "{SESSION_COOKIE}={value}; Path=/call/{id}; Max-Age={max_age}; HttpOnly; SameSite=Strict{}",
        if ctx.cfg.cookie_secure {
            "; Secure"
        } else {
            ""
        }
    )
}

/// The session cookie values the request carries.
fn cookies<'a>(req: &'a Request) -> impl Iterator<Item = &'a str> + 'a {
    req.headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("Cookie"))
        .flat_map(|(_, v)| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .filter(|(k, _)| *k == SESSION_COOKIE)
        .map(|(_, v)| v)
}

/// A valid session for call `id` in the request's cookies: (value, expiry).
fn session(ctx: &Ctx, id: &str, req: &Request) -> Option<(String, u64)> {
    let now = unix_now();
    cookies(req).find_map(|v| {
        ctx.cfg
            .signer
            .verify_session(id, v, now)
            .ok()
            .map(|e| (v.to_string(), e))
    })
}

/// The call has ended: the session no longer works (and the browser may forget it).
fn gone(ctx: &Ctx, id: &str) -> Response {
    message(
        ctx,
        410,
        "Call ended",
        "This call has ended, so its payment page no longer works. For another payment, open \
         the payment page from your agent desktop for that call.",
    )
    .with("Set-Cookie", cookie_header(ctx, id, "", 0))
}

/// A valid page session: its cookie value and expiry, the call's node and its id there.
struct Sess<'c, 'k> {
    value: String,
    exp: u64,
    node: &'c Node,
    id: &'k str,
}

/// Checks the session of a request for call key `key`: the session or the refusal.
/// `watch`: a read-only view (page, live updates), which may outlive the hangup while a
/// payment submitted before it has no outcome yet.
fn check_session<'c, 'k>(
    ctx: &'c Ctx,
    key: &'k str,
    req: &Request,
    watch: bool,
) -> Result<Sess<'c, 'k>, Response> {
    let id = key;
    if !valid_call_key(id) {
        return Err(message(
            ctx,
            403,
            "Access refused",
            "This address is not valid: the call id is malformed. Open the payment page again \
             from your agent desktop.",
        ));
    }
    let Some((value, exp)) = session(ctx, id, req) else {
        return Err(message(
            ctx,
            403,
            "Access refused",
            "Access refused: no valid session for this call (it may have expired). Open the \
             payment page again from your agent desktop.",
        ));
    };
    let Some((node, call)) = route(ctx, key) else {
        return Err(unknown_node(ctx));
    };
    let s = Sess {
        value,
        exp,
        node,
        id: call,
    };
    known_or_probed(node, call);
    match node.hub.access(call) {
        Access::Live => Ok(s),
        Access::Unknown => Err(no_such_call(ctx, node, call)),
        Access::Ended(at, pending) => {
            if watch && pending && at.elapsed() < ctx.cfg.outcome_grace {
                Ok(s)
            } else {
                Err(gone(ctx, key))
            }
        }
    }
}

fn nonce() -> Option<[u8; 16]> {
    let mut n = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut n))
        .ok()?;
    Some(n)
}

/// The one-time exchange of a signed link for a session cookie.
fn exchange(ctx: &Ctx, id: &str, req: &Request) -> Response {
    let exp = match check_link(ctx, id, req) {
        Ok(e) => e,
        Err(r) => return r,
    };
    let Some((node, call)) = route(ctx, id) else {
        return unknown_node(ctx);
    };
    if !known_or_probed(node, call) {
        return no_such_call(ctx, node, call);
    }
    if matches!(node.hub.access(call), Access::Ended(..)) {
        return gone(ctx, id);
    }
    let next = format!("/call/{id}");
    let enter = |cookie: Option<String>| {
        let body = ENTER_HTML.replace("{{NEXT}}", &html_escape(&next));
        let r = security_headers(ctx, Response::new(200, "text/html; charset=utf-8", body));
        match cookie {
            Some(c) => r.with("Set-Cookie", c),
            None => r,
        }
    };
    // hex is case-insensitive: one key per signature
    let sig = req.query("sig").unwrap_or("").to_ascii_lowercase();
    let now = unix_now();
    {
        let mut used = lock(&ctx.used_links);
        if used.contains_key(&sig) {
            // the same browser again (a reload of the link): it has its session already
            if session(ctx, id, req).is_some() {
                return enter(None);
            }
            log::info!("secure-pay-agent: refused a second use of a link for call {id}");
            return message(
                ctx,
                403,
                "Access refused",
                "This link has already been used. Open the payment page again from your agent \
                 desktop to get a fresh link.",
            );
        }
        if used.len() >= MAX_USED_LINKS / 2 {
            used.retain(|_, e| *e > now);
        }
        if used.len() >= MAX_USED_LINKS {
            return message(
                ctx,
                503,
                "Busy",
                "Too many links in use; try again shortly.",
            );
        }
        used.insert(sig, exp);
    }
    let Some(n) = nonce() else {
        return message(ctx, 500, "Error", "No randomness available.");
    };
    let value = ctx.cfg.signer.session(id, exp, &n);
    log::debug!("secure-pay-agent: link for call {id} exchanged for a session");
    enter(Some(cookie_header(
        ctx,
        id,
        &value,
        exp.saturating_sub(now),
    )))
}

fn page(ctx: &Ctx, id: &str, req: &Request) -> Response {
    let sess = match check_session(ctx, id, req, true) {
        Ok(s) => s.value,
        Err(r) => return r,
    };
    let body = PAGE_HTML
        .replace("{{CALL}}", &html_escape(id))
        .replace("{{TOKEN}}", &ctx.cfg.signer.session_csrf(id, &sess));
    security_headers(ctx, Response::new(200, "text/html; charset=utf-8", body))
}

/// Server-Sent Events: a full snapshot now, then one on every change (sent by the stream
/// writer thread); ends at session expiry or when the call has ended.
fn events(ctx: &Ctx, id: &str, req: &Request, stream: TcpStream, slot: Slot) {
    let (exp, node, call) = match check_session(ctx, id, req, true) {
        Ok(s) => (s.exp, s.node, s.id),
        Err(r) => {
            let _ = r.write_to(&stream);
            return;
        }
    };
    let Some((snap, seen)) = node.hub.snapshot(call) else {
        let _ = no_such_call(ctx, node, call).write_to(&stream);
        return;
    };
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n\
         Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n\
         Referrer-Policy: no-referrer\r\nX-Accel-Buffering: no\r\nConnection: close\r\n\r\n\
         retry: 1500\n\nevent: snapshot\ndata: {snap}\n\n"
    );
    let s = Stream::new(
        stream,
        id,
        Arc::clone(&node.hub),
        call,
        exp,
        seen,
        head.into_bytes(),
        slot,
    );
    if let Err(s) = ctx.streams.add(s) {
        log::debug!("secure-pay-agent: stream cap reached for call {id}: 429");
        let s = *s;
        let sock = s.into_socket();
        let _ = sock.set_nonblocking(false);
        let _ = json(
            ctx,
            429,
            false,
            "too many live connections for this call (close other tabs of this page)",
        )
        .with("Retry-After", "5")
        .write_to(&sock);
    }
}

#[derive(Deserialize)]
struct ActionBody {
    command: String,
    #[serde(default)]
    field: Option<String>,
}

/// Is `origin` this service's own origin (for `Host`) or an allowed one?
fn origin_ok(ctx: &Ctx, req: &Request) -> bool {
    let Some(origin) = req.header("Origin") else {
        return false;
    };
    if ctx.cfg.allowed_origins.iter().any(|o| o == origin) {
        return true;
    }
    let Some(host) = req.header("Host") else {
        return false;
    };
    origin == format!("http://{host}") || origin == format!("https://{host}")
}

fn action(ctx: &Ctx, id: &str, req: &Request) -> Response {
    let (sess, node, call) = match check_session(ctx, id, req, false) {
        Ok(s) => (s.value, s.node, s.id),
        Err(r) if r.status == 410 => return json(ctx, 410, false, "the call has ended"),
        Err(r) if r.status == 404 => return json(ctx, 404, false, "no such call"),
        Err(_) => {
            return json(
                ctx,
                403,
                false,
                "access refused: no valid session for this call (open the page again from \
                 your agent desktop)",
            )
        }
    };
    if !origin_ok(ctx, req) {
        return json(
            ctx,
            403,
            false,
            "cross-site request refused (Origin does not match)",
        );
    }
    if req
        .header("Sec-Fetch-Site")
        .is_some_and(|s| s != "same-origin")
    {
        return json(
            ctx,
            403,
            false,
            "cross-site request refused (Sec-Fetch-Site)",
        );
    }
    let token_ok = req
        .header("X-SecurePay-Token")
        .is_some_and(|t| ctx.cfg.signer.verify_session_csrf(id, &sess, t));
    if !token_ok {
        return json(
            ctx,
            403,
            false,
            "request refused: missing or wrong page token",
        );
    }
    if !req
        .header("Content-Type")
        .is_some_and(|t| t.starts_with("application/json"))
    {
        return json(ctx, 400, false, "send the command as application/json");
    }
    let body: ActionBody = match serde_json::from_slice(&req.body) {
        Ok(b) => b,
        Err(_) => return json(ctx, 400, false, "malformed command"),
    };
    // The call's own node only: the key (signed with the session) named it.
    let Some((chan, ended)) = node.hub.channel_of(call) else {
        return json(ctx, 404, false, "no such call");
    };
    if ended {
        return json(ctx, 409, false, "the call has ended");
    }
    let verb = body.command.trim().to_ascii_lowercase();
    // Only the page's verbs; the text is re-checked by the core parser before it is sent.
    let (command, field) = match verb.as_str() {
        "start" => ("start".to_string(), None),
        "capture" => {
            let f = body.field.as_deref().unwrap_or("");
            match parse_command(&format!("capture {f}")) {
                Ok(Command::Capture(k)) => ("capture".to_string(), Some(k.name())),
                _ => return json(ctx, 400, false, "unknown field"),
            }
        }
        "clear" | "restart" | "submit" | "cancel" | "stop" => match parse_command(&verb) {
            Ok(c) => (c.verb().to_string(), None),
            Err(e) => return json(ctx, 400, false, &e.to_string()),
        },
        _ => return json(ctx, 400, false, "unknown command"),
    };
    if command == "start" {
        if node.hub.mode_of(call) != Some(Mode::Off) {
            return json(ctx, 409, false, "secure mode is already on for this call");
        }
        node.hub.mark_securing(call);
    }
    let options = if command == "start" {
        ctx.cfg.start_options.as_str()
    } else {
        ""
    };
    match node.pbx.command(&chan, call, &command, field, options) {
        Ok(Ok(text)) => {
            node.hub.command_result(call, &command, Ok(()));
            json(ctx, 200, true, &text)
        }
        Ok(Err(text)) => {
            let text = if text.is_empty() {
                "refused by the module".into()
            } else {
                text
            };
            node.hub.command_result(call, &command, Err(text.clone()));
            json(ctx, 409, false, &text)
        }
        Err(e) => {
            node.hub.command_result(call, &command, Err(e.clone()));
            json(ctx, 502, false, &e)
        }
    }
}
