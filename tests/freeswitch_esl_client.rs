//! An agent desktop built on the ESL client FreeSWITCH users already use (npm `modesl`, pinned
//! by tests/freeswitch_support/package-lock.json): it subscribes to every CUSTOM secure_pay::*
//! subclass as plain events and drives `uuid_secure_pay` over `bgapi`. The headers it parses
//! are checked against docs/capture.md "Events and headers" (each `SecurePay-*` header documented for
//! its event, masked values, `Unique-ID` of the customer channel).
//! Needs FreeSWITCH at $FREESWITCH_PREFIX (default /opt/freeswitch), else SKIPPED.
#![cfg(feature = "freeswitch")]

mod freeswitch_support;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use freeswitch_support::*;

const PAN: &str = "4111111111111111";
const EXPIRY: &str = "1230";
const CVV: &str = "123";

/// docs/capture.md "Events and headers": event name -> the `SecurePay-*` headers documented for it.
fn documented() -> HashMap<String, BTreeSet<String>> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/capture.md"))
        .expect("docs/capture.md");
    let section = readme
        .split("\n## Events and headers")
        .nth(1)
        .expect("docs/capture.md has 'Events and headers'");
    let mut map = HashMap::new();
    for line in section.lines().take_while(|l| !l.starts_with("## ")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // | `name` | when | headers |
        if cells.len() != 5 {
            continue;
        }
        let Some(name) = cells[1].strip_prefix('`').and_then(|c| c.strip_suffix('`')) else {
            continue;
        };
        if name.starts_with("SecurePay-") {
            continue; // the header-meaning table
        }
        let headers = cells[3]
            .split('`')
            .filter(|w| w.starts_with("SecurePay-"))
            .map(str::to_string)
            .collect();
        map.insert(name.to_string(), headers);
    }
    map
}

/// The `SecurePay-*` headers of `ev` that docs/capture.md does not document for its event.
fn undocumented(
    doc: &HashMap<String, BTreeSet<String>>,
    ev: &serde_json::Map<String, serde_json::Value>,
) -> Vec<String> {
    let name = ev["Event-Subclass"]
        .as_str()
        .and_then(|s| s.strip_prefix("secure_pay::"))
        .unwrap_or("?");
    let Some(allowed) = doc.get(name) else {
        return vec![format!("event {name} is not documented")];
    };
    ev.keys()
        .filter(|k| k.starts_with("SecurePay-") && !allowed.contains(*k))
        .map(|k| format!("{name}: {k}"))
        .collect()
}

