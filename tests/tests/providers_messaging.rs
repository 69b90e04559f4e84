//! Alerting, tracing and messaging providers end to end, through ingest →
//! router → sender on a real nats-server: `alertmanager` against a real
//! Alertmanager (the alert is read back through its own API), `otel`
//! against an OTLP/HTTP receiver that decodes every export, and `nats`
//! against a second, real nats-server for each way Flux authenticates
//! (plus a token), read back by a subscriber. Each also fails on purpose:
//! retried answers and connections, and dead letters with their reasons.

use std::time::Duration;

use futures::StreamExt as _;
use herald_flux::objects::ObjectMeta;
use herald_tests::alertmanager::TestAlertmanager;
use herald_tests::fake::otlp::FakeOtlp;
use herald_tests::fake::{FakeServer, Reply};
use herald_tests::fixtures::{Alert, Event, Provider, dead_letters, deliveries_drained};
use herald_tests::herald::{Options, TestHerald, config_dir};
use herald_tests::nats::TestNats;
use herald_tests::nats_auth::{AuthMode, AuthNats};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status::StatusCode};
use serde_json::json;
use sha2::{Digest as _, Sha256};

const NAMESPACE: &str = "flux-system";
const REVISION: &str = "main@sha1:731f7eaddfb6af01cb2173e18f0f75b0ba780ef1";
const UID: &str = "5b5c2a40-8f0e-4a0a-9d5e-0c2f3a1b7e61";
const MESSAGE: &str = "service/apps/webapp validation error: spec.type: Unsupported value: Ingress";

/// A failed Kustomization with a revision, as kustomize-controller posts it.
fn event() -> Event {
    Event::new("Kustomization", NAMESPACE, "webapp")
        .uid(UID)
        .severity("error")
        .reason("ValidationFailed")
        .message(MESSAGE)
        .metadata("kustomize.toolkit.fluxcd.io/revision", REVISION)
        .timestamp("2024-01-01T10:00:00Z")
}

/// The whole event as Flux's Go code encodes it (the NATS payload).
fn event_go_json() -> String {
    format!(
        concat!(
            r#"{{"involvedObject":{{"kind":"Kustomization","namespace":"flux-system","name":"webapp","uid":"{}","apiVersion":"kustomize.toolkit.fluxcd.io/v1"}},"#,
            r#""severity":"error","timestamp":"2024-01-01T10:00:00Z","message":"{}","#,
            r#""reason":"ValidationFailed","metadata":{{"revision":"{}"}},"reportingController":"kustomize-controller"}}"#
        ),
        UID, MESSAGE, REVISION
    )
}

/// A `v1` Secret whose values are JSON strings (YAML double-quoted
/// scalars), so that multi-line values such as a `.creds` file survive.
fn secret(name: &str, entries: &[(&str, String)]) -> String {
    let data: Vec<String> = entries
        .iter()
        .map(|(k, v)| format!("{}: {}", json!(k), json!(v)))
        .collect();
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: {NAMESPACE}}}\nstringData: {{{}}}\n---\n",
        data.join(", ")
    )
}

/// A Provider `name` of `provider_type`, its Secret when `entries` is not
/// empty, and an Alert `name` on every Kustomization sending to it.
fn pair(name: &str, provider: Provider, entries: &[(&str, String)], alert: Alert) -> String {
    let mut out = String::new();
    let mut provider = provider;
    if !entries.is_empty() {
        let secret_name = format!("{name}-secret");
        out.push_str(&secret(&secret_name, entries));
        provider = provider.secret_ref(&secret_name);
    }
    out.push_str(&provider.to_string());
    out.push_str(&alert.source("Kustomization", "*").to_string());
    out
}

fn deliveries_metric(provider_type: &str, outcome: &str) -> String {
    format!(
        r#"herald_delivery_attempts_total{{provider_type="{provider_type}",outcome="{outcome}",cluster="test"}}"#
    )
}

/// The count of a `herald_delivery_attempts_total` series (0 when absent).
fn deliveries(herald: &TestHerald, provider_type: &str, outcome: &str) -> u64 {
    let series = deliveries_metric(provider_type, outcome);
    herald
        .metrics
        .encode()
        .lines()
        .find_map(|line| line.strip_prefix(&series))
        .and_then(|rest| rest.trim().parse().ok())
        .unwrap_or(0)
}

