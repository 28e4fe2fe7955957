//! Issue #16 in the core: the `recording` option (`mask` | `pause`), an admin key with an admin
//! allow-list (`allowed_recording`) in the style of `allowed_fields`: per call only a value the
//! admin allows. And the `recording` event (paused / resumed / refused): fixed texts and a count,
//! never a path or a keyed digit. Every refusal has a control that the same request passes when
//! the admin allows it.

use secure_pay::core::config::{Config, RecordingMode};
use secure_pay::core::events::{Event, Leg, RecordingAction, RecordingKind};

fn admin(pairs: &[(&str, &str)]) -> Config {
    let mut c = Config::default();
    for (k, v) in pairs {
        c.set(k, v).unwrap();
    }
    c.resolve().unwrap();
    c
}

#[test]
fn default_is_mask_and_only_mask_per_call() {
    let a = admin(&[]);
    assert_eq!(a.recording, RecordingMode::Mask);
    assert_eq!(a.allowed_recording_modes().to_header(), "mask");
    // control: the admin's own value may be repeated per call
    assert_eq!(
        a.for_call("recording=mask").unwrap().recording,
        RecordingMode::Mask
    );
    // hostile: the agent may not switch recordings off when the admin did not allow it
    let e = a.for_call("recording=pause").unwrap_err().to_string();
    assert!(e.contains("'recording'"), "{e}");
    assert!(e.contains("not allowed on this call"), "{e}");
    assert!(e.contains("the admin allows: mask"), "{e}");
}

#[test]
fn agent_cannot_choose_mask_when_the_admin_says_pause_only() {
    let a = admin(&[("recording", "pause")]);
    assert_eq!(a.recording, RecordingMode::Pause);
    let e = a.for_call("recording=mask").unwrap_err();
    assert_eq!(e.key, "recording");
    assert!(e.message.contains("the admin allows: pause"), "{e}");
    // the refusal does not depend on the position or spelling of the key
    assert!(a.for_call("mode=beep,RECORDING=Mask").is_err());
    assert!(a.for_call("mode=beep recording = mask").is_err());
    // control: pause is what the admin set
    let c = a.for_call("recording=pause").unwrap();
    assert_eq!(c.recording, RecordingMode::Pause);
    // and without the option the admin's value stays
    assert_eq!(a.for_call("").unwrap().recording, RecordingMode::Pause);
}

#[test]
fn the_allow_list_lets_the_agent_choose_and_is_admin_only() {
    let a = admin(&[("recording", "mask"), ("allowed_recording", "mask, pause")]);
    assert_eq!(a.allowed_recording_modes().to_header(), "mask,pause");
    assert_eq!(
        a.for_call("recording=pause").unwrap().recording,
        RecordingMode::Pause
    );
    assert_eq!(
        a.for_call("recording=mask").unwrap().recording,
        RecordingMode::Mask
    );
    // the allow-list itself is admin only: an agent cannot widen it ...
    let b = admin(&[("recording", "pause")]);
    let e = b
        .for_call("allowed_recording=mask,pause,recording=mask")
        .unwrap_err()
        .to_string();
    assert!(e.contains("'allowed_recording'"), "{e}");
    assert!(e.contains("only the admin sets it"), "{e}");
    // ... not even after a value that is allowed
    assert!(b
        .for_call("recording=pause allowed_recording=mask")
        .is_err());
    // the admin's `recording` is always allowed, even when the list names only the other
    let c = admin(&[("recording", "pause"), ("allowed_recording", "mask")]);
    assert_eq!(c.allowed_recording_modes().to_header(), "mask,pause");
}

