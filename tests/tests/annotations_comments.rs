//! Grafana annotations, GitHub repository dispatches and pull request
//! comments, end to end through Herald to fakes on loopback.

use herald_proto::{DeadLetter, names};
use herald_tests::eventually;
use herald_tests::fake::FakeServer;
use herald_tests::fake::github::{self, FakeGitHub};
use herald_tests::herald::{TestHerald, config_dir};
use herald_tests::nats::TestNats;
use prost::Message as _;

const UID: &str = "0c9c2e41-d2f9-4f9b-9c41-bebc1984d67a";

fn event(name: &str, message: &str, timestamp: &str, change_request: Option<&str>) -> String {
    let change_request = change_request
        .map(|n| format!(r#","event.toolkit.fluxcd.io/change_request":"{n}""#))
        .unwrap_or_default();
    format!(
        r#"{{"involvedObject":{{"kind":"Kustomization","namespace":"flux-system","name":"{name}","apiVersion":"kustomize.toolkit.fluxcd.io/v1"}},
            "severity":"info","reason":"ReconciliationSucceeded","message":"{message}","timestamp":"{timestamp}",
            "metadata":{{"kustomize.toolkit.fluxcd.io/revision":"main@sha1:67e2c98a60dc92283531412a9e604dd4bae005a9"{change_request}}},
            "reportingController":"kustomize-controller"}}"#
    )
}

fn provider(name: &str, provider_type: &str, address: &str, secret: &str) -> String {
    format!(
        "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Provider\n\
         metadata: {{name: {name}, namespace: flux-system, uid: {UID}}}\n\
         spec: {{type: {provider_type}, address: '{address}', secretRef: {{name: {name}-secret}}}}\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}-secret, namespace: flux-system}}\nstringData: {secret}\n---\n\
         apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Alert\nmetadata: {{name: {name}, namespace: flux-system}}\n\
         spec: {{providerRef: {{name: {name}}}, eventSources: [{{kind: Kustomization, name: '*'}}]}}\n---\n"
    )
}

async fn dead_letters(nats: &TestNats) -> Vec<DeadLetter> {
    let js = nats.jetstream().await;
    let stream = js
        .get_stream(names::DEAD_STREAM)
        .await
        .expect("dead stream");
    let count = nats.stream_messages(names::DEAD_STREAM).await;
    let mut out = Vec::new();
    for seq in 1..=count {
        if let Ok(message) = stream.get_raw_message(seq).await {
            out.push(DeadLetter::decode(message.payload).expect("dead letter"));
        }
    }
    out
}

