//! End to end without a PBX: configuration keys → capture `Session` (digits typed) → `submit`
//! → `take_payment_request` → `Connector` → real HTTPS server on 127.0.0.1 → outcome →
//! `Session::on_payment_outcome` → the `submit` event the adapters publish. For each outcome
//! the event is clear, carries no card digits, and no card data is left anywhere.

mod connector_common;

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use connector_common::{http, Ca, Pki, Reply, TestServer, Versions};
use rcgen::ExtendedKeyUsagePurpose;
use secure_pay::connector::{codes, Connector, ConnectorOptions};
use secure_pay::core::capture::{parse_command, DigitSource, Session, YearMonth};
use secure_pay::core::config::Config;
use secure_pay::core::digit::Digit;
use secure_pay::core::events::Event;
use secure_pay::core::payment::PaymentRequest;

const T0: u64 = 1_795_000_000_000;
const PAN: &str = "4242424242424242"; // Visa TEST card

/// One call: config from key=value pairs, a session, keys typed, submit, hand-off.
/// Returns the headers of the final `submit` event and whether the worker saw the request
/// wiped before the outcome came back.
fn call(
    url: &str,
    ca_file: &str,
    timeout_ms: u64,
    mtls: Option<(&str, &str)>,
) -> Vec<(String, String)> {
    let mut cfg = Config::default();
    cfg.set("connector.acme.url", url).unwrap();
    cfg.set("connector.acme.ca_file", ca_file).unwrap();
    cfg.set("connector.acme.timeout_ms", &timeout_ms.to_string())
        .unwrap();
    cfg.set("connector.acme.currency_code", "EUR").unwrap();
    cfg.set("connector.acme.description", "Invoice 77").unwrap();
    if let Some((cert, key)) = mtls {
        cfg.set("connector.acme.client_cert_file", cert).unwrap();
        cfg.set("connector.acme.client_key_file", key).unwrap();
    }
    cfg.resolve().unwrap();
    let profile = cfg.active_connector().cloned().expect("profile selected");

    let mut events: Vec<Event> = Vec::new();
    let mut s = Session::start(&cfg.capture, T0, &mut |e| events.push(e));
    s.set_id("chan-9");
    s.set_date(YearMonth {
        year: 2026,
        month: 11,
    });
    let mut now = T0;
    for c in format!("{PAN}#1228123").chars() {
        now += 150;
        s.on_digit(
            Digit::from_char(c).unwrap(),
            DigitSource::Rfc4733,
            now,
            &mut |e| events.push(e),
        );
    }
    s.command(&parse_command("submit").unwrap(), now, &mut |e| {
        events.push(e)
    })
    .unwrap();
    let req = s.take_payment_request().expect("request after submit");

    let journal: Arc<Mutex<Vec<&'static str>>> = Arc::default();
    let j = journal.clone();
    let connector = Connector::with_options(ConnectorOptions {
        after_wipe: Some(Arc::new(move |r: &PaymentRequest| {
            let wiped = r.card_number.is_empty()
                && r.security_code.is_empty()
                && r.expiry_month.is_empty()
                && r.expiry_year.is_empty();
            j.lock()
                .unwrap()
                .push(if wiped { "wiped" } else { "NOT WIPED" });
        })),
        ..Default::default()
    });
    let (tx, rx) = mpsc::channel();
    let j = journal.clone();
    connector
        .submit(
            &profile,
            req,
            Box::new(move |o| {
                j.lock().unwrap().push("done");
                tx.send(o).unwrap();
            }),
        )
        .unwrap();
    // The adapter's job: carry the outcome back to the session (here: this thread).
    let outcome = rx.recv_timeout(Duration::from_secs(20)).expect("outcome");
    connector.shutdown();
    assert_eq!(*journal.lock().unwrap(), ["wiped", "done"]);

    s.on_payment_outcome(outcome, now + 10, &mut |e| events.push(e));
    assert!(
        s.take_payment_request().is_none(),
        "no request left in the session"
    );

    // Nothing any event carries may contain the card number or the CVV digits in clear.
    for e in &events {
        e.for_each_header(&mut |name, value| {
            assert!(
                !value.contains(PAN) && !value.contains("424242424242"),
                "{name}: {value}"
            );
            if name != "SecurePay-Charge-Id" && name != "SecurePay-Token-Id" {
                assert!(!value.contains("1228123"), "{name}: {value}");
            }
        });
    }
    let last = events.last().expect("events");
    assert_eq!(last.name(), "submit");
    let mut h = Vec::new();
    last.for_each_header(&mut |n, v| h.push((n.to_string(), v.to_string())));
    h
}

fn get<'a>(h: &'a [(String, String)], name: &str) -> &'a str {
    h.iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

