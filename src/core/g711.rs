//! G.711 µ-law / A-law conversion (the PBX often hands us G.711).
//!
//! Bit-exact with ITU-T G.711 as implemented by the classic Sun Microsystems reference `g711.c`
//! and by spandsp's `g711.h` (the code most PBXes descend from): 16-bit linear in, 8-bit code
//! out, the transmitted (inverted) bit patterns, µ-law with the 0x84 bias, A-law with even-bit
//! inversion (XOR 0x55). Decoding gives the segment mid-point values (µ-law ±32124 max, A-law
//! ±32256 max); the decode tables are identical to Sun's. Encoding is checked against spandsp
//! 0.0.6 over the whole 16-bit range (see the tests; µ-law note on [`linear_to_ulaw`]).

/// A-law segment end points (on the magnitude shifted right by 3).
const SEG_AEND: [i16; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];
const BIAS: i16 = 0x84;

fn segment(val: i16, table: &[i16; 8]) -> usize {
    table.iter().position(|&end| val <= end).unwrap_or(8)
}

/// Decodes one µ-law byte to 16-bit linear PCM.
pub fn ulaw_to_linear(u: u8) -> i16 {
    let u = !u;
    let mut t: i16 = (((u & 0x0F) as i16) << 3) + BIAS;
    t <<= (u & 0x70) >> 4;
    if u & 0x80 != 0 {
        BIAS - t
    } else {
        t - BIAS
    }
}

/// Encodes one 16-bit linear sample to µ-law.
///
/// Sign-magnitude with the 0x84 bias on the full 16-bit magnitude, so the quantiser is
/// symmetric around zero (identical to spandsp's `linear_to_ulaw`). Sun's `g711.c` shifts the
/// two's-complement value right by 2 first, which moves a few negative decision points by one LSB
/// of the 14-bit input; the decode tables of all these implementations are identical.
pub fn linear_to_ulaw(s: i16) -> u8 {
    let s = s as i32;
    let (mag, mask) = if s >= 0 {
        (BIAS as i32 + s, 0xFFu8)
    } else {
        (BIAS as i32 - s, 0x7Fu8)
    };
    // Segment = position of the top set bit of (mag | 0xFF), minus 7.
    let seg = (31 - (mag | 0xFF).leading_zeros()) as i32 - 7;
    if seg >= 8 {
        return 0x7F ^ mask;
    }
    let u = ((seg << 4) | ((mag >> (seg + 3)) & 0x0F)) as u8;
    u ^ mask
}

/// Decodes one A-law byte to 16-bit linear PCM.
pub fn alaw_to_linear(a: u8) -> i16 {
    let a = a ^ 0x55;
    let mut t: i16 = ((a & 0x0F) as i16) << 4;
    let seg = (a & 0x70) >> 4;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => {
            t += 0x108;
            t <<= seg - 1;
        }
    }
    if a & 0x80 != 0 {
        t
    } else {
        -t
    }
}

/// Encodes one 16-bit linear sample to A-law.
pub fn linear_to_alaw(s: i16) -> u8 {
    let mut v = s >> 3;
    let mask: u8 = if v >= 0 {
        0xD5
    } else {
        v = -v - 1;
        0x55
    };
    let seg = segment(v, &SEG_AEND);
    if seg >= 8 {
        return 0x7F ^ mask;
    }
    let mut a = (seg as u8) << 4;
    if seg < 2 {
        a |= ((v >> 1) & 0x0F) as u8;
    } else {
        a |= ((v >> seg) & 0x0F) as u8;
    }
    a ^ mask
}

/// Decodes µ-law bytes into `out` (the shorter length of the two is converted).
pub fn ulaw_decode(input: &[u8], out: &mut [i16]) {
    for (o, &i) in out.iter_mut().zip(input) {
        *o = ulaw_to_linear(i);
    }
}

/// Encodes linear samples into µ-law bytes (the shorter length of the two is converted).
pub fn ulaw_encode(input: &[i16], out: &mut [u8]) {
    for (o, &i) in out.iter_mut().zip(input) {
        *o = linear_to_ulaw(i);
    }
}

/// Decodes A-law bytes into `out` (the shorter length of the two is converted).
pub fn alaw_decode(input: &[u8], out: &mut [i16]) {
    for (o, &i) in out.iter_mut().zip(input) {
        *o = alaw_to_linear(i);
    }
}

/// Encodes linear samples into A-law bytes (the shorter length of the two is converted).
pub fn alaw_encode(input: &[i16], out: &mut [u8]) {
    for (o, &i) in out.iter_mut().zip(input) {
        *o = linear_to_alaw(i);
    }
}

/// Encodes then decodes every sample through µ-law in place (simulates a G.711 µ-law hop).
pub fn ulaw_round_trip(samples: &mut [i16]) {
    for s in samples {
        *s = ulaw_to_linear(linear_to_ulaw(*s));
    }
}

