//! Every NATS name Herald uses: streams, subjects, consumers and headers.
//!
//! Subject tokens built from user-controlled names (clusters, Kubernetes
//! namespaces and names, which may contain `.`) go through [`escape_token`], so
//! a subject always has the number of tokens its pattern says.

/// The replayable log of every accepted Flux event.
pub const EVENTS_STREAM: &str = "HERALD_EVENTS";
/// Subjects of [`EVENTS_STREAM`]: `herald.events.<cluster>`.
pub const EVENTS_SUBJECTS: &str = "herald.events.>";
/// What every edge's event subject starts with.
pub const EDGE_SUBJECTS_PREFIX: &str = "herald.edge.";

/// Subjects of [`EVENTS_STREAM`] at an edge whose JetStream domain is
/// `domain`: `herald.edge.<domain>.events.<cluster>`. Each edge has its own
/// subjects, apart from the hub's: a leaf node shares subject interest with
/// its hub, so a stream at one end listening on subjects a stream at the
/// other end also listens on would store the other's messages too.
#[must_use]
pub fn edge_events_subjects(domain: &str) -> String {
    format!("{EDGE_SUBJECTS_PREFIX}{domain}.events.>")
}

/// The subject an event from `cluster` is stored on at the edge whose
/// JetStream domain is `domain` (see [`edge_events_subjects`]).
#[must_use]
pub fn edge_event_subject(domain: &str, cluster: &str) -> String {
    format!(
        "{EDGE_SUBJECTS_PREFIX}{domain}.events.{}",
        escape_token(cluster)
    )
}

/// What the hub's [`EVENTS_STREAM`] takes from the edge whose JetStream
/// domain is `domain`: its events, one token naming a cluster after the
/// prefix. A subject transform gives each the cluster the hub assigned the
/// edge (`herald.events.<that cluster>`).
#[must_use]
pub fn edge_events_filter(domain: &str) -> String {
    format!("{EDGE_SUBJECTS_PREFIX}{domain}.events.*")
}

/// The cluster an event stored on `subject` comes from, as the stream of
/// the JetStream domain `domain` (`None`: the hub's) stores it: the last
/// token of `herald.events.<cluster>`, or at an edge of
/// `herald.edge.<domain>.events.<cluster>`, unescaped; `None` for any other
/// subject (another edge's among them).
#[must_use]
pub fn cluster_of_subject(subject: &str, domain: Option<&str>) -> Option<String> {
    let tokens: Vec<&str> = subject.split('.').collect();
    let token = match (tokens.as_slice(), domain) {
        (["herald", "events", token], _) => token,
        (["herald", "edge", of, "events", token], Some(domain)) if *of == domain => token,
        _ => return None,
    };
    unescape_token(token)
}

/// The work queue of deliveries, one subject per provider.
pub const DELIVERIES_STREAM: &str = "HERALD_DELIVERIES";
/// Subjects of [`DELIVERIES_STREAM`]: `herald.deliveries.<type>.<namespace>.<name>`.
pub const DELIVERIES_SUBJECTS: &str = "herald.deliveries.>";
/// Deliveries that failed for good, kept for inspection and replay.
pub const DEAD_STREAM: &str = "HERALD_DEAD";
/// Subjects of [`DEAD_STREAM`]: `herald.dead.<type>.<namespace>.<name>`.
pub const DEAD_SUBJECTS: &str = "herald.dead.>";

/// The key-value bucket of Flux dedupe windows, keyed by [`dedupe_entry`].
pub const DEDUPE_BUCKET: &str = "HERALD_DEDUPE";

/// The HERALD_DEDUPE key of a Flux dedupe key seen from `cluster`:
/// `<cluster token>.<key>`. Each cluster has its own windows, as each
/// cluster's notification-controller has its own; entries written before
/// keys carried the cluster are the bare `<key>`.
#[must_use]
pub fn dedupe_entry(cluster: &str, key: &str) -> String {
    format!("{}.{key}", escape_token(cluster))
}

