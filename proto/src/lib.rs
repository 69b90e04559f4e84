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
    AppliedStatus, DeadLetter, DedupeWindow, Delivery, Event, ObjectKey, ObjectReference,
    PacedCount, PacingState, Time,
};

// === impl Time ===

impl Time {
    /// A time from nanoseconds since the Unix epoch.
    #[must_use]
    pub fn from_unix_nanos(unix_nanos: i64) -> Self {
        Self { unix_nanos }
    }
}
