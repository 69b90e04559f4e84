//! A fake Webex messages API: `POST /v1/messages` with a bot's bearer
//! [`TOKEN`] and a JSON body naming a room (`roomId`, or `toPersonId` /
//! `toPersonEmail`) and holding `text` or `markdown`; answers `200` with the
//! created message. Errors are `{"message", "errors": [{"description"}],
//! "trackingId"}` as Webex's, and so is its `429`, with `Retry-After`.

use std::time::Duration;

use serde_json::{Value, json};

use super::{Api, FakeServer, Recorded, Reply};

/// The bot access token the fake accepts.
pub const TOKEN: &str = "webex-bot-token";
/// The room the bot is a member of.
pub const ROOM: &str = "Y2lzY29zcGFyazovL3VzL1JPT00vZmx1eA";

/// Webex's messages API.
#[derive(Debug)]
pub struct Webex;

/// Webex's error body.
fn error(status: u16, message: &str) -> Reply {
    Reply::json(
        status,
        &json!({
            "message": message,
            "errors": [{"description": message}],
            "trackingId": "ROUTER_FAKE_0001",
        }),
    )
    .header("trackingid", "ROUTER_FAKE_0001")
}

impl Api for Webex {
    fn answer(&mut self, request: &Recorded, _origin: &str) -> Reply {
        if request.path != "/v1/messages" {
            return error(404, "The requested resource could not be found.");
        }
        if request.method != "POST" {
            return error(405, "Method Not Allowed");
        }
        if request.header("authorization") != Some(format!("Bearer {TOKEN}")) {
            return error(
                401,
                "The request requires a valid access token set in the Authorization request header.",
            );
        }
        let Some(body) = request.try_json().filter(|_| request.is_json()) else {
            return error(400, "Unable to parse the request body as JSON.");
        };
        let text = |key: &str| body[key].as_str().unwrap_or_default().to_owned();
        let room = text("roomId");
        if room.is_empty() && text("toPersonId").is_empty() && text("toPersonEmail").is_empty() {
            return error(
                400,
                "Either roomId, toPersonId or toPersonEmail must be provided.",
            );
        }
        if room != ROOM {
            return error(404, "Could not find a room with provided ID.");
        }
        if text("text").is_empty() && text("markdown").is_empty() {
            return error(400, "Message text, markdown or a file must be provided.");
        }
        Reply::json(
            200,
            &json!({
                "id": "Y2lzY29zcGFyazovL3VzL01FU1NBR0UvMQ",
                "roomId": room,
                "roomType": "group",
                "text": body.get("markdown").cloned().unwrap_or(Value::Null),
                "markdown": body.get("markdown").cloned().unwrap_or(Value::Null),
                "personId": "Y2lzY29zcGFyazovL3VzL1BFT1BMRS9ib3Q",
                "personEmail": "flux@webex.bot",
                "created": "2024-01-01T10:00:00.000Z",
            }),
        )
    }

    fn rate_limited(&mut self, _request: &Recorded, retry_after: Duration) -> Reply {
        error(429, "Too Many Requests").header("retry-after", &retry_after.as_secs().to_string())
    }
}

impl FakeServer {
    /// A fake Webex on a free loopback port; the bot [`TOKEN`] may post to [`ROOM`].
    pub async fn webex() -> Self {
        Self::start(Webex).await
    }
}
