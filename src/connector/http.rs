//! One HTTPS POST with a hard total deadline: a minimal HTTP/1.1 client over
//! `rustls::StreamOwned` (TLS 1.2/1.3 only, ring provider). Every socket read and write is
//! bounded by the time left until the deadline, so connect + TLS + request + response never
//! exceed `timeout_ms` (only the DNS lookup of a host name is outside it; use an IP address
//! or a name in /etc/hosts where that matters).
//!
//! Plain `http://` is refused: card data only ever leaves over TLS.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use zeroize::Zeroizing;

use crate::core::payment::{ConnectorProfile, PaymentMethod, PaymentOutcome};

use super::{body, codes};

/// Used when a profile leaves `timeout_ms` at 0.
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;
/// Longer `timeout_ms` values are clamped to this (10 minutes).
pub const MAX_TIMEOUT_MS: u64 = 600_000;
/// Larger responses are refused (a Generic Pay Connector answer is a few hundred bytes).
const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// At most this many bytes are read in all (interim `1xx` responses included).
const MAX_TOTAL_BYTES: usize = 2 * MAX_RESPONSE_BYTES;
/// More interim (`1xx`) responses than this before the final one: refused.
const MAX_INTERIM: usize = 16;

/// Certainly not charged (nothing sent, or the processor said no).
fn err(code: &str, message: impl Into<String>) -> PaymentOutcome {
    PaymentOutcome::Error {
        code: code.into(),
        message: message.into(),
    }
}

/// The card was (or may have been) sent, and no usable answer came back.
fn unknown(code: &str, message: impl Into<String>) -> PaymentOutcome {
    PaymentOutcome::Unknown {
        code: code.into(),
        message: message.into(),
    }
}

/// Lets [`crate::connector::Connector::shutdown_bounded`] break an exchange that is still
/// waiting: the worker registers a clone of its socket here; `aborting` is set before the
/// registered sockets are shut down, and checked right after registering (so one of the two
/// always sees the other).
pub(crate) struct AbortSlot<'a> {
    pub socket: &'a Mutex<Option<TcpStream>>,
    pub aborting: &'a AtomicBool,
}

impl AbortSlot<'_> {
    /// Registers the socket; false if the connector is already aborting (send nothing then).
    fn register(&self, sock: &TcpStream) -> bool {
        if let Ok(clone) = sock.try_clone() {
            *self.socket.lock().unwrap_or_else(|p| p.into_inner()) = Some(clone);
        }
        if self.aborting.load(Ordering::SeqCst) {
            let _ = sock.shutdown(Shutdown::Both);
            return false;
        }
        true
    }

    fn aborted(&self) -> bool {
        self.aborting.load(Ordering::SeqCst)
    }
}

/// Parsed `https://host[:port]/path?query`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Target {
    pub host: String,
    pub port: u16,
    /// Path and query, at least `/`.
    pub path: String,
}

pub(crate) fn parse_url(url: &str) -> Result<Target, String> {
    let url = url.trim();
    let rest = match url.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("https") => rest,
        Some((scheme, _)) if scheme.eq_ignore_ascii_case("http") => {
            return Err(format!(
                "connector url {url:?} is plain http: refused, card data only goes over https"
            ))
        }
        _ => return Err(format!("connector url {url:?} must start with https://")),
    };
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let path = path.split('#').next().unwrap_or("/");
    let path = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    };
    if authority.contains('@') {
        return Err(format!(
            "connector url {url:?} has credentials in it: use the profile's username/password"
        ));
    }
    if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(format!(
            "connector url {url:?} has spaces or control characters in its path"
        ));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("connector url {url:?}: unterminated [IPv6] host"))?;
        (h, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(format!("connector url {url:?} has no host"));
    }
    let port = match port {
        None => 443,
        Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| {
            format!("connector url {url:?}: port {p:?} is not a number in 1..65535")
        })?,
    };
    Ok(Target {
        host: host.to_owned(),
        port,
        path,
    })
}

