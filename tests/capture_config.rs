//! Config: every key's good and bad values (error names the key and what is allowed), sections,
//! flat connector keys, option strings, cross-key checks and connector selection.

use secure_pay::core::capture::{Brand, FieldKind, PanDisplay};
use secure_pay::core::config::Config;
use secure_pay::core::payment::PaymentMethod;
use secure_pay::core::suppress::MaskMode;

#[test]
fn every_bad_value_names_the_key_and_what_is_allowed() {
    // (key, bad value, text the message must contain)
    let table: &[(&str, &str, &str)] = &[
        (
            "fields",
            "payment-card-number,bank-account",
            "allowed: payment-card-number",
        ),
        ("fields", "", "at least one field"),
        ("fields", "cvv,security-code", "listed twice"),
        ("allowed_brands", "visa,optima", "allowed: visa, mastercard"),
        ("allowed_brands", " , ", "at least one card brand"),
        ("terminator", "5", "allowed: * # A B C D none"),
        ("terminator", "##", "allowed: * # A B C D none"),
        ("clear_key", "x", "allowed: * # A B C D none"),
        ("auto_advance", "maybe", "allowed: yes|no"),
        ("first_digit_timeout_ms", "999", "allowed: 1000..=300000"),
        ("inter_digit_timeout_ms", "100", "allowed: 500..=120000"),
        ("inter_digit_timeout_ms", "5s", "not a whole number"),
        ("inter_digit_timeout_ms", "-1", "not a whole number"),
        ("session_timeout_ms", "1000", "allowed: 10000..=7200000"),
        ("max_attempts", "0", "allowed: 1..=10"),
        ("max_attempts", "11", "allowed: 1..=10"),
        ("pan_display", "full", "allowed: last4|first6last4|none"),
        (
            "pan_display",
            "first8last4",
            "allowed: last4|first6last4|none",
        ),
        ("show_expiry", "2", "allowed: yes|no"),
        ("show_postal_code", "y", "allowed: yes|no"),
        ("show_generic", "", "allowed: yes|no"),
        ("postal_code_min_length", "0", "allowed: 1..=16"),
        ("postal_code_max_length", "17", "allowed: 1..=16"),
        ("reference_min_length", "0", "allowed: 1..=32"),
        ("reference_max_length", "33", "allowed: 1..=32"),
        ("amount_min_length", "0", "allowed: 1..=18"),
        ("amount_max_length", "19", "allowed: 1..=18"),
        ("expiry_max_years", "0", "allowed: 1..=50"),
        ("expiry_max_years", "51", "allowed: 1..=50"),
        ("dedup_window_ms", "2001", "allowed: 0..=2000"),
        ("repeat_window_ms", "81", "allowed: 0..=80"),
        ("charge_amount", "0", "allowed: 1..="),
        ("charge_amount", "12.50", "not a whole number"),
        ("mode", "mute", "allowed: silence|noise|beep"),
        ("lookahead_ms", "101", "allowed: 0..=100"),
        ("lookahead_ms", "forty", "not a whole number"),
        ("no_such_key", "1", "unknown key"),
        (
            "connector.acme.url",
            "ftp://x.example/pay",
            "not an https:// URL",
        ),
        ("connector.acme.url", "", "not an https:// URL"),
        (
            "connector.acme.url",
            "http://127.0.0.1:8080/pay",
            "not an https:// URL",
        ),
        (
            "connector.acme.method",
            "refund",
            "allowed: charge|tokenize",
        ),
        ("connector.acme.timeout_ms", "50", "allowed: 100..=120000"),
        ("connector.acme.currency_code", "EURO", "ISO 4217"),
        ("connector.acme.currency_code", "E1R", "ISO 4217"),
        (
            "connector.acme.token_type",
            "forever",
            "allowed: reusable|one-time|payment-method",
        ),
        ("connector.acme.colour", "blue", "unknown connector key"),
        ("connector.acme", "x", "expected connector.<profile>.<key>"),
        (
            "connector.bad name.url",
            "https://a.example/",
            "profile names",
        ),
        ("connector.none.url", "https://a.example/", "reserved"),
    ];
    for (key, val, want) in table {
        let mut c = Config::default();
        let before = c.clone();
        let e = c
            .set(key, val)
            .expect_err(&format!("{key}={val} must be refused"));
        let msg = e.to_string();
        assert!(msg.contains("secure_pay config key '"), "{msg}");
        let key_root = key.split('.').take(2).collect::<Vec<_>>().join(".");
        assert!(
            msg.contains(&key_root),
            "{key}: message does not name the key: {msg}"
        );
        assert!(msg.contains(want), "{key}={val}: {msg}");
        // A refused value changes nothing but (at most) creating an empty connector profile.
        assert_eq!(c.capture, before.capture, "{key}");
        assert_eq!(c.masker, before.masker, "{key}");
    }
}

