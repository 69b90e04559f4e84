//! `herald ingest`: receives Flux events over HTTP (wire-compatible with the
//! notification-controller) and gRPC, and stores each on HERALD_EVENTS,
//! answering only after JetStream acknowledged it.

#![forbid(unsafe_code)]

pub mod clusters;
pub mod dedupe;
pub mod grpc;
pub mod http;
pub mod intake;
pub mod share;

use std::net::SocketAddr;
use std::time::Duration;

use herald_runtime::nats::retry_until_ready;
use herald_runtime::serve::{self, Deadlines, Protocol};
use herald_runtime::tls::{ServerCert, TlsArgs};
use herald_runtime::{Metrics, Nats, Readiness};
use tokio_util::sync::CancellationToken;

pub use clusters::Clusters;
pub use intake::{IngestError, Intake};
pub use share::{ShareLimits, Shares};

/// Settings of `herald ingest`.
#[derive(Debug, Clone, clap::Args)]
pub struct IngestArgs {
    /// Where Flux controllers POST events (their `--events-addr`).
    #[arg(long, env = "HERALD_LISTEN", default_value = "0.0.0.0:9090")]
    pub listen: SocketAddr,
    /// Where bulk clients call the gRPC intake; `off` disables it.
    #[arg(long, env = "HERALD_GRPC_LISTEN", default_value = "0.0.0.0:9091")]
    pub grpc_listen: OptionalAddr,
    /// The cluster name stamped on events when no clusters file
    /// (`--clusters-file`) is configured.
    #[arg(long, env = "HERALD_CLUSTER", default_value = "default")]
    pub cluster: String,
    /// The largest request body accepted, in bytes (Flux's is 3 MiB).
    #[arg(long, env = "HERALD_MAX_BODY_BYTES", default_value_t = http::MAX_BODY_BYTES)]
    pub max_body_bytes: usize,
    /// Flux's dedupe window: an event with the same object, message and
    /// revision as one that passed in the current window is answered but not
    /// stored. `0s` turns it off.
    #[arg(long, env = "HERALD_RATE_LIMIT_INTERVAL", default_value = "5m", value_parser = herald_runtime::nats::parse_duration)]
    pub rate_limit_interval: Duration,
    /// How long to wait for JetStream to acknowledge an event before answering 503.
    #[arg(long, env = "HERALD_PUBLISH_TIMEOUT", default_value = "4s", value_parser = herald_runtime::nats::parse_duration)]
    pub publish_timeout: Duration,
    /// How long a request body may take to arrive once its headers have: an
    /// HTTP event not all in by then is answered `408 Request Timeout`, and
    /// a gRPC call must be received and answered within this plus three
    /// times `--publish-timeout` (waiting for a turn within the cluster's
    /// share, the dedupe check and the publish each have that long). Thirty
    /// seconds carries a 3 MiB event over a 100 KiB/s link and still frees a
    /// stalled connection soon.
    #[arg(long, env = "HERALD_BODY_READ_TIMEOUT", default_value = "30s", value_parser = herald_runtime::serve::parse_positive_duration)]
    pub body_read_timeout: Duration,
    /// Each cluster's share, with a clusters file: how many of its events
    /// may be received or stored at once. Past it the cluster is answered
    /// `503` with `Retry-After`, which every Flux emitter retries, while the
    /// other clusters are served at once. A Flux cluster posts one event per
    /// busy reconcile worker, tens at most. `0` is no bound.
    #[arg(long, env = "HERALD_CLUSTER_MAX_IN_FLIGHT", default_value_t = 64)]
    pub cluster_max_in_flight: usize,
    /// Each cluster's share, with a clusters file: events per second it may
    /// send, sustained, into the stream and router every cluster shares;
    /// past it (and `--cluster-burst`), `503` with `Retry-After`. `0` is no
    /// bound.
    #[arg(long, env = "HERALD_CLUSTER_RATE", default_value_t = 100.0, value_parser = parse_rate)]
    pub cluster_rate: f64,
    /// How many events a cluster may send at once above `--cluster-rate`.
    /// A burst admitted at once is routed before the events that come
    /// after it, every cluster's: 200 is a few tens of milliseconds of
    /// routing and sending, and a Flux cluster retries what is over it
    /// after the `Retry-After`.
    #[arg(long, env = "HERALD_CLUSTER_BURST", default_value_t = 200)]
    pub cluster_burst: u32,
    /// The certificate HTTP and gRPC are served with, over TLS.
    #[command(flatten)]
    pub tls: TlsArgs,
}

impl IngestArgs {
    /// Each cluster's share as the flags set it.
    #[must_use]
    pub fn share_limits(&self) -> ShareLimits {
        ShareLimits {
            max_in_flight: self.cluster_max_in_flight,
            rate: self.cluster_rate,
            burst: self.cluster_burst,
        }
    }
}

/// Parses an events-per-second rate: a number, zero or more.
fn parse_rate(text: &str) -> Result<f64, String> {
    let rate: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of events per second"))?;
    if !rate.is_finite() || rate < 0.0 {
        return Err(format!("{text:?} must be zero or more events per second"));
    }
    Ok(rate)
}

/// How often ingest reads HERALD_EVENTS's size.
const BUDGET_POLL: Duration = Duration::from_secs(1);

/// A listen address, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionalAddr(pub Option<SocketAddr>);

