//! One HTTPS POST with a hard total deadline: a minimal HTTP/1.1 client over
//! `rustls::StreamOwned` (TLS 1.2/1.3 only, ring provider). Every socket read and write is
//! bounded by the time left until the deadline, so connect + TLS + request + response never
//! exceed `timeout_ms` (only the DNS lookup of a host name is outside it; use an IP address
//! or a name in /etc/hosts where that matters).
//!
//! Plain `http://` is refused: card data only ever leaves over TLS.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
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

fn err(code: &str, message: impl Into<String>) -> PaymentOutcome {
    PaymentOutcome::Error {
        code: code.into(),
        message: message.into(),
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

fn io_outcome(
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
    body_len: usize,
) -> Zeroizing<Vec<u8>> {
    let mut h = Zeroizing::new(Vec::with_capacity(
        512 + target.path.len()
            + target.host.len()
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

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

/// Decodes a chunked body; `Ok(None)` while incomplete.
fn dechunk(mut data: &[u8]) -> Result<Option<Zeroizing<Vec<u8>>>, String> {
    // The decoded body is never longer than the encoded one: no reallocation.
    let mut out = Zeroizing::new(Vec::with_capacity(data.len()));
    loop {
        let Some(eol) = find(data, b"\r\n") else {
            return Ok(None);
        };
        let line = std::str::from_utf8(&data[..eol]).map_err(|_| "bad chunk size line")?;
        let size_txt = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_txt, 16)
            .map_err(|_| format!("bad chunk size {size_txt:?}"))?;
        data = &data[eol + 2..];
        if size == 0 {
            return Ok(Some(out)); // trailers ignored
        }
        if data.len() < size + 2 {
            return Ok(None);
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// Reads one response (we sent `Connection: close`). Bounded in size and by the deadline.
fn read_response<R: Read>(r: &mut R) -> Result<Response, Result<io::Error, String>> {
    // Sized once for the largest accepted response, so it never reallocates (and leaves no
    // unwiped copy behind); zeroized on drop like the read chunk.
    let mut buf: Zeroizing<Vec<u8>> = Zeroizing::new(Vec::with_capacity(MAX_RESPONSE_BYTES + 4096));
    let mut chunk = Zeroizing::new([0u8; 4096]);
    let mut head: Option<(usize, u16, String, Framing)> = None;
    loop {
        // Is what we have complete?
        if head.is_none() {
            if let Some(end) = find(&buf, b"\r\n\r\n") {
                let (status, reason, framing) = parse_head(&buf[..end]).map_err(Err)?;
                head = Some((end + 4, status, reason, framing));
            }
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
                    if let Some(b) = dechunk(body).map_err(Err)? {
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
        if buf.len() >= MAX_RESPONSE_BYTES {
            return Err(Err(format!(
                "response larger than {MAX_RESPONSE_BYTES} bytes"
            )));
        }
        let room = (MAX_RESPONSE_BYTES - buf.len()).min(chunk.len());
        let n = match r.read(&mut chunk[..room]) {
            Ok(n) => n,
            // A peer that closes without TLS close_notify: treat as end of stream.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => 0,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Ok(e)),
        };
        if n == 0 {
            return match head {
                Some((start, status, reason, Framing::UntilClose)) => Ok(Response {
                    status,
                    reason,
                    body: Zeroizing::new(buf[start..].to_vec()),
                }),
                Some(_) => Err(Err(
                    "connection closed before the end of the response body".into()
                )),
                None if buf.is_empty() => Err(Ok(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed by the connector without any response",
                ))),
                None => Err(Err(
                    "connection closed in the middle of the response headers".into(),
                )),
            };
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn parse_head(head: &[u8]) -> Result<(u16, String, Framing), String> {
    let text = std::str::from_utf8(head).map_err(|_| "response headers are not UTF-8")?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(format!(
            "not an HTTP/1.x response: {:?}",
            body::sanitize(status_line, 60)
        ));
    }
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|s| (100..600).contains(s))
        .ok_or_else(|| format!("bad HTTP status line {:?}", body::sanitize(status_line, 60)))?;
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
            let n = value
                .parse::<usize>()
                .map_err(|_| format!("bad Content-Length {value:?}"))?;
            if n > MAX_RESPONSE_BYTES {
                return Err(format!("response larger than {MAX_RESPONSE_BYTES} bytes"));
            }
            framing = Framing::Length(n);
        }
    }
    if (100..200).contains(&status) {
        return Err(format!("unexpected interim HTTP status {status}"));
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
    body: Zeroizing<Vec<u8>>,
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

    let head = request_head(&target, profile, body.len());
    let sent = tls
        .write_all(&head)
        .and_then(|()| tls.write_all(&body))
        .and_then(|()| tls.flush());
    drop(head);
    drop(body); // zeroized here: the card data is gone from our memory before we wait
    if let Err(e) = sent {
        return io_outcome(&e, Phase::Send, timeout_ms, has_client_cert);
    }

    let resp = match read_response(&mut tls) {
        Ok(r) => r,
        Err(Ok(e)) => return io_outcome(&e, Phase::Receive, timeout_ms, has_client_cert),
        Err(Err(m)) => return err(codes::BAD_RESPONSE, m),
    };
    tls.conn.send_close_notify();
    let _ = tls.conn.complete_io(&mut tls.sock);

    if !(200..300).contains(&resp.status) {
        let detail = body::error_message_of(&resp.body)
            .map(|m| format!(": {m}"))
            .unwrap_or_default();
        return err(
            codes::HTTP_ERROR,
            format!(
                "connector answered HTTP {} {}{detail}",
                resp.status, resp.reason
            ),
        );
    }
    body::parse_response(method, &resp.body)
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
        assert!(matches!(read_response(&mut r), Err(Err(_))));
        let mut r: &[u8] = b"";
        assert!(
            matches!(read_response(&mut r), Err(Ok(e)) if e.kind() == io::ErrorKind::UnexpectedEof)
        );
        // Endless body without a length: refused at the cap, not read forever.
        let mut r = std::io::repeat(b'x');
        let mut framed = b"HTTP/1.1 200 OK\r\n\r\n".chain(&mut r);
        assert!(matches!(read_response(&mut framed), Err(Err(m)) if m.contains("larger")));
        let mut r: &[u8] = b"SSH-2.0-OpenSSH\r\n\r\n";
        assert!(matches!(read_response(&mut r), Err(Err(_))));
    }
}
