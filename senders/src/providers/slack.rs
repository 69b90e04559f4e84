//! `slack`: incoming webhooks, and `chat.postMessage` with a bot token
//! (flux-providers §4.3); threaded when asked (see [`super::slack_thread`]).

use super::shared::{SlackPayload, bearer, is_error, json_content, object_name, parse_address};
use super::{Input, Plan, Provider, ProviderError};
use crate::classify::Judge;
use crate::config::Resolved;
use crate::http::Request;
use herald_flux::FluxEvent;

/// `slack`.
pub(super) struct Slack;

impl Provider for Slack {
    fn plan(&self, input: &Input<'_>) -> Result<Plan, ProviderError> {
        let request = build(input.resolved, input.event)?;
        Ok(super::slack_thread::plan(input, request))
    }
}

/// Builds the Slack request.
fn build(resolved: &Resolved, event: &FluxEvent) -> Result<Request, ProviderError> {
    let url = parse_address(resolved, "slack")?;
    let object = object_name(event);
    let first_line = event.message.lines().next().unwrap_or_default();
    let username = if resolved.username.is_empty() {
        &event.reporting_controller
    } else {
        &resolved.username
    };
    let color = if is_error(event) { "danger" } else { "good" };
    let payload = SlackPayload::new(event, &resolved.channel, username, color)
        .fallback(format!("{object}: {first_line}"));
    let mut headers = vec![json_content()];
    if !resolved.token.is_empty() {
        headers.push(("Authorization".to_owned(), bearer(&resolved.token)));
    }
    // Flux validates the Web API answer only for the exact slack.com URL;
    // Herald does it for any chat.postMessage endpoint (Slack-compatible servers too).
    let judge = if url.path().ends_with("/api/chat.postMessage") {
        Judge::SlackWebApi
    } else {
        Judge::Status
    };
    Ok(Request::post(url, headers, payload.to_go_json()).judged_by(judge))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn event() -> FluxEvent {
        let mut e = FluxEvent::from_json(
            br#"{"involvedObject":{"kind":"GitRepository","namespace":"gitops-system","name":"webapp"},
                "severity":"error","message":"line one\nline <two>","reason":"Failed",
                "reportingController":"source-controller"}"#,
        )
        .unwrap();
        e.metadata = BTreeMap::from([("revision".to_owned(), "main@sha1:abc".to_owned())]);
        e
    }

    #[test]
    fn webhook_body_matches_flux_byte_for_byte() {
        let resolved = Resolved {
            provider_type: "slack".into(),
            address: "https://hooks.slack.com/services/T/B/X".into(),
            ..Resolved::default()
        };
        let request = build(&resolved, &event()).unwrap();
        assert_eq!(request.judge, Judge::Status);
        assert_eq!(
            String::from_utf8(request.body).unwrap(),
            concat!(
                r#"{"channel":"","username":"source-controller","icon_url":"","icon_emoji":"","#,
                r#""attachments":[{"fallback":"gitrepository/webapp.gitops-system: line one","#,
                r#""color":"danger","author_name":"gitrepository/webapp.gitops-system","#,
                r#""text":"line one\nline \u003ctwo\u003e","mrkdwn_in":["text"],"#,
                r#""fields":[{"title":"revision","value":"main@sha1:abc","short":false}]}]}"#
            )
        );
        assert!(!request.headers.iter().any(|(k, _)| k == "Authorization"));
    }

    #[test]
    fn bot_token_uses_the_web_api() {
        let resolved = Resolved {
            provider_type: "slack".into(),
            address: "https://slack.com/api/chat.postMessage".into(),
            channel: "C123".into(),
            username: "flux".into(),
            token: "xoxb-1".into(),
            ..Resolved::default()
        };
        let mut e = event();
        e.severity = "info".into();
        e.metadata.clear();
        let request = build(&resolved, &e).unwrap();
        assert_eq!(request.judge, Judge::SlackWebApi);
        assert!(
            request
                .headers
                .contains(&("Authorization".to_owned(), "Bearer xoxb-1".to_owned()))
        );
        let body = String::from_utf8(request.body).unwrap();
        assert!(body.starts_with(r#"{"channel":"C123","username":"flux""#));
        assert!(body.contains(r#""color":"good""#) && body.contains(r#""fields":[]"#));
    }

    #[test]
    fn bad_addresses_are_reported() {
        let mut resolved = Resolved {
            provider_type: "slack".into(),
            ..Resolved::default()
        };
        assert!(
            build(&resolved, &event())
                .err()
                .unwrap()
                .to_string()
                .contains("no address")
        );
        resolved.address = "ftp://x".into();
        assert!(
            build(&resolved, &event())
                .err()
                .unwrap()
                .to_string()
                .contains("must be http or https")
        );
    }
}
