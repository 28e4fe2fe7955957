//! A real multi-node topology on 127.0.0.1 ports: Kamailio (Debian package, `dispatcher`
//! module, round robin, record-routing) as the SIP load balancer in front of TWO Asterisk 22
//! nodes with res_secure_pay; a "phone" Asterisk (no module) places the customers' SIP calls to
//! Kamailio, which spreads them over the nodes; ONE agent service follows both nodes. For each
//! call: its page (key `<node>~<Uniqueid>`) starts secure mode on the node that has the call,
//! the card keyed as RFC 4733 events and in-band tones is captured (masked on the page), and
//! the node's recordings of the customer and agent legs are clean by both independent judges
//! (multimon-ng, spandsp dtmf_rx), with a control key before start that they must hear.
//!
//! Needs root (Asterisk chroot), `kamailio` (scripts/setup-deps) and a res_secure_pay build:
//! ```text
//! cargo build --release --features asterisk --lib
//! cp target/release/libsecure_pay.so target/agent-e2e/res_secure_pay.so
//! SECUREPAY_AGENT_MODULE=target/agent-e2e/res_secure_pay.so \
//!   cargo test --release -p secure_pay_agent --test agent_kamailio -- --ignored --nocapture
//! ```

mod agent_support;
#[path = "../../tests/asterisk/mod.rs"]
mod asterisk;

use std::time::{Duration, Instant};

use agent_support::{http, open_session, wait_until, LINK_SECRET};
use asterisk::{free_udp_port, SIP_MODULES};
use asterisk::{multimon_digits, phone_dialplan, spandsp_digits, Call, Instance, BASE_MODULES};
use secure_pay_agent::ami::AmiConfig;
use secure_pay_agent::sign::{call_key, Signer};
use secure_pay_agent::{unix_now, Config, NodeConfig, PbxLink, Service};

const PAN: &str = "4242424242424242"; // Visa TEST number
const T: Duration = Duration::from_secs(30);

/// PJSIP on `my_port` with endpoints `(name, dtmf mode, peer port)` (G.711 µ-law).
fn pjsip_conf(my_port: u16, peers: &[(&str, &str, u16)], context: &str) -> String {
    let mut s =
        format!("[transport-udp]\ntype=transport\nprotocol=udp\nbind=127.0.0.1:{my_port}\n\n");
    for (name, dtmf, port) in peers {
        s.push_str(&format!(
            "[{name}]\ntype=endpoint\ncontext={context}\ndisallow=all\nallow=ulaw\ndtmf_mode={dtmf}\n\
             aors={name}\ndirect_media=no\nrtp_symmetric=yes\nmedia_address=127.0.0.1\n\
             bind_rtp_to_media_address=yes\n\n[{name}]\ntype=aor\ncontact=sip:127.0.0.1:{port}\n\n\
             [{name}]\ntype=identify\nendpoint={name}\nmatch=127.0.0.1\n\n"
        ));
    }
    s
}

/// Kamailio started by this test (killed by its PID on drop).
struct Kamailio {
    child: std::process::Child,
    dir: std::path::PathBuf,
}

