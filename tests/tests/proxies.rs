//! Proxies and client certificates, end to end on loopback: an HTTP forward
//! proxy (absolute-URI requests and `CONNECT`) and a SOCKS5 proxy written
//! here, named by `spec.proxy`, `proxySecretRef` or the environment; and a
//! TLS endpoint that requires a client certificate, reached with the
//! `certSecretRef` of a `generic` Provider.
//!
//! Destinations are named `*.invalid`, which no resolver answers: a delivery
//! to one arrives only if the proxy resolved it (these proxies send every
//! name to 127.0.0.1).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use herald_proto::{DeadLetter, names};
use herald_tests::eventually;
use herald_tests::fake::FakeServer;
use herald_tests::herald::{Options, TestHerald, config_dir};
use herald_tests::nats::TestNats;
use prost::Message as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

const PASSWORD: &str = "Pr0xyS3cret";

// === proxies written for the tests ===

/// What a proxy was asked for: `CONNECT host:port`, `POST http://...`, or
/// for SOCKS5 `SOCKS host:port`; with the credentials it was given.
#[derive(Debug, Clone)]
struct Seen {
    request: String,
    credentials: Option<String>,
}

#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<Seen>>>);

impl Log {
    fn push(&self, seen: Seen) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(seen);
    }

    fn all(&self) -> Vec<Seen> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The loopback port of `host:port` (every name is 127.0.0.1 here).
fn port_of(authority: &str) -> u16 {
    authority
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .unwrap_or(80)
}

/// An HTTP forward proxy: absolute-URI requests are sent on in origin form
/// (one request per connection), `CONNECT` opens a tunnel. An upstream that
/// refuses the connection is answered 502.
async fn http_proxy() -> (u16, Log) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let log = Log::default();
    let seen = log.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(forward(client, seen.clone()));
        }
    });
    (port, log)
}

async fn forward(mut client: TcpStream, log: Log) {
    let mut buffer = Vec::new();
    let head_end = loop {
        let mut chunk = [0u8; 4096];
        let Ok(n) = client.read(&mut chunk).await else {
            return;
        };
        if n == 0 {
            return;
        }
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let rest = buffer[head_end..].to_vec();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_owned();
    let mut headers = Vec::new();
    let mut credentials = None;
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        match name.trim().to_ascii_lowercase().as_str() {
            "proxy-authorization" => credentials = Some(value.trim().to_owned()),
            "connection" | "proxy-connection" => {}
            _ => headers.push(line.to_owned()),
        }
    }
    let mut parts = request_line.split(' ');
    let (method, target) = (
        parts.next().unwrap_or_default().to_owned(),
        parts.next().unwrap_or_default().to_owned(),
    );
    log.push(Seen {
        request: format!("{method} {target}"),
        credentials,
    });
    if method == "CONNECT" {
        let Ok(mut upstream) = TcpStream::connect(("127.0.0.1", port_of(&target))).await else {
            client
                .write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n")
                .await
                .ok();
            return;
        };
        if client
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await
            .is_ok()
        {
            upstream.write_all(&rest).await.ok();
            tokio::io::copy_bidirectional(&mut client, &mut upstream)
                .await
                .ok();
        }
        return;
    }
    let without_scheme = target.strip_prefix("http://").unwrap_or(&target);
    let (authority, path) = match without_scheme.find('/') {
        Some(at) => without_scheme.split_at(at),
        None => (without_scheme, "/"),
    };
    let Ok(mut upstream) = TcpStream::connect(("127.0.0.1", port_of(authority))).await else {
        client
            .write_all(
                b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 19\r\nconnection: close\r\n\r\nupstream is refused",
            )
            .await.ok();
        return;
    };
    let mut out = format!("{method} {path} HTTP/1.1\r\n");
    for header in headers {
        out.push_str(&header);
        out.push_str("\r\n");
    }
    out.push_str("connection: close\r\n\r\n");
    if upstream.write_all(out.as_bytes()).await.is_ok() && upstream.write_all(&rest).await.is_ok() {
        tokio::io::copy_bidirectional(&mut client, &mut upstream)
            .await
            .ok();
    }
}

/// A SOCKS5 proxy (RFC 1928, `CONNECT` only), without authentication or
/// with the username and password of RFC 1929 when `login` is given.
async fn socks5_proxy(login: Option<(&'static str, &'static str)>) -> (u16, Log) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let log = Log::default();
    let seen = log.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                socks5(client, login, seen).await.ok();
            });
        }
    });
    (port, log)
}

