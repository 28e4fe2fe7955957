//! One channel in secure mode, and attach/detach of its media bug and recv_dtmf hook.
//!
//! Threads (see SAFETY.md, FreeSWITCH section):
//! - the media bug READ_REPLACE callback runs on the thread reading the customer channel; it
//!   owns [`Media`] (try_lock only, mutes the frame if it cannot get it) and never touches the
//!   capture [`Session`]: in-band digits go into the bounded `inbox` (no allocation, no lock);
//! - the recv_dtmf hook runs on the media thread (RFC 2833) or a sofia thread (SIP INFO); it
//!   also only pushes into `inbox` and returns FALSE so the digit is never queued on the
//!   channel (no forwarding, no DTMF event, no `digits_dialed`);
//! - the dispatcher (module runtime thread), the API/app threads and CLOSE lock [`State`],
//!   drain the inbox into the session, run commands/timers and fire events;
//! - start and stop of one channel are serialised by its `ctl` mutex and the registry slot it
//!   reserves: two racing starts give one start and one "already active"; a stop removes only
//!   the bug its own start attached (by pointer), never another module's or a racing start's.

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, RwLock, TryLockError};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender};

use crate::core::audio::SampleRate;
use crate::core::capture::{
    Command, CommandError, DigitSource, PressTime, Session, StopReason, SubmitTicket, YearMonth,
};
use crate::core::config::Config;
use crate::core::digit::Digit;
use crate::core::events::Event;
use crate::core::payment::PaymentOutcome;
use crate::core::suppress::Masker;
use crate::ffi::freeswitch as fs;
use crate::host::guard;

use super::events;
use super::inbox::Inbox;
use super::recording::{BugNames, Recordings, Reports};
use super::util::{self, LockedSession};
use super::watch::{ReplaceWatch, Verdict};

/// How often the dispatcher looks at a secure channel's bridge partner and media variables
/// (the customer leg's own media flags are checked on every frame by the read_frame hook).
const MEDIA_CHECK_MS: u64 = 1000;
/// Name of our media bug (also `Media-Bug-Function` in MEDIA_BUG_START: no secrets in it).
pub(super) const BUG_FUNCTION: &std::ffi::CStr = c"secure_pay";
/// The function of the no-op bug that makes FreeSWITCH recompute its tap-only flag.
pub(super) const REPAIR_FUNCTION: &std::ffi::CStr = c"secure_pay_repair";

/// `bind_digit_action` on the customer channel: FreeSWITCH feeds every digit the channel
/// receives to the session's digit-action parser (`dmachine`, target self) *before* any
/// recv_dtmf hook, and a binding can copy the matched digits into an event (`digits` header),
/// run an API or application with them, or act on them. While secure the parser is taken out
/// of its slot (at start, before the first key, and by the read_frame hook on every frame) and
/// put back in `release` (every exit path). A parser bound during secure mode is taken out too; only the
/// first is put back, a later one stays out (its bindings are lost for the rest of the call,
/// logged; never destroyed: a bridge loop may still hold it).
#[derive(Default)]
struct DigitActions {
    /// The parser taken out first (an address, compared and handed back to FreeSWITCH only).
    saved: usize,
    /// Parsers taken out after the first.
    extra: u32,
    /// `release` ran: nothing is taken out any more.
    closed: bool,
}

/// Media-thread state.
struct Media {
    masker: Option<Masker>,
    rate: u32,
    channels: u32,
}

/// Capture state (never touched by the media thread).
struct State {
    session: Session,
    /// `sensitive_dtmf` before we set it, restored at stop.
    saved_sensitive: Option<String>,
    /// The `media-not-in-core` error for the current departure of the media was fired.
    media_error_sent: bool,
    overflow_sent: bool,
    /// The `media-bug-skipped` error for the current episode was fired.
    skip_error_sent: bool,
}

/// Start/stop control of one channel (under `Channel::ctl`).
#[derive(Default)]
struct Ctl {
    /// Address of the media bug our start attached; 0 before it is attached and once a stop
    /// has removed it.
    bug: usize,
}

/// Where a connector worker leaves the outcome for the dispatcher. Once `closed` (CLOSE ran:
/// hangup or secure mode ended) the worker fires the outcome event itself, for the uuid.
#[derive(Default)]
struct OutcomeSlot {
    closed: bool,
    outcome: Option<(PaymentOutcome, SubmitTicket)>,
}

pub struct Channel {
    pub uuid: String,
    key: usize,
    cfg: Arc<Config>,
    media: Mutex<Media>,
    state: Mutex<State>,
    /// Key presses waiting for the dispatcher (slab of wiped slots; the queue carries indices).
    inbox: Inbox,
    /// The payment outcome handed over by the connector's worker (see [`OutcomeSlot`]).
    outcome: Mutex<OutcomeSlot>,
    /// A panic happened on the media path: mute every frame from now on.
    poisoned: AtomicBool,
    /// The inbox was full once: a digit may be lost (reported as an error event).
    overflow: AtomicBool,
    /// An out-of-band key press arrived since the media thread last looked: it arms the masker
    /// (`Masker::key_pressed`) before the next frame.
    oob_key: AtomicBool,
    /// Why it stops (0 = not set: hangup).
    stop_reason: AtomicU8,
    /// Serialises start and stop of this channel (see module docs).
    ctl: Mutex<Ctl>,
    /// CLOSE ran: the bug and hooks are gone.
    closed: AtomicBool,
    /// This leg's media is out of the core (bypass/proxy media): set by the read_frame hook.
    own_out: AtomicBool,
    /// The bridge partner's media, or a media variable, says out of the core (dispatcher).
    polled_out: AtomicBool,
    /// When the dispatcher last polled `polled_out` (`now_ms`).
    polled_ms: AtomicU64,
    /// The module interface's rwlock, read-locked while this channel is secure so that
    /// `unload`/`reload` of the module is refused; null when not held.
    module_lock: AtomicPtr<fs::switch_thread_rwlock_t>,
    /// The PBX's recordings of this call (option `recording`, native taps paused; see
    /// `recording.rs`). The read_frame hook only try-locks it.
    rec: Mutex<Recordings>,
    /// Native taps paused since the last report (atomics: the media thread counts, the
    /// dispatcher turns the counts into `recording` events).
    rec_reports: Reports,
    /// Other modules' media bug functions on this channel, whose codec-payload taps the
    /// per-frame check pauses too (`recording.rs`).
    bug_names: BugNames,
    /// An untracked media bug function was logged for this channel.
    untracked_logged: AtomicBool,
    /// The channel's digit-action parser (`bind_digit_action`), out of its slot while secure.
    digit_actions: Mutex<DigitActions>,
    /// The read_frame hook took a digit-action parser out (the dispatcher logs it).
    digit_actions_moved: AtomicBool,
    /// Something for the dispatcher arrived (a key press, an outcome, a media or recording
    /// change) since it last serviced this channel: serviced on the next wake-up, not only on
    /// the 50 ms sweep (see [`kicked`]).
    kicked: AtomicBool,
    /// Did every frame the read_frame hook let on reach our READ_REPLACE? (see `watch.rs`)
    watch: ReplaceWatch,
}

static REGISTRY: LazyLock<RwLock<HashMap<usize, Arc<Channel>>>> =
    LazyLock::new(|| RwLock::new(HashMap::new()));
static WAKE: LazyLock<(Sender<()>, Receiver<()>)> = LazyLock::new(|| bounded(1));
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// Monotonic milliseconds for the core's timers.
pub fn now_ms() -> u64 {
    EPOCH.elapsed().as_millis() as u64
}

/// Today's calendar month for expiry checks (our `now_ms` is monotonic, not Unix time).
fn today() -> YearMonth {
    let unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    YearMonth::from_unix_ms(unix_ms)
}

fn wake() {
    let _ = WAKE.0.try_send(());
}

