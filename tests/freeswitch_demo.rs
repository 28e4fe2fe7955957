//! The README main-job demo for FreeSWITCH (run by `scripts/demo-freeswitch`, ignored in the
//! normal test run): a private FreeSWITCH on 127.0.0.1 with mod_secure_pay, one control call
//! without secure mode and one call in secure mode where a simulated customer keys a test card;
//! prints what an ESL client (the agent desktop) receives, what an independent decoder
//! (multimon-ng) finds in the agent's recording of each call, and what the loopback HTTPS
//! payment connector receives.
#![cfg(feature = "freeswitch")]

#[path = "connector_common/mod.rs"]
mod connector_common;
mod freeswitch_support;

use std::time::{Duration, Instant};

use connector_common::{http, Pki, TestServer, Versions};
use freeswitch_support::*;

const PAN: &str = "4242424242424242"; // Visa TEST number
const EXPIRY: &str = "1230";
const CVV: &str = "123";

fn say(s: &str) {
    for l in s.lines() {
        println!("demo| {l}");
    }
}

/// The customer keys the card: number in-band (tones in the audio), expiry and code as
/// out-of-band DTMF (like RFC 2833 from a phone).
/// `secure`: the customer's secure leg, whose card field must be done before the out-of-band
/// keys follow (None: no secure mode, nothing to wait for).
fn key_card(esl: &mut Esl, cust_a: &str, secure: Option<&str>) {
    match secure {
        Some(uuid) => key_card_in_band(esl, cust_a, uuid, PAN),
        None => play_tones(esl, cust_a, &format!("{PAN}#")),
    }
    send_keys(esl, cust_a, &format!("{EXPIRY}{CVV}"), 300);
    std::thread::sleep(Duration::from_millis(500));
}

fn dtmf_on(evs: &[EslEvent], legs: &[&str]) -> String {
    evs.iter()
        .filter(|e| e.get("Event-Name") == Some("DTMF"))
        .filter(|e| legs.contains(&e.get("Unique-ID").unwrap_or("")))
        .map(|e| e.get("DTMF-Digit").unwrap_or("?").to_string())
        .collect()
}

