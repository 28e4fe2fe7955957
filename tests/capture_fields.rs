//! Table tests for the field rules: brand (IIN) table, lengths, Luhn, security-code length,
//! expiry dates, masking display rules.

use secure_pay::core::capture::card::{
    guess_brand, luhn_check_digit, luhn_valid, validate_card, Brand, BrandGuess, CardError,
};
use secure_pay::core::capture::field::{validate_expiry, YearMonth};
use secure_pay::core::capture::mask::{mask_pan, PanDisplay};

/// `prefix` padded with zeros to `len - 1` digits plus the Luhn check digit.
fn card(prefix: &str, len: usize) -> Vec<u8> {
    let mut v: Vec<u8> = prefix.bytes().collect();
    while v.len() < len - 1 {
        v.push(b'0');
    }
    let c = luhn_check_digit(&v);
    v.push(c);
    assert!(luhn_valid(&v));
    v
}

#[test]
fn well_known_test_numbers_brand_and_validity() {
    let all = Brand::ALL;
    let table: &[(&str, Brand)] = &[
        ("4242424242424242", Brand::Visa),
        ("4111111111111111", Brand::Visa),
        ("4222222222222", Brand::Visa),
        ("5555555555554444", Brand::Mastercard),
        ("5105105105105100", Brand::Mastercard),
        ("2223003122003222", Brand::Mastercard),
        ("2221000000000009", Brand::Mastercard),
        ("378282246310005", Brand::Amex),
        ("371449635398431", Brand::Amex),
        ("6011111111111117", Brand::Discover),
        ("6011000990139424", Brand::Discover),
        ("3530111333300000", Brand::Jcb),
        ("3566002020360505", Brand::Jcb),
        ("30569309025904", Brand::Diners),
        ("38520000023237", Brand::Diners),
        ("36227206271667", Brand::Diners),
        ("6200000000000005", Brand::UnionPay),
        ("6205500000000000004", Brand::UnionPay),
        ("6759649826438453", Brand::Maestro),
    ];
    for (n, b) in table {
        assert_eq!(validate_card(n.as_bytes(), &all), Ok(*b), "{n}");
    }
}

