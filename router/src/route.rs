//! Routing one event: match Alerts, gate per Provider, merge metadata, and
//! publish the deliveries (all at once, then await every ack).

use async_nats::HeaderMap;
use bytes::Bytes;
use futures::future::try_join_all;
use herald_flux::CompiledAlert;
use herald_flux::convert::to_time;
use herald_flux::matching::{Gate, gate};
use herald_flux::metadata;
use herald_proto::fit::{Fitted, fit};
use herald_proto::{DeadLetter, Delivery, Event, ObjectKey, names};
use herald_runtime::metrics::ReasonLabels;
use herald_runtime::nats::{FloodBuckets, HEADER_ROOM};

use crate::flood::{FloodPlan, Note};
use herald_runtime::{Catalog, Metrics, Nats, Snapshot};
use prost::Message as _;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use tracing::Instrument as _;

/// Why an event could not be routed.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// The message is not a Herald event.
    #[error("cannot decode event: {0}")]
    Undecodable(#[from] prost::DecodeError),
    /// A delivery could not be stored; route the event again later.
    #[error("cannot publish a delivery: {0}")]
    Publish(String),
    /// HERALD_DELIVERIES has no room now; route the event again later.
    #[error("HERALD_DELIVERIES has no room: {0}")]
    NoRoom(String),
    /// The event is on an edge's own subject: the hub did not give it a
    /// cluster, and what the edge says is not taken.
    #[error(
        "the event is on {0}, an edge's own subject: its source gives it no cluster (a source \
         added by hand without a subject transform, or a nats-server before 2.10)"
    )]
    Unstamped(String),
    /// The event's member cluster has not been read yet; route it later.
    #[error("the catalog of member cluster {0} is not read yet")]
    MemberNotRead(String),
}

impl RouteError {
    fn publish(error: &dyn std::fmt::Display) -> Self {
        let text = error.to_string();
        if herald_runtime::budget::is_out_of_room(&text) {
            Self::NoRoom(text)
        } else {
            Self::Publish(text)
        }
    }
}

/// What routing an event produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed {
    pub event_id: String,
    /// The cluster the event came from.
    pub cluster: String,
    /// Deliveries published (and dead letters for missing Providers).
    pub deliveries: usize,
}

/// Routes events against the catalog.
#[derive(Clone, Debug)]
pub struct Router {
    pub(crate) nats: Nats,
    pub(crate) catalog: Catalog,
    pub(crate) metrics: Metrics,
    pub(crate) no_cross_namespace_refs: bool,
    /// Name the event's cluster in every notification (`cluster` metadata).
    pub(crate) cluster_metadata: bool,
    /// The clusters file, for Alerts that select clusters by label.
    pub(crate) fleet: Option<herald_runtime::clusters::Fleet>,
    /// Flood control's state.
    pub(crate) flood: FloodBuckets,
}

/// Gives `event` the cluster its subject names. One that named another
/// cluster gets an id derived from its own and the stamped cluster.
fn restamp(event: &mut Event, cluster: String) {
    if event.cluster == cluster {
        return;
    }
    // Expected of an edge whose ingest names its cluster otherwise than
    // the hub does: once per event, so not a warning.
    tracing::debug!(
        event.id = %event.id,
        claimed = %event.cluster,
        cluster = %cluster,
        "An event names another cluster than the one it was stored as; routed as the latter."
    );
    let digest = Sha256::digest(format!("{cluster}\0{}", event.id));
    event.id = hex::encode(&digest[..16]);
    event.cluster = cluster;
}

/// The delivery id for (event, alert): stable, so a redelivered event
/// publishes the same ids and JetStream stores each delivery once.
#[must_use]
pub fn delivery_id(event_id: &str, alert_uid: &str) -> String {
    let digest = Sha256::digest(format!("{event_id}/{alert_uid}"));
    hex::encode(&digest[..16])
}

pub(crate) struct Outgoing {
    /// `namespace/name` of the Alert, for traces.
    pub(crate) alert: String,
    /// `namespace/name` of the Provider, for traces.
    provider: String,
    pub(crate) subject: String,
    msg_id: String,
    event_id: String,
    pub(crate) payload: Bytes,
    pub(crate) provider_type: String,
    /// Set on dead letters.
    dead_reason: Option<String>,
    /// Why a dead letter was made, as counted: `provider_missing`, `oversize`.
    dead_cause: &'static str,
    /// The catalog the Alert and Provider come from (`""`: the hub's).
    scope: String,
    /// The Alert's flood control, still to apply.
    pub(crate) flood: Option<Box<FloodPlan>>,
    /// On HERALD_GROUPS, gathered for a digest.
    pub(crate) grouped: bool,
    /// State to write once it is stored.
    pub(crate) notes: Vec<Note>,
}

