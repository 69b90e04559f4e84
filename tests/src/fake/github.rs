//! A fake GitHub Enterprise (`/api/v3/`): token [`TOKEN`] (bearer, with
//! `Accept: application/vnd.github.v3+json`) belongs to user [`LOGIN`].
//! Commit statuses are kept per commit, listed newest first and created;
//! pull request comments are kept per issue, oldest first, and listed,
//! created and edited (only the author's); repository dispatches are
//! answered `204`. Errors are `{"message":…}`, as GitHub's. When it
//! rate-limits, it answers GitHub's secondary rate limit: `429` with
//! `Retry-After` and `x-ratelimit-remaining: 0`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use super::{Api, Fake, Recorded, Reply};

/// The token the fake accepts.
pub const TOKEN: &str = "ghp-test";
/// The user that token belongs to.
pub const LOGIN: &str = "flux-bot";

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
}

/// A fake GitHub.
pub type FakeGitHub = Fake<GitHub>;

fn error(status: u16, message: &str) -> Reply {
    Reply::json(status, &json!({"message": message}))
}

impl Api for GitHub {
    fn answer(&mut self, request: &Recorded, _origin: &str) -> Reply {
        if request.header("authorization") != Some(format!("Bearer {TOKEN}")) {
            return error(401, "Bad credentials");
        }
        if request.header("accept").as_deref() != Some("application/vnd.github.v3+json") {
            return error(415, "Unsupported Media Type");
        }
        let Some(path) = request.path.strip_prefix("/api/v3/") else {
            return error(404, "Not Found");
        };
        let parts: Vec<&str> = path.split('/').collect();
        let body = request.try_json();
        let text = || {
            body.as_ref()
                .and_then(|b| b["body"].as_str())
                .map(str::to_owned)
        };
        match (request.method.as_str(), parts.as_slice()) {
            ("GET", ["user"]) => Reply::json(200, &json!({"login": LOGIN, "id": 1})),
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
                let comment = self.add_comment(&format!("{owner}/{repo}/{number}"), LOGIN, &text);
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
                    Some(comment) if comment["user"]["login"] == LOGIN => {
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

impl FakeGitHub {
    /// Starts the fake on a free loopback port.
    pub async fn start() -> Self {
        Self::start_api(GitHub {
            statuses: BTreeMap::new(),
            comments: BTreeMap::new(),
            next_comment: 1000,
        })
        .await
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
