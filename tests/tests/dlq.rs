//! Dead letters end to end: list, show, replay and purge against a real
//! nats-server, with the letters Herald itself writes (a destination that
//! refuses, an Alert whose Provider does not exist) and with letters written
//! by hand for what Herald never writes on its own.

use std::time::Duration;

use bytes::Bytes;
use herald_proto::{DeadLetter, Delivery, Event, ObjectKey, names};
use herald_senders::dlq::{self, Filter};
use herald_tests::eventually;
use herald_tests::fake::{FakeServer, Reply};
use herald_tests::herald::{TestHerald, config_dir};
use herald_tests::nats::TestNats;
use jiff::{SignedDuration, Timestamp};
use prost::Message as _;

const FAILED: &str = r#"{
  "involvedObject": {"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
                     "name": "webapp", "namespace": "flux-system", "uid": "7d0cdc51-ddcf-4743-b223-83ca5c699632"},
  "metadata": {"kustomize.toolkit.fluxcd.io/revision": "main/731f7eaddfb6af01cb2173e18f0f75b0ba780ef1"},
  "severity": "error",
  "reason": "ValidationFailed",
  "message": "service/apps/webapp validation error: spec.type: Unsupported value: Ingress",
  "reportingController": "kustomize-controller",
  "timestamp": "2022-10-28T07:26:19Z"
}"#;

fn provider(name: &str, address: &str) -> String {
    format!(
        "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Provider\nmetadata: {{name: {name}, namespace: flux-system}}\n\
         spec: {{type: generic, address: '{address}'}}\n---\n"
    )
}

fn alert(name: &str, provider: &str, kind: &str) -> String {
    format!(
        "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Alert\nmetadata: {{name: {name}, namespace: flux-system}}\n\
         spec: {{providerRef: {{name: {provider}}}, eventSources: [{{kind: {kind}, name: '*'}}]}}\n---\n"
    )
}

fn by_provider(provider: &str) -> Filter {
    Filter {
        provider: Some(provider.to_owned()),
        ..Filter::default()
    }
}

/// Waits until `filter` selects exactly `n` letters, and returns them.
async fn letters(
    js: &async_nats::jetstream::Context,
    filter: &Filter,
    n: usize,
) -> Vec<dlq::Entry> {
    eventually(&format!("{n} dead letters for {filter:?}"), || async {
        let entries = dlq::list(js, filter).await.ok()?;
        (entries.len() == n).then_some(entries)
    })
    .await
}

async fn count(js: &async_nats::jetstream::Context, filter: &Filter) -> usize {
    dlq::list(js, filter)
        .await
        .expect("list dead letters")
        .len()
}

