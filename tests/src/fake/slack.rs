//! A fake Slack: incoming webhooks (`/services/...`, plain-text answers
//! `ok`, `invalid_payload`, `no_service`) and the Web API's
//! `/api/chat.postMessage` and `/api/chat.update` (bearer [`TOKEN`] and a
//! JSON body; errors are `200` with `{"ok":false,"error":…}`, as Slack
//! answers them). When it rate-limits, it answers `429` with `Retry-After`
//! as Slack does: the Web API with `{"ok":false,"error":"ratelimited"}`, a
//! webhook with `rate_limited`. A message must have `text`, `attachments`
//! or `blocks` (`no_text`), and `blocks` must be an array of at most 50
//! objects, each with a `type` (`invalid_blocks`), as Slack requires.
//!
//! The Web API keeps its messages as Slack does, so tests can read the
//! threads they form:
//! - `chat.postMessage` takes a channel by name (`alerts`, `#alerts`; the
//!   fake gives each name an ID `C…` on first use) or by ID, and answers
//!   `{"ok":true,"channel":"C…","ts":"…"}`. A `thread_ts` must name a
//!   message of that channel (else `thread_not_found`); the message is
//!   then a reply in its thread.
//! - `chat.update` needs the channel's ID (a name is `channel_not_found`)
//!   and the `ts` of a message in it (else `message_not_found`), and
//!   replaces the message's text, attachments and blocks (those it is
//!   given; the others stay).
//! - [`FakeSlack::delete`] deletes a message as a person in Slack would.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use super::{Api, Fake, FakeServer, Recorded, Reply};

/// The bot token the Web API accepts.
pub const TOKEN: &str = "xoxb-test";

/// One message as Slack keeps it.
#[derive(Debug, Clone)]
pub struct Message {
    /// The channel's ID.
    pub channel: String,
    pub ts: String,
    /// The root's `ts` when this is a reply in a thread.
    pub thread_ts: Option<String>,
    /// The body it was posted with.
    pub posted: Value,
    /// That body with its text and attachments replaced by each
    /// `chat.update`: what Slack shows now.
    pub body: Value,
    /// How many times it was updated.
    pub updates: usize,
}

/// Slack's incoming webhooks and Web API, and the messages it holds.
#[derive(Debug, Default)]
pub struct Slack {
    /// Channel IDs by name.
    channels: BTreeMap<String, String>,
    messages: Vec<Message>,
    posted: u64,
}

/// A fake Slack whose messages tests read.
pub type FakeSlack = Fake<Slack>;

// === impl Slack ===

impl Slack {
    /// The ID of `channel`, a name (with or without `#`) or an ID; a new
    /// name gets a new ID.
    fn channel_id(&mut self, channel: &str) -> String {
        if self.channels.values().any(|id| id == channel) {
            return channel.to_owned();
        }
        let name = channel.trim_start_matches('#').to_owned();
        let next = format!("C{:08}", self.channels.len() + 1);
        self.channels.entry(name).or_insert(next).clone()
    }

    fn message(&self, channel: &str, ts: &str) -> Option<&Message> {
        self.messages
            .iter()
            .find(|m| m.channel == channel && m.ts == ts)
    }

    fn post_message(&mut self, body: &Value) -> Value {
        let channel = body["channel"].as_str().unwrap_or_default();
        if channel.is_empty() {
            return json!({"ok": false, "error": "channel_not_found"});
        }
        let channel = self.channel_id(channel);
        let thread_ts = body["thread_ts"].as_str().filter(|t| !t.is_empty());
        if let Some(thread_ts) = thread_ts
            && self.message(&channel, thread_ts).is_none()
        {
            return json!({"ok": false, "error": "thread_not_found"});
        }
        self.posted += 1;
        let ts = format!(
            "{}.{:06}",
            1_700_000_000 + self.posted,
            self.posted % 1_000_000
        );
        self.messages.push(Message {
            channel: channel.clone(),
            ts: ts.clone(),
            thread_ts: thread_ts.map(str::to_owned),
            posted: body.clone(),
            body: body.clone(),
            updates: 0,
        });
        json!({"ok": true, "channel": channel, "ts": ts})
    }

    fn update(&mut self, body: &Value) -> Value {
        let channel = body["channel"].as_str().unwrap_or_default();
        let ts = body["ts"].as_str().unwrap_or_default();
        if !self.channels.values().any(|id| id == channel) {
            return json!({"ok": false, "error": "channel_not_found"});
        }
        let Some(message) = self
            .messages
            .iter_mut()
            .find(|m| m.channel == channel && m.ts == ts)
        else {
            return json!({"ok": false, "error": "message_not_found"});
        };
        for field in ["text", "attachments", "blocks"] {
            if let Some(value) = body.get(field) {
                message.body[field] = value.clone();
            }
        }
        message.updates += 1;
        json!({"ok": true, "channel": channel, "ts": ts, "text": body["text"]})
    }
}

