//! Times in templates: printed as Go prints a `time.Time` in UTC, read back
//! from that form or RFC 3339, and formatted with Go's reference-time
//! layouts (`2006-01-02 15:04`), as Sprig's `date` does. Every time is in
//! UTC, so the zone parts of a layout always print UTC's.

use jiff::Timestamp;
use jiff::civil::{DateTime, Weekday};
use jiff::tz::TimeZone;

use crate::gotime::GoTime;

/// Go's zero time, as `.Timestamp` prints when the event has none.
pub const ZERO_TIME: &str = "0001-01-01 00:00:00 +0000 UTC";

/// Go's `time.Time.String()` layout.
const GO_STRING: &str = "2006-01-02 15:04:05.999999999 -0700 MST";

/// `t` as Go prints it: `2024-05-01 12:00:00.5 +0000 UTC`.
#[must_use]
pub fn go_string(t: GoTime) -> String {
    match t.to_timestamp() {
        Some(ts) => format(GO_STRING, ts),
        // Beyond what jiff holds (Go's years 0 and 10000): RFC 3339 still says it.
        None => t.to_rfc3339_utc(),
    }
}

/// The time `text` names: Go's printed form (as `.Timestamp` and `now`
/// give it) or RFC 3339.
#[must_use]
pub fn parse(text: &str) -> Option<Timestamp> {
    let text = text.trim();
    if let Ok(ts) = text.parse::<Timestamp>() {
        return Some(ts);
    }
    // `2024-05-01 12:00:00.5 +0000 UTC`: the zone name is UTC's or repeats the offset.
    let mut parts = text.rsplitn(2, ' ');
    let (_zone, rest) = (parts.next()?, parts.next()?);
    jiff::fmt::strtime::parse("%Y-%m-%d %H:%M:%S%.f %z", rest)
        .and_then(|parsed| parsed.to_timestamp())
        .ok()
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

fn weekday_name(day: Weekday) -> &'static str {
    match day {
        Weekday::Monday => "Monday",
        Weekday::Tuesday => "Tuesday",
        Weekday::Wednesday => "Wednesday",
        Weekday::Thursday => "Thursday",
        Weekday::Friday => "Friday",
        Weekday::Saturday => "Saturday",
        Weekday::Sunday => "Sunday",
    }
}

/// One element of a Go layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Std {
    LongMonth,
    Month,
    NumMonth,
    ZeroMonth,
    LongWeekDay,
    WeekDay,
    Day,
    UnderDay,
    ZeroDay,
    ZeroYearDay,
    Hour,
    Hour12,
    ZeroHour12,
    Minute,
    ZeroMinute,
    Second,
    ZeroSecond,
    LongYear,
    Year,
    PM,
    Pm,
    /// A zone: its text for UTC.
    Zone(&'static str),
    /// Fractional seconds: digits, and whether trailing zeros are trimmed.
    Fraction(usize, bool, char),
}

/// The layout element at the start of `rest`, and its length, as Go's
/// `nextStdChunk` finds it.
fn next_std(rest: &str) -> Option<(Std, usize)> {
    let starts_lower = |s: &str| s.chars().next().is_some_and(|c| c.is_ascii_lowercase());
    let b = rest.as_bytes();
    let at = |s: &str| rest.starts_with(s);
    match b.first()? {
        b'J' if at("January") => Some((Std::LongMonth, 7)),
        b'J' if at("Jan") && !starts_lower(&rest[3..]) => Some((Std::Month, 3)),
        b'M' if at("Monday") => Some((Std::LongWeekDay, 6)),
        b'M' if at("Mon") && !starts_lower(&rest[3..]) => Some((Std::WeekDay, 3)),
        b'M' if at("MST") => Some((Std::Zone("UTC"), 3)),
        b'0' if at("002") => Some((Std::ZeroYearDay, 3)),
        b'0' => match b.get(1)? {
            b'1' => Some((Std::ZeroMonth, 2)),
            b'2' => Some((Std::ZeroDay, 2)),
            b'3' => Some((Std::ZeroHour12, 2)),
            b'4' => Some((Std::ZeroMinute, 2)),
            b'5' => Some((Std::ZeroSecond, 2)),
            b'6' => Some((Std::Year, 2)),
            _ => None,
        },
        b'1' if at("15") => Some((Std::Hour, 2)),
        b'1' => Some((Std::NumMonth, 1)),
        b'2' if at("2006") => Some((Std::LongYear, 4)),
        b'2' => Some((Std::Day, 1)),
        b'_' if at("_2") && !at("_2006") => Some((Std::UnderDay, 2)),
        b'3' => Some((Std::Hour12, 1)),
        b'4' => Some((Std::Minute, 1)),
        b'5' => Some((Std::Second, 1)),
        b'P' if at("PM") => Some((Std::PM, 2)),
        b'p' if at("pm") => Some((Std::Pm, 2)),
        b'-' | b'Z' => {
            let z = b[0] == b'Z';
            [
                ("070000", "+000000"),
                ("07:00:00", "+00:00:00"),
                ("0700", "+0000"),
                ("07:00", "+00:00"),
                ("07", "+00"),
            ]
            .into_iter()
            .find(|(form, _)| rest[1..].starts_with(form))
            .map(|(form, utc)| (Std::Zone(if z { "Z" } else { utc }), form.len() + 1))
        }
        b'.' | b',' => {
            let digit = *b.get(1)?;
            if digit != b'0' && digit != b'9' {
                return None;
            }
            let run = b[1..].iter().take_while(|c| **c == digit).count();
            let after = b.get(1 + run);
            (!after.is_some_and(u8::is_ascii_digit))
                .then_some((Std::Fraction(run, digit == b'9', char::from(b[0])), 1 + run))
        }
        _ => None,
    }
}

