//! The read commands of the `herald` binary against a real nats-server on
//! which Herald delivered, retried and dead-lettered: `get alerts`, `get
//! providers`, `status` and `dlq list`/`show`, as tables, JSON and YAML.

use std::process::Output;

use herald_proto::names;
use herald_tests::fake::{FakeServer, Reply};
use herald_tests::herald::{TestHerald, config_dir};
use herald_tests::nats::TestNats;
use serde_json::Value;

const HERALD: &str = env!("CARGO_BIN_EXE_herald");

/// Runs `herald args…` with none of the operator's HERALD_* settings.
async fn herald(args: &[&str]) -> Output {
    tokio::process::Command::new(HERALD)
        .args(args)
        .env_remove("HERALD_NATS_URL")
        .env_remove("HERALD_NATS_CREDS")
        .env_remove("HERALD_JETSTREAM_DOMAIN")
        .env_remove("HERALD_CATALOG")
        .env_remove("HERALD_CONFIG_DIR")
        .output()
        .await
        .expect("run herald")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("utf-8")
}

fn json(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(output)))
}

/// The item `namespace/name` of a `get -o json` list.
fn item<'a>(list: &'a Value, name: &str) -> &'a Value {
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| i["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {list}"))
}

/// Two Providers, one answering 503 once then accepting, one refusing with
/// 401 for good; an Alert on each, and one naming a Provider that does not
/// exist.
fn catalog(good: &FakeServer, bad: &FakeServer) -> tempfile::TempDir {
    let header = "apiVersion: notification.toolkit.fluxcd.io/v1beta3";
    config_dir(&format!(
        "{header}\nkind: Provider\nmetadata: {{name: hook, namespace: apps}}\nspec: {{type: generic, address: '{}'}}\n---\n\
         {header}\nkind: Provider\nmetadata: {{name: broken, namespace: apps}}\nspec: {{type: generic, address: '{}'}}\n---\n\
         {header}\nkind: Alert\nmetadata: {{name: all, namespace: apps}}\nspec: {{providerRef: {{name: hook}}, eventSources: [{{kind: Kustomization, name: '*'}}]}}\n---\n\
         {header}\nkind: Alert\nmetadata: {{name: fails, namespace: apps}}\nspec: {{providerRef: {{name: broken}}, eventSources: [{{kind: Kustomization, name: '*'}}]}}\n---\n\
         {header}\nkind: Alert\nmetadata: {{name: orphan, namespace: apps}}\nspec: {{providerRef: {{name: nope}}, eventSources: [{{kind: GitRepository, name: '*'}}]}}\n",
        good.url("/hook"),
        bad.url("/hook"),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_status_and_dlq_read_what_herald_did() {
    herald_tests::init();
    let nats = TestNats::start().await;
    let url = nats.url().to_owned();
    let good = FakeServer::webhook().await;
    good.script([Reply::status(503)]);
    let bad = FakeServer::webhook().await;
    bad.set_default(Some(Reply::status(401)));
    let dir = catalog(&good, &bad);
    let config = dir.path().to_str().unwrap().to_owned();
    let services = TestHerald::start(&url, dir.path()).await;
    let body = r#"{"involvedObject":{"kind":"Kustomization","namespace":"apps","name":"web","apiVersion":"kustomize.toolkit.fluxcd.io/v1"},
                   "severity":"error","message":"apply failed","reason":"BuildFailed","reportingController":"kustomize-controller",
                   "timestamp":"2024-01-01T00:00:00Z"}"#;
    assert_eq!(services.post(body).await.0, 202);
    let requests = good.wait_for(2).await;
    assert_eq!((requests[0].answered, requests[1].answered), (503, 200));

    // The records are merged about once a second: wait for all three outcomes.
    let providers = herald_tests::eventually("the records hold every outcome", || async {
        let output = herald(&[
            "get",
            "providers",
            "-o",
            "json",
            "--config-dir",
            &config,
            "--nats-url",
            &url,
        ])
        .await;
        let list = json(&output);
        let (hook, broken) = (item(&list, "hook"), item(&list, "broken"));
        (hook["delivered"] == 1 && hook["retried"] == 1 && broken["dead"] == 1).then_some(list)
    })
    .await;
    assert_eq!(providers["kind"], "Provider");
    assert!(providers.get("records_error").is_none(), "{providers}");
    let hook = item(&providers, "hook");
    assert_eq!(
        (&hook["namespace"], &hook["provider_type"], &hook["ready"]),
        (
            &Value::from("apps"),
            &Value::from("generic"),
            &Value::from(true)
        )
    );
    assert_eq!(hook["last_delivery"]["outcome"], "delivered");
    assert_eq!(hook["last_status"], 503, "the failure before: {hook}");
    let broken = item(&providers, "broken");
    assert_eq!(broken["last_delivery"]["outcome"], "failed");
    assert_eq!(broken["last_status"], 401);
    assert!(
        broken["last_error"].as_str().unwrap().contains("401"),
        "{broken}"
    );

    // Alerts: the same records, and the catalog's problem for the orphan.
    let alerts = json(
        &herald(&[
            "get",
            "alerts",
            "--nats-url",
            &url,
            "--config-dir",
            &config,
            "--output",
            "json",
        ])
        .await,
    );
    assert_eq!(alerts["kind"], "Alert");
    let all = item(&alerts, "all");
    assert_eq!(
        (&all["delivered"], &all["retried"], &all["dead"]),
        (&Value::from(1), &Value::from(1), &Value::from(0))
    );
    assert_eq!(all["provider"], "hook");
    assert_eq!(item(&alerts, "fails")["dead"], 1);
    let orphan = item(&alerts, "orphan");
    assert_eq!(orphan["ready"], false);
    assert!(
        orphan["problems"][0]
            .as_str()
            .unwrap()
            .contains("names the Provider apps/nope, which does not exist"),
        "{orphan}"
    );

    // The table, like kubectl get.
    let table = herald(&["get", "alerts", "--config-dir", &config, "--nats-url", &url]).await;
    assert!(table.status.success(), "{table:?}");
    let text = stdout(&table);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("NAMESPACE  NAME    PROVIDER  READY  LAST DELIVERY"),
        "{text}"
    );
    assert!(
        lines[0].contains("OUTCOME       DELIVERED  RETRIED  DEAD  LAST ERROR"),
        "{text}"
    );
    assert!(lines[0].ends_with("  STATUS"), "{text}");
    let row = |name: &str| {
        let row = lines
            .iter()
            .find(|l| l.split_whitespace().nth(1) == Some(name))
            .unwrap_or_else(|| panic!("no row {name}: {text}"));
        row.split_whitespace().collect::<Vec<_>>()
    };
    assert_eq!(&row("all")[..4], ["apps", "all", "hook", "True"]);
    assert!(row("all").contains(&"delivered"), "{text}");
    assert_eq!(&row("orphan")[..4], ["apps", "orphan", "nope", "False"]);
    let orphan = lines.iter().find(|l| l.contains("orphan")).unwrap();
    assert!(
        orphan.ends_with(
            "  config.yaml:21: spec.providerRef names the Provider apps/nope, which does not exist; its events bec…"
        ),
        "{text}"
    );
    assert!(text.contains("failed (401)"), "{text}");

    // YAML: the same document.
    let yaml = herald(&[
        "get",
        "providers",
        "-o",
        "yaml",
        "--config-dir",
        &config,
        "--nats-url",
        &url,
    ])
    .await;
    assert!(yaml.status.success(), "{yaml:?}");
    let parsed: Value = serde_saphyr::from_str(&stdout(&yaml)).expect("YAML parses");
    assert_eq!(parsed, providers);

    // Dead letters, with the NATS flags after the subcommand.
    let letters = json(&herald(&["dlq", "list", "--nats-url", &url, "-o", "json"]).await);
    let items = letters["items"].as_array().unwrap();
    let dead = items
        .iter()
        .find(|l| l["provider"]["name"] == "broken")
        .unwrap_or_else(|| panic!("no dead letter for broken: {letters}"));
    assert_eq!(
        (
            &dead["provider_type"],
            &dead["last_status"],
            &dead["alert"]["name"]
        ),
        (
            &Value::from("generic"),
            &Value::from(401),
            &Value::from("fails")
        )
    );
    let sequence = dead["sequence"].as_u64().unwrap().to_string();
    let shown = json(&herald(&["dlq", "show", &sequence, "-o", "json", "--nats-url", &url]).await);
    assert_eq!(shown["event"]["involvedObject"]["name"], "web");
    assert_eq!(shown["reason"], dead["reason"]);
    let shown_yaml = herald(&["dlq", "--nats-url", &url, "show", &sequence, "-o", "yaml"]).await;
    let parsed: Value = serde_saphyr::from_str(&stdout(&shown_yaml)).expect("YAML parses");
    assert_eq!(parsed, shown);
    let table = herald(&[
        "dlq",
        "list",
        "--nats-url",
        &url,
        "--provider",
        "apps/broken",
    ])
    .await;
    let text = stdout(&table);
    assert!(text.starts_with("SEQ  DEAD AT"), "{text}");
    assert!(text.contains("generic apps/broken  apps/fails"), "{text}");

    // Status: healthy, every stream, consumer and bucket with its numbers.
    let status = herald(&["status", "--nats-url", &url]).await;
    let text = stdout(&status);
    assert!(
        status.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&status.stderr)
    );
    for part in [
        "HERALD_EVENTS",
        "HERALD_DELIVERIES",
        "HERALD_DEAD",
        "herald-router",
        "herald-sender",
        "HERALD_OBJECTS",
        "Dead letters: ",
        "Healthy.",
    ] {
        assert!(text.contains(part), "{part}: {text}");
    }
    let status = json(&herald(&["status", "-o", "json", "--nats-url", &url]).await);
    assert_eq!(status["healthy"], true, "{status}");
    assert_eq!(status["nats"]["reachable"], true);
    assert!(status["nats"]["server_name"].is_string(), "{status}");
    assert!(status["nats"]["jetstream"]["streams"].as_u64().unwrap() >= 3);
    let streams = status["streams"].as_array().unwrap();
    let events = streams
        .iter()
        .find(|s| s["name"] == "HERALD_EVENTS")
        .unwrap();
    assert_eq!(
        (&events["exists"], &events["messages"], &events["health"]),
        (&Value::from(true), &Value::from(1), &Value::from("ok"))
    );
    assert_eq!(events["max_bytes"], 1u64 << 30, "the default budget");
    assert!(events["budget_used_percent"].is_number());
    assert_eq!(events["replicas"], 1);
    let consumers = status["consumers"].as_array().unwrap();
    for consumer in consumers {
        assert_eq!(consumer["exists"], true, "{consumer}");
        assert_eq!(consumer["pending"], 0, "{consumer}");
        assert!(consumer["waiting"].is_number(), "{consumer}");
    }
    assert!(
        status["dead_letters"]["count"].as_u64().unwrap() >= 1,
        "{status}"
    );
    assert!(status["dead_letters"]["oldest"].is_string(), "{status}");
    let objects = status["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == names::OBJECTS_BUCKET)
        .unwrap();
    assert_eq!(objects["exists"], true);
    // Two Alerts and two Providers have a record.
    assert!(objects["entries"].as_u64().unwrap() >= 4, "{objects}");
    let yaml = herald(&["status", "--nats-url", &url, "-o", "yaml"]).await;
    let parsed: Value = serde_saphyr::from_str(&stdout(&yaml)).expect("YAML parses");
    assert_eq!(parsed["healthy"], true);

    // Credentials in the URL are used, never printed.
    let port = url.rsplit(':').next().unwrap();
    let with_secret = format!("nats://herald:s3cr3t-pw@127.0.0.1:{port}");
    for args in [
        &["status", "-o", "json", "--nats-url", &with_secret][..],
        &["status", "--nats-url", &with_secret][..],
    ] {
        let output = herald(args).await;
        for text in [
            stdout(&output),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        ] {
            assert!(!text.contains("s3cr3t-pw"), "{text}");
        }
    }

    // A stream gone: unhealthy, and why.
    services.shutdown().await;
    nats.jetstream()
        .await
        .delete_stream(names::DEAD_STREAM)
        .await
        .expect("delete HERALD_DEAD");
    let status = herald(&["status", "-o", "json", "--nats-url", &url]).await;
    assert_eq!(status.status.code(), Some(1), "{status:?}");
    let value: Value = serde_json::from_slice(&status.stdout).expect("JSON");
    assert_eq!(value["healthy"], false);
    assert!(
        value["problems"][0]
            .as_str()
            .unwrap()
            .contains("stream HERALD_DEAD does not exist"),
        "{value}"
    );
    assert!(
        String::from_utf8_lossy(&status.stderr)
            .contains("unhealthy: stream HERALD_DEAD does not exist"),
        "{status:?}"
    );
}

#[tokio::test]
async fn without_nats_status_fails_and_get_shows_the_catalog() {
    herald_tests::init();
    let nobody = format!("nats://127.0.0.1:{}", herald_tests::process::free_port());
    let status = herald(&["status", "--nats-url", &nobody]).await;
    assert_eq!(status.status.code(), Some(1), "{status:?}");
    let stderr = String::from_utf8_lossy(&status.stderr);
    assert!(stderr.contains("unhealthy: cannot reach NATS"), "{stderr}");
    assert!(stdout(&status).contains("Unhealthy:"));
    let status = herald(&["status", "-o", "json", "--nats-url", &nobody]).await;
    assert_eq!(status.status.code(), Some(1));
    let value: Value = serde_json::from_slice(&status.stdout).expect("JSON");
    assert_eq!(
        (&value["healthy"], &value["nats"]["reachable"]),
        (&Value::from(false), &Value::from(false))
    );

    // The catalog side still shows, with a word on stderr.
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/config");
    let get = herald(&[
        "get",
        "providers",
        "--config-dir",
        examples,
        "--nats-url",
        &nobody,
    ])
    .await;
    assert!(get.status.success(), "{get:?}");
    assert!(
        String::from_utf8_lossy(&get.stderr).contains("cannot read HERALD_OBJECTS"),
        "{get:?}"
    );
    let text = stdout(&get);
    assert!(
        text.lines().count() >= 3,
        "a header and the examples' Providers: {text}"
    );
    let list = json(
        &herald(&[
            "get",
            "provider",
            "-o",
            "json",
            "--config-dir",
            examples,
            "--nats-url",
            &nobody,
        ])
        .await,
    );
    assert!(list["records_error"].is_string(), "{list}");
    assert!(
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["ready"] == true),
        "{list}"
    );

    // The NATS flags are taken after a dlq subcommand too (the connection fails, not the parse).
    for args in [
        &["dlq", "list", "--nats-url", &nobody][..],
        &["dlq", "show", "1", "--nats-url", &nobody, "-o", "yaml"][..],
        &["dlq", "purge", "--all", "--nats-url", &nobody][..],
    ] {
        let output = herald(args).await;
        assert_eq!(output.status.code(), Some(1), "{args:?}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("cannot connect to NATS"),
            "{args:?}: {stderr}"
        );
    }
}

