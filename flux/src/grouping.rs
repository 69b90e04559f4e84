//! Flood control an Alert adds to Flux's rules, as annotations in Herald's
//! domain: grouping (one digest naming every event of a group instead of one
//! message per event), a repeat threshold (an object's event is sent only
//! once it was seen N times within a window) and recovery messages.
//!
//! ```yaml
//! metadata:
//!   annotations:
//!     herald.dev/group-wait: "10s"
//!     herald.dev/group-interval: "1m"
//!     herald.dev/group-by: "cluster, namespace"
//!     herald.dev/repeat-threshold: "3/10m"
//!     herald.dev/recovery: "true"
//! ```
//!
//! Everything here is a function of values: the router and the flusher keep
//! the state (in JetStream) and ask these functions what to do with it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use herald_proto::Event;
use sha2::{Digest as _, Sha256};

/// Turns grouping on: how long a group's first event waits for others.
pub const GROUP_WAIT_ANNOTATION: &str = "herald.dev/group-wait";
/// How long later events of a group gather after a digest.
pub const GROUP_INTERVAL_ANNOTATION: &str = "herald.dev/group-interval";
/// The event fields that split an Alert's events into groups.
pub const GROUP_BY_ANNOTATION: &str = "herald.dev/group-by";
/// `N/window`: an object's event is sent once seen N times within window.
pub const REPEAT_THRESHOLD_ANNOTATION: &str = "herald.dev/repeat-threshold";
/// `"true"`: an object whose error was notified gets a recovery message.
pub const RECOVERY_ANNOTATION: &str = "herald.dev/recovery";

/// Every flood-control annotation, for the lint of unknown ones.
pub const ANNOTATIONS: [&str; 5] = [
    GROUP_WAIT_ANNOTATION,
    GROUP_INTERVAL_ANNOTATION,
    GROUP_BY_ANNOTATION,
    REPEAT_THRESHOLD_ANNOTATION,
    RECOVERY_ANNOTATION,
];

/// `herald.dev/group-interval` when not given.
pub const DEFAULT_GROUP_INTERVAL: Duration = Duration::from_secs(60);

/// The longest `group-wait` or `group-interval`: a group's events wait in
/// JetStream, and a day is already longer than anyone waits for an alert.
const LONGEST: Duration = Duration::from_secs(24 * 3600);

/// A field of the event that splits an Alert's events into groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum GroupField {
    Cluster,
    Namespace,
    Kind,
    Reason,
    Severity,
}

impl GroupField {
    const ALL: [Self; 5] = [
        Self::Cluster,
        Self::Namespace,
        Self::Kind,
        Self::Reason,
        Self::Severity,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Self::Cluster => "cluster",
            Self::Namespace => "namespace",
            Self::Kind => "kind",
            Self::Reason => "reason",
            Self::Severity => "severity",
        }
    }

    fn of(self, event: &Event) -> &str {
        let object = event.involved_object.as_ref();
        match self {
            Self::Cluster => &event.cluster,
            Self::Namespace => object.map_or("", |o| o.namespace.as_str()),
            Self::Kind => object.map_or("", |o| o.kind.as_str()),
            Self::Reason => &event.reason,
            Self::Severity => &event.severity,
        }
    }
}

/// `herald.dev/repeat-threshold`: `count` sightings within `within`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RepeatThreshold {
    pub count: u32,
    pub within: Duration,
}

/// An Alert's flood control; the default sends every event at once, as Flux.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FloodControl {
    /// `Some`: events are grouped, and the first of a group waits this long.
    pub group_wait: Option<Duration>,
    pub group_interval: Duration,
    /// The fields that split the groups (none: one group per Alert).
    pub group_by: Vec<GroupField>,
    pub repeat: Option<RepeatThreshold>,
    pub recovery: bool,
}

impl Default for FloodControl {
    fn default() -> Self {
        Self {
            group_wait: None,
            group_interval: DEFAULT_GROUP_INTERVAL,
            group_by: vec![GroupField::Cluster],
            repeat: None,
            recovery: false,
        }
    }
}

/// What the repeat threshold decides for one sighting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repeat {
    /// Seen often enough: send it (the count starts again).
    Send,
    /// Not yet: keep these sightings (newest last) and hold the event back.
    Hold(Vec<i64>),
}

