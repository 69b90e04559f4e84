//! The catalog: the Alerts, Providers and Secrets the router and senders work
//! from, behind one read side whatever their source.
//!
//! The router and the senders hold a [`Catalog`] and ask it for a
//! [`Snapshot`]; they never know where the objects came from. A source holds
//! the [`CatalogWriter`] of its catalog and publishes every complete set of
//! objects it reads. Checking each object against its kind's rules, dropping
//! the unusable ones, compiling the Alerts and collecting [`Problem`]s are done
//! here, the same for every source.
//!
//! Sources:
//!
//! - [`folder`]: a folder of Flux YAML, reloaded when a file changes.
//! - [`kubernetes`]: Flux's own Alerts, Providers and Secrets watched in a
//!   cluster: it publishes the whole set after the first full list and again
//!   (debounced) after each change, gives the labels of the Flux objects
//!   events are about (for `matchLabels`), and tells the objects' owners
//!   about dead letters with Kubernetes Events.
//!
//! What a source knows beyond objects reaches the read side through two
//! small traits, so routing and sending stay the same for every source:
//! [`ObjectLabels`] (labels of the objects events are about) and
//! [`Reporter`] (dead letters told back to the Alert and Provider).
//!
//! A snapshot is immutable; a publish builds a new one and swaps it in, so an
//! event is always routed against one consistent set of objects and nothing
//! waits on a lock.

pub mod folder;
pub mod kubernetes;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use herald_flux::objects::{Object, ObjectMeta};
use herald_flux::template::Templates;
use herald_flux::{Alert, AlertIndex, CompiledAlert, Provider, Secret};

use crate::health::Readiness;
use tokio_util::sync::CancellationToken;

pub use folder::{FolderSource, load_folder};
pub use herald_flux::AlertOptions;
pub use kubernetes::KubeSource;

/// Where the catalog comes from.
#[derive(Debug, Clone, clap::Args)]
pub struct CatalogArgs {
    /// Where Alerts, Providers and Secrets are read: a folder of Flux YAML,
    /// or Flux's own objects in a Kubernetes cluster.
    #[arg(
        long = "catalog",
        env = "HERALD_CATALOG",
        value_enum,
        default_value = "folder"
    )]
    pub source: SourceKind,
    /// A folder of Flux Alert, Provider and Secret manifests (YAML, searched recursively).
    #[arg(long, env = "HERALD_CONFIG_DIR", default_value = "examples/config")]
    pub config_dir: PathBuf,
    /// The namespace of objects whose manifest names none.
    #[arg(long, env = "HERALD_DEFAULT_NAMESPACE", default_value = "default")]
    pub default_namespace: String,
    /// How often the folder is checked for changes.
    #[arg(long, env = "HERALD_RELOAD_INTERVAL", default_value = "2s", value_parser = crate::nats::parse_duration)]
    pub reload_interval: Duration,
    #[command(flatten)]
    pub kubernetes: kubernetes::KubeArgs,
    #[command(flatten)]
    pub fleet_admin: FleetAdminArgs,
}

// === impl CatalogArgs ===

impl CatalogArgs {
    /// How this install compiles Alerts.
    #[must_use]
    pub fn alert_options(&self) -> AlertOptions {
        self.fleet_admin.alert_options()
    }
}

/// The namespaces whose Alerts may hear every namespace.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct FleetAdminArgs {
    /// A fleet administration namespace (repeatable, or comma-separated):
    /// its Alerts may name `namespace: "*"` in an event source to hear that
    /// kind in every namespace, which Flux refuses; anywhere else such a
    /// source is a problem on its Alert and matches nothing.
    /// `--no-cross-namespace-refs` does not deny these sources.
    #[arg(
        long = "fleet-admin-namespace",
        env = "HERALD_FLEET_ADMIN_NAMESPACES",
        value_delimiter = ',',
        value_name = "NS"
    )]
    pub fleet_admin_namespaces: Vec<String>,
}

// === impl FleetAdminArgs ===

impl FleetAdminArgs {
    /// How this install compiles Alerts.
    #[must_use]
    pub fn alert_options(&self) -> AlertOptions {
        AlertOptions::with_fleet_admin_namespaces(
            self.fleet_admin_namespaces.iter().map(|ns| ns.trim()),
        )
    }
}

/// The two catalog sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SourceKind {
    /// `--config-dir`, a folder of Flux YAML.
    Folder,
    /// Flux's Alerts, Providers and Secrets in a cluster (KUBECONFIG, then in-cluster).
    Kubernetes,
}

/// A catalog's source, to run beside the services.
#[derive(Debug)]
pub enum Source {
    /// See [`FolderSource`].
    Folder(FolderSource),
    /// See [`KubeSource`].
    Kubernetes(KubeSource),
}

// === impl Source ===

impl Source {
    /// Opens the source `args` name and returns the catalog it feeds. A
    /// folder is read once before this returns; a cluster is listed by
    /// [`Source::run`], and the catalog is not ready until then.
    ///
    /// # Errors
    ///
    /// A folder that cannot be read; a kubeconfig that cannot be loaded.
    pub async fn open(
        args: &CatalogArgs,
        readiness: &Readiness,
    ) -> anyhow::Result<(Catalog, Self)> {
        match args.source {
            SourceKind::Folder => {
                let (catalog, source) = FolderSource::open(args, readiness)?;
                Ok((catalog, Self::Folder(source)))
            }
            SourceKind::Kubernetes => {
                let (catalog, source) =
                    KubeSource::open(&args.kubernetes, args.alert_options(), readiness).await?;
                Ok((catalog, Self::Kubernetes(source)))
            }
        }
    }

