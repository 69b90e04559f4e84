//! `slack`: incoming webhooks, and `chat.postMessage` with a bot token
//! (flux-providers §4.3).

use serde::Serialize;

use super::{ProviderRequest, Validator, object_name, parse_address};
use crate::config::Resolved;
use herald_flux::FluxEvent;

#[derive(Serialize)]
struct Payload<'a> {
    channel: &'a str,
    username: &'a str,
    icon_url: &'a str,
    icon_emoji: &'a str,
    attachments: [Attachment<'a>; 1],
}

#[derive(Serialize)]
struct Attachment<'a> {
    fallback: String,
    color: &'a str,
    author_name: String,
    text: &'a str,
    mrkdwn_in: [&'a str; 1],
    fields: Vec<Field<'a>>,
}

#[derive(Serialize)]
struct Field<'a> {
    title: &'a str,
    value: &'a str,
    short: bool,
}

/// Builds the Slack request.
pub(super) fn build(resolved: &Resolved, event: &FluxEvent) -> Result<ProviderRequest, String> {
    let url = parse_address(resolved, "slack")?;
    let object = object_name(event);
    let first_line = event.message.lines().next().unwrap_or_default();
    let username = if resolved.username.is_empty() {
        &event.reporting_controller
    } else {
        &resolved.username
    };
    let payload = Payload {
        channel: &resolved.channel,
        username,
        icon_url: "",
        icon_emoji: "",
        attachments: [Attachment {
            fallback: format!("{object}: {first_line}"),
            color: if event.severity == "error" {
                "danger"
            } else {
                "good"
            },
            author_name: object,
            text: &event.message,
            mrkdwn_in: ["text"],
            fields: event
                .metadata
                .iter()
                .map(|(title, value)| Field {
                    title,
                    value,
                    short: false,
                })
                .collect(),
        }],
    };
    let mut headers = vec![("Content-Type".to_owned(), "application/json".to_owned())];
    if !resolved.token.is_empty() {
        headers.push((
            "Authorization".to_owned(),
            format!("Bearer {}", resolved.token),
        ));
    }
    // Flux validates the Web API answer only for the exact slack.com URL;
    // Herald does it for any chat.postMessage endpoint (Slack-compatible servers too).
    let validator = if url.path().ends_with("/api/chat.postMessage") {
        Validator::SlackWebApi
    } else {
        Validator::Status
    };
    Ok(ProviderRequest {
        url,
        headers,
        body: herald_flux::gojson::to_vec(&payload),
        validator,
    })
}

/// Judges a Web API answer: `Ok(())` when `ok` is true, else the error and
/// whether it is worth retrying.
pub(crate) fn web_api_result(body: &[u8]) -> Result<(), (String, bool)> {
    #[derive(serde::Deserialize)]
    struct Answer {
        ok: bool,
        #[serde(default)]
        error: String,
    }
    let answer: Answer = serde_json::from_slice(body)
        .map_err(|e| (format!("unable to read Slack's answer: {e}"), true))?;
    if answer.ok {
        return Ok(());
    }
    let transient = matches!(
        answer.error.as_str(),
        "ratelimited"
            | "internal_error"
            | "fatal_error"
            | "service_unavailable"
            | "request_timeout"
    );
    Err((
        format!("Slack responded with error: {}", answer.error),
        transient,
    ))
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
        assert_eq!(request.validator, Validator::Status);
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
        assert_eq!(request.validator, Validator::SlackWebApi);
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
    fn web_api_answers_are_judged() {
        assert_eq!(web_api_result(br#"{"ok":true}"#), Ok(()));
        assert_eq!(
            web_api_result(br#"{"ok":false,"error":"channel_not_found"}"#),
            Err((
                "Slack responded with error: channel_not_found".into(),
                false
            ))
        );
        assert!(
            web_api_result(br#"{"ok":false,"error":"ratelimited"}"#)
                .unwrap_err()
                .1
        );
        assert!(web_api_result(b"<html>").unwrap_err().1);
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
                .contains("no address")
        );
        resolved.address = "ftp://x".into();
        assert!(
            build(&resolved, &event())
                .err()
                .unwrap()
                .contains("must be http or https")
        );
    }
}
