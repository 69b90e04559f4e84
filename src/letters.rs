//! Dead letters as `herald dlq list` and `herald dlq show` print them: a
//! table (or the detail view) for people, the same letters as JSON or YAML
//! with `-o json|yaml`. Nothing here prints a raw payload, only its size.

use herald_flux::convert::from_proto;
use herald_senders::dlq::{self, Entry};
use serde::Serialize;

use crate::output::{self, Format, Table, Tabular, or_dash, shorten, time};

/// The longest reason in the table; `show` and `-o json|yaml` show it all.
const TABLE_REASON_CHARS: usize = 120;

/// `herald dlq list`'s answer, oldest first.
#[derive(Debug, Serialize)]
pub struct LetterList {
    pub items: Vec<Letter>,
}

/// One dead letter.
#[derive(Debug, Serialize)]
pub struct Letter {
    /// Its HERALD_DEAD sequence (what `show`, `replay` and `purge` take).
    pub sequence: u64,
    pub subject: String,
    pub dead_at: String,
    pub stored_at: String,
    pub provider_type: String,
    pub provider: ObjectRef,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert: Option<ObjectRef>,
    pub attempts: u32,
    /// The destination's last HTTP status, if it answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_status: Option<u32>,
    pub reason: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub event_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub delivery_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cluster: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub traceparent: String,
    /// The size of a payload that is not a delivery (it cannot be replayed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_payload_bytes: Option<usize>,
    /// `show` only: the destination's last answer (an excerpt).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_response: Option<String>,
    /// `show` only: the event as the Flux JSON a `generic` Provider receives.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<serde_json::Value>,
}

/// An Alert or Provider.
#[derive(Debug, Serialize)]
pub struct ObjectRef {
    pub namespace: String,
    pub name: String,
}

impl Letter {
    /// What `list` shows of `entry`.
    #[must_use]
    pub fn summary(entry: &Entry) -> Self {
        let letter = &entry.letter;
        let (namespace, name) = entry.provider();
        let delivery = letter.delivery.as_ref();
        let event = delivery.and_then(|d| d.event.as_ref());
        Self {
            sequence: entry.sequence,
            subject: entry.subject.clone(),
            dead_at: time(entry.dead_at()),
            stored_at: time(entry.stored_at),
            provider_type: entry.provider_type(),
            provider: ObjectRef { namespace, name },
            alert: entry.alert().map(|a| ObjectRef {
                namespace: a.namespace.clone(),
                name: a.name.clone(),
            }),
            attempts: letter.attempts,
            last_status: Some(letter.last_status).filter(|s| *s != 0),
            reason: letter.reason.clone(),
            event_id: entry.event_id().to_owned(),
            delivery_id: delivery.map(|d| d.id.clone()).unwrap_or_default(),
            cluster: event.map(|e| e.cluster.clone()).unwrap_or_default(),
            traceparent: letter.traceparent.clone(),
            raw_payload_bytes: (!letter.raw_payload.is_empty()).then_some(letter.raw_payload.len()),
            last_response: None,
            event: None,
        }
    }

    /// What `show` shows of `entry`: the summary, the last answer and the event.
    #[must_use]
    pub fn detail(entry: &Entry) -> Self {
        let mut letter = Self::summary(entry);
        let stored = &entry.letter;
        letter.last_response = Some(stored.last_response.clone()).filter(|r| !r.is_empty());
        letter.event = stored
            .delivery
            .as_ref()
            .and_then(|d| d.event.as_ref())
            .and_then(|event| serde_json::from_slice(&from_proto(event).to_go_json()).ok());
        letter
    }
}

impl Tabular for LetterList {
    fn table(&self) -> String {
        let mut table = Table::new(&[
            "SEQ", "DEAD AT", "PROVIDER", "ALERT", "ATTEMPTS", "STATUS", "REASON",
        ]);
        for letter in &self.items {
            table.row(vec![
                letter.sequence.to_string(),
                letter.dead_at.clone(),
                format!(
                    "{} {}/{}",
                    letter.provider_type, letter.provider.namespace, letter.provider.name
                ),
                or_dash(
                    letter
                        .alert
                        .as_ref()
                        .map(|a| format!("{}/{}", a.namespace, a.name)),
                ),
                letter.attempts.to_string(),
                or_dash(letter.last_status),
                shorten(&output::one_line(&letter.reason), TABLE_REASON_CHARS),
            ]);
        }
        table.render()
    }
}

/// `herald dlq list`'s output.
///
/// # Errors
///
/// When JSON or YAML cannot be written.
pub fn render_list(entries: &[Entry], format: Format) -> anyhow::Result<String> {
    let list = LetterList {
        items: entries.iter().map(Letter::summary).collect(),
    };
    output::render(&list, format)
}

/// `herald dlq show`'s output: the detail view, or the letter as JSON or YAML.
///
/// # Errors
///
/// When JSON or YAML cannot be written.
pub fn render_show(entry: &Entry, format: Format) -> anyhow::Result<String> {
    struct Detail<'a>(&'a Entry, Letter);
    impl Serialize for Detail<'_> {
        fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            self.1.serialize(serializer)
        }
    }
    impl Tabular for Detail<'_> {
        fn table(&self) -> String {
            dlq::render_detail(self.0)
        }
    }
    output::render(&Detail(entry, Letter::detail(entry)), format)
}
