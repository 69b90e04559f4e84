//! The event Flux controllers POST (fluxcd/pkg `apis/event/v1beta1` `Event`,
//! and `apis/event/v1` from Flux 2.10 on, which adds `action` and
//! `relatedObject`), decoded the way Go's `encoding/json` decodes it and
//! encoded the way Go encodes it, so that Herald is wire-compatible in both
//! directions and in both versions.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeStruct, Serializer};
use serde::{Deserialize, Serialize};

use crate::gotime::GoTime;

/// The Kubernetes object an event is about (`involvedObject`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InvolvedObject {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub api_version: String,
    pub resource_version: String,
    pub field_path: String,
}

/// A Flux event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FluxEvent {
    pub involved_object: InvolvedObject,
    pub severity: String,
    /// `None` for Go's zero time: `null`, absent, or `0001-01-01T00:00:00Z`
    /// on the wire (Go cannot tell them apart and encodes all three as `null`).
    pub timestamp: Option<GoTime>,
    pub message: String,
    pub reason: String,
    pub metadata: BTreeMap<String, String>,
    pub reporting_controller: String,
    pub reporting_instance: String,
    /// `event/v1`: what was taken or failed (`Reconciled`, `Failed`, ...).
    pub action: String,
    /// `event/v1`: a secondary object of the event (empty when none).
    pub related_object: InvolvedObject,
    /// Sent in the `event/v1` form (it had `action` or `relatedObject`):
    /// encoded back in that form, else exactly as `v1beta1`.
    pub v1: bool,
    /// Herald's, never on the wire: the Slack Block Kit blocks (a JSON
    /// array) that a `herald.dev/slack-blocks` template rendered for one
    /// delivery to a Slack Provider.
    pub slack_blocks: Option<String>,
}

/// Why a request body is not a Flux event.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The body is empty.
    #[error("request body is empty, expected a JSON Flux event")]
    Empty,
    /// The body is not valid JSON for a Flux event; the message says where and why.
    #[error("invalid Flux event JSON: {0}")]
    Json(String),
}

// === impl FluxEvent ===

impl FluxEvent {
    /// Decodes a request body as Go's `json.Unmarshal` into `eventv1.Event` would.
    ///
    /// Object keys match field names case-insensitively, unknown fields are
    /// ignored, the last of duplicated keys wins, `null` leaves a field empty
    /// (a `null` body is an all-empty event), strings must be strings,
    /// `timestamp` must be RFC 3339, and invalid UTF-8 becomes U+FFFD.
    ///
    /// # Errors
    ///
    /// [`DecodeError`] with a message that names the offending field.
    pub fn from_json(body: &[u8]) -> Result<Self, DecodeError> {
        let text = String::from_utf8_lossy(body);
        if text.trim_ascii().is_empty() {
            return Err(DecodeError::Empty);
        }
        serde_json::from_str::<GoEvent>(&text)
            .map(|GoEvent(event)| event)
            .map_err(|err| DecodeError::Json(err.to_string()))
    }

    /// Encodes the event exactly as the notification-controller's Go code does
    /// (field order, omitted empties, UTC second timestamps, HTML escaping).
    #[must_use]
    pub fn to_go_json(&self) -> Vec<u8> {
        crate::gojson::to_vec(self)
    }

    /// The API group of the involved object (`kustomize.toolkit.fluxcd.io`), or
    /// the empty string when `apiVersion` is not of the form `group/version`.
    #[must_use]
    pub fn api_group(&self) -> &str {
        crate::metadata::api_group(&self.involved_object.api_version)
    }
}

impl Serialize for InvolvedObject {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let fields = [
            ("kind", &self.kind),
            ("namespace", &self.namespace),
            ("name", &self.name),
            ("uid", &self.uid),
            ("apiVersion", &self.api_version),
            ("resourceVersion", &self.resource_version),
            ("fieldPath", &self.field_path),
        ];
        let len = fields.iter().filter(|(_, v)| !v.is_empty()).count();
        let mut s = serializer.serialize_struct("ObjectReference", len)?;
        for (key, value) in fields {
            if value.is_empty() {
                s.skip_field(key)?;
            } else {
                s.serialize_field(key, value)?;
            }
        }
        s.end()
    }
}

