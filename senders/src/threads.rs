//! Slack thread roots, shared by every sender replica through the
//! HERALD_THREADS key-value bucket, so that a restarted sender, or another
//! replica, continues a thread instead of starting a second one.
//!
//! Each thread (see [`herald_flux::threads::thread_key`]) has one
//! [`SlackThread`] entry. The first delivery claims the key with a
//! compare-and-set create before it posts the root; the others wait (they
//! are put back for a short while, never spin) until the root's `ts` is
//! stored. A claim lapses after a bounded time (the Provider's timeout, the
//! longest in-process wait for a turn and a margin), so one left by a
//! crashed replica is taken over. Replies are counted, and the newest event
//! is noted, so that the root can say how many updates the thread holds and
//! show the newest message. Every change is a read, a decision (the pure
//! functions below) and a compare-and-set.
//!
//! At least once, not exactly once: a root posted but not stored (the
//! sender died between Slack's answer and the write, or its claim lapsed
//! meanwhile) is posted again, as a second root, when the delivery is
//! retried or its claim taken over. Likewise a reply posted but not yet
//! counted is posted again by a redelivery; once counted, it is not (the
//! redelivery only updates the root, if that is still owed).

use std::time::Duration;

use async_nats::jetstream::kv;
use herald_proto::SlackThread;
use herald_runtime::Metrics;
use herald_runtime::kv::{KvError, Step, update};
use prost::Message as _;

use crate::pacing::{Pacer, Waited};

/// How many deliveries an entry remembers as posted.
const POSTED_KEPT: usize = 32;

/// How long a delivery waiting for another's root is put back (at most).
const ROOT_WAIT: Duration = Duration::from_secs(1);

/// The shortest such wait, so that waiting never spins.
const ROOT_WAIT_MIN: Duration = Duration::from_millis(250);

/// What a claim holds beyond a call and a wait for its turn.
const CLAIM_MARGIN: Duration = Duration::from_secs(10);

const MAX_RACES: usize = 16;

/// What a delivery does in its thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Post the thread's root: the key is claimed for this delivery.
    Root,
    /// Post a reply to the root `ts` in `channel` (an ID).
    Reply { channel: String, ts: String },
    /// This delivery is in the thread already (it is a redelivery): at most
    /// the root's update is left to do.
    Posted { channel: String, ts: String },
    /// Another delivery is posting the root: come back after this long.
    Wait(Duration),
}

/// What the root of a thread should show, as one delivery sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Root {
    /// The replies the thread holds.
    pub replies: u32,
    /// Whether the delivery's event is the newest (the root shows its
    /// message).
    pub newest: bool,
    /// Whether the root shows less than that: fewer replies, or another
    /// message than the newest delivery's.
    pub owed: bool,
}

/// The shared thread roots, and the pacing every call to Slack takes.
#[derive(Clone)]
pub struct Threads {
    store: kv::Store,
    pacer: Pacer,
    /// Slack's steady rate per destination (`--pace slack=…`).
    pace: Option<Duration>,
    metrics: Metrics,
}

impl std::fmt::Debug for Threads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Threads")
            .field("pace", &self.pace)
            .finish_non_exhaustive()
    }
}

fn now_millis() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

// === decisions (pure) ===

