//! Deadlines on every listener: clients that send their request slowly, or
//! nothing at all, are cut off, and a normal event is still answered while a
//! hundred of them hang on. The bounds are generous on purpose: they catch a
//! connection that is never closed, they do not measure speed.

use std::net::SocketAddr;
use std::time::Duration;

use herald_runtime::serve::Deadlines;
use herald_tests::herald::{Options, TestHerald, config_dir};
use herald_tests::nats::TestNats;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const EVENT: &str = r#"{"involvedObject":{"apiVersion":"kustomize.toolkit.fluxcd.io/v1","kind":"Kustomization","name":"webapp","namespace":"apps"},
    "severity":"info","reason":"Progressing","message":"applied","reportingController":"kustomize-controller",
    "timestamp":"2024-01-01T00:00:00Z"}"#;

/// How long a test waits for what should happen after about a second.
const BOUND: Duration = Duration::from_secs(20);

/// How often a slow client sends its next byte.
const DRIP: Duration = Duration::from_millis(300);

async fn start(nats: &TestNats, dir: &tempfile::TempDir) -> TestHerald {
    let mut options = Options {
        router: false,
        sender: false,
        deadlines: Deadlines {
            header_read: Duration::from_secs(1),
            idle: Duration::from_secs(30),
        },
        ..Options::default()
    };
    options.ingest_args.body_read_timeout = Duration::from_secs(1);
    TestHerald::start_with(nats.url(), dir.path(), options).await
}

/// Sends `at_once`, then `dripped` followed by endless `a`s one byte every
/// [`DRIP`], until the server closes the connection. Returns what the
/// server sent before closing it.
async fn drip(mut stream: TcpStream, at_once: &[u8], dripped: &[u8]) -> Vec<u8> {
    if stream.write_all(at_once).await.is_err() {
        return Vec::new();
    }
    let mut bytes = dripped.iter().copied().chain(std::iter::repeat(b'a'));
    let mut received = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(DRIP, stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return received,
            Ok(Ok(read)) => received.extend_from_slice(&buf[..read]),
            Err(_) => {
                let next = bytes.next().expect("endless");
                if stream.write_all(&[next]).await.is_err() {
                    return received;
                }
            }
        }
    }
}

/// Waits for the server to close `stream` (end of file or an error),
/// returning what it sent first.
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

async fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.expect("connect")
}

fn head(received: &[u8]) -> String {
    String::from_utf8_lossy(received)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn a_hundred_slow_clients_are_cut_off_and_an_event_is_still_answered() {
    let nats = TestNats::start().await;
    let dir = config_dir("");
    let herald = start(&nats, &dir).await;
    let addr = herald.ingest_addr();

    let mut slow = Vec::new();
    for _ in 0..100 {
        let stream = connect(addr).await;
        slow.push(tokio::spawn(drip(
            stream,
            b"",
            b"POST / HTTP/1.1\r\nHost: herald\r\nX-Slow: ",
        )));
    }
    let (status, body) = tokio::time::timeout(BOUND, herald.post(EVENT))
        .await
        .expect("a normal event is answered while slow clients hang on");
    assert_eq!(status, 202, "{body}");

    let all = futures::future::join_all(slow);
    let cut = tokio::time::timeout(BOUND, all)
        .await
        .expect("every slow client is cut off");
    for received in cut {
        let received = received.expect("slow client task");
        // hyper closes without an answer, or with an error status: never a 2xx.
        assert!(!head(&received).contains(" 2"), "{}", head(&received));
    }
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_is_answered_408() {
    let nats = TestNats::start().await;
    let dir = config_dir("");
    let herald = start(&nats, &dir).await;

    let headers = "POST / HTTP/1.1\r\nHost: herald\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n";
    let stream = connect(herald.ingest_addr()).await;
    let received = tokio::time::timeout(BOUND, drip(stream, headers.as_bytes(), b"{"))
        .await
        .expect("the slow body is cut off");
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(
        text.contains("the request body did not arrive within 1s"),
        "{text}"
    );

    let (_, metrics) = herald.admin("/metrics").await;
    assert!(
        metrics.contains(r#"herald_events_rejected_total{reason="timeout"} 1"#),
        "{metrics}"
    );
    let (status, body) = herald.post(EVENT).await;
    assert_eq!(status, 202, "{body}");
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed() {
    let nats = TestNats::start().await;
    let dir = config_dir("");
    let herald = start(&nats, &dir).await;

    let mut stream = connect(herald.ingest_addr()).await;
    let request = format!(
        "POST / HTTP/1.1\r\nHost: herald\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{EVENT}",
        EVENT.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        let read = tokio::time::timeout(BOUND, stream.read(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
        assert!(read > 0, "closed before answering");
        answer.extend_from_slice(&buf[..read]);
    }
    assert_eq!(head(&answer), "HTTP/1.1 202 Accepted");
    assert!(
        !String::from_utf8_lossy(&answer)
            .to_lowercase()
            .contains("connection: close"),
        "kept alive"
    );
    // Now send nothing.
    tokio::time::timeout(BOUND, closed(stream))
        .await
        .expect("the idle connection is closed");
}

#[tokio::test]
async fn the_admin_listener_cuts_off_a_slow_client() {
    let nats = TestNats::start().await;
    let dir = config_dir("");
    let herald = start(&nats, &dir).await;

    let stream = connect(herald.admin_addr()).await;
    let slow = tokio::spawn(drip(
        stream,
        b"",
        b"GET /metrics HTTP/1.1\r\nHost: herald\r\nX-Slow: ",
    ));
    let (status, _) = herald.admin("/healthz").await;
    assert_eq!(status, 200);
    tokio::time::timeout(BOUND, slow)
        .await
        .expect("the slow admin client is cut off")
        .unwrap();
}

#[tokio::test]
async fn a_grpc_connection_that_never_opens_is_closed() {
    let nats = TestNats::start().await;
    let dir = config_dir("");
    let herald = start(&nats, &dir).await;
    let addr = herald.grpc_addr();

    let silent = connect(addr).await;
    let mut half = connect(addr).await;
    // Half of the HTTP/2 connection preface, then nothing.
    half.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    // The server's SETTINGS may come first; then the connection closes.
    tokio::time::timeout(BOUND, futures::future::join(closed(silent), closed(half)))
        .await
        .expect("both connections are closed");
}
