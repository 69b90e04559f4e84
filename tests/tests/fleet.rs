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

fn sha256_hex(token: &str) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

fn alert(name: &str, provider: &str, annotation: Option<(&str, &str)>) -> String {
    let annotations = annotation.map_or(String::new(), |(k, v)| {
        format!(", annotations: {{'{k}': '{v}'}}")
    });
    format!(
        "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Alert\n\
         metadata: {{name: {name}, namespace: {NS}{annotations}}}\n\
         spec: {{providerRef: {{name: {provider}}}, eventSources: [{{kind: Kustomization, name: '*'}}]}}\n---\n"
    )
}

#[tokio::test]
async fn alerts_choose_clusters_by_name_and_by_label() {
    let nats = TestNats::start().await;
    let hooks = [
        FakeServer::webhook().await,
        FakeServer::webhook().await,
        FakeServer::webhook().await,
        FakeServer::webhook().await,
    ];
    let names = ["by-name", "by-label", "everywhere", "broken"];
    let mut manifests = String::new();
    for (name, hook) in names.iter().zip(&hooks) {
        manifests.push_str(
            &Provider::new(NS, name, "generic")
                .address(&hook.url("/hook"))
                .to_string(),
        );
    }
    manifests.push_str(&alert(
        "by-name",
        "by-name",
        Some(("herald.dev/clusters", "prod-*")),
    ));
    manifests.push_str(&alert(
        "by-label",
        "by-label",
        Some(("herald.dev/cluster-selector", "env=prod, region in (eu)")),
    ));
    manifests.push_str(&alert("everywhere", "everywhere", None));
    manifests.push_str(&alert(
        "broken",
        "broken",
        Some(("herald.dev/cluster-selector", "env in prod")),
    ));
    let dir = config_dir(&manifests);
    let clusters = tempfile::tempdir().unwrap();
    let clusters_file = clusters.path().join("clusters.yaml");
    std::fs::write(
        &clusters_file,
        format!(
            "prod-eu:\n  tokenHash: sha256:{}\n  labels: {{env: prod, region: eu}}\n\
             prod-us:\n  tokenHash: sha256:{}\n  labels: {{env: prod, region: us}}\n\
             staging: plain-token\n",
            sha256_hex("eu-token"),
            sha256_hex("us-token")
        ),
    )
    .unwrap();
    let mut options = fleet();
    options.clusters_file = Some(clusters_file);
    let herald = TestHerald::start_with(nats.url(), dir.path(), options).await;
    let http = reqwest::Client::new();
    for (cluster, token) in [
        ("prod-eu", "eu-token"),
        ("prod-us", "us-token"),
        ("staging", "plain-token"),
    ] {
        let event = Event::new("Kustomization", NS, "apps")
            .message(cluster)
            .now()
            .json();
        let response = http
            .post(herald.ingest_url())
            .basic_auth(cluster, Some(token))
            .body(event)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202, "{cluster}");
    }
    // A wrong token is refused.
    let refused = http
        .post(herald.ingest_url())
        .basic_auth("prod-eu", Some("us-token"))
        .body(Event::new("Kustomization", NS, "apps").now().json())
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);

    let everywhere = hooks[2].wait_for(3).await;
    assert_eq!(everywhere.len(), 3);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(hooks[0].sorted_messages(), ["prod-eu", "prod-us"]);
    assert_eq!(hooks[1].sorted_messages(), ["prod-eu"]);
    assert!(
        hooks[3].sorted_messages().is_empty(),
        "an invalid selector selects nothing"
    );
    let (_, readyz) = herald.admin("/readyz").await;
    assert!(
        readyz.contains("annotation herald.dev/cluster-selector is not a label selector"),
        "{readyz}"
    );
    // Per-event metrics carry the cluster.
    let (_, metrics) = herald.admin("/metrics").await;
    for cluster in ["prod-eu", "prod-us", "staging"] {
        for line in [
            format!(r#"herald_events_stored_total{{cluster="{cluster}"}} 1"#),
            format!(r#"herald_events_routed_total{{cluster="{cluster}"}} 1"#),
            format!(
                r#"herald_deliveries_total{{provider_type="generic",outcome="delivered",cluster="{cluster}"}}"#
            ),
        ] {
            assert!(metrics.contains(&line), "{line} in {metrics}");
        }
    }
    assert!(
        metrics.contains(
            r#"herald_deliveries_skipped_total{reason="cluster_not_selected",cluster="staging"}"#
        ),
        "{metrics}"
    );
    herald.shutdown().await;
}

#[tokio::test]
async fn flux_event_v1_is_accepted_routed_on_its_object_and_sent_on_whole() {
    let nats = TestNats::start().await;
    let hook = FakeServer::webhook().await;
    let chart = FakeServer::webhook().await;
    let dir = config_dir(&format!(
        "{}{}{}{}",
        Provider::new(NS, "hook", "generic").address(&hook.url("/hook")),
        Provider::new(NS, "chart", "generic").address(&chart.url("/chart")),
        Alert::new(NS, "releases", "hook").source("HelmRelease", "*"),
        Alert::new(NS, "charts", "chart").source("HelmChart", "*"),
    ));
    let herald = TestHerald::start(nats.url(), dir.path()).await;
    let v1 = format!(
        r#"{{"involvedObject":{{"kind":"HelmRelease","namespace":"{NS}","name":"web","apiVersion":"helm.toolkit.fluxcd.io/v2"}},
            "relatedObject":{{"kind":"HelmChart","namespace":"{NS}","name":"{NS}-web","apiVersion":"source.toolkit.fluxcd.io/v1"}},
            "severity":"info","timestamp":"2026-01-02T03:04:05Z","message":"Helm upgrade succeeded",
            "reason":"UpgradeSucceeded","action":"Reconciled","reportingController":"helm-controller"}}"#
    );
    assert_eq!(herald.post(v1).await.0, 202);
    let body = hook.wait_for(1).await[0].text();
    assert_eq!(
        body,
        format!(
            "{{\"involvedObject\":{{\"kind\":\"HelmRelease\",\"namespace\":\"{NS}\",\"name\":\"web\",\"apiVersion\":\"helm.toolkit.fluxcd.io/v2\"}},\
             \"relatedObject\":{{\"kind\":\"HelmChart\",\"namespace\":\"{NS}\",\"name\":\"{NS}-web\",\"apiVersion\":\"source.toolkit.fluxcd.io/v1\"}},\
             \"severity\":\"info\",\"timestamp\":\"2026-01-02T03:04:05Z\",\"message\":\"Helm upgrade succeeded\",\
             \"reason\":\"UpgradeSucceeded\",\"action\":\"Reconciled\",\"reportingController\":\"helm-controller\"}}"
        )
    );
    // Alerts match the involved object only, as Flux does.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(chart.requests().is_empty());
    herald.shutdown().await;
}
