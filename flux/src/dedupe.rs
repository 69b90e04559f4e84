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
        hasher.update(ts.unix_nanos().to_le_bytes());
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

/// Flux's rate-limit decision for one event (flux-semantics §2.3): time is
/// cut into fixed windows anchored where the key was first seen; the first
/// event of a window passes, the others are duplicates. A key whose latest
/// window started `2 × interval` ago or more is forgotten (a new anchor).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Store and route the event; `state` is the window to record (`None`
    /// when the recorded one stays as it is: a retry of the passing event).
    Pass {
        state: Option<herald_proto::DedupeWindow>,
    },
    /// Drop it: an event with the same key passed in this window.
    Duplicate {
        /// When the window ends (Unix milliseconds).
        reset_unix_millis: i64,
    },
}

/// Decides for `event_id` at `now_millis`, given the recorded window of its key.
#[must_use]
pub fn decide(
    recorded: Option<&herald_proto::DedupeWindow>,
    now_millis: i64,
    interval_millis: i64,
    event_id: &str,
) -> Decision {
    let interval = interval_millis.max(1);
    let fresh = || Decision::Pass {
        state: Some(herald_proto::DedupeWindow {
            anchor_unix_millis: now_millis,
            window: 0,
            event_id: event_id.to_owned(),
        }),
    };
    let Some(recorded) = recorded else {
        return fresh();
    };
    let window_start = recorded.anchor_unix_millis + recorded.window * interval;
    if now_millis - window_start >= 2 * interval {
        return fresh();
    }
    let window = (now_millis - recorded.anchor_unix_millis).div_euclid(interval);
    if window > recorded.window {
        return Decision::Pass {
            state: Some(herald_proto::DedupeWindow {
                anchor_unix_millis: recorded.anchor_unix_millis,
                window,
                event_id: event_id.to_owned(),
            }),
        };
    }
    if recorded.event_id == event_id {
        // The same request again (a retry after a failed store): let it through;
        // JetStream's msg-id de-duplication stores it once.
        return Decision::Pass { state: None };
    }
    Decision::Duplicate {
        reset_unix_millis: recorded.anchor_unix_millis + (recorded.window + 1) * interval,
    }
}

#[cfg(test)]
mod window_tests {
    use super::*;

    const MIN: i64 = 60_000;

    /// Replays a sequence of event times for one key; true where an event passes.
    fn replay(times_min: &[f64]) -> Vec<bool> {
        let mut state: Option<herald_proto::DedupeWindow> = None;
        times_min
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let now = (t * MIN as f64) as i64;
                match decide(state.as_ref(), now, 5 * MIN, &format!("event-{i}")) {
                    Decision::Pass { state: next } => {
                        if next.is_some() {
                            state = next;
                        }
                        true
                    }
                    Decision::Duplicate { .. } => false,
                }
            })
            .collect()
    }

    /// The example of flux-semantics §2.3: t0 pass, t0+4m59 429, t0+5m01 pass,
    /// t0+9m 429, t0+10m pass (windows anchored at first sight, not sliding).
    #[test]
    fn windows_are_anchored_at_first_sight() {
        assert_eq!(
            replay(&[0.0, 4.0 + 59.0 / 60.0, 5.0 + 1.0 / 60.0, 9.0, 10.0]),
            [true, false, true, false, true]
        );
    }

    #[test]
    fn a_quiet_key_is_forgotten_after_two_intervals() {
        // Last pass at 0 (window 0); at 12m the window [0,5) started 12m ago: new anchor.
        assert_eq!(replay(&[0.0, 12.0, 13.0, 17.5]), [true, true, false, true]);
        // Within 2 intervals the anchor holds: 0 → window [5,10) at 9m.
        assert_eq!(replay(&[0.0, 9.0, 9.5]), [true, true, false]);
    }

    #[test]
    fn a_retry_of_the_passing_event_passes_again() {
        let state = herald_proto::DedupeWindow {
            anchor_unix_millis: 0,
            window: 0,
            event_id: "a".into(),
        };
        assert_eq!(
            decide(Some(&state), MIN, 5 * MIN, "a"),
            Decision::Pass { state: None }
        );
        assert_eq!(
            decide(Some(&state), MIN, 5 * MIN, "b"),
            Decision::Duplicate {
                reset_unix_millis: 5 * MIN
            }
        );
    }

    proptest::proptest! {
        /// At most one distinct event passes per window, and the first event
        /// of every window in which the key is seen passes.
        #[test]
        fn one_pass_per_window(mut gaps in proptest::collection::vec(0i64..(3 * 5 * MIN), 1..40)) {
            gaps[0] = 0;
            let mut now = 0;
            let mut state: Option<herald_proto::DedupeWindow> = None;
            let mut passed_windows = std::collections::HashSet::new();
            for (i, gap) in gaps.iter().enumerate() {
                now += gap;
                let decision = decide(state.as_ref(), now, 5 * MIN, &format!("e{i}"));
                if let Decision::Pass { state: Some(next) } = decision {
                    let key = (next.anchor_unix_millis, next.window);
                    proptest::prop_assert!(passed_windows.insert(key), "two passes in {key:?}");
                    state = Some(next);
                } else {
                    let s = state.as_ref().unwrap();
                    proptest::prop_assert_eq!((now - s.anchor_unix_millis) / (5 * MIN), s.window);
                }
            }
        }
    }
}
