//! `grafana`: a Graphite-style annotation (flux-providers §5.3), posted to
//! the address as given (usually `https://{grafana}/api/annotations`).

use serde::Serialize;

use super::shared::{basic, bearer, json_content, object_name, parse_address};
use super::{Input, Plan, Provider, ProviderError};
use crate::config::Resolved;
use crate::http::Request;
use herald_flux::FluxEvent;

/// Go's `time.Time{}.Unix()`: the `when` of an event without a timestamp.
const GO_ZERO_TIME_UNIX: i64 = -62_135_596_800;

#[derive(Serialize)]
struct Annotation {
    when: i64,
    text: String,
    tags: Vec<String>,
}

/// `grafana`.
pub(super) struct Grafana;

impl Provider for Grafana {
    fn plan(&self, input: &Input<'_>) -> Result<Plan, ProviderError> {
        build(input.resolved, input.event).map(Plan::Request)
    }
}

/// Builds the annotation request.
fn build(resolved: &Resolved, event: &FluxEvent) -> Result<Request, ProviderError> {
    let url = parse_address(resolved, "grafana")?;
    let bar = |s: &str| s.replace(':', "|");
    let o = &event.involved_object;
    let mut tags = vec!["flux".to_owned(), event.reporting_controller.clone()];
    tags.extend(
        event
            .metadata
            .iter()
            .map(|(k, v)| format!("{}: {}", bar(k), bar(v))),
    );
    tags.push(format!("kind: {}", o.kind));
    tags.push(format!("name: {}", o.name));
    tags.push(format!("namespace: {}", o.namespace));
    let annotation = Annotation {
        when: event
            .timestamp
            .map_or(GO_ZERO_TIME_UNIX, herald_flux::GoTime::unix_seconds),
        text: object_name(event),
        tags,
    };
    let mut headers = vec![json_content()];
    if !resolved.token.is_empty() {
        headers.push(("Authorization".to_owned(), bearer(&resolved.token)));
    } else if !resolved.username.is_empty() && !resolved.password.is_empty() {
        headers.push((
            "Authorization".to_owned(),
            basic(&resolved.username, &resolved.password),
        ));
    }
    Ok(Request::post(
        url,
        headers,
        herald_flux::gojson::to_vec(&annotation),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> FluxEvent {
        FluxEvent::from_json(
            br#"{"involvedObject":{"kind":"GitRepository","namespace":"flux-system","name":"webapp"},
                "severity":"info","timestamp":"2024-01-01T10:00:00Z","message":"fetched",
                "metadata":{"revision":"main@sha1:abc","a:b":"c<d"},
                "reportingController":"source-controller"}"#,
        )
        .unwrap()
    }

    #[test]
    fn annotation_body_is_graphite_style_with_tags_in_order() {
        let resolved = Resolved {
            provider_type: "grafana".into(),
            address: "http://127.0.0.1:1/api/annotations".into(),
            token: "glsa-1".into(),
            username: "u".into(),
            password: "p".into(),
            ..Resolved::default()
        };
        let request = build(&resolved, &event()).unwrap();
        assert_eq!(
            String::from_utf8(request.body).unwrap(),
            r#"{"when":1704103200,"text":"gitrepository/webapp.flux-system","tags":["flux","source-controller","a|b: c\u003cd","revision: main@sha1|abc","kind: GitRepository","name: webapp","namespace: flux-system"]}"#
        );
        let auth: Vec<_> = request
            .headers
            .iter()
            .filter(|(k, _)| k == "Authorization")
            .collect();
        assert_eq!(auth, [&("Authorization".into(), "Bearer glsa-1".into())]);
    }

    #[test]
    fn basic_auth_without_a_token_and_no_auth_without_either() {
        let mut resolved = Resolved {
            provider_type: "grafana".into(),
            address: "http://127.0.0.1:1/api/annotations".into(),
            username: "admin".into(),
            password: "secret".into(),
            ..Resolved::default()
        };
        let request = build(&resolved, &event()).unwrap();
        assert!(
            request
                .headers
                .contains(&("Authorization".into(), "Basic YWRtaW46c2VjcmV0".into()))
        );
        resolved.password.clear();
        let request = build(&resolved, &event()).unwrap();
        assert!(!request.headers.iter().any(|(k, _)| k == "Authorization"));
        let no_time = FluxEvent::from_json(br#"{"message":"x"}"#).unwrap();
        let body: serde_json::Value =
            serde_json::from_slice(&build(&resolved, &no_time).unwrap().body).unwrap();
        assert_eq!(body["when"], GO_ZERO_TIME_UNIX);
        assert_eq!(crate::providers::shared::base64(b"a"), "YQ==");
        assert_eq!(crate::providers::shared::base64(b"ab"), "YWI=");
        assert_eq!(crate::providers::shared::base64(b"abc"), "YWJj");
    }
}
