//! Fairness between the clusters of a fleet: each cluster gets a share of
//! ingest, so one cluster posting as fast as it can is refused what is over
//! its share while every other cluster is still served at once.
//!
//! A share is two bounds, both per cluster:
//!
//! - **Events in flight**: requests being received or stored at once (from
//!   the headers to JetStream's ack). A Flux controller posts its events one
//!   at a time from each reconcile worker and waits for the answer, so a
//!   cluster's in-flight count is its controllers' workers at most, tens;
//!   only a cluster that floods holds more. When JetStream slows down, this
//!   is what keeps every cluster's turn: a flooding cluster has no more
//!   publishes ahead of the others' than its share.
//! - **A sustained rate with a burst** (a token bucket): what one cluster
//!   may add to HERALD_EVENTS, which every cluster shares, as its budget and
//!   as the router's queue. Flux posts an event when something happens, and
//!   drops repeats within its rate-limit window, so a cluster's rate is far
//!   below the default.
//!
//! What is over its share is answered `503 Service Unavailable` with a
//! `Retry-After` of a few seconds (gRPC: `UNAVAILABLE` for that event; over
//! HTTP the answer waits [`crate::http::OVER_SHARE_PAUSE`] first, so that a
//! client ignoring `Retry-After` cannot spend ingest's CPU on refusals),
//! because every Flux emitter retries a 503 and some drop a 429. fluxcd/pkg's
//! recorder has always posted with go-retryablehttp, whose policies retry
//! 5xx other than 501 in every version it used (0.6.6 to 0.7.8). A 429 is
//! final in the first recorder (`recorder/`, retryablehttp 0.6.6, 2020), is
//! retried from October 2020 (`runtime/events`, 0.6.7), final again from
//! April 2021 (commit 1b0792bd, "Avoid retrying rate limited events",
//! runtime v0.10.2) and still is (commit 269920c3, runtime v0.72.0), because
//! the notification-controller answers duplicates with it. From
//! retryablehttp 0.7.0 (runtime pins it from May 2022) an emitter waits a
//! 503's `Retry-After`, uncapped, between its four retries; older ones wait
//! 1, 2, 4 and 8 s. So the `Retry-After` is one to four seconds for events in
//! flight (spread, so that a flood's retries do not come back together, and
//! so that four of them span nearly as long as the older backoff), and for
//! the rate the time to the next token, at most ten seconds, plus the same
//! spread.
//!
//! Shares need to know which cluster sent a request, so they apply when a
//! clusters file proves it; without one every event is the one cluster's
//! and nothing is refused for fairness. Clusters are few (those of the
//! file), so the table of shares is never trimmed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// The share of each cluster.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShareLimits {
    /// Events of one cluster received or stored at once; 0 is no bound.
    pub max_in_flight: usize,
    /// Events per second one cluster may send, sustained; 0 is no bound.
    pub rate: f64,
    /// Events one cluster may send at once above its rate.
    pub burst: u32,
}

/// Why a cluster's event was refused: it is over its share.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OverShare {
    /// The cluster already has its share of events in flight.
    #[error(
        "cluster {cluster} already has {limit} events being received or stored, its share; \
         retry in {}s",
        retry_after.as_secs()
    )]
    InFlight {
        /// The cluster.
        cluster: String,
        /// Its share.
        limit: usize,
        /// When to try again.
        retry_after: Duration,
    },
    /// The cluster sent more than its rate allows.
    #[error(
        "cluster {cluster} sends more than its share of {rate} events/s (bursts of {burst}); \
         retry in {}s",
        retry_after.as_secs()
    )]
    Rate {
        /// The cluster.
        cluster: String,
        /// Its rate.
        rate: f64,
        /// Its burst.
        burst: u32,
        /// When to try again.
        retry_after: Duration,
    },
}

impl OverShare {
    /// When the cluster may try again.
    #[must_use]
    pub fn retry_after(&self) -> Duration {
        match self {
            Self::InFlight { retry_after, .. } | Self::Rate { retry_after, .. } => *retry_after,
        }
    }

    /// A short label for the rejection metric.
    #[must_use]
    pub fn reason(&self) -> &'static str {
        match self {
            Self::InFlight { .. } => "cluster_over_share",
            Self::Rate { .. } => "cluster_over_rate",
        }
    }
}

/// Every cluster's share; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Shares {
    inner: Option<Arc<Inner>>,
}

#[derive(Debug)]
struct Inner {
    limits: ShareLimits,
    clusters: Mutex<HashMap<String, Arc<ClusterShare>>>,
}

