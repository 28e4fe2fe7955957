//! `secure-pay-agent`: the agent payment page. Connects to Asterisk AMI, tracks each call's
//! masked `SecurePay*` events ([`state`]) and serves one embeddable page per call, keyed by the
//! customer channel's **Uniqueid**, reachable only through a signed, expiring link ([`sign`]).
//! The page gets live updates over Server-Sent Events (a full snapshot on every change and on
//! every (re)connect) and drives the module with the AMI action `SecurePay`.
//!
//! Routes:
//! - `GET /call/<uniqueid>?exp=..&sig=..` the page (403 unsigned/expired/tampered, 404 unknown).
//! - `GET /call/<uniqueid>/events?exp=..&sig=..` SSE stream of JSON snapshots.
//! - `POST /call/<uniqueid>/action?exp=..&sig=..` body `{"command":"capture","field":"..."}`,
//!   header `X-SecurePay-Token` (the page's CSRF token) and a same-origin `Origin`.
//! - `GET /static/page.js|page.css` assets (no data).
//!
//! Safe Rust, std threads, no async runtime.

pub mod ami;
pub mod esl;
pub mod http;
mod link;
pub mod sign;
pub mod state;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use crate::agent::ami::{Ami, AmiConfig};
use crate::agent::esl::{Esl, EslConfig};
use crate::agent::http::{html_escape, read_request, Request, Response};
use crate::agent::sign::{valid_call_id, Signer};
use crate::agent::state::{Hub, Mode};
use crate::core::capture::{parse_command, Command};

const PAGE_HTML: &str = include_str!("page.html");
const PAGE_JS: &str = include_str!("page.js");
const PAGE_CSS: &str = include_str!("page.css");
const MESSAGE_HTML: &str = include_str!("message.html");

/// Service settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// HTTP listen address (default `127.0.0.1:8090`).
    pub listen: SocketAddr,
    pub ami: AmiConfig,
    /// FreeSWITCH instead of Asterisk: the event socket (ESL) to use; `ami` is then unused.
    pub esl: Option<EslConfig>,
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
    /// Concurrent HTTP connections (each SSE stream holds one).
    pub max_connections: usize,
    /// Keep-alive comment interval on idle SSE streams.
    pub sse_keepalive: Duration,
}

impl Config {
    pub fn new(ami: AmiConfig, signer: Signer) -> Config {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8090)),
            ami,
            esl: None,
            signer,
            frame_ancestors: "'none'".into(),
            start_options: String::new(),
            allowed_origins: Vec::new(),
            max_connections: 64,
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
        Ok(())
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

struct Ctx {
    cfg: Config,
    hub: Arc<Hub>,
    pbx: Arc<dyn PbxControl>,
    stop: Arc<AtomicBool>,
    conns: AtomicUsize,
}

/// The running service.
pub struct Service {
    addr: SocketAddr,
    ctx: Arc<Ctx>,
    accept: Option<JoinHandle<()>>,
}

