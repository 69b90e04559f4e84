//! `herald router`: consumes HERALD_EVENTS, applies the users' Alerts (matching,
//! dispatch gating, metadata rules) and publishes one `Delivery` per matched
//! (event, Alert) on its Provider's subject of HERALD_DELIVERIES. An event is
//! acked only after every delivery it fanned out to was stored.

#![forbid(unsafe_code)]

pub mod edges;
mod flood;
pub mod route;

use std::time::Duration;

use async_nats::jetstream::consumer;
use async_nats::jetstream::{self, AckKind};
use herald_proto::names;
use herald_runtime::budget::StreamBudget;
use herald_runtime::consume::{ConsumeSettings, Done};
use herald_runtime::edges::{Edge, EventSources};
use herald_runtime::nats::{durable_consumer, parse_duration, retry_until_ready};
use herald_runtime::{Catalog, Metrics, Nats, Readiness};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

pub use route::{Routed, Router};

/// Settings of `herald router`.
#[derive(Debug, Clone, clap::Args)]
pub struct RouterArgs {
    /// Events routed at once in this process.
    #[arg(long, env = "HERALD_ROUTER_CONCURRENCY", default_value_t = 512)]
    pub router_concurrency: usize,
    /// Deny Alerts events from other namespaces than their own (Flux's
    /// `--no-cross-namespace-refs`). Not the `namespace: "*"` sources of
    /// Alerts in a `--fleet-admin-namespace`: those hear every namespace.
    #[arg(long, env = "HERALD_NO_CROSS_NAMESPACE_REFS")]
    pub no_cross_namespace_refs: bool,
    /// Do not name the event's cluster in notifications (by default every
    /// Alert's metadata gets `cluster: <name>` unless it sets its own); for
    /// single-cluster installs.
    #[arg(long, env = "HERALD_NO_CLUSTER_METADATA")]
    pub no_cluster_metadata: bool,
    /// How long JetStream waits for the router's ack before redelivering:
    /// how soon an event held by a lost router, or lost on its way with a
    /// NATS server, is routed again (events in hand are reported in progress
    /// every third of it).
    #[arg(long, env = "HERALD_ROUTER_ACK_WAIT", default_value = "5s", value_parser = parse_duration)]
    pub router_ack_wait: Duration,
    /// An edge whose events HERALD_EVENTS sources: `CLUSTER=DOMAIN`, the
    /// cluster this hub assigns its events and the JetStream domain of its
    /// leaf node, where an ingest with `--jetstream-domain DOMAIN` stores
    /// them (repeatable, or comma-separated). The router owns the stream's
    /// sources: it adds and removes them to match these; ingest keeps them.
    #[arg(long = "edge", env = "HERALD_EDGES", value_delimiter = ',')]
    pub edges: Vec<Edge>,
}

/// A ready-to-run router.
pub struct App {
    router: Router,
    consumer: consumer::Consumer<consumer::pull::Config>,
    concurrency: usize,
    ack_wait: Duration,
    deliveries_budget: StreamBudget,
    edges: Vec<Edge>,
}

/// How often the router reads the streams' sizes.
const BUDGET_POLL: Duration = Duration::from_secs(1);

/// HERALD_EVENTS is trimmed of routed events when it passes this share of
/// its budget ...
const TRIM_AT: f64 = 0.75;
/// ... down to this share, or to the oldest event not yet routed.
const TRIM_TO: f64 = 0.5;

/// How long the router keeps trying to store an event's deliveries itself
/// before putting the event back: longer than HERALD_DELIVERIES takes to
/// elect a new leader after a node loss (4 to 9 s), so that routing goes on
/// within a second of the election instead of after a nak's delay.
const STORE_FOR: Duration = Duration::from_secs(12);

/// The first and the longest wait between two of those tries.
const STORE_RETRY_FIRST: Duration = Duration::from_millis(250);
const STORE_RETRY_MAX: Duration = Duration::from_secs(1);

/// The delay before an event whose deliveries could not be stored is routed
/// again: doubling from one second with each redelivery, up to 10 s, with
/// jitter so that held events do not come back together.
fn retry_delay(delivered: i64) -> Duration {
    let exponent = u32::try_from(delivered.saturating_sub(1).clamp(0, 4)).unwrap_or(4);
    let base = Duration::from_secs(1 << exponent).min(Duration::from_secs(10));
    base.mul_f64(0.8 + fastrand::f64() * 0.4)
}

// === impl App ===

