//! The per-channel capture session state machine.
//!
//! Time: `now_ms` is Unix time in milliseconds (wall clock). Timeouts use differences only (a
//! clock stepping back counts as no time passing); the calendar month for expiry checks is the
//! UTC month of `now_ms` unless [`Session::set_date`] overrides it (hosts with a monotonic clock
//! must call it).
//!
//! Flow: `start` emits `start` and `capture` of the first required field. Digits fill the
//! active field; the terminator ends it, auto-advance ends it at its maximum valid length, the
//! inter-digit timeout ends it too (valid value → complete, Twilio-style; otherwise
//! `input-timeout`). A complete field emits `field` (complete) and the next missing required
//! field is captured; when none is left, `complete`. An invalid field emits `field` (invalid,
//! error type), counts an attempt and is captured again; after `max_attempts` failures an
//! `error` (`too-many-failed-attempts`) is emitted and the session waits for the agent
//! (`capture FIELD` resets the attempts). `submit` copies the data into a boxed
//! `PaymentRequest` (taken by the adapter with [`Session::take_submission`], together with a
//! [`SubmitTicket`]); the outcome becomes the `submit` event. After `success` the session is
//! `done` (card data wiped); after `error`/`unknown` the data stays so the agent can submit
//! again: the retry carries the same `transaction_id` (idempotency key), while re-entering any
//! field gives the next one. `cancel`/`stop` wipe everything and finish the session; a submit
//! in flight then still reports its outcome through the adapter's [`SubmitTicket`].

use crate::core::capture::card::Brand as CardBrand;
use crate::core::capture::card::{self, Brand, BrandGuess, CardError};
use crate::core::capture::command::{Command, CommandError};
use crate::core::capture::dedup::{Dedup, PressTime};
use crate::core::capture::field::{validate_expiry, ErrorType, FieldKind, FieldList, YearMonth};
use crate::core::capture::mask::{clear_value, mask_pan, stars};
use crate::core::capture::{DigitSource, StopReason};
use crate::core::config::CaptureConfig;
use crate::core::digit::Digit;
use crate::core::events::{Event, FieldResult, Masked, StatusSnapshot, SubmitResult};
use crate::core::guard::CallSecrets;
use crate::core::payment::{PaymentOutcome, PaymentRequest};
use crate::core::secret::SecretDigits;
use arrayvec::ArrayVec;
use std::sync::Arc;

const N: usize = FieldKind::ALL.len();

/// 2000-01-01T00:00:00Z in Unix milliseconds: an earlier `now_ms` is not a wall clock.
const UNIX_MS_2000: u64 = 946_684_800_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Active,
    Submitting,
    Done,
    Finished,
}

struct Active {
    kind: FieldKind,
    digits: SecretDigits,
    /// More digits were typed than the field can hold (auto-advance off): invalid at the end.
    overflow: bool,
    since_ms: u64,
    last_ms: Option<u64>,
}

/// A per-channel capture session.
pub struct Session {
    cfg: CaptureConfig,
    phase: Phase,
    active: Option<Active>,
    values: [SecretDigits; N],
    valid: [bool; N],
    attempts: [u32; N],
    card_brand: Option<Brand>,
    card_display: Option<Masked>,
    dedup: Dedup,
    started_ms: u64,
    date_override: Option<YearMonth>,
    pending: Option<Box<PaymentRequest>>,
    id: String,
    /// Numbers the transaction ids (`<id>-<n>`).
    submits: u32,
    /// Fingerprints of this call's secrets; every event goes through [`guarded`].
    secrets: Arc<CallSecrets>,
    /// The transaction id (idempotency key) of the data captured now; `None` once any field
    /// is (re-)entered, so the next submit takes a new one.
    tx_id: Option<String>,
    /// The transaction id of the submit in flight (phase `Submitting`), and the keyed
    /// fingerprint of its card number and amount.
    in_flight: Option<String>,
    in_flight_card: u64,
    /// Submits whose outcome was `unknown` (sent, no usable answer: may have been charged), by
    /// the keyed fingerprint of their card number and amount. Until an answer settles one, a
    /// later submit of the same card and amount in this call reuses its transaction id, so
    /// the processor's idempotency stops a second charge, whatever was re-entered or
    /// restarted in between (an agent cannot charge the card again by re-capturing a field).
    unsettled: ArrayVec<(u64, String), UNSETTLED_MAX>,
}

/// Unsettled submits remembered per call (the oldest is forgotten after this many different
/// cards or amounts ended `unknown`).
const UNSETTLED_MAX: usize = 8;

