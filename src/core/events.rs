//! Events as plain data: what the adapters publish (FreeSWITCH CUSTOM `secure_pay::<name>`,
//! Asterisk AMI `SecurePay<Name>`). They carry masked data only; the masking is enforced by the
//! capture engine that builds them (`core::capture`), not by the UI.
//!
//! Adapters publish an event by calling [`Event::name`] and [`Event::for_each_header`]; both
//! hosts get the same headers, documented once in docs/capture.md ("Events and headers").
//! Header names are `SecurePay-Title-Case` (no spaces: valid AMI keys and FreeSWITCH headers).
//! A header that does not apply to an event instance is omitted, never sent empty, except
//! `SecurePay-Required` which is sent empty when no required field is left.
//!
//! No event carries a security code, a clear card number, or a wall-clock/transaction value
//! that could be mistaken for card digits.

use std::borrow::Cow;

use arrayvec::ArrayString;

use crate::core::capture::card::Brand;
use crate::core::capture::field::{ErrorType, FieldKind, FieldList};
use crate::core::capture::{DigitSource, StopReason};
use crate::core::guard::redact_pans;
use crate::core::payment::{PaymentMethod, PaymentOutcome};

/// A masked display string (at most 19 characters are ever put in it).
pub type Masked = ArrayString<32>;

/// How a field ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldResult {
    Complete,
    Invalid(ErrorType),
}

/// Result carried by a `submit` event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubmitResult {
    /// The request was built and is being handed to the connector.
    Pending { method: PaymentMethod },
    Success {
        charge_id: Option<String>,
        token_id: Option<String>,
    },
    /// Refused before sending, or declined by the processor: certainly not charged.
    Error { code: String, message: String },
    /// Sent, but no usable answer: may or may not have been charged (see
    /// [`PaymentOutcome::Unknown`]).
    Unknown { code: String, message: String },
}

impl From<PaymentOutcome> for SubmitResult {
    fn from(o: PaymentOutcome) -> Self {
        match o {
            PaymentOutcome::Success {
                charge_id,
                token_id,
            } => SubmitResult::Success {
                charge_id,
                token_id,
            },
            PaymentOutcome::Error { code, message } => SubmitResult::Error { code, message },
            PaymentOutcome::Unknown { code, message } => SubmitResult::Unknown { code, message },
        }
    }
}

/// What the module did to a recording (event `recording`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordingAction {
    /// Paused for the secure period (option `recording=pause`, or a recording the module
    /// cannot mask).
    Paused,
    /// Running again: secure mode ended (every exit path).
    Resumed,
    /// Secure mode was refused because of this recording (the adapter says which).
    Refused,
}

impl RecordingAction {
    pub fn name(self) -> &'static str {
        match self {
            RecordingAction::Paused => "paused",
            RecordingAction::Resumed => "resumed",
            RecordingAction::Refused => "refused",
        }
    }
}

/// Which kind of recording a `recording` event is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordingKind {
    /// A recording of the decoded audio (wav and other file formats, conference recordings):
    /// it gets the masked audio.
    Decoded,
    /// A recording of the codec payload (FreeSWITCH native-format `record_session`): it reads
    /// the audio before any masking and cannot be masked.
    Native,
    /// A tap that reads the codec payload (FreeSWITCH eavesdrop in tap mode).
    Tap,
    /// Every recording of the leg (option `recording=pause`).
    All,
}

impl RecordingKind {
    pub fn name(self) -> &'static str {
        match self {
            RecordingKind::Decoded => "decoded",
            RecordingKind::Native => "native",
            RecordingKind::Tap => "tap",
            RecordingKind::All => "all",
        }
    }
}

/// Which leg of the call a `recording` event is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leg {
    /// The channel in secure mode.
    Customer,
    /// Its bridged partner.
    Agent,
}

impl Leg {
    pub fn name(self) -> &'static str {
        match self {
            Leg::Customer => "customer",
            Leg::Agent => "agent",
        }
    }
}

/// Masked status of a session (command `status`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusSnapshot {
    /// `capturing`, `waiting` (no active field, not all required fields valid), `complete`
    /// (ready to submit), `submitting`, `done` (outcome received), `finished`.
    pub state: &'static str,
    pub field: Option<FieldKind>,
    /// Digits typed in the active field (not given for the security code).
    pub length: Option<u8>,
    pub attempt: Option<u32>,
    pub required: FieldList,
    pub captured: FieldList,
    pub card_number: Option<Masked>,
    pub brand: Option<Brand>,
    pub expiration_date: Option<Masked>,
}

