//! The HTTP receiver, wire-compatible with the notification-controller's:
//! any path, any method, a JSON Flux event in the body.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt as _;
use tracing::Instrument as _;

use crate::clusters::Clusters;
use crate::intake::{IngestError, Intake, Stored};

/// The largest body the notification-controller accepts: 3 MiB.
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// How long a refusal for being over a cluster's share waits before it is
/// answered. A Flux emitter then waits the `Retry-After` (seconds), so this
/// costs it nothing; a client that ignores `Retry-After` and posts again at
/// once is slowed to one refusal per pause on each connection, so that a
/// flood spends little of ingest's CPU on refusals and the other clusters
/// keep it.
pub const OVER_SHARE_PAUSE: Duration = Duration::from_millis(100);

/// What every request reads; behind an `Arc`, since axum clones the state
/// for each request.
struct HttpState {
    intake: Intake,
    clusters: Clusters,
    max_body: usize,
    body_timeout: Duration,
}

/// The receiver's routes: one handler for every path and method. A body
/// larger than `max_body` bytes is refused, and one that has not arrived
/// whole within `body_timeout` of its headers is answered `408`.
pub fn router(
    intake: Intake,
    clusters: Clusters,
    max_body: usize,
    body_timeout: Duration,
) -> Router {
    Router::new()
        .fallback(receive)
        .with_state(Arc::new(HttpState {
            intake,
            clusters,
            max_body,
            body_timeout,
        }))
}

impl IntoResponse for IngestError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::TooLarge { .. } | Self::DoesNotFit { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Timeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::Unavailable(_) | Self::OverShare(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        let mut response = (status, format!("{self}\n")).into_response();
        match &self {
            Self::Unauthorized(_) => {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"herald\""),
                );
            }
            Self::Unavailable(_) => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            Self::OverShare(over) => {
                response.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(over.retry_after().as_secs()),
                );
            }
            // The rest of the body may still be on its way: start afresh.
            Self::Timeout { .. } => {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        response
    }
}

async fn receive(
    State(state): State<Arc<HttpState>>,
    method: axum::http::Method,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let span = tracing::info_span!(
        "ingest.receive",
        otel.name = %format!("{method}"),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = %method,
        http.response.status_code = tracing::field::Empty,
        trace_id = tracing::field::Empty,
        event.id = tracing::field::Empty,
        herald.cluster = tracing::field::Empty,
        flux.object.kind = tracing::field::Empty,
        flux.object.namespace = tracing::field::Empty,
        flux.object.name = tracing::field::Empty,
        flux.revision = tracing::field::Empty,
        herald.duplicate = tracing::field::Empty,
        error.type = tracing::field::Empty,
    );
    herald_runtime::propagation::set_parent(
        &span,
        herald_runtime::propagation::extract_http(&headers),
    );
    herald_runtime::propagation::record_trace_id(&span);
    // Boxed apart, the future axum boxes for every request stays within the
    // allocator's per-thread cache.
    let handled = Box::pin(handle(&state, headers, body).instrument(span.clone())).await;
    let response = match handled {
        Ok(stored) => {
            span.record("herald.duplicate", stored.duplicate);
            accepted(&stored)
        }
        Err(error) => {
            state.intake.metrics().reject(error.reason());
            span.record("error.type", error.reason());
            span.in_scope(|| tracing::debug!(error = %error, "Refused a request."));
            if matches!(error, IngestError::OverShare(_)) {
                tokio::time::sleep(OVER_SHARE_PAUSE).await;
            }
            error.into_response()
        }
    };
    let status = response.status();
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "error");
    }
    response
}

/// `202 Accepted`, for stored events and for duplicates alike: every Flux
/// emitter, old or new, neither retries nor logs an error on a 202 (older ones
/// retried a 429). The rate-limit headers are those Flux sends.
fn accepted(stored: &Stored) -> Response {
    let mut response = StatusCode::ACCEPTED.into_response();
    let headers = response.headers_mut();
    if let Some(reset) = stored
        .window_reset_millis
        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
    {
        headers.insert("x-ratelimit-limit", HeaderValue::from_static("1"));
        headers.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
        let date = reset.strftime("%a, %d %b %Y %H:%M:%S GMT").to_string();
        if let Ok(value) = HeaderValue::from_str(&date) {
            headers.insert("x-ratelimit-reset", value);
        }
    }
    if stored.duplicate {
        headers.insert("herald-duplicate", HeaderValue::from_static("true"));
    }
    response
}

async fn handle(state: &HttpState, headers: HeaderMap, body: Body) -> Result<Stored, IngestError> {
    let cluster = state.clusters.identify(&headers)?;
    // The cluster's share covers receiving the body too, so a cluster that
    // sends slowly holds its own share, no one else's. A refusal is given
    // once the body is read: closing a socket with unread bytes resets the
    // connection, and the client might never see the answer.
    let admission = state.clusters.shares().try_admit(&cluster);
    let too_large = IngestError::TooLarge {
        limit: state.max_body,
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > state.max_body) {
        return Err(too_large);
    }
    // Header values and the body are slices of the connection's read
    // buffer, let go as soon as they are read.
    drop(headers);
    let limited = http_body_util::Limited::new(body, state.max_body);
    let collected = tokio::time::timeout(state.body_timeout, limited.collect())
        .await
        .map_err(|_| IngestError::Timeout {
            limit: state.body_timeout,
        })?;
    let bytes = match collected {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => return Err(too_large),
        Err(error) => {
            return Err(IngestError::BadRequest(format!(
                "cannot read the request body: {error}"
            )));
        }
    };
    let _admission = admission?;
    let prepared = state.intake.prepare(&cluster, &bytes)?;
    drop(bytes);
    prepared
        .labels
        .record(&tracing::Span::current(), &prepared.id);
    Box::pin(state.intake.publish(prepared)).await
}
