//! The gRPC intake for clients that send events in bulk: every event of a
//! batch is published at once and each one is answered on its own.

use std::time::Duration;

use axum::extract::{Request as HttpRequest, State};
use axum::middleware::Next;
use axum::response::Response as HttpResponse;
use futures::future::join_all;
use herald_proto::v1::ingest_server::{Ingest, IngestServer};
use herald_proto::v1::{PublishRequest, PublishResponse, PublishResult, publish_result::Status};
use tonic::{Request, Response};
use tracing::Instrument as _;

use crate::clusters::Clusters;
use crate::http::MAX_BODY_BYTES;
use crate::intake::{IngestError, Intake};

/// The most events one request may carry.
pub const MAX_BATCH: usize = 10_000;

/// The gRPC service.
#[derive(Clone, Debug)]
pub struct GrpcIngest {
    intake: Intake,
    clusters: Clusters,
    turn_wait: Duration,
}

impl GrpcIngest {
    /// A tonic server for the service. An event of a batch waits up to
    /// `turn_wait` for a turn within its cluster's share of events in
    /// flight, then is answered `UNAVAILABLE`.
    #[must_use]
    pub fn server(intake: Intake, clusters: Clusters, turn_wait: Duration) -> IngestServer<Self> {
        IngestServer::new(Self {
            intake,
            clusters,
            turn_wait,
        })
        .max_decoding_message_size(64 * 1024 * 1024)
    }
}

/// The gRPC routes, served over HTTP/2 by `herald_runtime::serve`. A call
/// that has not been read, decoded and answered within `request_timeout`
/// ends with `DEADLINE_EXCEEDED`: a client that dribbles its request holds
/// its stream no longer than that.
pub fn router(
    intake: Intake,
    clusters: Clusters,
    turn_wait: Duration,
    request_timeout: Duration,
) -> axum::Router {
    tonic::service::Routes::new(GrpcIngest::server(intake, clusters, turn_wait))
        .prepare()
        .into_axum_router()
        .layer(axum::middleware::from_fn_with_state(
            request_timeout,
            within_deadline,
        ))
}

async fn within_deadline(
    State(limit): State<Duration>,
    request: HttpRequest,
    next: Next,
) -> HttpResponse {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => tonic::Status::deadline_exceeded(format!(
            "the request was not received and answered within {limit:?}"
        ))
        .into_http(),
    }
}

fn to_http_headers(metadata: &tonic::metadata::MetadataMap) -> axum::http::HeaderMap {
    let mut headers = axum::http::HeaderMap::new();
    for name in ["authorization", "traceparent", "tracestate"] {
        if let Some(value) = metadata.get(name)
            && let Ok(value) = axum::http::HeaderValue::from_bytes(value.as_bytes())
        {
            headers.insert(name, value);
        }
    }
    headers
}

#[tonic::async_trait]
impl Ingest for GrpcIngest {
    async fn publish(
        &self,
        request: Request<PublishRequest>,
    ) -> Result<Response<PublishResponse>, tonic::Status> {
        let headers = to_http_headers(request.metadata());
        let span = tracing::info_span!(
            "ingest.grpc",
            otel.name = "herald.v1.Ingest/Publish",
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = "herald.v1.Ingest",
            rpc.method = "Publish",
            trace_id = tracing::field::Empty,
            herald.batch.size = request.get_ref().events_json.len(),
        );
        herald_runtime::propagation::set_parent(
            &span,
            herald_runtime::propagation::extract_http(&headers),
        );
        herald_runtime::propagation::record_trace_id(&span);
        let identified = self.clusters.identify(&headers);
        let request = request.into_inner();
        if request.events_json.len() > MAX_BATCH {
            return Err(tonic::Status::invalid_argument(format!(
                "a batch holds at most {MAX_BATCH} events, this one has {}",
                request.events_json.len()
            )));
        }
        let cluster = match identified {
            // With open clusters the request may name its own cluster.
            Ok(default) => {
                if request.cluster.is_empty() || self.clusters.is_checked() {
                    default
                } else {
                    request.cluster.clone()
                }
            }
            Err(error) => return Err(tonic::Status::unauthenticated(error.to_string())),
        };
        let pending = request.events_json.iter().map(|body| {
            let cluster = cluster.clone();
            async move {
                let outcome = if body.len() > MAX_BODY_BYTES {
                    Err(IngestError::TooLarge {
                        limit: MAX_BODY_BYTES,
                    })
                } else {
                    // The batch's events take turns within the cluster's share.
                    match self.clusters.shares().admit(&cluster, self.turn_wait).await {
                        Ok(_admission) => match self.intake.prepare(&cluster, body) {
                            Ok(prepared) => self.intake.publish(prepared).await,
                            Err(error) => Err(error),
                        },
                        Err(over) => Err(over.into()),
                    }
                };
                match outcome {
                    Ok(stored) => PublishResult {
                        status: if stored.duplicate {
                            Status::Duplicate
                        } else {
                            Status::Accepted
                        } as i32,
                        event_id: stored.id,
                        error: String::new(),
                    },
                    Err(error) => {
                        self.intake.metrics().reject(error.reason());
                        PublishResult {
                            status: match error {
                                IngestError::Unavailable(_) | IngestError::OverShare(_) => {
                                    Status::Unavailable
                                }
                                _ => Status::Invalid,
                            } as i32,
                            event_id: String::new(),
                            error: error.to_string(),
                        }
                    }
                }
            }
        });
        let results = join_all(pending).instrument(span).await;
        Ok(Response::new(PublishResponse { results }))
    }
}
