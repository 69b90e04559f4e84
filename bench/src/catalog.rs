//! The Alerts and Providers folder: generic Providers pointing at the sink,
//! one Alert that selects the bench's events, and any number of others that
//! do not (other namespaces, or the same namespace with other kinds).

use std::fmt::Write as _;
use std::path::Path;

use crate::load::{EVENT_KIND, EVENT_NAMESPACE};

/// Kinds of Flux objects an Alert can select; the bench's events are the first.
const KINDS: [&str; 10] = [
    "Kustomization",
    "HelmRelease",
    "GitRepository",
    "HelmRepository",
    "HelmChart",
    "OCIRepository",
    "Bucket",
    "ImageRepository",
    "ImagePolicy",
    "ImageUpdateAutomation",
];

/// Alerts not in the events' namespace go to `team-<i % 100>`; as every
/// tenth Alert is in the events' namespace, 90 of those names are used.
pub const OTHER_NAMESPACES: usize = 100;

fn provider(namespace: &str, sink_url: &str) -> String {
    format!(
        "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Provider\n\
         metadata: {{name: sink, namespace: {namespace}}}\n\
         spec: {{type: generic, address: '{sink_url}'}}\n---\n"
    )
}

fn alert(namespace: &str, name: &str, kind: &str) -> String {
    format!(
        "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Alert\n\
         metadata: {{name: {name}, namespace: {namespace}}}\n\
         spec:\n  providerRef: {{name: sink}}\n  eventSeverity: info\n\
         \x20 eventSources:\n    - {{kind: {kind}, name: '*'}}\n---\n"
    )
}

/// The (namespace, kind) of non-matching Alert `i`: every tenth in the
/// events' namespace with another kind, the others in other namespaces with
/// any kind.
pub fn non_matching(i: usize) -> (String, &'static str) {
    if i.is_multiple_of(10) {
        let kind = KINDS[1 + (i / 10) % (KINDS.len() - 1)];
        (EVENT_NAMESPACE.to_owned(), kind)
    } else {
        let namespace = format!("team-{}", i % OTHER_NAMESPACES);
        (namespace, KINDS[(i / OTHER_NAMESPACES) % KINDS.len()])
    }
}

/// Writes `alerts` Alerts (one matching the bench's events, named
/// `match_name`) and their Providers into `dir`.
pub fn write(dir: &Path, sink_url: &str, alerts: usize, match_name: &str) -> anyhow::Result<()> {
    let mut providers = provider(EVENT_NAMESPACE, sink_url);
    let mut manifests = alert(EVENT_NAMESPACE, match_name, EVENT_KIND);
    let mut used = std::collections::BTreeSet::new();
    for i in 0..alerts.saturating_sub(1) {
        let (namespace, kind) = non_matching(i);
        if namespace != EVENT_NAMESPACE && used.insert(namespace.clone()) {
            providers.push_str(&provider(&namespace, sink_url));
        }
        write!(
            manifests,
            "{}",
            alert(&namespace, &format!("other-{i}"), kind)
        )?;
    }
    std::fs::write(dir.join("providers.yaml"), providers)?;
    std::fs::write(dir.join("alerts.yaml"), manifests)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_one_alert_selects_the_events() {
        for i in 0..20_000 {
            let (namespace, kind) = super::non_matching(i);
            assert!(namespace != super::EVENT_NAMESPACE || kind != super::EVENT_KIND);
        }
    }

    #[test]
    fn herald_reads_the_folder_without_problems() {
        let dir = tempfile::tempdir().unwrap();
        super::write(dir.path(), "http://127.0.0.1:9/hook", 1000, "match").unwrap();
        let snapshot = herald_runtime::catalog::load_folder(
            dir.path(),
            "default",
            &herald_runtime::catalog::AlertOptions::default(),
        )
        .unwrap();
        assert!(snapshot.problems.is_empty(), "{:?}", snapshot.problems);
        assert_eq!(snapshot.counts().0, 1000);
    }
}
