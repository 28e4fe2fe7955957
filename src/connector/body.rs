//! The Twilio Generic Pay Connector JSON request (written straight into one zeroized buffer,
//! no intermediate `String` ever holds a card digit) and the response parser.

use zeroize::Zeroizing;

use crate::core::payment::{ConnectorProfile, PaymentMethod, PaymentOutcome, PaymentRequest};

use super::codes;

/// Longest connector-supplied string (id, code, message) we pass on; longer ones are cut.
const MAX_ID_CHARS: usize = 128;
const MAX_MESSAGE_CHARS: usize = 256;

/// Writes JSON into a pre-sized buffer. Every write goes through `extend_from_slice` on a
/// `Vec` whose capacity was computed as an upper bound up front, so it never reallocates
/// (a reallocation would free an unwiped copy of the card digits).
struct JsonOut {
    buf: Zeroizing<Vec<u8>>,
    first: bool,
}

impl JsonOut {
    fn raw(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }

    fn key(&mut self, k: &str) {
        if !self.first {
            self.raw(b",");
        }
        self.first = false;
        self.string(k.as_bytes());
        self.raw(b":");
    }

    /// A JSON string. Escapes `"`, `\` and control characters; other UTF-8 bytes go as-is.
    fn string(&mut self, s: &[u8]) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        self.raw(b"\"");
        for &c in s {
            match c {
                b'"' => self.raw(b"\\\""),
                b'\\' => self.raw(b"\\\\"),
                0..=0x1f | 0x7f => {
                    self.raw(b"\\u00");
                    self.raw(&[HEX[usize::from(c >> 4)], HEX[usize::from(c & 0xf)]]);
                }
                _ => self.raw(&[c]),
            }
        }
        self.raw(b"\"");
    }

    fn field(&mut self, k: &str, v: &[u8]) {
        self.key(k);
        self.string(v);
    }
}

/// Worst case size of `s` as a JSON string (every byte escaped as `\u00XX`, plus quotes).
fn bound(s: &[u8]) -> usize {
    s.len() * 6 + 2
}

fn or_default<'a>(v: &'a str, profile_default: &'a str) -> &'a str {
    if v.is_empty() {
        profile_default
    } else {
        v
    }
}

/// Builds the request body. The request's method, currency, description and token type win;
/// empty ones fall back to the profile's.
///
/// Shape (Twilio Generic Pay Connector):
/// `{"method":"charge","transaction_id":..,"cardnumber":..,"cvv":..,"expiry_month":"MM",
///   "expiry_year":"YYYY","description":..,"amount":"10.00","currency_code":..,
///   "postal_code":..,"token_type":..,"parameters":{..}}`
/// `amount` is present only when the request carries one (minor units, written with two
/// decimals); `token_type` only for `tokenize`.
pub(crate) fn build(profile: &ConnectorProfile, req: &PaymentRequest) -> Zeroizing<Vec<u8>> {
    let method: &[u8] = match req.method {
        PaymentMethod::Charge => b"charge",
        PaymentMethod::Tokenize => b"tokenize",
    };
    let description = or_default(&req.description, &profile.description);
    let currency = or_default(&req.currency_code, &profile.currency_code);
    let token_type = or_default(&req.token_type, &profile.token_type);
    let token_type = if token_type.is_empty() {
        "reusable"
    } else {
        token_type
    };

    let mut cap = 256; // keys, punctuation, method, amount
    cap += bound(req.transaction_id.as_bytes());
    cap += bound(req.card_number.expose());
    cap += bound(req.security_code.expose());
    cap += bound(req.expiry_month.expose());
    cap += bound(req.expiry_year.expose()) + 2;
    cap += bound(req.postal_code.expose());
    cap += bound(description.as_bytes());
    cap += bound(currency.as_bytes());
    cap += bound(token_type.as_bytes());
    for (k, v) in &req.parameters {
        cap += bound(k.as_bytes()) + bound(v.as_bytes()) + 2;
    }

    let mut out = JsonOut {
        buf: Zeroizing::new(Vec::with_capacity(cap)),
        first: true,
    };
    out.raw(b"{");
    out.field("method", method);
    out.field("transaction_id", req.transaction_id.as_bytes());
    out.field("cardnumber", req.card_number.expose());
    out.field("cvv", req.security_code.expose());
    out.field("expiry_month", req.expiry_month.expose());
    // Captured as YY; connectors expect the 4-digit year. Written without a temporary.
    out.key("expiry_year");
    out.raw(b"\"");
    if req.expiry_year.len() == 2 {
        out.raw(b"20");
    }
    out.raw(req.expiry_year.expose());
    out.raw(b"\"");
    out.field("description", description.as_bytes());
    if let Some(minor) = req.amount_minor {
        // Not card data: an ordinary String is fine here.
        let amount = format!("{}.{:02}", minor / 100, minor % 100);
        out.field("amount", amount.as_bytes());
    }
    out.field("currency_code", currency.as_bytes());
    out.field("postal_code", req.postal_code.expose());
    if req.method == PaymentMethod::Tokenize {
        out.field("token_type", token_type.as_bytes());
    }
    out.key("parameters");
    out.raw(b"{");
    out.first = true;
    for (k, v) in &req.parameters {
        out.field(k, v.as_bytes());
    }
    out.raw(b"}}");
    debug_assert!(out.buf.len() <= cap, "body size bound is wrong");
    out.buf
}

