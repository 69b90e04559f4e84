//! Writing back to Kubernetes, against the fake API server: Events
//! aggregated and rate-limited, the Ready condition in `/status` where the
//! version has one, and one leader among replicas through a Lease.

use std::time::Duration;

use herald_runtime::kubernetes::{
    EventSettings, EventType, Leadership, LeaseSettings, ObjectEvents, Ready, StatusOutcome,
    StatusWriter,
};
use herald_tests::kube::{FakeKube, KubeRequest};
use herald_tests::{eventually, init, patience};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{ApiResource, GroupVersionKind};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const NOTIFICATION: &str = "notification.toolkit.fluxcd.io";
const NAMESPACE: &str = "flux-system";

async fn client(fake: &FakeKube, dir: &tempfile::TempDir) -> Client {
    let kubeconfig = Kubeconfig::read_from(fake.kubeconfig(dir.path())).expect("kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("config");
    Client::try_from(config).expect("client")
}

/// Applies an Alert and returns a reference to it, uid included.
fn alert(fake: &FakeKube, name: &str, version: &str, extra: &str) -> ObjectReference {
    let stored = fake.apply(&format!(
        "apiVersion: {NOTIFICATION}/{version}
kind: Alert
metadata:
  name: {name}
  namespace: {NAMESPACE}
spec:
  summary: s
  providerRef:
    name: slack
  eventSources:
    - kind: Kustomization
      name: '*'
{extra}"
    ));
    ObjectReference {
        api_version: Some(format!("{NOTIFICATION}/{version}")),
        kind: Some("Alert".to_owned()),
        name: Some(name.to_owned()),
        namespace: Some(NAMESPACE.to_owned()),
        uid: stored["metadata"]["uid"].as_str().map(str::to_owned),
        ..ObjectReference::default()
    }
}

fn alerts(version: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(NOTIFICATION, version, "Alert"),
        "alerts",
    )
}

fn count(fake: &FakeKube, what: impl Fn(&KubeRequest) -> bool) -> usize {
    fake.requests().iter().filter(|r| what(r)).count()
}

fn event_posts(fake: &FakeKube) -> usize {
    count(fake, |r| {
        r.method == "POST"
            && r.path == format!("/apis/events.k8s.io/v1/namespaces/{NAMESPACE}/events")
    })
}

fn event_patches(fake: &FakeKube) -> usize {
    count(fake, |r| {
        r.method == "PATCH" && r.path.starts_with("/apis/events.k8s.io/v1/")
    })
}

fn status_patches(fake: &FakeKube) -> usize {
    count(fake, |r| r.method == "PATCH" && r.path.ends_with("/status"))
}

fn event_settings() -> EventSettings {
    EventSettings {
        instance: "herald-0".to_owned(),
        flush_interval: Duration::from_millis(200),
        ..EventSettings::default()
    }
}

struct Events {
    events: ObjectEvents,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

async fn start_events(fake: &FakeKube, dir: &tempfile::TempDir, settings: EventSettings) -> Events {
    let cancel = CancellationToken::new();
    let (events, task) = ObjectEvents::start(client(fake, dir).await, settings, cancel.clone());
    Events {
        events,
        cancel,
        task: tokio::spawn(task),
    }
}

// === impl Events ===

impl Events {
    async fn stop(self) {
        self.cancel.cancel();
        tokio::time::timeout(patience(), self.task)
            .await
            .expect("the Events task ends on cancel")
            .expect("the Events task does not panic");
    }
}

fn regarding<'a>(events: &'a [Value], name: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["regarding"]["name"] == name)
        .collect()
}

