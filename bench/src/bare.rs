//! The bare pipeline: the NATS work of Herald's two hops with no logic, as a
//! yardstick. Publish to a file-storage limits stream, pull-consume it,
//! publish each message to a file-storage work-queue stream and ack the first
//! once stored, pull-consume the second and ack. Publishes and acks are
//! pipelined; nothing waits on one message at a time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer, stream};
use bytes::Bytes;
use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use herald_proto::names;
use tokio_util::sync::CancellationToken;

use crate::now_ns;
use crate::procs::BenchNats;

pub(crate) const FIRST: &str = "BARE_EVENTS";
pub(crate) const SECOND: &str = "BARE_DELIVERIES";
/// The subject the first hop publishes on.
pub(crate) const EVENTS_SUBJECT: &str = "bare.events.default";

/// The size and headers of the messages to send.
#[derive(Debug, Clone)]
pub struct Template {
    pub payload_len: usize,
    pub headers: Vec<(String, String)>,
}

impl Template {
    /// Copies the shape of the first event Herald stored on HERALD_EVENTS.
    pub async fn from_herald(client: &async_nats::Client) -> anyhow::Result<Self> {
        let js = jetstream::new(client.clone());
        let stream = js.get_stream(names::EVENTS_STREAM).await?;
        let first = stream.get_raw_message(1).await?;
        let headers = first
            .headers
            .iter()
            .flat_map(|(name, values)| {
                values
                    .iter()
                    .map(move |value| (name.to_string(), value.as_str().to_owned()))
            })
            .collect();
        Ok(Self {
            payload_len: first.payload.len(),
            headers,
        })
    }

    /// The headers for message `seq`: ids made unique, the rest copied.
    pub(crate) fn headers(&self, seq: u64) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in &self.headers {
            if name.eq_ignore_ascii_case(names::MSG_ID_HEADER)
                || name.eq_ignore_ascii_case(names::EVENT_ID_HEADER)
            {
                map.insert(
                    name.as_str(),
                    format!("{seq:0>width$}", width = value.len()).as_str(),
                );
            } else {
                map.insert(name.as_str(), value.as_str());
            }
        }
        map
    }
}

/// What the bare pipeline did.
#[derive(Debug, Default)]
pub struct BareResult {
    pub published: u64,
    pub consumed: u64,
    pub first_publish: u64,
    pub publish_end: u64,
    pub last_consume: u64,
}

pub(crate) async fn setup(js: &jetstream::Context) -> anyhow::Result<()> {
    js.create_stream(stream::Config {
        name: FIRST.into(),
        subjects: vec!["bare.events.>".into()],
        retention: stream::RetentionPolicy::Limits,
        storage: stream::StorageType::File,
        max_age: Duration::from_secs(7 * 86_400),
        duplicate_window: Duration::from_secs(300),
        ..Default::default()
    })
    .await?;
    js.create_stream(stream::Config {
        name: SECOND.into(),
        subjects: vec!["bare.deliveries.>".into()],
        retention: stream::RetentionPolicy::WorkQueue,
        storage: stream::StorageType::File,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await?;
    Ok(())
}

pub(crate) async fn pull_consumer(
    js: &jetstream::Context,
    stream_name: &str,
    durable: &str,
) -> anyhow::Result<consumer::Consumer<consumer::pull::Config>> {
    Ok(js
        .create_consumer_on_stream(
            consumer::pull::Config {
                durable_name: Some(durable.into()),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_secs(30),
                max_ack_pending: 4096,
                ..Default::default()
            },
            stream_name,
        )
        .await?)
}

/// Hop 1 → hop 2: each message of the first stream is published to the
/// second and acked once stored, with up to `window` in flight.
pub(crate) async fn relay(
    client: async_nats::Client,
    window: usize,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let js = jetstream::new(client);
    let consumer = pull_consumer(&js, FIRST, "relay").await?;
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(512)
        .messages()
        .await?;
    let mut in_flight = FuturesUnordered::new();
    loop {
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            Some(done) = in_flight.next(), if !in_flight.is_empty() => {
                let message: jetstream::Message = done?;
                message.ack().await.map_err(|e| anyhow::anyhow!("ack: {e}"))?;
            }
            next = messages.next(), if in_flight.len() < window => {
                let Some(message) = next else { return Ok(()) };
                let message = message?;
                let headers = message.headers.clone().unwrap_or_default();
                let ack = js
                    .publish_with_headers("bare.deliveries.generic.apps.sink", headers, message.payload.clone())
                    .await?;
                in_flight.push(async move { ack.await.map(|_| message) });
            }
        }
    }
}

/// The end of hop 2: consume and ack, counting.
async fn finish(
    client: async_nats::Client,
    consumed: Arc<AtomicU64>,
    last: Arc<AtomicU64>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let js = jetstream::new(client);
    let consumer = pull_consumer(&js, SECOND, "final").await?;
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(512)
        .messages()
        .await?;
    loop {
        let next = tokio::select! {
            () = stop.cancelled() => return Ok(()),
            next = messages.next() => next,
        };
        let Some(message) = next else { return Ok(()) };
        let message = message?;
        message
            .ack()
            .await
            .map_err(|e| anyhow::anyhow!("ack: {e}"))?;
        consumed.fetch_add(1, Ordering::Relaxed);
        last.store(now_ns(), Ordering::Relaxed);
    }
}

/// Runs the pipeline: publishes for `duration` with up to `window` acks in
/// flight, then waits (at most `drain`) until the far end consumed them all.
pub async fn run(
    nats: &BenchNats,
    template: &Template,
    duration: Duration,
    window: usize,
    drain: Duration,
) -> anyhow::Result<BareResult> {
    let producer = nats.connect().await?;
    let js = jetstream::new(producer.clone());
    setup(&js).await?;
    let stop = CancellationToken::new();
    let consumed = Arc::new(AtomicU64::new(0));
    let last = Arc::new(AtomicU64::new(0));
    let relay = tokio::spawn(relay(nats.connect().await?, window, stop.clone()));
    let finish = tokio::spawn(finish(
        nats.connect().await?,
        consumed.clone(),
        last.clone(),
        stop.clone(),
    ));

    let payload = Bytes::from(vec![b'x'; template.payload_len]);
    let mut result = BareResult {
        first_publish: now_ns(),
        ..BareResult::default()
    };
    let end = tokio::time::Instant::now() + duration;
    let mut acks = FuturesUnordered::new();
    let mut seq = 0_u64;
    while tokio::time::Instant::now() < end {
        seq += 1;
        let ack = js
            .publish_with_headers(EVENTS_SUBJECT, template.headers(seq), payload.clone())
            .await?;
        acks.push(ack.into_future());
        if acks.len() >= window
            && let Some(acked) = acks.next().await
        {
            acked?;
            result.published += 1;
        }
    }
    while let Some(acked) = acks.next().await {
        acked?;
        result.published += 1;
    }
    result.publish_end = now_ns();

    let deadline = tokio::time::Instant::now() + drain;
    while consumed.load(Ordering::Relaxed) < result.published
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.cancel();
    relay.await??;
    finish.await??;
    result.consumed = consumed.load(Ordering::Relaxed);
    result.last_consume = last.load(Ordering::Relaxed);
    Ok(result)
}
