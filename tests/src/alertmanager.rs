//! A real Alertmanager for a test: Debian's `prometheus-alertmanager` (or
//! `$HERALD_ALERTMANAGER`, or `alertmanager` on `PATH`), started on a free
//! loopback port with a temporary store, no cluster listener and a
//! configuration that routes every alert to a receiver that sends nothing.
//! Killed on drop. Alerts are read back through its own API.

use std::path::PathBuf;
use std::process::Stdio;

use serde_json::Value;
use tokio::process::{Child, Command};

/// The configuration: one receiver that notifies nobody.
const CONFIG: &str = "route:\n  receiver: blackhole\nreceivers:\n  - name: blackhole\n";

/// A running Alertmanager.
pub struct TestAlertmanager {
    port: u16,
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
    http: reqwest::Client,
}

/// The Alertmanager binary: `$HERALD_ALERTMANAGER`, else the first of
/// `prometheus-alertmanager` and `alertmanager` on `PATH`.
fn find_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("HERALD_ALERTMANAGER") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    ["prometheus-alertmanager", "alertmanager"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

// === impl TestAlertmanager ===

impl TestAlertmanager {
    /// Starts one and waits until it is ready.
    ///
    /// # Panics
    ///
    /// When there is no Alertmanager binary (`.ci/run` installs Debian's
    /// `prometheus-alertmanager`) or it does not become ready.
    pub async fn start() -> Self {
        crate::init();
        let binary = find_binary().expect(
            "these tests need Alertmanager: apt-get install prometheus-alertmanager, or set HERALD_ALERTMANAGER",
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(&config, CONFIG).expect("write the configuration");
        let storage = dir.path().join("data");
        let log = dir.path().join("alertmanager.log");
        let port = crate::process::free_port();
        let child = Command::new(&binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", storage.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
        let mut alertmanager = Self {
            port,
            child,
            log,
            _dir: dir,
            http: reqwest::Client::new(),
        };
        alertmanager.wait_ready().await;
        alertmanager
    }

    async fn wait_ready(&mut self) {
        let url = self.url("/-/ready");
        let start = tokio::time::Instant::now();
        while start.elapsed() < crate::patience() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("alertmanager exited ({status}):\n{}", self.log_text());
            }
            if let Ok(response) = self.http.get(&url).send().await
                && response.status() == 200
            {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("alertmanager not ready:\n{}", self.log_text());
    }

    /// `http://127.0.0.1:<port><path>`.
    #[must_use]
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Its log.
    #[must_use]
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The alerts it holds (`GET /api/v2/alerts`).
    ///
    /// # Panics
    ///
    /// When it does not answer with a JSON array.
    pub async fn alerts(&self) -> Vec<Value> {
        let response = self
            .http
            .get(self.url("/api/v2/alerts"))
            .send()
            .await
            .expect("alertmanager answers");
        assert_eq!(response.status(), 200, "GET /api/v2/alerts");
        let body = response.bytes().await.expect("alerts body");
        let body: Value = serde_json::from_slice(&body).expect("JSON alerts");
        body.as_array().cloned().expect("an array of alerts")
    }

    /// Waits until it holds an alert named `alertname` and returns it.
    ///
    /// # Panics
    ///
    /// When none arrives within the harness' patience.
    pub async fn wait_for_alert(&self, alertname: &str) -> Value {
        crate::eventually(&format!("alert {alertname} in alertmanager"), || async {
            self.alerts()
                .await
                .into_iter()
                .find(|alert| alert["labels"]["alertname"] == alertname)
        })
        .await
    }

    /// Kills it and waits for it to exit.
    pub async fn stop(mut self) {
        self.child.kill().await.ok();
    }
}
