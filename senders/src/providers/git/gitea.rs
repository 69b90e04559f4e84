//! `gitea`: a commit status on the commit Flux reconciled
//! (flux-providers §7.1, §7.8): list the commit's statuses, skip an equal
//! one, create it otherwise. Unlike the other hosts, a `Progressing` event
//! is posted, as `pending`.
//!
//! Flux's Gitea client probes `GET {host}/api/v1/version` when it is built
//! (the server must be Gitea 1.11 or newer); Herald does not make that
//! request: a host that lacks the status API fails on the list instead.

use herald_flux::FluxEvent;
use herald_flux::git::{self, GitHost};
use serde::{Deserialize, Serialize};

use super::StatusCalls;
use crate::config::Resolved;
use crate::http::HttpSender;
use crate::outcome::Outcome;
use crate::providers::shared::path_escape;
use crate::providers::{Clients, CommitStatusPlan, StatusWrite, Writing};

/// Plans the status of `event` (Gitea gets one for every event).
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

/// The repository (`{host}/{owner}/{repo}`) and the status to write.
fn status(
    resolved: &Resolved,
    event: &FluxEvent,
    identifier: &str,
) -> Result<Option<(String, GiteaStatus)>, String> {
    // The notifier's constructor checks come first, as in Flux.
    let token = super::token(resolved, "gitea token cannot be empty")?;
    let address = git::parse_git_address(&resolved.address).map_err(|e| e.to_string())?;
    let (owner, repo) = address
        .owner_repo(GitHost::Gitea)
        .map_err(|e| e.to_string())?;
    let Some(state) = git::commit_state(GitHost::Gitea, &event.severity, &event.reason)
        .map_err(|e| e.to_string())?
    else {
        return Ok(None);
    };
    let revision = git::revision_of(&event.metadata).ok_or("missing revision metadata")?;
    let sha = git::commit_sha(revision).map_err(|e| e.to_string())?;
    let (_, description) = git::name_and_description(event);
    Ok(Some((
        format!("{}/{owner}/{repo}", address.scheme_host),
        GiteaStatus {
            api: format!("{}/api/v1/", address.scheme_host),
            owner: path_escape(owner),
            repo: path_escape(repo),
            sha,
            token,
            state: state.as_str(GitHost::Gitea),
            description,
            context: git::status_key(GitHost::Gitea, identifier),
        },
    )))
}

/// A Gitea commit status to write.
struct GiteaStatus {
    /// `{host}/api/v1/`.
    api: String,
    /// Path-escaped.
    owner: String,
    /// Path-escaped.
    repo: String,
    sha: String,
    token: String,
    state: &'static str,
    description: String,
    context: String,
}

impl StatusWrite for GiteaStatus {
    fn apply<'a>(&'a self, clients: &'a Clients, resolved: &'a Resolved) -> Writing<'a> {
        Box::pin(apply(&clients.http, resolved, self))
    }
}

/// A listed status: Gitea carries its state under `status`.
#[derive(Deserialize)]
struct Listed {
    #[serde(default)]
    context: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    description: Option<String>,
}

/// The status to create, keys in the SDK's order.
#[derive(Serialize)]
struct Create<'a> {
    state: &'a str,
    target_url: &'a str,
    description: &'a str,
    context: &'a str,
}

/// The SDK's headers on every call.
fn headers(token: &str) -> Vec<(String, String)> {
    vec![
        ("Authorization".to_owned(), format!("token {token}")),
        ("Content-Type".to_owned(), "application/json".to_owned()),
    ]
}

impl GiteaStatus {
    /// Whether the listed body already holds this status: the first entry
    /// with our context (entries with an empty context, state or description
    /// are passed over) has our state and description.
    fn written(&self, listed: &[u8]) -> bool {
        let listed: Vec<Listed> = serde_json::from_slice(listed).unwrap_or_default();
        let filled = |v: &Option<String>| v.as_deref().is_some_and(|v| !v.is_empty());
        listed
            .iter()
            .find(|s| {
                s.context.as_deref() == Some(self.context.as_str())
                    && filled(&s.status)
                    && filled(&s.description)
            })
            .is_some_and(|s| {
                s.status.as_deref() == Some(self.state)
                    && s.description.as_deref() == Some(self.description.as_str())
            })
    }

