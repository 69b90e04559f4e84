//! The admin listener every service has: `/healthz`, `/readyz`, `/metrics`.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use crate::health::Readiness;
use crate::metrics::{Metrics, text};
use crate::serve::{self, Deadlines, Protocol};

#[derive(Clone)]
struct AdminState {
    readiness: Readiness,
    metrics: Metrics,
}

/// The admin routes, for tests that call them without a socket.
pub fn router(readiness: Readiness, metrics: Metrics) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(AdminState { readiness, metrics })
}

async fn readyz(State(state): State<AdminState>) -> impl IntoResponse {
    let report = state.readiness.report();
    let status = if report.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, report.to_text())
}

/// OpenMetrics for scrapers that ask for it in `Accept`, the Prometheus text
/// format (0.0.4) for everyone else.
async fn metrics_text(State(state): State<AdminState>, headers: HeaderMap) -> impl IntoResponse {
    // Sampled here, so the connection state is as of the scrape.
    state
        .metrics
        .nats_connected
        .set(i64::from(state.readiness.all_set("nats")));
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok());
    if text::wants_openmetrics(accept) {
        (
            [(header::CONTENT_TYPE, text::OPENMETRICS_CONTENT_TYPE)],
            state.metrics.encode(),
        )
    } else {
        (
            [(header::CONTENT_TYPE, text::PROMETHEUS_CONTENT_TYPE)],
            state.metrics.encode_prometheus(),
        )
    }
}

/// A bound admin listener.
pub struct AdminServer {
    listener: tokio::net::TcpListener,
    router: Router,
}

// === impl AdminServer ===

impl AdminServer {
    /// Binds `addr` (port 0 picks a free one).
    ///
    /// # Errors
    ///
    /// When the address cannot be bound.
    pub async fn bind(
        addr: SocketAddr,
        readiness: Readiness,
        metrics: Metrics,
    ) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        Ok(Self {
            listener,
            router: router(readiness, metrics),
        })
    }

    /// The bound address.
    ///
    /// # Errors
    ///
    /// When the socket has no local address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` fires, cutting off slow clients at `deadlines`.
    pub async fn run(self, deadlines: Deadlines, shutdown: CancellationToken) {
        serve::serve(
            self.listener,
            self.router,
            Protocol::Http1,
            None,
            deadlines,
            shutdown,
        )
        .await;
    }
}