/// Claims the thread for `me`, or says what to do instead. A missing entry,
/// a lapsed claim, or `me`'s own claim (a redelivery after a failed root)
/// is claimed for `hold` from `now`.
fn decide_claim(
    entry: Option<&SlackThread>,
    me: &str,
    now: i64,
    hold: Duration,
) -> Step<SlackThread, Claim> {
    let claim = || SlackThread {
        claimed_by: me.to_owned(),
        claim_expires_unix_millis: now.saturating_add(millis(hold)),
        ..SlackThread::default()
    };
    let Some(entry) = entry else {
        return Step::Write(claim(), Claim::Root);
    };
    if !entry.ts.is_empty() {
        let (channel, ts) = (entry.channel.clone(), entry.ts.clone());
        if entry.posted.iter().any(|d| d == me) {
            return Step::Keep(Claim::Posted { channel, ts });
        }
        return Step::Keep(Claim::Reply { channel, ts });
    }
    if entry.claimed_by == me || entry.claim_expires_unix_millis <= now {
        return Step::Write(claim(), Claim::Root);
    }
    let left =
        Duration::from_millis(u64::try_from(entry.claim_expires_unix_millis - now).unwrap_or(0));
    Step::Keep(Claim::Wait(left.clamp(ROOT_WAIT_MIN, ROOT_WAIT)))
}

/// Stores the root `me` posted, if the key is still claimed by `me`;
/// whether it was.
fn decide_rooted(
    entry: Option<&SlackThread>,
    me: &str,
    channel: &str,
    ts: &str,
    event_nanos: i64,
) -> Step<SlackThread, bool> {
    match entry {
        Some(e) if e.ts.is_empty() && e.claimed_by == me => Step::Write(
            SlackThread {
                channel: channel.to_owned(),
                ts: ts.to_owned(),
                latest_event_unix_nanos: event_nanos,
                latest_delivery: me.to_owned(),
                shown_delivery: me.to_owned(),
                posted: vec![me.to_owned()],
                ..SlackThread::default()
            },
            true,
        ),
        _ => Step::Keep(false),
    }
}

/// Counts the reply `me` posted to the root `ts` (once); its event
/// becomes the thread's newest when no newer one is there.
fn decide_replied(
    entry: Option<&SlackThread>,
    ts: &str,
    me: &str,
    event_nanos: i64,
) -> Step<SlackThread, ()> {
    let Some(entry) = entry.filter(|e| e.ts == ts) else {
        // The thread was started again meanwhile: nothing to count.
        return Step::Keep(());
    };
    if entry.posted.iter().any(|d| d == me) {
        return Step::Keep(());
    }
    let mut next = entry.clone();
    next.replies = next.replies.saturating_add(1);
    next.posted.push(me.to_owned());
    if next.posted.len() > POSTED_KEPT {
        let extra = next.posted.len() - POSTED_KEPT;
        next.posted.drain(..extra);
    }
    if event_nanos >= entry.latest_event_unix_nanos {
        next.latest_event_unix_nanos = event_nanos;
        next.latest_delivery = me.to_owned();
    }
    Step::Write(next, ())
}

/// What the root `ts` should show, as `me` sees it; `None` when the
/// thread has another root now.
fn view(entry: Option<&SlackThread>, ts: &str, me: &str) -> Option<Root> {
    let entry = entry.filter(|e| e.ts == ts)?;
    let newest = entry.latest_delivery == me;
    Some(Root {
        replies: entry.replies,
        newest,
        owed: entry.shown_replies < entry.replies || (newest && entry.shown_delivery != me),
    })
}

/// Notes that the root `ts` shows `replies`, and `me`'s message when
/// `with_message`.
fn decide_shown(
    entry: Option<&SlackThread>,
    ts: &str,
    me: &str,
    replies: u32,
    with_message: bool,
) -> Step<SlackThread, ()> {
    let Some(entry) = entry.filter(|e| e.ts == ts) else {
        return Step::Keep(());
    };
    let mut next = entry.clone();
    next.shown_replies = next.shown_replies.max(replies);
    if with_message {
        me.clone_into(&mut next.shown_delivery);
    }
    if next == *entry {
        Step::Keep(())
    } else {
        Step::Write(next, ())
    }
}

/// Gives up `me`'s claim (its root could not be posted), so that another
/// delivery may post the root at once.
fn decide_release(entry: Option<&SlackThread>, me: &str) -> Step<SlackThread, ()> {
    match entry {
        Some(e) if e.ts.is_empty() && e.claimed_by == me => Step::Write(SlackThread::default(), ()),
        _ => Step::Keep(()),
    }
}

