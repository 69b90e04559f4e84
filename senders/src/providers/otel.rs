//! `otel`: one span per event, exported as OTLP/HTTP protobuf traces
//! (flux-providers §5.7). Every event of an Alert for one revision lands in
//! the same trace: its id is derived from the Alert's uid and the revision.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, SpanFlags, Status, span::SpanKind, status::StatusCode,
};
use prost::Message as _;
use sha2::{Digest as _, Sha256};

use super::shared::{basic, bearer, is_error, parse_address, parse_url};
use super::{AlertIdentity, Input, Plan, Provider, ProviderError};
use crate::config::Resolved;
use crate::http::Request;
use herald_flux::FluxEvent;

/// `otel`.
pub(super) struct Otel;

impl Provider for Otel {
    fn plan(&self, input: &Input<'_>) -> Result<Plan, ProviderError> {
        let request = build(input.resolved, input.event, input.alert, &Clock::now())?;
        if input.event.involved_object.kind == "HelmRepository" {
            return Ok(Plan::Skip(
                "otel: Flux sends no span for HelmRepository events",
            ));
        }
        Ok(Plan::Request(request))
    }
}

/// The tracer (instrumentation scope) name Flux uses.
const TRACER: &str = "flux:notification-controller";
/// The semantic conventions the resource follows (Flux's semconv v1.34).
const SCHEMA_URL: &str = "https://opentelemetry.io/schemas/1.34.0";
/// The path an address without one is given (the OTLP/HTTP default).
const TRACES_PATH: &str = "/v1/traces";

/// What varies between two exports of the same event: the end time and the
/// span id.
struct Clock {
    now_unix_nanos: u64,
    span_id: [u8; 8],
}

impl Clock {
    fn now() -> Self {
        let now = jiff::Timestamp::now().as_nanosecond();
        let mut span_id = [0u8; 8];
        while span_id == [0u8; 8] {
            span_id = fastrand::u64(..).to_be_bytes();
        }
        Self {
            now_unix_nanos: u64::try_from(now).unwrap_or(0),
            span_id,
        }
    }
}

/// Builds the export request.
fn build(
    resolved: &Resolved,
    event: &FluxEvent,
    alert: &AlertIdentity,
    clock: &Clock,
) -> Result<Request, ProviderError> {
    let url = traces_url(resolved)?;
    let body = export(event, alert, clock).encode_to_vec();
    Ok(Request::post(url, headers(resolved), body))
}

/// The address, its path kept; `/v1/traces` when it has none.
fn traces_url(resolved: &Resolved) -> Result<reqwest::Url, ProviderError> {
    let url = parse_address(resolved, "otel")?;
    let address = resolved.address.trim();
    let after_scheme = address.split_once("://").map_or(address, |(_, rest)| rest);
    let has_path = after_scheme
        .split(['?', '#'])
        .next()
        .is_some_and(|authority_and_path| authority_and_path.contains('/'));
    if has_path {
        return Ok(url);
    }
    let mut with_path = url.clone();
    with_path.set_path(TRACES_PATH);
    parse_url(resolved, "otel", with_path.as_str())
}

/// The Secret's `headers`, and Flux's auth rule: only when there are
/// headers and none of them is `Authorization`, `Bearer {token, else
/// password}` without a username, `Basic` with a username and a password.
fn headers(resolved: &Resolved) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = vec![(
        "Content-Type".to_owned(),
        "application/x-protobuf".to_owned(),
    )];
    // The exporter sets its content type after the configured headers.
    headers.extend(
        resolved
            .headers
            .iter()
            .filter(|(name, _)| !name.eq_ignore_ascii_case("content-type"))
            .map(|(name, value)| (name.clone(), value.clone())),
    );
    let has_authorization = resolved
        .headers
        .keys()
        .any(|name| name.eq_ignore_ascii_case("authorization"));
    if resolved.headers.is_empty() || has_authorization {
        return headers;
    }
    let token = if resolved.token.is_empty() {
        &resolved.password
    } else {
        &resolved.token
    };
    if resolved.username.is_empty() {
        if !token.is_empty() {
            headers.push(("Authorization".to_owned(), bearer(token)));
        }
    } else if !resolved.password.is_empty() {
        headers.push((
            "Authorization".to_owned(),
            basic(&resolved.username, &resolved.password),
        ));
    }
    headers
}

/// The revision a trace is for: `{app-version}@{oci-digest}` when a
/// HelmRelease gave both, else `revision`, else `unknown`.
fn revision(event: &FluxEvent) -> String {
    let m = &event.metadata;
    match (m.get("app-version"), m.get("oci-digest")) {
        (Some(version), Some(digest)) => format!("{version}@{digest}"),
        _ => m
            .get("revision")
            .cloned()
            .unwrap_or_else(|| "unknown".to_owned()),
    }
}

