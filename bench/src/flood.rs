//! Scenario `flood`: an outage makes 1,000 Flux objects in 100 clusters fail
//! at once. One Alert hears them all and groups them (`herald.dev/group-by:
//! alert`, a short `herald.dev/group-wait`) onto one Slack-compatible
//! Provider, which Herald paces at one message a second (its default for
//! `slack`). What counts: every event named in a message the sink received,
//! soon after the last event was posted, in a handful of messages.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt as _;
use reqwest::header::HeaderValue;

use crate::deploy::{BenchCpu, Deployment};
use crate::fleet::Fleet;
use crate::load::{EVENT_KIND, EVENT_NAMESPACE, Load, SEQ_MARKER};
use crate::report::{Goal, Table, ms, print_usage, thousands};
use crate::{Ctx, now_ns};

/// Every event named within this long of the last one posted.
const NAMED_WITHIN: Duration = Duration::from_secs(10);
/// The most messages the flood may become.
const MAX_MESSAGES: u64 = 10;
/// How long a group gathers after a digest (herald.dev/group-interval):
/// short, so that events posted after the first digest are not held a minute.
const GROUP_INTERVAL: &str = "5s";
/// POSTs in flight.
const CONNECTIONS: usize = 64;

/// A failure of object `app-<seq>` as kustomize-controller posts it.
fn failure_body(seq: u64) -> String {
    format!(
        concat!(
            r#"{{"involvedObject":{{"apiVersion":"kustomize.toolkit.fluxcd.io/v1","kind":"{kind}","#,
            r#""name":"app-{seq:04}","namespace":"{ns}"}},"#,
            r#""metadata":{{"kustomize.toolkit.fluxcd.io/revision":"main@sha1:67e2c98a60dc92283531412a9e604dd4bae005a9"}},"#,
            r#""severity":"error","reason":"HealthCheckFailed","#,
            r#""message":"{marker}{seq}: health check failed after 30s: timeout waiting for: [Deployment/{ns}/app-{seq:04} status: 'InProgress']\nmore detail","#,
            r#""reportingController":"kustomize-controller","timestamp":"2026-11-21T07:27:02Z"}}"#
        ),
        kind = EVENT_KIND,
        ns = EVENT_NAMESPACE,
        marker = SEQ_MARKER,
        seq = seq,
    )
}

fn catalog(sink_url: &str, group_wait: Duration) -> (String, String) {
    let provider = format!(
        "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Provider\n\
         metadata: {{name: chat, namespace: {EVENT_NAMESPACE}}}\n\
         spec: {{type: slack, address: '{sink_url}'}}\n"
    );
    let alert = format!(
        "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Alert\n\
         metadata:\n  name: outage\n  namespace: {EVENT_NAMESPACE}\n  annotations:\n\
         \x20   herald.dev/group-wait: {}ms\n\
         \x20   herald.dev/group-interval: {GROUP_INTERVAL}\n\
         \x20   herald.dev/group-by: alert\n\
         spec:\n  providerRef: {{name: chat}}\n  eventSeverity: error\n\
         \x20 eventSources:\n    - {{kind: {EVENT_KIND}, name: '*'}}\n",
        group_wait.as_millis()
    );
    (provider, alert)
}

async fn post(client: &reqwest::Client, url: &str, seq: u64, auth: Option<HeaderValue>) -> bool {
    let mut request = client
        .post(url)
        .header("content-type", "application/json")
        .body(failure_body(seq));
    if let Some(auth) = auth {
        request = request.header(reqwest::header::AUTHORIZATION, auth);
    }
    match request.send().await {
        Ok(response) => {
            let accepted = response.status() == reqwest::StatusCode::ACCEPTED;
            response.bytes().await.is_ok() && accepted
        }
        Err(_) => false,
    }
}

