//! Scenario `kubernetes`: the catalog read from a Kubernetes API server
//! (`--catalog kubernetes`). The fake API server of herald-tests serves, for
//! each catalog size, that many Alerts, as many generic Providers pointing at
//! the sink, each with its own Secret, and Kustomizations with labels for the
//! label watches; it runs in this process on a runtime of its own
//! (`bench-kube` threads), so its CPU time is counted apart.
//!
//! Three phases: a router and a sender are started together against an empty
//! event stream and timed until both are ready; HERALD_EVENTS is filled
//! through ingest; then, for each size, one router routes the whole backlog
//! (as in the `alerts` scenario) and one sender delivers part of what it
//! stored.

use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream;
use base64::Engine as _;
use herald_proto::names;
use herald_tests::kube::FakeKube;
use serde_json::{Value, json};

use crate::alerts::{middle_rate, preload};
use crate::catalog::{OTHER_NAMESPACES, non_matching};
use crate::deploy::{Deployment, watch_router};
use crate::load::{EVENT_KIND, EVENT_NAMESPACE};
use crate::procs::{Usage, own_threads_cpu};
use crate::report::{Goal, Table, mib, print_usage, rate, secs, thousands};
use crate::{Ctx, SCENARIO_ALERTS};

/// Name prefix of the fake API server's threads.
const KUBE_THREAD: &str = "bench-kube";
/// The catalog size the goals are about, and the one it is compared with.
const LARGE: usize = 10_000;
const SMALL: usize = 10;
/// The goal on the time until both processes are ready.
const READY_GOAL: Duration = Duration::from_secs(5);
/// How long the processes run after both are ready, before their usage is read.
const SETTLE: Duration = Duration::from_secs(1);

const NOTIFICATION: &str = "notification.toolkit.fluxcd.io/v1beta3";

/// The Provider (and Secret) of Alert `i`.
fn provider_name(i: usize) -> String {
    format!("sink-{i}")
}

/// Where Alert `i` is, what it selects and its name: the first selects the
/// bench's events, the others do not (as in the `alerts` scenario).
fn alert_place(i: usize, match_name: &str) -> (String, &'static str, String) {
    if i == 0 {
        (
            EVENT_NAMESPACE.to_owned(),
            EVENT_KIND,
            match_name.to_owned(),
        )
    } else {
        let (namespace, kind) = non_matching(i - 1);
        (namespace, kind, format!("other-{}", i - 1))
    }
}

fn alert(namespace: &str, name: &str, kind: &str, provider: &str) -> Value {
    json!({
        "apiVersion": NOTIFICATION,
        "kind": "Alert",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "providerRef": {"name": provider},
            "eventSeverity": "info",
            "eventSources": [{"kind": kind, "name": "*"}],
        },
    })
}

fn provider(namespace: &str, name: &str, sink_url: &str) -> Value {
    json!({
        "apiVersion": NOTIFICATION,
        "kind": "Provider",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "type": "generic",
            "address": sink_url,
            "secretRef": {"name": format!("{name}-auth")},
        },
    })
}

/// The Secret of Provider `name`: one header, as the API server serves it
/// (base64 `data`).
fn secret(namespace: &str, name: &str) -> Value {
    let headers = format!("X-Bench-Provider: {name}\n");
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": format!("{name}-auth"), "namespace": namespace},
        "data": {"headers": base64::engine::general_purpose::STANDARD.encode(headers)},
    })
}

/// Kustomization `i` with labels; the first is the one the bench's events
/// are about.
fn kustomization(i: usize) -> Value {
    let (namespace, name) = if i == 0 {
        (EVENT_NAMESPACE.to_owned(), "podinfo".to_owned())
    } else {
        (format!("team-{}", i % OTHER_NAMESPACES), format!("app-{i}"))
    };
    json!({
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/name": name,
                "app.kubernetes.io/part-of": namespace,
                "toolkit.fluxcd.io/tenant": format!("tenant-{}", i % 7),
            },
        },
        "spec": {
            "interval": "10m",
            "path": format!("./apps/{name}"),
            "prune": true,
            "sourceRef": {"kind": "GitRepository", "name": "flux-system"},
        },
    })
}

/// One fake API server serving a catalog of `alerts` Alerts.
struct Cluster {
    alerts: usize,
    kube: FakeKube,
    kubeconfig: PathBuf,
    /// The name of the matching Alert now served.
    match_name: String,
    /// Seconds the objects took to apply.
    fill_seconds: f64,
}

// === impl Cluster ===

