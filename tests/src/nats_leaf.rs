//! A hub and its edges on loopback: one JetStream `nats-server` (domain
//! `hub`) accepting leaf node connections, and N leaf node servers, each
//! with JetStream in its own domain (`edge-0`, `edge-1`, ...) and a
//! `leafnodes.remotes` entry pointing at the hub (from `HERALD_NATS_SERVER`
//! or `PATH`, each with its own ports and store).
//!
//! Each edge logs in to the hub's leaf node port as its own user and keeps
//! Herald's subjects on its side of the link (`deny_exports`,
//! `deny_imports`), as `deploy/nats/hub.conf` and `edge.conf` do.
//!
//! Every leaf reaches the hub through a small TCP relay in the harness, so
//! that a test can cut one edge's link and restore it later, as a network
//! failure between an edge and the hub would: while cut, the relay closes
//! the connection it carried and refuses new ones; the two servers keep
//! running, with their clients and stores.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use herald_runtime::local_nats::find_binary;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::nats_server::{ServerProcess, free_ports};

/// The hub's JetStream domain.
pub const HUB_DOMAIN: &str = "hub";

/// What an edge keeps from the hub and the hub from it, as
/// `deploy/nats/edge.conf` has it: Herald's subjects stay on their side.
const DENY_EXPORTS: &str =
    r#"["herald.events.>", "herald.deliveries.>", "herald.dead.>", "$KV.>"]"#;
const DENY_IMPORTS: &str = r#"["herald.>", "$KV.>"]"#;

/// The password edge `edge` logs in to the hub's leaf node port with.
fn leaf_password(edge: usize) -> String {
    format!("leaf-secret-{edge}")
}

/// How long a server may take to answer `/healthz` (it takes well under a second).
const START_WITHIN: Duration = Duration::from_secs(20);

/// A hub and its leaf nodes, killed on drop. The hub does not advertise
/// its leaf node port (`no_advertise`): a leaf would otherwise learn it and
/// reconnect around its relay.
pub struct TestLeafNodes {
    binary: PathBuf,
    hub: ServerProcess,
    leaves: Vec<ServerProcess>,
    links: Vec<Link>,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

// === impl TestLeafNodes ===

impl TestLeafNodes {
    /// Starts a hub and `edges` leaf nodes, and waits until every leaf is
    /// connected to the hub.
    ///
    /// # Panics
    ///
    /// When no `nats-server` is found or the servers do not come up.
    pub async fn start(edges: usize) -> Self {
        crate::init();
        let binary =
            find_binary().unwrap_or_else(|e| panic!("a leaf node test needs nats-server: {e:#}"));
        let dir = tempfile::Builder::new()
            .prefix("herald-leaf-")
            .tempdir()
            .expect("temp dir");
        let ports = free_ports(3 + edges * 2).expect("free ports");
        let (hub_client, hub_http, hub_leaf) = (ports[0], ports[1], ports[2]);
        let hub = ServerProcess::write(
            dir.path(),
            "hub",
            hub_client,
            hub_http,
            &format!(
                "jetstream {{ store_dir: {:?}, domain: {HUB_DOMAIN} }}\n\
                 leafnodes {{\n  listen: \"127.0.0.1:{hub_leaf}\"\n  no_advertise: true\n  \
                 authorization {{ users: [{}] }}\n}}\n",
                dir.path().join("hub"),
                (0..edges)
                    .map(|edge| format!(
                        "{{ user: {}, password: {} }}",
                        Self::domain_of(edge),
                        leaf_password(edge)
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
        .expect("write the hub's config");
        let mut leaves = Vec::new();
        let mut links = Vec::new();
        for edge in 0..edges {
            let link = Link::start(format!("127.0.0.1:{hub_leaf}")).await;
            let name = Self::domain_of(edge);
            leaves.push(
                ServerProcess::write(
                    dir.path(),
                    &name,
                    ports[3 + edge * 2],
                    ports[4 + edge * 2],
                    &format!(
                        "jetstream {{ store_dir: {:?}, domain: {name} }}\n\
                     leafnodes {{\n  reconnect: \"1s\"\n  remotes: [{{\n    \
                     url: \"nats-leaf://{name}:{}@127.0.0.1:{}\"\n    \
                     deny_exports: {DENY_EXPORTS}\n    deny_imports: {DENY_IMPORTS}\n  }}]\n}}\n",
                        dir.path().join(&name),
                        leaf_password(edge),
                        link.port
                    ),
                )
                .expect("write an edge's config"),
            );
            links.push(link);
        }
        let mut nodes = Self {
            binary,
            hub,
            leaves,
            links,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .build()
                .expect("http client"),
            _dir: dir,
        };
        nodes.hub.spawn(&nodes.binary);
        for leaf in &mut nodes.leaves {
            leaf.spawn(&nodes.binary);
        }
        let http = nodes.http.clone();
        if let Err(why) = nodes.hub.wait_healthy(&http, START_WITHIN).await {
            panic!("the hub did not start: {why}{}", nodes.logs());
        }
        for edge in 0..edges {
            if let Err(why) = nodes.leaves[edge].wait_healthy(&http, START_WITHIN).await {
                panic!("edge {edge} did not start: {why}{}", nodes.logs());
            }
            nodes.wait_linked(edge).await;
        }
        nodes
    }

    /// The JetStream domain (and `server_name`) of edge `edge`: `edge-<n>`.
    #[must_use]
    pub fn domain_of(edge: usize) -> String {
        format!("edge-{edge}")
    }

    /// The hub's client URL.
    #[must_use]
    pub fn hub_url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.hub.client_port)
    }

    /// The client URL of edge `edge`'s leaf node.
    #[must_use]
    pub fn edge_url(&self, edge: usize) -> String {
        format!("nats://127.0.0.1:{}", self.leaves[edge].client_port)
    }

    /// Closes the link of edge `edge` to the hub and refuses it until
    /// [`TestLeafNodes::restore`]; returns once the hub has dropped it.
    pub async fn cut(&self, edge: usize) {
        self.links[edge].cut();
        let name = self.leaves[edge].name.clone();
        crate::eventually(&format!("the hub lost {name}"), || async {
            (!self.hub_sees(&name).await?).then_some(())
        })
        .await;
    }

    /// Lets edge `edge` reach the hub again; returns once it is linked.
    pub async fn restore(&self, edge: usize) {
        self.links[edge].restore();
        self.wait_linked(edge).await;
    }

    /// A JetStream context on the hub.
    ///
    /// # Panics
    ///
    /// When the hub cannot be reached.
    pub async fn hub_jetstream(&self) -> jetstream::Context {
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(2))
            .connect(self.hub_url())
            .await
            .expect("connect to the hub");
        jetstream::ContextBuilder::new()
            .timeout(Duration::from_secs(2))
            .build(client)
    }

    /// A JetStream context on edge `edge`'s leaf node, in its domain.
    ///
    /// # Panics
    ///
    /// When the leaf node cannot be reached.
    pub async fn edge_jetstream(&self, edge: usize) -> jetstream::Context {
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(2))
            .connect(self.edge_url(edge))
            .await
            .expect("connect to the edge");
        jetstream::ContextBuilder::new()
            .timeout(Duration::from_secs(2))
            .domain(Self::domain_of(edge))
            .build(client)
    }

