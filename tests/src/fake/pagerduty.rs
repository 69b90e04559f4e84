//! A fake PagerDuty Events API v2: `POST /v2/enqueue` (alert events:
//! `routing_key` of 32 characters, `event_action` `trigger`, `acknowledge`
//! or `resolve`, a `dedup_key` for the latter two, a `payload` with
//! `summary`, `source` and `severity` for triggers) and
//! `POST /v2/change/enqueue` (change events: `routing_key`, `payload` with
//! `summary`). The routing key must be [`ROUTING_KEY`]. Answers `202` with
//! `{"status":"success","message":…,"dedup_key"}` (change events:
//! `{"status":"success","message":"Change event processed"}`); invalid
//! events get `400` `{"status":"invalid event","message":"Event object is
//! invalid","errors":[…]}`, as PagerDuty's; its 429 is
//! `{"status":"throttle event",…}` and names no wait.

use std::time::Duration;

use serde_json::{Value, json};

use super::{Api, Fake, Recorded, Reply};

/// The integration's routing key (32 characters, as PagerDuty's).
pub const ROUTING_KEY: &str = "R0fakeR0utingKey0000000000000032";

/// The events PagerDuty accepted, oldest first.
#[derive(Debug, Default)]
pub struct PagerDuty {
    /// Alert events (`/v2/enqueue`).
    pub events: Vec<Value>,
    /// Change events (`/v2/change/enqueue`).
    pub changes: Vec<Value>,
}

/// A fake PagerDuty.
pub type FakePagerDuty = Fake<PagerDuty>;

fn invalid(errors: &[&str]) -> Reply {
    Reply::json(
        400,
        &json!({
            "status": "invalid event",
            "message": "Event object is invalid",
            "errors": errors,
        }),
    )
}

fn text(value: &Value) -> Option<&str> {
    value.as_str().filter(|s| !s.is_empty())
}

impl PagerDuty {
    fn check_routing_key(body: &Value) -> Result<(), Reply> {
        match body["routing_key"].as_str() {
            None => Err(invalid(&["'routing_key' is missing or blank"])),
            Some(key) if key.len() != 32 => Err(invalid(&[
                "Length of 'routing_key' is incorrect (should be 32 characters)",
            ])),
            // PagerDuty does not say whether a key is unknown: it answers
            // 400 the same way for a key of no integration.
            Some(key) if key != ROUTING_KEY => Err(invalid(&["Invalid routing key"])),
            Some(_) => Ok(()),
        }
    }

    fn event(&mut self, body: Value) -> Reply {
        if let Err(reply) = Self::check_routing_key(&body) {
            return reply;
        }
        let action = body["event_action"].as_str().unwrap_or_default();
        if !matches!(action, "trigger" | "acknowledge" | "resolve") {
            return invalid(&[
                "'event_action' is invalid (must be one of: trigger, acknowledge, resolve)",
            ]);
        }
        if action == "trigger" {
            let payload = &body["payload"];
            let mut errors = Vec::new();
            for field in ["summary", "source", "severity"] {
                if text(&payload[field]).is_none() {
                    errors.push(format!("'payload.{field}' is missing or blank"));
                }
            }
            if !matches!(
                payload["severity"].as_str(),
                None | Some("critical" | "error" | "warning" | "info")
            ) {
                errors.push(
                    "'payload.severity' is invalid (must be one of: critical, error, warning, info)"
                        .to_owned(),
                );
            }
            if !errors.is_empty() {
                return invalid(&errors.iter().map(String::as_str).collect::<Vec<_>>());
            }
        } else if text(&body["dedup_key"]).is_none() {
            return invalid(&["'dedup_key' is missing or blank"]);
        }
        let dedup_key = text(&body["dedup_key"]).map_or_else(
            || format!("fake-dedup-{}", self.events.len()),
            str::to_owned,
        );
        self.events.push(body);
        Reply::json(
            202,
            &json!({"status": "success", "message": "Event processed", "dedup_key": dedup_key}),
        )
    }

    fn change(&mut self, body: Value) -> Reply {
        if let Err(reply) = Self::check_routing_key(&body) {
            return reply;
        }
        if text(&body["payload"]["summary"]).is_none() {
            return invalid(&["'payload.summary' is missing or blank"]);
        }
        self.changes.push(body);
        Reply::json(
            202,
            &json!({"status": "success", "message": "Change event processed"}),
        )
    }
}

impl Api for PagerDuty {
    fn answer(&mut self, request: &Recorded, _origin: &str) -> Reply {
        let change = match request.path.as_str() {
            "/v2/enqueue" => false,
            "/v2/change/enqueue" => true,
            _ => return Reply::json(404, &json!({"status": "not found"})),
        };
        if request.method != "POST" {
            return Reply::json(405, &json!({"status": "method not allowed"}));
        }
        let Some(body) = request.try_json().filter(|_| request.is_json()) else {
            return Reply::json(
                400,
                &json!({"status": "invalid request", "message": "Event object is invalid"}),
            );
        };
        if change {
            self.change(body)
        } else {
            self.event(body)
        }
    }

    fn rate_limited(&mut self, _request: &Recorded, _retry_after: Duration) -> Reply {
        Reply::json(
            429,
            &json!({
                "status": "throttle event",
                "message": "Requests for this service are arriving too quickly. Please retry later.",
            }),
        )
    }
}

impl FakePagerDuty {
    /// Starts the fake on a free loopback port.
    pub async fn start() -> Self {
        Self::start_api(PagerDuty::default()).await
    }

    /// The alert events accepted so far, oldest first.
    #[must_use]
    pub fn events(&self) -> Vec<Value> {
        self.api(|pd| pd.events.clone())
    }

    /// The change events accepted so far, oldest first.
    #[must_use]
    pub fn changes(&self) -> Vec<Value> {
        self.api(|pd| pd.changes.clone())
    }
}
