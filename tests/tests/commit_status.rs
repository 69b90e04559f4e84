//! Commit statuses on a fake GitHub Enterprise: green after a successful
//! reconciliation, red after a failure, never back to green for an older
//! event, and not written again when unchanged.

use std::time::Duration;

use herald_tests::fake::FakeServer;
use herald_tests::fake::github::FakeGitHub;
use herald_tests::herald::{TestHerald, config_dir};
use herald_tests::nats::TestNats;

const SHA: &str = "67e2c98a60dc92283531412a9e604dd4bae005a9";
const UID: &str = "0c9c2e41-d2f9-4f9b-9c41-bebc1984d67a";

fn event(severity: &str, reason: &str, message: &str, timestamp: &str, update: bool) -> String {
    let update = if update {
        r#","kustomize.toolkit.fluxcd.io/commit_status":"update""#
    } else {
        ""
    };
    format!(
        r#"{{"involvedObject":{{"kind":"Kustomization","namespace":"flux-system","name":"apps","apiVersion":"kustomize.toolkit.fluxcd.io/v1"}},
            "severity":"{severity}","reason":"{reason}","message":"{message}","timestamp":"{timestamp}",
            "metadata":{{"kustomize.toolkit.fluxcd.io/revision":"main@sha1:{SHA}"{update}}},
            "reportingController":"kustomize-controller"}}"#
    )
}

fn manifests(github: &FakeServer, expr: &str) -> String {
    format!(
        "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Provider\n\
         metadata: {{name: github, namespace: flux-system, uid: {UID}}}\n\
         spec: {{type: github, address: '{}', secretRef: {{name: github-token}}{expr}}}\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata: {{name: github-token, namespace: flux-system}}\nstringData: {{token: ghp-test}}\n---\n\
         apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Alert\nmetadata: {{name: statuses, namespace: flux-system}}\n\
         spec: {{providerRef: {{name: github}}, eventSources: [{{kind: Kustomization, name: '*'}}]}}\n",
        github.url("/org/podinfo.git")
    )
}

fn posts(github: &FakeServer) -> usize {
    github
        .requests()
        .iter()
        .filter(|r| r.method == "POST")
        .count()
}

