//! `bitbucketserver`: a build status on the commit Flux reconciled, on
//! Bitbucket Server or Data Center (flux-providers §7.1, §7.10): read the
//! status of our key, skip an equal one, post it otherwise. The address is
//! the repository's HTTP(S) clone URL; a context path before `/scm/` is kept
//! in the API URL.
//!
//! This module also holds what the Atlassian and Azure DevOps providers
//! share: the basic-auth header and how their non-2xx answers are
//! classified ([`basic`], [`classify`]).

use herald_flux::FluxEvent;
use herald_flux::git::{self, GitHost};
use serde::{Deserialize, Serialize};

use super::classify;
use crate::config::Resolved;
use crate::http::HttpSender;
use crate::outcome::Outcome;
use crate::providers::shared::basic;
use crate::providers::{Clients, CommitStatusPlan, StatusWrite, Writing};

/// Plans the status of `event`, or `None` when Bitbucket Server gets none
/// (a `Progressing` event).
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
    let address =
        git::parse_bitbucket_server_address(&resolved.address).map_err(|e| e.to_string())?;
    let authorization = authorization(resolved)?;
    let Some(state) = git::commit_state(GitHost::BitbucketServer, &event.severity, &event.reason)
        .map_err(|e| e.to_string())?
    else {
        return Ok(None);
    };
    let revision = git::revision_of(&event.metadata).ok_or("missing revision metadata")?;
    let sha = git::commit_sha(revision).map_err(|e| format!("could not parse revision: {e}"))?;
    let (_, description) = git::name_and_description(event);
    Ok(Some(CommitStatusPlan {
        repository: format!(
            "{}://{}{}/{}/{}",
            address.scheme,
            address.host,
            address.context_path,
            address.project_key,
            address.repo_slug
        ),
        sha: sha.clone(),
        identifier: identifier.clone(),
        write: Box::new(ServerStatus {
            builds: address.builds_url(&sha),
            authorization,
            key: git::status_key(GitHost::BitbucketServer, &identifier),
            state: state.as_str(GitHost::BitbucketServer),
            name: git::bitbucket_server_status_name(event),
            description,
            url: resolved.address.clone(),
        }),
    }))
}

/// `Bearer {token}` with a token, else `Basic` of the username and password.
fn authorization(resolved: &Resolved) -> Result<String, String> {
    if !resolved.token.is_empty() {
        Ok(format!("Bearer {}", resolved.token))
    } else if !resolved.username.is_empty() && !resolved.password.is_empty() {
        Ok(basic(&resolved.username, &resolved.password))
    } else {
        Err(
            "invalid credentials, expected to be one of username/password or API Token: \
             set the Secret's token, or its username and password"
                .to_owned(),
        )
    }
}

/// A Bitbucket Server build status to write.
struct ServerStatus {
    /// `{scheme}://{host}{context}/rest/api/latest/projects/{key}/repos/{slug}/commits/{sha}/builds`.
    builds: String,
    /// The `Authorization` header value.
    authorization: String,
    key: String,
    state: &'static str,
    name: String,
    description: String,
    /// The Provider address, as configured.
    url: String,
}

impl StatusWrite for ServerStatus {
    fn apply<'a>(&'a self, clients: &'a Clients, resolved: &'a Resolved) -> Writing<'a> {
        Box::pin(apply(&clients.http, resolved, self))
    }
}

/// The build status Bitbucket Server answers for `?key=`.
#[derive(Deserialize)]
struct Existing {
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

/// The posted build status, in Flux's key order.
#[derive(Serialize)]
struct Create<'a> {
    description: &'a str,
    key: &'a str,
    name: &'a str,
    state: &'a str,
    url: &'a str,
}

fn headers(authorization: &str, with_body: bool) -> Vec<(String, String)> {
    let mut headers = vec![
        ("Authorization".to_owned(), authorization.to_owned()),
        ("x-atlassian-token".to_owned(), "no-check".to_owned()),
        ("x-requested-with".to_owned(), "XMLHttpRequest".to_owned()),
    ];
    if with_body {
        headers.push(("Content-Type".to_owned(), "application/json".to_owned()));
    }
    headers
}

