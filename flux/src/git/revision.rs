//! Revision → commit SHA (flux-providers §1.1 `GetRevision`, §7.3
//! `parseRevision` over fluxcd/pkg `TransformRevision` and
//! `ExtractHashFromRevision`).

use std::collections::BTreeMap;

use super::GitError;

/// The metadata keys `GetRevision` looks at, in order.
const REVISION_KEYS: [&str; 3] = ["commit", "originRevision", "revision"];

/// The length of a SHA-1 commit hash in hex, the only one accepted.
const SHA1_HEX_LEN: usize = 40;

/// `GetRevision`: the value of the first of `commit`, `originRevision`,
/// `revision` present in the merged (prefix-free) metadata. Presence counts,
/// not non-emptiness: an empty `commit` wins over a set `revision`.
#[must_use]
pub fn revision_of(metadata: &BTreeMap<String, String>) -> Option<&str> {
    REVISION_KEYS
        .iter()
        .find_map(|key| metadata.get(*key))
        .map(String::as_str)
}

/// fluxcd/pkg `TransformRevision`: rewrites a legacy `pointer/hash` revision
/// as `pointer@sha1:hash` (`sha1:hash` without pointer, `HEAD/` dropped).
/// The algorithm is `sha1` for a 40-character hash and `<unknown>`
/// otherwise; an empty hash gives an empty digest. Revisions that are empty
/// or contain a `:` are returned as they are.
#[must_use]
pub fn transform_revision(rev: &str) -> String {
    if rev.is_empty() || rev.contains(':') {
        return rev.to_owned();
    }
    let pointer = named_pointer(rev);
    let hash = extract_hash(rev).unwrap_or("");
    let digest = if hash.is_empty() {
        String::new()
    } else if hash.len() == SHA1_HEX_LEN {
        format!("sha1:{hash}")
    } else {
        format!("<unknown>:{hash}")
    };
    if pointer.is_empty() {
        digest
    } else {
        format!("{pointer}@{digest}")
    }
}

/// fluxcd/pkg `ExtractNamedPointerFromRevision`: the text before the last
/// `@`, else the text before the last `/` unless it is `HEAD`, else "".
fn named_pointer(rev: &str) -> &str {
    if let Some((pointer, _)) = rev.rsplit_once('@') {
        return pointer;
    }
    match rev.rsplit_once('/') {
        Some((pointer, _)) if pointer != "HEAD" => pointer,
        _ => "",
    }
}

/// fluxcd/pkg `ExtractHashFromRevision`: `None` for an empty revision, else
/// the text after the last `:`, else the last `/`-separated segment, else the
/// whole revision.
#[must_use]
pub fn extract_hash(rev: &str) -> Option<&str> {
    if rev.is_empty() {
        return None;
    }
    if let Some((_, hash)) = rev.rsplit_once(':') {
        return Some(hash);
    }
    Some(rev.rsplit_once('/').map_or(rev, |(_, last)| last))
}

/// `parseRevision`: the commit SHA of a revision such as
/// `main@sha1:a1afe267…8c07` or the legacy `main/a1afe267…8c07`.
///
/// Only the length is checked, as Flux does: the extracted hash must be
/// exactly 40 bytes (Go's `len`), so SHA-256 commit ids and OCI digests are
/// rejected and no hex validation takes place.
///
/// # Errors
///
/// [`GitError::CommitHash`] naming the revision as given.
pub fn commit_sha(revision: &str) -> Result<String, GitError> {
    let transformed = transform_revision(revision);
    match extract_hash(&transformed) {
        Some(hash) if hash.len() == SHA1_HEX_LEN => Ok(hash.to_owned()),
        _ => Err(GitError::CommitHash {
            revision: revision.to_owned(),
        }),
    }
}
