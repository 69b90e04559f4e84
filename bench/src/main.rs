//! `herald-bench`: measures Herald end to end on this machine.
//!
//! It starts its own nats-server (a fresh one per run), its own provider sink
//! (an HTTP/1.1 receiver on loopback that records when each delivery
//! arrived), and Herald as child processes of the release binary, which it
//! builds first. Load is POSTed over HTTP keep-alive from a tokio runtime of
//! its own. Each scenario prints markdown tables, the peak RSS and CPU time of
//! every process, and whether its goals were met:
//!
//! - `max`: the highest sustained end-to-end rate, beside a bare pipeline
//!   with HTTP edges (HTTP in, two JetStream hops, HTTP out, no logic) and a
//!   bare two-hop async-nats pipeline without them, in the same run;
//! - `latency`: p50/p90/p99/max from POST to sink at a fixed rate;
//! - `alerts`: routing throughput with 10, 1,000 and 10,000 Alerts;
//! - `slow-sink`: deliveries per second of one sender when the destination
//!   takes 100 ms to answer;
//! - `kubernetes`: the catalog read from a (fake) Kubernetes API server with
//!   10 and 10,000 Alerts, Providers and Secrets: time until ready, peak RSS,
//!   routing rate;
//! - `fairness`: one cluster of a 100-cluster fleet floods ingest while 99
//!   post one event a second each: the quiet clusters' latency;
//! - `clusters`: intake from 1,000 authenticated clusters against intake
//!   from one, with the same connections;
//! - `flood`: 1,000 failures from 100 clusters to one grouping Alert on a
//!   Slack-compatible Provider paced at one message a second: how many
//!   messages, and how soon every event is named;
//! - `all`: all of them.
//!
//! Run it with `cargo run --release -p herald-bench -- all`; see `--help`.

#![forbid(unsafe_code)]

/// The services' allocator, with their settings (`.cargo/config.toml`): the
/// bare pipelines are held to what Herald runs on.
#[cfg(target_os = "linux")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

mod alerts;
mod bare;
mod catalog;
mod clusters;
mod deploy;
mod fairness;
mod fleet;
mod flood;
mod http_bare;
mod kubernetes;
mod latency;
mod load;
mod max;
mod procs;
mod report;
mod sink;
mod slow;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::OnceLock;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use herald_runtime::nats::parse_duration;

use crate::deploy::Topology;
use crate::load::Load;
use crate::procs::Launcher;
use crate::report::Goal;
use crate::sink::Sink;

/// Alerts in the catalog of every scenario but `alerts` (one matches).
pub const SCENARIO_ALERTS: usize = 10;
/// Name prefix of the load driver's threads.
pub const LOAD_THREAD: &str = "bench-load";
/// Name prefix of the sink's (and everything else's) threads.
pub const MAIN_THREAD: &str = "bench-main";

