//! Slack threads (`herald.dev/slack-thread`, see [`herald_flux::threads`]):
//! the message Flux would post, posted as the root of its thread or as a
//! reply in it (`thread_ts`), with the root updated (`chat.update`) to show
//! the newest event and how many updates the thread holds.
//!
//! Only Slack's Web API can thread (a bot token, `.../api/chat.postMessage`
//! and a channel); anything else is posted as it is, unthreaded, and
//! reported by the Provider checks. Roots are kept in HERALD_THREADS (see
//! [`crate::threads`]): a restarted sender or another replica continues the
//! same thread. A root deleted in Slack (`message_not_found`,
//! `thread_not_found`) is forgotten and the thread starts again. Every call
//! takes the channel's turn, and every answer is judged as Slack's Web API
//! (`Judge::SlackWebApi`), `ratelimited` and `429` with `Retry-After`
//! included.

use std::time::Duration;

use serde_json::{Map, Value, json};

use super::{Clients, Exchange, Input, Plan, Writing};
use crate::classify::{self, Judge};
use crate::config::Resolved;
use crate::http::Request;
use crate::outcome::Outcome;
use crate::pacing::{self, Waited};
use crate::threads::{Claim, Root, Threads};

/// How many times in a row one delivery updates a root that keeps
/// changing before it lets go and comes back.
const UPDATES_IN_A_TURN: usize = 16;

/// Slack's errors that say a thread's root is gone.
const ROOT_GONE: [&str; 2] = ["message_not_found", "thread_not_found"];

/// When a delivery is tried again after HERALD_THREADS or HERALD_PACING
/// could not be read or written.
const UNAVAILABLE_RETRY: Duration = Duration::from_secs(1);

/// Why `resolved` cannot thread, in words for `herald validate` (never its
/// address, which may be a secret); `None` when it can.
pub(super) fn unsupported(resolved: &Resolved) -> Option<String> {
    let needs = "herald.dev/slack-thread needs Slack's Web API: a bot token in the Secret's \
                 token, spec.address https://slack.com/api/chat.postMessage and spec.channel";
    if resolved.provider_type != "slack" {
        return Some(format!(
            "herald.dev/slack-thread applies to slack Providers only; this {} Provider's \
             messages are not threaded",
            resolved.provider_type
        ));
    }
    let web_api = reqwest::Url::parse(&resolved.address)
        .is_ok_and(|url| url.path().ends_with("/api/chat.postMessage"));
    let missing = if !web_api {
        "this Provider posts to a webhook"
    } else if resolved.token.trim().is_empty() {
        "this Provider has no token"
    } else if resolved.channel.trim().is_empty() {
        "this Provider has no channel"
    } else {
        return None;
    };
    Some(format!(
        "{needs}; {missing}, so its messages are sent unthreaded"
    ))
}

/// The plan for `request`, Slack's message for `input`: a thread exchange
/// when the delivery asks for threads and the Provider and event allow
/// one (the event has a revision), else the request as it is.
pub(super) fn plan(input: &Input<'_>, request: Request) -> Plan {
    let Some(scope) = input.thread else {
        return Plan::Request(request);
    };
    if request.judge != Judge::SlackWebApi || unsupported(input.resolved).is_some() {
        return Plan::Request(request);
    }
    let destination = pacing::destination(input.resolved);
    let Some(key) = herald_flux::threads::thread_key(&destination, scope.cluster, input.event)
    else {
        return Plan::Request(request);
    };
    let Ok(Value::Object(message)) = serde_json::from_slice(&request.body) else {
        return Plan::Request(request);
    };
    let Some(update_url) = update_url(&request.url) else {
        return Plan::Request(request);
    };
    let content = root_content(&message);
    Plan::Exchange(Box::new(Thread {
        request,
        update_url,
        content,
        message,
        key,
        destination,
        delivery: scope.delivery_id.to_owned(),
        event_nanos: scope.event_unix_nanos,
    }))
}

/// What of `message` the root shows when it is the newest (its
/// attachments and blocks), as kept in HERALD_THREADS.
fn root_content(message: &Map<String, Value>) -> Vec<u8> {
    let shown: Map<String, Value> = ["attachments", "blocks"]
        .into_iter()
        .filter_map(|field| Some((field.to_owned(), message.get(field)?.clone())))
        .collect();
    serde_json::to_vec(&shown).unwrap_or_default()
}

