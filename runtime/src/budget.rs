//! Storage budgets. Every Herald stream and bucket has a byte budget
//! (JetStream's `max_bytes`), reserved on the server when it is created, so
//! that events can never take the room their deliveries and dead letters
//! need. What each stream does at its limit:
//!
//! - HERALD_EVENTS refuses new events (discard `new`): ingest answers `503`
//!   with `Retry-After` before the budget is spent, and the router trims
//!   events it has already routed when the stream passes three quarters of
//!   its budget, so the log frees itself and never drops an unrouted event.
//! - HERALD_DELIVERIES refuses new deliveries (discard `new`): the router
//!   puts the event back with a growing delay and tries again; senders free
//!   room as they deliver.
//! - HERALD_DEAD drops its oldest dead letters (discard `old`), so a sender
//!   can always bury a delivery and move on.
//!
//! A budget that is reached is logged once when it happens and once when it
//! clears, shown on `/readyz`, and exported as metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use tokio_util::sync::CancellationToken;

use crate::health::Readiness;
use crate::metrics::Metrics;

/// Parses a byte size: `1048576`, `512KiB`, `64MiB`, `1GiB`, `2TiB`, or the
/// decimal `KB`, `MB`, `GB`, `TB` (powers of 1000); `K`, `M`, `G`, `T` alone
/// are binary, as NATS reads them.
///
/// # Errors
///
/// A message saying what is wrong.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("invalid size {text:?}: expected a number such as 512MiB"))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        other => return Err(format!("invalid size {text:?}: unknown unit {other:?}")),
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("invalid size {text:?}: too large"))
}

/// Formats a byte size for people (`1.0 GiB`).
#[must_use]
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// How many key-value buckets Herald keeps, each with `--kv-max-bytes`.
pub const KV_BUCKETS: u64 = 8;

/// The byte budget of each stream and bucket (per replica; a stream with
/// three replicas reserves three times its budget in the cluster).
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct Budgets {
    /// HERALD_EVENTS's budget: room for the events not yet routed (and a log
    /// of routed ones, trimmed when room is needed).
    #[arg(long, global = true, env = "HERALD_EVENTS_MAX_BYTES", default_value = "1GiB", value_parser = parse_bytes)]
    pub events_max_bytes: u64,
    /// HERALD_DELIVERIES's budget: deliveries waiting to be sent or retried.
    #[arg(long, global = true, env = "HERALD_DELIVERIES_MAX_BYTES", default_value = "1GiB", value_parser = parse_bytes)]
    pub deliveries_max_bytes: u64,
    /// HERALD_DEAD's budget; past it the oldest dead letters are dropped.
    #[arg(long, global = true, env = "HERALD_DEAD_MAX_BYTES", default_value = "256MiB", value_parser = parse_bytes)]
    pub dead_max_bytes: u64,
    /// HERALD_GROUPS's budget: deliveries of Alerts that group, gathered
    /// until their digest is due.
    #[arg(long, global = true, env = "HERALD_GROUPS_MAX_BYTES", default_value = "256MiB", value_parser = parse_bytes)]
    pub groups_max_bytes: u64,
    /// The budget of each key-value bucket (HERALD_DEDUPE, HERALD_PACING,
    /// HERALD_COMMIT_STATUS, HERALD_OBJECTS, HERALD_THREADS, HERALD_GROUP_DUE,
    /// HERALD_REPEATS, HERALD_RECOVERY).
    #[arg(long, global = true, env = "HERALD_KV_MAX_BYTES", default_value = "256MiB", value_parser = parse_bytes)]
    pub kv_max_bytes: u64,
}

impl Default for Budgets {
    fn default() -> Self {
        Self {
            events_max_bytes: 1 << 30,
            deliveries_max_bytes: 1 << 30,
            dead_max_bytes: 256 << 20,
            groups_max_bytes: 256 << 20,
            kv_max_bytes: 256 << 20,
        }
    }
}

impl Budgets {
    /// The storage every budget together reserves on one replica.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.events_max_bytes
            + self.deliveries_max_bytes
            + self.dead_max_bytes
            + self.groups_max_bytes
            + KV_BUCKETS * self.kv_max_bytes
    }
}

/// Whether a JetStream error says that a stream, or the server's store, has
/// no room for a message.
#[must_use]
pub fn is_out_of_room(error: &str) -> bool {
    let error = error.to_ascii_lowercase();
    [
        "maximum bytes exceeded",
        "maximum messages exceeded",
        "insufficient resources",
        "insufficient storage",
        "storage resources exceeded",
        "no space left",
    ]
    .iter()
    .any(|needle| error.contains(needle))
}

/// Label set `stream`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamLabels {
    pub stream: String,
}

/// The fill of a stream past which ingest refuses new events: the last 5%
/// are left for the events in flight when it decides.
pub const REFUSE_AT: f64 = 0.95;

/// One stream's budget as this process sees it, shared by its tasks.
#[derive(Clone, Debug)]
pub struct StreamBudget {
    stream: &'static str,
    max_bytes: u64,
    full: Arc<AtomicBool>,
    metrics: Metrics,
    readiness: Readiness,
}

// === impl StreamBudget ===

