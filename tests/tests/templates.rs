//! Message templates on unchanged Flux objects (`herald.dev/template` on an
//! Alert, or on its Provider as the default; `herald.dev/slack-blocks`),
//! end to end through ingest, router and sender to fake Slack and webhook
//! servers: what each destination receives, and what happens to a template
//! that cannot render (with a folder and with the Kubernetes catalog).

use std::time::Duration;

use herald_proto::{ObjectRecord, names};
use herald_runtime::catalog::kubernetes::KubeArgs;
use herald_tests::eventually;
use herald_tests::fake::FakeServer;
use herald_tests::fixtures::Event;
use herald_tests::herald::{Options, TestHerald, config_dir};
use herald_tests::kube::FakeKube;
use herald_tests::nats::TestNats;
use prost::Message as _;
use serde_json::json;

const NS: &str = "flux-system";

/// `annotations` as a YAML block, each value a literal block scalar.
fn annotations(pairs: &[(&str, &str)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let mut out = String::from("  annotations:\n");
    for (key, value) in pairs {
        out.push_str(&format!("    {key}: |-\n"));
        for line in value.lines() {
            out.push_str(&format!("      {line}\n"));
        }
    }
    out
}

fn provider(name: &str, provider_type: &str, address: &str, notes: &[(&str, &str)]) -> String {
    format!(
        "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Provider\n\
         metadata:\n  name: {name}\n  namespace: {NS}\n{}\
         spec: {{type: {provider_type}, address: '{address}'}}\n---\n",
        annotations(notes)
    )
}

fn alert(name: &str, provider: &str, notes: &[(&str, &str)]) -> String {
    format!(
        "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Alert\n\
         metadata:\n  name: {name}\n  namespace: {NS}\n{}\
         spec: {{providerRef: {{name: {provider}}}, eventSources: [{{kind: Kustomization, name: '*'}}]}}\n---\n",
        annotations(notes)
    )
}

fn event(revision: Option<&str>) -> String {
    let event = Event::new("Kustomization", NS, "apps")
        .severity("error")
        .reason("HealthCheckFailed")
        .message("Health check failed");
    match revision {
        Some(revision) => event.metadata("kustomize.toolkit.fluxcd.io/revision", revision),
        None => event,
    }
    .now()
    .json()
}

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
async fn templates_render_into_slack_messages_blocks_and_webhook_bodies() {
    let nats = TestNats::start().await;
    let slack = FakeServer::slack().await;
    let hook = FakeServer::webhook().await;
    let blocks = r#"[{"type": "section", "text": {"type": "mrkdwn",
  "text": {{ printf "*%s* %s" .InvolvedObject.Name .Message | toJson }}}}]"#;
    let manifests = [
        provider("chat", "slack", &slack.url("/services/T0/B0/chat"), &[]),
        provider(
            "blocks",
            "slack",
            &slack.url("/services/T0/B0/blocks"),
            &[("herald.dev/slack-blocks", blocks)],
        ),
        provider(
            "hook",
            "generic",
            &hook.url("/hook"),
            &[("herald.dev/template", "provider default: {{ .Message }}")],
        ),
        alert(
            "chat",
            "chat",
            &[(
                "herald.dev/template",
                "{{ .InvolvedObject.Kind }}/{{ .InvolvedObject.Name }} in {{ .Cluster }}: \
                 {{ .Message | upper }}\nrevision {{ index .Metadata \"revision\" | trunc 12 }}",
            )],
        ),
        alert(
            "blocks",
            "blocks",
            &[(
                "herald.dev/template",
                "{{ .Reason }} on {{ .InvolvedObject.Name }}",
            )],
        ),
        alert(
            "hook",
            "hook",
            &[(
                "herald.dev/template",
                "{{ .Alert.Namespace }}/{{ .Alert.Name }}: {{ .Message }}",
            )],
        ),
        alert("hook-default", "hook", &[]),
    ]
    .concat();
    let dir = config_dir(&manifests);
    let herald = TestHerald::start(nats.url(), dir.path()).await;
    let (_, ready) = herald.admin("/readyz").await;
    assert!(!ready.contains("herald.dev"), "{ready}");
    let revision = "main@sha1:0123456789abcdef0123456789abcdef01234567";
    assert_eq!(herald.post(event(Some(revision))).await.0, 202);
    slack.wait_for(2).await;
    hook.wait_for(2).await;

    // Slack: the Alert's text where Flux puts its message, in the attachment.
    let chat = slack
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("/chat"))
        .expect("the chat message")
        .json();
    assert_eq!(
        chat["attachments"][0]["text"],
        "Kustomization/apps in test: HEALTH CHECK FAILED\nrevision main@sha1:01"
    );
    assert_eq!(
        chat["attachments"][0]["fallback"],
        "kustomization/apps.flux-system: Kustomization/apps in test: HEALTH CHECK FAILED"
    );
    assert_eq!(chat["attachments"][0]["fields"][0]["title"], "revision");
    assert!(chat.get("blocks").is_none(), "{chat}");

    // Blocks from the Provider's template; the Alert's text is the fallback.
    let with_blocks = slack
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("/blocks"))
        .expect("the blocks message")
        .json();
    assert_eq!(
        with_blocks["blocks"],
        json!([{"type": "section", "text": {"type": "mrkdwn", "text": "*apps* Health check failed"}}])
    );
    assert_eq!(with_blocks["text"], "HealthCheckFailed on apps");
    assert!(with_blocks.get("attachments").is_none(), "{with_blocks}");

    // The generic body is Flux's event with the rendered message: the
    // Alert's own template, and the Provider's default for the other Alert.
    assert_eq!(
        hook.sorted_messages(),
        [
            "flux-system/hook: Health check failed",
            "provider default: Health check failed",
        ]
    );
    let body = hook.requests()[0].json();
    assert_eq!(body["involvedObject"]["name"], "apps");
    assert_eq!(body["reason"], "HealthCheckFailed");
    assert_eq!(body["metadata"]["revision"], revision);

    let alert_record = eventually("the Alert's record of its render", || async {
        record(&nats, "Alert", "hook")
            .await
            .filter(|r| r.last_rendered_at.is_some())
    })
    .await;
    assert_eq!(alert_record.template_failures, 0);
    herald.shutdown().await;
}

