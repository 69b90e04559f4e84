//! Pacing per destination, shared by every sender replica through the
//! HERALD_PACING key-value bucket (see architecture.md, "Pacing").
//!
//! Each destination (a webhook, a channel, a token) has one entry: the
//! earliest time of its next request (a steady rate, reserved with
//! compare-and-set) and a time before which nobody may send to it at all
//! (set when it answered 429 or 503 with `Retry-After`). A delivery whose turn
//! is near waits in the sender; one whose turn is far is put back on the queue
//! with that delay, without reserving anything, so destinations that are not
//! limited are never slowed down.
//!
//! A destination without a steady rate only has to know whether it is
//! blocked: that is read from the bucket at most once per [`BLOCK_FRESH`]
//! per sender (one read at a time, the others go by the last one known),
//! instead of once per delivery; a block this sender sets is known at once.
//! A block another replica sets is so seen within [`BLOCK_FRESH`], about
//! the time the requests already on their way take anyway.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_nats::jetstream::kv;
use bytes::Bytes;
use herald_proto::{PacedCount, PacingState};
use herald_runtime::kv::{KvError, Step, update};
use prost::Message as _;
use sha2::{Digest, Sha256};

use crate::config::Resolved;

/// What the pacer allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// Send after waiting this long (zero: now); the slot is reserved.
    SendAfter(Duration),
    /// Not now: put the delivery back for this long.
    Later(Duration),
}

/// What waiting for a turn ended in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waited {
    /// Send now, after waiting this long in process (zero: no wait).
    Go(Duration),
    /// Not now: put the delivery back for this long.
    PutBack(Duration),
}

/// How long a block read from the bucket is taken as known for a
/// destination without a steady rate.
pub const BLOCK_FRESH: Duration = Duration::from_millis(100);

/// How long a read in progress is waited for before another delivery
/// reads again (the one reading may have been dropped).
const READ_ABANDONED: Duration = Duration::from_secs(1);

/// Destinations known beyond which the long unread are forgotten.
const KNOWN_KEPT: usize = 4096;

/// A destination's block as last read.
#[derive(Debug, Clone, Copy)]
struct Known {
    blocked_until_unix_millis: i64,
    read_at: Instant,
    /// Since when a delivery is reading it again, if one is.
    reading_since: Option<Instant>,
}

/// Shared pacing state.
#[derive(Clone)]
pub struct Pacer {
    store: kv::Store,
    /// The longest wait spent in the sender; longer ones go back on the queue.
    max_local_wait: Duration,
    /// Blocks of destinations without a steady rate, as last read.
    known: Arc<KnownBlocks>,
}

/// Blocks of destinations as last read, by destination.
#[derive(Debug, Default)]
struct KnownBlocks(Mutex<HashMap<String, Known>>);

/// Whether a block must be read, or what is known of it.
enum Lookup {
    Known(i64),
    Read,
}

impl std::fmt::Debug for Pacer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pacer")
            .field("max_local_wait", &self.max_local_wait)
            .finish_non_exhaustive()
    }
}

