//! One agent service following TWO REAL Asterisk 22 nodes with res_secure_pay (private
//! instances on 127.0.0.1 ports, tests/asterisk): a customer call on each, each call's page
//! (key `<node>~<Uniqueid>`) drives its own node (card keyed in-band on one, as DTMF frames on
//! the other), `/metrics` counts per node and per detection path without a digit, and when one
//! Asterisk stops only its page loses the PBX and `/readyz` turns 503 until it is back.
//!
//! Like tests/agent_e2e_asterisk.rs this binary is built WITHOUT the `asterisk` feature; the
//! module comes from `SECUREPAY_AGENT_MODULE` (scripts/test builds it), and it needs root for
//! the Asterisk chroot:
//! ```text
//! cargo build --release --features asterisk --lib
//! cp target/release/libsecure_pay.so target/agent-e2e/res_secure_pay.so
//! SECUREPAY_AGENT_MODULE=target/agent-e2e/res_secure_pay.so \
//!   cargo test --release -p secure_pay_agent --test agent_nodes_asterisk -- --ignored --test-threads=1
//! ```

mod agent_support;
#[path = "../../tests/asterisk/mod.rs"]
mod asterisk;

use std::time::Duration;

use agent_support::{http, open_session, wait_until, LINK_SECRET};
use asterisk::{https_server, phone_dialplan, pki, Call, Instance, BASE_MODULES, WAIT};
use secure_pay_agent::ami::AmiConfig;
use secure_pay_agent::sign::{call_key, Signer};
use secure_pay_agent::{unix_now, Config, NodeConfig, PbxLink, Service};

const PAN: &str = "4242424242424242"; // Visa TEST number
const T: Duration = Duration::from_secs(30);

struct Node {
    inst: Instance,
    ami: asterisk::Ami,
    call: Call,
    uid: String,
}

fn node(name: &str, call_id: &str, connector_port: u16, ca_pem: &str) -> Node {
    let conf = format!(
        "[general]\nconnector = test\npan_display = last4\n\n[test]\nurl = https://127.0.0.1:{connector_port}/pay\n\
         ca_file = @INST@/etc/test-ca.pem\ntimeout_ms = 5000\n"
    );
    let inst = Instance::start(
        name,
        &phone_dialplan(),
        &[("secure_pay.conf", &conf), ("test-ca.pem", ca_pem)],
        BASE_MODULES,
    );
    let mut ami = inst.ami();
    let call = Call::originate(&mut ami, call_id, &[]);
    let inbound = ami
        .wait_event(
            WAIT,
            "UserEvent",
            &[("UserEvent", "SPInbound"), ("Call", call_id)],
        )
        .unwrap();
    let uid = inbound.get("Uniqueid").expect("Uniqueid").to_string();
    Node {
        inst,
        ami,
        call,
        uid,
    }
}

fn node_config(name: &str, inst: &Instance) -> NodeConfig {
    let mut a = AmiConfig::new(&format!("127.0.0.1:{}", inst.ami_port), "test", "test");
    a.backoff_min = Duration::from_millis(200);
    a.backoff_max = Duration::from_secs(1);
    NodeConfig {
        name: name.into(),
        link: PbxLink::Asterisk(a),
    }
}

fn runner(args: &[&str]) {
    let out = std::process::Command::new(asterisk::repo().join("scripts/asterisk-run"))
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "asterisk-run {args:?}: {out:?}");
}

