//! mod_secure_pay with a real SIP/RTP customer leg: FreeSWITCH calls itself through a sofia
//! profile on 127.0.0.1 (PCMU). Out-of-band digits travel as RFC 2833 telephone-events in one
//! call and as SIP INFO in the other; in-band tones travel as PCMU audio. The inbound SIP leg is
//! bridged to a loopback "agent".
//!
//! Judges we did not write: multimon-ng on the agent recordings; the npm `modesl` ESL client
//! for the CUSTOM events and the stock DTMF events. Controls before start / after stop.
//! Needs FreeSWITCH at $FREESWITCH_PREFIX (default /opt/freeswitch), else SKIPPED.
#![cfg(feature = "freeswitch")]

mod freeswitch_support;

use std::time::Duration;

use freeswitch_support::*;

const PAN: &str = "5555555555554444"; // Mastercard test number
const EXPIRY: &str = "0831";
const CVV: &str = "737";

/// Keys digits one at a time, ~300 ms apart, like a person (FreeSWITCH sends a whole SIP INFO
/// string back to back, which no keypad does).
fn send_dtmf(esl: &mut Esl, uuid: &str, digits: &str) {
    send_keys_held(esl, uuid, digits, 120, 300);
    std::thread::sleep(Duration::from_millis(600));
}

fn dtmf_on(evs: &[EslEvent], legs: &[&str]) -> Vec<String> {
    evs.iter()
        .filter(|e| e.get("Event-Name") == Some("DTMF"))
        .filter(|e| legs.contains(&e.get("Unique-ID").unwrap_or("")))
        .map(|e| e.get("DTMF-Digit").unwrap_or("").to_string())
        .collect()
}

/// One customer call: control, secure capture (card in-band, expiry + CVV out-of-band over
/// `dtmf_type`), control. Returns the customer (inbound SIP) uuid.
fn secure_call(fs: &FreeSwitch, n: u32, dtmf_type: &str) -> String {
    let mut esl = fs.esl();
    let mut ev = fs.esl();
    ev.subscribe("plain DTMF");
    let (cust_a, cust_b) = originate_sip(fs, &mut esl, &format!("sipcust{n}"), dtmf_type);
    let (agent_a, agent_b) = agent_legs(&mut esl, &cust_b);
    std::thread::sleep(Duration::from_millis(700));
    let agents = [agent_a.as_str(), agent_b.as_str()];

    // Control: digits pass before start (in-band audio and out-of-band).
    let p1 = fs.rec(&format!("sip{n}_agent_phase1.wav"));
    record(&mut esl, &agent_a, "start", &p1);
    play_tones(&mut esl, &cust_a, "159");
    send_dtmf(&mut esl, &cust_a, "5");
    record(&mut esl, &agent_a, "stop", &p1);
    let d1 = multimon_digits(&p1);
    assert!(
        d1.contains("159"),
        "{dtmf_type} control before start: agent decodes {d1:?}"
    );
    let e1 = dtmf_on(&ev.drain(Duration::from_millis(500)), &agents);
    assert!(
        e1.contains(&"5".to_string()),
        "{dtmf_type} control: DTMF 5 on the agent: {e1:?}"
    );

    // Secure.
    let p2 = fs.rec(&format!("sip{n}_agent_phase2.wav"));
    let p2c = fs.rec(&format!("sip{n}_customer_phase2.wav"));
    record(&mut esl, &agent_a, "start", &p2);
    record(&mut esl, &cust_b, "start", &p2c);
    let r = esl.api(&format!("uuid_secure_pay {cust_b} start"));
    assert!(r.starts_with("+OK"), "start: {r}");
    std::thread::sleep(Duration::from_millis(300));
    key_card_in_band(&mut esl, &cust_a, &cust_b, PAN);
    send_dtmf(&mut esl, &cust_a, EXPIRY);
    send_dtmf(&mut esl, &cust_a, CVV);
    std::thread::sleep(Duration::from_millis(800));
    record(&mut esl, &agent_a, "stop", &p2);
    record(&mut esl, &cust_b, "stop", &p2c);
    let status = esl.api(&format!("uuid_secure_pay {cust_b} status"));
    assert!(
        status.contains("SecurePay-State: complete"),
        "{dtmf_type}: capture complete: {status}"
    );
    assert!(
        status.contains("SecurePay-Card-Number: ************4444"),
        "{status}"
    );
    for p in [&p2, &p2c] {
        let d = multimon_digits(p);
        assert!(
            d.is_empty(),
            "{dtmf_type} secure: {} decodes to {d:?}",
            p.display()
        );
    }
    let e2 = dtmf_on(
        &ev.drain(Duration::from_millis(500)),
        &[&agent_a, &agent_b, &cust_b],
    );
    assert!(
        e2.is_empty(),
        "{dtmf_type} secure: stock DTMF events leaked: {e2:?}"
    );

    // Control after stop.
    let r = esl.api(&format!("uuid_secure_pay {cust_b} stop"));
    assert!(r.starts_with("+OK"), "stop: {r}");
    let p3 = fs.rec(&format!("sip{n}_agent_phase3.wav"));
    record(&mut esl, &agent_a, "start", &p3);
    play_tones(&mut esl, &cust_a, "357");
    send_dtmf(&mut esl, &cust_a, "9");
    record(&mut esl, &agent_a, "stop", &p3);
    let d3 = multimon_digits(&p3);
    assert!(
        d3.contains("357"),
        "{dtmf_type} control after stop: agent decodes {d3:?}"
    );
    let e3 = dtmf_on(&ev.drain(Duration::from_millis(500)), &agents);
    assert!(
        e3.contains(&"9".to_string()),
        "{dtmf_type} control: DTMF 9 after stop: {e3:?}"
    );
    let _ = esl.api(&format!("uuid_kill {cust_a}"));
    cust_b
}

