//! Proof under faults, with real processes: `kill -9` of each service in the
//! middle of a run, and SIGTERM of a standalone Herald; every event that
//! ingest answered 2xx is delivered.

use std::collections::{BTreeSet, HashMap};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt as _;
use herald_tests::fake::{FakeServer, Reply};
use herald_tests::nats::TestNats;
use tokio::process::{Child, Command};

const HERALD: &str = env!("CARGO_BIN_EXE_herald");

/// A herald service process that can be killed and started again.
struct Service {
    args: Vec<String>,
    envs: Vec<(String, String)>,
    child: Option<Child>,
}

impl Service {
    fn start(args: &[&str], envs: &[(&str, &str)]) -> Self {
        let mut service = Self {
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            envs: envs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            child: None,
        };
        service.spawn();
        service
    }

    fn spawn(&mut self) {
        let mut command = Command::new(HERALD);
        command
            .args(&self.args)
            .args([
                "--admin-listen",
                &format!("127.0.0.1:{}", herald_tests::process::free_port()),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        for (k, v) in &self.envs {
            command.env(k, v);
        }
        self.child = Some(command.spawn().expect("start a herald service"));
    }

    /// SIGKILL, as a crash or an OOM kill would.
    async fn kill_9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("kill -9");
        }
    }

    async fn restart(&mut self) {
        self.kill_9().await;
        self.spawn();
    }

    async fn sigterm(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        herald_tests::process::sigterm(child.id().expect("pid"));
        child.wait().await.expect("exit status")
    }
}

fn config(hook: &FakeServer) -> tempfile::TempDir {
    herald_tests::herald::hook_catalog(&hook.url("/hook"))
}

fn event(i: usize) -> String {
    format!(
        r#"{{"involvedObject":{{"kind":"Kustomization","namespace":"apps","name":"app","apiVersion":"kustomize.toolkit.fluxcd.io/v1"}},
            "severity":"info","message":"event {i}","reason":"Progressing","reportingController":"kustomize-controller",
            "timestamp":"2024-01-01T00:00:00Z"}}"#
    )
}

