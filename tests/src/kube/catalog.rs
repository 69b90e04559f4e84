//! The API surface the fake serves: which groups, versions and resources
//! exist, and the discovery and CRD documents that describe them, shaped
//! after a cluster with Flux 2.x installed.

use serde_json::{Value, json};

/// Where an object's `status` lives in one served version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusMode {
    /// A `/status` subresource: the main resource ignores `status` writes.
    Subresource,
    /// An ordinary field (or none at all): no `/status` subresource.
    Field,
    /// The version's schema has no `status`: it is pruned on read and write
    /// (Flux's `v1beta3` Alert and Provider).
    Pruned,
}

/// One resource in one served group version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resource {
    /// `""` for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    pub status: StatusMode,
}

// === impl Resource ===

impl Resource {
    /// `v1` for the core group, else `group/version`.
    #[must_use]
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Whether `/status` is served.
    #[must_use]
    pub fn has_status_subresource(&self) -> bool {
        self.status == StatusMode::Subresource
    }
}

const fn res(
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    singular: &'static str,
    kind: &'static str,
    namespaced: bool,
    status: StatusMode,
) -> Resource {
    Resource {
        group,
        version,
        plural,
        singular,
        kind,
        namespaced,
        status,
    }
}

use StatusMode::{Field, Pruned, Subresource};

/// The notification group: its preferred version `v1` holds only Receiver.
pub const NOTIFICATION: &str = "notification.toolkit.fluxcd.io";

/// Every served resource.
pub const RESOURCES: &[Resource] = &[
    res(
        "",
        "v1",
        "namespaces",
        "namespace",
        "Namespace",
        false,
        Subresource,
    ),
    res("", "v1", "secrets", "secret", "Secret", true, Field),
    res(
        "",
        "v1",
        "configmaps",
        "configmap",
        "ConfigMap",
        true,
        Field,
    ),
    res("", "v1", "events", "event", "Event", true, Field),
    res(
        "",
        "v1",
        "serviceaccounts",
        "serviceaccount",
        "ServiceAccount",
        true,
        Field,
    ),
    res(
        "events.k8s.io",
        "v1",
        "events",
        "event",
        "Event",
        true,
        Field,
    ),
    res(
        "coordination.k8s.io",
        "v1",
        "leases",
        "lease",
        "Lease",
        true,
        Field,
    ),
    res(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "customresourcedefinition",
        "CustomResourceDefinition",
        false,
        Subresource,
    ),
    res(
        NOTIFICATION,
        "v1",
        "receivers",
        "receiver",
        "Receiver",
        true,
        Subresource,
    ),
    res(
        NOTIFICATION,
        "v1beta3",
        "alerts",
        "alert",
        "Alert",
        true,
        Pruned,
    ),
    res(
        NOTIFICATION,
        "v1beta3",
        "providers",
        "provider",
        "Provider",
        true,
        Pruned,
    ),
    res(
        NOTIFICATION,
        "v1beta2",
        "alerts",
        "alert",
        "Alert",
        true,
        Subresource,
    ),
    res(
        NOTIFICATION,
        "v1beta2",
        "providers",
        "provider",
        "Provider",
        true,
        Subresource,
    ),
    res(
        NOTIFICATION,
        "v1beta2",
        "receivers",
        "receiver",
        "Receiver",
        true,
        Subresource,
    ),
    res(
        "kustomize.toolkit.fluxcd.io",
        "v1",
        "kustomizations",
        "kustomization",
        "Kustomization",
        true,
        Subresource,
    ),
    res(
        "helm.toolkit.fluxcd.io",
        "v2",
        "helmreleases",
        "helmrelease",
        "HelmRelease",
        true,
        Subresource,
    ),
    res(
        "source.toolkit.fluxcd.io",
        "v1",
        "gitrepositories",
        "gitrepository",
        "GitRepository",
        true,
        Subresource,
    ),
    res(
        "source.toolkit.fluxcd.io",
        "v1",
        "helmrepositories",
        "helmrepository",
        "HelmRepository",
        true,
        Subresource,
    ),
    res(
        "source.toolkit.fluxcd.io",
        "v1",
        "helmcharts",
        "helmchart",
        "HelmChart",
        true,
        Subresource,
    ),
    res(
        "source.toolkit.fluxcd.io",
        "v1",
        "buckets",
        "bucket",
        "Bucket",
        true,
        Subresource,
    ),
    res(
        "source.toolkit.fluxcd.io",
        "v1",
        "ocirepositories",
        "ocirepository",
        "OCIRepository",
        true,
        Subresource,
    ),
    res(
        "image.toolkit.fluxcd.io",
        "v1beta2",
        "imagerepositories",
        "imagerepository",
        "ImageRepository",
        true,
        Subresource,
    ),
    res(
        "image.toolkit.fluxcd.io",
        "v1beta2",
        "imagepolicies",
        "imagepolicy",
        "ImagePolicy",
        true,
        Subresource,
    ),
    res(
        "image.toolkit.fluxcd.io",
        "v1beta2",
        "imageupdateautomations",
        "imageupdateautomation",
        "ImageUpdateAutomation",
        true,
        Subresource,
    ),
];

