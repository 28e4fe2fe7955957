//! Hostile input for the readers of the agent service (AMI, event socket, HTTP): arbitrary
//! bytes and structured near-valid streams (wrong lengths, huge numbers, broken encodings,
//! over-long lines, every event name) must give errors or parsed values within the readers'
//! limits, never a panic. Runs under stable in CI (proptest); the same entry points are the
//! cargo-fuzz targets fuzz/fuzz_targets/agent_{ami,esl,http}.rs for coverage-guided runs.

use proptest::prelude::*;
use secure_pay_agent::fuzzing::{fuzz_ami, fuzz_esl, fuzz_http};

fn pick<T: Clone + std::fmt::Debug + 'static>(v: &'static [T]) -> impl Strategy<Value = T> {
    proptest::sample::select(v)
}

const EVENTS: &[&str] = &[
    "SecurePayStart",
    "SecurePayCapture",
    "SecurePayDigit",
    "SecurePayField",
    "SecurePayComplete",
    "SecurePaySubmit",
    "SecurePayCancel",
    "SecurePayStop",
    "SecurePayError",
    "SecurePayStatus",
    "SecurePay",
    "SecurePayÄ",
    "Newchannel",
    "Hangup",
    "Rename",
    "CoreShowChannel",
];
const KEYS: &[&str] = &[
    "Uniqueid",
    "Channel",
    "Linkedid",
    "Newname",
    "SecurePay-Field",
    "SecurePay-Required",
    "SecurePay-Captured",
    "SecurePay-Length",
    "SecurePay-Attempt",
    "SecurePay-Max-Attempts",
    "SecurePay-Masked",
    "SecurePay-Result",
    "SecurePay-State",
    "SecurePay-Card-Number",
    "SecurePay-Error-Code",
    "Reason",
    "ActionID",
    "Response",
];
const VALUES: &[&str] = &[
    "1700000000.1",
    "1700000000.2",
    "",
    "payment-card-number",
    "security-code,expiration-date,,",
    "4294967296",
    "-1",
    "99999999999999999999999",
    "pending",
    "success",
    "finished",
    "complete",
    "submitting",
    "Ü\u{0}\u{7f}",
    ":::",
    "%zz%",
];

fn ami_line() -> impl Strategy<Value = String> {
    prop_oneof![
        pick(EVENTS).prop_map(|e| format!("Event: {e}\r\n")),
        (pick(KEYS), pick(VALUES)).prop_map(|(k, v)| format!("{k}: {v}\r\n")),
        Just("\r\n".to_string()),
        Just("\n".to_string()),
        Just(format!("Channel: {}\r\n", "x".repeat(9000))),
        "[^\n]{0,40}\n",
    ]
}