/// Waits for `n` dead letters and returns their reasons and last answers.
async fn dead(nats: &TestNats, n: usize) -> Vec<(String, u32, String)> {
    herald_tests::eventually(&format!("{n} dead letters"), || async {
        let letters = dead_letters(nats).await;
        (letters.len() >= n).then(|| {
            letters
                .into_iter()
                .map(|(_, d)| (d.reason, d.last_status, d.last_response))
                .collect()
        })
    })
    .await
}

// ---------------------------------------------------------------------------
// alertmanager

/// The labels and annotations Flux sends for [`event()`] with an Alert
/// summary.
fn alertmanager_labels() -> serde_json::Value {
    json!({
        "alertname": "FluxKustomizationValidationfailed",
        "severity": "error",
        "reason": "ValidationFailed",
        "kind": "Kustomization",
        "name": "webapp",
        "namespace": "flux-system",
        "reportingcontroller": "kustomize-controller",
        "revision": REVISION,
    })
}

#[tokio::test]
async fn alertmanager_holds_the_alert_flux_sends() {
    let nats = TestNats::start().await;
    let alertmanager = TestAlertmanager::start().await;
    let manifests = pair(
        "am",
        Provider::new(NAMESPACE, "am", "alertmanager").address(&alertmanager.url("/api/v2/alerts")),
        &[("token", "am-token".to_owned())],
        Alert::new(NAMESPACE, "am", "am").event_metadata(&[("summary", "Production cluster")]),
    );
    let dir = config_dir(&manifests);
    let herald = TestHerald::start(nats.url(), dir.path()).await;

    assert_eq!(herald.post(event()).await.0, 202, "ingest accepts");
    let alert = alertmanager
        .wait_for_alert("FluxKustomizationValidationfailed")
        .await;
    assert_eq!(alert["labels"], alertmanager_labels(), "{alert}");
    assert_eq!(
        alert["annotations"],
        json!({"message": MESSAGE, "summary": "Production cluster"}),
        "{alert}"
    );
    // Alertmanager writes times with milliseconds; Flux's endsAt (Go's
    // zero time) makes it resolve the alert after its resolve_timeout.
    assert_eq!(alert["startsAt"], "2024-01-01T10:00:00.000Z");
    assert_eq!(alert["status"]["state"], "active");
    deliveries_drained(&nats).await;
    assert!(dead_letters(&nats).await.is_empty(), "not dead-lettered");
    assert_eq!(alertmanager.alerts().await.len(), 1, "one alert");
    herald.shutdown().await;
    alertmanager.stop().await;
}

