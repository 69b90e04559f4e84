//! Shared fixtures: Flux events as controllers post them, the manifests
//! Herald reads (Provider, Alert, Secret), and the waits most suites need.
//!
//! ```ignore
//! let event = Event::new("Kustomization", "flux-system", "apps").severity("error").message("boom");
//! let manifests = format!(
//!     "{}{}",
//!     Provider::new("flux-system", "hook", "generic").address(&hook.url("/hook")),
//!     Alert::new("flux-system", "all", "hook").source("Kustomization", "*"),
//! );
//! ```

use std::fmt;

use herald_proto::{DeadLetter, names};
use prost::Message as _;

use crate::nats::TestNats;

/// The API group and reporting controller of a Flux kind.
fn group_of(kind: &str) -> (&'static str, &'static str) {
    match kind {
        "HelmRelease" => ("helm.toolkit.fluxcd.io/v2", "helm-controller"),
        "GitRepository" | "HelmRepository" | "OCIRepository" | "Bucket" | "HelmChart" => {
            ("source.toolkit.fluxcd.io/v1", "source-controller")
        }
        "ImageRepository" | "ImagePolicy" => (
            "image.toolkit.fluxcd.io/v1beta2",
            "image-reflector-controller",
        ),
        "ImageUpdateAutomation" => (
            "image.toolkit.fluxcd.io/v1beta2",
            "image-automation-controller",
        ),
        _ => ("kustomize.toolkit.fluxcd.io/v1", "kustomize-controller"),
    }
}

