//! What every Herald service shares: the NATS connection and the JetStream
//! streams and consumers, the catalog of Alerts and Providers, the admin
//! listener with health, readiness and metrics, serving HTTP (and HTTPS) with
//! deadlines, writing Events, status and a leader Lease back to Kubernetes,
//! logs, and shutdown.
//!
//! Services (ingest, router, senders) depend on this crate; it depends on none
//! of them.

#![forbid(unsafe_code)]

pub mod admin;
pub mod budget;
pub mod build;
pub mod catalog;
pub mod clusters;
pub mod consume;
pub mod edges;
pub mod health;
mod held;
pub mod kubernetes;
pub mod kv;
pub mod local_nats;
pub mod metrics;
pub mod nats;
mod nats_url;
pub mod propagation;
mod pull;
pub mod serve;
pub mod shutdown;
pub mod telemetry;
pub mod text;
pub mod tls;

pub use catalog::{Catalog, CatalogArgs, Snapshot};
pub use health::Readiness;
pub use metrics::Metrics;
pub use nats::{Nats, NatsArgs};
