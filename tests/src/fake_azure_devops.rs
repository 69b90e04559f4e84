//! A fake Azure DevOps Services for commit statuses:
//! `Authorization: Basic base64(":" + PAT)` of [`PAT`] is accepted for the
//! repositories it was started with (`{org}/{project}/{repo}`); statuses are
//! kept per repository and commit, listed newest first as
//! `{"count":n,"value":[…]}` and created (201 with the status) under
//! `/{org}/{project}/_apis/git/repositories/{repo}/commits/{sha}/statuses`,
//! which needs `api-version`. Every request is recorded with its raw path
//! and query.

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

/// The personal access token the fake accepts.
pub const PAT: &str = "azdo-pat";
/// `Basic base64(":azdo-pat")`.
pub const BASIC: &str = "Basic OmF6ZG8tcGF0";

/// The states Azure DevOps accepts.
const STATES: [&str; 6] = [
    "notSet",
    "pending",
    "succeeded",
    "failed",
    "error",
    "notApplicable",
];

#[derive(Default)]
struct Inner {
    requests: Vec<Request>,
    /// Failures to answer before the API's own answers, in order.
    script: VecDeque<Reply>,
    /// `{org}/{project}/{repo}`.
    repositories: BTreeSet<String>,
    /// Statuses by `{org}/{project}/{repo}/{sha}`, oldest first.
    statuses: BTreeMap<String, Vec<Value>>,
    next_id: u64,
}

/// A fake Azure DevOps for commit statuses.
#[derive(Clone)]
pub struct FakeAzureDevOps {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

// === impl FakeAzureDevOps ===

impl FakeAzureDevOps {
    /// Starts the fake on a free loopback port with `repositories`
    /// (`{org}/{project}/{repo}`).
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

    /// Answers the next requests with `replies`, in order, then as Azure
    /// DevOps.
    pub fn fail_next(&self, replies: impl IntoIterator<Item = Reply>) {
        self.lock().script.extend(replies);
    }

    /// Every request so far.
    #[must_use]
    pub fn requests(&self) -> Vec<Request> {
        self.lock().requests.clone()
    }

    /// The statuses of `{org}/{project}/{repo}` at `sha`, newest first.
    #[must_use]
    pub fn statuses(&self, repository: &str, sha: &str) -> Vec<Value> {
        let mut list = self
            .lock()
            .statuses
            .get(&format!("{repository}/{sha}"))
            .cloned()
            .unwrap_or_default();
        list.reverse();
        list
    }

    /// Azure DevOps' error shape.
    fn error(status: u16, message: &str, type_key: &str) -> (u16, Value) {
        (
            status,
            json!({
                "$id": "1",
                "innerException": null,
                "message": message,
                "typeName": format!("Microsoft.TeamFoundation.Framework.Server.{type_key}, Microsoft.TeamFoundation.Framework.Server"),
                "typeKey": type_key,
                "errorCode": 0,
                "eventId": 3000,
            }),
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
        if authorization != BASIC {
            return Self::error(
                401,
                "TF400813: The user '' is not authorized to access this resource.",
                "UnauthorizedRequestException",
            );
        }
        let not_found = || {
            Self::error(
                404,
                "TF401019: The Git repository with name or identifier does not exist or you do not have permissions for the operation you are attempting.",
                "GitRepositoryNotFoundException",
            )
        };
        let parts: Vec<String> = path
            .trim_start_matches('/')
            .split('/')
            .map(percent_decode)
            .collect();
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        let [
            org,
            project,
            "_apis",
            "git",
            "repositories",
            repo,
            "commits",
            sha,
            "statuses",
        ] = parts.as_slice()
        else {
            return not_found();
        };
        if !query
            .split('&')
            .any(|pair| pair.starts_with("api-version="))
        {
            return Self::error(
                400,
                "No api-version was supplied for the \"GET\" request. The version must be supplied either as part of the Accept header (e.g. \"application/json; api-version=1.0\") or as a query parameter (e.g. \"?api-version=1.0\").",
                "VssVersionNotSpecifiedException",
            );
        }
        let repository = format!("{org}/{project}/{repo}");
        if !self.lock().repositories.contains(&repository) {
            return not_found();
        }
        match method.as_str() {
            "GET" => {
                let list = self.statuses(&repository, sha);
                (200, json!({"count": list.len(), "value": list}))
            }
            "POST" => {
                let Ok(parsed) = serde_json::from_slice::<Value>(body) else {
                    return Self::error(
                        400,
                        "Value cannot be null.\r\nParameter name: gitCommitStatusToCreate",
                        "ArgumentNullException",
                    );
                };
                let state = parsed["state"].as_str().unwrap_or("");
                if !STATES.contains(&state) || parsed["context"]["name"].as_str().is_none() {
                    return Self::error(
                        400,
                        "The status must have a context name and a valid state.",
                        "InvalidArgumentValueException",
                    );
                }
                let mut inner = self.lock();
                inner.next_id += 1;
                let created = json!({
                    "id": inner.next_id,
                    "state": state,
                    "description": parsed["description"],
                    "context": {
                        "name": parsed["context"]["name"],
                        "genre": parsed["context"]["genre"],
                    },
                    "creationDate": "2024-01-01T10:00:00Z",
                    "updatedDate": "2024-01-01T10:00:00Z",
                    "createdBy": {"displayName": "Flux", "uniqueName": "flux@example.com"},
                    "url": format!("{}/{org}/{project}/_apis/git/repositories/{repo}/commits/{sha}/statuses/{}", self.url(""), inner.next_id),
                });
                inner
                    .statuses
                    .entry(format!("{repository}/{sha}"))
                    .or_default()
                    .push(created.clone());
                (201, created)
            }
            _ => Self::error(405, "Method not allowed", "HttpMethodNotAllowed"),
        }
    }
}

async fn answer(
    State(server): State<FakeAzureDevOps>,
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
