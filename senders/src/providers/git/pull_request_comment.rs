//! `githubpullrequestcomment`, `gitlabmergerequestcomment` and
//! `giteapullrequestcomment` (flux-providers §8): one comment per Flux object
//! per Provider on the pull/merge request named by the event's
//! `change_request` metadata. The token's user is looked up, the first 100
//! comments are listed oldest first, and the first one by that user holding
//! the object's marker is edited; otherwise a new comment is created.
//!
//! A Secret's `token`, else its `password`; on GitHub also a GitHub App
//! ([`super::github_app`]), whose comments are by its bot user
//! `{slug}[bot]`. Gitea's version probe is not made.

use herald_flux::FluxEvent;
use herald_flux::git::{self, CommentHost, GitHost};
use serde::Serialize;

use super::github_app::{self, GitHubAuth};
use super::{api_token as token, classify, github_headers, github_json};
use crate::config::Resolved;
use crate::http::{Answer, HttpSender};
use crate::outcome::Outcome;
use crate::providers::{Clients, Exchange, Input, Plan, Provider, ProviderError, Writing};

/// `githubpullrequestcomment`, `gitlabmergerequestcomment`, `giteapullrequestcomment`.
pub(in crate::providers) struct PullRequestComment;

impl Provider for PullRequestComment {
    fn plan(&self, input: &Input<'_>) -> Result<Plan, ProviderError> {
        plan(input.resolved, input.event)
            .map(Plan::Exchange)
            .map_err(|problem| super::unusable(input.resolved, problem))
    }
}

/// Plans the comment for `event` on the Provider's host.
///
/// # Errors
///
/// Why this Provider and event cannot give a comment (dead letter).
fn plan(resolved: &Resolved, event: &FluxEvent) -> Result<Box<dyn Exchange>, String> {
    let host = CommentHost::from_provider_type(&resolved.provider_type).ok_or_else(|| {
        format!(
            "{} is not a change-request comment type",
            resolved.provider_type
        )
    })?;
    Ok(Box::new(comment(resolved, event, host)?))
}

fn comment(resolved: &Resolved, event: &FluxEvent, host: CommentHost) -> Result<Comment, String> {
    let kind = host.provider_type();
    let number = git::change_request_number(&event.metadata).map_err(|e| e.to_string())?;
    let marker =
        git::comment_marker(host, &resolved.provider_uid, event).map_err(|e| e.to_string())?;
    let body = git::comment_body(host, &resolved.provider_uid, event).map_err(|e| e.to_string())?;
    let address = git::parse_git_address(&resolved.address).map_err(|e| e.to_string())?;
    let auth = match host {
        CommentHost::GitHubPullRequest => github_app::auth(resolved, &address.github_api_base())?,
        CommentHost::GitLabMergeRequest | CommentHost::GiteaPullRequest => {
            GitHubAuth::Token(token(resolved, kind)?)
        }
    };
    let (api, base) = match host {
        CommentHost::GitHubPullRequest => {
            let (owner, repo) = address
                .owner_repo(GitHost::GitHub)
                .map_err(|e| e.to_string())?;
            (
                address.github_api_base(),
                format!("repos/{owner}/{repo}/issues"),
            )
        }
        CommentHost::GitLabMergeRequest => (
            address.gitlab_api_base(),
            format!("projects/{}/merge_requests", address.gitlab_project()),
        ),
        CommentHost::GiteaPullRequest => {
            let (owner, repo) = address
                .owner_repo(GitHost::Gitea)
                .map_err(|e| e.to_string())?;
            (
                format!("{}/api/v1/", address.scheme_host),
                format!("repos/{owner}/{repo}/issues"),
            )
        }
    };
    Ok(Comment {
        host,
        api,
        base,
        number,
        auth,
        marker,
        body,
    })
}

/// A comment to create or edit. Holds credentials: never log it.
struct Comment {
    host: CommentHost,
    /// The API base, ending in `/`.
    api: String,
    /// `repos/{owner}/{repo}/issues` or `projects/{pid}/merge_requests`.
    base: String,
    number: i64,
    /// A token on every host; a GitHub App on GitHub.
    auth: GitHubAuth,
    marker: String,
    body: String,
}

