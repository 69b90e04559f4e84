//! The provider sink: a plain HTTP/1.1 receiver on loopback standing in for
//! every Provider. It records when each request arrived and the sequence
//! number in the event's message, and answers 200, after a fixed added
//! latency when asked. A request that names several events (a digest)
//! records each of their sequence numbers.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::serve::ListenerExt as _;

use crate::load::SEQ_MARKER;
use crate::now_ns;

#[derive(Debug, Default)]
struct Inner {
    /// (sequence number, arrival in ns on the bench clock).
    received: Mutex<Vec<(u64, u64)>>,
    /// Added latency in microseconds.
    delay_us: AtomicU64,
    /// Requests without a sequence number.
    unmatched: AtomicU64,
    /// Every request received.
    requests: AtomicU64,
}

/// A running sink.
#[derive(Debug, Clone)]
pub struct Sink {
    addr: SocketAddr,
    inner: Arc<Inner>,
}

/// The sequence number after each [`SEQ_MARKER`] in a request body.
fn sequences_of(body: &[u8]) -> Vec<u64> {
    let marker = SEQ_MARKER.as_bytes();
    let mut out = Vec::new();
    let mut rest = body;
    while let Some(at) = rest.windows(marker.len()).position(|w| w == marker) {
        rest = &rest[at + marker.len()..];
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if let Some(seq) = std::str::from_utf8(&rest[..digits])
            .ok()
            .and_then(|d| d.parse().ok())
        {
            out.push(seq);
        }
        rest = &rest[digits..];
    }
    out
}

async fn receive(State(inner): State<Arc<Inner>>, body: Bytes) -> StatusCode {
    let at = now_ns();
    inner.requests.fetch_add(1, Ordering::Relaxed);
    let sequences = sequences_of(&body);
    if sequences.is_empty() {
        inner.unmatched.fetch_add(1, Ordering::Relaxed);
    } else {
        inner
            .received
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(sequences.into_iter().map(|seq| (seq, at)));
    }
    let delay = inner.delay_us.load(Ordering::Relaxed);
    if delay > 0 {
        tokio::time::sleep(Duration::from_micros(delay)).await;
    }
    StatusCode::OK
}

// === impl Sink ===

impl Sink {
    /// Starts a sink on a free loopback port, on the current runtime.
    pub async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let inner = Arc::new(Inner::default());
        let app = Router::new().fallback(receive).with_state(inner.clone());
        let listener = listener.tap_io(|tcp| {
            tcp.set_nodelay(true).ok();
        });
        tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                eprintln!("sink stopped: {error}");
            }
        });
        Ok(Self { addr, inner })
    }

    /// The address Providers point at.
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Answers every request `delay` after it arrived.
    pub fn set_delay(&self, delay: Duration) {
        let micros = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        self.inner.delay_us.store(micros, Ordering::Relaxed);
    }

    /// Requests recorded so far.
    pub fn count(&self) -> usize {
        self.inner
            .received
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Requests received so far.
    pub fn requests(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
    }

    /// Requests that carried no sequence number.
    pub fn unmatched(&self) -> u64 {
        self.inner.unmatched.load(Ordering::Relaxed)
    }

    /// Takes every record so far, leaving the sink empty for the next phase.
    pub fn take(&self) -> Vec<(u64, u64)> {
        std::mem::take(
            &mut *self
                .inner
                .received
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    /// Waits until `n` distinct sequence numbers were recorded or
    /// `patience` passed; returns whether they all came.
    pub async fn wait_for_distinct(&self, n: usize, patience: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let distinct = {
                let received = self
                    .inner
                    .received
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                received
                    .iter()
                    .map(|(seq, _)| *seq)
                    .collect::<std::collections::HashSet<u64>>()
                    .len()
            };
            if distinct >= n {
                return true;
            }
            if tokio::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until `n` requests were recorded or `patience` passed; returns
    /// whether they all came.
    pub async fn wait_for(&self, n: usize, patience: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + patience;
        while self.count() < n {
            if tokio::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }
}

/// The first arrival of each sequence number (redeliveries can repeat one).
pub fn first_arrivals(mut records: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    records.sort_unstable();
    records.dedup_by_key(|(seq, _)| *seq);
    records
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_the_sequence_number() {
        let body = br#"{"message":"herald-bench seq=1234: Service/apps/podinfo configured"}"#;
        assert_eq!(super::sequences_of(body), [1234]);
        assert!(super::sequences_of(b"{}").is_empty());
        let digest = br#"{"text":"2 events:\nherald-bench seq=7: a\nherald-bench seq=12: b"}"#;
        assert_eq!(super::sequences_of(digest), [7, 12]);
    }
}
