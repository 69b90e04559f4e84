//! The Kubernetes source: Flux's own Alerts and Providers, and the Secrets
//! they name, watched in a cluster.
//!
//! - **Versions are discovered**, not assumed: each kind is read at the
//!   highest-priority version the cluster serves it in (`v1` once Flux
//!   promotes it, else `v1beta3`, else `v1beta2`). The group's *preferred*
//!   version is not used: Flux's is `v1`, which holds only Receiver today.
//! - **The Alert CRD's served schema** gives the event source kinds Alerts may
//!   name (Flux Operator adds its own); those are not warned about.
//! - **Secrets**: the Secrets of the watched namespaces are listed and watched
//!   (leaving out Helm release and service-account-token Secrets with a
//!   server-side field selector), and only those a Provider names are kept in
//!   memory; a Secret a Provider starts naming later is read once with a GET.
//!   Why not a GET per named Secret only: RBAC cannot name Secrets unknown at
//!   install time, so `get` on Secrets grants the same read access as
//!   `list`/`watch`, and a rotated Secret would only be seen by polling. The
//!   watch sees a rotation at once; `--watch-namespace` narrows the access.
//! - **Labels**: the metadata (only) of every Flux kind an Alert may name is
//!   listed and watched, so events from this cluster (`--catalog-cluster`)
//!   carry their object's labels and `matchLabels` matches as in Flux.
//! - **Publishing**: nothing is published before the first full list of every
//!   kind (the catalog is not ready until then); afterwards changes are
//!   gathered for `--catalog-debounce` and published together. A relist
//!   (after `410 Gone`) replaces a kind's objects once it completes, so an
//!   object deleted meanwhile disappears. Watchers retry with backoff; errors
//!   are logged, never fatal.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::{BoxStream, SelectAll};
use herald_flux::AlertOptions;
use herald_flux::objects::{
    FLUX_OPERATOR_KINDS, NOTIFICATION_GROUP, Object, ObjectMeta as FluxMeta, SOURCE_KINDS,
    Secret as FluxSecret, SecretData, parse_documents, parse_value,
};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::discovery::ApiResource;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event as WatchEvent, watcher};
use kube::{Client, Config};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::{Catalog, CatalogWriter, ObjectLabels, Problem};
use crate::health::Readiness;
use crate::kubernetes::{EventSettings, Leadership, LeaseSettings, ObjectEvents, StatusWriter};

mod health;
pub mod members;

use health::Health;
pub use health::{DEAD_LETTER, RECOVERED, Seen, UNUSABLE};

/// The Lease whose holder writes catalog Events and status.
pub const LEASE: &str = "herald-catalog-writer";

/// How Herald reaches the cluster and what it reads there.
#[derive(Debug, Clone, clap::Args)]
pub struct KubeArgs {
    /// The kubeconfig file of the Kubernetes catalog; without it, the
    /// KUBECONFIG variable (or ~/.kube/config), then the in-cluster service
    /// account.
    #[arg(long, env = "HERALD_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Read Alerts, Providers, Secrets and object labels only in this
    /// namespace (every namespace when empty).
    #[arg(long, env = "HERALD_WATCH_NAMESPACE", default_value = "")]
    pub watch_namespace: String,
    /// Read only the Alerts and Providers with these labels (a Kubernetes
    /// label selector, e.g. `herald.io/enabled=true`).
    #[arg(long, env = "HERALD_WATCH_LABEL_SELECTOR", default_value = "")]
    pub watch_label_selector: String,
    /// The cluster name ingest gives events from this cluster: they get the
    /// labels of this cluster's objects, for `matchLabels`.
    #[arg(long, env = "HERALD_CATALOG_CLUSTER", default_value = "default")]
    pub catalog_cluster: String,
    /// Learn the labels of the Flux objects events are about (a
    /// metadata-only list and watch of each Flux kind), so `matchLabels`
    /// matches as in Flux.
    #[arg(long, env = "HERALD_OBJECT_LABELS", default_value_t = true, action = clap::ArgAction::Set)]
    pub object_labels: bool,
    /// How long changes are gathered before the catalog is rebuilt.
    #[arg(long, env = "HERALD_CATALOG_DEBOUNCE", default_value = "200ms", value_parser = crate::nats::parse_duration)]
    pub catalog_debounce: Duration,
    /// Whether the service reads Secrets' data (a sender sends with it); a
    /// router only needs to know they exist, and watches their metadata.
    #[arg(skip = true)]
    pub secret_data: bool,
}

