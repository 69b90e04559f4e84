//! Alerts and Providers as the JSON objects `commitStatusExpr` sees
//! (`provider.metadata.uid`, `alert.spec.eventMetadata`, ...).

use herald_flux::{Alert, Provider};
use serde_json::{Value, json};

fn meta(meta: &herald_flux::objects::ObjectMeta, uid: String) -> Value {
    json!({
        "name": meta.name,
        "namespace": meta.namespace,
        "uid": uid,
        "labels": meta.labels,
        "annotations": meta.annotations,
    })
}

/// A Provider's manifest, with its uid (explicit or derived).
#[must_use]
pub fn provider(provider: &Provider) -> Value {
    let spec = &provider.spec;
    json!({
        "apiVersion": "notification.toolkit.fluxcd.io/v1beta3",
        "kind": "Provider",
        "metadata": meta(&provider.meta, provider.uid()),
        "spec": {
            "type": spec.type_,
            "channel": spec.channel,
            "username": spec.username,
            "address": spec.address,
            "timeout": spec.timeout,
            "suspend": spec.suspend,
            "commitStatusExpr": spec.commit_status_expr,
            "secretRef": spec.secret_ref.as_ref().map(|r| json!({"name": r.name})),
        },
    })
}

/// An Alert's manifest, with its uid (explicit or derived).
#[must_use]
pub fn alert(alert: &Alert) -> Value {
    let spec = &alert.spec;
    json!({
        "apiVersion": "notification.toolkit.fluxcd.io/v1beta3",
        "kind": "Alert",
        "metadata": meta(&alert.meta, alert.uid()),
        "spec": {
            "providerRef": {"name": spec.provider_ref.name},
            "eventSeverity": alert.event_severity(),
            "eventMetadata": spec.event_metadata,
            "summary": spec.summary,
            "suspend": spec.suspend,
            "inclusionList": spec.inclusion_list,
            "exclusionList": spec.exclusion_list,
        },
    })
}