// === impl Router ===

impl Router {
    /// Routes one event stored on `subject`.
    ///
    /// The event's cluster is the one its subject names, whatever the event
    /// says: the hub stores what its own ingest accepted on the subject of
    /// the cluster that proved itself, and what it sources from an edge on
    /// the subject of the cluster it assigned that edge (a subject
    /// transform). An event that names another cluster than its subject is
    /// routed as its subject's, with an id of its own, so that it can
    /// neither pass for that cluster nor share the ids of its deliveries.
    /// An event on an edge's subject (a source whose transform did not
    /// apply) is never routed; on a subject of no event's form, which only
    /// the hub's own publishers can store, the event keeps its cluster.
    ///
    /// # Errors
    ///
    /// [`RouteError`] when the payload is not an event or a publish failed.
    pub async fn route(&self, subject: &str, payload: &[u8]) -> Result<Routed, RouteError> {
        let mut event = Event::decode(payload)?;
        let domain = self.nats.args.jetstream_domain.as_deref();
        match names::cluster_of_subject(subject, domain) {
            Some(cluster) => restamp(&mut event, cluster),
            None if subject.starts_with(names::EDGE_SUBJECTS_PREFIX) => {
                return Err(RouteError::Unstamped(subject.to_owned()));
            }
            None => {}
        }
        let group = metadata::api_group(
            event
                .involved_object
                .as_ref()
                .map_or("", |o| o.api_version.as_str()),
        )
        .to_owned();
        let span = tracing::Span::current();
        let object = event.involved_object.clone().unwrap_or_default();
        span.record("messaging.message.id", event.id.as_str());
        span.record("event.id", event.id.as_str());
        span.record("herald.cluster", event.cluster.as_str());
        span.record("flux.object.kind", object.kind.as_str());
        span.record("flux.object.namespace", object.namespace.as_str());
        span.record("flux.object.name", object.name.as_str());
        if let Some(revision) = event.metadata.get(&format!("{group}/revision")) {
            span.record("flux.revision", revision.as_str());
        }
        // Stage B: the token served dedupe only; it never leaves the router.
        metadata::exclude_internal(&mut event.metadata, &group);
        // A member cluster's events wait until its own catalog is read.
        let member = self.catalog.member(&event.cluster);
        if let Some(member) = &member
            && !member.is_loaded()
        {
            return Err(RouteError::MemberNotRead(event.cluster.clone()));
        }
        // matchLabels: the object's labels, where a catalog's source sees
        // the cluster the event came from (its member catalog, or the hub's).
        let labels = member
            .iter()
            .chain(std::iter::once(&self.catalog))
            .find_map(|c| {
                c.labels(
                    &event.cluster,
                    &object.kind,
                    &object.namespace,
                    &object.name,
                )
            });
        if let Some(labels) = labels {
            event.labels = labels;
            event.labels_known = true;
        }
        let planned = self.plan(&event, &group, member.as_ref());
        let mut outgoing = self.flood_control(planned, &event).await?;
        let notes: Vec<Note> = outgoing
            .iter_mut()
            .flat_map(|o| std::mem::take(&mut o.notes))
            .collect();
        let count = outgoing.len();
        span.record("herald.deliveries", count);
        self.publish_all(outgoing, &event.cluster).await?;
        self.note_all(notes).await;
        Ok(Routed {
            event_id: event.id,
            cluster: event.cluster,
            deliveries: count,
        })
    }

    fn skip(&self, reason: &str, cluster: &str) {
        self.metrics.skipped(reason, cluster);
    }

