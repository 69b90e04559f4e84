//! Commit states (flux-providers §7.5), the default commit status identifier
//! and its per-host forms (§7.2, §7.9–7.11).

use std::collections::BTreeMap;

use sha1::{Digest, Sha1};

use super::describe::{go_lowercase, name_and_description};
use super::{GitError, GitHost};
use crate::event::FluxEvent;

/// The reason Flux controllers give while they are still reconciling.
const PROGRESSING: &str = "Progressing";

/// The Azure DevOps status genre.
const AZURE_DEVOPS_GENRE: &str = "fluxcd";

/// A commit state, before it is spelled for a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitState {
    /// An `info` event.
    Success,
    /// An `error` event.
    Failure,
    /// A `Progressing` event; only Gitea posts it.
    Pending,
}

impl CommitState {
    /// The state as `host`'s API spells it: github `success`/`failure`,
    /// gitlab `success`/`failed`, gitea `success`/`failure`/`pending`,
    /// bitbucket and bitbucketserver `SUCCESSFUL`/`FAILED`, azuredevops
    /// `succeeded`/`error`.
    ///
    /// [`commit_state`] yields `Pending` for Gitea only; for the other hosts
    /// it is spelled with their API's in-progress value (`pending`,
    /// `INPROGRESS`), which Flux never sends.
    #[must_use]
    pub fn as_str(self, host: GitHost) -> &'static str {
        use GitHost as H;
        match (self, host) {
            (Self::Success, H::GitHub | H::GitLab | H::Gitea) => "success",
            (Self::Success, H::Bitbucket | H::BitbucketServer) => "SUCCESSFUL",
            (Self::Success, H::AzureDevOps) => "succeeded",
            (Self::Failure, H::GitHub | H::Gitea) => "failure",
            (Self::Failure, H::GitLab) => "failed",
            (Self::Failure, H::Bitbucket | H::BitbucketServer) => "FAILED",
            (Self::Failure, H::AzureDevOps) => "error",
            (Self::Pending, H::Bitbucket | H::BitbucketServer) => "INPROGRESS",
            (Self::Pending, H::GitHub | H::GitLab | H::Gitea | H::AzureDevOps) => "pending",
        }
    }
}

/// Whether `host` skips the event without any request: reason
/// `Progressing` on every host but Gitea. This check comes first, before the
/// revision is looked at. (`ProgressingWithRetry` is not skipped.)
#[must_use]
pub fn skips_event(host: GitHost, reason: &str) -> bool {
    reason == PROGRESSING && host != GitHost::Gitea
}

/// The commit state for an event: `None` when the host skips it
/// ([`skips_event`]), `Pending` for a Gitea `Progressing` event (whatever the
/// severity), else `Success` for `info` and `Failure` for `error`.
///
/// # Errors
///
/// [`GitError::UnsupportedSeverity`] for any other severity, e.g. `trace`.
pub fn commit_state(
    host: GitHost,
    severity: &str,
    reason: &str,
) -> Result<Option<CommitState>, GitError> {
    if skips_event(host, reason) {
        return Ok(None);
    }
    if host == GitHost::Gitea && reason == PROGRESSING {
        return Ok(Some(CommitState::Pending));
    }
    match severity {
        "info" => Ok(Some(CommitState::Success)),
        "error" => Ok(Some(CommitState::Failure)),
        _ => Err(GitError::UnsupportedSeverity(host)),
    }
}

/// The default commit status identifier:
/// `lower("{Kind}/{Name}/{first segment of the Provider UID before '-'}")`,
/// e.g. `kustomization/gitops-system/0c9c2e41`. The namespace is not part of it.
#[must_use]
pub fn default_commit_status(provider_uid: &str, event: &FluxEvent) -> String {
    let uid_head = provider_uid.split('-').next().unwrap_or("");
    let obj = &event.involved_object;
    go_lowercase(&format!("{}/{}/{uid_head}", obj.kind, obj.name))
}

/// Lowercase hex SHA-1 of `s` (40 characters).
#[must_use]
pub fn sha1_hex(s: &str) -> String {
    hex::encode(Sha1::digest(s.as_bytes()))
}

/// The value `host` stores the identifier under: Bitbucket and Bitbucket
/// Server `key` = [`sha1_hex`] of it (Bitbucket keys are limited to 40
/// characters), every other host the identifier verbatim (`context`,
/// `name`, `context.name`).
#[must_use]
pub fn status_key(host: GitHost, identifier: &str) -> String {
    match host {
        GitHost::Bitbucket | GitHost::BitbucketServer => sha1_hex(identifier),
        _ => identifier.to_owned(),
    }
}

/// The Bitbucket Cloud status `name`: `lower(kind/name)`.
#[must_use]
pub fn bitbucket_status_name(event: &FluxEvent) -> String {
    name_and_description(event).0
}

/// The Bitbucket Server status `name`: `"{lower(kind/name)} [{description}]"`,
/// e.g. `kustomization/gitops-system [apply succeeded]`.
#[must_use]
pub fn bitbucket_server_status_name(event: &FluxEvent) -> String {
    let (name, description) = name_and_description(event);
    format!("{name} [{description}]")
}

/// The Azure DevOps status genre: `fluxcd`, or `fluxcd:{summary}` when the
/// merged metadata has a `summary` key (even an empty one).
#[must_use]
pub fn azure_devops_genre(metadata: &BTreeMap<String, String>) -> String {
    match metadata.get("summary") {
        Some(summary) => format!("{AZURE_DEVOPS_GENRE}:{summary}"),
        None => AZURE_DEVOPS_GENRE.to_owned(),
    }
}
