//! The `herald` binary itself: `validate`, and `standalone` with its own
//! nats-server, from start to SIGTERM.

use std::process::{Command, Stdio};
use std::time::Duration;

use herald_tests::fake::FakeServer;

const HERALD: &str = env!("CARGO_BIN_EXE_herald");

#[test]
fn validate_accepts_the_examples() {
    let output = Command::new(HERALD)
        .args(["validate", "examples/config"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run herald");
    assert!(output.status.success(), "{output:?}");
    assert!(output.stdout.is_empty());
    let summary = String::from_utf8_lossy(&output.stderr);
    assert!(
        summary.contains("2 alerts, 2 providers, 1 secrets, 0 problems"),
        "{summary}"
    );
}

#[test]
fn edge_flags_say_the_form_they_expect() {
    for (args, expected) in [
        (&["router", "--edge", "shop-eu"][..], "CLUSTER=DOMAIN"),
        (
            &["router", "--edge", "shop-eu=edge.eu"][..],
            "not a JetStream domain",
        ),
        (
            &["ingest", "--jetstream-domain", "edge eu"][..],
            "not a JetStream domain",
        ),
    ] {
        let output = Command::new(HERALD)
            .args(args)
            .env_remove("HERALD_EDGES")
            .env_remove("HERALD_JETSTREAM_DOMAIN")
            .output()
            .expect("run herald");
        assert_eq!(output.status.code(), Some(2), "{args:?}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

#[test]
fn two_edges_with_one_cluster_stop_the_router() {
    let output = Command::new(HERALD)
        .args([
            "router",
            "--edge",
            "shop=edge-a,shop=edge-b",
            "--config-dir",
            "examples/config",
            "--admin-listen",
            "127.0.0.1:0",
            "--nats-url",
            "nats://127.0.0.1:1",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("HERALD_CATALOG", "folder")
        .output()
        .expect("run herald");
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--edge shop=edge-a and --edge shop=edge-b assign the same cluster"),
        "{stderr}"
    );
}

#[test]
fn validate_prints_one_line_per_problem_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.yaml"),
        "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Provider\nmetadata: {name: p, namespace: n}\nspec: {type: pigeon}\n---\n\
         apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Alert\nmetadata: {name: a, namespace: n}\nspec: {eventSources: []}\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("b.yaml"), "key: [unclosed").unwrap();
    let output = Command::new(HERALD)
        .arg("validate")
        .arg(dir.path())
        .output()
        .expect("run herald");
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(
        lines[0].starts_with(
            "a.yaml:1: Provider/n/p: spec.type \"pigeon\" is not a Flux provider type"
        )
    );
    assert_eq!(
        lines[1],
        "a.yaml:6: Alert/n/a: spec.providerRef.name is required"
    );
    assert!(lines[2].starts_with("b.yaml: invalid YAML"));
    let summary = String::from_utf8_lossy(&output.stderr);
    assert!(
        summary.contains("0 alerts, 0 providers, 0 secrets, 3 problems, 0 warnings"),
        "{summary}"
    );
}

#[test]
fn validate_catches_what_users_get_wrong_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let header = "apiVersion: notification.toolkit.fluxcd.io/v1beta3";
    std::fs::write(
        dir.path().join("alerts.yaml"),
        format!(
            "{header}\nkind: Alert\nmetadata: {{name: typo, namespace: flux-system}}\nspec:\n  providerRef: {{name: slack}}\n  eventSeverty: error\n  eventSources: [{{kind: Kustomization, name: '*'}}]\n---\n\
             {header}\nkind: Alert\nmetadata: {{name: orphan, namespace: flux-system}}\nspec:\n  providerRef: {{name: nope}}\n  eventSources: [{{kind: Kustomization, name: '*'}}]\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("providers.yaml"),
        format!(
            "{header}\nkind: Provider\nmetadata: {{name: slack, namespace: flux-system}}\nspec: {{type: slak, timeout: 1h, secretRef: {{name: gone}}}}\n---\n\
             {header}\nkind: Provider\nmetadata: {{name: github, namespace: flux-system}}\nspec:\n  type: github\n  address: https://github.com/org/repo\n  secretRef: {{name: github}}\n  commitStatusExpr: \"event.involvedObject.kind +\"\n---\n\
             {header}\nkind: Provider\nmetadata: {{name: pagerduty, namespace: flux-system}}\nspec: {{type: pagerduty, address: https://events.pagerduty.com}}\n---\n\
             {header}\nkind: Provider\nmetadata: {{name: dispatch, namespace: flux-system}}\nspec: {{type: githubdispatch, address: https://github.com/org/repo, secretRef: {{name: github}}}}\n---\n\
             apiVersion: v1\nkind: Secret\nmetadata: {{name: github, namespace: flux-system}}\nstringData: {{tokn: x}}\n"
        ),
    )
    .unwrap();
    // What `kubectl get alerts -o yaml` writes.
    std::fs::write(
        dir.path().join("list.yaml"),
        format!(
            "apiVersion: v1\nkind: List\nitems:\n- {header}\n  kind: Alert\n  metadata: {{name: listed, namespace: flux-system}}\n  spec:\n    providerRef: {{name: pagerduty}}\n    eventSources: [{{kind: HelmRelease, name: '*'}}]\n"
        ),
    )
    .unwrap();
    let output = Command::new(HERALD)
        .arg("validate")
        .arg(dir.path())
        .output()
        .expect("run herald");
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8(output.stdout).unwrap();
    let expected = [
        "alerts.yaml:6: Alert/flux-system/typo: unknown field spec.eventSeverty (did you mean \"eventSeverity\"?)",
        "alerts.yaml:9: Alert/flux-system/orphan: spec.providerRef names the Provider flux-system/nope, which does not exist",
        "providers.yaml:1: Provider/flux-system/slack: spec.type \"slak\" is not a Flux provider type (did you mean \"slack\"?",
        "providers.yaml:1: Provider/flux-system/slack: spec.timeout \"1h\" must be a duration",
        "providers.yaml:6: Provider/flux-system/github: spec.commitStatusExpr does not compile",
        "providers.yaml:15: Provider/flux-system/pagerduty: pagerduty: empty routing key",
        "providers.yaml:20: Provider/flux-system/dispatch: githubdispatch: github token or github app details must be specified",
    ];
    for line in expected {
        assert!(
            stdout.lines().any(|l| l.starts_with(line)),
            "{line}\n---\n{stdout}"
        );
    }
    // The List's Alert is read (it names an existing Provider: no problem of its own).
    assert!(!stdout.contains("listed"), "{stdout}");
    let summary = String::from_utf8_lossy(&output.stderr);
    assert!(
        summary.contains("2 alerts, 2 providers, 1 secrets"),
        "{summary}"
    );
    assert!(summary.contains("7 problems"), "{summary}");
}

#[test]
fn validate_prints_warnings_and_passes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("alerts.yaml"),
        "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Alert\nmetadata: {name: platform, namespace: flux-system}\n\
         spec: {providerRef: {name: slack}, eventSources: [{kind: Kustomization, name: '*'}, {kind: FluxInstance, name: flux}]}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("providers.yaml"),
        "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Provider\nmetadata: {name: slack, namespace: flux-system}\n\
         spec: {type: slack, channel: '${SLACK_CHANNEL:=alerts}', secretRef: {name: slack}}\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata: {name: slack, namespace: flux-system}\n\
         stringData: {address: 'ENC[AES256_GCM,data:c2VjcmV0,iv:aXY=,tag:dGFn,type:str]'}\n",
    )
    .unwrap();
    let output = Command::new(HERALD)
        .arg("validate")
        .arg(dir.path())
        .output()
        .expect("run herald");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(0), "{stdout}{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(
        lines[0].starts_with(
            "warning: alerts.yaml:1: Alert/flux-system/platform: spec.eventSources[1].kind \"FluxInstance\" is a Flux Operator kind, not one of Flux's (Bucket, GitRepository,"
        ),
        "{stdout}"
    );
    assert!(
        lines[1].starts_with(
            "warning: providers.yaml:1: Provider/flux-system/slack: spec.channel holds the variable ${SLACK_CHANNEL}; Flux's kustomize-controller substitutes it"
        ),
        "{stdout}"
    );
    assert!(
        lines[2].starts_with(
            "warning: providers.yaml:6: Secret/flux-system/slack: key address is SOPS-encrypted (ENC[...])"
        ),
        "{stdout}"
    );
    assert!(!stdout.contains("c2VjcmV0"), "never prints a value");
    assert!(
        stderr.contains("1 alerts, 1 providers, 1 secrets, 0 problems, 3 warnings"),
        "{stderr}"
    );
}

#[test]
fn validate_reports_templates_with_the_object_line_and_the_template_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("notify.yaml"),
        "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Provider\nmetadata:\n  name: chat\n  namespace: flux-system\n  annotations:\n\
         \x20   herald.dev/slack-blocks: '[{{ .Message | toJson }}]'\n\
         spec: {type: slack, address: 'https://hooks.slack.com/services/T/B/X'}\n---\n\
         apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Alert\nmetadata:\n  name: broken\n  namespace: flux-system\n  annotations:\n\
         \x20   herald.dev/template: |\n\
         \x20     {{ .InvolvedObject.Kind }}/{{ .InvolvedObject.Name }}\n\
         \x20     {{ .Message | uper }}\n\
         spec: {providerRef: {name: chat}, eventSources: [{kind: Kustomization, name: '*'}]}\n---\n\
         apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Alert\nmetadata:\n  name: fine\n  namespace: flux-system\n  annotations:\n\
         \x20   herald.dev/template: '{{ .Alert.Name }}: {{ index .Metadata \"revision\" | trunc 12 }}'\n\
         spec: {providerRef: {name: chat}, eventSources: [{kind: Kustomization, name: '*'}]}\n",
    )
    .unwrap();
    let output = Command::new(HERALD)
        .arg("validate")
        .arg(dir.path())
        .output()
        .expect("run herald");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(1), "{stdout}{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert_eq!(
        lines[0],
        "notify.yaml:1: Provider/flux-system/chat: annotation herald.dev/slack-blocks fails on \
         a sample event: the output is not a JSON array of Slack blocks: invalid type: string \
         \"check\", expected a map at line 1 column 8; deliveries it fails for are sent without \
         blocks"
    );
    assert_eq!(
        lines[1],
        "notify.yaml:10: Alert/flux-system/broken: annotation herald.dev/template does not \
         compile at template line 2, column 15: function \"uper\" not defined (did you mean \
         \"upper\"?); deliveries are sent without it"
    );
    assert!(
        stderr.contains("2 alerts, 1 providers, 0 secrets, 2 problems, 0 warnings"),
        "{stderr}"
    );
}

