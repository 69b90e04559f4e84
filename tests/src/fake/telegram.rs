//! A fake Telegram Bot API: `POST /bot{token}/sendMessage` with a JSON
//! body, for the bot [`TOKEN`] and the chats [`CHAT`] and [`FORUM`] (whose
//! topic [`TOPIC`] exists). Answers are Telegram's own: `200` with
//! `{"ok":true,"result":{…}}`, errors as `{"ok":false,"error_code":…,
//! "description":…}` (`401 Unauthorized` for another token, `404 Not Found`
//! for another method, `400 Bad Request: …` for an unknown chat or topic,
//! a missing field, or MarkdownV2 that leaves a reserved character
//! unescaped). When it rate-limits it answers as Telegram does: `429` with
//! `parameters.retry_after` in the body and no header.

use std::time::Duration;

use serde_json::{Value, json};

use super::{Api, FakeServer, Recorded, Reply};

/// The bot token the fake accepts.
pub const TOKEN: &str = "7475996719:AAHos6jPYrZ-fake_token";
/// The path of `sendMessage` for [`TOKEN`].
pub const SEND_MESSAGE: &str = "/bot7475996719:AAHos6jPYrZ-fake_token/sendMessage";
/// A chat the bot may post in.
pub const CHAT: &str = "-1557265138";
/// A forum supergroup with topics.
pub const FORUM: &str = "-1552289257";
/// The forum's topic.
pub const TOPIC: &str = "42";

/// The characters MarkdownV2 reserves outside entities.
const RESERVED: &str = "_*[]()~`>#+-=|{}.!\\";

/// Telegram's Bot API.
#[derive(Debug, Default)]
pub struct Telegram {
    next_id: u64,
}

fn error(code: u16, description: &str) -> Reply {
    Reply::json(
        code,
        &json!({"ok": false, "error_code": code, "description": description}),
    )
}

/// The first reserved character left unescaped, outside the `*` bold markers.
fn unescaped(text: &str) -> Option<char> {
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '*' => {}
            c if RESERVED.contains(c) => return Some(c),
            _ => {}
        }
    }
    None
}

/// `chat_id` or `message_thread_id` as Telegram reads them: a number or a
/// string (a `@username` for chats).
fn as_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl Api for Telegram {
    fn answer(&mut self, request: &Recorded, _origin: &str) -> Reply {
        let Some((token, method)) = request
            .path
            .strip_prefix("/bot")
            .and_then(|rest| rest.split_once('/'))
        else {
            return error(404, "Not Found");
        };
        if token != TOKEN {
            return error(401, "Unauthorized");
        }
        if method != "sendMessage" || request.method != "POST" {
            return error(404, "Not Found");
        }
        let Some(body) = request.try_json().filter(|_| request.is_json()) else {
            return error(400, "Bad Request: message text is empty");
        };
        let Some(chat) = as_text(&body["chat_id"]) else {
            return error(400, "Bad Request: chat_id is empty");
        };
        let Some(text) = body["text"].as_str().filter(|t| !t.is_empty()) else {
            return error(400, "Bad Request: message text is empty");
        };
        if chat != CHAT && chat != FORUM {
            return error(400, "Bad Request: chat not found");
        }
        let thread = body.get("message_thread_id").and_then(as_text);
        if let Some(thread) = &thread
            && (chat != FORUM || thread != TOPIC)
        {
            return error(400, "Bad Request: message thread not found");
        }
        if body["parse_mode"] == "MarkdownV2"
            && let Some(c) = unescaped(text)
        {
            return error(
                400,
                &format!(
                    "Bad Request: can't parse entities: Character '{c}' is reserved and must be escaped with the preceding '\\'"
                ),
            );
        }
        self.next_id += 1;
        Reply::json(
            200,
            &json!({"ok": true, "result": {
                "message_id": self.next_id,
                "chat": {"id": chat, "type": "supergroup"},
                "date": 1_704_103_200,
                "text": text,
            }}),
        )
    }

    fn rate_limited(&mut self, _request: &Recorded, retry_after: Duration) -> Reply {
        let seconds = retry_after.as_secs();
        Reply::json(
            429,
            &json!({
                "ok": false,
                "error_code": 429,
                "description": format!("Too Many Requests: retry after {seconds}"),
                "parameters": {"retry_after": seconds},
            }),
        )
    }
}

impl FakeServer {
    /// A fake Telegram Bot API on a free loopback port; the bot is [`TOKEN`].
    pub async fn telegram() -> Self {
        Self::start(Telegram::default()).await
    }
}
