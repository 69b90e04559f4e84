//! Writing back to Kubernetes about the Flux `Alert` and `Provider` objects
//! Herald reads: what an operator sees with `kubectl describe` and
//! `kubectl get`.
//!
//! - [`events`]: Kubernetes Events (`events.k8s.io/v1`) about an object,
//!   emitted without blocking, aggregated into one Event with a growing
//!   `series.count` per distinct message, and rate-limited per object, so
//!   that a storm of failures is a handful of writes to the API server.
//! - [`status`]: the `Ready` condition and `observedGeneration` in an
//!   object's `status`, written through its `/status` subresource where the
//!   served version has one (Flux's `v1beta2` Alert and Provider do,
//!   `v1beta3` has no status), and only when it changed.
//! - [`lease`]: which replica writes, through a `coordination.k8s.io/v1`
//!   Lease, so that replicas do not race on the same status.
//!
//! The leader lock is a Kubernetes Lease rather than a JetStream lock because
//! what it guards are writes to that cluster's API server: it lives, and is
//! lost, with the API server it protects, and an operator sees who holds it
//! with `kubectl get lease`. Expiry is judged on the local clock, from when
//! the Lease was last seen to change, so clock skew between nodes does not
//! matter.
//!
//! # Permissions
//!
//! The RBAC these need, for a Herald running as its own service account:
//!
//! - Events: `create` and `patch` on `events` in the `events.k8s.io` group,
//!   in the namespaces of the objects they are about.
//! - Status: `get` on the objects (`alerts`, `providers` in
//!   `notification.toolkit.fluxcd.io`) and `patch` on their `status`
//!   subresource (`alerts/status`, `providers/status`).
//! - Leadership: `get`, `create` and `update` on `leases` in the
//!   `coordination.k8s.io` group, in Herald's own namespace.
//!
//! A write refused for lack of one of these is logged at warn with the
//! permission it needs, and is not retried in a loop.

pub mod events;
pub mod lease;
pub mod status;

pub use events::{EventSettings, EventStats, EventType, ObjectEvents};
pub use lease::{Leadership, LeaseSettings};
pub use status::{Ready, StatusOutcome, StatusWriter};

/// `text` cut to at most `max` bytes on a char boundary; when cut, it ends
/// with `marker` (counted in the `max` bytes).
fn truncate(text: &str, max: usize, marker: &str) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max.saturating_sub(marker.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{marker}", &text[..end])
}

/// The HTTP status of an error the API server answered, if it answered.
fn api_code(error: &kube::Error) -> Option<u16> {
    match error {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::truncate;

    #[test]
    fn truncate_keeps_short_text() {
        assert_eq!(truncate("short", 10, "…"), "short");
        assert_eq!(truncate("exactly10!", 10, "…"), "exactly10!");
    }

    #[test]
    fn truncate_cuts_on_a_char_boundary() {
        let text = "é".repeat(20); // 40 bytes
        let cut = truncate(&text, 10, "…");
        assert!(cut.len() <= 10, "{cut}");
        assert!(cut.ends_with('…'));
        assert_eq!(cut, format!("{}…", "é".repeat(3)));
        assert_eq!(truncate("abcdef", 3, ""), "abc");
    }
}