/// The sink every public entry point hands down: each event passes the outgoing guard
/// ([`crate::core::guard`]) before it leaves the session.
fn guarded<'a>(secrets: &'a CallSecrets, sink: &'a mut dyn FnMut(Event)) -> impl FnMut(Event) + 'a {
    move |mut e| {
        secrets.guard_event(&mut e);
        sink(e)
    }
}

/// What an adapter keeps for a submit in flight, so its outcome is reported exactly once even
/// when the session has ended (cancel, stop, timeout, hangup) before the answer came: if
/// [`Session::on_payment_outcome`] returns false, the adapter publishes
/// [`SubmitTicket::outcome_event`] itself. Masked data only.
#[derive(Clone, Debug)]
pub struct SubmitTicket {
    pub transaction_id: String,
    pub card_number: Option<Masked>,
    pub brand: Option<CardBrand>,
    /// The call's secret fingerprints: the ticket's event passes the same outgoing guard as
    /// the session's (a processor echoing a hidden postal code or expiry in its message).
    secrets: Arc<CallSecrets>,
}

impl SubmitTicket {
    /// The `submit` event carrying `o`, as the session would have emitted it (through the
    /// call's outgoing guard).
    pub fn outcome_event(&self, o: PaymentOutcome) -> Event {
        let mut e = Event::Submit {
            result: o.into(),
            card_number: self.card_number,
            brand: self.brand,
            transaction_id: self.transaction_id.clone(),
        };
        self.secrets.guard_event(&mut e);
        e
    }
}

impl Session {
    /// Starts a session: emits `start` and `capture` of the first required field.
    pub fn start(cfg: &CaptureConfig, now_ms: u64, sink: &mut dyn FnMut(Event)) -> Session {
        let secrets = Arc::new(CallSecrets::new());
        let sink: &mut dyn FnMut(Event) = &mut guarded(&secrets, sink);
        let mut cfg = cfg.clone();
        // The required fields are always allowed.
        for f in cfg.fields.clone().iter() {
            cfg.allowed_fields.push(f);
        }
        let dedup = Dedup::new(cfg.dedup_window_ms, cfg.repeat_window_ms);
        let mut s = Session {
            cfg,
            phase: Phase::Active,
            active: None,
            values: Default::default(),
            valid: [false; N],
            attempts: [0; N],
            card_brand: None,
            card_display: None,
            dedup,
            started_ms: now_ms,
            date_override: None,
            pending: None,
            id: String::new(),
            submits: 0,
            secrets: Arc::clone(&secrets),
            tx_id: None,
            in_flight: None,
            in_flight_card: 0,
            unsettled: ArrayVec::new(),
        };
        sink(Event::Start {
            required: s.cfg.fields.clone(),
            connector: s.cfg.connector.as_ref().map(|p| p.name.clone()),
        });
        s.advance(now_ms, sink);
        s
    }

    /// Identifier used to build payment `transaction_id`s (`<id>-<n>`), e.g. the channel
    /// uuid. Default: `sp<start time>`.
    pub fn set_id(&mut self, id: &str) {
        self.id = id
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .take(64)
            .collect();
    }

    /// Overrides the calendar month used for expiry checks (tests; hosts whose `now_ms` is
    /// not Unix time).
    pub fn set_date(&mut self, today: YearMonth) {
        self.date_override = Some(today);
    }

    fn today(&self, now_ms: u64) -> YearMonth {
        self.date_override
            .unwrap_or_else(|| YearMonth::from_unix_ms(now_ms))
    }

    /// True after stop/cancel/timeout: the adapter tears down secure mode.
    pub fn is_finished(&self) -> bool {
        self.phase == Phase::Finished
    }

    /// The field being captured, if any.
    pub fn active_field(&self) -> Option<FieldKind> {
        self.active.as_ref().map(|a| a.kind)
    }

    fn required_left(&self) -> FieldList {
        self.cfg
            .fields
            .iter()
            .filter(|f| !self.valid[f.index()])
            .collect()
    }

    fn captured(&self) -> FieldList {
        FieldKind::ALL
            .iter()
            .copied()
            .filter(|f| self.valid[f.index()])
            .collect()
    }

    fn expiry_display(&self) -> Option<Masked> {
        let i = FieldKind::ExpirationDate.index();
        (self.cfg.show_expiry && self.valid[i]).then(|| clear_value(self.values[i].expose()))
    }

