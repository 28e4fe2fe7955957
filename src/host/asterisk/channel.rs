//! Per-channel secure mode: a READ framehook on the customer channel whose data is a
//! `Box<ChannelState>` (capture session + masker), plus a channel datastore (`secure_pay`)
//! holding the hook id and the state pointer so the apps/AMI can find it.
//!
//! Ownership: the framehook owns the state; it is freed exactly once, in `sp_rs_hook_destroy`
//! (after a detach, at hangup, or at channel destruction). The datastore only borrows it and is
//! always removed together with the detach. All access to a state happens with the channel
//! locked (framehook callbacks run with it held; apps/AMI lock it), so there is never a second
//! reference in use.
//!
//! Anchoring: a native bridge (native RTP: local RTP forwarding or direct media, the PJSIP
//! default) moves the customer's media past the core and every framehook. Attaching our hook
//! (it consumes voice) makes the bridge leave native mode, but with direct media the phones
//! keep sending RTP to each other until a re-INVITE completes. So a start is only announced
//! (Start event, AMI reply, `SECUREPAY_STATUS`) once the media is anchored: the bridge is not
//! native and, if it was native at any point since the start, a frame of the customer has been
//! read through the hook since it left native mode ([`await_anchor`]). Until then, and whenever
//! the ticker sees the bridge native again mid-call (one `media-bypass` error event), every
//! customer voice frame is muted and every digit dropped uncaptured.
//!
//! Media path (`sp_rs_on_voice` / `sp_rs_on_dtmf`): no locks, no allocation per frame (the
//! G.711 scratch buffer and the masker are sized at start; a mid-call change of sample rate
//! re-creates the masker once). Events (per digit, not per frame) are formatted and published
//! directly with `manager_event`, which only queues them.

use std::collections::BTreeMap;
use std::ffi::{c_char, c_int, c_long, c_uint, c_void};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::core::anchor::Anchor;
use crate::core::audio::SampleRate;
use crate::core::capture::{Command, DigitSource, PressTime, Session, StopReason};
use crate::core::config::{Config, RecordingMode};
use crate::core::digit::Digit;
use crate::core::events::Event;
use crate::core::g711;
use crate::core::suppress::Masker;
use crate::ffi::asterisk as ffi;
use crate::host::asterisk::events::{self, ChanIds};
use crate::host::asterisk::{cstr, now_ms};
use crate::host::guard;

/// Samples converted per chunk for G.711 (frames are usually 160-480 samples).
const SCRATCH_SAMPLES: usize = 1024;

static LIVE_HOOKS: AtomicUsize = AtomicUsize::new(0);
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Hooks (and thus states) currently alive: unload is refused while this is non-zero.
pub fn live_hooks() -> usize {
    LIVE_HOOKS.load(Ordering::SeqCst)
}

/// Starts currently inside [`start_locked`], and whether an unload has begun: a start checks
/// the flag after counting itself, an unload sets it and then waits for the count to reach 0,
/// so once [`quiesce_starts`] returns no start can attach a hook behind the unload's back
/// (the loader would unmap the code under it).
static STARTING: AtomicUsize = AtomicUsize::new(0);
static UNLOADING: AtomicBool = AtomicBool::new(false);

