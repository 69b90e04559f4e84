//! Chat and webhook providers end to end, one row per provider: each row
//! runs ingest → router → sender → its fake on a real nats-server and
//! checks the one request the fake received (method, path, headers, exact
//! body); a row may also check the vendor's rate-limit answer.
//!
//! # Adding a provider type
//!
//! 1. Its fake: one file `tests/src/fake/<vendor>.rs` with a type that
//!    implements `herald_tests::fake::Api` (check each request as the real
//!    API does and answer with its error shape; override `rate_limited`
//!    when the vendor's 429 is not a bare `Retry-After`) and a constructor
//!    such as `impl FakeServer { pub async fn <vendor>() -> Self }`; declare
//!    it with `pub mod <vendor>;` in `tests/src/fake/mod.rs`.
//! 2. Its row: add a `Row { .. }` to `rows()` below. `fake` starts the fake,
//!    `provider` adds the Provider's spec (`type`, name and, when `secret`
//!    is not empty, `secretRef` are already set), `secret` lists the
//!    Secret's `stringData` (the fake's URL is at hand for an address),
//!    `event` is what Flux posts (usually [`event()`]), `expect` is the
//!    request the vendor must receive, and `rate_limit: true` also checks
//!    that after the vendor's 429 nothing is sent before the wait it asked
//!    for and the event is delivered exactly once.

use std::time::Duration;

use futures::FutureExt as _;
use futures::future::BoxFuture;
use herald_tests::fake::grafana::{self, FakeGrafana};
use herald_tests::fake::{
    FakeServer, Recorded, discord, incident_io, lark, matrix, rocket, slack, telegram, webex,
    webhook, zoom, zulip,
};
use herald_tests::fixtures::{Event, Provider, dead_letters, deliveries_drained};
use herald_tests::herald::{TestHerald, config_dir};
use herald_tests::nats::TestNats;

const NAMESPACE: &str = "flux-system";
const REVISION: &str = "main@sha1:731f7eaddfb6af01cb2173e18f0f75b0ba780ef1";
/// The HMAC key of the `generic-hmac` row.
const HMAC_KEY: &str = "hmac-key";
/// How long the vendor's 429 asks to wait.
const RETRY_AFTER: Duration = Duration::from_secs(2);
/// The involved object's uid, incident.io's deduplication key.
const UID: &str = "5b5c2a40-8f0e-4a0a-9d5e-0c2f3a1b7e61";

