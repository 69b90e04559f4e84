//! A small in-memory Kubernetes API server on a loopback port, speaking the
//! list/watch shapes the unmodified kube-rs client and runtime use: discovery
//! (with Flux's real group layout: `notification.toolkit.fluxcd.io` prefers
//! `v1`, which holds only Receiver), list with `resourceVersion`, selectors
//! and paging, watch with `ADDED`/`MODIFIED`/`DELETED`/`BOOKMARK` and `410
//! Expired` after [`FakeKube::expire_history`], the `/status` subresource
//! where a version declares one, metadata-only lists and watches,
//! `events.k8s.io/v1` Events stored like anything else, and an outage
//! ([`FakeKube::fail_requests`]) that answers every request with an error.
//!
//! Objects of one resource share storage across its versions: an Alert
//! written as `v1beta2` is served as `v1beta3` with `apiVersion` rewritten
//! (and `status` pruned: `v1beta3` has none).
//!
//! ```ignore
//! let kube = FakeKube::start().await;
//! kube.apply("apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Alert\n...");
//! let config = kube::Config::from_custom_kubeconfig(
//!     kube::config::Kubeconfig::read_from(kube.kubeconfig(dir.path()))?, &Default::default()).await?;
//! // ... run a watcher, then:
//! kube.expire_history(); // the next watch from an old resourceVersion gets 410
//! assert!(kube.requests().iter().all(|r| !r.path.ends_with("/status")));
//! ```

pub mod catalog;
mod select;
mod server;
mod store;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use serde_json::Value;
use tokio::sync::watch;

pub use catalog::Resource;
pub use server::KubeRequest;
use server::Shared;
use store::{Part, Store};

/// The fake API server.
#[derive(Clone)]
pub struct FakeKube {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

/// Open watches end and new ones wait until this is dropped.
#[must_use = "watches resume when the hold is dropped"]
pub struct WatchHold {
    shared: Arc<Shared>,
}

impl Drop for WatchHold {
    fn drop(&mut self) {
        self.shared.held.send_replace(false);
    }
}

fn resource_of(api_version: &str, kind: &str) -> Resource {
    catalog::find_kind(api_version, kind)
        .unwrap_or_else(|| panic!("the fake serves no {kind} in {api_version}"))
}

// === impl FakeKube ===

impl FakeKube {
    /// Starts the server on a free loopback port, bookmarking open watches
    /// every second.
    ///
    /// # Panics
    ///
    /// When no loopback port can be bound.
    pub async fn start() -> Self {
        Self::start_with_bookmarks(Duration::from_secs(1)).await
    }

