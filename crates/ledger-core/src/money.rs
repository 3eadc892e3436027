//! Exact money: a signed number of pico-dollars (10^-12 USD) in an `i128`.
//!
//! Matches ClickHouse `Decimal(38, 12)` bit for bit, so rows carry the raw `i128`.
//! Arithmetic is checked: an overflow is an error, never a wrap.

use std::fmt;
use std::str::FromStr;

/// Number of fractional decimal digits of a [`Money`] value.
pub const SCALE: u32 = 12;
/// Pico-dollars per dollar.
pub const PICOS_PER_USD: i128 = 1_000_000_000_000;

/// An exact amount of US dollars, stored as pico-dollars.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Money(i128);

/// Arithmetic on [`Money`] left the range of `i128` pico-dollars.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("money arithmetic overflowed")]
pub struct MoneyOverflow;

impl Money {
    /// Zero dollars.
    pub const ZERO: Money = Money(0);

    /// Builds an amount from pico-dollars.
    pub const fn from_picos(picos: i128) -> Self {
        Money(picos)
    }

    /// The amount in pico-dollars (the `Decimal(38, 12)` raw value).
    pub const fn picos(self) -> i128 {
        self.0
    }

    /// Whole dollars, for convenience in tests and examples.
    pub const fn from_usd(usd: i64) -> Self {
        Money(usd as i128 * PICOS_PER_USD)
    }

    /// `self + other`, or an error on overflow.
    pub fn checked_add(self, other: Money) -> Result<Money, MoneyOverflow> {
        self.0.checked_add(other.0).map(Money).ok_or(MoneyOverflow)
    }

    /// `self - other`, or an error on overflow.
    pub fn checked_sub(self, other: Money) -> Result<Money, MoneyOverflow> {
        self.0.checked_sub(other.0).map(Money).ok_or(MoneyOverflow)
    }

    /// A per-unit price times a count of units (tokens), or an error on overflow.
    pub fn checked_mul_count(self, count: u64) -> Result<Money, MoneyOverflow> {
        self.0.checked_mul(i128::from(count)).map(Money).ok_or(MoneyOverflow)
    }

    /// True when the amount is below zero.
    pub const fn is_negative(self) -> bool {
        self.0 < 0
    }

    /// Rounds half-to-even to `digits` fractional digits (`digits <= 12`), e.g. cents with 2.
    pub fn round_to(self, digits: u32) -> Money {
        let digits = digits.min(SCALE);
        let unit = 10i128.pow(SCALE - digits);
        let q = self.0.div_euclid(unit);
        let r = self.0.rem_euclid(unit);
        let twice = r * 2;
        let q = if twice > unit || (twice == unit && q % 2 != 0) { q + 1 } else { q };
        Money(q * unit)
    }

    /// Sums an iterator of amounts, or errors on overflow.
    pub fn checked_sum<I: IntoIterator<Item = Money>>(iter: I) -> Result<Money, MoneyOverflow> {
        iter.into_iter().try_fold(Money::ZERO, Money::checked_add)
    }
}

/// `a * b / c` rounded half to even, exactly (a 256-bit product when `a * b` leaves `u128`), for
/// `c` in `1..2^127`; `None` when `c` is out of that range or the result does not fit a `u128`.
/// Used where a price is scaled by an exact ratio: the service-tier ratio of docs/pricing.md
/// (formula step 1.3) and a price override's multiplier.
pub fn mul_div_half_even(a: u128, b: u128, c: u128) -> Option<u128> {
    if c == 0 || c >= 1 << 127 {
        return None;
    }
    let (q, r) = match a.checked_mul(b) {
        Some(p) => (p / c, p % c),
        None => {
            let (hi, lo) = mul_wide(a, b);
            if hi >= c {
                return None;
            }
            // Long division of hi:lo by c, one bit at a time; rem < c < 2^127, so rem << 1 fits.
            let (mut rem, mut q) = (hi, 0u128);
            for i in (0..128).rev() {
                rem = (rem << 1) | ((lo >> i) & 1);
                q <<= 1;
                if rem >= c {
                    rem -= c;
                    q |= 1;
                }
            }
            (q, rem)
        }
    };
    let twice = r * 2;
    if twice > c || (twice == c && q % 2 == 1) {
        q.checked_add(1)
    } else {
        Some(q)
    }
}

