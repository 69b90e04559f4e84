//! One pull request on a JetStream pull consumer, on an inbox of its own, so
//! that what it still owes is known exactly and a request lost with a server,
//! a connection or a consumer leader is noticed within seconds: the server
//! sends an idle heartbeat every [`HEARTBEAT`] while the request waits, and a
//! request silent for [`SILENCE`] is taken for lost.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use async_nats::{StatusCode, Subscriber};
use futures::stream::SelectAll;
use futures::{FutureExt as _, Stream, StreamExt as _};
use tokio::time::Instant;

/// How often the server tells a waiting request it is still there.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// A request that hears nothing (no message, no heartbeat) for this long is
/// taken for lost: the server, the route or the consumer leader holding it
/// is gone.
pub const SILENCE: Duration = Duration::from_secs(3);

/// How long a request waits at the server for messages before it expires
/// and is renewed.
pub const EXPIRES: Duration = Duration::from_secs(30);

/// The first and the longest wait before asking again after a request
/// failed (no consumer leader: one is being elected).
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(1);

/// Pulling that keeps failing for longer than an election takes is logged
/// as a warning, at most this often.
const WARN_AFTER: Duration = Duration::from_secs(15);

/// Why a request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// Every message it asked for arrived.
    Fulfilled,
    /// It expired at the server (408), as requests do when nothing comes.
    Expired,
    /// Nothing answered for the consumer (503): no consumer leader now.
    NoResponders,
    /// The server ended it early (409: a leadership change, a server
    /// shutdown, a limit), or answered with another status.
    Terminated(String),
    /// Nothing was heard for [`SILENCE`].
    Silent,
}

impl Ended {
    /// Whether a new request right away would likely fail the same way.
    #[must_use]
    pub fn wants_backoff(&self) -> bool {
        matches!(
            self,
            Self::NoResponders | Self::Terminated(_) | Self::Silent
        )
    }
}

impl fmt::Display for Ended {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fulfilled => f.write_str("fulfilled"),
            Self::Expired => f.write_str("expired"),
            Self::NoResponders => f.write_str("no consumer leader answered"),
            Self::Terminated(why) => write!(f, "ended by the server: {why}"),
            Self::Silent => write!(f, "nothing heard for {SILENCE:?}"),
        }
    }
}

/// What a request yields.
#[derive(Debug)]
pub enum Pulled {
    /// A message to handle (boxed: it is large, and each moves on at once).
    Message(Box<jetstream::Message>),
    /// The request is over; `undelivered` of the messages it asked for will
    /// not come through it.
    Ended { undelivered: usize, why: Ended },
}

/// A pull request in flight: a [`Stream`] of [`Pulled`], ending after
/// [`Pulled::Ended`] (or after its last message), when it unsubscribes.
pub struct PullRequest {
    subscriber: Subscriber,
    jetstream: jetstream::Context,
    owed: usize,
    silence: Pin<Box<tokio::time::Sleep>>,
    done: bool,
}

// === impl PullRequest ===

impl PullRequest {
    /// Asks `consumer` for `batch` messages, delivered to a new inbox.
    ///
    /// # Errors
    ///
    /// When the inbox cannot be subscribed or the request not published
    /// (the connection is closed).
    pub async fn send(
        jetstream: &jetstream::Context,
        consumer: &consumer::PullConsumer,
        batch: usize,
    ) -> Result<Self, async_nats::Error> {
        let client = jetstream.client();
        let inbox = client.new_inbox();
        let subscriber = client.subscribe(inbox.clone()).await?;
        consumer
            .request_batch(
                consumer::pull::BatchConfig {
                    batch,
                    expires: Some(EXPIRES),
                    idle_heartbeat: HEARTBEAT,
                    ..consumer::pull::BatchConfig::default()
                },
                inbox.into(),
            )
            .await?;
        Ok(Self {
            subscriber,
            jetstream: jetstream.clone(),
            owed: batch,
            silence: Box::pin(tokio::time::sleep(SILENCE)),
            done: false,
        })
    }

    /// How many messages it asked for have not arrived yet.
    #[must_use]
    pub fn owed(&self) -> usize {
        self.owed
    }

    fn end(&mut self, why: Ended) -> Poll<Option<Pulled>> {
        self.done = true;
        Poll::Ready(Some(Pulled::Ended {
            undelivered: std::mem::take(&mut self.owed),
            why,
        }))
    }

    fn heard(&mut self) {
        self.silence.as_mut().reset(Instant::now() + SILENCE);
    }
}

