//! Kubernetes Events (`events.k8s.io/v1`) about an object, aggregated and
//! rate-limited so that nothing storms the API server.
//!
//! [`ObjectEvents::emit`] never blocks: it queues the occurrence for one
//! background task and, when the queue is full, drops and counts it. The
//! task keys occurrences by (object, type, reason, action, note):
//!
//! - the first occurrence of a key creates an Event at once;
//! - later ones are counted and written as one merge patch of the Event's
//!   `series` (the total count and the last time seen), at most once per
//!   [`EventSettings::flush_interval`] per key;
//! - a key not seen for [`EventSettings::forget_after`] is forgotten, and
//!   its next occurrence creates a new Event;
//! - per object, a token bucket ([`EventSettings::burst`],
//!   [`EventSettings::refill`]) limits how many new Events are created;
//!   past it, occurrences are dropped and counted, and logged with their
//!   count when the object starts dropping and, if more were dropped, when
//!   its limit recovers: never once per occurrence.
//!
//! A failed write is logged and forgotten, never retried in a loop: a
//! failed series patch is written again, with the total count, only when
//! the key occurs again.

mod aggregate;

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use self::aggregate::{Aggregator, Decision, EventKey, ObjectKey};
use super::{api_code, truncate};

/// The most bytes of `note` Kubernetes accepts.
pub const NOTE_LIMIT: usize = 1024;

/// The most bytes of `reason` and of `action` Kubernetes accepts.
pub const REASON_LIMIT: usize = 128;

/// The longest object name: an Event's name is `<object name>.<hex nanos>`.
const NAME_LIMIT: usize = 253;

/// How long one write to the API server may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether an Event is routine or calls for attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// Routine: something happened as it should.
    Normal,
    /// Something went wrong, or may.
    Warning,
}

/// How Events are reported and limited.
#[derive(Debug, Clone)]
pub struct EventSettings {
    /// `reportingController`: who writes the Events.
    pub controller: String,
    /// `reportingInstance`: which replica writes them (the pod name).
    pub instance: String,
    /// The shortest time between two series patches of one Event.
    pub flush_interval: Duration,
    /// How long a key is remembered after its last occurrence.
    pub forget_after: Duration,
    /// How many new Events one object may have at once.
    pub burst: u32,
    /// How often an object may have one more new Event past its burst.
    pub refill: Duration,
    /// How many occurrences may wait for the background task.
    pub queue: usize,
}

/// What the Events so far came to, for tests and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventStats {
    /// Events created.
    pub created: u64,
    /// Series patches written.
    pub patched: u64,
    /// Occurrences dropped: past an object's rate limit, or with the queue
    /// full.
    pub dropped: u64,
    /// Writes the API server refused or never answered.
    pub failed: u64,
}

/// A cheap handle to emit Events; see the [module docs](self).
#[derive(Clone)]
pub struct ObjectEvents {
    tx: mpsc::Sender<Occurrence>,
    counters: Arc<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    created: AtomicU64,
    patched: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
    /// Dropped with the queue full, since the task last logged it.
    queue_full: AtomicU64,
}

/// One [`ObjectEvents::emit`], on its way to the task.
#[derive(Debug)]
struct Occurrence {
    key: EventKey,
    regarding: ObjectReference,
    at: Timestamp,
}

// === impl EventType ===

impl EventType {
    /// `Normal` or `Warning`, as Kubernetes spells it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "Normal",
            Self::Warning => "Warning",
        }
    }
}

// === impl EventSettings ===

impl Default for EventSettings {
    fn default() -> Self {
        Self {
            controller: "herald".to_owned(),
            instance: "herald".to_owned(),
            flush_interval: Duration::from_secs(10),
            forget_after: Duration::from_secs(6 * 60),
            burst: 10,
            refill: Duration::from_secs(30),
            queue: 1024,
        }
    }
}

// === impl ObjectEvents ===

impl ObjectEvents {
    /// The handle, and the task that writes the Events until `cancel`; the
    /// caller spawns the task. On cancel, the task writes the series counts
    /// still pending (bounded by one write timeout) and ends.
    pub fn start(
        client: kube::Client,
        settings: EventSettings,
        cancel: CancellationToken,
    ) -> (Self, impl Future<Output = ()> + Send + 'static) {
        let (tx, rx) = mpsc::channel(settings.queue.max(1));
        let counters = Arc::new(Counters::default());
        let worker = Worker {
            client,
            aggregator: Aggregator::new(&settings),
            settings,
            counters: counters.clone(),
            last_nanos: 0,
            forbidden: HashSet::new(),
        };
        (Self { tx, counters }, worker.run(rx, cancel))
    }

