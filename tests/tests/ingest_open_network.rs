//! Ingest on an open network: HTTPS and gRPC over TLS with a certificate
//! read again from its files when they change, and fairness between the
//! clusters of a fleet: a cluster that floods is refused what is over its
//! share (`503` and `Retry-After`, which every Flux emitter retries) while
//! the other clusters are answered at once.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use herald_proto::names;
use herald_proto::v1::ingest_client::IngestClient;
use herald_proto::v1::{PublishRequest, PublishResponse, publish_result::Status};
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
        jetstream_domain: None,
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

// === fairness ===

const FLOOD: (&str, &str) = ("flood", "flood-token");
const CALM: (&str, &str) = ("calm", "calm-token");

fn basic((cluster, token): (&str, &str)) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{cluster}:{token}"));
    format!("Basic {encoded}")
}

/// A fleet of two clusters, `flood` and `calm`.
fn fleet(clusters: &tempfile::TempDir) -> Options {
    let file = clusters.path().join("clusters.yaml");
    std::fs::write(
        &file,
        format!("{}: {}\n{}: {}\n", FLOOD.0, FLOOD.1, CALM.0, CALM.1),
    )
    .unwrap();
    let mut options = Options {
        clusters_file: Some(file),
        ..Options::default()
    };
    options.ingest_args.cluster_rate = 0.0;
    options
}

async fn post_as(herald: &TestHerald, who: (&str, &str), message: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(herald.ingest_url())
        .header("authorization", basic(who))
        .header("content-type", "application/json")
        .body(event(message))
        .send()
        .await
        .expect("ingest answers")
}

async fn publish_as(
    herald: &TestHerald,
    who: (&str, &str),
    messages: &[String],
) -> PublishResponse {
    let mut client = IngestClient::connect(herald.grpc_url()).await.unwrap();
    let mut request = tonic::Request::new(batch(messages));
    request
        .metadata_mut()
        .insert("authorization", basic(who).parse().unwrap());
    client.publish(request).await.unwrap().into_inner()
}

/// A request of `flood` whose headers are in and whose body is half sent:
/// ingest has admitted it (it answers `100 Continue` once it did) and it
/// holds one of the cluster's events in flight until the rest is sent.
struct Held {
    stream: TcpStream,
    rest: String,
}

impl Held {
    async fn open(addr: SocketAddr, message: &str) -> Self {
        let body = event(message);
        let (first, rest) = body.split_at(body.len() / 2);
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "POST / HTTP/1.1\r\nhost: herald\r\nauthorization: {}\r\n\
             content-type: application/json\r\ncontent-length: {}\r\nexpect: 100-continue\r\n\r\n",
            basic(FLOOD),
            body.len()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 256];
        while !String::from_utf8_lossy(&seen).contains("100 Continue\r\n\r\n") {
            let read = tokio::time::timeout(BOUND, stream.read(&mut buf))
                .await
                .expect("100 Continue")
                .unwrap();
            assert!(read > 0, "closed before 100 Continue");
            seen.extend_from_slice(&buf[..read]);
        }
        stream.write_all(first.as_bytes()).await.unwrap();
        Self {
            stream,
            rest: rest.to_owned(),
        }
    }

    /// Sends the rest of the body; returns the answer's status line.
    async fn finish(mut self) -> String {
        self.stream.write_all(self.rest.as_bytes()).await.unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 1024];
        while !String::from_utf8_lossy(&seen).contains("\r\n\r\n") {
            let read = tokio::time::timeout(BOUND, self.stream.read(&mut buf))
                .await
                .expect("an answer")
                .unwrap();
            assert!(read > 0, "closed before the answer");
            seen.extend_from_slice(&buf[..read]);
        }
        String::from_utf8_lossy(&seen)
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned()
    }
}

