//! The agent page service against a fake AMI server on 127.0.0.1 (tests/agent_support):
//! state tracking from the module's real events, full snapshot on (re)connect, signed links
//! (accept; refuse unsigned, expired, tampered), CSRF refusals, unknown call page, AMI
//! reconnection after the PBX restarts, and that the page never carries more than the events.

mod agent_support;

use std::time::Duration;

use agent_support::{http, FakePbx, Sse, AMI_SECRET, AMI_USER, LINK_SECRET};
use secure_pay::agent::ami::AmiConfig;
use secure_pay::agent::sign::Signer;
use secure_pay::agent::{unix_now, Config, Service};
use secure_pay::core::payment::PaymentOutcome;
use serde_json::Value;

const T: Duration = Duration::from_secs(10);
const CARD: &str = "4242424242424242#"; // `#` ends a variable-length card number
const CHAN: &str = "PJSIP/customer-00000001";
const UID: &str = "1700000000.1";

fn service(pbx: &FakePbx) -> Service {
    let mut ami = AmiConfig::new(&pbx.addr(), AMI_USER, AMI_SECRET);
    ami.backoff_min = Duration::from_millis(100);
    ami.backoff_max = Duration::from_millis(400);
    let mut cfg = Config::new(ami, Signer::new(LINK_SECRET).unwrap());
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.frame_ancestors = "https://desktop.example.test".into();
    cfg.start_options = "fields=payment-card-number,expiration-date,security-code".into();
    Service::start(cfg).unwrap()
}

fn signer() -> Signer {
    Signer::new(LINK_SECRET).unwrap()
}

fn link(uid: &str) -> String {
    signer().link(uid, unix_now() + 600)
}

fn events_path(uid: &str) -> String {
    link(uid).replacen(&format!("/call/{uid}?"), &format!("/call/{uid}/events?"), 1)
}

fn action_path(uid: &str) -> String {
    link(uid).replacen(&format!("/call/{uid}?"), &format!("/call/{uid}/action?"), 1)
}

fn token(uid: &str, path: &str) -> String {
    let exp: u64 = path
        .split("exp=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    signer().csrf_token(uid, exp)
}

/// POSTs a command like the page does (same origin, token).
fn command(svc: &Service, uid: &str, body: &str) -> (u16, String) {
    let p = action_path(uid);
    let origin = format!("http://{}", svc.addr());
    let tok = token(uid, &p);
    let r = http(
        svc.addr(),
        "POST",
        &p,
        &[
            ("Origin", &origin),
            ("X-SecurePay-Token", &tok),
            ("Content-Type", "application/json"),
            ("Sec-Fetch-Site", "same-origin"),
        ],
        body,
    );
    (r.status, r.body)
}

fn field<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["call"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("no field {name} in {v}"))
}

/// `field(v, name)[key]` or null when the field is not there (yet).
fn fv(v: &Value, name: &str, key: &str) -> Value {
    v["call"]["fields"]
        .as_array()
        .and_then(|a| a.iter().find(|f| f["name"] == name))
        .map(|f| f[key].clone())
        .unwrap_or(Value::Null)
}

/// Non-status `SecurePay` commands the PBX received.
fn commands(pbx: &FakePbx) -> Vec<(String, String, String)> {
    pbx.secure_pay_actions()
        .into_iter()
        .filter(|a| a.1 != "status")
        .collect()
}

fn connected(pbx: &FakePbx, svc: &Service) {
    assert!(pbx.wait_logins(1, T), "service never logged in");
    assert!(agent_support::wait_until(T, || svc.hub().pbx().connected));
}

