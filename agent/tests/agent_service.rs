//! The agent page service against a fake AMI server on 127.0.0.1 (tests/agent_support):
//! state tracking from the module's real events, full snapshot on (re)connect, signed links
//! (accept; refuse unsigned, expired, tampered), CSRF refusals, unknown call page, AMI
//! reconnection after the PBX restarts, and that the page never carries more than the events.

mod agent_support;

use std::time::Duration;

use agent_support::{
    http, open_session, FakePbx, PageSession, Sse, AMI_SECRET, AMI_USER, LINK_SECRET,
};
use secure_pay::core::payment::PaymentOutcome;
use secure_pay_agent::ami::AmiConfig;
use secure_pay_agent::sign::Signer;
use secure_pay_agent::{unix_now, Config, Service};
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

/// A fresh signed link (each is good for one exchange: the expiry differs per call).
fn link(uid: &str) -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    signer().link(uid, unix_now() + 600 + n)
}

/// A page session for `uid` (link exchanged for the cookie, page loaded).
fn session(svc: &Service, uid: &str) -> PageSession {
    open_session(svc.addr(), uid, &link(uid))
}

/// A new page's live-update stream.
fn open_sse(svc: &Service, uid: &str) -> Sse {
    session(svc, uid).events(svc.addr())
}

