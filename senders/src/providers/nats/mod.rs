//! `nats`: the event, as Go's JSON, published on a NATS server's subject
//! (flux-providers §5.10): the address is the server URL, the channel the
//! subject. Authentication, first found wins: the Secret's `creds` (a user
//! JWT and its seed, a `.creds` file), its `nkey` (a user seed that signs
//! the server's nonce), a username and password, its `token` (a Herald
//! addition), or none.
//!
//! Not HTTP: an [`Exchange`] that publishes then flushes, so that the
//! server has the message (or the connection's failure is seen) before the
//! delivery counts as delivered. Connections are kept in
//! [`NatsConnections`], one per server and credentials, and reused.

use std::sync::PoisonError;
use std::time::Duration;

use async_nats::{ConnectErrorKind, ConnectOptions, PublishErrorKind};
use bytes::Bytes;
use tracing::Instrument as _;

mod connections;

pub use connections::NatsConnections;

use super::{Clients, Exchange, Input, Plan, Provider, ProviderError, Writing};
use crate::classify::Masker;
use crate::config::Resolved;
use crate::outcome::Outcome;

/// `nats`.
pub(super) struct Nats;

/// The deadline when the Provider has none.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

impl Provider for Nats {
    fn plan(&self, input: &Input<'_>) -> Result<Plan, ProviderError> {
        let resolved = input.resolved;
        let server = resolved.address.trim();
        if server.is_empty() {
            return Err(ProviderError::missing(
                "nats",
                "NATS server (address) cannot be empty",
            ));
        }
        let subject = resolved.channel.trim();
        if subject.is_empty() {
            return Err(ProviderError::missing(
                "nats",
                "NATS subject (channel) cannot be empty",
            ));
        }
        check_subject(subject)?;
        let auth = Auth::of(resolved)?;
        Ok(Plan::Exchange(Box::new(Publish {
            key: Key {
                server: server.to_owned(),
                auth,
            },
            subject: subject.to_owned(),
            payload: Bytes::from(input.event.to_go_json()),
        })))
    }
}

/// A subject one can publish to: not empty, no whitespace, no empty token,
/// no wildcard.
fn check_subject(subject: &str) -> Result<(), ProviderError> {
    let problem = if subject.chars().any(char::is_whitespace) {
        Some("it contains whitespace")
    } else if subject.split('.').any(str::is_empty) {
        Some("it has an empty token (a leading, trailing or doubled '.')")
    } else if subject.split('.').any(|token| token == "*" || token == ">") {
        Some("wildcards ('*', '>') cannot be published to")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(ProviderError::invalid(
            "nats",
            format!("NATS subject (channel) {subject:?} is not a valid subject: {problem}"),
        )),
        None => Ok(()),
    }
}

/// How a connection authenticates. Holds secrets: no `Debug`, never logged.
#[derive(Clone, PartialEq, Eq, Hash)]
enum Auth {
    /// A `.creds` file: the user JWT and its seed.
    Creds(String),
    /// A user seed.
    Nkey(String),
    UserPassword(String, String),
    Token(String),
    None,
}

impl Auth {
    /// Flux's order: `creds`, `nkey`, username and password; then Herald's
    /// `token`.
    fn of(resolved: &Resolved) -> Result<Self, ProviderError> {
        if let Some(creds) = resolved.secret_text("creds") {
            // Parsed now so that a malformed file is a dead letter at once.
            ConnectOptions::new().credentials(creds).map_err(|_| {
                ProviderError::invalid(
                    "nats",
                    "the Secret's creds is not a NATS credentials file (a user JWT and its nkey seed)",
                )
            })?;
            return Ok(Self::Creds(creds.to_owned()));
        }
        if let Some(seed) = resolved.secret_text("nkey") {
            return Ok(Self::Nkey(seed.trim().to_owned()));
        }
        if !resolved.username.is_empty() && !resolved.password.is_empty() {
            return Ok(Self::UserPassword(
                resolved.username.clone(),
                resolved.password.clone(),
            ));
        }
        if !resolved.token.trim().is_empty() {
            return Ok(Self::Token(resolved.token.trim().to_owned()));
        }
        Ok(Self::None)
    }