impl Default for KubeArgs {
    fn default() -> Self {
        Self {
            kubeconfig: None,
            watch_namespace: String::new(),
            watch_label_selector: String::new(),
            catalog_cluster: "default".to_owned(),
            object_labels: true,
            catalog_debounce: Duration::from_millis(200),
            secret_data: true,
        }
    }
}

/// Builds a client from `--kubeconfig`, else the usual way (KUBECONFIG,
/// then in-cluster).
///
/// # Errors
///
/// A kubeconfig that cannot be read or used, or no configuration at all.
pub async fn client(args: &KubeArgs) -> anyhow::Result<Client> {
    let config = match &args.kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path).map_err(|e| {
                anyhow::anyhow!("cannot read the kubeconfig {}: {e}", path.display())
            })?;
            Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| anyhow::anyhow!("cannot use the kubeconfig {}: {e}", path.display()))?
        }
        None => Config::infer().await.map_err(|e| {
            anyhow::anyhow!("no Kubernetes configuration (KUBECONFIG or in-cluster): {e}")
        })?,
    };
    Client::try_from(config).map_err(|e| anyhow::anyhow!("cannot build a Kubernetes client: {e}"))
}

/// A kind of the notification group as this cluster serves it.
#[derive(Debug, Clone)]
pub struct Served {
    /// The version Herald reads.
    pub read: ApiResource,
    /// The highest-priority version with a `/status` subresource, if any.
    pub status: Option<ApiResource>,
}

/// What discovery found.
#[derive(Debug, Clone)]
pub struct Discovered {
    /// Alerts.
    pub alerts: Served,
    /// Providers.
    pub providers: Served,
    /// The event source kinds the served Alert schema allows (`None`: the
    /// CRD could not be read).
    pub served_kinds: Option<Vec<String>>,
    /// The Flux kinds Alerts may name, as served, for their labels.
    pub label_kinds: Vec<ApiResource>,
}

/// Finds how the cluster serves Alerts and Providers, the kinds Alerts may
/// name, and where those kinds are served.
///
/// # Errors
///
/// The notification group or one of its kinds is not served, or discovery
/// failed.
pub async fn discover(client: &Client, object_labels: bool) -> anyhow::Result<Discovered> {
    let group = kube::discovery::group(client, NOTIFICATION_GROUP)
        .await
        .map_err(|e| anyhow::anyhow!("cannot discover {NOTIFICATION_GROUP}: {e}"))?;
    let serve = |kind: &str| -> anyhow::Result<Served> {
        let mut read = None;
        let mut status = None;
        // Highest priority first: v1, v1beta3, v1beta2, ...
        for version in group.versions() {
            for (resource, caps) in group.versioned_resources(version) {
                if resource.kind != kind {
                    continue;
                }
                if status.is_none() && caps.subresources.iter().any(|(s, _)| s.plural == "status") {
                    status = Some(resource.clone());
                }
                if read.is_none() {
                    read = Some(resource);
                }
            }
        }
        let read = read.ok_or_else(|| {
            anyhow::anyhow!(
                "the cluster serves no {kind} in {NOTIFICATION_GROUP}: is Flux installed?"
            )
        })?;
        Ok(Served { read, status })
    };
    let alerts = serve("Alert")?;
    let providers = serve("Provider")?;
    let served_kinds = match alert_source_kinds(client, &alerts.read.version).await {
        Ok(kinds) => kinds,
        Err(error) => {
            tracing::warn!(error = %error, "Cannot read the Alert CRD; event source kinds outside Flux's own are warned about.");
            None
        }
    };
    let label_kinds = if object_labels {
        let wanted: Vec<String> = served_kinds.clone().unwrap_or_else(|| {
            SOURCE_KINDS
                .iter()
                .chain(FLUX_OPERATOR_KINDS)
                .map(|k| (*k).to_owned())
                .collect()
        });
        flux_kinds(client, &wanted).await?
    } else {
        Vec::new()
    };
    Ok(Discovered {
        alerts,
        providers,
        served_kinds,
        label_kinds,
    })
}

