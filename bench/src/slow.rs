//! Scenario `slow-sink`: the sink answers every request after a fixed delay
//! (100 ms by default); deliveries per second of one `herald sender`.
//! HERALD_DELIVERIES is filled first (ingest, then router), so that the sender
//! alone is measured.

use std::time::Duration;

use herald_proto::names;

use crate::alerts::preload;
use crate::deploy::{BenchCpu, Deployment, consumer_backlog, watch_router};
use crate::report::{Goal, Table, ms, print_usage, rate, thousands};
use crate::{Ctx, SCENARIO_ALERTS};

/// Runs the scenario and returns its goals.
pub async fn run(ctx: &Ctx) -> anyhow::Result<Vec<Goal>> {
    let opts = &ctx.opts;
    let mut deployment = Deployment::prepare(&ctx.sink.url(), SCENARIO_ALERTS, "match").await?;
    let (events, _) = preload(ctx, &mut deployment, opts.slow_events).await?;
    let js = deployment.jetstream().await?;
    eprintln!("slow-sink: routing {events} events into HERALD_DELIVERIES ...");
    deployment.launch(&ctx.launcher, "router").await?;
    watch_router(&js, events, opts.routing_timeout).await;
    deployment.stop("router").await?;

    ctx.sink.set_delay(opts.sink_delay);
    ctx.sink.take();
    let cpu = BenchCpu::now();
    eprintln!(
        "slow-sink: one herald sender, sink answering after {:?}, for at most {:?} ...",
        opts.sink_delay, opts.slow_timeout
    );
    deployment.launch(&ctx.launcher, "sender").await?;
    let all = ctx
        .sink
        .wait_for(usize::try_from(events)?, opts.slow_timeout)
        .await;
    let backlog = consumer_backlog(&js, names::DELIVERIES_STREAM, names::SENDER_CONSUMER)
        .await
        .unwrap_or(0);
    let mut usages = cpu.since();
    usages.splice(0..0, deployment.finish().await?);
    // Each Herald process here ran for its own stage only.
    for usage in usages.iter_mut().filter(|u| u.herald) {
        usage.window_cpu = Some(usage.cpu_seconds);
    }
    ctx.sink.set_delay(Duration::ZERO);
    if !all {
        eprintln!("slow-sink: {backlog} deliveries were still queued at the end");
    }

    let mut arrivals: Vec<u64> = ctx.sink.take().into_iter().map(|(_, at)| at).collect();
    arrivals.sort_unstable();
    let n = arrivals.len();
    // The middle 80 % of arrivals: no start-up, no tail.
    let per_second = if n >= 10 {
        rate((n * 8 / 10) as u64, arrivals[n / 10], arrivals[n * 9 / 10])
    } else {
        0.0
    };
    let concurrency = sender_concurrency(&ctx.launcher.sender_args);
    let ceiling = concurrency as f64 / opts.sink_delay.as_secs_f64().max(1e-9);

    println!(
        "## slow-sink: one sender against a destination answering after {}\n",
        ms(u64::try_from(opts.sink_delay.as_nanos())?)
    );
    println!(
        "{} deliveries were queued first (herald ingest, then herald router); then one `herald sender` \
         sent them. Rate = the middle 80 % of the sink's arrivals / their time span. \
         The ceiling is --sender-concurrency ({concurrency}) / the sink's delay.\n",
        thousands(events as f64)
    );
    let mut table = Table::new(&[
        "sink delay",
        "deliveries queued",
        "received by the sink",
        "deliveries/s",
        "ceiling (concurrency / delay)",
    ]);
    table.row(vec![
        ms(u64::try_from(opts.sink_delay.as_nanos())?),
        thousands(events as f64),
        thousands(n as f64),
        format!("**{}**", thousands(per_second)),
        if opts.sink_delay.is_zero() {
            "-".to_owned()
        } else {
            thousands(ceiling)
        },
    ]);
    table.print();
    let mut goals = vec![Goal::new(
        "slow-sink",
        "one sender ≥ 1,000 deliveries/s with a 100 ms destination",
        format!("{} deliveries/s", thousands(per_second)),
        per_second >= 1000.0,
    )];
    goals.extend(print_usage(
        "slow-sink",
        "ingest, router, sender (run one after the other)",
        &usages,
        Some(events),
    ));
    Ok(goals)
}

/// The sender's concurrency: from the extra flags, else Herald's default.
fn sender_concurrency(sender_args: &[String]) -> usize {
    let mut args = sender_args.iter();
    while let Some(arg) = args.next() {
        if let Some(value) = arg.strip_prefix("--sender-concurrency=") {
            return value.parse().unwrap_or(256);
        }
        if arg == "--sender-concurrency" {
            return args.next().and_then(|v| v.parse().ok()).unwrap_or(256);
        }
    }
    256
}
