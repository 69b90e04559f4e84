//! Herald on a 3-node JetStream cluster (`--stream-replicas 3`, the three
//! servers given as one comma-separated `--nats-url`): a node lost in the
//! middle of a run, as a crash would lose it (`kill -9`), then started again.
//! Every event ingest answered 202 is delivered, and delivery resumes within
//! seconds of the loss rather than after an ack wait.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt as _;
use herald_proto::names;
use herald_tests::fake::{FakeServer, Reply};
use herald_tests::fixtures::{Alert, Event, Provider};
use herald_tests::herald::{Options, TestHerald, config_dir};
use herald_tests::nats_cluster::TestCluster;
use tokio::time::Instant;

/// Events posted in each run.
const EVENTS: usize = 2000;
/// Posts in flight at once.
const IN_FLIGHT: usize = 16;
/// The longest a run may take to deliver everything, kill and restart included.
const DEADLINE: Duration = Duration::from_secs(120);

fn event(i: usize) -> Event {
    Event::new("Kustomization", "apps", "app")
        .severity("info")
        .reason("Progressing")
        .message(&format!("event {i}"))
}

/// Posts `EVENTS` events, `IN_FLIGHT` at a time, as a Flux emitter that
/// retries a refused post; records each one answered 202, and when.
async fn post_all(url: String, accepted: Arc<Mutex<Vec<(usize, Instant)>>>) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("http client");
    futures::stream::iter(0..EVENTS)
        .map(|i| {
            let (http, url, accepted) = (http.clone(), url.clone(), accepted.clone());
            async move {
                for _ in 0..100 {
                    let answer = http
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(event(i).json())
                        .send()
                        .await;
                    match answer {
                        Ok(response) if response.status() == 202 => {
                            accepted.lock().unwrap().push((i, Instant::now()));
                            return;
                        }
                        Ok(response) => assert!(
                            response.status().is_server_error(),
                            "event {i}: {}",
                            response.status()
                        ),
                        Err(_) => {}
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect::<Vec<()>>()
        .await;
}

/// When each event first reached the webhook and how often, and when each
/// request arrived.
fn delivered(hook: &FakeServer) -> (HashMap<usize, (Instant, usize)>, Vec<Instant>) {
    let mut seen: HashMap<usize, (Instant, usize)> = HashMap::new();
    let mut times = Vec::new();
    for request in hook.requests() {
        let number = request.json()["message"]
            .as_str()
            .and_then(|m| m.strip_prefix("event "))
            .and_then(|n| n.parse::<usize>().ok());
        if let Some(number) = number {
            seen.entry(number).or_insert((request.at, 0)).1 += 1;
            times.push(request.at);
        }
    }
    times.sort();
    (seen, times)
}

/// Which node a run loses.
#[derive(Debug, Clone, Copy)]
enum Victim {
    /// The node Herald's connection is on.
    Connected,
    /// The leader of HERALD_DELIVERIES, on a node other than Herald's own.
    DeliveriesLeader,
}

/// What a run observed.
#[derive(Debug)]
#[allow(dead_code)] // The timings are read through Debug, in the test's output.
struct Report {
    accepted: usize,
    duplicates: usize,
    /// The longest pause between two 202s after the kill (HERALD_EVENTS
    /// electing a leader, when the node led it).
    ingest_pause: Duration,
    /// The longest pause between two deliveries after the kill.
    delivery_pause: Duration,
    /// From the kill to the delivery of the last event accepted before it:
    /// how long work already in the pipeline waited.
    in_pipeline_delivered_after: Duration,
    /// The longest time from an event's 202 to its delivery.
    slowest: Duration,
    took: Duration,
}

/// The longest gap between consecutive `times` from `start` on.
fn longest_gap(start: Instant, times: impl IntoIterator<Item = Instant>) -> Duration {
    let mut times: Vec<Instant> = times.into_iter().filter(|t| *t >= start).collect();
    times.sort();
    std::iter::once(start)
        .chain(times.iter().copied())
        .zip(times.iter().copied())
        .map(|(a, b)| b - a)
        .max()
        .unwrap_or_default()
}

async fn run_with_a_node_loss(victim: Victim) -> Report {
    let mut cluster = TestCluster::start().await;
    let hook = FakeServer::webhook().await;
    // A little time at the destination, so that deliveries are in flight.
    hook.set_default(Some(Reply::status(200).delayed(Duration::from_millis(5))));
    let dir = config_dir(&format!(
        "{}{}",
        Provider::new("apps", "hook", "generic").address(&hook.url("/hook")),
        Alert::new("apps", "all", "hook").source("Kustomization", "*"),
    ));
    let options = Options {
        stream_replicas: 3,
        ..Options::default()
    };
    let herald = TestHerald::start_with(&cluster.urls(), dir.path(), options).await;
    let js = cluster.jetstream().await;
    let info = js
        .get_stream(names::DELIVERIES_STREAM)
        .await
        .expect("HERALD_DELIVERIES")
        .cached_info()
        .clone();
    assert_eq!(info.config.num_replicas, 3, "streams have three replicas");

    let connected = cluster
        .node_named(&herald.nats_server())
        .expect("connected to a node of the cluster");
    let victim = match victim {
        Victim::Connected => connected,
        Victim::DeliveriesLeader => {
            let mut leader = cluster.stream_leader(names::DELIVERIES_STREAM).await;
            // The connection's own node is the other test's case.
            while leader == connected {
                cluster.step_down(names::DELIVERIES_STREAM).await;
                tokio::time::sleep(Duration::from_millis(500)).await;
                leader = cluster.stream_leader(names::DELIVERIES_STREAM).await;
            }
            leader
        }
    };

    let started = Instant::now();
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let load = tokio::spawn(post_all(herald.ingest_url(), accepted.clone()));
    herald_tests::eventually("a quarter of the run delivered", || async {
        (hook.requests().len() >= EVENTS / 4).then_some(())
    })
    .await;
    let leaders = [
        cluster.stream_leader(names::EVENTS_STREAM).await,
        cluster
            .consumer_leader(names::EVENTS_STREAM, names::ROUTER_CONSUMER)
            .await,
        cluster.stream_leader(names::DELIVERIES_STREAM).await,
        cluster
            .consumer_leader(names::DELIVERIES_STREAM, names::SENDER_CONSUMER)
            .await,
    ]
    .map(|node| cluster.name(node).to_owned());
    println!(
        "killing {} (herald connected to {}; leaders: events {}, router {}, deliveries {}, sender {})",
        cluster.name(victim),
        cluster.name(connected),
        leaders[0],
        leaders[1],
        leaders[2],
        leaders[3],
    );
    let killed = Instant::now();
    cluster.kill9(victim).await;
    let before = accepted.lock().unwrap().len();
    herald_tests::eventually("the run goes on without the node", || async {
        (accepted.lock().unwrap().len() >= before + EVENTS / 4).then_some(())
    })
    .await;
    cluster.restart(victim).await;
    println!(
        "{} restarted {:?} after the kill",
        cluster.name(victim),
        killed.elapsed()
    );
    load.await.expect("posting ends");

    let accepted = accepted.lock().unwrap().clone();
    let deadline = started + DEADLINE;
    let (seen, times) = loop {
        let (seen, times) = delivered(&hook);
        let missing: Vec<usize> = accepted
            .iter()
            .map(|(i, _)| *i)
            .filter(|i| !seen.contains_key(i))
            .collect();
        if missing.is_empty() {
            break (seen, times);
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} accepted events not delivered after {DEADLINE:?}: {:?}",
            missing.len(),
            accepted.len(),
            &missing[..missing.len().min(20)]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let duplicates: BTreeMap<usize, usize> = seen
        .iter()
        .filter(|(_, (_, n))| *n > 1)
        .map(|(i, (_, n))| (*i, *n))
        .collect();
    let first_delivery = |i: &usize| seen[i].0;
    let report = Report {
        accepted: accepted.len(),
        duplicates: duplicates.values().map(|n| n - 1).sum(),
        ingest_pause: longest_gap(killed, accepted.iter().map(|(_, at)| *at)),
        delivery_pause: longest_gap(killed, times),
        in_pipeline_delivered_after: accepted
            .iter()
            .filter(|(_, at)| *at < killed)
            .map(|(i, _)| first_delivery(i).saturating_duration_since(killed))
            .max()
            .unwrap_or_default(),
        slowest: accepted
            .iter()
            .map(|(i, at)| first_delivery(i).saturating_duration_since(*at))
            .max()
            .unwrap_or_default(),
        took: started.elapsed(),
    };
    println!("{report:?}; delivered more than once: {duplicates:?}");
    herald.shutdown().await;
    report
}

/// What both runs must show: every event in (the emitter retries what a
/// lost leader refused), delivered (checked by the run), and once: a copy
/// that a newly elected consumer leader hands out again while the sender
/// still holds or has just finished the delivery is not sent again.
fn assert_exactly_once(report: &Report) {
    assert_eq!(
        report.accepted, EVENTS,
        "the emitter's retries get every event in"
    );
    assert_eq!(report.duplicates, 0, "no event delivered twice: {report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_node_herald_is_connected_to_loses_no_accepted_event() {
    assert_exactly_once(&run_with_a_node_loss(Victim::Connected).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_of_herald_deliveries_loses_no_accepted_event() {
    assert_exactly_once(&run_with_a_node_loss(Victim::DeliveriesLeader).await);
}
