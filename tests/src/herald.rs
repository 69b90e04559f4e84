//! Herald's services started in-process against a test NATS server, with a
//! folder catalog written from YAML text.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use herald_ingest::{IngestArgs, OptionalAddr};
use herald_router::RouterArgs;
use herald_runtime::admin::AdminServer;
use herald_runtime::catalog::{self, CatalogArgs};
use herald_runtime::nats::NatsArgs;
use herald_runtime::serve::Deadlines;
use herald_runtime::{Metrics, Readiness};
use herald_senders::SenderArgs;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Which services to run, and their settings.
#[derive(Debug, Clone)]
pub struct Options {
    pub ingest: bool,
    pub router: bool,
    pub sender: bool,
    pub ingest_args: IngestArgs,
    pub router_args: RouterArgs,
    pub sender_args: SenderArgs,
    pub reload_interval: Duration,
    /// The clusters file (ingest's tokens, the router's cluster labels).
    pub clusters_file: Option<std::path::PathBuf>,
    /// Read the catalog from a cluster instead of the folder.
    pub kubernetes: Option<herald_runtime::catalog::kubernetes::KubeArgs>,
    /// Stream and bucket budgets.
    pub budgets: herald_runtime::budget::Budgets,
    /// The connection deadlines of every listener (ingest and admin).
    pub deadlines: Deadlines,
    /// Replicas of each stream and bucket (`--stream-replicas`).
    pub stream_replicas: usize,
    /// The JetStream domain of Herald's streams and buckets (`--jetstream-domain`).
    pub jetstream_domain: Option<String>,
    /// The fleet administration namespaces (`--fleet-admin-namespace`).
    pub fleet_admin_namespaces: Vec<String>,
}

impl Options {
    /// A sender alone (another replica, or one started after ingest and
    /// the router), with the default settings.
    #[must_use]
    pub fn senders_only() -> Self {
        Self {
            ingest: false,
            router: false,
            ..Self::default()
        }
    }
}

impl Default for Options {
    fn default() -> Self {
        let loopback: SocketAddr = "127.0.0.1:0".parse().expect("address");
        Self {
            ingest: true,
            router: true,
            sender: true,
            ingest_args: IngestArgs {
                listen: loopback,
                grpc_listen: OptionalAddr(Some(loopback)),
                cluster: "test".to_owned(),
                max_body_bytes: herald_ingest::http::MAX_BODY_BYTES,
                rate_limit_interval: Duration::from_secs(300),
                publish_timeout: Duration::from_secs(1),
                body_read_timeout: Duration::from_secs(30),
                cluster_max_in_flight: 64,
                cluster_rate: 100.0,
                cluster_burst: 200,
                tls: herald_runtime::tls::TlsArgs::default(),
            },
            router_args: RouterArgs {
                router_concurrency: 64,
                no_cross_namespace_refs: false,
                // Most suites model one cluster; the fleet suite turns it on.
                no_cluster_metadata: true,
                router_ack_wait: Duration::from_secs(5),
                edges: Vec::new(),
            },
            sender_args: SenderArgs {
                sender_concurrency: 32,
                max_attempts: 5,
                retry_base: Duration::from_millis(200),
                retry_max: Duration::from_secs(2),
                max_age: Duration::from_secs(3600),
                retry_policies: Vec::new(),
                paces: Vec::new(),
                pace_max_wait: Duration::from_secs(5),
                sender_ack_wait: Duration::from_secs(5),
                slack_thread_ttl: Duration::from_secs(3600),
            },
            reload_interval: Duration::from_millis(100),
            kubernetes: None,
            clusters_file: None,
            budgets: herald_runtime::budget::Budgets::default(),
            deadlines: Deadlines::default(),
            stream_replicas: 1,
            jetstream_domain: None,
            fleet_admin_namespaces: Vec::new(),
        }
    }
}

