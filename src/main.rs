//! `herald`: delivers Flux CD events to chat, git hosts and dashboards through
//! NATS JetStream. One binary, one subcommand per service.

#![forbid(unsafe_code)]

mod dry_run;
mod inspect;
mod letters;
mod output;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use herald_runtime::admin::AdminServer;
use herald_runtime::catalog::{self, CatalogArgs};
use herald_runtime::clusters::{ClustersArgs, Fleet};
use herald_runtime::local_nats::LocalNatsServer;
use herald_runtime::nats::{self as hnats, NatsArgs, parse_duration};
use herald_runtime::serve::ListenerArgs;
use herald_runtime::telemetry::{self, LogFormat};
use herald_runtime::{Metrics, Readiness};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// jemalloc, with the settings of `.cargo/config.toml`: a service's resident
/// memory stays close to what it holds, where glibc's arenas keep the pages
/// a burst or a catalog load once used.
#[cfg(target_os = "linux")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Delivers Flux CD events through NATS JetStream, losing nothing.
#[derive(Parser)]
#[command(name = "herald", version = herald_runtime::build::LONG_VERSION, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start-up: the size of its largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Receive Flux events (HTTP and gRPC) and store them on JetStream.
    Ingest {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        nats: NatsArgs,
        #[command(flatten)]
        clusters: ClustersArgs,
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
        clusters: ClustersArgs,
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
        clusters: ClustersArgs,
        #[command(flatten)]
        catalog: CatalogArgs,
        #[command(flatten)]
        sender: herald_senders::SenderArgs,
    },
    /// Ingest, router and sender in one process; starts its own nats-server
    /// when no --nats-url is given.
    Standalone {
        /// Where the embedded nats-server keeps its store, so a restart
        /// loses nothing (created when missing). Without it the store is a
        /// temporary directory, removed when Herald stops.
        #[arg(long, env = "HERALD_DATA_DIR")]
        data_dir: Option<PathBuf>,
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        nats: NatsArgs,
        #[command(flatten)]
        clusters: ClustersArgs,
        #[command(flatten)]
        catalog: CatalogArgs,
        #[command(flatten)]
        ingest: herald_ingest::IngestArgs,
        #[command(flatten)]
        router: herald_router::RouterArgs,
        #[command(flatten)]
        sender: herald_senders::SenderArgs,
    },
    /// Inspect, replay and purge dead letters (HERALD_DEAD).
    Dlq {
        #[command(flatten)]
        nats: NatsArgs,
        #[command(subcommand)]
        action: DlqAction,
    },
    /// Alerts or Providers, one row each: readiness from the catalog, the
    /// last delivery, last error and counts from HERALD_OBJECTS.
    Get {
        /// `alerts` or `providers`.
        #[arg(value_enum)]
        kind: inspect::Kind,
        #[command(flatten)]
        catalog: CatalogArgs,
        #[command(flatten)]
        nats: NatsArgs,
        #[command(flatten)]
        output: output::OutputArgs,
    },
    /// Streams, consumers, dead letters, buckets and NATS; exit code 1 when
    /// something is unhealthy, with the reasons.
    Status {
        #[command(flatten)]
        nats: NatsArgs,
        #[command(flatten)]
        output: output::OutputArgs,
    },
    /// Check a folder of Alerts, Providers and Secrets; one line per problem
    /// or warning, exit code 1 when there is a problem.
    Validate {
        /// The folder to check.
        dir: PathBuf,
        /// The namespace of objects whose manifest names none.
        #[arg(long, default_value = "default")]
        default_namespace: String,
        /// The clusters file: also list the clusters each Alert that
        /// selects clusters covers.
        #[arg(long, env = "HERALD_CLUSTERS_FILE")]
        clusters_file: Option<PathBuf>,
        #[command(flatten)]
        fleet_admin: catalog::FleetAdminArgs,
    },
    /// Show what Herald would do with one Flux event (a JSON file as Flux
    /// controllers post it, `-` for stdin): which Alerts match and why the
    /// others do not, and what each Provider would receive, secrets masked.
    /// Nothing is sent and NATS is not needed.
    Route {
        /// Only explain; nothing is sent (the only mode).
        #[arg(long, required = true)]
        dry_run: bool,
        /// The event: a JSON file, or `-` for stdin.
        event: PathBuf,
        /// The folder of Alerts, Providers and Secrets.
        #[arg(long, env = "HERALD_CONFIG_DIR", default_value = "examples/config")]
        config_dir: PathBuf,
        /// The namespace of objects whose manifest names none.
        #[arg(long, default_value = "default")]
        default_namespace: String,
        /// The cluster the event comes from.
        #[arg(long, default_value = "default")]
        cluster: String,
        /// A label of the event's object (`key=value`, repeatable), as the
        /// Kubernetes catalog would look it up for `matchLabels`.
        #[arg(long = "label", value_name = "KEY=VALUE")]
        labels: Vec<String>,
        /// Do not name the cluster in notifications (`--no-cluster-metadata`).
        #[arg(long)]
        no_cluster_metadata: bool,
        #[command(flatten)]
        fleet_admin: catalog::FleetAdminArgs,
        #[command(flatten)]
        output: output::OutputArgs,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the version and the commit it was built from.
    Version,
    /// Manage the clusters file: who may post events, and cluster labels.
    Cluster {
        /// The clusters file.
        #[arg(long, env = "HERALD_CLUSTERS_FILE")]
        clusters_file: PathBuf,
        #[command(subcommand)]
        action: ClusterAction,
    },
}