#[test]
#[ignore = "needs the Asterisk chroot (root) and a res_secure_pay build: see the file header"]
fn one_agent_service_follows_two_real_asterisk_nodes() {
    agent_support::install_module("SECUREPAY_AGENT_MODULE");
    let pki = pki();
    let (port, received) = https_server(
        &pki,
        r#"{"charge_id":"ch_nodes_1","error_code":null,"error_message":null}"#,
    );
    let mut n1 = node("nodes1", "nd1", port, &pki.ca_pem);
    let mut n2 = node("nodes2", "nd2", port, &pki.ca_pem);
    let signer = Signer::new(LINK_SECRET).unwrap();
    let mut cfg = Config::new(AmiConfig::new("127.0.0.1:1", "x", "x"), signer.clone());
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.nodes = vec![node_config("ast1", &n1.inst), node_config("ast2", &n2.inst)];
    let svc = Service::start(cfg).unwrap();
    let addr = svc.addr();
    let (h1, h2) = (svc.node_hub("ast1").unwrap(), svc.node_hub("ast2").unwrap());
    assert!(
        wait_until(T, || h1.knows(&n1.uid) && h2.knows(&n2.uid)),
        "calls not learnt: {:?} {:?}",
        h1.pbx(),
        h2.pbx()
    );
    assert!(wait_until(T, || http(addr, "GET", "/readyz", &[], "")
        .status
        == 200));

    let (k1, k2) = (call_key("ast1", &n1.uid), call_key("ast2", &n2.uid));
    let p1 = open_session(addr, &k1, &signer.link(&k1, unix_now() + 900));
    let p2 = open_session(addr, &k2, &signer.link(&k2, unix_now() + 900));
    // hostile: node 1's session cannot open node 2's call
    let r = http(
        addr,
        "GET",
        &format!("/call/{k2}"),
        &[("Cookie", &p1.cookie)],
        "",
    );
    assert_eq!(r.status, 403, "{}", r.body);
    let mut s1 = p1.events(addr);
    let mut s2 = p2.events(addr);
    for (p, s) in [(&p1, &mut s1), (&p2, &mut s2)] {
        let r = p.command(addr, r#"{"command":"start"}"#);
        assert_eq!(r.status, 200, "start: {}", r.body);
        s.until(T, |v| v["call"]["mode"] == "secure");
    }
    // node 1: the card in-band; node 2: as DTMF frames; expiry + code as frames on both
    n1.call.key(&mut n1.ami, "", &format!("{PAN}#"));
    n1.call.key(&mut n1.ami, "1230123", "");
    n2.call.key(&mut n2.ami, &format!("{PAN}#"), "");
    n2.call.key(&mut n2.ami, "1230123", "");
    for s in [&mut s1, &mut s2] {
        let v = s.until(T, |v| v["call"]["ready"] == true);
        assert_eq!(v["call"]["card_number"], "************4242", "{v}");
    }
    let m = svc.metrics_text();
    for want in [
        "secure_pay_agent_digits_total{node=\"ast1\",path=\"in-band\"}",
        "secure_pay_agent_digits_total{node=\"ast2\",path=\"host-frame\"}",
        "secure_pay_agent_fields_total{node=\"ast1\",field=\"security-code\",result=\"complete\"} 1",
        "secure_pay_agent_fields_total{node=\"ast2\",field=\"security-code\",result=\"complete\"} 1",
        "secure_pay_agent_sessions_active{node=\"ast1\"} 1",
        "secure_pay_agent_sessions_active{node=\"ast2\"} 1",
    ] {
        assert!(m.contains(want), "no {want} in:\n{m}");
    }
    assert!(!m.contains("424242") && !m.contains("1230"), "{m}");

    // node 2 stops: only its page loses the PBX; /readyz 503; node 1 still takes a payment
    let dir2 = n2.inst.dir.to_str().unwrap().to_string();
    drop(n2.ami);
    runner(&["stop", &dir2]);
    // (a graceful stop hangs up its calls first: the page sees its call end, then the link)
    assert!(wait_until(T, || !h2.pbx().connected));
    assert!(wait_until(T, || http(addr, "GET", "/readyz", &[], "")
        .status
        == 503));
    assert!(h1.pbx().connected);
    let r = p1.command(addr, r#"{"command":"submit"}"#);
    assert_eq!(r.status, 200, "submit on ast1: {}", r.body);
    s1.until(T, |v| v["call"]["submit"]["result"] == "success");
    let got = received.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        got[0]["cardnumber"], PAN,
        "control: the card reached the connector"
    );
    let r = p2.command(addr, r#"{"command":"submit"}"#);
    assert_ne!(r.status, 200, "ast2 is down: {}", r.body);
    drop(s2);

    // node 2 comes back: it reconnects on its own, /readyz is 200 again
    runner(&["start", &dir2]);
    let out = n2.inst.cli("module load res_secure_pay.so");
    assert!(out.contains("Loaded"), "module load: {out}");
    assert!(
        wait_until(T, || {
            let p = h2.pbx();
            p.connected && p.reconnects >= 1
        }),
        "no reconnect: {:?}",
        h2.pbx()
    );
    assert!(wait_until(T, || http(addr, "GET", "/readyz", &[], "")
        .status
        == 200));
    assert_eq!(h1.pbx().reconnects, 0, "ast1 never reconnected");
    // nothing the service gave out carries the card
    let snaps = format!(
        "{}\n{}",
        h1.snapshot(&n1.uid).unwrap().0,
        h2.snapshot(&n2.uid).unwrap().0
    );
    assert!(!snaps.contains("424242424242"), "{snaps}");
    drop(n1.ami);
}
