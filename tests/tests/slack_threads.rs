//! Slack threads (`herald.dev/slack-thread`) end to end through ingest,
//! router and sender, with roots kept in HERALD_THREADS on a real
//! nats-server: the events about one object and revision form one thread
//! whose root shows the newest, a new revision starts another, a second
//! sender replica or a restarted sender continues the thread, a root deleted
//! in Slack starts a new one, and a Provider that cannot thread is reported
//! and still delivers.

use std::time::Duration;

use herald_senders::policy::PaceSetting;
use herald_tests::fake::slack::{FakeSlack, Message, TOKEN};
use herald_tests::fake::{FakeServer, Recorded};
use herald_tests::fixtures::{Event, Secret, dead_letters};
use herald_tests::herald::{Options, TestHerald, config_dir};
use herald_tests::nats::TestNats;

const NS: &str = "flux-system";

/// A `slack` Provider `slack` at `address` (a bot token in its Secret,
/// channel `alerts`) and an Alert `all` on every Kustomization, each with
/// the annotations given (YAML flow entries).
fn manifests(address: &str, provider_annotations: &str, alert_annotations: &str) -> String {
    manifests_with_token(address, TOKEN, provider_annotations, alert_annotations)
}

/// As [`manifests`], with `token` in the Provider's Secret.
fn manifests_with_token(
    address: &str,
    token: &str,
    provider_annotations: &str,
    alert_annotations: &str,
) -> String {
    format!(
        "{}apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Provider\n\
         metadata: {{name: slack, namespace: {NS}, annotations: {{{provider_annotations}}}}}\n\
         spec: {{type: slack, channel: alerts, address: '{address}', secretRef: {{name: bot}}}}\n---\n\
         apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Alert\n\
         metadata: {{name: all, namespace: {NS}, annotations: {{{alert_annotations}}}}}\n\
         spec: {{providerRef: {{name: slack}}, eventSources: [{{kind: Kustomization, name: '*'}}]}}\n---\n",
        Secret::new(NS, "bot").data("token", token),
    )
}

const THREADED: &str = "herald.dev/slack-thread: 'true'";

/// An event about Kustomization `name` at `revision`, the `second`-th
/// second of the day (so that later events are newer).
fn event(name: &str, revision: &str, message: &str, second: u32) -> String {
    Event::new("Kustomization", NS, name)
        .metadata("kustomize.toolkit.fluxcd.io/revision", revision)
        .message(message)
        .timestamp(&format!(
            "2024-01-01T{:02}:{:02}:{:02}Z",
            second / 3600,
            second / 60 % 60,
            second % 60
        ))
        .json()
}

/// Slack's steady rate per channel, faster than its default so the suite
/// is quick; every call still takes a turn.
fn options(pace: &str) -> Options {
    let mut options = Options::default();
    options.sender_args.paces = vec![pace.parse::<PaceSetting>().expect("pace")];
    options
}

fn senders_only(pace: &str) -> Options {
    Options {
        sender_args: options(pace).sender_args,
        ..Options::senders_only()
    }
}

/// The message's text as Slack shows it now.
fn text(message: &Message) -> &str {
    message.body["attachments"][0]["text"]
        .as_str()
        .unwrap_or_default()
}

/// The message's text as it was posted.
fn posted_text(message: &Message) -> &str {
    message.posted["attachments"][0]["text"]
        .as_str()
        .unwrap_or_default()
}

fn summary(message: &Message) -> &str {
    message.body["text"].as_str().unwrap_or_default()
}

fn is_post(request: &Recorded) -> bool {
    request.path == "/api/chat.postMessage"
}

/// Waits until the channel holds `n` messages, roots and replies.
async fn posted(slack: &FakeSlack, n: usize) {
    herald_tests::eventually(&format!("{n} messages posted"), || async {
        (accepted_posts(slack) >= n).then_some(())
    })
    .await;
}

/// The messages the fake holds in `alerts`, roots and replies.
fn accepted_posts(slack: &FakeSlack) -> usize {
    let Some(channel) = slack.channel_id("alerts") else {
        return 0;
    };
    slack
        .roots(&channel)
        .iter()
        .map(|root| 1 + slack.replies(&root.ts).len())
        .sum()
}

/// Waits until the root `ts` says `summary`.
async fn root_says(slack: &FakeSlack, ts: &str, want: &str) -> Message {
    herald_tests::eventually(&format!("the root says {want:?}"), || async {
        slack.message(ts).filter(|m| summary(m) == want)
    })
    .await
}

