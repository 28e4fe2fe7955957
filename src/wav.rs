//! 16-bit PCM mono WAV reading and writing (offline CLI, tests, benchmark).
//!
//! Only what the project needs: RIFF/WAVE with a `fmt ` chunk of format 1 (PCM) or 0xFFFE
//! (WAVE_FORMAT_EXTENSIBLE with the PCM sub-format), 1 channel, 16 bits per sample. Everything
//! else is refused with a [`WavError`] whose `Display` is one clear sentence.

use std::fmt;
use std::io::Write;
use std::path::Path;

use crate::core::audio::SampleRate;

/// A decoded WAV file: 16-bit mono samples at `sample_rate` Hz.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wav {
    pub sample_rate: u32,
    pub samples: Vec<i16>,
}

impl Wav {
    /// The rate as one the core accepts (8/16/32/48 kHz), or [`WavError::UnsupportedRate`].
    pub fn rate(&self) -> Result<SampleRate, WavError> {
        SampleRate::from_hz(self.sample_rate).ok_or(WavError::UnsupportedRate(self.sample_rate))
    }
}

/// Why a WAV file could not be read or written.
#[derive(Debug)]
pub enum WavError {
    /// File system error (missing file, permission, ...).
    Io(std::io::Error),
    /// Not a RIFF/WAVE file at all.
    NotWav,
    /// The file ends before a chunk it declares (or has no `data`/`fmt ` chunk).
    Truncated,
    /// More than one channel.
    NotMono { channels: u16 },
    /// PCM with a sample size other than 16 bits.
    UnsupportedBits { bits: u16 },
    /// IEEE float samples.
    Float,
    /// Any other encoding (A-law, µ-law, ADPCM, ...), by WAVE format tag.
    UnsupportedFormat { tag: u16 },
    /// A rate the core does not process (only 8000, 16000, 32000, 48000 Hz).
    UnsupportedRate(u32),
}

impl fmt::Display for WavError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "{e}"),
            Self::NotWav => write!(f, "not a WAV file (no RIFF/WAVE header)"),
            Self::Truncated => write!(
                f,
                "truncated WAV file (a chunk runs past the end of the file)"
            ),
            Self::NotMono { channels } => {
                write!(
                    f,
                    "WAV has {channels} channels; only mono (1 channel) is supported"
                )
            }
            Self::UnsupportedBits { bits } => {
                write!(f, "WAV is {bits}-bit PCM; only 16-bit PCM is supported")
            }
            Self::Float => write!(
                f,
                "WAV holds floating-point samples; only 16-bit PCM is supported"
            ),
            Self::UnsupportedFormat { tag } => write!(
                f,
                "WAV encoding {tag:#06x} is not supported; only 16-bit PCM (format 1) is"
            ),
            Self::UnsupportedRate(hz) => write!(
                f,
                "sample rate {hz} Hz is not supported; use 8000, 16000, 32000 or 48000 Hz"
            ),
        }
    }
}

impl std::error::Error for WavError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<std::io::Error> for WavError {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}

const FORMAT_PCM: u16 = 1;
const FORMAT_FLOAT: u16 = 3;
const FORMAT_EXTENSIBLE: u16 = 0xFFFE;

fn le16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes([
        *b.get(at)?,
        *b.get(at + 1)?,
        *b.get(at + 2)?,
        *b.get(at + 3)?,
    ]))
}

/// Parses a WAV file held in memory. Any sample rate is returned; use [`Wav::rate`] to check it
/// is one the core accepts.
pub fn parse(bytes: &[u8]) -> Result<Wav, WavError> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        if bytes.len() < 12
            && (b"RIFF".starts_with(&bytes[..bytes.len().min(4)]))
            && !bytes.is_empty()
        {
            return Err(WavError::Truncated);
        }
        return Err(WavError::NotWav);
    }
    let mut pos = 12usize;
    let mut fmt: Option<(u16, u16, u32, u16)> = None; // (tag, channels, rate, bits)
    loop {
        if pos + 8 > bytes.len() {
            return Err(WavError::Truncated);
        }
        let id = &bytes[pos..pos + 4];
        let size = le32(bytes, pos + 4).ok_or(WavError::Truncated)? as usize;
        let body = pos + 8;
        let end = body.checked_add(size).ok_or(WavError::Truncated)?;
        if id == b"fmt " {
            if size < 16 || end > bytes.len() {
                return Err(WavError::Truncated);
            }
            let mut tag = le16(bytes, body).ok_or(WavError::Truncated)?;
            let channels = le16(bytes, body + 2).ok_or(WavError::Truncated)?;
            let rate = le32(bytes, body + 4).ok_or(WavError::Truncated)?;
            let bits = le16(bytes, body + 14).ok_or(WavError::Truncated)?;
            if tag == FORMAT_EXTENSIBLE {
                // cbSize(2) validBits(2) channelMask(4) then the sub-format GUID, whose first
                // two bytes are the plain format tag.
                if size < 40 {
                    return Err(WavError::Truncated);
                }
                tag = le16(bytes, body + 24).ok_or(WavError::Truncated)?;
            }
            fmt = Some((tag, channels, rate, bits));
        } else if id == b"data" {
            let (tag, channels, rate, bits) = fmt.ok_or(WavError::Truncated)?;
            match tag {
                FORMAT_PCM => {}
                FORMAT_FLOAT => return Err(WavError::Float),
                t => return Err(WavError::UnsupportedFormat { tag: t }),
            }
            if channels != 1 {
                return Err(WavError::NotMono { channels });
            }
            if bits != 16 {
                return Err(WavError::UnsupportedBits { bits });
            }
            if end > bytes.len() || size % 2 != 0 {
                return Err(WavError::Truncated);
            }
            let samples = bytes[body..end]
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]))
                .collect();
            return Ok(Wav {
                sample_rate: rate,
                samples,
            });
        }
        // Chunks are padded to an even size.
        pos = end.checked_add(size & 1).ok_or(WavError::Truncated)?;
    }
}

