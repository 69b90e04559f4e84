//! A fake Bitbucket Cloud API (`/2.0/`) for build statuses:
//! `Authorization: Basic` of [`USERNAME`]:[`APP_PASSWORD`] is accepted for
//! the repositories it was started with; a build status is kept per
//! repository, commit and key (a post with a known key updates it), read
//! with `GET …/statuses/build/{key}` and posted with `POST …/statuses/build`
//! (201 with the status), as Bitbucket Cloud does. Errors are
//! `{"type":"error","error":{"message":…}}`, as Bitbucket Cloud's.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::{Api, Fake, Recorded, Reply};

/// The Bitbucket user of the app password.
pub const USERNAME: &str = "flux-bot";
/// The app password the fake accepts.
pub const APP_PASSWORD: &str = "app-password";
/// `Basic base64("flux-bot:app-password")`.
pub const BASIC: &str = "Basic Zmx1eC1ib3Q6YXBwLXBhc3N3b3Jk";

/// The states Bitbucket Cloud accepts.
const STATES: [&str; 4] = ["SUCCESSFUL", "FAILED", "INPROGRESS", "STOPPED"];

/// Bitbucket Cloud's repositories and their build statuses.
#[derive(Debug)]
pub struct Bitbucket {
    /// `workspace/repo`.
    repositories: BTreeSet<String>,
    /// Build statuses by `{workspace}/{repo}/{sha}` then key.
    statuses: BTreeMap<String, BTreeMap<String, Value>>,
    clock: u64,
}

/// A fake Bitbucket Cloud.
pub type FakeBitbucket = Fake<Bitbucket>;

/// Bitbucket Cloud's error shape.
fn error(status: u16, message: &str) -> Reply {
    Reply::json(
        status,
        &json!({"type": "error", "error": {"message": message}}),
    )
}

impl Api for Bitbucket {
    fn answer(&mut self, request: &Recorded, origin: &str) -> Reply {
        if request.header("authorization").as_deref() != Some(BASIC) {
            return error(401, "Invalid credentials");
        }
        let not_found = || error(404, "Resource not found");
        let segments = request.segments();
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        let [
            "2.0",
            "repositories",
            workspace,
            repo,
            "commit",
            sha,
            "statuses",
            "build",
            key @ ..,
        ] = segments.as_slice()
        else {
            return not_found();
        };
        let repository = format!("{workspace}/{repo}");
        if !self.repositories.contains(&repository) {
            return not_found();
        }
        match (request.method.as_str(), key) {
            ("GET", [key]) => self
                .status(&repository, sha, key)
                .map_or_else(not_found, |status| Reply::json(200, &status)),
            ("POST", []) => {
                let Some(parsed) = request.try_json() else {
                    return error(400, "Bad request");
                };
                let field = |name: &str| parsed[name].as_str().unwrap_or("").to_owned();
                let (key, state, url) = (field("key"), field("state"), field("url"));
                if key.is_empty() || url.is_empty() || !STATES.contains(&state.as_str()) {
                    return error(400, "key, url and a valid state are required");
                }
                self.clock += 1;
                let time = format!("2024-01-01T10:00:{:02}.000000+00:00", self.clock % 60);
                let commit = format!("{origin}/2.0/repositories/{repository}/commit/{sha}");
                let stored = json!({
                    "type": "build",
                    "key": key,
                    "state": state,
                    "name": field("name"),
                    "description": field("description"),
                    "url": url,
                    "refname": null,
                    "created_on": time,
                    "updated_on": time,
                    "links": {
                        "self": {"href": format!("{commit}/statuses/build/{key}")},
                        "commit": {"href": commit},
                    },
                });
                self.statuses
                    .entry(format!("{repository}/{sha}"))
                    .or_default()
                    .insert(key, stored.clone());
                Reply::json(201, &stored)
            }
            _ => not_found(),
        }
    }
}

// === impl Bitbucket ===

impl Bitbucket {
    fn status(&self, repository: &str, sha: &str, key: &str) -> Option<Value> {
        self.statuses
            .get(&format!("{repository}/{sha}"))
            .and_then(|by_key| by_key.get(key))
            .cloned()
    }
}

impl FakeBitbucket {
    /// Starts the fake on a free loopback port with `repositories`
    /// (`workspace/repo`).
    pub async fn start(repositories: &[&str]) -> Self {
        Self::start_api(Bitbucket {
            repositories: repositories.iter().map(|r| (*r).to_owned()).collect(),
            statuses: BTreeMap::new(),
            clock: 0,
        })
        .await
    }

    /// The build status of `workspace/repo` at `sha` under `key`.
    #[must_use]
    pub fn status(&self, repository: &str, sha: &str, key: &str) -> Option<Value> {
        self.api(|bitbucket| bitbucket.status(repository, sha, key))
    }
}