/// In Go's field order of the version the event came in: `event/v1` adds
/// `relatedObject` (a struct: always encoded, `{}` when empty) after
/// `involvedObject`, and `action` (never omitted) after `reason`.
impl Serialize for FluxEvent {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("Event", 10)?;
        s.serialize_field("involvedObject", &self.involved_object)?;
        if self.v1 {
            s.serialize_field("relatedObject", &self.related_object)?;
        } else {
            s.skip_field("relatedObject")?;
        }
        s.serialize_field("severity", &self.severity)?;
        s.serialize_field("timestamp", &self.timestamp.map(GoTime::to_rfc3339_utc))?;
        s.serialize_field("message", &self.message)?;
        s.serialize_field("reason", &self.reason)?;
        if self.v1 {
            s.serialize_field("action", &self.action)?;
        } else {
            s.skip_field("action")?;
        }
        if self.metadata.is_empty() {
            s.skip_field("metadata")?;
        } else {
            s.serialize_field("metadata", &self.metadata)?;
        }
        s.serialize_field("reportingController", &self.reporting_controller)?;
        if self.reporting_instance.is_empty() {
            s.skip_field("reportingInstance")?;
        } else {
            s.serialize_field("reportingInstance", &self.reporting_instance)?;
        }
        s.end()
    }
}

/// Folds a JSON key the way Go's `encoding/json` does before comparing it with
/// a field name: ASCII upper-cased, and the two non-ASCII runes that fold onto
/// ASCII letters (`ſ` U+017F → `S`, Kelvin sign U+212A → `K`) mapped to them.
fn fold_key(key: &str) -> String {
    key.chars()
        .map(|c| match c {
            '\u{017F}' => 'S',
            '\u{212A}' => 'K',
            c => c.to_ascii_uppercase(),
        })
        .collect()
}

/// A Go `string` field: a JSON string, or `null` which leaves it empty.
struct GoString(String);

impl<'de> Deserialize<'de> for GoString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Option::<String>::deserialize(d).map(|s| GoString(s.unwrap_or_default()))
    }
}

/// A Go `metav1.Time` field: an RFC 3339 string as `time.Parse` reads it, or
/// `null`; both `null` and Go's zero time (`0001-01-01T00:00:00Z`) are `None`.
struct GoTimeField(Option<GoTime>);

impl<'de> Deserialize<'de> for GoTimeField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(GoTimeField(None)),
            Some(text) => GoTime::parse_rfc3339(&text)
                .map(|t| GoTimeField((!t.is_zero()).then_some(t)))
                .map_err(|err| de::Error::custom(format_args!("timestamp {err}"))),
        }
    }
}

/// A Go `map[string]string`: values must be strings (`null` gives "").
struct GoStringMap(BTreeMap<String, String>);

impl<'de> Deserialize<'de> for GoStringMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = Option::<BTreeMap<String, GoString>>::deserialize(d)?;
        Ok(GoStringMap(
            map.unwrap_or_default()
                .into_iter()
                .map(|(k, GoString(v))| (k, v))
                .collect(),
        ))
    }
}

fn field_error<E: de::Error>(field: &str, err: impl fmt::Display) -> E {
    E::custom(format_args!("field \"{field}\": {err}"))
}

struct GoEvent(FluxEvent);

impl<'de> Deserialize<'de> for GoEvent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(EventVisitor).map(GoEvent)
    }
}

struct EventVisitor;

