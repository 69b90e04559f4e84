//! A fake Bitbucket Server / Data Center for build statuses, served under a
//! context path: `Authorization: Bearer` [`TOKEN`] or `Basic` of
//! [`USERNAME`]:[`PASSWORD`] is accepted for the repositories it was started
//! with; a build status is kept per repository, commit and key (a post with
//! a known key replaces it), read back with `GET …/builds?key=` and posted
//! with `POST …/builds` (204), as Bitbucket Server does. Posts need
//! `x-atlassian-token: no-check`. Errors are
//! `{"errors":[{"context":…,"message":…,"exceptionName":…}]}`, as its own.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::{Api, Fake, Recorded, Reply, percent_decode};

/// The API token the fake accepts (as a bearer token).
pub const TOKEN: &str = "bbs-token";
/// The user whose password the fake accepts.
pub const USERNAME: &str = "admin";
/// [`USERNAME`]'s password.
pub const PASSWORD: &str = "bbs-password";
/// `Basic base64("admin:bbs-password")`.
pub const BASIC: &str = "Basic YWRtaW46YmJzLXBhc3N3b3Jk";

/// The states Bitbucket Server accepts.
const STATES: [&str; 3] = ["SUCCESSFUL", "FAILED", "INPROGRESS"];

/// Bitbucket Server's repositories and their build statuses.
#[derive(Debug)]
pub struct BitbucketServer {
    /// The context path it is served under.
    context: String,
    /// `PROJ/slug`.
    repositories: BTreeSet<String>,
    /// Build statuses by `{PROJ}/{slug}/{sha}` then key.
    statuses: BTreeMap<String, BTreeMap<String, Value>>,
    clock: u64,
}

/// A fake Bitbucket Server.
pub type FakeBitbucketServer = Fake<BitbucketServer>;

/// Bitbucket Server's error shape.
fn error(status: u16, message: &str, exception: &str) -> Reply {
    Reply::json(
        status,
        &json!({"errors": [{"context": null, "message": message, "exceptionName": exception}]}),
    )
}

fn not_found(what: &str) -> Reply {
    error(
        404,
        &format!("{what} does not exist."),
        "com.atlassian.bitbucket.NoSuchEntityException",
    )
}

impl Api for BitbucketServer {
    fn answer(&mut self, request: &Recorded, _origin: &str) -> Reply {
        let authorization = request.header("authorization").unwrap_or_default();
        if authorization != format!("Bearer {TOKEN}") && authorization != BASIC {
            return error(
                401,
                "Authentication failed. Please check your credentials and try again.",
                "com.atlassian.bitbucket.auth.IncorrectPasswordAuthenticationException",
            );
        }
        let Some(rest) = request
            .path
            .strip_prefix(self.context.as_str())
            .and_then(|rest| rest.strip_prefix("/rest/api/latest/"))
        else {
            return not_found("The resource");
        };
        let parts: Vec<String> = rest.split('/').map(percent_decode).collect();
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        let ["projects", project, "repos", slug, "commits", sha, "builds"] = parts.as_slice()
        else {
            return not_found("The resource");
        };
        let repository = format!("{project}/{slug}");
        if !self.repositories.contains(&repository) {
            return not_found(&format!("Repository {slug} of project {project}"));
        }
        match request.method.as_str() {
            "GET" => {
                let key = request.query_value("key").unwrap_or_default();
                match self.status(&repository, sha, &key) {
                    Some(status) => Reply::json(200, &status),
                    None => not_found(&format!("A build status with key {key}")),
                }
            }
            "POST" => self.post(&format!("{repository}/{sha}"), request),
            _ => error(405, "Method not allowed", ""),
        }
    }
}

// === impl BitbucketServer ===

impl BitbucketServer {
    fn status(&self, repository: &str, sha: &str, key: &str) -> Option<Value> {
        self.statuses
            .get(&format!("{repository}/{sha}"))
            .and_then(|by_key| by_key.get(key))
            .cloned()
    }

    fn post(&mut self, commit: &str, request: &Recorded) -> Reply {
        if request.header("x-atlassian-token").as_deref() != Some("no-check") {
            return error(403, "XSRF check failed", "");
        }
        let Some(parsed) = request.try_json() else {
            return error(400, "Unexpected JSON body", "");
        };
        let field = |name: &str| parsed[name].as_str().unwrap_or("").to_owned();
        let (key, state, url) = (field("key"), field("state"), field("url"));
        if key.is_empty() || url.is_empty() || !STATES.contains(&state.as_str()) {
            return error(
                400,
                "The build status must have a key, a url and a valid state.",
                "com.atlassian.bitbucket.validation.ArgumentValidationException",
            );
        }
        self.clock += 1;
        let stored = json!({
            "key": key,
            "state": state,
            "name": field("name"),
            "url": url,
            "description": field("description"),
            "dateAdded": 1_704_103_200_000_u64 + self.clock,
        });
        self.statuses
            .entry(commit.to_owned())
            .or_default()
            .insert(key, stored);
        Reply::empty(204)
    }
}

impl FakeBitbucketServer {
    /// Starts the fake on a free loopback port, serving under `context`
    /// (e.g. `/bitbucket`, or empty), with `repositories` (`PROJ/slug`).
    pub async fn start(context: &str, repositories: &[&str]) -> Self {
        Self::start_api(BitbucketServer {
            context: context.to_owned(),
            repositories: repositories.iter().map(|r| (*r).to_owned()).collect(),
            statuses: BTreeMap::new(),
            clock: 0,
        })
        .await
    }

    /// The build status of `PROJ/slug` at `sha` under `key`.
    #[must_use]
    pub fn status(&self, repository: &str, sha: &str, key: &str) -> Option<Value> {
        self.api(|bitbucket| bitbucket.status(repository, sha, key))
    }
}
