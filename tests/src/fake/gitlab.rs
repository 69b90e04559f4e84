//! A fake GitLab (`/api/v4/`) for commit statuses: token [`TOKEN`] in
//! `PRIVATE-TOKEN` is accepted for the projects it was started with;
//! statuses are kept per project and commit, listed newest first (the
//! latest per name, filtered by `?name=`) and created as GitLab does,
//! including its refusal to move a status to the state it already has.
//! Errors are `{"message":…}` or `{"error":…}`, as GitLab's.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::{Api, Fake, Recorded, Reply};

/// The token the fake accepts.
pub const TOKEN: &str = "glpat-test";

/// The states GitLab accepts.
const STATES: [&str; 6] = [
    "pending", "running", "success", "failed", "canceled", "skipped",
];

/// GitLab's projects and their commit statuses.
#[derive(Debug)]
pub struct GitLab {
    projects: BTreeSet<String>,
    /// Statuses by `{project path}/{sha}`, oldest first.
    statuses: BTreeMap<String, Vec<Value>>,
    next_id: u64,
}

/// A fake GitLab.
pub type FakeGitLab = Fake<GitLab>;

impl Api for GitLab {
    fn answer(&mut self, request: &Recorded, _origin: &str) -> Reply {
        if request.header("private-token").as_deref() != Some(TOKEN) {
            return Reply::json(401, &json!({"message": "401 Unauthorized"}));
        }
        let not_found = || Reply::json(404, &json!({"message": "404 Not Found"}));
        let segments = request.segments();
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        let ["api", "v4", "projects", project, rest @ ..] = segments.as_slice() else {
            return not_found();
        };
        if !self.projects.contains(*project) {
            return Reply::json(404, &json!({"message": "404 Project Not Found"}));
        }
        match (request.method.as_str(), rest) {
            ("GET", ["repository", "commits", sha, "statuses"]) => {
                let name = request.query_value("name");
                let mut seen = BTreeSet::new();
                // The latest status per name, newest first.
                let list: Vec<Value> = self
                    .statuses(project, sha)
                    .into_iter()
                    .filter(|s| name.as_deref().is_none_or(|n| s["name"] == n))
                    .filter(|s| seen.insert(s["name"].as_str().unwrap_or("").to_owned()))
                    .collect();
                Reply::json(200, &Value::Array(list))
            }
            ("POST", ["statuses", sha]) => self.create(project, sha, request),
            _ => not_found(),
        }
    }
}

// === impl GitLab ===

impl GitLab {
    fn statuses(&self, project: &str, sha: &str) -> Vec<Value> {
        let mut list = self
            .statuses
            .get(&format!("{project}/{sha}"))
            .cloned()
            .unwrap_or_default();
        list.reverse();
        list
    }

    fn create(&mut self, project: &str, sha: &str, request: &Recorded) -> Reply {
        let Some(parsed) = request.try_json() else {
            return Reply::json(400, &json!({"error": "state is missing"}));
        };
        let state = parsed["state"].as_str().unwrap_or("");
        if !STATES.contains(&state) {
            return Reply::json(400, &json!({"error": "state does not have a valid value"}));
        }
        let name = parsed["name"].as_str().unwrap_or("default").to_owned();
        let current = self
            .statuses(project, sha)
            .into_iter()
            .find(|s| s["name"] == name.as_str());
        if current.is_some_and(|current| current["status"] == state) {
            return Reply::json(
                400,
                &json!({"message": format!("Cannot transition status via :{state} from :{state} (Reason(s): Status cannot transition via \"{state}\")")}),
            );
        }
        self.next_id += 1;
        let created = json!({
            "id": self.next_id,
            "sha": sha,
            "ref": "main",
            "status": state,
            "name": name,
            "target_url": parsed.get("target_url").cloned().unwrap_or(Value::Null),
            "description": parsed.get("description").cloned().unwrap_or(Value::Null),
            "created_at": "2024-01-01T10:00:00.000Z",
            "started_at": null,
            "finished_at": "2024-01-01T10:00:00.000Z",
            "allow_failure": false,
            "coverage": null,
            "pipeline_id": 1,
            "author": {"id": 1, "username": "flux-bot", "name": "Flux"},
        });
        self.statuses
            .entry(format!("{project}/{sha}"))
            .or_default()
            .push(created.clone());
        Reply::json(201, &created)
    }
}

impl FakeGitLab {
    /// Starts the fake on a free loopback port with `projects`
    /// (`group/project` or `group/sub/project`).
    pub async fn start(projects: &[&str]) -> Self {
        Self::start_api(GitLab {
            projects: projects.iter().map(|p| (*p).to_owned()).collect(),
            statuses: BTreeMap::new(),
            next_id: 100,
        })
        .await
    }

    /// The statuses of `project` at `sha`, newest first.
    #[must_use]
    pub fn statuses(&self, project: &str, sha: &str) -> Vec<Value> {
        self.api(|gitlab| gitlab.statuses(project, sha))
    }
}
