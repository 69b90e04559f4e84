//! The folder source: Flux YAML read from a folder, published again whenever
//! a manifest is added, changed or removed.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use herald_flux::AlertOptions;
use herald_flux::objects::{Located, Object, parse_documents_located};
use tokio_util::sync::CancellationToken;

use super::{Catalog, CatalogArgs, CatalogWriter, Problem, Snapshot};
use crate::health::Readiness;

/// The manifest files of a folder with their times and sizes: what a reload
/// compares.
type Fingerprint = Vec<(PathBuf, SystemTime, u64)>;

/// A folder of manifests feeding a catalog.
#[derive(Debug)]
pub struct FolderSource {
    args: CatalogArgs,
    writer: CatalogWriter,
    /// The folder as it was just before the last read (`None`: unreadable).
    last: Option<Fingerprint>,
}

// === impl FolderSource ===

impl FolderSource {
    /// Reads the folder once and returns the catalog holding it, with the
    /// source that keeps it current (see [`FolderSource::run`]).
    ///
    /// # Errors
    ///
    /// When the folder itself cannot be read.
    pub fn open(args: &CatalogArgs, readiness: &Readiness) -> anyhow::Result<(Catalog, Self)> {
        // Taken before reading, so a change made meanwhile is seen by the first check.
        let last = manifest_files(&args.config_dir).ok();
        let (objects, problems) =
            read_folder(&args.config_dir, &args.default_namespace).map_err(|e| {
                anyhow::anyhow!(
                    "cannot read the config folder {}: {e}",
                    args.config_dir.display()
                )
            })?;
        let (catalog, writer) = Catalog::with_source(
            args.config_dir.display().to_string(),
            args.alert_options(),
            readiness,
        );
        writer.publish(objects, problems);
        let source = Self {
            args: args.clone(),
            writer,
            last,
        };
        Ok((catalog, source))
    }

    /// Reads the folder again whenever a manifest is added, changed or
    /// removed, until `cancel` fires. Events keep flowing against the old
    /// snapshot meanwhile; a folder that cannot be read keeps it.
    pub async fn run(mut self, cancel: CancellationToken) {
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(self.args.reload_interval) => {}
            }
            let current = manifest_files(&self.args.config_dir).ok();
            if current == self.last {
                continue;
            }
            self.last = current;
            let dir = &self.args.config_dir;
            match read_folder(dir, &self.args.default_namespace) {
                Ok((objects, problems)) => {
                    self.writer.publish(objects, problems);
                }
                Err(error) => {
                    tracing::error!(error = %error, dir = %dir.display(), "Cannot reload the catalog; keeping the previous one.");
                }
            }
        }
    }
}