/// Alertmanager answers 400 to a label name it cannot take (an Alert's
/// `eventMetadata` key with a dash): dead at once, with its own words.
#[tokio::test]
async fn alertmanager_refusal_is_a_dead_letter_with_its_reason() {
    let nats = TestNats::start().await;
    let alertmanager = TestAlertmanager::start().await;
    let manifests = pair(
        "am",
        Provider::new(NAMESPACE, "am", "alertmanager").address(&alertmanager.url("/api/v2/alerts")),
        &[],
        Alert::new(NAMESPACE, "am", "am").event_metadata(&[("team-name", "platform")]),
    );
    let dir = config_dir(&manifests);
    let herald = TestHerald::start(nats.url(), dir.path()).await;

    assert_eq!(herald.post(event()).await.0, 202, "ingest accepts");
    let letters = dead(&nats, 1).await;
    let (reason, status, response) = &letters[0];
    assert_eq!(*status, 400, "{reason}");
    assert!(reason.contains("destination answered 400"), "{reason}");
    assert!(
        response.contains(r#"invalid label set: invalid name \"team-name\""#),
        "{response}"
    );
    assert_eq!(deliveries(&herald, "alertmanager", "dead"), 1);
    assert_eq!(
        deliveries(&herald, "alertmanager", "retry"),
        0,
        "never retried"
    );
    assert!(alertmanager.alerts().await.is_empty());
    herald.shutdown().await;
    alertmanager.stop().await;
}

/// An Alertmanager behind a proxy that answers 500, then 429, then passes:
/// the same alert is sent again until accepted, once.
#[tokio::test]
async fn alertmanager_5xx_and_429_are_retried_with_the_same_body() {
    let nats = TestNats::start().await;
    let fake = FakeServer::webhook().await;
    fake.script([
        Reply::status(500),
        Reply::status(429).header("retry-after", "1"),
    ]);
    let manifests = pair(
        "am",
        Provider::new(NAMESPACE, "am", "alertmanager").address(&fake.url("/api/v2/alerts")),
        &[
            ("token", "am-token".to_owned()),
            ("username", "admin".to_owned()),
            ("password", "am-password".to_owned()),
        ],
        Alert::new(NAMESPACE, "am", "am"),
    );
    let dir = config_dir(&manifests);
    let herald = TestHerald::start(nats.url(), dir.path()).await;

    assert_eq!(herald.post(event()).await.0, 202, "ingest accepts");
    let requests = fake.wait_for(3).await;
    deliveries_drained(&nats).await;
    let requests_after = fake.requests();
    assert_eq!(requests_after.len(), 3, "delivered once after two refusals");
    let answered: Vec<u16> = requests.iter().map(|r| r.answered).collect();
    assert_eq!(answered, [500, 429, 200]);
    let expected = format!(
        concat!(
            r#"[{{"status":"firing","labels":{{"alertname":"FluxKustomizationValidationfailed","#,
            r#""kind":"Kustomization","name":"webapp","namespace":"flux-system","reason":"ValidationFailed","#,
            r#""reportingcontroller":"kustomize-controller","revision":"{}","severity":"error"}},"#,
            r#""annotations":{{"message":"{}"}},"#,
            r#""startsAt":"2024-01-01T10:00:00Z","endsAt":"0001-01-01T00:00:00Z"}}]"#
        ),
        REVISION, MESSAGE
    );
    for request in &requests {
        assert_eq!(request.path, "/api/v2/alerts");
        assert_eq!(request.text(), expected);
        assert!(request.is_json());
        // Basic wins over the token, as in Flux.
        assert_eq!(
            request.header("authorization").as_deref(),
            Some("Basic YWRtaW46YW0tcGFzc3dvcmQ=")
        );
    }
    assert!(
        requests[2].at - requests[1].at + Duration::from_millis(100) >= Duration::from_secs(1),
        "the 429's Retry-After is waited for"
    );
    assert!(dead_letters(&nats).await.is_empty());
    herald.shutdown().await;
}

// ---------------------------------------------------------------------------
// otel

fn string_value(kv: &KeyValue) -> (String, String) {
    let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(v)) => v.clone(),
        other => panic!("{}: not a string: {other:?}", kv.key),
    };
    (kv.key.clone(), value)
}

