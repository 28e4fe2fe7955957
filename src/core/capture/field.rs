//! Field kinds, the ordered field list, Twilio-style error types and the per-field rules
//! (lengths, auto-advance, expiry dates). Pure functions; nothing stores or prints a digit.

use arrayvec::{ArrayString, ArrayVec};

/// A capturable field. Names are Twilio's `Capture` values plus two generic numeric fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FieldKind {
    CardNumber,
    ExpirationDate,
    SecurityCode,
    PostalCode,
    /// Generic numeric reference (order/invoice number); not card data.
    Reference,
    /// Amount in minor units (cents); not card data.
    Amount,
}

impl FieldKind {
    pub const ALL: [FieldKind; 6] = [
        FieldKind::CardNumber,
        FieldKind::ExpirationDate,
        FieldKind::SecurityCode,
        FieldKind::PostalCode,
        FieldKind::Reference,
        FieldKind::Amount,
    ];

    /// `payment-card-number`, `expiration-date`, `security-code`, `postal-code`, `reference`,
    /// `amount`.
    pub fn name(self) -> &'static str {
        match self {
            FieldKind::CardNumber => "payment-card-number",
            FieldKind::ExpirationDate => "expiration-date",
            FieldKind::SecurityCode => "security-code",
            FieldKind::PostalCode => "postal-code",
            FieldKind::Reference => "reference",
            FieldKind::Amount => "amount",
        }
    }

    /// Parses a field name, case-insensitive; short aliases accepted: `card`, `card-number`,
    /// `pan`, `expiry`, `exp`, `cvv`, `cvc`, `cvv2`, `postal`, `zip`, `postcode`, `ref`.
    pub fn from_name(s: &str) -> Option<FieldKind> {
        let s = s.trim().to_ascii_lowercase();
        Some(match s.as_str() {
            "payment-card-number" | "card" | "card-number" | "pan" => FieldKind::CardNumber,
            "expiration-date" | "expiry" | "exp" | "expiry-date" => FieldKind::ExpirationDate,
            "security-code" | "cvv" | "cvc" | "cvv2" | "cid" => FieldKind::SecurityCode,
            "postal-code" | "postal" | "zip" | "postcode" => FieldKind::PostalCode,
            "reference" | "ref" => FieldKind::Reference,
            "amount" => FieldKind::Amount,
            _ => return None,
        })
    }

    pub(crate) fn index(self) -> usize {
        match self {
            FieldKind::CardNumber => 0,
            FieldKind::ExpirationDate => 1,
            FieldKind::SecurityCode => 2,
            FieldKind::PostalCode => 3,
            FieldKind::Reference => 4,
            FieldKind::Amount => 5,
        }
    }

    /// The comma-separated list of every field name (for error messages).
    pub fn all_names() -> &'static str {
        "payment-card-number, expiration-date, security-code, postal-code, reference, amount"
    }
}

/// An ordered list of distinct fields (at most one of each kind).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldList(ArrayVec<FieldKind, 6>);

impl FieldList {
    pub fn new() -> Self {
        Self(ArrayVec::new())
    }

    /// Appends `f` unless already present. Returns false if it was present.
    pub fn push(&mut self, f: FieldKind) -> bool {
        if self.0.contains(&f) {
            return false;
        }
        // Capacity equals the number of kinds, so this cannot overflow.
        self.0.try_push(f).is_ok()
    }

    pub fn contains(&self, f: FieldKind) -> bool {
        self.0.contains(&f)
    }

    pub fn iter(&self) -> impl Iterator<Item = FieldKind> + '_ {
        self.0.iter().copied()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Comma-separated names, no spaces (`payment-card-number,expiration-date`); empty when
    /// the list is empty.
    pub fn to_header(&self) -> ArrayString<96> {
        let mut s = ArrayString::new();
        for (i, f) in self.0.iter().enumerate() {
            if i > 0 {
                let _ = s.try_push(',');
            }
            let _ = s.try_push_str(f.name());
        }
        s
    }
}

impl FromIterator<FieldKind> for FieldList {
    fn from_iter<I: IntoIterator<Item = FieldKind>>(iter: I) -> Self {
        let mut l = FieldList::new();
        for f in iter {
            l.push(f);
        }
        l
    }
}

