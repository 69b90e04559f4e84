//! The delivery loop: pull deliveries, send each through its provider, and ack,
//! nak with a delay, or dead-letter it. Many deliveries are in flight at once.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, AckKind};
use bytes::Bytes;
use herald_flux::convert::{from_proto, from_time, to_time};
use herald_proto::fit::{Fitted, fit};
use herald_proto::{DeadLetter, Delivery, names};
use herald_runtime::consume::{ConsumeSettings, Done, ack_confirmed};
use herald_runtime::metrics::Sent;
use herald_runtime::nats::HEADER_ROOM;
use herald_runtime::{Catalog, Metrics, Nats};
use prost::Message as _;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::config::resolve;
use crate::manifest;
use crate::ordering::{self, Order, StatusOrder};
use crate::outcome::Outcome;
use crate::pacing::{self, Pacer, Waited};
use crate::policy::{Policies, RetryPolicy};
use crate::providers::{self, Clients, Input, Plan, ThreadScope};
use crate::records::Noted;
use crate::render::{self, Owner, Rendered};
use herald_flux::template::AlertRef;

/// When a delivery is tried again after Herald's own state in NATS could
/// not be read or written (a node lost, a leader being elected): soon, not
/// after the destination's backoff, since the destination was not at fault.
const UNAVAILABLE_RETRY: Duration = Duration::from_secs(1);

/// Retry, pacing and concurrency settings, resolved.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Deliveries in flight in this process.
    pub concurrency: usize,
    /// Retry policies and paces per provider type.
    pub policies: Policies,
    /// The consumer's ack wait (progress acks keep every delivery in hand
    /// alive, however long it takes).
    pub ack_wait: Duration,
    /// The delay before a dead letter that could not be stored is tried again.
    pub requeue_delay: Duration,
}

/// Where one attempt ended.
enum Step {
    /// The destination accepted it (its status).
    Delivered(u16),
    /// Not sent on purpose (a suspended Provider).
    Skipped,
    /// Not sent yet: the destination's turn comes after this wait.
    Paced(Duration),
    /// Not sent: a newer event's commit status was already applied.
    Superseded,
    /// Sent, or not sendable, and it failed.
    Failed(Outcome),
}

/// Why a delivery ends on HERALD_DEAD.
struct Death {
    reason: String,
    status: u16,
    body: String,
}

/// Sends deliveries.
#[derive(Clone, Debug)]
pub struct Worker {
    pub(crate) nats: Nats,
    pub(crate) catalog: Catalog,
    pub(crate) metrics: Metrics,
    pub(crate) clients: Clients,
    pub(crate) pacer: Pacer,
    pub(crate) order: StatusOrder,
    pub(crate) settings: WorkerSettings,
    pub(crate) records: crate::records::Records,
}

// === impl Worker ===

impl Worker {
    /// Consumes until `cancel` fires, then finishes the deliveries in hand.
    pub async fn run(
        self,
        consumer: jetstream::consumer::Consumer<jetstream::consumer::pull::Config>,
        cancel: CancellationToken,
    ) {
        herald_runtime::consume::consume(
            &self.nats.jetstream,
            &consumer,
            ConsumeSettings {
                concurrency: self.settings.concurrency,
                ack_wait: self.settings.ack_wait,
            },
            &cancel,
            "deliveries",
            |message| self.handle(message),
        )
        .await;
        tracing::info!("Sender stopped pulling deliveries.");
    }

