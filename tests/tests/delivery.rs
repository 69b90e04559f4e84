//! Lossless delivery: retries within the policy, Retry-After honoured by every
//! sender replica, pacing per destination, and a NATS restart mid-run.

use std::collections::HashMap;
use std::time::Duration;

use herald_tests::fake::{FakeServer, Reply};
use herald_tests::fixtures::{Alert, Event, Provider};
use herald_tests::herald::{Options, TestHerald, config_dir};
use herald_tests::nats::TestNats;

fn manifests(hooks: &[(&str, &FakeServer)], provider_type: &str) -> String {
    let path = if provider_type == "slack" {
        "/services/T/B/X"
    } else {
        "/hook"
    };
    let mut out = String::new();
    for (name, hook) in hooks {
        out.push_str(&format!(
            "{}{}",
            Provider::new("apps", name, provider_type).address(&hook.url(path)),
            Alert::new("apps", name, name).source("Kustomization", "*")
        ));
    }
    out
}

fn event(i: usize) -> Event {
    Event::new("Kustomization", "apps", "app")
        .severity("error")
        .reason("Failed")
        .message(&format!("event {i}"))
}

fn message_of(request: &herald_tests::fake::Recorded) -> String {
    if let Some(m) = request.json()["message"].as_str() {
        return m.to_owned();
    }
    request.json()["attachments"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn an_outage_then_recovery_delivers_everything_within_the_attempts() {
    let nats = TestNats::start().await;
    let hook = FakeServer::webhook().await;
    // The destination fails every request for a while, then recovers.
    hook.set_default(Some(Reply::status(503)));
    let dir = config_dir(&manifests(&[("hook", &hook)], "generic"));
    let mut options = Options::default();
    options.sender_args.max_attempts = 8;
    options.sender_args.retry_base = Duration::from_millis(100);
    options.sender_args.retry_max = Duration::from_millis(800);
    let herald = TestHerald::start_with(nats.url(), dir.path(), options).await;
    for i in 0..20 {
        assert_eq!(herald.post(event(i)).await.0, 202);
    }
    // Every event fails at least once before the destination comes back.
    herald_tests::eventually("each event tried and failed", || async {
        let tried: std::collections::HashSet<String> =
            hook.requests().iter().map(message_of).collect();
        (tried.len() == 20).then_some(())
    })
    .await;
    hook.set_default(None);
    let requests = herald_tests::eventually("all 20 delivered", || async {
        let requests = hook.requests();
        let delivered = requests.iter().filter(|r| r.answered == 200).count();
        (delivered >= 20).then_some(requests)
    })
    .await;
    let mut attempts: HashMap<String, usize> = HashMap::new();
    for request in &requests {
        *attempts.entry(message_of(request)).or_default() += 1;
    }
    assert_eq!(attempts.len(), 20);
    assert!(
        attempts.values().all(|n| *n <= 8),
        "no delivery is tried more than max-attempts: {attempts:?}"
    );
    assert!(
        attempts.values().all(|n| *n >= 2),
        "each failed at least once"
    );
    herald.shutdown().await;
}

#[tokio::test]
async fn retry_after_is_honoured_by_all_three_sender_replicas() {
    let nats = TestNats::start().await;
    let hook = FakeServer::webhook().await;
    let other = FakeServer::webhook().await;
    hook.script([Reply::status(429).header("Retry-After", "3")]);
    let dir = config_dir(&manifests(&[("hook", &hook), ("other", &other)], "generic"));
    // One process with ingest, router and a sender, and two more senders.
    let first = TestHerald::start(nats.url(), dir.path()).await;
    let second = TestHerald::start_with(nats.url(), dir.path(), Options::senders_only()).await;
    let third = TestHerald::start_with(nats.url(), dir.path(), Options::senders_only()).await;
    assert_eq!(first.post(event(0)).await.0, 202);
    let limited = hook.wait_for(1).await[0].at;
    // Once the sender that got the 429 has shared it, no replica sends early.
    let js = nats.jetstream().await;
    herald_tests::eventually("the 429 is shared", || async {
        let store = js
            .get_key_value(herald_proto::names::PACING_BUCKET)
            .await
            .ok()?;
        let mut keys = store.keys().await.ok()?;
        let now = jiff::Timestamp::now().as_millisecond();
        while let Some(Ok(key)) = futures::StreamExt::next(&mut keys).await {
            let value = store.get(&key).await.ok()??;
            let state = <herald_proto::PacingState as prost::Message>::decode(value).ok()?;
            if state.blocked_until_unix_millis > now {
                return Some(());
            }
        }
        None
    })
    .await;
    for i in 1..30 {
        assert_eq!(first.post(event(i)).await.0, 202);
    }
    // Another destination is not slowed down meanwhile.
    let others = other.wait_for(30).await;
    assert!(
        others
            .iter()
            .all(|r| r.at - limited < Duration::from_secs(2)),
        "the other destination waited for the limited one"
    );
    let requests = hook.wait_for(31).await;
    let early: Vec<_> = requests[1..]
        .iter()
        .filter(|r| r.at - limited < Duration::from_secs(3))
        .collect();
    assert!(
        early.is_empty(),
        "{} requests came before Retry-After: 3 ran out",
        early.len()
    );
    for herald in [first, second, third] {
        herald.shutdown().await;
    }
}

#[tokio::test]
async fn slack_is_paced_to_one_message_per_second_per_channel_across_replicas() {
    let nats = TestNats::start().await;
    let slack = FakeServer::slack().await;
    let dir = config_dir(&manifests(&[("slack", &slack)], "slack"));
    let first = TestHerald::start(nats.url(), dir.path()).await;
    let second = TestHerald::start_with(nats.url(), dir.path(), Options::senders_only()).await;
    for i in 0..5 {
        assert_eq!(first.post(event(i)).await.0, 202);
    }
    let requests = slack.wait_for(5).await;
    let mut times: Vec<_> = requests.iter().map(|r| r.at).collect();
    times.sort();
    for pair in times.windows(2) {
        // One per second, with room for a slow machine (unpaced, they come at once).
        assert!(
            pair[1] - pair[0] >= Duration::from_millis(500),
            "two messages to one channel {:?} apart",
            pair[1] - pair[0]
        );
    }
    first.shutdown().await;
    second.shutdown().await;
}

#[tokio::test]
async fn a_nats_restart_mid_run_loses_no_accepted_event() {
    let mut nats = TestNats::start().await;
    let hook = FakeServer::webhook().await;
    let dir = config_dir(&manifests(&[("hook", &hook)], "generic"));
    let herald = TestHerald::start(nats.url(), dir.path()).await;
    let mut accepted = Vec::new();
    let mut refused = 0;
    for i in 0..300 {
        if i == 100 {
            nats.stop().await;
        }
        if i == 150 {
            nats.restart().await;
        }
        let (status, _) = herald.post(event(i)).await;
        match status {
            202 => accepted.push(format!("event {i}")),
            503 => refused += 1,
            other => panic!("unexpected {other}"),
        }
        if (100..150).contains(&i) {
            assert_eq!(status, 503, "ingest cannot store while NATS is down");
        }
    }
    assert!(refused >= 50);
    herald_tests::eventually("every accepted event delivered", || async {
        let delivered: std::collections::HashSet<String> =
            hook.requests().iter().map(message_of).collect();
        accepted.iter().all(|m| delivered.contains(m)).then_some(())
    })
    .await;
    herald.shutdown().await;
}