/// Builds the rustls client configuration for a profile: TLS 1.3 and 1.2 only, Mozilla's
/// roots (webpki-roots) plus the profile's `ca_file`, and the client certificate for mutual
/// TLS when `client_cert_file` and `client_key_file` are both set.
pub(crate) fn tls_config(profile: &ConnectorProfile) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(ca) = profile.ca_file.as_deref().filter(|s| !s.is_empty()) {
        let mut added = 0;
        let iter = CertificateDer::pem_file_iter(ca)
            .map_err(|e| format!("ca_file {ca:?}: cannot read: {e}"))?;
        for cert in iter {
            let cert = cert.map_err(|e| format!("ca_file {ca:?}: bad PEM: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("ca_file {ca:?}: unusable CA certificate: {e}"))?;
            added += 1;
        }
        if added == 0 {
            return Err(format!("ca_file {ca:?} contains no certificate"));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots);
    let cert = profile
        .client_cert_file
        .as_deref()
        .filter(|s| !s.is_empty());
    let key = profile.client_key_file.as_deref().filter(|s| !s.is_empty());
    let config = match (cert, key) {
        (None, None) => builder.with_no_client_auth(),
        (Some(c), Some(k)) => {
            let chain = CertificateDer::pem_file_iter(c)
                .map_err(|e| format!("client_cert_file {c:?}: cannot read: {e}"))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("client_cert_file {c:?}: bad PEM: {e}"))?;
            if chain.is_empty() {
                return Err(format!("client_cert_file {c:?} contains no certificate"));
            }
            let key = PrivateKeyDer::from_pem_file(k)
                .map_err(|e| format!("client_key_file {k:?}: cannot read a private key: {e}"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("client certificate/key {c:?}/{k:?}: {e}"))?
        }
        _ => {
            return Err(
                "mutual TLS needs both client_cert_file and client_key_file (only one is set)"
                    .into(),
            )
        }
    };
    Ok(Arc::new(config))
}

/// A TCP stream whose every read/write is bounded by what is left until `deadline`.
struct DeadlineStream {
    sock: TcpStream,
    deadline: Instant,
}

impl DeadlineStream {
    fn remaining(&self) -> io::Result<Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(io::Error::new(io::ErrorKind::TimedOut, "deadline reached"))
        } else {
            Ok(left)
        }
    }
}

fn as_timeout(e: io::Error) -> io::Error {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            io::Error::new(io::ErrorKind::TimedOut, "deadline reached")
        }
        _ => e,
    }
}

impl Read for DeadlineStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.remaining()?;
        self.sock.set_read_timeout(Some(left))?;
        self.sock.read(buf).map_err(as_timeout)
    }
}

impl Write for DeadlineStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let left = self.remaining()?;
        self.sock.set_write_timeout(Some(left))?;
        self.sock.write(buf).map_err(as_timeout)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.sock.flush()
    }
}

/// Phase of the exchange, to name errors clearly.
#[derive(Clone, Copy)]
enum Phase {
    Handshake,
    Send,
    Receive,
}

/// True for a TLS alert that means "your certificate / handshake was refused": the server
/// never processed a request on that connection.
fn is_refusal_alert(tls: &rustls::Error) -> bool {
    use rustls::AlertDescription as A;
    matches!(
        tls,
        rustls::Error::AlertReceived(
            A::CertificateRequired
                | A::BadCertificate
                | A::UnsupportedCertificate
                | A::CertificateRevoked
                | A::CertificateExpired
                | A::CertificateUnknown
                | A::UnknownCA
                | A::AccessDenied
                | A::HandshakeFailure
        )
    )
}

/// Maps an I/O failure. Before anything was sent (handshake) it is an `error`; once the
/// request may have left (send, receive) it is `unknown` — except a TLS alert refusing our
/// certificate, which means the server never took the request.
fn io_outcome(
    e: &io::Error,
    phase: Phase,
    timeout_ms: u64,
    has_client_cert: bool,
) -> PaymentOutcome {
    let o = io_outcome_inner(e, phase, timeout_ms, has_client_cert);
    let refused = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(is_refusal_alert);
    match (phase, o) {
        (Phase::Send | Phase::Receive, PaymentOutcome::Error { code, message }) if !refused => {
            PaymentOutcome::Unknown { code, message }
        }
        (_, o) => o,
    }
}