    /// Handles one delivery message to the end: acked, nak'ed or dead-lettered,
    /// in a span that continues the trace the router started; every attempt
    /// is its own span.
    pub async fn handle(&self, message: jetstream::Message) -> Done {
        let span = tracing::info_span!(
            "sender.process",
            otel.name = "process herald.deliveries",
            otel.kind = "consumer",
            otel.status_code = tracing::field::Empty,
            messaging.system = "nats",
            messaging.operation.name = "process",
            messaging.operation.type = "process",
            messaging.destination.name = %message.subject,
            messaging.destination.template = "herald.deliveries.{type}.{namespace}.{provider}",
            messaging.consumer.group.name = names::SENDER_CONSUMER,
            messaging.message.id = tracing::field::Empty,
            trace_id = tracing::field::Empty,
            event.id = tracing::field::Empty,
            herald.cluster = tracing::field::Empty,
            flux.object.kind = tracing::field::Empty,
            flux.object.namespace = tracing::field::Empty,
            flux.object.name = tracing::field::Empty,
            herald.alert = tracing::field::Empty,
            herald.provider.type = tracing::field::Empty,
            herald.provider.name = tracing::field::Empty,
            herald.attempt = tracing::field::Empty,
            herald.outcome = tracing::field::Empty,
            error.type = tracing::field::Empty,
            herald.error = tracing::field::Empty,
        );
        herald_runtime::propagation::set_parent(
            &span,
            herald_runtime::propagation::extract_nats(message.headers.as_ref()),
        );
        herald_runtime::propagation::record_trace_id(&span);
        self.handle_in(message).instrument(span).await
    }