/// What to do with the clusters file.
#[derive(Subcommand)]
enum ClusterAction {
    /// Add a cluster with a new random token, printed once (the file keeps
    /// only its SHA-256); creates the file when missing.
    Add {
        /// The cluster's name, as its Flux controllers give it in --events-addr.
        name: String,
        /// A label for `herald.dev/cluster-selector`, `key=value` (repeatable).
        #[arg(long = "label", value_parser = parse_label)]
        labels: Vec<(String, String)>,
    },
    /// One line per cluster: its name and labels.
    List,
    /// Store every plain token hashed (the older form of the file).
    Rehash,
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{text:?} is not key=value"))
}

/// What to do with dead letters.
#[derive(Subcommand)]
enum DlqAction {
    /// One line per dead letter, oldest first.
    List {
        #[command(flatten)]
        filter: DlqFilter,
        #[command(flatten)]
        output: output::OutputArgs,
    },
    /// Everything about one dead letter: the event, the reason, the last answer.
    Show {
        /// Its sequence on HERALD_DEAD (the first column of `list`).
        sequence: u64,
        #[command(flatten)]
        output: output::OutputArgs,
    },
    /// Send dead letters back through the senders (after fixing what killed
    /// them), then remove them from HERALD_DEAD.
    Replay {
        #[command(flatten)]
        filter: DlqFilter,
        /// Replay every dead letter (required when no filter is given).
        #[arg(long)]
        all: bool,
    },
    /// Delete dead letters.
    Purge {
        #[command(flatten)]
        filter: DlqFilter,
        /// Delete every dead letter (required when no filter is given).
        #[arg(long)]
        all: bool,
    },
}

/// Which dead letters.
#[derive(clap::Args)]
struct DlqFilter {
    /// Only these HERALD_DEAD sequences.
    sequences: Vec<u64>,
    /// The Provider: `namespace/name`, or `name` in any namespace.
    #[arg(long)]
    provider: Option<String>,
    /// The Provider's type (`slack`, `generic`, ...; `unknown` for missing Providers).
    #[arg(long)]
    provider_type: Option<String>,
    /// The Alert: `namespace/name`, or `name` in any namespace.
    #[arg(long)]
    alert: Option<String>,
    /// A part of the reason, ignoring case.
    #[arg(long)]
    reason: Option<String>,
    /// Dead since: an RFC 3339 time, or a duration ago (`2h`, `7d`).
    #[arg(long, value_parser = parse_when)]
    since: Option<jiff::Timestamp>,
    /// Dead until: an RFC 3339 time, or a duration ago.
    #[arg(long, value_parser = parse_when)]
    until: Option<jiff::Timestamp>,
}

