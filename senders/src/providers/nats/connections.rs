//! The NATS connections the `nats` provider publishes through, kept for
//! reuse: one per server and credentials. Holds credentials: nothing here
//! is logged.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::{Failure, Key};

/// The connection name Flux gives its publisher.
const CONNECTION_NAME: &str = "NATS Provider Publisher";
/// At most this many connections are kept; the least recently used goes.
const MAX_CONNECTIONS: usize = 64;
/// A connection unused this long is closed (when the next one is asked for).
const IDLE: Duration = Duration::from_secs(300);
/// Reconnects a kept connection tries before it gives up (and closes).
const MAX_RECONNECTS: usize = 3;

/// NATS connections kept for reuse, by server and credentials. A
/// connection is dropped when a publish on it fails, when it is not
/// connected, when it was unused for [`IDLE`], and, beyond
/// [`MAX_CONNECTIONS`], the least recently used first.
#[derive(Clone)]
pub struct NatsConnections {
    kept: Arc<Mutex<HashMap<Key, Kept>>>,
    limit: usize,
}

impl Default for NatsConnections {
    fn default() -> Self {
        Self {
            kept: Arc::default(),
            limit: MAX_CONNECTIONS,
        }
    }
}

impl std::fmt::Debug for NatsConnections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NatsConnections")
    }
}

/// A connection, when it was last used, and the last error the server
/// sent on it (a permissions violation comes after the publish).
#[derive(Clone)]
pub(super) struct Kept {
    pub(super) client: async_nats::Client,
    last_used: Instant,
    pub(super) server_error: Arc<Mutex<Option<String>>>,
}

impl NatsConnections {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Kept>> {
        self.kept.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The kept connection for `key` when it is still connected.
    fn kept(&self, key: &Key) -> Option<Kept> {
        let now = Instant::now();
        let mut kept = self.lock();
        kept.retain(|_, k| {
            now.duration_since(k.last_used) < IDLE
                && k.client.connection_state() == async_nats::connection::State::Connected
        });
        let entry = kept.get_mut(key)?;
        entry.last_used = now;
        Some(entry.clone())
    }

    /// A connection for `key`: the kept one, else a new one (kept).
    pub(super) async fn connection(&self, key: &Key, timeout: Duration) -> Result<Kept, Failure> {
        if let Some(kept) = self.kept(key) {
            return Ok(kept);
        }
        let server_error = Arc::new(Mutex::new(None));
        let noted = server_error.clone();
        let client = key
            .auth
            .options()
            .name(CONNECTION_NAME)
            .connection_timeout(timeout)
            .max_reconnects(MAX_RECONNECTS)
            .event_callback(move |event| {
                let noted = noted.clone();
                async move {
                    if let async_nats::Event::ServerError(error) = event {
                        *noted.lock().unwrap_or_else(PoisonError::into_inner) =
                            Some(error.to_string());
                    }
                }
            })
            .connect(key.server.as_str())
            .await
            .map_err(Failure::Connect)?;
        let kept = Kept {
            client,
            last_used: Instant::now(),
            server_error,
        };
        let mut all = self.lock();
        all.insert(key.clone(), kept.clone());
        while all.len() > self.limit {
            let Some(oldest) = all
                .iter()
                .min_by_key(|(_, k)| k.last_used)
                .map(|(key, _)| key.clone())
            else {
                break;
            };
            all.remove(&oldest);
        }
        Ok(kept)
    }

    /// Drops the kept connection for `key` (it failed).
    pub(super) fn forget(&self, key: &Key) {
        self.lock().remove(key);
    }

    /// How many connections are kept.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::super::Auth;
    use super::*;
    use herald_runtime::local_nats::{LocalNatsServer, find_binary};

    /// A real nats-server, or `None` outside CI when there is none.
    async fn server() -> Option<LocalNatsServer> {
        if find_binary().is_err() && std::env::var_os("CI").is_none() {
            eprintln!("no nats-server (HERALD_NATS_SERVER or PATH): connection cache test not run");
            return None;
        }
        Some(LocalNatsServer::start().await.expect("a nats-server"))
    }

    fn key(server: &LocalNatsServer, token: &str) -> Key {
        Key {
            server: server.url(),
            auth: Auth::Token(token.to_owned()),
        }
    }

    #[tokio::test]
    async fn connections_are_reused_bounded_and_dropped_when_lost() {
        let Some(mut server) = server().await else {
            return;
        };
        let connections = NatsConnections {
            limit: 2,
            ..NatsConnections::default()
        };
        let timeout = Duration::from_secs(5);
        let id = |kept: Result<Kept, Failure>| {
            kept.ok().expect("connected").client.server_info().client_id
        };
        let (a, b, c) = (key(&server, "a"), key(&server, "b"), key(&server, "c"));
        let first = id(connections.connection(&a, timeout).await);
        id(connections.connection(&b, timeout).await);
        // The same server and credentials: the same connection.
        assert_eq!(id(connections.connection(&a, timeout).await), first);
        assert_eq!(connections.len(), 2);
        // A third: the least recently used (b) goes.
        id(connections.connection(&c, timeout).await);
        assert_eq!(connections.len(), 2);
        assert!(connections.lock().contains_key(&a) && !connections.lock().contains_key(&b));
        // A lost server: its connections are not handed out again.
        server.stop().await.expect("stop nats-server");
        let start = Instant::now();
        while connections
            .lock()
            .values()
            .any(|k| k.client.connection_state() == async_nats::connection::State::Connected)
        {
            assert!(start.elapsed() < Duration::from_secs(10), "still connected");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(connections.connection(&a, timeout).await.is_err());
        assert_eq!(connections.len(), 0);
    }
}
