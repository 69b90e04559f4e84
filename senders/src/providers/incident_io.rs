//! `incident.io`: an alert event posted to an HTTP alert source, firing on
//! errors and resolving otherwise (flux-providers §4.14).

use std::collections::BTreeMap;

use serde::Serialize;

use super::shared::{bearer, is_error, json_content, object_name, parse_address};
use super::{Input, Plan, Provider, ProviderError};
use crate::config::Resolved;
use crate::http::Request;
use herald_flux::FluxEvent;

/// `incident.io`.
pub(super) struct IncidentIo;

/// The reason Flux skips: neither a failure nor a recovery yet.
const PROGRESSING: &str = "Progressing";

impl Provider for IncidentIo {
    fn plan(&self, input: &Input<'_>) -> Result<Plan, ProviderError> {
        let request = build(input.resolved, input.event)?;
        if input.event.reason == PROGRESSING {
            return Ok(Plan::Skip(
                "incident.io: Progressing events neither fire nor resolve an alert",
            ));
        }
        Ok(Plan::Request(request))
    }
}

/// Flux's `IncidentioPayload` (`source_url` is never set).
#[derive(Serialize)]
struct Payload<'a> {
    title: String,
    status: &'a str,
    deduplication_key: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    description: &'a str,
    metadata: BTreeMap<&'a str, &'a str>,
}

/// Builds the incident.io request: the Secret's `token` is the alert
/// source's bearer token; the involved object's UID is the deduplication
/// key, so a recovery resolves what a failure fired.
fn build(resolved: &Resolved, event: &FluxEvent) -> Result<Request, ProviderError> {
    let url = parse_address(resolved, "incident.io")?;
    if resolved.token.is_empty() {
        return Err(ProviderError::missing(
            "incident.io",
            "empty incident.io API token: set token in the Provider's Secret",
        ));
    }
    let mut metadata: BTreeMap<&str, &str> = event
        .metadata
        .iter()
        .map(|(key, value)| (key.as_str(), value.as_str()))
        .collect();
    metadata.insert("severity", &event.severity);
    metadata.insert("reason", &event.reason);
    if !event.reporting_controller.is_empty() {
        metadata.insert("reportingController", &event.reporting_controller);
    }
    let payload = Payload {
        title: format!("{}: {}", object_name(event), event.reason),
        status: if is_error(event) {
            "firing"
        } else {
            "resolved"
        },
        deduplication_key: &event.involved_object.uid,
        description: &event.message,
        metadata,
    };
    let headers = vec![
        json_content(),
        ("Authorization".to_owned(), bearer(&resolved.token)),
    ];
    Ok(Request::post(
        url,
        headers,
        herald_flux::gojson::to_vec(&payload),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(severity: &str, reason: &str) -> FluxEvent {
        let mut e = FluxEvent::from_json(
            br#"{"involvedObject":{"kind":"HelmRelease","namespace":"apps","name":"podinfo",
                "uid":"7d0cdc51-2a5b-4a3e-9a4b-3c5e1f2a0b11"},
                "message":"install <retries> & \"exhausted\"",
                "reportingController":"helm-controller"}"#,
        )
        .unwrap();
        e.severity = severity.into();
        e.reason = reason.into();
        e.metadata = BTreeMap::from([
            ("revision".to_owned(), "6.5.0".to_owned()),
            // An event key named like Flux's own is overwritten by it.
            ("severity".to_owned(), "from-metadata".to_owned()),
        ]);
        e
    }

    fn resolved() -> Resolved {
        Resolved {
            provider_type: "incident.io".into(),
            address: "https://api.incident.io/v2/alert_events/http/01HXYZ".into(),
            token: "inc-token".into(),
            ..Resolved::default()
        }
    }

    fn plan(resolved: &Resolved, event: &FluxEvent) -> Result<Plan, ProviderError> {
        let identifier = || Err(String::new());
        IncidentIo.plan(&Input {
            event,
            alert: &crate::providers::AlertIdentity::default(),
            resolved,
            identifier: &identifier,
            thread: None,
        })
    }

    #[test]
    fn error_fires_with_flux_bytes() {
        let Ok(Plan::Request(request)) = plan(&resolved(), &event("error", "InstallFailed")) else {
            panic!("an error event is sent");
        };
        assert!(
            request
                .headers
                .contains(&("Authorization".to_owned(), "Bearer inc-token".to_owned()))
        );
        assert_eq!(
            String::from_utf8(request.body).unwrap(),
            concat!(
                r#"{"title":"helmrelease/podinfo.apps: InstallFailed","status":"firing","#,
                r#""deduplication_key":"7d0cdc51-2a5b-4a3e-9a4b-3c5e1f2a0b11","#,
                r#""description":"install \u003cretries\u003e \u0026 \"exhausted\"","#,
                r#""metadata":{"reason":"InstallFailed","reportingController":"helm-controller","#,
                r#""revision":"6.5.0","severity":"error"}}"#
            )
        );
    }

    #[test]
    fn info_resolves_and_empty_fields_follow_go() {
        let mut e = event("info", "InstallSucceeded");
        e.message.clear();
        e.reporting_controller.clear();
        e.involved_object.uid.clear();
        e.metadata.clear();
        let Ok(Plan::Request(request)) = plan(&resolved(), &e) else {
            panic!("an info event is sent");
        };
        assert_eq!(
            String::from_utf8(request.body).unwrap(),
            concat!(
                r#"{"title":"helmrelease/podinfo.apps: InstallSucceeded","status":"resolved","#,
                r#""deduplication_key":"","metadata":{"reason":"InstallSucceeded","severity":"info"}}"#
            )
        );
    }

    #[test]
    fn progressing_is_skipped_but_progressing_with_retry_is_not() {
        assert!(matches!(
            plan(&resolved(), &event("info", "Progressing")),
            Ok(Plan::Skip(_))
        ));
        assert!(matches!(
            plan(&resolved(), &event("info", "ProgressingWithRetry")),
            Ok(Plan::Request(_))
        ));
    }

    #[test]
    fn a_token_is_required_even_for_skipped_events() {
        let mut no_token = resolved();
        no_token.token.clear();
        for reason in ["Progressing", "InstallFailed"] {
            let error = plan(&no_token, &event("error", reason)).err().unwrap();
            assert!(error.to_string().contains("empty incident.io API token"));
        }
    }
}