    /// Decides every message this event turns into.
    fn plan(&self, event: &Event, group: &str, member: Option<&Catalog>) -> Vec<Outgoing> {
        // The hub's Alerts, then the member cluster's own (which hear only
        // its events), each with the snapshot its Provider is read from.
        let mut scopes = vec![(String::new(), self.catalog.snapshot())];
        if let Some(member) = member {
            scopes.push((event.cluster.clone(), member.snapshot()));
        }
        let matched: Vec<(&str, &Arc<Snapshot>, Arc<CompiledAlert>)> = scopes
            .iter()
            .flat_map(|(scope, snapshot)| {
                snapshot
                    .alerts
                    .matching(event)
                    .into_iter()
                    .map(move |alert| (scope.as_str(), snapshot, alert))
            })
            .collect();
        tracing::Span::current().record("herald.alerts.matched", matched.len());
        let object = event.involved_object.clone().unwrap_or_default();
        let max_payload = self.nats.max_payload();
        let mut outgoing = Vec::with_capacity(matched.len());
        let fleet = self
            .fleet
            .as_ref()
            .map(herald_runtime::clusters::Fleet::current);
        let labels = fleet.as_ref().and_then(|f| f.labels(&event.cluster));
        for (scope, snapshot, compiled) in matched {
            // Alerts that select clusters (herald.dev/clusters, cluster-selector).
            if !compiled.clusters.covers(&event.cluster, labels) {
                self.skip("cluster_not_selected", &event.cluster);
                continue;
            }
            self.metrics.alerts_matched.inc();
            let alert = &compiled.alert;
            // A member's Alert is another object than a hub's with its uid.
            let id = if scope.is_empty() {
                delivery_id(&event.id, &compiled.uid)
            } else {
                delivery_id(&event.id, &format!("{scope}/{}", compiled.uid))
            };
            let alert_key = ObjectKey {
                namespace: alert.meta.namespace.clone(),
                name: alert.meta.name.clone(),
                uid: compiled.uid.clone(),
            };
            let provider_name = &alert.spec.provider_ref.name;
            let Some(provider) = snapshot.provider(&alert.meta.namespace, provider_name) else {
                tracing::warn!(alert = %alert.key(), provider = %provider_name, event.id = %event.id, "Alert names a Provider that does not exist; dead-lettered.");
                outgoing.push(missing_provider(
                    event,
                    id,
                    alert_key,
                    provider_name,
                    scope,
                    max_payload,
                ));
                continue;
            };
            let provider_type = provider.spec.type_.clone();
            // The operator named a fleet administration Alert's namespace:
            // what its "*" sources hear is not cross-namespace for the flag.
            let deny_cross_namespace =
                self.no_cross_namespace_refs && !compiled.all_namespaces_selects(event);
            match gate(
                event,
                &alert.meta.namespace,
                deny_cross_namespace,
                &provider_type,
                provider.spec.suspend,
                group,
            ) {
                Gate::Send => {}
                Gate::CrossNamespaceDenied => {
                    tracing::warn!(
                        alert = %alert.key(),
                        "discarding event, access denied to cross-namespace sources: alert '{}' can't process event from '{}/{}/{}', cross-namespace references have been blocked",
                        alert.key(), object.kind, object.namespace, object.name
                    );
                    self.skip("cross_namespace_denied", &event.cluster);
                    continue;
                }
                other => {
                    tracing::debug!(alert = %alert.key(), gate = ?other, "Delivery not sent, as Flux would not.");
                    let reason = match other {
                        Gate::ProviderSuspended => "provider_suspended",
                        Gate::CommitStatusUpdateOnly => "commit_status_update",
                        Gate::MissingCommit => "missing_commit",
                        _ => "missing_change_request",
                    };
                    self.skip(reason, &event.cluster);
                    continue;
                }
            }
            let merged = metadata::merge_for_alert(
                &event.metadata,
                group,
                &alert.spec.event_metadata,
                &alert.spec.summary,
                (self.cluster_metadata && !event.cluster.is_empty())
                    .then_some(event.cluster.as_str()),
            );
            if !merged.conflicts.is_empty() {
                tracing::info!(
                    alert = %alert.key(),
                    conflicting_keys = ?merged.conflicts.keys().collect::<Vec<_>>(),
                    "warning: metadata key conflicts detected (please refer to the Alert API docs and Flux RFC 0008 for more information)"
                );
            }
            let mut outbound = event.clone();
            outbound.metadata = merged.metadata;
            let delivery = Delivery {
                id: id.clone(),
                event: Some(outbound),
                alert: Some(alert_key),
                provider: Some(ObjectKey {
                    namespace: provider.meta.namespace.clone(),
                    name: provider.meta.name.clone(),
                    uid: provider.uid(),
                }),
                provider_type: provider_type.clone(),
                routed_at: Some(to_time(jiff::Timestamp::now())),
                catalog: scope.to_owned(),
            };
            let size = delivery.encoded_len();
            if size + HEADER_ROOM > max_payload {
                self.metrics
                    .oversize
                    .get_or_create(&ReasonLabels {
                        reason: "router".to_owned(),
                    })
                    .inc();
                let reason = format!(
                    "the delivery takes {size} bytes with its routing data (the Alert's \
                     eventMetadata and summary), more than the NATS server carries (max_payload \
                     {max_payload} bytes, less {HEADER_ROOM} for headers); it can never be sent"
                );
                tracing::warn!(alert = %alert.key(), event.id = %event.id, size, max_payload, "Delivery larger than NATS carries; dead-lettered.");
                let subject = names::delivery_subject(
                    &provider_type,
                    &provider.meta.namespace,
                    &provider.meta.name,
                );
                outgoing.push(dead_letter(
                    Dead {
                        alert: alert.key(),
                        provider: provider.key(),
                        dead_subject: names::dead_subject_for(&subject),
                        subject,
                        provider_type,
                        reason,
                        cause: "oversize",
                    },
                    delivery,
                    max_payload,
                ));
                continue;
            }
            let flood = compiled.flood.is_on().then(|| {
                Box::new(FloodPlan {
                    compiled: Arc::clone(&compiled),
                    alert_id: if scope.is_empty() {
                        compiled.uid.clone()
                    } else {
                        format!("{scope}/{}", compiled.uid)
                    },
                    provider: provider.key(),
                    delivery: delivery.clone(),
                })
            });
            outgoing.push(Outgoing {
                flood,
                grouped: false,
                notes: Vec::new(),
                alert: alert.key(),
                provider: provider.key(),
                subject: names::delivery_subject(
                    &provider_type,
                    &provider.meta.namespace,
                    &provider.meta.name,
                ),
                msg_id: id,
                event_id: event.id.clone(),
                payload: Bytes::from(delivery.encode_to_vec()),
                provider_type,
                dead_reason: None,
                dead_cause: "",
                scope: scope.to_owned(),
            });
        }
        // The owners hear of dead letters made here (Kubernetes Events,
        // where the catalog has a cluster).
        for dead in outgoing.iter().filter(|o| o.dead_reason.is_some()) {
            let reason = dead.dead_reason.as_deref().unwrap_or_default();
            let Some(catalog) = self.catalog.scope(&dead.scope) else {
                continue;
            };
            for (kind, key) in [("Alert", &dead.alert), ("Provider", &dead.provider)] {
                if let Some((namespace, name)) = key.split_once('/') {
                    catalog.report_dead_letter(kind, namespace, name, reason);
                }
            }
        }
        outgoing
    }

