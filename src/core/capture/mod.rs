//! Secure capture engine: fields (card number, expiry, security code, postal code, generic),
//! validation (Luhn, brand, dates), PCI masking, keys, timeouts and the per-channel session state
//! machine. Inputs: digits (with source and time), commands, clock ticks. Output: [`Event`]s.
//!
//! API CONTRACT (skeleton; the capture work fills in the implementation).

use crate::core::digit::Digit;
use crate::core::events::Event;

/// Where a digit came from (used for duplicate suppression and reported nowhere in clear).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DigitSource {
    /// Detected in the audio by the masker.
    InBand,
    /// RFC 4733 / RFC 2833 telephone-event.
    Rfc4733,
    /// SIP INFO.
    SipInfo,
    /// A host DTMF frame/event whose transport is unknown (e.g. Asterisk DTMF_END frame).
    HostFrame,
}

/// A per-channel capture session.
pub struct Session {
    _private: (),
}

impl Session {
    /// Feeds one digit at time `now_ms` (any monotonic millisecond clock).
    pub fn on_digit(
        &mut self,
        _d: Digit,
        _src: DigitSource,
        _now_ms: u64,
        _sink: &mut dyn FnMut(Event),
    ) {
    }

    /// Advances timers.
    pub fn tick(&mut self, _now_ms: u64, _sink: &mut dyn FnMut(Event)) {}
}
