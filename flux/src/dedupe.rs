//! Flux's rate-limit key (flux-semantics §2.2) and Herald's event identity.

use sha2::{Digest, Sha256};

use crate::event::FluxEvent;

/// The notification-controller's dedupe key for an event whose metadata went
/// through the inbound filter: the lowercase hex SHA-256 of
/// `event/name=…/namespace=…/kind=…/message=…` followed by
/// `/originRevision=…`, `/revision=…` and `/token=…` for those of the three
/// `<group>/` keys that are present (even when empty).
#[must_use]
pub fn dedupe_key(event: &FluxEvent) -> String {
    let obj = &event.involved_object;
    let group = event.api_group();
    let mut key = format!(
        "event/name={}/namespace={}/kind={}/message={}",
        obj.name, obj.namespace, obj.kind, event.message
    );
    for (label, suffix) in [
        ("originRevision", "originRevision"),
        ("revision", "revision"),
        ("token", "token"),
    ] {
        if let Some(value) = event.metadata.get(&format!("{group}/{suffix}")) {
            key.push('/');
            key.push_str(label);
            key.push('=');
            key.push_str(value);
        }
    }
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// A stable identity for one emitted event from one cluster: the same request
/// retried by a Flux controller gets the same id, a new emission (which has a
/// new timestamp) a new one. 32 hex digits (128 bits of SHA-256).
#[must_use]
pub fn event_id(cluster: &str, event: &FluxEvent) -> String {
    let mut hasher = Sha256::new();
    hasher.update(cluster.as_bytes());
    hasher.update([0]);
    hasher.update(crate::gojson::to_vec(event));
    hasher.update([0]);
    // The wire form keeps whole seconds only; the id keeps the full precision.
    if let Some(ts) = event.timestamp {
        hasher.update(ts.as_nanosecond().to_le_bytes());
    }
    let digest = hasher.finalize();
    hex::encode(&digest[..16])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn event(meta: &[(&str, &str)]) -> FluxEvent {
        let mut e = FluxEvent::default();
        e.involved_object.kind = "HelmRelease".into();
        e.involved_object.namespace = "podinfo".into();
        e.involved_object.name = "podinfo".into();
        e.involved_object.api_version = "helm.toolkit.fluxcd.io/v2".into();
        e.message = "Helm install succeeded".into();
        e.metadata = meta
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        e
    }

    fn sha(text: &str) -> String {
        hex::encode(Sha256::digest(text.as_bytes()))
    }

    #[test]
    fn key_is_built_in_flux_order() {
        let e = event(&[
            ("helm.toolkit.fluxcd.io/token", "sha256:t"),
            ("helm.toolkit.fluxcd.io/revision", "6.5.3"),
            ("helm.toolkit.fluxcd.io/originRevision", ""),
            ("event.toolkit.fluxcd.io/commit", "ignored"),
        ]);
        assert_eq!(
            dedupe_key(&e),
            sha(
                "event/name=podinfo/namespace=podinfo/kind=HelmRelease/message=Helm install succeeded/originRevision=/revision=6.5.3/token=sha256:t"
            )
        );
        assert_eq!(
            dedupe_key(&event(&[])),
            sha(
                "event/name=podinfo/namespace=podinfo/kind=HelmRelease/message=Helm install succeeded"
            )
        );
    }

    #[test]
    fn missing_api_version_looks_up_slash_keys() {
        let mut e = event(&[("/revision", "r"), ("helm.toolkit.fluxcd.io/revision", "x")]);
        e.involved_object.api_version.clear();
        assert!(
            sha(
                "event/name=podinfo/namespace=podinfo/kind=HelmRelease/message=Helm install succeeded/revision=r"
            ) == dedupe_key(&e)
        );
    }

    proptest! {
        #[test]
        fn key_ignores_what_flux_ignores(severity in ".*", reason in ".*", instance in ".*", other in ".*") {
            let base = event(&[("helm.toolkit.fluxcd.io/revision", "1")]);
            let mut changed = base.clone();
            changed.severity = severity;
            changed.reason = reason;
            changed.reporting_instance = instance;
            changed.metadata.insert("event.toolkit.fluxcd.io/x".into(), other);
            prop_assert_eq!(dedupe_key(&base), dedupe_key(&changed));
        }

        #[test]
        fn key_tracks_message_and_revision(message in ".*", revision in ".*") {
            let base = event(&[("helm.toolkit.fluxcd.io/revision", "1")]);
            let mut changed = base.clone();
            changed.message = message.clone();
            changed.metadata.insert("helm.toolkit.fluxcd.io/revision".into(), revision.clone());
            let same = message == base.message && revision == "1";
            prop_assert_eq!(dedupe_key(&base) == dedupe_key(&changed), same);
        }

        #[test]
        fn event_id_is_stable_and_distinguishes_clusters(message in ".*") {
            let mut e = event(&[]);
            e.message = message;
            prop_assert_eq!(event_id("a", &e), event_id("a", &e.clone()));
            prop_assert_ne!(event_id("a", &e), event_id("b", &e));
        }
    }
}