impl std::str::FromStr for OptionalAddr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if text == "off" {
            return Ok(Self(None));
        }
        text.parse()
            .map(|addr| Self(Some(addr)))
            .map_err(|e| format!("invalid address {text:?}: {e}"))
    }
}

/// A bound, ready-to-run ingest service.
pub struct App {
    http: tokio::net::TcpListener,
    grpc: Option<tokio::net::TcpListener>,
    router: axum::Router,
    grpc_router: axum::Router,
    intake: Intake,
    tls: Option<ServerCert>,
    metrics: Metrics,
}

// === impl App ===

impl App {
    /// Binds the listeners and makes sure HERALD_EVENTS exists (retrying
    /// until NATS answers or `cancel` fires).
    ///
    /// # Errors
    ///
    /// When the TLS certificate or key cannot be used, a listener cannot be
    /// bound, or cancelled before the stream could be created.
    pub async fn build(
        args: &IngestArgs,
        fleet: Option<herald_runtime::clusters::Fleet>,
        nats: Nats,
        metrics: Metrics,
        readiness: &Readiness,
        cancel: &CancellationToken,
    ) -> anyhow::Result<Self> {
        let tls = ServerCert::from_args(&args.tls)
            .map_err(|e| anyhow::anyhow!("cannot serve TLS: {e}"))?;
        // Shares need a cluster's identity, which only a clusters file proves.
        let clusters = match fleet {
            Some(fleet) => Clusters::with_fleet(&args.cluster, fleet)
                .with_shares(Shares::new(args.share_limits())),
            None => Clusters::open(&args.cluster),
        };
        readiness.register("events-stream");
        let http = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
        let grpc = match args.grpc_listen.0 {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?,
            ),
            None => None,
        };
        retry_until_ready("HERALD_EVENTS", cancel, || {
            nats.ensure_events_stream(herald_runtime::edges::EventSources::Keep)
        })
        .await?;
        let dedupe = if args.rate_limit_interval.is_zero() {
            None
        } else {
            let store = retry_until_ready("HERALD_DEDUPE", cancel, || {
                nats.ensure_dedupe_bucket(args.rate_limit_interval)
            })
            .await?;
            let mut dedupe = dedupe::Dedupe::new(store, args.rate_limit_interval);
            dedupe.detect_legacy(&nats.jetstream).await;
            Some(dedupe)
        };
        readiness.set("events-stream", true);
        let budget = herald_runtime::budget::StreamBudget::new(
            herald_proto::names::EVENTS_STREAM,
            nats.args.budgets.events_max_bytes,
            metrics.clone(),
            readiness.clone(),
        );
        let intake = Intake::new(nats, metrics.clone(), args.publish_timeout, dedupe, budget);
        Ok(Self {
            router: http::router(
                intake.clone(),
                clusters.clone(),
                args.max_body_bytes,
                args.body_read_timeout,
            ),
            grpc_router: grpc::router(
                intake.clone(),
                clusters,
                args.publish_timeout,
                args.body_read_timeout + args.publish_timeout * 3,
            ),
            http,
            grpc,
            intake,
            tls,
            metrics,
        })
    }

    /// The HTTP listener's address.
    ///
    /// # Errors
    ///
    /// When the socket has no local address.
    pub fn http_addr(&self) -> std::io::Result<SocketAddr> {
        self.http.local_addr()
    }

    /// The gRPC listener's address, when enabled.
    #[must_use]
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.grpc.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Whether HTTP and gRPC are served over TLS.
    #[must_use]
    pub fn serves_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The intake, for callers inside the process.
    #[must_use]
    pub fn intake(&self) -> &Intake {
        &self.intake
    }

    /// Serves until `cancel` fires, cutting off slow clients at `deadlines`,
    /// then stops accepting and finishes the requests in flight (each waits
    /// for its own JetStream ack).
    ///
    /// # Errors
    ///
    /// When a listener has no local address.
    pub async fn run(self, deadlines: Deadlines, cancel: CancellationToken) -> anyhow::Result<()> {
        tokio::spawn(self.intake.budget().clone().watch(
            self.intake.nats().jetstream.clone(),
            BUDGET_POLL,
            cancel.clone(),
        ));
        let (http_tls, grpc_tls) = match &self.tls {
            Some(cert) => {
                tokio::spawn(cert.clone().watch(self.metrics.clone(), cancel.clone()));
                (
                    Some(cert.acceptor(&[b"http/1.1"])?),
                    Some(cert.acceptor(&[b"h2"])?),
                )
            }
            None => (None, None),
        };
        let over = if self.tls.is_some() { "HTTPS" } else { "HTTP" };
        tracing::info!(addr = %self.http.local_addr()?, "Receiving Flux events over {over}.");
        let http = serve::serve(
            self.http,
            self.router,
            Protocol::Http1,
            http_tls,
            deadlines,
            cancel.clone(),
        );
        let grpc = async {
            if let Some(listener) = self.grpc {
                let over = if grpc_tls.is_some() {
                    "gRPC over TLS"
                } else {
                    "gRPC"
                };
                tracing::info!(addr = %listener.local_addr()?, "Receiving Flux events over {over}.");
                serve::serve(
                    listener,
                    self.grpc_router,
                    Protocol::Http2,
                    grpc_tls,
                    deadlines,
                    cancel,
                )
                .await;
            }
            anyhow::Ok(())
        };
        let ((), grpc) = tokio::join!(http, grpc);
        grpc
    }
}
