//! Scenario `max`: the highest sustained end-to-end rate, POST to sink, beside
//! the bare two-hop JetStream pipeline measured in the same run.

use std::collections::HashMap;

use crate::bare::{self, Template};
use crate::deploy::{BenchCpu, Deployment, Topology};
use crate::procs::{BenchNats, Usage};
use crate::report::{Goal, Table, ms, print_usage, quantile, rate, thousands};
use crate::sink::first_arrivals;
use crate::{Ctx, SCENARIO_ALERTS};

/// One Herald measurement.
struct HeraldRun {
    topology: Topology,
    accepted: u64,
    failed: u64,
    delivered: u64,
    ingest_rate: f64,
    during_load_rate: f64,
    /// Deliveries in each second since the first POST.
    per_second: Vec<u64>,
    end_to_end: f64,
    p50: u64,
    p99: u64,
    template: Option<Template>,
    usages: Vec<Usage>,
}

async fn herald(ctx: &Ctx, topology: Topology) -> anyhow::Result<HeraldRun> {
    let mut deployment = Deployment::prepare(&ctx.sink.url(), SCENARIO_ALERTS, "match").await?;
    deployment.launch_topology(&ctx.launcher, topology).await?;
    let url = deployment.ingest_url()?;
    ctx.sink.take();
    deployment.mark();
    let cpu = BenchCpu::now();
    eprintln!("max: {} for {:?} ...", topology.label(), ctx.opts.duration);
    let sent = ctx
        .load
        .closed_loop(&url, ctx.opts.connections, ctx.opts.duration, u64::MAX)
        .await?;
    let accepted = sent.accepted.len();
    if !ctx.sink.wait_for(accepted, ctx.opts.drain_timeout).await {
        eprintln!(
            "max: not every accepted event reached the sink within {:?}",
            ctx.opts.drain_timeout
        );
    }
    let mut usages = cpu.since();
    let arrivals = first_arrivals(ctx.sink.take());
    let starts: HashMap<u64, u64> = sent.accepted.iter().copied().collect();
    let mut latencies: Vec<u64> = arrivals
        .iter()
        .filter_map(|(seq, at)| starts.get(seq).map(|start| at.saturating_sub(*start)))
        .collect();
    latencies.sort_unstable();
    let delivered = arrivals
        .iter()
        .filter(|(seq, _)| starts.contains_key(seq))
        .count() as u64;
    let last_arrival = arrivals.iter().map(|(_, at)| *at).max().unwrap_or(0);
    let during_load = arrivals
        .iter()
        .filter(|(_, at)| *at <= sent.last_answer)
        .count() as u64;
    let template = Template::from_herald(&deployment.nats.connect().await?)
        .await
        .ok();
    usages.splice(0..0, deployment.finish().await?);
    Ok(HeraldRun {
        topology,
        accepted: accepted as u64,
        failed: sent.failed,
        delivered,
        ingest_rate: rate(accepted as u64, sent.first_start, sent.last_answer),
        during_load_rate: rate(during_load, sent.first_start, sent.last_answer),
        per_second: per_second(&arrivals, sent.first_start),
        end_to_end: rate(delivered, sent.first_start, last_arrival),
        p50: quantile(&latencies, 0.5),
        p99: quantile(&latencies, 0.99),
        template,
        usages,
    })
}

/// Arrivals in each whole second since `start`.
fn per_second(arrivals: &[(u64, u64)], start: u64) -> Vec<u64> {
    let mut counts = Vec::new();
    for (_, at) in arrivals {
        let second = usize::try_from(at.saturating_sub(start) / 1_000_000_000).unwrap_or(0);
        if counts.len() <= second {
            counts.resize(second + 1, 0);
        }
        counts[second] += 1;
    }
    counts
}

