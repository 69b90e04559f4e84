//! The pull loop router and senders share: many messages in flight, bounded;
//! each message in hand reported in progress to JetStream, so that a short
//! ack wait redelivers quickly what a lost process or connection held, never
//! what is still being worked on; pull requests renewed within seconds when
//! a server, a connection or a consumer leader is lost; on shutdown, stop
//! pulling, finish what was started, and hand back at once what still
//! arrives, so other replicas take it without waiting for the ack wait.
//!
//! Messages are asked for only when there is room to start them: a message
//! never waits in a buffer, where its ack wait would run out unseen. A copy
//! of a message in hand, or just finished, that a newly elected consumer
//! leader hands out again is not handled twice, and
//! [`ack_confirmed`] makes an ack survive a lost connection or leader.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer::PullConsumer};
use bytes::Bytes;
use futures::StreamExt as _;
use futures::stream::{FuturesUnordered, SelectAll};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::held::{Arrival, Held};
use crate::pull::{PullRequest, Pulled, Pulls};

/// What a handler did with its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Done {
    /// Finished it for good (acked or terminated): a copy handed out again
    /// a moment later is acked, not handled.
    Finished,
    /// Put it back (a nak, or no answer): JetStream hands it out again, to
    /// be handled again.
    PutBack,
}

/// How a consumer is consumed.
#[derive(Debug, Clone, Copy)]
pub struct ConsumeSettings {
    /// Messages in hand at once.
    pub concurrency: usize,
    /// The consumer's ack wait: a message in hand is reported in progress
    /// every third of it.
    pub ack_wait: Duration,
}

/// How long a stopping process keeps handing back what still arrives.
const HAND_BACK_FOR: Duration = Duration::from_secs(2);

/// How often the loop looks for a reconnection.
const CHECK_EVERY: Duration = Duration::from_millis(250);

/// The first and the longest wait between two tries of a confirmed ack.
const CONFIRM_RETRY_FIRST: Duration = Duration::from_millis(100);
const CONFIRM_RETRY_MAX: Duration = Duration::from_secs(1);

/// Consumes `consumer` with at most `settings.concurrency` messages in
/// `handle` at once, until `cancel` fires and the messages in hand are
/// finished.
pub async fn consume<F, Fut>(
    jetstream: &jetstream::Context,
    consumer: &PullConsumer,
    settings: ConsumeSettings,
    cancel: &CancellationToken,
    what: &str,
    handle: F,
) where
    F: Fn(jetstream::Message) -> Fut,
    Fut: Future<Output = Done>,
{
    let concurrency = settings.concurrency.max(1);
    let refill = (concurrency / 4).max(1);
    let client = jetstream.client();
    let connects = || client.statistics().connects.load(Ordering::Relaxed);
    let mut connected = connects();
    let mut pulls = Pulls::default();
    let mut in_hand = FuturesUnordered::new();
    let mut spares = Spares::new(refill);
    let mut held = Held::default();
    let mut check = tokio::time::interval(CHECK_EVERY);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !cancel.is_cancelled() {
        if connects() != connected {
            connected = connects();
            tracing::debug!(
                owed = pulls.owed(),
                "Reconnected to NATS; pulling {what} again."
            );
            pulls.renew();
        }
        let free = concurrency.saturating_sub(in_hand.len() + pulls.owed());
        if pulls.wants(free, refill) {
            // Handlers go on while the request is sent (sending waits when
            // the connection's queue is full).
            let send = PullRequest::send(jetstream, consumer, free);
            tokio::pin!(send);
            let sent = loop {
                tokio::select! {
                    sent = &mut send => break sent,
                    Some(done) = in_hand.next(), if !in_hand.is_empty() => release(&mut held, &mut spares, done),
                }
            };
            match sent {
                Ok(request) => pulls.push(request),
                Err(error) => pulls.failed(&error, what),
            }
            continue;
        }
        let backing_off = pulls.backing_off_until();
        tokio::select! {
            () = cancel.cancelled() => break,
            Some(done) = in_hand.next(), if !in_hand.is_empty() => release(&mut held, &mut spares, done),
            Some(message) = pulls.next(what), if !pulls.is_empty() => {
                let sequence = message.info().ok().map(|info| info.stream_sequence);
                match sequence.map_or(Arrival::New, |sequence| held.arrive(sequence)) {
                    Arrival::New => {
                        let reply = message.reply.clone();
                        let mut work = spares.hold(handle(message));
                        let (client, ack_wait) = (client.clone(), settings.ack_wait);
                        in_hand.push(async move {
                            let done = with_progress(reply, client, ack_wait, work.as_mut()).await;
                            (sequence, done, work)
                        });
                    }
                    Arrival::InHand => {
                        tracing::debug!(?sequence, "A message in hand was handed out again; the one in hand finishes it.");
                    }
                    Arrival::Finished => {
                        tracing::debug!(?sequence, "A message just finished was handed out again; acked again.");
                        if let Err(error) = message.ack().await {
                            tracing::debug!(error = %error, "Cannot ack a copy of a finished message.");
                        }
                    }
                }
            }
            () = sleep_until_some(backing_off) => {}
            _ = check.tick() => spares.tick(),
        }
    }
    // Stop pulling: hand back what still arrives, and finish what was started.
    let finish = async { while in_hand.next().await.is_some() {} };
    tokio::join!(hand_back(pulls.take(), what), finish);
}