    /// Starts the server, bookmarking open watches every `interval`.
    ///
    /// # Panics
    ///
    /// When no loopback port can be bound.
    pub async fn start_with_bookmarks(interval: Duration) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::default()),
            requests: Mutex::new(Vec::new()),
            held: watch::channel(false).0,
            epoch: AtomicU64::new(0),
            bookmark_interval: interval,
            alert_kinds: Mutex::new(Vec::new()),
            outage: AtomicU16::new(0),
        });
        let app = Router::new()
            .fallback(server::handle)
            .with_state(shared.clone());
        tokio::spawn(async move {
            axum::serve(listener, app).await.expect("fake kube runs");
        });
        Self { addr, shared }
    }

    /// `http://127.0.0.1:<port>`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Creates or replaces the object in `text` (YAML or JSON), status
    /// included, and returns it as stored.
    ///
    /// # Panics
    ///
    /// When `text` is not one object of a kind the fake serves.
    pub fn apply(&self, text: &str) -> Value {
        let object: Value = serde_saphyr::from_str(text).expect("a YAML or JSON object");
        let resource = resource_of(
            object["apiVersion"].as_str().unwrap_or_default(),
            object["kind"].as_str().unwrap_or_default(),
        );
        let name = object["metadata"]["name"]
            .as_str()
            .expect("metadata.name")
            .to_owned();
        let namespace = if resource.namespaced {
            object["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default")
                .to_owned()
        } else {
            String::new()
        };
        let (name, namespace) = (name.as_str(), namespace.as_str());
        let mut store = self.shared.store();
        let stored = if store.get(&resource, namespace, name).is_some() {
            let mut replacement = object.clone();
            if let Some(meta) = replacement["metadata"].as_object_mut() {
                meta.remove("resourceVersion");
            }
            store.replace(&resource, namespace, name, replacement, Part::Main)
        } else {
            store.create(&resource, namespace, object.clone())
        }
        .expect("apply the object");
        if resource.has_status_subresource() && object.get("status").is_some() {
            return store
                .replace(&resource, namespace, name, object, Part::Status)
                .expect("apply the status");
        }
        stored
    }

    /// Deletes an object; false when there was none.
    ///
    /// # Panics
    ///
    /// When the fake serves no `kind` in `api_version`.
    pub fn delete(&self, api_version: &str, kind: &str, namespace: &str, name: &str) -> bool {
        let resource = resource_of(api_version, kind);
        self.shared
            .store()
            .delete(&resource, namespace, name)
            .is_ok()
    }

    /// Every object of `kind`, as served under `api_version`.
    ///
    /// # Panics
    ///
    /// When the fake serves no `kind` in `api_version`.
    #[must_use]
    pub fn objects(&self, api_version: &str, kind: &str) -> Vec<Value> {
        let resource = resource_of(api_version, kind);
        self.shared
            .store()
            .list(&resource, None)
            .iter()
            .map(|o| store::served(&resource, o))
            .collect()
    }

    /// The `events.k8s.io/v1` Events written so far.
    #[must_use]
    pub fn events(&self) -> Vec<Value> {
        self.objects("events.k8s.io/v1", "Event")
    }

    /// Adds event source kinds to the Alert CRD's enum in every version, as
    /// Flux Operator does for its own kinds.
    pub fn extend_alert_kinds(&self, kinds: &[&str]) {
        self.shared
            .alert_kinds
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(kinds.iter().map(|k| (*k).to_owned()));
    }

    /// Every request so far, in order.
    #[must_use]
    pub fn requests(&self) -> Vec<KubeRequest> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Compacts the change history: open watches get a `410 Expired` ERROR
    /// event and end, and a watch from any older resourceVersion gets one too,
    /// so clients must relist.
    pub fn expire_history(&self) {
        self.shared.store().expire_history();
    }

    /// Ends every open watch and makes new ones wait until the hold is
    /// dropped (an API server that went away): changes made meanwhile are
    /// seen only by replaying history, or by a relist once it expired.
    pub fn hold_watches(&self) -> WatchHold {
        self.shared.held.send_replace(true);
        self.shared.epoch.fetch_add(1, Ordering::SeqCst);
        WatchHold {
            shared: self.shared.clone(),
        }
    }

    /// Answers every request for a resource (not discovery or health) with
    /// `code` until called with `None`: an API server that is down (`500`;
    /// kube-rs' client retries `429`, `503` and `504` itself) or refuses
    /// (`403`). Requests are still recorded.
    pub fn fail_requests(&self, code: Option<u16>) {
        self.shared
            .outage
            .store(code.unwrap_or(0), Ordering::SeqCst);
    }

    /// Writes a kubeconfig for this server (plain http, no credentials) to
    /// `dir/kubeconfig` and returns its path.
    ///
    /// # Panics
    ///
    /// When the file cannot be written.
    #[must_use]
    pub fn kubeconfig(&self, dir: &Path) -> PathBuf {
        self.write_kubeconfig(dir, "{}")
    }

    /// As [`FakeKube::kubeconfig`], with a bearer `token` the client sends
    /// (see [`KubeRequest::authorization`]).
    ///
    /// # Panics
    ///
    /// When the file cannot be written.
    #[must_use]
    pub fn kubeconfig_with_token(&self, dir: &Path, token: &str) -> PathBuf {
        self.write_kubeconfig(dir, &format!("{{token: {token}}}"))
    }

    fn write_kubeconfig(&self, dir: &Path, user: &str) -> PathBuf {
        let text = format!(
            "apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster:
    server: {url}
contexts:
- name: fake
  context:
    cluster: fake
    user: fake
    namespace: default
current-context: fake
users:
- name: fake
  user: {user}
",
            url = self.url()
        );
        let path = dir.join("kubeconfig");
        std::fs::write(&path, text).expect("write the kubeconfig");
        path
    }
}
