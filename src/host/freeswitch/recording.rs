//! The PBX's recordings of a secure channel (issue #16; docs/recording.md, "FreeSWITCH").
//!
//! - Every recording of the *decoded* audio (`record_session`/`uuid_record` to wav and other file
//!   formats, conference recordings, eavesdrop in bridge mode) gets the masked frame: our
//!   READ_REPLACE bug runs before every READ_STREAM consumer (docs/freeswitch.md §2.6).
//! - A *codec-payload* tap reads the customer's packets before any bug and cannot be masked:
//!   `record_session` to a path without a file extension (FreeSWITCH writes `<path>-in.<codec>`
//!   and `<path>-out.<codec>`, flag `SMBF_TAP_NATIVE_READ`) and eavesdrop in tap mode
//!   (`native_eavesdrop`), and any other module's media bug with `SMBF_TAP_NATIVE_READ` (found
//!   by function name: FreeSWITCH lists bugs by name only; see [`BugNames`]). Decision: such a
//!   tap is **paused** (`SMBF_PAUSE` on that bug) for the
//!   secure period and resumed when secure mode ends, with `secure_pay::recording` events
//!   (action `paused`/`resumed`, kind `native`/`tap`). Secure mode is not refused: a tap
//!   started *during* secure mode could not be refused either, and one rule for both keeps the
//!   card out in both cases. The check runs in the read_frame hook, which FreeSWITCH calls on
//!   the reading thread *before* it feeds the native taps of the same frame, on every frame
//!   while such a bug exists (so a tap added, or resumed by `uuid_record ... resume`, during
//!   secure mode never gets a frame of the customer's payload).
//! - Option `recording=pause`: `CF_PAUSE_BUGS` on the customer channel and on its bridge
//!   partner (every media bug without `SMBF_NO_PAUSE` is skipped, also one started during
//!   secure mode; ours has NO_PAUSE), resumed at the end of secure mode on every exit path
//!   (the media bug's CLOSE: stop, cancel, timeout, hangup, unload). Paused native taps are
//!   resumed after our bug is removed (stop, cancel, timeout, unload); at hangup they end with
//!   the call. A flag that was already
//!   set (mod_fifo, another module) is left alone and not cleared at the end. If something
//!   clears the customer's flag during secure mode the per-frame check sets it again.

use arrayvec::ArrayVec;
use std::ffi::c_void;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use crate::core::config::RecordingMode;
use crate::core::events::{Event, Leg, RecordingAction, RecordingKind};
use crate::ffi::freeswitch as fs;
use crate::host::guard;

use super::util::{self, LockedSession};

/// Media bug functions of FreeSWITCH's own recorders and taps (switch_ivr_async.c).
const RECORD_FUNCTION: &std::ffi::CStr = c"session_record";
const EAVESDROP_FUNCTION: &std::ffi::CStr = c"eavesdrop";

/// Longest media bug function name of another module that a channel can track (bytes, with
/// its NUL), and how many such names per channel.
const NAME_CAP: usize = 64;
const MAX_NAMES: usize = 8;

/// A media bug function name, NUL-terminated in place (copied without allocating).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) struct BugName([u8; NAME_CAP]);

impl BugName {
    fn new(name: &[u8]) -> Option<Self> {
        if name.is_empty() || name.len() >= NAME_CAP || name.contains(&0) {
            return None;
        }
        let mut b = [0u8; NAME_CAP];
        b[..name.len()].copy_from_slice(name);
        Some(Self(b))
    }

    fn as_cstr(&self) -> &std::ffi::CStr {
        std::ffi::CStr::from_bytes_until_nul(&self.0).unwrap_or(c"")
    }
}

/// What [`BugNames::learn`] did with a name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Learned {
    /// A new name: its bugs are checked from the next frame on.
    New,
    /// Known already, or FreeSWITCH's own recorders and taps, or ours.
    Known,
    /// Too long, or the channel tracks [`MAX_NAMES`] names already: its bugs are not checked.
    Untracked,
}