/// A destination's id: a hash of what identifies it to the provider (type,
/// address, channel, token), so secrets never become keys.
#[must_use]
pub fn destination(resolved: &Resolved) -> String {
    let mut hasher = Sha256::new();
    for part in [
        resolved.provider_type.as_str(),
        resolved.address.as_str(),
        resolved.channel.as_str(),
        resolved.token.as_str(),
    ] {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    format!("d.{}", hex::encode(&hasher.finalize()[..16]))
}

fn now_millis() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn duration(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// Spreads put-back deliveries over a little more than their wait, so that a
/// queue of them does not come back all at once.
fn with_jitter(wait: Duration) -> Duration {
    wait + wait.mul_f64(0.25 * fastrand::f64()) + Duration::from_millis(fastrand::u64(0..50))
}

const MAX_RACES: usize = 16;

// === impl KnownBlocks ===

impl KnownBlocks {
    /// What is known of `key`'s block: fresh, or being read by another
    /// delivery; else this delivery reads it (and says so).
    fn lookup(&self, key: &str) -> Lookup {
        let mut known = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match known.get_mut(key) {
            Some(k)
                if k.read_at.elapsed() < BLOCK_FRESH
                    || k.reading_since
                        .is_some_and(|t| t.elapsed() < READ_ABANDONED) =>
            {
                Lookup::Known(k.blocked_until_unix_millis)
            }
            Some(k) => {
                k.reading_since = Some(Instant::now());
                Lookup::Read
            }
            // Never read: every delivery reads until one has.
            None => Lookup::Read,
        }
    }

    /// Notes `key`'s block as read (or set) now; `None` when the read
    /// failed. A later block already known is kept.
    fn note(&self, key: &str, blocked_until: Option<i64>) {
        let mut known = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(until) = blocked_until else {
            if let Some(k) = known.get_mut(key) {
                k.reading_since = None;
            }
            return;
        };
        if known.len() >= KNOWN_KEPT && !known.contains_key(key) {
            known.retain(|_, k| k.read_at.elapsed() < BLOCK_FRESH * 600);
        }
        let entry = known.entry(key.to_owned()).or_insert(Known {
            blocked_until_unix_millis: until,
            read_at: Instant::now(),
            reading_since: None,
        });
        entry.blocked_until_unix_millis = entry.blocked_until_unix_millis.max(until);
        entry.read_at = Instant::now();
        entry.reading_since = None;
    }
}

// === impl Pacer ===

impl Pacer {
    /// A pacer over `store`.
    #[must_use]
    pub fn new(store: kv::Store, max_local_wait: Duration) -> Self {
        Self {
            store,
            max_local_wait,
            known: Arc::default(),
        }
    }

    /// The turn of a destination without a steady rate: now, unless it is
    /// blocked.
    async fn unpaced_turn(&self, key: &str) -> anyhow::Result<Turn> {
        let until = match self.known.lookup(key) {
            Lookup::Known(until) => until,
            Lookup::Read => match self.read(key).await {
                Ok(state) => {
                    self.known.note(key, Some(state.blocked_until_unix_millis));
                    state.blocked_until_unix_millis
                }
                Err(error) => {
                    self.known.note(key, None);
                    return Err(error);
                }
            },
        };
        let now = now_millis();
        Ok(if until > now {
            Turn::Later(with_jitter(duration(until - now)))
        } else {
            Turn::SendAfter(Duration::ZERO)
        })
    }

    /// The longest a turn is waited for in process.
    #[must_use]
    pub fn max_local_wait(&self) -> Duration {
        self.max_local_wait
    }

    async fn read(&self, key: &str) -> anyhow::Result<PacingState> {
        let entry = self
            .store
            .entry(key)
            .await?
            .filter(|e| e.operation == kv::Operation::Put);
        Ok(match entry {
            Some(entry) => PacingState::decode(entry.value)?,
            None => PacingState::default(),
        })
    }

    /// Asks for a turn at `key`, whose steady rate is one request per
    /// `interval` (none: no steady rate, only `Retry-After` blocks apply, as
    /// last read: see [`BLOCK_FRESH`]).
    ///
    /// # Errors
    ///
    /// When the bucket cannot be read or written.
    pub async fn turn(&self, key: &str, interval: Option<Duration>) -> anyhow::Result<Turn> {
        let Some(interval) = interval else {
            return self.unpaced_turn(key).await;
        };
        let max_local_wait = self.max_local_wait;
        let decided = update(
            &self.store,
            key,
            MAX_RACES,
            |state: Option<&PacingState>| {
                let now = now_millis();
                let state = state.cloned().unwrap_or_default();
                if state.blocked_until_unix_millis > now {
                    let wait = duration(state.blocked_until_unix_millis - now);
                    return Step::Keep(Turn::Later(with_jitter(wait)));
                }
                let slot = state.next_at_unix_millis.max(now);
                let wait = duration(slot - now);
                if wait > max_local_wait {
                    return Step::Keep(Turn::Later(with_jitter(wait)));
                }
                let reserved = PacingState {
                    next_at_unix_millis: slot + millis(interval),
                    ..state
                };
                Step::Write(reserved, Turn::SendAfter(wait))
            },
        )
        .await;
        match decided {
            Ok(turn) => Ok(turn),
            // Heavily contended: come back a little later.
            Err(KvError::Contended) => Ok(Turn::Later(with_jitter(Duration::from_millis(200)))),
            Err(error) => Err(error.into()),
        }
    }

    /// Takes a turn at `key` (see [`Pacer::turn`]) and waits for it in
    /// process when it is near; a destination another replica was told to
    /// back off from meanwhile is put back.
    ///
    /// # Errors
    ///
    /// When the bucket cannot be read or written.
    pub async fn wait_turn(&self, key: &str, interval: Option<Duration>) -> anyhow::Result<Waited> {
        match self.turn(key, interval).await? {
            Turn::Later(wait) => Ok(Waited::PutBack(wait)),
            Turn::SendAfter(wait) if wait.is_zero() => Ok(Waited::Go(wait)),
            Turn::SendAfter(wait) => {
                tokio::time::sleep(wait).await;
                if let Ok(Some(left)) = self.blocked_for(key).await {
                    return Ok(Waited::PutBack(left));
                }
                Ok(Waited::Go(wait))
            }
        }
    }

    /// Whether `key` is blocked now (checked again after a wait, since another
    /// replica may have been told to back off meanwhile); the time left if so.
    ///
    /// # Errors
    ///
    /// When the bucket cannot be read.
    pub async fn blocked_for(&self, key: &str) -> anyhow::Result<Option<Duration>> {
        let state = self.read(key).await?;
        let left = state.blocked_until_unix_millis - now_millis();
        Ok((left > 0).then(|| duration(left)))
    }

    /// Blocks `key` for `wait` from now (a later block is kept).
    ///
    /// # Errors
    ///
    /// When the bucket cannot be read or written.
    pub async fn block(&self, key: &str, wait: Duration) -> anyhow::Result<()> {
        let until = now_millis() + millis(wait);
        update(
            &self.store,
            key,
            MAX_RACES,
            |state: Option<&PacingState>| {
                let state = state.cloned().unwrap_or_default();
                if state.blocked_until_unix_millis >= until {
                    Step::Keep(())
                } else {
                    Step::Write(
                        PacingState {
                            blocked_until_unix_millis: until,
                            ..state
                        },
                        (),
                    )
                }
            },
        )
        .await?;
        self.known.note(key, Some(until));
        Ok(())
    }

    fn paced_key(stream_sequence: u64) -> String {
        format!("p.{stream_sequence}")
    }

    /// How many times the delivery at `stream_sequence` was put back for pace.
    ///
    /// # Errors
    ///
    /// When the bucket cannot be read.
    pub async fn paced_times(&self, stream_sequence: u64) -> anyhow::Result<u64> {
        let entry = self.store.get(Self::paced_key(stream_sequence)).await?;
        Ok(match entry {
            Some(value) => PacedCount::decode(value)?.times,
            None => 0,
        })
    }

    /// Records that the delivery at `stream_sequence` was put back for pace.
    ///
    /// # Errors
    ///
    /// When the bucket cannot be written.
    pub async fn count_paced(&self, stream_sequence: u64, times: u64) -> anyhow::Result<()> {
        let value = PacedCount { times }.encode_to_vec();
        self.store
            .put(Self::paced_key(stream_sequence), Bytes::from(value))
            .await?;
        Ok(())
    }

    /// Forgets the pace count of a finished delivery.
    ///
    /// # Errors
    ///
    /// When the bucket cannot be written.
    pub async fn forget(&self, stream_sequence: u64) -> anyhow::Result<()> {
        self.store.purge(Self::paced_key(stream_sequence)).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_differ_by_channel_and_token_and_hide_them() {
        let base = Resolved {
            provider_type: "slack".into(),
            address: "https://slack.com/api/chat.postMessage".into(),
            channel: "C1".into(),
            token: "xoxb-secret".into(),
            ..Resolved::default()
        };
        let other_channel = Resolved {
            channel: "C2".into(),
            ..base.clone()
        };
        let key = destination(&base);
        assert_ne!(key, destination(&other_channel));
        assert_eq!(key, destination(&base.clone()));
        assert!(!key.contains("secret") && key.len() == 34);
    }

    #[test]
    fn a_known_block_is_read_once_per_freshness_and_one_reader_at_a_time() {
        let known = KnownBlocks::default();
        // Never read: every delivery reads.
        assert!(matches!(known.lookup("d.1"), Lookup::Read));
        assert!(matches!(known.lookup("d.1"), Lookup::Read));
        known.note("d.1", Some(5));
        assert!(matches!(known.lookup("d.1"), Lookup::Known(5)));
        // A block set here is known at once; an older read never lowers it.
        known.note("d.1", Some(9));
        known.note("d.1", Some(7));
        assert!(matches!(known.lookup("d.1"), Lookup::Known(9)));
        // Stale: one delivery reads, the others go by what is known.
        known.0.lock().unwrap().get_mut("d.1").unwrap().read_at -= BLOCK_FRESH;
        assert!(matches!(known.lookup("d.1"), Lookup::Read));
        assert!(matches!(known.lookup("d.1"), Lookup::Known(9)));
        // A failed read lets the next delivery read.
        known.note("d.1", None);
        assert!(matches!(known.lookup("d.1"), Lookup::Read));
        // So does a read abandoned (its delivery dropped) for too long.
        known
            .0
            .lock()
            .unwrap()
            .get_mut("d.1")
            .unwrap()
            .reading_since = Some(Instant::now() - READ_ABANDONED);
        assert!(matches!(known.lookup("d.1"), Lookup::Read));
        assert!(matches!(known.lookup("d.1"), Lookup::Known(9)));
        // Others are apart.
        assert!(matches!(known.lookup("d.2"), Lookup::Read));
    }

    #[test]
    fn jitter_never_shortens_a_wait() {
        for _ in 0..100 {
            let w = with_jitter(Duration::from_secs(3));
            assert!(w >= Duration::from_secs(3) && w < Duration::from_millis(3800));
        }
    }
}
