//! A fake Opsgenie Alert API: `POST /v2/alerts` with
//! `Authorization: GenieKey {API_KEY}` and a JSON alert (a `message`,
//! optional `alias`, `description`, `details` of strings). Answers `202`
//! `{"result":"Request will be processed","took",…,"requestId"}` and keeps
//! the alerts; errors are `{"message",…,"took","requestId"}` (a 422 adds
//! `errors: {field: text}`), as Opsgenie's, and so is its 429
//! (`X-RateLimit-State: THROTTLED`, the window in
//! `X-RateLimit-Period-In-Sec`).

use std::time::Duration;

use serde_json::{Value, json};

use super::{Api, Fake, Recorded, Reply};

/// The API key the fake accepts.
pub const API_KEY: &str = "0f5c3e1a-genie-key-fake-000000000001";

/// Opsgenie's alerts, oldest first.
#[derive(Debug, Default)]
pub struct Opsgenie {
    pub alerts: Vec<Value>,
}

/// A fake Opsgenie.
pub type FakeOpsgenie = Fake<Opsgenie>;

fn error(status: u16, message: &str) -> Reply {
    Reply::json(
        status,
        &json!({"message": message, "took": 0.001, "requestId": "fake-request-0001"}),
    )
}

fn unprocessable(field: &str, problem: &str) -> Reply {
    Reply::json(
        422,
        &json!({
            "message": "Request body is not processable. Please check the errors.",
            "errors": {field: problem},
            "took": 0.001,
            "requestId": "fake-request-0001",
        }),
    )
}

impl Api for Opsgenie {
    fn answer(&mut self, request: &Recorded, _origin: &str) -> Reply {
        if request.path != "/v2/alerts" {
            return error(404, "No handler found for path");
        }
        if request.method != "POST" {
            return error(405, "Method not allowed");
        }
        match request.header("authorization") {
            Some(auth) if auth == format!("GenieKey {API_KEY}") => {}
            Some(auth) if auth.starts_with("GenieKey ") => {
                return error(
                    422,
                    "Key format is not valid! Could not authenticate with the given key.",
                );
            }
            _ => {
                return error(
                    401,
                    "Could not authenticate: missing or malformed Authorization header",
                );
            }
        }
        let Some(body) = request.try_json().filter(|_| request.is_json()) else {
            return error(400, "Could not parse request body as JSON");
        };
        if body["message"].as_str().is_none_or(str::is_empty) {
            return unprocessable("message", "Message can not be empty.");
        }
        if !matches!(body["alias"], Value::Null | Value::String(_)) {
            return unprocessable("alias", "Alias must be a string.");
        }
        let details_ok = match &body["details"] {
            Value::Null => true,
            Value::Object(entries) => entries.values().all(Value::is_string),
            _ => false,
        };
        if !details_ok {
            return unprocessable("details", "Details must be a map of strings.");
        }
        self.alerts.push(body);
        Reply::json(
            202,
            &json!({
                "result": "Request will be processed",
                "took": 0.302,
                "requestId": format!("fake-request-{:04}", self.alerts.len()),
            }),
        )
    }

    fn rate_limited(&mut self, _request: &Recorded, retry_after: Duration) -> Reply {
        error(
            429,
            "You are making too many requests! To avoid errors, we recommend you limit requests.",
        )
        .header("x-ratelimit-state", "THROTTLED")
        .header("x-ratelimit-reason", "INTEGRATION")
        .header(
            "x-ratelimit-period-in-sec",
            &retry_after.as_secs().to_string(),
        )
    }
}

impl FakeOpsgenie {
    /// Starts the fake on a free loopback port.
    pub async fn start() -> Self {
        Self::start_api(Opsgenie::default()).await
    }

    /// The alerts created so far, oldest first.
    #[must_use]
    pub fn alerts(&self) -> Vec<Value> {
        self.api(|o| o.alerts.clone())
    }
}