/// Reads the status of our key, compares, and posts it.
async fn apply(http: &HttpSender, resolved: &Resolved, status: &ServerStatus) -> Outcome {
    let (Ok(read), Ok(post)) = (
        reqwest::Url::parse(&format!("{}?key={}", status.builds, status.key)),
        reqwest::Url::parse(&status.builds),
    ) else {
        return super::invalid_url(resolved);
    };
    let authorization = status.authorization.as_str();
    let answer = match http
        .call(
            reqwest::Method::GET,
            read,
            &headers(authorization, false),
            None,
            resolved,
        )
        .await
    {
        Ok(answer) => answer,
        Err(outcome) => return outcome,
    };
    if answer.status != 404 {
        if answer.status > 399 {
            return classify(&answer, resolved, "could not get existing commit status");
        }
        match serde_json::from_slice::<Existing>(&answer.body) {
            Ok(existing) => {
                let equal = |field: &Option<String>, ours: &str| field.as_deref() == Some(ours);
                if equal(&existing.key, &status.key)
                    && equal(&existing.state, status.state)
                    && equal(&existing.description, &status.description)
                    && equal(&existing.name, &status.name)
                {
                    return Outcome::Delivered {
                        status: answer.status,
                    };
                }
            }
            Err(error) => {
                return Outcome::Dead {
                    reason: format!(
                        "could not get existing commit status: could not unmarshal json response body for duplicate commit status: {error}"
                    ),
                    status: answer.status,
                    body: crate::classify::Masker::new(resolved.secrets()).excerpt(&answer.body),
                };
            }
        }
    }
    let mut body = serde_json::to_vec(&Create {
        description: &status.description,
        key: &status.key,
        name: &status.name,
        state: status.state,
        url: &status.url,
    })
    .unwrap_or_default();
    body.push(b'\n');
    super::post(
        http,
        resolved,
        post,
        &headers(authorization, true),
        body,
        "could not post build status",
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Answer;
    use std::time::Duration;

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

    fn resolved(address: &str) -> Resolved {
        Resolved {
            provider_type: "bitbucketserver".into(),
            address: address.into(),
            token: "bbs-token".into(),
            ..Resolved::default()
        }
    }

    fn answer(status: u16, headers: &[(&'static str, &str)], body: &str) -> Answer {
        let mut map = reqwest::header::HeaderMap::new();
        for (k, v) in headers {
            map.insert(*k, v.parse().unwrap());
        }
        Answer {
            status,
            headers: map,
            body: bytes::Bytes::from(body.to_owned()),
        }
    }

    #[test]
    fn plans_keep_the_context_path() {
        let resolved = resolved("https://example.com:7990/bitbucket/scm/PROJ/repo.git");
        let planned = plan(
            &resolved,
            &event("info", "ReconciliationSucceeded"),
            "kustomization/apps/0c9c2e41".into(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            planned.repository,
            "https://example.com:7990/bitbucket/PROJ/repo"
        );
        assert_eq!(planned.sha, SHA);
        assert!(
            plan(&resolved, &event("info", "Progressing"), "x".into())
                .unwrap()
                .is_none()
        );
        let trace = plan(&resolved, &event("trace", "Other"), "x".into());
        assert!(trace.is_err_and(|e| e.starts_with("couldn't convert to bitbucket server state")));
    }

    #[test]
    fn credentials_are_a_token_or_a_user_and_password() {
        let mut resolved = resolved("https://example.com/scm/PROJ/repo.git");
        assert_eq!(authorization(&resolved).unwrap(), "Bearer bbs-token");
        resolved.token.clear();
        resolved.username = "admin".into();
        resolved.password = "secret".into();
        assert_eq!(authorization(&resolved).unwrap(), "Basic YWRtaW46c2VjcmV0");
        resolved.password.clear();
        let error = authorization(&resolved).unwrap_err();
        assert!(error.starts_with(
            "invalid credentials, expected to be one of username/password or API Token"
        ));
        assert_eq!(basic("", "tok"), "Basic OnRvaw==");
        assert_eq!(basic("a", "b"), "Basic YTpi");
    }

    #[test]
    fn addresses_without_scm_are_refused() {
        let error = plan(
            &resolved("https://example.com/PROJ/repo.git"),
            &event("info", "ReconciliationSucceeded"),
            "x".into(),
        )
        .err()
        .unwrap();
        assert_eq!(
            error,
            "could not parse git address: supplied provider address is not http(s) git clone url"
        );
    }

    #[test]
    fn host_answers_are_classified_with_their_message() {
        let resolved = resolved("https://example.com/scm/PROJ/repo.git");
        for (body, message) in [
            (
                r#"{"errors":[{"context":null,"message":"Authentication failed for bbs-token","exceptionName":null}]}"#,
                "Authentication failed for *****",
            ),
            (
                r#"{"type":"error","error":{"message":"Invalid credentials"}}"#,
                "Invalid credentials",
            ),
            (
                r#"{"$id":"1","message":"TF400813: denied"}"#,
                "TF400813: denied",
            ),
        ] {
            let outcome = classify(&answer(401, &[], body), &resolved, "w");
            assert!(
                matches!(&outcome, Outcome::Dead { reason, status: 401, .. } if *reason == format!("w: destination answered 401: {message}")),
                "{outcome:?}"
            );
        }
        let limited = classify(&answer(429, &[], "{}"), &resolved, "w");
        assert!(
            matches!(limited, Outcome::Retry { after: Some(after), .. } if after == Duration::from_secs(60)),
            "{limited:?}"
        );
        let in_a_while = (jiff::Timestamp::now().as_second() + 30).to_string();
        let reset = classify(
            &answer(
                403,
                &[
                    ("x-ratelimit-remaining", "0"),
                    ("x-ratelimit-reset", &in_a_while),
                ],
                "{}",
            ),
            &resolved,
            "w",
        );
        assert!(
            matches!(reset, Outcome::Retry { after: Some(after), .. } if after <= Duration::from_secs(30)),
            "{reset:?}"
        );
        assert!(matches!(
            classify(&answer(503, &[], ""), &resolved, "w"),
            Outcome::Retry { status: 503, .. }
        ));
        assert!(matches!(
            classify(&answer(404, &[], ""), &resolved, "w"),
            Outcome::Dead { status: 404, .. }
        ));
    }
}
