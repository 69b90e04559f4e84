//! One writer at a time among replicas, through a `coordination.k8s.io/v1`
//! Lease, the way client-go's leader election does it.
//!
//! A replica creates the Lease when there is none, and its holder renews it
//! every [`LeaseSettings::renew_every`] with a replace that names the
//! resourceVersion it read, so that two replicas never both win a write.
//! Another replica takes the Lease over once its holder has not renewed
//! for the Lease's duration, measured on the taker's own clock from when it
//! last saw the Lease change (never by comparing the timestamps in it,
//! which come from another node's clock), and counts the takeover in
//! `leaseTransitions`.
//!
//! The holder stops leading as soon as it has not renewed for the duration
//! (its last successful renew counted from before it was sent, so it stops
//! before anyone may take over), and on cancel it releases the Lease by
//! clearing `holderIdentity`, so another replica takes over at its next try.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::api_code;

/// How long a Lease holds and how often it is tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseSettings {
    /// How long a holder that stopped renewing keeps the Lease; written to
    /// `leaseDurationSeconds`, rounded up to whole seconds.
    pub duration: Duration,
    /// How often the holder renews (at most half the duration).
    pub renew_every: Duration,
    /// How often a replica that does not hold the Lease tries to take it,
    /// and a holder whose renew failed tries again (at most half the
    /// duration).
    pub retry_every: Duration,
}

/// Whether this replica leads; cheap to clone.
#[derive(Debug, Clone)]
pub struct Leadership {
    rx: watch::Receiver<bool>,
}

/// The task that holds or waits for the Lease.
struct Elector {
    api: Api<Lease>,
    lease: String,
    identity: String,
    settings: LeaseSettings,
    tx: watch::Sender<bool>,
    /// The Lease's spec as last seen, and when it was first seen so.
    observed: Option<(LeaseSpec, Instant)>,
}

// === impl LeaseSettings ===

impl Default for LeaseSettings {
    fn default() -> Self {
        Self {
            duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
            retry_every: Duration::from_secs(2),
        }
    }
}

// === impl Leadership ===

impl Leadership {
    /// The handle, and the task that acquires, renews and, on `cancel`,
    /// releases the Lease `namespace/name` as `identity` (the pod name);
    /// the caller spawns the task. Nobody leads until the task runs.
    pub fn start(
        client: kube::Client,
        namespace: &str,
        name: &str,
        identity: String,
        settings: LeaseSettings,
        cancel: CancellationToken,
    ) -> (Self, impl Future<Output = ()> + Send + 'static) {
        let (tx, rx) = watch::channel(false);
        let half = settings.duration / 2;
        let elector = Elector {
            api: Api::namespaced(client, namespace),
            lease: name.to_owned(),
            identity,
            settings: LeaseSettings {
                duration: settings.duration,
                renew_every: settings.renew_every.min(half),
                retry_every: settings.retry_every.min(half),
            },
            tx,
            observed: None,
        };
        let task = async move {
            let namespace = elector.api.namespace().unwrap_or_default().to_owned();
            let lease = format!("{namespace}/{}", elector.lease);
            elector.run(&lease, cancel).await;
        };
        (Self { rx }, task)
    }

    /// Whether this replica leads now: never once the task has ended or
    /// was dropped.
    #[must_use]
    pub fn is_leader(&self) -> bool {
        self.rx.has_changed().is_ok() && *self.rx.borrow()
    }

    /// A receiver that sees every change of leadership (`true` while this
    /// replica leads); it ends when the task does.
    #[must_use]
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.rx.clone()
    }
}

// === impl Elector ===