/// The `chat.update` of the root `ts` in `channel` that shows `root`: its
/// count as text (and after its blocks), and the newest message's
/// attachments and blocks.
fn update_body(channel: &str, ts: &str, root: &Root) -> Vec<u8> {
    let mut update = json!({
        "channel": channel,
        "ts": ts,
        "text": summary(root.replies),
    });
    if let Ok(Value::Object(shown)) = serde_json::from_slice(&root.content) {
        if let Some(attachments) = shown.get("attachments") {
            update["attachments"] = attachments.clone();
        }
        if let Some(blocks) = shown.get("blocks").and_then(Value::as_array) {
            update["blocks"] = Value::Array(with_summary(blocks, root.replies));
        }
    }
    serde_json::to_vec(&update).unwrap_or_default()
}

/// `chat.update` next to `chat.postMessage` at `post`.
fn update_url(post: &reqwest::Url) -> Option<reqwest::Url> {
    let prefix = post.path().strip_suffix("chat.postMessage")?;
    let mut url = post.clone();
    url.set_path(&format!("{prefix}chat.update"));
    Some(url)
}

/// One delivery's message in its thread. Holds the token (in the request's
/// headers): never log it.
struct Thread {
    /// The unthreaded `chat.postMessage`.
    request: Request,
    /// `chat.update` next to it.
    update_url: reqwest::Url,
    /// The message, as JSON, for the root and the reply.
    message: Map<String, Value>,
    /// What of it the root shows while it is the newest (see
    /// [`root_content`]).
    content: Vec<u8>,
    /// The thread's key in HERALD_THREADS.
    key: String,
    /// The channel's pacing key.
    destination: String,
    delivery: String,
    event_nanos: i64,
}

impl Exchange for Thread {
    fn run<'a>(&'a self, clients: &'a Clients, resolved: &'a Resolved) -> Writing<'a> {
        Box::pin(self.run_with(clients, resolved))
    }

    fn paces_itself(&self) -> bool {
        true
    }
}

/// A call Slack did not accept: its outcome, and Slack's error code.
struct Refused {
    outcome: Outcome,
    error: String,
}

impl Refused {
    fn root_gone(&self) -> bool {
        ROOT_GONE.contains(&self.error.as_str())
    }
}

/// What posting a reply came to.
enum Replied {
    /// The attempt's outcome.
    Done(Outcome),
    /// The root is gone from Slack (and forgotten): start the thread again.
    RootGone,
}

fn unavailable(error: &dyn std::fmt::Display) -> Outcome {
    Outcome::Retry {
        reason: format!("Slack thread state unavailable: {error}"),
        status: 0,
        after: Some(UNAVAILABLE_RETRY),
        body: String::new(),
    }
}

/// "3 updates in thread".
fn summary(replies: u32) -> String {
    if replies == 1 {
        "1 update in thread".to_owned()
    } else {
        format!("{replies} updates in thread")
    }
}

/// Slack blocks (`herald.dev/slack-blocks`) with the summary after them,
/// as a context block: where a message has blocks, Slack shows them and
/// not its text. Within Slack's 50 blocks.
fn with_summary(blocks: &[Value], replies: u32) -> Vec<Value> {
    let mut out = blocks.to_vec();
    if out.len() < 50 {
        out.push(json!({
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": summary(replies)}],
        }));
    }
    out
}

// === impl Thread ===

impl Thread {
    async fn run_with(&self, clients: &Clients, resolved: &Resolved) -> Outcome {
        let Some(threads) = &clients.threads else {
            // No shared state to keep a thread in: as Flux posts it.
            return clients.http.send(self.request.clone(), resolved).await;
        };
        let hold = threads.claim_hold(resolved.timeout);
        // A root found gone starts the thread again, once per attempt.
        for _ in 0..2 {
            let claim = match threads.claim(&self.key, &self.delivery, hold).await {
                Ok(claim) => claim,
                Err(error) => return unavailable(&error),
            };
            match claim {
                Claim::Wait(after) => {
                    return Outcome::Later {
                        reason: "another delivery is posting the Slack thread's root".to_owned(),
                        after: after + Duration::from_millis(fastrand::u64(0..250)),
                    };
                }
                Claim::Posted { channel, ts } => {
                    return self
                        .update_root(threads, clients, resolved, (&channel, &ts), 200)
                        .await;
                }
                Claim::Root => return self.post_root(threads, clients, resolved).await,
                Claim::Reply { channel, ts } => {
                    match self
                        .post_reply(threads, clients, resolved, &channel, &ts)
                        .await
                    {
                        Replied::Done(outcome) => return outcome,
                        Replied::RootGone => {}
                    }
                }
            }
        }
        Outcome::Retry {
            reason: "the Slack thread's root was gone again right after it was posted".to_owned(),
            status: 0,
            after: None,
            body: String::new(),
        }
    }