/// Waits up to `d` for work (a digit, an outcome, a media or recording change); true when
/// woken by one, false after `d`.
pub fn wait_for_work(d: Duration) -> bool {
    WAKE.1.recv_timeout(d).is_ok()
}

fn reason_code(r: StopReason) -> u8 {
    match r {
        StopReason::Agent => 1,
        StopReason::Dialplan => 2,
        StopReason::Timeout => 3,
        StopReason::Hangup => 4,
        StopReason::Error => 5,
    }
}

fn reason_from(c: u8) -> StopReason {
    match c {
        1 => StopReason::Agent,
        2 => StopReason::Dialplan,
        3 => StopReason::Timeout,
        5 => StopReason::Error,
        _ => StopReason::Hangup,
    }
}

fn registry_get(key: usize) -> Option<Arc<Channel>> {
    // The write lock is held only for one HashMap insert/remove (start/stop), never across
    // host calls; a poisoned lock still holds a consistent map.
    let map = REGISTRY.read().unwrap_or_else(|p| p.into_inner());
    map.get(&key).cloned()
}

/// A media bug was added to the session `uuid` (its `MEDIA_BUG_START` event, on the event
/// thread): a secure channel reads its bug list now (new functions are checked from the next
/// frame on; a replace bug put ahead of ours is paused at once).
pub fn media_bug_started(uuid: &str) {
    let Some(ls) = LockedSession::locate(uuid) else {
        return;
    };
    if let Some(ch) = registry_get(ls.as_ptr() as usize) {
        // SAFETY: `ls` read-locks the session; the event thread holds no bug-list lock.
        unsafe { ch.learn_bug_names(ls.as_ptr()) };
    }
}

fn registry_remove(ch: &Arc<Channel>) {
    let mut map = REGISTRY.write().unwrap_or_else(|p| p.into_inner());
    if map.get(&ch.key).is_some_and(|c| Arc::ptr_eq(c, ch)) {
        map.remove(&ch.key);
    }
}

/// The secure channels for which `keep` holds (it sees each one once, under the registry's
/// read lock).
fn select(keep: impl Fn(&Channel) -> bool) -> Vec<Arc<Channel>> {
    REGISTRY
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .values()
        .filter(|ch| keep(ch))
        .cloned()
        .collect()
}

/// All channels currently in secure mode.
pub fn active() -> Vec<Arc<Channel>> {
    select(|_| true)
}

/// All channels currently in secure mode, for the dispatcher's sweep: each one's kick is
/// taken, as it is serviced now.
pub fn sweep() -> Vec<Arc<Channel>> {
    select(|ch| {
        ch.kicked.store(false, Ordering::Release);
        true
    })
}

/// The channels kicked since they were last serviced (taking their kick): what the dispatcher
/// services on a wake-up between sweeps. With 50 calls keying at once, servicing every channel
/// on every key press was most of the module's dispatcher thread (docs/performance.md).
pub fn kicked() -> Vec<Arc<Channel>> {
    select(|ch| ch.kicked.swap(false, Ordering::AcqRel))
}

impl Channel {
    /// Work for the dispatcher on this channel: marks it and wakes the dispatcher.
    fn kick(&self) {
        self.kicked.store(true, Ordering::Release);
        wake();
    }

    fn lock_state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_rec(&self) -> MutexGuard<'_, Recordings> {
        self.rec.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `time` maps the press's span from `now_ms()`: `Err(duration_ms)` for an out-of-band
    /// digit (reported at key release with its duration), `Ok(f)` for an in-band tone.
    fn push_digit(&self, d: Digit, src: DigitSource, time: Result<&dyn Fn(u64) -> PressTime, u64>) {
        let now = now_ms();
        let time = match time {
            Ok(f) => f(now),
            Err(duration_ms) => PressTime::ended(now, duration_ms),
        };
        if !self.inbox.push(d, src, now, time) {
            self.overflow.store(true, Ordering::Relaxed);
        }
        if src != DigitSource::InBand {
            self.oob_key.store(true, Ordering::Relaxed);
        }
        self.kick();
    }

    /// Media is out of the core (this leg's flags, seen per frame, or the last poll): the
    /// customer's audio is muted and key presses are dropped.
    fn media_out(&self) -> bool {
        self.own_out.load(Ordering::Acquire) || self.polled_out.load(Ordering::Acquire)
    }

    /// Moves everything pending into the session (digits in arrival order, then the payment
    /// outcome, then timers) and hands a ready payment request to the connector.
    fn pump(self: &Arc<Self>, st: &mut State, out: &mut Vec<Event>) {
        let mut sink = |e: Event| out.push(e);
        st.session.set_date(today());
        while let Some((d, src, t, time)) = self.inbox.pop() {
            st.session.on_press(d, src, time, t, &mut sink);
        }
        let outcome = self
            .outcome
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .outcome
            .take();
        if let Some((o, ticket)) = outcome {
            deliver(&mut st.session, o, &ticket, &mut sink);
        }
        st.session.tick(now_ms(), &mut sink);
        if self.overflow.load(Ordering::Relaxed) && !st.overflow_sent {
            st.overflow_sent = true;
            sink(Event::Error {
                code: "digit-overflow",
                message: "too many key presses queued; a key press may have been lost",
                field: None,
            });
        }
        if let Some((req, ticket)) = st.session.take_submission() {
            let me = Arc::clone(self);
            let done = Box::new(move |o: PaymentOutcome| {
                let mut slot = me.outcome.lock().unwrap_or_else(|p| p.into_inner());
                if !slot.closed {
                    slot.outcome = Some((o, ticket));
                    drop(slot);
                    me.kick();
                    return;
                }
                drop(slot);
                // Secure mode ended (hangup, cancel, stop) before the answer: report it anyway.
                log::info!(
                    "secure_pay: {}: payment outcome after secure mode ended: fired",
                    me.uuid
                );
                events::fire_for_uuid(&me.uuid, &ticket.outcome_event(o));
            });
            if let Err(code) = super::submit(&self.cfg, req, done) {
                st.session.on_payment_outcome(
                    PaymentOutcome::Error {
                        code: code.to_string(),
                        message: "the payment connector did not accept the request".into(),
                    },
                    now_ms(),
                    &mut sink,
                );
            }
        }
    }

    /// Learns the functions of the media bugs on the session ([`BugNames`]); logs the new
    /// ones and, once per channel, those it cannot track.
    ///
    /// # Safety
    /// `session` is this channel's live session; the caller holds no bug-list lock.
    unsafe fn learn_bug_names(&self, session: *mut fs::switch_core_session_t) {
        // SAFETY: forwarded contract.
        let (new, untracked) =
            unsafe { self.bug_names.learn_from_list(session, &self.rec_reports) };
        if self.rec_reports.pending() {
            self.kick();
        }
        for name in new {
            log::info!(
                "secure_pay: {}: media bug '{name}' of another module: its codec-payload taps are paused while secure",
                self.uuid
            );
        }
        if !untracked.is_empty() && !self.untracked_logged.swap(true, Ordering::AcqRel) {
            log::warn!(
                "secure_pay: {}: media bugs of other modules not tracked (name too long or too many): {}; a codec-payload tap among them is not paused",
                self.uuid,
                untracked.join(", ")
            );
        }
    }

