//! Shared by the connector tests (tests/connector_*.rs): a test PKI generated with rcgen and
//! a small HTTPS server (std TcpListener + rustls ServerConnection on a thread) on 127.0.0.1.
#![allow(dead_code)] // each test target uses a different subset

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, ServerConnection};
use secure_pay::core::payment::{ConnectorProfile, PaymentMethod};

// ---------------------------------------------------------------------------------------------
// Test PKI

pub struct Issued {
    pub cert_pem: String,
    pub cert_der: CertificateDer<'static>,
    pub key_der: Vec<u8>,
    pub key_pem: String,
}

pub struct Ca {
    pub cert: rcgen::Certificate,
    pub key: KeyPair,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    pub fn der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }

    pub fn issue(&self, sans: &[&str], usage: ExtendedKeyUsagePurpose) -> Issued {
        let mut p =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        p.distinguished_name.push(
            DnType::CommonName,
            sans.first().copied().unwrap_or("client"),
        );
        p.extended_key_usages = vec![usage];
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.cert, &self.key).unwrap();
        Issued {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            key_der: key.serialize_der(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "secure_pay-connector-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn write(&self, name: &str, text: &str) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_string_lossy().into_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Everything one test needs: a trusted CA (its PEM in a file for the profile's `ca_file`),
/// a server certificate from it for 127.0.0.1/localhost, and a client certificate.
pub struct Pki {
    pub dir: TempDir,
    pub ca_file: String,
    pub ca: Ca,
    pub server: Issued,
    pub client_ca: Ca,
    pub client_cert_file: String,
    pub client_key_file: String,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = TempDir::new("pki");
        let ca = Ca::new("secure_pay test CA");
        let server = ca.issue(
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let client_ca = Ca::new("secure_pay test client CA");
        let client = client_ca.issue(&["pbx-client.test"], ExtendedKeyUsagePurpose::ClientAuth);
        let ca_file = dir.write("ca.pem", &ca.pem());
        let client_cert_file = dir.write("client.pem", &client.cert_pem);
        let client_key_file = dir.write("client.key", &client.key_pem);
        Pki {
            dir,
            ca_file,
            ca,
            server,
            client_ca,
            client_cert_file,
            client_key_file,
        }
    }

    pub fn profile(&self, port: u16, method: PaymentMethod) -> ConnectorProfile {
        ConnectorProfile {
            name: "test".into(),
            url: format!("https://127.0.0.1:{port}/pay?merchant=7"),
            method,
            timeout_ms: 5_000,
            ca_file: Some(self.ca_file.clone()),
            client_cert_file: None,
            client_key_file: None,
            username: Some("pbx".into()),
            password: Some("s3cret".into()),
            currency_code: "USD".into(),
            description: "Order 1001".into(),
            token_type: "reusable".into(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Test HTTPS server: std TcpListener + rustls ServerConnection on a thread.

#[derive(Clone)]
pub enum Reply {
    /// Raw HTTP response bytes.
    Raw(Vec<u8>),
    /// Read the request, then say nothing (until the test ends or 3 s pass).
    Silence,
    /// After reading the request: for each step, wait, then write the bytes; then close
    /// (close_notify). No steps: close without any answer.
    Steps(Vec<(Duration, Vec<u8>)>),
}

/// [`http`] sent only after `delay` (a slow processor).
pub fn slow(delay: Duration, status: &str, body: &str) -> Reply {
    let Reply::Raw(bytes) = http(status, body) else {
        unreachable!()
    };
    Reply::Steps(vec![(delay, bytes)])
}

pub fn http(status: &str, body: &str) -> Reply {
    Reply::Raw(
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

#[derive(Debug, Clone)]
pub struct Received {
    pub request_line: String,
    pub headers: Vec<(String, String)>,
    pub body: serde_json::Value,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub struct TestServer {
    pub port: u16,
    stop: Arc<AtomicBool>,
    received: Arc<Mutex<Vec<Received>>>,
    tls_failures: Arc<Mutex<Vec<String>>>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Clone, Copy, PartialEq)]
pub enum Versions {
    Any,
    Tls12Only,
}

impl TestServer {
    pub fn start(
        cert: &Issued,
        client_ca: Option<CertificateDer<'static>>,
        versions: Versions,
        reply: Reply,
    ) -> TestServer {
        Self::start_with(cert, client_ca, versions, reply, false)
    }

    /// `abrupt`: on a TLS failure, drop the socket at once (no alert, unread data: RST),
    /// like a server that just hangs up.
    pub fn start_with(
        cert: &Issued,
        client_ca: Option<CertificateDer<'static>>,
        versions: Versions,
        reply: Reply,
        abrupt: bool,
    ) -> TestServer {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        static ANY: &[&rustls::SupportedProtocolVersion] =
            &[&rustls::version::TLS13, &rustls::version::TLS12];
        static TLS12: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(match versions {
                Versions::Any => ANY,
                Versions::Tls12Only => TLS12,
            })
            .unwrap();
        let builder = match client_ca {
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                roots.add(ca).unwrap();
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .unwrap();
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key_der.clone()));
        let config = Arc::new(
            builder
                .with_single_cert(vec![cert.cert_der.clone()], key)
                .unwrap(),
        );

        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let received = Arc::new(Mutex::new(Vec::new()));
        let tls_failures = Arc::new(Mutex::new(Vec::new()));
        let (s, r, f) = (stop.clone(), received.clone(), tls_failures.clone());
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !s.load(Ordering::Acquire) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((sock, _)) => serve(sock, config.clone(), &reply, abrupt, &s, &r, &f),
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        TestServer {
            port,
            stop,
            received,
            tls_failures,
            thread: Some(thread),
        }
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    pub fn tls_failures(&self) -> Vec<String> {
        self.tls_failures.lock().unwrap().clone()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(
    sock: TcpStream,
    config: Arc<ServerConfig>,
    reply: &Reply,
    abrupt: bool,
    stop: &AtomicBool,
    received: &Mutex<Vec<Received>>,
    tls_failures: &Mutex<Vec<String>>,
) {
    sock.set_nonblocking(false).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut conn = ServerConnection::new(config).unwrap();
    let mut sock = sock;
    while conn.is_handshaking() {
        if let Err(e) = conn.complete_io(&mut sock) {
            tls_failures.lock().unwrap().push(e.to_string());
            if abrupt {
                return;
            }
            // Send our alert, then let the client read it before closing (no RST).
            let _ = conn.write_tls(&mut sock);
            let _ = sock.shutdown(Shutdown::Write);
            let mut sink = [0u8; 512];
            sock.set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            while matches!(sock.read(&mut sink), Ok(n) if n > 0) {}
            return;
        }
    }
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    // Read the head, then Content-Length bytes of body.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        match tls.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => {
                tls_failures.lock().unwrap().push(e.to_string());
                return;
            }
        }
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.parse().unwrap())
        .unwrap();
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        match tls.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
            Err(_) => return,
        }
    }
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    received.lock().unwrap().push(Received {
        request_line,
        headers,
        body,
    });
    match reply {
        Reply::Raw(bytes) => {
            let _ = tls.write_all(bytes);
            let _ = tls.flush();
            conn.send_close_notify();
            let _ = conn.complete_io(&mut sock);
        }
        Reply::Steps(steps) => {
            for (delay, bytes) in steps {
                let until = Instant::now() + *delay;
                while !stop.load(Ordering::Acquire) && Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(5));
                }
                if tls.write_all(bytes).and_then(|()| tls.flush()).is_err() {
                    return;
                }
            }
            conn.send_close_notify();
            let _ = conn.complete_io(&mut sock);
        }
        Reply::Silence => {
            let until = Instant::now() + Duration::from_secs(3);
            while !stop.load(Ordering::Acquire) && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}
