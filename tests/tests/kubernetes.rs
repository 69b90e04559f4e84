//! The Kubernetes catalog end to end: Flux's Alerts, Providers and Secrets
//! served by the fake API server, events through ingest → router → sender to
//! a fake webhook.

use std::time::Duration;

use herald_runtime::catalog::kubernetes::{KubeArgs, KubeSource};
use herald_tests::eventually;
use herald_tests::fake::FakeServer;
use herald_tests::fixtures::{Alert, Event, Provider, Secret, dead_letters};
use herald_tests::herald::{Options, TestHerald};
use herald_tests::kube::FakeKube;
use herald_tests::nats::TestNats;

const NS: &str = "flux-system";

/// A message never sent before: ingest suppresses repeats as Flux does.
fn fresh(prefix: &str) -> String {
    static COUNT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{prefix} {n}")
}

/// A generic Provider `hook` sending to `hook`, and an Alert `all` for
/// every Kustomization event.
fn hook_for_every_kustomization(kube: &FakeKube, hook: &FakeServer) {
    apply(
        kube,
        Provider::new(NS, "hook", "generic").address(&hook.url("/hook")),
    );
    apply(
        kube,
        Alert::new(NS, "all", "hook").source("Kustomization", "*"),
    );
}

/// Applies a fixture (one object, with its trailing `---`).
fn apply(kube: &FakeKube, object: impl std::fmt::Display) -> serde_json::Value {
    let text = object.to_string();
    kube.apply(text.trim_end().trim_end_matches("---"))
}

struct Setup {
    nats: TestNats,
    kube: FakeKube,
    _dir: tempfile::TempDir,
    kubeconfig: std::path::PathBuf,
}

async fn setup() -> Setup {
    herald_tests::init();
    let nats = TestNats::start().await;
    let kube = FakeKube::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = kube.kubeconfig(dir.path());
    Setup {
        nats,
        kube,
        _dir: dir,
        kubeconfig,
    }
}

impl Setup {
    fn args(&self) -> KubeArgs {
        KubeArgs {
            kubeconfig: Some(self.kubeconfig.clone()),
            // The harness's ingest names its cluster `test`.
            catalog_cluster: "test".to_owned(),
            catalog_debounce: Duration::from_millis(50),
            ..KubeArgs::default()
        }
    }

    async fn herald(&self) -> TestHerald {
        self.herald_with(self.args()).await
    }

    async fn herald_with(&self, args: KubeArgs) -> TestHerald {
        let empty = tempfile::tempdir().expect("tempdir");
        let options = Options {
            kubernetes: Some(args),
            ..Options::default()
        };
        TestHerald::start_with(self.nats.url(), empty.path(), options).await
    }
}

fn kustomization(name: &str, message: &str) -> String {
    Event::new("Kustomization", NS, name)
        .message(message)
        .now()
        .json()
}

#[tokio::test]
async fn objects_in_the_cluster_route_events_only_after_the_first_list() {
    let s = setup().await;
    let hook = FakeServer::webhook().await;
    apply(
        &s.kube,
        Provider::new(NS, "hook", "generic")
            .address(&hook.url("/hook"))
            .secret_ref("hook-auth"),
    );
    apply(
        &s.kube,
        Secret::new(NS, "hook-auth").data("headers", "X-Token: one"),
    );
    apply(
        &s.kube,
        Alert::new(NS, "all", "hook").source("Kustomization", "*"),
    );
    // Hold the watches: the list is answered, the catalog is built from it.
    let herald = s.herald().await;
    assert_eq!(herald.post(kustomization("apps", "first")).await.0, 202);
    let first = hook.wait_for(1).await;
    assert_eq!(first[0].json()["message"], "first");
    assert_eq!(first[0].header("x-token").as_deref(), Some("one"));
    let (status, body) = herald.admin("/readyz").await;
    assert_eq!(status, 200, "{body}");

    // A Secret rotated takes effect on the next delivery.
    apply(
        &s.kube,
        Secret::new(NS, "hook-auth").data("headers", "X-Token: two"),
    );
    eventually("the rotated Secret is used", || async {
        let n = hook.requests().len();
        herald
            .post(kustomization("apps", &fresh("after rotation")))
            .await;
        let requests = hook.wait_for(n + 1).await;
        (requests[n].header("x-token").as_deref() == Some("two")).then_some(())
    })
    .await;
    herald.shutdown().await;
}