#[tokio::test]
async fn repeats_aggregate_into_one_event_with_a_series() {
    init();
    let fake = FakeKube::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let a = alert(&fake, "a", "v1beta3", "");
    let events = start_events(&fake, &dir, event_settings()).await;

    for _ in 0..1000 {
        events.events.emit(
            &a,
            EventType::Warning,
            "DeliveryFailed",
            "Deliver",
            "dead letter: slack answered 500",
        );
    }
    let stored = eventually("the series counts 1000", || async {
        let stored = fake.events();
        (stored.len() == 1 && stored[0]["series"]["count"] == 1000).then_some(stored)
    })
    .await;
    let event = &stored[0];
    assert_eq!(event_posts(&fake), 1);
    let patches = event_patches(&fake);
    assert!((1..=2).contains(&patches), "{patches} series patches");
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["reason"], "DeliveryFailed");
    assert_eq!(event["action"], "Deliver");
    assert_eq!(event["note"], "dead letter: slack answered 500");
    assert_eq!(event["reportingController"], "herald");
    assert_eq!(event["reportingInstance"], "herald-0");
    assert_eq!(event["regarding"]["kind"], "Alert");
    assert_eq!(
        event["regarding"]["uid"],
        a.uid.as_deref().unwrap_or_default()
    );
    assert_eq!(event["metadata"]["namespace"], NAMESPACE);
    assert!(
        event["metadata"]["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("a.")),
        "{event}"
    );
    assert!(event["eventTime"].is_string(), "{event}");
    assert!(event["series"]["lastObservedTime"].is_string(), "{event}");

    // Another note is another Event; the same note again adds to the series.
    events.events.emit(
        &a,
        EventType::Normal,
        "Delivered",
        "Deliver",
        "sent to slack",
    );
    events.events.emit(
        &a,
        EventType::Warning,
        "DeliveryFailed",
        "Deliver",
        "dead letter: slack answered 500",
    );
    eventually("a second Event and the series at 1001", || async {
        let stored = fake.events();
        (stored.len() == 2
            && stored
                .iter()
                .any(|e| e["reason"] == "Delivered" && e.get("series").is_none())
            && stored.iter().any(|e| e["series"]["count"] == 1001))
        .then_some(())
    })
    .await;
    // Counted once the answers are in: after the task ended.
    let handle = events.events.clone();
    events.stop().await;
    let stats = handle.stats();
    assert_eq!((stats.created, stats.dropped, stats.failed), (2, 0, 0));
    assert_eq!(stats.patched as usize, event_patches(&fake));
}

#[tokio::test]
async fn a_storm_of_distinct_notes_is_limited_per_object() {
    init();
    let fake = FakeKube::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let a = alert(&fake, "a", "v1beta3", "");
    let b = alert(&fake, "b", "v1beta3", "");
    let settings = EventSettings {
        burst: 5,
        refill: Duration::from_secs(3600),
        ..event_settings()
    };
    let events = start_events(&fake, &dir, settings).await;
    for i in 0..50 {
        events.events.emit(
            &a,
            EventType::Warning,
            "DeliveryFailed",
            "Deliver",
            &format!("event {i} failed"),
        );
    }
    events
        .events
        .emit(&b, EventType::Warning, "DeliveryFailed", "Deliver", "once");
    let stats = eventually("every occurrence decided", || async {
        let stats = events.events.stats();
        (stats.created + stats.dropped == 51).then_some(stats)
    })
    .await;
    assert_eq!((stats.created, stats.dropped), (6, 45));
    assert_eq!(event_posts(&fake), 6);
    let stored = fake.events();
    assert_eq!(regarding(&stored, "a").len(), 5);
    assert_eq!(
        regarding(&stored, "b").len(),
        1,
        "another object has its own limit"
    );

    // A repeat of a note that made it is still counted, not dropped.
    events.events.emit(
        &a,
        EventType::Warning,
        "DeliveryFailed",
        "Deliver",
        "event 0 failed",
    );
    eventually("the repeat patched", || async {
        fake.events()
            .iter()
            .any(|e| e["series"]["count"] == 2)
            .then_some(())
    })
    .await;
    assert_eq!(events.events.stats().dropped, 45);
    events.stop().await;
}

#[tokio::test]
async fn notes_are_cut_to_1_kib_and_reasons_to_128_bytes() {
    init();
    let fake = FakeKube::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let a = alert(&fake, "a", "v1beta3", "");
    let events = start_events(&fake, &dir, event_settings()).await;
    let note = "é".repeat(1000);
    let reason = "R".repeat(200);
    events
        .events
        .emit(&a, EventType::Warning, &reason, "Deliver", &note);
    let stored = eventually("the Event", || async { fake.events().into_iter().next() }).await;
    let stored_note = stored["note"].as_str().expect("a note");
    assert!(stored_note.len() <= 1024, "{} bytes", stored_note.len());
    assert!(stored_note.len() > 1000, "{} bytes", stored_note.len());
    assert!(stored_note.ends_with('…'));
    assert!(stored_note.trim_end_matches('…').chars().all(|c| c == 'é'));
    assert_eq!(stored["reason"].as_str().map(str::len), Some(128));
    events.stop().await;
}

