//! FreeSWITCH admin conventions on a real FreeSWITCH: `reloadxml` re-reads secure_pay.conf for
//! NEW sessions only (a live session keeps its settings), a bad file (bad key or failed
//! cross-key check) keeps the previous settings and names the key; `secure_pay_list [json]` and
//! `uuid_secure_pay <uuid> status json`; fs_cli completion; the channel variables set after the
//! capture; the blocking `secure_pay_wait` app branching the dialplan.
//! Needs FreeSWITCH at $FREESWITCH_PREFIX (default /opt/freeswitch), else SKIPPED.
#![cfg(feature = "freeswitch")]

#[path = "connector_common/mod.rs"]
mod connector_common;
mod freeswitch_support;

use std::time::{Duration, Instant};

use connector_common::{http, Pki, TestServer, Versions};
use freeswitch_support::*;

const PAN: &str = "4111111111111111";
const EXPIRY: &str = "1230";
const CVV: &str = "123";

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

fn start_required(esl: &mut Esl, ev: &mut Esl, uuid: &str) -> String {
    let r = esl.api(&format!("uuid_secure_pay {uuid} start"));
    assert!(r.starts_with("+OK"), "start: {r}");
    custom(ev, "start", uuid, Duration::from_secs(3))
        .expect("start event")
        .get("SecurePay-Required")
        .unwrap_or("")
        .to_string()
}

/// Rewrites the `<settings>` of secure_pay.conf in the instance's freeswitch.xml.
fn set_settings(fs: &FreeSwitch, params: &[(&str, &str)]) {
    let conf = fs.dir.join("conf/freeswitch.xml");
    let text = std::fs::read_to_string(&conf).expect("conf");
    let (head, rest) = text
        .split_once("<configuration name=\"secure_pay.conf\"")
        .expect("secure_pay.conf section");
    let (_, tail) = rest.split_once("<connectors>").expect("connectors");
    let ps: String = params
        .iter()
        .map(|(k, v)| format!("<param name=\"{k}\" value=\"{v}\"/>"))
        .collect();
    let new = format!(
        "{head}<configuration name=\"secure_pay.conf\" description=\"secure_pay\">\n      \
         <settings>{ps}</settings>\n      <connectors>{tail}"
    );
    std::fs::write(&conf, new).expect("write conf");
}

fn wait_log(fs: &FreeSwitch, needle: &str, after: usize) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if fs
            .log_text()
            .get(after..)
            .is_some_and(|t| t.contains(needle))
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

#[test]
fn reloadxml_applies_to_new_sessions_only_and_a_bad_file_keeps_the_previous_settings() {
    let Some(prefix) = prefix() else { return };
    let fs = FreeSwitch::start(&prefix, &Options::default());
    let mut esl = fs.esl();
    let mut ev = fs.esl();
    ev.subscribe("plain CUSTOM secure_pay::start");
    const DEFAULT: &str = "payment-card-number,expiration-date,security-code";

    let (a1, live) = originate_customer(&mut esl, "cust1");
    assert_eq!(start_required(&mut esl, &mut ev, &live), DEFAULT);

    // A good change, reloadxml only (no module reload): applies to the next session.
    set_settings(&fs, &[("fields", "payment-card-number,postal-code")]);
    let mark = fs.log_text().len();
    assert!(esl.api("reloadxml").starts_with("+OK"));
    assert!(
        wait_log(&fs, "secure_pay.conf applied (reloadxml)", mark),
        "reloadxml did not re-read secure_pay.conf"
    );
    let (a2, new) = originate_customer(&mut esl, "cust2");
    assert_eq!(
        start_required(&mut esl, &mut ev, &new),
        "payment-card-number,postal-code",
        "a session started after reloadxml uses the new file"
    );
    // The live session keeps the settings it started with.
    let st = json(&esl.api(&format!("uuid_secure_pay {live} status json")));
    assert_eq!(st["active"], true, "{st}");
    assert_eq!(st["required"], DEFAULT, "live session changed: {st}");
    let r = esl.api(&format!("uuid_secure_pay {live} capture security-code"));
    assert!(r.starts_with("+OK"), "live session keeps its fields: {r}");

    // A bad value: the whole file is refused, the key is named, the previous settings stay.
    set_settings(&fs, &[("fields", "reference"), ("mode", "loud")]);
    let mark = fs.log_text().len();
    assert!(esl.api("reloadxml").starts_with("+OK"));
    assert!(
        wait_log(&fs, "secure_pay config key 'mode'", mark),
        "the bad key is not named in the log"
    );
    assert!(wait_log(&fs, "secure_pay.conf refused (reloadxml)", mark));
    let (a3, b3) = originate_customer(&mut esl, "cust3");
    assert_eq!(
        start_required(&mut esl, &mut ev, &b3),
        "payment-card-number,postal-code",
        "a bad file must keep the previous settings (not apply its good keys)"
    );

    // Keys fine one by one but failing the cross-key check: refused as a whole too.
    set_settings(
        &fs,
        &[
            ("fields", "reference"),
            ("postal_code_min_length", "9"),
            ("postal_code_max_length", "4"),
        ],
    );
    let mark = fs.log_text().len();
    assert!(esl.api("reloadxml").starts_with("+OK"));
    assert!(
        wait_log(&fs, "secure_pay config key 'postal_code_min_length'", mark),
        "the cross-key failure is not named"
    );
    let (a4, b4) = originate_customer(&mut esl, "cust4");
    assert_eq!(
        start_required(&mut esl, &mut ev, &b4),
        "payment-card-number,postal-code",
        "an invalid key combination must not be applied"
    );

    // Control: fixing the file applies again.
    set_settings(&fs, &[("fields", "reference")]);
    assert!(esl.api("reloadxml").starts_with("+OK"));
    std::thread::sleep(Duration::from_millis(800));
    let (a5, b5) = originate_customer(&mut esl, "cust5");
    assert_eq!(start_required(&mut esl, &mut ev, &b5), "reference");
    for a in [a1, a2, a3, a4, a5] {
        let _ = esl.api(&format!("uuid_kill {a}"));
    }
}

