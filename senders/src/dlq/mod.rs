//! Dead letters on HERALD_DEAD: list, show, replay and purge them.
//!
//! A dead letter is a [`DeadLetter`] message on `herald.dead.<type>.<namespace>.<provider>`,
//! written by the sender when a delivery can never be made and by the router
//! when an Alert names a Provider that does not exist (type `unknown`). This
//! module reads them back for the `herald dlq` commands:
//!
//! - [`list`] the letters a [`Filter`] selects, oldest first, and [`show`] one;
//! - [`replay`] them: each letter's [`Delivery`] goes back on HERALD_DELIVERIES,
//!   then the letter is deleted;
//! - [`purge`] them: delete without sending;
//! - [`render_table`] and [`render_detail`] for people.
//!
//! Letters never hold a secret (the sender reads Secrets at send time), and
//! nothing here prints a raw payload: only its size.
//!
//! Reading scans HERALD_DEAD with one ordered consumer (a single flow of
//! messages, no ack round trips), narrowed to the subjects the filter allows,
//! from the first stored letter up to the last one stored when the scan began,
//! so a scan always ends, even while new letters arrive. Letters asked for by
//! sequence are read one by one with stream message gets instead.

use std::fmt::{self, Write as _};
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::response::Response;
use async_nats::jetstream::{self, consumer, stream};
use bytes::Bytes;
use futures::StreamExt as _;
use herald_flux::convert::{from_proto, from_time};
use herald_proto::{DeadLetter, ObjectKey, names};
use jiff::Timestamp;
use prost::Message as _;

mod render;
mod store;
#[cfg(test)]
mod tests;

use render::one_line;
pub use render::{render_detail, render_table};
use store::{dead_stream, delete, get, scan};

/// Messages published before their acks are awaited together. Each pending
/// ack holds one of the JetStream context's in-flight permits (5000 by
/// default), so a replay of any size goes in batches of this many.
const REPLAY_BATCH: usize = 256;

/// JetStream requests (gets, deletes) in flight at once.
const CONCURRENT_REQUESTS: usize = 32;

/// How long a scan waits for the next letter before asking the stream
/// whether one is still to come.
const SCAN_IDLE: Duration = Duration::from_secs(2);

/// How many idle waits in a row a scan tolerates while the stream says a
/// letter is still to come.
const SCAN_MAX_IDLE: u32 = 15;

/// The longest reason shown in [`render_table`]; [`render_detail`] shows it all.
const TABLE_REASON_CHARS: usize = 120;

/// Which dead letters an operation applies to. Every field that is set must
/// match (an empty string counts as not set); `Filter::default()` selects
/// every letter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// The Provider, as `namespace/name`, or `name` in any namespace.
    pub provider: Option<String>,
    /// The Provider's type (`slack`, `generic`, ...), exactly; `unknown` selects
    /// the letters of Providers that did not exist when the event was routed.
    pub provider_type: Option<String>,
    /// The Alert, as `namespace/name`, or `name` in any namespace.
    pub alert: Option<String>,
    /// A part of the reason, ignoring case.
    pub reason: Option<String>,
    /// Letters that died at or after this time.
    pub since: Option<Timestamp>,
    /// Letters that died at or before this time.
    pub until: Option<Timestamp>,
    /// Only these HERALD_DEAD sequences; empty means all.
    pub sequences: Vec<u64>,
}

/// One dead letter as stored on HERALD_DEAD.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Its sequence in HERALD_DEAD (what `show`, `--seq` and replay refer to).
    pub sequence: u64,
    /// The subject it is stored on, `herald.dead.<type>.<namespace>.<provider>`.
    pub subject: String,
    /// The letter. A message on HERALD_DEAD that is not a `DeadLetter` at all
    /// appears as a letter with only `raw_payload` and a `reason` saying so,
    /// so that it can be seen and purged.
    pub letter: DeadLetter,
    /// When HERALD_DEAD stored it.
    pub stored_at: Timestamp,
}

