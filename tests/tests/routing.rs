//! Flux routing parity end to end: dedupe shared by ingest replicas, dispatch
//! gating per provider category, Alert rules, metadata, and catalog reloads
//! while events flow.

use std::collections::BTreeSet;
use std::time::Duration;

use herald_proto::{DeadLetter, names};
use herald_tests::eventually;
use herald_tests::fake::FakeServer;
use herald_tests::herald::{Options, TestHerald, config_dir};
use herald_tests::nats::TestNats;
use prost::Message as _;

fn event(
    kind: &str,
    namespace: &str,
    name: &str,
    severity: &str,
    message: &str,
    meta: &str,
) -> String {
    let group = match kind {
        "HelmRelease" => "helm.toolkit.fluxcd.io/v2",
        "FluxInstance" => "fluxcd.controlplane.io/v1",
        "GitRepository" => "source.toolkit.fluxcd.io/v1",
        _ => "kustomize.toolkit.fluxcd.io/v1",
    };
    format!(
        r#"{{"involvedObject":{{"apiVersion":"{group}","kind":"{kind}","name":"{name}","namespace":"{namespace}"}},
            "severity":"{severity}","reason":"Reason","message":"{message}","metadata":{{{meta}}},
            "reportingController":"test-controller","timestamp":"{}"}}"#,
        jiff::Timestamp::now()
    )
}

fn provider(
    namespace: &str,
    name: &str,
    provider_type: &str,
    address: &str,
    extra: &str,
) -> String {
    format!(
        "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Provider\nmetadata: {{name: {name}, namespace: {namespace}}}\n\
         spec: {{type: {provider_type}, address: '{address}'{extra}}}\n---\n"
    )
}

fn alert(namespace: &str, name: &str, provider: &str, spec: &str) -> String {
    format!(
        "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Alert\nmetadata: {{name: {name}, namespace: {namespace}}}\n\
         spec: {{providerRef: {{name: {provider}}}, {spec}}}\n---\n"
    )
}

fn ingest_only() -> Options {
    Options {
        router: false,
        sender: false,
        ..Options::default()
    }
}

async fn metric(herald: &TestHerald, line: &str) -> bool {
    herald.admin("/metrics").await.1.contains(line)
}

#[tokio::test]
async fn dedupe_is_shared_by_ingest_replicas_and_survives_restarts() {
    let nats = TestNats::start().await;
    let hook = FakeServer::webhook().await;
    let dir = config_dir(&format!(
        "{}{}",
        provider("apps", "audit", "generic", &hook.url("/e"), ""),
        alert(
            "apps",
            "audit",
            "audit",
            "eventSources: [{kind: HelmRelease, name: '*'}]"
        )
    ));
    let first = TestHerald::start(nats.url(), dir.path()).await;
    let second = TestHerald::start_with(nats.url(), dir.path(), ingest_only()).await;
    let meta =
        r#""helm.toolkit.fluxcd.io/revision":"6.5.3","helm.toolkit.fluxcd.io/token":"sha256:a""#;
    let install = |severity: &str| {
        event(
            "HelmRelease",
            "apps",
            "podinfo",
            severity,
            "Helm install succeeded",
            meta,
        )
    };

    let response = first.post_response(install("info")).await;
    assert_eq!(response.status(), 202);
    assert!(response.headers().get("herald-duplicate").is_none());
    assert_eq!(response.headers()["x-ratelimit-limit"], "1");
    assert!(
        response.headers()["x-ratelimit-reset"]
            .to_str()
            .unwrap()
            .ends_with(" GMT")
    );

    // The same object, message and revision through the other replica, with
    // another timestamp and severity (not part of Flux's key): a duplicate.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let response = second.post_response(install("error")).await;
    assert_eq!(
        response.status(),
        202,
        "a duplicate is answered so that no emitter retries"
    );
    assert_eq!(response.headers()["herald-duplicate"], "true");

    // Another token (Helm values) is another key.
    let other = event(
        "HelmRelease",
        "apps",
        "podinfo",
        "info",
        "Helm install succeeded",
        r#""helm.toolkit.fluxcd.io/revision":"6.5.3","helm.toolkit.fluxcd.io/token":"sha256:b""#,
    );
    assert!(
        second
            .post_response(other)
            .await
            .headers()
            .get("herald-duplicate")
            .is_none()
    );

    // A third ingest process, started after the others stopped, still knows.
    second.shutdown().await;
    let third = TestHerald::start_with(nats.url(), dir.path(), ingest_only()).await;
    let response = third.post_response(install("info")).await;
    assert_eq!(response.headers()["herald-duplicate"], "true");

    // Many at once across replicas: exactly one passes.
    let burst = event("HelmRelease", "apps", "burst", "info", "same", meta);
    let posts = (0..20).map(|i| {
        let target = if i % 2 == 0 { &first } else { &third };
        // Another reason (not in Flux's key) makes each a distinct event.
        let body = burst.replace("Reason", &format!("Reason{i}"));
        async move {
            target
                .post_response(body)
                .await
                .headers()
                .get("herald-duplicate")
                .is_none()
        }
    });
    let passed = futures::future::join_all(posts)
        .await
        .into_iter()
        .filter(|p| *p)
        .count();
    assert_eq!(passed, 1);

    assert_eq!(nats.stream_messages(names::EVENTS_STREAM).await, 3);
    hook.wait_for(3).await;
    assert!(
        metric(
            &first,
            r#"herald_events_duplicate_total{reason="flux_rate_limit",cluster="test"}"#
        )
        .await
    );
    third.shutdown().await;
    first.shutdown().await;
}

