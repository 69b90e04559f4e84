//! The Slack attachment message Flux posts to Slack and to the services
//! that accept Slack's format (Discord's `/slack` endpoint, Rocket.Chat),
//! with Go's field order (flux-providers §4.3–4.5).

use serde::Serialize;

use herald_flux::FluxEvent;

use super::object_name;

/// Flux's `SlackPayload` (its `text` is never set, so never sent).
#[derive(Serialize)]
pub struct SlackPayload<'a> {
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

impl<'a> SlackPayload<'a> {
    /// One attachment for `event` in `color`: its author the object name,
    /// its text the message, one field per metadata entry (sorted by key;
    /// Go's map order is random), no fallback.
    #[must_use]
    pub fn new(event: &'a FluxEvent, channel: &'a str, username: &'a str, color: &'a str) -> Self {
        Self {
            channel,
            username,
            icon_url: "",
            icon_emoji: "",
            attachments: [Attachment {
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

    /// The same payload with the attachment's `fallback` text.
    #[must_use]
    pub fn fallback(mut self, fallback: String) -> Self {
        self.attachments[0].fallback = fallback;
        self
    }

    /// The JSON bytes as Go writes them.
    #[must_use]
    pub fn to_go_json(&self) -> Vec<u8> {
        herald_flux::gojson::to_vec(self)
    }
}