/// What [`replay`] did, letter by letter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Put back on HERALD_DELIVERIES and deleted from HERALD_DEAD.
    pub replayed: Vec<Replayed>,
    /// Not replayable as they are (no delivery); kept on HERALD_DEAD.
    pub skipped: Vec<Kept>,
    /// Could not be replayed or deleted now; kept on HERALD_DEAD, and safe to
    /// replay again.
    pub failed: Vec<Kept>,
}

/// A letter [`replay`] put back on the work queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replayed {
    /// Its former HERALD_DEAD sequence.
    pub sequence: u64,
    /// The delivery's id.
    pub delivery_id: String,
    /// The HERALD_DELIVERIES subject it went to.
    pub subject: String,
    /// True when an earlier, interrupted replay had already queued it (within
    /// HERALD_DELIVERIES' duplicate window), so it was not queued twice.
    pub duplicate: bool,
}

/// A letter [`replay`] left on HERALD_DEAD, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    /// Its HERALD_DEAD sequence.
    pub sequence: u64,
    /// Why it is still there.
    pub reason: String,
}

// === impl Filter ===

impl Filter {
    /// Whether `entry` is one of the letters this filter selects.
    #[must_use]
    pub fn matches(&self, entry: &Entry) -> bool {
        if !self.sequences.is_empty() && !self.sequences.contains(&entry.sequence) {
            return false;
        }
        if let Some(wanted) = set(self.provider_type.as_deref())
            && entry.provider_type() != wanted
        {
            return false;
        }
        if let Some(wanted) = set(self.provider.as_deref()) {
            let (namespace, name) = entry.provider();
            if !key_matches(wanted, &namespace, &name) {
                return false;
            }
        }
        if let Some(wanted) = set(self.alert.as_deref()) {
            match entry.alert() {
                Some(alert) if key_matches(wanted, &alert.namespace, &alert.name) => {}
                _ => return false,
            }
        }
        if let Some(wanted) = set(self.reason.as_deref())
            && !entry
                .letter
                .reason
                .to_lowercase()
                .contains(&wanted.to_lowercase())
        {
            return false;
        }
        let dead_at = entry.dead_at();
        if self.since.is_some_and(|since| dead_at < since) {
            return false;
        }
        if self.until.is_some_and(|until| dead_at > until) {
            return false;
        }
        true
    }

    /// The HERALD_DEAD subjects that can hold letters this filter selects:
    /// every subject unless it names a Provider or a type.
    fn subject(&self) -> String {
        let provider_type = set(self.provider_type.as_deref());
        let provider = set(self.provider.as_deref());
        if provider_type.is_none() && provider.is_none() {
            return names::DEAD_SUBJECTS.to_owned();
        }
        let provider_type = provider_type.map_or_else(|| "*".to_owned(), names::escape_token);
        let (namespace, name) = match provider.map(|p| (p, p.split_once('/'))) {
            None => ("*".to_owned(), "*".to_owned()),
            Some((name, None)) => ("*".to_owned(), names::escape_token(name)),
            Some((_, Some((namespace, name)))) => {
                (names::escape_token(namespace), names::escape_token(name))
            }
        };
        format!("herald.dead.{provider_type}.{namespace}.{name}")
    }
}

/// `value`, unless it is absent or empty.
fn set(value: Option<&str>) -> Option<&str> {
    value.filter(|v| !v.is_empty())
}

/// Whether `wanted` (`namespace/name` or `name`) names `namespace/name`.
fn key_matches(wanted: &str, namespace: &str, name: &str) -> bool {
    match wanted.split_once('/') {
        Some((ns, n)) => ns == namespace && n == name,
        None => wanted == name,
    }
}

// === impl Entry ===

impl Entry {
    /// Reads a HERALD_DEAD message.
    fn decode(sequence: u64, subject: String, payload: Bytes, stored_at: Timestamp) -> Self {
        let letter = DeadLetter::decode(payload.clone()).unwrap_or_else(|error| DeadLetter {
            reason: format!("not a herald.v1.DeadLetter ({error}); only its size is shown"),
            raw_payload: payload.to_vec(),
            ..DeadLetter::default()
        });
        Self {
            sequence,
            subject,
            letter,
            stored_at,
        }
    }

