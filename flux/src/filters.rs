//! Structured filters an Alert adds to Flux's rules, as annotations in
//! Herald's domain (the Alert CRD stays Flux's): which event `reason`s it
//! hears (notification-controller#1359) and which it drops, and a set of
//! severities instead of Flux's threshold (`eventSeverity: info` hears
//! everything, `error` only errors; `herald.dev/severities: info` hears only
//! the recoveries).
//!
//! ```yaml
//! metadata:
//!   annotations:
//!     herald.dev/reasons: "HealthCheckFailed, *Failed"
//!     herald.dev/exclude-reasons: "DependencyNotReady"
//!     herald.dev/severities: "error"
//! ```
//!
//! Reasons are Flux's CamelCase words, compared exactly; `*` stands for
//! any run of characters. An event passes when its reason matches one of
//! `reasons` (when given), none of `exclude-reasons`, and its severity is in
//! `severities` (when given); Flux's own rules apply first.

use std::collections::BTreeMap;

use herald_proto::Event;

use crate::clusters::glob_matches;

/// The reasons an Alert hears (comma-separated, `*` globs).
pub const REASONS_ANNOTATION: &str = "herald.dev/reasons";
/// The reasons an Alert drops (comma-separated, `*` globs).
pub const EXCLUDE_REASONS_ANNOTATION: &str = "herald.dev/exclude-reasons";
/// The severities an Alert hears (comma-separated: `info`, `error`, `trace`).
pub const SEVERITIES_ANNOTATION: &str = "herald.dev/severities";

/// The severities Flux events carry.
const SEVERITIES: [&str; 3] = ["info", "error", "trace"];

/// An Alert's structured filters; empty lets every event through.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    reasons: Vec<String>,
    exclude_reasons: Vec<String>,
    severities: Vec<String>,
    /// An annotation that cannot be used: the Alert hears nothing.
    broken: bool,
}

/// Why a filter drops an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// The reason matches none of `herald.dev/reasons`.
    ReasonNotListed,
    /// The reason matches `herald.dev/exclude-reasons`.
    ReasonExcluded,
    /// The severity is not in `herald.dev/severities`.
    Severity,
    /// An annotation is invalid.
    Broken,
}

impl Dropped {
    /// In words, for `route --dry-run`.
    #[must_use]
    pub fn describe(self) -> &'static str {
        match self {
            Self::ReasonNotListed => "the event's reason is not in herald.dev/reasons",
            Self::ReasonExcluded => "the event's reason is in herald.dev/exclude-reasons",
            Self::Severity => "the event's severity is not in herald.dev/severities",
            Self::Broken => "a herald.dev filter annotation is invalid",
        }
    }
}

fn list(text: &str) -> Vec<String> {
    text.split(',')
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty())
        .collect()
}

// === impl EventFilter ===

impl EventFilter {
    /// The filters the Alert's `annotations` give, and their problems (an
    /// annotation that cannot be used makes the Alert hear nothing, rather
    /// than everything).
    #[must_use]
    pub fn from_annotations(annotations: &BTreeMap<String, String>) -> (Self, Vec<String>) {
        let mut filter = Self::default();
        let mut problems = Vec::new();
        for (annotation, into) in [
            (REASONS_ANNOTATION, &mut filter.reasons),
            (EXCLUDE_REASONS_ANNOTATION, &mut filter.exclude_reasons),
        ] {
            if let Some(text) = annotations.get(annotation) {
                *into = list(text);
                if into.is_empty() {
                    filter.broken = true;
                    problems.push(format!(
                        "annotation {annotation} lists no reason; the Alert hears no event"
                    ));
                }
            }
        }
        if let Some(text) = annotations.get(SEVERITIES_ANNOTATION) {
            filter.severities = list(text);
            let unknown: Vec<&str> = filter
                .severities
                .iter()
                .map(String::as_str)
                .filter(|s| !SEVERITIES.contains(s))
                .collect();
            if filter.severities.is_empty() || !unknown.is_empty() {
                filter.broken = true;
                problems.push(format!(
                    "annotation {SEVERITIES_ANNOTATION} must list severities among {} (got {text:?}); the Alert hears no event",
                    SEVERITIES.join(", ")
                ));
            }
        }
        (filter, problems)
    }

    /// Whether the filter lets every event through.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Why `event` is dropped, or `None` when it passes.
    #[must_use]
    pub fn drops(&self, event: &Event) -> Option<Dropped> {
        if self.broken {
            return Some(Dropped::Broken);
        }
        if !self.severities.is_empty() && !self.severities.contains(&event.severity) {
            return Some(Dropped::Severity);
        }
        if !self.reasons.is_empty() && !self.reasons.iter().any(|p| glob_matches(p, &event.reason))
        {
            return Some(Dropped::ReasonNotListed);
        }
        if self
            .exclude_reasons
            .iter()
            .any(|p| glob_matches(p, &event.reason))
        {
            return Some(Dropped::ReasonExcluded);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(severity: &str, reason: &str) -> Event {
        Event {
            severity: severity.to_owned(),
            reason: reason.to_owned(),
            ..Event::default()
        }
    }

    fn filter(pairs: &[(&str, &str)]) -> (EventFilter, Vec<String>) {
        let annotations = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        EventFilter::from_annotations(&annotations)
    }

    #[test]
    fn reasons_are_heard_dropped_and_globbed() {
        let (f, problems) = filter(&[
            (REASONS_ANNOTATION, "HealthCheckFailed, *Failed"),
            (
                EXCLUDE_REASONS_ANNOTATION,
                "DependencyNotReady, ArtifactFailed",
            ),
        ]);
        assert!(problems.is_empty());
        assert_eq!(f.drops(&event("error", "HealthCheckFailed")), None);
        assert_eq!(f.drops(&event("error", "BuildFailed")), None);
        assert_eq!(
            f.drops(&event("error", "ArtifactFailed")),
            Some(Dropped::ReasonExcluded)
        );
        assert_eq!(
            f.drops(&event("info", "ReconciliationSucceeded")),
            Some(Dropped::ReasonNotListed)
        );
        assert!(EventFilter::default().drops(&event("info", "x")).is_none());
    }

    #[test]
    fn severities_are_a_set_and_bad_annotations_hear_nothing() {
        let (f, _) = filter(&[(SEVERITIES_ANNOTATION, "info")]);
        assert_eq!(f.drops(&event("info", "ReconciliationSucceeded")), None);
        assert_eq!(
            f.drops(&event("error", "BuildFailed")),
            Some(Dropped::Severity)
        );
        let (bad, problems) = filter(&[(SEVERITIES_ANNOTATION, "warning")]);
        assert_eq!(bad.drops(&event("info", "x")), Some(Dropped::Broken));
        assert!(problems[0].contains("must list severities among info, error, trace"));
        let (empty, problems) = filter(&[(REASONS_ANNOTATION, " , ")]);
        assert_eq!(empty.drops(&event("info", "x")), Some(Dropped::Broken));
        assert!(problems[0].contains("lists no reason"));
    }
}