#[test]
#[ignore]
fn demo() {
    let prefix = prefix().expect("FreeSWITCH installed (scripts/setup-freeswitch)");
    let pki = Pki::new();
    let server = TestServer::start(
        &pki.server,
        None,
        Versions::Any,
        http(
            "200 OK",
            r#"{"charge_id":"ch_demo_1","error_code":null,"error_message":null}"#,
        ),
    );
    let kv = |k: &str, v: &str| (k.to_string(), v.to_string());
    let fs = FreeSwitch::start(
        &prefix,
        &Options {
            secure_pay_settings: vec![
                kv("connector", "demo-psp"),
                kv("charge_amount", "1999"),
                kv("mode", "silence"),
            ],
            connectors: vec![(
                "demo-psp".into(),
                vec![
                    kv("url", &format!("https://127.0.0.1:{}/charge", server.port)),
                    kv("ca_file", &pki.ca_file),
                ],
            )],
            ..Options::default()
        },
    );
    let mut esl = fs.esl();
    say(&format!(
        "{} running on 127.0.0.1 (pid {}, event socket port {}), {}:",
        esl.api("version").trim(),
        fs.pid(),
        fs.esl_port,
        prefix.display()
    ));
    say(&format!(
        "  module_exists mod_secure_pay -> {}",
        esl.api("module_exists mod_secure_pay").trim()
    ));
    // The agent desktop: an ESL client subscribed to the module's events and stock DTMF.
    let mut desk = fs.esl();
    desk.subscribe(
        "plain DTMF CUSTOM secure_pay::start secure_pay::capture secure_pay::digit \
         secure_pay::field secure_pay::complete secure_pay::submit secure_pay::cancel \
         secure_pay::stop secure_pay::error secure_pay::status",
    );
    say(&format!(
        "The simulated customer keys the Visa test card {PAN}, expiry {EXPIRY}, code {CVV}:\n\
         card number as in-band tones, expiry and code as out-of-band DTMF.\n"
    ));

    // 1. control: no secure mode
    say("=== Call 1: CONTROL, secure mode OFF");
    let (c1a, c1) = originate_customer(&mut esl, "cust1");
    let (g1a, g1b) = agent_legs(&mut esl, &c1);
    std::thread::sleep(Duration::from_millis(400));
    let rec1 = fs.rec("agent-control.wav");
    record(&mut esl, &g1a, "start", &rec1);
    key_card(&mut esl, &c1a, None);
    record(&mut esl, &g1a, "stop", &rec1);
    let ev1 = desk.drain(Duration::from_millis(500));
    say(&format!(
        "DTMF events on the agent's legs (ESL): {:?}",
        dtmf_on(&ev1, &[&g1a, &g1b])
    ));
    let _ = esl.api(&format!("uuid_kill {c1a}"));
    let d1 = multimon_digits(&rec1);
    say(&format!(
        "multimon-ng on the agent's recording: {d1:?}  <- the card leaks without secure mode\n"
    ));

    // 2. secure mode started by the agent desktop
    say("=== Call 2: secure mode ON (agent desktop: api uuid_secure_pay <uuid> start)");
    let (c2a, c2) = originate_customer(&mut esl, "cust2");
    let (g2a, g2b) = agent_legs(&mut esl, &c2);
    std::thread::sleep(Duration::from_millis(400));
    let rec2 = fs.rec("agent-secure.wav");
    let rec2c = fs.rec("customer-secure.wav");
    record(&mut esl, &g2a, "start", &rec2);
    record(&mut esl, &c2, "start", &rec2c);
    let _ = desk.drain(Duration::from_millis(200));
    let r = esl.api(&format!("uuid_secure_pay {c2} start"));
    say(&format!("-> {}", r.trim()));
    key_card(&mut esl, &c2a, Some(&c2));
    let mut events = desk.drain(Duration::from_millis(800));
    let r = esl.api(&format!("uuid_secure_pay {c2} submit"));
    say(&format!(
        "agent presses Submit: api uuid_secure_pay <uuid> submit -> {}",
        r.trim()
    ));
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Some(e) = desk.next_event(Duration::from_millis(500)) {
            let done = e.get("Event-Subclass") == Some("secure_pay::submit")
                && e.get("SecurePay-Result") != Some("pending");
            events.push(e);
            if done {
                break;
            }
        }
    }
    say("What the agent desktop receives over ESL (CUSTOM secure_pay::*, SecurePay-* headers):");
    for e in events
        .iter()
        .filter(|e| e.get("Event-Name") == Some("CUSTOM"))
    {
        let mut hs: Vec<(&String, &String)> = e
            .headers
            .iter()
            .filter(|(k, _)| k.starts_with("SecurePay-"))
            .collect();
        hs.sort();
        let hs: Vec<String> = hs
            .iter()
            .map(|(k, v)| format!("{}={v}", k.trim_start_matches("SecurePay-")))
            .collect();
        say(&format!(
            "  {:<22} {}",
            e.get("Event-Subclass").unwrap_or(""),
            hs.join(" ")
        ));
    }
    let dtmf2 = dtmf_on(&events, &[&g2a, &g2b, &c2]);
    say(&format!(
        "DTMF events on the agent's legs and the customer channel (ESL): {dtmf2:?}"
    ));
    for v in [
        "secure_pay_result",
        "secure_pay_card_number",
        "secure_pay_card_brand",
        "secure_pay_charge_id",
    ] {
        say(&format!(
            "channel variable {v} = {}",
            esl.api(&format!("uuid_getvar {c2} {v}")).trim()
        ));
    }
    let got = server.received();
    if let Some(b) = got.first() {
        say(&format!(
            "the payment connector (loopback HTTPS) received cardnumber={} expiry={}/{} amount={} -> exactly the keyed card: {}",
            if b.body["cardnumber"] == PAN { "<the full card, over TLS only>" } else { "<WRONG>" },
            b.body["expiry_month"].as_str().unwrap_or(""),
            b.body["expiry_year"].as_str().unwrap_or(""),
            b.body["amount"].as_str().unwrap_or(""),
            b.body["cardnumber"] == PAN && b.body["cvv"] == CVV
        ));
    }
    record(&mut esl, &g2a, "stop", &rec2);
    record(&mut esl, &c2, "stop", &rec2c);
    let _ = esl.api(&format!("uuid_kill {c2a}"));
    let d2 = multimon_digits(&rec2);
    let d2c = multimon_digits(&rec2c);
    say(&format!(
        "multimon-ng on the agent's recording: {d2:?}; on the customer channel's recording: {d2c:?}"
    ));
    assert!(
        d1.contains(&PAN[..8]),
        "control recording must decode the card"
    );
    assert_eq!(d2, "", "secure recording must decode to nothing");
    assert_eq!(d2c, "");
    assert_eq!(dtmf2, "", "no DTMF event in secure mode");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body["cardnumber"], PAN);
    assert!(events
        .iter()
        .all(|e| e.headers.values().all(|v| !v.contains(PAN))));
    say("\nRESULT: without secure mode the agent hears and records the card; with secure mode the");
    say("agent gets no digit (no DTMF events, nothing decodable in the recording), sees only masked");
    say("progress over ESL, and the exact card reaches the payment connector.");
}