    /// Keeps the catalog current until `cancel` fires.
    pub async fn run(self, cancel: CancellationToken) {
        match self {
            Self::Folder(source) => source.run(cancel).await,
            Self::Kubernetes(source) => source.run(cancel).await,
        }
    }
}

/// The readiness check, and the topic of the `/readyz` details, of the catalog.
const READINESS: &str = "catalog";

/// How bad a [`Problem`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Something is not used: a file, an object, or a part of one (an
    /// invalid regex). `herald validate` fails on it.
    Error,
    /// Used as written, but probably not what the author meant or not what
    /// Flux itself would do with it.
    Warning,
}

/// Something in the catalog's objects that cannot be used (an error) or
/// may not work as meant (a warning).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Problem {
    /// Whether the object (or file) is left out.
    pub severity: Severity,
    /// Where the object came from: the file, relative to the folder, and
    /// the line its document starts at when known (`alerts.yaml:12`); empty
    /// for a source without files.
    pub file: PathBuf,
    /// `Kind/namespace/name`, or empty when the whole file is unreadable.
    pub object: String,
    /// What is wrong.
    pub reason: String,
}

// === impl Problem ===

impl Problem {
    /// Something in `file` that is not used.
    #[must_use]
    pub fn error(file: PathBuf, object: String, reason: String) -> Self {
        Self {
            severity: Severity::Error,
            file,
            object,
            reason,
        }
    }

    /// Something in `file` that is used but may not work as meant.
    #[must_use]
    pub fn warning(file: PathBuf, object: String, reason: String) -> Self {
        Self {
            severity: Severity::Warning,
            file,
            object,
            reason,
        }
    }

    /// The file and the line (0 when unknown), for ordering: `a.yaml:9`
    /// before `a.yaml:12`.
    fn place(&self) -> (&str, usize) {
        let text = self.file.to_str().unwrap_or_default();
        match text.rsplit_once(':') {
            Some((file, line)) if line.bytes().all(|b| b.is_ascii_digit()) && !line.is_empty() => {
                (file, line.parse().unwrap_or(0))
            }
            _ => (text, 0),
        }
    }

    /// Whether this is an error (not a warning).
    #[must_use]
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// `file: object: reason`, with `warning: ` before a warning.
impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.severity == Severity::Warning {
            f.write_str("warning: ")?;
        }
        let mut parts = Vec::with_capacity(3);
        let file = self.file.display().to_string();
        if !file.is_empty() {
            parts.push(file.as_str());
        }
        if !self.object.is_empty() {
            parts.push(self.object.as_str());
        }
        parts.push(self.reason.as_str());
        f.write_str(&parts.join(": "))
    }
}

/// The objects of one kind in a snapshot, sorted by namespace and name, each
/// with the file it came from: a sorted list holds no copy of the keys.
#[derive(Debug)]
struct Sorted<T> {
    objects: Vec<Arc<T>>,
    files: Vec<PathBuf>,
}

impl<T> Default for Sorted<T> {
    fn default() -> Self {
        Self {
            objects: Vec::new(),
            files: Vec::new(),
        }
    }
}

/// What a snapshot's objects are found by.
trait Named {
    fn meta(&self) -> &ObjectMeta;

    fn key(&self) -> (&str, &str) {
        let meta = self.meta();
        (meta.namespace.as_str(), meta.name.as_str())
    }
}

impl Named for Alert {
    fn meta(&self) -> &ObjectMeta {
        &self.meta
    }
}

impl Named for Provider {
    fn meta(&self) -> &ObjectMeta {
        &self.meta
    }
}

impl Named for Secret {
    fn meta(&self) -> &ObjectMeta {
        &self.meta
    }
}

// === impl Sorted ===

impl<T: Named> Sorted<T> {
    /// Sorts `listed` as the API server lists objects (namespace, then
    /// name); of two with the same namespace and name, the first read is
    /// kept and the other left out with an error.
    fn new(mut listed: Vec<(PathBuf, Arc<T>)>, kind: &str, problems: &mut Vec<Problem>) -> Self {
        // Stable: the first read stays first among equals.
        listed.sort_by(|(_, a), (_, b)| a.key().cmp(&b.key()));
        let mut sorted = Self {
            objects: Vec::with_capacity(listed.len()),
            files: Vec::with_capacity(listed.len()),
        };
        for (file, object) in listed {
            if sorted
                .objects
                .last()
                .is_some_and(|last| last.key() == object.key())
            {
                let (namespace, name) = object.key();
                let first = sorted
                    .files
                    .last()
                    .map(PathBuf::as_path)
                    .unwrap_or(Path::new(""));
                problems.push(Problem::error(
                    file,
                    format!("{kind}/{namespace}/{name}"),
                    format!(
                        "already defined in {}; this copy is ignored",
                        first.display()
                    ),
                ));
                continue;
            }
            sorted.objects.push(object);
            sorted.files.push(file);
        }
        sorted
    }