#[test]
fn validate_explains_flood_control_and_reports_what_cannot_be_used() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("alerts.yaml"),
        "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Alert\nmetadata: {name: outage, namespace: flux-system, \
         annotations: {herald.dev/group-wait: 10s, herald.dev/group-by: 'cluster, reason', herald.dev/recovery: 'true'}}\n\
         spec: {providerRef: {name: chat}, eventSources: [{kind: Kustomization, name: '*'}]}\n---\n\
         apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Alert\nmetadata: {name: typos, namespace: flux-system, \
         annotations: {herald.dev/group-wait: soon, herald.dev/group-by: colour}}\n\
         spec: {providerRef: {name: chat}, eventSources: [{kind: Kustomization, name: '*'}]}\n---\n\
         apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Alert\nmetadata: {name: misspelt, namespace: flux-system, \
         annotations: {herald.dev/repeat-treshold: 3/10m}}\n\
         spec: {providerRef: {name: chat}, eventSources: [{kind: Kustomization, name: '*'}]}\n---\n\
         apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Alert\nmetadata: {name: statuses, namespace: flux-system, \
         annotations: {herald.dev/group-wait: 10s}}\n\
         spec: {providerRef: {name: commits}, eventSources: [{kind: Kustomization, name: '*'}]}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("providers.yaml"),
        "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Provider\nmetadata: {name: chat, namespace: flux-system}\n\
         spec: {type: slack, address: 'https://hooks.slack.com/services/T/B/X'}\n---\n\
         apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Provider\nmetadata: {name: commits, namespace: flux-system}\n\
         spec: {type: github, address: 'https://github.com/org/repo', secretRef: {name: token}}\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata: {name: token, namespace: flux-system}\nstringData: {token: t}\n",
    )
    .unwrap();
    let output = Command::new(HERALD)
        .arg("validate")
        .arg(dir.path())
        .output()
        .expect("run herald");
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    for expected in [
        "Alert/flux-system/outage: flood control: grouped by cluster, reason, first digest after 10s, then at most one every 1m; recovery messages",
        "Alert/flux-system/typos: annotation herald.dev/group-wait \"soon\" is not a duration",
        "Alert/flux-system/typos: annotation herald.dev/group-by \"colour\" names colour",
        "unknown Herald annotation herald.dev/repeat-treshold (did you mean \"herald.dev/repeat-threshold\"?)",
        "Alert/flux-system/statuses: the Provider's type \"github\" writes commit statuses, which cannot be grouped",
        "Alert/flux-system/statuses: flood control: off (the Provider writes commit statuses)",
    ] {
        assert!(stdout.contains(expected), "{expected}\n{stdout}");
    }
}

