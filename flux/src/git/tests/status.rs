use std::collections::BTreeMap;

use super::event;
use crate::git::{
    CommitState, GitHost, azure_devops_genre, bitbucket_server_status_name, bitbucket_status_name,
    commit_state, default_commit_status, sha1_hex, skips_event, status_key,
};

#[test]
fn provider_types_name_the_six_hosts() {
    for host in GitHost::ALL {
        assert_eq!(
            GitHost::from_provider_type(host.provider_type()),
            Some(host)
        );
        assert_eq!(host.to_string(), host.provider_type());
    }
    let types: Vec<_> = GitHost::ALL.iter().map(|h| h.provider_type()).collect();
    let commit_status: Vec<_> = crate::ProviderType::ALL
        .iter()
        .filter(|t| t.is_commit_status())
        .map(|t| t.as_str())
        .collect();
    assert_eq!(types, commit_status);
    assert_eq!(GitHost::from_provider_type("githubdispatch"), None);
    assert_eq!(GitHost::from_provider_type("GitHub"), None);
}

#[test]
fn states_follow_the_document_table() {
    // flux-providers §7.5: (host, info, error, Progressing, other severities).
    let table = [
        (
            GitHost::GitHub,
            "success",
            "failure",
            None,
            "can't convert to github state",
        ),
        (
            GitHost::GitLab,
            "success",
            "failed",
            None,
            "can't convert to gitlab state",
        ),
        (
            GitHost::Gitea,
            "success",
            "failure",
            Some("pending"),
            "can't convert to gitea state",
        ),
        (
            GitHost::Bitbucket,
            "SUCCESSFUL",
            "FAILED",
            None,
            "can't convert to bitbucket state",
        ),
        (
            GitHost::BitbucketServer,
            "SUCCESSFUL",
            "FAILED",
            None,
            "couldn't convert to bitbucket server state: bitbucket server state generated on info or error events only",
        ),
        (
            GitHost::AzureDevOps,
            "succeeded",
            "error",
            None,
            "can't convert to azure devops state",
        ),
    ];
    let spell = |host, severity, reason| {
        commit_state(host, severity, reason).map(|state| state.map(|s| s.as_str(host)))
    };
    for (host, info, error, progressing, unsupported) in table {
        assert_eq!(
            spell(host, "info", "ReconciliationSucceeded"),
            Ok(Some(info)),
            "{host}"
        );
        assert_eq!(
            spell(host, "error", "ReconciliationFailed"),
            Ok(Some(error)),
            "{host}"
        );
        // Progressing is checked before the severity, whatever it is.
        for severity in ["info", "error", "trace"] {
            assert_eq!(
                spell(host, severity, "Progressing"),
                Ok(progressing),
                "{host}"
            );
        }
        assert_eq!(
            skips_event(host, "Progressing"),
            progressing.is_none(),
            "{host}"
        );
        for severity in ["trace", "warning", ""] {
            let err = commit_state(host, severity, "Succeeded").unwrap_err();
            assert_eq!(err.to_string(), unsupported, "{host} {severity:?}");
        }
        // ProgressingWithRetry is a different reason and is not skipped.
        assert!(!skips_event(host, "ProgressingWithRetry"));
        assert_eq!(
            spell(host, "error", "ProgressingWithRetry"),
            Ok(Some(error))
        );
    }
    assert_eq!(CommitState::Pending.as_str(GitHost::Gitea), "pending");
}

#[test]
fn the_default_identifier_is_kind_name_and_uid_head() {
    // flux-providers §7.2 (asserted).
    let e = event(
        "Kustomization",
        "flux-system",
        "gitops-system",
        "ApplySucceeded",
        &[],
    );
    let uid = "0c9c2e41-d2f9-4f9b-9c41-bebc1984d67a";
    assert_eq!(
        default_commit_status(uid, &e),
        "kustomization/gitops-system/0c9c2e41"
    );
    // The namespace is not part of it; the UID head is lower-cased too.
    let other = event(
        "Kustomization",
        "other",
        "gitops-system",
        "ApplySucceeded",
        &[],
    );
    assert_eq!(
        default_commit_status(uid, &other),
        "kustomization/gitops-system/0c9c2e41"
    );
    assert_eq!(
        default_commit_status("ABC", &e),
        "kustomization/gitops-system/abc"
    );
    assert_eq!(
        default_commit_status("", &e),
        "kustomization/gitops-system/"
    );
}

#[test]
fn hosts_carry_the_identifier_as_the_document_says() {
    // flux-providers §7.2 table.
    let id = "kustomization/gitops-system/0c9c2e41";
    for host in [
        GitHost::GitHub,
        GitHost::GitLab,
        GitHost::Gitea,
        GitHost::AzureDevOps,
    ] {
        assert_eq!(status_key(host, id), id, "{host}");
    }
    for host in [GitHost::Bitbucket, GitHost::BitbucketServer] {
        let key = status_key(host, id);
        assert_eq!(key, sha1_hex(id));
        assert_eq!(key.len(), 40);
        assert!(
            key.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
    }
    // notification-controller TestUtil_Sha1String.
    assert_eq!(
        sha1_hex("kustomization/namespace-foo-and-service-bar"),
        "12ea142172e98435e16336acbbed8919610922c3"
    );
}

#[test]
fn bitbucket_names_and_azure_genres() {
    let e = event(
        "Kustomization",
        "flux-system",
        "GitOps-System",
        "ApplySucceeded",
        &[],
    );
    assert_eq!(bitbucket_status_name(&e), "kustomization/gitops-system");
    assert_eq!(
        bitbucket_server_status_name(&e),
        "kustomization/gitops-system [apply succeeded]"
    );
    let mut meta = BTreeMap::new();
    assert_eq!(azure_devops_genre(&meta), "fluxcd");
    meta.insert("summary".to_owned(), "prod cluster".to_owned());
    assert_eq!(azure_devops_genre(&meta), "fluxcd:prod cluster");
    meta.insert("summary".to_owned(), String::new());
    assert_eq!(azure_devops_genre(&meta), "fluxcd:");
}