    /// Records that `reason` happened to `regarding`. Never blocks: with the
    /// queue full, or the task ended, the occurrence is dropped and counted.
    ///
    /// `reason` (CamelCase: `DeliveryFailed`) and `action` (`Deliver`) must
    /// not be empty, or Kubernetes refuses the Event. They are cut to
    /// [`REASON_LIMIT`] bytes and `note` to [`NOTE_LIMIT`] (ending in `…`),
    /// as Kubernetes requires.
    pub fn emit(
        &self,
        regarding: &ObjectReference,
        type_: EventType,
        reason: &str,
        action: &str,
        note: &str,
    ) {
        let object = match regarding.uid.as_deref().filter(|u| !u.is_empty()) {
            Some(uid) => ObjectKey::Uid(uid.to_owned()),
            None => ObjectKey::Named {
                kind: regarding.kind.clone().unwrap_or_default(),
                namespace: regarding.namespace.clone().unwrap_or_default(),
                name: regarding.name.clone().unwrap_or_default(),
            },
        };
        let occurrence = Occurrence {
            key: EventKey {
                object,
                type_,
                reason: truncate(reason, REASON_LIMIT, ""),
                action: truncate(action, REASON_LIMIT, ""),
                note: truncate(note, NOTE_LIMIT, "…"),
            },
            regarding: regarding.clone(),
            at: Timestamp::now(),
        };
        match self.tx.try_send(occurrence) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                self.counters.queue_full.fetch_add(1, Ordering::Relaxed);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// What the Events so far came to.
    #[must_use]
    pub fn stats(&self) -> EventStats {
        let c = &self.counters;
        EventStats {
            created: c.created.load(Ordering::Relaxed),
            patched: c.patched.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
        }
    }
}

// === the worker: the aggregator's decisions written to the API server ===

struct Worker {
    client: kube::Client,
    settings: EventSettings,
    aggregator: Aggregator,
    counters: Arc<Counters>,
    /// The nanoseconds in the last Event name, so that names never repeat.
    last_nanos: i128,
    /// Namespaces and verbs refused with a 403 already logged at warn,
    /// until a write there succeeds.
    forbidden: HashSet<(String, &'static str)>,
}

// === impl Worker ===

impl Worker {
    async fn run(mut self, mut rx: mpsc::Receiver<Occurrence>, cancel: CancellationToken) {
        let period = (self.settings.flush_interval / 2).max(Duration::from_millis(10));
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                _ = tick.tick() => self.flush(false).await,
                occurrence = rx.recv() => match occurrence {
                    Some(occurrence) => self.observe(occurrence).await,
                    None => break,
                },
            }
        }
        rx.close();
        if tokio::time::timeout(WRITE_TIMEOUT, self.flush(true))
            .await
            .is_err()
        {
            tracing::warn!("Gave up writing the last Event counts on shutdown.");
        }
    }

    async fn observe(&mut self, occurrence: Occurrence) {
        let now = Instant::now();
        let Occurrence { key, regarding, at } = occurrence;
        match self.aggregator.observe(&key, &regarding, now, at) {
            Decision::Counted => {}
            Decision::Dropped => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
            Decision::Create => {
                let event = self.new_event(&key, regarding, at);
                let name = event.metadata.name.clone().unwrap_or_default();
                let namespace = event.metadata.namespace.clone().unwrap_or_default();
                let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
                let result = write(api.create(&PostParams::default(), &event)).await;
                match result {
                    Ok(_) => {
                        self.counters.created.fetch_add(1, Ordering::Relaxed);
                        self.succeeded(&namespace);
                        self.aggregator
                            .created(&key, name, namespace, Instant::now());
                    }
                    Err(error) => {
                        self.failed("create", &namespace, &error);
                        self.aggregator.forget(&key);
                    }
                }
            }
        }
    }

