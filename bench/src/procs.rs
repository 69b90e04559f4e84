//! Herald as child processes of its release binary, and what `/proc` says
//! about them (peak RSS, CPU seconds).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context as _, bail};
use herald_runtime::local_nats::LocalNatsServer;
use tokio::process::{Child, Command};

/// How long a Herald process may take to become ready.
pub const READY_PATIENCE: Duration = Duration::from_secs(90);

/// Builds `herald` in release mode, with the cargo that runs this bench and
/// the same target directory, and returns the binary's path.
pub fn build_herald() -> anyhow::Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("the bench crate has no parent folder")?;
    eprintln!("Building herald (release) ...");
    let status = std::process::Command::new(cargo)
        .args(["build", "--release", "--bin", "herald", "--manifest-path"])
        .arg(workspace.join("Cargo.toml"))
        .status()
        .context("cannot run cargo")?;
    if !status.success() {
        bail!("cargo build --release --bin herald failed ({status})");
    }
    // This binary is <target>/<profile>/herald-bench; herald is in <target>/release.
    let exe = std::env::current_exe()?;
    let target = exe
        .parent()
        .and_then(Path::parent)
        .context("cannot tell the target directory from the bench's path")?;
    let binary = target.join("release").join("herald");
    if !binary.is_file() {
        bail!("{} was not built", binary.display());
    }
    Ok(binary)
}

/// A free loopback address.
pub fn free_addr() -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}

/// How Herald processes are started.
#[derive(Debug, Clone)]
pub struct Launcher {
    pub binary: PathBuf,
    pub rust_log: String,
    /// Extra flags per subcommand: ingest, router, sender (standalone gets all).
    pub ingest_args: Vec<String>,
    pub router_args: Vec<String>,
    pub sender_args: Vec<String>,
}

/// A running Herald process, killed on drop.
#[derive(Debug)]
pub struct HeraldProc {
    pub name: String,
    pub pid: u32,
    /// The ingest listener, for `ingest` and `standalone`.
    pub listen: Option<SocketAddr>,
    admin: SocketAddr,
    log: PathBuf,
    child: Child,
}

/// Peak memory and CPU time of one process.
#[derive(Debug, Clone)]
pub struct Usage {
    pub name: String,
    /// Whether it is a Herald process (the 64 MiB goal applies).
    pub herald: bool,
    pub peak_rss_kib: u64,
    /// CPU seconds since the process started.
    pub cpu_seconds: f64,
    /// CPU seconds within the measured window, when it was marked.
    pub window_cpu: Option<f64>,
    pub pid: Option<u32>,
}

impl Launcher {
    /// Starts `herald <subcommand>` against `nats_url` with the `catalog`
    /// flags and the `extra` flags last, logging to `<work>/<name>.log`, and
    /// waits until `/readyz` answers 200.
    pub async fn start(
        &self,
        subcommand: &str,
        nats_url: &str,
        catalog: &[String],
        work: &Path,
        extra: &[&str],
    ) -> anyhow::Result<HeraldProc> {
        let mut proc = self.spawn(subcommand, nats_url, catalog, work, extra)?;
        proc.wait_ready(READY_PATIENCE).await?;
        Ok(proc)
    }

    /// As [`Launcher::start`], without waiting: see [`HeraldProc::wait_ready`].
    pub fn spawn(
        &self,
        subcommand: &str,
        nats_url: &str,
        catalog: &[String],
        work: &Path,
        extra: &[&str],
    ) -> anyhow::Result<HeraldProc> {
        let admin = free_addr()?;
        let mut args: Vec<String> = vec![
            subcommand.to_owned(),
            "--nats-url".into(),
            nats_url.to_owned(),
            "--admin-listen".into(),
            admin.to_string(),
        ];
        let with_ingest = matches!(subcommand, "ingest" | "standalone");
        let with_catalog = subcommand != "ingest";
        let mut listen = None;
        if with_ingest {
            let addr = free_addr()?;
            listen = Some(addr);
            args.extend(["--listen".into(), addr.to_string()]);
            args.extend(["--grpc-listen".into(), "off".into()]);
            args.extend(self.ingest_args.iter().cloned());
        }
        if with_catalog {
            args.extend(catalog.iter().cloned());
        }
        if matches!(subcommand, "router" | "standalone") {
            args.extend(self.router_args.iter().cloned());
        }
        if matches!(subcommand, "sender" | "standalone") {
            args.extend(self.sender_args.iter().cloned());
        }
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        let name = format!("herald {subcommand}");
        let log = work.join(format!("herald-{subcommand}.log"));
        let log_file = std::fs::File::create(&log)?;
        let mut command = Command::new(&self.binary);
        for (key, _) in std::env::vars_os() {
            let key_text = key.to_string_lossy();
            if key_text.starts_with("HERALD_") || key_text.starts_with("OTEL_") {
                command.env_remove(&key);
            }
        }
        let child = command
            .args(&args)
            .env("RUST_LOG", &self.rust_log)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", self.binary.display()))?;
        let pid = child.id().context("the child has no pid")?;
        Ok(HeraldProc {
            name,
            pid,
            listen,
            admin,
            log,
            child,
        })
    }
}

