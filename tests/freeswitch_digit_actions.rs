//! `bind_digit_action` on a secure FreeSWITCH channel. FreeSWITCH feeds every digit a channel
//! receives to its digit-action parser before any recv_dtmf hook, and a binding can hand the
//! matched digits to an API, an application or an event: secure mode takes the parser out of
//! the digit path for the secure period and puts it back after (`DigitActions` in
//! `src/host/freeswitch/channel.rs`).
//!
//! A real SIP/RTP customer leg (FreeSWITCH calls itself on 127.0.0.1, PCMU, RFC 2833) bridged to
//! a loopback agent. The binding under test sets a variable on the customer's channel when
//! the key `5` is pressed (`exec[i]:set`): the variable is the judge (FreeSWITCH's own, not our code). Controls:
//! the binding fires before secure mode and again after it.
//!
//! Needs FreeSWITCH at $FREESWITCH_PREFIX (default /opt/freeswitch), else SKIPPED.
#![cfg(feature = "freeswitch")]

mod freeswitch_support;

use std::time::{Duration, Instant};

use freeswitch_support::*;

const PAN: &str = "5555555555554444";

#[test]
fn digit_actions_get_no_key_while_secure_and_work_again_after() {
    let Some(prefix) = prefix() else { return };
    let fs = FreeSwitch::start(
        &prefix,
        &Options {
            sip: true,
            ..Options::default()
        },
    );
    let mut esl = fs.esl();
    let (cust_a, cust_b) = originate_sip(&fs, &mut esl, "sipcust3", "rfc2833");
    let _ = agent_legs(&mut esl, &cust_b);
    std::thread::sleep(Duration::from_millis(700));

    // The binding: key 5 on the customer channel sets a variable on it.
    let r = esl.api(&format!(
        "uuid_broadcast {cust_b} bind_digit_action::spy,5,exec[i]:set,sp_key5=pressed aleg"
    ));
    assert!(r.starts_with("+OK"), "uuid_broadcast: {r}");
    std::thread::sleep(Duration::from_millis(500));

    // Control: before secure mode the binding sees the key.
    send_keys_held(&mut esl, &cust_a, "5", 120, 300);
    assert_eq!(
        var_within(&mut esl, &cust_b, "sp_key5", 3000).as_deref(),
        Some("pressed"),
        "control: the digit action fires before secure mode"
    );
    let _ = esl.api(&format!("uuid_setvar {cust_b} sp_key5"));
    assert_eq!(var_within(&mut esl, &cust_b, "sp_key5", 0), None);

    let r = esl.api(&format!("uuid_secure_pay {cust_b} start"));
    assert!(r.starts_with("+OK"), "start: {r}");
    std::thread::sleep(Duration::from_millis(300));
    send_keys_held(&mut esl, &cust_a, PAN, 120, 300);
    // The card was captured (our hook got every key) ...
    let deadline = Instant::now() + Duration::from_secs(4);
    let mut status = String::new();
    while Instant::now() < deadline && !status.contains("4444") {
        status = esl.api(&format!("uuid_secure_pay {cust_b} status"));
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(status.contains("4444"), "card captured: {status}");
    assert!(!status.contains(PAN), "status leaks the card: {status}");
    // ... and the digit action got none of the twelve 5s.
    assert_eq!(
        var_within(&mut esl, &cust_b, "sp_key5", 1500),
        None,
        "the digit action saw a key keyed in secure mode"
    );

    let r = esl.api(&format!("uuid_secure_pay {cust_b} stop"));
    assert!(r.starts_with("+OK"), "stop: {r}");
    std::thread::sleep(Duration::from_millis(300));
    // Control: after secure mode the binding works again (the parser was put back).
    send_keys_held(&mut esl, &cust_a, "5", 120, 300);
    assert_eq!(
        var_within(&mut esl, &cust_b, "sp_key5", 3000).as_deref(),
        Some("pressed"),
        "the digit action works again after secure mode"
    );
    let log = fs.log_text();
    assert!(!log.contains(PAN), "the log holds the card number");
    assert!(
        log.contains("digit actions (bind_digit_action) suspended while secure"),
        "the suspension is logged"
    );
    let _ = esl.api(&format!("uuid_kill {cust_a}"));
}
