//! `/metrics` as scrapers read it: the Prometheus text format (checked by
//! `promtool check metrics`) unless OpenMetrics is asked for, with the
//! metrics a delivery dashboard needs moving under real traffic; and the
//! Grafana dashboard, the alerting rules and docker-compose's Prometheus
//! naming only metrics Herald exposes.
//!
//! promtool comes from Debian's `prometheus` package (`scripts/promtool.sh`
//! installs it), or `HERALD_PROMTOOL`.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use herald_tests::fake::{FakeServer, Reply};
use herald_tests::fixtures::{Alert, Event, Provider};
use herald_tests::herald::{Options, TestHerald, config_dir};
use herald_tests::nats::TestNats;
use serde_json::Value;

/// What Prometheus 2.x sends unless told to scrape one protocol.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the repository")
        .to_path_buf()
}

fn promtool() -> PathBuf {
    if let Some(path) = std::env::var_os("HERALD_PROMTOOL") {
        return PathBuf::from(path);
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("promtool"))
            .find(|path| path.is_file())
    });
    found.unwrap_or_else(|| {
        panic!("promtool is needed: run scripts/promtool.sh, or set HERALD_PROMTOOL")
    })
}

/// Runs promtool with `args`, `stdin` on its standard input; its output.
fn run_promtool(args: &[&str], stdin: &str) -> (bool, String) {
    use std::io::Write as _;
    let mut child = Command::new(promtool())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write to promtool");
    let output = child.wait_with_output().expect("promtool ends");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

fn event(message: &str) -> Event {
    Event::new("Kustomization", "apps", "app")
        .severity("error")
        .reason("Failed")
        .message(message)
}

/// The value of the series `series` (exactly that name and labels).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// The metric names a Prometheus text exposition offers to queries: every
/// family's name, with `_bucket`, `_sum` and `_count` for histograms.
fn exposed_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
        names.insert(name.to_owned());
        if kind == "histogram" {
            for suffix in ["_bucket", "_sum", "_count"] {
                names.insert(format!("{name}{suffix}"));
            }
        }
    }
    names
}

/// Every `herald_…` metric name in a PromQL expression (outside quotes).
fn referenced_names(expr: &str) -> Vec<String> {
    let mut unquoted = String::with_capacity(expr.len());
    let (mut quoted, mut escaped) = (false, false);
    for c in expr.chars() {
        match (quoted, escaped, c) {
            (true, true, _) => escaped = false,
            (true, false, '\\') => escaped = true,
            (_, _, '"') => {
                quoted = !quoted;
                unquoted.push(' ');
            }
            (true, false, _) => {}
            (false, _, c) => unquoted.push(c),
        }
    }
    let mut names = Vec::new();
    let mut rest = unquoted.as_str();
    while let Some(at) = rest.find("herald_") {
        let preceded = rest[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(tail.len());
        if !preceded {
            names.push(tail[..end].to_owned());
        }
        rest = &tail[end..];
    }
    names
}

/// Every string under a key `key` in a JSON document.
fn strings_under(value: &Value, key: &str, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if k == key
                    && let Some(s) = v.as_str()
                {
                    out.push(s.to_owned());
                }
                strings_under(v, key, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| strings_under(v, key, out)),
        _ => {}
    }
}

fn dashboard() -> Value {
    let path = repository().join("deploy/helm/herald/files/herald-dashboard.json");
    serde_json::from_str(&std::fs::read_to_string(&path).expect("the dashboard"))
        .expect("the dashboard is JSON")
}

fn rules_text() -> String {
    std::fs::read_to_string(repository().join("deploy/helm/herald/files/herald-rules.yaml"))
        .expect("the rules")
}

fn rules() -> Value {
    serde_saphyr::from_str(&rules_text()).expect("the rules are YAML")
}

/// Every PromQL expression of the dashboard (targets and variables).
fn dashboard_exprs() -> Vec<String> {
    let dashboard = dashboard();
    let mut exprs = Vec::new();
    strings_under(&dashboard, "expr", &mut exprs);
    let mut queries = Vec::new();
    strings_under(&dashboard["templating"], "query", &mut queries);
    exprs.extend(queries.into_iter().filter(|q| q.contains("herald_")));
    exprs
}