fn ingest_for(cluster: &str) -> Options {
    let mut options = ingest_only();
    cluster.clone_into(&mut options.ingest_args.cluster);
    options
}

#[tokio::test]
async fn dedupe_is_per_cluster_and_honours_entries_written_before_clusters() {
    let nats = TestNats::start().await;
    let hook = FakeServer::webhook().await;
    let dir = config_dir(&format!(
        "{}{}",
        provider("apps", "audit", "generic", &hook.url("/e"), ""),
        alert(
            "apps",
            "audit",
            "audit",
            "eventSources: [{kind: GitRepository, name: '*'}]"
        )
    ));
    let east = TestHerald::start(nats.url(), dir.path()).await;
    let west = TestHerald::start_with(nats.url(), dir.path(), ingest_for("west")).await;
    let fetched = |message: &str| {
        event(
            "GitRepository",
            "apps",
            "podinfo",
            "info",
            message,
            r#""source.toolkit.fluxcd.io/revision":"main@sha1:1234""#,
        )
    };

    // Two clusters fetch the same commit: each is its own notification.
    for herald in [&east, &west] {
        let response = herald.post_response(fetched("stored artifact")).await;
        assert_eq!(response.status(), 202);
        assert!(response.headers().get("herald-duplicate").is_none());
    }
    // One cluster's repeat is a duplicate, as it is in that cluster's Flux.
    tokio::time::sleep(Duration::from_millis(5)).await;
    for herald in [&east, &west] {
        let response = herald.post_response(fetched("stored artifact")).await;
        assert_eq!(response.headers()["herald-duplicate"], "true");
    }
    assert_eq!(hook.wait_for(2).await.len(), 2);

    // An entry written before keys carried the cluster (the Flux key alone)
    // still suppresses the same event after the upgrade.
    let flux_key = |body: &str| {
        let mut event = herald_flux::FluxEvent::from_json(body.as_bytes()).unwrap();
        herald_flux::metadata::cleanup(&mut event.metadata, "source.toolkit.fluxcd.io");
        herald_flux::dedupe::dedupe_key(&event)
    };
    let body = fetched("an event seen before the upgrade");
    let key = flux_key(&body);
    let js = nats.jetstream().await;
    let bucket = js.get_key_value(names::DEDUPE_BUCKET).await.unwrap();
    let window = herald_proto::DedupeWindow {
        anchor_unix_millis: jiff::Timestamp::now().as_millisecond() - 1_000,
        window: 0,
        event_id: "written-by-an-earlier-version".to_owned(),
    };
    bucket
        .put(&key, window.encode_to_vec().into())
        .await
        .unwrap();
    let upgraded = TestHerald::start_with(nats.url(), dir.path(), ingest_for("test")).await;
    let response = upgraded.post_response(body).await;
    assert_eq!(response.headers()["herald-duplicate"], "true");
    // Its per-cluster entries are the cluster's token and the Flux key.
    let entry = names::dedupe_entry("west", &flux_key(&fetched("stored artifact")));
    assert!(bucket.get(&entry).await.unwrap().is_some(), "{entry}");

    assert_eq!(nats.stream_messages(names::EVENTS_STREAM).await, 2);
    upgraded.shutdown().await;
    west.shutdown().await;
    east.shutdown().await;
}

