//! How the GitHub types (`github`, `githubdispatch`,
//! `githubpullrequestcomment`) authenticate: the Secret's `token` (or
//! `password`), else a GitHub App as Flux reads it from the Secret
//! (flux-providers §7.6): `githubAppID`, `githubAppInstallationID` or
//! `githubAppInstallationOwner`, `githubAppPrivateKey`, and optionally
//! `githubAppBaseURL`. The App's RS256 JWT (issued 30 s in the past, valid
//! two minutes) is exchanged for an installation token, cached by the
//! sender's [`Tokens`](crate::tokens::Tokens) until shortly before it
//! expires, and fetched anew when GitHub answers 401 to it.
//!
//! Unlike Flux, the App's API base defaults to the Provider's own API base
//! (`https://api.github.com/` for github.com, `{host}/api/v3/` for GitHub
//! Enterprise), so an Enterprise App works without `githubAppBaseURL`.

use serde::{Deserialize, Serialize};

use super::github_headers;
use crate::config::Resolved;
use crate::outcome::Outcome;
use crate::providers::{Clients, Writing};
use crate::tokens::{self, Token, TokenKey, TokenRequest};

/// How a GitHub call authenticates. Holds credentials: never log it.
pub(super) enum GitHubAuth {
    /// A personal access token (or any token) from the Secret.
    Token(String),
    /// A GitHub App installation.
    App(App),
}

/// A GitHub App as the Secret gives it.
pub(super) struct App {
    id: String,
    installation: Installation,
    private_key: String,
    /// The API base the App calls go to, ending in `/`.
    base: String,
    key: TokenKey,
}

enum Installation {
    Id(String),
    Owner(String),
}

/// The Secret's keys (Flux's names).
const APP_ID: &str = "githubAppID";
const INSTALLATION_ID: &str = "githubAppInstallationID";
const INSTALLATION_OWNER: &str = "githubAppInstallationOwner";
const PRIVATE_KEY: &str = "githubAppPrivateKey";
const BASE_URL: &str = "githubAppBaseURL";

/// The credentials of a GitHub Provider whose API base is `api` (ending in
/// `/`): its token, else its App.
///
/// # Errors
///
/// Flux's words for what is missing or contradictory.
pub(super) fn auth(resolved: &Resolved, api: &str) -> Result<GitHubAuth, String> {
    if let Ok(token) = crate::providers::shared::token_or_password(resolved, "github") {
        return Ok(GitHubAuth::Token(token));
    }
    let text = |key: &str| resolved.secret_text(key).map(str::trim);
    let Some(id) = text(APP_ID) else {
        return Err("github token or github app details must be specified".to_owned());
    };
    let installation = match (text(INSTALLATION_ID), text(INSTALLATION_OWNER)) {
        (Some(_), Some(_)) => {
            return Err(
                "only one of app installation owner or ID must be provided to use github app authentication"
                    .to_owned(),
            );
        }
        (Some(id), None) => Installation::Id(id.to_owned()),
        (None, Some(owner)) => Installation::Owner(owner.to_owned()),
        (None, None) => {
            return Err(
                "app installation owner or ID must be provided to use github app authentication"
                    .to_owned(),
            );
        }
    };
    let Some(private_key) = text(PRIVATE_KEY) else {
        return Err("private key must be provided to use github app authentication".to_owned());
    };
    jsonwebtoken::EncodingKey::from_rsa_pem(private_key.as_bytes()).map_err(|_| {
        format!("{PRIVATE_KEY} in the Provider's Secret is not a PEM-encoded RSA private key")
    })?;
    let base = match text(BASE_URL) {
        Some(base) if base.ends_with('/') => base.to_owned(),
        Some(base) => format!("{base}/"),
        None => api.to_owned(),
    };
    let installation_text = match &installation {
        Installation::Id(id) => format!("id:{id}"),
        Installation::Owner(owner) => format!("owner:{owner}"),
    };
    Ok(GitHubAuth::App(App {
        key: TokenKey::new(&["github-app", &base, id, &installation_text, private_key]),
        id: id.to_owned(),
        installation,
        private_key: private_key.to_owned(),
        base,
    }))
}

#[derive(Serialize)]
struct Claims<'a> {
    iat: i64,
    exp: i64,
    iss: &'a str,
}

#[derive(Deserialize)]
struct Granted {
    token: String,
    expires_at: String,
}

#[derive(Deserialize)]
struct Found {
    id: serde_json::Value,
}

#[derive(Deserialize)]
struct AppInfo {
    slug: String,
}

// === impl GitHubAuth ===

