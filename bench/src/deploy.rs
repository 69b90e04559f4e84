//! A Herald deployment for one phase: a fresh nats-server, a catalog folder,
//! and Herald as one `standalone` process or as `ingest`, `router` and
//! `sender` processes.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use async_nats::jetstream;
use herald_proto::names;

use crate::procs::{BenchNats, HeraldProc, Launcher, READY_PATIENCE, Usage, own_threads_cpu};

/// How Herald runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Topology {
    /// `herald standalone --nats-url ...`: one process.
    Standalone,
    /// `herald ingest`, `herald router`, `herald sender`: three processes.
    Split,
}

impl Topology {
    /// How tables name it.
    pub fn label(self) -> &'static str {
        match self {
            Self::Standalone => "Herald standalone (1 process)",
            Self::Split => "Herald ingest + router + sender (3 processes)",
        }
    }
}

/// A nats-server, a folder and Herald processes.
#[derive(Debug)]
pub struct Deployment {
    pub nats: BenchNats,
    pub work: tempfile::TempDir,
    /// The catalog flags of `router`, `sender` and `standalone`.
    catalog: Vec<String>,
    procs: Vec<HeraldProc>,
    stopped: Vec<Usage>,
    /// CPU seconds of each process (by pid) when the measured window began.
    marks: HashMap<u32, f64>,
}

impl Deployment {
    /// A fresh nats-server and a folder with `alerts` Alerts pointing at `sink_url`.
    pub async fn prepare(sink_url: &str, alerts: usize, match_name: &str) -> anyhow::Result<Self> {
        let nats = BenchNats::start().await?;
        let work = tempfile::Builder::new().prefix("herald-bench-").tempdir()?;
        std::fs::create_dir(work.path().join("config"))?;
        crate::catalog::write(&work.path().join("config"), sink_url, alerts, match_name)?;
        let catalog = vec![
            "--config-dir".to_owned(),
            work.path().join("config").display().to_string(),
        ];
        Ok(Self {
            nats,
            work,
            catalog,
            procs: Vec::new(),
            stopped: Vec::new(),
            marks: HashMap::new(),
        })
    }

    /// Rewrites the catalog folder (Herald reloads it; a process started
    /// afterwards reads it at start).
    pub fn rewrite_catalog(
        &self,
        sink_url: &str,
        alerts: usize,
        match_name: &str,
    ) -> anyhow::Result<()> {
        crate::catalog::write(
            &self.work.path().join("config"),
            sink_url,
            alerts,
            match_name,
        )
    }

    /// Processes started from now on read their catalog from the Kubernetes
    /// API server of `kubeconfig` (`--catalog kubernetes`), with Herald's
    /// defaults otherwise.
    pub fn use_kubernetes(&mut self, kubeconfig: &Path) {
        self.catalog = vec![
            "--catalog".to_owned(),
            "kubernetes".to_owned(),
            "--kubeconfig".to_owned(),
            kubeconfig.display().to_string(),
        ];
    }

    /// Starts `herald <subcommand>` for each of `subcommands` at once and
    /// waits until every one is ready; returns when each was ready, in ns
    /// after the first was started.
    pub async fn launch_together(
        &mut self,
        launcher: &Launcher,
        subcommands: &[&str],
    ) -> anyhow::Result<Vec<u64>> {
        let started = crate::now_ns();
        let mut procs = Vec::with_capacity(subcommands.len());
        for subcommand in subcommands {
            procs.push(launcher.spawn(
                subcommand,
                &self.nats.url(),
                &self.catalog,
                self.work.path(),
                &[],
            )?);
        }
        let ready =
            futures::future::join_all(procs.iter_mut().map(|p| p.wait_ready(READY_PATIENCE))).await;
        self.procs.extend(procs);
        ready
            .into_iter()
            .map(|at| Ok(at?.saturating_sub(started)))
            .collect()
    }

    /// Starts `herald <subcommand>` and waits until it is ready.
    pub async fn launch(&mut self, launcher: &Launcher, subcommand: &str) -> anyhow::Result<()> {
        self.launch_with(launcher, subcommand, &[]).await
    }

    /// Starts `herald <subcommand>` with `extra` flags and waits until it is ready.
    pub async fn launch_with(
        &mut self,
        launcher: &Launcher,
        subcommand: &str,
        extra: &[&str],
    ) -> anyhow::Result<()> {
        let proc = launcher
            .start(
                subcommand,
                &self.nats.url(),
                &self.catalog,
                self.work.path(),
                extra,
            )
            .await?;
        self.procs.push(proc);
        Ok(())
    }

    /// Starts Herald in `topology`.
    pub async fn launch_topology(
        &mut self,
        launcher: &Launcher,
        topology: Topology,
    ) -> anyhow::Result<()> {
        self.launch_topology_with(launcher, topology, &[]).await
    }

    /// Starts Herald in `topology`, with `ingest_extra` flags for the
    /// process that runs ingest.
    pub async fn launch_topology_with(
        &mut self,
        launcher: &Launcher,
        topology: Topology,
        ingest_extra: &[&str],
    ) -> anyhow::Result<()> {
        match topology {
            Topology::Standalone => self.launch_with(launcher, "standalone", ingest_extra).await,
            Topology::Split => {
                for subcommand in ["sender", "router"] {
                    self.launch(launcher, subcommand).await?;
                }
                self.launch_with(launcher, "ingest", ingest_extra).await
            }
        }
    }

    /// The address to POST events to.
    pub fn ingest_url(&self) -> anyhow::Result<String> {
        self.procs
            .iter()
            .find(|p| p.listen.is_some())
            .ok_or_else(|| anyhow::anyhow!("no ingest is running"))?
            .ingest_url()
    }