#[test]
fn password_is_never_echoed() {
    let mut c = Config::default();
    c.set("connector.acme.password", "s3cret-PW").unwrap();
    let e = c.set("connector.acme.nosuch", "s3cret-PW").unwrap_err();
    assert!(!e.to_string().contains("s3cret"));
}

#[test]
fn good_values_are_applied() {
    let mut c = Config::default();
    let pairs: &[(&str, &str)] = &[
        (
            "fields",
            "expiration-date, payment-card-number ,cvv,postal-code,reference,amount",
        ),
        ("Allowed-Brands", "visa mastercard,Diners"),
        ("terminator", "*"),
        ("clear_key", "#"),
        ("auto_advance", "no"),
        ("first_digit_timeout_ms", "20000"),
        ("inter-digit-timeout-ms", "3000"),
        ("session_timeout_ms", "120000"),
        ("max_attempts", "2"),
        ("pan_display", "FIRST6LAST4"),
        ("show_expiry", "yes"),
        ("show_postal_code", "on"),
        ("show_generic", "0"),
        ("postal_code_min_length", "5"),
        ("postal_code_max_length", "9"),
        ("reference_min_length", "4"),
        ("reference_max_length", "12"),
        ("amount_min_length", "2"),
        ("amount_max_length", "8"),
        ("expiry_max_years", "10"),
        ("dedup_window_ms", "250"),
        ("repeat_window_ms", "40"),
        ("charge_amount", "1999"),
        ("mode", "beep"),
        ("lookahead_ms", "60"),
    ];
    for (k, v) in pairs {
        c.set(k, v).unwrap_or_else(|e| panic!("{k}={v}: {e}"));
    }
    c.resolve().unwrap();
    let cc = &c.capture;
    assert_eq!(
        cc.fields.iter().collect::<Vec<_>>(),
        [
            FieldKind::ExpirationDate,
            FieldKind::CardNumber,
            FieldKind::SecurityCode,
            FieldKind::PostalCode,
            FieldKind::Reference,
            FieldKind::Amount
        ]
    );
    assert_eq!(
        cc.allowed_brands,
        [Brand::Visa, Brand::Mastercard, Brand::Diners]
    );
    assert_eq!((cc.terminator, cc.clear_key), (Some('*'), Some('#')));
    assert!(!cc.auto_advance);
    assert_eq!(
        (
            cc.first_digit_timeout_ms,
            cc.inter_digit_timeout_ms,
            cc.session_timeout_ms
        ),
        (20000, 3000, 120000)
    );
    assert_eq!(cc.max_attempts, 2);
    assert_eq!(cc.pan_display, PanDisplay::First6Last4);
    assert!(cc.show_expiry && cc.show_postal_code && !cc.show_generic);
    assert_eq!(
        (cc.postal_code_min_length, cc.postal_code_max_length),
        (5, 9)
    );
    assert_eq!((cc.reference_min_length, cc.reference_max_length), (4, 12));
    assert_eq!((cc.amount_min_length, cc.amount_max_length), (2, 8));
    assert_eq!(cc.expiry_max_years, 10);
    assert_eq!((cc.dedup_window_ms, cc.repeat_window_ms), (250, 40));
    assert_eq!(cc.charge_amount, Some(1999));
    assert_eq!(c.masker.mode, MaskMode::Beep);
    assert_eq!(c.masker.lookahead_ms, 60);
    c.set("terminator", "none").unwrap();
    assert_eq!(c.capture.terminator, None);
    c.set("charge_amount", "none").unwrap();
    assert_eq!(c.capture.charge_amount, None);
}

#[test]
fn cross_key_checks_in_resolve() {
    let mut c = Config::default();
    c.set("postal_code_min_length", "8").unwrap();
    c.set("postal_code_max_length", "6").unwrap();
    let e = c.resolve().unwrap_err().to_string();
    assert!(
        e.contains("postal_code_min_length") && e.contains("postal_code_max_length"),
        "{e}"
    );

    let mut c = Config::default();
    c.set("terminator", "*").unwrap();
    let e = c.resolve().unwrap_err().to_string();
    assert!(
        e.contains("clear_key") && e.contains("must differ from terminator"),
        "{e}"
    );

    let mut c = Config::default();
    c.set("amount_min_length", "9").unwrap();
    c.set("amount_max_length", "3").unwrap();
    assert!(c
        .resolve()
        .unwrap_err()
        .to_string()
        .contains("amount_min_length"));
}

