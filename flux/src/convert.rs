//! Between the Flux wire event ([`FluxEvent`]) and the stored one ([`herald_proto::Event`]).

use herald_proto::{Event, ObjectReference, Time};
use jiff::Timestamp;

use crate::event::{FluxEvent, InvolvedObject};
use crate::gotime::GoTime;

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
    let related = event.v1.then(|| reference(event.related_object));
    Event {
        id: stamp.id,
        cluster: stamp.cluster,
        involved_object: Some(reference(event.involved_object)),
        severity: event.severity,
        timestamp: event.timestamp.map(from_go_time),
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
        action: event.action,
        related_object: related,
        event_v1: event.v1,
    }
}

fn reference(o: InvolvedObject) -> ObjectReference {
    ObjectReference {
        kind: o.kind,
        namespace: o.namespace,
        name: o.name,
        uid: o.uid,
        api_version: o.api_version,
        resource_version: o.resource_version,
        field_path: o.field_path,
    }
}

fn involved(o: ObjectReference) -> InvolvedObject {
    InvolvedObject {
        kind: o.kind,
        namespace: o.namespace,
        name: o.name,
        uid: o.uid,
        api_version: o.api_version,
        resource_version: o.resource_version,
        field_path: o.field_path,
    }
}

/// The Flux wire form of a stored event (what `generic` providers receive).
#[must_use]
pub fn from_proto(event: &Event) -> FluxEvent {
    FluxEvent {
        involved_object: involved(event.involved_object.clone().unwrap_or_default()),
        severity: event.severity.clone(),
        timestamp: event
            .timestamp
            .as_ref()
            .and_then(to_go_time)
            .filter(|t| !t.is_zero()),
        message: event.message.clone(),
        reason: event.reason.clone(),
        metadata: event.metadata.clone(),
        reporting_controller: event.reporting_controller.clone(),
        reporting_instance: event.reporting_instance.clone(),
        action: event.action.clone(),
        related_object: involved(event.related_object.clone().unwrap_or_default()),
        v1: event.event_v1,
        slack_blocks: None,
    }
}

/// A proto time from a timestamp (a time of Herald's own clock).
#[must_use]
pub fn to_time(ts: Timestamp) -> Time {
    from_go_time(GoTime::from(ts))
}

/// A timestamp from a proto time; `None` when it is invalid or beyond
/// `jiff`'s range (past 9999-12-30, which Herald's own clock never reaches).
#[must_use]
pub fn from_time(time: &Time) -> Option<Timestamp> {
    to_go_time(time)?.to_timestamp()
}

/// A proto time from a Go time, exactly.
#[must_use]
pub fn from_go_time(time: GoTime) -> Time {
    Time::from_parts(time.unix_seconds(), time.subsec_nanos())
}

/// A Go time from a proto time, exactly (old `unix_nanos` messages included);
/// `None` when it is invalid.
#[must_use]
pub fn to_go_time(time: &Time) -> Option<GoTime> {
    let (seconds, nanos) = time.parts()?;
    GoTime::new(seconds, nanos)
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

    #[test]
    fn every_go_time_survives_storage() {
        for text in [
            "0000-01-01T00:00:00Z",
            "0001-01-01T00:00:00.5Z",
            "1600-01-01T00:00:00Z",
            "1677-09-21T00:12:43.145224191Z",
            "2262-04-11T23:47:16.854775808Z",
            "2300-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999999Z",
            "9999-12-31T23:59:59-24:60",
        ] {
            let time = GoTime::parse_rfc3339(text).unwrap();
            assert_eq!(to_go_time(&from_go_time(time)), Some(time), "{text}");
            let event = FluxEvent {
                timestamp: Some(time),
                ..FluxEvent::default()
            };
            assert_eq!(
                from_proto(&to_proto(event.clone(), Stamp::default())),
                event
            );
        }
    }

    #[test]
    fn herald_clock_times_round_trip() {
        let now = Timestamp::now();
        assert_eq!(from_time(&to_time(now)), Some(now));
        let before_epoch: Timestamp = "1969-07-20T20:17:40.25Z".parse().unwrap();
        assert_eq!(from_time(&to_time(before_epoch)), Some(before_epoch));
    }
}
