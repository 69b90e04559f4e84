//! The fake Kubernetes API server driven by the real, unmodified kube-rs
//! client and runtime: discovery, watcher + reflector through a 410 relist,
//! metadata-only watches, field selectors, list pages, the events recorder,
//! `/status`.

use std::sync::{Arc, Mutex};

use futures::{StreamExt, TryStreamExt};
use herald_tests::kube::FakeKube;
use herald_tests::{eventually, init};
use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray,
};
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::PartialObjectMeta;
use kube::discovery::Discovery;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Client, Config, ResourceExt};
use serde_json::json;

const NOTIFICATION: &str = "notification.toolkit.fluxcd.io";

async fn client(fake: &FakeKube, dir: &tempfile::TempDir) -> Client {
    let kubeconfig = Kubeconfig::read_from(fake.kubeconfig(dir.path())).expect("kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("config");
    Client::try_from(config).expect("client")
}

fn alert(name: &str, version: &str, summary: &str) -> String {
    format!(
        "apiVersion: {NOTIFICATION}/{version}
kind: Alert
metadata:
  name: {name}
  namespace: flux-system
  labels:
    team: platform
spec:
  summary: {summary}
  providerRef:
    name: slack
  eventSources:
    - kind: Kustomization
      name: '*'
"
    )
}

fn alerts_resource(version: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(NOTIFICATION, version, "Alert"),
        "alerts",
    )
}

#[tokio::test]
async fn discovery_finds_alerts_outside_the_preferred_version() {
    init();
    let fake = FakeKube::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let discovery = Discovery::new(client(&fake, &dir).await)
        .run()
        .await
        .expect("discovery");
    let group = discovery.get(NOTIFICATION).expect("the notification group");
    assert_eq!(group.preferred_version(), Some("v1"));
    let kinds = |version: &str| -> Vec<String> {
        group
            .versioned_resources(version)
            .into_iter()
            .map(|(r, _)| r.kind)
            .collect()
    };
    assert_eq!(kinds("v1"), ["Receiver"]);
    assert!(kinds("v1beta3").contains(&"Alert".to_owned()));
    assert!(kinds("v1beta2").contains(&"Alert".to_owned()));
    assert!(
        group
            .recommended_resources()
            .iter()
            .all(|(r, _)| r.kind != "Alert"),
        "the preferred version has no Alert"
    );
    let status = |version: &str| {
        group
            .versioned_resources(version)
            .into_iter()
            .find(|(r, _)| r.kind == "Alert")
            .map(|(_, caps)| caps.subresources.iter().any(|(s, _)| s.plural == "status"))
    };
    assert_eq!(status("v1beta3"), Some(false));
    assert_eq!(status("v1beta2"), Some(true));
    for group in [
        "events.k8s.io",
        "coordination.k8s.io",
        "kustomize.toolkit.fluxcd.io",
    ] {
        assert!(discovery.get(group).is_some(), "{group}");
    }

    // The served CRD carries the allowed event source kinds.
    let crds: Api<CustomResourceDefinition> = Api::all(client(&fake, &dir).await);
    let crd = crds
        .get(&format!("alerts.{NOTIFICATION}"))
        .await
        .expect("get the CRD");
    let v1beta3 = crd
        .spec
        .versions
        .iter()
        .find(|v| v.name == "v1beta3")
        .expect("v1beta3");
    let schema = v1beta3
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .expect("schema");
    let field = |props: &JSONSchemaProps, name: &str| -> JSONSchemaProps {
        props.properties.as_ref().expect("properties")[name].clone()
    };
    let sources = field(&field(schema, "spec"), "eventSources");
    let Some(JSONSchemaPropsOrArray::Schema(item)) = sources.items else {
        panic!("eventSources items");
    };
    let kinds: Vec<String> = field(&item, "kind")
        .enum_
        .expect("enum")
        .into_iter()
        .filter_map(|k| k.0.as_str().map(str::to_owned))
        .collect();
    assert!(kinds.contains(&"OCIRepository".to_owned()), "{kinds:?}");
    assert!(v1beta3.subresources.is_none());
}