async fn socks5(
    mut client: TcpStream,
    login: Option<(&str, &str)>,
    log: Log,
) -> std::io::Result<()> {
    let mut greeting = [0u8; 2];
    client.read_exact(&mut greeting).await?;
    let mut methods = vec![0u8; usize::from(greeting[1])];
    client.read_exact(&mut methods).await?;
    let wanted = if login.is_some() { 2 } else { 0 };
    if greeting[0] != 5 || !methods.contains(&wanted) {
        client.write_all(&[5, 0xff]).await?;
        return Ok(());
    }
    client.write_all(&[5, wanted]).await?;
    let mut credentials = None;
    if let Some((user, password)) = login {
        let mut version_and_length = [0u8; 2];
        client.read_exact(&mut version_and_length).await?;
        let mut given_user = vec![0u8; usize::from(version_and_length[1])];
        client.read_exact(&mut given_user).await?;
        let mut length = [0u8; 1];
        client.read_exact(&mut length).await?;
        let mut given_password = vec![0u8; usize::from(length[0])];
        client.read_exact(&mut given_password).await?;
        let (given_user, given_password) = (
            String::from_utf8_lossy(&given_user).into_owned(),
            String::from_utf8_lossy(&given_password).into_owned(),
        );
        let accepted = given_user == user && given_password == password;
        client.write_all(&[1, u8::from(!accepted)]).await?;
        credentials = Some(format!("{given_user}:{given_password}"));
        if !accepted {
            log.push(Seen {
                request: "SOCKS refused".to_owned(),
                credentials,
            });
            return Ok(());
        }
    }
    let mut request = [0u8; 4];
    client.read_exact(&mut request).await?;
    let host = match request[3] {
        1 => {
            let mut ip = [0u8; 4];
            client.read_exact(&mut ip).await?;
            std::net::Ipv4Addr::from(ip).to_string()
        }
        3 => {
            let mut length = [0u8; 1];
            client.read_exact(&mut length).await?;
            let mut name = vec![0u8; usize::from(length[0])];
            client.read_exact(&mut name).await?;
            String::from_utf8_lossy(&name).into_owned()
        }
        _ => {
            let mut ip = [0u8; 16];
            client.read_exact(&mut ip).await?;
            std::net::Ipv6Addr::from(ip).to_string()
        }
    };
    let mut port = [0u8; 2];
    client.read_exact(&mut port).await?;
    let port = u16::from_be_bytes(port);
    log.push(Seen {
        request: format!("SOCKS {host}:{port}"),
        credentials,
    });
    let Ok(mut upstream) = TcpStream::connect(("127.0.0.1", port)).await else {
        client.write_all(&[5, 5, 0, 1, 0, 0, 0, 0, 0, 0]).await?;
        return Ok(());
    };
    client.write_all(&[5, 0, 0, 1, 0, 0, 0, 0, 0, 0]).await?;
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}

// === a TLS endpoint that requires a client certificate ===

/// A CA, a server certificate for `mtls.invalid` and 127.0.0.1, and a
/// client certificate, all signed by the CA, in PEM.
struct Pki {
    ca: String,
    server: (String, String),
    client: (String, String),
}

fn pki() -> Pki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf = |names: Vec<String>| {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    };
    Pki {
        server: leaf(vec!["mtls.invalid".to_owned(), "127.0.0.1".to_owned()]),
        client: leaf(vec!["herald".to_owned()]),
        ca: ca.pem(),
    }
}

/// What the TLS endpoint saw: requests (`POST /path`) and failed handshakes.
#[derive(Clone, Default)]
struct TlsLog(Arc<Mutex<(Vec<String>, Vec<String>)>>);

impl TlsLog {
    fn requests(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .0
            .clone()
    }

    fn refused(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .1
            .clone()
    }
}