/// A masked event from a capture session.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// Secure capture started. `required`: the configured fields in capture order.
    Start {
        required: FieldList,
        connector: Option<String>,
    },
    /// A field is now being captured (automatically or on agent request).
    Capture {
        field: FieldKind,
        attempt: u32,
        max_attempts: u32,
        required: FieldList,
    },
    /// A key press was added to (or the clear key wiped) the active field. Never sent for the
    /// security code. `masked` is one mask character per digit.
    Digit {
        field: FieldKind,
        length: u8,
        masked: Masked,
        brand: Option<Brand>,
        /// The detection path of the key press added (`SecurePay-Source`); None for a clear.
        source: Option<DigitSource>,
    },
    /// A field ended: complete (valid) or invalid with a Twilio error type.
    Field {
        field: FieldKind,
        result: FieldResult,
        attempt: u32,
        /// Digits entered (never given for the security code).
        length: Option<u8>,
        /// What the agent may see (card: per `pan_display`; expiry/postal/generic only if
        /// configured; never the security code).
        masked: Option<Masked>,
        brand: Option<Brand>,
        required: FieldList,
    },
    /// Every required field is captured and valid: ready to submit.
    Complete {
        captured: FieldList,
        card_number: Option<Masked>,
        brand: Option<Brand>,
        expiration_date: Option<Masked>,
    },
    /// Payment hand-off progress / result.
    Submit {
        result: SubmitResult,
        card_number: Option<Masked>,
        brand: Option<Brand>,
        /// The payment's `transaction_id` (also its idempotency key): no card data.
        transaction_id: String,
    },
    /// The payment was cancelled; all data wiped; the session is finished.
    Cancel,
    /// Secure capture ended; all data wiped; the session is finished.
    Stop { reason: StopReason },
    /// Something needs the agent's attention (e.g. too many failed attempts).
    Error {
        code: &'static str,
        message: &'static str,
        field: Option<FieldKind>,
    },
    /// Masked status (answer to the `status` command).
    Status(StatusSnapshot),
    /// The module paused, resumed or refused because of a PBX recording (option `recording`,
    /// or a recording it cannot mask). Fixed texts and small counts only: no path, no digit
    /// that was keyed.
    Recording {
        action: RecordingAction,
        kind: RecordingKind,
        leg: Leg,
        /// The call's `recording` option (`mask` or `pause`).
        mode: &'static str,
        /// How many recordings/taps this event is about (0 when unknown, e.g. a whole leg).
        count: u32,
        /// Fixed text: why (e.g. `recording-option`, `codec-payload`).
        reason: &'static str,
    },
}

fn num(n: u64) -> ArrayString<20> {
    let mut s = ArrayString::new();
    let _ = std::fmt::write(&mut s, format_args!("{n}"));
    s
}

