//! `datadog`: an event posted to Datadog's Events API v1
//! (flux-providers §5.5). Only the scheme and host of the address are used
//! (the site: `https://api.datadoghq.com`, `https://api.datadoghq.eu`, ...);
//! the Secret's `token` is the API key.

use serde::Serialize;

use super::shared::{is_error, json_content, parse_address, parse_url, scheme_and_host};
use super::{Input, Plan, Provider, ProviderError};
use crate::classify::Judge;
use crate::config::Resolved;
use crate::http::Request;
use herald_flux::FluxEvent;
use herald_flux::git::go_lowercase;

/// Go's `time.Time{}.Unix()`: the `date_happened` of an event without a
/// timestamp.
const GO_ZERO_TIME_UNIX: i64 = -62_135_596_800;

/// `datadog`.
pub(super) struct Datadog;

impl Provider for Datadog {
    fn plan(&self, input: &Input<'_>) -> Result<Plan, ProviderError> {
        build(input.resolved, input.event).map(Plan::Request)
    }
}

/// The client's `EventCreateRequest`, keys sorted as its marshaller writes
/// them.
#[derive(Serialize)]
struct EventCreate<'a> {
    alert_type: &'static str,
    date_happened: i64,
    source_type_name: &'static str,
    tags: Vec<String>,
    text: &'a str,
    title: String,
}

/// Builds the event request.
fn build(resolved: &Resolved, event: &FluxEvent) -> Result<Request, ProviderError> {
    if resolved.token.is_empty() {
        return Err(ProviderError::missing(
            "datadog",
            "token cannot be empty: set token in the Provider's Secret to a Datadog API key",
        ));
    }
    let site = scheme_and_host(&parse_address(resolved, "datadog")?);
    let url = parse_url(resolved, "datadog", &format!("{site}/api/v1/events"))?;
    let o = &event.involved_object;
    let mut tags = vec![
        format!("flux_reporting_controller:{}", event.reporting_controller),
        format!("flux_reason:{}", event.reason),
        format!("kube_kind:{}", o.kind),
        format!("kube_name:{}", o.name),
        format!("kube_namespace:{}", o.namespace),
    ];
    tags.extend(event.metadata.iter().map(|(k, v)| format!("{k}:{v}")));
    let body = EventCreate {
        alert_type: if is_error(event) { "error" } else { "info" },
        date_happened: event
            .timestamp
            .map_or(GO_ZERO_TIME_UNIX, herald_flux::GoTime::unix_seconds),
        source_type_name: "fluxcd",
        tags: tags.iter().map(|t| go_lowercase(t)).collect(),
        text: &event.message,
        title: format!("Events from the {} {}/{}", o.kind, o.name, o.namespace),
    };
    let headers = vec![
        json_content(),
        ("Accept".to_owned(), "application/json".to_owned()),
        ("DD-API-KEY".to_owned(), resolved.token.clone()),
    ];
    Ok(Request::post(url, headers, herald_flux::gojson::to_vec(&body)).judged_by(Judge::Datadog))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> FluxEvent {
        FluxEvent::from_json(
            br#"{"involvedObject":{"kind":"HelmRelease","namespace":"Apps","name":"PodInfo"},
                "severity":"error","timestamp":"2024-01-01T10:00:00Z","message":"upgrade <failed>",
                "reason":"UpgradeFailed","metadata":{"Revision":"6.5.0","a":"B"},
                "reportingController":"helm-controller"}"#,
        )
        .unwrap()
    }

    fn resolved() -> Resolved {
        Resolved {
            provider_type: "datadog".into(),
            address: "https://api.datadoghq.eu/ignored/path".into(),
            token: "dd-api-key".into(),
            ..Resolved::default()
        }
    }

    #[test]
    fn the_event_has_flux_bytes_and_the_api_key() {
        let request = build(&resolved(), &event()).unwrap();
        assert_eq!(
            request.url.as_str(),
            "https://api.datadoghq.eu/api/v1/events"
        );
        for header in [
            ("DD-API-KEY", "dd-api-key"),
            ("Content-Type", "application/json"),
            ("Accept", "application/json"),
        ] {
            assert!(
                request
                    .headers
                    .contains(&(header.0.to_owned(), header.1.to_owned())),
                "{header:?}"
            );
        }
        assert_eq!(
            String::from_utf8(request.body).unwrap(),
            concat!(
                r#"{"alert_type":"error","date_happened":1704103200,"source_type_name":"fluxcd","#,
                r#""tags":["flux_reporting_controller:helm-controller","flux_reason:upgradefailed","#,
                r#""kube_kind:helmrelease","kube_name:podinfo","kube_namespace:apps","revision:6.5.0","a:b"],"#,
                r#""text":"upgrade \u003cfailed\u003e","title":"Events from the HelmRelease PodInfo/Apps"}"#
            )
        );
    }

    #[test]
    fn info_and_missing_values() {
        let mut e = event();
        e.severity = "trace".into();
        e.timestamp = None;
        let body: serde_json::Value =
            serde_json::from_slice(&build(&resolved(), &e).unwrap().body).unwrap();
        assert_eq!(body["alert_type"], "info");
        assert_eq!(body["date_happened"], GO_ZERO_TIME_UNIX);
        let mut r = resolved();
        r.token.clear();
        let error = build(&r, &e).err().unwrap();
        assert!(error.to_string().contains("token cannot be empty"));
        let mut r = resolved();
        r.address = "not a url".into();
        assert!(matches!(
            build(&r, &e),
            Err(ProviderError::BadAddress { .. })
        ));
    }
}
