//! The transport: sends requests with reqwest and hands what came back to
//! the classifier. It knows no provider. Clients are shared per (proxy, CA,
//! client certificate), so connections are reused across deliveries.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::classify::{self, Judge, Masker, TransportError};
use crate::config::Resolved;
use crate::outcome::Outcome;
use tracing::Instrument as _;

pub use crate::classify::Answer;

/// A request ready to send, and how its answer is judged. Holds secrets
/// (URL, headers): never log it.
#[derive(Clone)]
pub struct Request {
    pub method: reqwest::Method,
    pub url: reqwest::Url,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub judge: Judge,
}

impl Request {
    /// A POST of `body` to `url`, judged by its status.
    #[must_use]
    pub fn post(url: reqwest::Url, headers: Vec<(String, String)>, body: Vec<u8>) -> Self {
        Self {
            method: reqwest::Method::POST,
            url,
            headers,
            body,
            judge: Judge::Status,
        }
    }

    /// The same request judged by `judge`.
    #[must_use]
    pub fn judged_by(mut self, judge: Judge) -> Self {
        self.judge = judge;
        self
    }
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("host", &self.url.host_str())
            .field("judge", &self.judge)
            .finish_non_exhaustive()
    }
}

/// What is masked in whatever is kept of an exchange with `url` for
/// `resolved`.
#[must_use]
pub fn masker(resolved: &Resolved, url: &reqwest::Url) -> Masker {
    let masker = Masker::new(resolved.secrets());
    if resolved.address_is_secret {
        masker.with_secret_url(url)
    } else {
        masker
    }
}

/// HTTP clients by TLS and proxy settings.
#[derive(Clone, Default)]
pub struct HttpSender {
    clients: Arc<Mutex<HashMap<ClientKey, reqwest::Client>>>,
}

/// What makes two clients differ: the whole settings, not a hash of them
/// (two Providers must never share a client by a collision). The
/// environment's proxy settings are read when a client is built; they are
/// the process's and do not change.
#[derive(PartialEq, Eq, Hash)]
struct ClientKey {
    proxy: String,
    ca_pem: Option<Vec<u8>>,
    identity_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for HttpSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HttpSender")
    }
}

/// An error and its causes, each once, joined by `: `.
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

// === impl HttpSender ===

impl HttpSender {
    /// The client for `resolved`'s proxy and TLS settings. Without a
    /// Provider proxy, the environment's `HTTPS_PROXY`, `HTTP_PROXY`,
    /// `ALL_PROXY` and `NO_PROXY` (upper or lower case) apply; a Provider
    /// proxy replaces them for every request, as in Flux. A CA replaces the
    /// system's roots.
    fn client_for(&self, resolved: &Resolved) -> Result<reqwest::Client, String> {
        let key = ClientKey {
            proxy: resolved.proxy.clone(),
            ca_pem: resolved.ca_pem.clone(),
            identity_pem: resolved.client_identity_pem.clone(),
        };
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(client) = clients.get(&key) {
            return Ok(client.clone());
        }
        let client = build_client(&key)?;
        clients.insert(key, client.clone());
        Ok(client)
    }

    /// Sends `request` and classifies the result. Error texts never hold
    /// the URL or any secret of `resolved`.
    pub async fn send(&self, request: Request, resolved: &Resolved) -> Outcome {
        let masker = masker(resolved, &request.url);
        match self
            .call(
                request.method,
                request.url,
                &request.headers,
                Some(request.body),
                resolved,
            )
            .await
        {
            Ok(answer) => classify::classify(&answer, request.judge, &masker, ""),
            Err(outcome) => outcome,
        }
    }

