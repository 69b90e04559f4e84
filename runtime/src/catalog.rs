//! The catalog: the Alerts, Providers and Secrets the router and senders work
//! from, read from a folder of Flux YAML and reloaded when it changes.
//!
//! A snapshot is immutable; a reload builds a new one and swaps it in, so an
//! event is always routed against one consistent set of objects and nothing
//! waits on a lock.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use herald_flux::objects::{Object, parse_documents};
use herald_flux::{Alert, AlertIndex, CompiledAlert, Provider, Secret};
use tokio_util::sync::CancellationToken;

use crate::health::Readiness;

/// Something in the folder that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file, relative to the folder.
    pub file: PathBuf,
    /// `Kind/namespace/name`, or empty when the whole file is unreadable.
    pub object: String,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.object.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.reason)
        } else {
            write!(
                f,
                "{}: {}: {}",
                self.file.display(),
                self.object,
                self.reason
            )
        }
    }
}

type Key = (String, String);

/// One consistent set of objects.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Alerts, indexed for matching.
    pub alerts: AlertIndex,
    providers: HashMap<Key, Arc<Provider>>,
    secrets: HashMap<Key, Arc<Secret>>,
    /// Every unusable file or object, in file order.
    pub problems: Vec<Problem>,
}

// === impl Snapshot ===

impl Snapshot {
    /// Builds a snapshot from objects (in the order given) and known problems.
    #[must_use]
    pub fn from_objects(objects: Vec<(PathBuf, Object)>, mut problems: Vec<Problem>) -> Self {
        let mut alerts: Vec<Alert> = Vec::new();
        let mut providers = HashMap::new();
        let mut secrets = HashMap::new();
        let mut seen: HashMap<(String, Key), PathBuf> = HashMap::new();
        for (file, object) in objects {
            let (kind, meta) = match &object {
                Object::Alert(a) => ("Alert", &a.meta),
                Object::Provider(p) => ("Provider", &p.meta),
                Object::Secret(s) => ("Secret", &s.meta),
            };
            let key = (meta.namespace.clone(), meta.name.clone());
            let id = format!("{kind}/{}/{}", key.0, key.1);
            if let Some(first) = seen.get(&(kind.to_owned(), key.clone())) {
                problems.push(Problem {
                    file,
                    object: id,
                    reason: format!(
                        "already defined in {}; this copy is ignored",
                        first.display()
                    ),
                });
                continue;
            }
            seen.insert((kind.to_owned(), key.clone()), file);
            match object {
                Object::Alert(a) => alerts.push(a),
                Object::Provider(p) => {
                    providers.insert(key, Arc::new(p));
                }
                Object::Secret(s) => {
                    secrets.insert(key, Arc::new(s));
                }
            }
        }
        problems.sort_by(|a, b| a.file.cmp(&b.file));
        // The API server lists objects by namespace, then name.
        alerts.sort_by(|a, b| {
            (&a.meta.namespace, &a.meta.name).cmp(&(&b.meta.namespace, &b.meta.name))
        });
        let compiled: Vec<Arc<CompiledAlert>> = alerts
            .into_iter()
            .map(|a| Arc::new(CompiledAlert::new(a)))
            .collect();
        Self {
            alerts: AlertIndex::new(compiled),
            providers,
            secrets,
            problems,
        }
    }

    /// The Provider `namespace/name`.
    #[must_use]
    pub fn provider(&self, namespace: &str, name: &str) -> Option<Arc<Provider>> {
        self.providers
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    /// The Secret `namespace/name`.
    #[must_use]
    pub fn secret(&self, namespace: &str, name: &str) -> Option<Arc<Secret>> {
        self.secrets
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    /// How many Alerts, Providers and Secrets the snapshot holds.
    #[must_use]
    pub fn counts(&self) -> (usize, usize, usize) {
        (
            self.alerts.alerts().len(),
            self.providers.len(),
            self.secrets.len(),
        )
    }
}

/// The manifest files of a folder with their times and sizes: what a reload
/// compares.
type Fingerprint = Vec<(PathBuf, SystemTime, u64)>;

/// The current snapshot, swapped atomically on reload. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Catalog {
    current: Arc<ArcSwap<Snapshot>>,
    /// The folder as it was just before the snapshot was read.
    loaded_from: Arc<std::sync::Mutex<Option<Fingerprint>>>,
}

// === impl Catalog ===

impl Catalog {
    /// A catalog holding `snapshot`.
    #[must_use]
    pub fn new(snapshot: Snapshot) -> Self {
        Self {
            current: Arc::new(ArcSwap::from_pointee(snapshot)),
            loaded_from: Arc::default(),
        }
    }

