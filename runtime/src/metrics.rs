//! Prometheus metrics of every Herald service, served on `/metrics`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

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

/// The clusters that have a label value of their own, first come first
/// served, up to a limit: a fleet of thousands cannot grow the series
/// without bound.
#[derive(Debug)]
struct ClusterNames {
    limit: usize,
    named: Mutex<HashSet<String>>,
}

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
    /// Matched pairs not sent, by reason (gating).
    pub deliveries_skipped: Family<ReasonClusterLabels, Counter>,
    /// Deliveries published by the router.
    pub deliveries_published: Family<ProviderClusterLabels, Counter>,
    /// Send attempts by outcome: `delivered`, `retry`, `dead`.
    pub deliveries: Family<OutcomeLabels, Counter>,
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
    clusters: Arc<ClusterNames>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 18))
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
            deliveries_skipped: Family::default(),
            deliveries_published: Family::default(),
            deliveries: Family::default(),
            delivery_latency: Family::new_with_constructor(latency_histogram),
            provider_request_duration: Family::new_with_constructor(latency_histogram),
            consumer_pending: Family::default(),
            consumer_ack_pending: Family::default(),
            stream_bytes: Family::default(),
            stream_max_bytes: Family::default(),
            stream_budget_full: Family::default(),
            budget_refusals: Family::default(),
            oversize: Family::default(),
            tls_reloads: Family::default(),
            edge_linked: Family::default(),
            clusters: Arc::new(ClusterNames {
                limit: CLUSTER_LABELS,
                named: Mutex::default(),
            }),
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
            "Send attempts by provider type and outcome",
            m.deliveries.clone(),
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
        m.registry = Arc::new(registry);
        m
    }

    /// The same metrics, with `limit` clusters labelled by name (see
    /// [`CLUSTER_LABELS`]).
    #[must_use]
    pub fn with_cluster_limit(mut self, limit: usize) -> Self {
        self.clusters = Arc::new(ClusterNames {
            limit,
            named: Mutex::default(),
        });
        self
    }

    /// The `cluster` label value of events from `cluster`: its name while
    /// fewer than the limit are named, [`OTHER_CLUSTERS`] after.
    #[must_use]
    pub fn cluster(&self, cluster: &str) -> String {
        let mut named = self
            .clusters
            .named
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if named.contains(cluster) {
            return cluster.to_owned();
        }
        if named.len() < self.clusters.limit {
            named.insert(cluster.to_owned());
            return cluster.to_owned();
        }
        OTHER_CLUSTERS.to_owned()
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

    /// Counts a send attempt's outcome.
    pub fn delivery(&self, provider_type: &str, outcome: &str, cluster: &str) {
        self.deliveries
            .get_or_create(&OutcomeLabels {
                provider_type: provider_type.to_owned(),
                outcome: outcome.to_owned(),
                cluster: self.cluster(cluster),
            })
            .inc();
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

    /// The Prometheus text exposition.
    #[must_use]
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing into a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_counters_with_labels() {
        let m = Metrics::new();
        m.events_received.inc();
        m.reject("invalid_json");
        m.delivery("slack", "delivered", "prod-eu");
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
}
