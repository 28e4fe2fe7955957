//! The masker: a look-ahead delay line around the detector that replaces DTMF audio from its first
//! sample to its last (plus a hangover), so neither the agent nor a recording hears a digit.
//!
//! API CONTRACT (skeleton; the DSP work fills in the implementation behind it).

use crate::core::audio::SampleRate;
use crate::core::dtmf::{DetectorParams, ToneEvent};

/// What replaces masked audio.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MaskMode {
    /// Digital silence (default).
    #[default]
    Silence,
    /// Low-level comfort noise.
    Noise,
    /// One flat tone, identical for every key.
    Beep,
}

#[derive(Clone, Debug, PartialEq)]
pub struct MaskerConfig {
    /// Look-ahead delay, 0..=100 ms (default 40).
    pub lookahead_ms: u32,
    pub mode: MaskMode,
    pub detector: DetectorParams,
}

impl Default for MaskerConfig {
    fn default() -> Self {
        Self {
            lookahead_ms: 40,
            mode: MaskMode::Silence,
            detector: DetectorParams::default(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MaskerError {
    LookaheadTooLong { ms: u32, max: u32 },
}

impl std::fmt::Display for MaskerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::LookaheadTooLong { ms, max } => {
                write!(f, "look-ahead {ms} ms is over the maximum of {max} ms")
            }
        }
    }
}

impl std::error::Error for MaskerError {}

/// Per-channel masker. Allocates only in `new`.
pub struct Masker {
    rate: SampleRate,
    delay: usize,
}

impl Masker {
    pub const MAX_LOOKAHEAD_MS: u32 = 100;

    pub fn new(rate: SampleRate, cfg: &MaskerConfig) -> Result<Self, MaskerError> {
        if cfg.lookahead_ms > Self::MAX_LOOKAHEAD_MS {
            return Err(MaskerError::LookaheadTooLong {
                ms: cfg.lookahead_ms,
                max: Self::MAX_LOOKAHEAD_MS,
            });
        }
        Ok(Self {
            rate,
            delay: rate.samples_for_ms(cfg.lookahead_ms),
        })
    }

    pub fn rate(&self) -> SampleRate {
        self.rate
    }

    /// Processes `frame` in place: on return it holds the input delayed by
    /// [`Masker::delay_samples`], with DTMF spans replaced. Digits go to `sink`.
    pub fn process(&mut self, _frame: &mut [i16], _sink: &mut dyn FnMut(ToneEvent)) {}

    /// Samples of delay the masker adds (the look-ahead).
    pub fn delay_samples(&self) -> usize {
        self.delay
    }

    /// Forget all state (delay line to silence, detector reset).
    pub fn reset(&mut self) {}
}
