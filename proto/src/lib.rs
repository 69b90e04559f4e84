//! Herald's wire contract: the `herald.v1` protobuf messages that travel on NATS
//! JetStream, the gRPC intake service, and (in [`names`]) every stream, subject,
//! consumer and header name. Nothing else in the workspace spells those names.
//!
//! This crate depends on nothing of Herald's and does no I/O.

#![forbid(unsafe_code)]

pub mod fit;
pub mod names;

/// Generated `herald.v1` types and gRPC service.
pub mod v1 {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    tonic::include_proto!("herald.v1");
}

pub use v1::{
    AppliedStatus, DeadLetter, DedupeWindow, Delivery, Event, GroupDue, NotifiedError, ObjectKey,
    ObjectRecord, ObjectReference, PacedCount, PacingState, RepeatCount, SlackThread, Time,
};

// === impl Time ===

impl Time {
    /// The time `seconds` + `nanos` ns after the Unix epoch, with the legacy
    /// `unix_nanos` field filled in too (saturated) for readers that know
    /// only that one.
    #[must_use]
    pub fn from_parts(seconds: i64, nanos: u32) -> Self {
        let unix_nanos = i128::from(seconds) * 1_000_000_000 + i128::from(nanos);
        Self {
            unix_nanos: i64::try_from(unix_nanos).unwrap_or(if unix_nanos < 0 {
                i64::MIN
            } else {
                i64::MAX
            }),
            seconds,
            nanos: i32::try_from(nanos).unwrap_or(i32::MAX),
        }
    }

    /// The seconds since the Unix epoch and the nanoseconds after them: from
    /// `seconds` and `nanos` when either is set, else from the legacy
    /// `unix_nanos` (a message written before `seconds` existed). `None` when
    /// `nanos` is outside 0 to 999 999 999.
    #[must_use]
    pub fn parts(&self) -> Option<(i64, u32)> {
        if self.seconds == 0 && self.nanos == 0 {
            let seconds = self.unix_nanos.div_euclid(1_000_000_000);
            let nanos = self.unix_nanos.rem_euclid(1_000_000_000);
            return Some((seconds, u32::try_from(nanos).ok()?));
        }
        let nanos = u32::try_from(self.nanos)
            .ok()
            .filter(|n| *n < 1_000_000_000)?;
        Some((self.seconds, nanos))
    }

    /// Nanoseconds since the Unix epoch, saturated to the i64 range (years
    /// 1677 to 2262): enough to order times, not to keep them. 0 when invalid.
    #[must_use]
    pub fn unix_nanos_saturating(&self) -> i64 {
        self.parts().map_or(0, |(seconds, nanos)| {
            let nanos = i128::from(seconds) * 1_000_000_000 + i128::from(nanos);
            i64::try_from(nanos).unwrap_or(if nanos < 0 { i64::MIN } else { i64::MAX })
        })
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    /// The first encoding of `Time`, as messages already on the streams carry it.
    #[derive(Clone, PartialEq, prost::Message)]
    struct LegacyTime {
        #[prost(int64, tag = "1")]
        unix_nanos: i64,
    }

    #[test]
    fn old_messages_still_decode() {
        for unix_nanos in [0, 1_715_058_154_500_000_000, -1, i64::MIN, i64::MAX] {
            let bytes = LegacyTime { unix_nanos }.encode_to_vec();
            let time = Time::decode(bytes.as_slice()).unwrap();
            let (seconds, nanos) = time.parts().unwrap();
            assert_eq!(
                i128::from(seconds) * 1_000_000_000 + i128::from(nanos),
                i128::from(unix_nanos)
            );
        }
    }

    #[test]
    fn new_messages_keep_the_whole_range_and_stay_readable_by_old_readers() {
        let cases = [
            (0, 0),
            (1_715_058_154, 500_000_000),
            (-1, 999_999_999),
            // 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z, beyond i64 nanoseconds.
            (-62_135_596_800, 0),
            (253_402_300_799, 0),
        ];
        for (seconds, nanos) in cases {
            let bytes = Time::from_parts(seconds, nanos).encode_to_vec();
            let time = Time::decode(bytes.as_slice()).unwrap();
            assert_eq!(time.parts(), Some((seconds, nanos)));
            let exact = i128::from(seconds) * 1_000_000_000 + i128::from(nanos);
            let legacy = LegacyTime::decode(bytes.as_slice()).unwrap().unix_nanos;
            assert_eq!(
                i128::from(legacy),
                exact.clamp(i64::MIN.into(), i64::MAX.into())
            );
            assert_eq!(time.unix_nanos_saturating(), legacy);
        }
        let bad = Time {
            seconds: 1,
            nanos: 1_000_000_000,
            ..Time::default()
        };
        assert_eq!(bad.parts(), None);
    }
}
