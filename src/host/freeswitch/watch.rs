//! Frame accounting between the read_frame hook and our READ_REPLACE callback: proof, frame by
//! frame, that FreeSWITCH still runs our media bug on the audio it hands on.
//!
//! Why: the core can skip READ_REPLACE bugs for a frame it then forwards untouched. The known
//! case is `SSF_MEDIA_BUG_TAP_ONLY` left set by a native tap added on another thread at the same
//! moment as our bug (`switch_core_media_bug_add` decides the flag under the bug list's lock but
//! sets it after unlocking); with it set, `switch_core_session_read_frame` hands every encoded
//! frame to the bridge without decoding it and without calling any READ_REPLACE bug, until the
//! next bug add or remove. Another module's read_frame hook that answers BREAK after ours does
//! the same for one frame. The read_frame hook runs on every frame before that decision, so:
//!
//! - each frame the hook lets on (`on_hook` with `expects_replace`) must reach READ_REPLACE
//!   (`on_replace`) before the hook sees the next frame (both run on the thread reading the
//!   customer channel, one frame after the other);
//! - until READ_REPLACE has acknowledged a frame (at start: the hook is in place before the bug),
//!   and from the first frame that did not reach it, every frame is a **probe**: the hook
//!   replaces its payload with encoded silence and marks it comfort noise, so if the core skips
//!   our bug again the bridge gets silence, and if it does not, READ_REPLACE sees the probe and
//!   the frames after it pass normally;
//! - after [`REPAIR_AFTER`] probes in a row the dispatcher is asked to repair (add and remove a
//!   no-op bug, which makes the core recompute the flag) and to tell the agent, at most
//!   [`MAX_REPAIRS`] times per secure session; the customer stays muted as long as it lasts.
//!
//! What is left: the one frame the core forwards in the period between a verified frame and
//! the first miss (the flag set late, after our bug had already been acknowledged). That needs
//! the racing thread to be descheduled between two adjacent statements of FreeSWITCH for a whole
//! frame; SAFETY.md lists it.
//!
//! Pure logic (atomics, no FFI): the hook and READ_REPLACE call it, the dispatcher takes the
//! repair requests.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// Probes in a row (20 ms frames: 0.5 s) before the dispatcher is asked to repair.
pub const REPAIR_AFTER: u32 = 25;
/// Repairs asked for per secure session (each adds and removes a bug from the session's pool).
pub const MAX_REPAIRS: u32 = 10;

/// What the hook does with the frame it is looking at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// READ_REPLACE ran for the frames before: let it on.
    Pass,
    /// Not (or no longer) verified: replace the payload with silence, mark it comfort noise.
    /// `repair`: this probe asked for a repair (wake the dispatcher).
    Probe { repair: bool },
}

#[derive(Default)]
pub struct ReplaceWatch {
    /// The hook let a frame on that must reach READ_REPLACE, which has not run since.
    awaiting: AtomicBool,
    /// READ_REPLACE acknowledged a frame since the start or the last miss.
    verified: AtomicBool,
    /// Probes since verification was lost (or since the start).
    probes: AtomicU32,
    /// Frames that passed the hook and never reached READ_REPLACE (misses after verification).
    misses: AtomicU32,
    /// Repairs asked for so far.
    repairs: AtomicU32,
    /// A repair is asked for and not yet taken by the dispatcher.
    repair: AtomicBool,
}

impl ReplaceWatch {
    /// Unverified: the first frames are probes until READ_REPLACE acknowledges one.
    pub fn new() -> Self {
        Self::default()
    }

    /// The read_frame hook, for every frame it sees. `passing`: the hook lets this frame on
    /// (false when it mutes it for another reason: the core then hands back its own comfort
    /// noise and no bug runs). `expects_replace`: a frame the core takes through the media bugs
    /// (audio; not `SFF_NOT_AUDIO`). Returns what to do with a passing frame (`Pass` otherwise).
    pub fn on_hook(&self, passing: bool, expects_replace: bool) -> Verdict {
        // The previous frame the hook let on never reached READ_REPLACE.
        if self.awaiting.swap(false, Ordering::Relaxed)
            && self.verified.swap(false, Ordering::Relaxed)
        {
            self.misses.fetch_add(1, Ordering::Relaxed);
            self.probes.store(0, Ordering::Relaxed);
        }
        if !passing {
            return Verdict::Pass;
        }
        if expects_replace {
            self.awaiting.store(true, Ordering::Relaxed);
        }
        if self.verified.load(Ordering::Relaxed) {
            return Verdict::Pass;
        }
        let n = self
            .probes
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        let repair = n % REPAIR_AFTER == 0 && self.repairs.load(Ordering::Relaxed) < MAX_REPAIRS;
        if repair {
            self.repairs.fetch_add(1, Ordering::Relaxed);
            self.repair.store(true, Ordering::Release);
        }
        Verdict::Probe { repair }
    }