/// Cleans a connector-supplied string before it becomes part of an event: control
/// characters dropped, length capped, and anything that could be a card number masked except
/// its last 4 digits (see [`sanitize_message`]).
pub(crate) fn sanitize(s: &str, max_chars: usize) -> String {
    sanitize_message(s, max_chars, &[])
}

/// Characters that may separate the digit groups of a formatted number (`4242 4242 ...`,
/// `4242-4242-...`, `12/28`).
fn is_separator(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '-' | '.' | '/' | '_' | ',' | ':' | '\u{2010}'..='\u{2015}'
        )
}

/// At most this many separator characters between two digit groups of one number.
const MAX_SEPARATORS: usize = 3;

/// The sanitiser for every processor-supplied string that reaches an event or the agent
/// page (error code, error message, HTTP reason, charge/token id):
/// - control characters are dropped and the result is cut to `max_chars` characters (after
///   masking, so a cut can never leave a longer unmasked prefix);
/// - a number of 12 or more digits — one run, or digit groups joined by up to 3 separators
///   (space, `-`, `.`, `/`, `_`, `,`, `:`) such as `4242 4242 4242 4242` or `4242-4242-...` —
///   has every digit but its last 4 replaced by `*`;
/// - a digit run, or consecutive runs of one formatted number, whose digits equal one of
///   `secrets` (the captured security code and expiry in its usual spellings; values shorter
///   than 3 digits are ignored) is masked completely.
pub fn sanitize_message(s: &str, max_chars: usize, secrets: &[&[u8]]) -> String {
    // Mask on a bounded prefix (the cut comes after masking).
    let mut chars: Vec<char> = s
        .chars()
        .filter(|c| !c.is_control())
        .take(max_chars.saturating_mul(2).saturating_add(64))
        .collect();
    let secrets: Vec<&[u8]> = secrets.iter().copied().filter(|v| v.len() >= 3).collect();
    let mut i = 0;
    while i < chars.len() {
        if !chars[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        // One number: digit runs joined by short separator sequences.
        let mut runs: Vec<(usize, usize)> = Vec::new();
        let mut j = i;
        loop {
            let start = j;
            while j < chars.len() && chars[j].is_ascii_digit() {
                j += 1;
            }
            runs.push((start, j));
            let mut k = j;
            while k < chars.len() && k - j < MAX_SEPARATORS && is_separator(chars[k]) {
                k += 1;
            }
            if k > j && k < chars.len() && chars[k].is_ascii_digit() {
                j = k;
            } else {
                break;
            }
        }
        let digits: usize = runs.iter().map(|(a, b)| b - a).sum();
        // Secrets: any consecutive runs whose digits equal one.
        if !secrets.is_empty() {
            let mut masked = vec![false; runs.len()];
            for a in 0..runs.len() {
                let mut cat: Vec<u8> = Vec::new();
                for b in a..runs.len() {
                    cat.extend(chars[runs[b].0..runs[b].1].iter().map(|&c| c as u8));
                    if cat.len() > 8 {
                        break;
                    }
                    if secrets.contains(&cat.as_slice()) {
                        masked[a..=b].iter_mut().for_each(|m| *m = true);
                    }
                }
                zeroize::Zeroize::zeroize(&mut cat);
            }
            for (r, m) in runs.iter().zip(&masked) {
                if *m {
                    chars[r.0..r.1].iter_mut().for_each(|c| *c = '*');
                }
            }
        }
        if digits >= 12 {
            let mut left = digits;
            for &(a, b) in &runs {
                for c in &mut chars[a..b] {
                    if left > 4 {
                        *c = '*';
                    }
                    left -= 1;
                }
            }
        }
        i = j.max(i + 1);
    }
    chars.into_iter().take(max_chars).collect()
}

/// Masks, in every string of an outcome, anything equal to the request's security code or
/// expiry (MMYY, MM20YY, YYMM, 20YYMM) on top of the PAN rules of [`sanitize_message`].
pub(crate) fn scrub_outcome(o: PaymentOutcome, req: &PaymentRequest) -> PaymentOutcome {
    let (mm, yy) = (req.expiry_month.expose(), req.expiry_year.expose());
    let join = |parts: &[&[u8]]| Zeroizing::new(parts.concat());
    let spellings: [Zeroizing<Vec<u8>>; 5] = [
        join(&[req.security_code.expose()]),
        join(&[mm, yy]),
        join(&[mm, b"20", yy]),
        join(&[yy, mm]),
        join(&[b"20", yy, mm]),
    ];
    let expiry_set = mm.len() == 2 && yy.len() == 2;
    let mut secrets: Vec<&[u8]> = spellings
        .iter()
        .enumerate()
        .filter(|(k, _)| *k == 0 || expiry_set)
        .map(|(_, v)| v.as_slice())
        .collect();
    // The postal code too (an AVS message may echo it; it may be hidden from the agent).
    let postal = req.postal_code.expose();
    if postal.len() >= 3 {
        secrets.push(postal);
    }
    let clean = |s: String, max: usize| sanitize_message(&s, max, &secrets);
    // A charge/token id is an opaque reference the merchant needs whole: it gets the PAN rules
    // (already applied when parsed), and is masked completely only if it IS a secret; a
    // digit run inside it that happens to equal the security code is left alone.
    let id = |s: String| {
        if secrets.contains(&s.as_bytes()) {
            "*".repeat(s.len())
        } else {
            s
        }
    };
    match o {
        PaymentOutcome::Success {
            charge_id,
            token_id,
        } => PaymentOutcome::Success {
            charge_id: charge_id.map(id),
            token_id: token_id.map(id),
        },
        PaymentOutcome::Error { code, message } => PaymentOutcome::Error {
            code: clean(code, MAX_ID_CHARS),
            message: clean(message, 2 * MAX_MESSAGE_CHARS),
        },
        PaymentOutcome::Unknown { code, message } => PaymentOutcome::Unknown {
            code: clean(code, MAX_ID_CHARS),
            message: clean(message, 2 * MAX_MESSAGE_CHARS),
        },
    }
}

/// A JSON value as text: strings as-is, numbers printed; null/empty/other → None.
fn text(v: Option<&serde_json::Value>, max_chars: usize) -> Option<String> {
    let s = match v? {
        serde_json::Value::String(s) => s.trim().to_owned(),
        serde_json::Value::Number(n) => n.to_string(),
        _ => return None,
    };
    if s.is_empty() {
        None
    } else {
        Some(sanitize(&s, max_chars))
    }
}

/// Maps a 2xx response body to the outcome. `error_code` (non-null, non-empty) wins and is
/// passed on verbatim (sanitized) with `error_message`; otherwise `charge_id` (charge) or
/// `token_id` (tokenize) must be present.
/// A 2xx body that is not a readable answer is `unknown`: the processor took the request.
pub(crate) fn parse_response(method: PaymentMethod, body: &[u8]) -> PaymentOutcome {
    let v: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return PaymentOutcome::Unknown {
                code: codes::BAD_RESPONSE.into(),
                message: format!(
                    "connector response is not valid JSON ({})",
                    e.classify_text()
                ),
            }
        }
    };
    let Some(obj) = v.as_object() else {
        return PaymentOutcome::Unknown {
            code: codes::BAD_RESPONSE.into(),
            message: "connector response is not a JSON object".into(),
        };
    };
    if let Some(code) = text(obj.get("error_code"), MAX_ID_CHARS) {
        let message = text(obj.get("error_message"), MAX_MESSAGE_CHARS)
            .unwrap_or_else(|| "connector reported an error without a message".into());
        return PaymentOutcome::Error { code, message };
    }
    let charge_id = text(obj.get("charge_id"), MAX_ID_CHARS);
    let token_id = text(obj.get("token_id"), MAX_ID_CHARS);
    let ok = match method {
        PaymentMethod::Charge => charge_id.is_some(),
        PaymentMethod::Tokenize => token_id.is_some(),
    };
    if !ok {
        let want = match method {
            PaymentMethod::Charge => "charge_id",
            PaymentMethod::Tokenize => "token_id",
        };
        return PaymentOutcome::Unknown {
            code: codes::BAD_RESPONSE.into(),
            message: format!("connector response has neither error_code nor {want}"),
        };
    }
    PaymentOutcome::Success {
        charge_id,
        token_id,
    }
}

