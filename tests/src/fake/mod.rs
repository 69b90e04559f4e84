//! The fake-host core every fake destination is built on: a loopback HTTP
//! server that records every request exactly as it arrived, answers the
//! replies a test scripted first (a 500, a vendor's own 429, a delay past
//! the client's timeout), then a default reply if one is set, and otherwise
//! asks the [`Api`] it stands for, which answers as the real API would.
//!
//! A vendor fake is one file in this folder: a type holding the state the
//! API keeps (commit statuses, comments, nothing at all) that implements
//! [`Api`], checking each request as the real API does (path, method, auth
//! header, content type, required fields) and answering with the vendor's
//! own error shape when it is wrong; plus a constructor that starts it with
//! [`FakeServer::start`] (or [`Fake::start_api`] when tests read its state).
//!
//! ```ignore
//! struct Echo;
//! impl Api for Echo {
//!     fn answer(&mut self, request: &Recorded, _origin: &str) -> Reply {
//!         Reply::text(200, &request.text())
//!     }
//! }
//! let echo = FakeServer::start(Echo).await;
//! ```

pub mod azure_devops;
pub mod azure_eventhub;
pub mod bitbucket;
pub mod bitbucket_server;
pub mod datadog;
pub mod discord;
pub mod entra;
pub mod gitea;
pub mod github;
pub mod gitlab;
pub mod google;
pub mod googlechat;
pub mod grafana;
pub mod incident_io;
pub mod lark;
pub mod matrix;
pub mod opsgenie;
pub mod otlp;
pub mod pagerduty;
pub mod rocket;
pub mod sentry;
pub mod slack;
pub mod teams;
pub mod telegram;
pub mod webex;
pub mod webhook;
pub mod zoom;
pub mod zulip;

use std::any::Any;
use std::collections::VecDeque;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tokio::time::Instant;

/// A real API as a fake stands for it.
pub trait Api: Any + Send {
    /// The API's own answer to `request` (scripted and default replies come
    /// first). `origin` is the fake's `http://127.0.0.1:<port>`, for the
    /// links an API puts in its answers.
    fn answer(&mut self, request: &Recorded, origin: &str) -> Reply;

    /// The vendor's own answer when it rate-limits `request`, asking the
    /// client to wait `retry_after`. By default `429` with `Retry-After` in
    /// whole seconds.
    fn rate_limited(&mut self, request: &Recorded, retry_after: Duration) -> Reply {
        let _ = request;
        Reply::status(429).header("retry-after", &retry_after.as_secs().to_string())
    }
}

/// One request as the destination received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: Method,
    /// The path, still percent-encoded.
    pub path: String,
    /// The query string without `?`, still percent-encoded.
    pub query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// When it arrived.
    pub at: Instant,
    /// The status the fake answered.
    pub answered: u16,
}

// === impl Recorded ===

impl Recorded {
    /// The body as JSON.
    ///
    /// # Panics
    ///
    /// When the body is not JSON.
    #[must_use]
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }

    /// The body as JSON, if it is.
    #[must_use]
    pub fn try_json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The body as text.
    #[must_use]
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as `application/x-www-form-urlencoded` pairs, decoded, in order.
    #[must_use]
    pub fn form(&self) -> Vec<(String, String)> {
        decode_pairs(&self.text())
    }

    /// A header's value as text.
    #[must_use]
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    /// Whether the content type is `application/json` (with any parameters).
    #[must_use]
    pub fn is_json(&self) -> bool {
        self.header("content-type")
            .is_some_and(|v| v.starts_with("application/json"))
    }

    /// The path's segments after the leading `/`, each percent-decoded (so
    /// GitLab's `group%2Fproject` is one segment).
    #[must_use]
    pub fn segments(&self) -> Vec<String> {
        self.path
            .trim_start_matches('/')
            .split('/')
            .map(percent_decode)
            .collect()
    }

    /// The decoded value of `key` in the query string.
    #[must_use]
    pub fn query_value(&self, key: &str) -> Option<String> {
        decode_pairs(&self.query)
            .into_iter()
            .find_map(|(k, v)| (k == key).then_some(v))
    }
}

/// `a=1&b=x+y` as decoded pairs (`+` is a space).
fn decode_pairs(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| percent_decode(&s.replace('+', " "));
            (decode(k), decode(v))
        })
        .collect()
}

/// `%XX` sequences decoded.
#[must_use]
pub fn percent_decode(text: &str) -> String {
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

/// An answer: scripted by a test, or an API's own.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// Wait this long before answering (to exceed a client timeout).
    pub delay: Duration,
}

// === impl Reply ===

impl Reply {
    /// `status` with a short text body.
    #[must_use]
    pub fn status(status: u16) -> Self {
        Self::text(status, &format!("fake answer {status}"))
    }