/// The enum of `spec.eventSources[].kind` in the served Alert schema of
/// `version`; `None` when it has none.
async fn alert_source_kinds(client: &Client, version: &str) -> anyhow::Result<Option<Vec<String>>> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = crds.get(&format!("alerts.{NOTIFICATION_GROUP}")).await?;
    let crd = serde_json::to_value(crd)?;
    let versions = crd
        .pointer("/spec/versions")
        .and_then(serde_json::Value::as_array)
        .cloned()
        .unwrap_or_default();
    let Some(schema) = versions
        .iter()
        .find(|v| v.get("name").and_then(serde_json::Value::as_str) == Some(version))
    else {
        return Ok(None);
    };
    let kinds = schema
        .pointer(
            "/schema/openAPIV3Schema/properties/spec/properties/eventSources/items/properties/kind/enum",
        )
        .and_then(serde_json::Value::as_array)
        .map(|kinds| {
            kinds
                .iter()
                .filter_map(|k| k.as_str().map(ToOwned::to_owned))
                .collect()
        });
    Ok(kinds)
}

/// Where each of `kinds` is served, in the Flux groups (`*.fluxcd.io`,
/// `fluxcd.controlplane.io`), at its highest-priority version. Kinds the
/// cluster does not serve are left out.
async fn flux_kinds(client: &Client, kinds: &[String]) -> anyhow::Result<Vec<ApiResource>> {
    let groups = client
        .list_api_groups()
        .await
        .map_err(|e| anyhow::anyhow!("cannot list API groups: {e}"))?;
    let mut found = Vec::new();
    for group in groups.groups {
        let name = group.name.as_str();
        if name == NOTIFICATION_GROUP
            || !(name.ends_with(".fluxcd.io") || name == "fluxcd.controlplane.io")
        {
            continue;
        }
        let group = kube::discovery::group(client, name)
            .await
            .map_err(|e| anyhow::anyhow!("cannot discover {name}: {e}"))?;
        for (resource, caps) in group.resources_by_stability() {
            if kinds.contains(&resource.kind)
                && caps.supports_operation(kube::discovery::verbs::WATCH)
            {
                found.push(resource);
            }
        }
    }
    found.sort_by(|a, b| a.kind.cmp(&b.kind));
    let missing: Vec<&String> = kinds
        .iter()
        .filter(|k| !found.iter().any(|r| &r.kind == *k))
        .collect();
    if !missing.is_empty() {
        tracing::info!(kinds = ?missing, "The cluster serves no such kinds; events about them carry no labels.");
    }
    Ok(found)
}

type Key = (String, String);

/// The labels of one Flux kind's objects.
#[derive(Debug, Default)]
struct KindLabels {
    /// Listed at least once.
    synced: bool,
    /// Objects with at least one label.
    objects: HashMap<Key, BTreeMap<String, String>>,
}

/// The labels of the Flux objects of one cluster, by kind.
#[derive(Debug)]
pub struct LabelIndex {
    cluster: String,
    kinds: RwLock<HashMap<String, KindLabels>>,
}

// === impl LabelIndex ===

impl LabelIndex {
    fn new(cluster: String) -> Self {
        Self {
            cluster,
            kinds: RwLock::default(),
        }
    }

    fn with_kind<T>(&self, kind: &str, f: impl FnOnce(&mut KindLabels) -> T) -> T {
        let mut kinds = self
            .kinds
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(kinds.entry(kind.to_owned()).or_default())
    }
}