    async fn handle_in(&self, message: jetstream::Message) -> Done {
        let span = tracing::Span::current();
        let (delivered, sequence) = message.info().map_or((1, 0), |info| {
            (info.delivered.max(1) as u64, info.stream_sequence)
        });
        let delivery = match Delivery::decode(message.payload.clone()) {
            Ok(delivery) => delivery,
            Err(error) => {
                let death = Death {
                    reason: format!("cannot decode the delivery: {error}"),
                    status: 0,
                    body: String::new(),
                };
                return self.bury(&message, None, "unknown", delivered, death).await;
            }
        };
        let cluster = delivery
            .event
            .as_ref()
            .map_or_else(String::new, |e| e.cluster.clone());
        let provider_type = if delivery.provider_type.is_empty() {
            // Queued for a Provider that did not exist yet (a replay): its type now.
            let key = delivery.provider.clone().unwrap_or_default();
            self.catalog
                .scope(&delivery.catalog)
                .and_then(|c| c.snapshot().provider(&key.namespace, &key.name))
                .map_or_else(|| "unknown".to_owned(), |p| p.spec.type_.clone())
        } else {
            delivery.provider_type.clone()
        };
        let policy = self.settings.policies.retry(&provider_type);
        // Redeliveries that only kept a destination's pace are not attempts.
        let paced = if delivered > 1 {
            self.pacer.paced_times(sequence).await.unwrap_or(0)
        } else {
            0
        };
        let attempts = delivered.saturating_sub(paced).max(1);
        record_delivery(&span, &delivery, attempts);
        let now = jiff::Timestamp::now();
        // Receipt to delivery, for the latency metric.
        let age = delivery
            .event
            .as_ref()
            .and_then(|e| e.received_at.as_ref())
            .and_then(from_time)
            .map(|received| now.duration_since(received));
        // The maximum age counts from when the delivery was queued (or replayed).
        let queued_for = delivery
            .routed_at
            .as_ref()
            .and_then(from_time)
            .map(|routed| now.duration_since(routed))
            .or(age);
        let too_old =
            queued_for.is_some_and(|age| age.as_secs_f64() > policy.max_age.as_secs_f64());
        let step = if too_old {
            Step::Failed(Outcome::Dead {
                reason: format!(
                    "older than the maximum age of {:?} after {} attempts",
                    policy.max_age,
                    attempts - 1
                ),
                status: 0,
                body: String::new(),
            })
        } else {
            self.attempt(&delivery, policy, attempts).await
        };
        if paced > 0 && !matches!(step, Step::Paced(_)) {
            self.pacer.forget(sequence).await.ok();
        }
        let target = delivery.provider.clone().unwrap_or_default();
        let sent = Sent {
            provider_type: &provider_type,
            namespace: &target.namespace,
            name: &target.name,
            cluster: &cluster,
        };
        match step {
            Step::Superseded => {
                span.record("herald.outcome", "superseded");
                self.metrics.delivery(&sent, "superseded");
                tracing::info!(delivery.id = %delivery.id, "A newer event's commit status is applied; this older one is not written.");
                if let Err(error) = ack_confirmed(&message, AckKind::Ack).await {
                    tracing::warn!(error = %error, "Cannot ack a superseded message; it may be seen again.");
                }
                Done::Finished
            }
            Step::Skipped => {
                span.record("herald.outcome", "skipped");
                if let Err(error) = ack_confirmed(&message, AckKind::Ack).await {
                    tracing::warn!(error = %error, "Cannot ack a skipped message; it may be seen again.");
                }
                Done::Finished
            }
            Step::Paced(delay) => {
                span.record("herald.outcome", "paced");
                self.metrics.pacing_wait(&provider_type, "requeued", delay);
                if let Err(error) = self.pacer.count_paced(sequence, paced + 1).await {
                    tracing::warn!(error = %error, "Cannot count a paced delivery; it counts as an attempt.");
                }
                tracing::debug!(delivery.id = %delivery.id, wait = ?delay, "Destination busy; delivery put back.");
                if let Err(error) = message.ack_with(AckKind::Nak(Some(delay))).await {
                    tracing::warn!(error = %error, "Cannot nak a message; it is redelivered after the ack wait.");
                }
                Done::PutBack
            }
            Step::Delivered(status) => {
                span.record("herald.outcome", "delivered");
                self.metrics.attempt(&sent, "delivered");
                self.metrics.delivery(&sent, "delivered");
                if let Some(age) = age {
                    self.metrics
                        .latency(&provider_type, &cluster, age.as_secs_f64().max(0.0));
                }
                tracing::debug!(delivery.id = %delivery.id, status, "Delivered.");
                self.note(&delivery, &Noted::Delivered);
                if let Err(error) = ack_confirmed(&message, AckKind::Ack).await {
                    tracing::warn!(error = %error, delivery.id = %delivery.id, "Cannot ack a delivered message; it may be sent again.");
                }
                Done::Finished
            }
            Step::Failed(Outcome::Retry {
                reason,
                status,
                body,
                ..
            }) if attempts >= policy.max_attempts => {
                let death = Death {
                    reason: format!("gave up after {attempts} attempts: {reason}"),
                    status,
                    body,
                };
                self.note(
                    &delivery,
                    &Noted::Dead {
                        reason: death.reason.clone(),
                        status,
                    },
                );
                self.bury(&message, Some(delivery), &provider_type, attempts, death)
                    .await
            }
            Step::Failed(Outcome::Retry {
                reason,
                after,
                status,
                ..
            }) => {
                self.note(
                    &delivery,
                    &Noted::Retried {
                        reason: reason.clone(),
                        status,
                    },
                );
                span.record("herald.outcome", "retry");
                span.record("otel.status_code", "error");
                span.record("error.type", "retry");
                span.record("herald.error", reason.as_str());
                self.metrics.attempt(&sent, "retry");
                let backoff = crate::outcome::backoff(attempts, policy.base, policy.max);
                // The destination's Retry-After wins over our own backoff.
                let delay = after.unwrap_or(backoff);
                tracing::info!(
                    delivery.id = %delivery.id,
                    provider = %provider_key(&delivery),
                    attempt = attempts,
                    retry_in = ?delay,
                    reason = %reason,
                    "Delivery failed; will retry."
                );
                if let Err(error) = message.ack_with(AckKind::Nak(Some(delay))).await {
                    tracing::warn!(error = %error, "Cannot nak a message; it is redelivered after the ack wait.");
                }
                Done::PutBack
            }
            Step::Failed(Outcome::Dead {
                reason,
                status,
                body,
            }) => {
                self.note(
                    &delivery,
                    &Noted::Dead {
                        reason: reason.clone(),
                        status,
                    },
                );
                let death = Death {
                    reason,
                    status,
                    body,
                };
                self.bury(&message, Some(delivery), &provider_type, attempts, death)
                    .await
            }
            Step::Failed(Outcome::Delivered { status }) => {
                unreachable!("a send that delivered ({status}) is Step::Delivered")
            }
            Step::Failed(Outcome::Later { .. }) => {
                unreachable!("a send put back is Step::Paced")
            }
        }
    }