    /// Waits until the hub lists edge `edge` among its leaf node connections.
    async fn wait_linked(&self, edge: usize) {
        let name = self.leaves[edge].name.clone();
        crate::eventually(&format!("{name} is linked to the hub"), || async {
            self.hub_sees(&name).await?.then_some(())
        })
        .await;
    }

    /// Whether the hub's `/leafz` lists a leaf node named `name`; `None`
    /// when the hub does not answer.
    async fn hub_sees(&self, name: &str) -> Option<bool> {
        let url = format!("http://127.0.0.1:{}/leafz", self.hub.http_port);
        let body = self.http.get(&url).send().await.ok()?.bytes().await.ok()?;
        let leafz: serde_json::Value = serde_json::from_slice(&body).ok()?;
        let leafs = leafz["leafs"].as_array().cloned().unwrap_or_default();
        Some(leafs.iter().any(|leaf| leaf["name"] == name))
    }

    /// Every server's log.
    #[must_use]
    pub fn logs(&self) -> String {
        std::iter::once(&self.hub)
            .chain(&self.leaves)
            .map(ServerProcess::log_text)
            .collect()
    }
}

impl Drop for TestLeafNodes {
    fn drop(&mut self) {
        for link in &self.links {
            link.stop();
        }
    }
}

/// A TCP relay from a leaf node to the hub's leaf node port, which can be
/// cut (its connections closed, new ones refused) and restored.
struct Link {
    port: u16,
    open: Arc<AtomicBool>,
    /// The tasks relaying the connections of now.
    relays: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

// === impl Link ===

impl Link {
    async fn start(hub: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("relay port");
        let port = listener.local_addr().expect("relay addr").port();
        let open = Arc::new(AtomicBool::new(true));
        let relays: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = tokio::spawn({
            let (open, relays) = (open.clone(), relays.clone());
            async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if !open.load(Ordering::SeqCst) {
                        // Refused: closed as soon as it is accepted.
                        continue;
                    }
                    let hub = hub.clone();
                    let relay = tokio::spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(&hub).await {
                            tokio::io::copy_bidirectional(&mut inbound, &mut outbound)
                                .await
                                .ok();
                        }
                    });
                    let mut relays = relays.lock().expect("relays");
                    relays.retain(|relay| !relay.is_finished());
                    relays.push(relay);
                }
            }
        });
        Self {
            port,
            open,
            relays,
            accept,
        }
    }

    fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        for relay in self.relays.lock().expect("relays").drain(..) {
            relay.abort();
        }
    }

    fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }

    fn stop(&self) {
        self.cut();
        self.accept.abort();
    }
}