impl ObjectLabels for LabelIndex {
    fn labels(
        &self,
        cluster: &str,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Option<BTreeMap<String, String>> {
        if cluster != self.cluster {
            return None;
        }
        let kinds = self
            .kinds
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let labels = kinds.get(kind).filter(|k| k.synced)?;
        Some(
            labels
                .objects
                .get(&(namespace.to_owned(), name.to_owned()))
                .cloned()
                .unwrap_or_default(),
        )
    }
}

fn labels_of(meta: &ObjectMeta) -> (Key, BTreeMap<String, String>) {
    (key_of(meta), meta.labels.clone().unwrap_or_default())
}

/// Keeps the labels of one kind current until `cancel` fires; counts down
/// `pending` once, after the first list (or the first failure to list).
async fn watch_labels(
    api: Api<PartialObjectMeta<DynamicObject>>,
    kind: String,
    index: Arc<LabelIndex>,
    pending: Arc<watch::Sender<usize>>,
    cancel: CancellationToken,
) {
    let mut counted = false;
    let count_down = |counted: &mut bool| {
        if !*counted {
            *counted = true;
            pending.send_modify(|n| *n = n.saturating_sub(1));
        }
    };
    let mut stream = watcher(api, watcher::Config::default().any_semantic())
        .default_backoff()
        .boxed();
    let mut buffer: Option<HashMap<Key, BTreeMap<String, String>>> = None;
    loop {
        let next = tokio::select! {
            () = cancel.cancelled() => return,
            next = stream.next() => next,
        };
        let Some(next) = next else { return };
        match next {
            Ok(WatchEvent::Init) => buffer = Some(HashMap::new()),
            Ok(WatchEvent::InitApply(object)) => {
                let (key, labels) = labels_of(&object.metadata);
                if let Some(buffer) = buffer.as_mut()
                    && !labels.is_empty()
                {
                    buffer.insert(key, labels);
                }
            }
            Ok(WatchEvent::InitDone) => {
                let objects = buffer.take().unwrap_or_default();
                index.with_kind(&kind, |k| {
                    k.objects = objects;
                    k.synced = true;
                });
                count_down(&mut counted);
            }
            Ok(WatchEvent::Apply(object)) => {
                let (key, labels) = labels_of(&object.metadata);
                index.with_kind(&kind, |k| {
                    if labels.is_empty() {
                        k.objects.remove(&key);
                    } else {
                        k.objects.insert(key, labels);
                    }
                });
            }
            Ok(WatchEvent::Delete(object)) => {
                let key = key_of(&object.metadata);
                index.with_kind(&kind, |k| {
                    k.objects.remove(&key);
                });
            }
            Err(error) => {
                if !counted {
                    tracing::warn!(kind = %kind, error = %error, "Cannot list the labels of this kind; Alerts selecting it by matchLabels do not match until it can be listed.");
                } else {
                    tracing::debug!(kind = %kind, error = %error, "Watch of labels interrupted; retrying.");
                }
                count_down(&mut counted);
            }
        }
    }
}

/// One Alert or Provider as read.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    object: Result<Object, Box<Problem>>,
    uid: Arc<str>,
    generation: i64,
}

/// The objects of one kind, with a relist in progress.
#[derive(Debug)]
struct KindState<T> {
    synced: bool,
    objects: HashMap<Key, T>,
    relist: Option<HashMap<Key, T>>,
}

impl<T> Default for KindState<T> {
    fn default() -> Self {
        Self {
            synced: false,
            objects: HashMap::new(),
            relist: None,
        }
    }
}

// === impl KindState ===

impl<T: PartialEq> KindState<T> {
    /// Applies a watch event; true when the objects changed (a change of
    /// status or resourceVersion alone changes nothing Herald reads).
    fn apply(&mut self, event: WatchEvent<(Key, T)>) -> bool {
        match event {
            WatchEvent::Init => {
                self.relist = Some(HashMap::new());
                false
            }
            WatchEvent::InitApply((key, value)) => {
                self.relist
                    .get_or_insert_with(HashMap::new)
                    .insert(key, value);
                false
            }
            WatchEvent::InitDone => {
                self.objects = self.relist.take().unwrap_or_default();
                self.synced = true;
                true
            }
            WatchEvent::Apply((key, value)) => {
                if self.objects.get(&key) == Some(&value) {
                    return false;
                }
                self.objects.insert(key, value);
                true
            }
            WatchEvent::Delete((key, _)) => self.objects.remove(&key).is_some(),
        }
    }
}

/// A Secret as kept: its data only when a Provider names it.
#[derive(Debug, Clone, PartialEq)]
enum Kept {
    Data(Arc<FluxSecret>),
    /// It exists; nothing names it, so its data is not kept.
    Unused,
}

