//! Time ranges as the command line gives them: dates (midnight UTC) or RFC 3339 times, and
//! calendar months.

use chrono::{DateTime, Datelike, Days, Months, NaiveDate, Utc};

use crate::OpsError;

/// A bound of a report range: a date is midnight UTC (`end_of_day` moves it to the next
/// midnight, so `--to 2026-11-30` includes that day); anything else must be RFC 3339.
pub fn parse_bound(s: &str, end_of_day: bool) -> Result<DateTime<Utc>, OpsError> {
    if let Ok(d) = NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d") {
        let d = if end_of_day { d.checked_add_days(Days::new(1)) } else { Some(d) };
        return d
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc())
            .ok_or_else(|| OpsError::Invalid(format!("date {s:?} is out of range")));
    }
    DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| OpsError::Invalid(format!("{s:?} is neither a date (YYYY-MM-DD) nor an RFC 3339 time")))
}

/// `[from, to)` of optional `--from`/`--to` texts; absent bounds mean all data (the epoch, and
/// the last midnight ClickHouse's `DateTime` holds comfortably).
pub fn parse_range(from: Option<&str>, to: Option<&str>) -> Result<(DateTime<Utc>, DateTime<Utc>), OpsError> {
    let from = match from {
        Some(s) => parse_bound(s, false)?,
        None => DateTime::UNIX_EPOCH,
    };
    let to = match to {
        Some(s) => parse_bound(s, true)?,
        None => parse_bound("2106-01-01", false)?,
    };
    if from >= to {
        return Err(OpsError::Invalid(format!("--from ({from}) must be before --to ({to})")));
    }
    Ok((from, to))
}

/// How a range reads in a report's title.
pub fn describe(from: DateTime<Utc>, to: DateTime<Utc>, all_time: bool) -> String {
    if all_time {
        "all time".to_owned()
    } else {
        format!("{} .. {}", from.format("%Y-%m-%d %H:%M:%S UTC"), to.format("%Y-%m-%d %H:%M:%S UTC"))
    }
}

/// `[first day, first day of the next month)` of `YYYY-MM`, midnight UTC.
pub fn month_range(month: &str) -> Result<(DateTime<Utc>, DateTime<Utc>), OpsError> {
    let bad = || OpsError::Invalid(format!("--month {month:?} is not a month: use YYYY-MM, e.g. 2026-11"));
    let first = NaiveDate::parse_from_str(&format!("{}-01", month.trim()), "%Y-%m-%d").map_err(|_| bad())?;
    let next = first.checked_add_months(Months::new(1)).ok_or_else(bad)?;
    let at = |d: NaiveDate| d.and_hms_opt(0, 0, 0).map(|t| t.and_utc()).ok_or_else(bad);
    Ok((at(first)?, at(next)?))
}

/// The calendar month (UTC) before the one `now` is in.
pub fn previous_month(now: DateTime<Utc>) -> Result<(DateTime<Utc>, DateTime<Utc>), OpsError> {
    let first = now.date_naive().with_day(1).and_then(|d| d.checked_sub_months(Months::new(1)));
    let first = first.ok_or_else(|| OpsError::Invalid(format!("no month before {now}")))?;
    month_range(&first.format("%Y-%m").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_parse_dates_and_times() {
        assert_eq!(parse_bound("2026-03-01", false).unwrap().to_rfc3339(), "2026-03-01T00:00:00+00:00");
        assert_eq!(parse_bound("2026-03-31", true).unwrap().to_rfc3339(), "2026-04-01T00:00:00+00:00");
        assert_eq!(parse_bound("2026-03-01T10:00:00Z", true).unwrap().to_rfc3339(), "2026-03-01T10:00:00+00:00");
        assert!(parse_bound("March", false).is_err());
        assert!(parse_range(Some("2026-03-02"), Some("2026-03-01")).is_err());
        assert_eq!(parse_range(None, None).unwrap().0, DateTime::UNIX_EPOCH);
    }

    #[test]
    fn months_are_utc_calendar_months() {
        let (from, to) = month_range("2026-02").unwrap();
        assert_eq!(from.to_rfc3339(), "2026-02-01T00:00:00+00:00");
        assert_eq!(to.to_rfc3339(), "2026-03-01T00:00:00+00:00");
        assert_eq!(month_range("2026-12").unwrap().1.to_rfc3339(), "2027-01-01T00:00:00+00:00");
        for bad in ["2026-13", "2026", "Nov", "2026-11-01"] {
            assert!(month_range(bad).is_err(), "{bad}");
        }
    }
}