impl Service {
    /// Binds the HTTP listener and starts the AMI client.
    pub fn start(cfg: Config) -> Result<Service, String> {
        cfg.validate()?;
        let listener = TcpListener::bind(cfg.listen)
            .map_err(|e| format!("cannot listen on {}: {e}", cfg.listen))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let hub = Arc::new(Hub::new());
        let pbx: Arc<dyn PbxControl> = match &cfg.esl {
            Some(e) => Esl::start(e.clone(), Arc::clone(&hub)),
            None => Ami::start(cfg.ami.clone(), Arc::clone(&hub)),
        };
        let ctx = Arc::new(Ctx {
            cfg,
            hub,
            pbx,
            stop: Arc::new(AtomicBool::new(false)),
            conns: AtomicUsize::new(0),
        });
        let c = Arc::clone(&ctx);
        let accept = thread::Builder::new()
            .name("http-accept".into())
            .spawn(move || accept_loop(listener, c))
            .map_err(|e| e.to_string())?;
        Ok(Service {
            addr,
            ctx,
            accept: Some(accept),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.ctx.hub
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
        self.ctx.pbx.stop();
        // unblock accept()
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        if let Some(h) = self.accept.take() {
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

struct ConnGuard<'a>(&'a AtomicUsize);
impl Drop for ConnGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn accept_loop(listener: TcpListener, ctx: Arc<Ctx>) {
    for conn in listener.incoming() {
        if ctx.stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = conn else { continue };
        let n = ctx.conns.fetch_add(1, Ordering::SeqCst);
        if n >= ctx.cfg.max_connections {
            ctx.conns.fetch_sub(1, Ordering::SeqCst);
            let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
            let _ = message(
                &ctx,
                503,
                "Busy",
                "Too many connections; try again shortly.",
            )
            .write_to(&stream);
            continue;
        }
        let c = Arc::clone(&ctx);
        let spawned = thread::Builder::new().name("http".into()).spawn(move || {
            let _g = ConnGuard(&c.conns);
            handle(&c, stream);
        });
        if spawned.is_err() {
            ctx.conns.fetch_sub(1, Ordering::SeqCst);
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

fn handle(ctx: &Ctx, stream: TcpStream) {
    let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
    let req = match read_request(&stream) {
        Ok(r) => r,
        Err(e) => {
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
        ("GET", ["", "static", "page.css"]) => {
            security_headers(ctx, Response::new(200, "text/css; charset=utf-8", PAGE_CSS))
        }
        ("GET", ["", "favicon.ico"]) => {
            security_headers(ctx, Response::new(204, "image/x-icon", ""))
        }
        ("GET", ["", "healthz"]) => {
            let p = ctx.hub.pbx();
            security_headers(
                ctx,
                Response::new(
                    200,
                    "text/plain",
                    if p.connected {
                        "ok pbx=connected\n"
                    } else {
                        "ok pbx=disconnected\n"
                    },
                ),
            )
        }
        ("GET", ["", "call", id]) => page(ctx, id, &req),
        ("GET", ["", "call", id, "events"]) => {
            events(ctx, id, &req, &stream);
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
    let _ = resp.write_to(&stream);
}

/// Checks the link of a request for call `id`: Ok(expiry) or the refusal page.
fn check_link(ctx: &Ctx, id: &str, req: &Request) -> Result<u64, Response> {
    if !valid_call_id(id) {
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

fn no_such_call(ctx: &Ctx, id: &str) -> Response {
    let pbx = ctx.hub.pbx();
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

/// Is the call known, or does the PBX have it (then it is added)?
fn known_or_probed(ctx: &Ctx, id: &str) -> bool {
    if ctx.hub.knows(id) {
        return true;
    }
    match ctx.pbx.probe(id) {
        Some(name) => {
            ctx.hub.add_call(id, &name);
            true
        }
        None => false,
    }
}

fn page(ctx: &Ctx, id: &str, req: &Request) -> Response {
    let exp = match check_link(ctx, id, req) {
        Ok(e) => e,
        Err(r) => return r,
    };
    if !known_or_probed(ctx, id) {
        return no_such_call(ctx, id);
    }
    let sig = req.query("sig").unwrap_or("");
    let body = PAGE_HTML
        .replace("{{CALL}}", &html_escape(id))
        .replace("{{EXP}}", &exp.to_string())
        .replace("{{SIG}}", &html_escape(sig))
        .replace("{{TOKEN}}", &ctx.cfg.signer.csrf_token(id, exp));
    security_headers(ctx, Response::new(200, "text/html; charset=utf-8", body))
}

/// Server-Sent Events: a full snapshot now, then one on every change; ends at link expiry.
fn events(ctx: &Ctx, id: &str, req: &Request, stream: &TcpStream) {
    let exp = match check_link(ctx, id, req) {
        Ok(e) => e,
        Err(r) => {
            let _ = r.write_to(stream);
            return;
        }
    };
    known_or_probed(ctx, id);
    let Some((mut json, mut seen)) = ctx.hub.snapshot(id) else {
        let _ = no_such_call(ctx, id).write_to(stream);
        return;
    };
    let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n\
                Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n\
                Referrer-Policy: no-referrer\r\nX-Accel-Buffering: no\r\nConnection: close\r\n\r\n\
                retry: 1500\n\n";
    let mut w = stream;
    use std::io::Write;
    if w.write_all(head.as_bytes()).is_err() {
        return;
    }
    let mut last_write;
    loop {
        last_write = std::time::Instant::now();
        if w.write_all(format!("event: snapshot\ndata: {json}\n\n").as_bytes())
            .and_then(|()| w.flush())
            .is_err()
        {
            return;
        }
        loop {
            if ctx.stop.load(Ordering::SeqCst) {
                return;
            }
            let now = unix_now();
            if now >= exp {
                let _ = w.write_all(b"event: expired\ndata: {}\n\n");
                return;
            }
            let wait = Duration::from_secs(exp - now).min(Duration::from_secs(1));
            let v = ctx.hub.wait_change(id, seen, wait);
            if v != seen {
                break;
            }
            // keep-alive comment (also detects a closed client) on idle streams
            if last_write.elapsed() >= ctx.cfg.sse_keepalive {
                if w.write_all(b": keep-alive\n\n").is_err() {
                    return;
                }
                last_write = std::time::Instant::now();
            }
        }
        match ctx.hub.snapshot(id) {
            Some((j, v)) => {
                json = j;
                seen = v;
            }
            None => return,
        }
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
    let exp = match check_link(ctx, id, req) {
        Ok(e) => e,
        Err(_) => {
            return json(
                ctx,
                403,
                false,
                "access refused: the link is not valid or has expired",
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
        .is_some_and(|t| ctx.cfg.signer.verify_csrf(id, exp, t));
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
    let Some((chan, ended)) = ctx.hub.channel_of(id) else {
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
        if ctx.hub.mode_of(id) != Some(Mode::Off) {
            return json(ctx, 409, false, "secure mode is already on for this call");
        }
        ctx.hub.mark_securing(id);
    }
    let options = if command == "start" {
        ctx.cfg.start_options.as_str()
    } else {
        ""
    };
    match ctx.pbx.command(&chan, id, &command, field, options) {
        Ok(Ok(text)) => {
            ctx.hub.command_result(id, &command, Ok(()));
            json(ctx, 200, true, &text)
        }
        Ok(Err(text)) => {
            let text = if text.is_empty() {
                "refused by the module".into()
            } else {
                text
            };
            ctx.hub.command_result(id, &command, Err(text.clone()));
            json(ctx, 409, false, &text)
        }
        Err(e) => {
            ctx.hub.command_result(id, &command, Err(e.clone()));
            json(ctx, 502, false, &e)
        }
    }
}