impl HeraldProc {
    /// `http://<listen>/` of an ingest.
    pub fn ingest_url(&self) -> anyhow::Result<String> {
        let listen = self.listen.context("not an ingest process")?;
        Ok(format!("http://{listen}/"))
    }

    /// Polls `/readyz` every 10 ms until it answers 200; returns when (on
    /// the bench clock, ns) it first did.
    pub async fn wait_ready(&mut self, patience: Duration) -> anyhow::Result<u64> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(2))
            .build()?;
        let url = format!("http://{}/readyz", self.admin);
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} exited at start ({status}):\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            if let Ok(response) = client.get(&url).send().await
                && response.status().is_success()
            {
                return Ok(crate::now_ns());
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "{} not ready after {patience:?}:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Peak RSS and CPU seconds so far.
    pub fn usage(&self) -> anyhow::Result<Usage> {
        let mut usage = usage_of(self.pid, &self.name)?;
        usage.herald = true;
        Ok(usage)
    }

    /// Reads the usage, then kills the process and waits for it.
    pub async fn stop(mut self) -> anyhow::Result<Usage> {
        let usage = self.usage()?;
        self.child.kill().await?;
        Ok(usage)
    }
}

/// The clock tick of `/proc/<pid>/stat` times (`getconf CLK_TCK`, else 100).
pub fn clock_ticks() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| {
                String::from_utf8_lossy(&out.stdout)
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .filter(|ticks| *ticks > 0.0)
            .unwrap_or(100.0)
    })
}

/// A fresh nats-server for one run, and its pid (for its CPU and memory).
#[derive(Debug)]
pub struct BenchNats {
    pub server: LocalNatsServer,
    pid: Option<u32>,
}

impl BenchNats {
    /// Starts a server with a fresh store on a free loopback port.
    pub async fn start() -> anyhow::Result<Self> {
        let server = LocalNatsServer::start().await?;
        let pid = find_pid(&server.store_dir().display().to_string());
        Ok(Self { server, pid })
    }

    /// Its URL.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Its peak RSS and CPU so far, when its pid was found.
    pub fn usage(&self) -> Option<Usage> {
        usage_of(self.pid?, "nats-server").ok()
    }

    /// A client connected to it.
    pub async fn connect(&self) -> anyhow::Result<async_nats::Client> {
        Ok(async_nats::connect(self.url()).await?)
    }
}

/// utime + stime of a `/proc/.../stat` line, in ticks.
fn stat_ticks(stat: &str) -> Option<u64> {
    // Fields after the command name, which is in parentheses: state is field 3,
    // utime field 14, stime field 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Peak RSS (`VmHWM`) and CPU seconds of process `pid`.
pub fn usage_of(pid: u32, name: &str) -> anyhow::Result<Usage> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    let peak_rss_kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM")?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let ticks = stat_ticks(&stat).context("cannot parse /proc/<pid>/stat")?;
    #[allow(clippy::cast_precision_loss)]
    let cpu_seconds = ticks as f64 / clock_ticks();
    Ok(Usage {
        name: name.to_owned(),
        herald: false,
        peak_rss_kib,
        cpu_seconds,
        window_cpu: None,
        pid: Some(pid),
    })
}

/// The pid of the process whose command line mentions `needle` (the
/// nats-server started for this run: its store folder is unique).
pub fn find_pid(needle: &str) -> Option<u32> {
    let entries = std::fs::read_dir("/proc").ok()?;
    entries.flatten().find_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
        String::from_utf8_lossy(&cmdline)
            .contains(needle)
            .then_some(pid)
    })
}

/// CPU seconds of this process's threads whose name starts with `prefix`.
pub fn own_threads_cpu(prefix: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    let ticks: u64 = tasks
        .flatten()
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|comm| comm.starts_with(prefix))
        })
        .filter_map(|task| {
            let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
            stat_ticks(&stat)
        })
        .sum();
    #[allow(clippy::cast_precision_loss)]
    let seconds = ticks as f64 / clock_ticks();
    seconds
}
