//! Commit statuses on a fake GitLab and a fake Gitea: green after a
//! successful reconciliation, red after a failure, never back to green for
//! an older event, not written again when unchanged, and dead with the
//! host's message when the token is refused.

use herald_tests::fake::Reply;
use herald_tests::fake::gitea::{self, FakeGitea};
use herald_tests::fake::gitlab::{self, FakeGitLab};
use herald_tests::herald::{TestHerald, config_dir};
use herald_tests::nats::TestNats;

const SHA: &str = "67e2c98a60dc92283531412a9e604dd4bae005a9";
const UID: &str = "0c9c2e41-d2f9-4f9b-9c41-bebc1984d67a";
const CONTEXT: &str = "kustomization/apps/0c9c2e41";

/// A Kustomization event for `name`.
fn event(name: &str, severity: &str, reason: &str, timestamp: &str, update: bool) -> String {
    let update = if update {
        r#","kustomize.toolkit.fluxcd.io/commit_status":"update""#
    } else {
        ""
    };
    format!(
        r#"{{"involvedObject":{{"kind":"Kustomization","namespace":"flux-system","name":"{name}","apiVersion":"kustomize.toolkit.fluxcd.io/v1"}},
            "severity":"{severity}","reason":"{reason}","message":"{reason} at {timestamp}","timestamp":"{timestamp}",
            "metadata":{{"kustomize.toolkit.fluxcd.io/revision":"main@sha1:{SHA}"{update}}},
            "reportingController":"kustomize-controller"}}"#
    )
}

/// A Provider of `type_` at `address` with `token`, and an Alert sending it
/// the events of Kustomization `object`.
fn provider(
    name: &str,
    uid: &str,
    type_: &str,
    address: &str,
    token: &str,
    object: &str,
) -> String {
    format!(
        "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Provider\n\
         metadata: {{name: {name}, namespace: flux-system, uid: {uid}}}\n\
         spec: {{type: {type_}, address: '{address}', secretRef: {{name: {name}-token}}}}\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}-token, namespace: flux-system}}\n\
         stringData: {{token: {token}}}\n---\n\
         apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Alert\n\
         metadata: {{name: {name}, namespace: flux-system}}\n\
         spec: {{providerRef: {{name: {name}}}, eventSources: [{{kind: Kustomization, name: {object}}}]}}\n"
    )
}

/// Waits until Herald counts `n` deliveries of `type_` with `outcome`.
async fn counted(herald: &TestHerald, type_: &str, outcome: &str, n: u32) {
    let line = format!(
        r#"herald_deliveries_total{{provider_type="{type_}",outcome="{outcome}",cluster="test"}} {n}"#
    );
    herald_tests::eventually(&line, || async {
        herald
            .admin("/metrics")
            .await
            .1
            .contains(&line)
            .then_some(())
    })
    .await;
}

/// Posts `body` to ingest, which must accept it.
async fn post(herald: &TestHerald, body: String) {
    assert_eq!(herald.post(body).await.0, 202);
}

/// The only dead letter's reason, checked to hold no `secret`.
async fn dead_reason(nats: &TestNats, secret: &str) -> String {
    let js = nats.jetstream().await;
    let stream = js
        .get_stream(herald_proto::names::DEAD_STREAM)
        .await
        .unwrap();
    let letter = stream.get_raw_message(1).await.unwrap();
    let letter = <herald_proto::DeadLetter as prost::Message>::decode(letter.payload).unwrap();
    assert!(!format!("{letter:?}").contains(secret));
    letter.reason
}