/// On a 3-node cluster `status` shows each stream's replicas and leader;
/// a node lost makes it unhealthy, naming the replicas it held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_on_a_cluster_names_a_lost_replica() {
    herald_tests::init();
    let mut cluster = herald_tests::nats_cluster::TestCluster::start().await;
    let urls = cluster.urls();
    let hook = FakeServer::webhook().await;
    let dir = herald_tests::herald::hook_catalog(&hook.url("/hook"));
    let options = herald_tests::herald::Options {
        stream_replicas: 3,
        ..herald_tests::herald::Options::default()
    };
    let services = TestHerald::start_with(&urls, dir.path(), options).await;

    let status = herald_tests::eventually("every replica is current", || async {
        let output = herald(&["status", "-o", "json", "--nats-url", &urls]).await;
        output
            .status
            .success()
            .then(|| serde_json::from_slice::<Value>(&output.stdout).expect("JSON"))
    })
    .await;
    assert!(status["nats"]["cluster"].is_string(), "{status}");
    for stream in status["streams"].as_array().unwrap() {
        assert_eq!(stream["replicas"], 3, "{stream}");
        let peers = stream["peers"].as_array().unwrap();
        assert_eq!(peers.len(), 3, "{stream}");
        assert_eq!(
            peers.iter().filter(|p| p["leader"] == true).count(),
            1,
            "{stream}"
        );
        assert_eq!(stream["leader"], peers[0]["name"], "{stream}");
    }

    // One node lost: its replicas are named, and the exit code says it.
    let lost = 2;
    let name = cluster.name(lost).to_owned();
    cluster.kill9(lost).await;
    // While the streams led by the lost node elect new leaders, a read may
    // time out first (unhealthy too); then its replicas are named.
    let (output, value) = herald_tests::eventually("the lost replicas are seen", || async {
        let output = herald(&["status", "-o", "json", "--nats-url", &urls]).await;
        let value: Value = serde_json::from_slice(&output.stdout).ok()?;
        let named = value["problems"].as_array().is_some_and(|problems| {
            problems.iter().any(|p| {
                p.as_str()
                    .is_some_and(|p| p.contains(&format!("replica {name} is")))
            })
        });
        (value["healthy"] == false && named).then_some((output, value))
    })
    .await;
    assert_eq!(output.status.code(), Some(1));
    let problems: Vec<&str> = value["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(
        problems
            .iter()
            .any(|p| p.contains(&format!("replica {name} is"))),
        "{problems:?}"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("herald status: unhealthy: "), "{stderr}");
    let table = herald(&["status", "--nats-url", &urls]).await;
    assert_eq!(table.status.code(), Some(1));
    assert!(stdout(&table).contains("Unhealthy:"), "{}", stdout(&table));
    services.shutdown().await;
}
