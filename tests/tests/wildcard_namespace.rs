//! `namespace: "*"` in an Alert's event source, end to end through ingest,
//! router and sender: it hears every namespace in a fleet administration
//! namespace (`--fleet-admin-namespace`), is a problem and hears nothing
//! anywhere else, and `--no-cross-namespace-refs` does not deny it. From a
//! folder and from Flux's own objects in a cluster (the fake API server).

use std::time::Duration;

use herald_runtime::catalog::kubernetes::KubeArgs;
use herald_tests::fake::FakeServer;
use herald_tests::fixtures::{Alert, Event, Provider, deliveries_drained};
use herald_tests::herald::{Options, TestHerald, config_dir};
use herald_tests::kube::FakeKube;
use herald_tests::nats::TestNats;

const ADMIN: &str = "flux-system";

fn alert(namespace: &str, name: &str, provider: &str, sources: &str) -> String {
    format!(
        "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Alert\n\
         metadata: {{name: {name}, namespace: {namespace}}}\n\
         spec: {{providerRef: {{name: {provider}}}, eventSources: [{sources}]}}\n---\n"
    )
}

/// Every Kustomization, in every namespace.
const ALL_KUSTOMIZATIONS: &str = "{kind: Kustomization, name: '*', namespace: '*'}";

fn event(kind: &str, namespace: &str, name: &str) -> String {
    Event::new(kind, namespace, name)
        .message(&format!("{kind}/{namespace}/{name}"))
        .now()
        .json()
}

fn options(no_cross_namespace_refs: bool) -> Options {
    let mut options = Options {
        fleet_admin_namespaces: vec![ADMIN.to_owned()],
        ..Options::default()
    };
    options.router_args.no_cross_namespace_refs = no_cross_namespace_refs;
    options
}

#[tokio::test]
async fn a_fleet_admin_alert_hears_every_namespace() {
    let nats = TestNats::start().await;
    let fleet = FakeServer::webhook().await;
    let helm = FakeServer::webhook().await;
    let manifests = format!(
        "{}{}{}{}",
        Provider::new(ADMIN, "fleet", "generic").address(&fleet.url("/fleet")),
        Provider::new(ADMIN, "helm", "generic").address(&helm.url("/helm")),
        alert(ADMIN, "fleet", "fleet", ALL_KUSTOMIZATIONS),
        alert(
            ADMIN,
            "helm",
            "helm",
            "{kind: HelmRelease, name: web, namespace: '*'}"
        ),
    );
    let dir = config_dir(&manifests);
    let herald = TestHerald::start_with(nats.url(), dir.path(), options(false)).await;
    let (_, ready) = herald.admin("/readyz").await;
    assert!(!ready.contains("eventSources"), "{ready}");
    let namespaces = ["flux-system", "team-a", "team-b", "team-c", "shop-eu"];
    for namespace in namespaces {
        assert_eq!(
            herald
                .post(event("Kustomization", namespace, "apps"))
                .await
                .0,
            202
        );
    }
    // Its kind and name still count: one HelmRelease is heard, one is not.
    for name in ["web", "db"] {
        assert_eq!(
            herald.post(event("HelmRelease", "team-b", name)).await.0,
            202
        );
    }
    fleet.wait_for(namespaces.len()).await;
    helm.wait_for(1).await;
    deliveries_drained(&nats).await;
    let mut expected: Vec<String> = namespaces
        .iter()
        .map(|ns| format!("Kustomization/{ns}/apps"))
        .collect();
    expected.sort();
    assert_eq!(fleet.sorted_messages(), expected);
    assert_eq!(helm.sorted_messages(), ["HelmRelease/team-b/web"]);
    herald.shutdown().await;
}

#[tokio::test]
async fn a_tenant_all_namespaces_source_is_reported_and_hears_nothing() {
    let nats = TestNats::start().await;
    let tenant = FakeServer::webhook().await;
    let control = FakeServer::webhook().await;
    let manifests = format!(
        "{}{}{}{}",
        Provider::new("team-a", "hook", "generic").address(&tenant.url("/tenant")),
        Provider::new(ADMIN, "control", "generic").address(&control.url("/control")),
        // The same Alert as an administrator's, in a tenant's namespace,
        // with one source of its own namespace beside.
        alert(
            "team-a",
            "fleet",
            "hook",
            &format!("{ALL_KUSTOMIZATIONS}, {{kind: HelmRelease, name: '*'}}")
        ),
        // Hears every event posted: once it has, the router is done with them.
        alert(
            ADMIN,
            "control",
            "control",
            &format!("{ALL_KUSTOMIZATIONS}, {{kind: HelmRelease, name: '*', namespace: '*'}}")
        ),
    );
    let dir = config_dir(&manifests);
    let herald = TestHerald::start_with(nats.url(), dir.path(), options(false)).await;
    let (_, ready) = herald.admin("/readyz").await;
    assert!(
        ready.contains(
            r#"Alert/team-a/fleet: spec.eventSources[0].namespace is "*" (all namespaces)"#
        ) && ready.contains("--fleet-admin-namespace"),
        "{ready}"
    );
    assert!(!ready.contains("Alert/flux-system/control"), "{ready}");
    let sent = [
        event("Kustomization", "team-b", "apps"),
        event("Kustomization", "team-a", "apps"),
        event("HelmRelease", "team-a", "web"),
    ];
    for body in sent.clone() {
        assert_eq!(herald.post(body).await.0, 202);
    }
    control.wait_for(sent.len()).await;
    deliveries_drained(&nats).await;
    assert_eq!(tenant.sorted_messages(), ["HelmRelease/team-a/web"]);
    herald.shutdown().await;
}