#[tokio::test]
async fn an_alert_applied_while_events_flow_starts_matching() {
    let s = setup().await;
    let hook = FakeServer::webhook().await;
    apply(
        &s.kube,
        Provider::new(NS, "hook", "generic").address(&hook.url("/hook")),
    );
    let herald = s.herald().await;
    eventually("ready", || async {
        (herald.admin("/readyz").await.0 == 200).then_some(())
    })
    .await;
    assert_eq!(herald.post(kustomization("apps", "unmatched")).await.0, 202);
    apply(
        &s.kube,
        Alert::new(NS, "late", "hook").source("Kustomization", "*"),
    );
    eventually("the new Alert matches", || async {
        let n = hook.requests().len();
        herald.post(kustomization("apps", &fresh("matched"))).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        (hook.requests().len() > n).then_some(())
    })
    .await;
    assert!(
        hook.requests()
            .iter()
            .all(|r| r.json()["message"] != "unmatched"),
        "an event posted before the Alert existed was delivered"
    );
    herald.shutdown().await;
}

#[tokio::test]
async fn a_deleted_provider_makes_the_next_delivery_a_dead_letter() {
    let s = setup().await;
    let hook = FakeServer::webhook().await;
    hook_for_every_kustomization(&s.kube, &hook);
    let herald = s.herald().await;
    herald.post(kustomization("apps", "delivered")).await;
    hook.wait_for(1).await;
    assert!(s.kube.delete(
        "notification.toolkit.fluxcd.io/v1beta3",
        "Provider",
        NS,
        "hook"
    ));
    let dead = eventually("a dead letter naming the missing Provider", || async {
        herald
            .post(kustomization("apps", &fresh("after delete")))
            .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        dead_letters(&s.nats).await.into_iter().next()
    })
    .await;
    assert!(dead.1.reason.contains("hook"), "{}", dead.1.reason);
    let (_, readyz) = herald.admin("/readyz").await;
    assert!(
        readyz.contains("Alert/flux-system/all: spec.providerRef names the Provider flux-system/hook, which does not exist"),
        "{readyz}"
    );
    // The Alert's owners see both in `kubectl describe alert all`.
    let about_alert = eventually("Events on the Alert", || async {
        let events = events_about(&s.kube, "Alert", "all");
        let reasons: Vec<&str> = events.iter().map(|(r, _, _)| r.as_str()).collect();
        (reasons.contains(&"Unusable") && reasons.contains(&"DeadLetter")).then_some(events)
    })
    .await;
    assert!(
        about_alert
            .iter()
            .any(|(reason, note, _)| reason == "DeadLetter" && note.contains("does not exist")),
        "{about_alert:?}"
    );
    herald.shutdown().await;
}

#[tokio::test]
async fn a_forced_relist_drops_an_object_deleted_meanwhile() {
    let s = setup().await;
    let hook = FakeServer::webhook().await;
    apply(
        &s.kube,
        Provider::new(NS, "hook", "generic").address(&hook.url("/hook")),
    );
    apply(
        &s.kube,
        Alert::new(NS, "apps", "hook").source("Kustomization", "apps"),
    );
    apply(
        &s.kube,
        Alert::new(NS, "infra", "hook").source("Kustomization", "infra"),
    );
    let herald = s.herald().await;
    herald.post(kustomization("infra", "before")).await;
    hook.wait_for(1).await;

    // The API server goes away; meanwhile `infra` is deleted and the
    // history compacted, so the watch resumes with 410 and relists.
    let hold = s.kube.hold_watches();
    assert!(s.kube.delete(
        "notification.toolkit.fluxcd.io/v1beta3",
        "Alert",
        NS,
        "infra"
    ));
    s.kube.expire_history();
    drop(hold);
    eventually("the relist forgets the deleted Alert", || async {
        let n = hook.requests().len();
        herald.post(kustomization("apps", &fresh("probe"))).await;
        herald.post(kustomization("infra", &fresh("gone"))).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
        let requests = hook.requests();
        let infra = requests[n..]
            .iter()
            .any(|r| r.json()["involvedObject"]["name"] == "infra");
        let apps = requests[n..]
            .iter()
            .any(|r| r.json()["involvedObject"]["name"] == "apps");
        (apps && !infra).then_some(())
    })
    .await;
    assert!(
        s.kube
            .requests()
            .iter()
            .filter(|r| r.path.contains("/alerts") && !r.is_watch())
            .count()
            >= 2,
        "no relist of Alerts"
    );
    herald.shutdown().await;
}