/// Sleeps until `at`; never ends for `None`.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// How long [`ack_confirmed`] keeps trying: longer than a consumer leader
/// election after a node loss.
const CONFIRM_FOR: Duration = Duration::from_secs(15);

/// Acks `message` (or naks it, with `kind`) and waits for JetStream to
/// confirm it, trying again while unconfirmed for up to [`CONFIRM_FOR`]. A
/// plain ack is lost when the connection or the consumer leader it travels to
/// is lost: an ack lost so means the message is handled again (a
/// notification sent twice), a nak lost so that it waits for the new
/// leader's ack wait. Confirmed, it lands as soon as a leader is elected. The
/// message stays in hand meanwhile (progress acks go on).
///
/// # Errors
///
/// The last error, when JetStream never confirmed.
pub async fn ack_confirmed(
    message: &jetstream::Message,
    kind: AckKind,
) -> Result<(), async_nats::Error> {
    let deadline = Instant::now() + CONFIRM_FOR;
    let mut retry = CONFIRM_RETRY_FIRST;
    loop {
        match message.double_ack_with(kind).await {
            Ok(()) => return Ok(()),
            Err(error) if Instant::now() + retry < deadline => {
                tracing::debug!(error = %error, "An ack was not confirmed; acking again.");
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(CONFIRM_RETRY_MAX);
            }
            Err(error) => return Err(error),
        }
    }
}

/// Lets go of a message its handler is done with, keeping the handler's
/// box for a next message.
fn release<T>(
    held: &mut Held,
    spares: &mut Spares<T>,
    (sequence, done, work): (Option<u64>, Done, Pin<Box<T>>),
) {
    if let Some(sequence) = sequence {
        held.release(sequence, done == Done::Finished);
    }
    spares.keep(work);
}

/// Boxes of finished handlers, for the next messages' handlers.
///
/// A handler's future is large (a sender's holds every provider's
/// request, several KiB): boxed where it is made, the wrappers and the set
/// move a pointer, not its bytes. A box allocated and freed for every
/// message is larger than the allocator's per-thread cache takes, so each
/// goes through the arena's lock and slabs; a box written over in place
/// does not. At most one pull's worth is kept, and none once the loop has
/// had nothing to start for a check period, so an idle consumer holds no
/// more memory than before.
struct Spares<T> {
    boxes: Vec<Pin<Box<T>>>,
    most: usize,
    used: bool,
}