    /// Publishes every message, then awaits every ack.
    async fn publish_all(&self, outgoing: Vec<Outgoing>, cluster: &str) -> Result<(), RouteError> {
        let mut acks = Vec::with_capacity(outgoing.len());
        let mut types = Vec::with_capacity(outgoing.len());
        for out in outgoing {
            let (template, stream) = if out.dead_reason.is_some() {
                ("herald.dead.{type}.{namespace}.{provider}", "dead")
            } else if out.grouped {
                ("herald.groups.{group}", "groups")
            } else {
                (
                    "herald.deliveries.{type}.{namespace}.{provider}",
                    "deliveries",
                )
            };
            let span = tracing::info_span!(
                "router.publish",
                otel.name = %format!("publish herald.{stream}"),
                otel.kind = "producer",
                otel.status_code = tracing::field::Empty,
                messaging.system = "nats",
                messaging.operation.name = "publish",
                messaging.operation.type = "send",
                messaging.destination.name = %out.subject,
                messaging.destination.template = template,
                messaging.message.id = %out.msg_id,
                herald.alert = %out.alert,
                herald.provider.type = %out.provider_type,
                herald.provider.name = %out.provider,
                herald.outcome = if out.dead_reason.is_some() { "dead" } else if out.grouped { "grouped" } else { "queued" },
            );
            let mut headers = HeaderMap::new();
            headers.insert(names::MSG_ID_HEADER, out.msg_id.as_str());
            headers.insert(names::EVENT_ID_HEADER, out.event_id.as_str());
            if let Some(reason) = &out.dead_reason {
                headers.insert(names::DEAD_REASON_HEADER, reason.as_str());
            }
            herald_runtime::propagation::inject_nats(&span, &mut headers);
            let ack = self
                .nats
                .jetstream
                .publish_with_headers(out.subject, headers, out.payload)
                .instrument(span.clone())
                .await
                .map_err(|e| RouteError::publish(&e))?;
            acks.push(async move {
                let acked = ack.await;
                if acked.is_err() {
                    span.record("otel.status_code", "error");
                }
                drop(span);
                acked
            });
            types.push((out.provider_type, out.dead_cause, out.grouped));
        }
        try_join_all(acks)
            .await
            .map_err(|e| RouteError::publish(&e))?;
        for (provider_type, dead_cause, grouped) in types {
            if grouped {
                self.metrics.events_grouped.inc();
            } else if dead_cause.is_empty() {
                self.metrics.published(&provider_type, cluster);
            } else {
                self.metrics.router_dead_letter(dead_cause);
            }
        }
        Ok(())
    }
}

