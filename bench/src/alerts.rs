//! Scenario `alerts`: routing throughput of one router process with 10, 1,000
//! and 10,000 Alerts in the catalog, one of them matching. HERALD_EVENTS is
//! filled once through ingest; each catalog size then routes the whole backlog
//! with a fresh router consumer.

use async_nats::jetstream;
use herald_proto::names;

use crate::deploy::{Deployment, watch_router};
use crate::procs::Usage;
use crate::report::{Goal, Table, mib, print_usage, rate, thousands};
use crate::{Ctx, SCENARIO_ALERTS};

/// The routing rate between 10 % and 90 % of the backlog, from (ns, done)
/// samples; the start-up and the tail are left out.
pub fn middle_rate(samples: &[(u64, u64)], total: u64) -> f64 {
    let at = |fraction: u64| {
        samples
            .iter()
            .find(|(_, done)| *done * 10 >= total * fraction)
            .copied()
    };
    match (at(1), at(9)) {
        (Some((t1, d1)), Some((t9, d9))) if t9 > t1 => rate(d9 - d1, t1, t9),
        _ => 0.0,
    }
}

/// Events routed in each half second, from the first sample that shows progress.
fn per_half_second(samples: &[(u64, u64)]) -> Vec<u64> {
    let Some(&(start, _)) = samples.iter().find(|(_, done)| *done > 0) else {
        return Vec::new();
    };
    let mut ends: Vec<u64> = Vec::new();
    for (at, done) in samples.iter().filter(|(at, _)| *at >= start) {
        let slot = usize::try_from((at - start) / 500_000_000).unwrap_or(0);
        if ends.len() <= slot {
            let last = ends.last().copied().unwrap_or(0);
            ends.resize(slot + 1, last);
        }
        ends[slot] = *done;
    }
    let mut previous = 0;
    ends.into_iter()
        .map(|done| {
            let delta = done.saturating_sub(previous);
            previous = done;
            delta
        })
        .collect()
}

/// Fills HERALD_EVENTS with `events` events through a `herald ingest`, with
/// Flux's duplicate suppression off (the fill is not what is measured, and
/// every event differs anyway).
pub async fn preload(
    ctx: &Ctx,
    deployment: &mut Deployment,
    events: u64,
) -> anyhow::Result<(u64, f64)> {
    deployment
        .launch_with(&ctx.launcher, "ingest", &["--rate-limit-interval=0s"])
        .await?;
    let url = deployment.ingest_url()?;
    eprintln!("Filling HERALD_EVENTS with {events} events through herald ingest ...");
    let sent = ctx
        .load
        .closed_loop(&url, ctx.opts.connections, ctx.opts.preload_timeout, events)
        .await?;
    deployment.stop("ingest").await?;
    let accepted = sent.accepted.len() as u64;
    Ok((accepted, rate(accepted, sent.first_start, sent.last_answer)))
}

async fn delivery_count(js: &jetstream::Context) -> anyhow::Result<u64> {
    let mut stream = js.get_stream(names::DELIVERIES_STREAM).await?;
    Ok(stream.info().await?.state.messages)
}

/// One routing run.
struct RouteRun {
    alerts: usize,
    round: usize,
    routed: u64,
    stored: u64,
    rate: f64,
    timeline: Vec<u64>,
    usage: Usage,
}

/// Routes the whole backlog once with a fresh router consumer and a catalog
/// of `alerts` Alerts.
async fn route_once(
    ctx: &Ctx,
    deployment: &mut Deployment,
    js: &jetstream::Context,
    alerts: usize,
    round: usize,
    events: u64,
) -> anyhow::Result<RouteRun> {
    // A new matching Alert name per run: new delivery ids, so none is taken
    // for a duplicate of an earlier run's.
    let match_name = format!("match-{alerts}-{round}");
    deployment.rewrite_catalog(&ctx.sink.url(), alerts, &match_name)?;
    js.delete_consumer_from_stream(names::ROUTER_CONSUMER, names::EVENTS_STREAM)
        .await
        .ok();
    if let Ok(stream) = js.get_stream(names::DELIVERIES_STREAM).await {
        stream.purge().await?;
    }
    eprintln!("alerts: routing {events} events with {alerts} Alerts (round {round}) ...");
    let watch = {
        let js = js.clone();
        let patience = ctx.opts.routing_timeout;
        tokio::spawn(async move { watch_router(&js, events, patience).await })
    };
    deployment.launch(&ctx.launcher, "router").await?;
    let samples = watch.await?;
    let mut usage = deployment.stop_one("router").await?;
    usage.name = format!(
        "herald router ({} Alerts, round {round})",
        thousands(alerts as f64)
    );
    Ok(RouteRun {
        alerts,
        round,
        routed: samples.last().map_or(0, |(_, done)| *done),
        stored: delivery_count(js).await.unwrap_or(0),
        rate: middle_rate(&samples, events),
        timeline: per_half_second(&samples),
        usage,
    })
}

