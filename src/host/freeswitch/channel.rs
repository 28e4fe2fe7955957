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
//!   drain the inbox into the session, run commands/timers and fire events.

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender};

use crate::core::audio::SampleRate;
use crate::core::capture::{
    Command, CommandError, DigitSource, PressTime, Session, StopReason, YearMonth,
};
use crate::core::config::Config;
use crate::core::digit::Digit;
use crate::core::events::Event;
use crate::core::payment::PaymentOutcome;
use crate::core::suppress::Masker;
use crate::ffi::freeswitch as fs;
use crate::host::guard;

use super::events;
use super::util::{self, LockedSession};

/// Digits waiting between the media/DTMF threads and the session (a full card is ~25 keys).
const INBOX: usize = 64;
/// Name of our media bug (also `Media-Bug-Function` in MEDIA_BUG_START: no secrets in it).
const BUG_FUNCTION: &std::ffi::CStr = c"secure_pay";

/// What the media/DTMF threads hand to the session.
enum Input {
    /// Key, path, report time, and when the press happened (for duplicate suppression).
    Digit(Digit, DigitSource, u64, PressTime),
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
    media_error_sent: bool,
    overflow_sent: bool,
    /// When the dispatcher last checked that media is still in the core (`now_ms`).
    media_checked_ms: u64,
}