/// Forgets the root `ts`, which Slack no longer has: the next delivery
/// starts a new thread.
fn decide_gone(entry: Option<&SlackThread>, ts: &str) -> Step<SlackThread, ()> {
    match entry {
        Some(e) if e.ts == ts => Step::Write(SlackThread::default(), ()),
        _ => Step::Keep(()),
    }
}

// === impl Threads ===

impl Threads {
    /// Over the HERALD_THREADS `store`; each call to Slack takes a turn of
    /// `pacer` at Slack's `pace`.
    #[must_use]
    pub fn new(store: kv::Store, pacer: Pacer, pace: Option<Duration>, metrics: Metrics) -> Self {
        Self {
            store,
            pacer,
            pace,
            metrics,
        }
    }

    /// How long a claim to post a root holds when one call to Slack may
    /// take `timeout`: that call, a wait for the channel's turn, and a
    /// margin for the writes around them. A claim older than this was left
    /// by a sender that is gone.
    #[must_use]
    pub fn claim_hold(&self, timeout: Duration) -> Duration {
        timeout + self.pacer.max_local_wait() + CLAIM_MARGIN
    }

    /// What the delivery `me` does in the thread `key`; a root it is to
    /// post is claimed for `hold` (see [`Threads::claim_hold`]).
    ///
    /// # Errors
    ///
    /// When the bucket cannot be read or written.
    pub async fn claim(&self, key: &str, me: &str, hold: Duration) -> Result<Claim, KvError> {
        let now = now_millis();
        let decided = update(
            &self.store,
            key,
            MAX_RACES,
            |entry: Option<&SlackThread>| decide_claim(entry, me, now, hold),
        )
        .await;
        match decided {
            Err(KvError::Contended) => Ok(Claim::Wait(ROOT_WAIT)),
            other => other,
        }
    }

    /// Stores the root `me` posted; false when its claim was taken over
    /// meanwhile (the thread now has a second root).
    ///
    /// # Errors
    ///
    /// When the bucket cannot be read or written.
    pub async fn rooted(
        &self,
        key: &str,
        me: &str,
        channel: &str,
        ts: &str,
        event_nanos: i64,
    ) -> Result<bool, KvError> {
        update(
            &self.store,
            key,
            MAX_RACES,
            |entry: Option<&SlackThread>| decide_rooted(entry, me, channel, ts, event_nanos),
        )
        .await
    }

    /// Counts the reply `me` posted to the root `ts`.
    ///
    /// # Errors
    ///
    /// When the bucket cannot be read or written.
    pub async fn replied(
        &self,
        key: &str,
        ts: &str,
        me: &str,
        event_nanos: i64,
    ) -> Result<(), KvError> {
        update(
            &self.store,
            key,
            MAX_RACES,
            |entry: Option<&SlackThread>| decide_replied(entry, ts, me, event_nanos),
        )
        .await
    }

    /// What the root `ts` of `key` should show, as `me` sees it; `None`
    /// when the thread has another root now (or none).
    ///
    /// # Errors
    ///
    /// When the bucket cannot be read.
    pub async fn root(&self, key: &str, ts: &str, me: &str) -> Result<Option<Root>, KvError> {
        let entry = self
            .store
            .entry(key)
            .await
            .map_err(|e| KvError::Unavailable(e.to_string()))?
            .filter(|e| e.operation == kv::Operation::Put);
        let thread = match entry {
            Some(entry) => Some(SlackThread::decode(entry.value)?),
            None => None,
        };
        Ok(view(thread.as_ref(), ts, me))
    }

