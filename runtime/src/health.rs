//! Readiness: named checks that services flip as NATS, streams, consumers and
//! the catalog come and go, plus details an operator should see (invalid
//! objects in the catalog).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

/// Shared readiness state; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Readiness {
    inner: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    checks: BTreeMap<String, bool>,
    details: BTreeMap<String, Vec<String>>,
}

/// A snapshot for `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub ready: bool,
    pub checks: BTreeMap<String, bool>,
    pub details: BTreeMap<String, Vec<String>>,
}

// === impl Readiness ===

impl Readiness {
    /// Declares a check that starts as not ready.
    pub fn register(&self, check: &str) {
        self.lock().checks.entry(check.to_owned()).or_insert(false);
    }

    /// Sets a check.
    pub fn set(&self, check: &str, ready: bool) {
        self.lock().checks.insert(check.to_owned(), ready);
    }

    /// Replaces the detail lines of a topic (an empty list removes it).
    pub fn set_details(&self, topic: &str, lines: Vec<String>) {
        let mut state = self.lock();
        if lines.is_empty() {
            state.details.remove(topic);
        } else {
            state.details.insert(topic.to_owned(), lines);
        }
    }

    /// Whether the check `check` is ready (`false` when it is not declared).
    #[must_use]
    pub fn is_set(&self, check: &str) -> bool {
        self.lock().checks.get(check).copied().unwrap_or(false)
    }

    /// Whether every check of `family` (named so, or `family` and a space
    /// and more, as a process's several NATS connections are) is set; false
    /// when there is none.
    #[must_use]
    pub fn all_set(&self, family: &str) -> bool {
        let state = self.lock();
        let mut members = state
            .checks
            .iter()
            .filter(|(name, _)| {
                name.strip_prefix(family)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with(' '))
            })
            .peekable();
        members.peek().is_some() && members.all(|(_, set)| *set)
    }

    /// Ready when every check is; no checks means not ready.
    #[must_use]
    pub fn report(&self) -> Report {
        let state = self.lock();
        Report {
            ready: !state.checks.is_empty() && state.checks.values().all(|ok| *ok),
            checks: state.checks.clone(),
            details: state.details.clone(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

// === impl Report ===

impl Report {
    /// Plain text: one line per check, then the details.
    #[must_use]
    pub fn to_text(&self) -> String {
        let mut out = String::from(if self.ready { "ready\n" } else { "not ready\n" });
        for (check, ok) in &self.checks {
            out.push_str(&format!("[{}] {check}\n", if *ok { "+" } else { "-" }));
        }
        for (topic, lines) in &self.details {
            for line in lines {
                out.push_str(&format!("{topic}: {line}\n"));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_family_of_checks_is_set_when_each_member_is() {
        let r = Readiness::default();
        assert!(!r.all_set("nats"));
        r.set("nats", true);
        r.set("natsy", false);
        assert!(r.all_set("nats"));
        r.register("nats router");
        assert!(!r.all_set("nats"));
        r.set("nats router", true);
        assert!(r.all_set("nats"));
    }

    #[test]
    fn ready_only_when_every_check_is() {
        let r = Readiness::default();
        assert!(!r.report().ready);
        r.register("nats");
        r.register("streams");
        r.set("nats", true);
        assert!(!r.report().ready);
        r.set("streams", true);
        assert!(r.report().ready);
        r.set_details("catalog", vec!["a.yaml: Alert/x/y: bad".into()]);
        assert!(
            r.report()
                .to_text()
                .contains("catalog: a.yaml: Alert/x/y: bad")
        );
        r.set("nats", false);
        assert!(r.report().to_text().starts_with("not ready\n"));
    }
}