#[tokio::test]
async fn a_flooding_cluster_is_refused_over_its_share_and_the_others_are_served() {
    let nats = TestNats::start().await;
    let hook = FakeServer::webhook().await;
    let dir = catalog(&hook);
    let clusters = tempfile::tempdir().unwrap();
    let mut options = fleet(&clusters);
    options.ingest_args.cluster_max_in_flight = 4;
    // The held requests wait as long as the test needs them to.
    options.ingest_args.body_read_timeout = Duration::from_secs(300);
    options.deadlines.idle = Duration::from_secs(300);
    let herald = TestHerald::start_with(nats.url(), dir.path(), options).await;

    // `flood` has its four events in flight, held (as a slow JetStream
    // would hold them).
    let mut held = Vec::new();
    for i in 0..4 {
        held.push(Held::open(herald.ingest_addr(), &format!("held {i}")).await);
    }

    // It floods: forty more at once, each refused with a Retry-After.
    let flood = futures::future::join_all((0..40).map(|i| {
        let herald = &herald;
        async move { post_as(herald, FLOOD, &format!("flood {i}")).await }
    }))
    .await;
    for response in flood {
        assert_eq!(response.status(), 503);
        let retry_after: u64 = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .expect("a Retry-After in seconds");
        assert!((1..=4).contains(&retry_after), "{retry_after}");
        let text = response.text().await.unwrap();
        assert!(
            text.contains("cluster flood already has 4 events"),
            "{text}"
        );
    }
    // A batch of `flood` over gRPC waits its turn, gets none, and each of
    // its events is answered UNAVAILABLE.
    let refused = publish_as(&herald, FLOOD, &["flood grpc".to_owned()]).await;
    assert_eq!(refused.results[0].status, Status::Unavailable as i32);
    assert!(refused.results[0].error.contains("its share"));

    // `calm` is answered at once, over HTTP and gRPC.
    for i in 0..3 {
        assert_eq!(
            post_as(&herald, CALM, &format!("calm {i}")).await.status(),
            202
        );
    }
    let accepted = publish_as(&herald, CALM, &["calm grpc".to_owned()]).await;
    assert_eq!(accepted.results[0].status, Status::Accepted as i32);

    let text = herald.admin("/metrics").await.1;
    assert_eq!(
        metric(
            &text,
            r#"herald_events_rejected_total{reason="cluster_over_share"}"#
        ),
        41.0,
        "{text}"
    );

    // The held events arrive whole and are accepted.
    for request in held {
        assert_eq!(request.finish().await, "HTTP/1.1 202 Accepted");
    }
    // Every accepted event is delivered; nothing refused was stored.
    let mut messages: Vec<String> = hook
        .wait_for(8)
        .await
        .iter()
        .map(|r| r.json()["message"].as_str().unwrap_or_default().to_owned())
        .collect();
    messages.sort();
    assert_eq!(
        messages,
        [
            "calm 0",
            "calm 1",
            "calm 2",
            "calm grpc",
            "held 0",
            "held 1",
            "held 2",
            "held 3"
        ]
    );
    assert_eq!(nats.stream_messages(names::EVENTS_STREAM).await, 8);
    herald.shutdown().await;
}

#[tokio::test]
async fn a_cluster_over_its_rate_is_refused_and_the_others_are_served() {
    let nats = TestNats::start().await;
    let dir = config_dir("");
    let clusters = tempfile::tempdir().unwrap();
    let mut options = Options {
        router: false,
        sender: false,
        ..fleet(&clusters)
    };
    // A burst of three, and then (in test time) no more.
    options.ingest_args.cluster_rate = 0.001;
    options.ingest_args.cluster_burst = 3;
    let herald = TestHerald::start_with(nats.url(), dir.path(), options).await;

    for i in 0..3 {
        assert_eq!(
            post_as(&herald, FLOOD, &format!("burst {i}"))
                .await
                .status(),
            202
        );
    }
    let refused = post_as(&herald, FLOOD, "over").await;
    assert_eq!(refused.status(), 503);
    let retry_after: u64 = refused
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After in seconds");
    // The next token is far away; emitters are told to come back soon anyway.
    assert!((10..=13).contains(&retry_after), "{retry_after}");
    let text = refused.text().await.unwrap();
    assert!(
        text.contains("more than its share of 0.001 events/s"),
        "{text}"
    );

    assert_eq!(post_as(&herald, CALM, "calm").await.status(), 202);
    let text = herald.admin("/metrics").await.1;
    assert_eq!(
        metric(
            &text,
            r#"herald_events_rejected_total{reason="cluster_over_rate"}"#
        ),
        1.0,
        "{text}"
    );
    assert_eq!(nats.stream_messages(names::EVENTS_STREAM).await, 4);
    herald.shutdown().await;
}
