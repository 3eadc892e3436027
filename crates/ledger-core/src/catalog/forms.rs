//! The entry forms of docs/pricing.md "Catalog entries" beyond plain price fields:
//! `tiered_pricing` (the whole request at the tier that holds `input_tokens`) and
//! `off_peak_pricing` (other prices in UTC weekday and time windows). `alias_of` needs the whole
//! source and is resolved where the source is assembled.

use serde_json::value::RawValue;

use super::litellm::{read_fields, OrderedRaw, PriceRecords};
use crate::decimal::Decimal;
use crate::event::EventTime;
use crate::pricing::FieldSet;

/// One tier of `tiered_pricing`: `lo < input_tokens <= hi` (the first tier also holds 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierRange {
    /// The range's lower bound (exclusive; 0 for the first tier, which also holds 0).
    pub lo: u64,
    /// The range's upper bound (inclusive).
    pub hi: u64,
    /// The tier's own price fields (they replace the entry's of the same name).
    pub fields: FieldSet,
}

/// `off_peak_pricing`: its windows and the price fields that replace the entry's in them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffPeak {
    /// The windows; `event_time` in any of them gets the off-peak prices.
    pub windows: Vec<OffPeakWindow>,
    /// The off-peak price fields.
    pub fields: FieldSet,
}

/// One window: ISO weekdays (UTC) and time ranges in minutes of the day, end exclusive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffPeakWindow {
    /// Bit `d` set for ISO weekday `d` (1 = Monday ... 7 = Sunday).
    pub weekdays: u8,
    /// `(start, end)` minutes of the day, `start < end <= 1440`.
    pub ranges: Vec<(u16, u16)>,
}

impl OffPeak {
    /// True when the instant falls in a window (UTC weekday and time of day).
    #[inline]
    pub fn holds(&self, at: EventTime) -> bool {
        let secs = at.secs();
        let days = secs.div_euclid(86_400);
        // 1970-01-01 was a Thursday, ISO weekday 4.
        let weekday = (days + 3).rem_euclid(7) + 1;
        let minute = (secs.rem_euclid(86_400) / 60) as u16;
        self.windows
            .iter()
            .any(|w| w.weekdays & (1 << weekday) != 0 && w.ranges.iter().any(|&(start, end)| start <= minute && minute < end))
    }
}

/// True when a tier (a JSON object) has a price field at all.
fn has_price_field(tier: &OrderedRaw<'_>) -> bool {
    tier.0.iter().any(|(name, _)| super::litellm::is_price_field(name))
}

/// A JSON number with a non-negative integer value (below 2^127).
fn bound(raw: &RawValue) -> Option<u128> {
    let text = raw.get();
    if !text.bytes().next().is_some_and(|b| b.is_ascii_digit() || b == b'-') {
        return None;
    }
    let d = Decimal::parse(text).ok()?;
    match d.to_scale_half_even(0) {
        Ok(s) if !s.rounded && s.value >= 0 => Some(s.value.unsigned_abs()),
        _ => None,
    }
}