#[tokio::test]
async fn gating_follows_the_provider_category() {
    let nats = TestNats::start().await;
    let slack = FakeServer::slack().await;
    let hook = FakeServer::webhook().await;
    let all = "eventSources: [{kind: Kustomization, name: '*'}]";
    let dir = config_dir(&format!(
        "{}{}{}{}{}{}{}{}",
        provider(
            "flux-system",
            "chat",
            "slack",
            &slack.url("/services/T/B/X"),
            ""
        ),
        provider("flux-system", "hook", "generic", &hook.url("/e"), ""),
        provider(
            "flux-system",
            "git",
            "github",
            "http://127.0.0.1:9/org/repo",
            ""
        ),
        provider(
            "flux-system",
            "pr",
            "githubpullrequestcomment",
            "http://127.0.0.1:9/org/repo",
            ""
        ),
        alert("flux-system", "chat", "chat", all),
        alert("flux-system", "hook", "hook", all),
        alert("flux-system", "git", "git", all),
        alert("flux-system", "pr", "pr", all),
    ));
    let herald = TestHerald::start(nats.url(), dir.path()).await;

    // The Kustomization success event: only commit-status and generic providers.
    let update = event(
        "Kustomization",
        "flux-system",
        "a",
        "info",
        "Reconciliation finished",
        r#""kustomize.toolkit.fluxcd.io/revision":"main@sha1:1111111111111111111111111111111111111111","kustomize.toolkit.fluxcd.io/commit_status":"update""#,
    );
    assert_eq!(herald.post(update).await.0, 202);
    let forwarded = hook.wait_for(1).await[0].json();
    assert_eq!(forwarded["metadata"]["commit_status"], "update");

    // An info event without a commit: chat, generic, not the commit-status provider.
    let progress = event(
        "Kustomization",
        "flux-system",
        "b",
        "info",
        "Service created",
        "",
    );
    assert_eq!(herald.post(progress).await.0, 202);
    // An error event: every category but change requests.
    let failure = event(
        "Kustomization",
        "flux-system",
        "c",
        "error",
        "apply failed",
        "",
    );
    assert_eq!(herald.post(failure).await.0, 202);
    // A change request annotation: the PR comment provider too.
    let pr = event(
        "Kustomization",
        "flux-system",
        "d",
        "info",
        "preview ready",
        r#""event.toolkit.fluxcd.io/change_request":"42""#,
    );
    assert_eq!(herald.post(pr).await.0, 202);

    let slack_names = |requests: Vec<herald_tests::fake::Recorded>| -> BTreeSet<String> {
        requests
            .iter()
            .map(|r| {
                r.json()["attachments"][0]["author_name"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    };
    assert_eq!(
        slack_names(slack.wait_for(3).await),
        [
            "kustomization/b.flux-system",
            "kustomization/c.flux-system",
            "kustomization/d.flux-system"
        ]
        .map(String::from)
        .into()
    );
    hook.wait_for(4).await;
    // github and PR comments are not sent by this version: their deliveries
    // show up as dead letters, which proves what the router let through.
    let dead = eventually("dead letters for github and pr", || async {
        let js = nats.jetstream().await;
        let stream = js.get_stream(names::DEAD_STREAM).await.ok()?;
        let n = nats.stream_messages(names::DEAD_STREAM).await;
        let mut out = BTreeSet::new();
        for seq in 1..=n {
            let m = stream.get_raw_message(seq).await.ok()?;
            let d = DeadLetter::decode(m.payload).ok()?;
            let delivery = d.delivery?;
            out.insert(format!(
                "{}:{}",
                delivery.provider_type, delivery.event?.involved_object?.name
            ));
        }
        (out.len() == 3).then_some(out)
    })
    .await;
    assert_eq!(
        dead,
        ["github:a", "github:c", "githubpullrequestcomment:d"]
            .map(String::from)
            .into()
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(slack.requests().len(), 3);
    assert_eq!(hook.requests().len(), 4);
    for line in [
        r#"herald_deliveries_skipped_total{reason="commit_status_update",cluster="test"} 2"#,
        r#"herald_deliveries_skipped_total{reason="missing_commit",cluster="test"} 2"#,
        r#"herald_deliveries_skipped_total{reason="missing_change_request",cluster="test"} 2"#,
    ] {
        assert!(
            metric(&herald, line).await,
            "{line}\n{}",
            herald.admin("/metrics").await.1
        );
    }
    herald.shutdown().await;
}

#[tokio::test]
async fn alert_rules_and_metadata_apply_end_to_end() {
    let nats = TestNats::start().await;
    let hook = FakeServer::webhook().await;
    let other = FakeServer::webhook().await;
    let dir = config_dir(&format!(
        "{}{}{}{}{}{}",
        provider("team", "hook", "generic", &hook.url("/e"), ""),
        provider(
            "team",
            "paused",
            "generic",
            &other.url("/e"),
            ", suspend: true"
        ),
        alert(
            "team",
            "filtered",
            "hook",
            "eventSources: [{kind: GitRepository, name: podinfo}, {kind: Kustomization, name: '*', namespace: apps}], \
             inclusionList: ['^deploy'], exclusionList: ['skip'], eventMetadata: {env: prod, revision: from-alert}, summary: 'Cluster A'"
        ),
        alert(
            "team",
            "suspended",
            "hook",
            "suspend: true, eventSources: [{kind: GitRepository, name: '*'}]"
        ),
        alert(
            "team",
            "to-paused",
            "paused",
            "eventSources: [{kind: GitRepository, name: '*'}]"
        ),
        alert(
            "team",
            "labels",
            "hook",
            "eventSources: [{kind: HelmRelease, name: '*', matchLabels: {team: a}}]"
        ),
    ));
    let herald = TestHerald::start(nats.url(), dir.path()).await;
    let posts = [
        event(
            "GitRepository",
            "team",
            "podinfo",
            "info",
            "deployed v1",
            r#""source.toolkit.fluxcd.io/revision":"main@sha1:aa","event.toolkit.fluxcd.io/env":"annotation""#,
        ),
        event("GitRepository", "team", "other", "info", "deployed v2", ""),
        event("Kustomization", "apps", "x", "info", "deployed v3 skip", ""),
        event("Kustomization", "apps", "y", "info", "not deployed", ""),
        event("Kustomization", "apps", "z", "info", "deployed v4", ""),
        event("HelmRelease", "team", "h", "info", "deployed v5", ""),
    ];
    for body in posts {
        assert_eq!(herald.post(body).await.0, 202);
    }
    hook.wait_for(2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let requests: Vec<_> = hook.requests().iter().map(|r| r.json()).collect();
    let messages: BTreeSet<_> = requests
        .iter()
        .map(|r| r["message"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        messages,
        ["deployed v1", "deployed v4"].map(String::from).into()
    );
    let podinfo = requests
        .iter()
        .find(|r| r["message"] == "deployed v1")
        .unwrap();
    // Controller metadata beats the Alert; the Alert beats the object's annotations.
    assert_eq!(
        podinfo["metadata"],
        serde_json::json!({"env": "prod", "revision": "main@sha1:aa", "summary": "Cluster A"})
    );
    assert!(
        other.requests().is_empty(),
        "a suspended Provider sends nothing"
    );
    herald.shutdown().await;
}

#[tokio::test]
async fn no_cross_namespace_refs_blocks_other_namespaces() {
    let nats = TestNats::start().await;
    let hook = FakeServer::webhook().await;
    let dir = config_dir(&format!(
        "{}{}",
        provider("team", "hook", "generic", &hook.url("/e"), ""),
        alert(
            "team",
            "a",
            "hook",
            "eventSources: [{kind: Kustomization, name: '*'}, {kind: Kustomization, name: '*', namespace: other}]"
        ),
    ));
    let mut options = Options::default();
    options.router_args.no_cross_namespace_refs = true;
    let herald = TestHerald::start_with(nats.url(), dir.path(), options).await;
    assert_eq!(
        herald
            .post(event(
                "Kustomization",
                "other",
                "x",
                "info",
                "from other",
                ""
            ))
            .await
            .0,
        202
    );
    assert_eq!(
        herald
            .post(event("Kustomization", "team", "y", "info", "from team", ""))
            .await
            .0,
        202
    );
    let requests = hook.wait_for(1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(hook.requests().len(), 1);
    assert_eq!(requests[0].json()["message"], "from team");
    assert!(
        metric(
            &herald,
            r#"herald_deliveries_skipped_total{reason="cross_namespace_denied",cluster="test"} 1"#
        )
        .await
    );
    herald.shutdown().await;
}

#[tokio::test]
async fn the_catalog_reloads_while_events_flow_without_losing_any() {
    let nats = TestNats::start().await;
    let before = FakeServer::webhook().await;
    let after = FakeServer::webhook().await;
    let first = format!(
        "{}{}",
        provider("apps", "before", "generic", &before.url("/e"), ""),
        alert(
            "apps",
            "a",
            "before",
            "eventSources: [{kind: Kustomization, name: '*'}]"
        ),
    );
    let dir = config_dir(&first);
    let herald = TestHerald::start(nats.url(), dir.path()).await;

    let sender = async {
        let mut accepted = Vec::new();
        for i in 0..150 {
            let message = format!("event {i}");
            let (status, _) = herald
                .post(event("Kustomization", "apps", "x", "info", &message, ""))
                .await;
            assert_eq!(status, 202);
            accepted.push(message);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        accepted
    };
    let editor = async {
        tokio::time::sleep(Duration::from_millis(400)).await;
        // Add a second Provider and Alert, and an invalid object beside them.
        std::fs::write(
            dir.path().join("more.yaml"),
            format!(
                "{}{}{}",
                provider("apps", "after", "generic", &after.url("/e"), ""),
                alert(
                    "apps",
                    "b",
                    "after",
                    "eventSources: [{kind: Kustomization, name: '*'}]"
                ),
                alert(
                    "apps",
                    "broken",
                    "after",
                    "eventSeverity: warning, eventSources: [{kind: Kustomization, name: '*'}]"
                ),
            ),
        )
        .unwrap();
    };
    let (accepted, ()) = tokio::join!(sender, editor);

    // Every accepted event reached the first provider, across the reload.
    let requests = before.wait_for(accepted.len()).await;
    let delivered: BTreeSet<_> = requests
        .iter()
        .map(|r| r.json()["message"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(delivered, accepted.iter().cloned().collect());
    // The second one got the later events.
    let later = after.wait_for(1).await;
    assert!(later.iter().any(|r| r.json()["message"] == "event 149"));
    // The invalid object is reported, the valid ones work.
    let (status, ready) = herald.admin("/readyz").await;
    assert_eq!(status, 200);
    assert!(
        ready.lines().any(|l| l.contains("catalog: more.yaml:")
            && l.contains(": Alert/apps/broken: spec.eventSeverity \"warning\" must be")),
        "{ready}"
    );

    // Deleting the file removes the Alert.
    std::fs::remove_file(dir.path().join("more.yaml")).unwrap();
    eventually("the Alert is gone", || async {
        (!herald.admin("/readyz").await.1.contains("more.yaml")).then_some(())
    })
    .await;
    let count = after.requests().len();
    assert_eq!(
        herald
            .post(event(
                "Kustomization",
                "apps",
                "x",
                "info",
                "after delete",
                ""
            ))
            .await
            .0,
        202
    );
    before.wait_for(accepted.len() + 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(after.requests().len(), count);
    herald.shutdown().await;
}

#[tokio::test]
async fn an_alert_naming_a_flux_operator_kind_routes_every_source() {
    let nats = TestNats::start().await;
    let hook = FakeServer::webhook().await;
    let dir = config_dir(&format!(
        "{}{}",
        provider("flux-system", "hook", "generic", &hook.url("/e"), ""),
        alert(
            "flux-system",
            "platform",
            "hook",
            "eventSources: [{kind: Kustomization, name: '*'}, {kind: FluxInstance, name: flux}]"
        ),
    ));
    let herald = TestHerald::start(nats.url(), dir.path()).await;
    let (status, ready) = herald.admin("/readyz").await;
    assert_eq!(
        status, 200,
        "a warning does not make Herald unready: {ready}"
    );
    assert!(
        ready.lines().any(|l| l.contains("catalog: warning: config.yaml:")
            && l.contains(": Alert/flux-system/platform: spec.eventSources[1].kind \"FluxInstance\" is a Flux Operator kind")),
        "{ready}"
    );

    for (kind, name) in [
        ("Kustomization", "apps"),
        ("FluxInstance", "flux"),
        ("FluxInstance", "other"),
    ] {
        let message = format!("{kind} {name}");
        let (status, _) = herald
            .post(event(kind, "flux-system", name, "info", &message, ""))
            .await;
        assert_eq!(status, 202);
    }
    hook.wait_for(2).await;
    // FluxInstance/other is not a source: nothing more comes.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let requests = hook.requests();
    assert_eq!(requests.len(), 2);
    let delivered: BTreeSet<_> = requests
        .iter()
        .map(|r| {
            let body = r.json();
            (
                body["involvedObject"]["kind"].as_str().unwrap().to_owned(),
                body["message"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        delivered,
        BTreeSet::from([
            ("FluxInstance".to_owned(), "FluxInstance flux".to_owned()),
            ("Kustomization".to_owned(), "Kustomization apps".to_owned()),
        ])
    );
    herald.shutdown().await;
}
