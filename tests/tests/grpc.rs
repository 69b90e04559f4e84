//! The gRPC intake: a batch of events, each answered on its own.

use herald_proto::names;
use herald_proto::v1::ingest_client::IngestClient;
use herald_proto::v1::{PublishRequest, publish_result::Status};
use herald_tests::fake::FakeServer;
use herald_tests::herald::{TestHerald, config_dir};
use herald_tests::nats::TestNats;

#[tokio::test]
async fn a_batch_is_stored_and_answered_event_by_event() {
    let nats = TestNats::start().await;
    let hook = FakeServer::webhook().await;
    let dir = config_dir(&format!(
        "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Provider\nmetadata: {{name: audit, namespace: apps}}\n\
         spec: {{type: generic, address: '{}'}}\n---\n\
         apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Alert\nmetadata: {{name: audit, namespace: apps}}\n\
         spec: {{providerRef: {{name: audit}}, eventSources: [{{kind: HelmRelease, name: '*'}}]}}\n",
        hook.url("/events")
    ));
    let herald = TestHerald::start(nats.url(), dir.path()).await;
    let mut client = IngestClient::connect(herald.grpc_url())
        .await
        .expect("grpc");

    let event = |i: usize| {
        format!(
            r#"{{"involvedObject":{{"kind":"HelmRelease","namespace":"apps","name":"podinfo-{i}","apiVersion":"helm.toolkit.fluxcd.io/v2"}},
                "severity":"info","reason":"InstallSucceeded","message":"installed","reportingController":"helm-controller",
                "timestamp":"2024-05-07T05:02:34Z"}}"#
        )
        .into_bytes()
    };
    let mut events: Vec<Vec<u8>> = (0..50).map(event).collect();
    events.push(b"{broken".to_vec());
    events.push(event(0));
    let response = client
        .publish(PublishRequest {
            cluster: "bulk-relay".to_owned(),
            events_json: events,
        })
        .await
        .expect("publish")
        .into_inner();

    assert_eq!(response.results.len(), 52);
    assert!(
        response.results[..50]
            .iter()
            .all(|r| r.status == Status::Accepted as i32 && r.event_id.len() == 32)
    );
    assert_eq!(response.results[50].status, Status::Invalid as i32);
    assert!(
        response.results[50]
            .error
            .starts_with("invalid Flux event JSON")
    );
    // The same event twice in one batch: stored once, one answer says so.
    let first = &response.results[0];
    let again = &response.results[51];
    assert_eq!(first.event_id, again.event_id);
    let statuses = [first.status, again.status];
    assert!(
        statuses.contains(&(Status::Duplicate as i32)),
        "{statuses:?}"
    );

    let requests = hook.wait_for(50).await;
    assert_eq!(nats.stream_messages(names::EVENTS_STREAM).await, 50);
    let js = nats.jetstream().await;
    let stream = js.get_stream(names::EVENTS_STREAM).await.expect("stream");
    let stored = stream.get_raw_message(1).await.expect("first event");
    assert_eq!(stored.subject.as_str(), "herald.events.bulk-relay");
    assert_eq!(requests[0].json()["reportingController"], "helm-controller");
    herald.shutdown().await;
}
