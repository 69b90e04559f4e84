//! Limits, end to end: what an event that Herald answered `202` for becomes
//! when NATS's `max_payload` or a stream's byte budget is reached. Never
//! accepted and then stuck, never dropped.

use std::collections::BTreeSet;
use std::time::Duration;

use herald_proto::{Delivery, Event, ObjectKey, names};
use herald_runtime::budget::Budgets;
use herald_runtime::local_nats::ServerSettings;
use herald_senders::dlq;
use herald_tests::eventually;
use herald_tests::fake::{FakeServer, Reply};
use herald_tests::fixtures::{Alert, Provider};
use herald_tests::herald::{Options, TestHerald, config_dir};
use herald_tests::nats::TestNats;
use prost::Message as _;

const MIB: usize = 1 << 20;

/// A Flux event whose JSON body is exactly `size` bytes, its message made of
/// `marker` followed by padding.
fn event_of_size(size: usize, marker: &str) -> String {
    let body = |message: &str| {
        format!(
            r#"{{"involvedObject":{{"apiVersion":"kustomize.toolkit.fluxcd.io/v1","kind":"Kustomization","name":"apps","namespace":"flux-system"}},"severity":"info","reason":"ReconciliationSucceeded","message":"{message}","reportingController":"kustomize-controller","timestamp":"2026-11-28T10:00:00Z"}}"#
        )
    };
    let base = body(marker).len();
    assert!(size >= base, "{size} < {base}");
    body(&format!("{marker}{}", "x".repeat(size - base)))
}

fn manifests(hook: &FakeServer, extra: &str) -> String {
    format!(
        "{}{}{extra}",
        Provider::new("flux-system", "hook", "generic").address(&hook.url("/hook")),
        Alert::new("flux-system", "all", "hook").source("Kustomization", "*")
    )
}

/// The markers (message prefixes up to the first `x`) of what the hook received.
fn received_markers(hook: &FakeServer) -> BTreeSet<String> {
    hook.requests()
        .iter()
        .map(|r| {
            let message = r.json()["message"].as_str().unwrap_or_default().to_owned();
            message.split('x').next().unwrap_or_default().to_owned()
        })
        .collect()
}

#[tokio::test]
async fn events_up_to_flux_limit_are_delivered_when_nats_carries_them() {
    // Herald's own servers (standalone, the harness) take 8 MiB messages.
    let nats = TestNats::start().await;
    let hook = FakeServer::webhook().await;
    let dir = config_dir(&manifests(&hook, ""));
    let herald = TestHerald::start(nats.url(), dir.path()).await;

    let sizes = [MIB - 1024, MIB, 2 * MIB, 3 * MIB];
    for (i, size) in sizes.iter().enumerate() {
        let (status, text) = herald.post(event_of_size(*size, &format!("m{i}-"))).await;
        assert_eq!(status, 202, "{size} bytes: {text}");
    }
    let (status, text) = herald.post(event_of_size(3 * MIB + 1, "over-")).await;
    assert_eq!(status, 413);
    assert!(text.contains("larger than 3145728 bytes"), "{text}");

    let received = hook.wait_for(sizes.len()).await;
    for (i, size) in sizes.iter().enumerate() {
        let request = received
            .iter()
            .find(|r| {
                r.json()["message"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("m{i}-"))
            })
            .unwrap_or_else(|| panic!("the {size}-byte event was delivered"));
        // Flux's JSON of the same event: the same message, byte for byte.
        let sent: serde_json::Value =
            serde_json::from_str(&event_of_size(*size, &format!("m{i}-"))).unwrap();
        assert_eq!(request.json()["message"], sent["message"]);
    }
    herald.shutdown().await;
}

