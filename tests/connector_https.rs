//! The payment hand-off against REAL HTTPS servers on 127.0.0.1 that this test starts, with
//! a test PKI generated here (rcgen): every outcome the connector can report, what the server
//! actually received, and that the request's card data was wiped before the outcome arrived.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
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
use secure_pay::connector::{
    codes, validate_profile, Connector, ConnectorOptions, SubmitError, WipeObserver,
};
use secure_pay::core::payment::{ConnectorProfile, PaymentMethod, PaymentOutcome, PaymentRequest};
use secure_pay::core::secret::SecretDigits;

const PAN: &str = "4242424242424242"; // the well-known Visa TEST card number
const CVV: &str = "123";
const WAIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// Test PKI

struct Issued {
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    key_der: Vec<u8>,
    key_pem: String,
}

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Ca {
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

    fn pem(&self) -> String {
        self.cert.pem()
    }

    fn der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }

    fn issue(&self, sans: &[&str], usage: ExtendedKeyUsagePurpose) -> Issued {
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
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "secure_pay-connector-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    fn write(&self, name: &str, text: &str) -> String {
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
struct Pki {
    dir: TempDir,
    ca_file: String,
    ca: Ca,
    server: Issued,
    client_ca: Ca,
    client_cert_file: String,
    client_key_file: String,
}

impl Pki {
    fn new() -> Pki {
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

    fn profile(&self, port: u16, method: PaymentMethod) -> ConnectorProfile {
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
enum Reply {
    /// Raw HTTP response bytes.
    Raw(Vec<u8>),
    /// Read the request, then say nothing (until the test ends or 3 s pass).
    Silence,
}

fn http(status: &str, body: &str) -> Reply {
    Reply::Raw(
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

#[derive(Debug, Clone)]
struct Received {
    request_line: String,
    headers: Vec<(String, String)>,
    body: serde_json::Value,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

struct TestServer {
    port: u16,
    stop: Arc<AtomicBool>,
    received: Arc<Mutex<Vec<Received>>>,
    tls_failures: Arc<Mutex<Vec<String>>>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Clone, Copy, PartialEq)]
enum Versions {
    Any,
    Tls12Only,
}

impl TestServer {
    fn start(
        cert: &Issued,
        client_ca: Option<CertificateDer<'static>>,
        versions: Versions,
        reply: Reply,
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
                    Ok((sock, _)) => serve(sock, config.clone(), &reply, &s, &r, &f),
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

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    fn tls_failures(&self) -> Vec<String> {
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
        Reply::Silence => {
            let until = Instant::now() + Duration::from_secs(3);
            while !stop.load(Ordering::Acquire) && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Requests, outcomes and the wipe observer

fn digits(s: &str) -> SecretDigits {
    let mut d = SecretDigits::new();
    for c in s.bytes() {
        assert!(d.push(c));
    }
    d
}

fn request(method: PaymentMethod, tx: &str) -> PaymentRequest {
    PaymentRequest {
        method,
        transaction_id: tx.into(),
        card_number: digits(PAN),
        security_code: digits(CVV),
        expiry_month: digits("08"),
        expiry_year: digits("30"),
        postal_code: digits("94107"),
        amount_minor: Some(1999),
        currency_code: String::new(),
        description: String::new(),
        token_type: String::new(),
        parameters: vec![("order_id".into(), "A-17".into())],
    }
}

/// Records, in order, "wiped" (observer saw a request with every card field empty),
/// "NOT WIPED" (it did not), and "done" (the outcome arrived).
#[derive(Clone, Default)]
struct Journal(Arc<Mutex<Vec<&'static str>>>);

impl Journal {
    fn observer(&self) -> WipeObserver {
        let j = self.0.clone();
        Arc::new(move |r: &PaymentRequest| {
            let wiped = [
                &r.card_number,
                &r.security_code,
                &r.expiry_month,
                &r.expiry_year,
                &r.postal_code,
            ]
            .iter()
            .all(|d| d.is_empty() && d.expose().is_empty());
            j.lock()
                .unwrap()
                .push(if wiped { "wiped" } else { "NOT WIPED" });
        })
    }

    fn entries(&self) -> Vec<&'static str> {
        self.0.lock().unwrap().clone()
    }
}

fn connector(journal: &Journal) -> Connector {
    Connector::with_options(ConnectorOptions {
        after_wipe: Some(journal.observer()),
        ..Default::default()
    })
}

/// Submits one request and waits for its outcome; checks the request was wiped before it.
fn run(profile: &ConnectorProfile, method: PaymentMethod) -> PaymentOutcome {
    let journal = Journal::default();
    let c = connector(&journal);
    let (tx, rx) = mpsc::channel();
    let j = journal.0.clone();
    c.submit(
        profile,
        request(method, "tx-0001"),
        Box::new(move |o| {
            j.lock().unwrap().push("done");
            tx.send(o).unwrap();
        }),
    )
    .unwrap();
    let outcome = rx.recv_timeout(WAIT).expect("no outcome");
    c.shutdown();
    assert_eq!(
        journal.entries(),
        ["wiped", "done"],
        "card data must be wiped before the outcome"
    );
    outcome
}

fn expect_error(o: &PaymentOutcome, code: &str, needle: &str) {
    match o {
        PaymentOutcome::Error { code: c, message } => {
            eprintln!("outcome: {c}: {message}");
            assert_eq!(c, code, "message: {message}");
            assert!(
                message.contains(needle),
                "{message:?} should mention {needle:?}"
            );
            assert!(
                !message.contains(PAN) && !message.contains("424242"),
                "{message}"
            );
        }
        other => panic!("expected error {code}, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn charge_success_and_server_gets_exactly_the_captured_fields() {
    let pki = Pki::new();
    let server = TestServer::start(
        &pki.server,
        None,
        Versions::Any,
        http(
            "200 OK",
            r#"{"charge_id":"ch_abc123","error_code":null,"error_message":null}"#,
        ),
    );
    let o = run(
        &pki.profile(server.port, PaymentMethod::Charge),
        PaymentMethod::Charge,
    );
    assert_eq!(
        o,
        PaymentOutcome::Success {
            charge_id: Some("ch_abc123".into()),
            token_id: None
        }
    );

    let got = server.received();
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert_eq!(r.request_line, "POST /pay?merchant=7 HTTP/1.1");
    assert_eq!(r.header("content-type"), Some("application/json"));
    // "pbx:s3cret" in base64
    assert_eq!(r.header("authorization"), Some("Basic cGJ4OnMzY3JldA=="));
    assert_eq!(
        r.body,
        serde_json::json!({
            "method": "charge",
            "transaction_id": "tx-0001",
            "cardnumber": PAN,
            "cvv": CVV,
            "expiry_month": "08",
            "expiry_year": "2030",
            "description": "Order 1001",
            "amount": "19.99",
            "currency_code": "USD",
            "postal_code": "94107",
            "parameters": {"order_id": "A-17"}
        })
    );
}

#[test]
fn tokenize_success() {
    let pki = Pki::new();
    let server = TestServer::start(
        &pki.server,
        None,
        Versions::Any,
        http(
            "200 OK",
            r#"{"token_id":"tok_9f8e","error_code":null,"error_message":null}"#,
        ),
    );
    let o = run(
        &pki.profile(server.port, PaymentMethod::Tokenize),
        PaymentMethod::Tokenize,
    );
    assert_eq!(
        o,
        PaymentOutcome::Success {
            charge_id: None,
            token_id: Some("tok_9f8e".into())
        }
    );
    let got = server.received();
    assert_eq!(got.len(), 1);
    let b = &got[0].body;
    assert_eq!(b["method"], "tokenize");
    assert_eq!(b["token_type"], "reusable");
    assert_eq!(
        (b["cardnumber"].as_str(), b["cvv"].as_str()),
        (Some(PAN), Some(CVV))
    );
    assert_eq!(
        (b["expiry_month"].as_str(), b["expiry_year"].as_str()),
        (Some("08"), Some("2030"))
    );
}

#[test]
fn tls12_only_server_works() {
    let pki = Pki::new();
    let server = TestServer::start(
        &pki.server,
        None,
        Versions::Tls12Only,
        http("200 OK", r#"{"charge_id":"ch_tls12"}"#),
    );
    let o = run(
        &pki.profile(server.port, PaymentMethod::Charge),
        PaymentMethod::Charge,
    );
    assert_eq!(
        o,
        PaymentOutcome::Success {
            charge_id: Some("ch_tls12".into()),
            token_id: None
        }
    );
}

#[test]
fn connector_error_in_body() {
    let pki = Pki::new();
    let server = TestServer::start(
        &pki.server,
        None,
        Versions::Any,
        http(
            "200 OK",
            r#"{"charge_id":null,"error_code":"card_declined","error_message":"Do not honor"}"#,
        ),
    );
    let o = run(
        &pki.profile(server.port, PaymentMethod::Charge),
        PaymentMethod::Charge,
    );
    assert_eq!(
        o,
        PaymentOutcome::Error {
            code: "card_declined".into(),
            message: "Do not honor".into()
        }
    );
    assert_eq!(server.received().len(), 1);
}

#[test]
fn http_4xx_and_5xx() {
    let pki = Pki::new();
    let s404 = TestServer::start(
        &pki.server,
        None,
        Versions::Any,
        http(
            "404 Not Found",
            r#"{"error_code":"no_route","error_message":"unknown path"}"#,
        ),
    );
    let o = run(
        &pki.profile(s404.port, PaymentMethod::Charge),
        PaymentMethod::Charge,
    );
    expect_error(
        &o,
        codes::HTTP_ERROR,
        "HTTP 404 Not Found: no_route: unknown path",
    );

    let s503 = TestServer::start(
        &pki.server,
        None,
        Versions::Any,
        Reply::Raw(
            b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nbusy!\r\n0\r\n\r\n"
                .to_vec(),
        ),
    );
    let o = run(
        &pki.profile(s503.port, PaymentMethod::Charge),
        PaymentMethod::Charge,
    );
    expect_error(&o, codes::HTTP_ERROR, "HTTP 503 Service Unavailable");
}

#[test]
fn malformed_json_and_missing_id() {
    let pki = Pki::new();
    let s = TestServer::start(
        &pki.server,
        None,
        Versions::Any,
        http("200 OK", "{\"charge_id\": "),
    );
    let o = run(
        &pki.profile(s.port, PaymentMethod::Charge),
        PaymentMethod::Charge,
    );
    expect_error(&o, codes::BAD_RESPONSE, "not valid JSON");

    let s = TestServer::start(
        &pki.server,
        None,
        Versions::Any,
        http("200 OK", "{\"ok\":true}"),
    );
    let o = run(
        &pki.profile(s.port, PaymentMethod::Charge),
        PaymentMethod::Charge,
    );
    expect_error(&o, codes::BAD_RESPONSE, "charge_id");
}

#[test]
fn connection_refused() {
    let pki = Pki::new();
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    }; // listener closed: nothing listens there now
    let o = run(
        &pki.profile(port, PaymentMethod::Charge),
        PaymentMethod::Charge,
    );
    expect_error(&o, codes::CONNECT_FAILED, &format!("127.0.0.1:{port}"));
}

#[test]
fn timeout_when_server_never_answers() {
    let pki = Pki::new();
    let s = TestServer::start(&pki.server, None, Versions::Any, Reply::Silence);
    let mut profile = pki.profile(s.port, PaymentMethod::Charge);
    profile.timeout_ms = 800;
    let t0 = Instant::now();
    let o = run(&profile, PaymentMethod::Charge);
    let took = t0.elapsed();
    expect_error(&o, codes::TIMEOUT, "800 ms");
    assert!(
        took >= Duration::from_millis(790),
        "gave up too early: {took:?}"
    );
    assert!(
        took < Duration::from_millis(2_500),
        "deadline not enforced: {took:?}"
    );
    assert_eq!(s.received().len(), 1, "the request did reach the server");
}

#[test]
fn timeout_when_tcp_accepts_but_tls_never_starts() {
    let pki = Pki::new();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // The kernel accepts the connection (backlog); nobody ever speaks TLS.
    let mut profile = pki.profile(port, PaymentMethod::Charge);
    profile.timeout_ms = 250;
    let t0 = Instant::now();
    let o = run(&profile, PaymentMethod::Charge);
    expect_error(&o, codes::TIMEOUT, "250 ms");
    assert!(t0.elapsed() < Duration::from_millis(2_500));
    drop(listener);
}

#[test]
fn untrusted_server_certificate_is_refused() {
    let pki = Pki::new();
    let rogue_ca = Ca::new("rogue CA");
    let rogue = rogue_ca.issue(
        &["localhost", "127.0.0.1"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let s = TestServer::start(
        &rogue,
        None,
        Versions::Any,
        http("200 OK", r#"{"charge_id":"x"}"#),
    );
    let o = run(
        &pki.profile(s.port, PaymentMethod::Charge),
        PaymentMethod::Charge,
    );
    expect_error(&o, codes::TLS_ERROR, "TLS failure");
    assert!(
        s.received().is_empty(),
        "no request may be sent to an untrusted server"
    );

    // Control: the same kind of server with a trusted certificate is accepted.
    let ok = TestServer::start(
        &pki.server,
        None,
        Versions::Any,
        http("200 OK", r#"{"charge_id":"x"}"#),
    );
    let o = run(
        &pki.profile(ok.port, PaymentMethod::Charge),
        PaymentMethod::Charge,
    );
    assert!(matches!(o, PaymentOutcome::Success { .. }), "{o:?}");
}

#[test]
fn certificate_for_another_name_is_refused() {
    let pki = Pki::new();
    let other = pki
        .ca
        .issue(&["pay.example.com"], ExtendedKeyUsagePurpose::ServerAuth);
    let s = TestServer::start(
        &other,
        None,
        Versions::Any,
        http("200 OK", r#"{"charge_id":"x"}"#),
    );
    let o = run(
        &pki.profile(s.port, PaymentMethod::Charge),
        PaymentMethod::Charge,
    );
    expect_error(&o, codes::TLS_ERROR, "TLS failure");
    assert!(s.received().is_empty());
}

#[test]
fn mutual_tls() {
    let pki = Pki::new();
    for versions in [Versions::Any, Versions::Tls12Only] {
        let s = TestServer::start(
            &pki.server,
            Some(pki.client_ca.der()),
            versions,
            http("200 OK", r#"{"charge_id":"ch_mtls"}"#),
        );
        // With the client certificate: accepted.
        let mut profile = pki.profile(s.port, PaymentMethod::Charge);
        profile.client_cert_file = Some(pki.client_cert_file.clone());
        profile.client_key_file = Some(pki.client_key_file.clone());
        let o = run(&profile, PaymentMethod::Charge);
        assert_eq!(
            o,
            PaymentOutcome::Success {
                charge_id: Some("ch_mtls".into()),
                token_id: None
            }
        );
        assert_eq!(s.received().len(), 1);

        // Without it: the server refuses, the connector says so, nothing was received.
        let o = run(
            &pki.profile(s.port, PaymentMethod::Charge),
            PaymentMethod::Charge,
        );
        expect_error(&o, codes::TLS_ERROR, "TLS failure");
        assert_eq!(
            s.received().len(),
            1,
            "the refused request must not reach the handler"
        );
        assert!(!s.tls_failures().is_empty());
    }
}

#[test]
fn client_certificate_from_an_unknown_ca_is_refused() {
    let pki = Pki::new();
    let s = TestServer::start(
        &pki.server,
        Some(pki.client_ca.der()),
        Versions::Any,
        http("200 OK", r#"{"charge_id":"ch"}"#),
    );
    let stranger = Ca::new("stranger").issue(&["x.test"], ExtendedKeyUsagePurpose::ClientAuth);
    let mut profile = pki.profile(s.port, PaymentMethod::Charge);
    profile.client_cert_file = Some(pki.dir.write("stranger.pem", &stranger.cert_pem));
    profile.client_key_file = Some(pki.dir.write("stranger.key", &stranger.key_pem));
    let o = run(&profile, PaymentMethod::Charge);
    expect_error(&o, codes::TLS_ERROR, "TLS failure");
    assert!(s.received().is_empty());
}

#[test]
fn configuration_errors_are_clear_and_still_wipe() {
    let pki = Pki::new();
    let good = pki.profile(443, PaymentMethod::Charge);
    assert_eq!(validate_profile(&good), Ok(()));
    let mut mtls = good.clone();
    mtls.client_cert_file = Some(pki.client_cert_file.clone());
    mtls.client_key_file = Some(pki.client_key_file.clone());
    assert_eq!(validate_profile(&mtls), Ok(()));
    let mut swapped = mtls.clone();
    swapped.client_cert_file = mtls.client_key_file.clone();
    assert!(validate_profile(&swapped)
        .unwrap_err()
        .contains("client_cert_file"));

    let mut p = pki.profile(443, PaymentMethod::Charge);
    p.url = "http://127.0.0.1:1/pay".into();
    assert!(validate_profile(&p).unwrap_err().contains("plain http"));
    expect_error(
        &run(&p, PaymentMethod::Charge),
        codes::CONFIG_ERROR,
        "plain http",
    );

    let mut p = pki.profile(443, PaymentMethod::Charge);
    p.ca_file = Some("/nonexistent/ca.pem".into());
    expect_error(
        &run(&p, PaymentMethod::Charge),
        codes::CONFIG_ERROR,
        "ca_file",
    );

    let mut p = pki.profile(443, PaymentMethod::Charge);
    p.client_cert_file = Some(pki.client_cert_file.clone());
    expect_error(
        &run(&p, PaymentMethod::Charge),
        codes::CONFIG_ERROR,
        "client_key_file",
    );
}

#[test]
fn queue_full_then_shutdown_fails_queued_jobs_and_returns_in_bounded_time() {
    let pki = Pki::new();
    let s = TestServer::start(&pki.server, None, Versions::Any, Reply::Silence);
    let mut profile = pki.profile(s.port, PaymentMethod::Charge);
    profile.timeout_ms = 1_500;
    let journal = Journal::default();
    let c = Connector::with_options(ConnectorOptions {
        workers: 1,
        queue_capacity: 1,
        shutdown_wait: Duration::from_secs(5),
        after_wipe: Some(journal.observer()),
    });
    let (tx, rx) = mpsc::channel();
    let submit = |id: &str| {
        let tx = tx.clone();
        let id2 = id.to_owned();
        c.submit(
            &profile,
            request(PaymentMethod::Charge, id),
            Box::new(move |o| {
                tx.send((id2, o)).unwrap();
            }),
        )
    };
    assert_eq!(submit("a"), Ok(()));
    // Wait until the worker took "a" (it reached the silent server) so "b" sits in the queue.
    let t0 = Instant::now();
    while s.received().is_empty() && t0.elapsed() < WAIT {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(submit("b"), Ok(()));
    let t_submit = Instant::now();
    assert_eq!(submit("c"), Err(SubmitError::QueueFull));
    assert!(
        t_submit.elapsed() < Duration::from_millis(100),
        "submit must not block"
    );

    let t_shut = Instant::now();
    c.shutdown();
    assert!(
        t_shut.elapsed() < Duration::from_secs(5),
        "shutdown wait is bounded"
    );
    let mut outcomes: Vec<(String, PaymentOutcome)> = (0..2)
        .map(|_| rx.recv_timeout(WAIT).expect("every job gets an outcome"))
        .collect();
    outcomes.sort_by(|a, b| a.0.cmp(&b.0));
    expect_error(&outcomes[0].1, codes::TIMEOUT, "1500 ms");
    expect_error(&outcomes[1].1, codes::SHUTDOWN, "shut down");
    assert!(
        rx.recv_timeout(Duration::from_millis(200)).is_err(),
        "refused job gets no outcome"
    );
    // "a", "b" wiped by the worker; "c" was refused and dropped (SecretDigits wipe on drop).
    assert_eq!(journal.entries(), ["wiped", "wiped"]);
}

#[test]
fn panicking_callback_does_not_kill_the_worker() {
    let pki = Pki::new();
    let s = TestServer::start(
        &pki.server,
        None,
        Versions::Any,
        http("200 OK", r#"{"charge_id":"c"}"#),
    );
    let profile = pki.profile(s.port, PaymentMethod::Charge);
    let c = Connector::with_options(ConnectorOptions {
        workers: 1,
        ..Default::default()
    });
    // A callback that panics must not take the worker down.
    c.submit(
        &profile,
        request(PaymentMethod::Charge, "p"),
        Box::new(|_| panic!("callback bug")),
    )
    .unwrap();
    let (tx, rx) = mpsc::channel();
    c.submit(
        &profile,
        request(PaymentMethod::Charge, "q"),
        Box::new(move |o| tx.send(o).unwrap()),
    )
    .unwrap();
    assert!(matches!(
        rx.recv_timeout(WAIT).unwrap(),
        PaymentOutcome::Success { .. }
    ));
    c.shutdown();
}