    /// Notes an outcome for the delivery's Provider and Alert.
    fn note(&self, delivery: &Delivery, outcome: &Noted) {
        if let Some(provider) = &delivery.provider {
            self.records
                .note("Provider", &provider.namespace, &provider.name, outcome);
        }
        if let Some(alert) = &delivery.alert {
            self.records
                .note("Alert", &alert.namespace, &alert.name, outcome);
        }
        // The owners hear of dead letters (Kubernetes Events, where the
        // catalog has a cluster).
        if let Noted::Dead { reason, .. } = outcome
            && let Some(catalog) = self.catalog.scope(&delivery.catalog)
        {
            if let Some(provider) = &delivery.provider {
                catalog.report_dead_letter("Provider", &provider.namespace, &provider.name, reason);
            }
            if let Some(alert) = &delivery.alert {
                catalog.report_dead_letter("Alert", &alert.namespace, &alert.name, reason);
            }
        }
    }

    /// Notes what the delivery's templates did: a render on the records of
    /// the Alert (and of the Provider whose template it was), a failure
    /// there too, in the log and in `herald_template_failures_total`. The
    /// delivery goes on with Flux's message either way.
    fn note_rendering(&self, delivery: &Delivery, provider_type: &str, rendered: &Rendered) {
        let alert = delivery.alert.clone().unwrap_or_default();
        let provider = delivery.provider.clone().unwrap_or_default();
        let note = |owner: Owner, outcome: &Noted| {
            self.records
                .note("Alert", &alert.namespace, &alert.name, outcome);
            if owner == Owner::Provider {
                self.records
                    .note("Provider", &provider.namespace, &provider.name, outcome);
            }
        };
        for (owner, _) in &rendered.rendered {
            note(*owner, &Noted::Rendered);
        }
        for failure in &rendered.failed {
            self.metrics
                .template_failure(provider_type, failure.annotation);
            let (namespace, name) = match failure.owner {
                Owner::Alert => (&alert.namespace, &alert.name),
                Owner::Provider => (&provider.namespace, &provider.name),
            };
            tracing::warn!(
                delivery.id = %delivery.id,
                object = %format!("{} {namespace}/{name}", failure.owner.kind()),
                annotation = %format!("herald.dev/{}", failure.annotation),
                error = %failure.reason,
                "Template cannot render this event; sending Flux's message."
            );
            note(
                failure.owner,
                &Noted::TemplateFailed {
                    reason: format!("herald.dev/{}: {}", failure.annotation, failure.reason),
                },
            );
        }
    }

