//! The git hosts: commit statuses (`github`, `gitlab`, `gitea`, `bitbucket`,
//! `bitbucketserver`, `azuredevops`), `githubdispatch`, and change-request
//! comments. What they share is here: the commit-status preamble (plan or
//! skip), the list-then-create exchange (flux-providers §7.1 steps 6 and 7),
//! GitHub's headers and JSON, and how a host's answer is judged.

pub(super) mod azure_devops;
pub(super) mod bitbucket;
pub(super) mod bitbucket_server;
pub(super) mod gitea;
pub(super) mod github;
mod github_app;
pub(super) mod github_dispatch;
pub(super) mod gitlab;
pub(super) mod pull_request_comment;

use serde::Serialize;

use herald_flux::FluxEvent;

use super::{CommitStatusPlan, Input, Plan, Provider, ProviderError};
use crate::classify::{self, Judge, Masker};
use crate::config::Resolved;
use crate::http::{Answer, HttpSender};
use crate::outcome::Outcome;

/// How a git host plans one commit status: `None` when the event gives none
/// (a `Progressing` event), else the status with how the host writes it.
pub(super) type PlanStatus =
    fn(&Resolved, &FluxEvent, String) -> Result<Option<CommitStatusPlan>, String>;

/// A commit-status provider: the preamble every host shares (the
/// identifier, the skip, the error naming the type) around its `plan`.
pub(super) struct CommitStatus(pub PlanStatus);

impl Provider for CommitStatus {
    fn plan(&self, input: &Input<'_>) -> Result<Plan, ProviderError> {
        let identifier = input.identifier()?;
        match (self.0)(input.resolved, input.event, identifier) {
            Ok(Some(plan)) => Ok(Plan::CommitStatus(plan)),
            Ok(None) => Ok(Plan::Skip("progressing")),
            Err(problem) => Err(ProviderError::invalid(
                &input.resolved.provider_type,
                problem,
            )),
        }
    }
}

/// A host module's error for the dead letter.
fn unusable(resolved: &Resolved, problem: String) -> ProviderError {
    ProviderError::invalid(&resolved.provider_type, problem)
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

/// The Secret's `token`, else its `password`; `empty` when both are empty.
fn token(resolved: &Resolved, empty: &str) -> Result<String, String> {
    super::shared::token_or_password(resolved, &resolved.provider_type)
        .map_err(|_| empty.to_owned())
}

/// The Secret's `token`, else its `password`.
///
/// # Errors
///
/// When both are empty.
fn api_token(resolved: &Resolved, kind: &str) -> Result<String, String> {
    token(
        resolved,
        &format!("{kind}: token must be specified in the Provider's Secret (token, or password)"),
    )
}

/// GitHub's headers on every call (flux-providers §7.6).
fn github_headers(token: &str, with_body: bool) -> Vec<(String, String)> {
    let mut headers = vec![
        ("Authorization".to_owned(), super::shared::bearer(token)),
        (
            "Accept".to_owned(),
            "application/vnd.github.v3+json".to_owned(),
        ),
        ("X-GitHub-Api-Version".to_owned(), "2022-11-28".to_owned()),
    ];
    if with_body {
        headers.push(super::shared::json_content());
    }
    headers
}

/// JSON as go-github's encoder writes it: no HTML escaping, U+2028 and
/// U+2029 escaped, a trailing newline.
fn github_json<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let text = serde_json::to_string(value).unwrap_or_default();
    let mut text = text
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029");
    text.push('\n');
    text.into_bytes()
}

/// The requests of one commit status: the list, and the create made unless
/// the list already holds an equal status.
pub(super) struct StatusCalls<'a> {
    pub list: String,
    pub list_headers: &'a [(String, String)],
    /// What a failed list is called in the outcome's reason.
    pub list_failed: &'a str,
    pub create: String,
    pub create_headers: &'a [(String, String)],
    pub create_body: Vec<u8>,
    /// What a failed create is called in the outcome's reason.
    pub create_failed: &'a str,
}

/// POSTs `body` to `url`: delivered on 2xx, else the host's answer classified
/// (the reason starts with `what`).
pub(super) async fn post(
    http: &HttpSender,
    resolved: &Resolved,
    url: reqwest::Url,
    headers: &[(String, String)],
    body: Vec<u8>,
    what: &str,
) -> Outcome {
    match http
        .call(reqwest::Method::POST, url, headers, Some(body), resolved)
        .await
    {
        Ok(answer) if (200..300).contains(&answer.status) => Outcome::Delivered {
            status: answer.status,
        },
        Ok(answer) => classify(&answer, resolved, what),
        Err(outcome) => outcome,
    }
}

