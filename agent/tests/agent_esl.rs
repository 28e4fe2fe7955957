//! The agent page service on FreeSWITCH's event socket (ESL), against a fake ESL server on
//! 127.0.0.1 whose `secure_pay::*` events come from the real capture engine, in ESL plain
//! format (URL-encoded values): the page's commands become `api uuid_secure_pay <uuid> ...`,
//! the state follows the events, and after the socket restarts the service reconnects and
//! resynchronises (`show channels as json` + `uuid_secure_pay <uuid> status`).

mod agent_support;

use std::time::Duration;

use agent_support::fake_esl::*;
use agent_support::{wait_until, LINK_SECRET};
use secure_pay_agent::esl::EslConfig;
use secure_pay_agent::sign::Signer;
use secure_pay_agent::{unix_now, Config, Service};
use serde_json::Value;

fn fv(v: &Value, name: &str, key: &str) -> Value {
    v["call"]["fields"]
        .as_array()
        .and_then(|a| a.iter().find(|f| f["name"] == name))
        .map(|f| f[key].clone())
        .unwrap_or(Value::Null)
}

#[test]
fn freeswitch_esl_drives_the_page_and_resyncs_after_restart() {
    let st = new_st();
    let fake = FakeEsl::start(0, st.clone());
    let signer = Signer::new(LINK_SECRET).unwrap();
    let mut esl = EslConfig::new(&format!("127.0.0.1:{}", fake.port), PASSWORD);
    esl.backoff_min = Duration::from_millis(100);
    esl.backoff_max = Duration::from_millis(300);
    let mut cfg = Config::new(
        secure_pay_agent::ami::AmiConfig::new("127.0.0.1:1", "", ""),
        signer.clone(),
    );
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.esl = Some(esl);
    let svc = Service::start(cfg).unwrap();
    assert!(
        wait_until(T, || svc.hub().knows(UUID)),
        "channel not learnt from show channels"
    );
    let link = signer.link(UUID, unix_now() + 600);
    let sess = agent_support::open_session(svc.addr(), UUID, &link);
    let mut sse = sess.events(svc.addr());
    assert_eq!(sse.next_snapshot()["call"]["channel"], NAME);
    let post = |body: &str| sess.command(svc.addr(), body);
    let r = post(r#"{"command":"start"}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    sse.until(T, |v| fv(v, "payment-card-number", "status") == "capturing");
    fake.key("424242");
    let s = sse.until(T, |v| fv(v, "payment-card-number", "length") == 6);
    assert_eq!(fv(&s, "payment-card-number", "masked"), "******");
    assert_eq!(fv(&s, "payment-card-number", "brand"), "visa");
    let r = post(r#"{"command":"capture","field":"payment-card-number"}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    fake.key("4242424242424242#1230123");
    sse.until(T, |v| v["call"]["ready"] == true);
    // a refusal from the module keeps its text
    let r = post(r#"{"command":"clear"}"#);
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.body.contains("no field is being captured"), "{}", r.body);
    let r = post(r#"{"command":"submit"}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    let s = sse.until(T, |v| v["call"]["submit"]["result"] == "success");
    assert_eq!(s["call"]["submit"]["card_number"], "************4242");
    assert!(!s.to_string().contains("424242424242"));
    let cmds = st.lock().unwrap().commands.clone();
    assert!(
        cmds.iter()
            .any(|c| c.starts_with("event plain ") && c.contains("secure_pay::digit")),
        "{cmds:?}"
    );
    assert!(
        cmds.contains(&format!(
            "api uuid_secure_pay {UUID} capture payment-card-number"
        )),
        "{cmds:?}"
    );
    assert!(
        cmds.contains(&format!("api uuid_secure_pay {UUID} start")),
        "{cmds:?}"
    );

    // the socket goes away and comes back: reported, reconnected, state resynchronised
    fake.shutdown();
    sse.until(T, |v| v["pbx"]["connected"] == false);
    // meanwhile secure mode ended on the PBX (no event reached the service)
    st.lock().unwrap().session = None;
    let _fake2 = FakeEsl::start(fake.port, st.clone());
    let s = sse.until(T, |v| {
        v["pbx"]["connected"] == true && v["pbx"]["reconnects"] == 1
    });
    let _ = s;
    assert!(wait_until(T, || st
        .lock()
        .unwrap()
        .commands
        .contains(&format!("api uuid_secure_pay {UUID} status"))));
    let s = sse.until(T, |v| v["call"]["mode"] == "off");
    assert_eq!(s["call"]["ended"], false);
    assert_eq!(
        s["call"]["submit"]["result"], "success",
        "last outcome kept"
    );
    _fake2.shutdown();
}

fn esl_service(fake: &FakeEsl, keepalive: Duration) -> Service {
    let mut esl = EslConfig::new(&format!("127.0.0.1:{}", fake.port), PASSWORD);
    esl.backoff_min = Duration::from_millis(100);
    esl.backoff_max = Duration::from_millis(300);
    esl.keepalive = keepalive;
    esl.keepalive_timeout = keepalive;
    let mut cfg = Config::new(
        secure_pay_agent::ami::AmiConfig::new("127.0.0.1:1", "", ""),
        Signer::new(LINK_SECRET).unwrap(),
    );
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.esl = Some(esl);
    Service::start(cfg).unwrap()
}

#[test]
fn a_channel_list_far_over_one_mebibyte_resyncs() {
    // ~2,000 channels: the answer is about 3 MiB, where the old 1 MiB cap broke every resync
    let st = new_st();
    st.lock().unwrap().extra_channels = 2000;
    let body = api(&mut st.lock().unwrap(), "show channels as json");
    assert!(body.len() > 2 * 1024 * 1024, "{} bytes", body.len());
    assert!(secure_pay_agent::esl::channel_rows(&body).unwrap().len() == 2001);
    let fake = FakeEsl::start(0, st.clone());
    let svc = esl_service(&fake, Duration::from_secs(4));
    assert!(
        wait_until(T, || svc.hub().knows(UUID)
            && svc.hub().knows("00000000-0000-4000-8000-000000001999")),
        "channels not learnt: {:?}",
        svc.hub().pbx()
    );
    assert!(svc.hub().knows("00000000-0000-4000-8000-000000000000"));
    assert!(svc.hub().pbx().connected);
    // and every live call got its status asked (not only the first 512)
    assert!(wait_until(T, || st.lock().unwrap().commands.iter().any(
        |c| c == "api uuid_secure_pay 00000000-0000-4000-8000-000000001999 status"
    )));
    fake.shutdown();
}

#[test]
fn hostile_esl_bodies_are_refused_without_allocating_them() {
    use secure_pay_agent::esl::{read_frame, MAX_API_BODY, MAX_EVENT_BODY};
    let read = |raw: String| read_frame(&mut std::io::Cursor::new(raw.into_bytes()));
    // announced over the caps: refused before reading
    let r = read(format!(
        "Content-Type: api/response\nContent-Length: {}\n\n",
        MAX_API_BODY + 1
    ));
    assert!(r.unwrap_err().to_string().contains("over the limit"));
    let r = read(format!(
        "Content-Type: text/event-plain\nContent-Length: {}\n\n",
        MAX_EVENT_BODY + 1
    ));
    assert!(r.is_err());
    // announced within the cap but never sent: an error, not a 60 MiB buffer of zeros
    let r = read("Content-Type: api/response\nContent-Length: 60000000\n\nshort".into());
    assert_eq!(r.unwrap_err().kind(), std::io::ErrorKind::UnexpectedEof);
    assert!(read("Content-Length: -1\n\n".into()).is_err());
    // control: a 2 MiB api body within the cap is read whole
    let big = "y".repeat(2 * 1024 * 1024);
    let f = read(format!(
        "Content-Type: api/response\nContent-Length: {}\n\n{big}",
        big.len()
    ))
    .unwrap()
    .unwrap();
    assert_eq!(f.body.len(), big.len());
}

#[test]
fn a_silent_event_socket_is_declared_dead_within_seconds() {
    let st = new_st();
    let fake = FakeEsl::start(0, st.clone());
    let svc = esl_service(&fake, Duration::from_secs(1));
    assert!(wait_until(T, || svc.hub().pbx().connected));
    // control: idle but answering, it stays up (keepalives are sent and answered)
    std::thread::sleep(Duration::from_millis(3500));
    assert!(svc.hub().pbx().connected, "{:?}", svc.hub().pbx());
    assert!(st
        .lock()
        .unwrap()
        .commands
        .iter()
        .any(|c| c == "api status"));
    // the host vanishes: no FIN, no RST, just silence
    st.lock().unwrap().frozen = true;
    let t0 = std::time::Instant::now();
    assert!(wait_until(T, || !svc.hub().pbx().connected));
    let took = t0.elapsed();
    assert!(took < Duration::from_millis(3500), "took {took:?}");
    let p = svc.hub().pbx();
    assert!(
        p.last_error.as_deref().unwrap_or("").contains("half-open"),
        "{p:?}"
    );
    eprintln!("ESL half-open connection noticed after {took:?}");
    st.lock().unwrap().frozen = false;
    assert!(wait_until(T, || svc.hub().pbx().connected), "no reconnect");
    fake.shutdown();
}

/// A resync that fails after a login (`show channels as json` unanswered within the command
/// timeout) ends that connection: the service logs in again until a resync succeeds, so it
/// never reports a link up over a call list it could not refresh. Control: the channel is
/// learnt once a list is answered, and the logins stop there.
#[test]
fn a_failed_resync_drops_the_link_until_the_call_list_comes() {
    let st = new_st();
    st.lock().unwrap().unanswered_lists = 2;
    let fake = FakeEsl::start(0, st.clone());
    let mut esl = EslConfig::new(&format!("127.0.0.1:{}", fake.port), PASSWORD);
    esl.backoff_min = Duration::from_millis(100);
    esl.backoff_max = Duration::from_millis(300);
    esl.command_timeout = Duration::from_millis(500);
    let mut cfg = Config::new(
        secure_pay_agent::ami::AmiConfig::new("127.0.0.1:1", "", ""),
        Signer::new(LINK_SECRET).unwrap(),
    );
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.esl = Some(esl);
    let svc = Service::start(cfg).unwrap();
    let logins = || {
        st.lock()
            .unwrap()
            .commands
            .iter()
            .filter(|c| c.starts_with("auth "))
            .count()
    };
    assert!(
        wait_until(T, || logins() >= 3),
        "a login after each unanswered resync: {}",
        logins()
    );
    assert!(
        wait_until(T, || svc.hub().knows(UUID)),
        "channel learnt once the list is answered"
    );
    assert!(wait_until(T, || svc.hub().pbx().connected));
    let done = logins();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        logins(),
        done,
        "no reconnect after the resync that succeeded"
    );
}