/// Unload begins: new starts are refused; waits (at most 2 s) for the starts under way. True
/// when none is left (then `live_hooks` is final until [`allow_starts`]).
pub fn quiesce_starts() -> bool {
    UNLOADING.store(true, Ordering::SeqCst);
    let end = Instant::now() + Duration::from_secs(2);
    while STARTING.load(Ordering::SeqCst) > 0 {
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

/// The unload was refused: starts are allowed again.
pub fn allow_starts() {
    UNLOADING.store(false, Ordering::SeqCst);
}

/// Counts a start for [`quiesce_starts`] while it lives.
struct StartCount;

impl StartCount {
    fn enter() -> StartCount {
        STARTING.fetch_add(1, Ordering::SeqCst);
        StartCount
    }
}

impl Drop for StartCount {
    fn drop(&mut self) {
        STARTING.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A counted reference to the customer channel of a session (taken at start, moved in a
/// masquerade, given back when the hook is destroyed at detach or hangup; `ast_hangup` destroys
/// framehooks, so this reference never keeps a hung-up channel alive). The ticker and the
/// payment outcome reach the channel through it instead of searching every channel.
pub struct ChanRef(*mut ffi::ast_channel);

// SAFETY: the pointer is an ao2 reference to a channel; Asterisk channels are reference-counted
// objects usable from any thread (every access to the channel's state takes its lock).
unsafe impl Send for ChanRef {}

impl ChanRef {
    pub fn as_ptr(&self) -> *mut ffi::ast_channel {
        self.0
    }

    /// Takes over a reference the caller already holds (e.g. from `ast_channel_get_by_name`).
    ///
    /// # Safety
    /// `chan` is a valid channel and the caller owns one reference to it.
    pub unsafe fn adopt(chan: *mut ffi::ast_channel) -> ChanRef {
        ChanRef(chan)
    }

    /// # Safety
    /// `chan` is a valid channel.
    unsafe fn new(chan: *mut ffi::ast_channel) -> ChanRef {
        // SAFETY: valid channel per contract; the reference is given back in Drop.
        ChanRef(unsafe { ffi::sp_ast_channel_ref(chan) })
    }
}

impl Drop for ChanRef {
    fn drop(&mut self) {
        // SAFETY: releases the reference taken in `new`, exactly once.
        unsafe { ffi::sp_ast_channel_unref(self.0) };
    }
}

/// What `securepay show channels` lists. Updated with `try_lock` from media threads.
pub struct Summary {
    pub channel: String,
    pub uniqueid: String,
    pub last_event: &'static str,
    pub field: String,
    pub entered: String,
    chan: ChanRef,
    /// Address of the session's state while its hook lives (0 before attach); how
    /// [`find_locked`] tells a live state from a datastore left dangling by `ast_hangup`.
    state: usize,
}

/// A new reference to the customer channel of session `sid`, if it is still registered.
pub fn channel_of(sid: u64) -> Option<ChanRef> {
    let reg = REGISTRY.lock().ok()?;
    // SAFETY: the registry's reference keeps the channel valid while we take our own.
    reg.get(&sid).map(|s| unsafe { ChanRef::new(s.chan.0) })
}

pub static REGISTRY: Mutex<BTreeMap<u64, Summary>> = Mutex::new(BTreeMap::new());

/// True if `state` is the registered, live state of a session on `chan` (locked by the
/// caller). Matching the channel too keeps a freed address reused by another call's state from
/// passing.
fn state_registered_on(state: usize, chan: *mut ffi::ast_channel) -> bool {
    REGISTRY
        .lock()
        .map(|reg| reg.values().any(|s| s.state == state && s.chan.0 == chan))
        .unwrap_or(false)
}

/// True while session `sid` is active (registered and not stopped). Locks its channel: call
/// with no channel locked.
pub fn is_live(sid: u64) -> bool {
    let Some(chan) = channel_of(sid) else {
        return false;
    };
    // SAFETY: referenced channel, locked around the state access.
    unsafe {
        let live = locked(chan.as_ptr(), || {
            find_locked(chan.as_ptr()).is_some_and(|st| st.id == sid && st.is_active())
        });
        live
    }
}

/// A channel's lock, held until the guard drops: also released when a panic unwinds through
/// the holder, so a panic caught by `guard` never leaves the channel locked for good (the call
/// would freeze, `ast_hangup` block, and bridge and CLI threads pile up behind it).
pub struct ChanLock(*mut ffi::ast_channel);

impl ChanLock {
    /// Locks `chan`.
    ///
    /// # Safety
    /// `chan` is a valid (referenced) channel that outlives the guard.
    pub unsafe fn new(chan: *mut ffi::ast_channel) -> ChanLock {
        // SAFETY: valid channel (contract).
        unsafe { ffi::sp_ast_channel_lock(chan) };
        ChanLock(chan)
    }
}

impl Drop for ChanLock {
    fn drop(&mut self) {
        // SAFETY: locked by `new` on this thread; the channel outlives the guard.
        unsafe { ffi::sp_ast_channel_unlock(self.0) };
    }
}

/// Runs `f` with `chan` locked (unlocked afterwards, also if `f` panics).
///
/// # Safety
/// `chan` is a valid (referenced) channel for the call.
pub unsafe fn locked<R>(chan: *mut ffi::ast_channel, f: impl FnOnce() -> R) -> R {
    // SAFETY: forwarded contract.
    let _l = unsafe { ChanLock::new(chan) };
    f()
}

/// A reference to the channel whose uniqueid is `uniqueid`, if it exists.
pub fn find_by_uniqueid(uniqueid: &str) -> Option<ChanRef> {
    let id = std::ffi::CString::new(uniqueid).ok()?;
    // SAFETY: NUL-terminated id; the returned channel (if any) carries a reference we adopt.
    let p = unsafe { ffi::ast_channel_get_by_uniqueid(id.as_ptr()) };
    // SAFETY: `p` is a referenced channel or NULL.
    (!p.is_null()).then(|| unsafe { ChanRef::adopt(p) })
}

pub struct ChannelState {
    id: u64,
    pub ids: ChanIds,
    session: Session,
    cfg: Arc<Config>,
    masker: Option<Masker>,
    masker_rate: u32,
    scratch: Box<[i16]>,
    /// A panic was caught in a media callback: keep muting everything (fail closed).
    poisoned: bool,
    uninspectable_reported: bool,
    /// Secure mode ended (stop/cancel/timeout) but the hook could not be detached yet.
    passive: bool,
    /// The hook's id on the surviving channel after a masquerade (the id kept in our
    /// datastore is the old channel's, stale then).
    moved_id: Option<c_int>,
    anchor: Anchor,
    /// Secure mode has been announced (held events published). Before that, events are held
    /// in `held` and dropped if the start fails.
    announced: bool,
    held: Vec<Event>,
    /// The one `media-bypass` error event of this session has been sent.
    bypass_reported: bool,
}

impl ChannelState {
    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn config(&self) -> &Arc<Config> {
        &self.cfg
    }

    pub fn session_mut(&mut self) -> &mut Session {
        &mut self.session
    }

    pub fn is_active(&self) -> bool {
        !self.passive && !self.session.is_finished()
    }

    /// Customer media may be processed normally: anchored in the core and announced.
    fn ready(&self) -> bool {
        self.announced && self.anchor == Anchor::Core
    }

    /// A customer frame was read through the hook while not ready (it is muted/dropped).
    fn frame_while_unanchored(&mut self) {
        let before = self.anchor;
        self.anchor = before.after_frame();
        if before != self.anchor && self.announced {
            log::info!(
                "secure_pay: {}: customer media back in the PBX core; masking resumed",
                self.ids.name
            );
        }
    }

    /// Applies a bridge check (`native`: the bridge is native now; `native_seen`: it was
    /// native at some check since the start).
    fn observe_bridge(&mut self, native: bool, native_seen: bool) {
        let before = self.anchor;
        self.anchor = before.after_check(native, native_seen);
        if self.announced && before == Anchor::Core && self.anchor != Anchor::Core {
            log::warn!(
                "secure_pay: {}: customer media left the PBX core (native bridge); muting",
                self.ids.name
            );
            if !self.bypass_reported {
                self.bypass_reported = true;
                events::publish_adapter_error(
                    &self.ids,
                    "media-bypass",
                    "customer media left the PBX core (native RTP / direct media bridge); \
                     customer audio muted and digits dropped until it returns",
                );
            }
        }
    }

    /// Publishes the held events: secure mode is on from here.
    fn announce(&mut self) {
        self.announced = true;
        let held = std::mem::take(&mut self.held);
        let mut sink = sink_for(&self.ids, self.id);
        for ev in held {
            sink(ev);
        }
    }
}

/// A sink for a state's session: publishes once announced, holds the events before.
fn sink_st<'a>(
    ids: &'a ChanIds,
    id: u64,
    announced: bool,
    held: &'a mut Vec<Event>,
) -> impl FnMut(Event) + 'a {
    let mut publish = sink_for(ids, id);
    move |ev| {
        if announced {
            publish(ev)
        } else {
            held.push(ev)
        }
    }
}

/// The masked outcome of a session, collected for `SecurePay(...,wait)` (only for sessions a
/// waiting application registered with [`watch_outcome`]).
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// complete | success | error | failed | cancelled | timeout | stopped
    pub result: String,
    pub brand: String,
    /// masked card number (per pan_display)
    pub card_number: String,
    pub charge_id: String,
    pub token_id: String,
    pub error: String,
}

static OUTCOMES: Mutex<BTreeMap<u64, Outcome>> = Mutex::new(BTreeMap::new());

/// Starts collecting the outcome of session `sid`.
pub fn watch_outcome(sid: u64) {
    if let Ok(mut o) = OUTCOMES.lock() {
        o.insert(sid, Outcome::default());
    }
}

/// The outcome collected so far (`take`: and stop collecting).
pub fn outcome_of(sid: u64, take: bool) -> Option<Outcome> {
    let mut o = OUTCOMES.lock().ok()?;
    if take {
        o.remove(&sid)
    } else {
        o.get(&sid).cloned()
    }
}

pub(crate) fn note_outcome(id: u64, ev: &Event) {
    use crate::core::events::SubmitResult;
    let Ok(mut all) = OUTCOMES.lock() else { return };
    let Some(o) = all.get_mut(&id) else { return };
    match ev {
        Event::Complete {
            card_number, brand, ..
        } => {
            o.result = "complete".into();
            o.card_number = card_number.as_deref().unwrap_or("").to_owned();
            o.brand = brand.map(|b| b.name().to_owned()).unwrap_or_default();
        }
        Event::Submit { result, .. } => match result {
            SubmitResult::Pending { .. } => {}
            SubmitResult::Success {
                charge_id,
                token_id,
            } => {
                o.result = "success".into();
                o.charge_id = charge_id.as_deref().unwrap_or("").to_owned();
                o.token_id = token_id.as_deref().unwrap_or("").to_owned();
            }
            SubmitResult::Error { code, message } => {
                o.result = "error".into();
                o.error = format!("{code}: {message}");
            }
            // Sent, no usable answer: may have been charged (never reported as an error).
            SubmitResult::Unknown { code, message } => {
                o.result = "unknown".into();
                o.error = format!("{code}: {message}");
            }
        },
        Event::Cancel => o.result = "cancelled".into(),
        Event::Stop { reason }
            if o.result.is_empty() || o.result == "complete" && reason.name() != "dialplan" =>
        {
            o.result = if reason.name() == "timeout" {
                "timeout".into()
            } else {
                "stopped".into()
            };
        }
        Event::Error { code, message, .. } => {
            o.error = format!("{code}: {message}");
            if *code == "too-many-failed-attempts" && o.result.is_empty() {
                // nobody restarts an agent-less capture: final for a waiting application
                o.result = "failed".into();
            }
        }
        _ => {}
    }
}

/// Publishes events emitted by a session (for use as the core's `sink`).
fn sink_for<'a>(ids: &'a ChanIds, id: u64) -> impl FnMut(Event) + 'a {
    move |ev: Event| {
        note_outcome(id, &ev);
        events::publish(ids, &ev);
        let name = ev.name();
        let mut field = None;
        let mut entered = None;
        ev.for_each_header(&mut |k, v| match k {
            "SecurePay-Field" => field = Some(v.to_owned()),
            "SecurePay-Masked" | "SecurePay-Card-Number" => entered = Some(v.to_owned()),
            _ => {}
        });
        if let Ok(mut reg) = REGISTRY.try_lock() {
            if let Some(s) = reg.get_mut(&id) {
                s.last_event = name;
                if let Some(f) = field {
                    s.field = f;
                }
                if let Some(e) = entered {
                    s.entered = e;
                }
            }
        }
    }
}

