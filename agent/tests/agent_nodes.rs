//! One agent service following several PBX nodes at once (an Asterisk AMI node and a FreeSWITCH
//! event-socket node, fakes on 127.0.0.1 whose events come from the real capture engine):
//! each call's key names its node, commands go to that node only, a node going down marks only
//! its own calls and reconnects on its own; `/healthz`, `/readyz` and `/metrics`; two replicas
//! serving the same links without sticky sessions; and the hostile side: a link for one node
//! cannot reach a call on another, unknown nodes are refused, metrics carry no digit.

mod agent_support;

use std::time::Duration;

use agent_support::fake_esl::{self, FakeEsl};
use agent_support::{
    http, open_session, wait_until, FakePbx, PageSession, AMI_SECRET, AMI_USER, LINK_SECRET,
};
use secure_pay_agent::ami::AmiConfig;
use secure_pay_agent::esl::EslConfig;
use secure_pay_agent::sign::{call_key, Signer};
use secure_pay_agent::{unix_now, Config, NodeConfig, PbxLink, Service};

const T: Duration = Duration::from_secs(10);
const CHAN: &str = "PJSIP/customer-00000001";
const UID: &str = "1700000000.1";
const START: &str = r#"{"command":"start"}"#;

fn ami_node(name: &str, pbx: &FakePbx) -> NodeConfig {
    let mut ami = AmiConfig::new(&pbx.addr(), AMI_USER, AMI_SECRET);
    ami.backoff_min = Duration::from_millis(100);
    ami.backoff_max = Duration::from_millis(300);
    NodeConfig {
        name: name.into(),
        link: PbxLink::Asterisk(ami),
    }
}

fn esl_node(name: &str, fake: &FakeEsl) -> NodeConfig {
    let mut esl = EslConfig::new(&format!("127.0.0.1:{}", fake.port), fake_esl::PASSWORD);
    esl.backoff_min = Duration::from_millis(100);
    esl.backoff_max = Duration::from_millis(300);
    NodeConfig {
        name: name.into(),
        link: PbxLink::FreeSwitch(esl),
    }
}

fn service(nodes: Vec<NodeConfig>) -> Service {
    let mut cfg = Config::new(
        AmiConfig::new("127.0.0.1:1", "unused", "unused"),
        Signer::new(LINK_SECRET).unwrap(),
    );
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.start_options = "fields=payment-card-number,expiration-date,security-code".into();
    cfg.nodes = nodes;
    Service::start(cfg).unwrap()
}

/// A fresh signed link for call key `key`.
fn link(key: &str) -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    Signer::new(LINK_SECRET)
        .unwrap()
        .link(key, unix_now() + 600 + n)
}

fn session(svc: &Service, key: &str) -> PageSession {
    open_session(svc.addr(), key, &link(key))
}

fn get(svc: &Service, path: &str) -> (u16, String) {
    let r = http(svc.addr(), "GET", path, &[], "");
    (r.status, r.body)
}

/// `uuid_secure_pay` commands the fake FreeSWITCH received.
fn esl_commands(fake: &FakeEsl) -> Vec<String> {
    fake.st
        .lock()
        .unwrap()
        .commands
        .iter()
        .filter(|c| c.contains("uuid_secure_pay") && !c.ends_with(" status"))
        .cloned()
        .collect()
}

/// Non-status `SecurePay` actions a fake Asterisk received.
fn actions(pbx: &FakePbx) -> Vec<(String, String, String)> {
    pbx.secure_pay_actions()
        .into_iter()
        .filter(|a| a.1 != "status")
        .collect()
}

fn esl_logins(fake: &FakeEsl) -> usize {
    fake.st
        .lock()
        .unwrap()
        .commands
        .iter()
        .filter(|c| c.starts_with("auth "))
        .count()
}

