//! The part of ingest that HTTP and gRPC share: decode a Flux event, apply the
//! inbound metadata filter, stamp it, and store it on HERALD_EVENTS.

use std::time::Duration;

use async_nats::HeaderMap;
use bytes::Bytes;
use herald_flux::convert::{Stamp, to_proto};
use herald_flux::{FluxEvent, dedupe, metadata};
use herald_proto::names;
use herald_runtime::{Metrics, Nats};
use prost::Message as _;

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
    /// The caller did not prove which cluster it is.
    #[error("{0}")]
    Unauthorized(String),
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
            Self::TooLarge { .. } => "too_large",
            Self::Unauthorized(_) => "unauthorized",
            Self::Unavailable(_) => "unavailable",
        }
    }
}

/// An event ready to be published.
#[derive(Debug)]
pub struct Prepared {
    /// The Herald event id.
    pub id: String,
    subject: String,
    headers: HeaderMap,
    payload: Bytes,
}

/// What happened to a stored event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The Herald event id.
    pub id: String,
    /// JetStream had it already (a retried request).
    pub duplicate: bool,
}

/// Decodes, stamps and stores events.
#[derive(Clone, Debug)]
pub struct Intake {
    nats: Nats,
    metrics: Metrics,
    publish_timeout: Duration,
}

// === impl Intake ===

impl Intake {
    /// An intake that publishes through `nats`.
    #[must_use]
    pub fn new(nats: Nats, metrics: Metrics, publish_timeout: Duration) -> Self {
        Self {
            nats,
            metrics,
            publish_timeout,
        }
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
        let id = dedupe::event_id(cluster, &event);
        let dedupe_key = dedupe::dedupe_key(&event);
        let stored = to_proto(
            event,
            Stamp {
                id: id.clone(),
                cluster: cluster.to_owned(),
                received_at: Some(jiff::Timestamp::now()),
                dedupe_key,
            },
        );
        let mut headers = HeaderMap::new();
        headers.insert(names::MSG_ID_HEADER, id.as_str());
        headers.insert(names::EVENT_ID_HEADER, id.as_str());
        Ok(Prepared {
            subject: names::event_subject(cluster),
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
    /// [`IngestError::Unavailable`] when NATS is down or JetStream does not
    /// acknowledge in time.
    pub async fn publish(&self, prepared: Prepared) -> Result<Stored, IngestError> {
        if !self.nats.is_connected() {
            return Err(IngestError::Unavailable("not connected to NATS".to_owned()));
        }
        let Prepared {
            id,
            subject,
            headers,
            payload,
        } = prepared;
        let attempt = async {
            let ack_future = self
                .nats
                .jetstream
                .publish_with_headers(subject, headers, payload)
                .await
                .map_err(|e| IngestError::Unavailable(e.to_string()))?;
            ack_future
                .await
                .map_err(|e| IngestError::Unavailable(e.to_string()))
        };
        let ack = tokio::time::timeout(self.publish_timeout, attempt)
            .await
            .map_err(|_| {
                IngestError::Unavailable("JetStream did not acknowledge in time".to_owned())
            })??;
        if ack.duplicate {
            self.metrics.events_duplicate.inc();
        } else {
            self.metrics.events_stored.inc();
        }
        tracing::debug!(event.id = %id, duplicate = ack.duplicate, sequence = ack.sequence, "Stored event.");
        Ok(Stored {
            id,
            duplicate: ack.duplicate,
        })
    }
}