/// Running Herald services.
pub struct TestHerald {
    cancel: CancellationToken,
    tasks: JoinSet<()>,
    ingest: Option<SocketAddr>,
    grpc: Option<SocketAddr>,
    admin: SocketAddr,
    config_dir: PathBuf,
    nats: herald_runtime::Nats,
    pub metrics: Metrics,
    pub readiness: Readiness,
    http: reqwest::Client,
}

/// A catalog folder with one `generic` Provider `apps/hook` sending to
/// `address` and one Alert `apps/all` on every Kustomization.
///
/// # Panics
///
/// When the folder cannot be written.
#[must_use]
pub fn hook_catalog(address: &str) -> tempfile::TempDir {
    config_dir(&format!(
        "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Provider\nmetadata: {{name: hook, namespace: apps}}\n\
         spec: {{type: generic, address: '{address}'}}\n---\n\
         apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Alert\nmetadata: {{name: all, namespace: apps}}\n\
         spec: {{providerRef: {{name: hook}}, eventSources: [{{kind: Kustomization, name: '*'}}]}}\n"
    ))
}

/// Writes `manifests` as `config.yaml` in a new temporary folder.
///
/// # Panics
///
/// When the folder cannot be written.
#[must_use]
pub fn config_dir(manifests: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("config.yaml"), manifests).expect("write manifests");
    dir
}

// === impl TestHerald ===

impl TestHerald {
    /// Starts ingest, router and sender on `nats_url` with the catalog in `dir`.
    pub async fn start(nats_url: &str, dir: &Path) -> Self {
        Self::start_with(nats_url, dir, Options::default()).await
    }

    /// Starts the services `options` asks for.
    ///
    /// # Panics
    ///
    /// When a service cannot start.
    pub async fn start_with(nats_url: &str, dir: &Path, options: Options) -> Self {
        crate::init();
        let cancel = CancellationToken::new();
        let readiness = Readiness::default();
        let metrics = Metrics::new();
        readiness.register("nats");
        readiness.register("started");
        let nats_args = NatsArgs {
            nats_url: Some(nats_url.to_owned()),
            nats_creds: None,
            jetstream_domain: options.jetstream_domain.clone(),
            stream_replicas: options.stream_replicas,
            events_max_age: Duration::from_secs(3600),
            duplicate_window: Duration::from_secs(120),
            dead_max_age: Duration::from_secs(3600),
            budgets: options.budgets.clone(),
        };
        let nats = herald_runtime::nats::connect(&nats_args, "herald-test", &readiness)
            .await
            .expect("connect to nats");
        let mut tasks = JoinSet::new();
        let admin = AdminServer::bind(
            "127.0.0.1:0".parse().expect("address"),
            readiness.clone(),
            metrics.clone(),
        )
        .await
        .expect("admin listener");
        let admin_addr = admin.local_addr().expect("admin addr");
        tasks.spawn(admin.run(options.deadlines, cancel.clone()));
        let catalog_args = CatalogArgs {
            source: if options.kubernetes.is_some() {
                catalog::SourceKind::Kubernetes
            } else {
                catalog::SourceKind::Folder
            },
            config_dir: dir.to_path_buf(),
            default_namespace: "default".to_owned(),
            reload_interval: options.reload_interval,
            kubernetes: options.kubernetes.clone().unwrap_or_default(),
            fleet_admin: catalog::FleetAdminArgs {
                fleet_admin_namespaces: options.fleet_admin_namespaces.clone(),
            },
        };
        let (catalog, source) = catalog::Source::open(&catalog_args, &readiness)
            .await
            .expect("catalog");
        tasks.spawn(source.run(cancel.clone()));
        let fleet = options.clusters_file.as_ref().map(|path| {
            let fleet = herald_runtime::clusters::Fleet::open(path).expect("clusters file");
            tasks.spawn(fleet.clone().watch(cancel.clone()));
            tasks.spawn(catalog::kubernetes::members::run(
                catalog.clone(),
                fleet.clone(),
                catalog_args.kubernetes.clone(),
                readiness.clone(),
                cancel.clone(),
            ));
            fleet
        });
        if options.sender {
            let app = herald_senders::App::build(
                &options.sender_args,
                nats.clone(),
                catalog.clone(),
                metrics.clone(),
                &readiness,
                &cancel,
            )
            .await
            .expect("sender");
            tasks.spawn(app.run(cancel.clone()));
        }
        if options.router {
            let app = herald_router::App::build(
                &options.router_args,
                fleet.clone(),
                nats.clone(),
                catalog.clone(),
                metrics.clone(),
                &readiness,
                &cancel,
            )
            .await
            .expect("router");
            tasks.spawn(app.run(cancel.clone()));
        }
        let (mut ingest, mut grpc) = (None, None);
        if options.ingest {
            let app = herald_ingest::App::build(
                &options.ingest_args,
                fleet,
                nats.clone(),
                metrics.clone(),
                &readiness,
                &cancel,
            )
            .await
            .expect("ingest");
            ingest = Some(app.http_addr().expect("http addr"));
            grpc = app.grpc_addr();
            let (c, deadlines) = (cancel.clone(), options.deadlines);
            tasks.spawn(async move {
                app.run(deadlines, c).await.expect("ingest runs");
            });
        }
        readiness.set("started", true);
        Self {
            cancel,
            tasks,
            ingest,
            grpc,
            admin: admin_addr,
            config_dir: dir.to_path_buf(),
            nats,
            metrics,
            readiness,
            http: reqwest::Client::new(),
        }
    }

