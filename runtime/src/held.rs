//! The stream sequences a consuming process holds, and those it finished a
//! moment ago. A consumer leader elected after a node loss redelivers what
//! its predecessor handed out and saw no ack for, while the process that got
//! it may still be working on it, or acking it: such a copy is recognised
//! here and not handled a second time.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

/// How long a finished sequence is remembered.
const FINISHED_FOR: Duration = Duration::from_secs(10);

/// At most this many finished sequences are remembered (the oldest go first).
const FINISHED_MAX: usize = 65_536;

/// What an arriving message is to this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Not held: handle it (it is held from now on).
    New,
    /// A copy of a message in hand: the one in hand finishes it.
    InHand,
    /// A copy of a message finished a moment ago: ack it, nothing more.
    Finished,
}

/// Held and just-finished stream sequences.
#[derive(Debug, Default)]
pub struct Held {
    in_hand: HashSet<u64>,
    finished: HashSet<u64>,
    finished_order: VecDeque<(Instant, u64)>,
}

// === impl Held ===

impl Held {
    /// Classifies a message with stream sequence `sequence`; holds it when
    /// it is new. (A copy may come with a delivery count of 1: a leader
    /// that never learnt of the first delivery hands it out as new.)
    pub fn arrive(&mut self, sequence: u64) -> Arrival {
        if self.in_hand.contains(&sequence) {
            return Arrival::InHand;
        }
        if self.finished.contains(&sequence) {
            return Arrival::Finished;
        }
        self.in_hand.insert(sequence);
        Arrival::New
    }

    /// The message with `sequence` is out of hand: `finished` for good
    /// (acked), or put back to be handed out again.
    pub fn release(&mut self, sequence: u64, finished: bool) {
        self.in_hand.remove(&sequence);
        let now = Instant::now();
        while let Some(&(at, oldest)) = self.finished_order.front() {
            if now.duration_since(at) < FINISHED_FOR && self.finished_order.len() < FINISHED_MAX {
                break;
            }
            self.finished_order.pop_front();
            self.finished.remove(&oldest);
        }
        if finished && self.finished.insert(sequence) {
            self.finished_order.push_back((now, sequence));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Arrival, Held};

    #[test]
    fn copies_of_held_and_finished_messages_are_recognised() {
        let mut held = Held::default();
        assert_eq!(held.arrive(1), Arrival::New);
        assert_eq!(held.arrive(1), Arrival::InHand);
        held.release(1, true);
        assert_eq!(held.arrive(1), Arrival::Finished);
        // A message put back comes again, to be handled again.
        assert_eq!(held.arrive(2), Arrival::New);
        held.release(2, false);
        assert_eq!(held.arrive(2), Arrival::New);
    }

    #[tokio::test(start_paused = true)]
    async fn finished_sequences_are_forgotten_after_a_while() {
        let mut held = Held::default();
        assert_eq!(held.arrive(1), Arrival::New);
        held.release(1, true);
        tokio::time::advance(super::FINISHED_FOR).await;
        assert_eq!(held.arrive(2), Arrival::New);
        held.release(2, true);
        assert_eq!(held.arrive(1), Arrival::New);
        assert_eq!(held.arrive(2), Arrival::Finished);
    }
}
