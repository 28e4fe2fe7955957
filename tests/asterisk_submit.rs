//! res_secure_pay on a REAL Asterisk 22: the agent's `submit` (AMI) hands the captured card to
//! the payment connector, which POSTs it over HTTPS to a loopback test server started here
//! (test CA generated with rcgen, trusted through the profile's `ca_file`). The server must
//! receive exactly the keyed card; the AMI events carry only masked data and the outcome.
#![cfg(feature = "asterisk")]

mod asterisk;

use std::time::{Duration, Instant};

use asterisk::{
    https_server, https_server_slow, phone_dialplan, pki, Ami, Call, Instance, BASE_MODULES, WAIT,
};

const PAN: &str = "4242424242424242"; // Visa TEST number
const EXPIRY: &str = "1230";
const CVV: &str = "123";

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

/// How long the slow processor below takes to answer.
const SLOW: Duration = Duration::from_secs(3);

fn slow_instance(name: &str, port: u16, pki: &asterisk::Pki) -> Instance {
    let conf = format!(
        "[general]\nconnector = test\npan_display = last4\n\n[test]\nurl = https://127.0.0.1:{port}/pay\n\
         ca_file = @INST@/etc/test-ca.pem\ntimeout_ms = 10000\n"
    );
    Instance::start(
        name,
        &phone_dialplan(),
        &[("secure_pay.conf", &conf), ("test-ca.pem", &pki.ca_pem)],
        BASE_MODULES,
    )
}

/// Keys a full card and submits; returns the customer's Uniqueid and the pending event.
fn key_and_submit(ami: &mut Ami, c: &mut Call) -> (String, asterisk::Msg) {
    let r = c.securepay(ami, &[("Command", "start")]);
    assert_eq!(r.get("Response"), Some("Success"), "{}", r.text());
    let start = ami
        .wait_event(WAIT, "SecurePayStart", &[("Channel", &c.customer)])
        .unwrap();
    let uid = start.get("Uniqueid").unwrap().to_string();
    c.key(ami, &format!("{PAN}#{EXPIRY}{CVV}"), "");
    ami.wait_event(WAIT, "SecurePayComplete", &[("Channel", &c.customer)])
        .expect("SecurePayComplete");
    let r = c.securepay(ami, &[("Command", "submit")]);
    assert_eq!(r.get("Response"), Some("Success"), "{}", r.text());
    let pending = ami
        .wait_event(
            WAIT,
            "SecurePaySubmit",
            &[("Uniqueid", &uid), ("SecurePay-Result", "pending")],
        )
        .expect("SecurePaySubmit pending");
    (uid, pending)
}

/// The final (non-pending) SecurePaySubmit events of a channel.
fn outcomes(ami: &Ami, uid: &str) -> Vec<asterisk::Msg> {
    ami.events("SecurePaySubmit")
        .into_iter()
        .filter(|m| m.get("Uniqueid") == Some(uid) && m.get("SecurePay-Result") != Some("pending"))
        .collect()
}

/// Exactly one POST reached the server, with the transaction id as its idempotency key.
fn exactly_one_request(got: &[serde_json::Value], tx: &str) {
    assert_eq!(got.len(), 1, "one POST: {got:?}");
    assert_eq!(got[0]["cardnumber"], PAN);
    assert_eq!(got[0]["transaction_id"], tx);
    assert_eq!(got[0]["_idempotency_key"], tx, "Idempotency-Key header");
}

#[test]
fn cancel_during_a_slow_submit_still_reports_the_outcome_once() {
    let pki = pki();
    let (port, received) = https_server_slow(
        &pki,
        r#"{"charge_id":"ch_slow_1","error_code":null,"error_message":null}"#,
        SLOW,
    );
    let inst = slow_instance("submit-cancel", port, &pki);
    let mut ami = inst.ami();
    let mut c = Call::originate(&mut ami, "s1", &[]);
    let (uid, pending) = key_and_submit(&mut ami, &mut c);
    let tx = pending
        .get("SecurePay-Transaction-Id")
        .expect("transaction id on the pending event")
        .to_string();
    // The agent cancels while the processor is still working on it.
    let t0 = Instant::now();
    let r = c.securepay(&mut ami, &[("Command", "cancel")]);
    assert_eq!(r.get("Response"), Some("Success"), "{}", r.text());
    ami.wait_event(WAIT, "SecurePayCancel", &[("Uniqueid", &uid)])
        .expect("SecurePayCancel");
    assert!(
        outcomes(&ami, &uid).is_empty(),
        "control: no outcome yet when the cancel is seen"
    );
    // ... the outcome still arrives on AMI, once, with the masked card and the transaction id.
    let done = ami
        .wait_event(
            WAIT,
            "SecurePaySubmit",
            &[("Uniqueid", &uid), ("SecurePay-Result", "success")],
        )
        .expect("the outcome after cancel");
    assert!(t0.elapsed() < WAIT);
    assert_eq!(
        done.get("SecurePay-Charge-Id"),
        Some("ch_slow_1"),
        "{}",
        done.text()
    );
    assert_eq!(done.get("SecurePay-Transaction-Id"), Some(tx.as_str()));
    assert_eq!(done.get("SecurePay-Card-Number"), Some("************4242"));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(outcomes(&ami, &uid).len(), 1, "exactly one outcome event");
    exactly_one_request(&received.lock().unwrap(), &tx);
    for m in ami.all().iter().filter(|m| !asterisk::is_test_phone_msg(m)) {
        assert!(!m.text().contains("4242424242"), "card digits on AMI");
    }
    let r = ami.action(&[("Action", "Hangup"), ("Channel", &c.customer)]);
    assert_eq!(r.get("Response"), Some("Success"));
}

