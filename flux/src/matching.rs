//! Alert matching (flux-semantics §3.4) and per-provider dispatch gating (§3.8),
//! with an index so that the cost per event depends on the Alerts that can
//! match it, not on all Alerts.
//!
//! Beyond Flux: an event source with `namespace: "*"` hears its kind in every
//! namespace, but only in an Alert of a fleet administration namespace
//! ([`AlertOptions`]); anywhere else it is a problem on the Alert and matches
//! nothing, as in Flux (no namespace is named `*`), so tenancy holds.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use herald_proto::Event;
use regex::Regex;

use crate::clusters::ClusterSelection;
use crate::metadata::EVENT_GROUP;
use crate::objects::Alert;
use crate::provider_type::{Category, ProviderType};

/// The event source namespace that means every namespace (fleet
/// administration Alerts only).
pub const ALL_NAMESPACES: &str = "*";

/// What the operator decided for every Alert of an install, applied when
/// Alerts are compiled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertOptions {
    /// The namespaces whose Alerts may hear every namespace with an event
    /// source `namespace: "*"` (`--fleet-admin-namespace`).
    pub fleet_admin_namespaces: BTreeSet<String>,
}

// === impl AlertOptions ===

impl AlertOptions {
    /// Options with these fleet administration namespaces (empty names are
    /// ignored).
    #[must_use]
    pub fn with_fleet_admin_namespaces<I, S>(namespaces: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            fleet_admin_namespaces: namespaces
                .into_iter()
                .map(Into::into)
                .filter(|ns: &String| !ns.is_empty())
                .collect(),
        }
    }

    /// Whether Alerts in `namespace` may hear every namespace.
    #[must_use]
    pub fn is_fleet_admin(&self, namespace: &str) -> bool {
        self.fleet_admin_namespaces.contains(namespace)
    }
}

/// An Alert with its regexes compiled once.
#[derive(Debug)]
pub struct CompiledAlert {
    /// Shared with the catalog source that read it.
    pub alert: Arc<Alert>,
    /// The Alert's uid (explicit or derived).
    pub uid: String,
    inclusion: Vec<Regex>,
    exclusion: Vec<Regex>,
    /// The clusters it hears from (Herald's annotations).
    pub clusters: ClusterSelection,
    /// Reasons and severities it hears (Herald's annotations).
    pub filter: crate::filters::EventFilter,
    /// Its message templates (Herald's annotations), compiled once.
    pub templates: crate::template::Templates,
    /// Whether it is in a fleet administration namespace, where an event
    /// source `namespace: "*"` hears every namespace.
    pub fleet_admin: bool,
    /// Grouping, repeat threshold and recovery (Herald's annotations).
    pub flood: crate::grouping::FloodControl,
    /// Problems found while compiling (invalid regexes, in the
    /// notification-controller's words; invalid Herald annotations;
    /// templates that do not compile).
    pub warnings: Vec<String>,
}

// === impl CompiledAlert ===

impl CompiledAlert {
    /// Compiles the Alert's inclusion and exclusion lists. An invalid regex is
    /// skipped with a warning, as the notification-controller does; so an
    /// inclusion list whose entries are all invalid matches nothing. No
    /// namespace is a fleet administration one.
    #[must_use]
    pub fn new(alert: impl Into<Arc<Alert>>) -> Self {
        Self::with_options(alert, &AlertOptions::default())
    }

