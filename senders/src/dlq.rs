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

/// One line per letter: sequence, when it died, Provider (type and
/// namespace/name), Alert, attempts, last status and reason (shortened; see
/// [`render_detail`]), under a header line.
#[must_use]
pub fn render_table(entries: &[Entry]) -> String {
    let header = [
        "SEQ", "DEAD AT", "PROVIDER", "ALERT", "ATTEMPTS", "STATUS", "REASON",
    ]
    .map(str::to_owned);
    let rows: Vec<[String; 7]> = entries
        .iter()
        .map(|entry| {
            let (namespace, name) = entry.provider();
            let alert = entry
                .alert()
                .map_or_else(|| "-".to_owned(), |a| format!("{}/{}", a.namespace, a.name));
            [
                entry.sequence.to_string(),
                format!("{:.0}", entry.dead_at()),
                one_line(&format!("{} {namespace}/{name}", entry.provider_type())),
                one_line(&alert),
                entry.letter.attempts.to_string(),
                status(entry.letter.last_status),
                shorten(&one_line(&entry.letter.reason), TABLE_REASON_CHARS),
            ]
        })
        .collect();
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                write!(line, "{cell:<width$}  ").ok();
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Everything a letter holds: where and when it died, why, the attempts, the
/// last status and answer, the Provider and Alert, the trace, and the event as
/// the Flux JSON a `generic` Provider receives. A raw payload is shown by size
/// only.
#[must_use]
pub fn render_detail(entry: &Entry) -> String {
    let letter = &entry.letter;
    let mut out = String::new();
    let mut field = |name: &str, value: &str| {
        if !value.is_empty() {
            writeln!(out, "{:<15}{}", format!("{name}:"), one_line(value)).ok();
        }
    };
    field("Sequence", &entry.sequence.to_string());
    field("Subject", &entry.subject);
    field("Dead at", &entry.dead_at().to_string());
    field("Stored at", &entry.stored_at.to_string());
    field("Reason", &letter.reason);
    field("Attempts", &letter.attempts.to_string());
    field("Last status", &status(letter.last_status));
    if !letter.subject.is_empty() {
        field("Delivered on", &letter.subject);
    }
    let (namespace, name) = entry.provider();
    let mut provider = format!("{} {namespace}/{name}", entry.provider_type());
    if let Some(uid) = letter
        .delivery
        .as_ref()
        .and_then(|d| d.provider.as_ref())
        .map(|p| p.uid.as_str())
        .filter(|uid| !uid.is_empty())
    {
        write!(provider, " (uid {uid})").ok();
    }
    field("Provider", &provider);
    if let Some(alert) = entry.alert() {
        let mut text = format!("{}/{}", alert.namespace, alert.name);
        if !alert.uid.is_empty() {
            write!(text, " (uid {})", alert.uid).ok();
        }
        field("Alert", &text);
    }
    if let Some(delivery) = &letter.delivery {
        field("Delivery id", &delivery.id);
        if let Some(routed) = delivery.routed_at.as_ref().and_then(from_time) {
            field("Routed at", &routed.to_string());
        }
        if let Some(event) = &delivery.event {
            field("Event id", &event.id);
            field("Cluster", &event.cluster);
            if let Some(received) = event.received_at.as_ref().and_then(from_time) {
                field("Received at", &received.to_string());
            }
        }
    }
    field(
        "Traceparent",
        if letter.traceparent.is_empty() {
            "-"
        } else {
            &letter.traceparent
        },
    );
    if !letter.raw_payload.is_empty() {
        field(
            "Raw payload",
            &format!(
                "{} bytes (not a decodable delivery; cannot be replayed)",
                letter.raw_payload.len()
            ),
        );
    }
    if !letter.last_response.is_empty() {
        out.push_str("Last response:\n");
        for line in letter.last_response.lines() {
            writeln!(out, "  {}", one_line(line)).ok();
        }
    }
    if let Some(event) = letter.delivery.as_ref().and_then(|d| d.event.as_ref()) {
        out.push_str("Event (Flux JSON):\n");
        out.push_str(&String::from_utf8_lossy(&from_proto(event).to_go_json()));
        out.push('\n');
    }
    out
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

/// HERALD_DEAD.
async fn dead_stream(js: &jetstream::Context) -> anyhow::Result<stream::Stream> {
    js.get_stream(names::DEAD_STREAM).await.map_err(|error| {
        anyhow::anyhow!(
            "cannot open stream {} (a sender creates it when it starts): {error}",
            names::DEAD_STREAM
        )
    })
}

/// The letter at `sequence`, `None` when there is none.
async fn get(stream: &stream::Stream, sequence: u64) -> anyhow::Result<Option<Entry>> {
    match stream.get_raw_message(sequence).await {
        Ok(message) => Ok(Some(Entry::decode(
            message.sequence,
            message.subject.to_string(),
            message.payload,
            timestamp(message.time),
        ))),
        Err(error) if error.kind() == stream::RawMessageErrorKind::NoMessageFound => Ok(None),
        Err(error) => Err(anyhow::anyhow!(
            "cannot read sequence {sequence} of {}: {error}",
            names::DEAD_STREAM
        )),
    }
}

/// Deletes the letter at `sequence`; one already gone counts as deleted.
///
/// Without erasing: `Stream::delete_message` also overwrites the message on
/// disk, which makes each deletion cost milliseconds of stream time, and a
/// letter never holds a secret that would need it.
async fn delete(
    js: &jetstream::Context,
    stream: &stream::Stream,
    sequence: u64,
) -> anyhow::Result<()> {
    let request = serde_json::json!({ "seq": sequence, "no_erase": true });
    let error = match js
        .request::<_, _, Response<stream::DeleteStatus>>(
            format!("STREAM.MSG.DELETE.{}", names::DEAD_STREAM),
            &request,
        )
        .await
    {
        Ok(Response::Ok(status)) if status.success => return Ok(()),
        Ok(Response::Ok(_)) => "JetStream did not delete it".to_owned(),
        Ok(Response::Err { error }) => error.to_string(),
        Err(error) => error.to_string(),
    };
    match get(stream, sequence).await {
        // Deleted meanwhile, by another replay or purge.
        Ok(None) => Ok(()),
        _ => Err(anyhow::anyhow!(
            "cannot delete sequence {sequence} of {}: {error}",
            names::DEAD_STREAM
        )),
    }
}

/// Every letter on `subject`, oldest first, up to the last one stored when
/// the scan began.
async fn scan(stream: &stream::Stream, subject: &str) -> anyhow::Result<Vec<Entry>> {
    let last = stream
        .get_info()
        .await
        .map_err(|error| anyhow::anyhow!("cannot read {}: {error}", names::DEAD_STREAM))?
        .state
        .last_sequence;
    let reader = stream
        .create_consumer(consumer::pull::OrderedConfig {
            description: Some("herald dlq".to_owned()),
            filter_subject: subject.to_owned(),
            deliver_policy: consumer::DeliverPolicy::All,
            ..consumer::pull::OrderedConfig::default()
        })
        .await
        .map_err(|error| anyhow::anyhow!("cannot read {}: {error}", names::DEAD_STREAM))?;
    let name = reader.cached_info().name.clone();
    let mut entries = Vec::new();
    let read = if reader.cached_info().num_pending > 0 {
        read_ordered(stream, reader, subject, last, &mut entries).await
    } else {
        Ok(())
    };
    // An ephemeral consumer: the server would drop it soon anyway.
    if let Err(error) = stream.delete_consumer(&name).await {
        tracing::debug!(error = %error, consumer = %name, "Cannot delete a dead-letter reader.");
    }
    read.map(|()| entries)
}

/// Collects letters from an ordered consumer until none is left up to `last`.
async fn read_ordered(
    stream: &stream::Stream,
    reader: consumer::Consumer<consumer::pull::OrderedConfig>,
    subject: &str,
    last: u64,
    entries: &mut Vec<Entry>,
) -> anyhow::Result<()> {
    let mut messages = reader
        .messages()
        .await
        .map_err(|error| anyhow::anyhow!("cannot read {}: {error}", names::DEAD_STREAM))?;
    let mut idle = 0;
    loop {
        let message = match tokio::time::timeout(SCAN_IDLE, messages.next()).await {
            Ok(Some(Ok(message))) => message,
            Ok(Some(Err(error))) => {
                anyhow::bail!("cannot read {}: {error}", names::DEAD_STREAM)
            }
            Ok(None) => return Ok(()),
            Err(_) => {
                // Nothing came: is anything left to read?
                let after = entries.last().map_or(1, |e: &Entry| e.sequence + 1);
                match stream
                    .get_first_raw_message_by_subject(subject, after)
                    .await
                {
                    Ok(next) if next.sequence <= last => {}
                    Ok(_) => return Ok(()),
                    Err(error) if error.kind() == stream::RawMessageErrorKind::NoMessageFound => {
                        return Ok(());
                    }
                    Err(error) => {
                        anyhow::bail!("cannot read {}: {error}", names::DEAD_STREAM)
                    }
                }
                idle += 1;
                anyhow::ensure!(
                    idle < SCAN_MAX_IDLE,
                    "reading {} stalled after sequence {}",
                    names::DEAD_STREAM,
                    after - 1
                );
                continue;
            }
        };
        idle = 0;
        let info = message.info().map_err(|error| {
            anyhow::anyhow!("unexpected message on {}: {error}", names::DEAD_STREAM)
        })?;
        let (sequence, pending, published) = (info.stream_sequence, info.pending, info.published);
        if sequence > last {
            return Ok(());
        }
        entries.push(Entry::decode(
            sequence,
            message.subject.to_string(),
            message.payload.clone(),
            timestamp(published),
        ));
        if pending == 0 || sequence == last {
            return Ok(());
        }
    }
}

/// A JetStream time as a timestamp.
fn timestamp(time: async_nats::datetime::DateTime) -> Timestamp {
    Timestamp::from_nanosecond(time.unix_timestamp_nanos()).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// `text` on one line: control characters (a terminal's escape sequences
/// among them) are shown escaped.
fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// At most `max` characters of `text`, with `…` when shortened.
fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// A status for people: `-` when there was none.
fn status(status: u32) -> String {
    if status == 0 {
        "-".to_owned()
    } else {
        status.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_proto::Delivery;

    fn entry(sequence: u64) -> Entry {
        Entry {
            sequence,
            subject: names::dead_subject("generic", "team.a", "hook"),
            letter: DeadLetter {
                delivery: Some(Delivery {
                    id: "d1".to_owned(),
                    event: Some(herald_proto::Event {
                        id: "e1".to_owned(),
                        message: "it broke".to_owned(),
                        ..herald_proto::Event::default()
                    }),
                    alert: Some(ObjectKey {
                        namespace: "team.a".to_owned(),
                        name: "on-call".to_owned(),
                        uid: "u1".to_owned(),
                    }),
                    provider: Some(ObjectKey {
                        namespace: "team.a".to_owned(),
                        name: "hook".to_owned(),
                        uid: String::new(),
                    }),
                    provider_type: "generic".to_owned(),
                    routed_at: None,
                }),
                reason: "destination answered 404".to_owned(),
                attempts: 1,
                last_status: 404,
                last_response: "not\nfound \u{1b}[31m".to_owned(),
                dead_at: Some(herald_flux::convert::to_time(
                    Timestamp::from_second(1_700_000_000).unwrap(),
                )),
                ..DeadLetter::default()
            },
            stored_at: Timestamp::from_second(1_700_000_001).unwrap(),
        }
    }

    fn raw(sequence: u64, subject: &str) -> Entry {
        Entry {
            sequence,
            subject: subject.to_owned(),
            letter: DeadLetter {
                reason: "cannot decode the delivery".to_owned(),
                raw_payload: vec![1, 2, 3],
                ..DeadLetter::default()
            },
            stored_at: Timestamp::from_second(1_700_000_002).unwrap(),
        }
    }

    fn filter(edit: impl FnOnce(&mut Filter)) -> Filter {
        let mut filter = Filter::default();
        edit(&mut filter);
        filter
    }

    #[test]
    fn filters_match_every_field_they_set() {
        let e = entry(7);
        let dead_at = e.dead_at();
        let second = jiff::SignedDuration::from_secs(1);
        for (f, expected) in [
            (Filter::default(), true),
            (filter(|f| f.provider = Some(String::new())), true),
            (filter(|f| f.provider = Some("team.a/hook".into())), true),
            (filter(|f| f.provider = Some("hook".into())), true),
            (filter(|f| f.provider = Some("team.b/hook".into())), false),
            (filter(|f| f.provider_type = Some("generic".into())), true),
            (filter(|f| f.provider_type = Some("unknown".into())), false),
            (filter(|f| f.alert = Some("team.a/on-call".into())), true),
            (filter(|f| f.alert = Some("on-call".into())), true),
            (filter(|f| f.alert = Some("hook".into())), false),
            (filter(|f| f.reason = Some("Answered 404".into())), true),
            (filter(|f| f.reason = Some("401".into())), false),
            (filter(|f| f.since = Some(dead_at)), true),
            (filter(|f| f.until = Some(dead_at)), true),
            (filter(|f| f.since = Some(dead_at + second)), false),
            (filter(|f| f.until = Some(dead_at - second)), false),
            (filter(|f| f.sequences = vec![3, 7]), true),
            (filter(|f| f.sequences = vec![8]), false),
        ] {
            assert_eq!(f.matches(&e), expected, "{f:?}");
        }
    }

    #[test]
    fn letters_without_a_delivery_are_known_by_their_subject_and_time() {
        let e = raw(9, &names::dead_subject("unknown", "team.a", "hook"));
        assert_eq!(e.provider_type(), "unknown");
        assert_eq!(e.provider(), ("team.a".to_owned(), "hook".to_owned()));
        assert_eq!(e.alert(), None);
        assert_eq!(e.dead_at(), e.stored_at);
        assert!(filter(|f| f.provider = Some("team.a/hook".into())).matches(&e));
        assert!(!filter(|f| f.alert = Some("hook".into())).matches(&e));
        // The router's letters have no type: they are `unknown`.
        let mut routed = entry(1);
        if let Some(delivery) = routed.letter.delivery.as_mut() {
            delivery.provider_type.clear();
        }
        assert_eq!(routed.provider_type(), "unknown");
        // Something that is not a letter at all is still shown, by size.
        let junk = Entry::decode(
            3,
            "herald.dead.x".to_owned(),
            Bytes::from_static(&[0xff; 4]),
            Timestamp::UNIX_EPOCH,
        );
        assert!(junk.letter.reason.starts_with("not a herald.v1.DeadLetter"));
        assert_eq!(junk.letter.raw_payload.len(), 4);
        assert_eq!(junk.provider_type(), "x");
    }

    #[test]
    fn scans_read_only_the_subjects_a_filter_allows() {
        assert_eq!(Filter::default().subject(), "herald.dead.>");
        assert_eq!(
            filter(|f| f.reason = Some("401".into())).subject(),
            "herald.dead.>"
        );
        assert_eq!(
            filter(|f| f.provider_type = Some("unknown".into())).subject(),
            "herald.dead.unknown.*.*"
        );
        let f = filter(|f| {
            f.provider_type = Some("generic".into());
            f.provider = Some("team.a/hook".into());
        });
        assert_eq!(f.subject(), "herald.dead.generic.team_2Ea.hook");
        assert_eq!(
            filter(|f| f.provider = Some("hook".into())).subject(),
            "herald.dead.*.*.hook"
        );
        assert_eq!(
            f.subject(),
            names::dead_subject("generic", "team.a", "hook")
        );
    }

    #[test]
    fn replays_go_to_the_providers_subject_with_their_ids_and_trace() {
        let mut e = entry(7);
        e.letter.traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into();
        let republish = Republish::of(&e).unwrap();
        assert_eq!(republish.subject, "herald.deliveries.generic.team_2Ea.hook");
        let header = |name: &str| republish.headers.get(name).map(|v| v.as_str().to_owned());
        assert_eq!(header(names::MSG_ID_HEADER).as_deref(), Some("replay:d1:7"));
        assert_eq!(header(names::EVENT_ID_HEADER).as_deref(), Some("e1"));
        assert_eq!(
            header(names::TRACEPARENT_HEADER).as_deref(),
            Some(e.letter.traceparent.as_str())
        );
        let mut replayed = Delivery::decode(republish.payload).unwrap();
        assert!(
            replayed.routed_at.take().is_some(),
            "a replay is queued anew"
        );
        let mut original = e.letter.delivery.clone().unwrap();
        original.routed_at = None;
        assert_eq!(replayed, original);

        if let Some(delivery) = e.letter.delivery.as_mut() {
            delivery.provider_type.clear();
        }
        e.letter.traceparent.clear();
        let republish = Republish::of(&e).unwrap();
        assert_eq!(republish.subject, "herald.deliveries.unknown.team_2Ea.hook");
        assert!(republish.headers.get(names::TRACEPARENT_HEADER).is_none());

        let reason = Republish::of(&raw(9, "herald.dead.unknown.a.b"))
            .err()
            .unwrap();
        assert!(reason.contains("no delivery"), "{reason}");
    }

    #[test]
    fn the_table_is_aligned_one_line_per_letter() {
        let mut long = entry(12345);
        long.letter.reason = format!("line one\nline two {}", "x".repeat(200));
        let table = render_table(&[entry(7), long, raw(9, "herald.dead.unknown.a.b")]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert_eq!(
            lines[0],
            "SEQ    DEAD AT               PROVIDER             ALERT           ATTEMPTS  STATUS  REASON"
        );
        assert_eq!(
            lines[1],
            "7      2023-11-14T22:13:20Z  generic team.a/hook  team.a/on-call  1         404     destination answered 404"
        );
        assert!(lines[2].contains("line one\\nline two xxx"), "{table}");
        assert!(lines[2].ends_with('…'), "{table}");
        assert_eq!(
            lines[3],
            "9      2023-11-14T22:13:22Z  unknown a/b          -               0         -       cannot decode the delivery"
        );
    }

    #[test]
    fn the_detail_shows_everything_and_no_terminal_escapes() {
        let detail = render_detail(&entry(7));
        assert_eq!(
            detail,
            "Sequence:      7\n\
             Subject:       herald.dead.generic.team_2Ea.hook\n\
             Dead at:       2023-11-14T22:13:20Z\n\
             Stored at:     2023-11-14T22:13:21Z\n\
             Reason:        destination answered 404\n\
             Attempts:      1\n\
             Last status:   404\n\
             Provider:      generic team.a/hook\n\
             Alert:         team.a/on-call (uid u1)\n\
             Delivery id:   d1\n\
             Event id:      e1\n\
             Traceparent:   -\n\
             Last response:\n  not\n  found \\u{1b}[31m\n\
             Event (Flux JSON):\n\
             {\"involvedObject\":{},\"severity\":\"\",\"timestamp\":null,\"message\":\"it broke\",\"reason\":\"\",\"reportingController\":\"\"}\n"
        );
        let detail = render_detail(&raw(9, "herald.dead.unknown.a.b"));
        assert!(
            detail.contains(
                "Raw payload:   3 bytes (not a decodable delivery; cannot be replayed)\n"
            ),
            "{detail}"
        );
        assert!(!detail.contains("Event"), "{detail}");
    }
}