impl GitHubAuth {
    /// Runs `call` with a token; when an App's token is refused (401), it is
    /// forgotten and `call` runs once more with a new one.
    pub(super) async fn authorized<'a>(
        &self,
        clients: &Clients,
        resolved: &Resolved,
        call: impl Fn(String) -> Writing<'a>,
    ) -> Outcome {
        match self {
            Self::Token(token) => call(token.clone()).await,
            Self::App(app) => {
                tokens::authorized(
                    &clients.tokens,
                    app.key,
                    || app.fetch(clients, resolved),
                    call,
                )
                .await
            }
        }
    }

    /// The login whose comments are ours: the token's user (`None`: ask
    /// `GET /user`), or the App's bot user `{slug}[bot]`.
    ///
    /// # Errors
    ///
    /// The outcome of a failed App lookup.
    pub(super) async fn app_login(
        &self,
        clients: &Clients,
        resolved: &Resolved,
    ) -> Result<Option<String>, Outcome> {
        match self {
            Self::Token(_) => Ok(None),
            Self::App(app) => app
                .slug(clients, resolved)
                .await
                .map(|slug| Some(format!("{slug}[bot]"))),
        }
    }
}

// === impl App ===

impl App {
    /// A JWT for the App's own calls.
    fn jwt(&self) -> Result<String, Outcome> {
        let iat = tokens::unix_now() - 30;
        tokens::sign_rs256(
            &Claims {
                iat,
                exp: iat + 120,
                iss: &self.id,
            },
            &self.private_key,
            None,
        )
        .map_err(|problem| Outcome::Dead {
            reason: format!("{PRIVATE_KEY} {problem}"),
            status: 0,
            body: String::new(),
        })
    }

    /// An installation token, exchanged for the App's JWT.
    async fn fetch(&self, clients: &Clients, resolved: &Resolved) -> Result<Token, Outcome> {
        let jwt = self.jwt()?;
        let id = match &self.installation {
            Installation::Id(id) => id.clone(),
            Installation::Owner(owner) => {
                self.installation_of(clients, resolved, &jwt, owner).await?
            }
        };
        let url = format!("{}app/installations/{id}/access_tokens", self.base);
        let answer = tokens::exchange(
            &clients.http,
            resolved,
            TokenRequest {
                method: reqwest::Method::POST,
                url: &url,
                headers: &github_headers(&jwt, false),
                body: None,
            },
            "could not get a GitHub App installation token",
        )
        .await?;
        let granted: Granted = serde_json::from_slice(&answer.body).map_err(|_| Outcome::Dead {
            reason: "could not get a GitHub App installation token: the answer holds no token"
                .to_owned(),
            status: answer.status,
            body: String::new(),
        })?;
        let expires_at = granted
            .expires_at
            .parse()
            .unwrap_or_else(|_| jiff::Timestamp::now() + jiff::SignedDuration::from_mins(50));
        Ok(Token::new(granted.token, expires_at))
    }

    /// The installation id of `owner`: an organization's, else a user's.
    async fn installation_of(
        &self,
        clients: &Clients,
        resolved: &Resolved,
        jwt: &str,
        owner: &str,
    ) -> Result<String, Outcome> {
        let owner = crate::providers::shared::path_escape(owner);
        let mut last = None;
        for kind in ["orgs", "users"] {
            let url = format!("{}{kind}/{owner}/installation", self.base);
            let looked_up = tokens::exchange(
                &clients.http,
                resolved,
                TokenRequest {
                    method: reqwest::Method::GET,
                    url: &url,
                    headers: &github_headers(jwt, false),
                    body: None,
                },
                "could not find the GitHub App installation of githubAppInstallationOwner",
            )
            .await;
            match looked_up {
                Ok(answer) => {
                    let found: Option<Found> = serde_json::from_slice(&answer.body).ok();
                    return match found.map(|f| f.id) {
                        Some(serde_json::Value::Number(id)) => Ok(id.to_string()),
                        _ => Err(Outcome::Dead {
                            reason: "could not find the GitHub App installation of githubAppInstallationOwner: the answer holds no id".to_owned(),
                            status: answer.status,
                            body: String::new(),
                        }),
                    };
                }
                // Not an organization's: try the user's.
                Err(outcome) if outcome.status() == 404 => last = Some(outcome),
                Err(outcome) => return Err(outcome),
            }
        }
        Err(last.unwrap_or(Outcome::Dead {
            reason: "could not find the GitHub App installation".to_owned(),
            status: 404,
            body: String::new(),
        }))
    }