fn io_outcome_inner(
    e: &io::Error,
    phase: Phase,
    timeout_ms: u64,
    has_client_cert: bool,
) -> PaymentOutcome {
    if let Some(tls) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        return err(codes::TLS_ERROR, format!("TLS failure: {tls}"));
    }
    if e.kind() == io::ErrorKind::TimedOut {
        return err(
            codes::TIMEOUT,
            format!("no complete answer within {timeout_ms} ms"),
        );
    }
    match phase {
        Phase::Handshake => err(
            codes::TLS_ERROR,
            format!("TLS handshake failed: connection closed or reset by the server ({e})"),
        ),
        // A TLS 1.3 server that refuses a (missing) client certificate may close before
        // its alert is read: say what the likely cause is.
        _ if !has_client_cert
            && matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset
                    | io::ErrorKind::BrokenPipe
                    | io::ErrorKind::UnexpectedEof
            ) =>
        {
            err(
                codes::IO_ERROR,
                format!(
                    "connection closed or reset by the connector ({e}); if it requires mutual TLS, set \
                     client_cert_file and client_key_file"
                ),
            )
        }
        Phase::Send => err(codes::IO_ERROR, format!("sending the request failed: {e}")),
        Phase::Receive => err(codes::IO_ERROR, format!("reading the response failed: {e}")),
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_into(input: &[u8], out: &mut Vec<u8>) {
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(B64[(n >> 18) as usize & 63]);
        out.push(B64[(n >> 12) as usize & 63]);
        out.push(if chunk.len() > 1 {
            B64[(n >> 6) as usize & 63]
        } else {
            b'='
        });
        out.push(if chunk.len() > 2 {
            B64[n as usize & 63]
        } else {
            b'='
        });
    }
}

/// The request head (no card data, but it may carry the basic-auth password: zeroized too).
fn request_head(
    target: &Target,
    profile: &ConnectorProfile,
    idempotency_key: &str,
    body_len: usize,
) -> Zeroizing<Vec<u8>> {
    let mut h = Zeroizing::new(Vec::with_capacity(
        512 + target.path.len()
            + target.host.len()
            + idempotency_key.len()
            + 2 * (profile.username.as_deref().map_or(0, str::len)
                + profile.password.as_deref().map_or(0, str::len)),
    ));
    h.extend_from_slice(b"POST ");
    h.extend_from_slice(target.path.as_bytes());
    h.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    if target.host.contains(':') {
        h.extend_from_slice(format!("[{}]", target.host).as_bytes());
    } else {
        h.extend_from_slice(target.host.as_bytes());
    }
    if target.port != 443 {
        h.extend_from_slice(format!(":{}", target.port).as_bytes());
    }
    h.extend_from_slice(b"\r\nContent-Type: application/json\r\nAccept: application/json\r\n");
    h.extend_from_slice(b"User-Agent: secure_pay/");
    h.extend_from_slice(env!("CARGO_PKG_VERSION").as_bytes());
    h.extend_from_slice(b"\r\nConnection: close\r\n");
    // The transaction id is stable per captured card: a retry of the same payment carries the
    // same key, so a processor that honours it (Stripe, Adyen, ...) charges at most once.
    let key: String = idempotency_key
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(255)
        .collect();
    if !key.is_empty() {
        h.extend_from_slice(b"Idempotency-Key: ");
        h.extend_from_slice(key.as_bytes());
        h.extend_from_slice(b"\r\n");
    }
    if let Some(user) = profile.username.as_deref().filter(|u| !u.is_empty()) {
        let mut cred = Zeroizing::new(Vec::with_capacity(
            user.len() + 1 + profile.password.as_deref().map_or(0, str::len),
        ));
        cred.extend_from_slice(user.as_bytes());
        cred.push(b':');
        cred.extend_from_slice(profile.password.as_deref().unwrap_or("").as_bytes());
        h.extend_from_slice(b"Authorization: Basic ");
        base64_into(&cred, &mut h);
        h.extend_from_slice(b"\r\n");
    }
    h.extend_from_slice(format!("Content-Length: {body_len}\r\n\r\n").as_bytes());
    h
}

/// A parsed HTTP response.
pub(crate) struct Response {
    pub status: u16,
    pub reason: String,
    /// Zeroized on drop too: a careless connector might echo the request.
    pub body: Zeroizing<Vec<u8>>,
}

/// Why a response could not be read. Every class maps to an `unknown` outcome in the connector
/// (the request was sent), except a refused TLS certificate inside `Io`.
#[derive(Debug)]
pub enum ResponseError {
    /// The connection ended before the first byte of an answer.
    Empty,
    /// The connection ended before the answer was complete (headers or body).
    Truncated,
    /// Not a well-formed HTTP/1.x answer (status line, header, chunk framing, 101).
    Malformed(String),
    /// Larger than the limit (64 KiB of body, 128 KiB read in all).
    TooLarge,
    /// More than 16 interim (`1xx`) responses.
    TooManyInterim,
    /// The read failed (timeout, reset, TLS).
    Io(io::Error),
}