    fn position(&self, namespace: &str, name: &str) -> Option<usize> {
        self.objects
            .binary_search_by(|object| object.key().cmp(&(namespace, name)))
            .ok()
    }

    fn get(&self, namespace: &str, name: &str) -> Option<&Arc<T>> {
        self.position(namespace, name).map(|i| &self.objects[i])
    }

    fn contains(&self, namespace: &str, name: &str) -> bool {
        self.position(namespace, name).is_some()
    }
}

/// One consistent set of objects.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Alerts, indexed for matching.
    pub alerts: AlertIndex,
    /// The file (and line) of each Alert, in the order of `alerts.alerts()`.
    alert_files: Vec<PathBuf>,
    providers: Sorted<Provider>,
    /// Each Provider's templates (`herald.dev/template`, `slack-blocks`),
    /// compiled: in the order of `providers`.
    provider_templates: Vec<Arc<Templates>>,
    secrets: Sorted<Secret>,
    /// Every unusable file or object (errors) and every doubtful one
    /// (warnings), in file order, errors first within a file.
    pub problems: Vec<Problem>,
}

// === impl Snapshot ===

impl Snapshot {
    /// Builds a snapshot from the objects a source read (in its order, each
    /// with the file it came from) and the problems it met reading them.
    ///
    /// Each object is checked against its kind's rules; one that breaks them
    /// is left out with an error, as is a second object of the same kind,
    /// namespace and name. What is accepted but differs from Flux (an event
    /// source kind outside Flux's enum) is a warning. Alerts are compiled,
    /// and an invalid regex is an error too.
    /// Alerts are compiled with `options`.
    #[must_use]
    pub fn from_objects(
        objects: Vec<(PathBuf, Object)>,
        problems: Vec<Problem>,
        options: &AlertOptions,
    ) -> Self {
        Self::build(objects, problems, None, None, options)
    }

    /// As [`Snapshot::from_objects`], with the event source kinds the
    /// cluster's Alert CRD allows when the source knows them: a kind it
    /// allows is no warning (see [`herald_flux::Alert::warnings_served`]).
    /// An Alert `previous` compiled (the same object, shared with the
    /// source, and as much a fleet administration Alert under `options`)
    /// is not compiled again.
    ///
    /// References are checked too: an Alert naming a Provider that does not
    /// exist, and a Provider naming a Secret that does not exist, are errors
    /// but stay in the snapshot, so their deliveries become dead letters
    /// with the reason instead of vanishing.
    #[must_use]
    pub fn build(
        objects: Vec<(PathBuf, Object)>,
        mut problems: Vec<Problem>,
        served_kinds: Option<&[String]>,
        previous: Option<&Snapshot>,
        options: &AlertOptions,
    ) -> Self {
        // Objects are shared with the source (each kind is behind an Arc):
        // nothing here copies one.
        let mut alerts = Vec::new();
        let mut providers = Vec::new();
        let mut secrets = Vec::new();
        // Every object is checked before any is compared with another, so
        // a file's rule errors come before its duplicates.
        for (file, object) in objects {
            problems.extend(
                object
                    .warnings_served(served_kinds)
                    .into_iter()
                    .map(|reason| Problem::warning(file.clone(), object.id(), reason)),
            );
            let broken = object.problems();
            if !broken.is_empty() {
                let id = object.id();
                problems.extend(
                    broken
                        .into_iter()
                        .map(|reason| Problem::error(file.clone(), id.clone(), reason)),
                );
                continue;
            }
            match object {
                Object::Alert(a) => alerts.push((file, a)),
                Object::Provider(p) => providers.push((file, p)),
                Object::Secret(s) => secrets.push((file, s)),
            }
        }
        let providers = Sorted::new(providers, "Provider", &mut problems);
        let secrets = Sorted::new(secrets, "Secret", &mut problems);
        let alerts = Sorted::new(alerts, "Alert", &mut problems);
        let before = previous.map_or(&[][..], |p| p.alerts.alerts());
        let alert_files = alerts.files.clone();
        let mut compiled: Vec<Arc<CompiledAlert>> = Vec::with_capacity(alerts.objects.len());
        for (alert, file) in alerts.objects.into_iter().zip(alerts.files) {
            let reused = before
                .binary_search_by(|c| Named::key(&*c.alert).cmp(&Named::key(&*alert)))
                .ok()
                .map(|i| &before[i])
                .filter(|c| {
                    Arc::ptr_eq(&c.alert, &alert)
                        && c.fleet_admin == options.is_fleet_admin(&alert.meta.namespace)
                });
            let alert = match reused {
                Some(c) => Arc::clone(c),
                None => Arc::new(CompiledAlert::with_options(alert, options)),
            };
            let id = format!("Alert/{}", alert.alert.key());
            problems.extend(
                alert
                    .warnings
                    .iter()
                    .map(|warning| Problem::error(file.clone(), id.clone(), warning.clone())),
            );
            let namespace = &alert.alert.meta.namespace;
            let provider = &alert.alert.spec.provider_ref.name;
            let provider_type = providers
                .get(namespace, provider)
                .map(|p| p.spec.type_.as_str());
            if let Some(problem) = provider_type.and_then(|t| alert.flood.commit_status_problem(t))
            {
                problems.push(Problem::error(file.clone(), id.clone(), problem));
            }
            if provider_type.is_none() {
                problems.push(Problem::error(
                    file,
                    id,
                    format!(
                        "spec.providerRef names the Provider {namespace}/{provider}, which does \
                         not exist; its events become dead letters until it does"
                    ),
                ));
            }
            compiled.push(alert);
        }
        let provider_templates = compile_provider_templates(&providers, previous, &mut problems);
        for (provider, file) in providers.objects.iter().zip(&providers.files) {
            let spec = &provider.spec;
            for (field, reference) in [
                ("secretRef", &spec.secret_ref),
                ("certSecretRef", &spec.cert_secret_ref),
                ("proxySecretRef", &spec.proxy_secret_ref),
            ] {
                let Some(reference) = reference.as_ref().filter(|r| !r.name.is_empty()) else {
                    continue;
                };
                let namespace = &provider.meta.namespace;
                if !secrets.contains(namespace, &reference.name) {
                    problems.push(Problem::error(
                        file.clone(),
                        format!("Provider/{}", provider.key()),
                        format!(
                            "spec.{field} names the Secret {namespace}/{}, which does not \
                             exist; its deliveries become dead letters until it does",
                            reference.name
                        ),
                    ));
                }
            }
        }
        // Per file, errors first.
        problems.sort_by(|a, b| (a.place(), a.severity).cmp(&(b.place(), b.severity)));
        Self {
            alerts: AlertIndex::new(compiled),
            alert_files,
            providers,
            provider_templates,
            secrets,
            problems,
        }
    }

