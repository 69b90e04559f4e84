//! `sentry`: one envelope per event to Sentry's envelope endpoint
//! (flux-providers §5.6), as the Sentry SDKs send them, without an SDK: an
//! error event becomes a Sentry error event, an info event a transaction;
//! other severities send nothing. The address is the project's DSN,
//! `{scheme}://{publicKey}@{host}[/{prefix}]/{projectId}`, `spec.channel`
//! the Sentry environment.
//!
//! Unlike Flux, whose SDK sends in the background and never reports a
//! failure, Herald judges Sentry's answer: a 429 (`Retry-After`,
//! `X-Sentry-Rate-Limits`) or 5xx is retried, any other 4xx is a dead
//! letter with Sentry's `detail`.

use std::collections::BTreeMap;

use serde::Serialize;

use super::shared::{parse_url, scheme_and_host};
use super::{Input, Plan, Provider, ProviderError};
use crate::classify::Judge;
use crate::config::Resolved;
use crate::http::Request;
use herald_flux::FluxEvent;

/// `sentry`.
pub(super) struct Sentry;

/// What the envelopes say sent them.
const CLIENT: &str = concat!("herald/", env!("CARGO_PKG_VERSION"));

impl Provider for Sentry {
    fn plan(&self, input: &Input<'_>) -> Result<Plan, ProviderError> {
        let dsn = Dsn::parse(input.resolved)?;
        let ids = Ids::random();
        let now = herald_flux::GoTime::from(jiff::Timestamp::now()).to_rfc3339_utc();
        match build(input.resolved, &dsn, input.event, &ids, &now)? {
            Some(request) => Ok(Plan::Request(request)),
            None => Ok(Plan::Skip(
                "sentry: only error and info events are sent, as in Flux",
            )),
        }
    }
}

/// A parsed DSN. Holds the project's keys: never log it.
struct Dsn {
    /// `{scheme}://{host}[:port]{prefix}/api/{projectId}/envelope/`.
    envelope: reqwest::Url,
    public_key: String,
    /// The legacy secret key, when the DSN has one.
    secret_key: Option<String>,
}

impl Dsn {
    /// Parses the Provider's address as a DSN.
    fn parse(resolved: &Resolved) -> Result<Self, ProviderError> {
        if resolved.address.is_empty() {
            return Err(ProviderError::missing(
                "sentry",
                "DSN cannot be empty: set spec.address or the Secret's address to the project's DSN",
            ));
        }
        let invalid = |problem: &str| ProviderError::BadAddress {
            what: "sentry".into(),
            shown: resolved.address_for_logs(),
            reason: format!("invalid DSN: {problem}"),
        };
        let url = parse_url(resolved, "sentry", &resolved.address)?;
        if url.username().is_empty() {
            return Err(invalid("missing public key"));
        }
        let path = url.path().trim_end_matches('/');
        let (prefix, project) = path.rsplit_once('/').unwrap_or(("", path));
        if project.is_empty() {
            return Err(invalid("missing project ID"));
        }
        let envelope = parse_url(
            resolved,
            "sentry",
            &format!("{}{prefix}/api/{project}/envelope/", scheme_and_host(&url)),
        )?;
        Ok(Self {
            envelope,
            public_key: url.username().to_owned(),
            secret_key: url.password().map(str::to_owned),
        })
    }

    /// `X-Sentry-Auth`.
    fn auth(&self) -> String {
        let mut auth = format!(
            "Sentry sentry_version=7, sentry_client={CLIENT}, sentry_key={}",
            self.public_key
        );
        if let Some(secret) = &self.secret_key {
            auth.push_str(&format!(", sentry_secret={secret}"));
        }
        auth
    }
}

/// The random ids of one envelope.
struct Ids {
    /// 32 hex digits.
    event: String,
    /// 32 hex digits.
    trace: String,
    /// 16 hex digits.
    span: String,
}

impl Ids {
    fn random() -> Self {
        let hex64 = || format!("{:016x}", fastrand::u64(..));
        Self {
            event: hex64() + &hex64(),
            trace: hex64() + &hex64(),
            span: hex64(),
        }
    }
}

