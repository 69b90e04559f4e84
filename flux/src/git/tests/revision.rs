use std::collections::BTreeMap;

use proptest::prelude::*;

use crate::git::{GitError, commit_sha, extract_hash, revision_of, transform_revision};

const SHA: &str = "a1afe267b54f38b46b487f6e938a6fd508278c07";

fn meta(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn revision_lookup_order_is_commit_origin_revision_revision() {
    // flux-providers §1.1 GetRevision.
    let all = meta(&[("commit", "c"), ("originRevision", "o"), ("revision", "r")]);
    assert_eq!(revision_of(&all), Some("c"));
    assert_eq!(
        revision_of(&meta(&[("originRevision", "o"), ("revision", "r")])),
        Some("o")
    );
    assert_eq!(revision_of(&meta(&[("revision", "r")])), Some("r"));
    assert_eq!(revision_of(&meta(&[("summary", "s")])), None);
    // Presence, not non-emptiness.
    assert_eq!(
        revision_of(&meta(&[("commit", ""), ("revision", "r")])),
        Some("")
    );
    // Prefixed keys are not looked at: the metadata is the merged one.
    assert_eq!(
        revision_of(&meta(&[("event.toolkit.fluxcd.io/commit", "c")])),
        None
    );
    assert_eq!(
        GitError::MissingRevision.to_string(),
        "missing revision metadata"
    );
}

#[test]
fn commit_sha_follows_the_document_table() {
    // flux-providers §7.3.
    let oci = format!("v1.0.0@sha256:{}", "d".repeat(64));
    let ok = [
        format!("sha1:{SHA}"),
        format!("master@sha1:{SHA}"),
        format!("environment/dev@sha1:{SHA}"),
        format!("master/{SHA}"),
        format!("environment/dev/{SHA}"),
        format!("HEAD/{SHA}"),
        SHA.to_owned(),
    ];
    for rev in &ok {
        assert_eq!(commit_sha(rev).as_deref(), Ok(SHA), "revision {rev}");
    }
    for rev in ["master", "badhash", oci.as_str(), "", "main@sha1:", "main/"] {
        let err = commit_sha(rev).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("failed to extract commit hash from '{rev}' revision")
        );
    }
}

#[test]
fn only_the_length_is_checked() {
    // No hex validation: any 40 bytes pass; 39, 41 and 64 do not.
    let forty = "z".repeat(40);
    assert_eq!(
        commit_sha(&format!("main@sha1:{forty}")).as_deref(),
        Ok(forty.as_str())
    );
    for len in [39, 41, 64] {
        assert!(commit_sha(&"a".repeat(len)).is_err(), "length {len}");
    }
    // The last `:` wins, whatever the algorithm says.
    assert_eq!(
        commit_sha(&format!("main@sha256:{SHA}")).as_deref(),
        Ok(SHA)
    );
}

#[test]
fn legacy_revisions_are_transformed_first() {
    assert_eq!(
        transform_revision(&format!("main/{SHA}")),
        format!("main@sha1:{SHA}")
    );
    assert_eq!(
        transform_revision(&format!("feature/branch/{SHA}")),
        format!("feature/branch@sha1:{SHA}")
    );
    assert_eq!(
        transform_revision(&format!("HEAD/{SHA}")),
        format!("sha1:{SHA}")
    );
    assert_eq!(transform_revision(SHA), format!("sha1:{SHA}"));
    assert_eq!(transform_revision("main/abc"), "main@<unknown>:abc");
    assert_eq!(transform_revision("main/"), "main@");
    assert_eq!(transform_revision(""), "");
    assert_eq!(transform_revision("main@sha1:abc"), "main@sha1:abc");
    assert_eq!(extract_hash(""), None);
    assert_eq!(extract_hash("a/b/c"), Some("c"));
    assert_eq!(extract_hash("a@sha1:b/c"), Some("b/c"));
}

#[test]
fn an_empty_legacy_hash_leaves_the_pointer_to_be_extracted() {
    // `x/{39}/` becomes `x/{39}@`, whose last segment `{39}@` has 40 bytes:
    // Flux accepts it, and so does Herald.
    let rev = format!("x/{}/", "b".repeat(39));
    assert_eq!(commit_sha(&rev), Ok(format!("{}@", "b".repeat(39))));
}

/// The hash the document describes for a revision that does not end in `/`:
/// the text after the last `:`, else the last `/` segment, else the whole.
fn documented_hash(rev: &str) -> &str {
    match rev.rsplit_once(':') {
        Some((_, hash)) => hash,
        None => rev.rsplit_once('/').map_or(rev, |(_, last)| last),
    }
}

fn revision() -> impl Strategy<Value = String> {
    let prefix = prop::sample::select(vec![
        "",
        "sha1:",
        "main@sha1:",
        "env/dev@sha1:",
        "main/",
        "env/dev/",
        "HEAD/",
        "v1@sha256:",
        "a:b/",
        "x@y/",
        "@",
    ]);
    prop_oneof![
        (prefix, "[0-9a-f]{36,44}").prop_map(|(p, h)| format!("{p}{h}")),
        "[a-z0-9@:/._-]{0,50}",
        any::<String>(),
    ]
}

proptest! {
    #[test]
    fn commit_sha_accepts_exactly_forty_byte_hashes(rev in revision()) {
        let accepted = commit_sha(&rev).is_ok();
        let extracted = extract_hash(&transform_revision(&rev)).map(str::len);
        prop_assert_eq!(accepted, extracted == Some(40));
        if !rev.is_empty() && !rev.ends_with('/') {
            prop_assert_eq!(accepted, documented_hash(&rev).len() == 40);
        }
        if let Ok(sha) = commit_sha(&rev) {
            prop_assert_eq!(sha.len(), 40);
        }
    }
}
