//! Sends provider requests with reqwest and classifies what came back.
//! Clients are shared per (proxy, CA, client certificate), so connections are
//! reused across deliveries.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::config::Resolved;
use crate::outcome::{Outcome, classify_status, excerpt, mask, parse_retry_after};
use crate::providers::{ProviderRequest, Validator, slack_web_api_result};
use tracing::Instrument as _;

/// HTTP clients by TLS and proxy settings.
#[derive(Clone, Default)]
pub struct HttpSender {
    clients: Arc<Mutex<HashMap<u64, reqwest::Client>>>,
}

impl std::fmt::Debug for HttpSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HttpSender")
    }
}

fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
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
    fn client_for(&self, resolved: &Resolved) -> Result<reqwest::Client, String> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (
            &resolved.proxy,
            &resolved.ca_pem,
            &resolved.client_identity_pem,
        )
            .hash(&mut hasher);
        let key = hasher.finish();
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(client) = clients.get(&key) {
            return Ok(client.clone());
        }
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(90))
            .user_agent(concat!("herald/", env!("CARGO_PKG_VERSION")));
        builder = if resolved.proxy.is_empty() {
            builder.no_proxy()
        } else {
            let proxy = reqwest::Proxy::all(&resolved.proxy)
                .map_err(|_| "invalid proxy URL in the Provider or its Secret".to_owned())?;
            builder.proxy(proxy)
        };
        if let Some(pem) = &resolved.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| format!("ca.crt is not a PEM certificate bundle: {e}"))?;
            builder = builder.tls_certs_only(certs);
        }
        if let Some(pem) = &resolved.client_identity_pem {
            let identity = reqwest::Identity::from_pem(pem)
                .map_err(|e| format!("tls.crt/tls.key are not a PEM certificate and key: {e}"))?;
            builder = builder.identity(identity);
        }
        let client = builder
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {}", error_chain(&e)))?;
        clients.insert(key, client.clone());
        Ok(client)
    }

    /// Sends `request` and classifies the result. Error texts never hold the
    /// URL or any secret of `resolved`.
    pub async fn send(&self, request: ProviderRequest, resolved: &Resolved) -> Outcome {
        let secrets = resolved.secrets();
        let client = match self.client_for(resolved) {
            Ok(client) => client,
            Err(reason) => {
                return Outcome::Dead {
                    reason,
                    status: 0,
                    body: String::new(),
                };
            }
        };
        let span = tracing::info_span!(
            "sender.http",
            otel.name = "POST",
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            http.request.method = "POST",
            server.address = request.url.host_str().unwrap_or_default(),
            server.port = request.url.port_or_known_default().unwrap_or_default(),
            http.response.status_code = tracing::field::Empty,
            error.type = tracing::field::Empty,
        );
        let outcome = self
            .exchange(client, request, resolved, &secrets)
            .instrument(span.clone())
            .await;
        match &outcome {
            Outcome::Delivered { status } => {
                span.record("http.response.status_code", status);
            }
            Outcome::Retry { status, .. } | Outcome::Dead { status, .. } => {
                span.record("otel.status_code", "error");
                if *status == 0 {
                    span.record("error.type", "transport");
                } else {
                    span.record("http.response.status_code", status);
                    span.record("error.type", status.to_string().as_str());
                }
            }
        }
        outcome
    }

    async fn exchange(
        &self,
        client: reqwest::Client,
        request: ProviderRequest,
        resolved: &Resolved,
        secrets: &[&str],
    ) -> Outcome {
        let mut builder = client
            .post(request.url)
            .timeout(resolved.timeout)
            .body(request.body);
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        let response = match builder.send().await {
            Ok(response) => response,
            Err(error) => {
                let (is_builder, is_timeout) = (error.is_builder(), error.is_timeout());
                let text = mask(&error_chain(&error.without_url()), secrets);
                return if is_builder {
                    Outcome::Dead {
                        reason: format!("cannot build the request: {text}"),
                        status: 0,
                        body: String::new(),
                    }
                } else if is_timeout {
                    Outcome::Retry {
                        reason: format!(
                            "no answer within the Provider timeout of {:?}",
                            resolved.timeout
                        ),
                        status: 0,
                        after: None,
                        body: String::new(),
                    }
                } else {
                    Outcome::Retry {
                        reason: format!("request failed: {text}"),
                        status: 0,
                        after: None,
                        body: String::new(),
                    }
                };
            }
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, jiff::Timestamp::now()));
        let body = match response.bytes().await {
            Ok(body) => body,
            Err(error) => {
                return Outcome::Retry {
                    reason: format!(
                        "cannot read the answer ({status}): {}",
                        mask(&error_chain(&error.without_url()), secrets)
                    ),
                    status,
                    after: retry_after,
                    body: String::new(),
                };
            }
        };
        let body_excerpt = excerpt(&body, secrets);
        match (
            request.validator,
            classify_status(status, retry_after, body_excerpt.clone()),
        ) {
            (Validator::SlackWebApi, Outcome::Delivered { status }) => {
                match slack_web_api_result(&body) {
                    Ok(()) => Outcome::Delivered { status },
                    Err((reason, true)) => Outcome::Retry {
                        reason,
                        status,
                        after: retry_after,
                        body: body_excerpt,
                    },
                    Err((reason, false)) => Outcome::Dead {
                        reason,
                        status,
                        body: body_excerpt,
                    },
                }
            }
            (_, outcome) => outcome,
        }
    }
}
