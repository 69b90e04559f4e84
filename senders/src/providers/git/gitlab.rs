//! `gitlab`: a commit status on the commit Flux reconciled
//! (flux-providers §7.1, §7.7): list the commit's statuses of our name, skip
//! an equal one, create it otherwise. The project is the whole repository
//! path (sub-groups included) or a numeric id, escaped into one path segment
//! of `{host}/api/v4/`.

use herald_flux::FluxEvent;
use herald_flux::git::{self, GitHost};
use serde::{Deserialize, Serialize};

use super::StatusCalls;
use crate::config::Resolved;
use crate::http::HttpSender;
use crate::outcome::Outcome;
use crate::providers::shared::query_escape;
use crate::providers::{Clients, CommitStatusPlan, StatusWrite, Writing};

/// Plans the status of `event`, or `None` when GitLab gets none (a
/// `Progressing` event).
///
/// # Errors
///
/// Why this Provider and event cannot give a status (dead letter).
pub(in crate::providers) fn plan(
    resolved: &Resolved,
    event: &FluxEvent,
    identifier: String,
) -> Result<Option<CommitStatusPlan>, String> {
    Ok(
        status(resolved, event, &identifier)?.map(|(repository, status)| CommitStatusPlan {
            repository,
            sha: status.sha.clone(),
            identifier,
            write: Box::new(status),
        }),
    )
}

/// The repository (`{host}/{project path}`) and the status to write.
fn status(
    resolved: &Resolved,
    event: &FluxEvent,
    identifier: &str,
) -> Result<Option<(String, GitLabStatus)>, String> {
    // The notifier's constructor checks come first, as in Flux.
    let token = super::token(resolved, "gitlab token cannot be empty")?;
    let address = git::parse_git_address(&resolved.address).map_err(|e| e.to_string())?;
    let Some(state) = git::commit_state(GitHost::GitLab, &event.severity, &event.reason)
        .map_err(|e| e.to_string())?
    else {
        return Ok(None);
    };
    let revision = git::revision_of(&event.metadata).ok_or("missing revision metadata")?;
    let sha = git::commit_sha(revision).map_err(|e| e.to_string())?;
    let (_, description) = git::name_and_description(event);
    Ok(Some((
        format!("{}/{}", address.scheme_host, address.id),
        GitLabStatus {
            api: address.gitlab_api_base(),
            project: address.gitlab_project(),
            sha,
            token,
            state: state.as_str(GitHost::GitLab),
            description,
            name: git::status_key(GitHost::GitLab, identifier),
        },
    )))
}

/// A GitLab commit status to write.
struct GitLabStatus {
    /// `{host}/api/v4/`.
    api: String,
    /// The project path, escaped (`group%2Fsub%2Fproject`).
    project: String,
    sha: String,
    token: String,
    state: &'static str,
    description: String,
    name: String,
}

impl StatusWrite for GitLabStatus {
    fn apply<'a>(&'a self, clients: &'a Clients, resolved: &'a Resolved) -> Writing<'a> {
        Box::pin(apply(&clients.http, resolved, self))
    }
}

/// A listed status; GitLab's client reads a missing or null field as "".
#[derive(Deserialize)]
struct Listed {
    #[serde(default)]
    sha: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

/// The status to create, keys in the client's order.
#[derive(Serialize)]
struct Create<'a> {
    state: &'a str,
    name: &'a str,
    description: &'a str,
}

fn headers(token: &str, with_body: bool) -> Vec<(String, String)> {
    let mut headers = vec![
        ("PRIVATE-TOKEN".to_owned(), token.to_owned()),
        ("Accept".to_owned(), "application/json".to_owned()),
    ];
    if with_body {
        headers.push(("Content-Type".to_owned(), "application/json".to_owned()));
    }
    headers
}

impl GitLabStatus {
    /// Whether the listed body already holds this status: ANY entry with our
    /// sha, state, description and name (GitLab lists the latest per name).
    fn written(&self, listed: &[u8]) -> bool {
        let listed: Vec<Listed> = serde_json::from_slice(listed).unwrap_or_default();
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        listed.iter().any(|s| {
            text(&s.sha) == self.sha
                && text(&s.status) == self.state
                && text(&s.description) == self.description
                && text(&s.name) == self.name
        })
    }

    fn calls<'h>(
        &self,
        list_headers: &'h [(String, String)],
        create_headers: &'h [(String, String)],
    ) -> StatusCalls<'h> {
        let Self {
            api, project, sha, ..
        } = self;
        StatusCalls {
            list: format!(
                "{api}projects/{project}/repository/commits/{sha}/statuses?name={}",
                query_escape(&self.name)
            ),
            list_headers,
            list_failed: "unable to list commit status",
            create: format!("{api}projects/{project}/statuses/{sha}"),
            create_headers,
            create_body: herald_flux::gojson::to_vec(&Create {
                state: self.state,
                name: &self.name,
                description: &self.description,
            }),
            create_failed: "unable to create commit status",
        }
    }
}

