//! A fake incident.io HTTP alert source:
//! `POST /v2/alert_events/http/<SOURCE>` with the source's bearer [`TOKEN`]
//! and a JSON alert event (`title`, `status` `firing` or `resolved`,
//! `deduplication_key`, optional `description`, `metadata` of strings).
//! Answers `202` with `{"status":"success","message":…,"deduplication_key"}`;
//! errors are `{"type":"validation_error"|…,"status",
//! "request_id","errors":[{"code","message"}]}` as incident.io's, and so is
//! its `429`, with `Retry-After`.

use std::time::Duration;

use serde_json::{Value, json};

use super::{Api, FakeServer, Recorded, Reply};

/// The alert source config id the fake knows.
pub const SOURCE: &str = "01HZ0FAKEALERTSOURCE0000";
/// The alert source's token.
pub const TOKEN: &str = "inc-alert-source-token";

/// An incident.io alert source.
#[derive(Debug)]
pub struct IncidentIo;

fn error(status: u16, kind: &str, code: &str, message: &str) -> Reply {
    Reply::json(
        status,
        &json!({
            "type": kind,
            "status": status,
            "request_id": "fake-request-0001",
            "errors": [{"code": code, "message": message}],
        }),
    )
}

impl Api for IncidentIo {
    fn answer(&mut self, request: &Recorded, _origin: &str) -> Reply {
        if request.path != format!("/v2/alert_events/http/{SOURCE}") {
            return error(404, "not_found", "not_found", "Alert source not found");
        }
        if request.method != "POST" {
            return error(
                405,
                "method_not_allowed",
                "method_not_allowed",
                "Method not allowed",
            );
        }
        if request.header("authorization") != Some(format!("Bearer {TOKEN}")) {
            return error(
                401,
                "authentication_error",
                "unauthenticated",
                "The API key you've provided is invalid",
            );
        }
        let Some(body) = request.try_json().filter(|_| request.is_json()) else {
            return error(400, "validation_error", "invalid_body", "Invalid JSON body");
        };
        let invalid = |message: &str| error(422, "validation_error", "invalid_value", message);
        if body["title"].as_str().is_none_or(str::is_empty) {
            return invalid("title: must be provided");
        }
        if !matches!(body["status"].as_str(), Some("firing" | "resolved")) {
            return invalid("status: must be one of firing, resolved");
        }
        let metadata_ok = match &body["metadata"] {
            Value::Null => true,
            Value::Object(entries) => entries.values().all(Value::is_string),
            _ => false,
        };
        if !metadata_ok {
            return invalid("metadata: must be an object");
        }
        Reply::json(
            202,
            &json!({
                "status": "success",
                "message": "Event accepted for processing",
                "deduplication_key": body["deduplication_key"],
            }),
        )
    }

    fn rate_limited(&mut self, _request: &Recorded, retry_after: Duration) -> Reply {
        error(
            429,
            "rate_limit_exceeded",
            "rate_limit_exceeded",
            "You have exceeded the rate limit for this endpoint",
        )
        .header("retry-after", &retry_after.as_secs().to_string())
    }
}

impl FakeServer {
    /// A fake incident.io alert source on a free loopback port, for
    /// [`SOURCE`] and [`TOKEN`].
    pub async fn incident_io() -> Self {
        Self::start(IncidentIo).await
    }
}