/// An error message from a non-2xx response body, if it is Generic Pay Connector JSON.
pub(crate) fn error_message_of(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let obj = v.as_object()?;
    let msg = text(obj.get("error_message"), MAX_MESSAGE_CHARS);
    let code = text(obj.get("error_code"), MAX_ID_CHARS);
    match (code, msg) {
        (Some(c), Some(m)) => Some(format!("{c}: {m}")),
        (Some(c), None) => Some(c),
        (None, m) => m,
    }
}

trait ClassifyText {
    fn classify_text(&self) -> &'static str;
}

impl ClassifyText for serde_json::Error {
    fn classify_text(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "I/O",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "unexpected data",
            serde_json::error::Category::Eof => "truncated",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::secret::SecretDigits;

    fn digits(s: &str) -> SecretDigits {
        let mut d = SecretDigits::new();
        for c in s.bytes() {
            assert!(d.push(c));
        }
        d
    }

    fn request(method: PaymentMethod) -> PaymentRequest {
        PaymentRequest {
            method,
            transaction_id: "tx-1".into(),
            card_number: digits("4242424242424242"),
            security_code: digits("123"),
            expiry_month: digits("08"),
            expiry_year: digits("30"),
            postal_code: digits("94107"),
            amount_minor: Some(1050),
            currency_code: String::new(),
            description: "Order \"7\"\n".into(),
            token_type: String::new(),
            parameters: vec![("order".into(), "A\\1".into())],
        }
    }

    #[test]
    fn body_has_the_generic_pay_connector_shape() {
        let profile = ConnectorProfile {
            currency_code: "USD".into(),
            description: "ignored".into(),
            ..Default::default()
        };
        let body = build(&profile, &request(PaymentMethod::Charge));
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["method"], "charge");
        assert_eq!(v["transaction_id"], "tx-1");
        assert_eq!(v["cardnumber"], "4242424242424242");
        assert_eq!(v["cvv"], "123");
        assert_eq!(v["expiry_month"], "08");
        assert_eq!(v["expiry_year"], "2030");
        assert_eq!(v["description"], "Order \"7\"\n");
        assert_eq!(v["amount"], "10.50");
        assert_eq!(v["currency_code"], "USD");
        assert_eq!(v["postal_code"], "94107");
        assert!(v.get("token_type").is_none());
        assert_eq!(v["parameters"]["order"], "A\\1");

        let tok = build(&profile, &request(PaymentMethod::Tokenize));
        let v: serde_json::Value = serde_json::from_slice(&tok).unwrap();
        assert_eq!(v["method"], "tokenize");
        assert_eq!(v["token_type"], "reusable");
    }

