//! A fake Bitbucket Server / Data Center for build statuses, served under a
//! context path: `Authorization: Bearer` [`TOKEN`] or `Basic` of
//! [`USERNAME`]:[`PASSWORD`] is accepted for the repositories it was started
//! with; a build status is kept per repository, commit and key (a post with
//! a known key replaces it), read back with `GET …/builds?key=` and posted
//! with `POST …/builds` (204), as Bitbucket Server does. Posts need
//! `x-atlassian-token: no-check`. Every request is recorded with its raw
//! path and query.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use serde_json::{Value, json};

use crate::fake::Reply;
pub use crate::fake_github_comments::Request;
use crate::fake_gitlab::{percent_decode, respond};

/// The API token the fake accepts (as a bearer token).
pub const TOKEN: &str = "bbs-token";
/// The user whose password the fake accepts.
pub const USERNAME: &str = "admin";
/// [`USERNAME`]'s password.
pub const PASSWORD: &str = "bbs-password";
/// `Basic base64("admin:bbs-password")`.
pub const BASIC: &str = "Basic YWRtaW46YmJzLXBhc3N3b3Jk";

/// The states Bitbucket Server accepts.
const STATES: [&str; 3] = ["SUCCESSFUL", "FAILED", "INPROGRESS"];

#[derive(Default)]
struct Inner {
    requests: Vec<Request>,
    /// Failures to answer before the API's own answers, in order.
    script: VecDeque<Reply>,
    /// `PROJ/slug`.
    repositories: BTreeSet<String>,
    /// Build statuses by `{PROJ}/{slug}/{sha}` then key.
    statuses: BTreeMap<String, BTreeMap<String, Value>>,
    clock: u64,
}

/// A fake Bitbucket Server for build statuses.
#[derive(Clone)]
pub struct FakeBitbucketServer {
    addr: SocketAddr,
    context: String,
    inner: Arc<Mutex<Inner>>,
}

// === impl FakeBitbucketServer ===

impl FakeBitbucketServer {
    /// Starts the fake on a free loopback port, serving under `context`
    /// (e.g. `/bitbucket`, or empty), with `repositories` (`PROJ/slug`).
    ///
    /// # Panics
    ///
    /// When no loopback port can be bound.
    pub async fn start(context: &str, repositories: &[&str]) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let server = Self {
            addr: listener.local_addr().expect("local addr"),
            context: context.to_owned(),
            inner: Arc::new(Mutex::new(Inner {
                repositories: repositories.iter().map(|r| (*r).to_owned()).collect(),
                ..Inner::default()
            })),
        };
        let app = Router::new().fallback(answer).with_state(server.clone());
        tokio::spawn(async move {
            axum::serve(listener, app).await.expect("fake server runs");
        });
        server
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `http://127.0.0.1:<port><path>`.
    #[must_use]
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Answers the next requests with `replies`, in order, then as
    /// Bitbucket Server.
    pub fn fail_next(&self, replies: impl IntoIterator<Item = Reply>) {
        self.lock().script.extend(replies);
    }

    /// Every request so far.
    #[must_use]
    pub fn requests(&self) -> Vec<Request> {
        self.lock().requests.clone()
    }

    /// The build status of `PROJ/slug` at `sha` under `key`.
    #[must_use]
    pub fn status(&self, repository: &str, sha: &str, key: &str) -> Option<Value> {
        self.lock()
            .statuses
            .get(&format!("{repository}/{sha}"))
            .and_then(|by_key| by_key.get(key))
            .cloned()
    }

    /// Bitbucket Server's error shape.
    fn error(status: u16, message: &str, exception: &str) -> (u16, Value) {
        (
            status,
            json!({"errors": [{"context": null, "message": message, "exceptionName": exception}]}),
        )
    }

    fn reply(
        &self,
        method: &Method,
        path: &str,
        query: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> (u16, Value) {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
        };
        let authorization = header("authorization");
        if authorization != format!("Bearer {TOKEN}") && authorization != BASIC {
            return Self::error(
                401,
                "Authentication failed. Please check your credentials and try again.",
                "com.atlassian.bitbucket.auth.IncorrectPasswordAuthenticationException",
            );
        }
        let not_found = |what: &str| {
            Self::error(
                404,
                &format!("{what} does not exist."),
                "com.atlassian.bitbucket.NoSuchEntityException",
            )
        };
        let Some(rest) = path
            .strip_prefix(self.context.as_str())
            .and_then(|rest| rest.strip_prefix("/rest/api/latest/"))
        else {
            return not_found("The resource");
        };
        let parts: Vec<String> = rest.split('/').map(percent_decode).collect();
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        let ["projects", project, "repos", slug, "commits", sha, "builds"] = parts.as_slice()
        else {
            return not_found("The resource");
        };
        let repository = format!("{project}/{slug}");
        if !self.lock().repositories.contains(&repository) {
            return not_found(&format!("Repository {slug} of project {project}"));
        }
        let commit = format!("{repository}/{sha}");
        match method.as_str() {
            "GET" => {
                let key = query
                    .split('&')
                    .find_map(|pair| pair.strip_prefix("key="))
                    .map(percent_decode)
                    .unwrap_or_default();
                match self.status(&repository, sha, &key) {
                    Some(status) => (200, status),
                    None => not_found(&format!("A build status with key {key}")),
                }
            }
            "POST" => {
                if header("x-atlassian-token") != "no-check" {
                    return Self::error(403, "XSRF check failed", "");
                }
                let Ok(parsed) = serde_json::from_slice::<Value>(body) else {
                    return Self::error(400, "Unexpected JSON body", "");
                };
                let field = |name: &str| parsed[name].as_str().unwrap_or("").to_owned();
                let (key, state, url) = (field("key"), field("state"), field("url"));
                if key.is_empty() || url.is_empty() || !STATES.contains(&state.as_str()) {
                    return Self::error(
                        400,
                        "The build status must have a key, a url and a valid state.",
                        "com.atlassian.bitbucket.validation.ArgumentValidationException",
                    );
                }
                let mut inner = self.lock();
                inner.clock += 1;
                let stored = json!({
                    "key": key,
                    "state": state,
                    "name": field("name"),
                    "url": url,
                    "description": field("description"),
                    "dateAdded": 1_704_103_200_000_u64 + inner.clock,
                });
                inner
                    .statuses
                    .entry(commit)
                    .or_default()
                    .insert(key, stored);
                (204, Value::Null)
            }
            _ => Self::error(405, "Method not allowed", ""),
        }
    }
}

async fn answer(
    State(server): State<FakeBitbucketServer>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let scripted = server.lock().script.pop_front();
    let path = uri.path().to_owned();
    let query = uri.query().unwrap_or_default().to_owned();
    respond(
        scripted,
        || server.reply(&method, &path, &query, &headers, &body),
        |answered| {
            server.lock().requests.push(Request {
                method: method.clone(),
                path: path.clone(),
                query: query.clone(),
                headers: headers.clone(),
                body: body.clone(),
                answered,
            });
        },
    )
    .await
}