/// Every served non-core group with its versions, the preferred one first.
pub const GROUPS: &[(&str, &[&str])] = &[
    ("events.k8s.io", &["v1"]),
    ("coordination.k8s.io", &["v1"]),
    ("apiextensions.k8s.io", &["v1"]),
    (NOTIFICATION, &["v1", "v1beta3", "v1beta2"]),
    ("kustomize.toolkit.fluxcd.io", &["v1"]),
    ("helm.toolkit.fluxcd.io", &["v2"]),
    ("source.toolkit.fluxcd.io", &["v1"]),
    ("image.toolkit.fluxcd.io", &["v1beta2"]),
];

/// The resource `plural` in `group`/`version`.
#[must_use]
pub fn find(group: &str, version: &str, plural: &str) -> Option<Resource> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
        .copied()
}

/// The resource of `kind` in `api_version` (`v1`, `group/version`).
#[must_use]
pub fn find_kind(api_version: &str, kind: &str) -> Option<Resource> {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.kind == kind)
        .copied()
}

const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// `/api`: the core group's versions.
#[must_use]
pub fn core_versions() -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443"}],
    })
}

fn group_doc(name: &str, versions: &[&str]) -> Value {
    let gv = |v: &str| json!({"groupVersion": format!("{name}/{v}"), "version": v});
    json!({
        "name": name,
        "versions": versions.iter().map(|v| gv(v)).collect::<Vec<_>>(),
        "preferredVersion": gv(versions[0]),
    })
}

/// `/apis`: the APIGroupList.
#[must_use]
pub fn group_list() -> Value {
    json!({
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": GROUPS.iter().map(|(n, v)| group_doc(n, v)).collect::<Vec<_>>(),
    })
}

/// `/apis/{group}`: one APIGroup.
#[must_use]
pub fn group(name: &str) -> Option<Value> {
    let (name, versions) = GROUPS.iter().find(|(n, _)| *n == name)?;
    let mut doc = group_doc(name, versions);
    doc["kind"] = json!("APIGroup");
    doc["apiVersion"] = json!("v1");
    Some(doc)
}

/// `/api/v1` or `/apis/{group}/{version}`: the APIResourceList, with a
/// `{plural}/status` entry where the version has the subresource.
#[must_use]
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let served: Vec<&Resource> = RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if served.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for r in served {
        resources.push(json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": VERBS,
        }));
        if r.has_status_subresource() {
            resources.push(json!({
                "name": format!("{}/status", r.plural),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
    }
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": if group.is_empty() { version.to_owned() } else { format!("{group}/{version}") },
        "resources": resources,
    }))
}

/// Event source kinds of Alert `v1beta3` (Flux 2.7).
pub const ALERT_SOURCE_KINDS_V1BETA3: &[&str] = &[
    "Bucket",
    "GitRepository",
    "Kustomization",
    "HelmRelease",
    "HelmChart",
    "HelmRepository",
    "ImageRepository",
    "ImagePolicy",
    "ImageUpdateAutomation",
    "OCIRepository",
    "ArtifactGenerator",
    "ExternalArtifact",
];

/// Event source kinds of Alert `v1beta2` (frozen before the newer kinds).
pub const ALERT_SOURCE_KINDS_V1BETA2: &[&str] = &[
    "Bucket",
    "GitRepository",
    "Kustomization",
    "HelmRelease",
    "HelmChart",
    "HelmRepository",
    "ImageRepository",
    "ImagePolicy",
    "ImageUpdateAutomation",
    "OCIRepository",
];

