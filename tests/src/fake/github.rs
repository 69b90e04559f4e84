//! A fake GitHub Enterprise (`/api/v3/`): token [`TOKEN`] (bearer, with
//! `Accept: application/vnd.github.v3+json`) belongs to user [`LOGIN`].
//! Commit statuses are kept per commit, listed newest first and created;
//! pull request comments are kept per issue, oldest first, and listed,
//! created and edited (only the author's); repository dispatches are
//! answered `204`. Errors are `{"message":…}`, as GitHub's. When it
//! rate-limits, it answers GitHub's secondary rate limit: `429` with
//! `Retry-After` and `x-ratelimit-remaining: 0`.
//!
//! It is also GitHub App [`APP_ID`], installed as [`INSTALLATION_ID`] on
//! organization [`APP_ORG`] and user [`APP_USER`]: its endpoints (`GET
//! /app`, `GET /orgs|users/{owner}/installation`, `POST
//! /app/installations/{id}/access_tokens`) take only the App's RS256 JWT,
//! checked with the public key of `tests/fixtures/test-rsa-key.pem` (issuer,
//! a life of at most ten minutes, not expired), and the installation tokens
//! they grant work like [`TOKEN`], as the bot user `{APP_SLUG}[bot]`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use super::{Api, Fake, Recorded, Reply};

/// The token the fake accepts.
pub const TOKEN: &str = "ghp-test";
/// The user that token belongs to.
pub const LOGIN: &str = "flux-bot";

/// The GitHub App's id.
pub const APP_ID: &str = "424242";
/// The App's slug.
pub const APP_SLUG: &str = "herald-test";
/// The App's installation id.
pub const INSTALLATION_ID: u64 = 31_337;
/// The organization the App is installed on.
pub const APP_ORG: &str = "org";
/// The user the App is installed on.
pub const APP_USER: &str = "octo-user";
/// The App's private key (PKCS#1 PEM, as GitHub hands it out).
pub const APP_PRIVATE_KEY: &str = include_str!("../../fixtures/test-rsa-key.pem");

/// The App's public key, with which the fake checks its JWTs.
const APP_PUBLIC_KEY: &str = include_str!("../../fixtures/test-rsa-key.pub.pem");

/// The states a commit status can have.
const STATES: [&str; 4] = ["error", "failure", "pending", "success"];

/// GitHub's statuses and comments.
#[derive(Debug)]
pub struct GitHub {
    /// Statuses by `owner/repo/sha`, oldest first.
    statuses: BTreeMap<String, Vec<Value>>,
    /// Comments by `owner/repo/number`, oldest first.
    comments: BTreeMap<String, Vec<Value>>,
    next_comment: u64,
    /// Installation tokens granted and still valid.
    installation_tokens: Vec<String>,
    /// How many installation tokens were granted.
    granted: u64,
}

/// A fake GitHub.
pub type FakeGitHub = Fake<GitHub>;

fn error(status: u16, message: &str) -> Reply {
    Reply::json(status, &json!({"message": message}))
}