    /// One HTTP exchange in a client span: the answer whatever its status,
    /// or the outcome of a request that got none (timeouts and connection
    /// errors are retried, a request that cannot be built is dead).
    ///
    /// # Errors
    ///
    /// The [`Outcome`] when there is no answer to classify.
    pub async fn call(
        &self,
        method: reqwest::Method,
        url: reqwest::Url,
        headers: &[(String, String)],
        body: Option<Vec<u8>>,
        resolved: &Resolved,
    ) -> Result<Answer, Outcome> {
        let masker = masker(resolved, &url);
        let client = self.client_for(resolved).map_err(|reason| Outcome::Dead {
            reason,
            status: 0,
            body: String::new(),
        })?;
        let span = tracing::info_span!(
            "sender.http",
            otel.name = %method,
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            http.request.method = %method,
            server.address = url.host_str().unwrap_or_default(),
            server.port = url.port_or_known_default().unwrap_or_default(),
            http.response.status_code = tracing::field::Empty,
            error.type = tracing::field::Empty,
        );
        let mut builder = client.request(method, url).timeout(resolved.timeout);
        if let Some(body) = body {
            builder = builder.body(body);
        }
        for (name, value) in headers {
            builder = builder.header(name, value);
        }
        let answer = exchange(builder, resolved, &masker)
            .instrument(span.clone())
            .await
            .map_err(classify::transport);
        match &answer {
            Ok(answer) => {
                span.record("http.response.status_code", answer.status);
                if !(200..300).contains(&answer.status) {
                    span.record("otel.status_code", "error");
                    span.record("error.type", answer.status.to_string().as_str());
                }
            }
            Err(_) => {
                span.record("otel.status_code", "error");
                span.record("error.type", "transport");
            }
        }
        answer
    }
}

/// Builds a client. Errors never hold the proxy URL, a certificate or a key.
fn build_client(key: &ClientKey) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(90))
        .user_agent(concat!("herald/", env!("CARGO_PKG_VERSION")));
    if !key.proxy.is_empty() {
        let proxy = reqwest::Proxy::all(socks_resolved_by_proxy(&key.proxy))
            .map_err(|_| "the Provider's proxy is not a usable URL".to_owned())?;
        builder = builder.proxy(proxy);
    }
    if let Some(pem) = &key.ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|_| "the CA certificate (ca.crt) cannot be used".to_owned())?;
        builder = builder.tls_certs_only(certs);
    }
    if let Some(pem) = &key.identity_pem {
        let identity = reqwest::Identity::from_pem(pem).map_err(|_| {
            "the client certificate (tls.crt and tls.key) cannot be used".to_owned()
        })?;
        builder = builder.identity(identity);
    }
    builder
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {}", error_chain(&e)))
}

/// Go's SOCKS5 dialer, which Flux uses, sends the destination's name to the
/// proxy: reqwest does so for `socks5h://`, and resolves locally for
/// `socks5://`. A cluster that must go through a proxy often cannot resolve
/// outside names itself.
fn socks_resolved_by_proxy(proxy: &str) -> String {
    match proxy.strip_prefix("socks5://") {
        Some(rest) => format!("socks5h://{rest}"),
        None => proxy.to_owned(),
    }
}

async fn exchange(
    builder: reqwest::RequestBuilder,
    resolved: &Resolved,
    masker: &Masker,
) -> Result<Answer, TransportError> {
    let response = match builder.send().await {
        Ok(response) => response,
        Err(error) => {
            let (is_builder, is_timeout) = (error.is_builder(), error.is_timeout());
            let text = masker.mask(&error_chain(&error.without_url()));
            return Err(if is_builder {
                TransportError::Build(text)
            } else if is_timeout {
                TransportError::Timeout(resolved.timeout)
            } else {
                TransportError::Failed(text)
            });
        }
    };
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    match response.bytes().await {
        Ok(body) => Ok(Answer {
            status,
            headers,
            body,
        }),
        Err(error) => Err(TransportError::Body {
            status,
            error: masker.mask(&error_chain(&error.without_url())),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_are_shared_by_equal_settings_only() {
        rustls::crypto::ring::default_provider()
            .install_default()
            .ok();
        let http = HttpSender::default();
        let mut resolved = Resolved::default();
        http.client_for(&resolved).unwrap();
        http.client_for(&resolved).unwrap();
        resolved.proxy = "socks5://u:p@127.0.0.1:1080".to_owned();
        http.client_for(&resolved).unwrap();
        resolved.proxy = "http://127.0.0.1:3128".to_owned();
        http.client_for(&resolved).unwrap();
        assert_eq!(http.clients.lock().unwrap().len(), 3);
    }

    #[test]
    fn socks5_names_are_resolved_by_the_proxy() {
        assert_eq!(
            socks_resolved_by_proxy("socks5://p:1080"),
            "socks5h://p:1080"
        );
        assert_eq!(
            socks_resolved_by_proxy("socks5h://p:1080"),
            "socks5h://p:1080"
        );
        assert_eq!(socks_resolved_by_proxy("http://p:3128"), "http://p:3128");
    }
}