    /// Makes `kind` the active field (wiping any earlier value of it) and emits `capture`.
    fn begin(&mut self, kind: FieldKind, now_ms: u64, sink: &mut dyn FnMut(Event)) {
        let i = kind.index();
        self.tx_id = None; // the data changes: a new payment, a new idempotency key
        self.values[i].clear();
        self.valid[i] = false;
        if kind == FieldKind::CardNumber {
            self.card_brand = None;
            self.card_display = None;
        }
        self.active = Some(Active {
            kind,
            digits: SecretDigits::new(),
            overflow: false,
            since_ms: now_ms,
            last_ms: None,
        });
        sink(Event::Capture {
            field: kind,
            attempt: self.attempts[i] + 1,
            max_attempts: self.cfg.max_attempts,
            required: self.required_left(),
        });
    }

    /// Captures the next missing required field, or emits `complete` when none is left.
    fn advance(&mut self, now_ms: u64, sink: &mut dyn FnMut(Event)) {
        self.active = None;
        let next = self.cfg.fields.iter().find(|f| !self.valid[f.index()]);
        match next {
            Some(f) => self.begin(f, now_ms, sink),
            None => sink(Event::Complete {
                captured: self.captured(),
                card_number: self.card_display,
                brand: self.card_brand,
                expiration_date: self.expiry_display(),
            }),
        }
    }

    /// Length at which a field completes by itself (its maximum valid length).
    fn max_len(&self, kind: FieldKind, digits: &[u8]) -> usize {
        let c = &self.cfg;
        match kind {
            FieldKind::CardNumber => match card::guess_brand(digits) {
                BrandGuess::Known(b) => b.max_length(),
                _ => 19,
            },
            FieldKind::ExpirationDate => 4,
            FieldKind::SecurityCode => self.card_brand.map_or(4, Brand::security_code_length),
            FieldKind::PostalCode => c.postal_code_max_length,
            FieldKind::Reference => c.reference_max_length,
            FieldKind::Amount => c.amount_max_length,
        }
    }

    /// The brand shown while a card number is typed (and for a rejected one): only from its
    /// sixth digit on, the issuer prefix (IIN) the brand is read from. Shown as soon as it is
    /// known, the digit it appears at would tell the agent more than the brand: a brand known
    /// after 4 digits is one of a few IINs (Diners at the 4th digit is `3095`), so with
    /// `pan_display=last4` or `none` the leading digits would leak.
    fn progress_brand(kind: FieldKind, digits: &[u8]) -> Option<Brand> {
        if kind != FieldKind::CardNumber || digits.len() < card::IIN_DIGITS as usize {
            return None;
        }
        match card::guess_brand(digits) {
            BrandGuess::Known(b) => Some(b),
            _ => None,
        }
    }

    /// `source`: the path of the key press just added (None for a clear).
    fn emit_progress(&self, source: Option<DigitSource>, sink: &mut dyn FnMut(Event)) {
        if let Some(a) = &self.active {
            // The security code is never shown, not even as a count of mask characters.
            if a.kind == FieldKind::SecurityCode {
                return;
            }
            let len = a.digits.len();
            sink(Event::Digit {
                field: a.kind,
                length: len as u8,
                masked: stars(len),
                brand: Self::progress_brand(a.kind, a.digits.expose()),
                source,
            });
        }
    }

    /// Feeds one key press reported at `now_ms` (see module docs for the clock) whose timing
    /// the path does not give: duplicate suppression falls back to fixed windows
    /// ([`crate::core::capture::dedup`]). Prefer [`Session::on_press`].
    pub fn on_digit(
        &mut self,
        d: Digit,
        src: DigitSource,
        now_ms: u64,
        sink: &mut dyn FnMut(Event),
    ) {
        self.on_key(d, src, None, now_ms, sink)
    }

    /// Feeds one key press reported at `now_ms` that happened during `time` (as the path
    /// measured it): duplicate suppression decides from the presses' own timing.
    pub fn on_press(
        &mut self,
        d: Digit,
        src: DigitSource,
        time: PressTime,
        now_ms: u64,
        sink: &mut dyn FnMut(Event),
    ) {
        self.on_key(d, src, Some(time), now_ms, sink)
    }

