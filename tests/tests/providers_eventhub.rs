//! `azureeventhub` end to end (ingest → router → sender) against a fake
//! Event Hubs namespace and a fake Entra ID: each way to authenticate
//! (a SAS connection string, Flux's static token, an Entra ID client
//! credential) delivers the event's Go JSON as the event body; the Entra
//! token is got once for several events and again when it is refused; a
//! throttled send waits and is delivered once; a key or secret the service
//! refuses is a dead letter that says why without the secret.

use std::time::Duration;

use herald_tests::fake::Recorded;
use herald_tests::fake::azure_eventhub::{
    CONTENT_TYPE, FakeEventHubs, HUB, KEY, KEY_NAME, STATIC_TOKEN,
};
use herald_tests::fake::entra::{CLIENT_ID, CLIENT_SECRET, FakeEntra, Issued, SCOPE, TENANT};
use herald_tests::fixtures::{Alert, Event, Provider, Secret, dead_letters};
use herald_tests::herald::{TestHerald, config_dir};
use herald_tests::nats::TestNats;

const NS: &str = "flux-system";
const REVISION: &str = "main@sha1:731f7eaddfb6af01cb2173e18f0f75b0ba780ef1";

/// A failed Kustomization; `n` tells events apart (ingest drops repeats).
fn event(n: u32) -> Event {
    Event::new("Kustomization", NS, "webapp")
        .severity("error")
        .reason("ValidationFailed")
        .message(&format!("attempt {n}: <webapp> & \"ingress\" rejected"))
        .metadata("kustomize.toolkit.fluxcd.io/revision", REVISION)
        .timestamp("2024-01-01T10:00:00Z")
}

/// The event as Flux's `json.Marshal` gives it to the Event Hubs SDK, after
/// the metadata rules.
fn go_json(n: u32) -> String {
    format!(
        concat!(
            r#"{{"involvedObject":{{"kind":"Kustomization","namespace":"flux-system","name":"webapp","apiVersion":"kustomize.toolkit.fluxcd.io/v1"}},"#,
            r#""severity":"error","timestamp":"2024-01-01T10:00:00Z","#,
            r#""message":"attempt {}: \u003cwebapp\u003e \u0026 \"ingress\" rejected","#,
            r#""reason":"ValidationFailed","metadata":{{"revision":"{}"}},"reportingController":"kustomize-controller"}}"#
        ),
        n, REVISION
    )
}

/// An `azureeventhub` Provider `eh` with `spec`, `secretRef: eh`, and the
/// `herald.dev/endpoint` annotation when given.
fn provider(spec: &[&str], endpoint: Option<&str>) -> String {
    let Some(endpoint) = endpoint else {
        let mut provider = Provider::new(NS, "eh", "azureeventhub").secret_ref("eh");
        for entry in spec {
            provider = provider.spec(entry);
        }
        return provider.to_string();
    };
    let mut entries = vec!["type: azureeventhub", "secretRef: {name: eh}"];
    entries.extend(spec);
    format!(
        "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Provider\n\
         metadata: {{name: eh, namespace: {NS}, annotations: {{herald.dev/endpoint: '{endpoint}'}}}}\n\
         spec: {{{}}}\n---\n",
        entries.join(", ")
    )
}

fn manifests(provider: &str, secret: &Secret) -> String {
    format!(
        "{provider}{}{secret}",
        Alert::new(NS, "all", "eh").source("Kustomization", "*")
    )
}

/// The requests that reached the hub's send path.
fn sends(hubs: &FakeEventHubs) -> Vec<Recorded> {
    hubs.requests()
        .into_iter()
        .filter(|r| r.path == format!("/{HUB}/messages"))
        .collect()
}

async fn accepted(hubs: &FakeEventHubs, n: usize) -> Vec<String> {
    herald_tests::eventually(&format!("{n} events in the hub"), || async {
        let events = hubs.events();
        (events.len() >= n).then_some(events)
    })
    .await
}