/// POSTs a command like the page does (same origin, token, cookie).
fn command(svc: &Service, uid: &str, body: &str) -> (u16, String) {
    let r = session(svc, uid).command(svc.addr(), body);
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

    let mut sse = open_sse(&svc, UID);
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
        acts.contains(&(UID.into(), "start".into(), "".into())),
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
    let mut sse = open_sse(&svc, UID);
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
        UID.into(),
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
    // hangup: the page says the call ended; commands are refused (the session has ended)
    let page = session(&svc, UID);
    pbx.hangup(UID);
    sse.until(T, |v| v["call"]["ended"] == true);
    assert_eq!(
        page.command(svc.addr(), r#"{"command":"start"}"#).status,
        410
    );
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

    // valid: the exchange page (cookie set, no data), same security headers
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
    assert!(ok.header("Set-Cookie").is_some());
    assert!(session(&svc, UID).token.len() == 64);

    // unsigned: a half link, and the page without a session
    let r = http(a, "GET", &format!("/call/{UID}?exp=99999999999"), &[], "");
    assert_eq!(r.status, 403);
    assert!(r.body.contains("not signed"), "{}", r.body);
    let r = http(a, "GET", &format!("/call/{UID}"), &[], "");
    assert_eq!(r.status, 403);
    assert!(r.body.contains("no valid session"), "{}", r.body);
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
    let ghost = format!(
        "sp_session={}",
        s.session("1700000099.9", unix_now() + 60, &[1; 16])
    );
    let r = http(
        a,
        "GET",
        "/call/1700000099.9/events",
        &[("Cookie", &ghost)],
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
    let sess = session(&svc, UID);
    let p = format!("/call/{UID}/action");
    let tok = sess.token.clone();
    let ck = sess.cookie.clone();
    let own = format!("http://{a}");
    let body = r#"{"command":"start"}"#;
    let post = |h: &[(&str, &str)]| {
        let mut h = h.to_vec();
        h.push(("Cookie", &ck));
        http(a, "POST", &p, &h, body)
    };
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
    let other_tok = signer().session_csrf("1700000000.2", &ck["sp_session=".len()..]);
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
    // no session cookie (token right)
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
    // a link in the query instead of the cookie is no way in either
    let r = http(
        a,
        "POST",
        &link(UID).replacen('?', "/action?", 1),
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
    let r = sess.command(a, body);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(commands(&pbx).len(), 1);
}

#[test]
fn a_link_is_exchanged_once_for_a_cookie_and_leaves_no_token_in_urls() {
    let pbx = FakePbx::start(0);
    pbx.add_channel_silently(CHAN, UID);
    let svc = service(&pbx);
    connected(&pbx, &svc);
    assert!(agent_support::wait_until(T, || svc.hub().knows(UID)));
    let a = svc.addr();
    let l = link(UID);
    let sig = l.split("sig=").nth(1).unwrap().to_string();
    let r = http(a, "GET", &l, &[], "");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("Cache-Control"), Some("no-store"));
    assert_eq!(r.header("Referrer-Policy"), Some("no-referrer"));
    let sc = r.header("Set-Cookie").unwrap().to_string();
    let attrs: Vec<&str> = sc.split(';').map(str::trim).collect();
    for want in [
        "HttpOnly",
        "Secure",
        "SameSite=Strict",
        &format!("Path=/call/{UID}") as &str,
    ] {
        assert!(attrs.contains(&want), "{want} missing in {sc}");
    }
    let max_age: u64 = attrs
        .iter()
        .find_map(|a| a.strip_prefix("Max-Age="))
        .unwrap()
        .parse()
        .unwrap();
    assert!(max_age > 0 && max_age <= 700, "{sc}");
    let cookie = attrs[0].to_string();
    // the signature is not the cookie, and neither the exchange nor the page carries it on
    assert!(!cookie.contains(&sig));
    assert!(
        !r.body.contains(&sig) && !r.body.contains("exp="),
        "{}",
        r.body
    );
    assert!(r.body.contains(&format!("data-next=\"/call/{UID}\"")));
    let page = http(
        a,
        "GET",
        &format!("/call/{UID}"),
        &[("Cookie", &cookie)],
        "",
    );
    assert_eq!(page.status, 200);
    assert!(!page.body.contains(&sig) && !page.body.contains("sig="));
    let js = http(a, "GET", "/static/page.js", &[], "").body;
    assert!(
        !js.contains("sig=") && !js.contains("exp="),
        "page.js builds token URLs"
    );
    assert!(js.contains("credentials: 'same-origin'"));

    // a second use of the link (say, by whoever read it in a proxy log) is refused...
    let again = http(a, "GET", &l, &[], "");
    assert_eq!(again.status, 403);
    assert!(again.body.contains("already been used"), "{}", again.body);
    assert!(again.header("Set-Cookie").is_none());
    // ... also spelt in capitals (hex is case-insensitive)
    let upper = l.replace(&sig, &sig.to_ascii_uppercase());
    assert_eq!(http(a, "GET", &upper, &[], "").status, 403);
    // ... but the browser that exchanged it may reload it (no new cookie)
    let reload = http(a, "GET", &l, &[("Cookie", &cookie)], "");
    assert_eq!(reload.status, 200);
    assert!(reload.header("Set-Cookie").is_none());

    // the cookie opens this call only, and cannot be extended
    pbx.add_channel_silently("PJSIP/other-00000002", "1700000000.2");
    let other = http(a, "GET", "/call/1700000000.2", &[("Cookie", &cookie)], "");
    assert_eq!(other.status, 403);
    let v = &cookie["sp_session=".len()..];
    let exp: u64 = v.split('.').next().unwrap().parse().unwrap();
    let longer = cookie.replacen(&exp.to_string(), &(exp + 86400).to_string(), 1);
    assert_eq!(
        http(
            a,
            "GET",
            &format!("/call/{UID}"),
            &[("Cookie", &longer)],
            ""
        )
        .status,
        403
    );
    // control: the cookie works for the stream and for commands
    let mut sse = Sse::open_with(a, &format!("/call/{UID}/events"), &[("Cookie", &cookie)]);
    assert_eq!(sse.status, 200);
    assert_eq!(sse.next_snapshot()["call"]["id"], UID);
}

#[test]
fn the_session_stops_working_when_the_call_ends() {
    let pbx = FakePbx::start(0);
    pbx.add_channel_silently(CHAN, UID);
    let svc = service(&pbx);
    connected(&pbx, &svc);
    assert!(agent_support::wait_until(T, || svc.hub().knows(UID)));
    let a = svc.addr();
    let sess = session(&svc, UID);
    let unused = link(UID);
    let mut sse = sess.events(a);
    sse.next_snapshot();
    // control: while the call is up the session drives it
    assert_eq!(sess.command(a, r#"{"command":"start"}"#).status, 200);
    let before = commands(&pbx).len();

    pbx.hangup(UID);
    // the open page gets the final snapshot, then `ended`, then the stream closes
    let s = sse.until(T, |v| v["call"]["ended"] == true);
    assert_eq!(s["call"]["mode"], "off");
    let mut names = Vec::new();
    while let Some((e, _)) = sse.next_event() {
        names.push(e);
    }
    assert_eq!(names.last().map(String::as_str), Some("ended"), "{names:?}");

    let ck = [("Cookie", sess.cookie.as_str())];
    let page = http(a, "GET", &format!("/call/{UID}"), &ck, "");
    assert_eq!(page.status, 410, "{}", page.body);
    assert!(page.body.contains("call has ended"), "{}", page.body);
    assert!(page.header("Set-Cookie").unwrap().contains("Max-Age=0"));
    assert_eq!(
        http(a, "GET", &format!("/call/{UID}/events"), &ck, "").status,
        410
    );
    let r = sess.command(a, r#"{"command":"cancel"}"#);
    assert_eq!(r.status, 410, "{}", r.body);
    assert_eq!(commands(&pbx).len(), before, "a command reached the PBX");
    // an unused link for the ended call is no way in either
    assert_eq!(http(a, "GET", &unused, &[], "").status, 410);
}

#[test]
fn after_hangup_a_page_still_gets_a_pending_payment_outcome_read_only() {
    let pbx = FakePbx::start(0);
    pbx.add_channel_silently(CHAN, UID);
    let svc = service(&pbx);
    connected(&pbx, &svc);
    assert!(agent_support::wait_until(T, || svc.hub().knows(UID)));
    let a = svc.addr();
    let sess = session(&svc, UID);
    let mut sse = sess.events(a);
    sse.next_snapshot();
    // a submit in flight when the customer hangs up
    pbx.emit(UID, "SecurePaySubmit", &[("SecurePay-Result", "pending")]);
    sse.until(T, |v| v["call"]["submit"]["result"] == "pending");
    pbx.hangup(UID);
    sse.until(T, |v| v["call"]["ended"] == true);
    // read-only: the page still loads, commands do not
    let ck = [("Cookie", sess.cookie.as_str())];
    assert_eq!(http(a, "GET", &format!("/call/{UID}"), &ck, "").status, 200);
    assert_eq!(sess.command(a, r#"{"command":"cancel"}"#).status, 410);
    // the outcome arrives after the hangup and reaches the open page; then the stream ends
    pbx.emit_as(
        CHAN,
        UID,
        "SecurePaySubmit",
        &[
            ("SecurePay-Result", "success"),
            ("SecurePay-Charge-Id", "ch_late_1"),
        ],
    );
    let s = sse.until(T, |v| v["call"]["submit"]["result"] == "success");
    assert_eq!(s["call"]["submit"]["charge_id"], "ch_late_1");
    let mut last = None;
    while let Some((e, _)) = sse.next_event() {
        last = Some(e);
    }
    assert_eq!(last.as_deref(), Some("ended"));
    assert_eq!(http(a, "GET", &format!("/call/{UID}"), &ck, "").status, 410);
}

#[test]
fn survives_pbx_restart_and_shows_the_true_state_again() {
    let pbx = FakePbx::start(0);
    pbx.add_channel_silently(CHAN, UID);
    let svc = service(&pbx);
    connected(&pbx, &svc);
    assert!(agent_support::wait_until(T, || svc.hub().knows(UID)));
    let mut sse = open_sse(&svc, UID);
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
        st.contains(&(UID.into(), "status".into(), "".into())),
        "{st:?}"
    );

    // a new page connection gets the full snapshot at once
    let mut sse2 = open_sse(&svc, UID);
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
    let mut sse3 = open_sse(&svc, "1700000000.2");
    sse3.until(T, |v| v["call"]["mode"] == "secure");
}

/// A page client that writes up its event stream (no EventSource does) is cut off, so it
/// cannot keep the one writer thread of every page reading its bytes. Control: a stream that
/// only reads stays open.
#[test]
fn a_stream_client_that_sends_data_is_disconnected() {
    let pbx = FakePbx::start(0);
    pbx.add_channel_silently(CHAN, UID);
    let svc = service(&pbx);
    connected(&pbx, &svc);
    assert!(agent_support::wait_until(T, || svc.hub().knows(UID)));
    let mut quiet = open_sse(&svc, UID);
    quiet.next_snapshot();
    let mut noisy = open_sse(&svc, UID);
    noisy.next_snapshot();
    noisy.send(&[b'x'; 4096]);
    assert!(
        noisy.closed_within(Duration::from_secs(5)),
        "the stream that sent data stayed open"
    );
    assert!(
        !quiet.closed_within(Duration::from_millis(1500)),
        "control: a stream that only reads stays open"
    );
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
    // a request timeout so long it means nothing (Duration::MAX made every request panic)
    for t in [Duration::MAX, Duration::from_secs(301)] {
        let mut cfg = Config::new(AmiConfig::new("127.0.0.1:1", "a", "b"), signer());
        cfg.request_timeout = t;
        let e = Service::start(cfg).err().expect("refused");
        assert!(e.contains("request timeout"), "{e}");
    }
}

#[test]
fn page_script_never_builds_html_from_data() {
    // All dynamic values go through textContent/attributes; guard against regressions.
    let js = include_str!("../src/page.js");
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

/// A resync that fails after a login (the channel list refused) ends that connection: the
/// service logs in again, backing off, until a resync succeeds, so a call that ended while the
/// link was down is not shown live behind a link reported up. Control: the call is live before
/// the restart and shown ended after the resync that succeeds; no reconnect after that one.
#[test]
fn a_failed_resync_drops_the_link_until_the_call_list_is_fresh() {
    use secure_pay_agent::state::Access;
    let pbx = FakePbx::start(0);
    pbx.add_channel_silently(CHAN, UID);
    let svc = service(&pbx);
    connected(&pbx, &svc);
    assert!(agent_support::wait_until(T, || svc.hub().knows(UID)));
    assert_eq!(svc.hub().access(UID), Access::Live, "control: live");

    // The PBX restarts; the call ended meanwhile; its next two channel lists are refused.
    pbx.remove_channel_silently(UID);
    pbx.refuse_channel_list(2);
    let logins = pbx.logins();
    let pbx = pbx.restart();
    assert!(
        pbx.wait_logins(logins + 3, T),
        "a login after each refused resync: {} logins",
        pbx.logins()
    );
    assert!(
        agent_support::wait_until(T, || matches!(svc.hub().access(UID), Access::Ended(..))),
        "the call is shown ended once a resync succeeds"
    );
    assert!(agent_support::wait_until(T, || svc.hub().pbx().connected));
    let done = pbx.logins();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        pbx.logins(),
        done,
        "no reconnect after the resync that succeeded"
    );
    assert!(svc.hub().pbx().connected);
}