fn url(port: u16) -> String {
    format!("https://127.0.0.1:{port}/connector")
}

#[test]
fn success_becomes_a_submit_success_event() {
    let pki = Pki::new();
    let s = TestServer::start(
        &pki.server,
        None,
        Versions::Any,
        http(
            "200 OK",
            r#"{"charge_id":"ch_e2e","error_code":null,"error_message":null}"#,
        ),
    );
    let h = call(&url(s.port), &pki.ca_file, 5_000, None);
    assert_eq!(get(&h, "SecurePay-Result"), "success");
    assert_eq!(get(&h, "SecurePay-Charge-Id"), "ch_e2e");
    assert_eq!(get(&h, "SecurePay-Card-Number"), "************4242");

    let got = s.received();
    assert_eq!(got.len(), 1);
    let b = &got[0].body;
    assert_eq!(b["cardnumber"], PAN);
    assert_eq!(b["cvv"], "123");
    assert_eq!(b["expiry_month"], "12");
    assert_eq!(b["expiry_year"], "2028");
    assert_eq!(b["currency_code"], "EUR");
    assert_eq!(b["description"], "Invoice 77");
    assert_eq!(b["transaction_id"], "chan-9-1");
    assert_eq!(b["method"], "charge");
}

#[test]
fn mutual_tls_success_end_to_end() {
    let pki = Pki::new();
    let s = TestServer::start(
        &pki.server,
        Some(pki.client_ca.der()),
        Versions::Any,
        http("200 OK", r#"{"charge_id":"ch_mtls"}"#),
    );
    let h = call(
        &url(s.port),
        &pki.ca_file,
        5_000,
        Some((&pki.client_cert_file, &pki.client_key_file)),
    );
    assert_eq!(get(&h, "SecurePay-Result"), "success");
    assert_eq!(get(&h, "SecurePay-Charge-Id"), "ch_mtls");
}

#[test]
fn every_failure_becomes_a_clear_submit_error_or_unknown_event() {
    let pki = Pki::new();
    let rogue = Ca::new("rogue").issue(&["127.0.0.1"], ExtendedKeyUsagePurpose::ServerAuth);
    let declined = TestServer::start(
        &pki.server,
        None,
        Versions::Any,
        http(
            "200 OK",
            r#"{"error_code":"card_declined","error_message":"Insufficient funds"}"#,
        ),
    );
    let e400 = TestServer::start(
        &pki.server,
        None,
        Versions::Any,
        http("400 Bad Request", "{}"),
    );
    let e500 = TestServer::start(&pki.server, None, Versions::Any, http("500 Oops", "boom"));
    let junk = TestServer::start(&pki.server, None, Versions::Any, http("200 OK", "<html>"));
    let silent = TestServer::start(&pki.server, None, Versions::Any, Reply::Silence);
    let untrusted = TestServer::start(&rogue, None, Versions::Any, http("200 OK", "{}"));
    let mtls = TestServer::start(
        &pki.server,
        Some(pki.client_ca.der()),
        Versions::Any,
        http("200 OK", r#"{"charge_id":"x"}"#),
    );
    let refused = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };

    // `error`: certainly not charged (refused before sending, or the processor said no).
    // `unknown`: the card was sent and no usable answer came back (never shown as declined).
    let cases: [(u16, u64, &str, &str, &str); 8] = [
        (
            declined.port,
            5_000,
            "error",
            "card_declined",
            "Insufficient funds",
        ),
        (e400.port, 5_000, "error", codes::HTTP_ERROR, "HTTP 400"),
        (e500.port, 5_000, "unknown", codes::HTTP_ERROR, "HTTP 500"),
        (
            junk.port,
            5_000,
            "unknown",
            codes::BAD_RESPONSE,
            "not valid JSON",
        ),
        (refused, 5_000, "error", codes::CONNECT_FAILED, "refused"),
        (silent.port, 400, "unknown", codes::TIMEOUT, "400 ms"),
        (
            untrusted.port,
            5_000,
            "error",
            codes::TLS_ERROR,
            "certificate",
        ),
        (
            mtls.port,
            5_000,
            "error",
            codes::TLS_ERROR,
            "CertificateRequired",
        ),
    ];
    for (port, timeout, class, code, text) in cases {
        let h = call(&url(port), &pki.ca_file, timeout, None);
        assert_eq!(get(&h, "SecurePay-Result"), class, "{code}: {h:?}");
        assert_eq!(get(&h, "SecurePay-Error-Code"), code, "{h:?}");
        assert!(
            get(&h, "SecurePay-Error-Message").contains(text),
            "{text}: {h:?}"
        );
    }
    assert!(untrusted.received().is_empty() && mtls.received().is_empty());
}