    /// The templates of the Provider `namespace/name`, compiled.
    #[must_use]
    pub fn provider_templates(&self, namespace: &str, name: &str) -> Option<&Arc<Templates>> {
        self.providers
            .position(namespace, name)
            .and_then(|i| self.provider_templates.get(i))
    }

    /// The Alert `namespace/name`, compiled.
    #[must_use]
    pub fn alert(&self, namespace: &str, name: &str) -> Option<&Arc<CompiledAlert>> {
        // Snapshot::build keeps the Alerts sorted by namespace and name.
        let alerts = self.alerts.alerts();
        alerts
            .binary_search_by(|c| Named::key(&*c.alert).cmp(&(namespace, name)))
            .ok()
            .map(|i| &alerts[i])
    }

    /// The Provider `namespace/name`.
    #[must_use]
    pub fn provider(&self, namespace: &str, name: &str) -> Option<Arc<Provider>> {
        self.providers.get(namespace, name).cloned()
    }

    /// The Secret `namespace/name`.
    #[must_use]
    pub fn secret(&self, namespace: &str, name: &str) -> Option<Arc<Secret>> {
        self.secrets.get(namespace, name).cloned()
    }

    /// Every Alert, compiled, with the file (and line) it came from, sorted
    /// by namespace and name.
    pub fn alerts(&self) -> impl Iterator<Item = (&Arc<CompiledAlert>, &Path)> {
        self.alerts
            .alerts()
            .iter()
            .zip(self.alert_files.iter().map(PathBuf::as_path))
    }

    /// Every Provider with the file (and line) it came from, sorted by
    /// namespace and name.
    pub fn providers(&self) -> impl Iterator<Item = (&Arc<Provider>, &Path)> {
        self.providers
            .objects
            .iter()
            .zip(self.providers.files.iter().map(PathBuf::as_path))
    }

    /// Adds problems found after the snapshot was built (see
    /// [`install_checks`]), keeping the order: per file, errors first.
    pub fn add_problems(&mut self, problems: Vec<Problem>) {
        if problems.is_empty() {
            return;
        }
        self.problems.extend(problems);
        self.problems
            .sort_by(|a, b| (a.place(), a.severity).cmp(&(b.place(), b.severity)));
    }

    /// How many problems are errors and how many are warnings.
    #[must_use]
    pub fn problem_counts(&self) -> (usize, usize) {
        let errors = self.problems.iter().filter(|p| p.is_error()).count();
        (errors, self.problems.len() - errors)
    }

    /// How many Alerts, Providers and Secrets the snapshot holds.
    #[must_use]
    pub fn counts(&self) -> (usize, usize, usize) {
        (
            self.alerts.alerts().len(),
            self.providers.objects.len(),
            self.secrets.objects.len(),
        )
    }
}

/// The templates of each Provider, in the order of `providers`: compiled
/// once, or shared with `previous` for a Provider unchanged since; one that
/// does not compile is an error (its deliveries go out without it).
fn compile_provider_templates(
    providers: &Sorted<Provider>,
    previous: Option<&Snapshot>,
    problems: &mut Vec<Problem>,
) -> Vec<Arc<Templates>> {
    let empty = Arc::new(Templates::default());
    let mut out = Vec::with_capacity(providers.objects.len());
    for (provider, file) in providers.objects.iter().zip(&providers.files) {
        let (namespace, name) = Named::key(&**provider);
        let reused = previous.and_then(|p| {
            let i = p.providers.position(namespace, name)?;
            Arc::ptr_eq(&p.providers.objects[i], provider)
                .then(|| p.provider_templates.get(i).cloned())
                .flatten()
        });
        let (templates, found) = match reused {
            // Reported again: every snapshot lists all its problems.
            Some(templates) => {
                let found = templates.problems();
                (templates, found)
            }
            None if provider.meta.annotations.is_empty() => (Arc::clone(&empty), Vec::new()),
            None => {
                let (templates, found) = Templates::from_annotations(&provider.meta.annotations);
                (Arc::new(templates), found)
            }
        };
        let id = format!("Provider/{}", provider.key());
        problems.extend(
            found
                .into_iter()
                .map(|reason| Problem::error(file.clone(), id.clone(), reason)),
        );
        out.push(templates);
    }
    out
}