fn duration(annotation: &str, text: &str, problems: &mut Vec<String>) -> Option<Duration> {
    match crate::duration::parse(text.trim()) {
        Ok(d) if !d.is_zero() && d <= LONGEST => Some(d),
        Ok(_) => {
            problems.push(format!(
                "annotation {annotation} {text:?} must be more than 0 and at most 24h"
            ));
            None
        }
        Err(error) => {
            problems.push(format!(
                "annotation {annotation} {text:?} is not a duration such as \"10s\" or \"1m\": {error}"
            ));
            None
        }
    }
}

fn parse_threshold(text: &str) -> Result<RepeatThreshold, String> {
    let (count, within) = text
        .split_once('/')
        .ok_or_else(|| "it is not N/window".to_owned())?;
    let count: u32 = count
        .trim()
        .parse()
        .map_err(|_| format!("{:?} is not a whole number", count.trim()))?;
    if !(1..=1000).contains(&count) {
        return Err("N must be between 1 and 1000".to_owned());
    }
    let within = crate::duration::parse(within.trim())?;
    if within.is_zero() || within > LONGEST {
        return Err("the window must be more than 0 and at most 24h".to_owned());
    }
    Ok(RepeatThreshold { count, within })
}

// === impl FloodControl ===

impl FloodControl {
    /// The flood control the Alert's `annotations` give, and their problems.
    /// An unusable value is left out (that part of flood control is off):
    /// events are then sent as Flux sends them, never lost.
    #[must_use]
    pub fn from_annotations(annotations: &BTreeMap<String, String>) -> (Self, Vec<String>) {
        let mut flood = Self::default();
        let mut problems = Vec::new();
        let get = |name: &str| annotations.get(name).map(String::as_str);
        if let Some(text) = get(GROUP_WAIT_ANNOTATION) {
            flood.group_wait = duration(GROUP_WAIT_ANNOTATION, text, &mut problems);
        }
        if let Some(text) = get(GROUP_INTERVAL_ANNOTATION)
            && let Some(d) = duration(GROUP_INTERVAL_ANNOTATION, text, &mut problems)
        {
            flood.group_interval = d;
        }
        if let Some(text) = get(GROUP_BY_ANNOTATION) {
            let mut fields = BTreeSet::new();
            let mut unknown = Vec::new();
            for word in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
                if word == "alert" {
                    continue;
                }
                match GroupField::ALL.iter().find(|f| f.as_str() == word) {
                    Some(field) => {
                        fields.insert(*field);
                    }
                    None => unknown.push(word),
                }
            }
            if unknown.is_empty() {
                flood.group_by = fields.into_iter().collect();
            } else {
                problems.push(format!(
                    "annotation {GROUP_BY_ANNOTATION} {text:?} names {}; it takes a comma list of \
                     cluster, namespace, kind, reason, severity (or alert, or nothing, for one \
                     group per Alert); grouping by cluster instead",
                    unknown.join(", ")
                ));
            }
        }
        for name in [GROUP_INTERVAL_ANNOTATION, GROUP_BY_ANNOTATION] {
            if get(name).is_some() && get(GROUP_WAIT_ANNOTATION).is_none() {
                problems.push(format!(
                    "annotation {name} has no effect without {GROUP_WAIT_ANNOTATION}, which turns \
                     grouping on"
                ));
            }
        }
        if let Some(text) = get(REPEAT_THRESHOLD_ANNOTATION) {
            match parse_threshold(text) {
                Ok(threshold) => flood.repeat = Some(threshold),
                Err(error) => problems.push(format!(
                    "annotation {REPEAT_THRESHOLD_ANNOTATION} {text:?} must be N/window such as \
                     \"3/10m\" ({error}); every event is sent"
                )),
            }
        }
        if let Some(text) = get(RECOVERY_ANNOTATION) {
            match text.trim() {
                "true" => flood.recovery = true,
                "false" => {}
                _ => problems.push(format!(
                    "annotation {RECOVERY_ANNOTATION} {text:?} must be \"true\" or \"false\""
                )),
            }
        }
        (flood, problems)
    }

    /// Whether deliveries are grouped.
    #[must_use]
    pub fn groups(&self) -> bool {
        self.group_wait.is_some()
    }

    /// Whether any part of flood control is on.
    #[must_use]
    pub fn is_on(&self) -> bool {
        self.groups() || self.repeat.is_some() || self.recovery
    }

    /// The problem of using grouping or a repeat threshold with a Provider
    /// that writes commit statuses (each status belongs to its own commit:
    /// there is nothing to group, and a held-back status would leave a
    /// commit pending); `None` when there is none.
    #[must_use]
    pub fn commit_status_problem(&self, provider_type: &str) -> Option<String> {
        if !self.is_on() || !writes_commit_status(provider_type) {
            return None;
        }
        Some(format!(
            "the Provider's type {provider_type:?} writes commit statuses, which cannot be grouped, \
             held back or turned into recovery messages ({GROUP_WAIT_ANNOTATION}, \
             {REPEAT_THRESHOLD_ANNOTATION}, {RECOVERY_ANNOTATION}); its events are delivered one \
             by one, as Flux delivers them"
        ))
    }

    /// The group an event falls in: a digest of the Alert (its catalog and
    /// uid), its Provider and the `group-by` fields of the event.
    #[must_use]
    pub fn group_key(&self, alert: &str, provider: &str, event: &Event) -> String {
        let mut hasher = Sha256::new();
        hasher.update(alert.as_bytes());
        hasher.update([0]);
        hasher.update(provider.as_bytes());
        for field in &self.group_by {
            hasher.update([0]);
            hasher.update(field.as_str().as_bytes());
            hasher.update([b'=']);
            hasher.update(field.of(event).as_bytes());
        }
        hex::encode(&hasher.finalize()[..16])
    }

    /// What the repeat threshold decides for a sighting at `now_ms`, given
    /// the earlier ones kept (`seen`); `Send` when there is no threshold.
    #[must_use]
    pub fn repeat(&self, seen: &[i64], now_ms: i64) -> Repeat {
        let Some(threshold) = self.repeat else {
            return Repeat::Send;
        };
        let window = i64::try_from(threshold.within.as_millis()).unwrap_or(i64::MAX);
        let mut kept: Vec<i64> = seen
            .iter()
            .copied()
            .filter(|&t| t > now_ms.saturating_sub(window) && t <= now_ms)
            .collect();
        kept.push(now_ms);
        if kept.len() >= threshold.count as usize {
            Repeat::Send
        } else {
            Repeat::Hold(kept)
        }
    }
}