    /// Notes that the root `ts` shows `replies`, and `me`'s message when
    /// `with_message`.
    ///
    /// # Errors
    ///
    /// When the bucket cannot be read or written.
    pub async fn shown(
        &self,
        key: &str,
        ts: &str,
        me: &str,
        replies: u32,
        with_message: bool,
    ) -> Result<(), KvError> {
        update(
            &self.store,
            key,
            MAX_RACES,
            |entry: Option<&SlackThread>| decide_shown(entry, ts, me, replies, with_message),
        )
        .await
    }

    /// Gives up `me`'s claim on `key`.
    ///
    /// # Errors
    ///
    /// When the bucket cannot be read or written.
    pub async fn release(&self, key: &str, me: &str) -> Result<(), KvError> {
        update(
            &self.store,
            key,
            MAX_RACES,
            |entry: Option<&SlackThread>| decide_release(entry, me),
        )
        .await
    }

    /// Forgets the root `ts` of `key`, gone from Slack.
    ///
    /// # Errors
    ///
    /// When the bucket cannot be read or written.
    pub async fn gone(&self, key: &str, ts: &str) -> Result<(), KvError> {
        update(
            &self.store,
            key,
            MAX_RACES,
            |entry: Option<&SlackThread>| decide_gone(entry, ts),
        )
        .await
    }

