//! A fake Azure DevOps Services for commit statuses:
//! `Authorization: Basic base64(":" + PAT)` of [`PAT`] is accepted for the
//! repositories it was started with (`{org}/{project}/{repo}`); statuses are
//! kept per repository and commit, listed newest first as
//! `{"count":n,"value":[…]}` and created (201 with the status) under
//! `/{org}/{project}/_apis/git/repositories/{repo}/commits/{sha}/statuses`,
//! which needs `api-version`. Errors carry Azure DevOps' `message`,
//! `typeName` and `typeKey`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::{Api, Fake, Recorded, Reply};

/// The personal access token the fake accepts.
pub const PAT: &str = "azdo-pat";
/// `Basic base64(":azdo-pat")`.
pub const BASIC: &str = "Basic OmF6ZG8tcGF0";

/// The states Azure DevOps accepts.
const STATES: [&str; 6] = [
    "notSet",
    "pending",
    "succeeded",
    "failed",
    "error",
    "notApplicable",
];

/// Azure DevOps' repositories and their commit statuses.
#[derive(Debug)]
pub struct AzureDevOps {
    /// `{org}/{project}/{repo}`.
    repositories: BTreeSet<String>,
    /// Statuses by `{org}/{project}/{repo}/{sha}`, oldest first.
    statuses: BTreeMap<String, Vec<Value>>,
    next_id: u64,
}

/// A fake Azure DevOps.
pub type FakeAzureDevOps = Fake<AzureDevOps>;

/// Azure DevOps' error shape.
fn error(status: u16, message: &str, type_key: &str) -> Reply {
    Reply::json(
        status,
        &json!({
            "$id": "1",
            "innerException": null,
            "message": message,
            "typeName": format!("Microsoft.TeamFoundation.Framework.Server.{type_key}, Microsoft.TeamFoundation.Framework.Server"),
            "typeKey": type_key,
            "errorCode": 0,
            "eventId": 3000,
        }),
    )
}

impl Api for AzureDevOps {
    fn answer(&mut self, request: &Recorded, origin: &str) -> Reply {
        if request.header("authorization").as_deref() != Some(BASIC) {
            return error(
                401,
                "TF400813: The user '' is not authorized to access this resource.",
                "UnauthorizedRequestException",
            );
        }
        let not_found = || {
            error(
                404,
                "TF401019: The Git repository with name or identifier does not exist or you do not have permissions for the operation you are attempting.",
                "GitRepositoryNotFoundException",
            )
        };
        let segments = request.segments();
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        let [
            org,
            project,
            "_apis",
            "git",
            "repositories",
            repo,
            "commits",
            sha,
            "statuses",
        ] = segments.as_slice()
        else {
            return not_found();
        };
        if request.query_value("api-version").is_none() {
            return error(
                400,
                "No api-version was supplied for the \"GET\" request. The version must be supplied either as part of the Accept header (e.g. \"application/json; api-version=1.0\") or as a query parameter (e.g. \"?api-version=1.0\").",
                "VssVersionNotSpecifiedException",
            );
        }
        let repository = format!("{org}/{project}/{repo}");
        if !self.repositories.contains(&repository) {
            return not_found();
        }
        match request.method.as_str() {
            "GET" => {
                let list = self.statuses(&repository, sha);
                Reply::json(200, &json!({"count": list.len(), "value": list}))
            }
            "POST" => {
                let Some(parsed) = request.try_json() else {
                    return error(
                        400,
                        "Value cannot be null.\r\nParameter name: gitCommitStatusToCreate",
                        "ArgumentNullException",
                    );
                };
                let state = parsed["state"].as_str().unwrap_or("");
                if !STATES.contains(&state) || parsed["context"]["name"].as_str().is_none() {
                    return error(
                        400,
                        "The status must have a context name and a valid state.",
                        "InvalidArgumentValueException",
                    );
                }
                self.next_id += 1;
                let created = json!({
                    "id": self.next_id,
                    "state": state,
                    "description": parsed["description"],
                    "context": {
                        "name": parsed["context"]["name"],
                        "genre": parsed["context"]["genre"],
                    },
                    "creationDate": "2024-01-01T10:00:00Z",
                    "updatedDate": "2024-01-01T10:00:00Z",
                    "createdBy": {"displayName": "Flux", "uniqueName": "flux@example.com"},
                    "url": format!("{origin}/{org}/{project}/_apis/git/repositories/{repo}/commits/{sha}/statuses/{}", self.next_id),
                });
                self.statuses
                    .entry(format!("{repository}/{sha}"))
                    .or_default()
                    .push(created.clone());
                Reply::json(201, &created)
            }
            _ => error(405, "Method not allowed", "HttpMethodNotAllowed"),
        }
    }
}

// === impl AzureDevOps ===

impl AzureDevOps {
    fn statuses(&self, repository: &str, sha: &str) -> Vec<Value> {
        let mut list = self
            .statuses
            .get(&format!("{repository}/{sha}"))
            .cloned()
            .unwrap_or_default();
        list.reverse();
        list
    }
}

impl FakeAzureDevOps {
    /// Starts the fake on a free loopback port with `repositories`
    /// (`{org}/{project}/{repo}`).
    pub async fn start(repositories: &[&str]) -> Self {
        Self::start_api(AzureDevOps {
            repositories: repositories.iter().map(|r| (*r).to_owned()).collect(),
            statuses: BTreeMap::new(),
            next_id: 0,
        })
        .await
    }

    /// The statuses of `{org}/{project}/{repo}` at `sha`, newest first.
    #[must_use]
    pub fn statuses(&self, repository: &str, sha: &str) -> Vec<Value> {
        self.api(|azure| azure.statuses(repository, sha))
    }
}