    /// When the delivery died (the letter's `dead_at`, else when it was stored).
    #[must_use]
    pub fn dead_at(&self) -> Timestamp {
        self.letter
            .dead_at
            .as_ref()
            .and_then(from_time)
            .unwrap_or(self.stored_at)
    }

    /// The Provider's type: the delivery's, `unknown` when it has none (the
    /// Provider did not exist), else the subject's.
    #[must_use]
    pub fn provider_type(&self) -> String {
        match &self.letter.delivery {
            Some(delivery) if delivery.provider_type.is_empty() => "unknown".to_owned(),
            Some(delivery) => delivery.provider_type.clone(),
            None => self.subject_tokens().0,
        }
    }

    /// The Provider's namespace and name: the delivery's, else the subject's.
    #[must_use]
    pub fn provider(&self) -> (String, String) {
        match self
            .letter
            .delivery
            .as_ref()
            .and_then(|d| d.provider.as_ref())
        {
            Some(key) => (key.namespace.clone(), key.name.clone()),
            None => {
                let (_, namespace, name) = self.subject_tokens();
                (namespace, name)
            }
        }
    }

    /// The Alert that matched, when the letter holds a delivery.
    #[must_use]
    pub fn alert(&self) -> Option<&ObjectKey> {
        self.letter.delivery.as_ref()?.alert.as_ref()
    }

    /// The event's id, empty when the letter holds no delivery.
    #[must_use]
    pub fn event_id(&self) -> &str {
        self.letter
            .delivery
            .as_ref()
            .and_then(|d| d.event.as_ref())
            .map_or("", |e| e.id.as_str())
    }

    /// Type, namespace and name from `herald.dead.<type>.<namespace>.<name>`.
    fn subject_tokens(&self) -> (String, String, String) {
        let tokens: Vec<&str> = self.subject.split('.').collect();
        let token = |i: usize| {
            tokens
                .get(i)
                .map(|t| names::unescape_token(t).unwrap_or_else(|| (*t).to_owned()))
                .unwrap_or_default()
        };
        if tokens.len() == 5 {
            (token(2), token(3), token(4))
        } else {
            (
                tokens
                    .get(2)
                    .map_or_else(|| "unknown".to_owned(), |t| (*t).to_owned()),
                String::new(),
                String::new(),
            )
        }
    }
}

// === impl ReplayReport ===

impl ReplayReport {
    /// True when every selected letter was replayed.
    #[must_use]
    pub fn is_complete(&self) -> bool {
        self.skipped.is_empty() && self.failed.is_empty()
    }
}

impl fmt::Display for ReplayReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let duplicates = self.replayed.iter().filter(|r| r.duplicate).count();
        write!(f, "Replayed {} dead letter(s)", self.replayed.len())?;
        if duplicates > 0 {
            write!(f, " ({duplicates} already queued by an earlier replay)")?;
        }
        writeln!(
            f,
            ", skipped {}, failed {}.",
            self.skipped.len(),
            self.failed.len()
        )?;
        for kept in &self.skipped {
            writeln!(f, "skipped {}: {}", kept.sequence, one_line(&kept.reason))?;
        }
        for kept in &self.failed {
            writeln!(f, "failed {}: {}", kept.sequence, one_line(&kept.reason))?;
        }
        Ok(())
    }
}

/// The dead letters `filter` selects, oldest first.
///
/// # Errors
///
/// When HERALD_DEAD does not exist or cannot be read.
pub async fn list(js: &jetstream::Context, filter: &Filter) -> anyhow::Result<Vec<Entry>> {
    list_in(&dead_stream(js).await?, filter).await
}