/// One provider type, as Herald must talk to its vendor.
struct Row {
    /// Names the row in failures.
    name: &'static str,
    provider_type: &'static str,
    fake: fn() -> BoxFuture<'static, FakeServer>,
    provider: fn(Provider, &FakeServer) -> Provider,
    secret: fn(&FakeServer) -> Vec<(&'static str, String)>,
    event: Event,
    expect: Expect,
    /// Also check the vendor's 429 then success.
    rate_limit: bool,
}

/// The request the vendor must receive.
struct Expect {
    method: &'static str,
    path: &'static str,
    /// Headers that must be present with these values.
    headers: Vec<(&'static str, String)>,
    /// The exact body.
    body: String,
}

/// The event most rows send: a failed Kustomization with a revision.
fn event() -> Event {
    Event::new("Kustomization", NAMESPACE, "webapp")
        .severity("error")
        .reason("ValidationFailed")
        .message("service/apps/webapp validation error: spec.type: Unsupported value: Ingress")
        .metadata("kustomize.toolkit.fluxcd.io/revision", REVISION)
        .timestamp("2024-01-01T10:00:00Z")
}

const JSON: (&str, &str) = ("content-type", "application/json");

/// A path built at run time, for [`Expect::path`].
fn leak(path: String) -> &'static str {
    Box::leak(path.into_boxed_str())
}

fn header((name, value): (&'static str, &str)) -> (&'static str, String) {
    (name, value.to_owned())
}

/// The Slack attachment Flux builds for [`event()`] in `channel`.
fn slack_body(channel: &str) -> String {
    format!(
        concat!(
            r#"{{"channel":"{}","username":"kustomize-controller","icon_url":"","icon_emoji":"","#,
            r#""attachments":[{{"fallback":"kustomization/webapp.flux-system: service/apps/webapp validation error: spec.type: Unsupported value: Ingress","#,
            r#""color":"danger","author_name":"kustomization/webapp.flux-system","#,
            r#""text":"service/apps/webapp validation error: spec.type: Unsupported value: Ingress","#,
            r#""mrkdwn_in":["text"],"fields":[{{"title":"revision","value":"{}","short":false}}]}}]}}"#
        ),
        channel, REVISION
    )
}

/// The whole event as Flux's generic webhook posts it.
fn generic_body() -> String {
    format!(
        concat!(
            r#"{{"involvedObject":{{"kind":"Kustomization","namespace":"flux-system","name":"webapp","apiVersion":"kustomize.toolkit.fluxcd.io/v1"}},"#,
            r#""severity":"error","timestamp":"2024-01-01T10:00:00Z","#,
            r#""message":"service/apps/webapp validation error: spec.type: Unsupported value: Ingress","#,
            r#""reason":"ValidationFailed","metadata":{{"revision":"{}"}},"reportingController":"kustomize-controller"}}"#
        ),
        REVISION
    )
}

/// The alert event Flux posts to incident.io for [`event()`].
fn incident_io_body() -> String {
    format!(
        concat!(
            r#"{{"title":"kustomization/webapp.flux-system: ValidationFailed","status":"firing","#,
            r#""deduplication_key":"{}","#,
            r#""description":"service/apps/webapp validation error: spec.type: Unsupported value: Ingress","#,
            r#""metadata":{{"reason":"ValidationFailed","reportingController":"kustomize-controller","#,
            r#""revision":"{}","severity":"error"}}}}"#
        ),
        UID, REVISION
    )
}

/// The MessageCard Flux posts to an Office 365 connector for [`event()`].
fn teams_message_card() -> String {
    format!(
        concat!(
            r#"{{"@type":"MessageCard","@context":"http://schema.org/extensions","themeColor":"FF0000","#,
            r#""summary":"kustomization/webapp.flux-system","#,
            r#""sections":[{{"activityTitle":"service/apps/webapp validation error: spec.type: Unsupported value: Ingress","#,
            r#""activitySubtitle":"kustomization/webapp.flux-system","facts":[{{"name":"revision","value":"{}"}}]}}]}}"#
        ),
        REVISION
    )
}

/// The Adaptive Card Flux posts to a Workflows address for [`event()`].
fn teams_adaptive_card() -> String {
    format!(
        concat!(
            r#"{{"type":"message","attachments":[{{"contentType":"application/vnd.microsoft.card.adaptive","#,
            r#""content":{{"$schema":"http://adaptivecards.io/schemas/adaptive-card.json","type":"AdaptiveCard","version":"1.4","#,
            r#""body":[{{"type":"Container","items":["#,
            r#"{{"type":"TextBlock","text":"kustomization/webapp.flux-system","size":"large","weight":"bolder","wrap":true}},"#,
            r#"{{"type":"TextBlock","text":"service/apps/webapp validation error: spec.type: Unsupported value: Ingress","color":"attention","wrap":true}},"#,
            r#"{{"type":"FactSet","facts":[{{"title":"revision","value":"{}"}}]}}]}}],"msteams":{{"width":"Full"}}}}}}]}}"#
        ),
        REVISION
    )
}

/// The Slack attachment Discord's and Rocket.Chat's Flux senders build
/// for [`event()`]: no fallback text.
fn slack_compatible_body(channel: &str, username: &str, color: &str) -> String {
    format!(
        concat!(
            r#"{{"channel":"{}","username":"{}","icon_url":"","icon_emoji":"","#,
            r#""attachments":[{{"fallback":"","color":"{}","author_name":"kustomization/webapp.flux-system","#,
            r#""text":"service/apps/webapp validation error: spec.type: Unsupported value: Ingress","#,
            r#""mrkdwn_in":["text"],"fields":[{{"title":"revision","value":"{}","short":false}}]}}]}}"#
        ),
        channel, username, color, REVISION
    )
}

fn rows() -> Vec<Row> {
    vec![
        Row {
            name: "slack incoming webhook",
            provider_type: "slack",
            fake: || FakeServer::slack().boxed(),
            provider: |p, _| p.channel("general"),
            secret: |fake| vec![("address", fake.url("/services/T0/B0/X0"))],
            event: event(),
            expect: Expect {
                method: "POST",
                path: "/services/T0/B0/X0",
                headers: vec![header(JSON)],
                body: slack_body("general"),
            },
            rate_limit: true,
        },
        Row {
            name: "slack chat.postMessage with a bot token",
            provider_type: "slack",
            fake: || FakeServer::slack().boxed(),
            provider: |p, fake| {
                p.channel("C0123")
                    .address(&fake.url("/api/chat.postMessage"))
            },
            secret: |_| vec![("token", slack::TOKEN.to_owned())],
            event: event(),
            expect: Expect {
                method: "POST",
                path: "/api/chat.postMessage",
                headers: vec![
                    header(JSON),
                    ("authorization", format!("Bearer {}", slack::TOKEN)),
                ],
                body: slack_body("C0123"),
            },
            rate_limit: true,
        },
        Row {
            name: "generic",
            provider_type: "generic",
            fake: || FakeServer::webhook().boxed(),
            provider: |p, fake| p.address(&fake.url("/hook")),
            secret: |_| Vec::new(),
            event: event(),
            expect: Expect {
                method: "POST",
                path: "/hook",
                headers: vec![header(JSON)],
                body: generic_body(),
            },
            rate_limit: true,
        },
        Row {
            name: "generic-hmac",
            provider_type: "generic-hmac",
            fake: || FakeServer::webhook_hmac(HMAC_KEY).boxed(),
            provider: |p, fake| p.address(&fake.url("/signed")),
            secret: |_| vec![("token", HMAC_KEY.to_owned())],
            event: event(),
            expect: Expect {
                method: "POST",
                path: "/signed",
                headers: vec![
                    header(JSON),
                    (
                        "x-signature",
                        format!(
                            "sha256={}",
                            webhook::signature(HMAC_KEY, generic_body().as_bytes())
                        ),
                    ),
                ],
                body: generic_body(),
            },
            rate_limit: false,
        },
        Row {
            name: "msteams Office 365 connector (MessageCard)",
            provider_type: "msteams",
            fake: || FakeServer::teams().boxed(),
            provider: |p, _| p,
            // The connector host must be *.webhook.office.com: the fake is
            // reached as the Provider's proxy.
            secret: |fake| {
                vec![
                    (
                        "address",
                        "http://herald.webhook.office.com/webhookb2/g0@t0/IncomingWebhook/i0/o0"
                            .to_owned(),
                    ),
                    ("proxy", fake.url("")),
                ]
            },
            event: event(),
            expect: Expect {
                method: "POST",
                path: "/webhookb2/g0@t0/IncomingWebhook/i0/o0",
                headers: vec![header(JSON), header(("host", "herald.webhook.office.com"))],
                body: teams_message_card(),
            },
            rate_limit: true,
        },
        Row {
            name: "msteams Workflows (Adaptive Card, 202 Accepted)",
            provider_type: "msteams",
            fake: || FakeServer::teams().boxed(),
            provider: |p, _| p,
            secret: |fake| {
                vec![(
                    "address",
                    fake.url(
                        "/workflows/w0/triggers/manual/paths/invoke?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=s0",
                    ),
                )]
            },
            event: event(),
            expect: Expect {
                method: "POST",
                path: "/workflows/w0/triggers/manual/paths/invoke",
                headers: vec![header(JSON)],
                body: teams_adaptive_card(),
            },
            rate_limit: true,
        },
        Row {
            name: "discord (its Slack-compatible endpoint)",
            provider_type: "discord",
            fake: || FakeServer::discord().boxed(),
            // Flux ignores the channel.
            provider: |p, _| p.channel("ignored"),
            secret: |fake| {
                vec![(
                    "address",
                    fake.url(&format!(
                        "/api/webhooks/{}/{}",
                        discord::WEBHOOK_ID,
                        discord::TOKEN
                    )),
                )]
            },
            event: event(),
            expect: Expect {
                method: "POST",
                path: leak(format!(
                    "/api/webhooks/{}/{}/slack",
                    discord::WEBHOOK_ID,
                    discord::TOKEN
                )),
                headers: vec![header(JSON)],
                body: slack_compatible_body("", "kustomize-controller", "danger"),
            },
            rate_limit: true,
        },
        Row {
            name: "rocket",
            provider_type: "rocket",
            fake: || FakeServer::rocket().boxed(),
            provider: |p, fake| {
                p.channel("#flux")
                    .spec("username: flux")
                    .address(&fake.url(&format!(
                        "/hooks/{}/{}",
                        rocket::INTEGRATION_ID,
                        rocket::TOKEN
                    )))
            },
            secret: |_| Vec::new(),
            event: event(),
            expect: Expect {
                method: "POST",
                path: leak(format!(
                    "/hooks/{}/{}",
                    rocket::INTEGRATION_ID,
                    rocket::TOKEN
                )),
                headers: vec![header(JSON)],
                body: slack_compatible_body("#flux", "flux", "#FF0000"),
            },
            rate_limit: false,
        },
        Row {
            name: "grafana",
            provider_type: "grafana",
            fake: || async { FakeGrafana::start().await.server() }.boxed(),
            provider: |p, fake| p.address(&fake.url("/api/annotations")),
            secret: |_| vec![("token", grafana::TOKEN.to_owned())],
            event: event(),
            expect: Expect {
                method: "POST",
                path: "/api/annotations",
                headers: vec![
                    header(JSON),
                    ("authorization", format!("Bearer {}", grafana::TOKEN)),
                ],
                body: format!(
                    r#"{{"when":1704103200,"text":"kustomization/webapp.flux-system","tags":["flux","kustomize-controller","revision: {}","kind: Kustomization","name: webapp","namespace: flux-system"]}}"#,
                    REVISION.replace(':', "|")
                ),
            },
            rate_limit: true,
        },
        Row {
            name: "webex",
            provider_type: "webex",
            fake: || FakeServer::webex().boxed(),
            provider: |p, fake| p.channel(webex::ROOM).address(&fake.url("/v1/messages")),
            secret: |_| vec![("token", webex::TOKEN.to_owned())],
            event: event(),
            expect: Expect {
                method: "POST",
                path: "/v1/messages",
                headers: vec![
                    header(JSON),
                    ("authorization", format!("Bearer {}", webex::TOKEN)),
                ],
                body: format!(
                    concat!(
                        r#"{{"roomId":"{}","markdown":"💣 **kustomization/webapp.flux-system**\n"#,
                        r#"service/apps/webapp validation error: spec.type: Unsupported value: Ingress\n"#,
                        r#"\u003e**revision**: {}\n"}}"#
                    ),
                    webex::ROOM,
                    REVISION
                ),
            },
            rate_limit: false,
        },
        Row {
            name: "lark",
            provider_type: "lark",
            fake: || FakeServer::lark().boxed(),
            provider: |p, _| p,
            secret: |fake| {
                vec![(
                    "address",
                    fake.url(&format!("/open-apis/bot/v2/hook/{}", lark::HOOK)),
                )]
            },
            event: event(),
            expect: Expect {
                method: "POST",
                path: "/open-apis/bot/v2/hook/0a1b2c3d-4e5f-6789-abcd-ef0123456789",
                headers: vec![header(JSON)],
                body: format!(
                    concat!(
                        r#"{{"msg_type":"interactive","card":{{"config":{{"wide_screen_mode":true}},"#,
                        r#""header":{{"title":{{"tag":"plain_text","content":"🚨 kustomization/webapp.flux-system"}},"template":"red"}},"#,
                        r#""elements":[{{"tag":"div","text":{{"tag":"lark_md","#,
                        r#""content":"**service/apps/webapp validation error: spec.type: Unsupported value: Ingress**\n\nrevision: {}\n"}}}}]}}}}"#
                    ),
                    REVISION
                ),
            },
            rate_limit: false,
        },
        Row {
            name: "zoom",
            provider_type: "zoom",
            fake: || FakeServer::zoom().boxed(),
            provider: |p, _| p,
            secret: |fake| {
                vec![
                    (
                        "address",
                        fake.url(&format!("/chat/webhooks/incomingwebhook/{}", zoom::HOOK)),
                    ),
                    ("token", zoom::TOKEN.to_owned()),
                ]
            },
            event: event(),
            expect: Expect {
                method: "POST",
                path: "/chat/webhooks/incomingwebhook/hK9tC0dZQwuFlux",
                headers: vec![header(JSON), ("authorization", zoom::TOKEN.to_owned())],
                body: format!(
                    concat!(
                        r#"{{"content":{{"head":{{"text":"kustomization/webapp.flux-system","sub_head":{{"text":"error"}}}},"#,
                        r#""body":[{{"type":"message","text":"service/apps/webapp validation error: spec.type: Unsupported value: Ingress"}},"#,
                        r#"{{"type":"fields","items":[{{"key":"revision","value":"{}"}}]}}]}}}}"#
                    ),
                    REVISION
                ),
            },
            rate_limit: false,
        },
        Row {
            name: "incident.io",
            provider_type: "incident.io",
            fake: || FakeServer::incident_io().boxed(),
            provider: |p, fake| {
                p.address(&fake.url(&format!("/v2/alert_events/http/{}", incident_io::SOURCE)))
            },
            secret: |_| vec![("token", incident_io::TOKEN.to_owned())],
            event: event().uid(UID),
            expect: Expect {
                method: "POST",
                path: "/v2/alert_events/http/01HZ0FAKEALERTSOURCE0000",
                headers: vec![
                    header(JSON),
                    ("authorization", format!("Bearer {}", incident_io::TOKEN)),
                ],
                body: incident_io_body(),
            },
            rate_limit: false,
        },
        Row {
            name: "telegram forum topic",
            provider_type: "telegram",
            fake: || FakeServer::telegram().boxed(),
            // Flux ignores the address; Herald takes it as the API base.
            provider: |p, fake| {
                p.channel(&format!("{}:{}", telegram::FORUM, telegram::TOPIC))
                    .address(&fake.url(""))
            },
            secret: |_| vec![("token", telegram::TOKEN.to_owned())],
            event: event(),
            expect: Expect {
                method: "POST",
                path: telegram::SEND_MESSAGE,
                headers: vec![header(JSON)],
                body: format!(
                    concat!(
                        r#"{{"chat_id":"{}","message_thread_id":"{}","#,
                        r#""text":"*🚨 kustomization/webapp/flux\\-system*\n"#,
                        r#"service/apps/webapp validation error: spec\\.type: Unsupported value: Ingress\n"#,
                        r#"\\- *revision*: main@sha1:731f7eaddfb6af01cb2173e18f0f75b0ba780ef1\n","#,
                        r#""parse_mode":"MarkdownV2"}}"#
                    ),
                    telegram::FORUM,
                    telegram::TOPIC
                ),
            },
            rate_limit: true,
        },
        Row {
            name: "matrix",
            provider_type: "matrix",
            fake: || FakeServer::matrix().boxed(),
            provider: |p, fake| p.channel(matrix::ROOM).address(&fake.url("")),
            secret: |_| vec![("token", matrix::TOKEN.to_owned())],
            event: event(),
            expect: Expect {
                method: "PUT",
                // The transaction id is the SHA-1 of generic_body().
                path: "/_matrix/client/r0/rooms/!ZDjRYYbZLvBLLbHwWp:matrix.example.org/send/m.room.message/98e85e5c2561dc8c8f6533431ee59f89cf57230c",
                headers: vec![
                    header(JSON),
                    ("authorization", format!("Bearer {}", matrix::TOKEN)),
                ],
                body: format!(
                    concat!(
                        r#"{{"body":"🚨 kustomization/webapp.flux-system\n"#,
                        r#"service/apps/webapp validation error: spec.type: Unsupported value: Ingress\n"#,
                        r#"- revision: {}\n","msgtype":"m.text"}}"#
                    ),
                    REVISION
                ),
            },
            rate_limit: true,
        },
        Row {
            name: "zulip",
            provider_type: "zulip",
            fake: || FakeServer::zulip().boxed(),
            // Flux replaces the address's path with /api/v1/messages.
            provider: |p, fake| {
                p.channel(&format!("{}/webapp", zulip::STREAM))
                    .address(&fake.url("/"))
            },
            secret: |_| {
                vec![
                    ("username", zulip::BOT_EMAIL.to_owned()),
                    ("password", zulip::API_KEY.to_owned()),
                ]
            },
            event: event(),
            expect: Expect {
                method: "POST",
                path: "/api/v1/messages",
                headers: vec![
                    (
                        "content-type",
                        "application/x-www-form-urlencoded".to_owned(),
                    ),
                    ("authorization", zulip::BASIC.to_owned()),
                ],
                body: format!(
                    concat!(
                        "content=%23%23+Flux+Status%0A%0A%E2%9A%A0%EF%B8%8F+Kustomization%2Fflux-system%2Fwebapp%0A%0A",
                        "service%2Fapps%2Fwebapp+validation+error%3A+spec.type%3A+Unsupported+value%3A+Ingress%0A%0A",
                        "Metadata%3A%0A%2A+%60revision%60%3A+main%40sha1%3A{}%0A",
                        "&to=flux+alerts&topic=webapp&type=stream"
                    ),
                    &REVISION["main@sha1:".len()..]
                ),
            },
            rate_limit: true,
        },
        Row {
            name: "googlechat",
            provider_type: "googlechat",
            fake: || FakeServer::googlechat().boxed(),
            provider: |p, _| p,
            // A webhook URL holds its key and token: kept in the Secret.
            secret: |fake| vec![("address", fake.googlechat_webhook())],
            event: event(),
            expect: Expect {
                method: "POST",
                path: "/v1/spaces/AAAAbcdEfGh/messages",
                headers: vec![header(JSON)],
                body: format!(
                    concat!(
                        r#"{{"cards":[{{"header":{{"title":"kustomization/webapp.flux-system","subtitle":"kustomize-controller","#,
                        r#""imageUrl":null,"imageStyle":null}},"sections":["#,
                        r##"{{"header":"","widgets":[{{"textParagraph":{{"text":"\u003cfont color=\"#ff0000\"\u003eservice/apps/webapp validation error: spec.type: Unsupported value: Ingress\u003c/font\u003e"}},"keyValue":null}}]}},"##,
                        r#"{{"header":"","widgets":[{{"textParagraph":null,"keyValue":{{"topLabel":"revision","content":"{}","contentMultiline":false,"bottomLabel":null,"icon":null}}}}]}}"#,
                        r#"]}}]}}"#
                    ),
                    REVISION
                ),
            },
            // Google's 429 names no wait: Herald backs off on its own.
            rate_limit: false,
        },
    ]
}

/// The Provider, its Secret if any, and an Alert on every Kustomization.
fn manifests(row: &Row, fake: &FakeServer) -> String {
    let secret = (row.secret)(fake);
    herald_tests::fixtures::one_provider(NAMESPACE, row.provider_type, &secret, |p| {
        (row.provider)(p, fake)
    })
}

fn check(row: &Row, request: &Recorded) {
    let name = row.name;
    let expect = &row.expect;
    assert_eq!(request.method, expect.method, "{name}: method");
    assert_eq!(request.path, expect.path, "{name}: path");
    for (header, value) in &expect.headers {
        assert_eq!(
            request.header(header).as_deref(),
            Some(value.as_str()),
            "{name}: header {header}"
        );
    }
    assert_eq!(request.text(), expect.body, "{name}: body");
    assert!(
        (200..300).contains(&request.answered),
        "{name}: the fake refused the request with {}",
        request.answered
    );
}

/// The vendor answers its own 429 asking to wait [`RETRY_AFTER`], then
/// accepts: nothing is sent before the wait, and the event is delivered
/// exactly once.
async fn rate_limited_then_delivered(
    name: &str,
    herald: &TestHerald,
    nats: &TestNats,
    fake: &FakeServer,
    event: Event,
) {
    let before = fake.requests().len();
    fake.rate_limit_next(RETRY_AFTER);
    assert_eq!(herald.post(event).await.0, 202, "{name}: ingest accepts");
    let requests = fake.wait_for(before + 2).await;
    let (limited, retried) = (&requests[before], &requests[before + 1]);
    assert_eq!(limited.answered, 429, "{name}: the vendor's 429");
    assert!(
        (200..300).contains(&retried.answered),
        "{name}: the retry is accepted, got {}",
        retried.answered
    );
    // A little slack for the clocks the wait is computed with; a request
    // that ignores Retry-After comes at once.
    let waited = retried.at - limited.at;
    assert!(
        waited + Duration::from_millis(100) >= RETRY_AFTER,
        "{name}: sent again {waited:?} after a 429 asking for {RETRY_AFTER:?}"
    );
    deliveries_drained(nats).await;
    let after = fake.requests();
    assert_eq!(after.len(), before + 2, "{name}: delivered exactly once");
}

#[tokio::test]
async fn every_chat_and_webhook_provider_sends_what_its_vendor_expects() {
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
    let nats = TestNats::start().await;
    let fake = (row.fake)().await;
    let dir = config_dir(&manifests(&row, &fake));
    let herald = TestHerald::start(nats.url(), dir.path()).await;

    assert_eq!(
        herald.post(&row.event).await.0,
        202,
        "{}: ingest accepts",
        row.name
    );
    let requests = fake.wait_for(1).await;
    check(&row, &requests[0]);
    deliveries_drained(&nats).await;
    assert_eq!(fake.requests().len(), 1, "{}: sent once", row.name);

    if row.rate_limit {
        let again = row.event.clone().message("sent after a rate limit");
        rate_limited_then_delivered(row.name, &herald, &nats, &fake, again).await;
    }
    herald.shutdown().await;
}

/// incident.io, as Flux: a `Progressing` event neither fires nor resolves
/// an alert, so nothing is sent for it; the error that follows is.
#[tokio::test]
async fn incident_io_sends_nothing_for_progressing_events() {
    let nats = TestNats::start().await;
    let fake = FakeServer::incident_io().await;
    let row = rows()
        .into_iter()
        .find(|row| row.provider_type == "incident.io")
        .expect("the incident.io row");
    let dir = config_dir(&manifests(&row, &fake));
    let herald = TestHerald::start(nats.url(), dir.path()).await;

    let progressing = Event::new("Kustomization", NAMESPACE, "webapp")
        .uid(UID)
        .message("Reconciliation in progress")
        .timestamp("2024-01-01T09:59:00Z");
    // The Progressing event goes first: once the error that follows is
    // delivered and every delivery is acked, it was planned and skipped.
    assert_eq!(herald.post(&progressing).await.0, 202, "ingest accepts");
    assert_eq!(herald.post(&row.event).await.0, 202, "ingest accepts");
    let requests = fake.wait_for(1).await;
    check(&row, &requests[0]);
    deliveries_drained(&nats).await;
    assert_eq!(
        fake.requests().len(),
        1,
        "only the error is sent, nothing for Progressing"
    );
    herald.shutdown().await;
}

/// Teams Workflows answer `202 Accepted` (the flow runs later): Herald
/// counts that as delivered, never retries it and never dead-letters it.
#[tokio::test]
async fn teams_workflows_accepted_is_delivered_once() {
    let row = rows()
        .into_iter()
        .find(|row| row.name.starts_with("msteams Workflows"))
        .expect("the Workflows row");
    let nats = TestNats::start().await;
    let fake = (row.fake)().await;
    let dir = config_dir(&manifests(&row, &fake));
    let herald = TestHerald::start(nats.url(), dir.path()).await;
    assert_eq!(herald.post(&row.event).await.0, 202);
    fake.wait_for(1).await;
    deliveries_drained(&nats).await;
    let requests = fake.requests();
    assert_eq!(requests.len(), 1, "sent once");
    assert_eq!(requests[0].answered, 202, "Workflows accept with 202");
    assert!(dead_letters(&nats).await.is_empty(), "not dead-lettered");
    herald.shutdown().await;
}
