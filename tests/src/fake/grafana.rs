//! A fake Grafana annotations API: `POST /api/annotations` with a JSON
//! body holding `text` (and optional `tags`, a list of strings), for a
//! service-account [`TOKEN`] as a bearer token or `Basic` of
//! [`USERNAME`]:[`PASSWORD`]; answers `{"message":"Annotation added","id":n}`
//! and keeps the annotations. Errors are `{"message":…}`, as Grafana's.

use serde_json::{Value, json};

use super::{Api, Fake, Recorded, Reply};

/// The service-account token the fake accepts.
pub const TOKEN: &str = "glsa-test";
/// The user whose password the fake accepts.
pub const USERNAME: &str = "admin";
/// [`USERNAME`]'s password.
pub const PASSWORD: &str = "secret";
/// `Basic base64("admin:secret")`.
pub const BASIC: &str = "Basic YWRtaW46c2VjcmV0";

/// Grafana's annotations, oldest first.
#[derive(Debug, Default)]
pub struct Grafana {
    annotations: Vec<Value>,
}

/// A fake Grafana.
pub type FakeGrafana = Fake<Grafana>;

impl Api for Grafana {
    fn answer(&mut self, request: &Recorded, _origin: &str) -> Reply {
        let error = |status: u16, message: &str| Reply::json(status, &json!({"message": message}));
        let authorization = request.header("authorization").unwrap_or_default();
        if authorization != format!("Bearer {TOKEN}") && authorization != BASIC {
            return error(401, "Unauthorized");
        }
        if request.path != "/api/annotations" {
            return error(404, "Not found");
        }
        if request.method != "POST" {
            return error(405, "Method Not Allowed");
        }
        let Some(body) = request.try_json().filter(|_| request.is_json()) else {
            return error(400, "bad request data");
        };
        let tags_ok = body
            .get("tags")
            .is_none_or(|t| t.as_array().is_some_and(|a| a.iter().all(Value::is_string)));
        if body["text"].as_str().is_none_or(str::is_empty) || !tags_ok {
            return error(400, "Failed to save annotation");
        }
        self.annotations.push(body);
        Reply::json(
            200,
            &json!({"message": "Annotation added", "id": self.annotations.len()}),
        )
    }
}

impl FakeGrafana {
    /// Starts the fake on a free loopback port.
    pub async fn start() -> Self {
        Self::start_api(Grafana::default()).await
    }

    /// The annotations added so far, oldest first.
    #[must_use]
    pub fn annotations(&self) -> Vec<Value> {
        self.api(|grafana| grafana.annotations.clone())
    }
}
