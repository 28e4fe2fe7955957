//! Sample rates and small audio helpers shared by the detector, the masker, the CLI and adapters.

/// The linear PCM rates the core accepts (16-bit signed mono).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SampleRate {
    Hz8000,
    Hz16000,
    Hz32000,
    Hz48000,
}

impl SampleRate {
    pub fn from_hz(hz: u32) -> Option<Self> {
        match hz {
            8000 => Some(Self::Hz8000),
            16000 => Some(Self::Hz16000),
            32000 => Some(Self::Hz32000),
            48000 => Some(Self::Hz48000),
            _ => None,
        }
    }

    pub fn hz(self) -> u32 {
        match self {
            Self::Hz8000 => 8000,
            Self::Hz16000 => 16000,
            Self::Hz32000 => 32000,
            Self::Hz48000 => 48000,
        }
    }

    /// Number of samples in `ms` milliseconds at this rate.
    pub fn samples_for_ms(self, ms: u32) -> usize {
        (self.hz() as usize / 1000) * ms as usize
    }
}
