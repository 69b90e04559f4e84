//! Between the Flux wire event ([`FluxEvent`]) and the stored one ([`herald_proto::Event`]).

use herald_proto::{Event, ObjectReference, Time};
use jiff::Timestamp;

use crate::event::{FluxEvent, InvolvedObject};

/// What ingest adds to a Flux event before it stores it.
#[derive(Debug, Clone, Default)]
pub struct Stamp {
    pub id: String,
    pub cluster: String,
    pub received_at: Option<Timestamp>,
    pub dedupe_key: String,
}

/// The stored form of `event`.
#[must_use]
pub fn to_proto(event: FluxEvent, stamp: Stamp) -> Event {
    let o = event.involved_object;
    Event {
        id: stamp.id,
        cluster: stamp.cluster,
        involved_object: Some(ObjectReference {
            kind: o.kind,
            namespace: o.namespace,
            name: o.name,
            uid: o.uid,
            api_version: o.api_version,
            resource_version: o.resource_version,
            field_path: o.field_path,
        }),
        severity: event.severity,
        timestamp: event.timestamp.map(to_time),
        message: event.message,
        reason: event.reason,
        metadata: event.metadata,
        reporting_controller: event.reporting_controller,
        reporting_instance: event.reporting_instance,
        received_at: stamp.received_at.map(to_time),
        labels: std::collections::BTreeMap::new(),
        annotations: std::collections::BTreeMap::new(),
        labels_known: false,
        dedupe_key: stamp.dedupe_key,
    }
}

/// The Flux wire form of a stored event (what `generic` providers receive).
#[must_use]
pub fn from_proto(event: &Event) -> FluxEvent {
    let o = event.involved_object.clone().unwrap_or_default();
    FluxEvent {
        involved_object: InvolvedObject {
            kind: o.kind,
            namespace: o.namespace,
            name: o.name,
            uid: o.uid,
            api_version: o.api_version,
            resource_version: o.resource_version,
            field_path: o.field_path,
        },
        severity: event.severity.clone(),
        timestamp: event.timestamp.as_ref().and_then(from_time),
        message: event.message.clone(),
        reason: event.reason.clone(),
        metadata: event.metadata.clone(),
        reporting_controller: event.reporting_controller.clone(),
        reporting_instance: event.reporting_instance.clone(),
    }
}

/// A proto time from a timestamp.
#[must_use]
pub fn to_time(ts: Timestamp) -> Time {
    let nanos = ts.as_nanosecond();
    Time::from_unix_nanos(i64::try_from(nanos).unwrap_or(if nanos < 0 {
        i64::MIN
    } else {
        i64::MAX
    }))
}

/// A timestamp from a proto time.
#[must_use]
pub fn from_time(time: &Time) -> Option<Timestamp> {
    Timestamp::from_nanosecond(i128::from(time.unix_nanos)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let body = br#"{"involvedObject":{"kind":"Bucket","namespace":"n","name":"b","uid":"u",
            "apiVersion":"source.toolkit.fluxcd.io/v1","resourceVersion":"7","fieldPath":"f"},
            "severity":"info","timestamp":"2024-01-02T03:04:05.5Z","message":"m","reason":"r",
            "metadata":{"source.toolkit.fluxcd.io/revision":"x"},"reportingController":"c","reportingInstance":"i"}"#;
        let event = FluxEvent::from_json(body).unwrap();
        let stored = to_proto(
            event.clone(),
            Stamp {
                id: "id".into(),
                cluster: "c1".into(),
                ..Stamp::default()
            },
        );
        assert_eq!(stored.cluster, "c1");
        assert_eq!(from_proto(&stored), event);
    }
}
