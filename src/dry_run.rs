//! `herald route --dry-run EVENT.json`: what Herald would do with one Flux
//! event against a folder catalog, without NATS and without sending: every
//! Alert that matches and why the others do not, Flux's gating for each
//! matched Provider, and what each Provider would receive (method, URL,
//! headers and body), with every secret masked.

use std::collections::BTreeMap;

use herald_flux::convert::{Stamp, from_proto, to_proto};
use herald_flux::matching::{Gate, gate};
use herald_flux::{FluxEvent, metadata};
use herald_runtime::Snapshot;
use herald_senders::config::resolve;
use herald_senders::providers::{self, AlertIdentity, Input, Plan};
use serde::Serialize;

/// The verdict on one Alert.
#[derive(Debug, Serialize)]
pub struct AlertVerdict {
    /// `namespace/name`.
    pub alert: String,
    /// `matched`, `not matched`, `not sent` or `dead letter`.
    pub outcome: &'static str,
    /// Why (for every outcome but a send).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// The Provider it sends to, when matched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<ProviderPreview>,
}

/// What a matched Alert's Provider would receive.
#[derive(Debug, Serialize)]
pub struct ProviderPreview {
    /// `namespace/name`.
    pub name: String,
    #[serde(rename = "type")]
    pub provider_type: String,
    /// The metadata after Flux's merge rules (what notifications show).
    pub metadata: BTreeMap<String, String>,
    /// The request, when the type sends one request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<RequestPreview>,
    /// What is planned otherwise (a commit status, an exchange, a skip).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub plan: String,
}

