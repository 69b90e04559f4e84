//! Scenario `max`: the highest sustained end-to-end rate, POST to sink, beside
//! the bare pipeline with HTTP edges (the yardstick) and the bare two-hop
//! JetStream pipeline without them, measured in the same run.

use std::collections::HashMap;

use crate::bare::{self, Template};
use crate::deploy::{BenchCpu, Deployment, Topology};
use crate::http_bare::HttpBare;
use crate::procs::{BenchNats, Usage};
use crate::report::{Goal, Table, ms, print_usage, quantile, rate, thousands};
use crate::sink::first_arrivals;
use crate::{Ctx, SCENARIO_ALERTS};

/// One pipeline loaded in a closed loop, as the sink saw it.
struct Measured {
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
}

/// One Herald measurement.
struct HeraldRun {
    topology: Topology,
    measured: Measured,
    template: Option<Template>,
    usages: Vec<Usage>,
}

/// Loads the pipeline at `url` for the scenario's duration and waits for
/// the sink to receive what it accepted.
async fn drive(ctx: &Ctx, what: &str, url: &str) -> anyhow::Result<Measured> {
    ctx.sink.take();
    eprintln!("max: {what} for {:?} ...", ctx.opts.duration);
    let sent = ctx
        .load
        .closed_loop(url, ctx.opts.connections, ctx.opts.duration, u64::MAX)
        .await?;
    let accepted = sent.accepted.len();
    if !ctx.sink.wait_for(accepted, ctx.opts.drain_timeout).await {
        eprintln!(
            "max: not every accepted event reached the sink within {:?}",
            ctx.opts.drain_timeout
        );
    }
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
    Ok(Measured {
        accepted: accepted as u64,
        failed: sent.failed,
        delivered,
        ingest_rate: rate(accepted as u64, sent.first_start, sent.last_answer),
        during_load_rate: rate(during_load, sent.first_start, sent.last_answer),
        per_second: per_second(&arrivals, sent.first_start),
        end_to_end: rate(delivered, sent.first_start, last_arrival),
        p50: quantile(&latencies, 0.5),
        p99: quantile(&latencies, 0.99),
    })
}

async fn herald(ctx: &Ctx, topology: Topology) -> anyhow::Result<HeraldRun> {
    let mut deployment = Deployment::prepare(&ctx.sink.url(), SCENARIO_ALERTS, "match").await?;
    deployment.launch_topology(&ctx.launcher, topology).await?;
    let url = deployment.ingest_url()?;
    deployment.mark();
    let cpu = BenchCpu::now();
    let measured = drive(ctx, topology.label(), &url).await?;
    let mut usages = cpu.since();
    let template = Template::from_herald(&deployment.nats.connect().await?)
        .await
        .ok();
    usages.splice(0..0, deployment.finish().await?);
    Ok(HeraldRun {
        topology,
        measured,
        template,
        usages,
    })
}

/// The bare pipeline with HTTP edges, loaded and measured as Herald is.
async fn http_bare(ctx: &Ctx, template: &Template) -> anyhow::Result<(Measured, Vec<Usage>)> {
    let nats = BenchNats::start().await?;
    let pipeline = HttpBare::start(
        &nats,
        template,
        &ctx.sink.url(),
        ctx.opts.bare_window,
        ctx.opts.bare_concurrency,
        ctx.opts.bare_threads,
    )
    .await?;
    let nats_before = nats.usage().map_or(0.0, |u| u.cpu_seconds);
    let cpu = BenchCpu::now();
    let measured = drive(ctx, HTTP_BARE, &pipeline.url()).await?;
    let mut usages = vec![pipeline.stop()];
    usages.extend(cpu.since());
    usages.extend(nats.usage().map(|mut u| {
        u.window_cpu = Some(u.cpu_seconds - nats_before);
        u
    }));
    Ok((measured, usages))
}

/// How tables name the bare pipeline with HTTP edges.
const HTTP_BARE: &str = "bare pipeline with HTTP edges (HTTP in, two hops, HTTP out)";

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
    let (http, http_usages) = http_bare(ctx, &template).await?;
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
         The {HTTP_BARE} takes the same POSTs from the same load driver, publishes each body and answers 202 once \
         JetStream acked it, relays it to the second stream, and POSTs it to the same sink, at most {} at once \
         (on its own runtime, {} threads). The bare pipeline without HTTP publishes {}-byte payloads with Herald's \
         headers, {} acks in flight.\n",
        ctx.opts.connections,
        ctx.opts.duration,
        ctx.opts.bare_concurrency,
        ctx.opts.bare_threads,
        template.payload_len,
        ctx.opts.bare_window
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
        "ratio to HTTP bare",
        "ratio to bare without HTTP",
    ]);
    let ratio = |rate: f64, to: f64| if to > 0.0 { rate / to } else { 0.0 };
    let row = |label: &str, m: &Measured| {
        vec![
            label.to_owned(),
            thousands(m.accepted as f64),
            thousands(m.delivered as f64),
            thousands(m.failed as f64),
            thousands(m.ingest_rate),
            thousands(m.during_load_rate),
            format!("**{}**", thousands(m.end_to_end)),
            format!("{} / {}", ms(m.p50), ms(m.p99)),
            format!("{:.2}", ratio(m.end_to_end, http.end_to_end)),
            format!("{:.2}", ratio(m.end_to_end, bare_rate)),
        ]
    };
    let mut goals = Vec::new();
    for run in &runs {
        let m = &run.measured;
        table.row(row(run.topology.label(), m));
        let to_http = ratio(m.end_to_end, http.end_to_end);
        goals.push(Goal::new(
            "max",
            &format!(
                "{}: end-to-end ≥ 0.7 × bare with HTTP edges",
                run.topology.label()
            ),
            format!(
                "{} vs {} events/s = {to_http:.2}",
                thousands(m.end_to_end),
                thousands(http.end_to_end)
            ),
            to_http >= 0.7,
        ));
    }
    table.row(row(HTTP_BARE, &http));
    table.row(vec![
        "bare async-nats two-hop pipeline (no HTTP)".to_owned(),
        thousands(bare.published as f64),
        thousands(bare.consumed as f64),
        "-".to_owned(),
        thousands(rate(bare.published, bare.first_publish, bare.publish_end)),
        "-".to_owned(),
        format!("**{}**", thousands(bare_rate)),
        "-".to_owned(),
        format!("{:.2}", ratio(bare_rate, http.end_to_end)),
        "1.00".to_owned(),
    ]);
    table.print();
    let per_second_rows = runs
        .iter()
        .map(|r| (r.topology.label(), &r.measured))
        .chain([(HTTP_BARE, &http)]);
    for (label, m) in per_second_rows {
        let seconds: Vec<String> = m.per_second.iter().map(|n| thousands(*n as f64)).collect();
        println!(
            "Deliveries in each second, {label}: {}\n",
            seconds.join(", ")
        );
    }
    for run in &runs {
        goals.extend(print_usage(
            "max",
            run.topology.label(),
            &run.usages,
            Some(run.measured.delivered),
        ));
    }
    print_usage("max", HTTP_BARE, &http_usages, Some(http.delivered));
    print_usage(
        "max",
        "bare pipeline without HTTP",
        &bare_usages,
        Some(bare.consumed),
    );
    Ok(goals)
}