impl Cluster {
    /// Starts a fake API server on `runtime` and applies `alerts` Alerts,
    /// their Providers and Secrets, and `labelled` Kustomizations.
    async fn start(
        runtime: &tokio::runtime::Runtime,
        dir: PathBuf,
        sink_url: &str,
        alerts: usize,
        labelled: usize,
    ) -> anyhow::Result<Self> {
        let kube = runtime.spawn(FakeKube::start()).await?;
        std::fs::create_dir_all(&dir)?;
        let kubeconfig = kube.kubeconfig(&dir);
        let match_name = "match".to_owned();
        let filled = {
            let kube = kube.clone();
            let sink_url = sink_url.to_owned();
            let match_name = match_name.clone();
            tokio::task::spawn_blocking(move || {
                let started = std::time::Instant::now();
                for i in 0..alerts {
                    let (namespace, kind, name) = alert_place(i, &match_name);
                    let provider_name = provider_name(i);
                    kube.apply(&secret(&namespace, &provider_name).to_string());
                    kube.apply(&provider(&namespace, &provider_name, &sink_url).to_string());
                    kube.apply(&alert(&namespace, &name, kind, &provider_name).to_string());
                }
                for i in 0..labelled {
                    kube.apply(&kustomization(i).to_string());
                }
                started.elapsed().as_secs_f64()
            })
        };
        let fill_seconds = filled.await?;
        Ok(Self {
            alerts,
            kube,
            kubeconfig,
            match_name,
            fill_seconds,
        })
    }

    /// Replaces the matching Alert with one named `name` (new delivery
    /// ids, so none is taken for a duplicate of an earlier run's).
    fn rename_match(&mut self, name: &str) {
        let provider = provider_name(0);
        self.kube
            .apply(&alert(EVENT_NAMESPACE, name, EVENT_KIND, &provider).to_string());
        self.kube
            .delete(NOTIFICATION, "Alert", EVENT_NAMESPACE, &self.match_name);
        self.match_name = name.to_owned();
    }

    fn label(&self) -> String {
        thousands(self.alerts as f64)
    }
}

/// Both processes started together, timed until ready.
struct StartRun {
    alerts: usize,
    /// ns after the first was started.
    router_ready: u64,
    sender_ready: u64,
    /// CPU seconds of the fake API server's threads meanwhile (and during
    /// [`SETTLE`]).
    kube_cpu: f64,
    /// Requests the fake answered.
    requests: usize,
    router: Usage,
    sender: Usage,
}

async fn start_once(
    ctx: &Ctx,
    deployment: &mut Deployment,
    cluster: &Cluster,
    round: usize,
) -> anyhow::Result<StartRun> {
    eprintln!(
        "kubernetes: starting a router and a sender against {} Alerts (round {round}) ...",
        cluster.label()
    );
    deployment.use_kubernetes(&cluster.kubeconfig);
    let requests = cluster.kube.requests().len();
    let kube_cpu = own_threads_cpu(KUBE_THREAD);
    let ready = deployment
        .launch_together(&ctx.launcher, &["router", "sender"])
        .await?;
    tokio::time::sleep(SETTLE).await;
    let suffix = format!("{} Alerts, start, round {round}", cluster.label());
    let mut router = deployment.stop_one("router").await?;
    router.name = format!("herald router ({suffix})");
    let mut sender = deployment.stop_one("sender").await?;
    sender.name = format!("herald sender ({suffix})");
    Ok(StartRun {
        alerts: cluster.alerts,
        router_ready: ready[0],
        sender_ready: ready[1],
        kube_cpu: own_threads_cpu(KUBE_THREAD) - kube_cpu,
        requests: cluster.kube.requests().len() - requests,
        router,
        sender,
    })
}

/// One router routing the backlog, then one sender delivering part of it.
struct RouteRun {
    alerts: usize,
    round: usize,
    router_ready: u64,
    routed: u64,
    rate: f64,
    sender_ready: u64,
    delivered: usize,
    delivery_rate: f64,
    router: Usage,
    sender: Usage,
}

