//! Flood control on unchanged Flux Alerts (`herald.dev/group-wait`,
//! `group-interval`, `group-by`, `repeat-threshold`, `recovery`), end to
//! end through ingest, router, HERALD_GROUPS and the senders' flusher, on a
//! real nats-server.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use futures::future::join_all;
use herald_flux::convert::to_time;
use herald_proto::{ObjectReference, names};
use herald_tests::fake::{FakeServer, Recorded};
use herald_tests::fixtures::{Event, Provider};
use herald_tests::herald::{Options, TestHerald, config_dir};
use herald_tests::nats::TestNats;
use prost::Message as _;

const NS: &str = "flux-system";

fn alert(name: &str, provider: &str, severity: &str, annotations: &str) -> String {
    format!(
        "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Alert\n\
         metadata: {{name: {name}, namespace: {NS}, annotations: {{{annotations}}}}}\n\
         spec: {{providerRef: {{name: {provider}}}, eventSeverity: {severity}, \
         eventSources: [{{kind: Kustomization, name: '*'}}]}}\n---\n"
    )
}

/// A generic Provider `hook` on `hook`'s address and one Alert on it.
fn on_hook(hook: &FakeServer, alert_name: &str, severity: &str, annotations: &str) -> String {
    format!(
        "{}{}",
        Provider::new(NS, "hook", "generic").address(&hook.url("/h")),
        alert(alert_name, "hook", severity, annotations),
    )
}

fn event(name: &str, severity: &str, reason: &str, message: &str) -> String {
    Event::new("Kustomization", NS, name)
        .severity(severity)
        .reason(reason)
        .message(message)
        .now()
        .json()
}

/// Posts every event at once.
async fn post_all(herald: &TestHerald, events: Vec<String>) {
    let answers = join_all(events.into_iter().map(|e| herald.post(e))).await;
    for (status, body) in answers {
        assert_eq!(status, 202, "{body}");
    }
}

/// An event from `cluster`, stored as the hub's ingest stores it.
async fn publish_from(nats: &TestNats, cluster: &str, name: &str) {
    let event = herald_proto::Event {
        id: format!("{cluster}-{name}"),
        cluster: cluster.to_owned(),
        severity: "error".to_owned(),
        reason: "HealthCheckFailed".to_owned(),
        message: format!("{name} in {cluster} is not ready"),
        reporting_controller: "kustomize-controller".to_owned(),
        timestamp: Some(to_time(jiff::Timestamp::now())),
        involved_object: Some(ObjectReference {
            kind: "Kustomization".to_owned(),
            namespace: NS.to_owned(),
            name: name.to_owned(),
            ..ObjectReference::default()
        }),
        ..herald_proto::Event::default()
    };
    nats.jetstream()
        .await
        .publish(names::event_subject(cluster), event.encode_to_vec().into())
        .await
        .expect("publish")
        .await
        .expect("stored");
}