impl std::fmt::Display for ResponseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Empty => f.write_str("connection closed by the connector without any response"),
            Self::Truncated => f.write_str("connection closed before the end of the response"),
            Self::Malformed(m) => f.write_str(m),
            Self::TooLarge => write!(f, "response larger than {MAX_RESPONSE_BYTES} bytes"),
            Self::TooManyInterim => {
                write!(f, "more than {MAX_INTERIM} interim (1xx) responses")
            }
            Self::Io(e) => write!(f, "{e}"),
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

/// Decodes a chunked body; `Ok(None)` while incomplete. Sizes are checked (no overflow, at
/// most the response limit) and every chunk must end with CRLF.
fn dechunk(mut data: &[u8]) -> Result<Option<Zeroizing<Vec<u8>>>, ResponseError> {
    // The decoded body is never longer than the encoded one: no reallocation.
    let mut out = Zeroizing::new(Vec::with_capacity(data.len()));
    loop {
        let Some(eol) = find(data, b"\r\n") else {
            return Ok(None);
        };
        let line = std::str::from_utf8(&data[..eol])
            .map_err(|_| ResponseError::Malformed("bad chunk size line".into()))?;
        let size_txt = line.split(';').next().unwrap_or("").trim();
        if size_txt.is_empty() || !size_txt.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ResponseError::Malformed(format!(
                "bad chunk size {:?}",
                body::sanitize(size_txt, 20)
            )));
        }
        // Leading zeros are allowed; more than 8 significant hex digits is over any limit.
        let significant = size_txt.trim_start_matches('0');
        if significant.len() > 8 {
            return Err(ResponseError::TooLarge);
        }
        let size = usize::from_str_radix(
            if significant.is_empty() {
                "0"
            } else {
                significant
            },
            16,
        )
        .map_err(|_| ResponseError::Malformed("bad chunk size".into()))?;
        if size > MAX_RESPONSE_BYTES || out.len().saturating_add(size) > MAX_RESPONSE_BYTES {
            return Err(ResponseError::TooLarge);
        }
        data = &data[eol + 2..];
        if size == 0 {
            return Ok(Some(out)); // trailers ignored
        }
        let Some(end) = size.checked_add(2) else {
            return Err(ResponseError::TooLarge);
        };
        if data.len() < end {
            return Ok(None);
        }
        if &data[size..end] != b"\r\n" {
            return Err(ResponseError::Malformed(
                "chunk data not followed by CRLF".into(),
            ));
        }
        out.extend_from_slice(&data[..size]);
        data = &data[end..];
    }
}

