//! Flux's `timestamp`, a Kubernetes `metav1.Time`: parsed, kept and printed
//! the way Go does it, over the whole range Go's RFC 3339 parser accepts.
//!
//! Go decodes `metav1.Time` with `time.Parse(time.RFC3339, s)` and encodes it
//! as `t.UTC().AppendFormat(b, time.RFC3339)`, or `null` for the zero time
//! (`0001-01-01T00:00:00Z`). The parser is lenient in a few ways that matter
//! for exactness: a one-digit hour, a `,` before the fraction, offsets up to
//! `±24:60`, and an offset may push the instant out of years 0000–9999 (Go
//! then prints `-0001-12-31T23:00:00Z` or `10000-01-01T00:59:59Z`). [`GoTime`]
//! holds all of it, which neither i64 nanoseconds (1677–2262) nor
//! `jiff::Timestamp` (up to 9999-12-30T22:00:00Z) can.

use std::fmt;

use jiff::Timestamp;

const NANOS_PER_SECOND: u32 = 1_000_000_000;
const SECONDS_PER_DAY: i64 = 86_400;

/// An instant as Go's `time.Time` keeps it: whole seconds since the Unix epoch
/// and the nanoseconds within that second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GoTime {
    unix_seconds: i64,
    nanos: u32,
}

/// Why a string is not a time Go's `time.Parse(time.RFC3339, ...)` accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not an RFC 3339 time such as \"2024-05-07T05:02:34Z\": {reason}")]
pub struct TimeError {
    text: String,
    reason: String,
}

// === impl GoTime ===

impl GoTime {
    /// Go's zero time, `0001-01-01T00:00:00Z`, which Go encodes as `null`.
    pub const ZERO: Self = Self {
        unix_seconds: -62_135_596_800,
        nanos: 0,
    };

    /// The instant `unix_seconds` + `nanos` ns; `None` when `nanos` is not
    /// below one second.
    #[must_use]
    pub fn new(unix_seconds: i64, nanos: u32) -> Option<Self> {
        (nanos < NANOS_PER_SECOND).then_some(Self {
            unix_seconds,
            nanos,
        })
    }

    /// Whole seconds since the Unix epoch (rounded towards the past).
    #[must_use]
    pub fn unix_seconds(self) -> i64 {
        self.unix_seconds
    }

    /// Nanoseconds after [`GoTime::unix_seconds`], below one second.
    #[must_use]
    pub fn subsec_nanos(self) -> u32 {
        self.nanos
    }

    /// Nanoseconds since the Unix epoch.
    #[must_use]
    pub fn unix_nanos(self) -> i128 {
        i128::from(self.unix_seconds) * i128::from(NANOS_PER_SECOND) + i128::from(self.nanos)
    }

    /// True for Go's zero time (`time.Time.IsZero`), whatever offset it was written with.
    #[must_use]
    pub fn is_zero(self) -> bool {
        self == Self::ZERO
    }

    /// The same instant as a `jiff` timestamp; `None` outside jiff's range
    /// (about years -9999 to 9999).
    #[must_use]
    pub fn to_timestamp(self) -> Option<Timestamp> {
        let nanos = i32::try_from(self.nanos).ok()?;
        Timestamp::new(self.unix_seconds, nanos).ok()
    }

    /// Parses `text` exactly as Go's `time.Parse(time.RFC3339, text)` does.
    ///
    /// # Errors
    ///
    /// [`TimeError`] for what Go refuses, with Go's reason in words.
    pub fn parse_rfc3339(text: &str) -> Result<Self, TimeError> {
        parse(text.as_bytes()).map_err(|reason| TimeError {
            text: text.to_owned(),
            reason,
        })
    }

    /// Formats the instant as Go's `metav1.Time` marshals it: UTC, whole
    /// seconds (the fraction is dropped), `Z`, and the year as Go's
    /// `AppendFormat` writes it (at least four digits, `-` before negatives).
    #[must_use]
    pub fn to_rfc3339_utc(self) -> String {
        self.to_string()
    }
}

impl fmt::Display for GoTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.unix_seconds.div_euclid(SECONDS_PER_DAY);
        let clock = self.unix_seconds.rem_euclid(SECONDS_PER_DAY);
        let (year, month, day) = civil_from_days(days);
        if year < 0 {
            write!(f, "-{:04}", year.unsigned_abs())?;
        } else {
            write!(f, "{year:04}")?;
        }
        write!(
            f,
            "-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
            clock / 3600,
            clock / 60 % 60,
            clock % 60
        )
    }
}

