//! The one type that holds captured card digits. Fixed capacity in one heap box that never moves
//! (moving a `SecretDigits` — `Option::take`, `mem::take`, into a `PaymentRequest`, across a
//! queue — moves only the pointer, so no stale copy of the digits is left in the old place),
//! wiped with `zeroize` on drop and on [`SecretDigits::clear`], and deliberately without
//! `Debug`, `Display`, `Clone` or `Serialize`: the only ways out are [`SecretDigits::expose`]
//! (for validation and the payment hand-off) and the masking functions of the capture engine.

use zeroize::Zeroize;

/// Longest field we ever hold (a 19-digit PAN is the longest card field).
pub const MAX_SECRET_DIGITS: usize = 32;

/// Captured key presses of one field. Only ASCII `0-9` are stored.
pub struct SecretDigits {
    buf: Box<[u8; MAX_SECRET_DIGITS]>,
    len: usize,
}

impl SecretDigits {
    pub fn new() -> Self {
        Self {
            buf: Box::new([0; MAX_SECRET_DIGITS]),
            len: 0,
        }
    }

    /// Appends one decimal digit (`b'0'..=b'9'`). Returns false (and stores nothing) when full
    /// or when `c` is not a decimal digit.
    pub fn push(&mut self, c: u8) -> bool {
        if !c.is_ascii_digit() || self.len == MAX_SECRET_DIGITS {
            return false;
        }
        self.buf[self.len] = c;
        self.len += 1;
        true
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The digits as ASCII. Callers must not copy them anywhere that outlives the hand-off.
    pub fn expose(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Wipes the digits (all `MAX_SECRET_DIGITS` bytes, not only the used ones).
    pub fn clear(&mut self) {
        self.buf.as_mut_slice().zeroize();
        self.len = 0;
    }
}

impl Default for SecretDigits {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for SecretDigits {
    fn drop(&mut self) {
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_clear_and_capacity() {
        let mut s = SecretDigits::new();
        assert!(s.push(b'4'));
        assert!(!s.push(b'*'));
        assert_eq!(s.expose(), b"4");
        for _ in 0..MAX_SECRET_DIGITS {
            s.push(b'1');
        }
        assert_eq!(s.len(), MAX_SECRET_DIGITS);
        assert!(!s.push(b'1'));
        s.clear();
        assert!(s.is_empty());
        assert_eq!(*s.buf, [0; MAX_SECRET_DIGITS]);
    }

    #[test]
    fn a_move_leaves_the_digits_in_place() {
        let mut s = SecretDigits::new();
        s.push(b'9');
        let at = s.buf.as_ptr();
        let moved = std::mem::take(&mut s);
        assert_eq!(moved.buf.as_ptr(), at, "the digits did not move");
        assert_eq!(moved.expose(), b"9");
        assert!(s.is_empty());
    }
}