    /// Posts the root of a thread claimed for this delivery and stores it;
    /// a root that cannot be posted gives the claim up.
    async fn post_root(
        &self,
        threads: &Threads,
        clients: &Clients,
        resolved: &Resolved,
    ) -> Outcome {
        let release = || async {
            if let Err(error) = threads.release(&self.key, &self.delivery).await {
                tracing::warn!(error = %error, thread = %self.key, "Cannot give up a Slack thread's claim; it lapses by itself.");
            }
        };
        if let Err(outcome) = self.turn(threads).await {
            release().await;
            return outcome;
        }
        let body = serde_json::to_vec(&self.message).unwrap_or_default();
        let (answer, status) = match self
            .call(clients, resolved, &self.request.url, body, "")
            .await
        {
            Ok(answered) => answered,
            Err(refused) => {
                release().await;
                return refused.outcome;
            }
        };
        let (Some(channel), Some(ts)) = (answer["channel"].as_str(), answer["ts"].as_str()) else {
            tracing::warn!(thread = %self.key, "Slack's answer names no channel or ts; the message is not threaded.");
            release().await;
            return Outcome::Delivered { status };
        };
        match threads
            .rooted(
                &self.key,
                &self.delivery,
                (channel, ts),
                self.event_nanos,
                &self.content,
            )
            .await
        {
            Ok(true) => {
                tracing::debug!(thread = %self.key, channel, ts, "Slack thread started.");
            }
            Ok(false) => {
                tracing::warn!(thread = %self.key, "A Slack thread's root was posted after its claim lapsed; the thread has a second root.");
            }
            Err(error) => {
                tracing::warn!(error = %error, thread = %self.key, "Cannot store a Slack thread's root; the thread's next message starts another.");
            }
        }
        Outcome::Delivered { status }
    }

    /// Posts the message as a reply to the root `ts` in `channel`, counts
    /// it, and updates the root (see [`Thread::update_root`]).
    async fn post_reply(
        &self,
        threads: &Threads,
        clients: &Clients,
        resolved: &Resolved,
        channel: &str,
        ts: &str,
    ) -> Replied {
        if let Err(outcome) = self.turn(threads).await {
            return Replied::Done(outcome);
        }
        let mut reply = self.message.clone();
        reply.insert("channel".to_owned(), Value::from(channel));
        reply.insert("thread_ts".to_owned(), Value::from(ts));
        let body = serde_json::to_vec(&reply).unwrap_or_default();
        let status = match self
            .call(clients, resolved, &self.request.url, body, "")
            .await
        {
            Ok((_, status)) => status,
            Err(refused) if refused.root_gone() => {
                tracing::info!(thread = %self.key, error = %refused.error, "A Slack thread's root is gone; a new thread starts.");
                return match threads.gone(&self.key, ts).await {
                    Ok(()) => Replied::RootGone,
                    Err(error) => Replied::Done(unavailable(&error)),
                };
            }
            Err(refused) => return Replied::Done(refused.outcome),
        };
        match threads
            .replied(
                &self.key,
                ts,
                &self.delivery,
                self.event_nanos,
                &self.content,
            )
            .await
        {
            Ok(()) => Replied::Done(
                self.update_root(threads, clients, resolved, (channel, ts), status)
                    .await,
            ),
            Err(error) => {
                tracing::warn!(error = %error, thread = %self.key, "Cannot count a reply in a Slack thread; its root is not updated.");
                Replied::Done(Outcome::Delivered { status })
            }
        }
    }

