//! `opsgenie`: an alert created through Opsgenie's Alert API
//! (flux-providers §5.1), posted to the address as given (usually
//! `https://api.opsgenie.com/v2/alerts`, or `api.eu.opsgenie.com`). Its
//! alias keys it per Provider, object and reason, so Opsgenie folds repeats
//! into one alert.

use std::collections::BTreeMap;

use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::shared::{json_content, parse_address};
use super::{Input, Plan, Provider, ProviderError};
use crate::classify::Judge;
use crate::config::Resolved;
use crate::http::Request;
use herald_flux::FluxEvent;

/// `opsgenie`.
pub(super) struct Opsgenie;

impl Provider for Opsgenie {
    fn plan(&self, input: &Input<'_>) -> Result<Plan, ProviderError> {
        build(input.resolved, input.event).map(Plan::Request)
    }
}

/// Flux's `OpsgenieAlert`.
#[derive(Serialize)]
struct Alert<'a> {
    message: String,
    alias: String,
    description: &'a str,
    details: BTreeMap<&'a str, &'a str>,
}

/// The alias: the lower-case hex SHA-256 of
/// `{providerUID}/{Kind}/{Namespace}/{Name}/{Reason}`.
fn alias(resolved: &Resolved, event: &FluxEvent) -> String {
    let o = &event.involved_object;
    let key = format!(
        "{}/{}/{}/{}/{}",
        resolved.provider_uid, o.kind, o.namespace, o.name, event.reason
    );
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Builds the alert request; the Secret's `token` is the API key.
fn build(resolved: &Resolved, event: &FluxEvent) -> Result<Request, ProviderError> {
    let url = parse_address(resolved, "opsgenie")?;
    if resolved.token.is_empty() {
        return Err(ProviderError::missing(
            "opsgenie",
            "empty Opsgenie apikey/token: set token in the Provider's Secret",
        ));
    }
    let mut details: BTreeMap<&str, &str> = event
        .metadata
        .iter()
        .map(|(key, value)| (key.as_str(), value.as_str()))
        .collect();
    details.insert("severity", &event.severity);
    let o = &event.involved_object;
    let alert = Alert {
        message: format!("{}/{}", o.kind, o.name),
        alias: alias(resolved, event),
        description: &event.message,
        details,
    };
    let headers = vec![
        json_content(),
        (
            "Authorization".to_owned(),
            format!("GenieKey {}", resolved.token),
        ),
    ];
    Ok(Request::post(url, headers, herald_flux::gojson::to_vec(&alert)).judged_by(Judge::Opsgenie))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> FluxEvent {
        FluxEvent::from_json(
            br#"{"involvedObject":{"kind":"Kustomization","namespace":"flux-system","name":"apps"},
                "severity":"error","timestamp":"2024-01-01T10:00:00Z","message":"apply <failed>",
                "reason":"ReconciliationFailed","metadata":{"revision":"main@sha1:abc"},
                "reportingController":"kustomize-controller"}"#,
        )
        .unwrap()
    }

    fn resolved() -> Resolved {
        Resolved {
            provider_type: "opsgenie".into(),
            address: "https://api.opsgenie.com/v2/alerts".into(),
            token: "genie-key".into(),
            provider_uid: "0c5e1f2a-0b11-4a3e-9a4b-7d0cdc512a5b".into(),
            ..Resolved::default()
        }
    }

    #[test]
    fn the_alert_has_flux_bytes_and_a_genie_key() {
        let request = build(&resolved(), &event()).unwrap();
        assert_eq!(request.url.as_str(), "https://api.opsgenie.com/v2/alerts");
        assert!(
            request
                .headers
                .contains(&("Authorization".to_owned(), "GenieKey genie-key".to_owned()))
        );
        let alias = hex::encode(Sha256::digest(
            b"0c5e1f2a-0b11-4a3e-9a4b-7d0cdc512a5b/Kustomization/flux-system/apps/ReconciliationFailed",
        ));
        assert_eq!(alias.len(), 64);
        assert_eq!(
            String::from_utf8(request.body).unwrap(),
            format!(
                concat!(
                    r#"{{"message":"Kustomization/apps","alias":"{}","#,
                    r#""description":"apply \u003cfailed\u003e","#,
                    r#""details":{{"revision":"main@sha1:abc","severity":"error"}}}}"#
                ),
                alias
            )
        );
    }

    #[test]
    fn the_alias_differs_by_reason_and_provider_only() {
        let (r, e) = (resolved(), event());
        let mut other_message = e.clone();
        other_message.message = "something else".into();
        assert_eq!(alias(&r, &e), alias(&r, &other_message));
        let mut other_reason = e.clone();
        other_reason.reason = "HealthCheckFailed".into();
        assert_ne!(alias(&r, &e), alias(&r, &other_reason));
        let mut other_provider = r.clone();
        other_provider.provider_uid = "another".into();
        assert_ne!(alias(&r, &e), alias(&other_provider, &e));
    }

    #[test]
    fn no_metadata_still_has_the_severity_and_a_token_is_required() {
        let mut e = event();
        e.metadata.clear();
        e.severity = "info".into();
        let body = build(&resolved(), &e).unwrap().body;
        assert!(
            String::from_utf8(body)
                .unwrap()
                .ends_with(r#""details":{"severity":"info"}}"#)
        );
        let mut r = resolved();
        r.token.clear();
        let error = build(&r, &e).err().unwrap();
        assert!(error.to_string().contains("empty Opsgenie apikey/token"));
    }
}