    /// The URL Flux controllers would POST to.
    ///
    /// # Panics
    ///
    /// When ingest is not running.
    #[must_use]
    pub fn ingest_url(&self) -> String {
        format!("http://{}/", self.ingest.expect("ingest runs"))
    }

    /// The gRPC intake's address.
    ///
    /// # Panics
    ///
    /// When ingest does not run gRPC.
    #[must_use]
    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc.expect("grpc runs"))
    }

    /// The ingest HTTP listener's address.
    ///
    /// # Panics
    ///
    /// When ingest is not running.
    #[must_use]
    pub fn ingest_addr(&self) -> SocketAddr {
        self.ingest.expect("ingest runs")
    }

    /// The gRPC listener's address.
    ///
    /// # Panics
    ///
    /// When ingest does not run gRPC.
    #[must_use]
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc.expect("grpc runs")
    }

    /// The admin listener's address.
    #[must_use]
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    /// `http://<admin>/<path>`.
    #[must_use]
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// The `server_name` of the NATS server the services are connected to now.
    #[must_use]
    pub fn nats_server(&self) -> String {
        self.nats.client.server_info().server_name
    }

    /// Its NATS connection (for driving a component of its own).
    #[must_use]
    pub fn nats(&self) -> &herald_runtime::Nats {
        &self.nats
    }

    /// The catalog folder.
    #[must_use]
    pub fn config_dir(&self) -> &Path {
        &self.config_dir
    }

    /// POSTs `body` to ingest; returns the status and body text.
    ///
    /// # Panics
    ///
    /// When ingest cannot be reached at all.
    pub async fn post(&self, body: impl Into<reqwest::Body>) -> (u16, String) {
        let response = self
            .http
            .post(self.ingest_url())
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("ingest answers");
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    }

    /// POSTs `body` to ingest and returns the whole response.
    ///
    /// # Panics
    ///
    /// When ingest cannot be reached at all.
    pub async fn post_response(&self, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.http
            .post(self.ingest_url())
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("ingest answers")
    }

    /// GETs an admin path; returns the status and body text.
    ///
    /// # Panics
    ///
    /// When the admin listener cannot be reached.
    pub async fn admin(&self, path: &str) -> (u16, String) {
        let response = self
            .http
            .get(self.admin_url(path))
            .send()
            .await
            .expect("admin answers");
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    }

    /// Stops every service and waits for them to drain.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        while self.tasks.join_next().await.is_some() {}
    }
}

impl Drop for TestHerald {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}