/// Lists, compares, and creates the status.
async fn apply(http: &HttpSender, resolved: &Resolved, status: &GitLabStatus) -> Outcome {
    let (list_headers, create_headers) =
        (headers(&status.token, false), headers(&status.token, true));
    let calls = status.calls(&list_headers, &create_headers);
    super::list_then_create(http, resolved, calls, |listed| status.written(listed)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "a1afe267b54f38b46b487f6e938a6fd508278c07";

    fn event(severity: &str, reason: &str) -> FluxEvent {
        FluxEvent::from_json(
            format!(
                r#"{{"involvedObject":{{"kind":"Kustomization","namespace":"flux-system","name":"apps"}},
                    "severity":"{severity}","reason":"{reason}","message":"done",
                    "metadata":{{"revision":"main@sha1:{SHA}"}},
                    "reportingController":"kustomize-controller"}}"#
            )
            .as_bytes(),
        )
        .unwrap()
    }

    fn resolved(address: &str) -> Resolved {
        Resolved {
            provider_type: "gitlab".into(),
            address: address.into(),
            password: "glpat-pw".into(),
            ..Resolved::default()
        }
    }

    fn planned(address: &str, severity: &str) -> (String, GitLabStatus) {
        status(
            &resolved(address),
            &event(severity, "ReconciliationSucceeded"),
            "kustomization/apps/0c9c2e41",
        )
        .unwrap()
        .unwrap()
    }

    #[test]
    fn requests_are_gitlab_s() {
        let (repository, status) = planned(
            "https://gitlab.example.com/group/sub/my.project.git",
            "error",
        );
        assert_eq!(
            repository,
            "https://gitlab.example.com/group/sub/my.project"
        );
        assert_eq!(status.sha, SHA);
        assert_eq!(status.token, "glpat-pw");
        let (list_headers, create_headers) = (headers("t", false), headers("t", true));
        let calls = status.calls(&list_headers, &create_headers);
        assert_eq!(
            calls.list,
            format!(
                "https://gitlab.example.com/api/v4/projects/group%2Fsub%2Fmy%2Eproject/repository/commits/{SHA}/statuses?name=kustomization%2Fapps%2F0c9c2e41"
            )
        );
        assert_eq!(
            calls.create,
            format!(
                "https://gitlab.example.com/api/v4/projects/group%2Fsub%2Fmy%2Eproject/statuses/{SHA}"
            )
        );
        assert_eq!(
            String::from_utf8(calls.create_body).unwrap(),
            r#"{"state":"failed","name":"kustomization/apps/0c9c2e41","description":"reconciliation succeeded"}"#
        );
        assert_eq!(
            create_headers,
            [
                ("PRIVATE-TOKEN".to_owned(), "t".to_owned()),
                ("Accept".to_owned(), "application/json".to_owned()),
                ("Content-Type".to_owned(), "application/json".to_owned()),
            ]
        );
        assert_eq!(list_headers.len(), 2);
    }

    #[test]
    fn an_equal_status_is_found_by_sha_state_description_and_name() {
        let (_, status) = planned("https://gitlab.com/foo/bar", "info");
        let entry = |sha: &str, state: &str, description: &str, name: &str| serde_json::json!({"id": 1, "sha": sha, "status": state, "description": description, "name": name, "ref": "main"});
        let name = "kustomization/apps/0c9c2e41";
        let equal = entry(SHA, "success", "reconciliation succeeded", name);
        let list = |entries: Vec<serde_json::Value>| serde_json::to_vec(&entries).unwrap();
        assert!(status.written(&list(vec![
            entry(SHA, "failed", "build failed", name),
            equal.clone()
        ])));
        assert!(!status.written(&list(vec![entry(
            SHA,
            "failed",
            "reconciliation succeeded",
            name
        )])));
        assert!(!status.written(&list(vec![entry(SHA, "success", "other", name)])));
        assert!(!status.written(&list(vec![entry(
            SHA,
            "success",
            "reconciliation succeeded",
            "other"
        )])));
        assert!(!status.written(&list(vec![entry(
            "0000000000000000000000000000000000000000",
            "success",
            "reconciliation succeeded",
            name
        )])));
        assert!(!status.written(b"[]"));
        assert!(!status.written(b"not json"));
    }

    #[test]
    fn unusable_providers_and_events_say_why() {
        let mut none = resolved("https://gitlab.com/foo/bar");
        none.password.clear();
        let success = event("info", "ReconciliationSucceeded");
        assert_eq!(
            plan(&none, &success, "x".into()).err().as_deref(),
            Some("gitlab token cannot be empty")
        );
        let ok = resolved("https://gitlab.com/foo/bar");
        assert!(
            plan(&ok, &event("info", "Progressing"), "x".into())
                .unwrap()
                .is_none()
        );
        assert_eq!(
            plan(&ok, &event("trace", "Other"), "x".into())
                .err()
                .as_deref(),
            Some("can't convert to gitlab state")
        );
        let mut bare = success.clone();
        bare.metadata.clear();
        assert_eq!(
            plan(&ok, &bare, "x".into()).err().as_deref(),
            Some("missing revision metadata")
        );
    }
}
