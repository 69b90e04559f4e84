//! End to end through a real nats-server: ingest → HERALD_EVENTS → router →
//! HERALD_DELIVERIES → sender → fake destinations.

use std::time::Duration;

use herald_proto::names;
use herald_tests::eventually;
use herald_tests::fake::{FakeServer, Reply};
use herald_tests::fixtures::{Alert, Event, Provider, Secret, dead_letters};
use herald_tests::herald::{TestHerald, config_dir};
use herald_tests::nats::TestNats;

const FAILED: &str = r#"{
  "involvedObject": {"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
                     "name": "webapp", "namespace": "flux-system", "uid": "7d0cdc51-ddcf-4743-b223-83ca5c699632"},
  "metadata": {"kustomize.toolkit.fluxcd.io/revision": "main/731f7eaddfb6af01cb2173e18f0f75b0ba780ef1",
               "kustomize.toolkit.fluxcd.io/token": "never-sent",
               "other.group/ignored": "x"},
  "severity": "error",
  "reason": "ValidationFailed",
  "message": "service/apps/webapp validation error: spec.type: Unsupported value: Ingress",
  "reportingController": "kustomize-controller",
  "reportingInstance": "kustomize-controller-7c7b47f5f-8bhrp",
  "timestamp": "2022-10-28T07:26:19Z"
}"#;

/// A Slack Provider whose webhook address is in its Secret.
fn slack_webhook(name: &str, address: &str) -> String {
    let secret = format!("{name}-url");
    format!(
        "{}{}",
        Provider::new("flux-system", name, "slack")
            .channel("general")
            .secret_ref(&secret),
        Secret::new("flux-system", &secret).data("address", address)
    )
}