/// Nanoseconds since the bench started, on one monotonic clock shared by the
/// load driver and the sink.
pub fn now_ns() -> u64 {
    static BASE: OnceLock<tokio::time::Instant> = OnceLock::new();
    let base = *BASE.get_or_init(tokio::time::Instant::now);
    u64::try_from(base.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    Max,
    Latency,
    Alerts,
    SlowSink,
    Kubernetes,
    Fairness,
    Clusters,
    Flood,
    All,
}

/// Benchmarks Herald end to end (its own nats-server, sink and load).
#[derive(Debug, Parser)]
#[command(name = "herald-bench")]
struct Cli {
    /// What to measure.
    #[arg(value_enum)]
    scenario: Scenario,
    #[command(flatten)]
    opts: Options,
}

/// Settings of every scenario.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// max: how long each pipeline is loaded.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub duration: Duration,
    /// max and the fills of alerts and slow-sink: concurrent keep-alive connections.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// max: which Herald topologies to measure.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "standalone,split"
    )]
    pub max_topologies: Vec<Topology>,
    /// max: publish acks in flight in the bare pipelines' relay (and the bare one's producer).
    #[arg(long, default_value_t = 1024)]
    pub bare_window: usize,
    /// max: POSTs to the sink in flight in the bare pipeline with HTTP edges
    /// (as Herald's `--sender-concurrency`).
    #[arg(long, default_value_t = 256)]
    pub bare_concurrency: usize,
    /// max: worker threads of the bare pipeline with HTTP edges.
    #[arg(long, default_value_t = 2)]
    pub bare_threads: usize,
    /// fairness and clusters: how Herald runs (clusters measures ingest alone).
    #[arg(long, value_enum, default_value = "split")]
    pub fleet_topology: Topology,
    /// fairness: how long the flooding cluster floods (the quiet clusters
    /// post for --warmup longer, from before it starts).
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub fairness_duration: Duration,
    /// fairness: clusters posting at one event per --quiet-period each.
    #[arg(long, default_value_t = 99)]
    pub quiet_clusters: usize,
    /// fairness: how often each quiet cluster posts.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub quiet_period: Duration,
    /// fairness: keep-alive connections of the flooding cluster.
    #[arg(long, default_value_t = 64)]
    pub flood_connections: usize,
    /// fairness: how long a flooding connection pauses after a refusal (0s: none).
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub flood_pause: Duration,
    /// clusters: clusters posting in the many-clusters phase.
    #[arg(long, default_value_t = 1000)]
    pub fleet_clusters: usize,
    /// clusters: how long each phase is loaded.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub clusters_duration: Duration,
    /// clusters: how many times each phase is measured, in turn (the best counts).
    #[arg(long, default_value_t = 2)]
    pub clusters_rounds: usize,
    /// latency: events per second.
    #[arg(long, default_value_t = 1000)]
    pub rate: u64,
    /// latency: how long the rate is held.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub latency_duration: Duration,
    /// latency: the first part left out of the figures.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// latency: the most POSTs in flight.
    #[arg(long, default_value_t = 1024)]
    pub max_in_flight: usize,
    /// latency: how Herald runs.
    #[arg(long, value_enum, default_value = "split")]
    pub latency_topology: Topology,
    /// alerts and kubernetes: events routed for each catalog size.
    #[arg(long, default_value_t = 150_000)]
    pub routing_events: u64,
    /// alerts and kubernetes: how many times each catalog size is measured (the best counts).
    #[arg(long, default_value_t = 2)]
    pub routing_rounds: usize,
    /// alerts: catalog sizes.
    #[arg(long, value_delimiter = ',', default_value = "10,1000,10000")]
    pub alert_counts: Vec<usize>,
    /// alerts, slow-sink and kubernetes: the longest a routing run may take.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub routing_timeout: Duration,
    /// alerts and slow-sink: the longest filling HERALD_EVENTS may take.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub preload_timeout: Duration,
    /// slow-sink: deliveries queued for the sender.
    #[arg(long, default_value_t = 30_000)]
    pub slow_events: u64,
    /// slow-sink: the sink's added latency.
    #[arg(long, default_value = "100ms", value_parser = parse_duration)]
    pub sink_delay: Duration,
    /// slow-sink: the longest the sender is given.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub slow_timeout: Duration,
    /// kubernetes: catalog sizes (Alerts, and as many Providers and Secrets).
    #[arg(long, value_delimiter = ',', default_value = "10,10000")]
    pub kube_alert_counts: Vec<usize>,
    /// kubernetes: Kustomizations with labels the API server serves too.
    #[arg(long, default_value_t = 1000)]
    pub kube_labelled: usize,
    /// kubernetes: deliveries the sender sends after each routing run.
    #[arg(long, default_value_t = 20_000)]
    pub kube_deliveries: u64,
    /// flood: failure events posted (from --flood-clusters clusters, one object each).
    #[arg(long, default_value_t = 1000)]
    pub flood_events: u64,
    /// flood: clusters the failures come from.
    #[arg(long, default_value_t = 100)]
    pub flood_clusters: usize,
    /// flood: the Alert's herald.dev/group-wait.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub flood_group_wait: Duration,
    /// How long to wait, after the load, for accepted events to reach the sink.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// Threads of the load driver's runtime.
    #[arg(long, default_value_t = 1)]
    pub load_threads: usize,
    /// The herald binary to run (default: build it with cargo, release).
    #[arg(long)]
    pub herald_bin: Option<PathBuf>,
    /// RUST_LOG of the Herald processes.
    #[arg(long, default_value = "info")]
    pub herald_log: String,
    /// An extra flag for herald ingest (and standalone), e.g. `--ingest-arg=--rate-limit-interval=0s`.
    #[arg(long, allow_hyphen_values = true)]
    pub ingest_arg: Vec<String>,
    /// An extra flag for herald router (and standalone).
    #[arg(long, allow_hyphen_values = true)]
    pub router_arg: Vec<String>,
    /// An extra flag for herald sender (and standalone).
    #[arg(long, allow_hyphen_values = true)]
    pub sender_arg: Vec<String>,
}