    fn options(&self) -> ConnectOptions {
        let options = ConnectOptions::new();
        match self {
            Self::Creds(creds) => options
                .credentials(creds)
                .unwrap_or_else(|_| ConnectOptions::new()),
            Self::Nkey(seed) => options.nkey(seed.clone()),
            Self::UserPassword(user, password) => {
                options.user_and_password(user.clone(), password.clone())
            }
            Self::Token(token) => options.token(token.clone()),
            Self::None => options,
        }
    }
}

/// What a kept connection is for: the server and the credentials, whole
/// (two Providers never share a connection by a collision).
#[derive(Clone, PartialEq, Eq, Hash)]
pub(super) struct Key {
    server: String,
    auth: Auth,
}

/// One event to publish. Holds credentials: never log it.
struct Publish {
    key: Key,
    subject: String,
    payload: Bytes,
}

impl Exchange for Publish {
    fn run<'a>(&'a self, clients: &'a Clients, resolved: &'a Resolved) -> Writing<'a> {
        Box::pin(publish(&clients.nats, resolved, self))
    }
}

/// Why a publish failed.
pub(super) enum Failure {
    Connect(async_nats::ConnectError),
    Publish(async_nats::client::PublishError),
    Flush,
    Server(String),
}

async fn publish(connections: &NatsConnections, resolved: &Resolved, publish: &Publish) -> Outcome {
    let timeout = if resolved.timeout.is_zero() {
        DEFAULT_TIMEOUT
    } else {
        resolved.timeout
    };
    let attempt = async {
        let kept = connections.connection(&publish.key, timeout).await?;
        kept.server_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        kept.client
            .publish(publish.subject.clone(), publish.payload.clone())
            .await
            .map_err(Failure::Publish)?;
        kept.client.flush().await.map_err(|_| Failure::Flush)?;
        // The server answers a PUB it refuses (a permissions violation)
        // with -ERR before the PONG of the flush, but async-nats hands it
        // to the event callback on another task: it is caught when that
        // task has run by now. Best effort: a violation missed here counts
        // as delivered (Go's client records it before the PONG; Flux reads
        // it with LastError).
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        let error = kept
            .server_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        match error {
            Some(error) if error.contains(&publish.subject) => Err(Failure::Server(error)),
            _ => Ok(()),
        }
    };
    // A client span, as HTTP requests have (no server address: it may
    // hold credentials).
    let span = tracing::info_span!(
        "sender.nats",
        otel.name = %format!("publish {}", publish.subject),
        otel.kind = "producer",
        otel.status_code = tracing::field::Empty,
        messaging.system = "nats",
        messaging.operation.type = "publish",
        messaging.destination.name = %publish.subject,
        error.type = tracing::field::Empty,
    );
    let masker = masker(resolved, &publish.key);
    let outcome = match tokio::time::timeout(timeout, attempt)
        .instrument(span.clone())
        .await
    {
        Ok(Ok(())) => return Outcome::Delivered { status: 0 },
        Ok(Err(failure)) => judge(&failure, &masker),
        Err(_) => retry(format!(
            "nats: no answer from the NATS server within the Provider timeout of {timeout:?}"
        )),
    };
    span.record("otel.status_code", "error");
    span.record(
        "error.type",
        if matches!(outcome, Outcome::Dead { .. }) {
            "refused"
        } else {
            "unavailable"
        },
    );
    connections.forget(&publish.key);
    outcome
}