#[tokio::test]
async fn events_larger_than_nats_carries_are_refused_up_front_and_oversize_deliveries_die_shrunk() {
    let nats = TestNats::start_own(ServerSettings {
        max_payload: MIB,
        ..ServerSettings::default()
    })
    .await;
    let hook = FakeServer::webhook().await;
    let big = FakeServer::webhook().await;
    // A second Alert whose eventMetadata makes every delivery 200 KiB larger.
    let padding = "p".repeat(200 * 1024);
    let extra = format!(
        "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Provider\n\
         metadata: {{name: big, namespace: flux-system}}\nspec: {{type: generic, address: '{}'}}\n---\n\
         apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Alert\n\
         metadata: {{name: padded, namespace: flux-system}}\n\
         spec: {{providerRef: {{name: big}}, eventSources: [{{kind: Kustomization, name: '*'}}], eventMetadata: {{padding: {padding}}}}}\n---\n",
        big.url("/big")
    );
    let dir = config_dir(&manifests(&hook, &extra));
    let herald = TestHerald::start(nats.url(), dir.path()).await;

    // Too large for this server: refused with 413 saying why, never 503.
    for size in [MIB - 1024, MIB, 2 * MIB, 3 * MIB] {
        let (status, text) = herald.post(event_of_size(size, "too-big-")).await;
        assert_eq!(status, 413, "{size} bytes: {text}");
        assert!(
            text.contains("max_payload") && text.contains("1048576"),
            "{text}"
        );
    }
    let (status, text) = herald.post(event_of_size(3 * MIB + 1, "over-")).await;
    assert_eq!(status, 413);
    assert!(text.contains("larger than 3145728 bytes"), "{text}");

    // Fits: stored, delivered to the plain Alert; the padded Alert's delivery
    // would exceed max_payload, so it is a dead letter at once, shrunk.
    let (status, text) = herald.post(event_of_size(900 * 1024, "fits-")).await;
    assert_eq!(status, 202, "{text}");
    let received = hook.wait_for(1).await;
    assert!(
        received[0].json()["message"]
            .as_str()
            .unwrap()
            .starts_with("fits-")
    );
    let js = nats.jetstream().await;
    let letters = eventually("the oversize delivery's dead letter", || async {
        let letters = dlq::list(&js, &dlq::Filter::default()).await.ok()?;
        (!letters.is_empty()).then_some(letters)
    })
    .await;
    assert_eq!(letters.len(), 1);
    let letter = &letters[0].letter;
    assert!(
        letter.reason.contains("more than the NATS server carries"),
        "{}",
        letter.reason
    );
    assert!(letter.reason.contains("shrunk from"), "{}", letter.reason);
    let kept = letter.delivery.as_ref().unwrap().event.as_ref().unwrap();
    assert!(kept.message.starts_with("fits-"));
    assert!(big.requests().is_empty());
    assert!(
        herald
            .admin("/metrics")
            .await
            .1
            .contains(r#"herald_oversize_total{reason="router"} 1"#)
    );
    herald.shutdown().await;
}

#[tokio::test]
async fn a_dead_letter_larger_than_nats_carries_is_stored_shrunk_and_not_resent() {
    let nats = TestNats::start_own(ServerSettings {
        max_payload: MIB,
        ..ServerSettings::default()
    })
    .await;
    let hook = FakeServer::webhook().await;
    // Every answer is a permanent failure with a long body.
    hook.set_default(Some(Reply {
        body: "no such hook ".repeat(400),
        ..Reply::status(400)
    }));
    let dir = config_dir(&manifests(&hook, ""));
    let herald = TestHerald::start(nats.url(), dir.path()).await;

    // A delivery that fits max_payload with a few hundred bytes to spare (as
    // an Alert's eventMetadata can make one): its dead letter, with the
    // reason and the answer's excerpt, would not.
    let mut delivery = Delivery {
        id: "near-the-limit".to_owned(),
        event: Some(Event {
            id: "e-near".to_owned(),
            cluster: "test".to_owned(),
            involved_object: Some(herald_proto::ObjectReference {
                kind: "Kustomization".to_owned(),
                namespace: "flux-system".to_owned(),
                name: "apps".to_owned(),
                api_version: "kustomize.toolkit.fluxcd.io/v1".to_owned(),
                ..Default::default()
            }),
            severity: "error".to_owned(),
            message: String::new(),
            ..Event::default()
        }),
        alert: Some(ObjectKey {
            namespace: "flux-system".to_owned(),
            name: "all".to_owned(),
            uid: "u".to_owned(),
        }),
        provider: Some(ObjectKey {
            namespace: "flux-system".to_owned(),
            name: "hook".to_owned(),
            uid: String::new(),
        }),
        provider_type: "generic".to_owned(),
        routed_at: None,
        catalog: String::new(),
    };
    let base = delivery.encoded_len();
    delivery.event.as_mut().unwrap().message = format!("near-{}", "x".repeat(MIB - 400 - base));
    assert!(delivery.encoded_len() < MIB - 300);
    let js = nats.jetstream().await;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(names::MSG_ID_HEADER, "near-the-limit");
    js.publish_with_headers(
        names::delivery_subject("generic", "flux-system", "hook"),
        headers,
        delivery.encode_to_vec().into(),
    )
    .await
    .unwrap()
    .await
    .expect("the delivery fits");

    let letters = eventually("the dead letter", || async {
        let letters = dlq::list(&js, &dlq::Filter::default()).await.ok()?;
        (!letters.is_empty()).then_some(letters)
    })
    .await;
    let letter = &letters[0].letter;
    assert!(letter.reason.contains("answered 400"), "{}", letter.reason);
    assert!(letter.reason.contains("shrunk from"), "{}", letter.reason);
    assert!(letter.last_status == 400);
    // Sent once: the dead letter was stored, so the delivery left the queue.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(hook.requests().len(), 1);
    assert_eq!(nats.stream_messages(names::DELIVERIES_STREAM).await, 0);
    herald.shutdown().await;
}

/// Small budgets on a store that holds exactly them.
fn small_budgets() -> Budgets {
    Budgets {
        events_max_bytes: 2 * MIB as u64,
        deliveries_max_bytes: MIB as u64,
        dead_max_bytes: MIB as u64 / 2,
        groups_max_bytes: MIB as u64 / 2,
        kv_max_bytes: MIB as u64 / 2,
    }
}

fn small_store() -> ServerSettings {
    ServerSettings {
        max_file_store: Some(small_budgets().total() + MIB as u64),
        ..ServerSettings::default()
    }
}

/// POSTs distinct 8 KiB events until ingest refuses one; returns the
/// markers of those it accepted.
async fn fill(herald: &TestHerald, prefix: &str) -> Vec<String> {
    let mut accepted = Vec::new();
    for i in 0..2_000 {
        let marker = format!("{prefix}{i}-");
        let response = herald.post_response(event_of_size(8 * 1024, &marker)).await;
        match response.status().as_u16() {
            202 => accepted.push(marker),
            503 => {
                assert_eq!(response.headers()["retry-after"], "1");
                let text = response.text().await.unwrap();
                assert!(text.contains("HERALD_EVENTS is full"), "{text}");
                return accepted;
            }
            other => panic!("unexpected {other}: {}", response.text().await.unwrap()),
        }
    }
    panic!("HERALD_EVENTS never filled");
}

#[tokio::test]
async fn a_full_events_budget_with_the_router_down_delivers_everything_once_it_runs() {
    let nats = TestNats::start_own(small_store()).await;
    let hook = FakeServer::webhook().await;
    let dir = config_dir(&manifests(&hook, ""));
    let ingest = TestHerald::start_with(
        nats.url(),
        dir.path(),
        Options {
            router: false,
            sender: false,
            budgets: small_budgets(),
            ..Options::default()
        },
    )
    .await;

    let accepted = fill(&ingest, "down-").await;
    assert!(accepted.len() > 100, "{}", accepted.len());
    // Refused, said once on /readyz and in the metrics; nothing more accepted.
    let (_, ready) = ingest.admin("/readyz").await;
    assert!(ready.contains("budget HERALD_EVENTS: full"), "{ready}");
    let metrics = ingest.admin("/metrics").await.1;
    assert!(
        metrics.contains(r#"herald_stream_budget_full{stream="HERALD_EVENTS"} 1"#),
        "{metrics}"
    );
    let (status, _) = ingest.post(event_of_size(8 * 1024, "refused-")).await;
    assert_eq!(status, 503);

    // The router and a sender start: every accepted event is delivered.
    let workers = TestHerald::start_with(
        nats.url(),
        dir.path(),
        Options {
            ingest: false,
            budgets: small_budgets(),
            ..Options::default()
        },
    )
    .await;
    let expected: BTreeSet<String> = accepted.iter().cloned().collect();
    eventually("every accepted event delivered", || async {
        received_markers(&hook).is_superset(&expected).then_some(())
    })
    .await;
    assert!(!received_markers(&hook).contains("refused-"));

    // Routed events are trimmed from the full log: ingest takes events again.
    eventually("ingest accepts again", || async {
        let (status, _) = ingest.post(event_of_size(8 * 1024, "after-")).await;
        (status == 202).then_some(())
    })
    .await;
    eventually("the new event delivered", || async {
        received_markers(&hook).contains("after-").then_some(())
    })
    .await;
    workers.shutdown().await;
    ingest.shutdown().await;
}

#[tokio::test]
async fn full_budgets_while_everything_runs_deliver_every_accepted_event() {
    let nats = TestNats::start_own(small_store()).await;
    let hook = FakeServer::webhook().await;
    // The destination is down: deliveries pile up until their budget is full,
    // then events, then ingest refuses.
    hook.set_default(Some(Reply::status(503)));
    let dir = config_dir(&manifests(&hook, ""));
    let mut options = Options {
        budgets: small_budgets(),
        ..Options::default()
    };
    options.sender_args.max_attempts = 10_000;
    options.sender_args.retry_max = Duration::from_millis(500);
    let herald = TestHerald::start_with(nats.url(), dir.path(), options).await;

    let accepted = fill(&herald, "up-").await;
    assert!(accepted.len() > 100, "{}", accepted.len());
    let metrics = herald.admin("/metrics").await.1;
    assert!(
        metrics.contains(r#"herald_budget_refusals_total{stream="HERALD_DELIVERIES"}"#),
        "the router met a full HERALD_DELIVERIES: {metrics}"
    );

    // The destination recovers: everything accepted arrives (events held
    // back by the router come again within its 10 s backoff; the bound is
    // generous because this box runs other tests meanwhile).
    hook.set_default(None);
    let expected: BTreeSet<String> = accepted.iter().cloned().collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while !received_markers(&hook).is_superset(&expected) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {} accepted events delivered",
            received_markers(&hook).intersection(&expected).count(),
            expected.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    herald.shutdown().await;
}
