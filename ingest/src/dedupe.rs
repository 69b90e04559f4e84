//! Flux's duplicate suppression, shared by every ingest replica and kept
//! across restarts: one window per (cluster, dedupe key) in the HERALD_DEDUPE
//! key-value bucket, updated with compare-and-set so that two replicas seeing
//! the same event at once let exactly one through.
//!
//! Each cluster has its own windows, as each cluster's notification-controller
//! has its own: the same commit fetched by two clusters is two notifications.
//! Entries written by earlier versions are keyed by the Flux key alone; for
//! the first three intervals after an ingest starts (the longest such an
//! entry can live, the bucket's max age) a key without a per-cluster entry is
//! also looked up under that older name, so an upgrade, rolling or not, sends
//! no duplicate that the previous version had already suppressed. The extra
//! read is only made when such entries exist at start (one look at the
//! bucket's subjects), and never after the window: they have expired.
//!
//! Most events are the first of their key in their window, so the entry is
//! not there yet: for a key this ingest has not met lately, the window is
//! written at once with compare-and-set on "no entry", without reading it
//! first (one round trip to JetStream instead of two); only when the entry
//! exists after all is it read and decided on, as always. Keys met lately
//! are read first. Which way is taken changes the cost, never the decision.

use std::hash::{BuildHasher as _, RandomState};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_nats::jetstream::kv;
use herald_flux::dedupe::{Decision, decide};
use herald_proto::{DedupeWindow, names};
use herald_runtime::kv::{Step, update, update_presuming_absent};

use crate::intake::IngestError;

/// The shared dedupe state.
#[derive(Clone)]
pub struct Dedupe {
    store: kv::Store,
    interval: Duration,
    /// Until when entries without a cluster (written before the upgrade) may
    /// exist; `None` when there are none.
    legacy_until: Option<Instant>,
    /// Keys met lately, to choose between reading first and writing first.
    seen: Arc<Seen>,
}

impl std::fmt::Debug for Dedupe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dedupe")
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

/// The decision for one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checked {
    /// An event with the same key passed in this window.
    pub duplicate: bool,
    /// When the window ends (Unix milliseconds).
    pub reset_unix_millis: i64,
}

/// How many compare-and-set races to lose before giving up (503, and the
/// emitter retries).
const MAX_RACES: usize = 8;

// === impl Dedupe ===

impl Dedupe {
    /// Dedupe over `store` with Flux's `interval`.
    #[must_use]
    pub fn new(store: kv::Store, interval: Duration) -> Self {
        Self {
            store,
            interval,
            legacy_until: Some(Instant::now() + interval * 3),
            seen: Arc::new(Seen::new()),
        }
    }

    /// Decides whether the event `event_id` from `cluster` with Flux's dedupe
    /// `key`, received at `now_millis`, is a duplicate, and records its window
    /// when it is not.
    ///
    /// # Errors
    ///
    /// [`IngestError::Unavailable`] when the bucket cannot be read or written.
    pub async fn check(
        &self,
        cluster: &str,
        key: &str,
        event_id: &str,
        now_millis: i64,
    ) -> Result<Checked, IngestError> {
        let interval = i64::try_from(self.interval.as_millis()).unwrap_or(i64::MAX);
        let reset_of = |w: &DedupeWindow| w.anchor_unix_millis + (w.window + 1) * interval;
        let legacy = if self
            .legacy_until
            .is_some_and(|until| Instant::now() < until)
        {
            self.legacy_window(key).await?
        } else {
            None
        };
        let entry = names::dedupe_entry(cluster, key);
        let decide = |recorded: Option<&DedupeWindow>| match decide(
            recorded.or(legacy.as_ref()),
            now_millis,
            interval,
            event_id,
        ) {
            Decision::Duplicate { reset_unix_millis } => Step::Keep(Checked {
                duplicate: true,
                reset_unix_millis,
            }),
            Decision::Pass { state: None } => Step::Keep(Checked {
                duplicate: false,
                reset_unix_millis: recorded.map_or(now_millis, reset_of),
            }),
            Decision::Pass { state: Some(state) } => {
                let reset_unix_millis = reset_of(&state);
                Step::Write(
                    state,
                    Checked {
                        duplicate: false,
                        reset_unix_millis,
                    },
                )
            }
        };
        let decided = if self.seen.check_and_mark(&entry) {
            update(&self.store, &entry, MAX_RACES, decide).await
        } else {
            update_presuming_absent(&self.store, &entry, MAX_RACES, decide).await
        };
        decided.map_err(|e| IngestError::Unavailable(format!("dedupe state: {e}")))
    }

    /// Looks once whether the bucket holds entries written before keys
    /// carried the cluster (single-token keys); when it holds none, no
    /// event pays for looking them up. A bucket that cannot be read now is
    /// assumed to hold some.
    pub async fn detect_legacy(&mut self, jetstream: &async_nats::jetstream::Context) {
        use futures::TryStreamExt as _;
        let filter = format!("$KV.{}.*", names::DEDUPE_BUCKET);
        let found = async {
            let stream = jetstream
                .get_stream(format!("KV_{}", names::DEDUPE_BUCKET))
                .await
                .ok()?;
            let mut subjects = stream.info_with_subjects(&filter).await.ok()?;
            subjects.try_next().await.ok().map(|first| first.is_some())
        }
        .await
        .unwrap_or(true);
        if !found {
            self.legacy_until = None;
        }
        tracing::debug!(
            legacy = found,
            "Looked for dedupe entries without a cluster."
        );
    }

    /// The window an earlier version recorded under the Flux key alone.
    async fn legacy_window(&self, key: &str) -> Result<Option<DedupeWindow>, IngestError> {
        let entry = self
            .store
            .entry(key)
            .await
            .map_err(|e| IngestError::Unavailable(format!("dedupe state: {e}")))?;
        Ok(entry
            .filter(|e| e.operation == kv::Operation::Put)
            .and_then(|e| <DedupeWindow as prost::Message>::decode(e.value).ok()))
    }
}

/// How many keys [`Seen`] remembers at most (8 bytes each).
const SEEN_SLOTS: usize = 1 << 15;

/// The dedupe keys this ingest met lately, as a fixed table of their hashes
/// (a key takes the slot its hash names, so a newer key may push an older
/// one out). Forgetting or misremembering a key costs a round trip, never a
/// decision: every write is a compare-and-set.
struct Seen {
    hasher: RandomState,
    slots: Mutex<Box<[u64]>>,
}

// === impl Seen ===

impl Seen {
    fn new() -> Self {
        Self {
            hasher: RandomState::new(),
            slots: Mutex::new(vec![0; SEEN_SLOTS].into_boxed_slice()),
        }
    }

    /// Whether `entry` was met lately; it is remembered from now on.
    fn check_and_mark(&self, entry: &str) -> bool {
        // 0 marks an empty slot.
        let hash = self.hasher.hash_one(entry).max(1);
        let slot = usize::try_from(hash % SEEN_SLOTS as u64).unwrap_or(0);
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        std::mem::replace(&mut slots[slot], hash) == hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_remembers_a_key_from_its_first_meeting() {
        let seen = Seen::new();
        assert!(!seen.check_and_mark("c.default.a"));
        assert!(seen.check_and_mark("c.default.a"));
        assert!(!seen.check_and_mark("c.default.b"));
        assert!(seen.check_and_mark("c.default.a"));
    }
}