impl<'de> Visitor<'de> for EventVisitor {
    type Value = FluxEvent;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object (a Flux event)")
    }

    fn visit_unit<E: de::Error>(self) -> Result<FluxEvent, E> {
        Ok(FluxEvent::default())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FluxEvent, A::Error> {
        let mut event = FluxEvent::default();
        while let Some(key) = map.next_key::<String>()? {
            let target = match fold_key(&key).as_str() {
                "INVOLVEDOBJECT" => {
                    let GoObject(obj) = map
                        .next_value()
                        .map_err(|e| field_error("involvedObject", e))?;
                    if let Some(obj) = obj {
                        event.involved_object = obj;
                    }
                    continue;
                }
                "TIMESTAMP" => {
                    let GoTimeField(t) =
                        map.next_value().map_err(|e| field_error("timestamp", e))?;
                    event.timestamp = t;
                    continue;
                }
                "METADATA" => {
                    let GoStringMap(m) =
                        map.next_value().map_err(|e| field_error("metadata", e))?;
                    event.metadata = m;
                    continue;
                }
                "RELATEDOBJECT" => {
                    let GoObject(obj) = map
                        .next_value()
                        .map_err(|e| field_error("relatedObject", e))?;
                    if let Some(obj) = obj {
                        event.related_object = obj;
                    }
                    event.v1 = true;
                    continue;
                }
                "ACTION" => {
                    event.v1 = true;
                    &mut event.action
                }
                "SEVERITY" => &mut event.severity,
                "MESSAGE" => &mut event.message,
                "REASON" => &mut event.reason,
                "REPORTINGCONTROLLER" => &mut event.reporting_controller,
                "REPORTINGINSTANCE" => &mut event.reporting_instance,
                _ => {
                    map.next_value::<de::IgnoredAny>()?;
                    continue;
                }
            };
            let GoString(value) = map.next_value().map_err(|e| field_error(&key, e))?;
            *target = value;
        }
        Ok(event)
    }
}

/// `involvedObject`: an object, or `null` (which leaves it as it was).
struct GoObject(Option<InvolvedObject>);

impl<'de> Deserialize<'de> for GoObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ObjectVisitor).map(GoObject)
    }
}

struct ObjectVisitor;

