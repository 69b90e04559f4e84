//! `herald router`: consumes HERALD_EVENTS, applies the users' Alerts (matching,
//! dispatch gating, metadata rules) and publishes one `Delivery` per matched
//! (event, Alert) on its Provider's subject of HERALD_DELIVERIES. An event is
//! acked only after every delivery it fanned out to was stored.

#![forbid(unsafe_code)]

pub mod route;

use std::time::Duration;

use async_nats::jetstream::consumer;
use async_nats::jetstream::{self, AckKind};
use herald_proto::names;
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
    /// `--no-cross-namespace-refs`).
    #[arg(long, env = "HERALD_NO_CROSS_NAMESPACE_REFS")]
    pub no_cross_namespace_refs: bool,
    /// How long JetStream waits for the router's ack before redelivering.
    #[arg(long, env = "HERALD_ROUTER_ACK_WAIT", default_value = "30s", value_parser = parse_duration)]
    pub router_ack_wait: Duration,
}

/// A ready-to-run router.
pub struct App {
    router: Router,
    consumer: consumer::Consumer<consumer::pull::Config>,
    concurrency: usize,
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
        nats: Nats,
        catalog: Catalog,
        metrics: Metrics,
        readiness: &Readiness,
        cancel: &CancellationToken,
    ) -> anyhow::Result<Self> {
        readiness.register("router-consumer");
        let concurrency = args.router_concurrency.max(1);
        let consumer = retry_until_ready("the router consumer", cancel, || async {
            nats.ensure_events_stream().await?;
            nats.ensure_deliveries_stream().await?;
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
        readiness.set("router-consumer", true);
        Ok(Self {
            router: Router {
                nats,
                catalog,
                metrics,
                no_cross_namespace_refs: args.no_cross_namespace_refs,
            },
            consumer,
            concurrency,
        })
    }

    /// Routes until `cancel` fires, then finishes the events in hand.
    pub async fn run(self, cancel: CancellationToken) {
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
        herald_runtime::consume::consume(
            &self.consumer,
            self.concurrency,
            &cancel,
            "events",
            |message| self.handle(message),
        )
        .await;
        tracing::info!("Router stopped pulling events.");
    }

    async fn handle(&self, message: jetstream::Message) {
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
        self.handle_in(message).instrument(span).await;
    }

    async fn handle_in(&self, message: jetstream::Message) {
        match self.router.route(&message.payload).await {
            Ok(routed) => {
                self.router.metrics.events_routed.inc();
                tracing::debug!(event.id = %routed.event_id, deliveries = routed.deliveries, "Routed event.");
                if let Err(error) = message.ack().await {
                    tracing::warn!(error = %error, "Cannot ack a routed event; it is routed again (deliveries are de-duplicated).");
                }
            }
            Err(route::RouteError::Undecodable(error)) => {
                // Not an event of ours: nothing can ever route it.
                self.router.metrics.reject("undecodable");
                tracing::error!(error = %error, subject = %message.subject, "Cannot decode a message on HERALD_EVENTS; it stays in the stream, unrouted.");
                if let Err(error) = message.ack_with(AckKind::Term).await {
                    tracing::warn!(error = %error, "Cannot terminate an undecodable message.");
                }
            }
            Err(route::RouteError::Publish(error)) => {
                tracing::Span::current().record("otel.status_code", "error");
                tracing::warn!(error = %error, "Cannot store deliveries; the event is routed again shortly.");
                if let Err(error) = message
                    .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                    .await
                {
                    tracing::warn!(error = %error, "Cannot nak an event; it is redelivered after the ack wait.");
                }
            }
        }
    }
}
