//! The Flux notification model, as the notification-controller defines it:
//! the event that Flux controllers POST, the `Alert`, `Provider` and `Secret`
//! objects users write, the three metadata stages, Alert matching, the
//! per-provider dispatch gating and Flux's dedupe key.
//!
//! Pure: no tokio, no network, no file system. Everything here is a function of
//! its inputs, so it is tested with tables and properties.

#![forbid(unsafe_code)]

pub mod clusters;
pub mod convert;
pub mod dedupe;
pub mod duration;
pub mod event;
pub mod filters;
pub mod git;
pub mod gojson;
pub mod gotime;
pub mod grouping;
pub mod lint;
pub mod matching;
pub mod metadata;
pub mod objects;
pub mod provider_type;
pub mod suggest;
pub mod template;
pub mod threads;

pub use event::{DecodeError, FluxEvent, InvolvedObject};
pub use gotime::GoTime;
pub use matching::{AlertIndex, AlertOptions, CompiledAlert};
pub use objects::{Alert, Object, ParseError, Provider, Secret};
pub use provider_type::{Category, ProviderType};