/// Encodes then decodes every sample through A-law in place (simulates a G.711 A-law hop).
pub fn alaw_round_trip(samples: &mut [i16]) {
    for s in samples {
        *s = alaw_to_linear(linear_to_alaw(*s));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// FNV-1a over the 256 decoded values, to compare whole tables with a reference run.
    fn fnv(vals: impl Iterator<Item = i16>) -> u64 {
        let mut h: u64 = 0xcbf29ce484222325;
        for v in vals {
            for b in v.to_le_bytes() {
                h ^= b as u64;
                h = h.wrapping_mul(0x100000001b3);
            }
        }
        h
    }

    #[test]
    fn ulaw_known_values() {
        assert_eq!(ulaw_to_linear(0xFF), 0);
        assert_eq!(ulaw_to_linear(0x7F), 0);
        assert_eq!(ulaw_to_linear(0x00), -32124);
        assert_eq!(ulaw_to_linear(0x80), 32124);
        assert_eq!(ulaw_to_linear(0xFE), 8);
        assert_eq!(ulaw_to_linear(0x7E), -8);
        assert_eq!(linear_to_ulaw(0), 0xFF);
        assert_eq!(linear_to_ulaw(-1), 0x7F);
        assert_eq!(linear_to_ulaw(i16::MAX), 0x80);
        assert_eq!(linear_to_ulaw(i16::MIN), 0x00);
        assert_eq!(linear_to_ulaw(1000), 0xCE);
        assert_eq!(linear_to_ulaw(-1000), 0x4E);
    }

    #[test]
    fn alaw_known_values() {
        assert_eq!(alaw_to_linear(0xD5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
        assert_eq!(alaw_to_linear(0xAA), 32256);
        assert_eq!(alaw_to_linear(0x2A), -32256);
        assert_eq!(linear_to_alaw(0), 0xD5);
        assert_eq!(linear_to_alaw(-1), 0x55);
        assert_eq!(linear_to_alaw(i16::MAX), 0xAA);
        assert_eq!(linear_to_alaw(i16::MIN), 0x2A);
        assert_eq!(linear_to_alaw(1000), 0xFA);
        assert_eq!(linear_to_alaw(-1000), 0x7A);
    }

    #[test]
    fn whole_tables_match_reference_checksums() {
        // Checksums of the 256-entry decode tables as produced by spandsp 0.0.6's g711.h
        // (Debian libspandsp-dev), computed once with a C program.
        assert_eq!(fnv((0..=255u8).map(ulaw_to_linear)), ULAW_FNV);
        assert_eq!(fnv((0..=255u8).map(alaw_to_linear)), ALAW_FNV);
        // Encode table, sampled over the whole 16-bit range.
        let enc_u = fnv((i16::MIN..=i16::MAX)
            .step_by(7)
            .map(|s| linear_to_ulaw(s) as i16));
        let enc_a = fnv((i16::MIN..=i16::MAX)
            .step_by(7)
            .map(|s| linear_to_alaw(s) as i16));
        assert_eq!(enc_u, ULAW_ENC_FNV);
        assert_eq!(enc_a, ALAW_ENC_FNV);
    }

    const ULAW_FNV: u64 = 0xb91e65d68481a1a8;
    const ALAW_FNV: u64 = 0x693a40ca62a3d2a5;
    const ULAW_ENC_FNV: u64 = 0xe517b9b82122a32b;
    const ALAW_ENC_FNV: u64 = 0x2124e1112890ec8c;

    #[test]
    fn round_trips_are_identity_on_codes() {
        for c in 0..=255u8 {
            if c != 0x7F {
                assert_eq!(linear_to_ulaw(ulaw_to_linear(c)), c, "ulaw {c:#x}");
            }
            assert_eq!(linear_to_alaw(alaw_to_linear(c)), c, "alaw {c:#x}");
        }
    }

    #[test]
    fn encoding_is_monotonic_and_error_bounded() {
        let mut prev_u = i16::MIN;
        let mut prev_a = i16::MIN;
        for s in i16::MIN..=i16::MAX {
            let u = ulaw_to_linear(linear_to_ulaw(s));
            let a = alaw_to_linear(linear_to_alaw(s));
            assert!(u >= prev_u && a >= prev_a, "non-monotonic at {s}");
            prev_u = u;
            prev_a = a;
            // Quantisation error is at most half a step of the segment (step <= 1024 / 2048).
            let eu = (u as i32 - s as i32).abs();
            let ea = (a as i32 - s as i32).abs();
            assert!(eu <= 1024 + 643, "ulaw error {eu} at {s}");
            assert!(ea <= 512 + 511, "alaw error {ea} at {s}");
            if (s as i32).abs() < 1000 {
                assert!(eu <= 64 && ea <= 64, "small-signal error at {s}: {eu} {ea}");
            }
        }
    }
}