#[tokio::test]
async fn reflector_follows_changes_and_relists_after_410() {
    init();
    let fake = FakeKube::start().await;
    fake.apply(&alert("a", "v1beta3", "first"));
    fake.apply(&alert("b", "v1beta3", "second"));
    let dir = tempfile::tempdir().expect("tempdir");
    let resource = alerts_resource("v1beta3");
    let api: Api<DynamicObject> = Api::all_with(client(&fake, &dir).await, &resource);
    let writer = reflector::store::Writer::new(resource.clone());
    let store = writer.as_reader();
    let stream = reflector(writer, watcher(api, watcher::Config::default())).default_backoff();
    let task = tokio::spawn(stream.for_each(|_| async {}));
    let names = || {
        let mut names: Vec<String> = store.state().iter().map(|o| o.name_any()).collect();
        names.sort();
        names
    };
    store.wait_until_ready().await.expect("first list");
    assert_eq!(names(), ["a", "b"]);

    fake.apply(&alert("c", "v1beta3", "third"));
    eventually("ADDED c", || async {
        (names() == ["a", "b", "c"]).then_some(())
    })
    .await;
    fake.apply(&alert("a", "v1beta3", "changed"));
    eventually("MODIFIED a", || async {
        store
            .state()
            .iter()
            .any(|o| o.name_any() == "a" && o.data["spec"]["summary"] == "changed")
            .then_some(())
    })
    .await;
    fake.delete(
        &format!("{NOTIFICATION}/v1beta3"),
        "Alert",
        "flux-system",
        "b",
    );
    eventually("DELETED b", || async {
        (names() == ["a", "c"]).then_some(())
    })
    .await;

    // The server goes away; meanwhile c is deleted and the history compacted:
    // the watch resumed from the old resourceVersion gets 410, and only a
    // relist can notice c is gone.
    let hold = fake.hold_watches();
    fake.delete(
        &format!("{NOTIFICATION}/v1beta3"),
        "Alert",
        "flux-system",
        "c",
    );
    fake.expire_history();
    let lists_before = fake.requests().iter().filter(|r| !r.is_watch()).count();
    drop(hold);
    eventually("relist drops c", || async {
        (names() == ["a"]).then_some(())
    })
    .await;
    let requests = fake.requests();
    assert!(requests.iter().filter(|r| !r.is_watch()).count() > lists_before);

    // An open watch that falls behind the history relists too.
    fake.expire_history();
    fake.apply(&alert("d", "v1beta3", "after"));
    eventually("ADDED d", || async {
        (names() == ["a", "d"]).then_some(())
    })
    .await;
    task.abort();
}

#[tokio::test]
async fn one_alert_is_served_under_both_versions() {
    init();
    let fake = FakeKube::start().await;
    let mut beta2 = alert("x", "v1beta2", "two");
    beta2.push_str("status:\n  conditions: []\n");
    fake.apply(&beta2);
    let v3 = fake.objects(&format!("{NOTIFICATION}/v1beta3"), "Alert");
    assert_eq!(v3.len(), 1);
    assert_eq!(v3[0]["apiVersion"], format!("{NOTIFICATION}/v1beta3"));
    assert!(v3[0].get("status").is_none(), "v1beta3 has no status");
    let v2 = fake.objects(&format!("{NOTIFICATION}/v1beta2"), "Alert");
    assert_eq!(v2[0]["status"], json!({"conditions": []}));
}

