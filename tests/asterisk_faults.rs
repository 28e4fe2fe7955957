//! res_secure_pay on a REAL Asterisk 22: bad input and faults. Unknown channel, bad options,
//! bad commands, stop without start, start twice, hangup of either leg mid-entry, module
//! reload and unload during a session: clear errors, no crash, no leaked session (the CLI
//! and `module unload` agree that nothing is left).
#![cfg(feature = "asterisk")]

mod asterisk;

use std::time::Duration;

use asterisk::{phone_dialplan, sp_events_of, Call, Instance, BASE_MODULES, WAIT};

fn ok(m: &asterisk::Msg) -> bool {
    m.get("Response") == Some("Success")
}

fn err_contains(m: &asterisk::Msg, what: &str) -> bool {
    m.get("Response") == Some("Error")
        && m.get("Message")
            .is_some_and(|t| t.to_ascii_lowercase().contains(&what.to_ascii_lowercase()))
}

#[test]
fn bad_input_and_faults_give_clear_errors_and_leave_nothing_behind() {
    let inst = Instance::start("faults", &phone_dialplan(), &[], BASE_MODULES);
    let mut ami = inst.ami();

    // --- no call needed
    let r = ami.action(&[
        ("Action", "SecurePay"),
        ("Channel", "PJSIP/nobody-0001"),
        ("Command", "start"),
    ]);
    assert!(err_contains(&r, "no such channel"), "{}", r.text());
    let r = ami.action(&[("Action", "SecurePay"), ("Command", "start")]);
    assert!(
        err_contains(&r, "channel header is required"),
        "{}",
        r.text()
    );

    let mut c = Call::originate(&mut ami, "f1", &[]);
    let r = c.securepay(&mut ami, &[]);
    assert!(
        err_contains(&r, "command header is required"),
        "{}",
        r.text()
    );
    let r = c.securepay(&mut ami, &[("Command", "launch")]);
    assert!(err_contains(&r, "bad command"), "{}", r.text());
    let r = c.securepay(&mut ami, &[("Command", "stop")]);
    assert!(
        err_contains(&r, "not active"),
        "stop without start: {}",
        r.text()
    );
    let r = c.securepay(&mut ami, &[("Command", "status")]);
    assert!(
        err_contains(&r, "not active"),
        "status without start: {}",
        r.text()
    );
    let r = c.securepay(
        &mut ami,
        &[("Command", "start"), ("Options", "lookahead_ms=900")],
    );
    assert!(
        err_contains(&r, "lookahead_ms"),
        "bad option names the key: {}",
        r.text()
    );
    let r = c.securepay(
        &mut ami,
        &[
            ("Command", "start"),
            ("Options", "fields=payment-card-number,warp-drive"),
        ],
    );
    assert!(
        r.get("Response") == Some("Error"),
        "unknown field: {}",
        r.text()
    );
    let r = c.securepay(&mut ami, &[("Command", "status")]);
    assert!(
        err_contains(&r, "not active"),
        "a refused start leaves nothing: {}",
        r.text()
    );

    // --- start, start twice, bad capture field
    let r = c.securepay(&mut ami, &[("Command", "start")]);
    assert!(ok(&r), "{}", r.text());
    let r = c.securepay(&mut ami, &[("Command", "start")]);
    assert!(
        err_contains(&r, "already active"),
        "start twice: {}",
        r.text()
    );
    let r = c.securepay(&mut ami, &[("Command", "capture"), ("Field", "warp-drive")]);
    assert!(
        r.get("Response") == Some("Error"),
        "bad field: {}",
        r.text()
    );
    let r = c.securepay(&mut ami, &[("Command", "status")]);
    assert!(ok(&r), "{}", r.text());
    ami.wait_event(WAIT, "SecurePayStatus", &[("Channel", &c.customer)])
        .expect("status event");

    // --- mid-entry: unload refused, reload harmless, session keeps capturing
    c.key(&mut ami, "4242", "");
    let digits = |ami: &asterisk::Ami, chan: &str| {
        sp_events_of(ami, chan)
            .iter()
            .filter(|m| m.event() == Some("SecurePayDigit"))
            .count()
    };
    assert_eq!(digits(&ami, &c.customer), 4);
    let out = inst.cli("module unload res_secure_pay.so");
    assert!(
        inst.is_running(),
        "Asterisk died on unload during a session"
    );
    let show = inst.cli("module show like secure_pay");
    assert!(
        show.contains("res_secure_pay.so"),
        "unload during a session must be refused: {out} / {show}"
    );
    let out = inst.cli("module reload res_secure_pay.so");
    assert!(!out.to_ascii_lowercase().contains("error"), "reload: {out}");
    c.key(&mut ami, "42", "");
    assert_eq!(digits(&ami, &c.customer), 6, "session survives a reload");
    let chans = inst.cli("securepay show channels");
    assert!(
        chans.contains(&c.customer) && chans.contains("1 channel(s)"),
        "{chans}"
    );
    assert!(
        !chans.contains("424242"),
        "CLI shows masked data only: {chans}"
    );

    // --- hangup of the customer leg mid-entry
    let r = ami.action(&[("Action", "Hangup"), ("Channel", &c.customer)]);
    assert!(ok(&r), "{}", r.text());
    let stop = ami
        .wait_event(WAIT, "SecurePayStop", &[("Channel", &c.customer)])
        .expect("stop event on hangup");
    assert_eq!(
        stop.get("SecurePay-Reason"),
        Some("hangup"),
        "{}",
        stop.text()
    );
    std::thread::sleep(Duration::from_millis(500));
    let chans = inst.cli("securepay show channels");
    assert!(
        chans.contains("0 channel(s)"),
        "nothing left after hangup: {chans}"
    );

    // --- hangup of the agent leg mid-entry
    let mut c2 = Call::originate(&mut ami, "f2", &[]);
    assert!(ok(&c2.securepay(&mut ami, &[("Command", "start")])));
    c2.key(&mut ami, "42", "");
    let r = ami.action(&[("Action", "Hangup"), ("Channel", &c2.agent)]);
    assert!(ok(&r), "{}", r.text());
    let stop = ami
        .wait_event(WAIT, "SecurePayStop", &[("Channel", &c2.customer)])
        .expect("stop event when the agent hangs up");
    assert_eq!(
        stop.get("SecurePay-Reason"),
        Some("hangup"),
        "{}",
        stop.text()
    );

    // --- dialplan: bad options, good start, StopSecurePay without a session
    let _c3 = Call::originate(
        &mut ami,
        "f3",
        &[("START_APP", "1"), ("START_OPTS", "mode=loud")],
    );
    let ev = ami
        .wait_event(
            WAIT,
            "UserEvent",
            &[("UserEvent", "SPStarted"), ("Call", "f3")],
        )
        .expect("SPStarted");
    assert_eq!(ev.get("Status"), Some("ERROR"), "{}", ev.text());
    assert!(
        ev.get("Error").is_some_and(|e| e.contains("mode")),
        "error names the key: {}",
        ev.text()
    );
    let c4 = Call::originate(
        &mut ami,
        "f4",
        &[
            ("START_APP", "1"),
            ("START_OPTS", "mode=beep,lookahead_ms=20"),
        ],
    );
    let ev = ami
        .wait_event(
            WAIT,
            "UserEvent",
            &[("UserEvent", "SPStarted"), ("Call", "f4")],
        )
        .expect("SPStarted");
    assert_eq!(ev.get("Status"), Some("STARTED"), "{}", ev.text());
    let r = ami.action(&[
        ("Action", "Originate"),
        ("Channel", "Local/stopper@sp"),
        ("Application", "Wait"),
        ("Data", "1"),
        ("Async", "true"),
    ]);
    assert!(ok(&r));
    let ev = ami
        .wait_event(WAIT, "UserEvent", &[("UserEvent", "SPStopper")])
        .expect("stopper");
    assert_eq!(ev.get("Status"), Some("NOTACTIVE"), "{}", ev.text());

    // --- hang everything up: no session, no hook left; unload now succeeds
    let _ = ami.action(&[("Action", "Hangup"), ("Channel", &c4.customer)]);
    let _ = ami.action(&[("Action", "Hangup"), ("Channel", "/^Local/")]);
    std::thread::sleep(Duration::from_secs(2));
    let chans = inst.cli("securepay show channels");
    assert!(chans.contains("0 channel(s)"), "{chans}");
    let out = inst.cli("module unload res_secure_pay.so");
    let show = inst.cli("module show like secure_pay");
    assert!(
        !show.contains("res_secure_pay.so"),
        "unload after all sessions ended: {out} / {show}"
    );
    let out = inst.cli("module load res_secure_pay.so");
    assert!(out.contains("Loaded"), "{out}");
    assert!(inst.is_running());
    // our module's log lines never carry digits (the scripted phone's own dialplan lines do:
    // they are the customer's side, not the PBX leg we protect)
    let log = inst.log();
    let ours: Vec<&str> = log.lines().filter(|l| l.contains("secure_pay")).collect();
    assert!(
        !ours.is_empty(),
        "the module logs through Asterisk's logger"
    );
    for l in ours {
        assert!(
            !l.contains("4242") && !l.contains("42,"),
            "digits in a module log line: {l}"
        );
    }
}