#[tokio::test]
async fn events_about_one_object_and_revision_form_one_thread_whose_root_shows_the_newest() {
    let nats = TestNats::start().await;
    let slack = FakeSlack::start().await;
    let dir = config_dir(&manifests(
        &slack.url("/api/chat.postMessage"),
        THREADED,
        "",
    ));
    let herald = TestHerald::start_with(nats.url(), dir.path(), options("slack=2/s")).await;
    for (i, message) in ["applying", "health check running", "applied"]
        .iter()
        .enumerate()
    {
        let second = u32::try_from(i).unwrap() + 1;
        assert_eq!(
            herald
                .post(event("web", "main@sha1:1", message, second))
                .await
                .0,
            202
        );
        posted(&slack, i + 1).await;
    }
    let channel = slack.channel_id("alerts").expect("a channel ID");
    let roots = slack.roots(&channel);
    assert_eq!(roots.len(), 1, "{roots:?}");
    let root = &roots[0];
    assert_eq!(posted_text(root), "applying");
    let replies = slack.replies(&root.ts);
    assert_eq!(
        replies.iter().map(text).collect::<Vec<_>>(),
        ["health check running", "applied"]
    );
    assert!(replies.iter().all(|r| r.channel == channel));
    // Replies go to the channel's ID that Slack answered with.
    assert!(
        replies
            .iter()
            .all(|r| r.body["channel"] == channel.as_str())
    );
    // The root shows the newest event and how many updates the thread has.
    let root = root_says(&slack, &root.ts, "2 updates in thread").await;
    assert_eq!(text(&root), "applied");
    // One chat.update per reply at most: a reply counted while another's
    // update waits for the channel's turn is shown by that update.
    assert!((1..=2).contains(&root.updates), "{} updates", root.updates);
    // A new revision starts a new thread.
    assert_eq!(
        herald
            .post(event("web", "main@sha1:2", "applying", 4))
            .await
            .0,
        202
    );
    posted(&slack, 4).await;
    let roots = slack.roots(&channel);
    assert_eq!(roots.len(), 2, "{roots:?}");
    assert_eq!(posted_text(&roots[1]), "applying");
    assert!(slack.replies(&roots[1].ts).is_empty());
    // Every call to the channel took its turn (2/s: 500 ms apart; half of
    // that is room for a slow machine, unpaced they come at once).
    let requests = slack.requests();
    assert_eq!(
        requests.iter().filter(|r| is_post(r)).count(),
        4,
        "one post per event"
    );
    let mut times: Vec<_> = requests.iter().map(|r| r.at).collect();
    times.sort();
    for pair in times.windows(2) {
        assert!(
            pair[1] - pair[0] >= Duration::from_millis(250),
            "two calls to one channel {:?} apart",
            pair[1] - pair[0]
        );
    }
    herald.shutdown().await;
}

#[tokio::test]
async fn a_second_sender_and_a_restarted_one_continue_the_same_thread() {
    let nats = TestNats::start().await;
    let slack = FakeSlack::start().await;
    let dir = config_dir(&manifests(
        &slack.url("/api/chat.postMessage"),
        THREADED,
        "",
    ));
    let first = TestHerald::start_with(nats.url(), dir.path(), options("slack=20/s")).await;
    let second = TestHerald::start_with(nats.url(), dir.path(), senders_only("slack=20/s")).await;
    // Posted at once: deliveries race for the root on two replicas.
    for i in 1..=6 {
        let body = event("api", "v1.2.3", &format!("step {i}"), i);
        assert_eq!(first.post(body).await.0, 202);
    }
    posted(&slack, 6).await;
    let channel = slack.channel_id("alerts").expect("a channel ID");
    let roots = slack.roots(&channel);
    assert_eq!(roots.len(), 1, "one root: {roots:?}");
    let root_ts = roots[0].ts.clone();
    let mut seen: Vec<String> = std::iter::once(posted_text(&roots[0]).to_owned())
        .chain(
            slack
                .replies(&root_ts)
                .iter()
                .map(|m| posted_text(m).to_owned()),
        )
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        (1..=6).map(|i| format!("step {i}")).collect::<Vec<_>>(),
        "each event once"
    );
    let root = root_says(&slack, &root_ts, "5 updates in thread").await;
    assert_eq!(text(&root), "step 6");
    first.shutdown().await;
    second.shutdown().await;

    // A sender started afresh knows the thread from HERALD_THREADS alone.
    let restarted = TestHerald::start_with(nats.url(), dir.path(), options("slack=20/s")).await;
    assert_eq!(
        restarted.post(event("api", "v1.2.3", "step 7", 7)).await.0,
        202
    );
    posted(&slack, 7).await;
    assert_eq!(slack.roots(&channel).len(), 1);
    let replies = slack.replies(&root_ts);
    assert_eq!(replies.len(), 6);
    assert_eq!(text(&replies[5]), "step 7");
    let root = root_says(&slack, &root_ts, "6 updates in thread").await;
    assert_eq!(text(&root), "step 7");
    restarted.shutdown().await;
}

