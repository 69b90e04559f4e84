//! A fake GitLab (`/api/v4/`) for commit statuses: token [`TOKEN`] in
//! `PRIVATE-TOKEN` is accepted for the projects it was started with;
//! statuses are kept per project and commit, listed newest first (the
//! latest per name, filtered by `?name=`) and created as GitLab does,
//! including its refusal to move a status to the state it already has.
//! Every request is recorded with its raw (still escaped) path and query.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::fake::Reply;
pub use crate::fake_github_comments::Request;

/// The token the fake accepts.
pub const TOKEN: &str = "glpat-test";

/// The states GitLab accepts.
const STATES: [&str; 6] = [
    "pending", "running", "success", "failed", "canceled", "skipped",
];

#[derive(Default)]
struct Inner {
    requests: Vec<Request>,
    /// Failures to answer before the API's own answers, in order.
    script: VecDeque<Reply>,
    projects: BTreeSet<String>,
    /// Statuses by `{project path}/{sha}`, oldest first.
    statuses: BTreeMap<String, Vec<Value>>,
    next_id: u64,
}

/// A fake GitLab for commit statuses.
#[derive(Clone)]
pub struct FakeGitLab {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

// === impl FakeGitLab ===

impl FakeGitLab {
    /// Starts the fake on a free loopback port with `projects`
    /// (`group/project` or `group/sub/project`).
    ///
    /// # Panics
    ///
    /// When no loopback port can be bound.
    pub async fn start(projects: &[&str]) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let server = Self {
            addr: listener.local_addr().expect("local addr"),
            inner: Arc::new(Mutex::new(Inner {
                projects: projects.iter().map(|p| (*p).to_owned()).collect(),
                next_id: 100,
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

    /// Answers the next requests with `replies`, in order, then as GitLab.
    pub fn fail_next(&self, replies: impl IntoIterator<Item = Reply>) {
        self.lock().script.extend(replies);
    }

    /// Every request so far.
    #[must_use]
    pub fn requests(&self) -> Vec<Request> {
        self.lock().requests.clone()
    }

    /// The statuses of `project` at `sha`, newest first.
    #[must_use]
    pub fn statuses(&self, project: &str, sha: &str) -> Vec<Value> {
        let mut list = self
            .lock()
            .statuses
            .get(&format!("{project}/{sha}"))
            .cloned()
            .unwrap_or_default();
        list.reverse();
        list
    }

    fn reply(
        &self,
        method: &Method,
        path: &str,
        query: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> (u16, Value) {
        let token = headers
            .get("private-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if token != TOKEN {
            return (401, json!({"message": "401 Unauthorized"}));
        }
        let not_found = || (404, json!({"message": "404 Not Found"}));
        let Some(rest) = path.strip_prefix("/api/v4/projects/") else {
            return not_found();
        };
        let parts: Vec<&str> = rest.split('/').collect();
        let Some(project) = parts.first().map(|p| percent_decode(p)) else {
            return not_found();
        };
        if !self.lock().projects.contains(&project) {
            return (404, json!({"message": "404 Project Not Found"}));
        }
        match (method.as_str(), &parts[1..]) {
            ("GET", ["repository", "commits", sha, "statuses"]) => {
                let name = query_value(query, "name");
                let mut seen = BTreeSet::new();
                // The latest status per name, newest first.
                let list: Vec<Value> = self
                    .statuses(&project, sha)
                    .into_iter()
                    .filter(|s| name.as_deref().is_none_or(|n| s["name"] == n))
                    .filter(|s| seen.insert(s["name"].as_str().unwrap_or("").to_owned()))
                    .collect();
                (200, Value::Array(list))
            }
            ("POST", ["statuses", sha]) => {
                let parsed: Value = match serde_json::from_slice(body) {
                    Ok(parsed) => parsed,
                    Err(_) => return (400, json!({"error": "state is missing"})),
                };
                let state = parsed["state"].as_str().unwrap_or("");
                if !STATES.contains(&state) {
                    return (400, json!({"error": "state does not have a valid value"}));
                }
                let name = parsed["name"].as_str().unwrap_or("default").to_owned();
                let current = self
                    .statuses(&project, sha)
                    .into_iter()
                    .find(|s| s["name"] == name.as_str());
                if let Some(current) = current
                    && current["status"] == state
                {
                    return (
                        400,
                        json!({"message": format!("Cannot transition status via :{state} from :{state} (Reason(s): Status cannot transition via \"{state}\")")}),
                    );
                }
                let mut inner = self.lock();
                inner.next_id += 1;
                let created = json!({
                    "id": inner.next_id,
                    "sha": sha,
                    "ref": "main",
                    "status": state,
                    "name": name,
                    "target_url": parsed.get("target_url").cloned().unwrap_or(Value::Null),
                    "description": parsed.get("description").cloned().unwrap_or(Value::Null),
                    "created_at": "2024-01-01T10:00:00.000Z",
                    "started_at": null,
                    "finished_at": "2024-01-01T10:00:00.000Z",
                    "allow_failure": false,
                    "coverage": null,
                    "pipeline_id": 1,
                    "author": {"id": 1, "username": "flux-bot", "name": "Flux"},
                });
                inner
                    .statuses
                    .entry(format!("{project}/{sha}"))
                    .or_default()
                    .push(created.clone());
                (201, created)
            }
            _ => not_found(),
        }
    }
}

/// The percent-decoded value of `key` in a query string (`+` is a space).
fn query_value(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == key).then(|| percent_decode(&v.replace('+', " ")))
    })
}

/// `%XX` sequences decoded.
pub(crate) fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Answers a scripted failure or the API's own answer, and records it.
pub(crate) async fn respond(
    scripted: Option<Reply>,
    real: impl FnOnce() -> (u16, Value),
    record: impl FnOnce(u16),
) -> Response {
    let (status, headers, body, delay) = match scripted {
        Some(reply) => (reply.status, reply.headers, reply.body, reply.delay),
        None => {
            let (status, value) = real();
            let headers = vec![("content-type".to_owned(), "application/json".to_owned())];
            (
                status,
                headers,
                value.to_string(),
                std::time::Duration::ZERO,
            )
        }
    };
    record(status);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut response = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        body,
    )
        .into_response();
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (
            axum::http::HeaderName::from_bytes(name.as_bytes()),
            axum::http::HeaderValue::from_str(&value),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

async fn answer(
    State(server): State<FakeGitLab>,
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