/// Runs the scenario and returns its goals.
pub async fn run(ctx: &Ctx) -> anyhow::Result<Vec<Goal>> {
    let opts = &ctx.opts;
    let mut deployment = Deployment::prepare(&ctx.sink.url(), SCENARIO_ALERTS, "match").await?;
    let (events, ingest_rate) = preload(ctx, &mut deployment, opts.routing_events).await?;
    let js = deployment.jetstream().await?;
    let mut runs = Vec::new();
    for round in 1..=opts.routing_rounds.max(1) {
        for &alerts in &opts.alert_counts {
            runs.push(route_once(ctx, &mut deployment, &js, alerts, round, events).await?);
        }
    }
    let mut usages: Vec<Usage> = runs.iter().map(|r| r.usage.clone()).collect();
    usages.extend(deployment.finish().await?);
    // Each Herald process here handled the backlog once in its life.
    for usage in usages.iter_mut().filter(|u| u.herald) {
        usage.window_cpu = Some(usage.cpu_seconds);
    }

    println!("## alerts: routing throughput against the catalog's size\n");
    println!(
        "{} events (Kustomization apps/podinfo) were stored through herald ingest ({} events/s, \
         duplicate suppression off for the fill); then, for each catalog size, one `herald router` \
         (default flags) routed the whole backlog with a fresh consumer, {} round(s) in turn. \
         One Alert matches; the others select other kinds in the same namespace or any kind in 90 \
         other namespaces. Rate = events finished between 10 % and 90 % of the backlog / time \
         (router consumer polled every 20 ms); the figure of a size is its best round.\n",
        thousands(events as f64),
        thousands(ingest_rate),
        opts.routing_rounds.max(1)
    );
    let mut table = Table::new(&[
        "Alerts in the catalog",
        "events routed (each round)",
        "deliveries stored (each round)",
        "routing events/s (each round)",
        "routing events/s (best)",
        "router peak RSS (highest)",
    ]);
    let mut best = Vec::new();
    for &alerts in &opts.alert_counts {
        let of_size: Vec<&RouteRun> = runs.iter().filter(|r| r.alerts == alerts).collect();
        let join = |f: &dyn Fn(&RouteRun) -> String| {
            of_size.iter().map(|r| f(r)).collect::<Vec<_>>().join(" / ")
        };
        let top = of_size.iter().map(|r| r.rate).fold(0.0, f64::max);
        let rss = of_size
            .iter()
            .map(|r| r.usage.peak_rss_kib)
            .max()
            .unwrap_or(0);
        table.row(vec![
            thousands(alerts as f64),
            join(&|r| thousands(r.routed as f64)),
            join(&|r| thousands(r.stored as f64)),
            join(&|r| thousands(r.rate)),
            format!("**{}**", thousands(top)),
            mib(rss),
        ]);
        best.push((alerts, top));
    }
    table.print();
    for run in &runs {
        let halves: Vec<String> = run.timeline.iter().map(|n| thousands(*n as f64)).collect();
        println!(
            "Routed in each half second, {} Alerts, round {}: {}\n",
            thousands(run.alerts as f64),
            run.round,
            halves.join(", ")
        );
    }
    let mut goals = Vec::new();
    let small = best.iter().find(|(n, _)| *n == 10).map(|(_, r)| *r);
    let large = best.iter().find(|(n, _)| *n == 10_000).map(|(_, r)| *r);
    if let (Some(small), Some(large)) = (small, large) {
        goals.push(Goal::rate_ratio(
            "alerts",
            "routing with 10,000 Alerts ≥ 0.9 × with 10",
            large,
            small,
            0.9,
        ));
    }
    goals.extend(print_usage(
        "alerts",
        "routers, ingest (filling the stream), nats-server",
        &usages,
        Some(events),
    ));
    Ok(goals)
}