    /// The snapshot in force now.
    #[must_use]
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Replaces the snapshot.
    pub fn replace(&self, snapshot: Snapshot) {
        self.current.store(Arc::new(snapshot));
    }
}

/// Where the catalog comes from.
#[derive(Debug, Clone, clap::Args)]
pub struct CatalogArgs {
    /// A folder of Flux Alert, Provider and Secret manifests (YAML, searched recursively).
    #[arg(long, env = "HERALD_CONFIG_DIR", default_value = "examples/config")]
    pub config_dir: PathBuf,
    /// The namespace of objects whose manifest names none.
    #[arg(long, env = "HERALD_DEFAULT_NAMESPACE", default_value = "default")]
    pub default_namespace: String,
    /// How often the folder is checked for changes.
    #[arg(long, env = "HERALD_RELOAD_INTERVAL", default_value = "2s", value_parser = crate::nats::parse_duration)]
    pub reload_interval: Duration,
}

fn is_manifest(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

/// The manifest files below `dir`, sorted, with their modification times and sizes.
fn manifest_files(dir: &Path) -> std::io::Result<Vec<(PathBuf, SystemTime, u64)>> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current)? {
            let entry = entry?;
            let path = entry.path();
            let name = entry.file_name();
            if name.to_string_lossy().starts_with('.') {
                continue;
            }
            let meta = std::fs::metadata(&path)?;
            if meta.is_dir() {
                pending.push(path);
            } else if is_manifest(&path) {
                out.push((path, meta.modified()?, meta.len()));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Reads every manifest below `dir` into a snapshot. Unusable files and
/// objects become [`Problem`]s; every valid object is kept.
///
/// # Errors
///
/// When `dir` itself cannot be read.
pub fn load_folder(dir: &Path, default_namespace: &str) -> std::io::Result<Snapshot> {
    let mut objects = Vec::new();
    let mut problems = Vec::new();
    for (path, _, _) in manifest_files(dir)? {
        let relative = path.strip_prefix(dir).unwrap_or(&path).to_path_buf();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) => {
                problems.push(Problem {
                    file: relative,
                    object: String::new(),
                    reason: format!("cannot read: {error}"),
                });
                continue;
            }
        };
        match parse_documents(&text, default_namespace) {
            Err(reason) => problems.push(Problem {
                file: relative,
                object: String::new(),
                reason: format!("invalid YAML: {reason}"),
            }),
            Ok(results) => {
                for result in results {
                    match result {
                        Ok(object) => objects.push((relative.clone(), object)),
                        Err(e) => problems.push(Problem {
                            file: relative.clone(),
                            object: e.object,
                            reason: e.reason,
                        }),
                    }
                }
            }
        }
    }
    let snapshot = Snapshot::from_objects(objects, problems);
    let mut warnings = Vec::new();
    for alert in snapshot.alerts.alerts() {
        for warning in &alert.warnings {
            warnings.push(format!("Alert/{}: {warning}", alert.alert.key()));
        }
    }
    let mut snapshot = snapshot;
    snapshot
        .problems
        .extend(warnings.into_iter().map(|w| Problem {
            file: PathBuf::new(),
            object: String::new(),
            reason: w,
        }));
    Ok(snapshot)
}

/// Loads the folder, publishes its problems on readiness, and returns the catalog.
///
/// # Errors
///
/// When the folder cannot be read.
pub fn open_folder(args: &CatalogArgs, readiness: &Readiness) -> anyhow::Result<Catalog> {
    // Taken before reading, so a change made meanwhile is seen by the first check.
    let fingerprint = manifest_files(&args.config_dir).ok();
    let snapshot = load_folder(&args.config_dir, &args.default_namespace).map_err(|e| {
        anyhow::anyhow!(
            "cannot read the config folder {}: {e}",
            args.config_dir.display()
        )
    })?;
    report(&snapshot, &args.config_dir, readiness);
    let catalog = Catalog::new(snapshot);
    if let Ok(mut loaded_from) = catalog.loaded_from.lock() {
        *loaded_from = fingerprint;
    }
    Ok(catalog)
}

fn report(snapshot: &Snapshot, dir: &Path, readiness: &Readiness) {
    let (alerts, providers, secrets) = snapshot.counts();
    tracing::info!(
        dir = %dir.display(),
        alerts,
        providers,
        secrets,
        problems = snapshot.problems.len(),
        "Catalog loaded."
    );
    for problem in &snapshot.problems {
        tracing::warn!(problem = %problem, "Catalog object cannot be used.");
    }
    readiness.set_details(
        "catalog",
        snapshot.problems.iter().map(ToString::to_string).collect(),
    );
}

/// Reloads the folder whenever a manifest is added, changed or removed, until
/// `cancel` fires. Events keep flowing against the old snapshot meanwhile.
pub async fn watch_folder(
    catalog: Catalog,
    args: CatalogArgs,
    readiness: Readiness,
    cancel: CancellationToken,
) {
    // The folder as it was just before the first load (unknown: reload once).
    let mut last = catalog
        .loaded_from
        .lock()
        .ok()
        .and_then(|mut fingerprint| fingerprint.take())
        .map(Some);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(args.reload_interval) => {}
        }
        let current = Some(manifest_files(&args.config_dir).ok());
        if current == last {
            continue;
        }
        last = current;
        match load_folder(&args.config_dir, &args.default_namespace) {
            Ok(snapshot) => {
                report(&snapshot, &args.config_dir, &readiness);
                catalog.replace(snapshot);
            }
            Err(error) => {
                tracing::error!(error = %error, dir = %args.config_dir.display(), "Cannot reload the catalog; keeping the previous one.");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROVIDER: &str = "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Provider\nmetadata: {name: p, namespace: n}\nspec: {type: slack}\n";

    #[test]
    fn loads_valid_objects_and_reports_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), PROVIDER).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(
            dir.path().join("sub/b.yml"),
            format!("{PROVIDER}---\napiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Alert\nmetadata: {{name: a, namespace: n}}\nspec: {{providerRef: {{name: p}}, eventSources: [{{kind: Nope, name: x}}]}}\n"),
        )
        .unwrap();
        std::fs::write(dir.path().join("c.yaml"), "a: [").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a manifest").unwrap();
        let snapshot = load_folder(dir.path(), "default").unwrap();
        assert!(snapshot.provider("n", "p").is_some());
        assert_eq!(snapshot.counts(), (0, 1, 0));
        let problems: Vec<String> = snapshot.problems.iter().map(ToString::to_string).collect();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].starts_with("c.yaml: invalid YAML"));
        assert!(problems[1].starts_with("sub/b.yml: Alert/n/a: spec.eventSources[0].kind"));
        assert!(problems[2].starts_with("sub/b.yml: Provider/n/p: already defined in a.yaml"));
    }

    #[tokio::test]
    async fn watch_picks_up_changes() {
        let dir = tempfile::tempdir().unwrap();
        let args = CatalogArgs {
            config_dir: dir.path().to_path_buf(),
            default_namespace: "default".into(),
            reload_interval: Duration::from_millis(20),
        };
        let readiness = Readiness::default();
        let catalog = open_folder(&args, &readiness).unwrap();
        assert_eq!(catalog.snapshot().counts(), (0, 0, 0));
        let cancel = CancellationToken::new();
        let task = tokio::spawn(watch_folder(
            catalog.clone(),
            args,
            readiness,
            cancel.clone(),
        ));
        std::fs::write(dir.path().join("p.yaml"), PROVIDER).unwrap();
        for _ in 0..500 {
            if catalog.snapshot().counts().1 == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            catalog.snapshot().counts(),
            (0, 1, 0),
            "{:?}",
            catalog.snapshot().problems
        );
        cancel.cancel();
        task.await.unwrap();
    }
}