fn is_manifest(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

/// The manifest files below `dir`, sorted, with their modification times and sizes.
fn manifest_files(dir: &Path) -> std::io::Result<Fingerprint> {
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

/// What a folder holds: its objects, each with its file, and its problems.
type FolderRead = (Vec<(PathBuf, Object)>, Vec<Problem>);

/// Decodes every manifest below `dir`: the objects, each with its file
/// relative to `dir`, the files and documents that cannot be decoded
/// (errors), and the values Flux would substitute or decrypt on applying the
/// manifests (warnings).
/// Event sources with `matchLabels`: Flux controllers post events without
/// labels, and a folder gives no access to the objects' labels, so such a
/// source matches no event they post. Said instead of silently never
/// matching.
fn label_selectors(object: &Object) -> Vec<String> {
    let Object::Alert(alert) = object else {
        return Vec::new();
    };
    alert
        .spec
        .event_sources
        .iter()
        .enumerate()
        .filter(|(_, source)| source.match_labels.as_ref().is_some_and(|l| !l.is_empty()))
        .map(|(i, source)| {
            format!(
                "eventSources[{i}] ({}/{}) selects by matchLabels, but events from Flux controllers \
                 carry no labels and a folder catalog cannot look them up: it matches no event \
                 they post",
                source.kind, source.name
            )
        })
        .collect()
}

fn read_folder(dir: &Path, default_namespace: &str) -> std::io::Result<FolderRead> {
    let mut objects = Vec::new();
    let mut problems = Vec::new();
    for (path, _, _) in manifest_files(dir)? {
        let relative = path.strip_prefix(dir).unwrap_or(&path).to_path_buf();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) => {
                problems.push(Problem::error(
                    relative,
                    String::new(),
                    format!("cannot read: {error}"),
                ));
                continue;
            }
        };
        match parse_documents_located(&text, default_namespace) {
            Err(reason) => problems.push(Problem::error(
                relative,
                String::new(),
                format!("invalid YAML: {reason}"),
            )),
            Ok(located) => {
                for Located {
                    line,
                    result,
                    unknown,
                } in located
                {
                    // Problems name the file and the line of the object.
                    let at = |line: Option<usize>| match line {
                        Some(line) => PathBuf::from(format!("{}:{line}", relative.display())),
                        None => relative.clone(),
                    };
                    let place = at(line);
                    match result {
                        Ok(object) if !unknown.is_empty() => {
                            // The API server refuses unknown fields: so does the folder.
                            problems.extend(unknown.into_iter().map(|(line, reason)| {
                                Problem::error(at(line), object.id(), reason)
                            }));
                        }
                        Ok(object) => {
                            // Kubernetes holds what Flux applied; a folder
                            // holds what Flux would apply.
                            problems.extend(object.unprocessed_values().into_iter().map(
                                |reason| Problem::warning(place.clone(), object.id(), reason),
                            ));
                            problems.extend(label_selectors(&object).into_iter().map(|reason| {
                                Problem::warning(place.clone(), object.id(), reason)
                            }));
                            objects.push((place, object));
                        }
                        Err(e) => problems.push(Problem::error(place, e.object, e.reason)),
                    }
                }
            }
        }
    }
    Ok((objects, problems))
}

