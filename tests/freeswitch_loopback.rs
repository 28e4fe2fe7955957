//! mod_secure_pay on a real FreeSWITCH, loopback calls (customer ⇄ agent bridge).
//!
//! Judges we did not write: multimon-ng decodes the recordings; the npm `modesl` ESL client
//! receives the CUSTOM secure_pay::* events. Controls in the same call: before `start` and
//! after `stop` the same path carries digits (decoded by multimon-ng, DTMF events on ESL).
//!
//! Needs FreeSWITCH at $FREESWITCH_PREFIX (default /opt/freeswitch); otherwise prints
//! "FreeSWITCH tests SKIPPED" and passes. Run:
//! `cargo test --release --features freeswitch --test freeswitch_loopback`.
#![cfg(feature = "freeswitch")]

mod freeswitch_support;

use std::time::Duration;

use freeswitch_support::*;

const PAN: &str = "4111111111111111";
const EXPIRY: &str = "1230";
const CVV: &str = "123";

fn dtmf_events(evs: &[EslEvent]) -> Vec<(String, String)> {
    evs.iter()
        .filter(|e| e.get("Event-Name") == Some("DTMF"))
        .map(|e| {
            (
                e.get("Unique-ID").unwrap_or("").to_string(),
                e.get("DTMF-Digit").unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn send_dtmf(esl: &mut Esl, uuid: &str, digits: &str) {
    let r = esl.api(&format!("uuid_send_dtmf {uuid} {digits}@100"));
    assert!(r.starts_with("+OK"), "uuid_send_dtmf: {r}");
    std::thread::sleep(Duration::from_millis(300 * digits.len() as u64 + 500));
}

/// Waits up to 8 s for the secure session on `uuid` to complete (every field captured).
fn wait_complete(esl: &mut Esl, uuid: &str) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(8);
    loop {
        if esl
            .api(&format!("uuid_secure_pay {uuid} status"))
            .contains("SecurePay-State: complete")
        {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn loopback_secure_mode_masks_inband_and_swallows_out_of_band() {
    let Some(prefix) = prefix() else { return };
    let fs = FreeSwitch::start(&prefix, &Options::default());
    let node = NodeListener::start(&fs);
    let mut esl = fs.esl();
    let mut ev = fs.esl();
    ev.subscribe("plain DTMF");

    let (cust_a, cust_b) = originate_customer(&mut esl, "cust1");
    let (agent_a, agent_b) = agent_legs(&mut esl, &cust_b);
    std::thread::sleep(Duration::from_millis(500));

    // ---- Phase 1 (control): secure mode off, digits reach the agent.
    let p1 = fs.rec("agent_phase1.wav");
    record(&mut esl, &agent_a, "start", &p1);
    play_tones(&mut esl, &cust_a, "159");
    send_dtmf(&mut esl, &cust_a, "5");
    record(&mut esl, &agent_a, "stop", &p1);
    let d1 = multimon_digits(&p1);
    assert!(
        d1.contains("159"),
        "control: agent recording before start should decode 159, got {d1:?}"
    );
    let e1 = dtmf_events(&ev.drain(Duration::from_millis(500)));
    assert!(
        e1.iter()
            .any(|(u, d)| (u == &agent_a || u == &agent_b) && d == "5"),
        "control: DTMF 5 should reach the agent leg before start: {e1:?}"
    );

    // ---- Phase 2: secure mode on. Recordings are started BEFORE the bug (ordering check).
    let p2a = fs.rec("agent_a_phase2.wav");
    let p2b = fs.rec("agent_b_phase2.wav");
    let p2c = fs.rec("customer_phase2.wav");
    record(&mut esl, &agent_a, "start", &p2a);
    record(&mut esl, &agent_b, "start", &p2b);
    record(&mut esl, &cust_b, "start", &p2c);
    let r = esl.api(&format!("uuid_secure_pay {cust_b} start"));
    assert!(r.starts_with("+OK"), "start: {r}");
    std::thread::sleep(Duration::from_millis(300));
    // (A fresh-clone CI run once lost the expiry's last key and the code's three tones:
    // recovered once, see `keyed_with_one_retry`; the event checks below report a failure.)
    keyed_with_one_retry(
        &mut esl,
        &cust_b,
        &mut |esl| {
            key_card_in_band(esl, &cust_a, &cust_b, PAN); // in-band
            send_dtmf(esl, &cust_a, EXPIRY); // out-of-band (loopback DTMF)
            play_tones(esl, &cust_a, CVV); // in-band
        },
        &mut |esl| wait_complete(esl, &cust_b).then_some(()),
    );
    std::thread::sleep(Duration::from_millis(800));
    let status = esl.api(&format!("uuid_secure_pay {cust_b} status"));
    assert!(status.starts_with("+OK active"), "status: {status}");
    assert!(!status.contains(PAN), "status leaks the card number");
    record(&mut esl, &agent_a, "stop", &p2a);
    record(&mut esl, &agent_b, "stop", &p2b);
    record(&mut esl, &cust_b, "stop", &p2c);
    let e2 = dtmf_events(&ev.drain(Duration::from_millis(500)));
    assert!(
        e2.iter()
            .all(|(u, _)| u != &agent_a && u != &agent_b && u != &cust_b),
        "secure mode: stock DTMF events leaked: {e2:?}"
    );
    for p in [&p2a, &p2b, &p2c] {
        let d = multimon_digits(p);
        assert!(
            d.is_empty(),
            "secure mode: {} decodes to {d:?}",
            p.display()
        );
    }

    // ---- Phase 3 (control): stop, digits pass again.
    let r = esl.api(&format!("uuid_secure_pay {cust_b} stop"));
    assert!(r.starts_with("+OK"), "stop: {r}");
    let p3 = fs.rec("agent_phase3.wav");
    record(&mut esl, &agent_a, "start", &p3);
    play_tones(&mut esl, &cust_a, "357");
    send_dtmf(&mut esl, &cust_a, "9");
    record(&mut esl, &agent_a, "stop", &p3);
    let d3 = multimon_digits(&p3);
    assert!(
        d3.contains("357"),
        "control: agent recording after stop should decode 357, got {d3:?}"
    );
    let e3 = dtmf_events(&ev.drain(Duration::from_millis(500)));
    assert!(
        e3.iter()
            .any(|(u, d)| (u == &agent_a || u == &agent_b) && d == "9"),
        "control: DTMF 9 should reach the agent leg after stop: {e3:?}"
    );

    // ---- Events, as the independent modesl client saw them.
    std::thread::sleep(Duration::from_millis(500));
    let events = node.events();
    let summary: Vec<String> = events
        .iter()
        .map(|e| {
            let mut s = e["Event-Subclass"].as_str().unwrap_or("").to_string();
            if let Some(o) = e.as_object() {
                for (k, v) in o {
                    if k.starts_with("SecurePay-") || k == "DTMF-Digit" {
                        s.push_str(&format!(" {k}={v}"));
                    }
                }
            }
            s
        })
        .collect();
    let of = |sub: &str| -> Vec<&serde_json::Value> {
        events
            .iter()
            .filter(|e| e["Event-Subclass"] == format!("secure_pay::{sub}").as_str())
            .collect()
    };
    for e in &events {
        let text = e.to_string();
        assert!(
            !text.contains(PAN),
            "an event carries the clear card number: {text}"
        );
    }
    let start = of("start");
    assert_eq!(start.len(), 1, "one start event: {summary:#?}");
    assert_eq!(
        start[0]["Unique-ID"],
        cust_b.as_str(),
        "channel headers on the event"
    );
    let digits = of("digit");
    assert!(
        digits.len() >= 16,
        "masked digit progress events: {}",
        digits.len()
    );
    for d in &digits {
        let m = d["SecurePay-Masked"].as_str().unwrap_or("");
        assert!(
            !m.is_empty() && !m.chars().any(|c| c.is_ascii_digit()),
            "digit events are masked: {m}"
        );
    }
    let complete = of("complete");
    assert_eq!(complete.len(), 1, "card complete: {summary:#?}");
    let masked = complete[0]["SecurePay-Card-Number"].as_str().unwrap_or("");
    assert!(
        masked.ends_with("1111") && !masked.contains(PAN),
        "masked card: {masked}"
    );
    assert_eq!(complete[0]["SecurePay-Card-Brand"], "visa");
    let stop = of("stop");
    assert_eq!(stop.len(), 1);
    assert_eq!(stop[0]["SecurePay-Reason"], "agent");
    // The DTMF events the modesl client saw: none for the agent legs while secure.
    let node_dtmf: Vec<_> = events
        .iter()
        .filter(|e| e["Event-Subclass"] == "DTMF")
        .collect();
    assert!(
        node_dtmf.iter().any(|e| e["DTMF-Digit"] == "5")
            && node_dtmf.iter().any(|e| e["DTMF-Digit"] == "9"),
        "modesl saw the control DTMF events"
    );
    for d in EXPIRY.chars() {
        assert!(
            !node_dtmf
                .iter()
                .any(|e| e["DTMF-Digit"] == d.to_string().as_str()
                    && (e["Unique-ID"] == agent_a.as_str() || e["Unique-ID"] == agent_b.as_str())),
            "modesl saw a secure digit as a DTMF event on the agent leg"
        );
    }

    // digits_dialed (what CDRs record) on the customer channel: the control digits, never the
    // secure ones.
    let mut hup = fs.esl();
    hup.subscribe("plain CHANNEL_HANGUP_COMPLETE");
    let _ = esl.api(&format!("uuid_kill {cust_a}"));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut dialed = None;
    while std::time::Instant::now() < deadline {
        if let Some(e) = hup.next_event(Duration::from_millis(500)) {
            if e.get("Unique-ID") == Some(cust_b.as_str()) {
                dialed = Some(e.get("variable_digits_dialed").unwrap_or("").to_string());
                break;
            }
        }
    }
    let dialed = dialed.expect("hangup event of the customer channel");
    assert!(
        dialed.contains('5') && dialed.contains('9'),
        "control digits in digits_dialed: {dialed:?}"
    );
    for d in EXPIRY.chars() {
        assert!(
            !dialed.contains(d),
            "secure digit in digits_dialed: {dialed:?}"
        );
    }

    // FreeSWITCH's log (level debug): "RECV DTMF <digit>" for the customer channel only for the
    // control digits.
    std::thread::sleep(Duration::from_millis(300));
    let log = fs.log_text();
    let logged: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(cust_b.as_str()) && l.contains("RECV DTMF"))
        .collect();
    assert!(
        logged.iter().any(|l| l.contains("RECV DTMF 5")),
        "control digit logged: {logged:?}"
    );
    for l in &logged {
        assert!(
            l.contains("RECV DTMF 5") || l.contains("RECV DTMF 9"),
            "a secure digit reached FreeSWITCH's log: {l}"
        );
    }
}
