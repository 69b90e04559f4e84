//! The HTTP side: discovery, CRUD, `/status`, metadata-only answers and
//! watches streamed as newline-delimited JSON events.
//!
//! A watch from a resourceVersion older than the history is answered as the
//! real API server does: `200` with one `ERROR` event holding a `410
//! Expired` Status. kube-rs' watcher relists on that event; an HTTP `410`
//! on the watch request itself would make it retry the same stale watch
//! forever. An expired `continue` token on a list is an HTTP `410`.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc, watch};

use super::catalog::{self, Resource};
use super::select;
use super::store::{self, ApiError, Change, Part, Store};

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct KubeRequest {
    pub method: Method,
    /// The path, still percent-encoded.
    pub path: String,
    /// The query string without `?`, still percent-encoded.
    pub query: String,
    pub accept: Option<String>,
    pub content_type: Option<String>,
    pub authorization: Option<String>,
}

// === impl KubeRequest ===

impl KubeRequest {
    /// The decoded value of `key` in the query string.
    #[must_use]
    pub fn query_value(&self, key: &str) -> Option<String> {
        query_pairs(&self.query)
            .into_iter()
            .find_map(|(k, v)| (k == key).then_some(v))
    }

    /// Whether this is a watch.
    #[must_use]
    pub fn is_watch(&self) -> bool {
        matches!(self.query_value("watch").as_deref(), Some("true" | "1"))
    }
}

fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| crate::fake::percent_decode(&s.replace('+', " "));
            (decode(k), decode(v))
        })
        .collect()
}

/// State shared by the handlers and the test API.
pub struct Shared {
    pub store: Mutex<Store>,
    pub requests: Mutex<Vec<KubeRequest>>,
    /// While true, open watches end and new ones wait.
    pub held: watch::Sender<bool>,
    /// Bumped by every hold: a watch opened in an older epoch sends nothing more.
    pub epoch: AtomicU64,
    pub bookmark_interval: Duration,
    /// While not zero, every resource request is answered with this code.
    pub outage: AtomicU16,
    /// Event source kinds added to the Alert CRD's enum (as Flux Operator does).
    pub alert_kinds: Mutex<Vec<String>>,
}

// === impl Shared ===

impl Shared {
    pub fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn json_response(status: u16, value: &Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

fn error(err: &ApiError) -> Response {
    json_response(err.code, &err.status())
}

fn not_found() -> Response {
    error(&ApiError::new(
        404,
        "NotFound",
        "the server could not find the requested resource",
    ))
}

/// What the request asks for, after discovery paths.
struct Target {
    resource: Resource,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

fn target(group: &str, version: &str, rest: &[String]) -> Option<Target> {
    let namespaced = rest.len() >= 3
        && rest[0] == "namespaces"
        && catalog::find(group, version, &rest[2]).is_some_and(|r| r.namespaced);
    let (namespace, rest) = if namespaced {
        (Some(rest[1].clone()), &rest[2..])
    } else {
        (None, rest)
    };
    let resource = catalog::find(group, version, rest.first()?)?;
    if rest.len() > 3 || (!resource.namespaced && namespace.is_some()) {
        return None;
    }
    Some(Target {
        resource,
        namespace,
        name: rest.get(1).cloned(),
        subresource: rest.get(2).cloned(),
    })
}

/// The fake's one handler: it records the request, then answers it.
pub async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let text = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let request = KubeRequest {
        method: method.clone(),
        path: uri.path().to_owned(),
        query: uri.query().unwrap_or_default().to_owned(),
        accept: text(header::ACCEPT),
        content_type: text(header::CONTENT_TYPE),
        authorization: text(header::AUTHORIZATION),
    };
    shared
        .requests
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(request.clone());
    let segments: Vec<String> = uri
        .path()
        .trim_matches('/')
        .split('/')
        .map(crate::fake::percent_decode)
        .collect();
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    let discovery = match segs.as_slice() {
        ["version"] => Some(
            json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0-fake", "platform": "linux/amd64"}),
        ),
        ["api"] => Some(catalog::core_versions()),
        ["apis"] => Some(catalog::group_list()),
        ["api", "v1"] => catalog::resource_list("", "v1"),
        ["apis", group] => catalog::group(group),
        ["apis", group, version] => catalog::resource_list(group, version),
        [
            "apis",
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            name,
        ] => catalog::crd(name).map(|mut crd| {
            if name.starts_with("alerts.") {
                let extra = shared
                    .alert_kinds
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone();
                catalog::extend_alert_kinds(&mut crd, &extra);
            }
            crd
        }),
        _ => None,
    };
    if let Some(doc) = discovery {
        return if method == Method::GET {
            json_response(200, &doc)
        } else {
            error(&ApiError::new(
                405,
                "MethodNotAllowed",
                "discovery is read-only",
            ))
        };
    }
    if matches!(segs.as_slice(), ["healthz" | "livez" | "readyz"]) {
        return (StatusCode::OK, "ok").into_response();
    }
    let outage = shared.outage.load(Ordering::SeqCst);
    if outage != 0 {
        let reason = match outage {
            403 => "Forbidden",
            429 => "TooManyRequests",
            503 => "ServiceUnavailable",
            _ => "InternalError",
        };
        return error(&ApiError::new(
            outage,
            reason,
            "the fake is failing every request",
        ));
    }
    let target = match segs.as_slice() {
        ["api", "v1", ..] => target("", "v1", &segments[2..]),
        ["apis", group, version, ..] => target(group, version, &segments[3..]),
        _ => None,
    };
    let Some(target) = target else {
        return not_found();
    };
    let metadata_only = request
        .accept
        .as_deref()
        .is_some_and(|a| a.contains("as=PartialObjectMetadata"));
    match answer(&shared, &request, &target, metadata_only, &body) {
        Ok(Answer::Json(code, value)) => json_response(code, &value),
        Ok(Answer::Watch) => start_watch(shared, &request, target, metadata_only),
        Err(err) => error(&err),
    }
}

enum Answer {
    Json(u16, Value),
    Watch,
}

fn partial(object: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": object["metadata"],
    })
}

