//! res_secure_pay across a MASQUERADE on a real Asterisk 22 (private instance on loopback).
//!
//! How the masquerade is caused: AMI `Bridge` on a channel that is NOT in a bridge (here: the
//! customer's leg running `Wait()` in the dialplan) makes Asterisk `ast_channel_yank()` it —
//! a new channel is allocated and the old one is masqueraded into it (`ast_channel_move`),
//! then the new one is imparted into the bridge. Framehooks and datastores move with the
//! masquerade; the module's `chan_fixup_cb` logs "secure mode moved to <chan> in a
//! masquerade", which the test requires, so the masquerade is proven, not assumed.
//!
//! The call: the customer's phone (`Local/customer@sp;2`, scripted by `phone_dialplan`) and the
//! customer's leg in the PBX (`;1`, parked in `Wait()`); the agent's phone
//! (`Local/agent@sp;2`, recorded) and its PBX leg (`;1`, parked in `Wait()`). Steps:
//! 1. AMI Bridge (customer leg, agent leg); control: the customer's keys (DTMF frames and
//!    in-band tones) reach the agent.
//! 2. AMI Redirect of both legs back to `Wait()` (out of the bridge, still up); secure mode is
//!    started on the customer's leg through AMI; AMI Bridge again: the customer's leg is
//!    masqueraded WITH secure mode on.
//! 3. The customer keys a test card (frames + tones): nothing reaches the agent (AMI
//!    DTMFBegin/End on the agent channels, multimon-ng on the agent's recording) and the
//!    session on the surviving channel captures it (SecurePayComplete, masked); the CLI
//!    lists the session under the surviving channel.
//! 4. AMI stop works (SecurePayStop); keys after it reach the agent again (the moved hook
//!    stays passive).
//! 5. Secure mode again on the same channel, a second masquerade with it on,
//!    digits still captured and swallowed; hangup mid-entry: SecurePayStop (reason hangup),
//!    no session left, `module unload` succeeds, Asterisk still running.
#![cfg(feature = "asterisk")]

mod asterisk;

use std::time::Duration;

use asterisk::{multimon_digits, phone_dialplan, Ami, Call, Instance, Msg, BASE_MODULES, WAIT};

const PAN: &str = "4242424242424242"; // Visa TEST number
const EXPIRY: &str = "1230";
const CVV: &str = "123";

fn dialplan() -> String {
    // appended to phone_dialplan()'s [sp] context
    phone_dialplan()
        + r#"
exten => parked,1,Answer()
 same => n,UserEvent(SPInbound,Call: ${CALLNAME},Chan: ${CHANNEL})
 same => n,Wait(300)
 same => n,Hangup()

exten => agenthold,1,UserEvent(SPHold,Call: ${CALLNAME},Chan: ${CHANNEL})
 same => n,Wait(300)
 same => n,Hangup()

exten => park2,1,UserEvent(SPParked,Call: ${CALLNAME},Chan: ${CHANNEL})
 same => n,Wait(300)
 same => n,Hangup()

exten => hold2,1,UserEvent(SPHeld,Call: ${CALLNAME},Chan: ${CHANNEL})
 same => n,Wait(300)
 same => n,Hangup()
"#
}

fn ok(m: &Msg) -> bool {
    m.get("Response") == Some("Success")
}

/// Out-of-band digits Asterisk reports on the agent's channels from message index `from` on
/// (each press once per Local half it crosses).
fn agent_dtmf(ami: &Ami, prefix: &str, from: usize) -> String {
    ami.all()[from..]
        .iter()
        .filter(|m| m.event() == Some("DTMFEnd"))
        .filter(|m| m.get("Channel").is_some_and(|c| c.starts_with(prefix)))
        .filter_map(|m| m.get("Digit").map(str::to_owned))
        .collect()
}

fn any_agent_dtmf_event(ami: &Ami, prefix: &str, from: usize) -> Vec<String> {
    ami.all()[from..]
        .iter()
        .filter(|m| matches!(m.event(), Some("DTMFBegin") | Some("DTMFEnd")))
        .filter(|m| m.get("Channel").is_some_and(|c| c.starts_with(prefix)))
        .map(Msg::text)
        .collect()
}

fn bridge(ami: &mut Ami, a: &str, b: &str) {
    let r = ami.action(&[
        ("Action", "Bridge"),
        ("Channel1", a),
        ("Channel2", b),
        ("Tone", "no"),
    ]);
    assert!(ok(&r), "Bridge: {}", r.text());
}

