//! Scenario `clusters`: intake (202s per second, closed loop) from 1,000
//! authenticated clusters against intake from one, with the same
//! connections, in turn in the same run. Both phases run `herald ingest`
//! alone, on a fresh nats-server, with the same 1,000-cluster clusters file;
//! in the first every POST carries one cluster's credentials, in the second
//! each POST carries the next cluster's, round the fleet.
//!
//! Shares are not what is measured: the rate share is off
//! (`--cluster-rate 0`), since one cluster posting thousands a second would
//! be held to it, and the in-flight share keeps its default (64), which the
//! load's connections never exceed.

use crate::deploy::{BenchCpu, Deployment};
use crate::fleet::Fleet;
use crate::load::{ClosedLoop, Credentials};
use crate::procs::Usage;
use crate::report::{Goal, Table, print_usage, rate, thousands};
use crate::{Ctx, SCENARIO_ALERTS};

/// The flags that keep shares out of the measurement.
const SHARE_FLAGS: [&str; 2] = ["--cluster-rate", "0"];

/// One phase: which clusters post.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    One,
    Fleet,
}

/// One measurement of a phase.
struct Round {
    posts: u64,
    accepted: u64,
    refused: u64,
    failed: u64,
    rate: f64,
    usages: Vec<Usage>,
}

async fn round(ctx: &Ctx, phase: Phase) -> anyhow::Result<Round> {
    let opts = &ctx.opts;
    let mut deployment = Deployment::prepare(&ctx.sink.url(), SCENARIO_ALERTS, "match").await?;
    let fleet = Fleet::write(
        deployment.work.path(),
        "cluster",
        opts.fleet_clusters.max(1),
    )?;
    let credentials: Credentials = match phase {
        Phase::One => fleet.credentials().only(0),
        Phase::Fleet => fleet.credentials(),
    };
    let flag = fleet.flag();
    let mut flags: Vec<&str> = flag.iter().map(String::as_str).collect();
    flags.extend(SHARE_FLAGS);
    deployment
        .launch_with(&ctx.launcher, "ingest", &flags)
        .await?;
    let url = deployment.ingest_url()?;
    deployment.mark();
    let cpu = BenchCpu::now();
    eprintln!(
        "clusters: {} cluster(s) on {} connections for {:?} ...",
        credentials.len(),
        opts.connections,
        opts.clusters_duration
    );
    let spec = ClosedLoop {
        credentials,
        ..ClosedLoop::new(opts.connections, opts.clusters_duration, u64::MAX)
    };
    let sent = ctx.load.closed(&url, &spec).await?;
    let mut usages = cpu.since();
    usages.splice(0..0, deployment.finish().await?);
    let accepted = sent.accepted.len() as u64;
    Ok(Round {
        posts: accepted + sent.failed,
        accepted,
        refused: sent.refused,
        failed: sent.failed - sent.refused,
        rate: rate(accepted, sent.first_start, sent.last_answer),
        usages,
    })
}

impl Round {
    /// `herald ingest`'s CPU time in the measured window per accepted event,
    /// the figure that other load on the machine moves least.
    fn ingest_cpu_per_event(&self) -> String {
        self.usages
            .iter()
            .find(|u| u.herald)
            .and_then(|u| u.window_cpu)
            .filter(|_| self.accepted > 0)
            .map_or("-".to_owned(), |cpu| {
                format!("{:.0}", cpu * 1e6 / self.accepted as f64)
            })
    }
}

/// Runs the scenario and returns its goals.
pub async fn run(ctx: &Ctx) -> anyhow::Result<Vec<Goal>> {
    let opts = &ctx.opts;
    let mut one = Vec::new();
    let mut many = Vec::new();
    for _ in 0..opts.clusters_rounds.max(1) {
        one.push(round(ctx, Phase::One).await?);
        many.push(round(ctx, Phase::Fleet).await?);
    }
    let best = |rounds: &[Round]| rounds.iter().map(|r| r.rate).fold(0.0, f64::max);
    let (best_one, best_many) = (best(&one), best(&many));

    println!("## clusters: intake from 1,000 authenticated clusters against one\n");
    println!(
        "`herald ingest` alone, on a fresh nats-server each time, with a clusters file of {} clusters (tokens hashed). \
         Closed loop: {} keep-alive connections POST for {:?}; with one cluster every POST carries its basic auth, \
         with {} each POST carries the next cluster's in turn. Shares are not what is measured: the rate share is off \
         (`--cluster-rate 0`) and the in-flight share keeps its default of 64, which {} connections never exceed. \
         Rate = 202s / (last answer − first POST start); {} round(s) of each, in turn; the best counts. \
         Other work on the machine moves the rates; ingest's CPU time per event it moves less.\n",
        opts.fleet_clusters,
        opts.connections,
        opts.clusters_duration,
        thousands(opts.fleet_clusters as f64),
        opts.connections,
        opts.clusters_rounds
    );
    let mut table = Table::new(&[
        "clusters posting",
        "POSTs (each round)",
        "202s (each round)",
        "refused / failed (each round)",
        "intake events/s (each round)",
        "intake events/s (best)",
        "ratio to one",
        "herald ingest CPU µs per event (each round)",
    ]);
    for (label, rounds, best_rate) in [
        ("1".to_owned(), &one, best_one),
        (thousands(opts.fleet_clusters as f64), &many, best_many),
    ] {
        let each =
            |f: &dyn Fn(&Round) -> String| rounds.iter().map(f).collect::<Vec<_>>().join(" / ");
        table.row(vec![
            label,
            each(&|r| thousands(r.posts as f64)),
            each(&|r| thousands(r.accepted as f64)),
            each(&|r| {
                format!(
                    "{} / {}",
                    thousands(r.refused as f64),
                    thousands(r.failed as f64)
                )
            }),
            each(&|r| thousands(r.rate)),
            format!("**{}**", thousands(best_rate)),
            format!(
                "{:.2}",
                if best_one > 0.0 {
                    best_rate / best_one
                } else {
                    0.0
                }
            ),
            each(&|r| r.ingest_cpu_per_event()),
        ]);
    }
    table.print();
    let mut goals = vec![Goal::rate_ratio(
        "clusters",
        &format!(
            "intake from {} clusters ≥ 0.9 × from one",
            thousands(opts.fleet_clusters as f64)
        ),
        best_many,
        best_one,
        0.9,
    )];
    for (i, (o, m)) in one.iter().zip(&many).enumerate() {
        goals.extend(print_usage(
            "clusters",
            &format!("one cluster, round {}", i + 1),
            &o.usages,
            Some(o.accepted),
        ));
        goals.extend(print_usage(
            "clusters",
            &format!(
                "{} clusters, round {}",
                thousands(opts.fleet_clusters as f64),
                i + 1
            ),
            &m.usages,
            Some(m.accepted),
        ));
    }
    Ok(goals)
}
