//! What a send attempt means for the delivery: delivered, retry (and when), or
//! dead (and why). Classification lives here and only here.

use std::time::Duration;

use jiff::Timestamp;

/// The result of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The destination accepted it.
    Delivered {
        /// The HTTP status.
        status: u16,
    },
    /// A transient failure; try again, not before `after` when the
    /// destination said so.
    Retry {
        /// What went wrong.
        reason: String,
        /// The HTTP status, 0 when there was no response.
        status: u16,
        /// The destination's `Retry-After`, when it sent one.
        after: Option<Duration>,
        /// The start of the response body.
        body: String,
    },
    /// It can never succeed as it is: dead-letter it now.
    Dead {
        /// Why, in words an operator can act on.
        reason: String,
        /// The HTTP status, 0 when there was no response.
        status: u16,
        /// The start of the response body.
        body: String,
    },
}

/// How many bytes of a response body are kept for dead letters and logs.
pub const BODY_EXCERPT_BYTES: usize = 512;

/// Classifies an HTTP response: 2xx delivered; 408, 429 and 5xx except 501
/// retried; everything else dead.
#[must_use]
pub fn classify_status(status: u16, retry_after: Option<Duration>, body: String) -> Outcome {
    match status {
        200..=299 => Outcome::Delivered { status },
        408 | 429 | 500 | 502..=599 => Outcome::Retry {
            reason: format!("destination answered {status}"),
            status,
            after: retry_after,
            body,
        },
        _ => Outcome::Dead {
            reason: format!("destination answered {status}"),
            status,
            body,
        },
    }
}

/// Parses `Retry-After`: delay-seconds or an HTTP date (a past date is 0).
#[must_use]
pub fn parse_retry_after(value: &str, now: Timestamp) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = jiff::fmt::rfc2822::parse(value).ok()?.timestamp();
    let wait = date.as_millisecond() - now.as_millisecond();
    Some(Duration::from_millis(u64::try_from(wait).unwrap_or(0)))
}

/// The delay before attempt `attempt + 1`: exponential from `base`, capped at
/// `max`, with full jitter over the upper half so replicas do not retry in step.
#[must_use]
pub fn backoff(attempt: u64, base: Duration, max: Duration) -> Duration {
    let exponent = u32::try_from(attempt.saturating_sub(1).min(30)).unwrap_or(30);
    let ceiling = base.saturating_mul(2u32.saturating_pow(exponent)).min(max);
    let half = ceiling / 2;
    half + half.mul_f64(fastrand::f64())
}

/// The first [`BODY_EXCERPT_BYTES`] of a body, on a character boundary, with
/// every `secret` replaced by `*****`.
#[must_use]
pub fn excerpt(body: &[u8], secrets: &[&str]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut text = mask(&text, secrets);
    if text.len() > BODY_EXCERPT_BYTES {
        let mut end = BODY_EXCERPT_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// Replaces every non-empty `secret` in `text` with `*****`.
#[must_use]
pub fn mask(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_owned();
    for secret in secrets.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        out = out.replace(secret, "*****");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified_like_the_policy_says() {
        for status in [200, 201, 202, 204, 299] {
            assert!(matches!(
                classify_status(status, None, String::new()),
                Outcome::Delivered { .. }
            ));
        }
        for status in [408, 429, 500, 502, 503, 504, 599] {
            assert!(
                matches!(
                    classify_status(status, None, String::new()),
                    Outcome::Retry { .. }
                ),
                "{status}"
            );
        }
        for status in [300, 400, 401, 403, 404, 410, 422, 501] {
            assert!(
                matches!(
                    classify_status(status, None, String::new()),
                    Outcome::Dead { .. }
                ),
                "{status}"
            );
        }
    }

    #[test]
    fn retry_after_takes_seconds_and_dates() {
        let now: Timestamp = "2024-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after("Mon, 01 Jan 2024 00:00:10 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Sun, 31 Dec 2023 23:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let base = Duration::from_secs(1);
        let max = Duration::from_secs(60);
        for _ in 0..100 {
            let first = backoff(1, base, max);
            assert!(first >= Duration::from_millis(500) && first <= base);
            let tenth = backoff(10, base, max);
            assert!(tenth >= Duration::from_secs(30) && tenth <= max);
        }
    }

    #[test]
    fn excerpts_are_short_and_masked() {
        let body = format!("token xoxb-123 rejected {}", "é".repeat(600));
        let text = excerpt(body.as_bytes(), &["xoxb-123", ""]);
        assert!(text.starts_with("token ***** rejected"));
        assert!(text.len() <= BODY_EXCERPT_BYTES);
    }
}