impl App {
    /// Makes sure the streams and the router's consumer exist.
    ///
    /// # Errors
    ///
    /// When cancelled before JetStream answered.
    pub async fn build(
        args: &RouterArgs,
        fleet: Option<herald_runtime::clusters::Fleet>,
        nats: Nats,
        catalog: Catalog,
        metrics: Metrics,
        readiness: &Readiness,
        cancel: &CancellationToken,
    ) -> anyhow::Result<Self> {
        readiness.register("router-consumer");
        herald_runtime::edges::check_distinct(&args.edges).map_err(anyhow::Error::msg)?;
        let concurrency = args.router_concurrency.max(1);
        let consumer = retry_until_ready("the router consumer", cancel, || async {
            nats.ensure_events_stream(EventSources::Own(&args.edges))
                .await?;
            nats.ensure_deliveries_stream().await?;
            nats.ensure_groups_stream().await?;
            nats.ensure_dead_stream().await?;
            nats.ensure_consumer(
                names::EVENTS_STREAM,
                durable_consumer(
                    names::ROUTER_CONSUMER,
                    "herald routers",
                    args.router_ack_wait,
                    (concurrency * 8).max(1000),
                ),
            )
            .await
        })
        .await?;
        let flood = retry_until_ready("the flood-control buckets", cancel, || {
            nats.ensure_flood_buckets()
        })
        .await?;
        readiness.set("router-consumer", true);
        let deliveries_budget = StreamBudget::new(
            names::DELIVERIES_STREAM,
            nats.args.budgets.deliveries_max_bytes,
            metrics.clone(),
            readiness.clone(),
        );
        Ok(Self {
            router: Router {
                nats,
                catalog,
                metrics,
                no_cross_namespace_refs: args.no_cross_namespace_refs,
                cluster_metadata: !args.no_cluster_metadata,
                fleet,
                flood,
            },
            consumer,
            concurrency,
            ack_wait: args.router_ack_wait,
            deliveries_budget,
            edges: args.edges.clone(),
        })
    }

    /// Routes until `cancel` fires, then finishes the events in hand.
    pub async fn run(self, cancel: CancellationToken) {
        // Nothing is taken before the catalog holds its first full read.
        tokio::select! {
            () = cancel.cancelled() => return,
            () = self.router.catalog.loaded() => {}
        }
        tracing::info!(concurrency = self.concurrency, "Routing events.");
        tokio::spawn({
            let metrics = self.router.metrics.clone();
            let consumer = self.consumer.clone();
            let cancel = cancel.clone();
            async move {
                metrics
                    .watch_consumer(
                        consumer,
                        names::ROUTER_CONSUMER,
                        Duration::from_secs(5),
                        cancel,
                    )
                    .await;
            }
        });
        tokio::spawn({
            let metrics = self.router.metrics.clone();
            let catalog = self.router.catalog.clone();
            let cancel = cancel.clone();
            async move { metrics.watch_catalog(catalog, cancel).await }
        });
        tokio::spawn(self.deliveries_budget.clone().watch(
            self.router.nats.jetstream.clone(),
            BUDGET_POLL,
            cancel.clone(),
        ));
        if !self.edges.is_empty() {
            tokio::spawn(edges::tend(
                self.router.nats.clone(),
                self.edges.clone(),
                self.router.metrics.clone(),
                cancel.clone(),
            ));
        }
        tokio::spawn(trim_events(
            self.router.nats.clone(),
            self.consumer.clone(),
            cancel.clone(),
        ));
        herald_runtime::consume::consume(
            &self.router.nats.jetstream,
            &self.consumer,
            ConsumeSettings {
                concurrency: self.concurrency,
                ack_wait: self.ack_wait,
            },
            &cancel,
            "events",
            |message| self.handle(message),
        )
        .await;
        tracing::info!("Router stopped pulling events.");
    }

    async fn handle(&self, message: jetstream::Message) -> Done {
        let span = tracing::info_span!(
            "router.process",
            otel.name = "process herald.events",
            otel.kind = "consumer",
            otel.status_code = tracing::field::Empty,
            messaging.system = "nats",
            messaging.operation.name = "process",
            messaging.operation.type = "process",
            messaging.destination.name = %message.subject,
            messaging.destination.template = "herald.events.{cluster}",
            messaging.consumer.group.name = names::ROUTER_CONSUMER,
            messaging.message.id = tracing::field::Empty,
            trace_id = tracing::field::Empty,
            event.id = tracing::field::Empty,
            herald.cluster = tracing::field::Empty,
            flux.object.kind = tracing::field::Empty,
            flux.object.namespace = tracing::field::Empty,
            flux.object.name = tracing::field::Empty,
            flux.revision = tracing::field::Empty,
            herald.alerts.matched = tracing::field::Empty,
            herald.deliveries = tracing::field::Empty,
        );
        herald_runtime::propagation::set_parent(
            &span,
            herald_runtime::propagation::extract_nats(message.headers.as_ref()),
        );
        herald_runtime::propagation::record_trace_id(&span);
        self.handle_in(message).instrument(span).await
    }

