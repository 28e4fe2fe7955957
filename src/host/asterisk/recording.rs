//! `recording = pause` on Asterisk: for the secure period the module mutes (pauses) every
//! MixMonitor of the customer channel and of every other channel in its bridge (the agent's
//! leg, a conference's members and ConfBridge's own recording channel; for a Local channel in
//! the bridge also its other half), and unmutes (resumes) them when secure mode ends, on every
//! exit path (agent/dialplan stop, timeout, cancel, hangup; unload is refused while secure mode
//! is on). `SecurePayRecording` events (action `paused`/`resumed`, kind `all`, leg
//! `customer`/`agent`, the number of MixMonitors) say so.
//!
//! Mechanism: `ast_audiohook_set_mute_all(chan, "MixMonitor", MUTE_READ|MUTE_WRITE)`, the C API
//! behind AMI `MixMonitorMute`: a muted MixMonitor keeps writing, with silence, so the file has
//! a gap over the secure period. The masking framehook stays on as well (pause is in addition
//! to masking, never instead of it). A MixMonitor started during the secure period, or a
//! channel that joins the bridge then, is muted by the ticker within a second (and gets the
//! masked audio meanwhile).
//!
//! Locking: nothing here runs with a channel locked. The media thread and the hook's destroy
//! callback only queue the session id ([`ended`]); the AMI/dialplan stop paths resume at once
//! after unlocking the channel, the ticker within 250 ms for the rest (timeout, hangup).
//!
//! Limitation: resume unmutes every MixMonitor on those channels, also one the agent platform
//! had muted itself before secure mode.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::sync::Mutex;

use crate::core::config::RecordingMode;
use crate::core::events::{Event, Leg, RecordingAction, RecordingKind};
use crate::ffi::asterisk as ffi;
use crate::host::asterisk::channel::{self, ChanRef};
use crate::host::asterisk::events::{self, ChanIds};

struct Paused {
    ids: ChanIds,
    /// Uniqueids of the agent-side channels muted so far.
    peers: Vec<String>,
}

static PAUSED: Mutex<BTreeMap<u64, Paused>> = Mutex::new(BTreeMap::new());
/// Sessions that ended and may need a resume (pushed from any thread, drained unlocked).
static ENDED: Mutex<Vec<u64>> = Mutex::new(Vec::new());
/// Serialises a resume with the ticker's re-mute of the same session, so a re-mute never
/// lands after the resume. Never taken with a channel locked.
static OP: Mutex<()> = Mutex::new(());

const REASON: &str = "recording-option";

fn mute(uniqueid: &str, on: bool) -> Option<u32> {
    let id = CString::new(uniqueid).ok()?;
    // SAFETY: NUL-terminated id; the shim looks the channel up and holds a reference while it
    // mutes; no channel is locked by this thread.
    let n = unsafe { ffi::sp_ast_mixmonitor_mute(id.as_ptr(), i32::from(on)) };
    u32::try_from(n).ok()
}

