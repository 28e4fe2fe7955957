//! Hostile sequence: channel names are reused (Asterisk's channel counter starts again when it
//! restarts), so a page of an old call must never drive the call that now has its name. The
//! service names the call in every `SecurePay` action by its Uniqueid (which carries its
//! creation time), never by the channel name.
//!
//! A minimal AMI plays Asterisk before and after a restart: customer X on
//! `PJSIP/cust-00000001`, then (after the restart its channel list still names X, so the
//! service cannot tell X is gone: the state after a missed hangup) customer Y on the same name.
//! X's page still holds its session.
mod agent_support;

use std::io::{BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_support::{open_session, wait_until, LINK_SECRET};
use secure_pay_agent::ami::{AmiConfig, Message};
use secure_pay_agent::sign::Signer;
use secure_pay_agent::{unix_now, Config, Service};

const NAME: &str = "PJSIP/cust-00000001";
const X: &str = "1700000000.1";
const Y: &str = "1700009999.1";
const T: Duration = Duration::from_secs(10);

/// One AMI connection: login accepted, CoreShowChannels lists X, every SecurePay action
/// recorded ("<Channel> <Command>") and answered with success; `first` is sent after the login.
/// (A refused list would end the connection: the service does not report a link up over a
/// call list it could not refresh.)
fn serve_one(s: TcpStream, first: &str, log: Arc<Mutex<Vec<String>>>) {
    let mut w = s.try_clone().unwrap();
    w.write_all(b"Asterisk Call Manager/11.0.0\r\n").unwrap();
    let mut r = BufReader::new(s);
    let mut sent_first = false;
    while let Ok(Some(m)) = Message::read_from(&mut r) {
        let id = m.get("ActionID").unwrap_or("").to_string();
        let reply = match m.get("Action").unwrap_or("") {
            "Login" => format!(
                "Response: Success\r\nActionID: {id}\r\nMessage: Authentication accepted\r\n\r\n"
            ),
            "CoreShowChannels" => format!(
                "Response: Success\r\nActionID: {id}\r\nEventList: start\r\n\r\n\
                 Event: CoreShowChannel\r\nActionID: {id}\r\nChannel: {NAME}\r\nUniqueid: {X}\r\nLinkedid: {X}\r\n\r\n\
                 Event: CoreShowChannelsComplete\r\nActionID: {id}\r\nEventList: Complete\r\nListItems: 1\r\n\r\n"
            ),
            "SecurePay" => {
                log.lock().unwrap().push(format!(
                    "{} {}",
                    m.get("Channel").unwrap_or(""),
                    m.get("Command").unwrap_or("")
                ));
                format!("Response: Success\r\nActionID: {id}\r\nMessage: ok\r\n\r\n")
            }
            _ => format!("Response: Success\r\nActionID: {id}\r\n\r\n"),
        };
        if w.write_all(reply.as_bytes()).is_err() {
            return;
        }
        if !sent_first && m.get("Action") == Some("Login") {
            sent_first = true;
            let _ = w.write_all(first.as_bytes());
        }
    }
}

fn newchannel(uid: &str) -> String {
    format!("Event: Newchannel\r\nChannel: {NAME}\r\nUniqueid: {uid}\r\nLinkedid: {uid}\r\n\r\n")
}

#[test]
fn an_old_page_never_drives_the_call_that_reuses_its_channel_name() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let log = Arc::new(Mutex::new(Vec::new()));
    let lg = Arc::clone(&log);
    let (restart, restarted) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let (s1, _) = l.accept().unwrap();
        let s1c = s1.try_clone().unwrap();
        let lg1 = Arc::clone(&lg);
        std::thread::spawn(move || serve_one(s1, &newchannel(X), lg1));
        restarted.recv().unwrap();
        let _ = s1c.shutdown(std::net::Shutdown::Both); // Asterisk restarts
        let (s2, _) = l.accept().unwrap();
        serve_one(s2, &newchannel(Y), lg);
    });
    let mut ami = AmiConfig::new(&addr, "u", "p");
    ami.backoff_min = Duration::from_millis(100);
    let signer = Signer::new(LINK_SECRET).unwrap();
    let mut cfg = Config::new(ami, Signer::new(LINK_SECRET).unwrap());
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    let svc = Service::start(cfg).unwrap();
    assert!(wait_until(T, || svc.hub().knows(X)));
    let a = svc.addr();
    let page_x = open_session(a, X, &signer.link(X, unix_now() + 3600));
    // Control: before the restart X's page drives X.
    let r = page_x.command(a, r#"{"command":"start"}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    restart.send(()).unwrap();
    assert!(wait_until(T, || svc.hub().knows(Y)));
    // X's page after the restart: whatever the service answers, the action must not name
    // the channel that is now Y's.
    let _ = page_x.command(a, r#"{"command":"cancel"}"#);
    let acts = log.lock().unwrap().clone();
    assert!(
        acts.iter().any(|a| a == &format!("{X} start")),
        "control: X's start reached the PBX, named by X's Uniqueid: {acts:?}"
    );
    for act in &acts {
        assert!(
            !act.starts_with(NAME),
            "a SecurePay action named the call by its reusable channel name: {acts:?}"
        );
        assert!(!act.starts_with(Y), "X's page drove Y's call: {acts:?}");
    }
}
