//! Slack threads, asked for with an annotation in Herald's domain (the
//! Alert and Provider CRDs stay Flux's; notification-controller#428):
//!
//! ```yaml
//! metadata:
//!   annotations:
//!     herald.dev/slack-thread: "true"
//! ```
//!
//! On a Provider it is the default of its Alerts; an Alert's own `"true"` or
//! `"false"` wins. The events about one object at one revision, from one
//! cluster, to one channel form one thread: the first is the thread's root,
//! the later ones are replies. This module holds the pure part: reading the
//! setting and the thread key.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::event::FluxEvent;

/// Whether an Alert's (or a Provider's Alerts') Slack messages are threaded:
/// `"true"` or `"false"`.
pub const SLACK_THREAD_ANNOTATION: &str = "herald.dev/slack-thread";

/// What `annotations` say about threads: `Some(true)`, `Some(false)`, or
/// `None` when the annotation is not there.
///
/// # Errors
///
/// A value other than `true` or `false`, in words for `herald validate`.
pub fn slack_thread_setting(
    annotations: &BTreeMap<String, String>,
) -> Result<Option<bool>, String> {
    let Some(value) = annotations.get(SLACK_THREAD_ANNOTATION) else {
        return Ok(None);
    };
    match value.trim() {
        "true" => Ok(Some(true)),
        "false" => Ok(Some(false)),
        _ => Err(format!(
            "annotation {SLACK_THREAD_ANNOTATION} must be \"true\" or \"false\" (got {value:?}); \
             its messages are not threaded"
        )),
    }
}

/// Whether the deliveries of an Alert with `alert` annotations, to a
/// Provider with `provider` annotations, are threaded: the Alert's setting,
/// else the Provider's, else not. A value that cannot be read counts as
/// not set.
#[must_use]
pub fn slack_threaded(
    alert: &BTreeMap<String, String>,
    provider: &BTreeMap<String, String>,
) -> bool {
    let alert = slack_thread_setting(alert).ok().flatten();
    let provider = slack_thread_setting(provider).ok().flatten();
    alert.or(provider).unwrap_or(false)
}

/// The revision a thread is kept per: the metadata's `revision` (Flux's
/// `<group>/revision` after the metadata rules), else `<group>/revision`
/// itself (an event whose metadata was left as it came). `None` when the
/// event has none (it is not threaded).
#[must_use]
pub fn thread_revision(event: &FluxEvent) -> Option<&str> {
    event
        .metadata
        .get("revision")
        .or_else(|| {
            event
                .metadata
                .get(&format!("{}/revision", event.api_group()))
        })
        .map(String::as_str)
        .filter(|r| !r.is_empty())
}

/// The key of `event`'s thread at `destination` (a digest of the Provider's
/// type, address, channel and token: see the senders' pacing), from
/// `cluster`: the involved object's kind, namespace and name and the
/// revision. `t.` and 32 hex digits (128 bits of SHA-256), so it holds no
/// secret and has a bounded length. `None` when the event has no revision.
#[must_use]
pub fn thread_key(destination: &str, cluster: &str, event: &FluxEvent) -> Option<String> {
    let revision = thread_revision(event)?;
    let object = &event.involved_object;
    let mut hasher = Sha256::new();
    for part in [
        destination,
        cluster,
        object.kind.as_str(),
        object.namespace.as_str(),
        object.name.as_str(),
        revision,
    ] {
        // Length-prefixed, so that no two tuples give the same bytes.
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    Some(format!("t.{}", hex::encode(&hasher.finalize()[..16])))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn annotations(value: Option<&str>) -> BTreeMap<String, String> {
        value
            .map(|v| (SLACK_THREAD_ANNOTATION.to_owned(), v.to_owned()))
            .into_iter()
            .collect()
    }

    fn event(kind: &str, name: &str, metadata: &[(&str, &str)]) -> FluxEvent {
        let mut e = FluxEvent::default();
        e.involved_object.kind = kind.into();
        e.involved_object.namespace = "apps".into();
        e.involved_object.name = name.into();
        e.involved_object.api_version = "kustomize.toolkit.fluxcd.io/v1".into();
        e.metadata = metadata
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        e
    }

    #[test]
    fn the_alert_wins_over_its_provider_and_bad_values_are_named() {
        let (yes, no, none) = (
            annotations(Some("true")),
            annotations(Some("false")),
            annotations(None),
        );
        assert!(slack_threaded(&none, &yes));
        assert!(!slack_threaded(&no, &yes));
        assert!(slack_threaded(&yes, &no));
        assert!(!slack_threaded(&none, &none));
        let bad = annotations(Some("yes"));
        assert!(!slack_threaded(&bad, &none));
        assert!(slack_threaded(&bad, &yes), "an unreadable value is not set");
        let problem = slack_thread_setting(&bad).unwrap_err();
        assert!(
            problem.contains("herald.dev/slack-thread must be \"true\" or \"false\" (got \"yes\")"),
            "{problem}"
        );
        assert_eq!(
            slack_thread_setting(&annotations(Some(" true "))),
            Ok(Some(true))
        );
    }

    #[test]
    fn keys_follow_object_revision_cluster_and_destination() {
        let base = event("Kustomization", "app", &[("revision", "main@sha1:1")]);
        let key = thread_key("d.1", "prod", &base).unwrap();
        assert!(key.starts_with("t.") && key.len() == 34, "{key}");
        assert_eq!(Some(key.clone()), thread_key("d.1", "prod", &base.clone()));
        let others = [
            thread_key("d.2", "prod", &base),
            thread_key("d.1", "staging", &base),
            thread_key(
                "d.1",
                "prod",
                &event("Kustomization", "app", &[("revision", "main@sha1:2")]),
            ),
            thread_key(
                "d.1",
                "prod",
                &event("Kustomization", "other", &[("revision", "main@sha1:1")]),
            ),
            thread_key(
                "d.1",
                "prod",
                &event("HelmRelease", "app", &[("revision", "main@sha1:1")]),
            ),
        ];
        for other in others {
            assert_ne!(other.as_deref(), Some(key.as_str()));
        }
        // The group's own key, when the metadata was not merged.
        let prefixed = event(
            "Kustomization",
            "app",
            &[("kustomize.toolkit.fluxcd.io/revision", "main@sha1:1")],
        );
        assert_eq!(thread_key("d.1", "prod", &prefixed), Some(key));
        assert_eq!(
            thread_key("d.1", "prod", &event("Kustomization", "app", &[])),
            None
        );
        assert_eq!(
            thread_key(
                "d.1",
                "prod",
                &event("Kustomization", "app", &[("revision", "")])
            ),
            None
        );
    }

    proptest! {
        #[test]
        fn keys_are_bounded_and_hold_no_input(
            destination in ".*", cluster in ".*", name in ".*", revision in ".+"
        ) {
            let e = event("Kustomization", &name, &[("revision", &revision)]);
            let key = thread_key(&destination, &cluster, &e).unwrap();
            prop_assert_eq!(key.len(), 34);
            prop_assert!(key[2..].bytes().all(|b| b.is_ascii_hexdigit()));
        }

        #[test]
        fn parts_never_run_into_each_other(a in "[a-z]{1,8}", b in "[a-z]{1,8}") {
            // ("ab", "c") and ("a", "bc") differ.
            let joined = format!("{a}{b}");
            let first = thread_key(&joined, &b, &event("K", "n", &[("revision", "r")]));
            let second = thread_key(&a, &format!("{b}{b}"), &event("K", "n", &[("revision", "r")]));
            prop_assert_ne!(first, second);
        }
    }
}