/// The labels of the Flux objects events are about, where a source can see
/// them (a Kubernetes catalog watching the objects' metadata).
pub trait ObjectLabels: Send + Sync + fmt::Debug {
    /// The labels of `kind` `namespace/name` in `cluster` (as ingest names
    /// it), or `None` when this source cannot know them: another cluster, a
    /// kind it does not watch, or one it has not listed yet. An object it
    /// watches but does not hold has no labels: `Some(empty)`.
    fn labels(
        &self,
        cluster: &str,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Option<BTreeMap<String, String>>;
}

/// Where what happens to deliveries is told to the owners of the objects
/// (Kubernetes Events on the Alert and Provider); nothing for a folder.
pub trait Reporter: Send + Sync + fmt::Debug {
    /// A delivery for the object `kind` (`Alert` or `Provider`)
    /// `namespace/name` became a dead letter for `reason` (secrets already
    /// masked).
    fn dead_letter(&self, kind: &str, namespace: &str, name: &str, reason: &str);
}

/// What a source adds to a catalog beyond its snapshots; set once.
#[derive(Debug)]
struct Extras {
    labels: OnceLock<Arc<dyn ObjectLabels>>,
    reporter: OnceLock<Arc<dyn Reporter>>,
    /// True from the source's first publish on.
    loaded: tokio::sync::watch::Sender<bool>,
    /// The catalogs of member clusters (their own Alerts and Providers,
    /// scoped to their own events), by cluster name.
    members: ArcSwap<HashMap<String, Catalog>>,
    /// How its Alerts are compiled (member clusters' catalogs too).
    alert_options: Arc<AlertOptions>,
}

impl Extras {
    fn new(loaded: bool, alert_options: AlertOptions) -> Self {
        Self {
            labels: OnceLock::new(),
            reporter: OnceLock::new(),
            loaded: tokio::sync::watch::Sender::new(loaded),
            members: ArcSwap::default(),
            alert_options: Arc::new(alert_options),
        }
    }
}

/// Checks that need what only a service that sends knows (each provider
/// type's settings): installed once per process by that service, run on
/// every snapshot a source publishes, so their findings are on `/readyz`
/// and in the objects' Kubernetes status like the catalog's own.
static EXTRA_CHECKS: OnceLock<fn(&Snapshot) -> Vec<Problem>> = OnceLock::new();

/// Installs the process's extra checks (the first installed stays).
pub fn install_checks(check: fn(&Snapshot) -> Vec<Problem>) {
    EXTRA_CHECKS.set(check).ok();
}

/// The read side: the snapshot in force now. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Catalog {
    current: Arc<ArcSwap<Snapshot>>,
    extras: Arc<Extras>,
}

// === impl Catalog ===

impl Catalog {
    /// A catalog that always holds `snapshot` (no source).
    #[must_use]
    pub fn new(snapshot: Snapshot) -> Self {
        Self {
            current: Arc::new(ArcSwap::from_pointee(snapshot)),
            extras: Arc::new(Extras::new(true, AlertOptions::default())),
        }
    }

    /// Waits until the source has published its first complete set of
    /// objects (at once for a folder, read before the catalog is returned;
    /// after the first full list for a cluster). Events must not be routed
    /// or sent against the empty catalog before it: they would match
    /// nothing, or name Providers not read yet.
    pub async fn loaded(&self) {
        let mut loaded = self.extras.loaded.subscribe();
        // The sender lives in `extras`, as long as `self`.
        loaded.wait_for(|loaded| *loaded).await.ok();
    }

    /// How its Alerts are compiled (`--fleet-admin-namespace`).
    #[must_use]
    pub fn alert_options(&self) -> &AlertOptions {
        &self.extras.alert_options
    }

    /// Whether the source has published its first complete set.
    #[must_use]
    pub fn is_loaded(&self) -> bool {
        *self.extras.loaded.borrow()
    }

    /// The catalog of the member cluster `cluster`: its own Alerts and
    /// Providers, which hear only its events.
    #[must_use]
    pub fn member(&self, cluster: &str) -> Option<Catalog> {
        self.extras.members.load().get(cluster).cloned()
    }

    /// The catalog a delivery's Alert and Provider came from: this one for
    /// `""`, else the member cluster's.
    #[must_use]
    pub fn scope(&self, scope: &str) -> Option<Catalog> {
        if scope.is_empty() {
            Some(self.clone())
        } else {
            self.member(scope)
        }
    }

