//! Tests of the git-host building blocks: every table and example of
//! flux-providers §3.5, §3.7, §4.16, §7 and §8, plus properties.

mod address;
mod bitbucket_server;
mod comment;
mod describe;
mod revision;
mod status;
mod status_expr;

use crate::event::FluxEvent;

/// An event about `Kind/namespace/name` with the given reason and metadata.
fn event(
    kind: &str,
    namespace: &str,
    name: &str,
    reason: &str,
    meta: &[(&str, &str)],
) -> FluxEvent {
    let mut e = FluxEvent::default();
    e.involved_object.kind = kind.into();
    e.involved_object.namespace = namespace.into();
    e.involved_object.name = name.into();
    e.involved_object.api_version = "kustomize.toolkit.fluxcd.io/v1".into();
    e.severity = "info".into();
    e.reason = reason.into();
    e.message = "Applied revision: main@sha1:a1afe267b54f38b46b487f6e938a6fd508278c07".into();
    e.reporting_controller = "kustomize-controller".into();
    e.metadata = meta
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    e
}