    /// Dispatcher step: pump the inbox, outcome and timers into the session; once a second
    /// poll the bridge partner's media; fire events (one `media-not-in-core` error each time
    /// the media leaves the core); detach a finished session. The session is only located
    /// (FreeSWITCH's global session table) when there is something to fire or to poll.
    pub fn service(self: &Arc<Self>) {
        let now = now_ms();
        let poll = now.saturating_sub(self.polled_ms.load(Ordering::Relaxed)) >= MEDIA_CHECK_MS;
        let repair = self.watch.take_repair();
        let mut located = None;
        if poll || repair {
            let Some(ls) = LockedSession::locate(&self.uuid) else {
                return; // hanging up: CLOSE finishes it
            };
            if poll {
                self.polled_ms.store(now, Ordering::Relaxed);
                // SAFETY: `ls` holds the session's read lock, so the session and channel live.
                let out = unsafe { media_bypassed(ls.as_ptr()) };
                self.polled_out.store(out, Ordering::Release);
                // Other modules' media bugs (their MEDIA_BUG_START event may have been missed).
                // SAFETY: read-locked session; the dispatcher holds no bug-list lock.
                unsafe { self.learn_bug_names(ls.as_ptr()) };
            }
            if repair {
                // SAFETY: read-locked session; the dispatcher holds no bug-list lock.
                let done = unsafe { repair_bug_list(ls.as_ptr()) };
                log::error!(
                    "secure_pay: {}: FreeSWITCH is not running our media bug on the customer's audio (tap-only flag?; frames skipped after it had run: {}); customer muted; bug list {}",
                    self.uuid,
                    self.watch.misses(),
                    if done { "refreshed" } else { "could not be refreshed" }
                );
            }
            located = Some(ls);
        }
        if self.digit_actions_moved.swap(false, Ordering::AcqRel) {
            let extra = self
                .digit_actions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extra;
            if extra == 0 {
                log::info!(
                    "secure_pay: {}: digit actions (bind_digit_action) suspended while secure",
                    self.uuid
                );
            } else {
                log::warn!(
                    "secure_pay: {}: digit actions bound during secure mode suspended ({extra}); they stay unbound after it",
                    self.uuid
                );
            }
        }
        let mut out = Vec::new();
        let finished = {
            let mut st = self.lock_state();
            self.pump(&mut st, &mut out);
            if repair && !st.skip_error_sent {
                st.skip_error_sent = true;
                out.push(Event::Error {
                    code: "media-bug-skipped",
                    message: "FreeSWITCH stopped running secure_pay's media bug on the customer's audio: the customer is muted (in-band keys are not captured) until it runs again",
                    field: None,
                });
            } else if self.watch.verified() {
                st.skip_error_sent = false;
            }
            self.rec_reports.take(self.cfg.recording, &mut out);
            if self.media_out() {
                if !st.media_error_sent {
                    st.media_error_sent = true;
                    log::error!(
                        "secure_pay: {}: media left FreeSWITCH; muting the customer and dropping keys",
                        self.uuid
                    );
                    out.push(Event::Error {
                        code: "media-not-in-core",
                        message: "media left FreeSWITCH (bypass/proxy media or RFC 2833 pass-through): the customer's audio is muted and key presses are dropped until it returns",
                        field: None,
                    });
                }
            } else {
                st.media_error_sent = false;
            }
            st.session.is_finished()
        };
        if out.is_empty() && !finished {
            return;
        }
        let ls = match located {
            Some(ls) => ls,
            None => match LockedSession::locate(&self.uuid) {
                Some(ls) => ls,
                None => return,
            },
        };
        let session = ls.as_ptr();
        for e in &out {
            // SAFETY: read-locked session (see above).
            unsafe { events::fire(session, e) };
        }
        if finished {
            // SAFETY: read-locked session.
            unsafe { detach(session, self, StopReason::Timeout) };
        }
    }

    /// Masked status, without firing an event (`secure_pay_list`, `secure_pay_wait`).
    pub fn snapshot(&self) -> crate::core::events::StatusSnapshot {
        self.lock_state().session.status()
    }

    /// Runs an agent command (`capture <field>`, `clear`, `restart`, `submit`, `cancel`,
    /// `status`) and returns the events it produced (already fired) for the API answer.
    ///
    /// # Safety
    /// `session` is this channel's session, read-locked by the caller.
    pub unsafe fn command(
        self: &Arc<Self>,
        session: *mut fs::switch_core_session_t,
        cmd: &Command,
    ) -> Result<Vec<Event>, CommandError> {
        let mut out = Vec::new();
        let (res, finished) = {
            let mut st = self.lock_state();
            self.pump(&mut st, &mut out);
            let res = st.session.command(cmd, now_ms(), &mut |e| out.push(e));
            if res.is_ok() {
                self.pump(&mut st, &mut out);
            }
            (res, st.session.is_finished())
        };
        for e in &out {
            // SAFETY: read-locked by the caller.
            unsafe { events::fire(session, e) };
        }
        if finished {
            // SAFETY: read-locked by the caller.
            unsafe { detach(session, self, StopReason::Agent) };
        }
        res.map(|()| out)
    }
}

/// Media is not (or no longer) decoded by FreeSWITCH on this leg or its bridge partner.
///
/// # Safety
/// `session` is live (own thread or read-locked).
unsafe fn media_bypassed(session: *mut fs::switch_core_session_t) -> bool {
    // SAFETY: live session per contract.
    let ch = unsafe { util::channel_of(session) };
    // SAFETY: live channel.
    let own = unsafe { flags_bypass(ch) };
    if own {
        return true;
    }
    // SAFETY: live channel; the partner uuid string is copied at once.
    let partner =
        unsafe { util::opt_str(fs::switch_channel_get_partner_uuid(ch)) }.map(str::to_owned);
    partner
        .and_then(|u| LockedSession::locate(&u))
        .is_some_and(|p| {
            // SAFETY: `p` holds the partner's read lock.
            unsafe { flags_bypass(util::channel_of(p.as_ptr())) }
        })
}

/// # Safety
/// `ch` belongs to a live session.
unsafe fn flags_bypass(ch: *mut fs::switch_channel_t) -> bool {
    // SAFETY: live channel per contract.
    unsafe {
        util::test_flag(ch, fs::CF_PROXY_MODE)
            || util::test_flag(ch, fs::CF_PROXY_MEDIA)
            || util::test_flag(ch, fs::CF_PASS_RFC2833)
            || util::is_true(util::get_var(ch, c"pass_rfc2833").as_deref())
            || util::is_true(util::get_var(ch, c"bypass_media").as_deref())
            || util::is_true(util::get_var(ch, c"proxy_media").as_deref())
    }
}

/// Why starting secure mode failed (the API answers `-ERR <text>`).
pub enum StartError {
    AlreadyActive,
    MediaNotInCore,
    BadOptions(String),
    Attach,
    Unloading,
    /// The channel hung up (its bug closed) while secure mode was starting.
    Ended,
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::AlreadyActive => f.write_str("secure mode is already active on this channel"),
            Self::MediaNotInCore => f.write_str(
                "media is not in FreeSWITCH (bypass/proxy media or pass_rfc2833): refusing secure mode",
            ),
            Self::BadOptions(e) => f.write_str(e),
            Self::Attach => f.write_str(
                "could not attach to the channel's media (no media, unsupported codec rate or channel count)",
            ),
            Self::Unloading => f.write_str("mod_secure_pay is being unloaded"),
            Self::Ended => f.write_str("the channel hung up while secure mode was starting"),
        }
    }
}

/// Reserves the registry slot of `ch`'s session: false if secure mode is already on (or
/// starting) there. The only place a channel enters the registry.
fn registry_reserve(ch: &Arc<Channel>) -> bool {
    let mut map = REGISTRY.write().unwrap_or_else(|p| p.into_inner());
    if map.contains_key(&ch.key) {
        return false;
    }
    map.insert(ch.key, Arc::clone(ch));
    true
}

