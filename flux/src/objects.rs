//! The objects users write: Flux `Alert` and `Provider`
//! (`notification.toolkit.fluxcd.io/v1beta3`) and Kubernetes `Secret`s, parsed
//! from multi-document YAML and checked against the CRDs' validation rules.

use crate::provider_type::ProviderType;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The API group of Alerts and Providers.
pub const NOTIFICATION_GROUP: &str = "notification.toolkit.fluxcd.io";

/// Event source kinds an Alert may name (the CRD's enum).
pub const SOURCE_KINDS: &[&str] = &[
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

/// Event source kinds Flux Operator adds to the Alert CRD's enum: its own
/// objects emit events to the notification-controller.
pub const FLUX_OPERATOR_KINDS: &[&str] =
    &["FluxInstance", "ResourceSet", "ResourceSetInputProvider"];

/// The default Provider timeout.
pub const DEFAULT_PROVIDER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// The metadata Herald keeps of an object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub uid: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// A reference to an object in the referrer's namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct LocalRef {
    #[serde(default)]
    pub name: String,
}

/// One entry of an Alert's `eventSources`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventSource {
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub api_version: String,
    /// `None` when absent; `Some(empty)` is not the same (flux-semantics §9.10).
    #[serde(default)]
    pub match_labels: Option<BTreeMap<String, String>>,
}

/// An Alert's spec.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertSpec {
    #[serde(default)]
    pub provider_ref: LocalRef,
    #[serde(default)]
    pub event_severity: String,
    #[serde(default)]
    pub event_sources: Vec<EventSource>,
    #[serde(default)]
    pub inclusion_list: Vec<String>,
    #[serde(default)]
    pub exclusion_list: Vec<String>,
    #[serde(default)]
    pub event_metadata: BTreeMap<String, String>,
    #[serde(default)]
    pub summary: String,
    #[serde(default)]
    pub suspend: bool,
}

/// A Flux Alert.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Alert {
    pub meta: ObjectMeta,
    pub spec: AlertSpec,
}

/// A Provider's spec.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProviderSpec {
    #[serde(default, rename = "type")]
    pub type_: String,
    #[serde(default)]
    pub interval: String,
    #[serde(default)]
    pub channel: String,
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub timeout: String,
    #[serde(default)]
    pub proxy: String,
    #[serde(default)]
    pub secret_ref: Option<LocalRef>,
    #[serde(default)]
    pub cert_secret_ref: Option<LocalRef>,
    #[serde(default)]
    pub proxy_secret_ref: Option<LocalRef>,
    #[serde(default)]
    pub service_account_name: String,
    #[serde(default)]
    pub suspend: bool,
    #[serde(default)]
    pub commit_status_expr: String,
}

/// A Flux Provider.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Provider {
    pub meta: ObjectMeta,
    pub spec: ProviderSpec,
}

/// A Kubernetes Secret, with `data` decoded and `stringData` merged over it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret {
    pub meta: ObjectMeta,
    pub data: SecretData,
}

/// A Secret's data: each key's bytes, sorted by key. A sorted list rather
/// than a map: Secrets hold a few keys, and a catalog holds many Secrets.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretData(Vec<(String, Vec<u8>)>);

// === impl SecretData ===

impl SecretData {
    /// The bytes of `key`.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&Vec<u8>> {
        self.0
            .binary_search_by(|(k, _)| k.as_str().cmp(key))
            .ok()
            .map(|i| &self.0[i].1)
    }

    /// Whether `key` is there.
    #[must_use]
    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Sets `key` to `value`, replacing what it held.
    pub fn insert(&mut self, key: String, value: Vec<u8>) {
        match self.0.binary_search_by(|(k, _)| k.as_str().cmp(&key)) {
            Ok(i) => self.0[i].1 = value,
            Err(i) => self.0.insert(i, (key, value)),
        }
    }

    /// The keys, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.0.iter().map(|(k, _)| k)
    }

    /// The keys and their bytes, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Vec<u8>)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    /// How many keys.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there is no key.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<(String, Vec<u8>)> for SecretData {
    fn from_iter<I: IntoIterator<Item = (String, Vec<u8>)>>(iter: I) -> Self {
        let mut data = Self::default();
        for (key, value) in iter {
            data.insert(key, value);
        }
        data.0.shrink_to_fit();
        data
    }
}