    #[test]
    fn response_mapping() {
        use PaymentMethod::*;
        assert_eq!(
            parse_response(
                Charge,
                br#"{"charge_id":"ch_1","error_code":null,"error_message":null}"#
            ),
            PaymentOutcome::Success {
                charge_id: Some("ch_1".into()),
                token_id: None
            }
        );
        assert_eq!(
            parse_response(Tokenize, br#"{"token_id":"tok_1","error_code":""}"#),
            PaymentOutcome::Success {
                charge_id: None,
                token_id: Some("tok_1".into())
            }
        );
        assert_eq!(
            parse_response(
                Charge,
                br#"{"charge_id":null,"error_code":"card_declined","error_message":"Declined"}"#
            ),
            PaymentOutcome::Error {
                code: "card_declined".into(),
                message: "Declined".into()
            }
        );
        for bad in [&b"{not json"[..], b"[1]", br#"{"token_id":"t"}"#, b""] {
            match parse_response(Charge, bad) {
                PaymentOutcome::Unknown { code, .. } => assert_eq!(code, codes::BAD_RESPONSE),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn sanitize_masks_pan_like_runs_and_controls() {
        assert_eq!(
            sanitize("card 4242424242424242 declined\r\n", 100),
            "card ************4242 declined"
        );
        assert_eq!(sanitize("ch_12345678901", 100), "ch_12345678901");
        assert_eq!(sanitize("abcdef", 3), "abc");
        // Control: an 11-digit run and short groups are left alone.
        assert_eq!(sanitize("ref 1234 5678 901", 100), "ref 1234 5678 901");
    }

    #[test]
    fn sanitize_masks_formatted_card_numbers() {
        for (input, want) in [
            ("4242 4242 4242 4242", "**** **** **** 4242"),
            ("4242-4242-4242-4242", "****-****-****-4242"),
            ("4242.4242.4242.4242", "****.****.****.4242"),
            ("4242 - 4242 - 4242 - 4242", "**** - **** - **** - 4242"),
            ("3782 822463 10005", "**** ****** *0005"),
            ("card:4242424242424242x", "card:************4242x"),
            (
                "4242\u{a0}4242\u{a0}4242\u{a0}4242",
                "****\u{a0}****\u{a0}****\u{a0}4242",
            ),
            ("6205 5000 0000 0000 004", "**** **** **** ***0 004"),
            ("1234567890123456789012", "******************9012"),
        ] {
            assert_eq!(sanitize(input, 100), want, "{input}");
        }
        // The cut comes after masking: never a longer unmasked prefix.
        let cut = sanitize("xx 4242 4242 4242 4242", 10);
        assert_eq!(cut, "xx **** **");
    }

    #[test]
    fn sanitize_masks_captured_secrets() {
        let secrets: [&[u8]; 3] = [b"737", b"1228", b"122028"];
        let s = |m: &str| sanitize_message(m, 200, &secrets);
        assert_eq!(s("cvv 737 wrong"), "cvv *** wrong");
        assert_eq!(s("exp 12/28 bad"), "exp **/** bad");
        assert_eq!(s("exp 12-2028 bad"), "exp **-**** bad");
        assert_eq!(s("exp 1228, cvc 737"), "exp ****, cvc ***");
        assert_eq!(s("exp 12/28 737"), "exp **/** ***");
        // Controls: other numbers stay readable.
        assert_eq!(s("code 7370 at 12:29"), "code 7370 at 12:29");
        assert_eq!(s("code 73 1 2"), "code 73 1 2");
        // Secrets shorter than 3 digits are ignored (would mask everything).
        assert_eq!(sanitize_message("12 34", 100, &[b"12"]), "12 34");
    }

    #[test]
    fn scrub_outcome_masks_an_echoed_postal_code() {
        let mut req = request(PaymentMethod::Charge);
        req.postal_code = digits("94107");
        let o = PaymentOutcome::Error {
            code: "avs_failed".into(),
            message: "AVS: zip 94107 does not match".into(),
        };
        match scrub_outcome(o, &req) {
            PaymentOutcome::Error { message, .. } => {
                assert_eq!(message, "AVS: zip ***** does not match")
            }
            other => panic!("{other:?}"),
        }
        // Control: without a postal code in the request the text stays.
        let o = PaymentOutcome::Error {
            code: "avs_failed".into(),
            message: "AVS: zip 94107 does not match".into(),
        };
        let mut other = request(PaymentMethod::Charge);
        other.postal_code = digits("");
        match scrub_outcome(o, &other) {
            PaymentOutcome::Error { message, .. } => assert!(message.contains("94107")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn scrub_outcome_uses_the_request() {
        let mut req = request(PaymentMethod::Charge);
        req.security_code = digits("4821");
        let o = PaymentOutcome::Error {
            code: "cvc_4821".into(),
            message: "cvc 4821; exp 08/30; 4242 4242 4242 4242; 0830".into(),
        };
        match scrub_outcome(o, &req) {
            PaymentOutcome::Error { code, message } => {
                assert_eq!(code, "cvc_****");
                assert_eq!(message, "cvc ****; exp **/**; **** **** **** 4242; ****");
            }
            other => panic!("{other:?}"),
        }
    }
}