/// Reads the identity of a channel.
///
/// # Safety
/// `chan` is a valid channel, locked by the caller (or otherwise kept alive and stable).
pub unsafe fn chan_ids(chan: *mut ffi::ast_channel) -> ChanIds {
    // SAFETY: the accessors return strings owned by the channel, valid while it is locked.
    unsafe {
        ChanIds {
            name: cstr(ffi::ast_channel_name(chan)).unwrap_or("").to_owned(),
            uniqueid: cstr(ffi::ast_channel_uniqueid(chan))
                .unwrap_or("")
                .to_owned(),
            linkedid: cstr(ffi::ast_channel_linkedid(chan))
                .unwrap_or("")
                .to_owned(),
            chan: chan as usize,
        }
    }
}

/// Why secure mode could not start.
#[derive(Debug)]
pub enum StartError {
    AlreadyActive,
    BadOptions(String),
    Masker(String),
    Attach,
    /// The customer's media did not reach the core in time (native bridge / direct media).
    NotAnchored,
    /// Secure mode ended (hangup, stop) before it was announced.
    Ended,
    /// The module is being unloaded.
    Unloading,
    /// Another framehook that reads voice or DTMF is already attached to the channel: Asterisk
    /// runs READ framehooks in attach order, so it would see the customer's raw audio and
    /// digits before ours (fail closed instead).
    ForeignHookFirst,
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::AlreadyActive => write!(f, "secure mode is already active on this channel"),
            Self::BadOptions(e) => write!(f, "bad options: {e}"),
            Self::Masker(e) => write!(f, "masker: {e}"),
            Self::Attach => write!(f, "could not attach the framehook"),
            Self::Unloading => write!(f, "res_secure_pay is being unloaded"),
            Self::NotAnchored => write!(
                f,
                "the customer's media does not pass through the PBX (native RTP bridge / direct \
                 media not torn down in time); secure mode not started"
            ),
            Self::Ended => write!(f, "secure mode ended before it started (hangup or stop)"),
            Self::ForeignHookFirst => write!(
                f,
                "another framehook (e.g. FRAME_TRACE, FRAME_DROP, JITTERBUFFER or a third-party \
                 module) is attached to this channel and would read the customer's audio and \
                 digits before secure mode; remove it first"
            ),
        }
    }
}