async fn wait_until_empty(nats: &TestNats, stream: &str) {
    eventually(&format!("{stream} is empty"), || async {
        (nats.stream_messages(stream).await == 0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_refused_delivery_is_listed_filtered_shown_and_replayed_once() {
    let nats = TestNats::start().await;
    let refusing = FakeServer::webhook().await;
    refusing.set_default(Some(Reply::status(401)));
    let dir = config_dir(&format!(
        "{}{}",
        provider("refusing", &refusing.url("/hook")),
        alert("on-call", "refusing", "Kustomization"),
    ));
    let herald = TestHerald::start(nats.url(), dir.path()).await;
    let js = nats.jetstream().await;
    assert_eq!(herald.post(FAILED).await.0, 202);

    let entry = letters(&js, &Filter::default(), 1).await.remove(0);
    assert_eq!(entry.subject, "herald.dead.generic.flux-system.refusing");
    assert_eq!(entry.letter.reason, "destination answered 401");
    assert_eq!(entry.letter.attempts, 1, "a 401 is dead at once");
    assert_eq!(entry.letter.last_status, 401);
    assert_eq!(entry.provider_type(), "generic");
    assert_eq!(
        entry.provider(),
        ("flux-system".to_owned(), "refusing".to_owned())
    );
    assert_eq!(refusing.requests().len(), 1);

    // Every filter selects the letter when it matches, and not otherwise.
    let dead_at = entry.dead_at();
    let second = SignedDuration::from_secs(1);
    let cases: Vec<(Filter, usize)> = vec![
        (by_provider("flux-system/refusing"), 1),
        (by_provider("refusing"), 1),
        (by_provider("default/refusing"), 0),
        (by_provider("other"), 0),
        (
            Filter {
                provider_type: Some("generic".to_owned()),
                ..Filter::default()
            },
            1,
        ),
        (
            Filter {
                provider_type: Some("slack".to_owned()),
                ..Filter::default()
            },
            0,
        ),
        (
            Filter {
                alert: Some("flux-system/on-call".to_owned()),
                ..Filter::default()
            },
            1,
        ),
        (
            Filter {
                alert: Some("on-call".to_owned()),
                ..Filter::default()
            },
            1,
        ),
        (
            Filter {
                alert: Some("other".to_owned()),
                ..Filter::default()
            },
            0,
        ),
        (
            Filter {
                reason: Some("ANSWERED 401".to_owned()),
                ..Filter::default()
            },
            1,
        ),
        (
            Filter {
                reason: Some("timed out".to_owned()),
                ..Filter::default()
            },
            0,
        ),
        (
            Filter {
                since: Some(dead_at - second),
                until: Some(dead_at + second),
                ..Filter::default()
            },
            1,
        ),
        (
            Filter {
                since: Some(dead_at),
                until: Some(dead_at),
                ..Filter::default()
            },
            1,
        ),
        (
            Filter {
                since: Some(dead_at + second),
                ..Filter::default()
            },
            0,
        ),
        (
            Filter {
                until: Some(dead_at - second),
                ..Filter::default()
            },
            0,
        ),
        (
            Filter {
                sequences: vec![entry.sequence],
                ..Filter::default()
            },
            1,
        ),
        (
            Filter {
                sequences: vec![entry.sequence + 1000],
                ..Filter::default()
            },
            0,
        ),
        (
            Filter {
                provider: Some("flux-system/refusing".to_owned()),
                provider_type: Some("generic".to_owned()),
                alert: Some("flux-system/on-call".to_owned()),
                reason: Some("401".to_owned()),
                since: Some(dead_at - second),
                until: Some(Timestamp::now()),
                sequences: vec![entry.sequence],
            },
            1,
        ),
    ];
    for (filter, expected) in cases {
        assert_eq!(count(&js, &filter).await, expected, "{filter:?}");
    }

    // The table has one line per letter, the detail the event as Flux JSON.
    let table = dlq::render_table(std::slice::from_ref(&entry));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    assert!(lines[0].starts_with("SEQ"), "{table}");
    for part in [
        entry.sequence.to_string().as_str(),
        "generic flux-system/refusing",
        "flux-system/on-call",
        "401",
        "destination answered 401",
    ] {
        assert!(lines[1].contains(part), "{part:?} missing from {table}");
    }
    let shown = dlq::show(&js, entry.sequence).await.expect("show");
    assert_eq!(shown, entry);
    let detail = dlq::render_detail(&shown);
    for part in [
        "Reason:        destination answered 401",
        "Attempts:      1",
        "Last status:   401",
        "Provider:      generic flux-system/refusing",
        "Alert:         flux-system/on-call",
        "Last response:\n  fake answer 401",
    ] {
        assert!(detail.contains(part), "{part:?} missing from {detail}");
    }
    let json = detail
        .split_once("Event (Flux JSON):\n")
        .expect("the event is shown")
        .1
        .trim_end();
    assert_eq!(
        json.as_bytes(),
        &refusing.requests()[0].body[..],
        "the event as the destination received it"
    );

    // The destination accepts again: a replay delivers the same body.
    refusing.set_default(None);
    let report = dlq::replay(&js, &Filter::default()).await.expect("replay");
    assert!(report.is_complete(), "{report}");
    assert_eq!(report.replayed.len(), 1, "{report}");
    assert_eq!(report.replayed[0].sequence, entry.sequence);
    assert_eq!(
        report.replayed[0].subject,
        "herald.deliveries.generic.flux-system.refusing"
    );
    assert!(!report.replayed[0].duplicate);
    let requests = refusing.wait_for(2).await;
    assert_eq!(requests[1].answered, 200);
    assert_eq!(requests[1].body, requests[0].body);
    assert_eq!(
        count(&js, &Filter::default()).await,
        0,
        "the letter is gone"
    );
    assert_eq!(nats.stream_messages(names::DEAD_STREAM).await, 0);
    wait_until_empty(&nats, names::DELIVERIES_STREAM).await;
    assert!(dlq::show(&js, entry.sequence).await.is_err());

    // Nothing is left to replay.
    let again = dlq::replay(&js, &Filter::default())
        .await
        .expect("replay again");
    assert_eq!(again, dlq::ReplayReport::default());
    assert_eq!(nats.stream_messages(names::DELIVERIES_STREAM).await, 0);
    assert_eq!(refusing.requests().len(), 2);
    herald.shutdown().await;
}

#[tokio::test]
async fn purge_deletes_only_the_letters_its_filter_selects() {
    let nats = TestNats::start().await;
    let first = FakeServer::webhook().await;
    let second = FakeServer::webhook().await;
    first.set_default(Some(Reply::status(403)));
    second.set_default(Some(Reply::status(404)));
    let dir = config_dir(&format!(
        "{}{}{}{}{}",
        provider("first", &first.url("/hook")),
        provider("second", &second.url("/hook")),
        alert("first", "first", "Kustomization"),
        alert("second", "second", "Kustomization"),
        alert("dangling", "nowhere", "Kustomization"),
    ));
    let herald = TestHerald::start(nats.url(), dir.path()).await;
    let js = nats.jetstream().await;
    assert_eq!(herald.post(FAILED).await.0, 202);
    let all = letters(&js, &Filter::default(), 3).await;
    assert!(
        all.windows(2).all(|w| w[0].sequence < w[1].sequence),
        "oldest first"
    );

    // A filter that matches nothing deletes nothing.
    let none = Filter {
        provider: Some("flux-system/first".to_owned()),
        reason: Some("answered 404".to_owned()),
        ..Filter::default()
    };
    assert_eq!(dlq::purge(&js, &none).await.expect("purge"), 0);
    assert_eq!(count(&js, &Filter::default()).await, 3);

    assert_eq!(
        dlq::purge(&js, &by_provider("flux-system/first"))
            .await
            .expect("purge"),
        1
    );
    let left = dlq::list(&js, &Filter::default()).await.expect("list");
    let mut subjects: Vec<&str> = left.iter().map(|e| e.subject.as_str()).collect();
    subjects.sort_unstable();
    assert_eq!(
        subjects,
        [
            "herald.dead.generic.flux-system.second",
            "herald.dead.unknown.flux-system.nowhere"
        ]
    );

    let unknown = Filter {
        provider_type: Some("unknown".to_owned()),
        ..Filter::default()
    };
    assert_eq!(dlq::purge(&js, &unknown).await.expect("purge"), 1);
    let left = dlq::list(&js, &Filter::default()).await.expect("list");
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].letter.reason, "destination answered 404");

    // A purge by sequence deletes that letter, among gaps left by the others.
    let by_sequence = Filter {
        sequences: vec![left[0].sequence],
        ..Filter::default()
    };
    assert_eq!(dlq::purge(&js, &by_sequence).await.expect("purge"), 1);
    assert_eq!(nats.stream_messages(names::DEAD_STREAM).await, 0);
    assert_eq!(dlq::purge(&js, &Filter::default()).await.expect("purge"), 0);
    herald.shutdown().await;
}

#[tokio::test]
async fn a_letter_for_a_missing_provider_is_delivered_once_the_provider_exists() {
    let nats = TestNats::start().await;
    let late = FakeServer::webhook().await;
    let dir = config_dir(&alert("dangling", "late", "Kustomization"));
    let herald = TestHerald::start(nats.url(), dir.path()).await;
    let js = nats.jetstream().await;
    assert_eq!(herald.post(FAILED).await.0, 202);

    let unknown = Filter {
        provider_type: Some("unknown".to_owned()),
        ..Filter::default()
    };
    let entry = letters(&js, &unknown, 1).await.remove(0);
    assert_eq!(entry.subject, "herald.dead.unknown.flux-system.late");
    assert_eq!(
        entry.letter.reason,
        "Alert flux-system/dangling names Provider flux-system/late, which does not exist"
    );
    assert!(
        dlq::render_table(std::slice::from_ref(&entry)).contains("unknown flux-system/late"),
        "{}",
        dlq::render_table(std::slice::from_ref(&entry))
    );

    // Replayed while the Provider is still missing, it dies again in the
    // sender, on the same subject.
    let report = dlq::replay(&js, &unknown).await.expect("replay");
    assert_eq!(report.replayed.len(), 1, "{report}");
    assert_eq!(
        report.replayed[0].subject,
        "herald.deliveries.unknown.flux-system.late"
    );
    let again = eventually("the sender's dead letter", || async {
        let entries = dlq::list(&js, &unknown).await.ok()?;
        entries
            .into_iter()
            .find(|e| e.letter.reason == "Provider flux-system/late does not exist")
    })
    .await;
    assert!(again.sequence > entry.sequence);
    assert_eq!(again.subject, "herald.dead.unknown.flux-system.late");
    assert_eq!(count(&js, &Filter::default()).await, 1);

    // Once the Provider exists, the replay is delivered.
    std::fs::write(
        herald.config_dir().join("late.yaml"),
        format!(
            "{}{}",
            provider("late", &late.url("/hook")),
            // Kept with a warning (not a Flux kind): once /readyz reports
            // it, the new file is loaded.
            alert("probe", "late", "Deployment"),
        ),
    )
    .expect("write late.yaml");
    eventually("the catalog has the Provider", || async {
        herald
            .admin("/readyz")
            .await
            .1
            .contains(": Alert/flux-system/probe: ")
            .then_some(())
    })
    .await;
    let report = dlq::replay(&js, &by_provider("flux-system/late"))
        .await
        .expect("replay");
    assert!(report.is_complete(), "{report}");
    assert_eq!(report.replayed.len(), 1, "{report}");
    let requests = late.wait_for(1).await;
    assert_eq!(requests[0].answered, 200);
    assert_eq!(
        requests[0].json()["message"],
        "service/apps/webapp validation error: spec.type: Unsupported value: Ingress"
    );
    wait_until_empty(&nats, names::DELIVERIES_STREAM).await;
    assert_eq!(nats.stream_messages(names::DEAD_STREAM).await, 0);
    assert_eq!(late.requests().len(), 1);
    herald.shutdown().await;
}

fn letter(id: &str, namespace: &str, name: &str, traceparent: &str) -> DeadLetter {
    DeadLetter {
        delivery: Some(Delivery {
            id: id.to_owned(),
            event: Some(Event {
                id: format!("event-{id}"),
                message: format!("message {id}"),
                ..Event::default()
            }),
            alert: Some(ObjectKey {
                namespace: namespace.to_owned(),
                name: "alert".to_owned(),
                uid: String::new(),
            }),
            provider: Some(ObjectKey {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                uid: String::new(),
            }),
            provider_type: "generic".to_owned(),
            routed_at: None,
            catalog: String::new(),
        }),
        reason: "destination answered 404".to_owned(),
        attempts: 1,
        last_status: 404,
        traceparent: traceparent.to_owned(),
        ..DeadLetter::default()
    }
}

async fn store(js: &async_nats::jetstream::Context, subject: String, payload: Vec<u8>) -> u64 {
    js.publish(subject, Bytes::from(payload))
        .await
        .expect("publish")
        .await
        .expect("stored")
        .sequence
}

async fn last_delivery(
    js: &async_nats::jetstream::Context,
    subject: &str,
) -> async_nats::jetstream::message::StreamMessage {
    js.get_stream(names::DELIVERIES_STREAM)
        .await
        .expect("deliveries stream")
        .get_last_raw_message_by_subject(subject)
        .await
        .expect("a delivery")
}

/// Without a sender, replayed deliveries stay on the work queue to be looked at.
#[tokio::test]
async fn replays_carry_their_trace_are_idempotent_and_skip_raw_letters() {
    let nats = TestNats::start().await;
    let readiness = herald_runtime::Readiness::default();
    let runtime = herald_runtime::nats::connect(
        &herald_runtime::nats::NatsArgs {
            nats_url: Some(nats.url().to_owned()),
            nats_creds: None,
            jetstream_domain: None,
            stream_replicas: 1,
            events_max_age: Duration::from_secs(3600),
            duplicate_window: Duration::from_secs(120),
            dead_max_age: Duration::from_secs(3600),
            budgets: herald_runtime::budget::Budgets::default(),
        },
        "herald-dlq-test",
        &readiness,
    )
    .await
    .expect("connect");
    runtime.ensure_deliveries_stream().await.expect("stream");
    runtime.ensure_dead_stream().await.expect("stream");
    let js = nats.jetstream().await;

    let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let traced = store(
        &js,
        names::dead_subject("generic", "team", "hook"),
        letter("d1", "team", "hook", traceparent).encode_to_vec(),
    )
    .await;
    let raw = store(
        &js,
        names::dead_subject("unknown", "team", "hook"),
        DeadLetter {
            reason: "cannot decode the delivery: invalid wire type".to_owned(),
            raw_payload: b"not a delivery".to_vec(),
            ..DeadLetter::default()
        }
        .encode_to_vec(),
    )
    .await;
    let interrupted = store(
        &js,
        names::dead_subject("generic", "team", "again"),
        letter("d2", "team", "again", "").encode_to_vec(),
    )
    .await;
    let junk = store(
        &js,
        names::dead_subject("generic", "team", "junk"),
        vec![0xff; 8],
    )
    .await;
    // An earlier replay queued `d2` and stopped before deleting its letter.
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(
        names::MSG_ID_HEADER,
        format!("replay:d2:{interrupted}").as_str(),
    );
    js.publish_with_headers(
        names::delivery_subject("generic", "team", "again"),
        headers,
        Bytes::from(
            letter("d2", "team", "again", "")
                .delivery
                .unwrap()
                .encode_to_vec(),
        ),
    )
    .await
    .expect("publish")
    .await
    .expect("stored");

    let junk_entry = dlq::show(&js, junk).await.expect("show junk");
    assert!(
        junk_entry
            .letter
            .reason
            .starts_with("not a herald.v1.DeadLetter"),
        "{:?}",
        junk_entry.letter.reason
    );
    assert!(dlq::render_detail(&junk_entry).contains("Raw payload:   8 bytes"));

    let report = dlq::replay(
        &js,
        &Filter {
            provider: Some("team/hook".to_owned()),
            ..Filter::default()
        },
    )
    .await
    .expect("replay");
    assert_eq!(report.replayed.len(), 1, "{report}");
    assert_eq!(report.replayed[0].sequence, traced);
    assert!(report.failed.is_empty(), "{report}");
    assert_eq!(
        report
            .skipped
            .iter()
            .map(|k| k.sequence)
            .collect::<Vec<_>>(),
        [raw],
        "{report}"
    );
    assert!(report.skipped[0].reason.contains("no delivery"), "{report}");
    let queued = last_delivery(&js, "herald.deliveries.generic.team.hook").await;
    assert_eq!(
        queued.headers.get(names::MSG_ID_HEADER).map(|v| v.as_str()),
        Some(format!("replay:d1:{traced}").as_str())
    );
    assert_eq!(
        queued
            .headers
            .get(names::EVENT_ID_HEADER)
            .map(|v| v.as_str()),
        Some("event-d1")
    );
    assert_eq!(
        queued
            .headers
            .get(names::TRACEPARENT_HEADER)
            .map(|v| v.as_str()),
        Some(traceparent)
    );
    let mut replayed = Delivery::decode(queued.payload).expect("a delivery");
    assert!(
        replayed.routed_at.take().is_some(),
        "a replay is queued anew"
    );
    let mut original = letter("d1", "team", "hook", traceparent).delivery.unwrap();
    original.routed_at = None;
    assert_eq!(replayed, original);

    // Run again, the interrupted replay does not queue `d2` a second time.
    let report = dlq::replay(&js, &by_provider("team/again"))
        .await
        .expect("replay");
    assert_eq!(report.replayed.len(), 1, "{report}");
    assert!(report.replayed[0].duplicate, "{report}");
    assert_eq!(nats.stream_messages(names::DELIVERIES_STREAM).await, 2);
    let queued = last_delivery(&js, "herald.deliveries.generic.team.again").await;
    assert!(queued.headers.get(names::TRACEPARENT_HEADER).is_none());

    // Many letters go in several batches, each acked, each letter deleted.
    for i in 0..600 {
        store(
            &js,
            names::dead_subject("generic", "team", "bulk"),
            letter(&format!("bulk{i}"), "team", "bulk", "").encode_to_vec(),
        )
        .await;
    }
    let bulk = by_provider("team/bulk");
    assert_eq!(count(&js, &bulk).await, 600);
    let report = dlq::replay(&js, &bulk).await.expect("replay");
    assert_eq!(report.replayed.len(), 600);
    assert!(report.is_complete(), "{report}");
    assert!(report.replayed.iter().all(|r| !r.duplicate));
    assert_eq!(nats.stream_messages(names::DELIVERIES_STREAM).await, 602);

    // What is left: the raw letter (it cannot be replayed) and the junk.
    let left = dlq::list(&js, &Filter::default()).await.expect("list");
    assert_eq!(
        left.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        [raw, junk]
    );
    let junk_only = Filter {
        reason: Some("not a herald.v1.deadletter".to_owned()),
        ..Filter::default()
    };
    assert_eq!(dlq::purge(&js, &junk_only).await.expect("purge"), 1);
    assert_eq!(nats.stream_messages(names::DEAD_STREAM).await, 1);
    let err = dlq::show(&js, junk).await.expect_err("purged");
    assert!(
        err.to_string().contains("no dead letter with sequence"),
        "{err}"
    );
}