/// Takes both legs out of the bridge (AMI Redirect back to `Wait()`, still up).
fn unbridge(ami: &mut Ami, name: &str, customer: &str, agent_leg: &str, round: usize) {
    let r = ami.action(&[
        ("Action", "Redirect"),
        ("Channel", customer),
        ("Context", "sp"),
        ("Exten", "park2"),
        ("Priority", "1"),
        ("ExtraChannel", agent_leg),
        ("ExtraContext", "sp"),
        ("ExtraExten", "hold2"),
        ("ExtraPriority", "1"),
    ]);
    assert!(ok(&r), "Redirect: {}", r.text());
    // the `round`-th time each leg is back in the dialplan
    let back = |ue: &str| -> Vec<Msg> {
        ami.all()
            .into_iter()
            .filter(|m| m.get("UserEvent") == Some(ue) && m.get("Call") == Some(name))
            .collect()
    };
    let deadline = std::time::Instant::now() + WAIT;
    while back("SPParked").len() < round || back("SPHeld").len() < round {
        assert!(
            std::time::Instant::now() < deadline,
            "legs not back in the dialplan (round {round})"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        back("SPParked")[round - 1].get("Chan"),
        Some(customer),
        "the customer's leg keeps its name"
    );
}

/// AMI Bridge of the two (unbridged) legs and waits until both entered the new bridge.
fn rebridge(ami: &mut Ami, customer: &str, agent_leg: &str) {
    let before = ami.events("BridgeEnter").len();
    bridge(ami, customer, agent_leg);
    let deadline = std::time::Instant::now() + WAIT;
    while ami.events("BridgeEnter").len() < before + 2 {
        assert!(std::time::Instant::now() < deadline, "legs bridged again");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until the module logged the `n`-th masquerade fixup onto `chan`.
fn wait_moved(inst: &Instance, chan: &str, n: usize) {
    let moved = format!("secure mode moved to {chan} in a masquerade");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while inst.log().matches(&moved).count() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "the customer's leg was not masqueraded with secure mode on (fixup #{n}): {}",
            inst.log()
                .lines()
                .filter(|l| l.contains("secure_pay"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn secure_mode_follows_the_customer_leg_through_a_masquerade() {
    let inst = Instance::start("masq", &dialplan(), &[], BASE_MODULES);
    let mut ami = inst.ami();
    let name = "m1";

    // the customer's call (PBX leg parked in Wait) and the agent's (PBX leg parked in Wait)
    for (chan, exten, vars) in [
        ("Local/customer@sp", "parked", format!("__CALLNAME={name}")),
        (
            "Local/agent@sp/n",
            "agenthold",
            format!("__CALLNAME={name},__RECORD=1"),
        ),
    ] {
        let r = ami.action(&[
            ("Action", "Originate"),
            ("Channel", chan),
            ("Context", "sp"),
            ("Exten", exten),
            ("Priority", "1"),
            ("Variable", &vars),
            ("Async", "true"),
        ]);
        assert!(ok(&r), "{}", r.text());
    }
    let mut call = Call::wait_up(&ami, name);
    let agent_leg = ami
        .wait_event(
            WAIT,
            "UserEvent",
            &[("UserEvent", "SPHold"), ("Call", name)],
        )
        .expect("agent's PBX leg up")
        .get("Chan")
        .unwrap()
        .to_owned();
    let agent_prefix = call.agent_prefix().to_owned();
    assert!(agent_leg.starts_with(&agent_prefix), "{agent_leg}");

    // 1. bridge them (both legs are yanked = masqueraded, no secure mode yet); control: the
    //    customer's keys reach the agent
    bridge(&mut ami, &call.customer, &agent_leg);
    ami.wait_event(WAIT, "BridgeEnter", &[("Channel", &call.customer)])
        .expect("customer leg bridged");
    ami.wait_event(WAIT, "BridgeEnter", &[("Channel", &agent_leg)])
        .expect("agent leg bridged");
    let mark0 = ami.all().len();
    call.key(&mut ami, "A", "A");
    std::thread::sleep(Duration::from_millis(500));
    let got = agent_dtmf(&ami, &agent_prefix, mark0);
    assert!(
        !got.is_empty() && got.chars().all(|c| c == 'A'),
        "control: DTMF frames must reach the agent before secure mode: {got:?}"
    );

    // 2. both legs out of the bridge (still up), secure mode on, bridge again: the customer's
    //    leg is masqueraded with the hook on it
    unbridge(&mut ami, name, &call.customer, &agent_leg, 1);
    let r = call.securepay(&mut ami, &[("Command", "start")]);
    assert!(ok(&r), "start: {}", r.text());
    ami.wait_event(WAIT, "SecurePayStart", &[("Channel", &call.customer)])
        .expect("SecurePayStart");
    assert!(
        !inst.log().contains("in a masquerade"),
        "no masquerade with secure mode yet"
    );
    rebridge(&mut ami, &call.customer, &agent_leg);
    wait_moved(&inst, &call.customer, 1);
    let chans = inst.cli("securepay show channels");
    assert!(
        chans.contains(&call.customer) && chans.contains("1 channel(s)"),
        "the session is listed under the surviving channel: {chans}"
    );
    let r = call.securepay(&mut ami, &[("Command", "status")]);
    assert!(ok(&r), "status after the masquerade: {}", r.text());

    // 3. the card: nothing reaches the agent, the session captures it
    let mark1 = ami.all().len();
    call.key(&mut ami, &format!("{PAN}#"), &format!("{EXPIRY}{CVV}"));
    let complete = ami
        .wait_event(WAIT, "SecurePayComplete", &[("Channel", &call.customer)])
        .unwrap_or_else(|| {
            panic!(
                "no SecurePayComplete after the masquerade; SecurePay events: {:#?}",
                ami.all()
                    .iter()
                    .filter(|m| m.event().is_some_and(|e| e.starts_with("SecurePay")))
                    .map(Msg::text)
                    .collect::<Vec<_>>()
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
    std::thread::sleep(Duration::from_millis(500));
    let leaked = any_agent_dtmf_event(&ami, &agent_prefix, mark1);
    assert!(
        leaked.is_empty(),
        "DTMF reached the agent in secure mode after the masquerade: {leaked:#?}"
    );
    for m in &ami.all()[mark1..] {
        if asterisk::is_test_phone_msg(m) {
            continue;
        }
        assert!(!m.text().contains(PAN), "clear PAN in {}", m.text());
    }

    // 4. stop works on the surviving channel; afterwards keys reach the agent again
    let r = call.securepay(&mut ami, &[("Command", "stop")]);
    assert!(ok(&r), "stop after the masquerade: {}", r.text());
    ami.wait_event(WAIT, "SecurePayStop", &[("Channel", &call.customer)])
        .expect("SecurePayStop");
    let mark2 = ami.all().len();
    call.key(&mut ami, "D", "D");
    std::thread::sleep(Duration::from_millis(500));
    let got = agent_dtmf(&ami, &agent_prefix, mark2);
    assert!(
        !got.is_empty() && got.chars().all(|c| c == 'D'),
        "after stop, DTMF frames reach the agent again: {got:?}"
    );
    let chans = inst.cli("securepay show channels");
    assert!(chans.contains("0 channel(s)"), "after stop: {chans}");

    // 5. secure mode again on the same channel, another masquerade with it on (still
    //    captured, still swallowed), then hangup mid-entry: the moved hook ends the session
    //    (SecurePayStop, reason hangup) and nothing is left
    unbridge(&mut ami, name, &call.customer, &agent_leg, 2);
    let r = call.securepay(&mut ami, &[("Command", "start")]);
    assert!(ok(&r), "start again after the stop: {}", r.text());
    rebridge(&mut ami, &call.customer, &agent_leg);
    wait_moved(&inst, &call.customer, 2);
    let mark3 = ami.all().len();
    call.key(&mut ami, "4242", "");
    std::thread::sleep(Duration::from_millis(500));
    let leaked = any_agent_dtmf_event(&ami, &agent_prefix, mark3);
    assert!(
        leaked.is_empty(),
        "DTMF reached the agent after the second masquerade: {leaked:#?}"
    );
    let digits = ami.all()[mark3..]
        .iter()
        .filter(|m| {
            m.event() == Some("SecurePayDigit") && m.get("Channel") == Some(call.customer.as_str())
        })
        .count();
    assert_eq!(
        digits, 4,
        "the second session captures after its masquerade"
    );
    let r = ami.action(&[("Action", "Hangup"), ("Channel", &call.customer)]);
    assert!(ok(&r), "{}", r.text());
    ami.wait_for(WAIT, |m| {
        m.event() == Some("SecurePayStop")
            && m.get("Channel") == Some(call.customer.as_str())
            && m.get("SecurePay-Reason") == Some("hangup")
    })
    .unwrap_or_else(|| {
        panic!(
            "no SecurePayStop (hangup) from the moved hook: {:#?}",
            ami.events("SecurePayStop")
                .iter()
                .map(Msg::text)
                .collect::<Vec<_>>()
        )
    });
    let _ = ami.action(&[("Action", "Hangup"), ("Channel", "/^Local/")]);
    ami.wait_event(WAIT, "Hangup", &[("Channel", &call.agent)])
        .expect("agent hung up");
    std::thread::sleep(Duration::from_millis(1500)); // MixMonitor closes its file
    let chans = inst.cli("securepay show channels");
    assert!(chans.contains("0 channel(s)"), "after hangup: {chans}");
    let out = inst.cli("module unload res_secure_pay.so");
    let show = inst.cli("module show like secure_pay");
    assert!(
        !show.contains("res_secure_pay.so"),
        "unload after the masqueraded call ended: {out} / {show}"
    );
    assert!(inst.is_running(), "Asterisk died");

    // the agent's recording, judged by multimon-ng: the in-band controls (A before, D after)
    // are there, no card digit is
    let heard = multimon_digits(&inst.monitor(&format!("agent-{name}.wav")));
    assert!(
        heard.contains('A') && heard.contains('D'),
        "control: the judge hears the in-band keys outside secure mode: {heard:?}"
    );
    assert!(
        !heard.contains(|c: char| c.is_ascii_digit()),
        "card digits audible to the agent: {heard:?}"
    );
}
