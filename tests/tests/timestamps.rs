//! An event's `timestamp` travels ingest → HERALD_EVENTS → router →
//! HERALD_DELIVERIES → sender unchanged, over the whole range Go's RFC 3339
//! allows, and reaches a `generic` Provider exactly as Flux's Go code would
//! encode it; what Go's decoding refuses is answered 400.

use herald_tests::fake::FakeServer;
use herald_tests::fixtures::{Alert, Provider};
use herald_tests::herald::{TestHerald, config_dir};
use herald_tests::nats::TestNats;

fn manifests(hook: &FakeServer) -> String {
    format!(
        "{}{}",
        Provider::new("apps", "hook", "generic").address(&hook.url("/hook")),
        Alert::new("apps", "all", "hook").source("Kustomization", "*")
    )
}

/// A Flux event with `timestamp` given as raw JSON, told apart by `message`
/// (Flux's dedupe key ignores the timestamp).
fn event(message: &str, timestamp_json: &str) -> String {
    format!(
        r#"{{"involvedObject":{{"kind":"Kustomization","namespace":"apps","name":"app","apiVersion":"kustomize.toolkit.fluxcd.io/v1"}},
            "severity":"info","timestamp":{timestamp_json},"message":"{message}","reason":"Info",
            "reportingController":"kustomize-controller"}}"#
    )
}

/// The body Flux's notification-controller posts to a generic webhook for
/// that event: Go's `json.Marshal`, `metav1.Time` as UTC whole seconds or `null`.
fn flux_body(message: &str, timestamp_json: &str) -> String {
    format!(
        r#"{{"involvedObject":{{"kind":"Kustomization","namespace":"apps","name":"app","apiVersion":"kustomize.toolkit.fluxcd.io/v1"}},"severity":"info","timestamp":{timestamp_json},"message":"{message}","reason":"Info","reportingController":"kustomize-controller"}}"#
    )
}

#[tokio::test]
async fn every_timestamp_go_accepts_reaches_the_webhook_as_flux_encodes_it() {
    let nats = TestNats::start().await;
    let hook = FakeServer::webhook().await;
    let dir = config_dir(&manifests(&hook));
    let herald = TestHerald::start(nats.url(), dir.path()).await;

    // (what the producer sent, what Flux forwards)
    let cases = [
        ("null", "null"),
        // Go's zero time: metav1.Time decodes it as zero and encodes zero as null.
        (r#""0001-01-01T00:00:00Z""#, "null"),
        (r#""1600-01-01T00:00:00Z""#, r#""1600-01-01T00:00:00Z""#),
        (r#""2300-01-01T00:00:00Z""#, r#""2300-01-01T00:00:00Z""#),
        (r#""9999-12-31T23:59:59Z""#, r#""9999-12-31T23:59:59Z""#),
        // A fractional second and an offset with minutes: UTC, whole seconds.
        (
            r#""2024-05-07T01:02:34.987654321-04:30""#,
            r#""2024-05-07T05:32:34Z""#,
        ),
        // An offset may push the year past 9999; Go keeps it and prints it so.
        (
            r#""9999-12-31T23:30:00-01:00""#,
            r#""10000-01-01T00:30:00Z""#,
        ),
    ];
    for (i, (sent, _)) in cases.iter().enumerate() {
        let (status, body) = herald.post(event(&format!("case {i}"), sent)).await;
        assert_eq!(status, 202, "{sent}: {body}");
    }
    let requests = hook.wait_for(cases.len()).await;
    for (i, (sent, forwarded)) in cases.iter().enumerate() {
        let message = format!("case {i}");
        let request = requests
            .iter()
            .find(|r| r.json()["message"] == message.as_str())
            .unwrap_or_else(|| panic!("{sent} was not delivered"));
        assert_eq!(
            String::from_utf8_lossy(&request.body),
            flux_body(&message, forwarded),
            "{sent}"
        );
    }
    herald.shutdown().await;
}

#[tokio::test]
async fn a_timestamp_go_refuses_is_answered_400_naming_the_field() {
    let nats = TestNats::start().await;
    let hook = FakeServer::webhook().await;
    let dir = config_dir(&manifests(&hook));
    let herald = TestHerald::start(nats.url(), dir.path()).await;
    let refused = [
        (r#""2024-02-30T00:00:00Z""#, "day out of range"),
        (r#""10000-01-01T00:00:00Z""#, "RFC 3339"),
        (
            r#""2024-01-01T00:00:00+25:00""#,
            "time zone offset hour out of range",
        ),
        (r#""2024-01-01 00:00:00Z""#, "RFC 3339"),
        ("1714000000", "field \"timestamp\""),
    ];
    for (sent, reason) in refused {
        let (status, body) = herald.post(event("refused", sent)).await;
        assert_eq!(status, 400, "{sent}: {body}");
        assert!(body.contains("\"timestamp\""), "{sent}: {body}");
        assert!(body.contains(reason), "{sent}: {body}");
    }
    // Nothing was stored, so nothing is sent.
    let (status, _) = herald.post(event("accepted", "null")).await;
    assert_eq!(status, 202);
    let requests = hook.wait_for(1).await;
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].json()["message"], "accepted");
    herald.shutdown().await;
}
