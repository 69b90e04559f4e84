//! `zulip`: a stream message posted to `/api/v1/messages` of the server of
//! `spec.address`, form-encoded, as the bot (flux-providers §4.12).

use super::shared::{basic, parse_address, query_escape};
use super::{Input, Plan, Provider, ProviderError};
use crate::config::Resolved;
use crate::http::Request;
use herald_flux::FluxEvent;

/// `zulip`.
pub(super) struct Zulip;

impl Provider for Zulip {
    fn plan(&self, input: &Input<'_>) -> Result<Plan, ProviderError> {
        build(input.resolved, input.event).map(Plan::Request)
    }
}

/// Builds the form post.
fn build(resolved: &Resolved, event: &FluxEvent) -> Result<Request, ProviderError> {
    let mut url = parse_address(resolved, "zulip")?;
    // Flux replaces the path and keeps the rest (query included).
    url.set_path("/api/v1/messages");
    let (stream, topic) = resolved
        .channel
        .split_once('/')
        .filter(|(stream, topic)| !stream.is_empty() && !topic.is_empty())
        .ok_or_else(|| {
            ProviderError::invalid(
                "zulip",
                format!(
                    "invalid Zulip channel format, expected <channel>/<topic>, got '{}'",
                    resolved.channel
                ),
            )
        })?;
    // Go's url.Values.Encode: keys sorted, values query-escaped.
    let content = herald_flux::git::markdown_post(event);
    let body = [
        ("content", content.as_str()),
        ("to", stream),
        ("topic", topic),
        ("type", "stream"),
    ]
    .iter()
    .map(|(key, value)| format!("{key}={}", query_escape(value)))
    .collect::<Vec<_>>()
    .join("&");
    let mut headers = vec![(
        "Content-Type".to_owned(),
        "application/x-www-form-urlencoded".to_owned(),
    )];
    if !resolved.username.is_empty() || !resolved.password.is_empty() {
        headers.push((
            "Authorization".to_owned(),
            basic(&resolved.username, &resolved.password),
        ));
    }
    Ok(Request::post(url, headers, body.into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::Judge;
    use std::collections::BTreeMap;

    fn event(severity: &str, metadata: &[(&str, &str)]) -> FluxEvent {
        let mut e = FluxEvent::from_json(
            br#"{"involvedObject":{"kind":"Kustomization","namespace":"flux-system","name":"webapp"},
                "message":"apply failed: a&b=c 100%","reportingController":"kustomize-controller"}"#,
        )
        .unwrap();
        e.severity = severity.into();
        e.metadata = metadata
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<BTreeMap<_, _>>();
        e
    }

    fn resolved() -> Resolved {
        Resolved {
            provider_type: "zulip".into(),
            address: "https://flux.zulipchat.com/some/path?x=1".into(),
            channel: "ops alerts/flux status".into(),
            username: "flux-bot@flux.zulipchat.com".into(),
            password: "api-key".into(),
            ..Resolved::default()
        }
    }

    #[test]
    fn form_matches_flux_byte_for_byte() {
        let e = event(
            "error",
            &[("revision", "main@sha1:abc"), ("change_request", "7")],
        );
        let request = build(&resolved(), &e).unwrap();
        assert_eq!(request.method, reqwest::Method::POST);
        assert_eq!(request.judge, Judge::Status);
        assert_eq!(
            request.url.as_str(),
            "https://flux.zulipchat.com/api/v1/messages?x=1"
        );
        assert_eq!(
            request.headers,
            [
                (
                    "Content-Type".to_owned(),
                    "application/x-www-form-urlencoded".to_owned()
                ),
                (
                    "Authorization".to_owned(),
                    basic("flux-bot@flux.zulipchat.com", "api-key")
                ),
            ]
        );
        assert_eq!(
            String::from_utf8(request.body).unwrap(),
            concat!(
                "content=%23%23+Flux+Status%0A%0A%E2%9A%A0%EF%B8%8F+Kustomization%2Fflux-system%2Fwebapp",
                "%0A%0Aapply+failed%3A+a%26b%3Dc+100%25%0A%0AMetadata%3A%0A",
                "%2A+%60revision%60%3A+main%40sha1%3Aabc%0A",
                "&to=ops+alerts&topic=flux+status&type=stream"
            )
        );
    }

    #[test]
    fn no_metadata_ends_the_post_after_its_heading() {
        let request = build(&resolved(), &event("info", &[])).unwrap();
        let body = String::from_utf8(request.body).unwrap();
        assert!(
            body.starts_with("content=%23%23+Flux+Status%0A%0A%E2%84%B9%EF%B8%8F+Kustomization"),
            "{body}"
        );
        assert!(body.contains("Metadata%3A%0A&to="), "{body}");
    }

    #[test]
    fn no_credentials_no_header() {
        let mut r = resolved();
        r.username.clear();
        r.password.clear();
        let request = build(&r, &event("info", &[])).unwrap();
        assert!(!request.headers.iter().any(|(k, _)| k == "Authorization"));
    }

    #[test]
    fn the_channel_must_be_stream_and_topic() {
        for channel in ["", "ops", "/topic", "ops/", "/"] {
            let mut r = resolved();
            r.channel = channel.into();
            let err = build(&r, &event("info", &[])).unwrap_err().to_string();
            assert!(
                err.contains(&format!(
                    "invalid Zulip channel format, expected <channel>/<topic>, got '{channel}'"
                )),
                "{err}"
            );
        }
        let mut r = resolved();
        r.channel = "ops/a/b".into();
        let body = String::from_utf8(build(&r, &event("info", &[])).unwrap().body).unwrap();
        assert!(body.ends_with("&to=ops&topic=a%2Fb&type=stream"), "{body}");
    }
}
