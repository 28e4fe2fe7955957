//! The agent page service under abuse, against the fake AMI (tests/agent_support): the
//! per-request deadline cuts slow-loris clients (408), the per-client (429), total (503) and
//! per-call stream (429) caps refuse the N+1th connection while other clients still get in,
//! and a PBX that stops answering (half-open TCP) is noticed within seconds and shown on the page.
//! The 1,000-page load test is tests/agent_load.rs.

mod agent_support;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::time::{Duration, Instant};

use agent_support::{
    connect_from, http, open_session, raw_request, wait_until, FakePbx, AMI_SECRET, AMI_USER,
    LINK_SECRET,
};
use secure_pay_agent::ami::AmiConfig;
use secure_pay_agent::sign::Signer;
use secure_pay_agent::{unix_now, Config, Service};

const T: Duration = Duration::from_secs(10);
const CHAN: &str = "PJSIP/customer-00000001";
const UID: &str = "1700000000.1";

fn service(pbx: &FakePbx, tune: impl FnOnce(&mut Config)) -> Service {
    agent_support::service_tuned(pbx, tune)
}

fn link(uid: &str) -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    Signer::new(LINK_SECRET)
        .unwrap()
        .link(uid, unix_now() + 600 + n)
}

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

const GET_HEALTH: &str = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";

#[test]
fn slow_loris_clients_are_cut_at_the_request_deadline() {
    let pbx = FakePbx::start(0);
    let svc = service(&pbx, |c| c.request_timeout = Duration::from_millis(1000));
    let a = svc.addr();
    // a client that trickles a header byte every 150 ms: every single read is quick, so only
    // a deadline for the whole request ends it
    let mut s = TcpStream::connect(a).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let t0 = Instant::now();
    s.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
    let mut got = Vec::new();
    let trickle =
        b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    for b in trickle.iter().cycle().take(200) {
        if s.write_all(&[*b]).is_err() {
            break;
        }
        let mut buf = [0u8; 4096];
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
        if !got.is_empty() && t0.elapsed() > Duration::from_millis(900) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let took = t0.elapsed();
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with("HTTP/1.1 408 "),
        "after {took:?}: {text:?}"
    );
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(2500),
        "{took:?}"
    );
    // a client that sends nothing at all: the same
    let t0 = Instant::now();
    let r = raw_request(TcpStream::connect(a).unwrap(), "", Duration::from_secs(5));
    assert_eq!(r.status, 408);
    assert!(t0.elapsed() < Duration::from_millis(2500));
    // control: a whole request within the deadline is answered
    let r = raw_request(TcpStream::connect(a).unwrap(), GET_HEALTH, T);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "ok\n");
}

#[test]
fn the_connection_caps_refuse_the_next_connection_and_no_other_client() {
    let pbx = FakePbx::start(0);
    let svc = service(&pbx, |c| {
        c.max_per_client = 4;
        c.max_connections = 6;
        c.request_timeout = Duration::from_secs(5);
    });
    let a = svc.addr();
    // client .11 holds 4 connections (idle: requests not sent yet)
    let held: Vec<TcpStream> = (0..4).map(|_| connect_from(ip(11), a).unwrap()).collect();
    assert!(wait_until(T, || svc.open_connections() == 4));
    // its 5th is refused with 429 and Retry-After
    let r = raw_request(connect_from(ip(11), a).unwrap(), GET_HEALTH, T);
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.header("Retry-After"), Some("5"));
    assert!(
        r.body.contains("too many connections from one client"),
        "{}",
        r.body
    );
    // another client still gets in
    let r = raw_request(connect_from(ip(12), a).unwrap(), GET_HEALTH, T);
    assert_eq!(r.status, 200);
    // the total cap: .12 and .13 take the last two places, then anyone is told 503
    let _h2 = connect_from(ip(12), a).unwrap();
    let _h3 = connect_from(ip(13), a).unwrap();
    assert!(wait_until(T, || svc.open_connections() == 6));
    let r = raw_request(connect_from(ip(14), a).unwrap(), GET_HEALTH, T);
    assert_eq!(r.status, 503, "{}", r.body);
    // places come back when connections close
    drop(held);
    assert!(wait_until(T, || svc.open_connections() == 2));
    let r = raw_request(connect_from(ip(11), a).unwrap(), GET_HEALTH, T);
    assert_eq!(r.status, 200);
}

#[test]
fn live_streams_are_capped_per_call() {
    let pbx = FakePbx::start(0);
    pbx.add_channel_silently(CHAN, UID);
    pbx.add_channel_silently("PJSIP/other-00000002", "1700000000.2");
    let svc = service(&pbx, |c| c.max_streams_per_call = 2);
    assert!(wait_until(T, || svc.hub().knows("1700000000.2")));
    let a = svc.addr();
    let s = open_session(a, UID, &link(UID));
    let mut one = s.events(a);
    let mut two = s.events(a);
    assert_eq!((one.status, two.status), (200, 200));
    one.next_snapshot();
    two.next_snapshot();
    let three = s.events(a);
    assert_eq!(three.status, 429);
    // another call is not affected
    let o = open_session(a, "1700000000.2", &link("1700000000.2"));
    let mut other = o.events(a);
    assert_eq!(other.status, 200);
    other.next_snapshot();
    assert_eq!(svc.open_streams(), 3);
    // a closed page frees its place
    drop(one);
    assert!(wait_until(T, || svc.open_streams() == 2));
    assert_eq!(s.events(a).status, 200);
    let _ = http(a, "GET", "/healthz", &[], "");
}

#[test]
fn a_silent_ami_is_declared_dead_within_seconds_and_the_page_says_so() {
    let pbx = FakePbx::start(0);
    pbx.add_channel_silently(CHAN, UID);
    let mut ami = AmiConfig::new(&pbx.addr(), AMI_USER, AMI_SECRET);
    ami.backoff_min = Duration::from_millis(100);
    ami.backoff_max = Duration::from_millis(400);
    ami.keepalive = Duration::from_secs(1);
    ami.keepalive_timeout = Duration::from_secs(1);
    let mut cfg = Config::new(ami, Signer::new(LINK_SECRET).unwrap());
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    let svc = Service::start(cfg).unwrap();
    assert!(pbx.wait_logins(1, T));
    assert!(wait_until(T, || svc.hub().knows(UID)));
    let a = svc.addr();
    let mut sse = open_session(a, UID, &link(UID)).events(a);
    assert_eq!(sse.next_snapshot()["pbx"]["connected"], true);
    // control: idle but answering, the link stays up (pings are sent and answered)
    std::thread::sleep(Duration::from_millis(3500));
    assert!(svc.hub().pbx().connected);
    let pings = pbx
        .actions()
        .iter()
        .filter(|m| m.get("Action") == Some("Ping"))
        .count();
    assert!(pings >= 1, "no keepalive Ping sent");
    // the PBX host vanishes: the socket stays open, nothing comes back
    pbx.freeze(true);
    let t0 = Instant::now();
    let s = sse.until(T, |v| v["pbx"]["connected"] == false);
    let took = t0.elapsed();
    // 1 s idle + 1 s for the answer + the 250 ms tick, with slack for a loaded machine
    assert!(took < Duration::from_millis(3500), "noticed after {took:?}");
    let err = s["pbx"]["last_error"].as_str().unwrap_or("");
    assert!(err.contains("half-open"), "{s}");
    eprintln!("AMI half-open connection noticed after {took:?}; page shows: {err}");
    // the PBX answers again: reconnected, shown
    pbx.freeze(false);
    sse.until(T, |v| v["pbx"]["connected"] == true);
}