    /// `status` with `body` as plain text.
    #[must_use]
    pub fn text(status: u16, body: &str) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: body.to_owned(),
            delay: Duration::ZERO,
        }
    }

    /// `status` with `value` as `application/json`.
    #[must_use]
    pub fn json(status: u16, value: &Value) -> Self {
        Self::text(status, &value.to_string()).header("content-type", "application/json")
    }

    /// `status` with no body (a `204`).
    #[must_use]
    pub fn empty(status: u16) -> Self {
        Self::text(status, "")
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

/// What a test told the fake to answer next.
enum Scripted {
    Reply(Reply),
    /// The API's own rate-limit answer.
    RateLimited(Duration),
}

struct Inner {
    recorded: Vec<Recorded>,
    script: VecDeque<Scripted>,
    default: Option<Reply>,
    api: Box<dyn Api>,
}

/// A fake destination on a free loopback port.
#[derive(Clone)]
pub struct FakeServer {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

// === impl FakeServer ===

impl FakeServer {
    /// Starts `api` on a free loopback port.
    ///
    /// # Panics
    ///
    /// When no loopback port can be bound.
    pub async fn start(api: impl Api) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let server = Self {
            addr: listener.local_addr().expect("local addr"),
            inner: Arc::new(Mutex::new(Inner {
                recorded: Vec::new(),
                script: VecDeque::new(),
                default: None,
                api: Box::new(api),
            })),
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
        self.lock()
            .script
            .extend(replies.into_iter().map(Scripted::Reply));
    }

    /// Answers the next request with the API's own rate-limit answer
    /// ([`Api::rate_limited`]), asking to wait `retry_after`.
    pub fn rate_limit_next(&self, retry_after: Duration) {
        self.lock()
            .script
            .push_back(Scripted::RateLimited(retry_after));
    }

    /// Answers every request not scripted with `reply` (None: the API's own answer).
    pub fn set_default(&self, reply: Option<Reply>) {
        self.lock().default = reply;
    }

    /// Every request so far.
    #[must_use]
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().recorded.clone()
    }

    /// The `message` of every JSON body so far (a `generic` webhook's),
    /// sorted; `""` for a body without one.
    #[must_use]
    pub fn sorted_messages(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .requests()
            .iter()
            .map(|r| r.json()["message"].as_str().unwrap_or_default().to_owned())
            .collect();
        out.sort();
        out
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

    /// Runs `f` on the API's state.
    ///
    /// # Panics
    ///
    /// When the fake does not stand for an `A`.
    pub fn with_api<A: Api, R>(&self, f: impl FnOnce(&mut A) -> R) -> R {
        let mut inner = self.lock();
        let api: &mut dyn Any = inner.api.as_mut();
        f(api.downcast_mut::<A>().expect("the fake's API type"))
    }

    /// The answer to `request`: scripted, default, or the API's own.
    fn reply(&self, request: &Recorded) -> Reply {
        let mut inner = self.lock();
        match inner.script.pop_front() {
            Some(Scripted::Reply(reply)) => reply,
            Some(Scripted::RateLimited(wait)) => inner.api.rate_limited(request, wait),
            None => match inner.default.clone() {
                Some(reply) => reply,
                None => inner.api.answer(request, &format!("http://{}", self.addr)),
            },
        }
    }
}

/// A fake whose API state tests read: a [`FakeServer`] that knows it
/// stands for an `A`.
pub struct Fake<A> {
    server: FakeServer,
    api: PhantomData<fn() -> A>,
}

impl<A> Clone for Fake<A> {
    fn clone(&self) -> Self {
        Self {
            server: self.server.clone(),
            api: PhantomData,
        }
    }
}

// === impl Fake ===

impl<A: Api> Fake<A> {
    /// Starts `api` on a free loopback port.
    pub async fn start_api(api: A) -> Self {
        Self {
            server: FakeServer::start(api).await,
            api: PhantomData,
        }
    }

    /// Runs `f` on the API's state.
    pub fn api<R>(&self, f: impl FnOnce(&mut A) -> R) -> R {
        self.server.with_api(f)
    }

    /// The untyped server.
    #[must_use]
    pub fn server(&self) -> FakeServer {
        self.server.clone()
    }
}

impl<A> Deref for Fake<A> {
    type Target = FakeServer;

    fn deref(&self) -> &FakeServer {
        &self.server
    }
}

async fn answer(
    State(server): State<FakeServer>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut request = Recorded {
        method,
        path: uri.path().to_owned(),
        query: uri.query().unwrap_or_default().to_owned(),
        headers,
        body,
        at: Instant::now(),
        answered: 0,
    };
    let reply = server.reply(&request);
    request.answered = reply.status;
    server.lock().recorded.push(request);
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, reply.body).into_response();
    for (name, value) in reply.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}
