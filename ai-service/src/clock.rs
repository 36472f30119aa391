//! UTC calendar arithmetic on Unix milliseconds: "today" and "this month" for usage totals and
//! monthly budgets.

use time::format_description::well_known::Rfc3339;
use time::{Date, Month, OffsetDateTime};

/// 0000-01-01T00:00:00Z and 9999-12-31T23:59:59.999Z: the span RFC 3339 can write. Times
/// outside it are taken as its ends.
const MIN_MS: i64 = -62_167_219_200_000;
const MAX_MS: i64 = 253_402_300_799_999;

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    unix_ms(OffsetDateTime::now_utc())
}

/// Midnight UTC of the day holding `ms`.
pub fn day_start(ms: i64) -> i64 {
    midnight(utc(ms).date())
}

/// Midnight UTC of the first day of the month holding `ms`.
pub fn month_start(ms: i64) -> i64 {
    let date = utc(ms).date();
    midnight(date.replace_day(1).unwrap_or(date))
}

/// Midnight UTC of the first day of the month after the one holding `ms`.
pub fn next_month_start(ms: i64) -> i64 {
    let date = utc(ms).date();
    let (year, month) = match date.month() {
        Month::December => (date.year() + 1, Month::January),
        month => (date.year(), month.next()),
    };
    // Only after December 9999 is there no such date: never.
    Date::from_calendar_date(year, month, 1).map_or(i64::MAX, midnight)
}

/// RFC 3339 form of a midnight (or any time, to the second).
pub fn rfc3339(ms: i64) -> String {
    let at = utc(ms);
    // Within MIN_MS..=MAX_MS both steps succeed.
    at.replace_nanosecond(0)
        .unwrap_or(at)
        .format(&Rfc3339)
        .unwrap_or_default()
}

fn utc(ms: i64) -> OffsetDateTime {
    let nanos = i128::from(ms.clamp(MIN_MS, MAX_MS)) * 1_000_000;
    OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn unix_ms(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos().div_euclid(1_000_000)).unwrap_or(i64::MAX)
}

fn midnight(date: Date) -> i64 {
    unix_ms(date.midnight().assume_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix milliseconds of an RFC 3339 time.
    fn ms(text: &str) -> i64 {
        unix_ms(OffsetDateTime::parse(text, &Rfc3339).unwrap())
    }

    #[test]
    fn month_boundaries() {
        // 2024-02-29T13:45:10Z, a leap day.
        let t = 1_709_214_310_000;
        assert_eq!(rfc3339(t), "2024-02-29T13:45:10Z");
        assert_eq!(rfc3339(day_start(t)), "2024-02-29T00:00:00Z");
        assert_eq!(rfc3339(month_start(t)), "2024-02-01T00:00:00Z");
        assert_eq!(rfc3339(next_month_start(t)), "2024-03-01T00:00:00Z");
        // December rolls over the year.
        let dec = 1_734_000_000_000; // 2024-12-12
        assert_eq!(rfc3339(next_month_start(dec)), "2025-01-01T00:00:00Z");
    }

    #[test]
    fn the_last_millisecond_of_a_year_and_the_first_of_the_next() {
        let last = ms("2024-12-31T23:59:59.999Z");
        assert_eq!(
            rfc3339(last),
            "2024-12-31T23:59:59Z",
            "truncated, not rounded"
        );
        assert_eq!(day_start(last), ms("2024-12-31T00:00:00Z"));
        assert_eq!(month_start(last), ms("2024-12-01T00:00:00Z"));
        assert_eq!(next_month_start(last), ms("2025-01-01T00:00:00Z"));
        let first = last + 1;
        assert_eq!(day_start(first), first);
        assert_eq!(month_start(first), first);
        assert_eq!(next_month_start(first), ms("2025-02-01T00:00:00Z"));
    }

    #[test]
    fn february_has_29_days_only_in_leap_years() {
        for (day, next) in [
            ("2024-02-29T23:59:59Z", "2024-03-01T00:00:00Z"),
            ("2023-02-28T12:00:00Z", "2023-03-01T00:00:00Z"),
            ("2000-02-29T00:00:00Z", "2000-03-01T00:00:00Z"),
            ("2100-02-28T00:00:00Z", "2100-03-01T00:00:00Z"),
        ] {
            assert_eq!(next_month_start(ms(day)), ms(next), "{day}");
            assert_eq!(day_start(ms(day)), ms(&format!("{}T00:00:00Z", &day[..10])));
        }
        // The day after 28 February 2100 is 1 March: no leap day in a century year not
        // divisible by 400.
        assert_eq!(
            day_start(ms("2100-02-28T00:00:00Z") + 86_400_000),
            ms("2100-03-01T00:00:00Z")
        );
    }

    #[test]
    fn times_before_1970_and_far_out_of_range() {
        assert_eq!(day_start(-1), -86_400_000);
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
        assert_eq!(month_start(-1), ms("1969-12-01T00:00:00Z"));
        assert_eq!(next_month_start(-1), 0);
        assert_eq!(rfc3339(MIN_MS), "0000-01-01T00:00:00Z");
        assert_eq!(rfc3339(MAX_MS), "9999-12-31T23:59:59Z");
        assert_eq!(rfc3339(i64::MIN), "0000-01-01T00:00:00Z");
        assert_eq!(next_month_start(i64::MAX), i64::MAX);
    }

    #[test]
    fn now_is_the_system_clock() {
        let system = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        assert!((now_ms() - system).abs() < 5_000);
    }
}
