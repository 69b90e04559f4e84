//! A fake Google Cloud: the OAuth2 token endpoint (`POST /token`) and the
//! Pub/Sub API (`POST /v1/projects/{project}/topics/{topic}:publish`) on one
//! loopback server.
//!
//! The token endpoint takes the JWT bearer grant of service account
//! [`CLIENT_EMAIL`], checking the assertion as Google does: RS256 signed by
//! the account's key (the public key of `tests/fixtures/test-rsa-key.pem`),
//! issued by the account, for this endpoint's URL, asking the Pub/Sub scope,
//! living at most an hour. It grants `ya29.` tokens for an hour. Pub/Sub
//! takes only those tokens, knows topic [`TOPIC`] of project [`PROJECT`],
//! checks each message (base64 data, string attributes) and keeps it.
//! Errors are Google's shapes: `{"error": "invalid_grant",
//! "error_description"}` from the token endpoint, `{"error": {"code",
//! "message", "status"}}` from Pub/Sub (its rate limit is `429
//! RESOURCE_EXHAUSTED`).

use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

use super::{Api, Fake, Recorded, Reply};

/// The project the fake knows.
pub const PROJECT: &str = "flux-project";
/// The topic the fake knows.
pub const TOPIC: &str = "flux-events";
/// The service account the token endpoint knows.
pub const CLIENT_EMAIL: &str = "herald@flux-project.iam.gserviceaccount.com";
/// The account's private key (PKCS#8 PEM, as in a service-account key file).
pub const PRIVATE_KEY: &str = include_str!("../../fixtures/test-rsa-key.pkcs8.pem");
const PUBLIC_KEY: &str = include_str!("../../fixtures/test-rsa-key.pub.pem");
const SCOPE: &str = "https://www.googleapis.com/auth/pubsub";

/// A published message as Pub/Sub keeps it.
#[derive(Debug, Clone)]
pub struct Published {
    pub topic: String,
    /// The decoded data.
    pub data: Vec<u8>,
    pub attributes: Value,
}

/// Google's token endpoint and Pub/Sub.
#[derive(Debug, Default)]
pub struct Google {
    granted: Vec<String>,
    published: Vec<Published>,
}

/// A fake Google Cloud.
pub type FakeGoogle = Fake<Google>;

fn grant_error(description: &str) -> Reply {
    Reply::json(
        400,
        &json!({"error": "invalid_grant", "error_description": description}),
    )
}

fn api_error(code: u16, status: &str, message: &str) -> Reply {
    Reply::json(
        code,
        &json!({"error": {"code": code, "message": message, "status": status}}),
    )
}

impl Api for Google {
    fn answer(&mut self, request: &Recorded, origin: &str) -> Reply {
        if request.path == "/token" {
            return self.token(request, origin);
        }
        let Some(name) = request
            .path
            .strip_prefix("/v1/")
            .and_then(|p| p.strip_suffix(":publish"))
        else {
            return api_error(404, "NOT_FOUND", "Requested entity was not found.");
        };
        if request.method != "POST" {
            return api_error(405, "METHOD_NOT_ALLOWED", "Method not allowed.");
        }
        let token = request
            .header("authorization")
            .and_then(|v| v.strip_prefix("Bearer ").map(str::to_owned));
        if !token.is_some_and(|t| self.granted.contains(&t)) {
            return api_error(
                401,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
            );
        }
        if name != format!("projects/{PROJECT}/topics/{TOPIC}") {
            return api_error(
                404,
                "NOT_FOUND",
                &format!(
                    "Resource not found (resource={}).",
                    name.rsplit('/').next().unwrap_or("")
                ),
            );
        }
        let Some(body) = request.try_json().filter(|_| request.is_json()) else {
            return api_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.");
        };
        let Some(messages) = body["messages"].as_array().filter(|m| !m.is_empty()) else {
            return api_error(400, "INVALID_ARGUMENT", "No messages were provided.");
        };
        let mut ids = Vec::new();
        for message in messages {
            let data = message["data"]
                .as_str()
                .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok());
            let attributes = message.get("attributes").cloned().unwrap_or(Value::Null);
            let strings = attributes.as_object().is_none_or(|a| {
                a.iter()
                    .all(|(k, v)| v.is_string() && !k.starts_with("goog"))
            });
            let (Some(data), true) = (data, strings) else {
                return api_error(
                    400,
                    "INVALID_ARGUMENT",
                    "Invalid message data or attributes.",
                );
            };
            if data.is_empty() && attributes.as_object().is_none_or(serde_json::Map::is_empty) {
                return api_error(
                    400,
                    "INVALID_ARGUMENT",
                    "Some messages contain no data and no attribute.",
                );
            }
            self.published.push(Published {
                topic: name.to_owned(),
                data,
                attributes,
            });
            ids.push(self.published.len().to_string());
        }
        Reply::json(200, &json!({"messageIds": ids}))
    }

    fn rate_limited(&mut self, _request: &Recorded, retry_after: Duration) -> Reply {
        api_error(
            429,
            "RESOURCE_EXHAUSTED",
            "Quota exceeded for quota metric 'Publisher throughput'.",
        )
        .header("retry-after", &retry_after.as_secs().to_string())
    }
}