impl Exchange for Comment {
    fn run<'a>(&'a self, clients: &'a Clients, resolved: &'a Resolved) -> Writing<'a> {
        Box::pin(run(clients, resolved, self))
    }
}

#[derive(Serialize)]
struct Body<'a> {
    body: &'a str,
}

/// A request of one exchange.
struct Call {
    method: reqwest::Method,
    url: String,
    body: Option<Vec<u8>>,
}

// === impl Comment ===

impl Comment {
    /// Where the token's user is looked up.
    fn identity(&self) -> Call {
        self.call(reqwest::Method::GET, format!("{}user", self.api), None)
    }

    fn list(&self) -> Call {
        let (api, base, n) = (&self.api, &self.base, self.number);
        let url = match self.host {
            CommentHost::GitHubPullRequest => {
                format!("{api}{base}/{n}/comments?direction=asc&per_page=100&sort=created")
            }
            CommentHost::GitLabMergeRequest => {
                format!("{api}{base}/{n}/notes?order_by=created_at&per_page=100&sort=asc")
            }
            CommentHost::GiteaPullRequest => format!("{api}{base}/{n}/comments?limit=100&page=1"),
        };
        self.call(reqwest::Method::GET, url, None)
    }

    fn update(&self, id: &str) -> Call {
        let (api, base, n) = (&self.api, &self.base, self.number);
        let (method, url) = match self.host {
            CommentHost::GitLabMergeRequest => {
                (reqwest::Method::PUT, format!("{api}{base}/{n}/notes/{id}"))
            }
            CommentHost::GitHubPullRequest | CommentHost::GiteaPullRequest => {
                (reqwest::Method::PATCH, format!("{api}{base}/comments/{id}"))
            }
        };
        self.call(method, url, Some(self.encoded_body()))
    }

    fn create(&self) -> Call {
        let (api, base, n) = (&self.api, &self.base, self.number);
        let url = match self.host {
            CommentHost::GitLabMergeRequest => format!("{api}{base}/{n}/notes"),
            CommentHost::GitHubPullRequest | CommentHost::GiteaPullRequest => {
                format!("{api}{base}/{n}/comments")
            }
        };
        self.call(reqwest::Method::POST, url, Some(self.encoded_body()))
    }

    fn call(&self, method: reqwest::Method, url: String, body: Option<Vec<u8>>) -> Call {
        Call { method, url, body }
    }

    /// `{"body": ...}` as each host's client encodes it: go-github's encoder
    /// (no HTML escaping, trailing newline), the others `json.Marshal`.
    fn encoded_body(&self) -> Vec<u8> {
        let body = Body { body: &self.body };
        match self.host {
            CommentHost::GitHubPullRequest => github_json(&body),
            CommentHost::GitLabMergeRequest | CommentHost::GiteaPullRequest => {
                herald_flux::gojson::to_vec(&body)
            }
        }
    }

    fn headers(&self, token: &str, with_body: bool) -> Vec<(String, String)> {
        match self.host {
            CommentHost::GitHubPullRequest => github_headers(token, with_body),
            CommentHost::GitLabMergeRequest => {
                let mut headers = vec![
                    ("PRIVATE-TOKEN".to_owned(), token.to_owned()),
                    ("Accept".to_owned(), "application/json".to_owned()),
                ];
                if with_body {
                    headers.push(("Content-Type".to_owned(), "application/json".to_owned()));
                }
                headers
            }
            CommentHost::GiteaPullRequest => vec![
                ("Authorization".to_owned(), format!("token {token}")),
                ("Content-Type".to_owned(), "application/json".to_owned()),
            ],
        }
    }

