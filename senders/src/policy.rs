//! The retry policy and the pacing rate, per provider type: one place that
//! says how often, how long and how fast Herald may try a destination.

use std::collections::HashMap;

use herald_flux::ProviderType;
use std::str::FromStr;
use std::time::Duration;

use herald_runtime::nats::parse_duration;

/// How a failing delivery is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Failed attempts before the delivery is dead.
    pub max_attempts: u64,
    /// The first retry delay; each further one doubles, with jitter.
    pub base: Duration,
    /// The longest retry delay.
    pub max: Duration,
    /// A delivery older than this (since ingest received its event) is dead.
    pub max_age: Duration,
}

/// `TYPE:key=value,...`, overriding the default policy for one provider type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyOverride {
    pub provider_type: String,
    pub max_attempts: Option<u64>,
    pub base: Option<Duration>,
    pub max: Option<Duration>,
    pub max_age: Option<Duration>,
}

/// A Flux provider type's name, or why it is none.
fn known_type(text: &str) -> Result<String, String> {
    text.trim()
        .parse::<ProviderType>()
        .map(|t| t.as_str().to_owned())
        .map_err(|e| e.to_string())
}

impl FromStr for PolicyOverride {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (provider_type, settings) = text.split_once(':').ok_or_else(|| {
            format!(
                "{text:?}: expected TYPE:key=value,... such as slack:max-attempts=20,max-age=6h"
            )
        })?;
        let provider_type = known_type(provider_type)?;
        let mut out = Self {
            provider_type,
            max_attempts: None,
            base: None,
            max: None,
            max_age: None,
        };
        for setting in settings.split(',').filter(|s| !s.trim().is_empty()) {
            let (key, value) = setting
                .split_once('=')
                .ok_or_else(|| format!("{setting:?}: expected key=value"))?;
            let value = value.trim();
            match key.trim() {
                "max-attempts" => {
                    out.max_attempts = Some(
                        value
                            .parse()
                            .map_err(|_| format!("max-attempts {value:?} is not a number"))?,
                    );
                }
                "base" => out.base = Some(parse_duration(value)?),
                "max" => out.max = Some(parse_duration(value)?),
                "max-age" => out.max_age = Some(parse_duration(value)?),
                other => {
                    return Err(format!(
                        "unknown setting {other:?}: use max-attempts, base, max or max-age"
                    ));
                }
            }
        }
        Ok(out)
    }
}

/// A steady rate for one provider type: `TYPE=N/s` (or `/m`, `/h`).
#[derive(Debug, Clone, PartialEq)]
pub struct PaceSetting {
    pub provider_type: String,
    /// Time between two requests to one destination; `None`: no steady rate.
    pub interval: Option<Duration>,
}

impl FromStr for PaceSetting {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (provider_type, rate) = text.split_once('=').ok_or_else(|| {
            format!("{text:?}: expected TYPE=RATE such as slack=1/s or generic=off")
        })?;
        let interval = if rate.trim() == "off" {
            None
        } else {
            let (count, per) = rate
                .split_once('/')
                .ok_or_else(|| format!("rate {rate:?}: expected N/s, N/m or N/h"))?;
            let count: f64 = count
                .trim()
                .parse()
                .map_err(|_| format!("rate {rate:?}: {count:?} is not a number"))?;
            let period = match per.trim() {
                "s" => 1.0,
                "m" => 60.0,
                "h" => 3600.0,
                other => return Err(format!("rate {rate:?}: unknown period {other:?}")),
            };
            if count <= 0.0 {
                return Err(format!("rate {rate:?} must be positive (or off)"));
            }
            Some(Duration::from_secs_f64(period / count))
        };
        Ok(Self {
            provider_type: known_type(provider_type)?,
            interval,
        })
    }
}

/// The resolved policies and rates for every provider type.
#[derive(Debug, Clone)]
pub struct Policies {
    default: RetryPolicy,
    by_type: HashMap<String, RetryPolicy>,
    pace: HashMap<String, Option<Duration>>,
}

// === impl Policies ===

impl Policies {
    /// `default` for every type, then each override on top of it, and the
    /// default paces (each type's [`ProviderType::default_pace`]) replaced
    /// by `paces`.
    #[must_use]
    pub fn new(default: RetryPolicy, overrides: &[PolicyOverride], paces: &[PaceSetting]) -> Self {
        let by_type = overrides
            .iter()
            .map(|o| {
                let policy = RetryPolicy {
                    max_attempts: o.max_attempts.unwrap_or(default.max_attempts),
                    base: o.base.unwrap_or(default.base),
                    max: o.max.unwrap_or(default.max),
                    max_age: o.max_age.unwrap_or(default.max_age),
                };
                (o.provider_type.clone(), policy)
            })
            .collect();
        let mut pace: HashMap<String, Option<Duration>> = ProviderType::ALL
            .iter()
            .filter_map(|t| {
                let per_second = t.default_pace()?;
                Some((
                    t.as_str().to_owned(),
                    Some(Duration::from_secs_f64(1.0 / per_second)),
                ))
            })
            .collect();
        for setting in paces {
            pace.insert(setting.provider_type.clone(), setting.interval);
        }
        Self {
            default,
            by_type,
            pace,
        }
    }

    /// The retry policy of a provider type.
    #[must_use]
    pub fn retry(&self, provider_type: &str) -> RetryPolicy {
        self.by_type
            .get(provider_type)
            .copied()
            .unwrap_or(self.default)
    }

    /// The time between two requests to one destination of this type, if paced.
    #[must_use]
    pub fn pace(&self, provider_type: &str) -> Option<Duration> {
        self.pace.get(provider_type).copied().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT: RetryPolicy = RetryPolicy {
        max_attempts: 12,
        base: Duration::from_secs(2),
        max: Duration::from_secs(600),
        max_age: Duration::from_secs(86_400),
    };

    #[test]
    fn overrides_apply_per_type() {
        let o: PolicyOverride = "github:max-attempts=3,max-age=1h".parse().unwrap();
        let policies = Policies::new(DEFAULT, &[o], &[]);
        assert_eq!(policies.retry("slack"), DEFAULT);
        let github = policies.retry("github");
        assert_eq!(github.max_attempts, 3);
        assert_eq!(github.max_age, Duration::from_secs(3600));
        assert_eq!(github.base, DEFAULT.base);
        assert!("github".parse::<PolicyOverride>().is_err());
        assert!(
            "github:tries=3"
                .parse::<PolicyOverride>()
                .unwrap_err()
                .contains("unknown setting")
        );
    }

    #[test]
    fn paces_default_to_slack_one_per_second() {
        let policies = Policies::new(DEFAULT, &[], &[]);
        assert_eq!(policies.pace("slack"), Some(Duration::from_secs(1)));
        assert_eq!(policies.pace("generic"), None);
        let custom = Policies::new(
            DEFAULT,
            &[],
            &[
                "slack=off".parse().unwrap(),
                "generic=120/m".parse().unwrap(),
            ],
        );
        assert_eq!(custom.pace("slack"), None);
        assert_eq!(custom.pace("generic"), Some(Duration::from_millis(500)));
        assert!("slack=0/s".parse::<PaceSetting>().is_err());
        assert!(
            "slak=1/s"
                .parse::<PaceSetting>()
                .unwrap_err()
                .contains("unknown provider type")
        );
        assert!("gthub:max-attempts=3".parse::<PolicyOverride>().is_err());
        assert!("slack=1/d".parse::<PaceSetting>().is_err());
    }
}