/// What every scenario uses.
pub struct Ctx {
    pub opts: Options,
    pub launcher: Launcher,
    pub load: Load,
    pub sink: Sink,
}

fn main() -> ExitCode {
    rustls::crypto::ring::default_provider()
        .install_default()
        .ok();
    let cli = Cli::parse();
    if let Some(code) = ensure_nats_server() {
        return code;
    }
    let herald = match cli
        .opts
        .herald_bin
        .clone()
        .map_or_else(procs::build_herald, Ok)
    {
        Ok(path) => path,
        Err(error) => {
            eprintln!("herald-bench: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    now_ns();
    let runtimes = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.opts.load_threads.max(1))
        .thread_name(LOAD_THREAD)
        .enable_all()
        .build()
        .and_then(|load| {
            let main = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name(MAIN_THREAD)
                .enable_all()
                .build()?;
            Ok((load, main))
        });
    let (load_runtime, main_runtime) = match runtimes {
        Ok(runtimes) => runtimes,
        Err(error) => {
            eprintln!("herald-bench: cannot start the runtimes: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = main_runtime.block_on(run(cli, herald, load_runtime.handle().clone()));
    load_runtime.shutdown_background();
    main_runtime.shutdown_timeout(Duration::from_secs(5));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("herald-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// When no nats-server is found, installs one with `scripts/nats-server.sh`
/// and runs this bench again with `HERALD_NATS_SERVER` set; returns its exit code.
fn ensure_nats_server() -> Option<ExitCode> {
    if herald_runtime::local_nats::find_binary().is_ok() {
        return None;
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/nats-server.sh");
    let found = std::process::Command::new("bash")
        .arg(&script)
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned());
    let Some(path) = found.filter(|p| !p.is_empty()) else {
        eprintln!(
            "herald-bench: no nats-server, and {} could not install one",
            script.display()
        );
        return Some(ExitCode::FAILURE);
    };
    let status = std::env::current_exe().and_then(|exe| {
        std::process::Command::new(exe)
            .args(std::env::args_os().skip(1))
            .env("HERALD_NATS_SERVER", path)
            .status()
    });
    Some(match status {
        Ok(status) if status.success() => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    })
}

async fn run(cli: Cli, herald: PathBuf, load_handle: tokio::runtime::Handle) -> anyhow::Result<()> {
    let opts = cli.opts;
    let launcher = Launcher {
        binary: herald,
        rust_log: opts.herald_log.clone(),
        ingest_args: opts.ingest_arg.clone(),
        router_args: opts.router_arg.clone(),
        sender_args: opts.sender_arg.clone(),
    };
    let ctx = Ctx {
        load: Load::new(load_handle)?,
        sink: Sink::start().await?,
        launcher,
        opts,
    };
    print_machine();
    let mut goals: Vec<Goal> = Vec::new();
    let scenario = cli.scenario;
    let all = scenario == Scenario::All;
    if all || scenario == Scenario::Max {
        goals.extend(max::run(&ctx).await?);
    }
    if all || scenario == Scenario::Latency {
        goals.extend(latency::run(&ctx).await?);
    }
    if all || scenario == Scenario::Alerts {
        goals.extend(alerts::run(&ctx).await?);
    }
    if all || scenario == Scenario::SlowSink {
        goals.extend(slow::run(&ctx).await?);
    }
    if all || scenario == Scenario::Kubernetes {
        goals.extend(kubernetes::run(&ctx).await?);
    }
    if all || scenario == Scenario::Fairness {
        goals.extend(fairness::run(&ctx).await?);
    }
    if all || scenario == Scenario::Clusters {
        goals.extend(clusters::run(&ctx).await?);
    }
    if all || scenario == Scenario::Flood {
        goals.extend(flood::run(&ctx).await?);
    }
    if ctx.sink.unmatched() > 0 {
        println!(
            "The sink received {} requests without a sequence number.\n",
            ctx.sink.unmatched()
        );
    }
    println!("## Goals\n");
    report::print_goals(&goals);
    Ok(())
}

fn print_machine() {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown", |(_, m)| m.trim())
        .to_owned();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    println!(
        "# herald-bench\n\nMachine: {cores} cores ({model}), {:.1} GiB memory, clock tick {}/s.\n",
        memory_kib as f64 / 1024.0 / 1024.0,
        procs::clock_ticks()
    );
}