    fn on_key(
        &mut self,
        d: Digit,
        src: DigitSource,
        time: Option<PressTime>,
        now_ms: u64,
        sink: &mut dyn FnMut(Event),
    ) {
        let secrets = Arc::clone(&self.secrets);
        let sink: &mut dyn FnMut(Event) = &mut guarded(&secrets, sink);
        self.expire(now_ms, sink);
        // Outside capture (submitting, done, finished, or no field active) a key is ignored and
        // not remembered.
        if self.phase != Phase::Active {
            return;
        }
        let Some(kind) = self.active.as_ref().map(|a| a.kind) else {
            return;
        };
        if !self.dedup.accept_timed(d, src, time, now_ms) {
            return;
        }
        let key = Some(d.as_char());
        if key == self.cfg.terminator {
            if self.active.as_ref().is_some_and(|a| !a.digits.is_empty()) {
                self.finish_field(now_ms, false, sink);
            }
            return;
        }
        if key == self.cfg.clear_key {
            if let Some(a) = self.active.as_mut() {
                if !a.digits.is_empty() || a.overflow {
                    a.digits.clear();
                    a.overflow = false;
                    a.since_ms = now_ms;
                    a.last_ms = None;
                    self.emit_progress(None, sink);
                }
            }
            return;
        }
        let Some(v) = d.decimal() else {
            return; // A-D and unconfigured * / # are swallowed and ignored.
        };
        let max = self
            .active
            .as_ref()
            .map_or(0, |a| self.max_len(kind, a.digits.expose()));
        let Some(a) = self.active.as_mut() else {
            return;
        };
        a.last_ms = Some(now_ms);
        if a.digits.len() >= max || !a.digits.push(b'0' + v) {
            a.overflow = true;
            return;
        }
        self.emit_progress(Some(src), sink);
        // Recompute: the brand (hence the maximum) may have become known with this digit.
        let full = self
            .active
            .as_ref()
            .is_some_and(|a| a.digits.len() >= self.max_len(kind, a.digits.expose()));
        if self.cfg.auto_advance && full {
            self.finish_field(now_ms, false, sink);
        }
    }

    /// Validates the active field's digits.
    fn check(
        &self,
        kind: FieldKind,
        digits: &[u8],
        now_ms: u64,
    ) -> Result<Option<Brand>, ErrorType> {
        let c = &self.cfg;
        let len = digits.len();
        let bad = ErrorType::for_field(kind);
        match kind {
            FieldKind::CardNumber => card::validate_card(digits, &c.allowed_brands)
                .map(Some)
                .map_err(|e| match e {
                    CardError::Number => ErrorType::InvalidCardNumber,
                    CardError::Type => ErrorType::InvalidCardType,
                }),
            FieldKind::ExpirationDate => {
                if validate_expiry(digits, self.today(now_ms), c.expiry_max_years) {
                    Ok(None)
                } else {
                    Err(bad)
                }
            }
            FieldKind::SecurityCode => {
                let ok = match self.card_brand {
                    Some(b) => len == b.security_code_length(),
                    None => len == 3 || len == 4,
                };
                if ok {
                    Ok(None)
                } else {
                    Err(bad)
                }
            }
            FieldKind::PostalCode => {
                if (c.postal_code_min_length..=c.postal_code_max_length).contains(&len) {
                    Ok(None)
                } else {
                    Err(bad)
                }
            }
            FieldKind::Reference => {
                if (c.reference_min_length..=c.reference_max_length).contains(&len) {
                    Ok(None)
                } else {
                    Err(bad)
                }
            }
            FieldKind::Amount => {
                let nonzero = digits.iter().any(|&b| b != b'0');
                if nonzero && (c.amount_min_length..=c.amount_max_length).contains(&len) {
                    Ok(None)
                } else {
                    Err(bad)
                }
            }
        }
    }