impl Elector {
    async fn run(mut self, lease: &str, cancel: CancellationToken) {
        let LeaseSettings {
            duration,
            renew_every,
            retry_every,
        } = self.settings;
        let identity = self.identity.clone();
        let mut leader = false;
        let mut failing = false;
        // While leading: when leadership lapses unless renewed.
        let mut deadline = Instant::now();
        loop {
            let started = Instant::now();
            let limit = if leader { deadline } else { started + duration };
            let result = tokio::select! {
                () = cancel.cancelled() => break,
                result = tokio::time::timeout_at(limit, self.try_acquire_or_renew()) => result,
            };
            match result {
                Ok(Ok(held)) => {
                    failing = false;
                    if held {
                        deadline = started + duration;
                    }
                    if held != leader {
                        leader = held;
                        self.tx.send_replace(held);
                        if held {
                            tracing::info!(lease, identity, "Acquired the leader Lease.");
                        } else {
                            tracing::info!(
                                lease,
                                identity,
                                "Lost the leader Lease: another replica holds it."
                            );
                        }
                    }
                }
                Ok(Err(error)) => {
                    if !failing || api_code(&error) == Some(403) {
                        log_failure(lease, &error);
                    }
                    failing = true;
                }
                Err(_) => {
                    if !failing {
                        tracing::warn!(lease, "The API server did not answer about the Lease.");
                    }
                    failing = true;
                }
            }
            if leader && failing && Instant::now() >= deadline {
                leader = false;
                self.tx.send_replace(false);
                tracing::info!(
                    lease,
                    identity,
                    "Lost the leader Lease: it could not be renewed in time."
                );
            }
            let mut wait = if leader && !failing {
                renew_every
            } else {
                retry_every
            };
            if leader {
                wait = wait.min(deadline.saturating_duration_since(Instant::now()));
            }
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(wait) => {}
            }
        }
        if leader {
            self.tx.send_replace(false);
            match tokio::time::timeout(duration, self.release()).await {
                Ok(Ok(())) => tracing::info!(lease, identity, "Released the leader Lease."),
                Ok(Err(error)) => log_failure(lease, &error),
                Err(_) => tracing::warn!(lease, "The API server did not answer the release."),
            }
        }
        self.tx.send_replace(false);
    }

    /// Creates, renews or takes over the Lease; whether this replica holds
    /// it afterwards.
    async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let now = Instant::now();
        let Some(mut lease) = self.api.get_opt(&self.lease).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.lease.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(
                    claim(
                        &LeaseSpec::default(),
                        &self.identity,
                        true,
                        Timestamp::now(),
                        seconds(self.settings.duration),
                    )
                    .unwrap_or_default(),
                ),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(created) => {
                    self.observe(created.spec.unwrap_or_default(), Instant::now());
                    Ok(true)
                }
                Err(error) if api_code(&error) == Some(409) => Ok(false),
                Err(error) => Err(error),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let since = self.observe(spec.clone(), now);
        let held_for = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .filter(|s| *s > 0)
            .map_or(self.settings.duration, Duration::from_secs);
        let expired = now.saturating_duration_since(since) >= held_for;
        let Some(next) = claim(
            &spec,
            &self.identity,
            expired,
            Timestamp::now(),
            seconds(self.settings.duration),
        ) else {
            return Ok(false);
        };
        lease.spec = Some(next);
        let written = self
            .api
            .replace(&self.lease, &PostParams::default(), &lease)
            .await?;
        self.observe(written.spec.unwrap_or_default(), Instant::now());
        Ok(true)
    }

    /// Notes the Lease's spec as seen at `now`; when it was first seen so.
    fn observe(&mut self, spec: LeaseSpec, now: Instant) -> Instant {
        match &self.observed {
            Some((seen, since)) if *seen == spec => *since,
            _ => {
                self.observed = Some((spec, now));
                now
            }
        }
    }

    /// Clears `holderIdentity` if this replica still holds the Lease.
    async fn release(&mut self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.lease).await? else {
            return Ok(());
        };
        let spec = lease.spec.get_or_insert_default();
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        self.api
            .replace(&self.lease, &PostParams::default(), &lease)
            .await?;
        Ok(())
    }
}