#[test]
fn iin_ranges_edges_and_lengths() {
    let all = Brand::ALL;
    // (prefix, length, expected)
    let table: &[(&str, usize, Result<Brand, CardError>)] = &[
        // Visa 13/16/19 only
        ("4", 13, Ok(Brand::Visa)),
        ("4", 16, Ok(Brand::Visa)),
        ("4", 19, Ok(Brand::Visa)),
        ("4", 14, Err(CardError::Number)),
        ("4", 15, Err(CardError::Number)),
        ("4", 17, Err(CardError::Number)),
        // Mastercard 51-55 and 2-series 2221-2720, 16 only
        ("51", 16, Ok(Brand::Mastercard)),
        ("55", 16, Ok(Brand::Mastercard)),
        ("2221", 16, Ok(Brand::Mastercard)),
        ("2720", 16, Ok(Brand::Mastercard)),
        ("2220", 16, Err(CardError::Type)),
        ("2721", 16, Err(CardError::Type)),
        ("50", 16, Err(CardError::Type)),
        ("5", 15, Err(CardError::Type)),
        ("55", 15, Err(CardError::Number)),
        // Amex 34/37, 15 only
        ("34", 15, Ok(Brand::Amex)),
        ("37", 15, Ok(Brand::Amex)),
        ("37", 16, Err(CardError::Number)),
        ("35", 15, Err(CardError::Type)),
        // Discover
        ("6011", 16, Ok(Brand::Discover)),
        ("644", 16, Ok(Brand::Discover)),
        ("649", 19, Ok(Brand::Discover)),
        ("65", 16, Ok(Brand::Discover)),
        ("622126", 16, Ok(Brand::Discover)),
        ("622925", 16, Ok(Brand::Discover)),
        ("6011", 15, Err(CardError::Number)),
        // UnionPay 62 (16-19), around the Discover co-brand range
        ("62", 16, Ok(Brand::UnionPay)),
        ("622125", 16, Ok(Brand::UnionPay)),
        ("622926", 19, Ok(Brand::UnionPay)),
        ("62", 19, Ok(Brand::UnionPay)),
        ("62", 15, Err(CardError::Number)),
        // JCB 3528-3589
        ("3528", 16, Ok(Brand::Jcb)),
        ("3589", 19, Ok(Brand::Jcb)),
        ("3527", 16, Err(CardError::Type)),
        ("3590", 16, Err(CardError::Type)),
        // Diners
        ("300", 14, Ok(Brand::Diners)),
        ("305", 14, Ok(Brand::Diners)),
        ("3095", 14, Ok(Brand::Diners)),
        ("36", 14, Ok(Brand::Diners)),
        ("38", 16, Ok(Brand::Diners)),
        ("39", 19, Ok(Brand::Diners)),
        ("306", 14, Err(CardError::Type)),
        ("36", 13, Err(CardError::Number)),
        // Maestro 12-19
        ("5018", 12, Ok(Brand::Maestro)),
        ("5020", 19, Ok(Brand::Maestro)),
        ("5038", 16, Ok(Brand::Maestro)),
        ("56", 16, Ok(Brand::Maestro)),
        ("58", 13, Ok(Brand::Maestro)),
        ("6304", 16, Ok(Brand::Maestro)),
        ("6759", 18, Ok(Brand::Maestro)),
        ("6763", 12, Ok(Brand::Maestro)),
        ("6764", 16, Err(CardError::Type)),
        // unsupported
        ("1", 16, Err(CardError::Type)),
        ("9", 16, Err(CardError::Type)),
        ("7", 16, Err(CardError::Type)),
    ];
    for (p, len, want) in table {
        let n = card(p, *len);
        assert_eq!(validate_card(&n, &all), *want, "prefix {p} len {len}");
    }
}

#[test]
fn overall_length_limits_and_luhn() {
    let all = Brand::ALL;
    assert_eq!(validate_card(b"50180000009", &all), Err(CardError::Number)); // 11 digits
    let mut twenty = card("62", 19);
    twenty.push(b'0');
    assert_eq!(validate_card(&twenty, &all), Err(CardError::Number));
    assert_eq!(
        validate_card(b"4242424242424241", &all),
        Err(CardError::Number)
    );
    assert_eq!(validate_card(b"", &all), Err(CardError::Number));
    assert_eq!(
        validate_card(b"42424242424242a2", &all),
        Err(CardError::Number)
    );
}

#[test]
fn allowed_brands_restrict() {
    let only = [Brand::Visa, Brand::Mastercard];
    assert_eq!(validate_card(b"4242424242424242", &only), Ok(Brand::Visa));
    assert_eq!(
        validate_card(b"378282246310005", &only),
        Err(CardError::Type)
    );
    assert_eq!(
        validate_card(b"6205500000000000004", &only),
        Err(CardError::Type)
    );
}