/// What the watchers report to the source's loop.
enum Change {
    Alert(WatchEvent<(Key, Entry)>),
    Provider(WatchEvent<(Key, Entry)>),
    Secret(WatchEvent<(Key, ReadSecret)>),
    /// A Secret read on its own (a Provider began to name it).
    Fetched(Key, Option<ReadSecret>),
    Failed(&'static str, watcher::Error),
}

fn map_event<K, T>(event: WatchEvent<K>, f: impl Fn(K) -> (Key, T)) -> WatchEvent<(Key, T)> {
    match event {
        WatchEvent::Init => WatchEvent::Init,
        WatchEvent::InitDone => WatchEvent::InitDone,
        WatchEvent::InitApply(o) => WatchEvent::InitApply(f(o)),
        WatchEvent::Apply(o) => WatchEvent::Apply(f(o)),
        WatchEvent::Delete(o) => WatchEvent::Delete(f(o)),
    }
}

fn key_of(meta: &ObjectMeta) -> Key {
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

/// Parses a served Alert or Provider exactly as a manifest in a folder.
fn entry(object: DynamicObject, resource: &ApiResource) -> (Key, Entry) {
    let key = key_of(&object.metadata);
    let id = format!("{}/{}/{}", resource.kind, key.0, key.1);
    let mut value = serde_json::to_value(&object).unwrap_or_default();
    value["apiVersion"] = resource.api_version.clone().into();
    value["kind"] = resource.kind.clone().into();
    // Straight from JSON; the YAML reading of the text only when that fails
    // (it reads scalars as a folder would, and says what is wrong).
    let parsed = match parse_value(&value, &key.0) {
        Some(parsed) => parsed.map_err(|e| e.reason),
        None => serde_json::to_string(&value)
            .map_err(|e| e.to_string())
            .and_then(|text| parse_documents(&text, &key.0))
            .and_then(|mut objects| {
                objects
                    .pop()
                    .ok_or_else(|| "not an Alert or Provider".to_owned())
                    .and_then(|o| o.map_err(|e| e.reason))
            }),
    }
    .map_err(|reason| Box::new(Problem::error(PathBuf::new(), id, reason)));
    let entry = Entry {
        object: parsed,
        uid: object.metadata.uid.as_deref().unwrap_or_default().into(),
        generation: object.metadata.generation.unwrap_or_default(),
    };
    (key, entry)
}

/// A Secret as its watcher reads it: whole, or its metadata only where the
/// service does not read Secrets' data.
#[derive(Debug)]
enum ReadSecret {
    Whole(Secret),
    Metadata(ObjectMeta),
}

// === impl ReadSecret ===

impl ReadSecret {
    fn meta(&self) -> &ObjectMeta {
        match self {
            Self::Whole(secret) => &secret.metadata,
            Self::Metadata(meta) => meta,
        }
    }

    /// Herald's form of it: name, namespace, uid and the data (none from
    /// metadata). Labels and annotations are not kept: no Provider reads
    /// them, and `kubectl apply` leaves the whole Secret in an annotation.
    fn flux_secret(&self) -> Arc<FluxSecret> {
        let meta = self.meta();
        let data: SecretData = match self {
            Self::Whole(secret) => secret
                .data
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.0.clone()))
                .chain(
                    secret
                        .string_data
                        .iter()
                        .flatten()
                        .map(|(k, v)| (k.clone(), v.clone().into_bytes())),
                )
                .collect(),
            Self::Metadata(_) => SecretData::default(),
        };
        Arc::new(FluxSecret {
            meta: FluxMeta {
                name: meta.name.clone().unwrap_or_default(),
                namespace: meta.namespace.clone().unwrap_or_default(),
                uid: meta.uid.clone().unwrap_or_default(),
                ..FluxMeta::default()
            },
            data,
        })
    }
}

/// The Secrets a Provider names, in its namespace.
fn named_secrets(entry: &Entry) -> Vec<Key> {
    let Ok(Object::Provider(provider)) = &entry.object else {
        return Vec::new();
    };
    let spec = &provider.spec;
    [
        &spec.secret_ref,
        &spec.cert_secret_ref,
        &spec.proxy_secret_ref,
    ]
    .into_iter()
    .flatten()
    .filter(|r| !r.name.is_empty())
    .map(|r| (provider.meta.namespace.clone(), r.name.clone()))
    .collect()
}

/// Helm release and service-account-token Secrets are never a Provider's.
const SECRET_FIELDS: &str = "type!=helm.sh/release.v1,type!=kubernetes.io/service-account-token";

/// Flux's Alerts, Providers and Secrets in a cluster, feeding a catalog.
pub struct KubeSource {
    client: Client,
    args: KubeArgs,
    writer: CatalogWriter,
    labels: Arc<LabelIndex>,
}

// === impl KubeSource ===

impl std::fmt::Debug for KubeSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeSource")
            .field("args", &self.args)
            .finish_non_exhaustive()
    }
}