pub struct Channel {
    pub uuid: String,
    key: usize,
    cfg: Arc<Config>,
    media: Mutex<Media>,
    state: Mutex<State>,
    inbox_tx: Sender<Input>,
    inbox_rx: Receiver<Input>,
    outcome: Mutex<Option<PaymentOutcome>>,
    /// A panic happened on the media path: mute every frame from now on.
    poisoned: AtomicBool,
    /// The inbox was full once: a digit may be lost (reported as an error event).
    overflow: AtomicBool,
    /// Detach already requested (remove the bug once).
    detaching: AtomicBool,
    /// Why it stops (0 = not set: hangup).
    stop_reason: AtomicU8,
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

/// Waits up to `d` for work (a digit, an outcome, a detach).
pub fn wait_for_work(d: Duration) {
    let _ = WAKE.1.recv_timeout(d);
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

fn registry_remove(ch: &Arc<Channel>) {
    let mut map = REGISTRY.write().unwrap_or_else(|p| p.into_inner());
    if map.get(&ch.key).is_some_and(|c| Arc::ptr_eq(c, ch)) {
        map.remove(&ch.key);
    }
}

/// All channels currently in secure mode.
pub fn active() -> Vec<Arc<Channel>> {
    REGISTRY
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .values()
        .cloned()
        .collect()
}

impl Channel {
    fn lock_state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `time` maps the press's span from `now_ms()`: `Err(duration_ms)` for an out-of-band
    /// digit (reported at key release with its duration), `Ok(f)` for an in-band tone.
    fn push_digit(&self, d: Digit, src: DigitSource, time: Result<&dyn Fn(u64) -> PressTime, u64>) {
        let now = now_ms();
        let time = match time {
            Ok(f) => f(now),
            Err(duration_ms) => PressTime::ended(now, duration_ms),
        };
        if self
            .inbox_tx
            .try_send(Input::Digit(d, src, now, time))
            .is_err()
        {
            self.overflow.store(true, Ordering::Relaxed);
        }
        wake();
    }

    /// Moves everything pending into the session (digits in arrival order, then the payment
    /// outcome, then timers) and hands a ready payment request to the connector.
    fn pump(self: &Arc<Self>, st: &mut State, out: &mut Vec<Event>) {
        let mut sink = |e: Event| out.push(e);
        st.session.set_date(today());
        while let Ok(Input::Digit(d, src, t, time)) = self.inbox_rx.try_recv() {
            st.session.on_press(d, src, time, t, &mut sink);
        }
        let outcome = self
            .outcome
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(o) = outcome {
            st.session.on_payment_outcome(o, now_ms(), &mut sink);
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
        if let Some(req) = st.session.take_payment_request() {
            let me = Arc::clone(self);
            let done = Box::new(move |o: PaymentOutcome| {
                *me.outcome.lock().unwrap_or_else(|p| p.into_inner()) = Some(o);
                wake();
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

    /// Dispatcher step: pump, check that media is still in the core, fire events, detach a
    /// finished session.
    pub fn service(self: &Arc<Self>) {
        let Some(ls) = LockedSession::locate(&self.uuid) else {
            return; // hanging up: CLOSE finishes it
        };
        let session = ls.as_ptr();
        let mut out = Vec::new();
        let finished = {
            let mut st = self.lock_state();
            self.pump(&mut st, &mut out);
            // Once a second is plenty: media leaving the core takes a re-INVITE.
            let now = now_ms();
            let check = !st.media_error_sent && now.saturating_sub(st.media_checked_ms) >= 1000;
            if check {
                st.media_checked_ms = now;
            }
            // SAFETY: `ls` holds the session's read lock, so the session and channel live.
            if check && unsafe { media_bypassed(session) } {
                st.media_error_sent = true;
                out.push(Event::Error {
                    code: "media-not-in-core",
                    message: "media left FreeSWITCH (bypass/proxy media or RFC 2833 pass-through); keys may reach the agent",
                    field: None,
                });
            }
            st.session.is_finished()
        };
        for e in &out {
            // SAFETY: read-locked session (see above).
            unsafe { events::fire(session, e) };
        }
        if finished {
            // SAFETY: read-locked session.
            unsafe { detach(session, self, StopReason::Timeout) };
        }
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
        }
    }
}

/// Turns secure mode on: media bug (READ_REPLACE | NO_PAUSE | FIRST | ONE_ONLY) + recv_dtmf hook.
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
    let mut cfg = Config::clone(global);
    if !opts.trim().is_empty() {
        cfg.apply_options(opts)
            .map_err(|e| StartError::BadOptions(e.to_string()))?;
    }
    let cfg = Arc::new(cfg);
    // SAFETY: live session.
    let channel = unsafe { util::channel_of(session) };
    // A bypass-after-bridge would take media out of the core later: switch it off.
    // SAFETY: live channel.
    unsafe { util::set_var(channel, c"bypass_media_after_bridge", None) };
    // SAFETY: live channel; copied at once.
    let saved_sensitive = unsafe { util::get_var(channel, c"sensitive_dtmf") };

    let mut early = Vec::new();
    let mut capture = Session::start(&cfg.capture, now_ms(), &mut |e| early.push(e));
    capture.set_date(today());
    // SAFETY: live session.
    capture.set_id(&unsafe { util::uuid_of(session) });
    let (inbox_tx, inbox_rx) = bounded(INBOX);
    let ch = Arc::new(Channel {
        // SAFETY: live session.
        uuid: unsafe { util::uuid_of(session) },
        key,
        cfg,
        media: Mutex::new(Media {
            masker: None,
            rate: 0,
            channels: 0,
        }),
        state: Mutex::new(State {
            session: capture,
            saved_sensitive,
            media_error_sent: false,
            overflow_sent: false,
            media_checked_ms: 0,
        }),
        inbox_tx,
        inbox_rx,
        outcome: Mutex::new(None),
        poisoned: AtomicBool::new(false),
        overflow: AtomicBool::new(false),
        detaching: AtomicBool::new(false),
        stop_reason: AtomicU8::new(0),
    });
    REGISTRY
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .insert(key, Arc::clone(&ch));

    let user_data = Arc::into_raw(Arc::clone(&ch)) as *mut c_void;
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
    if st != fs::SWITCH_STATUS_SUCCESS {
        // SAFETY: add failed, so the core dropped `user_data` without CLOSE: we still own it.
        drop(unsafe { Arc::from_raw(user_data as *const Channel) });
        registry_remove(&ch);
        return Err(StartError::Attach);
    }
    // SAFETY: live session; the hook is a 'static fn.
    let hooked = unsafe { fs::switch_core_event_hook_add_recv_dtmf(session, Some(recv_dtmf_hook)) };
    if hooked != fs::SWITCH_STATUS_SUCCESS {
        log::error!(
            "secure_pay: {}: could not hook DTMF; refusing secure mode",
            ch.uuid
        );
        ch.stop_reason
            .store(reason_code(StopReason::Error), Ordering::Relaxed);
        // SAFETY: live session; CLOSE runs here and releases the bug's Arc.
        unsafe { fs::switch_core_media_bug_remove_callback(session, Some(bug_callback)) };
        return Err(StartError::Attach);
    }
    // Keeps switch_rtp from logging "RTP RECV DTMF <digit>" at debug level, and marks digits that bypass the hook (see `drain_queued_dtmf`) sensitive, so FreeSWITCH
    // neither forwards them nor fires DTMF events for them.
    // SAFETY: live channel.
    unsafe { util::set_var(channel, c"sensitive_dtmf", Some("true")) };
    log::info!("secure_pay: {}: secure mode on", ch.uuid);
    for e in &early {
        // SAFETY: live session.
        unsafe { events::fire(session, e) };
    }
    Ok(())
}

/// Ends secure mode (the core emits `stop` with `reason`): removes the bug, whose CLOSE does
/// the rest. Returns false if secure mode was not on.
///
/// # Safety
/// `session` is live (own thread or read-locked).
pub unsafe fn stop(session: *mut fs::switch_core_session_t, reason: StopReason) -> bool {
    match registry_get(session as usize) {
        Some(ch) => {
            // SAFETY: forwarded contract.
            unsafe { detach(session, &ch, reason) };
            true
        }
        None => false,
    }
}

/// The channel state for an API command.
pub fn lookup(session: *mut fs::switch_core_session_t) -> Option<Arc<Channel>> {
    registry_get(session as usize)
}

/// # Safety
/// `session` is `ch`'s live session (own thread or read-locked).
unsafe fn detach(session: *mut fs::switch_core_session_t, ch: &Arc<Channel>, reason: StopReason) {
    if ch.detaching.swap(true, Ordering::AcqRel) {
        return;
    }
    let _ = ch.stop_reason.compare_exchange(
        0,
        reason_code(reason),
        Ordering::AcqRel,
        Ordering::Relaxed,
    );
    // SAFETY: live session; CLOSE (-> `finish`) runs in this thread before this returns.
    unsafe { fs::switch_core_media_bug_remove_callback(session, Some(bug_callback)) };
}

/// CLOSE: unhook DTMF, stop the capture session (wiping its data), fire the last events.
///
/// # Safety
/// `session` is the bug's live session (CLOSE runs while it still exists).
unsafe fn finish(session: *mut fs::switch_core_session_t, ch: &Arc<Channel>) {
    // SAFETY: live session; removing a hook that is absent is a no-op.
    unsafe { fs::switch_core_event_hook_remove_recv_dtmf(session, Some(recv_dtmf_hook)) };
    registry_remove(ch);
    let reason = reason_from(ch.stop_reason.load(Ordering::Acquire));
    let mut out = Vec::new();
    let saved = {
        let mut st = ch.lock_state();
        ch.pump(&mut st, &mut out);
        if !st.session.is_finished() {
            st.session.stop(reason, now_ms(), &mut |e| out.push(e));
        }
        st.saved_sensitive.take()
    };
    // SAFETY: live session.
    let channel = unsafe { util::channel_of(session) };
    // SAFETY: live channel.
    unsafe { util::set_var(channel, c"sensitive_dtmf", saved.as_deref()) };
    for e in &out {
        // SAFETY: live session.
        unsafe { events::fire(session, e) };
    }
    log::info!("secure_pay: {}: secure mode off", ch.uuid);
}

fn mute(frame: &mut [i16]) {
    frame.fill(0);
}

/// The frame's samples as a validated mutable slice, or None (and the caller mutes nothing it
/// cannot see).
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
        if self.poisoned.load(Ordering::Relaxed) {
            return mute(samples);
        }
        let Ok(mut m) = self.media.try_lock() else {
            return mute(samples);
        };
        let mut imp = fs::switch_codec_implementation_t::default();
        // SAFETY: live session; `imp` is a local (a struct copy, no allocation).
        let st = unsafe { fs::switch_core_session_get_read_impl(session, &mut imp) };
        if st == fs::SWITCH_STATUS_SUCCESS
            && (imp.actual_samples_per_second != m.rate
                || imp.number_of_channels as u32 != m.channels)
        {
            // Codec change mid-call (re-INVITE): re-size once; mute if unsupported.
            let (r, c) = (imp.actual_samples_per_second, imp.number_of_channels as u32);
            self.build_masker(&mut m, r, c);
        }
        let rate = m.rate;
        let Some(masker) = m.masker.as_mut() else {
            return mute(samples);
        };
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
            // SAFETY: the core passes its live bug; the frame is valid during this callback.
            let frame = unsafe { fs::switch_core_media_bug_get_read_replace_frame(bug) };
            // SAFETY: live read-replace frame of this callback.
            let Some(samples) = (unsafe { frame_samples(frame) }) else {
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
        if dtmf.is_null() {
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

/// Stops every secure channel (module unload).
pub fn stop_all() {
    for ch in active() {
        if let Some(ls) = LockedSession::locate(&ch.uuid) {
            // SAFETY: read-locked session.
            unsafe { detach(ls.as_ptr(), &ch, StopReason::Error) };
        }
    }
}