#[test]
fn example_config_loads_and_a_bad_reload_keeps_the_previous_settings() {
    let example =
        std::fs::read_to_string(asterisk::repo().join("dialplan/asterisk/secure_pay.conf"))
            .unwrap();
    let inst = Instance::start(
        "conf",
        &phone_dialplan(),
        &[("secure_pay.conf", &example)],
        BASE_MODULES,
    );
    let s = inst.cli("securepay show settings");
    assert!(
        s.contains("pan_display = last4") && s.contains("[psp]"),
        "{s}"
    );
    // a bad value: reload refused with an error naming the key, old settings kept
    let bad = example.replace("lookahead_ms = 40", "lookahead_ms = 4000");
    std::fs::write(inst.dir.join("etc/secure_pay.conf"), bad).unwrap();
    let _ = inst.cli("module reload res_secure_pay.so");
    std::thread::sleep(Duration::from_millis(300));
    let log = inst.log();
    assert!(
        log.lines()
            .any(|l| l.contains("reload failed") && l.contains("lookahead_ms")),
        "reload error must name the key"
    );
    let s2 = inst.cli("securepay show settings");
    assert!(
        s2.contains("lookahead_ms = 40") && !s2.contains("4000"),
        "{s2}"
    );
    // a good change is picked up
    let good = example.replace("mode = silence", "mode = beep");
    std::fs::write(inst.dir.join("etc/secure_pay.conf"), good).unwrap();
    let _ = inst.cli("module reload res_secure_pay.so");
    let s3 = inst.cli("securepay show settings");
    assert!(s3.contains("mode = beep"), "{s3}");
    // and a session started now runs with it
    let mut ami = inst.ami();
    let c = Call::originate(&mut ami, "cf", &[]);
    let r = c.securepay(&mut ami, &[("Command", "start")]);
    assert!(ok(&r), "{}", r.text());
    let start = ami
        .wait_event(WAIT, "SecurePayStart", &[("Channel", &c.customer)])
        .unwrap();
    assert_eq!(
        start.get("SecurePay-Connector"),
        Some("psp"),
        "{}",
        start.text()
    );
}

