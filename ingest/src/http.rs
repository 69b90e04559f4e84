//! The HTTP receiver, wire-compatible with the notification-controller's:
//! any path, any method, a JSON Flux event in the body.

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt as _;

use crate::clusters::Clusters;
use crate::intake::{IngestError, Intake};

/// The largest body the notification-controller accepts: 3 MiB.
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

#[derive(Clone)]
struct HttpState {
    intake: Intake,
    clusters: Clusters,
    max_body: usize,
}

/// The receiver's routes: one handler for every path and method.
pub fn router(intake: Intake, clusters: Clusters, max_body: usize) -> Router {
    Router::new().fallback(receive).with_state(HttpState {
        intake,
        clusters,
        max_body,
    })
}

impl IntoResponse for IngestError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
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
            _ => {}
        }
        response
    }
}

async fn receive(State(state): State<HttpState>, headers: HeaderMap, body: Body) -> Response {
    match handle(&state, &headers, body).await {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(error) => {
            state.intake.metrics().reject(error.reason());
            tracing::debug!(error = %error, "Refused a request.");
            error.into_response()
        }
    }
}

async fn handle(state: &HttpState, headers: &HeaderMap, body: Body) -> Result<(), IngestError> {
    let cluster = state.clusters.identify(headers)?;
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
    let limited = http_body_util::Limited::new(body, state.max_body);
    let bytes = match limited.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => return Err(too_large),
        Err(error) => {
            return Err(IngestError::BadRequest(format!(
                "cannot read the request body: {error}"
            )));
        }
    };
    let prepared = state.intake.prepare(&cluster, &bytes)?;
    state.intake.publish(prepared).await?;
    Ok(())
}