/// One HTTP request, secrets masked.
#[derive(Debug, Serialize)]
pub struct RequestPreview {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// Headers whose values are credentials whatever they hold.
const CREDENTIAL_HEADERS: &[&str] = &[
    "authorization",
    "private-token",
    "dd-api-key",
    "x-sentry-auth",
    "x-signature",
];

/// Explains what every Alert of `snapshot` does with `event` (as Flux
/// controllers post it) from `cluster`, with the object's `labels` when
/// given (what the Kubernetes catalog would look up).
///
/// # Errors
///
/// When `event` is not a Flux event.
pub fn explain(
    snapshot: &Snapshot,
    event_json: &[u8],
    cluster: &str,
    labels: Option<BTreeMap<String, String>>,
    cluster_metadata: bool,
) -> anyhow::Result<Vec<AlertVerdict>> {
    let flux =
        FluxEvent::from_json(event_json).map_err(|e| anyhow::anyhow!("not a Flux event: {e}"))?;
    let group = metadata::api_group(&flux.involved_object.api_version).to_owned();
    let mut flux = flux;
    metadata::cleanup(&mut flux.metadata, &group);
    let mut event = to_proto(
        flux,
        Stamp {
            id: "dry-run".to_owned(),
            cluster: cluster.to_owned(),
            received_at: Some(jiff::Timestamp::now()),
            dedupe_key: String::new(),
        },
    );
    metadata::exclude_internal(&mut event.metadata, &group);
    if let Some(labels) = labels {
        event.labels = labels;
        event.labels_known = true;
    }
    let mut out = Vec::new();
    for compiled in snapshot.alerts.alerts() {
        let alert = &compiled.alert;
        let key = alert.key();
        let verdict = |outcome, reason: String| AlertVerdict {
            alert: key.clone(),
            outcome,
            reason,
            provider: None,
        };
        let note = match compiled.explain(&event) {
            Ok(note) => note.unwrap_or_default(),
            Err(reason) => {
                out.push(verdict("not matched", reason));
                continue;
            }
        };
        if !compiled.clusters.covers(&event.cluster, None) {
            out.push(verdict(
                "not matched",
                format!("the Alert does not select cluster {:?}", event.cluster),
            ));
            continue;
        }
        let provider_name = &alert.spec.provider_ref.name;
        let Some(provider) = snapshot.provider(&alert.meta.namespace, provider_name) else {
            out.push(verdict(
                "dead letter",
                format!(
                    "the Provider {}/{provider_name} does not exist",
                    alert.meta.namespace
                ),
            ));
            continue;
        };
        let gated = gate(
            &event,
            &alert.meta.namespace,
            false,
            &provider.spec.type_,
            provider.spec.suspend,
            &group,
        );
        if gated != Gate::Send {
            out.push(verdict("not sent", describe_gate(gated).to_owned()));
            continue;
        }
        let merged = metadata::merge_for_alert(
            &event.metadata,
            &group,
            &alert.spec.event_metadata,
            &alert.spec.summary,
            (cluster_metadata && !event.cluster.is_empty()).then_some(event.cluster.as_str()),
        );
        let mut outbound = event.clone();
        outbound.metadata = merged.metadata.clone();
        let outbound = from_proto(&outbound);
        let mut preview = ProviderPreview {
            name: provider.key(),
            provider_type: provider.spec.type_.clone(),
            metadata: merged.metadata,
            request: None,
            plan: String::new(),
        };
        let resolved = match resolve(&provider, snapshot) {
            Ok(resolved) => resolved,
            Err(reason) => {
                out.push(AlertVerdict {
                    provider: Some(preview),
                    ..verdict(
                        "dead letter",
                        format!("the Provider cannot be used: {reason}"),
                    )
                });
                continue;
            }
        };
        let identity = AlertIdentity {
            namespace: alert.meta.namespace.clone(),
            name: alert.meta.name.clone(),
            uid: compiled.uid.clone(),
        };
        let identifier = || {
            herald_flux::git::commit_status_identifier(
                &provider.spec.commit_status_expr,
                &outbound,
                &herald_senders::manifest::provider(&provider),
                &herald_senders::manifest::alert(alert),
            )
            .map_err(|e| e.to_string())
        };
        let planned = providers::plan(&Input {
            event: &outbound,
            alert: &identity,
            resolved: &resolved,
            identifier: &identifier,
            thread: None,
        });
        let masker = |url: &reqwest::Url| herald_senders::http::masker(&resolved, url);
        match planned {
            Err(reason) => {
                out.push(AlertVerdict {
                    provider: Some(preview),
                    ..verdict("dead letter", reason.to_string())
                });
                continue;
            }
            Ok(Plan::Skip(why)) => preview.plan = format!("nothing is sent: {why}"),
            Ok(Plan::Request(request)) => {
                let masker = masker(&request.url);
                let headers = request
                    .headers
                    .iter()
                    .map(|(name, value)| {
                        let shown = if CREDENTIAL_HEADERS.contains(&name.to_lowercase().as_str()) {
                            "***".to_owned()
                        } else {
                            masker.mask(value)
                        };
                        (name.clone(), shown)
                    })
                    .collect();
                preview.request = Some(RequestPreview {
                    method: request.method.to_string(),
                    url: if resolved.address_is_secret {
                        resolved.address_for_logs()
                    } else {
                        masker.mask(request.url.as_str())
                    },
                    headers,
                    body: masker.mask(&String::from_utf8_lossy(&request.body)),
                });
            }
            Ok(Plan::CommitStatus(status)) => {
                preview.plan = format!(
                    "a commit status on {} commit {} with identifier {:?} (never older than one already written)",
                    status.repository, status.sha, status.identifier
                );
            }
            Ok(Plan::Exchange(_)) => {
                preview.plan =
                    "an exchange of several requests (a token, a lookup, then the write), shown only when sent"
                        .to_owned();
            }
        }
        out.push(AlertVerdict {
            provider: Some(preview),
            ..verdict("matched", note)
        });
    }
    Ok(out)
}

fn describe_gate(gate: Gate) -> &'static str {
    match gate {
        Gate::Send => "sent",
        Gate::CrossNamespaceDenied => {
            "the event is from another namespace and cross-namespace references are blocked"
        }
        Gate::ProviderSuspended => "the Provider is suspended",
        Gate::CommitStatusUpdateOnly => {
            "a commit status update goes only to commit-status and generic Providers"
        }
        Gate::MissingCommit => {
            "a commit-status Provider gets info events only with a commit annotation or as a commit status update"
        }
        Gate::MissingChangeRequest => {
            "a change-request Provider needs the event.toolkit.fluxcd.io/change_request annotation"
        }
    }
}

/// Every Alert's verdict, as `route --dry-run` prints it.
#[derive(Debug, Serialize)]
#[serde(transparent)]
pub struct Verdicts(pub Vec<AlertVerdict>);

impl crate::output::Tabular for Verdicts {
    fn table(&self) -> String {
        render(&self.0)
    }
}

/// The verdicts as text: one block per Alert.
#[must_use]
pub fn render(verdicts: &[AlertVerdict]) -> String {
    let mut out = String::new();
    for v in verdicts {
        out.push_str(&format!("Alert/{}: {}", v.alert, v.outcome));
        if !v.reason.is_empty() {
            out.push_str(&format!(": {}", v.reason));
        }
        out.push('\n');
        if let Some(p) = &v.provider {
            out.push_str(&format!("  Provider/{} ({})\n", p.name, p.provider_type));
            if !p.metadata.is_empty() {
                let pairs: Vec<String> =
                    p.metadata.iter().map(|(k, v)| format!("{k}={v}")).collect();
                out.push_str(&format!("  metadata: {}\n", pairs.join(", ")));
            }
            if let Some(r) = &p.request {
                out.push_str(&format!("  {} {}\n", r.method, r.url));
                for (name, value) in &r.headers {
                    out.push_str(&format!("  {name}: {value}\n"));
                }
                out.push_str(&format!("  {}\n", r.body));
            }
            if !p.plan.is_empty() {
                out.push_str(&format!("  {}\n", p.plan));
            }
        }
    }
    out
}
