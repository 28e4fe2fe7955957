//! Events as plain data: what the adapters publish (FreeSWITCH CUSTOM `secure_pay::<name>`,
//! Asterisk AMI `SecurePay<Name>`). They carry masked data only; the masking is enforced by the
//! capture engine that builds them, not by the UI.
//!
//! API CONTRACT (skeleton; the capture work fills in fields and headers). Adapters publish an
//! event by calling [`Event::name`] and [`Event::for_each_header`]; both hosts get the same
//! headers, documented once in README.

/// A masked event from a capture session.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    Start,
    Capture,
    Digit,
    Field,
    Complete,
    Submit,
    Cancel,
    Stop,
    Error,
}

impl Event {
    /// Lower-case event name: `start`, `capture`, `digit`, ... (FreeSWITCH subclass suffix;
    /// Asterisk uses `SecurePay` + the capitalised name).
    pub fn name(&self) -> &'static str {
        match self {
            Event::Start => "start",
            Event::Capture => "capture",
            Event::Digit => "digit",
            Event::Field => "field",
            Event::Complete => "complete",
            Event::Submit => "submit",
            Event::Cancel => "cancel",
            Event::Stop => "stop",
            Event::Error => "error",
        }
    }

    /// Calls `f(header, value)` for every header of the event (masked data only).
    pub fn for_each_header(&self, _f: &mut dyn FnMut(&'static str, &str)) {}
}