#[test]
fn one_service_follows_an_asterisk_and_a_freeswitch_node_and_a_node_down_marks_only_its_calls() {
    let mut ast = FakePbx::start(0);
    let fs = FakeEsl::start(0, fake_esl::new_st());
    let svc = service(vec![ami_node("ast1", &ast), esl_node("fs1", &fs)]);
    ast.add_channel(CHAN, UID);
    let (ast_hub, fs_hub) = (svc.node_hub("ast1").unwrap(), svc.node_hub("fs1").unwrap());
    assert!(wait_until(T, || ast_hub.knows(UID)), "ast1 call not learnt");
    assert!(
        wait_until(T, || fs_hub.knows(fake_esl::UUID)),
        "fs1 call not learnt"
    );
    assert!(!ast_hub.knows(fake_esl::UUID) && !fs_hub.knows(UID));
    assert!(wait_until(T, || get(&svc, "/readyz").0 == 200));
    let (_, ready) = get(&svc, "/readyz");
    assert!(ready.starts_with("ready\n"), "{ready}");
    assert!(ready.contains("node \"ast1\" asterisk up"), "{ready}");
    assert!(ready.contains("node \"fs1\" freeswitch up"), "{ready}");

    // each page drives its own node's call, and only that
    let ast_key = call_key("ast1", UID);
    let fs_key = call_key("fs1", fake_esl::UUID);
    assert_eq!(ast_key, "ast1~1700000000.1");
    let a = session(&svc, &ast_key);
    let f = session(&svc, &fs_key);
    let r = a.command(svc.addr(), START);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        actions(&ast),
        vec![(UID.to_string(), "start".to_string(), String::new())]
    );
    assert!(esl_commands(&fs).is_empty(), "{:?}", esl_commands(&fs));
    let r = f.command(svc.addr(), START);
    assert_eq!(r.status, 200, "{}", r.body);
    let cmds = esl_commands(&fs);
    assert_eq!(cmds.len(), 1, "{cmds:?}");
    assert!(
        cmds[0].starts_with(&format!("api uuid_secure_pay {} start", fake_esl::UUID)),
        "{cmds:?}"
    );
    assert_eq!(actions(&ast).len(), 1, "nothing more reached ast1");
    let mut a_sse = a.events(svc.addr());
    let mut f_sse = f.events(svc.addr());
    a_sse.until(T, |v| v["call"]["mode"] == "secure");
    fs.key("4242424242424242#");
    let v = f_sse.until(T, |v| {
        v["call"]["card_number"]
            .as_str()
            .is_some_and(|c| c.ends_with("4242"))
    });
    assert_eq!(v["pbx"]["connected"], true);

    // ast1 goes down: its page says so, fs1's page does not, /readyz flips to 503
    let fs_logins = esl_logins(&fs);
    ast.shutdown();
    a_sse.until(T, |v| v["pbx"]["connected"] == false);
    assert!(wait_until(T, || get(&svc, "/readyz").0 == 503));
    let (_, ready) = get(&svc, "/readyz");
    assert!(ready.starts_with("not ready\n"), "{ready}");
    assert!(ready.contains("node \"ast1\" asterisk down"), "{ready}");
    assert!(ready.contains("node \"fs1\" freeswitch up"), "{ready}");
    assert_eq!(
        get(&svc, "/healthz"),
        (200, "ok\n".to_string()),
        "still alive"
    );
    assert!(fs_hub.pbx().connected);
    // fs1's page keeps working while ast1 is down
    let r = f.command(svc.addr(), r#"{"command":"restart"}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    let m = svc.metrics_text();
    assert!(
        m.contains("secure_pay_agent_pbx_up{node=\"ast1\",kind=\"asterisk\"} 0"),
        "{m}"
    );
    assert!(
        m.contains("secure_pay_agent_pbx_up{node=\"fs1\",kind=\"freeswitch\"} 1"),
        "{m}"
    );

    // ast1 comes back: that node reconnects on its own; fs1 never reconnected
    let ast = ast.restart();
    assert!(ast.wait_logins(2, T), "ast1 did not reconnect");
    a_sse.until(T, |v| v["pbx"]["connected"] == true);
    assert!(wait_until(T, || get(&svc, "/readyz").0 == 200));
    assert_eq!(esl_logins(&fs), fs_logins, "fs1 did not reconnect");
    assert!(svc
        .metrics_text()
        .contains("secure_pay_agent_pbx_reconnects_total{node=\"ast1\",kind=\"asterisk\"} 1"));
    fs.shutdown();
}

