//! Herald's structured filters on an unchanged Flux Alert: the reasons it
//! hears (`herald.dev/reasons`, globs), the reasons it drops
//! (`herald.dev/exclude-reasons`) and a set of severities
//! (`herald.dev/severities`), end to end through ingest, router and sender.

use herald_tests::fake::FakeServer;
use herald_tests::fixtures::{Event, Provider};
use herald_tests::herald::{TestHerald, config_dir};
use herald_tests::nats::TestNats;

const NS: &str = "flux-system";

fn alert(name: &str, provider: &str, annotations: &str) -> String {
    format!(
        "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Alert\n\
         metadata: {{name: {name}, namespace: {NS}, annotations: {{{annotations}}}}}\n\
         spec: {{providerRef: {{name: {provider}}}, eventSources: [{{kind: Kustomization, name: '*'}}]}}\n---\n"
    )
}

fn event(severity: &str, reason: &str) -> String {
    Event::new("Kustomization", NS, "apps")
        .severity(severity)
        .reason(reason)
        .message(&format!("{severity} {reason}"))
        .now()
        .json()
}

#[tokio::test]
async fn alerts_hear_only_the_reasons_and_severities_they_name() {
    let nats = TestNats::start().await;
    let failures = FakeServer::webhook().await;
    let recoveries = FakeServer::webhook().await;
    let everything = FakeServer::webhook().await;
    let manifests = format!(
        "{}{}{}{}{}{}",
        Provider::new(NS, "failures", "generic").address(&failures.url("/f")),
        Provider::new(NS, "recoveries", "generic").address(&recoveries.url("/r")),
        Provider::new(NS, "everything", "generic").address(&everything.url("/e")),
        alert(
            "failures",
            "failures",
            "herald.dev/reasons: 'HealthCheckFailed, *Failed', herald.dev/exclude-reasons: ArtifactFailed"
        ),
        alert("recoveries", "recoveries", "herald.dev/severities: info"),
        alert("everything", "everything", ""),
    );
    let dir = config_dir(&manifests);
    let herald = TestHerald::start(nats.url(), dir.path()).await;
    let sent = [
        ("error", "HealthCheckFailed"),
        ("error", "BuildFailed"),
        ("error", "ArtifactFailed"),
        ("error", "DependencyNotReady"),
        ("info", "ReconciliationSucceeded"),
    ];
    for (severity, reason) in sent {
        assert_eq!(herald.post(event(severity, reason)).await.0, 202);
    }
    everything.wait_for(sent.len()).await;
    herald_tests::eventually("the filtered Alerts' deliveries", || async {
        (failures.requests().len() == 2 && recoveries.requests().len() == 1).then_some(())
    })
    .await;
    herald_tests::fixtures::deliveries_drained(&nats).await;
    assert_eq!(
        failures.sorted_messages(),
        ["error BuildFailed", "error HealthCheckFailed"]
    );
    assert_eq!(
        recoveries.sorted_messages(),
        ["info ReconciliationSucceeded"]
    );
    assert_eq!(everything.sorted_messages().len(), sent.len());
}

#[tokio::test]
async fn a_filter_annotation_that_cannot_be_used_is_a_problem_and_hears_nothing() {
    let nats = TestNats::start().await;
    let hook = FakeServer::webhook().await;
    let manifests = format!(
        "{}{}",
        Provider::new(NS, "hook", "generic").address(&hook.url("/h")),
        alert("bad", "hook", "herald.dev/severities: warning"),
    );
    let dir = config_dir(&manifests);
    let herald = TestHerald::start(nats.url(), dir.path()).await;
    let (_, ready) = herald.admin("/readyz").await;
    assert!(
        ready.contains(
            "annotation herald.dev/severities must list severities among info, error, trace"
        ),
        "{ready}"
    );
    assert_eq!(herald.post(event("error", "BuildFailed")).await.0, 202);
    herald_tests::fixtures::deliveries_drained(&nats).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(hook.requests().is_empty());
}