#[test]
fn brand_known_from_prefix_only_when_unambiguous() {
    let table: &[(&str, BrandGuess)] = &[
        ("", BrandGuess::Pending),
        ("4", BrandGuess::Known(Brand::Visa)),
        ("5", BrandGuess::Pending),
        ("51", BrandGuess::Known(Brand::Mastercard)),
        ("50", BrandGuess::Pending),
        ("501", BrandGuess::Pending),
        ("5018", BrandGuess::Known(Brand::Maestro)),
        ("5019", BrandGuess::Unknown),
        ("3", BrandGuess::Pending),
        ("37", BrandGuess::Known(Brand::Amex)),
        ("35", BrandGuess::Pending),
        ("353", BrandGuess::Known(Brand::Jcb)),
        ("30", BrandGuess::Pending),
        ("305", BrandGuess::Known(Brand::Diners)),
        ("6", BrandGuess::Pending),
        ("60", BrandGuess::Pending),
        ("601", BrandGuess::Pending),
        ("6011", BrandGuess::Known(Brand::Discover)),
        ("62", BrandGuess::Pending),
        ("620", BrandGuess::Known(Brand::UnionPay)),
        ("6229", BrandGuess::Pending),
        ("62292", BrandGuess::Pending),
        ("622926", BrandGuess::Known(Brand::UnionPay)),
        ("2", BrandGuess::Pending),
        ("22", BrandGuess::Pending),
        ("23", BrandGuess::Known(Brand::Mastercard)),
        ("1", BrandGuess::Unknown),
        ("0", BrandGuess::Unknown),
        ("8", BrandGuess::Unknown),
    ];
    for (p, want) in table {
        assert_eq!(guess_brand(p.as_bytes()), *want, "prefix {p:?}");
    }
}

#[test]
fn brand_max_length_and_security_code_length() {
    assert_eq!(Brand::Visa.max_length(), 19);
    assert_eq!(Brand::Mastercard.max_length(), 16);
    assert_eq!(Brand::Amex.max_length(), 15);
    assert_eq!(Brand::UnionPay.max_length(), 19);
    assert_eq!(Brand::Amex.security_code_length(), 4);
    for b in Brand::ALL {
        if b != Brand::Amex {
            assert_eq!(b.security_code_length(), 3, "{b:?}");
        }
        assert_eq!(Brand::from_name(b.name()), Some(b));
    }
    assert_eq!(Brand::from_name("Diners"), Some(Brand::Diners));
    assert_eq!(Brand::from_name("optima"), None);
}

#[test]
fn expiry_rules() {
    let nov26 = YearMonth {
        year: 2026,
        month: 11,
    };
    let table: &[(&str, bool)] = &[
        ("1126", true),   // this month is valid
        ("1226", true),   // next month
        ("0127", true),   // next year
        ("1026", false),  // last month: expired
        ("1225", false),  // last year
        ("0026", false),  // month 00
        ("1326", false),  // month 13
        ("1146", true),   // exactly 20 years ahead
        ("1246", false),  // 20 years + 1 month
        ("0199", false),  // 2099: absurdly far ahead
        ("0100", false),  // 2000: expired
        ("112", false),   // too short
        ("11266", false), // too long
        ("1a26", false),
    ];
    for (e, ok) in table {
        assert_eq!(validate_expiry(e.as_bytes(), nov26, 20), *ok, "{e}");
    }
    // Century wrap: in Dec 2099, "0100" is January 2100.
    let dec99 = YearMonth {
        year: 2099,
        month: 12,
    };
    assert!(validate_expiry(b"0100", dec99, 20));
    assert!(!validate_expiry(b"1199", dec99, 20));
    // max years configurable
    assert!(!validate_expiry(b"1132", nov26, 5));
    assert!(validate_expiry(b"1131", nov26, 5));
}

#[test]
fn display_rules() {
    let table: &[(&str, PanDisplay, &str)] = &[
        ("4242424242424242", PanDisplay::Last4, "************4242"),
        (
            "4242424242424242",
            PanDisplay::First6Last4,
            "424242******4242",
        ),
        ("4242424242424242", PanDisplay::None, "****************"),
        ("378282246310005", PanDisplay::Last4, "***********0005"),
        (
            "378282246310005",
            PanDisplay::First6Last4,
            "378282*****0005",
        ),
        (
            "6205500000000000004",
            PanDisplay::First6Last4,
            "620550*********0004",
        ),
        ("4222222222222", PanDisplay::First6Last4, "*********2222"),
    ];
    for (n, d, want) in table {
        assert_eq!(mask_pan(n.as_bytes(), *d).as_str(), *want, "{n} {d:?}");
    }
}