#[test]
fn a_link_for_one_node_cannot_reach_a_call_on_another_and_unknown_nodes_are_refused() {
    let a = FakePbx::start(0);
    let b = FakePbx::start(0);
    let svc = service(vec![ami_node("a", &a), ami_node("b", &b)]);
    // the same Uniqueid on both nodes (Asterisk ids are only unique per system), and one
    // call on b only
    a.add_channel("PJSIP/a-1", UID);
    b.add_channel("PJSIP/b-1", UID);
    b.add_channel("PJSIP/b-2", "1700000000.2");
    let (ha, hb) = (svc.node_hub("a").unwrap(), svc.node_hub("b").unwrap());
    assert!(wait_until(T, || ha.knows(UID)
        && hb.knows(UID)
        && hb.knows("1700000000.2")));

    // control: a's link drives a's call, on a only
    let sa = session(&svc, "a~1700000000.1");
    let r = sa.command(svc.addr(), START);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(actions(&a).len(), 1);
    assert!(actions(&b).is_empty());

    // a's session cookie against b's call with the same id: refused, nothing reaches b
    let origin = format!("http://{}", svc.addr());
    let r = http(
        svc.addr(),
        "POST",
        "/call/b~1700000000.1/action",
        &[
            ("Origin", &origin),
            ("Cookie", &sa.cookie),
            ("X-SecurePay-Token", &sa.token),
            ("Content-Type", "application/json"),
            ("Sec-Fetch-Site", "same-origin"),
        ],
        START,
    );
    assert_eq!(r.status, 403, "{}", r.body);
    let r = http(
        svc.addr(),
        "GET",
        "/call/b~1700000000.1",
        &[("Cookie", &sa.cookie)],
        "",
    );
    assert_eq!(r.status, 403, "{}", r.body);

    // a link signed for a, its node renamed to b: the signature covers the node
    let l = link("a~1700000000.1");
    let r = http(
        svc.addr(),
        "GET",
        &l.replacen("/call/a~", "/call/b~", 1),
        &[],
        "",
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("signature"), "{}", r.body);

    // a validly signed link for a call that exists only on b, but naming a: not found on a
    let r = http(svc.addr(), "GET", &link("a~1700000000.2"), &[], "");
    assert_eq!(r.status, 404, "{}", r.body);

    // validly signed links naming no node or a node the service does not follow: refused
    for key in ["1700000000.1", "zz~1700000000.1"] {
        let r = http(svc.addr(), "GET", &link(key), &[], "");
        assert_eq!(r.status, 403, "{key}: {}", r.body);
        assert!(r.body.contains("node"), "{key}: {}", r.body);
    }
    // malformed node parts
    for key in [
        "a~",
        "~1700000000.1",
        "a~b~1700000000.1",
        "a b~1700000000.1",
    ] {
        let r = http(svc.addr(), "GET", &link(&key.replace(' ', "%20")), &[], "");
        assert_eq!(r.status, 403, "{key}: {}", r.body);
    }
    assert!(actions(&b).is_empty(), "{:?}", actions(&b));
    assert_eq!(actions(&a).len(), 1);
}

#[test]
fn two_replicas_serve_the_same_links_without_sticky_sessions() {
    let pbx = FakePbx::start(0);
    pbx.add_channel(CHAN, UID);
    // two replicas, same configuration and link secret, both following the node
    let r1 = service(vec![ami_node("ast1", &pbx)]);
    let r2 = service(vec![ami_node("ast1", &pbx)]);
    assert!(pbx.wait_logins(2, T));
    let key = call_key("ast1", UID);
    assert!(wait_until(T, || r1.node_hub("ast1").unwrap().knows(UID)
        && r2.node_hub("ast1").unwrap().knows(UID)));
    // the link is exchanged on replica 1; every later request goes to replica 2
    let s = session(&r1, &key);
    let page = http(
        r2.addr(),
        "GET",
        &format!("/call/{key}"),
        &[("Cookie", &s.cookie)],
        "",
    );
    assert_eq!(page.status, 200, "{}", page.body);
    let mut sse1 = s.events(r1.addr());
    let mut sse2 = s.events(r2.addr());
    let r = s.command(r2.addr(), START);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(actions(&pbx).len(), 1);
    // both replicas follow the call through the PBX's events
    pbx.key(UID, "4242424242424242#");
    for sse in [&mut sse1, &mut sse2] {
        sse.until(T, |v| {
            v["call"]["card_number"]
                .as_str()
                .is_some_and(|c| c.ends_with("4242"))
        });
    }
    // and a command through replica 1 with the same session works too
    let r = s.command(r1.addr(), r#"{"command":"restart"}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    // control: a session signed with another secret is refused by both
    let other = Signer::new(b"another-secret-0123456789abcdef").unwrap();
    let forged = other.session(&key, unix_now() + 600, &[7u8; 16]);
    for svc in [&r1, &r2] {
        let r = http(
            svc.addr(),
            "GET",
            &format!("/call/{key}"),
            &[("Cookie", &format!("sp_session={forged}"))],
            "",
        );
        assert_eq!(r.status, 403, "{}", r.body);
    }
}

/// Label values `/metrics` may carry: the node names and the fixed sets (histogram bucket
/// bounds are numbers the service chose, checked separately).
fn label_values_ok(text: &str, nodes: &[&str]) -> Result<(), String> {
    const FIXED: &[&str] = &[
        "asterisk",
        "freeswitch",
        "unreported",
        "in-band",
        "rfc4733",
        "sip-info",
        "host-frame",
        "other",
        "payment-card-number",
        "expiration-date",
        "security-code",
        "postal-code",
        "reference",
        "amount",
        "complete",
        "invalid",
        "pending",
        "success",
        "error",
        "unknown",
    ];
    const BOUNDS: &[&str] = &[
        "0.05", "0.1", "0.2", "0.4", "0.8", "1.6", "3.2", "6.4", "12.8", "25.6", "51.2", "+Inf",
    ];
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(labels) = line.split_once('{').and_then(|(_, r)| r.split_once('}')) else {
            continue;
        };
        for pair in labels.0.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').ok_or(format!("bad label {pair:?}"))?;
            let v = v.trim_matches('"');
            let ok = if k == "le" {
                BOUNDS.contains(&v)
            } else {
                FIXED.contains(&v) || nodes.contains(&v)
            };
            if !ok {
                return Err(format!("label {k}={v:?} in {line:?}"));
            }
        }
    }
    Ok(())
}