/// Reads a WAV file (any sample rate; see [`Wav::rate`]).
pub fn read_file(path: impl AsRef<Path>) -> Result<Wav, WavError> {
    let bytes = std::fs::read(path)?;
    parse(&bytes)
}

/// The canonical 44-byte WAV header for `data_len` bytes of data in any PCM layout (also used
/// by the tests to build files the reader must refuse).
pub fn header(format_tag: u16, channels: u16, rate: u32, bits: u16, data_len: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(44 + data_len as usize);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&format_tag.to_le_bytes());
    out.extend_from_slice(&channels.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * channels as u32 * bits as u32 / 8).to_le_bytes());
    out.extend_from_slice(&(channels * bits / 8).to_le_bytes());
    out.extend_from_slice(&bits.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    out
}

/// Encodes 16-bit mono PCM as a canonical 44-byte-header WAV.
pub fn to_bytes(sample_rate: u32, samples: &[i16]) -> Vec<u8> {
    let mut out = header(FORMAT_PCM, 1, sample_rate, 16, (samples.len() * 2) as u32);
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
    out
}

/// Writes 16-bit mono PCM to `path` (created or truncated).
pub fn write_file(
    path: impl AsRef<Path>,
    sample_rate: u32,
    samples: &[i16],
) -> Result<(), WavError> {
    let mut f = std::fs::File::create(path)?;
    f.write_all(&to_bytes(sample_rate, samples))?;
    f.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(tag: u16, channels: u16, rate: u32, bits: u16, data: &[u8]) -> Vec<u8> {
        let mut v = super::header(tag, channels, rate, bits, data.len() as u32);
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn round_trip() {
        let s: Vec<i16> = (0..1000).map(|i| (i * 37 % 65536 - 32768) as i16).collect();
        let w = parse(&to_bytes(16000, &s)).unwrap();
        assert_eq!(w.sample_rate, 16000);
        assert_eq!(w.samples, s);
        assert_eq!(w.rate().unwrap(), SampleRate::Hz16000);
    }

    #[test]
    fn skips_unknown_chunks_and_pads() {
        let mut v = to_bytes(8000, &[1, -2, 3]);
        // Insert an odd-sized LIST chunk (with pad byte) before fmt.
        let extra = [b'L', b'I', b'S', b'T', 3, 0, 0, 0, 9, 9, 9, 0];
        v.splice(12..12, extra);
        assert_eq!(parse(&v).unwrap().samples, vec![1, -2, 3]);
    }

    #[test]
    fn errors() {
        let d = [0u8; 8];
        assert!(matches!(
            parse(&header(1, 2, 8000, 16, &d)),
            Err(WavError::NotMono { channels: 2 })
        ));
        assert!(matches!(
            parse(&header(1, 1, 8000, 8, &d)),
            Err(WavError::UnsupportedBits { bits: 8 })
        ));
        assert!(matches!(
            parse(&header(3, 1, 8000, 32, &d)),
            Err(WavError::Float)
        ));
        assert!(matches!(
            parse(&header(7, 1, 8000, 8, &d)),
            Err(WavError::UnsupportedFormat { tag: 7 })
        ));
        let w = parse(&header(1, 1, 44100, 16, &d)).unwrap();
        assert!(matches!(w.rate(), Err(WavError::UnsupportedRate(44100))));
        let full = header(1, 1, 8000, 16, &d);
        assert!(matches!(
            parse(&full[..full.len() - 2]),
            Err(WavError::Truncated)
        ));
        assert!(matches!(parse(&full[..30]), Err(WavError::Truncated)));
        assert!(matches!(parse(&full[..6]), Err(WavError::Truncated)));
        assert!(matches!(
            parse(b"hello world, this is text"),
            Err(WavError::NotWav)
        ));
        assert!(matches!(parse(b""), Err(WavError::NotWav)));
        for e in [WavError::NotWav, WavError::Truncated, WavError::Float] {
            let msg = e.to_string();
            assert!(!msg.contains('\n') && msg.len() > 10);
        }
    }
}
