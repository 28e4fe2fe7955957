//! A fake FreeSWITCH event socket on 127.0.0.1 whose `secure_pay::*` events come from the real
//! capture engine, in ESL plain format (URL-encoded values): one channel ([`UUID`]), the
//! `uuid_secure_pay` API, `show channels as json`, a restart and a freeze (tests/agent_esl.rs,
//! tests/agent_nodes.rs).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::capture_config;
use secure_pay::core::capture::{parse_command, Command, DigitSource, Session};
use secure_pay::core::digit::Digit;
use secure_pay::core::events::Event;
use secure_pay::core::payment::PaymentOutcome;

pub const UUID: &str = "6f0c2a7e-1b7d-4a53-9a65-3c1f3f4b2a10";
pub const NAME: &str = "sofia/internal/1000@127.0.0.1";
pub const PASSWORD: &str = "ClueCon-test";
pub const T: Duration = Duration::from_secs(10);

pub fn enc(s: &str) -> String {
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

pub struct St {
    pub session: Option<Session>,
    pub clients: Vec<TcpStream>,
    pub commands: Vec<String>,
    pub clock: u64,
    /// Other channels on this "PBX" (listed by `show channels as json`).
    pub extra_channels: usize,
    /// Stop answering (the PBX host vanished; the socket stays open).
    pub frozen: bool,
    /// Leave this many more `show channels as json` unanswered (a resync that times out).
    pub unanswered_lists: u32,
}

pub fn new_st() -> Arc<Mutex<St>> {
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
        unanswered_lists: 0,
    }))
}

/// One `show channels as json` row with the columns FreeSWITCH 1.10 lists (~1.5 KiB).
pub fn channel_row(uuid: &str, name: &str) -> String {
    format!(
        r#"{{"uuid":"{uuid}","direction":"inbound","created":"2026-12-06 05:00:00","created_epoch":"1796533200","name":"{name}","state":"CS_EXECUTE","cid_name":"Customer","cid_num":"1000","ip_addr":"127.0.0.1","dest":"9196","application":"park","application_data":"","dialplan":"XML","context":"default","read_codec":"PCMU","read_rate":"8000","read_bit_rate":"64000","write_codec":"PCMU","write_rate":"8000","write_bit_rate":"64000","secure":"","hostname":"pbx-load-test-host.example.com","presence_id":"1000@127.0.0.1","presence_data":"","accountcode":"","callstate":"ACTIVE","callee_name":"Outbound Call","callee_num":"9196","callee_direction":"","call_uuid":"{uuid}","sent_callee_name":"","sent_callee_num":"","initial_cid_name":"Customer","initial_cid_num":"1000","initial_ip_addr":"127.0.0.1","initial_dest":"9196","initial_dialplan":"XML","initial_context":"default","padding":"{pad}"}}"#,
        pad = "x".repeat(600)
    )
}

pub fn event_frame(name: &str, ev: Option<&Event>) -> String {
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

pub fn publish(st: &mut St, evs: &[Event]) {
    for e in evs {
        let f = event_frame(e.name(), Some(e));
        st.clients.retain_mut(|c| c.write_all(f.as_bytes()).is_ok());
    }
}

pub fn api(st: &mut St, cmd: &str) -> String {
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

pub struct FakeEsl {
    pub port: u16,
    pub st: Arc<Mutex<St>>,
    pub stop: Arc<AtomicBool>,
}

impl FakeEsl {
    pub fn start(port: u16, st: Arc<Mutex<St>>) -> FakeEsl {
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

    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        for c in self.st.lock().unwrap().clients.drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }

    pub fn key(&self, digits: &str) {
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

pub fn serve(st: Arc<Mutex<St>>, s: TcpStream) {
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
            if a == "show channels as json" && g.unanswered_lists > 0 {
                g.unanswered_lists -= 1;
                continue;
            }
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
