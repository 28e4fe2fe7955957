//! The agent page service on FreeSWITCH's event socket (ESL), against a fake ESL server on
//! 127.0.0.1 whose `secure_pay::*` events come from the real capture engine, in ESL plain
//! format (URL-encoded values): the page's commands become `api uuid_secure_pay <uuid> ...`,
//! the state follows the events, and after the socket restarts the service reconnects and
//! resynchronises (`show channels as json` + `uuid_secure_pay <uuid> status`).

mod agent_support;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agent_support::{capture_config, wait_until, LINK_SECRET};
use secure_pay::core::capture::{parse_command, Command, DigitSource, Session};
use secure_pay::core::digit::Digit;
use secure_pay::core::events::Event;
use secure_pay::core::payment::PaymentOutcome;
use secure_pay_agent::esl::EslConfig;
use secure_pay_agent::sign::Signer;
use secure_pay_agent::{unix_now, Config, Service};
use serde_json::Value;

const UUID: &str = "6f0c2a7e-1b7d-4a53-9a65-3c1f3f4b2a10";
const NAME: &str = "sofia/internal/1000@127.0.0.1";
const PASSWORD: &str = "ClueCon-test";
const T: Duration = Duration::from_secs(10);

fn enc(s: &str) -> String {
    let mut o = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.*".contains(&b) {
            o.push(char::from(b));
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

struct St {
    session: Option<Session>,
    clients: Vec<TcpStream>,
    commands: Vec<String>,
    clock: u64,
    /// Other channels on this "PBX" (listed by `show channels as json`).
    extra_channels: usize,
    /// Stop answering (the PBX host vanished; the socket stays open).
    frozen: bool,
}

fn new_st() -> Arc<Mutex<St>> {
    Arc::new(Mutex::new(St {
        session: None,
        clients: Vec::new(),
        commands: Vec::new(),
        clock: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64,
        extra_channels: 0,
        frozen: false,
    }))
}

/// One `show channels as json` row with the columns FreeSWITCH 1.10 lists (~1.5 KiB).
fn channel_row(uuid: &str, name: &str) -> String {
    format!(
        r#"{{"uuid":"{uuid}","direction":"inbound","created":"2026-12-06 05:00:00","created_epoch":"1796533200","name":"{name}","state":"CS_EXECUTE","cid_name":"Customer","cid_num":"1000","ip_addr":"127.0.0.1","dest":"9196","application":"park","application_data":"","dialplan":"XML","context":"default","read_codec":"PCMU","read_rate":"8000","read_bit_rate":"64000","write_codec":"PCMU","write_rate":"8000","write_bit_rate":"64000","secure":"","hostname":"pbx-load-test-host.example.com","presence_id":"1000@127.0.0.1","presence_data":"","accountcode":"","callstate":"ACTIVE","callee_name":"Outbound Call","callee_num":"9196","callee_direction":"","call_uuid":"{uuid}","sent_callee_name":"","sent_callee_num":"","initial_cid_name":"Customer","initial_cid_num":"1000","initial_ip_addr":"127.0.0.1","initial_dest":"9196","initial_dialplan":"XML","initial_context":"default","padding":"{pad}"}}"#,
        pad = "x".repeat(600)
    )
}

fn event_frame(name: &str, ev: Option<&Event>) -> String {
    let mut body = String::new();
    match ev {
        Some(_) => {
            body.push_str("Event-Name: CUSTOM\n");
            body.push_str(&format!(
                "Event-Subclass: {}\n",
                enc(&format!("secure_pay::{name}"))
            ));
        }
        None => body.push_str(&format!("Event-Name: {name}\n")),
    }
    body.push_str(&format!(
        "Unique-ID: {UUID}\nChannel-Name: {}\nChannel-Call-UUID: {UUID}\n",
        enc(NAME)
    ));
    if let Some(e) = ev {
        e.for_each_header(&mut |k, v| body.push_str(&format!("{k}: {}\n", enc(v))));
    }
    body.push('\n');
    format!(
        "Content-Length: {}\nContent-Type: text/event-plain\n\n{body}",
        body.len()
    )
}

fn publish(st: &mut St, evs: &[Event]) {
    for e in evs {
        let f = event_frame(e.name(), Some(e));
        st.clients.retain_mut(|c| c.write_all(f.as_bytes()).is_ok());
    }
}

fn api(st: &mut St, cmd: &str) -> String {
    if cmd == "show channels as json" {
        let mut rows = vec![channel_row(UUID, NAME)];
        for i in 0..st.extra_channels {
            rows.push(channel_row(
                &format!("00000000-0000-4000-8000-{i:012}"),
                &format!("sofia/internal/{i}@127.0.0.1"),
            ));
        }
        return format!(
            r#"{{"row_count":{},"rows":[{}]}}"#,
            rows.len(),
            rows.join(",")
        );
    }
    if cmd == "status" {
        return "UP 0 years, 0 days, 0 hours, 1 minute\nFreeSWITCH (fake) is ready\n".into();
    }
    let Some(rest) = cmd.strip_prefix(&format!("uuid_secure_pay {UUID} ")) else {
        return "-ERR no such channel\n".into();
    };
    let now = st.clock;
    let mut evs = Vec::new();
    let out = if rest.starts_with("start") {
        if st.session.is_some() {
            "-ERR secure capture is already running on this channel\n".to_string()
        } else {
            st.session = Some(Session::start(&capture_config(), now, &mut |e| evs.push(e)));
            "+OK started\n".into()
        }
    } else {
        match (st.session.as_mut(), parse_command(rest)) {
            // what res/mod_secure_pay answers for status without a session
            (None, Ok(Command::Status)) => "+OK inactive\n".into(),
            (None, _) => "-ERR no secure capture session on this channel\n".into(),
            (_, Err(e)) => format!("-ERR {e}\n"),
            (Some(s), Ok(c)) => match s.command(&c, now, &mut |e| evs.push(e)) {
                Ok(()) => {
                    if c == Command::Submit {
                        if let Some(req) = s.take_payment_request() {
                            drop(req);
                            let o = PaymentOutcome::Success {
                                charge_id: Some("ch_fs".into()),
                                token_id: None,
                            };
                            s.on_payment_outcome(o, now, &mut |e| evs.push(e));
                        }
                    }
                    format!("+OK {}\n", c.verb())
                }
                Err(e) => format!("-ERR {e}\n"),
            },
        }
    };
    publish(st, &evs);
    out
}

struct FakeEsl {
    port: u16,
    st: Arc<Mutex<St>>,
    stop: Arc<AtomicBool>,
}

impl FakeEsl {
    fn start(port: u16, st: Arc<Mutex<St>>) -> FakeEsl {
        let l = (0..50)
            .find_map(|_| {
                TcpListener::bind(("127.0.0.1", port)).ok().or_else(|| {
                    std::thread::sleep(Duration::from_millis(100));
                    None
                })
            })
            .expect("bind");
        let port = l.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let (s2, st2) = (stop.clone(), st.clone());
        std::thread::spawn(move || {
            for c in l.incoming() {
                if s2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(c) = c else { continue };
                let st3 = st2.clone();
                std::thread::spawn(move || serve(st3, c));
            }
        });
        FakeEsl { port, st, stop }
    }

    fn shutdown(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        for c in self.st.lock().unwrap().clients.drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }

    fn key(&self, digits: &str) {
        let mut g = self.st.lock().unwrap();
        let mut evs = Vec::new();
        for ch in digits.chars() {
            g.clock += 250;
            let now = g.clock;
            let d = Digit::from_char(ch).unwrap();
            g.session
                .as_mut()
                .unwrap()
                .on_digit(d, DigitSource::Rfc4733, now, &mut |e| evs.push(e));
        }
        publish(&mut g, &evs);
    }
}

fn serve(st: Arc<Mutex<St>>, s: TcpStream) {
    let mut w = s.try_clone().unwrap();
    w.write_all(b"Content-Type: auth/request\n\n").unwrap();
    let mut r = BufReader::new(s);
    let mut authed = false;
    loop {
        let mut cmd = String::new();
        let mut line = String::new();
        loop {
            line.clear();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line.trim().is_empty() {
                break;
            }
            cmd.push_str(line.trim_end());
        }
        let mut g = st.lock().unwrap();
        g.commands.push(cmd.clone());
        if g.frozen {
            continue; // the host vanished: nothing comes back
        }
        let reply = |t: &str| format!("Content-Type: command/reply\nReply-Text: {t}\n\n");
        if !authed {
            if cmd == format!("auth {PASSWORD}") {
                authed = true;
                let _ = w.write_all(reply("+OK accepted").as_bytes());
                g.clients.push(w.try_clone().unwrap());
            } else {
                let _ = w.write_all(reply("-ERR invalid").as_bytes());
                return;
            }
        } else if cmd.starts_with("event plain ") {
            let _ = w.write_all(reply("+OK event listener enabled plain").as_bytes());
        } else if let Some(a) = cmd.strip_prefix("api ") {
            let body = api(&mut g, a);
            let _ = w.write_all(
                format!(
                    "Content-Type: api/response\nContent-Length: {}\n\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
        } else {
            let _ = w.write_all(reply("-ERR command not found").as_bytes());
        }
    }
}

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