impl From<Timestamp> for GoTime {
    fn from(ts: Timestamp) -> Self {
        // jiff's sub-second part has the sign of the timestamp; Go's is never negative.
        let (seconds, nanos) = (ts.as_second(), ts.subsec_nanosecond());
        let (seconds, nanos) = if nanos < 0 {
            (seconds - 1, nanos + 1_000_000_000)
        } else {
            (seconds, nanos)
        };
        Self {
            unix_seconds: seconds,
            nanos: nanos.unsigned_abs(),
        }
    }
}

// === Go's time.Parse with layout RFC3339 ===
//
// `time.Parse` first tries a strict fast path and, when that fails, the
// general layout parser; the general parser accepts everything the fast path
// does, with the same result, so only the general one is written here. The
// layout `2006-01-02T15:04:05Z07:00` is, chunk by chunk: a four-digit year, a
// two-digit month, a two-digit day, an hour of one or two digits, two-digit
// minutes and seconds (an optional `.` or `,` fraction follows, since the
// layout has none), then `Z` or `±hh:mm`.

/// The input not yet consumed.
struct Cursor<'a> {
    rest: &'a [u8],
}

impl Cursor<'_> {
    fn expected(&self, what: &str) -> String {
        if self.rest.is_empty() {
            format!("expected {what} at the end")
        } else {
            format!(
                "expected {what} at {:?}",
                String::from_utf8_lossy(self.rest)
            )
        }
    }

    fn digit(&self, i: usize) -> Option<i64> {
        self.rest
            .get(i)
            .filter(|b| b.is_ascii_digit())
            .map(|b| i64::from(b - b'0'))
    }

    /// Go's `getnum`: two digits, or one when `fixed` is false and no second follows.
    fn number(&mut self, fixed: bool, what: &str) -> Result<i64, String> {
        let first = self.digit(0).ok_or_else(|| self.expected(what))?;
        match self.digit(1) {
            Some(second) => {
                self.rest = &self.rest[2..];
                Ok(first * 10 + second)
            }
            None if !fixed => {
                self.rest = &self.rest[1..];
                Ok(first)
            }
            None => Err(self.expected(what)),
        }
    }

    fn literal(&mut self, byte: u8) -> Result<(), String> {
        match self.rest.split_first() {
            Some((&b, rest)) if b == byte => {
                self.rest = rest;
                Ok(())
            }
            _ => Err(self.expected(&format!("\"{}\"", char::from(byte)))),
        }
    }

    fn year(&mut self) -> Result<i64, String> {
        let what = "a four-digit year";
        let digits = self.rest.get(..4).ok_or_else(|| self.expected(what))?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return Err(self.expected(what));
        }
        self.rest = &self.rest[4..];
        Ok(digits.iter().fold(0, |n, d| n * 10 + i64::from(d - b'0')))
    }

    /// The fraction after the seconds, if any: `.` or `,` then digits (only
    /// the first nine count), as nanoseconds.
    fn fraction(&mut self) -> u32 {
        let starts = matches!(self.rest.first(), Some(b'.' | b','))
            && self.rest.get(1).is_some_and(u8::is_ascii_digit);
        if !starts {
            return 0;
        }
        let digits = self.rest[1..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        let nanos = (0..9).fold(0, |n, i| {
            let d = if i < digits {
                self.rest[1 + i] - b'0'
            } else {
                0
            };
            n * 10 + u32::from(d)
        });
        self.rest = &self.rest[1 + digits..];
        nanos
    }

    /// `Z`, or `±hh:mm` with hours up to 24 and minutes up to 60 (Go's
    /// ranges), as seconds east of UTC.
    fn offset(&mut self) -> Result<i64, String> {
        if self.rest.first() == Some(&b'Z') {
            self.rest = &self.rest[1..];
            return Ok(0);
        }
        let what = "\"Z\" or an offset such as \"+02:00\"";
        if self.rest.len() < 6 || self.rest[3] != b':' {
            return Err(self.expected(what));
        }
        let sign = match self.rest[0] {
            b'+' => 1,
            b'-' => -1,
            _ => return Err(self.expected(what)),
        };
        let mut hours = Cursor {
            rest: &self.rest[1..3],
        };
        let mut minutes = Cursor {
            rest: &self.rest[4..6],
        };
        let (Ok(hh), Ok(mm)) = (hours.number(true, what), minutes.number(true, what)) else {
            return Err(self.expected(what));
        };
        if hh > 24 {
            return Err("time zone offset hour out of range".to_owned());
        }
        if mm > 60 {
            return Err("time zone offset minute out of range".to_owned());
        }
        self.rest = &self.rest[6..];
        Ok(sign * (hh * 3600 + mm * 60))
    }
}

