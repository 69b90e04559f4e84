//! Incident and observability providers (`pagerduty`, `opsgenie`,
//! `datadog`, `sentry`) end to end: each row runs ingest → router → sender
//! → its fake on a real nats-server and checks every request the vendor
//! received for one event (method, path, headers, body). The tests after
//! the table check each vendor's failures: its 429 or a 5xx retried and
//! then delivered, and a 4xx that becomes a dead letter holding the
//! vendor's words and none of the Provider's secrets.

use std::time::Duration;

use futures::FutureExt as _;
use futures::future::BoxFuture;
use herald_tests::eventually;
use herald_tests::fake::datadog::{self, FakeDatadog};
use herald_tests::fake::opsgenie::{self, FakeOpsgenie};
use herald_tests::fake::pagerduty::{self, FakePagerDuty, PagerDuty};
use herald_tests::fake::sentry::{self, FakeSentry};
use herald_tests::fake::{FakeServer, Recorded, Reply};
use herald_tests::fixtures::{Event, Provider, dead_letters, deliveries_drained};
use herald_tests::herald::{TestHerald, config_dir};
use herald_tests::nats::TestNats;
use prost::Message as _;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

const NAMESPACE: &str = "flux-system";
const REVISION: &str = "main@sha1:731f7eaddfb6af01cb2173e18f0f75b0ba780ef1";
const ERROR_MESSAGE: &str =
    "service/apps/webapp validation error: spec.type: Unsupported value: Ingress";
const INFO_MESSAGE: &str = "Applied revision: main@sha1:731f7eaddfb6af01cb2173e18f0f75b0ba780ef1";
/// The involved object's uid (PagerDuty's dedup key).
const UID: &str = "5b5c2a40-8f0e-4a0a-9d5e-0c2f3a1b7e61";
/// The Provider's uid (Opsgenie's alias is keyed by it).
const PROVIDER_UID: &str = "9e0f7c1d-3b2a-4c5d-8e6f-a1b2c3d4e5f6";
/// How long the vendor's 429 asks to wait.
const RETRY_AFTER: Duration = Duration::from_secs(2);
const JSON: (&str, &str) = ("content-type", "application/json");

/// A failed Kustomization.
fn error_event() -> Event {
    Event::new("Kustomization", NAMESPACE, "webapp")
        .uid(UID)
        .severity("error")
        .reason("ValidationFailed")
        .message(ERROR_MESSAGE)
        .metadata("kustomize.toolkit.fluxcd.io/revision", REVISION)
        .timestamp("2024-01-01T10:00:00Z")
}

/// The Kustomization recovered.
fn info_event() -> Event {
    Event::new("Kustomization", NAMESPACE, "webapp")
        .uid(UID)
        .severity("info")
        .reason("ReconciliationSucceeded")
        .message(INFO_MESSAGE)
        .metadata("kustomize.toolkit.fluxcd.io/revision", REVISION)
        .timestamp("2024-01-01T10:05:00Z")
}

/// One provider type and event, as Herald must talk to its vendor.
struct Row {
    /// Names the row in failures.
    name: &'static str,
    provider_type: &'static str,
    fake: fn() -> BoxFuture<'static, FakeServer>,
    provider: fn(Provider, &FakeServer) -> Provider,
    secret: fn(&FakeServer) -> Vec<(&'static str, String)>,
    event: Event,
    /// Every request the vendor must receive, in order.
    expect: Vec<Expect>,
}

/// A request the vendor must receive.
struct Expect {
    path: String,
    /// Headers that must be present with these values.
    headers: Vec<(&'static str, String)>,
    body: Body,
}

enum Body {
    /// Exactly these bytes.
    Exact(String),
    /// Checked by this function (bodies with random ids).
    Check(fn(&Recorded)),
}

fn header((name, value): (&'static str, &str)) -> (&'static str, String) {
    (name, value.to_owned())
}

fn pagerduty_fake() -> BoxFuture<'static, FakeServer> {
    async { FakePagerDuty::start().await.server() }.boxed()
}

fn opsgenie_fake() -> BoxFuture<'static, FakeServer> {
    async { FakeOpsgenie::start().await.server() }.boxed()
}

fn datadog_fake() -> BoxFuture<'static, FakeServer> {
    async { FakeDatadog::start().await.server() }.boxed()
}