/// The first 16 bytes of SHA-256(`{alertUID}:{revision}`).
fn trace_id(alert: &AlertIdentity, event: &FluxEvent) -> Vec<u8> {
    let digest = Sha256::digest(format!("{}:{}", alert.uid, revision(event)).as_bytes());
    digest[..16].to_vec()
}

fn string(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
        ..KeyValue::default()
    }
}

/// The export of the event's one span, as Flux's Go SDK sends it.
fn export(event: &FluxEvent, alert: &AlertIdentity, clock: &Clock) -> ExportTraceServiceRequest {
    let o = &event.involved_object;
    let mut attributes = vec![
        string("object.uid", &o.uid),
        string("object.kind", &o.kind),
        string("object.name", &o.name),
        string("object.namespace", &o.namespace),
    ];
    // Go ranges over the map in random order: sorted by key here.
    attributes.extend(event.metadata.iter().map(|(k, v)| string(k, v)));
    // The Go SDK keeps a status description for errors only.
    let status = if is_error(event) {
        Status {
            message: event.message.clone(),
            code: StatusCode::Error.into(),
        }
    } else {
        Status {
            message: String::new(),
            code: StatusCode::Ok.into(),
        }
    };
    // A zero start time is "now" for the Go SDK.
    let start = event
        .timestamp
        .and_then(|t| u64::try_from(t.unix_nanos()).ok())
        .filter(|nanos| *nanos > 0)
        .unwrap_or(clock.now_unix_nanos);
    let span = Span {
        trace_id: trace_id(alert, event),
        span_id: clock.span_id.to_vec(),
        // The parent context carries only the trace id: a root span, and a
        // parent that is not remote.
        flags: SpanFlags::ContextHasIsRemoteMask as u32,
        name: format!("{}: {}/{}", o.kind, o.namespace, o.name),
        kind: SpanKind::Internal.into(),
        start_time_unix_nano: start,
        end_time_unix_nano: clock.now_unix_nanos.max(start),
        attributes,
        status: Some(status),
        ..Span::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    string(
                        "service.name",
                        &format!("{}/{}", alert.namespace, alert.name),
                    ),
                    string("service.namespace", &alert.namespace),
                    string("service.instance.id", &alert.uid),
                ],
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: TRACER.to_owned(),
                    ..InstrumentationScope::default()
                }),
                spans: vec![span],
                schema_url: String::new(),
            }],
            schema_url: SCHEMA_URL.to_owned(),
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn event(severity: &str) -> FluxEvent {
        let mut e = FluxEvent::from_json(
            br#"{"involvedObject":{"kind":"HelmRelease","namespace":"apps","name":"podinfo",
                "uid":"7d0cdc51-2a5b-4a3e-9a4b-3c5e1f2a0b11"},
                "timestamp":"2024-01-01T10:00:00Z","message":"Helm upgrade failed",
                "reason":"UpgradeFailed","reportingController":"helm-controller"}"#,
        )
        .unwrap();
        e.severity = severity.into();
        e.metadata = BTreeMap::from([
            ("revision".to_owned(), "6.5.0".to_owned()),
            ("app-version".to_owned(), "6.5.0".to_owned()),
        ]);
        e
    }

    fn alert() -> AlertIdentity {
        AlertIdentity {
            namespace: "apps".into(),
            name: "traces".into(),
            uid: "0b6a1f9e-1c1d-4e55-a0f4-7e3c0c6c1a00".into(),
        }
    }

    fn resolved(address: &str) -> Resolved {
        Resolved {
            provider_type: "otel".into(),
            address: address.into(),
            ..Resolved::default()
        }
    }

    const CLOCK: Clock = Clock {
        now_unix_nanos: 1_704_103_260_000_000_000,
        span_id: [1, 2, 3, 4, 5, 6, 7, 8],
    };

    fn value(kv: &KeyValue) -> (&str, &str) {
        let Some(AnyValue {
            value: Some(any_value::Value::StringValue(v)),
        }) = &kv.value
        else {
            panic!("a string attribute");
        };
        (kv.key.as_str(), v.as_str())
    }

    #[test]
    fn one_span_with_flux_attributes_status_and_resource() {
        let request = build(
            &resolved("http://127.0.0.1:4318"),
            &event("error"),
            &alert(),
            &CLOCK,
        )
        .unwrap();
        assert_eq!(request.url.as_str(), "http://127.0.0.1:4318/v1/traces");
        assert_eq!(
            request.headers,
            [(
                "Content-Type".to_owned(),
                "application/x-protobuf".to_owned()
            )]
        );
        let export = ExportTraceServiceRequest::decode(request.body.as_slice()).unwrap();
        let rs = &export.resource_spans[0];
        assert_eq!(rs.schema_url, SCHEMA_URL);
        let resource: Vec<_> = rs
            .resource
            .as_ref()
            .unwrap()
            .attributes
            .iter()
            .map(value)
            .collect();
        assert_eq!(
            resource,
            [
                ("service.name", "apps/traces"),
                ("service.namespace", "apps"),
                (
                    "service.instance.id",
                    "0b6a1f9e-1c1d-4e55-a0f4-7e3c0c6c1a00"
                ),
            ]
        );
        assert_eq!(rs.scope_spans[0].scope.as_ref().unwrap().name, TRACER);
        let span = &rs.scope_spans[0].spans[0];
        assert_eq!(span.name, "HelmRelease: apps/podinfo");
        let attributes: Vec<_> = span.attributes.iter().map(value).collect();
        assert_eq!(
            attributes,
            [
                ("object.uid", "7d0cdc51-2a5b-4a3e-9a4b-3c5e1f2a0b11"),
                ("object.kind", "HelmRelease"),
                ("object.name", "podinfo"),
                ("object.namespace", "apps"),
                ("app-version", "6.5.0"),
                ("revision", "6.5.0"),
            ]
        );
        let status = span.status.as_ref().unwrap();
        assert_eq!(status.code, i32::from(StatusCode::Error));
        assert_eq!(status.message, "Helm upgrade failed");
        assert_eq!(span.start_time_unix_nano, 1_704_103_200_000_000_000);
        assert_eq!(span.end_time_unix_nano, CLOCK.now_unix_nanos);
        assert_eq!(span.span_id, [1, 2, 3, 4, 5, 6, 7, 8]);
        assert!(span.parent_span_id.is_empty());
        // No oci-digest: the trace is the revision's.
        let digest = Sha256::digest(b"0b6a1f9e-1c1d-4e55-a0f4-7e3c0c6c1a00:6.5.0");
        assert_eq!(span.trace_id, digest[..16]);
    }

    #[test]
    fn ok_status_and_the_revision_rule() {
        let mut e = event("info");
        let export = export(&e, &alert(), &CLOCK);
        let status = export.resource_spans[0].scope_spans[0].spans[0]
            .status
            .clone()
            .unwrap();
        assert_eq!(status.code, i32::from(StatusCode::Ok));
        assert_eq!(status.message, "");
        assert_eq!(revision(&e), "6.5.0");
        e.metadata.insert("oci-digest".into(), "sha256:abc".into());
        assert_eq!(revision(&e), "6.5.0@sha256:abc");
        e.metadata.clear();
        assert_eq!(revision(&e), "unknown");
        // Same Alert and revision, same trace; another revision, another.
        let a = trace_id(&alert(), &e);
        assert_eq!(a, trace_id(&alert(), &e));
        e.metadata.insert("revision".into(), "7.0.0".into());
        assert_ne!(a, trace_id(&alert(), &e));
        assert_eq!(a.len(), 16);
    }

    #[test]
    fn paths_are_kept_and_empty_ones_defaulted() {
        for (address, want) in [
            ("http://c:4318", "http://c:4318/v1/traces"),
            ("https://c", "https://c/v1/traces"),
            ("http://c:4318/", "http://c:4318/"),
            (
                "http://c:4318/otlp/v1/traces",
                "http://c:4318/otlp/v1/traces",
            ),
            ("http://c:4318?x=1", "http://c:4318/v1/traces?x=1"),
        ] {
            assert_eq!(traces_url(&resolved(address)).unwrap().as_str(), want);
        }
        assert!(matches!(
            traces_url(&resolved("")),
            Err(ProviderError::NoAddress { .. })
        ));
        assert!(traces_url(&resolved("grpc://c:4317")).is_err());
    }

    #[test]
    fn auth_only_with_secret_headers() {
        let mut r = resolved("http://c:4318");
        r.token = "t0k".into();
        let auth = |r: &Resolved| -> Vec<String> {
            headers(r)
                .into_iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case("authorization"))
                .map(|(_, v)| v)
                .collect()
        };
        // No Secret headers: no auth header at all, as in Flux.
        assert!(auth(&r).is_empty());
        r.headers.insert("X-Scope-OrgID".into(), "tenant".into());
        assert_eq!(auth(&r), ["Bearer t0k"]);
        assert!(headers(&r).contains(&("X-Scope-OrgID".into(), "tenant".into())));
        r.token.clear();
        r.password = "pw".into();
        assert_eq!(auth(&r), ["Bearer pw"]);
        r.username = "user".into();
        assert_eq!(auth(&r), [basic("user", "pw")]);
        r.headers.insert("authorization".into(), "Custom x".into());
        assert_eq!(auth(&r), ["Custom x"]);
        r.headers
            .insert("Content-Type".into(), "application/json".into());
        let types: Vec<_> = headers(&r)
            .into_iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| v)
            .collect();
        assert_eq!(types, ["application/x-protobuf"]);
    }

    #[test]
    fn helm_repositories_are_skipped() {
        let mut e = event("info");
        e.involved_object.kind = "HelmRepository".into();
        let r = resolved("http://c:4318");
        let identifier = || Err(String::new());
        let plan = Otel.plan(&Input {
            event: &e,
            alert: &alert(),
            resolved: &r,
            identifier: &identifier,
            thread: None,
        });
        assert!(matches!(plan, Ok(Plan::Skip(_))));
    }
}