async fn route_once(
    ctx: &Ctx,
    deployment: &mut Deployment,
    js: &jetstream::Context,
    cluster: &mut Cluster,
    round: usize,
    events: u64,
) -> anyhow::Result<RouteRun> {
    cluster.rename_match(&format!("match-{}-{round}", cluster.alerts));
    deployment.use_kubernetes(&cluster.kubeconfig);
    js.delete_consumer_from_stream(names::ROUTER_CONSUMER, names::EVENTS_STREAM)
        .await
        .ok();
    if let Ok(stream) = js.get_stream(names::DELIVERIES_STREAM).await {
        stream.purge().await?;
    }
    eprintln!(
        "kubernetes: routing {events} events with {} Alerts (round {round}) ...",
        cluster.label()
    );
    let watch = {
        let js = js.clone();
        let patience = ctx.opts.routing_timeout;
        tokio::spawn(async move { watch_router(&js, events, patience).await })
    };
    let router_ready = deployment
        .launch_together(&ctx.launcher, &["router"])
        .await?[0];
    let samples = watch.await?;
    let suffix = format!("{} Alerts, round {round}", cluster.label());
    let mut router = deployment.stop_one("router").await?;
    router.name = format!("herald router ({suffix}, routing)");

    let wanted = usize::try_from(ctx.opts.kube_deliveries.min(events))?;
    eprintln!(
        "kubernetes: one sender delivering {wanted} of them with {} Alerts (round {round}) ...",
        cluster.label()
    );
    ctx.sink.take();
    let sender_ready = deployment
        .launch_together(&ctx.launcher, &["sender"])
        .await?[0];
    ctx.sink.wait_for(wanted, ctx.opts.routing_timeout).await;
    let mut sender = deployment.stop_one("sender").await?;
    sender.name = format!("herald sender ({suffix}, delivering)");
    let mut arrivals: Vec<u64> = ctx.sink.take().into_iter().map(|(_, at)| at).collect();
    arrivals.sort_unstable();
    let n = arrivals.len();
    // The middle 80 % of arrivals: no start-up, no tail.
    let delivery_rate = if n >= 10 {
        rate((n * 8 / 10) as u64, arrivals[n / 10], arrivals[n * 9 / 10])
    } else {
        0.0
    };
    Ok(RouteRun {
        alerts: cluster.alerts,
        round,
        router_ready,
        routed: samples.last().map_or(0, |(_, done)| *done),
        rate: middle_rate(&samples, events),
        sender_ready,
        delivered: n,
        delivery_rate,
        router,
        sender,
    })
}

/// `1.23 s`.
fn seconds(ns: u64) -> String {
    format!("{:.2} s", secs(ns))
}