impl KubeSource {
    /// Connects to the cluster (without listing anything yet) and returns
    /// the catalog this source feeds: empty and not ready until
    /// [`KubeSource::run`] has listed every kind.
    ///
    /// # Errors
    ///
    /// No usable Kubernetes configuration.
    pub async fn open(
        args: &KubeArgs,
        options: AlertOptions,
        readiness: &Readiness,
    ) -> anyhow::Result<(Catalog, Self)> {
        let client = client(args).await?;
        Ok(Self::with_client(client, args, options, readiness))
    }

    /// As [`KubeSource::open`], with a client already built.
    #[must_use]
    pub fn with_client(
        client: Client,
        args: &KubeArgs,
        options: AlertOptions,
        readiness: &Readiness,
    ) -> (Catalog, Self) {
        let (catalog, writer) = Catalog::with_source(
            format!("kubernetes {}", client.default_namespace()),
            options,
            readiness,
        );
        (catalog, Self::with_writer(client, args, writer))
    }

    /// A source publishing through `writer` (a member cluster's catalog,
    /// made before its cluster could be reached).
    #[must_use]
    pub fn with_writer(client: Client, args: &KubeArgs, writer: CatalogWriter) -> Self {
        let labels = Arc::new(LabelIndex::new(args.catalog_cluster.clone()));
        if args.object_labels {
            writer.set_labels(labels.clone());
        }
        Self {
            client,
            args: args.clone(),
            writer,
            labels,
        }
    }