    /// Stops the process running `subcommand`, keeping its usage for [`Self::finish`].
    pub async fn stop(&mut self, subcommand: &str) -> anyhow::Result<()> {
        let usage = self.stop_one(subcommand).await?;
        self.stopped.push(usage);
        Ok(())
    }

    /// Stops the process running `subcommand` and returns its usage.
    pub async fn stop_one(&mut self, subcommand: &str) -> anyhow::Result<Usage> {
        let name = format!("herald {subcommand}");
        let index = self
            .procs
            .iter()
            .position(|p| p.name == name)
            .ok_or_else(|| anyhow::anyhow!("{name} is not running"))?;
        self.procs.remove(index).stop().await
    }

    /// A JetStream context on this deployment's server.
    pub async fn jetstream(&self) -> anyhow::Result<jetstream::Context> {
        Ok(jetstream::new(self.nats.connect().await?))
    }

    /// Marks the start of the measured window: [`Self::finish`] reports the
    /// CPU time each running process used since.
    pub fn mark(&mut self) {
        let usages = self
            .procs
            .iter()
            .filter_map(|p| p.usage().ok())
            .chain(self.nats.usage());
        self.marks = usages
            .filter_map(|u| Some((u.pid?, u.cpu_seconds)))
            .collect();
    }

    /// Stops every Herald process and returns the usage of each, and of the
    /// nats-server, in start order.
    pub async fn finish(mut self) -> anyhow::Result<Vec<Usage>> {
        let mut usages = std::mem::take(&mut self.stopped);
        for proc in std::mem::take(&mut self.procs) {
            usages.push(proc.stop().await?);
        }
        usages.extend(self.nats.usage());
        for usage in &mut usages {
            if let Some(mark) = usage.pid.and_then(|pid| self.marks.get(&pid)) {
                usage.window_cpu = Some(usage.cpu_seconds - mark);
            }
        }
        Ok(usages)
    }
}

/// CPU seconds of the bench's own load and sink threads.
#[derive(Debug, Clone, Copy)]
pub struct BenchCpu {
    load: f64,
    main: f64,
    machine: [u64; 8],
}

/// The first eight counters of `/proc/stat`'s `cpu` line (user, nice,
/// system, idle, iowait, irq, softirq, steal), in clock ticks.
fn machine_ticks() -> [u64; 8] {
    let mut ticks = [0; 8];
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    if let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) {
        for (slot, value) in ticks.iter_mut().zip(line.split_whitespace().skip(1)) {
            *slot = value.parse().unwrap_or(0);
        }
    }
    ticks
}

impl BenchCpu {
    /// Now.
    pub fn now() -> Self {
        Self {
            load: own_threads_cpu(crate::LOAD_THREAD),
            main: own_threads_cpu(crate::MAIN_THREAD),
            machine: machine_ticks(),
        }
    }

    /// The whole machine since `self`: busy CPU seconds (all processes) as a
    /// usage row named with the busy and steal shares.
    fn machine_since(&self) -> Usage {
        let now = machine_ticks();
        let delta: Vec<u64> = now
            .iter()
            .zip(self.machine)
            .map(|(n, t)| n.saturating_sub(t))
            .collect();
        let total: u64 = delta.iter().sum();
        let busy = delta[0] + delta[1] + delta[2] + delta[5] + delta[6];
        let share = |part: u64| {
            if total == 0 {
                0.0
            } else {
                100.0 * part as f64 / total as f64
            }
        };
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let busy_seconds = busy as f64 / crate::procs::clock_ticks();
        Usage {
            name: format!(
                "whole machine: {:.0} % of {cores} cores busy, {:.0} % steal",
                share(busy),
                share(delta[7])
            ),
            herald: false,
            peak_rss_kib: 0,
            cpu_seconds: busy_seconds,
            window_cpu: Some(busy_seconds),
            pid: None,
        }
    }

    /// What the bench used since `self`, as usage rows.
    pub fn since(self) -> Vec<Usage> {
        let now = Self::now();
        vec![
            Usage {
                name: "bench load driver (threads)".into(),
                herald: false,
                peak_rss_kib: 0,
                cpu_seconds: now.load - self.load,
                window_cpu: Some(now.load - self.load),
                pid: None,
            },
            Usage {
                name: "bench sink + NATS clients (threads)".into(),
                herald: false,
                peak_rss_kib: 0,
                cpu_seconds: now.main - self.main,
                window_cpu: Some(now.main - self.main),
                pid: None,
            },
            self.machine_since(),
        ]
    }
}

/// How many messages a durable consumer has not finished (pending + unacked);
/// `None` while it does not exist.
pub async fn consumer_backlog(
    js: &jetstream::Context,
    stream: &str,
    consumer: &str,
) -> Option<u64> {
    let mut consumer = js
        .get_consumer_from_stream::<jetstream::consumer::pull::Config, _, _>(consumer, stream)
        .await
        .ok()?;
    let info = consumer.info().await.ok()?;
    Some(info.num_pending + info.num_ack_pending as u64)
}

/// Polls the router's consumer until `total` events were routed or `patience`
/// passed; returns (time in ns, events finished) samples.
pub async fn watch_router(
    js: &jetstream::Context,
    total: u64,
    patience: Duration,
) -> Vec<(u64, u64)> {
    let deadline = tokio::time::Instant::now() + patience;
    let mut samples = Vec::new();
    while tokio::time::Instant::now() < deadline {
        if let Some(backlog) =
            consumer_backlog(js, names::EVENTS_STREAM, names::ROUTER_CONSUMER).await
        {
            let done = total.saturating_sub(backlog);
            samples.push((crate::now_ns(), done));
            if done >= total {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    samples
}
