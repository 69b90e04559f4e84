//! Scenario `latency`: a fixed rate for a fixed time; the time from each
//! POST's start to the sink receiving its delivery.

use std::collections::HashMap;

use crate::deploy::{BenchCpu, Deployment};
use crate::report::{Goal, Table, ms, print_usage, quantile, thousands};
use crate::sink::first_arrivals;
use crate::{Ctx, SCENARIO_ALERTS};

/// Runs the scenario and returns its goals.
pub async fn run(ctx: &Ctx) -> anyhow::Result<Vec<Goal>> {
    let opts = &ctx.opts;
    let topology = opts.latency_topology;
    let mut deployment = Deployment::prepare(&ctx.sink.url(), SCENARIO_ALERTS, "match").await?;
    deployment.launch_topology(&ctx.launcher, topology).await?;
    let url = deployment.ingest_url()?;
    ctx.sink.take();
    deployment.mark();
    let cpu = BenchCpu::now();
    eprintln!(
        "latency: {} events/s for {:?} into {} ...",
        opts.rate,
        opts.latency_duration,
        topology.label()
    );
    let sent = ctx
        .load
        .open_loop(&url, opts.rate, opts.latency_duration, opts.max_in_flight)
        .await?;
    if !ctx
        .sink
        .wait_for(sent.accepted.len(), opts.drain_timeout)
        .await
    {
        eprintln!("latency: not every accepted event reached the sink in time");
    }
    let mut usages = cpu.since();
    usages.splice(0..0, deployment.finish().await?);

    let arrivals: HashMap<u64, u64> = first_arrivals(ctx.sink.take()).into_iter().collect();
    let warmup_end = sent.first_start + u64::try_from(opts.warmup.as_nanos())?;
    let mut latencies: Vec<u64> = sent
        .accepted
        .iter()
        .filter(|(_, start)| *start >= warmup_end)
        .filter_map(|(seq, start)| arrivals.get(seq).map(|at| at.saturating_sub(*start)))
        .collect();
    let measured = sent
        .accepted
        .iter()
        .filter(|(_, s)| *s >= warmup_end)
        .count();
    let lost = measured - latencies.len();
    latencies.sort_unstable();
    let p99 = quantile(&latencies, 0.99);

    println!("## latency: POST start → sink, at a fixed rate\n");
    println!(
        "Open loop: {} events/s for {:?} into {}, each POST started on schedule whatever the earlier \
         answers (at most {} in flight); the first {:?} are warm-up and not counted. \
         Latency = the sink received the delivery − the POST started.\n",
        opts.rate,
        opts.latency_duration,
        topology.label(),
        opts.max_in_flight,
        opts.warmup
    );
    let mut table = Table::new(&[
        "rate",
        "POSTs",
        "202s",
        "counted",
        "not delivered",
        "p50",
        "p90",
        "p99",
        "max",
        "POSTs started ≥ 5 ms late",
    ]);
    table.row(vec![
        format!("{}/s", thousands(opts.rate as f64)),
        thousands((sent.accepted.len() as u64 + sent.failed) as f64),
        thousands(sent.accepted.len() as f64),
        thousands(latencies.len() as f64),
        thousands(lost as f64),
        ms(quantile(&latencies, 0.5)),
        ms(quantile(&latencies, 0.9)),
        format!("**{}**", ms(p99)),
        ms(latencies.last().copied().unwrap_or(0)),
        thousands(sent.late_starts as f64),
    ]);
    table.print();
    let mut goals = vec![Goal::new(
        "latency",
        &format!("p99 ≤ 20 ms at {}/s", thousands(opts.rate as f64)),
        ms(p99),
        !latencies.is_empty() && lost == 0 && p99 <= 20_000_000,
    )];
    goals.extend(print_usage(
        "latency",
        topology.label(),
        &usages,
        Some(sent.accepted.len() as u64),
    ));
    Ok(goals)
}
