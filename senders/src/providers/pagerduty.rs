//! `pagerduty`: PagerDuty's Events API v2 (flux-providers §5.4). An error
//! triggers an alert keyed by the involved object's uid; any other event
//! resolves it, and an `info` event is also recorded as a change event.
//! The routing key is `spec.channel`; only the scheme and host of the
//! address are used (`https://events.pagerduty.com`, or
//! `https://events.eu.pagerduty.com`).
//!
//! An `info` event is two requests in one attempt (an [`Exchange`]): the
//! resolve, then the change event. A failed attempt is retried whole, so a
//! retry after the change event failed sends the resolve again. That is
//! harmless: PagerDuty keys alerts by `dedup_key` and resolving an alert
//! that is resolved (or was never triggered) changes nothing. The change
//! event is sent last and only once the resolve is accepted; it can only
//! repeat if PagerDuty accepted it and its answer was lost.

use std::collections::BTreeMap;

use serde::Serialize;

use super::shared::{is_error, json_content, parse_address, parse_url, scheme_and_host};
use super::{Clients, Exchange, Input, Plan, Provider, ProviderError, Writing};
use crate::classify::{self, Judge};
use crate::config::Resolved;
use crate::http::HttpSender;
use crate::outcome::Outcome;
use herald_flux::FluxEvent;

/// `pagerduty`.
pub(super) struct PagerDuty;

/// The reason Flux skips: neither a failure nor a recovery yet.
const PROGRESSING: &str = "Progressing";

/// Go's zero `time.Time` as RFC 3339: the timestamp of an event without one.
const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

impl Provider for PagerDuty {
    fn plan(&self, input: &Input<'_>) -> Result<Plan, ProviderError> {
        let calls = build(input.resolved, input.event)?;
        if input.event.reason == PROGRESSING {
            return Ok(Plan::Skip(
                "pagerduty: Progressing events neither trigger nor resolve an alert",
            ));
        }
        Ok(Plan::Exchange(Box::new(calls)))
    }
}

/// go-pagerduty's `V2Event`, as Flux fills it.
#[derive(Serialize)]
struct Event<'a> {
    routing_key: &'a str,
    event_action: &'static str,
    #[serde(skip_serializing_if = "str::is_empty")]
    dedup_key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<Payload<'a>>,
}

/// go-pagerduty's `V2Payload`.
#[derive(Serialize)]
struct Payload<'a> {
    summary: &'a str,
    source: &'a str,
    severity: &'static str,
    timestamp: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    component: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    group: &'a str,
    custom_details: Details<'a>,
}

/// go-pagerduty's `ChangeEvent`.
#[derive(Serialize)]
struct ChangeEvent<'a> {
    routing_key: &'a str,
    payload: ChangePayload<'a>,
}

#[derive(Serialize)]
struct ChangePayload<'a> {
    summary: &'a str,
    source: &'a str,
    timestamp: &'a str,
    custom_details: Details<'a>,
}

/// `{"message", "metadata"}`; Go writes `null` for no metadata.
#[derive(Serialize)]
struct Details<'a> {
    message: &'a str,
    metadata: Option<&'a BTreeMap<String, String>>,
}

/// The requests of one event. Holds the routing key: never log it.
struct Calls {
    event: (reqwest::Url, Vec<u8>),
    /// Only for `info` events.
    change: Option<(reqwest::Url, Vec<u8>)>,
}