#[tokio::test]
async fn match_labels_match_by_the_objects_labels() {
    let s = setup().await;
    let hook = FakeServer::webhook().await;
    apply(
        &s.kube,
        Provider::new(NS, "hook", "generic").address(&hook.url("/hook")),
    );
    apply(
        &s.kube,
        Alert::new(NS, "team-a", "hook")
            .source_yaml("{kind: Kustomization, name: '*', matchLabels: {team: a}}"),
    );
    for (name, team) in [
        ("labelled", Some("a")),
        ("other", Some("b")),
        ("bare", None),
    ] {
        let labels = team.map_or(String::new(), |t| format!(", labels: {{team: {t}}}"));
        s.kube.apply(&format!(
            "apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\n\
             metadata: {{name: {name}, namespace: {NS}{labels}}}\nspec: {{interval: 1m}}\n"
        ));
    }
    let herald = s.herald().await;
    for name in ["bare", "other", "labelled"] {
        assert_eq!(herald.post(kustomization(name, name)).await.0, 202);
    }
    let delivered = hook.wait_for(1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let names: Vec<String> = hook
        .requests()
        .iter()
        .map(|r| {
            r.json()["involvedObject"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(names, ["labelled"], "{delivered:?}");

    // A label added later is seen.
    s.kube.apply(&format!(
        "apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\n\
         metadata: {{name: bare, namespace: {NS}, labels: {{team: a}}}}\nspec: {{interval: 1m}}\n"
    ));
    eventually("the new label matches", || async {
        let n = hook.requests().len();
        herald.post(kustomization("bare", &fresh("bare"))).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        (hook.requests().len() > n).then_some(())
    })
    .await;
    // Metadata only: the Flux objects' bodies are never asked for.
    assert!(
        s.kube
            .requests()
            .iter()
            .filter(|r| r.path.contains("/kustomizations"))
            .all(|r| r
                .accept
                .as_deref()
                .is_some_and(|a| a.contains("as=PartialObjectMetadata"))),
        "a Kustomization was read whole"
    );
    herald.shutdown().await;
}

/// The Events about `kind` `name`, as (reason, note, series count).
fn events_about(kube: &FakeKube, kind: &str, name: &str) -> Vec<(String, String, u64)> {
    kube.events()
        .iter()
        .filter(|e| e["regarding"]["kind"] == kind && e["regarding"]["name"] == name)
        .map(|e| {
            (
                e["reason"].as_str().unwrap_or_default().to_owned(),
                e["note"].as_str().unwrap_or_default().to_owned(),
                e["series"]["count"].as_u64().unwrap_or(1),
            )
        })
        .collect()
}

#[tokio::test]
async fn health_is_told_with_events_and_status_without_repeating() {
    let s = setup().await;
    let hook = FakeServer::webhook().await;
    // Unusable from the start: the Secret it names does not exist.
    apply(
        &s.kube,
        Provider::new(NS, "hook", "generic")
            .address(&hook.url("/hook"))
            .secret_ref("missing"),
    );
    apply(
        &s.kube,
        Alert::new(NS, "all", "hook").source("Kustomization", "*"),
    );
    let herald = s.herald().await;
    let unusable = eventually("an Unusable Event on the Provider", || async {
        events_about(&s.kube, "Provider", "hook")
            .into_iter()
            .find(|(reason, _, _)| reason == "Unusable")
    })
    .await;
    assert!(
        unusable
            .1
            .contains("spec.secretRef names the Secret flux-system/missing"),
        "{unusable:?}"
    );
    // Where a served version has /status (v1beta2), Ready is written there.
    let status = eventually("Ready=False on the Provider", || async {
        let providers = s
            .kube
            .objects("notification.toolkit.fluxcd.io/v1beta2", "Provider");
        let conditions = providers[0]["status"]["conditions"].as_array().cloned()?;
        conditions
            .into_iter()
            .find(|c| c["type"] == "Ready" && c["status"] == "False")
    })
    .await;
    assert_eq!(status["reason"], "Unusable");
    assert_eq!(status["observedGeneration"], 1);
    // The Lease names the writer.
    let leases = s.kube.objects("coordination.k8s.io/v1", "Lease");
    assert_eq!(leases[0]["metadata"]["name"], "herald-catalog-writer");
    assert!(leases[0]["spec"]["holderIdentity"].is_string());

    // Deliveries fail (no Secret): one DeadLetter Event, counted, not repeated.
    for i in 0..5 {
        herald
            .post(kustomization("apps", &format!("dead {i}")))
            .await;
    }
    eventually("five dead letters", || async {
        (dead_letters(&s.nats).await.len() >= 5).then_some(())
    })
    .await;
    let dead = eventually("one DeadLetter Event with a series", || async {
        let dead: Vec<_> = events_about(&s.kube, "Provider", "hook")
            .into_iter()
            .filter(|(reason, _, _)| reason == "DeadLetter")
            .collect();
        (dead.len() == 1 && dead[0].2 >= 2).then_some(dead)
    })
    .await;
    assert!(!dead[0].1.contains("X-Token"), "{dead:?}");

    // A relist changes nothing: no new Unusable Event.
    let hold = s.kube.hold_watches();
    s.kube.expire_history();
    drop(hold);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let unusable_events = events_about(&s.kube, "Provider", "hook")
        .into_iter()
        .filter(|(reason, _, _)| reason == "Unusable")
        .count();
    assert_eq!(unusable_events, 1);

    // The Secret appears: Recovered, and Ready=True.
    apply(&s.kube, Secret::new(NS, "missing").data("token", "t"));
    eventually("a Recovered Event", || async {
        events_about(&s.kube, "Provider", "hook")
            .into_iter()
            .find(|(reason, _, _)| reason == "Recovered")
    })
    .await;
    eventually("Ready=True on the Provider", || async {
        let providers = s
            .kube
            .objects("notification.toolkit.fluxcd.io/v1beta2", "Provider");
        providers[0]["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == "Ready" && c["status"] == "True")
            .cloned()
    })
    .await;
    herald.post(kustomization("apps", "delivered")).await;
    hook.wait_for(1).await;
    // Status writes went to v1beta2 only; v1beta3 has no /status.
    assert!(
        s.kube
            .requests()
            .iter()
            .filter(|r| r.path.ends_with("/status"))
            .all(|r| r.path.contains("/v1beta2/")),
        "a status write to a version without /status"
    );
    herald.shutdown().await;
}

#[tokio::test]
async fn nothing_is_routed_before_the_first_full_list() {
    let s = setup().await;
    let hook = FakeServer::webhook().await;
    hook_for_every_kustomization(&s.kube, &hook);
    // The API server answers discovery but fails every list.
    s.kube.fail_requests(Some(500));
    let herald = s.herald().await;
    assert_eq!(herald.post(kustomization("apps", "early")).await.0, 202);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, readyz) = herald.admin("/readyz").await;
    assert_eq!(status, 503, "{readyz}");
    assert!(
        hook.requests().is_empty(),
        "routed against an empty catalog"
    );
    assert!(dead_letters(&s.nats).await.is_empty());

    // The lists succeed: the event accepted meanwhile is delivered.
    s.kube.fail_requests(None);
    let delivered = hook.wait_for(1).await;
    assert_eq!(delivered[0].json()["message"], "early");
    eventually("ready", || async {
        (herald.admin("/readyz").await.0 == 200).then_some(())
    })
    .await;
    herald.shutdown().await;
}

#[tokio::test]
async fn kinds_the_served_alert_crd_allows_are_not_warned_about() {
    let s = setup().await;
    let hook = FakeServer::webhook().await;
    s.kube
        .extend_alert_kinds(&["FluxInstance", "ResourceSet", "ResourceSetInputProvider"]);
    apply(
        &s.kube,
        Provider::new(NS, "hook", "generic").address(&hook.url("/hook")),
    );
    apply(
        &s.kube,
        Alert::new(NS, "operator", "hook")
            .source("FluxInstance", "flux")
            .source("Kustomization", "apps")
            .source("Pipeline", "p"),
    );
    let herald = s.herald().await;
    let event = Event::new("FluxInstance", NS, "flux")
        .api_version("fluxcd.controlplane.io/v1")
        .message("upgraded")
        .now()
        .json();
    assert_eq!(herald.post(event).await.0, 202);
    assert_eq!(hook.wait_for(1).await[0].json()["message"], "upgraded");
    let (_, readyz) = herald.admin("/readyz").await;
    assert!(!readyz.contains("FluxInstance"), "{readyz}");
    // A kind the served CRD does not allow is still kept, with a warning.
    assert!(
        readyz.contains("spec.eventSources[2].kind \"Pipeline\" is not one of Flux's"),
        "{readyz}"
    );
    herald.shutdown().await;
}

#[tokio::test]
async fn a_watch_namespace_and_label_selector_limit_what_is_read() {
    let s = setup().await;
    let hook = FakeServer::webhook().await;
    for namespace in ["team-a", "team-b"] {
        apply(
            &s.kube,
            Provider::new(namespace, "hook", "generic").address(&hook.url("/hook")),
        );
        apply(
            &s.kube,
            Alert::new(namespace, "all", "hook").source("Kustomization", "*"),
        );
    }
    // Only Alerts and Providers labelled herald=on are read.
    for kind in ["Provider", "Alert"] {
        s.kube.apply(&format!(
            "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: {kind}\n\
             metadata: {{name: {}, namespace: team-a, labels: {{herald: 'on'}}}}\n\
             spec: {}\n",
            if kind == "Alert" { "labelled" } else { "labelled-hook" },
            if kind == "Alert" {
                "{providerRef: {name: labelled-hook}, eventSources: [{kind: Kustomization, name: '*'}]}".to_owned()
            } else {
                format!("{{type: generic, address: '{}'}}", hook.url("/labelled"))
            }
        ));
    }
    let herald = s
        .herald_with(KubeArgs {
            watch_namespace: "team-a".to_owned(),
            watch_label_selector: "herald=on".to_owned(),
            ..s.args()
        })
        .await;
    for namespace in ["team-b", "team-a"] {
        let event = Event::new("Kustomization", namespace, "apps")
            .message(namespace)
            .now()
            .json();
        assert_eq!(herald.post(event).await.0, 202);
    }
    let delivered = hook.wait_for(1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let paths: Vec<String> = hook.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths, ["/labelled"], "{delivered:?}");
    // Nothing was asked of other namespaces.
    let requests = s.kube.requests();
    let resources = requests
        .iter()
        .filter(|r| !r.path.contains("customresourcedefinitions"))
        .filter(|r| {
            r.path.ends_with("/secrets")
                || r.path.ends_with("/alerts")
                || r.path.ends_with("/providers")
        });
    for request in resources {
        assert!(
            request.path.contains("/namespaces/team-a/"),
            "{}",
            request.path
        );
    }
    herald.shutdown().await;
}

#[tokio::test]
async fn a_member_cluster_keeps_its_own_alerts_which_hear_only_its_events() {
    let s = setup().await;
    let member = FakeKube::start().await;
    let hub_hook = FakeServer::webhook().await;
    let member_hook = FakeServer::webhook().await;
    // The hub's Alert hears every cluster.
    apply(
        &s.kube,
        Provider::new(NS, "hub", "generic").address(&hub_hook.url("/hub")),
    );
    apply(
        &s.kube,
        Alert::new(NS, "hub", "hub").source("Kustomization", "*"),
    );
    // The member keeps its own, as it did with its notification-controller.
    apply(
        &member,
        Provider::new(NS, "team", "generic").address(&member_hook.url("/team")),
    );
    apply(
        &member,
        Alert::new(NS, "team", "team").source("Kustomization", "*"),
    );
    // Its kubeconfig, in a Secret of Herald's namespace on the hub.
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = std::fs::read_to_string(member.kubeconfig(dir.path())).unwrap();
    s.kube.apply(
        &serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "edge-kubeconfig", "namespace": "default"},
            "stringData": {"value": kubeconfig},
        })
        .to_string(),
    );
    let clusters = dir.path().join("clusters.yaml");
    std::fs::write(
        &clusters,
        "edge:\n  token: edge-token\n  kubeConfig: {secretRef: {name: edge-kubeconfig}}\nother: other-token\n",
    )
    .unwrap();
    // The member's API server is down at first: its events wait.
    member.fail_requests(Some(500));
    let empty = tempfile::tempdir().unwrap();
    let options = Options {
        kubernetes: Some(s.args()),
        clusters_file: Some(clusters),
        ..Options::default()
    };
    let herald = TestHerald::start_with(s.nats.url(), empty.path(), options).await;
    let http = reqwest::Client::new();
    let post = |cluster: &'static str, token: &'static str, message: &'static str| {
        let http = http.clone();
        let url = herald.ingest_url();
        async move {
            let event = Event::new("Kustomization", NS, "apps")
                .message(message)
                .now()
                .json();
            http.post(url)
                .basic_auth(cluster, Some(token))
                .body(event)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(post("other", "other-token", "from other").await, 202);
    assert_eq!(post("edge", "edge-token", "from edge").await, 202);
    let first = hub_hook.wait_for(1).await;
    assert_eq!(first[0].json()["message"], "from other");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        hub_hook.requests().len(),
        1,
        "the edge event was routed before its catalog was read"
    );
    assert!(member_hook.requests().is_empty());

    // The member comes back: the held event reaches both.
    member.fail_requests(None);
    let team = member_hook.wait_for(1).await;
    assert_eq!(team[0].json()["message"], "from edge");
    let hub = hub_hook.wait_for(2).await;
    assert_eq!(hub[1].json()["message"], "from edge");

    // Dead letters of the member's Provider are told in the member cluster.
    assert!(member.delete(
        "notification.toolkit.fluxcd.io/v1beta3",
        "Provider",
        NS,
        "team"
    ));
    eventually("an Event in the member cluster", || async {
        post(
            "edge",
            "edge-token",
            &*Box::leak(fresh("after delete").into_boxed_str()),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        events_about(&member, "Alert", "team")
            .into_iter()
            .find(|(reason, _, _)| reason == "DeadLetter")
    })
    .await;
    assert!(
        events_about(&s.kube, "Alert", "team").is_empty(),
        "a member's Event was written in the hub"
    );
    herald.shutdown().await;
}

#[tokio::test]
async fn a_router_learns_secrets_exist_without_reading_their_data() {
    let s = setup().await;
    apply(
        &s.kube,
        Provider::new(NS, "hook", "generic")
            .address("http://127.0.0.1:9/hook")
            .secret_ref("hook-auth"),
    );
    apply(
        &s.kube,
        Secret::new(NS, "hook-auth").data("headers", "X-Token: one"),
    );
    let readiness = herald_runtime::health::Readiness::default();
    let args = KubeArgs {
        secret_data: false,
        ..s.args()
    };
    let (catalog, source) = KubeSource::open(&args, Default::default(), &readiness)
        .await
        .expect("source");
    let cancel = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(source.run(cancel.clone()));
    tokio::time::timeout(Duration::from_secs(20), catalog.loaded())
        .await
        .expect("the first list is published");
    let snapshot = catalog.snapshot();
    let secret = snapshot
        .secret(NS, "hook-auth")
        .expect("the Secret is known");
    assert!(secret.data.is_empty(), "{secret:?}");
    assert!(
        snapshot.problems.is_empty(),
        "the Provider's Secret exists: {:?}",
        snapshot.problems
    );

    // A Secret a Provider names later is read on its own, as metadata too.
    apply(
        &s.kube,
        Secret::new(NS, "other-auth").data("headers", "X-Token: two"),
    );
    apply(
        &s.kube,
        Provider::new(NS, "hook", "generic")
            .address("http://127.0.0.1:9/hook")
            .secret_ref("other-auth"),
    );
    eventually("the newly named Secret is known", || async {
        catalog.snapshot().secret(NS, "other-auth").map(|_| ())
    })
    .await;
    cancel.cancel();
    running.await.expect("the source stops");

    let secret_reads: Vec<_> = s
        .kube
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/api/v1/") && r.path.contains("/secrets"))
        .collect();
    assert!(!secret_reads.is_empty());
    for request in secret_reads {
        assert!(
            request
                .accept
                .as_deref()
                .is_some_and(|a| a.contains("as=PartialObjectMetadata")),
            "a Secret read for its data: {request:?}"
        );
    }
}