impl DlqFilter {
    fn is_empty(&self) -> bool {
        self.sequences.is_empty()
            && self.provider.is_none()
            && self.provider_type.is_none()
            && self.alert.is_none()
            && self.reason.is_none()
            && self.since.is_none()
            && self.until.is_none()
    }

    fn to_filter(&self) -> herald_senders::dlq::Filter {
        herald_senders::dlq::Filter {
            provider: self.provider.clone(),
            provider_type: self.provider_type.clone(),
            alert: self.alert.clone(),
            reason: self.reason.clone(),
            since: self.since,
            until: self.until,
            sequences: self.sequences.clone(),
        }
    }
}

fn parse_when(text: &str) -> Result<jiff::Timestamp, String> {
    if let Ok(time) = text.parse::<jiff::Timestamp>() {
        return Ok(time);
    }
    let ago = parse_duration(text)
        .map_err(|_| format!("{text:?} is neither an RFC 3339 time nor a duration such as 2h"))?;
    let ago = jiff::SignedDuration::try_from(ago).map_err(|e| e.to_string())?;
    jiff::Timestamp::now()
        .checked_sub(ago)
        .map_err(|e| e.to_string())
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
    /// How many clusters get a `cluster` label value of their own on
    /// per-event metrics; events from clusters seen after them count under
    /// `cluster="_other"`, so a large fleet cannot grow the series unbounded.
    #[arg(long, env = "HERALD_METRICS_CLUSTER_LIMIT", default_value_t = herald_runtime::metrics::CLUSTER_LABELS)]
    metrics_cluster_limit: usize,
    /// How many Providers get `provider_namespace` and `provider_name` label
    /// values of their own on the per-Provider metrics; later ones count
    /// under `_other`.
    #[arg(long, env = "HERALD_METRICS_PROVIDER_LIMIT", default_value_t = herald_runtime::metrics::PROVIDER_LABELS)]
    metrics_provider_limit: usize,
    #[command(flatten)]
    listeners: ListenerArgs,
}

/// The fewest worker threads `standalone` runs its three services on.
const STANDALONE_MIN_WORKERS: usize = 3;

/// The runtime of a serving command: a worker thread per core, as tokio
/// chooses, or `TOKIO_WORKER_THREADS`. `standalone` runs ingest, the router
/// and the sender, which deployed apart have a runtime each; in one process
/// it gets at least one worker per service, so that one service's burst of
/// work, or a worker descheduled for the co-located nats-server, does not
/// hold up the other two. (On two cores, three workers rather than two cut
/// standalone's CPU per event and raised its average `max` ratio from about
/// 0.63 to 0.68 of the bench's yardstick; four did no better than three.)
fn serving_runtime(command: &Command) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if matches!(command, Command::Standalone { .. })
        && std::env::var_os("TOKIO_WORKER_THREADS").is_none()
    {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        builder.worker_threads(cores.max(STANDALONE_MIN_WORKERS));
    }
    builder.build()
}

