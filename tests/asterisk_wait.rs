//! `SecurePay(...,wait)` (issue #12, Asterisk parity with FreeSWITCH): the blocking variant for
//! IVR flows without an agent, on a REAL Asterisk 22. The customer's leg runs the application
//! itself (no bridge: the application services the channel so its media reaches the hook),
//! the scripted phone keys a card as DTMF frames, and the dialplan branches on the channel
//! variables it sets: masked data only. Hostile: nobody keys -> the failed attempt ends it
//! with `failed`; the caller hangs up -> the application ends with the call.
#![cfg(feature = "asterisk")]

mod asterisk;

use std::time::{Duration, Instant};

use asterisk::{phone_dialplan, Call, Instance, BASE_MODULES, WAIT};

const PAN: &str = "4242424242424242";

fn ivr_dialplan() -> String {
    format!(
        "{}\n[ivr]\n\
exten => inbound,1,Answer()\n\
 same => n,UserEvent(SPInbound,Call: ${{CALLNAME}},Chan: ${{CHANNEL}})\n\
 same => n,SecurePay(${{GLOBAL(IVR_OPTS_${{CALLNAME}})}},wait)\n\
 same => n,UserEvent(SPIvr,Call: ${{CALLNAME}},Status: ${{SECUREPAY_STATUS}},Result: ${{SECUREPAY_RESULT}},Brand: ${{SECUREPAY_CARD_BRAND}},Card: ${{SECUREPAY_CARD_NUMBER}},Charge: ${{SECUREPAY_CHARGE_ID}},Error: ${{SECUREPAY_ERROR}})\n\
 same => n,GotoIf($[\"${{SECUREPAY_RESULT}}\" = \"complete\"]?paid)\n\
 same => n,UserEvent(SPBranch,Call: ${{CALLNAME}},Branch: retry)\n\
 same => n,Hangup()\n\
 same => n(paid),UserEvent(SPBranch,Call: ${{CALLNAME}},Branch: paid)\n\
 same => n,Hangup()\n",
        phone_dialplan()
    )
}

fn originate_ivr(ami: &mut asterisk::Ami, name: &str, opts: &str) -> Call {
    // options have commas: a global variable (Originate variables are split on commas)
    let r = ami.action(&[
        ("Action", "Setvar"),
        ("Variable", &format!("GLOBAL(IVR_OPTS_{name})")),
        ("Value", opts),
    ]);
    assert_eq!(r.get("Response"), Some("Success"), "{}", r.text());
    let r = ami.action(&[
        ("Action", "Originate"),
        ("Channel", "Local/customer@sp"),
        ("Context", "ivr"),
        ("Exten", "inbound"),
        ("Priority", "1"),
        ("Variable", &format!("__CALLNAME={name}")),
        ("Async", "true"),
    ]);
    assert_eq!(r.get("Response"), Some("Success"), "{}", r.text());
    let inbound = ami
        .wait_event(
            WAIT,
            "UserEvent",
            &[("UserEvent", "SPInbound"), ("Call", name)],
        )
        .unwrap_or_else(|| panic!("{name}: no inbound leg"));
    Call::for_name(name, inbound.get("Chan").unwrap_or(""))
}

#[test]
fn blocking_securepay_returns_with_masked_result_variables() {
    let inst = Instance::start("wait", &ivr_dialplan(), &[], BASE_MODULES);
    let mut ami = inst.ami();

    // happy path: the card is keyed, no connector: returns `complete` with masked data
    let mut c = originate_ivr(&mut ami, "w1", "connector=none");
    ami.wait_event(WAIT, "SecurePayStart", &[("Channel", &c.customer)])
        .expect("secure mode started by the blocking application");
    // still blocked: no SPIvr before the card is keyed
    std::thread::sleep(Duration::from_millis(500));
    assert!(ami
        .events("UserEvent")
        .iter()
        .all(|m| m.get("UserEvent") != Some("SPIvr")));
    // (no wait for the phone's step: the IVR hangs up as soon as the capture completes)
    c.key_nowait(&mut ami, &format!("{PAN}#1230123"), "");
    let done = ami
        .wait_event(WAIT, "UserEvent", &[("UserEvent", "SPIvr"), ("Call", "w1")])
        .expect("the blocking SecurePay returned");
    assert_eq!(done.get("Status"), Some("STARTED"), "{}", done.text());
    assert_eq!(done.get("Result"), Some("complete"), "{}", done.text());
    assert_eq!(
        done.get("Brand").map(str::to_ascii_lowercase).as_deref(),
        Some("visa")
    );
    let card = done.get("Card").unwrap_or("");
    assert!(
        card.ends_with("4242") && card.len() == 16,
        "{}",
        done.text()
    );
    assert!(!card.contains(PAN), "{}", done.text());
    ami.wait_event(
        WAIT,
        "UserEvent",
        &[
            ("UserEvent", "SPBranch"),
            ("Call", "w1"),
            ("Branch", "paid"),
        ],
    )
    .expect("the dialplan branched on SECUREPAY_RESULT");
    // secure mode ended and wiped when the application returned
    ami.wait_event(WAIT, "SecurePayStop", &[("Channel", &c.customer)])
        .expect("stopped on return");

    // hostile: nobody keys: the first-digit timeout fails the only attempt (`failed`), the
    // dialplan takes its other branch
    let t0 = Instant::now();
    let c2 = originate_ivr(
        &mut ami,
        "w2",
        "connector=none,first_digit_timeout_ms=1500,max_attempts=1",
    );
    let done = ami
        .wait_event(WAIT, "UserEvent", &[("UserEvent", "SPIvr"), ("Call", "w2")])
        .expect("the blocking SecurePay returned after the failed attempt");
    assert_eq!(done.get("Result"), Some("failed"), "{}", done.text());
    assert!(
        done.get("Error")
            .is_some_and(|e| e.contains("too-many-failed-attempts")),
        "{}",
        done.text()
    );
    assert_eq!(done.get("Card"), Some(""), "{}", done.text());
    assert!(
        t0.elapsed() >= Duration::from_millis(1400),
        "{:?}",
        t0.elapsed()
    );
    ami.wait_event(
        WAIT,
        "UserEvent",
        &[
            ("UserEvent", "SPBranch"),
            ("Call", "w2"),
            ("Branch", "retry"),
        ],
    )
    .expect("the dialplan took the retry branch");
    let _ = c2;

    // hostile: the caller hangs up mid-entry: the application ends with the call, nothing left
    let mut c3 = originate_ivr(&mut ami, "w3", "connector=none");
    ami.wait_event(WAIT, "SecurePayStart", &[("Channel", &c3.customer)])
        .expect("start w3");
    c3.key(&mut ami, "4242", "");
    let r = ami.action(&[("Action", "Hangup"), ("Channel", &c3.customer)]);
    assert_eq!(r.get("Response"), Some("Success"), "{}", r.text());
    ami.wait_event(WAIT, "SecurePayStop", &[("Channel", &c3.customer)])
        .expect("stop on hangup");
    std::thread::sleep(Duration::from_millis(500));
    let out = inst.cli("securepay show channels");
    assert!(out.contains("0 channel(s)"), "{out}");
    for m in ami.all() {
        if asterisk::is_test_phone_msg(&m) {
            continue;
        }
        assert!(
            !m.text().contains(PAN),
            "card number on the AMI: {}",
            m.text()
        );
    }
}