/// Reads one final response (we sent `Connection: close`), skipping interim `1xx` responses
/// (`100 Continue`, `102`, `103 Early Hints`; a `101` is refused). Bounded in size and count
/// and, through the reader, by the deadline.
fn read_response<R: Read>(r: &mut R) -> Result<Response, ResponseError> {
    // Sized once for the largest accepted response, so it never reallocates (and leaves no
    // unwiped copy behind); zeroized on drop like the read chunk.
    let mut buf: Zeroizing<Vec<u8>> = Zeroizing::new(Vec::with_capacity(MAX_RESPONSE_BYTES + 4096));
    let mut chunk = Zeroizing::new([0u8; 4096]);
    let mut head: Option<(usize, u16, String, Framing)> = None;
    let mut interim = 0usize;
    let mut total = 0usize;
    loop {
        // Is what we have complete? (Loop: one read may hold several interim responses.)
        while head.is_none() {
            let Some(end) = find(&buf, b"\r\n\r\n") else {
                break;
            };
            let (status, reason, framing) = parse_head(&buf[..end])?;
            if (100..200).contains(&status) {
                if status == 101 {
                    return Err(ResponseError::Malformed(
                        "unexpected 101 Switching Protocols".into(),
                    ));
                }
                interim += 1;
                if interim > MAX_INTERIM {
                    return Err(ResponseError::TooManyInterim);
                }
                // An interim response has no body: drop it and look at what follows. (drain
                // moves the rest within the same allocation.)
                buf.drain(..end + 4);
                continue;
            }
            head = Some((end + 4, status, reason, framing));
        }
        if let Some((start, status, reason, framing)) = &head {
            let body = &buf[*start..];
            match framing {
                Framing::Length(n) if body.len() >= *n => {
                    return Ok(Response {
                        status: *status,
                        reason: reason.clone(),
                        body: Zeroizing::new(body[..*n].to_vec()),
                    })
                }
                Framing::Chunked => {
                    if let Some(b) = dechunk(body)? {
                        return Ok(Response {
                            status: *status,
                            reason: reason.clone(),
                            body: b,
                        });
                    }
                }
                _ => {}
            }
        }
        if buf.len() >= MAX_RESPONSE_BYTES || total >= MAX_TOTAL_BYTES {
            return Err(ResponseError::TooLarge);
        }
        let room = (MAX_RESPONSE_BYTES - buf.len())
            .min(MAX_TOTAL_BYTES - total)
            .min(chunk.len());
        let n = match r.read(&mut chunk[..room]) {
            Ok(n) => n,
            // A peer that closes without TLS close_notify: treat as end of stream.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => 0,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ResponseError::Io(e)),
        };
        if n == 0 {
            return match head {
                Some((start, status, reason, Framing::UntilClose)) => Ok(Response {
                    status,
                    reason,
                    body: Zeroizing::new(buf[start..].to_vec()),
                }),
                Some(_) => Err(ResponseError::Truncated),
                None if buf.is_empty() && interim == 0 => Err(ResponseError::Empty),
                None => Err(ResponseError::Truncated),
            };
        }
        total += n;
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Parses a complete response from `bytes`, read at most `read_size` bytes at a time (so a
/// caller can exercise every split point). Returns the final status and the decoded body.
/// For fuzzing and property tests of the parser the connector uses.
pub fn parse_response_bytes(
    bytes: &[u8],
    read_size: usize,
) -> Result<(u16, Vec<u8>), ResponseError> {
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }
    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.data.len().min(buf.len()).min(self.step.max(1));
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }
    let mut r = Trickle {
        data: bytes,
        step: read_size,
    };
    read_response(&mut r).map(|resp| (resp.status, resp.body.to_vec()))
}

fn parse_head(head: &[u8]) -> Result<(u16, String, Framing), ResponseError> {
    let bad = ResponseError::Malformed;
    let text =
        std::str::from_utf8(head).map_err(|_| bad("response headers are not UTF-8".into()))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(bad(format!(
            "not an HTTP/1.x response: {:?}",
            body::sanitize(status_line, 60)
        )));
    }
    let status = parts
        .next()
        .filter(|s| s.len() == 3)
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|s| (100..600).contains(s))
        .ok_or_else(|| {
            bad(format!(
                "bad HTTP status line {:?}",
                body::sanitize(status_line, 60)
            ))
        })?;
    let reason = body::sanitize(parts.next().unwrap_or("").trim(), 60);
    let mut framing = Framing::UntilClose;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("transfer-encoding")
            && value.to_ascii_lowercase().contains("chunked")
        {
            framing = Framing::Chunked;
        } else if name.eq_ignore_ascii_case("content-length")
            && !matches!(framing, Framing::Chunked)
        {
            let n = value.parse::<usize>().map_err(|_| {
                bad(format!(
                    "bad Content-Length {:?}",
                    body::sanitize(value, 30)
                ))
            })?;
            if n > MAX_RESPONSE_BYTES {
                return Err(ResponseError::TooLarge);
            }
            framing = Framing::Length(n);
        }
    }
    Ok((status, reason, framing))
}

/// Connects to the first address that answers within the deadline.
fn connect(
    target: &Target,
    deadline: Instant,
    timeout_ms: u64,
) -> Result<TcpStream, PaymentOutcome> {
    let addrs: Vec<SocketAddr> = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .map_err(|e| {
            err(
                codes::CONNECT_FAILED,
                format!("cannot resolve connector host {:?}: {e}", target.host),
            )
        })?
        .collect();
    let mut last = None;
    for addr in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match TcpStream::connect_timeout(&addr, left) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some((addr, e)),
        }
    }
    Err(match last {
        Some((_, e))
            if matches!(
                e.kind(),
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
            ) =>
        {
            err(
                codes::TIMEOUT,
                format!("connecting took longer than {timeout_ms} ms"),
            )
        }
        Some((addr, e)) => err(
            codes::CONNECT_FAILED,
            format!("cannot connect to {addr}: {e}"),
        ),
        None if Instant::now() >= deadline => err(
            codes::TIMEOUT,
            format!("connecting took longer than {timeout_ms} ms"),
        ),
        None => err(
            codes::CONNECT_FAILED,
            format!("connector host {:?} has no address", target.host),
        ),
    })
}

