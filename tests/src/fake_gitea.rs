//! A fake Gitea (`/api/v1/`) for commit statuses: `Authorization: token`
//! [`TOKEN`] is accepted for the repositories it was started with; statuses
//! are kept per repository and commit, listed newest first a page at a time
//! (`?limit=&page=`, the state under `status`) and created as Gitea does.
//! Every request is recorded with its raw path and query.

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

/// The token the fake accepts.
pub const TOKEN: &str = "gitea-test";

/// The states Gitea accepts.
const STATES: [&str; 5] = ["pending", "success", "error", "failure", "warning"];

#[derive(Default)]
struct Inner {
    requests: Vec<Request>,
    /// Failures to answer before the API's own answers, in order.
    script: VecDeque<Reply>,
    repositories: BTreeSet<String>,
    /// Statuses by `{owner}/{repo}/{sha}`, oldest first.
    statuses: BTreeMap<String, Vec<Value>>,
    next_id: u64,
}

/// A fake Gitea for commit statuses.
#[derive(Clone)]
pub struct FakeGitea {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

// === impl FakeGitea ===

impl FakeGitea {
    /// Starts the fake on a free loopback port with `repositories`
    /// (`owner/repo`).
    ///
    /// # Panics
    ///
    /// When no loopback port can be bound.
    pub async fn start(repositories: &[&str]) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let server = Self {
            addr: listener.local_addr().expect("local addr"),
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

    /// Answers the next requests with `replies`, in order, then as Gitea.
    pub fn fail_next(&self, replies: impl IntoIterator<Item = Reply>) {
        self.lock().script.extend(replies);
    }

    /// Every request so far.
    #[must_use]
    pub fn requests(&self) -> Vec<Request> {
        self.lock().requests.clone()
    }

    /// The statuses of `owner/repo` at `sha`, newest first.
    #[must_use]
    pub fn statuses(&self, owner_repo: &str, sha: &str) -> Vec<Value> {
        let mut list = self
            .lock()
            .statuses
            .get(&format!("{owner_repo}/{sha}"))
            .cloned()
            .unwrap_or_default();
        list.reverse();
        list
    }

    /// Gitea's API error shape.
    fn error(&self, status: u16, message: &str) -> (u16, Value) {
        (
            status,
            json!({"message": message, "url": self.url("/api/swagger")}),
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
        let authorization = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if authorization != format!("token {TOKEN}") {
            return self.error(401, "token is required");
        }
        let not_found = || self.error(404, "The target couldn't be found.");
        let Some(rest) = path.strip_prefix("/api/v1/") else {
            return not_found();
        };
        let parts: Vec<String> = rest.split('/').map(percent_decode).collect();
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        if let ("GET", ["version"]) = (method.as_str(), parts.as_slice()) {
            return (200, json!({"version": "1.22.0"}));
        }
        let ["repos", owner, repo, rest @ ..] = parts.as_slice() else {
            return not_found();
        };
        let owner_repo = format!("{owner}/{repo}");
        if !self.lock().repositories.contains(&owner_repo) {
            return not_found();
        }
        match (method.as_str(), rest) {
            ("GET", ["commits", sha, "statuses"]) => {
                let number = |key: &str, default: usize| {
                    query_number(query, key).map_or(default, |n| n.max(1))
                };
                let (limit, page) = (number("limit", 30).min(50), number("page", 1));
                let list: Vec<Value> = self
                    .statuses(&owner_repo, sha)
                    .into_iter()
                    .skip((page - 1) * limit)
                    .take(limit)
                    .collect();
                (200, Value::Array(list))
            }
            ("POST", ["statuses", sha]) => {
                let Ok(parsed) = serde_json::from_slice::<Value>(body) else {
                    return self.error(422, "invalid JSON body");
                };
                let state = parsed["state"].as_str().unwrap_or("");
                if !STATES.contains(&state) {
                    return self.error(422, &format!("invalid commit status state {state:?}"));
                }
                let mut inner = self.lock();
                inner.next_id += 1;
                let created = json!({
                    "id": inner.next_id,
                    "status": state,
                    "target_url": parsed["target_url"].as_str().unwrap_or(""),
                    "description": parsed["description"].as_str().unwrap_or(""),
                    "url": format!("{}/api/v1/repos/{owner_repo}/statuses/{sha}", self.url("")),
                    "context": parsed["context"].as_str().unwrap_or(""),
                    "creator": {"id": 1, "login": "flux-bot"},
                    "created_at": "2024-01-01T10:00:00Z",
                    "updated_at": "2024-01-01T10:00:00Z",
                });
                inner
                    .statuses
                    .entry(format!("{owner_repo}/{sha}"))
                    .or_default()
                    .push(created.clone());
                (201, created)
            }
            _ => not_found(),
        }
    }
}

/// The number `key` holds in a query string.
fn query_number(query: &str, key: &str) -> Option<usize> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then(|| v.parse().ok()).flatten()
    })
}

async fn answer(
    State(server): State<FakeGitea>,
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
