//! Making a dead letter fit in one NATS message. A delivery that can never be
//! stored (larger than the server's `max_payload`) or whose dead letter would
//! not fit must still end as a dead letter, never in a retry loop: what is
//! cut is the bulk an operator needs least (the raw payload, the answer
//! excerpt, then the event's message and metadata values), and the letter
//! says what was cut.

use prost::Message as _;

use crate::DeadLetter;

/// The longest answer excerpt and raw payload kept in a shrunk letter.
const KEPT_BYTES: usize = 1024;

/// What [`fit`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fitted {
    /// It fitted as it was.
    AsIs,
    /// It was cut; the text says what, for the reason.
    Shrunk(String),
    /// Even with everything cut it does not fit (`max` is tiny).
    TooLarge,
}

/// Shrinks `letter` until its encoding takes at most `max` bytes, and appends
/// to its reason what was cut.
#[must_use]
pub fn fit(letter: &mut DeadLetter, max: usize) -> Fitted {
    let before = letter.encoded_len();
    if before <= max {
        return Fitted::AsIs;
    }
    let mut cuts = Vec::new();
    if letter.raw_payload.len() > KEPT_BYTES {
        cuts.push(format!(
            "raw payload cut from {} to {KEPT_BYTES} bytes",
            letter.raw_payload.len()
        ));
        letter.raw_payload.truncate(KEPT_BYTES);
    }
    if letter.last_response.len() > KEPT_BYTES {
        truncate_text(&mut letter.last_response, KEPT_BYTES);
    }
    // Room for the note appended to the reason below.
    let target = max.saturating_sub(512);
    if let Some(event) = letter
        .delivery
        .as_mut()
        .and_then(|delivery| delivery.event.as_mut())
    {
        let others = before.saturating_sub(event.encoded_len());
        let room = target.saturating_sub(others);
        if event.encoded_len() > room && !event.message.is_empty() {
            let excess = event.encoded_len() - room;
            let original = event.message.len();
            truncate_text(&mut event.message, original.saturating_sub(excess + 16));
            cuts.push(format!(
                "event message cut from {original} to {} bytes",
                event.message.len()
            ));
        }
        for what in ["metadata", "annotation", "label"] {
            let mut cut = 0;
            while event.encoded_len() > room {
                let map = match what {
                    "metadata" => &mut event.metadata,
                    "annotation" => &mut event.annotations,
                    _ => &mut event.labels,
                };
                // Cut the largest entry's value to a short prefix, or drop it.
                let Some(key) = map
                    .iter()
                    .max_by_key(|(k, v)| k.len() + v.len())
                    .map(|(k, _)| k.clone())
                else {
                    break;
                };
                match map.get_mut(&key) {
                    Some(value) if value.len() > 64 => truncate_text(value, 64),
                    _ => {
                        map.remove(&key);
                    }
                }
                cut += 1;
            }
            if cut > 0 {
                cuts.push(format!("{cut} {what} entries cut"));
            }
        }
    }
    if letter.encoded_len() > target {
        return Fitted::TooLarge;
    }
    let note = format!(
        "shrunk from {before} bytes to fit one NATS message: {}",
        cuts.join(", ")
    );
    letter.reason = format!("{} ({note})", letter.reason);
    Fitted::Shrunk(note)
}

/// Cuts `text` to at most `max` bytes on a character boundary.
fn truncate_text(text: &mut String, max: usize) {
    if text.len() <= max {
        return;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Delivery, Event};

    fn letter(message: usize, metadata: &[(usize, usize)]) -> DeadLetter {
        DeadLetter {
            delivery: Some(Delivery {
                id: "d".into(),
                event: Some(Event {
                    id: "e".into(),
                    message: "é".repeat(message / 2),
                    metadata: metadata
                        .iter()
                        .enumerate()
                        .map(|(i, (k, v))| (format!("{i}{}", "k".repeat(*k)), "v".repeat(*v)))
                        .collect(),
                    ..Event::default()
                }),
                ..Delivery::default()
            }),
            reason: "answered 400".into(),
            last_response: "x".repeat(4096),
            ..DeadLetter::default()
        }
    }

    #[test]
    fn a_letter_that_fits_is_untouched() {
        let mut small = letter(100, &[(5, 5)]);
        let copy = small.clone();
        assert_eq!(fit(&mut small, 1 << 20), Fitted::AsIs);
        assert_eq!(small, copy);
    }

    #[test]
    fn a_large_message_is_cut_and_the_reason_says_so() {
        let mut big = letter(2 << 20, &[(5, 5)]);
        let Fitted::Shrunk(note) = fit(&mut big, 1 << 20) else {
            panic!("shrunk");
        };
        assert!(big.encoded_len() <= 1 << 20);
        assert!(note.contains("event message cut from"), "{note}");
        assert!(
            big.reason.starts_with("answered 400 (shrunk from "),
            "{}",
            big.reason
        );
        let event = big.delivery.unwrap().event.unwrap();
        assert!(event.message.len() > 900_000, "keeps as much as fits");
        assert_eq!(event.metadata.len(), 1);
    }

    #[test]
    fn large_metadata_values_are_cut_next() {
        let mut big = letter(10, &[(5, 600_000), (5, 600_000), (5, 10)]);
        assert!(matches!(fit(&mut big, 1 << 20), Fitted::Shrunk(_)));
        assert!(big.encoded_len() <= 1 << 20);
        let event = big.delivery.unwrap().event.unwrap();
        assert_eq!(event.metadata.len(), 3);
    }

    #[test]
    fn just_over_the_limit_is_cut_just_enough() {
        let mut near = letter(0, &[]);
        near.last_response.clear();
        let base = near.encoded_len();
        near.delivery
            .as_mut()
            .unwrap()
            .event
            .as_mut()
            .unwrap()
            .message = "m".repeat(100_000 - base + 100);
        assert!(near.encoded_len() > 100_000);
        assert!(matches!(fit(&mut near, 100_000), Fitted::Shrunk(_)));
        assert!(near.encoded_len() <= 100_000);
        let kept = near.delivery.unwrap().event.unwrap().message.len();
        assert!(kept > 98_000, "{kept}");
    }

    #[test]
    fn raw_payloads_are_cut() {
        let mut raw = DeadLetter {
            raw_payload: vec![0; 3 << 20],
            reason: "cannot decode".into(),
            ..DeadLetter::default()
        };
        assert!(matches!(fit(&mut raw, 1 << 20), Fitted::Shrunk(_)));
        assert_eq!(raw.raw_payload.len(), KEPT_BYTES);
    }
}
