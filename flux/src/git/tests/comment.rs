use std::collections::BTreeMap;

use super::event;
use crate::git::{
    CommentHost, GitError, change_request_number, comment_body, comment_key, comment_marker,
    markdown_post,
};

const UID: &str = "0c9c2e41-d2f9-4f9b-9c41-bebc1984d67a";

#[test]
fn keys_and_markers_follow_the_document() {
    // flux-providers §8.
    let e = event(
        "Kustomization",
        "flux-system",
        "apps",
        "ReconciliationSucceeded",
        &[],
    );
    let key = format!("{UID}/Kustomization/flux-system/apps");
    assert_eq!(comment_key(UID, &e), Ok(key.clone()));
    let table = [
        (
            CommentHost::GitHubPullRequest,
            "githubpullrequestcomment",
            "flux-pr-comment-key",
        ),
        (
            CommentHost::GiteaPullRequest,
            "giteapullrequestcomment",
            "flux-pr-comment-key",
        ),
        (
            CommentHost::GitLabMergeRequest,
            "gitlabmergerequestcomment",
            "flux-mr-comment-key",
        ),
    ];
    for (host, provider_type, prefix) in table {
        assert_eq!(CommentHost::from_provider_type(provider_type), Some(host));
        assert_eq!(host.provider_type(), provider_type);
        assert_eq!(
            comment_marker(host, UID, &e),
            Ok(format!("<!-- {prefix}:{key} -->"))
        );
    }
    assert_eq!(CommentHost::from_provider_type("github"), None);
    assert_eq!(comment_key("", &e), Err(GitError::EmptyProviderUid));
    assert_eq!(
        GitError::EmptyProviderUid.to_string(),
        "provider UID cannot be empty"
    );
}

#[test]
fn markdown_posts_are_byte_exact() {
    // flux-providers §4.16.
    let mut e = event(
        "Kustomization",
        "flux-system",
        "apps",
        "ReconciliationSucceeded",
        &[
            ("revision", "main@sha1:abc"),
            ("change_request", "42"),
            ("app", "web"),
        ],
    );
    e.message = "Reconciliation finished".into();
    let want = "## Flux Status\n\n\u{2139}\u{fe0f} Kustomization/flux-system/apps\n\n\
                Reconciliation finished\n\nMetadata:\n* `app`: web\n* `revision`: main@sha1:abc\n";
    assert_eq!(markdown_post(&e), want);
    assert_eq!(
        comment_body(CommentHost::GitLabMergeRequest, UID, &e),
        Ok(format!(
            "<!-- flux-mr-comment-key:{UID}/Kustomization/flux-system/apps -->\n\n{want}"
        ))
    );

    e.severity = "error".into();
    e.metadata = BTreeMap::new();
    let want = "## Flux Status\n\n\u{26a0}\u{fe0f} Kustomization/flux-system/apps\n\n\
                Reconciliation finished\n\nMetadata:\n";
    assert_eq!(markdown_post(&e), want);
    assert_eq!("⚠️".as_bytes(), b"\xe2\x9a\xa0\xef\xb8\x8f");
    assert_eq!("ℹ️".as_bytes(), b"\xe2\x84\xb9\xef\xb8\x8f");
    // Only `change_request` left: still ends with "Metadata:\n".
    e.metadata.insert("change_request".into(), "1".into());
    assert_eq!(markdown_post(&e), want);
    // Trace renders like info.
    e.severity = "trace".into();
    assert!(markdown_post(&e).contains("\u{2139}\u{fe0f} Kustomization"));
}

#[test]
fn change_request_numbers_parse_like_atoi() {
    let parse = |value: &str| {
        let meta = BTreeMap::from([("change_request".to_owned(), value.to_owned())]);
        change_request_number(&meta).map_err(|e| e.to_string())
    };
    assert_eq!(parse("42"), Ok(42));
    assert_eq!(parse("+7"), Ok(7));
    assert_eq!(parse("-3"), Ok(-3));
    assert_eq!(parse("007"), Ok(7));
    let table = [
        (
            "abc",
            r#"invalid "change_request" metadata value "abc": strconv.Atoi: parsing "abc": invalid syntax"#,
        ),
        (
            "",
            r#"invalid "change_request" metadata value "": strconv.Atoi: parsing "": invalid syntax"#,
        ),
        (
            " 1",
            r#"invalid "change_request" metadata value " 1": strconv.Atoi: parsing " 1": invalid syntax"#,
        ),
        (
            "+",
            r#"invalid "change_request" metadata value "+": strconv.Atoi: parsing "+": invalid syntax"#,
        ),
        (
            "1_000",
            r#"invalid "change_request" metadata value "1_000": strconv.Atoi: parsing "1_000": invalid syntax"#,
        ),
        (
            "99999999999999999999",
            r#"invalid "change_request" metadata value "99999999999999999999": strconv.Atoi: parsing "99999999999999999999": value out of range"#,
        ),
    ];
    for (value, want) in table {
        assert_eq!(parse(value), Err(want.to_owned()), "value {value:?}");
    }
    let missing = change_request_number(&BTreeMap::new()).unwrap_err();
    assert_eq!(
        missing.to_string(),
        r#"missing "change_request" metadata key"#
    );
}