/// The SDK an envelope names.
#[derive(Serialize)]
struct Sdk {
    name: &'static str,
    version: &'static str,
}

const SDK: Sdk = Sdk {
    name: "herald",
    version: env!("CARGO_PKG_VERSION"),
};

/// The envelope's first line.
#[derive(Serialize)]
struct EnvelopeHeader<'a> {
    event_id: &'a str,
    sent_at: &'a str,
    sdk: Sdk,
}

/// The header line of the envelope's one item.
#[derive(Serialize)]
struct ItemHeader {
    #[serde(rename = "type")]
    kind: &'static str,
    length: usize,
    content_type: &'static str,
}

/// An error event.
#[derive(Serialize)]
struct ErrorEvent<'a> {
    event_id: &'a str,
    timestamp: &'a str,
    platform: &'static str,
    level: &'static str,
    server_name: &'a str,
    transaction: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    environment: &'a str,
    contexts: ErrorContexts<'a>,
    sdk: Sdk,
}

#[derive(Serialize)]
struct ErrorContexts<'a> {
    metadata: &'a BTreeMap<String, String>,
}

/// A transaction: the event as its one span (op `event`), starting and
/// ending at the event's time.
#[derive(Serialize)]
struct Transaction<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    event_id: &'a str,
    start_timestamp: &'a str,
    timestamp: &'a str,
    platform: &'static str,
    transaction: &'a str,
    transaction_info: TransactionInfo,
    message: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    environment: &'a str,
    tags: BTreeMap<&'a str, &'a str>,
    contexts: TransactionContexts<'a>,
    spans: [(); 0],
    sdk: Sdk,
}

#[derive(Serialize)]
struct TransactionInfo {
    source: &'static str,
}

#[derive(Serialize)]
struct TransactionContexts<'a> {
    trace: TraceContext<'a>,
}

#[derive(Serialize)]
struct TraceContext<'a> {
    trace_id: &'a str,
    span_id: &'a str,
    op: &'static str,
    description: &'a str,
    status: &'static str,
}