/// Function names of the media bugs *other modules* put on the customer's channel (learned from
/// FreeSWITCH's bug list at start and every second, and from its `MEDIA_BUG_START` events), so
/// that the per-frame check also pauses their codec-payload taps (`SMBF_TAP_NATIVE_READ`): the
/// core lists media bugs only by function name. Written by the start, dispatcher and event
/// threads; the read_frame hook copies the list (no allocation) when `gen` moved, with a
/// `try_lock` only.
#[derive(Default)]
pub(super) struct BugNames {
    gen: AtomicU32,
    names: Mutex<ArrayVec<BugName, MAX_NAMES>>,
    /// Addresses of the read-replacing bugs ahead of ours that this channel paused (resumed at
    /// the end; compared with live bugs inside `exec_all` only, never dereferenced).
    ahead: Mutex<ArrayVec<usize, MAX_NAMES>>,
}

impl BugNames {
    /// Tracks the bugs of function `name` on this channel from the next frame on.
    pub fn learn(&self, name: &[u8]) -> Learned {
        let own = [
            RECORD_FUNCTION,
            EAVESDROP_FUNCTION,
            super::channel::BUG_FUNCTION,
        ]
        .iter()
        .any(|f| f.to_bytes() == name)
            || name == super::channel::REPAIR_FUNCTION.to_bytes();
        if own {
            return Learned::Known;
        }
        let Some(b) = BugName::new(name) else {
            return Learned::Untracked;
        };
        let mut names = self.names.lock().unwrap_or_else(|p| p.into_inner());
        if names.contains(&b) {
            return Learned::Known;
        }
        if names.try_push(b).is_err() {
            return Learned::Untracked;
        }
        self.gen.fetch_add(1, Ordering::AcqRel);
        Learned::New
    }

    /// Learns the function of every media bug on the session (FreeSWITCH's bug list). Returns
    /// the names it learned now and those it could not track, for the log (names only: never
    /// audio or digits).
    ///
    /// Also pauses every bug that replaces the read frame (`SMBF_READ_REPLACE`) and sits ahead
    /// of ours in the list (another module's bug added with `SMBF_FIRST` after secure mode
    /// started): FreeSWITCH runs replace bugs in list order, so it would get the customer's
    /// audio before the masker. Counted in `reports` (kind `tap`); resumed by `resume_taps`.
    /// One paused by a call racing a stop (listed before our bug went, paused after
    /// `resume_taps` ran) stays paused: fail closed.
    ///
    /// # Safety
    /// `session` is live (own thread or read-locked) and the caller holds no bug-list lock
    /// (not inside a media bug callback).
    pub unsafe fn learn_from_list(
        &self,
        session: *mut fs::switch_core_session_t,
        reports: &Reports,
    ) -> (Vec<String>, Vec<String>) {
        let mut buf = vec![0u8; 4096];
        // SAFETY: live session (contract); `buf` is writable for its length.
        let mut n = unsafe { fs::sp_fs_bug_list(session, buf.as_mut_ptr().cast(), buf.len()) };
        if n >= buf.len() {
            buf = vec![0u8; n + 1];
            // SAFETY: as above.
            n = unsafe { fs::sp_fs_bug_list(session, buf.as_mut_ptr().cast(), buf.len()) };
        }
        let text = String::from_utf8_lossy(&buf[..n.min(buf.len().saturating_sub(1))]);
        let (mut new, mut untracked) = (Vec::new(), Vec::new());
        for name in bug_functions(&text) {
            match self.learn(name.as_bytes()) {
                Learned::New => new.push(name.to_string()),
                Learned::Untracked => untracked.push(name.to_string()),
                Learned::Known => {}
            }
        }
        for (name, limit) in ahead_of_ours(&text) {
            let Ok(function) = std::ffi::CString::new(name) else {
                continue;
            };
            let mut ahead = self.ahead.lock().unwrap_or_else(|p| p.into_inner());
            let mut ctx = AheadCtx {
                limit,
                seen: 0,
                paused: &mut ahead,
                count: 0,
            };
            // SAFETY: live session, no bug lock held (contract); the callback only uses `ctx`
            // during the call.
            unsafe {
                fs::switch_core_media_bug_exec_all(
                    session,
                    function.as_ptr(),
                    Some(pause_ahead_cb),
                    &mut ctx as *mut AheadCtx<'_> as *mut c_void,
                )
            };
            reports.tap.fetch_add(ctx.count, Ordering::AcqRel);
        }
        (new, untracked)
    }