/// Runs the scenario and returns its goals.
pub async fn run(ctx: &Ctx) -> anyhow::Result<Vec<Goal>> {
    let mut runs = Vec::new();
    for topology in &ctx.opts.max_topologies {
        runs.push(herald(ctx, *topology).await?);
    }
    let template = runs
        .iter()
        .find_map(|r| r.template.clone())
        .unwrap_or(Template {
            payload_len: 700,
            headers: vec![
                ("Nats-Msg-Id".into(), "0".repeat(64)),
                ("Herald-Event-Id".into(), "0".repeat(64)),
            ],
        });
    eprintln!(
        "max: bare pipeline ({} byte payloads, {} headers) for {:?} ...",
        template.payload_len,
        template.headers.len(),
        ctx.opts.duration
    );
    let nats = BenchNats::start().await?;
    let nats_before = nats.usage().map_or(0.0, |u| u.cpu_seconds);
    let cpu = BenchCpu::now();
    let bare = bare::run(
        &nats,
        &template,
        ctx.opts.duration,
        ctx.opts.bare_window,
        ctx.opts.drain_timeout,
    )
    .await?;
    let mut bare_usages = cpu.since();
    bare_usages.extend(nats.usage().map(|mut u| {
        u.window_cpu = Some(u.cpu_seconds - nats_before);
        u
    }));
    drop(nats);
    let bare_rate = rate(bare.consumed, bare.first_publish, bare.last_consume);

    println!("## max: highest sustained end-to-end rate\n");
    println!(
        "Closed loop: {} keep-alive connections POST for {:?}; the catalog has {SCENARIO_ALERTS} Alerts, one matching. \
         End-to-end = events delivered / (last arrival at the sink − first POST start). \
         The bare pipeline publishes {}-byte payloads with Herald's headers, {} acks in flight.\n",
        ctx.opts.connections, ctx.opts.duration, template.payload_len, ctx.opts.bare_window
    );
    let mut table = Table::new(&[
        "pipeline",
        "events in",
        "delivered",
        "failed POSTs",
        "in/s (202s)",
        "delivered/s during load",
        "end-to-end events/s",
        "latency p50 / p99 at saturation",
        "ratio to bare",
    ]);
    let mut goals = Vec::new();
    for run in &runs {
        let ratio = if bare_rate > 0.0 {
            run.end_to_end / bare_rate
        } else {
            0.0
        };
        table.row(vec![
            run.topology.label().to_owned(),
            thousands(run.accepted as f64),
            thousands(run.delivered as f64),
            thousands(run.failed as f64),
            thousands(run.ingest_rate),
            thousands(run.during_load_rate),
            format!("**{}**", thousands(run.end_to_end)),
            format!("{} / {}", ms(run.p50), ms(run.p99)),
            format!("{ratio:.2}"),
        ]);
        goals.push(Goal::new(
            "max",
            &format!("{}: end-to-end ≥ 0.7 × bare", run.topology.label()),
            format!(
                "{} vs {} events/s = {ratio:.2}",
                thousands(run.end_to_end),
                thousands(bare_rate)
            ),
            ratio >= 0.7,
        ));
    }
    table.row(vec![
        "bare async-nats two-hop pipeline".to_owned(),
        thousands(bare.published as f64),
        thousands(bare.consumed as f64),
        "-".to_owned(),
        thousands(rate(bare.published, bare.first_publish, bare.publish_end)),
        "-".to_owned(),
        format!("**{}**", thousands(bare_rate)),
        "-".to_owned(),
        "1.00".to_owned(),
    ]);
    table.print();
    for run in &runs {
        let seconds: Vec<String> = run
            .per_second
            .iter()
            .map(|n| thousands(*n as f64))
            .collect();
        println!(
            "Deliveries in each second, {}: {}\n",
            run.topology.label(),
            seconds.join(", ")
        );
    }
    for run in &runs {
        goals.extend(print_usage(
            "max",
            run.topology.label(),
            &run.usages,
            Some(run.delivered),
        ));
    }
    print_usage("max", "bare pipeline", &bare_usages, Some(bare.consumed));
    Ok(goals)
}
