//! A bounded set of label values, first come first served.

use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};

/// The values that have a label value of their own, up to a limit: later
/// values are refused, and their callers label them `_other`.
#[derive(Debug)]
pub(super) struct Bounded {
    limit: usize,
    named: Mutex<HashSet<String>>,
}

impl Bounded {
    pub(super) fn new(limit: usize) -> Self {
        Self {
            limit,
            named: Mutex::default(),
        }
    }

    /// Whether `value` has (or now gets) a label value of its own.
    pub(super) fn admit(&self, value: &str) -> bool {
        let mut named = self.named.lock().unwrap_or_else(PoisonError::into_inner);
        if named.contains(value) {
            return true;
        }
        if named.len() < self.limit {
            named.insert(value.to_owned());
            return true;
        }
        false
    }

    /// [`Bounded::admit`] for a pair such as a namespace and a name (kept
    /// apart by a `/`, which neither can contain).
    pub(super) fn admit_pair(&self, first: &str, second: &str) -> bool {
        self.admit(&format!("{first}/{second}"))
    }
}
