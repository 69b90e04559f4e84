//! NATS credentials given in `--nats-url` are used to log in and never
//! printed: not in errors, not in Herald's logs, not in async-nats's own
//! debug and trace logs, whatever the level.

use std::process::{Command, Stdio};
use std::time::Duration;

use herald_runtime::Readiness;
use herald_runtime::nats::NatsArgs;

const HERALD: &str = env!("CARGO_BIN_EXE_herald");
const PASSWORD: &str = "S3cretPassw0rd";
const TOKEN: &str = "S3cretT0ken";

/// A nats-server with JetStream that only lets in who `auth` names.
struct AuthNats {
    port: u16,
    _store: tempfile::TempDir,
    _child: tokio::process::Child,
}

impl AuthNats {
    async fn start(auth: &[&str]) -> Self {
        herald_tests::init();
        let binary = herald_runtime::local_nats::find_binary()
            .expect("these tests need a real nats-server (scripts/nats-server.sh)");
        let store = tempfile::tempdir().unwrap();
        let port = herald_tests::process::free_port();
        let child = tokio::process::Command::new(binary)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string()])
            .arg("-sd")
            .arg(store.path())
            .args(auth)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start nats-server");
        herald_tests::eventually("nats-server listens", || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
                .map(|_| ())
        })
        .await;
        Self {
            port,
            _store: store,
            _child: child,
        }
    }

    /// Creates Herald's streams, logging in with `url`'s credentials.
    async fn create_streams(&self, url: &str) {
        let args = NatsArgs {
            nats_url: Some(url.to_owned()),
            nats_creds: None,
            jetstream_domain: None,
            stream_replicas: 1,
            events_max_age: Duration::from_secs(3600),
            duplicate_window: Duration::from_secs(60),
            dead_max_age: Duration::from_secs(3600),
            budgets: herald_runtime::budget::Budgets::default(),
        };
        let nats = herald_runtime::nats::connect(&args, "test", &Readiness::default())
            .await
            .expect("connect with the URL's credentials");
        nats.ensure_dead_stream().await.expect("dead stream");
    }
}

fn dlq_list(url: &str) -> std::process::Output {
    Command::new(HERALD)
        .args(["dlq", "--nats-url", url, "list"])
        .env_remove("HERALD_NATS_URL")
        .output()
        .expect("run herald dlq")
}

fn text(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test]
async fn dlq_logs_in_with_a_user_and_password_from_the_url() {
    let nats = AuthNats::start(&["--user", "herald", "--pass", PASSWORD]).await;
    let url = format!("nats://herald:{PASSWORD}@127.0.0.1:{}", nats.port);
    nats.create_streams(&url).await;

    let listed = dlq_list(&url);
    assert!(listed.status.success(), "{}", text(&listed));
    assert!(String::from_utf8_lossy(&listed.stderr).contains("0 dead letters"));
    assert!(!text(&listed).contains(PASSWORD));

    // The credentials are really checked, and a refusal does not echo them.
    let wrong = dlq_list(&format!("nats://herald:Wr0ngPass@127.0.0.1:{}", nats.port));
    assert!(!wrong.status.success());
    assert!(!text(&wrong).contains("Wr0ngPass"), "{}", text(&wrong));
}

#[tokio::test]
async fn dlq_logs_in_with_a_token_from_the_url() {
    let nats = AuthNats::start(&["--auth", TOKEN]).await;
    let url = format!("nats://{TOKEN}@127.0.0.1:{}", nats.port);
    nats.create_streams(&url).await;
    let listed = dlq_list(&url);
    assert!(listed.status.success(), "{}", text(&listed));
    assert!(!text(&listed).contains(TOKEN));
}

#[test]
fn dlq_that_cannot_connect_never_prints_the_password() {
    let url = format!(
        "nats://herald:{PASSWORD}@127.0.0.1:{}",
        herald_tests::process::free_port()
    );
    let failed = dlq_list(&url);
    assert!(!failed.status.success());
    let output = text(&failed);
    assert!(!output.contains(PASSWORD), "{output}");
    assert!(output.contains("herald:***@127.0.0.1"), "{output}");

    // Nor when the URLs disagree, nor when one is malformed.
    let mixed = dlq_list(&format!(
        "nats://a:{PASSWORD}@127.0.0.1:1,nats://b:Other{PASSWORD}@127.0.0.1:2"
    ));
    assert!(!mixed.status.success());
    assert!(text(&mixed).contains("different credentials"));
    assert!(!text(&mixed).contains(PASSWORD), "{}", text(&mixed));
    let malformed = dlq_list(&format!("nats://herald:{PASSWORD}@127.0.0.1:port"));
    assert!(!malformed.status.success());
    assert!(!text(&malformed).contains(PASSWORD), "{}", text(&malformed));
}

/// Runs `herald ingest` with `RUST_LOG=trace` on `url` for a while and
/// returns everything it wrote. When `admin` answers ready, it stops there.
async fn ingest_logs(url: &str, wait_ready: bool) -> String {
    let admin = herald_tests::process::free_port();
    let dir = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(HERALD)
        .arg("ingest")
        .args([
            "--listen",
            &format!("127.0.0.1:{}", herald_tests::process::free_port()),
        ])
        .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
        .args(["--grpc-listen", "off"])
        .env("HERALD_NATS_URL", url)
        .env("HERALD_CONFIG_DIR", dir.path())
        .env("RUST_LOG", "trace")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start herald ingest");
    if wait_ready {
        herald_tests::process::wait_ready(admin, "ingest").await;
    } else {
        // Long enough for several reconnection attempts.
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    // `--help` shows environment values unless told not to.
    let help = Command::new(HERALD)
        .args(["ingest", "--help"])
        .env("HERALD_NATS_URL", url)
        .output()
        .unwrap();
    child.start_kill().unwrap();
    let output = child.wait_with_output().await.unwrap();
    format!(
        "{}{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        text(&help)
    )
}

#[tokio::test]
async fn a_service_never_logs_the_password_even_at_trace() {
    let nats = AuthNats::start(&["--user", "herald", "--pass", PASSWORD]).await;
    let url = format!("nats://herald:{PASSWORD}@127.0.0.1:{}", nats.port);
    let connected = ingest_logs(&url, true).await;
    assert!(
        connected.contains("TRACE") || connected.contains("trace"),
        "trace logs are on"
    );
    assert!(connected.contains("Connected to NATS."), "{connected}");
    assert!(!connected.contains(PASSWORD), "{connected}");

    let url = format!(
        "nats://herald:{PASSWORD}@127.0.0.1:{}",
        herald_tests::process::free_port()
    );
    let refused = ingest_logs(&url, false).await;
    assert!(refused.contains("127.0.0.1"), "{refused}");
    assert!(!refused.contains(PASSWORD), "{refused}");
}

#[tokio::test]
async fn a_service_never_logs_the_token_even_at_trace() {
    let nats = AuthNats::start(&["--auth", TOKEN]).await;
    let url = format!("nats://{TOKEN}@127.0.0.1:{}", nats.port);
    let connected = ingest_logs(&url, true).await;
    assert!(connected.contains("Connected to NATS."), "{connected}");
    assert!(!connected.contains(TOKEN), "{connected}");
}
