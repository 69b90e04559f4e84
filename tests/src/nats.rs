//! A real nats-server for each test: `HERALD_TEST_NATS_URL` when set (its
//! Herald streams are deleted first, so run such tests one at a time), else a
//! `nats-server` spawned from `HERALD_NATS_SERVER` or `PATH` on a free
//! loopback port with a fresh store, else (with the `docker` feature) a
//! container. Never a mock; and when `CI` is set a missing server fails the
//! test instead of skipping it.

use async_nats::jetstream;
use herald_proto::names;
use herald_runtime::local_nats::{LocalNatsServer, ServerSettings};

/// A NATS server for one test.
pub struct TestNats {
    url: String,
    local: Option<LocalNatsServer>,
    #[cfg(feature = "docker")]
    _container: Option<testcontainers::ContainerAsync<testcontainers::GenericImage>>,
}

// === impl TestNats ===

impl TestNats {
    /// Starts (or reaches) a server.
    ///
    /// # Panics
    ///
    /// When no server can be had: tests need a real one.
    pub async fn start() -> Self {
        Self::start_with(ServerSettings::default()).await
    }

    /// Starts a server of our own with `settings` (`max_payload`, a small
    /// store); never an external one, whose settings are not ours to choose.
    ///
    /// # Panics
    ///
    /// When no server can be had.
    pub async fn start_own(settings: ServerSettings) -> Self {
        crate::init();
        let local = LocalNatsServer::start_with(settings)
            .await
            .unwrap_or_else(|e| panic!("this test needs a nats-server of its own: {e:#}"));
        Self {
            url: local.url(),
            local: Some(local),
            #[cfg(feature = "docker")]
            _container: None,
        }
    }

    async fn start_with(settings: ServerSettings) -> Self {
        crate::init();
        if let Ok(url) = std::env::var("HERALD_TEST_NATS_URL") {
            let server = Self {
                url,
                local: None,
                #[cfg(feature = "docker")]
                _container: None,
            };
            server.delete_herald_streams().await;
            return server;
        }
        match LocalNatsServer::start_with(settings).await {
            Ok(local) => Self {
                url: local.url(),
                local: Some(local),
                #[cfg(feature = "docker")]
                _container: None,
            },
            Err(error) => Self::from_container(error).await,
        }
    }

    #[cfg(feature = "docker")]
    async fn from_container(error: anyhow::Error) -> Self {
        use testcontainers::runners::AsyncRunner as _;
        use testcontainers::{GenericImage, ImageExt as _, core::WaitFor};
        let container = GenericImage::new("nats", "2.11")
            .with_wait_for(WaitFor::message_on_stderr("Server is ready"))
            .with_cmd(["-js"])
            .start()
            .await
            .unwrap_or_else(|e| panic!("no nats-server ({error:#}) and no container ({e})"));
        let port = container
            .get_host_port_ipv4(4222)
            .await
            .expect("container port");
        Self {
            url: format!("nats://127.0.0.1:{port}"),
            local: None,
            _container: Some(container),
        }
    }

    #[cfg(not(feature = "docker"))]
    async fn from_container(error: anyhow::Error) -> Self {
        panic!(
            "these tests need a real nats-server: {error:#}. Run scripts/test.sh, which installs one"
        );
    }

    /// `nats://127.0.0.1:<port>`.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A JetStream context on a fresh connection.
    ///
    /// # Panics
    ///
    /// When the server cannot be reached.
    pub async fn jetstream(&self) -> jetstream::Context {
        let client = async_nats::connect(&self.url)
            .await
            .expect("connect to nats");
        jetstream::new(client)
    }

    /// Kills the server (as a crash would). Only for a spawned server.
    ///
    /// # Panics
    ///
    /// When the server is not one this harness spawned.
    pub async fn stop(&mut self) {
        self.local
            .as_mut()
            .expect("only a spawned nats-server can be stopped")
            .stop()
            .await
            .expect("stop nats-server");
    }

    /// Starts the server again on the same port and store.
    ///
    /// # Panics
    ///
    /// When it does not come back.
    pub async fn restart(&mut self) {
        self.local
            .as_mut()
            .expect("only a spawned nats-server can be restarted")
            .restart()
            .await
            .expect("restart nats-server");
    }

    /// How many messages a stream holds now.
    ///
    /// # Panics
    ///
    /// When the stream does not exist.
    pub async fn stream_messages(&self, stream: &str) -> u64 {
        let js = self.jetstream().await;
        let mut stream = js.get_stream(stream).await.expect("stream exists");
        stream.info().await.expect("stream info").state.messages
    }

    async fn delete_herald_streams(&self) {
        let js = self.jetstream().await;
        for stream in [
            names::EVENTS_STREAM,
            names::DELIVERIES_STREAM,
            names::DEAD_STREAM,
        ] {
            // Absent streams are fine.
            js.delete_stream(stream).await.ok();
        }
    }
}