/// The 256-bit product of two `u128`s as `(high, low)` halves.
fn mul_wide(a: u128, b: u128) -> (u128, u128) {
    const MASK: u128 = u64::MAX as u128;
    let (a1, a0, b1, b0) = (a >> 64, a & MASK, b >> 64, b & MASK);
    let (p00, p01, p10, p11) = (a0 * b0, a0 * b1, a1 * b0, a1 * b1);
    let mid = (p00 >> 64) + (p01 & MASK) + (p10 & MASK);
    let lo = (p00 & MASK) | (mid << 64);
    let hi = p11 + (p01 >> 64) + (p10 >> 64) + (mid >> 64);
    (hi, lo)
}

impl fmt::Display for Money {
    /// Always 12 fractional digits: `"0.000002500000"`. Exact and re-parseable.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let whole = abs / PICOS_PER_USD as u128;
        let frac = abs % PICOS_PER_USD as u128;
        write!(f, "{sign}{whole}.{frac:012}")
    }
}

/// Why a money string could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseMoneyError {
    /// Not a plain decimal number.
    #[error("not a decimal number: {0:?}")]
    Syntax(String),
    /// More than 12 fractional digits that are not zero: the amount is not exact in pico-dollars.
    #[error("more than 12 fractional digits: {0:?}")]
    TooPrecise(String),
    /// Out of the `Decimal(38, 12)` range.
    #[error("out of range: {0:?}")]
    Overflow(String),
}

impl FromStr for Money {
    type Err = ParseMoneyError;

    /// Parses a plain decimal (`"12"`, `"-0.5"`, `"0.000000000001"`) exactly.
    /// Exponents are accepted too (`"2.5e-06"`), but the value must be exact in pico-dollars.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let d = crate::decimal::Decimal::parse(s).map_err(|_| ParseMoneyError::Syntax(s.to_owned()))?;
        match d.to_scale_exact(SCALE) {
            Some(Ok(v)) => Ok(Money(v)),
            Some(Err(())) => Err(ParseMoneyError::Overflow(s.to_owned())),
            None => Err(ParseMoneyError::TooPrecise(s.to_owned())),
        }
    }
}

impl serde::Serialize for Money {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Money {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_exact_with_twelve_digits() {
        assert_eq!(Money::from_picos(2_500_000).to_string(), "0.000002500000");
        assert_eq!(Money::from_picos(-1).to_string(), "-0.000000000001");
        assert_eq!(Money::from_usd(3).to_string(), "3.000000000000");
    }

    #[test]
    fn parse_round_trips() {
        for s in ["0.000002500000", "-12.5", "0", "123456789.000000000001"] {
            let m: Money = s.parse().unwrap();
            assert_eq!(m.to_string().parse::<Money>().unwrap(), m);
        }
        assert_eq!("2.5e-06".parse::<Money>().unwrap(), Money::from_picos(2_500_000));
        assert!("0.0000000000001".parse::<Money>().is_err());
        assert!("abc".parse::<Money>().is_err());
    }

    #[test]
    fn round_half_even() {
        let m: Money = "0.125".parse().unwrap();
        assert_eq!(m.round_to(2).to_string(), "0.120000000000");
        let m: Money = "0.135".parse().unwrap();
        assert_eq!(m.round_to(2).to_string(), "0.140000000000");
        let m: Money = "-0.135".parse().unwrap();
        assert_eq!(m.round_to(2).to_string(), "-0.140000000000");
    }

    #[test]
    fn mul_div_is_exact_and_rounds_half_to_even() {
        // 6e-6 $/token times 1.5e-6/3e-6 (a batch ratio): exactly 3e-6
        assert_eq!(mul_div_half_even(6_000_000, 1_500_000, 3_000_000), Some(3_000_000));
        // 1 * 1 / 3 rounds down, 2 * 1 / 3 rounds up; ties go to even
        assert_eq!(mul_div_half_even(1, 1, 3), Some(0));
        assert_eq!(mul_div_half_even(2, 1, 3), Some(1));
        assert_eq!(mul_div_half_even(5, 1, 2), Some(2));
        assert_eq!(mul_div_half_even(7, 1, 2), Some(4));
        // a product beyond u128: (2^100 * 3^40) / 3^40 = 2^100, and a remainder half way
        let three40 = 3u128.pow(40);
        assert_eq!(mul_div_half_even(1 << 100, three40, three40), Some(1 << 100));
        assert_eq!(mul_div_half_even(u128::MAX, 3, 6), Some(u128::MAX / 2 + 1));
        assert_eq!(mul_div_half_even(u128::MAX, 2, 1), None);
        assert_eq!(mul_div_half_even(1, 1, 0), None);
    }

    #[test]
    fn overflow_is_an_error() {
        assert!(Money::from_picos(i128::MAX).checked_add(Money::from_picos(1)).is_err());
        assert!(Money::from_picos(i128::MAX / 2).checked_mul_count(3).is_err());
    }
}
