//! Calendar periods in a time zone: the day, ISO week (from Monday) or month holding an instant.

use chrono::{DateTime, Datelike, Days, LocalResult, Months, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

use crate::signal::BudgetPeriod;

/// One calendar period: `[start, end)` in UTC instants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeriodWindow {
    /// First instant of the period (local midnight of its first day).
    pub start: DateTime<Utc>,
    /// First instant of the next period (exclusive end; the rollover instant).
    pub end: DateTime<Utc>,
}

impl PeriodWindow {
    /// True when `t` lies in `[start, end)`.
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        self.start <= t && t < self.end
    }
}

/// The period of kind `period` in zone `tz` that holds the instant `t`.
///
/// A period starts at local midnight of its first day (the first existing local instant of that
/// day when a daylight-saving gap skips midnight). A spend hour bucket belongs to the period
/// holding its start instant (in zones with a non-whole-hour offset a bucket can straddle the
/// boundary; it counts where it starts).
pub fn period_of(period: BudgetPeriod, tz: Tz, t: DateTime<Utc>) -> PeriodWindow {
    let local_date = t.with_timezone(&tz).date_naive();
    let first = first_day(period, local_date);
    let next = next_first_day(period, first);
    PeriodWindow { start: local_midnight(tz, first), end: local_midnight(tz, next) }
}

/// The period following `w` (the one that starts at `w.end`).
pub fn next_period(period: BudgetPeriod, tz: Tz, w: PeriodWindow) -> PeriodWindow {
    period_of(period, tz, w.end)
}

fn first_day(period: BudgetPeriod, d: NaiveDate) -> NaiveDate {
    match period {
        BudgetPeriod::Day => d,
        BudgetPeriod::Week => d - Days::new(u64::from(d.weekday().num_days_from_monday())),
        BudgetPeriod::Month => d.with_day(1).unwrap_or(d),
    }
}

fn next_first_day(period: BudgetPeriod, first: NaiveDate) -> NaiveDate {
    let next = match period {
        BudgetPeriod::Day => first.checked_add_days(Days::new(1)),
        BudgetPeriod::Week => first.checked_add_days(Days::new(7)),
        BudgetPeriod::Month => first.checked_add_months(Months::new(1)),
    };
    // Only at the end of chrono's calendar (year 262143); saturate there.
    next.unwrap_or(NaiveDate::MAX)
}

/// The first instant of local date `d` in `tz`, in UTC.
fn local_midnight(tz: Tz, d: NaiveDate) -> DateTime<Utc> {
    let mut naive = d.and_hms_opt(0, 0, 0).unwrap_or_default();
    // A DST gap at midnight (e.g. America/Santiago, Asia/Beirut): take the first local instant
    // that exists, found by stepping 15 minutes forward (gaps are at most a few hours).
    for _ in 0..(4 * 24) {
        match tz.from_local_datetime(&naive) {
            LocalResult::Single(t) => return t.with_timezone(&Utc),
            LocalResult::Ambiguous(earliest, _) => return earliest.with_timezone(&Utc),
            LocalResult::None => naive += chrono::Duration::minutes(15),
        }
    }
    Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn utc_calendar_periods() {
        let at = t("2026-11-18T13:45:00Z"); // a Wednesday
        assert_eq!(
            period_of(BudgetPeriod::Day, Tz::UTC, at),
            PeriodWindow { start: t("2026-11-18T00:00:00Z"), end: t("2026-11-19T00:00:00Z") }
        );
        assert_eq!(
            period_of(BudgetPeriod::Week, Tz::UTC, at),
            PeriodWindow { start: t("2026-11-16T00:00:00Z"), end: t("2026-11-23T00:00:00Z") }
        );
        assert_eq!(
            period_of(BudgetPeriod::Month, Tz::UTC, at),
            PeriodWindow { start: t("2026-11-01T00:00:00Z"), end: t("2026-12-01T00:00:00Z") }
        );
        let dec = period_of(BudgetPeriod::Month, Tz::UTC, t("2026-12-31T23:59:59Z"));
        assert_eq!(dec.end, t("2027-01-01T00:00:00Z"));
        assert_eq!(next_period(BudgetPeriod::Month, Tz::UTC, dec).start, t("2027-01-01T00:00:00Z"));
    }

    #[test]
    fn zoned_periods_follow_local_midnight_and_dst() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        // 23:30 UTC on Oct 31 is already Nov 1 in Berlin (UTC+1 after the DST change).
        let w = period_of(BudgetPeriod::Month, berlin, t("2026-10-31T23:30:00Z"));
        assert_eq!(w.start, t("2026-10-31T23:00:00Z"));
        assert_eq!(w.end, t("2026-11-30T23:00:00Z"));
        // The day of the DST change (Oct 25, 2026) is 25 hours long.
        let d = period_of(BudgetPeriod::Day, berlin, t("2026-10-25T12:00:00Z"));
        assert_eq!(d.end - d.start, chrono::Duration::hours(25));
        // Santiago skips local midnight at the start of DST (Sep 6, 2026): the day starts at 01:00.
        let santiago: Tz = "America/Santiago".parse().unwrap();
        let s = period_of(BudgetPeriod::Day, santiago, t("2026-09-06T12:00:00Z"));
        assert_eq!(s.start.with_timezone(&santiago).format("%H:%M").to_string(), "01:00");
    }

    proptest! {
        #[test]
        fn period_contains_its_instant_and_tiles_time(secs in 0i64..4_000_000_000, p in 0usize..3, z in 0usize..4) {
            let zones = ["UTC", "Europe/Berlin", "America/Santiago", "Asia/Kolkata"];
            let tz: Tz = zones[z].parse().unwrap();
            let period = BudgetPeriod::ALL[p];
            let at = Utc.timestamp_opt(secs, 0).unwrap();
            let w = period_of(period, tz, at);
            prop_assert!(w.contains(at));
            prop_assert_eq!(period_of(period, tz, w.start), w);
            let next = next_period(period, tz, w);
            prop_assert_eq!(next.start, w.end);
            prop_assert!(next.end > next.start);
        }
    }
}
