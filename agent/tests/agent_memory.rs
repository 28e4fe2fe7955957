//! Issue #10, `secure-pay-agent`: after a whole payment (card, expiry and security code keyed,
//! submitted, call hung up), a core dump of the LIVE service process (`gcore`) holds no run of
//! 8 consecutive digits of the card (as ASCII or as digit values 0-9) and not the security code
//! next to the expiry. The service only ever receives masked events, so this proves nothing in
//! the service reassembles or keeps card data.
//!
//! Controls: the scanner's self-test (both encodings, in a synthetic buffer), and a second dump
//! of the same process after a hostile client put the card number into request paths: that dump
//! does find the card as ASCII, so the scan reads the memory this process keeps its input in.
//!
//! Needs `gcore` (gdb; scripts/setup-deps installs it) and permission to ptrace the child (root,
//! or the same user with Yama ptrace_scope 0).

mod agent_support;
#[path = "../../tests/memscan/mod.rs"]
mod memscan;

use std::time::Duration;

use agent_support::{http, open_session, AgentProcess, FakePbx, LINK_SECRET};
use memscan::{dump, scan_core, CVV, EXPIRY, PAN};
use secure_pay_agent::sign::Signer;
use secure_pay_agent::unix_now;

const T: Duration = Duration::from_secs(15);
const CHAN: &str = "PJSIP/customer-00000007";
const UID: &str = "1700000000.7";

#[test]
fn the_agent_service_keeps_no_card_digit_in_memory() {
    memscan::self_test();
    let pbx = FakePbx::start(0);
    pbx.add_channel_silently(CHAN, UID);
    let svc = AgentProcess::spawn(
        &pbx,
        &[
            "--start-options",
            "fields=payment-card-number,expiration-date,security-code",
        ],
    );
    let (a, pid) = (svc.addr, svc.pid());
    let signer = Signer::new(LINK_SECRET).unwrap();
    let page = open_session(a, UID, &signer.link(UID, unix_now() + 600));
    let mut sse = page.events(a);
    sse.next_snapshot();
    let r = page.command(a, r#"{"command":"start"}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    pbx.key(UID, &format!("{PAN}#"));
    pbx.key(UID, EXPIRY);
    pbx.key(UID, CVV);
    let s = sse.until(T, |v| v["call"]["ready"] == true);
    assert_eq!(s["call"]["card_number"], "************9855", "{s}");
    let r = page.command(a, r#"{"command":"submit"}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    sse.until(T, |v| v["call"]["submit"]["result"] == "success");
    pbx.hangup(UID);
    sse.until(T, |v| v["call"]["ended"] == true);
    drop(sse);

    let found = scan_core(&dump(pid, "agent-after"));
    assert!(
        found.is_empty(),
        "card data in the agent service's memory after the call: {found:?}"
    );

    // Control: a hostile client writes the card into request paths; the service reads them
    // into its buffers, and the same scan of the same process finds them.
    for _ in 0..4 {
        let _ = http(a, "GET", &format!("/call/{PAN}?pan={PAN}"), &[], "");
    }
    let found = scan_core(&dump(pid, "agent-control"));
    assert!(
        found
            .iter()
            .any(|f| f.ends_with("ascii") && f.starts_with("card")),
        "control: the card sent in request paths was not found in the dump: {found:?}"
    );
    eprintln!("agent service dump after the call: clean; control dump found {found:?}");
}