#[tokio::test]
async fn status_patch_exists_only_where_the_version_declares_it() {
    init();
    let fake = FakeKube::start().await;
    fake.apply(&alert("s", "v1beta2", "x"));
    let dir = tempfile::tempdir().expect("tempdir");
    let client = client(&fake, &dir).await;
    let status = json!({"status": {"observedGeneration": 1}});

    let v2: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), "flux-system", &alerts_resource("v1beta2"));
    let patched = v2
        .patch_status("s", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("v1beta2 has /status");
    assert_eq!(patched.data["status"]["observedGeneration"], 1);
    assert_eq!(patched.metadata.generation, Some(1), "status is not spec");

    let v3: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), "flux-system", &alerts_resource("v1beta3"));
    let err = v3
        .patch_status("s", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect_err("v1beta3 has no /status");
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 404),
        "{err:?}"
    );

    // A spec change bumps the generation.
    let spec = json!({"spec": {"summary": "new"}});
    let patched = v3
        .patch("s", &PatchParams::default(), &Patch::Merge(&spec))
        .await
        .expect("patch the spec");
    assert_eq!(patched.metadata.generation, Some(2));
    let status_requests = fake
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/status"))
        .count();
    assert_eq!(status_requests, 2, "nothing retried /status");
}

#[tokio::test]
async fn metadata_watcher_sees_labels() {
    init();
    let fake = FakeKube::start().await;
    fake.apply(
        "apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: apps, namespace: flux-system, labels: {tier: one}}
spec: {interval: 1m, path: ./apps, prune: true}",
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("kustomize.toolkit.fluxcd.io", "v1", "Kustomization"),
        "kustomizations",
    );
    // kube 5 makes metadata-only requests for `Api<PartialObjectMeta<_>>`.
    let api: Api<PartialObjectMeta<DynamicObject>> =
        Api::all_with(client(&fake, &dir).await, &resource);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let task = tokio::spawn(
        watcher(api, watcher::Config::default())
            .default_backoff()
            .applied_objects()
            .try_for_each(move |object| {
                let labels = object.metadata.labels.clone().unwrap_or_default();
                sink.lock().expect("lock").push(labels);
                async { Ok(()) }
            }),
    );
    let label = |value: &'static str| {
        let seen = seen.clone();
        move || {
            let found = seen
                .lock()
                .expect("lock")
                .iter()
                .any(|l| l.get("tier").map(String::as_str) == Some(value));
            async move { found.then_some(()) }
        }
    };
    eventually("labels listed", label("one")).await;
    fake.apply(
        "apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: apps, namespace: flux-system, labels: {tier: two}}
spec: {interval: 1m, path: ./apps, prune: true}",
    );
    eventually("labels watched", label("two")).await;
    let requests = fake.requests();
    assert!(requests.iter().any(|r| {
        r.accept
            .as_deref()
            .is_some_and(|a| a.contains("as=PartialObjectMetadataList"))
    }));
    task.abort();
}

#[tokio::test]
async fn secret_watcher_with_a_field_selector() {
    init();
    let fake = FakeKube::start().await;
    for name in ["wanted", "other"] {
        fake.apply(&format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: flux-system}}\nstringData: {{token: x}}\ndata: {{token: eA==}}"
        ));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = fake.kubeconfig_with_token(dir.path(), "s3cret");
    let config = Config::from_custom_kubeconfig(
        Kubeconfig::read_from(path).expect("kubeconfig"),
        &KubeConfigOptions::default(),
    )
    .await
    .expect("config");
    let api: Api<Secret> =
        Api::namespaced(Client::try_from(config).expect("client"), "flux-system");
    let (store, writer) = reflector::store();
    let config = watcher::Config::default().fields("metadata.name=wanted");
    let task = tokio::spawn(
        reflector(writer, watcher(api, config))
            .default_backoff()
            .for_each(|_| async {}),
    );
    store.wait_until_ready().await.expect("first list");
    let names = || {
        store
            .state()
            .iter()
            .map(|s| s.name_any())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(), ["wanted"]);
    fake.apply(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: other, namespace: flux-system, labels: {x: y}}\ndata: {token: eQ==}",
    );
    fake.apply(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: wanted, namespace: flux-system}\ndata: {token: eQ==}",
    );
    eventually("the new token", || async {
        store
            .state()
            .iter()
            .any(|s| {
                s.data
                    .as_ref()
                    .and_then(|d| d.get("token"))
                    .is_some_and(|t| t.0 == b"y")
            })
            .then_some(())
    })
    .await;
    assert_eq!(names(), ["wanted"]);
    assert!(
        fake.requests()
            .iter()
            .all(|r| r.authorization.as_deref() == Some("Bearer s3cret")),
        "the bearer token is sent over plain http"
    );
    task.abort();
}

