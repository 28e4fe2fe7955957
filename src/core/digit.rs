//! One DTMF key. Deliberately has no `Debug`/`Display`: a digit must never end up in a log line
//! by accident. Use [`Digit::as_char`] where a character is really needed (capture, tests).

/// A DTMF key: 0-9, `*`, `#`, A-D.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digit(u8);

impl Digit {
    /// All 16 keys in keypad order of the DTMF matrix rows (1 2 3 A / 4 5 6 B / 7 8 9 C / * 0 # D).
    pub const ALL: [char; 16] = [
        '1', '2', '3', 'A', '4', '5', '6', 'B', '7', '8', '9', 'C', '*', '0', '#', 'D',
    ];

    /// Parses a key; lower-case a-d are accepted.
    pub fn from_char(c: char) -> Option<Self> {
        let c = c.to_ascii_uppercase();
        if c.is_ascii_digit() || matches!(c, '*' | '#' | 'A' | 'B' | 'C' | 'D') {
            Some(Digit(c as u8))
        } else {
            None
        }
    }

    /// The key as an ASCII character.
    pub fn as_char(self) -> char {
        self.0 as char
    }

    /// Row (0..4, low group 697/770/852/941 Hz) and column (0..4, high group
    /// 1209/1336/1477/1633 Hz) of the key in the DTMF matrix.
    pub fn matrix_pos(self) -> (usize, usize) {
        let i = Self::ALL
            .iter()
            .position(|&c| c == self.as_char())
            .unwrap_or(0);
        (i / 4, i % 4)
    }

    /// The key at a matrix position.
    pub fn from_matrix(row: usize, col: usize) -> Option<Self> {
        Self::ALL
            .get(row.checked_mul(4)?.checked_add(col)?)
            .and_then(|&c| Self::from_char(c))
            .filter(|_| col < 4)
    }

    /// Numeric value for 0-9, `None` for the other keys.
    pub fn decimal(self) -> Option<u8> {
        self.as_char().to_digit(10).map(|d| d as u8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_round_trip() {
        for c in Digit::ALL {
            let d = Digit::from_char(c).unwrap();
            let (r, col) = d.matrix_pos();
            assert_eq!(Digit::from_matrix(r, col).unwrap().as_char(), c);
        }
        assert!(Digit::from_char('x').is_none());
        assert_eq!(Digit::from_char('b').unwrap().as_char(), 'B');
        assert!(Digit::from_matrix(0, 4).is_none());
    }
}