fn parse(text: &[u8]) -> Result<GoTime, String> {
    let mut c = Cursor { rest: text };
    let year = c.year()?;
    c.literal(b'-')?;
    let month = c.number(true, "a two-digit month")?;
    if !(1..=12).contains(&month) {
        return Err("month out of range".to_owned());
    }
    c.literal(b'-')?;
    let day = c.number(true, "a two-digit day")?;
    c.literal(b'T')?;
    let hour = c.number(false, "an hour")?;
    if hour >= 24 {
        return Err("hour out of range".to_owned());
    }
    c.literal(b':')?;
    let minute = c.number(true, "two-digit minutes")?;
    if minute >= 60 {
        return Err("minute out of range".to_owned());
    }
    c.literal(b':')?;
    let second = c.number(true, "two-digit seconds")?;
    if second >= 60 {
        return Err("second out of range".to_owned());
    }
    let nanos = c.fraction();
    let offset = c.offset()?;
    if !c.rest.is_empty() {
        return Err(format!("extra text {:?}", String::from_utf8_lossy(c.rest)));
    }
    if day < 1 || day > days_in_month(year, month) {
        return Err("day out of range".to_owned());
    }
    let days = days_from_civil(year, month, day);
    let seconds = days * SECONDS_PER_DAY + hour * 3600 + minute * 60 + second - offset;
    Ok(GoTime {
        unix_seconds: seconds,
        nanos,
    })
}