#[tokio::test]
async fn recorder_events_are_stored() {
    init();
    let fake = FakeKube::start().await;
    fake.apply(&alert("e", "v1beta3", "x"));
    let dir = tempfile::tempdir().expect("tempdir");
    let recorder = Recorder::new(client(&fake, &dir).await, Reporter::from("herald"));
    let reference = ObjectReference {
        api_version: Some(format!("{NOTIFICATION}/v1beta3")),
        kind: Some("Alert".to_owned()),
        name: Some("e".to_owned()),
        namespace: Some("flux-system".to_owned()),
        ..ObjectReference::default()
    };
    let event = Event {
        type_: EventType::Warning,
        reason: "ProviderNotFound".to_owned(),
        note: Some("Provider slack not found".to_owned()),
        action: "Route".to_owned(),
        secondary: None,
    };
    recorder.publish(&event, &reference).await.expect("create");
    recorder
        .publish(&event, &reference)
        .await
        .expect("patch the series");
    let events = fake.events();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["reason"], "ProviderNotFound");
    assert_eq!(events[0]["regarding"]["name"], "e");
    assert_eq!(events[0]["reportingController"], "herald");
    assert_eq!(events[0]["series"]["count"], 2);
}

/// Every page of a list, following `continue` tokens.
async fn all_pages(api: &Api<Secret>, params: ListParams) -> (Vec<String>, usize) {
    let mut params = params;
    let mut names = Vec::new();
    let mut pages = 0;
    loop {
        let list = api.list(&params).await.expect("a page");
        pages += 1;
        names.extend(
            list.items
                .iter()
                .map(|s| format!("{}/{}", s.namespace().unwrap_or_default(), s.name_any())),
        );
        match list.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return (names, pages),
        }
    }
}

#[tokio::test]
async fn lists_come_in_pages_by_namespace_then_name() {
    init();
    let fake = FakeKube::start().await;
    let mut expected = Vec::new();
    for i in 0..25 {
        let namespace = format!("team-{}", i % 3);
        let labels = if i % 2 == 0 { "{even: 'yes'}" } else { "{}" };
        fake.apply(&format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: s-{i:02}, namespace: {namespace}, labels: {labels}}}\ndata: {{token: eA==}}"
        ));
        expected.push((namespace, format!("s-{i:02}"), i % 2 == 0));
    }
    // Objects of another kind sort around them and never show up.
    fake.apply(&alert("a", "v1beta3", "x"));
    expected.sort();
    let dir = tempfile::tempdir().expect("tempdir");
    let client = client(&fake, &dir).await;

    let all: Api<Secret> = Api::all(client.clone());
    let (names, pages) = all_pages(&all, ListParams::default().limit(10)).await;
    let want: Vec<String> = expected
        .iter()
        .map(|(ns, n, _)| format!("{ns}/{n}"))
        .collect();
    assert_eq!(names, want);
    assert_eq!(pages, 3);

    let one: Api<Secret> = Api::namespaced(client.clone(), "team-1");
    let (names, pages) = all_pages(&one, ListParams::default().limit(3)).await;
    let want: Vec<String> = expected
        .iter()
        .filter(|(ns, _, _)| ns == "team-1")
        .map(|(ns, n, _)| format!("{ns}/{n}"))
        .collect();
    assert_eq!(names, want);
    assert_eq!(pages, 3);

    let (names, _) = all_pages(&all, ListParams::default().labels("even=yes").limit(4)).await;
    let want: Vec<String> = expected
        .iter()
        .filter(|(_, _, even)| *even)
        .map(|(ns, n, _)| format!("{ns}/{n}"))
        .collect();
    assert_eq!(names, want);
}
