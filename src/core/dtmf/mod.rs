//! DTMF detection (capture grade, ITU-T Q.24 / GR-506). One [`Detector`] per channel, fed chunks
//! of any length; results do not depend on how the audio is chunked.
//!
//! API CONTRACT (skeleton; the DSP work fills in the implementation behind it).

use crate::core::audio::SampleRate;
use crate::core::digit::Digit;

/// Detection thresholds. `Default` is the Q.24 profile described in README.
#[derive(Clone, Debug, PartialEq)]
pub struct DetectorParams {
    /// Tones shorter than this are not accepted as digits (must accept >= 40 ms, reject <= 23 ms).
    pub min_tone_ms: u32,
    /// Silence/dropout shorter than this inside a tone is bridged.
    pub max_dropout_ms: u32,
}

impl Default for DetectorParams {
    fn default() -> Self {
        Self {
            min_tone_ms: 32,
            max_dropout_ms: 10,
        }
    }
}

/// One accepted key press, with its position in samples of the input stream (first sample fed
/// to the detector = 0).
#[derive(Clone, Copy)]
pub struct ToneEvent {
    pub digit: Digit,
    pub start_sample: u64,
    pub end_sample: u64,
}

/// Per-channel DTMF receiver.
pub struct Detector {
    rate: SampleRate,
}

impl Detector {
    pub fn new(rate: SampleRate, _params: &DetectorParams) -> Self {
        Self { rate }
    }

    pub fn rate(&self) -> SampleRate {
        self.rate
    }

    /// Feeds samples; calls `sink` for each digit whose end is confirmed.
    pub fn process(&mut self, _samples: &[i16], _sink: &mut dyn FnMut(ToneEvent)) {}

    /// End of stream: report a digit still sounding.
    pub fn flush(&mut self, _sink: &mut dyn FnMut(ToneEvent)) {}

    pub fn reset(&mut self) {}
}
