//! A fake Zoom Team Chat incoming webhook:
//! `POST /chat/webhooks/incomingwebhook/<HOOK>` with the webhook's
//! verification [`TOKEN`] as the whole `Authorization` header. With
//! `?format=full` the body must be a `content` object with a `head.text`
//! and a `body` list; otherwise any text is posted as it is. Answers `200`
//! with the posted message's ids; errors are `{"code", "message"}` as
//! Zoom's, and so is its `429`, with `Retry-After`.

use std::time::Duration;

use serde_json::json;

use super::{Api, FakeServer, Recorded, Reply};

/// The hook the fake knows.
pub const HOOK: &str = "hK9tC0dZQwuFlux";
/// The hook's verification token.
pub const TOKEN: &str = "zoom-verification-token";

/// A Zoom incoming webhook.
#[derive(Debug)]
pub struct Zoom;

fn error(status: u16, code: u32, message: &str) -> Reply {
    Reply::json(status, &json!({"code": code, "message": message}))
}

impl Api for Zoom {
    fn answer(&mut self, request: &Recorded, _origin: &str) -> Reply {
        if request.path != format!("/chat/webhooks/incomingwebhook/{HOOK}") {
            return error(404, 404, "Not Found");
        }
        if request.method != "POST" {
            return error(405, 405, "Method Not Allowed");
        }
        if request.header("authorization").as_deref() != Some(TOKEN) {
            return error(401, 124, "Invalid authorization token.");
        }
        if request.query_value("format").as_deref() == Some("full") {
            let Some(body) = request.try_json().filter(|_| request.is_json()) else {
                return error(400, 300, "Invalid request body.");
            };
            let content = &body["content"];
            if content["head"]["text"].as_str().is_none_or(str::is_empty)
                || !content["body"].is_array()
            {
                return error(400, 300, "Invalid message content.");
            }
        } else if request.body.is_empty() {
            return error(400, 300, "Message is empty.");
        }
        Reply::json(
            200,
            &json!({
                "message_id": "20240101100000000_fake_message",
                "robot_jid": "v1fake@xmpp.zoom.us",
                "sender_member_id": "fake-member",
                "sender_user_id": "fake-user",
                "timestamp": 1_704_103_200_000_u64,
            }),
        )
    }

    fn rate_limited(&mut self, _request: &Recorded, retry_after: Duration) -> Reply {
        error(
            429,
            429,
            "You have reached the maximum per-second rate limit for this API. Try again later.",
        )
        .header("retry-after", &retry_after.as_secs().to_string())
        .header("x-ratelimit-category", "Light")
        .header("x-ratelimit-type", "QPS")
    }
}

impl FakeServer {
    /// A fake Zoom incoming webhook on a free loopback port, for [`HOOK`]
    /// and [`TOKEN`].
    pub async fn zoom() -> Self {
        Self::start(Zoom).await
    }
}