#[tokio::test]
async fn grafana_annotation_arrives_with_its_body_and_token() {
    let nats = TestNats::start().await;
    let grafana = FakeServer::webhook().await;
    let dir = config_dir(&provider(
        "grafana",
        "grafana",
        &grafana.url("/api/annotations"),
        "{token: glsa-test}",
    ));
    let herald = TestHerald::start(nats.url(), dir.path()).await;
    let sent = event("apps", "Applied revision", "2024-01-01T10:00:00Z", None);
    assert_eq!(herald.post(sent).await.0, 202);
    let requests = grafana.wait_for(1).await;
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/api/annotations");
    assert_eq!(
        request.header("authorization").as_deref(),
        Some("Bearer glsa-test")
    );
    assert_eq!(
        request.header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(
        String::from_utf8(request.body.to_vec()).unwrap(),
        r#"{"when":1704103200,"text":"kustomization/apps.flux-system","tags":["flux","kustomize-controller","revision: main@sha1|67e2c98a60dc92283531412a9e604dd4bae005a9","kind: Kustomization","name: apps","namespace: flux-system"]}"#
    );
    herald.shutdown().await;
}

#[tokio::test]
async fn grafana_uses_basic_auth_without_a_token() {
    let nats = TestNats::start().await;
    let grafana = FakeServer::webhook().await;
    let dir = config_dir(&provider(
        "grafana",
        "grafana",
        &grafana.url("/api/annotations"),
        "{username: admin, password: secret}",
    ));
    let herald = TestHerald::start(nats.url(), dir.path()).await;
    let sent = event("apps", "Applied revision", "2024-01-01T10:00:00Z", None);
    assert_eq!(herald.post(sent).await.0, 202);
    let requests = grafana.wait_for(1).await;
    assert_eq!(
        requests[0].header("authorization").as_deref(),
        Some("Basic YWRtaW46c2VjcmV0")
    );
    herald.shutdown().await;
}

#[tokio::test]
async fn github_dispatch_carries_the_event() {
    let nats = TestNats::start().await;
    let github = FakeGitHub::start().await;
    let dir = config_dir(&provider(
        "dispatch",
        "githubdispatch",
        &github.url("/org/podinfo"),
        &format!("{{token: {}}}", github::TOKEN),
    ));
    let herald = TestHerald::start(nats.url(), dir.path()).await;
    let sent = event("apps", "Applied revision", "2024-01-01T10:00:00Z", None);
    assert_eq!(herald.post(sent).await.0, 202);
    let request = eventually("a dispatch", || async {
        github
            .requests()
            .into_iter()
            .find(|r| r.path.ends_with("/dispatches"))
    })
    .await;
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/api/v3/repos/org/podinfo/dispatches");
    assert_eq!(request.answered, 204);
    assert_eq!(
        request.header("authorization").as_deref(),
        Some("Bearer ghp-test")
    );
    assert_eq!(
        request.header("x-github-api-version").as_deref(),
        Some("2022-11-28")
    );
    let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(body["event_type"], "Kustomization/apps.flux-system");
    assert_eq!(
        body["client_payload"],
        serde_json::json!({
            "involvedObject": {
                "kind": "Kustomization",
                "namespace": "flux-system",
                "name": "apps",
                "apiVersion": "kustomize.toolkit.fluxcd.io/v1"
            },
            "severity": "info",
            "timestamp": "2024-01-01T10:00:00Z",
            "message": "Applied revision",
            "reason": "ReconciliationSucceeded",
            "metadata": {"revision": "main@sha1:67e2c98a60dc92283531412a9e604dd4bae005a9"},
            "reportingController": "kustomize-controller"
        })
    );
    assert!(request.text().ends_with("}\n"));
    herald.shutdown().await;
}

#[tokio::test]
async fn a_pull_request_comment_is_created_then_edited() {
    let nats = TestNats::start().await;
    let github = FakeGitHub::start().await;
    let dir = config_dir(&provider(
        "comments",
        "githubpullrequestcomment",
        &github.url("/org/podinfo.git"),
        &format!("{{username: git, password: {}}}", github::TOKEN),
    ));
    let marker = format!("<!-- flux-pr-comment-key:{UID}/Kustomization/flux-system/apps -->");
    // Someone else quoted the marker: their comment is never edited.
    github.seed("org/podinfo", 7, "someone", &format!("see {marker}"));
    let herald = TestHerald::start(nats.url(), dir.path()).await;
    let body = |message: &str| {
        format!(
            "{marker}\n\n## Flux Status\n\n\u{2139}\u{fe0f} Kustomization/flux-system/apps\n\n{message}\n\n\
             Metadata:\n* `revision`: main@sha1:67e2c98a60dc92283531412a9e604dd4bae005a9\n"
        )
    };
    let ours = |comments: Vec<serde_json::Value>| {
        comments
            .into_iter()
            .filter(|c| c["user"]["login"] == github::LOGIN)
            .collect::<Vec<_>>()
    };

    let first = event(
        "apps",
        "Applied revision one",
        "2024-01-01T10:00:00Z",
        Some("7"),
    );
    assert_eq!(herald.post(first).await.0, 202);
    let created = eventually("the comment is created", || async {
        let mine = ours(github.comments("org/podinfo", 7));
        (!mine.is_empty()).then_some(mine)
    })
    .await;
    assert_eq!(created.len(), 1);
    assert_eq!(created[0]["body"], body("Applied revision one"));
    let list = github
        .requests()
        .into_iter()
        .find(|r| r.method == "GET" && r.path.ends_with("/comments"))
        .unwrap();
    assert_eq!(list.path, "/api/v3/repos/org/podinfo/issues/7/comments");
    assert_eq!(list.query, "direction=asc&per_page=100&sort=created");
    let create = github
        .requests()
        .into_iter()
        .find(|r| r.method == "POST")
        .unwrap();
    assert_eq!(create.path, "/api/v3/repos/org/podinfo/issues/7/comments");
    assert_eq!(
        create.header("authorization").as_deref(),
        Some("Bearer ghp-test")
    );

    let second = event(
        "apps",
        "Applied revision two",
        "2024-01-01T10:05:00Z",
        Some("7"),
    );
    assert_eq!(herald.post(second).await.0, 202);
    let id = created[0]["id"].clone();
    eventually("the comment is edited", || async {
        let mine = ours(github.comments("org/podinfo", 7));
        (mine.len() == 1 && mine[0]["body"] == body("Applied revision two")).then_some(())
    })
    .await;
    let comments = github.comments("org/podinfo", 7);
    assert_eq!(comments.len(), 2, "edited, not duplicated: {comments:?}");
    assert_eq!(comments[0]["body"], format!("see {marker}"));
    assert_eq!(comments[1]["id"], id);
    let edit = github
        .requests()
        .into_iter()
        .find(|r| r.method == "PATCH")
        .unwrap();
    assert_eq!(
        edit.path,
        format!("/api/v3/repos/org/podinfo/issues/comments/{id}")
    );
    assert_eq!(edit.answered, 200);
    assert_eq!(
        edit.header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(
        github
            .requests()
            .iter()
            .filter(|r| r.method == "POST")
            .count(),
        1
    );

    // Events without a change request are not commented.
    let plain = event("apps", "No pull request", "2024-01-01T10:06:00Z", None);
    assert_eq!(herald.post(plain).await.0, 202);
    eventually("the event is dropped", || async {
        herald
            .admin("/metrics")
            .await
            .1
            .contains("missing_change_request")
            .then_some(())
    })
    .await;
    assert_eq!(ours(github.comments("org/podinfo", 7)).len(), 1);
    herald.shutdown().await;
}

#[tokio::test]
async fn a_rejected_token_is_a_dead_letter_with_the_hosts_message() {
    let nats = TestNats::start().await;
    let github = FakeGitHub::start().await;
    let dir = config_dir(&provider(
        "comments",
        "githubpullrequestcomment",
        &github.url("/org/podinfo"),
        "{token: ghp-wrong}",
    ));
    let herald = TestHerald::start(nats.url(), dir.path()).await;
    let sent = event("apps", "Applied", "2024-01-01T10:00:00Z", Some("7"));
    assert_eq!(herald.post(sent).await.0, 202);
    let dead = eventually("a dead letter", || async {
        let dead = dead_letters(&nats).await;
        (!dead.is_empty()).then_some(dead)
    })
    .await;
    assert_eq!(
        dead[0].reason,
        "could not look up the token's user: destination answered 401: Bad credentials"
    );
    assert!(!format!("{:?}", dead[0]).contains("ghp-wrong"));
    assert_eq!(github.requests().len(), 1, "a 401 is not retried");
    assert!(github.comments("org/podinfo", 7).is_empty());
    herald.shutdown().await;
}