#[test]
fn hangup_during_a_slow_submit_still_emits_the_outcome_event() {
    let pki = pki();
    let (port, received) = https_server_slow(
        &pki,
        r#"{"charge_id":null,"error_code":"card_declined","error_message":"card 4242 4242 4242 4242 cvc 123 exp 12/30 declined"}"#,
        SLOW,
    );
    let inst = slow_instance("submit-hangup", port, &pki);
    let mut ami = inst.ami();
    let mut c = Call::originate(&mut ami, "s1", &[]);
    let (uid, pending) = key_and_submit(&mut ami, &mut c);
    let tx = pending.get("SecurePay-Transaction-Id").unwrap().to_string();
    let r = ami.action(&[("Action", "Hangup"), ("Channel", &c.customer)]);
    assert_eq!(r.get("Response"), Some("Success"));
    ami.wait_for(WAIT, |m| {
        m.event() == Some("Hangup") && m.get("Uniqueid") == Some(uid.as_str())
    })
    .expect("the customer channel hung up");
    assert!(
        outcomes(&ami, &uid).is_empty(),
        "control: no outcome yet at hangup"
    );
    let done = ami
        .wait_event(
            WAIT,
            "SecurePaySubmit",
            &[("Uniqueid", &uid), ("SecurePay-Result", "error")],
        )
        .expect("the outcome after hangup");
    assert_eq!(done.get("SecurePay-Error-Code"), Some("card_declined"));
    assert_eq!(done.get("SecurePay-Transaction-Id"), Some(tx.as_str()));
    // The processor's message echoed the card, code and expiry: masked before AMI.
    let msg = done.get("SecurePay-Error-Message").unwrap_or("");
    assert!(msg.contains("**** **** **** 4242"), "{msg}");
    assert!(!msg.contains(CVV) && !msg.contains("12/30"), "{msg}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(outcomes(&ami, &uid).len(), 1, "exactly one outcome event");
    exactly_one_request(&received.lock().unwrap(), &tx);
    let log = inst.log();
    assert!(
        log.contains("after secure mode ended"),
        "the late delivery is logged"
    );
}

#[test]
fn unload_during_a_slow_submit_joins_the_worker_and_still_publishes_the_outcome() {
    let pki = pki();
    // The processor would answer after 30 s, longer than unload's bounded wait (5 s).
    let (port, received) = https_server_slow(
        &pki,
        r#"{"charge_id":"ch_never","error_code":null,"error_message":null}"#,
        Duration::from_secs(30),
    );
    let conf = format!(
        "[general]\nconnector = test\npan_display = last4\n\n[test]\nurl = https://127.0.0.1:{port}/pay\n\
         ca_file = @INST@/etc/test-ca.pem\ntimeout_ms = 20000\n"
    );
    let inst = Instance::start(
        "submit-unload",
        &phone_dialplan(),
        &[("secure_pay.conf", &conf), ("test-ca.pem", &pki.ca_pem)],
        BASE_MODULES,
    );
    let mut ami = inst.ami();
    let mut c = Call::originate(&mut ami, "s1", &[]);
    let (uid, pending) = key_and_submit(&mut ami, &mut c);
    let tx = pending.get("SecurePay-Transaction-Id").unwrap().to_string();
    let t0 = Instant::now();
    while received.lock().unwrap().is_empty() {
        assert!(t0.elapsed() < WAIT, "the request never reached the server");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Hang up (no hook left, so unload is allowed), then unload at once.
    let r = ami.action(&[("Action", "Hangup"), ("Channel", &c.customer)]);
    assert_eq!(r.get("Response"), Some("Success"));
    std::thread::sleep(Duration::from_millis(500));
    let t1 = Instant::now();
    let out = inst.cli("module unload res_secure_pay.so");
    let took = t1.elapsed();
    let show = inst.cli("module show like secure_pay");
    assert!(
        !show.contains("res_secure_pay.so"),
        "unloaded: {out} / {show}"
    );
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_secs(15),
        "unload waited for the worker, bounded: {took:?}"
    );
    // The in-flight payment was reported (unknown: sent, no answer) before the module went.
    let done = ami
        .wait_event(
            WAIT,
            "SecurePaySubmit",
            &[("Uniqueid", &uid), ("SecurePay-Result", "unknown")],
        )
        .expect("the outcome of the payment in flight at unload");
    assert_eq!(done.get("SecurePay-Transaction-Id"), Some(tx.as_str()));
    assert_eq!(outcomes(&ami, &uid).len(), 1, "exactly one outcome event");
    // No worker runs on in unloaded code: Asterisk is alive well past the old 5 s detach and
    // the 20 s request timeout.
    std::thread::sleep(Duration::from_secs(16));
    assert!(inst.is_running(), "Asterisk still running after unload");
    let out = inst.cli("core show version");
    assert!(out.contains("Asterisk"), "{out}");
    exactly_one_request(&received.lock().unwrap(), &tx);
}
