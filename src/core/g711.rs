//! G.711 µ-law / A-law conversion helpers (the PBX often hands us G.711).
//!
//! API CONTRACT (skeleton; the DSP work fills in the implementation).

pub fn ulaw_to_linear(_u: u8) -> i16 {
    0
}

pub fn linear_to_ulaw(_s: i16) -> u8 {
    0xFF
}

pub fn alaw_to_linear(_a: u8) -> i16 {
    0
}

pub fn linear_to_alaw(_s: i16) -> u8 {
    0xD5
}