#[tokio::test]
async fn a_forgotten_key_creates_a_new_event() {
    init();
    let fake = FakeKube::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let a = alert(&fake, "a", "v1beta3", "");
    let forget_after = Duration::from_millis(300);
    let settings = EventSettings {
        forget_after,
        ..event_settings()
    };
    let events = start_events(&fake, &dir, settings).await;
    let emit = || {
        events
            .events
            .emit(&a, EventType::Warning, "DeliveryFailed", "Deliver", "x");
    };
    emit();
    eventually("the first Event", || async {
        (fake.events().len() == 1).then_some(())
    })
    .await;
    // Quiet for longer than forget_after, on the task's clock too: it saw
    // the first occurrence before the Event existed.
    tokio::time::sleep(forget_after + Duration::from_millis(100)).await;
    emit();
    eventually("a second Event", || async {
        (fake.events().len() == 2).then_some(())
    })
    .await;
    assert_eq!(event_posts(&fake), 2);
    assert_eq!(event_patches(&fake), 0);
    events.stop().await;
}

#[tokio::test]
async fn a_failed_write_is_counted_and_not_retried() {
    init();
    let fake = FakeKube::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let a = alert(&fake, "a", "v1beta3", "");
    let b = alert(&fake, "b", "v1beta3", "");
    let settings = EventSettings {
        flush_interval: Duration::from_millis(50),
        ..event_settings()
    };
    let events = start_events(&fake, &dir, settings).await;
    fake.fail_requests(Some(403));
    events
        .events
        .emit(&a, EventType::Warning, "DeliveryFailed", "Deliver", "x");
    eventually("the refused create", || async {
        (events.events.stats().failed == 1).then_some(())
    })
    .await;
    fake.fail_requests(None);

    // Flushes run (b's repeat is patched), and none of them retries a.
    for _ in 0..2 {
        events
            .events
            .emit(&b, EventType::Warning, "DeliveryFailed", "Deliver", "y");
    }
    eventually("b's series", || async {
        fake.events()
            .iter()
            .any(|e| e["series"]["count"] == 2)
            .then_some(())
    })
    .await;
    assert_eq!(event_posts(&fake), 2, "one refused for a, one for b");
    assert!(regarding(&fake.events(), "a").is_empty());
    let stats = events.events.stats();
    assert_eq!((stats.created, stats.failed), (1, 1));
    events.stop().await;
}