    /// Adds (or, with `None`, removes) the catalog of a member cluster.
    pub fn set_member(&self, cluster: &str, catalog: Option<Catalog>) {
        self.extras.members.rcu(|members| {
            let mut members = HashMap::clone(members);
            match &catalog {
                Some(catalog) => {
                    members.insert(cluster.to_owned(), catalog.clone());
                }
                None => {
                    members.remove(cluster);
                }
            }
            members
        });
    }

    /// The names of the member clusters with a catalog.
    #[must_use]
    pub fn members(&self) -> Vec<String> {
        let mut names: Vec<String> = self.extras.members.load().keys().cloned().collect();
        names.sort();
        names
    }

    /// The labels of the object `kind` `namespace/name` in `cluster`, when
    /// the source can know them (see [`ObjectLabels::labels`]).
    #[must_use]
    pub fn labels(
        &self,
        cluster: &str,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Option<BTreeMap<String, String>> {
        self.extras
            .labels
            .get()
            .and_then(|labels| labels.labels(cluster, kind, namespace, name))
    }

    /// Tells the owners of the object that a delivery became a dead letter
    /// (see [`Reporter::dead_letter`]); nothing when the source has no one
    /// to tell.
    pub fn report_dead_letter(&self, kind: &str, namespace: &str, name: &str, reason: &str) {
        if let Some(reporter) = self.extras.reporter.get() {
            reporter.dead_letter(kind, namespace, name, reason);
        }
    }

    /// An empty catalog and the writer its one source publishes through.
    ///
    /// `readiness` gets a `catalog` check that stays not ready until the
    /// source's first publish, its first full read. `source` names the source
    /// in logs (a folder's path, a cluster); its Alerts are compiled with
    /// `options`.
    #[must_use]
    pub fn with_source(
        source: impl Into<String>,
        options: AlertOptions,
        readiness: &Readiness,
    ) -> (Self, CatalogWriter) {
        readiness.register(READINESS);
        Self::with_writer(source, READINESS.to_owned(), true, options, readiness)
    }

    /// A member cluster's catalog: like [`Catalog::with_source`], but its
    /// problems are listed on `/readyz` under `catalog:<cluster>` and it is
    /// no readiness check (a member cluster that cannot be reached must not
    /// stop the others' events; its own wait until it is read).
    #[must_use]
    pub fn for_member(
        source: impl Into<String>,
        cluster: &str,
        options: AlertOptions,
        readiness: &Readiness,
    ) -> (Self, CatalogWriter) {
        Self::with_writer(
            source,
            format!("{READINESS}:{cluster}"),
            false,
            options,
            readiness,
        )
    }

    fn with_writer(
        source: impl Into<String>,
        check: String,
        gates: bool,
        options: AlertOptions,
        readiness: &Readiness,
    ) -> (Self, CatalogWriter) {
        let catalog = Self {
            current: Arc::new(ArcSwap::from_pointee(Snapshot::default())),
            extras: Arc::new(Extras::new(false, options)),
        };
        let writer = CatalogWriter {
            catalog: catalog.clone(),
            readiness: readiness.clone(),
            source: source.into(),
            check,
            gates,
        };
        (catalog, writer)
    }

    /// The snapshot in force now.
    #[must_use]
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }
}

/// What a source publishes through: the only way objects get into a
/// [`Catalog`]. Cheap to clone.
///
/// A source publishes the complete set of objects it knows of each time it
/// has read one (never a change alone), with the problems it met reading it
/// (an unreadable file, YAML that does not parse). The catalog checks, builds
/// and swaps in the new snapshot; routing and sending go on against the old
/// one meanwhile. A source that cannot read anything keeps the previous
/// snapshot by publishing nothing.
#[derive(Clone, Debug)]
pub struct CatalogWriter {
    catalog: Catalog,
    readiness: Readiness,
    source: String,
    /// Its readiness check (and the topic of its `/readyz` details).
    check: String,
    /// Whether `check` is a readiness check (else only details).
    gates: bool,
}

// === impl CatalogWriter ===

impl CatalogWriter {
    /// Gives the catalog the labels of the objects events are about; the
    /// first call wins.
    pub fn set_labels(&self, labels: Arc<dyn ObjectLabels>) {
        self.catalog.extras.labels.set(labels).ok();
    }

    /// Gives the catalog where dead letters are told; the first call wins.
    pub fn set_reporter(&self, reporter: Arc<dyn Reporter>) {
        self.catalog.extras.reporter.set(reporter).ok();
    }

    /// The snapshot in force now.
    #[must_use]
    pub fn current(&self) -> Arc<Snapshot> {
        self.catalog.snapshot()
    }

    /// Builds a snapshot from `objects` and `problems` (see
    /// [`Snapshot::from_objects`]), reports it in the log and on `/readyz`,
    /// swaps it in, and marks the catalog ready.
    pub fn publish(
        &self,
        objects: Vec<(PathBuf, Object)>,
        problems: Vec<Problem>,
    ) -> Arc<Snapshot> {
        self.publish_served(objects, problems, None)
    }

