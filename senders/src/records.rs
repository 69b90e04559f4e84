//! What Herald knows of each Alert and Provider from its deliveries: the
//! newest delivery, the newest failure and why, and counts. Senders note
//! every outcome in memory and merge what they noted into the HERALD_OBJECTS
//! key-value bucket about once a second (counts add up, times keep the
//! newest, with compare-and-set, so every replica's notes survive), instead
//! of a write per delivery. Objects whose newest outcome is a failure are
//! listed on `/readyz`, as are those whose message template failed for
//! their newest delivery that used it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_nats::jetstream::kv;
use herald_flux::convert::{from_time, to_time};
use herald_proto::{ObjectRecord, names};
use herald_runtime::Readiness;
use herald_runtime::kv::{Step, update};
use tokio_util::sync::CancellationToken;

/// How often notes are merged into the bucket.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// How many failing objects `/readyz` lists by name.
const LISTED: usize = 50;

/// The readiness topic of failing objects.
const TOPIC: &str = "failing";

/// One outcome of a delivery, as noted for its Alert and Provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Noted {
    Delivered,
    Retried {
        reason: String,
        status: u16,
    },
    Dead {
        reason: String,
        status: u16,
    },
    /// The object's message template rendered a delivery's message.
    Rendered,
    /// The object's message template failed for a delivery, which was
    /// sent with Flux's message.
    TemplateFailed {
        reason: String,
    },
}

/// What one object's deliveries added since the last merge.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Delta {
    delivered: u64,
    retried: u64,
    dead: u64,
    last_delivered_ms: Option<i64>,
    last_failed: Option<(i64, String, u16)>,
    template_failures: u64,
    last_rendered_ms: Option<i64>,
    last_template_failed: Option<(i64, String)>,
}

type Key = (&'static str, String, String);

/// The notes of this process, and the bucket they are merged into.
#[derive(Clone)]
pub struct Records {
    store: kv::Store,
    pending: Arc<Mutex<HashMap<Key, Delta>>>,
    /// Failing objects as last merged: key → line for `/readyz`.
    failing: Arc<Mutex<BTreeMap<Key, String>>>,
    readiness: Readiness,
}

impl std::fmt::Debug for Records {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Records")
    }
}

impl Records {
    /// Records kept in `store`, failing objects shown on `readiness`.
    #[must_use]
    pub fn new(store: kv::Store, readiness: Readiness) -> Self {
        Self {
            store,
            pending: Arc::default(),
            failing: Arc::default(),
            readiness,
        }
    }

    /// Notes `outcome` for the object `kind` `namespace/name`.
    pub fn note(&self, kind: &'static str, namespace: &str, name: &str, outcome: &Noted) {
        if name.is_empty() {
            return;
        }
        let now = jiff::Timestamp::now().as_millisecond();
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let delta = pending
            .entry((kind, namespace.to_owned(), name.to_owned()))
            .or_default();
        match outcome {
            Noted::Delivered => {
                delta.delivered += 1;
                delta.last_delivered_ms = Some(now);
            }
            Noted::Retried { reason, status } => {
                delta.retried += 1;
                delta.last_failed = Some((now, reason.clone(), *status));
            }
            Noted::Dead { reason, status } => {
                delta.dead += 1;
                delta.last_failed = Some((now, reason.clone(), *status));
            }
            Noted::Rendered => delta.last_rendered_ms = Some(now),
            Noted::TemplateFailed { reason } => {
                delta.template_failures += 1;
                delta.last_template_failed = Some((now, reason.clone()));
            }
        }
    }