/// Why a field was refused: Twilio's `ErrorType` values, plus `invalid-reference` and
/// `invalid-amount` for the generic fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorType {
    InvalidCardNumber,
    InvalidCardType,
    InvalidDate,
    InvalidSecurityCode,
    InvalidPostalCode,
    InvalidReference,
    InvalidAmount,
    InputTimeout,
}

impl ErrorType {
    pub fn name(self) -> &'static str {
        match self {
            ErrorType::InvalidCardNumber => "invalid-card-number",
            ErrorType::InvalidCardType => "invalid-card-type",
            ErrorType::InvalidDate => "invalid-date",
            ErrorType::InvalidSecurityCode => "invalid-security-code",
            ErrorType::InvalidPostalCode => "invalid-postal-code",
            ErrorType::InvalidReference => "invalid-reference",
            ErrorType::InvalidAmount => "invalid-amount",
            ErrorType::InputTimeout => "input-timeout",
        }
    }

    /// The error type a wrong value of `f` gets.
    pub fn for_field(f: FieldKind) -> ErrorType {
        match f {
            FieldKind::CardNumber => ErrorType::InvalidCardNumber,
            FieldKind::ExpirationDate => ErrorType::InvalidDate,
            FieldKind::SecurityCode => ErrorType::InvalidSecurityCode,
            FieldKind::PostalCode => ErrorType::InvalidPostalCode,
            FieldKind::Reference => ErrorType::InvalidReference,
            FieldKind::Amount => ErrorType::InvalidAmount,
        }
    }
}

/// A calendar month (UTC), used for expiry checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct YearMonth {
    pub year: u32,
    /// 1..=12
    pub month: u32,
}

impl YearMonth {
    /// The UTC calendar month of a Unix time in milliseconds.
    pub fn from_unix_ms(ms: u64) -> YearMonth {
        // Howard Hinnant's civil_from_days, for days since 1970-01-01 (non-negative here).
        let z = (ms / 86_400_000) as i64 + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let y = yoe + era * 400;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = if m <= 2 { y + 1 } else { y };
        YearMonth {
            year: y.max(0) as u32,
            month: m as u32,
        }
    }

    fn ordinal(self) -> u64 {
        u64::from(self.year) * 12 + u64::from(self.month.saturating_sub(1))
    }
}

/// Validates an `MMYY` expiry against `today`: month 01-12, not before the current month (the
/// current month is valid: cards expire at its end), and at most `max_years_ahead` years ahead.
/// Two-digit years map to the century that puts them nearest `today` (within 50 years back).
pub fn validate_expiry(mmyy: &[u8], today: YearMonth, max_years_ahead: u32) -> bool {
    if mmyy.len() != 4 || !mmyy.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let month = u32::from(mmyy[0] - b'0') * 10 + u32::from(mmyy[1] - b'0');
    let yy = u32::from(mmyy[2] - b'0') * 10 + u32::from(mmyy[3] - b'0');
    if !(1..=12).contains(&month) {
        return false;
    }
    let mut year = today.year / 100 * 100 + yy;
    if year + 50 < today.year {
        year += 100;
    }
    let exp = YearMonth { year, month };
    exp >= today && exp.ordinal() <= today.ordinal() + 12 * u64::from(max_years_ahead)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(
            YearMonth::from_unix_ms(0),
            YearMonth {
                year: 1970,
                month: 1
            }
        );
        // 2026-11-27T04:28:37Z
        assert_eq!(
            YearMonth::from_unix_ms(1_795_753_717_000),
            YearMonth {
                year: 2026,
                month: 11
            }
        );
        // 2024-02-29T12:00:00Z
        assert_eq!(
            YearMonth::from_unix_ms(1_709_208_000_000),
            YearMonth {
                year: 2024,
                month: 2
            }
        );
        // 2000-03-01T00:00:00Z
        assert_eq!(
            YearMonth::from_unix_ms(951_868_800_000),
            YearMonth {
                year: 2000,
                month: 3
            }
        );
    }

    #[test]
    fn field_list_header() {
        let l: FieldList = [
            FieldKind::CardNumber,
            FieldKind::SecurityCode,
            FieldKind::CardNumber,
        ]
        .into_iter()
        .collect();
        assert_eq!(l.len(), 2);
        assert_eq!(l.to_header().as_str(), "payment-card-number,security-code");
        assert_eq!(FieldList::new().to_header().as_str(), "");
    }
}
