//! The masker is armed by the customer's out-of-band key presses, on a REAL Asterisk 22
//! (private instance on loopback; Local-channel calls, both in secure mode).
//!
//! Some phones and gateways let the first 20-30 ms of each tone through in the audio before
//! they send the key out of band. Such a head is too short to capture, so over a background
//! the masker judges it as it would speech, unless the host tells it the customer is keying
//! (`Masker::key_pressed`, called by the adapter for every DTMF frame of the customer).
//!
//! Two calls play the same generated audio on the customer's phone: white noise with heads of
//! 20, 25 and 30 ms at 0 dB SNR (the corpus of `masking_background`'s
//! `an_out_of_band_key_press_arms_the_masker`), in files of 2.4 s. Before each file the
//! customer of one call presses `*` as a DTMF frame (SendDTMF; `*` only clears the field, so
//! the capture goes on); the other call waits instead. Judge: the tone-residual judge on the
//! agent's MixMonitor recording, each file located in it by cross-correlation: the armed call
//! must leave clearly fewer heads over the residual target (-40 dB). Control: the judge finds
//! every head in the input, and the unarmed call leaves some over the target.
#![cfg(feature = "asterisk")]

mod asterisk;

use std::path::Path;
use std::time::Duration;

use asterisk::judges::heads::calls::{
    assert_arming_helps, assert_heads_present, file_audio, heads_over, FILES, RATE,
};
use asterisk::judges::heads::Rng;
use asterisk::judges::residual::ToneSpan;
use asterisk::{Ami, Call, Instance, BASE_MODULES};

const T: Duration = Duration::from_secs(60);

fn dialplan() -> String {
    r#"[general]
[globals]
[sp]
exten => inbound,1,Answer()
 same => n,UserEvent(SPInbound,Call: ${CALLNAME},Chan: ${CHANNEL})
 same => n,Dial(Local/agent@sp/n)
 same => n,Hangup()

exten => agent,1,Answer()
 same => n,MixMonitor(agent-${CALLNAME}.wav)
 same => n,UserEvent(SPAgent,Call: ${CALLNAME},Chan: ${CHANNEL})
 same => n,Wait(600)
 same => n,Hangup()

exten => customer,1,Answer()
 same => n(go),GotoIf($["${GLOBAL(SPGO)}" = "1"]?play)
 same => n,Wait(0.1)
 same => n,Goto(go)
 same => n(play),Set(I=1)
 same => n(next),GotoIf($[${I} > ${FILES}]?end)
 same => n,GotoIf($["${OOB}" = "1"]?key)
 same => n,Wait(0.2)
 same => n,Goto(file)
 same => n(key),SendDTMF(*,100,100)
 same => n(file),Playback(${MIXDIR}/mix-${I})
 same => n,Set(I=$[${I} + 1])
 same => n,Goto(next)
 same => n(end),UserEvent(SPPlayed,Call: ${CALLNAME})
 same => n,Wait(600)
"#
    .to_owned()
}

fn read_recording(path: &Path) -> Vec<i16> {
    let w = secure_pay::wav::read_file(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(w.sample_rate, RATE, "{}", path.display());
    w.samples
}

fn start_secure(ami: &mut Ami, c: &Call) {
    let r = c.securepay(ami, &[("Command", "start")]);
    assert_eq!(r.get("Response"), Some("Success"), "{}", r.text());
    ami.wait_event(T, "SecurePayStart", &[("Channel", &c.customer)])
        .expect("SecurePayStart");
}

#[test]
fn out_of_band_key_presses_arm_the_masker_on_a_call() {
    // The capture must not end during the minute of audio (no key for the unarmed call).
    let conf = "[general]\nfirst_digit_timeout_ms = 300000\ninter_digit_timeout_ms = 120000\n";
    let inst = Instance::start(
        "oobarm",
        &dialplan(),
        &[("secure_pay.conf", conf)],
        &format!("{BASE_MODULES} app_playback.so"),
    );
    let dir = inst.dir.join("oob-mix");
    std::fs::create_dir_all(&dir).unwrap();
    let mut rng = Rng(0x00B_A2D);
    let files: Vec<(Vec<i16>, Vec<ToneSpan>)> = (0..FILES).map(|_| file_audio(&mut rng)).collect();
    for (i, (audio, _)) in files.iter().enumerate() {
        secure_pay::wav::write_file(dir.join(format!("mix-{}.wav", i + 1)), RATE, audio)
            .expect("write mix");
    }
    // The same directory as Asterisk sees it inside its chroot.
    let inside = format!(
        "/{}",
        dir.strip_prefix(asterisk::chroot_root()).unwrap().display()
    );
    let mut ami = inst.ami();
    let files_s = FILES.to_string();
    let armed = Call::originate(
        &mut ami,
        "arm",
        &[("OOB", "1"), ("FILES", &files_s), ("MIXDIR", &inside)],
    );
    let plain = Call::originate(
        &mut ami,
        "plain",
        &[("OOB", "0"), ("FILES", &files_s), ("MIXDIR", &inside)],
    );
    start_secure(&mut ami, &armed);
    start_secure(&mut ami, &plain);
    let r = ami.action(&[
        ("Action", "Setvar"),
        ("Variable", "GLOBAL(SPGO)"),
        ("Value", "1"),
    ]);
    assert_eq!(r.get("Response"), Some("Success"), "{}", r.text());
    for c in [&armed, &plain] {
        ami.wait_event(
            Duration::from_secs(180),
            "UserEvent",
            &[("UserEvent", "SPPlayed"), ("Call", &c.name)],
        )
        .unwrap_or_else(|| panic!("call {}: the customer did not finish playing", c.name));
    }
    // Both calls were secure from the first file to the last.
    for c in [&armed, &plain] {
        assert!(
            ami.events("SecurePayStop")
                .iter()
                .all(|m| m.get("Channel") != Some(c.customer.as_str())),
            "call {}: secure mode ended early",
            c.name
        );
        let r = ami.action(&[("Action", "Hangup"), ("Channel", &c.customer)]);
        assert_eq!(r.get("Response"), Some("Success"), "{}", r.text());
    }
    std::thread::sleep(Duration::from_millis(1500)); // MixMonitor closes its files

    // Control: the judge finds every head in the input.
    assert_heads_present(&files);
    let rec = |c: &Call| read_recording(&inst.monitor(&format!("agent-{}.wav", c.name)));
    let (over_plain, n) = heads_over(&rec(&plain), &files, 30, 2);
    let (over_armed, _) = heads_over(&rec(&armed), &files, 30, 2);
    assert_arming_helps(over_plain, over_armed, n, "the customer's DTMF frames");
}
