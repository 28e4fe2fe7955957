//! Hostile HTTP answers to the payment connector's response parser, as property tests that
//! run in CI (the same harness as the cargo-fuzz target `connector_http`): random bytes, huge
//! and malformed chunk sizes, floods of interim 1xx responses, truncated bodies. Never a
//! panic, and the right error class for each (`TooLarge`, `Malformed`, `TooManyInterim`,
//! `Truncated`, `Empty`): every one of them becomes an `unknown` outcome in the connector
//! (the card was sent), never a decline.

use proptest::prelude::*;
use secure_pay::connector::{fuzz_http_response, parse_response_bytes, ResponseError};

fn chunked(body: &[u8], splits: &[usize]) -> Vec<u8> {
    let mut out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    let mut rest = body;
    let mut k = 0;
    while !rest.is_empty() {
        let n = splits.get(k).copied().unwrap_or(7).clamp(1, rest.len());
        k += 1;
        out.extend_from_slice(format!("{n:x}\r\n").as_bytes());
        out.extend_from_slice(&rest[..n]);
        out.extend_from_slice(b"\r\n");
        rest = &rest[n..];
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

fn with_length(body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    out.extend_from_slice(body);
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        prop_assert_eq!(fuzz_http_response(&data), Ok(()));
    }

    #[test]
    fn random_bytes_after_a_status_line_never_panic(
        tail in proptest::collection::vec(any::<u8>(), 0..1024),
        chunked_hdr in any::<bool>(),
        step in 1usize..64,
    ) {
        let mut data = if chunked_hdr {
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec()
        } else {
            b"HTTP/1.1 200 OK\r\n".to_vec()
        };
        data.extend_from_slice(&tail);
        let _ = parse_response_bytes(&data, step);
    }

    #[test]
    fn huge_chunk_sizes_are_too_large_not_a_panic(
        size in "[1-9a-fA-F][0-9a-fA-F]{5,40}",
        step in 1usize..64,
    ) {
        let resp = format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{size}\r\nabc\r\n0\r\n\r\n"
        );
        let r = parse_response_bytes(resp.as_bytes(), step);
        // Every size here is at least 0x100000 (1 MiB) > the 64 KiB limit.
        prop_assert!(matches!(r, Err(ResponseError::TooLarge)), "{size}: {r:?}");
    }

    #[test]
    fn malformed_chunk_sizes_are_malformed(
        size in "[g-zG-Z+\\-][0-9a-f]{0,4}|0x[0-9a-f]{1,4}",
    ) {
        let resp = format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{size}\r\nabc\r\n0\r\n\r\n"
        );
        let r = parse_response_bytes(resp.as_bytes(), 4096);
        prop_assert!(matches!(r, Err(ResponseError::Malformed(_))), "{size:?}: {r:?}");
    }

    #[test]
    fn interim_floods_are_bounded(
        n in 0usize..40,
        codes in proptest::collection::vec(prop_oneof![Just(100u16), Just(102), Just(103), 104u16..200], 40),
        step in 1usize..64,
    ) {
        let mut data = Vec::new();
        for c in codes.iter().take(n) {
            let c = if *c == 101 { 100 } else { *c };
            data.extend_from_slice(format!("HTTP/1.1 {c} Interim\r\nX-N: 1\r\n\r\n").as_bytes());
        }
        data.extend_from_slice(&with_length(b"{\"charge_id\":\"c\"}"));
        let r = parse_response_bytes(&data, step);
        if n <= 16 {
            prop_assert!(matches!(&r, Ok((200, b)) if b == b"{\"charge_id\":\"c\"}"), "{n}: {r:?}");
        } else {
            prop_assert!(matches!(r, Err(ResponseError::TooManyInterim)), "{n}: {r:?}");
        }
    }

    #[test]
    fn truncated_answers_are_truncated_or_empty(
        body in proptest::collection::vec(any::<u8>(), 1..600),
        splits in proptest::collection::vec(1usize..64, 0..20),
        use_chunked in any::<bool>(),
        cut_frac in 0.0f64..1.0,
        step in 1usize..64,
    ) {
        let full = if use_chunked { chunked(&body, &splits) } else { with_length(&body) };
        // Control: the whole answer parses to exactly the body.
        let whole = parse_response_bytes(&full, step);
        prop_assert!(matches!(&whole, Ok((200, b)) if *b == body), "{whole:?}");
        let cut = ((full.len() as f64) * cut_frac) as usize;
        let cut = cut.min(full.len() - 1);
        let r = parse_response_bytes(&full[..cut], step);
        if cut == 0 {
            prop_assert!(matches!(r, Err(ResponseError::Empty)), "{r:?}");
        } else if use_chunked && cut >= full.len() - 2 {
            // Only the CRLF after the last (zero) chunk is missing: the body is complete
            // (trailers are not read).
            prop_assert!(matches!(&r, Ok((200, b)) if *b == body), "{r:?}");
        } else {
            prop_assert!(matches!(r, Err(ResponseError::Truncated)), "cut {cut}/{}: {r:?}", full.len());
        }
    }
}