#[tokio::test]
async fn a_template_that_cannot_render_sends_flux_message_and_says_why() {
    let nats = TestNats::start().await;
    let hook = FakeServer::webhook().await;
    let manifests = [
        provider("hook", "generic", &hook.url("/hook"), &[]),
        // Does not compile: a catalog problem with its line and column.
        alert(
            "broken",
            "hook",
            &[("herald.dev/template", "first line\n{{ .Message | uper }}")],
        ),
        // Compiles and renders the sample event (it has a revision), but
        // not an event without one.
        alert(
            "failing",
            "hook",
            &[(
                "herald.dev/template",
                "{{ slice (index .Metadata \"revision\") 0 10 }}",
            )],
        ),
    ]
    .concat();
    let dir = config_dir(&manifests);
    let herald = TestHerald::start(nats.url(), dir.path()).await;
    let (_, ready) = herald.admin("/readyz").await;
    assert!(
        ready.contains(
            "config.yaml:8: Alert/flux-system/broken: annotation herald.dev/template does not \
             compile at template line 2, column 15: function \"uper\" not defined (did you \
             mean \"upper\"?); deliveries are sent without it"
        ),
        "{ready}"
    );
    assert!(!ready.contains("Alert/flux-system/failing"), "{ready}");

    assert_eq!(herald.post(event(None)).await.0, 202);
    hook.wait_for(2).await;
    herald_tests::fixtures::deliveries_drained(&nats).await;
    // Never a broken message: both went out with Flux's.
    assert_eq!(
        hook.sorted_messages(),
        ["Health check failed", "Health check failed"]
    );
    assert!(herald_tests::fixtures::dead_letters(&nats).await.is_empty());

    let failing = eventually("the failing Alert's record", || async {
        record(&nats, "Alert", "failing")
            .await
            .filter(|r| r.template_failures == 1)
    })
    .await;
    assert_eq!(failing.delivered, 1);
    assert!(
        failing
            .last_template_error
            .starts_with("herald.dev/template: "),
        "{}",
        failing.last_template_error
    );
    assert!(failing.last_template_failed_at.is_some());
    let ready = eventually("/readyz lists the failing template", || async {
        let (_, body) = herald.admin("/readyz").await;
        body.contains("Alert flux-system/failing: template failing since")
            .then_some(body)
    })
    .await;
    assert!(ready.contains("(sent with Flux's message)"), "{ready}");
    let metrics = herald.metrics.encode();
    assert!(
        metrics.contains(
            r#"herald_template_failures_total{provider_type="generic",annotation="template"} 1"#
        ),
        "{metrics}"
    );
    herald.shutdown().await;
}

#[tokio::test]
async fn in_a_cluster_a_template_that_does_not_compile_is_told_on_its_alert() {
    herald_tests::init();
    let nats = TestNats::start().await;
    let kube = FakeKube::start().await;
    let hook = FakeServer::webhook().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = kube.kubeconfig(dir.path());
    kube.apply(provider("hook", "generic", &hook.url("/hook"), &[]).trim_end_matches("---\n"));
    kube.apply(
        alert(
            "broken",
            "hook",
            &[(
                "herald.dev/template",
                "{{ .InvolvedObject.Knd }}: {{ .Message }}",
            )],
        )
        .trim_end_matches("---\n"),
    );
    let empty = tempfile::tempdir().expect("tempdir");
    let options = Options {
        kubernetes: Some(KubeArgs {
            kubeconfig: Some(kubeconfig),
            catalog_cluster: "test".to_owned(),
            catalog_debounce: Duration::from_millis(50),
            ..KubeArgs::default()
        }),
        ..Options::default()
    };
    let herald = TestHerald::start_with(nats.url(), empty.path(), options).await;
    let note = eventually("an Unusable Event on the Alert", || async {
        kube.events()
            .iter()
            .find(|e| {
                e["regarding"]["kind"] == "Alert"
                    && e["regarding"]["name"] == "broken"
                    && e["reason"] == "Unusable"
            })
            .map(|e| e["note"].as_str().unwrap_or_default().to_owned())
    })
    .await;
    assert_eq!(
        note,
        "annotation herald.dev/template does not compile at template line 1, column 4: can't \
         evaluate field Knd in type ObjectReference (did you mean .Kind?); deliveries are sent \
         without it"
    );
    // It still delivers, with Flux's message.
    assert_eq!(herald.post(event(None)).await.0, 202);
    hook.wait_for(1).await;
    assert_eq!(hook.sorted_messages(), ["Health check failed"]);
    herald.shutdown().await;
}
