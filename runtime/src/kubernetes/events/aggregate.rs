//! The pure part of [`ObjectEvents`](super::ObjectEvents): which
//! occurrences create an Event, add to one or are dropped, and which series
//! patches are due, as a function of the occurrences and the time. No IO.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::jiff::Timestamp;
use tokio::time::Instant;

use super::{EventSettings, EventType};

/// Which object an Event is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum ObjectKey {
    Uid(String),
    Named {
        kind: String,
        namespace: String,
        name: String,
    },
}

/// What makes two occurrences the same Event.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct EventKey {
    pub(super) object: ObjectKey,
    pub(super) type_: EventType,
    pub(super) reason: String,
    pub(super) action: String,
    pub(super) note: String,
}

// === impl ObjectKey ===

impl ObjectKey {
    pub(super) fn describe(regarding: &ObjectReference) -> String {
        format!(
            "{}/{}/{}",
            regarding.kind.as_deref().unwrap_or_default(),
            regarding.namespace.as_deref().unwrap_or_default(),
            regarding.name.as_deref().unwrap_or_default()
        )
    }
}

/// What an occurrence comes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Decision {
    /// A new key: create its Event now.
    Create,
    /// A known key: counted, for the next series patch.
    Counted,
    /// Past the object's rate limit.
    Dropped,
}

/// A series patch that is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Due {
    pub(super) key: EventKey,
    pub(super) name: String,
    pub(super) namespace: String,
    pub(super) count: i32,
    pub(super) last_observed: Timestamp,
}

/// An object that had new Events dropped, to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct DropReport {
    pub(super) object: String,
    pub(super) dropped: u64,
    /// Whether this is the first report of the episode (which ends when the
    /// object's bucket is full again).
    pub(super) first: bool,
}

/// One key's Event.
#[derive(Debug)]
struct Entry {
    /// The Event's name and namespace, once created.
    created: Option<(String, String)>,
    /// Occurrences since the Event was created, that one included.
    count: i32,
    /// The count last written.
    written: i32,
    last_seen: Instant,
    last_observed: Timestamp,
    last_written: Instant,
}

/// One object's token bucket for new Events.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
    /// `kind/namespace/name`, for the log.
    object: String,
    /// Dropped and not yet logged.
    dropped: u64,
    /// Whether this episode of drops was logged already.
    warned: bool,
}

/// The pure part: which occurrences create, count or drop, and which series
/// patches are due, given the time. It does no IO.
#[derive(Debug)]
pub(super) struct Aggregator {
    flush_interval: Duration,
    forget_after: Duration,
    burst: f64,
    refill: Duration,
    entries: HashMap<EventKey, Entry>,
    buckets: HashMap<ObjectKey, Bucket>,
}

// === impl Bucket ===

impl Bucket {
    fn refill(&mut self, now: Instant, burst: f64, refill: Duration) {
        let elapsed = now.saturating_duration_since(self.updated);
        if !refill.is_zero() {
            self.tokens = (self.tokens + elapsed.as_secs_f64() / refill.as_secs_f64()).min(burst);
        } else {
            self.tokens = burst;
        }
        self.updated = now;
    }
}

// === impl Aggregator ===

impl Aggregator {
    pub(super) fn new(settings: &EventSettings) -> Self {
        Self {
            flush_interval: settings.flush_interval,
            forget_after: settings.forget_after,
            burst: f64::from(settings.burst),
            refill: settings.refill,
            entries: HashMap::new(),
            buckets: HashMap::new(),
        }
    }