#[test]
fn modesl_agent_drives_bgapi_and_parses_the_documented_headers() {
    let doc = documented();
    // one row per Event::name() (src/core/events.rs), `recording` included
    assert_eq!(
        doc.len(),
        11,
        "docs/capture.md event table not parsed: {doc:?}"
    );
    assert!(doc["digit"].contains("SecurePay-Masked"));
    assert!(doc["recording"].contains("SecurePay-Recording-Action"));
    // Control: the check rejects a header docs/capture.md does not list.
    let mut fake = serde_json::Map::new();
    fake.insert("Event-Subclass".into(), "secure_pay::start".into());
    fake.insert("SecurePay-Card-Number".into(), "4111".into());
    assert_eq!(undocumented(&doc, &fake).len(), 1);

    let Some(prefix) = prefix() else { return };
    let fs = FreeSwitch::start(&prefix, &Options::default());
    let mut agent = EslAgent::start(&fs);
    let mut esl = fs.esl();
    let (cust_a, cust) = originate_customer(&mut esl, "cust1");
    std::thread::sleep(Duration::from_millis(400));

    // Hostile input over bgapi: answered -ERR, no event.
    let r = agent.bgapi(&format!("uuid_secure_pay {cust} frobnicate"));
    assert!(r.starts_with("-ERR"), "{r}");
    let r = agent.bgapi("uuid_secure_pay 00000000-0000-0000-0000-000000000000 start");
    assert!(r.starts_with("-ERR no such channel"), "{r}");

    let r = agent.bgapi(&format!("uuid_secure_pay {cust} start"));
    assert_eq!(r.trim(), "+OK secure mode on");
    let sub = |s: &'static str| {
        move |v: &serde_json::Value| v["event"]["Event-Subclass"] == format!("secure_pay::{s}")
    };
    keyed_with_one_retry(
        &mut esl,
        &cust,
        &mut |esl| {
            key_card_in_band(esl, &cust_a, &cust, PAN);
            send_keys(esl, &cust_a, &format!("{EXPIRY}{CVV}"), 300);
        },
        &mut |_| agent.wait_for(Duration::from_secs(5), sub("complete")),
    )
    .expect("complete event over modesl");
    let status = agent.bgapi(&format!("uuid_secure_pay {cust} status"));
    assert!(status.starts_with("+OK active"), "{status}");
    assert!(status.contains("SecurePay-State: complete"), "{status}");
    let r = agent.bgapi(&format!("uuid_secure_pay {cust} stop"));
    assert_eq!(r.trim(), "+OK secure mode off");
    agent
        .wait_for(Duration::from_secs(5), sub("stop"))
        .expect("stop event over modesl");

    let events = agent.events();
    let names: Vec<&str> = events
        .iter()
        .filter_map(|e| e["Event-Subclass"].as_str())
        .collect();
    for want in [
        "start", "capture", "digit", "field", "complete", "status", "stop",
    ] {
        assert!(
            names.contains(&format!("secure_pay::{want}").as_str()),
            "modesl did not receive {want}: {names:?}"
        );
    }
    let mut bad = Vec::new();
    for e in &events {
        assert_eq!(e["Event-Name"], "CUSTOM");
        assert_eq!(e["Unique-ID"], cust.as_str(), "event of another channel");
        bad.extend(undocumented(&doc, e));
        for (k, v) in e {
            let v = v.as_str().unwrap_or("");
            assert!(!v.contains(PAN), "{k} carries the card number");
        }
    }
    assert!(
        bad.is_empty(),
        "headers not documented in docs/capture.md: {bad:?}"
    );

    let get = |name: &str, h: &str| -> Vec<String> {
        events
            .iter()
            .filter(|e| e["Event-Subclass"] == format!("secure_pay::{name}"))
            .filter_map(|e| e.get(h).and_then(|v| v.as_str()).map(str::to_string))
            .collect()
    };
    // Values as documented, url-decoded by modesl's plain-event parser.
    assert_eq!(
        get("start", "SecurePay-Required"),
        ["payment-card-number,expiration-date,security-code"]
    );
    assert_eq!(get("start", "SecurePay-Connector"), ["none"]);
    let masked = get("digit", "SecurePay-Masked");
    assert!(
        masked.len() >= 16,
        "one digit event per card key: {masked:?}"
    );
    assert!(
        masked
            .iter()
            .all(|m| !m.is_empty() && m.chars().all(|c| c == '*')),
        "digit events show only '*': {masked:?}"
    );
    assert_eq!(get("digit", "SecurePay-Partial")[0], "true");
    assert!(get("field", "SecurePay-Partial")
        .iter()
        .all(|p| p == "false"));
    assert_eq!(
        get("complete", "SecurePay-Card-Number"),
        ["************1111"]
    );
    assert_eq!(get("complete", "SecurePay-Card-Brand"), ["visa"]);
    assert_eq!(get("status", "SecurePay-State"), ["complete"]);
    assert_eq!(get("stop", "SecurePay-Reason"), ["agent"]);
    // The channel variables ride along as variable_* headers (masked too).
    let v: Vec<String> = get("complete", "variable_secure_pay_card_number");
    assert_eq!(v, ["************1111"]);
    // The per-key events (digit, capture, field) only name the channel, with the same values
    // as the state events' basic headers (docs/performance.md): no caller profiles, no
    // variable_* copy. The state events (start, complete, stop) keep both.
    let state_name = get("start", "Channel-Name");
    let state_call = get("start", "Channel-Call-UUID");
    assert_eq!(state_name.len(), 1, "start: Channel-Name");
    assert_eq!(state_call.len(), 1, "start: Channel-Call-UUID");
    for name in ["digit", "capture", "field"] {
        let n = events
            .iter()
            .filter(|e| e["Event-Subclass"] == format!("secure_pay::{name}"))
            .count();
        assert!(n > 0, "no {name} event");
        assert_eq!(
            get(name, "Channel-Name"),
            vec![state_name[0].clone(); n],
            "{name}: Channel-Name"
        );
        assert_eq!(
            get(name, "Channel-Call-UUID"),
            vec![state_call[0].clone(); n],
            "{name}: Channel-Call-UUID"
        );
        assert!(
            get(name, "Caller-Unique-ID").is_empty(),
            "{name}: carries the caller profile"
        );
        assert!(
            get(name, "variable_secure_pay_result").is_empty(),
            "{name}: carries the variable dump"
        );
    }
    for name in ["start", "complete", "stop"] {
        assert!(
            !get(name, "variable_secure_pay_result").is_empty(),
            "{name}: the state events keep the variables"
        );
        assert!(
            !get(name, "Caller-Unique-ID").is_empty(),
            "{name}: the state events keep the caller profile"
        );
    }
    let _ = esl.api(&format!("uuid_kill {cust_a}"));
}
