//! `googlepubsub` (flux-providers §5.8): one message per event on a Pub/Sub
//! topic, its data the event as Flux's JSON, its attributes the Secret's
//! `headers`. Address = the GCP project id, channel = the topic id.
//!
//! Flux publishes with Google's gRPC client library; Herald calls the same
//! API over HTTPS (`projects.topics.publish`), which carries the same
//! message. The Secret's `token` is a service-account JSON key: its RS256
//! JWT is exchanged at the key's `token_uri` for an OAuth2 access token
//! (the JWT bearer grant), cached by the sender's
//! [`Tokens`](crate::tokens::Tokens) until shortly before it expires and
//! got anew when Pub/Sub answers 401. Workload identity and Application
//! Default Credentials are not used. The `herald.dev/endpoint` annotation
//! names another API endpoint (a locational or private one, or an emulator).

use serde::{Deserialize, Serialize};

use super::shared::{base64, bearer, json_content, path_escape};
use super::{Clients, Exchange, Input, Plan, Provider, ProviderError, Writing};
use crate::config::Resolved;
use crate::http::Request;
use crate::outcome::Outcome;
use crate::tokens::{self, Token, TokenKey, TokenRequest};
use herald_flux::FluxEvent;

/// `googlepubsub`.
pub(super) struct GooglePubSub;

/// The scope a publisher needs.
const SCOPE: &str = "https://www.googleapis.com/auth/pubsub";
/// Where tokens come from when the key names no `token_uri`.
const TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

impl Provider for GooglePubSub {
    fn plan(&self, input: &Input<'_>) -> Result<Plan, ProviderError> {
        publishing(input.resolved, input.event).map(|p| Plan::Exchange(Box::new(p)))
    }
}

/// The message to publish for `event`.
fn publishing(resolved: &Resolved, event: &FluxEvent) -> Result<Publishing, ProviderError> {
    let what = "googlepubsub";
    if resolved.address.trim().is_empty() {
        return Err(ProviderError::missing(
            what,
            "GCP project ID cannot be empty",
        ));
    }
    if resolved.channel.trim().is_empty() {
        return Err(ProviderError::missing(
            what,
            "GCP Pub/Sub topic ID cannot be empty",
        ));
    }
    let account = ServiceAccount::from_token(&resolved.token)
        .map_err(|problem| ProviderError::invalid(what, problem))?;
    let endpoint = if resolved.endpoint.is_empty() {
        format!("https://pubsub.{}", account.universe_domain())
    } else {
        resolved.endpoint.trim_end_matches('/').to_owned()
    };
    let url = format!(
        "{endpoint}/v1/projects/{}/topics/{}:publish",
        path_escape(resolved.address.trim()),
        path_escape(resolved.channel.trim())
    );
    reqwest::Url::parse(&url)
        .map_err(|e| ProviderError::invalid(what, format!("the publish URL is not valid: {e}")))?;
    let body = herald_flux::gojson::to_vec(&Publish {
        messages: [Message {
            data: base64(&event.to_go_json()),
            attributes: &resolved.headers,
        }],
    });
    Ok(Publishing {
        key: TokenKey::new(&[
            "google-service-account",
            &account.token_uri,
            &account.client_email,
            &account.private_key,
        ]),
        account,
        url,
        body,
    })
}

/// The fields of a service-account key Herald reads.
#[derive(Deserialize)]
struct ServiceAccount {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    client_email: String,
    #[serde(default)]
    private_key: String,
    #[serde(default)]
    private_key_id: String,
    #[serde(default)]
    token_uri: String,
    #[serde(default)]
    universe_domain: String,
}

impl ServiceAccount {
    /// The key in the Secret's `token`.
    fn from_token(token: &str) -> Result<Self, String> {
        if token.trim().is_empty() {
            return Err(
                "token must hold a service-account JSON key (workload identity and application default credentials are not supported)"
                    .to_owned(),
            );
        }
        let mut account: Self = serde_json::from_str(token)
            .map_err(|_| "token is not a service-account JSON key".to_owned())?;
        if account.kind != "service_account" {
            return Err(format!(
                "token is a {:?} credential; only service-account keys are supported",
                account.kind
            ));
        }
        if account.client_email.is_empty() || account.private_key.is_empty() {
            return Err("the service-account key has no client_email or private_key".to_owned());
        }
        jsonwebtoken::EncodingKey::from_rsa_pem(account.private_key.as_bytes())
            .map_err(|_| "the service-account key's private_key is not a PEM RSA key".to_owned())?;
        if account.token_uri.is_empty() {
            TOKEN_URI.clone_into(&mut account.token_uri);
        }
        Ok(account)
    }

    fn universe_domain(&self) -> &str {
        if self.universe_domain.is_empty() {
            "googleapis.com"
        } else {
            &self.universe_domain
        }
    }
}

#[derive(Serialize)]
struct Publish<'a> {
    messages: [Message<'a>; 1],
}

#[derive(Serialize)]
struct Message<'a> {
    data: String,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    attributes: &'a std::collections::BTreeMap<String, String>,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
}

/// A message to publish. Holds a private key: never log it.
struct Publishing {
    account: ServiceAccount,
    key: TokenKey,
    url: String,
    body: Vec<u8>,
}

impl Exchange for Publishing {
    fn run<'a>(&'a self, clients: &'a Clients, resolved: &'a Resolved) -> Writing<'a> {
        Box::pin(tokens::authorized(
            &clients.tokens,
            self.key,
            move || self.access_token(clients, resolved),
            move |token| Box::pin(self.publish(clients, resolved, token)),
        ))
    }
}

