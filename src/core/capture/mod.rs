//! Secure capture engine: fields (card number, expiry, security code, postal code, generic),
//! validation (Luhn, brand, dates), PCI masking, keys, timeouts and the per-channel session state
//! machine. Inputs: digits (with source and time), commands, clock ticks. Output: [`Event`]s.
//!
//! - [`card`]: brands (IIN table), lengths, Luhn.
//! - [`field`]: field kinds, error types, expiry dates.
//! - [`mask`]: the display rules (what an event may carry).
//! - [`dedup`]: one key press seen by two paths counts once.
//! - [`command`]: commands and `parse_command`.
//! - [`session`]: the state machine.
//! - [`fuzzing`]: the fuzz/property harness shared by `fuzz/` and `tests/capture_fuzz.rs`.

pub mod card;
pub mod command;
pub mod dedup;
pub mod field;
pub mod fuzzing;
pub mod mask;
pub mod session;

pub use card::{Brand, BrandGuess};
pub use command::{parse_command, Command, CommandError};
pub use dedup::PressTime;
pub use field::{ErrorType, FieldKind, FieldList, YearMonth};
pub use mask::PanDisplay;
pub use session::{Session, SubmitTicket};

pub use crate::core::config::CaptureConfig;
#[allow(unused_imports)]
pub(crate) use crate::core::events::Event;

/// Where a digit came from: used for duplicate suppression, and named (`SecurePay-Source`) in
/// the `digit` event of a key press added to a field (the agent service's per-path counts).
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

impl DigitSource {
    /// `in-band`, `telephone-event` (RFC 4733; no digits in event values), `sip-info` or
    /// `host-frame`.
    pub fn name(self) -> &'static str {
        match self {
            DigitSource::InBand => "in-band",
            DigitSource::Rfc4733 => "telephone-event",
            DigitSource::SipInfo => "sip-info",
            DigitSource::HostFrame => "host-frame",
        }
    }
}

/// Why a session stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The agent (API/AMI `stop`).
    Agent,
    /// The dialplan (app/stop application).
    Dialplan,
    /// Whole-session timeout (a forgotten session ends itself).
    Timeout,
    /// The channel hung up.
    Hangup,
    /// The adapter failed closed (e.g. uninspectable media).
    Error,
}

impl StopReason {
    pub fn name(self) -> &'static str {
        match self {
            StopReason::Agent => "agent",
            StopReason::Dialplan => "dialplan",
            StopReason::Timeout => "timeout",
            StopReason::Hangup => "hangup",
            StopReason::Error => "error",
        }
    }
}