/// Masks the Provider's secrets and the address's userinfo.
fn masker(resolved: &Resolved, key: &Key) -> Masker {
    let mut secrets = resolved.secrets();
    let userinfo = key
        .server
        .split_once("://")
        .and_then(|(_, rest)| rest.split('/').next())
        .and_then(|authority| authority.rsplit_once('@'))
        .map(|(userinfo, _)| userinfo);
    if let Some(userinfo) = userinfo {
        secrets.push(userinfo);
        secrets.extend(userinfo.split(':'));
    }
    Masker::new(secrets)
}

fn retry(reason: String) -> Outcome {
    Outcome::Retry {
        reason,
        status: 0,
        after: None,
        body: String::new(),
    }
}

fn dead(reason: String) -> Outcome {
    Outcome::Dead {
        reason,
        status: 0,
        body: String::new(),
    }
}

/// Connection refused, timeouts and lost connections are retried; refused
/// credentials, bad addresses and refused messages are dead.
fn judge(failure: &Failure, masker: &Masker) -> Outcome {
    match failure {
        Failure::Connect(error) => {
            let detail = masker.mask(&crate::http::error_chain(error));
            match error.kind() {
                ConnectErrorKind::AuthorizationViolation => dead(
                    "nats: the NATS server refused the Provider's credentials (authorization violation)"
                        .to_owned(),
                ),
                ConnectErrorKind::Authentication => dead(
                    "nats: cannot sign the NATS server's nonce: the Secret's nkey or creds seed is not a user seed"
                        .to_owned(),
                ),
                ConnectErrorKind::ServerParse => {
                    dead(format!("nats: the address is not a NATS server URL: {detail}"))
                }
                ConnectErrorKind::Tls => dead(format!("nats: TLS failed: {detail}")),
                ConnectErrorKind::Dns
                | ConnectErrorKind::TimedOut
                | ConnectErrorKind::Io
                | ConnectErrorKind::MaxReconnects => {
                    retry(format!("nats: cannot connect to the NATS server: {detail}"))
                }
            }
        }
        Failure::Publish(error) => match error.kind() {
            PublishErrorKind::InvalidSubject => {
                dead("nats: the NATS subject (channel) is not valid".to_owned())
            }
            PublishErrorKind::MaxPayloadExceeded => {
                dead("nats: the event is larger than the NATS server's max_payload".to_owned())
            }
            PublishErrorKind::Send => {
                retry("nats: the connection to the NATS server was lost".to_owned())
            }
        },
        Failure::Flush => {
            retry("nats: the NATS server did not confirm the publish (connection lost)".to_owned())
        }
        Failure::Server(error) => {
            let error = masker.mask(error);
            if error.to_lowercase().contains("permissions violation") {
                dead(format!(
                    "nats: the NATS server refused the publish: {error}"
                ))
            } else {
                retry(format!("nats: the NATS server answered: {error}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_flux::FluxEvent;
    use herald_flux::objects::SecretData;

    fn resolved(address: &str, channel: &str) -> Resolved {
        Resolved {
            provider_type: "nats".into(),
            address: address.into(),
            channel: channel.into(),
            timeout: Duration::from_secs(2),
            ..Resolved::default()
        }
    }

    fn plan(resolved: &Resolved) -> Result<Plan, ProviderError> {
        let event = FluxEvent::from_json(
            br#"{"involvedObject":{"kind":"Kustomization","namespace":"flux-system","name":"apps"},
                "severity":"info","timestamp":"2024-01-01T10:00:00Z","message":"a<b",
                "reason":"ReconciliationSucceeded","reportingController":"kustomize-controller"}"#,
        )
        .unwrap();
        let identifier = || Err(String::new());
        Nats.plan(&Input {
            event: &event,
            alert: &crate::providers::AlertIdentity::default(),
            resolved,
            identifier: &identifier,
            thread: None,
        })
    }

    fn error(resolved: &Resolved) -> String {
        plan(resolved).err().expect("an error").to_string()
    }

    fn secret(entries: &[(&str, &str)]) -> SecretData {
        entries
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn address_and_subject_are_required_as_in_flux() {
        assert_eq!(
            error(&resolved("", "flux.events")),
            "nats: NATS server (address) cannot be empty"
        );
        assert_eq!(
            error(&resolved("nats://127.0.0.1:4222", "")),
            "nats: NATS subject (channel) cannot be empty"
        );
        for bad in ["flux events", "flux..events", ".flux", "flux.*", "flux.>"] {
            let text = error(&resolved("nats://127.0.0.1:4222", bad));
            assert!(text.contains("is not a valid subject"), "{bad}: {text}");
        }
    }

    #[test]
    fn the_payload_is_the_event_as_go_json() {
        let Ok(Plan::Exchange(_)) = plan(&resolved("nats://127.0.0.1:4222", "flux.events")) else {
            panic!("an exchange");
        };
        let r = resolved("nats://127.0.0.1:4222", "flux.events");
        let event = FluxEvent::from_json(br#"{"message":"a<b"}"#).unwrap();
        let publish = Publish {
            key: Key {
                server: r.address.clone(),
                auth: Auth::None,
            },
            subject: r.channel.clone(),
            payload: Bytes::from(event.to_go_json()),
        };
        assert_eq!(
            &publish.payload[..],
            br#"{"involvedObject":{},"severity":"","timestamp":null,"message":"a\u003cb","reason":"","reportingController":""}"#
        );
    }

    #[test]
    fn authentication_follows_flux_order_then_token() {
        let mut r = resolved("nats://127.0.0.1:4222", "s");
        assert!(Auth::of(&r).unwrap() == Auth::None);
        r.token = "tok".into();
        assert!(Auth::of(&r).unwrap() == Auth::Token("tok".into()));
        r.username = "u".into();
        r.password = "p".into();
        assert!(Auth::of(&r).unwrap() == Auth::UserPassword("u".into(), "p".into()));
        r.secret = crate::config::secret_holding(secret(&[("nkey", " SUASEED \n")]));
        assert!(Auth::of(&r).unwrap() == Auth::Nkey("SUASEED".into()));
        r.secret = crate::config::secret_holding(secret(&[
            ("nkey", "SUAX"),
            ("creds", "not a creds file S3cretSeed"),
        ]));
        let text = Auth::of(&r).err().unwrap().to_string();
        assert!(text.contains("not a NATS credentials file"), "{text}");
        assert!(!text.contains("S3cret"), "{text}");
    }

    #[tokio::test]
    async fn a_refused_connection_is_retried_and_not_kept() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut r = resolved(
            &format!("nats://u:pw-secret@127.0.0.1:{port}"),
            "flux.events",
        );
        r.password = "pw-secret".into();
        let Ok(Plan::Exchange(exchange)) = plan(&r) else {
            panic!("an exchange");
        };
        let clients = Clients::default();
        let outcome = exchange.run(&clients, &r).await;
        let Outcome::Retry { reason, .. } = outcome else {
            panic!("retried: {outcome:?}");
        };
        assert!(reason.starts_with("nats: cannot connect"), "{reason}");
        assert!(!reason.contains("pw-secret"), "{reason}");
        assert_eq!(clients.nats.len(), 0);
    }

    #[tokio::test]
    async fn a_silent_server_is_retried_within_the_timeout() {
        // Accepts connections and never says a word (no INFO).
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let held = tokio::spawn(async move {
            let mut sockets = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                sockets.push(socket);
            }
        });
        let mut r = resolved(&format!("nats://127.0.0.1:{port}"), "flux.events");
        r.timeout = Duration::from_millis(300);
        let Ok(Plan::Exchange(exchange)) = plan(&r) else {
            panic!("an exchange");
        };
        let clients = Clients::default();
        let outcome = exchange.run(&clients, &r).await;
        assert!(matches!(outcome, Outcome::Retry { .. }), "{outcome:?}");
        assert_eq!(clients.nats.len(), 0);
        held.abort();
    }
}