fn assert_sent_as_documented(request: &Recorded) {
    assert_eq!(request.method, "POST");
    assert_eq!(request.query, "timeout=60&api-version=2014-01");
    assert_eq!(
        request.header("content-type").as_deref(),
        Some(CONTENT_TYPE)
    );
}

#[tokio::test]
async fn a_sas_connection_string_signs_each_send_and_a_throttled_send_waits() {
    let nats = TestNats::start().await;
    let hubs = FakeEventHubs::start(Issued::default()).await;
    let secret = Secret::new(NS, "eh").data("address", &hubs.connection_string(KEY));
    let dir = config_dir(&manifests(&provider(&[], None), &secret));
    let herald = TestHerald::start(nats.url(), dir.path()).await;

    assert_eq!(herald.post(event(1)).await.0, 202);
    assert_eq!(accepted(&hubs, 1).await, [go_json(1)]);
    let first = &sends(&hubs)[0];
    assert_sent_as_documented(first);
    let authorization = first.header("authorization").unwrap();
    assert!(
        authorization.starts_with("SharedAccessSignature sr=")
            && authorization.ends_with(&format!("&skn={KEY_NAME}")),
        "{authorization}"
    );
    assert!(!authorization.contains(KEY), "the key itself is never sent");

    // Throttled: Event Hubs' 503 with Retry-After; retried, delivered once.
    hubs.rate_limit_next(Duration::from_secs(1));
    assert_eq!(herald.post(event(2)).await.0, 202);
    assert_eq!(accepted(&hubs, 2).await, [go_json(1), go_json(2)]);
    let answered: Vec<u16> = sends(&hubs).iter().map(|r| r.answered).collect();
    assert_eq!(answered, [201, 503, 201]);
    let sends = sends(&hubs);
    assert!(
        sends[2].at.duration_since(sends[1].at) >= Duration::from_secs(1),
        "the wait Event Hubs asked for is kept"
    );
    assert!(dead_letters(&nats).await.is_empty());
    herald.shutdown().await;
}

#[tokio::test]
async fn a_static_token_is_sent_to_the_endpoint_the_annotation_names() {
    let nats = TestNats::start().await;
    let hubs = FakeEventHubs::start(Issued::default()).await;
    let secret = Secret::new(NS, "eh").data("token", STATIC_TOKEN);
    let spec = [&*format!("address: {HUB}"), "channel: my-namespace"];
    let dir = config_dir(&manifests(&provider(&spec, Some(&hubs.url(""))), &secret));
    let herald = TestHerald::start(nats.url(), dir.path()).await;

    assert_eq!(herald.post(event(1)).await.0, 202);
    assert_eq!(accepted(&hubs, 1).await, [go_json(1)]);
    let send = &sends(&hubs)[0];
    assert_sent_as_documented(send);
    assert_eq!(
        send.header("authorization"),
        Some(format!("Bearer {STATIC_TOKEN}"))
    );
    assert!(dead_letters(&nats).await.is_empty());
    herald.shutdown().await;
}

#[tokio::test]
async fn an_entra_token_is_got_once_for_several_events_and_again_when_refused() {
    let nats = TestNats::start().await;
    let entra = FakeEntra::start().await;
    let hubs = FakeEventHubs::start(entra.issued()).await;
    let secret = Secret::new(NS, "eh")
        .data("tenantId", TENANT)
        .data("clientId", CLIENT_ID)
        .data("clientSecret", CLIENT_SECRET)
        .data("authorityHost", &entra.authority());
    let spec = [&*format!("address: {HUB}"), "channel: my-namespace"];
    let dir = config_dir(&manifests(&provider(&spec, Some(&hubs.url(""))), &secret));
    let herald = TestHerald::start(nats.url(), dir.path()).await;

    for n in 1..=3 {
        assert_eq!(herald.post(event(n)).await.0, 202);
    }
    let events = accepted(&hubs, 3).await;
    let mut expected: Vec<String> = (1..=3).map(go_json).collect();
    let mut got = events.clone();
    got.sort();
    expected.sort();
    assert_eq!(got, expected, "each event's Go JSON, whatever the order");
    assert_eq!(entra.tokens_granted(), 1, "one token for all three");
    let grant = &entra.requests()[0];
    assert_eq!(grant.path, format!("/{TENANT}/oauth2/v2.0/token"));
    let form = grant.form();
    let value = |key: &str| form.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    assert_eq!(value("grant_type"), Some("client_credentials"));
    assert_eq!(value("client_id"), Some(CLIENT_ID));
    assert_eq!(value("scope"), Some(SCOPE));
    for send in sends(&hubs) {
        assert_sent_as_documented(&send);
        assert_eq!(
            send.header("authorization").as_deref(),
            Some("Bearer eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.fake-entra-0001")
        );
    }

    // The token is revoked: the 401 makes the sender get another and send.
    entra.issued().revoke_all();
    assert_eq!(herald.post(event(4)).await.0, 202);
    let events = accepted(&hubs, 4).await;
    assert_eq!(events[3], go_json(4));
    assert_eq!(entra.tokens_granted(), 2);
    let answered: Vec<u16> = sends(&hubs).iter().map(|r| r.answered).collect();
    assert_eq!(answered, [201, 201, 201, 401, 201]);
    assert!(dead_letters(&nats).await.is_empty());
    herald.shutdown().await;
}