/// Builds the event (and the change event of an `info` event).
fn build(resolved: &Resolved, event: &FluxEvent) -> Result<Calls, ProviderError> {
    let endpoint = scheme_and_host(&parse_address(resolved, "pagerduty")?);
    let routing_key = resolved.channel.as_str();
    if routing_key.is_empty() {
        return Err(ProviderError::missing(
            "pagerduty",
            "empty routing key: set spec.channel to the integration's routing key",
        ));
    }
    let (name, description) = herald_flux::git::name_and_description(event);
    let summary = format!("{description}: {name}");
    let source = format!("Flux {}", event.reporting_controller);
    let timestamp = event
        .timestamp
        .map_or_else(|| GO_ZERO_TIME.to_owned(), |t| t.to_rfc3339_utc());
    let details = || Details {
        message: &event.message,
        metadata: (!event.metadata.is_empty()).then_some(&event.metadata),
    };
    let o = &event.involved_object;
    let error = is_error(event);
    let body = Event {
        routing_key,
        event_action: if error { "trigger" } else { "resolve" },
        dedup_key: &o.uid,
        payload: error.then(|| Payload {
            summary: &summary,
            source: &source,
            severity: "error",
            timestamp: &timestamp,
            component: &o.name,
            group: &o.kind,
            custom_details: details(),
        }),
    };
    let url = |path: &str| parse_url(resolved, "pagerduty", &format!("{endpoint}{path}"));
    let change = (event.severity == "info")
        .then(|| -> Result<_, ProviderError> {
            let body = ChangeEvent {
                routing_key,
                payload: ChangePayload {
                    summary: &summary,
                    source: &source,
                    timestamp: &timestamp,
                    custom_details: details(),
                },
            };
            Ok((
                url("/v2/change/enqueue")?,
                herald_flux::gojson::to_vec(&body),
            ))
        })
        .transpose()?;
    Ok(Calls {
        event: (url("/v2/enqueue")?, herald_flux::gojson::to_vec(&body)),
        change,
    })
}

impl Exchange for Calls {
    fn run<'a>(&'a self, clients: &'a Clients, resolved: &'a Resolved) -> Writing<'a> {
        Box::pin(run(&clients.http, resolved, self))
    }
}

async fn run(http: &HttpSender, resolved: &Resolved, calls: &Calls) -> Outcome {
    let (url, body) = &calls.event;
    let sent = post(http, resolved, url, body, "failed sending event").await;
    let Some((url, body)) = &calls.change else {
        return sent;
    };
    if !matches!(sent, Outcome::Delivered { .. }) {
        return sent;
    }
    post(http, resolved, url, body, "failed sending change event").await
}