#[tokio::test]
async fn statuses_turn_green_then_red_and_never_go_back() {
    let nats = TestNats::start().await;
    let github = FakeGitHub::start().await;
    let dir = config_dir(&manifests(&github, ""));
    let herald = TestHerald::start(nats.url(), dir.path()).await;
    let current = || {
        github.statuses("org/podinfo", SHA).first().map(|s| {
            (
                s["state"].as_str().unwrap().to_owned(),
                s["description"].as_str().unwrap().to_owned(),
            )
        })
    };

    // A successful reconciliation: green.
    let success =
        |message: &str, at: &str| event("info", "ReconciliationSucceeded", message, at, true);
    assert_eq!(
        herald
            .post(success(
                "Reconciliation finished in 2s",
                "2024-01-01T10:00:00Z"
            ))
            .await
            .0,
        202
    );
    herald_tests::eventually("green", || async {
        (current() == Some(("success".into(), "reconciliation succeeded".into()))).then_some(())
    })
    .await;
    let created = github.statuses("org/podinfo", SHA);
    assert_eq!(created[0]["context"], "kustomization/apps/0c9c2e41");
    let post = github
        .requests()
        .into_iter()
        .find(|r| r.method == "POST")
        .unwrap();
    assert_eq!(
        post.path,
        format!("/api/v3/repos/org/podinfo/statuses/{SHA}")
    );
    assert_eq!(
        post.header("authorization").as_deref(),
        Some("Bearer ghp-test")
    );
    assert_eq!(
        post.header("x-github-api-version").as_deref(),
        Some("2022-11-28")
    );
    assert_eq!(
        String::from_utf8(post.body.to_vec()).unwrap(),
        "{\"state\":\"success\",\"description\":\"reconciliation succeeded\",\"context\":\"kustomization/apps/0c9c2e41\"}\n"
    );

    // A later failure: red.
    let failure = |message: &str, at: &str| event("error", "BuildFailed", message, at, false);
    assert_eq!(
        herald
            .post(failure("kustomize build failed", "2024-01-01T10:05:00Z"))
            .await
            .0,
        202
    );
    herald_tests::eventually("red", || async {
        (current() == Some(("failure".into(), "build failed".into()))).then_some(())
    })
    .await;

    // The older success delivered again (another emission of it): not green again.
    assert_eq!(
        herald
            .post(success(
                "Reconciliation finished in 3s",
                "2024-01-01T10:00:01Z"
            ))
            .await
            .0,
        202
    );
    herald_tests::eventually("the older event is superseded", || async {
        herald
            .admin("/metrics")
            .await
            .1
            .contains(r#"herald_deliveries_total{provider_type="github",outcome="superseded",cluster="test"} 1"#)
            .then_some(())
    })
    .await;
    assert_eq!(current(), Some(("failure".into(), "build failed".into())));

    // The same failure again, newer: listed, equal, not written twice.
    let before = posts(&github);
    assert_eq!(
        herald
            .post(failure(
                "kustomize build failed again",
                "2024-01-01T10:06:00Z"
            ))
            .await
            .0,
        202
    );
    herald_tests::eventually("the status was listed", || async {
        let lists = github
            .requests()
            .iter()
            .filter(|r| r.method == "GET")
            .count();
        (lists >= 3).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        posts(&github),
        before,
        "an unchanged status is not written again"
    );
    assert_eq!(github.statuses("org/podinfo", SHA).len(), 2);

    // Progressing events give no status.
    assert_eq!(
        herald
            .post(event(
                "info",
                "Progressing",
                "Service/x created",
                "2024-01-01T10:07:00Z",
                false
            ))
            .await
            .0,
        202
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(github.statuses("org/podinfo", SHA).len(), 2);
    herald.shutdown().await;
}

#[tokio::test]
async fn commit_status_expr_and_host_errors() {
    let nats = TestNats::start().await;
    let github = FakeGitHub::start().await;
    let expr = ", commitStatusExpr: \"(event.involvedObject.kind + '/' + event.involvedObject.name + '/' + provider.metadata.uid.split('-').first().value()).lowerAscii() + '/ci'\"";
    let wrong_token = manifests(&github, "")
        .replace("name: github,", "name: github-bad,")
        .replace("github-token", "bad-token")
        .replace("token: ghp-test", "token: ghp-wrong")
        .replace("name: statuses,", "name: bad,")
        .replace("{name: github}", "{name: github-bad}")
        .replace("name: '*'", "name: broken")
        .replace(&format!("uid: {UID}"), "uid: 11111111-2222");
    let dir = config_dir(&format!(
        "{}---\n{}",
        manifests(&github, expr).replace("name: '*'", "name: apps"),
        wrong_token
    ));
    let herald = TestHerald::start(nats.url(), dir.path()).await;
    assert_eq!(
        herald
            .post(event(
                "error",
                "HealthCheckFailed",
                "timeout",
                "2024-01-01T10:00:00Z",
                false
            ))
            .await
            .0,
        202
    );
    let statuses = herald_tests::eventually("a status", || async {
        let statuses = github.statuses("org/podinfo", SHA);
        (!statuses.is_empty()).then_some(statuses)
    })
    .await;
    assert_eq!(statuses[0]["context"], "kustomization/apps/0c9c2e41/ci");
    assert_eq!(statuses[0]["description"], "health check failed");

    // A Provider with a wrong token: 401 is dead at once, with GitHub's message.
    assert_eq!(
        herald
            .post(
                event("error", "BuildFailed", "bad", "2024-01-01T11:00:00Z", false)
                    .replace("\"name\":\"apps\"", "\"name\":\"broken\"")
            )
            .await
            .0,
        202
    );
    herald_tests::eventually("dead with GitHub's message", || async {
        herald
            .admin("/metrics")
            .await
            .1
            .contains(r#"herald_deliveries_total{provider_type="github",outcome="dead",cluster="test"} 1"#)
            .then_some(())
    })
    .await;
    let js = nats.jetstream().await;
    let stream = js
        .get_stream(herald_proto::names::DEAD_STREAM)
        .await
        .unwrap();
    let letter = stream.get_raw_message(1).await.unwrap();
    let letter = <herald_proto::DeadLetter as prost::Message>::decode(letter.payload).unwrap();
    assert_eq!(
        letter.reason,
        "could not list commit statuses: destination answered 401: Bad credentials"
    );
    assert!(!format!("{letter:?}").contains("ghp-wrong"));
    herald.shutdown().await;
}