#[test]
fn tracks_a_payment_from_start_to_success_with_masked_data_only() {
    let pbx = FakePbx::start(0);
    pbx.add_channel_silently(CHAN, UID);
    let svc = service(&pbx);
    connected(&pbx, &svc);
    // the channel is known from CoreShowChannels after login
    assert!(agent_support::wait_until(T, || svc.hub().knows(UID)));

    let mut sse = Sse::open(svc.addr(), &events_path(UID));
    assert_eq!(sse.status, 200);
    let s = sse.next_snapshot();
    assert_eq!(s["call"]["mode"], "off");
    assert_eq!(s["pbx"]["connected"], true);
    assert_eq!(s["call"]["channel"], CHAN);

    let (st, body) = command(&svc, UID, r#"{"command":"start"}"#);
    assert_eq!(st, 200, "{body}");
    let s = sse.until(T, |v| fv(v, "payment-card-number", "status") == "capturing");
    assert_eq!(s["call"]["mode"], "secure");
    assert_eq!(field(&s, "payment-card-number")["status"], "capturing");
    assert_eq!(field(&s, "expiration-date")["status"], "pending");
    // the start options are the operator's, sent with the action
    let acts = pbx.secure_pay_actions();
    assert!(
        acts.contains(&(CHAN.into(), "start".into(), "".into())),
        "{acts:?}"
    );
    let start = pbx
        .actions()
        .into_iter()
        .find(|m| m.get("Command") == Some("start"))
        .unwrap();
    assert_eq!(
        start.get("Options"),
        Some("fields=payment-card-number,expiration-date,security-code")
    );

    // masked progress and brand while keying
    pbx.key(UID, "424242");
    let s = sse.until(T, |v| fv(v, "payment-card-number", "length") == 6);
    let f = field(&s, "payment-card-number");
    assert_eq!(f["masked"], "******");
    assert_eq!(f["brand"], "visa");
    pbx.key(UID, "4242424242#");
    // (two events: the card's `Field` and the expiry's `Capture`; a snapshot may fall between)
    let s = sse.until(T, |v| {
        fv(v, "payment-card-number", "status") == "valid"
            && fv(v, "expiration-date", "status") == "capturing"
    });
    assert_eq!(
        field(&s, "payment-card-number")["masked"],
        "************4242"
    );

    // wrong expiry -> invalid with its reason, then re-entered
    pbx.key(UID, "1399");
    // the reason stays on screen while the next attempt runs (`Field` invalid, then `Capture`
    // attempt 2; a snapshot may fall between the two)
    let s = sse.until(T, |v| {
        fv(v, "expiration-date", "error") == "invalid-date"
            && fv(v, "expiration-date", "status") == "capturing"
    });
    assert_eq!(field(&s, "expiration-date")["attempt"], 2);
    pbx.key(UID, "1230");
    sse.until(T, |v| fv(v, "expiration-date", "status") == "valid");
    pbx.key(UID, "123");
    let s = sse.until(T, |v| v["call"]["ready"] == true);
    assert_eq!(field(&s, "security-code")["status"], "valid");
    assert!(
        field(&s, "security-code")["length"].is_null(),
        "security code length leaked"
    );
    assert_eq!(s["call"]["card_number"], "************4242");

    let (st, body) = command(&svc, UID, r#"{"command":"submit"}"#);
    assert_eq!(st, 200, "{body}");
    let s = sse.until(T, |v| v["call"]["submit"]["result"] == "success");
    assert_eq!(s["call"]["mode"], "submitted");
    assert_eq!(s["call"]["submit"]["card_number"], "************4242");
    assert_eq!(s["call"]["submit"]["charge_id"], "ch_test_1");

    // nothing but the last 4 of the card anywhere in the snapshot
    let text = s.to_string();
    assert!(!text.contains("424242424242"), "{text}");
    assert!(
        !text.contains("1230") && !text.contains("\"123\""),
        "{text}"
    );

    let (st, _) = command(&svc, UID, r#"{"command":"stop"}"#);
    assert_eq!(st, 200);
    let s = sse.until(T, |v| v["call"]["mode"] == "off");
    assert_eq!(s["call"]["stop_reason"], "agent");
    assert_eq!(
        s["call"]["submit"]["result"], "success",
        "last outcome stays visible"
    );
    drop(svc);
}

#[test]
fn reenter_restart_refusals_declines_and_timeouts_reach_the_page() {
    let pbx = FakePbx::start(0);
    pbx.add_channel_silently(CHAN, UID);
    let svc = service(&pbx);
    connected(&pbx, &svc);
    assert!(agent_support::wait_until(T, || svc.hub().knows(UID)));
    let mut sse = Sse::open(svc.addr(), &events_path(UID));
    sse.next_snapshot();
    assert_eq!(command(&svc, UID, r#"{"command":"start"}"#).0, 200);
    // a wrong card number (Luhn) shows the invalid reason
    pbx.key(UID, "4242424242424241#");
    let s = sse.until(T, |v| {
        fv(v, "payment-card-number", "error") == "invalid-card-number"
    });
    assert!(s["call"]["card_number"].is_null());
    pbx.key(UID, CARD);
    sse.until(T, |v| fv(v, "payment-card-number", "status") == "valid");
    // agent asks to re-enter the card number: capture FIELD goes to the module
    let (st, body) = command(
        &svc,
        UID,
        r#"{"command":"capture","field":"payment-card-number"}"#,
    );
    assert_eq!(st, 200, "{body}");
    assert!(pbx.secure_pay_actions().contains(&(
        CHAN.into(),
        "capture".into(),
        "payment-card-number".into()
    )));
    let s = sse.until(T, |v| fv(v, "payment-card-number", "status") == "capturing");
    assert_eq!(field(&s, "payment-card-number")["length"], 0);
    // an unknown field is refused by the service, never sent
    let n = commands(&pbx).len();
    assert_eq!(
        command(&svc, UID, r#"{"command":"capture","field":"pin"}"#).0,
        400
    );
    assert_eq!(command(&svc, UID, r#"{"command":"originate"}"#).0, 400);
    assert_eq!(commands(&pbx).len(), n);
    // submit before complete: the module's refusal text becomes the notice
    let (st, body) = command(&svc, UID, r#"{"command":"submit"}"#);
    assert_eq!(st, 409, "{body}");
    assert!(body.contains("missing or invalid"), "{body}");
    let s = sse.until(T, |v| v["call"]["notice"]["code"] == "command-refused");
    assert!(s["call"]["notice"]["text"]
        .as_str()
        .unwrap()
        .contains("cannot submit"));
    // full card, then restart wipes everything
    pbx.key(UID, CARD);
    pbx.key(UID, "1230");
    sse.until(T, |v| fv(v, "expiration-date", "status") == "valid");
    assert_eq!(command(&svc, UID, r#"{"command":"restart"}"#).0, 200);
    let s = sse.until(T, |v| fv(v, "expiration-date", "status") == "pending");
    assert_eq!(field(&s, "payment-card-number")["status"], "capturing");
    assert!(s["call"]["card_number"].is_null());
    // input timeout on the first digit
    pbx.advance(UID, 16_000);
    sse.until(T, |v| {
        fv(v, "payment-card-number", "error") == "input-timeout"
    });
    // connector declines
    pbx.set_outcome(PaymentOutcome::Error {
        code: "card_declined".into(),
        message: "Your card was declined.".into(),
    });
    pbx.key(UID, CARD);
    pbx.key(UID, "1230");
    pbx.key(UID, "123");
    sse.until(T, |v| v["call"]["ready"] == true);
    assert_eq!(command(&svc, UID, r#"{"command":"submit"}"#).0, 200);
    let s = sse.until(T, |v| v["call"]["submit"]["result"] == "error");
    assert_eq!(s["call"]["submit"]["message"], "Your card was declined.");
    assert_eq!(s["call"]["notice"]["code"], "payment-declined");
    // cancel: back to a normal call
    assert_eq!(command(&svc, UID, r#"{"command":"cancel"}"#).0, 200);
    let s = sse.until(T, |v| v["call"]["mode"] == "off");
    assert_eq!(s["call"]["stop_reason"], "cancelled");
    assert!(s["call"]["fields"].as_array().unwrap().is_empty());
    // hangup: the page says the call ended; commands are refused
    pbx.hangup(UID);
    sse.until(T, |v| v["call"]["ended"] == true);
    assert_eq!(command(&svc, UID, r#"{"command":"start"}"#).0, 409);
}

#[test]
fn signed_links_are_required_and_checked() {
    let pbx = FakePbx::start(0);
    pbx.add_channel_silently(CHAN, UID);
    let svc = service(&pbx);
    connected(&pbx, &svc);
    assert!(agent_support::wait_until(T, || svc.hub().knows(UID)));
    let a = svc.addr();
    let s = signer();

    // valid
    let ok = http(a, "GET", &link(UID), &[], "");
    assert_eq!(ok.status, 200, "{}", ok.body);
    let csp = ok.header("Content-Security-Policy").unwrap();
    assert!(
        csp.contains("frame-ancestors https://desktop.example.test"),
        "{csp}"
    );
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(ok.header("Referrer-Policy"), Some("no-referrer"));
    assert!(ok.body.contains("data-token=\""));

    // unsigned
    let r = http(a, "GET", &format!("/call/{UID}"), &[], "");
    assert_eq!(r.status, 403);
    assert!(r.body.contains("not signed"), "{}", r.body);
    // expired (correctly signed, in the past)
    let past = unix_now() - 10;
    let r = http(a, "GET", &s.link(UID, past), &[], "");
    assert_eq!(r.status, 403);
    assert!(r.body.contains("expired"), "{}", r.body);
    // tampered: another call id with this call's signature; extended expiry; flipped sig
    let good = link(UID);
    let other = good.replace(UID, "1700000000.2");
    let r = http(a, "GET", &other, &[], "");
    assert_eq!(r.status, 403);
    assert!(r.body.contains("signature"), "{}", r.body);
    let exp: u64 = good
        .split("exp=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let r = http(
        a,
        "GET",
        &good.replace(&format!("exp={exp}"), &format!("exp={}", exp + 86400)),
        &[],
        "",
    );
    assert_eq!(r.status, 403);
    let last = good.chars().last().unwrap();
    let flipped = format!(
        "{}{}",
        &good[..good.len() - 1],
        if last == '0' { '1' } else { '0' }
    );
    assert_eq!(http(a, "GET", &flipped, &[], "").status, 403);
    // a link signed with another secret
    let foreign = Signer::new(b"some other secret, not ours!!").unwrap();
    assert_eq!(
        http(a, "GET", &foreign.link(UID, unix_now() + 60), &[], "").status,
        403
    );
    // the live stream is protected the same way
    let r = http(a, "GET", &format!("/call/{UID}/events"), &[], "");
    assert_eq!(r.status, 403);
    let r = http(a, "GET", &other.replacen("?", "/events?", 1), &[], "");
    assert_eq!(r.status, 403);
    // unknown call with a valid link: clear "no such call" page
    let r = http(a, "GET", &link("1700000099.9"), &[], "");
    assert_eq!(r.status, 404);
    assert!(r.body.contains("No such call"), "{}", r.body);
    let r = http(
        a,
        "GET",
        &link("1700000099.9").replacen("?", "/events?", 1),
        &[],
        "",
    );
    assert_eq!(r.status, 404);
    // malformed ids are refused before anything else
    assert_eq!(
        http(a, "GET", "/call/..%2f..?exp=1&sig=00", &[], "").status,
        403
    );
}

#[test]
fn cross_site_posts_are_refused() {
    let pbx = FakePbx::start(0);
    pbx.add_channel_silently(CHAN, UID);
    let svc = service(&pbx);
    connected(&pbx, &svc);
    assert!(agent_support::wait_until(T, || svc.hub().knows(UID)));
    let a = svc.addr();
    let p = action_path(UID);
    let tok = token(UID, &p);
    let own = format!("http://{a}");
    let body = r#"{"command":"start"}"#;
    let post = |h: &[(&str, &str)]| http(a, "POST", &p, h, body);
    // no Origin
    let r = post(&[
        ("X-SecurePay-Token", &tok),
        ("Content-Type", "application/json"),
    ]);
    assert_eq!(r.status, 403);
    // foreign Origin
    let r = post(&[
        ("Origin", "https://evil.example"),
        ("X-SecurePay-Token", &tok),
        ("Content-Type", "application/json"),
    ]);
    assert_eq!(r.status, 403);
    assert!(r.body.contains("cross-site"), "{}", r.body);
    // cross-site fetch metadata
    let r = post(&[
        ("Origin", &own),
        ("Sec-Fetch-Site", "cross-site"),
        ("X-SecurePay-Token", &tok),
        ("Content-Type", "application/json"),
    ]);
    assert_eq!(r.status, 403);
    // missing / wrong / other call's token
    let r = post(&[("Origin", &own), ("Content-Type", "application/json")]);
    assert_eq!(r.status, 403);
    assert!(r.body.contains("token"), "{}", r.body);
    let other_tok = token("1700000000.2", &p);
    let r = post(&[
        ("Origin", &own),
        ("X-SecurePay-Token", &other_tok),
        ("Content-Type", "application/json"),
    ]);
    assert_eq!(r.status, 403);
    // a form post (what a cross-site <form> can send) is refused even with a token
    let r = post(&[
        ("Origin", &own),
        ("X-SecurePay-Token", &tok),
        ("Content-Type", "application/x-www-form-urlencoded"),
    ]);
    assert_eq!(r.status, 400);
    // unsigned action URL
    let r = http(
        a,
        "POST",
        &format!("/call/{UID}/action"),
        &[
            ("Origin", &own),
            ("X-SecurePay-Token", &tok),
            ("Content-Type", "application/json"),
        ],
        body,
    );
    assert_eq!(r.status, 403);
    // none of these reached the PBX
    assert!(commands(&pbx).is_empty(), "{:?}", commands(&pbx));
    // control: the same request done right is accepted and sent
    let (st, b) = command(&svc, UID, body);
    assert_eq!(st, 200, "{b}");
    assert_eq!(commands(&pbx).len(), 1);
}

#[test]
fn survives_pbx_restart_and_shows_the_true_state_again() {
    let pbx = FakePbx::start(0);
    pbx.add_channel_silently(CHAN, UID);
    let svc = service(&pbx);
    connected(&pbx, &svc);
    assert!(agent_support::wait_until(T, || svc.hub().knows(UID)));
    let mut sse = Sse::open(svc.addr(), &events_path(UID));
    sse.next_snapshot();
    assert_eq!(command(&svc, UID, r#"{"command":"start"}"#).0, 200);
    pbx.key(UID, CARD);
    sse.until(T, |v| fv(v, "payment-card-number", "status") == "valid");

    // the PBX goes away: the page is told, commands fail clearly
    let mut pbx = pbx;
    pbx.shutdown();
    let s = sse.until(T, |v| v["pbx"]["connected"] == false);
    assert!(s["pbx"]["last_error"].is_string());
    let (st, body) = command(&svc, UID, r#"{"command":"restart"}"#);
    assert_eq!(st, 502, "{body}");
    assert!(body.contains("not connected"), "{body}");

    // meanwhile (while nobody listened) the customer keyed the expiry
    pbx.key(UID, "1230");
    let pbx = pbx.restart();
    assert!(pbx.wait_logins(2, T), "no reconnect");
    // the resync (CoreShowChannels + SecurePay status) restores the true state
    let s = sse.until(T, |v| {
        v["pbx"]["connected"] == true
            && v["call"]["fields"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["name"] == "expiration-date" && f["status"] == "valid")
    });
    assert_eq!(s["pbx"]["reconnects"], 1);
    assert_eq!(field(&s, "security-code")["status"], "capturing");
    assert_eq!(s["call"]["card_number"], "************4242");
    let st = pbx.secure_pay_actions();
    assert!(
        st.contains(&(CHAN.into(), "status".into(), "".into())),
        "{st:?}"
    );

    // a new page connection gets the full snapshot at once
    let mut sse2 = Sse::open(svc.addr(), &events_path(UID));
    let s2 = sse2.next_snapshot();
    assert_eq!(field(&s2, "expiration-date")["status"], "valid");
    assert_eq!(s2["call"]["mode"], "secure");

    // a channel that ended while we were away is shown as ended after a reconnect;
    // one that started secure mode by dialplan while we were away is shown secure
    let mut pbx = pbx;
    pbx.shutdown();
    sse.until(T, |v| v["pbx"]["connected"] == false);
    pbx.hangup(UID); // nobody connected: the service misses the Hangup event
    pbx.add_channel_silently("PJSIP/other-00000002", "1700000000.2");
    pbx.start_session_silently("1700000000.2");
    let pbx = pbx.restart();
    assert!(pbx.wait_logins(3, T));
    sse.until(T, |v| v["call"]["ended"] == true);
    let mut sse3 = Sse::open(svc.addr(), &events_path("1700000000.2"));
    sse3.until(T, |v| v["call"]["mode"] == "secure");
}

#[test]
fn wrong_ami_credentials_are_reported_and_retried() {
    let pbx = FakePbx::start(0);
    let mut ami = AmiConfig::new(&pbx.addr(), AMI_USER, "wrong");
    ami.backoff_min = Duration::from_millis(50);
    ami.backoff_max = Duration::from_millis(100);
    let mut cfg = Config::new(ami, signer());
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    let svc = Service::start(cfg).unwrap();
    assert!(agent_support::wait_until(T, || svc.hub().pbx().attempts >= 2));
    let p = svc.hub().pbx();
    assert!(!p.connected);
    assert!(p.last_error.unwrap().contains("Authentication failed"));
    // a bad frame-ancestors value is refused at start
    let mut cfg = Config::new(AmiConfig::new("127.0.0.1:1", "a", "b"), signer());
    cfg.frame_ancestors = "'self'; script-src *".into();
    assert!(Service::start(cfg).is_err());
}

#[test]
fn page_script_never_builds_html_from_data() {
    // All dynamic values go through textContent/attributes; guard against regressions.
    let js = include_str!("../src/agent/page.js");
    for bad in [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "new Function",
    ] {
        assert!(!js.contains(bad), "page.js uses {bad}");
    }
    // control: the checker does see what it looks for
    assert!(js.contains("textContent"));
}

#[test]
fn cli_mints_links_the_service_accepts() {
    let bin = env!("CARGO_BIN_EXE_secure-pay-agent");
    let out = std::process::Command::new(bin)
        .args([
            "link",
            "--call",
            UID,
            "--ttl",
            "120",
            "--base",
            "http://127.0.0.1:8090/",
        ])
        .env(
            "SECURE_PAY_AGENT_SECRET",
            std::str::from_utf8(LINK_SECRET).unwrap(),
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let url = String::from_utf8(out.stdout).unwrap();
    let url = url.trim();
    let rest = url
        .strip_prefix(&format!("http://127.0.0.1:8090/call/{UID}?exp="))
        .unwrap_or_else(|| panic!("{url}"));
    let (exp, sig) = rest.split_once("&sig=").unwrap();
    let now = unix_now();
    let e = signer().verify(UID, Some(exp), Some(sig), now).unwrap();
    assert!(e > now && e <= now + 121, "{e} vs {now}");
    // refusals: no secret, short secret, bad call id, secret on the command line is no option
    let run = |args: &[&str], secret: Option<&str>| {
        let mut c = std::process::Command::new(bin);
        c.args(args).env_remove("SECURE_PAY_AGENT_SECRET");
        if let Some(s) = secret {
            c.env("SECURE_PAY_AGENT_SECRET", s);
        }
        let o = c.output().unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (ok, err) = run(&["link", "--call", UID], None);
    assert!(!ok && err.contains("SECURE_PAY_AGENT_SECRET"), "{err}");
    let (ok, err) = run(&["link", "--call", UID], Some("short"));
    assert!(!ok && err.contains("at least 16"), "{err}");
    let (ok, err) = run(&["link", "--call", "a/b"], Some("0123456789abcdef0123"));
    assert!(!ok && err.contains("Uniqueid"), "{err}");
    let (ok, err) = run(
        &["link", "--call", UID, "--secret", "x"],
        Some("0123456789abcdef0123"),
    );
    assert!(!ok && err.contains("unexpected argument"), "{err}");
}