#[tokio::test]
async fn ready_is_written_to_v1beta2_status_only_when_it_changes() {
    init();
    let fake = FakeKube::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    alert(
        &fake,
        "s",
        "v1beta2",
        "status:
  conditions:
    - type: Reconciling
      status: 'True'
      reason: Progressing
      message: ''
      lastTransitionTime: '2020-01-01T00:00:00Z'
",
    );
    let writer = StatusWriter::new(client(&fake, &dir).await);
    let v1beta2 = alerts("v1beta2");
    let ready = |ok: bool, reason: &str, message: &str| Ready {
        ready: ok,
        reason: reason.to_owned(),
        message: message.to_owned(),
    };
    let write = |generation: i64, ready: Ready| {
        let (writer, v1beta2) = (writer.clone(), v1beta2.clone());
        async move {
            writer
                .write_ready(&v1beta2, NAMESPACE, "s", generation, &ready)
                .await
                .expect("write the status")
        }
    };
    let status = || fake.objects(&format!("{NOTIFICATION}/v1beta2"), "Alert")[0]["status"].clone();
    let condition = |status: &Value| -> Value {
        status["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
            .cloned()
            .expect("a Ready condition")
    };

    assert_eq!(
        write(1, ready(true, "Succeeded", "Delivering to slack")).await,
        StatusOutcome::Written
    );
    let first = status();
    assert_eq!(first["observedGeneration"], 1);
    let written = condition(&first);
    assert_eq!(written["status"], "True");
    assert_eq!(written["reason"], "Succeeded");
    assert_eq!(written["message"], "Delivering to slack");
    assert_eq!(written["observedGeneration"], 1);
    let since = written["lastTransitionTime"]
        .as_str()
        .expect("lastTransitionTime")
        .to_owned();
    since
        .parse::<jiff::Timestamp>()
        .expect("lastTransitionTime is RFC 3339");
    assert_eq!(
        first["conditions"][0]["type"], "Reconciling",
        "other conditions kept"
    );
    assert_eq!(status_patches(&fake), 1);

    assert_eq!(
        write(1, ready(true, "Succeeded", "Delivering to slack")).await,
        StatusOutcome::Unchanged
    );
    assert_eq!(status_patches(&fake), 1, "nothing written when unchanged");

    // Same status, new message: the transition time stays.
    assert_eq!(
        write(1, ready(true, "Succeeded", "Delivering to slack and teams")).await,
        StatusOutcome::Written
    );
    assert_eq!(condition(&status())["lastTransitionTime"], since.as_str());

    // A new generation is written even when the condition is the same.
    fake.apply(&format!(
        "apiVersion: {NOTIFICATION}/v1beta2
kind: Alert
metadata: {{name: s, namespace: {NAMESPACE}}}
spec: {{summary: changed, providerRef: {{name: slack}}, eventSources: [{{kind: Kustomization, name: '*'}}]}}"
    ));
    let generation =
        fake.objects(&format!("{NOTIFICATION}/v1beta2"), "Alert")[0]["metadata"]["generation"]
            .as_i64()
            .expect("generation");
    assert_eq!(generation, 2);
    assert_eq!(
        write(2, ready(true, "Succeeded", "Delivering to slack and teams")).await,
        StatusOutcome::Written
    );
    assert_eq!(status()["observedGeneration"], 2);
    assert_eq!(condition(&status())["observedGeneration"], 2);

    assert_eq!(
        write(
            2,
            ready(false, "ProviderNotFound", "Provider slack not found")
        )
        .await,
        StatusOutcome::Written
    );
    let failed = condition(&status());
    assert_eq!(failed["status"], "False");
    assert_eq!(failed["reason"], "ProviderNotFound");
    assert_eq!(status_patches(&fake), 4);
}

#[tokio::test]
async fn v1beta3_has_no_status_after_one_patch() {
    init();
    let fake = FakeKube::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    alert(&fake, "s", "v1beta3", "");
    let writer = StatusWriter::new(client(&fake, &dir).await);
    let ready = Ready {
        ready: true,
        reason: "Succeeded".to_owned(),
        message: String::new(),
    };
    let outcome = writer
        .write_ready(&alerts("v1beta3"), NAMESPACE, "s", 1, &ready)
        .await
        .expect("an outcome");
    assert_eq!(outcome, StatusOutcome::NoStatus);
    assert_eq!(status_patches(&fake), 1);
}

#[tokio::test]
async fn a_missing_object_is_gone() {
    init();
    let fake = FakeKube::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let writer = StatusWriter::new(client(&fake, &dir).await);
    let ready = Ready {
        ready: false,
        reason: "Failed".to_owned(),
        message: "x".to_owned(),
    };
    for version in ["v1beta2", "v1beta3"] {
        let outcome = writer
            .write_ready(&alerts(version), NAMESPACE, "missing", 1, &ready)
            .await
            .expect("an outcome");
        assert_eq!(outcome, StatusOutcome::Gone, "{version}");
    }
    assert_eq!(status_patches(&fake), 0);
}

// === leadership ===

const LEASE: &str = "herald-leader";

struct Replica {
    identity: &'static str,
    leadership: Leadership,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

fn lease_settings(duration: Duration) -> LeaseSettings {
    LeaseSettings {
        duration,
        renew_every: Duration::from_millis(100),
        retry_every: Duration::from_millis(50),
    }
}

async fn replica(
    fake: &FakeKube,
    dir: &tempfile::TempDir,
    identity: &'static str,
    settings: LeaseSettings,
) -> Replica {
    let cancel = CancellationToken::new();
    let (leadership, task) = Leadership::start(
        client(fake, dir).await,
        "herald",
        LEASE,
        identity.to_owned(),
        settings,
        cancel.clone(),
    );
    Replica {
        identity,
        leadership,
        cancel,
        task: tokio::spawn(task),
    }
}

fn lease(fake: &FakeKube) -> Value {
    fake.objects("coordination.k8s.io/v1", "Lease")
        .into_iter()
        .find(|l| l["metadata"]["name"] == LEASE)
        .expect("the Lease")
}

async fn leads(replica: &Replica) {
    let mut changes = replica.leadership.subscribe();
    tokio::time::timeout(patience(), changes.wait_for(|leads| *leads))
        .await
        .unwrap_or_else(|_| panic!("{} never led", replica.identity))
        .expect("the Lease task runs");
}

/// Waits until one of `replicas` leads and the Lease names it, checking at
/// every look that no two lead, until the leader has renewed `renewals` times.
async fn one_leads<'a>(
    fake: &FakeKube,
    replicas: [&'a Replica; 2],
    renewals: usize,
) -> &'a Replica {
    let leader = eventually("one replica leads", || async {
        replicas.into_iter().find(|r| r.leadership.is_leader())
    })
    .await;
    let mut renew_times: Vec<Value> = Vec::new();
    let deadline = tokio::time::Instant::now() + patience();
    while renew_times.len() <= renewals {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the leader never renewed"
        );
        let leading: Vec<_> = replicas
            .iter()
            .filter(|r| r.leadership.is_leader())
            .map(|r| r.identity)
            .collect();
        assert!(leading.len() <= 1, "{leading:?} lead at once");
        let lease = lease(fake);
        assert_eq!(lease["spec"]["holderIdentity"], leader.identity);
        let renewed = lease["spec"]["renewTime"].clone();
        if renew_times.last() != Some(&renewed) {
            renew_times.push(renewed);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    leader
}

#[tokio::test]
async fn one_replica_leads_and_the_other_takes_over_on_release() {
    init();
    let fake = FakeKube::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = lease_settings(Duration::from_secs(2));
    let a = replica(&fake, &dir, "herald-a", settings).await;
    let b = replica(&fake, &dir, "herald-b", settings).await;
    let leader = one_leads(&fake, [&a, &b], 3).await;
    let (leader, other) = if leader.identity == a.identity {
        (a, b)
    } else {
        (b, a)
    };
    assert!(!other.leadership.is_leader());
    assert_eq!(lease(&fake)["spec"]["leaseTransitions"], 0);
    assert_eq!(lease(&fake)["spec"]["leaseDurationSeconds"], 2);

    leader.cancel.cancel();
    tokio::time::timeout(patience(), leader.task)
        .await
        .expect("the task ends on cancel")
        .expect("no panic");
    assert!(!leader.leadership.is_leader());
    leads(&other).await;
    let lease = lease(&fake);
    assert_eq!(lease["spec"]["holderIdentity"], other.identity);
    assert_eq!(lease["spec"]["leaseTransitions"], 1);

    other.cancel.cancel();
    other.task.await.expect("no panic");
    assert!(
        self::lease(&fake)["spec"].get("holderIdentity").is_none(),
        "released"
    );
}

#[tokio::test]
async fn a_leader_that_stops_renewing_is_taken_over() {
    init();
    let fake = FakeKube::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = lease_settings(Duration::from_secs(1));
    let a = replica(&fake, &dir, "herald-a", settings).await;
    leads(&a).await;
    let b = replica(&fake, &dir, "herald-b", settings).await;
    one_leads(&fake, [&a, &b], 3).await;
    assert!(a.leadership.is_leader(), "the first holder keeps the Lease");

    // a stops without releasing: b waits out the duration on its own clock.
    a.task.abort();
    assert!(a.task.await.is_err_and(|e| e.is_cancelled()));
    assert!(!a.leadership.is_leader(), "a dropped task leads no more");
    assert_eq!(lease(&fake)["spec"]["holderIdentity"], "herald-a");
    leads(&b).await;
    let lease = lease(&fake);
    assert_eq!(lease["spec"]["holderIdentity"], "herald-b");
    assert_eq!(lease["spec"]["leaseTransitions"], 1);
    b.cancel.cancel();
    b.task.await.expect("no panic");
    drop(a.cancel);
}

#[tokio::test]
async fn the_leader_steps_down_when_it_cannot_renew() {
    init();
    let fake = FakeKube::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let a = replica(
        &fake,
        &dir,
        "herald-a",
        lease_settings(Duration::from_secs(1)),
    )
    .await;
    leads(&a).await;

    fake.fail_requests(Some(500));
    let mut changes = a.leadership.subscribe();
    tokio::time::timeout(patience(), changes.wait_for(|leads| !*leads))
        .await
        .expect("a steps down")
        .expect("the Lease task runs");
    assert!(!a.task.is_finished());

    // The API server is back and the Lease still names a: it renews.
    fake.fail_requests(None);
    leads(&a).await;
    assert_eq!(lease(&fake)["spec"]["leaseTransitions"], 0);
    a.cancel.cancel();
    a.task.await.expect("no panic");
}