#[test]
fn cluster_add_prints_the_token_once_and_validate_lists_the_clusters_each_alert_covers() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("clusters.yaml");
    std::fs::write(&file, "legacy: plain-token\n").unwrap();
    let add = |name: &str, labels: &[&str]| {
        let mut command = Command::new(HERALD);
        command
            .args(["cluster", "--clusters-file"])
            .arg(&file)
            .args(["add", name]);
        for label in labels {
            command.args(["--label", label]);
        }
        command.output().expect("run herald")
    };
    let added = add("prod-eu", &["env=prod"]);
    assert!(added.status.success(), "{added:?}");
    let token = String::from_utf8(added.stdout).unwrap().trim().to_owned();
    assert!(token.len() >= 43, "{token}");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        !text.contains(&token) && !text.contains("plain-token"),
        "{text}"
    );
    assert!(text.contains("tokenHash: sha256:"), "{text}");
    assert!(add("staging", &["env=staging"]).status.success());
    assert!(
        !add("prod-eu", &[]).status.success(),
        "a name is added once"
    );

    let config = dir.path().join("config");
    std::fs::create_dir(&config).unwrap();
    std::fs::write(
        config.join("alerts.yaml"),
        "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Provider\nmetadata: {name: p, namespace: n}\nspec: {type: generic, address: 'http://127.0.0.1:1/'}\n---\n\
         apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Alert\n\
         metadata: {name: prod, namespace: n, annotations: {'herald.dev/cluster-selector': 'env=prod'}}\n\
         spec: {providerRef: {name: p}, eventSources: [{kind: Kustomization, name: '*'}]}\n---\n\
         apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Alert\n\
         metadata: {name: all, namespace: n}\n\
         spec: {providerRef: {name: p}, eventSources: [{kind: Kustomization, name: '*'}]}\n",
    )
    .unwrap();
    let output = Command::new(HERALD)
        .arg("validate")
        .arg(&config)
        .arg("--clusters-file")
        .arg(&file)
        .output()
        .expect("run herald");
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("Alert/n/prod: clusters: prod-eu\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Alert/n/all: clusters: legacy, prod-eu, staging\n"),
        "{stdout}"
    );
}