#[tokio::test]
async fn gitlab_statuses_turn_green_then_red_and_never_go_back() {
    herald_tests::init();
    let nats = TestNats::start().await;
    let gitlab = FakeGitLab::start(&["group/sub/podinfo", "group/broken"]).await;
    let manifests = format!(
        "{}---\n{}",
        provider(
            "gitlab",
            UID,
            "gitlab",
            &gitlab.url("/group/sub/podinfo.git"),
            gitlab::TOKEN,
            "apps"
        ),
        provider(
            "gitlab-bad",
            "11111111-2222",
            "gitlab",
            &gitlab.url("/group/broken.git"),
            "glpat-wrong",
            "broken"
        ),
    );
    let dir = config_dir(&manifests);
    let herald = TestHerald::start(nats.url(), dir.path()).await;
    let current = || {
        gitlab
            .statuses("group/sub/podinfo", SHA)
            .first()
            .map(|s| (s["status"].to_string(), s["description"].to_string()))
    };
    let is =
        |state: &str, description: &str| Some((format!("{state:?}"), format!("{description:?}")));
    let posts = || {
        gitlab
            .requests()
            .iter()
            .filter(|r| r.method == "POST")
            .count()
    };

    // A successful reconciliation: green, on a project in a sub-group.
    post(
        &herald,
        event(
            "apps",
            "info",
            "ReconciliationSucceeded",
            "2024-01-01T10:00:00Z",
            true,
        ),
    )
    .await;
    counted(&herald, "gitlab", "delivered", 1).await;
    assert_eq!(current(), is("success", "reconciliation succeeded"));
    let requests = gitlab.requests();
    let [list, create] = requests.as_slice() else {
        panic!("one list and one create: {requests:?}");
    };
    assert_eq!(list.method, "GET");
    assert_eq!(
        list.path,
        format!("/api/v4/projects/group%2Fsub%2Fpodinfo/repository/commits/{SHA}/statuses")
    );
    assert_eq!(list.query, "name=kustomization%2Fapps%2F0c9c2e41");
    assert_eq!(create.method, "POST");
    assert_eq!(
        create.path,
        format!("/api/v4/projects/group%2Fsub%2Fpodinfo/statuses/{SHA}")
    );
    assert_eq!(
        create.text(),
        format!(
            r#"{{"state":"success","name":"{CONTEXT}","description":"reconciliation succeeded"}}"#
        )
    );
    for request in [list, create] {
        assert_eq!(
            request.header("private-token").as_deref(),
            Some(gitlab::TOKEN)
        );
        assert_eq!(request.header("authorization"), None);
        assert_eq!(
            request.header("accept").as_deref(),
            Some("application/json")
        );
    }
    assert_eq!(
        create.header("content-type").as_deref(),
        Some("application/json")
    );

    // A later failure, after GitLab's rate limit: red.
    gitlab.script([Reply::status(429)
        .header("retry-after", "0")
        .header("ratelimit-remaining", "0")]);
    post(
        &herald,
        event(
            "apps",
            "error",
            "BuildFailed",
            "2024-01-01T10:05:00Z",
            false,
        ),
    )
    .await;
    counted(&herald, "gitlab", "delivered", 2).await;
    assert_eq!(current(), is("failed", "build failed"));
    assert!(gitlab.requests().iter().any(|r| r.answered == 429));

    // The older success delivered again (another emission): not green again.
    post(
        &herald,
        event(
            "apps",
            "info",
            "ReconciliationSucceeded",
            "2024-01-01T10:00:01Z",
            true,
        ),
    )
    .await;
    counted(&herald, "gitlab", "superseded", 1).await;
    assert_eq!(current(), is("failed", "build failed"));

    // The same failure again, newer: listed, equal, not written twice.
    let before = posts();
    post(
        &herald,
        event(
            "apps",
            "error",
            "BuildFailed",
            "2024-01-01T10:06:00Z",
            false,
        ),
    )
    .await;
    counted(&herald, "gitlab", "delivered", 3).await;
    assert_eq!(posts(), before, "an unchanged status is not written again");
    assert_eq!(gitlab.statuses("group/sub/podinfo", SHA).len(), 2);

    // A refused token: dead at once, with GitLab's message.
    post(
        &herald,
        event(
            "broken",
            "error",
            "BuildFailed",
            "2024-01-01T11:00:00Z",
            false,
        ),
    )
    .await;
    counted(&herald, "gitlab", "dead", 1).await;
    assert_eq!(
        dead_reason(&nats, "glpat-wrong").await,
        "unable to list commit status: destination answered 401: 401 Unauthorized"
    );
    assert!(gitlab.statuses("group/broken", SHA).is_empty());
    herald.shutdown().await;
}