#[tokio::test]
async fn a_root_deleted_in_slack_starts_a_new_thread() {
    let nats = TestNats::start().await;
    let slack = FakeSlack::start().await;
    let dir = config_dir(&manifests(
        &slack.url("/api/chat.postMessage"),
        "",
        THREADED,
    ));
    let herald = TestHerald::start_with(nats.url(), dir.path(), options("slack=20/s")).await;
    assert_eq!(herald.post(event("db", "r1", "first", 1)).await.0, 202);
    posted(&slack, 1).await;
    assert_eq!(herald.post(event("db", "r1", "second", 2)).await.0, 202);
    posted(&slack, 2).await;
    let channel = slack.channel_id("alerts").expect("a channel ID");
    let gone = slack.roots(&channel)[0].ts.clone();
    assert!(slack.delete(&gone));
    assert_eq!(herald.post(event("db", "r1", "third", 3)).await.0, 202);
    herald_tests::eventually("a new root", || async {
        let roots = slack.roots(&channel);
        (roots.len() == 1 && roots[0].ts != gone).then_some(())
    })
    .await;
    let refused = slack
        .requests()
        .iter()
        .filter(|r| r.json()["thread_ts"] == gone.as_str())
        .count();
    assert_eq!(refused, 2, "the second event's reply and the refused third");
    let root = slack.roots(&channel)[0].clone();
    assert_eq!(posted_text(&root), "third");
    // The new thread goes on.
    assert_eq!(herald.post(event("db", "r1", "fourth", 4)).await.0, 202);
    herald_tests::eventually("a reply to the new root", || async {
        (slack.replies(&root.ts).len() == 1).then_some(())
    })
    .await;
    let root = root_says(&slack, &root.ts, "1 update in thread").await;
    assert_eq!(text(&root), "fourth");
    herald.shutdown().await;
}

#[tokio::test]
async fn a_webhook_provider_asking_for_threads_is_reported_and_still_delivers() {
    herald_runtime::catalog::install_checks(herald_senders::check::problems);
    let nats = TestNats::start().await;
    let slack = FakeServer::slack().await;
    let dir = config_dir(&manifests(&slack.url("/services/T0/B0/X0"), THREADED, ""));
    let problem = "herald.dev/slack-thread needs Slack's Web API";
    // `herald validate` reads the folder and runs the Provider checks.
    let mut snapshot = herald_runtime::catalog::load_folder(
        dir.path(),
        "default",
        &herald_runtime::catalog::AlertOptions::default(),
    )
    .unwrap();
    let found = herald_senders::check::problems(&snapshot);
    snapshot.add_problems(found);
    let named: Vec<String> = snapshot.problems.iter().map(ToString::to_string).collect();
    assert_eq!(named.len(), 1, "{named:?}");
    assert!(
        named[0].contains(&format!("Provider/{NS}/slack: {problem}"))
            && named[0].contains("posts to a webhook, so its messages are sent unthreaded"),
        "{named:?}"
    );
    let herald = TestHerald::start(nats.url(), dir.path()).await;
    let (_, ready) = herald.admin("/readyz").await;
    assert!(ready.contains(problem), "{ready}");
    assert_eq!(herald.post(event("web", "r1", "one", 1)).await.0, 202);
    assert_eq!(herald.post(event("web", "r1", "two", 2)).await.0, 202);
    let requests = slack.wait_for(2).await;
    assert!(
        requests
            .iter()
            .all(|r| r.path == "/services/T0/B0/X0" && r.answered == 200),
        "{requests:?}"
    );
    assert!(requests.iter().all(|r| r.json().get("thread_ts").is_none()));
    herald.shutdown().await;
}

