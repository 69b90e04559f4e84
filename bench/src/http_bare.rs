//! The bare pipeline with HTTP edges: the yardstick for `max`. It does what
//! Herald does at its edges and in JetStream, with no logic in between:
//!
//! - an HTTP/1.1 server (axum, as ingest) takes the load driver's POSTs,
//!   publishes each body to the first stream and answers `202` once
//!   JetStream acked it (every request awaits only its own ack, so publishes
//!   from all connections are in flight together);
//! - the relay of the bare pipeline moves each message to the second stream;
//! - a pull consumer POSTs each message to the sink over keep-alive
//!   connections, at most `concurrency` at once (as `--sender-concurrency`),
//!   and acks it once the sink answered 2xx (else naks it).
//!
//! It runs on a tokio runtime of its own (threads named [`BARE_THREAD`]), so
//! its CPU time is measured apart from the load driver's and the sink's.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, AckKind};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::serve::ListenerExt as _;
use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use tokio_util::sync::CancellationToken;

use crate::bare::{self, EVENTS_SUBJECT, SECOND, Template};
use crate::load::OwnRuntime;
use crate::procs::{BenchNats, Usage, own_threads_cpu};

/// Name prefix of the HTTP bare pipeline's threads.
pub const BARE_THREAD: &str = "bench-bare";

/// The HTTP intake: publish, await the ack, answer.
struct Edge {
    js: jetstream::Context,
    template: Template,
    seq: AtomicU64,
}

async fn receive(State(edge): State<Arc<Edge>>, body: Bytes) -> StatusCode {
    let seq = edge.seq.fetch_add(1, Ordering::Relaxed);
    let published = edge
        .js
        .publish_with_headers(EVENTS_SUBJECT, edge.template.headers(seq), body)
        .await;
    match published {
        Ok(ack) => match ack.await {
            Ok(_) => StatusCode::ACCEPTED,
            Err(_) => StatusCode::SERVICE_UNAVAILABLE,
        },
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// The end of hop 2: POST each message to the sink, at most `concurrency`
/// at once; ack on 2xx, nak otherwise.
async fn deliver(
    client: async_nats::Client,
    sink_url: String,
    concurrency: usize,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .http1_only()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(concurrency)
        .timeout(Duration::from_secs(15))
        .build()?;
    let js = jetstream::new(client);
    let consumer = bare::pull_consumer(&js, SECOND, "deliver").await?;
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(512)
        .messages()
        .await?;
    let mut in_flight = FuturesUnordered::new();
    loop {
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            Some((message, sent)) = in_flight.next(), if !in_flight.is_empty() => {
                let message: jetstream::Message = message;
                let kind = if sent { AckKind::Ack } else { AckKind::Nak(None) };
                message.ack_with(kind).await.map_err(|e| anyhow::anyhow!("ack: {e}"))?;
            }
            next = messages.next(), if in_flight.len() < concurrency => {
                let Some(message) = next else { return Ok(()) };
                let message = message?;
                let request = http.post(&sink_url).body(message.payload.clone()).send();
                in_flight.push(async move {
                    let sent = match request.await {
                        Ok(response) => {
                            let ok = response.status().is_success();
                            response.bytes().await.is_ok() && ok
                        }
                        Err(_) => false,
                    };
                    (message, sent)
                });
            }
        }
    }
}

/// A running HTTP bare pipeline.
pub struct HttpBare {
    addr: SocketAddr,
    _runtime: OwnRuntime,
    stop: CancellationToken,
    cpu_at_start: f64,
}

impl HttpBare {
    /// Creates the two streams on `nats` and starts the pipeline delivering
    /// to `sink_url`, on a runtime of its own with `threads` workers.
    pub async fn start(
        nats: &BenchNats,
        template: &Template,
        sink_url: &str,
        window: usize,
        concurrency: usize,
        threads: usize,
    ) -> anyhow::Result<Self> {
        bare::setup(&jetstream::new(nats.connect().await?)).await?;
        let runtime = OwnRuntime::new(BARE_THREAD, threads)?;
        let stop = CancellationToken::new();
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (url, template, sink_url) = (nats.url(), template.clone(), sink_url.to_owned());
        let started = {
            let stop = stop.clone();
            runtime.handle().spawn(async move {
                // Three connections, as Herald's three services have.
                let intake = async_nats::connect(&url).await?;
                let relay = async_nats::connect(&url).await?;
                let sender = async_nats::connect(&url).await?;
                tokio::spawn(report("relay", bare::relay(relay, window, stop.clone())));
                tokio::spawn(report(
                    "deliver",
                    deliver(sender, sink_url, concurrency, stop.clone()),
                ));
                let edge = Arc::new(Edge {
                    js: jetstream::new(intake),
                    template,
                    seq: AtomicU64::new(1),
                });
                let app = Router::new().fallback(receive).with_state(edge);
                let listener = tokio::net::TcpListener::from_std(listener)?.tap_io(|tcp| {
                    tcp.set_nodelay(true).ok();
                });
                tokio::spawn(async move {
                    let serving = axum::serve(listener, app)
                        .with_graceful_shutdown(async move { stop.cancelled().await });
                    if let Err(error) = serving.await {
                        eprintln!("http bare: the intake stopped: {error}");
                    }
                });
                anyhow::Ok(())
            })
        };
        started.await??;
        Ok(Self {
            addr,
            _runtime: runtime,
            stop,
            cpu_at_start: own_threads_cpu(BARE_THREAD),
        })
    }

    /// Where the load driver POSTs.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Stops the pipeline and returns its threads' CPU time as a usage row.
    pub fn stop(self) -> Usage {
        let cpu = own_threads_cpu(BARE_THREAD) - self.cpu_at_start;
        self.stop.cancel();
        Usage {
            name: "bench HTTP bare pipeline (threads)".into(),
            herald: false,
            peak_rss_kib: 0,
            cpu_seconds: cpu,
            window_cpu: Some(cpu),
            pid: None,
        }
    }
}

impl Drop for HttpBare {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn report(what: &str, task: impl Future<Output = anyhow::Result<()>>) {
    if let Err(error) = task.await {
        eprintln!("http bare: the {what} stopped: {error:#}");
    }
}
