//! A fake Datadog Events API v1: `POST /api/v1/events` with
//! `DD-API-KEY: {API_KEY}` and a JSON event (`title` and `text`, optional
//! `alert_type` among Datadog's, `tags` of strings, `date_happened` in Unix
//! seconds). Answers `202` `{"status":"ok","event":{…}}` and keeps the
//! events; errors are `{"errors":[…]}` as Datadog's, and so is its 429,
//! with `X-RateLimit-Limit`, `-Period`, `-Remaining`, `-Reset` (seconds
//! until the window resets) and `-Name`.

use std::time::Duration;

use serde_json::{Value, json};

use super::{Api, Fake, Recorded, Reply};

/// The API key the fake accepts.
pub const API_KEY: &str = "fakedd0api0key0000000000000000ab";

/// Datadog's events, oldest first.
#[derive(Debug, Default)]
pub struct Datadog {
    pub events: Vec<Value>,
}

/// A fake Datadog.
pub type FakeDatadog = Fake<Datadog>;

fn errors(status: u16, errors: &[&str]) -> Reply {
    Reply::json(status, &json!({ "errors": errors }))
}

impl Api for Datadog {
    fn answer(&mut self, request: &Recorded, origin: &str) -> Reply {
        if request.path != "/api/v1/events" {
            return errors(404, &["Not found"]);
        }
        if request.method != "POST" {
            return errors(405, &["Method Not Allowed"]);
        }
        if request.header("dd-api-key").as_deref() != Some(API_KEY) {
            return errors(403, &["Forbidden"]);
        }
        let Some(body) = request.try_json().filter(|_| request.is_json()) else {
            return errors(
                400,
                &["Payload is not in the expected format: invalid JSON"],
            );
        };
        let title = body["title"].as_str().unwrap_or_default();
        let text = body["text"].as_str().unwrap_or_default();
        if title.is_empty() || text.is_empty() {
            return errors(400, &["Event title and text are required"]);
        }
        let alert_ok = body.get("alert_type").is_none_or(|t| {
            matches!(
                t.as_str(),
                Some(
                    "error"
                        | "warning"
                        | "info"
                        | "success"
                        | "user_update"
                        | "recommendation"
                        | "snapshot"
                )
            )
        });
        let tags_ok = body
            .get("tags")
            .is_none_or(|t| t.as_array().is_some_and(|a| a.iter().all(Value::is_string)));
        let date_ok = body.get("date_happened").is_none_or(Value::is_i64);
        if !alert_ok || !tags_ok || !date_ok {
            return errors(400, &["Payload is not in the expected format"]);
        }
        let id = 7_000_000_000_000_000_000_u64 + self.events.len() as u64;
        self.events.push(body.clone());
        Reply::json(
            202,
            &json!({
                "status": "ok",
                "event": {
                    "id": id,
                    "id_str": id.to_string(),
                    "title": title,
                    "text": text,
                    "date_happened": body["date_happened"],
                    "tags": body["tags"],
                    "priority": null,
                    "url": format!("{origin}/event/event?id={id}"),
                },
            }),
        )
    }

    fn rate_limited(&mut self, _request: &Recorded, retry_after: Duration) -> Reply {
        errors(429, &["Too many requests"])
            .header("x-ratelimit-limit", "1000")
            .header("x-ratelimit-period", "60")
            .header("x-ratelimit-remaining", "0")
            .header("x-ratelimit-reset", &retry_after.as_secs().to_string())
            .header("x-ratelimit-name", "events_post")
    }
}

impl FakeDatadog {
    /// Starts the fake on a free loopback port.
    pub async fn start() -> Self {
        Self::start_api(Datadog::default()).await
    }

    /// The events posted so far, oldest first.
    #[must_use]
    pub fn events(&self) -> Vec<Value> {
        self.api(|d| d.events.clone())
    }
}
