//! `alertmanager`: one firing alert posted to Alertmanager's v2 API
//! (flux-providers §5.2), to the address as given (usually
//! `https://{host}/api/v2/alerts`).

use std::collections::BTreeMap;

use serde::Serialize;

use super::shared::{basic, bearer, json_content, parse_address};
use super::{Input, Plan, Provider, ProviderError};
use crate::config::Resolved;
use crate::http::Request;
use herald_flux::FluxEvent;

/// `alertmanager`.
pub(super) struct Alertmanager;

impl Provider for Alertmanager {
    fn plan(&self, input: &Input<'_>) -> Result<Plan, ProviderError> {
        build(input.resolved, input.event).map(Plan::Request)
    }
}

/// Go's zero `time.Time` as `time.RFC3339` writes it: the `endsAt` Flux
/// always sends (Alertmanager then resolves the alert after its
/// `resolve_timeout`), and the `startsAt` of an event without a timestamp.
const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// The metadata key Flux moves from the labels to the annotations.
const SUMMARY: &str = "summary";

/// Flux's `AlertManagerAlert`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Alert<'a> {
    status: &'a str,
    labels: BTreeMap<&'a str, &'a str>,
    annotations: BTreeMap<&'a str, &'a str>,
    starts_at: String,
    ends_at: &'a str,
}

/// Builds the request: a JSON array of one alert.
fn build(resolved: &Resolved, event: &FluxEvent) -> Result<Request, ProviderError> {
    let url = parse_address(resolved, "alertmanager")?;
    let o = &event.involved_object;
    let alertname = format!("Flux{}{}", o.kind, go_title(&event.reason));
    let mut labels: BTreeMap<&str, &str> = event
        .metadata
        .iter()
        .filter(|(key, _)| key.as_str() != SUMMARY)
        .map(|(key, value)| (key.as_str(), value.as_str()))
        .collect();
    // Flux's own labels overwrite metadata keys of the same name.
    labels.insert("alertname", &alertname);
    labels.insert("severity", &event.severity);
    labels.insert("reason", &event.reason);
    labels.insert("kind", &o.kind);
    labels.insert("name", &o.name);
    labels.insert("namespace", &o.namespace);
    labels.insert("reportingcontroller", &event.reporting_controller);
    let mut annotations = BTreeMap::from([("message", event.message.as_str())]);
    if let Some(summary) = event.metadata.get(SUMMARY) {
        annotations.insert(SUMMARY, summary);
    }
    let alert = Alert {
        status: "firing",
        labels,
        annotations,
        starts_at: event.timestamp.map_or_else(
            || GO_ZERO_TIME.to_owned(),
            herald_flux::GoTime::to_rfc3339_utc,
        ),
        ends_at: GO_ZERO_TIME,
    };
    let mut headers = vec![json_content()];
    // Flux registers one request modifier and the second replaces the
    // first: with a username and a password, Basic wins over the token.
    if !resolved.username.is_empty() && !resolved.password.is_empty() {
        headers.push((
            "Authorization".to_owned(),
            basic(&resolved.username, &resolved.password),
        ));
    } else if !resolved.token.is_empty() {
        headers.push(("Authorization".to_owned(), bearer(&resolved.token)));
    }
    Ok(Request::post(
        url,
        headers,
        herald_flux::gojson::to_vec(&[alert]),
    ))
}

