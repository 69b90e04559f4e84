//! A fake Discord webhook: `POST /api/webhooks/<id>/<token>/slack`, the
//! Slack-compatible endpoint Flux uses (attachments required; `200 ok`),
//! with Discord's JSON errors `{"message","code"}`. When it rate-limits it
//! answers as Discord does: `429` with `{"message","retry_after": seconds
//! (float),"global"}`, `Retry-After` (whole seconds, rounded up) and the
//! `X-RateLimit-*` headers.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;

use super::{Api, FakeServer, Recorded, Reply};

/// The webhook id the fake knows.
pub const WEBHOOK_ID: &str = "112233445566778899";
/// That webhook's token.
pub const TOKEN: &str = "discord-webhook-token";

/// Discord's webhook endpoints.
#[derive(Debug)]
pub struct Discord;

fn error(status: u16, code: u32, message: &str) -> Reply {
    Reply::json(status, &json!({"message": message, "code": code}))
}

impl Api for Discord {
    fn answer(&mut self, request: &Recorded, _origin: &str) -> Reply {
        let segments = request.segments();
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        let (id, token, slack) = match segments[..] {
            ["api", "webhooks", id, token] => (id, token, false),
            ["api", "webhooks", id, token, "slack"] => (id, token, true),
            _ => return error(404, 0, "404: Not Found"),
        };
        if request.method != "POST" {
            return error(405, 0, "405: Method Not Allowed");
        }
        if id != WEBHOOK_ID {
            return error(404, 10015, "Unknown Webhook");
        }
        if token != TOKEN {
            return error(401, 50027, "Invalid Webhook Token");
        }
        let Some(body) = request.try_json().filter(|_| request.is_json()) else {
            return error(400, 50109, "The request body contains invalid JSON.");
        };
        if !slack {
            // The native endpoint wants content or embeds, not attachments.
            return error(400, 50006, "Cannot send an empty message");
        }
        let has_text = body["text"].as_str().is_some_and(|t| !t.is_empty());
        let has_attachments = body["attachments"]
            .as_array()
            .is_some_and(|a| !a.is_empty());
        if !has_text && !has_attachments {
            return error(400, 50006, "Cannot send an empty message");
        }
        Reply::text(200, "ok")
    }

    fn rate_limited(&mut self, _request: &Recorded, retry_after: Duration) -> Reply {
        let seconds = retry_after.as_secs_f64();
        let reset = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64()
            + seconds;
        Reply::json(
            429,
            &json!({"message": "You are being rate limited.", "retry_after": seconds, "global": false}),
        )
        .header("retry-after", &retry_after.as_secs_f64().ceil().to_string())
        .header("x-ratelimit-limit", "5")
        .header("x-ratelimit-remaining", "0")
        .header("x-ratelimit-reset", &format!("{reset:.3}"))
        .header("x-ratelimit-reset-after", &format!("{seconds:.3}"))
        .header("x-ratelimit-bucket", "a06de2b4a8b3b8c6f0b5d1c2e3f4a5b6")
        .header("x-ratelimit-scope", "user")
    }
}

impl FakeServer {
    /// A fake Discord on a free loopback port, knowing the webhook
    /// [`WEBHOOK_ID`] / [`TOKEN`].
    pub async fn discord() -> Self {
        Self::start(Discord).await
    }
}