    /// As [`CompiledAlert::new`], with the install's `options`: in a
    /// fleet administration namespace an event source `namespace: "*"`
    /// hears every namespace; elsewhere it is a warning and matches nothing.
    #[must_use]
    pub fn with_options(alert: impl Into<Arc<Alert>>, options: &AlertOptions) -> Self {
        let alert = alert.into();
        let fleet_admin = options.is_fleet_admin(&alert.meta.namespace);
        let mut warnings = Vec::new();
        if !fleet_admin {
            for (i, source) in alert.spec.event_sources.iter().enumerate() {
                if source.namespace == ALL_NAMESPACES {
                    warnings.push(format!(
                        "spec.eventSources[{i}].namespace is \"*\" (all namespaces), which only \
                         Alerts in a fleet administration namespace may use, and {} is not one \
                         (--fleet-admin-namespace); this source matches nothing",
                        alert.meta.namespace
                    ));
                }
            }
        }
        let mut compile = |list: &[String], which: &str| -> Vec<Regex> {
            list.iter()
                .filter_map(|expr| match Regex::new(expr) {
                    Ok(re) => Some(re),
                    Err(_) => {
                        warnings.push(format!("failed to compile {which} regex: {expr}"));
                        None
                    }
                })
                .collect()
        };
        let inclusion = compile(&alert.spec.inclusion_list, "inclusion");
        let exclusion = compile(&alert.spec.exclusion_list, "exclusion");
        let (clusters, problems) = ClusterSelection::from_annotations(&alert.meta.annotations);
        warnings.extend(problems);
        let (filter, problems) =
            crate::filters::EventFilter::from_annotations(&alert.meta.annotations);
        warnings.extend(problems);
        let (templates, problems) =
            crate::template::Templates::from_annotations(&alert.meta.annotations);
        warnings.extend(problems);
        if let Err(problem) = crate::threads::slack_thread_setting(&alert.meta.annotations) {
            warnings.push(problem);
        }
        let (flood, problems) =
            crate::grouping::FloodControl::from_annotations(&alert.meta.annotations);
        warnings.extend(problems);
        Self {
            uid: alert.uid(),
            alert,
            inclusion,
            exclusion,
            clusters,
            filter,
            templates,
            fleet_admin,
            flood,
            warnings,
        }
    }

    /// Whether this Alert hears every namespace: it is in a fleet
    /// administration namespace and an event source names `namespace: "*"`.
    #[must_use]
    pub fn hears_all_namespaces(&self) -> bool {
        self.fleet_admin
            && self
                .alert
                .spec
                .event_sources
                .iter()
                .any(|s| s.namespace == ALL_NAMESPACES)
    }

    /// Whether one of its all-namespaces sources selects `event` (which
    /// `--no-cross-namespace-refs` does not deny: the operator named the
    /// Alert's namespace a fleet administration one).
    #[must_use]
    pub fn all_namespaces_selects(&self, event: &Event) -> bool {
        self.fleet_admin
            && self.alert.spec.event_sources.iter().any(|source| {
                source.namespace == ALL_NAMESPACES && self.source_matches(source, event)
            })
    }

    /// Whether the event's severity passes Flux's own rule for this Alert
    /// (`eventSeverity: error` hears only errors): an info event that does
    /// not is heard only as a possible recovery (`herald.dev/recovery`).
    #[must_use]
    pub fn hears_severity(&self, event: &Event) -> bool {
        let severity = self.alert.event_severity();
        event.severity == severity || severity == "info"
    }

    /// Whether this Alert selects the event (§3.4, steps 1–4).
    #[must_use]
    pub fn matches(&self, event: &Event) -> bool {
        let spec = &self.alert.spec;
        if spec.suspend {
            return false;
        }
        let source_matches = spec
            .event_sources
            .iter()
            .any(|source| self.source_matches(source, event));
        if !source_matches {
            return false;
        }
        if !spec.inclusion_list.is_empty()
            && !self.inclusion.iter().any(|re| re.is_match(&event.message))
        {
            return false;
        }
        !self.exclusion.iter().any(|re| re.is_match(&event.message))
            && self.filter.drops(event).is_none()
    }

    fn source_matches(&self, source: &crate::objects::EventSource, event: &Event) -> bool {
        self.source_mismatch(source, event).is_none()
    }

    /// Why `source` does not select `event` (the first test it fails, in
    /// Flux's order), or `None` when it does.
    fn source_mismatch(
        &self,
        source: &crate::objects::EventSource,
        event: &Event,
    ) -> Option<SourceMismatch> {
        let obj = event.involved_object.as_ref();
        let (kind, namespace, name) = obj.map_or(("", "", ""), |o| {
            (o.kind.as_str(), o.namespace.as_str(), o.name.as_str())
        });
        if source.namespace == ALL_NAMESPACES {
            if !self.fleet_admin {
                return Some(SourceMismatch::NotFleetAdmin);
            }
        } else {
            let wanted_namespace = if source.namespace.is_empty() {
                &self.alert.meta.namespace
            } else {
                &source.namespace
            };
            if namespace != wanted_namespace {
                return Some(SourceMismatch::Namespace);
            }
        }
        if kind != source.kind {
            return Some(SourceMismatch::Kind);
        }
        let severity = self.alert.event_severity();
        // An Alert with recovery messages hears the info events that may
        // end a notified error (the router sends only those).
        let recovery = self.flood.recovery && event.severity == "info";
        if event.severity != severity && severity != "info" && !recovery {
            return Some(SourceMismatch::Severity);
        }
        if source.name != "*" && source.name != name {
            return Some(SourceMismatch::Name);
        }
        match &source.match_labels {
            None => None,
            // Labels travel with the event; when they are unknown the object
            // cannot be checked, which Flux treats as a failed lookup.
            Some(_) if !event.labels_known => Some(SourceMismatch::LabelsUnknown),
            Some(selector) => (!selector
                .iter()
                .all(|(k, v)| event.labels.get(k).is_some_and(|l| l == v)))
            .then_some(SourceMismatch::Labels),
        }
    }