/// The key-value bucket of pacing state, keyed by destination id.
pub const PACING_BUCKET: &str = "HERALD_PACING";

/// The key-value bucket of the newest applied commit status per (repository,
/// commit, identifier).
pub const COMMIT_STATUS_BUCKET: &str = "HERALD_COMMIT_STATUS";

/// The key-value bucket of Slack thread roots (`herald.dev/slack-thread`),
/// keyed by a digest of the thread (`t.<hex>`).
pub const THREADS_BUCKET: &str = "HERALD_THREADS";

/// The key-value bucket of what Herald knows of each Alert and Provider from
/// its deliveries, keyed by [`object_entry`].
pub const OBJECTS_BUCKET: &str = "HERALD_OBJECTS";

/// The HERALD_OBJECTS key of an object: `<Kind>.<namespace>.<name>`, each an
/// escaped token.
#[must_use]
pub fn object_entry(kind: &str, namespace: &str, name: &str) -> String {
    format!(
        "{}.{}.{}",
        escape_token(kind),
        escape_token(namespace),
        escape_token(name)
    )
}

/// Deliveries of Alerts that group (herald.dev/group-wait), gathered until
/// their group's digest is due.
pub const GROUPS_STREAM: &str = "HERALD_GROUPS";
/// Subjects of [`GROUPS_STREAM`]: `herald.groups.<group digest>`.
pub const GROUPS_SUBJECTS: &str = "herald.groups.>";

/// The subject the deliveries of the group whose digest (hex) is `group`
/// gather on.
#[must_use]
pub fn group_subject(group: &str) -> String {
    format!("herald.groups.{}", escape_token(group))
}

/// The group digest of a [`GROUPS_STREAM`] subject.
#[must_use]
pub fn group_of_subject(subject: &str) -> Option<String> {
    subject
        .strip_prefix("herald.groups.")
        .and_then(unescape_token)
}

/// The key-value bucket of when each group's digest is due, keyed by the
/// group digest.
pub const GROUP_DUE_BUCKET: &str = "HERALD_GROUP_DUE";
/// The key-value bucket of herald.dev/repeat-threshold counts, one per
/// (Alert, object, reason).
pub const REPEATS_BUCKET: &str = "HERALD_REPEATS";
/// The key-value bucket of objects whose error was notified to an Alert
/// with herald.dev/recovery.
pub const RECOVERY_BUCKET: &str = "HERALD_RECOVERY";

/// The router's durable pull consumer on [`EVENTS_STREAM`].
pub const ROUTER_CONSUMER: &str = "herald-router";
/// The senders' durable pull consumer on [`DELIVERIES_STREAM`].
pub const SENDER_CONSUMER: &str = "herald-sender";

/// JetStream's de-duplication header.
pub const MSG_ID_HEADER: &str = "Nats-Msg-Id";
/// The Herald event id, on every message that carries an event.
pub const EVENT_ID_HEADER: &str = "Herald-Event-Id";
/// Why a delivery is dead, on [`DEAD_STREAM`] messages.
pub const DEAD_REASON_HEADER: &str = "Herald-Dead-Reason";
/// How many events a digest delivery names.
pub const GROUP_EVENTS_HEADER: &str = "Herald-Group-Events";
/// W3C trace context.
pub const TRACEPARENT_HEADER: &str = "traceparent";
/// W3C trace state.
pub const TRACESTATE_HEADER: &str = "tracestate";

/// The subject an event from `cluster` is stored on.
#[must_use]
pub fn event_subject(cluster: &str) -> String {
    format!("herald.events.{}", escape_token(cluster))
}

/// The subject a delivery for provider `namespace/name` of type `provider_type` travels on.
#[must_use]
pub fn delivery_subject(provider_type: &str, namespace: &str, name: &str) -> String {
    format!(
        "herald.deliveries.{}.{}.{}",
        escape_token(provider_type),
        escape_token(namespace),
        escape_token(name)
    )
}

