//! A fake Google Chat incoming webhook:
//! `POST /v1/spaces/{space}/messages?key=…&token=…` with a JSON body, for
//! the space [`SPACE`] and its webhook's [`KEY`] and [`TOKEN`]. Answers are
//! Google's own: `200` with the created message, errors as
//! `{"error":{"code","message","status"}}` (`INVALID_ARGUMENT` 400 for a
//! bad key or a body that is not a message, `UNAUTHENTICATED` 401 for a bad
//! token, `NOT_FOUND` 404). When it rate-limits it answers 429
//! `RESOURCE_EXHAUSTED`, with no `Retry-After`.

use std::time::Duration;

use serde_json::{Value, json};

use super::{Api, FakeServer, Recorded, Reply};

/// The space the webhook posts to.
pub const SPACE: &str = "AAAAbcdEfGh";
/// The webhook's API key (`key` in the query).
pub const KEY: &str = "AIzaSyDdI0hCZtE6vySjMm-WEfRq3CPzqKqqsHI";
/// The webhook's token (`token` in the query).
pub const TOKEN: &str = "fake-webhook-token";

/// Google Chat's incoming webhooks.
#[derive(Debug, Default)]
pub struct GoogleChat {
    next_id: u64,
}

fn error(code: u16, status: &str, message: &str) -> Reply {
    Reply::json(
        code,
        &json!({"error": {"code": code, "message": message, "status": status}}),
    )
}

/// Whether `body` is a cards v1 message as Google Chat reads it: cards with
/// a header and sections of widgets (`textParagraph` or `keyValue`).
fn valid_cards(body: &Value) -> bool {
    let Some(cards) = body["cards"].as_array() else {
        return false;
    };
    cards.iter().all(|card| {
        card["header"]["title"].is_string()
            && card["sections"].as_array().is_some_and(|sections| {
                sections.iter().all(|section| {
                    section["widgets"].as_array().is_some_and(|widgets| {
                        widgets.iter().all(|w| {
                            w["textParagraph"]["text"].is_string()
                                || (w["keyValue"]["topLabel"].is_string()
                                    && w["keyValue"]["content"].is_string())
                        })
                    })
                })
            })
    })
}

impl Api for GoogleChat {
    fn answer(&mut self, request: &Recorded, _origin: &str) -> Reply {
        let segments = request.segments();
        let parts: Vec<&str> = segments.iter().map(String::as_str).collect();
        let ["v1", "spaces", space, "messages"] = parts[..] else {
            return error(404, "NOT_FOUND", "Requested entity was not found.");
        };
        if request.method != "POST" {
            return error(405, "METHOD_NOT_ALLOWED", "Method not allowed.");
        }
        if request.query_value("key").as_deref() != Some(KEY) {
            return error(
                400,
                "INVALID_ARGUMENT",
                "API key not valid. Please pass a valid API key.",
            );
        }
        if request.query_value("token").as_deref() != Some(TOKEN) {
            return error(
                401,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials.",
            );
        }
        if space != SPACE {
            return error(404, "NOT_FOUND", "Requested entity was not found.");
        }
        let Some(body) = request.try_json().filter(|_| request.is_json()) else {
            return error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.");
        };
        if !body["text"].is_string() && !valid_cards(&body) {
            return error(
                400,
                "INVALID_ARGUMENT",
                "Message cannot be empty. Discarded 0 chars.",
            );
        }
        self.next_id += 1;
        Reply::json(
            200,
            &json!({
                "name": format!("spaces/{SPACE}/messages/{}", self.next_id),
                "sender": {"name": "users/114022495153014004089", "type": "BOT"},
                "cards": body["cards"],
                "space": {"name": format!("spaces/{SPACE}"), "type": "ROOM"},
            }),
        )
    }

    fn rate_limited(&mut self, _request: &Recorded, _retry_after: Duration) -> Reply {
        error(
            429,
            "RESOURCE_EXHAUSTED",
            "Resource has been exhausted (e.g. check quota).",
        )
    }
}

impl FakeServer {
    /// A fake Google Chat webhook on a free loopback port.
    pub async fn googlechat() -> Self {
        Self::start(GoogleChat::default()).await
    }

    /// The URL of the fake's webhook (as Google Chat shows it for a space).
    #[must_use]
    pub fn googlechat_webhook(&self) -> String {
        self.url(&format!(
            "/v1/spaces/{SPACE}/messages?key={KEY}&token={TOKEN}"
        ))
    }
}