    /// The error texts of each step.
    fn what(&self, step: Step) -> &'static str {
        let gitlab = self.host == CommentHost::GitLabMergeRequest;
        match (step, gitlab) {
            (Step::Identity, _) => "could not look up the token's user",
            (Step::List, false) => "failed to list pull request comments",
            (Step::List, true) => "failed to list merge request notes",
            (Step::Update, false) => "failed to update pull request comment",
            (Step::Update, true) => "failed to update merge request note",
            (Step::Create, false) => "failed to create pull request comment",
            (Step::Create, true) => "failed to create merge request note",
        }
    }

    /// The user name in the identity answer.
    fn login<'v>(&self, user: &'v serde_json::Value) -> Option<&'v str> {
        let field = match self.host {
            CommentHost::GitLabMergeRequest => "username",
            CommentHost::GitHubPullRequest | CommentHost::GiteaPullRequest => "login",
        };
        user.get(field)?.as_str()
    }

    /// The id of the first listed comment by `login` holding the marker.
    fn existing(&self, listed: &serde_json::Value, login: &str) -> Option<String> {
        let author = match self.host {
            CommentHost::GitLabMergeRequest => "/author/username",
            CommentHost::GitHubPullRequest | CommentHost::GiteaPullRequest => "/user/login",
        };
        listed.as_array()?.iter().find_map(|comment| {
            let by = comment.pointer(author).and_then(|v| v.as_str()) == Some(login);
            let marked = comment
                .get("body")
                .and_then(|v| v.as_str())
                .is_some_and(|b| b.contains(&self.marker));
            if !(by && marked) {
                return None;
            }
            match comment.get("id")? {
                serde_json::Value::Number(id) => Some(id.to_string()),
                _ => None,
            }
        })
    }
}

#[derive(Debug, Clone, Copy)]
enum Step {
    Identity,
    List,
    Update,
    Create,
}

/// Runs the comment's exchange with its credentials.
async fn run(clients: &Clients, resolved: &Resolved, comment: &Comment) -> Outcome {
    comment
        .auth
        .authorized(clients, resolved, |token| {
            Box::pin(run_with(clients, resolved, comment, token))
        })
        .await
}

/// Looks up the user, lists, and edits or creates the comment.
async fn run_with(
    clients: &Clients,
    resolved: &Resolved,
    comment: &Comment,
    token: String,
) -> Outcome {
    let http = &clients.http;
    let token = token.as_str();
    let login = match comment.auth.app_login(clients, resolved).await {
        Ok(Some(login)) => login,
        Ok(None) => {
            let user = match exchange(
                http,
                resolved,
                comment,
                token,
                comment.identity(),
                Step::Identity,
            )
            .await
            {
                Ok(answer) => answer,
                Err(outcome) => return outcome,
            };
            let user: serde_json::Value = serde_json::from_slice(&user.body).unwrap_or_default();
            let Some(login) = comment.login(&user) else {
                return Outcome::Dead {
                    reason: format!("{}: the answer names no user", comment.what(Step::Identity)),
                    status: 0,
                    body: String::new(),
                };
            };
            login.to_owned()
        }
        Err(outcome) => return outcome,
    };
    let login = login.as_str();
    let listed = match exchange(http, resolved, comment, token, comment.list(), Step::List).await {
        Ok(answer) => answer,
        Err(outcome) => return outcome,
    };
    let listed: serde_json::Value = serde_json::from_slice(&listed.body).unwrap_or_default();
    let (call, step) = match comment.existing(&listed, login) {
        Some(id) => (comment.update(&id), Step::Update),
        None => (comment.create(), Step::Create),
    };
    match exchange(http, resolved, comment, token, call, step).await {
        Ok(answer) => Outcome::Delivered {
            status: answer.status,
        },
        Err(outcome) => outcome,
    }
}