/// Where a dead letter made by the router goes.
struct Dead {
    /// `namespace/name` of the Alert.
    alert: String,
    /// `namespace/name` of the Provider.
    provider: String,
    /// The delivery subject it would have travelled on (empty when none).
    subject: String,
    dead_subject: String,
    provider_type: String,
    /// Why, as counted (`herald_router_dead_letters_total`).
    cause: &'static str,
    reason: String,
}

/// A dead letter for a matched Alert whose Provider does not exist.
fn missing_provider(
    event: &Event,
    id: String,
    alert: ObjectKey,
    provider_name: &str,
    scope: &str,
    max_payload: usize,
) -> Outgoing {
    let namespace = alert.namespace.clone();
    let reason = format!(
        "Alert {}/{} names Provider {namespace}/{provider_name}, which does not exist",
        alert.namespace, alert.name
    );
    let dead = Dead {
        alert: format!("{}/{}", alert.namespace, alert.name),
        provider: format!("{namespace}/{provider_name}"),
        subject: String::new(),
        dead_subject: names::dead_subject("unknown", &namespace, provider_name),
        provider_type: "unknown".to_owned(),
        reason,
        cause: "provider_missing",
    };
    let delivery = Delivery {
        id,
        event: Some(event.clone()),
        alert: Some(alert),
        provider: Some(ObjectKey {
            namespace,
            name: provider_name.to_owned(),
            uid: String::new(),
        }),
        provider_type: String::new(),
        routed_at: Some(to_time(jiff::Timestamp::now())),
        catalog: scope.to_owned(),
    };
    dead_letter(dead, delivery, max_payload)
}

/// A dead letter the router stores instead of a delivery, shrunk to fit one
/// NATS message when it must be.
fn dead_letter(dead: Dead, delivery: Delivery, max_payload: usize) -> Outgoing {
    let id = delivery.id.clone();
    let scope = delivery.catalog.clone();
    let event_id = delivery
        .event
        .as_ref()
        .map_or_else(String::new, |e| e.id.clone());
    let mut letter = DeadLetter {
        delivery: Some(delivery),
        reason: dead.reason,
        attempts: 0,
        last_status: 0,
        last_response: String::new(),
        dead_at: Some(to_time(jiff::Timestamp::now())),
        subject: dead.subject,
        raw_payload: Vec::new(),
        traceparent: herald_runtime::propagation::traceparent(&tracing::Span::current())
            .unwrap_or_default(),
    };
    if let Fitted::TooLarge = fit(&mut letter, max_payload.saturating_sub(HEADER_ROOM)) {
        tracing::error!(delivery.id = %id, max_payload, "A dead letter cannot be made small enough for NATS.");
    }
    Outgoing {
        flood: None,
        grouped: false,
        notes: Vec::new(),
        alert: dead.alert,
        provider: dead.provider,
        subject: dead.dead_subject,
        msg_id: format!("dead:{id}"),
        event_id,
        dead_reason: Some(letter.reason.clone()),
        dead_cause: dead.cause,
        payload: Bytes::from(letter.encode_to_vec()),
        provider_type: dead.provider_type,
        scope,
    }
}

#[cfg(test)]
mod restamp_tests {
    use super::*;

    #[test]
    fn the_subject_names_the_cluster() {
        let mut event = Event {
            id: "abc".to_owned(),
            cluster: "shop-eu".to_owned(),
            ..Event::default()
        };
        restamp(&mut event, "shop-eu".to_owned());
        assert_eq!(
            (event.id.as_str(), event.cluster.as_str()),
            ("abc", "shop-eu")
        );
        restamp(&mut event, "shop-us".to_owned());
        assert_eq!(event.cluster, "shop-us");
        assert_ne!(event.id, "abc");
        assert_eq!(event.id.len(), 32);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn delivery_ids_are_stable_per_event_and_alert() {
        let a = super::delivery_id("e1", "alert-uid");
        assert_eq!(a, super::delivery_id("e1", "alert-uid"));
        assert_ne!(a, super::delivery_id("e2", "alert-uid"));
        assert_ne!(a, super::delivery_id("e1", "other-uid"));
        assert_eq!(a.len(), 32);
    }
}
