//! `azuredevops`: a commit status on the commit Flux reconciled
//! (flux-providers §7.1, §7.11): list the commit's statuses, skip an equal
//! one, create it otherwise.
//!
//! Flux's Azure DevOps SDK discovers the statuses route with
//! `OPTIONS {orgURL}/_apis`; Herald calls the route that discovery yields
//! on Azure DevOps Services directly,
//! `{orgURL}/{project}/_apis/git/repositories/{repo}/commits/{sha}/statuses?api-version=6.0`.
//! Only a personal access token in the Secret is supported (no workload
//! identity).

use std::sync::LazyLock;

use herald_flux::FluxEvent;
use herald_flux::git::{self, GitHost};
use serde::{Deserialize, Serialize};

use super::classify;
use crate::config::Resolved;
use crate::http::HttpSender;
use crate::outcome::Outcome;
use crate::providers::shared::{basic, path_escape};
use crate::providers::{Clients, CommitStatusPlan, StatusWrite, Writing};

/// The API version Herald asks for.
const API_VERSION: &str = "6.0";

/// `X-TFS-Session`: one random UUID per process, as the SDK sends.
static SESSION: LazyLock<String> = LazyLock::new(|| {
    let bits = fastrand::u128(..);
    // Version 4, variant 10.
    let bits = (bits & !(0xf << 76) & !(0x3 << 62)) | (0x4 << 76) | (0x2 << 62);
    let hex = format!("{bits:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
});

/// Plans the status of `event`, or `None` when Azure DevOps gets none (a
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
    // The notifier's constructor checks come first, as in Flux.
    let address = git::parse_git_address(&resolved.address).map_err(|e| e.to_string())?;
    let repo = address.azure_devops_repo().map_err(|e| e.to_string())?;
    if resolved.token.is_empty() {
        return Err(
            "azure devops token cannot be empty: set the Secret's token to a personal access token (workload identity is not supported)"
                .to_owned(),
        );
    }
    let Some(state) = git::commit_state(GitHost::AzureDevOps, &event.severity, &event.reason)
        .map_err(|e| e.to_string())?
    else {
        return Ok(None);
    };
    let revision = git::revision_of(&event.metadata).ok_or("missing revision metadata")?;
    let sha = git::commit_sha(revision).map_err(|e| e.to_string())?;
    let (_, description) = git::name_and_description(event);
    Ok(Some(CommitStatusPlan {
        repository: format!("{}/{}/{}", repo.org_url, repo.project, repo.repository),
        sha: sha.clone(),
        identifier: identifier.clone(),
        write: Box::new(AzureStatus {
            statuses: format!(
                "{}/{}/_apis/git/repositories/{}/commits/{sha}/statuses?api-version={API_VERSION}",
                repo.org_url,
                path_escape(&repo.project),
                path_escape(&repo.repository),
            ),
            authorization: basic("", &resolved.token),
            genre: git::azure_devops_genre(&event.metadata),
            name: git::status_key(GitHost::AzureDevOps, &identifier),
            state: state.as_str(GitHost::AzureDevOps),
            description,
        }),
    }))
}

/// An Azure DevOps commit status to write.
struct AzureStatus {
    /// `{orgURL}/{project}/_apis/git/repositories/{repo}/commits/{sha}/statuses?api-version=6.0`.
    statuses: String,
    /// The `Authorization` header value.
    authorization: String,
    genre: String,
    name: String,
    state: &'static str,
    description: String,
}

impl StatusWrite for AzureStatus {
    fn apply<'a>(&'a self, clients: &'a Clients, resolved: &'a Resolved) -> Writing<'a> {
        Box::pin(apply(&clients.http, resolved, self))
    }
}

#[derive(Deserialize, Default)]
struct Listed {
    #[serde(default)]
    value: Vec<Status>,
}

#[derive(Deserialize)]
struct Status {
    #[serde(default)]
    context: Option<Context>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    description: Option<String>,
}

#[derive(Deserialize)]
struct Context {
    #[serde(default)]
    genre: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

/// The posted status, in the SDK's key order.
#[derive(Serialize)]
struct Create<'a> {
    context: CreateContext<'a>,
    description: &'a str,
    state: &'a str,
}

#[derive(Serialize)]
struct CreateContext<'a> {
    genre: &'a str,
    name: &'a str,
}

fn headers(authorization: &str, with_body: bool) -> Vec<(String, String)> {
    let mut headers = vec![
        ("Authorization".to_owned(), authorization.to_owned()),
        (
            "Accept".to_owned(),
            format!("application/json;api-version={API_VERSION}"),
        ),
        ("X-TFS-FedAuthRedirect".to_owned(), "Suppress".to_owned()),
        ("X-TFS-Session".to_owned(), SESSION.clone()),
    ];
    if with_body {
        headers.push((
            "Content-Type".to_owned(),
            "application/json;charset=utf-8".to_owned(),
        ));
    }
    headers
}

