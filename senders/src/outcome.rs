//! What a send attempt means for the delivery: delivered, retry (and when), or
//! dead (and why), and the backoff between attempts. Answers are judged in
//! [`crate::classify`].

use std::time::Duration;

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
    /// Not tried: it waits for something shared (a destination's turn, a
    /// Slack thread's root another delivery is posting). Put back for
    /// `after`; not a failed attempt.
    Later {
        /// What it waits for.
        reason: String,
        after: Duration,
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

impl Outcome {
    /// The HTTP status it carries (0 when there was no answer).
    #[must_use]
    pub fn status(&self) -> u16 {
        match self {
            Self::Delivered { status } | Self::Retry { status, .. } | Self::Dead { status, .. } => {
                *status
            }
            Self::Later { .. } => 0,
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
