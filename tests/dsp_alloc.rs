//! Zero heap allocations per frame after `Masker::new` / `Detector::new`, proved with a counting
//! global allocator (this test binary only). Also checks the per-channel state bound.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use secure_pay::core::audio::SampleRate;
use secure_pay::core::dtmf::{Detector, DetectorParams};
use secure_pay::core::suppress::{MaskMode, Masker, MaskerConfig};
use secure_pay::gen::{dtmf_sequence, speech_like, DtmfSpec, Rng};

struct Counting;

thread_local! {
    // Per thread, so tests running in parallel do not count each other's allocations.
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

fn count() {
    let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: forwards every call unchanged to the system allocator; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as our caller's (valid, non-zero-size layout).
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with this layout (all allocations go there).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: `ptr`/`layout` come from `System` as above; the caller upholds the contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> usize {
    ALLOCS.with(|c| c.get())
}

#[test]
fn no_allocation_on_the_audio_path() {
    // Control: the counter does see an allocation on this thread.
    let b = allocs();
    drop(std::hint::black_box(Vec::<u8>::with_capacity(16)));
    assert!(allocs() > b, "counting allocator is active");
    for rate in [8000u32, 16000, 32000, 48000] {
        let sr = SampleRate::from_hz(rate).unwrap();
        // Audio: DTMF, speech-like, more DTMF; prepared before counting.
        let spec = DtmfSpec {
            tone_ms: 70.0,
            gap_ms: 50.0,
            ..DtmfSpec::default()
        };
        let mut rng = Rng::new(1);
        let mut audio = dtmf_sequence(rate, "4111111111111111#", &spec, &mut rng)
            .unwrap()
            .samples;
        audio.extend(speech_like(rate, rate as usize, -18.0, &mut rng));
        audio.extend(dtmf_sequence(rate, "*0D", &spec, &mut rng).unwrap().samples);
        let mut frame = vec![0i16; rate as usize / 50];
        for (mode, notch) in [
            (MaskMode::Silence, false),
            (MaskMode::Noise, false),
            (MaskMode::Beep, false),
            (MaskMode::Silence, true),
        ] {
            let cfg = MaskerConfig {
                mode,
                notch,
                ..MaskerConfig::default()
            };
            let mut m = Masker::new(sr, &cfg).unwrap();
            let mut d = Detector::new(sr, &DetectorParams::default());
            let mut digits = 0usize;
            let before = allocs();
            for _ in 0..3 {
                for chunk in audio.chunks(frame.len()) {
                    let f = &mut frame[..chunk.len()];
                    f.copy_from_slice(chunk);
                    d.process(f, &mut |_| digits += 1);
                    m.process(f, &mut |_| digits += 1);
                }
                m.flush(&mut |_| digits += 1);
                d.flush(&mut |_| digits += 1);
                m.reset();
                d.reset();
            }
            let n = allocs() - before;
            assert_eq!(
                n, 0,
                "{rate} Hz {mode:?} notch {notch}: {n} allocations while processing"
            );
            assert_eq!(digits, 3 * 2 * 20, "{rate} Hz: all digits seen by both");
        }
    }
}

#[test]
fn state_fits_in_8_kib_at_48k_with_40ms() {
    let m = Masker::new(SampleRate::Hz48000, &MaskerConfig::default()).unwrap();
    let bytes = m.state_bytes();
    println!("masker state at 48 kHz, 40 ms look-ahead: {bytes} bytes");
    assert!(bytes <= 8192, "{bytes} bytes");
    let notch = MaskerConfig {
        notch: true,
        ..MaskerConfig::default()
    };
    let m = Masker::new(SampleRate::Hz48000, &notch).unwrap();
    let with = m.state_bytes();
    // The band-stop's state is allocated only when the option is on.
    println!("with the notch option: {with} bytes");
    assert!(with <= 8192 && with > bytes, "{with} bytes");
    // The delay line is counted: 40 ms at 48 kHz is 1920 samples = 3840 bytes.
    assert!(bytes > 3840);
}