    /// Counts one occurrence of `key` at `now`.
    pub(super) fn observe(
        &mut self,
        key: &EventKey,
        regarding: &ObjectReference,
        now: Instant,
        at: Timestamp,
    ) -> Decision {
        if let Some(entry) = self.entries.get_mut(key) {
            if now.saturating_duration_since(entry.last_seen) < self.forget_after {
                entry.count = entry.count.saturating_add(1);
                entry.last_seen = now;
                entry.last_observed = at;
                return Decision::Counted;
            }
            self.entries.remove(key);
        }
        let burst = self.burst;
        let bucket = self
            .buckets
            .entry(key.object.clone())
            .or_insert_with(|| Bucket {
                tokens: burst,
                updated: now,
                object: ObjectKey::describe(regarding),
                dropped: 0,
                warned: false,
            });
        bucket.refill(now, burst, self.refill);
        if bucket.tokens < 1.0 {
            bucket.dropped += 1;
            return Decision::Dropped;
        }
        bucket.tokens -= 1.0;
        self.entries.insert(
            key.clone(),
            Entry {
                created: None,
                count: 1,
                written: 1,
                last_seen: now,
                last_observed: at,
                last_written: now,
            },
        );
        Decision::Create
    }

    /// The Event of `key` was created as `name` in `namespace`.
    pub(super) fn created(
        &mut self,
        key: &EventKey,
        name: String,
        namespace: String,
        now: Instant,
    ) {
        if let Some(entry) = self.entries.get_mut(key) {
            entry.created = Some((name, namespace));
            entry.last_written = now;
        }
    }

    /// The Event of `key` could not be written, or is gone: its next
    /// occurrence creates a new one (within the object's rate limit).
    pub(super) fn forget(&mut self, key: &EventKey) {
        self.entries.remove(key);
    }

    /// The series patches due at `now`; all pending ones when `all`.
    pub(super) fn due(&self, now: Instant, all: bool) -> Vec<Due> {
        self.entries
            .iter()
            .filter(|(_, e)| {
                e.count > e.written
                    && (all || now.saturating_duration_since(e.last_written) >= self.flush_interval)
            })
            .filter_map(|(key, e)| {
                let (name, namespace) = e.created.clone()?;
                Some(Due {
                    key: key.clone(),
                    name,
                    namespace,
                    count: e.count,
                    last_observed: e.last_observed,
                })
            })
            .collect()
    }

    /// A series patch of `key` up to `count` was attempted at `now`; failed
    /// or not, it is not attempted again until the key occurs again.
    pub(super) fn written(&mut self, key: &EventKey, count: i32, now: Instant) {
        if let Some(entry) = self.entries.get_mut(key) {
            entry.written = entry.written.max(count);
            entry.last_written = now;
        }
    }

