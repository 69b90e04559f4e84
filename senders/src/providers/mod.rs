//! One module per provider type, each turning a delivery into the HTTP request
//! the destination expects (flux-providers §4). A new type is one module and
//! one line in [`build`].

mod azure_devops;
mod bitbucket;
mod bitbucket_server;
mod generic;
mod git_http;
mod gitea;
mod github;
mod github_dispatch;
mod gitlab;
mod grafana;
mod pull_request_comment;
mod slack;

use herald_flux::FluxEvent;

use std::future::Future;
use std::pin::Pin;

use crate::config::Resolved;
use crate::http::HttpSender;
use crate::outcome::Outcome;

pub(crate) use slack::web_api_result as slack_web_api_result;

/// How a response is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validator {
    /// Any 2xx is success.
    Status,
    /// Slack's Web API: a 2xx whose JSON body has `"ok": true`.
    SlackWebApi,
}

/// A request ready to send. Holds secrets (URL, headers): never log it.
pub struct ProviderRequest {
    pub url: reqwest::Url,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub validator: Validator,
}

/// What a delivery turns into.
pub enum Prepared {
    /// One request.
    Http(ProviderRequest),
    /// A commit status, written only if no newer event's status was.
    CommitStatus(CommitStatusPlan),
    /// Nothing to send, on purpose (a `Progressing` event for a git host).
    Skip(&'static str),
    /// Several requests to one host run as one attempt (a repository
    /// dispatch, a change-request comment).
    Exchange(Box<dyn Exchange>),
}

/// A commit status to write.
pub struct CommitStatusPlan {
    /// `scheme://host/owner/repo`: with `sha` and `identifier`, what
    /// "never backwards" is kept per.
    pub repository: String,
    pub sha: String,
    pub identifier: String,
    /// How the host writes it.
    pub write: Box<dyn StatusWrite>,
}

/// The future a [`StatusWrite`] returns.
pub type Writing<'a> = Pin<Box<dyn Future<Output = Outcome> + Send + 'a>>;

/// How one git host writes a planned status: read the current one, skip an
/// equal one, write otherwise. Holds a token: never log it.
pub trait StatusWrite: Send + Sync {
    /// Writes the status (or finds it already written).
    fn apply<'a>(&'a self, http: &'a HttpSender, resolved: &'a Resolved) -> Writing<'a>;
}

/// A planned exchange with a git host that is not a commit status: its
/// requests and how their answers are judged. Holds a token: never log it.
pub trait Exchange: Send + Sync {
    /// Runs the requests; the outcome of the attempt.
    fn run<'a>(&'a self, http: &'a HttpSender, resolved: &'a Resolved) -> Writing<'a>;
}

/// Turns a delivery into what to send. `identifier` computes the commit
/// status identifier of commit-status Providers (it may fail: a bad
/// `commitStatusExpr`).
///
/// # Errors
///
/// Why this Provider cannot send, for the dead letter.
pub fn prepare(
    resolved: &Resolved,
    event: &FluxEvent,
    identifier: impl FnOnce() -> Result<String, String>,
) -> Result<Prepared, String> {
    let status = |plan: Option<CommitStatusPlan>| match plan {
        Some(plan) => Prepared::CommitStatus(plan),
        None => Prepared::Skip("progressing"),
    };
    match resolved.provider_type.as_str() {
        "github" => Ok(status(github::plan(resolved, event, identifier()?)?)),
        "bitbucket" => Ok(status(bitbucket::plan(resolved, event, identifier()?)?)),
        "bitbucketserver" => Ok(status(bitbucket_server::plan(
            resolved,
            event,
            identifier()?,
        )?)),
        "azuredevops" => Ok(status(azure_devops::plan(resolved, event, identifier()?)?)),
        "gitlab" => Ok(status(gitlab::plan(resolved, event, identifier()?)?)),
        "gitea" => Ok(status(gitea::plan(resolved, event, identifier()?)?)),
        "githubdispatch" => github_dispatch::plan(resolved, event).map(Prepared::Exchange),
        "githubpullrequestcomment" | "gitlabmergerequestcomment" | "giteapullrequestcomment" => {
            pull_request_comment::plan(resolved, event).map(Prepared::Exchange)
        }
        _ => build(resolved, event).map(Prepared::Http),
    }
}

/// The dead outcome of an address that gives no valid API URL.
fn invalid_url(resolved: &Resolved) -> Outcome {
    Outcome::Dead {
        reason: format!(
            "{}: the address {} gives no valid API URL",
            resolved.provider_type,
            resolved.address_for_logs()
        ),
        status: 0,
        body: String::new(),
    }
}

/// Builds the request for `event` (already merged for its Alert).
///
/// # Errors
///
/// Why this Provider cannot send, for the dead letter.
pub fn build(resolved: &Resolved, event: &FluxEvent) -> Result<ProviderRequest, String> {
    match resolved.provider_type.as_str() {
        "slack" => slack::build(resolved, event),
        "generic" => generic::build(resolved, event, false),
        "generic-hmac" => generic::build(resolved, event, true),
        "grafana" => grafana::build(resolved, event),
        other => Err(format!(
            "provider type {other:?} is not supported by this version of Herald"
        )),
    }
}

/// Parses a Provider address that must be an absolute http(s) URL.
fn parse_address(resolved: &Resolved, what: &str) -> Result<reqwest::Url, String> {
    let shown = resolved.address_for_logs();
    if resolved.address.is_empty() {
        return Err(format!(
            "{what}: no address: set spec.address or the Secret's address"
        ));
    }
    let url = reqwest::Url::parse(&resolved.address)
        .map_err(|e| format!("{what}: invalid address {shown}: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{what}: address {shown} must be http or https"));
    }
    Ok(url)
}

/// `lower(kind)/name.namespace`, the object name most chat providers show.
fn object_name(event: &FluxEvent) -> String {
    let o = &event.involved_object;
    format!("{}/{}.{}", o.kind.to_lowercase(), o.name, o.namespace)
}
