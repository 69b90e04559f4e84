//! Herald with JetStream at the edge: a hub (router and sender, its
//! HERALD_EVENTS sourcing every edge with `--edge CLUSTER=DOMAIN`) and two
//! edges, each a leaf node with JetStream in its own domain and an ingest
//! on it (`--jetstream-domain`). An edge keeps accepting events while its
//! link to the hub is cut; nothing is lost, each event is stored once at
//! the hub, as the cluster the hub assigned the edge, and the backlog is
//! delivered when the link returns.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::StreamExt as _;
use herald_proto::names;
use herald_runtime::edges::Edge;
use herald_tests::fake::FakeServer;
use herald_tests::fixtures::{Alert, Event, Provider};
use herald_tests::herald::{Options, TestHerald, config_dir};
use herald_tests::nats_leaf::TestLeafNodes;

const NS: &str = "flux-system";
/// The clusters the hub assigns edge 0 and edge 1.
const CLUSTERS: [&str; 2] = ["shop-a", "shop-b"];
/// Events each edge's ingest is sent in each phase (before, during and
/// after the cut).
const PER_PHASE: usize = 100;
/// Events posted to an ingest started at edge 0 while it is cut off.
const LATE: std::ops::Range<usize> = 1000..1010;
/// How long the link stays cut (the issue's figure).
const CUT_FOR: Duration = Duration::from_secs(30);

fn edges(count: usize) -> Vec<Edge> {
    (0..count)
        .map(|edge| Edge {
            cluster: CLUSTERS[edge].to_owned(),
            domain: TestLeafNodes::domain_of(edge),
        })
        .collect()
}

fn catalog(hook: &FakeServer) -> tempfile::TempDir {
    config_dir(&format!(
        "{}{}",
        Provider::new(NS, "hook", "generic").address(&hook.url("/hook")),
        Alert::new(NS, "hook", "hook").source("Kustomization", "*"),
    ))
}

/// Router and sender at the hub, sourcing `edges`.
async fn hub(nodes: &TestLeafNodes, dir: &std::path::Path, edges: Vec<Edge>) -> TestHerald {
    let mut options = Options {
        ingest: false,
        ..Options::default()
    };
    options.router_args.no_cluster_metadata = false;
    options.router_args.edges = edges;
    TestHerald::start_with(&nodes.hub_url(), dir, options).await
}

/// An ingest at edge `edge`, on its leaf node, naming its events `cluster`.
async fn edge_ingest(
    nodes: &TestLeafNodes,
    dir: &std::path::Path,
    edge: usize,
    cluster: &str,
) -> TestHerald {
    let mut options = Options {
        router: false,
        sender: false,
        jetstream_domain: Some(TestLeafNodes::domain_of(edge)),
        ..Options::default()
    };
    options.ingest_args.cluster = cluster.to_owned();
    TestHerald::start_with(&nodes.edge_url(edge), dir, options).await
}

fn event(cluster: &str, i: usize) -> String {
    Event::new("Kustomization", NS, "apps")
        .severity("info")
        .reason("Progressing")
        .message(&format!("{cluster} event {i}"))
        .json()
}