impl Api for Slack {
    fn answer(&mut self, request: &Recorded, _origin: &str) -> Reply {
        if request.method != "POST" {
            return Reply::status(405);
        }
        let parsed = request.try_json().filter(|_| request.is_json());
        let content = parsed.as_ref().and_then(content_error);
        if let Some(method) = request.path.strip_prefix("/api/") {
            let authorized = request.header("authorization") == Some(format!("Bearer {TOKEN}"));
            let answer = match (authorized, &parsed, method) {
                (false, _, _) => json!({"ok": false, "error": "not_authed"}),
                (true, None, _) => json!({"ok": false, "error": "invalid_json"}),
                (true, Some(body), "chat.postMessage") => match content {
                    Some(error) if !body["channel"].as_str().unwrap_or_default().is_empty() => {
                        json!({"ok": false, "error": error})
                    }
                    _ => self.post_message(body),
                },
                (true, Some(body), "chat.update") => self.update(body),
                (true, Some(_), _) => json!({"ok": false, "error": "unknown_method"}),
            };
            return Reply::json(200, &answer);
        }
        if !request.path.starts_with("/services/") {
            Reply::text(404, "no_service")
        } else if parsed.is_none() {
            Reply::text(400, "invalid_payload")
        } else if let Some(error) = content {
            Reply::text(400, error)
        } else {
            Reply::text(200, "ok")
        }
    }

    fn rate_limited(&mut self, request: &Recorded, retry_after: Duration) -> Reply {
        let seconds = retry_after.as_secs().to_string();
        if request.path.starts_with("/api/") {
            Reply::json(429, &json!({"ok": false, "error": "ratelimited"}))
        } else {
            Reply::text(429, "rate_limited")
        }
        .header("retry-after", &seconds)
    }
}

/// What Slack refuses in a message's content, in its words.
fn content_error(message: &serde_json::Value) -> Option<&'static str> {
    let present = |key: &str| match &message[key] {
        serde_json::Value::String(s) => !s.is_empty(),
        serde_json::Value::Array(a) => !a.is_empty(),
        _ => false,
    };
    if !present("text") && !present("attachments") && !present("blocks") {
        return Some("no_text");
    }
    match message.get("blocks") {
        None => None,
        Some(serde_json::Value::Array(blocks))
            if blocks.len() <= 50
                && blocks
                    .iter()
                    .all(|b| b.get("type").is_some_and(|t| t.is_string())) =>
        {
            None
        }
        Some(_) => Some("invalid_blocks"),
    }
}

impl FakeServer {
    /// A fake Slack on a free loopback port; the Web API accepts [`TOKEN`].
    pub async fn slack() -> Self {
        Self::start(Slack::default()).await
    }
}

// === impl FakeSlack ===

impl FakeSlack {
    /// Starts the fake on a free loopback port.
    pub async fn start() -> Self {
        Self::start_api(Slack::default()).await
    }

    /// The ID the fake gave the channel `name`, if it was posted to.
    #[must_use]
    pub fn channel_id(&self, name: &str) -> Option<String> {
        self.api(|slack| slack.channels.get(name.trim_start_matches('#')).cloned())
    }

    /// The messages of `channel` (an ID) that are not replies, oldest first.
    #[must_use]
    pub fn roots(&self, channel: &str) -> Vec<Message> {
        self.api(|slack| {
            slack
                .messages
                .iter()
                .filter(|m| m.channel == channel && m.thread_ts.is_none())
                .cloned()
                .collect()
        })
    }

    /// The replies in the thread of `ts`, oldest first.
    #[must_use]
    pub fn replies(&self, ts: &str) -> Vec<Message> {
        self.api(|slack| {
            slack
                .messages
                .iter()
                .filter(|m| m.thread_ts.as_deref() == Some(ts))
                .cloned()
                .collect()
        })
    }

    /// The message `ts`, if Slack still has it.
    #[must_use]
    pub fn message(&self, ts: &str) -> Option<Message> {
        self.api(|slack| slack.messages.iter().find(|m| m.ts == ts).cloned())
    }

    /// Deletes the message `ts` (its replies stay, as in Slack); whether
    /// there was one.
    pub fn delete(&self, ts: &str) -> bool {
        self.api(|slack| {
            let before = slack.messages.len();
            slack.messages.retain(|m| m.ts != ts);
            slack.messages.len() < before
        })
    }
}
