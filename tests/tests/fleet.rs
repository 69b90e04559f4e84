//! Herald serving a fleet: the cluster an event came from named in every
//! notification.

use herald_tests::fake::FakeServer;
use herald_tests::fake::github::FakeGitHub;
use herald_tests::fixtures::{Alert, Event, Provider, Secret};
use herald_tests::herald::{Options, TestHerald, config_dir};
use herald_tests::nats::TestNats;

const NS: &str = "flux-system";
const SHA: &str = "67e2c98a60dc92283531412a9e604dd4bae005a9";

fn fleet() -> Options {
    let mut options = Options::default();
    options.router_args.no_cluster_metadata = false;
    options.ingest_args.cluster = "prod-eu".to_owned();
    options
}

#[tokio::test]
async fn every_notification_names_the_cluster_unless_the_alert_does() {
    let nats = TestNats::start().await;
    let hook = FakeServer::webhook().await;
    let own = FakeServer::webhook().await;
    let slack = FakeServer::slack().await;
    let github = FakeGitHub::start().await;
    let dir = config_dir(&format!(
        "{}{}{}{}{}{}{}{}{}",
        Provider::new(NS, "hook", "generic").address(&hook.url("/hook")),
        Provider::new(NS, "own", "generic").address(&own.url("/own")),
        Provider::new(NS, "slack", "slack").address(&slack.url("/api/chat.postMessage")),
        Provider::new(NS, "github", "github")
            .address(&github.url("/org/podinfo.git"))
            .secret_ref("github-token"),
        Secret::new(NS, "github-token").data("token", "ghp-test"),
        Alert::new(NS, "hook", "hook").source("Kustomization", "*"),
        Alert::new(NS, "own", "own")
            .source("Kustomization", "*")
            .event_metadata(&[("cluster", "named-by-the-alert")]),
        Alert::new(NS, "slack", "slack").source("Kustomization", "*"),
        Alert::new(NS, "github", "github").source("Kustomization", "*"),
    ));
    let herald = TestHerald::start_with(nats.url(), dir.path(), fleet()).await;
    let event = Event::new("Kustomization", NS, "apps")
        .severity("error")
        .reason("ReconciliationFailed")
        .message("apply failed")
        .metadata(
            "kustomize.toolkit.fluxcd.io/revision",
            &format!("main@sha1:{SHA}"),
        )
        .now()
        .json();
    assert_eq!(herald.post(event).await.0, 202);

    let generic = hook.wait_for(1).await[0].json();
    assert_eq!(generic["metadata"]["cluster"], "prod-eu", "{generic}");
    let theirs = own.wait_for(1).await[0].json();
    assert_eq!(theirs["metadata"]["cluster"], "named-by-the-alert");

    let message = slack.wait_for(1).await[0].json();
    let fields = message["attachments"][0]["fields"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        fields
            .iter()
            .any(|f| f["title"] == "cluster" && f["value"] == "prod-eu"),
        "{message}"
    );

    let status = herald_tests::eventually("the commit status", || async {
        github.statuses("org/podinfo", SHA).first().cloned()
    })
    .await;
    assert_eq!(
        status["description"], "prod-eu: reconciliation failed",
        "{status}"
    );
    herald.shutdown().await;
}
