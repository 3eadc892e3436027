//! Exact decimal numbers read from their text, never through a float.
//!
//! Catalog prices arrive as JSON number text such as `2.5e-06` or `2.0000000000000002E-7`.
//! [`Decimal::parse`] keeps every digit; [`Decimal::to_scale_half_even`] then rounds to a
//! fixed number of fractional digits (12 for pico-dollars) and says whether it had to.

use std::fmt;

/// A decimal number `(-1)^negative * digits * 10^exponent`, with all its digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decimal {
    negative: bool,
    /// Significant digits, most significant first, without leading zeros (empty for zero).
    digits: Vec<u8>,
    exponent: i64,
}

/// The text is not a decimal number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a decimal number: {0:?}")]
pub struct DecimalSyntaxError(pub String);

/// The value does not fit an `i128` at the requested scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("decimal value out of range")]
pub struct DecimalOverflow;

/// A value scaled to a fixed number of fractional digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scaled {
    /// The value times `10^scale`, rounded half to even.
    pub value: i128,
    /// True when digits beyond the scale were not all zero (the value was rounded).
    pub rounded: bool,
}

impl Decimal {
    /// Parses `[+-]digits[.digits][(e|E)[+-]digits]` (JSON number syntax, plus a leading `+`).
    pub fn parse(text: &str) -> Result<Decimal, DecimalSyntaxError> {
        let err = || DecimalSyntaxError(text.to_owned());
        let s = text.trim();
        let (negative, s) = match s.as_bytes().first() {
            Some(b'-') => (true, &s[1..]),
            Some(b'+') => (false, &s[1..]),
            _ => (false, s),
        };
        let (mantissa, exp_text) = match s.find(['e', 'E']) {
            Some(i) => (&s[..i], Some(&s[i + 1..])),
            None => (s, None),
        };
        let (int_part, frac_part) = match mantissa.find('.') {
            Some(i) => (&mantissa[..i], &mantissa[i + 1..]),
            None => (mantissa, ""),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(err());
        }
        if !int_part.bytes().chain(frac_part.bytes()).all(|b| b.is_ascii_digit()) {
            return Err(err());
        }
        let mut exponent: i64 = match exp_text {
            Some(e) => {
                let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
                if digits.is_empty() || digits.len() > 9 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(err());
                }
                e.parse::<i64>().map_err(|_| err())?
            }
            None => 0,
        };
        exponent -= frac_part.len() as i64;
        let mut digits: Vec<u8> = int_part.bytes().chain(frac_part.bytes()).map(|b| b - b'0').collect();
        let leading = digits.iter().take_while(|&&d| d == 0).count();
        digits.drain(..leading);
        while digits.last() == Some(&0) {
            digits.pop();
            exponent += 1;
        }
        if digits.is_empty() {
            exponent = 0;
        }
        Ok(Decimal { negative: negative && !digits.is_empty(), digits, exponent })
    }

    /// True when the number is zero.
    pub fn is_zero(&self) -> bool {
        self.digits.is_empty()
    }

    /// True when the number is below zero.
    pub fn is_negative(&self) -> bool {
        self.negative
    }

    /// The value times `10^scale` as an integer, rounded half to even.
    pub fn to_scale_half_even(&self, scale: u32) -> Result<Scaled, DecimalOverflow> {
        if self.digits.is_empty() {
            return Ok(Scaled { value: 0, rounded: false });
        }
        let shift = self.exponent + i64::from(scale);
        let (kept, dropped): (&[u8], &[u8]) = if shift >= 0 {
            (&self.digits, &[])
        } else {
            let cut = self.digits.len() as i64 + shift;
            if cut <= 0 {
                (&[], &self.digits)
            } else {
                self.digits.split_at(cut as usize)
            }
        };
        let mut value: i128 = 0;
        for &d in kept {
            value = value.checked_mul(10).and_then(|v| v.checked_add(i128::from(d))).ok_or(DecimalOverflow)?;
        }
        if shift > 0 {
            let zeros = u32::try_from(shift).map_err(|_| DecimalOverflow)?;
            value = 10i128.checked_pow(zeros).and_then(|p| value.checked_mul(p)).ok_or(DecimalOverflow)?;
        }
        // When cut < 0 the dropped digits sit below the first dropped position: value < half.
        let below_first = shift < 0 && (self.digits.len() as i64 + shift) < 0;
        let rounded = !dropped.is_empty();
        if rounded && !below_first {
            let first = dropped[0];
            let rest_nonzero = dropped[1..].iter().any(|&d| d != 0);
            let up = first > 5 || (first == 5 && (rest_nonzero || value % 2 == 1));
            if up {
                value = value.checked_add(1).ok_or(DecimalOverflow)?;
            }
        }
        Ok(Scaled { value: if self.negative { -value } else { value }, rounded })
    }

    /// The value times `10^scale` when that is an integer: `None` when digits would be lost,
    /// `Some(Err)` on overflow.
    pub fn to_scale_exact(&self, scale: u32) -> Option<Result<i128, ()>> {
        match self.to_scale_half_even(scale) {
            Ok(s) if s.rounded => None,
            Ok(s) => Some(Ok(s.value)),
            Err(DecimalOverflow) => Some(Err(())),
        }
    }
}

impl fmt::Display for Decimal {
    /// Scientific notation with every digit: `25e-7`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.digits.is_empty() {
            return f.write_str("0");
        }
        if self.negative {
            f.write_str("-")?;
        }
        for d in &self.digits {
            write!(f, "{d}")?;
        }
        if self.exponent != 0 {
            write!(f, "e{}", self.exponent)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scaled(s: &str) -> Scaled {
        Decimal::parse(s).unwrap().to_scale_half_even(12).unwrap()
    }

    #[test]
    fn reads_exponents_exactly() {
        assert_eq!(scaled("2.5e-06"), Scaled { value: 2_500_000, rounded: false });
        assert_eq!(scaled("0.0000025"), Scaled { value: 2_500_000, rounded: false });
        assert_eq!(scaled("25E-7"), Scaled { value: 2_500_000, rounded: false });
        assert_eq!(scaled("1"), Scaled { value: 1_000_000_000_000, rounded: false });
        assert_eq!(scaled("0"), Scaled { value: 0, rounded: false });
        assert_eq!(scaled("-0.0"), Scaled { value: 0, rounded: false });
    }

    #[test]
    fn rounds_float_artifacts_half_even() {
        assert_eq!(scaled("2.0000000000000002E-7"), Scaled { value: 200_000, rounded: true });
        assert_eq!(scaled("0.0000029999900000000002"), Scaled { value: 2_999_990, rounded: true });
        // exact ties go to even
        assert_eq!(scaled("0.0000000000005"), Scaled { value: 0, rounded: true });
        assert_eq!(scaled("0.0000000000015"), Scaled { value: 2, rounded: true });
        assert_eq!(scaled("0.00000000000150001"), Scaled { value: 2, rounded: true });
        assert_eq!(scaled("0.0000000000025"), Scaled { value: 2, rounded: true });
        assert_eq!(scaled("0.000000000000000001"), Scaled { value: 0, rounded: true });
    }

    #[test]
    fn rejects_garbage() {
        for s in ["", ".", "1e", "e5", "1.2.3", "0x10", "1e+", "NaN", "inf", "--1"] {
            assert!(Decimal::parse(s).is_err(), "{s}");
        }
    }

    #[test]
    fn overflow_is_reported() {
        assert!(Decimal::parse("1e40").unwrap().to_scale_half_even(12).is_err());
    }
}