/// Builds the envelope of `event`, `None` for severities Flux does not send.
fn build(
    resolved: &Resolved,
    dsn: &Dsn,
    event: &FluxEvent,
    ids: &Ids,
    now: &str,
) -> Result<Option<Request>, ProviderError> {
    let o = &event.involved_object;
    let transaction = format!("{}: {}/{}", o.kind, o.namespace, o.name);
    // Go's zero time: the SDK stamps the event when it is sent.
    let timestamp = event
        .timestamp
        .map_or_else(|| now.to_owned(), |t| t.to_rfc3339_utc());
    let (kind, payload) = match event.severity.as_str() {
        "error" => (
            "event",
            herald_flux::gojson::to_vec(&ErrorEvent {
                event_id: &ids.event,
                timestamp: &timestamp,
                platform: "other",
                level: "error",
                server_name: &event.reporting_controller,
                transaction: &transaction,
                message: &event.message,
                environment: &resolved.channel,
                contexts: ErrorContexts {
                    metadata: &event.metadata,
                },
                sdk: SDK,
            }),
        ),
        "info" => {
            let mut tags = BTreeMap::from([
                ("flux_involved_object_kind", o.kind.as_str()),
                ("flux_involved_object_namespace", o.namespace.as_str()),
                ("flux_involved_object_name", o.name.as_str()),
                (
                    "flux_reporting_controller",
                    event.reporting_controller.as_str(),
                ),
                ("flux_reporting_instance", event.reporting_instance.as_str()),
                ("flux_reason", event.reason.as_str()),
            ]);
            tags.extend(event.metadata.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            // Sentry drops tags without a value (an event without a
            // reporting instance) and notes an error on the event for each.
            tags.retain(|_, value| !value.is_empty());
            (
                "transaction",
                herald_flux::gojson::to_vec(&Transaction {
                    kind: "transaction",
                    event_id: &ids.event,
                    start_timestamp: &timestamp,
                    timestamp: &timestamp,
                    platform: "other",
                    transaction: &transaction,
                    transaction_info: TransactionInfo { source: "custom" },
                    message: &event.message,
                    environment: &resolved.channel,
                    tags,
                    contexts: TransactionContexts {
                        trace: TraceContext {
                            trace_id: &ids.trace,
                            span_id: &ids.span,
                            op: "event",
                            description: &event.message,
                            status: "ok",
                        },
                    },
                    spans: [],
                    sdk: SDK,
                }),
            )
        }
        _ => return Ok(None),
    };
    let mut body = herald_flux::gojson::to_vec(&EnvelopeHeader {
        event_id: &ids.event,
        sent_at: now,
        sdk: SDK,
    });
    body.push(b'\n');
    body.extend(herald_flux::gojson::to_vec(&ItemHeader {
        kind,
        length: payload.len(),
        content_type: "application/json",
    }));
    body.push(b'\n');
    body.extend(payload);
    body.push(b'\n');
    let headers = vec![
        (
            "Content-Type".to_owned(),
            "application/x-sentry-envelope".to_owned(),
        ),
        ("X-Sentry-Auth".to_owned(), dsn.auth()),
    ];
    Ok(Some(
        Request::post(dsn.envelope.clone(), headers, body).judged_by(Judge::Sentry),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: &str = "2024-01-01T10:00:05Z";

    fn ids() -> Ids {
        Ids {
            event: "0123456789abcdef0123456789abcdef".into(),
            trace: "fedcba9876543210fedcba9876543210".into(),
            span: "0011223344556677".into(),
        }
    }

    fn event(severity: &str) -> FluxEvent {
        let mut e = FluxEvent::from_json(
            br#"{"involvedObject":{"kind":"Kustomization","namespace":"flux-system","name":"apps"},
                "timestamp":"2024-01-01T10:00:00Z","message":"apply <failed>",
                "reason":"ReconciliationFailed","metadata":{"revision":"main@sha1:abc"},
                "reportingController":"kustomize-controller","reportingInstance":"kc-0"}"#,
        )
        .unwrap();
        e.severity = severity.into();
        e
    }

    fn resolved(address: &str) -> Resolved {
        Resolved {
            provider_type: "sentry".into(),
            address: address.into(),
            channel: "production".into(),
            ..Resolved::default()
        }
    }

    fn envelope(severity: &str) -> Request {
        let r = resolved("https://abc123@o1.ingest.sentry.io/42");
        let dsn = Dsn::parse(&r).unwrap();
        build(&r, &dsn, &event(severity), &ids(), NOW)
            .unwrap()
            .expect("sent")
    }

    fn lines(request: &Request) -> Vec<String> {
        let text = String::from_utf8(request.body.clone()).unwrap();
        assert!(text.ends_with('\n'));
        text.lines().map(str::to_owned).collect()
    }

    #[test]
    fn dsns_give_the_envelope_url_and_auth() {
        let dsn = Dsn::parse(&resolved("https://abc123@o1.ingest.sentry.io/42")).unwrap();
        assert_eq!(
            dsn.envelope.as_str(),
            "https://o1.ingest.sentry.io/api/42/envelope/"
        );
        assert_eq!(
            dsn.auth(),
            format!("Sentry sentry_version=7, sentry_client={CLIENT}, sentry_key=abc123")
        );
        let prefixed = Dsn::parse(&resolved("http://key:old@sentry.local:9000/sentry/7/")).unwrap();
        assert_eq!(
            prefixed.envelope.as_str(),
            "http://sentry.local:9000/sentry/api/7/envelope/"
        );
        assert!(
            prefixed
                .auth()
                .ends_with("sentry_key=key, sentry_secret=old")
        );
        for (address, problem) in [
            ("", "DSN cannot be empty"),
            ("https://o1.ingest.sentry.io/42", "missing public key"),
            ("https://abc@o1.ingest.sentry.io/", "missing project ID"),
            ("ftp://abc@o1.ingest.sentry.io/42", "must be http or https"),
        ] {
            let error = Dsn::parse(&resolved(address)).err().unwrap().to_string();
            assert!(error.contains(problem), "{address}: {error}");
        }
    }

    #[test]
    fn an_error_is_an_event_item() {
        let request = envelope("error");
        assert!(request.headers.contains(&(
            "Content-Type".to_owned(),
            "application/x-sentry-envelope".to_owned()
        )));
        let lines = lines(&request);
        assert_eq!(lines.len(), 3);
        assert_eq!(
            lines[0],
            format!(
                r#"{{"event_id":"0123456789abcdef0123456789abcdef","sent_at":"{NOW}","sdk":{{"name":"herald","version":"{}"}}}}"#,
                env!("CARGO_PKG_VERSION")
            )
        );
        assert_eq!(
            lines[1],
            format!(
                r#"{{"type":"event","length":{},"content_type":"application/json"}}"#,
                lines[2].len()
            )
        );
        assert_eq!(
            lines[2],
            format!(
                concat!(
                    r#"{{"event_id":"0123456789abcdef0123456789abcdef","timestamp":"2024-01-01T10:00:00Z","#,
                    r#""platform":"other","level":"error","server_name":"kustomize-controller","#,
                    r#""transaction":"Kustomization: flux-system/apps","message":"apply \u003cfailed\u003e","#,
                    r#""environment":"production","contexts":{{"metadata":{{"revision":"main@sha1:abc"}}}},"#,
                    r#""sdk":{{"name":"herald","version":"{}"}}}}"#
                ),
                env!("CARGO_PKG_VERSION")
            )
        );
    }

    #[test]
    fn info_is_a_transaction_item() {
        let lines = lines(&envelope("info"));
        assert_eq!(
            lines[1],
            format!(
                r#"{{"type":"transaction","length":{},"content_type":"application/json"}}"#,
                lines[2].len()
            )
        );
        assert_eq!(
            lines[2],
            format!(
                concat!(
                    r#"{{"type":"transaction","event_id":"0123456789abcdef0123456789abcdef","#,
                    r#""start_timestamp":"2024-01-01T10:00:00Z","timestamp":"2024-01-01T10:00:00Z","#,
                    r#""platform":"other","transaction":"Kustomization: flux-system/apps","#,
                    r#""transaction_info":{{"source":"custom"}},"message":"apply \u003cfailed\u003e","#,
                    r#""environment":"production","tags":{{"flux_involved_object_kind":"Kustomization","#,
                    r#""flux_involved_object_name":"apps","flux_involved_object_namespace":"flux-system","#,
                    r#""flux_reason":"ReconciliationFailed","flux_reporting_controller":"kustomize-controller","#,
                    r#""flux_reporting_instance":"kc-0","revision":"main@sha1:abc"}},"#,
                    r#""contexts":{{"trace":{{"trace_id":"fedcba9876543210fedcba9876543210","#,
                    r#""span_id":"0011223344556677","op":"event","description":"apply \u003cfailed\u003e","status":"ok"}}}},"#,
                    r#""spans":[],"sdk":{{"name":"herald","version":"{}"}}}}"#
                ),
                env!("CARGO_PKG_VERSION")
            )
        );
    }

    #[test]
    fn empty_tags_are_left_out() {
        let r = resolved("https://abc123@o1.ingest.sentry.io/42");
        let dsn = Dsn::parse(&r).unwrap();
        let mut e = event("info");
        e.reporting_instance.clear();
        let request = build(&r, &dsn, &e, &ids(), NOW).unwrap().unwrap();
        let item: serde_json::Value = serde_json::from_str(lines(&request)[2].as_str()).unwrap();
        assert!(item["tags"].get("flux_reporting_instance").is_none());
        assert_eq!(item["tags"]["flux_reason"], "ReconciliationFailed");
    }

    #[test]
    fn other_severities_are_skipped_and_ids_are_random() {
        let r = resolved("https://abc123@o1.ingest.sentry.io/42");
        let dsn = Dsn::parse(&r).unwrap();
        assert!(
            build(&r, &dsn, &event("trace"), &ids(), NOW)
                .unwrap()
                .is_none()
        );
        let (a, b) = (Ids::random(), Ids::random());
        assert_eq!((a.event.len(), a.trace.len(), a.span.len()), (32, 32, 16));
        assert!(a.event.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a.event, b.event);
    }
}