    /// The App's slug (`GET /app`), cached as long as a token would be.
    async fn slug(&self, clients: &Clients, resolved: &Resolved) -> Result<String, Outcome> {
        let key = TokenKey::new(&["github-app-slug", &self.base, &self.id]);
        clients
            .tokens
            .get(key, || async {
                let jwt = self.jwt()?;
                let url = format!("{}app", self.base);
                let answer = tokens::exchange(
                    &clients.http,
                    resolved,
                    TokenRequest {
                        method: reqwest::Method::GET,
                        url: &url,
                        headers: &github_headers(&jwt, false),
                        body: None,
                    },
                    "could not look up the GitHub App",
                )
                .await?;
                let info: AppInfo =
                    serde_json::from_slice(&answer.body).map_err(|_| Outcome::Dead {
                        reason: "could not look up the GitHub App: the answer names no slug"
                            .to_owned(),
                        status: answer.status,
                        body: String::new(),
                    })?;
                Ok(Token::lasting(
                    info.slug,
                    std::time::Duration::from_secs(3600),
                ))
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_flux::objects::SecretData;

    const API: &str = "https://api.github.com/";

    fn resolved(pairs: &[(&str, &str)]) -> Resolved {
        let mut secret = SecretData::default();
        for (k, v) in pairs {
            secret.insert((*k).to_owned(), v.as_bytes().to_vec());
        }
        Resolved {
            provider_type: "github".into(),
            secret: crate::config::secret_holding(secret),
            ..Resolved::default()
        }
    }

    fn key() -> &'static str {
        include_str!("../../../../tests/fixtures/test-rsa-key.pem")
    }

    #[test]
    fn a_token_wins_over_app_keys() {
        let mut r = resolved(&[(APP_ID, "1")]);
        r.token = "ghp".into();
        assert!(matches!(auth(&r, API), Ok(GitHubAuth::Token(t)) if t == "ghp"));
    }

    #[test]
    fn app_keys_are_checked_with_fluxs_words() {
        let cases: [(&[(&str, &str)], &str); 4] = [
            (&[], "github token or github app details must be specified"),
            (
                &[(APP_ID, "1")],
                "app installation owner or ID must be provided",
            ),
            (
                &[
                    (APP_ID, "1"),
                    (INSTALLATION_ID, "2"),
                    (INSTALLATION_OWNER, "o"),
                ],
                "only one of app installation owner or ID",
            ),
            (
                &[(APP_ID, "1"), (INSTALLATION_ID, "2")],
                "private key must be provided",
            ),
        ];
        for (pairs, expected) in cases {
            let error = auth(&resolved(pairs), API).err().unwrap();
            assert!(error.contains(expected), "{error}");
        }
        let bad = resolved(&[
            (APP_ID, "1"),
            (INSTALLATION_ID, "2"),
            (PRIVATE_KEY, "-----BEGIN RSA PRIVATE KEY-----\nnot-a-key\n"),
        ]);
        let error = auth(&bad, API).err().unwrap();
        assert!(
            error.contains("not a PEM-encoded RSA private key"),
            "{error}"
        );
        assert!(!error.contains("not-a-key"), "{error}");
    }

    #[test]
    fn the_app_base_defaults_to_the_providers_api_and_keys_differ_by_installation() {
        let app =
            |pairs: &[(&str, &str)]| match auth(&resolved(pairs), "https://ghe.example/api/v3/") {
                Ok(GitHubAuth::App(app)) => app,
                _ => panic!("an App"),
            };
        let by_id = app(&[(APP_ID, "1"), (INSTALLATION_ID, "2"), (PRIVATE_KEY, key())]);
        assert_eq!(by_id.base, "https://ghe.example/api/v3/");
        let by_owner = app(&[
            (APP_ID, "1"),
            (INSTALLATION_OWNER, "org"),
            (PRIVATE_KEY, key()),
        ]);
        assert_ne!(by_id.key, by_owner.key);
        let based = app(&[
            (APP_ID, "1"),
            (INSTALLATION_ID, "2"),
            (PRIVATE_KEY, key()),
            (BASE_URL, "https://api.example"),
        ]);
        assert_eq!(based.base, "https://api.example/");
        let jwt = by_id.jwt().unwrap();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.required_spec_claims.clear();
        let public = include_str!("../../../../tests/fixtures/test-rsa-key.pub.pem");
        let claims = jsonwebtoken::decode::<serde_json::Value>(
            &jwt,
            &jsonwebtoken::DecodingKey::from_rsa_pem(public.as_bytes()).unwrap(),
            &validation,
        )
        .unwrap()
        .claims;
        assert_eq!(claims["iss"], "1");
        assert_eq!(
            claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
            120
        );
    }
}