#[tokio::test]
async fn an_event_reaches_slack_with_the_flux_body() {
    let nats = TestNats::start().await;
    let slack = FakeServer::slack().await;
    let dir = config_dir(&format!(
        "{}{}",
        slack_webhook("slack", &slack.url("/services/T0/B0/X0")),
        Alert::new("flux-system", "on-call", "slack")
            .severity("error")
            .source("Kustomization", "*")
    ));
    let herald = TestHerald::start(nats.url(), dir.path()).await;

    assert_eq!(herald.post(FAILED).await, (202, String::new()));
    let requests = slack.wait_for(1).await;
    let request = &requests[0];
    assert_eq!(request.path, "/services/T0/B0/X0");
    assert_eq!(request.answered, 200);
    assert_eq!(
        request.header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(
        String::from_utf8(request.body.to_vec()).unwrap(),
        concat!(
            r#"{"channel":"general","username":"kustomize-controller","icon_url":"","icon_emoji":"","#,
            r#""attachments":[{"fallback":"kustomization/webapp.flux-system: service/apps/webapp validation error: spec.type: Unsupported value: Ingress","#,
            r#""color":"danger","author_name":"kustomization/webapp.flux-system","#,
            r#""text":"service/apps/webapp validation error: spec.type: Unsupported value: Ingress","#,
            r#""mrkdwn_in":["text"],"fields":[{"title":"revision","value":"main/731f7eaddfb6af01cb2173e18f0f75b0ba780ef1","short":false}]}]}"#
        ),
        "the token and foreign metadata never leave Herald"
    );
    // The work queue drains once the sender acked.
    eventually("deliveries acked", || async {
        (nats.stream_messages(names::DELIVERIES_STREAM).await == 0).then_some(())
    })
    .await;
    herald.shutdown().await;
}

#[tokio::test]
async fn an_event_matching_two_alerts_reaches_both_providers() {
    let nats = TestNats::start().await;
    let slack = FakeServer::slack().await;
    let hook = FakeServer::webhook().await;
    let dir = config_dir(&format!(
        "{}{}{}{}",
        slack_webhook("slack", &slack.url("/services/T/B/X")),
        Provider::new("flux-system", "audit", "generic").address(&hook.url("/events")),
        Alert::new("flux-system", "errors", "slack")
            .severity("error")
            .source("Kustomization", "webapp"),
        Alert::new("flux-system", "audit", "audit")
            .severity("info")
            .source("Kustomization", "*")
    ));
    let herald = TestHerald::start(nats.url(), dir.path()).await;
    assert_eq!(herald.post(FAILED).await.0, 202);

    let slack_requests = slack.wait_for(1).await;
    let hook_requests = hook.wait_for(1).await;
    assert_eq!(slack_requests[0].json()["channel"], "general");
    let forwarded = hook_requests[0].json();
    assert_eq!(forwarded["involvedObject"]["name"], "webapp");
    assert_eq!(
        forwarded["metadata"],
        serde_json::json!({"revision": "main/731f7eaddfb6af01cb2173e18f0f75b0ba780ef1"})
    );
    assert_eq!(
        hook_requests[0].header("gotk-component").as_deref(),
        Some("kustomize-controller")
    );
    // Nothing more arrives: one delivery per (event, alert).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(slack.requests().len(), 1);
    assert_eq!(hook.requests().len(), 1);
    herald.shutdown().await;
}

#[tokio::test]
async fn an_event_that_matches_nothing_is_stored_and_acked() {
    let nats = TestNats::start().await;
    let hook = FakeServer::webhook().await;
    let dir = config_dir(&format!(
        "{}{}",
        Provider::new("flux-system", "audit", "generic").address(&hook.url("/events")),
        Alert::new("flux-system", "audit", "audit")
            .severity("error")
            .source("HelmRelease", "*")
    ));
    let herald = TestHerald::start(nats.url(), dir.path()).await;
    for i in 0..3 {
        let body =
            Event::new("Kustomization", "flux-system", "webapp").message(&format!("nothing {i}"));
        assert_eq!(herald.post(body).await.0, 202);
    }
    assert_eq!(nats.stream_messages(names::EVENTS_STREAM).await, 3);
    let js = nats.jetstream().await;
    eventually("the router acked every event", || async {
        let mut consumer = js
            .get_consumer_from_stream::<async_nats::jetstream::consumer::pull::Config, _, _>(
                names::ROUTER_CONSUMER,
                names::EVENTS_STREAM,
            )
            .await
            .ok()?;
        let info = consumer.info().await.ok()?;
        (info.ack_floor.stream_sequence == 3 && info.num_ack_pending == 0 && info.num_pending == 0)
            .then_some(())
    })
    .await;
    assert_eq!(nats.stream_messages(names::DELIVERIES_STREAM).await, 0);
    assert!(hook.requests().is_empty());
    herald.shutdown().await;
}

#[tokio::test]
async fn bad_requests_get_a_clear_4xx_and_store_nothing() {
    let nats = TestNats::start().await;
    let dir = config_dir("");
    let herald = TestHerald::start(nats.url(), dir.path()).await;

    let (status, text) = herald.post("{not json").await;
    assert_eq!(status, 400);
    assert!(
        text.starts_with("invalid Flux event JSON: key must be a string"),
        "{text}"
    );

    let (status, text) = herald.post(r#"{"timestamp":"last tuesday"}"#).await;
    assert_eq!(status, 400);
    assert!(
        text.contains("timestamp \"last tuesday\" is not an RFC 3339 time"),
        "{text}"
    );

    let (status, text) = herald.post("").await;
    assert_eq!(
        (status, text.trim()),
        (400, "request body is empty, expected a JSON Flux event")
    );

    let big = format!(r#"{{"message":"{}"}}"#, "x".repeat(3 * 1024 * 1024));
    let (status, text) = herald.post(big).await;
    assert_eq!(
        (status, text.trim()),
        (413, "request body is larger than 3145728 bytes")
    );

    // Chunked, so that only reading the body finds it too large.
    let chunks =
        futures::stream::iter((0..4).map(|_| Ok::<_, std::io::Error>(vec![b' '; 1024 * 1024])));
    let (status, _) = herald.post(reqwest::Body::wrap_stream(chunks)).await;
    assert_eq!(status, 413);

    // A null body is an (empty) event, as in Flux.
    assert_eq!(herald.post("null").await.0, 202);
    assert_eq!(nats.stream_messages(names::EVENTS_STREAM).await, 1);
    let (_, metrics) = herald.admin("/metrics").await;
    assert!(
        metrics.contains(r#"herald_events_rejected_total{reason="invalid_event"} 3"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"herald_events_rejected_total{reason="too_large"} 2"#),
        "{metrics}"
    );
    herald.shutdown().await;
}

#[tokio::test]
async fn a_retried_request_is_stored_once() {
    let nats = TestNats::start().await;
    let hook = FakeServer::webhook().await;
    let dir = config_dir(&format!(
        "{}{}",
        Provider::new("flux-system", "audit", "generic").address(&hook.url("/events")),
        Alert::new("flux-system", "audit", "audit")
            .severity("info")
            .source("Kustomization", "*")
    ));
    let herald = TestHerald::start(nats.url(), dir.path()).await;
    let body = Event::new("Kustomization", "flux-system", "webapp").message("same");
    assert_eq!(herald.post(body.clone()).await.0, 202);
    assert_eq!(
        herald.post(body).await.0,
        202,
        "a retry is answered as stored"
    );
    hook.wait_for(1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(hook.requests().len(), 1);
    assert_eq!(nats.stream_messages(names::EVENTS_STREAM).await, 1);
    herald.shutdown().await;
}

#[tokio::test]
async fn ingest_answers_503_while_nats_is_down_and_loses_nothing() {
    let mut nats = TestNats::start().await;
    let hook = FakeServer::webhook().await;
    let dir = config_dir(&format!(
        "{}{}",
        Provider::new("flux-system", "audit", "generic").address(&hook.url("/events")),
        Alert::new("flux-system", "audit", "audit")
            .severity("info")
            .source("Kustomization", "*")
    ));
    let herald = TestHerald::start(nats.url(), dir.path()).await;
    let mut accepted = Vec::new();
    for i in 0..5 {
        let message = format!("before {i}");
        assert_eq!(
            herald
                .post(Event::new("Kustomization", "flux-system", "a").message(&message))
                .await
                .0,
            202
        );
        accepted.push(message);
    }

    nats.stop().await;
    let (status, text) = herald
        .post(Event::new("Kustomization", "flux-system", "a").message("while down"))
        .await;
    assert_eq!(status, 503, "{text}");
    assert!(
        text.starts_with("cannot store the event now, retry later"),
        "{text}"
    );

    nats.restart().await;
    // Flux's emitter retries a 503; so do we, until NATS is back.
    let deadline = tokio::time::Instant::now() + herald_tests::patience();
    for i in 0.. {
        let message = format!("after {i}");
        let (status, _) = herald
            .post(Event::new("Kustomization", "flux-system", "a").message(&message))
            .await;
        if status == 202 {
            accepted.push(message);
            break;
        }
        assert_eq!(status, 503);
        assert!(
            tokio::time::Instant::now() < deadline,
            "NATS never came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for i in 0..5 {
        let message = format!("later {i}");
        assert_eq!(
            herald
                .post(Event::new("Kustomization", "flux-system", "a").message(&message))
                .await
                .0,
            202
        );
        accepted.push(message);
    }

    let requests = eventually("every accepted event delivered", || async {
        let requests = hook.requests();
        let delivered: std::collections::HashSet<String> = requests
            .iter()
            .map(|r| r.json()["message"].as_str().unwrap_or_default().to_owned())
            .collect();
        accepted
            .iter()
            .all(|m| delivered.contains(m))
            .then_some(requests)
    })
    .await;
    assert!(requests.len() >= accepted.len());
    herald.shutdown().await;
}

#[tokio::test]
async fn failures_are_retried_and_permanent_ones_dead_lettered() {
    let nats = TestNats::start().await;
    let flaky = FakeServer::webhook().await;
    let refusing = FakeServer::webhook().await;
    flaky.script([
        Reply::status(500),
        Reply::status(429).header("Retry-After", "1"),
    ]);
    refusing.set_default(Some(Reply::status(401)));
    let dir = config_dir(&format!(
        "{}{}{}{}{}",
        Provider::new("flux-system", "flaky", "generic").address(&flaky.url("/hook")),
        Provider::new("flux-system", "refusing", "generic").address(&refusing.url("/hook")),
        Alert::new("flux-system", "flaky", "flaky")
            .severity("info")
            .source("Kustomization", "*"),
        Alert::new("flux-system", "refusing", "refusing")
            .severity("info")
            .source("Kustomization", "*"),
        Alert::new("flux-system", "dangling", "nowhere")
            .severity("info")
            .source("Kustomization", "*")
    ));
    let herald = TestHerald::start(nats.url(), dir.path()).await;
    assert_eq!(herald.post(FAILED).await.0, 202);

    let attempts = flaky.wait_for(3).await;
    assert_eq!(
        attempts.iter().map(|r| r.answered).collect::<Vec<_>>(),
        [500, 429, 200]
    );
    assert!(
        attempts[2].at - attempts[1].at >= Duration::from_millis(950),
        "Retry-After: 1 was honoured"
    );
    let dead = eventually("two dead letters", || async {
        let dead = dead_letters(&nats).await;
        (dead.len() == 2).then_some(dead)
    })
    .await;
    let (subject, refused) = dead
        .iter()
        .find(|(_, d)| d.last_status == 401)
        .expect("the 401 is dead");
    assert_eq!(subject, "herald.dead.generic.flux-system.refusing");
    assert_eq!(refused.reason, "destination answered 401");
    assert_eq!(refused.attempts, 1);
    assert_eq!(refused.last_response, "fake answer 401");
    assert_eq!(refusing.requests().len(), 1, "a 401 is not retried");
    let delivery = refused.delivery.as_ref().expect("the delivery is kept");
    assert_eq!(delivery.alert.as_ref().unwrap().name, "refusing");
    let (subject, dangling) = dead
        .iter()
        .find(|(_, d)| d.last_status == 0)
        .expect("the missing provider is dead");
    assert_eq!(subject, "herald.dead.unknown.flux-system.nowhere");
    assert_eq!(
        dangling.reason,
        "Alert flux-system/dangling names Provider flux-system/nowhere, which does not exist"
    );
    eventually("the work queue is empty", || async {
        (nats.stream_messages(names::DELIVERIES_STREAM).await == 0).then_some(())
    })
    .await;
    herald.shutdown().await;
}

#[tokio::test]
async fn an_unusable_provider_is_dead_lettered_with_its_reason_and_no_secret() {
    let nats = TestNats::start().await;
    let dir = config_dir(&format!(
        "{}{}{}{}",
        "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Provider\nmetadata: {name: slack, namespace: flux-system}\n\
         spec: {type: slack, secretRef: {name: missing}}\n---\n",
        Provider::new("flux-system", "eventhub", "azureeventhub").address("http://127.0.0.1:9/x"),
        Alert::new("flux-system", "a", "slack")
            .severity("info")
            .source("Kustomization", "*"),
        Alert::new("flux-system", "b", "eventhub")
            .severity("info")
            .source("Kustomization", "*")
    ));
    let herald = TestHerald::start(nats.url(), dir.path()).await;
    assert_eq!(herald.post(FAILED).await.0, 202);
    let dead = eventually("two dead letters", || async {
        let dead = dead_letters(&nats).await;
        (dead.len() == 2).then_some(dead)
    })
    .await;
    let reasons: std::collections::BTreeSet<_> =
        dead.iter().map(|(_, d)| d.reason.clone()).collect();
    assert_eq!(
        reasons.into_iter().collect::<Vec<_>>(),
        [
            "Provider flux-system/slack cannot be used: spec.secretRef names Secret flux-system/missing, which does not exist",
            "azureeventhub: the address must be the event hub name (or a SAS connection string)",
        ]
    );
    herald.shutdown().await;
}

#[tokio::test]
async fn slack_web_api_with_a_bot_token() {
    let nats = TestNats::start().await;
    let slack = FakeServer::slack().await;
    let dir = config_dir(&format!(
        "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Provider\nmetadata: {{name: bot, namespace: flux-system}}\n\
         spec: {{type: slack, channel: C123, address: '{}', secretRef: {{name: bot-token}}}}\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata: {{name: bot-token, namespace: flux-system}}\ndata: {{token: eG94Yi10ZXN0}}\n---\n\
         apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Provider\nmetadata: {{name: nochannel, namespace: flux-system}}\n\
         spec: {{type: slack, address: '{}', secretRef: {{name: bot-token}}}}\n---\n{}{}",
        slack.url("/api/chat.postMessage"),
        slack.url("/api/chat.postMessage"),
        Alert::new("flux-system", "bot", "bot")
            .severity("error")
            .source("Kustomization", "*"),
        Alert::new("flux-system", "nochannel", "nochannel")
            .severity("error")
            .source("Kustomization", "*"),
    ));
    let herald = TestHerald::start(nats.url(), dir.path()).await;
    assert_eq!(herald.post(FAILED).await.0, 202);
    let requests = slack.wait_for(2).await;
    assert!(
        requests
            .iter()
            .all(|r| r.header("authorization").as_deref() == Some("Bearer xoxb-test"))
    );
    let dead = eventually("the channel-less delivery is dead", || async {
        let dead = dead_letters(&nats).await;
        (dead.len() == 1).then_some(dead)
    })
    .await;
    assert_eq!(
        dead[0].1.reason,
        "Slack responded with error: channel_not_found"
    );
    assert!(!format!("{:?}", dead[0].1).contains("xoxb-test"));
    herald.shutdown().await;
}

#[tokio::test]
async fn readiness_and_metrics_follow_the_pipeline() {
    let nats = TestNats::start().await;
    let hook = FakeServer::webhook().await;
    let dir = config_dir(&format!(
        "{}{}",
        Provider::new("flux-system", "audit", "generic").address(&hook.url("/events")),
        Alert::new("flux-system", "audit", "audit")
            .severity("info")
            .source("Kustomization", "*")
    ));
    let herald = TestHerald::start(nats.url(), dir.path()).await;
    let (status, text) = herald.admin("/readyz").await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(herald.admin("/healthz").await, (200, "ok\n".to_owned()));
    assert_eq!(herald.post(FAILED).await.0, 202);
    hook.wait_for(1).await;
    let metrics = eventually("delivery counted", || async {
        let (_, metrics) = herald.admin("/metrics").await;
        metrics
            .contains(r#"herald_deliveries_total{provider_type="generic",outcome="delivered",cluster="test"} 1"#)
            .then_some(metrics)
    })
    .await;
    for line in [
        "herald_events_received_total 1",
        r#"herald_events_stored_total{cluster="test"} 1"#,
        "herald_alerts_matched_total 1",
        r#"herald_deliveries_published_total{provider_type="generic",cluster="test"} 1"#,
        r#"herald_delivery_latency_seconds_count{provider_type="generic",cluster="test"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }
    herald.shutdown().await;
}
