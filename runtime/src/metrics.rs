//! Prometheus metrics of every Herald service, served on `/metrics`.
//!
//! Labels that come from the outside (clusters, Providers) are bounded: the
//! first N values seen get a series of their own, the rest share `_other`,
//! so a large fleet or catalog cannot grow the series without bound. No label
//! ever holds a secret (addresses, tokens and channels stay out; a Provider
//! is named by namespace and name only).

mod bounded;
pub mod text;

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use bounded::Bounded;

/// Label set `reason`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

/// Label set `provider_type`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabels {
    pub provider_type: String,
}

/// Label set `consumer`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConsumerLabels {
    pub consumer: String,
}

/// Label set `outcome`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeOnlyLabels {
    pub outcome: String,
}

/// Label set `provider_type`, `outcome`, `cluster`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub provider_type: String,
    pub outcome: String,
    pub cluster: String,
}

/// Label set `cluster`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterLabels {
    pub cluster: String,
}

/// Label set `reason`, `cluster`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonClusterLabels {
    pub reason: String,
    pub cluster: String,
}

/// Label set `provider_type`, `cluster`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderClusterLabels {
    pub provider_type: String,
    pub cluster: String,
}

/// How many clusters get a `cluster` label value of their own, by default;
/// events from clusters seen after them count under [`OTHER_CLUSTERS`].
pub const CLUSTER_LABELS: usize = 200;

/// The `cluster` label value of the clusters past the limit.
pub const OTHER_CLUSTERS: &str = "_other";

/// How many Providers get label values of their own on the per-Provider
/// metrics, by default; Providers seen after them count under
/// [`OTHER_PROVIDERS`] (`provider_namespace` and `provider_name`).
pub const PROVIDER_LABELS: usize = 500;

/// The `provider_namespace` and `provider_name` label values of the Providers
/// past the limit.
pub const OTHER_PROVIDERS: &str = "_other";

/// Label set `provider_namespace`, `provider_name`, `provider_type`, `outcome`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderOutcomeLabels {
    pub provider_namespace: String,
    pub provider_name: String,
    pub provider_type: String,
    pub outcome: String,
}

/// Label set `provider_type`, `outcome`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderTypeOutcomeLabels {
    pub provider_type: String,
    pub outcome: String,
}

/// Label set `provider_type`, `annotation` (`template`, `slack-blocks`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TemplateLabels {
    pub provider_type: String,
    pub annotation: String,
}

/// Label set `severity` (`error`, `warning`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SeverityLabels {
    pub severity: String,
}

/// Label set `version`, `commit`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: String,
    pub commit: String,
}

/// The upper bounds (seconds) of `herald_delivery_latency_seconds`: from a
/// millisecond to a day, the default `--max-age` of a delivery, past which it
/// is dead rather than delivered (a longer `--max-age` lands in `+Inf`).
pub const DELIVERY_LATENCY_BUCKETS: [f64; 23] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0, 900.0, 1800.0, 3600.0, 10800.0, 21600.0, 43200.0, 86400.0,
];