#[test]
fn unknown_values_are_refused_naming_the_key_and_what_is_allowed() {
    let mut c = Config::default();
    for v in ["off", "", "mute", "pause;", "masked", "0"] {
        let e = c.set("recording", v).unwrap_err().to_string();
        assert!(e.contains("'recording'"), "{v}: {e}");
        assert!(e.contains("allowed: mask|pause"), "{v}: {e}");
    }
    for v in ["", " , ", "mask,stop", "all"] {
        let e = c.set("allowed_recording", v).unwrap_err().to_string();
        assert!(e.contains("'allowed_recording'"), "{v}: {e}");
        assert!(e.contains("mask, pause"), "{v}: {e}");
    }
    // nothing changed by the bad values
    assert_eq!(c, Config::default());
    // per call: an unknown value is refused too, also when the admin allows both
    let a = admin(&[("allowed_recording", "mask,pause")]);
    for v in ["off", "none", "record", "4111111111111111"] {
        let e = a
            .for_call(&format!("recording={v}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("allowed: mask|pause"), "{v}: {e}");
        // an error that echoes input never echoes a card
        assert!(!e.contains("4111111111111111"), "{e}");
    }
    // case and `-`/`_` spelling of the key are accepted (control)
    c.set("Recording", "PAUSE").unwrap();
    assert_eq!(c.recording, RecordingMode::Pause);
    c.set("allowed-recording", "pause mask").unwrap();
    assert_eq!(c.allowed_recording_modes().to_header(), "mask,pause");
}

#[test]
fn recording_events_carry_fixed_texts_and_no_digit_but_the_count() {
    let cases = [
        (
            RecordingAction::Paused,
            RecordingKind::All,
            Leg::Customer,
            "pause",
            2,
            "recording-option",
        ),
        (
            RecordingAction::Resumed,
            RecordingKind::All,
            Leg::Agent,
            "pause",
            1,
            "secure-mode-ended",
        ),
        (
            RecordingAction::Paused,
            RecordingKind::Native,
            Leg::Customer,
            "mask",
            1,
            "codec-payload",
        ),
        (
            RecordingAction::Refused,
            RecordingKind::Tap,
            Leg::Customer,
            "mask",
            1,
            "codec-payload",
        ),
    ];
    for (action, kind, leg, mode, count, reason) in cases {
        let ev = Event::Recording {
            action,
            kind,
            leg,
            mode,
            count,
            reason,
        };
        assert_eq!(ev.name(), "recording");
        let h = ev.headers();
        let get = |k: &str| ev.header(k).unwrap_or_else(|| panic!("{k} missing: {h:?}"));
        assert_eq!(get("SecurePay-Recording-Action"), action.name());
        assert_eq!(get("SecurePay-Recording-Kind"), kind.name());
        assert_eq!(get("SecurePay-Leg"), leg.name());
        assert_eq!(get("SecurePay-Recording-Mode"), mode);
        assert_eq!(get("SecurePay-Recording-Count"), count.to_string());
        assert_eq!(get("SecurePay-Reason"), reason);
        assert_eq!(h.len(), 6, "{h:?}");
        // no value carries a digit except the count
        for (k, v) in &h {
            if *k != "SecurePay-Recording-Count" {
                assert!(!v.chars().any(|c| c.is_ascii_digit()), "{k}: {v}");
            }
        }
    }
    assert_eq!(
        [
            RecordingAction::Paused.name(),
            RecordingAction::Resumed.name(),
            RecordingAction::Refused.name()
        ],
        ["paused", "resumed", "refused"]
    );
}

#[test]
fn the_outgoing_guard_also_covers_recording_events() {
    // a (hypothetical) reason text that carried a card would still leave masked: the guard runs
    // on every header of every event (control that the guard is in the path for this variant)
    let ev = Event::Recording {
        action: RecordingAction::Paused,
        kind: RecordingKind::Native,
        leg: Leg::Customer,
        mode: "mask",
        count: 1,
        reason: "4111111111111111",
    };
    let r = ev.header("SecurePay-Reason").unwrap();
    assert_ne!(r, "4111111111111111");
    assert!(r.ends_with("1111"), "{r}");
}
