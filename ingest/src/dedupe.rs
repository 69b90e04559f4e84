//! Flux's duplicate suppression, shared by every ingest replica and kept
//! across restarts: one window per dedupe key in the HERALD_DEDUPE key-value
//! bucket, updated with compare-and-set so that two replicas seeing the same
//! event at once let exactly one through.

use std::time::Duration;

use async_nats::jetstream::kv;
use herald_flux::dedupe::{Decision, decide};
use herald_proto::DedupeWindow;
use herald_runtime::kv::{Step, update};

use crate::intake::IngestError;

/// The shared dedupe state.
#[derive(Clone)]
pub struct Dedupe {
    store: kv::Store,
    interval: Duration,
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
        Self { store, interval }
    }

    /// Decides whether the event `event_id` with `key`, received at
    /// `now_millis`, is a duplicate, and records its window when it is not.
    ///
    /// # Errors
    ///
    /// [`IngestError::Unavailable`] when the bucket cannot be read or written.
    pub async fn check(
        &self,
        key: &str,
        event_id: &str,
        now_millis: i64,
    ) -> Result<Checked, IngestError> {
        let interval = i64::try_from(self.interval.as_millis()).unwrap_or(i64::MAX);
        let reset_of = |w: &DedupeWindow| w.anchor_unix_millis + (w.window + 1) * interval;
        let decided = update(
            &self.store,
            key,
            MAX_RACES,
            |recorded: Option<&DedupeWindow>| match decide(recorded, now_millis, interval, event_id)
            {
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
            },
        )
        .await;
        decided.map_err(|e| IngestError::Unavailable(format!("dedupe state: {e}")))
    }
}
