//! Per-call state built from the module's masked AMI events, and the JSON snapshot the page
//! renders. Nothing here ever holds more than the events carry: every value is a copy of a
//! `SecurePay-*` header (masked by the module) or a channel identifier.
//!
//! Calls are keyed by the customer channel's `Uniqueid` (stable for the channel's life,
//! URL-safe). Channels are learnt from `Newchannel`/`Rename`/`Hangup` events, from
//! `CoreShowChannels` after every (re)connect, and from the `SecurePay*` events themselves.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::ami::Message;
use crate::link::lock;
use crate::metrics::NodeMetrics;

/// How many ended calls are kept (so an open page can still say "call ended").
pub const MAX_ENDED: usize = 512;
/// Upper bound on tracked live calls (a flood of Newchannel events cannot exhaust memory).
pub const MAX_CALLS: usize = 20_000;

/// The call's secure state as shown to the agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// No secure capture on the line: normal call.
    Off,
    /// Start requested, waiting for the module to confirm.
    Securing,
    /// Secure capture running: DTMF masked, fields being captured.
    Secure,
    /// The card was handed to the connector (pending or with an outcome).
    Submitted,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldStatus {
    Pending,
    Capturing,
    Valid,
    Invalid,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldState {
    pub name: String,
    pub status: FieldStatus,
    /// Digits typed so far (absent for the security code: the module never sends it).
    pub length: Option<u32>,
    /// The module's masked display (e.g. `************4242` once valid).
    pub masked: Option<String>,
    pub brand: Option<String>,
    /// Error type of the last refused attempt (`invalid-card-number`, `input-timeout`, ...);
    /// kept until the customer starts typing again or the field becomes valid.
    pub error: Option<String>,
    pub attempt: Option<u32>,
    pub max_attempts: Option<u32>,
}

impl FieldState {
    fn new(name: &str) -> FieldState {
        FieldState {
            name: name.to_string(),
            status: FieldStatus::Pending,
            length: None,
            masked: None,
            brand: None,
            error: None,
            attempt: None,
            max_attempts: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SubmitState {
    /// `pending`, `success`, `error` (not charged) or `unknown` (sent, no answer).
    pub result: String,
    pub code: Option<String>,
    pub message: Option<String>,
    pub charge_id: Option<String>,
    pub token_id: Option<String>,
    /// The payment's transaction id (its idempotency key).
    pub transaction_id: Option<String>,
    pub card_number: Option<String>,
    pub brand: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Notice {
    /// `error` or `info`.
    pub level: &'static str,
    /// Machine code (`too-many-failed-attempts`, `command-refused`, `timeout`, ...).
    pub code: String,
    pub text: String,
    pub field: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Call {
    pub id: String,
    pub channel: String,
    pub linkedid: String,
    pub ended: bool,
    pub mode: Mode,
    pub fields: Vec<FieldState>,
    pub active: Option<String>,
    /// Every required field is valid (`SecurePayComplete`).
    pub ready: bool,
    pub card_number: Option<String>,
    pub brand: Option<String>,
    pub expiration_date: Option<String>,
    pub connector: Option<String>,
    pub submit: Option<SubmitState>,
    pub notice: Option<Notice>,
    pub stop_reason: Option<String>,
    #[serde(skip)]
    pub version: u64,
    /// When the PBX said the call ended (the page's session stops working then).
    #[serde(skip)]
    pub ended_at: Option<std::time::Instant>,
    /// When the current payment's `pending` event came (connector latency metric).
    #[serde(skip)]
    pub submitted_at: Option<Instant>,
}

impl Call {
    fn new(id: &str, channel: &str, linkedid: &str) -> Call {
        Call {
            id: id.to_string(),
            channel: channel.to_string(),
            linkedid: linkedid.to_string(),
            ended: false,
            mode: Mode::Off,
            fields: Vec::new(),
            active: None,
            ready: false,
            card_number: None,
            brand: None,
            expiration_date: None,
            connector: None,
            submit: None,
            notice: None,
            stop_reason: None,
            version: 0,
            ended_at: None,
            submitted_at: None,
        }
    }

    fn field_mut(&mut self, name: &str) -> &mut FieldState {
        let i = match self.fields.iter().position(|f| f.name == name) {
            Some(i) => i,
            None => {
                self.fields.push(FieldState::new(name));
                self.fields.len() - 1
            }
        };
        &mut self.fields[i]
    }

    fn wipe_capture(&mut self) {
        self.fields.clear();
        self.active = None;
        self.ready = false;
        self.card_number = None;
        self.brand = None;
        self.expiration_date = None;
    }

    /// Secure mode has ended: back to a normal call. The last payment outcome stays visible.
    fn set_off(&mut self) {
        self.wipe_capture();
        self.mode = Mode::Off;
    }
}

/// The connection to the PBX as shown on every page.
#[derive(Clone, Debug, Serialize)]
pub struct PbxStatus {
    pub connected: bool,
    /// Failed connection attempts since the last successful login.
    pub attempts: u32,
    pub last_error: Option<String>,
    /// How many times the connection was re-established after a loss.
    pub reconnects: u32,
}

#[derive(Serialize)]
struct Snapshot<'a> {
    pbx: &'a PbxStatus,
    call: &'a Call,
}

struct Inner {
    calls: HashMap<String, Call>,
    ended: VecDeque<String>,
    pbx: PbxStatus,
    pbx_version: u64,
    /// Bumped on every change (waiters compare it).
    epoch: u64,
}

/// Wakes the live-update writer on a change of any node's state (one for all the [`Hub`]s of
/// a service).
pub struct Notifier {
    epoch: Mutex<u64>,
    changed: Condvar,
}

impl Notifier {
    pub fn new() -> Arc<Notifier> {
        Arc::new(Notifier {
            epoch: Mutex::new(0),
            changed: Condvar::new(),
        })
    }

    fn bump(&self) {
        *lock(&self.epoch) += 1;
        self.changed.notify_all();
    }

    /// The change counter (bumped on every change of any call or PBX status).
    pub fn epoch(&self) -> u64 {
        *lock(&self.epoch)
    }

    /// Blocks until the change counter differs from `seen` or `timeout` passes; returns it.
    pub fn wait_epoch(&self, seen: u64, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        let mut g = lock(&self.epoch);
        loop {
            let now = Instant::now();
            if *g != seen || now >= deadline {
                return *g;
            }
            g = match self.changed.wait_timeout(g, deadline - now) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }
}

/// The state of one PBX node's calls + a condition variable that wakes waiters on every
/// change (and the service's [`Notifier`]).
pub struct Hub {
    inner: Mutex<Inner>,
    changed: Condvar,
    notifier: Arc<Notifier>,
    metrics: Option<NodeMetrics>,
}

fn hv(m: &Message, k: &str) -> Option<String> {
    m.get(k).map(str::to_string)
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

/// A version token for one page: the call's version and the PBX status version.
pub type SeenVersion = (u64, u64);

/// What a page session for a call may still do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// The PBX does not know the call (never existed, or ended long ago).
    Unknown,
    /// The call is up: view and act.
    Live,
    /// The call ended at `.0`; `.1`: a payment submitted before the hangup has no outcome yet
    /// (the page may still watch for it, read-only).
    Ended(std::time::Instant, bool),
}

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}

impl Hub {
    /// A stand-alone hub (its own notifier, no metrics).
    pub fn new() -> Hub {
        Hub::for_node(Notifier::new(), None)
    }

    /// The hub of one node of a service: changes wake `notifier`; events count in `metrics`.
    pub fn for_node(notifier: Arc<Notifier>, metrics: Option<NodeMetrics>) -> Hub {
        Hub {
            inner: Mutex::new(Inner {
                calls: HashMap::new(),
                ended: VecDeque::new(),
                pbx: PbxStatus {
                    connected: false,
                    attempts: 0,
                    last_error: None,
                    reconnects: 0,
                },
                pbx_version: 1,
                epoch: 0,
            }),
            changed: Condvar::new(),
            notifier,
            metrics,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind: keep serving it.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn bump(&self, g: &mut Inner) {
        g.epoch += 1;
        self.changed.notify_all();
        self.notifier.bump();
    }

    /// Applies one AMI event (any event; unrelated ones are ignored).
    pub fn apply_event(&self, m: &Message) {
        let Some(ev) = m.get("Event") else { return };
        let mut g = self.lock();
        let changed = apply(&mut g, ev, m, self.metrics.as_ref());
        if changed {
            self.bump(&mut g);
        }
    }

    /// Updates the PBX connection status.
    pub fn set_pbx(&self, f: impl FnOnce(&mut PbxStatus)) {
        let mut g = self.lock();
        let before = (g.pbx.connected, g.pbx.reconnects);
        f(&mut g.pbx);
        if let Some(m) = &self.metrics {
            m.set_up(g.pbx.connected);
            if g.pbx.reconnects > before.1 {
                m.reconnected();
            }
        }
        if before.0 != g.pbx.connected {
            log::info!(
                "secure-pay-agent: {}PBX link {}",
                self.metrics
                    .as_ref()
                    .map(|m| format!("node {:?}: ", m.node_name()))
                    .unwrap_or_default(),
                if g.pbx.connected { "up" } else { "down" }
            );
        }
        g.pbx_version += 1;
        self.bump(&mut g);
    }

    /// Calls in secure mode now (starting, capturing or submitted; not ended).
    pub fn active_sessions(&self) -> usize {
        self.lock()
            .calls
            .values()
            .filter(|c| !c.ended && c.mode != Mode::Off)
            .count()
    }

    pub fn pbx(&self) -> PbxStatus {
        self.lock().pbx.clone()
    }

    /// After a (re)connect: `present` = (channel, uniqueid, linkedid) of every channel now on
    /// the PBX. Calls not in it have ended; new ones are added.
    pub fn resync_channels(&self, present: &[(String, String, String)]) {
        let mut g = self.lock();
        let ids: std::collections::HashSet<&str> =
            present.iter().map(|(_, u, _)| u.as_str()).collect();
        let gone: Vec<String> = g
            .calls
            .iter()
            .filter(|(id, c)| !c.ended && !ids.contains(id.as_str()))
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            end_call(&mut g, &id);
        }
        for (chan, uid, linked) in present {
            ensure_call(&mut g, uid, chan, linked);
        }
        self.bump(&mut g);
    }

    /// Adds a call found by probing the PBX (a channel that existed before we connected).
    pub fn add_call(&self, id: &str, channel: &str) {
        let mut g = self.lock();
        ensure_call(&mut g, id, channel, "");
        self.bump(&mut g);
    }

    /// The PBX says this channel no longer exists.
    pub fn end(&self, id: &str) {
        let mut g = self.lock();
        end_call(&mut g, id);
        self.bump(&mut g);
    }

    /// The module says secure mode is not active on this channel (status refused).
    pub fn mark_not_secure(&self, id: &str) {
        let mut g = self.lock();
        if let Some(c) = g.calls.get_mut(id) {
            if c.mode != Mode::Off {
                c.set_off();
                c.version += 1;
                self.bump(&mut g);
            }
        }
    }

    /// The channel name to address AMI actions for a call (None: unknown or ended).
    pub fn channel_of(&self, id: &str) -> Option<(String, bool)> {
        self.lock()
            .calls
            .get(id)
            .map(|c| (c.channel.clone(), c.ended))
    }

    pub fn mode_of(&self, id: &str) -> Option<Mode> {
        self.lock().calls.get(id).map(|c| c.mode)
    }

    /// Ids of the live calls (for the status resync), at most `max`.
    pub fn live_calls(&self, max: usize) -> Vec<(String, String)> {
        self.lock()
            .calls
            .values()
            .filter(|c| !c.ended)
            .take(max)
            .map(|c| (c.id.clone(), c.channel.clone()))
            .collect()
    }

    /// Changes one call (if known) and wakes the streams.
    pub fn update_call(&self, id: &str, f: impl FnOnce(&mut Call)) {
        let mut g = self.lock();
        if let Some(c) = g.calls.get_mut(id) {
            f(c);
            c.version += 1;
            self.bump(&mut g);
        }
    }

    /// Records the outcome of an agent command (refusals become the page's notice).
    pub fn command_result(&self, id: &str, verb: &str, result: Result<(), String>) {
        self.update_call(id, |c| match result {
            Ok(()) => {
                // A restart needs nothing here: the module's `Capture` event (attempt 1, every
                // field required again) resets the page. Resetting here raced with events that
                // arrive before the action's response is read (e.g. a timeout right after).
                if c.notice
                    .as_ref()
                    .is_some_and(|n| n.code == "command-refused")
                {
                    c.notice = None;
                }
            }
            Err(text) => {
                if verb == "start" && c.mode == Mode::Securing {
                    c.mode = Mode::Off;
                }
                c.notice = Some(Notice {
                    level: "error",
                    code: "command-refused".into(),
                    text,
                    field: None,
                });
            }
        });
    }

    /// JSON snapshot of a call for the page, with its version; None for an unknown call.
    pub fn snapshot(&self, id: &str) -> Option<(String, SeenVersion)> {
        let g = self.lock();
        let c = g.calls.get(id)?;
        let json = serde_json::to_string(&Snapshot {
            pbx: &g.pbx,
            call: c,
        })
        .ok()?;
        Some((json, (c.version, g.pbx_version)))
    }

    /// The access a page session has to the call now.
    pub fn access(&self, id: &str) -> Access {
        let g = self.lock();
        match g.calls.get(id) {
            None => Access::Unknown,
            Some(c) if !c.ended => Access::Live,
            Some(c) => Access::Ended(
                c.ended_at.unwrap_or_else(std::time::Instant::now),
                c.submit.as_ref().is_some_and(|s| s.result == "pending"),
            ),
        }
    }

    /// The call's version (None: unknown call).
    pub fn version(&self, id: &str) -> Option<SeenVersion> {
        let g = self.lock();
        g.calls.get(id).map(|c| (c.version, g.pbx_version))
    }

    /// The change counter of the hub's [`Notifier`] (bumped on every change of any call or of
    /// the PBX status, of every hub sharing it).
    pub fn epoch(&self) -> u64 {
        self.notifier.epoch()
    }

    /// Blocks until the change counter differs from `seen` or `timeout` passes; returns it.
    pub fn wait_epoch(&self, seen: u64, timeout: Duration) -> u64 {
        self.notifier.wait_epoch(seen, timeout)
    }

    /// Is the call known (live or recently ended)?
    pub fn knows(&self, id: &str) -> bool {
        self.lock().calls.contains_key(id)
    }

    /// Blocks until the call's version differs from `seen` or `timeout` passes. Returns the
    /// current version.
    pub fn wait_change(&self, id: &str, seen: SeenVersion, timeout: Duration) -> SeenVersion {
        let deadline = std::time::Instant::now() + timeout;
        let mut g = self.lock();
        loop {
            let now_v = (
                g.calls.get(id).map(|c| c.version).unwrap_or(u64::MAX),
                g.pbx_version,
            );
            if now_v != seen {
                return now_v;
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return now_v;
            }
            g = match self.changed.wait_timeout(g, deadline - now) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }

    /// Marks a start request (before the action is sent).
    pub fn mark_securing(&self, id: &str) {
        self.update_call(id, |c| {
            if c.mode == Mode::Off {
                c.mode = Mode::Securing;
                c.notice = None;
                c.stop_reason = None;
            }
        });
    }
}

fn ensure_call<'a>(g: &'a mut Inner, id: &str, chan: &str, linked: &str) -> Option<&'a mut Call> {
    if id.is_empty() {
        return None;
    }
    if !g.calls.contains_key(id) {
        if g.calls.len() >= MAX_CALLS + MAX_ENDED {
            return None;
        }
        g.calls.insert(id.to_string(), Call::new(id, chan, linked));
    }
    let c = g.calls.get_mut(id)?;
    if !chan.is_empty() && c.channel != chan {
        c.channel = chan.to_string();
        c.version += 1;
    }
    if !linked.is_empty() && c.linkedid != linked {
        c.linkedid = linked.to_string();
    }
    Some(c)
}

fn end_call(g: &mut Inner, id: &str) {
    let Some(c) = g.calls.get_mut(id) else { return };
    if c.ended {
        return;
    }
    c.ended = true;
    c.ended_at = Some(std::time::Instant::now());
    if c.mode != Mode::Off {
        c.stop_reason = Some("hangup".into());
    }
    c.set_off();
    c.version += 1;
    g.ended.push_back(id.to_string());
    while g.ended.len() > MAX_ENDED {
        if let Some(old) = g.ended.pop_front() {
            g.calls.remove(&old);
        }
    }
}

fn apply(g: &mut Inner, ev: &str, m: &Message, metrics: Option<&NodeMetrics>) -> bool {
    let chan = m.get("Channel").unwrap_or("");
    let uid = m.get("Uniqueid").unwrap_or("");
    let linked = m.get("Linkedid").unwrap_or("");
    match ev {
        "Newchannel" => {
            ensure_call(g, uid, chan, linked);
            true
        }
        "Rename" => {
            let new = m.get("Newname").unwrap_or("");
            ensure_call(g, uid, new, linked);
            true
        }
        "Hangup" => {
            end_call(g, uid);
            true
        }
        _ if ev.starts_with("SecurePay") => {
            let Some(c) = ensure_call(g, uid, chan, linked) else {
                return false;
            };
            // an ended call takes only the outcome of a payment submitted before the hangup
            if c.ended && ev != "SecurePaySubmit" {
                return false;
            }
            if let Some(mx) = metrics {
                count(c, &ev["SecurePay".len()..], m, mx);
            }
            apply_secure_pay(c, &ev["SecurePay".len()..], m);
            c.version += 1;
            true
        }
        _ => false,
    }
}

/// Counts one module event in the node's metrics (labels from fixed sets only: see
/// [`crate::metrics`]).
fn count(c: &mut Call, name: &str, m: &Message, mx: &NodeMetrics) {
    match name {
        // a key press added (a clear also sends `Digit`, with length 0)
        "Digit"
            if m.get("SecurePay-Length")
                .and_then(|l| l.parse::<u32>().ok())
                .unwrap_or(0)
                > 0 =>
        {
            mx.digit(m.get("SecurePay-Source"))
        }
        "Field" => mx.field(
            m.get("SecurePay-Field"),
            m.get("SecurePay-Result") == Some("complete"),
        ),
        "Submit" => {
            let result = m.get("SecurePay-Result");
            let latency = match result.unwrap_or("pending") {
                "pending" => {
                    c.submitted_at = Some(Instant::now());
                    None
                }
                _ => c.submitted_at.take().map(|t| t.elapsed()),
            };
            mx.submit(result, latency);
        }
        _ => {}
    }
}

fn apply_secure_pay(c: &mut Call, name: &str, m: &Message) {
    let field = m.get("SecurePay-Field").map(str::to_string);
    let brand = hv(m, "SecurePay-Card-Brand");
    let num = |k: &str| m.get(k).and_then(|v| v.parse::<u32>().ok());
    match name {
        "Start" => {
            c.wipe_capture();
            c.mode = Mode::Secure;
            c.submit = None;
            c.notice = None;
            c.stop_reason = None;
            c.connector = hv(m, "SecurePay-Connector").filter(|v| v != "none");
            for f in split_list(m.get("SecurePay-Required").unwrap_or("")) {
                c.field_mut(&f);
            }
        }
        "Capture" => {
            let Some(f) = field else { return };
            if c.mode != Mode::Secure {
                // re-capture after a submit, or capture seen before Start (missed event)
                c.mode = Mode::Secure;
            }
            c.ready = false;
            if c.submit.as_ref().is_some_and(|s| s.result != "pending") {
                c.submit = None;
            }
            // Fields required again that the page shows as done were wiped by the module
            // (restart, or a re-request that invalidated them): show them as pending.
            for r in split_list(m.get("SecurePay-Required").unwrap_or("")) {
                let fs = c.field_mut(&r);
                if r != f && matches!(fs.status, FieldStatus::Valid | FieldStatus::Capturing) {
                    *fs = FieldState::new(&r);
                    match r.as_str() {
                        "payment-card-number" => {
                            c.card_number = None;
                            c.brand = None;
                        }
                        "expiration-date" => c.expiration_date = None,
                        _ => {}
                    }
                }
            }
            let attempt = num("SecurePay-Attempt");
            let fs = c.field_mut(&f);
            if attempt == Some(1) {
                // a fresh capture (restart or agent re-request), not a retry after an error
                fs.error = None;
            }
            fs.status = FieldStatus::Capturing;
            fs.length = if f == "security-code" { None } else { Some(0) };
            fs.masked = None;
            fs.attempt = attempt;
            fs.max_attempts = num("SecurePay-Max-Attempts");
            if f == "payment-card-number" {
                fs.brand = None;
                c.card_number = None;
                c.brand = None;
            }
            c.active = Some(f);
        }
        "Digit" => {
            let Some(f) = field else { return };
            let len = num("SecurePay-Length");
            let fs = c.field_mut(&f);
            fs.status = FieldStatus::Capturing;
            fs.length = len;
            fs.masked = hv(m, "SecurePay-Masked");
            if f == "payment-card-number" {
                fs.brand = brand;
            }
            if len.unwrap_or(0) > 0 {
                fs.error = None;
            }
            c.active = Some(f);
        }
        "Field" => {
            let Some(f) = field else { return };
            let result = m.get("SecurePay-Result").unwrap_or("");
            let err = hv(m, "SecurePay-Error-Type");
            let masked = hv(m, "SecurePay-Masked");
            let is_card = f == "payment-card-number";
            let fs = c.field_mut(&f);
            fs.length = num("SecurePay-Length");
            fs.attempt = num("SecurePay-Attempt").or(fs.attempt);
            if is_card {
                fs.brand = brand.clone();
            }
            if result == "complete" {
                fs.status = FieldStatus::Valid;
                fs.masked = masked.clone();
                fs.error = None;
            } else {
                fs.status = FieldStatus::Invalid;
                fs.masked = None;
                fs.error = Some(err.unwrap_or_else(|| "invalid".into()));
            }
            if is_card {
                if result == "complete" {
                    c.card_number = masked;
                    c.brand = brand;
                } else {
                    c.card_number = None;
                }
            }
            if c.active.as_deref() == Some(f.as_str()) {
                c.active = None;
            }
        }
        "Complete" => {
            c.ready = true;
            c.active = None;
            if let Some(n) = hv(m, "SecurePay-Card-Number") {
                c.card_number = Some(n);
            }
            if brand.is_some() {
                c.brand = brand;
            }
            c.expiration_date = hv(m, "SecurePay-Expiration-Date");
            for f in split_list(m.get("SecurePay-Captured").unwrap_or("")) {
                c.field_mut(&f).status = FieldStatus::Valid;
            }
        }
        "Submit" => {
            let result = m.get("SecurePay-Result").unwrap_or("pending").to_string();
            // An outcome that arrives after secure mode ended (cancel, stop, hangup during the
            // submit) updates the payment shown, not the mode.
            if c.mode != Mode::Off {
                c.mode = Mode::Submitted;
            }
            c.ready = false;
            c.active = None;
            let card = hv(m, "SecurePay-Card-Number").or_else(|| c.card_number.clone());
            let brand = brand.or_else(|| c.brand.clone());
            if result == "error" {
                c.notice = Some(Notice {
                    level: "error",
                    code: "payment-declined".into(),
                    text: m
                        .get("SecurePay-Error-Message")
                        .unwrap_or("the payment was not accepted")
                        .to_string(),
                    field: None,
                });
            } else if result == "unknown" {
                // Sent, no answer: never shown as declined. A retry of the same card is safe
                // (same transaction id / idempotency key).
                c.notice = Some(Notice {
                    level: "error",
                    code: "payment-unknown".into(),
                    text: format!(
                        "No answer from the payment processor; the payment may have gone \
                         through. Check transaction {} before taking another payment ({}).",
                        m.get("SecurePay-Transaction-Id").unwrap_or("?"),
                        m.get("SecurePay-Error-Message").unwrap_or("no answer")
                    ),
                    field: None,
                });
            } else {
                c.notice = None;
            }
            c.submit = Some(SubmitState {
                result,
                code: hv(m, "SecurePay-Error-Code"),
                message: hv(m, "SecurePay-Error-Message"),
                charge_id: hv(m, "SecurePay-Charge-Id"),
                token_id: hv(m, "SecurePay-Token-Id"),
                transaction_id: hv(m, "SecurePay-Transaction-Id"),
                card_number: card,
                brand,
            });
        }
        "Cancel" => {
            c.set_off();
            c.stop_reason = Some("cancelled".into());
            c.notice = None;
        }
        "Stop" => {
            let reason = m.get("SecurePay-Reason").unwrap_or("agent").to_string();
            c.set_off();
            if reason == "timeout" || reason == "error" {
                c.notice = Some(Notice {
                    level: "error",
                    code: reason.clone(),
                    text: if reason == "timeout" {
                        "Secure capture timed out and ended; the data entered was wiped.".into()
                    } else {
                        "Secure capture ended because of an error; the data entered was wiped."
                            .into()
                    },
                    field: None,
                });
            } else if c
                .notice
                .as_ref()
                .is_some_and(|n| n.code != "payment-declined")
            {
                c.notice = None;
            }
            c.stop_reason = Some(reason);
        }
        "Error" => {
            let text = m
                .get("SecurePay-Error-Message")
                .or_else(|| m.get("Reason"))
                .unwrap_or("secure capture reported an error")
                .to_string();
            let code = m
                .get("SecurePay-Error-Code")
                .unwrap_or("module-error")
                .to_string();
            if m.get("Reason").is_some() && c.mode == Mode::Securing {
                c.mode = Mode::Off;
            }
            c.notice = Some(Notice {
                level: "error",
                code,
                text,
                field,
            });
        }
        "Status" => {
            let state = m.get("SecurePay-State").unwrap_or("");
            if state == "finished" {
                c.set_off();
                return;
            }
            c.mode = match state {
                "submitting" | "done" => Mode::Submitted,
                _ => Mode::Secure,
            };
            let captured = split_list(m.get("SecurePay-Captured").unwrap_or(""));
            let left = split_list(m.get("SecurePay-Required").unwrap_or(""));
            for f in &captured {
                let fs = c.field_mut(f);
                fs.status = FieldStatus::Valid;
                fs.error = None;
            }
            for f in &left {
                let fs = c.field_mut(f);
                if fs.status == FieldStatus::Valid || fs.status == FieldStatus::Capturing {
                    fs.status = FieldStatus::Pending;
                    fs.length = None;
                    fs.masked = None;
                }
            }
            c.active = field.clone();
            if let Some(f) = field {
                let len = num("SecurePay-Length");
                let att = num("SecurePay-Attempt");
                let fs = c.field_mut(&f);
                fs.status = FieldStatus::Capturing;
                fs.length = len;
                fs.attempt = att;
            }
            c.ready = state == "complete";
            c.card_number = hv(m, "SecurePay-Card-Number");
            c.brand = brand;
            c.expiration_date = hv(m, "SecurePay-Expiration-Date");
            if let Some(cf) = c
                .fields
                .iter_mut()
                .find(|f| f.name == "payment-card-number")
            {
                if cf.status == FieldStatus::Valid {
                    cf.masked = c.card_number.clone();
                    cf.brand = c.brand.clone();
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "1700000000.1";

    fn ev(hub: &Hub, name: &str, extra: &[(&str, &str)]) {
        let mut pairs = vec![
            ("Event", name),
            ("Channel", "PJSIP/c-1"),
            ("Uniqueid", UID),
            ("Linkedid", UID),
        ];
        pairs.extend_from_slice(extra);
        hub.apply_event(&Message::new(&pairs));
    }

    fn field(hub: &Hub, name: &str) -> FieldState {
        let g = hub.lock();
        let c = g.calls.get(UID).expect("call");
        c.fields
            .iter()
            .find(|f| f.name == name)
            .expect("field")
            .clone()
    }

    const REQ: &str = "payment-card-number,expiration-date,security-code";

    fn complete_card(hub: &Hub) {
        ev(hub, "SecurePayStart", &[("SecurePay-Required", REQ)]);
        restart_capture(hub);
        ev(
            hub,
            "SecurePayField",
            &[
                ("SecurePay-Field", "payment-card-number"),
                ("SecurePay-Result", "complete"),
                ("SecurePay-Masked", "************4242"),
                ("SecurePay-Card-Brand", "visa"),
            ],
        );
    }

    /// The module's `Capture` event for the card number, attempt 1, everything required (what
    /// a start or a restart sends).
    fn restart_capture(hub: &Hub) {
        ev(
            hub,
            "SecurePayCapture",
            &[
                ("SecurePay-Field", "payment-card-number"),
                ("SecurePay-Attempt", "1"),
                ("SecurePay-Required", REQ),
            ],
        );
    }

    fn timeout(hub: &Hub) {
        ev(
            hub,
            "SecurePayField",
            &[
                ("SecurePay-Field", "payment-card-number"),
                ("SecurePay-Result", "invalid"),
                ("SecurePay-Error-Type", "input-timeout"),
                ("SecurePay-Attempt", "1"),
            ],
        );
    }

    #[test]
    fn a_payment_outcome_after_cancel_or_hangup_is_still_shown_and_unknown_is_not_declined() {
        let hub = Hub::new();
        complete_card(&hub);
        ev(&hub, "SecurePaySubmit", &[("SecurePay-Result", "pending")]);
        ev(&hub, "SecurePayCancel", &[]);
        ev(
            &hub,
            "SecurePaySubmit",
            &[
                ("SecurePay-Result", "unknown"),
                ("SecurePay-Error-Code", "timeout"),
                (
                    "SecurePay-Error-Message",
                    "no complete answer within 10000 ms",
                ),
                ("SecurePay-Transaction-Id", "1700000000.1-1"),
            ],
        );
        {
            let g = hub.lock();
            let c = &g.calls[UID];
            assert_eq!(
                c.mode,
                Mode::Off,
                "the late outcome does not restart secure mode"
            );
            assert_eq!(
                c.submit.as_ref().map(|s| s.result.as_str()),
                Some("unknown")
            );
            let n = c.notice.as_ref().expect("notice");
            assert_eq!(n.code, "payment-unknown", "never shown as declined");
            assert!(n.text.contains("1700000000.1-1"), "{}", n.text);
        }
        // After hangup the call is ended; a late outcome is still applied to it.
        ev(&hub, "Hangup", &[]);
        ev(
            &hub,
            "SecurePaySubmit",
            &[
                ("SecurePay-Result", "success"),
                ("SecurePay-Charge-Id", "ch_late"),
            ],
        );
        let g = hub.lock();
        let c = &g.calls[UID];
        assert!(c.ended);
        let sub = c.submit.as_ref().expect("submit");
        assert_eq!(sub.result, "success");
        assert_eq!(sub.charge_id.as_deref(), Some("ch_late"));
        drop(g);
        // Control: other events for an ended call are still ignored.
        ev(&hub, "SecurePayStart", &[("SecurePay-Required", REQ)]);
        assert_eq!(hub.lock().calls[UID].mode, Mode::Off);
    }

    #[test]
    fn restart_events_reset_the_card_and_a_late_command_reply_keeps_newer_errors() {
        let hub = Hub::new();
        complete_card(&hub);
        assert_eq!(
            field(&hub, "payment-card-number").status,
            FieldStatus::Valid
        );
        // the module's events for the restart, then a timeout, and only then the AMI response
        restart_capture(&hub);
        let f = field(&hub, "payment-card-number");
        assert_eq!(f.status, FieldStatus::Capturing);
        assert_eq!(f.masked, None);
        assert_eq!(hub.lock().calls[UID].card_number, None);
        timeout(&hub);
        hub.command_result(UID, "restart", Ok(()));
        let f = field(&hub, "payment-card-number");
        assert_eq!(f.status, FieldStatus::Invalid);
        assert_eq!(f.error.as_deref(), Some("input-timeout"));
    }

    #[test]
    fn a_fresh_capture_clears_an_old_error_but_a_retry_keeps_it() {
        let hub = Hub::new();
        complete_card(&hub);
        timeout(&hub);
        // retry after the error (attempt 2): the reason stays on screen
        ev(
            &hub,
            "SecurePayCapture",
            &[
                ("SecurePay-Field", "payment-card-number"),
                ("SecurePay-Attempt", "2"),
                ("SecurePay-Required", REQ),
            ],
        );
        assert_eq!(
            field(&hub, "payment-card-number").error.as_deref(),
            Some("input-timeout")
        );
        // restart (attempt 1 again): cleared
        restart_capture(&hub);
        assert_eq!(field(&hub, "payment-card-number").error, None);
    }

    #[test]
    fn fields_required_again_go_back_to_pending() {
        let hub = Hub::new();
        complete_card(&hub);
        ev(
            &hub,
            "SecurePayCapture",
            &[
                ("SecurePay-Field", "expiration-date"),
                ("SecurePay-Attempt", "1"),
                ("SecurePay-Required", "expiration-date,security-code"),
            ],
        );
        assert_eq!(
            field(&hub, "payment-card-number").status,
            FieldStatus::Valid
        );
        restart_capture(&hub);
        assert_eq!(field(&hub, "expiration-date").status, FieldStatus::Pending);
        assert_eq!(field(&hub, "expiration-date").length, None);
    }
}