/// The upper bounds (seconds) of `herald_pacing_wait_seconds`: waits in the
/// sender (up to `--pace-max-wait`) and delays of put-back deliveries (up
/// to a destination's `Retry-After`).
pub const PACING_WAIT_BUCKETS: [f64; 14] = [
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

/// How often the dead-letter depth and the catalog's problems are sampled.
pub const SAMPLE_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Label set `edge`: the cluster the hub assigns an edge (`--edge`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EdgeLabels {
    pub edge: String,
}

type HistogramFamily = Family<ProviderLabels, Histogram, fn() -> Histogram>;
type ClusterHistogramFamily = Family<ProviderClusterLabels, Histogram, fn() -> Histogram>;

/// Every metric Herald exports. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    /// Requests with a Flux event that ingest decoded.
    pub events_received: Counter,
    /// Requests ingest refused, by reason.
    pub events_rejected: Family<ReasonLabels, Counter>,
    /// Duplicates answered without storing, by reason: `flux_rate_limit`
    /// (Flux's dedupe window) or `retried_request` (JetStream had it).
    pub events_duplicate: Family<ReasonClusterLabels, Counter>,
    /// Events stored on HERALD_EVENTS, by cluster.
    pub events_stored: Family<ClusterLabels, Counter>,
    /// Events the router finished (acked), by cluster.
    pub events_routed: Family<ClusterLabels, Counter>,
    /// (event, Alert) pairs that matched.
    pub alerts_matched: Counter,
    /// Deliveries gathered into a group (herald.dev/group-wait).
    pub events_grouped: Counter,
    /// Events an Alert's herald.dev/repeat-threshold held back.
    pub events_held_back: Counter,
    /// Recovery messages (herald.dev/recovery) made.
    pub recoveries: Counter,
    /// Digest deliveries the flusher published.
    pub digests_sent: Counter,
    /// Matched pairs not sent, by reason (gating).
    pub deliveries_skipped: Family<ReasonClusterLabels, Counter>,
    /// Deliveries published by the router.
    pub deliveries_published: Family<ProviderClusterLabels, Counter>,
    /// Deliveries finished, by outcome: `delivered`, `dead`, `superseded`.
    pub deliveries: Family<OutcomeLabels, Counter>,
    /// Send attempts, by outcome: `delivered`, `retry`, `dead`.
    pub attempts: Family<OutcomeLabels, Counter>,
    /// Deliveries finished, per Provider (bounded), by outcome.
    pub provider_deliveries: Family<ProviderOutcomeLabels, Counter>,
    /// Send attempts, per Provider (bounded), by outcome.
    pub provider_attempts: Family<ProviderOutcomeLabels, Counter>,
    /// Turns waited for a paced destination, by outcome: `waited` (in the
    /// sender), `requeued` (put back on the queue).
    pub pacing_waits: Family<ProviderTypeOutcomeLabels, Counter>,
    /// Seconds of those waits.
    pub pacing_wait: HistogramFamily,
    /// Renderings of a message template that failed (the delivery was sent
    /// with Flux's message), by provider type and annotation.
    pub template_failures: Family<TemplateLabels, Counter>,
    /// Dead letters the router stored instead of a delivery, by reason:
    /// `provider_missing`, `oversize`.
    pub router_dead_letters: Family<ReasonLabels, Counter>,
    /// Messages on HERALD_DEAD, as last sampled.
    pub dead_letters: Gauge,
    /// Problems of the catalog (and its member clusters'), by severity.
    pub catalog_problems: Family<SeverityLabels, Gauge>,
    /// 1 while the NATS connection is up (sampled at each scrape).
    pub nats_connected: Gauge,
    /// Always 1, labelled with the version and commit built.
    pub build_info: Family<BuildLabels, Gauge>,
    /// Seconds from ingest's receipt to the provider's 2xx.
    pub delivery_latency: ClusterHistogramFamily,
    /// Seconds one provider call took.
    pub provider_request_duration: HistogramFamily,
    /// Messages a durable consumer has not been given yet.
    pub consumer_pending: Family<ConsumerLabels, Gauge>,
    /// Messages a durable consumer was given and that are not acked yet.
    pub consumer_ack_pending: Family<ConsumerLabels, Gauge>,
    /// Bytes a stream holds, as last read.
    pub stream_bytes: Family<crate::budget::StreamLabels, Gauge>,
    /// A stream's byte budget.
    pub stream_max_bytes: Family<crate::budget::StreamLabels, Gauge>,
    /// 1 while a stream has no room to spare.
    pub stream_budget_full: Family<crate::budget::StreamLabels, Gauge>,
    /// Messages refused for lack of room (by JetStream, or by ingest before it).
    pub budget_refusals: Family<crate::budget::StreamLabels, Counter>,
    /// Messages that could never fit NATS's `max_payload`, kept shrunk as dead
    /// letters (by where: `router`, `sender`).
    pub oversize: Family<ReasonLabels, Counter>,
    /// Reads of a changed TLS certificate and key, by outcome: `loaded`,
    /// or `failed` (the previous pair is still served).
    pub tls_reloads: Family<OutcomeOnlyLabels, Counter>,
    /// 1 while an edge's JetStream answers through the hub (its leaf node
    /// is linked), 0 while its events wait at the edge.
    pub edge_linked: Family<EdgeLabels, Gauge>,
    clusters: Arc<Bounded>,
    providers: Arc<Bounded>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn request_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 18))
}