/// [`list`] on HERALD_DEAD, open.
async fn list_in(stream: &stream::Stream, filter: &Filter) -> anyhow::Result<Vec<Entry>> {
    let entries = if filter.sequences.is_empty() {
        scan(stream, &filter.subject()).await?
    } else {
        let mut sequences = filter.sequences.clone();
        sequences.sort_unstable();
        sequences.dedup();
        let found: Vec<anyhow::Result<Option<Entry>>> = futures::stream::iter(sequences)
            .map(|sequence| get(stream, sequence))
            .buffered(CONCURRENT_REQUESTS)
            .collect()
            .await;
        found
            .into_iter()
            .filter_map(Result::transpose)
            .collect::<anyhow::Result<Vec<_>>>()?
    };
    Ok(entries
        .into_iter()
        .filter(|entry| filter.matches(entry))
        .collect())
}

/// The dead letter with HERALD_DEAD sequence `sequence`.
///
/// # Errors
///
/// When there is none (it was replayed, purged or expired), or HERALD_DEAD
/// cannot be read.
pub async fn show(js: &jetstream::Context, sequence: u64) -> anyhow::Result<Entry> {
    let stream = dead_stream(js).await?;
    get(&stream, sequence).await?.ok_or_else(|| {
        anyhow::anyhow!(
            "{} holds no dead letter with sequence {sequence} (replayed, purged or expired)",
            names::DEAD_STREAM
        )
    })
}

/// Puts each letter `filter` selects back on HERALD_DELIVERIES, then deletes
/// it from HERALD_DEAD.
///
/// The delivery goes to `herald.deliveries.<type>.<namespace>.<provider>` as it
/// is (type `unknown` when the Provider did not exist at routing time); the
/// sender looks the Provider up when it sends, so a Provider added or fixed
/// since is used. Each message carries `Nats-Msg-Id: replay:<delivery id>:<dead
/// sequence>`, so running an interrupted replay again does not queue a letter
/// twice, `Herald-Event-Id`, and the letter's `traceparent`, so the new
/// attempts join the original trace. Messages are published in batches whose
/// acks are awaited together; a letter is deleted only after its delivery is
/// stored. Letters without a delivery are skipped and kept.
///
/// # Errors
///
/// When HERALD_DEAD cannot be read. A letter that cannot be published or
/// deleted is reported in [`ReplayReport::failed`] instead.
pub async fn replay(js: &jetstream::Context, filter: &Filter) -> anyhow::Result<ReplayReport> {
    let stream = dead_stream(js).await?;
    let entries = list_in(&stream, filter).await?;
    let mut report = ReplayReport::default();
    let mut ready = Vec::with_capacity(entries.len());
    for entry in entries {
        match Republish::of(&entry) {
            Ok(republish) => ready.push(republish),
            Err(reason) => report.skipped.push(Kept {
                sequence: entry.sequence,
                reason,
            }),
        }
    }
    for batch in ready.chunks(REPLAY_BATCH) {
        let mut pending = Vec::with_capacity(batch.len());
        for republish in batch {
            match js
                .publish_with_headers(
                    republish.subject.clone(),
                    republish.headers.clone(),
                    republish.payload.clone(),
                )
                .await
            {
                Ok(ack) => pending.push(async move { (republish, ack.await) }),
                Err(error) => report.failed.push(Kept {
                    sequence: republish.sequence,
                    reason: format!("cannot publish to {}: {error}", republish.subject),
                }),
            }
        }
        let mut stored = Vec::with_capacity(pending.len());
        for (republish, ack) in futures::future::join_all(pending).await {
            match ack {
                Ok(ack) => stored.push((republish, ack.duplicate)),
                Err(error) => report.failed.push(Kept {
                    sequence: republish.sequence,
                    reason: format!("{} did not store it: {error}", names::DELIVERIES_STREAM),
                }),
            }
        }
        let deleted: Vec<_> = futures::stream::iter(stored)
            .map(|(republish, duplicate)| {
                let stream = &stream;
                async move {
                    (
                        republish,
                        duplicate,
                        delete(js, stream, republish.sequence).await,
                    )
                }
            })
            .buffer_unordered(CONCURRENT_REQUESTS)
            .collect()
            .await;
        for (republish, duplicate, result) in deleted {
            match result {
                Ok(()) => {
                    tracing::debug!(
                        dead.sequence = republish.sequence,
                        delivery.id = %republish.delivery_id,
                        subject = %republish.subject,
                        duplicate,
                        "Dead letter replayed."
                    );
                    report.replayed.push(Replayed {
                        sequence: republish.sequence,
                        delivery_id: republish.delivery_id.clone(),
                        subject: republish.subject.clone(),
                        duplicate,
                    });
                }
                Err(error) => report.failed.push(Kept {
                    sequence: republish.sequence,
                    reason: format!(
                        "queued again, but not deleted from {} ({error:#}); a new replay \
                         within the duplicate window does not queue it twice",
                        names::DEAD_STREAM
                    ),
                }),
            }
        }
    }
    report.replayed.sort_by_key(|r| r.sequence);
    report.failed.sort_by_key(|k| k.sequence);
    Ok(report)
}

