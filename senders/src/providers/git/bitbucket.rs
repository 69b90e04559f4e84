//! `bitbucket`: a build status on the commit Flux reconciled, on Bitbucket
//! Cloud (flux-providers §7.1, §7.9): read the status of our key, skip an
//! equal one, post it otherwise. The token is `{user}:{app-password}`, sent
//! as basic auth. Unlike Flux, the API is taken from the Provider address
//! when its host is not `bitbucket.org` (see [`api_base`]).

use herald_flux::FluxEvent;
use herald_flux::git::{self, GitAddress, GitHost};
use serde::{Deserialize, Serialize};

use super::classify;
use crate::config::Resolved;
use crate::http::HttpSender;
use crate::outcome::Outcome;
use crate::providers::shared::basic;
use crate::providers::{Clients, CommitStatusPlan, StatusWrite, Writing};

/// The `url` of every status, as Flux sends it.
const STATUS_URL: &str = "https://bitbucket.org";

/// Plans the status of `event`, or `None` when Bitbucket gets none (a
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
    if resolved.token.is_empty() {
        return Err(
            "bitbucket token cannot be empty: set the Secret's token to <user>:<app-password>"
                .to_owned(),
        );
    }
    let [user, password] = resolved.token.split(':').collect::<Vec<_>>()[..] else {
        return Err("invalid token format, expected to be <user>:<password>".to_owned());
    };
    let address = git::parse_git_address(&resolved.address).map_err(|e| e.to_string())?;
    let (workspace, repo) = address
        .owner_repo(GitHost::Bitbucket)
        .map_err(|e| e.to_string())?;
    let Some(state) = git::commit_state(GitHost::Bitbucket, &event.severity, &event.reason)
        .map_err(|e| e.to_string())?
    else {
        return Ok(None);
    };
    let revision = git::revision_of(&event.metadata).ok_or("missing revision metadata")?;
    let sha = git::commit_sha(revision).map_err(|e| e.to_string())?;
    let (_, description) = git::name_and_description(event);
    Ok(Some(CommitStatusPlan {
        repository: format!("{}/{workspace}/{repo}", address.scheme_host),
        sha: sha.clone(),
        identifier: identifier.clone(),
        write: Box::new(CloudStatus {
            statuses: format!(
                "{}/repositories/{workspace}/{repo}/commit/{sha}/statuses/build",
                api_base(&address)
            ),
            authorization: basic(user, password),
            key: git::status_key(GitHost::Bitbucket, &identifier),
            state: state.as_str(GitHost::Bitbucket),
            name: git::bitbucket_status_name(event),
            description,
        }),
    }))
}

/// The API base: `https://api.bitbucket.org/2.0` for an address on
/// `bitbucket.org`, else `{scheme}://{host[:port]}/2.0` of the address.
///
/// This differs from Flux, whose Bitbucket client always calls
/// `https://api.bitbucket.org/2.0` (or the process environment's
/// `BITBUCKET_API_BASE_URL`) and ignores the address host: Herald takes a
/// Bitbucket-compatible API from the Provider address when its host is not
/// `bitbucket.org`.
fn api_base(address: &GitAddress) -> String {
    if address.host() == "bitbucket.org" {
        "https://api.bitbucket.org/2.0".to_owned()
    } else {
        format!("{}/2.0", address.scheme_host)
    }
}

/// A Bitbucket Cloud build status to write.
struct CloudStatus {
    /// `{api}/repositories/{workspace}/{repo}/commit/{sha}/statuses/build`.
    statuses: String,
    /// The `Authorization` header value.
    authorization: String,
    key: String,
    state: &'static str,
    name: String,
    description: String,
}

impl StatusWrite for CloudStatus {
    fn apply<'a>(&'a self, clients: &'a Clients, resolved: &'a Resolved) -> Writing<'a> {
        Box::pin(apply(&clients.http, resolved, self))
    }
}

#[derive(Deserialize)]
struct Existing {
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    description: Option<String>,
}

/// The posted build status, in Flux's key order.
#[derive(Serialize)]
struct Create<'a> {
    key: &'a str,
    url: &'a str,
    state: &'a str,
    name: &'a str,
    description: &'a str,
}

/// Reads the status of our key, compares, and posts it.
async fn apply(http: &HttpSender, resolved: &Resolved, status: &CloudStatus) -> Outcome {
    let (Ok(read), Ok(post)) = (
        reqwest::Url::parse(&format!("{}/{}", status.statuses, status.key)),
        reqwest::Url::parse(&status.statuses),
    ) else {
        return super::invalid_url(resolved);
    };
    let auth = ("Authorization".to_owned(), status.authorization.clone());
    let answer = match http
        .call(
            reqwest::Method::GET,
            read,
            std::slice::from_ref(&auth),
            None,
            resolved,
        )
        .await
    {
        Ok(answer) => answer,
        Err(outcome) => return outcome,
    };
    match answer.status {
        404 => {}
        200..=299 => {
            let existing: Option<Existing> = serde_json::from_slice(&answer.body).ok();
            if existing.is_some_and(|e| {
                e.state.as_deref() == Some(status.state)
                    && e.description.as_deref() == Some(status.description.as_str())
            }) {
                return Outcome::Delivered {
                    status: answer.status,
                };
            }
        }
        _ => return classify(&answer, resolved, "could not get commit status"),
    }
    let body = serde_json::to_vec(&Create {
        key: &status.key,
        url: STATUS_URL,
        state: status.state,
        name: &status.name,
        description: &status.description,
    })
    .unwrap_or_default();
    let headers = [
        auth,
        ("Content-Type".to_owned(), "application/json".to_owned()),
    ];
    super::post(
        http,
        resolved,
        post,
        &headers,
        body,
        "could not set commit status",
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
            provider_type: "bitbucket".into(),
            address: address.into(),
            token: token.into(),
            ..Resolved::default()
        }
    }

    #[test]
    fn the_api_is_bitbucket_org_s_or_the_address_host() {
        let base = |address: &str| api_base(&git::parse_git_address(address).unwrap());
        assert_eq!(
            base("https://bitbucket.org/workspace/repo.git"),
            "https://api.bitbucket.org/2.0"
        );
        assert_eq!(
            base("git@bitbucket.org:workspace/repo.git"),
            "https://api.bitbucket.org/2.0"
        );
        assert_eq!(
            base("http://127.0.0.1:8080/workspace/repo"),
            "http://127.0.0.1:8080/2.0"
        );
    }

    #[test]
    fn plans_need_a_user_and_app_password() {
        let success = event("info", "ReconciliationSucceeded");
        let address = "https://bitbucket.org/workspace/repo";
        let plan = |token: &str| plan(&resolved(address, token), &success, "id".into());
        assert_eq!(
            plan("").err().unwrap(),
            "bitbucket token cannot be empty: set the Secret's token to <user>:<app-password>"
        );
        for bad in ["nouser", "a:b:c"] {
            assert_eq!(
                plan(bad).err().unwrap(),
                "invalid token format, expected to be <user>:<password>"
            );
        }
        let planned = plan("user:pass").unwrap().unwrap();
        assert_eq!(planned.repository, "https://bitbucket.org/workspace/repo");
        assert_eq!(planned.sha, SHA);
        let progressing = event("info", "Progressing");
        assert!(
            super::plan(&resolved(address, "u:p"), &progressing, "id".into())
                .unwrap()
                .is_none()
        );
        let nested = super::plan(
            &resolved("https://bitbucket.org/a/b/c", "u:p"),
            &success,
            "id".into(),
        );
        assert_eq!(nested.err().unwrap(), r#"invalid repository id "a/b/c""#);
    }
}
