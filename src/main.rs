//! `herald`: delivers Flux CD events to chat, git hosts and dashboards through
//! NATS JetStream. One binary, one subcommand per service.

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use herald_runtime::admin::AdminServer;
use herald_runtime::catalog::{self, CatalogArgs};
use herald_runtime::local_nats::LocalNatsServer;
use herald_runtime::nats::{self as hnats, NatsArgs, parse_duration};
use herald_runtime::telemetry::{self, LogFormat};
use herald_runtime::{Metrics, Readiness};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Delivers Flux CD events through NATS JetStream, losing nothing.
#[derive(Parser)]
#[command(name = "herald", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Receive Flux events (HTTP and gRPC) and store them on JetStream.
    Ingest {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        nats: NatsArgs,
        #[command(flatten)]
        ingest: herald_ingest::IngestArgs,
    },
    /// Match events against Alerts and queue one delivery per Provider.
    Router {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        nats: NatsArgs,
        #[command(flatten)]
        catalog: CatalogArgs,
        #[command(flatten)]
        router: herald_router::RouterArgs,
    },
    /// Send deliveries to their Providers, with retries and dead letters.
    Sender {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        nats: NatsArgs,
        #[command(flatten)]
        catalog: CatalogArgs,
        #[command(flatten)]
        sender: herald_senders::SenderArgs,
    },
    /// Ingest, router and sender in one process; starts its own nats-server
    /// when no --nats-url is given.
    Standalone {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        nats: NatsArgs,
        #[command(flatten)]
        catalog: CatalogArgs,
        #[command(flatten)]
        ingest: herald_ingest::IngestArgs,
        #[command(flatten)]
        router: herald_router::RouterArgs,
        #[command(flatten)]
        sender: herald_senders::SenderArgs,
    },
    /// Check a folder of Alerts, Providers and Secrets; one line per problem.
    Validate {
        /// The folder to check.
        dir: PathBuf,
        /// The namespace of objects whose manifest names none.
        #[arg(long, default_value = "default")]
        default_namespace: String,
    },
}

/// Flags every service has.
#[derive(Clone, clap::Args)]
struct Common {
    /// Where /healthz, /readyz and /metrics are served.
    #[arg(long, env = "HERALD_ADMIN_LISTEN", default_value = "0.0.0.0:8080")]
    admin_listen: SocketAddr,
    /// Log line format.
    #[arg(long, env = "HERALD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    /// How long a shutdown may take to finish the work in hand.
    #[arg(long, env = "HERALD_SHUTDOWN_GRACE", default_value = "20s", value_parser = parse_duration)]
    shutdown_grace: Duration,
}

