//! The payment connector's HTTP/1.1 response parser (status line, headers, Content-Length,
//! chunked framing, interim 1xx responses) and message sanitiser on hostile server answers:
//! no panic, bounded results.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = secure_pay::connector::fuzz_http_response(data) {
        panic!("invariant broken: {e}");
    }
});