/// One cluster's share as used now.
#[derive(Debug)]
struct ClusterShare {
    in_flight: Option<Arc<Semaphore>>,
    bucket: Option<Mutex<Bucket>>,
    /// When it was last logged as over its share.
    warned: Mutex<Option<Instant>>,
}

/// A cluster's event admitted within its share; the share is taken back
/// when it is dropped.
#[derive(Debug)]
pub struct Admission {
    _permit: Option<OwnedSemaphorePermit>,
}

// === impl Shares ===

impl Shares {
    /// No cluster is ever refused.
    #[must_use]
    pub fn unlimited() -> Self {
        Self::default()
    }

    /// Each cluster gets `limits`.
    #[must_use]
    pub fn new(limits: ShareLimits) -> Self {
        Self {
            inner: Some(Arc::new(Inner {
                limits,
                clusters: Mutex::default(),
            })),
        }
    }

    /// Admits one of `cluster`'s events now, or refuses it.
    ///
    /// # Errors
    ///
    /// [`OverShare`] when the cluster has its share in flight, or is over its rate.
    pub fn try_admit(&self, cluster: &str) -> Result<Admission, OverShare> {
        let Some(inner) = &self.inner else {
            return Ok(Admission { _permit: None });
        };
        let share = inner.share(cluster);
        let turn = share
            .in_flight
            .as_ref()
            .map(|slots| Arc::clone(slots).try_acquire_owned().ok());
        inner.decide(&share, cluster, turn)
    }

    /// Admits one of `cluster`'s events, waiting up to `wait` for a turn
    /// among the cluster's own events in flight (the events of a gRPC batch
    /// take turns this way); the rate is not waited for.
    ///
    /// # Errors
    ///
    /// [`OverShare`] when no turn came within `wait`, or the cluster is over its rate.
    pub async fn admit(&self, cluster: &str, wait: Duration) -> Result<Admission, OverShare> {
        let Some(inner) = &self.inner else {
            return Ok(Admission { _permit: None });
        };
        let share = inner.share(cluster);
        let turn = match &share.in_flight {
            Some(slots) => Some(
                tokio::time::timeout(wait, Arc::clone(slots).acquire_owned())
                    .await
                    .ok()
                    // The semaphore is never closed.
                    .and_then(Result::ok),
            ),
            None => None,
        };
        inner.decide(&share, cluster, turn)
    }
}

// === impl Inner ===

impl Inner {
    fn share(&self, cluster: &str) -> Arc<ClusterShare> {
        let mut clusters = self.clusters.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(share) = clusters.get(cluster) {
            return Arc::clone(share);
        }
        let limits = self.limits;
        let share = Arc::new(ClusterShare {
            in_flight: (limits.max_in_flight > 0)
                .then(|| Arc::new(Semaphore::new(limits.max_in_flight))),
            bucket: (limits.rate > 0.0).then(|| Mutex::new(Bucket::full(limits.burst))),
            warned: Mutex::default(),
        });
        clusters.insert(cluster.to_owned(), Arc::clone(&share));
        share
    }

    /// Admits the event given its `turn` in flight (`None`: no bound;
    /// `Some(None)`: no turn) and a token of the rate.
    fn decide(
        &self,
        share: &ClusterShare,
        cluster: &str,
        turn: Option<Option<OwnedSemaphorePermit>>,
    ) -> Result<Admission, OverShare> {
        let admitted = match turn {
            Some(None) => Err(OverShare::InFlight {
                cluster: cluster.to_owned(),
                limit: self.limits.max_in_flight,
                retry_after: retry_after(Duration::ZERO),
            }),
            turn => self.take_token(share, cluster).map(|()| Admission {
                _permit: turn.flatten(),
            }),
        };
        if let Err(over) = &admitted {
            share.warn(over);
        }
        admitted
    }

    fn take_token(&self, share: &ClusterShare, cluster: &str) -> Result<(), OverShare> {
        let Some(bucket) = &share.bucket else {
            return Ok(());
        };
        let limits = self.limits;
        bucket
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take(limits.rate, limits.burst, Instant::now())
            .map_err(|wait| OverShare::Rate {
                cluster: cluster.to_owned(),
                rate: limits.rate,
                burst: limits.burst,
                retry_after: retry_after(wait),
            })
    }
}

/// How often a cluster over its share is logged, at most.
const WARN_EVERY: Duration = Duration::from_secs(60);

// === impl ClusterShare ===

