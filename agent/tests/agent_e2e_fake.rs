//! The agent page in headless Chromium (tests/agent_e2e/page.test.mjs) against the fake AMI
//! server, whose events come from the real capture engine (tests/agent_support). Covers the
//! page itself: keyboard start, secure notice, invalid reason, masked progress + brand without
//! re-creating rows, re-enter, complete, submit success with only the last 4, PBX loss and
//! reconnect, refused/unknown links. The same script runs against a real Asterisk in
//! tests/agent_e2e_asterisk.rs. Needs chromium + `npm install` in tests/agent_e2e (scripts/test).

mod agent_support;

use std::time::Duration;

use agent_support::{run_page_test, shot_dir, FakePbx, AMI_SECRET, AMI_USER, LINK_SECRET};
use secure_pay::core::payment::PaymentOutcome;
use secure_pay_agent::ami::AmiConfig;
use secure_pay_agent::sign::Signer;
use secure_pay_agent::{unix_now, Config, Service};

const CHAN: &str = "PJSIP/customer-00000007";
const UID: &str = "1700000000.7";

#[test]
#[ignore = "needs Debian chromium + playwright-core (scripts/test runs it with --ignored)"]
fn agent_page_in_chromium_against_fake_ami() {
    let pbx = FakePbx::start(0);
    pbx.add_channel_silently(CHAN, UID);
    let mut ami = AmiConfig::new(&pbx.addr(), AMI_USER, AMI_SECRET);
    ami.backoff_min = Duration::from_millis(100);
    ami.backoff_max = Duration::from_millis(500);
    let signer = Signer::new(LINK_SECRET).unwrap();
    let mut cfg = Config::new(ami, signer.clone());
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    let svc = Service::start(cfg).unwrap();
    assert!(agent_support::wait_until(Duration::from_secs(10), || svc
        .hub()
        .knows(UID)));
    let base = format!("http://{}", svc.addr());
    let exp = unix_now() + 900;
    let url = format!("{base}{}", signer.link(UID, exp));
    let bad = url.replace(UID, "1700000000.8");
    let unknown = format!("{base}{}", signer.link("1700000099.1", exp));
    let shots = shot_dir("fake");
    let mut pbx = Some(pbx);
    run_page_test(
        &[
            ("PAGE_URL", &url),
            ("BAD_URL", &bad),
            ("UNKNOWN_URL", &unknown),
            ("SHOT_DIR", shots.to_str().unwrap()),
            ("PBX_RESTART", "1"),
            ("XSS_STEP", "1"),
            ("ERROR_STEPS", "1"),
        ],
        |step| {
            let p = pbx.as_mut().unwrap();
            match step {
                "wrong-card" => p.key(UID, "4242424242424241#"),
                "partial-card" => p.key(UID, "424242"),
                "html-error" => p.emit(
                    UID,
                    "SecurePayError",
                    &[
                        ("SecurePay-Error-Code", "test"),
                        (
                            "SecurePay-Error-Message",
                            "<img src=x onerror=\"window.__xss=1\"> & <b>bold</b>",
                        ),
                    ],
                ),
                "full-card" => p.key(UID, "4242424242424242#1230123"),
                "timeout" => p.advance(UID, 16_000),
                "declined-card" => {
                    p.set_outcome(PaymentOutcome::Error {
                        code: "card_declined".into(),
                        message: "Your card was declined.".into(),
                    });
                    p.key(UID, "4242424242424242#1230123");
                }
                "pbx-down" => p.shutdown(),
                "pbx-up" => {
                    let restarted = pbx.take().unwrap().restart();
                    pbx = Some(restarted);
                }
                other => panic!("unknown step {other}"),
            }
        },
    );
    // the page asked for exactly these module commands (plus status resyncs)
    let cmds: Vec<_> = pbx
        .as_ref()
        .unwrap()
        .secure_pay_actions()
        .into_iter()
        .filter(|a| a.1 != "status")
        .map(|a| (a.1, a.2))
        .collect();
    let want: Vec<(String, String)> = [
        ("start", ""),
        ("capture", "payment-card-number"),
        ("submit", ""),
        ("restart", ""),
        ("submit", ""),
        ("stop", ""),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(cmds, want);
    assert!(shots.join("agent-06-success.png").is_file());
}
