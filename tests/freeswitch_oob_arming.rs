//! The masker is armed by the customer's out-of-band key presses, on a REAL FreeSWITCH
//! (private instance on loopback; two loopback calls to null-endpoint agents, both in secure
//! mode). The FreeSWITCH twin of `asterisk_oob_arming`.
//!
//! Some phones and gateways let the first 20-30 ms of each tone through in the audio before
//! they send the key out of band. Such a head is too short to capture, so over a background
//! the masker judges it as it would speech, unless the adapter tells it the customer is keying:
//! `push_digit` flags every digit that did not come from the audio (RFC 2833, SIP INFO, the
//! channel's DTMF queue), and the media bug's READ_REPLACE callback arms the masker
//! (`Masker::key_pressed`) before its next frame.
//!
//! Two calls play the same generated audio into the customer channel (`uuid_broadcast` on the
//! loopback leg that stands for the phone): white noise with heads of 20, 25 and 30 ms at 0 dB
//! SNR, in files of 2.4 s. Before each file the phone of one call sends `*` out of band
//! (`uuid_send_dtmf`: the loopback pair queues it as a DTMF on the customer channel; `*` only
//! clears the empty field, so the capture goes on); the other call sends nothing. Judge: the
//! tone-residual judge on each agent's recording (`uuid_record` on the null agent), each file
//! located in it by cross-correlation: the armed call must leave clearly fewer heads over the
//! residual target (-40 dB). Controls: the judge finds every head in the input, and the unarmed
//! call leaves some over the target.
//!
//! Needs FreeSWITCH at $FREESWITCH_PREFIX (default /opt/freeswitch), else SKIPPED.
#![cfg(feature = "freeswitch")]

mod freeswitch_support;
#[path = "judges/mod.rs"]
mod judges;

use std::time::Duration;

use freeswitch_support::*;
use judges::heads::calls::{
    assert_arming_helps, assert_heads_present, file_audio, heads_over, FILES, RATE,
};
use judges::heads::Rng;
use judges::residual::ToneSpan;

/// Wall time given to each file: its 2.4 s and a margin, so a broadcast never cuts the last one.
const FILE_SLOT: Duration = Duration::from_millis(2800);

fn api_ok(esl: &mut Esl, cmd: &str) {
    let r = esl.api(cmd);
    assert!(r.starts_with("+OK"), "{cmd}: {r}");
}

#[test]
fn out_of_band_key_presses_arm_the_masker_on_a_call() {
    let Some(prefix) = prefix() else { return };
    let kv = |k: &str, v: &str| (k.to_string(), v.to_string());
    // The capture must not end during the minute and a half of audio (no key for the unarmed
    // call).
    let fs = FreeSwitch::start(
        &prefix,
        &Options {
            secure_pay_settings: vec![
                kv("first_digit_timeout_ms", "300000"),
                kv("inter_digit_timeout_ms", "120000"),
            ],
            ..Options::default()
        },
    );
    let dir = fs.dir.join("oob-mix");
    std::fs::create_dir_all(&dir).unwrap();
    let mut rng = Rng(0x00B_A2D);
    let files: Vec<(Vec<i16>, Vec<ToneSpan>)> = (0..FILES).map(|_| file_audio(&mut rng)).collect();
    let paths: Vec<_> = files
        .iter()
        .enumerate()
        .map(|(i, (audio, _))| {
            let p = dir.join(format!("mix-{}.wav", i + 1));
            secure_pay::wav::write_file(&p, RATE, audio).expect("write mix");
            p
        })
        .collect();

    let mut esl = fs.esl();
    // (phone leg, customer channel, agent) per call
    let call = |esl: &mut Esl, n: u32| {
        let (phone, cust) = originate_customer(esl, &format!("custnull{n}"));
        let agent = null_agent(esl, &cust);
        (phone, cust, agent)
    };
    let armed = call(&mut esl, 1);
    let plain = call(&mut esl, 2);
    let rec_path = |name: &str| fs.rec(&format!("agent-{name}.wav"));
    for (name, (_, cust, agent)) in [("arm", &armed), ("plain", &plain)] {
        api_ok(&mut esl, &format!("uuid_secure_pay {cust} start"));
        record(&mut esl, agent, "start", &rec_path(name));
    }
    std::thread::sleep(Duration::from_millis(500));
    for p in &paths {
        // The key goes from the phone leg to the customer channel's DTMF queue.
        api_ok(&mut esl, &format!("uuid_send_dtmf {} *@100", armed.0));
        for (phone, _, _) in [&armed, &plain] {
            api_ok(
                &mut esl,
                &format!("uuid_broadcast {phone} {} aleg", p.display()),
            );
        }
        std::thread::sleep(FILE_SLOT);
    }
    // Both calls were secure from the first file to the last.
    for (name, (_, cust, agent)) in [("arm", &armed), ("plain", &plain)] {
        let st = esl.api(&format!("uuid_secure_pay {cust} status"));
        assert!(st.starts_with("+OK active"), "call {name}: status {st}");
        record(&mut esl, agent, "stop", &rec_path(name));
    }
    std::thread::sleep(Duration::from_millis(500));

    assert_heads_present(&files);
    let rec = |name: &str| {
        let p = rec_path(name);
        let w = secure_pay::wav::read_file(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert_eq!(w.sample_rate, RATE, "{}", p.display());
        w.samples
    };
    // The first file starts within 3 s of the recording, the next ones follow at most 1 s
    // after the previous one's end (FILE_SLOT less the file, and the broadcast's start-up).
    let (over_plain, n) = heads_over(&rec("plain"), &files, 3, 1);
    let (over_armed, _) = heads_over(&rec("arm"), &files, 3, 1);
    assert_arming_helps(over_plain, over_armed, n, "the customer's out-of-band keys");
}