    /// Why this Alert does or does not select the event, in words (what
    /// `herald route --dry-run` shows). The same tests as
    /// [`CompiledAlert::matches`]. When it does, `Ok` names the
    /// all-namespaces sources that select it, if any (`None` when only
    /// sources of Flux's kind do).
    ///
    /// # Errors
    ///
    /// The reason it does not match.
    pub fn explain(&self, event: &Event) -> Result<Option<String>, String> {
        let spec = &self.alert.spec;
        if spec.suspend {
            return Err("the Alert is suspended".to_owned());
        }
        let mismatches: Vec<String> = spec
            .event_sources
            .iter()
            .enumerate()
            .map(|(i, source)| {
                self.source_mismatch(source, event).map(|m| {
                    format!(
                        "eventSources[{i}] ({}/{}): {}",
                        source.kind,
                        source.name,
                        m.describe(self, source)
                    )
                })
            })
            .collect::<Option<Vec<String>>>()
            .unwrap_or_default();
        if !mismatches.is_empty() || spec.event_sources.is_empty() {
            if spec.event_sources.is_empty() {
                return Err("the Alert has no event sources".to_owned());
            }
            return Err(format!(
                "no event source selects it: {}",
                mismatches.join("; ")
            ));
        }
        if !spec.inclusion_list.is_empty()
            && !self.inclusion.iter().any(|re| re.is_match(&event.message))
        {
            return Err("the message matches no regex of spec.inclusionList".to_owned());
        }
        if let Some(re) = self.exclusion.iter().find(|re| re.is_match(&event.message)) {
            return Err(format!(
                "the message matches {:?} of spec.exclusionList",
                re.as_str()
            ));
        }
        let namespace = event
            .involved_object
            .as_ref()
            .map_or("", |o| o.namespace.as_str());
        let wildcards: Vec<String> = spec
            .event_sources
            .iter()
            .enumerate()
            .filter(|(_, source)| {
                source.namespace == ALL_NAMESPACES && self.source_matches(source, event)
            })
            .map(|(i, source)| format!("eventSources[{i}] ({}/{})", source.kind, source.name))
            .collect();
        if wildcards.is_empty() {
            return Ok(None);
        }
        Ok(Some(format!(
            "{} select{} it in namespace {namespace}: namespace \"*\" hears all namespaces, as \
             {} is a fleet administration namespace",
            wildcards.join(", "),
            if wildcards.len() == 1 { "s" } else { "" },
            self.alert.meta.namespace
        )))
    }
}

/// The first test of an event source an event fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SourceMismatch {
    Namespace,
    NotFleetAdmin,
    Kind,
    Severity,
    Name,
    LabelsUnknown,
    Labels,
}

impl SourceMismatch {
    fn describe(self, alert: &CompiledAlert, source: &crate::objects::EventSource) -> String {
        match self {
            Self::Namespace => format!(
                "the object is not in namespace {}",
                if source.namespace.is_empty() {
                    &alert.alert.meta.namespace
                } else {
                    &source.namespace
                }
            ),
            Self::NotFleetAdmin => format!(
                "namespace \"*\" (all namespaces) is only for Alerts in a fleet administration \
                 namespace (--fleet-admin-namespace), and {} is not one",
                alert.alert.meta.namespace
            ),
            Self::Kind => format!("the object is not a {}", source.kind),
            Self::Severity => format!(
                "the Alert's eventSeverity is {}",
                alert.alert.event_severity()
            ),
            Self::Name => format!("the object is not named {}", source.name),
            Self::LabelsUnknown => "matchLabels, and the object's labels are not known".to_owned(),
            Self::Labels => "the object's labels do not match matchLabels".to_owned(),
        }
    }
}