#[test]
fn sip_rfc2833_and_sip_info_are_captured_never_forwarded() {
    let Some(prefix) = prefix() else { return };
    let fs = FreeSwitch::start(
        &prefix,
        &Options {
            sip: true,
            ..Options::default()
        },
    );
    let node = NodeListener::start(&fs);

    let rfc = secure_call(&fs, 1, "rfc2833");
    let info = secure_call(&fs, 2, "info");

    std::thread::sleep(Duration::from_millis(500));
    let events = node.events();
    for e in &events {
        let t = e.to_string();
        assert!(!t.contains(PAN), "an event carries the clear card number");
    }
    for cust in [&rfc, &info] {
        let mine: Vec<_> = events
            .iter()
            .filter(|e| e["Unique-ID"] == cust.as_str())
            .collect();
        let complete: Vec<_> = mine
            .iter()
            .filter(|e| e["Event-Subclass"] == "secure_pay::complete")
            .collect();
        assert_eq!(
            complete.len(),
            1,
            "modesl saw one complete event for {cust}"
        );
        assert_eq!(complete[0]["SecurePay-Card-Brand"], "mastercard");
        assert_eq!(complete[0]["SecurePay-Card-Number"], "************4444");
        assert!(
            mine.iter()
                .filter(|e| e["Event-Subclass"] == "secure_pay::digit")
                .count()
                >= 16,
            "masked progress events for {cust}"
        );
    }
    let log = fs.log_text();
    assert!(
        log.contains("secure mode on"),
        "module logged through FreeSWITCH's logger"
    );
    // RFC 2833: switch_rtp logs "RTP RECV DTMF <digit>" at debug level unless sensitive_dtmf
    // (which secure mode sets): only the control digits of the customer leg may appear.
    let rtp_lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(rfc.as_str()) && l.contains("RTP RECV DTMF"))
        .collect();
    assert!(
        rtp_lines.iter().any(|l| l.contains("DTMF 5")),
        "control logged: {rtp_lines:?}"
    );
    for l in &rtp_lines {
        assert!(
            l.contains("RTP RECV DTMF 5") || l.contains("RTP RECV DTMF 9"),
            "a secure RFC 2833 digit reached FreeSWITCH's log: {l}"
        );
    }
}
