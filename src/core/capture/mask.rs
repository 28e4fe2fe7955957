//! Display (masking) rules, applied in the core before anything becomes an event.
//!
//! - While typing: one mask character per digit, nothing else (no digit, ever).
//! - A card number is shown only once it is complete and VALID, as `pan_display` allows:
//!   `last4` (default, `************4242`), `first6last4` (`424242******4242`, only for numbers
//!   of 14+ digits so at least four middle digits stay hidden; shorter ones fall back to last 4)
//!   or `none` (mask characters only).
//! - The security code is never shown in any form (no per-digit event, no length, no mask).
//! - Expiry, postal code and generic fields are shown (in clear, complete and valid only) only
//!   when configured.

use crate::core::events::Masked;

/// The mask character.
pub const MASK_CHAR: char = '*';

/// How much of a valid card number the agent may see.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PanDisplay {
    /// Last four digits (default; PCI "minimum necessary").
    #[default]
    Last4,
    /// BIN (first six) and last four; numbers under 14 digits show the last four only.
    First6Last4,
    /// Mask characters only.
    None,
}

impl PanDisplay {
    pub fn name(self) -> &'static str {
        match self {
            PanDisplay::Last4 => "last4",
            PanDisplay::First6Last4 => "first6last4",
            PanDisplay::None => "none",
        }
    }

    /// The most card-number digits this rule can ever reveal.
    pub fn max_revealed(self) -> usize {
        match self {
            PanDisplay::Last4 => 4,
            PanDisplay::First6Last4 => 10,
            PanDisplay::None => 0,
        }
    }
}

/// `n` mask characters (capped at the `Masked` capacity).
pub fn stars(n: usize) -> Masked {
    let mut m = Masked::new();
    for _ in 0..n.min(m.capacity()) {
        let _ = m.try_push(MASK_CHAR);
    }
    m
}

/// Display form of a complete, valid card number.
pub fn mask_pan(pan: &[u8], display: PanDisplay) -> Masked {
    let len = pan.len();
    let (head, tail) = match display {
        PanDisplay::None => (0, 0),
        PanDisplay::Last4 if len >= 12 => (0, 4),
        PanDisplay::First6Last4 if len >= 14 => (6, 4),
        PanDisplay::First6Last4 if len >= 12 => (0, 4),
        _ => (0, 0),
    };
    let mut m = Masked::new();
    for (i, &c) in pan.iter().enumerate() {
        let show = i < head || i >= len - tail;
        let ch = if show && c.is_ascii_digit() {
            c as char
        } else {
            MASK_CHAR
        };
        let _ = m.try_push(ch);
    }
    m
}

/// Clear display of a non-card field (expiry, postal code, generic) when configured.
pub fn clear_value(digits: &[u8]) -> Masked {
    let mut m = Masked::new();
    for &c in digits {
        if c.is_ascii_digit() {
            let _ = m.try_push(c as char);
        }
    }
    m
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn pan_rules() {
        let pan = b"4242424242424242";
        assert_eq!(
            mask_pan(pan, PanDisplay::Last4).as_str(),
            "************4242"
        );
        assert_eq!(
            mask_pan(pan, PanDisplay::First6Last4).as_str(),
            "424242******4242"
        );
        assert_eq!(mask_pan(pan, PanDisplay::None).as_str(), "****************");
        // 12-digit Maestro: first6last4 would show 10 of 12 digits; last 4 only.
        assert_eq!(
            mask_pan(b"501800000009", PanDisplay::First6Last4).as_str(),
            "********0009"
        );
        assert_eq!(stars(3).as_str(), "***");
    }
}
