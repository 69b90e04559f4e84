//! A fake Bitbucket Cloud API (`/2.0/`) for build statuses:
//! `Authorization: Basic` of [`USERNAME`]:[`APP_PASSWORD`] is accepted for
//! the repositories it was started with; a build status is kept per
//! repository, commit and key (a post with a known key updates it), read
//! with `GET …/statuses/build/{key}` and posted with `POST …/statuses/build`
//! (201 with the status), as Bitbucket Cloud does. Every request is
//! recorded with its raw path and query.

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

/// The Bitbucket user of the app password.
pub const USERNAME: &str = "flux-bot";
/// The app password the fake accepts.
pub const APP_PASSWORD: &str = "app-password";
/// `Basic base64("flux-bot:app-password")`.
pub const BASIC: &str = "Basic Zmx1eC1ib3Q6YXBwLXBhc3N3b3Jk";

/// The states Bitbucket Cloud accepts.
const STATES: [&str; 4] = ["SUCCESSFUL", "FAILED", "INPROGRESS", "STOPPED"];

#[derive(Default)]
struct Inner {
    requests: Vec<Request>,
    /// Failures to answer before the API's own answers, in order.
    script: VecDeque<Reply>,
    /// `workspace/repo`.
    repositories: BTreeSet<String>,
    /// Build statuses by `{workspace}/{repo}/{sha}` then key.
    statuses: BTreeMap<String, BTreeMap<String, Value>>,
    clock: u64,
}

/// A fake Bitbucket Cloud for build statuses.
#[derive(Clone)]
pub struct FakeBitbucket {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

// === impl FakeBitbucket ===

impl FakeBitbucket {
    /// Starts the fake on a free loopback port with `repositories`
    /// (`workspace/repo`).
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

    /// Answers the next requests with `replies`, in order, then as
    /// Bitbucket Cloud.
    pub fn fail_next(&self, replies: impl IntoIterator<Item = Reply>) {
        self.lock().script.extend(replies);
    }

    /// Every request so far.
    #[must_use]
    pub fn requests(&self) -> Vec<Request> {
        self.lock().requests.clone()
    }

    /// The build status of `workspace/repo` at `sha` under `key`.
    #[must_use]
    pub fn status(&self, repository: &str, sha: &str, key: &str) -> Option<Value> {
        self.lock()
            .statuses
            .get(&format!("{repository}/{sha}"))
            .and_then(|by_key| by_key.get(key))
            .cloned()
    }

    /// Bitbucket Cloud's error shape.
    fn error(status: u16, message: &str) -> (u16, Value) {
        (
            status,
            json!({"type": "error", "error": {"message": message}}),
        )
    }

    fn reply(&self, method: &Method, path: &str, headers: &HeaderMap, body: &[u8]) -> (u16, Value) {
        let authorization = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if authorization != BASIC {
            return Self::error(401, "Invalid credentials");
        }
        let not_found = || Self::error(404, "Resource not found");
        let Some(rest) = path.strip_prefix("/2.0/") else {
            return not_found();
        };
        let parts: Vec<String> = rest.split('/').map(percent_decode).collect();
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        let [
            "repositories",
            workspace,
            repo,
            "commit",
            sha,
            "statuses",
            "build",
            key @ ..,
        ] = parts.as_slice()
        else {
            return not_found();
        };
        let repository = format!("{workspace}/{repo}");
        if !self.lock().repositories.contains(&repository) {
            return not_found();
        }
        match (method.as_str(), key) {
            ("GET", [key]) => self
                .status(&repository, sha, key)
                .map_or_else(not_found, |status| (200, status)),
            ("POST", []) => {
                let Ok(parsed) = serde_json::from_slice::<Value>(body) else {
                    return Self::error(400, "Bad request");
                };
                let field = |name: &str| parsed[name].as_str().unwrap_or("").to_owned();
                let (key, state, url) = (field("key"), field("state"), field("url"));
                if key.is_empty() || url.is_empty() || !STATES.contains(&state.as_str()) {
                    return Self::error(400, "key, url and a valid state are required");
                }
                let mut inner = self.lock();
                inner.clock += 1;
                let stored = json!({
                    "type": "build",
                    "key": key,
                    "state": state,
                    "name": field("name"),
                    "description": field("description"),
                    "url": url,
                    "refname": null,
                    "created_on": format!("2024-01-01T10:00:{:02}.000000+00:00", inner.clock % 60),
                    "updated_on": format!("2024-01-01T10:00:{:02}.000000+00:00", inner.clock % 60),
                    "links": {
                        "self": {"href": format!("{}/2.0/repositories/{repository}/commit/{sha}/statuses/build/{key}", self.url(""))},
                        "commit": {"href": format!("{}/2.0/repositories/{repository}/commit/{sha}", self.url(""))},
                    },
                });
                inner
                    .statuses
                    .entry(format!("{repository}/{sha}"))
                    .or_default()
                    .insert(key, stored.clone());
                (201, stored)
            }
            _ => not_found(),
        }
    }
}

async fn answer(
    State(server): State<FakeBitbucket>,
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
        || server.reply(&method, &path, &headers, &body),
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
