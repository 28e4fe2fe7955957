//! Media anchoring: whether a channel's media is known to pass through the PBX core (where
//! secure mode's hook sees it) or may bypass it (a native bridge: native RTP forwarding or
//! direct media). Pure state transitions (host-agnostic), used by the Asterisk adapter (`host::asterisk::channel`,
//! which does the bridge checks and reads the frames) and tested here without a PBX.

/// Where the customer's media flows, as far as secure mode knows (see the module docs).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Anchor {
    /// Just attached; the bridge has not been checked yet.
    Unverified,
    /// A native bridge carried (or carries) the media past the core. `left_native`: the bridge
    /// has been seen non-native since; the next customer frame read through the hook anchors.
    Bypassed { left_native: bool },
    /// Every customer frame passes through the hook.
    Core,
}

impl Anchor {
    /// After a bridge check: `native` = the bridge is native now, `native_seen` = it was native
    /// at some check since the start.
    pub fn after_check(self, native: bool, native_seen: bool) -> Anchor {
        match (self, native) {
            (_, true) => Anchor::Bypassed { left_native: false },
            (Anchor::Unverified, false) if !native_seen => Anchor::Core,
            (Anchor::Core, false) => Anchor::Core,
            (_, false) => Anchor::Bypassed { left_native: true },
        }
    }

    /// After a customer frame was read through the hook: only a frame that arrives once the
    /// bridge has been seen non-native proves the media is back in the core.
    pub fn after_frame(self) -> Anchor {
        match self {
            Anchor::Bypassed { left_native: true } => Anchor::Core,
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Anchor;

    const PENDING: Anchor = Anchor::Bypassed { left_native: false };
    const LEFT: Anchor = Anchor::Bypassed { left_native: true };

    #[test]
    fn never_native_is_anchored_at_the_first_check() {
        assert_eq!(Anchor::Unverified.after_check(false, false), Anchor::Core);
    }

    #[test]
    fn native_before_the_attach_needs_a_frame_after_leaving_native() {
        // seen native before the attach, non-native at the first check: not yet anchored
        let a = Anchor::Unverified.after_check(false, true);
        assert_eq!(a, LEFT);
        // a frame before the bridge was seen non-native proves nothing
        assert_eq!(PENDING.after_frame(), PENDING);
        assert_eq!(Anchor::Unverified.after_frame(), Anchor::Unverified);
        // the frame after it anchors
        assert_eq!(a.after_frame(), Anchor::Core);
    }

    #[test]
    fn still_native_stays_pending_whatever_arrives() {
        let a = Anchor::Unverified.after_check(true, true);
        assert_eq!(a, PENDING);
        assert_eq!(a.after_frame(), PENDING);
        assert_eq!(a.after_check(true, true), PENDING);
        assert_eq!(a.after_check(false, true), LEFT);
    }

    #[test]
    fn mid_call_native_leaves_the_core_until_a_frame_after_it_returns() {
        let a = Anchor::Core.after_check(true, true);
        assert_eq!(a, PENDING);
        let a = a.after_check(false, true);
        assert_eq!(a, LEFT);
        // back to native before any frame: pending again
        assert_eq!(a.after_check(true, true), PENDING);
        assert_eq!(a.after_frame(), Anchor::Core);
        // anchored stays anchored while the bridge is not native
        assert_eq!(Anchor::Core.after_check(false, true), Anchor::Core);
        assert_eq!(Anchor::Core.after_frame(), Anchor::Core);
    }
}