    /// As [`CatalogWriter::publish`], with the event source kinds the
    /// cluster's Alert CRD allows (see [`Snapshot::build`]).
    pub fn publish_served(
        &self,
        objects: Vec<(PathBuf, Object)>,
        problems: Vec<Problem>,
        served_kinds: Option<&[String]>,
    ) -> Arc<Snapshot> {
        let before = self.catalog.snapshot();
        let mut snapshot = Snapshot::build(
            objects,
            problems,
            served_kinds,
            Some(&before),
            self.catalog.alert_options(),
        );
        if let Some(check) = EXTRA_CHECKS.get() {
            let found = check(&snapshot);
            snapshot.add_problems(found);
        }
        let (alerts, providers, secrets) = snapshot.counts();
        let (errors, warnings) = snapshot.problem_counts();
        tracing::info!(
            source = %self.source,
            alerts,
            providers,
            secrets,
            problems = errors,
            warnings,
            "Catalog loaded."
        );
        // Each problem is logged once, when it appears.
        let known: std::collections::HashSet<&Problem> = before.problems.iter().collect();
        for problem in snapshot.problems.iter().filter(|p| !known.contains(p)) {
            if problem.is_error() {
                tracing::warn!(problem = %problem, "Catalog object cannot be used.");
            } else {
                tracing::warn!(problem = %problem, "Catalog object may not work as meant.");
            }
        }
        self.readiness.set_details(
            &self.check,
            snapshot.problems.iter().map(ToString::to_string).collect(),
        );
        let snapshot = Arc::new(snapshot);
        self.catalog.current.store(Arc::clone(&snapshot));
        if self.gates {
            self.readiness.set(&self.check, true);
        }
        self.catalog.extras.loaded.send_replace(true);
        snapshot
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_flux::objects::parse_documents;

    fn objects(yaml: &str) -> Vec<(PathBuf, Object)> {
        parse_documents(yaml, "n")
            .unwrap()
            .into_iter()
            .map(|o| (PathBuf::from("f.yaml"), o.unwrap()))
            .collect()
    }

    #[test]
    fn objects_are_found_by_namespace_and_name_and_unchanged_alerts_are_not_recompiled() {
        // `a-b/x` sorts before `a/x` as text, after it as (namespace, name).
        let mut yaml = String::new();
        for ns in ["a", "a-b", "a.b", "b"] {
            yaml.push_str(&format!(
                "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Provider\nmetadata: {{name: x, namespace: {ns}}}\nspec: {{type: slack, secretRef: {{name: s}}}}\n---\n\
                 apiVersion: v1\nkind: Secret\nmetadata: {{name: s, namespace: {ns}}}\nstringData: {{address: 'http://{ns}'}}\n---\n\
                 apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Alert\nmetadata: {{name: x, namespace: {ns}}}\nspec: {{providerRef: {{name: x}}, eventSources: [{{kind: Bucket, name: '*'}}]}}\n---\n"
            ));
        }
        let listed = objects(&yaml);
        let first = Snapshot::build(
            listed.clone(),
            Vec::new(),
            None,
            None,
            &AlertOptions::default(),
        );
        assert!(first.problems.is_empty(), "{:?}", first.problems);
        for ns in ["a", "a-b", "a.b", "b"] {
            assert_eq!(first.provider(ns, "x").unwrap().meta.namespace, ns);
            assert_eq!(
                first.secret(ns, "s").unwrap().data["address"],
                format!("http://{ns}").as_bytes()
            );
        }
        assert!(first.provider("a", "y").is_none());
        for ns in ["a", "a-b", "a.b", "b"] {
            assert_eq!(first.alert(ns, "x").unwrap().alert.meta.namespace, ns);
        }
        assert!(first.alert("a", "y").is_none());
        let again = Snapshot::build(
            listed,
            Vec::new(),
            None,
            Some(&first),
            &AlertOptions::default(),
        );
        for (a, b) in first.alerts.alerts().iter().zip(again.alerts.alerts()) {
            assert!(Arc::ptr_eq(a, b), "{} compiled again", a.alert.key());
        }
        let fresh = Snapshot::build(
            objects(&yaml),
            Vec::new(),
            None,
            Some(&first),
            &AlertOptions::default(),
        );
        assert!(!Arc::ptr_eq(
            &first.alerts.alerts()[0],
            &fresh.alerts.alerts()[0]
        ));
    }

    #[test]
    fn templates_are_compiled_once_and_those_that_do_not_compile_are_errors() {
        let yaml = "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Provider\n\
             metadata: {name: p, annotations: {herald.dev/template: \"{{ .Message }}\"}}\nspec: {type: slack}\n---\n\
             apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Provider\n\
             metadata: {name: q, annotations: {herald.dev/template: \"a\\n{{ .Mesage }}\"}}\nspec: {type: slack}\n---\n\
             apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Alert\n\
             metadata: {name: a, annotations: {herald.dev/slack-blocks: \"[{{ uper .Message }}]\"}}\n\
             spec: {providerRef: {name: p}, eventSources: [{kind: Bucket, name: '*'}]}\n";
        let listed = objects(yaml);
        let first = Snapshot::build(
            listed.clone(),
            Vec::new(),
            None,
            None,
            &AlertOptions::default(),
        );
        let problems: Vec<String> = first.problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            problems,
            [
                "f.yaml: Alert/n/a: annotation herald.dev/slack-blocks does not compile at \
                 template line 1, column 5: function \"uper\" not defined (did you mean \
                 \"upper\"?); deliveries are sent without it",
                "f.yaml: Provider/n/q: annotation herald.dev/template does not compile at \
                 template line 2, column 4: can't evaluate field Mesage in type Event (did you \
                 mean .Message?); deliveries are sent without it",
            ]
        );
        // Both stay in the catalog: their deliveries go out with Flux's message.
        assert_eq!(first.counts(), (1, 2, 0));
        let p = first.provider_templates("n", "p").unwrap();
        assert!(matches!(p.message, Some(Ok(_))));
        assert!(first.provider_templates("n", "x").is_none());
        let again = Snapshot::build(
            listed,
            Vec::new(),
            None,
            Some(&first),
            &AlertOptions::default(),
        );
        assert!(Arc::ptr_eq(p, again.provider_templates("n", "p").unwrap()));
        assert_eq!(again.problems, first.problems);
        let (alert, file) = again.alerts().next().unwrap();
        assert_eq!(
            (alert.alert.meta.name.as_str(), file),
            ("a", Path::new("f.yaml"))
        );
    }

