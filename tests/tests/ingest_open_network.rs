//! Ingest on an open network: HTTPS and gRPC over TLS with a certificate
//! read again from its files when they change.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use herald_proto::names;
use herald_proto::v1::ingest_client::IngestClient;
use herald_proto::v1::{PublishRequest, publish_result::Status};
use herald_runtime::nats::NatsArgs;
use herald_runtime::serve::Deadlines;
use herald_runtime::tls::TlsArgs;
use herald_runtime::{Metrics, Readiness};
use herald_tests::fake::FakeServer;
use herald_tests::fixtures::{Alert, Event, Provider};
use herald_tests::herald::{Options, TestHerald, config_dir};
use herald_tests::nats::TestNats;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tonic::transport::Channel;

const NS: &str = "apps";

/// How long a test waits for what should happen within about a second. The
/// bound is generous on purpose: it catches what never happens, it does not
/// measure speed.
const BOUND: Duration = Duration::from_secs(20);

// === certificates ===

/// A self-signed certificate for `localhost` and 127.0.0.1, with its key, in PEM.
struct Pair {
    cert: String,
    key: String,
}

fn self_signed() -> Pair {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    Pair {
        cert: cert.pem(),
        key: key.serialize_pem(),
    }
}

/// The certificate and key files ingest is given.
struct Files {
    _dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
}

impl Files {
    fn new(pair: &Pair) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let files = Self {
            cert: dir.path().join("tls.crt"),
            key: dir.path().join("tls.key"),
            _dir: dir,
        };
        files.write(pair);
        files
    }

    fn write(&self, pair: &Pair) {
        std::fs::write(&self.key, &pair.key).unwrap();
        std::fs::write(&self.cert, &pair.cert).unwrap();
    }

    fn args(&self) -> TlsArgs {
        TlsArgs {
            tls_cert_file: Some(self.cert.clone()),
            tls_key_file: Some(self.key.clone()),
        }
    }
}

/// A new client (no pooled connection) that trusts only `pair`'s certificate.
fn https_client(pair: &Pair, addr: SocketAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(pair.cert.as_bytes()).unwrap()])
        .resolve("localhost", addr)
        .build()
        .unwrap()
}

fn https_url(addr: SocketAddr) -> String {
    format!("https://localhost:{}/", addr.port())
}

/// A gRPC client over TLS that trusts only `pair`'s certificate.
async fn grpc_over_tls(
    addr: SocketAddr,
    pair: &Pair,
) -> Result<IngestClient<Channel>, tonic::transport::Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(pair.cert.as_bytes()).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let channel =
        tonic::transport::Endpoint::from_shared(format!("https://localhost:{}", addr.port()))
            .unwrap()
            .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
                let connector = connector.clone();
                async move {
                    let tcp = TcpStream::connect(addr).await?;
                    let name = ServerName::try_from("localhost").expect("a DNS name");
                    let tls = connector.connect(name, tcp).await?;
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
                }
            }))
            .await?;
    Ok(IngestClient::new(channel))
}

// === shared ===

fn catalog(hook: &FakeServer) -> tempfile::TempDir {
    config_dir(&format!(
        "{}{}",
        Provider::new(NS, "hook", "generic").address(&hook.url("/hook")),
        Alert::new(NS, "hook", "hook").source("Kustomization", "*"),
    ))
}

fn event(message: &str) -> String {
    Event::new("Kustomization", NS, "webapp")
        .message(message)
        .now()
        .json()
}

fn batch(cluster_messages: &[String]) -> PublishRequest {
    PublishRequest {
        cluster: String::new(),
        events_json: cluster_messages
            .iter()
            .map(|m| event(m).into_bytes())
            .collect(),
    }
}

/// Waits for the server to close `stream`, returning what it sent first.
async fn closed(mut stream: TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return received,
            Ok(read) => received.extend_from_slice(&buf[..read]),
        }
    }
}

/// The value of the metric line that starts with `series`, 0 when absent.
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|line| line.starts_with(series))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0)
}

// === TLS ===

fn tls_options(files: &Files) -> Options {
    let mut options = Options::default();
    options.ingest_args.tls = files.args();
    options
}

#[tokio::test]
async fn https_and_grpc_over_tls_are_served_with_the_certificate() {
    let nats = TestNats::start().await;
    let hook = FakeServer::webhook().await;
    let dir = catalog(&hook);
    let pair = self_signed();
    let files = Files::new(&pair);
    let herald = TestHerald::start_with(nats.url(), dir.path(), tls_options(&files)).await;

    let response = https_client(&pair, herald.ingest_addr())
        .post(https_url(herald.ingest_addr()))
        .header("content-type", "application/json")
        .body(event("over https"))
        .send()
        .await
        .expect("an HTTPS answer");
    assert_eq!(response.status(), 202);

    let mut grpc = grpc_over_tls(herald.grpc_addr(), &pair)
        .await
        .expect("gRPC over TLS");
    let answer = grpc
        .publish(batch(&["grpc one".to_owned(), "grpc two".to_owned()]))
        .await
        .expect("publish")
        .into_inner();
    assert!(
        answer
            .results
            .iter()
            .all(|r| r.status == Status::Accepted as i32),
        "{answer:?}"
    );

    let mut messages: Vec<String> = hook
        .wait_for(3)
        .await
        .iter()
        .map(|r| r.json()["message"].as_str().unwrap_or_default().to_owned())
        .collect();
    messages.sort();
    assert_eq!(messages, ["grpc one", "grpc two", "over https"]);
    herald.shutdown().await;
}