impl Drop for Kamailio {
    /// Kamailio forks its workers: end the process group this test started it in (its own,
    /// by id): SIGTERM (kamailio stops its workers), then SIGKILL for anything left.
    fn drop(&mut self) {
        let Ok(pgid) = i32::try_from(self.child.id()) else {
            return;
        };
        // SAFETY: kill(2) with a negative pid signals only the process group `pgid`, the group
        // this test created for kamailio (process_group(0) at spawn).
        unsafe { libc::kill(-pgid, libc::SIGTERM) };
        let child = &mut self.child;
        wait_until(Duration::from_secs(3), || {
            matches!(child.try_wait(), Ok(Some(_)))
        });
        // SAFETY: as above (ESRCH when the group is already gone).
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

impl Kamailio {
    /// A stateless-routing, record-routing dispatcher on 127.0.0.1:`port` sending each new
    /// dialog to the next of `nodes` (round robin).
    fn start(port: u16, nodes: &[u16]) -> Kamailio {
        let dir = std::env::temp_dir().join(format!("sp-kamailio-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let list: String = nodes
            .iter()
            .map(|p| format!("1 sip:127.0.0.1:{p}\n"))
            .collect();
        std::fs::write(dir.join("dispatcher.list"), list).unwrap();
        let cfg = format!(
            r#"#!KAMAILIO
debug=2
log_stderror=yes
children=2
listen=udp:127.0.0.1:{port}
mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules/"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "dispatcher.so"
modparam("dispatcher", "list_file", "{list}")
modparam("dispatcher", "ds_ping_interval", 0)

request_route {{
    if (!mf_process_maxfwd_header("10")) {{
        sl_send_reply("483", "Too Many Hops");
        exit;
    }}
    if (has_totag()) {{
        if (loose_route()) {{
            t_relay();
            exit;
        }}
        if (is_method("ACK")) {{
            if (t_check_trans()) {{
                t_relay();
            }}
            exit;
        }}
        sl_send_reply("404", "Not here");
        exit;
    }}
    if (is_method("CANCEL")) {{
        if (t_check_trans()) {{
            t_relay();
        }}
        exit;
    }}
    if (is_method("INVITE")) {{
        record_route();
    }}
    if (!ds_select_dst("1", "4")) {{
        sl_send_reply("503", "No node");
        exit;
    }}
    xlog("L_INFO", "dispatch $rm $ru -> $du\n");
    t_relay();
    exit;
}}
"#,
            list = dir.join("dispatcher.list").display()
        );
        let cfg_path = dir.join("kamailio.cfg");
        std::fs::write(&cfg_path, cfg).unwrap();
        use std::os::unix::process::CommandExt;
        let child = std::process::Command::new("kamailio")
            .process_group(0)
            .args([
                "-f",
                cfg_path.to_str().unwrap(),
                "-DD",
                "-E",
                "-m",
                "64",
                "-M",
                "8",
            ])
            .args(["-Y", dir.to_str().unwrap()])
            .args(["-P", dir.join("kamailio.pid").to_str().unwrap()])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.join("kamailio.log")).unwrap())
            .spawn()
            .expect("kamailio (scripts/setup-deps installs it)");
        let k = Kamailio { child, dir };
        assert!(
            wait_until(Duration::from_secs(10), || k.log().contains("dispatch")
                || std::net::UdpSocket::bind(("127.0.0.1", port)).is_err()),
            "kamailio did not start: {}",
            k.log()
        );
        k
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("kamailio.log")).unwrap_or_default()
    }
}

struct Node {
    name: &'static str,
    inst: Instance,
    ami: asterisk::Ami,
}

#[test]
#[ignore = "needs root (Asterisk chroot), kamailio and a res_secure_pay build: see the header"]
fn kamailio_spreads_calls_over_two_asterisk_nodes_and_one_agent_service_follows_both() {
    agent_support::install_module("SECUREPAY_AGENT_MODULE");
    let modules = format!("{BASE_MODULES} {SIP_MODULES}");
    let (kport, phone_port) = (free_udp_port(), free_udp_port());
    let ports = [free_udp_port(), free_udp_port()];
    let rtp = |a: u16| format!("[general]\nrtpstart={a}\nrtpend={}\n", a + 400);
    // each node: calls from anything on 127.0.0.1 (Kamailio) land in sp-in, recorded
    let pbx_ext = format!(
        "{}\n[sp-in]\nexten => _call-.,1,Set(__CALLNAME=${{EXTEN:5}})\n same => n,Set(__RECORD=1)\n same => n,Goto(sp,inbound,1)\n",
        phone_dialplan()
    );
    let mut nodes = Vec::new();
    for (i, (name, port)) in [("ast1", ports[0]), ("ast2", ports[1])]
        .into_iter()
        .enumerate()
    {
        let sip = pjsip_conf(port, &[("lb", "rfc4733", kport)], "sp-in");
        let inst = Instance::start(
            &format!("kam{name}"),
            &pbx_ext,
            &[
                ("pjsip.conf", &sip),
                ("rtp.conf", &rtp(33000 + 1000 * i as u16)),
            ],
            &modules,
        );
        let ami = inst.ami();
        nodes.push(Node { name, inst, ami });
    }
    let kam = Kamailio::start(kport, &ports);
    // the customers' phone: one endpoint, the dispatcher
    let phone = Instance::start_with(
        "kamphone",
        &phone_dialplan(),
        &[
            (
                "pjsip.conf",
                &pjsip_conf(phone_port, &[("lb", "rfc4733", kport)], "sp"),
            ),
            ("rtp.conf", &rtp(36000)),
        ],
        &modules,
        false,
    );
    let mut fami = phone.ami();
    // one agent service for both nodes
    let signer = Signer::new(LINK_SECRET).unwrap();
    let mut cfg = Config::new(AmiConfig::new("127.0.0.1:1", "x", "x"), signer.clone());
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.nodes = nodes
        .iter()
        .map(|n| {
            let mut a = AmiConfig::new(&format!("127.0.0.1:{}", n.inst.ami_port), "test", "test");
            a.backoff_min = Duration::from_millis(200);
            NodeConfig {
                name: n.name.into(),
                link: PbxLink::Asterisk(a),
            }
        })
        .collect();
    let svc = Service::start(cfg).unwrap();
    let addr = svc.addr();
    assert!(wait_until(T, || http(addr, "GET", "/readyz", &[], "")
        .status
        == 200));

    let names = ["k1", "k2", "k3", "k4"];
    let mut served = Vec::new();
    for name in names {
        let t0 = Instant::now();
        Call::originate_channel(&mut fami, &format!("PJSIP/call-{name}@lb"), name, &[]);
        // which node did the dispatcher pick?
        let mut at = None;
        assert!(
            wait_until(T, || {
                at = nodes.iter().position(|n| {
                    n.ami.events("UserEvent").iter().any(|m| {
                        m.get("Call") == Some(name) && m.get("UserEvent") == Some("SPAgent")
                    })
                });
                at.is_some()
            }),
            "call {name} reached no node; kamailio: {}",
            kam.log()
        );
        let node = &mut nodes[at.unwrap()];
        let mut c = Call::wait_up(&node.ami, name);
        let inbound = node
            .ami
            .wait_event(
                T,
                "UserEvent",
                &[("UserEvent", "SPInbound"), ("Call", name)],
            )
            .unwrap();
        let uid = inbound.get("Uniqueid").expect("Uniqueid").to_string();
        let key = call_key(node.name, &uid);
        assert!(wait_until(T, || svc
            .node_hub(node.name)
            .unwrap()
            .knows(&uid)));
        // control: keys before start reach the agent (the judges must hear the 'A')
        c.key(&mut fami, "A", "A");
        std::thread::sleep(Duration::from_millis(700));
        // the page, through the one agent service
        let page = open_session(addr, &key, &signer.link(&key, unix_now() + 900));
        let r = page.command(addr, r#"{"command":"start"}"#);
        assert_eq!(r.status, 200, "{name} start: {}", r.body);
        let mut sse = page.events(addr);
        sse.until(T, |v| v["call"]["mode"] == "secure");
        // the card as RFC 4733 events, expiry + code in-band
        c.key(&mut fami, &format!("{PAN}#"), "1230123");
        let v = sse.until(T, |v| v["call"]["ready"] == true);
        assert_eq!(v["call"]["card_number"], "************4242", "{name}: {v}");
        let r = node
            .ami
            .action(&[("Action", "Hangup"), ("Channel", &c.customer)]);
        assert_eq!(r.get("Response"), Some("Success"));
        sse.until(T, |v| v["call"]["ended"] == true);
        std::thread::sleep(Duration::from_millis(1500));
        for wav in [format!("agent-{name}.wav"), format!("call-{name}.wav")] {
            let path = node.inst.monitor(&wav);
            let d = multimon_digits(&path);
            assert!(
                d.contains('A'),
                "{name}: control 'A' not heard in {wav}: {d:?}"
            );
            let leaked: String = d.chars().filter(|ch| *ch != 'A').collect();
            assert_eq!(leaked, "", "{name}: multimon-ng decoded digits from {wav}");
            let (sd, sp) = spandsp_digits(&path);
            for (judge, d) in [("spandsp", &sd), ("spandsp permissive", &sp)] {
                assert!(d.contains('A'), "{name}: control: {judge} in {wav}: {d:?}");
                let leaked: String = d.chars().filter(|ch| *ch != 'A').collect();
                assert_eq!(leaked, "", "{name}: {judge}: digits decoded from {wav}");
            }
        }
        println!(
            "kamailio multi-node: call {name} -> {} ({key}) captured, recordings clean, {:.1} s",
            node.name,
            t0.elapsed().as_secs_f64()
        );
        served.push(node.name);
    }
    // round robin over both nodes
    for n in ["ast1", "ast2"] {
        assert_eq!(
            served.iter().filter(|s| **s == n).count(),
            2,
            "calls per node: {served:?}"
        );
    }
    let m = svc.metrics_text();
    for n in ["ast1", "ast2"] {
        assert!(
            m.contains(&format!(
                "secure_pay_agent_fields_total{{node=\"{n}\",field=\"payment-card-number\",result=\"complete\"}} 2"
            )),
            "{m}"
        );
    }
    assert!(!m.contains("424242"), "{m}");
    drop(kam);
}