#[tokio::test]
async fn standalone_delivers_and_stops_cleanly_on_sigterm() {
    herald_tests::init();
    let hook = FakeServer::webhook().await;
    let dir = herald_tests::herald::hook_catalog(&hook.url("/hook"));
    // A Provider its type cannot send with: the sender's check lists it on /readyz.
    std::fs::write(
        dir.path().join("pagerduty.yaml"),
        "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Provider\nmetadata: {name: pd, namespace: apps}\nspec: {type: pagerduty, address: 'https://events.pagerduty.com'}\n",
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
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
        .args(["--grpc-listen", "off", "--shutdown-grace", "10s"])
        .env_remove("HERALD_NATS_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start herald standalone");
    herald_tests::process::wait_ready(admin, "standalone").await;
    let http = reqwest::Client::new();
    let body = r#"{"involvedObject":{"kind":"Kustomization","namespace":"apps","name":"web","apiVersion":"kustomize.toolkit.fluxcd.io/v1"},
                   "severity":"info","message":"applied","reason":"Progressing","reportingController":"kustomize-controller","timestamp":"2024-01-01T00:00:00Z"}"#;
    let response = http
        .post(format!("http://127.0.0.1:{port}/any/path"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let requests = hook.wait_for(1).await;
    assert_eq!(requests[0].json()["message"], "applied");
    let readyz = http
        .get(format!("http://127.0.0.1:{admin}/readyz"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        readyz.contains("pagerduty.yaml:1: Provider/apps/pd: pagerduty: empty routing key"),
        "{readyz}"
    );

    stop(&mut child).await;
    // Its nats-server went with it: nothing listens on the admin port any more.
    assert!(std::net::TcpStream::connect(("127.0.0.1", admin)).is_err());
}

#[tokio::test]
async fn standalone_reads_flux_objects_from_kubernetes() {
    herald_tests::init();
    let hook = FakeServer::webhook().await;
    let kube = herald_tests::kube::FakeKube::start().await;
    kube.apply(&format!(
        "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Provider\nmetadata: {{name: hook, namespace: apps}}\n\
         spec: {{type: generic, address: '{}'}}\n",
        hook.url("/hook")
    ));
    kube.apply(
        "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Alert\nmetadata: {name: all, namespace: apps}\n\
         spec: {providerRef: {name: hook}, eventSources: [{kind: Kustomization, name: '*', matchLabels: {team: web}}]}\n",
    );
    kube.apply(
        "apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\n\
         metadata: {name: web, namespace: apps, labels: {team: web}}\nspec: {interval: 1m}\n",
    );
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = kube.kubeconfig(dir.path());
    let (port, admin) = (
        herald_tests::process::free_port(),
        herald_tests::process::free_port(),
    );
    let mut child = tokio::process::Command::new(HERALD)
        .args(["standalone", "--catalog", "kubernetes", "--kubeconfig"])
        .arg(&kubeconfig)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
        .args(["--grpc-listen", "off"])
        .env_remove("HERALD_NATS_URL")
        .env_remove("KUBECONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start herald standalone");
    herald_tests::process::wait_ready(admin, "standalone").await;
    let body = r#"{"involvedObject":{"kind":"Kustomization","namespace":"apps","name":"web","apiVersion":"kustomize.toolkit.fluxcd.io/v1"},
                   "severity":"info","message":"applied","reason":"Progressing","reportingController":"kustomize-controller","timestamp":"2024-01-01T00:00:00Z"}"#;
    let response = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    // Matched by the Kustomization's labels, read from the cluster.
    assert_eq!(hook.wait_for(1).await[0].json()["message"], "applied");
    stop(&mut child).await;
}

#[tokio::test]
async fn separate_ingest_router_and_sender_processes_deliver() {
    herald_tests::init();
    let nats = herald_tests::nats::TestNats::start().await;
    let hook = FakeServer::webhook().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.yaml"),
        format!(
            "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Provider\nmetadata: {{name: hook, namespace: apps}}\n\
             spec: {{type: generic, address: '{}'}}\n---\n\
             apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Alert\nmetadata: {{name: all, namespace: apps}}\n\
             spec: {{providerRef: {{name: hook}}, eventSources: [{{kind: HelmRelease, name: '*'}}]}}\n",
            hook.url("/hook")
        ),
    )
    .unwrap();
    let port = herald_tests::process::free_port();
    let spawn = |service: &str, extra: Vec<String>| {
        tokio::process::Command::new(HERALD)
            .arg(service)
            .args([
                "--admin-listen",
                &format!("127.0.0.1:{}", herald_tests::process::free_port()),
            ])
            .args(extra)
            .env("HERALD_NATS_URL", nats.url())
            .env("HERALD_CONFIG_DIR", dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start a herald service")
    };
    let _ingest = spawn(
        "ingest",
        vec![
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--grpc-listen".into(),
            "off".into(),
        ],
    );
    let _router = spawn("router", Vec::new());
    let _sender = spawn("sender", Vec::new());
    let http = reqwest::Client::new();
    let body = r#"{"involvedObject":{"kind":"HelmRelease","namespace":"apps","name":"podinfo","apiVersion":"helm.toolkit.fluxcd.io/v2"},
                   "severity":"info","message":"Helm upgrade succeeded","reason":"UpgradeSucceeded","reportingController":"helm-controller",
                   "metadata":{"helm.toolkit.fluxcd.io/revision":"6.5.3","helm.toolkit.fluxcd.io/token":"sha256:x"},"timestamp":"2024-01-01T00:00:00Z"}"#;
    herald_tests::eventually("ingest accepts", || async {
        let response = http
            .post(format!("http://127.0.0.1:{port}/"))
            .body(body)
            .send()
            .await
            .ok()?;
        (response.status() == 202).then_some(())
    })
    .await;
    let requests = hook.wait_for(1).await;
    let forwarded = requests[0].json();
    assert_eq!(forwarded["message"], "Helm upgrade succeeded");
    // The cluster is named by default (--cluster: `default`).
    assert_eq!(
        forwarded["metadata"],
        serde_json::json!({"revision": "6.5.3", "cluster": "default"})
    );
}

fn dlq(nats: &str, args: &[&str]) -> std::process::Output {
    Command::new(HERALD)
        .arg("dlq")
        .args(["--nats-url", nats])
        .args(args)
        .output()
        .expect("run herald dlq")
}

#[tokio::test]
async fn a_401_is_dead_at_once_and_dlq_replay_delivers_it_once_fixed() {
    herald_tests::init();
    let nats = herald_tests::nats::TestNats::start().await;
    let hook = FakeServer::webhook().await;
    hook.set_default(Some(herald_tests::fake::Reply::status(401)));
    let dir = herald_tests::herald::hook_catalog(&hook.url("/hook"));
    let herald = herald_tests::herald::TestHerald::start(nats.url(), dir.path()).await;
    let body = r#"{"involvedObject":{"kind":"Kustomization","namespace":"apps","name":"web","apiVersion":"kustomize.toolkit.fluxcd.io/v1"},
                   "severity":"error","message":"apply failed","reason":"BuildFailed","reportingController":"kustomize-controller",
                   "timestamp":"2024-01-01T00:00:00Z"}"#;
    assert_eq!(herald.post(body).await.0, 202);
    let listed = herald_tests::eventually("the delivery is dead", || async {
        let output = dlq(nats.url(), &["list", "--provider", "apps/hook"]);
        let stdout = String::from_utf8(output.stdout).unwrap();
        stdout
            .contains("destination answered 401")
            .then_some(stdout)
    })
    .await;
    assert_eq!(hook.requests().len(), 1, "a 401 is not retried: {listed}");

    let refused = dlq(nats.url(), &["replay"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("needs a filter"));

    // The token was fixed: the destination accepts again.
    hook.set_default(None);
    let replayed = dlq(nats.url(), &["replay", "--alert", "all"]);
    assert!(replayed.status.success(), "{replayed:?}");
    assert!(String::from_utf8_lossy(&replayed.stdout).starts_with("replayed "));
    let requests = hook.wait_for(2).await;
    assert_eq!(requests[1].answered, 200);
    assert_eq!(requests[1].body, requests[0].body, "the same notification");
    let listed = dlq(nats.url(), &["list"]);
    assert!(String::from_utf8_lossy(&listed.stderr).contains("0 dead letters"));
    herald.shutdown().await;
}

/// `herald standalone` on a 3-node cluster through `--nats-url` with a list
/// whose first server answers nothing; started again with other ack waits,
/// it updates its consumers.
#[tokio::test]
async fn a_nats_url_list_reaches_a_cluster_and_a_restart_updates_the_consumers() {
    use herald_proto::names;
    herald_tests::init();
    let cluster = herald_tests::nats_cluster::TestCluster::start().await;
    let nobody = herald_tests::process::free_port();
    let urls = format!("nats://127.0.0.1:{nobody},{}", cluster.urls());
    let hook = FakeServer::webhook().await;
    let dir = herald_tests::herald::hook_catalog(&hook.url("/hook"));
    let js = cluster.jetstream().await;
    let ack_waits = || async {
        let mut waits = Vec::new();
        for (stream, consumer) in [
            (names::EVENTS_STREAM, names::ROUTER_CONSUMER),
            (names::DELIVERIES_STREAM, names::SENDER_CONSUMER),
        ] {
            let stream = js.get_stream(stream).await.unwrap();
            let mut consumer: async_nats::jetstream::consumer::PullConsumer =
                stream.get_consumer(consumer).await.unwrap();
            let info = consumer.info().await.unwrap();
            assert_eq!(
                info.cluster.as_ref().map(|c| c.replicas.len()),
                Some(2),
                "{consumer:?} is replicated as its stream"
            );
            waits.push(info.config.ack_wait);
        }
        waits
    };
    let http = reqwest::Client::new();
    for (run, extra, expected) in [
        (
            0,
            vec!["--router-ack-wait", "30s", "--sender-ack-wait", "60s"],
            [Duration::from_secs(30), Duration::from_secs(60)],
        ),
        (1, Vec::new(), [Duration::from_secs(5); 2]),
    ] {
        let (port, admin) = (
            herald_tests::process::free_port(),
            herald_tests::process::free_port(),
        );
        let mut child = tokio::process::Command::new(HERALD)
            .arg("standalone")
            .arg("--config-dir")
            .arg(dir.path())
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
            .args(["--grpc-listen", "off", "--stream-replicas", "3"])
            .args(extra)
            .env("HERALD_NATS_URL", &urls)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start herald standalone");
        herald_tests::process::wait_ready(admin, "standalone on the cluster").await;
        let body = format!(
            r#"{{"involvedObject":{{"kind":"Kustomization","namespace":"apps","name":"web","apiVersion":"kustomize.toolkit.fluxcd.io/v1"}},
                "severity":"info","message":"run {run}","reason":"Progressing","reportingController":"kustomize-controller","timestamp":"2024-01-01T00:00:00Z"}}"#
        );
        let response = http
            .post(format!("http://127.0.0.1:{port}/"))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
        let requests = hook.wait_for(run + 1).await;
        assert_eq!(requests[run].json()["message"], format!("run {run}"));
        assert_eq!(ack_waits().await, expected);
        herald_tests::process::sigterm(child.id().expect("pid"));
        let status = child.wait().await.unwrap();
        assert!(status.success(), "{status}");
    }
    for stream in [
        names::EVENTS_STREAM.to_owned(),
        names::DELIVERIES_STREAM.to_owned(),
        names::DEAD_STREAM.to_owned(),
        format!("KV_{}", names::DEDUPE_BUCKET),
        format!("KV_{}", names::PACING_BUCKET),
        format!("KV_{}", names::COMMIT_STATUS_BUCKET),
        format!("KV_{}", names::OBJECTS_BUCKET),
        format!("KV_{}", names::THREADS_BUCKET),
    ] {
        let mut info = js.get_stream(&stream).await.unwrap();
        let info = info.info().await.unwrap();
        assert_eq!(info.config.num_replicas, 3, "{stream}");
        assert_eq!(
            info.cluster.as_ref().map(|c| c.replicas.len()),
            Some(2),
            "{stream} has two followers"
        );
    }
    let listed = Command::new(HERALD)
        .args(["dlq", "--nats-url", &urls, "list"])
        .output()
        .expect("run herald dlq");
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
}

