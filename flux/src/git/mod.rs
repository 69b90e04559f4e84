//! The pure building blocks of the git-host providers: the six commit-status
//! providers (`github`, `gitlab`, `gitea`, `bitbucket`, `bitbucketserver`,
//! `azuredevops`) and the three change-request comment providers.
//!
//! Everything here mirrors the notification-controller (flux-providers §3.5,
//! §3.7, §4.16, §7, §8): the reason description, revision → commit SHA, the
//! repository address parsers, the state mapping, the commit status
//! identifier (including `spec.commitStatusExpr` in CEL) and its per-host
//! forms, and the change-request comment key, marker and body. Nothing here
//! talks to a network.

mod address;
mod bitbucket_server;
mod comment;
mod describe;
mod goquote;
mod gourl;
mod revision;
mod status;
mod status_expr;
mod undeclared;

#[cfg(test)]
mod tests;

use std::fmt;

pub use address::{AzureDevOpsRepo, GitAddress, gitlab_path_escape, parse_git_address};
pub use bitbucket_server::{BitbucketServerAddress, parse_bitbucket_server_address};
pub use comment::{
    CommentHost, change_request_number, comment_body, comment_key, comment_marker, markdown_post,
};
pub use describe::{
    describe_reason, go_lowercase, name_and_description, object_name, split_camelcase,
};
pub use revision::{commit_sha, extract_hash, revision_of, transform_revision};
pub use status::{
    CommitState, azure_devops_genre, bitbucket_server_status_name, bitbucket_status_name,
    commit_state, default_commit_status, sha1_hex, skips_event, status_key,
};
pub use status_expr::{CommitStatusExpr, commit_status_identifier};

/// The commit-status provider types (`spec.type` of a Provider).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GitHost {
    /// `github` (GitHub and GitHub Enterprise).
    GitHub,
    /// `gitlab`.
    GitLab,
    /// `gitea`.
    Gitea,
    /// `bitbucket` (Bitbucket Cloud).
    Bitbucket,
    /// `bitbucketserver` (Bitbucket Server and Data Center).
    BitbucketServer,
    /// `azuredevops`.
    AzureDevOps,
}

impl GitHost {
    /// Every commit-status provider type, in the order of the CRD.
    pub const ALL: [GitHost; 6] = [
        GitHost::GitHub,
        GitHost::GitLab,
        GitHost::Gitea,
        GitHost::BitbucketServer,
        GitHost::Bitbucket,
        GitHost::AzureDevOps,
    ];

    /// The host for a Provider `spec.type`, or `None` when the type does not
    /// set commit statuses.
    #[must_use]
    pub fn from_provider_type(provider_type: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|host| host.provider_type() == provider_type)
    }

    /// The Provider `spec.type` of this host.
    #[must_use]
    pub fn provider_type(self) -> &'static str {
        match self {
            Self::GitHub => "github",
            Self::GitLab => "gitlab",
            Self::Gitea => "gitea",
            Self::Bitbucket => "bitbucket",
            Self::BitbucketServer => "bitbucketserver",
            Self::AzureDevOps => "azuredevops",
        }
    }
}

impl fmt::Display for GitHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.provider_type())
    }
}

/// Why a git-host provider cannot handle an event or an address. The texts
/// are the notification-controller's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GitError {
    /// The merged metadata has none of `commit`, `originRevision`, `revision`.
    #[error("missing revision metadata")]
    MissingRevision,
    /// The revision does not end in a 40-character commit hash.
    #[error("failed to extract commit hash from '{revision}' revision")]
    CommitHash {
        /// The revision as found in the metadata.
        revision: String,
    },
    /// The severity has no commit state on this host (e.g. `trace`).
    #[error("{}", unsupported_severity_text(*.0))]
    UnsupportedSeverity(GitHost),
    /// The repository path does not have the shape the host needs.
    #[error("{}", invalid_repository_id_text(*.host, .id))]
    InvalidRepositoryId {
        /// The host whose rule was broken (it decides the quoting).
        host: GitHost,
        /// The path taken from the address (leading `/` and `.git` removed).
        id: String,
    },
    /// A Bitbucket Server address is not an HTTP(S) clone URL.
    #[error("could not parse git address: {0}")]
    BitbucketServerAddress(String),
    /// The commit status identifier is empty.
    #[error("commit status cannot be empty")]
    EmptyCommitStatus,
    /// `spec.commitStatusExpr` failed to compile, to evaluate, or did not
    /// return a string; the message says which.
    #[error("failed to evaluate the spec.commitStatusExpr CEL expression for the event: {0}")]
    CommitStatusExpr(String),
    /// A change-request comment provider was built without a Provider UID.
    #[error("provider UID cannot be empty")]
    EmptyProviderUid,
    /// The merged metadata lacks `change_request`.
    #[error("missing \"change_request\" metadata key")]
    MissingChangeRequest,
    /// `change_request` is not a decimal number; `reason` is Go's
    /// `strconv.Atoi` error text.
    #[error("invalid \"change_request\" metadata value {}: {reason}", goquote::quote(.value))]
    InvalidChangeRequest {
        /// The metadata value.
        value: String,
        /// Why it is not a number, as Go words it.
        reason: String,
    },
}

fn unsupported_severity_text(host: GitHost) -> &'static str {
    match host {
        GitHost::GitHub => "can't convert to github state",
        GitHost::GitLab => "can't convert to gitlab state",
        GitHost::Gitea => "can't convert to gitea state",
        GitHost::Bitbucket => "can't convert to bitbucket state",
        GitHost::BitbucketServer => {
            "couldn't convert to bitbucket server state: bitbucket server state generated on info or error events only"
        }
        GitHost::AzureDevOps => "can't convert to azure devops state",
    }
}

fn invalid_repository_id_text(host: GitHost, id: &str) -> String {
    match host {
        GitHost::GitHub => format!("invalid repository id: '{id}'"),
        GitHost::BitbucketServer => format!(
            "could not parse git address: invalid repository id {}",
            goquote::quote(id)
        ),
        _ => format!("invalid repository id {}", goquote::quote(id)),
    }
}