#[test]
fn connector_profiles_sections_and_selection() {
    // Asterisk-style sections.
    let mut c = Config::default();
    c.set_in_section("general", "pan_display", "none").unwrap();
    c.set_in_section("stripe", "url", "https://pay.example/charge")
        .unwrap();
    c.set_in_section("stripe", "method", "tokenize").unwrap();
    c.set_in_section("stripe", "currency_code", "gbp").unwrap();
    c.set_in_section("stripe", "client_cert_file", "/etc/c.pem")
        .unwrap();
    c.set_in_section("stripe", "client_key_file", "/etc/k.pem")
        .unwrap();
    c.set_in_section("stripe", "token_type", "One-Time")
        .unwrap();
    c.resolve().unwrap();
    // The only profile is used when none is named.
    let p = c.active_connector().unwrap();
    assert_eq!(p.name, "stripe");
    assert_eq!(p.method, PaymentMethod::Tokenize);
    assert_eq!(p.currency_code, "GBP");
    assert_eq!(p.token_type, "one-time");
    assert_eq!(p.timeout_ms, 10_000);
    // FreeSWITCH-style flat keys: a second profile, then selection by name.
    c.set("connector.backup.url", "https://backup.example/pay")
        .unwrap();
    c.set("connector.backup.timeout_ms", "2500").unwrap();
    c.resolve().unwrap();
    assert_eq!(
        c.active_connector().map(|p| p.name.as_str()),
        None,
        "two profiles, none named"
    );
    c.set("connector", "backup").unwrap();
    c.resolve().unwrap();
    assert_eq!(c.active_connector().unwrap().timeout_ms, 2500);
    c.set("connector", "none").unwrap();
    c.resolve().unwrap();
    assert!(c.active_connector().is_none());
    c.set("connector", "nosuch").unwrap();
    let e = c.resolve().unwrap_err().to_string();
    assert!(
        e.contains("'connector'") && e.contains("stripe, backup"),
        "{e}"
    );
}

#[test]
fn connector_profile_checks() {
    let mut c = Config::default();
    c.set_in_section("acme", "method", "charge").unwrap();
    let e = c.resolve().unwrap_err().to_string();
    assert!(
        e.contains("connector.acme.url") && e.contains("required"),
        "{e}"
    );
    c.set_in_section("acme", "url", "https://a.example/x")
        .unwrap();
    c.set_in_section("acme", "client_cert_file", "/c.pem")
        .unwrap();
    let e = c.resolve().unwrap_err().to_string();
    assert!(e.contains("must be set together"), "{e}");
}

#[test]
fn option_strings() {
    let c = Config::default()
        .for_call(
            "fields=payment-card-number,expiration-date,security-code,mode=beep,lookahead_ms=40",
        )
        .unwrap();
    assert_eq!(c.capture.fields.len(), 3);
    assert_eq!(c.masker.mode, MaskMode::Beep);
    assert_eq!(c.masker.lookahead_ms, 40);

    let c = Config::default()
        .for_call("  fields=card|cvv ; allowed_brands=amex visa  max_attempts=1 ")
        .unwrap();
    assert_eq!(c.capture.fields.len(), 2);
    assert_eq!(c.capture.allowed_brands, [Brand::Amex, Brand::Visa]);
    assert_eq!(c.capture.max_attempts, 1);

    Config::default().for_call("").unwrap();

    let bad: &[(&str, &str)] = &[
        ("mode=beep,loud", "'loud'"),
        ("=3", "empty key"),
        ("lookahead_ms=500", "lookahead_ms"),
        ("fields=card,bogus", "unknown field 'bogus'"),
        ("terminator=*", "must differ from terminator"),
        ("connector=acme", "no connector profile named 'acme'"),
    ];
    for (o, want) in bad {
        let e = Config::default().for_call(o).unwrap_err().to_string();
        assert!(e.contains(want), "{o}: {e}");
    }
}

#[test]
fn profile_names_keep_their_spelling_in_flat_and_section_form() {
    let mut c = Config::default();
    c.set("Connector.my-gw.URL", "https://gw.example/pay")
        .unwrap();
    c.set_in_section("my-gw", "timeout-ms", "3000").unwrap();
    assert_eq!(c.connectors.len(), 1);
    c.resolve().unwrap();
    let p = c.active_connector().unwrap();
    assert_eq!((p.name.as_str(), p.timeout_ms), ("my-gw", 3000));
}

#[test]
fn debug_output_of_config_hides_the_password() {
    let mut c = Config::default();
    c.set("connector.acme.url", "https://a.example/pay")
        .unwrap();
    c.set("connector.acme.password", "hunter2-secret").unwrap();
    c.resolve().unwrap();
    let d = format!("{c:?}");
    assert!(
        d.contains("a.example"),
        "control: the profile is in the debug output"
    );
    assert!(d.contains("<set>"));
    assert!(!d.contains("hunter2"), "{d}");
}