fn body_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .or_else(|_| serde_saphyr::from_slice::<Value>(body))
        .map_err(|e| ApiError::new(400, "BadRequest", format!("the body is not JSON: {e}")))
}

fn answer(
    shared: &Shared,
    request: &KubeRequest,
    target: &Target,
    metadata_only: bool,
    body: &[u8],
) -> Result<Answer, ApiError> {
    let resource = &target.resource;
    let part = match target.subresource.as_deref() {
        None => Part::Main,
        Some("status") if resource.has_status_subresource() => Part::Status,
        Some(_) => {
            return Err(ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ));
        }
    };
    let namespace = || {
        target
            .namespace
            .clone()
            .unwrap_or_else(|| if resource.namespaced { "default" } else { "" }.to_owned())
    };
    let show = |object: &Value| {
        let object = store::served(resource, object);
        if metadata_only {
            partial(&object)
        } else {
            object
        }
    };
    let method = &request.method;
    let Some(name) = target.name.as_deref() else {
        return match *method {
            Method::GET if request.is_watch() => Ok(Answer::Watch),
            Method::GET => {
                list(shared, request, target, metadata_only).map(|v| Answer::Json(200, v))
            }
            Method::POST => {
                let object = body_json(body)?;
                let ns = if resource.namespaced {
                    target
                        .namespace
                        .clone()
                        .or_else(|| object["metadata"]["namespace"].as_str().map(str::to_owned))
                        .unwrap_or_else(|| "default".to_owned())
                } else {
                    String::new()
                };
                let created = shared.store().create(resource, &ns, object)?;
                Ok(Answer::Json(201, show(&created)))
            }
            _ => Err(ApiError::new(
                405,
                "MethodNotAllowed",
                "not allowed on a collection",
            )),
        };
    };
    let ns = namespace();
    let mut store = shared.store();
    let object = match *method {
        Method::GET => store
            .get(resource, &ns, name)
            .ok_or_else(|| ApiError::not_found(resource, name))?,
        Method::PUT => store.replace(resource, &ns, name, body_json(body)?, part)?,
        Method::PATCH => {
            let kind = request.content_type.as_deref().unwrap_or_default();
            let create = kind.starts_with("application/apply-patch");
            if !(create
                || kind.starts_with("application/merge-patch+json")
                || kind.starts_with("application/strategic-merge-patch+json"))
            {
                return Err(ApiError::new(
                    415,
                    "UnsupportedMediaType",
                    format!("the body of the request was in an unknown format: {kind}"),
                ));
            }
            store.patch(resource, &ns, name, &body_json(body)?, part, create)?
        }
        Method::DELETE if part == Part::Main => store.delete(resource, &ns, name)?,
        _ => return Err(ApiError::new(405, "MethodNotAllowed", "not allowed here")),
    };
    Ok(Answer::Json(200, show(&object)))
}

/// The label and field selectors of a request.
struct Selectors {
    labels: Option<String>,
    fields: Option<String>,
}

