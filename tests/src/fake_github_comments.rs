//! A fake GitHub Enterprise (`/api/v3/`) for pull request comments and
//! repository dispatches: token `ghp-test` belongs to user `flux-bot`;
//! comments are kept per issue, oldest first, and listed, created and edited
//! as GitHub does; dispatches are recorded and answered 204. Every request is
//! recorded with its query.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// The token the fake accepts.
pub const TOKEN: &str = "ghp-test";
/// The user that token belongs to.
pub const LOGIN: &str = "flux-bot";

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    pub path: String,
    /// The query string, without `?`.
    pub query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The status the fake answered.
    pub answered: u16,
}

impl Request {
    /// A header's value as text.
    #[must_use]
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    /// The body as text.
    #[must_use]
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

#[derive(Default)]
struct Inner {
    requests: Vec<Request>,
    /// Comments by `owner/repo/number`, oldest first.
    comments: BTreeMap<String, Vec<Value>>,
    next_id: u64,
}

/// A fake GitHub for comments and dispatches.
#[derive(Clone)]
pub struct FakeGitHubComments {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

// === impl FakeGitHubComments ===

impl FakeGitHubComments {
    /// Starts the fake on a free loopback port.
    ///
    /// # Panics
    ///
    /// When no loopback port can be bound.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let server = Self {
            addr: listener.local_addr().expect("local addr"),
            inner: Arc::new(Mutex::new(Inner {
                next_id: 1000,
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

    /// Every request so far.
    #[must_use]
    pub fn requests(&self) -> Vec<Request> {
        self.lock().requests.clone()
    }

    /// The comments of `owner/repo` issue `number`, oldest first.
    #[must_use]
    pub fn comments(&self, owner_repo: &str, number: u64) -> Vec<Value> {
        self.lock()
            .comments
            .get(&format!("{owner_repo}/{number}"))
            .cloned()
            .unwrap_or_default()
    }

    /// Adds a comment by `login`, as if written by someone else.
    pub fn seed(&self, owner_repo: &str, number: u64, login: &str, body: &str) {
        let mut inner = self.lock();
        inner.next_id += 1;
        let comment = json!({"id": inner.next_id, "body": body, "user": {"login": login}});
        inner
            .comments
            .entry(format!("{owner_repo}/{number}"))
            .or_default()
            .push(comment);
    }

    fn reply(&self, method: &Method, path: &str, headers: &HeaderMap, body: &[u8]) -> (u16, Value) {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
        };
        if header("authorization") != format!("Bearer {TOKEN}") {
            return (401, json!({"message": "Bad credentials"}));
        }
        if header("accept") != "application/vnd.github.v3+json" {
            return (415, json!({"message": "Unsupported Media Type"}));
        }
        let parsed: Option<Value> = serde_json::from_slice(body).ok();
        let parts: Vec<&str> = path.trim_start_matches("/api/v3/").split('/').collect();
        let text_body = || {
            parsed
                .as_ref()
                .and_then(|b| b.get("body"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        match (method.as_str(), parts.as_slice()) {
            ("GET", ["user"]) => (200, json!({"login": LOGIN, "id": 1})),
            ("GET", ["repos", owner, repo, "issues", number, "comments"]) => {
                let list = self.comments(&format!("{owner}/{repo}"), number.parse().unwrap_or(0));
                (200, Value::Array(list.into_iter().take(100).collect()))
            }
            ("POST", ["repos", owner, repo, "issues", number, "comments"]) => {
                let Some(text) = text_body() else {
                    return (422, json!({"message": "Validation Failed"}));
                };
                let mut inner = self.lock();
                inner.next_id += 1;
                let comment = json!({"id": inner.next_id, "body": text, "user": {"login": LOGIN}});
                inner
                    .comments
                    .entry(format!("{owner}/{repo}/{number}"))
                    .or_default()
                    .push(comment.clone());
                (201, comment)
            }
            ("PATCH", ["repos", owner, repo, "issues", "comments", id]) => {
                let Some(text) = text_body() else {
                    return (422, json!({"message": "Validation Failed"}));
                };
                let prefix = format!("{owner}/{repo}/");
                let mut inner = self.lock();
                let found = inner
                    .comments
                    .iter_mut()
                    .filter(|(key, _)| key.starts_with(&prefix))
                    .flat_map(|(_, list)| list.iter_mut())
                    .find(|c| c["id"].as_u64() == id.parse().ok());
                match found {
                    Some(comment) if comment["user"]["login"] == LOGIN => {
                        comment["body"] = Value::String(text);
                        (200, comment.clone())
                    }
                    Some(_) => (
                        403,
                        json!({"message": "Must have admin rights to Repository."}),
                    ),
                    None => (404, json!({"message": "Not Found"})),
                }
            }
            ("POST", ["repos", _, _, "dispatches"]) => match parsed {
                Some(p) if p["event_type"].as_str().is_some_and(|t| !t.is_empty()) => {
                    (204, Value::Null)
                }
                _ => (422, json!({"message": "Invalid request."})),
            },
            _ => (404, json!({"message": "Not Found"})),
        }
    }
}

async fn answer(
    State(server): State<FakeGitHubComments>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (status, value) = server.reply(&method, uri.path(), &headers, &body);
    server.lock().requests.push(Request {
        method,
        path: uri.path().to_owned(),
        query: uri.query().unwrap_or_default().to_owned(),
        headers,
        body,
        answered: status,
    });
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if value.is_null() {
        return status.into_response();
    }
    (
        status,
        [("content-type", "application/json")],
        value.to_string(),
    )
        .into_response()
}