// === impl Publishing ===

impl Publishing {
    /// An access token for the service account (the JWT bearer grant).
    async fn access_token(&self, clients: &Clients, resolved: &Resolved) -> Result<Token, Outcome> {
        let account = &self.account;
        let iat = tokens::unix_now();
        let jwt = tokens::sign_rs256(
            &Claims {
                iss: &account.client_email,
                scope: SCOPE,
                aud: &account.token_uri,
                iat,
                exp: iat + 3600,
            },
            &account.private_key,
            Some(&account.private_key_id)
                .filter(|k| !k.is_empty())
                .map(String::as_str),
        )
        .map_err(|problem| Outcome::Dead {
            reason: format!("the service-account key {problem}"),
            status: 0,
            body: String::new(),
        })?;
        let what = "could not get a Google access token";
        let answer = tokens::exchange(
            &clients.http,
            resolved,
            TokenRequest {
                method: reqwest::Method::POST,
                url: &account.token_uri,
                headers: &[(
                    "Content-Type".to_owned(),
                    "application/x-www-form-urlencoded".to_owned(),
                )],
                body: Some(tokens::form(&[
                    ("grant_type", JWT_BEARER),
                    ("assertion", &jwt),
                ])),
            },
            what,
        )
        .await?;
        tokens::oauth2_token(&answer, what)
    }

    async fn publish(&self, clients: &Clients, resolved: &Resolved, token: String) -> Outcome {
        let Ok(url) = reqwest::Url::parse(&self.url) else {
            return Outcome::Dead {
                reason: "googlepubsub: the publish URL is not valid".to_owned(),
                status: 0,
                body: String::new(),
            };
        };
        let headers = vec![json_content(), ("Authorization".to_owned(), bearer(&token))];
        clients
            .http
            .send(Request::post(url, headers, self.body.clone()), resolved)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_flux::FluxEvent;

    fn account_json() -> String {
        serde_json::json!({
            "type": "service_account",
            "project_id": "flux-project",
            "private_key_id": "k1",
            "private_key": include_str!("../../../tests/fixtures/test-rsa-key.pkcs8.pem"),
            "client_email": "flux@flux-project.iam.gserviceaccount.com",
            "token_uri": "https://oauth2.example/token",
        })
        .to_string()
    }

    fn resolved(token: &str) -> Resolved {
        Resolved {
            provider_type: "googlepubsub".into(),
            address: "flux-project".into(),
            channel: "flux-events".into(),
            token: token.into(),
            headers: [("team".to_owned(), "platform".to_owned())].into(),
            ..Resolved::default()
        }
    }

    fn plan(resolved: &Resolved) -> Result<Publishing, ProviderError> {
        let event = FluxEvent::from_json(br#"{"metadata":{"foo":"bar"}}"#).unwrap();
        publishing(resolved, &event)
    }

    #[test]
    fn the_message_is_the_events_flux_json_with_the_headers_as_attributes() {
        let planned = plan(&resolved(&account_json())).unwrap();
        let body: serde_json::Value = serde_json::from_slice(&planned.body).unwrap();
        let data = body["messages"][0]["data"].as_str().unwrap();
        use base64::Engine as _;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap();
        // Flux's own asserted payload for this event.
        assert_eq!(
            String::from_utf8(decoded).unwrap(),
            r#"{"involvedObject":{},"severity":"","timestamp":null,"message":"","reason":"","metadata":{"foo":"bar"},"reportingController":""}"#
        );
        assert_eq!(body["messages"][0]["attributes"]["team"], "platform");
        let empty = std::collections::BTreeMap::new();
        let bare = herald_flux::gojson::to_vec(&Publish {
            messages: [Message {
                data: String::new(),
                attributes: &empty,
            }],
        });
        assert_eq!(
            String::from_utf8(bare).unwrap(),
            r#"{"messages":[{"data":""}]}"#
        );
    }

    #[test]
    fn the_publish_url_names_project_and_topic_and_the_endpoint_can_be_another() {
        let mut r = resolved(&account_json());
        let planned = plan(&r).unwrap();
        assert_eq!(
            planned.url,
            "https://pubsub.googleapis.com/v1/projects/flux-project/topics/flux-events:publish"
        );
        assert_eq!(planned.account.token_uri, "https://oauth2.example/token");
        r.endpoint = "https://europe-west1-pubsub.googleapis.com/".into();
        assert_eq!(
            plan(&r).unwrap().url,
            "https://europe-west1-pubsub.googleapis.com/v1/projects/flux-project/topics/flux-events:publish"
        );
    }

    #[test]
    fn unusable_settings_say_why_without_the_key() {
        let cases = [
            (
                Resolved {
                    address: String::new(),
                    ..resolved(&account_json())
                },
                "GCP project ID cannot be empty",
            ),
            (
                Resolved {
                    channel: String::new(),
                    ..resolved(&account_json())
                },
                "GCP Pub/Sub topic ID cannot be empty",
            ),
            (
                resolved(""),
                "workload identity and application default credentials are not supported",
            ),
            (resolved("not json"), "not a service-account JSON key"),
            (
                resolved(r#"{"type":"authorized_user"}"#),
                "only service-account keys are supported",
            ),
            (
                resolved(
                    r#"{"type":"service_account","client_email":"a@b","private_key":"-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n"}"#,
                ),
                "private_key is not a PEM RSA key",
            ),
        ];
        for (r, expected) in cases {
            let error = plan(&r).err().unwrap().to_string();
            assert!(error.contains(expected), "{error}");
            assert!(!error.contains("c2VjcmV0"), "{error}");
        }
    }
}