fn alert_schema(kinds: &[&str], with_status: bool) -> Value {
    let mut properties = json!({
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"type": "object"},
        "spec": {
            "type": "object",
            "required": ["eventSources", "providerRef"],
            "properties": {
                "eventMetadata": {"type": "object", "additionalProperties": {"type": "string"}},
                "eventSeverity": {"type": "string", "default": "info", "enum": ["info", "error"]},
                "eventSources": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["kind", "name"],
                        "properties": {
                            "apiVersion": {"type": "string"},
                            "kind": {"type": "string", "enum": kinds},
                            "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}},
                            "name": {"type": "string", "maxLength": 253, "minLength": 1},
                            "namespace": {"type": "string", "maxLength": 253, "minLength": 1},
                        },
                    },
                },
                "exclusionList": {"type": "array", "items": {"type": "string"}},
                "inclusionList": {"type": "array", "items": {"type": "string"}},
                "providerRef": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {"name": {"type": "string"}},
                },
                "summary": {"type": "string", "maxLength": 255},
                "suspend": {"type": "boolean"},
            },
        },
    });
    if with_status {
        properties["status"] =
            json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
    }
    json!({"openAPIV3Schema": {"type": "object", "properties": properties}})
}

fn open_schema(with_status: bool) -> Value {
    let mut properties = json!({
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"type": "object"},
        "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
    });
    if with_status {
        properties["status"] =
            json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
    }
    json!({"openAPIV3Schema": {"type": "object", "properties": properties}})
}

/// The CustomResourceDefinition named `name` (`alerts.notification.toolkit.fluxcd.io`),
/// for every Flux kind served, with a per-version schema.
#[must_use]
pub fn crd(name: &str) -> Option<Value> {
    let (plural, group) = name.split_once('.')?;
    let served: Vec<&Resource> = RESOURCES
        .iter()
        .filter(|r| r.group == group && r.plural == plural && group.ends_with(".fluxcd.io"))
        .collect();
    let first = served.first()?;
    let preferred = GROUPS
        .iter()
        .find(|(g, _)| *g == group)
        .and_then(|(_, versions)| {
            versions
                .iter()
                .find(|v| served.iter().any(|r| r.version == **v))
        })
        .copied()
        .unwrap_or(first.version);
    let versions: Vec<Value> = served
        .iter()
        .map(|r| {
            let with_status = r.status != Pruned;
            let schema = match (r.kind, r.version) {
                ("Alert", "v1beta3") => alert_schema(ALERT_SOURCE_KINDS_V1BETA3, false),
                ("Alert", _) => alert_schema(ALERT_SOURCE_KINDS_V1BETA2, with_status),
                _ => open_schema(with_status),
            };
            let mut version = json!({
                "name": r.version,
                "served": true,
                "storage": r.version == preferred,
                "schema": schema,
            });
            if r.has_status_subresource() {
                version["subresources"] = json!({"status": {}});
            }
            if r.version.contains("beta") && r.version != "v1beta3" {
                version["deprecated"] = json!(true);
                version["deprecationWarning"] =
                    json!(format!("{}/{} {} is deprecated", group, r.version, r.kind));
            }
            version
        })
        .collect();
    Some(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": name, "resourceVersion": "1", "uid": format!("crd-{name}")},
        "spec": {
            "group": group,
            "names": {
                "plural": plural,
                "singular": first.singular,
                "kind": first.kind,
                "listKind": format!("{}List", first.kind),
            },
            "scope": if first.namespaced { "Namespaced" } else { "Cluster" },
            "versions": versions,
        },
        "status": {"acceptedNames": {"plural": plural, "kind": first.kind}, "storedVersions": [preferred]},
    }))
}

/// Adds `kinds` to the `spec.eventSources[].kind` enum of every version of
/// an Alert CRD document.
pub fn extend_alert_kinds(crd: &mut Value, kinds: &[String]) {
    let Some(versions) = crd
        .pointer_mut("/spec/versions")
        .and_then(Value::as_array_mut)
    else {
        return;
    };
    for version in versions {
        if let Some(Value::Array(allowed)) = version.pointer_mut(
            "/schema/openAPIV3Schema/properties/spec/properties/eventSources/items/properties/kind/enum",
        ) {
            allowed.extend(kinds.iter().map(|k| Value::String(k.clone())));
        }
    }
}
