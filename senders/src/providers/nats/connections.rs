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
#[derive(Clone, Default)]
pub struct NatsConnections {
    kept: Arc<Mutex<HashMap<Key, Kept>>>,
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
        while all.len() > MAX_CONNECTIONS {
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
