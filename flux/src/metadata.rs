//! The three metadata stages of the notification-controller (flux-semantics §5):
//! the inbound filter, the removal of internal keys, and the per-Alert merge.

use std::collections::BTreeMap;

/// The annotation prefix group that producers copy object annotations under.
pub const EVENT_GROUP: &str = "event.toolkit.fluxcd.io";

/// The API group of an `apiVersion` such as `kustomize.toolkit.fluxcd.io/v1`.
///
/// Like Go's `strings.Split(apiVersion, "/")` with exactly two parts: the
/// empty string for `v1`, `a/b/c` or an empty apiVersion.
#[must_use]
pub fn api_group(api_version: &str) -> &str {
    match api_version.split_once('/') {
        Some((group, rest)) if !rest.contains('/') => group,
        _ => "",
    }
}

/// Stage A (inbound, before dedupe): keep only keys prefixed with
/// `event.toolkit.fluxcd.io/` or `<group>/`, and drop `<group>/checksum` and
/// `<group>/digest` (those two compared case-insensitively).
pub fn cleanup(metadata: &mut BTreeMap<String, String>, group: &str) {
    let event_prefix = format!("{EVENT_GROUP}/");
    let group_prefix = format!("{group}/");
    let checksum = format!("{group}/checksum");
    let digest = format!("{group}/digest");
    metadata.retain(|key, _| {
        (key.starts_with(&event_prefix) || key.starts_with(&group_prefix))
            && !key.eq_ignore_ascii_case(&checksum)
            && !key.eq_ignore_ascii_case(&digest)
    });
}

/// Stage B (after dedupe, before matching): drop `<group>/token`, which only
/// ever serves the dedupe key and never leaves the router.
pub fn exclude_internal(metadata: &mut BTreeMap<String, String>, group: &str) {
    metadata.remove(&format!("{group}/token"));
}

/// The metadata key naming the cluster an event came from.
pub const CLUSTER_KEY: &str = "cluster";

/// Where a merged metadata key came from, in increasing precedence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MetadataSource {
    /// `event.toolkit.fluxcd.io/<k>` keys (annotations on the involved object).
    ObjectAnnotations,
    /// The Alert's `spec.eventMetadata`.
    AlertEventMetadata,
    /// The Alert's deprecated `spec.summary`.
    AlertSummary,
    /// `<group>/<k>` keys written by the controller.
    ControllerMetadata,
}

impl MetadataSource {
    /// The name the notification-controller uses for this source in conflicts.
    #[must_use]
    pub fn describe(self) -> &'static str {
        match self {
            Self::ObjectAnnotations => "involved object annotations",
            Self::AlertEventMetadata => "Alert object .spec.eventMetadata",
            Self::AlertSummary => "Alert object .spec.summary",
            Self::ControllerMetadata => "involved object controller metadata",
        }
    }
}

/// The outcome of the per-Alert merge.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Merged {
    /// The metadata the provider sees.
    pub metadata: BTreeMap<String, String>,
    /// Keys written by more than one source, each with its sources in order.
    pub conflicts: BTreeMap<String, Vec<MetadataSource>>,
}