impl ClusterShare {
    /// Logs that the cluster is over its share, once a minute at most: a
    /// flood would otherwise flood the log too.
    fn warn(&self, over: &OverShare) {
        let now = Instant::now();
        let mut warned = self.warned.lock().unwrap_or_else(PoisonError::into_inner);
        if warned.is_some_and(|at| now.saturating_duration_since(at) < WARN_EVERY) {
            return;
        }
        *warned = Some(now);
        tracing::warn!(
            reason = over.reason(),
            error = %over,
            "A cluster is over its share of ingest; what is over it is answered 503 (logged once a minute at most)."
        );
    }
}

/// The longest a refused cluster is told to wait before the spread: Flux
/// emitters wait a 503's `Retry-After` whatever it says, in the reconcile
/// worker that posts, so it is kept short even when the next token of a
/// slow rate is further away (the retry is then refused again).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(10);

/// How long a refused cluster is told to wait: `wait` in whole seconds (at
/// least one, at most [`MAX_RETRY_AFTER`]), plus a spread of up to three.
fn retry_after(wait: Duration) -> Duration {
    let least = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let least = least.clamp(1, MAX_RETRY_AFTER.as_secs());
    Duration::from_secs(least + fastrand::u64(0..=3))
}

/// A token bucket: `burst` tokens at most, refilled at the rate.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

// === impl Bucket ===

impl Bucket {
    fn full(burst: u32) -> Self {
        Self {
            tokens: f64::from(burst.max(1)),
            at: Instant::now(),
        }
    }

    /// Takes a token, or says how long until one is there.
    fn take(&mut self, rate: f64, burst: u32, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(f64::from(burst.max(1)));
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_in_flight: usize, rate: f64, burst: u32) -> ShareLimits {
        ShareLimits {
            max_in_flight,
            rate,
            burst,
        }
    }

    #[test]
    fn a_cluster_over_its_in_flight_share_is_refused_and_others_are_not() {
        let shares = Shares::new(limits(2, 0.0, 0));
        let a1 = shares.try_admit("a").unwrap();
        let _a2 = shares.try_admit("a").unwrap();
        let refused = shares.try_admit("a").unwrap_err();
        assert_eq!(refused.reason(), "cluster_over_share");
        assert!((1..=4).contains(&refused.retry_after().as_secs()));
        assert!(
            refused
                .to_string()
                .contains("cluster a already has 2 events")
        );
        let _b = shares.try_admit("b").unwrap();
        drop(a1);
        let _a3 = shares.try_admit("a").unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_cluster_over_its_rate_is_refused_until_the_bucket_refills() {
        let shares = Shares::new(limits(0, 2.0, 3));
        for _ in 0..3 {
            drop(shares.try_admit("a").unwrap());
        }
        let refused = shares.try_admit("a").unwrap_err();
        assert_eq!(refused.reason(), "cluster_over_rate");
        assert!((1..=4).contains(&refused.retry_after().as_secs()));
        drop(shares.try_admit("b").unwrap());
        tokio::time::advance(Duration::from_millis(500)).await;
        drop(shares.try_admit("a").unwrap());
        assert!(shares.try_admit("a").is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn admit_waits_its_turn_among_the_clusters_own_events() {
        let shares = Shares::new(limits(1, 0.0, 0));
        let held = shares.try_admit("a").unwrap();
        let waiting = {
            let shares = shares.clone();
            tokio::spawn(async move { shares.admit("a", Duration::from_secs(5)).await })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        drop(held);
        assert!(waiting.await.unwrap().is_ok());
        let _held = shares.try_admit("a").unwrap();
        let refused = shares.admit("a", Duration::from_secs(5)).await.unwrap_err();
        assert_eq!(refused.reason(), "cluster_over_share");
    }

    #[test]
    fn unlimited_shares_refuse_nothing() {
        let shares = Shares::unlimited();
        let held: Vec<_> = (0..1000).map(|_| shares.try_admit("a").unwrap()).collect();
        assert_eq!(held.len(), 1000);
    }

    #[test]
    fn retry_after_is_whole_seconds_at_least_the_wait() {
        for _ in 0..100 {
            let after = retry_after(Duration::from_millis(2500));
            assert!((3..=6).contains(&after.as_secs()), "{after:?}");
            assert_eq!(after.subsec_nanos(), 0);
            let capped = retry_after(Duration::from_secs(3600));
            assert!((10..=13).contains(&capped.as_secs()), "{capped:?}");
        }
    }
}