fn esl_frame() -> impl Strategy<Value = String> {
    let event = proptest::collection::vec(
        prop_oneof![
            Just("Event-Name: CUSTOM\n".to_string()),
            Just("Event-Name: CHANNEL_DESTROY\n".to_string()),
            Just("Event-Name: CHANNEL_CREATE\n".to_string()),
            pick(&[
                "secure_pay%3A%3Adigit",
                "secure_pay%3A%3A",
                "secure_pay::%C3",
                "x"
            ])
            .prop_map(|s| format!("Event-Subclass: {s}\n")),
            pick(VALUES).prop_map(|v| format!("Unique-ID: {v}\n")),
            (pick(KEYS), pick(VALUES)).prop_map(|(k, v)| format!("{k}: {v}\n")),
            "[^\n]{0,30}\n",
        ],
        0..12,
    )
    .prop_map(|l| l.concat() + "\n");
    let json = prop_oneof![
        Just(r#"{"row_count":1,"rows":[{"uuid":"a","name":"b","call_uuid":"c"}]}"#.to_string()),
        Just(r#"{"rows":[{"uuid":1}]}"#.to_string()),
        Just(r#"{"rows":null}"#.to_string()),
        Just("-ERR SQL disabled".to_string()),
        "[ -~]{0,60}",
    ];
    (
        prop_oneof![event, json],
        pick(&[
            "text/event-plain",
            "api/response",
            "command/reply",
            "text/disconnect-notice",
            "",
        ]),
        prop_oneof![
            Just(None),
            Just(Some("99999999999999999999".to_string())),
            Just(Some("-5".to_string())),
            Just(Some("70000000".to_string())),
            (0usize..200).prop_map(|n| Some(n.to_string())),
        ],
    )
        .prop_map(|(body, ct, len)| {
            let len = len.unwrap_or_else(|| body.len().to_string());
            format!("Content-Type: {ct}\nContent-Length: {len}\n\n{body}")
        })
}

fn http_request() -> impl Strategy<Value = String> {
    (
        pick(&["GET", "POST", "PUT", "", "GET GET"]),
        pick(&[
            "/call/1700000000.1?exp=1&sig=ab",
            "/call/x/events",
            "/%zz?&&==&",
            "/",
            "*",
            "",
        ]),
        pick(&["HTTP/1.1", "HTTP/2", "", "HTTP/1.0 extra"]),
        proptest::collection::vec(
            prop_oneof![
                pick(&["0", "4096", "4097", "-1", "99999999999999999999", "x"])
                    .prop_map(|v| format!("Content-Length: {v}\r\n")),
                Just("Transfer-Encoding: chunked\r\n".to_string()),
                Just("Cookie: sp_session=1.2.3; sp_session=;;=\r\n".to_string()),
                Just("no colon\r\n".to_string()),
                Just(format!("X-Long: {}\r\n", "a".repeat(17_000))),
                "[ -~]{0,30}\r\n",
            ],
            0..70,
        ),
        "[ -~]{0,100}",
    )
        .prop_map(|(m, t, v, h, body)| format!("{m} {t} {v}\r\n{}\r\n{body}", h.concat()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn ami_reader_takes_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        fuzz_ami(&data).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn ami_reader_takes_hostile_event_streams(lines in proptest::collection::vec(ami_line(), 0..80)) {
        fuzz_ami(lines.concat().as_bytes()).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn esl_reader_takes_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        fuzz_esl(&data).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn esl_reader_takes_hostile_frames(frames in proptest::collection::vec(esl_frame(), 0..12)) {
        fuzz_esl(frames.concat().as_bytes()).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn http_parser_takes_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        fuzz_http(&data).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn http_parser_takes_hostile_requests(req in http_request()) {
        fuzz_http(req.as_bytes()).map_err(TestCaseError::fail)?;
    }
}

/// Controls: the entry points really parse and apply what they get (a fuzz loop over a reader
/// that rejects everything would prove nothing).
#[test]
fn the_fuzz_entry_points_parse_valid_input() {
    use secure_pay_agent::ami::Message;
    use secure_pay_agent::http::parse_request;
    let ami = "Event: SecurePayStart\r\nUniqueid: 1.1\r\nChannel: PJSIP/a\r\nSecurePay-Required: payment-card-number\r\n\r\n";
    let m = Message::read_from(&mut std::io::Cursor::new(ami))
        .unwrap()
        .unwrap();
    assert_eq!(m.get("SecurePay-Required"), Some("payment-card-number"));
    assert!(fuzz_ami(ami.as_bytes()).is_ok());
    let body = "Event-Name: CUSTOM\nEvent-Subclass: secure_pay%3A%3Astart\nUnique-ID: u1\n\n";
    let esl = format!(
        "Content-Type: text/event-plain\nContent-Length: {}\n\n{body}",
        body.len()
    );
    let f = secure_pay_agent::esl::read_frame(&mut std::io::Cursor::new(esl.as_bytes()))
        .unwrap()
        .unwrap();
    assert_eq!(
        secure_pay_agent::esl::event_message(&f.body)
            .unwrap()
            .get("Event"),
        Some("SecurePayStart")
    );
    assert!(fuzz_esl(esl.as_bytes()).is_ok());
    let req = "POST /call/1.1/action HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}";
    let r = parse_request(&mut std::io::Cursor::new(req)).unwrap();
    assert_eq!((r.method.as_str(), r.body.as_slice()), ("POST", &b"{}"[..]));
    assert!(fuzz_http(req.as_bytes()).is_ok());
}