    #[test]
    fn ready_only_after_the_first_publish() {
        let readiness = Readiness::default();
        let (catalog, writer) = Catalog::with_source("test", AlertOptions::default(), &readiness);
        assert_eq!(readiness.report().checks.get("catalog"), Some(&false));
        assert_eq!(catalog.snapshot().counts(), (0, 0, 0));
        writer.publish(
            objects("apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Provider\nmetadata: {name: p}\nspec: {type: slack}\n"),
            Vec::new(),
        );
        assert_eq!(readiness.report().checks.get("catalog"), Some(&true));
        assert_eq!(catalog.snapshot().counts(), (0, 1, 0));
    }

    #[test]
    fn invalid_objects_and_regexes_are_problems_with_their_file() {
        let readiness = Readiness::default();
        let (catalog, writer) = Catalog::with_source("test", AlertOptions::default(), &readiness);
        writer.publish(
            objects(
                "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Provider\nmetadata: {name: p}\nspec: {type: pigeon}\n---\n\
                 apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Alert\nmetadata: {name: a}\n\
                 spec: {providerRef: {name: p}, eventSources: [{kind: Bucket, name: '*'}], inclusionList: ['(']}\n",
            ),
            Vec::new(),
        );
        let problems: Vec<String> = catalog
            .snapshot()
            .problems
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(catalog.snapshot().counts(), (1, 0, 0));
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].starts_with("f.yaml: Provider/n/p: spec.type \"pigeon\""));
        assert_eq!(catalog.snapshot().problem_counts(), (3, 0));
        assert_eq!(
            problems[1],
            "f.yaml: Alert/n/a: failed to compile inclusion regex: ("
        );
        // The Provider left out, the Alert names a Provider that is not there.
        assert!(
            problems[2].starts_with(
                "f.yaml: Alert/n/a: spec.providerRef names the Provider n/p, which does not exist"
            ),
            "{}",
            problems[2]
        );
        let details = &readiness.report().details["catalog"];
        assert_eq!(details, &problems);
    }

    #[test]
    fn within_a_file_errors_come_before_warnings() {
        let snapshot = Snapshot::from_objects(
            objects(
                "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Provider\nmetadata: {name: p}\nspec: {type: slack}\n---\n\
                 apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Alert\nmetadata: {name: a}\n\
                 spec: {providerRef: {name: p}, eventSources: [{kind: ResourceSet, name: '*'}]}\n---\n\
                 apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Alert\nmetadata: {name: b}\nspec: {}\n",
            ),
            vec![Problem::warning("a.yaml".into(), String::new(), "w".into())],
            &AlertOptions::default(),
        );
        let problems: Vec<String> = snapshot.problems.iter().map(ToString::to_string).collect();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert_eq!(problems[0], "warning: a.yaml: w");
        assert!(problems[1].starts_with("f.yaml: Alert/n/b: spec.providerRef.name is required"));
        assert!(
            problems[2].starts_with(
                "warning: f.yaml: Alert/n/a: spec.eventSources[0].kind \"ResourceSet\""
            )
        );
    }

    #[test]
    fn an_alert_with_a_kind_beyond_flux_is_kept_with_a_warning() {
        let readiness = Readiness::default();
        let (catalog, writer) = Catalog::with_source("test", AlertOptions::default(), &readiness);
        writer.publish(
            objects(
                "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Provider\nmetadata: {name: p}\nspec: {type: slack}\n---\n\
                 apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Alert\nmetadata: {name: a}\n\
                 spec: {providerRef: {name: p}, eventSources: [{kind: Kustomization, name: '*'}, {kind: FluxInstance, name: flux}]}\n",
            ),
            Vec::new(),
        );
        let snapshot = catalog.snapshot();
        assert_eq!(snapshot.counts(), (1, 1, 0));
        assert_eq!(snapshot.problem_counts(), (0, 1));
        let warning = snapshot.problems[0].to_string();
        assert!(
            warning.starts_with(
                "warning: f.yaml: Alert/n/a: spec.eventSources[1].kind \"FluxInstance\" is a Flux Operator kind"
            ),
            "{warning}"
        );
        assert_eq!(readiness.report().details["catalog"], [warning]);
        assert!(readiness.report().checks["catalog"]);
    }
}
