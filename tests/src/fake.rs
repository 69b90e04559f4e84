//! Fake destinations on loopback: they record every request exactly as it
//! arrived, answer as the real API would, and can be told to fail (a status,
//! `Retry-After`, a delay past the client's timeout).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use tokio::time::Instant;

/// One request as the destination received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// When it arrived.
    pub at: Instant,
    /// The status the fake answered.
    pub answered: u16,
}

impl Recorded {
    /// The body as JSON.
    ///
    /// # Panics
    ///
    /// When the body is not JSON.
    #[must_use]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }

    /// A header's value as text.
    #[must_use]
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }
}

/// A scripted answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// Wait this long before answering (to exceed a client timeout).
    pub delay: Duration,
}

impl Reply {
    /// `status` with a short body.
    #[must_use]
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: format!("fake answer {status}"),
            delay: Duration::ZERO,
        }
    }

    /// Adds a header.
    #[must_use]
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Answers after `delay`.
    #[must_use]
    pub fn delayed(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// Which real API the fake stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Any webhook: 200 to every POST.
    Webhook,
    /// Slack: incoming webhooks (`/services/...`, answer `ok`) and the Web API
    /// (`/api/chat.postMessage`, bearer token and channel required, JSON answer).
    Slack,
    /// GitHub Enterprise's commit status API under `/api/v3/`: lists a
    /// commit's statuses newest first and creates them, for token `ghp-test`.
    GitHub,
}

#[derive(Default)]
struct Inner {
    recorded: Vec<Recorded>,
    script: VecDeque<Reply>,
    default: Option<Reply>,
    slack_token: String,
    /// Commit statuses by `owner/repo/sha`, oldest first.
    statuses: std::collections::HashMap<String, Vec<serde_json::Value>>,
}

/// A fake destination.
#[derive(Clone)]
pub struct FakeServer {
    addr: SocketAddr,
    kind: Kind,
    inner: Arc<Mutex<Inner>>,
}

// === impl FakeServer ===

impl FakeServer {
    /// A webhook receiver on a free loopback port.
    pub async fn webhook() -> Self {
        Self::start(Kind::Webhook).await
    }

    /// A fake Slack on a free loopback port; `chat.postMessage` accepts `xoxb-test`.
    pub async fn slack() -> Self {
        let server = Self::start(Kind::Slack).await;
        server.lock().slack_token = "xoxb-test".to_owned();
        server
    }

    async fn start(kind: Kind) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("local addr");
        let server = Self {
            addr,
            kind,
            inner: Arc::default(),
        };
        // As large as any request Herald sends (Flux events are up to 3 MiB).
        let app = Router::new()
            .fallback(answer)
            .layer(axum::extract::DefaultBodyLimit::max(16 << 20))
            .with_state(server.clone());
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