impl Stream for PullRequest {
    type Item = Pulled;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Pulled>> {
        if self.done {
            return Poll::Ready(None);
        }
        if self.owed == 0 {
            return self.end(Ended::Fulfilled);
        }
        loop {
            match self.subscriber.poll_next_unpin(cx) {
                Poll::Ready(Some(message)) => {
                    self.heard();
                    match message.status {
                        None | Some(StatusCode::OK) => {
                            self.owed -= 1;
                            let jetstream = self.jetstream.clone();
                            return Poll::Ready(Some(Pulled::Message(Box::new(
                                jetstream::Message {
                                    message,
                                    context: jetstream,
                                },
                            ))));
                        }
                        Some(StatusCode::IDLE_HEARTBEAT) => {}
                        Some(StatusCode::TIMEOUT) => return self.end(Ended::Expired),
                        Some(StatusCode::NO_RESPONDERS) => return self.end(Ended::NoResponders),
                        Some(status) => {
                            let why = format!(
                                "{status} {}",
                                message.description.as_deref().unwrap_or_default()
                            );
                            return self.end(Ended::Terminated(why));
                        }
                    }
                }
                Poll::Ready(None) => {
                    return self.end(Ended::Terminated("subscription closed".to_owned()));
                }
                Poll::Pending => break,
            }
        }
        if self.silence.poll_unpin(cx).is_ready() {
            return self.end(Ended::Silent);
        }
        Poll::Pending
    }
}

/// The pull requests in flight for one consumer: what they still owe, and
/// when to ask again after a failure.
pub struct Pulls {
    requests: SelectAll<PullRequest>,
    owed: usize,
    next_at: Instant,
    retry: Duration,
    failing_since: Option<Instant>,
    warned_at: Option<Instant>,
}

impl Default for Pulls {
    fn default() -> Self {
        Self {
            requests: SelectAll::new(),
            owed: 0,
            next_at: Instant::now(),
            retry: RETRY_FIRST,
            failing_since: None,
            warned_at: None,
        }
    }
}

// === impl Pulls ===

impl Pulls {
    /// Messages asked for and not arrived yet, over every request.
    #[must_use]
    pub fn owed(&self) -> usize {
        self.owed
    }

    /// Whether to ask for `free` more messages now: once `refill` are free
    /// (so that requests stay few and large), or any when nothing is asked
    /// for, and not while backing off.
    #[must_use]
    pub fn wants(&self, free: usize, refill: usize) -> bool {
        (free >= refill || (free > 0 && self.owed == 0)) && Instant::now() >= self.next_at
    }

    /// When asking again is allowed, while backing off.
    #[must_use]
    pub fn backing_off_until(&self) -> Option<Instant> {
        (self.next_at > Instant::now()).then_some(self.next_at)
    }

    /// Adds a request just sent.
    pub fn push(&mut self, request: PullRequest) {
        self.owed += request.owed();
        self.requests.push(request);
    }

    /// Drops every request: after a reconnection they may be gone with the
    /// old connection, or the server it was on.
    pub fn renew(&mut self) {
        self.requests = SelectAll::new();
        self.owed = 0;
    }

    /// Drops every request and gives the requests in flight back for a
    /// last look (at shutdown).
    pub fn take(&mut self) -> SelectAll<PullRequest> {
        self.owed = 0;
        std::mem::take(&mut self.requests)
    }

    /// The next message of any request; requests ending on the way are
    /// accounted for (and backed off from when they failed). Cancel-safe.
    pub async fn next(&mut self, what: &str) -> Option<jetstream::Message> {
        while let Some(pulled) = self.requests.next().await {
            match pulled {
                Pulled::Message(message) => {
                    self.owed = self.owed.saturating_sub(1);
                    self.succeeded();
                    return Some(*message);
                }
                Pulled::Ended { undelivered, why } => {
                    self.owed = self.owed.saturating_sub(undelivered);
                    if why.wants_backoff() {
                        self.failed(&why, what);
                    } else if why == Ended::Expired {
                        self.succeeded();
                    }
                }
            }
        }
        None
    }

    /// Whether no request is in flight.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }

    /// Backs off after a failure; warns when failing for longer than an
    /// election takes.
    pub fn failed(&mut self, why: &dyn fmt::Display, what: &str) {
        let now = Instant::now();
        let since = *self.failing_since.get_or_insert(now);
        let failing_for = now.duration_since(since);
        if failing_for >= WARN_AFTER
            && self
                .warned_at
                .is_none_or(|at| now.duration_since(at) >= WARN_AFTER)
        {
            tracing::warn!(reason = %why, ?failing_for, "Cannot pull {what}; retrying.");
            self.warned_at = Some(now);
        } else {
            tracing::debug!(reason = %why, "Cannot pull {what} now; retrying.");
        }
        self.next_at = now + self.retry;
        self.retry = (self.retry * 2).min(RETRY_MAX);
    }

    fn succeeded(&mut self) {
        self.retry = RETRY_FIRST;
        self.failing_since = None;
        self.warned_at = None;
    }
}
