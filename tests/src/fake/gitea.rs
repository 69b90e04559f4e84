//! A fake Gitea (`/api/v1/`) for commit statuses: `Authorization: token`
//! [`TOKEN`] is accepted for the repositories it was started with;
//! statuses are kept per repository and commit, listed newest first a page
//! at a time (`?limit=&page=`, the state under `status`) and created as
//! Gitea does. Errors are `{"message":…,"url":…}`, as Gitea's.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::{Api, Fake, Recorded, Reply};

/// The token the fake accepts.
pub const TOKEN: &str = "gitea-test";

/// The states Gitea accepts.
const STATES: [&str; 5] = ["pending", "success", "error", "failure", "warning"];

/// Gitea's repositories and their commit statuses.
#[derive(Debug)]
pub struct Gitea {
    repositories: BTreeSet<String>,
    /// Statuses by `{owner}/{repo}/{sha}`, oldest first.
    statuses: BTreeMap<String, Vec<Value>>,
    next_id: u64,
}

/// A fake Gitea.
pub type FakeGitea = Fake<Gitea>;

impl Api for Gitea {
    fn answer(&mut self, request: &Recorded, origin: &str) -> Reply {
        let error = |status: u16, message: &str| {
            Reply::json(
                status,
                &json!({"message": message, "url": format!("{origin}/api/swagger")}),
            )
        };
        if request.header("authorization") != Some(format!("token {TOKEN}")) {
            return error(401, "token is required");
        }
        let not_found = || error(404, "The target couldn't be found.");
        let segments = request.segments();
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        let method = request.method.as_str();
        let ["api", "v1", rest @ ..] = segments.as_slice() else {
            return not_found();
        };
        if let ("GET", ["version"]) = (method, rest) {
            return Reply::json(200, &json!({"version": "1.22.0"}));
        }
        let ["repos", owner, repo, rest @ ..] = rest else {
            return not_found();
        };
        let owner_repo = format!("{owner}/{repo}");
        if !self.repositories.contains(&owner_repo) {
            return not_found();
        }
        match (method, rest) {
            ("GET", ["commits", sha, "statuses"]) => {
                let number = |key: &str, default: usize| {
                    request
                        .query_value(key)
                        .and_then(|v| v.parse::<usize>().ok())
                        .map_or(default, |n| n.max(1))
                };
                let (limit, page) = (number("limit", 30).min(50), number("page", 1));
                let list: Vec<Value> = self
                    .statuses(&owner_repo, sha)
                    .into_iter()
                    .skip((page - 1) * limit)
                    .take(limit)
                    .collect();
                Reply::json(200, &Value::Array(list))
            }
            ("POST", ["statuses", sha]) => {
                let Some(parsed) = request.try_json() else {
                    return error(422, "invalid JSON body");
                };
                let state = parsed["state"].as_str().unwrap_or("");
                if !STATES.contains(&state) {
                    return error(422, &format!("invalid commit status state {state:?}"));
                }
                self.next_id += 1;
                let created = json!({
                    "id": self.next_id,
                    "status": state,
                    "target_url": parsed["target_url"].as_str().unwrap_or(""),
                    "description": parsed["description"].as_str().unwrap_or(""),
                    "url": format!("{origin}/api/v1/repos/{owner_repo}/statuses/{sha}"),
                    "context": parsed["context"].as_str().unwrap_or(""),
                    "creator": {"id": 1, "login": "flux-bot"},
                    "created_at": "2024-01-01T10:00:00Z",
                    "updated_at": "2024-01-01T10:00:00Z",
                });
                self.statuses
                    .entry(format!("{owner_repo}/{sha}"))
                    .or_default()
                    .push(created.clone());
                Reply::json(201, &created)
            }
            _ => not_found(),
        }
    }
}

// === impl Gitea ===

impl Gitea {
    fn statuses(&self, owner_repo: &str, sha: &str) -> Vec<Value> {
        let mut list = self
            .statuses
            .get(&format!("{owner_repo}/{sha}"))
            .cloned()
            .unwrap_or_default();
        list.reverse();
        list
    }
}

impl FakeGitea {
    /// Starts the fake on a free loopback port with `repositories`
    /// (`owner/repo`).
    pub async fn start(repositories: &[&str]) -> Self {
        Self::start_api(Gitea {
            repositories: repositories.iter().map(|r| (*r).to_owned()).collect(),
            statuses: BTreeMap::new(),
            next_id: 0,
        })
        .await
    }

    /// The statuses of `owner/repo` at `sha`, newest first.
    #[must_use]
    pub fn statuses(&self, owner_repo: &str, sha: &str) -> Vec<Value> {
        self.api(|gitea| gitea.statuses(owner_repo, sha))
    }
}