/// The subject a dead letter for provider `namespace/name` is kept on.
#[must_use]
pub fn dead_subject(provider_type: &str, namespace: &str, name: &str) -> String {
    format!(
        "herald.dead.{}.{}.{}",
        escape_token(provider_type),
        escape_token(namespace),
        escape_token(name)
    )
}

/// The dead-letter subject for a delivery subject (`herald.deliveries.X` → `herald.dead.X`).
#[must_use]
pub fn dead_subject_for(delivery_subject: &str) -> String {
    match delivery_subject.strip_prefix("herald.deliveries.") {
        Some(rest) => format!("herald.dead.{rest}"),
        None => format!("herald.dead.unknown.{}", escape_token(delivery_subject)),
    }
}

/// Makes `raw` a single valid NATS subject token, reversibly.
///
/// ASCII letters, digits and `-` stay as they are; every other byte becomes
/// `_` and two upper-case hex digits (so `.` → `_2E`, `_` → `_5F`). The empty
/// string becomes `_`, which no other input produces.
#[must_use]
pub fn escape_token(raw: &str) -> String {
    if raw.is_empty() {
        return "_".to_owned();
    }
    let mut out = String::with_capacity(raw.len());
    for byte in raw.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'-' {
            out.push(byte as char);
        } else {
            out.push_str(&format!("_{byte:02X}"));
        }
    }
    out
}

/// Reverses [`escape_token`]; `None` when `token` is not an escaped token.
#[must_use]
pub fn unescape_token(token: &str) -> Option<String> {
    if token == "_" {
        return Some(String::new());
    }
    let bytes = token.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'_' {
            let hex = token.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid_token(token: &str) -> bool {
        !token.is_empty()
            && token
                .chars()
                .all(|c| !c.is_whitespace() && c != '.' && c != '*' && c != '>')
    }

    #[test]
    fn escaping_round_trips_and_yields_one_token() {
        for raw in [
            "",
            "_",
            "flux-system",
            "my.app",
            "a_b",
            "*",
            ">",
            "with space",
            "ünïcode",
            "x_2E",
        ] {
            let token = escape_token(raw);
            assert!(valid_token(&token), "{raw:?} gave {token:?}");
            assert_eq!(unescape_token(&token).as_deref(), Some(raw), "{raw:?}");
        }
    }

    #[test]
    fn escaping_is_injective_on_tricky_pairs() {
        assert_ne!(escape_token("a.b"), escape_token("a_2Eb"));
        assert_ne!(escape_token(""), escape_token("_"));
    }

    #[test]
    fn subjects_have_fixed_token_counts() {
        let subject = delivery_subject("slack", "team.a", "on-call.v2");
        assert_eq!(subject.split('.').count(), 5, "{subject}");
        assert_eq!(
            dead_subject_for(&subject),
            "herald.dead.slack.team_2Ea.on-call_2Ev2"
        );
        assert_eq!(event_subject("prod.eu"), "herald.events.prod_2Eeu");
        assert_eq!(
            edge_event_subject("edge-1", "prod.eu"),
            "herald.edge.edge-1.events.prod_2Eeu"
        );
    }

    #[test]
    fn the_cluster_is_read_back_from_every_event_subject() {
        for cluster in ["prod.eu", "", "a_b", "x"] {
            assert_eq!(
                cluster_of_subject(&event_subject(cluster), None).as_deref(),
                Some(cluster)
            );
            assert_eq!(
                cluster_of_subject(&edge_event_subject("edge-1", cluster), Some("edge-1"))
                    .as_deref(),
                Some(cluster)
            );
        }
        for (other, domain) in [
            ("herald.events", None),
            ("herald.events.a.b", None),
            ("herald.edge.d.events", Some("d")),
            ("herald.deliveries.slack.a.b", None),
            ("herald.events._zz", None),
            // An edge's own subject, where a transform did not apply.
            ("herald.edge.edge-1.events.a", None),
            ("herald.edge.edge-1.events.a", Some("edge-2")),
        ] {
            assert_eq!(cluster_of_subject(other, domain), None, "{other}");
        }
    }
}
