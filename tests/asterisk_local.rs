//! res_secure_pay on a REAL Asterisk 22 (private instance on loopback), with a Local-channel
//! call: the customer keys a test card as DTMF frames (SendDTMF) and as in-band tones
//! (Playtones) after the agent starts secure mode through AMI. Judged by what Asterisk itself
//! reports (AMI DTMFBegin/DTMFEnd on the agent channels) and by an independent decoder
//! (multimon-ng) on MixMonitor recordings of the agent leg and the customer leg. Control in
//! the same call: keys pressed before start and after stop DO reach the agent, so the test can
//! fail.
#![cfg(feature = "asterisk")]

mod asterisk;

use std::time::Duration;

use asterisk::{
    multimon_digits, playtones_arg, playtones_ms, spandsp_digits, Instance, BASE_MODULES,
};

const PAN: &str = "4242424242424242"; // Visa TEST number
const EXPIRY: &str = "1230";
const CVV: &str = "123";
const T: Duration = Duration::from_secs(30);

/// The call: `inbound` is the customer's leg in the PBX (recorded: call-*.wav), which dials the
/// agent (recorded: agent-*.wav, what the agent hears). `customer` is the customer's phone; it
/// waits for GLOBAL(SPSTEP_<call>) to reach each step before keying.
fn dialplan() -> String {
    let oob_before = "A";
    let inband_before = playtones_arg("A", 120, 120);
    let inband_before_ms = playtones_ms("A", 120, 120) + 300;
    let card_inband = format!("{EXPIRY}{CVV}");
    let inband_card = playtones_arg(&card_inband, 120, 120);
    let inband_card_ms = playtones_ms(&card_inband, 120, 120) + 300;
    let inband_after = playtones_arg("D", 120, 120);
    format!(
        r#"[general]
[globals]
[securepay-test]
exten => inbound,1,Answer()
 same => n,MixMonitor(call-${{CALLNAME}}.wav)
 same => n,UserEvent(SPInbound,Call: ${{CALLNAME}},Chan: ${{CHANNEL}})
 same => n,Dial(Local/agent@securepay-test/n)
 same => n,Hangup()

exten => agent,1,Answer()
 same => n,MixMonitor(agent-${{CALLNAME}}.wav)
 same => n,UserEvent(SPAgent,Call: ${{CALLNAME}},Chan: ${{CHANNEL}})
 same => n,Wait(120)
 same => n,Hangup()

exten => customer,1,Answer()
 same => n(w1),GotoIf($[0${{GLOBAL(SPSTEP_${{CALLNAME}})}} >= 1]?s1)
 same => n,Wait(0.05)
 same => n,Goto(w1)
 same => n(s1),SendDTMF({oob_before},120,100)
 same => n,Playtones({inband_before})
 same => n,Wait({ib1})
 same => n,StopPlaytones()
 same => n,UserEvent(SPStep,Call: ${{CALLNAME}},Step: 1)
 same => n(w2),GotoIf($[0${{GLOBAL(SPSTEP_${{CALLNAME}})}} >= 2]?s2)
 same => n,Wait(0.05)
 same => n,Goto(w2)
 same => n(s2),SendDTMF({PAN}#,120,100)
 same => n,Playtones({inband_card})
 same => n,Wait({ib2})
 same => n,StopPlaytones()
 same => n,UserEvent(SPStep,Call: ${{CALLNAME}},Step: 2)
 same => n(w3),GotoIf($[0${{GLOBAL(SPSTEP_${{CALLNAME}})}} >= 3]?s3)
 same => n,Wait(0.05)
 same => n,Goto(w3)
 same => n(s3),SendDTMF(D,120,100)
 same => n,Playtones({inband_after})
 same => n,Wait({ib1})
 same => n,StopPlaytones()
 same => n,UserEvent(SPStep,Call: ${{CALLNAME}},Step: 3)
 same => n,Wait(120)
"#,
        ib1 = inband_before_ms as f64 / 1000.0,
        ib2 = inband_card_ms as f64 / 1000.0,
    )
}

fn set_step(ami: &mut asterisk::Ami, call: &str, step: u32) {
    let r = ami.action(&[
        ("Action", "Setvar"),
        ("Variable", &format!("GLOBAL(SPSTEP_{call})")),
        ("Value", &step.to_string()),
    ]);
    assert_eq!(r.get("Response"), Some("Success"), "{}", r.text());
}

fn wait_step(ami: &asterisk::Ami, call: &str, step: u32) {
    ami.wait_event(
        Duration::from_secs(60),
        "UserEvent",
        &[
            ("UserEvent", "SPStep"),
            ("Call", call),
            ("Step", &step.to_string()),
        ],
    )
    .unwrap_or_else(|| panic!("customer did not finish step {step}"));
}

#[test]
fn local_call_secure_mode_masks_everything_and_captures_the_card() {
    let inst = Instance::start("local", &dialplan(), &[], BASE_MODULES);
    let mut ami = inst.ami();
    let call = "c1";

    let r = ami.action(&[
        ("Action", "Originate"),
        ("Channel", "Local/customer@securepay-test"),
        ("Context", "securepay-test"),
        ("Exten", "inbound"),
        ("Priority", "1"),
        ("Variable", &format!("__CALLNAME={call}")),
        ("Async", "true"),
    ]);
    assert_eq!(r.get("Response"), Some("Success"), "{}", r.text());
    let inbound = ami
        .wait_event(
            T,
            "UserEvent",
            &[("UserEvent", "SPInbound"), ("Call", call)],
        )
        .expect("inbound leg");
    let customer_chan = inbound.get("Chan").unwrap().to_owned();
    let agent = ami
        .wait_event(T, "UserEvent", &[("UserEvent", "SPAgent"), ("Call", call)])
        .expect("agent answered");
    let agent_chan2 = agent.get("Chan").unwrap().to_owned();
    let agent_prefix = agent_chan2.trim_end_matches(";2").to_owned();

    // 1. control: before secure mode, the customer's keys reach the agent
    set_step(&mut ami, call, 1);
    wait_step(&ami, call, 1);

    // 2. the agent starts secure mode (AMI), the customer keys the card
    let r = ami.action(&[
        ("Action", "SecurePay"),
        ("Channel", &customer_chan),
        ("Command", "start"),
    ]);
    assert_eq!(r.get("Response"), Some("Success"), "start: {}", r.text());
    let start = ami
        .wait_event(T, "SecurePayStart", &[("Channel", &customer_chan)])
        .expect("SecurePayStart");
    assert!(start.get("Uniqueid").is_some_and(|u| !u.is_empty()));
    assert!(start.get("Linkedid").is_some_and(|u| !u.is_empty()));
    let mark_start = ami.all().len();
    set_step(&mut ami, call, 2);
    wait_step(&ami, call, 2);
    let complete = ami
        .wait_event(T, "SecurePayComplete", &[("Channel", &customer_chan)])
        .unwrap_or_else(|| {
            panic!(
                "no SecurePayComplete; SecurePay events: {:#?}",
                sp_events(&ami)
            )
        });
    let masked = complete.get("SecurePay-Card-Number").unwrap_or("");
    assert!(
        masked.len() == PAN.len()
            && masked.ends_with("4242")
            && !masked[..12].contains(char::is_numeric),
        "masked card number: {}",
        complete.text()
    );
    assert_eq!(
        complete
            .get("SecurePay-Card-Brand")
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("visa")
    );
    let status = ami.action(&[
        ("Action", "SecurePay"),
        ("Channel", &customer_chan),
        ("Command", "status"),
    ]);
    assert_eq!(status.get("Response"), Some("Success"), "{}", status.text());
    let r = ami.action(&[
        ("Action", "SecurePay"),
        ("Channel", &customer_chan),
        ("Command", "stop"),
    ]);
    assert_eq!(r.get("Response"), Some("Success"), "stop: {}", r.text());
    ami.wait_event(T, "SecurePayStop", &[("Channel", &customer_chan)])
        .expect("SecurePayStop");
    let mark_stop = ami.all().len();

    // 3. control: after stop, keys reach the agent again
    set_step(&mut ami, call, 3);
    wait_step(&ami, call, 3);
    std::thread::sleep(Duration::from_millis(500));
    let r = ami.action(&[("Action", "Hangup"), ("Channel", &customer_chan)]);
    assert_eq!(r.get("Response"), Some("Success"), "{}", r.text());
    ami.wait_event(T, "Hangup", &[("Channel", &agent_chan2)])
        .expect("agent hung up");
    std::thread::sleep(Duration::from_millis(1500)); // MixMonitor closes its files

    // --- AMI: which DTMF did the agent side see?
    let all = ami.all();
    let agent_dtmf = |range: std::ops::Range<usize>| -> String {
        all[range]
            .iter()
            .filter(|m| m.event() == Some("DTMFEnd"))
            .filter(|m| {
                m.get("Channel")
                    .is_some_and(|c| c.starts_with(&agent_prefix))
            })
            .filter(|m| {
                m.get("Direction") == Some("Received") || m.get("Direction") == Some("Sent")
            })
            .map(|m| m.get("Digit").unwrap_or("?").to_owned())
            .collect()
    };
    let before = agent_dtmf(0..mark_start);
    let during = agent_dtmf(mark_start..mark_stop);
    let after = agent_dtmf(mark_stop..all.len());
    assert!(
        before.contains('A'),
        "control: DTMF before start must reach the agent: {before:?}"
    );
    assert!(
        after.contains('D'),
        "control: DTMF after stop must reach the agent: {after:?}"
    );
    assert_eq!(during, "", "agent saw DTMF during secure mode");
    // no DTMF event on ANY channel carries a card digit during secure mode
    let any_during: Vec<String> = all[mark_start..mark_stop]
        .iter()
        .filter(|m| matches!(m.event(), Some("DTMFBegin") | Some("DTMFEnd")))
        .map(|m| m.text())
        .collect();
    assert!(
        any_during.is_empty(),
        "DTMF events during secure mode: {any_during:?}"
    );

    // --- masked events only
    for m in all.iter().filter(|m| !asterisk::is_test_phone_msg(m)) {
        let t = m.text();
        assert!(!t.contains(PAN), "full card number in an AMI message: {t}");
        if m.event().is_some_and(|e| e.starts_with("SecurePay")) {
            assert!(!t.contains("4242424242"), "unmasked card digits in {t}");
        }
    }
    let digits = ami.events("SecurePayDigit");
    assert!(
        digits.len() >= PAN.len() + EXPIRY.len(),
        "SecurePayDigit events: {}",
        digits.len()
    );
    let fields = ami.events("SecurePayField");
    assert!(
        fields
            .iter()
            .filter(|f| f.get("SecurePay-Result") == Some("complete"))
            .count()
            >= 3,
        "fields: {fields:#?}"
    );

    // --- recordings, judged by multimon-ng
    let agent_wav = inst.monitor(&format!("agent-{call}.wav"));
    let call_wav = inst.monitor(&format!("call-{call}.wav"));
    for wav in [&agent_wav, &call_wav] {
        let d = multimon_digits(wav);
        assert!(
            d.contains('A'),
            "control: in-band 'A' before start must be heard in {}: {d:?}",
            wav.display()
        );
        assert!(
            d.contains('D'),
            "control: in-band 'D' after stop must be heard in {}: {d:?}",
            wav.display()
        );
        let leaked: String = d.chars().filter(|c| !matches!(c, 'A' | 'D')).collect();
        assert_eq!(leaked, "", "card digits decoded from {}", wav.display());
        // second judge: spandsp dtmf_rx, same controls
        let (sd, sp) = spandsp_digits(wav);
        for (judge, d) in [("spandsp", &sd), ("spandsp permissive", &sp)] {
            assert!(
                d.contains('A') && d.contains('D'),
                "control: {judge} must hear 'A' (before start) and 'D' (after stop) in {}: {d:?}",
                wav.display()
            );
            let leaked: String = d.chars().filter(|c| !matches!(c, 'A' | 'D')).collect();
            assert_eq!(
                leaked,
                "",
                "{judge}: card digits decoded from {}",
                wav.display()
            );
        }
    }
    assert!(inst.is_running());
}

fn sp_events(ami: &asterisk::Ami) -> Vec<String> {
    ami.all()
        .into_iter()
        .filter(|m| m.event().is_some_and(|e| e.starts_with("SecurePay")))
        .map(|m| m.text())
        .collect()
}