    /// One attempt: resolve the Provider, wait for the destination's turn,
    /// send, and tell the other replicas when the destination asks to back off.
    async fn attempt(&self, delivery: &Delivery, policy: RetryPolicy, attempts: u64) -> Step {
        let dead = |reason: String| {
            Step::Failed(Outcome::Dead {
                reason,
                status: 0,
                body: String::new(),
            })
        };
        let key = delivery.provider.clone().unwrap_or_default();
        // The hub's catalog, or the member cluster's the Alert came from.
        let Some(catalog) = self.catalog.scope(&delivery.catalog) else {
            return dead(format!(
                "the Provider {}/{} was in the catalog of member cluster {}, which is no \
                 longer in the clusters file",
                key.namespace, key.name, delivery.catalog
            ));
        };
        if !catalog.is_loaded() {
            return Step::Failed(Outcome::Retry {
                reason: format!(
                    "the catalog of member cluster {} is not read yet",
                    delivery.catalog
                ),
                status: 0,
                after: Some(std::time::Duration::from_secs(5)),
                body: String::new(),
            });
        }
        let snapshot = catalog.snapshot();
        let Some(provider) = snapshot.provider(&key.namespace, &key.name) else {
            return dead(format!(
                "Provider {}/{} does not exist",
                key.namespace, key.name
            ));
        };
        if provider.spec.suspend {
            tracing::info!(provider = %provider.key(), delivery.id = %delivery.id, "Provider is suspended; delivery skipped.");
            let cluster = delivery.event.as_ref().map_or("", |e| e.cluster.as_str());
            self.metrics.skipped("provider_suspended", cluster);
            return Step::Skipped;
        }
        let resolved = match resolve(&provider, &snapshot) {
            Ok(resolved) => resolved,
            Err(reason) => {
                return dead(format!(
                    "Provider {} cannot be used: {reason}",
                    provider.key()
                ));
            }
        };
        let mut event = match &delivery.event {
            Some(event) => from_proto(event),
            None => from_proto(&herald_proto::Event::default()),
        };
        let alert = delivery.alert.clone().unwrap_or_default();
        let compiled = snapshot.alert(&alert.namespace, &alert.name);
        let rendered = render::apply(
            &mut event,
            compiled.map(|a| &a.templates),
            snapshot
                .provider_templates(&key.namespace, &key.name)
                .map(AsRef::as_ref),
            AlertRef {
                namespace: &alert.namespace,
                name: &alert.name,
            },
            delivery.event.as_ref().map_or("", |e| e.cluster.as_str()),
            provider.provider_type(),
        );
        self.note_rendering(delivery, &resolved.provider_type, &rendered);
        let alert_identity = providers::AlertIdentity {
            uid: compiled.as_ref().map_or_else(
                || {
                    herald_flux::objects::ObjectMeta {
                        namespace: alert.namespace.clone(),
                        name: alert.name.clone(),
                        ..Default::default()
                    }
                    .uid_or_derived("Alert")
                },
                |a| a.uid.clone(),
            ),
            namespace: alert.namespace,
            name: alert.name,
        };
        let identifier = || {
            let alert = compiled
                .as_ref()
                .map(|a| manifest::alert(&a.alert))
                .unwrap_or(serde_json::Value::Null);
            herald_flux::git::commit_status_identifier(
                &provider.spec.commit_status_expr,
                &event,
                &manifest::provider(&provider),
                &alert,
            )
            .map_err(|e| e.to_string())
        };
        let no_annotations = std::collections::BTreeMap::new();
        let threaded = herald_flux::threads::slack_threaded(
            compiled
                .as_ref()
                .map_or(&no_annotations, |a| &a.alert.meta.annotations),
            &provider.meta.annotations,
        );
        let thread = threaded.then(|| ThreadScope {
            cluster: delivery.event.as_ref().map_or("", |e| e.cluster.as_str()),
            delivery_id: &delivery.id,
            event_unix_nanos: event_time(delivery),
        });
        let planned = providers::plan(&Input {
            event: &event,
            alert: &alert_identity,
            resolved: &resolved,
            identifier: &identifier,
            thread,
        });
        let prepared = match planned {
            Ok(prepared) => prepared,
            Err(error) => return dead(error.to_string()),
        };
        drop(snapshot);
        if let Plan::Skip(why) = prepared {
            tracing::debug!(delivery.id = %delivery.id, why, "Nothing to send for this event.");
            return Step::Skipped;
        }
        let destination = pacing::destination(&resolved);
        let pace = self.settings.policies.pace(&resolved.provider_type);
        // An exchange that paces each of its calls takes its own turns.
        let paces_itself = matches!(&prepared, Plan::Exchange(e) if e.paces_itself());
        if !paces_itself {
            match self.pacer.wait_turn(&destination, pace).await {
                Ok(Waited::PutBack(wait)) => return Step::Paced(wait),
                Ok(Waited::Go(waited)) => {
                    if !waited.is_zero() {
                        self.metrics
                            .pacing_wait(&resolved.provider_type, "waited", waited);
                    }
                }
                Err(error) => {
                    return Step::Failed(Outcome::Retry {
                        reason: format!("pacing state unavailable: {error}"),
                        status: 0,
                        after: Some(UNAVAILABLE_RETRY),
                        body: String::new(),
                    });
                }
            }
        }
        let started = tokio::time::Instant::now();
        let outcome = match prepared {
            Plan::Request(request) => self.clients.http.send(request, &resolved).await,
            Plan::CommitStatus(plan) => {
                let key = ordering::status_key(&plan.repository, &plan.sha, &plan.identifier);
                let event_id = delivery.event.as_ref().map_or("", |e| e.id.as_str());
                match self.order.claim(&key, event_time(delivery), event_id).await {
                    Ok(Order::Superseded) => return Step::Superseded,
                    Ok(Order::Newest) => {}
                    Err(error) => {
                        return Step::Failed(Outcome::Retry {
                            reason: format!("commit status record unavailable: {error}"),
                            status: 0,
                            after: Some(UNAVAILABLE_RETRY),
                            body: String::new(),
                        });
                    }
                }
                plan.write.apply(&self.clients, &resolved).await
            }
            Plan::Exchange(exchange) => exchange.run(&self.clients, &resolved).await,
            Plan::Skip(_) => unreachable!("skips return early"),
        };
        self.metrics
            .provider_request_duration
            .get_or_create(&herald_runtime::metrics::ProviderLabels {
                provider_type: resolved.provider_type.clone(),
            })
            .observe(started.elapsed().as_secs_f64());
        match outcome {
            Outcome::Delivered { status } => Step::Delivered(status),
            Outcome::Later { reason, after } => {
                tracing::debug!(delivery.id = %delivery.id, reason = %reason, wait = ?after, "Delivery waits; put back.");
                Step::Paced(after)
            }
            Outcome::Retry { status, after, .. }
                if status == 429 || (status == 503 && after.is_some()) =>
            {
                // Nobody sends to this destination before it said so.
                let wait = after
                    .unwrap_or_else(|| crate::outcome::backoff(attempts, policy.base, policy.max));
                if let Err(error) = self.pacer.block(&destination, wait).await {
                    tracing::warn!(error = %error, "Cannot share a destination's Retry-After.");
                }
                Step::Failed(outcome)
            }
            other => Step::Failed(other),
        }
    }

