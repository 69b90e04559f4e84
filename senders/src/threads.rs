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
//! crashed replica is taken over. Replies are counted, and the newest
//! event's message is kept, so that the root can say how many updates the
//! thread holds and show the newest message, whichever delivery updates it.
//! One delivery at a time updates a root (`chat.update` replaces the whole
//! message, so two in flight could land in the wrong order): it takes the
//! turn, and before the turn ends it sees every change made meanwhile and
//! shows it too; a turn left by a crashed replica lapses, and its own
//! redelivery takes it again. Every change is a read, a decision (the pure
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

/// What the root of a thread shows, one snapshot of its entry: what a
/// `chat.update` sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    /// The replies the thread holds.
    pub replies: u32,
    /// The delivery of the newest event, whose message the root shows.
    pub delivery: String,
    /// That message's attachments and blocks (a JSON object); empty when
    /// the entry does not hold it.
    pub content: Vec<u8>,
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
/// whether it was. `content` is its message (see [`Root::content`]).
fn decide_rooted(
    entry: Option<&SlackThread>,
    me: &str,
    (channel, ts): (&str, &str),
    event_nanos: i64,
    content: &[u8],
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
                latest_content: content.to_vec(),
                ..SlackThread::default()
            },
            true,
        ),
        _ => Step::Keep(false),
    }
}

/// Counts the reply `me` posted to the root `ts` (once); its event, and
/// its message `content`, become the thread's newest when no newer one is
/// there.
fn decide_replied(
    entry: Option<&SlackThread>,
    ts: &str,
    me: &str,
    event_nanos: i64,
    content: &[u8],
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
        next.latest_content = content.to_vec();
    }
    Step::Write(next, ())
}

/// Whether the root shows less than the entry holds: fewer replies, or
/// another message than the newest.
fn owed(entry: &SlackThread) -> bool {
    entry.shown_replies != entry.replies || entry.shown_delivery != entry.latest_delivery
}

fn snapshot(entry: &SlackThread) -> Root {
    Root {
        replies: entry.replies,
        delivery: entry.latest_delivery.clone(),
        content: entry.latest_content.clone(),
    }
}

/// Whether `me` may update the root now: nobody else is (or their turn
/// lapsed).
fn free_for(entry: &SlackThread, me: &str, now: i64) -> bool {
    entry.updating_by.is_empty()
        || entry.updating_by == me
        || entry.update_expires_unix_millis <= now
}

/// Gives `me` the turn to update the root `ts` when the root shows less
/// than the entry holds and nobody else is updating it (that one sees
/// every change before its turn ends, see [`decide_shown`]); whether `me`
/// has it.
fn decide_update(
    entry: Option<&SlackThread>,
    ts: &str,
    me: &str,
    now: i64,
    hold: Duration,
) -> Step<SlackThread, bool> {
    let Some(entry) = entry.filter(|e| e.ts == ts) else {
        return Step::Keep(false);
    };
    if !owed(entry) {
        return match give_up_turn(entry, me) {
            Some(next) => Step::Write(next, false),
            None => Step::Keep(false),
        };
    }
    if !free_for(entry, me, now) {
        return Step::Keep(false);
    }
    let mut next = entry.clone();
    me.clone_into(&mut next.updating_by);
    next.update_expires_unix_millis = now.saturating_add(millis(hold));
    Step::Write(next, true)
}

/// Notes that the root `ts` shows `shown`, as `me` updated it; whether
/// `me` goes on (the entry changed meanwhile: its turn is held again) or
/// its turn ends.
fn decide_shown(
    entry: Option<&SlackThread>,
    ts: &str,
    me: &str,
    shown: &Root,
    now: i64,
    hold: Duration,
) -> Step<SlackThread, bool> {
    let Some(entry) = entry.filter(|e| e.ts == ts) else {
        return Step::Keep(false);
    };
    let mut next = entry.clone();
    next.shown_replies = shown.replies;
    next.shown_delivery.clone_from(&shown.delivery);
    let more = owed(&next) && free_for(entry, me, now);
    if more {
        me.clone_into(&mut next.updating_by);
        next.update_expires_unix_millis = now.saturating_add(millis(hold));
    } else if next.updating_by == me {
        next.updating_by.clear();
        next.update_expires_unix_millis = 0;
    }
    if next == *entry {
        Step::Keep(more)
    } else {
        Step::Write(next, more)
    }
}

/// The entry without `me`'s turn to update the root; `None` when `me` has
/// none.
fn give_up_turn(entry: &SlackThread, me: &str) -> Option<SlackThread> {
    (entry.updating_by == me).then(|| SlackThread {
        updating_by: String::new(),
        update_expires_unix_millis: 0,
        ..entry.clone()
    })
}