impl<'a> IntoIterator for &'a SecretData {
    type Item = (&'a String, &'a Vec<u8>);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (String, Vec<u8>)>,
        fn(&'a (String, Vec<u8>)) -> (&'a String, &'a Vec<u8>),
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

impl std::ops::Index<&str> for SecretData {
    type Output = Vec<u8>;

    fn index(&self, key: &str) -> &Vec<u8> {
        self.get(key)
            .unwrap_or_else(|| panic!("the Secret has no key {key:?}"))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print secret values.
        f.debug_struct("Secret")
            .field("meta", &self.meta)
            .field("keys", &self.data.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// One object of a folder of manifests.
#[derive(Debug, Clone, PartialEq, Eq)]
///
/// Each kind is behind an `Arc`: a catalog's source and its snapshots share
/// one copy of every object.
pub enum Object {
    Alert(Arc<Alert>),
    Provider(Arc<Provider>),
    Secret(Arc<Secret>),
}

// === impl Object ===

impl From<Arc<Alert>> for Object {
    fn from(alert: Arc<Alert>) -> Self {
        Self::Alert(alert)
    }
}

impl From<Arc<Provider>> for Object {
    fn from(provider: Arc<Provider>) -> Self {
        Self::Provider(provider)
    }
}

impl From<Arc<Secret>> for Object {
    fn from(secret: Arc<Secret>) -> Self {
        Self::Secret(secret)
    }
}

impl Object {
    /// `Alert`, `Provider` or `Secret`.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Alert(_) => "Alert",
            Self::Provider(_) => "Provider",
            Self::Secret(_) => "Secret",
        }
    }

    /// Its metadata.
    #[must_use]
    pub fn meta(&self) -> &ObjectMeta {
        match self {
            Self::Alert(a) => &a.meta,
            Self::Provider(p) => &p.meta,
            Self::Secret(s) => &s.meta,
        }
    }

    /// `Kind/namespace/name`, as problems name objects.
    #[must_use]
    pub fn id(&self) -> String {
        let meta = self.meta();
        format!("{}/{}/{}", self.kind(), meta.namespace, meta.name)
    }

    /// Checks the object against the rules of its kind (the CRDs' validation;
    /// a Secret has none beyond decoding).
    ///
    /// # Errors
    ///
    /// The first rule broken, in words the author can act on.
    pub fn validate(&self) -> Result<(), String> {
        self.problems().into_iter().next().map_or(Ok(()), Err)
    }

    /// Every rule of its kind the object breaks (see [`Object::validate`]).
    #[must_use]
    pub fn problems(&self) -> Vec<String> {
        match self {
            Self::Alert(a) => a.problems(),
            Self::Provider(p) => p.problems(),
            Self::Secret(_) => Vec::new(),
        }
    }

    /// What is accepted but differs from Flux's rules (see
    /// [`Alert::warnings`]).
    #[must_use]
    pub fn warnings(&self) -> Vec<String> {
        self.warnings_served(None)
    }

    /// As [`Object::warnings`], with the event source kinds the cluster's
    /// Alert CRD allows when they are known (see [`Alert::warnings_served`]).
    #[must_use]
    pub fn warnings_served(&self, served_kinds: Option<&[String]>) -> Vec<String> {
        match self {
            Self::Alert(a) => a.warnings_served(served_kinds),
            Self::Provider(_) | Self::Secret(_) => Vec::new(),
        }
    }

    /// Values that only make sense once Flux's kustomize-controller has
    /// applied the manifest: a postBuild variable (`${VAR}`,
    /// `${VAR:=default}`) it would substitute, or a SOPS value
    /// (`ENC[AES256_GCM,...]`) it would decrypt. Read from a folder as
    /// written, they would be used literally.
    ///
    /// Looks at what a Provider sends with: its `address`, `channel`,
    /// `username` and `proxy`, and the Secret keys Providers read. Never
    /// repeats a value, only a variable's name.
    #[must_use]
    pub fn unprocessed_values(&self) -> Vec<String> {
        let mut out = Vec::new();
        match self {
            Self::Provider(p) => {
                for (field, value) in [
                    ("address", &p.spec.address),
                    ("channel", &p.spec.channel),
                    ("username", &p.spec.username),
                    ("proxy", &p.spec.proxy),
                ] {
                    out.extend(unprocessed(&format!("spec.{field}"), value));
                }
            }
            Self::Secret(s) => {
                for (key, value) in &s.data {
                    if PROVIDER_SECRET_KEYS.contains(&key.as_str()) {
                        out.extend(unprocessed(
                            &format!("key {key}"),
                            &String::from_utf8_lossy(value),
                        ));
                    }
                }
            }
            Self::Alert(_) => {}
        }
        out
    }
}

/// The Secret keys a Provider reads (`secretRef`, `proxySecretRef`,
/// `certSecretRef`).
const PROVIDER_SECRET_KEYS: &[&str] = &[
    "address", "token", "username", "password", "headers", "proxy", "ca.crt", "tls.crt", "tls.key",
    "caFile",
];

/// Why `value` of `field` is not what Flux would use, if it is not.
fn unprocessed(field: &str, value: &str) -> Option<String> {
    if is_sops(value) {
        return Some(format!(
            "{field} is SOPS-encrypted (ENC[...]); Flux's kustomize-controller decrypts it \
             when it applies the manifest, but Herald reads the folder as written and \
             cannot decrypt it"
        ));
    }
    substitution(value).map(|var| {
        format!(
            "{field} holds the variable ${{{var}}}; Flux's kustomize-controller substitutes \
             it (postBuild) when it applies the manifest, but Herald reads the folder as \
             written and uses it literally"
        )
    })
}

/// A SOPS-encrypted value: `ENC[AES256_GCM,data:...,type:str]`.
fn is_sops(value: &str) -> bool {
    let value = value.trim();
    value.starts_with("ENC[") && value.ends_with(']')
}

/// The name of the first postBuild variable in `value` (`${VAR}`,
/// `${VAR:=default}`, `${VAR:-default}`).
fn substitution(value: &str) -> Option<&str> {
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let end = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        let name = &after[..end];
        let starts_well = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_');
        let closed = after[end..].starts_with('}')
            || (after[end..].starts_with(':') || after[end..].starts_with('-'))
                && after[end..].contains('}');
        if starts_well && closed {
            return Some(name);
        }
        rest = after;
    }
    None
}

/// Why a document is not a usable object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{object}: {reason}")]
pub struct ParseError {
    /// `Kind/namespace/name`, or `document N` when the object has no name yet.
    pub object: String,
    /// What is wrong, in words the author can act on.
    pub reason: String,
}

// === impl ObjectMeta ===

impl ObjectMeta {
    /// A uid for the object: `metadata.uid` when the manifest has one, else one
    /// derived from the kind, namespace and name, stable across restarts and
    /// replicas (UUID-shaped, so the first dash-separated segment is 8 hex digits).
    #[must_use]
    pub fn uid_or_derived(&self, kind: &str) -> String {
        if !self.uid.is_empty() {
            return self.uid.clone();
        }
        let digest = Sha256::digest(format!("herald/{kind}/{}/{}", self.namespace, self.name));
        let h = hex::encode(&digest[..16]);
        format!(
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    }
}

// === impl Alert ===

impl Alert {
    /// `namespace/name`.
    #[must_use]
    pub fn key(&self) -> String {
        format!("{}/{}", self.meta.namespace, self.meta.name)
    }

    /// The Alert's uid (see [`ObjectMeta::uid_or_derived`]).
    #[must_use]
    pub fn uid(&self) -> String {
        self.meta.uid_or_derived("Alert")
    }

    /// The effective `eventSeverity`: what the API server stores (`info` when unset).
    #[must_use]
    pub fn event_severity(&self) -> &str {
        if self.spec.event_severity.is_empty() {
            "info"
        } else {
            &self.spec.event_severity
        }
    }

    /// Checks the spec against the CRD's rules.
    ///
    /// # Errors
    ///
    /// The first rule broken, in words the author can act on.
    pub fn validate(&self) -> Result<(), String> {
        self.problems().into_iter().next().map_or(Ok(()), Err)
    }

    /// Every CRD rule the spec breaks, in words the author can act on.
    #[must_use]
    pub fn problems(&self) -> Vec<String> {
        let spec = &self.spec;
        let mut problems = Vec::new();
        if spec.provider_ref.name.is_empty() {
            problems.push("spec.providerRef.name is required".to_owned());
        }
        if !matches!(spec.event_severity.as_str(), "" | "info" | "error") {
            problems.push(format!(
                "spec.eventSeverity {:?} must be \"info\" or \"error\"",
                spec.event_severity
            ));
        }
        for (i, source) in spec.event_sources.iter().enumerate() {
            // A kind outside Flux's enum is a warning (see `warnings`).
            if source.kind.is_empty() {
                problems.push(format!("spec.eventSources[{i}].kind is required"));
            }
            if source.name.is_empty() || source.name.len() > 253 {
                problems.push(format!(
                    "spec.eventSources[{i}].name must have 1 to 253 characters"
                ));
            }
            if source.namespace.len() > 253 {
                problems.push(format!(
                    "spec.eventSources[{i}].namespace must have at most 253 characters"
                ));
            }
        }
        if spec.summary.len() > 255 {
            problems.push("spec.summary must have at most 255 characters".to_owned());
        }
        problems
    }

    /// What is accepted but differs from Flux's own CRD: event source kinds
    /// outside its enum. Such a source is kept and matches events of its
    /// kind exactly like any other; dropping the Alert would silently lose
    /// every notification of its other sources.
    #[must_use]
    pub fn warnings(&self) -> Vec<String> {
        self.warnings_served(None)
    }

    /// As [`Alert::warnings`], but where the cluster's Alert CRD is known
    /// (`served_kinds`: the enum of its served schema, which Flux Operator
    /// extends with its own kinds), a kind it allows is not doubtful: the API
    /// server already checked it.
    #[must_use]
    pub fn warnings_served(&self, served_kinds: Option<&[String]>) -> Vec<String> {
        let mut out = Vec::new();
        for (i, source) in self.spec.event_sources.iter().enumerate() {
            let kind = source.kind.as_str();
            if kind.is_empty() || SOURCE_KINDS.contains(&kind) {
                continue;
            }
            if served_kinds.is_some_and(|served| served.iter().any(|k| k == kind)) {
                continue;
            }
            let flux = SOURCE_KINDS.join(", ");
            out.push(if FLUX_OPERATOR_KINDS.contains(&kind) {
                format!(
                    "spec.eventSources[{i}].kind {kind:?} is a Flux Operator kind, not one of Flux's \
                     ({flux}); it is kept and matches events of kind {kind:?} exactly, as the \
                     notification-controller does where Flux Operator extends the Alert CRD"
                )
            } else {
                format!(
                    "spec.eventSources[{i}].kind {kind:?} is not one of Flux's ({flux}); Flux's \
                     Alert CRD would reject this Alert; it is kept and matches events of kind \
                     {kind:?} exactly"
                )
            });
        }
        out
    }
}

/// The annotation that points a Provider whose vendor API has a fixed
/// address (`googlepubsub`, `azureeventhub`) at another endpoint: a
/// locational or private endpoint, or an emulator.
pub const ENDPOINT_ANNOTATION: &str = "herald.dev/endpoint";

// === impl Provider ===

impl Provider {
    /// The API endpoint its [`ENDPOINT_ANNOTATION`] names, if any.
    #[must_use]
    pub fn endpoint(&self) -> Option<&str> {
        self.meta
            .annotations
            .get(ENDPOINT_ANNOTATION)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// `namespace/name`.
    #[must_use]
    pub fn key(&self) -> String {
        format!("{}/{}", self.meta.namespace, self.meta.name)
    }

    /// The Provider's uid (see [`ObjectMeta::uid_or_derived`]).
    #[must_use]
    pub fn uid(&self) -> String {
        self.meta.uid_or_derived("Provider")
    }

    /// The send deadline: `spec.timeout`, 15 s when unset.
    #[must_use]
    pub fn timeout(&self) -> std::time::Duration {
        if self.spec.timeout.is_empty() {
            return DEFAULT_PROVIDER_TIMEOUT;
        }
        crate::duration::parse(&self.spec.timeout).unwrap_or(DEFAULT_PROVIDER_TIMEOUT)
    }

    /// Its `spec.type`, when it is a Flux provider type.
    #[must_use]
    pub fn provider_type(&self) -> Option<ProviderType> {
        self.spec.type_.parse().ok()
    }

    /// Checks the spec against the CRD's rules and the types Herald sends to.
    ///
    /// # Errors
    ///
    /// The first rule broken, in words the author can act on.
    pub fn validate(&self) -> Result<(), String> {
        self.problems().into_iter().next().map_or(Ok(()), Err)
    }

    /// Every rule the spec breaks (the CRD's, and a `commitStatusExpr` that
    /// does not compile), in words the author can act on.
    #[must_use]
    pub fn problems(&self) -> Vec<String> {
        let spec = &self.spec;
        let mut problems = Vec::new();
        let provider_type = self.provider_type();
        if spec.type_.is_empty() {
            problems.push("spec.type is required".to_owned());
        } else if provider_type.is_none() {
            let suggestion =
                crate::suggest::closest(&spec.type_, ProviderType::ALL.iter().map(|t| t.as_str()))
                    .map(|s| format!("did you mean {s:?}? "))
                    .unwrap_or_default();
            problems.push(format!(
                "spec.type {:?} is not a Flux provider type ({suggestion}one of {})",
                spec.type_,
                ProviderType::ALL
                    .iter()
                    .map(|t| t.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        for (field, value) in [
            ("address", &spec.address),
            ("channel", &spec.channel),
            ("username", &spec.username),
            ("proxy", &spec.proxy),
        ] {
            if value.len() > 2048 {
                problems.push(format!("spec.{field} must have at most 2048 characters"));
            }
        }
        if !spec.timeout.is_empty() {
            let valid = !spec.timeout.contains('h')
                && crate::duration::parse(&spec.timeout).is_ok_and(|d| !d.is_zero());
            if !valid {
                problems.push(format!(
                    "spec.timeout {:?} must be a duration in ms, s or m such as \"30s\"",
                    spec.timeout
                ));
            }
        }
        let proxy_scheme_ok =
            spec.proxy.starts_with("http://") || spec.proxy.starts_with("https://");
        if !spec.proxy.is_empty() && !proxy_scheme_ok {
            // The value may hold credentials: never repeat it.
            problems.push("spec.proxy must start with http:// or https://".to_owned());
        }
        if !spec.commit_status_expr.is_empty() {
            if provider_type.is_some_and(|t| !t.is_commit_status()) {
                problems.push(format!(
                    "spec.commitStatusExpr is only allowed for the types {}",
                    ProviderType::ALL
                        .iter()
                        .filter(|t| t.is_commit_status())
                        .map(|t| t.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            } else if let Err(error) =
                crate::git::CommitStatusExpr::compile(&spec.commit_status_expr)
            {
                problems.push(format!("spec.commitStatusExpr does not compile: {error}"));
            }
        }
        problems
    }
}

// === parsing ===

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Header {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    metadata: HeaderMeta,
}

#[derive(Deserialize, Default)]
struct HeaderMeta {
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Doc<S> {
    #[serde(default)]
    metadata: ObjectMeta,
    #[serde(default = "Option::default")]
    spec: Option<S>,
    #[serde(default)]
    data: BTreeMap<String, String>,
    #[serde(default)]
    string_data: BTreeMap<String, String>,
}

#[derive(Deserialize, Default)]
struct NoSpec {}

/// Reads every non-empty document of `text` as a `T`, one result per document.
fn read_all<T: serde::de::DeserializeOwned>(text: &str) -> Vec<Result<T, String>> {
    read_each(text, |document| document)
}

/// Each document of `text` read as `T` and made into what `keep` keeps of
/// it, one document at a time: a document's `T` is dropped before the next
/// one is read.
fn read_each<T: serde::de::DeserializeOwned, R>(
    text: &str,
    mut keep: impl FnMut(T) -> R,
) -> Vec<Result<R, String>> {
    let mut reader = std::io::Cursor::new(text.as_bytes());
    serde_saphyr::read::<_, T>(&mut reader)
        .map(|r| r.map(&mut keep).map_err(|e| e.to_string()))
        .collect()
}

/// What the generic reading of a document keeps: a List whole (its items
/// are read from it), any other document's unknown fields only (a folder
/// of thousands of objects is never held as generic values at once).
enum Generic {
    List(serde_json::Value),
    Unknown(Vec<crate::lint::Unknown>),
}

/// Parses a multi-document YAML text into objects.
///
/// Documents that are not Alerts, Providers or Secrets (or are empty) are
/// skipped; each one that is but cannot be decoded (wrong field types, no
/// name, an apiVersion not served, bad base64) gives a [`ParseError`]. The
/// spec is not checked here: see [`Object::validate`].
/// Objects without a namespace get `default_namespace`. Scalars are read as
/// the field they land in asks (`namespace: no` is the string "no"), as
/// Kubernetes reads manifests.
///
/// # Errors
///
/// A YAML syntax error fails the whole text, with the parser's message.
pub fn parse_documents(
    text: &str,
    default_namespace: &str,
) -> Result<Vec<Result<Object, ParseError>>, String> {
    Ok(parse(text, default_namespace, false)?
        .into_iter()
        .map(|located| located.result)
        .collect())
}

/// An object read from a manifest text: where its document starts, the
/// object (or why it cannot be read), and the fields an API server would
/// refuse (with their lines). An object with unknown fields is not used.
#[derive(Debug)]
pub struct Located {
    /// The 1-based line its document starts at, when known.
    pub line: Option<usize>,
    pub result: Result<Object, ParseError>,
    /// Unknown fields: their line, and what is wrong.
    pub unknown: Vec<(Option<usize>, String)>,
}

/// As [`parse_documents`], with each object's line and its unknown fields
/// (what `herald validate` and a folder catalog report).
///
/// # Errors
///
/// A YAML syntax error fails the whole text, with the parser's message.
pub fn parse_documents_located(
    text: &str,
    default_namespace: &str,
) -> Result<Vec<Located>, String> {
    parse(text, default_namespace, true)
}

fn parse(text: &str, default_namespace: &str, lint: bool) -> Result<Vec<Located>, String> {
    let headers = read_all::<Header>(text);
    let wanted = |h: &Result<Header, String>, kind: &str| match h {
        Ok(h) => h.kind == kind && kind_matches(&h.api_version, &h.kind),
        Err(_) => false,
    };
    let needs = |kind: &str| headers.iter().any(|h| wanted(h, kind));
    let alerts = if needs("Alert") {
        read_all::<Doc<AlertSpec>>(text)
    } else {
        Vec::new()
    };
    let providers = if needs("Provider") {
        read_all::<Doc<ProviderSpec>>(text)
    } else {
        Vec::new()
    };
    let secrets = if needs("Secret") {
        read_all::<Doc<NoSpec>>(text)
    } else {
        Vec::new()
    };
    let lists = headers.iter().any(|h| {
        h.as_ref()
            .is_ok_and(|h| h.kind == "List" && h.api_version == "v1")
    });
    let mut generic = if lint || lists {
        read_each(text, |value: serde_json::Value| {
            let list = value.get("kind").and_then(serde_json::Value::as_str) == Some("List")
                && value.get("apiVersion").and_then(serde_json::Value::as_str) == Some("v1");
            if list {
                Generic::List(value)
            } else if lint {
                Generic::Unknown(crate::lint::unknown_fields(&value))
            } else {
                Generic::Unknown(Vec::new())
            }
        })
    } else {
        Vec::new()
    };
    let lines = if lint {
        crate::lint::document_lines(text)
    } else {
        Vec::new()
    };
    let line_of_doc = |i: usize| (lines.len() == headers.len()).then(|| lines[i]);
    let located = |unknown: Vec<crate::lint::Unknown>, from: Option<usize>| {
        unknown
            .into_iter()
            .map(|u| {
                let line = from.and_then(|from| crate::lint::line_of(text, from, &u.field));
                (line.or(from), u.reason)
            })
            .collect::<Vec<_>>()
    };
    let unknown_of = |value: &serde_json::Value, from: Option<usize>| {
        if !lint {
            return Vec::new();
        }
        located(crate::lint::unknown_fields(value), from)
    };
    let mut out = Vec::new();
    for (i, header) in headers.iter().enumerate() {
        let header = match header {
            Ok(header) => header,
            Err(reason) => {
                // A syntax error ends the stream: the whole text is unusable.
                if i + 1 == headers.len() && !reason.contains("invalid type") {
                    return Err(reason.clone());
                }
                continue;
            }
        };
        let line = line_of_doc(i);
        let generic = generic.get_mut(i).and_then(|v| v.as_mut().ok());
        if header.kind == "List" && header.api_version == "v1" {
            // `kubectl get -o yaml` writes a List of the objects.
            let list = match generic {
                Some(Generic::List(value)) => Some(&*value),
                _ => None,
            };
            let items = list.and_then(|v| v.get("items")).and_then(|v| v.as_array());
            for item in items.into_iter().flatten() {
                let Some(result) = parse_value(item, default_namespace).or_else(|| {
                    let kind = item
                        .get("kind")
                        .and_then(|k| k.as_str())
                        .unwrap_or_default();
                    let api_version = item
                        .get("apiVersion")
                        .and_then(|k| k.as_str())
                        .unwrap_or_default();
                    kind_matches(api_version, kind).then(|| {
                        let name = item
                            .pointer("/metadata/name")
                            .and_then(|n| n.as_str())
                            .unwrap_or_default();
                        Err(ParseError {
                            object: format!("{kind}/{name}"),
                            reason: "a field does not have the type its schema gives it".to_owned(),
                        })
                    })
                }) else {
                    continue;
                };
                let name = item
                    .pointer("/metadata/name")
                    .and_then(|n| n.as_str())
                    .unwrap_or_default();
                let item_line = line.filter(|_| !name.is_empty()).and_then(|from| {
                    text.lines()
                        .enumerate()
                        .skip(from - 1)
                        .find(|(_, l)| l.contains("name:") && l.contains(name))
                        .map(|(n, _)| n + 1)
                });
                out.push(Located {
                    line: item_line.or(line),
                    result,
                    unknown: unknown_of(item, item_line.or(line)),
                });
            }
            continue;
        }
        if !kind_matches(&header.api_version, &header.kind) {
            continue;
        }
        let taken = match header.kind.as_str() {
            "Alert" => take(&alerts, i, alert_of),
            "Provider" => take(&providers, i, provider_of),
            _ => take(&secrets, i, secret_of),
        };
        let unknown = match generic {
            // Empty unless linting.
            Some(Generic::Unknown(unknown)) => located(std::mem::take(unknown), line),
            _ => Vec::new(),
        };
        out.push(Located {
            line,
            result: finish(header, i, taken, default_namespace),
            unknown,
        });
    }
    Ok(out)
}

/// As [`parse_documents`] for one object an API server served, already
/// read as JSON: no YAML is parsed, which is most of the cost of reading
/// thousands of objects. `None` when it is not an Alert, Provider or
/// Secret, or when a field does not decode as its JSON type (a number
/// where a string belongs): parse its text with [`parse_documents`] then,
/// which reads scalars as YAML does and says what is wrong.
#[must_use]
pub fn parse_value(
    value: &serde_json::Value,
    default_namespace: &str,
) -> Option<Result<Object, ParseError>> {
    let header = Header::deserialize(value).ok()?;
    if !kind_matches(&header.api_version, &header.kind) {
        return None;
    }
    let taken = match header.kind.as_str() {
        "Alert" => alert_of(&Doc::deserialize(value).ok()?),
        "Provider" => provider_of(&Doc::deserialize(value).ok()?),
        _ => secret_of(&Doc::deserialize(value).ok()?),
    };
    Some(finish(&header, 0, Ok(taken), default_namespace))
}

fn alert_of(doc: &Doc<AlertSpec>) -> (ObjectMeta, Result<Object, String>) {
    let alert = Alert {
        meta: doc.metadata.clone(),
        spec: doc.spec.clone().unwrap_or_default(),
    };
    (alert.meta.clone(), Ok(Object::Alert(Arc::new(alert))))
}

fn provider_of(doc: &Doc<ProviderSpec>) -> (ObjectMeta, Result<Object, String>) {
    let provider = Provider {
        meta: doc.metadata.clone(),
        spec: doc.spec.clone().unwrap_or_default(),
    };
    (
        provider.meta.clone(),
        Ok(Object::Provider(Arc::new(provider))),
    )
}

fn secret_of(doc: &Doc<NoSpec>) -> (ObjectMeta, Result<Object, String>) {
    let data = decode_secret(&doc.data, &doc.string_data);
    (
        doc.metadata.clone(),
        data.map(|data| {
            Object::Secret(Arc::new(Secret {
                meta: doc.metadata.clone(),
                data,
            }))
        }),
    )
}

fn kind_matches(api_version: &str, kind: &str) -> bool {
    match (crate::metadata::api_group(api_version), kind) {
        (NOTIFICATION_GROUP, "Alert" | "Provider") => true,
        ("", "Secret") => api_version == "v1",
        _ => false,
    }
}

fn take<D>(
    docs: &[Result<D, String>],
    index: usize,
    build: impl Fn(&D) -> (ObjectMeta, Result<Object, String>),
) -> Result<(ObjectMeta, Result<Object, String>), String> {
    match docs.get(index) {
        Some(Ok(doc)) => Ok(build(doc)),
        Some(Err(reason)) => Err(reason.clone()),
        None => Err("document could not be read".to_owned()),
    }
}

fn finish(
    header: &Header,
    index: usize,
    taken: Result<(ObjectMeta, Result<Object, String>), String>,
    default_namespace: &str,
) -> Result<Object, ParseError> {
    let kind = &header.kind;
    let (meta, object) = match taken {
        Ok(pair) => pair,
        Err(reason) => {
            let object = if header.metadata.name.is_empty() {
                format!("{kind} (document {})", index + 1)
            } else {
                format!("{kind}/{}", header.metadata.name)
            };
            return Err(ParseError { object, reason });
        }
    };
    let namespace = if meta.namespace.is_empty() {
        default_namespace.to_owned()
    } else {
        meta.namespace.clone()
    };
    let id = format!("{kind}/{namespace}/{}", meta.name);
    if meta.name.is_empty() {
        return Err(ParseError {
            object: format!("{kind} (document {})", index + 1),
            reason: "metadata.name is required".to_owned(),
        });
    }
    let version = header.api_version.rsplit('/').next().unwrap_or_default();
    if kind != "Secret" && !matches!(version, "v1beta3" | "v1beta2" | "v1") {
        return Err(ParseError {
            object: id,
            reason: format!(
                "apiVersion {:?} is not served; use {NOTIFICATION_GROUP}/v1beta3",
                header.api_version
            ),
        });
    }
    let mut object = object.map_err(|reason| ParseError { object: id, reason })?;
    match &mut object {
        // Just built: not shared yet, so nothing is copied.
        Object::Alert(a) => Arc::make_mut(a).meta.namespace = namespace,
        Object::Provider(p) => Arc::make_mut(p).meta.namespace = namespace,
        Object::Secret(s) => Arc::make_mut(s).meta.namespace = namespace,
    }
    Ok(object)
}

fn decode_secret(
    data: &BTreeMap<String, String>,
    string_data: &BTreeMap<String, String>,
) -> Result<SecretData, String> {
    let engine = base64::engine::general_purpose::STANDARD;
    let mut out = SecretData::default();
    for (key, value) in data {
        if is_sops(value) {
            // Encrypted before encoding: kept as written, and reported by
            // `Object::unprocessed_values`.
            out.insert(key.clone(), value.trim().as_bytes().to_vec());
            continue;
        }
        let compact: String = value.split_ascii_whitespace().collect();
        let bytes = engine
            .decode(compact.as_bytes())
            .map_err(|e| format!("data.{key} is not base64: {e}"))?;
        out.insert(key.clone(), bytes);
    }
    for (key, value) in string_data {
        out.insert(key.clone(), value.clone().into_bytes());
    }
    out.0.shrink_to_fit();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_data_is_sorted_by_key_and_a_key_set_twice_keeps_the_last() {
        let data: SecretData = [
            ("token".to_owned(), b"one".to_vec()),
            ("address".to_owned(), b"http://a".to_vec()),
            ("token".to_owned(), b"two".to_vec()),
        ]
        .into_iter()
        .collect();
        assert_eq!(data.len(), 2);
        assert_eq!(data.keys().collect::<Vec<_>>(), ["address", "token"]);
        assert_eq!(data["token"], b"two");
        assert!(data.contains_key("address"));
        assert_eq!(data.get("username"), None);
    }

    const FOLDER: &str = r#"
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Provider
metadata:
  name: slack
  namespace: flux-system
spec:
  type: slack
  channel: general
  secretRef:
    name: slack-url
---
apiVersion: v1
kind: Secret
metadata:
  name: slack-url
  namespace: flux-system
data:
  address: aHR0cDovL2V4YW1wbGU=
stringData:
  token: xoxb-1
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Alert
metadata:
  name: on-call
  namespace: flux-system
spec:
  providerRef:
    name: slack
  eventSeverity: error
  eventSources:
    - kind: Kustomization
      name: '*'
    - kind: HelmRelease
      name: podinfo
      namespace: apps
      matchLabels:
        team: a
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: ignored
---
"#;

    #[test]
    fn parses_a_folder_of_flux_objects() {
        let objects: Vec<Object> = parse_documents(FOLDER, "default")
            .unwrap()
            .into_iter()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(objects.len(), 3);
        let Object::Provider(provider) = &objects[0] else {
            panic!("{:?}", objects[0])
        };
        assert_eq!(provider.spec.type_, "slack");
        assert_eq!(provider.spec.secret_ref.as_ref().unwrap().name, "slack-url");
        assert_eq!(provider.timeout(), DEFAULT_PROVIDER_TIMEOUT);
        let Object::Secret(secret) = &objects[1] else {
            panic!()
        };
        assert_eq!(secret.data["address"], b"http://example");
        assert_eq!(secret.data["token"], b"xoxb-1");
        assert!(!format!("{secret:?}").contains("xoxb"));
        let Object::Alert(alert) = &objects[2] else {
            panic!()
        };
        assert_eq!(alert.event_severity(), "error");
        assert_eq!(alert.spec.event_sources[1].namespace, "apps");
        assert_eq!(
            alert.spec.event_sources[1].match_labels.as_ref().unwrap()["team"],
            "a"
        );
        assert_eq!(alert.spec.event_sources[0].match_labels, None);
    }

    #[test]
    fn invalid_objects_say_why() {
        let cases = [
            (
                "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Provider\nmetadata: {name: p}\nspec: {type: carrier-pigeon}",
                "Provider/default/p: spec.type \"carrier-pigeon\" is not a Flux provider type",
            ),
            (
                "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Alert\nmetadata: {name: a, namespace: x}\nspec: {eventSources: []}",
                "Alert/x/a: spec.providerRef.name is required",
            ),
            (
                "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Alert\nmetadata: {name: a}\nspec: {providerRef: {name: p}, eventSources: [{name: x}]}",
                "spec.eventSources[0].kind is required",
            ),
            (
                "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Provider\nmetadata: {name: p}\nspec: {type: slack, timeout: 1h}",
                "spec.timeout \"1h\"",
            ),
            (
                "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Provider\nmetadata: {name: p}\nspec: {type: slack, commitStatusExpr: x}",
                "commitStatusExpr is only allowed",
            ),
            (
                "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {token: '***'}",
                "Secret/default/s: data.token is not base64",
            ),
            (
                "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Alert\nmetadata: {namespace: x}\nspec: {}",
                "metadata.name is required",
            ),
            (
                "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Alert\nmetadata: {name: a}\nspec: {suspend: maybe}",
                "Alert/a: ",
            ),
        ];
        for (yaml, needle) in cases {
            let results = parse_documents(yaml, "default").unwrap();
            let err = match results[0].clone() {
                Ok(object) => format!("{}: {}", object.id(), object.validate().unwrap_err()),
                Err(e) => e.to_string(),
            };
            assert!(err.contains(needle), "{err:?} lacks {needle:?}");
        }
        assert!(parse_documents("a: [", "default").is_err());
    }

    #[test]
    fn json_from_an_api_server_reads_as_its_yaml() {
        let served = [
            r#"{"apiVersion":"notification.toolkit.fluxcd.io/v1beta3","kind":"Alert","metadata":{"name":"a","namespace":"apps","uid":"u-1","labels":{"team":"x"},"resourceVersion":"7","managedFields":[{"manager":"kubectl"}]},"spec":{"providerRef":{"name":"p"},"eventSeverity":"error","eventSources":[{"kind":"Kustomization","name":"*","matchLabels":{"app":"web"}}],"eventMetadata":{"env":"prod"},"suspend":false}}"#,
            r#"{"apiVersion":"notification.toolkit.fluxcd.io/v1beta3","kind":"Provider","metadata":{"name":"p","namespace":"apps"},"spec":{"type":"generic","address":"http://x/","secretRef":{"name":"s"},"timeout":"30s"}}"#,
            r#"{"apiVersion":"v1","kind":"Secret","type":"Opaque","metadata":{"name":"s"},"data":{"headers":"WC1Ub2tlbjogb25l"}}"#,
            r#"{"apiVersion":"notification.toolkit.fluxcd.io/v1beta2","kind":"Alert","metadata":{"name":"old"},"spec":{"providerRef":{"name":"p"},"eventSources":[{"kind":"Bucket","name":"b"}]}}"#,
        ];
        for text in served {
            let value: serde_json::Value = serde_json::from_str(text).unwrap();
            let json = parse_value(&value, "n").unwrap().unwrap();
            assert_eq!(json, one(text), "{text}");
        }
    }

    #[test]
    fn json_leaves_to_yaml_what_it_cannot_read() {
        let cases = [
            // A number where a string belongs: YAML reads it as the string.
            r#"{"apiVersion":"notification.toolkit.fluxcd.io/v1beta3","kind":"Provider","metadata":{"name":"p"},"spec":{"type":"generic","channel":7}}"#,
            r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d"}}"#,
        ];
        for text in cases {
            let value: serde_json::Value = serde_json::from_str(text).unwrap();
            assert!(parse_value(&value, "n").is_none(), "{text}");
        }
        let unnamed: serde_json::Value = serde_json::json!({
            "apiVersion": "notification.toolkit.fluxcd.io/v1beta3", "kind": "Alert", "metadata": {}
        });
        let err = parse_value(&unnamed, "n").unwrap().unwrap_err();
        assert_eq!(err.reason, "metadata.name is required");
    }

    fn one(yaml: &str) -> Object {
        parse_documents(yaml, "n").unwrap().remove(0).unwrap()
    }

    #[test]
    fn kinds_beyond_flux_are_kept_with_a_warning() {
        let alert = one(
            "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Alert\nmetadata: {name: a}\n\
             spec: {providerRef: {name: p}, eventSources: [{kind: Kustomization, name: '*'}, \
             {kind: FluxInstance, name: flux}, {kind: Deployment, name: web}]}",
        );
        assert_eq!(alert.validate(), Ok(()));
        let warnings = alert.warnings();
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings[0].starts_with(
                "spec.eventSources[1].kind \"FluxInstance\" is a Flux Operator kind, not one of Flux's (Bucket, GitRepository,"
            ),
            "{}",
            warnings[0]
        );
        assert!(
            warnings[1].starts_with(
                "spec.eventSources[2].kind \"Deployment\" is not one of Flux's (Bucket,"
            ) && warnings[1].contains("ExternalArtifact)"),
            "{}",
            warnings[1]
        );
    }

    #[test]
    fn values_flux_would_substitute_or_decrypt_are_named() {
        let provider = one(
            "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Provider\nmetadata: {name: p}\n\
             spec: {type: slack, address: 'https://hooks.slack.com/${HOOK_PATH}', channel: '${CHANNEL:=alerts}', \
             username: 'ENC[AES256_GCM,data:abc=,iv:x=,tag:y=,type:str]', proxy: 'http://proxy:3128'}",
        );
        assert_eq!(provider.validate(), Ok(()));
        let warnings = provider.unprocessed_values();
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        assert!(warnings[0].starts_with("spec.address holds the variable ${HOOK_PATH}; Flux's kustomize-controller substitutes it (postBuild)"));
        assert!(warnings[1].starts_with("spec.channel holds the variable ${CHANNEL};"));
        assert!(warnings[2].starts_with("spec.username is SOPS-encrypted (ENC[...]);"));
        assert!(!warnings[2].contains("abc="), "never repeats the value");

        let secret = one("apiVersion: v1\nkind: Secret\nmetadata: {name: s}\n\
             data: {token: 'ENC[AES256_GCM,data:Zm9v,iv:x=,tag:y=,type:str]', other: 'ENC[AES256_GCM,data:x]'}\n\
             stringData: {address: 'https://${HOST}/hook', headers: 'X-Price: $5 {a}'}");
        let warnings = secret.unprocessed_values();
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].starts_with("key address holds the variable ${HOST}"));
        assert!(warnings[1].starts_with("key token is SOPS-encrypted"));
        assert!(
            one("apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Provider\nmetadata: {name: p}\nspec: {type: generic, address: 'https://x/$1/${}/${1A}'}")
                .unprocessed_values()
                .is_empty()
        );
    }

    #[test]
    fn scalars_keep_the_type_of_their_field() {
        let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\nspec: {type: [1]}\n---\n\
            apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Provider\n\
            metadata: {name: 0123, namespace: n}\nspec: {type: generic, channel: yes, suspend: true}\n";
        let results = parse_documents(yaml, "default").unwrap();
        assert_eq!(results.len(), 1, "the ConfigMap is skipped");
        let Ok(Object::Provider(p)) = &results[0] else {
            panic!("{results:?}")
        };
        assert_eq!(
            (p.meta.name.as_str(), p.meta.namespace.as_str()),
            ("0123", "n")
        );
        assert_eq!(p.spec.channel, "yes");
        assert!(p.spec.suspend);
    }

    #[test]
    fn derived_uids_are_stable_and_uuid_shaped() {
        let meta = ObjectMeta {
            name: "p".into(),
            namespace: "n".into(),
            ..ObjectMeta::default()
        };
        let uid = meta.uid_or_derived("Provider");
        assert_eq!(uid, meta.uid_or_derived("Provider"));
        assert_ne!(uid, meta.uid_or_derived("Alert"));
        assert_eq!(
            uid.split('-').map(str::len).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        let explicit = ObjectMeta {
            uid: "0c9c2e41-aaaa".into(),
            ..meta
        };
        assert_eq!(explicit.uid_or_derived("Provider"), "0c9c2e41-aaaa");
    }
}