    /// Ends the active field: complete (and advance) or invalid (and retry / give up).
    fn finish_field(&mut self, now_ms: u64, timed_out: bool, sink: &mut dyn FnMut(Event)) {
        let Some(a) = self.active.take() else {
            return;
        };
        let kind = a.kind;
        let i = kind.index();
        let len = a.digits.len();
        let result = if a.overflow {
            Err(ErrorType::for_field(kind))
        } else {
            self.check(kind, a.digits.expose(), now_ms)
        };
        let shown_len = (kind != FieldKind::SecurityCode).then_some(len as u8);
        if kind == FieldKind::ExpirationDate
            && self.date_override.is_none()
            && now_ms < UNIX_MS_2000
        {
            // `now_ms` is not Unix time and no date was set: no expiry can be judged valid.
            sink(Event::Error {
                code: "no-calendar-date",
                message: "expiry cannot be checked: now_ms is not Unix time and Session::set_date was not called",
                field: Some(kind),
            });
        }
        match result {
            Ok(brand) => {
                // Before any event: from now on a value equal to it is masked everywhere.
                let secret = match kind {
                    FieldKind::CardNumber | FieldKind::SecurityCode => true,
                    FieldKind::ExpirationDate => !self.cfg.show_expiry,
                    FieldKind::PostalCode => !self.cfg.show_postal_code,
                    FieldKind::Reference | FieldKind::Amount => false,
                };
                if secret {
                    self.secrets.record(a.digits.expose());
                }
                let masked = match kind {
                    FieldKind::CardNumber => {
                        Some(mask_pan(a.digits.expose(), self.cfg.pan_display))
                    }
                    FieldKind::ExpirationDate if self.cfg.show_expiry => {
                        Some(clear_value(a.digits.expose()))
                    }
                    FieldKind::PostalCode if self.cfg.show_postal_code => {
                        Some(clear_value(a.digits.expose()))
                    }
                    FieldKind::Reference | FieldKind::Amount if self.cfg.show_generic => {
                        Some(clear_value(a.digits.expose()))
                    }
                    FieldKind::SecurityCode => None,
                    _ => Some(stars(len)),
                };
                if kind == FieldKind::CardNumber {
                    self.card_brand = brand;
                    self.card_display = masked;
                    // A security code captured for another brand no longer fits.
                    let ci = FieldKind::SecurityCode.index();
                    if let Some(b) = brand {
                        if self.valid[ci] && self.values[ci].len() != b.security_code_length() {
                            self.values[ci].clear();
                            self.valid[ci] = false;
                        }
                    }
                }
                self.values[i] = a.digits; // the old value (if any) is wiped on drop
                self.valid[i] = true;
                let attempt = self.attempts[i] + 1;
                self.attempts[i] = 0;
                sink(Event::Field {
                    field: kind,
                    result: FieldResult::Complete,
                    attempt,
                    length: shown_len,
                    masked,
                    brand,
                    required: self.required_left(),
                });
                self.advance(now_ms, sink);
            }
            Err(e) => {
                let brand = Self::progress_brand(kind, a.digits.expose());
                drop(a); // wipes the rejected digits
                let e = if timed_out {
                    ErrorType::InputTimeout
                } else {
                    e
                };
                self.attempts[i] = self.attempts[i].saturating_add(1);
                sink(Event::Field {
                    field: kind,
                    result: FieldResult::Invalid(e),
                    attempt: self.attempts[i],
                    length: shown_len,
                    masked: None,
                    brand,
                    required: self.required_left(),
                });
                if self.attempts[i] < self.cfg.max_attempts {
                    self.begin(kind, now_ms, sink);
                } else {
                    sink(Event::Error {
                        code: "too-many-failed-attempts",
                        message: "field given up after the maximum number of attempts; capture it again or cancel",
                        field: Some(kind),
                    });
                }
            }
        }
    }

    /// Advances timers: field timeouts and the whole-session timeout (which stops the session
    /// with reason `timeout`).
    pub fn tick(&mut self, now_ms: u64, sink: &mut dyn FnMut(Event)) {
        let secrets = Arc::clone(&self.secrets);
        let sink: &mut dyn FnMut(Event) = &mut guarded(&secrets, sink);
        self.expire(now_ms, sink);
    }

    /// The timers of [`Session::tick`], with an already guarded sink. Also run before every
    /// key and command: a host ticks only now and then (Asterisk's ticker every second), and a
    /// key or a submit must not count after a timeout that has passed.
    fn expire(&mut self, now_ms: u64, sink: &mut dyn FnMut(Event)) {
        if self.phase == Phase::Finished {
            return;
        }
        if now_ms.saturating_sub(self.started_ms) >= self.cfg.session_timeout_ms {
            self.stop(StopReason::Timeout, now_ms, sink);
            return;
        }
        if self.phase != Phase::Active {
            return;
        }
        if let Some(a) = &self.active {
            let (from, limit) = match a.last_ms {
                Some(t) => (t, self.cfg.inter_digit_timeout_ms),
                None => (a.since_ms, self.cfg.first_digit_timeout_ms),
            };
            if now_ms.saturating_sub(from) >= limit {
                self.finish_field(now_ms, true, sink);
            }
        }
    }

    fn wipe_all(&mut self) {
        for v in &mut self.values {
            v.clear();
        }
        self.dedup.reset();
        self.valid = [false; N];
        self.attempts = [0; N];
        self.active = None;
        self.pending = None;
        self.tx_id = None;
        self.card_brand = None;
        self.card_display = None;
    }

