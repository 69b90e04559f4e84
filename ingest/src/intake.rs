//! The part of ingest that HTTP and gRPC share: decode a Flux event, apply the
//! inbound metadata filter, stamp it, and store it on HERALD_EVENTS.

use std::time::Duration;

use async_nats::HeaderMap;
use bytes::Bytes;
use herald_flux::convert::{Stamp, to_proto};
use herald_flux::{FluxEvent, dedupe, metadata};
use herald_proto::names;
use herald_runtime::budget::{StreamBudget, format_bytes, is_out_of_room};
use herald_runtime::nats::ENVELOPE_RESERVE;
use herald_runtime::{Metrics, Nats};
use prost::Message as _;
use tracing::Instrument as _;

use crate::dedupe::Dedupe;

/// Why an event was not stored.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The body is not a Flux event; the message says why.
    #[error("{0}")]
    BadRequest(String),
    /// The body is larger than the limit.
    #[error("request body is larger than {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The event, once stored, would be larger than what NATS carries.
    #[error(
        "the event takes {size} bytes once stored, more than the {limit} this Herald can carry: \
         its NATS server takes messages up to {max_payload} bytes (max_payload), less {reserve} \
         kept for the deliveries and dead letters made from an event; raise max_payload on the \
         NATS server (8MB fits the largest event Flux sends)",
        reserve = herald_runtime::nats::ENVELOPE_RESERVE
    )]
    DoesNotFit {
        /// The stored event's size.
        size: usize,
        /// The largest event that fits.
        limit: usize,
        /// The server's `max_payload`.
        max_payload: usize,
    },
    /// The caller did not prove which cluster it is.
    #[error("{0}")]
    Unauthorized(String),
    /// The request body did not arrive in time.
    #[error("the request body did not arrive within {limit:?}")]
    Timeout {
        /// How long it may take.
        limit: Duration,
    },
    /// The cluster is over its share of ingest; it should retry later.
    #[error("{0}")]
    OverShare(#[from] crate::share::OverShare),
    /// JetStream did not acknowledge the event; the caller should retry.
    #[error("cannot store the event now, retry later: {0}")]
    Unavailable(String),
}

impl IngestError {
    /// A short label for the rejection metric.
    #[must_use]
    pub fn reason(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "invalid_event",
            Self::TooLarge { .. } | Self::DoesNotFit { .. } => "too_large",
            Self::Unauthorized(_) => "unauthorized",
            Self::Timeout { .. } => "timeout",
            Self::Unavailable(_) => "unavailable",
            Self::OverShare(over) => over.reason(),
        }
    }
}

/// An event ready to be published.
#[derive(Debug)]
pub struct Prepared {
    /// The Herald event id.
    pub id: String,
    /// What traces say about it.
    pub labels: EventLabels,
    dedupe_key: String,
    received_millis: i64,
    subject: String,
    headers: HeaderMap,
    payload: Bytes,
}

/// The event's identity as trace attributes show it.
#[derive(Debug, Clone, Default)]
pub struct EventLabels {
    pub cluster: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub revision: String,
}

impl EventLabels {
    /// Records the labels on `span` (which declares the fields as empty).
    pub fn record(&self, span: &tracing::Span, event_id: &str) {
        span.record("event.id", event_id);
        span.record("herald.cluster", self.cluster.as_str());
        span.record("flux.object.kind", self.kind.as_str());
        span.record("flux.object.namespace", self.namespace.as_str());
        span.record("flux.object.name", self.name.as_str());
        if !self.revision.is_empty() {
            span.record("flux.revision", self.revision.as_str());
        }
    }
}

/// What happened to an accepted event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The Herald event id.
    pub id: String,
    /// Not stored again: a duplicate within Flux's window, or a retried
    /// request JetStream already had.
    pub duplicate: bool,
    /// The end of the event's dedupe window (Unix milliseconds), when dedupe is on.
    pub window_reset_millis: Option<i64>,
}

