//! A fake Sentry envelope endpoint: `POST …/api/{PROJECT}/envelope/` with
//! `X-Sentry-Auth: Sentry sentry_version=7, sentry_client=…,
//! sentry_key={PUBLIC_KEY}` and an envelope, read line by line as Relay
//! does: the envelope header (`event_id` of 32 hex digits), then for each
//! item its header (`type`, `length`) and that many bytes of payload. Only
//! `event` and `transaction` items are accepted, each checked for the
//! fields Sentry needs. Answers `200` `{"id": event_id}` and keeps the
//! items; errors are `{"detail"}`, as Sentry's; its 429 carries
//! `Retry-After` and `X-Sentry-Rate-Limits`.

use std::time::Duration;

use serde_json::{Value, json};

use super::{Api, Fake, Recorded, Reply};

/// The project's public key.
pub const PUBLIC_KEY: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f9";
/// The project id.
pub const PROJECT: &str = "4507";

/// One item Sentry accepted.
#[derive(Debug, Clone)]
pub struct Item {
    /// The envelope's header.
    pub envelope: Value,
    /// `event` or `transaction`.
    pub kind: String,
    pub payload: Value,
}

/// Sentry's items, oldest first.
#[derive(Debug, Default)]
pub struct Sentry {
    pub items: Vec<Item>,
}

/// A fake Sentry.
pub type FakeSentry = Fake<Sentry>;

fn detail(status: u16, detail: &str) -> Reply {
    Reply::json(status, &json!({ "detail": detail }))
}

fn is_hex(value: &Value, len: usize) -> bool {
    value
        .as_str()
        .is_some_and(|s| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The `key=value` pairs of `X-Sentry-Auth`.
fn auth_pairs(header: &str) -> Option<Vec<(String, String)>> {
    let rest = header.strip_prefix("Sentry ")?;
    Some(
        rest.split(',')
            .filter_map(|pair| pair.trim().split_once('='))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect(),
    )
}

/// Reads an envelope: its header, then each item's header and payload.
fn parse_envelope(body: &[u8]) -> Result<(Value, Vec<(Value, Value)>), String> {
    let (header, mut rest) = match body.iter().position(|b| *b == b'\n') {
        Some(i) => (&body[..i], &body[i + 1..]),
        None => (body, &[][..]),
    };
    let header: Value =
        serde_json::from_slice(header).map_err(|e| format!("invalid envelope header: {e}"))?;
    let mut items = Vec::new();
    while !rest.is_empty() {
        let end = rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
        let item_header: Value = serde_json::from_slice(&rest[..end])
            .map_err(|e| format!("invalid item header: {e}"))?;
        rest = rest.get(end + 1..).unwrap_or_default();
        let payload = match item_header["length"].as_u64() {
            Some(length) => {
                let length = usize::try_from(length).unwrap_or(usize::MAX);
                if rest.len() < length {
                    return Err("item payload shorter than its length".to_owned());
                }
                let (payload, after) = rest.split_at(length);
                rest = after.strip_prefix(b"\n").unwrap_or(after);
                payload
            }
            None => {
                let end = rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
                let payload = &rest[..end];
                rest = rest.get(end + 1..).unwrap_or_default();
                payload
            }
        };
        let payload: Value =
            serde_json::from_slice(payload).map_err(|e| format!("invalid item payload: {e}"))?;
        items.push((item_header, payload));
    }
    Ok((header, items))
}

/// What Sentry needs of an item, by type.
fn check_item(kind: &str, payload: &Value) -> Result<(), String> {
    match kind {
        "event" => {
            if !matches!(
                payload["level"].as_str(),
                Some("fatal" | "error" | "warning" | "info" | "debug")
            ) {
                return Err("event: invalid level".to_owned());
            }
            if payload["message"].as_str().is_none() && payload["exception"].is_null() {
                return Err("event: no message".to_owned());
            }
        }
        "transaction" => {
            if payload["type"] != "transaction" {
                return Err("transaction: type must be transaction".to_owned());
            }
            if payload["start_timestamp"].is_null() || payload["timestamp"].is_null() {
                return Err("transaction: missing timestamps".to_owned());
            }
            let trace = &payload["contexts"]["trace"];
            if !is_hex(&trace["trace_id"], 32) || !is_hex(&trace["span_id"], 16) {
                return Err("transaction: invalid trace context".to_owned());
            }
            if !payload["spans"].is_array() {
                return Err("transaction: spans must be a list".to_owned());
            }
        }
        other => return Err(format!("unexpected item type {other}")),
    }
    if !is_hex(&payload["event_id"], 32) && !payload["event_id"].is_null() {
        return Err(format!("{kind}: invalid event_id"));
    }
    Ok(())
}

impl Api for Sentry {
    fn answer(&mut self, request: &Recorded, _origin: &str) -> Reply {
        let Some(project) = request
            .path
            .strip_suffix("/envelope/")
            .and_then(|p| p.rsplit_once("/api/"))
            .map(|(_, project)| project.to_owned())
        else {
            return detail(404, "not found");
        };
        if request.method != "POST" {
            return detail(405, "method not allowed");
        }
        let Some(auth) = request.header("x-sentry-auth").and_then(|h| auth_pairs(&h)) else {
            return detail(401, "missing authorization information");
        };
        let value = |key: &str| auth.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
        if value("sentry_version") != Some("7") || value("sentry_client").is_none() {
            return detail(400, "bad sentry DSN or auth header");
        }
        if value("sentry_key") != Some(PUBLIC_KEY) {
            return detail(401, "invalid api key");
        }
        if project != PROJECT {
            return detail(403, "event submission rejected with_reason: ProjectId");
        }
        let (header, items) = match parse_envelope(&request.body) {
            Ok(parsed) => parsed,
            Err(problem) => return detail(400, &format!("invalid envelope: {problem}")),
        };
        if !is_hex(&header["event_id"], 32) {
            return detail(400, "invalid envelope: invalid event_id");
        }
        if items.is_empty() {
            return detail(400, "invalid envelope: no items");
        }
        for (item_header, payload) in &items {
            let kind = item_header["type"].as_str().unwrap_or_default();
            if let Err(problem) = check_item(kind, payload) {
                return detail(400, &format!("invalid event envelope: {problem}"));
            }
        }
        for (item_header, payload) in items {
            self.items.push(Item {
                envelope: header.clone(),
                kind: item_header["type"].as_str().unwrap_or_default().to_owned(),
                payload,
            });
        }
        Reply::json(200, &json!({ "id": header["event_id"] }))
    }

    fn rate_limited(&mut self, _request: &Recorded, retry_after: Duration) -> Reply {
        let seconds = retry_after.as_secs().to_string();
        detail(
            429,
            "Sentry dropped data due to a quota or internal rate limit being reached. This will not affect your application.",
        )
        .header("retry-after", &seconds)
        .header(
            "x-sentry-rate-limits",
            &format!("{seconds}::organization:rate_limited"),
        )
    }
}

/// The DSN of [`PROJECT`] on `fake` under `prefix` (`""` or `/sentry`),
/// with `key` as its public key.
#[must_use]
pub fn dsn(fake: &super::FakeServer, prefix: &str, key: &str) -> String {
    fake.url(&format!("{prefix}/{PROJECT}"))
        .replacen("http://", &format!("http://{key}@"), 1)
}

impl FakeSentry {
    /// Starts the fake on a free loopback port.
    pub async fn start() -> Self {
        Self::start_api(Sentry::default()).await
    }

    /// The items accepted so far, oldest first.
    #[must_use]
    pub fn items(&self) -> Vec<Item> {
        self.api(|s| s.items.clone())
    }
}
