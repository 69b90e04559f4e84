//! Message templates: Go `text/template` text on an Alert or a Provider, as
//! annotations in Herald's domain, rendered for each delivery in place of
//! the event's message.
//!
//! ```yaml
//! metadata:
//!   annotations:
//!     herald.dev/template: |
//!       {{ .InvolvedObject.Kind }}/{{ .InvolvedObject.Name }} in {{ .Cluster }}: {{ .Message }}
//!       revision {{ index .Metadata "revision" | trunc 12 }}
//! ```
//!
//! The data is Flux's `eventv1.Event` with Go's field names (what Flux's own
//! templates will see), plus `.Alert` and `.Cluster`; see [`TemplateData`].
//! The functions are Go's built-ins plus a Sprig subset (see [`FUNCTIONS`]).
//!
//! Templates are compiled once, when the catalog is loaded: a template that
//! does not parse, calls a function that does not exist or reads a field
//! the event does not have is a problem with its line and column (Go finds
//! the first two at parse time too; a field only when it runs). Rendering
//! never panics and is bounded: loops, nesting and output length have limits.

mod check;
mod funcs;
mod layout;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use gotmpl::{Template, Value};

use crate::event::{FluxEvent, InvolvedObject};

/// The annotation holding an Alert's message template, or on a Provider
/// the default for every Alert that uses it and sets none.
pub const TEMPLATE_ANNOTATION: &str = "herald.dev/template";

/// The annotation holding a template of Slack Block Kit blocks (its output
/// a JSON array), sent as a Slack message's `blocks`.
pub const SLACK_BLOCKS_ANNOTATION: &str = "herald.dev/slack-blocks";

/// The functions a template may call: Go's built-ins, then the Sprig subset
/// Herald adds (see `funcs`).
pub const FUNCTIONS: &[&str] = &[
    // Go's text/template built-ins.
    "and",
    "call",
    "eq",
    "ge",
    "gt",
    "html",
    "index",
    "js",
    "le",
    "len",
    "lt",
    "ne",
    "not",
    "or",
    "print",
    "printf",
    "println",
    "slice",
    "urlquery",
    // Sprig's, as Helm and Flux users know them.
    "contains",
    "date",
    "default",
    "empty",
    "hasPrefix",
    "hasSuffix",
    "indent",
    "join",
    "lower",
    "nindent",
    "now",
    "quote",
    "replace",
    "split",
    "splitList",
    "squote",
    "title",
    "toJson",
    "trim",
    "trimPrefix",
    "trimSuffix",
    "trunc",
    "upper",
];

/// `{{ range }}` iterations one rendering may run, over all its loops.
const MAX_RANGE_ITERATIONS: u64 = 10_000;

/// The longest text a rendering may produce, in bytes.
pub const MAX_OUTPUT_BYTES: usize = 64 * 1024;

/// Where a template does not compile, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct CompileError {
    /// 1-based line in the template's text.
    pub line: usize,
    /// 1-based column (in characters) in that line.
    pub column: usize,
    /// What is wrong, in Go's words where Go has some.
    pub message: String,
}

/// Why a template could not render an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// It ran and wrote nothing but white space (a condition no branch of
    /// which held, say): which no destination takes as a message.
    #[error("the output is empty")]
    Empty,
    /// It failed while running, or its output is not what it must be.
    #[error("{0}")]
    Failed(String),
}

/// A compiled template.
#[derive(Clone)]
pub struct MessageTemplate {
    template: Template,
}

impl fmt::Debug for MessageTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MessageTemplate")
    }
}

// === impl MessageTemplate ===