#[tokio::test]
async fn slacks_rate_limits_and_refusals_in_a_thread_are_judged_as_without_one() {
    let nats = TestNats::start().await;
    let slack = FakeSlack::start().await;
    let dir = config_dir(&manifests(
        &slack.url("/api/chat.postMessage"),
        THREADED,
        "",
    ));
    let herald = TestHerald::start_with(nats.url(), dir.path(), options("slack=20/s")).await;
    assert_eq!(herald.post(event("web", "r1", "one", 1)).await.0, 202);
    posted(&slack, 1).await;
    // The reply is answered 429 ratelimited with Retry-After: 1.
    slack.rate_limit_next(Duration::from_secs(1));
    assert_eq!(herald.post(event("web", "r1", "two", 2)).await.0, 202);
    posted(&slack, 2).await;
    let channel = slack.channel_id("alerts").expect("a channel ID");
    let root = slack.roots(&channel)[0].clone();
    let replies = slack.replies(&root.ts);
    assert_eq!(replies.len(), 1, "posted once: {replies:?}");
    let requests = slack.requests();
    let limited = requests
        .iter()
        .find(|r| r.answered == 429)
        .expect("a rate-limited call");
    let next = requests
        .iter()
        .filter(|r| r.at > limited.at)
        .map(|r| r.at)
        .min()
        .expect("a call after it");
    assert!(
        next - limited.at >= Duration::from_millis(900),
        "Retry-After: 1 honoured, the next call came {:?} later",
        next - limited.at
    );
    root_says(&slack, &root.ts, "1 update in thread").await;
    herald.shutdown().await;

    // A token Slack refuses: each delivery is a dead letter with Slack's
    // reason (and never the token), at once, its claim given up.
    let refused = FakeSlack::start().await;
    let dir = config_dir(&manifests_with_token(
        &refused.url("/api/chat.postMessage"),
        "xoxb-revoked-token",
        THREADED,
        "",
    ));
    let nats = TestNats::start().await;
    let herald = TestHerald::start_with(nats.url(), dir.path(), options("slack=20/s")).await;
    for (i, message) in ["one", "two"].iter().enumerate() {
        let second = u32::try_from(i).unwrap() + 1;
        assert_eq!(
            herald.post(event("web", "r1", message, second)).await.0,
            202
        );
    }
    let letters = herald_tests::eventually("two dead letters", || async {
        let letters = dead_letters(&nats).await;
        (letters.len() == 2).then_some(letters)
    })
    .await;
    for (_, letter) in &letters {
        assert!(
            letter
                .reason
                .contains("Slack responded with error: not_authed"),
            "{}",
            letter.reason
        );
        assert!(!format!("{letter:?}").contains("xoxb-revoked-token"));
    }
    assert_eq!(refused.requests().len(), 2, "each tried once");
    herald.shutdown().await;
}

#[tokio::test]
async fn a_thread_of_slack_blocks_keeps_its_count_in_a_context_block() {
    let nats = TestNats::start().await;
    let slack = FakeSlack::start().await;
    let annotations = format!(
        "{THREADED}, herald.dev/slack-blocks: '[{{\"type\": \"section\", \"text\": {{\"type\": \"mrkdwn\", \"text\": {{{{ .Message | toJson }}}}}}}}]'"
    );
    let dir = config_dir(&manifests(
        &slack.url("/api/chat.postMessage"),
        &annotations,
        "",
    ));
    let herald = TestHerald::start_with(nats.url(), dir.path(), options("slack=20/s")).await;
    assert_eq!(herald.post(event("web", "r1", "one", 1)).await.0, 202);
    posted(&slack, 1).await;
    assert_eq!(herald.post(event("web", "r1", "two", 2)).await.0, 202);
    posted(&slack, 2).await;
    let channel = slack.channel_id("alerts").expect("a channel ID");
    let root = slack.roots(&channel)[0].clone();
    let reply = &slack.replies(&root.ts)[0];
    assert_eq!(reply.posted["blocks"][0]["text"]["text"], "two");
    let root = root_says(&slack, &root.ts, "1 update in thread").await;
    let blocks = root.body["blocks"].as_array().expect("blocks");
    assert_eq!(blocks[0]["text"]["text"], "two", "the newest message");
    assert_eq!(blocks[1]["type"], "context");
    assert_eq!(blocks[1]["elements"][0]["text"], "1 update in thread");
    herald.shutdown().await;
}