/// Deletes the letters `filter` selects (all of them for `Filter::default()`)
/// and returns how many are gone.
///
/// # Errors
///
/// When HERALD_DEAD cannot be read, or a letter cannot be deleted (the others
/// are deleted still; the message says how many).
pub async fn purge(js: &jetstream::Context, filter: &Filter) -> anyhow::Result<usize> {
    let stream = dead_stream(js).await?;
    let entries = list_in(&stream, filter).await?;
    let total = entries.len();
    let results: Vec<(u64, anyhow::Result<()>)> = futures::stream::iter(entries)
        .map(|entry| {
            let stream = &stream;
            async move { (entry.sequence, delete(js, stream, entry.sequence).await) }
        })
        .buffer_unordered(CONCURRENT_REQUESTS)
        .collect()
        .await;
    let mut failures: Vec<(u64, anyhow::Error)> = results
        .into_iter()
        .filter_map(|(sequence, result)| result.err().map(|error| (sequence, error)))
        .collect();
    if failures.is_empty() {
        return Ok(total);
    }
    failures.sort_by_key(|(sequence, _)| *sequence);
    let (sequence, error) = &failures[0];
    anyhow::bail!(
        "deleted {} of {total} dead letters; {} could not be deleted, the first ({sequence}): {error:#}",
        total - failures.len(),
        failures.len()
    )
}

/// A letter, ready to go back on HERALD_DELIVERIES.
struct Republish {
    sequence: u64,
    delivery_id: String,
    subject: String,
    headers: HeaderMap,
    payload: Bytes,
}

// === impl Republish ===

impl Republish {
    /// The message that replays `entry`, or why there is none.
    fn of(entry: &Entry) -> Result<Self, String> {
        let Some(delivery) = &entry.letter.delivery else {
            return Err(format!(
                "no delivery to replay, only a raw payload of {} bytes that is not a delivery",
                entry.letter.raw_payload.len()
            ));
        };
        let Some(provider) = delivery.provider.as_ref().filter(|p| !p.name.is_empty()) else {
            return Err("the delivery names no Provider".to_owned());
        };
        let provider_type = if delivery.provider_type.is_empty() {
            "unknown"
        } else {
            delivery.provider_type.as_str()
        };
        let subject = names::delivery_subject(provider_type, &provider.namespace, &provider.name);
        let mut headers = HeaderMap::new();
        headers.insert(
            names::MSG_ID_HEADER,
            format!("replay:{}:{}", delivery.id, entry.sequence).as_str(),
        );
        headers.insert(names::EVENT_ID_HEADER, one_line(entry.event_id()).as_str());
        if !entry.letter.traceparent.is_empty() {
            headers.insert(
                names::TRACEPARENT_HEADER,
                one_line(&entry.letter.traceparent).as_str(),
            );
        }
        // A replay is queued anew: its maximum age counts from now.
        let mut delivery = delivery.clone();
        delivery.routed_at = Some(herald_flux::convert::to_time(Timestamp::now()));
        Ok(Self {
            sequence: entry.sequence,
            delivery_id: delivery.id.clone(),
            subject,
            headers,
            payload: Bytes::from(delivery.encode_to_vec()),
        })
    }
}