/// `ts` (in UTC) in Go's `layout`.
#[must_use]
pub fn format(layout: &str, ts: Timestamp) -> String {
    let t: DateTime = ts.to_zoned(TimeZone::UTC).datetime();
    let mut out = String::with_capacity(layout.len() + 8);
    let mut rest = layout;
    while !rest.is_empty() {
        let Some((std, len)) = next_std(rest) else {
            let c = rest.chars().next().unwrap_or_default();
            out.push(c);
            rest = &rest[c.len_utf8()..];
            continue;
        };
        rest = &rest[len..];
        let hour12 = match t.hour() % 12 {
            0 => 12,
            h => h,
        };
        let month = usize::try_from(t.month() - 1).unwrap_or(0);
        match std {
            Std::LongMonth => out.push_str(MONTHS[month]),
            Std::Month => out.push_str(&MONTHS[month][..3]),
            Std::NumMonth => out.push_str(&t.month().to_string()),
            Std::ZeroMonth => out.push_str(&format!("{:02}", t.month())),
            Std::LongWeekDay => out.push_str(weekday_name(t.weekday())),
            Std::WeekDay => out.push_str(&weekday_name(t.weekday())[..3]),
            Std::Day => out.push_str(&t.day().to_string()),
            Std::UnderDay => out.push_str(&format!("{:>2}", t.day())),
            Std::ZeroDay => out.push_str(&format!("{:02}", t.day())),
            Std::ZeroYearDay => out.push_str(&format!("{:03}", t.day_of_year())),
            Std::Hour => out.push_str(&format!("{:02}", t.hour())),
            Std::Hour12 => out.push_str(&hour12.to_string()),
            Std::ZeroHour12 => out.push_str(&format!("{hour12:02}")),
            Std::Minute => out.push_str(&t.minute().to_string()),
            Std::ZeroMinute => out.push_str(&format!("{:02}", t.minute())),
            Std::Second => out.push_str(&t.second().to_string()),
            Std::ZeroSecond => out.push_str(&format!("{:02}", t.second())),
            Std::LongYear => out.push_str(&format!("{:04}", t.year())),
            Std::Year => out.push_str(&format!("{:02}", t.year().rem_euclid(100))),
            Std::PM => out.push_str(if t.hour() >= 12 { "PM" } else { "AM" }),
            Std::Pm => out.push_str(if t.hour() >= 12 { "pm" } else { "am" }),
            Std::Zone(text) => out.push_str(text),
            Std::Fraction(digits, trim, separator) => {
                let nanos = format!("{:09}", t.subsec_nanosecond());
                let mut shown = &nanos[..digits.min(9)];
                if trim {
                    shown = shown.trim_end_matches('0');
                }
                if !shown.is_empty() {
                    out.push(separator);
                    out.push_str(shown);
                    // Go pads past nanoseconds with zeros.
                    if !trim {
                        out.extend(std::iter::repeat_n('0', digits.saturating_sub(9)));
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn layouts_print_as_go_prints_them() {
        let t = at("2024-03-05T14:07:09.120Z");
        for (layout, expected) in [
            ("2006-01-02T15:04:05Z07:00", "2024-03-05T14:07:09Z"),
            (
                "2006-01-02 15:04:05.000 -0700 MST",
                "2024-03-05 14:07:09.120 +0000 UTC",
            ),
            ("Jan _2 3:04PM", "Mar  5 2:07PM"),
            ("Monday, January 2, 2006", "Tuesday, March 5, 2024"),
            ("Mon Jan 02 06 pm .999", "Tue Mar 05 24 pm .12"),
            ("002 1/2", "065 3/5"),
            ("Janitor Month", "Janitor Month"),
            ("15h04m, 100%", "14h07m, 300%"),
        ] {
            assert_eq!(format(layout, t), expected, "{layout}");
        }
        assert_eq!(
            go_string(GoTime::parse_rfc3339("2024-03-05T14:07:09Z").unwrap()),
            "2024-03-05 14:07:09 +0000 UTC"
        );
    }

    #[test]
    fn printed_times_read_back() {
        for text in [
            "2024-03-05 14:07:09.12 +0000 UTC",
            "2024-03-05T14:07:09.12Z",
            "2024-03-05T15:07:09.12+01:00",
        ] {
            assert_eq!(parse(text), Some(at("2024-03-05T14:07:09.12Z")), "{text}");
        }
        assert_eq!(parse("yesterday"), None);
    }
}