/// Runs the scenario and returns its goals.
pub async fn run(ctx: &Ctx) -> anyhow::Result<Vec<Goal>> {
    let opts = &ctx.opts;
    let topology = opts.fleet_topology;
    let mut deployment = Deployment::prepare(&ctx.sink.url(), 1, "outage").await?;
    let config = deployment.work.path().join("config");
    let (provider, alert) = catalog(&ctx.sink.url(), opts.flood_group_wait);
    std::fs::write(config.join("providers.yaml"), provider)?;
    std::fs::write(config.join("alerts.yaml"), alert)?;
    let fleet = Fleet::write(
        deployment.work.path(),
        "cluster",
        opts.flood_clusters.max(1),
    )?;
    let credentials = fleet.credentials();
    let flag = fleet.flag();
    let flags: Vec<&str> = flag.iter().map(String::as_str).collect();
    deployment
        .launch_topology_with(&ctx.launcher, topology, &flags)
        .await?;
    let url = deployment.ingest_url()?;
    ctx.sink.take();
    let requests_before = ctx.sink.requests();
    deployment.mark();
    let cpu = BenchCpu::now();
    eprintln!(
        "flood: {} failures from {} clusters to one grouping Alert (group-wait {:?}) on a Slack Provider, into {} ...",
        opts.flood_events,
        fleet.clusters.len(),
        opts.flood_group_wait,
        topology.label()
    );
    let client = Load::own_client()?;
    let first_post = now_ns();
    let accepted: Vec<u64> = futures::stream::iter(1..=opts.flood_events)
        .map(|seq| {
            let client = &client;
            let url = url.as_str();
            let auth = credentials.nth(seq).cloned();
            async move { post(client, url, seq, auth).await.then_some(seq) }
        })
        .buffer_unordered(CONNECTIONS)
        .filter_map(|accepted| async move { accepted })
        .collect()
        .await;
    let last_post = now_ns();
    let expected = accepted.len();
    if !ctx
        .sink
        .wait_for_distinct(expected, opts.drain_timeout)
        .await
    {
        eprintln!("flood: not every accepted event was named in time");
    }
    // Anything more the flusher or the pacing would still send.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let records = ctx.sink.take();
    let messages = ctx.sink.requests() - requests_before;
    let mut usages = cpu.since();
    usages.splice(0..0, deployment.finish().await?);

    let named: BTreeSet<u64> = records.iter().map(|(seq, _)| *seq).collect();
    let missing = accepted.iter().filter(|s| !named.contains(s)).count();
    let first_at = records.iter().map(|(_, at)| *at).min().unwrap_or(0);
    let last_at = records.iter().map(|(_, at)| *at).max().unwrap_or(0);
    let named_after = last_at.saturating_sub(last_post);
    let within = u64::try_from(NAMED_WITHIN.as_nanos())?;

    println!(
        "## flood: {} failures from {} clusters, grouped onto one Slack Provider\n",
        thousands(opts.flood_events as f64),
        fleet.clusters.len()
    );
    println!(
        "Each of {} clusters (a clusters file, basic auth) POSTs failures of distinct objects, {CONNECTIONS} \
         POSTs in flight, into {}. One Alert (`herald.dev/group-wait: {:?}`, `group-interval: {GROUP_INTERVAL}`, \
         `group-by: alert`) hears them all; its `slack` Provider points at the sink and is paced at Herald's \
         default of one message a second. The sink counts every request and every event a request names.\n",
        fleet.clusters.len(),
        topology.label(),
        opts.flood_group_wait,
    );
    let mut table = Table::new(&[
        "events posted",
        "accepted",
        "messages received",
        "events named",
        "posting took",
        "first message after the last post",
        "every event named after the last post",
    ]);
    table.row(vec![
        thousands(opts.flood_events as f64),
        thousands(expected as f64),
        format!("**{messages}**"),
        thousands(named.len() as f64),
        ms(last_post.saturating_sub(first_post)),
        ms(first_at.saturating_sub(last_post)),
        format!("**{}**", ms(named_after)),
    ]);
    table.print();
    let all_named = missing == 0 && expected as u64 == opts.flood_events;
    let mut goals = vec![
        Goal::new(
            "flood",
            "every event named in a message within 10 s of the last event posted",
            format!(
                "{} of {} named, the last {} after",
                thousands(named.len() as f64),
                thousands(expected as f64),
                ms(named_after)
            ),
            all_named && named_after <= within,
        ),
        Goal::new(
            "flood",
            "at most 10 messages",
            format!("{messages} messages"),
            messages <= MAX_MESSAGES && messages > 0,
        ),
        Goal::new(
            "flood",
            "no event lost",
            format!(
                "{missing} of {} accepted not named, {} refused",
                thousands(expected as f64),
                opts.flood_events - expected as u64
            ),
            all_named,
        ),
    ];
    goals.extend(print_usage(
        "flood",
        topology.label(),
        &usages,
        Some(opts.flood_events),
    ));
    Ok(goals)
}