/// Decodes, stamps and stores events.
#[derive(Clone, Debug)]
pub struct Intake {
    nats: Nats,
    /// JetStream with `publish_timeout` as its timeout, for the publishes.
    publisher: async_nats::jetstream::Context,
    metrics: Metrics,
    publish_timeout: Duration,
    dedupe: Option<Dedupe>,
    budget: StreamBudget,
}

// === impl Intake ===

impl Intake {
    /// An intake that publishes through `nats`, applying Flux's dedupe when
    /// `dedupe` is given.
    #[must_use]
    pub fn new(
        nats: Nats,
        metrics: Metrics,
        publish_timeout: Duration,
        dedupe: Option<Dedupe>,
        budget: StreamBudget,
    ) -> Self {
        let publisher = nats.args.context(publish_timeout, nats.client.clone());
        Self {
            nats,
            publisher,
            metrics,
            publish_timeout,
            dedupe,
            budget,
        }
    }

    /// HERALD_EVENTS's budget as this intake sees it.
    #[must_use]
    pub fn budget(&self) -> &StreamBudget {
        &self.budget
    }

    fn full(&self) -> IngestError {
        IngestError::Unavailable(format!(
            "HERALD_EVENTS is full: events not yet routed fill its budget of {}",
            format_bytes(self.budget.max_bytes())
        ))
    }

    /// The NATS connection it publishes through.
    #[must_use]
    pub fn nats(&self) -> &Nats {
        &self.nats
    }

    /// The metrics this intake counts into.
    #[must_use]
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Decodes `body` as a Flux event from `cluster` and prepares its message.
    ///
    /// # Errors
    ///
    /// [`IngestError::BadRequest`] when `body` is not a Flux event.
    pub fn prepare(&self, cluster: &str, body: &[u8]) -> Result<Prepared, IngestError> {
        let mut event =
            FluxEvent::from_json(body).map_err(|e| IngestError::BadRequest(e.to_string()))?;
        self.metrics.events_received.inc();
        let group = metadata::api_group(&event.involved_object.api_version).to_owned();
        metadata::cleanup(&mut event.metadata, &group);
        // At an edge, the id also names the edge's domain: the hub sources
        // every edge into one stream with one duplicate window, and two
        // edges naming themselves alike (the hub assigns the clusters, so
        // an edge's own name may be anything) must not share ids.
        let id = match &self.nats.args.jetstream_domain {
            Some(domain) => dedupe::event_id(&format!("{domain}/{cluster}"), &event),
            None => dedupe::event_id(cluster, &event),
        };
        let dedupe_key = dedupe::dedupe_key(&event);
        let labels = EventLabels {
            cluster: cluster.to_owned(),
            kind: event.involved_object.kind.clone(),
            namespace: event.involved_object.namespace.clone(),
            name: event.involved_object.name.clone(),
            revision: event
                .metadata
                .get(&format!("{group}/revision"))
                .cloned()
                .unwrap_or_default(),
        };
        let now = jiff::Timestamp::now();
        let stored = to_proto(
            event,
            Stamp {
                id: id.clone(),
                cluster: cluster.to_owned(),
                received_at: Some(now),
                dedupe_key: dedupe_key.clone(),
            },
        );
        let mut headers = HeaderMap::new();
        headers.insert(names::MSG_ID_HEADER, id.as_str());
        headers.insert(names::EVENT_ID_HEADER, id.as_str());
        Ok(Prepared {
            labels,
            dedupe_key,
            received_millis: now.as_millisecond(),
            subject: self.nats.args.event_subject(cluster),
            payload: Bytes::from(stored.encode_to_vec()),
            headers,
            id,
        })
    }

