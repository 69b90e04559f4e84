//! A `nats-server` of our own: JetStream on, a fresh store, a free loopback
//! port. `herald standalone` starts one when no NATS URL is given, and the
//! test harness starts one per test.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::process::{Child, Command};

/// The oldest server whose JetStream features Herald relies on.
const MIN_VERSION: (u32, u32) = (2, 10);

/// The largest message Herald's own servers carry: room for the largest event
/// Flux sends (3 MiB), the delivery and the dead letter built from it. NATS
/// defaults to 1 MiB and advises against more than 8 MiB.
pub const MAX_PAYLOAD: usize = 8 * 1024 * 1024;

/// How a [`LocalNatsServer`] is configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    /// `max_payload`: the largest message, headers included.
    pub max_payload: usize,
    /// `jetstream.max_file_store`: the whole store's size, when limited.
    pub max_file_store: Option<u64>,
    /// A directory that keeps the store across restarts (created when
    /// missing); a fresh temporary one, removed on drop, when `None`.
    pub data_dir: Option<PathBuf>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            max_payload: MAX_PAYLOAD,
            max_file_store: None,
            data_dir: None,
        }
    }
}

/// A running `nats-server` child process, killed on drop.
#[derive(Debug)]
pub struct LocalNatsServer {
    binary: PathBuf,
    port: u16,
    store: Store,
    settings: ServerSettings,
    child: Option<Child>,
}

/// Where the server keeps its store, configuration and log.
#[derive(Debug)]
enum Store {
    /// Removed when the server is dropped.
    Temporary(tempfile::TempDir),
    /// Kept: a restart finds every stream and bucket again.
    Kept(PathBuf),
}

impl Store {
    fn path(&self) -> &Path {
        match self {
            Self::Temporary(dir) => dir.path(),
            Self::Kept(dir) => dir,
        }
    }
}

/// Finds `nats-server`: `$HERALD_NATS_SERVER`, else the first on `PATH`.
///
/// # Errors
///
/// When there is none, with a hint on how to install it.
pub fn find_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("HERALD_NATS_SERVER") {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
        bail!(
            "HERALD_NATS_SERVER={} is not a file",
            path.to_string_lossy()
        );
    }
    let paths = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&paths)
        .map(|dir| dir.join("nats-server"))
        .find(|candidate| candidate.is_file())
        .context(
            "no nats-server found: set HERALD_NATS_SERVER or put nats-server on PATH \
             (scripts/nats-server.sh installs one), or pass --nats-url",
        )
}

/// Parses `nats-server: v2.15.1` into (2, 15).
fn parse_version(output: &str) -> Option<(u32, u32)> {
    let version = output
        .split_whitespace()
        .find_map(|word| word.strip_prefix('v'))?;
    let mut parts = version.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

async fn check_version(binary: &Path) -> anyhow::Result<()> {
    let output = Command::new(binary)
        .arg("--version")
        .output()
        .await
        .with_context(|| format!("cannot run {}", binary.display()))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let version = parse_version(&text)
        .with_context(|| format!("cannot read the version of {}: {text:?}", binary.display()))?;
    if version < MIN_VERSION {
        bail!(
            "{} is version {}.{}; Herald needs nats-server {}.{} or newer \
             (older servers silently ignore settings it relies on)",
            binary.display(),
            version.0,
            version.1,
            MIN_VERSION.0,
            MIN_VERSION.1
        );
    }
    Ok(())
}

fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

// === impl LocalNatsServer ===

impl LocalNatsServer {
    /// Starts a server from [`find_binary`] on a free loopback port with a
    /// fresh temporary store, and waits until it accepts connections.
    ///
    /// # Errors
    ///
    /// When no suitable binary exists or the server does not come up.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(ServerSettings::default()).await
    }

    /// Starts a server with `settings`.
    ///
    /// # Errors
    ///
    /// When no suitable binary exists or the server does not come up.
    pub async fn start_with(settings: ServerSettings) -> anyhow::Result<Self> {
        let binary = find_binary()?;
        check_version(&binary).await?;
        let store = match &settings.data_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| {
                    anyhow::anyhow!("cannot create the data directory {}: {e}", dir.display())
                })?;
                Store::Kept(dir.clone())
            }
            None => Store::Temporary(tempfile::Builder::new().prefix("herald-nats-").tempdir()?),
        };
        let mut server = Self {
            binary,
            port: 0,
            store,
            settings,
            child: None,
        };
        // Another process may grab the port between probe and spawn: retry.
        let mut last_error = None;
        for _ in 0..5 {
            server.port = free_port()?;
            match server.spawn().await {
                Ok(()) => return Ok(server),
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("nats-server did not start")))
    }

    /// `nats://127.0.0.1:<port>`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The JetStream store directory.
    #[must_use]
    pub fn store_dir(&self) -> &Path {
        self.store.path()
    }

    /// Kills the server (as a crash would) and waits for it to exit.
    ///
    /// # Errors
    ///
    /// When the process cannot be killed.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().await?;
        }
        Ok(())
    }

    /// Starts the server again on the same port with the same store.
    ///
    /// # Errors
    ///
    /// When it does not come up.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop().await?;
        let mut last_error = None;
        for _ in 0..50 {
            match self.spawn().await {
                Ok(()) => return Ok(()),
                // The port may linger briefly after the kill.
                Err(error) => last_error = Some(error),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("nats-server did not restart")))
    }

    /// The server's configuration file text.
    fn config(&self) -> String {
        let data = self.store.path().join("jetstream");
        let mut jetstream = format!("store_dir: {:?}", data.to_string_lossy());
        if let Some(max) = self.settings.max_file_store {
            jetstream.push_str(&format!(", max_file_store: {max}"));
        }
        format!(
            "listen: \"127.0.0.1:{}\"\nmax_payload: {}\njetstream {{ {jetstream} }}\n",
            self.port, self.settings.max_payload
        )
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        let config = self.store.path().join("nats-server.conf");
        std::fs::write(&config, self.config())?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.store.path().join("nats-server.log"))?;
        let mut child = Command::new(&self.binary)
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", self.binary.display()))?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "nats-server exited at start ({status}); see {}",
                    self.store.path().join("nats-server.log").display()
                );
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                self.child = Some(child);
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                // Best effort: kill_on_drop ends it anyway.
                child.kill().await.ok();
                bail!("nats-server did not accept connections within 10 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_server_versions() {
        assert_eq!(
            super::parse_version("nats-server: v2.15.1\n"),
            Some((2, 15))
        );
        assert_eq!(super::parse_version("nats-server: v2.9.10"), Some((2, 9)));
        assert_eq!(super::parse_version("garbage"), None);
    }
}