/// Turns secure mode on. Every hook is in place before the customer's media can pass
/// unmasked, in this order: `sensitive_dtmf`, the recv_dtmf hook, the read_frame hook, the
/// module lock, and last the media bug (READ_REPLACE | NO_PAUSE | FIRST | ONE_ONLY). Any
/// failure rolls back everything done so far and refuses.
///
/// Atomic per channel: the registry slot is reserved (under the registry's write lock) before
/// anything is attached, and `ch.ctl` is held until the start is complete or rolled back, so a
/// racing start answers "already active" and a racing stop waits.
///
/// # Safety
/// `session` is live: the caller runs on the session's own thread (dialplan app) or holds its
/// read lock (API).
pub unsafe fn start(
    session: *mut fs::switch_core_session_t,
    global: &Arc<Config>,
    opts: &str,
) -> Result<(), StartError> {
    let key = session as usize;
    if registry_get(key).is_some() {
        return Err(StartError::AlreadyActive);
    }
    // SAFETY: live session per contract.
    if unsafe { media_bypassed(session) } {
        // SAFETY: live session.
        unsafe {
            events::fire_error(
                session,
                "media-not-in-core",
                "secure mode refused: media is not in FreeSWITCH (bypass/proxy media or RFC 2833 pass-through)",
            )
        };
        return Err(StartError::MediaNotInCore);
    }
    // Per-call options may only narrow the admin's settings (Config::for_call).
    let cfg = global
        .for_call(opts)
        .map_err(|e| StartError::BadOptions(e.to_string()))?;
    let cfg = Arc::new(cfg);
    let cfg_recording = cfg.recording;
    // SAFETY: live session.
    let uuid = unsafe { util::uuid_of(session) };

    let mut early = Vec::new();
    let mut capture = Session::start(&cfg.capture, now_ms(), &mut |e| early.push(e));
    capture.set_date(today());
    // Transaction ids (idempotency keys) derive from the uuid and the start time: unique per
    // secure session, so a later session on the same call never reuses an earlier payment's key.
    let started_unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    capture.set_id(&format!("{uuid}-{started_unix_ms}"));
    let ch = Arc::new(Channel {
        uuid,
        key,
        cfg,
        media: Mutex::new(Media {
            masker: None,
            rate: 0,
            channels: 0,
        }),
        state: Mutex::new(State {
            session: capture,
            saved_sensitive: None,
            media_error_sent: false,
            overflow_sent: false,
            skip_error_sent: false,
        }),
        inbox: Inbox::new(),
        outcome: Mutex::new(OutcomeSlot::default()),
        poisoned: AtomicBool::new(false),
        overflow: AtomicBool::new(false),
        oob_key: AtomicBool::new(false),
        stop_reason: AtomicU8::new(0),
        ctl: Mutex::new(Ctl::default()),
        closed: AtomicBool::new(false),
        own_out: AtomicBool::new(false),
        polled_out: AtomicBool::new(false),
        polled_ms: AtomicU64::new(now_ms()),
        module_lock: AtomicPtr::new(std::ptr::null_mut()),
        rec: Mutex::new(Recordings::new(cfg_recording)),
        rec_reports: Reports::default(),
        bug_names: BugNames::default(),
        untracked_logged: AtomicBool::new(false),
        digit_actions: Mutex::new(DigitActions::default()),
        digit_actions_moved: AtomicBool::new(false),
        kicked: AtomicBool::new(true),
        watch: ReplaceWatch::new(),
    });
    let mut ctl = ch.ctl.lock().unwrap_or_else(|p| p.into_inner());
    if !registry_reserve(&ch) {
        return Err(StartError::AlreadyActive);
    }
    // SAFETY: live session per contract; `ch` is reserved for it and `ctl` is held.
    if let Err(e) = unsafe { attach(session, &ch, &mut ctl) } {
        ch.closed.store(true, Ordering::Release);
        registry_remove(&ch);
        // Key presses swallowed while attaching are dropped, never forwarded.
        ch.inbox.wipe();
        return Err(e);
    }
    // Recordings: `recording=pause` pauses both legs; native taps of the customer's payload are
    // paused in either mode (the read_frame hook keeps doing so on every frame).
    let rec_events = {
        let mut rec = ch.lock_rec();
        if ch.closed.load(Ordering::Acquire) {
            // Hung up since the bug was added: CLOSE has already resumed the recordings and
            // announced `stop`; pausing them now would leave the agent's leg paused for good.
            return Err(StartError::Ended);
        }
        // SAFETY: live session; no bug lock held here.
        let mut evs = unsafe { rec.pause_all(session) };
        // SAFETY: as above.
        unsafe { ch.learn_bug_names(session) };
        // Digit actions: out of FreeSWITCH's digit path before the first key (the hook keeps
        // doing it per frame).
        // SAFETY: live session; reads one slot.
        let dm = unsafe { fs::switch_core_session_get_dmachine(session, fs::DIGIT_TARGET_SELF) };
        if !dm.is_null() {
            // SAFETY: live session; `dm` is its current parser.
            unsafe { suspend_digit_actions(session, &ch, dm) };
        }
        // SAFETY: as above.
        unsafe { rec.scan(session, &ch.uuid, &ch.rec_reports, &ch.bug_names) };
        ch.rec_reports.take(ch.cfg.recording, &mut evs);
        if ch.closed.load(Ordering::Acquire) {
            // Hung up while we paused (CLOSE could not take `rec`, see `finish`): undo it here.
            // SAFETY: live session (ours until we return); flags only.
            evs.extend(unsafe { rec.resume_legs(session) });
            drop(rec);
            drop(ctl);
            for e in &evs {
                // SAFETY: live session.
                unsafe { events::fire(session, e) };
            }
            return Err(StartError::Ended);
        }
        evs
    };
    drop(ctl);
    log::info!("secure_pay: {}: secure mode on", ch.uuid);
    for e in rec_events.iter().chain(&early) {
        // SAFETY: live session.
        unsafe { events::fire(session, e) };
    }
    Ok(())
}