impl Api for GitHub {
    fn answer(&mut self, request: &Recorded, _origin: &str) -> Reply {
        if request.header("accept").as_deref() != Some("application/vnd.github.v3+json") {
            return error(415, "Unsupported Media Type");
        }
        let Some(path) = request.path.strip_prefix("/api/v3/") else {
            return error(404, "Not Found");
        };
        let parts: Vec<&str> = path.split('/').collect();
        let bearer = request
            .header("authorization")
            .and_then(|v| v.strip_prefix("Bearer ").map(str::to_owned))
            .unwrap_or_default();
        if matches!(parts.as_slice(), ["app", ..] | [_, _, "installation"]) {
            return self.app_call(request.method.as_str(), &parts, &bearer);
        }
        let login = if bearer == TOKEN {
            LOGIN.to_owned()
        } else if self.installation_tokens.contains(&bearer) {
            format!("{APP_SLUG}[bot]")
        } else {
            return error(401, "Bad credentials");
        };
        let body = request.try_json();
        let text = || {
            body.as_ref()
                .and_then(|b| b["body"].as_str())
                .map(str::to_owned)
        };
        match (request.method.as_str(), parts.as_slice()) {
            ("GET", ["user"]) if login == LOGIN => {
                Reply::json(200, &json!({"login": LOGIN, "id": 1}))
            }
            // An installation token has no user.
            ("GET", ["user"]) => error(403, "Resource not accessible by integration"),
            ("GET", ["repos", owner, repo, "commits", sha, "statuses"]) => {
                let list = self.statuses(&format!("{owner}/{repo}"), sha);
                Reply::json(200, &Value::Array(list))
            }
            ("POST", ["repos", owner, repo, "statuses", sha]) => {
                let Some(body) = body else {
                    return error(400, "Problems parsing JSON");
                };
                let state = body["state"].as_str().unwrap_or_default();
                if !STATES.contains(&state) {
                    return error(422, "Validation Failed");
                }
                let list = self
                    .statuses
                    .entry(format!("{owner}/{repo}/{sha}"))
                    .or_default();
                let created = json!({
                    "id": list.len() + 1,
                    "state": state,
                    "description": body["description"],
                    "context": body["context"],
                    "target_url": null,
                });
                list.push(created.clone());
                Reply::json(201, &created)
            }
            ("GET", ["repos", owner, repo, "issues", number, "comments"]) => {
                let list = self.comments(&format!("{owner}/{repo}"), number.parse().unwrap_or(0));
                Reply::json(200, &Value::Array(list.into_iter().take(100).collect()))
            }
            ("POST", ["repos", owner, repo, "issues", number, "comments"]) => {
                let Some(text) = text() else {
                    return error(422, "Validation Failed");
                };
                let comment = self.add_comment(&format!("{owner}/{repo}/{number}"), &login, &text);
                Reply::json(201, &comment)
            }
            ("PATCH", ["repos", owner, repo, "issues", "comments", id]) => {
                let Some(text) = text() else {
                    return error(422, "Validation Failed");
                };
                let prefix = format!("{owner}/{repo}/");
                let found = self
                    .comments
                    .iter_mut()
                    .filter(|(key, _)| key.starts_with(&prefix))
                    .flat_map(|(_, list)| list.iter_mut())
                    .find(|c| c["id"].as_u64() == id.parse().ok());
                match found {
                    Some(comment) if comment["user"]["login"] == login.as_str() => {
                        comment["body"] = Value::String(text);
                        Reply::json(200, comment)
                    }
                    Some(_) => error(403, "Must have admin rights to Repository."),
                    None => error(404, "Not Found"),
                }
            }
            ("POST", ["repos", _, _, "dispatches"]) => {
                match body.as_ref().and_then(|b| b["event_type"].as_str()) {
                    Some(event_type) if !event_type.is_empty() => Reply::empty(204),
                    _ => error(422, "Invalid request."),
                }
            }
            _ => error(404, "Not Found"),
        }
    }

    fn rate_limited(&mut self, _request: &Recorded, retry_after: Duration) -> Reply {
        error(
            429,
            "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
        )
        .header("retry-after", &retry_after.as_secs().to_string())
        .header("x-ratelimit-remaining", "0")
    }
}

// === impl GitHub ===