/// Stops a Herald process as a pod is stopped (SIGTERM), so that its own
/// nats-server stops with it, and checks it exits cleanly in its grace period.
async fn stop(child: &mut tokio::process::Child) {
    herald_tests::process::sigterm(child.id().expect("pid"));
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("exits within the grace period")
        .unwrap();
    assert!(status.success(), "{status}");
}

/// Starts `herald standalone` on `dir`'s catalog with its store in `data`.
fn standalone_with_data(
    dir: &std::path::Path,
    data: &std::path::Path,
    port: u16,
    admin: u16,
) -> tokio::process::Child {
    tokio::process::Command::new(HERALD)
        .arg("standalone")
        .arg("--config-dir")
        .arg(dir)
        .arg("--data-dir")
        .arg(data)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
        .args(["--grpc-listen", "off", "--shutdown-grace", "5s"])
        .args(["--retry-base", "200ms", "--retry-max", "1s"])
        .env_remove("HERALD_NATS_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start herald standalone")
}

#[tokio::test]
async fn standalone_with_a_data_dir_keeps_what_it_accepted_across_a_restart() {
    herald_tests::init();
    let hook = FakeServer::webhook().await;
    // The destination is down: the delivery waits in the store.
    hook.set_default(Some(herald_tests::fake::Reply::status(503)));
    let dir = herald_tests::herald::hook_catalog(&hook.url("/hook"));
    let data = tempfile::tempdir().unwrap();
    let (port, admin) = (
        herald_tests::process::free_port(),
        herald_tests::process::free_port(),
    );
    let mut first = standalone_with_data(dir.path(), data.path(), port, admin);
    herald_tests::process::wait_ready(admin, "standalone").await;
    let body = r#"{"involvedObject":{"kind":"Kustomization","namespace":"apps","name":"web","apiVersion":"kustomize.toolkit.fluxcd.io/v1"},
                   "severity":"error","message":"kept across a restart","reason":"BuildFailed","reportingController":"kustomize-controller","timestamp":"2024-01-01T00:00:00Z"}"#;
    let response = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    hook.wait_for(1).await;
    stop(&mut first).await;
    assert!(data.path().join("jetstream").is_dir(), "the store is kept");

    // Back up, destination too: what was accepted before is delivered.
    hook.set_default(None);
    let before = hook.requests().len();
    let mut second = standalone_with_data(dir.path(), data.path(), port, admin);
    herald_tests::process::wait_ready(admin, "standalone again").await;
    let delivered = herald_tests::eventually("delivered after the restart", || async {
        hook.requests()
            .into_iter()
            .skip(before)
            .find(|r| r.answered == 200)
    })
    .await;
    assert_eq!(delivered.json()["message"], "kept across a restart");
    stop(&mut second).await;
}

