//! Card brands (IIN ranges), lengths per brand, security-code length per brand and the Luhn
//! check. Pure functions over ASCII digit slices; nothing here stores or prints a digit.
//!
//! Brand detection works on the first six digits (the IIN/BIN space). A prefix shorter than six
//! digits is *known* only when every possible completion of it maps to the same brand (e.g. `4`
//! is always Visa, `3` may be Amex, Diners or JCB, `62` may be UnionPay or Discover).

/// A card brand. Names follow Twilio `validCardTypes` where Twilio has one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Brand {
    Visa,
    Mastercard,
    Amex,
    Discover,
    Jcb,
    Diners,
    UnionPay,
    Maestro,
}

impl Brand {
    pub const ALL: [Brand; 8] = [
        Brand::Visa,
        Brand::Mastercard,
        Brand::Amex,
        Brand::Discover,
        Brand::Jcb,
        Brand::Diners,
        Brand::UnionPay,
        Brand::Maestro,
    ];

    /// Config/event name: `visa`, `mastercard`, `amex`, `discover`, `jcb`, `diners-club`,
    /// `unionpay`, `maestro`.
    pub fn name(self) -> &'static str {
        match self {
            Brand::Visa => "visa",
            Brand::Mastercard => "mastercard",
            Brand::Amex => "amex",
            Brand::Discover => "discover",
            Brand::Jcb => "jcb",
            Brand::Diners => "diners-club",
            Brand::UnionPay => "unionpay",
            Brand::Maestro => "maestro",
        }
    }

    /// Parses a brand name (case-insensitive; `diners` and `union-pay` accepted as aliases).
    pub fn from_name(s: &str) -> Option<Brand> {
        let s = s.trim().to_ascii_lowercase();
        Some(match s.as_str() {
            "visa" => Brand::Visa,
            "mastercard" | "master-card" => Brand::Mastercard,
            "amex" | "american-express" => Brand::Amex,
            "discover" => Brand::Discover,
            "jcb" => Brand::Jcb,
            "diners-club" | "diners" | "dinersclub" => Brand::Diners,
            "unionpay" | "union-pay" | "cup" => Brand::UnionPay,
            "maestro" => Brand::Maestro,
            _ => return None,
        })
    }

    /// Valid card-number lengths for the brand.
    pub fn lengths(self) -> std::ops::RangeInclusive<usize> {
        match self {
            Brand::Visa => 13..=19,
            Brand::Mastercard => 16..=16,
            Brand::Amex => 15..=15,
            Brand::Discover | Brand::Jcb | Brand::UnionPay => 16..=19,
            Brand::Diners => 14..=19,
            Brand::Maestro => 12..=19,
        }
    }

    /// True when `len` is a valid card-number length for the brand (Visa: 13, 16 or 19 only).
    pub fn valid_length(self, len: usize) -> bool {
        match self {
            Brand::Visa => matches!(len, 13 | 16 | 19),
            b => b.lengths().contains(&len),
        }
    }

    /// The longest valid length: the field auto-advances when it is reached.
    pub fn max_length(self) -> usize {
        *self.lengths().end()
    }

    /// Security-code length: 4 for Amex (CID), 3 for every other brand.
    pub fn security_code_length(self) -> usize {
        if self == Brand::Amex {
            4
        } else {
            3
        }
    }
}

/// One IIN range: `lo..=hi` over the first `digits` digits of the number.
struct Range {
    lo: u32,
    hi: u32,
    digits: u32,
    brand: Brand,
}

const fn r(lo: u32, hi: u32, digits: u32, brand: Brand) -> Range {
    Range {
        lo,
        hi,
        digits,
        brand,
    }
}

/// IIN table, most specific first: the first range that contains a number wins.
const RANGES: &[Range] = &[
    // Discover-network range inside UnionPay's 62 (must precede 62).
    r(622126, 622925, 6, Brand::Discover),
    r(34, 34, 2, Brand::Amex),
    r(37, 37, 2, Brand::Amex),
    r(300, 305, 3, Brand::Diners),
    r(3095, 3095, 4, Brand::Diners),
    r(36, 36, 2, Brand::Diners),
    r(38, 39, 2, Brand::Diners),
    r(3528, 3589, 4, Brand::Jcb),
    r(51, 55, 2, Brand::Mastercard),
    r(2221, 2720, 4, Brand::Mastercard),
    r(6011, 6011, 4, Brand::Discover),
    r(644, 649, 3, Brand::Discover),
    r(65, 65, 2, Brand::Discover),
    r(62, 62, 2, Brand::UnionPay),
    r(5018, 5018, 4, Brand::Maestro),
    r(5020, 5020, 4, Brand::Maestro),
    r(5038, 5038, 4, Brand::Maestro),
    r(56, 58, 2, Brand::Maestro),
    r(6304, 6304, 4, Brand::Maestro),
    r(6759, 6759, 4, Brand::Maestro),
    r(6761, 6763, 4, Brand::Maestro),
    r(4, 4, 1, Brand::Visa),
];

/// Digits of the issuer prefix (IIN) that decide the brand.
pub const IIN_DIGITS: u32 = 6;

fn scale(d: u32) -> u32 {
    10u32.pow(IIN_DIGITS.saturating_sub(d))
}

