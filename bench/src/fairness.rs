//! Scenario `fairness`: a fleet of 100 clusters in a clusters file (tokens
//! hashed, as `herald cluster add` writes them), each cluster with its
//! default share of ingest. One cluster posts as fast as its connections
//! allow (closed loop, refusals not waited out), while the 99 others post
//! one event a second each (open loop, each on its own connection, basic
//! auth as Flux's `--events-addr` sends it). What counts is the quiet
//! clusters' latency, POST start to sink, end to end.

use std::collections::HashMap;
use std::time::Duration;

use crate::deploy::{BenchCpu, Deployment};
use crate::fleet::Fleet;
use crate::load::{ClosedLoop, Credentials, OwnRuntime, Sent};
use crate::report::{Goal, Table, ms, print_usage, quantile, rate, thousands};
use crate::sink::first_arrivals;
use crate::{Ctx, LOAD_THREAD, SCENARIO_ALERTS};

/// The goal on the quiet clusters' p99, POST start to sink.
const QUIET_P99_GOAL: Duration = Duration::from_millis(50);

/// Runs the scenario and returns its goals.
pub async fn run(ctx: &Ctx) -> anyhow::Result<Vec<Goal>> {
    let opts = &ctx.opts;
    let topology = opts.fleet_topology;
    let mut deployment = Deployment::prepare(&ctx.sink.url(), SCENARIO_ALERTS, "match").await?;
    let fleet = Fleet::write(deployment.work.path(), "cluster", opts.quiet_clusters + 1)?;
    let credentials = fleet.credentials();
    let flood_credentials = credentials.only(0);
    let quiet_credentials = Credentials::basic(
        fleet.clusters[1..]
            .iter()
            .map(|(name, token)| (name.as_str(), token.as_str())),
    );
    let flag = fleet.flag();
    let flags: Vec<&str> = flag.iter().map(String::as_str).collect();
    deployment
        .launch_topology_with(&ctx.launcher, topology, &flags)
        .await?;
    let url = deployment.ingest_url()?;
    ctx.sink.take();
    deployment.mark();
    let cpu = BenchCpu::now();
    eprintln!(
        "fairness: {} quiet clusters at one event per {:?}, one cluster flooding on {} connections for {:?}, into {} ...",
        opts.quiet_clusters,
        opts.quiet_period,
        opts.flood_connections,
        opts.fairness_duration,
        topology.label()
    );
    let flood = ClosedLoop {
        pause_on_failure: opts.flood_pause,
        credentials: flood_credentials,
        ..ClosedLoop::new(opts.flood_connections, opts.fairness_duration, u64::MAX)
    };
    // The quiet clusters post from a runtime (thread) of their own, so that
    // the flood's answers do not hold up their requests in the driver; they
    // start first, so that their connections are open and warm when the
    // flood begins, and what they post before it is left out.
    let quiet_runtime = OwnRuntime::new(&format!("{LOAD_THREAD}-quiet"), 1)?;
    let quiet_load = ctx.load.on(quiet_runtime.handle())?;
    let quiet = quiet_load.each_at_period(
        &url,
        &quiet_credentials,
        opts.quiet_period,
        opts.fairness_duration + opts.warmup,
    );
    let flooding = async {
        tokio::time::sleep(opts.warmup).await;
        ctx.load.closed(&url, &flood).await
    };
    let (quiet, flood_sent) = tokio::join!(quiet, flooding);
    drop(quiet_runtime);
    let (quiet, flood_sent) = (quiet?, flood_sent?);
    let expected = quiet.accepted.len() + flood_sent.accepted.len();
    if !ctx.sink.wait_for(expected, opts.drain_timeout).await {
        eprintln!("fairness: not every accepted event reached the sink in time");
    }
    let mut usages = cpu.since();
    usages.splice(0..0, deployment.finish().await?);

    let arrivals: HashMap<u64, u64> = first_arrivals(ctx.sink.take()).into_iter().collect();
    let figures = QuietFigures::of(&quiet, &arrivals, flood_sent.first_start);
    let flood_delivered = flood_sent
        .accepted
        .iter()
        .filter(|(seq, _)| arrivals.contains_key(seq))
        .count();

    println!("## fairness: 99 quiet clusters beside one flooding\n");
    println!(
        "{} clusters in a clusters file (tokens hashed, as `herald cluster add` writes them), into {}, every \
         cluster with Herald's default share (--cluster-max-in-flight 64, --cluster-rate 100, --cluster-burst 200). \
         One cluster POSTs in a closed loop on {} keep-alive connections for {:?}, not waiting out refusals \
         (pause after one: {:?}); {} clusters POST one event every {:?} each, on their own connections (from a \
         load thread of their own), with HTTP basic auth as Flux sends it, starting {:?} before the flood (left out). \
         Latency = the sink received the delivery − the POST started (end to end: ingest, router, sender); \
         answered = the POST's 202 came − it started (ingest alone).\n",
        fleet.clusters.len(),
        topology.label(),
        opts.flood_connections,
        opts.fairness_duration,
        opts.flood_pause,
        opts.quiet_clusters,
        opts.quiet_period,
        opts.warmup,
    );
    let mut table = Table::new(&[
        "quiet clusters",
        "POSTs",
        "202s",
        "counted",
        "not delivered",
        "refused or failed",
        "p50",
        "p99",
        "max",
        "answered p50 / p99",
        "POSTs started ≥ 5 ms late",
    ]);
    table.row(vec![
        thousands(opts.quiet_clusters as f64),
        thousands((quiet.accepted.len() as u64 + quiet.failed) as f64),
        thousands(quiet.accepted.len() as f64),
        thousands(figures.latencies.len() as f64),
        thousands(figures.lost as f64),
        thousands(figures.failed as f64),
        ms(quantile(&figures.latencies, 0.5)),
        format!("**{}**", ms(figures.p99())),
        ms(figures.latencies.last().copied().unwrap_or(0)),
        format!(
            "{} / {}",
            ms(quantile(&figures.answers, 0.5)),
            ms(quantile(&figures.answers, 0.99))
        ),
        thousands(quiet.late_starts as f64),
    ]);
    table.print();
    let mut flood_table = Table::new(&[
        "flooding cluster",
        "POSTs",
        "accepted (202)",
        "refused (503 + Retry-After)",
        "other failures",
        "POSTs/s",
        "accepted/s",
        "delivered",
    ]);
    let posts = flood_sent.accepted.len() as u64 + flood_sent.failed;
    flood_table.row(vec![
        format!("{} connections", opts.flood_connections),
        thousands(posts as f64),
        thousands(flood_sent.accepted.len() as f64),
        thousands(flood_sent.refused as f64),
        thousands((flood_sent.failed - flood_sent.refused) as f64),
        thousands(rate(posts, flood_sent.first_start, flood_sent.last_answer)),
        thousands(rate(
            flood_sent.accepted.len() as u64,
            flood_sent.first_start,
            flood_sent.last_answer,
        )),
        thousands(flood_delivered as f64),
    ]);
    flood_table.print();
    let p99 = figures.p99();
    let mut goals = vec![Goal::new(
        "fairness",
        &format!(
            "quiet clusters' p99 ≤ {} beside a flooding cluster (end to end)",
            ms(u64::try_from(QUIET_P99_GOAL.as_nanos())?)
        ),
        format!(
            "{} ({} of {} quiet events not delivered, {} refused or failed)",
            ms(p99),
            figures.lost,
            figures.latencies.len() + figures.lost,
            figures.failed
        ),
        !figures.latencies.is_empty()
            && figures.lost == 0
            && figures.failed == 0
            && u128::from(p99) <= QUIET_P99_GOAL.as_nanos(),
    )];
    goals.extend(print_usage(
        "fairness",
        topology.label(),
        &usages,
        Some(expected as u64),
    ));
    Ok(goals)
}

/// The quiet clusters' figures from when the flood began.
struct QuietFigures {
    /// POST start → sink, sorted.
    latencies: Vec<u64>,
    /// POST start → 202, sorted.
    answers: Vec<u64>,
    /// Accepted but never at the sink.
    lost: usize,
    /// Not accepted (quiet clusters are far within their share).
    failed: u64,
}

impl QuietFigures {
    fn of(quiet: &Sent, arrivals: &HashMap<u64, u64>, flood_start: u64) -> Self {
        let counted = || {
            quiet
                .accepted
                .iter()
                .zip(&quiet.answer_times)
                .filter(move |((_, start), _)| *start >= flood_start)
        };
        let mut latencies: Vec<u64> = counted()
            .filter_map(|((seq, start), _)| arrivals.get(seq).map(|at| at.saturating_sub(*start)))
            .collect();
        let mut answers: Vec<u64> = counted().map(|(_, answer)| *answer).collect();
        let lost = counted().count() - latencies.len();
        latencies.sort_unstable();
        answers.sort_unstable();
        Self {
            latencies,
            answers,
            lost,
            failed: quiet.failed,
        }
    }

    fn p99(&self) -> u64 {
        quantile(&self.latencies, 0.99)
    }
}
