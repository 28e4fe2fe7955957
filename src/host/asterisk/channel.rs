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
//! Media path (`sp_rs_on_voice` / `sp_rs_on_dtmf`): no locks, no allocation per frame (the
//! G.711 scratch buffer and the masker are sized at start; a mid-call change of sample rate
//! re-creates the masker once). Events (per digit, not per frame) are formatted and published
//! directly with `manager_event`, which only queues them.

use std::collections::BTreeMap;
use std::ffi::{c_char, c_int, c_long, c_uint, c_void};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::core::audio::SampleRate;
use crate::core::capture::{Command, DigitSource, PressTime, Session, StopReason};
use crate::core::config::Config;
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

/// What `securepay show channels` lists. Updated with `try_lock` from media threads.
#[derive(Clone)]
pub struct Summary {
    pub channel: String,
    pub uniqueid: String,
    pub last_event: &'static str,
    pub field: String,
    pub entered: String,
}

pub static REGISTRY: Mutex<BTreeMap<u64, Summary>> = Mutex::new(BTreeMap::new());

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
}

/// Publishes events emitted by a session (for use as the core's `sink`).
fn sink_for<'a>(ids: &'a ChanIds, id: u64) -> impl FnMut(Event) + 'a {
    move |ev: Event| {
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
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::AlreadyActive => write!(f, "secure mode is already active on this channel"),
            Self::BadOptions(e) => write!(f, "bad options: {e}"),
            Self::Masker(e) => write!(f, "masker: {e}"),
            Self::Attach => write!(f, "could not attach the framehook"),
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
    if p.is_null() {
        return None;
    }
    // SAFETY: the datastore's pointer is the hook's live state: both are removed together and
    // the state is only freed in the hook's destroy callback, which cannot run while we hold
    // the channel lock. No other reference exists while the lock is held.
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
    // SAFETY: channel locked (caller).
    if unsafe { find_locked(chan) }.is_some() {
        return Err(StartError::AlreadyActive);
    }
    let mut cfg = (*crate::host::asterisk::settings::current()).clone();
    if !opts.trim().is_empty() {
        cfg.apply_options(opts)
            .map_err(|e| StartError::BadOptions(e.to_string()))?;
    }
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
            },
        );
    }
    let now = now_ms();
    let session = {
        let mut sink = sink_for(&ids, id);
        let mut s = Session::start(&cfg.capture, now, &mut sink);
        s.set_id(&ids.uniqueid);
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
    });
    let raw = Box::into_raw(st);
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
        let mut sink = sink_for(&st.ids, st.id);
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

/// Delivers a payment outcome to session `sid` on a locked channel. False if that session is
/// no longer active there.
///
/// # Safety
/// `chan` is valid and locked by the caller.
pub unsafe fn outcome_locked(
    chan: *mut ffi::ast_channel,
    sid: u64,
    o: crate::core::payment::PaymentOutcome,
) -> bool {
    // SAFETY: channel locked (caller).
    let hook_id = unsafe { hook_id_locked(chan) };
    // SAFETY: channel locked.
    let Some(st) = (unsafe { find_locked(chan) }) else {
        return false;
    };
    if st.id != sid {
        return false;
    }
    {
        let mut sink = sink_for(&st.ids, st.id);
        st.session.on_payment_outcome(o, now_ms(), &mut sink);
    }
    if st.session.is_finished() {
        // SAFETY: channel locked; `st` came from its datastore.
        unsafe { teardown_locked(chan, st, hook_id) };
    }
    true
}

/// Advances the timers of session `sid` on a locked channel (the module's ticker thread; media
/// frames tick too, but a channel may carry no audio, e.g. a Local channel at rest).
///
/// # Safety
/// `chan` is valid and locked by the caller.
pub unsafe fn tick_locked(chan: *mut ffi::ast_channel, sid: u64) {
    // SAFETY: channel locked (caller).
    let hook_id = unsafe { hook_id_locked(chan) };
    // SAFETY: channel locked.
    let Some(st) = (unsafe { find_locked(chan) }) else {
        return;
    };
    if st.id != sid || st.poisoned {
        return;
    }
    {
        let mut sink = sink_for(&st.ids, st.id);
        st.session.tick(now_ms(), &mut sink);
    }
    if st.session.is_finished() {
        // SAFETY: channel locked; `st` came from its datastore.
        unsafe { teardown_locked(chan, st, hook_id) };
    }
}

/// Ticks every live session once (called by the ticker thread about once a second).
pub fn tick_all() {
    let live: Vec<(u64, String)> = match REGISTRY.lock() {
        Ok(reg) => reg
            .iter()
            .map(|(id, s)| (*id, s.uniqueid.clone()))
            .collect(),
        Err(_) => return,
    };
    for (sid, uid) in live {
        let u = crate::host::asterisk::c_string(&uid);
        // SAFETY: NUL-terminated id; returns a new reference or NULL.
        let chan = unsafe { ffi::sp_ast_channel_get_by_uniqueid_exact(u.as_ptr()) };
        if chan.is_null() {
            continue;
        }
        // SAFETY: referenced channel, locked around the state access, then unlocked and
        // unreferenced exactly once.
        unsafe {
            ffi::sp_ast_channel_lock(chan);
            tick_locked(chan, sid);
            ffi::sp_ast_channel_unlock(chan);
            ffi::sp_ast_channel_unref(chan);
        }
    }
}

fn drop_state(st: Box<ChannelState>) {
    if let Ok(mut reg) = REGISTRY.lock() {
        reg.remove(&st.id);
    }
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
        if st.passive || st.poisoned || end == 0 {
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
                ids, session, id, ..
            } = &mut *st;
            let mut sink = sink_for(ids, *id);
            session.stop(StopReason::Hangup, now_ms(), &mut sink);
        }
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
                }
            }
            log::info!(
                "secure_pay: secure mode moved to {} in a masquerade",
                st.ids.name
            );
        }
    });
}
