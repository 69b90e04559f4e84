//! A 3-node JetStream cluster on loopback: three `nats-server` processes
//! (from `HERALD_NATS_SERVER` or `PATH`), each with its own client,
//! monitoring and cluster port and its own store, routed to one another. A
//! node can be killed as a crash would (`kill -9`) and started again on the
//! same ports and store.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_nats::jetstream;
use herald_runtime::local_nats::find_binary;

use crate::nats_server::{ServerProcess, free_ports};

/// How many nodes the cluster has.
pub const NODES: usize = 3;

/// How long a starting cluster may take to form (it takes about a second).
const FORM_WITHIN: Duration = Duration::from_secs(20);

/// Three routed JetStream servers, killed on drop.
pub struct TestCluster {
    binary: PathBuf,
    nodes: Vec<ServerProcess>,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

// === impl TestCluster ===

impl TestCluster {
    /// Starts three nodes and waits until JetStream has a meta leader that
    /// sees every node, and every node is healthy. A cluster that does not
    /// form (a port taken between choosing and binding it) is started
    /// again on other ports.
    ///
    /// # Panics
    ///
    /// When no `nats-server` is found or no cluster forms.
    pub async fn start() -> Self {
        crate::init();
        let binary = find_binary()
            .unwrap_or_else(|e| panic!("a JetStream cluster test needs nats-server: {e:#}"));
        let mut failure = String::new();
        for _ in 0..3 {
            match Self::try_start(&binary).await {
                Ok(cluster) => return cluster,
                Err(why) => failure = why,
            }
        }
        panic!("no 3-node JetStream cluster formed: {failure}");
    }