/// Finds our state on a locked channel; a passive (finished) state is detached on the way.
///
/// # Safety
/// `chan` is valid and locked by the caller for as long as the returned reference is used.
pub unsafe fn find_locked<'a>(chan: *mut ffi::ast_channel) -> Option<&'a mut ChannelState> {
    let mut hook_id: c_int = -1;
    // SAFETY: channel locked (caller); the shim only reads the datastore list.
    let p = unsafe { ffi::sp_ast_ds_find(chan, &mut hook_id) };
    if p.is_null() || !state_registered_on(p as usize, chan) {
        // `ast_hangup` destroys the framehook (its destroy callback frees the state and
        // unregisters it, under the channel lock: `destroy_hooks`) but leaves our datastore,
        // whose pointer then dangles. Any caller holding a reference to a channel that was hung
        // up meanwhile (ticker, AMI, dialplan, CLI) lands here and gets None instead of freed
        // memory: a segfault in `Session::tick` at 200 concurrent SIP calls before this check.
        return None;
    }
    // SAFETY: the pointer is registered as the live state of this channel's hook; it is only
    // freed in the hook's destroy callback, which unregisters it first and cannot run while
    // we hold the channel lock. No other reference exists while the lock is held.
    let st = unsafe { &mut *p.cast::<ChannelState>() };
    if !st.is_active() {
        // SAFETY: channel locked; teardown uses the moved id if the hook moved in a masquerade.
        unsafe { teardown_locked(chan, st, hook_id) };
        return None;
    }
    Some(st)
}

/// Detaches the hook (the destroy callback frees the state later) and removes the datastore.
///
/// # Safety
/// `chan` is valid and locked; `st` is the state found through its datastore.
unsafe fn teardown_locked(chan: *mut ffi::ast_channel, st: &mut ChannelState, hook_id: c_int) {
    st.passive = true;
    // recording=pause: queue the resume (done with no channel locked)
    crate::host::asterisk::recording::ended(st.id);
    // After a masquerade the datastore's id is the old channel's: use the id the fixup got.
    let hook_id = st.moved_id.unwrap_or(hook_id);
    // SAFETY: channel locked as both calls require. Detach only marks the hook (safe inside
    // the hook's own callback).
    unsafe {
        if hook_id >= 0 {
            ffi::ast_framehook_detach(chan, hook_id);
        }
        ffi::sp_ast_ds_remove(chan);
    }
}

/// Finds the hook id of our datastore on a locked channel.
///
/// # Safety
/// `chan` is valid and locked.
unsafe fn hook_id_locked(chan: *mut ffi::ast_channel) -> c_int {
    let mut id: c_int = -1;
    // SAFETY: channel locked.
    unsafe { ffi::sp_ast_ds_find(chan, &mut id) };
    id
}