/// Go's `isLeap`: the proleptic Gregorian rule (year 0 is a leap year).
fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let march_based = (month + 9) % 12;
    let day_of_year = (153 * march_based + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The proleptic Gregorian date of a day since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let march_based = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * march_based + 2) / 5 + 1;
    let month = if march_based < 10 {
        march_based + 3
    } else {
        march_based - 9
    };
    let year = year_of_era + era * 400;
    (if month <= 2 { year + 1 } else { year }, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn go(text: &str) -> String {
        GoTime::parse_rfc3339(text).unwrap().to_rfc3339_utc()
    }

    #[test]
    fn go_zero_time_is_zero_however_it_is_written() {
        for text in [
            "0001-01-01T00:00:00Z",
            "0001-01-01T00:00:00+00:00",
            "0001-01-01T02:30:00+02:30",
            "0000-12-31T23:00:00-01:00",
            "0001-01-01T00:00:00.000Z",
        ] {
            let t = GoTime::parse_rfc3339(text).unwrap();
            assert!(t.is_zero(), "{text}");
        }
        let almost = GoTime::parse_rfc3339("0001-01-01T00:00:00.5Z").unwrap();
        assert!(!almost.is_zero());
        assert_eq!(almost.to_rfc3339_utc(), "0001-01-01T00:00:00Z");
    }

    #[test]
    fn the_whole_four_digit_range_is_kept() {
        for text in [
            "0000-01-01T00:00:00Z",
            "0001-01-01T00:00:01Z",
            "0999-06-15T12:00:00Z",
            "1600-01-01T00:00:00Z",
            "1677-09-21T00:12:43Z",
            "1970-01-01T00:00:00Z",
            "2262-04-11T23:47:17Z",
            "2300-01-01T00:00:00Z",
            "9999-12-31T23:59:59Z",
        ] {
            assert_eq!(go(text), text);
        }
    }

    #[test]
    fn offsets_fractions_and_go_leniency() {
        let cases = [
            ("2024-05-07T07:02:34.123456+02:00", "2024-05-07T05:02:34Z"),
            ("2024-05-07T05:02:34,9Z", "2024-05-07T05:02:34Z"),
            ("2024-05-07T5:02:34Z", "2024-05-07T05:02:34Z"),
            ("2024-05-07T05:02:34.1234567891234Z", "2024-05-07T05:02:34Z"),
            ("2024-02-29T00:00:00-24:60", "2024-03-01T01:00:00Z"),
            ("1969-12-31T23:59:59.5Z", "1969-12-31T23:59:59Z"),
            // An offset may push the year out of 0000-9999; Go keeps and prints it so.
            ("0000-01-01T00:00:00+01:00", "-0001-12-31T23:00:00Z"),
            ("9999-12-31T23:59:59-01:00", "10000-01-01T00:59:59Z"),
        ];
        for (text, utc) in cases {
            assert_eq!(go(text), utc, "{text}");
        }
        let t = GoTime::parse_rfc3339("1969-12-31T23:59:59.25Z").unwrap();
        assert_eq!((t.unix_seconds(), t.subsec_nanos()), (-1, 250_000_000));
        assert_eq!(t.unix_nanos(), -750_000_000);
    }

    #[test]
    fn what_go_refuses_is_refused_with_the_reason() {
        let cases = [
            ("", "four-digit year"),
            ("yesterday", "four-digit year"),
            ("10000-01-01T00:00:00Z", "\"-\""),
            ("-001-01-01T00:00:00Z", "four-digit year"),
            ("+2024-01-01T00:00:00Z", "four-digit year"),
            ("2024-1-01T00:00:00Z", "two-digit month"),
            ("2024-13-01T00:00:00Z", "month out of range"),
            ("2024-00-01T00:00:00Z", "month out of range"),
            ("2023-02-29T00:00:00Z", "day out of range"),
            ("2024-04-31T00:00:00Z", "day out of range"),
            ("2024-01-00T00:00:00Z", "day out of range"),
            ("2024-01-01 00:00:00Z", "\"T\""),
            ("2024-01-01t00:00:00Z", "\"T\""),
            ("2024-01-01T24:00:00Z", "hour out of range"),
            ("2024-01-01T00:60:00Z", "minute out of range"),
            ("2024-01-01T23:59:60Z", "second out of range"),
            ("2024-01-01T00:00Z", "\":\""),
            ("2024-01-01T00:00:00", "offset"),
            ("2024-01-01T00:00:00z", "offset"),
            ("2024-01-01T00:00:00+0200", "offset"),
            (
                "2024-01-01T00:00:00+25:00",
                "time zone offset hour out of range",
            ),
            (
                "2024-01-01T00:00:00+02:61",
                "time zone offset minute out of range",
            ),
            ("2024-01-01T00:00:00.Z", "offset"),
            ("2024-01-01T00:00:00ZZ", "extra text"),
            ("2024-01-01T00:00:00+02:00 ", "extra text"),
        ];
        for (text, reason) in cases {
            let err = GoTime::parse_rfc3339(text).unwrap_err().to_string();
            assert!(err.contains(reason), "{text:?}: {err}");
            assert!(err.contains("RFC 3339"), "{text:?}: {err}");
        }
    }

    #[test]
    fn converts_to_and_from_jiff() {
        let ts: Timestamp = "2024-05-07T05:02:34.5Z".parse().unwrap();
        let t = GoTime::from(ts);
        assert_eq!(t.to_timestamp(), Some(ts));
        let before: Timestamp = "1969-12-31T23:59:59.75Z".parse().unwrap();
        let t = GoTime::from(before);
        assert_eq!((t.unix_seconds(), t.subsec_nanos()), (-1, 750_000_000));
        assert_eq!(t.to_timestamp(), Some(before));
        let max = GoTime::parse_rfc3339("9999-12-31T23:59:59Z").unwrap();
        assert_eq!(max.to_timestamp(), None);
        assert_eq!(GoTime::new(0, 1_000_000_000), None);
    }

    proptest! {
        #[test]
        fn formatting_agrees_with_jiff_where_jiff_reaches(
            seconds in -62_167_219_200i64..=253_402_214_399i64,
            nanos in 0u32..1_000_000_000,
        ) {
            let t = GoTime::new(seconds, nanos).unwrap();
            let ts = t.to_timestamp().unwrap();
            let jiff = Timestamp::from_second(seconds).unwrap().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
            prop_assert_eq!(t.to_rfc3339_utc(), jiff);
            prop_assert_eq!(GoTime::from(ts), t);
        }

        #[test]
        fn printed_utc_times_parse_back(
            seconds in -62_167_219_200i64..=253_402_300_799i64,
        ) {
            let t = GoTime::new(seconds, 0).unwrap();
            prop_assert_eq!(GoTime::parse_rfc3339(&t.to_rfc3339_utc()).unwrap(), t);
        }
    }
}