/// Posts events `range` to `ingest`, a few at a time, retrying a refusal
/// as Flux's emitter does; every one must end up answered 202.
async fn post(ingest: &TestHerald, cluster: &str, range: std::ops::Range<usize>) {
    futures::stream::iter(range)
        .map(|i| async move {
            for _ in 0..50 {
                let (status, body) = ingest.post(event(cluster, i)).await;
                if status == 202 {
                    return;
                }
                assert!(status >= 500, "{cluster} event {i}: {status} {body}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("{cluster} event {i} was never accepted");
        })
        .buffer_unordered(8)
        .collect::<Vec<()>>()
        .await;
}

/// An event as ingest stores it, naming `cluster`, with id `id`.
fn stored_event(cluster: &str, id: &str, json: &str) -> bytes::Bytes {
    use prost::Message as _;
    let event = herald_flux::FluxEvent::from_json(json.as_bytes()).expect("a Flux event");
    let stamp = herald_flux::convert::Stamp {
        id: id.to_owned(),
        cluster: cluster.to_owned(),
        received_at: None,
        dedupe_key: String::new(),
    };
    herald_flux::convert::to_proto(event, stamp)
        .encode_to_vec()
        .into()
}

/// How many times each `<cluster> event <i>` reached the webhook, with the
/// cluster its metadata named.
fn delivered(hook: &FakeServer) -> BTreeMap<String, (usize, String)> {
    let mut seen: BTreeMap<String, (usize, String)> = BTreeMap::new();
    for request in hook.requests() {
        let body = request.json();
        let message = body["message"].as_str().unwrap_or_default().to_owned();
        let cluster = body["metadata"]["cluster"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        seen.entry(message).or_insert((0, cluster)).0 += 1;
    }
    seen
}

/// Every message of the hub's HERALD_EVENTS: (subject, `Nats-Msg-Id`).
async fn hub_events(nodes: &TestLeafNodes) -> Vec<(String, String)> {
    let js = nodes.hub_jetstream().await;
    let mut stream = js
        .get_stream(names::EVENTS_STREAM)
        .await
        .expect("HERALD_EVENTS at the hub");
    let state = stream.info().await.expect("stream info").state.clone();
    let mut events = Vec::new();
    for sequence in state.first_sequence..=state.last_sequence {
        let Ok(message) = stream.get_raw_message(sequence).await else {
            continue;
        };
        let id = message
            .headers
            .get(names::MSG_ID_HEADER)
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default();
        events.push((message.subject.to_string(), id));
    }
    events
}

/// The sources of the hub's HERALD_EVENTS: (external API, transform destination).
async fn hub_sources(nodes: &TestLeafNodes) -> BTreeSet<(String, String)> {
    let js = nodes.hub_jetstream().await;
    let mut stream = js
        .get_stream(names::EVENTS_STREAM)
        .await
        .expect("HERALD_EVENTS at the hub");
    let info = stream.info().await.expect("stream info");
    info.config
        .sources
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|source| {
            (
                source.external.map(|e| e.api_prefix).unwrap_or_default(),
                source
                    .subject_transforms
                    .first()
                    .map(|t| t.destination.clone())
                    .unwrap_or_default(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cut_link_loses_nothing_and_the_backlog_drains_once() {
    let nodes = TestLeafNodes::start(2).await;
    let hook = FakeServer::webhook().await;
    let dir = catalog(&hook);
    let hub = hub(&nodes, dir.path(), edges(2)).await;
    let ingests = [
        edge_ingest(&nodes, dir.path(), 0, CLUSTERS[0]).await,
        edge_ingest(&nodes, dir.path(), 1, CLUSTERS[1]).await,
    ];
    let both = |range: std::ops::Range<usize>| {
        let ingests = &ingests;
        async move {
            tokio::join!(
                post(&ingests[0], CLUSTERS[0], range.clone()),
                post(&ingests[1], CLUSTERS[1], range),
            );
        }
    };

    // Before the cut.
    both(0..PER_PHASE).await;
    hook.wait_for(2 * PER_PHASE).await;

    // Edge 0 cut off: both edges keep answering 202; edge 1's events are
    // delivered, edge 0's wait at the edge.
    nodes.cut(0).await;
    let cut_at = tokio::time::Instant::now();
    both(PER_PHASE..2 * PER_PHASE).await;
    // An ingest started at the edge while it is cut off works as well.
    let late = edge_ingest(&nodes, dir.path(), 0, CLUSTERS[0]).await;
    post(&late, CLUSTERS[0], LATE).await;
    late.shutdown().await;
    hook.wait_for(3 * PER_PHASE).await;
    tokio::time::sleep_until(cut_at + CUT_FOR).await;
    let during = delivered(&hook);
    let held = (PER_PHASE..2 * PER_PHASE)
        .chain(LATE)
        .filter(|i| !during.contains_key(&format!("{} event {i}", CLUSTERS[0])))
        .count();
    assert_eq!(
        held,
        PER_PHASE + LATE.len(),
        "edge 0's events crossed a cut link"
    );
    let metrics = hub.admin("/metrics").await.1;
    assert!(
        metrics.contains(r#"herald_edge_linked{edge="shop-a"} 0"#)
            && metrics.contains(r#"herald_edge_linked{edge="shop-b"} 1"#),
        "{metrics}"
    );
    nodes.restore(0).await;

    // After the cut: everything arrives, the backlog included.
    both(2 * PER_PHASE..3 * PER_PHASE).await;
    let total = 2 * 3 * PER_PHASE + LATE.len();
    let restored_at = tokio::time::Instant::now();
    herald_tests::eventually("every accepted event delivered", || async {
        (delivered(&hook).len() == total).then_some(())
    })
    .await;
    let drained_in = restored_at.elapsed();
    herald_tests::eventually("edge 0 counted linked again", || async {
        let metrics = hub.admin("/metrics").await.1;
        metrics
            .contains(r#"herald_edge_linked{edge="shop-a"} 1"#)
            .then_some(())
    })
    .await;

    let seen = delivered(&hook);
    for (edge, cluster) in CLUSTERS.iter().enumerate() {
        let late = if edge == 0 { LATE } else { 0..0 };
        for i in (0..3 * PER_PHASE).chain(late) {
            let (_, named) = &seen[&format!("{cluster} event {i}")];
            assert_eq!(named, cluster, "edge {edge} event {i}");
        }
    }
    let duplicates: usize = seen.values().map(|(n, _)| n - 1).sum();

    // Stored once each at the hub, on the subject of the assigned cluster.
    let stored = hub_events(&nodes).await;
    assert_eq!(stored.len(), total, "HERALD_EVENTS holds each event once");
    let ids: BTreeSet<&str> = stored.iter().map(|(_, id)| id.as_str()).collect();
    assert_eq!(ids.len(), total, "no message id stored twice");
    for (edge, cluster) in CLUSTERS.iter().enumerate() {
        let subject = names::event_subject(cluster);
        let count = stored.iter().filter(|(s, _)| *s == subject).count();
        let late = if edge == 0 { LATE.len() } else { 0 };
        assert_eq!(count, 3 * PER_PHASE + late, "{subject}");
    }
    eprintln!(
        "backlog drained {drained_in:?} after the link came back; {duplicates} duplicate webhook calls"
    );

    // What the hub stored is trimmed from the edges.
    for edge in 0..2 {
        let js = nodes.edge_jetstream(edge).await;
        herald_tests::eventually(&format!("edge {edge}'s stream trimmed"), || async {
            let mut stream = js.get_stream(names::EVENTS_STREAM).await.ok()?;
            let state = stream.info().await.ok()?.state.clone();
            let late = if edge == 0 { LATE.len() } else { 0 };
            (state.messages == 0 && state.last_sequence == (3 * PER_PHASE + late) as u64)
                .then_some(())
        })
        .await;
    }
    for ingest in ingests {
        ingest.shutdown().await;
    }
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_edge_naming_another_cluster_is_stamped_as_its_own() {
    let nodes = TestLeafNodes::start(2).await;
    let hook = FakeServer::webhook().await;
    let dir = catalog(&hook);
    let hub = hub(&nodes, dir.path(), edges(2)).await;
    // Edge 0 claims to be shop-b, edge 1 is shop-b.
    let forger = edge_ingest(&nodes, dir.path(), 0, CLUSTERS[1]).await;
    let honest = edge_ingest(&nodes, dir.path(), 1, CLUSTERS[1]).await;
    // The same event from both: not one passes for the other.
    assert_eq!(forger.post(event("same", 0)).await.0, 202);
    assert_eq!(honest.post(event("same", 0)).await.0, 202);
    // And one published straight onto edge 0's stream naming shop-b.
    let js = nodes.edge_jetstream(0).await;
    js.publish(
        names::edge_event_subject(&TestLeafNodes::domain_of(0), CLUSTERS[1]),
        stored_event(CLUSTERS[1], "raw-1", &event("raw", 1)),
    )
    .await
    .expect("publish")
    .await
    .expect("stored at the edge");

    // And one published on the hub's own subject for shop-b, which the
    // edge keeps on its side of the link.
    let client = async_nats::connect(nodes.edge_url(0)).await.expect("edge");
    client
        .publish(
            names::event_subject(CLUSTERS[1]),
            stored_event(CLUSTERS[1], "raw-2", &event("raw", 2)),
        )
        .await
        .expect("publish");
    client.flush().await.expect("flush");

    let requests = hook.wait_for(3).await;
    let mut clusters: Vec<(String, String)> = requests
        .iter()
        .map(|r| {
            let body = r.json();
            (
                body["message"].as_str().unwrap_or_default().to_owned(),
                body["metadata"]["cluster"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect();
    clusters.sort();
    assert_eq!(
        clusters,
        vec![
            ("raw event 1".to_owned(), CLUSTERS[0].to_owned()),
            ("same event 0".to_owned(), CLUSTERS[0].to_owned()),
            ("same event 0".to_owned(), CLUSTERS[1].to_owned()),
        ]
    );
    let stored = hub_events(&nodes).await;
    assert_eq!(stored.len(), 3, "{stored:?}");
    let subjects: BTreeSet<&str> = stored.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        subjects,
        BTreeSet::from(["herald.events.shop-a", "herald.events.shop-b"])
    );

    // A source added by hand without the transform: what it brings is
    // never routed as the cluster the edge names.
    let hub_js = nodes.hub_jetstream().await;
    let mut config = hub_js
        .get_stream(names::EVENTS_STREAM)
        .await
        .expect("HERALD_EVENTS")
        .info()
        .await
        .expect("info")
        .config
        .clone();
    let mut bare = edges(2)[1].source();
    bare.subject_transforms.clear();
    config.sources.get_or_insert_with(Vec::new).push(bare);
    hub_js
        .update_stream(config)
        .await
        .expect("add a bare source");
    // Without a message id, so that the hub keeps both copies.
    let js = nodes.edge_jetstream(1).await;
    js.publish(
        names::edge_event_subject(&TestLeafNodes::domain_of(1), CLUSTERS[0]),
        stored_event(CLUSTERS[0], "bare-3", &event("bare", 3)),
    )
    .await
    .expect("publish")
    .await
    .expect("stored at the edge");
    herald_tests::eventually("the unstamped copy refused", || async {
        let metrics = hub.admin("/metrics").await.1;
        metrics
            .lines()
            .any(|line| {
                line.starts_with(r#"herald_events_rejected_total{reason="unstamped"} "#)
                    && !line.ends_with(" 0")
            })
            .then_some(())
    })
    .await;
    let requests = hook.wait_for(4).await;
    let bare: Vec<String> = requests
        .iter()
        .map(|r| r.json())
        .filter(|body| body["message"] == "bare event 3")
        .map(|body| {
            body["metadata"]["cluster"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(bare, vec![CLUSTERS[1].to_owned()]);

    forger.shutdown().await;
    honest.shutdown().await;
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn restarts_keep_the_sources_and_the_router_changes_them() {
    let nodes = TestLeafNodes::start(2).await;
    let hook = FakeServer::webhook().await;
    let dir = catalog(&hook);
    let both = BTreeSet::from([
        (
            "$JS.edge-0.API".to_owned(),
            "herald.events.shop-a".to_owned(),
        ),
        (
            "$JS.edge-1.API".to_owned(),
            "herald.events.shop-b".to_owned(),
        ),
    ]);
    let router = hub(&nodes, dir.path(), edges(2)).await;
    assert_eq!(hub_sources(&nodes).await, both);
    let ingest = edge_ingest(&nodes, dir.path(), 0, CLUSTERS[0]).await;
    assert_eq!(ingest.post(event(CLUSTERS[0], 0)).await.0, 202);
    hook.wait_for(1).await;

    // A hub ingest, which has no --edge, starting and restarting.
    let options = Options {
        router: false,
        sender: false,
        ..Options::default()
    };
    let hub_ingest = TestHerald::start_with(&nodes.hub_url(), dir.path(), options.clone()).await;
    hub_ingest.shutdown().await;
    assert_eq!(hub_sources(&nodes).await, both);
    let hub_ingest = TestHerald::start_with(&nodes.hub_url(), dir.path(), options).await;
    assert_eq!(hub_sources(&nodes).await, both);

    // The router restarted with the same edges while edge 0 is cut off:
    // it starts, and takes edge 0's event when the link is back, sourcing
    // nothing twice.
    nodes.cut(0).await;
    router.shutdown().await;
    let router = hub(&nodes, dir.path(), edges(2)).await;
    assert_eq!(hub_sources(&nodes).await, both);
    assert_eq!(ingest.post(event(CLUSTERS[0], 1)).await.0, 202);
    nodes.restore(0).await;
    hook.wait_for(2).await;

    // The router restarted without edge 1: its source goes, edge 0's stays
    // where it was.
    router.shutdown().await;
    let router = hub(&nodes, dir.path(), edges(1)).await;
    assert_eq!(
        hub_sources(&nodes).await,
        BTreeSet::from([(
            "$JS.edge-0.API".to_owned(),
            "herald.events.shop-a".to_owned()
        )])
    );
    assert_eq!(ingest.post(event(CLUSTERS[0], 2)).await.0, 202);
    hook.wait_for(3).await;
    let stored = hub_events(&nodes).await;
    assert_eq!(stored.len(), 3, "{stored:?}");
    assert_eq!(delivered(&hook).len(), 3);

    ingest.shutdown().await;
    hub_ingest.shutdown().await;
    router.shutdown().await;
}
