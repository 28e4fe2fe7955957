//! A minimal HTTP/1.1 request reader and response writer (std only): one request per
//! connection (`Connection: close`); small header and body limits; one deadline for the whole
//! request (slow-loris).

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

pub const MAX_HEAD: usize = 16 * 1024;
pub const MAX_BODY: usize = 4 * 1024;

/// A parsed request.
#[derive(Debug)]
pub struct Request {
    pub method: String,
    /// Path without the query, percent-decoding NOT applied (ids are restricted to safe chars).
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, k: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(hk, _)| hk.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.as_str())
    }

    pub fn query(&self, k: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(qk, _)| qk == k)
            .map(|(_, v)| v.as_str())
    }
}

fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' if i + 2 < b.len() => {
                let h = std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match h {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .take(32)
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (pct_decode(k), pct_decode(v)),
            None => (pct_decode(p), String::new()),
        })
        .collect()
}

/// Why a request could not be read.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadError {
    /// The request deadline passed before the head and body arrived (slow client): 408.
    Timeout,
    /// The client closed the connection or the socket failed (nothing to answer).
    Closed(String),
    /// Malformed or over a limit: 400 with this text.
    Bad(String),
}

impl From<&str> for ReadError {
    fn from(s: &str) -> ReadError {
        ReadError::Bad(s.to_string())
    }
}

fn io_err(e: std::io::Error) -> ReadError {
    match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => ReadError::Timeout,
        _ => ReadError::Closed(e.to_string()),
    }
}

/// A socket reader with ONE deadline for the whole request (head and body): each `read` waits
/// at most the time left, so a client that trickles a byte now and then (slow-loris) is cut off
/// at the deadline, not kept alive by every byte.
pub struct DeadlineReader<'a> {
    stream: &'a TcpStream,
    deadline: Instant,
}

impl<'a> DeadlineReader<'a> {
    pub fn new(stream: &'a TcpStream, timeout: Duration) -> DeadlineReader<'a> {
        DeadlineReader {
            stream,
            deadline: Instant::now() + timeout,
        }
    }
}

impl Read for DeadlineReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left < Duration::from_millis(1) {
            return Err(ErrorKind::TimedOut.into());
        }
        self.stream.set_read_timeout(Some(left))?;
        let mut s = self.stream;
        s.read(buf)
    }
}

/// Reads one request from `stream` within `timeout` (head and body together).
pub fn read_request(stream: &TcpStream, timeout: Duration) -> Result<Request, ReadError> {
    let mut r = BufReader::with_capacity(4096, DeadlineReader::new(stream, timeout));
    parse_request(&mut r)
}

/// Parses one request (head limited to [`MAX_HEAD`], body to [`MAX_BODY`], no chunked bodies)
/// from any reader; hostile input gives `Err`, never a panic (fuzzed in tests/agent_fuzz.rs).
pub fn parse_request(r: &mut impl BufRead) -> Result<Request, ReadError> {
    let mut head_len = 0usize;
    let mut line = Vec::new();
    let mut read_line = |r: &mut dyn BufRead, line: &mut Vec<u8>| -> Result<String, ReadError> {
        line.clear();
        let n = r
            .take((MAX_HEAD - head_len.min(MAX_HEAD)) as u64)
            .read_until(b'\n', line)
            .map_err(io_err)?;
        head_len += n;
        if n == 0 && head_len == 0 {
            return Err(ReadError::Closed("no request".into()));
        }
        if n == 0 || line.last() != Some(&b'\n') {
            return Err(if head_len >= MAX_HEAD {
                "request head too large".into()
            } else {
                ReadError::Closed("request truncated".into())
            });
        }
        String::from_utf8(std::mem::take(line)).map_err(|_| "request head is not UTF-8".into())
    };
    let first = read_line(r, &mut line)?;
    let mut parts = first.split_whitespace();
    let method = parts.next().ok_or("empty request line")?.to_string();
    let target = parts.next().ok_or("no request target")?.to_string();
    let version = parts.next().ok_or("no HTTP version")?;
    if !version.starts_with("HTTP/1.") {
        return Err("unsupported HTTP version".into());
    }
    let mut headers = Vec::new();
    loop {
        let l = read_line(r, &mut line)?;
        let l = l.trim_end_matches(['\r', '\n']);
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':').ok_or("malformed header")?;
        if headers.len() >= 64 {
            return Err("too many headers".into());
        }
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), parse_query(q)),
        None => (target.clone(), Vec::new()),
    };
    let mut req = Request {
        method,
        path,
        query,
        headers,
        body: Vec::new(),
    };
    if req.header("Transfer-Encoding").is_some() {
        return Err("chunked request bodies are not supported".into());
    }
    let len: usize = match req.header("Content-Length") {
        Some(v) => v.parse().map_err(|_| "bad Content-Length")?,
        None => 0,
    };
    if len > MAX_BODY {
        return Err("request body too large".into());
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).map_err(io_err)?;
    req.body = body;
    Ok(req)
}

/// A complete response.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        502 => "Bad Gateway",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

impl Response {
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            headers: vec![("Content-Type", content_type.to_string())],
            body: body.into(),
        }
    }

    pub fn with(mut self, k: &'static str, v: impl Into<String>) -> Response {
        self.headers.push((k, v.into()));
        self
    }

    pub fn write_to(&self, mut w: impl Write) -> std::io::Result<()> {
        let mut head = format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        for (k, v) in &self.headers {
            head.push_str(k);
            head.push_str(": ");
            head.push_str(v);
            head.push_str("\r\n");
        }
        head.push_str(&format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            self.body.len()
        ));
        w.write_all(head.as_bytes())?;
        w.write_all(&self.body)?;
        w.flush()
    }
}

/// Escapes text for HTML (element content and quoted attribute values).
pub fn html_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_and_escape() {
        let q = parse_query("exp=12&sig=ab%2Fcd&x");
        assert_eq!(q[0], ("exp".into(), "12".into()));
        assert_eq!(q[1], ("sig".into(), "ab/cd".into()));
        assert_eq!(q[2], ("x".into(), "".into()));
        assert_eq!(pct_decode("%4"), "%4");
        assert_eq!(pct_decode("%zz1"), "%zz1");
        assert_eq!(
            html_escape("<b a=\"1\">&'"),
            "&lt;b a=&quot;1&quot;&gt;&amp;&#39;"
        );
    }
}