#[test]
fn route_dry_run_explains_every_alert_and_masks_secrets() {
    let output = Command::new(HERALD)
        .args([
            "route",
            "--dry-run",
            "examples/events/kustomization-failed.json",
        ])
        .args(["--config-dir", "examples/config"])
        .output()
        .expect("run herald");
    assert_eq!(output.status.code(), Some(0));
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        stdout.contains("Alert/flux-system/audit: not matched: no event source selects it:"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Alert/flux-system/on-call: matched"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Provider/flux-system/slack (slack)"),
        "{stdout}"
    );
    // The webhook address is a secret: only its scheme and host are shown.
    assert!(!stdout.contains("hooks.slack.com/services/"), "{stdout}");
    let json = Command::new(HERALD)
        .args([
            "route",
            "--dry-run",
            "-",
            "--config-dir",
            "examples/config",
            "-o",
            "json",
        ])
        .args(["--cluster", "prod-eu"])
        .stdin(std::fs::File::open("examples/events/kustomization-failed.json").unwrap())
        .output()
        .expect("run herald");
    let verdicts: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let matched = verdicts
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["outcome"] == "matched")
        .expect("a matched Alert");
    assert_eq!(matched["provider"]["metadata"]["cluster"], "prod-eu");
    assert_eq!(matched["provider"]["request"]["method"], "POST");
    let body: serde_json::Value =
        serde_json::from_str(matched["provider"]["request"]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["channel"], "general");
    // Without --dry-run it refuses: Herald never sends from the CLI.
    let refused = Command::new(HERALD)
        .args(["route", "examples/events/kustomization-failed.json"])
        .output()
        .expect("run herald");
    assert_eq!(refused.status.code(), Some(2));
}