/// Posts `count` events like a Flux emitter would: retrying connection
/// errors and 5xx a few times, and recording the ones answered 202.
async fn load(port: u16, count: usize, accepted: Arc<Mutex<Vec<usize>>>) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let posts = futures::stream::iter(0..count).map(|i| {
        let http = http.clone();
        let accepted = accepted.clone();
        async move {
            for _ in 0..100 {
                match http
                    .post(format!("http://127.0.0.1:{port}/"))
                    .body(event(i))
                    .send()
                    .await
                {
                    Ok(r) if r.status() == 202 => {
                        accepted.lock().unwrap().push(i);
                        return;
                    }
                    Ok(r) => assert!(r.status().is_server_error(), "{}", r.status()),
                    Err(_) => {}
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    posts.buffer_unordered(16).collect::<Vec<()>>().await;
}

/// Waits until every accepted event reached the fake; returns how many
/// arrived more than once.
async fn all_delivered(hook: &FakeServer, accepted: &[usize]) -> usize {
    let wanted: BTreeSet<String> = accepted.iter().map(|i| format!("event {i}")).collect();
    herald_tests::eventually("every accepted event delivered", || async {
        let mut seen: HashMap<String, usize> = HashMap::new();
        for request in hook.requests() {
            if let Some(message) = request.json()["message"].as_str() {
                *seen.entry(message.to_owned()).or_default() += 1;
            }
        }
        let missing = wanted.iter().filter(|m| !seen.contains_key(*m)).count();
        (missing == 0).then(|| seen.values().map(|n| n - 1).sum())
    })
    .await
}

#[tokio::test]
async fn kill_9_of_each_service_mid_run_loses_nothing() {
    herald_tests::init();
    let nats = TestNats::start().await;
    let hook = FakeServer::webhook().await;
    hook.set_default(Some(Reply::status(200).delayed(Duration::from_millis(20))));
    let dir = config(&hook);
    let config_dir = dir.path().to_str().unwrap().to_owned();
    let envs = [
        ("HERALD_NATS_URL", nats.url()),
        ("HERALD_CONFIG_DIR", config_dir.as_str()),
        ("HERALD_SENDER_ACK_WAIT", "3s"),
        ("HERALD_ROUTER_ACK_WAIT", "3s"),
        ("HERALD_RETRY_BASE", "200ms"),
    ];
    let port = herald_tests::process::free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut ingest = Service::start(
        &["ingest", "--listen", &listen, "--grpc-listen", "off"],
        &envs,
    );
    let mut router = Service::start(&["router"], &envs);
    let mut sender = Service::start(&["sender", "--sender-concurrency", "32"], &envs);

    let accepted = Arc::new(Mutex::new(Vec::new()));
    let total = 2000;
    let run = tokio::spawn(load(port, total, accepted.clone()));
    let progress = |n: usize| {
        let accepted = accepted.clone();
        async move {
            herald_tests::eventually(&format!("{n} events accepted"), || async {
                (accepted.lock().unwrap().len() >= n).then_some(())
            })
            .await;
        }
    };
    progress(400).await;
    sender.restart().await;
    progress(900).await;
    router.restart().await;
    progress(1400).await;
    ingest.restart().await;
    run.await.unwrap();

    let accepted = accepted.lock().unwrap().clone();
    assert_eq!(
        accepted.len(),
        total,
        "the emitter's retries get every event in"
    );
    let duplicates = all_delivered(&hook, &accepted).await;
    println!(
        "kill -9 run: {} events accepted, 0 lost, {duplicates} delivered twice (in flight at a kill)",
        accepted.len()
    );
    assert!(
        duplicates <= 32 + 1,
        "duplicates bounded by what was in flight: {duplicates}"
    );
    drop((ingest, router, sender));
}

#[tokio::test]
async fn sigterm_mid_run_drains_within_the_grace_period_and_loses_nothing() {
    herald_tests::init();
    let nats = TestNats::start().await;
    let hook = FakeServer::webhook().await;
    hook.set_default(Some(Reply::status(200).delayed(Duration::from_millis(50))));
    let dir = config(&hook);
    let config_dir = dir.path().to_str().unwrap().to_owned();
    let envs = [
        ("HERALD_NATS_URL", nats.url()),
        ("HERALD_CONFIG_DIR", config_dir.as_str()),
        ("HERALD_SHUTDOWN_GRACE", "5s"),
        ("HERALD_SENDER_ACK_WAIT", "3s"),
        ("HERALD_ROUTER_ACK_WAIT", "3s"),
    ];
    let port = herald_tests::process::free_port();
    let listen = format!("127.0.0.1:{port}");
    let args = ["standalone", "--listen", &listen, "--grpc-listen", "off"];
    let mut herald = Service::start(&args, &envs);

    let accepted = Arc::new(Mutex::new(Vec::new()));
    let run = tokio::spawn(load(port, 600, accepted.clone()));
    herald_tests::eventually("a third of the run accepted", || async {
        (accepted.lock().unwrap().len() >= 200).then_some(())
    })
    .await;
    let stopping = tokio::time::Instant::now();
    let status = herald.sigterm().await;
    let took = stopping.elapsed();
    assert!(status.success(), "{status}");
    assert!(
        took < Duration::from_secs(8),
        "exited after {took:?}, grace is 5 s"
    );
    // A new process picks up what was left, and the emitter's retries resume.
    herald.spawn();
    run.await.unwrap();
    let accepted = accepted.lock().unwrap().clone();
    let duplicates = all_delivered(&hook, &accepted).await;
    println!(
        "SIGTERM run: {} accepted, 0 lost, {duplicates} delivered twice, stopped in {took:?}",
        accepted.len()
    );
    herald.sigterm().await;
}

/// Starts `herald standalone` on `nats_url` with a 2 s grace; returns the
/// process and its admin port.
fn standalone_on(nats_url: &str, config_dir: &std::path::Path) -> (Child, u16) {
    let admin = herald_tests::process::free_port();
    let child = Command::new(HERALD)
        .args([
            "standalone",
            "--grpc-listen",
            "off",
            "--shutdown-grace",
            "2s",
        ])
        .args([
            "--listen",
            &format!("127.0.0.1:{}", herald_tests::process::free_port()),
        ])
        .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
        .arg("--config-dir")
        .arg(config_dir)
        .env("HERALD_NATS_URL", nats_url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start herald standalone");
    (child, admin)
}

async fn admin_answers(admin: u16, path: &str, status: u16) {
    let http = reqwest::Client::new();
    herald_tests::eventually(&format!("{path} answers {status}"), || async {
        let response = http
            .get(format!("http://127.0.0.1:{admin}{path}"))
            .send()
            .await
            .ok()?;
        (response.status() == status).then_some(())
    })
    .await;
}

/// SIGTERM, then the exit status. The 30 s bound only catches a process
/// that never exits; the grace is 2 s.
async fn sigterm_and_wait(child: &mut Child) -> std::process::ExitStatus {
    herald_tests::process::sigterm(child.id().expect("pid"));
    tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("herald exits after SIGTERM")
        .expect("exit status")
}

#[tokio::test]
async fn sigterm_with_nats_gone_still_exits() {
    herald_tests::init();
    let mut nats = TestNats::start().await;
    let hook = FakeServer::webhook().await;
    let dir = config(&hook);
    let (mut herald, admin) = standalone_on(nats.url(), dir.path());
    admin_answers(admin, "/readyz", 200).await;

    nats.stop().await;
    admin_answers(admin, "/readyz", 503).await;
    let status = sigterm_and_wait(&mut herald).await;
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn sigterm_while_waiting_for_nats_at_start_exits() {
    herald_tests::init();
    let hook = FakeServer::webhook().await;
    let dir = config(&hook);
    // Nothing listens there: Herald keeps retrying its streams.
    let nowhere = format!("nats://127.0.0.1:{}", herald_tests::process::free_port());
    let (mut herald, admin) = standalone_on(&nowhere, dir.path());
    admin_answers(admin, "/healthz", 200).await;
    admin_answers(admin, "/readyz", 503).await;

    let status = sigterm_and_wait(&mut herald).await;
    assert!(status.success(), "{status}");
}
