//! Flood control on the way out of the router (herald.dev/repeat-threshold,
//! herald.dev/recovery, herald.dev/group-wait): which planned deliveries are
//! held back, which become recovery messages, and which gather on their
//! group's subject of HERALD_GROUPS instead of HERALD_DELIVERIES. The state
//! lives in JetStream key-value buckets; the router keeps none itself.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv;
use bytes::Bytes;
use futures::future::{join_all, try_join_all};
use herald_flux::CompiledAlert;
use herald_flux::grouping::{Repeat, recovery_message, writes_commit_status};
use herald_proto::{Delivery, Event, GroupDue, NotifiedError, RepeatCount, names};
use herald_runtime::kv::{Step, update};
use prost::Message as _;
use sha2::{Digest as _, Sha256};

use crate::route::{Outgoing, RouteError, Router};

/// What the router needs to apply an Alert's flood control to a delivery.
pub(crate) struct FloodPlan {
    pub(crate) compiled: Arc<CompiledAlert>,
    /// The Alert as one object across catalogs (`scope/uid`, or `uid`).
    pub(crate) alert_id: String,
    /// `namespace/name` of the Provider.
    pub(crate) provider: String,
    pub(crate) delivery: Delivery,
}

/// State to write once the delivery is stored.
pub(crate) enum Note {
    /// The group's digest is due then, unless an entry says otherwise.
    GroupDue { key: String, due: GroupDue },
    /// The object's error was notified (kept unless one already is).
    Failed { key: String, value: NotifiedError },
    /// The object's recovery was sent: forget its error.
    Recovered { key: String, revision: u64 },
}

/// A key-value key for `text` (keys allow few characters; names do not fit).
fn key(kind: &str, text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    format!("{kind}.{}", hex::encode(&digest[..16]))
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

fn unavailable(error: &dyn std::fmt::Display) -> RouteError {
    RouteError::Publish(format!("flood-control state unavailable: {error}"))
}

// === impl Router ===

impl Router {
    /// Applies each Alert's flood control to the messages planned for an
    /// event, all Alerts at once; drops the ones held back.
    pub(crate) async fn flood_control(
        &self,
        outgoing: Vec<Outgoing>,
        event: &Event,
    ) -> Result<Vec<Outgoing>, RouteError> {
        let kept = try_join_all(outgoing.into_iter().map(|out| self.flood_one(out, event))).await?;
        Ok(kept.into_iter().flatten().collect())
    }

    async fn flood_one(
        &self,
        mut out: Outgoing,
        event: &Event,
    ) -> Result<Option<Outgoing>, RouteError> {
        let Some(plan) = out.flood.take() else {
            return Ok(Some(out));
        };
        let FloodPlan {
            compiled,
            alert_id,
            provider,
            mut delivery,
        } = *plan;
        let flood = &compiled.flood;
        let object = event.involved_object.clone().unwrap_or_default();
        let object_id = format!(
            "{alert_id}\0{}\0{}\0{}\0{}",
            event.cluster, object.kind, object.namespace, object.name
        );
        let now = jiff::Timestamp::now().as_millisecond();
        if writes_commit_status(&out.provider_type) {
            // Commit statuses go out one by one, as Flux sends them (the
            // catalog reports the Alert's flood control as a problem).
            if compiled.hears_severity(event) {
                return Ok(Some(out));
            }
            self.metrics.skipped("not_a_recovery", &event.cluster);
            return Ok(None);
        }
        let mut recovered = false;
        if flood.recovery && event.severity == "info" {
            let key = key("recovery", &object_id);
            let entry = self
                .flood
                .recovery
                .entry(&key)
                .await
                .map_err(|e| unavailable(&e))?
                .filter(|e| e.operation == kv::Operation::Put);
            match entry {
                Some(entry) => {
                    let failed = NotifiedError::decode(entry.value.clone()).unwrap_or_default();
                    let failed_for = Duration::from_millis(
                        u64::try_from(now - failed.failed_unix_millis).unwrap_or(0),
                    );
                    if let Some(outbound) = delivery.event.as_mut() {
                        outbound.message =
                            recovery_message(failed_for, &failed.reason, &outbound.message);
                    }
                    out.payload = Bytes::from(delivery.encode_to_vec());
                    out.notes.push(Note::Recovered {
                        key,
                        revision: entry.revision,
                    });
                    recovered = true;
                    self.metrics.recoveries.inc();
                }
                // Heard only as a possible recovery, and none is due.
                None if !compiled.hears_severity(event) => {
                    self.metrics.skipped("not_a_recovery", &event.cluster);
                    return Ok(None);
                }
                None => {}
            }
        }
        if !recovered && flood.repeat.is_some() {
            let key = key("repeat", &format!("{object_id}\0{}", event.reason));
            let send = update(
                &self.flood.repeats,
                &key,
                8,
                |current: Option<&RepeatCount>| {
                    let seen = current.map_or(&[][..], |c| c.seen_unix_millis.as_slice());
                    match flood.repeat(seen, now) {
                        Repeat::Send => Step::Write(RepeatCount::default(), true),
                        Repeat::Hold(kept) => Step::Write(
                            RepeatCount {
                                seen_unix_millis: kept,
                            },
                            false,
                        ),
                    }
                },
            )
            .await
            .map_err(|e| unavailable(&e))?;
            if !send {
                self.metrics.events_held_back.inc();
                tracing::debug!(alert = %out.alert, event.id = %event.id, "Event held back by the Alert's repeat threshold.");
                return Ok(None);
            }
        }
        if flood.recovery && event.severity == "error" {
            out.notes.push(Note::Failed {
                key: key("recovery", &object_id),
                value: NotifiedError {
                    failed_unix_millis: now,
                    reason: event.reason.clone(),
                },
            });
        }
        if let Some(wait) = flood.group_wait {
            let group = flood.group_key(&alert_id, &provider, event);
            out.subject = names::group_subject(&group);
            out.grouped = true;
            out.notes.push(Note::GroupDue {
                key: group,
                due: GroupDue {
                    due_unix_millis: now + millis(wait),
                    interval_millis: millis(flood.group_interval),
                    ..GroupDue::default()
                },
            });
        }
        Ok(Some(out))
    }

    /// Writes the state of deliveries just stored, all at once. A failure
    /// loses no event: a group without a due time is found by the flusher,
    /// and a missing error note only costs a recovery message.
    pub(crate) async fn note_all(&self, notes: Vec<Note>) {
        join_all(notes.into_iter().map(|note| async move {
            let (what, result) = match note {
                Note::GroupDue { key, due } => (
                    "the group's due time",
                    create(&self.flood.due, &key, due.encode_to_vec()).await,
                ),
                Note::Failed { key, value } => (
                    "a notified error",
                    create(&self.flood.recovery, &key, value.encode_to_vec()).await,
                ),
                Note::Recovered { key, revision } => (
                    "a recovered error",
                    self.flood
                        .recovery
                        .delete_expect_revision(&key, Some(revision))
                        .await
                        .map_err(|e| e.to_string()),
                ),
            };
            if let Err(error) = result {
                tracing::warn!(error = %error, "Cannot write {what}.");
            }
        }))
        .await;
    }
}

/// Creates `key` unless it exists (then the entry there stands).
async fn create(store: &kv::Store, key: &str, value: Vec<u8>) -> Result<(), String> {
    match store.create(key, Bytes::from(value)).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}
