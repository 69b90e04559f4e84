//! The flusher: turns each due group of HERALD_GROUPS into digest deliveries
//! on HERALD_DELIVERIES. Every sender replica runs it; a replica flushes a
//! group only after it claimed the group's entry in HERALD_GROUP_DUE with
//! compare-and-set. A flush reads the group's deliveries in batches,
//! records the stream sequences it covers in its claim, publishes the
//! digests with message ids derived from those sequences, then removes what
//! it flushed: a flush taken over after a crash sends the same digests
//! again, which JetStream stores once.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{consumer, kv, stream};
use bytes::Bytes;
use futures::future::try_join_all;
use futures::{StreamExt as _, TryStreamExt as _};
use herald_flux::convert::to_time;
use herald_flux::grouping::digests;
use herald_proto::{Delivery, Event, GroupDue, ObjectReference, names};
use herald_runtime::{Metrics, Nats};
use prost::Message as _;
use sha2::{Digest as _, Sha256};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

/// How often the flusher looks for due groups.
const POLL: Duration = Duration::from_millis(250);
/// How long a claim holds a group: a flusher lost with it gives it up then.
const CLAIM: Duration = Duration::from_secs(30);
/// The most deliveries one flush reads (the rest wait for the next one).
const MAX_PER_FLUSH: usize = 20_000;
/// Deliveries read per batch.
const BATCH: usize = 1_000;
/// Groups flushed at once.
const CONCURRENT_FLUSHES: usize = 16;
/// The interval of a group whose due time was lost (the router could not
/// write it): Herald's default.
const FALLBACK_INTERVAL: Duration = herald_flux::grouping::DEFAULT_GROUP_INTERVAL;

/// Why a flush did not finish (it is taken up again later).
#[derive(Debug, thiserror::Error)]
pub enum FlushError {
    #[error("cannot read HERALD_GROUPS: {0}")]
    Read(String),
    #[error("cannot publish a digest: {0}")]
    Publish(String),
    #[error("cannot update the group's entry: {0}")]
    State(String),
}

fn read_error(error: &dyn std::fmt::Display) -> FlushError {
    FlushError::Read(error.to_string())
}

fn now_millis() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// How far a [`Flusher::tick_until`] goes with each due group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Claimed and published, nothing removed: where a flusher that dies
    /// between publishing and removing leaves a group.
    Published,
    /// Flushed: published, removed, and the group's interval started.
    Done,
}

/// Flushes due groups.
#[derive(Clone)]
pub struct Flusher {
    nats: Nats,
    metrics: Metrics,
    due: kv::Store,
    claim: Duration,
}

// === impl Flusher ===

impl Flusher {
    #[must_use]
    pub fn new(nats: Nats, metrics: Metrics, due: kv::Store) -> Self {
        Self {
            nats,
            metrics,
            due,
            claim: CLAIM,
        }
    }

    /// How long a claim holds a group (30 s by default).
    #[must_use]
    pub fn with_claim(mut self, claim: Duration) -> Self {
        self.claim = claim;
        self
    }