    /// Applies a command. Errors say why it does not apply; the session is unchanged then.
    pub fn command(
        &mut self,
        cmd: &Command,
        now_ms: u64,
        sink: &mut dyn FnMut(Event),
    ) -> Result<(), CommandError> {
        let secrets = Arc::clone(&self.secrets);
        let sink: &mut dyn FnMut(Event) = &mut guarded(&secrets, sink);
        self.expire(now_ms, sink);
        if let Command::Status = cmd {
            sink(Event::Status(self.status_raw()));
            return Ok(());
        }
        if self.phase == Phase::Finished {
            return Err(CommandError::Finished);
        }
        match cmd {
            Command::Status => Ok(()),
            Command::Start(_) => Err(CommandError::AlreadyStarted),
            Command::Capture(kind) => {
                if !self.cfg.allowed_fields.contains(*kind) {
                    return Err(CommandError::FieldNotAllowed {
                        field: *kind,
                        allowed: self.cfg.allowed_fields.clone(),
                    });
                }
                if self.phase == Phase::Submitting {
                    return Err(CommandError::SubmitInProgress);
                }
                self.phase = Phase::Active;
                self.active = None;
                self.attempts[kind.index()] = 0;
                self.begin(*kind, now_ms, sink);
                Ok(())
            }
            Command::Clear => {
                if self.phase == Phase::Submitting {
                    return Err(CommandError::SubmitInProgress);
                }
                let Some(a) = self.active.as_mut() else {
                    return Err(CommandError::NoActiveField);
                };
                a.digits.clear();
                a.overflow = false;
                a.since_ms = now_ms;
                a.last_ms = None;
                self.emit_progress(None, sink);
                Ok(())
            }
            Command::Restart => {
                if self.phase == Phase::Submitting {
                    return Err(CommandError::SubmitInProgress);
                }
                self.wipe_all();
                self.phase = Phase::Active;
                self.advance(now_ms, sink);
                Ok(())
            }
            Command::Submit => self.submit(now_ms, sink),
            Command::Cancel => {
                self.wipe_all();
                self.phase = Phase::Finished;
                sink(Event::Cancel);
                Ok(())
            }
            Command::Stop => {
                self.stop(StopReason::Agent, now_ms, sink);
                Ok(())
            }
        }
    }

    fn submit(&mut self, now_ms: u64, sink: &mut dyn FnMut(Event)) -> Result<(), CommandError> {
        match self.phase {
            Phase::Submitting => return Err(CommandError::SubmitInProgress),
            Phase::Done => return Err(CommandError::AlreadySubmitted),
            _ => {}
        }
        let missing = self.required_left();
        if !missing.is_empty() {
            return Err(CommandError::NotComplete { missing });
        }
        let Some(profile) = self.cfg.connector.clone() else {
            return Err(CommandError::NoConnector);
        };
        self.active = None;
        // The remembered keys are card digits too; no key counts until capture starts again.
        self.dedup.reset();
        // The request is built in place on the heap (no stack copy of a digit), copying the
        // captured values: the session keeps them until a success, so a retry after an
        // `error`/`unknown` outcome resends the same data under the same transaction id.
        let mut req = Box::new(PaymentRequest {
            method: profile.method,
            transaction_id: String::new(),
            card_number: SecretDigits::new(),
            security_code: SecretDigits::new(),
            expiry_month: SecretDigits::new(),
            expiry_year: SecretDigits::new(),
            postal_code: SecretDigits::new(),
            amount_minor: None,
            currency_code: profile.currency_code.clone(),
            description: profile.description.clone(),
            token_type: profile.token_type.clone(),
            parameters: Vec::new(),
        });
        let value = |f: FieldKind| self.values[f.index()].expose();
        let copy = |dst: &mut SecretDigits, src: &[u8]| {
            for &c in src {
                dst.push(c);
            }
        };
        copy(&mut req.card_number, value(FieldKind::CardNumber));
        copy(&mut req.security_code, value(FieldKind::SecurityCode));
        copy(&mut req.postal_code, value(FieldKind::PostalCode));
        let expiry = value(FieldKind::ExpirationDate);
        copy(&mut req.expiry_month, &expiry[..expiry.len().min(2)]);
        copy(&mut req.expiry_year, expiry.get(2..).unwrap_or(&[]));
        let amount = value(FieldKind::Amount);
        req.amount_minor = if amount.is_empty() {
            self.cfg.charge_amount
        } else {
            amount.iter().try_fold(0u64, |acc, &c| {
                acc.checked_mul(10)?.checked_add(u64::from(c - b'0'))
            })
        };
        let reference = value(FieldKind::Reference);
        if !reference.is_empty() {
            // Not card data: a merchant reference the connector may need.
            req.parameters.push((
                "reference".to_string(),
                String::from_utf8_lossy(reference).into_owned(),
            ));
        }
        let amount_minor = req.amount_minor.unwrap_or(u64::MAX).to_be_bytes();
        let card = self
            .secrets
            .fingerprint_parts(&[req.card_number.expose(), &amount_minor]);
        let unsettled = self
            .unsettled
            .iter()
            .find(|(fp, _)| *fp == card)
            .map(|(_, t)| t.clone());
        let tx_id = match (unsettled, &self.tx_id) {
            (Some(t), _) => t,
            (None, Some(t)) => t.clone(),
            (None, None) => {
                self.submits += 1;
                let id = if self.id.is_empty() {
                    format!("sp{}", self.started_ms)
                } else {
                    self.id.clone()
                };
                format!("{id}-{}", self.submits)
            }
        };
        req.transaction_id = tx_id.clone();
        self.tx_id = Some(tx_id.clone());
        self.in_flight = Some(tx_id);
        self.in_flight_card = card;
        self.pending = Some(req);
        self.phase = Phase::Submitting;
        let _ = now_ms;
        sink(Event::Submit {
            result: SubmitResult::Pending {
                method: profile.method,
            },
            card_number: self.card_display,
            brand: self.card_brand,
            transaction_id: self.in_flight.clone().unwrap_or_default(),
        });
        Ok(())
    }