    async fn try_start(binary: &Path) -> Result<Self, String> {
        let dir = tempfile::Builder::new()
            .prefix("herald-cluster-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let ports = free_ports(NODES * 3).map_err(|e| e.to_string())?;
        // Its own name: a route to another test's cluster is refused.
        let cluster_name = format!("herald-test-{}", ports[2]);
        let routes: Vec<String> = (0..NODES)
            .map(|i| format!("\"nats-route://127.0.0.1:{}\"", ports[i * 3 + 2]))
            .collect();
        let mut nodes = Vec::new();
        for i in 0..NODES {
            let (client_port, http_port, cluster_port) =
                (ports[i * 3], ports[i * 3 + 1], ports[i * 3 + 2]);
            let name = format!("n{i}");
            let store = dir.path().join(&name);
            let extra = format!(
                "jetstream {{ store_dir: {store:?} }}\n\
                 cluster {{\n  name: {cluster_name}\n  listen: \"127.0.0.1:{cluster_port}\"\n  \
                 routes: [{}]\n}}\n",
                routes.join(", ")
            );
            nodes.push(
                ServerProcess::write(dir.path(), &name, client_port, http_port, &extra)
                    .map_err(|e| e.to_string())?,
            );
        }
        let mut cluster = Self {
            binary: binary.to_path_buf(),
            nodes,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .build()
                .map_err(|e| e.to_string())?,
            _dir: dir,
        };
        for node in 0..NODES {
            cluster.spawn(node);
        }
        for node in 0..NODES {
            cluster.wait_healthy(node, FORM_WITHIN).await?;
        }
        cluster.wait_meta_leader(FORM_WITHIN).await?;
        Ok(cluster)
    }

    /// The client URL of every node, comma-separated, as `--nats-url` takes it.
    #[must_use]
    pub fn urls(&self) -> String {
        (0..NODES)
            .map(|node| self.url(node))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `nats://127.0.0.1:<port>` of one node.
    #[must_use]
    pub fn url(&self, node: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[node].client_port)
    }

    /// The `server_name` of one node (`n0`, `n1`, `n2`).
    #[must_use]
    pub fn name(&self, node: usize) -> &str {
        &self.nodes[node].name
    }

    /// The node whose `server_name` is `name`.
    #[must_use]
    pub fn node_named(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// Kills one node with SIGKILL, as a crash would, and waits for it to exit.
    ///
    /// # Panics
    ///
    /// When the node is not running.
    pub async fn kill9(&mut self, node: usize) {
        self.nodes[node].kill9().await;
    }

    /// Starts a killed node again with the same ports and store, and waits
    /// until it is healthy (caught up with the cluster).
    ///
    /// # Panics
    ///
    /// When it does not come back.
    pub async fn restart(&mut self, node: usize) {
        assert!(!self.nodes[node].is_started(), "kill the node first");
        self.spawn(node);
        let back = async {
            self.wait_healthy(node, Duration::from_secs(60)).await?;
            self.wait_meta_leader(Duration::from_secs(60)).await
        };
        if let Err(why) = back.await {
            panic!("{} did not come back: {why}", self.nodes[node].name);
        }
    }

    /// A JetStream context on a connection to the running nodes.
    ///
    /// # Panics
    ///
    /// When no node can be reached.
    pub async fn jetstream(&self) -> jetstream::Context {
        let urls: Vec<String> = (0..NODES)
            .filter(|&node| self.nodes[node].is_started())
            .map(|node| self.url(node))
            .collect();
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(2))
            .connect(urls)
            .await
            .expect("connect to the cluster");
        jetstream::ContextBuilder::new()
            .timeout(Duration::from_secs(2))
            .build(client)
    }

    /// The node leading `stream` now (`$JS.API.STREAM.INFO` → `cluster.leader`).
    ///
    /// # Panics
    ///
    /// When the stream has no leader within the harness' patience.
    pub async fn stream_leader(&self, stream: &str) -> usize {
        let js = self.jetstream().await;
        crate::eventually(&format!("{stream} has a leader"), || async {
            let mut stream = js.get_stream(stream).await.ok()?;
            let info = stream.info().await.ok()?;
            let leader = info.cluster.as_ref()?.leader.as_deref()?;
            self.node_named(leader)
        })
        .await
    }

    /// The node leading the consumer `consumer` of `stream` now.
    ///
    /// # Panics
    ///
    /// When the consumer has no leader within the harness' patience.
    pub async fn consumer_leader(&self, stream: &str, consumer: &str) -> usize {
        let js = self.jetstream().await;
        crate::eventually(&format!("{consumer} has a leader"), || async {
            let stream = js.get_stream(stream).await.ok()?;
            let mut consumer: jetstream::consumer::PullConsumer =
                stream.get_consumer(consumer).await.ok()?;
            let info = consumer.info().await.ok()?;
            let leader = info.cluster.as_ref()?.leader.as_deref()?;
            self.node_named(leader)
        })
        .await
    }

    /// Asks the leader of `stream` to step down, so that another node leads it.
    ///
    /// # Panics
    ///
    /// When JetStream does not answer.
    pub async fn step_down(&self, stream: &str) {
        let js = self.jetstream().await;
        let response: serde_json::Value = js
            .request(format!("STREAM.LEADER.STEPDOWN.{stream}"), &())
            .await
            .expect("stream leader step-down");
        assert_eq!(response["success"], true, "{response}");
    }

    fn spawn(&mut self, node: usize) {
        self.nodes[node].spawn(&self.binary);
    }

    /// Waits until a node leads the JetStream meta group and sees every
    /// other node current (its `/jsz`), so that streams can be placed on all
    /// three.
    async fn wait_meta_leader(&self, within: Duration) -> Result<(), String> {
        let start = tokio::time::Instant::now();
        while start.elapsed() < within {
            for node in &self.nodes {
                let url = format!("http://127.0.0.1:{}/jsz", node.http_port);
                let Ok(response) = self.http.get(&url).send().await else {
                    continue;
                };
                let Ok(body) = response.bytes().await else {
                    continue;
                };
                let Ok(jsz) = serde_json::from_slice::<serde_json::Value>(&body) else {
                    continue;
                };
                let meta = &jsz["meta_cluster"];
                let replicas = meta["replicas"].as_array().map(Vec::as_slice);
                if meta["leader"] == node.name.as_str()
                    && replicas.is_some_and(|r| {
                        r.len() == NODES - 1 && r.iter().all(|p| p["current"] == true)
                    })
                {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!(
            "no meta leader seeing every node after {within:?}{}",
            self.logs()
        ))
    }

    /// Every node's log.
    fn logs(&self) -> String {
        self.nodes.iter().map(ServerProcess::log_text).collect()
    }

    /// Waits until `/healthz` of `node` answers 200: it runs, has a meta
    /// leader and its streams and consumers are current.
    async fn wait_healthy(&mut self, node: usize, within: Duration) -> Result<(), String> {
        let http = self.http.clone();
        let healthy = self.nodes[node].wait_healthy(&http, within).await;
        healthy.map_err(|why| format!("{why}{}", self.logs()))
    }
}