fn sentry_fake() -> BoxFuture<'static, FakeServer> {
    async { FakeSentry::start().await.server() }.boxed()
}

fn pagerduty_provider(p: Provider, fake: &FakeServer) -> Provider {
    // The path is dropped: only the scheme and host are used.
    p.channel(pagerduty::ROUTING_KEY)
        .address(&fake.url("/v2/enqueue"))
}

fn opsgenie_provider(p: Provider, fake: &FakeServer) -> Provider {
    p.uid(PROVIDER_UID).address(&fake.url("/v2/alerts"))
}

fn opsgenie_secret(_: &FakeServer) -> Vec<(&'static str, String)> {
    vec![("token", opsgenie::API_KEY.to_owned())]
}

fn datadog_provider(p: Provider, fake: &FakeServer) -> Provider {
    p.address(&fake.url(""))
}

fn datadog_secret(_: &FakeServer) -> Vec<(&'static str, String)> {
    vec![("token", datadog::API_KEY.to_owned())]
}

fn sentry_provider(p: Provider, _: &FakeServer) -> Provider {
    p.channel("production")
}

/// The DSN (with a path prefix) is kept in the Secret.
fn sentry_secret(fake: &FakeServer) -> Vec<(&'static str, String)> {
    vec![("address", sentry_dsn(fake))]
}

fn sentry_dsn(fake: &FakeServer) -> String {
    sentry::dsn(fake, "/sentry", sentry::PUBLIC_KEY)
}

fn no_secret(_: &FakeServer) -> Vec<(&'static str, String)> {
    Vec::new()
}

fn opsgenie_alias(reason: &str) -> String {
    hex::encode(Sha256::digest(
        format!("{PROVIDER_UID}/Kustomization/{NAMESPACE}/webapp/{reason}").as_bytes(),
    ))
}

fn sentry_auth() -> (&'static str, String) {
    (
        "x-sentry-auth",
        format!(
            "Sentry sentry_version=7, sentry_client=herald/{}, sentry_key={}",
            env!("CARGO_PKG_VERSION"),
            sentry::PUBLIC_KEY
        ),
    )
}

/// The envelope's lines: its header, the item's header, the item.
fn envelope(request: &Recorded) -> (Value, Value, Value) {
    let text = request.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "one item: {text}");
    let parse = |line: &str| serde_json::from_str::<Value>(line).expect("a JSON line");
    let (header, item_header, item) = (parse(lines[0]), parse(lines[1]), parse(lines[2]));
    assert_eq!(item_header["length"], lines[2].len(), "the item's length");
    assert_eq!(header["event_id"], item["event_id"], "one event id");
    (header, item_header, item)
}