#[test]
fn list_status_completion_and_channel_variables_masked() {
    let Some(prefix) = prefix() else { return };
    let pki = Pki::new();
    let server = TestServer::start(
        &pki.server,
        None,
        Versions::Any,
        http(
            "200 OK",
            r#"{"charge_id":"ch_admin_7","error_code":null,"error_message":null}"#,
        ),
    );
    let kv = |k: &str, v: &str| (k.to_string(), v.to_string());
    let fs = FreeSwitch::start(
        &prefix,
        &Options {
            sql: true,
            secure_pay_settings: vec![kv("charge_amount", "500")],
            connectors: vec![(
                "acme".into(),
                vec![
                    kv("url", &format!("https://127.0.0.1:{}/pay", server.port)),
                    kv("ca_file", &pki.ca_file),
                ],
            )],
            ..Options::default()
        },
    );
    let mut esl = fs.esl();
    let mut ev = fs.esl();
    ev.subscribe("plain CUSTOM secure_pay::start secure_pay::complete secure_pay::submit");

    let empty = esl.api("secure_pay_list");
    assert!(empty.contains("0 total."), "{empty}");
    assert_eq!(json(&esl.api("secure_pay_list json"))["row_count"], 0);
    assert!(esl.api("secure_pay_list xml").starts_with("-ERR"));

    let (cust_a, cust) = originate_customer(&mut esl, "cust1");
    let (_other_a, other) = originate_customer(&mut esl, "cust2");
    let st = json(&esl.api(&format!("uuid_secure_pay {cust} status json")));
    assert_eq!(st["active"], false, "{st}");

    // fs_cli completion: sub-commands after a uuid, and the live uuids themselves. Both are read
    // from the core's database, which FreeSWITCH writes asynchronously (the module's completion
    // entries at load, the channels as they come): poll for up to 10 s each.
    let complete = |esl: &mut Esl, line: &str, want: &[&str]| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let c = esl.api(&format!("console_complete {line}"));
            if want.iter().all(|w| c.contains(w)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "completion of {line:?} lacks one of {want:?}: {c:?}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    };
    complete(
        &mut esl,
        &format!("uuid_secure_pay {cust} "),
        &["start", "capture", "submit", "cancel", "status"],
    );
    complete(
        &mut esl,
        &format!("uuid_secure_pay {cust} capture "),
        &["payment-card-number"],
    );
    complete(&mut esl, "uuid_secure_pay ", &[cust.as_str()]);

    let r = esl.api(&format!("uuid_secure_pay {cust} start"));
    assert!(r.starts_with("+OK"), "{r}");
    let _ = custom(&mut ev, "start", &cust, Duration::from_secs(3)).expect("start");
    assert_eq!(
        esl.api(&format!("uuid_getvar {cust} secure_pay_result"))
            .trim(),
        "active"
    );
    let plain = esl.api("secure_pay_list");
    assert!(
        plain.starts_with("uuid|state|field|"),
        "plain header row: {plain}"
    );
    assert!(
        plain.contains(&format!("{cust}|capturing|payment-card-number|0|")),
        "{plain}"
    );
    assert!(plain.contains("1 total."), "{plain}");
    assert!(!plain.contains(&other), "only secure channels are listed");

    let done = keyed_with_one_retry(
        &mut esl,
        &cust,
        &mut |esl| {
            key_card_in_band(esl, &cust_a, &cust, PAN);
            send_keys(esl, &cust_a, &format!("{EXPIRY}{CVV}"), 300);
        },
        &mut |_| custom(&mut ev, "complete", &cust, Duration::from_secs(15)),
    )
    .unwrap_or_else(|| {
        // masked status only: which field is where, lengths and attempts (to tell a lost or
        // merged in-band key from a late event)
        panic!(
            "no complete event; status: {}",
            esl.api(&format!("uuid_secure_pay {cust} status json"))
        )
    });
    assert_eq!(done.get("variable_secure_pay_result"), Some("complete"));

    let list = json(&esl.api("secure_pay_list json"));
    assert_eq!(list["row_count"], 1, "{list}");
    let row = &list["rows"][0];
    assert_eq!(row["uuid"], cust.as_str());
    assert_eq!(row["state"], "complete");
    assert_eq!(row["card_number"], "************1111");
    assert_eq!(row["card_brand"], "visa");
    let var = |esl: &mut Esl, k: &str| {
        esl.api(&format!("uuid_getvar {cust} {k}"))
            .trim()
            .to_string()
    };
    assert_eq!(var(&mut esl, "secure_pay_result"), "complete");
    assert_eq!(var(&mut esl, "secure_pay_card_number"), "************1111");
    assert_eq!(var(&mut esl, "secure_pay_card_brand"), "visa");
    assert_eq!(
        var(&mut esl, "secure_pay_captured"),
        "payment-card-number,expiration-date,security-code"
    );

    let r = esl.api(&format!("uuid_secure_pay {cust} submit"));
    assert!(r.starts_with("+OK"), "{r}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while var(&mut esl, "secure_pay_result") != "success" {
        assert!(Instant::now() < deadline, "no success variable");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(var(&mut esl, "secure_pay_charge_id"), "ch_admin_7");
    assert_eq!(server.received().len(), 1);
    assert_eq!(
        server.received()[0].body["cardnumber"],
        PAN,
        "control: the card was keyed"
    );

    // Nothing the module exposes carries the card: list, status, every channel variable.
    let dump = esl.api(&format!("uuid_dump {cust}"));
    assert!(
        dump.contains("secure_pay_charge_id"),
        "control: uuid_dump shows our variables"
    );
    for (what, text) in [
        ("uuid_dump", dump),
        ("secure_pay_list", esl.api("secure_pay_list")),
        ("secure_pay_list json", esl.api("secure_pay_list json")),
        (
            "status json",
            esl.api(&format!("uuid_secure_pay {cust} status json")),
        ),
    ] {
        assert!(!text.contains(PAN), "{what} carries the card number");
        assert!(
            !text.contains("411111"),
            "{what} carries the card's first digits"
        );
    }
    let r = esl.api(&format!("uuid_secure_pay {cust} stop"));
    assert!(r.starts_with("+OK"), "{r}");
    assert_eq!(
        var(&mut esl, "secure_pay_result"),
        "success",
        "stop keeps the outcome"
    );
    assert_eq!(var(&mut esl, "secure_pay_stop_reason"), "agent");
    assert!(esl.api("secure_pay_list").contains("0 total."));
    let _ = esl.api(&format!("uuid_kill {cust_a}"));
}

#[test]
fn secure_pay_wait_blocks_until_the_outcome_and_the_dialplan_branches() {
    let Some(prefix) = prefix() else { return };
    let pki = Pki::new();
    let server = TestServer::start(
        &pki.server,
        None,
        Versions::Any,
        http(
            "200 OK",
            r#"{"charge_id":"ch_ivr_1","error_code":null,"error_message":null}"#,
        ),
    );
    let kv = |k: &str, v: &str| (k.to_string(), v.to_string());
    let ext = |name: &str, data: &str| {
        format!(
            r#"<extension name="{name}">
        <condition field="destination_number" expression="^{name}$">
          <action application="answer"/>
          <action application="set" data="ivr_before=waiting"/>
          <action application="secure_pay_wait" data="{data}"/>
          <action application="set" data="ivr_after=${{secure_pay_result}}"/>
          <action application="transfer" data="branch_${{secure_pay_result}} XML sp"/>
        </condition>
      </extension>"#
        )
    };
    let branch = |r: &str| {
        format!(
            r#"<extension name="branch_{r}">
        <condition field="destination_number" expression="^branch_{r}$">
          <action application="set" data="ivr_branch={r}"/>
          <action application="park"/>
        </condition>
      </extension>"#
        )
    };
    let mut dialplan = ext("ivrpay", "submit");
    dialplan.push_str(&ext(
        "ivrgiveup",
        "fields=payment-card-number first_digit_timeout_ms=1000 max_attempts=1",
    ));
    dialplan.push_str(&ext("ivrcancel", ""));
    for r in ["success", "incomplete", "cancelled"] {
        dialplan.push_str(&branch(r));
    }
    let fs = FreeSwitch::start(
        &prefix,
        &Options {
            secure_pay_settings: vec![kv("charge_amount", "250")],
            connectors: vec![(
                "acme".into(),
                vec![
                    kv("url", &format!("https://127.0.0.1:{}/pay", server.port)),
                    kv("ca_file", &pki.ca_file),
                ],
            )],
            extra_dialplan: dialplan,
            ..Options::default()
        },
    );
    let mut esl = fs.esl();
    let var = |esl: &mut Esl, u: &str, k: &str| {
        esl.api(&format!("uuid_getvar {u} {k}")).trim().to_string()
    };

    // 1. The customer keys the card; the app submits and returns with the outcome.
    let (a, b) = originate_customer(&mut esl, "ivrpay");
    wait_var(&mut esl, &b, "ivr_before");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        var(&mut esl, &b, "ivr_after"),
        "_undef_",
        "secure_pay_wait returned before any key was pressed"
    );
    assert_eq!(json(&esl.api("secure_pay_list json"))["row_count"], 1);
    key_card_in_band(&mut esl, &a, &b, PAN);
    send_keys(&mut esl, &a, &format!("{EXPIRY}{CVV}"), 300);
    println!(
        "after keys: {}",
        esl.api(&format!("uuid_secure_pay {b} status json"))
    );
    assert_eq!(wait_var(&mut esl, &b, "ivr_branch"), "success");
    assert_eq!(var(&mut esl, &b, "secure_pay_charge_id"), "ch_ivr_1");
    assert_eq!(
        var(&mut esl, &b, "secure_pay_card_number"),
        "************1111"
    );
    assert_eq!(server.received()[0].body["cardnumber"], PAN);
    assert_eq!(
        json(&esl.api("secure_pay_list json"))["row_count"],
        0,
        "secure mode ends after the outcome"
    );
    let _ = esl.api(&format!("uuid_kill {a}"));

    // 2. Nobody keys anything: the field is given up, the app returns `incomplete`.
    let (a, b) = originate_customer(&mut esl, "ivrgiveup");
    assert_eq!(wait_var(&mut esl, &b, "ivr_branch"), "incomplete");
    assert_eq!(json(&esl.api("secure_pay_list json"))["row_count"], 0);
    let _ = esl.api(&format!("uuid_kill {a}"));

    // 3. An agent (or a supervisor script) cancels: the app returns `cancelled`.
    let (a, b) = originate_customer(&mut esl, "ivrcancel");
    wait_var(&mut esl, &b, "ivr_before");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(var(&mut esl, &b, "ivr_after"), "_undef_");
    let r = esl.api(&format!("uuid_secure_pay {b} cancel"));
    assert!(r.starts_with("+OK"), "{r}");
    assert_eq!(wait_var(&mut esl, &b, "ivr_branch"), "cancelled");
    let _ = esl.api(&format!("uuid_kill {a}"));
    assert_eq!(server.received().len(), 1, "only the first call submitted");
}