    fn calls<'h>(&self, headers: &'h [(String, String)]) -> StatusCalls<'h> {
        let Self {
            api,
            owner,
            repo,
            sha,
            ..
        } = self;
        let sha = path_escape(sha);
        StatusCalls {
            list: format!("{api}repos/{owner}/{repo}/commits/{sha}/statuses?limit=50&page=1"),
            list_headers: headers,
            list_failed: "could not list commit statuses",
            create: format!("{api}repos/{owner}/{repo}/statuses/{sha}"),
            create_headers: headers,
            create_body: herald_flux::gojson::to_vec(&Create {
                state: self.state,
                target_url: "",
                description: &self.description,
                context: &self.context,
            }),
            create_failed: "could not create commit status",
        }
    }
}

/// Lists, compares, and creates the status.
async fn apply(http: &HttpSender, resolved: &Resolved, status: &GiteaStatus) -> Outcome {
    let headers = headers(&status.token);
    let calls = status.calls(&headers);
    super::list_then_create(http, resolved, calls, |listed| status.written(listed)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "a1afe267b54f38b46b487f6e938a6fd508278c07";
    const NAME: &str = "kustomization/apps/0c9c2e41";

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
            provider_type: "gitea".into(),
            address: address.into(),
            token: "gitea-token".into(),
            password: "ignored".into(),
            ..Resolved::default()
        }
    }

    fn planned(address: &str, severity: &str, reason: &str) -> (String, GiteaStatus) {
        status(&resolved(address), &event(severity, reason), NAME)
            .unwrap()
            .unwrap()
    }

    #[test]
    fn requests_are_gitea_s() {
        let (repository, status) = planned(
            "http://gitea.local:3000/my%20org/podinfo.git",
            "error",
            "BuildFailed",
        );
        assert_eq!(repository, "http://gitea.local:3000/my org/podinfo");
        assert_eq!(status.token, "gitea-token");
        let headers = headers(&status.token);
        assert_eq!(
            headers,
            [
                ("Authorization".to_owned(), "token gitea-token".to_owned()),
                ("Content-Type".to_owned(), "application/json".to_owned()),
            ]
        );
        let calls = status.calls(&headers);
        assert_eq!(
            calls.list,
            format!(
                "http://gitea.local:3000/api/v1/repos/my%20org/podinfo/commits/{SHA}/statuses?limit=50&page=1"
            )
        );
        assert_eq!(
            calls.create,
            format!("http://gitea.local:3000/api/v1/repos/my%20org/podinfo/statuses/{SHA}")
        );
        assert_eq!(
            String::from_utf8(calls.create_body).unwrap(),
            r#"{"state":"failure","target_url":"","description":"build failed","context":"kustomization/apps/0c9c2e41"}"#
        );
    }

    #[test]
    fn progressing_is_pending() {
        let (_, status) = planned("https://gitea.com/foo/bar", "info", "Progressing");
        assert_eq!(status.state, "pending");
        assert_eq!(status.description, "progressing");
        let (_, status) = planned(
            "https://gitea.com/foo/bar",
            "info",
            "ReconciliationSucceeded",
        );
        assert_eq!(status.state, "success");
    }

    #[test]
    fn the_first_entry_of_our_context_decides() {
        let (_, status) = planned(
            "https://gitea.com/foo/bar",
            "info",
            "ReconciliationSucceeded",
        );
        let entry = |context: &str, state: &str, description: &str| serde_json::json!({"id": 1, "status": state, "target_url": "", "description": description, "context": context});
        let list = |entries: Vec<serde_json::Value>| serde_json::to_vec(&entries).unwrap();
        let equal = entry(NAME, "success", "reconciliation succeeded");
        assert!(status.written(&list(vec![
            entry("other", "failure", "x"),
            entry(NAME, "success", ""),
            equal.clone(),
        ])));
        assert!(!status.written(&list(vec![
            entry(NAME, "failure", "build failed"),
            equal.clone()
        ])));
        // `state` is not Gitea's key.
        assert!(!status.written(&list(vec![serde_json::json!({
            "state": "success", "description": "reconciliation succeeded", "context": NAME
        })])));
        assert!(!status.written(b"[]"));
    }

    #[test]
    fn unusable_providers_and_events_say_why() {
        let mut none = resolved("https://gitea.com/foo/bar");
        none.token.clear();
        none.password.clear();
        let success = event("info", "ReconciliationSucceeded");
        assert_eq!(
            plan(&none, &success, "x".into()).err().as_deref(),
            Some("gitea token cannot be empty")
        );
        assert_eq!(
            plan(&resolved("https://gitea.com/a/b/c"), &success, "x".into())
                .err()
                .as_deref(),
            Some(r#"invalid repository id "a/b/c""#)
        );
        assert_eq!(
            plan(
                &resolved("https://gitea.com/a/b"),
                &event("trace", "Other"),
                "x".into()
            )
            .err()
            .as_deref(),
            Some("can't convert to gitea state")
        );
    }
}