impl MessageTemplate {
    /// Parses `source` with Herald's functions and checks the functions it
    /// calls and the fields it reads.
    ///
    /// # Errors
    ///
    /// The first problem, with its line and column in `source`.
    pub fn compile(source: &str) -> Result<Self, CompileError> {
        let template = Template::new("template")
            .funcs(funcs::functions())
            .max_range_iters(MAX_RANGE_ITERATIONS)
            .parse(source)
            .map_err(|error| match error {
                gotmpl::TemplateError::Parse {
                    line, col, message, ..
                }
                | gotmpl::TemplateError::Lex {
                    line, col, message, ..
                } => CompileError {
                    line,
                    column: col,
                    message,
                },
                other => CompileError {
                    line: 1,
                    column: 1,
                    message: other.to_string(),
                },
            })?;
        check::check(&template, source)?;
        Ok(Self { template })
    }

    /// The text the template gives for `data`.
    ///
    /// # Errors
    ///
    /// What failed while it ran (a function given the wrong arguments, a
    /// loop or an output over its limit), in Go's words where Go has some;
    /// and an output of nothing but white space, which no destination
    /// takes as a message.
    pub fn render(&self, data: &TemplateData) -> Result<String, RenderError> {
        let mut out = Bounded {
            text: String::new(),
            full: false,
        };
        match self.template.execute_fmt(&mut out, &data.0) {
            Ok(()) if out.text.trim().is_empty() => Err(RenderError::Empty),
            Ok(()) => Ok(out.text),
            Err(_) if out.full => Err(RenderError::Failed(format!(
                "the output is longer than {MAX_OUTPUT_BYTES} bytes"
            ))),
            Err(error) => Err(RenderError::Failed(error.to_string())),
        }
    }

    /// The Slack Block Kit blocks the template gives for `data`: its output
    /// must be a JSON array of objects. Returned as compact JSON.
    ///
    /// # Errors
    ///
    /// As [`MessageTemplate::render`], or when the output is not such an
    /// array.
    pub fn render_blocks(&self, data: &TemplateData) -> Result<String, RenderError> {
        let text = self.render(data)?;
        let blocks: Vec<serde_json::Map<String, serde_json::Value>> = serde_json::from_str(&text)
            .map_err(|error| {
            RenderError::Failed(format!(
                "the output is not a JSON array of Slack blocks: {error}"
            ))
        })?;
        if blocks.is_empty() {
            return Err(RenderError::Failed("the output has no block".to_owned()));
        }
        if let Some(i) = blocks.iter().position(|b| !b.contains_key("type")) {
            return Err(RenderError::Failed(format!(
                "the output's block {i} has no \"type\""
            )));
        }
        serde_json::to_string(&blocks).map_err(|error| RenderError::Failed(error.to_string()))
    }
}

/// A `fmt::Write` that refuses text past [`MAX_OUTPUT_BYTES`].
struct Bounded {
    text: String,
    full: bool,
}

impl fmt::Write for Bounded {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.text.len() + s.len() > MAX_OUTPUT_BYTES {
            self.full = true;
            return Err(fmt::Error);
        }
        self.text.push_str(s);
        Ok(())
    }
}

/// The Alert a delivery is for, as templates see it (`.Alert`).
#[derive(Debug, Clone, Copy, Default)]
pub struct AlertRef<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
}

/// What a template sees: Flux's `eventv1.Event` with Go's field names,
/// `.Alert` and `.Cluster`.
///
/// | Field | Value |
/// |---|---|
/// | `.InvolvedObject` | `.Kind`, `.Namespace`, `.Name`, `.UID`, `.APIVersion`, `.ResourceVersion`, `.FieldPath` |
/// | `.RelatedObject` | the same fields (empty strings when the event has none) |
/// | `.Severity`, `.Message`, `.Reason`, `.Action` | strings |
/// | `.Timestamp` | a string, as Go prints a time: `2024-05-01 12:00:00 +0000 UTC` |
/// | `.Metadata` | a map of strings (after the Alert's metadata rules) |
/// | `.ReportingController`, `.ReportingInstance` | strings |
/// | `.Alert` | `.Name`, `.Namespace` |
/// | `.Cluster` | the cluster the event came from |
#[derive(Debug, Clone)]
pub struct TemplateData(Value);