    /// Stores a dead letter, then removes the delivery from the work queue.
    /// When HERALD_DEAD cannot take it, the delivery stays and is retried.
    async fn bury(
        &self,
        message: &jetstream::Message,
        delivery: Option<Delivery>,
        provider_type: &str,
        attempts: u64,
        death: Death,
    ) -> Done {
        let sequence = message.info().map_or(0, |info| info.stream_sequence);
        let delivery_id = delivery.as_ref().map_or(String::new(), |d| d.id.clone());
        let event_id = delivery
            .as_ref()
            .and_then(|d| d.event.as_ref())
            .map_or(String::new(), |e| e.id.clone());
        let cluster = delivery
            .as_ref()
            .and_then(|d| d.event.as_ref())
            .map_or(String::new(), |e| e.cluster.clone());
        let target = delivery
            .as_ref()
            .and_then(|d| d.provider.clone())
            .unwrap_or_default();
        let span = tracing::Span::current();
        span.record("herald.outcome", "dead");
        span.record("otel.status_code", "error");
        span.record("error.type", "dead");
        span.record("herald.error", death.reason.as_str());
        let mut letter = DeadLetter {
            traceparent: herald_runtime::propagation::traceparent(&span).unwrap_or_default(),
            raw_payload: if delivery.is_none() {
                message.payload.to_vec()
            } else {
                Vec::new()
            },
            delivery,
            reason: death.reason.clone(),
            attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
            last_status: u32::from(death.status),
            last_response: death.body,
            dead_at: Some(to_time(jiff::Timestamp::now())),
            subject: message.subject.to_string(),
        };
        // A letter too large for NATS would never be stored, and the delivery
        // would be sent again and again: keep it shrunk instead.
        let max_payload = self.nats.max_payload();
        match fit(&mut letter, max_payload.saturating_sub(HEADER_ROOM)) {
            Fitted::AsIs => {}
            Fitted::Shrunk(note) => {
                self.metrics
                    .oversize
                    .get_or_create(&herald_runtime::metrics::ReasonLabels {
                        reason: "sender".to_owned(),
                    })
                    .inc();
                tracing::warn!(delivery.id = %delivery_id, max_payload, note = %note, "Dead letter larger than NATS carries; kept shrunk.");
            }
            Fitted::TooLarge => {
                tracing::error!(delivery.id = %delivery_id, max_payload, "A dead letter cannot be made small enough for NATS.");
            }
        }
        let mut headers = HeaderMap::new();
        headers.insert(
            names::MSG_ID_HEADER,
            format!("dead:{delivery_id}:{sequence}").as_str(),
        );
        headers.insert(names::EVENT_ID_HEADER, event_id.as_str());
        headers.insert(names::DEAD_REASON_HEADER, one_line(&death.reason).as_str());
        herald_runtime::propagation::inject_nats(&span, &mut headers);
        let subject = names::dead_subject_for(&message.subject);
        let stored = async {
            self.nats
                .jetstream
                .publish_with_headers(subject, headers, Bytes::from(letter.encode_to_vec()))
                .await?
                .await
                .map_err(async_nats::Error::from)
        }
        .await;
        match stored {
            Ok(_) => {
                let sent = Sent {
                    provider_type,
                    namespace: &target.namespace,
                    name: &target.name,
                    cluster: &cluster,
                };
                self.metrics.attempt(&sent, "dead");
                self.metrics.delivery(&sent, "dead");
                tracing::warn!(
                    delivery.id = %delivery_id,
                    event.id = %event_id,
                    attempts,
                    reason = %death.reason,
                    "Delivery is dead; kept on HERALD_DEAD."
                );
                if let Err(error) = ack_confirmed(message, AckKind::Ack).await {
                    tracing::warn!(error = %error, "Cannot ack a dead-lettered message; it may be dead-lettered twice.");
                }
                Done::Finished
            }
            Err(error) => {
                tracing::error!(error = %error, delivery.id = %delivery_id, "Cannot store a dead letter; the delivery stays queued.");
                if let Err(error) = message
                    .ack_with(AckKind::Nak(Some(self.settings.requeue_delay)))
                    .await
                {
                    tracing::warn!(error = %error, "Cannot nak a message; it is redelivered after the ack wait.");
                }
                Done::PutBack
            }
        }
    }
}