/// Starts secure mode on a locked channel with `opts` applied over the global settings.
///
/// # Safety
/// `chan` is valid and locked by the caller.
pub unsafe fn start_locked(chan: *mut ffi::ast_channel, opts: &str) -> Result<(), StartError> {
    let _counted = StartCount::enter();
    if UNLOADING.load(Ordering::SeqCst) {
        return Err(StartError::Unloading);
    }
    // SAFETY: channel locked (caller).
    if unsafe { find_locked(chan) }.is_some() {
        return Err(StartError::AlreadyActive);
    }
    // A start racing the hangup (the AMI thread holds a reference, ast_hangup ran before we
    // locked): ast_hangup has destroyed the framehook list, so a hook attached now would never
    // be destroyed (and its channel reference would keep the channel forever).
    // SAFETY: channel locked (caller).
    if unsafe { ffi::sp_ast_channel_gone(chan) } != 0 {
        return Err(StartError::Ended);
    }
    // READ framehooks run in attach order: one attached before ours sees the raw frames.
    // SAFETY: channel locked (caller).
    if unsafe { ffi::sp_ast_foreign_framehooks(chan) } != 0 {
        return Err(StartError::ForeignHookFirst);
    }
    // Per-call options may only narrow the admin's settings (Config::for_call).
    let cfg = crate::host::asterisk::settings::current()
        .for_call(opts)
        .map_err(|e| StartError::BadOptions(e.to_string()))?;
    let masker = Masker::new(SampleRate::Hz8000, &cfg.masker)
        .map_err(|e| StartError::Masker(e.to_string()))?;
    // SAFETY: channel locked.
    let ids = unsafe { chan_ids(chan) };
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    if let Ok(mut reg) = REGISTRY.lock() {
        reg.insert(
            id,
            Summary {
                channel: ids.name.clone(),
                uniqueid: ids.uniqueid.clone(),
                last_event: "start",
                field: String::new(),
                entered: String::new(),
                // SAFETY: channel valid and locked (caller).
                chan: unsafe { ChanRef::new(chan) },
                state: 0,
            },
        );
    }
    let now = now_ms();
    // Held until the media is anchored (await_anchor announces them).
    let mut held = Vec::new();
    let session = {
        let mut sink = |ev: Event| held.push(ev);
        let mut s = Session::start(&cfg.capture, now, &mut sink);
        // Transaction ids (idempotency keys) `<uniqueid>-<start, Unix ms>-<n>`: unique per
        // secure session, so a later session on the same channel never reuses a key.
        s.set_id(&format!("{}-{now}", ids.uniqueid));
        s
    };
    let st = Box::new(ChannelState {
        id,
        ids,
        session,
        cfg: Arc::new(cfg),
        masker: Some(masker),
        masker_rate: 8000,
        scratch: vec![0i16; SCRATCH_SAMPLES].into_boxed_slice(),
        poisoned: false,
        uninspectable_reported: false,
        passive: false,
        moved_id: None,
        anchor: Anchor::Unverified,
        announced: false,
        held,
        bypass_reported: false,
    });
    let raw = Box::into_raw(st);
    if let Ok(mut reg) = REGISTRY.lock() {
        if let Some(s) = reg.get_mut(&id) {
            s.state = raw as usize;
        }
    }
    LIVE_HOOKS.fetch_add(1, Ordering::SeqCst);
    // SAFETY: module handle is valid while loaded; balanced in sp_rs_hook_destroy.
    unsafe { ffi::sp_ast_module_ref() };
    // SAFETY: channel locked as attach requires; `raw` stays valid until destroy_cb.
    let hook_id = unsafe { ffi::sp_ast_hook_attach(chan, raw.cast()) };
    if hook_id < 0 {
        // SAFETY: attach failed, so the hook never saw `raw`: reclaim it here, exactly once.
        let st = unsafe { Box::from_raw(raw) };
        drop_state(st);
        return Err(StartError::Attach);
    }
    // SAFETY: channel locked; on failure the hook stays attached and keeps masking (fail
    // closed) and is cleaned at hangup.
    if unsafe { ffi::sp_ast_ds_add(chan, hook_id, raw.cast()) } != 0 {
        log::error!("secure_pay: could not add the channel datastore; secure mode stays on");
    }
    Ok(())
}

/// How long a start waits for the customer's media to be anchored in the core.
pub const ANCHOR_TIMEOUT: Duration = Duration::from_secs(5);

