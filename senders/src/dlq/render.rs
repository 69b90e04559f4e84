//! Dead letters for people: a table and a detail view.

use super::*;
pub(super) use herald_runtime::text::{Table, one_line, shorten};

/// One line per letter: sequence, when it died, Provider (type and
/// namespace/name), Alert, attempts, last status and reason (shortened; see
/// [`render_detail`]), under a header line.
#[must_use]
pub fn render_table(entries: &[Entry]) -> String {
    let mut table = Table::new(&[
        "SEQ", "DEAD AT", "PROVIDER", "ALERT", "ATTEMPTS", "STATUS", "REASON",
    ]);
    for entry in entries {
        let (namespace, name) = entry.provider();
        let alert = entry
            .alert()
            .map_or_else(|| "-".to_owned(), |a| format!("{}/{}", a.namespace, a.name));
        table.row(vec![
            entry.sequence.to_string(),
            format!("{:.0}", entry.dead_at()),
            format!("{} {namespace}/{name}", entry.provider_type()),
            alert,
            entry.letter.attempts.to_string(),
            status(entry.letter.last_status),
            shorten(&one_line(&entry.letter.reason), TABLE_REASON_CHARS),
        ]);
    }
    table.render()
}

/// Everything a letter holds: where and when it died, why, the attempts, the
/// last status and answer, the Provider and Alert, the trace, and the event as
/// the Flux JSON a `generic` Provider receives. A raw payload is shown by size
/// only.
#[must_use]
pub fn render_detail(entry: &Entry) -> String {
    let letter = &entry.letter;
    let mut out = String::new();
    let mut field = |name: &str, value: &str| {
        if !value.is_empty() {
            writeln!(out, "{:<15}{}", format!("{name}:"), one_line(value)).ok();
        }
    };
    field("Sequence", &entry.sequence.to_string());
    field("Subject", &entry.subject);
    field("Dead at", &entry.dead_at().to_string());
    field("Stored at", &entry.stored_at.to_string());
    field("Reason", &letter.reason);
    field("Attempts", &letter.attempts.to_string());
    field("Last status", &status(letter.last_status));
    if !letter.subject.is_empty() {
        field("Delivered on", &letter.subject);
    }
    let (namespace, name) = entry.provider();
    let mut provider = format!("{} {namespace}/{name}", entry.provider_type());
    if let Some(uid) = letter
        .delivery
        .as_ref()
        .and_then(|d| d.provider.as_ref())
        .map(|p| p.uid.as_str())
        .filter(|uid| !uid.is_empty())
    {
        write!(provider, " (uid {uid})").ok();
    }
    field("Provider", &provider);
    if let Some(alert) = entry.alert() {
        let mut text = format!("{}/{}", alert.namespace, alert.name);
        if !alert.uid.is_empty() {
            write!(text, " (uid {})", alert.uid).ok();
        }
        field("Alert", &text);
    }
    if let Some(delivery) = &letter.delivery {
        field("Delivery id", &delivery.id);
        if let Some(routed) = delivery.routed_at.as_ref().and_then(from_time) {
            field("Routed at", &routed.to_string());
        }
        if let Some(event) = &delivery.event {
            field("Event id", &event.id);
            field("Cluster", &event.cluster);
            if let Some(received) = event.received_at.as_ref().and_then(from_time) {
                field("Received at", &received.to_string());
            }
        }
    }
    field(
        "Traceparent",
        if letter.traceparent.is_empty() {
            "-"
        } else {
            &letter.traceparent
        },
    );
    if !letter.raw_payload.is_empty() {
        field(
            "Raw payload",
            &format!(
                "{} bytes (not a decodable delivery; cannot be replayed)",
                letter.raw_payload.len()
            ),
        );
    }
    if !letter.last_response.is_empty() {
        out.push_str("Last response:\n");
        for line in letter.last_response.lines() {
            writeln!(out, "  {}", one_line(line)).ok();
        }
    }
    if let Some(event) = letter.delivery.as_ref().and_then(|d| d.event.as_ref()) {
        out.push_str("Event (Flux JSON):\n");
        out.push_str(&String::from_utf8_lossy(&from_proto(event).to_go_json()));
        out.push('\n');
    }
    out
}

/// A status for people: `-` when there was none.
pub(super) fn status(status: u32) -> String {
    if status == 0 {
        "-".to_owned()
    } else {
        status.to_string()
    }
}