/// Ends `me`'s turn to update the root (an update failed or must wait):
/// the next delivery, or `me`'s own redelivery, takes it.
fn decide_let_go(entry: Option<&SlackThread>, me: &str) -> Step<SlackThread, ()> {
    match entry.and_then(|e| give_up_turn(e, me)) {
        Some(next) => Step::Write(next, ()),
        None => Step::Keep(()),
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

    /// Changes the entry of `key` as `decide` says, with compare-and-set.
    async fn change<R>(
        &self,
        key: &str,
        decide: impl FnMut(Option<&SlackThread>) -> Step<SlackThread, R>,
    ) -> Result<R, KvError> {
        update(&self.store, key, MAX_RACES, decide).await
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
        let decided = self
            .change(key, |entry| decide_claim(entry, me, now, hold))
            .await;
        match decided {
            Err(KvError::Contended) => Ok(Claim::Wait(ROOT_WAIT)),
            other => other,
        }
    }

    /// Stores the root `me` posted at `(channel, ts)` with its message
    /// `content`; false when its claim was taken over meanwhile (the thread
    /// now has a second root).
    ///
    /// # Errors
    ///
    /// When the bucket cannot be read or written.
    pub async fn rooted(
        &self,
        key: &str,
        me: &str,
        at: (&str, &str),
        event_nanos: i64,
        content: &[u8],
    ) -> Result<bool, KvError> {
        self.change(key, |entry| {
            decide_rooted(entry, me, at, event_nanos, content)
        })
        .await
    }

    /// Counts the reply `me` posted to the root `ts`, with its message
    /// `content`.
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
        content: &[u8],
    ) -> Result<(), KvError> {
        self.change(key, |entry| {
            decide_replied(entry, ts, me, event_nanos, content)
        })
        .await
    }

    /// Takes `me`'s turn to update the root `ts` of `key`, held for `hold`
    /// (see [`Threads::claim_hold`]); false when the root shows all already
    /// or another delivery is updating it.
    ///
    /// # Errors
    ///
    /// When the bucket cannot be read or written.
    pub async fn take_update(
        &self,
        key: &str,
        ts: &str,
        me: &str,
        hold: Duration,
    ) -> Result<bool, KvError> {
        let now = now_millis();
        self.change(key, |entry| decide_update(entry, ts, me, now, hold))
            .await
    }

    /// What the root `ts` of `key` should show now; `None` when the thread
    /// has another root now (or none).
    ///
    /// # Errors
    ///
    /// When the bucket cannot be read.
    pub async fn current(&self, key: &str, ts: &str) -> Result<Option<Root>, KvError> {
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
        Ok(thread.filter(|t| t.ts == ts).map(|t| snapshot(&t)))
    }

    /// Notes that `me` updated the root `ts` to show `shown`; true when the
    /// thread changed meanwhile (`me`'s turn goes on, held for `hold`
    /// again), false when its turn ends.
    ///
    /// # Errors
    ///
    /// When the bucket cannot be read or written.
    pub async fn shown(
        &self,
        key: &str,
        ts: &str,
        me: &str,
        shown: &Root,
        hold: Duration,
    ) -> Result<bool, KvError> {
        let now = now_millis();
        self.change(key, |entry| decide_shown(entry, ts, me, shown, now, hold))
            .await
    }

    /// Ends `me`'s turn to update the root of `key`.
    ///
    /// # Errors
    ///
    /// When the bucket cannot be read or written.
    pub async fn let_go(&self, key: &str, me: &str) -> Result<(), KvError> {
        self.change(key, |entry| decide_let_go(entry, me)).await
    }

    /// Gives up `me`'s claim on `key`.
    ///
    /// # Errors
    ///
    /// When the bucket cannot be read or written.
    pub async fn release(&self, key: &str, me: &str) -> Result<(), KvError> {
        self.change(key, |entry| decide_release(entry, me)).await
    }

    /// Forgets the root `ts` of `key`, gone from Slack.
    ///
    /// # Errors
    ///
    /// When the bucket cannot be read or written.
    pub async fn gone(&self, key: &str, ts: &str) -> Result<(), KvError> {
        self.change(key, |entry| decide_gone(entry, ts)).await
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

    fn content(text: &str) -> Vec<u8> {
        format!(r#"{{"attachments":[{{"text":"{text}"}}]}}"#).into_bytes()
    }

    fn rooted(me: &str, event_nanos: i64) -> SlackThread {
        let (claimed, _) = written(decide_claim(None, me, 1_000, HOLD));
        let at = ("C1", TS);
        written(decide_rooted(
            Some(&claimed),
            me,
            at,
            event_nanos,
            &content(me),
        ))
        .0
    }

    fn reply(thread: &SlackThread, me: &str, event_nanos: i64) -> SlackThread {
        written(decide_replied(
            Some(thread),
            TS,
            me,
            event_nanos,
            &content(me),
        ))
        .0
    }

    fn root(replies: u32, delivery: &str) -> Root {
        Root {
            replies,
            delivery: delivery.to_owned(),
            content: content(delivery),
        }
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
        let at = ("C1", TS);
        let (root, stored) = written(decide_rooted(Some(&claimed), "d1", at, 10, b"{}"));
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
        assert!(!kept(decide_update(Some(&root), TS, "d1", 2_000, HOLD)));
    }

    #[test]
    fn a_lapsed_claim_is_taken_over_and_the_late_root_is_not_stored() {
        let (claimed, _) = written(decide_claim(None, "d1", 1_000, HOLD));
        let (taken, claim) = written(decide_claim(Some(&claimed), "d2", 26_000, HOLD));
        assert_eq!(claim, Claim::Root);
        assert_eq!(taken.claimed_by, "d2");
        assert!(!kept(decide_rooted(
            Some(&taken),
            "d1",
            ("C1", "1.1"),
            10,
            b"{}"
        )));
        // Its own claim is claimed again by a redelivery.
        let (again, claim) = written(decide_claim(Some(&taken), "d2", 2_000, HOLD));
        assert_eq!((claim, again.claimed_by.as_str()), (Claim::Root, "d2"));
    }

    #[test]
    fn replies_are_counted_once_and_the_newest_message_is_kept() {
        let root = rooted("d1", 10);
        assert_eq!(root.latest_content, content("d1"));
        let one = reply(&root, "d2", 30);
        assert_eq!((one.replies, one.latest_delivery.as_str()), (1, "d2"));
        assert_eq!(one.latest_content, content("d2"));
        // An older event is counted but is not the newest.
        let two = reply(&one, "d3", 20);
        assert_eq!((two.replies, two.latest_delivery.as_str()), (2, "d2"));
        assert_eq!(two.latest_content, content("d2"));
        // A redelivered reply is not counted again; nor is one to a root
        // since replaced.
        kept(decide_replied(Some(&two), TS, "d2", 30, b"{}"));
        kept(decide_replied(Some(&two), "9.9", "d4", 40, b"{}"));
    }

    #[test]
    fn whichever_delivery_updates_the_root_shows_the_newest_message() {
        let two = reply(&reply(&rooted("d1", 10), "d2", 30), "d3", 20);
        // The older event's delivery takes the turn, and shows d2's message.
        let (turn, taken) = written(decide_update(Some(&two), TS, "d3", 2_000, HOLD));
        assert!(taken);
        assert_eq!(snapshot(&turn), root(2, "d2"));
        assert_eq!(turn.updating_by, "d3");
        assert_eq!(turn.update_expires_unix_millis, 27_000);
        // Nobody else updates meanwhile; the turn's owner sees their change.
        let three = reply(&turn, "d4", 40);
        assert!(!kept(decide_update(Some(&three), TS, "d4", 2_100, HOLD)));
        let (more, goes_on) = written(decide_shown(
            Some(&three),
            TS,
            "d3",
            &root(2, "d2"),
            2_200,
            HOLD,
        ));
        assert!(goes_on);
        assert_eq!(snapshot(&more), root(3, "d4"));
        assert_eq!((more.shown_replies, more.updating_by.as_str()), (2, "d3"));
        // Once the root shows all, the turn ends.
        let (done, goes_on) = written(decide_shown(
            Some(&more),
            TS,
            "d3",
            &root(3, "d4"),
            2_300,
            HOLD,
        ));
        assert!(!goes_on);
        assert!(!owed(&done));
        assert_eq!(done.updating_by, "");
        assert!(!kept(decide_update(Some(&done), TS, "d4", 2_400, HOLD)));
    }

    #[test]
    fn a_turn_lapses_is_let_go_and_is_taken_again_by_its_redelivery() {
        let one = reply(&rooted("d1", 10), "d2", 30);
        let (turn, _) = written(decide_update(Some(&one), TS, "d2", 1_000, HOLD));
        // Taken again by the same delivery (a redelivery) at once.
        let (again, taken) = written(decide_update(Some(&turn), TS, "d2", 1_500, HOLD));
        assert!(taken);
        assert_eq!(snapshot(&again), root(1, "d2"));
        assert_eq!(again.update_expires_unix_millis, 26_500);
        // Another delivery takes it only once it lapsed.
        assert!(!kept(decide_update(Some(&again), TS, "d3", 26_000, HOLD)));
        let (taken, ok) = written(decide_update(Some(&again), TS, "d3", 26_500, HOLD));
        assert_eq!((ok, taken.updating_by.as_str()), (true, "d3"));
        // Let go: free for the next delivery; nothing to let go is no write.
        let (free, ()) = written(decide_let_go(Some(&taken), "d3"));
        assert_eq!(free.updating_by, "");
        kept(decide_let_go(Some(&free), "d3"));
        let (_, ok) = written(decide_update(Some(&free), TS, "d4", 27_000, HOLD));
        assert!(ok);
        // A turn held when nothing is owed is given up.
        let mut idle = free.clone();
        idle.shown_replies = 1;
        idle.shown_delivery = "d2".into();
        idle.updating_by = "d2".into();
        let (given, ok) = written(decide_update(Some(&idle), TS, "d2", 27_000, HOLD));
        assert_eq!((ok, given.updating_by.as_str()), (false, ""));
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
        // A root since replaced has nothing to update.
        assert!(!kept(decide_update(Some(&free), TS, "d3", 2_000, HOLD)));
    }
}