    /// Takes `destination`'s turn for one call to Slack (see
    /// [`Pacer::wait_turn`]).
    ///
    /// # Errors
    ///
    /// When the pacing bucket cannot be read or written.
    pub async fn turn(&self, destination: &str) -> anyhow::Result<Waited> {
        let waited = self.pacer.wait_turn(destination, self.pace).await?;
        if let Waited::Go(wait) = waited
            && !wait.is_zero()
        {
            self.metrics.pacing_wait("slack", "waited", wait);
        }
        Ok(waited)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOLD: Duration = Duration::from_secs(25);
    const TS: &str = "1.000100";

    fn written<R>(step: Step<SlackThread, R>) -> (SlackThread, R) {
        match step {
            Step::Write(value, result) => (value, result),
            Step::Keep(_) => panic!("expected a write"),
        }
    }

    fn kept<R>(step: Step<SlackThread, R>) -> R {
        match step {
            Step::Keep(result) => result,
            Step::Write(..) => panic!("expected no write"),
        }
    }

    fn rooted(me: &str, event_nanos: i64) -> SlackThread {
        let (claimed, _) = written(decide_claim(None, me, 1_000, HOLD));
        written(decide_rooted(Some(&claimed), me, "C1", TS, event_nanos)).0
    }

    fn reply(thread: &SlackThread, me: &str, event_nanos: i64) -> SlackThread {
        written(decide_replied(Some(thread), TS, me, event_nanos)).0
    }

    #[test]
    fn the_first_delivery_claims_and_the_others_wait_then_reply() {
        let (claimed, claim) = written(decide_claim(None, "d1", 1_000, HOLD));
        assert_eq!(claim, Claim::Root);
        assert_eq!(claimed.claimed_by, "d1");
        assert_eq!(claimed.claim_expires_unix_millis, 26_000);
        // Another delivery waits a short while, never less than the floor.
        assert_eq!(
            kept(decide_claim(Some(&claimed), "d2", 1_000, HOLD)),
            Claim::Wait(ROOT_WAIT)
        );
        assert_eq!(
            kept(decide_claim(Some(&claimed), "d2", 25_990, HOLD)),
            Claim::Wait(ROOT_WAIT_MIN)
        );
        // Once the root is stored, they reply to it.
        let (root, stored) = written(decide_rooted(Some(&claimed), "d1", "C1", TS, 10));
        assert!(stored);
        let (channel, ts) = ("C1".to_owned(), TS.to_owned());
        assert_eq!(
            kept(decide_claim(Some(&root), "d2", 2_000, HOLD)),
            Claim::Reply {
                channel: channel.clone(),
                ts: ts.clone()
            }
        );
        // The root's own redelivery finds itself posted, the root up to date.
        assert_eq!(
            kept(decide_claim(Some(&root), "d1", 2_000, HOLD)),
            Claim::Posted { channel, ts }
        );
        assert_eq!(
            view(Some(&root), TS, "d1"),
            Some(Root {
                replies: 0,
                newest: true,
                owed: false
            })
        );
    }

    #[test]
    fn a_lapsed_claim_is_taken_over_and_the_late_root_is_not_stored() {
        let (claimed, _) = written(decide_claim(None, "d1", 1_000, HOLD));
        let (taken, claim) = written(decide_claim(Some(&claimed), "d2", 26_000, HOLD));
        assert_eq!(claim, Claim::Root);
        assert_eq!(taken.claimed_by, "d2");
        assert!(!kept(decide_rooted(Some(&taken), "d1", "C1", "1.1", 10)));
        // Its own claim is claimed again by a redelivery.
        let (again, claim) = written(decide_claim(Some(&taken), "d2", 2_000, HOLD));
        assert_eq!((claim, again.claimed_by.as_str()), (Claim::Root, "d2"));
    }

    #[test]
    fn replies_are_counted_once_and_the_root_owes_the_newest_and_the_count() {
        let root = rooted("d1", 10);
        let one = reply(&root, "d2", 30);
        assert_eq!((one.replies, one.latest_delivery.as_str()), (1, "d2"));
        // An older event is counted but is not the newest.
        let two = reply(&one, "d3", 20);
        assert_eq!((two.replies, two.latest_delivery.as_str()), (2, "d2"));
        // A redelivered reply is not counted again; nor is one to a root
        // since replaced.
        kept(decide_replied(Some(&two), TS, "d2", 30));
        kept(decide_replied(Some(&two), "9.9", "d4", 40));
        assert_eq!(view(Some(&two), "9.9", "d2"), None);
        // The older reply owes the root its count, the newest its message too.
        assert_eq!(
            view(Some(&two), TS, "d3"),
            Some(Root {
                replies: 2,
                newest: false,
                owed: true
            })
        );
        let (counted, ()) = written(decide_shown(Some(&two), TS, "d3", 2, false));
        assert_eq!(view(Some(&counted), TS, "d3").map(|r| r.owed), Some(false));
        assert_eq!(
            view(Some(&counted), TS, "d2"),
            Some(Root {
                replies: 2,
                newest: true,
                owed: true
            })
        );
        let (shown, ()) = written(decide_shown(Some(&counted), TS, "d2", 2, true));
        assert_eq!(view(Some(&shown), TS, "d2").map(|r| r.owed), Some(false));
        // A late, smaller count never lowers what the root shows.
        kept(decide_shown(Some(&shown), TS, "d3", 1, false));
        assert_eq!(shown.shown_replies, 2);
    }

    #[test]
    fn the_posted_list_is_bounded() {
        let mut thread = rooted("d0", 0);
        for i in 1..=100 {
            thread = reply(&thread, &format!("d{i}"), i);
        }
        assert_eq!(thread.replies, 100);
        assert_eq!(thread.posted.len(), POSTED_KEPT);
        assert_eq!(thread.posted.last().map(String::as_str), Some("d100"));
    }

    #[test]
    fn released_and_gone_roots_free_the_key() {
        let (claimed, _) = written(decide_claim(None, "d1", 1_000, HOLD));
        kept(decide_release(Some(&claimed), "d2"));
        let (free, ()) = written(decide_release(Some(&claimed), "d1"));
        let (_, claim) = written(decide_claim(Some(&free), "d2", 1_000, HOLD));
        assert_eq!(claim, Claim::Root);
        let root = rooted("d1", 10);
        kept(decide_gone(Some(&root), "other"));
        let (free, ()) = written(decide_gone(Some(&root), TS));
        let (_, claim) = written(decide_claim(Some(&free), "d3", 2_000, HOLD));
        assert_eq!(claim, Claim::Root);
    }
}