#[tokio::test]
async fn gitea_statuses_go_pending_green_red_and_never_back() {
    herald_tests::init();
    let nats = TestNats::start().await;
    let gitea = FakeGitea::start(&["org/podinfo", "org/broken"]).await;
    let manifests = format!(
        "{}---\n{}",
        provider(
            "gitea",
            UID,
            "gitea",
            &gitea.url("/org/podinfo.git"),
            gitea::TOKEN,
            "apps"
        ),
        provider(
            "gitea-bad",
            "11111111-2222",
            "gitea",
            &gitea.url("/org/broken.git"),
            "gitea-wrong",
            "broken"
        ),
    );
    let dir = config_dir(&manifests);
    let herald = TestHerald::start(nats.url(), dir.path()).await;
    let current = || {
        gitea
            .statuses("org/podinfo", SHA)
            .first()
            .map(|s| (s["status"].to_string(), s["description"].to_string()))
    };
    let is =
        |state: &str, description: &str| Some((format!("{state:?}"), format!("{description:?}")));
    let posts = || {
        gitea
            .requests()
            .iter()
            .filter(|r| r.method == "POST")
            .count()
    };

    // Progressing: Gitea, unlike the other hosts, gets `pending`.
    post(
        &herald,
        event("apps", "info", "Progressing", "2024-01-01T09:59:00Z", true),
    )
    .await;
    counted(&herald, "gitea", "delivered", 1).await;
    assert_eq!(current(), is("pending", "progressing"));
    let requests = gitea.requests();
    let [list, create] = requests.as_slice() else {
        panic!("one list and one create: {requests:?}");
    };
    assert_eq!(list.method, "GET");
    assert_eq!(
        list.path,
        format!("/api/v1/repos/org/podinfo/commits/{SHA}/statuses")
    );
    assert_eq!(list.query, "limit=50&page=1");
    assert_eq!(create.method, "POST");
    assert_eq!(
        create.path,
        format!("/api/v1/repos/org/podinfo/statuses/{SHA}")
    );
    assert_eq!(
        create.text(),
        format!(
            r#"{{"state":"pending","target_url":"","description":"progressing","context":"{CONTEXT}"}}"#
        )
    );
    for request in [list, create] {
        assert_eq!(
            request.header("authorization").as_deref(),
            Some(format!("token {}", gitea::TOKEN).as_str())
        );
        assert_eq!(
            request.header("content-type").as_deref(),
            Some("application/json")
        );
    }

    // A successful reconciliation: green.
    post(
        &herald,
        event(
            "apps",
            "info",
            "ReconciliationSucceeded",
            "2024-01-01T10:00:00Z",
            true,
        ),
    )
    .await;
    counted(&herald, "gitea", "delivered", 2).await;
    assert_eq!(current(), is("success", "reconciliation succeeded"));

    // A later failure: red.
    post(
        &herald,
        event(
            "apps",
            "error",
            "BuildFailed",
            "2024-01-01T10:05:00Z",
            false,
        ),
    )
    .await;
    counted(&herald, "gitea", "delivered", 3).await;
    assert_eq!(current(), is("failure", "build failed"));

    // The older success delivered again (another emission): not green again.
    post(
        &herald,
        event(
            "apps",
            "info",
            "ReconciliationSucceeded",
            "2024-01-01T10:00:01Z",
            true,
        ),
    )
    .await;
    counted(&herald, "gitea", "superseded", 1).await;
    assert_eq!(current(), is("failure", "build failed"));

    // The same failure again, newer: listed, equal, not written twice.
    let before = posts();
    post(
        &herald,
        event(
            "apps",
            "error",
            "BuildFailed",
            "2024-01-01T10:06:00Z",
            false,
        ),
    )
    .await;
    counted(&herald, "gitea", "delivered", 4).await;
    assert_eq!(posts(), before, "an unchanged status is not written again");
    assert_eq!(gitea.statuses("org/podinfo", SHA).len(), 3);

    // A refused token: dead at once, with Gitea's message.
    post(
        &herald,
        event(
            "broken",
            "error",
            "BuildFailed",
            "2024-01-01T11:00:00Z",
            false,
        ),
    )
    .await;
    counted(&herald, "gitea", "dead", 1).await;
    assert_eq!(
        dead_reason(&nats, "gitea-wrong").await,
        "could not list commit statuses: destination answered 401: token is required"
    );
    assert!(gitea.statuses("org/broken", SHA).is_empty());
    herald.shutdown().await;
}