/// Alerts indexed by the (namespace, kind) of the events they can match, and
/// fleet administration Alerts hearing all namespaces by kind alone.
#[derive(Debug, Default)]
pub struct AlertIndex {
    alerts: Vec<Arc<CompiledAlert>>,
    by_source: HashMap<(String, String), Vec<usize>>,
    /// Alerts with an event source `namespace: "*"` that hears every
    /// namespace, by the source's kind.
    all_namespaces: HashMap<String, Vec<usize>>,
}

// === impl AlertIndex ===

impl AlertIndex {
    /// Indexes `alerts`; matching keeps their order.
    #[must_use]
    pub fn new(alerts: Vec<Arc<CompiledAlert>>) -> Self {
        let mut by_source: HashMap<(String, String), Vec<usize>> = HashMap::new();
        let mut all_namespaces: HashMap<String, Vec<usize>> = HashMap::new();
        // Each Alert is pushed once per slot: indexes ascend in every slot.
        let push = |slot: &mut Vec<usize>, i: usize| {
            if slot.last() != Some(&i) {
                slot.push(i);
            }
        };
        for (i, compiled) in alerts.iter().enumerate() {
            if compiled.alert.spec.suspend {
                continue;
            }
            for source in &compiled.alert.spec.event_sources {
                if source.namespace == ALL_NAMESPACES {
                    // Elsewhere than a fleet administration namespace it
                    // matches nothing: not indexed.
                    if compiled.fleet_admin {
                        push(all_namespaces.entry(source.kind.clone()).or_default(), i);
                    }
                    continue;
                }
                let namespace = if source.namespace.is_empty() {
                    compiled.alert.meta.namespace.clone()
                } else {
                    source.namespace.clone()
                };
                push(
                    by_source
                        .entry((namespace, source.kind.clone()))
                        .or_default(),
                    i,
                );
            }
        }
        Self {
            alerts,
            by_source,
            all_namespaces,
        }
    }

    /// All indexed Alerts, in order.
    #[must_use]
    pub fn alerts(&self) -> &[Arc<CompiledAlert>] {
        &self.alerts
    }

    /// The Alerts that select `event`, in order, each once.
    #[must_use]
    pub fn matching(&self, event: &Event) -> Vec<Arc<CompiledAlert>> {
        let Some(obj) = event.involved_object.as_ref() else {
            return Vec::new();
        };
        let key = (obj.namespace.clone(), obj.kind.clone());
        let named = self.by_source.get(&key).map_or(&[][..], Vec::as_slice);
        let everywhere = self
            .all_namespaces
            .get(&obj.kind)
            .map_or(&[][..], Vec::as_slice);
        merge_ascending(named, everywhere)
            .map(|i| &self.alerts[i])
            .filter(|a| a.matches(event))
            .cloned()
            .collect()
    }
}

/// The union of two ascending lists of indexes, ascending, each index once.
fn merge_ascending<'a>(a: &'a [usize], b: &'a [usize]) -> impl Iterator<Item = usize> + 'a {
    let (mut a, mut b) = (a.iter().peekable(), b.iter().peekable());
    std::iter::from_fn(move || match (a.peek(), b.peek()) {
        (Some(&&x), Some(&&y)) => {
            if x <= y {
                a.next();
            }
            if y <= x {
                b.next();
            }
            Some(x.min(y))
        }
        (Some(_), None) => a.next().copied(),
        (None, Some(_)) => b.next().copied(),
        (None, None) => None,
    })
}

/// What dispatch gating decided for one (event, Alert, Provider).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Send it.
    Send,
    /// `--no-cross-namespace-refs` is on and the event is from another namespace.
    CrossNamespaceDenied,
    /// The Provider is suspended (silent skip).
    ProviderSuspended,
    /// A `commit_status=update` event for a provider that is neither a
    /// commit-status nor a generic type (silent skip).
    CommitStatusUpdateOnly,
    /// A commit-status provider, an info event without `commit` metadata that
    /// is not a commit-status update.
    MissingCommit,
    /// A change-request provider and no `change_request` metadata.
    MissingChangeRequest,
}