/// Reads every manifest below `dir` into a snapshot, without a catalog (what
/// `herald validate` shows). Unusable files and objects become error
/// [`Problem`]s, doubtful values warnings; every valid object is kept.
/// Alerts are compiled with `options`.
///
/// # Errors
///
/// When `dir` itself cannot be read.
pub fn load_folder(
    dir: &Path,
    default_namespace: &str,
    options: &AlertOptions,
) -> std::io::Result<Snapshot> {
    let (objects, problems) = read_folder(dir, default_namespace)?;
    Ok(Snapshot::from_objects(objects, problems, options))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{FleetAdminArgs, SourceKind, kubernetes::KubeArgs};
    use std::time::Duration;

    const PROVIDER: &str = "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Provider\nmetadata: {name: p, namespace: n}\nspec: {type: slack}\n";

    #[test]
    fn loads_valid_objects_and_reports_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), PROVIDER).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(
            dir.path().join("sub/b.yml"),
            format!("{PROVIDER}---\napiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Alert\nmetadata: {{name: a, namespace: n}}\nspec: {{providerRef: {{name: p}}, eventSources: [{{kind: '', name: x}}]}}\n"),
        )
        .unwrap();
        std::fs::write(dir.path().join("c.yaml"), "a: [").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a manifest").unwrap();
        let snapshot = load_folder(dir.path(), "default", &AlertOptions::default()).unwrap();
        assert!(snapshot.provider("n", "p").is_some());
        assert_eq!(snapshot.counts(), (0, 1, 0));
        let problems: Vec<String> = snapshot.problems.iter().map(ToString::to_string).collect();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].starts_with("c.yaml: invalid YAML"));
        assert!(
            problems[2].starts_with("sub/b.yml:6: Alert/n/a: spec.eventSources[0].kind"),
            "{problems:?}"
        );
        assert!(
            problems[1].starts_with("sub/b.yml:1: Provider/n/p: already defined in a.yaml:1"),
            "{problems:?}"
        );
    }

    #[test]
    fn label_selectors_are_warned_about_in_a_folder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.yaml"),
            format!(
                "{PROVIDER}---\napiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Alert\n\
                 metadata: {{name: a, namespace: n}}\nspec: {{providerRef: {{name: p}}, eventSources: \
                 [{{kind: Kustomization, name: '*'}}, {{kind: HelmRelease, name: '*', matchLabels: {{team: a}}}}]}}\n"
            ),
        )
        .unwrap();
        let snapshot = load_folder(dir.path(), "default", &AlertOptions::default()).unwrap();
        assert_eq!(snapshot.counts(), (1, 1, 0), "the Alert is kept");
        let problems: Vec<String> = snapshot.problems.iter().map(ToString::to_string).collect();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains(
                "a.yaml:6: Alert/n/a: eventSources[1] (HelmRelease/*) selects by matchLabels"
            ),
            "{problems:?}"
        );
        assert!(!snapshot.problems[0].is_error());
    }

    #[test]
    fn values_flux_would_process_are_warnings() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("p.yaml"),
            "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Provider\nmetadata: {name: p, namespace: n}\n\
             spec: {type: slack, channel: '${CHANNEL}', secretRef: {name: s}}\n---\n\
             apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: n}\n\
             data: {address: 'ENC[AES256_GCM,data:aGk=,iv:a=,tag:b=,type:str]'}\n",
        )
        .unwrap();
        let snapshot = load_folder(dir.path(), "default", &AlertOptions::default()).unwrap();
        assert_eq!(snapshot.counts(), (0, 1, 1), "both are kept");
        let problems: Vec<String> = snapshot.problems.iter().map(ToString::to_string).collect();
        assert_eq!(snapshot.problem_counts(), (0, 2), "{problems:?}");
        assert!(problems[0].starts_with(
            "warning: p.yaml:1: Provider/n/p: spec.channel holds the variable ${CHANNEL}"
        ));
        assert!(problems[1].starts_with(
            "warning: p.yaml:6: Secret/n/s: key address is SOPS-encrypted (ENC[...])"
        ));
    }

    #[tokio::test]
    async fn run_picks_up_changes() {
        let dir = tempfile::tempdir().unwrap();
        let args = CatalogArgs {
            source: SourceKind::Folder,
            kubernetes: KubeArgs::default(),
            fleet_admin: FleetAdminArgs::default(),
            config_dir: dir.path().to_path_buf(),
            default_namespace: "default".into(),
            reload_interval: Duration::from_millis(20),
        };
        let readiness = Readiness::default();
        let (catalog, source) = FolderSource::open(&args, &readiness).unwrap();
        assert_eq!(catalog.snapshot().counts(), (0, 0, 0));
        assert!(readiness.report().checks["catalog"]);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(source.run(cancel.clone()));
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

    #[test]
    fn all_namespaces_sources_are_problems_outside_fleet_admin_namespaces() {
        let dir = tempfile::tempdir().unwrap();
        let alert = |ns: &str| {
            format!(
                "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Alert\n\
                 metadata: {{name: fleet, namespace: {ns}}}\n\
                 spec: {{providerRef: {{name: p}}, eventSources: [{{kind: Kustomization, name: '*', namespace: '*'}}]}}\n"
            )
        };
        std::fs::write(
            dir.path().join("a.yaml"),
            format!("{}---\n{}", alert("flux-system"), alert("team-a")),
        )
        .unwrap();
        let args = FleetAdminArgs {
            fleet_admin_namespaces: vec![" flux-system".into(), "other".into()],
        };
        let snapshot = load_folder(dir.path(), "default", &args.alert_options()).unwrap();
        let star: Vec<String> = snapshot
            .problems
            .iter()
            .map(ToString::to_string)
            .filter(|p| p.contains("eventSources[0].namespace"))
            .collect();
        assert_eq!(star.len(), 1, "{star:?}");
        assert!(star[0].contains("Alert/team-a/fleet"), "{}", star[0]);
        assert!(
            snapshot
                .alert("flux-system", "fleet")
                .unwrap()
                .hears_all_namespaces()
        );
        assert!(
            !snapshot
                .alert("team-a", "fleet")
                .unwrap()
                .hears_all_namespaces()
        );
    }

    #[test]
    fn an_unreadable_folder_fails_to_open() {
        let args = CatalogArgs {
            source: SourceKind::Folder,
            kubernetes: KubeArgs::default(),
            fleet_admin: FleetAdminArgs::default(),
            config_dir: PathBuf::from("/nonexistent/herald"),
            default_namespace: "default".into(),
            reload_interval: Duration::from_secs(1),
        };
        let error = FolderSource::open(&args, &Readiness::default()).unwrap_err();
        assert!(error.to_string().contains("cannot read the config folder"));
    }
}
