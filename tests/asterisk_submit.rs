//! res_secure_pay on a REAL Asterisk 22: the agent's `submit` (AMI) hands the captured card to
//! the payment connector, which POSTs it over HTTPS to a loopback test server started here
//! (test CA generated with rcgen, trusted through the profile's `ca_file`). The server must
//! receive exactly the keyed card; the AMI events carry only masked data and the outcome.
#![cfg(feature = "asterisk")]

mod asterisk;

use asterisk::{https_server, phone_dialplan, pki, Call, Instance, BASE_MODULES, WAIT};

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