/// The attach steps of [`start`], rolled back on failure (the caller unreserves).
///
/// # Safety
/// `session` is live; `ch` holds its reserved registry slot; the caller holds `ch.ctl`.
unsafe fn attach(
    session: *mut fs::switch_core_session_t,
    ch: &Arc<Channel>,
    ctl: &mut Ctl,
) -> Result<(), StartError> {
    // SAFETY: live session.
    let channel = unsafe { util::channel_of(session) };
    // A bypass-after-bridge would take media out of the core later: switch it off.
    // SAFETY: live channel.
    unsafe { util::set_var(channel, c"bypass_media_after_bridge", None) };
    // 1. sensitive_dtmf: keeps switch_rtp from logging "RTP RECV DTMF <digit>" at debug level,
    //    and marks digits that skip the hook (see `drain_queued_dtmf`) sensitive, so FreeSWITCH
    //    neither forwards them nor fires DTMF events for them.
    // SAFETY: live channel; copied at once.
    let saved = unsafe { util::get_var(channel, c"sensitive_dtmf") };
    ch.lock_state().saved_sensitive = saved;
    // SAFETY: live channel.
    unsafe { util::set_var(channel, c"sensitive_dtmf", Some("true")) };
    // 2. recv_dtmf hook: from here on every out-of-band key press is swallowed.
    // SAFETY: live session; the hook is a 'static fn.
    if unsafe { fs::switch_core_event_hook_add_recv_dtmf(session, Some(recv_dtmf_hook)) }
        != fs::SWITCH_STATUS_SUCCESS
    {
        log::error!(
            "secure_pay: {}: could not hook DTMF; refusing secure mode",
            ch.uuid
        );
        // SAFETY: live session; nothing else attached yet.
        unsafe { release(session, ch) };
        return Err(StartError::Attach);
    }
    // 3. read_frame hook: mutes the leg while its media is out of the core.
    // SAFETY: live session; the hook is a 'static fn.
    if unsafe { fs::switch_core_event_hook_add_read_frame(session, Some(read_frame_hook)) }
        != fs::SWITCH_STATUS_SUCCESS
    {
        log::error!(
            "secure_pay: {}: could not hook media reads; refusing secure mode",
            ch.uuid
        );
        // SAFETY: live session.
        unsafe { release(session, ch) };
        return Err(StartError::Attach);
    }
    // 4. Module lock: `unload`/`reload` (without -f) is refused while it is held. No
    //    interface (a forced unload under way) is no start: shutdown may already have counted
    //    the channels and let the loader unmap the module.
    let lock = super::module_rwlock();
    if lock.is_null() {
        // SAFETY: live session.
        unsafe { release(session, ch) };
        return Err(StartError::Unloading);
    }
    // SAFETY: the rwlock of our live module interface (created by the loader, lives as long as
    // the module pool); try-lock never blocks.
    if unsafe { fs::switch_thread_rwlock_tryrdlock(lock) } != fs::SWITCH_STATUS_SUCCESS {
        // SAFETY: live session.
        unsafe { release(session, ch) };
        return Err(StartError::Unloading);
    }
    ch.module_lock.store(lock, Ordering::Release);
    // 5. The media bug. INIT (sizing the masker) runs inside add, on this thread. With the
    //    channel variable `media_bug_answer_req` true, add would make the bug skip every frame
    //    until answer (pre-answer tones reaching early media and recordings unmasked): off
    //    around the add, the admin's value back after it.
    // SAFETY: live channel; copied at once.
    let answer_req = unsafe { util::get_var(channel, c"media_bug_answer_req") };
    if answer_req.is_some() {
        // SAFETY: live channel.
        unsafe { util::set_var(channel, c"media_bug_answer_req", None) };
    }
    let user_data = Arc::into_raw(Arc::clone(ch)) as *mut c_void;
    let mut bug: *mut fs::switch_media_bug_t = std::ptr::null_mut();
    let flags = fs::SMBF_READ_REPLACE | fs::SMBF_NO_PAUSE | fs::SMBF_FIRST | fs::SMBF_ONE_ONLY;
    // SAFETY: live session; function/target are 'static literals; `user_data` is an owned Arc
    // reclaimed in CLOSE (or below if add fails: the core never calls CLOSE then).
    let st = unsafe {
        fs::switch_core_media_bug_add(
            session,
            BUG_FUNCTION.as_ptr(),
            c"customer".as_ptr(),
            Some(bug_callback),
            user_data,
            0,
            flags,
            &mut bug,
        )
    };
    if let Some(v) = answer_req.as_deref() {
        // SAFETY: live channel.
        unsafe { util::set_var(channel, c"media_bug_answer_req", Some(v)) };
    }
    if st != fs::SWITCH_STATUS_SUCCESS || bug.is_null() {
        if st == fs::SWITCH_STATUS_SUCCESS {
            // Added but no pointer back: cannot happen; remove what we cannot address.
            // SAFETY: live session; CLOSE (-> `finish`) reclaims `user_data`.
            unsafe { fs::switch_core_media_bug_remove_callback(session, Some(bug_callback)) };
            return Err(StartError::Attach);
        }
        // SAFETY: add failed, so the core dropped `user_data` without CLOSE: we still own it.
        drop(unsafe { Arc::from_raw(user_data as *const Channel) });
        // SAFETY: live session.
        unsafe { release(session, ch) };
        return Err(StartError::Attach);
    }
    ctl.bug = bug as usize;
    Ok(())
}

/// Undoes attach steps 1-4 (hooks, module lock, `sensitive_dtmf`); safe to call when some were
/// never done (removing an absent hook is a no-op; the lock is released at most once).
///
/// # Safety
/// `session` is `ch`'s live session.
unsafe fn release(session: *mut fs::switch_core_session_t, ch: &Channel) {
    // SAFETY: live session; removing a hook that is absent is a no-op.
    unsafe { fs::switch_core_event_hook_remove_recv_dtmf(session, Some(recv_dtmf_hook)) };
    // SAFETY: as above.
    unsafe { fs::switch_core_event_hook_remove_read_frame(session, Some(read_frame_hook)) };
    // SAFETY: live session (contract); the hook that takes parsers out is gone.
    unsafe { restore_digit_actions(session, ch) };
    let lock = ch.module_lock.swap(std::ptr::null_mut(), Ordering::AcqRel);
    if !lock.is_null() {
        // SAFETY: we took exactly one read lock on it in `attach`; the swap makes this the
        // only release. The module pool (and the lock) outlive every secure channel.
        unsafe { fs::switch_thread_rwlock_unlock(lock) };
    }
    let saved = ch.lock_state().saved_sensitive.take();
    // SAFETY: live session.
    let channel = unsafe { util::channel_of(session) };
    // SAFETY: live channel.
    unsafe { util::set_var(channel, c"sensitive_dtmf", saved.as_deref()) };
}

/// Puts the digit-action parser taken out while secure back into its slot (see
/// [`DigitActions`]). A read_frame hook still running on another thread takes the lock with
/// `try_lock` and sees `closed` under it, so it takes nothing out after this.
///
/// # Safety
/// `session` is live.
unsafe fn restore_digit_actions(session: *mut fs::switch_core_session_t, ch: &Channel) {
    let mut d = ch.digit_actions.lock().unwrap_or_else(|p| p.into_inner());
    d.closed = true;
    let saved = std::mem::take(&mut d.saved) as *mut fs::switch_ivr_dmachine_t;
    if saved.is_null() {
        return;
    }
    // SAFETY: live session; reads its slot.
    let now = unsafe { fs::switch_core_session_get_dmachine(session, fs::DIGIT_TARGET_SELF) };
    if now.is_null() {
        // SAFETY: live session; `saved` is the parser this channel took out of this slot and
        // nothing freed it since (only the slot and session destroy free a parser).
        unsafe { fs::switch_core_session_set_dmachine(session, saved, fs::DIGIT_TARGET_SELF) };
        log::info!("secure_pay: {}: digit actions resumed", ch.uuid);
    } else {
        log::warn!(
            "secure_pay: {}: digit actions bound during secure mode stay in place; the ones bound before are dropped",
            ch.uuid
        );
    }
}

/// Takes the digit-action parser `dm` out of its slot (read_frame hook, see [`DigitActions`]).
/// Never blocks: if `release` holds the lock this frame, the next frame tries again.
///
/// # Safety
/// `session` is live; `dm` is its current self-target parser.
unsafe fn suspend_digit_actions(
    session: *mut fs::switch_core_session_t,
    ch: &Channel,
    dm: *mut fs::switch_ivr_dmachine_t,
) {
    let Ok(mut d) = ch.digit_actions.try_lock() else {
        return;
    };
    if d.closed {
        return;
    }
    // SAFETY: live session; empties the slot (the parser itself is not touched).
    unsafe {
        fs::switch_core_session_set_dmachine(session, std::ptr::null_mut(), fs::DIGIT_TARGET_SELF)
    };
    if d.saved == 0 {
        d.saved = dm as usize;
    } else {
        d.extra += 1;
    }
    drop(d);
    ch.digit_actions_moved.store(true, Ordering::Release);
    ch.kick();
}

/// Ends secure mode (the core emits `stop` with `reason`): removes the bug, whose CLOSE does
/// the rest. Returns false if secure mode was not on.
///
/// # Safety
/// `session` is live (own thread or read-locked).
pub unsafe fn stop(session: *mut fs::switch_core_session_t, reason: StopReason) -> bool {
    match registry_get(session as usize) {
        // SAFETY: forwarded contract.
        Some(ch) => unsafe { detach(session, &ch, reason) },
        None => false,
    }
}

/// The channel state for an API command.
pub fn lookup(session: *mut fs::switch_core_session_t) -> Option<Arc<Channel>> {
    registry_get(session as usize)
}

