//! The payment hand-off against REAL HTTPS servers on 127.0.0.1 that this test starts, with
//! a test PKI generated here (rcgen): every outcome the connector can report, what the server
//! actually received, and that the request's card data was wiped before the outcome arrived.

mod connector_common;

use std::net::TcpListener;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use connector_common::{http, slow, Ca, Pki, Reply, TestServer, Versions};
use rcgen::ExtendedKeyUsagePurpose;
use secure_pay::connector::{
    codes, validate_profile, Connector, ConnectorOptions, SubmitError, WipeObserver,
};
use secure_pay::core::payment::{ConnectorProfile, PaymentMethod, PaymentOutcome, PaymentRequest};
use secure_pay::core::secret::SecretDigits;

const PAN: &str = "4242424242424242"; // the well-known Visa TEST card number
const CVV: &str = "123";
const WAIT: Duration = Duration::from_secs(20);

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

/// The request was sent and no usable answer came: `unknown`, never an `error` (declined).
fn expect_unknown(o: &PaymentOutcome, code: &str, needle: &str) {
    match o {
        PaymentOutcome::Unknown { code: c, message } => {
            eprintln!("outcome: unknown {c}: {message}");
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
        other => panic!("expected unknown {code}, got {other:?}"),
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
    expect_unknown(&o, codes::HTTP_ERROR, "HTTP 503 Service Unavailable");
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
    expect_unknown(&o, codes::BAD_RESPONSE, "not valid JSON");

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
    expect_unknown(&o, codes::BAD_RESPONSE, "charge_id");
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
    expect_unknown(&o, codes::TIMEOUT, "800 ms");
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
    expect_unknown(&outcomes[0].1, codes::TIMEOUT, "1500 ms");
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

#[test]
fn mutual_tls_server_that_hangs_up_without_an_alert() {
    let pki = Pki::new();
    let s = TestServer::start_with(
        &pki.server,
        Some(pki.client_ca.der()),
        Versions::Any,
        http("200 OK", r#"{"charge_id":"ch"}"#),
        true,
    );
    let o = run(
        &pki.profile(s.port, PaymentMethod::Charge),
        PaymentMethod::Charge,
    );
    eprintln!("outcome: {o:?}");
    // Depending on timing the client sees the reset/close or a TLS error; either way a clear
    // error, never a success, and the request never reached the handler. When the reset comes
    // while the request is being written, the connector cannot know how much of it the server
    // read, so it reports Unknown (never Error: a caller must not retry blindly), with the hint.
    match &o {
        PaymentOutcome::Error { code, message } | PaymentOutcome::Unknown { code, message }
            if code == codes::IO_ERROR =>
        {
            assert!(message.contains("client_cert_file"), "{message}")
        }
        PaymentOutcome::Error { code, message } if code == codes::TLS_ERROR => {
            assert!(message.contains("TLS"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    assert!(s.received().is_empty());
    assert!(!s.tls_failures().is_empty());
}

#[test]
fn connector_is_shareable_and_huge_timeouts_do_not_overflow() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Connector>();

    let pki = Pki::new();
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut p = pki.profile(port, PaymentMethod::Charge);
    p.timeout_ms = u64::MAX;
    expect_error(
        &run(&p, PaymentMethod::Charge),
        codes::CONNECT_FAILED,
        "refused",
    );
}

// ---------------------------------------------------------------------------------------------
// One payment, one outcome (issue #9) and the queue (issue #10)

fn submit_and_wait(c: &Connector, profile: &ConnectorProfile, tx: &str) -> PaymentOutcome {
    let (stx, rx) = mpsc::channel();
    c.submit(
        profile,
        request(PaymentMethod::Charge, tx),
        Box::new(move |o| stx.send(o).unwrap()),
    )
    .unwrap();
    rx.recv_timeout(WAIT).expect("no outcome")
}

#[test]
fn the_transaction_id_is_sent_as_the_idempotency_key() {
    let pki = Pki::new();
    let server = TestServer::start(
        &pki.server,
        None,
        Versions::Any,
        http("200 OK", r#"{"charge_id":"ch_1"}"#),
    );
    let c = Connector::start();
    let profile = pki.profile(server.port, PaymentMethod::Charge);
    // A retry of the same payment (same transaction id) carries the same key; another
    // payment another key.
    for tx in ["chan-5-1", "chan-5-1", "chan-5-2"] {
        let o = submit_and_wait(&c, &profile, tx);
        assert!(matches!(o, PaymentOutcome::Success { .. }), "{o:?}");
    }
    c.shutdown();
    let got = server.received();
    let keys: Vec<_> = got.iter().map(|r| r.header("Idempotency-Key")).collect();
    assert_eq!(
        keys,
        [Some("chan-5-1"), Some("chan-5-1"), Some("chan-5-2")],
        "{got:?}"
    );
    for r in &got {
        assert_eq!(
            r.body["transaction_id"],
            r.header("Idempotency-Key").unwrap()
        );
    }
}

#[test]
fn interim_100_and_103_responses_are_skipped() {
    let pki = Pki::new();
    let Reply::Raw(fin) = http("200 OK", r#"{"charge_id":"ch_after_1xx"}"#) else {
        unreachable!()
    };
    let server = TestServer::start(
        &pki.server,
        None,
        Versions::Any,
        Reply::Steps(vec![
            (Duration::ZERO, b"HTTP/1.1 100 Continue\r\n\r\n".to_vec()),
            (
                Duration::from_millis(50),
                b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n".to_vec(),
            ),
            (Duration::from_millis(50), fin),
        ]),
    );
    let o = run(
        &pki.profile(server.port, PaymentMethod::Charge),
        PaymentMethod::Charge,
    );
    assert_eq!(
        o,
        PaymentOutcome::Success {
            charge_id: Some("ch_after_1xx".into()),
            token_id: None
        }
    );
    // Control: a 100 Continue and then nothing is not a success and not a decline.
    let hangs_up = TestServer::start(
        &pki.server,
        None,
        Versions::Any,
        Reply::Steps(vec![(
            Duration::ZERO,
            b"HTTP/1.1 100 Continue\r\n\r\n".to_vec(),
        )]),
    );
    let o = run(
        &pki.profile(hangs_up.port, PaymentMethod::Charge),
        PaymentMethod::Charge,
    );
    expect_unknown(&o, codes::BAD_RESPONSE, "closed before the end");
}

#[test]
fn an_answer_that_never_came_after_the_body_was_sent_is_unknown() {
    let pki = Pki::new();
    // Reads the whole request, then closes without a byte of answer.
    let server = TestServer::start(&pki.server, None, Versions::Any, Reply::Steps(vec![]));
    let o = run(
        &pki.profile(server.port, PaymentMethod::Charge),
        PaymentMethod::Charge,
    );
    expect_unknown(&o, codes::IO_ERROR, "without any response");
    assert_eq!(server.received().len(), 1, "the card did reach the server");
    // Truncated body after a 200 head: unknown too.
    let trunc = TestServer::start(
        &pki.server,
        None,
        Versions::Any,
        Reply::Steps(vec![(
            Duration::ZERO,
            b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n{\"charge_id\":".to_vec(),
        )]),
    );
    let o = run(
        &pki.profile(trunc.port, PaymentMethod::Charge),
        PaymentMethod::Charge,
    );
    expect_unknown(&o, codes::BAD_RESPONSE, "closed before the end");
    // Control: nothing sent (connection refused) is a plain error.
    let refused = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let o = run(
        &pki.profile(refused, PaymentMethod::Charge),
        PaymentMethod::Charge,
    );
    expect_error(&o, codes::CONNECT_FAILED, "refused");
}

#[test]
fn processor_messages_are_sanitised_before_they_reach_an_event() {
    let pki = Pki::new();
    let server = TestServer::start(
        &pki.server,
        None,
        Versions::Any,
        http(
            "200 OK",
            r#"{"error_code":"card_declined","error_message":"card 4242 4242 4242 4242 / 4242-4242-4242-4242; cvc 123; exp 08/30; exp 0830; raw 4242424242424242"}"#,
        ),
    );
    let o = run(
        &pki.profile(server.port, PaymentMethod::Charge),
        PaymentMethod::Charge,
    );
    let PaymentOutcome::Error { code, message } = o else {
        panic!("{o:?}")
    };
    assert_eq!(code, "card_declined");
    eprintln!("sanitised: {message}");
    assert!(!message.contains(CVV), "{message}");
    assert!(
        !message.contains("08/30") && !message.contains("0830"),
        "{message}"
    );
    let longest_run = message
        .split(|c: char| !c.is_ascii_digit())
        .map(str::len)
        .max()
        .unwrap_or(0);
    assert!(
        longest_run <= 4,
        "no more than the last 4 of a card: {message}"
    );
    // (The first two cards are joined by " / " into one number: only its last 4 stay.)
    assert_eq!(
        message,
        "card **** **** **** **** / ****-****-****-4242; cvc ***; exp **/**; exp ****; raw ************4242"
    );
    assert_eq!(server.received().len(), 1);
}

#[test]
fn shutdown_during_a_slow_answer_reports_unknown_once_and_joins_the_workers() {
    let pki = Pki::new();
    let server = TestServer::start(
        &pki.server,
        None,
        Versions::Any,
        slow(Duration::from_secs(30), "200 OK", r#"{"charge_id":"late"}"#),
    );
    let journal = Journal::default();
    let mut c = Connector::with_options(ConnectorOptions {
        workers: 1,
        shutdown_wait: Duration::from_millis(300),
        after_wipe: Some(journal.observer()),
        ..Default::default()
    });
    let profile = ConnectorProfile {
        timeout_ms: 60_000,
        ..pki.profile(server.port, PaymentMethod::Charge)
    };
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let o2 = outcomes.clone();
    c.submit(
        &profile,
        request(PaymentMethod::Charge, "tx-slow"),
        Box::new(move |o| o2.lock().unwrap().push(o)),
    )
    .unwrap();
    let t0 = Instant::now();
    while server.received().is_empty() {
        assert!(t0.elapsed() < WAIT, "request never reached the server");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(c.in_flight(), 1);
    let t1 = Instant::now();
    let left = c.shutdown_bounded();
    let took = t1.elapsed();
    assert_eq!(left, 0, "every worker joined");
    assert!(took < Duration::from_secs(4), "bounded: {took:?}");
    let got = outcomes.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "exactly one outcome: {got:?}");
    expect_unknown(&got[0], codes::IO_ERROR, "shut down while waiting");
    assert_eq!(journal.entries(), ["wiped"]);
    assert_eq!(server.received().len(), 1, "exactly one request");
    assert_eq!(c.in_flight(), 0);
    assert_eq!(c.shutdown_bounded(), 0, "idempotent");
}

#[test]
fn the_job_queue_carries_handles_only_and_the_slab_is_emptied() {
    // What crosses the crossbeam queue (whose ring slots keep a copy of every item after it
    // was received) is a `JobHandle`: 4 bytes, no room for a card number. The request stays
    // in its box in the slab until a worker takes it and wipes it.
    assert_eq!(
        std::mem::size_of::<secure_pay::connector::JobHandle>(),
        4,
        "the queue item is an index"
    );
    assert!(
        std::mem::size_of::<PaymentRequest>() > 5 * 32,
        "control: a request is big"
    );
    let pki = Pki::new();
    let server = TestServer::start(
        &pki.server,
        None,
        Versions::Any,
        slow(Duration::from_millis(300), "200 OK", r#"{"charge_id":"c"}"#),
    );
    let journal = Journal::default();
    let c = Connector::with_options(ConnectorOptions {
        workers: 1,
        queue_capacity: 8,
        after_wipe: Some(journal.observer()),
        ..Default::default()
    });
    let profile = pki.profile(server.port, PaymentMethod::Charge);
    let (stx, rx) = mpsc::channel();
    for i in 0..4 {
        let stx = stx.clone();
        c.submit(
            &profile,
            request(PaymentMethod::Charge, &format!("tx-{i}")),
            Box::new(move |o| stx.send(o).unwrap()),
        )
        .unwrap();
    }
    // While the first is in flight the others wait in the slab (not in the queue).
    let t0 = Instant::now();
    while c.in_flight() == 0 {
        assert!(t0.elapsed() < WAIT);
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(c.queued() >= 1, "control: jobs wait in the slab");
    for _ in 0..4 {
        let o = rx.recv_timeout(WAIT).expect("outcome");
        assert!(matches!(o, PaymentOutcome::Success { .. }), "{o:?}");
    }
    assert_eq!(c.queued(), 0, "slab emptied");
    c.shutdown();
    assert_eq!(journal.entries(), ["wiped"; 4]);
}