    /// Updates the root `(channel, ts)` to say how many replies the thread
    /// holds and to show the newest event's message, when it shows less and
    /// no other delivery is updating it (see [`crate::threads`]). The reply
    /// is posted already (`status`): a root that cannot be updated for good
    /// leaves it delivered; one to try again is put back or retried, and
    /// the redelivery only updates the root.
    async fn update_root(
        &self,
        threads: &Threads,
        clients: &Clients,
        resolved: &Resolved,
        (channel, ts): (&str, &str),
        status: u16,
    ) -> Outcome {
        let hold = threads.claim_hold(resolved.timeout);
        match threads
            .take_update(&self.key, ts, &self.delivery, hold)
            .await
        {
            Ok(true) => {}
            Ok(false) => return Outcome::Delivered { status },
            Err(error) => return unavailable(&error),
        }
        for _ in 0..UPDATES_IN_A_TURN {
            if let Err(outcome) = self.turn(threads).await {
                self.let_go(threads).await;
                return outcome;
            }
            // What to show is read after the wait for the turn: other
            // replies may have changed it meanwhile.
            let show = match threads.current(&self.key, ts).await {
                Ok(Some(now)) => now,
                Ok(None) => return Outcome::Delivered { status },
                Err(error) => {
                    self.let_go(threads).await;
                    return unavailable(&error);
                }
            };
            let body = update_body(channel, ts, &show);
            match self
                .call(clients, resolved, &self.update_url, body, "chat.update")
                .await
            {
                Ok(_) => {}
                Err(refused) if refused.root_gone() => {
                    tracing::info!(thread = %self.key, error = %refused.error, "A Slack thread's root is gone; the next message starts a new thread.");
                    if let Err(error) = threads.gone(&self.key, ts).await {
                        tracing::warn!(error = %error, thread = %self.key, "Cannot forget a Slack thread's root.");
                    }
                    return Outcome::Delivered { status };
                }
                Err(Refused {
                    outcome: Outcome::Dead { reason, .. },
                    ..
                }) => {
                    tracing::warn!(thread = %self.key, reason = %reason, "A Slack thread's root cannot be updated; the reply is posted.");
                    self.let_go(threads).await;
                    return Outcome::Delivered { status };
                }
                Err(refused) => {
                    self.let_go(threads).await;
                    return refused.outcome;
                }
            }
            match threads
                .shown(&self.key, ts, &self.delivery, &show, hold)
                .await
            {
                Ok(true) => {}
                Ok(false) => return Outcome::Delivered { status },
                Err(error) => {
                    // The update is made; the redelivery makes it again and
                    // notes it (its turn lapses meanwhile).
                    return unavailable(&error);
                }
            }
        }
        self.let_go(threads).await;
        Outcome::Later {
            reason: "the Slack thread's root keeps changing; its update goes on".to_owned(),
            after: UNAVAILABLE_RETRY,
        }
    }

    /// Ends this delivery's turn to update its root; a turn that cannot be
    /// ended lapses.
    async fn let_go(&self, threads: &Threads) {
        if let Err(error) = threads.let_go(&self.key, &self.delivery).await {
            tracing::warn!(error = %error, thread = %self.key, "Cannot end a turn to update a Slack thread's root; it lapses by itself.");
        }
    }

    /// Takes the channel's turn for one call.
    async fn turn(&self, threads: &Threads) -> Result<(), Outcome> {
        match threads.turn(&self.destination).await {
            Ok(Waited::Go(_)) => Ok(()),
            Ok(Waited::PutBack(after)) => Err(Outcome::Later {
                reason: "the Slack channel's turn comes later".to_owned(),
                after,
            }),
            Err(error) => Err(Outcome::Retry {
                reason: format!("pacing state unavailable: {error}"),
                status: 0,
                after: Some(UNAVAILABLE_RETRY),
                body: String::new(),
            }),
        }
    }