// === impl Google ===

impl Google {
    fn token(&mut self, request: &Recorded, origin: &str) -> Reply {
        let form = request.form();
        let field = |key: &str| {
            form.iter()
                .find_map(|(k, v)| (k == key).then(|| v.clone()))
                .unwrap_or_default()
        };
        if request.header("content-type").as_deref() != Some("application/x-www-form-urlencoded") {
            return grant_error("Bad Request");
        }
        if field("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
            return Reply::json(
                400,
                &json!({"error": "unsupported_grant_type", "error_description": "Invalid grant_type"}),
            );
        }
        let key = jsonwebtoken::DecodingKey::from_rsa_pem(PUBLIC_KEY.as_bytes()).expect("key");
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.set_audience(&[format!("{origin}/token")]);
        validation.set_issuer(&[CLIENT_EMAIL]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud"]);
        let claims = match jsonwebtoken::decode::<Value>(&field("assertion"), &key, &validation) {
            Ok(data) => data.claims,
            Err(_) => return grant_error("Invalid JWT Signature."),
        };
        let life = claims["exp"].as_i64().unwrap_or(0) - claims["iat"].as_i64().unwrap_or(0);
        if !(0..=3600).contains(&life) {
            return grant_error(
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.",
            );
        }
        let scopes = claims["scope"].as_str().unwrap_or_default();
        if !scopes.split(' ').any(|s| s == SCOPE) {
            return grant_error("Invalid OAuth scope or ID token audience provided.");
        }
        let token = format!("ya29.fake-{:04}", self.granted.len() + 1);
        self.granted.push(token.clone());
        Reply::json(
            200,
            &json!({"access_token": token, "expires_in": 3599, "token_type": "Bearer"}),
        )
    }
}

impl FakeGoogle {
    /// Starts the fake on a free loopback port.
    pub async fn start() -> Self {
        Self::start_api(Google::default()).await
    }

    /// A service-account key file for [`CLIENT_EMAIL`] whose `token_uri` is
    /// this fake's.
    #[must_use]
    pub fn service_account_json(&self) -> String {
        json!({
            "type": "service_account",
            "project_id": PROJECT,
            "private_key_id": "0123456789abcdef",
            "private_key": PRIVATE_KEY,
            "client_email": CLIENT_EMAIL,
            "client_id": "100000000000000000001",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": self.server().url("/token"),
            "universe_domain": "googleapis.com",
        })
        .to_string()
    }

    /// The messages published so far, oldest first.
    #[must_use]
    pub fn published(&self) -> Vec<Published> {
        self.api(|google| google.published.clone())
    }

    /// How many access tokens were granted.
    #[must_use]
    pub fn tokens_granted(&self) -> usize {
        self.api(|google| google.granted.len())
    }

    /// Revokes every access token granted so far.
    pub fn revoke_tokens(&self) {
        self.api(|google| {
            for token in &mut google.granted {
                token.push_str("-revoked");
            }
        });
    }
}