    /// Merges the notes into the bucket every [`FLUSH_EVERY`] until `cancel`
    /// fires (the caller merges the last notes once its work is done).
    pub async fn run(self, cancel: CancellationToken) {
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(FLUSH_EVERY) => self.flush().await,
            }
        }
    }

    /// Merges what was noted since the last merge; notes that cannot be
    /// merged now are kept for the next one.
    pub async fn flush(&self) {
        let pending: Vec<(Key, Delta)> = self
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
            .collect();
        if pending.is_empty() {
            return;
        }
        let merges = pending.into_iter().map(|(key, delta)| async move {
            let entry = names::object_entry(key.0, &key.1, &key.2);
            let merged = update(&self.store, &entry, 8, |current: Option<&ObjectRecord>| {
                let record = merge(current, &key, &delta);
                Step::Write(record.clone(), record)
            })
            .await;
            (key, delta, merged)
        });
        let results = futures::future::join_all(merges).await;
        let mut failing = self.failing.lock().unwrap_or_else(PoisonError::into_inner);
        for (key, delta, merged) in results {
            match merged {
                Ok(record) => match failing_line(&record) {
                    Some(line) => {
                        failing.insert(key, line);
                    }
                    None => {
                        failing.remove(&key);
                    }
                },
                Err(error) => {
                    tracing::debug!(error = %error, "Cannot merge a delivery record now; kept for the next merge.");
                    let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
                    let kept = pending.entry(key).or_default();
                    *kept = combine(kept, &delta);
                }
            }
        }
        let mut lines: Vec<String> = failing.values().take(LISTED).cloned().collect();
        if failing.len() > LISTED {
            lines.push(format!("… and {} more", failing.len() - LISTED));
        }
        self.readiness.set_details(TOPIC, lines);
    }
}

/// `current` with `delta` added.
fn merge(current: Option<&ObjectRecord>, key: &Key, delta: &Delta) -> ObjectRecord {
    let mut record = current.cloned().unwrap_or_else(|| ObjectRecord {
        kind: key.0.to_owned(),
        namespace: key.1.clone(),
        name: key.2.clone(),
        ..ObjectRecord::default()
    });
    record.delivered += delta.delivered;
    record.retried += delta.retried;
    record.dead += delta.dead;
    let millis = |t: &Option<herald_proto::Time>| {
        t.as_ref()
            .and_then(from_time)
            .map_or(i64::MIN, |t| t.as_millisecond())
    };
    if let Some(at) = delta.last_delivered_ms
        && at > millis(&record.last_delivered_at)
    {
        record.last_delivered_at = stamp(at);
    }
    if let Some((at, reason, status)) = &delta.last_failed
        && *at > millis(&record.last_failed_at)
    {
        record.last_failed_at = stamp(*at);
        record.last_error.clone_from(reason);
        record.last_status = u32::from(*status);
    }
    record.template_failures += delta.template_failures;
    if let Some(at) = delta.last_rendered_ms
        && at > millis(&record.last_rendered_at)
    {
        record.last_rendered_at = stamp(at);
    }
    if let Some((at, reason)) = &delta.last_template_failed
        && *at > millis(&record.last_template_failed_at)
    {
        record.last_template_failed_at = stamp(*at);
        record.last_template_error.clone_from(reason);
    }
    record
}

fn stamp(millis: i64) -> Option<herald_proto::Time> {
    jiff::Timestamp::from_millisecond(millis).ok().map(to_time)
}

/// Two deltas as one.
fn combine(a: &Delta, b: &Delta) -> Delta {
    Delta {
        delivered: a.delivered + b.delivered,
        retried: a.retried + b.retried,
        dead: a.dead + b.dead,
        last_delivered_ms: a.last_delivered_ms.max(b.last_delivered_ms),
        last_failed: newest(&a.last_failed, &b.last_failed, |x| x.0),
        template_failures: a.template_failures + b.template_failures,
        last_rendered_ms: a.last_rendered_ms.max(b.last_rendered_ms),
        last_template_failed: newest(&a.last_template_failed, &b.last_template_failed, |x| x.0),
    }
}

/// The newer of two notes, by `at`.
fn newest<T: Clone>(a: &Option<T>, b: &Option<T>, at: impl Fn(&T) -> i64) -> Option<T> {
    match (a, b) {
        (Some(x), Some(y)) => Some(if at(x) >= at(y) { x.clone() } else { y.clone() }),
        (x, y) => x.clone().or_else(|| y.clone()),
    }
}

