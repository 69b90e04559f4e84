//! Herald's test harness: a real `nats-server` per test, fake destinations
//! that record every request as the real API would receive it (and fail on
//! purpose when told), and Herald's services started in-process.

#![forbid(unsafe_code)]

pub mod alertmanager;
pub mod fake;
pub mod fixtures;
pub mod herald;
pub mod kube;
pub mod nats;
pub mod nats_auth;
pub mod nats_cluster;
pub mod nats_leaf;
mod nats_server;
pub mod process;

use std::time::Duration;

/// How long `eventually` waits: `HERALD_TEST_PATIENCE_MS`, default 30 s.
#[must_use]
pub fn patience() -> Duration {
    std::env::var("HERALD_TEST_PATIENCE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_secs(30), Duration::from_millis)
}

/// Polls `check` until it returns `Some`, or panics with `what` after [`patience`].
///
/// # Panics
///
/// When `check` never succeeds in time.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = tokio::time::Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            start.elapsed() < patience(),
            "{what}: not true after {:?}",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Installs the process-wide TLS provider and a test log subscriber once.
pub fn init() {
    // Both may already be installed by an earlier test in this process.
    rustls::crypto::ring::default_provider()
        .install_default()
        .ok();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init()
        .ok();
}