/// POSTs one JSON body, judged as PagerDuty's answer (the reason starting
/// with `what`).
async fn post(
    http: &HttpSender,
    resolved: &Resolved,
    url: &reqwest::Url,
    body: &[u8],
    what: &str,
) -> Outcome {
    let headers = [json_content()];
    match http
        .call(
            reqwest::Method::POST,
            url.clone(),
            &headers,
            Some(body.to_vec()),
            resolved,
        )
        .await
    {
        Ok(answer) => classify::classify(
            &answer,
            Judge::PagerDuty,
            &crate::http::masker(resolved, url),
            what,
        ),
        Err(outcome) => outcome,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "R0UT1NGKEY0123456789abcdefABCDEF";

    fn event(severity: &str, reason: &str) -> FluxEvent {
        let mut e = FluxEvent::from_json(
            br#"{"involvedObject":{"kind":"HelmRelease","namespace":"apps","name":"podinfo",
                "uid":"7d0cdc51-2a5b-4a3e-9a4b-3c5e1f2a0b11"},
                "timestamp":"2024-01-01T10:00:00Z",
                "message":"install <retries> exhausted",
                "reportingController":"helm-controller"}"#,
        )
        .unwrap();
        e.severity = severity.into();
        e.reason = reason.into();
        e.metadata = BTreeMap::from([("revision".to_owned(), "6.5.0".to_owned())]);
        e
    }

    fn resolved() -> Resolved {
        Resolved {
            provider_type: "pagerduty".into(),
            // The path is dropped: only scheme and host are used.
            address: "https://events.pagerduty.com/v2/enqueue".into(),
            channel: KEY.into(),
            ..Resolved::default()
        }
    }

    fn calls(resolved: &Resolved, event: &FluxEvent) -> Calls {
        let identifier = || Err(String::new());
        let plan = PagerDuty.plan(&Input {
            event,
            alert: &crate::providers::AlertIdentity::default(),
            resolved,
            identifier: &identifier,
            thread: None,
        });
        let Ok(Plan::Exchange(_)) = plan else {
            panic!("an exchange is planned");
        };
        build(resolved, event).unwrap()
    }

    fn text(bytes: &[u8]) -> &str {
        std::str::from_utf8(bytes).unwrap()
    }

    #[test]
    fn an_error_triggers_with_flux_bytes() {
        let c = calls(&resolved(), &event("error", "InstallFailed"));
        assert_eq!(
            c.event.0.as_str(),
            "https://events.pagerduty.com/v2/enqueue"
        );
        assert_eq!(
            text(&c.event.1),
            concat!(
                r#"{"routing_key":"R0UT1NGKEY0123456789abcdefABCDEF","event_action":"trigger","#,
                r#""dedup_key":"7d0cdc51-2a5b-4a3e-9a4b-3c5e1f2a0b11","#,
                r#""payload":{"summary":"install failed: helmrelease/podinfo","#,
                r#""source":"Flux helm-controller","severity":"error","#,
                r#""timestamp":"2024-01-01T10:00:00Z","component":"podinfo","group":"HelmRelease","#,
                r#""custom_details":{"message":"install \u003cretries\u003e exhausted","#,
                r#""metadata":{"revision":"6.5.0"}}}}"#
            )
        );
        assert!(c.change.is_none(), "an error sends no change event");
    }

    #[test]
    fn info_resolves_and_sends_a_change_event() {
        let mut e = event("info", "InstallSucceeded");
        e.metadata.clear();
        let c = calls(&resolved(), &e);
        assert_eq!(
            text(&c.event.1),
            concat!(
                r#"{"routing_key":"R0UT1NGKEY0123456789abcdefABCDEF","event_action":"resolve","#,
                r#""dedup_key":"7d0cdc51-2a5b-4a3e-9a4b-3c5e1f2a0b11"}"#
            )
        );
        let (url, body) = c.change.expect("a change event for info");
        assert_eq!(
            url.as_str(),
            "https://events.pagerduty.com/v2/change/enqueue"
        );
        assert_eq!(
            text(&body),
            concat!(
                r#"{"routing_key":"R0UT1NGKEY0123456789abcdefABCDEF","#,
                r#""payload":{"summary":"install succeeded: helmrelease/podinfo","#,
                r#""source":"Flux helm-controller","timestamp":"2024-01-01T10:00:00Z","#,
                r#""custom_details":{"message":"install \u003cretries\u003e exhausted","metadata":null}}}"#
            )
        );
    }

    #[test]
    fn trace_only_resolves_and_progressing_is_skipped() {
        let mut e = event("trace", "DependencyNotReady");
        e.involved_object.uid.clear();
        let c = calls(&resolved(), &e);
        assert_eq!(
            text(&c.event.1),
            r#"{"routing_key":"R0UT1NGKEY0123456789abcdefABCDEF","event_action":"resolve"}"#
        );
        assert!(c.change.is_none());
        let identifier = || Err(String::new());
        let progressing = event("info", "Progressing");
        assert!(matches!(
            PagerDuty.plan(&Input {
                event: &progressing,
                alert: &crate::providers::AlertIdentity::default(),
                resolved: &resolved(),
                identifier: &identifier,
                thread: None,
            }),
            Ok(Plan::Skip(_))
        ));
    }

    #[test]
    fn the_endpoint_keeps_scheme_host_and_port_only() {
        let mut r = resolved();
        r.address = "http://127.0.0.1:8080/some/path?x=1".into();
        let c = calls(&r, &event("info", "InstallSucceeded"));
        assert_eq!(c.event.0.as_str(), "http://127.0.0.1:8080/v2/enqueue");
        assert_eq!(
            c.change.unwrap().0.as_str(),
            "http://127.0.0.1:8080/v2/change/enqueue"
        );
    }

    #[test]
    fn a_routing_key_and_an_address_are_required() {
        let mut r = resolved();
        r.channel.clear();
        let error = build(&r, &event("error", "InstallFailed")).err().unwrap();
        assert!(error.to_string().contains("empty routing key"), "{error}");
        let mut r = resolved();
        r.address = "events.pagerduty.com".into();
        assert!(matches!(
            build(&r, &event("error", "InstallFailed")),
            Err(ProviderError::BadAddress { .. })
        ));
    }
}