/// POSTs `body` (wiped when this returns) to the profile's URL and maps the answer.
pub(crate) fn post(
    profile: &ConnectorProfile,
    method: PaymentMethod,
    idempotency_key: &str,
    body: Zeroizing<Vec<u8>>,
    abort: AbortSlot<'_>,
) -> PaymentOutcome {
    let timeout_ms = if profile.timeout_ms == 0 {
        DEFAULT_TIMEOUT_MS
    } else {
        profile.timeout_ms.min(MAX_TIMEOUT_MS)
    };
    let deadline = Instant::now() + Duration::from_millis(timeout_ms);
    let target = match parse_url(&profile.url) {
        Ok(t) => t,
        Err(m) => return err(codes::CONFIG_ERROR, m),
    };
    let config = match tls_config(profile) {
        Ok(c) => c,
        Err(m) => return err(codes::CONFIG_ERROR, m),
    };
    let server_name = match ServerName::try_from(target.host.clone()) {
        Ok(n) => n,
        Err(e) => {
            return err(
                codes::CONFIG_ERROR,
                format!("connector host {:?}: {e}", target.host),
            )
        }
    };
    let sock = match connect(&target, deadline, timeout_ms) {
        Ok(s) => s,
        Err(o) => return o,
    };
    let _ = sock.set_nodelay(true);
    if !abort.register(&sock) {
        return err(
            codes::SHUTDOWN,
            "payment connector shut down before the request was sent",
        );
    }
    let conn = match ClientConnection::new(config, server_name) {
        Ok(c) => c,
        Err(e) => return err(codes::TLS_ERROR, format!("TLS setup: {e}")),
    };
    let has_client_cert = profile
        .client_cert_file
        .as_deref()
        .is_some_and(|c| !c.is_empty());
    let mut tls = StreamOwned::new(conn, DeadlineStream { sock, deadline });

    while tls.conn.is_handshaking() {
        if let Err(e) = tls.conn.complete_io(&mut tls.sock) {
            return io_outcome(&e, Phase::Handshake, timeout_ms, has_client_cert);
        }
    }

    let head = request_head(&target, profile, idempotency_key, body.len());
    let sent = tls
        .write_all(&head)
        .and_then(|()| tls.write_all(&body))
        .and_then(|()| tls.flush());
    drop(head);
    drop(body); // zeroized here: the card data is gone from our memory before we wait
    let aborted_msg = || {
        unknown(
            codes::IO_ERROR,
            "payment connector shut down while waiting for the answer; the payment may have gone through",
        )
    };
    if let Err(e) = sent {
        if abort.aborted() {
            return aborted_msg();
        }
        return io_outcome(&e, Phase::Send, timeout_ms, has_client_cert);
    }

    let resp = match read_response(&mut tls) {
        Ok(r) => r,
        Err(_) if abort.aborted() => return aborted_msg(),
        Err(ResponseError::Io(e)) => {
            return io_outcome(&e, Phase::Receive, timeout_ms, has_client_cert)
        }
        Err(ResponseError::Empty) => {
            let e = io::Error::new(
                io::ErrorKind::UnexpectedEof,
                ResponseError::Empty.to_string(),
            );
            return io_outcome(&e, Phase::Receive, timeout_ms, has_client_cert);
        }
        Err(e) => {
            return unknown(
                codes::BAD_RESPONSE,
                format!("{e}; the payment may have gone through"),
            )
        }
    };
    tls.conn.send_close_notify();
    let _ = tls.conn.complete_io(&mut tls.sock);
    outcome_of(method, &resp)
}