/// Timeouts fire even when the channel carries no audio at all (a Local channel at rest):
/// the module's timer thread ticks the session.
#[test]
fn timeouts_fire_without_media() {
    let inst = Instance::start("timeout", &phone_dialplan(), &[], BASE_MODULES);
    let mut ami = inst.ami();
    let c = Call::originate(&mut ami, "t1", &[]);
    let r = c.securepay(
        &mut ami,
        &[
            ("Command", "start"),
            (
                "Options",
                "first_digit_timeout_ms=1000,session_timeout_ms=10000",
            ),
        ],
    );
    assert!(ok(&r), "{}", r.text());
    let f = ami
        .wait_event(
            Duration::from_secs(8),
            "SecurePayField",
            &[("Channel", &c.customer)],
        )
        .expect("first-digit timeout ends the field without any frame");
    assert_eq!(f.get("SecurePay-Result"), Some("invalid"), "{}", f.text());
    let stop = ami
        .wait_event(
            Duration::from_secs(20),
            "SecurePayStop",
            &[("Channel", &c.customer)],
        )
        .expect("session timeout");
    assert_eq!(
        stop.get("SecurePay-Reason"),
        Some("timeout"),
        "{}",
        stop.text()
    );
    std::thread::sleep(Duration::from_millis(500));
    let chans = inst.cli("securepay show channels");
    assert!(
        chans.contains("0 channel(s)"),
        "the timed-out session is torn down: {chans}"
    );
    // unload works (the ticker thread is joined) and load again
    let _ = ami.action(&[("Action", "Hangup"), ("Channel", &c.customer)]);
    std::thread::sleep(Duration::from_secs(1));
    let out = inst.cli("module unload res_secure_pay.so");
    assert!(
        !inst
            .cli("module show like secure_pay")
            .contains("res_secure_pay.so"),
        "{out}"
    );
    assert!(inst.cli("module load res_secure_pay.so").contains("Loaded"));
    assert!(inst.is_running());
}