    /// Publishes a prepared event and waits for JetStream's acknowledgement.
    /// Many calls may be in flight at once; each awaits only its own ack.
    ///
    /// # Errors
    ///
    /// [`IngestError::Unavailable`] when NATS is down, HERALD_EVENTS has no
    /// room, or JetStream does not acknowledge in time;
    /// [`IngestError::DoesNotFit`] when the event is larger than NATS carries.
    pub async fn publish(&self, prepared: Prepared) -> Result<Stored, IngestError> {
        if !self.nats.is_connected() {
            return Err(IngestError::Unavailable("not connected to NATS".to_owned()));
        }
        let max_payload = self.nats.max_payload();
        let limit = max_payload.saturating_sub(ENVELOPE_RESERVE);
        if prepared.payload.len() > limit {
            return Err(IngestError::DoesNotFit {
                size: prepared.payload.len(),
                limit,
                max_payload,
            });
        }
        if self.budget.is_full() {
            self.budget.refused();
            return Err(self.full());
        }
        let Prepared {
            id,
            labels,
            dedupe_key,
            received_millis,
            subject,
            headers,
            payload,
        } = prepared;
        let mut window_reset_millis = None;
        if let Some(dedupe) = &self.dedupe {
            // Each awaited part boxed apart keeps every box of an event
            // within the allocator's per-thread cache.
            let check = tokio::time::timeout(
                self.publish_timeout,
                Box::pin(dedupe.check(&labels.cluster, &dedupe_key, &id, received_millis)),
            )
            .await
            .map_err(|_| {
                IngestError::Unavailable("the dedupe state did not answer in time".to_owned())
            })??;
            window_reset_millis = Some(check.reset_unix_millis);
            if check.duplicate {
                self.metrics.duplicate("flux_rate_limit", &labels.cluster);
                tracing::debug!(event.id = %id, "Discarding event, rate limiting duplicate events.");
                return Ok(Stored {
                    id,
                    duplicate: true,
                    window_reset_millis,
                });
            }
        }
        let span = tracing::info_span!(
            "ingest.publish",
            otel.name = %format!("publish {subject}"),
            otel.kind = "producer",
            otel.status_code = tracing::field::Empty,
            messaging.system = "nats",
            messaging.operation.name = "publish",
            messaging.operation.type = "send",
            messaging.destination.name = %subject,
            messaging.destination.template = "herald.events.{cluster}",
            messaging.message.id = %id,
            event.id = tracing::field::Empty,
            herald.cluster = tracing::field::Empty,
            flux.object.kind = tracing::field::Empty,
            flux.object.namespace = tracing::field::Empty,
            flux.object.name = tracing::field::Empty,
            flux.revision = tracing::field::Empty,
            herald.duplicate = tracing::field::Empty,
        );
        labels.record(&span, &id);
        let mut headers = headers;
        herald_runtime::propagation::inject_nats(&span, &mut headers);
        let unavailable = |error: &dyn std::fmt::Display| {
            let text = error.to_string();
            if is_out_of_room(&text) {
                self.budget.refused();
                self.full()
            } else {
                IngestError::Unavailable(text)
            }
        };
        let attempt = async {
            let ack_future = self
                .publisher
                .publish_with_headers(subject, headers, payload)
                .await
                .map_err(|e| unavailable(&e))?;
            ack_future.await.map_err(|e| unavailable(&e))
        };
        let ack = tokio::time::timeout(
            self.publish_timeout,
            Box::pin(attempt.instrument(span.clone())),
        )
        .await
        .map_err(|_| IngestError::Unavailable("JetStream did not acknowledge in time".to_owned()))
        .and_then(|r| r)
        .inspect_err(|_| {
            span.record("otel.status_code", "error");
        })?;
        span.record("herald.duplicate", ack.duplicate);
        if ack.duplicate {
            self.metrics.duplicate("retried_request", &labels.cluster);
        } else {
            self.metrics.stored(&labels.cluster);
        }
        tracing::debug!(event.id = %id, duplicate = ack.duplicate, sequence = ack.sequence, "Stored event.");
        Ok(Stored {
            id,
            duplicate: ack.duplicate,
            window_reset_millis,
        })
    }
}