    /// Forgets keys not seen for `forget_after` and full buckets, and
    /// reports the objects that had new Events dropped.
    pub(super) fn prune(&mut self, now: Instant) -> Vec<DropReport> {
        let forget_after = self.forget_after;
        self.entries
            .retain(|_, e| now.saturating_duration_since(e.last_seen) < forget_after);
        let (burst, refill) = (self.burst, self.refill);
        let mut reports = Vec::new();
        self.buckets.retain(|_, bucket| {
            bucket.refill(now, burst, refill);
            let full = bucket.tokens >= burst;
            if bucket.dropped > 0 && (!bucket.warned || full) {
                reports.push(DropReport {
                    object: bucket.object.clone(),
                    dropped: bucket.dropped,
                    first: !bucket.warned,
                });
                bucket.dropped = 0;
                bucket.warned = true;
            }
            !full
        });
        reports
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> EventSettings {
        EventSettings {
            flush_interval: Duration::from_secs(10),
            forget_after: Duration::from_secs(60),
            burst: 2,
            refill: Duration::from_secs(30),
            ..EventSettings::default()
        }
    }

    fn alert(name: &str) -> ObjectReference {
        ObjectReference {
            kind: Some("Alert".to_owned()),
            namespace: Some("flux-system".to_owned()),
            name: Some(name.to_owned()),
            ..ObjectReference::default()
        }
    }

    fn key(object: &str, note: &str) -> EventKey {
        EventKey {
            object: ObjectKey::Named {
                kind: "Alert".to_owned(),
                namespace: "flux-system".to_owned(),
                name: object.to_owned(),
            },
            type_: EventType::Warning,
            reason: "DeliveryFailed".to_owned(),
            action: "Deliver".to_owned(),
            note: note.to_owned(),
        }
    }

    #[test]
    fn repeats_are_counted_and_patched_once_per_interval() {
        let mut agg = Aggregator::new(&settings());
        let (t0, at) = (Instant::now(), Timestamp::now());
        let k = key("a", "x");
        assert_eq!(agg.observe(&k, &alert("a"), t0, at), Decision::Create);
        agg.created(&k, "a.1".to_owned(), "flux-system".to_owned(), t0);
        for _ in 0..999 {
            assert_eq!(agg.observe(&k, &alert("a"), t0, at), Decision::Counted);
        }
        assert!(agg.due(t0 + Duration::from_secs(5), false).is_empty());
        let due = agg.due(t0 + Duration::from_secs(10), false);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].count, 1000);
        assert_eq!(due[0].name, "a.1");
        agg.written(&k, 1000, t0 + Duration::from_secs(10));
        assert!(agg.due(t0 + Duration::from_secs(30), false).is_empty());
    }

    #[test]
    fn unwritten_creates_are_never_due() {
        let mut agg = Aggregator::new(&settings());
        let t0 = Instant::now();
        let k = key("a", "x");
        agg.observe(&k, &alert("a"), t0, Timestamp::now());
        agg.observe(&k, &alert("a"), t0, Timestamp::now());
        assert!(agg.due(t0 + Duration::from_secs(60), true).is_empty());
    }

    #[test]
    fn new_keys_are_limited_per_object_and_refill() {
        let mut agg = Aggregator::new(&settings());
        let t0 = Instant::now();
        let at = Timestamp::now();
        let observe = |agg: &mut Aggregator, note: &str, object: &str, t: Instant| {
            agg.observe(&key(object, note), &alert(object), t, at)
        };
        assert_eq!(observe(&mut agg, "1", "a", t0), Decision::Create);
        assert_eq!(observe(&mut agg, "2", "a", t0), Decision::Create);
        assert_eq!(observe(&mut agg, "3", "a", t0), Decision::Dropped);
        assert_eq!(observe(&mut agg, "1", "a", t0), Decision::Counted);
        assert_eq!(
            observe(&mut agg, "1", "b", t0),
            Decision::Create,
            "per object"
        );

        let reports = agg.prune(t0 + Duration::from_secs(1));
        assert_eq!(
            reports,
            [DropReport {
                object: "Alert/flux-system/a".to_owned(),
                dropped: 1,
                first: true
            }]
        );
        assert_eq!(
            observe(&mut agg, "4", "a", t0 + Duration::from_secs(2)),
            Decision::Dropped
        );
        assert!(
            agg.prune(t0 + Duration::from_secs(3)).is_empty(),
            "logged once"
        );
        assert_eq!(
            observe(&mut agg, "5", "a", t0 + Duration::from_secs(31)),
            Decision::Create,
            "one more per refill"
        );
        let reports = agg.prune(t0 + Duration::from_secs(120));
        assert_eq!(reports.len(), 1, "{reports:?}");
        assert!(!reports[0].first);
        assert_eq!(reports[0].dropped, 1);
    }

    #[test]
    fn keys_are_forgotten_after_a_quiet_spell() {
        let mut agg = Aggregator::new(&settings());
        let t0 = Instant::now();
        let k = key("a", "x");
        assert_eq!(
            agg.observe(&k, &alert("a"), t0, Timestamp::now()),
            Decision::Create
        );
        let later = t0 + Duration::from_secs(61);
        assert_eq!(
            agg.observe(&k, &alert("a"), later, Timestamp::now()),
            Decision::Create
        );
        agg.prune(later + Duration::from_secs(61));
        assert!(agg.entries.is_empty());
    }
}
