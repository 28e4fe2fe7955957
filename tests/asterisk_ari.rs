//! ARI (issue #13) on a REAL Asterisk 22 with res_ari and its HTTP server on 127.0.0.1, driven
//! by a real ARI client (tests/ari/ari_client.py: PyPI `websockets` + `requests`, installed by
//! scripts/setup-deps). The Stasis application controls the customer's leg; it starts secure
//! mode through `SECURE_PAY(start)` (ARI `POST /channels/{id}/variable`), the customer keys a
//! card, and the application receives the masked progress as `ChannelUserevent` events, never a
//! digit. Control: before the start, the same application sees the customer's key as
//! `ChannelDtmfReceived`. The shipped dialplan/asterisk/http.conf and ari.conf are used as is
//! (only the port is made free).
#![cfg(feature = "asterisk")]

mod asterisk;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use asterisk::{phone_dialplan, repo, Call, Instance, BASE_MODULES};

const PAN: &str = "4242424242424242";
const ARI_MODULES: &str = "res_sorcery_config.so res_sorcery_memory.so res_http_websocket.so \
res_websocket_client.so res_stasis.so \
res_stasis_recording.so res_stasis_playback.so res_stasis_answer.so res_stasis_snoop.so \
res_ari.so res_ari_model.so \
res_ari_channels.so res_ari_events.so app_stasis.so";

struct Client {
    child: Child,
    lines: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl Client {
    fn start(port: u16) -> Client {
        let mut child = Command::new("python3")
            .arg(repo().join("tests/ari/ari_client.py"))
            .args([&format!("127.0.0.1:{port}"), "payapp", "change-me", "payapp"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 tests/ari/ari_client.py (needs PyPI websockets + requests: scripts/setup-deps)");
        let out = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let l = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { return };
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    l.lock().unwrap().push(v);
                }
            }
        });
        Client { child, lines }
    }

    fn wait(&self, what: &str, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(v) = self.lines.lock().unwrap().iter().find(|v| pred(v)) {
                return v.clone();
            }
            assert!(
                Instant::now() < end,
                "ARI client: no {what}: {:#?}",
                self.all()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn all(&self) -> Vec<serde_json::Value> {
        self.lines.lock().unwrap().clone()
    }

    fn setvar(&mut self, chan: &str, var: &str, value: &str) -> serde_json::Value {
        let n = self.all().len();
        writeln!(
            self.child.stdin.as_mut().unwrap(),
            "setvar {chan} {var} {value}"
        )
        .unwrap();
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(v) = self.all()[n..]
                .iter()
                .find(|v| v["rest"].is_number() && v["variable"] == var)
            {
                return v.clone();
            }
            assert!(Instant::now() < end, "no REST answer for {var}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = writeln!(self.child.stdin.as_mut().unwrap(), "quit");
        std::thread::sleep(Duration::from_millis(200));
        // only the process this test started, by its own handle
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ev_type(v: &serde_json::Value) -> &str {
    v["type"].as_str().unwrap_or("")
}

#[test]
fn ari_app_drives_secure_mode_and_gets_masked_progress_never_a_digit() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let http = std::fs::read_to_string(repo().join("dialplan/asterisk/http.conf"))
        .unwrap()
        .replace("bindport = 8088", &format!("bindport = {port}"));
    let ari = std::fs::read_to_string(repo().join("dialplan/asterisk/ari.conf")).unwrap();
    let inst = Instance::start(
        "ari",
        &phone_dialplan(),
        &[("http.conf", &http), ("ari.conf", &ari)],
        &format!("{BASE_MODULES} {ARI_MODULES}"),
    );
    let mut ami = inst.ami();
    let mut client = Client::start(port);
    client.wait("connection", |v| v["connected"] == true);

    let r = ami.action(&[
        ("Action", "Originate"),
        ("Channel", "Local/customer@sp"),
        ("Application", "Stasis"),
        ("Data", "payapp"),
        ("Variable", "__CALLNAME=ar1"),
        ("Async", "true"),
    ]);
    assert_eq!(r.get("Response"), Some("Success"), "{}", r.text());
    let start = client.wait("StasisStart", |v| ev_type(v) == "StasisStart");
    let chan_id = start["channel"]["id"].as_str().unwrap().to_owned();
    let chan_name = start["channel"]["name"].as_str().unwrap().to_owned();
    let mut c = Call::for_name("ar1", &chan_name);

    // control: without secure mode the app sees the customer's key as ChannelDtmfReceived
    c.key(&mut ami, "A", "");
    client.wait("control ChannelDtmfReceived A", |v| {
        ev_type(v) == "ChannelDtmfReceived" && v["digit"] == "A"
    });

    // the app starts secure mode through the SECURE_PAY() function
    let rest = client.setvar(&chan_id, "SECURE_PAY(start)", "");
    assert_eq!(rest["rest"], 204, "{rest}");
    client.wait("SecurePayStart user event", |v| {
        ev_type(v) == "ChannelUserevent" && v["eventname"] == "SecurePayStart"
    });
    let mark = client.all().len();
    c.key(&mut ami, &format!("{PAN}#1230123"), "");
    let done = client.wait("SecurePayComplete user event", |v| {
        ev_type(v) == "ChannelUserevent" && v["eventname"] == "SecurePayComplete"
    });
    let card = done["userevent"]["SecurePay-Card-Number"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(card.ends_with("4242") && card.len() == 16, "{done}");
    std::thread::sleep(Duration::from_millis(500));
    let after = client.all()[mark..].to_vec();
    let digits = after
        .iter()
        .filter(|v| ev_type(v) == "ChannelUserevent" && v["eventname"] == "SecurePayDigit")
        .count();
    assert!(
        digits >= 16,
        "masked progress: {digits} SecurePayDigit events"
    );
    let dtmf: Vec<_> = after
        .iter()
        .filter(|v| ev_type(v) == "ChannelDtmfReceived")
        .collect();
    assert!(
        dtmf.is_empty(),
        "the ARI app got digits while secure: {dtmf:?}"
    );
    for v in client.all() {
        let t = v.to_string();
        assert!(
            !t.contains(PAN) && !t.contains("1230123"),
            "digits over ARI: {t}"
        );
    }

    // the app stops it; a bad command is refused by the function (SECUREPAY_STATUS=ERROR)
    let rest = client.setvar(&chan_id, "SECURE_PAY(stop)", "");
    assert_eq!(rest["rest"], 204, "{rest}");
    client.wait("SecurePayStop user event", |v| {
        ev_type(v) == "ChannelUserevent" && v["eventname"] == "SecurePayStop"
    });
    let r = ami.action(&[("Action", "Hangup"), ("Channel", &chan_name)]);
    assert_eq!(r.get("Response"), Some("Success"), "{}", r.text());
}