/// Starts secure mode and waits until the customer's media is anchored in the core; only then
/// is it announced (held Start event published). On timeout (or if secure mode ends meanwhile)
/// the hook is removed without any event and an error is returned.
///
/// # Safety
/// `chan` is valid, NOT locked by the caller, and the caller holds a reference to it (or it is
/// the PBX thread's own channel).
pub unsafe fn start_anchored(
    chan: *mut ffi::ast_channel,
    opts: &str,
    timeout: Duration,
) -> Result<(), StartError> {
    // The loader's lock, never under the channel lock (see `events::refresh_stasis_loaded`).
    events::refresh_stasis_loaded();
    // Checked before the attach too: the attach makes the bridge leave native mode, possibly
    // before the first check after it.
    // SAFETY: unlocked, referenced channel (contract).
    let mut native_seen = unsafe { ffi::sp_ast_chan_media_native(chan) } != 0;
    // SAFETY: as above; locked around the datastore/framehook calls.
    unsafe {
        let r = locked(chan, || start_locked(chan, opts));
        r?;
    }
    let deadline = Instant::now() + timeout;
    loop {
        // SAFETY: as above.
        let native = unsafe { ffi::sp_ast_chan_media_native(chan) } != 0;
        native_seen |= native;
        // SAFETY: as above; the state is only touched under the channel lock.
        let done = unsafe {
            let _l = ChanLock::new(chan);
            let hook_id = hook_id_locked(chan);
            let done = match find_locked(chan) {
                None => Some(Err(StartError::Ended)),
                Some(st) => {
                    st.observe_bridge(native, native_seen);
                    if st.anchor == Anchor::Core {
                        st.announce();
                        Some(Ok((st.cfg.recording == RecordingMode::Pause)
                            .then(|| (st.id, st.ids.clone()))))
                    } else if Instant::now() >= deadline {
                        // never announced: end silently (the held events are dropped)
                        let mut sink = |_ev: Event| {};
                        st.session.stop(StopReason::Dialplan, now_ms(), &mut sink);
                        st.held.clear();
                        teardown_locked(chan, st, hook_id);
                        Some(Err(StartError::NotAnchored))
                    } else {
                        None
                    }
                }
            };
            done
        };
        match done {
            Some(Ok(Some((sid, ids)))) => {
                // SAFETY: unlocked, referenced channel (contract).
                unsafe { crate::host::asterisk::recording::pause(sid, chan, ids) };
                return Ok(());
            }
            Some(Ok(None)) => return Ok(()),
            Some(Err(e)) => return Err(e),
            None => {}
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The id of the active session on a locked channel.
///
/// # Safety
/// `chan` is valid and locked by the caller.
pub unsafe fn session_id_locked(chan: *mut ffi::ast_channel) -> Option<u64> {
    // SAFETY: channel locked (caller).
    unsafe { find_locked(chan) }.map(|st| st.id)
}

/// Whether the active session of a locked channel has a payment connector profile.
///
/// # Safety
/// `chan` is valid and locked by the caller.
pub unsafe fn has_connector_locked(chan: *mut ffi::ast_channel) -> bool {
    // SAFETY: channel locked (caller).
    unsafe { find_locked(chan) }.is_some_and(|st| st.cfg.active_connector().is_some())
}

/// Stops secure mode on a locked channel. `Ok(false)` = it was not active.
///
/// # Safety
/// `chan` is valid and locked by the caller.
pub unsafe fn stop_locked(chan: *mut ffi::ast_channel, reason: StopReason) -> bool {
    // SAFETY: channel locked (caller).
    let hook_id = unsafe { hook_id_locked(chan) };
    // SAFETY: channel locked.
    let Some(st) = (unsafe { find_locked(chan) }) else {
        return false;
    };
    {
        let mut sink = sink_st(&st.ids, st.id, st.announced, &mut st.held);
        st.session.stop(reason, now_ms(), &mut sink);
    }
    // SAFETY: channel locked; `st` came from its datastore.
    unsafe { teardown_locked(chan, st, hook_id) };
    true
}

/// Runs an agent command (capture/clear/restart/submit/cancel/status) on a locked channel.
/// Returns the core's error text on refusal, `None` if secure mode is not active.
///
/// # Safety
/// `chan` is valid and locked by the caller.
pub unsafe fn command_locked(
    chan: *mut ffi::ast_channel,
    cmd: &Command,
) -> Option<Result<(), String>> {
    // SAFETY: channel locked (caller).
    let hook_id = unsafe { hook_id_locked(chan) };
    // SAFETY: channel locked.
    let st = unsafe { find_locked(chan) }?;
    if !st.announced {
        return Some(Err("secure mode is still starting".into()));
    }
    let now = now_ms();
    let res = {
        let mut sink = sink_for(&st.ids, st.id);
        st.session
            .command(cmd, now, &mut sink)
            .map_err(|e| e.to_string())
    };
    if res.is_ok() && matches!(cmd, Command::Submit) {
        crate::host::asterisk::control::hand_off(st);
    }
    if st.session.is_finished() {
        // SAFETY: channel locked; `st` came from its datastore.
        unsafe { teardown_locked(chan, st, hook_id) };
    }
    Some(res)
}

/// The masked status of a locked channel's session, for a list response (not broadcast).
/// `None` if secure mode is not active; `Err` while it is still starting.
///
/// # Safety
/// `chan` is valid and locked by the caller.
pub unsafe fn status_locked(chan: *mut ffi::ast_channel) -> Option<Result<String, String>> {
    // SAFETY: channel locked (caller).
    let st = unsafe { find_locked(chan) }?;
    if !st.announced {
        return Some(Err("secure mode is still starting".into()));
    }
    let mut status = None;
    let res = {
        let mut publish = sink_for(&st.ids, st.id);
        let mut sink = |ev: Event| {
            if matches!(ev, Event::Status(_)) {
                status = Some(ev);
            } else {
                publish(ev);
            }
        };
        st.session
            .command(&Command::Status, now_ms(), &mut sink)
            .map_err(|e| e.to_string())
    };
    Some(res.and_then(|()| {
        status
            .map(|ev| events::ami_body(&st.ids, &ev))
            .ok_or_else(|| "no status".to_owned())
    }))
}

/// Delivers a payment outcome to session `sid` on a locked channel if that session is still
/// waiting for it (takes it out of `o`); otherwise leaves `o` for the caller to publish.
///
/// # Safety
/// `chan` is valid and locked by the caller.
pub unsafe fn outcome_locked(
    chan: *mut ffi::ast_channel,
    sid: u64,
    o: &mut Option<crate::core::payment::PaymentOutcome>,
) {
    // SAFETY: channel locked (caller).
    let hook_id = unsafe { hook_id_locked(chan) };
    // SAFETY: channel locked.
    let Some(st) = (unsafe { find_locked(chan) }) else {
        return;
    };
    if st.id != sid || st.session.submit_in_flight().is_none() {
        return;
    }
    let Some(outcome) = o.take() else { return };
    {
        let mut sink = sink_for(&st.ids, st.id);
        st.session.on_payment_outcome(outcome, now_ms(), &mut sink);
    }
    if st.session.is_finished() {
        // SAFETY: channel locked; `st` came from its datastore.
        unsafe { teardown_locked(chan, st, hook_id) };
    }
}

/// Advances the timers of session `sid` on a locked channel (the module's ticker thread; media
/// frames tick too, but a channel may carry no audio, e.g. a Local channel at rest).
///
/// # Safety
/// `chan` is valid and locked by the caller.
pub unsafe fn tick_locked(chan: *mut ffi::ast_channel, sid: u64, native: bool) {
    // SAFETY: channel locked (caller).
    let hook_id = unsafe { hook_id_locked(chan) };
    // SAFETY: channel locked.
    let Some(st) = (unsafe { find_locked(chan) }) else {
        return;
    };
    if st.id != sid || st.poisoned || !st.announced {
        return;
    }
    st.observe_bridge(native, true);
    {
        let mut sink = sink_for(&st.ids, st.id);
        st.session.tick(now_ms(), &mut sink);
    }
    if st.session.is_finished() {
        // SAFETY: channel locked; `st` came from its datastore.
        unsafe { teardown_locked(chan, st, hook_id) };
    }
}

/// Ticks every live session once and checks that its media is still anchored (called by the
/// ticker thread about once a second). Each session's channel is reached through its own
/// reference: the cost is per secure session, not per channel on the PBX.
pub fn tick_all() {
    let live: Vec<(u64, ChanRef)> = match REGISTRY.lock() {
        Ok(reg) => reg
            .iter()
            // SAFETY: the registry's reference keeps the channel valid while we take ours.
            .map(|(id, s)| (*id, unsafe { ChanRef::new(s.chan.0) }))
            .collect(),
        Err(_) => return,
    };
    for (sid, chan) in live {
        // SAFETY: referenced channel, unlocked here; locked around the state access.
        unsafe {
            let native = ffi::sp_ast_chan_media_native(chan.0) != 0;
            locked(chan.0, || tick_locked(chan.0, sid, native));
        }
    }
}

fn drop_state(st: Box<ChannelState>) {
    crate::host::asterisk::recording::ended(st.id);
    // Unregistered before it is freed, whatever happened to the lock: `find_locked` trusts
    // a registered state address.
    REGISTRY
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&st.id);
    drop(st);
    LIVE_HOOKS.fetch_sub(1, Ordering::SeqCst);
    // SAFETY: balances the sp_ast_module_ref taken in start_locked.
    unsafe { ffi::sp_ast_module_unref() };
}

/// After a digit/frame: finish secure mode if the session ended by itself (timeout, cancel).
///
/// # Safety
/// Called from a framehook callback: `chan` is valid and locked, `st` is the hook's state.
unsafe fn finish_if_done(chan: *mut ffi::ast_channel, st: &mut ChannelState) {
    if st.passive || !st.session.is_finished() {
        return;
    }
    // SAFETY: channel locked by the framehook machinery.
    let hook_id = unsafe { hook_id_locked(chan) };
    // SAFETY: as above; detaching from inside the hook's own callback only marks it.
    unsafe { teardown_locked(chan, st, hook_id) };
}

/// # Safety
/// `state` is the pointer handed to `sp_ast_hook_attach` and not yet destroyed.
unsafe fn state_mut<'a>(state: *mut c_void) -> Option<&'a mut ChannelState> {
    // SAFETY: per the contract; framehook callbacks run with the channel locked, so this is
    // the only live reference.
    unsafe { state.cast::<ChannelState>().as_mut() }
}

#[no_mangle]
pub extern "C" fn sp_rs_on_dtmf(
    chan: *mut ffi::ast_channel,
    state: *mut c_void,
    end: c_int,
    digit: c_int,
    duration_ms: c_long,
) {
    // The shim drops the frame whatever happens here: a DTMF frame never passes.
    guard("dtmf hook", (), || {
        // SAFETY: framehook data pointer, channel locked during the callback.
        let Some(st) = (unsafe { state_mut(state) }) else {
            return;
        };
        if st.passive || st.poisoned {
            return;
        }
        if !st.ready() {
            // Not anchored/announced yet (or media left the core): dropped, not captured. A
            // DTMF frame proves nothing about the media: SIP INFO comes by signalling while
            // the phones may still send RTP to each other (direct media), so only a voice
            // frame through the hook anchors.
            return;
        }
        // The customer is keying out of band (from the key-down frame on): a tone head their
        // phone lets through is masked after fewer windows (see `Masker::key_pressed`).
        if let Some(m) = st.masker.as_mut() {
            m.key_pressed();
        }
        if end == 0 {
            return;
        }
        let now = now_ms();
        let d = u8::try_from(digit)
            .ok()
            .and_then(|b| Digit::from_char(char::from(b)));
        {
            let mut sink = sink_for(&st.ids, st.id);
            if let Some(d) = d {
                // A DTMF_END frame comes when the key is released; `f->len` is the press's
                // duration in ms (RFC 4733 event duration, SIP INFO `Duration`): duplicate
                // suppression compares this span with the in-band tone's.
                let len = u64::try_from(duration_ms).unwrap_or(0);
                let time = PressTime::ended(now, len);
                st.session
                    .on_press(d, DigitSource::HostFrame, time, now, &mut sink);
            }
            st.session.tick(now, &mut sink);
        }
        // SAFETY: channel locked in the callback; `st` is this hook's state.
        unsafe { finish_if_done(chan, st) };
    });
}

/// Runs `frame` through the masker and feeds detected digits to the session.
fn mask_linear(st: &mut ChannelState, rate: u32, frame: &mut [i16], now: u64) -> bool {
    if st.masker_rate != rate || st.masker.is_none() {
        let Some(sr) = SampleRate::from_hz(rate) else {
            return false;
        };
        match Masker::new(sr, &st.cfg.masker) {
            Ok(m) => {
                st.masker = Some(m);
                st.masker_rate = rate;
            }
            Err(_) => return false,
        }
    }
    let (Some(masker), session, ids, id) = (st.masker.as_mut(), &mut st.session, &st.ids, st.id)
    else {
        return false;
    };
    let mut sink = sink_for(ids, id);
    // The frame's last sample arrived about `now`: tone sample numbers become times from it.
    let stream_end = masker.samples_in() + frame.len() as u64;
    masker.process(frame, &mut |tone| {
        let time =
            PressTime::from_samples(tone.start_sample, tone.end_sample, stream_end, rate, now);
        session.on_press(tone.digit, DigitSource::InBand, time, now, &mut sink)
    });
    true
}

#[no_mangle]
pub extern "C" fn sp_rs_on_voice(
    chan: *mut ffi::ast_channel,
    state: *mut c_void,
    codec: c_int,
    rate: c_uint,
    data: *mut c_void,
    datalen: c_int,
    _samples: c_int,
) -> c_int {
    const PASS: c_int = ffi::SP_AST_VOICE_PASS as c_int;
    const MUTE: c_int = ffi::SP_AST_VOICE_MUTE as c_int;
    const DROP: c_int = ffi::SP_AST_VOICE_DROP as c_int;
    const PANICKED: c_int = -1;
    let verdict = guard("voice hook", PANICKED, || {
        // SAFETY: framehook data pointer, channel locked during the callback.
        let Some(st) = (unsafe { state_mut(state) }) else {
            return DROP;
        };
        if st.passive {
            return PASS;
        }
        if st.poisoned {
            return MUTE;
        }
        if !st.ready() {
            // nothing of the customer's media is forwarded before the hook is fully in place
            st.frame_while_unanchored();
            return MUTE;
        }
        let Ok(len) = usize::try_from(datalen) else {
            return DROP;
        };
        if data.is_null() || len == 0 {
            return DROP;
        }
        let now = now_ms();
        let ok = match codec as u32 {
            ffi::SP_AST_CODEC_SLIN => {
                if len % 2 != 0 || data.align_offset(std::mem::align_of::<i16>()) != 0 {
                    false
                } else {
                    // SAFETY: the frame's data buffer holds `datalen` bytes of native-endian
                    // 16-bit samples (checked even and aligned above); the framehook API
                    // allows editing it in place and nobody else touches it during the call.
                    let frame =
                        unsafe { std::slice::from_raw_parts_mut(data.cast::<i16>(), len / 2) };
                    mask_linear(st, rate, frame, now)
                }
            }
            ffi::SP_AST_CODEC_ULAW | ffi::SP_AST_CODEC_ALAW => {
                let ulaw = codec as u32 == ffi::SP_AST_CODEC_ULAW;
                // SAFETY: `datalen` bytes of G.711, editable in place (as above).
                let bytes = unsafe { std::slice::from_raw_parts_mut(data.cast::<u8>(), len) };
                let mut scratch = std::mem::take(&mut st.scratch);
                let mut ok = true;
                for chunk in bytes.chunks_mut(scratch.len().max(1)) {
                    let lin = &mut scratch[..chunk.len()];
                    for (s, &b) in lin.iter_mut().zip(chunk.iter()) {
                        *s = if ulaw {
                            g711::ulaw_to_linear(b)
                        } else {
                            g711::alaw_to_linear(b)
                        };
                    }
                    ok &= mask_linear(st, rate, lin, now);
                    for (b, &s) in chunk.iter_mut().zip(lin.iter()) {
                        *b = if ulaw {
                            g711::linear_to_ulaw(s)
                        } else {
                            g711::linear_to_alaw(s)
                        };
                    }
                }
                st.scratch = scratch;
                ok
            }
            _ => false,
        };
        {
            let mut sink = sink_for(&st.ids, st.id);
            st.session.tick(now, &mut sink);
        }
        if !ok && !st.uninspectable_reported {
            st.uninspectable_reported = true;
            events::publish_adapter_error(
                &st.ids,
                "uninspectable-audio",
                &format!("audio at {rate} Hz cannot be inspected; customer audio muted"),
            );
        }
        // SAFETY: channel locked in the callback; `st` is this hook's state.
        unsafe { finish_if_done(chan, st) };
        if ok {
            PASS
        } else {
            MUTE
        }
    });
    if verdict == PANICKED {
        // SAFETY: as above; mark the state poisoned so it keeps muting.
        if let Some(st) = unsafe { state_mut(state) } {
            st.poisoned = true;
        }
        return MUTE;
    }
    verdict
}

#[no_mangle]
pub extern "C" fn sp_rs_on_uninspectable(
    _chan: *mut ffi::ast_channel,
    state: *mut c_void,
    format_name: *const c_char,
) {
    guard("voice hook", (), || {
        // SAFETY: framehook data pointer, channel locked during the callback.
        let Some(st) = (unsafe { state_mut(state) }) else {
            return;
        };
        if st.passive || st.uninspectable_reported {
            return;
        }
        st.uninspectable_reported = true;
        // SAFETY: the shim passes the format's name (NUL-terminated, owned by the format).
        let name = unsafe { cstr(format_name) }.unwrap_or("unknown");
        events::publish_adapter_error(
            &st.ids,
            "uninspectable-codec",
            &format!("codec {name} cannot be inspected; customer audio muted while secure"),
        );
        log::warn!(
            "secure_pay: {}: codec {name} cannot be inspected; muting",
            st.ids.name
        );
    });
}

#[no_mangle]
pub extern "C" fn sp_rs_hook_destroy(state: *mut c_void) {
    guard("hook destroy", (), || {
        if state.is_null() {
            return;
        }
        // SAFETY: destroy_cb runs exactly once per attached hook, after its last event; the
        // pointer came from Box::into_raw in start_locked.
        let mut st = unsafe { Box::from_raw(state.cast::<ChannelState>()) };
        if !st.session.is_finished() {
            let ChannelState {
                ids,
                session,
                id,
                announced,
                held,
                ..
            } = &mut *st;
            // Its own catch: whatever happens in the stop (events), the bookkeeping below must
            // run, or the registry would keep this address after the box is freed (the
            // datastore still points to it until the channel is destroyed, and the ticker
            // trusts a registered address) and the module reference would leak.
            guard("hook destroy stop", (), || {
                let mut sink = sink_st(ids, *id, *announced, held);
                session.stop(StopReason::Hangup, now_ms(), &mut sink);
            });
        }
        st.held.clear();
        drop_state(st);
    });
}

#[no_mangle]
pub extern "C" fn sp_rs_hook_fixup(
    state: *mut c_void,
    framehook_id: c_int,
    new_chan: *mut ffi::ast_channel,
) {
    guard("hook fixup", (), || {
        // SAFETY: framehook data pointer; masquerade holds both channel locks.
        let Some(st) = (unsafe { state_mut(state) }) else {
            return;
        };
        st.moved_id = Some(framehook_id);
        if !new_chan.is_null() {
            // SAFETY: new_chan is valid and locked during the masquerade.
            st.ids = unsafe { chan_ids(new_chan) };
            if let Ok(mut reg) = REGISTRY.lock() {
                if let Some(s) = reg.get_mut(&st.id) {
                    s.channel = st.ids.name.clone();
                    s.uniqueid = st.ids.uniqueid.clone();
                    // SAFETY: new_chan valid (above); the old reference is given back by the
                    // assignment's drop (the masquerade still holds the old channel).
                    s.chan = unsafe { ChanRef::new(new_chan) };
                }
            }
            log::info!(
                "secure_pay: secure mode moved to {} in a masquerade",
                st.ids.name
            );
        }
    });
}
