//! How read commands print what they found: a table for people (the
//! default), or the same data as JSON or YAML for scripts (`-o json|yaml`).
//!
//! Each command builds one serializable value; the table is rendered from
//! that same value, so the three forms never disagree.

use serde::Serialize;

/// The form of a read command's output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Columns for people, like `kubectl get`.
    #[default]
    Table,
    /// One JSON document.
    Json,
    /// One YAML document.
    Yaml,
}

/// `-o`/`--output`, on every read command.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct OutputArgs {
    /// The output form: a table, or the same data as JSON or YAML.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

/// What a value looks like for people.
pub trait Tabular {
    /// `self` as text: one or more tables, each line ending with a newline.
    fn table(&self) -> String;
}

/// `value` in `format`, ending with a newline.
///
/// # Errors
///
/// When JSON or YAML cannot be written (a map with keys that are not
/// strings; none of ours).
pub fn render<T: Serialize + Tabular>(value: &T, format: Format) -> anyhow::Result<String> {
    Ok(match format {
        Format::Table => value.table(),
        Format::Json => {
            let mut text = serde_json::to_string_pretty(value)?;
            text.push('\n');
            text
        }
        Format::Yaml => {
            let mut text = serde_saphyr::to_string(value)
                .map_err(|e| anyhow::anyhow!("cannot write YAML: {e}"))?;
            if !text.ends_with('\n') {
                text.push('\n');
            }
            text
        }
    })
}

pub use herald_runtime::text::{Table, one_line, shorten};

/// `-` for a missing value.
#[must_use]
pub fn or_dash(value: Option<impl ToString>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// A time as the output shows it: RFC 3339, to the second, in UTC.
#[must_use]
pub fn time(at: jiff::Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A time from a NATS answer.
#[must_use]
pub fn nats_time(at: async_nats::datetime::DateTime) -> jiff::Timestamp {
    jiff::Timestamp::from_nanosecond(at.unix_timestamp_nanos())
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Rows {
        items: Vec<(String, u32)>,
    }

    impl Tabular for Rows {
        fn table(&self) -> String {
            let mut table = Table::new(&["NAME", "COUNT"]);
            for (name, count) in &self.items {
                table.row(vec![name.clone(), count.to_string()]);
            }
            table.render()
        }
    }

    #[test]
    fn one_value_three_forms() {
        let rows = Rows {
            items: vec![("a\x1b[31m".to_owned(), 1), ("longer".to_owned(), 22)],
        };
        assert_eq!(
            render(&rows, Format::Table).unwrap(),
            "NAME         COUNT\na\\u{1b}[31m  1\nlonger       22\n"
        );
        let json: serde_json::Value =
            serde_json::from_str(&render(&rows, Format::Json).unwrap()).unwrap();
        assert_eq!(json["items"][1][1], 22);
        let yaml = render(&rows, Format::Yaml).unwrap();
        assert!(yaml.contains("longer"), "{yaml}");
    }
}