/// Go's `cases.Title(language.Und).String`: in each word the first letter
/// upper-cased and the rest lower-cased (`ReconciliationSucceeded` →
/// `Reconciliationsucceeded`). A word is a run of letters, digits and `_`,
/// with `'`, `.` and `:` kept inside one when letters or digits are on both
/// sides (Unicode word boundaries, as far as Flux reasons go).
fn go_title(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    let mut out = String::with_capacity(text.len());
    let mut in_word = false;
    for (i, &c) in chars.iter().enumerate() {
        let inside = is_word(c)
            || (in_word
                && matches!(c, '\'' | '.' | ':')
                && chars.get(i + 1).is_some_and(|n| n.is_alphanumeric()));
        if !inside {
            in_word = false;
            out.push(c);
        } else if in_word {
            out.extend(c.to_lowercase());
        } else {
            in_word = true;
            out.extend(c.to_uppercase());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> FluxEvent {
        FluxEvent::from_json(
            br#"{"involvedObject":{"kind":"GitRepository","namespace":"flux-system","name":"webapp"},
                "severity":"error","timestamp":"2024-01-01T10:00:00Z","message":"fetch <failed> & more",
                "reason":"GitOperationFailed",
                "metadata":{"revision":"main@sha1:abc","summary":"Cluster one","name":"overwritten"},
                "reportingController":"source-controller"}"#,
        )
        .unwrap()
    }

    fn resolved() -> Resolved {
        Resolved {
            provider_type: "alertmanager".into(),
            address: "http://127.0.0.1:9093/api/v2/alerts".into(),
            ..Resolved::default()
        }
    }

    fn auth(request: &Request) -> Vec<&str> {
        request
            .headers
            .iter()
            .filter(|(k, _)| k == "Authorization")
            .map(|(_, v)| v.as_str())
            .collect()
    }

    #[test]
    fn one_firing_alert_with_flux_labels_and_annotations() {
        let request = build(&resolved(), &event()).unwrap();
        assert_eq!(request.url.as_str(), "http://127.0.0.1:9093/api/v2/alerts");
        assert!(request.headers.contains(&json_content()));
        assert!(auth(&request).is_empty());
        assert_eq!(
            String::from_utf8(request.body).unwrap(),
            concat!(
                r#"[{"status":"firing","labels":{"alertname":"FluxGitRepositoryGitoperationfailed","#,
                r#""kind":"GitRepository","name":"webapp","namespace":"flux-system","#,
                r#""reason":"GitOperationFailed","reportingcontroller":"source-controller","#,
                r#""revision":"main@sha1:abc","severity":"error"},"#,
                r#""annotations":{"message":"fetch \u003cfailed\u003e \u0026 more","summary":"Cluster one"},"#,
                r#""startsAt":"2024-01-01T10:00:00Z","endsAt":"0001-01-01T00:00:00Z"}]"#
            )
        );
    }

    #[test]
    fn no_summary_no_timestamp() {
        let mut e = event();
        e.metadata.clear();
        e.timestamp = None;
        e.reason = "reason".into();
        let request = build(&resolved(), &e).unwrap();
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(body[0]["labels"]["alertname"], "FluxGitRepositoryReason");
        assert_eq!(
            body[0]["annotations"],
            serde_json::json!({"message": "fetch <failed> & more"})
        );
        assert_eq!(body[0]["startsAt"], GO_ZERO_TIME);
        assert_eq!(body[0]["endsAt"], GO_ZERO_TIME);
    }

    #[test]
    fn basic_beats_bearer() {
        let mut r = resolved();
        r.token = "am-token".into();
        assert_eq!(auth(&build(&r, &event()).unwrap()), ["Bearer am-token"]);
        r.username = "admin".into();
        r.password = "secret".into();
        assert_eq!(
            auth(&build(&r, &event()).unwrap()),
            ["Basic YWRtaW46c2VjcmV0"]
        );
        // A username alone is not Basic.
        r.password.clear();
        assert_eq!(auth(&build(&r, &event()).unwrap()), ["Bearer am-token"]);
    }

    #[test]
    fn addresses_are_checked() {
        let mut r = resolved();
        r.address.clear();
        assert!(matches!(
            build(&r, &event()),
            Err(ProviderError::NoAddress { .. })
        ));
        r.address = "not a url".into();
        let error = build(&r, &event()).err().unwrap().to_string();
        assert!(
            error.starts_with("alertmanager: invalid address"),
            "{error}"
        );
    }

    #[test]
    fn titles_follow_go() {
        for (input, want) in [
            ("ReconciliationSucceeded", "Reconciliationsucceeded"),
            ("reason", "Reason"),
            ("HealthCheckFailed", "Healthcheckfailed"),
            ("V2Update", "V2update"),
            ("upgrade failed", "Upgrade Failed"),
            ("snake_CASE", "Snake_case"),
            ("don't-STOP", "Don't-Stop"),
            ("", ""),
            ("ÉCHEC", "Échec"),
        ] {
            assert_eq!(go_title(input), want, "{input}");
        }
    }
}