/// Whether the listed statuses already hold ours: the first entry with our
/// name and genre (entries missing a field skipped) has our state and
/// description.
fn written(listed: &[u8], status: &AzureStatus) -> bool {
    let listed: Listed = serde_json::from_slice(listed).unwrap_or_default();
    let present = |v: &Option<String>| v.as_deref().is_some_and(|v| !v.is_empty());
    listed
        .value
        .iter()
        .find(|s| {
            let Some(context) = &s.context else {
                return false;
            };
            present(&context.name)
                && present(&context.genre)
                && present(&s.state)
                && present(&s.description)
                && context.name.as_deref() == Some(status.name.as_str())
                && context.genre.as_deref() == Some(status.genre.as_str())
        })
        .is_some_and(|s| {
            s.state.as_deref() == Some(status.state)
                && s.description.as_deref() == Some(status.description.as_str())
        })
}

/// Lists, compares, and creates the status.
async fn apply(http: &HttpSender, resolved: &Resolved, status: &AzureStatus) -> Outcome {
    let Ok(url) = reqwest::Url::parse(&status.statuses) else {
        return super::invalid_url(resolved);
    };
    let answer = match http
        .call(
            reqwest::Method::GET,
            url.clone(),
            &headers(&status.authorization, false),
            None,
            resolved,
        )
        .await
    {
        Ok(answer) => answer,
        Err(outcome) => return outcome,
    };
    if !(200..300).contains(&answer.status) {
        return classify(&answer, resolved, "could not list commit statuses");
    }
    if written(&answer.body, status) {
        return Outcome::Delivered {
            status: answer.status,
        };
    }
    let body = serde_json::to_vec(&Create {
        context: CreateContext {
            genre: &status.genre,
            name: &status.name,
        },
        description: &status.description,
        state: status.state,
    })
    .unwrap_or_default();
    super::post(
        http,
        resolved,
        url,
        &headers(&status.authorization, true),
        body,
        "could not create commit status",
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "67e2c98a60dc92283531412a9e604dd4bae005a9";

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

    fn resolved(address: &str, token: &str) -> Resolved {
        Resolved {
            provider_type: "azuredevops".into(),
            address: address.into(),
            token: token.into(),
            ..Resolved::default()
        }
    }

    fn status() -> AzureStatus {
        AzureStatus {
            statuses: String::new(),
            authorization: String::new(),
            genre: "fluxcd".into(),
            name: "kustomization/apps/0c9c2e41".into(),
            state: "error",
            description: "build failed".into(),
        }
    }

    #[test]
    fn plans_need_a_pat_and_four_path_parts() {
        let success = event("info", "ReconciliationSucceeded");
        let address = "https://dev.azure.com/Org/My Project/_git/repo";
        let planned = plan(&resolved(address, "pat"), &success, "id".into())
            .unwrap()
            .unwrap();
        assert_eq!(
            planned.repository,
            "https://dev.azure.com/org/My Project/repo"
        );
        assert_eq!(planned.sha, SHA);
        assert_eq!(
            plan(&resolved(address, ""), &success, "id".into())
                .err()
                .unwrap(),
            "azure devops token cannot be empty: set the Secret's token to a personal access token (workload identity is not supported)"
        );
        let legacy = plan(
            &resolved("https://org.visualstudio.com/project/_git/repo", "pat"),
            &success,
            "id".into(),
        );
        assert_eq!(
            legacy.err().unwrap(),
            r#"invalid repository id "project/_git/repo""#
        );
        assert!(
            plan(
                &resolved(address, "pat"),
                &event("info", "Progressing"),
                "id".into()
            )
            .unwrap()
            .is_none()
        );
        assert_eq!(path_escape("My Project"), "My%20Project");
    }

    #[test]
    fn the_first_status_of_our_name_and_genre_decides() {
        let entry = |genre: &str, name: &str, state: &str, description: &str| serde_json::json!({"context": {"genre": genre, "name": name}, "state": state, "description": description});
        let ours = status();
        let list = |entries: Vec<serde_json::Value>| {
            serde_json::to_vec(&serde_json::json!({"count": entries.len(), "value": entries}))
                .unwrap()
        };
        let name = ours.name.clone();
        assert!(written(
            &list(vec![
                entry("other", &name, "succeeded", "x"),
                entry("fluxcd", &name, "error", "build failed"),
            ]),
            &ours
        ));
        assert!(!written(
            &list(vec![
                entry("fluxcd", &name, "succeeded", "reconciliation succeeded"),
                entry("fluxcd", &name, "error", "build failed"),
            ]),
            &ours
        ));
        assert!(!written(&list(vec![]), &ours));
        assert!(!written(b"not json", &ours));
    }

    #[test]
    fn sessions_are_uuids() {
        let session = SESSION.as_str();
        assert_eq!(session.len(), 36);
        assert_eq!(&session[14..15], "4");
    }
}