#[tokio::test]
async fn a_wrong_sas_key_is_a_dead_letter_that_says_why_without_the_key() {
    let nats = TestNats::start().await;
    let hubs = FakeEventHubs::start(Issued::default()).await;
    let wrong = "bm90LXRoZS1wb2xpY3lzLWtleS1hdC1hbGwtMDAwMDA=";
    let secret = Secret::new(NS, "eh").data("address", &hubs.connection_string(wrong));
    let dir = config_dir(&manifests(&provider(&[], None), &secret));
    let herald = TestHerald::start(nats.url(), dir.path()).await;

    assert_eq!(herald.post(event(1)).await.0, 202);
    let (_, dead) = herald_tests::eventually("a dead letter", || async {
        dead_letters(&nats).await.into_iter().next()
    })
    .await;
    assert_eq!(dead.last_status, 401);
    assert!(
        dead.reason.starts_with(
            "could not send the event to Event Hubs: destination answered 401: InvalidSignature: The token has an invalid signature."
        ),
        "{}",
        dead.reason
    );
    let shown = format!("{dead:?}");
    assert!(!shown.contains(wrong), "the key leaked: {shown}");
    assert_eq!(sends(&hubs).len(), 1, "a 401 is not retried");
    assert!(hubs.events().is_empty());
    herald.shutdown().await;
}

#[tokio::test]
async fn a_wrong_client_secret_is_a_dead_letter_with_entras_words_and_without_the_secret() {
    let nats = TestNats::start().await;
    let entra = FakeEntra::start().await;
    let hubs = FakeEventHubs::start(entra.issued()).await;
    let wrong = "not-the-app-client-secret-value";
    let secret = Secret::new(NS, "eh")
        .data("tenantId", TENANT)
        .data("clientId", CLIENT_ID)
        .data("clientSecret", wrong)
        .data("authorityHost", &entra.authority());
    let spec = [&*format!("address: {HUB}"), "channel: my-namespace"];
    let dir = config_dir(&manifests(&provider(&spec, Some(&hubs.url(""))), &secret));
    let herald = TestHerald::start(nats.url(), dir.path()).await;

    assert_eq!(herald.post(event(1)).await.0, 202);
    let (_, dead) = herald_tests::eventually("a dead letter", || async {
        dead_letters(&nats).await.into_iter().next()
    })
    .await;
    assert_eq!(dead.last_status, 401);
    assert!(
        dead.reason.starts_with(
            "could not get an Entra ID token for Event Hubs: destination answered 401: invalid_client: AADSTS7000215: Invalid client secret provided."
        ),
        "{}",
        dead.reason
    );
    let shown = format!("{dead:?}");
    assert!(!shown.contains(wrong), "the secret leaked: {shown}");
    assert_eq!(
        entra.requests().len(),
        1,
        "a refused credential is not retried"
    );
    assert!(sends(&hubs).is_empty());
    herald.shutdown().await;
}