    /// READ_REPLACE ran (for the frame the hook let on last).
    pub fn on_replace(&self) {
        if self.awaiting.swap(false, Ordering::Relaxed) {
            self.verified.store(true, Ordering::Relaxed);
            self.probes.store(0, Ordering::Relaxed);
        }
    }

    /// The dispatcher: a repair was asked for since it last looked (taken).
    pub fn take_repair(&self) -> bool {
        self.repair.swap(false, Ordering::AcqRel)
    }

    /// Frames that passed the hook after verification and never reached READ_REPLACE.
    pub fn misses(&self) -> u32 {
        self.misses.load(Ordering::Relaxed)
    }

    /// READ_REPLACE acknowledged the last frame the hook let on.
    pub fn verified(&self) -> bool {
        self.verified.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_probe(v: Verdict) -> bool {
        matches!(v, Verdict::Probe { .. })
    }

    /// One frame through the core: the hook, then READ_REPLACE unless the core skips it.
    fn frame(w: &ReplaceWatch, replace_runs: bool) -> Verdict {
        let v = w.on_hook(true, true);
        if replace_runs {
            w.on_replace();
        }
        v
    }

    #[test]
    fn frames_before_the_first_replace_are_probes_then_pass() {
        let w = ReplaceWatch::new();
        // The hook is in place before the bug: those frames never reach READ_REPLACE.
        for _ in 0..3 {
            assert!(is_probe(frame(&w, false)));
        }
        assert!(
            is_probe(frame(&w, true)),
            "the acknowledged frame was a probe"
        );
        for _ in 0..100 {
            assert_eq!(frame(&w, true), Verdict::Pass);
        }
        assert_eq!(w.misses(), 0, "frames before verification are not misses");
        assert!(!w.take_repair());
    }

    #[test]
    fn a_skipped_frame_turns_every_following_frame_into_a_probe_until_replace_runs_again() {
        let w = ReplaceWatch::new();
        frame(&w, true);
        assert_eq!(frame(&w, true), Verdict::Pass);
        // The core skips our bug (tap-only flag left set): that frame got through unmasked.
        assert_eq!(frame(&w, false), Verdict::Pass);
        // Every later frame is silenced before the core sees it, as long as it keeps skipping.
        for _ in 0..(REPAIR_AFTER * 3) {
            assert!(is_probe(frame(&w, false)));
        }
        assert_eq!(w.misses(), 1);
        // The core runs our bug again (after a repair): the probe is acknowledged.
        assert!(is_probe(frame(&w, true)));
        assert_eq!(frame(&w, true), Verdict::Pass);
        assert!(w.verified());
    }

    #[test]
    fn repairs_are_asked_for_every_so_many_probes_and_bounded() {
        let w = ReplaceWatch::new();
        frame(&w, true);
        frame(&w, false); // the miss
        let mut asked = 0;
        for _ in 0..(REPAIR_AFTER * (MAX_REPAIRS + 5)) {
            frame(&w, false);
            if w.take_repair() {
                asked += 1;
            }
        }
        assert_eq!(asked, MAX_REPAIRS);
        // Control: a channel whose bug runs is never repaired.
        let ok = ReplaceWatch::new();
        for _ in 0..(REPAIR_AFTER * 4) {
            frame(&ok, true);
            assert!(!ok.take_repair());
        }
    }

    #[test]
    fn frames_the_hook_mutes_or_that_are_not_audio_expect_no_replace() {
        let w = ReplaceWatch::new();
        frame(&w, true);
        // Muted by the hook (media out of the core, state busy): the core hands back its own
        // comfort noise and runs no bug; the next frame is no miss.
        assert_eq!(w.on_hook(false, true), Verdict::Pass);
        assert_eq!(frame(&w, true), Verdict::Pass);
        // A non-audio frame skips the bugs by design.
        assert_eq!(w.on_hook(true, false), Verdict::Pass);
        assert_eq!(frame(&w, true), Verdict::Pass);
        assert_eq!(w.misses(), 0);
    }

    #[test]
    fn a_one_off_skip_costs_one_probe() {
        // Another module's hook answering BREAK after ours for one frame.
        let w = ReplaceWatch::new();
        frame(&w, true);
        frame(&w, false);
        assert!(is_probe(frame(&w, true)));
        assert_eq!(frame(&w, true), Verdict::Pass);
        assert!(!w.take_repair());
    }
}
