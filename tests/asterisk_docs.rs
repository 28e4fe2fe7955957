//! res_secure_pay the Asterisk-native way (issue #13), on a REAL Asterisk 22:
//! - the module's XML documentation (dialplan/asterisk/secure_pay-en_US.xml, installed where
//!   Asterisk loads third-party docs: <astdatadir>/documentation/thirdparty/) is what
//!   `core show application`, `manager show command` and `manager show event` print;
//! - `Command: status` is an AMI list response: two requests with different ActionIDs on one
//!   connection get two matched lists (EventList start, SecurePayStatus, SecurePayStatusComplete);
//! - SecurePay* events carry the standard channel snapshot headers.
#![cfg(feature = "asterisk")]

mod asterisk;

use std::time::Duration;

use asterisk::{phone_dialplan, Call, Instance, BASE_MODULES, WAIT};

#[test]
fn xml_docs_are_shown_by_the_cli() {
    let inst = Instance::start("docs", &phone_dialplan(), &[], BASE_MODULES);
    let app = inst.cli("core show application SecurePay");
    for want in [
        "Start secure card capture (DTMF masking) on this channel.",
        "SECUREPAY_STATUS",
        "SECUREPAY_ERROR",
        "lookahead_ms",
        "anchored in",
    ] {
        assert!(
            app.contains(want),
            "core show application SecurePay: no {want:?}: {app}"
        );
    }
    let stop = inst.cli("core show application StopSecurePay");
    assert!(stop.contains("NOTACTIVE"), "{stop}");
    let cmd = inst.cli("manager show command SecurePay");
    for want in [
        "Drive secure card capture",
        "Channel",
        "Command",
        "Options",
        "Field",
        "ActionID",
        "No such channel",
    ] {
        assert!(
            cmd.contains(want),
            "manager show command SecurePay: no {want:?}: {cmd}"
        );
    }
    for (ev, header) in [
        ("SecurePayStart", "SecurePay-Required"),
        ("SecurePayCapture", "SecurePay-Max-Attempts"),
        ("SecurePayDigit", "SecurePay-Masked"),
        ("SecurePayField", "SecurePay-Result"),
        ("SecurePayComplete", "SecurePay-Card-Number"),
        ("SecurePaySubmit", "SecurePay-Charge-Id"),
        ("SecurePayCancel", "Linkedid"),
        ("SecurePayStop", "SecurePay-Reason"),
        ("SecurePayError", "media-bypass"),
        ("SecurePayError", "framehook-order"),
        ("SecurePayRecording", "SecurePay-Recording-Action"),
        ("SecurePayStatus", "SecurePay-State"),
        ("SecurePayStatusComplete", "ListItems"),
    ] {
        let out = inst.cli(&format!("manager show event {ev}"));
        assert!(
            out.contains(header),
            "manager show event {ev}: no {header:?}: {out}"
        );
    }
    // control: an event the module does not document is unknown to the same command
    let none = inst.cli("manager show event SecurePayNoSuchEvent");
    assert!(!none.contains("SecurePay-"), "{none}");
}

#[test]
fn status_is_a_list_response_matched_by_action_id_and_events_carry_snapshot_headers() {
    let inst = Instance::start("status", &phone_dialplan(), &[], BASE_MODULES);
    let mut ami = inst.ami();
    let c = Call::originate(&mut ami, "st1", &[]);
    // not active: a plain error, no list
    let r = c.securepay(&mut ami, &[("Command", "status")]);
    assert_eq!(r.get("Response"), Some("Error"), "{}", r.text());
    let r = c.securepay(&mut ami, &[("Command", "start")]);
    assert_eq!(r.get("Response"), Some("Success"), "{}", r.text());
    let start = ami
        .wait_event(WAIT, "SecurePayStart", &[("Channel", &c.customer)])
        .expect("SecurePayStart");
    for h in [
        "ChannelState",
        "ChannelStateDesc",
        "CallerIDNum",
        "ConnectedLineNum",
        "AccountCode",
        "Context",
        "Exten",
        "Priority",
        "Uniqueid",
        "Linkedid",
    ] {
        assert!(
            start.get(h).is_some(),
            "SecurePayStart without {h}: {}",
            start.text()
        );
    }
    assert_eq!(start.get("Context"), Some("sp"), "{}", start.text());

    // two requests back to back on one connection, different ActionIDs
    let req = [
        ("Action", "SecurePay"),
        ("Channel", c.customer.as_str()),
        ("Command", "status"),
    ];
    ami.send_with_id(&req, "list-a");
    ami.send_with_id(&req, "list-b");
    for id in ["list-a", "list-b"] {
        let resp = ami
            .wait_for(WAIT, |m| {
                m.get("ActionID") == Some(id) && m.get("Response").is_some()
            })
            .unwrap_or_else(|| panic!("no response for {id}"));
        assert_eq!(resp.get("Response"), Some("Success"), "{}", resp.text());
        assert_eq!(resp.get("EventList"), Some("start"), "{}", resp.text());
        let item = ami
            .wait_event(WAIT, "SecurePayStatus", &[("ActionID", id)])
            .unwrap_or_else(|| panic!("no SecurePayStatus for {id}"));
        assert_eq!(item.get("Channel"), Some(c.customer.as_str()));
        assert!(item.get("SecurePay-State").is_some(), "{}", item.text());
        assert!(item.get("CallerIDNum").is_some(), "{}", item.text());
        let done = ami
            .wait_event(WAIT, "SecurePayStatusComplete", &[("ActionID", id)])
            .unwrap_or_else(|| panic!("no SecurePayStatusComplete for {id}"));
        assert_eq!(done.get("EventList"), Some("Complete"), "{}", done.text());
        assert_eq!(done.get("ListItems"), Some("1"), "{}", done.text());
    }
    std::thread::sleep(Duration::from_millis(300));
    // exactly one item per request, and no unsolicited status broadcast
    let items = ami.events("SecurePayStatus");
    assert_eq!(items.len(), 2, "{items:?}");
    assert!(items.iter().all(|m| m.get("ActionID").is_some()));
}