/// Agent-side channels of `chan`'s bridge (see the shim).
///
/// # Safety
/// `chan` is valid, unlocked, and referenced by the caller.
unsafe fn peers_of(chan: *mut ffi::ast_channel) -> Vec<String> {
    // SAFETY: contract above.
    let p = unsafe { ffi::sp_ast_bridge_peer_ids(chan) };
    if p.is_null() {
        return Vec::new();
    }
    // SAFETY: the shim returns a NUL-terminated string owned by us.
    let s = unsafe { std::ffi::CStr::from_ptr(p) }
        .to_string_lossy()
        .into_owned();
    // SAFETY: allocated by the shim with ast_strdup.
    unsafe { ffi::sp_ast_free(p.cast()) };
    s.lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

fn event(action: RecordingAction, leg: Leg, count: u32) -> Event {
    Event::Recording {
        action,
        kind: RecordingKind::All,
        leg,
        mode: RecordingMode::Pause.name(),
        count,
        reason: REASON,
    }
}

/// Secure mode was announced on `chan` (session `sid`) with `recording = pause`: mute every
/// MixMonitor of both legs and say so.
///
/// # Safety
/// `chan` is valid, unlocked, and referenced by the caller; `ids` are its identity.
pub unsafe fn pause(sid: u64, chan: *mut ffi::ast_channel, ids: ChanIds) {
    let customer = mute(&ids.uniqueid, true).unwrap_or(0);
    // SAFETY: contract above.
    let peers = unsafe { peers_of(chan) };
    let agent: u32 = peers.iter().filter_map(|p| mute(p, true)).sum();
    events::publish(
        &ids,
        &event(RecordingAction::Paused, Leg::Customer, customer),
    );
    events::publish(&ids, &event(RecordingAction::Paused, Leg::Agent, agent));
    if let Ok(mut g) = PAUSED.lock() {
        g.insert(sid, Paused { ids, peers });
    }
    // ended before we registered it (hangup right after the start): undo at once
    if !channel::is_live(sid) {
        ended(sid);
        resume_ended();
    }
}

/// Session `sid` ended (any thread, any lock held): queue its resume. Cheap; no channel lock.
pub fn ended(sid: u64) {
    let paused = PAUSED.lock().map(|g| g.contains_key(&sid)).unwrap_or(false);
    if paused {
        if let Ok(mut q) = ENDED.lock() {
            if !q.contains(&sid) {
                q.push(sid);
            }
        }
    }
}

/// Resumes every queued session. Call with no channel locked.
pub fn resume_ended() {
    let _op = OP.lock().unwrap_or_else(|p| p.into_inner());
    let sids: Vec<u64> = match ENDED.lock() {
        Ok(mut q) => std::mem::take(&mut *q),
        Err(_) => return,
    };
    for sid in sids {
        let Some(p) = PAUSED.lock().ok().and_then(|mut g| g.remove(&sid)) else {
            continue;
        };
        let customer = mute(&p.ids.uniqueid, false).unwrap_or(0);
        let agent: u32 = p.peers.iter().filter_map(|u| mute(u, false)).sum();
        // the Stasis half of an event needs the live channel: only when it still exists
        let live = channel::find_by_uniqueid(&p.ids.uniqueid);
        let mut ids = p.ids.clone();
        ids.chan = live.as_ref().map_or(0, |c| c.as_ptr() as usize);
        events::publish(
            &ids,
            &event(RecordingAction::Resumed, Leg::Customer, customer),
        );
        events::publish(&ids, &event(RecordingAction::Resumed, Leg::Agent, agent));
        drop(live);
    }
}

/// Ticker: resume ended sessions; keep the live ones paused (a MixMonitor started during the
/// secure period, a channel that joined the bridge since).
pub fn tick(refresh: bool) {
    resume_ended();
    if !refresh {
        return;
    }
    let sids: Vec<u64> = match PAUSED.lock() {
        Ok(g) => g.keys().copied().collect(),
        Err(_) => return,
    };
    for sid in sids {
        let Some(chan) = channel::channel_of(sid) else {
            continue;
        };
        let _op = OP.lock().unwrap_or_else(|p| p.into_inner());
        // ended meanwhile: leave it to the resume
        if ENDED.lock().map(|q| q.contains(&sid)).unwrap_or(true) {
            continue;
        }
        // SAFETY: referenced (ChanRef), unlocked channel.
        let peers = unsafe { peers_of(chan.as_ptr()) };
        // the session's channel now (a masquerade moves secure mode, and the MixMonitors, to
        // another channel object): resume must find it by this uniqueid
        // SAFETY: referenced, unlocked channel; locked while its identity is read.
        let live = unsafe { channel::locked(chan.as_ptr(), || channel::chan_ids(chan.as_ptr())) };
        match PAUSED.lock() {
            Ok(g) if g.contains_key(&sid) => {}
            Ok(_) => continue,
            Err(_) => return,
        }
        mute(&live.uniqueid, true);
        for p in &peers {
            mute(p, true);
        }
        if let Ok(mut g) = PAUSED.lock() {
            if let Some(p) = g.get_mut(&sid) {
                if p.ids.uniqueid != live.uniqueid {
                    p.ids = live;
                }
                for u in peers {
                    if !p.peers.contains(&u) {
                        p.peers.push(u);
                    }
                }
            }
        }
        drop::<ChanRef>(chan);
    }
}