/// The `/readyz` line of an object whose newest outcome is a failure, or
/// whose template failed for its newest delivery that used it.
fn failing_line(record: &ObjectRecord) -> Option<String> {
    let time = |t: &Option<herald_proto::Time>| t.as_ref().and_then(from_time);
    let mut parts = Vec::new();
    if let Some(failed) = time(&record.last_failed_at)
        && time(&record.last_delivered_at).is_none_or(|d| d < failed)
    {
        parts.push(format!(
            "failing since {}: {}",
            failed.strftime("%Y-%m-%dT%H:%M:%SZ"),
            record.last_error
        ));
    }
    if let Some(failed) = time(&record.last_template_failed_at)
        && time(&record.last_rendered_at).is_none_or(|r| r < failed)
    {
        parts.push(format!(
            "template failing since {} (sent with Flux's message): {}",
            failed.strftime("%Y-%m-%dT%H:%M:%SZ"),
            record.last_template_error
        ));
    }
    if parts.is_empty() {
        return None;
    }
    Some(format!(
        "{} {}/{}: {}",
        record.kind,
        record.namespace,
        record.name,
        parts.join("; ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Key {
        ("Provider", "ns".to_owned(), "hook".to_owned())
    }

    #[test]
    fn merges_add_counts_and_keep_the_newest_times() {
        let first = Delta {
            delivered: 2,
            last_delivered_ms: Some(1_000),
            ..Delta::default()
        };
        let record = merge(None, &key(), &first);
        assert_eq!((record.kind.as_str(), record.delivered), ("Provider", 2));
        assert!(failing_line(&record).is_none());
        let failure = Delta {
            dead: 1,
            last_failed: Some((2_000, "answered 404".to_owned(), 404)),
            ..Delta::default()
        };
        let record = merge(Some(&record), &key(), &failure);
        assert_eq!(
            (record.delivered, record.dead, record.last_status),
            (2, 1, 404)
        );
        let line = failing_line(&record).unwrap();
        assert!(
            line.starts_with("Provider ns/hook: failing since 1970-01-01T00:00:02Z"),
            "{line}"
        );
        // An older note from another replica changes counts, not the newest times.
        let late = Delta {
            retried: 1,
            last_failed: Some((1_500, "older".to_owned(), 500)),
            ..Delta::default()
        };
        let record = merge(Some(&record), &key(), &late);
        assert_eq!(
            (record.retried, record.last_error.as_str()),
            (1, "answered 404")
        );
        // A delivery after the failure: healthy again.
        let recovered = Delta {
            delivered: 1,
            last_delivered_ms: Some(3_000),
            ..Delta::default()
        };
        let record = merge(Some(&record), &key(), &recovered);
        assert!(failing_line(&record).is_none());
        // A template that failed: listed until one renders again.
        let template = Delta {
            template_failures: 1,
            last_template_failed: Some((4_000, "herald.dev/template: boom".to_owned())),
            ..Delta::default()
        };
        let record = merge(Some(&record), &key(), &template);
        assert_eq!(record.template_failures, 1);
        assert_eq!(
            failing_line(&record).unwrap(),
            "Provider ns/hook: template failing since 1970-01-01T00:00:04Z (sent with Flux's \
             message): herald.dev/template: boom"
        );
        let rendered = Delta {
            last_rendered_ms: Some(5_000),
            ..Delta::default()
        };
        assert!(failing_line(&merge(Some(&record), &key(), &rendered)).is_none());
    }

    #[test]
    fn unmerged_deltas_combine() {
        let a = Delta {
            delivered: 1,
            last_failed: Some((5, "a".to_owned(), 500)),
            ..Delta::default()
        };
        let b = Delta {
            dead: 1,
            last_failed: Some((7, "b".to_owned(), 400)),
            last_delivered_ms: Some(3),
            ..Delta::default()
        };
        let c = combine(&a, &b);
        assert_eq!((c.delivered, c.dead, c.last_delivered_ms), (1, 1, Some(3)));
        assert_eq!(c.last_failed.unwrap().1, "b");
    }
}