/// Reads `tiered_pricing`: `Ok(None)` when it is to be ignored (no tier has a price field),
/// `Err(detail)` for a load error.
pub(super) fn read_tiered(key: &str, raw: &RawValue, records: &mut PriceRecords) -> Result<Option<Vec<TierRange>>, String> {
    let list: Vec<&RawValue> = serde_json::from_str(raw.get()).map_err(|_| "not a list".to_owned())?;
    let tiers: Vec<Option<OrderedRaw<'_>>> =
        list.iter().map(|t| if t.get().starts_with('{') { serde_json::from_str(t.get()).ok() } else { None }).collect();
    if !tiers.iter().flatten().any(has_price_field) {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(tiers.len());
    let mut previous = 0u128;
    for (i, tier) in tiers.iter().enumerate() {
        let tier = tier.as_ref().ok_or_else(|| format!("tier {i} is not an object"))?;
        let range = tier.0.iter().find(|(n, _)| n == "range").map(|(_, v)| *v).ok_or_else(|| format!("tier {i} has no range"))?;
        let bad =
            || format!("tier {i}: range {} is not [lo, hi] of integers with lo < hi, continuing the previous tier", range.get());
        let pair: Vec<&RawValue> = serde_json::from_str(range.get()).map_err(|_| bad())?;
        let [lo, hi] = pair[..] else { return Err(bad()) };
        let (lo, hi) = (bound(lo).ok_or_else(bad)?, bound(hi).ok_or_else(bad)?);
        if lo != previous || hi <= lo {
            return Err(bad());
        }
        let mut fields = FieldSet::default();
        let prefix = format!("tiered_pricing[{i}].");
        read_fields(key, &prefix, tier, &mut fields, records);
        let saturated = |v: u128| u64::try_from(v).unwrap_or(u64::MAX);
        out.push(TierRange { lo: saturated(lo), hi: saturated(hi), fields });
        previous = hi;
    }
    Ok(Some(out))
}

/// Reads `off_peak_pricing`; `Err(detail)` for a load error.
pub(super) fn read_off_peak(key: &str, raw: &RawValue, records: &mut PriceRecords) -> Result<OffPeak, String> {
    let object: OrderedRaw<'_> = if raw.get().starts_with('{') {
        serde_json::from_str(raw.get()).map_err(|_| "not an object".to_owned())?
    } else {
        return Err("not an object".to_owned());
    };
    let windows = object.0.iter().find(|(n, _)| n == "windows").map(|(_, v)| *v).ok_or("no windows")?;
    let list: Vec<&RawValue> = serde_json::from_str(windows.get()).map_err(|_| "windows is not a list".to_owned())?;
    if list.is_empty() {
        return Err("no windows".to_owned());
    }
    let windows =
        list.iter().enumerate().map(|(i, w)| read_window(w).map_err(|e| format!("window {i}: {e}"))).collect::<Result<_, _>>()?;
    let mut fields = FieldSet::default();
    read_fields(key, "off_peak_pricing.", &object, &mut fields, records);
    for (name, value) in &object.0 {
        if name != "windows" && !super::litellm::is_price_field(name) {
            records.ignore(
                key,
                &format!("off_peak_pricing.{name}"),
                value,
                "not used: the windows are read in UTC (docs/pricing.md)",
            );
        }
    }
    Ok(OffPeak { windows, fields })
}

fn read_window(raw: &RawValue) -> Result<OffPeakWindow, String> {
    let w: OrderedRaw<'_> = if raw.get().starts_with('{') {
        serde_json::from_str(raw.get()).map_err(|_| "not an object".to_owned())?
    } else {
        return Err("not an object".to_owned());
    };
    let get = |name: &str| w.0.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
    let days: Vec<&RawValue> =
        get("weekdays").and_then(|d| serde_json::from_str(d.get()).ok()).ok_or("weekdays is not a list")?;
    let mut weekdays = 0u8;
    for d in &days {
        let t = d.get();
        match t.parse::<u8>() {
            Ok(n @ 1..=7) if t.bytes().all(|b| b.is_ascii_digit()) => weekdays |= 1 << n,
            _ => return Err(format!("weekday {t} is not an integer 1-7")),
        }
    }
    if weekdays == 0 {
        return Err("no weekdays".to_owned());
    }
    let hours = get("hours_utc").ok_or("no hours_utc")?;
    let texts: Vec<String> = if hours.get().starts_with('"') {
        vec![serde_json::from_str(hours.get()).map_err(|_| "hours_utc is not text")?]
    } else {
        serde_json::from_str(hours.get()).map_err(|_| "hours_utc is neither text nor a list of texts")?
    };
    if texts.is_empty() {
        return Err("no hours_utc ranges".to_owned());
    }
    let ranges = texts
        .iter()
        .map(|t| time_range(t).ok_or_else(|| format!("{t:?} is not HH:MM-HH:MM with start < end")))
        .collect::<Result<_, _>>()?;
    Ok(OffPeakWindow { weekdays, ranges })
}

/// `"HH:MM-HH:MM"` as minutes of the day, an end of `00:00` meaning midnight (1440).
fn time_range(text: &str) -> Option<(u16, u16)> {
    let b = text.as_bytes();
    if b.len() != 11 || b[2] != b':' || b[5] != b'-' || b[8] != b':' {
        return None;
    }
    let two = |i: usize| -> Option<u16> {
        (b[i].is_ascii_digit() && b[i + 1].is_ascii_digit()).then(|| u16::from(b[i] - b'0') * 10 + u16::from(b[i + 1] - b'0'))
    };
    let (sh, sm, eh, em) = (two(0)?, two(3)?, two(6)?, two(9)?);
    if sh > 23 || eh > 23 || sm > 59 || em > 59 {
        return None;
    }
    let start = sh * 60 + sm;
    let end = match eh * 60 + em {
        0 => 1440,
        e => e,
    };
    (start < end).then_some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_ranges() {
        assert_eq!(time_range("00:00-00:00"), Some((0, 1440)));
        assert_eq!(time_range("10:00-00:00"), Some((600, 1440)));
        assert_eq!(time_range("04:00-06:30"), Some((240, 390)));
        for bad in ["06:00-04:00", "24:00-00:00", "00:60-01:00", "0:00-01:00", "01:00-01:00", "01:00 - 02:00"] {
            assert_eq!(time_range(bad), None, "{bad}");
        }
    }

    #[test]
    fn windows_are_utc_weekdays() {
        let op = OffPeak {
            windows: vec![
                OffPeakWindow { weekdays: 0b0011_1110, ranges: vec![(0, 60), (600, 1440)] },
                OffPeakWindow { weekdays: 0b1100_0000, ranges: vec![(0, 1440)] },
            ],
            fields: FieldSet::default(),
        };
        let at = |s: &str| EventTime::from_datetime(s.parse().unwrap());
        assert!(op.holds(at("2026-11-02T00:30:00Z"))); // Monday
        assert!(!op.holds(at("2026-11-02T01:00:00Z")));
        assert!(op.holds(at("2026-11-02T23:59:59.999999Z")));
        assert!(!op.holds(at("2026-11-02T09:59:59Z")));
        assert!(op.holds(at("2026-11-07T12:00:00Z"))); // Saturday
        assert!(op.holds(at("1969-12-28T12:00:00Z"))); // a Sunday before the epoch
        assert!(!op.holds(at("1970-01-01T05:00:00Z"))); // Thursday
    }
}