impl StreamBudget {
    /// The budget of `stream`, `max_bytes` long.
    #[must_use]
    pub fn new(
        stream: &'static str,
        max_bytes: u64,
        metrics: Metrics,
        readiness: Readiness,
    ) -> Self {
        let budget = Self {
            stream,
            max_bytes,
            full: Arc::default(),
            metrics,
            readiness,
        };
        budget
            .metrics
            .stream_max_bytes
            .get_or_create(&budget.labels())
            .set(i64::try_from(max_bytes).unwrap_or(i64::MAX));
        budget
    }

    fn labels(&self) -> StreamLabels {
        StreamLabels {
            stream: self.stream.to_owned(),
        }
    }

    /// The stream's name.
    #[must_use]
    pub fn stream(&self) -> &'static str {
        self.stream
    }

    /// The budget in bytes.
    #[must_use]
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Whether the stream has no room to spare now.
    #[must_use]
    pub fn is_full(&self) -> bool {
        self.full.load(Ordering::Relaxed)
    }

    /// Records the stream's size, read from the server: full at
    /// [`REFUSE_AT`] of the budget.
    pub fn observe(&self, bytes: u64) {
        self.metrics
            .stream_bytes
            .get_or_create(&self.labels())
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        let full = self.max_bytes > 0 && bytes as f64 >= self.max_bytes as f64 * REFUSE_AT;
        self.set_full(full, bytes);
    }

    /// Records that JetStream refused a message for lack of room.
    pub fn refused(&self) {
        self.metrics
            .budget_refusals
            .get_or_create(&self.labels())
            .inc();
        self.set_full(true, self.max_bytes);
    }

    /// Records that a message was stored: there was room after all.
    pub fn stored(&self) {
        if self.is_full() {
            // Confirmed by the next observation; until then assume room.
            self.full.store(false, Ordering::Relaxed);
        }
    }

    fn set_full(&self, full: bool, bytes: u64) {
        let was = self.full.swap(full, Ordering::Relaxed);
        self.metrics
            .stream_budget_full
            .get_or_create(&self.labels())
            .set(i64::from(full));
        let topic = format!("budget {}", self.stream);
        if full && !was {
            tracing::warn!(
                stream = self.stream,
                bytes,
                max_bytes = self.max_bytes,
                "Stream has reached its storage budget; new messages wait until room is freed."
            );
            self.readiness.set_details(
                &topic,
                vec![format!(
                    "full: {} of {} used; raise its budget (see the README's storage budgets) or \
                     find what is not draining it",
                    format_bytes(bytes),
                    format_bytes(self.max_bytes)
                )],
            );
        } else if !full && was {
            tracing::info!(stream = self.stream, bytes, "Stream has room again.");
            self.readiness.set_details(&topic, Vec::new());
        }
    }

    /// Reads the stream's size from the server every `every` until `cancel`
    /// fires.
    pub async fn watch(
        self,
        jetstream: async_nats::jetstream::Context,
        every: Duration,
        cancel: CancellationToken,
    ) {
        loop {
            match jetstream.get_stream(self.stream).await {
                Ok(mut stream) => match stream.info().await {
                    Ok(info) => self.observe(info.state.bytes),
                    Err(error) => {
                        tracing::debug!(stream = self.stream, error = %error, "Cannot read the stream's size.");
                    }
                },
                Err(error) => {
                    tracing::debug!(stream = self.stream, error = %error, "Cannot read the stream's size.");
                }
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes_as_nats_does() {
        assert_eq!(parse_bytes("1048576"), Ok(1_048_576));
        assert_eq!(parse_bytes("512KiB"), Ok(512 * 1024));
        assert_eq!(parse_bytes("64MiB"), Ok(64 << 20));
        assert_eq!(parse_bytes("1GiB"), Ok(1 << 30));
        assert_eq!(parse_bytes("1G"), Ok(1 << 30));
        assert_eq!(parse_bytes("2GB"), Ok(2_000_000_000));
        assert!(parse_bytes("lots").unwrap_err().contains("512MiB"));
        assert!(parse_bytes("1XB").unwrap_err().contains("unknown unit"));
        assert!(parse_bytes("99999999999T").is_err());
    }

    #[test]
    fn formats_sizes() {
        assert_eq!(format_bytes(512), "512 B");
        assert_eq!(format_bytes(1 << 30), "1.0 GiB");
        assert_eq!(format_bytes(3 * (1 << 19)), "1.5 MiB");
    }

    #[test]
    fn recognises_out_of_room_errors() {
        assert!(is_out_of_room("nats: maximum bytes exceeded"));
        assert!(is_out_of_room("insufficient resources (10023)"));
        assert!(!is_out_of_room("timed out: didn't receive ack in time"));
    }

    #[test]
    fn full_is_reported_once_and_cleared() {
        let metrics = Metrics::new();
        let readiness = Readiness::default();
        let budget = StreamBudget::new("HERALD_EVENTS", 1000, metrics.clone(), readiness.clone());
        budget.observe(500);
        assert!(!budget.is_full());
        budget.observe(960);
        assert!(budget.is_full());
        assert!(
            readiness
                .report()
                .to_text()
                .contains("budget HERALD_EVENTS: full")
        );
        assert!(
            metrics
                .encode()
                .contains(r#"herald_stream_budget_full{stream="HERALD_EVENTS"} 1"#)
        );
        budget.observe(100);
        assert!(!budget.is_full());
        assert!(!readiness.report().to_text().contains("budget"));
    }
}
