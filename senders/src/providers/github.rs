//! `github`: a commit status on the commit Flux reconciled
//! (flux-providers §7.1, §7.6): list the commit's statuses, skip an equal
//! one, create it otherwise. GitHub Enterprise works through the address's
//! host (`{host}/api/v3/`).

use herald_flux::FluxEvent;
use herald_flux::git::{self, GitHost};
use serde::{Deserialize, Serialize};

use super::{CommitStatusPlan, StatusWrite, Writing};
use crate::config::Resolved;
use crate::http::{Answer, HttpSender};
use crate::outcome::Outcome;

/// Plans the status of `event`, or `None` when GitHub gets none (a
/// `Progressing` event).
///
/// # Errors
///
/// Why this Provider and event cannot give a status (dead letter).
pub(super) fn plan(
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
    let token = if resolved.token.is_empty() {
        &resolved.password
    } else {
        &resolved.token
    };
    if token.is_empty() {
        return Err("github token must be specified in the Provider's Secret (GitHub App keys are not supported)".to_owned());
    }
    let (_, description) = git::name_and_description(event);
    Ok(Some(CommitStatusPlan {
        repository: format!("{}/{owner}/{repo}", address.scheme_host),
        sha: sha.clone(),
        identifier: identifier.clone(),
        write: Box::new(GitHubStatus {
            api: address.github_api_base(),
            owner: owner.to_owned(),
            repo: repo.to_owned(),
            sha,
            token: token.clone(),
            state: state.as_str(GitHost::GitHub),
            description,
            context: identifier,
        }),
    }))
}

/// A GitHub commit status to write.
struct GitHubStatus {
    api: String,
    owner: String,
    repo: String,
    sha: String,
    token: String,
    state: &'static str,
    description: String,
    context: String,
}

impl StatusWrite for GitHubStatus {
    fn apply<'a>(&'a self, http: &'a HttpSender, resolved: &'a Resolved) -> Writing<'a> {
        Box::pin(apply(http, resolved, self))
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

fn headers(token: &str, with_body: bool) -> Vec<(String, String)> {
    let mut headers = vec![
        ("Authorization".to_owned(), format!("Bearer {token}")),
        (
            "Accept".to_owned(),
            "application/vnd.github.v3+json".to_owned(),
        ),
        ("X-GitHub-Api-Version".to_owned(), "2022-11-28".to_owned()),
    ];
    if with_body {
        headers.push(("Content-Type".to_owned(), "application/json".to_owned()));
    }
    headers
}

/// Lists, compares, and creates the status.
async fn apply(http: &HttpSender, resolved: &Resolved, status: &GitHubStatus) -> Outcome {
    let GitHubStatus {
        api,
        owner,
        repo,
        sha,
        token,
        state,
        description,
        context,
    } = status;
    let (state, description, context) = (*state, description.as_str(), context.as_str());
    let list = format!("{api}repos/{owner}/{repo}/commits/{sha}/statuses?per_page=50");
    let Ok(list) = reqwest::Url::parse(&list) else {
        return super::invalid_url(resolved);
    };
    let answer = match http
        .call(
            reqwest::Method::GET,
            list,
            &headers(token, false),
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
    let listed: Vec<Listed> = serde_json::from_slice(&answer.body).unwrap_or_default();
    // GitHub lists newest first: the first status of our context is current.
    let current = listed.iter().find(|s| {
        s.context.as_deref() == Some(context)
            && s.state.as_deref().is_some_and(|v| !v.is_empty())
            && s.description.as_deref().is_some_and(|v| !v.is_empty())
    });
    if current.is_some_and(|s| {
        s.state.as_deref() == Some(state) && s.description.as_deref() == Some(description)
    }) {
        return Outcome::Delivered {
            status: answer.status,
        };
    }
    let create = format!("{api}repos/{owner}/{repo}/statuses/{sha}");
    let Ok(create) = reqwest::Url::parse(&create) else {
        return super::invalid_url(resolved);
    };
    let mut body = serde_json::to_vec(&Create {
        state,
        description,
        context,
    })
    .unwrap_or_default();
    body.push(b'\n');
    match http
        .call(
            reqwest::Method::POST,
            create,
            &headers(token, true),
            Some(body),
            resolved,
        )
        .await
    {
        Ok(answer) if (200..300).contains(&answer.status) => Outcome::Delivered {
            status: answer.status,
        },
        Ok(answer) => classify(&answer, resolved, "could not create commit status"),
        Err(outcome) => outcome,
    }
}

/// A non-2xx GitHub answer: rate limits (429, or 403 with no requests left
/// or a secondary limit) are retried after GitHub's reset; other 4xx are
/// dead with GitHub's message.
fn classify(answer: &Answer, resolved: &Resolved, what: &str) -> Outcome {
    #[derive(Deserialize)]
    struct Message {
        #[serde(default)]
        message: String,
    }
    let secrets = resolved.secrets();
    let body = crate::outcome::excerpt(&answer.body, &secrets);
    let message = serde_json::from_slice::<Message>(&answer.body)
        .map(|m| crate::outcome::mask(&m.message, &secrets))
        .unwrap_or_default();
    let header = |name: &str| {
        answer
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let exhausted = header("x-ratelimit-remaining").as_deref() == Some("0");
    let rate_limited = answer.status == 429
        || (answer.status == 403
            && (exhausted || message.to_ascii_lowercase().contains("rate limit")));
    let status = answer.status;
    let reason = if message.is_empty() {
        format!("{what}: destination answered {status}")
    } else {
        format!("{what}: destination answered {status}: {message}")
    };
    if rate_limited {
        let reset = header("x-ratelimit-reset")
            .and_then(|v| v.parse::<i64>().ok())
            .map(|epoch| {
                let wait = epoch - jiff::Timestamp::now().as_second();
                std::time::Duration::from_secs(u64::try_from(wait).unwrap_or(0))
            });
        return Outcome::Retry {
            reason,
            status,
            after: answer
                .retry_after
                .or(reset)
                .or(Some(std::time::Duration::from_secs(60))),
            body,
        };
    }
    match crate::outcome::classify_status(status, answer.retry_after, body) {
        Outcome::Retry { after, body, .. } => Outcome::Retry {
            reason,
            status,
            after,
            body,
        },
        Outcome::Dead { body, .. } => Outcome::Dead {
            reason,
            status,
            body,
        },
        delivered => delivered,
    }
}