#[tokio::test]
async fn no_cross_namespace_refs_denies_tenants_but_not_fleet_admin_wildcards() {
    let nats = TestNats::start().await;
    let fleet = FakeServer::webhook().await;
    let tenant = FakeServer::webhook().await;
    let manifests = format!(
        "{}{}{}{}",
        Provider::new(ADMIN, "fleet", "generic").address(&fleet.url("/fleet")),
        Provider::new("team-a", "hook", "generic").address(&tenant.url("/tenant")),
        alert(ADMIN, "fleet", "fleet", ALL_KUSTOMIZATIONS),
        alert(
            "team-a",
            "cross",
            "hook",
            "{kind: Kustomization, name: '*'}, {kind: Kustomization, name: '*', namespace: team-b}"
        ),
    );
    let dir = config_dir(&manifests);
    let herald = TestHerald::start_with(nats.url(), dir.path(), options(true)).await;
    for namespace in ["team-b", "team-a"] {
        assert_eq!(
            herald
                .post(event("Kustomization", namespace, "apps"))
                .await
                .0,
            202
        );
    }
    fleet.wait_for(2).await;
    deliveries_drained(&nats).await;
    assert_eq!(
        fleet.sorted_messages(),
        ["Kustomization/team-a/apps", "Kustomization/team-b/apps"]
    );
    assert_eq!(tenant.sorted_messages(), ["Kustomization/team-a/apps"]);
    let (_, metrics) = herald.admin("/metrics").await;
    assert!(
        metrics.contains(
            r#"herald_deliveries_skipped_total{reason="cross_namespace_denied",cluster="test"} 1"#
        ),
        "{metrics}"
    );
    herald.shutdown().await;
}

/// Applies a fixture (one object, with its trailing `---`).
fn apply(kube: &FakeKube, object: impl std::fmt::Display) {
    let text = object.to_string();
    kube.apply(text.trim_end().trim_end_matches("---"));
}

#[tokio::test]
async fn the_kubernetes_catalog_honours_fleet_admin_namespaces() {
    herald_tests::init();
    let nats = TestNats::start().await;
    let kube = FakeKube::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let fleet = FakeServer::webhook().await;
    let tenant = FakeServer::webhook().await;
    apply(
        &kube,
        Provider::new(ADMIN, "fleet", "generic").address(&fleet.url("/fleet")),
    );
    apply(
        &kube,
        Provider::new("team-a", "hook", "generic").address(&tenant.url("/tenant")),
    );
    apply(
        &kube,
        Alert::new(ADMIN, "fleet", "fleet").source_yaml(ALL_KUSTOMIZATIONS),
    );
    apply(
        &kube,
        Alert::new("team-a", "wide", "hook")
            .source_yaml(ALL_KUSTOMIZATIONS)
            .source("HelmRelease", "*"),
    );
    let options = Options {
        kubernetes: Some(KubeArgs {
            kubeconfig: Some(kube.kubeconfig(dir.path())),
            catalog_cluster: "test".to_owned(),
            catalog_debounce: Duration::from_millis(50),
            ..KubeArgs::default()
        }),
        ..options(false)
    };
    let empty = tempfile::tempdir().expect("tempdir");
    let herald = TestHerald::start_with(nats.url(), empty.path(), options).await;
    // The tenant's Alert is told why on itself, with a Kubernetes Event.
    let note = herald_tests::eventually("an Unusable Event on the tenant's Alert", || async {
        kube.events()
            .iter()
            .find(|e| {
                e["regarding"]["kind"] == "Alert"
                    && e["regarding"]["name"] == "wide"
                    && e["reason"] == "Unusable"
            })
            .map(|e| e["note"].as_str().unwrap_or_default().to_owned())
    })
    .await;
    assert!(
        note.contains(r#"spec.eventSources[0].namespace is "*""#)
            && note.contains("--fleet-admin-namespace"),
        "{note}"
    );
    assert!(
        !kube
            .events()
            .iter()
            .any(|e| e["regarding"]["kind"] == "Alert" && e["regarding"]["name"] == "fleet"),
        "the administrator's Alert is fine"
    );
    for body in [
        event("Kustomization", "team-b", "apps"),
        event("Kustomization", "team-c", "apps"),
        event("HelmRelease", "team-a", "web"),
    ] {
        assert_eq!(herald.post(body).await.0, 202);
    }
    fleet.wait_for(2).await;
    tenant.wait_for(1).await;
    deliveries_drained(&nats).await;
    assert_eq!(
        fleet.sorted_messages(),
        ["Kustomization/team-b/apps", "Kustomization/team-c/apps"]
    );
    assert_eq!(tenant.sorted_messages(), ["HelmRelease/team-a/web"]);
    herald.shutdown().await;
}