/// A JSON string literal.
fn quote(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

/// A Flux event, rendered by [`Event::json`] as a controller posts it.
#[derive(Debug, Clone)]
#[must_use]
pub struct Event {
    kind: String,
    namespace: String,
    name: String,
    api_version: String,
    uid: Option<String>,
    severity: String,
    reason: String,
    message: String,
    metadata: Vec<(String, String)>,
    /// The raw JSON value, or nothing at all.
    timestamp: Option<String>,
    reporting_controller: String,
    reporting_instance: Option<String>,
}

// === impl Event ===

impl Event {
    /// An `info` event about `kind` `namespace/name`, reason `Progressing`,
    /// at `2024-01-01T00:00:00Z`, from the kind's own controller.
    pub fn new(kind: &str, namespace: &str, name: &str) -> Self {
        let (api_version, controller) = group_of(kind);
        Self {
            kind: kind.to_owned(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            api_version: api_version.to_owned(),
            uid: None,
            severity: "info".to_owned(),
            reason: "Progressing".to_owned(),
            message: String::new(),
            metadata: Vec::new(),
            timestamp: Some(quote("2024-01-01T00:00:00Z")),
            reporting_controller: controller.to_owned(),
            reporting_instance: None,
        }
    }

    /// `info` or `error`.
    pub fn severity(mut self, severity: &str) -> Self {
        severity.clone_into(&mut self.severity);
        self
    }

    pub fn reason(mut self, reason: &str) -> Self {
        reason.clone_into(&mut self.reason);
        self
    }

    pub fn message(mut self, message: &str) -> Self {
        message.clone_into(&mut self.message);
        self
    }

    /// Adds a metadata entry (in order).
    pub fn metadata(mut self, key: &str, value: &str) -> Self {
        self.metadata.push((key.to_owned(), value.to_owned()));
        self
    }

    /// An RFC 3339 timestamp.
    pub fn timestamp(mut self, timestamp: &str) -> Self {
        self.timestamp = Some(quote(timestamp));
        self
    }

    /// The timestamp as raw JSON (`null`, a number, anything); `None` leaves it out.
    pub fn timestamp_json(mut self, raw: Option<&str>) -> Self {
        self.timestamp = raw.map(str::to_owned);
        self
    }

    /// The current time as the timestamp.
    pub fn now(self) -> Self {
        let now = jiff::Timestamp::now().to_string();
        self.timestamp(&now)
    }

    pub fn api_version(mut self, api_version: &str) -> Self {
        api_version.clone_into(&mut self.api_version);
        self
    }

    /// The involved object's uid.
    pub fn uid(mut self, uid: &str) -> Self {
        self.uid = Some(uid.to_owned());
        self
    }

    pub fn controller(mut self, controller: &str) -> Self {
        controller.clone_into(&mut self.reporting_controller);
        self
    }

    pub fn instance(mut self, instance: &str) -> Self {
        self.reporting_instance = Some(instance.to_owned());
        self
    }

    /// The body a Flux controller posts: Go's `json.Marshal` of the event,
    /// fields in its struct order.
    #[must_use]
    pub fn json(&self) -> String {
        let mut object = format!(
            r#"{{"kind":{},"namespace":{},"name":{}"#,
            quote(&self.kind),
            quote(&self.namespace),
            quote(&self.name)
        );
        if let Some(uid) = &self.uid {
            object.push_str(&format!(r#","uid":{}"#, quote(uid)));
        }
        object.push_str(&format!(r#","apiVersion":{}}}"#, quote(&self.api_version)));
        let mut out = format!(
            r#"{{"involvedObject":{object},"severity":{}"#,
            quote(&self.severity)
        );
        if let Some(timestamp) = &self.timestamp {
            out.push_str(&format!(r#","timestamp":{timestamp}"#));
        }
        out.push_str(&format!(
            r#","message":{},"reason":{}"#,
            quote(&self.message),
            quote(&self.reason)
        ));
        if !self.metadata.is_empty() {
            let entries: Vec<String> = self
                .metadata
                .iter()
                .map(|(k, v)| format!("{}:{}", quote(k), quote(v)))
                .collect();
            out.push_str(&format!(r#","metadata":{{{}}}"#, entries.join(",")));
        }
        out.push_str(&format!(
            r#","reportingController":{}"#,
            quote(&self.reporting_controller)
        ));
        if let Some(instance) = &self.reporting_instance {
            out.push_str(&format!(r#","reportingInstance":{}"#, quote(instance)));
        }
        out.push('}');
        out
    }
}

impl From<Event> for reqwest::Body {
    fn from(event: Event) -> Self {
        event.json().into()
    }
}

impl From<&Event> for reqwest::Body {
    fn from(event: &Event) -> Self {
        event.json().into()
    }
}

/// A YAML single-quoted scalar.
fn yaml(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn metadata(name: &str, namespace: &str, uid: Option<&str>) -> String {
    let uid = uid
        .map(|u| format!(", uid: {}", yaml(u)))
        .unwrap_or_default();
    format!(
        "metadata: {{name: {}, namespace: {}{uid}}}",
        yaml(name),
        yaml(namespace)
    )
}

/// A `notification.toolkit.fluxcd.io/v1beta3` Provider.
#[derive(Debug, Clone)]
#[must_use]
pub struct Provider {
    namespace: String,
    name: String,
    uid: Option<String>,
    /// `key: value` entries of the spec, YAML flow style.
    spec: Vec<String>,
}

// === impl Provider ===

impl Provider {
    /// A Provider of `provider_type`.
    pub fn new(namespace: &str, name: &str, provider_type: &str) -> Self {
        Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            uid: None,
            spec: vec![format!("type: {}", yaml(provider_type))],
        }
    }

    pub fn address(self, address: &str) -> Self {
        self.spec(&format!("address: {}", yaml(address)))
    }

    pub fn channel(self, channel: &str) -> Self {
        self.spec(&format!("channel: {}", yaml(channel)))
    }

    /// `spec.secretRef.name`.
    pub fn secret_ref(self, secret: &str) -> Self {
        self.spec(&format!("secretRef: {{name: {}}}", yaml(secret)))
    }

    pub fn uid(mut self, uid: &str) -> Self {
        self.uid = Some(uid.to_owned());
        self
    }

    /// Any other spec entry, as YAML flow text (`username: bot`,
    /// `commitStatusExpr: '...'`).
    pub fn spec(mut self, entry: &str) -> Self {
        self.spec.push(entry.to_owned());
        self
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Provider\n{}\nspec: {{{}}}\n---\n",
            metadata(&self.name, &self.namespace, self.uid.as_deref()),
            self.spec.join(", ")
        )
    }
}

/// A `notification.toolkit.fluxcd.io/v1beta3` Alert.
#[derive(Debug, Clone)]
#[must_use]
pub struct Alert {
    namespace: String,
    name: String,
    provider: String,
    sources: Vec<String>,
    /// `key: value` entries of the spec, YAML flow style.
    spec: Vec<String>,
}

// === impl Alert ===

impl Alert {
    /// An Alert sending to the Provider `provider` of its namespace.
    pub fn new(namespace: &str, name: &str, provider: &str) -> Self {
        Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            provider: provider.to_owned(),
            sources: Vec::new(),
            spec: Vec::new(),
        }
    }

    /// An event source: `kind` objects named `name` (`*` for any).
    pub fn source(self, kind: &str, name: &str) -> Self {
        let source = format!("{{kind: {}, name: {}}}", yaml(kind), yaml(name));
        self.source_yaml(&source)
    }

    /// An event source as YAML flow text (`{kind: X, name: y, matchLabels: {...}}`).
    pub fn source_yaml(mut self, source: &str) -> Self {
        self.sources.push(source.to_owned());
        self
    }

    /// `spec.eventSeverity`.
    pub fn severity(self, severity: &str) -> Self {
        self.spec(&format!("eventSeverity: {}", yaml(severity)))
    }

    /// `spec.eventMetadata`.
    pub fn event_metadata(self, entries: &[(&str, &str)]) -> Self {
        let entries: Vec<String> = entries
            .iter()
            .map(|(k, v)| format!("{}: {}", yaml(k), yaml(v)))
            .collect();
        self.spec(&format!("eventMetadata: {{{}}}", entries.join(", ")))
    }

    /// Any other spec entry, as YAML flow text (`suspend: true`).
    pub fn spec(mut self, entry: &str) -> Self {
        self.spec.push(entry.to_owned());
        self
    }
}

impl fmt::Display for Alert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut spec = vec![format!("providerRef: {{name: {}}}", yaml(&self.provider))];
        if !self.sources.is_empty() {
            spec.push(format!("eventSources: [{}]", self.sources.join(", ")));
        }
        spec.extend(self.spec.iter().cloned());
        write!(
            f,
            "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Alert\n{}\nspec: {{{}}}\n---\n",
            metadata(&self.name, &self.namespace, None),
            spec.join(", ")
        )
    }
}

/// A `v1` Secret with `stringData`.
#[derive(Debug, Clone)]
#[must_use]
pub struct Secret {
    namespace: String,
    name: String,
    data: Vec<(String, String)>,
}

// === impl Secret ===

impl Secret {
    pub fn new(namespace: &str, name: &str) -> Self {
        Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            data: Vec::new(),
        }
    }

    /// A `stringData` entry.
    pub fn data(mut self, key: &str, value: &str) -> Self {
        self.data.push((key.to_owned(), value.to_owned()));
        self
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let data: Vec<String> = self
            .data
            .iter()
            .map(|(k, v)| format!("{}: {}", yaml(k), yaml(v)))
            .collect();
        write!(
            f,
            "apiVersion: v1\nkind: Secret\n{}\nstringData: {{{}}}\n---\n",
            metadata(&self.name, &self.namespace, None),
            data.join(", ")
        )
    }
}

/// One Provider (`namespace/provider` of `provider_type`, finished by
/// `build`), its Secret `provider-secret` when `secret` has keys, and an
/// Alert `all` on every Kustomization: what a provider's table test sends
/// through.
pub fn one_provider(
    namespace: &str,
    provider_type: &str,
    secret: &[(&str, String)],
    build: impl FnOnce(Provider) -> Provider,
) -> String {
    let mut provider = Provider::new(namespace, "provider", provider_type);
    let mut out = String::new();
    if !secret.is_empty() {
        provider = provider.secret_ref("provider-secret");
        let secret = secret
            .iter()
            .fold(Secret::new(namespace, "provider-secret"), |s, (k, v)| {
                s.data(k, v)
            });
        out.push_str(&secret.to_string());
    }
    out.push_str(&build(provider).to_string());
    out.push_str(
        &Alert::new(namespace, "all", "provider")
            .source("Kustomization", "*")
            .to_string(),
    );
    out
}

/// Every dead letter on HERALD_DEAD, with its subject, oldest first.
///
/// # Panics
///
/// When the stream does not exist or holds something else.
pub async fn dead_letters(nats: &TestNats) -> Vec<(String, DeadLetter)> {
    let js = nats.jetstream().await;
    let stream = js
        .get_stream(names::DEAD_STREAM)
        .await
        .expect("dead stream");
    let count = nats.stream_messages(names::DEAD_STREAM).await;
    let mut out = Vec::new();
    for seq in 1..=count {
        if let Ok(message) = stream.get_raw_message(seq).await {
            out.push((
                message.subject.to_string(),
                DeadLetter::decode(message.payload).expect("dead letter"),
            ));
        }
    }
    out
}

/// Waits until the sender acked every delivery (HERALD_DELIVERIES is empty).
pub async fn deliveries_drained(nats: &TestNats) {
    crate::eventually("deliveries acked", || async {
        (nats.stream_messages(names::DELIVERIES_STREAM).await == 0).then_some(())
    })
    .await;
}