    /// Discovers, lists and watches until `cancel` fires, publishing the
    /// whole set after the first full list and after each change.
    pub async fn run(self, cancel: CancellationToken) {
        let mut wait = Duration::from_millis(500);
        let discovered = loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                found = discover(&self.client, self.args.object_labels) => match found {
                    Ok(found) => break found,
                    Err(error) => {
                        tracing::warn!(error = %error, retry_in = ?wait, "Cannot discover Flux's Alerts and Providers; retrying.");
                    }
                },
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
            wait = (wait * 2).min(Duration::from_secs(30));
        };
        tracing::info!(
            alerts = %discovered.alerts.read.api_version,
            providers = %discovered.providers.read.api_version,
            label_kinds = discovered.label_kinds.len(),
            "Reading Flux's Alerts and Providers from Kubernetes."
        );
        let health = self.start_health(&discovered, &cancel);
        let (pending, pending_rx) = watch::channel(discovered.label_kinds.len());
        let pending = Arc::new(pending);
        for resource in &discovered.label_kinds {
            let api = self.api::<PartialObjectMeta<DynamicObject>>(resource);
            tokio::spawn(watch_labels(
                api,
                resource.kind.clone(),
                self.labels.clone(),
                pending.clone(),
                cancel.clone(),
            ));
        }
        self.watch(discovered, health, pending_rx, cancel).await;
    }

    /// Events, status and the Lease that elects their writer.
    fn start_health(&self, discovered: &Discovered, cancel: &CancellationToken) -> Health {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "herald".to_owned());
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let settings = EventSettings {
            instance: host.clone(),
            ..EventSettings::default()
        };
        let (events, worker) = ObjectEvents::start(self.client.clone(), settings, cancel.clone());
        tokio::spawn(worker);
        let (leadership, elector) = Leadership::start(
            self.client.clone(),
            self.client.default_namespace(),
            LEASE,
            format!("{host}-{}-{nanos:08x}", std::process::id()),
            LeaseSettings::default(),
            cancel.clone(),
        );
        tokio::spawn(elector);
        let (health, reporter) = Health::start(
            events,
            leadership,
            StatusWriter::new(self.client.clone()),
            discovered,
            cancel,
        );
        self.writer.set_reporter(Arc::new(reporter));
        health
    }

    fn api<K>(&self, resource: &ApiResource) -> Api<K>
    where
        K: kube::Resource<DynamicType = ApiResource, Scope = kube::core::DynamicResourceScope>,
    {
        if self.args.watch_namespace.is_empty() {
            Api::all_with(self.client.clone(), resource)
        } else {
            Api::namespaced_with(self.client.clone(), &self.args.watch_namespace, resource)
        }
    }

    fn objects_stream(
        &self,
        served: &Served,
        wrap: fn(WatchEvent<(Key, Entry)>) -> Change,
        what: &'static str,
    ) -> BoxStream<'static, Change> {
        let api = self.api::<DynamicObject>(&served.read);
        let mut config = watcher::Config::default().any_semantic();
        if !self.args.watch_label_selector.is_empty() {
            config = config.labels(&self.args.watch_label_selector);
        }
        let resource = served.read.clone();
        watcher(api, config)
            .default_backoff()
            .map(move |event| match event {
                Ok(event) => wrap(map_event(event, |o| entry(o, &resource))),
                Err(error) => Change::Failed(what, error),
            })
            .boxed()
    }

    fn secrets_stream(&self) -> BoxStream<'static, Change> {
        let config = watcher::Config::default()
            .any_semantic()
            .fields(SECRET_FIELDS);
        let wrap = |event: Result<WatchEvent<(Key, ReadSecret)>, watcher::Error>| match event {
            Ok(event) => Change::Secret(event),
            Err(error) => Change::Failed("Secret", error),
        };
        if self.args.secret_data {
            watcher(self.secrets_api::<Secret>(), config)
                .default_backoff()
                .map(move |event| {
                    wrap(event.map(|event| {
                        map_event(event, |s| (key_of(&s.metadata), ReadSecret::Whole(s)))
                    }))
                })
                .boxed()
        } else {
            // Metadata-only requests: the data never reaches this process.
            watcher(self.secrets_api::<PartialObjectMeta<Secret>>(), config)
                .default_backoff()
                .map(move |event| {
                    wrap(event.map(|event| {
                        map_event(event, |s| {
                            (key_of(&s.metadata), ReadSecret::Metadata(s.metadata))
                        })
                    }))
                })
                .boxed()
        }
    }

    fn secrets_api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        if self.args.watch_namespace.is_empty() {
            Api::all(self.client.clone())
        } else {
            Api::namespaced(self.client.clone(), &self.args.watch_namespace)
        }
    }

    async fn watch(
        self,
        discovered: Discovered,
        mut health: Health,
        mut labels_pending: watch::Receiver<usize>,
        cancel: CancellationToken,
    ) {
        let mut streams: SelectAll<BoxStream<'static, Change>> = SelectAll::new();
        streams.push(self.objects_stream(&discovered.alerts, Change::Alert, "Alert"));
        streams.push(self.objects_stream(&discovered.providers, Change::Provider, "Provider"));
        let (fetched_tx, fetched_rx) = mpsc::unbounded_channel::<Change>();
        streams.push(
            futures::stream::unfold(fetched_rx, |mut rx| async move {
                rx.recv().await.map(|change| (change, rx))
            })
            .boxed(),
        );
        let mut state = State::default();
        let mut secrets_started = false;
        let mut published = false;
        let mut due: Option<tokio::time::Instant> = None;
        let mut labels_done = false;
        let mut leader = health.leadership();
        let mut leader_done = false;
        loop {
            let ready = state.synced() && (labels_done || *labels_pending.borrow() == 0);
            if ready && !published {
                self.publish(&mut state, &discovered, &mut health);
                published = true;
                due = None;
            }
            let sleep_until = due.unwrap_or_else(tokio::time::Instant::now);
            let change = tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep_until(sleep_until), if due.is_some() && published => {
                    due = None;
                    self.publish(&mut state, &discovered, &mut health);
                    continue;
                }
                changed = leader.changed(), if !leader_done => {
                    // The elector ended: the process is stopping.
                    leader_done = changed.is_err();
                    if !leader_done && *leader.borrow_and_update() && published {
                        health.became_leader(&state.seen());
                    }
                    continue;
                }
                changed = labels_pending.changed(), if !labels_done => {
                    // Every label watcher ended: nothing more to wait for.
                    labels_done = changed.is_err();
                    continue;
                }
                change = streams.next() => change,
            };
            let Some(change) = change else { return };
            let changed = match change {
                Change::Alert(event) => state.alerts.apply(event),
                Change::Provider(event) => {
                    let changed = state.providers.apply(event);
                    if changed {
                        state.named = state.providers_named();
                    }
                    if state.providers.synced && !secrets_started {
                        secrets_started = true;
                        streams.push(self.secrets_stream());
                    }
                    if changed && state.secrets.synced {
                        self.fetch_newly_named(&state, &fetched_tx);
                    }
                    changed
                }
                Change::Secret(event) => {
                    let named = &state.named;
                    let event = map_event(event, |(key, secret)| {
                        let kept = if named.contains(&key) {
                            Kept::Data(secret.flux_secret())
                        } else {
                            Kept::Unused
                        };
                        (key, kept)
                    });
                    state.secrets.apply(event)
                }
                Change::Fetched(key, secret) => match secret {
                    Some(secret) if state.named.contains(&key) => {
                        state
                            .secrets
                            .objects
                            .insert(key, Kept::Data(secret.flux_secret()));
                        true
                    }
                    _ => false,
                },
                Change::Failed(what, error) => {
                    tracing::warn!(kind = what, error = %error, "Kubernetes watch failed; retrying with backoff.");
                    false
                }
            };
            if changed && published && due.is_none() {
                due = Some(tokio::time::Instant::now() + self.args.catalog_debounce);
            }
        }
    }

    /// Reads once each Secret a Provider now names whose data is not kept.
    fn fetch_newly_named(&self, state: &State, tx: &mpsc::UnboundedSender<Change>) {
        for key in &state.named {
            let Some(Kept::Unused) = state.secrets.objects.get(key) else {
                continue;
            };
            let api: Api<Secret> = Api::namespaced(self.client.clone(), &key.0);
            let tx = tx.clone();
            let key = key.clone();
            let whole = self.args.secret_data;
            tokio::spawn(async move {
                let read = if whole {
                    api.get_opt(&key.1).await.map(|s| s.map(ReadSecret::Whole))
                } else {
                    api.get_metadata_opt(&key.1)
                        .await
                        .map(|s| s.map(|s| ReadSecret::Metadata(s.metadata)))
                };
                match read {
                    Ok(secret) => {
                        // The source stopped: nothing waits for it.
                        tx.send(Change::Fetched(key, secret)).ok();
                    }
                    Err(error) => {
                        tracing::warn!(secret = %format!("{}/{}", key.0, key.1), error = %error, "Cannot read a Secret a Provider names; it is read again when it changes.");
                    }
                }
            });
        }
    }

    fn publish(&self, state: &mut State, discovered: &Discovered, health: &mut Health) {
        // Data of Secrets no Provider names any more is dropped.
        for (key, kept) in &mut state.secrets.objects {
            if matches!(kept, Kept::Data(_)) && !state.named.contains(key) {
                *kept = Kept::Unused;
            }
        }
        let mut objects = Vec::new();
        let mut problems = Vec::new();
        for entry in state
            .alerts
            .objects
            .values()
            .chain(state.providers.objects.values())
        {
            match &entry.object {
                Ok(object) => objects.push((PathBuf::new(), object.clone())),
                Err(problem) => problems.push(Problem::clone(problem)),
            }
        }
        for kept in state.secrets.objects.values() {
            if let Kept::Data(secret) = kept {
                objects.push((PathBuf::new(), Object::Secret(Arc::clone(secret))));
            }
        }
        let snapshot =
            self.writer
                .publish_served(objects, problems, discovered.served_kinds.as_deref());
        health.observe(&state.seen(), &snapshot.problems);
    }
}

