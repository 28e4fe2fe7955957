//! mod_secure_pay's API, apps, config reload and lifecycle on a real FreeSWITCH: every verb with
//! missing or bad arguments, unknown uuid, stop without start, start twice, hangup mid-entry,
//! refusal when media is not in FreeSWITCH (fail closed, with an error event), the dialplan apps,
//! `reloadxml` + `reload mod_secure_pay`, and unload during a session.
//! Needs FreeSWITCH at $FREESWITCH_PREFIX (default /opt/freeswitch), else SKIPPED.
#![cfg(feature = "freeswitch")]

mod freeswitch_support;

use std::time::{Duration, Instant};

use freeswitch_support::*;

fn custom(ev: &mut Esl, sub: &str, uuid: &str, within: Duration) -> Option<EslEvent> {
    let deadline = Instant::now() + within;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let e = ev.next_event(left)?;
        if e.get("Event-Subclass") == Some(&format!("secure_pay::{sub}"))
            && e.get("Unique-ID") == Some(uuid)
        {
            return Some(e);
        }
    }
    None
}

fn assert_err(r: &str, what: &str) {
    assert!(r.starts_with("-ERR"), "{what}: expected -ERR, got {r:?}");
}

#[test]
fn api_bad_input_lifecycle_apps_and_reload() {
    let Some(prefix) = prefix() else { return };
    let fs = FreeSwitch::start(
        &prefix,
        &Options {
            extra_dialplan: r#"
      <extension name="norfc">
        <condition field="destination_number" expression="^passthru$">
          <action application="set" data="pass_rfc2833=true"/>
          <action application="answer"/>
          <action application="park"/>
        </condition>
      </extension>
      <extension name="appstop">
        <condition field="destination_number" expression="^appstop$">
          <action application="answer"/>
          <action application="secure_pay" data="fields=payment-card-number"/>
          <action application="sleep" data="1500"/>
          <action application="stop_secure_pay"/>
          <action application="park"/>
        </condition>
      </extension>"#
                .to_string(),
            ..Options::default()
        },
    );
    let mut esl = fs.esl();
    let mut ev = fs.esl();
    ev.subscribe("plain CUSTOM secure_pay::start secure_pay::stop secure_pay::error secure_pay::cancel secure_pay::capture");

    // ---- Usage and argument errors (no call needed).
    let usage = esl.api("uuid_secure_pay");
    assert_err(&usage, "no arguments");
    assert!(
        usage.contains("usage: uuid_secure_pay <uuid>"),
        "usage text: {usage}"
    );
    assert_err(&esl.api("uuid_secure_pay 1234"), "uuid without verb");
    assert_err(&esl.api("uuid_secure_pay bad$uuid status"), "invalid uuid");
    let r = esl.api("uuid_secure_pay 00000000-0000-0000-0000-000000000000 status");
    assert!(r.starts_with("-ERR no such channel"), "unknown uuid: {r}");

    let (cust_a, cust) = originate_customer(&mut esl, "cust1");
    std::thread::sleep(Duration::from_millis(300));
    for (cmd, what) in [
        ("frobnicate", "unknown verb"),
        ("capture", "capture without a field"),
        ("capture favourite-colour", "capture an unknown field"),
        ("clear now", "clear with an argument"),
        ("status please", "status with an argument"),
        ("stop", "stop without start"),
        ("clear", "clear without start"),
        ("restart", "restart without start"),
        ("submit", "submit without start"),
        ("cancel", "cancel without start"),
        ("capture expiration-date", "capture without start"),
        ("start mode=loud", "start with a bad option value"),
        ("start nosuchkey=1", "start with an unknown option"),
    ] {
        let r = esl.api(&format!("uuid_secure_pay {cust} {cmd}"));
        assert_err(&r, what);
    }
    let r = esl.api(&format!("uuid_secure_pay {cust} start mode=loud"));
    assert!(r.contains("mode"), "bad option error names the key: {r}");
    assert_eq!(
        esl.api(&format!("uuid_secure_pay {cust} status")).trim(),
        "+OK inactive"
    );

    // ---- Start, start twice, agent commands.
    let r = esl.api(&format!(
        "uuid_secure_pay {cust} start fields=payment-card-number,security-code"
    ));
    assert!(r.starts_with("+OK"), "start: {r}");
    let st = custom(&mut ev, "start", &cust, Duration::from_secs(3)).expect("start event");
    assert_eq!(
        st.get("SecurePay-Required"),
        Some("payment-card-number,security-code")
    );
    assert_err(
        &esl.api(&format!("uuid_secure_pay {cust} start")),
        "start twice",
    );
    assert_err(
        &esl.api(&format!("uuid_secure_pay {cust} submit")),
        "submit before complete",
    );
    let r = esl.api(&format!("uuid_secure_pay {cust} capture security-code"));
    assert!(r.starts_with("+OK"), "capture: {r}");
    // The first capture event is the automatic one at start; then the agent's.
    let first = custom(&mut ev, "capture", &cust, Duration::from_secs(3)).expect("capture event");
    assert_eq!(first.get("SecurePay-Field"), Some("payment-card-number"));
    let cap = custom(&mut ev, "capture", &cust, Duration::from_secs(3)).expect("capture event");
    assert_eq!(cap.get("SecurePay-Field"), Some("security-code"));
    let r = esl.api(&format!("uuid_secure_pay {cust} restart"));
    assert!(r.starts_with("+OK"), "restart: {r}");
    let s = esl.api(&format!("uuid_secure_pay {cust} status"));
    assert!(
        s.starts_with("+OK active") && s.contains("SecurePay-Field: payment-card-number"),
        "{s}"
    );
    let r = esl.api(&format!("uuid_secure_pay {cust} cancel"));
    assert!(r.starts_with("+OK"), "cancel: {r}");
    assert!(
        custom(&mut ev, "cancel", &cust, Duration::from_secs(3)).is_some(),
        "cancel event"
    );
    // Cancel finishes the session: secure mode is off again.
    let deadline = Instant::now() + Duration::from_secs(3);
    while esl.api(&format!("uuid_secure_pay {cust} status")).trim() != "+OK inactive" {
        assert!(
            Instant::now() < deadline,
            "secure mode still on after cancel"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // ---- Transfer keeps secure mode (the media bug stays with the session).
    let r = esl.api(&format!("uuid_secure_pay {cust} start"));
    assert!(r.starts_with("+OK"), "start before transfer: {r}");
    let _ = custom(&mut ev, "start", &cust, Duration::from_secs(3)).expect("start event");
    let r = esl.api(&format!("uuid_transfer {cust} park XML sp"));
    assert!(r.starts_with("+OK"), "transfer: {r}");
    std::thread::sleep(Duration::from_millis(800));
    let s = esl.api(&format!("uuid_secure_pay {cust} status"));
    assert!(
        s.starts_with("+OK active"),
        "secure mode survives a transfer: {s}"
    );
    let r = esl.api(&format!("uuid_secure_pay {cust} stop"));
    assert!(r.starts_with("+OK"), "stop after transfer: {r}");
    let stop = custom(&mut ev, "stop", &cust, Duration::from_secs(3)).expect("stop event");
    assert_eq!(stop.get("SecurePay-Reason"), Some("agent"));

    // ---- Media leaving FreeSWITCH during secure mode raises an error event.
    let r = esl.api(&format!("uuid_secure_pay {cust} start"));
    assert!(r.starts_with("+OK"), "start: {r}");
    let _ = custom(&mut ev, "start", &cust, Duration::from_secs(3)).expect("start event");
    let _ = esl.api(&format!("uuid_setvar {cust} pass_rfc2833 true"));
    let err = custom(&mut ev, "error", &cust, Duration::from_secs(4)).expect("mid-call error");
    assert_eq!(err.get("SecurePay-Error-Code"), Some("media-not-in-core"));
    let _ = esl.api(&format!("uuid_setvar {cust} pass_rfc2833 false"));
    let r = esl.api(&format!("uuid_secure_pay {cust} stop"));
    assert!(r.starts_with("+OK"), "stop: {r}");
    let _ = custom(&mut ev, "stop", &cust, Duration::from_secs(3)).expect("stop event");

    // ---- Hangup mid-entry: clean stop with reason hangup, FreeSWITCH keeps running.
    let r = esl.api(&format!("uuid_secure_pay {cust} start"));
    assert!(r.starts_with("+OK"), "start again: {r}");
    let _ = custom(&mut ev, "start", &cust, Duration::from_secs(3)).expect("start event");
    let _ = esl.api(&format!("uuid_send_dtmf {cust_a} 4111@100"));
    std::thread::sleep(Duration::from_millis(800));
    let _ = esl.api(&format!("uuid_kill {cust}"));
    let stop = custom(&mut ev, "stop", &cust, Duration::from_secs(5)).expect("stop at hangup");
    assert_eq!(stop.get("SecurePay-Reason"), Some("hangup"));
    assert!(
        esl.api("status").contains("UP"),
        "FreeSWITCH still up after hangup mid-entry"
    );
    let _ = esl.api(&format!("uuid_kill {cust_a}"));

    // ---- Fail closed: media not in FreeSWITCH (RFC 2833 pass-through) refuses secure mode.
    let (pa, pb) = originate_customer(&mut esl, "passthru");
    let r = esl.api(&format!("uuid_secure_pay {pb} start"));
    assert!(
        r.starts_with("-ERR media is not in FreeSWITCH"),
        "pass_rfc2833 refused: {r}"
    );
    let err = custom(&mut ev, "error", &pb, Duration::from_secs(3)).expect("error event");
    assert_eq!(err.get("SecurePay-Error-Code"), Some("media-not-in-core"));
    let _ = esl.api(&format!("uuid_kill {pa}"));

    // ---- Dialplan apps: secure_pay [options] ... stop_secure_pay.
    let (aa, ab) = originate_customer(&mut esl, "appstop");
    let st = custom(&mut ev, "start", &ab, Duration::from_secs(5)).expect("app start event");
    assert_eq!(st.get("SecurePay-Required"), Some("payment-card-number"));
    let stop = custom(&mut ev, "stop", &ab, Duration::from_secs(5)).expect("app stop event");
    assert_eq!(stop.get("SecurePay-Reason"), Some("dialplan"));
    let _ = esl.api(&format!("uuid_kill {aa}"));

    // ---- reloadxml + reload mod_secure_pay re-read secure_pay.conf.
    let conf = fs.dir.join("conf/freeswitch.xml");
    let text = std::fs::read_to_string(&conf).expect("conf");
    let text = text.replace(
        "<settings></settings>\n      <connectors>",
        "<settings><param name=\"fields\" value=\"payment-card-number,postal-code\"/>\
         </settings>\n      <connectors>",
    );
    assert!(
        text.contains("postal-code"),
        "test could not edit the config"
    );
    std::fs::write(&conf, text).expect("write conf");
    assert!(esl.api("reloadxml").starts_with("+OK"));
    let r = esl.api("reload mod_secure_pay");
    assert!(r.starts_with("+OK"), "reload: {r}");
    let (ra, rb) = originate_customer(&mut esl, "cust2");
    let r = esl.api(&format!("uuid_secure_pay {rb} start"));
    assert!(r.starts_with("+OK"), "start after reload: {r}");
    let st = custom(&mut ev, "start", &rb, Duration::from_secs(3)).expect("start after reload");
    assert_eq!(
        st.get("SecurePay-Required"),
        Some("payment-card-number,postal-code")
    );

    // ---- Unload during a session: refused (fail closed, the session stays secure); after
    // stop the module unloads and is reloadable (tests/freeswitch_race.rs judges the audio).
    let r = esl.api("unload mod_secure_pay");
    assert!(
        r.starts_with("-ERR"),
        "unload during a session must be refused: {r}"
    );
    assert_eq!(esl.api("module_exists mod_secure_pay").trim(), "true");
    let st = esl.api(&format!("uuid_secure_pay {rb} status"));
    assert!(st.starts_with("+OK active"), "still secure: {st}");
    let r = esl.api(&format!("uuid_secure_pay {rb} stop"));
    assert!(r.starts_with("+OK"), "stop: {r}");
    let stop = custom(&mut ev, "stop", &rb, Duration::from_secs(5)).expect("stop event");
    assert_eq!(stop.get("SecurePay-Reason"), Some("agent"));
    let r = esl.api("unload mod_secure_pay");
    assert!(r.starts_with("+OK"), "unload with no secure call: {r}");
    assert!(
        esl.api("status").contains("UP"),
        "FreeSWITCH still up after unload"
    );
    let module = fs.dir.join("mod/mod_secure_pay.so");
    let r = esl.api(&format!("load {}", module.display()));
    assert!(r.starts_with("+OK"), "load again: {r}");
    assert_eq!(
        esl.api(&format!("uuid_secure_pay {rb} status")).trim(),
        "+OK inactive"
    );
    let _ = esl.api(&format!("uuid_kill {ra}"));
}

/// The shipped example `dialplan/freeswitch/secure_pay.conf.xml` loads without a single bad key
/// and its settings apply (connector profile `acme`).
#[test]
fn shipped_example_config_loads_cleanly() {
    let Some(prefix) = prefix() else { return };
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("dialplan/freeswitch/secure_pay.conf.xml");
    let fs = FreeSwitch::start(
        &prefix,
        &Options {
            secure_pay_conf_file: Some(example),
            ..Options::default()
        },
    );
    let mut esl = fs.esl();
    let mut ev = fs.esl();
    ev.subscribe("plain CUSTOM secure_pay::start");
    let (a, b) = originate_customer(&mut esl, "cust1");
    let r = esl.api(&format!("uuid_secure_pay {b} start"));
    assert!(r.starts_with("+OK"), "start: {r}");
    let st = custom(&mut ev, "start", &b, Duration::from_secs(3)).expect("start event");
    assert_eq!(st.get("SecurePay-Connector"), Some("acme"));
    assert_eq!(
        st.get("SecurePay-Required"),
        Some("payment-card-number,expiration-date,security-code")
    );
    let _ = esl.api(&format!("uuid_kill {a}"));
    std::thread::sleep(Duration::from_millis(300));
    let log = fs.log_text();
    assert!(
        log.contains("mod_secure_pay loaded"),
        "module logged its load"
    );
    assert!(
        !log.contains("secure_pay config key"),
        "the example has a bad key"
    );
    assert!(
        !log.contains("secure_pay.conf not found"),
        "the example was not read"
    );
}
