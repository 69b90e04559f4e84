//! One trace from the request that brought an event to the requests that
//! delivered it: `herald standalone` exports to an in-process OTLP receiver.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_tests::fake::{FakeServer, Reply};
use herald_tests::nats::TestNats;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::{Span, span::SpanKind, status::StatusCode};

const HERALD: &str = env!("CARGO_BIN_EXE_herald");
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";
const WEBHOOK_SECRET: &str = "T0SECRET/B0SECRET/XSECRETX";

#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<(String, Span)>>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for resource in request.into_inner().resource_spans {
            let service = resource
                .resource
                .iter()
                .flat_map(|r| r.attributes.iter())
                .find(|a| a.key == "service.name")
                .and_then(|a| a.value.as_ref())
                .and_then(|v| match &v.value {
                    Some(Value::StringValue(s)) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for scope in resource.scope_spans {
                for span in scope.spans {
                    spans.push((service.clone(), span));
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn attr(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.as_ref())
        .and_then(|v| match &v.value {
            Some(Value::StringValue(s)) => Some(s.clone()),
            Some(Value::IntValue(i)) => Some(i.to_string()),
            Some(Value::BoolValue(b)) => Some(b.to_string()),
            _ => None,
        })
}

#[tokio::test]
async fn one_trace_follows_an_event_to_both_providers_and_its_retry() {
    herald_tests::init();
    let nats = TestNats::start().await;
    let slack = FakeServer::slack().await;
    let hook = FakeServer::webhook().await;
    hook.script([Reply::status(500)]);

    let receiver = Receiver::default();
    let otlp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let otlp_addr = otlp.local_addr().unwrap();
    let server = TraceServiceServer::new(receiver.clone());
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(server)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(otlp))
            .await
            .expect("OTLP receiver runs");
    });

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.yaml"),
        format!(
            "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Provider\nmetadata: {{name: slack, namespace: apps}}\n\
             spec: {{type: slack, channel: ops, secretRef: {{name: slack-url}}}}\n---\n\
             apiVersion: v1\nkind: Secret\nmetadata: {{name: slack-url, namespace: apps}}\n\
             stringData: {{address: '{}', token: xoxb-never-shown}}\n---\n\
             apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Provider\nmetadata: {{name: hook, namespace: apps}}\n\
             spec: {{type: generic, address: '{}'}}\n---\n\
             apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Alert\nmetadata: {{name: chat, namespace: apps}}\n\
             spec: {{providerRef: {{name: slack}}, eventSources: [{{kind: Kustomization, name: '*'}}]}}\n---\n\
             apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Alert\nmetadata: {{name: audit, namespace: apps}}\n\
             spec: {{providerRef: {{name: hook}}, eventSources: [{{kind: Kustomization, name: '*'}}]}}\n",
            slack.url(&format!("/services/{WEBHOOK_SECRET}")),
            hook.url("/audit"),
        ),
    )
    .unwrap();
    let (port, admin) = (
        herald_tests::process::free_port(),
        herald_tests::process::free_port(),
    );
    let mut child = tokio::process::Command::new(HERALD)
        .arg("standalone")
        .arg("--config-dir")
        .arg(dir.path())
        .args(["--nats-url", nats.url()])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
        .args(["--grpc-listen", "off", "--retry-base", "200ms"])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{otlp_addr}"))
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env_remove("OTEL_SERVICE_NAME")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start herald");
    herald_tests::process::wait_ready(admin, "herald").await;
    let http = reqwest::Client::new();

    let body = r#"{"involvedObject":{"kind":"Kustomization","namespace":"apps","name":"web","apiVersion":"kustomize.toolkit.fluxcd.io/v1"},
                   "severity":"error","message":"apply failed","reason":"BuildFailed","reportingController":"kustomize-controller",
                   "metadata":{"kustomize.toolkit.fluxcd.io/revision":"main@sha1:abc"},"timestamp":"2024-01-01T00:00:00Z"}"#;
    let response = http
        .post(format!("http://127.0.0.1:{port}/"))
        .header("traceparent", format!("00-{TRACE_ID}-{CALLER_SPAN}-01"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    slack.wait_for(1).await;
    hook.wait_for(2).await;

    // The metrics moved as the scenario says.
    let metrics = herald_tests::eventually("the delivery is counted", || async {
        let text = http
            .get(format!("http://127.0.0.1:{admin}/metrics"))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.contains(r#"herald_deliveries_total{provider_type="generic",outcome="delivered",cluster="default"} 1"#)
            .then_some(text)
    })
    .await;
    for line in [
        "herald_events_received_total 1",
        r#"herald_events_stored_total{cluster="default"} 1"#,
        r#"herald_events_routed_total{cluster="default"} 1"#,
        "herald_alerts_matched_total 2",
        r#"herald_deliveries_published_total{provider_type="slack",cluster="default"} 1"#,
        r#"herald_deliveries_published_total{provider_type="generic",cluster="default"} 1"#,
        r#"herald_delivery_attempts_total{provider_type="generic",outcome="retry",cluster="default"} 1"#,
        r#"herald_deliveries_total{provider_type="slack",outcome="delivered",cluster="default"} 1"#,
        r#"herald_provider_request_duration_seconds_count{provider_type="generic"} 2"#,
        r#"herald_delivery_latency_seconds_count{provider_type="slack",cluster="default"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }

    // SIGTERM flushes the spans.
    herald_tests::process::sigterm(child.id().unwrap());
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("exits")
        .unwrap();
    assert!(status.success());

    let spans = receiver.spans.lock().unwrap().clone();
    let by_name = |name: &str| -> Vec<&Span> {
        spans
            .iter()
            .map(|(_, s)| s)
            .filter(|s| s.name == name)
            .collect()
    };
    assert!(
        spans.iter().all(|(service, _)| service == "herald"),
        "service.name"
    );
    // One trace, the caller's, from ingest to both provider calls.
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    for (_, span) in &spans {
        assert_eq!(
            hex(&span.trace_id),
            TRACE_ID,
            "span {} is in another trace",
            span.name
        );
    }
    let by_id: HashMap<String, &Span> = spans.iter().map(|(_, s)| (hex(&s.span_id), s)).collect();
    let parent = |span: &Span| by_id.get(&hex(&span.parent_span_id)).copied();

    let receive = by_name("POST");
    let receive: Vec<_> = receive
        .iter()
        .filter(|s| s.kind == SpanKind::Server as i32)
        .collect();
    assert_eq!(receive.len(), 1);
    assert_eq!(
        hex(&receive[0].parent_span_id),
        CALLER_SPAN,
        "continues the caller's traceparent"
    );
    assert_eq!(attr(receive[0], "flux.object.name").as_deref(), Some("web"));
    assert_eq!(
        attr(receive[0], "http.response.status_code").as_deref(),
        Some("202")
    );

    let publish = by_name("publish herald.events.default");
    assert_eq!(publish.len(), 1);
    assert_eq!(publish[0].kind, SpanKind::Producer as i32);
    assert_eq!(
        parent(publish[0]).map(|p| p.span_id.clone()),
        Some(receive[0].span_id.clone())
    );
    assert_eq!(
        attr(publish[0], "messaging.system").as_deref(),
        Some("nats")
    );
    assert_eq!(
        attr(publish[0], "messaging.destination.name").as_deref(),
        Some("herald.events.default")
    );
    assert_eq!(
        attr(publish[0], "flux.revision").as_deref(),
        Some("main@sha1:abc")
    );

    let route = by_name("process herald.events");
    assert_eq!(route.len(), 1);
    assert_eq!(route[0].kind, SpanKind::Consumer as i32);
    assert_eq!(
        parent(route[0]).map(|p| p.name.as_str()),
        Some("publish herald.events.default")
    );
    assert_eq!(
        attr(route[0], "messaging.consumer.group.name").as_deref(),
        Some("herald-router")
    );

    let queued = by_name("publish herald.deliveries");
    assert_eq!(queued.len(), 2);
    assert!(
        queued
            .iter()
            .all(|s| parent(s).map(|p| p.name.as_str()) == Some("process herald.events"))
    );

    let attempts = by_name("process herald.deliveries");
    assert_eq!(attempts.len(), 3, "slack once, the webhook twice");
    for attempt in &attempts {
        let queued_by = parent(attempt).expect("an attempt continues its delivery's trace");
        assert_eq!(queued_by.name, "publish herald.deliveries");
        assert_eq!(
            attr(attempt, "herald.provider.type"),
            attr(queued_by, "herald.provider.type")
        );
    }
    let retry = attempts
        .iter()
        .find(|s| attr(s, "herald.outcome").as_deref() == Some("retry"))
        .expect("the failed attempt is a span");
    assert_eq!(
        retry.status.as_ref().map(|s| s.code),
        Some(StatusCode::Error as i32)
    );
    assert_eq!(attr(retry, "herald.attempt").as_deref(), Some("1"));
    assert_eq!(
        attr(retry, "herald.provider.name").as_deref(),
        Some("apps/hook")
    );
    let delivered: Vec<_> = attempts
        .iter()
        .filter(|s| attr(s, "herald.outcome").as_deref() == Some("delivered"))
        .collect();
    assert_eq!(delivered.len(), 2);

    let calls: Vec<_> = by_name("POST")
        .into_iter()
        .filter(|s| s.kind == SpanKind::Client as i32)
        .collect();
    assert_eq!(calls.len(), 3);
    let mut statuses: Vec<_> = calls
        .iter()
        .map(|s| attr(s, "http.response.status_code").unwrap())
        .collect();
    statuses.sort();
    assert_eq!(statuses, ["200", "200", "500"]);
    assert!(
        calls
            .iter()
            .all(|s| parent(s).map(|p| p.name.as_str()) == Some("process herald.deliveries"))
    );

    // No attribute holds a secret or a webhook address.
    for (_, span) in &spans {
        for attribute in &span.attributes {
            let value = format!("{:?}", attribute.value);
            for secret in [WEBHOOK_SECRET, "xoxb-never-shown", "/services/"] {
                assert!(
                    !value.contains(secret),
                    "{} on {} holds a secret",
                    attribute.key,
                    span.name
                );
            }
        }
    }
}