/// An HTTPS endpoint answering 200 to clients with a certificate of the CA.
async fn mtls_endpoint(pki: &Pki) -> (u16, TlsLog) {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(pki.ca.as_bytes()).unwrap())
        .unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::clone(&provider),
    )
    .build()
    .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![CertificateDer::from_pem_slice(pki.server.0.as_bytes()).unwrap()],
            PrivateKeyDer::from_pem_slice(pki.server.1.as_bytes()).unwrap(),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let log = TlsLog::default();
    let seen = log.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, seen) = (acceptor.clone(), seen.clone());
            tokio::spawn(async move {
                let mut tls = match acceptor.accept(tcp).await {
                    Ok(tls) => tls,
                    Err(error) => {
                        seen.0.lock().unwrap().1.push(error.to_string());
                        return;
                    }
                };
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match tls.read(&mut byte).await {
                        Ok(1) => head.push(byte[0]),
                        Ok(_) => return,
                        Err(error) => {
                            seen.0.lock().unwrap().1.push(error.to_string());
                            return;
                        }
                    }
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let length = head
                    .lines()
                    .filter_map(|l| l.split_once(':'))
                    .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.trim().parse().ok())
                    .unwrap_or(0usize);
                let mut body = vec![0u8; length];
                if tls.read_exact(&mut body).await.is_err() {
                    return;
                }
                let line = head.lines().next().unwrap_or_default();
                let request = line.rsplit_once(' ').map_or(line, |(r, _)| r).to_owned();
                seen.0.lock().unwrap().0.push(request);
                tls.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await
                    .ok();
                tls.shutdown().await.ok();
            });
        }
    });
    (port, log)
}

// === helpers ===

const EVENT: &str = r#"{"involvedObject":{"kind":"Kustomization","namespace":"apps","name":"web","apiVersion":"kustomize.toolkit.fluxcd.io/v1"},
    "severity":"info","message":"applied","reason":"Progressing","reportingController":"kustomize-controller","timestamp":"2024-01-01T00:00:00Z"}"#;

/// A `generic` Provider `name` with `spec` (flow-style YAML fields after the
/// type), its Alert, and `secrets` (name → flow-style `stringData`).
fn provider(name: &str, spec: &str, secrets: &[(&str, String)]) -> String {
    let mut out = format!(
        "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Provider\nmetadata: {{name: {name}, namespace: apps}}\n\
         spec: {{type: generic, {spec}}}\n---\n\
         apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Alert\nmetadata: {{name: {name}, namespace: apps}}\n\
         spec: {{providerRef: {{name: {name}}}, eventSources: [{{kind: Kustomization, name: '*'}}]}}\n---\n"
    );
    for (secret, data) in secrets {
        out.push_str(&format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: {secret}, namespace: apps}}\nstringData: {data}\n---\n"
        ));
    }
    out
}