// === impl TemplateData ===

impl TemplateData {
    /// The data of `event` (after the metadata rules) for `alert`, from
    /// `cluster`.
    #[must_use]
    pub fn new(event: &FluxEvent, alert: AlertRef<'_>, cluster: &str) -> Self {
        let timestamp = event
            .timestamp
            .map(layout::go_string)
            .unwrap_or_else(|| layout::ZERO_TIME.to_owned());
        let metadata: BTreeMap<Arc<str>, Value> = event
            .metadata
            .iter()
            .map(|(k, v)| (Arc::from(k.as_str()), text(v)))
            .collect();
        let root = map([
            ("InvolvedObject", object(&event.involved_object)),
            ("RelatedObject", object(&event.related_object)),
            ("Severity", text(&event.severity)),
            ("Timestamp", text(&timestamp)),
            ("Message", text(&event.message)),
            ("Reason", text(&event.reason)),
            ("Action", text(&event.action)),
            ("Metadata", Value::Map(Arc::new(metadata))),
            ("ReportingController", text(&event.reporting_controller)),
            ("ReportingInstance", text(&event.reporting_instance)),
            (
                "Alert",
                map([
                    ("Name", text(alert.name)),
                    ("Namespace", text(alert.namespace)),
                ]),
            ),
            ("Cluster", text(cluster)),
        ]);
        Self(root)
    }
}

fn text(s: &str) -> Value {
    Value::String(Arc::from(s))
}

fn map<const N: usize>(entries: [(&str, Value); N]) -> Value {
    Value::Map(Arc::new(
        entries
            .into_iter()
            .map(|(k, v)| (Arc::from(k), v))
            .collect(),
    ))
}

fn object(o: &InvolvedObject) -> Value {
    map([
        ("Kind", text(&o.kind)),
        ("Namespace", text(&o.namespace)),
        ("Name", text(&o.name)),
        ("UID", text(&o.uid)),
        ("APIVersion", text(&o.api_version)),
        ("ResourceVersion", text(&o.resource_version)),
        ("FieldPath", text(&o.field_path)),
    ])
}

/// One annotation's template: absent, compiled, or broken.
pub type Slot = Option<Result<Arc<MessageTemplate>, CompileError>>;

/// The templates an object's annotations give.
#[derive(Debug, Clone, Default)]
pub struct Templates {
    /// `herald.dev/template`.
    pub message: Slot,
    /// `herald.dev/slack-blocks`.
    pub slack_blocks: Slot,
}

// === impl Templates ===

impl Templates {
    /// Compiles the templates of `annotations`; the problems say, for each
    /// that does not compile, the annotation, the line and column, and why.
    #[must_use]
    pub fn from_annotations(annotations: &BTreeMap<String, String>) -> (Self, Vec<String>) {
        let slot = |annotation: &str| -> Slot {
            let source = annotations.get(annotation)?;
            Some(MessageTemplate::compile(source).map(Arc::new))
        };
        let templates = Self {
            message: slot(TEMPLATE_ANNOTATION),
            slack_blocks: slot(SLACK_BLOCKS_ANNOTATION),
        };
        let problems = templates.problems();
        (templates, problems)
    }

    /// For each template that does not compile: the annotation, the line
    /// and column, and why.
    #[must_use]
    pub fn problems(&self) -> Vec<String> {
        [
            (TEMPLATE_ANNOTATION, &self.message),
            (SLACK_BLOCKS_ANNOTATION, &self.slack_blocks),
        ]
        .into_iter()
        .filter_map(|(annotation, slot)| match slot {
            Some(Err(error)) => Some(format!(
                "annotation {annotation} does not compile at template {error}; \
                 deliveries are sent without it"
            )),
            _ => None,
        })
        .collect()
    }

    /// Whether the object has neither annotation.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.message.is_none() && self.slack_blocks.is_none()
    }
}

#[cfg(test)]
mod tests;
