//! `githubdispatch`: a `repository_dispatch` event on the repository of the
//! address (flux-providers §6), with the Flux event as its client payload.
//! GitHub Enterprise works through the address's host (`{host}/api/v3/`).
//! A token from the Secret, or a GitHub App ([`super::github_app`]).

use herald_flux::FluxEvent;
use herald_flux::git::{self, GitHost};

use super::github_app::{self, GitHubAuth};
use super::{github_headers, github_json};
use crate::config::Resolved;
use crate::outcome::Outcome;
use crate::providers::{Clients, Exchange, Input, Plan, Provider, ProviderError, Writing};

/// `githubdispatch`.
pub(in crate::providers) struct GitHubDispatch;

impl Provider for GitHubDispatch {
    fn plan(&self, input: &Input<'_>) -> Result<Plan, ProviderError> {
        plan(input.resolved, input.event)
            .map(Plan::Exchange)
            .map_err(|problem| super::unusable(input.resolved, problem))
    }
}

/// Plans the dispatch of `event`.
///
/// # Errors
///
/// Why this Provider cannot dispatch (dead letter).
fn plan(resolved: &Resolved, event: &FluxEvent) -> Result<Box<dyn Exchange>, String> {
    Ok(Box::new(dispatch(resolved, event)?))
}

fn dispatch(resolved: &Resolved, event: &FluxEvent) -> Result<Dispatch, String> {
    let address = git::parse_git_address(&resolved.address).map_err(|e| e.to_string())?;
    let (owner, repo) = address
        .owner_repo(GitHost::GitHub)
        .map_err(|e| e.to_string())?;
    let api = address.github_api_base();
    let auth = github_app::auth(resolved, &api)?;
    let o = &event.involved_object;
    // go-github's encoder: the event type unescaped, the payload (raw JSON,
    // already marshalled by Go's rules) as it is, a trailing newline.
    let event_type = github_json(&format!("{}/{}.{}", o.kind, o.name, o.namespace));
    let mut body = b"{\"event_type\":".to_vec();
    body.extend_from_slice(event_type.trim_ascii_end());
    body.extend_from_slice(b",\"client_payload\":");
    body.extend_from_slice(&event.to_go_json());
    body.extend_from_slice(b"}\n");
    Ok(Dispatch {
        url: format!("{api}repos/{owner}/{repo}/dispatches"),
        auth,
        body,
    })
}

/// A dispatch to send. Holds credentials: never log it.
struct Dispatch {
    url: String,
    auth: GitHubAuth,
    body: Vec<u8>,
}

impl Exchange for Dispatch {
    fn run<'a>(&'a self, clients: &'a Clients, resolved: &'a Resolved) -> Writing<'a> {
        Box::pin(run(clients, resolved, self))
    }
}

async fn run(clients: &Clients, resolved: &Resolved, dispatch: &Dispatch) -> Outcome {
    let Ok(url) = reqwest::Url::parse(&dispatch.url) else {
        return super::invalid_url(resolved);
    };
    dispatch
        .auth
        .authorized(clients, resolved, |token| {
            let url = url.clone();
            Box::pin(async move {
                super::post(
                    &clients.http,
                    resolved,
                    url,
                    &github_headers(&token, true),
                    dispatch.body.clone(),
                    "could not send github repository dispatch webhook",
                )
                .await
            })
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispatch_carries_the_event_as_flux_json() {
        let event = FluxEvent::from_json(
            br#"{"involvedObject":{"kind":"Kustomization","namespace":"flux-system","name":"apps"},
                "severity":"info","timestamp":"2024-01-01T10:00:00Z","message":"a<b",
                "reason":"ReconciliationSucceeded","reportingController":"kustomize-controller"}"#,
        )
        .unwrap();
        let resolved = Resolved {
            provider_type: "githubdispatch".into(),
            address: "https://github.com/org/podinfo".into(),
            token: "ghp-1".into(),
            ..Resolved::default()
        };
        let d = dispatch(&resolved, &event).unwrap();
        assert_eq!(d.url, "https://api.github.com/repos/org/podinfo/dispatches");
        let expected = format!(
            "{{\"event_type\":\"Kustomization/apps.flux-system\",\"client_payload\":{}}}\n",
            String::from_utf8(event.to_go_json()).unwrap()
        );
        assert_eq!(String::from_utf8(d.body).unwrap(), expected);
        let no_token = Resolved {
            token: String::new(),
            ..resolved
        };
        assert!(
            dispatch(&no_token, &event)
                .err()
                .unwrap()
                .contains("github token or github app details must be specified")
        );
    }
}