/// A YAML double-quoted scalar.
fn quoted(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

fn quick_retries() -> Options {
    let mut options = Options::default();
    options.sender_args.max_attempts = 2;
    options.sender_args.retry_base = Duration::from_millis(50);
    options.sender_args.retry_max = Duration::from_millis(100);
    options
}

async fn dead_letters(nats: &TestNats, n: u64) -> Vec<DeadLetter> {
    eventually(&format!("{n} dead letters"), || async {
        (nats.stream_messages(names::DEAD_STREAM).await >= n).then_some(())
    })
    .await;
    let js = nats.jetstream().await;
    let stream = js.get_stream(names::DEAD_STREAM).await.unwrap();
    let mut out = Vec::new();
    for seq in 1..=n {
        let message = stream.get_raw_message(seq).await.unwrap();
        out.push(DeadLetter::decode(message.payload).unwrap());
    }
    out
}

fn port(hook: &FakeServer) -> u16 {
    port_of(hook.url("").trim_start_matches("http://"))
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

// === tests ===

#[tokio::test]
async fn http_proxies_from_spec_proxy_and_proxy_secret_ref_carry_deliveries() {
    let nats = TestNats::start().await;
    let hook = FakeServer::webhook().await;
    let (open_proxy, open_log) = http_proxy().await;
    let (auth_proxy, auth_log) = http_proxy().await;
    let closed = herald_tests::process::free_port();
    let hook_port = port(&hook);
    let proxy_secret = format!(
        "{{address: 'http://127.0.0.1:{auth_proxy}', username: herald, password: {}}}",
        quoted(PASSWORD)
    );
    let manifests = [
        provider(
            "spec-proxy",
            &format!(
                "address: 'http://spec.invalid:{hook_port}/spec', proxy: 'http://127.0.0.1:{open_proxy}'"
            ),
            &[],
        ),
        provider(
            "secret-proxy",
            &format!(
                "address: 'http://secret.invalid:{hook_port}/secret', proxySecretRef: {{name: proxy-login}}"
            ),
            &[("proxy-login", proxy_secret.clone())],
        ),
        // The proxy cannot reach this one: a 502 from the proxy, then a dead letter.
        provider(
            "unreachable",
            &format!(
                "address: 'http://gone.invalid:{closed}/gone', proxySecretRef: {{name: proxy-login}}"
            ),
            &[],
        ),
    ]
    .concat();
    let dir = config_dir(&manifests);
    let herald = TestHerald::start_with(nats.url(), dir.path(), quick_retries()).await;
    assert_eq!(herald.post(EVENT).await.0, 202);

    let mut paths: Vec<String> = hook
        .wait_for(2)
        .await
        .iter()
        .map(|r| r.path.clone())
        .collect();
    paths.sort();
    assert_eq!(paths, ["/secret", "/spec"]);
    let open = open_log.all();
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(
        open[0].request,
        format!("POST http://spec.invalid:{hook_port}/spec")
    );
    assert_eq!(open[0].credentials, None);
    let letters = dead_letters(&nats, 1).await;
    let authed = auth_log.all();
    let secret_request = authed
        .iter()
        .find(|s| s.request.contains("/secret"))
        .expect("the proxySecretRef proxy was used");
    assert_eq!(
        secret_request.request,
        format!("POST http://secret.invalid:{hook_port}/secret")
    );
    assert!(
        authed
            .iter()
            .all(|s| s.credentials.as_deref() == Some(basic("herald", PASSWORD).as_str())),
        "{authed:?}"
    );
    assert!(
        authed.iter().any(|s| s.request.contains("/gone")),
        "{authed:?}"
    );

    let letter = &letters[0];
    assert_eq!(letter.last_status, 502, "{letter:?}");
    let everything = format!("{letter:?}");
    let metrics = herald.admin("/metrics").await.1;
    for text in [&everything, &metrics] {
        assert!(!text.contains(PASSWORD), "{text}");
        assert!(!text.contains(&basic("herald", PASSWORD)), "{text}");
        assert!(!text.contains(&auth_proxy.to_string()), "{text}");
    }
    herald.shutdown().await;
}

#[tokio::test]
async fn socks5_proxies_resolve_names_and_log_in() {
    let nats = TestNats::start().await;
    let hook = FakeServer::webhook().await;
    let hook_port = port(&hook);
    let (open_socks, open_log) = socks5_proxy(None).await;
    let (login_socks, login_log) = socks5_proxy(Some(("herald", PASSWORD))).await;
    let manifests = [
        // socks5:// through the Secret's (deprecated) `proxy` key.
        provider(
            "socks",
            &format!("address: 'http://socks.invalid:{hook_port}/socks', secretRef: {{name: socks}}"),
            &[(
                "socks",
                format!("{{proxy: 'socks5://127.0.0.1:{open_socks}'}}"),
            )],
        ),
        provider(
            "socks-login",
            &format!(
                "address: 'http://login.invalid:{hook_port}/login', proxySecretRef: {{name: socks-login}}"
            ),
            &[(
                "socks-login",
                format!(
                    "{{address: 'socks5h://127.0.0.1:{login_socks}', username: herald, password: {}}}",
                    quoted(PASSWORD)
                ),
            )],
        ),
    ]
    .concat();
    let dir = config_dir(&manifests);
    let herald = TestHerald::start(nats.url(), dir.path()).await;
    assert_eq!(herald.post(EVENT).await.0, 202);
    let mut paths: Vec<String> = hook
        .wait_for(2)
        .await
        .iter()
        .map(|r| r.path.clone())
        .collect();
    paths.sort();
    assert_eq!(paths, ["/login", "/socks"]);
    let open = open_log.all();
    assert_eq!(open.len(), 1, "{open:?}");
    // The name went to the proxy: socks5:// is resolved there, as Go does.
    assert_eq!(open[0].request, format!("SOCKS socks.invalid:{hook_port}"));
    assert_eq!(open[0].credentials, None);
    let login = login_log.all();
    assert_eq!(login.len(), 1, "{login:?}");
    assert_eq!(login[0].request, format!("SOCKS login.invalid:{hook_port}"));
    assert_eq!(
        login[0].credentials.as_deref(),
        Some(format!("herald:{PASSWORD}").as_str())
    );
    herald.shutdown().await;
}

#[tokio::test]
async fn client_certificates_from_cert_secret_ref_are_presented() {
    let nats = TestNats::start().await;
    let pki = pki();
    let (tls_port, tls_log) = mtls_endpoint(&pki).await;
    let (proxy_port, proxy_log) = http_proxy().await;
    let full = format!(
        "{{ca.crt: {}, tls.crt: {}, tls.key: {}}}",
        quoted(&pki.ca),
        quoted(&pki.client.0),
        quoted(&pki.client.1)
    );
    let ca_only = format!("{{ca.crt: {}}}", quoted(&pki.ca));
    let manifests = [
        provider(
            "mtls",
            &format!("address: 'https://127.0.0.1:{tls_port}/direct', certSecretRef: {{name: client-cert}}"),
            &[("client-cert", full)],
        ),
        // Through an HTTP proxy that needs a login: a CONNECT tunnel.
        provider(
            "mtls-proxied",
            &format!(
                "address: 'https://mtls.invalid:{tls_port}/tunnel', certSecretRef: {{name: client-cert}}, proxySecretRef: {{name: proxy-login}}"
            ),
            &[(
                "proxy-login",
                format!(
                    "{{address: 'http://127.0.0.1:{proxy_port}', username: herald, password: {}}}",
                    quoted(PASSWORD)
                ),
            )],
        ),
        provider(
            "no-client-cert",
            &format!("address: 'https://127.0.0.1:{tls_port}/refused', certSecretRef: {{name: ca-only}}"),
            &[("ca-only", ca_only)],
        ),
    ]
    .concat();
    let dir = config_dir(&manifests);
    let herald = TestHerald::start_with(nats.url(), dir.path(), quick_retries()).await;
    assert_eq!(herald.post(EVENT).await.0, 202);

    let mut requests = eventually("two deliveries over mutual TLS", || async {
        let requests = tls_log.requests();
        (requests.len() >= 2).then_some(requests)
    })
    .await;
    requests.sort();
    assert_eq!(requests, ["POST /direct", "POST /tunnel"]);
    let tunnel = proxy_log.all();
    assert_eq!(tunnel.len(), 1, "{tunnel:?}");
    assert_eq!(
        tunnel[0].request,
        format!("CONNECT mtls.invalid:{tls_port}")
    );
    assert_eq!(
        tunnel[0].credentials.as_deref(),
        Some(basic("herald", PASSWORD).as_str())
    );

    let letters = dead_letters(&nats, 1).await;
    let letter = &letters[0];
    assert_eq!(letter.attempts, 2, "{letter:?}");
    let reason = letter.reason.to_lowercase();
    assert!(
        reason.contains("certificate") || reason.contains("alert"),
        "the reason names the TLS problem: {}",
        letter.reason
    );
    assert!(!tls_log.refused().is_empty());
    let everything = format!("{letter:?}");
    for secret in [pki.client.1.as_str(), pki.ca.as_str(), PASSWORD] {
        let sample = secret.lines().nth(1).unwrap_or(secret);
        assert!(!everything.contains(sample), "{everything}");
    }
    assert!(tls_log.requests().iter().all(|r| r != "POST /refused"));
    herald.shutdown().await;
}

#[tokio::test]
async fn a_bad_certificate_secret_is_a_dead_letter_naming_the_key() {
    let nats = TestNats::start().await;
    let hook = FakeServer::webhook().await;
    let pki = pki();
    let other = pki_key();
    let secrets = BTreeMap::from([
        ("half", format!("{{tls.crt: {}}}", quoted(&pki.client.0))),
        (
            "mismatch",
            format!(
                "{{tls.crt: {}, tls.key: {}}}",
                quoted(&pki.client.0),
                quoted(&other)
            ),
        ),
    ]);
    let manifests: String = secrets
        .iter()
        .map(|(name, data)| {
            provider(
                name,
                &format!(
                    "address: '{}', certSecretRef: {{name: {name}}}",
                    hook.url("/x")
                ),
                &[(name, data.clone())],
            )
        })
        .collect();
    let dir = config_dir(&manifests);
    let herald = TestHerald::start(nats.url(), dir.path()).await;
    assert_eq!(herald.post(EVENT).await.0, 202);
    let mut reasons: Vec<String> = dead_letters(&nats, 2)
        .await
        .into_iter()
        .map(|l| l.reason)
        .collect();
    reasons.sort();
    assert!(
        reasons[0].contains("Secret apps/half has tls.crt but no tls.key"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].contains("Secret apps/mismatch: tls.key is not the private key of tls.crt"),
        "{reasons:?}"
    );
    let sample = other.lines().nth(1).unwrap();
    assert!(reasons.iter().all(|r| !r.contains(sample)));
    assert!(hook.requests().is_empty());
    herald.shutdown().await;
}

fn pki_key() -> String {
    rcgen::KeyPair::generate().unwrap().serialize_pem()
}

// === the environment's proxy, in a child process ===

/// Set in the child process this test binary runs for the environment cases.
const CHILD: &str = "HERALD_PROXIES_CHILD";

#[tokio::test]
async fn the_environment_proxy_applies_unless_no_proxy_or_a_provider_proxy_says_otherwise() {
    herald_tests::init();
    let nats = TestNats::start().await;
    let hook = FakeServer::webhook().await;
    for (proxy_var, no_proxy_var) in [("HTTP_PROXY", "NO_PROXY"), ("http_proxy", "no_proxy")] {
        let (env_proxy, env_log) = http_proxy().await;
        let (own_proxy, own_log) = http_proxy().await;
        let before = hook.requests().len();
        let status = tokio::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "environment_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, "1")
            .env("HERALD_CHILD_NATS", nats.url())
            .env("HERALD_CHILD_HOOK", port(&hook).to_string())
            .env("HERALD_CHILD_OWN_PROXY", own_proxy.to_string())
            .env_remove("HTTP_PROXY")
            .env_remove("http_proxy")
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy")
            .env_remove("ALL_PROXY")
            .env_remove("all_proxy")
            .env_remove("NO_PROXY")
            .env_remove("no_proxy")
            .env(proxy_var, format!("http://127.0.0.1:{env_proxy}"))
            // Herald's own ingest and admin are on 127.0.0.1; `localhost` is
            // the destination that must bypass the proxy.
            .env(no_proxy_var, "127.0.0.1,localhost")
            .kill_on_drop(true)
            .status()
            .await
            .unwrap();
        assert!(status.success(), "the child with {proxy_var}: {status}");
        let hook_port = port(&hook);
        let mut paths: Vec<String> = hook.requests()[before..]
            .iter()
            .map(|r| r.path.clone())
            .collect();
        paths.sort();
        assert_eq!(paths, ["/bypass", "/env", "/own"], "{proxy_var}");
        let through_env: Vec<String> = env_log.all().into_iter().map(|s| s.request).collect();
        assert_eq!(
            through_env,
            [format!("POST http://env.invalid:{hook_port}/env")],
            "{proxy_var}: only the Provider without a proxy of its own, and not in {no_proxy_var}"
        );
        let through_own: Vec<String> = own_log.all().into_iter().map(|s| s.request).collect();
        assert_eq!(
            through_own,
            [format!("POST http://own.invalid:{hook_port}/own")]
        );
    }
}

/// Runs only in the child process started above: Herald with three
/// Providers, until all three are delivered.
#[tokio::test]
async fn environment_child() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let var = |name: &str| std::env::var(name).unwrap();
    let (hook, own) = (var("HERALD_CHILD_HOOK"), var("HERALD_CHILD_OWN_PROXY"));
    let manifests = [
        provider(
            "env",
            &format!("address: 'http://env.invalid:{hook}/env'"),
            &[],
        ),
        provider(
            "bypass",
            &format!("address: 'http://localhost:{hook}/bypass'"),
            &[],
        ),
        provider(
            "own",
            &format!("address: 'http://own.invalid:{hook}/own', proxy: 'http://127.0.0.1:{own}'"),
            &[],
        ),
    ]
    .concat();
    let dir = config_dir(&manifests);
    let herald = TestHerald::start(&var("HERALD_CHILD_NATS"), dir.path()).await;
    // A stream of its own per child: the second child must not see the first's.
    assert_eq!(
        herald
            .post(EVENT.replace("applied", &var("HERALD_CHILD_OWN_PROXY")))
            .await
            .0,
        202
    );
    eventually("three deliveries", || async {
        herald
            .admin("/metrics")
            .await
            .1
            .contains(r#"herald_deliveries_total{provider_type="generic",outcome="delivered",cluster="test"} 3"#)
            .then_some(())
    })
    .await;
    herald.shutdown().await;
}
