//! Change-request comments (flux-providers §8) and the markdown post they
//! and zulip share (§4.16).

use std::collections::BTreeMap;

use super::GitError;
use super::goquote::quote;
use crate::event::FluxEvent;

/// The merged metadata key carrying the pull/merge request number.
const CHANGE_REQUEST: &str = "change_request";

/// The change-request comment provider types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CommentHost {
    /// `githubpullrequestcomment`.
    GitHubPullRequest,
    /// `gitlabmergerequestcomment`.
    GitLabMergeRequest,
    /// `giteapullrequestcomment`.
    GiteaPullRequest,
}

impl CommentHost {
    /// The host for a Provider `spec.type`, or `None` for other types.
    #[must_use]
    pub fn from_provider_type(provider_type: &str) -> Option<Self> {
        [
            Self::GitHubPullRequest,
            Self::GitLabMergeRequest,
            Self::GiteaPullRequest,
        ]
        .into_iter()
        .find(|host| host.provider_type() == provider_type)
    }

    /// The Provider `spec.type` of this host.
    #[must_use]
    pub fn provider_type(self) -> &'static str {
        match self {
            Self::GitHubPullRequest => "githubpullrequestcomment",
            Self::GitLabMergeRequest => "gitlabmergerequestcomment",
            Self::GiteaPullRequest => "giteapullrequestcomment",
        }
    }

    /// The marker prefix: `flux-pr-comment-key` (GitHub, Gitea) or
    /// `flux-mr-comment-key` (GitLab).
    #[must_use]
    pub fn marker_prefix(self) -> &'static str {
        match self {
            Self::GitHubPullRequest | Self::GiteaPullRequest => "flux-pr-comment-key",
            Self::GitLabMergeRequest => "flux-mr-comment-key",
        }
    }
}

/// The comment key `{providerUID}/{Kind}/{Namespace}/{Name}` (case kept):
/// one comment per Flux object per Provider.
///
/// # Errors
///
/// [`GitError::EmptyProviderUid`] when the Provider has no UID.
pub fn comment_key(provider_uid: &str, event: &FluxEvent) -> Result<String, GitError> {
    if provider_uid.is_empty() {
        return Err(GitError::EmptyProviderUid);
    }
    let obj = &event.involved_object;
    Ok(format!(
        "{provider_uid}/{}/{}/{}",
        obj.kind, obj.namespace, obj.name
    ))
}

/// The hidden marker `<!-- {prefix}:{key} -->` that finds the comment again.
///
/// # Errors
///
/// As [`comment_key`].
pub fn comment_marker(
    host: CommentHost,
    provider_uid: &str,
    event: &FluxEvent,
) -> Result<String, GitError> {
    let key = comment_key(provider_uid, event)?;
    Ok(format!("<!-- {}:{key} -->", host.marker_prefix()))
}

/// The comment body: `{marker}\n\n{markdown post}`.
///
/// # Errors
///
/// As [`comment_key`].
pub fn comment_body(
    host: CommentHost,
    provider_uid: &str,
    event: &FluxEvent,
) -> Result<String, GitError> {
    let marker = comment_marker(host, provider_uid, event)?;
    Ok(format!("{marker}\n\n{}", markdown_post(event)))
}

/// The markdown post (`formatMarkdownPost`):
/// `## Flux Status\n\n{emoji} {Kind}/{Namespace}/{Name}\n\n{message}\n\nMetadata:\n`
/// followed by ``* `{k}`: {v}\n`` per metadata key in sorted order, without
/// `change_request`. The emoji is `⚠️` for `error`, `ℹ️` otherwise.
#[must_use]
pub fn markdown_post(event: &FluxEvent) -> String {
    let emoji = if event.severity == "error" {
        "\u{26a0}\u{fe0f}"
    } else {
        "\u{2139}\u{fe0f}"
    };
    let obj = &event.involved_object;
    let mut post = format!(
        "## Flux Status\n\n{emoji} {}/{}/{}\n\n{}\n\nMetadata:\n",
        obj.kind, obj.namespace, obj.name, event.message
    );
    for (key, value) in &event.metadata {
        if key != CHANGE_REQUEST {
            post.push_str(&format!("* `{key}`: {value}\n"));
        }
    }
    post
}

/// The pull/merge request number from the merged metadata, parsed as Go's
/// `strconv.Atoi` does (optional sign, decimal digits, 64 bits).
///
/// # Errors
///
/// [`GitError::MissingChangeRequest`] without the key,
/// [`GitError::InvalidChangeRequest`] when the value is not such a number.
pub fn change_request_number(metadata: &BTreeMap<String, String>) -> Result<i64, GitError> {
    let value = metadata
        .get(CHANGE_REQUEST)
        .ok_or(GitError::MissingChangeRequest)?;
    let invalid = |why: &str| GitError::InvalidChangeRequest {
        value: value.clone(),
        reason: format!("strconv.Atoi: parsing {}: {why}", quote(value)),
    };
    let digits = value.strip_prefix(['+', '-']).unwrap_or(value);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid("invalid syntax"));
    }
    // Only the sign and ASCII digits are left, so the one failure is range.
    value
        .parse::<i64>()
        .map_err(|_| invalid("value out of range"))
}