fn is_hex(value: &Value, len: usize) -> bool {
    value
        .as_str()
        .is_some_and(|s| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn sentry_error_envelope(request: &Recorded) {
    let (header, item_header, mut item) = envelope(request);
    assert!(is_hex(&header["event_id"], 32), "{header}");
    assert_eq!(item_header["type"], "event");
    item.as_object_mut().expect("an object").remove("event_id");
    assert_eq!(
        item,
        json!({
            "timestamp": "2024-01-01T10:00:00Z",
            "platform": "other",
            "level": "error",
            "server_name": "kustomize-controller",
            "transaction": "Kustomization: flux-system/webapp",
            "message": ERROR_MESSAGE,
            "environment": "production",
            "contexts": {"metadata": {"revision": REVISION}},
            "sdk": {"name": "herald", "version": env!("CARGO_PKG_VERSION")},
        })
    );
}

fn sentry_transaction_envelope(request: &Recorded) {
    let (_, item_header, mut item) = envelope(request);
    assert_eq!(item_header["type"], "transaction");
    let trace = &item["contexts"]["trace"];
    assert!(is_hex(&trace["trace_id"], 32) && is_hex(&trace["span_id"], 16));
    let object = item.as_object_mut().expect("an object");
    object.remove("event_id");
    object.remove("contexts");
    assert_eq!(
        item,
        json!({
            "type": "transaction",
            "start_timestamp": "2024-01-01T10:05:00Z",
            "timestamp": "2024-01-01T10:05:00Z",
            "platform": "other",
            "transaction": "Kustomization: flux-system/webapp",
            "transaction_info": {"source": "custom"},
            "message": INFO_MESSAGE,
            "environment": "production",
            "tags": {
                "flux_involved_object_kind": "Kustomization",
                "flux_involved_object_name": "webapp",
                "flux_involved_object_namespace": "flux-system",
                "flux_reason": "ReconciliationSucceeded",
                "flux_reporting_controller": "kustomize-controller",
                "revision": REVISION,
            },
            "spans": [],
            "sdk": {"name": "herald", "version": env!("CARGO_PKG_VERSION")},
        })
    );
}

fn rows() -> Vec<Row> {
    vec![
        Row {
            name: "pagerduty error: trigger",
            provider_type: "pagerduty",
            fake: pagerduty_fake,
            provider: pagerduty_provider,
            secret: no_secret,
            event: error_event(),
            expect: vec![Expect {
                path: "/v2/enqueue".into(),
                headers: vec![header(JSON)],
                body: Body::Exact(format!(
                    concat!(
                        r#"{{"routing_key":"{}","event_action":"trigger","dedup_key":"{}","#,
                        r#""payload":{{"summary":"validation failed: kustomization/webapp","#,
                        r#""source":"Flux kustomize-controller","severity":"error","#,
                        r#""timestamp":"2024-01-01T10:00:00Z","component":"webapp","group":"Kustomization","#,
                        r#""custom_details":{{"message":"{}","metadata":{{"revision":"{}"}}}}}}}}"#
                    ),
                    pagerduty::ROUTING_KEY,
                    UID,
                    ERROR_MESSAGE,
                    REVISION
                )),
            }],
        },
        Row {
            name: "pagerduty info: resolve, then a change event",
            provider_type: "pagerduty",
            fake: pagerduty_fake,
            provider: pagerduty_provider,
            secret: no_secret,
            event: info_event(),
            expect: vec![
                Expect {
                    path: "/v2/enqueue".into(),
                    headers: vec![header(JSON)],
                    body: Body::Exact(format!(
                        r#"{{"routing_key":"{}","event_action":"resolve","dedup_key":"{}"}}"#,
                        pagerduty::ROUTING_KEY,
                        UID
                    )),
                },
                Expect {
                    path: "/v2/change/enqueue".into(),
                    headers: vec![header(JSON)],
                    body: Body::Exact(format!(
                        concat!(
                            r#"{{"routing_key":"{}","payload":{{"summary":"reconciliation succeeded: kustomization/webapp","#,
                            r#""source":"Flux kustomize-controller","timestamp":"2024-01-01T10:05:00Z","#,
                            r#""custom_details":{{"message":"{}","metadata":{{"revision":"{}"}}}}}}}}"#
                        ),
                        pagerduty::ROUTING_KEY,
                        INFO_MESSAGE,
                        REVISION
                    )),
                },
            ],
        },
        Row {
            name: "opsgenie error",
            provider_type: "opsgenie",
            fake: opsgenie_fake,
            provider: opsgenie_provider,
            secret: opsgenie_secret,
            event: error_event(),
            expect: vec![Expect {
                path: "/v2/alerts".into(),
                headers: vec![
                    header(JSON),
                    ("authorization", format!("GenieKey {}", opsgenie::API_KEY)),
                ],
                body: Body::Exact(format!(
                    concat!(
                        r#"{{"message":"Kustomization/webapp","alias":"{}","description":"{}","#,
                        r#""details":{{"revision":"{}","severity":"error"}}}}"#
                    ),
                    opsgenie_alias("ValidationFailed"),
                    ERROR_MESSAGE,
                    REVISION
                )),
            }],
        },
        Row {
            name: "opsgenie info",
            provider_type: "opsgenie",
            fake: opsgenie_fake,
            provider: opsgenie_provider,
            secret: opsgenie_secret,
            event: info_event(),
            expect: vec![Expect {
                path: "/v2/alerts".into(),
                headers: vec![header(JSON)],
                body: Body::Exact(format!(
                    concat!(
                        r#"{{"message":"Kustomization/webapp","alias":"{}","description":"{}","#,
                        r#""details":{{"revision":"{}","severity":"info"}}}}"#
                    ),
                    opsgenie_alias("ReconciliationSucceeded"),
                    INFO_MESSAGE,
                    REVISION
                )),
            }],
        },
        Row {
            name: "datadog error",
            provider_type: "datadog",
            fake: datadog_fake,
            provider: datadog_provider,
            secret: datadog_secret,
            event: error_event(),
            expect: vec![Expect {
                path: "/api/v1/events".into(),
                headers: vec![
                    header(JSON),
                    header(("accept", "application/json")),
                    header(("dd-api-key", datadog::API_KEY)),
                ],
                body: Body::Exact(format!(
                    concat!(
                        r#"{{"alert_type":"error","date_happened":1704103200,"source_type_name":"fluxcd","#,
                        r#""tags":["flux_reporting_controller:kustomize-controller","flux_reason:validationfailed","#,
                        r#""kube_kind:kustomization","kube_name:webapp","kube_namespace:flux-system","revision:{}"],"#,
                        r#""text":"{}","title":"Events from the Kustomization webapp/flux-system"}}"#
                    ),
                    REVISION, ERROR_MESSAGE
                )),
            }],
        },
        Row {
            name: "datadog info",
            provider_type: "datadog",
            fake: datadog_fake,
            provider: datadog_provider,
            secret: datadog_secret,
            event: info_event(),
            expect: vec![Expect {
                path: "/api/v1/events".into(),
                headers: vec![header(("dd-api-key", datadog::API_KEY))],
                body: Body::Exact(format!(
                    concat!(
                        r#"{{"alert_type":"info","date_happened":1704103500,"source_type_name":"fluxcd","#,
                        r#""tags":["flux_reporting_controller:kustomize-controller","flux_reason:reconciliationsucceeded","#,
                        r#""kube_kind:kustomization","kube_name:webapp","kube_namespace:flux-system","revision:{}"],"#,
                        r#""text":"{}","title":"Events from the Kustomization webapp/flux-system"}}"#
                    ),
                    REVISION, INFO_MESSAGE
                )),
            }],
        },
        Row {
            name: "sentry error: an event item",
            provider_type: "sentry",
            fake: sentry_fake,
            provider: sentry_provider,
            secret: sentry_secret,
            event: error_event(),
            expect: vec![Expect {
                path: format!("/sentry/api/{}/envelope/", sentry::PROJECT),
                headers: vec![
                    header(("content-type", "application/x-sentry-envelope")),
                    sentry_auth(),
                ],
                body: Body::Check(sentry_error_envelope),
            }],
        },
        Row {
            name: "sentry info: a transaction item",
            provider_type: "sentry",
            fake: sentry_fake,
            provider: sentry_provider,
            secret: sentry_secret,
            event: info_event(),
            expect: vec![Expect {
                path: format!("/sentry/api/{}/envelope/", sentry::PROJECT),
                headers: vec![sentry_auth()],
                body: Body::Check(sentry_transaction_envelope),
            }],
        },
    ]
}

fn row(name: &str) -> Row {
    rows()
        .into_iter()
        .find(|row| row.name == name)
        .unwrap_or_else(|| panic!("no row {name}"))
}

/// The Provider with `secret` (if not empty), and an Alert on every
/// Kustomization.
fn manifests_with(row: &Row, fake: &FakeServer, secret: Vec<(&'static str, String)>) -> String {
    herald_tests::fixtures::one_provider(NAMESPACE, row.provider_type, &secret, |p| {
        (row.provider)(p, fake)
    })
}

fn check(name: &str, expect: &Expect, request: &Recorded) {
    assert_eq!(request.method, "POST", "{name}: method");
    assert_eq!(request.path, expect.path, "{name}: path");
    for (header, value) in &expect.headers {
        assert_eq!(
            request.header(header).as_deref(),
            Some(value.as_str()),
            "{name}: header {header}"
        );
    }
    match &expect.body {
        Body::Exact(body) => assert_eq!(&request.text(), body, "{name}: body"),
        Body::Check(check) => check(request),
    }
    assert!(
        (200..300).contains(&request.answered),
        "{name}: the fake refused the request with {}: {}",
        request.answered,
        request.text()
    );
}

/// A row's nats-server, fake and Herald.
struct Setup {
    nats: TestNats,
    fake: FakeServer,
    herald: TestHerald,
    _dir: tempfile::TempDir,
}

async fn setup(row: &Row, secret: Option<Vec<(&'static str, String)>>) -> Setup {
    let nats = TestNats::start().await;
    let fake = (row.fake)().await;
    let secret = secret.unwrap_or_else(|| (row.secret)(&fake));
    let dir = config_dir(&manifests_with(row, &fake, secret));
    let herald = TestHerald::start(nats.url(), dir.path()).await;
    Setup {
        nats,
        fake,
        herald,
        _dir: dir,
    }
}

#[tokio::test]
async fn every_incident_provider_sends_what_its_vendor_expects() {
    use futures::StreamExt as _;
    // Rows are independent (each has its own nats-server and fake): a few
    // run at once.
    futures::stream::iter(rows())
        .map(run_row)
        .buffer_unordered(4)
        .collect::<Vec<()>>()
        .await;
}

async fn run_row(row: Row) {
    let s = setup(&row, None).await;
    assert_eq!(
        s.herald.post(&row.event).await.0,
        202,
        "{}: ingest accepts",
        row.name
    );
    let requests = s.fake.wait_for(row.expect.len()).await;
    for (expect, request) in row.expect.iter().zip(&requests) {
        check(row.name, expect, request);
    }
    deliveries_drained(&s.nats).await;
    assert_eq!(
        s.fake.requests().len(),
        row.expect.len(),
        "{}: each request sent once",
        row.name
    );
    assert!(
        dead_letters(&s.nats).await.is_empty(),
        "{}: no dead letter",
        row.name
    );
    s.herald.shutdown().await;
}

/// PagerDuty, as Flux: a `Progressing` event neither triggers nor
/// resolves, so nothing is sent for it; the error that follows is.
#[tokio::test]
async fn pagerduty_sends_nothing_for_progressing_events() {
    let row = row("pagerduty error: trigger");
    let s = setup(&row, None).await;
    let progressing = Event::new("Kustomization", NAMESPACE, "webapp")
        .uid(UID)
        .message("Reconciliation in progress")
        .timestamp("2024-01-01T09:59:00Z");
    // The Progressing event goes first: once the error that follows is
    // delivered and every delivery is acked, it was planned and skipped.
    assert_eq!(s.herald.post(&progressing).await.0, 202);
    assert_eq!(s.herald.post(&row.event).await.0, 202);
    let requests = s.fake.wait_for(1).await;
    check(row.name, &row.expect[0], &requests[0]);
    deliveries_drained(&s.nats).await;
    assert_eq!(s.fake.requests().len(), 1, "nothing for Progressing");
    s.herald.shutdown().await;
}

/// Each vendor's own 429 (or a 503) is retried and the event then
/// delivered exactly once; where the vendor names a wait, nothing is sent
/// before it.
#[tokio::test]
async fn vendor_rate_limits_and_outages_are_retried_then_delivered() {
    use futures::StreamExt as _;
    let cases = [
        ("opsgenie error", Failure::RateLimited { waits: true }),
        ("datadog error", Failure::RateLimited { waits: true }),
        (
            "sentry error: an event item",
            Failure::RateLimited { waits: true },
        ),
        ("sentry info: a transaction item", Failure::Unavailable),
        (
            "pagerduty error: trigger",
            Failure::RateLimited { waits: false },
        ),
        ("datadog info", Failure::Unavailable),
        ("opsgenie info", Failure::Unavailable),
    ];
    futures::stream::iter(cases)
        .map(|(name, failure)| retried_then_delivered(row(name), failure))
        .buffer_unordered(4)
        .collect::<Vec<()>>()
        .await;
}

#[derive(Clone, Copy)]
enum Failure {
    /// The vendor's own 429 asking for [`RETRY_AFTER`]; `waits` when it
    /// names the wait in a form Herald reads.
    RateLimited { waits: bool },
    /// A bare 503.
    Unavailable,
}

async fn retried_then_delivered(row: Row, failure: Failure) {
    let name = row.name;
    let s = setup(&row, None).await;
    match failure {
        Failure::RateLimited { .. } => s.fake.rate_limit_next(RETRY_AFTER),
        Failure::Unavailable => s.fake.script([Reply::status(503)]),
    }
    assert_eq!(s.herald.post(&row.event).await.0, 202, "{name}: ingest");
    let requests = s.fake.wait_for(2).await;
    let (failed, retried) = (&requests[0], &requests[1]);
    let expected = match failure {
        Failure::RateLimited { .. } => 429,
        Failure::Unavailable => 503,
    };
    assert_eq!(failed.answered, expected, "{name}: the vendor's failure");
    check(name, &row.expect[0], retried);
    if let Failure::RateLimited { waits: true } = failure {
        // A little slack for the clocks the wait is computed with; a
        // request that ignores the wait comes at once.
        let waited = retried.at - failed.at;
        assert!(
            waited + Duration::from_millis(100) >= RETRY_AFTER,
            "{name}: sent again {waited:?} after a 429 asking for {RETRY_AFTER:?}"
        );
    }
    deliveries_drained(&s.nats).await;
    assert_eq!(s.fake.requests().len(), 2, "{name}: delivered exactly once");
    assert!(dead_letters(&s.nats).await.is_empty(), "{name}: not dead");
    s.herald.shutdown().await;
}

/// PagerDuty's info exchange, retried whole: the change event is
/// rate-limited after the resolve was accepted, so the retry resolves
/// again (PagerDuty ignores a second resolve of one dedup key) and then
/// sends the change event.
#[tokio::test]
async fn a_pagerduty_change_event_retried_resolves_again_first() {
    let row = row("pagerduty info: resolve, then a change event");
    let s = setup(&row, None).await;
    s.fake.script([Reply::json(
        202,
        &json!({"status": "success", "message": "Event processed", "dedup_key": UID}),
    )]);
    s.fake.rate_limit_next(RETRY_AFTER);
    assert_eq!(s.herald.post(&row.event).await.0, 202);
    let requests = s.fake.wait_for(4).await;
    let paths: Vec<&str> = requests.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/v2/enqueue",
            "/v2/change/enqueue",
            "/v2/enqueue",
            "/v2/change/enqueue"
        ]
    );
    assert_eq!(requests[1].answered, 429);
    check(row.name, &row.expect[0], &requests[2]);
    check(row.name, &row.expect[1], &requests[3]);
    deliveries_drained(&s.nats).await;
    assert_eq!(s.fake.requests().len(), 4, "nothing more");
    // The scripted answers aside, PagerDuty took one resolve and one
    // change event.
    let (events, changes) = s
        .fake
        .with_api(|pd: &mut PagerDuty| (pd.events.clone(), pd.changes.clone()));
    assert_eq!((events.len(), changes.len()), (1, 1));
    assert_eq!(events[0]["event_action"], "resolve");
    assert!(dead_letters(&s.nats).await.is_empty());
    s.herald.shutdown().await;
}

/// What a 4xx case sets up and must find in its dead letter.
struct Refused {
    row: &'static str,
    /// The Secret (or, for PagerDuty, nothing) that makes the vendor refuse.
    secret: fn(&FakeServer) -> Vec<(&'static str, String)>,
    /// Replaces the Provider of the row.
    provider: Option<fn(Provider, &FakeServer) -> Provider>,
    /// Scripted answers before the vendor's own.
    script: fn() -> Vec<Reply>,
    status: u32,
    /// What the dead letter's reason must hold.
    reason: &'static str,
    /// Values that must not be in the dead letter.
    secrets: fn(&FakeServer) -> Vec<String>,
    /// Requests the vendor receives.
    requests: usize,
}

const WRONG_KEY: &str = "wr0ng-key-0000000000000000000000";

fn nothing() -> Vec<Reply> {
    Vec::new()
}

#[tokio::test]
async fn vendor_refusals_are_dead_letters_with_their_words_and_no_secrets() {
    use futures::StreamExt as _;
    let cases = vec![
        Refused {
            row: "pagerduty error: trigger",
            secret: no_secret,
            provider: Some(|p, fake| p.channel("too-short").address(&fake.url(""))),
            script: nothing,
            status: 400,
            reason: "failed sending event: destination answered 400: Event object is invalid (Length of 'routing_key' is incorrect (should be 32 characters))",
            secrets: |_| Vec::new(),
            requests: 1,
        },
        Refused {
            row: "pagerduty info: resolve, then a change event",
            secret: no_secret,
            provider: None,
            script: || {
                vec![
                    Reply::json(
                        202,
                        &json!({"status": "success", "message": "Event processed"}),
                    ),
                    Reply::json(
                        400,
                        &json!({"status": "invalid event", "message": "Event object is invalid",
                                "errors": ["'payload.summary' is missing or blank"]}),
                    ),
                ]
            },
            status: 400,
            reason: "failed sending change event: destination answered 400: Event object is invalid ('payload.summary' is missing or blank)",
            secrets: |_| Vec::new(),
            requests: 2,
        },
        Refused {
            row: "opsgenie error",
            secret: |_| vec![("token", WRONG_KEY.to_owned())],
            provider: None,
            script: nothing,
            status: 422,
            reason: "destination answered 422: Key format is not valid! Could not authenticate with the given key.",
            secrets: |_| vec![WRONG_KEY.to_owned(), opsgenie::API_KEY.to_owned()],
            requests: 1,
        },
        Refused {
            row: "datadog error",
            secret: |_| vec![("token", WRONG_KEY.to_owned())],
            provider: None,
            script: nothing,
            status: 403,
            reason: "destination answered 403: Forbidden",
            secrets: |_| vec![WRONG_KEY.to_owned(), datadog::API_KEY.to_owned()],
            requests: 1,
        },
        Refused {
            row: "sentry error: an event item",
            // A DSN of another project.
            secret: |fake| {
                let other = sentry_dsn(fake).replace(&format!("/{}", sentry::PROJECT), "/1");
                vec![("address", other)]
            },
            provider: None,
            script: nothing,
            status: 403,
            reason: "destination answered 403: event submission rejected with_reason: ProjectId",
            secrets: |fake| vec![sentry::PUBLIC_KEY.to_owned(), sentry_dsn(fake)],
            requests: 1,
        },
        Refused {
            row: "sentry info: a transaction item",
            secret: |fake| vec![("address", sentry::dsn(fake, "/sentry", WRONG_KEY))],
            provider: None,
            script: nothing,
            status: 401,
            reason: "destination answered 401: invalid api key",
            secrets: |_| vec![WRONG_KEY.to_owned()],
            requests: 1,
        },
    ];
    futures::stream::iter(cases)
        .map(refused)
        .buffer_unordered(4)
        .collect::<Vec<()>>()
        .await;
}

async fn refused(case: Refused) {
    let mut row = row(case.row);
    let name = row.name;
    if let Some(provider) = case.provider {
        row.provider = provider;
    }
    let nats = TestNats::start().await;
    let fake = (row.fake)().await;
    fake.script((case.script)());
    let dir = config_dir(&manifests_with(&row, &fake, (case.secret)(&fake)));
    let herald = TestHerald::start(nats.url(), dir.path()).await;
    assert_eq!(herald.post(&row.event).await.0, 202, "{name}: ingest");
    let letters = eventually(&format!("{name}: a dead letter"), || async {
        let letters = dead_letters(&nats).await;
        (!letters.is_empty()).then_some(letters)
    })
    .await;
    assert_eq!(letters.len(), 1, "{name}: one dead letter");
    let (subject, letter) = &letters[0];
    assert!(
        letter.reason.contains(case.reason),
        "{name}: the reason {:?} does not hold {:?}",
        letter.reason,
        case.reason
    );
    assert_eq!(letter.last_status, case.status, "{name}: {subject}");
    assert_eq!(letter.attempts, 1, "{name}: a 4xx is not retried");
    let bytes = letter.encode_to_vec();
    let text = String::from_utf8_lossy(&bytes);
    for secret in (case.secrets)(&fake) {
        assert!(
            !text.contains(&secret),
            "{name}: {secret} is in the dead letter: {letter:?}"
        );
    }
    assert_eq!(fake.requests().len(), case.requests, "{name}: requests");
    herald.shutdown().await;
}
