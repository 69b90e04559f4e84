//! `discord`: Slack's attachment format posted to the webhook's
//! Slack-compatible `/slack` endpoint (flux-providers §4.4).

use super::shared::{SlackPayload, is_error, json_content, parse_address};
use super::{Input, Plan, Provider, ProviderError};
use crate::classify::Judge;
use crate::config::Resolved;
use crate::http::Request;
use herald_flux::FluxEvent;

/// `discord`.
pub(super) struct Discord;

impl Provider for Discord {
    fn plan(&self, input: &Input<'_>) -> Result<Plan, ProviderError> {
        build(input.resolved, input.event).map(Plan::Request)
    }
}

/// Go's `path.Clean` of an absolute path: `.` and empty segments dropped,
/// `..` removing the segment before it.
fn clean(path: &str) -> String {
    let mut kept: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                kept.pop();
            }
            other => kept.push(other),
        }
    }
    format!("/{}", kept.join("/"))
}

/// Builds the Discord request. As Flux does, an address whose text does not
/// end with `/slack` gets `slack` joined to its path (query kept), so
/// `.../slack?wait=true` becomes `.../slack/slack?wait=true`.
fn build(resolved: &Resolved, event: &FluxEvent) -> Result<Request, ProviderError> {
    let mut url = parse_address(resolved, "discord")?;
    if !resolved.address.ends_with("/slack") {
        let joined = clean(&format!("{}/slack", url.path()));
        url.set_path(&joined);
    }
    // Discord ignores spec.channel; the username defaults to the reporting
    // controller.
    let username = if resolved.username.is_empty() {
        &event.reporting_controller
    } else {
        &resolved.username
    };
    let color = if is_error(event) { "danger" } else { "good" };
    let body = SlackPayload::new(event, "", username, color).to_go_json();
    Ok(Request::post(url, vec![json_content()], body).judged_by(Judge::Discord))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn event() -> FluxEvent {
        let mut e = FluxEvent::from_json(
            br#"{"involvedObject":{"kind":"GitRepository","namespace":"gitops-system","name":"webapp"},
                "severity":"error","message":"line one\nline <two> & more","reason":"Failed",
                "reportingController":"source-controller"}"#,
        )
        .unwrap();
        e.metadata = BTreeMap::from([("revision".to_owned(), "main@sha1:abc".to_owned())]);
        e
    }

    fn resolved(address: &str) -> Resolved {
        Resolved {
            provider_type: "discord".into(),
            address: address.into(),
            channel: "ignored".into(),
            ..Resolved::default()
        }
    }

    fn url_for(address: &str) -> String {
        build(&resolved(address), &event()).unwrap().url.to_string()
    }

    #[test]
    fn body_matches_flux_byte_for_byte() {
        let request = build(
            &resolved("https://discord.com/api/webhooks/1/tok"),
            &event(),
        )
        .unwrap();
        assert_eq!(request.judge, Judge::Discord);
        assert_eq!(request.headers, [json_content()]);
        assert_eq!(
            String::from_utf8(request.body).unwrap(),
            concat!(
                r#"{"channel":"","username":"source-controller","icon_url":"","icon_emoji":"","#,
                r#""attachments":[{"fallback":"","color":"danger","author_name":"gitrepository/webapp.gitops-system","#,
                r#""text":"line one\nline \u003ctwo\u003e \u0026 more","mrkdwn_in":["text"],"#,
                r#""fields":[{"title":"revision","value":"main@sha1:abc","short":false}]}]}"#
            )
        );
    }

    #[test]
    fn username_and_info_colour() {
        let mut resolved = resolved("https://discord.com/api/webhooks/1/tok");
        resolved.username = "flux".into();
        let mut e = event();
        e.severity = "info".into();
        e.metadata.clear();
        let body = String::from_utf8(build(&resolved, &e).unwrap().body).unwrap();
        assert!(
            body.starts_with(r#"{"channel":"","username":"flux""#),
            "{body}"
        );
        assert!(body.contains(r#""color":"good""#) && body.contains(r#""fields":[]"#));
    }

    #[test]
    fn the_slack_endpoint_is_joined_as_flux_does() {
        assert_eq!(
            url_for("https://discord.com/api/webhooks/1/tok"),
            "https://discord.com/api/webhooks/1/tok/slack"
        );
        assert_eq!(
            url_for("https://discord.com/api/webhooks/1/tok/slack"),
            "https://discord.com/api/webhooks/1/tok/slack"
        );
        assert_eq!(
            url_for("https://discord.com/api/webhooks/1/tok/"),
            "https://discord.com/api/webhooks/1/tok/slack"
        );
        assert_eq!(
            url_for("https://discord.com/api/webhooks/1/tok/slack/"),
            "https://discord.com/api/webhooks/1/tok/slack/slack"
        );
        assert_eq!(
            url_for("https://discord.com/api/webhooks/1/tok/slack?wait=true"),
            "https://discord.com/api/webhooks/1/tok/slack/slack?wait=true"
        );
        assert_eq!(
            url_for("https://discord.com/api/webhooks/1/tok?thread_id=9"),
            "https://discord.com/api/webhooks/1/tok/slack?thread_id=9"
        );
        assert_eq!(url_for("https://discord.com"), "https://discord.com/slack");
    }

    #[test]
    fn bad_addresses_are_reported() {
        assert!(matches!(
            build(&resolved(""), &event()),
            Err(ProviderError::NoAddress { .. })
        ));
        assert!(matches!(
            build(&resolved("discord.com/api/webhooks/1/tok"), &event()),
            Err(ProviderError::BadAddress { .. })
        ));
    }
}