/// The time of a delivery's event (its timestamp, else when ingest got it)
/// in Unix nanoseconds, for ordering events of one object.
fn event_time(delivery: &Delivery) -> i64 {
    delivery
        .event
        .as_ref()
        .and_then(|e| e.timestamp.as_ref().or(e.received_at.as_ref()))
        .map_or(0, herald_proto::Time::unix_nanos_saturating)
}

/// Records what a delivery is about on its span.
fn record_delivery(span: &tracing::Span, delivery: &Delivery, attempts: u64) {
    span.record("messaging.message.id", delivery.id.as_str());
    span.record("herald.attempt", attempts);
    span.record("herald.provider.type", delivery.provider_type.as_str());
    span.record("herald.provider.name", provider_key(delivery).as_str());
    if let Some(alert) = &delivery.alert {
        span.record(
            "herald.alert",
            format!("{}/{}", alert.namespace, alert.name).as_str(),
        );
    }
    if let Some(event) = &delivery.event {
        span.record("event.id", event.id.as_str());
        span.record("herald.cluster", event.cluster.as_str());
        if let Some(object) = &event.involved_object {
            span.record("flux.object.kind", object.kind.as_str());
            span.record("flux.object.namespace", object.namespace.as_str());
            span.record("flux.object.name", object.name.as_str());
        }
    }
}

/// `namespace/name` of the delivery's Provider.
fn provider_key(delivery: &Delivery) -> String {
    let key = delivery.provider.clone().unwrap_or_default();
    format!("{}/{}", key.namespace, key.name)
}

/// A header value on one line, at most 256 bytes.
fn one_line(text: &str) -> String {
    let mut line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if line.len() > 256 {
        let mut end = 256;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        line.truncate(end);
    }
    line
}

#[cfg(test)]
mod tests {
    #[test]
    fn header_lines_are_single_and_short() {
        let line = super::one_line(&format!("a\nb{}", "é".repeat(300)));
        assert!(line.starts_with("a b"));
        assert!(line.len() <= 256);
    }
}