/// Everything the source has read.
#[derive(Debug, Default)]
struct State {
    alerts: KindState<Entry>,
    providers: KindState<Entry>,
    secrets: KindState<Kept>,
    /// Every Secret a Provider names (see [`State::providers_named`]).
    named: HashSet<Key>,
}

// === impl State ===

impl State {
    fn synced(&self) -> bool {
        self.alerts.synced && self.providers.synced && self.secrets.synced
    }

    /// Every Alert and Provider, as the health tracker knows them.
    fn seen(&self) -> Vec<Seen<'_>> {
        let mut seen = Vec::with_capacity(self.alerts.objects.len() + self.providers.objects.len());
        for (kind, objects) in [
            ("Alert", &self.alerts.objects),
            ("Provider", &self.providers.objects),
        ] {
            for ((namespace, name), entry) in objects {
                seen.push(Seen {
                    kind,
                    namespace,
                    name,
                    uid: &entry.uid,
                    generation: entry.generation,
                });
            }
        }
        seen
    }

    /// Every Secret a Provider names, in the listed or relisting Providers.
    fn providers_named(&self) -> HashSet<Key> {
        let mut named = HashSet::new();
        for entry in self.providers.objects.values() {
            named.extend(named_secrets(entry));
        }
        if let Some(relist) = &self.providers.relist {
            for entry in relist.values() {
                named.extend(named_secrets(entry));
            }
        }
        named
    }
}
