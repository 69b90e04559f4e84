//! What Herald knows of each Alert and Provider from its deliveries: kept in
//! HERALD_OBJECTS by the senders, failing objects listed on `/readyz`.

use herald_proto::{ObjectRecord, names};
use herald_tests::eventually;
use herald_tests::fake::{FakeServer, Reply};
use herald_tests::fixtures::{Alert, Event, Provider};
use herald_tests::herald::{TestHerald, config_dir};
use herald_tests::nats::TestNats;
use prost::Message as _;

const NS: &str = "flux-system";

async fn record(nats: &TestNats, kind: &str, name: &str) -> Option<ObjectRecord> {
    let js = nats.jetstream().await;
    let bucket = js.get_key_value(names::OBJECTS_BUCKET).await.ok()?;
    let value = bucket
        .get(names::object_entry(kind, NS, name))
        .await
        .ok()??;
    ObjectRecord::decode(value).ok()
}

#[tokio::test]
async fn deliveries_and_failures_are_recorded_per_alert_and_provider() {
    let nats = TestNats::start().await;
    let good = FakeServer::webhook().await;
    let bad = FakeServer::webhook().await;
    bad.set_default(Some(Reply::text(404, "no such hook")));
    let dir = config_dir(&format!(
        "{}{}{}{}",
        Provider::new(NS, "good", "generic").address(&good.url("/hook")),
        Provider::new(NS, "bad", "generic").address(&bad.url("/hook")),
        Alert::new(NS, "to-good", "good").source("Kustomization", "*"),
        Alert::new(NS, "to-bad", "bad").source("Kustomization", "*"),
    ));
    let herald = TestHerald::start(nats.url(), dir.path()).await;
    let event = |message: &str| {
        Event::new("Kustomization", NS, "apps")
            .message(message)
            .now()
    };
    assert_eq!(herald.post(&event("first")).await.0, 202);

    let good_record = eventually("the good Provider's record", || async {
        record(&nats, "Provider", "good")
            .await
            .filter(|r| r.delivered == 1)
    })
    .await;
    assert!(good_record.last_delivered_at.is_some());
    assert!(good_record.last_failed_at.is_none());
    let bad_record = eventually("the bad Provider's record", || async {
        record(&nats, "Provider", "bad")
            .await
            .filter(|r| r.dead == 1)
    })
    .await;
    assert_eq!(bad_record.last_status, 404);
    assert!(
        bad_record.last_error.contains("answered 404"),
        "{}",
        bad_record.last_error
    );
    let alert = eventually("the Alert's record", || async {
        record(&nats, "Alert", "to-bad")
            .await
            .filter(|r| r.dead == 1)
    })
    .await;
    assert_eq!(alert.kind, "Alert");

    // Failing objects are listed on /readyz, and no longer once they deliver.
    let ready = eventually("/readyz lists the failing Provider", || async {
        let (_, body) = herald.admin("/readyz").await;
        body.contains("failing: Provider flux-system/bad: failing since")
            .then_some(body)
    })
    .await;
    assert!(
        ready.contains("failing: Alert flux-system/to-bad"),
        "{ready}"
    );
    assert!(!ready.contains("flux-system/good"), "{ready}");

    bad.set_default(None);
    assert_eq!(herald.post(&event("second")).await.0, 202);
    eventually("the bad Provider recovered", || async {
        let (_, body) = herald.admin("/readyz").await;
        (!body.contains("Provider flux-system/bad")).then_some(())
    })
    .await;
    let recovered = record(&nats, "Provider", "bad").await.unwrap();
    assert_eq!((recovered.delivered, recovered.dead), (1, 1));
    let good_record = record(&nats, "Provider", "good").await.unwrap();
    assert_eq!(good_record.delivered, 2);
    herald.shutdown().await;
}