    /// Writes the series patches that are due; every pending one when `all`.
    async fn flush(&mut self, all: bool) {
        let queue_full = self.counters.queue_full.swap(0, Ordering::Relaxed);
        if queue_full > 0 {
            tracing::warn!(
                dropped = queue_full,
                "Dropped Kubernetes Events: the queue to the API server is full."
            );
        }
        for due in self.aggregator.due(Instant::now(), all) {
            let api: Api<Event> = Api::namespaced(self.client.clone(), &due.namespace);
            let patch = serde_json::json!({
                "series": EventSeries {
                    count: due.count,
                    last_observed_time: MicroTime(due.last_observed),
                },
            });
            let result =
                write(api.patch(&due.name, &PatchParams::default(), &Patch::Merge(&patch))).await;
            match result {
                Ok(_) => {
                    self.counters.patched.fetch_add(1, Ordering::Relaxed);
                    self.succeeded(&due.namespace);
                    self.aggregator.written(&due.key, due.count, Instant::now());
                }
                // The Event expired or was deleted: the next occurrence creates one.
                Err(error) if error.code() == Some(404) => {
                    self.aggregator.forget(&due.key);
                }
                Err(error) => {
                    self.failed("patch", &due.namespace, &error);
                    self.aggregator.written(&due.key, due.count, Instant::now());
                }
            }
        }
        for report in self.aggregator.prune(Instant::now()) {
            if report.first {
                tracing::warn!(
                    object = %report.object,
                    dropped = report.dropped,
                    "Dropping new Kubernetes Events about this object: more distinct ones than its rate limit allows."
                );
            } else {
                tracing::warn!(
                    object = %report.object,
                    dropped = report.dropped,
                    "Dropped more new Kubernetes Events about this object before its rate limit recovered."
                );
            }
        }
    }

    fn new_event(&mut self, key: &EventKey, regarding: ObjectReference, at: Timestamp) -> Event {
        let nanos = at.as_nanosecond().max(self.last_nanos + 1);
        self.last_nanos = nanos;
        let object = regarding
            .name
            .as_deref()
            .unwrap_or(&self.settings.controller);
        let object = truncate(object, NAME_LIMIT - 17, "");
        let object = object.trim_end_matches(['.', '-']);
        let namespace = regarding
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".to_owned());
        Event {
            metadata: ObjectMeta {
                name: Some(format!("{object}.{nanos:x}")),
                namespace: Some(namespace),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(at)),
            reporting_controller: Some(self.settings.controller.clone()),
            reporting_instance: Some(self.settings.instance.clone()),
            regarding: Some(regarding),
            action: Some(key.action.clone()),
            reason: Some(key.reason.clone()),
            note: Some(key.note.clone()).filter(|n| !n.is_empty()),
            type_: Some(key.type_.as_str().to_owned()),
            ..Event::default()
        }
    }

    fn failed(&mut self, verb: &'static str, namespace: &str, error: &WriteError) {
        self.counters.failed.fetch_add(1, Ordering::Relaxed);
        if error.code() != Some(403) {
            tracing::warn!(namespace, error = %error, "Cannot {verb} a Kubernetes Event.");
        } else if self.forbidden.insert((namespace.to_owned(), verb)) {
            tracing::warn!(
                namespace,
                error = %error,
                "Cannot write Kubernetes Events: Herald needs permission to {verb} events in the events.k8s.io group in this namespace."
            );
        } else {
            tracing::debug!(namespace, error = %error, "Cannot {verb} a Kubernetes Event.");
        }
    }

    fn succeeded(&mut self, namespace: &str) {
        if !self.forbidden.is_empty() {
            self.forbidden.retain(|(n, _)| n != namespace);
        }
    }
}

/// Why a write failed.
#[derive(Debug, thiserror::Error)]
enum WriteError {
    #[error(transparent)]
    Api(#[from] kube::Error),
    #[error("no answer from the API server within {WRITE_TIMEOUT:?}")]
    Timeout,
}

// === impl WriteError ===

impl WriteError {
    /// The HTTP status the API server answered, if it answered.
    fn code(&self) -> Option<u16> {
        match self {
            Self::Api(error) => api_code(error),
            Self::Timeout => None,
        }
    }
}

async fn write<T>(call: impl Future<Output = Result<T, kube::Error>>) -> Result<T, WriteError> {
    match tokio::time::timeout(WRITE_TIMEOUT, call).await {
        Ok(result) => result.map_err(WriteError::Api),
        Err(_) => Err(WriteError::Timeout),
    }
}