/// Stage C: the per-Alert merge of RFC 0008 (flux-semantics §5.3).
///
/// Object annotations, then the Alert's `eventMetadata`, then its `summary`,
/// then controller metadata, later ones overwriting earlier ones, prefixes
/// stripped. When nothing was merged the (cleaned) input map is kept as it is.
///
/// `cluster` (the event's cluster, when Herald names it in notifications)
/// is merged as if the Alert's `eventMetadata` had `cluster: <name>`, unless
/// it has a `cluster` key of its own.
#[must_use]
pub fn merge_for_alert(
    metadata: &BTreeMap<String, String>,
    group: &str,
    event_metadata: &BTreeMap<String, String>,
    summary: &str,
    cluster: Option<&str>,
) -> Merged {
    let mut merged = Merged::default();
    let mut sources: BTreeMap<String, Vec<MetadataSource>> = BTreeMap::new();
    let mut put = |key: &str, value: &str, source: MetadataSource| {
        merged.metadata.insert(key.to_owned(), value.to_owned());
        sources.entry(key.to_owned()).or_default().push(source);
    };
    let event_prefix = format!("{EVENT_GROUP}/");
    for (key, value) in metadata {
        if let Some(stripped) = key.strip_prefix(&event_prefix) {
            put(stripped, value, MetadataSource::ObjectAnnotations);
        }
    }
    if let Some(cluster) = cluster
        && !event_metadata.contains_key(CLUSTER_KEY)
    {
        put(CLUSTER_KEY, cluster, MetadataSource::AlertEventMetadata);
    }
    for (key, value) in event_metadata {
        put(key, value, MetadataSource::AlertEventMetadata);
    }
    if !summary.is_empty() {
        put("summary", summary, MetadataSource::AlertSummary);
    }
    let group_prefix = format!("{group}/");
    for (key, value) in metadata {
        if let Some(stripped) = key.strip_prefix(&group_prefix) {
            put(stripped, value, MetadataSource::ControllerMetadata);
        }
    }
    merged.conflicts = sources.into_iter().filter(|(_, s)| s.len() > 1).collect();
    if merged.metadata.is_empty() {
        merged.metadata = metadata.clone();
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn api_group_follows_go_split() {
        assert_eq!(
            api_group("kustomize.toolkit.fluxcd.io/v1"),
            "kustomize.toolkit.fluxcd.io"
        );
        assert_eq!(api_group("v1"), "");
        assert_eq!(api_group(""), "");
        assert_eq!(api_group("a/b/c"), "");
    }

    #[test]
    fn cleanup_keeps_only_group_and_event_keys() {
        let g = "source.toolkit.fluxcd.io";
        let mut m = map(&[
            ("source.toolkit.fluxcd.io/revision", "r"),
            ("source.toolkit.fluxcd.io/digest", "d"),
            ("source.toolkit.fluxcd.io/Checksum", "c"),
            ("event.toolkit.fluxcd.io/commit", "abc"),
            ("kustomize.toolkit.fluxcd.io/revision", "other group"),
            ("plain", "x"),
        ]);
        cleanup(&mut m, g);
        assert_eq!(
            m,
            map(&[
                ("event.toolkit.fluxcd.io/commit", "abc"),
                ("source.toolkit.fluxcd.io/revision", "r"),
            ])
        );
    }

    #[test]
    fn empty_group_keeps_slash_prefixed_keys_only() {
        let mut m = map(&[("/revision", "r"), ("revision", "x")]);
        cleanup(&mut m, "");
        assert_eq!(m, map(&[("/revision", "r")]));
    }

    #[test]
    fn token_is_removed_in_stage_b() {
        let g = "helm.toolkit.fluxcd.io";
        let mut m = map(&[
            ("helm.toolkit.fluxcd.io/token", "sha256:x"),
            ("helm.toolkit.fluxcd.io/revision", "1"),
        ]);
        exclude_internal(&mut m, g);
        assert_eq!(m, map(&[("helm.toolkit.fluxcd.io/revision", "1")]));
    }

    /// flux-semantics §5.5, from the controller's TestCombineEventMetadata.
    #[test]
    fn merge_precedence_matches_rfc_0008() {
        let g = "kustomize.toolkit.fluxcd.io";
        let metadata = map(&[
            (
                "kustomize.toolkit.fluxcd.io/objectMetadataOverridenByController",
                "controllerMetadataValue1",
            ),
            (
                "kustomize.toolkit.fluxcd.io/alertMetadataOverridenByController",
                "controllerMetadataValue2",
            ),
            (
                "kustomize.toolkit.fluxcd.io/controllerMetadata",
                "controllerMetadataValue3",
            ),
            (
                "event.toolkit.fluxcd.io/objectMetadata",
                "objectMetadataValue1",
            ),
            (
                "event.toolkit.fluxcd.io/objectMetadataOverridenByAlert",
                "objectMetadataValue2",
            ),
            (
                "event.toolkit.fluxcd.io/objectMetadataOverridenByController",
                "objectMetadataValue3",
            ),
        ]);
        let alert = map(&[
            ("objectMetadataOverridenByAlert", "alertMetadataValue1"),
            ("alertMetadata", "alertMetadataValue2"),
            ("alertMetadataOverridenByController", "alertMetadataValue3"),
        ]);
        let merged = merge_for_alert(&metadata, g, &alert, "", None);
        assert_eq!(
            merged.metadata,
            map(&[
                ("objectMetadata", "objectMetadataValue1"),
                ("objectMetadataOverridenByAlert", "alertMetadataValue1"),
                (
                    "objectMetadataOverridenByController",
                    "controllerMetadataValue1"
                ),
                ("alertMetadata", "alertMetadataValue2"),
                (
                    "alertMetadataOverridenByController",
                    "controllerMetadataValue2"
                ),
                ("controllerMetadata", "controllerMetadataValue3"),
            ])
        );
        assert_eq!(
            merged.conflicts.keys().collect::<Vec<_>>(),
            [
                "alertMetadataOverridenByController",
                "objectMetadataOverridenByAlert",
                "objectMetadataOverridenByController"
            ]
        );
        assert_eq!(
            merged.conflicts["objectMetadataOverridenByController"],
            [
                MetadataSource::ObjectAnnotations,
                MetadataSource::ControllerMetadata
            ]
        );
    }

    #[test]
    fn the_cluster_is_merged_as_alert_event_metadata_unless_the_alert_names_one() {
        let merged = merge_for_alert(
            &BTreeMap::new(),
            "g",
            &map(&[("env", "prod")]),
            "",
            Some("eu"),
        );
        assert_eq!(merged.metadata, map(&[("cluster", "eu"), ("env", "prod")]));
        let own = map(&[("cluster", "mine")]);
        let merged = merge_for_alert(&BTreeMap::new(), "g", &own, "", Some("eu"));
        assert_eq!(merged.metadata, own);
        assert!(merged.conflicts.is_empty());
        // A controller key still wins, as over any eventMetadata.
        let controller = map(&[("g/cluster", "ctl")]);
        let merged = merge_for_alert(&controller, "g", &BTreeMap::new(), "", Some("eu"));
        assert_eq!(merged.metadata, map(&[("cluster", "ctl")]));
    }

    #[test]
    fn controller_summary_beats_alert_summary() {
        let g = "kustomize.toolkit.fluxcd.io";
        let metadata = map(&[("kustomize.toolkit.fluxcd.io/summary", "controllerSummary")]);
        let merged = merge_for_alert(&metadata, g, &BTreeMap::new(), "alertSummary", None);
        assert_eq!(merged.metadata, map(&[("summary", "controllerSummary")]));
    }

    #[test]
    fn nothing_to_merge_keeps_the_input() {
        let merged = merge_for_alert(&BTreeMap::new(), "g", &BTreeMap::new(), "", None);
        assert!(merged.metadata.is_empty());
        assert!(merged.conflicts.is_empty());
    }
}
