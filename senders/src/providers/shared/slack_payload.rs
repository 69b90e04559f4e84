//! The Slack attachment message Flux posts to Slack and to the services
//! that accept Slack's format (Discord's `/slack` endpoint, Rocket.Chat),
//! with Go's field order (flux-providers §4.3–4.5).
//!
//! An event carrying Slack Block Kit blocks (rendered from a
//! `herald.dev/slack-blocks` template, for Slack Providers only) is sent as
//! those `blocks`, with the message as the `text` Slack shows in
//! notifications and where blocks cannot be shown, and no attachment.

use serde::Serialize;

use herald_flux::FluxEvent;

use super::object_name;

/// Flux's `SlackPayload` (Flux never sets its `text`, so it is sent only
/// with blocks, which Flux does not have).
#[derive(Serialize)]
pub struct SlackPayload<'a> {
    channel: &'a str,
    username: &'a str,
    icon_url: &'a str,
    icon_emoji: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    blocks: Option<Vec<serde_json::Value>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    attachments: Vec<Attachment<'a>>,
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

impl<'a> SlackPayload<'a> {
    /// One attachment for `event` in `color`: its author the object name,
    /// its text the message, one field per metadata entry (sorted by key;
    /// Go's map order is random), no fallback. Or, when the event carries
    /// Slack blocks, those blocks with the message as their text.
    #[must_use]
    pub fn new(event: &'a FluxEvent, channel: &'a str, username: &'a str, color: &'a str) -> Self {
        let blocks: Option<Vec<serde_json::Value>> = event
            .slack_blocks
            .as_deref()
            .and_then(|blocks| serde_json::from_str(blocks).ok());
        if blocks.is_some() {
            return Self {
                channel,
                username,
                icon_url: "",
                icon_emoji: "",
                text: Some(&event.message),
                blocks,
                attachments: Vec::new(),
            };
        }
        Self {
            channel,
            username,
            icon_url: "",
            icon_emoji: "",
            text: None,
            blocks: None,
            attachments: vec![Attachment {
                fallback: String::new(),
                color,
                author_name: object_name(event),
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
        }
    }

    /// The same payload with the attachment's `fallback` text (blocks have
    /// none: their `text` is the fallback).
    #[must_use]
    pub fn fallback(mut self, fallback: String) -> Self {
        if let Some(attachment) = self.attachments.first_mut() {
            attachment.fallback = fallback;
        }
        self
    }

    /// The JSON bytes as Go writes them.
    #[must_use]
    pub fn to_go_json(&self) -> Vec<u8> {
        herald_flux::gojson::to_vec(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_replace_the_attachment_and_the_message_is_their_text() {
        let mut event = FluxEvent::from_json(
            br#"{"involvedObject":{"kind":"Kustomization","namespace":"a","name":"b"},
                "severity":"info","message":"deployed <v2>","reason":"Ready"}"#,
        )
        .unwrap();
        let plain = SlackPayload::new(&event, "ops", "flux", "good")
            .fallback("f".to_owned())
            .to_go_json();
        assert!(
            String::from_utf8(plain)
                .unwrap()
                .contains(r#""icon_emoji":"","attachments":[{"fallback":"f","#)
        );
        event.slack_blocks =
            Some(r#"[{"type":"section","text":{"type":"mrkdwn","text":"*b*"}}]"#.to_owned());
        let body = SlackPayload::new(&event, "ops", "flux", "good")
            .fallback("f".to_owned())
            .to_go_json();
        assert_eq!(
            String::from_utf8(body).unwrap(),
            concat!(
                r#"{"channel":"ops","username":"flux","icon_url":"","icon_emoji":"","#,
                r#""text":"deployed \u003cv2\u003e","#,
                r#""blocks":[{"text":{"text":"*b*","type":"mrkdwn"},"type":"section"}]}"#
            )
        );
    }
}