/// Maps a complete answer. 2xx: the Generic Pay Connector body (success, or the processor's
/// `error_code` = declined; an unreadable body is `unknown`). 409 (idempotency key still in
/// use by the first attempt) and 5xx (the server failed, possibly after charging): `unknown`.
/// Any other status (3xx, 4xx): the request was refused, `error`.
fn outcome_of(method: PaymentMethod, resp: &Response) -> PaymentOutcome {
    if (200..300).contains(&resp.status) {
        return body::parse_response(method, &resp.body);
    }
    let detail = body::error_message_of(&resp.body)
        .map(|m| format!(": {m}"))
        .unwrap_or_default();
    let message = format!(
        "connector answered HTTP {} {}{detail}",
        resp.status, resp.reason
    );
    if resp.status == 409 || resp.status >= 500 {
        unknown(codes::HTTP_ERROR, message)
    } else {
        err(codes::HTTP_ERROR, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("https://pay.example.com/charge?x=1").unwrap(),
            Target {
                host: "pay.example.com".into(),
                port: 443,
                path: "/charge?x=1".into()
            }
        );
        assert_eq!(
            parse_url("HTTPS://127.0.0.1:8443").unwrap(),
            Target {
                host: "127.0.0.1".into(),
                port: 8443,
                path: "/".into()
            }
        );
        assert_eq!(
            parse_url("https://[::1]:9/p#frag").unwrap(),
            Target {
                host: "::1".into(),
                port: 9,
                path: "/p".into()
            }
        );
        for bad in [
            "http://127.0.0.1/",
            "ftp://x/",
            "pay.example.com",
            "https://u:p@h/",
            "https://h:0/",
            "https://h:99999/",
            "https:///x",
            "https://h/a b",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn base64() {
        let mut out = Vec::new();
        base64_into(b"Aladdin:open sesame", &mut out);
        assert_eq!(out, b"QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
    }

    #[test]
    fn responses() {
        let mut r: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}garbage";
        let resp = read_response(&mut r).ok().unwrap();
        assert_eq!((resp.status, resp.body.as_slice()), (200, &b"{}"[..]));
        let mut r: &[u8] =
            b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4\r\n\":1}\r\n0\r\n\r\n";
        let resp = read_response(&mut r).ok().unwrap();
        assert_eq!(
            (resp.status, resp.body.as_slice()),
            (201, &b"{\"a\":1}"[..])
        );
        let mut r: &[u8] = b"HTTP/1.0 500 Oops\r\n\r\nbody";
        let resp = read_response(&mut r).ok().unwrap();
        assert_eq!(
            (resp.status, resp.reason.as_str(), resp.body.as_slice()),
            (500, "Oops", &b"body"[..])
        );
        let mut r: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}";
        assert!(matches!(
            read_response(&mut r),
            Err(ResponseError::Truncated)
        ));
        let mut r: &[u8] = b"";
        assert!(matches!(read_response(&mut r), Err(ResponseError::Empty)));
        // Endless body without a length: refused at the cap, not read forever.
        let mut r = std::io::repeat(b'x');
        let mut framed = b"HTTP/1.1 200 OK\r\n\r\n".chain(&mut r);
        assert!(matches!(
            read_response(&mut framed),
            Err(ResponseError::TooLarge)
        ));
        let mut r: &[u8] = b"SSH-2.0-OpenSSH\r\n\r\n";
        assert!(matches!(
            read_response(&mut r),
            Err(ResponseError::Malformed(_))
        ));
    }

    #[test]
    fn interim_responses_are_skipped_and_bounded() {
        for split in [1, 3, 7, 4096] {
            let r = parse_response_bytes(
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n\
                  HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}",
                split,
            );
            assert!(
                matches!(&r, Ok((200, b)) if b == b"{}"),
                "split {split}: {r:?}"
            );
        }
        // 100 only, then the connection closes: truncated (the request was sent), not empty.
        let r = parse_response_bytes(b"HTTP/1.1 100 Continue\r\n\r\n", 4096);
        assert!(matches!(r, Err(ResponseError::Truncated)), "{r:?}");
        let flood = b"HTTP/1.1 100 Continue\r\n\r\n".repeat(MAX_INTERIM + 1);
        let r = parse_response_bytes(&flood, 4096);
        assert!(matches!(r, Err(ResponseError::TooManyInterim)), "{r:?}");
        let mut ok = b"HTTP/1.1 102 Processing\r\n\r\n".repeat(MAX_INTERIM);
        ok.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        assert!(matches!(parse_response_bytes(&ok, 5), Ok((200, _))));
        let r = parse_response_bytes(b"HTTP/1.1 101 Switching Protocols\r\n\r\n", 4096);
        assert!(matches!(r, Err(ResponseError::Malformed(_))), "{r:?}");
    }

    #[test]
    fn hostile_chunk_sizes_are_refused_without_overflow() {
        for size in [
            "ffffffffffffffff",
            "fffffffffffffffe",
            "10000000000000000",
            "7fffffffffffffff",
            "000000000000000000000000ffffffff",
            "100000", // 1 MiB > limit
        ] {
            let resp = format!(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{size}\r\nab\r\n0\r\n\r\n"
            );
            let r = parse_response_bytes(resp.as_bytes(), 4096);
            assert!(matches!(r, Err(ResponseError::TooLarge)), "{size}: {r:?}");
        }
        for bad in ["-1", "", "0x10", "1 2", "+5"] {
            let resp = format!(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{bad}\r\nab\r\n0\r\n\r\n"
            );
            let r = parse_response_bytes(resp.as_bytes(), 4096);
            assert!(
                matches!(r, Err(ResponseError::Malformed(_))),
                "{bad:?}: {r:?}"
            );
        }
        // Leading zeros are fine; data not followed by CRLF is not.
        let r = parse_response_bytes(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0002\r\n{}\r\n0\r\n\r\n",
            3,
        );
        assert!(matches!(&r, Ok((200, b)) if b == b"{}"), "{r:?}");
        let r = parse_response_bytes(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}XX0\r\n\r\n",
            4096,
        );
        assert!(matches!(r, Err(ResponseError::Malformed(_))), "{r:?}");
    }

    fn resp(status: u16, body: &[u8]) -> Response {
        Response {
            status,
            reason: String::new(),
            body: Zeroizing::new(body.to_vec()),
        }
    }

    #[test]
    fn unknown_vs_declined() {
        use PaymentMethod::Charge;
        let class = |o: PaymentOutcome| o.class();
        // The processor said no: declined (error).
        let declined = br#"{"error_code":"card_declined","error_message":"Declined"}"#;
        assert_eq!(class(outcome_of(Charge, &resp(200, declined))), "error");
        assert_eq!(class(outcome_of(Charge, &resp(402, declined))), "error");
        assert_eq!(class(outcome_of(Charge, &resp(400, b""))), "error");
        assert_eq!(class(outcome_of(Charge, &resp(301, b""))), "error");
        // Sent, no usable answer: unknown.
        for st in [409, 500, 502, 503, 504] {
            assert_eq!(class(outcome_of(Charge, &resp(st, b""))), "unknown", "{st}");
        }
        assert_eq!(class(outcome_of(Charge, &resp(200, b"{trunc"))), "unknown");
        assert_eq!(class(outcome_of(Charge, &resp(200, b"{}"))), "unknown");
        assert_eq!(
            class(outcome_of(Charge, &resp(200, br#"{"charge_id":"ch_1"}"#))),
            "success"
        );
        // I/O failures: handshake → error; send/receive → unknown; refused cert → error.
        let reset = io::Error::new(io::ErrorKind::ConnectionReset, "reset");
        let timeout = io::Error::new(io::ErrorKind::TimedOut, "t");
        assert_eq!(
            class(io_outcome(&reset, Phase::Handshake, 1, false)),
            "error"
        );
        assert_eq!(
            class(io_outcome(&timeout, Phase::Handshake, 1, false)),
            "error"
        );
        assert_eq!(class(io_outcome(&reset, Phase::Send, 1, false)), "unknown");
        assert_eq!(
            class(io_outcome(&reset, Phase::Receive, 1, true)),
            "unknown"
        );
        assert_eq!(
            class(io_outcome(&timeout, Phase::Receive, 1, false)),
            "unknown"
        );
        let alert = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired),
        );
        assert_eq!(class(io_outcome(&alert, Phase::Receive, 1, false)), "error");
        let mac = io::Error::new(io::ErrorKind::InvalidData, rustls::Error::DecryptError);
        assert_eq!(class(io_outcome(&mac, Phase::Receive, 1, false)), "unknown");
    }

    #[test]
    fn idempotency_key_header() {
        let target = parse_url("https://pay.example/x").unwrap();
        let head = request_head(&target, &ConnectorProfile::default(), "chan-1-1", 5);
        let text = std::str::from_utf8(&head).unwrap();
        assert!(text.contains("\r\nIdempotency-Key: chan-1-1\r\n"), "{text}");
        // A hostile id cannot inject a header.
        let head = request_head(&target, &ConnectorProfile::default(), "a\r\nX-Evil: 1", 5);
        let text = std::str::from_utf8(&head).unwrap();
        assert!(!text.contains("\r\nX-Evil"), "{text}");
    }
}