fn delivery_latency_histogram() -> Histogram {
    Histogram::new(DELIVERY_LATENCY_BUCKETS)
}

fn pacing_wait_histogram() -> Histogram {
    Histogram::new(PACING_WAIT_BUCKETS)
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

// === impl Metrics ===

impl Metrics {
    /// A fresh registry with every metric registered under the `herald_` prefix.
    #[must_use]
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("herald");
        let mut m = Self {
            registry: Arc::default(),
            events_received: Counter::default(),
            events_rejected: Family::default(),
            events_duplicate: Family::default(),
            events_stored: Family::default(),
            events_routed: Family::default(),
            alerts_matched: Counter::default(),
            events_grouped: Counter::default(),
            events_held_back: Counter::default(),
            recoveries: Counter::default(),
            digests_sent: Counter::default(),
            deliveries_skipped: Family::default(),
            deliveries_published: Family::default(),
            deliveries: Family::default(),
            attempts: Family::default(),
            provider_deliveries: Family::default(),
            provider_attempts: Family::default(),
            pacing_waits: Family::default(),
            pacing_wait: Family::new_with_constructor(pacing_wait_histogram),
            template_failures: Family::default(),
            router_dead_letters: Family::default(),
            dead_letters: Gauge::default(),
            catalog_problems: Family::default(),
            nats_connected: Gauge::default(),
            build_info: Family::default(),
            delivery_latency: Family::new_with_constructor(delivery_latency_histogram),
            provider_request_duration: Family::new_with_constructor(request_histogram),
            consumer_pending: Family::default(),
            consumer_ack_pending: Family::default(),
            stream_bytes: Family::default(),
            stream_max_bytes: Family::default(),
            stream_budget_full: Family::default(),
            budget_refusals: Family::default(),
            oversize: Family::default(),
            tls_reloads: Family::default(),
            edge_linked: Family::default(),
            clusters: Arc::new(Bounded::new(CLUSTER_LABELS)),
            providers: Arc::new(Bounded::new(PROVIDER_LABELS)),
        };
        registry.register(
            "events_received",
            "Requests carrying a Flux event that ingest decoded",
            m.events_received.clone(),
        );
        registry.register(
            "events_rejected",
            "Requests ingest refused, by reason",
            m.events_rejected.clone(),
        );
        registry.register(
            "events_duplicate",
            "Duplicate events not stored again, by reason",
            m.events_duplicate.clone(),
        );
        registry.register(
            "events_stored",
            "Events stored on HERALD_EVENTS",
            m.events_stored.clone(),
        );
        registry.register(
            "events_routed",
            "Events the router finished",
            m.events_routed.clone(),
        );
        registry.register(
            "alerts_matched",
            "Event and Alert pairs that matched",
            m.alerts_matched.clone(),
        );
        registry.register(
            "events_grouped",
            "Deliveries gathered into a group until its digest",
            m.events_grouped.clone(),
        );
        registry.register(
            "events_held_back",
            "Events held back by an Alert's repeat threshold",
            m.events_held_back.clone(),
        );
        registry.register("recoveries", "Recovery messages made", m.recoveries.clone());
        registry.register(
            "digests_sent",
            "Digest deliveries published by the flusher",
            m.digests_sent.clone(),
        );
        registry.register(
            "deliveries_skipped",
            "Matched pairs not sent, by reason",
            m.deliveries_skipped.clone(),
        );
        registry.register(
            "deliveries_published",
            "Deliveries published by the router",
            m.deliveries_published.clone(),
        );
        registry.register(
            "deliveries",
            "Deliveries finished, by provider type and outcome",
            m.deliveries.clone(),
        );
        registry.register(
            "delivery_attempts",
            "Send attempts, by provider type and outcome",
            m.attempts.clone(),
        );
        registry.register(
            "provider_deliveries",
            "Deliveries finished, per Provider and outcome",
            m.provider_deliveries.clone(),
        );
        registry.register(
            "provider_attempts",
            "Send attempts, per Provider and outcome",
            m.provider_attempts.clone(),
        );
        registry.register(
            "pacing_waits",
            "Turns waited for a paced destination, in the sender or back on the queue",
            m.pacing_waits.clone(),
        );
        registry.register(
            "pacing_wait_seconds",
            "Seconds a delivery waited for a paced destination's turn",
            m.pacing_wait.clone(),
        );
        registry.register(
            "router_dead_letters",
            "Dead letters the router stored instead of a delivery, by reason",
            m.router_dead_letters.clone(),
        );
        registry.register(
            "dead_letters",
            "Dead letters kept on HERALD_DEAD, as last sampled",
            m.dead_letters.clone(),
        );
        registry.register(
            "catalog_problems",
            "Alerts, Providers and Secrets of the catalog with a problem, by severity",
            m.catalog_problems.clone(),
        );
        registry.register(
            "nats_connected",
            "1 while the NATS connection is up, 0 while it is not",
            m.nats_connected.clone(),
        );
        registry.register(
            "build_info",
            "Always 1: the version and commit of this Herald build",
            m.build_info.clone(),
        );
        registry.register(
            "delivery_latency_seconds",
            "Seconds from receipt at ingest to the provider accepting the delivery",
            m.delivery_latency.clone(),
        );
        registry.register(
            "provider_request_duration_seconds",
            "Seconds one provider request took",
            m.provider_request_duration.clone(),
        );
        registry.register(
            "consumer_pending",
            "Messages a durable consumer has not been given yet (its lag)",
            m.consumer_pending.clone(),
        );
        registry.register(
            "consumer_ack_pending",
            "Messages a durable consumer holds unacked",
            m.consumer_ack_pending.clone(),
        );
        registry.register(
            "stream_bytes",
            "Bytes a Herald stream holds",
            m.stream_bytes.clone(),
        );
        registry.register(
            "stream_max_bytes",
            "The byte budget of a Herald stream",
            m.stream_max_bytes.clone(),
        );
        registry.register(
            "stream_budget_full",
            "1 while a Herald stream has no room to spare",
            m.stream_budget_full.clone(),
        );
        registry.register(
            "budget_refusals",
            "Messages refused because a stream had no room",
            m.budget_refusals.clone(),
        );
        registry.register(
            "template_failures",
            "Message templates that failed to render (sent with Flux's message), by provider type and annotation",
            m.template_failures.clone(),
        );
        registry.register(
            "oversize",
            "Messages larger than NATS carries, kept shrunk as dead letters",
            m.oversize.clone(),
        );
        registry.register(
            "tls_certificate_reloads",
            "Reads of a changed TLS certificate and key, by outcome",
            m.tls_reloads.clone(),
        );
        registry.register(
            "edge_linked",
            "1 while an edge's JetStream answers through the hub, 0 while its link is down",
            m.edge_linked.clone(),
        );
        m.build_info
            .get_or_create(&BuildLabels {
                version: crate::build::VERSION.to_owned(),
                commit: crate::build::COMMIT.to_owned(),
            })
            .set(1);
        for severity in ["error", "warning"] {
            m.catalog_problems
                .get_or_create(&SeverityLabels {
                    severity: severity.to_owned(),
                })
                .set(0);
        }
        m.registry = Arc::new(registry);
        m
    }

    /// The same metrics, with `limit` clusters labelled by name (see
    /// [`CLUSTER_LABELS`]).
    #[must_use]
    pub fn with_cluster_limit(mut self, limit: usize) -> Self {
        self.clusters = Arc::new(Bounded::new(limit));
        self
    }

    /// The same metrics, with `limit` Providers labelled by name (see
    /// [`PROVIDER_LABELS`]).
    #[must_use]
    pub fn with_provider_limit(mut self, limit: usize) -> Self {
        self.providers = Arc::new(Bounded::new(limit));
        self
    }

    /// The `cluster` label value of events from `cluster`: its name while
    /// fewer than the limit are named, [`OTHER_CLUSTERS`] after.
    #[must_use]
    pub fn cluster(&self, cluster: &str) -> String {
        if self.clusters.admit(cluster) {
            cluster.to_owned()
        } else {
            OTHER_CLUSTERS.to_owned()
        }
    }

    /// The `provider_namespace` and `provider_name` label values of the
    /// Provider `namespace/name`: its own while fewer than the limit are
    /// named, [`OTHER_PROVIDERS`] for both after.
    #[must_use]
    pub fn provider(&self, namespace: &str, name: &str) -> (String, String) {
        if self.providers.admit_pair(namespace, name) {
            (namespace.to_owned(), name.to_owned())
        } else {
            (OTHER_PROVIDERS.to_owned(), OTHER_PROVIDERS.to_owned())
        }
    }

    /// Counts an event stored on HERALD_EVENTS.
    pub fn stored(&self, cluster: &str) {
        self.events_stored
            .get_or_create(&ClusterLabels {
                cluster: self.cluster(cluster),
            })
            .inc();
    }

    /// Counts an event the router finished.
    pub fn routed(&self, cluster: &str) {
        self.events_routed
            .get_or_create(&ClusterLabels {
                cluster: self.cluster(cluster),
            })
            .inc();
    }

    /// Counts a message template that failed to render.
    pub fn template_failure(&self, provider_type: &str, annotation: &str) {
        self.template_failures
            .get_or_create(&TemplateLabels {
                provider_type: provider_type.to_owned(),
                annotation: annotation.to_owned(),
            })
            .inc();
    }

    /// Counts a matched pair not sent.
    pub fn skipped(&self, reason: &str, cluster: &str) {
        self.deliveries_skipped
            .get_or_create(&ReasonClusterLabels {
                reason: reason.to_owned(),
                cluster: self.cluster(cluster),
            })
            .inc();
    }

    /// Counts a delivery the router published.
    pub fn published(&self, provider_type: &str, cluster: &str) {
        self.deliveries_published
            .get_or_create(&ProviderClusterLabels {
                provider_type: provider_type.to_owned(),
                cluster: self.cluster(cluster),
            })
            .inc();
    }

    /// Observes the seconds from receipt to delivery.
    pub fn latency(&self, provider_type: &str, cluster: &str, seconds: f64) {
        self.delivery_latency
            .get_or_create(&ProviderClusterLabels {
                provider_type: provider_type.to_owned(),
                cluster: self.cluster(cluster),
            })
            .observe(seconds);
    }

    /// Counts a refused request.
    pub fn reject(&self, reason: &str) {
        self.events_rejected
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Counts a read of a changed TLS certificate and key.
    pub fn tls_reload(&self, outcome: &str) {
        self.tls_reloads
            .get_or_create(&OutcomeOnlyLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// Counts a duplicate event.
    pub fn duplicate(&self, reason: &str, cluster: &str) {
        self.events_duplicate
            .get_or_create(&ReasonClusterLabels {
                reason: reason.to_owned(),
                cluster: self.cluster(cluster),
            })
            .inc();
    }

    /// Counts a delivery that finished (`delivered`, `dead`, `superseded`),
    /// by type and cluster and for its Provider `namespace/name`.
    pub fn delivery(&self, to: &Sent<'_>, outcome: &str) {
        self.deliveries
            .get_or_create(&OutcomeLabels {
                provider_type: to.provider_type.to_owned(),
                outcome: outcome.to_owned(),
                cluster: self.cluster(to.cluster),
            })
            .inc();
        self.provider_deliveries
            .get_or_create(&self.provider_labels(to, outcome))
            .inc();
    }

    /// Counts a send attempt (`delivered`, `retry`, `dead`), by type and
    /// cluster and for its Provider.
    pub fn attempt(&self, to: &Sent<'_>, outcome: &str) {
        self.attempts
            .get_or_create(&OutcomeLabels {
                provider_type: to.provider_type.to_owned(),
                outcome: outcome.to_owned(),
                cluster: self.cluster(to.cluster),
            })
            .inc();
        self.provider_attempts
            .get_or_create(&self.provider_labels(to, outcome))
            .inc();
    }

    fn provider_labels(&self, to: &Sent<'_>, outcome: &str) -> ProviderOutcomeLabels {
        let (provider_namespace, provider_name) = self.provider(to.namespace, to.name);
        ProviderOutcomeLabels {
            provider_namespace,
            provider_name,
            provider_type: to.provider_type.to_owned(),
            outcome: outcome.to_owned(),
        }
    }

    /// Counts a wait for a paced destination's turn (`waited` in the sender,
    /// `requeued` on the queue) and observes how long it was.
    pub fn pacing_wait(&self, provider_type: &str, outcome: &str, wait: std::time::Duration) {
        self.pacing_waits
            .get_or_create(&ProviderTypeOutcomeLabels {
                provider_type: provider_type.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
        self.pacing_wait
            .get_or_create(&ProviderLabels {
                provider_type: provider_type.to_owned(),
            })
            .observe(wait.as_secs_f64());
    }

    /// Counts a dead letter the router stored instead of a delivery.
    pub fn router_dead_letter(&self, reason: &str) {
        self.router_dead_letters
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Sets the catalog's problem counts.
    pub fn catalog_problems(&self, errors: usize, warnings: usize) {
        for (severity, count) in [("error", errors), ("warning", warnings)] {
            self.catalog_problems
                .get_or_create(&SeverityLabels {
                    severity: severity.to_owned(),
                })
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }

    /// Samples the problems of `catalog` and of its member clusters' every
    /// [`SAMPLE_EVERY`] until `cancel` fires.
    pub async fn watch_catalog(
        &self,
        catalog: crate::Catalog,
        cancel: tokio_util::sync::CancellationToken,
    ) {
        loop {
            let (mut errors, mut warnings) = catalog.snapshot().problem_counts();
            for member in catalog.members() {
                if let Some(member) = catalog.member(&member) {
                    let (e, w) = member.snapshot().problem_counts();
                    errors += e;
                    warnings += w;
                }
            }
            self.catalog_problems(errors, warnings);
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(SAMPLE_EVERY) => {}
            }
        }
    }

    /// Samples how many dead letters HERALD_DEAD holds (and its bytes) every
    /// [`SAMPLE_EVERY`] until `cancel` fires: one stream info request, never
    /// on a delivery's path.
    pub async fn watch_dead_letters(
        &self,
        jetstream: async_nats::jetstream::Context,
        max_bytes: u64,
        cancel: tokio_util::sync::CancellationToken,
    ) {
        let labels = crate::budget::StreamLabels {
            stream: herald_proto::names::DEAD_STREAM.to_owned(),
        };
        self.stream_max_bytes
            .get_or_create(&labels)
            .set(i64::try_from(max_bytes).unwrap_or(i64::MAX));
        loop {
            // Getting the stream reads its info: one request.
            if let Ok(stream) = jetstream.get_stream(herald_proto::names::DEAD_STREAM).await {
                let state = &stream.cached_info().state;
                self.dead_letters
                    .set(i64::try_from(state.messages).unwrap_or(i64::MAX));
                self.stream_bytes
                    .get_or_create(&labels)
                    .set(i64::try_from(state.bytes).unwrap_or(i64::MAX));
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(SAMPLE_EVERY) => {}
            }
        }
    }

    /// Polls a durable consumer's lag every `every` until `cancel` fires.
    pub async fn watch_consumer(
        &self,
        consumer: async_nats::jetstream::consumer::Consumer<
            async_nats::jetstream::consumer::pull::Config,
        >,
        name: &str,
        every: std::time::Duration,
        cancel: tokio_util::sync::CancellationToken,
    ) {
        let labels = ConsumerLabels {
            consumer: name.to_owned(),
        };
        loop {
            if let Ok(info) = consumer.get_info().await {
                let pending = i64::try_from(info.num_pending).unwrap_or(i64::MAX);
                let ack_pending = i64::try_from(info.num_ack_pending).unwrap_or(i64::MAX);
                self.consumer_pending.get_or_create(&labels).set(pending);
                self.consumer_ack_pending
                    .get_or_create(&labels)
                    .set(ack_pending);
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
        }
    }

    /// The OpenMetrics text exposition (with `# EOF`).
    #[must_use]
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing into a String cannot fail");
        out
    }

    /// The Prometheus text exposition, format 0.0.4 (what scrapers that do
    /// not ask for OpenMetrics, and `promtool check metrics`, read).
    #[must_use]
    pub fn encode_prometheus(&self) -> String {
        text::to_prometheus(&self.encode())
    }
}

/// Where a delivery goes, for the delivery and attempt counters.
#[derive(Debug, Clone, Copy)]
pub struct Sent<'a> {
    pub provider_type: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
    pub cluster: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_counters_with_labels() {
        let m = Metrics::new();
        m.events_received.inc();
        m.reject("invalid_json");
        m.delivery(
            &Sent {
                provider_type: "slack",
                namespace: "flux-system",
                name: "chat",
                cluster: "prod-eu",
            },
            "delivered",
        );
        let text = m.encode();
        assert!(text.contains("herald_events_received_total 1"), "{text}");
        assert!(
            text.contains(r#"herald_events_rejected_total{reason="invalid_json"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"herald_deliveries_total{provider_type="slack",outcome="delivered",cluster="prod-eu"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"herald_provider_deliveries_total{provider_namespace="flux-system",provider_name="chat",provider_type="slack",outcome="delivered"} 1"#
            ),
            "{text}"
        );
    }

    #[test]
    fn clusters_past_the_limit_share_one_label_value() {
        let m = Metrics::new().with_cluster_limit(2);
        for cluster in ["a", "b", "c", "a", "d"] {
            m.stored(cluster);
        }
        let text = m.encode();
        for line in [
            r#"herald_events_stored_total{cluster="a"} 2"#,
            r#"herald_events_stored_total{cluster="b"} 1"#,
            r#"herald_events_stored_total{cluster="_other"} 2"#,
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        assert!(!text.contains(r#"cluster="c""#), "{text}");
    }

    #[test]
    fn providers_past_the_limit_share_one_label_value() {
        let m = Metrics::new().with_provider_limit(2);
        for (namespace, name) in [("a", "x"), ("b", "x"), ("a", "y"), ("a", "x")] {
            let to = Sent {
                provider_type: "generic",
                namespace,
                name,
                cluster: "c",
            };
            m.attempt(&to, "retry");
        }
        let text = m.encode();
        for line in [
            r#"herald_provider_attempts_total{provider_namespace="a",provider_name="x",provider_type="generic",outcome="retry"} 2"#,
            r#"herald_provider_attempts_total{provider_namespace="b",provider_name="x",provider_type="generic",outcome="retry"} 1"#,
            r#"herald_provider_attempts_total{provider_namespace="_other",provider_name="_other",provider_type="generic",outcome="retry"} 1"#,
            r#"herald_delivery_attempts_total{provider_type="generic",outcome="retry",cluster="c"} 4"#,
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }

    #[test]
    fn build_info_and_latency_buckets_are_exported() {
        let m = Metrics::new();
        let text = m.encode();
        assert!(
            text.contains(&format!(
                r#"herald_build_info{{version="{}",commit="{}"}} 1"#,
                crate::build::VERSION,
                crate::build::COMMIT
            )),
            "{text}"
        );
        m.latency("slack", "c", 0.2);
        assert!(
            m.encode().contains(
                r#"herald_delivery_latency_seconds_bucket{le="86400.0",provider_type="slack",cluster="c"} 1"#
            ),
            "{}",
            m.encode()
        );
    }
}
