//! Payment hand-off: on submit, POST the captured card to a configured connector over HTTPS
//! (Twilio Generic Pay Connector request/response shape) on a worker thread, never on a media
//! thread. Safe Rust; no FFI.
//!
//! API CONTRACT (skeleton; the connector work fills in the implementation).
