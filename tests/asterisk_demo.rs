//! The README main-job demo (run by `scripts/demo`, ignored in the normal test run): a real
//! Asterisk 22 with res_secure_pay, one control call without secure mode and one call in
//! secure mode where a simulated customer keys a test card; prints what the agent desktop sees
//! (the masked AMI events) and what an independent decoder (multimon-ng) finds in the agent's
//! recording of each call.
#![cfg(feature = "asterisk")]

mod asterisk;

use std::time::Duration;

use asterisk::{
    https_server, multimon_digits, phone_dialplan, pki, Call, Instance, BASE_MODULES, WAIT,
};

const PAN: &str = "4242424242424242"; // Visa TEST number
const EXPIRY: &str = "1230";
const CVV: &str = "123";

fn say(s: &str) {
    for l in s.lines() {
        println!("demo| {l}");
    }
}

fn agent_dtmf(ami: &asterisk::Ami, c: &Call) -> String {
    ami.all()
        .iter()
        .filter(|m| m.event() == Some("DTMFEnd"))
        .filter(|m| {
            m.get("Channel")
                .is_some_and(|ch| ch.starts_with(c.agent_prefix()))
        })
        .filter(|m| m.get("Direction") == Some("Received"))
        .map(|m| m.get("Digit").unwrap_or("?").to_owned())
        .collect()
}

#[test]
#[ignore]
fn demo() {
    let pki = pki();
    let (port, received) = https_server(
        &pki,
        r#"{"charge_id":"ch_demo_1","error_code":null,"error_message":null}"#,
    );
    let conf = format!(
        "[general]\nconnector = demo-psp\nmode = silence\nlookahead_ms = 40\n\n[demo-psp]\n\
         url = https://127.0.0.1:{port}/charge\nca_file = @INST@/etc/demo-ca.pem\n"
    );
    let inst = Instance::start(
        "demo",
        &phone_dialplan(),
        &[("secure_pay.conf", &conf), ("demo-ca.pem", &pki.ca_pem)],
        BASE_MODULES,
    );
    say(&format!(
        "Asterisk 22 running (pid {}), res_secure_pay.so loaded:",
        inst.pid
    ));
    say(&inst.cli("module show like secure_pay"));
    let mut ami = inst.ami();
    say(&format!(
        "The simulated customer keys the Visa test card {PAN}, expiry {EXPIRY}, code {CVV}:\n\
         card number as DTMF frames (like RFC 4733), expiry and code as in-band tones.\n"
    ));

    // 1. control: no secure mode
    say("=== Call 1: CONTROL, secure mode OFF");
    let mut c1 = Call::originate(&mut ami, "control", &[("RECORD", "1")]);
    c1.key(&mut ami, &format!("{PAN}#"), &format!("{EXPIRY}{CVV}"));
    std::thread::sleep(Duration::from_millis(500));
    say(&format!(
        "agent's phone received DTMF events: {:?}",
        agent_dtmf(&ami, &c1)
    ));
    let _ = ami.action(&[("Action", "Hangup"), ("Channel", &c1.customer)]);
    std::thread::sleep(Duration::from_millis(1500));
    let d1 = multimon_digits(&inst.monitor("agent-control.wav"));
    say(&format!(
        "multimon-ng on the agent's recording: {d1:?}  <- the card leaks without secure mode\n"
    ));

    // 2. secure mode started by the agent desktop (AMI), card keyed, submitted
    say("=== Call 2: secure mode ON (agent desktop sends AMI Action: SecurePay, Command: start)");
    let mut c2 = Call::originate(&mut ami, "secure", &[("RECORD", "1")]);
    let mark = ami.all().len();
    let r = c2.securepay(&mut ami, &[("Command", "start")]);
    say(&format!(
        "AMI response: {} {}",
        r.get("Response").unwrap_or(""),
        r.get("Message").unwrap_or("")
    ));
    c2.key(&mut ami, &format!("{PAN}#"), &format!("{EXPIRY}{CVV}"));
    ami.wait_event(WAIT, "SecurePayComplete", &[("Channel", &c2.customer)])
        .expect("complete");
    let r = c2.securepay(&mut ami, &[("Command", "submit")]);
    say(&format!(
        "agent presses Submit -> AMI response: {}",
        r.get("Response").unwrap_or("")
    ));
    ami.wait_event(
        WAIT,
        "SecurePaySubmit",
        &[("Channel", &c2.customer), ("SecurePay-Result", "success")],
    )
    .expect("submit success");
    say("What the agent desktop receives (AMI SecurePay* events, masked):");
    for m in ami.all()[mark..]
        .iter()
        .filter(|m| m.event().is_some_and(|e| e.starts_with("SecurePay")))
    {
        let hs: Vec<String> =
            m.0.iter()
                .filter(|(k, _)| k.starts_with("SecurePay-"))
                .map(|(k, v)| format!("{}={v}", k.trim_start_matches("SecurePay-")))
                .collect();
        say(&format!(
            "  {:<18} {}",
            m.event().unwrap_or(""),
            hs.join(" ")
        ));
    }
    say(&format!(
        "agent's phone received DTMF events: {:?}",
        agent_dtmf(&ami, &c2)
    ));
    let got = received.lock().unwrap().clone();
    if let Some(b) = got.first() {
        say(&format!(
            "the payment connector (loopback HTTPS) received cardnumber={} expiry={}/{} -> exactly the keyed card: {}",
            if b["cardnumber"] == PAN { "<the full card, over TLS only>" } else { "<WRONG>" },
            b["expiry_month"].as_str().unwrap_or(""),
            b["expiry_year"].as_str().unwrap_or(""),
            b["cardnumber"] == PAN && b["cvv"] == CVV
        ));
    }
    let _ = ami.action(&[("Action", "Hangup"), ("Channel", &c2.customer)]);
    std::thread::sleep(Duration::from_millis(1500));
    let d2 = multimon_digits(&inst.monitor("agent-secure.wav"));
    let d2c = multimon_digits(&inst.monitor("call-secure.wav"));
    say(&format!(
        "multimon-ng on the agent's recording: {d2:?}; on the customer-leg recording: {d2c:?}"
    ));
    assert!(d1.len() >= 4, "control recording must decode digits");
    assert_eq!(d2, "", "secure recording must decode to nothing");
    assert_eq!(d2c, "");
    assert_eq!(agent_dtmf(&ami, &c2), "");
    say("\nRESULT: without secure mode the agent hears and records the card; with secure mode the");
    say("agent gets no digit (no DTMF events, nothing decodable in the recording), sees only masked");
    say("progress, and the exact card reaches the payment connector.");
}