    /// The request built by a successful `submit` (once), boxed where it was built, and the
    /// ticket that reports its outcome if the session is gone by then. Hand the request to the
    /// connector, which wipes and drops it after the hand-off.
    pub fn take_submission(&mut self) -> Option<(Box<PaymentRequest>, SubmitTicket)> {
        if self.phase != Phase::Submitting {
            return None;
        }
        let req = self.pending.take()?;
        let ticket = SubmitTicket {
            transaction_id: req.transaction_id.clone(),
            card_number: self.card_display,
            brand: self.card_brand,
            secrets: Arc::clone(&self.secrets),
        };
        Some((req, ticket))
    }

    /// [`Session::take_submission`] without the ticket, the request moved out of its box.
    pub fn take_payment_request(&mut self) -> Option<PaymentRequest> {
        self.take_submission().map(|(req, _)| *req)
    }

    /// The transaction id of the submit in flight, if any.
    pub fn submit_in_flight(&self) -> Option<&str> {
        (self.phase == Phase::Submitting)
            .then_some(self.in_flight.as_deref())
            .flatten()
    }

    /// The connector's result for the submit in flight: emits `submit` (success, error or
    /// unknown) and returns true. Returns false (nothing emitted) when no submit is in flight
    /// here, e.g. the session was cancelled or stopped meanwhile: the adapter then publishes
    /// the outcome with its [`SubmitTicket`], so it is reported exactly once either way.
    /// After `success` the session is `done` and its card data wiped; after `error` or
    /// `unknown` the data stays and `submit` may be sent again (same transaction id).
    pub fn on_payment_outcome(
        &mut self,
        o: PaymentOutcome,
        now_ms: u64,
        sink: &mut dyn FnMut(Event),
    ) -> bool {
        let secrets = Arc::clone(&self.secrets);
        let sink: &mut dyn FnMut(Event) = &mut guarded(&secrets, sink);
        let _ = now_ms;
        if self.phase != Phase::Submitting {
            return false;
        }
        self.pending = None;
        let success = matches!(o, PaymentOutcome::Success { .. });
        if let Some(t) = self.in_flight.as_deref() {
            // An answer settles the transaction; `unknown` leaves it open (see `unsettled`).
            self.unsettled.retain(|(_, u)| u != t);
            if matches!(o, PaymentOutcome::Unknown { .. }) {
                if self.unsettled.is_full() {
                    self.unsettled.remove(0);
                }
                self.unsettled.push((self.in_flight_card, t.to_owned()));
            }
        }
        let ev = Event::Submit {
            result: o.into(),
            card_number: self.card_display,
            brand: self.card_brand,
            transaction_id: self.in_flight.take().unwrap_or_default(),
        };
        if success {
            for v in &mut self.values {
                v.clear();
            }
            self.valid = [false; N];
            self.tx_id = None;
            self.phase = Phase::Done;
        } else {
            self.phase = Phase::Active;
        }
        sink(ev);
        true
    }

    /// Ends the session: wipes all data, emits `stop` (once).
    pub fn stop(&mut self, reason: StopReason, now_ms: u64, sink: &mut dyn FnMut(Event)) {
        let secrets = Arc::clone(&self.secrets);
        let sink: &mut dyn FnMut(Event) = &mut guarded(&secrets, sink);
        let _ = now_ms;
        if self.phase == Phase::Finished {
            return;
        }
        self.wipe_all();
        self.phase = Phase::Finished;
        sink(Event::Stop { reason });
    }

    /// Masked status (through the outgoing guard).
    pub fn status(&self) -> StatusSnapshot {
        let mut e = Event::Status(self.status_raw());
        self.secrets.guard_event(&mut e);
        match e {
            Event::Status(s) => s,
            _ => self.status_raw(),
        }
    }

