//! `github`: a commit status on the commit Flux reconciled
//! (flux-providers §7.1, §7.6): list the commit's statuses, skip an equal
//! one, create it otherwise. GitHub Enterprise works through the address's
//! host (`{host}/api/v3/`).

use herald_flux::FluxEvent;
use herald_flux::git::{self, GitHost};
use serde::{Deserialize, Serialize};

use super::github_app::GitHubAuth;
use super::{StatusCalls, github_headers as headers};
use crate::config::Resolved;
use crate::http::HttpSender;
use crate::outcome::Outcome;
use crate::providers::{Clients, CommitStatusPlan, StatusWrite, Writing};

/// Plans the status of `event`, or `None` when GitHub gets none (a
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
    let Some(state) = git::commit_state(GitHost::GitHub, &event.severity, &event.reason)
        .map_err(|e| e.to_string())?
    else {
        return Ok(None);
    };
    let revision = git::revision_of(&event.metadata).ok_or("missing revision metadata")?;
    let sha = git::commit_sha(revision).map_err(|e| e.to_string())?;
    let address = git::parse_git_address(&resolved.address).map_err(|e| e.to_string())?;
    let (owner, repo) = address
        .owner_repo(GitHost::GitHub)
        .map_err(|e| e.to_string())?;
    let api = address.github_api_base();
    let auth = super::github_app::auth(resolved, &api)?;
    let (_, description) = git::name_and_description(event);
    Ok(Some(CommitStatusPlan {
        repository: format!("{}/{owner}/{repo}", address.scheme_host),
        sha: sha.clone(),
        identifier: identifier.clone(),
        write: Box::new(GitHubStatus {
            api,
            owner: owner.to_owned(),
            repo: repo.to_owned(),
            sha,
            auth,
            state: state.as_str(GitHost::GitHub),
            description,
            context: identifier,
        }),
    }))
}

/// A GitHub commit status to write. Holds credentials: never log it.
struct GitHubStatus {
    api: String,
    owner: String,
    repo: String,
    sha: String,
    auth: GitHubAuth,
    state: &'static str,
    description: String,
    context: String,
}

impl StatusWrite for GitHubStatus {
    fn apply<'a>(&'a self, clients: &'a Clients, resolved: &'a Resolved) -> Writing<'a> {
        Box::pin(apply(clients, resolved, self))
    }
}

#[derive(Deserialize)]
struct Listed {
    #[serde(default)]
    context: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    description: Option<String>,
}

#[derive(Serialize)]
struct Create<'a> {
    state: &'a str,
    description: &'a str,
    context: &'a str,
}

/// Lists, compares, and creates the status.
async fn apply(clients: &Clients, resolved: &Resolved, status: &GitHubStatus) -> Outcome {
    status
        .auth
        .authorized(clients, resolved, |token| {
            Box::pin(write(&clients.http, resolved, status, token))
        })
        .await
}

/// Lists, compares, and creates the status with `token`.
async fn write(
    http: &HttpSender,
    resolved: &Resolved,
    status: &GitHubStatus,
    token: String,
) -> Outcome {
    let GitHubStatus {
        api,
        owner,
        repo,
        sha,
        state,
        description,
        context,
        ..
    } = status;
    let (state, description, context) = (*state, description.as_str(), context.as_str());
    let mut body = serde_json::to_vec(&Create {
        state,
        description,
        context,
    })
    .unwrap_or_default();
    body.push(b'\n');
    let calls = StatusCalls {
        list: format!("{api}repos/{owner}/{repo}/commits/{sha}/statuses?per_page=50"),
        list_headers: &headers(&token, false),
        list_failed: "could not list commit statuses",
        create: format!("{api}repos/{owner}/{repo}/statuses/{sha}"),
        create_headers: &headers(&token, true),
        create_body: body,
        create_failed: "could not create commit status",
    };
    super::list_then_create(http, resolved, calls, |listed| {
        let listed: Vec<Listed> = serde_json::from_slice(listed).unwrap_or_default();
        // GitHub lists newest first: the first status of our context is current.
        let current = listed.iter().find(|s| {
            s.context.as_deref() == Some(context)
                && s.state.as_deref().is_some_and(|v| !v.is_empty())
                && s.description.as_deref().is_some_and(|v| !v.is_empty())
        });
        current.is_some_and(|s| {
            s.state.as_deref() == Some(state) && s.description.as_deref() == Some(description)
        })
    })
    .await
}