fn main() -> ExitCode {
    // One TLS crypto provider for the whole process (NATS, HTTP clients).
    rustls::crypto::ring::default_provider()
        .install_default()
        .expect("no other TLS crypto provider is installed yet");
    let cli = Cli::parse();
    if let Command::Validate {
        dir,
        default_namespace,
    } = &cli.command
    {
        return validate(dir, default_namespace);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("herald: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = %format!("{error:#}"), "Herald stopped.");
            eprintln!("herald: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn validate(dir: &std::path::Path, default_namespace: &str) -> ExitCode {
    match catalog::load_folder(dir, default_namespace) {
        Err(error) => {
            println!("{}: cannot read: {error}", dir.display());
            ExitCode::from(2)
        }
        Ok(snapshot) => {
            for problem in &snapshot.problems {
                println!("{problem}");
            }
            let (alerts, providers, secrets) = snapshot.counts();
            eprintln!(
                "{}: {alerts} alerts, {providers} providers, {secrets} secrets, {} problems",
                dir.display(),
                snapshot.problems.len()
            );
            if snapshot.problems.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Runs the services of `command` until a signal, then drains them.
async fn serve(command: Command) -> anyhow::Result<()> {
    let (common, nats_args) = match &command {
        Command::Ingest { common, nats, .. }
        | Command::Router { common, nats, .. }
        | Command::Sender { common, nats, .. }
        | Command::Standalone { common, nats, .. } => (common.clone(), nats.clone()),
        Command::Validate { .. } => unreachable!("validate runs without a runtime"),
    };
    let service = match &command {
        Command::Ingest { .. } => "herald-ingest",
        Command::Router { .. } => "herald-router",
        Command::Sender { .. } => "herald-sender",
        _ => "herald",
    };
    let telemetry = telemetry::init(common.log_format, service)?;
    if telemetry.exporting() {
        tracing::info!("Exporting traces over OTLP.");
    }
    let result = run(command, &common, nats_args, service).await;
    telemetry.shutdown().await;
    result
}

async fn run(
    command: Command,
    common: &Common,
    nats_args: NatsArgs,
    service: &str,
) -> anyhow::Result<()> {
    let cancel = CancellationToken::new();
    herald_runtime::shutdown::cancel_on_signal(cancel.clone());
    let readiness = Readiness::default();
    let metrics = Metrics::new();
    readiness.register("nats");
    // Not ready before every service of this process is built.
    readiness.register("started");

    let mut nats_args = nats_args;
    let mut embedded = None;
    if matches!(command, Command::Standalone { .. }) && nats_args.nats_url.is_none() {
        let server = LocalNatsServer::start().await?;
        tracing::info!(url = %server.url(), store = %server.store_dir().display(), "Started an embedded nats-server.");
        nats_args.nats_url = Some(server.url());
        embedded = Some(server);
    }
    let nats = hnats::connect(&nats_args, service, &readiness).await?;

    let admin = AdminServer::bind(common.admin_listen, readiness.clone(), metrics.clone()).await?;
    tracing::info!(addr = %admin.local_addr()?, "Admin listener: /healthz, /readyz, /metrics.");
    let mut tasks = JoinSet::new();
    tasks.spawn({
        let cancel = cancel.clone();
        async move {
            admin.run(cancel).await?;
            Ok(())
        }
    });

    let open_catalog = |args: &CatalogArgs, tasks: &mut JoinSet<anyhow::Result<()>>| {
        let catalog = catalog::open_folder(args, &readiness)?;
        tasks.spawn(run_to_ok(catalog::watch_folder(
            catalog.clone(),
            args.clone(),
            readiness.clone(),
            cancel.clone(),
        )));
        Ok::<_, anyhow::Error>(catalog)
    };

    match &command {
        Command::Ingest { ingest, .. } => {
            let app = herald_ingest::App::build(ingest, nats.clone(), metrics, &readiness, &cancel)
                .await?;
            tasks.spawn(app.run(cancel.clone()));
        }
        Command::Router {
            catalog, router, ..
        } => {
            let catalog = open_catalog(catalog, &mut tasks)?;
            let app = herald_router::App::build(
                router,
                nats.clone(),
                catalog,
                metrics,
                &readiness,
                &cancel,
            )
            .await?;
            tasks.spawn(run_to_ok(app.run(cancel.clone())));
        }
        Command::Sender {
            catalog, sender, ..
        } => {
            let catalog = open_catalog(catalog, &mut tasks)?;
            let app = herald_senders::App::build(
                sender,
                nats.clone(),
                catalog,
                metrics,
                &readiness,
                &cancel,
            )
            .await?;
            tasks.spawn(run_to_ok(app.run(cancel.clone())));
        }
        Command::Standalone {
            catalog,
            ingest,
            router,
            sender,
            ..
        } => {
            let catalog = open_catalog(catalog, &mut tasks)?;
            let sender_app = herald_senders::App::build(
                sender,
                nats.clone(),
                catalog.clone(),
                metrics.clone(),
                &readiness,
                &cancel,
            )
            .await?;
            let router_app = herald_router::App::build(
                router,
                nats.clone(),
                catalog,
                metrics.clone(),
                &readiness,
                &cancel,
            )
            .await?;
            let ingest_app =
                herald_ingest::App::build(ingest, nats.clone(), metrics, &readiness, &cancel)
                    .await?;
            tracing::info!(
                http = %ingest_app.http_addr()?,
                "Herald standalone is ready: point Flux's --events-addr at http://<this host>:{}/",
                ingest_app.http_addr()?.port()
            );
            tasks.spawn(run_to_ok(sender_app.run(cancel.clone())));
            tasks.spawn(run_to_ok(router_app.run(cancel.clone())));
            tasks.spawn(ingest_app.run(cancel.clone()));
        }
        Command::Validate { .. } => unreachable!(),
    }

    readiness.set("started", true);
    // Run until a signal or the first failure, then drain within the grace period.
    let mut failure = None;
    tokio::select! {
        () = cancel.cancelled() => {}
        Some(result) = tasks.join_next() => {
            if let Ok(Err(error)) = result {
                failure = Some(error);
            }
            cancel.cancel();
        }
    }
    let drained = tokio::time::timeout(common.shutdown_grace, async {
        while let Some(result) = tasks.join_next().await {
            if let Ok(Err(error)) = result {
                failure.get_or_insert(error);
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(grace = ?common.shutdown_grace, "Shutdown grace period over; unacked work is redelivered to other replicas.");
        tasks.abort_all();
    }
    if let Err(error) = nats.client.flush().await {
        tracing::debug!(error = %error, "Cannot flush NATS at shutdown.");
    }
    drop(nats);
    if let Some(mut server) = embedded {
        server.stop().await?;
    }
    tracing::info!("Herald stopped.");
    failure.map_or(Ok(()), Err)
}

async fn run_to_ok(work: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
    work.await;
    Ok(())
}
