//! `herald sender`: pulls deliveries from HERALD_DELIVERIES, sends each with
//! its Provider (read, with its Secrets, from the catalog at send time),
//! acks after the destination accepted it, retries through JetStream with a
//! delay otherwise, and keeps what can never be delivered on HERALD_DEAD.

#![forbid(unsafe_code)]

pub mod config;
pub mod dlq;
pub mod http;
pub mod outcome;
pub mod providers;
pub mod worker;

use std::time::Duration;

use async_nats::jetstream::consumer::{self, AckPolicy, DeliverPolicy};
use herald_proto::names;
use herald_runtime::nats::{parse_duration, retry_until_ready};
use herald_runtime::{Catalog, Metrics, Nats, Readiness};
use tokio_util::sync::CancellationToken;

pub use worker::{Worker, WorkerSettings};

/// Settings of `herald sender`.
#[derive(Debug, Clone, clap::Args)]
pub struct SenderArgs {
    /// Deliveries in flight in this process.
    #[arg(long, env = "HERALD_SENDER_CONCURRENCY", default_value_t = 256)]
    pub sender_concurrency: usize,
    /// Attempts before a failing delivery is dead-lettered.
    #[arg(long, env = "HERALD_MAX_ATTEMPTS", default_value_t = 12)]
    pub max_attempts: u64,
    /// The first retry delay; each further one doubles, with jitter.
    #[arg(long, env = "HERALD_RETRY_BASE", default_value = "2s", value_parser = parse_duration)]
    pub retry_base: Duration,
    /// The longest retry delay.
    #[arg(long, env = "HERALD_RETRY_MAX", default_value = "10m", value_parser = parse_duration)]
    pub retry_max: Duration,
    /// How long JetStream waits for a sender's ack before redelivering.
    #[arg(long, env = "HERALD_SENDER_ACK_WAIT", default_value = "60s", value_parser = parse_duration)]
    pub sender_ack_wait: Duration,
}

/// A ready-to-run sender.
pub struct App {
    worker: Worker,
    consumer: consumer::Consumer<consumer::pull::Config>,
}

// === impl App ===

impl App {
    /// Makes sure HERALD_DELIVERIES, HERALD_DEAD and the sender consumer exist.
    ///
    /// # Errors
    ///
    /// When cancelled before JetStream answered.
    pub async fn build(
        args: &SenderArgs,
        nats: Nats,
        catalog: Catalog,
        metrics: Metrics,
        readiness: &Readiness,
        cancel: &CancellationToken,
    ) -> anyhow::Result<Self> {
        // reqwest's TLS needs a process-wide crypto provider (ring).
        // Already installed (by main or an earlier build) is fine.
        rustls::crypto::ring::default_provider()
            .install_default()
            .ok();
        readiness.register("sender-consumer");
        let concurrency = args.sender_concurrency.max(1);
        let consumer = retry_until_ready("the sender consumer", cancel, || async {
            nats.ensure_deliveries_stream().await?;
            nats.ensure_dead_stream().await?;
            nats.ensure_consumer(
                names::DELIVERIES_STREAM,
                consumer::pull::Config {
                    durable_name: Some(names::SENDER_CONSUMER.to_owned()),
                    description: Some("herald senders".to_owned()),
                    deliver_policy: DeliverPolicy::All,
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: args.sender_ack_wait,
                    max_deliver: -1,
                    max_ack_pending: i64::try_from(concurrency * 16)
                        .unwrap_or(i64::MAX)
                        .max(1000),
                    filter_subject: names::DELIVERIES_SUBJECTS.to_owned(),
                    ..consumer::pull::Config::default()
                },
            )
            .await
        })
        .await?;
        readiness.set("sender-consumer", true);
        Ok(Self {
            worker: Worker {
                nats,
                catalog,
                metrics,
                http: http::HttpSender::default(),
                settings: WorkerSettings {
                    concurrency,
                    max_attempts: args.max_attempts.max(1),
                    ack_wait: args.sender_ack_wait,
                    retry_base: args.retry_base,
                    retry_max: args.retry_max,
                },
            },
            consumer,
        })
    }

    /// Sends until `cancel` fires, then finishes the deliveries in hand.
    pub async fn run(self, cancel: CancellationToken) {
        tracing::info!(
            concurrency = self.worker.settings.concurrency,
            "Sending deliveries."
        );
        tokio::spawn({
            let metrics = self.worker.metrics.clone();
            let consumer = self.consumer.clone();
            let cancel = cancel.clone();
            async move {
                metrics
                    .watch_consumer(
                        consumer,
                        names::SENDER_CONSUMER,
                        Duration::from_secs(5),
                        cancel,
                    )
                    .await;
            }
        });
        self.worker.run(self.consumer, cancel).await;
    }
}