impl<'de> Visitor<'de> for ObjectVisitor {
    type Value = Option<InvolvedObject>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object (a Kubernetes object reference)")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut obj = InvolvedObject::default();
        while let Some(key) = map.next_key::<String>()? {
            let target = match fold_key(&key).as_str() {
                "KIND" => &mut obj.kind,
                "NAMESPACE" => &mut obj.namespace,
                "NAME" => &mut obj.name,
                "UID" => &mut obj.uid,
                "APIVERSION" => &mut obj.api_version,
                "RESOURCEVERSION" => &mut obj.resource_version,
                "FIELDPATH" => &mut obj.field_path,
                _ => {
                    map.next_value::<de::IgnoredAny>()?;
                    continue;
                }
            };
            let GoString(value) = map
                .next_value()
                .map_err(|e| field_error(&format!("involvedObject.{key}"), e))?;
            *target = value;
        }
        Ok(Some(obj))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const E1: &str = r#"{
      "involvedObject": {"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
                         "name": "webapp", "namespace": "apps", "uid": "7d0cdc51-ddcf-4743-b223-83ca5c699632"},
      "metadata": {"kustomize.toolkit.fluxcd.io/revision": "main/731f7eaddfb6af01cb2173e18f0f75b0ba780ef1"},
      "severity": "error",
      "reason": "ValidationFailed",
      "message": "service/apps/webapp validation error: spec.type: Unsupported value: Ingress",
      "reportingController": "kustomize-controller",
      "timestamp": "2022-10-28T07:26:19Z"
    }"#;

    #[test]
    fn event_v1_keeps_action_and_related_object_and_its_form() {
        let v1 = r#"{"involvedObject":{"kind":"HelmRelease","namespace":"apps","name":"web"},
            "relatedObject":{"kind":"HelmChart","namespace":"flux-system","name":"apps-web"},
            "severity":"info","timestamp":"2026-01-02T03:04:05Z","message":"upgraded",
            "reason":"UpgradeSucceeded","action":"Reconciled","reportingController":"helm-controller"}"#;
        let event = FluxEvent::from_json(v1.as_bytes()).unwrap();
        assert!(event.v1);
        assert_eq!(event.action, "Reconciled");
        assert_eq!(event.related_object.kind, "HelmChart");
        let out = String::from_utf8(event.to_go_json()).unwrap();
        assert_eq!(
            out,
            "{\"involvedObject\":{\"kind\":\"HelmRelease\",\"namespace\":\"apps\",\"name\":\"web\"},\
             \"relatedObject\":{\"kind\":\"HelmChart\",\"namespace\":\"flux-system\",\"name\":\"apps-web\"},\
             \"severity\":\"info\",\"timestamp\":\"2026-01-02T03:04:05Z\",\"message\":\"upgraded\",\
             \"reason\":\"UpgradeSucceeded\",\"action\":\"Reconciled\",\"reportingController\":\"helm-controller\"}"
        );
        // Go encodes an empty relatedObject as {} and an empty action as "".
        let bare = FluxEvent::from_json(br#"{"action":""}"#).unwrap();
        let out = String::from_utf8(bare.to_go_json()).unwrap();
        assert!(
            out.contains("\"relatedObject\":{}") && out.contains("\"action\":\"\""),
            "{out}"
        );
        // v1beta1 stays as it was.
        let old = FluxEvent::from_json(E1.as_bytes()).unwrap();
        assert!(!old.v1);
        let out = String::from_utf8(old.to_go_json()).unwrap();
        assert!(
            !out.contains("action") && !out.contains("relatedObject"),
            "{out}"
        );
    }

    #[test]
    fn decodes_the_documented_example() {
        let event = FluxEvent::from_json(E1.as_bytes()).unwrap();
        assert_eq!(event.involved_object.kind, "Kustomization");
        assert_eq!(event.involved_object.namespace, "apps");
        assert_eq!(event.severity, "error");
        assert_eq!(event.reason, "ValidationFailed");
        assert_eq!(
            event.metadata["kustomize.toolkit.fluxcd.io/revision"],
            "main/731f7eaddfb6af01cb2173e18f0f75b0ba780ef1"
        );
        assert_eq!(
            event.timestamp.unwrap().to_rfc3339_utc(),
            "2022-10-28T07:26:19Z"
        );
        assert_eq!(event.api_group(), "kustomize.toolkit.fluxcd.io");
    }

    #[test]
    fn keys_match_case_insensitively_and_unknown_fields_are_ignored() {
        let body = br#"{"INVOLVEDOBJECT":{"KIND":"Bucket","Name":"b"},"Severity":"info",
                        "extra":[1,2,{"x":null}],"\u212Aind":"ignored","reason":"a","REASON":"b"}"#;
        let event = FluxEvent::from_json(body).unwrap();
        assert_eq!(event.involved_object.kind, "Bucket");
        assert_eq!(event.involved_object.name, "b");
        assert_eq!(event.severity, "info");
        assert_eq!(event.reason, "b", "the last duplicated key wins");
    }

    #[test]
    fn kelvin_and_long_s_fold_like_go() {
        let body = "{\"involvedObject\":{\"\u{212A}ind\":\"K\"},\"\u{017F}everity\":\"error\"}";
        let event = FluxEvent::from_json(body.as_bytes()).unwrap();
        assert_eq!(event.involved_object.kind, "K");
        assert_eq!(event.severity, "error");
    }

    #[test]
    fn null_body_and_null_fields_are_empty() {
        assert_eq!(FluxEvent::from_json(b"null").unwrap(), FluxEvent::default());
        let event = FluxEvent::from_json(
            br#"{"severity":null,"timestamp":null,"metadata":null,"involvedObject":null}"#,
        )
        .unwrap();
        assert_eq!(event, FluxEvent::default());
    }

    #[test]
    fn rejections_say_what_is_wrong() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "empty"),
            (b"   ", "empty"),
            (b"{", "EOF"),
            (b"[]", "expected a JSON object"),
            (br#"{"severity":3}"#, "field \"severity\""),
            (br#"{"metadata":{"a":1}}"#, "field \"metadata\""),
            (
                br#"{"involvedObject":{"name":true}}"#,
                "involvedObject.name",
            ),
            (br#"{"timestamp":"yesterday"}"#, "not an RFC 3339 time"),
            (br#"{"timestamp":12}"#, "field \"timestamp\""),
            (br#"{} {}"#, "trailing characters"),
        ];
        for (body, needle) in cases {
            let err = FluxEvent::from_json(body).unwrap_err().to_string();
            assert!(
                err.contains(needle),
                "{:?}: {err:?} lacks {needle:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn invalid_utf8_in_strings_becomes_replacement_character() {
        let mut body = br#"{"message":"a"#.to_vec();
        body.push(0xff);
        body.extend_from_slice(br#"b"}"#);
        let event = FluxEvent::from_json(&body).unwrap();
        assert_eq!(event.message, "a\u{FFFD}b");
    }

    #[test]
    fn fractional_and_offset_timestamps_are_accepted() {
        let event =
            FluxEvent::from_json(br#"{"timestamp":"2024-05-07T07:02:34.123456+02:00"}"#).unwrap();
        assert_eq!(
            event.timestamp.unwrap().to_rfc3339_utc(),
            "2024-05-07T05:02:34Z"
        );
    }

    #[test]
    fn timestamps_are_kept_exactly_or_refused() {
        let timestamp_of = |body: &str| {
            let event = FluxEvent::from_json(body.as_bytes()).unwrap();
            let json: serde_json::Value = serde_json::from_slice(&event.to_go_json()).unwrap();
            json["timestamp"].clone()
        };
        // Go's zero time, however it arrives, is `null` on the way out.
        for zero in [
            r#"{"timestamp":null}"#,
            r#"{}"#,
            r#"{"timestamp":"0001-01-01T00:00:00Z"}"#,
            r#"{"timestamp":"0001-01-01T01:00:00+01:00"}"#,
        ] {
            assert_eq!(timestamp_of(zero), serde_json::Value::Null, "{zero}");
        }
        for (sent, forwarded) in [
            ("1600-01-01T00:00:00Z", "1600-01-01T00:00:00Z"),
            ("2300-01-01T00:00:00Z", "2300-01-01T00:00:00Z"),
            ("9999-12-31T23:59:59Z", "9999-12-31T23:59:59Z"),
            ("0001-01-01T00:00:01Z", "0001-01-01T00:00:01Z"),
            ("2024-05-07T01:02:34.5-04:30", "2024-05-07T05:32:34Z"),
        ] {
            let body = format!(r#"{{"timestamp":"{sent}"}}"#);
            assert_eq!(timestamp_of(&body), forwarded, "{sent}");
        }
        let err = FluxEvent::from_json(br#"{"timestamp":"2024-02-30T00:00:00Z"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("field \"timestamp\""), "{err}");
        assert!(err.contains("day out of range"), "{err}");
    }

    #[test]
    fn encodes_like_go() {
        let mut event = FluxEvent::from_json(E1.as_bytes()).unwrap();
        event.metadata = BTreeMap::from([
            ("revision".to_owned(), "main/731f".to_owned()),
            ("a".to_owned(), "<b>&".to_owned()),
        ]);
        let json = String::from_utf8(event.to_go_json()).unwrap();
        assert_eq!(
            json,
            concat!(
                r#"{"involvedObject":{"kind":"Kustomization","namespace":"apps","name":"webapp","#,
                r#""uid":"7d0cdc51-ddcf-4743-b223-83ca5c699632","apiVersion":"kustomize.toolkit.fluxcd.io/v1"},"#,
                r#""severity":"error","timestamp":"2022-10-28T07:26:19Z","#,
                r#""message":"service/apps/webapp validation error: spec.type: Unsupported value: Ingress","#,
                r#""reason":"ValidationFailed","metadata":{"a":"\u003cb\u003e\u0026","revision":"main/731f"},"#,
                r#""reportingController":"kustomize-controller"}"#
            )
        );
        let empty = String::from_utf8(FluxEvent::default().to_go_json()).unwrap();
        assert_eq!(
            empty,
            r#"{"involvedObject":{},"severity":"","timestamp":null,"message":"","reason":"","reportingController":""}"#
        );
    }
}