// === impl Selectors ===

impl Selectors {
    fn of(request: &KubeRequest) -> Self {
        Self {
            labels: request.query_value("labelSelector"),
            fields: request.query_value("fieldSelector"),
        }
    }

    fn select(&self, object: &Value) -> Result<bool, ApiError> {
        let labels = self
            .labels
            .as_deref()
            .is_none_or(|s| select::labels_match(s, object));
        let fields = match self.fields.as_deref() {
            Some(s) => select::fields_match(s, object)?,
            None => true,
        };
        Ok(labels && fields)
    }
}

fn selected(request: &KubeRequest, object: &Value) -> Result<bool, ApiError> {
    Selectors::of(request).select(object)
}

fn list(
    shared: &Shared,
    request: &KubeRequest,
    target: &Target,
    metadata_only: bool,
) -> Result<Value, ApiError> {
    let resource = &target.resource;
    let store = shared.store();
    let expired = |what: &str| {
        ApiError::new(
            410,
            "Expired",
            format!(
                "The provided {what} is too old, the oldest available is {}",
                store.floor()
            ),
        )
    };
    // A continue token is "<resourceVersion>/<namespace>/<name>" of the last item sent.
    let (mut rv, after) = match request.query_value("continue").filter(|c| !c.is_empty()) {
        Some(token) => {
            let mut parts = token.splitn(3, '/');
            let rv: u64 = parts.next().and_then(|r| r.parse().ok()).unwrap_or(0);
            if rv < store.floor() {
                return Err(expired("continue parameter"));
            }
            let ns = parts.next().unwrap_or_default().to_owned();
            let name = parts.next().unwrap_or_default().to_owned();
            (rv, Some((ns, name)))
        }
        None => (store.resource_version(), None),
    };
    if request.query_value("resourceVersionMatch").as_deref() == Some("Exact") {
        let wanted: u64 = request
            .query_value("resourceVersion")
            .and_then(|r| r.parse().ok())
            .unwrap_or(0);
        if wanted < store.floor() {
            return Err(expired("resourceVersion"));
        }
        rv = wanted;
    }
    let limit: usize = request
        .query_value("limit")
        .and_then(|l| l.parse().ok())
        .filter(|l| *l > 0)
        .unwrap_or(usize::MAX);
    let selectors = Selectors::of(request);
    let mut items = Vec::new();
    let mut next = None;
    let after = after
        .as_ref()
        .map(|(ns, name)| (ns.as_str(), name.as_str()));
    for object in store.scan(resource, target.namespace.as_deref(), after) {
        if !selectors.select(object)? {
            continue;
        }
        if items.len() == limit {
            let last: &Value = items.last().unwrap_or(&Value::Null);
            next = Some(format!(
                "{rv}/{}/{}",
                last["metadata"]["namespace"].as_str().unwrap_or_default(),
                last["metadata"]["name"].as_str().unwrap_or_default()
            ));
            break;
        }
        items.push(store::served(resource, object));
    }
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if let Some(token) = next {
        metadata["continue"] = json!(token);
    }
    Ok(if metadata_only {
        json!({
            "kind": "PartialObjectMetadataList",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": metadata,
            "items": items.iter().map(partial).collect::<Vec<_>>(),
        })
    } else {
        json!({
            "kind": format!("{}List", resource.kind),
            "apiVersion": resource.api_version(),
            "metadata": metadata,
            "items": items,
        })
    })
}

// === watches ===

struct Watch {
    shared: Arc<Shared>,
    request: KubeRequest,
    target: Target,
    metadata_only: bool,
    tx: mpsc::Sender<Bytes>,
    /// [`Shared::epoch`] when this watch opened.
    epoch: u64,
}