/// Decides whether a matched event goes to a provider (flux-semantics §3.8,
/// steps 1 and 3–6). `metadata` is the event's metadata after stages A and B
/// (keys still prefixed), `group` the involved object's API group.
#[must_use]
pub fn gate(
    event: &Event,
    alert_namespace: &str,
    no_cross_namespace_refs: bool,
    provider_type: &str,
    provider_suspended: bool,
    group: &str,
) -> Gate {
    let namespace = event
        .involved_object
        .as_ref()
        .map_or("", |o| o.namespace.as_str());
    if no_cross_namespace_refs && namespace != alert_namespace {
        return Gate::CrossNamespaceDenied;
    }
    if provider_suspended {
        return Gate::ProviderSuspended;
    }
    let metadata: &BTreeMap<String, String> = &event.metadata;
    let commit_status_update = metadata
        .get(&format!("{group}/commit_status"))
        .is_some_and(|v| v == "update");
    let category = provider_type
        .parse::<ProviderType>()
        .map_or(Category::Message, ProviderType::category);
    let is_commit_status = category == Category::CommitStatus;
    if commit_status_update && !is_commit_status && category != Category::Forward {
        return Gate::CommitStatusUpdateOnly;
    }
    let non_empty = |key: &str| {
        metadata
            .get(&format!("{EVENT_GROUP}/{key}"))
            .is_some_and(|v| !v.is_empty())
    };
    if is_commit_status
        && !non_empty("commit")
        && !commit_status_update
        && event.severity != "error"
    {
        return Gate::MissingCommit;
    }
    if category == Category::ChangeRequest && !non_empty("change_request") {
        return Gate::MissingChangeRequest;
    }
    Gate::Send
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::{AlertSpec, EventSource, LocalRef, ObjectMeta};
    use herald_proto::ObjectReference;

    fn alert(name: &str, namespace: &str, severity: &str, sources: Vec<EventSource>) -> Alert {
        Alert {
            meta: ObjectMeta {
                name: name.into(),
                namespace: namespace.into(),
                ..ObjectMeta::default()
            },
            spec: AlertSpec {
                provider_ref: LocalRef { name: "p".into() },
                event_severity: severity.into(),
                event_sources: sources,
                ..AlertSpec::default()
            },
        }
    }

    fn source(kind: &str, name: &str, namespace: &str) -> EventSource {
        EventSource {
            kind: kind.into(),
            name: name.into(),
            namespace: namespace.into(),
            ..EventSource::default()
        }
    }

    fn event(kind: &str, namespace: &str, name: &str, severity: &str, message: &str) -> Event {
        Event {
            involved_object: Some(ObjectReference {
                kind: kind.into(),
                namespace: namespace.into(),
                name: name.into(),
                ..ObjectReference::default()
            }),
            severity: severity.into(),
            message: message.into(),
            ..Event::default()
        }
    }

    #[test]
    fn source_rules_follow_flux() {
        let ks = |name: &str, ns: &str| source("Kustomization", name, ns);
        // (alert namespace, severity, sources, event kind/ns/name/severity, expected)
        type Row<'a> = (
            &'a str,
            &'a str,
            Vec<EventSource>,
            (&'a str, &'a str, &'a str, &'a str),
            bool,
        );
        let table: &[Row<'_>] = &[
            (
                "apps",
                "info",
                vec![ks("*", "")],
                ("Kustomization", "apps", "x", "info"),
                true,
            ),
            (
                "apps",
                "info",
                vec![ks("*", "")],
                ("Kustomization", "other", "x", "info"),
                false,
            ),
            (
                "apps",
                "info",
                vec![ks("*", "other")],
                ("Kustomization", "other", "x", "info"),
                true,
            ),
            (
                "apps",
                "info",
                vec![ks("*", "*")],
                ("Kustomization", "other", "x", "info"),
                false,
            ),
            (
                "apps",
                "info",
                vec![ks("x", "")],
                ("Kustomization", "apps", "x", "error"),
                true,
            ),
            (
                "apps",
                "info",
                vec![ks("x", "")],
                ("Kustomization", "apps", "y", "info"),
                false,
            ),
            (
                "apps",
                "info",
                vec![ks("web*", "")],
                ("Kustomization", "apps", "webapp", "info"),
                false,
            ),
            (
                "apps",
                "info",
                vec![ks("*", "")],
                ("kustomization", "apps", "x", "info"),
                false,
            ),
            (
                "apps",
                "info",
                vec![ks("*", "")],
                ("HelmRelease", "apps", "x", "info"),
                false,
            ),
            (
                "apps",
                "error",
                vec![ks("*", "")],
                ("Kustomization", "apps", "x", "info"),
                false,
            ),
            (
                "apps",
                "error",
                vec![ks("*", "")],
                ("Kustomization", "apps", "x", "error"),
                true,
            ),
            (
                "apps",
                "",
                vec![ks("*", "")],
                ("Kustomization", "apps", "x", "trace"),
                true,
            ),
            (
                "apps",
                "info",
                vec![],
                ("Kustomization", "apps", "x", "info"),
                false,
            ),
            (
                "apps",
                "info",
                vec![source("HelmRelease", "*", ""), ks("x", "")],
                ("Kustomization", "apps", "x", "info"),
                true,
            ),
        ];
        for (i, (ns, severity, sources, (kind, ens, name, esev), want)) in table.iter().enumerate()
        {
            let compiled = CompiledAlert::new(alert("a", ns, severity, sources.clone()));
            let got = compiled.matches(&event(kind, ens, name, esev, "m"));
            assert_eq!(got, *want, "row {i}");
        }
    }

    #[test]
    fn suspended_alerts_never_match() {
        let mut a = alert("a", "apps", "info", vec![source("Kustomization", "*", "")]);
        a.spec.suspend = true;
        let index = AlertIndex::new(vec![Arc::new(CompiledAlert::new(a))]);
        assert!(
            index
                .matching(&event("Kustomization", "apps", "x", "info", "m"))
                .is_empty()
        );
    }

    #[test]
    fn inclusion_then_exclusion() {
        let mut a = alert("a", "apps", "info", vec![source("Kustomization", "*", "")]);
        a.spec.inclusion_list = vec!["^deploy".into(), "(".into()];
        a.spec.exclusion_list = vec!["skip".into()];
        let compiled = CompiledAlert::new(a);
        assert_eq!(compiled.warnings, ["failed to compile inclusion regex: ("]);
        let ev = |m: &str| event("Kustomization", "apps", "x", "info", m);
        assert!(compiled.matches(&ev("deployed v2")));
        assert!(!compiled.matches(&ev("x deployed")));
        assert!(!compiled.matches(&ev("deployed, skip this")));

        let mut all_invalid = alert("b", "apps", "info", vec![source("Kustomization", "*", "")]);
        all_invalid.spec.inclusion_list = vec!["(".into()];
        assert!(!CompiledAlert::new(all_invalid).matches(&ev("anything")));
    }

    #[test]
    fn match_labels_need_known_labels() {
        let mut s = source("Kustomization", "*", "");
        s.match_labels = Some(BTreeMap::from([("team".into(), "a".into())]));
        let compiled = CompiledAlert::new(alert("a", "apps", "info", vec![s.clone()]));
        let mut ev = event("Kustomization", "apps", "x", "info", "m");
        assert!(!compiled.matches(&ev), "labels unknown");
        ev.labels_known = true;
        assert!(!compiled.matches(&ev), "label missing");
        ev.labels.insert("team".into(), "a".into());
        assert!(compiled.matches(&ev));
        s.match_labels = Some(BTreeMap::new());
        let empty = CompiledAlert::new(alert("a", "apps", "info", vec![s]));
        ev.labels_known = false;
        assert!(
            !empty.matches(&ev),
            "an empty selector still needs the object"
        );
    }

    #[test]
    fn index_returns_matches_in_order_and_skips_others() {
        let mut alerts = Vec::new();
        for i in 0..100 {
            alerts.push(Arc::new(CompiledAlert::new(alert(
                &format!("a{i}"),
                &format!("ns{i}"),
                "info",
                vec![source("Kustomization", "*", "")],
            ))));
        }
        alerts.push(Arc::new(CompiledAlert::new(alert(
            "cross",
            "other",
            "info",
            vec![
                source("Kustomization", "*", "ns7"),
                source("Kustomization", "x", "ns7"),
            ],
        ))));
        let index = AlertIndex::new(alerts);
        let names: Vec<String> = index
            .matching(&event("Kustomization", "ns7", "x", "info", "m"))
            .iter()
            .map(|a| a.alert.meta.name.clone())
            .collect();
        assert_eq!(names, ["a7", "cross"]);
    }

    #[test]
    fn all_namespaces_only_for_fleet_admin_namespaces() {
        let options = AlertOptions::with_fleet_admin_namespaces(["flux-system", ""]);
        assert_eq!(options.fleet_admin_namespaces.len(), 1);
        let sources = || {
            vec![
                source("Kustomization", "*", "*"),
                source("HelmRelease", "web", ""),
            ]
        };
        let admin =
            CompiledAlert::with_options(alert("a", "flux-system", "info", sources()), &options);
        let tenant = CompiledAlert::with_options(alert("a", "team-a", "info", sources()), &options);
        assert!(admin.warnings.is_empty());
        assert!(admin.hears_all_namespaces());
        assert!(!tenant.hears_all_namespaces());
        assert_eq!(tenant.warnings.len(), 1);
        assert!(
            tenant.warnings[0].starts_with("spec.eventSources[0].namespace is \"*\"")
                && tenant.warnings[0].contains("--fleet-admin-namespace"),
            "{}",
            tenant.warnings[0]
        );

        let far = event("Kustomization", "team-b", "x", "info", "m");
        assert!(admin.matches(&far));
        assert!(admin.all_namespaces_selects(&far));
        let note = admin.explain(&far).expect("matches").expect("a note");
        assert!(
            note.starts_with("eventSources[0] (Kustomization/*) selects it in namespace team-b"),
            "{note}"
        );
        assert!(!tenant.matches(&far));
        let reason = tenant.explain(&far).expect_err("no match");
        assert!(reason.contains("fleet administration"), "{reason}");

        // The tenant's other source still works, and is no wildcard match.
        let own = event("HelmRelease", "team-a", "web", "info", "m");
        assert!(tenant.matches(&own));
        assert_eq!(tenant.explain(&own), Ok(None));
        assert!(!tenant.all_namespaces_selects(&own));
        // A kind the wildcard source does not name.
        assert!(!admin.matches(&event("HelmRelease", "team-b", "web", "info", "m")));
        // The default options know no fleet administration namespace.
        assert!(!CompiledAlert::new(alert("a", "flux-system", "info", sources())).matches(&far));
    }

    #[test]
    fn index_merges_all_namespaces_alerts_in_order_once() {
        let options = AlertOptions::with_fleet_admin_namespaces(["admin"]);
        let compile = |a: Alert| Arc::new(CompiledAlert::with_options(a, &options));
        let alerts = vec![
            // Both sources select an event in "admin": matched once.
            compile(alert(
                "a0",
                "admin",
                "info",
                vec![
                    source("Kustomization", "*", "*"),
                    source("Kustomization", "*", ""),
                    source("Kustomization", "x", "*"),
                ],
            )),
            compile(alert(
                "a1",
                "team",
                "info",
                vec![source("Kustomization", "*", "")],
            )),
            // A tenant's "*" hears nothing.
            compile(alert(
                "a2",
                "team",
                "info",
                vec![source("Kustomization", "*", "*")],
            )),
            compile(alert(
                "a3",
                "admin",
                "info",
                vec![source("Kustomization", "*", "*")],
            )),
            compile(alert(
                "a4",
                "admin",
                "info",
                vec![source("HelmRelease", "*", "*")],
            )),
        ];
        let index = AlertIndex::new(alerts);
        let names = |ns: &str| -> Vec<String> {
            index
                .matching(&event("Kustomization", ns, "x", "info", "m"))
                .iter()
                .map(|a| a.alert.meta.name.clone())
                .collect()
        };
        assert_eq!(names("team"), ["a0", "a1", "a3"]);
        assert_eq!(names("admin"), ["a0", "a3"]);
        assert_eq!(names("elsewhere"), ["a0", "a3"]);
    }

    #[test]
    fn merging_keeps_order_and_drops_repeats() {
        let merged: Vec<usize> = merge_ascending(&[0, 2, 5, 9], &[1, 2, 9, 10]).collect();
        assert_eq!(merged, [0, 1, 2, 5, 9, 10]);
        assert_eq!(merge_ascending(&[], &[3]).collect::<Vec<_>>(), [3]);
        assert_eq!(merge_ascending(&[4], &[]).collect::<Vec<_>>(), [4]);
    }

    #[test]
    fn gating_follows_provider_categories() {
        let g = "kustomize.toolkit.fluxcd.io";
        let mut update = event("Kustomization", "apps", "x", "info", "m");
        update
            .metadata
            .insert(format!("{g}/commit_status"), "update".into());
        let plain = event("Kustomization", "apps", "x", "info", "m");
        let failed = event("Kustomization", "apps", "x", "error", "m");
        let mut with_commit = plain.clone();
        with_commit
            .metadata
            .insert("event.toolkit.fluxcd.io/commit".into(), "abc".into());
        let mut with_cr = plain.clone();
        with_cr
            .metadata
            .insert("event.toolkit.fluxcd.io/change_request".into(), "7".into());

        let table = [
            (&update, "slack", Gate::CommitStatusUpdateOnly),
            (&update, "generic", Gate::Send),
            (&update, "github", Gate::Send),
            (&update, "githubdispatch", Gate::CommitStatusUpdateOnly),
            (
                &update,
                "githubpullrequestcomment",
                Gate::CommitStatusUpdateOnly,
            ),
            (&plain, "github", Gate::MissingCommit),
            (&failed, "gitlab", Gate::Send),
            (&with_commit, "gitea", Gate::Send),
            (&plain, "slack", Gate::Send),
            (
                &plain,
                "gitlabmergerequestcomment",
                Gate::MissingChangeRequest,
            ),
            (&with_cr, "gitlabmergerequestcomment", Gate::Send),
        ];
        for (ev, provider_type, want) in table {
            assert_eq!(
                gate(ev, "apps", false, provider_type, false, g),
                want,
                "{provider_type}"
            );
        }
        assert_eq!(
            gate(&plain, "apps", false, "slack", true, g),
            Gate::ProviderSuspended
        );
        assert_eq!(
            gate(&plain, "other", true, "slack", false, g),
            Gate::CrossNamespaceDenied
        );
        assert_eq!(gate(&plain, "other", false, "slack", false, g), Gate::Send);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn pick(options: &'static [&'static str]) -> impl Strategy<Value = String> {
            proptest::sample::select(options).prop_map(str::to_owned)
        }

        fn arb_source() -> impl Strategy<Value = EventSource> {
            (
                pick(&["Kustomization", "HelmRelease", "GitRepository"]),
                pick(&["*", "a", "b"]),
                pick(&["", "ns1", "ns2", "*"]),
            )
                .prop_map(|(kind, name, namespace)| source(&kind, &name, &namespace))
        }

        fn arb_alert() -> impl Strategy<Value = Alert> {
            (
                pick(&["ns1", "ns2", "ns3"]),
                pick(&["info", "error", ""]),
                proptest::collection::vec(arb_source(), 0..4),
                any::<bool>(),
                proptest::option::of(pick(&["^d", "x", "("])),
            )
                .prop_map(|(namespace, severity, sources, suspend, inclusion)| {
                    let mut a = alert("a", &namespace, &severity, sources);
                    a.spec.suspend = suspend;
                    a.spec.inclusion_list = inclusion.into_iter().collect();
                    a
                })
        }

        proptest! {
            /// The index returns exactly the Alerts a scan of every Alert
            /// selects, in the same order.
            #[test]
            fn index_agrees_with_a_full_scan(
                alerts in proptest::collection::vec(arb_alert(), 0..30),
                kind in pick(&["Kustomization", "HelmRelease", "Bucket"]),
                namespace in pick(&["ns1", "ns2", "ns3"]),
                name in pick(&["a", "b", "c"]),
                severity in pick(&["info", "error"]),
                message in pick(&["deploy", "x", ""]),
            ) {
                // ns1 is a fleet administration namespace: its "*" sources
                // hear every namespace, the others' nothing.
                let options = AlertOptions::with_fleet_admin_namespaces(["ns1"]);
                let compiled: Vec<Arc<CompiledAlert>> = alerts
                    .into_iter()
                    .map(|a| Arc::new(CompiledAlert::with_options(a, &options)))
                    .collect();
                let ev = event(&kind, &namespace, &name, &severity, &message);
                let scanned: Vec<*const CompiledAlert> = compiled
                    .iter()
                    .filter(|a| a.matches(&ev))
                    .map(Arc::as_ptr)
                    .collect();
                let index = AlertIndex::new(compiled);
                let indexed: Vec<*const CompiledAlert> =
                    index.matching(&ev).iter().map(Arc::as_ptr).collect();
                prop_assert_eq!(indexed, scanned);
            }
        }
    }
}