/// Brand of a six-digit IIN value.
fn brand_at(iin6: u32) -> Option<Brand> {
    RANGES
        .iter()
        .find(|rg| {
            let s = scale(rg.digits);
            iin6 >= rg.lo * s && iin6 <= rg.hi * s + (s - 1)
        })
        .map(|rg| rg.brand)
}

/// What the digits typed so far say about the brand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BrandGuess {
    /// Every completion of the prefix is this brand.
    Known(Brand),
    /// No completion of the prefix is any supported brand.
    Unknown,
    /// More digits are needed.
    Pending,
}

/// Brand guess for a prefix of ASCII digits (non-digits make it `Unknown`).
pub fn guess_brand(prefix: &[u8]) -> BrandGuess {
    if prefix.is_empty() {
        return BrandGuess::Pending;
    }
    let k = prefix.len().min(IIN_DIGITS as usize);
    let mut p: u32 = 0;
    for &c in &prefix[..k] {
        if !c.is_ascii_digit() {
            return BrandGuess::Unknown;
        }
        p = p * 10 + u32::from(c - b'0');
    }
    let s = scale(k as u32);
    let lo = p * s;
    let hi = lo + (s - 1);
    let first = brand_at(lo);
    // The brand function is piecewise constant; it can only change at a range boundary.
    for rg in RANGES {
        let rs = scale(rg.digits);
        for b in [rg.lo * rs, rg.hi * rs + rs] {
            if b > lo && b <= hi && brand_at(b) != first {
                return BrandGuess::Pending;
            }
        }
    }
    match first {
        Some(b) => BrandGuess::Known(b),
        None => BrandGuess::Unknown,
    }
}

/// Brand of a complete number (at least six digits), `None` if unsupported.
pub fn brand_of(number: &[u8]) -> Option<Brand> {
    if number.len() < IIN_DIGITS as usize {
        return None;
    }
    match guess_brand(number) {
        BrandGuess::Known(b) => Some(b),
        _ => None,
    }
}

/// Luhn (mod 10) check over ASCII digits. False for empty input or any non-digit.
pub fn luhn_valid(number: &[u8]) -> bool {
    if number.is_empty() {
        return false;
    }
    let mut sum = 0u32;
    for (i, &c) in number.iter().rev().enumerate() {
        if !c.is_ascii_digit() {
            return false;
        }
        let mut d = u32::from(c - b'0');
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    sum % 10 == 0
}

/// The Luhn check digit (ASCII) that makes `body` + digit valid (test data, demos).
pub fn luhn_check_digit(body: &[u8]) -> u8 {
    let mut sum = 0u32;
    for (i, &c) in body.iter().rev().enumerate() {
        let mut d = u32::from(c.wrapping_sub(b'0') % 10);
        if i % 2 == 0 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    b'0' + ((10 - sum % 10) % 10) as u8
}

/// Why a card number is refused (Twilio error types).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CardError {
    /// Wrong length for the brand, or Luhn failure: `invalid-card-number`.
    Number,
    /// Unsupported or not allowed brand: `invalid-card-type`.
    Type,
}

/// Full card-number validation: length 12..=19, brand known and in `allowed`, length valid for
/// the brand, Luhn.
pub fn validate_card(number: &[u8], allowed: &[Brand]) -> Result<Brand, CardError> {
    if !(12..=19).contains(&number.len()) || !number.iter().all(u8::is_ascii_digit) {
        return Err(CardError::Number);
    }
    let brand = brand_of(number).ok_or(CardError::Type)?;
    if !allowed.contains(&brand) {
        return Err(CardError::Type);
    }
    if !brand.valid_length(number.len()) || !luhn_valid(number) {
        return Err(CardError::Number);
    }
    Ok(brand)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn prefix_guesses() {
        assert_eq!(guess_brand(b"4"), BrandGuess::Known(Brand::Visa));
        assert_eq!(guess_brand(b"3"), BrandGuess::Pending);
        assert_eq!(guess_brand(b"34"), BrandGuess::Known(Brand::Amex));
        assert_eq!(guess_brand(b"62"), BrandGuess::Pending);
        assert_eq!(guess_brand(b"623"), BrandGuess::Known(Brand::UnionPay));
        assert_eq!(guess_brand(b"6221"), BrandGuess::Pending);
        assert_eq!(guess_brand(b"622126"), BrandGuess::Known(Brand::Discover));
        assert_eq!(guess_brand(b"622125"), BrandGuess::Known(Brand::UnionPay));
        assert_eq!(guess_brand(b"9"), BrandGuess::Unknown);
        assert_eq!(guess_brand(b"1"), BrandGuess::Unknown);
        assert_eq!(guess_brand(b"2"), BrandGuess::Pending);
        assert_eq!(guess_brand(b"27"), BrandGuess::Pending);
        assert_eq!(guess_brand(b"272"), BrandGuess::Pending);
        assert_eq!(guess_brand(b"2720"), BrandGuess::Known(Brand::Mastercard));
        assert_eq!(guess_brand(b"2721"), BrandGuess::Unknown);
        assert_eq!(guess_brand(b""), BrandGuess::Pending);
    }

    #[test]
    fn luhn() {
        assert!(luhn_valid(b"4242424242424242"));
        assert!(!luhn_valid(b"4242424242424241"));
        assert!(!luhn_valid(b""));
        assert!(!luhn_valid(b"42x2"));
    }
}