impl GitHub {
    /// A GitHub App endpoint, which takes only the App's JWT.
    fn app_call(&mut self, method: &str, parts: &[&str], jwt: &str) -> Reply {
        if let Err(message) = check_app_jwt(jwt) {
            return error(401, &message);
        }
        let installation =
            json!({"id": INSTALLATION_ID, "app_id": APP_ID.parse::<u64>().unwrap_or(0)});
        match (method, parts) {
            ("GET", ["app"]) => Reply::json(
                200,
                &json!({"id": APP_ID.parse::<u64>().unwrap_or(0), "slug": APP_SLUG, "name": "Herald test"}),
            ),
            ("GET", ["orgs", owner, "installation"]) if *owner == APP_ORG => {
                Reply::json(200, &installation)
            }
            ("GET", ["users", owner, "installation"]) if *owner == APP_USER => {
                Reply::json(200, &installation)
            }
            ("POST", ["app", "installations", id, "access_tokens"])
                if *id == INSTALLATION_ID.to_string() =>
            {
                self.granted += 1;
                let token = format!("ghs_fake{:04}", self.granted);
                self.installation_tokens.push(token.clone());
                let expires_at = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1);
                Reply::json(
                    201,
                    &json!({
                        "token": token,
                        "expires_at": expires_at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
                        "permissions": {"statuses": "write", "contents": "write", "pull_requests": "write"},
                        "repository_selection": "all",
                    }),
                )
            }
            _ => error(404, "Not Found"),
        }
    }

    fn statuses(&self, owner_repo: &str, sha: &str) -> Vec<Value> {
        let mut list = self
            .statuses
            .get(&format!("{owner_repo}/{sha}"))
            .cloned()
            .unwrap_or_default();
        list.reverse();
        list
    }

    fn comments(&self, owner_repo: &str, number: u64) -> Vec<Value> {
        self.comments
            .get(&format!("{owner_repo}/{number}"))
            .cloned()
            .unwrap_or_default()
    }

    fn add_comment(&mut self, issue: &str, login: &str, body: &str) -> Value {
        self.next_comment += 1;
        let comment = json!({"id": self.next_comment, "body": body, "user": {"login": login}});
        self.comments
            .entry(issue.to_owned())
            .or_default()
            .push(comment.clone());
        comment
    }
}

/// Checks a GitHub App JWT as GitHub does: RS256 signed by the App's key,
/// issued by the App, expiring at most ten minutes after it was issued, and
/// not yet expired.
fn check_app_jwt(jwt: &str) -> Result<(), String> {
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(APP_PUBLIC_KEY.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_required_spec_claims(&["exp", "iat", "iss"]);
    validation.set_issuer(&[APP_ID]);
    validation.leeway = 0;
    let claims = jsonwebtoken::decode::<Value>(jwt, &key, &validation)
        .map_err(|e| format!("A JSON web token could not be decoded: {e}"))?
        .claims;
    let (iat, exp) = (claims["iat"].as_i64(), claims["exp"].as_i64());
    match (iat, exp) {
        (Some(iat), Some(exp)) if exp - iat <= 600 => Ok(()),
        _ => Err("'Expiration time' claim ('exp') is too far in the future".to_owned()),
    }
}

impl FakeGitHub {
    /// Starts the fake on a free loopback port.
    pub async fn start() -> Self {
        Self::start_api(GitHub {
            statuses: BTreeMap::new(),
            comments: BTreeMap::new(),
            next_comment: 1000,
            installation_tokens: Vec::new(),
            granted: 0,
        })
        .await
    }

    /// How many installation tokens the App was granted.
    #[must_use]
    pub fn installation_tokens_granted(&self) -> u64 {
        self.api(|github| github.granted)
    }

    /// Revokes every installation token granted so far (the next call with
    /// one is answered 401).
    pub fn revoke_installation_tokens(&self) {
        self.api(|github| github.installation_tokens.clear());
    }

    /// The statuses of a commit, newest first, as GitHub lists them.
    #[must_use]
    pub fn statuses(&self, owner_repo: &str, sha: &str) -> Vec<Value> {
        self.api(|github| github.statuses(owner_repo, sha))
    }

    /// The comments of `owner/repo` issue `number`, oldest first.
    #[must_use]
    pub fn comments(&self, owner_repo: &str, number: u64) -> Vec<Value> {
        self.api(|github| github.comments(owner_repo, number))
    }

    /// Adds a comment by `login`, as if written by someone else.
    pub fn seed(&self, owner_repo: &str, number: u64, login: &str, body: &str) {
        self.api(|github| github.add_comment(&format!("{owner_repo}/{number}"), login, body));
    }
}