impl fmt::Display for FloodControl {
    /// The effective flood control, for `herald validate`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(wait) = self.group_wait {
            let by = if self.group_by.is_empty() {
                "alert".to_owned()
            } else {
                self.group_by
                    .iter()
                    .map(|f| f.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            parts.push(format!(
                "grouped by {by}, first digest after {}, then at most one every {}",
                human(wait),
                human(self.group_interval)
            ));
        }
        if let Some(threshold) = self.repeat {
            parts.push(format!(
                "an object's event is sent once seen {} times within {}",
                threshold.count,
                human(threshold.within)
            ));
        }
        if self.recovery {
            parts.push("recovery messages".to_owned());
        }
        if parts.is_empty() {
            parts.push("off (every event is sent at once)".to_owned());
        }
        f.write_str(&parts.join("; "))
    }
}

/// Whether a Provider of `provider_type` writes commit statuses: its
/// deliveries are never grouped nor held back.
#[must_use]
pub fn writes_commit_status(provider_type: &str) -> bool {
    provider_type
        .parse::<crate::provider_type::ProviderType>()
        .is_ok_and(crate::provider_type::ProviderType::is_commit_status)
}

/// A duration as people write it: `1h2m3s`, `10s`, `250ms`.
#[must_use]
pub fn human(duration: Duration) -> String {
    let secs = duration.as_secs();
    if secs == 0 {
        return format!("{}ms", duration.as_millis());
    }
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

/// The message of a recovery: the object's new event, saying how long the
/// error lasted.
#[must_use]
pub fn recovery_message(failed_for: Duration, failed_reason: &str, message: &str) -> String {
    let first = message.lines().next().unwrap_or_default();
    format!(
        "recovered after {} ({failed_reason} before): {first}",
        human(failed_for)
    )
}

// === digests ===

/// The most characters of text one message of a provider type may carry,
/// from the vendors' documented limits less room for the rest of the
/// message; a conservative default for the others.
#[must_use]
pub fn message_limit(provider_type: &str) -> usize {
    match provider_type {
        // Slack: 40,000 characters of message text.
        "slack" => 38_000,
        // Teams: 28 KB per message.
        "msteams" => 20_000,
        // Discord: 2,000 characters of content (4,096 in an embed).
        "discord" => 1_900,
        // Telegram and Google Chat: 4,096 characters.
        "telegram" | "googlechat" => 3_800,
        // Webex: 7,439 bytes.
        "webex" => 7_000,
        // Rocket.Chat, Matrix, Zulip, Lark: 10,000 characters or more.
        "rocket" | "matrix" | "zulip" | "lark" => 9_000,
        // Webhooks and forwarders (the whole event travels as JSON).
        "generic" | "generic-hmac" | "nats" | "googlepubsub" | "azureeventhub" => 100_000,
        _ => 3_500,
    }
}

/// One line naming an event of a digest: object, cluster, reason and the
/// first line of its message.
#[must_use]
pub fn digest_line(event: &Event) -> String {
    let (kind, name, namespace) = event.involved_object.as_ref().map_or(("", "", ""), |o| {
        (o.kind.as_str(), o.name.as_str(), o.namespace.as_str())
    });
    let first = event.message.lines().next().unwrap_or_default();
    let cluster = if event.cluster.is_empty() {
        String::new()
    } else {
        format!(" [{}]", event.cluster)
    };
    format!(
        "{kind}/{name}.{namespace}{cluster} {}: {first}",
        event.reason
    )
}

/// Splits `lines` into messages of at most `limit` characters each (one
/// header line of up to `header_room` characters included). Every line is
/// in exactly one part, in order; a line longer than a whole message is cut
/// (its object and reason come first, so it still names its event).
#[must_use]
pub fn split_lines(lines: Vec<String>, limit: usize, header_room: usize) -> Vec<Vec<String>> {
    let room = limit.saturating_sub(header_room).max(80);
    let mut parts: Vec<Vec<String>> = Vec::new();
    let mut current: Vec<String> = Vec::new();
    let mut used = 0;
    for mut line in lines {
        if line.chars().count() > room {
            line = line
                .chars()
                .take(room.saturating_sub(1))
                .collect::<String>()
                + "…";
        }
        let size = line.chars().count() + 1;
        if used + size > room && !current.is_empty() {
            parts.push(std::mem::take(&mut current));
            used = 0;
        }
        used += size;
        current.push(line);
    }
    if !current.is_empty() {
        parts.push(current);
    }
    parts
}

/// The digests of a group's events for a provider type: one event each,
/// whose message names every event it stands for, one per line. `template`
/// gives what the digests share (involved object, controller, cluster,
/// metadata of the group). Events are named in the order given.
#[must_use]
pub fn digests(events: &[Event], provider_type: &str, template: &Event) -> Vec<Event> {
    const HEADER_ROOM: usize = 120;
    let errors = events.iter().filter(|e| e.severity == "error").count();
    let clusters: BTreeSet<&str> = events
        .iter()
        .map(|e| e.cluster.as_str())
        .filter(|c| !c.is_empty())
        .collect();
    let lines = events.iter().map(digest_line).collect();
    let parts = split_lines(lines, message_limit(provider_type), HEADER_ROOM);
    let count = parts.len();
    let mut clusters_text = clusters.iter().copied().collect::<Vec<_>>().join(", ");
    if clusters_text.len() > 1000 {
        clusters_text = format!("{} clusters", clusters.len());
    }
    parts
        .into_iter()
        .enumerate()
        .map(|(i, lines)| {
            let part = if count > 1 {
                format!(" (part {} of {count})", i + 1)
            } else {
                String::new()
            };
            let header = format!(
                "{} events ({errors} errors) from {} clusters{part}:",
                events.len(),
                clusters.len().max(1)
            );
            let mut event = template.clone();
            event.message = std::iter::once(header)
                .chain(lines.iter().cloned())
                .collect::<Vec<_>>()
                .join("\n");
            event.severity = if errors > 0 { "error" } else { "info" }.to_owned();
            event
                .metadata
                .insert("events".to_owned(), events.len().to_string());
            if !clusters_text.is_empty() {
                event
                    .metadata
                    .insert("clusters".to_owned(), clusters_text.clone());
            }
            if count > 1 {
                event
                    .metadata
                    .insert("part".to_owned(), format!("{} of {count}", i + 1));
            }
            event
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_proto::ObjectReference;

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn event(cluster: &str, name: &str, reason: &str) -> Event {
        Event {
            cluster: cluster.to_owned(),
            reason: reason.to_owned(),
            severity: "error".to_owned(),
            message: format!("{name} failed\nsecond line"),
            involved_object: Some(ObjectReference {
                kind: "Kustomization".to_owned(),
                name: name.to_owned(),
                namespace: "flux-system".to_owned(),
                ..ObjectReference::default()
            }),
            ..Event::default()
        }
    }

    #[test]
    fn annotations_give_the_settings() {
        let (flood, problems) = FloodControl::from_annotations(&annotations(&[
            (GROUP_WAIT_ANNOTATION, "10s"),
            (GROUP_INTERVAL_ANNOTATION, "2m"),
            (GROUP_BY_ANNOTATION, "namespace, cluster"),
            (REPEAT_THRESHOLD_ANNOTATION, "3/10m"),
            (RECOVERY_ANNOTATION, "true"),
        ]));
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(flood.group_wait, Some(Duration::from_secs(10)));
        assert_eq!(flood.group_interval, Duration::from_secs(120));
        assert_eq!(flood.group_by, [GroupField::Cluster, GroupField::Namespace]);
        assert_eq!(
            flood.repeat,
            Some(RepeatThreshold {
                count: 3,
                within: Duration::from_secs(600)
            })
        );
        assert!(flood.recovery);
        assert_eq!(
            flood.to_string(),
            "grouped by cluster, namespace, first digest after 10s, then at most one every 2m; \
             an object's event is sent once seen 3 times within 10m; recovery messages"
        );
        let (alert_wide, _) = FloodControl::from_annotations(&annotations(&[
            (GROUP_WAIT_ANNOTATION, "5s"),
            (GROUP_BY_ANNOTATION, "alert"),
        ]));
        assert!(alert_wide.group_by.is_empty());
        assert_eq!(
            FloodControl::default().to_string(),
            "off (every event is sent at once)"
        );
    }

    #[test]
    fn bad_values_are_problems_and_leave_that_part_off() {
        let (flood, problems) = FloodControl::from_annotations(&annotations(&[
            (GROUP_WAIT_ANNOTATION, "soon"),
            (GROUP_BY_ANNOTATION, "cluster, colour"),
            (REPEAT_THRESHOLD_ANNOTATION, "3"),
            (RECOVERY_ANNOTATION, "yes"),
        ]));
        assert_eq!(flood.group_wait, None);
        assert_eq!(flood.group_by, [GroupField::Cluster]);
        assert_eq!(flood.repeat, None);
        assert!(!flood.recovery);
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems[0].contains("herald.dev/group-wait \"soon\" is not a duration"));
        assert!(problems[1].contains("names colour"));
        assert!(problems[2].contains("must be N/window"));
        assert!(problems[3].contains("herald.dev/recovery \"yes\""));
        let (_, problems) =
            FloodControl::from_annotations(&annotations(&[(GROUP_INTERVAL_ANNOTATION, "1m")]));
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("no effect without herald.dev/group-wait"));
        let (_, problems) =
            FloodControl::from_annotations(&annotations(&[(GROUP_WAIT_ANNOTATION, "0s")]));
        assert!(problems[0].contains("more than 0"));
    }

    #[test]
    fn group_keys_follow_group_by() {
        let (by_cluster, _) =
            FloodControl::from_annotations(&annotations(&[(GROUP_WAIT_ANNOTATION, "1s")]));
        let a = event("eu", "apps", "HealthCheckFailed");
        let b = event("eu", "infra", "BuildFailed");
        let c = event("us", "apps", "HealthCheckFailed");
        let key = |f: &FloodControl, e: &Event| f.group_key("alert-uid", "ns/p", e);
        assert_eq!(key(&by_cluster, &a), key(&by_cluster, &b));
        assert_ne!(key(&by_cluster, &a), key(&by_cluster, &c));
        assert_ne!(
            key(&by_cluster, &a),
            by_cluster.group_key("other-uid", "ns/p", &a)
        );
        let (whole, _) = FloodControl::from_annotations(&annotations(&[
            (GROUP_WAIT_ANNOTATION, "1s"),
            (GROUP_BY_ANNOTATION, ""),
        ]));
        assert_eq!(key(&whole, &a), key(&whole, &c));
        assert_eq!(key(&whole, &a).len(), 32);
    }

    #[test]
    fn the_threshold_sends_the_nth_sighting_within_the_window() {
        let (flood, _) =
            FloodControl::from_annotations(&annotations(&[(REPEAT_THRESHOLD_ANNOTATION, "3/10s")]));
        assert_eq!(flood.repeat(&[], 1_000), Repeat::Hold(vec![1_000]));
        assert_eq!(
            flood.repeat(&[1_000], 2_000),
            Repeat::Hold(vec![1_000, 2_000])
        );
        assert_eq!(flood.repeat(&[1_000, 2_000], 3_000), Repeat::Send);
        // Sightings older than the window no longer count.
        assert_eq!(
            flood.repeat(&[1_000, 2_000], 11_500),
            Repeat::Hold(vec![2_000, 11_500])
        );
        assert_eq!(FloodControl::default().repeat(&[], 0), Repeat::Send);
    }

    #[test]
    fn digests_name_every_event_and_split_at_the_provider_limit() {
        let events: Vec<Event> = (0..1000)
            .map(|i| {
                event(
                    &format!("cluster-{:03}", i % 100),
                    &format!("app-{i:04}"),
                    "HealthCheckFailed",
                )
            })
            .collect();
        let template = Event::default();
        let slack = digests(&events, "slack", &template);
        assert!(slack.len() > 1 && slack.len() <= 5, "{}", slack.len());
        let discord = digests(&events, "discord", &template);
        assert!(discord.len() > slack.len());
        for (provider, parts) in [("slack", &slack), ("discord", &discord)] {
            let limit = message_limit(provider);
            let all: Vec<&str> = parts
                .iter()
                .flat_map(|d| d.message.lines().skip(1))
                .collect();
            assert_eq!(all.len(), 1000, "{provider}");
            for (i, e) in events.iter().enumerate() {
                assert_eq!(all[i], digest_line(e));
            }
            for part in parts.iter() {
                assert!(part.message.chars().count() <= limit, "{provider}");
                assert_eq!(part.metadata["events"], "1000");
                assert_eq!(part.severity, "error");
            }
        }
        assert_eq!(
            digest_line(&events[7]),
            "Kustomization/app-0007.flux-system [cluster-007] HealthCheckFailed: app-0007 failed"
        );
        assert!(
            slack[0]
                .message
                .starts_with("1000 events (1000 errors) from 100 clusters (part 1 of")
        );
        assert_eq!(slack[0].metadata["clusters"], "100 clusters");
        let one = digests(&events[..2], "slack", &template);
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].metadata["clusters"], "cluster-000, cluster-001");
        assert!(!one[0].metadata.contains_key("part"));
    }

    #[test]
    fn long_lines_are_cut_but_still_name_their_event() {
        let parts = split_lines(vec!["x".repeat(5000), "short".to_owned()], 1000, 100);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0][0].chars().count(), 900);
        assert_eq!(parts[1], ["short"]);
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(human(Duration::from_secs(3723)), "1h2m3s");
        assert_eq!(human(Duration::from_secs(60)), "1m");
        assert_eq!(human(Duration::from_millis(250)), "250ms");
        assert_eq!(
            recovery_message(
                Duration::from_secs(90),
                "HealthCheckFailed",
                "Applied revision\nmore"
            ),
            "recovered after 1m30s (HealthCheckFailed before): Applied revision"
        );
    }
}
