//! A fake Rocket.Chat incoming webhook: `POST /hooks/<id>/<token>` with a
//! JSON message (`text` or `attachments`); `200 {"success":true}`, else
//! Rocket.Chat's `{"success":false,"error"}`. When it rate-limits it
//! answers `429` with the same shape and its `X-RateLimit-*` headers.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;

use super::{Api, FakeServer, Recorded, Reply};

/// The integration id the fake knows.
pub const INTEGRATION_ID: &str = "6bXqGbTPhWr3vDG5W";
/// That integration's token.
pub const TOKEN: &str = "rocket-integration-token";

/// Rocket.Chat's incoming webhooks.
#[derive(Debug)]
pub struct Rocket;

fn failure(status: u16, error: &str) -> Reply {
    Reply::json(status, &json!({"success": false, "error": error}))
}

impl Api for Rocket {
    fn answer(&mut self, request: &Recorded, _origin: &str) -> Reply {
        let segments = request.segments();
        let ["hooks", id, token] = segments.iter().map(String::as_str).collect::<Vec<_>>()[..]
        else {
            return failure(404, "Not found");
        };
        if request.method != "POST" {
            return failure(405, "Method not allowed");
        }
        if id != INTEGRATION_ID || token != TOKEN {
            return failure(400, "Invalid integration id or token provided.");
        }
        let Some(body) = request.try_json().filter(|_| request.is_json()) else {
            return failure(400, "Invalid JSON body");
        };
        let has_text = body["text"].as_str().is_some_and(|t| !t.is_empty());
        let has_attachments = body["attachments"]
            .as_array()
            .is_some_and(|a| !a.is_empty());
        if !has_text && !has_attachments {
            return failure(400, "Message is empty");
        }
        Reply::json(200, &json!({"success": true}))
    }

    fn rate_limited(&mut self, _request: &Recorded, retry_after: Duration) -> Reply {
        let reset_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .saturating_add(retry_after)
            .as_millis();
        let seconds = retry_after.as_secs();
        failure(
            429,
            &format!(
                "Error, too many requests. Please slow down. You must wait {seconds} seconds before trying this endpoint again. [error-too-many-requests]"
            ),
        )
        .header("x-ratelimit-limit", "10")
        .header("x-ratelimit-remaining", "0")
        .header("x-ratelimit-reset", &reset_ms.to_string())
    }
}

impl FakeServer {
    /// A fake Rocket.Chat on a free loopback port, knowing the integration
    /// [`INTEGRATION_ID`] / [`TOKEN`].
    pub async fn rocket() -> Self {
        Self::start(Rocket).await
    }
}