fn main() -> ExitCode {
    // One TLS crypto provider for the whole process (NATS, HTTP clients).
    rustls::crypto::ring::default_provider()
        .install_default()
        .expect("no other TLS crypto provider is installed yet");
    let cli = Cli::parse();
    match &cli.command {
        Command::Route {
            event,
            config_dir,
            default_namespace,
            cluster,
            labels,
            no_cluster_metadata,
            fleet_admin,
            output,
            ..
        } => {
            return route_dry_run(
                event,
                &Folder {
                    dir: config_dir,
                    default_namespace,
                    options: fleet_admin.alert_options(),
                },
                cluster,
                labels,
                !no_cluster_metadata,
                output.output,
            );
        }
        Command::Completion { shell } => {
            use clap::CommandFactory as _;
            clap_complete::generate(
                *shell,
                &mut Cli::command(),
                "herald",
                &mut std::io::stdout(),
            );
            return ExitCode::SUCCESS;
        }
        Command::Version => {
            println!(
                "herald {} (commit {})",
                herald_runtime::build::VERSION,
                herald_runtime::build::COMMIT
            );
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    if let Command::Validate {
        dir,
        default_namespace,
        clusters_file,
        fleet_admin,
    } = &cli.command
    {
        let folder = Folder {
            dir,
            default_namespace,
            options: fleet_admin.alert_options(),
        };
        return validate(&folder, clusters_file.as_deref());
    }
    if let Command::Cluster {
        clusters_file,
        action,
    } = &cli.command
    {
        return match cluster(clusters_file, action) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("herald cluster: {error:#}");
                ExitCode::FAILURE
            }
        };
    }
    if let Command::Dlq { nats, action } = cli.command {
        let runtime = match tokio::runtime::Runtime::new() {
            Ok(runtime) => runtime,
            Err(error) => {
                eprintln!("herald: cannot start the runtime: {error}");
                return ExitCode::FAILURE;
            }
        };
        return match runtime.block_on(dlq(&nats, action)) {
            Ok(code) => code,
            Err(error) => {
                eprintln!("herald dlq: {error:#}");
                ExitCode::FAILURE
            }
        };
    }
    match &cli.command {
        Command::Get {
            kind,
            catalog,
            nats,
            output,
        } => {
            return inspect::run_blocking("get", inspect::get(*kind, catalog, nats, output.output));
        }
        Command::Status { nats, output } => {
            return inspect::run_blocking("status", inspect::status(nats, output.output));
        }
        _ => {}
    }
    let runtime = match serving_runtime(&cli.command) {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("herald: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(serve(cli.command));
    // Dropping a runtime waits for its blocking threads for ever; whatever
    // the grace period gave up on must not hold the exit.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = %format!("{error:#}"), "Herald stopped.");
            eprintln!("herald: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// `herald cluster ...`: edits the clusters file in place (written whole,
/// through a temporary file renamed over it).
fn cluster(path: &std::path::Path, action: &ClusterAction) -> anyhow::Result<()> {
    use herald_runtime::clusters::ClustersFile;
    let mut file = if path.exists() {
        ClustersFile::read(path)?
    } else {
        ClustersFile::default()
    };
    let write = |file: &ClustersFile| -> anyhow::Result<()> {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, file.render())
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
    };
    match action {
        ClusterAction::Add { name, labels } => {
            let token = file.add(name, labels.iter().cloned().collect())?;
            write(&file)?;
            eprintln!(
                "Added cluster {name} to {}. Its token is shown only now; its Flux controllers post to \
                 --events-addr=https://{name}:<token>@<herald>/",
                path.display()
            );
            println!("{token}");
        }
        ClusterAction::List => {
            for (name, labels) in file.clusters() {
                let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                println!("{name}\t{}", labels.join(","));
            }
        }
        ClusterAction::Rehash => {
            let plain = file.plain_tokens();
            write(&file)?;
            eprintln!("{plain} plain tokens stored hashed in {}.", path.display());
        }
    }
    Ok(())
}

/// A folder of Alerts, Providers and Secrets to read without a catalog.
struct Folder<'a> {
    dir: &'a std::path::Path,
    default_namespace: &'a str,
    /// How its Alerts are compiled (`--fleet-admin-namespace`).
    options: catalog::AlertOptions,
}

// === impl Folder ===

impl Folder<'_> {
    fn load(&self) -> std::io::Result<herald_runtime::Snapshot> {
        catalog::load_folder(self.dir, self.default_namespace, &self.options)
    }
}

fn validate(folder: &Folder<'_>, clusters_file: Option<&std::path::Path>) -> ExitCode {
    let dir = folder.dir;
    let clusters = match clusters_file.map(herald_runtime::clusters::ClustersFile::read) {
        None => None,
        Some(Ok(file)) => Some(file),
        Some(Err(error)) => {
            println!("{error:#}");
            return ExitCode::from(2);
        }
    };
    match folder.load() {
        Err(error) => {
            println!("{}: cannot read: {error}", dir.display());
            ExitCode::from(2)
        }
        Ok(mut snapshot) => {
            let found = herald_senders::check::problems(&snapshot);
            snapshot.add_problems(found);
            for problem in &snapshot.problems {
                println!("{problem}");
            }
            print_coverage(&snapshot, clusters.as_ref());
            print_all_namespaces(&snapshot);
            print_flood_control(&snapshot);
            let (alerts, providers, secrets) = snapshot.counts();
            let (errors, warnings) = snapshot.problem_counts();
            eprintln!(
                "{}: {alerts} alerts, {providers} providers, {secrets} secrets, {errors} problems, {warnings} warnings",
                dir.display(),
            );
            // Warnings are printed but never fail the check.
            if errors == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// `herald route --dry-run`: exit code 0, or 2 when the event or the
/// folder cannot be read.
fn route_dry_run(
    event: &std::path::Path,
    folder: &Folder<'_>,
    cluster: &str,
    labels: &[String],
    cluster_metadata: bool,
    format: output::Format,
) -> ExitCode {
    let text = if event.as_os_str() == "-" {
        let mut buffer = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buffer).map(|_| buffer)
    } else {
        std::fs::read(event)
    };
    let text = match text {
        Ok(text) => text,
        Err(error) => {
            eprintln!("herald route: cannot read {}: {error}", event.display());
            return ExitCode::from(2);
        }
    };
    let mut parsed = std::collections::BTreeMap::new();
    for label in labels {
        let Some((key, value)) = label.split_once('=') else {
            eprintln!("herald route: --label {label:?} is not KEY=VALUE");
            return ExitCode::from(2);
        };
        parsed.insert(key.to_owned(), value.to_owned());
    }
    let snapshot = match folder.load() {
        Ok(snapshot) => snapshot,
        Err(error) => {
            eprintln!(
                "herald route: cannot read {}: {error}",
                folder.dir.display()
            );
            return ExitCode::from(2);
        }
    };
    for problem in snapshot.problems.iter().filter(|p| p.is_error()) {
        eprintln!("{problem}");
    }
    let labels = (!labels.is_empty()).then_some(parsed);
    match dry_run::explain(&snapshot, &text, cluster, labels, cluster_metadata) {
        Err(error) => {
            eprintln!("herald route: {error:#}");
            ExitCode::from(2)
        }
        Ok(verdicts) => match output::render(&dry_run::Verdicts(verdicts), format) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("herald route: {error:#}");
                ExitCode::FAILURE
            }
        },
    }
}

/// The clusters each Alert that selects clusters covers: listed by name
/// with a clusters file, else described.
fn print_coverage(
    snapshot: &herald_runtime::Snapshot,
    clusters: Option<&herald_runtime::clusters::ClustersFile>,
) {
    for compiled in snapshot.alerts.alerts() {
        let selection = &compiled.clusters;
        if selection.is_all() && clusters.is_none() {
            continue;
        }
        let covered = match clusters {
            Some(file) => {
                let names: Vec<&str> = file
                    .clusters()
                    .filter(|(name, labels)| selection.covers(name, Some(labels)))
                    .map(|(name, _)| name)
                    .collect();
                if names.is_empty() {
                    "no cluster of the clusters file".to_owned()
                } else {
                    names.join(", ")
                }
            }
            None => format!("{selection} (give --clusters-file to list them)"),
        };
        println!("Alert/{}: clusters: {covered}", compiled.alert.key());
    }
}

/// The Alerts of fleet administration namespaces that hear every
/// namespace, with the sources that do.
fn print_all_namespaces(snapshot: &herald_runtime::Snapshot) {
    for compiled in snapshot.alerts.alerts() {
        if !compiled.hears_all_namespaces() {
            continue;
        }
        let sources: Vec<String> = compiled
            .alert
            .spec
            .event_sources
            .iter()
            .filter(|s| s.namespace == herald_flux::matching::ALL_NAMESPACES)
            .map(|s| format!("{}/{}", s.kind, s.name))
            .collect();
        println!(
            "Alert/{}: namespaces: all, for {} (fleet administration namespace {})",
            compiled.alert.key(),
            sources.join(", "),
            compiled.alert.meta.namespace
        );
    }
}

/// The flood control of each Alert that has some (herald.dev/group-wait
/// and the others), as it takes effect.
fn print_flood_control(snapshot: &herald_runtime::Snapshot) {
    for compiled in snapshot.alerts.alerts() {
        if !compiled.flood.is_on() {
            continue;
        }
        let alert = &compiled.alert;
        let commit_status = snapshot
            .provider(&alert.meta.namespace, &alert.spec.provider_ref.name)
            .is_some_and(|p| herald_flux::grouping::writes_commit_status(&p.spec.type_));
        if commit_status {
            println!(
                "Alert/{}: flood control: off (the Provider writes commit statuses)",
                alert.key()
            );
        } else {
            println!("Alert/{}: flood control: {}", alert.key(), compiled.flood);
        }
    }
}

/// `herald dlq ...`: talks to JetStream directly, fails fast when it cannot.
async fn dlq(nats: &NatsArgs, action: DlqAction) -> anyhow::Result<ExitCode> {
    use herald_senders::dlq;
    let options = async_nats::ConnectOptions::new()
        .name("herald-dlq")
        .connection_timeout(Duration::from_secs(5));
    let client = nats.connect_with(options).await?;
    let js = async_nats::jetstream::new(client.clone());
    let unfiltered = |filter: &DlqFilter, all: bool, verb: &str| {
        if filter.is_empty() && !all {
            anyhow::bail!(
                "{verb} needs a filter (sequences, --provider, --alert, --reason, --since, ...) or --all"
            )
        }
        Ok(())
    };
    let code = match action {
        DlqAction::List { filter, output } => {
            let entries = dlq::list(&js, &filter.to_filter()).await?;
            print!("{}", letters::render_list(&entries, output.output)?);
            eprintln!("{} dead letters", entries.len());
            ExitCode::SUCCESS
        }
        DlqAction::Show { sequence, output } => {
            let entry = dlq::show(&js, sequence).await?;
            print!("{}", letters::render_show(&entry, output.output)?);
            ExitCode::SUCCESS
        }
        DlqAction::Replay { filter, all } => {
            unfiltered(&filter, all, "replay")?;
            let report = dlq::replay(&js, &filter.to_filter()).await?;
            for replayed in &report.replayed {
                println!(
                    "replayed {} as {} on {}{}",
                    replayed.sequence,
                    replayed.delivery_id,
                    replayed.subject,
                    if replayed.duplicate {
                        " (already queued)"
                    } else {
                        ""
                    }
                );
            }
            for kept in report.skipped.iter().chain(&report.failed) {
                println!("kept {}: {}", kept.sequence, kept.reason);
            }
            eprintln!(
                "{} replayed, {} skipped, {} failed",
                report.replayed.len(),
                report.skipped.len(),
                report.failed.len()
            );
            if report.failed.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        DlqAction::Purge { filter, all } => {
            unfiltered(&filter, all, "purge")?;
            let purged = dlq::purge(&js, &filter.to_filter()).await?;
            println!("{purged} dead letters purged");
            ExitCode::SUCCESS
        }
    };
    client.flush().await.ok();
    Ok(code)
}

/// Runs the services of `command` until a signal, then drains them.
async fn serve(command: Command) -> anyhow::Result<()> {
    let (common, nats_args) = match &command {
        Command::Ingest { common, nats, .. }
        | Command::Router { common, nats, .. }
        | Command::Sender { common, nats, .. }
        | Command::Standalone { common, nats, .. } => (common.clone(), nats.clone()),
        Command::Validate { .. }
        | Command::Dlq { .. }
        | Command::Cluster { .. }
        | Command::Get { .. }
        | Command::Status { .. }
        | Command::Route { .. }
        | Command::Completion { .. }
        | Command::Version => {
            unreachable!("the commands that are not services run on their own")
        }
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
    let mut stopping = None;
    let result = run(command, &common, nats_args, service, &mut stopping).await;
    // Traces get what is left of the grace period.
    let deadline = stopping.unwrap_or_else(|| tokio::time::Instant::now() + common.shutdown_grace);
    if tokio::time::timeout_at(deadline, telemetry.shutdown())
        .await
        .is_err()
    {
        eprintln!("herald: the last traces were not exported within the shutdown grace period");
    }
    result
}

/// Runs the services until a signal or the first failure, then drains them.
/// Every wait after the stop ends by the `--shutdown-grace` deadline, which
/// is left in `stopping` for what the caller still has to finish.
async fn run(
    command: Command,
    common: &Common,
    nats_args: NatsArgs,
    service: &str,
    stopping: &mut Option<tokio::time::Instant>,
) -> anyhow::Result<()> {
    let cancel = CancellationToken::new();
    herald_runtime::shutdown::cancel_on_signal(cancel.clone());
    let readiness = Readiness::default();
    let metrics = Metrics::new()
        .with_cluster_limit(common.metrics_cluster_limit)
        .with_provider_limit(common.metrics_provider_limit);
    readiness.register("nats");
    // Not ready before every service of this process is built.
    readiness.register("started");

    // Checked before NATS is reached: a wrong edge list fails at once.
    if let Command::Router { router, .. } | Command::Standalone { router, .. } = &command {
        herald_runtime::edges::check_distinct(&router.edges).map_err(anyhow::Error::msg)?;
    }
    let mut nats_args = nats_args;
    let mut embedded = None;
    if let Command::Standalone { data_dir, .. } = &command
        && nats_args.nats_url.is_none()
    {
        let server = LocalNatsServer::start_with(herald_runtime::local_nats::ServerSettings {
            data_dir: data_dir.clone(),
            ..Default::default()
        })
        .await?;
        tracing::info!(url = %server.url(), store = %server.store_dir().display(), "Started an embedded nats-server.");
        nats_args.nats_url = Some(server.url());
        embedded = Some(server);
    }
    let nats = hnats::connect(&nats_args, service, &readiness).await?;

    let admin = AdminServer::bind(common.admin_listen, readiness.clone(), metrics.clone()).await?;
    tracing::info!(addr = %admin.local_addr()?, "Admin listener: /healthz, /readyz, /metrics.");
    let mut tasks = JoinSet::new();
    let deadlines = common.listeners.deadlines();
    tasks.spawn({
        let cancel = cancel.clone();
        async move {
            admin.run(deadlines, cancel).await;
            Ok(())
        }
    });

    // A service that sends checks each Provider's type-specific settings on
    // every catalog load (a router reads no Secret data: it cannot).
    if matches!(command, Command::Sender { .. } | Command::Standalone { .. }) {
        catalog::install_checks(herald_senders::check::problems);
    }

    // The catalog, and one per member cluster of the clusters file.
    let open_catalog = async |args: &CatalogArgs,
                              fleet: Option<&Fleet>,
                              tasks: &mut JoinSet<anyhow::Result<()>>| {
        let (catalog, source) = catalog::Source::open(args, &readiness).await?;
        tasks.spawn(run_to_ok(source.run(cancel.clone())));
        if let Some(fleet) = fleet {
            tasks.spawn(run_to_ok(catalog::kubernetes::members::run(
                catalog.clone(),
                fleet.clone(),
                args.kubernetes.clone(),
                readiness.clone(),
                cancel.clone(),
            )));
        }
        Ok::<_, anyhow::Error>(catalog)
    };

    // The clusters file, read again when it changes.
    let open_fleet = |args: &ClustersArgs, tasks: &mut JoinSet<anyhow::Result<()>>| {
        let Some(path) = &args.clusters_file else {
            return Ok::<_, anyhow::Error>(None);
        };
        let fleet = Fleet::open(path)?;
        tasks.spawn(run_to_ok(fleet.clone().watch(cancel.clone())));
        Ok(Some(fleet))
    };

    // App::build retries until NATS answers; a signal meanwhile stops it.
    let started = async {
        match &command {
            Command::Ingest {
                ingest, clusters, ..
            } => {
                let fleet = open_fleet(clusters, &mut tasks)?;
                let app = herald_ingest::App::build(
                    ingest,
                    fleet,
                    nats.clone(),
                    metrics,
                    &readiness,
                    &cancel,
                )
                .await?;
                tasks.spawn(app.run(deadlines, cancel.clone()));
            }
            Command::Router {
                catalog,
                router,
                clusters,
                ..
            } => {
                let fleet = open_fleet(clusters, &mut tasks)?;
                // Routers send nothing: they need to know Secrets exist, not
                // what they hold.
                let mut catalog = catalog.clone();
                catalog.kubernetes.secret_data = false;
                let catalog = open_catalog(&catalog, fleet.as_ref(), &mut tasks).await?;
                let app = herald_router::App::build(
                    router,
                    fleet,
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
                catalog,
                sender,
                clusters,
                ..
            } => {
                let fleet = open_fleet(clusters, &mut tasks)?;
                // Senders match nothing: the objects' labels are the router's.
                let mut catalog = catalog.clone();
                catalog.kubernetes.object_labels = false;
                let catalog = open_catalog(&catalog, fleet.as_ref(), &mut tasks).await?;
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
                clusters,
                ..
            } => {
                let fleet = open_fleet(clusters, &mut tasks)?;
                let catalog = open_catalog(catalog, fleet.as_ref(), &mut tasks).await?;
                // Ingest and the router get connections of their own: all
                // of one connection's traffic goes through one task, so the
                // three services sharing one would be held to one core.
                let router_nats =
                    hnats::connect_checked(&nats_args, "herald-router", "nats router", &readiness)
                        .await?;
                let ingest_nats =
                    hnats::connect_checked(&nats_args, "herald-ingest", "nats ingest", &readiness)
                        .await?;
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
                    fleet.clone(),
                    router_nats,
                    catalog,
                    metrics.clone(),
                    &readiness,
                    &cancel,
                )
                .await?;
                let ingest_app = herald_ingest::App::build(
                    ingest,
                    fleet,
                    ingest_nats,
                    metrics,
                    &readiness,
                    &cancel,
                )
                .await?;
                tracing::info!(
                    http = %ingest_app.http_addr()?,
                    "Herald standalone is ready: point Flux's --events-addr at {}://<this host>:{}/",
                    if ingest_app.serves_tls() { "https" } else { "http" },
                    ingest_app.http_addr()?.port()
                );
                tasks.spawn(run_to_ok(sender_app.run(cancel.clone())));
                tasks.spawn(run_to_ok(router_app.run(cancel.clone())));
                tasks.spawn(ingest_app.run(deadlines, cancel.clone()));
            }
            Command::Validate { .. }
            | Command::Dlq { .. }
            | Command::Cluster { .. }
            | Command::Get { .. }
            | Command::Status { .. }
            | Command::Route { .. }
            | Command::Completion { .. }
            | Command::Version => {
                unreachable!()
            }
        }
        anyhow::Ok(())
    }
    .await;

    let mut failure = None;
    match started {
        Ok(()) => {
            readiness.set("started", true);
            // Run until a signal or the first failure, then drain within the grace period.
            tokio::select! {
                () = cancel.cancelled() => {}
                Some(result) = tasks.join_next() => {
                    if let Ok(Err(error)) = result {
                        failure = Some(error);
                    }
                    cancel.cancel();
                }
            }
        }
        Err(error) if cancel.is_cancelled() => {
            tracing::info!(error = %format!("{error:#}"), "Stopped while starting.");
        }
        Err(error) => {
            failure = Some(error);
            cancel.cancel();
        }
    }
    let deadline = tokio::time::Instant::now() + common.shutdown_grace;
    *stopping = Some(deadline);
    let drained = tokio::time::timeout_at(deadline, async {
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
    // The last acks go out if NATS is there; a flush waits for a reconnect
    // when it is not, so it gets only what is left of the grace period.
    match tokio::time::timeout_at(deadline, nats.client.flush()).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::debug!(error = %error, "Cannot flush NATS at shutdown."),
        Err(_) => {
            tracing::warn!("NATS did not take the last messages within the shutdown grace period.")
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn workers(args: &[&str]) -> usize {
        let cli = Cli::try_parse_from(args).expect("the command line parses");
        serving_runtime(&cli.command)
            .expect("the runtime starts")
            .metrics()
            .num_workers()
    }

    #[test]
    fn standalone_has_a_worker_per_service_and_the_others_one_per_core() {
        if let Some(set) = std::env::var("TOKIO_WORKER_THREADS")
            .ok()
            .and_then(|n| n.parse::<usize>().ok())
        {
            // The operator's choice decides for every command.
            assert_eq!(workers(&["herald", "standalone"]), set);
            return;
        }
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        assert_eq!(
            workers(&["herald", "standalone"]),
            cores.max(STANDALONE_MIN_WORKERS)
        );
        assert_eq!(workers(&["herald", "ingest"]), cores);
        assert_eq!(workers(&["herald", "sender"]), cores);
    }
}