/// Removes the bug this channel's start attached, by pointer (never by callback: that would
/// also remove a bug another start attached). Waits for a start in progress (`ctl`). Returns
/// false if there was nothing to remove (start failed, already stopped, or hung up).
///
/// # Safety
/// `session` is `ch`'s live session (own thread or read-locked).
unsafe fn detach(
    session: *mut fs::switch_core_session_t,
    ch: &Arc<Channel>,
    reason: StopReason,
) -> bool {
    let mut ctl = ch.ctl.lock().unwrap_or_else(|p| p.into_inner());
    if ctl.bug == 0 || ch.closed.load(Ordering::Acquire) {
        return false;
    }
    let _ = ch.stop_reason.compare_exchange(
        0,
        reason_code(reason),
        Ordering::AcqRel,
        Ordering::Relaxed,
    );
    let mut bug = ctl.bug as *mut fs::switch_media_bug_t;
    ctl.bug = 0;
    // SAFETY: live session; `bug` was returned by media_bug_add on this session and is
    // allocated from the session's pool, so it stays readable while the session lives even if
    // hangup removed it meanwhile (remove then only compares the pointer and finds nothing).
    // CLOSE (-> `finish`) runs in this thread before this returns; it does not take `ctl`.
    unsafe { fs::switch_core_media_bug_remove(session, &mut bug) };
    // Our bug is gone and remove released the bug list's lock: resume the native taps we
    // paused (the read_frame hook, removed in CLOSE, no longer pauses them).
    // SAFETY: live session; no bug lock held.
    let evs = unsafe { ch.lock_rec().resume_taps(session, &ch.bug_names) };
    for e in &evs {
        // SAFETY: live session.
        unsafe { events::fire(session, e) };
    }
    true
}

/// CLOSE: unhook, release the module lock, restore `sensitive_dtmf`, stop the capture session
/// (wiping its data), fire the last events.
///
/// # Safety
/// `session` is the bug's live session (CLOSE runs while it still exists).
unsafe fn finish(session: *mut fs::switch_core_session_t, ch: &Arc<Channel>) {
    ch.closed.store(true, Ordering::Release);
    // SAFETY: live session.
    unsafe { release(session, ch) };
    registry_remove(ch);
    let reason = reason_from(ch.stop_reason.load(Ordering::Acquire));
    let mut out = Vec::new();
    {
        let mut st = ch.lock_state();
        ch.pump(&mut st, &mut out);
        // From now on a worker fires a late outcome itself; one that came in since the pump
        // is delivered here (exactly once either way).
        let late = {
            let mut slot = ch.outcome.lock().unwrap_or_else(|p| p.into_inner());
            slot.closed = true;
            slot.outcome.take()
        };
        if let Some((o, ticket)) = late {
            deliver(&mut st.session, o, &ticket, &mut |e| out.push(e));
        }
        if !st.session.is_finished() {
            st.session.stop(reason, now_ms(), &mut |e| out.push(e));
        }
    }
    {
        ch.rec_reports.take(ch.cfg.recording, &mut out);
        // CLOSE may run with FreeSWITCH's bug list write-locked (hangup's remove_all) while a
        // `start` on another thread holds `rec` and waits for that lock inside pause_all/scan:
        // never block on `rec` here. The read_frame hook holds it for microseconds; a `start`
        // that still holds it after 200 ms sees `closed` when it is done and resumes the legs
        // itself (see `start`).
        let deadline = Instant::now() + Duration::from_millis(200);
        loop {
            match ch.rec.try_lock() {
                Ok(mut rec) => {
                    // SAFETY: live session (CLOSE); touches channel flags only on it.
                    out.extend(unsafe { rec.resume_legs(session) });
                    break;
                }
                Err(TryLockError::Poisoned(p)) => {
                    // SAFETY: as above.
                    out.extend(unsafe { p.into_inner().resume_legs(session) });
                    break;
                }
                Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(TryLockError::WouldBlock) => {
                    log::warn!(
                        "secure_pay: {}: recordings busy at hangup; the starting thread resumes them",
                        ch.uuid
                    );
                    break;
                }
            }
        }
    }
    ch.inbox.wipe();
    for e in &out {
        // SAFETY: live session.
        unsafe { events::fire(session, e) };
    }
    log::info!("secure_pay: {}: secure mode off", ch.uuid);
}

/// Gives an outcome to the session if it is still waiting for this submit, otherwise emits
/// the ticket's `submit` event (the session was cancelled/stopped meanwhile).
fn deliver(
    session: &mut Session,
    o: PaymentOutcome,
    ticket: &SubmitTicket,
    sink: &mut dyn FnMut(Event),
) {
    if session.submit_in_flight() == Some(ticket.transaction_id.as_str()) {
        session.on_payment_outcome(o, now_ms(), sink);
    } else {
        sink(ticket.outcome_event(o));
    }
}

fn mute(frame: &mut [i16]) {
    frame.fill(0);
}

/// Fail closed for a frame [`frame_samples`] refused (odd length, misaligned, longer than its
/// buffer): zero whatever bytes of it are addressable, so nothing we could not inspect passes.
///
/// # Safety
/// `frame` is NULL or the live read-replace frame of the current callback.
unsafe fn mute_unchecked(frame: *mut fs::switch_frame_t) {
    // SAFETY: NULL or the live frame of the current callback (contract).
    if let Some(bytes) = unsafe { frame.as_mut().and_then(|f| payload_bytes(f)) } {
        bytes.fill(0);
    }
}

/// The frame's payload as bytes: `min(datalen, buflen)` of them (`datalen` when the core gave
/// no buflen: the same bound the core itself writes to). None without a data pointer.
///
/// # Safety
/// `f` is a live frame whose `data` holds that many bytes, ours to edit while it is handed to
/// us (a READ_REPLACE callback, the read_frame hook).
unsafe fn payload_bytes(f: &mut fs::switch_frame_t) -> Option<&mut [u8]> {
    if f.data.is_null() {
        return None;
    }
    let mut len = f.datalen as usize;
    if f.buflen != 0 {
        len = len.min(f.buflen as usize);
    }
    // SAFETY: non-NULL, `len` bytes per the contract; bytes need no alignment.
    Some(unsafe { std::slice::from_raw_parts_mut(f.data as *mut u8, len) })
}

/// The frame's samples as a validated mutable slice, or None (the caller then mutes the raw
/// bytes with [`mute_unchecked`]).
///
/// # Safety
/// `frame` is NULL or the live read-replace frame of the current callback.
unsafe fn frame_samples<'a>(frame: *mut fs::switch_frame_t) -> Option<&'a mut [i16]> {
    if frame.is_null() {
        return None;
    }
    // SAFETY: non-NULL live frame for the duration of the callback.
    let f = unsafe { &mut *frame };
    let data = f.data as *mut i16;
    let len = f.datalen as usize;
    if data.is_null() || len % 2 != 0 || (f.buflen != 0 && len > f.buflen as usize) {
        return None;
    }
    if (data as usize) % std::mem::align_of::<i16>() != 0 {
        return None;
    }
    // SAFETY: `data` is non-NULL, aligned, and holds `datalen` bytes (<= buflen) of linear
    // 16-bit PCM that the core lets READ_REPLACE callbacks edit in place.
    Some(unsafe { std::slice::from_raw_parts_mut(data, len / 2) })
}

impl Channel {
    /// INIT (the thread adding the bug): size the masker for the session's read rate.
    ///
    /// # Safety
    /// `session` is the bug's live session.
    unsafe fn media_init(&self, session: *mut fs::switch_core_session_t) -> bool {
        let mut imp = fs::switch_codec_implementation_t::default();
        // SAFETY: live session; `imp` is a local out-parameter.
        if unsafe { fs::switch_core_session_get_read_impl(session, &mut imp) }
            != fs::SWITCH_STATUS_SUCCESS
        {
            log::error!("secure_pay: {}: no read codec; cannot mask", self.uuid);
            return false;
        }
        let mut m = self.media.lock().unwrap_or_else(|p| p.into_inner());
        self.build_masker(
            &mut m,
            imp.actual_samples_per_second,
            imp.number_of_channels as u32,
        )
    }

    fn build_masker(&self, m: &mut Media, rate: u32, channels: u32) -> bool {
        m.rate = rate;
        m.channels = channels;
        m.masker = None;
        let Some(sr) = SampleRate::from_hz(rate) else {
            log::error!(
                "secure_pay: {}: read rate {rate} Hz is not supported",
                self.uuid
            );
            return false;
        };
        if channels > 1 {
            log::error!(
                "secure_pay: {}: {channels}-channel audio is not supported",
                self.uuid
            );
            return false;
        }
        match Masker::new(sr, &self.cfg.masker) {
            Ok(mk) => {
                m.masker = Some(mk);
                true
            }
            Err(e) => {
                log::error!("secure_pay: {}: {e}", self.uuid);
                false
            }
        }
    }

