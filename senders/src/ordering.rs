//! Commit statuses never go backwards: the newest event applied per
//! (repository, commit, identifier) is kept in HERALD_COMMIT_STATUS, and a
//! delivery for an older event is superseded, whichever replica holds it and
//! in whatever order deliveries arrive.

use herald_proto::AppliedStatus;
use herald_runtime::kv::{self, KvError, Step};
use sha2::{Digest, Sha256};

/// The shared record of applied statuses.
#[derive(Clone)]
pub struct StatusOrder {
    store: async_nats::jetstream::kv::Store,
}

impl std::fmt::Debug for StatusOrder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StatusOrder")
    }
}

/// Whether a status may be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// This event is the newest (or the same one again): write it.
    Newest,
    /// A newer event's status was applied: do not write this one.
    Superseded,
}

const MAX_RACES: usize = 16;

/// The key of (repository, commit, identifier).
#[must_use]
pub fn status_key(repository: &str, sha: &str, identifier: &str) -> String {
    let digest = Sha256::digest(format!("{repository}\0{sha}\0{identifier}"));
    format!("s.{}", hex::encode(&digest[..16]))
}

impl StatusOrder {
    /// Over `store`.
    #[must_use]
    pub fn new(store: async_nats::jetstream::kv::Store) -> Self {
        Self { store }
    }

    /// Claims `key` for the event at `event_nanos`: `Newest` (and recorded,
    /// with compare-and-set) unless a newer event was recorded first.
    ///
    /// # Errors
    ///
    /// When the bucket cannot be read or written.
    pub async fn claim(
        &self,
        key: &str,
        event_nanos: i64,
        event_id: &str,
    ) -> Result<Order, KvError> {
        kv::update(
            &self.store,
            key,
            MAX_RACES,
            |recorded: Option<&AppliedStatus>| match recorded {
                Some(r) if r.event_id == event_id => Step::Keep(Order::Newest),
                Some(r) if r.event_unix_nanos > event_nanos => Step::Keep(Order::Superseded),
                _ => Step::Write(
                    AppliedStatus {
                        event_unix_nanos: event_nanos,
                        event_id: event_id.to_owned(),
                    },
                    Order::Newest,
                ),
            },
        )
        .await
    }
}