    /// The read-replacing bugs paused by [`BugNames::learn_from_list`], for resuming.
    fn take_ahead(&self) -> ArrayVec<usize, MAX_NAMES> {
        std::mem::take(&mut *self.ahead.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// The functions of the bugs ahead of ours in `switch_core_media_bug_enumerate`'s text (list
/// order), each with how many of its bugs are ahead. Empty when our bug is not in the list.
fn ahead_of_ours(text: &str) -> Vec<(&str, usize)> {
    let mut out: Vec<(&str, usize)> = Vec::new();
    for name in bug_functions(text) {
        if name.as_bytes() == super::channel::BUG_FUNCTION.to_bytes() {
            return out;
        }
        if name.as_bytes() == super::channel::REPAIR_FUNCTION.to_bytes() {
            continue;
        }
        match out.iter_mut().find(|(n, _)| *n == name) {
            Some(e) => e.1 += 1,
            None => out.push((name, 1)),
        }
    }
    Vec::new()
}

struct AheadCtx<'a> {
    /// How many bugs of this function are ahead of ours (exec_all walks the list in order).
    limit: usize,
    seen: usize,
    paused: &'a mut ArrayVec<usize, MAX_NAMES>,
    count: u32,
}

/// exec_all callback: pause a bug ahead of ours that replaces the read frame. Behind the panic
/// guard; if the body fails such a bug is paused anyway (fail closed: it then stays paused).
unsafe extern "C" fn pause_ahead_cb(bug: *mut fs::switch_media_bug_t, user_data: *mut c_void) {
    let done = guard("replace bug pause", false, || {
        if bug.is_null() || user_data.is_null() {
            return true;
        }
        // SAFETY: `user_data` is the `AheadCtx` of `learn_from_list`, alive for the call.
        let ctx = unsafe { &mut *(user_data as *mut AheadCtx<'_>) };
        ctx.seen += 1;
        // SAFETY: exec_all passes live bugs of the session under its write lock.
        let replace =
            unsafe { fs::switch_core_media_bug_test_flag(bug, fs::SMBF_READ_REPLACE) } != 0;
        // SAFETY: as above.
        let paused = unsafe { fs::switch_core_media_bug_test_flag(bug, fs::SMBF_PAUSE) } != 0;
        if ctx.seen > ctx.limit || !replace || paused {
            return true;
        }
        // SAFETY: as above; readers of the list wait for exec_all's write lock.
        unsafe { fs::switch_core_media_bug_set_flag(bug, fs::SMBF_PAUSE) };
        // Past the capacity it is paused all the same and stays paused.
        let _ = ctx.paused.try_push(bug as usize);
        ctx.count += 1;
        true
    });
    if done || bug.is_null() {
        return;
    }
    // SAFETY: a live bug under exec_all's write lock (the guard caught a panic above).
    if unsafe { fs::switch_core_media_bug_test_flag(bug, fs::SMBF_READ_REPLACE) } != 0 {
        // SAFETY: as above.
        unsafe { fs::switch_core_media_bug_set_flag(bug, fs::SMBF_PAUSE) };
    }
}

/// Our MEDIA_BUG_START binding.
static BUG_START: util::EventBinding = util::EventBinding::new();

/// FreeSWITCH fires `MEDIA_BUG_START` (header `Unique-ID`) right after a media bug is added: a
/// secure channel reads its bug list at once, not at the next poll.
unsafe extern "C" fn on_media_bug_start(event: *mut fs::switch_event_t) {
    guard("media bug start", (), || {
        if event.is_null() {
            return;
        }
        // SAFETY: the live event of this callback; the header string lives as long as it.
        let p = unsafe { fs::switch_event_get_header_idx(event, c"Unique-ID".as_ptr(), -1) };
        // SAFETY: NULL or a NUL-terminated header value of the live event.
        if let Some(uuid) = unsafe { util::opt_str(p) } {
            super::channel::media_bug_started(uuid);
        }
    });
}

/// Binds [`on_media_bug_start`] (module load).
pub fn watch_bugs() {
    if !BUG_START.bind(fs::SWITCH_EVENT_MEDIA_BUG_START, on_media_bug_start) {
        log::warn!(
            "secure_pay: could not bind MEDIA_BUG_START; other modules' taps are found by the 1 s poll"
        );
    }
}

/// Removes the MEDIA_BUG_START binding (module shutdown).
pub fn unwatch_bugs() {
    BUG_START.unbind();
}

/// The `<function>` values of `switch_core_media_bug_enumerate`'s text.
fn bug_functions(text: &str) -> impl Iterator<Item = &str> {
    text.split("<function>")
        .skip(1)
        .filter_map(|rest| rest.split_once("</function>").map(|(name, _)| name))
}

/// Per-channel recording state (under `Channel::rec`).
#[derive(Default)]
pub(super) struct Recordings {
    pub mode: RecordingMode,
    /// Addresses of the native taps this channel paused (resumed at the end). Only compared
    /// with live bugs inside `exec_all`, never dereferenced on their own. A tap past the
    /// capacity is paused all the same and stays paused (logged).
    paused: ArrayVec<usize, 16>,
    /// We set `CF_PAUSE_BUGS` on the customer channel (`recording=pause`).
    customer_paused: bool,
    /// The partner on which we set `CF_PAUSE_BUGS` (`recording=pause`).
    agent_paused: Option<String>,
    /// Recordings on each leg when paused (for the `resumed` events).
    customer_count: u32,
    agent_count: u32,
    /// Secure mode ended: the per-frame check pauses nothing any more.
    ended: bool,
    /// The other modules' bug functions checked with FreeSWITCH's own, copied from the
    /// channel's [`BugNames`] at generation `extra_gen`.
    extra: ArrayVec<BugName, MAX_NAMES>,
    extra_gen: u32,
}

/// Native recordings / taps paused and not yet reported: the media thread counts, the
/// dispatcher fires the events (atomics: the dispatcher never takes the lock the read_frame
/// hook try-locks).
#[derive(Default)]
pub(super) struct Reports {
    native: AtomicU32,
    tap: AtomicU32,
}

impl Reports {
    /// Something paused is not reported yet.
    pub fn pending(&self) -> bool {
        self.native.load(Ordering::Acquire) > 0 || self.tap.load(Ordering::Acquire) > 0
    }

    /// The `paused` events for taps paused since the last call.
    pub fn take(&self, mode: RecordingMode, out: &mut Vec<Event>) {
        for (kind, n) in [
            (RecordingKind::Native, self.native.swap(0, Ordering::AcqRel)),
            (RecordingKind::Tap, self.tap.swap(0, Ordering::AcqRel)),
        ] {
            if n > 0 {
                out.push(event(mode, RecordingAction::Paused, kind, Leg::Customer, n));
            }
        }
    }
}

struct ScanCtx<'a> {
    /// `Recordings::paused`.
    paused: &'a mut ArrayVec<usize, 16>,
    reports: &'a Reports,
    tap: bool,
    overflow: bool,
    found: bool,
}

/// exec_all callback: pause a bug that reads the customer's codec payload. Behind the panic
/// guard; if the body fails, the recorder or tap is paused anyway (fail closed: it then stays
/// paused after secure mode, as on overflow).
unsafe extern "C" fn pause_native_cb(bug: *mut fs::switch_media_bug_t, user_data: *mut c_void) {
    let done = guard("recording pause", false, || {
        // SAFETY: forwarded from exec_all (live bug, `user_data` = the scan's context).
        unsafe { pause_native(bug, user_data) };
        true
    });
    if !done && !bug.is_null() {
        // SAFETY: live bug under exec_all's write lock; setting a flag cannot unwind.
        unsafe { fs::switch_core_media_bug_set_flag(bug, fs::SMBF_PAUSE) };
    }
}

/// # Safety
/// `bug` is NULL or a live bug under exec_all's lock; `user_data` is NULL or the `ScanCtx` of
/// `scan`.
unsafe fn pause_native(bug: *mut fs::switch_media_bug_t, user_data: *mut c_void) {
    if bug.is_null() || user_data.is_null() {
        return;
    }
    // SAFETY: `user_data` is the `ScanCtx` of `scan`, alive for the exec_all call.
    let ctx = unsafe { &mut *(user_data as *mut ScanCtx<'_>) };
    // SAFETY: exec_all passes live bugs of the session under its write lock.
    let native = unsafe { fs::switch_core_media_bug_test_flag(bug, fs::SMBF_TAP_NATIVE_READ) } != 0;
    // SAFETY: as above.
    let paused = unsafe { fs::switch_core_media_bug_test_flag(bug, fs::SMBF_PAUSE) } != 0;
    if !native || paused {
        return;
    }
    // SAFETY: as above; exec_all holds the bug list's write lock, readers wait for it.
    unsafe { fs::switch_core_media_bug_set_flag(bug, fs::SMBF_PAUSE) };
    let addr = bug as usize;
    if !ctx.paused.contains(&addr) && ctx.paused.try_push(addr).is_err() {
        ctx.overflow = true;
    }
    ctx.found = true;
    let counter = if ctx.tap {
        &ctx.reports.tap
    } else {
        &ctx.reports.native
    };
    counter.fetch_add(1, Ordering::AcqRel);
}

/// exec_all callback: resume a bug this channel paused. Behind the panic guard; on failure
/// the bug stays paused (fail closed).
unsafe extern "C" fn resume_native_cb(bug: *mut fs::switch_media_bug_t, user_data: *mut c_void) {
    guard("recording resume", (), || {
        if bug.is_null() || user_data.is_null() {
            return;
        }
        // SAFETY: `user_data` is the list of `resume`, alive for the exec_all call.
        let list = unsafe { &*(user_data as *const ArrayVec<usize, 16>) };
        if list.contains(&(bug as usize)) {
            // SAFETY: live bug under exec_all's write lock.
            unsafe { fs::switch_core_media_bug_clear_flag(bug, fs::SMBF_PAUSE) };
        }
    })
}

/// Recorders and taps of FreeSWITCH on this session (cheap: a read lock and a short walk).
///
/// # Safety
/// `session` is live and the caller does not hold its bug lock (not inside a bug callback).
unsafe fn recorder_count(session: *mut fs::switch_core_session_t, extra: &[BugName]) -> u32 {
    functions(extra)
        // SAFETY: live session per contract; each name is NUL-terminated and outlives the call.
        .map(|(f, _)| unsafe { fs::switch_core_media_bug_count(session, f.as_ptr()) })
        .sum()
}

/// The media bug functions whose codec-payload taps are paused: FreeSWITCH's recorder and
/// eavesdrop, then the other modules' functions this channel learned. `true`: reported as kind
/// `tap`.
fn functions(extra: &[BugName]) -> impl Iterator<Item = (&std::ffi::CStr, bool)> {
    [(RECORD_FUNCTION, false), (EAVESDROP_FUNCTION, true)]
        .into_iter()
        .chain(extra.iter().map(|n| (n.as_cstr(), true)))
}

impl Recordings {
    pub fn new(mode: RecordingMode) -> Self {
        Self {
            mode,
            ..Self::default()
        }
    }

    /// Pauses every native recording / tap of the customer's payload that is not paused yet.
    /// Called at start (API/app thread) and on every frame from the read_frame hook (reading
    /// thread, before the core feeds the native taps), only while FreeSWITCH recorders or taps
    /// exist on the channel. Allocates nothing.
    ///
    /// # Safety
    /// `session` is the customer's live session; the caller does not hold its bug lock.
    pub unsafe fn scan(
        &mut self,
        session: *mut fs::switch_core_session_t,
        uuid: &str,
        reports: &Reports,
        names: &BugNames,
    ) -> bool {
        if self.ended {
            return false;
        }
        let gen = names.gen.load(Ordering::Acquire);
        if gen != self.extra_gen {
            // A copy of at most MAX_NAMES fixed arrays; retried on the next frame if a writer
            // holds the list this moment.
            if let Ok(n) = names.names.try_lock() {
                self.extra = n.clone();
                self.extra_gen = gen;
            }
        }
        if self.customer_paused {
            // SAFETY: live session.
            let ch = unsafe { util::channel_of(session) };
            // SAFETY: live channel.
            if !unsafe { util::test_flag(ch, fs::CF_PAUSE_BUGS) } {
                // Cleared by someone else during secure mode: pause again.
                // SAFETY: live session.
                unsafe { fs::switch_core_media_bug_pause(session) };
            }
        }
        // SAFETY: forwarded contract.
        if unsafe { recorder_count(session, &self.extra) } == 0 {
            return false;
        }
        let mut overflow = false;
        let mut found = false;
        for (function, tap) in functions(&self.extra) {
            let mut ctx = ScanCtx {
                paused: &mut self.paused,
                reports,
                tap,
                overflow: false,
                found: false,
            };
            // SAFETY: live session, bug lock not held; the callback only uses `ctx` during the
            // call.
            unsafe {
                fs::switch_core_media_bug_exec_all(
                    session,
                    function.as_ptr(),
                    Some(pause_native_cb),
                    &mut ctx as *mut ScanCtx<'_> as *mut c_void,
                )
            };
            overflow |= ctx.overflow;
            found |= ctx.found;
        }
        if overflow {
            log::warn!(
                "secure_pay: {uuid}: more native recordings than tracked: the extra ones stay paused after secure mode"
            );
        }
        found
    }

    /// `recording=pause`: pause the recordings of the customer and its bridge partner. Returns
    /// the `paused` events.
    ///
    /// # Safety
    /// `session` is the customer's live session (own thread or read-locked).
    pub unsafe fn pause_all(&mut self, session: *mut fs::switch_core_session_t) -> Vec<Event> {
        let mut out = Vec::new();
        if self.mode != RecordingMode::Pause {
            return out;
        }
        // SAFETY: live session.
        if let Some(n) = unsafe { pause_leg(session) } {
            self.customer_paused = true;
            self.customer_count = n;
            out.push(self.event(
                RecordingAction::Paused,
                RecordingKind::All,
                Leg::Customer,
                n,
            ));
        }
        // SAFETY: live session; the partner uuid is copied at once.
        let partner = unsafe {
            util::opt_str(fs::switch_channel_get_partner_uuid(util::channel_of(
                session,
            )))
        }
        .map(str::to_owned);
        if let Some(p) = partner.as_deref().and_then(LockedSession::locate) {
            // SAFETY: `p` holds the partner's read lock.
            if let Some(n) = unsafe { pause_leg(p.as_ptr()) } {
                self.agent_paused = partner;
                self.agent_count = n;
                out.push(self.event(RecordingAction::Paused, RecordingKind::All, Leg::Agent, n));
            }
        }
        out
    }

    /// End of secure mode, after our bug was removed by `detach` (stop, cancel, timeout,
    /// unload): resume the native taps this channel paused. Not called at hangup (the core's
    /// remove-all holds the bug list's lock during CLOSE, and the taps end with the call).
    ///
    /// # Safety
    /// `session` is the customer's live session; the caller does not hold its bug lock.
    pub unsafe fn resume_taps(
        &mut self,
        session: *mut fs::switch_core_session_t,
        names: &BugNames,
    ) -> Vec<Event> {
        let mut out = Vec::new();
        self.ended = true;
        let mut list = std::mem::take(&mut self.paused);
        for p in names.take_ahead() {
            // Past the capacity a bug stays paused (fail closed).
            let _ = list.try_push(p);
        }
        if list.is_empty() {
            return out;
        }
        // The names learned since the hook last copied them (a blocking lock is fine here).
        self.extra = names
            .names
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for (function, _) in functions(&self.extra) {
            // SAFETY: live session, bug lock not held; `list` outlives the call.
            unsafe {
                fs::switch_core_media_bug_exec_all(
                    session,
                    function.as_ptr(),
                    Some(resume_native_cb),
                    &list as *const ArrayVec<usize, 16> as *mut c_void,
                )
            };
        }
        out.push(self.event(
            RecordingAction::Resumed,
            RecordingKind::Native,
            Leg::Customer,
            list.len() as u32,
        ));
        out
    }

    /// End of secure mode on every exit path (our bug's CLOSE: stop, cancel, timeout, hangup,
    /// unload): clear the `CF_PAUSE_BUGS` we set on the customer and its partner. Touches only
    /// channel flags on the customer (CLOSE may run under the bug list's lock).
    ///
    /// # Safety
    /// `session` is the customer's live session.
    pub unsafe fn resume_legs(&mut self, session: *mut fs::switch_core_session_t) -> Vec<Event> {
        let mut out = Vec::new();
        self.ended = true;
        if std::mem::take(&mut self.customer_paused) {
            // SAFETY: live session; sets a channel flag only.
            unsafe { fs::switch_core_media_bug_resume(session) };
            out.push(self.event(
                RecordingAction::Resumed,
                RecordingKind::All,
                Leg::Customer,
                self.customer_count,
            ));
        }
        if let Some(u) = self.agent_paused.take() {
            if let Some(p) = LockedSession::locate(&u) {
                // SAFETY: `p` holds the partner's read lock.
                unsafe { fs::switch_core_media_bug_resume(p.as_ptr()) };
                out.push(self.event(
                    RecordingAction::Resumed,
                    RecordingKind::All,
                    Leg::Agent,
                    self.agent_count,
                ));
            }
        }
        out
    }

    fn event(&self, action: RecordingAction, kind: RecordingKind, leg: Leg, count: u32) -> Event {
        event(self.mode, action, kind, leg, count)
    }
}

fn event(
    mode: RecordingMode,
    action: RecordingAction,
    kind: RecordingKind,
    leg: Leg,
    count: u32,
) -> Event {
    Event::Recording {
        action,
        kind,
        leg,
        mode: mode.name(),
        count,
        reason: match (kind, action) {
            (RecordingKind::All, _) => "recording-option",
            (_, RecordingAction::Resumed) => "secure-mode-ended",
            _ => "codec-payload",
        },
    }
}

/// Sets `CF_PAUSE_BUGS` on a leg unless it is already set; returns the number of recordings
/// on it when we set it.
///
/// # Safety
/// `session` is live (own thread or read-locked).
unsafe fn pause_leg(session: *mut fs::switch_core_session_t) -> Option<u32> {
    // SAFETY: live session.
    let ch = unsafe { util::channel_of(session) };
    // SAFETY: live channel.
    if unsafe { util::test_flag(ch, fs::CF_PAUSE_BUGS) } {
        return None;
    }
    // SAFETY: live session.
    unsafe { fs::switch_core_media_bug_pause(session) };
    // SAFETY: live session.
    Some(unsafe { fs::switch_core_media_bug_count(session, RECORD_FUNCTION.as_ptr()) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bug_functions_reads_every_function_of_the_bug_list() {
        let text = "<media-bugs>\n <media-bug>\n  <function>session_record</function>\n  <target>/tmp/a</target>\n  <thread-locked>0</thread-locked>\n </media-bug>\n <media-bug>\n  <function>audio_fork</function>\n  <target>wss://x</target>\n  <thread-locked>0</thread-locked>\n </media-bug>\n</media-bugs>\n";
        assert_eq!(
            bug_functions(text).collect::<Vec<_>>(),
            ["session_record", "audio_fork"]
        );
        assert_eq!(bug_functions("<media-bugs>\n</media-bugs>\n").count(), 0);
        // Cut text (a longer list than the buffer): the unterminated name is not taken.
        assert_eq!(
            bug_functions("<function>a</function><function>trunc").collect::<Vec<_>>(),
            ["a"]
        );
    }

    #[test]
    fn learn_tracks_other_modules_functions_once_and_skips_the_known_ones() {
        let n = BugNames::default();
        for own in [
            "session_record",
            "eavesdrop",
            "secure_pay",
            "secure_pay_repair",
        ] {
            assert_eq!(n.learn(own.as_bytes()), Learned::Known, "{own}");
        }
        assert_eq!(n.gen.load(Ordering::Acquire), 0);
        assert_eq!(n.learn(b"audio_fork"), Learned::New);
        assert_eq!(n.learn(b"audio_fork"), Learned::Known);
        assert_eq!(n.gen.load(Ordering::Acquire), 1);
        assert_eq!(n.learn(&[b'x'; NAME_CAP]), Learned::Untracked, "too long");
        assert_eq!(n.learn(b""), Learned::Untracked);
        assert_eq!(n.learn(b"a\0b"), Learned::Untracked);
        for i in 1..MAX_NAMES {
            assert_eq!(n.learn(format!("tap{i}").as_bytes()), Learned::New);
        }
        assert_eq!(n.learn(b"one_too_many"), Learned::Untracked);
        let names = n.names.lock().unwrap();
        assert_eq!(names.len(), MAX_NAMES);
        assert_eq!(names[0].as_cstr(), c"audio_fork");
    }

    #[test]
    fn ahead_of_ours_counts_the_bugs_before_our_bug_in_list_order() {
        let list = |names: &[&str]| {
            names
                .iter()
                .map(|n| format!(" <media-bug>\n  <function>{n}</function>\n </media-bug>\n"))
                .collect::<String>()
        };
        assert_eq!(
            ahead_of_ours(&list(&[
                "vendor",
                "secure_pay_repair",
                "vendor",
                "x",
                "secure_pay",
                "y"
            ])),
            [("vendor", 2), ("x", 1)]
        );
        assert!(ahead_of_ours(&list(&["secure_pay", "vendor"])).is_empty());
        // Our bug not (or no longer) in the list: nothing is ahead of it.
        assert!(ahead_of_ours(&list(&["vendor"])).is_empty());
    }

    #[test]
    fn the_checked_functions_are_freeswitch_s_then_the_learned_ones() {
        let extra = [BugName::new(b"audio_fork").unwrap()];
        let f: Vec<_> = functions(&extra).collect();
        assert_eq!(
            f,
            [
                (c"session_record", false),
                (c"eavesdrop", true),
                (c"audio_fork", true)
            ]
        );
    }
}