    /// READ_REPLACE: mask in place; in-band digits go to the inbox. Returns false if the frame
    /// had to be muted because it could not be processed.
    ///
    /// # Safety
    /// `session` is the bug's live session; `samples` is the live frame.
    unsafe fn on_frame(&self, session: *mut fs::switch_core_session_t, samples: &mut [i16]) {
        if self.poisoned.load(Ordering::Relaxed) || self.media_out() {
            return mute(samples);
        }
        let Ok(mut m) = self.media.try_lock() else {
            return mute(samples);
        };
        let mut imp = fs::switch_codec_implementation_t::default();
        // SAFETY: live session; `imp` is a local (a struct copy, no allocation).
        let st = unsafe { fs::switch_core_session_get_read_impl(session, &mut imp) };
        if st != fs::SWITCH_STATUS_SUCCESS {
            // The rate of this frame cannot be known: mute it (fail closed).
            return mute(samples);
        }
        if imp.actual_samples_per_second != m.rate || imp.number_of_channels as u32 != m.channels {
            // Codec change mid-call (re-INVITE): re-size once; mute if unsupported.
            let (r, c) = (imp.actual_samples_per_second, imp.number_of_channels as u32);
            self.build_masker(&mut m, r, c);
        }
        let rate = m.rate;
        let Some(masker) = m.masker.as_mut() else {
            return mute(samples);
        };
        if self.oob_key.swap(false, Ordering::Relaxed) {
            // The customer is keying out of band: a tone head their phone lets through is
            // masked after fewer windows (see `Masker::key_pressed`).
            masker.key_pressed();
        }
        let stream_end = masker.samples_in() + samples.len() as u64;
        masker.process(samples, &mut |ev| {
            let at = |now| {
                PressTime::from_samples(ev.start_sample, ev.end_sample, stream_end, rate, now)
            };
            self.push_digit(ev.digit, DigitSource::InBand, Ok(&at))
        });
        drop(m);
        // SAFETY: live session of this callback.
        unsafe { self.drain_queued_dtmf(session) };
    }

    /// Digits queued with DTMF_FLAG_SKIP_PROCESS (uuid_send_dtmf / send_dtmf on a loopback
    /// peer, uuid_recv_dtmf / queue_dtmf) skip every recv_dtmf hook. Because secure mode sets
    /// `sensitive_dtmf`, FreeSWITCH queues them as sensitive: never forwarded, no DTMF event, not
    /// in digits_dialed. We take them off the queue here (this thread is the channel's reader,
    /// so we normally get them before the bridge loop does; if it wins, the digit is dropped,
    /// never leaked) and capture them. Real SIP digits (RFC 2833, INFO) go through the hook.
    ///
    /// # Safety
    /// `session` is the bug's live session.
    unsafe fn drain_queued_dtmf(&self, session: *mut fs::switch_core_session_t) {
        // SAFETY: live session.
        let channel = unsafe { util::channel_of(session) };
        // SAFETY: live channel; has/dequeue lock the channel's own DTMF mutex briefly.
        while unsafe { fs::switch_channel_has_dtmf(channel) } > 0 {
            let mut d = fs::switch_dtmf_t::default();
            // SAFETY: live channel; `d` is a local out-parameter.
            if unsafe { fs::switch_channel_dequeue_dtmf(channel, &mut d) }
                != fs::SWITCH_STATUS_SUCCESS
            {
                break;
            }
            if let Some(digit) = Digit::from_char(d.digit as u8 as char) {
                // switch_dtmf_t.duration is in 8 kHz samples.
                self.push_digit(
                    digit,
                    digit_source(d.source),
                    Err(u64::from(d.duration) / 8),
                );
            }
        }
    }
}

/// The media bug callback (any thread; see module docs).
unsafe extern "C" fn bug_callback(
    bug: *mut fs::switch_media_bug_t,
    user_data: *mut c_void,
    ty: fs::switch_abc_type_t,
) -> fs::switch_bool_t {
    if user_data.is_null() {
        return fs::SWITCH_TRUE;
    }
    // SAFETY: `user_data` is the Arc<Channel> we leaked in `start`; it stays alive until CLOSE
    // (below) takes it back, and the core calls no callback after CLOSE.
    let ch = unsafe { &*(user_data as *const Channel) };
    // SAFETY: the core passes its live bug.
    let session = unsafe { fs::switch_core_media_bug_get_session(bug) };
    match ty {
        fs::SWITCH_ABC_TYPE_INIT => guard("media bug init", fs::SWITCH_FALSE, || {
            // SAFETY: INIT runs inside media_bug_add on a live session.
            if unsafe { ch.media_init(session) } {
                fs::SWITCH_TRUE
            } else {
                fs::SWITCH_FALSE
            }
        }),
        fs::SWITCH_ABC_TYPE_READ_REPLACE => {
            ch.watch.on_replace();
            // SAFETY: the core passes its live bug; the frame is valid during this callback.
            let frame = unsafe { fs::switch_core_media_bug_get_read_replace_frame(bug) };
            // SAFETY: live read-replace frame of this callback.
            let Some(samples) = (unsafe { frame_samples(frame) }) else {
                // Cannot validate it: mute it (fail closed), never pass it unmasked.
                // SAFETY: same live frame.
                unsafe { mute_unchecked(frame) };
                return fs::SWITCH_TRUE;
            };
            let ok = guard("media bug read", false, || {
                // SAFETY: live session and frame for this callback.
                unsafe { ch.on_frame(session, samples) };
                true
            });
            if !ok {
                ch.poisoned.store(true, Ordering::Relaxed);
                // SAFETY: same live frame; re-derived because the closure consumed the borrow.
                if let Some(s) = unsafe { frame_samples(frame) } {
                    mute(s);
                }
            }
            fs::SWITCH_TRUE
        }
        fs::SWITCH_ABC_TYPE_CLOSE => {
            // SAFETY: CLOSE is the last call for this bug: take back the Arc leaked in `start`.
            let ch = unsafe { Arc::from_raw(user_data as *const Channel) };
            guard("media bug close", (), || {
                // SAFETY: CLOSE runs while the session still exists.
                unsafe { finish(session, &ch) }
            });
            fs::SWITCH_TRUE
        }
        _ => fs::SWITCH_TRUE,
    }
}

fn digit_source(s: fs::switch_dtmf_source_t) -> DigitSource {
    match s {
        fs::SWITCH_DTMF_RTP => DigitSource::Rfc4733,
        fs::SWITCH_DTMF_ENDPOINT => DigitSource::SipInfo,
        fs::SWITCH_DTMF_INBAND_AUDIO => DigitSource::InBand,
        _ => DigitSource::HostFrame,
    }
}

/// recv_dtmf hook: capture the digit, return FALSE so FreeSWITCH never queues it (no bridge
/// forwarding, no `DTMF` event, no `digits_dialed`, no "RECV DTMF" log line).
unsafe extern "C" fn recv_dtmf_hook(
    session: *mut fs::switch_core_session_t,
    dtmf: *const fs::switch_dtmf_t,
    _dir: fs::switch_dtmf_direction_t,
) -> fs::switch_status_t {
    // On a panic: swallow the digit (fail closed).
    guard("dtmf hook", fs::SWITCH_STATUS_FALSE, || {
        let Some(ch) = registry_get(session as usize) else {
            return fs::SWITCH_STATUS_SUCCESS; // secure mode already off: let it through
        };
        if dtmf.is_null() || ch.media_out() {
            // Media out of the core: drop the key press (neither forwarded nor captured).
            return fs::SWITCH_STATUS_FALSE;
        }
        // SAFETY: non-NULL digit owned by the caller for the duration of the hook.
        let d = unsafe { &*dtmf };
        if let Some(digit) = Digit::from_char(d.digit as u8 as char) {
            // switch_dtmf_t.duration is in 8 kHz samples.
            ch.push_digit(
                digit,
                digit_source(d.source),
                Err(u64::from(d.duration) / 8),
            );
        }
        fs::SWITCH_STATUS_FALSE
    })
}