fn start_watch(
    shared: Arc<Shared>,
    request: &KubeRequest,
    target: Target,
    metadata_only: bool,
) -> Response {
    let (tx, mut rx) = mpsc::channel::<Bytes>(256);
    let watch = Watch {
        shared,
        request: request.clone(),
        target,
        metadata_only,
        tx,
        epoch: 0,
    };
    tokio::spawn(watch.run());
    let body = Body::from_stream(futures::stream::poll_fn(move |cx| {
        rx.poll_recv(cx).map(|line| line.map(Ok::<_, Infallible>))
    }));
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

// === impl Watch ===

impl Watch {
    async fn send(&self, kind: &str, object: Value) -> bool {
        // Held since this watch opened: the client sees nothing more.
        if self.shared.epoch.load(Ordering::SeqCst) != self.epoch {
            return false;
        }
        let line = format!("{}\n", json!({"type": kind, "object": object}));
        self.tx.send(Bytes::from(line)).await.is_ok()
    }

    async fn send_object(&self, kind: &str, object: &Value) -> bool {
        let object = store::served(&self.target.resource, object);
        let object = if self.metadata_only {
            partial(&object)
        } else {
            object
        };
        self.send(kind, object).await
    }

    async fn expired(&self, from: u64, floor: u64) {
        let status = ApiError::new(
            410,
            "Expired",
            format!("too old resource version: {from} ({floor})"),
        )
        .status();
        self.send("ERROR", status).await;
    }

    async fn bookmark(&self, rv: u64, initial_end: bool) -> bool {
        let (kind, api_version) = if self.metadata_only {
            (
                "PartialObjectMetadata".to_owned(),
                "meta.k8s.io/v1".to_owned(),
            )
        } else {
            (
                self.target.resource.kind.to_owned(),
                self.target.resource.api_version(),
            )
        };
        let mut metadata = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        self.send(
            "BOOKMARK",
            json!({"kind": kind, "apiVersion": api_version, "metadata": metadata}),
        )
        .await
    }

    fn wants(&self, family: &store::Family, namespace: &str, object: &Value) -> bool {
        *family == store::family(&self.target.resource)
            && self
                .target
                .namespace
                .as_deref()
                .is_none_or(|n| n == namespace)
            && selected(&self.request, object).unwrap_or(false)
    }

    async fn run(mut self) {
        let mut held = self.shared.held.subscribe();
        if held.wait_for(|h| !*h).await.is_err() {
            return;
        }
        self.epoch = self.shared.epoch.load(Ordering::SeqCst);
        let from = self
            .request
            .query_value("resourceVersion")
            .and_then(|r| r.parse::<u64>().ok())
            .filter(|r| *r > 0);
        let initial_events =
            self.request.query_value("sendInitialEvents").as_deref() == Some("true");
        let bookmarks = self.request.query_value("allowWatchBookmarks").as_deref() == Some("true");
        let timeout = self
            .request
            .query_value("timeoutSeconds")
            .and_then(|t| t.parse().ok())
            .map_or(Duration::from_secs(1800), Duration::from_secs);

        let opened = {
            let store = self.shared.store();
            let start = store.resource_version();
            match store.watch_from(from.unwrap_or(start)) {
                None => Err(store.floor()),
                Some((replay, changes)) => {
                    let initial = if from.is_none() {
                        store.list(&self.target.resource, self.target.namespace.as_deref())
                    } else {
                        Vec::new()
                    };
                    Ok((initial, replay, changes, start))
                }
            }
        };
        let (initial, replay, mut changes, start) = match opened {
            Ok(opened) => opened,
            Err(floor) => {
                self.expired(from.unwrap_or_default(), floor).await;
                return;
            }
        };
        for object in &initial {
            if selected(&self.request, object).unwrap_or(false)
                && !self.send_object("ADDED", object).await
            {
                return;
            }
        }
        if initial_events && !self.bookmark(start, true).await {
            return;
        }
        let mut last = from.unwrap_or(start);
        for change in replay {
            if !self.forward(&change, &mut last).await {
                return;
            }
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(self.shared.bookmark_interval);
        tick.tick().await;
        loop {
            tokio::select! {
                () = &mut deadline => return,
                () = self.tx.closed() => return,
                _ = tick.tick(), if bookmarks => {
                    let rv = self.shared.store().resource_version();
                    if !self.bookmark(rv.max(last), false).await {
                        return;
                    }
                }
                changed = held.changed() => {
                    if changed.is_err() || *held.borrow() {
                        return;
                    }
                }
                change = changes.recv() => match change {
                    // Held since this change was made: the client never sees it.
                    Ok(change) => {
                        if !self.forward(&change, &mut last).await {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let floor = self.shared.store().floor();
                        self.expired(last, floor).await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    }

    /// Sends `change` if this watch wants it; false when the watch is over.
    async fn forward(&self, change: &Change, last: &mut u64) -> bool {
        match change {
            Change::Object {
                rv,
                kind,
                family,
                namespace,
                object,
            } => {
                if *rv <= *last {
                    return true;
                }
                *last = *rv;
                if !self.wants(family, namespace, object) {
                    return true;
                }
                self.send_object(kind, object).await
            }
            Change::Expired { rv } => {
                self.expired(*last, *rv).await;
                false
            }
        }
    }
}