/// Runs the scenario and returns its goals.
pub async fn run(ctx: &Ctx) -> anyhow::Result<Vec<Goal>> {
    let opts = &ctx.opts;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(KUBE_THREAD)
        .enable_all()
        .build()?;
    let result = measure(ctx, &runtime).await;
    runtime.shutdown_background();
    let Measured {
        starts,
        routes,
        mut usages,
        events,
        fills,
    } = result?;
    let rounds = opts.routing_rounds.max(1);
    // Each Herald process here ran for its own phase only.
    for usage in usages.iter_mut().filter(|u| u.herald) {
        usage.window_cpu = Some(usage.cpu_seconds);
    }

    println!("## kubernetes: the catalog from a Kubernetes API server\n");
    println!(
        "herald-tests' fake Kubernetes API server (in the bench process, 2 threads of its own) \
         serves, for each size, that many `v1beta3` Alerts (one matching the events, the others \
         as in `alerts`), one `generic` Provider per Alert pointing at the sink, each with a \
         `secretRef` to its own Secret (a `headers` key), and {} Kustomizations with labels \
         (the label watches); Herald runs with `--catalog kubernetes --kubeconfig ...` and its \
         defaults otherwise. Filling the fake took {}.\n",
        thousands(opts.kube_labelled as f64),
        fills
            .iter()
            .map(|(alerts, fill)| format!("{fill:.1} s for {}", thousands(*alerts as f64)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "Start: a router and a sender are started together (nothing to route yet); ready = \
         from starting the first until its `/readyz` answers 200 (polled every 10 ms), i.e. \
         after discovery and the first full list of Alerts, Providers, Secrets and every Flux \
         kind's metadata; peak RSS and CPU are read {} after both are ready. {rounds} round(s) \
         in turn.\n",
        seconds(u64::try_from(SETTLE.as_nanos())?)
    );
    let mut table = Table::new(&[
        "Alerts (= Providers = Secrets)",
        "router ready (each round)",
        "sender ready (each round)",
        "both ready (slowest)",
        "router peak RSS (highest)",
        "sender peak RSS (highest)",
        "CPU s per start: router / sender / fake API server (each round)",
        "API requests per start",
    ]);
    let mut slowest = Vec::new();
    for &alerts in &opts.kube_alert_counts {
        let of_size: Vec<&StartRun> = starts.iter().filter(|r| r.alerts == alerts).collect();
        let join = |f: &dyn Fn(&StartRun) -> String| {
            of_size.iter().map(|r| f(r)).collect::<Vec<_>>().join(" / ")
        };
        let worst = of_size
            .iter()
            .map(|r| r.router_ready.max(r.sender_ready))
            .max()
            .unwrap_or(0);
        let rss = |f: &dyn Fn(&StartRun) -> u64| of_size.iter().map(|r| f(r)).max().unwrap_or(0);
        table.row(vec![
            thousands(alerts as f64),
            join(&|r| seconds(r.router_ready)),
            join(&|r| seconds(r.sender_ready)),
            format!("**{}**", seconds(worst)),
            mib(rss(&|r| r.router.peak_rss_kib)),
            mib(rss(&|r| r.sender.peak_rss_kib)),
            of_size
                .iter()
                .map(|r| {
                    format!(
                        "{:.1} / {:.1} / {:.1}",
                        r.router.cpu_seconds, r.sender.cpu_seconds, r.kube_cpu
                    )
                })
                .collect::<Vec<_>>()
                .join("; "),
            join(&|r| r.requests.to_string()),
        ]);
        slowest.push((alerts, worst));
    }
    table.print();

    println!(
        "Routing, then sending: {} events were stored through herald ingest; then, for each \
         size, one `herald router` routed the whole backlog with a fresh consumer (rate = events \
         finished between 10 % and 90 % of the backlog / time, as in `alerts`; the figure of a \
         size is its best round), and then one `herald sender` delivered the first {} of the \
         deliveries the router stored (rate = the middle 80 % of the sink's arrivals / their \
         time span). Ready = from starting the process until `/readyz` answered 200, with the \
         backlog waiting.\n",
        thousands(events as f64),
        thousands(opts.kube_deliveries.min(events) as f64),
    );
    let mut table = Table::new(&[
        "Alerts (= Providers = Secrets)",
        "router ready (each round)",
        "events routed (each round)",
        "routing events/s (each round)",
        "routing events/s (best)",
        "router peak RSS (highest)",
        "sender ready (each round)",
        "deliveries/s (each round)",
        "sender peak RSS (highest)",
    ]);
    let mut best = Vec::new();
    for &alerts in &opts.kube_alert_counts {
        let of_size: Vec<&RouteRun> = routes.iter().filter(|r| r.alerts == alerts).collect();
        let join = |f: &dyn Fn(&RouteRun) -> String| {
            of_size.iter().map(|r| f(r)).collect::<Vec<_>>().join(" / ")
        };
        let top = of_size.iter().map(|r| r.rate).fold(0.0, f64::max);
        let rss = |f: &dyn Fn(&RouteRun) -> u64| of_size.iter().map(|r| f(r)).max().unwrap_or(0);
        table.row(vec![
            thousands(alerts as f64),
            join(&|r| seconds(r.router_ready)),
            join(&|r| thousands(r.routed as f64)),
            join(&|r| thousands(r.rate)),
            format!("**{}**", thousands(top)),
            mib(rss(&|r| r.router.peak_rss_kib)),
            join(&|r| seconds(r.sender_ready)),
            join(&|r| {
                format!(
                    "{} ({} sent)",
                    thousands(r.delivery_rate),
                    thousands(r.delivered as f64)
                )
            }),
            mib(rss(&|r| r.sender.peak_rss_kib)),
        ]);
        best.push((alerts, top));
    }
    table.print();
    for run in &routes {
        if run.routed < events {
            println!(
                "{} Alerts, round {}: only {} of {} events were routed within {:?}.\n",
                thousands(run.alerts as f64),
                run.round,
                thousands(run.routed as f64),
                thousands(events as f64),
                opts.routing_timeout
            );
        }
    }

    let mut goals = Vec::new();
    if let Some((_, worst)) = slowest.iter().find(|(n, _)| *n == LARGE) {
        goals.push(Goal::new(
            "kubernetes",
            "10,000 Alerts, Providers and Secrets: router and sender ready ≤ 5 s",
            format!("{} (slowest of {rounds})", seconds(*worst)),
            u128::from(*worst) <= READY_GOAL.as_nanos(),
        ));
    }
    let small = best.iter().find(|(n, _)| *n == SMALL).map(|(_, r)| *r);
    let large = best.iter().find(|(n, _)| *n == LARGE).map(|(_, r)| *r);
    if let (Some(small), Some(large)) = (small, large) {
        goals.push(Goal::rate_ratio(
            "kubernetes",
            "routing with 10,000 Alerts ≥ 0.9 × with 10 (both from Kubernetes)",
            large,
            small,
            0.9,
        ));
    }
    goals.extend(print_usage(
        "kubernetes",
        "routers and senders (start, routing, delivering), ingest (filling the stream), nats-server",
        &usages,
        None,
    ));
    Ok(goals)
}

/// Everything the three phases measured.
struct Measured {
    starts: Vec<StartRun>,
    routes: Vec<RouteRun>,
    /// Every Herald process, then the nats-server.
    usages: Vec<Usage>,
    /// Events in the backlog.
    events: u64,
    /// (Alerts, seconds to fill the fake) of each size.
    fills: Vec<(usize, f64)>,
}

async fn measure(ctx: &Ctx, runtime: &tokio::runtime::Runtime) -> anyhow::Result<Measured> {
    let opts = &ctx.opts;
    let mut deployment = Deployment::prepare(&ctx.sink.url(), SCENARIO_ALERTS, "match").await?;
    let mut clusters = Vec::new();
    for &alerts in &opts.kube_alert_counts {
        eprintln!(
            "kubernetes: serving {alerts} Alerts, Providers and Secrets and {} Kustomizations ...",
            opts.kube_labelled
        );
        let dir = deployment.work.path().join(format!("kube-{alerts}"));
        clusters
            .push(Cluster::start(runtime, dir, &ctx.sink.url(), alerts, opts.kube_labelled).await?);
    }
    let rounds = opts.routing_rounds.max(1);
    let mut starts = Vec::new();
    for round in 1..=rounds {
        for cluster in &clusters {
            starts.push(start_once(ctx, &mut deployment, cluster, round).await?);
        }
    }
    let (events, _) = preload(ctx, &mut deployment, opts.routing_events).await?;
    let js = deployment.jetstream().await?;
    let mut routes = Vec::new();
    for round in 1..=rounds {
        for cluster in &mut clusters {
            routes.push(route_once(ctx, &mut deployment, &js, cluster, round, events).await?);
        }
    }
    let mut usages: Vec<Usage> = Vec::new();
    for run in &starts {
        usages.extend([run.router.clone(), run.sender.clone()]);
    }
    for run in &routes {
        usages.extend([run.router.clone(), run.sender.clone()]);
    }
    usages.extend(deployment.finish().await?);
    let fills = clusters
        .iter()
        .map(|c| (c.alerts, c.fill_seconds))
        .collect();
    Ok(Measured {
        starts,
        routes,
        usages,
        events,
        fills,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_first_alert_selects_the_events() {
        let (namespace, kind, name) = alert_place(0, "match");
        assert_eq!(
            (namespace.as_str(), kind, name.as_str()),
            (EVENT_NAMESPACE, EVENT_KIND, "match")
        );
        for i in 1..20_000 {
            let (namespace, kind, _) = alert_place(i, "match");
            assert!(namespace != EVENT_NAMESPACE || kind != EVENT_KIND);
        }
    }

    #[test]
    fn herald_reads_the_objects_without_problems() {
        let mut objects = Vec::new();
        for i in 0..1000 {
            let (namespace, kind, name) = alert_place(i, "match");
            let provider_name = provider_name(i);
            for value in [
                secret(&namespace, &provider_name),
                provider(&namespace, &provider_name, "http://127.0.0.1:9/hook"),
                alert(&namespace, &name, kind, &provider_name),
            ] {
                objects.push(value.to_string());
            }
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("all.yaml"), objects.join("\n---\n")).unwrap();
        let snapshot = herald_runtime::catalog::load_folder(
            dir.path(),
            "default",
            &herald_runtime::catalog::AlertOptions::default(),
        )
        .unwrap();
        assert!(snapshot.problems.is_empty(), "{:?}", snapshot.problems);
        assert_eq!(snapshot.counts(), (1000, 1000, 1000));
    }

    #[tokio::test]
    async fn the_fake_serves_them_with_labels() {
        let kube = FakeKube::start().await;
        let (namespace, kind, name) = alert_place(3, "match");
        kube.apply(&secret(&namespace, "sink-3").to_string());
        kube.apply(&provider(&namespace, "sink-3", "http://127.0.0.1:9/hook").to_string());
        kube.apply(&alert(&namespace, &name, kind, "sink-3").to_string());
        kube.apply(&kustomization(0).to_string());
        assert_eq!(kube.objects(NOTIFICATION, "Alert").len(), 1);
        assert_eq!(kube.objects(NOTIFICATION, "Provider").len(), 1);
        let secrets = kube.objects("v1", "Secret");
        assert_eq!(secrets[0]["metadata"]["name"], "sink-3-auth");
        let kustomizations = kube.objects("kustomize.toolkit.fluxcd.io/v1", "Kustomization");
        assert_eq!(
            kustomizations[0]["metadata"]["labels"]["app.kubernetes.io/name"],
            "podinfo"
        );
    }
}