impl Event {
    /// Lower-case event name: `start`, `capture`, `digit`, `field`, `complete`, `submit`,
    /// `cancel`, `stop`, `error`, `status`, `recording` (FreeSWITCH subclass suffix; Asterisk uses
    /// `SecurePay` + the capitalised name).
    pub fn name(&self) -> &'static str {
        match self {
            Event::Start { .. } => "start",
            Event::Capture { .. } => "capture",
            Event::Digit { .. } => "digit",
            Event::Field { .. } => "field",
            Event::Complete { .. } => "complete",
            Event::Submit { .. } => "submit",
            Event::Cancel => "cancel",
            Event::Stop { .. } => "stop",
            Event::Error { .. } => "error",
            Event::Status(_) => "status",
            Event::Recording { .. } => "recording",
        }
    }

    /// Calls `f(header, value)` for every header of the event (masked data only). Every value
    /// passes the PAN rule of [`crate::core::guard`] on its way out, whatever the event, except
    /// `SecurePay-Transaction-Id`: the module builds it from the channel id, the session's
    /// start time and a counter (never from key presses), and the agent needs it whole to look
    /// the payment up (its start time alone is a 13-digit run).
    pub fn for_each_header(&self, f: &mut dyn FnMut(&'static str, &str)) {
        self.for_each_header_raw(&mut |k, v| {
            if k == "SecurePay-Transaction-Id" {
                return f(k, v);
            }
            match redact_pans(v) {
                Cow::Borrowed(b) => f(k, b),
                Cow::Owned(o) => f(k, &o),
            }
        });
    }

    /// Replaces every data-carrying value (masked values, card number, expiry, connector name,
    /// submit result texts and ids) for which `f` returns a new value. `f`'s second argument is
    /// true for the card number's own display (built by `mask_pan`), which the secret rule of
    /// [`crate::core::guard`] leaves alone (its last 4 may equal the expiry by chance). The
    /// match is exhaustive on purpose: a new event variant must decide here what the guard sees.
    pub fn map_values(&mut self, f: &mut dyn FnMut(&str, bool) -> Option<String>) {
        type F<'a> = dyn FnMut(&str, bool) -> Option<String> + 'a;
        fn m(x: &mut Masked, card: bool, f: &mut F<'_>) {
            if let Some(n) = f(x, card) {
                *x = Masked::new();
                for c in n.chars() {
                    if x.try_push(c).is_err() {
                        break;
                    }
                }
            }
        }
        fn om(x: &mut Option<Masked>, card: bool, f: &mut F<'_>) {
            if let Some(x) = x {
                m(x, card, f);
            }
        }
        fn s(x: &mut String, f: &mut F<'_>) {
            if let Some(n) = f(x, false) {
                *x = n;
            }
        }
        fn os(x: &mut Option<String>, f: &mut F<'_>) {
            if let Some(x) = x {
                s(x, f);
            }
        }
        match self {
            Event::Start {
                required: _,
                connector,
            } => os(connector, f),
            Event::Capture { .. } | Event::Cancel | Event::Stop { .. } => {}
            Event::Digit { masked, .. } => m(masked, false, f),
            Event::Field { field, masked, .. } => om(masked, *field == FieldKind::CardNumber, f),
            Event::Complete {
                card_number,
                expiration_date,
                ..
            } => {
                om(card_number, true, f);
                om(expiration_date, false, f);
            }
            Event::Submit {
                result,
                card_number,
                brand: _,
                // Built by the module (channel id, start time, counter), never from key presses.
                transaction_id: _,
            } => {
                om(card_number, true, f);
                match result {
                    SubmitResult::Pending { .. } => {}
                    SubmitResult::Success {
                        charge_id,
                        token_id,
                    } => {
                        os(charge_id, f);
                        os(token_id, f);
                    }
                    SubmitResult::Error { code, message }
                    | SubmitResult::Unknown { code, message } => {
                        s(code, f);
                        s(message, f);
                    }
                }
            }
            // Our own fixed texts.
            Event::Error { .. } | Event::Recording { .. } => {}
            Event::Status(st) => {
                om(&mut st.card_number, true, f);
                om(&mut st.expiration_date, false, f);
            }
        }
    }

    fn for_each_header_raw(&self, f: &mut dyn FnMut(&'static str, &str)) {
        match self {
            Event::Start {
                required,
                connector,
            } => {
                f("SecurePay-Required", &required.to_header());
                f(
                    "SecurePay-Connector",
                    connector.as_deref().unwrap_or("none"),
                );
            }
            Event::Capture {
                field,
                attempt,
                max_attempts,
                required,
            } => {
                f("SecurePay-Field", field.name());
                f("SecurePay-Attempt", &num(u64::from(*attempt)));
                f("SecurePay-Max-Attempts", &num(u64::from(*max_attempts)));
                f("SecurePay-Required", &required.to_header());
            }
            Event::Digit {
                field,
                length,
                masked,
                brand,
                source,
            } => {
                f("SecurePay-Field", field.name());
                f("SecurePay-Length", &num(u64::from(*length)));
                f("SecurePay-Masked", masked);
                f("SecurePay-Partial", "true");
                if let Some(b) = brand {
                    f("SecurePay-Card-Brand", b.name());
                }
                if let Some(s) = source {
                    f("SecurePay-Source", s.name());
                }
            }
            Event::Field {
                field,
                result,
                attempt,
                length,
                masked,
                brand,
                required,
            } => {
                f("SecurePay-Field", field.name());
                match result {
                    FieldResult::Complete => f("SecurePay-Result", "complete"),
                    FieldResult::Invalid(e) => {
                        f("SecurePay-Result", "invalid");
                        f("SecurePay-Error-Type", e.name());
                    }
                }
                f("SecurePay-Attempt", &num(u64::from(*attempt)));
                if let Some(l) = length {
                    f("SecurePay-Length", &num(u64::from(*l)));
                }
                if let Some(m) = masked {
                    f("SecurePay-Masked", m);
                }
                if let Some(b) = brand {
                    f("SecurePay-Card-Brand", b.name());
                }
                f("SecurePay-Partial", "false");
                f("SecurePay-Required", &required.to_header());
            }
            Event::Complete {
                captured,
                card_number,
                brand,
                expiration_date,
            } => {
                f("SecurePay-Captured", &captured.to_header());
                if let Some(m) = card_number {
                    f("SecurePay-Card-Number", m);
                }
                if let Some(b) = brand {
                    f("SecurePay-Card-Brand", b.name());
                }
                if let Some(e) = expiration_date {
                    f("SecurePay-Expiration-Date", e);
                }
            }
            Event::Submit {
                result,
                card_number,
                brand,
                transaction_id,
            } => {
                match result {
                    SubmitResult::Pending { method } => {
                        f("SecurePay-Result", "pending");
                        f(
                            "SecurePay-Method",
                            match method {
                                PaymentMethod::Charge => "charge",
                                PaymentMethod::Tokenize => "tokenize",
                            },
                        );
                    }
                    SubmitResult::Success {
                        charge_id,
                        token_id,
                    } => {
                        f("SecurePay-Result", "success");
                        if let Some(c) = charge_id {
                            f("SecurePay-Charge-Id", c);
                        }
                        if let Some(t) = token_id {
                            f("SecurePay-Token-Id", t);
                        }
                    }
                    SubmitResult::Error { code, message } => {
                        f("SecurePay-Result", "error");
                        f("SecurePay-Error-Code", code);
                        f("SecurePay-Error-Message", message);
                    }
                    SubmitResult::Unknown { code, message } => {
                        f("SecurePay-Result", "unknown");
                        f("SecurePay-Error-Code", code);
                        f("SecurePay-Error-Message", message);
                    }
                }
                if let Some(m) = card_number {
                    f("SecurePay-Card-Number", m);
                }
                if let Some(b) = brand {
                    f("SecurePay-Card-Brand", b.name());
                }
                if !transaction_id.is_empty() {
                    f("SecurePay-Transaction-Id", transaction_id);
                }
            }
            Event::Cancel => {}
            Event::Stop { reason } => f("SecurePay-Reason", reason.name()),
            Event::Error {
                code,
                message,
                field,
            } => {
                f("SecurePay-Error-Code", code);
                f("SecurePay-Error-Message", message);
                if let Some(fk) = field {
                    f("SecurePay-Field", fk.name());
                }
            }
            Event::Status(s) => {
                f("SecurePay-State", s.state);
                if let Some(fk) = s.field {
                    f("SecurePay-Field", fk.name());
                }
                if let Some(l) = s.length {
                    f("SecurePay-Length", &num(u64::from(l)));
                }
                if let Some(a) = s.attempt {
                    f("SecurePay-Attempt", &num(u64::from(a)));
                }
                f("SecurePay-Required", &s.required.to_header());
                f("SecurePay-Captured", &s.captured.to_header());
                if let Some(m) = &s.card_number {
                    f("SecurePay-Card-Number", m);
                }
                if let Some(b) = s.brand {
                    f("SecurePay-Card-Brand", b.name());
                }
                if let Some(e) = &s.expiration_date {
                    f("SecurePay-Expiration-Date", e);
                }
            }
            Event::Recording {
                action,
                kind,
                leg,
                mode,
                count,
                reason,
            } => {
                f("SecurePay-Recording-Action", action.name());
                f("SecurePay-Recording-Kind", kind.name());
                f("SecurePay-Leg", leg.name());
                f("SecurePay-Recording-Mode", mode);
                f("SecurePay-Recording-Count", &num(u64::from(*count)));
                f("SecurePay-Reason", reason);
            }
        }
    }

    /// All headers as owned pairs (tests, CLI; adapters use [`Event::for_each_header`]).
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut v = Vec::new();
        self.for_each_header(&mut |k, val| v.push((k, val.to_string())));
        v
    }

    /// The value of one header, if present.
    pub fn header(&self, name: &str) -> Option<String> {
        let mut out = None;
        self.for_each_header(&mut |k, v| {
            if k == name && out.is_none() {
                out = Some(v.to_string());
            }
        });
        out
    }
}