/// read_frame hook (the thread reading the customer channel, every frame, also frames that
/// skip media bugs: proxy-media packets): checks this leg's media flags and, while media is out
/// of the core, replaces the frame with comfort noise (status INUSE makes the core hand back its
/// dummy CNG frame), so nothing of the customer reaches the bridge; a proxied packet likewise.
/// Frame accounting (`watch.rs`): a frame let on while our READ_REPLACE has not acknowledged
/// the one before is a probe (encoded silence marked comfort noise). Never blocks: a registry
/// it cannot read at once counts as "secure" (drops this one frame, fail closed).
unsafe extern "C" fn read_frame_hook(
    session: *mut fs::switch_core_session_t,
    frame: *mut *mut fs::switch_frame_t,
    _flags: fs::switch_io_flag_t,
    _stream_id: std::ffi::c_int,
) -> fs::switch_status_t {
    guard("read frame hook", fs::SWITCH_STATUS_INUSE, || {
        let ch = match REGISTRY.try_read() {
            Ok(map) => map.get(&(session as usize)).cloned(),
            Err(TryLockError::Poisoned(p)) => p.into_inner().get(&(session as usize)).cloned(),
            Err(TryLockError::WouldBlock) => return fs::SWITCH_STATUS_INUSE,
        };
        let Some(ch) = ch else {
            return fs::SWITCH_STATUS_SUCCESS; // secure mode off: the hook is being removed
        };
        // SAFETY: the core calls the hook with its live session; reads one slot.
        let dm = unsafe { fs::switch_core_session_get_dmachine(session, fs::DIGIT_TARGET_SELF) };
        if !dm.is_null() {
            // SAFETY: live session; `dm` is its current parser.
            unsafe { suspend_digit_actions(session, &ch, dm) };
        }
        // SAFETY: the core calls the hook with its live session.
        let channel = unsafe { util::channel_of(session) };
        // SAFETY: live channel; each test takes the channel's flag mutex for one read.
        let out = unsafe {
            util::test_flag(channel, fs::CF_PROXY_MODE)
                || util::test_flag(channel, fs::CF_PROXY_MEDIA)
                || util::test_flag(channel, fs::CF_PASS_RFC2833)
        };
        if ch.own_out.swap(out, Ordering::AcqRel) != out {
            ch.kick();
        }
        // Native taps of the customer's payload run right after this hook, on this thread:
        // pause any that appeared (or was resumed) before it gets this frame. A state we cannot
        // lock at once mutes this frame (the core then feeds the taps its CNG frame).
        match ch.rec.try_lock() {
            Ok(mut rec) => {
                // SAFETY: live session; read_frame hooks run outside the bug list's lock.
                if unsafe { rec.scan(session, &ch.uuid, &ch.rec_reports, &ch.bug_names) } {
                    ch.kick();
                }
            }
            Err(TryLockError::Poisoned(p)) => {
                // SAFETY: as above.
                if unsafe {
                    p.into_inner()
                        .scan(session, &ch.uuid, &ch.rec_reports, &ch.bug_names)
                } {
                    ch.kick();
                }
            }
            Err(TryLockError::WouldBlock) => {
                ch.watch.on_hook(false, true);
                return fs::SWITCH_STATUS_INUSE;
            }
        }
        // SAFETY: the core passes its frame pointer's address; the frame (if any) is live.
        let f = unsafe { frame.as_ref().and_then(|p| p.as_mut()) };
        let flags = f.as_ref().map_or(0, |f| f.flags);
        // A proxied packet skips every bug: never let one through.
        let passing = !(ch.media_out()
            || ch.poisoned.load(Ordering::Relaxed)
            || flags & fs::SFF_PROXY_PACKET != 0);
        let audio = flags & fs::SFF_NOT_AUDIO == 0;
        match ch.watch.on_hook(passing, audio) {
            Verdict::Probe { repair } => {
                if let Some(f) = f {
                    // SAFETY: the live frame the endpoint just read, ours to edit until it
                    // returns (the core itself edits its flags here).
                    unsafe { silence_encoded(f) };
                }
                if repair {
                    ch.kick();
                }
            }
            Verdict::Pass => {}
        }
        if passing {
            fs::SWITCH_STATUS_SUCCESS
        } else {
            fs::SWITCH_STATUS_INUSE
        }
    })
}

/// A probe frame (see `watch.rs`): encoded silence, marked comfort noise. If the core runs our
/// bug it decodes it as silence (or conceals it from the frames before, which our bug masks);
/// if it skips the bugs, the bridge drops or forwards silence.
///
/// # Safety
/// `f` is the live frame the endpoint just read.
unsafe fn silence_encoded(f: &mut fs::switch_frame_t) {
    f.flags |= fs::SFF_CNG;
    // SAFETY: a non-NULL codec of a live frame points at its codec, whose implementation (if
    // any) lives as long as the codec.
    let imp = unsafe { f.codec.as_ref() }.map_or(std::ptr::null(), |c| c.implementation);
    // SAFETY: the live frame the endpoint just read (contract).
    let Some(bytes) = (unsafe { payload_bytes(f) }) else {
        return;
    };
    if imp.is_null() {
        bytes.fill(0xff);
    } else {
        // SAFETY: the core's own filler (G.729 pattern or 0xff bytes) over exactly these bytes.
        unsafe { fs::switch_core_gen_encoded_silence(bytes.as_mut_ptr(), imp, bytes.len() as _) };
    }
}

/// Makes FreeSWITCH decide `SSF_MEDIA_BUG_TAP_ONLY` again (see `watch.rs`): adds a no-op bug
/// and removes it (add recomputes the flag over a list that holds our READ_REPLACE bug; remove
/// clears it). Returns false if the add was refused.
///
/// # Safety
/// `session` is live and read-locked by the caller, who holds no bug-list lock.
unsafe fn repair_bug_list(session: *mut fs::switch_core_session_t) -> bool {
    let mut bug: *mut fs::switch_media_bug_t = std::ptr::null_mut();
    // SAFETY: live session; function/target are 'static literals; no user data.
    let st = unsafe {
        fs::switch_core_media_bug_add(
            session,
            REPAIR_FUNCTION.as_ptr(),
            c"customer".as_ptr(),
            Some(noop_bug),
            std::ptr::null_mut(),
            0,
            fs::SMBF_READ_PING,
            &mut bug,
        )
    };
    if st != fs::SWITCH_STATUS_SUCCESS || bug.is_null() {
        return false;
    }
    // SAFETY: the bug just added on this live session (removed by pointer: only this one).
    unsafe { fs::switch_core_media_bug_remove(session, &mut bug) };
    true
}

/// The repair bug's callback: nothing to do (READ_PING, INIT, CLOSE).
unsafe extern "C" fn noop_bug(
    _bug: *mut fs::switch_media_bug_t,
    _user_data: *mut c_void,
    _ty: fs::switch_abc_type_t,
) -> fs::switch_bool_t {
    guard("repair bug", fs::SWITCH_TRUE, || fs::SWITCH_TRUE)
}

/// Number of channels in secure mode (or starting).
pub fn count() -> usize {
    REGISTRY.read().unwrap_or_else(|p| p.into_inner()).len()
}

/// Stops every secure channel (module unload).
pub fn stop_all() {
    for ch in active() {
        if let Some(ls) = LockedSession::locate(&ch.uuid) {
            // SAFETY: read-locked session.
            unsafe { detach(ls.as_ptr(), &ch, StopReason::Error) };
        }
    }
}