/// Lists the commit's statuses, and creates ours unless `written` finds it
/// in the listed body.
pub(super) async fn list_then_create(
    http: &HttpSender,
    resolved: &Resolved,
    calls: StatusCalls<'_>,
    written: impl FnOnce(&[u8]) -> bool,
) -> Outcome {
    let (Ok(list), Ok(create)) = (
        reqwest::Url::parse(&calls.list),
        reqwest::Url::parse(&calls.create),
    ) else {
        return invalid_url(resolved);
    };
    let answer = match http
        .call(
            reqwest::Method::GET,
            list,
            calls.list_headers,
            None,
            resolved,
        )
        .await
    {
        Ok(answer) => answer,
        Err(outcome) => return outcome,
    };
    if !(200..300).contains(&answer.status) {
        return classify(&answer, resolved, calls.list_failed);
    }
    if written(&answer.body) {
        return Outcome::Delivered {
            status: answer.status,
        };
    }
    post(
        http,
        resolved,
        create,
        calls.create_headers,
        calls.create_body,
        calls.create_failed,
    )
    .await
}

/// A git host's answer: delivered on 2xx, else judged as a git host's
/// (rate limits, the host's message), the reason starting with `what`.
fn classify(answer: &Answer, resolved: &Resolved, what: &str) -> Outcome {
    classify::classify(
        answer,
        Judge::GitHost,
        &Masker::new(resolved.secrets()),
        what,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// An answer with `status`, `headers` and `body`.
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
    fn escaping_is_go_s() {
        use crate::providers::shared::{path_escape, query_escape};
        assert_eq!(path_escape("my org"), "my%20org");
        assert_eq!(path_escape("a.b/c%"), "a.b%2Fc%25");
        assert_eq!(
            query_escape("kustomization/apps/0c9c2e41"),
            "kustomization%2Fapps%2F0c9c2e41"
        );
        assert_eq!(query_escape("a b~*"), "a+b~%2A");
    }

    #[test]
    fn tokens_fall_back_to_the_password() {
        let mut resolved = Resolved::default();
        assert_eq!(token(&resolved, "none").unwrap_err(), "none");
        resolved.password = "pw".into();
        assert_eq!(token(&resolved, "none").unwrap(), "pw");
        resolved.token = "tk".into();
        assert_eq!(token(&resolved, "none").unwrap(), "tk");
    }

    #[test]
    fn host_answers_are_classified() {
        let resolved = Resolved {
            token: "sekret".into(),
            ..Resolved::default()
        };
        for (status, body, message) in [
            (401, r#"{"message":"401 Unauthorized"}"#, "401 Unauthorized"),
            (403, r#"{"message":"403 Forbidden"}"#, "403 Forbidden"),
            (
                404,
                r#"{"message":"404 Project Not Found"}"#,
                "404 Project Not Found",
            ),
            (422, r#"{"error":"state is invalid"}"#, "state is invalid"),
            (401, r#"{"message":"bad sekret"}"#, "bad *****"),
        ] {
            let outcome = classify(&answer(status, &[], body), &resolved, "w");
            assert_eq!(
                outcome,
                Outcome::Dead {
                    reason: format!("w: destination answered {status}: {message}"),
                    status,
                    body: body.replace("sekret", "*****"),
                }
            );
        }
        let plain = classify(&answer(400, &[], "nope"), &resolved, "w");
        assert!(
            matches!(&plain, Outcome::Dead { reason, .. } if reason == "w: destination answered 400"),
            "{plain:?}"
        );
        let in_a_while = (jiff::Timestamp::now().as_second() + 120).to_string();
        for limited in [
            answer(429, &[("ratelimit-reset", &in_a_while)], "{}"),
            answer(403, &[("x-ratelimit-remaining", "0")], "{}"),
            answer(
                403,
                &[],
                r#"{"message":"You have exceeded a secondary rate limit"}"#,
            ),
        ] {
            let outcome = classify(&limited, &resolved, "w");
            let Outcome::Retry {
                after: Some(after), ..
            } = outcome
            else {
                panic!("{outcome:?}");
            };
            assert!(after <= Duration::from_secs(120), "{after:?}");
            assert!(after >= Duration::from_secs(60), "{after:?}");
        }
        let told = classify(&answer(429, &[("retry-after", "7")], "{}"), &resolved, "w");
        assert!(
            matches!(told, Outcome::Retry { after: Some(after), status: 429, .. } if after == Duration::from_secs(7)),
            "{told:?}"
        );
        assert!(matches!(
            classify(&answer(502, &[], ""), &resolved, "w"),
            Outcome::Retry { status: 502, .. }
        ));
    }
}
