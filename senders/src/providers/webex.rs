//! `webex`: a markdown message posted by a bot to a room (flux-providers
//! §4.8).

use serde::Serialize;

use super::shared::{bearer, is_error, json_content, object_name, parse_address};
use super::{Input, Plan, Provider, ProviderError};
use crate::config::Resolved;
use crate::http::Request;
use herald_flux::FluxEvent;

/// `webex`.
pub(super) struct Webex;

impl Provider for Webex {
    fn plan(&self, input: &Input<'_>) -> Result<Plan, ProviderError> {
        build(input.resolved, input.event).map(Plan::Request)
    }
}

/// Flux's `WebexPayload`: both keys are `omitempty`.
#[derive(Serialize)]
struct Payload<'a> {
    #[serde(rename = "roomId", skip_serializing_if = "str::is_empty")]
    room_id: &'a str,
    #[serde(skip_serializing_if = "String::is_empty")]
    markdown: String,
}

/// Builds the Webex request: `spec.channel` is the room id, the Secret's
/// `token` the bot's access token (sent even when empty, as Flux does).
fn build(resolved: &Resolved, event: &FluxEvent) -> Result<Request, ProviderError> {
    let url = parse_address(resolved, "webex")?;
    let payload = Payload {
        room_id: &resolved.channel,
        markdown: markdown(event),
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

/// `{emoji} **{object}**`, the message, then a `>**key**: value` line per
/// metadata entry (sorted by key; Go's order is random).
fn markdown(event: &FluxEvent) -> String {
    let emoji = if is_error(event) { "💣" } else { "✅" };
    let mut text = format!("{emoji} **{}**\n{}\n", object_name(event), event.message);
    for (key, value) in &event.metadata {
        text.push_str(&format!(">**{key}**: {value}\n"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn event(severity: &str) -> FluxEvent {
        let mut e = FluxEvent::from_json(
            br#"{"involvedObject":{"kind":"GitRepository","namespace":"gitops-system","name":"webapp"},
                "message":"fetch <failed> & retried","reason":"GitOperationFailed",
                "reportingController":"source-controller"}"#,
        )
        .unwrap();
        e.severity = severity.into();
        e.metadata = BTreeMap::from([
            ("revision".to_owned(), "main@sha1:abc".to_owned()),
            ("cluster".to_owned(), "prod".to_owned()),
        ]);
        e
    }

    fn resolved(channel: &str, token: &str) -> Resolved {
        Resolved {
            provider_type: "webex".into(),
            address: "https://webexapis.com/v1/messages".into(),
            channel: channel.into(),
            token: token.into(),
            ..Resolved::default()
        }
    }

    #[test]
    // Go escapes the quote marker `>` as `\u003e`, as it does `<` and `&`.
    fn error_message_matches_flux_byte_for_byte() {
        let request = build(
            &resolved("Y2lzY29zcGFyazovL3Vz", "bot-token"),
            &event("error"),
        )
        .unwrap();
        assert_eq!(request.url.as_str(), "https://webexapis.com/v1/messages");
        assert!(
            request
                .headers
                .contains(&("Authorization".to_owned(), "Bearer bot-token".to_owned()))
        );
        assert_eq!(
            String::from_utf8(request.body).unwrap(),
            concat!(
                r#"{"roomId":"Y2lzY29zcGFyazovL3Vz","markdown":"💣 **gitrepository/webapp.gitops-system**\n"#,
                r#"fetch \u003cfailed\u003e \u0026 retried\n\u003e**cluster**: prod\n\u003e**revision**: main@sha1:abc\n"}"#
            )
        );
    }

    #[test]
    fn info_without_metadata_or_room_omits_them() {
        let mut e = event("info");
        e.metadata.clear();
        let request = build(&resolved("", ""), &e).unwrap();
        // Flux adds the header whatever the token; Webex answers 401.
        assert!(
            request
                .headers
                .contains(&("Authorization".to_owned(), "Bearer ".to_owned()))
        );
        assert_eq!(
            String::from_utf8(request.body).unwrap(),
            r#"{"markdown":"✅ **gitrepository/webapp.gitops-system**\nfetch \u003cfailed\u003e \u0026 retried\n"}"#
        );
    }

    #[test]
    fn an_address_is_required() {
        let mut no_address = resolved("room", "t");
        no_address.address.clear();
        assert!(matches!(
            build(&no_address, &event("info")),
            Err(ProviderError::NoAddress { .. })
        ));
    }
}