/// The message of a generic webhook request.
fn message(request: &Recorded) -> String {
    request.json()["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The event lines of a digest (after its header line).
fn lines(message: &str) -> Vec<String> {
    message.lines().skip(1).map(str::to_owned).collect()
}

/// Waits until HERALD_GROUPS is empty (every group flushed) and every
/// digest was sent.
async fn flushed(nats: &TestNats) {
    herald_tests::eventually("every group flushed", || async {
        (nats.stream_messages(names::GROUPS_STREAM).await == 0).then_some(())
    })
    .await;
    herald_tests::fixtures::deliveries_drained(nats).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_to_a_grouped_alert_becomes_one_digest_naming_every_event() {
    let nats = TestNats::start().await;
    let slack = FakeServer::slack().await;
    let manifests = format!(
        "{}{}",
        Provider::new(NS, "chat", "slack").address(&slack.url("/services/T/B/X")),
        alert(
            "outage",
            "chat",
            "error",
            "herald.dev/group-wait: 3s, herald.dev/group-by: alert"
        ),
    );
    let dir = config_dir(&manifests);
    let herald = TestHerald::start(nats.url(), dir.path()).await;
    let events = (0..60)
        .map(|i| {
            event(
                &format!("app-{i:02}"),
                "error",
                "HealthCheckFailed",
                &format!("app-{i:02} not ready\ndetails"),
            )
        })
        .collect();
    post_all(&herald, events).await;
    let requests = slack.wait_for(1).await;
    flushed(&nats).await;
    let requests = if requests.len() == 1 {
        slack.requests()
    } else {
        requests
    };
    assert_eq!(requests.len(), 1, "one digest");
    let body = requests[0].json();
    let text = body["attachments"][0]["text"].as_str().unwrap_or_default();
    assert!(text.chars().count() <= 40_000);
    assert!(
        text.starts_with("60 events (60 errors) from 1 clusters:"),
        "{text}"
    );
    let named: BTreeSet<String> = lines(text).into_iter().collect();
    let expected: BTreeSet<String> = (0..60)
        .map(|i| {
            format!("Kustomization/app-{i:02}.flux-system [test] HealthCheckFailed: app-{i:02} not ready")
        })
        .collect();
    assert_eq!(named, expected);
    let fields = body["attachments"][0]["fields"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        fields
            .iter()
            .any(|f| f["title"] == "events" && f["value"] == "60"),
        "{fields:?}"
    );
    assert_eq!(herald.metrics.events_grouped.get(), 60);
    assert_eq!(herald.metrics.digests_sent.get(), 1);
    herald.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn events_after_a_digest_gather_for_the_group_interval() {
    let nats = TestNats::start().await;
    let hook = FakeServer::webhook().await;
    let manifests = on_hook(
        &hook,
        "outage",
        "info",
        "herald.dev/group-wait: 1s, herald.dev/group-interval: 3s",
    );
    let dir = config_dir(&manifests);
    let herald = TestHerald::start(nats.url(), dir.path()).await;
    let first: Vec<String> = (0..3)
        .map(|i| event(&format!("first-{i}"), "error", "BuildFailed", "failed"))
        .collect();
    post_all(&herald, first).await;
    let digest = hook.wait_for(1).await;
    let first_at = Instant::now();
    assert_eq!(lines(&message(&digest[0])).len(), 3);
    let later: Vec<String> = (0..2)
        .map(|i| event(&format!("later-{i}"), "error", "BuildFailed", "failed"))
        .collect();
    post_all(&herald, later).await;
    let digests = hook.wait_for(2).await;
    // The second digest waited for the interval after the first.
    assert!(
        first_at.elapsed() >= Duration::from_secs(2),
        "{:?}",
        first_at.elapsed()
    );
    let second = lines(&message(&digests[1]));
    assert_eq!(second.len(), 2, "{second:?}");
    assert!(second.iter().all(|l| l.starts_with("Kustomization/later-")));
    flushed(&nats).await;
    assert_eq!(hook.requests().len(), 2);
    herald.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn grouping_by_cluster_makes_one_digest_per_cluster() {
    let nats = TestNats::start().await;
    let hook = FakeServer::webhook().await;
    let manifests = on_hook(&hook, "outage", "error", "herald.dev/group-wait: 2s");
    let dir = config_dir(&manifests);
    let herald = TestHerald::start(nats.url(), dir.path()).await;
    for cluster in ["shop-eu", "shop-us", "shop-ap"] {
        for name in ["apps", "infra"] {
            publish_from(&nats, cluster, name).await;
        }
    }
    let digests = hook.wait_for(3).await;
    flushed(&nats).await;
    assert_eq!(hook.requests().len(), 3);
    let mut seen = BTreeSet::new();
    for digest in &digests {
        let cluster = digest.json()["metadata"]["clusters"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let named = lines(&message(digest));
        assert_eq!(named.len(), 2, "{named:?}");
        assert!(
            named.iter().all(|l| l.contains(&format!("[{cluster}]"))),
            "{cluster}: {named:?}"
        );
        seen.insert(cluster);
    }
    assert_eq!(
        seen,
        BTreeSet::from(["shop-ap".into(), "shop-eu".into(), "shop-us".into()])
    );
    herald.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sender_restarted_between_gathering_and_flushing_still_flushes() {
    let nats = TestNats::start().await;
    let hook = FakeServer::webhook().await;
    let manifests = on_hook(&hook, "outage", "error", "herald.dev/group-wait: 2s");
    let dir = config_dir(&manifests);
    let herald = TestHerald::start(nats.url(), dir.path()).await;
    post_all(
        &herald,
        (0..5)
            .map(|i| event(&format!("app-{i}"), "error", "BuildFailed", "failed"))
            .collect(),
    )
    .await;
    herald_tests::eventually("the events gathered", || async {
        (nats.stream_messages(names::GROUPS_STREAM).await == 5).then_some(())
    })
    .await;
    // Everything stops before the group is due; nothing was sent.
    herald.shutdown().await;
    assert!(hook.requests().is_empty());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sender = TestHerald::start_with(nats.url(), dir.path(), Options::senders_only()).await;
    let digest = hook.wait_for(1).await;
    flushed(&nats).await;
    assert_eq!(hook.requests().len(), 1);
    assert_eq!(lines(&message(&digest[0])).len(), 5);
    sender.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_senders_flush_each_group_once() {
    let nats = TestNats::start().await;
    let hook = FakeServer::webhook().await;
    let manifests = on_hook(
        &hook,
        "outage",
        "error",
        "herald.dev/group-wait: 1s, herald.dev/group-interval: 1s",
    );
    let dir = config_dir(&manifests);
    let herald = TestHerald::start(nats.url(), dir.path()).await;
    let second = TestHerald::start_with(nats.url(), dir.path(), Options::senders_only()).await;
    let clusters: Vec<String> = (0..8).map(|i| format!("shop-{i}")).collect();
    for round in 0..3 {
        for cluster in &clusters {
            publish_from(&nats, cluster, &format!("app-{round}")).await;
        }
    }
    herald_tests::eventually("every event named", || async {
        let named: usize = hook
            .requests()
            .iter()
            .map(|r| lines(&message(r)).len())
            .sum();
        (named >= 24).then_some(())
    })
    .await;
    flushed(&nats).await;
    let mut named = Vec::new();
    for request in hook.requests() {
        named.extend(lines(&message(&request)));
    }
    let distinct: BTreeSet<&String> = named.iter().collect();
    assert_eq!(named.len(), 24, "each event named once: {named:?}");
    assert_eq!(distinct.len(), 24);
    assert_eq!(
        herald.metrics.digests_sent.get() + second.metrics.digests_sent.get(),
        hook.requests().len() as u64
    );
    herald.shutdown().await;
    second.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_repeat_threshold_holds_events_back_until_seen_n_times() {
    let nats = TestNats::start().await;
    let hook = FakeServer::webhook().await;
    let manifests = on_hook(
        &hook,
        "flaps",
        "error",
        "herald.dev/repeat-threshold: 3/10m",
    );
    let dir = config_dir(&manifests);
    let herald = TestHerald::start(nats.url(), dir.path()).await;
    for attempt in 1..=2 {
        let body = event(
            "apps",
            "error",
            "HealthCheckFailed",
            &format!("attempt {attempt}"),
        );
        assert_eq!(herald.post(body).await.0, 202);
    }
    // Another object's event counts for itself.
    let other = event("infra", "error", "HealthCheckFailed", "attempt 1");
    assert_eq!(herald.post(other).await.0, 202);
    herald_tests::eventually("three events held back", || async {
        (herald.metrics.events_held_back.get() == 3).then_some(())
    })
    .await;
    assert!(hook.requests().is_empty());
    let third = event("apps", "error", "HealthCheckFailed", "attempt 3");
    assert_eq!(herald.post(third).await.0, 202);
    let sent = hook.wait_for(1).await;
    herald_tests::fixtures::deliveries_drained(&nats).await;
    assert_eq!(hook.requests().len(), 1);
    assert_eq!(message(&sent[0]), "attempt 3");
    assert_eq!(sent[0].json()["involvedObject"]["name"], "apps");
    herald.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_recovery_is_sent_once_after_a_notified_error() {
    let nats = TestNats::start().await;
    let hook = FakeServer::webhook().await;
    let manifests = on_hook(&hook, "oncall", "error", "herald.dev/recovery: 'true'");
    let dir = config_dir(&manifests);
    let herald = TestHerald::start(nats.url(), dir.path()).await;
    // An object that never failed: its success is not heard (eventSeverity: error).
    let quiet = event(
        "infra",
        "info",
        "ReconciliationSucceeded",
        "Applied revision: main@sha1:1",
    );
    assert_eq!(herald.post(quiet).await.0, 202);
    let failed = event("apps", "error", "HealthCheckFailed", "apps not ready");
    assert_eq!(herald.post(failed).await.0, 202);
    hook.wait_for(1).await;
    herald_tests::fixtures::deliveries_drained(&nats).await;
    let recovered = event(
        "apps",
        "info",
        "ReconciliationSucceeded",
        "Applied revision: main@sha1:2",
    );
    assert_eq!(herald.post(recovered).await.0, 202);
    let sent = hook.wait_for(2).await;
    let recovery = message(&sent[1]);
    assert!(
        recovery.starts_with("recovered after ")
            && recovery.ends_with("(HealthCheckFailed before): Applied revision: main@sha1:2"),
        "{recovery}"
    );
    assert_eq!(sent[1].json()["severity"], "info");
    let again = event(
        "apps",
        "info",
        "ReconciliationSucceeded",
        "Applied revision: main@sha1:3",
    );
    assert_eq!(herald.post(again).await.0, 202);
    herald_tests::eventually("the later success routed", || async {
        (herald
            .metrics
            .events_routed
            .get_or_create(&herald_runtime::metrics::ClusterLabels {
                cluster: "test".to_owned(),
            })
            .get()
            == 4)
            .then_some(())
    })
    .await;
    herald_tests::fixtures::deliveries_drained(&nats).await;
    assert_eq!(hook.requests().len(), 2, "one recovery, once");
    assert_eq!(herald.metrics.recoveries.get(), 1);
    herald.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_recovery_is_part_of_the_digest_when_grouped() {
    let nats = TestNats::start().await;
    let hook = FakeServer::webhook().await;
    let manifests = on_hook(
        &hook,
        "oncall",
        "error",
        "herald.dev/recovery: 'true', herald.dev/group-wait: 1s, herald.dev/group-interval: 1s",
    );
    let dir = config_dir(&manifests);
    let herald = TestHerald::start(nats.url(), dir.path()).await;
    post_all(
        &herald,
        vec![
            event("apps", "error", "HealthCheckFailed", "apps not ready"),
            event("infra", "error", "HealthCheckFailed", "infra not ready"),
        ],
    )
    .await;
    hook.wait_for(1).await;
    post_all(
        &herald,
        vec![
            event(
                "apps",
                "info",
                "ReconciliationSucceeded",
                "Applied revision: main@sha1:2",
            ),
            event(
                "infra",
                "error",
                "HealthCheckFailed",
                "infra still not ready",
            ),
        ],
    )
    .await;
    let digests = hook.wait_for(2).await;
    flushed(&nats).await;
    let second = lines(&message(&digests[1]));
    assert_eq!(second.len(), 2, "{second:?}");
    assert!(
        second.iter().any(|l| l.starts_with(
            "Kustomization/apps.flux-system [test] ReconciliationSucceeded: recovered after "
        )),
        "{second:?}"
    );
    assert!(message(&digests[1]).starts_with("2 events (1 errors)"));
    herald.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_settings_are_problems_and_events_are_still_delivered() {
    let nats = TestNats::start().await;
    let hook = FakeServer::webhook().await;
    let manifests = on_hook(
        &hook,
        "bad",
        "error",
        "herald.dev/group-wait: soon, herald.dev/repeat-threshold: often",
    );
    let dir = config_dir(&manifests);
    let herald = TestHerald::start(nats.url(), dir.path()).await;
    let (_, ready) = herald.admin("/readyz").await;
    assert!(
        ready.contains("annotation herald.dev/group-wait \"soon\" is not a duration"),
        "{ready}"
    );
    assert!(
        ready.contains("herald.dev/repeat-threshold \"often\" must be N/window"),
        "{ready}"
    );
    let body = event("apps", "error", "BuildFailed", "failed");
    assert_eq!(herald.post(body).await.0, 202);
    let sent = hook.wait_for(1).await;
    assert_eq!(message(&sent[0]), "failed");
    herald.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn commit_statuses_are_never_grouped() {
    const SHA: &str = "67e2c98a60dc92283531412a9e604dd4bae005a9";
    let nats = TestNats::start().await;
    let github = herald_tests::fake::github::FakeGitHub::start().await;
    let manifests = format!(
        "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Provider\n\
         metadata: {{name: github, namespace: {NS}}}\n\
         spec: {{type: github, address: '{}', secretRef: {{name: github-token}}}}\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata: {{name: github-token, namespace: {NS}}}\nstringData: {{token: ghp-test}}\n---\n{}",
        github.url("/org/podinfo.git"),
        alert("statuses", "github", "info", "herald.dev/group-wait: 1m"),
    );
    let dir = config_dir(&manifests);
    let herald = TestHerald::start(nats.url(), dir.path()).await;
    let (_, ready) = herald.admin("/readyz").await;
    assert!(ready.contains("writes commit statuses"), "{ready}");
    let body = Event::new("Kustomization", NS, "apps")
        .severity("error")
        .reason("HealthCheckFailed")
        .message("apps not ready")
        .metadata(
            "kustomize.toolkit.fluxcd.io/revision",
            &format!("main@sha1:{SHA}"),
        )
        .now()
        .json();
    assert_eq!(herald.post(body).await.0, 202);
    herald_tests::eventually("the status written at once", || async {
        (!github.statuses("org/podinfo", SHA).is_empty()).then_some(())
    })
    .await;
    assert_eq!(github.statuses("org/podinfo", SHA)[0]["state"], "failure");
    assert_eq!(nats.stream_messages(names::GROUPS_STREAM).await, 0);
    assert_eq!(herald.metrics.events_grouped.get(), 0);
    herald.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flusher_lost_between_publishing_and_removing_loses_nothing_and_sends_nothing_twice() {
    use herald_senders::groups::{Flusher, Stage};
    let nats = TestNats::start().await;
    let hook = FakeServer::webhook().await;
    let manifests = on_hook(
        &hook,
        "outage",
        "error",
        "herald.dev/group-wait: 500ms, herald.dev/group-interval: 1s",
    );
    let dir = config_dir(&manifests);
    // Ingest and router only: the flushers are driven by hand.
    let herald = TestHerald::start_with(
        nats.url(),
        dir.path(),
        Options {
            sender: false,
            ..Options::default()
        },
    )
    .await;
    let flood = herald
        .nats()
        .ensure_flood_buckets()
        .await
        .expect("flood buckets");
    let flusher = |claim| {
        Flusher::new(
            herald.nats().clone(),
            herald.metrics.clone(),
            flood.due.clone(),
        )
        .with_claim(claim)
    };
    post_all(
        &herald,
        (0..4)
            .map(|i| event(&format!("app-{i}"), "error", "BuildFailed", "failed"))
            .collect(),
    )
    .await;
    herald_tests::eventually("the events gathered", || async {
        (nats.stream_messages(names::GROUPS_STREAM).await == 4).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    // The first flusher publishes its digest and is lost before removing
    // what it flushed.
    flusher(Duration::from_millis(500))
        .tick_until(Stage::Published)
        .await
        .expect("first flush");
    assert_eq!(nats.stream_messages(names::DELIVERIES_STREAM).await, 1);
    assert_eq!(nats.stream_messages(names::GROUPS_STREAM).await, 4);
    // An event arrives meanwhile; it is not part of the lost flush.
    post_all(
        &herald,
        vec![event("late", "error", "BuildFailed", "failed")],
    )
    .await;
    herald_tests::eventually("the late event gathered", || async {
        (nats.stream_messages(names::GROUPS_STREAM).await == 5).then_some(())
    })
    .await;
    // Another flusher takes the group over once the claim lapsed: the same
    // digest again (stored once), then the removal.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let second = flusher(Duration::from_secs(30));
    second.tick().await.expect("second flush");
    assert_eq!(nats.stream_messages(names::DELIVERIES_STREAM).await, 1);
    assert_eq!(nats.stream_messages(names::GROUPS_STREAM).await, 1);
    // A sender sends the digest, then the late event's after the interval.
    let sender = TestHerald::start_with(nats.url(), dir.path(), Options::senders_only()).await;
    let digests = hook.wait_for(2).await;
    flushed(&nats).await;
    assert_eq!(hook.requests().len(), 2);
    let first: BTreeSet<String> = lines(&message(&digests[0])).into_iter().collect();
    assert_eq!(first.len(), 4, "{first:?}");
    assert!(first.iter().all(|l| l.starts_with("Kustomization/app-")));
    let late = lines(&message(&digests[1]));
    assert_eq!(late.len(), 1);
    assert!(late[0].starts_with("Kustomization/late.flux-system"));
    sender.shutdown().await;
    herald.shutdown().await;
}