#[tokio::test]
async fn plain_and_silent_clients_of_a_tls_listener_are_turned_away() {
    let nats = TestNats::start().await;
    let dir = config_dir("");
    let pair = self_signed();
    let files = Files::new(&pair);
    let options = Options {
        router: false,
        sender: false,
        deadlines: Deadlines {
            header_read: Duration::from_secs(1),
            idle: Duration::from_secs(30),
        },
        ..tls_options(&files)
    };
    let herald = TestHerald::start_with(nats.url(), dir.path(), options).await;
    let (http, grpc) = (herald.ingest_addr(), herald.grpc_addr());

    // Plain HTTP is answered 400, saying what to use instead.
    let response = reqwest::Client::new()
        .post(format!("http://{http}/"))
        .body(event("plain"))
        .send()
        .await
        .expect("an answer, not a reset");
    assert_eq!(response.status(), 400);
    let text = response.text().await.unwrap();
    assert!(text.contains("use https://"), "{text}");

    // A plain gRPC client fails, and does not hang.
    let plain_grpc = async {
        let mut client = IngestClient::connect(format!("http://{grpc}")).await?;
        client.publish(batch(&["plain grpc".to_owned()])).await?;
        anyhow::Ok(())
    };
    let outcome = tokio::time::timeout(BOUND, plain_grpc)
        .await
        .expect("the plain gRPC client is answered");
    assert!(outcome.is_err(), "plain gRPC must not be served");

    // A client that never speaks, or stops mid-handshake, is closed after
    // the header deadline, on both listeners.
    let mut stalled = Vec::new();
    for addr in [http, grpc] {
        stalled.push(TcpStream::connect(addr).await.unwrap());
        let mut half = TcpStream::connect(addr).await.unwrap();
        // The start of a TLS record header, then nothing.
        half.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
        stalled.push(half);
    }
    tokio::time::timeout(
        BOUND,
        futures::future::join_all(stalled.into_iter().map(closed)),
    )
    .await
    .expect("every stalled connection is closed");

    // Meanwhile HTTPS is served as ever.
    let response = https_client(&pair, http)
        .post(https_url(http))
        .body(event("still served"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    assert_eq!(nats.stream_messages(names::EVENTS_STREAM).await, 1);
    herald.shutdown().await;
}

#[tokio::test]
async fn a_renewed_certificate_is_served_without_a_restart_and_a_broken_one_is_not() {
    let nats = TestNats::start().await;
    let dir = config_dir("");
    let first = self_signed();
    let files = Files::new(&first);
    let options = Options {
        router: false,
        sender: false,
        ..tls_options(&files)
    };
    let herald = TestHerald::start_with(nats.url(), dir.path(), options).await;
    let addr = herald.ingest_addr();
    let post = |pair: &Pair, message: &str| {
        https_client(pair, addr)
            .post(https_url(addr))
            .body(event(message))
            .send()
    };
    assert_eq!(post(&first, "first").await.unwrap().status(), 202);

    // Renewed: new connections get the new certificate.
    let renewed = self_signed();
    files.write(&renewed);
    herald_tests::eventually("the renewed certificate is served", || async {
        let response = post(&renewed, "renewed").await.ok()?;
        (response.status() == 202).then_some(())
    })
    .await;
    assert!(
        post(&first, "first again").await.is_err(),
        "the old certificate is no longer served"
    );
    let mut grpc = grpc_over_tls(herald.grpc_addr(), &renewed)
        .await
        .expect("gRPC over TLS with the renewed certificate");
    let answer = grpc
        .publish(batch(&["renewed grpc".to_owned()]))
        .await
        .unwrap();
    assert_eq!(
        answer.into_inner().results[0].status,
        Status::Accepted as i32
    );

    // Broken: a certificate whose key is not in the key file. The renewed
    // pair is still served, and the failed reload is counted.
    let failed = r#"herald_tls_certificate_reloads_total{outcome="failed"}"#;
    let failed_before = metric(&herald.admin("/metrics").await.1, failed);
    let stranger = self_signed();
    std::fs::write(&files.cert, &stranger.cert).unwrap();
    herald_tests::eventually("the broken pair is read and refused", || async {
        let text = herald.admin("/metrics").await.1;
        (metric(&text, failed) > failed_before).then_some(())
    })
    .await;
    assert_eq!(post(&renewed, "kept").await.unwrap().status(), 202);
    assert!(post(&stranger, "stranger").await.is_err());
    herald.shutdown().await;
}

#[tokio::test]
async fn a_certificate_that_cannot_be_used_stops_start_up() {
    let nats = TestNats::start().await;
    let (one, other) = (self_signed(), self_signed());
    let files = Files::new(&Pair {
        cert: one.cert,
        key: other.key,
    });
    let mut args = Options::default().ingest_args;
    args.tls = files.args();
    let readiness = Readiness::default();
    let nats_args = NatsArgs {
        nats_url: Some(nats.url().to_owned()),
        nats_creds: None,
        stream_replicas: 1,
        events_max_age: Duration::from_secs(3600),
        duplicate_window: Duration::from_secs(120),
        dead_max_age: Duration::from_secs(3600),
        budgets: herald_runtime::budget::Budgets::default(),
    };
    let connection = herald_runtime::nats::connect(&nats_args, "herald-test", &readiness)
        .await
        .unwrap();
    let built = herald_ingest::App::build(
        &args,
        None,
        connection,
        Metrics::new(),
        &readiness,
        &tokio_util::sync::CancellationToken::new(),
    )
    .await;
    let error = format!("{:#}", built.err().expect("start-up fails"));
    assert!(
        error.starts_with("cannot serve TLS: the key in "),
        "{error}"
    );
    assert!(
        error.contains("does not go with the certificate in"),
        "{error}"
    );
}