/// (alert, expr) of every alerting rule.
fn rule_exprs() -> Vec<(String, String)> {
    let rules = rules();
    let mut out = Vec::new();
    for group in rules["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            let name = rule["alert"]
                .as_str()
                .or_else(|| rule["record"].as_str())
                .expect("alert or record")
                .to_owned();
            out.push((name, rule["expr"].as_str().expect("expr").to_owned()));
        }
    }
    out
}

#[tokio::test]
async fn a_live_metrics_page_passes_promtool_and_has_every_name_the_dashboard_and_alerts_use() {
    let nats = TestNats::start().await;
    let ok = FakeServer::webhook().await;
    let flaky = FakeServer::webhook().await;
    let broken = FakeServer::webhook().await;
    let slack = FakeServer::slack().await;
    // Fails once, then delivers: one retry, one delivered.
    flaky.script([Reply::status(500)]);
    // Always fails: retried, then dead after the attempts.
    broken.set_default(Some(Reply::status(500)));
    let mut manifests = String::new();
    for (name, provider_type, address) in [
        ("ok", "generic", ok.url("/hook")),
        ("flaky", "generic", flaky.url("/hook")),
        ("broken", "generic", broken.url("/hook")),
        ("chat", "slack", slack.url("/services/T/B/X")),
    ] {
        manifests.push_str(&format!(
            "{}{}",
            Provider::new("apps", name, provider_type).address(&address),
            Alert::new("apps", name, name).source("Kustomization", "*")
        ));
    }
    // The router dead-letters what this Alert matches: no such Provider.
    manifests.push_str(
        &Alert::new("apps", "ghost", "nowhere")
            .source("Kustomization", "*")
            .to_string(),
    );
    // A catalog problem: a Provider of a type that does not exist.
    manifests.push_str(
        &Provider::new("apps", "odd", "carrier-pigeon")
            .address("http://127.0.0.1:9/")
            .to_string(),
    );
    let dir = config_dir(&manifests);
    let mut options = Options::default();
    options.sender_args.max_attempts = 2;
    options.sender_args.retry_base = Duration::from_millis(100);
    options.sender_args.retry_max = Duration::from_millis(200);
    let herald = TestHerald::start_with(nats.url(), dir.path(), options).await;
    // Two events: Slack's pace (one a second per channel) makes the second wait.
    for message in ["first", "second"] {
        assert_eq!(herald.post(event(message)).await.0, 202);
    }
    ok.wait_for(2).await;
    slack.wait_for(2).await;
    // A duplicate (the same request again) and a refused request.
    assert_eq!(herald.post(event("first")).await.0, 202);
    assert_eq!(herald.post("not an event").await.0, 400);
    // What needs an edge, TLS, a full stream, a suspended Provider or an
    // oversize event is driven by other suites: its families are made here
    // (at zero) so that their names are on the page.
    touch_other_families(&herald.metrics);

    let http = reqwest::Client::new();
    let scrape = |accept: Option<&'static str>| {
        let http = http.clone();
        let url = herald.admin_url("/metrics");
        async move {
            let mut request = http.get(url);
            if let Some(accept) = accept {
                request = request.header("accept", accept);
            }
            let response = request.send().await.ok()?;
            let content_type = response
                .headers()
                .get("content-type")?
                .to_str()
                .ok()?
                .to_owned();
            Some((content_type, response.text().await.ok()?))
        }
    };
    // Everything counted, and the dead letters sampled (every 5 s).
    let expected = [
        r#"herald_deliveries_total{provider_type="generic",outcome="delivered",cluster="test"} 4"#,
        r#"herald_deliveries_total{provider_type="generic",outcome="dead",cluster="test"} 2"#,
        r#"herald_delivery_attempts_total{provider_type="generic",outcome="retry",cluster="test"} 3"#,
        r#"herald_provider_deliveries_total{provider_namespace="apps",provider_name="chat",provider_type="slack",outcome="delivered"} 2"#,
        r#"herald_router_dead_letters_total{reason="provider_missing"} 2"#,
        "herald_dead_letters 4",
        r#"herald_events_duplicate_total{reason="retried_request",cluster="test"} 1"#,
        r#"herald_events_rejected_total{reason="invalid_event"} 1"#,
    ];
    let deadline = tokio::time::Instant::now() + herald_tests::patience();
    let text = loop {
        let (_, text) = scrape(None).await.expect("scrape");
        let missing: Vec<_> = expected
            .iter()
            .filter(|line| !text.lines().any(|l| l == **line))
            .collect();
        if missing.is_empty() {
            break text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not counted: {missing:?} in\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // What a dashboard reads, as a scraper sees it.
    for (series, expected) in [
        (
            r#"herald_provider_attempts_total{provider_namespace="apps",provider_name="flaky",provider_type="generic",outcome="retry"}"#,
            1.0,
        ),
        (
            r#"herald_provider_attempts_total{provider_namespace="apps",provider_name="flaky",provider_type="generic",outcome="delivered"}"#,
            2.0,
        ),
        (
            r#"herald_provider_attempts_total{provider_namespace="apps",provider_name="broken",provider_type="generic",outcome="dead"}"#,
            2.0,
        ),
        (
            r#"herald_provider_deliveries_total{provider_namespace="apps",provider_name="broken",provider_type="generic",outcome="dead"}"#,
            2.0,
        ),
        (
            r#"herald_delivery_attempts_total{provider_type="generic",outcome="delivered",cluster="test"}"#,
            4.0,
        ),
        ("herald_nats_connected", 1.0),
        (
            r#"herald_delivery_latency_seconds_count{provider_type="slack",cluster="test"}"#,
            2.0,
        ),
    ] {
        assert_eq!(value(&text, series), Some(expected), "{series} in\n{text}");
    }
    assert!(
        value(&text, r#"herald_catalog_problems{severity="error"}"#).unwrap_or(0.0) >= 1.0,
        "the Provider of no known type is a catalog problem:\n{text}"
    );
    let waited = value(
        &text,
        r#"herald_pacing_waits_total{provider_type="slack",outcome="waited"}"#,
    )
    .unwrap_or(0.0)
        + value(
            &text,
            r#"herald_pacing_waits_total{provider_type="slack",outcome="requeued"}"#,
        )
        .unwrap_or(0.0);
    assert!(waited >= 1.0, "the second Slack message waited:\n{text}");
    assert!(
        text.contains(r#"herald_delivery_latency_seconds_bucket{le="86400.0",provider_type="slack",cluster="test"} 2"#),
        "latency buckets reach a day (the default --max-age):\n{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("herald_build_info{version=\"")
                && l.contains(",commit=\"")
                && l.ends_with("\"} 1")),
        "{text}"
    );

    // A plain scraper gets the Prometheus text format, which promtool reads.
    let (content_type, plain) = scrape(None).await.expect("scrape");
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    assert!(!plain.contains("# EOF"), "{plain}");
    assert!(
        plain.contains("# TYPE herald_deliveries_total counter"),
        "{plain}"
    );
    let (passed, report) = run_promtool(&["check", "metrics"], &plain);
    assert!(passed, "promtool check metrics:\n{report}\non\n{plain}");
    let (_, curl_like) = scrape(Some("*/*")).await.expect("scrape");
    assert!(!curl_like.contains("# EOF"));
    // One that asks for OpenMetrics (Prometheus by default) gets it.
    let (content_type, openmetrics) = scrape(Some(PROMETHEUS_ACCEPT)).await.expect("scrape");
    assert!(
        content_type.starts_with("application/openmetrics-text; version=1.0.0"),
        "{content_type}"
    );
    assert!(openmetrics.ends_with("# EOF\n"), "{openmetrics}");
    assert!(
        openmetrics.contains("# TYPE herald_deliveries counter"),
        "{openmetrics}"
    );
    // (Which promtool refuses: the check above would catch OpenMetrics.)
    assert!(!run_promtool(&["check", "metrics"], &openmetrics).0);

    // Every name the dashboard and the alerts query is one Herald exposes.
    let exposed = exposed_names(&plain);
    let mut missing = Vec::new();
    let exprs = dashboard_exprs();
    assert!(exprs.len() >= 20, "the dashboard's queries: {exprs:?}");
    for expr in &exprs {
        for name in referenced_names(expr) {
            if !exposed.contains(&name) {
                missing.push(format!("dashboard: {name} in {expr}"));
            }
        }
    }
    for (alert, expr) in rule_exprs() {
        let names = referenced_names(&expr);
        assert!(
            !names.is_empty(),
            "{alert} queries no Herald metric: {expr}"
        );
        for name in names {
            if !exposed.contains(&name) {
                missing.push(format!("rule {alert}: {name} in {expr}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "not exposed by Herald:\n{}\n\nexposed: {exposed:?}",
        missing.join("\n")
    );
    herald.shutdown().await;
}

fn touch_other_families(metrics: &herald_runtime::Metrics) {
    use herald_runtime::budget::StreamLabels;
    use herald_runtime::metrics::{
        EdgeLabels, OutcomeOnlyLabels, ReasonClusterLabels, ReasonLabels,
    };
    metrics
        .oversize
        .get_or_create(&ReasonLabels {
            reason: "router".to_owned(),
        })
        .inc_by(0);
    metrics
        .budget_refusals
        .get_or_create(&StreamLabels {
            stream: "HERALD_EVENTS".to_owned(),
        })
        .inc_by(0);
    metrics
        .edge_linked
        .get_or_create(&EdgeLabels {
            edge: "edge".to_owned(),
        })
        .set(0);
    metrics
        .tls_reloads
        .get_or_create(&OutcomeOnlyLabels {
            outcome: "failed".to_owned(),
        })
        .inc_by(0);
    metrics
        .deliveries_skipped
        .get_or_create(&ReasonClusterLabels {
            reason: "provider_suspended".to_owned(),
            cluster: "test".to_owned(),
        })
        .inc_by(0);
}

#[test]
fn the_alerting_rules_pass_promtool_and_each_has_a_runbook() {
    // The file as the chart reads it (a `groups:` document) is a valid rule file.
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("herald-rules.yaml");
    std::fs::write(&path, rules_text()).expect("write");
    let (passed, report) = run_promtool(&["check", "rules", path.to_str().expect("path")], "");
    assert!(passed, "promtool check rules:\n{report}");
    // The key alerts fire on the series Herald exports, and only then.
    let tests = dir.path().join("herald-rules-test.yaml");
    std::fs::copy(
        repository().join("tests/fixtures/herald-rules-test.yaml"),
        &tests,
    )
    .expect("copy the rule tests");
    let (passed, report) = run_promtool(&["test", "rules", tests.to_str().expect("path")], "");
    assert!(passed, "promtool test rules:\n{report}");

    let rules = rules();
    let mut alerts = HashMap::new();
    for group in rules["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            let Some(alert) = rule["alert"].as_str() else {
                continue;
            };
            let annotations = &rule["annotations"];
            for key in ["summary", "description", "runbook_url"] {
                assert!(
                    annotations[key].as_str().is_some_and(|s| !s.is_empty()),
                    "{alert} has no {key}"
                );
            }
            let runbook = annotations["runbook_url"].as_str().expect("runbook_url");
            let anchor = runbook
                .split_once("README.md#")
                .map(|(_, anchor)| anchor)
                .unwrap_or_else(|| panic!("{alert}: the runbook is a README anchor: {runbook}"));
            assert_eq!(
                anchor,
                alert.to_ascii_lowercase(),
                "{alert}: the README anchor is the alert's name (a heading `#### {alert}`)"
            );
            assert!(
                ["critical", "warning", "info"]
                    .contains(&rule["labels"]["severity"].as_str().unwrap_or_default()),
                "{alert} has a severity"
            );
            alerts.insert(alert.to_owned(), rule["expr"].as_str().map(str::to_owned));
        }
    }
    for alert in [
        "HeraldDeadLettersGrowing",
        "HeraldProviderFailing",
        "HeraldConsumerLag",
        "HeraldCatalogProblems",
        "HeraldNatsUnavailable",
        "HeraldBudgetNearlyFull",
    ] {
        assert!(alerts.contains_key(alert), "{alert} is missing");
    }
}

#[test]
fn the_dashboard_asks_for_its_datasource_and_every_panel_uses_it() {
    let dashboard = dashboard();
    assert!(dashboard["uid"].as_str().is_some_and(|u| !u.is_empty()));
    assert!(dashboard["schemaVersion"].as_u64().unwrap_or(0) >= 38);
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("variables");
    assert!(
        variables
            .iter()
            .any(|v| v["name"] == "datasource" && v["type"] == "datasource"),
        "a datasource variable"
    );
    let mut datasources = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        if panel["type"] == "row" {
            continue;
        }
        datasources.push(panel["datasource"]["uid"].clone());
        for target in panel["targets"].as_array().expect("targets") {
            datasources.push(target["datasource"]["uid"].clone());
        }
    }
    assert!(
        datasources.iter().all(|uid| uid == "${datasource}"),
        "{datasources:?}"
    );
}

#[test]
fn compose_publishes_the_admin_ports_and_provisions_prometheus_and_grafana() {
    let root = repository();
    let compose: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(root.join("docker-compose.yml")).expect("docker-compose.yml"),
    )
    .expect("docker-compose.yml is YAML");
    let services = compose["services"].as_object().expect("services");
    for service in ["prometheus", "grafana", "ingest", "router", "receiver"] {
        assert!(services.contains_key(service), "{service} in compose");
    }
    // Every file mounted from the repository exists.
    for (name, service) in services {
        for volume in service["volumes"].as_array().into_iter().flatten() {
            let volume = volume.as_str().expect("short volume syntax");
            if let Some(path) = volume.strip_prefix("./") {
                let path = path.split(':').next().expect("source");
                assert!(root.join(path).exists(), "{name} mounts ./{path}");
            }
        }
    }
    // The admin port (8080) of each Herald service is published; the
    // sender's through the receiver, whose network it shares.
    let published = |service: &str| -> Vec<String> {
        services[service]["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p.as_str().map(str::to_owned))
            .collect()
    };
    for service in ["ingest", "router", "receiver"] {
        assert!(
            published(service).iter().any(|p| p.ends_with(":8080")),
            "{service} publishes an admin port: {:?}",
            published(service)
        );
    }
    // Prometheus's configuration is valid, loads the rules and scrapes the three.
    let config_dir = tempfile::tempdir().expect("temp dir");
    let config = root.join("deploy/compose/prometheus.yml");
    let text = std::fs::read_to_string(&config).expect("prometheus.yml");
    for target in ["ingest:8080", "router:8080", "receiver:8080"] {
        assert!(text.contains(target), "Prometheus scrapes {target}");
    }
    std::fs::write(config_dir.path().join("prometheus.yml"), &text).expect("write");
    std::fs::write(config_dir.path().join("herald-rules.yaml"), rules_text()).expect("write");
    let copied = config_dir.path().join("prometheus.yml");
    let (passed, report) = run_promtool(&["check", "config", copied.to_str().expect("path")], "");
    assert!(passed, "promtool check config:\n{report}");
    // Grafana's provisioning names the dashboard it is given.
    let provider = std::fs::read_to_string(root.join("deploy/compose/grafana/dashboards.yaml"))
        .expect("dashboards.yaml");
    assert!(
        provider.contains("/var/lib/grafana/dashboards"),
        "{provider}"
    );
    assert!(
        services["grafana"]["volumes"]
            .as_array()
            .expect("grafana volumes")
            .iter()
            .any(|v| v.as_str().is_some_and(|v| v.starts_with(
                "./deploy/helm/herald/files/herald-dashboard.json:/var/lib/grafana/dashboards/"
            ))),
        "Grafana gets the chart's dashboard"
    );
}

#[test]
fn promql_names_are_found() {
    assert_eq!(
        referenced_names(
            "sum by (x) (rate(herald_a_total{y=\"herald_z\"}[5m])) / herald_b:c + not_herald_d"
        ),
        vec!["herald_a_total", "herald_b:c"]
    );
}