#[test]
fn version_and_completion_print() {
    let version = Command::new(HERALD).arg("version").output().unwrap();
    let text = String::from_utf8_lossy(&version.stdout);
    assert!(text.starts_with("herald 0."), "{text}");
    assert!(text.contains(" (commit "), "{text}");
    let flag = Command::new(HERALD).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&flag.stdout).contains("(commit "));
    let completion = Command::new(HERALD)
        .args(["completion", "bash"])
        .output()
        .unwrap();
    let script = String::from_utf8_lossy(&completion.stdout);
    assert!(script.contains("_herald()"), "{script}");
    assert!(script.contains("validate"), "{script}");
}

#[test]
fn validate_and_route_honour_fleet_admin_namespaces() {
    use herald_tests::fixtures::{Event, Provider};
    let dir = tempfile::tempdir().unwrap();
    let alert = |namespace: &str| {
        format!(
            "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Alert\n\
             metadata: {{name: fleet, namespace: {namespace}}}\n\
             spec: {{providerRef: {{name: hook}}, eventSources: [{{kind: Kustomization, name: '*', namespace: '*'}}]}}\n---\n"
        )
    };
    let manifests = format!(
        "{}{}{}{}",
        Provider::new("flux-system", "hook", "generic").address("http://127.0.0.1:9/a"),
        Provider::new("team-a", "hook", "generic").address("http://127.0.0.1:9/b"),
        alert("flux-system"),
        alert("team-a"),
    );
    std::fs::write(dir.path().join("fleet.yaml"), manifests).unwrap();
    let event = dir.path().join("event.json");
    std::fs::write(
        &event,
        Event::new("Kustomization", "team-b", "apps").now().json(),
    )
    .unwrap();
    let herald = |args: &[&str]| {
        let output = Command::new(HERALD)
            .args(args)
            .env_remove("HERALD_FLEET_ADMIN_NAMESPACES")
            .output()
            .expect("run herald");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    };
    let folder = dir.path().to_str().unwrap();
    let star = r#"spec.eventSources[0].namespace is "*" (all namespaces)"#;

    // No fleet administration namespace: both Alerts are reported.
    let (code, stdout) = herald(&["validate", folder]);
    assert_eq!(code, Some(1), "{stdout}");
    for alert in ["Alert/flux-system/fleet", "Alert/team-a/fleet"] {
        assert!(
            stdout.lines().any(|l| l.contains(alert)
                && l.contains(star)
                && l.contains("--fleet-admin-namespace")),
            "{alert}: {stdout}"
        );
    }
    assert!(!stdout.contains("namespaces: all"), "{stdout}");

    // flux-system is one: its Alert covers all namespaces, the tenant's is
    // still reported.
    let (code, stdout) = herald(&[
        "validate",
        folder,
        "--fleet-admin-namespace",
        "flux-system,platform",
    ]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains(
            "Alert/flux-system/fleet: namespaces: all, for Kustomization/* \
             (fleet administration namespace flux-system)"
        ),
        "{stdout}"
    );
    assert!(
        !stdout.contains(&format!("Alert/flux-system/fleet: {star}")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("Alert/team-a/fleet: {star}")),
        "{stdout}"
    );

    // Repeated, and from the environment: both are fine.
    let (code, stdout) = herald(&[
        "validate",
        folder,
        "--fleet-admin-namespace",
        "flux-system",
        "--fleet-admin-namespace",
        "team-a",
    ]);
    assert_eq!(code, Some(0), "{stdout}");
    let env = Command::new(HERALD)
        .args(["validate", folder])
        .env("HERALD_FLEET_ADMIN_NAMESPACES", "flux-system,team-a")
        .output()
        .expect("run herald");
    assert_eq!(env.status.code(), Some(0), "{env:?}");

    // The dry run says why the administrator's Alert hears team-b and the
    // tenant's does not.
    let (code, stdout) = herald(&[
        "route",
        "--dry-run",
        event.to_str().unwrap(),
        "--config-dir",
        folder,
        "--fleet-admin-namespace",
        "flux-system",
    ]);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(
        stdout.contains(
            "Alert/flux-system/fleet: matched: eventSources[0] (Kustomization/*) selects it in \
             namespace team-b: namespace \"*\" hears all namespaces, as flux-system is a fleet \
             administration namespace"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("Alert/team-a/fleet: not matched: no event source selects it: eventSources[0] (Kustomization/*): namespace \"*\" (all namespaces) is only for Alerts in a fleet administration namespace (--fleet-admin-namespace), and team-a is not one"),
        "{stdout}"
    );

    // Every command that builds a catalog takes the flag, and the router's
    // help says --no-cross-namespace-refs does not deny these sources.
    for command in ["router", "sender", "standalone", "validate", "get"] {
        let (_, help) = herald(&[command, "--help"]);
        assert!(
            help.contains("--fleet-admin-namespace <NS>"),
            "{command}: {help}"
        );
    }
    let (_, help) = herald(&["router", "--help"]);
    assert!(
        help.contains(
            "Not the `namespace: \"*\"` sources of Alerts in a `--fleet-admin-namespace`"
        ),
        "{help}"
    );
}
