//! A fake Zulip server: `POST /api/v1/messages`, form-encoded, with HTTP
//! basic auth as the bot [`BOT_EMAIL`] and its [`API_KEY`], to the stream
//! [`STREAM`]. Answers are Zulip's own: `{"result":"success","msg":"",
//! "id":…}`, errors as `{"result":"error","msg":…,"code":…}`
//! (`UNAUTHORIZED` / `INVALID_API_KEY` 401, `REQUEST_VARIABLE_MISSING`,
//! `STREAM_DOES_NOT_EXIST`, `BAD_REQUEST` 400). When it rate-limits it
//! answers 429 `RATE_LIMIT_HIT` with `retry-after` in the body and the
//! `Retry-After` and `X-RateLimit-*` headers.

use std::time::Duration;

use serde_json::json;

use super::{Api, FakeServer, Recorded, Reply};

/// The bot's e-mail (the basic-auth user).
pub const BOT_EMAIL: &str = "flux-bot@zulip.example.com";
/// The bot's API key (the basic-auth password).
pub const API_KEY: &str = "gjA04ZYcqXKalvYMA8OeXSfzUOLrtbZv";
/// `Basic base64("{BOT_EMAIL}:{API_KEY}")`.
pub const BASIC: &str =
    "Basic Zmx1eC1ib3RAenVsaXAuZXhhbXBsZS5jb206Z2pBMDRaWWNxWEthbHZZTUE4T2VYU2Z6VU9McnRiWnY=";
/// The stream the bot may post to.
pub const STREAM: &str = "flux alerts";

/// Zulip's REST API.
#[derive(Debug, Default)]
pub struct Zulip {
    next_id: u64,
}

fn error(status: u16, code: &str, msg: &str) -> Reply {
    Reply::json(
        status,
        &json!({"result": "error", "msg": msg, "code": code}),
    )
}

impl Api for Zulip {
    fn answer(&mut self, request: &Recorded, _origin: &str) -> Reply {
        if request.path != "/api/v1/messages" {
            return error(404, "BAD_REQUEST", "Invalid API endpoint");
        }
        if request.method != "POST" {
            return error(405, "BAD_REQUEST", "Method Not Allowed");
        }
        match request.header("authorization") {
            None => {
                return error(
                    401,
                    "UNAUTHORIZED",
                    "Not logged in: API authentication or user session required",
                );
            }
            Some(header) if header != BASIC => {
                return error(401, "INVALID_API_KEY", "Invalid API key");
            }
            Some(_) => {}
        }
        let form_encoded = request
            .header("content-type")
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        let form = if form_encoded {
            request.form()
        } else {
            Vec::new()
        };
        let field = |name: &str| {
            form.iter()
                .find_map(|(k, v)| (k == name).then_some(v.as_str()))
        };
        for name in ["type", "to", "content"] {
            if field(name).is_none() {
                return Reply::json(
                    400,
                    &json!({"result": "error", "msg": format!("Missing '{name}' argument"),
                            "code": "REQUEST_VARIABLE_MISSING", "var_name": name}),
                );
            }
        }
        if !matches!(field("type"), Some("stream" | "channel")) {
            return error(400, "BAD_REQUEST", "Invalid message type");
        }
        if field("topic").is_none_or(str::is_empty) {
            return error(400, "BAD_REQUEST", "Topic can't be empty!");
        }
        let to = field("to").unwrap_or_default();
        if to != STREAM {
            return Reply::json(
                400,
                &json!({"result": "error", "msg": format!("Channel '{to}' does not exist"),
                        "code": "STREAM_DOES_NOT_EXIST", "stream": to}),
            );
        }
        self.next_id += 1;
        Reply::json(
            200,
            &json!({"result": "success", "msg": "", "id": self.next_id}),
        )
    }

    fn rate_limited(&mut self, _request: &Recorded, retry_after: Duration) -> Reply {
        let seconds = retry_after.as_secs();
        let reset = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs()
            + seconds;
        Reply::json(
            429,
            &json!({"result": "error", "msg": "API usage exceeded rate limit",
                    "code": "RATE_LIMIT_HIT", "retry-after": seconds}),
        )
        .header("retry-after", &seconds.to_string())
        .header("x-ratelimit-limit", "200")
        .header("x-ratelimit-remaining", "0")
        .header("x-ratelimit-reset", &reset.to_string())
    }
}

impl FakeServer {
    /// A fake Zulip server on a free loopback port.
    pub async fn zulip() -> Self {
        Self::start(Zulip::default()).await
    }
}