    /// Answers the next requests with `replies`, in order, then as before.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.lock().script.extend(replies);
    }

    /// Answers every request not scripted with `reply` (None: the API's own answer).
    pub fn set_default(&self, reply: Option<Reply>) {
        self.lock().default = reply;
    }

    /// A fake GitHub Enterprise on a free loopback port.
    pub async fn github() -> Self {
        Self::start(Kind::GitHub).await
    }

    /// The statuses of a commit, newest first, as GitHub lists them.
    #[must_use]
    pub fn statuses(&self, owner_repo: &str, sha: &str) -> Vec<serde_json::Value> {
        let mut list = self
            .lock()
            .statuses
            .get(&format!("{owner_repo}/{sha}"))
            .cloned()
            .unwrap_or_default();
        list.reverse();
        list
    }

    /// Every request so far.
    #[must_use]
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().recorded.clone()
    }

    /// Waits until at least `n` requests arrived and returns them all.
    ///
    /// # Panics
    ///
    /// When they do not arrive within the harness' patience.
    pub async fn wait_for(&self, n: usize) -> Vec<Recorded> {
        crate::eventually(&format!("{n} requests at {}", self.addr), || async {
            let requests = self.requests();
            (requests.len() >= n).then_some(requests)
        })
        .await
    }

    fn real_answer(&self, method: &Method, path: &str, headers: &HeaderMap, body: &[u8]) -> Reply {
        if method != Method::POST && self.kind != Kind::GitHub {
            return Reply::status(405);
        }
        let is_json = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
        match self.kind {
            Kind::GitHub => self.github_answer(method, path, headers, parsed),
            Kind::Webhook => Reply::status(if parsed.is_some() { 200 } else { 400 }),
            Kind::Slack if path == "/api/chat.postMessage" => {
                let token = self.lock().slack_token.clone();
                let authorized = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v == format!("Bearer {token}"));
                let channel = parsed
                    .as_ref()
                    .and_then(|p| p.get("channel"))
                    .and_then(|c| c.as_str())
                    .unwrap_or_default()
                    .to_owned();
                let error = if !authorized {
                    Some("not_authed")
                } else if !is_json || parsed.is_none() {
                    Some("invalid_json")
                } else if channel.is_empty() {
                    Some("channel_not_found")
                } else {
                    None
                };
                // The Web API answers 200 with ok=false for errors.
                let mut reply = Reply::status(200).header("content-type", "application/json");
                reply.body = match error {
                    None => r#"{"ok":true,"channel":"C1","ts":"1700000000.000100"}"#.to_owned(),
                    Some(error) => format!(r#"{{"ok":false,"error":"{error}"}}"#),
                };
                reply
            }
            Kind::Slack => {
                // Incoming webhooks: plain-text answers.
                if !path.starts_with("/services/") {
                    let mut reply = Reply::status(404);
                    reply.body = "no_service".to_owned();
                    reply
                } else if !is_json || parsed.is_none() {
                    let mut reply = Reply::status(400);
                    reply.body = "invalid_payload".to_owned();
                    reply
                } else {
                    let mut reply = Reply::status(200);
                    reply.body = "ok".to_owned();
                    reply
                }
            }
        }
    }
}

impl FakeServer {
    fn github_answer(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        body: Option<serde_json::Value>,
    ) -> Reply {
        let json = |status: u16, value: serde_json::Value| {
            let mut reply = Reply::status(status).header("content-type", "application/json");
            reply.body = value.to_string();
            reply
        };
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
        };
        if header("authorization") != "Bearer ghp-test" {
            return json(401, serde_json::json!({"message": "Bad credentials"}));
        }
        if header("accept") != "application/vnd.github.v3+json" {
            return json(
                415,
                serde_json::json!({"message": "Unsupported Media Type"}),
            );
        }
        let parts: Vec<&str> = path.trim_start_matches("/api/v3/").split('/').collect();
        match (method.as_str(), parts.as_slice()) {
            ("GET", ["repos", owner, repo, "commits", sha, "statuses"]) => {
                let key = format!("{owner}/{repo}/{sha}");
                let mut list = self.lock().statuses.get(&key).cloned().unwrap_or_default();
                list.reverse();
                json(200, serde_json::Value::Array(list))
            }
            ("POST", ["repos", owner, repo, "statuses", sha]) => {
                let Some(body) = body else {
                    return json(400, serde_json::json!({"message": "Problems parsing JSON"}));
                };
                let state = body["state"].as_str().unwrap_or_default();
                if !["error", "failure", "pending", "success"].contains(&state) {
                    return json(422, serde_json::json!({"message": "Validation Failed"}));
                }
                let key = format!("{owner}/{repo}/{sha}");
                let mut inner = self.lock();
                let list = inner.statuses.entry(key).or_default();
                let created = serde_json::json!({
                    "id": list.len() + 1,
                    "state": state,
                    "description": body["description"],
                    "context": body["context"],
                    "target_url": null,
                });
                list.push(created.clone());
                json(201, created)
            }
            _ => json(404, serde_json::json!({"message": "Not Found"})),
        }
    }
}

async fn answer(
    State(server): State<FakeServer>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let at = Instant::now();
    let reply = {
        let mut inner = server.lock();
        inner.script.pop_front().or_else(|| inner.default.clone())
    }
    .unwrap_or_else(|| server.real_answer(&method, uri.path(), &headers, &body));
    server.lock().recorded.push(Recorded {
        method,
        path: uri.path().to_owned(),
        headers,
        body,
        at,
        answered: reply.status,
    });
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut response = (
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        reply.body,
    )
        .into_response();
    for (name, value) in reply.headers {
        if let (Ok(name), Ok(value)) = (
            axum::http::HeaderName::from_bytes(name.as_bytes()),
            axum::http::HeaderValue::from_str(&value),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}
