//! `googlepubsub` end to end against a fake Google Cloud: the service
//! account's JWT is exchanged for an access token once and reused, renewed
//! when Pub/Sub refuses it, the message is the event's Flux JSON with the
//! Secret's headers as attributes, a rate limit is waited out, and a topic
//! that does not exist is a dead letter that says so, without the key.

use std::time::Duration;

use herald_tests::fake::google::{FakeGoogle, PROJECT, TOPIC};
use herald_tests::fixtures::{Alert, Event, Secret, dead_letters};
use herald_tests::herald::{TestHerald, config_dir};
use herald_tests::nats::TestNats;

const NS: &str = "flux-system";

fn manifests(google: &FakeGoogle, topic: &str) -> String {
    format!(
        "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Provider\n\
         metadata: {{name: pubsub, namespace: {NS}, annotations: {{herald.dev/endpoint: '{}'}}}}\n\
         spec: {{type: googlepubsub, address: {PROJECT}, channel: {topic}, secretRef: {{name: gcp}}}}\n---\n{}{}",
        google.server().url(""),
        Secret::new(NS, "gcp")
            .data("token", &google.service_account_json())
            .data("headers", "{team: platform, env: prod}"),
        Alert::new(NS, "all", "pubsub").source("Kustomization", "*"),
    )
}

fn event(n: u32) -> String {
    Event::new("Kustomization", NS, "apps")
        .severity("info")
        .reason("ReconciliationSucceeded")
        .message(&format!("Reconciliation {n} finished"))
        .metadata("kustomize.toolkit.fluxcd.io/revision", "main@sha1:abc")
        .json()
}

#[tokio::test]
async fn events_are_published_with_one_token_renewed_when_refused() {
    let nats = TestNats::start().await;
    let google = FakeGoogle::start().await;
    let dir = config_dir(&manifests(&google, TOPIC));
    let herald = TestHerald::start(nats.url(), dir.path()).await;

    for n in 1..=3 {
        assert_eq!(herald.post(event(n)).await.0, 202);
    }
    herald_tests::eventually("three published", || async {
        (google.published().len() == 3).then_some(())
    })
    .await;
    assert_eq!(google.tokens_granted(), 1, "one token for every message");
    let published = google.published();
    let first = &published[0];
    assert_eq!(first.topic, format!("projects/{PROJECT}/topics/{TOPIC}"));
    assert_eq!(first.attributes["team"], "platform");
    assert_eq!(first.attributes["env"], "prod");
    // The data is the event as Flux's JSON: its field order, the metadata
    // without the group prefix.
    let text = String::from_utf8(first.data.clone()).unwrap();
    assert!(
        text.starts_with(
            r#"{"involvedObject":{"kind":"Kustomization","namespace":"flux-system","name":"apps""#
        ),
        "{text}"
    );
    let data: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(data["reason"], "ReconciliationSucceeded");
    assert_eq!(data["metadata"]["revision"], "main@sha1:abc");
    assert_eq!(data["reportingController"], "kustomize-controller");

    // The token request is the JWT bearer grant.
    let grant = google
        .server()
        .requests()
        .into_iter()
        .find(|r| r.path == "/token")
        .unwrap();
    let form = grant.form();
    assert_eq!(
        form[0],
        (
            "grant_type".to_owned(),
            "urn:ietf:params:oauth:grant-type:jwt-bearer".to_owned()
        )
    );
    assert_eq!(form[1].0, "assertion");

    // Google revokes the token: the 401 makes the sender get another and publish.
    google.revoke_tokens();
    assert_eq!(herald.post(event(4)).await.0, 202);
    herald_tests::eventually("published with a new token", || async {
        (google.published().len() == 4).then_some(())
    })
    .await;
    assert_eq!(google.tokens_granted(), 2);

    // Pub/Sub's rate limit: waited out, then published once.
    google.server().rate_limit_next(Duration::from_secs(1));
    assert_eq!(herald.post(event(5)).await.0, 202);
    herald_tests::eventually("published after the rate limit", || async {
        (google.published().len() == 5).then_some(())
    })
    .await;
    let limited = google
        .server()
        .requests()
        .into_iter()
        .filter(|r| r.answered == 429)
        .count();
    assert_eq!(limited, 1);
    assert!(dead_letters(&nats).await.is_empty());
}

#[tokio::test]
async fn a_missing_topic_is_a_dead_letter_that_says_so_without_the_key() {
    let nats = TestNats::start().await;
    let google = FakeGoogle::start().await;
    let dir = config_dir(&manifests(&google, "no-such-topic"));
    let herald = TestHerald::start(nats.url(), dir.path()).await;
    assert_eq!(herald.post(event(1)).await.0, 202);
    let dead = herald_tests::eventually("dead letter", || async {
        dead_letters(&nats).await.into_iter().next()
    })
    .await;
    let reason = &dead.1.reason;
    assert!(reason.contains("404"), "{reason}");
    assert!(
        reason.contains("NOT_FOUND") || dead.1.last_response.contains("NOT_FOUND"),
        "{reason}"
    );
    let shown = format!("{:?}", dead.1);
    let key_line = herald_tests::fake::google::PRIVATE_KEY
        .lines()
        .nth(1)
        .unwrap();
    assert!(!shown.contains(key_line), "the key leaked: {shown}");
    assert!(!shown.contains("ya29."), "the access token leaked: {shown}");
    assert!(google.published().is_empty());
}
