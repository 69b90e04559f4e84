//! A fake Microsoft Entra ID token endpoint for one application:
//! `POST /{TENANT}/oauth2/v2.0/token` with the form
//! `grant_type=client_credentials&client_id&client_secret&scope`. The
//! client credential of [`CLIENT_ID`] and [`CLIENT_SECRET`] gets a token of
//! scope [`SCOPE`]: `{"token_type":"Bearer","expires_in":3599,
//! "ext_expires_in":3599,"access_token":…}`. Errors are Entra's JSON
//! (`error`, `error_description` starting with an `AADSTS` code and ending
//! in trace lines, `error_codes`, `timestamp`, `trace_id`,
//! `correlation_id`): a wrong secret is `401 invalid_client`, an unknown
//! application `400 unauthorized_client`, an unknown tenant `400
//! invalid_request`, a missing or other scope `400 invalid_scope`.
//!
//! The tokens it grants are kept in an [`Issued`] list that a fake resource
//! (the fake Event Hubs namespace) accepts bearer tokens from; revoking
//! them makes the resource answer 401.

use std::sync::{Arc, Mutex, PoisonError};

use serde_json::json;

use super::{Api, Fake, Recorded, Reply};

/// The directory (tenant) id.
pub const TENANT: &str = "7c0f3a52-1b9e-4d0a-9f6e-2a8b5c4d3e21";
/// The application (client) id.
pub const CLIENT_ID: &str = "0b6f1e3d-9a2c-4e7b-8d15-6c3a2f9e8b40";
/// The application's client secret.
pub const CLIENT_SECRET: &str = "entra-app-client-secret-Q8~value";
/// The scope Event Hubs tokens are asked with.
pub const SCOPE: &str = "https://eventhubs.azure.net/.default";

/// The access tokens granted and not revoked, shared with the resources
/// that accept them.
#[derive(Debug, Clone, Default)]
pub struct Issued(Arc<Mutex<Vec<String>>>);

impl Issued {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `token` was granted and is not revoked.
    #[must_use]
    pub fn accepts(&self, token: &str) -> bool {
        self.lock().iter().any(|t| t == token)
    }

    /// Revokes every token granted so far.
    pub fn revoke_all(&self) {
        self.lock().clear();
    }

    fn grant(&self, token: String) {
        self.lock().push(token);
    }
}

/// Entra ID's token endpoint.
#[derive(Debug)]
pub struct Entra {
    issued: Issued,
    granted: u64,
}

/// A fake Entra ID.
pub type FakeEntra = Fake<Entra>;

/// Entra's error answer.
fn error(status: u16, error: &str, code: u32, description: &str) -> Reply {
    let timestamp = jiff::Timestamp::now()
        .strftime("%Y-%m-%d %H:%M:%SZ")
        .to_string();
    Reply::json(
        status,
        &json!({
            "error": error,
            "error_description": format!(
                "AADSTS{code}: {description}\r\nTrace ID: 4d6f1c2a-0000-4000-8000-fa4e00000001\r\nCorrelation ID: 9e2b7c1d-0000-4000-8000-fa4e00000002\r\nTimestamp: {timestamp}"
            ),
            "error_codes": [code],
            "timestamp": timestamp,
            "trace_id": "4d6f1c2a-0000-4000-8000-fa4e00000001",
            "correlation_id": "9e2b7c1d-0000-4000-8000-fa4e00000002",
            "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
        }),
    )
}

impl Api for Entra {
    fn answer(&mut self, request: &Recorded, _origin: &str) -> Reply {
        let segments = request.segments();
        let tenant = match segments.as_slice() {
            [tenant, oauth2, version, token]
                if oauth2 == "oauth2" && version == "v2.0" && token == "token" =>
            {
                tenant.clone()
            }
            _ => return Reply::text(404, "Not Found"),
        };
        if request.method != "POST" {
            return error(
                400,
                "invalid_request",
                900_561,
                "The endpoint only accepts POST requests. Received a GET request.",
            );
        }
        if tenant != TENANT {
            return error(
                400,
                "invalid_request",
                90_002,
                &format!(
                    "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
                ),
            );
        }
        let form_content = request
            .header("content-type")
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if !form_content {
            return error(
                400,
                "invalid_request",
                900_144,
                "The request body must contain the following parameter: 'grant_type'.",
            );
        }
        let form = request.form();
        let value = |key: &str| {
            form.iter()
                .find_map(|(k, v)| (k == key).then(|| v.clone()))
                .unwrap_or_default()
        };
        if value("grant_type") != "client_credentials" {
            return error(
                400,
                "unsupported_grant_type",
                70_003,
                "The app requested an unsupported grant type.",
            );
        }
        let client_id = value("client_id");
        if client_id != CLIENT_ID {
            return error(
                400,
                "unauthorized_client",
                700_016,
                &format!(
                    "Application with identifier '{client_id}' was not found in the directory '{TENANT}'."
                ),
            );
        }
        if value("client_secret") != CLIENT_SECRET {
            return error(
                401,
                "invalid_client",
                7_000_215,
                &format!(
                    "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{CLIENT_ID}'."
                ),
            );
        }
        if value("scope") != SCOPE {
            return error(
                400,
                "invalid_scope",
                1_002_012,
                "The provided value for scope is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).",
            );
        }
        self.granted += 1;
        let token = format!(
            "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.fake-entra-{:04}",
            self.granted
        );
        self.issued.grant(token.clone());
        Reply::json(
            200,
            &json!({
                "token_type": "Bearer",
                "expires_in": 3599,
                "ext_expires_in": 3599,
                "access_token": token,
            }),
        )
    }
}

impl FakeEntra {
    /// Starts the fake on a free loopback port.
    pub async fn start() -> Self {
        Self::start_api(Entra {
            issued: Issued::default(),
            granted: 0,
        })
        .await
    }

    /// The tokens it granted, for the resources that accept them.
    #[must_use]
    pub fn issued(&self) -> Issued {
        self.api(|entra| entra.issued.clone())
    }

    /// How many tokens it granted.
    #[must_use]
    pub fn tokens_granted(&self) -> u64 {
        self.api(|entra| entra.granted)
    }

    /// The authority to put in a Secret's `authorityHost`.
    #[must_use]
    pub fn authority(&self) -> String {
        self.url("/")
    }
}
