//! `herald sender`: pulls deliveries from HERALD_DELIVERIES, sends each with
//! its Provider (read, with its Secrets, from the catalog at send time),
//! acks after the destination accepted it, retries through JetStream with a
//! delay otherwise, and keeps what can never be delivered on HERALD_DEAD.

#![forbid(unsafe_code)]

pub mod check;
pub mod classify;
pub mod config;
pub mod dlq;
pub mod groups;
pub mod http;
pub mod manifest;
pub mod ordering;
pub mod outcome;
pub mod pacing;
pub mod policy;
pub mod providers;
pub mod records;
pub mod render;
pub mod threads;
pub mod tokens;
pub mod transport;
pub mod worker;

use std::time::Duration;

use async_nats::jetstream::consumer;
use herald_proto::names;
use herald_runtime::nats::{durable_consumer, parse_duration, retry_until_ready};
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
    /// A delivery queued (or replayed) longer ago than this is dead.
    #[arg(long, env = "HERALD_MAX_AGE", default_value = "24h", value_parser = parse_duration)]
    pub max_age: Duration,
    /// A retry policy for one provider type, over the defaults above:
    /// `TYPE:max-attempts=N,base=D,max=D,max-age=D` (repeatable, or
    /// space-separated in the env var).
    #[arg(
        long = "retry-policy",
        env = "HERALD_RETRY_POLICY",
        value_delimiter = ' '
    )]
    pub retry_policies: Vec<policy::PolicyOverride>,
    /// A steady rate per destination for one provider type: `TYPE=N/s` (or
    /// `/m`, `/h`), or `TYPE=off`. Slack defaults to `slack=1/s`.
    #[arg(long = "pace", env = "HERALD_PACE", value_delimiter = ' ')]
    pub paces: Vec<policy::PaceSetting>,
    /// The longest a sender waits for a destination's turn before putting the
    /// delivery back on the queue.
    #[arg(long, env = "HERALD_PACE_MAX_WAIT", default_value = "5s", value_parser = parse_duration)]
    pub pace_max_wait: Duration,
    /// How long JetStream waits for a sender's ack before redelivering:
    /// how soon a delivery held by a lost sender, or lost on its way with a
    /// NATS server, is sent again (deliveries in hand, however slow, are
    /// reported in progress every third of it).
    #[arg(long, env = "HERALD_SENDER_ACK_WAIT", default_value = "5s", value_parser = parse_duration)]
    pub sender_ack_wait: Duration,
    /// How long a Slack thread (`herald.dev/slack-thread`) is continued
    /// after its last message: its root is forgotten from HERALD_THREADS
    /// then, and the next event about the object and revision starts a new
    /// thread.
    #[arg(long, env = "HERALD_SLACK_THREAD_TTL", default_value = "7d", value_parser = parse_duration)]
    pub slack_thread_ttl: Duration,
}

/// A ready-to-run sender.
pub struct App {
    worker: Worker,
    flusher: groups::Flusher,
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
        let pacing_store =
            retry_until_ready("HERALD_PACING", cancel, || nats.ensure_pacing_bucket()).await?;
        let status_store = retry_until_ready("HERALD_COMMIT_STATUS", cancel, || {
            nats.ensure_commit_status_bucket()
        })
        .await?;
        let objects_store =
            retry_until_ready("HERALD_OBJECTS", cancel, || nats.ensure_objects_bucket()).await?;
        let threads_store = retry_until_ready("HERALD_THREADS", cancel, || {
            nats.ensure_threads_bucket(args.slack_thread_ttl)
        })
        .await?;
        let consumer = retry_until_ready("the sender consumer", cancel, || async {
            nats.ensure_deliveries_stream().await?;
            nats.ensure_groups_stream().await?;
            nats.ensure_dead_stream().await?;
            nats.ensure_consumer(
                names::DELIVERIES_STREAM,
                consumer::pull::Config {
                    filter_subject: names::DELIVERIES_SUBJECTS.to_owned(),
                    ..durable_consumer(
                        names::SENDER_CONSUMER,
                        "herald senders",
                        args.sender_ack_wait,
                        (concurrency * 16).max(1000),
                    )
                },
            )
            .await
        })
        .await?;
        let flood = retry_until_ready("the flood-control buckets", cancel, || {
            nats.ensure_flood_buckets()
        })
        .await?;
        readiness.set("sender-consumer", true);
        let policies = policy::Policies::new(
            policy::RetryPolicy {
                max_attempts: args.max_attempts.max(1),
                base: args.retry_base,
                max: args.retry_max,
                max_age: args.max_age,
            },
            &args.retry_policies,
            &args.paces,
        );
        let pacer = pacing::Pacer::new(pacing_store, args.pace_max_wait);
        let threads = threads::Threads::new(
            threads_store,
            pacer.clone(),
            policies.pace(herald_flux::ProviderType::Slack.as_str()),
            metrics.clone(),
        );
        Ok(Self {
            flusher: groups::Flusher::new(nats.clone(), metrics.clone(), flood.due),
            worker: Worker {
                nats,
                catalog,
                metrics,
                clients: providers::Clients {
                    threads: Some(threads),
                    ..providers::Clients::default()
                },
                pacer,
                order: ordering::StatusOrder::new(status_store),
                settings: WorkerSettings {
                    concurrency,
                    policies,
                    ack_wait: args.sender_ack_wait,
                    requeue_delay: args.retry_base,
                },
                records: records::Records::new(objects_store, readiness.clone()),
            },
            consumer,
        })
    }

    /// Sends until `cancel` fires, then finishes the deliveries in hand.
    pub async fn run(self, cancel: CancellationToken) {
        // Nothing is taken before the catalog holds its first full read.
        tokio::select! {
            () = cancel.cancelled() => return,
            () = self.worker.catalog.loaded() => {}
        }
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
        tokio::spawn({
            let metrics = self.worker.metrics.clone();
            let jetstream = self.worker.nats.jetstream.clone();
            let max_bytes = self.worker.nats.args.budgets.dead_max_bytes;
            let cancel = cancel.clone();
            async move {
                metrics
                    .watch_dead_letters(jetstream, max_bytes, cancel)
                    .await;
            }
        });
        tokio::spawn({
            let metrics = self.worker.metrics.clone();
            let catalog = self.worker.catalog.clone();
            let cancel = cancel.clone();
            async move { metrics.watch_catalog(catalog, cancel).await }
        });
        let records = self.worker.records.clone();
        tokio::spawn(records.clone().run(cancel.clone()));
        // Every replica flushes due groups; a claim keeps each to one.
        tokio::spawn(self.flusher.run(cancel.clone()));
        self.worker.run(self.consumer, cancel).await;
        // The last notes, once the deliveries in hand are done; bounded, so a
        // lost NATS cannot hold the shutdown.
        tokio::time::timeout(Duration::from_secs(2), records.flush())
            .await
            .ok();
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        sender: super::SenderArgs,
    }

    #[test]
    fn delivery_latency_buckets_reach_the_default_maximum_age() {
        let args = Cli::parse_from(["herald"]).sender;
        let last = herald_runtime::metrics::DELIVERY_LATENCY_BUCKETS
            .last()
            .copied()
            .unwrap_or_default();
        assert!(
            last >= args.max_age.as_secs_f64(),
            "the last bucket ({last} s) is below --max-age's default ({:?})",
            args.max_age
        );
    }
}