    /// POSTs `body` to `url` with the Provider's headers (its token): Slack's
    /// answer and status when it accepted the call, else the outcome as
    /// Slack's Web API is judged (`what` names the call in the reason).
    async fn call(
        &self,
        clients: &Clients,
        resolved: &Resolved,
        url: &reqwest::Url,
        body: Vec<u8>,
        what: &str,
    ) -> Result<(Value, u16), Refused> {
        let answer = clients
            .http
            .call(
                reqwest::Method::POST,
                url.clone(),
                &self.request.headers,
                Some(body),
                resolved,
            )
            .await
            .map_err(|outcome| Refused {
                outcome,
                error: String::new(),
            })?;
        let parsed: Value = serde_json::from_slice(&answer.body).unwrap_or_default();
        let masker = crate::http::masker(resolved, url);
        match classify::classify(&answer, Judge::SlackWebApi, &masker, what) {
            Outcome::Delivered { status } => Ok((parsed, status)),
            outcome => Err(Refused {
                outcome,
                error: parsed["error"].as_str().unwrap_or_default().to_owned(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::{AlertIdentity, ThreadScope};
    use herald_flux::FluxEvent;

    fn web_api() -> Resolved {
        Resolved {
            provider_type: "slack".into(),
            address: "https://slack.com/api/chat.postMessage".into(),
            channel: "alerts".into(),
            token: "xoxb-1".into(),
            ..Resolved::default()
        }
    }

    fn event(revision: Option<&str>) -> FluxEvent {
        let mut e = FluxEvent::from_json(
            br#"{"involvedObject":{"kind":"Kustomization","namespace":"apps","name":"web",
                "apiVersion":"kustomize.toolkit.fluxcd.io/v1"},
                "severity":"info","message":"applied","reason":"ReconciliationSucceeded",
                "reportingController":"kustomize-controller"}"#,
        )
        .unwrap();
        if let Some(revision) = revision {
            e.metadata.insert("revision".into(), revision.into());
        }
        e
    }

    fn planned(resolved: &Resolved, event: &FluxEvent, threaded: bool) -> Plan {
        let alert = AlertIdentity::default();
        let identifier = || Ok(String::new());
        let input = Input {
            event,
            alert: &alert,
            resolved,
            identifier: &identifier,
            thread: threaded.then_some(ThreadScope {
                cluster: "prod",
                delivery_id: "d1",
                event_unix_nanos: 1,
            }),
        };
        super::super::plan(&input).unwrap()
    }

    #[test]
    fn only_the_web_api_with_a_token_and_channel_threads() {
        assert_eq!(unsupported(&web_api()), None);
        let webhook = Resolved {
            address: "https://hooks.slack.com/services/T/B/secret".into(),
            address_is_secret: true,
            ..web_api()
        };
        let problem = unsupported(&webhook).unwrap();
        assert!(problem.contains("posts to a webhook"), "{problem}");
        assert!(!problem.contains("secret"), "{problem}");
        let no_token = Resolved {
            token: String::new(),
            ..web_api()
        };
        assert!(unsupported(&no_token).unwrap().contains("no token"));
        let no_channel = Resolved {
            channel: String::new(),
            ..web_api()
        };
        assert!(unsupported(&no_channel).unwrap().contains("no channel"));
        let discord = Resolved {
            provider_type: "discord".into(),
            ..web_api()
        };
        assert!(
            unsupported(&discord)
                .unwrap()
                .contains("slack Providers only")
        );
    }

    #[test]
    fn threads_are_planned_only_when_asked_possible_and_with_a_revision() {
        let resolved = web_api();
        let with_revision = event(Some("main@sha1:1"));
        let Plan::Exchange(exchange) = planned(&resolved, &with_revision, true) else {
            panic!("a thread exchange");
        };
        assert!(exchange.paces_itself());
        assert!(matches!(
            planned(&resolved, &with_revision, false),
            Plan::Request(_)
        ));
        assert!(matches!(
            planned(&resolved, &event(None), true),
            Plan::Request(_)
        ));
        let webhook = Resolved {
            address: "https://hooks.slack.com/services/T/B/X".into(),
            ..web_api()
        };
        assert!(matches!(
            planned(&webhook, &with_revision, true),
            Plan::Request(_)
        ));
    }

    #[test]
    fn the_update_goes_next_to_post_message_and_counts_replies() {
        let post =
            reqwest::Url::parse("https://slack.example/proxy/api/chat.postMessage?x=1").unwrap();
        assert_eq!(
            update_url(&post).unwrap().as_str(),
            "https://slack.example/proxy/api/chat.update?x=1"
        );
        assert_eq!(
            update_url(&reqwest::Url::parse("https://hooks.slack.com/services/T/B/X").unwrap()),
            None
        );
        assert_eq!(summary(1), "1 update in thread");
        assert_eq!(summary(4), "4 updates in thread");
        let blocks = [json!({"type": "section", "text": {"type": "mrkdwn", "text": "hi"}})];
        let shown = with_summary(&blocks, 2);
        assert_eq!(shown.len(), 2);
        assert_eq!(shown[1]["elements"][0]["text"], "2 updates in thread");
        assert_eq!(with_summary(&vec![blocks[0].clone(); 50], 2).len(), 50);
    }

    #[test]
    fn every_update_of_the_root_shows_the_newest_message_and_the_count() {
        let message = json!({
            "channel": "alerts",
            "text": "fallback",
            "attachments": [{"text": "applied"}],
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "applied"}}],
        });
        let Value::Object(message) = message else {
            unreachable!()
        };
        let content = root_content(&message);
        let kept: Value = serde_json::from_slice(&content).unwrap();
        assert_eq!(kept.as_object().unwrap().len(), 2, "{kept}");
        let root = Root {
            replies: 3,
            delivery: "d2".into(),
            content,
        };
        let update: Value = serde_json::from_slice(&update_body("C1", "1.1", &root)).unwrap();
        assert_eq!(update["channel"], "C1");
        assert_eq!(update["ts"], "1.1");
        assert_eq!(update["text"], "3 updates in thread");
        assert_eq!(update["attachments"][0]["text"], "applied");
        assert_eq!(
            update["blocks"][1]["elements"][0]["text"],
            "3 updates in thread"
        );
        // An entry without the message (older than it) updates the count.
        let bare = Root {
            content: Vec::new(),
            ..root
        };
        let update: Value = serde_json::from_slice(&update_body("C1", "1.1", &bare)).unwrap();
        assert_eq!(update.as_object().unwrap().len(), 3, "{update}");
    }
}