impl<T> Spares<T> {
    fn new(most: usize) -> Self {
        Self {
            boxes: Vec::new(),
            most,
            used: false,
        }
    }

    /// `future` in a box of a finished handler, or in a new one.
    fn hold(&mut self, future: T) -> Pin<Box<T>> {
        self.used = true;
        match self.boxes.pop() {
            Some(mut spare) => {
                spare.set(future);
                spare
            }
            None => Box::pin(future),
        }
    }

    /// Keeps a finished handler's box, while there is room.
    fn keep(&mut self, finished: Pin<Box<T>>) {
        if self.boxes.len() < self.most {
            self.boxes.push(finished);
        }
    }

    /// Lets the boxes go when none was taken since the last check.
    fn tick(&mut self) {
        if !std::mem::take(&mut self.used) {
            self.boxes = Vec::new();
        }
    }
}

/// Hands back (naks) what the requests in flight still deliver, until they
/// are quiet for 100 ms or [`HAND_BACK_FOR`] has passed; then drops them.
async fn hand_back(mut requests: SelectAll<PullRequest>, what: &str) {
    let deadline = Instant::now() + HAND_BACK_FOR;
    let mut handed = 0usize;
    while !requests.is_empty() {
        let quiet = deadline.min(Instant::now() + Duration::from_millis(100));
        match tokio::time::timeout_at(quiet, requests.next()).await {
            Ok(Some(Pulled::Message(message))) => {
                if message.ack_with(AckKind::Nak(None)).await.is_ok() {
                    handed += 1;
                }
            }
            Ok(Some(Pulled::Ended { .. })) => {}
            Ok(None) | Err(_) => break,
        }
    }
    tracing::info!(
        handed,
        "Stopped pulling {what}; handed back what was not started."
    );
}

/// Awaits `work`, telling JetStream the message is still in progress every
/// third of the ack wait, so that work taking longer than the ack wait (a
/// slow destination, a pacing wait, NATS itself slow) is never redelivered.
async fn with_progress<F: Future>(
    reply: Option<async_nats::Subject>,
    client: async_nats::Client,
    ack_wait: Duration,
    work: F,
) -> F::Output {
    let Some(reply) = reply else {
        return work.await;
    };
    let period = (ack_wait / 3).max(Duration::from_millis(100));
    let mut ticker = tokio::time::interval_at(Instant::now() + period, period);
    tokio::pin!(work);
    loop {
        tokio::select! {
            output = &mut work => return output,
            _ = ticker.tick() => {
                // What `AckKind::Progress` sends, without cloning the message.
                if let Err(error) = client.publish(reply.clone(), Bytes::from_static(b"+WPI")).await {
                    tracing::debug!(error = %error, "Cannot send a progress ack.");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address<T>(boxed: &Pin<Box<T>>) -> *const T {
        &raw const **boxed
    }

    #[tokio::test]
    async fn finished_handlers_boxes_are_written_over_then_let_go_when_idle() {
        let mut spares = Spares::new(2);
        let handler = |n: u32| async move { n * 2 };
        let mut first = spares.hold(handler(1));
        assert_eq!(first.as_mut().await, 2);
        let kept = address(&first);
        spares.keep(first);
        // The next handler is written into the finished one's box.
        let mut second = spares.hold(handler(2));
        assert_eq!(address(&second), kept);
        assert_eq!(second.as_mut().await, 4);
        // No more than `most` are kept.
        let (a, b) = (spares.hold(handler(3)), spares.hold(handler(4)));
        spares.keep(second);
        spares.keep(a);
        spares.keep(b);
        assert_eq!(spares.boxes.len(), 2);
        // Used since the last check: kept; then a check with none taken
        // lets them go.
        spares.tick();
        assert_eq!(spares.boxes.len(), 2);
        spares.tick();
        assert!(spares.boxes.is_empty());
    }
}
