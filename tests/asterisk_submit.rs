//! res_secure_pay on a REAL Asterisk 22: the agent's `submit` (AMI) hands the captured card to
//! the payment connector, which POSTs it over HTTPS to a loopback test server started here
//! (test CA generated with rcgen, trusted through the profile's `ca_file`). The server must
//! receive exactly the keyed card; the AMI events carry only masked data and the outcome.
#![cfg(feature = "asterisk")]

mod asterisk;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use asterisk::{phone_dialplan, Call, Instance, BASE_MODULES, WAIT};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

const PAN: &str = "4242424242424242"; // Visa TEST number
const EXPIRY: &str = "1230";
const CVV: &str = "123";

struct Pki {
    ca_pem: String,
    server_cert: CertificateDer<'static>,
    server_key: Vec<u8>,
}

fn pki() -> Pki {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name
        .push(DnType::CommonName, "secure_pay asterisk test CA");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca = p.self_signed(&ca_key).unwrap();
    let s = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = s.signed_by(&key, &ca, &ca_key).unwrap();
    Pki {
        ca_pem: ca.pem(),
        server_cert: cert.der().clone(),
        server_key: key.serialize_der(),
    }
}

/// A one-purpose HTTPS server on 127.0.0.1: records each JSON body and answers `reply`.
fn https_server(pki: &Pki, reply: &'static str) -> (u16, Arc<Mutex<Vec<serde_json::Value>>>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![pki.server_cert.clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.server_key.clone())),
        )
        .unwrap();
    let cfg = Arc::new(cfg);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(tcp) = tcp else { continue };
            let conn = rustls::ServerConnection::new(cfg.clone()).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let body = loop {
                match tls.read(&mut chunk) {
                    Ok(0) | Err(_) => break None,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
                if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + len {
                        break Some(buf[end + 4..end + 4 + len].to_vec());
                    }
                }
            };
            if let Some(b) = body {
                if let Ok(v) = serde_json::from_slice(&b) {
                    g.lock().unwrap().push(v);
                }
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                    reply.len()
                );
                let _ = tls.write_all(resp.as_bytes());
                tls.conn.send_close_notify();
                let _ = tls.flush();
            }
        }
    });
    (port, got)
}

#[test]
fn submit_hands_exactly_the_keyed_card_to_the_https_connector_and_ami_stays_masked() {
    let pki = pki();
    let (port, received) = https_server(
        &pki,
        r#"{"charge_id":"ch_test_42","error_code":null,"error_message":null}"#,
    );
    let conf = format!(
        "[general]\nconnector = test\npan_display = last4\n\n[test]\nurl = https://127.0.0.1:{port}/pay\n\
         ca_file = @INST@/etc/test-ca.pem\ntimeout_ms = 5000\npassword = s3cret\n"
    );
    let inst = Instance::start(
        "submit",
        &phone_dialplan(),
        &[("secure_pay.conf", &conf), ("test-ca.pem", &pki.ca_pem)],
        BASE_MODULES,
    );
    let settings = inst.cli("securepay show settings");
    assert!(settings.contains("connector = test"), "{settings}");
    assert!(
        !settings.contains("s3cret"),
        "CLI hides secrets: {settings}"
    );

    let mut ami = inst.ami();
    let mut c = Call::originate(&mut ami, "s1", &[]);
    let r = c.securepay(&mut ami, &[("Command", "start")]);
    assert_eq!(r.get("Response"), Some("Success"), "{}", r.text());
    let start = ami
        .wait_event(WAIT, "SecurePayStart", &[("Channel", &c.customer)])
        .unwrap();
    assert_eq!(start.get("SecurePay-Connector"), Some("test"));
    c.key(&mut ami, &format!("{PAN}#{EXPIRY}{CVV}"), "");
    ami.wait_event(WAIT, "SecurePayComplete", &[("Channel", &c.customer)])
        .expect("SecurePayComplete");
    let r = c.securepay(&mut ami, &[("Command", "submit")]);
    assert_eq!(r.get("Response"), Some("Success"), "{}", r.text());
    let done = ami
        .wait_event(
            WAIT,
            "SecurePaySubmit",
            &[("Channel", &c.customer), ("SecurePay-Result", "success")],
        )
        .expect("SecurePaySubmit success");
    assert_eq!(
        done.get("SecurePay-Charge-Id"),
        Some("ch_test_42"),
        "{}",
        done.text()
    );

    // the connector got exactly the keyed card
    let got = received.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "one POST: {got:?}");
    let b = &got[0];
    assert_eq!(b["cardnumber"], PAN);
    assert_eq!(b["cvv"], CVV);
    assert_eq!(b["expiry_month"], "12");
    assert_eq!(b["expiry_year"], "2030");

    // ... while every AMI message stayed masked
    for m in ami.all().iter().filter(|m| !asterisk::is_test_phone_msg(m)) {
        let t = m.text();
        assert!(
            !t.contains(PAN) && !t.contains("4242424242"),
            "card digits on AMI: {t}"
        );
        if m.event().is_some_and(|e| e.starts_with("SecurePay")) {
            assert!(!t.to_ascii_lowercase().contains("cvv"), "{t}");
        }
    }
    let log = inst.log();
    assert!(
        !log.lines()
            .any(|l| l.contains("secure_pay") && l.contains("4242")),
        "digits in log"
    );
    let r = ami.action(&[("Action", "Hangup"), ("Channel", &c.customer)]);
    assert_eq!(r.get("Response"), Some("Success"));
}