fn pairs(entries: &[(&str, &str)]) -> Vec<(String, String)> {
    entries
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[tokio::test]
async fn otel_exports_one_span_per_event_as_flux() {
    let nats = TestNats::start().await;
    let receiver = FakeOtlp::start().await;
    let manifests = pair(
        "traces",
        // No path: Flux's exporter posts to /v1/traces.
        Provider::new(NAMESPACE, "traces", "otel").address(&receiver.url("")),
        &[
            ("headers", "X-Scope-OrgID: tenant-1\n".to_owned()),
            ("token", "otel-token".to_owned()),
        ],
        Alert::new(NAMESPACE, "traces", "traces").source("HelmRepository", "*"),
    );
    let dir = config_dir(&manifests);
    let herald = TestHerald::start(nats.url(), dir.path()).await;

    // Flux sends no span for HelmRepository events: once the Kustomization
    // that follows is exported and every delivery acked, it was skipped.
    let helm_repository = Event::new("HelmRepository", NAMESPACE, "charts")
        .reason("Succeeded")
        .message("stored index");
    assert_eq!(herald.post(helm_repository).await.0, 202);
    let before = jiff::Timestamp::now().as_nanosecond();
    assert_eq!(herald.post(event()).await.0, 202, "ingest accepts");
    let requests = receiver.wait_for(1).await;
    deliveries_drained(&nats).await;
    let after = jiff::Timestamp::now().as_nanosecond();
    assert_eq!(
        receiver.requests().len(),
        1,
        "one export, none for HelmRepository"
    );
    let request = &requests[0];
    assert_eq!(request.answered, 200);
    assert_eq!(request.path, "/v1/traces");
    assert_eq!(
        request.header("content-type").as_deref(),
        Some("application/x-protobuf")
    );
    assert_eq!(request.header("x-scope-orgid").as_deref(), Some("tenant-1"));
    assert_eq!(
        request.header("authorization").as_deref(),
        Some("Bearer otel-token")
    );

    let exports = receiver.exports();
    let [export] = exports.as_slice() else {
        panic!("one export: {exports:?}");
    };
    let [resource_spans] = export.resource_spans.as_slice() else {
        panic!("one resource: {export:?}");
    };
    let alert_uid = ObjectMeta {
        namespace: NAMESPACE.to_owned(),
        name: "traces".to_owned(),
        ..ObjectMeta::default()
    }
    .uid_or_derived("Alert");
    let resource: Vec<_> = resource_spans
        .resource
        .as_ref()
        .expect("a resource")
        .attributes
        .iter()
        .map(string_value)
        .collect();
    assert_eq!(
        resource,
        pairs(&[
            ("service.name", "flux-system/traces"),
            ("service.namespace", "flux-system"),
            ("service.instance.id", &alert_uid),
        ])
    );
    assert_eq!(
        resource_spans.schema_url,
        "https://opentelemetry.io/schemas/1.34.0"
    );
    let [scope_spans] = resource_spans.scope_spans.as_slice() else {
        panic!("one scope");
    };
    assert_eq!(
        scope_spans.scope.as_ref().expect("a scope").name,
        "flux:notification-controller"
    );
    let [span] = scope_spans.spans.as_slice() else {
        panic!("one span");
    };
    assert_eq!(span.name, "Kustomization: flux-system/webapp");
    assert_eq!(span.kind, i32::from(SpanKind::Internal));
    let attributes: Vec<_> = span.attributes.iter().map(string_value).collect();
    assert_eq!(
        attributes,
        pairs(&[
            ("object.uid", UID),
            ("object.kind", "Kustomization"),
            ("object.name", "webapp"),
            ("object.namespace", "flux-system"),
            ("revision", REVISION),
        ])
    );
    let status = span.status.as_ref().expect("a status");
    assert_eq!(status.code, i32::from(StatusCode::Error));
    assert_eq!(status.message, MESSAGE);
    let digest = Sha256::digest(format!("{alert_uid}:{REVISION}").as_bytes());
    assert_eq!(
        span.trace_id,
        digest[..16],
        "the Alert's trace for the revision"
    );
    assert_eq!(span.span_id.len(), 8);
    assert_ne!(span.span_id, [0; 8]);
    assert!(span.parent_span_id.is_empty(), "a root span");
    assert_eq!(span.start_time_unix_nano, 1_704_103_200_000_000_000);
    let end = i128::from(span.end_time_unix_nano);
    assert!(before <= end && end <= after, "ends when sent");
    assert!(dead_letters(&nats).await.is_empty());
    herald.shutdown().await;
}

/// The receiver answers 503, then 429, then accepts: the event is sent
/// again until exported, once. Then a 400: dead at once with the answer.
#[tokio::test]
async fn otel_retries_busy_receivers_and_dead_letters_refused_exports() {
    let nats = TestNats::start().await;
    let receiver = FakeOtlp::start().await;
    receiver.script([
        Reply::status(503),
        Reply::status(429).header("retry-after", "1"),
    ]);
    let manifests = pair(
        "traces",
        Provider::new(NAMESPACE, "traces", "otel").address(&receiver.url("/otlp/v1/traces")),
        &[],
        Alert::new(NAMESPACE, "traces", "traces"),
    );
    let dir = config_dir(&manifests);
    let herald = TestHerald::start(nats.url(), dir.path()).await;

    assert_eq!(herald.post(event()).await.0, 202);
    let requests = receiver.wait_for(3).await;
    deliveries_drained(&nats).await;
    let answered: Vec<u16> = receiver.requests().iter().map(|r| r.answered).collect();
    assert_eq!(
        answered,
        [503, 429, 200],
        "exported once after two refusals"
    );
    assert!(requests.iter().all(|r| r.path == "/otlp/v1/traces"));
    assert!(requests.iter().all(|r| r.header("authorization").is_none()));
    assert_eq!(receiver.exports().len(), 1);
    assert!(dead_letters(&nats).await.is_empty());

    receiver.script([Reply::text(400, "bad export: unknown field")]);
    assert_eq!(herald.post(event().message("refused")).await.0, 202);
    let letters = dead(&nats, 1).await;
    let (reason, status, response) = &letters[0];
    assert_eq!(*status, 400);
    assert!(reason.contains("destination answered 400"), "{reason}");
    assert_eq!(response, "bad export: unknown field");
    assert_eq!(receiver.requests().len(), 4, "a 400 is not retried");
    herald.shutdown().await;
}

// ---------------------------------------------------------------------------
// nats

/// One way of authenticating to the NATS server Flux publishes to.
struct Auth {
    name: &'static str,
    mode: fn() -> AuthMode,
    /// The Provider's Secret for the server's mode.
    secret: fn(&AuthMode) -> Vec<(&'static str, String)>,
}

fn auths() -> Vec<Auth> {
    vec![
        Auth {
            name: "creds (operator mode, user JWT)",
            mode: AuthMode::creds,
            secret: |mode| match mode {
                AuthMode::Creds { creds } => vec![("creds", creds.clone())],
                _ => unreachable!(),
            },
        },
        Auth {
            name: "nkey",
            mode: AuthMode::nkey,
            secret: |mode| match mode {
                AuthMode::Nkey { seed } => vec![("nkey", seed.clone())],
                _ => unreachable!(),
            },
        },
        Auth {
            name: "username and password",
            mode: || AuthMode::user_password("flux", "nats-password"),
            secret: |_| {
                vec![
                    ("username", "flux".to_owned()),
                    ("password", "nats-password".to_owned()),
                ]
            },
        },
        Auth {
            name: "token",
            mode: || AuthMode::token("nats-token"),
            secret: |_| vec![("token", "nats-token".to_owned())],
        },
        Auth {
            name: "none",
            mode: || AuthMode::Open,
            secret: |_| Vec::new(),
        },
    ]
}

async fn publishes_with(auth: Auth) {
    let name = auth.name;
    let nats = TestNats::start().await;
    let target = AuthNats::start((auth.mode)()).await;
    let subscriber = target.client().await;
    let mut messages = subscriber
        .subscribe("flux.events.>")
        .await
        .expect("subscribe");
    subscriber.flush().await.expect("flush");
    let manifests = pair(
        "bus",
        Provider::new(NAMESPACE, "bus", "nats")
            .address(&target.url())
            .channel("flux.events.webapp"),
        &(auth.secret)(&target.mode),
        Alert::new(NAMESPACE, "bus", "bus"),
    );
    let dir = config_dir(&manifests);
    let herald = TestHerald::start(nats.url(), dir.path()).await;

    assert_eq!(herald.post(event()).await.0, 202, "{name}: ingest accepts");
    let message = tokio::time::timeout(herald_tests::patience(), messages.next())
        .await
        .unwrap_or_else(|_| panic!("{name}: no message{}", target.log_text()))
        .expect("a message");
    assert_eq!(message.subject.as_str(), "flux.events.webapp", "{name}");
    assert_eq!(
        String::from_utf8_lossy(&message.payload),
        event_go_json(),
        "{name}: payload"
    );
    deliveries_drained(&nats).await;
    assert!(dead_letters(&nats).await.is_empty(), "{name}: not dead");

    // A second event goes over the same, kept connection.
    assert_eq!(herald.post(event().message("again")).await.0, 202);
    let again = tokio::time::timeout(herald_tests::patience(), messages.next())
        .await
        .unwrap_or_else(|_| panic!("{name}: no second message"))
        .expect("a message");
    assert!(String::from_utf8_lossy(&again.payload).contains(r#""message":"again""#));
    let publishers: Vec<String> = target
        .connection_names()
        .await
        .into_iter()
        .filter(|n| n == "NATS Provider Publisher")
        .collect();
    assert_eq!(publishers.len(), 1, "{name}: one kept publisher connection");
    herald.shutdown().await;
}

#[tokio::test]
async fn nats_publishes_the_event_with_every_authentication() {
    futures::stream::iter(auths())
        .map(publishes_with)
        .buffer_unordered(2)
        .collect::<Vec<()>>()
        .await;
}

/// The NATS server is down when the event comes: the publish is retried
/// until it is back, then delivered once. (Its JetStream keeps what is
/// published on `flux.>`, so the test sees it whenever it arrives.)
#[tokio::test]
async fn nats_server_down_then_up_is_retried_and_delivered() {
    let nats = TestNats::start().await;
    let mut target =
        AuthNats::start_with(AuthMode::user_password("flux", "nats-password"), true).await;
    {
        let js = async_nats::jetstream::new(target.client().await);
        js.create_stream(async_nats::jetstream::stream::Config {
            name: "FLUX".to_owned(),
            subjects: vec!["flux.>".to_owned()],
            ..Default::default()
        })
        .await
        .expect("create the stream");
    }
    target.kill9().await;
    let manifests = pair(
        "bus",
        Provider::new(NAMESPACE, "bus", "nats")
            .address(&target.url())
            .channel("flux.events"),
        &[
            ("username", "flux".to_owned()),
            ("password", "nats-password".to_owned()),
        ],
        Alert::new(NAMESPACE, "bus", "bus"),
    );
    let dir = config_dir(&manifests);
    let mut options = Options::default();
    options.sender_args.max_attempts = 50;
    let herald = TestHerald::start_with(nats.url(), dir.path(), options).await;

    assert_eq!(herald.post(event()).await.0, 202, "ingest accepts");
    herald_tests::eventually("a retried publish", || async {
        (deliveries(&herald, "nats", "retry") >= 1).then_some(())
    })
    .await;
    target.spawn().await;
    deliveries_drained(&nats).await;
    assert_eq!(deliveries(&herald, "nats", "delivered"), 1);
    let js = async_nats::jetstream::new(target.client().await);
    let stream = js.get_stream("FLUX").await.expect("the stream");
    let message = stream.get_raw_message(1).await.expect("the event");
    assert_eq!(message.subject.as_str(), "flux.events");
    assert_eq!(String::from_utf8_lossy(&message.payload), event_go_json());
    assert!(stream.get_raw_message(2).await.is_err(), "published once");
    assert!(dead_letters(&nats).await.is_empty());
    herald.shutdown().await;
}

/// A wrong password, and a subject NATS cannot publish to: dead letters at
/// once, each saying why, never with the password.
#[tokio::test]
async fn nats_refusals_are_dead_letters_with_their_reasons() {
    let nats = TestNats::start().await;
    let target = AuthNats::start(AuthMode::user_password("flux", "nats-password")).await;
    let mut manifests = pair(
        "wrong",
        Provider::new(NAMESPACE, "wrong", "nats")
            .address(&target.url())
            .channel("flux.events"),
        &[
            ("username", "flux".to_owned()),
            ("password", "wrong-S3cret".to_owned()),
        ],
        Alert::new(NAMESPACE, "wrong", "wrong"),
    );
    manifests.push_str(&pair(
        "subject",
        Provider::new(NAMESPACE, "subject", "nats")
            .address(&target.url())
            .channel("flux events"),
        &[
            ("username", "flux".to_owned()),
            ("password", "nats-password".to_owned()),
        ],
        Alert::new(NAMESPACE, "subject", "subject"),
    ));
    let dir = config_dir(&manifests);
    let herald = TestHerald::start(nats.url(), dir.path()).await;

    assert_eq!(herald.post(event()).await.0, 202, "ingest accepts");
    let reasons: Vec<String> = dead(&nats, 2)
        .await
        .into_iter()
        .map(|(reason, _, _)| reason)
        .collect();
    assert!(
        reasons.iter().any(|r| r.contains(
            "nats: the NATS server refused the Provider's credentials (authorization violation)"
        )),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r
                .contains(r#"nats: NATS subject (channel) "flux events" is not a valid subject"#)),
        "{reasons:?}"
    );
    assert!(reasons.iter().all(|r| !r.contains("S3cret")), "{reasons:?}");
    assert_eq!(deliveries(&herald, "nats", "retry"), 0, "never retried");
    deliveries_drained(&nats).await;
    assert_eq!(target.messages_in().await, 0, "nothing published");
    herald.shutdown().await;
}