    /// Flushes due groups until `cancel` fires.
    pub async fn run(self, cancel: CancellationToken) {
        loop {
            if let Err(error) = self.tick().await {
                tracing::debug!(error = %error, "Cannot look for due groups now.");
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// One look at every group: flushes the due ones, ends the idle ones.
    ///
    /// # Errors
    ///
    /// When HERALD_GROUPS or HERALD_GROUP_DUE cannot be read.
    pub async fn tick(&self) -> Result<(), FlushError> {
        self.tick_until(Stage::Done).await
    }

    /// As [`Flusher::tick`], taking each due group as far as `stage`.
    ///
    /// # Errors
    ///
    /// When HERALD_GROUPS or HERALD_GROUP_DUE cannot be read.
    pub async fn tick_until(&self, stage: Stage) -> Result<(), FlushError> {
        let stream = self
            .nats
            .jetstream
            .get_stream(names::GROUPS_STREAM)
            .await
            .map_err(|e| read_error(&e))?;
        let pending: HashMap<String, usize> = stream
            .info_with_subjects(names::GROUPS_SUBJECTS)
            .await
            .map_err(|e| read_error(&e))?
            .try_filter_map(|(subject, count)| async move {
                Ok(names::group_of_subject(&subject).map(|g| (g, count)))
            })
            .try_collect()
            .await
            .map_err(|e| read_error(&e))?;
        // Listing the keys costs a consumer: only when there are some.
        let entries = self
            .due
            .status()
            .await
            .map_err(|e| read_error(&e))?
            .values();
        if entries == 0 && pending.is_empty() {
            return Ok(());
        }
        let mut groups: Vec<String> = if entries == 0 {
            Vec::new()
        } else {
            self.due
                .keys()
                .await
                .map_err(|e| read_error(&e))?
                .try_collect()
                .await
                .map_err(|e| read_error(&e))?
        };
        groups.extend(
            pending
                .keys()
                .filter(|g| !groups.contains(g))
                .cloned()
                .collect::<Vec<_>>(),
        );
        futures::stream::iter(groups)
            .for_each_concurrent(CONCURRENT_FLUSHES, |group| {
                let has_pending = pending.get(&group).is_some_and(|&n| n > 0);
                let stream = &stream;
                async move {
                    if let Err(error) = self.visit(stream, &group, has_pending, stage).await {
                        tracing::warn!(error = %error, group = %group, "Cannot flush a group now; it is flushed later.");
                    }
                }
            })
            .await;
        Ok(())
    }

    async fn visit(
        &self,
        stream: &stream::Stream,
        group: &str,
        has_pending: bool,
        stage: Stage,
    ) -> Result<(), FlushError> {
        let now = now_millis();
        let entry = self
            .due
            .entry(group)
            .await
            .map_err(|e| FlushError::State(e.to_string()))?
            .filter(|e| e.operation == kv::Operation::Put);
        let (state, revision) = match entry {
            Some(entry) => (
                GroupDue::decode(entry.value.clone()).unwrap_or_default(),
                entry.revision,
            ),
            None if has_pending => {
                // Deliveries whose due time was never written: due now.
                let state = GroupDue {
                    due_unix_millis: now,
                    interval_millis: millis(FALLBACK_INTERVAL),
                    ..GroupDue::default()
                };
                match self
                    .due
                    .create(group, Bytes::from(state.encode_to_vec()))
                    .await
                {
                    Ok(revision) => (state, revision),
                    Err(_) => return Ok(()),
                }
            }
            None => return Ok(()),
        };
        if state.due_unix_millis > now || state.claimed_until_unix_millis > now {
            return Ok(());
        }
        if !has_pending && state.claim_last_sequence == 0 {
            // Nothing gathered since the last digest, and the interval has
            // passed: the group ends; its next event waits group-wait again.
            self.due
                .delete_expect_revision(group, Some(revision))
                .await
                .ok();
            return Ok(());
        }
        self.flush(stream, group, state, revision, stage).await
    }

    async fn flush(
        &self,
        stream: &stream::Stream,
        group: &str,
        mut state: GroupDue,
        revision: u64,
        stage: Stage,
    ) -> Result<(), FlushError> {
        let subject = names::group_subject(group);
        // A flush taken over covers exactly what the first one covered.
        let resumed = state.claim_last_sequence > 0;
        let messages = read_group(
            stream,
            &subject,
            resumed.then_some((state.claim_first_sequence, state.claim_last_sequence)),
        )
        .await?;
        let (first, last) = match (messages.first(), messages.last()) {
            (Some(first), Some(last)) => (first.0, last.0),
            _ if resumed => (state.claim_first_sequence, state.claim_last_sequence),
            _ => return Ok(()),
        };
        state.claimed_until_unix_millis = now_millis() + millis(self.claim);
        state.claim_first_sequence = first;
        state.claim_last_sequence = last;
        let revision = match self
            .due
            .update(group, Bytes::from(state.encode_to_vec()), revision)
            .await
        {
            Ok(revision) => revision,
            // Another flusher claimed it first.
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => return Ok(()),
            Err(e) => return Err(FlushError::State(e.to_string())),
        };
        let span = tracing::info_span!(
            "flusher.flush",
            otel.name = "process herald.groups",
            otel.kind = "consumer",
            otel.status_code = tracing::field::Empty,
            messaging.system = "nats",
            messaging.operation.name = "process",
            messaging.operation.type = "process",
            messaging.destination.name = %subject,
            messaging.destination.template = "herald.groups.{group}",
            messaging.batch.message_count = messages.len(),
            herald.digests = tracing::field::Empty,
        );
        // The digest continues the trace of the group's first event.
        if let Some((_, headers, _)) = messages.first() {
            herald_runtime::propagation::set_parent(
                &span,
                herald_runtime::propagation::extract_nats(headers.as_ref()),
            );
        }
        let deliveries: Vec<Delivery> = messages
            .iter()
            .filter_map(|(seq, _, payload)| match Delivery::decode(payload.clone()) {
                Ok(delivery) => Some(delivery),
                Err(error) => {
                    tracing::error!(error = %error, sequence = seq, "A message on HERALD_GROUPS is not a delivery; it is left out of the digest.");
                    None
                }
            })
            .collect();
        let sent = self
            .publish_digests(group, first, last, &deliveries)
            .instrument(span.clone())
            .await;
        if let Err(error) = sent {
            span.record("otel.status_code", "error");
            return Err(error);
        }
        if stage == Stage::Published {
            return Ok(());
        }
        stream
            .purge()
            .filter(subject.as_str())
            .sequence(last + 1)
            .await
            .map_err(|e| FlushError::State(format!("cannot remove flushed deliveries: {e}")))?;
        let interval = if state.interval_millis > 0 {
            state.interval_millis
        } else {
            millis(FALLBACK_INTERVAL)
        };
        let done = GroupDue {
            due_unix_millis: now_millis() + interval,
            interval_millis: interval,
            flushed: true,
            ..GroupDue::default()
        };
        self.due
            .update(group, Bytes::from(done.encode_to_vec()), revision)
            .await
            .map_err(|e| FlushError::State(e.to_string()))?;
        Ok(())
    }

    /// Publishes the digests of `deliveries` (sequences `first..=last` of
    /// the group) and awaits every ack.
    async fn publish_digests(
        &self,
        group: &str,
        first: u64,
        last: u64,
        deliveries: &[Delivery],
    ) -> Result<(), FlushError> {
        let Some(sample) = deliveries.first() else {
            return Ok(());
        };
        let events: Vec<Event> = deliveries.iter().filter_map(|d| d.event.clone()).collect();
        let alert = sample.alert.clone().unwrap_or_default();
        let provider = sample.provider.clone().unwrap_or_default();
        let template = template(&events, &alert);
        let digests = digests(&events, &sample.provider_type, &template);
        let subject =
            names::delivery_subject(&sample.provider_type, &provider.namespace, &provider.name);
        tracing::Span::current().record("herald.digests", digests.len());
        let mut acks = Vec::with_capacity(digests.len());
        for (i, mut event) in digests.into_iter().enumerate() {
            let id = digest_id(group, first, last, i);
            event.id.clone_from(&id);
            let delivery = Delivery {
                id: id.clone(),
                event: Some(event),
                alert: Some(alert.clone()),
                provider: Some(provider.clone()),
                provider_type: sample.provider_type.clone(),
                routed_at: Some(to_time(jiff::Timestamp::now())),
                catalog: sample.catalog.clone(),
            };
            let mut headers = HeaderMap::new();
            headers.insert(names::MSG_ID_HEADER, id.as_str());
            headers.insert(names::EVENT_ID_HEADER, id.as_str());
            headers.insert(
                names::GROUP_EVENTS_HEADER,
                deliveries.len().to_string().as_str(),
            );
            herald_runtime::propagation::inject_nats(&tracing::Span::current(), &mut headers);
            let ack = self
                .nats
                .jetstream
                .publish_with_headers(
                    subject.clone(),
                    headers,
                    Bytes::from(delivery.encode_to_vec()),
                )
                .await
                .map_err(|e| FlushError::Publish(e.to_string()))?;
            acks.push(ack.into_future());
        }
        let count = acks.len();
        try_join_all(acks)
            .await
            .map_err(|e| FlushError::Publish(e.to_string()))?;
        self.metrics.digests_sent.inc_by(count as u64);
        tracing::debug!(group = %group, events = deliveries.len(), digests = count, "Flushed a group.");
        Ok(())
    }
}

/// The stable id of digest `part` of sequences `first..=last` of `group`.
fn digest_id(group: &str, first: u64, last: u64, part: usize) -> String {
    let digest = Sha256::digest(format!("digest/{group}/{first}-{last}/{part}"));
    hex::encode(&digest[..16])
}

/// What every digest of a group shares: the Alert as the object, the
/// controller and cluster of the first event, and the metadata every event
/// carries alike (the Alert's eventMetadata and summary among them).
fn template(events: &[Event], alert: &herald_proto::ObjectKey) -> Event {
    let mut metadata: BTreeMap<String, String> = events
        .first()
        .map(|e| e.metadata.clone().into_iter().collect())
        .unwrap_or_default();
    for event in events.iter().skip(1) {
        metadata.retain(|k, v| event.metadata.get(k) == Some(v));
    }
    let first = events.first().cloned().unwrap_or_default();
    let same_cluster = events.iter().all(|e| e.cluster == first.cluster);
    Event {
        involved_object: Some(ObjectReference {
            kind: "Alert".to_owned(),
            namespace: alert.namespace.clone(),
            name: alert.name.clone(),
            uid: alert.uid.clone(),
            api_version: "notification.toolkit.fluxcd.io/v1beta3".to_owned(),
            ..ObjectReference::default()
        }),
        reporting_controller: first.reporting_controller.clone(),
        reporting_instance: first.reporting_instance.clone(),
        cluster: if same_cluster {
            first.cluster.clone()
        } else {
            String::new()
        },
        timestamp: Some(to_time(jiff::Timestamp::now())),
        metadata: metadata.into_iter().collect(),
        reason: "Digest".to_owned(),
        ..Event::default()
    }
}

/// The group's stored deliveries, in order, in batches: every one (up to
/// [`MAX_PER_FLUSH`]), or those within `range` when a flush is resumed.
async fn read_group(
    stream: &stream::Stream,
    subject: &str,
    range: Option<(u64, u64)>,
) -> Result<Vec<(u64, Option<HeaderMap>, Bytes)>, FlushError> {
    let deliver_policy = match range {
        Some((first, _)) => consumer::DeliverPolicy::ByStartSequence {
            start_sequence: first,
        },
        None => consumer::DeliverPolicy::All,
    };
    let consumer = stream
        .create_consumer(consumer::pull::Config {
            filter_subject: subject.to_owned(),
            deliver_policy,
            ack_policy: consumer::AckPolicy::None,
            inactive_threshold: Duration::from_secs(30),
            memory_storage: true,
            num_replicas: 1,
            ..consumer::pull::Config::default()
        })
        .await
        .map_err(|e| read_error(&e))?;
    let mut out = Vec::new();
    'batches: while out.len() < MAX_PER_FLUSH {
        let mut batch = consumer
            .fetch()
            .max_messages(BATCH.min(MAX_PER_FLUSH - out.len()))
            .messages()
            .await
            .map_err(|e| read_error(&e))?;
        let mut got = 0;
        while let Some(message) = batch.next().await {
            let message = message.map_err(|e| read_error(&e))?;
            got += 1;
            let info = message.info().map_err(|e| read_error(&e))?;
            let sequence = info.stream_sequence;
            let more = info.pending > 0;
            if range.is_some_and(|(_, last)| sequence > last) {
                break 'batches;
            }
            out.push((sequence, message.headers.clone(), message.payload.clone()));
            if !more || range.is_some_and(|(_, last)| sequence == last) {
                break 'batches;
            }
        }
        if got == 0 {
            break;
        }
    }
    let name = consumer.cached_info().name.clone();
    stream.delete_consumer(&name).await.ok();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_ids_are_stable_and_distinct() {
        assert_eq!(digest_id("g", 1, 9, 0), digest_id("g", 1, 9, 0));
        assert_ne!(digest_id("g", 1, 9, 0), digest_id("g", 1, 9, 1));
        assert_ne!(digest_id("g", 1, 9, 0), digest_id("g", 1, 10, 0));
        assert_ne!(digest_id("g", 1, 9, 0), digest_id("h", 1, 9, 0));
        assert_eq!(digest_id("g", 1, 9, 0).len(), 32);
    }

    #[test]
    fn the_template_keeps_what_every_event_shares() {
        let event = |cluster: &str, revision: &str| Event {
            cluster: cluster.to_owned(),
            metadata: [
                ("summary".to_owned(), "prod".to_owned()),
                ("revision".to_owned(), revision.to_owned()),
            ]
            .into_iter()
            .collect(),
            ..Event::default()
        };
        let alert = herald_proto::ObjectKey {
            namespace: "flux-system".to_owned(),
            name: "on-call".to_owned(),
            uid: "u".to_owned(),
        };
        let t = template(&[event("eu", "a"), event("eu", "b")], &alert);
        assert_eq!(t.metadata.len(), 1);
        assert_eq!(t.metadata["summary"], "prod");
        assert_eq!(t.cluster, "eu");
        assert_eq!(t.involved_object.unwrap().name, "on-call");
        let t = template(&[event("eu", "a"), event("us", "a")], &alert);
        assert_eq!(t.cluster, "");
        assert_eq!(t.metadata.len(), 2);
    }
}
