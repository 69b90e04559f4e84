//! One `nats-server` process of a harness of several (the JetStream
//! cluster, the hub and its leaf nodes): its ports, configuration file, log
//! and child process.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use herald_runtime::local_nats::MAX_PAYLOAD;
use tokio::process::{Child, Command};

/// One `nats-server`, started from its configuration file, killed on drop.
pub(crate) struct ServerProcess {
    pub(crate) name: String,
    pub(crate) client_port: u16,
    pub(crate) http_port: u16,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl ServerProcess {
    /// Writes the configuration of a server named `name` in `dir`: its
    /// name, client and monitoring listeners on loopback, Herald's
    /// `max_payload`, then `extra` (its JetStream, cluster or leaf node
    /// blocks).
    pub(crate) fn write(
        dir: &Path,
        name: &str,
        client_port: u16,
        http_port: u16,
        extra: &str,
    ) -> std::io::Result<Self> {
        let config = dir.join(format!("{name}.conf"));
        std::fs::write(
            &config,
            format!(
                "server_name: {name}\n\
                 listen: \"127.0.0.1:{client_port}\"\n\
                 http: \"127.0.0.1:{http_port}\"\n\
                 max_payload: {MAX_PAYLOAD}\n\
                 {extra}"
            ),
        )?;
        Ok(Self {
            name: name.to_owned(),
            client_port,
            http_port,
            log: dir.join(format!("{name}.log")),
            config,
            child: None,
        })
    }

    /// Starts it (again), its log appended to.
    pub(crate) fn spawn(&mut self, binary: &Path) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("server log");
        let child = Command::new(binary)
            .arg("-c")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
    }

    /// Whether it was started and not killed since.
    pub(crate) fn is_started(&self) -> bool {
        self.child.is_some()
    }

    /// Kills it with SIGKILL, as a crash would, and waits for it to exit.
    pub(crate) async fn kill9(&mut self) {
        let mut child = self.child.take().expect("the server runs");
        child.kill().await.expect("kill -9 nats-server");
    }

    /// Its log, under its name.
    pub(crate) fn log_text(&self) -> String {
        format!(
            "\n--- {} ---\n{}",
            self.name,
            std::fs::read_to_string(&self.log).unwrap_or_default()
        )
    }

    /// Waits until its `/healthz` answers 200 (it runs, and its JetStream
    /// is current); an exit meanwhile ends the wait.
    pub(crate) async fn wait_healthy(
        &mut self,
        http: &reqwest::Client,
        within: Duration,
    ) -> Result<(), String> {
        let url = format!("http://127.0.0.1:{}/healthz", self.http_port);
        let start = tokio::time::Instant::now();
        while start.elapsed() < within {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(format!("nats-server {} exited ({status})", self.name));
            }
            if let Ok(response) = http.get(&url).send().await
                && response.status() == 200
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!(
            "nats-server {} not healthy after {within:?}",
            self.name
        ))
    }
}

/// `n` distinct free loopback ports (held together while chosen).
pub(crate) fn free_ports(n: usize) -> std::io::Result<Vec<u16>> {
    let listeners: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect()
}
