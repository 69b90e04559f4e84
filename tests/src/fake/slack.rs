//! A fake Slack: incoming webhooks (`/services/...`, plain-text answers
//! `ok`, `invalid_payload`, `no_service`) and the Web API's
//! `/api/chat.postMessage` (bearer [`TOKEN`] and a channel required; errors
//! are `200` with `{"ok":false,"error":…}`, as Slack answers them). When it
//! rate-limits, it answers `429` with `Retry-After` as Slack does: the Web
//! API with `{"ok":false,"error":"ratelimited"}`, a webhook with
//! `rate_limited`. A message must have `text`, `attachments` or `blocks`
//! (`no_text`), and `blocks` must be an array of at most 50 objects, each
//! with a `type` (`invalid_blocks`), as Slack requires.

use std::time::Duration;

use serde_json::json;

use super::{Api, FakeServer, Recorded, Reply};

/// The bot token `chat.postMessage` accepts.
pub const TOKEN: &str = "xoxb-test";

/// Slack's incoming webhooks and Web API.
#[derive(Debug)]
pub struct Slack;

impl Api for Slack {
    fn answer(&mut self, request: &Recorded, _origin: &str) -> Reply {
        if request.method != "POST" {
            return Reply::status(405);
        }
        let parsed = request.try_json().filter(|_| request.is_json());
        let content = parsed.as_ref().and_then(content_error);
        if request.path == "/api/chat.postMessage" {
            let authorized = request.header("authorization") == Some(format!("Bearer {TOKEN}"));
            let channel = parsed
                .as_ref()
                .and_then(|p| p["channel"].as_str())
                .unwrap_or_default();
            let error = if !authorized {
                "not_authed"
            } else if parsed.is_none() {
                "invalid_json"
            } else if channel.is_empty() {
                "channel_not_found"
            } else if let Some(error) = content {
                error
            } else {
                return Reply::json(
                    200,
                    &json!({"ok": true, "channel": "C1", "ts": "1700000000.000100"}),
                );
            };
            return Reply::json(200, &json!({"ok": false, "error": error}));
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
    /// A fake Slack on a free loopback port; `chat.postMessage` accepts [`TOKEN`].
    pub async fn slack() -> Self {
        Self::start(Slack).await
    }
}