    fn status_raw(&self) -> StatusSnapshot {
        let state = match self.phase {
            Phase::Finished => "finished",
            Phase::Submitting => "submitting",
            Phase::Done => "done",
            Phase::Active if self.active.is_some() => "capturing",
            Phase::Active if self.required_left().is_empty() => "complete",
            Phase::Active => "waiting",
        };
        let a = self.active.as_ref();
        StatusSnapshot {
            state,
            field: a.map(|a| a.kind),
            length: a
                .filter(|a| a.kind != FieldKind::SecurityCode)
                .map(|a| a.digits.len() as u8),
            attempt: a.map(|a| self.attempts[a.kind.index()] + 1),
            required: self.required_left(),
            captured: self.captured(),
            card_number: self.card_display,
            brand: self.card_brand,
            expiration_date: self.expiry_display(),
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.wipe_all();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::core::payment::ConnectorProfile;

    fn session() -> Session {
        let cfg = CaptureConfig {
            connector: Some(ConnectorProfile {
                name: "t".into(),
                url: "https://127.0.0.1:1/".into(),
                ..ConnectorProfile::default()
            }),
            ..CaptureConfig::default()
        };
        let mut s = Session::start(&cfg, 1_795_000_000_000, &mut |_| {});
        s.set_date(YearMonth {
            year: 2026,
            month: 11,
        });
        s
    }

    fn feed(s: &mut Session, keys: &str, t: &mut u64) {
        for c in keys.chars() {
            *t += 150;
            s.on_digit(
                Digit::from_char(c).unwrap(),
                DigitSource::Rfc4733,
                *t,
                &mut |_| {},
            );
        }
    }

    fn holds_no_field(s: &Session) -> bool {
        s.values.iter().all(SecretDigits::is_empty)
            && s.active.as_ref().map_or(true, |a| a.digits.is_empty())
            && s.pending.is_none()
    }

    /// No field value and no remembered key (the duplicate-suppression ring) either.
    fn holds_nothing(s: &Session) -> bool {
        holds_no_field(s) && s.dedup.is_wiped()
    }

    #[test]
    fn every_wipe_path_leaves_no_digits() {
        type Wipe = fn(&mut Session, u64);
        let paths: [(&str, Wipe); 8] = [
            ("cancel", |s, t| {
                s.command(&Command::Cancel, t, &mut |_| {}).unwrap()
            }),
            ("stop", |s, t| s.stop(StopReason::Hangup, t, &mut |_| {})),
            ("restart", |s, t| {
                s.command(&Command::Restart, t, &mut |_| {}).unwrap()
            }),
            ("session timeout", |s, t| s.tick(t + 600_000, &mut |_| {})),
            ("submit + take + success", |s, t| {
                s.command(&Command::Submit, t, &mut |_| {}).unwrap();
                assert!(s.take_payment_request().is_some());
                let o = PaymentOutcome::Success {
                    charge_id: Some("ch".into()),
                    token_id: None,
                };
                assert!(s.on_payment_outcome(o, t, &mut |_| {}));
            }),
            ("submit + success without take", |s, t| {
                s.command(&Command::Submit, t, &mut |_| {}).unwrap();
                let o = PaymentOutcome::Success {
                    charge_id: Some("ch".into()),
                    token_id: None,
                };
                assert!(s.on_payment_outcome(o, t, &mut |_| {}));
            }),
            ("submit + unknown + cancel", |s, t| {
                s.command(&Command::Submit, t, &mut |_| {}).unwrap();
                let o = PaymentOutcome::Unknown {
                    code: "timeout".into(),
                    message: "y".into(),
                };
                assert!(s.on_payment_outcome(o, t, &mut |_| {}));
                s.command(&Command::Cancel, t, &mut |_| {}).unwrap();
            }),
            ("submit + cancel in flight", |s, t| {
                s.command(&Command::Submit, t, &mut |_| {}).unwrap();
                let (req, _ticket) = s.take_submission().unwrap();
                s.command(&Command::Cancel, t, &mut |_| {}).unwrap();
                drop(req);
            }),
        ];
        for (name, wipe) in paths {
            let mut s = session();
            let mut t = 1_795_000_000_000;
            feed(&mut s, "4242424242424242#1228123", &mut t);
            assert!(!holds_nothing(&s), "{name}: control, data was captured");
            assert_eq!(s.values[FieldKind::SecurityCode.index()].expose(), b"123");
            assert!(!s.dedup.is_wiped(), "{name}: control, the ring holds keys");
            wipe(&mut s, t);
            assert!(holds_nothing(&s), "{name}");
        }
        // mid-field: restart and capture wipe the partial digits
        let mut s = session();
        let mut t = 1_795_000_000_000;
        feed(&mut s, "4242", &mut t);
        assert!(!holds_no_field(&s));
        s.command(&Command::Capture(FieldKind::CardNumber), t, &mut |_| {})
            .unwrap();
        assert!(holds_no_field(&s));
    }
}