fn sample(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sample {name_and_labels} in:\n{text}"))
}

#[test]
fn metrics_count_a_payment_per_node_and_carry_no_digit() {
    let pbx = FakePbx::start(0);
    pbx.add_channel(CHAN, UID);
    let svc = service(vec![ami_node("ast1", &pbx)]);
    assert!(wait_until(T, || svc.node_hub("ast1").unwrap().knows(UID)));
    let key = call_key("ast1", UID);
    let s = session(&svc, &key);
    let mut sse = s.events(svc.addr());
    assert_eq!(s.command(svc.addr(), START).status, 200);
    sse.until(T, |v| v["call"]["mode"] == "secure");
    let (st, m) = get(&svc, "/metrics");
    assert_eq!(st, 200);
    assert_eq!(
        sample(&m, "secure_pay_agent_sessions_active{node=\"ast1\"}"),
        1.0
    );
    pbx.key(UID, "4242424242424242#");
    pbx.key(UID, "1230");
    pbx.key(UID, "123");
    let v = sse.until(T, |v| v["call"]["ready"] == true);
    // control: the card really went through (the page shows its masked last four)
    assert!(
        v["call"]["card_number"]
            .as_str()
            .is_some_and(|c| c.ends_with("4242")),
        "{v}"
    );
    assert_eq!(s.command(svc.addr(), r#"{"command":"submit"}"#).status, 200);
    sse.until(T, |v| v["call"]["submit"]["result"] == "success");
    let r = http(svc.addr(), "GET", "/metrics", &[], "");
    assert_eq!(r.status, 200);
    assert!(
        r.header("Content-Type")
            .is_some_and(|t| t.starts_with("application/openmetrics-text")),
        "{:?}",
        r.headers
    );
    let m = r.body;
    assert!(m.trim_end().ends_with("# EOF"), "{m}");
    // the fake PBX reports every key as RFC 4733; the card's 16 and the expiry's digits (the
    // security code sends no progress event), never the terminator
    let digits = sample(
        &m,
        "secure_pay_agent_digits_total{node=\"ast1\",path=\"rfc4733\"}",
    );
    assert!((16.0..=20.0).contains(&digits), "{m}");
    assert!(!m.contains("path=\"unreported\""), "{m}");
    for f in ["payment-card-number", "expiration-date", "security-code"] {
        assert_eq!(
            sample(
                &m,
                &format!(
                    "secure_pay_agent_fields_total{{node=\"ast1\",field=\"{f}\",result=\"complete\"}}"
                )
            ),
            1.0,
            "{m}"
        );
    }
    for res in ["pending", "success"] {
        assert_eq!(
            sample(
                &m,
                &format!("secure_pay_agent_submits_total{{node=\"ast1\",result=\"{res}\"}}")
            ),
            1.0,
            "{m}"
        );
    }
    assert_eq!(
        sample(
            &m,
            "secure_pay_agent_connector_latency_seconds_count{node=\"ast1\"}"
        ),
        1.0
    );
    assert_eq!(
        sample(
            &m,
            "secure_pay_agent_pbx_up{node=\"ast1\",kind=\"asterisk\"}"
        ),
        1.0
    );
    // no digit, no card-derived label: every label value is a node name or from a fixed set
    assert!(
        !m.contains("4242424242424242") && !m.contains("************"),
        "{m}"
    );
    label_values_ok(&m, &["ast1"]).unwrap();
    // control: the check sees a card-derived label when there is one
    assert!(label_values_ok("x_total{node=\"ast1\",path=\"4242\"} 1", &["ast1"]).is_err());
    assert!(label_values_ok("x_bucket{node=\"ast1\",le=\"4242\"} 1", &["ast1"]).is_err());
    // the call ends: no active session left
    pbx.hangup(UID);
    assert!(wait_until(T, || svc
        .metrics_text()
        .contains("secure_pay_agent_sessions_active{node=\"ast1\"} 0")));
}

/// Runs `secure-pay-agent` with `args` and the link secret; (exit status, stdout, stderr).
fn run_bin(args: &[&str], envs: &[(&str, &str)]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_secure-pay-agent"))
        .args(args)
        .envs(envs.iter().copied())
        .env(
            "SECURE_PAY_AGENT_SECRET",
            std::str::from_utf8(LINK_SECRET).unwrap(),
        )
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_binary_follows_the_nodes_of_its_config_file_and_mints_node_links() {
    let a = FakePbx::start(0);
    let b = FakePbx::start(0);
    a.add_channel(CHAN, UID);
    let dir = std::env::temp_dir().join(format!("sp-agent-nodes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret = dir.join("ami.secret");
    std::fs::write(&secret, format!("{AMI_SECRET}\n")).unwrap();
    let conf = dir.join("agent.toml");
    std::fs::write(
        &conf,
        format!(
            "listen = \"127.0.0.1:0\"\n\
             [[node]]\nname = \"ast1\"\ntype = \"asterisk\"\naddr = \"{}\"\nuser = \"{AMI_USER}\"\nsecret_file = \"{}\"\n\
             [[node]]\nname = \"ast2\"\ntype = \"asterisk\"\naddr = \"{}\"\nuser = \"{AMI_USER}\"\nsecret_env = \"SP_TEST_AST2\"\n",
            a.addr(),
            secret.display(),
            b.addr()
        ),
    )
    .unwrap();
    // refusals: --config with --ami, a node secret that is not there
    let (st, _, err) = run_bin(
        &["serve", "--config", conf.to_str().unwrap(), "--ami", "x:1"],
        &[("SP_TEST_AST2", AMI_SECRET)],
    );
    assert_eq!(st, 2, "{err}");
    assert!(err.contains("leave out --ami"), "{err}");
    let (st, _, err) = run_bin(&["serve", "--config", conf.to_str().unwrap()], &[]);
    assert_eq!(st, 2, "{err}");
    assert!(err.contains("SP_TEST_AST2"), "{err}");
    // the service: both nodes logged in, JSON log lines
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_secure-pay-agent"))
        .args([
            "serve",
            "--config",
            conf.to_str().unwrap(),
            "--log-format",
            "json",
        ])
        .env(
            "SECURE_PAY_AGENT_SECRET",
            std::str::from_utf8(LINK_SECRET).unwrap(),
        )
        .env("SP_TEST_AST2", AMI_SECRET)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let err = child.stderr.take().unwrap();
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let l2 = std::sync::Arc::clone(&log);
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(err).lines() {
            let Ok(line) = line else { break };
            l2.lock().unwrap().push_str(&(line + "\n"));
        }
    });
    let mut addr: Option<std::net::SocketAddr> = None;
    let found = wait_until(T, || {
        addr = log
            .lock()
            .unwrap()
            .split("listening on http://")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|a| a.parse().ok());
        addr.is_some()
    });
    let ok = found && a.wait_logins(1, T) && b.wait_logins(1, T);
    let ready = ok
        && wait_until(T, || {
            http(addr.unwrap(), "GET", "/readyz", &[], "").status == 200
        });
    let l = run_bin(
        &["link", "--call", UID, "--node", "ast1", "--base", ""],
        &[],
    );
    let bad = run_bin(&["link", "--call", UID, "--node", "a~b"], &[]);
    let page = addr.map(|addr| http(addr, "GET", l.1.trim(), &[], ""));
    let _ = child.kill();
    let _ = child.wait();
    let _ = reader.join();
    let log = log.lock().unwrap().clone();
    assert!(ready, "not ready: {log}");
    assert!(l.1.starts_with("/call/ast1~1700000000.1?exp="), "{l:?}");
    assert_eq!(bad.0, 2, "{bad:?}");
    let page = page.unwrap();
    assert_eq!(page.status, 200, "{}", page.body);
    for line in log.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
        assert!(v["level"].is_string() && v["msg"].is_string(), "{line}");
    }
    assert!(log.contains("node ast1 = Asterisk AMI"), "{log}");
    assert!(log.contains("node ast2 = Asterisk AMI"), "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}