/// One request: its 2xx answer, or the outcome of anything else.
async fn exchange(
    http: &HttpSender,
    resolved: &Resolved,
    comment: &Comment,
    token: &str,
    call: Call,
    step: Step,
) -> Result<Answer, Outcome> {
    let Ok(url) = reqwest::Url::parse(&call.url) else {
        return Err(super::invalid_url(resolved));
    };
    let headers = comment.headers(token, call.body.is_some());
    let answer = http
        .call(call.method, url, &headers, call.body, resolved)
        .await?;
    if (200..300).contains(&answer.status) {
        Ok(answer)
    } else {
        Err(classify(&answer, resolved, comment.what(step)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "0c9c2e41-d2f9-4f9b-9c41-bebc1984d67a";

    fn token_of(comment: &Comment) -> &str {
        match &comment.auth {
            GitHubAuth::Token(token) => token,
            GitHubAuth::App(_) => panic!("a token"),
        }
    }

    fn event() -> FluxEvent {
        FluxEvent::from_json(
            br#"{"involvedObject":{"kind":"Kustomization","namespace":"flux-system","name":"apps"},
                "severity":"error","message":"a <b> & c",
                "metadata":{"change_request":"7","revision":"main@sha1:abc"},
                "reportingController":"kustomize-controller"}"#,
        )
        .unwrap()
    }

    fn planned(provider_type: &str, address: &str) -> Comment {
        let host = CommentHost::from_provider_type(provider_type).unwrap();
        let resolved = Resolved {
            provider_type: provider_type.into(),
            address: address.into(),
            password: "pw-token".into(),
            provider_uid: UID.into(),
            ..Resolved::default()
        };
        comment(&resolved, &event(), host).unwrap()
    }

    fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn github_requests() {
        let c = planned(
            "githubpullrequestcomment",
            "https://github.com/org/podinfo.git",
        );
        assert_eq!(c.identity().url, "https://api.github.com/user");
        assert_eq!(
            c.list().url,
            "https://api.github.com/repos/org/podinfo/issues/7/comments?direction=asc&per_page=100&sort=created"
        );
        let update = c.update("42");
        assert_eq!(update.method, reqwest::Method::PATCH);
        assert_eq!(
            update.url,
            "https://api.github.com/repos/org/podinfo/issues/comments/42"
        );
        let create = c.create();
        assert_eq!(create.method, reqwest::Method::POST);
        assert_eq!(
            create.url,
            "https://api.github.com/repos/org/podinfo/issues/7/comments"
        );
        let body = String::from_utf8(create.body.unwrap()).unwrap();
        assert!(
            body.starts_with(&format!(
                "{{\"body\":\"<!-- flux-pr-comment-key:{UID}/Kustomization/flux-system/apps -->\\n\\n## Flux Status"
            )),
            "{body}"
        );
        assert!(
            body.contains("a <b> & c") && body.ends_with("}\n"),
            "{body}"
        );
        let headers = c.headers(token_of(&c), true);
        assert_eq!(header(&headers, "Authorization"), Some("Bearer pw-token"));
        assert_eq!(
            header(&headers, "Accept"),
            Some("application/vnd.github.v3+json")
        );
        assert_eq!(header(&headers, "X-GitHub-Api-Version"), Some("2022-11-28"));
    }

    #[test]
    fn gitlab_requests() {
        let c = planned(
            "gitlabmergerequestcomment",
            "https://gitlab.example.com/grp/sub.proj.git",
        );
        let api = "https://gitlab.example.com/api/v4/";
        assert_eq!(c.identity().url, format!("{api}user"));
        assert_eq!(
            c.list().url,
            format!(
                "{api}projects/grp%2Fsub%2Eproj/merge_requests/7/notes?order_by=created_at&per_page=100&sort=asc"
            )
        );
        let update = c.update("9");
        assert_eq!(update.method, reqwest::Method::PUT);
        assert_eq!(
            update.url,
            format!("{api}projects/grp%2Fsub%2Eproj/merge_requests/7/notes/9")
        );
        let create = c.create();
        assert_eq!(
            create.url,
            format!("{api}projects/grp%2Fsub%2Eproj/merge_requests/7/notes")
        );
        let body = String::from_utf8(create.body.unwrap()).unwrap();
        assert!(
            body.starts_with(&format!(
                "{{\"body\":\"\\u003c!-- flux-mr-comment-key:{UID}/Kustomization/flux-system/apps --\\u003e"
            )),
            "{body}"
        );
        assert!(!body.ends_with('\n'));
        let headers = c.headers(token_of(&c), true);
        assert_eq!(header(&headers, "PRIVATE-TOKEN"), Some("pw-token"));
        assert_eq!(header(&headers, "Authorization"), None);
        let listed = serde_json::json!([
            {"id": 1, "body": c.marker, "author": {"username": "someone"}},
            {"id": 2, "body": "no marker", "author": {"username": "flux"}},
            {"id": 3, "body": format!("x {} y", c.marker), "author": {"username": "flux"}},
            {"id": 4, "body": c.marker, "author": {"username": "flux"}},
        ]);
        assert_eq!(c.existing(&listed, "flux").as_deref(), Some("3"));
        assert_eq!(c.existing(&listed, "nobody"), None);
        assert_eq!(
            c.login(&serde_json::json!({"username": "flux"})),
            Some("flux")
        );
    }

    #[test]
    fn gitea_requests() {
        let c = planned(
            "giteapullrequestcomment",
            "http://gitea.local:3000/org/podinfo",
        );
        let api = "http://gitea.local:3000/api/v1/";
        assert_eq!(c.identity().url, format!("{api}user"));
        assert_eq!(
            c.list().url,
            format!("{api}repos/org/podinfo/issues/7/comments?limit=100&page=1")
        );
        let update = c.update("5");
        assert_eq!(update.method, reqwest::Method::PATCH);
        assert_eq!(
            update.url,
            format!("{api}repos/org/podinfo/issues/comments/5")
        );
        assert_eq!(
            c.create().url,
            format!("{api}repos/org/podinfo/issues/7/comments")
        );
        let headers = c.headers(token_of(&c), false);
        assert_eq!(header(&headers, "Authorization"), Some("token pw-token"));
        assert_eq!(header(&headers, "Content-Type"), Some("application/json"));
        let listed = serde_json::json!([{"id": 8, "body": c.marker, "user": {"login": "flux"}}]);
        assert_eq!(c.existing(&listed, "flux").as_deref(), Some("8"));
    }

    #[test]
    fn unusable_providers_and_events_say_why() {
        let host = CommentHost::GitHubPullRequest;
        let mut resolved = Resolved {
            provider_type: "githubpullrequestcomment".into(),
            address: "https://github.com/org/podinfo".into(),
            provider_uid: UID.into(),
            ..Resolved::default()
        };
        let err = comment(&resolved, &event(), host).err().unwrap();
        assert!(
            err.contains("github token or github app details must be specified"),
            "{err}"
        );
        let mut gitlab = Resolved {
            provider_type: "gitlabmergerequestcomment".into(),
            address: "https://gitlab.com/org/podinfo".into(),
            ..resolved.clone()
        };
        let err = comment(&gitlab, &event(), CommentHost::GitLabMergeRequest)
            .err()
            .unwrap();
        assert!(err.contains("token must be specified"), "{err}");
        gitlab.token = "t".into();
        assert!(comment(&gitlab, &event(), CommentHost::GitLabMergeRequest).is_ok());
        resolved.token = "t".into();
        let mut no_number = event();
        no_number.metadata.remove("change_request");
        assert_eq!(
            comment(&resolved, &no_number, host).err().unwrap(),
            "missing \"change_request\" metadata key"
        );
        resolved.address = "https://github.com/org/group/podinfo".into();
        assert_eq!(
            comment(&resolved, &event(), host).err().unwrap(),
            "invalid repository id: 'org/group/podinfo'"
        );
    }

    #[test]
    fn host_errors_are_classified() {
        let resolved = Resolved::default();
        let answer = |status: u16, headers: &[(&'static str, &'static str)], body: &str| {
            let mut map = reqwest::header::HeaderMap::new();
            for (k, v) in headers {
                map.insert(*k, v.parse().unwrap());
            }
            Answer {
                status,
                headers: map,
                body: bytes::Bytes::from(body.to_owned()),
            }
        };
        let dead = classify(
            &answer(401, &[], r#"{"message":"Bad credentials"}"#),
            &resolved,
            "w",
        );
        assert!(
            matches!(&dead, Outcome::Dead { reason, status: 401, .. } if reason == "w: destination answered 401: Bad credentials"),
            "{dead:?}"
        );
        let limited = classify(
            &answer(403, &[("x-ratelimit-remaining", "0")], "{}"),
            &resolved,
            "w",
        );
        assert!(
            matches!(
                limited,
                Outcome::Retry {
                    status: 403,
                    after: Some(_),
                    ..
                }
            ),
            "{limited:?}"
        );
        let gitlab = classify(
            &answer(404, &[], r#"{"message":"404 Project Not Found"}"#),
            &resolved,
            "w",
        );
        assert!(matches!(gitlab, Outcome::Dead { .. }));
        assert!(matches!(
            classify(&answer(502, &[], ""), &resolved, "w"),
            Outcome::Retry { .. }
        ));
    }
}