/// The spec that makes `identity` the holder of a Lease now at `current`,
/// or `None` while another holder's claim has not `expired`.
fn claim(
    current: &LeaseSpec,
    identity: &str,
    expired: bool,
    now: Timestamp,
    duration_seconds: i32,
) -> Option<LeaseSpec> {
    let holder = current.holder_identity.as_deref().filter(|h| !h.is_empty());
    let mut next = current.clone();
    match holder {
        Some(holder) if holder == identity => {
            next.acquire_time = current.acquire_time.clone().or(Some(MicroTime(now)));
            next.lease_transitions = Some(current.lease_transitions.unwrap_or(0));
        }
        Some(_) if !expired => return None,
        _ => {
            next.holder_identity = Some(identity.to_owned());
            next.acquire_time = Some(MicroTime(now));
            next.lease_transitions = Some(match current.holder_identity {
                // A Lease nobody ever held starts at zero.
                None if current.renew_time.is_none() => 0,
                _ => current.lease_transitions.unwrap_or(0).saturating_add(1),
            });
        }
    }
    next.renew_time = Some(MicroTime(now));
    next.lease_duration_seconds = Some(duration_seconds);
    Some(next)
}

/// `duration` in whole seconds, rounded up, at least one.
fn seconds(duration: Duration) -> i32 {
    let whole = duration.as_secs() + u64::from(duration.subsec_nanos() > 0);
    i32::try_from(whole.max(1)).unwrap_or(i32::MAX)
}

fn log_failure(lease: &str, error: &kube::Error) {
    match api_code(error) {
        Some(403) => tracing::warn!(
            lease,
            error = %error,
            "Cannot hold the leader Lease: Herald needs permission to get, create and update leases in the coordination.k8s.io group in its namespace."
        ),
        Some(409) => {
            tracing::debug!(lease, error = %error, "Another replica wrote the Lease first.")
        }
        _ => tracing::warn!(lease, error = %error, "Cannot read or write the leader Lease."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2025-01-02T03:04:05Z".parse().expect("a timestamp")
    }

    fn held_by(holder: &str, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.to_owned()),
            lease_transitions: Some(transitions),
            renew_time: Some(MicroTime(Timestamp::UNIX_EPOCH)),
            acquire_time: Some(MicroTime(Timestamp::UNIX_EPOCH)),
            lease_duration_seconds: Some(15),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn a_new_lease_starts_at_zero_transitions() {
        let spec = claim(&LeaseSpec::default(), "a", false, now(), 15).expect("free");
        assert_eq!(spec.holder_identity.as_deref(), Some("a"));
        assert_eq!(spec.lease_transitions, Some(0));
        assert_eq!(spec.lease_duration_seconds, Some(15));
    }

    #[test]
    fn the_holder_renews_keeping_its_acquire_time() {
        let spec = claim(&held_by("a", 3), "a", false, now(), 15).expect("ours");
        assert_eq!(spec.lease_transitions, Some(3));
        assert_eq!(spec.acquire_time, Some(MicroTime(Timestamp::UNIX_EPOCH)));
        assert_eq!(spec.renew_time, Some(MicroTime(now())));
    }

    #[test]
    fn another_holder_is_taken_over_only_when_expired() {
        assert_eq!(claim(&held_by("b", 3), "a", false, now(), 15), None);
        let spec = claim(&held_by("b", 3), "a", true, now(), 15).expect("expired");
        assert_eq!(spec.holder_identity.as_deref(), Some("a"));
        assert_eq!(spec.lease_transitions, Some(4));
        assert_eq!(spec.acquire_time, Some(MicroTime(now())));
    }

    #[test]
    fn a_released_lease_is_free_at_once() {
        let mut released = held_by("b", 3);
        released.holder_identity = None;
        let spec = claim(&released, "a", false, now(), 15).expect("released");
        assert_eq!(spec.lease_transitions, Some(4));
    }

    #[test]
    fn durations_round_up_to_seconds() {
        assert_eq!(seconds(Duration::from_millis(300)), 1);
        assert_eq!(seconds(Duration::from_millis(1500)), 2);
        assert_eq!(seconds(Duration::from_secs(15)), 15);
    }
}