    async fn handle_in(&self, message: jetstream::Message) -> Done {
        match self.route(&message.subject, &message.payload).await {
            Ok(routed) => {
                self.deliveries_budget.stored();
                self.router.metrics.routed(&routed.cluster);
                tracing::debug!(event.id = %routed.event_id, deliveries = routed.deliveries, "Routed event.");
                if let Err(error) = message.ack().await {
                    tracing::warn!(error = %error, "Cannot ack a routed event; it is routed again (deliveries are de-duplicated).");
                }
                Done::Finished
            }
            Err(error @ route::RouteError::Unstamped(_)) => {
                // Routing it would trust the edge to name its cluster.
                self.router.metrics.reject("unstamped");
                tracing::error!(error = %error, "An event from an edge has no cluster given by the hub; it stays in the stream, unrouted.");
                if let Err(error) = message.ack_with(AckKind::Term).await {
                    tracing::warn!(error = %error, "Cannot terminate an unstamped event.");
                }
                Done::Finished
            }
            Err(route::RouteError::Undecodable(error)) => {
                // Not an event of ours: nothing can ever route it.
                self.router.metrics.reject("undecodable");
                tracing::error!(error = %error, subject = %message.subject, "Cannot decode a message on HERALD_EVENTS; it stays in the stream, unrouted.");
                if let Err(error) = message.ack_with(AckKind::Term).await {
                    tracing::warn!(error = %error, "Cannot terminate an undecodable message.");
                }
                Done::Finished
            }
            Err(error) => {
                tracing::Span::current().record("otel.status_code", "error");
                let delivered = message.info().map_or(1, |info| info.delivered);
                let delay = retry_delay(delivered);
                if let route::RouteError::NoRoom(_) = error {
                    // Logged once by the budget, not once per event.
                    self.deliveries_budget.refused();
                    tracing::debug!(error = %error, ?delay, "No room for deliveries; the event is routed again later.");
                } else if let route::RouteError::MemberNotRead(_) = error {
                    // The member's source logs why it cannot read it.
                    tracing::debug!(error = %error, ?delay, "The event is routed again later.");
                } else {
                    tracing::warn!(error = %error, ?delay, "Cannot store deliveries; the event is routed again later.");
                }
                if let Err(error) = message.ack_with(AckKind::Nak(Some(delay))).await {
                    tracing::warn!(error = %error, "Cannot nak an event; it is redelivered after the ack wait.");
                }
                Done::PutBack
            }
        }
    }
}

// === impl App ===

impl App {
    /// Routes an event, trying again for up to [`STORE_FOR`] while its
    /// deliveries cannot be stored for want of an answer (not for want of
    /// room, which the budget handles). Deliveries carry their message id,
    /// so storing them again stores each once.
    async fn route(&self, subject: &str, payload: &[u8]) -> Result<Routed, route::RouteError> {
        let started = tokio::time::Instant::now();
        let mut retry = STORE_RETRY_FIRST;
        loop {
            match self.router.route(subject, payload).await {
                Err(route::RouteError::Publish(error)) if started.elapsed() + retry < STORE_FOR => {
                    tracing::debug!(error = %error, ?retry, "Cannot store deliveries yet; trying again.");
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(STORE_RETRY_MAX);
                }
                other => return other,
            }
        }
    }
}

/// Keeps HERALD_EVENTS within its budget: past [`TRIM_AT`] of it, the oldest
/// events every router has acked are purged, down to [`TRIM_TO`] or to the
/// oldest event not yet routed, whichever comes first. The stream refuses
/// new events when full (it never drops one by itself), so an event is only
/// ever removed here, after it was routed.
async fn trim_events(
    nats: Nats,
    consumer: consumer::Consumer<consumer::pull::Config>,
    cancel: CancellationToken,
) {
    let budget = nats.args.budgets.events_max_bytes;
    if budget == 0 {
        return;
    }
    loop {
        if let Err(error) = trim_once(&nats, &consumer, budget).await {
            tracing::debug!(error = %error, "Cannot trim HERALD_EVENTS now.");
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(BUDGET_POLL) => {}
        }
    }
}

async fn trim_once(
    nats: &Nats,
    consumer: &consumer::Consumer<consumer::pull::Config>,
    budget: u64,
) -> anyhow::Result<()> {
    let mut stream = nats.jetstream.get_stream(names::EVENTS_STREAM).await?;
    let state = stream.info().await?.state.clone();
    if (state.bytes as f64) < budget as f64 * TRIM_AT || state.messages == 0 {
        return Ok(());
    }
    let mut consumer = consumer.clone();
    let routed_below = consumer.info().await?.ack_floor.stream_sequence + 1;
    let average = (state.bytes / state.messages).max(1);
    let excess = state.bytes.saturating_sub((budget as f64 * TRIM_TO) as u64);
    let target = routed_below.min(state.first_sequence + excess.div_ceil(average));
    if target <= state.first_sequence {
        return Ok(());
    }
    let purged = stream.purge().sequence(target).await?;
    tracing::info!(
        purged = purged.purged,
        bytes = state.bytes,
        budget,
        "Trimmed routed events from HERALD_EVENTS to keep it within its budget."
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn retry_delays_grow_and_are_capped() {
        let first = super::retry_delay(1);
        assert!(
            first.as_millis() >= 800 && first.as_millis() <= 1200,
            "{first:?}"
        );
        let later = super::retry_delay(4);
        assert!(later.as_millis() >= 6400, "{later:?}");
        for delivered in [10, 1000, i64::MAX] {
            assert!(super::retry_delay(delivered) <= std::time::Duration::from_secs(12));
        }
    }
}