/// The shipped manager.conf snippet works as a user copies it: the agent desktop user can
/// drive SecurePay, gets the SecurePay* events, and the agent service's resync action
/// (CoreShowChannels) is allowed. Control: the same user with `write = call` only (the old
/// snippet) is refused CoreShowChannels, so the check can fail.
#[test]
fn shipped_manager_snippet_allows_what_the_agent_service_sends() {
    let inst = Instance::start("mgr", &phone_dialplan(), &[], BASE_MODULES);
    let snippet =
        std::fs::read_to_string(asterisk::repo().join("dialplan/asterisk/manager.conf.snippet"))
            .unwrap();
    let conf = inst.dir.join("etc/manager.conf");
    let base = std::fs::read_to_string(&conf).unwrap();
    let narrow = snippet
        .replace("[agent-desktop]", "[narrow-desktop]")
        .replace("write = call,reporting", "write = call");
    assert_ne!(
        narrow,
        snippet.replace("[agent-desktop]", "[narrow-desktop]")
    );
    std::fs::write(&conf, format!("{base}\n{snippet}\n{narrow}\n")).unwrap();
    let out = inst.cli("manager reload");
    assert!(!out.to_ascii_lowercase().contains("error"), "{out}");
    let mut test = inst.ami();
    let c = Call::originate(&mut test, "mg1", &[]);

    let mut ami = asterisk::Ami::connect_as(inst.ami_port, "agent-desktop", "change-me");
    let r = ami.action(&[("Action", "CoreShowChannels")]);
    assert_eq!(r.get("Response"), Some("Success"), "{}", r.text());
    let done = ami
        .wait_event(WAIT, "CoreShowChannelsComplete", &[])
        .expect("CoreShowChannelsComplete");
    assert_ne!(done.get("ListItems"), Some("0"), "{}", done.text());
    let r = c.securepay(&mut ami, &[("Command", "start")]);
    assert_eq!(r.get("Response"), Some("Success"), "{}", r.text());
    ami.wait_event(WAIT, "SecurePayStart", &[("Channel", &c.customer)])
        .expect("the desktop user receives SecurePay* events");
    let r = c.securepay(&mut ami, &[("Command", "status")]);
    assert_eq!(r.get("Response"), Some("Success"), "{}", r.text());
    let r = c.securepay(&mut ami, &[("Command", "stop")]);
    assert_eq!(r.get("Response"), Some("Success"), "{}", r.text());

    // control: write = call only is refused the resync
    let mut narrow = asterisk::Ami::connect_as(inst.ami_port, "narrow-desktop", "change-me");
    let r = narrow.action(&[("Action", "CoreShowChannels")]);
    assert_eq!(r.get("Response"), Some("Error"), "{}", r.text());
}

/// The shipped extensions.conf loads as is: every context is there and the applications and
/// function it uses are registered (a misspelt one would show as an unknown application).
#[test]
fn shipped_extensions_conf_loads() {
    let ext = std::fs::read_to_string(asterisk::repo().join("dialplan/asterisk/extensions.conf"))
        .unwrap();
    let inst = Instance::start("extconf", &ext, &[], BASE_MODULES);
    for ctx in ["from-trunk", "pay-ivr", "pay-ivr-wait", "pay-ari"] {
        let out = inst.cli(&format!("dialplan show {ctx}"));
        assert!(
            out.contains(&format!("'{ctx}'")) && !out.contains("There is no existence"),
            "context {ctx}: {out}"
        );
    }
    let out = inst.cli("dialplan show pay-ivr-wait");
    assert!(
        out.contains("SecurePay(") && out.contains(",wait)"),
        "{out}"
    );
    let apps = inst.cli("core show applications like SecurePay");
    assert!(apps.contains("StopSecurePay"), "{apps}");
    let funcs = inst.cli("core show function SECURE_PAY");
    assert!(funcs.contains("ARI"), "{funcs}");
}
