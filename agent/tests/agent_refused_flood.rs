//! A client over its connection cap that opens connection after connection must not run the
//! agent page service out of descriptors. Its own test binary: it counts this process's open
//! descriptors, which other tests running alongside would change.

mod agent_support;

use std::net::{Ipv4Addr, TcpStream};
use std::time::{Duration, Instant};

use agent_support::{connect_from, raw_request, wait_until, FakePbx};
use secure_pay_agent::{Config, Service};

const T: Duration = Duration::from_secs(10);
const GET_HEALTH: &str = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

fn service(pbx: &FakePbx, tune: impl FnOnce(&mut Config)) -> Service {
    agent_support::service_tuned(pbx, tune)
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// A client over its connection cap that opens connection after connection (and holds them,
/// sending nothing): its refused connections are answered off the accept thread, but the
/// service never holds more than 256 of them plus a queue of 64 (the rest are closed at once),
/// so it does not run out of descriptors (its PBX links need some). Before, each was held
/// 500 ms whatever their number. Control: a refused client that asks still gets its 429, and
/// other clients get in.
#[test]
fn a_refused_client_opening_connections_in_a_loop_cannot_exhaust_descriptors() {
    // This process holds the flood's client ends too.
    secure_pay_agent::limits::raise_nofile(8192);
    let pbx = FakePbx::start(0);
    let svc = service(&pbx, |c| {
        c.max_per_client = 2;
        c.max_connections = 16;
    });
    let a = svc.addr();
    let _held: Vec<TcpStream> = (0..2).map(|_| connect_from(ip(21), a).unwrap()).collect();
    assert!(wait_until(T, || svc.open_connections() == 2));
    let base = open_fds();
    let mut flood = Vec::new();
    let mut most = 0;
    // Up to 20 s for 2,000 connections: a loaded 2-core machine opened only 780 in 5 s once
    // (the control below then failed although the caps held).
    let end = Instant::now() + Duration::from_secs(20);
    while Instant::now() < end && flood.len() < 2000 {
        if let Ok(s) = connect_from(ip(21), a) {
            flood.push(s);
        }
        if flood.len() % 20 == 0 {
            // the service's descriptors: all of this process's but the flood's client ends
            most = most.max(open_fds().saturating_sub(flood.len()));
        }
    }
    println!(
        "{} refused connections held by the client; the service's descriptors: {base} before, at most {most} during",
        flood.len()
    );
    assert!(
        flood.len() >= 1000,
        "control: the flood ran ({})",
        flood.len()
    );
    assert!(
        most <= base + 256 + 64 + 16,
        "the service held {most} descriptors (from {base}) during the flood"
    );
    drop(flood);
    // A refused client that sends its request still gets the answer, once the flood's
    // connections are let go (during the flood, one over the caps is closed unanswered).
    let mut r = raw_request(connect_from(ip(21), a).unwrap(), GET_HEALTH, T);
    let end = Instant::now() + T;
    while r.status != 429 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(100));
        r = raw_request(connect_from(ip(21), a).unwrap(), GET_HEALTH, T);
    }
    assert_eq!(r.status, 429, "{}", r.body);
    let r = raw_request(connect_from(ip(22), a).unwrap(), GET_HEALTH, T);
    assert_eq!(r.status, 200, "another client gets in");
}
