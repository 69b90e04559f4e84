//! What a parsed template would only find out while running, found at
//! compile time with its place: a function that does not exist (Go's parser
//! refuses it too) and a field the data does not have (Go fails on it when
//! it runs; the engine here would print `<no value>`).
//!
//! Fields are followed through `.`, `$`, `with` and `range`; what cannot be
//! known without running (a variable, a pipeline's result, the data given
//! to a defined template) is not checked.

use gotmpl::Template;
use gotmpl::parse::{Expr, ListNode, Node, PipeNode, Pos};

use super::{CompileError, FUNCTIONS};

/// The type of a value in the template's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Event,
    Object,
    Alert,
    /// `.Metadata`: any key, each a string.
    Metadata,
    Str,
    /// Not known before running.
    Any,
}

const EVENT_FIELDS: &[&str] = &[
    "InvolvedObject",
    "RelatedObject",
    "Severity",
    "Timestamp",
    "Message",
    "Reason",
    "Action",
    "Metadata",
    "ReportingController",
    "ReportingInstance",
    "Alert",
    "Cluster",
];

const OBJECT_FIELDS: &[&str] = &[
    "Kind",
    "Namespace",
    "Name",
    "UID",
    "APIVersion",
    "ResourceVersion",
    "FieldPath",
];

const ALERT_FIELDS: &[&str] = &["Name", "Namespace"];

// === impl Ty ===

impl Ty {
    fn field(self, name: &str) -> Result<Self, String> {
        let (type_name, known) = match self {
            Self::Any => return Ok(Self::Any),
            Self::Metadata => return Ok(Self::Str),
            Self::Event => ("Event", EVENT_FIELDS),
            Self::Object => ("ObjectReference", OBJECT_FIELDS),
            Self::Alert => ("Alert", ALERT_FIELDS),
            Self::Str => ("string", &[][..]),
        };
        if known.contains(&name) {
            return Ok(match (self, name) {
                (Self::Event, "InvolvedObject" | "RelatedObject") => Self::Object,
                (Self::Event, "Alert") => Self::Alert,
                (Self::Event, "Metadata") => Self::Metadata,
                _ => Self::Str,
            });
        }
        let hint = crate::suggest::closest(name, known.iter().copied())
            .map(|s| format!(" (did you mean .{s}?)"))
            .unwrap_or_default();
        Err(format!(
            "can't evaluate field {name} in type {type_name}{hint}"
        ))
    }

    fn chain(self, fields: &[impl AsRef<str>]) -> Result<Self, String> {
        fields.iter().try_fold(self, |ty, f| ty.field(f.as_ref()))
    }
}

/// Checks every tree of `template` (parsed from `source`).
pub(super) fn check(template: &Template, source: &str) -> Result<(), CompileError> {
    let checker = Checker { source };
    for name in template.templates() {
        let Some(tree) = template.lookup(name) else {
            continue;
        };
        // The main text sees the event; a defined template sees what its
        // caller passes, not known here.
        let dot = if name == template.name() {
            Ty::Event
        } else {
            Ty::Any
        };
        checker.list(tree, dot)?;
    }
    Ok(())
}

struct Checker<'a> {
    source: &'a str,
}

// === impl Checker ===

impl Checker<'_> {
    fn error(&self, pos: Pos, message: String) -> CompileError {
        let end = pos.offset.min(self.source.len());
        let start = self.source[..end].rfind('\n').map_or(0, |i| i + 1);
        CompileError {
            line: pos.line,
            column: self.source[start..end].chars().count() + 1,
            message,
        }
    }

    fn list(&self, list: &ListNode, dot: Ty) -> Result<(), CompileError> {
        list.nodes.iter().try_for_each(|node| self.node(node, dot))
    }

    fn node(&self, node: &Node, dot: Ty) -> Result<(), CompileError> {
        match node {
            Node::List(list) => self.list(list, dot),
            Node::Action(action) => self.pipe(&action.pipe, dot).map(drop),
            Node::If(branch) | Node::With(branch) | Node::Range(branch) => {
                let ty = self.pipe(&branch.pipe, dot)?;
                let inner = match node {
                    Node::With(_) => ty,
                    // Ranging over metadata gives its values; the rest is
                    // not known (a list made by a function, say).
                    Node::Range(_) if ty == Ty::Metadata => Ty::Str,
                    Node::Range(_) => Ty::Any,
                    _ => dot,
                };
                self.list(&branch.body, inner)?;
                match &branch.else_body {
                    Some(body) => self.list(body, dot),
                    None => Ok(()),
                }
            }
            Node::Template(call) => match &call.pipe {
                Some(pipe) => self.pipe(pipe, dot).map(drop),
                None => Ok(()),
            },
            Node::Define(define) => self.list(&define.body, Ty::Any),
            Node::Text(_) | Node::Break(_) | Node::Continue(_) => Ok(()),
        }
    }

    /// Checks `pipe`; the type of its value when known.
    fn pipe(&self, pipe: &PipeNode, dot: Ty) -> Result<Ty, CompileError> {
        let mut ty = Ty::Any;
        for command in &pipe.commands {
            for arg in &command.args {
                self.expr(arg, dot)?;
            }
            ty = match command.args.as_slice() {
                [only] if pipe.commands.len() == 1 => self.expr(only, dot)?,
                _ => Ty::Any,
            };
        }
        // A variable's declaration is not followed.
        Ok(ty)
    }

    /// Checks `expr`; the type of its value when known.
    fn expr(&self, expr: &Expr, dot: Ty) -> Result<Ty, CompileError> {
        match expr {
            Expr::Dot(_) => Ok(dot),
            Expr::Field(pos, fields) => dot.chain(fields).map_err(|m| self.error(*pos, m)),
            Expr::Variable(pos, name, fields) if name == "$" => {
                Ty::Event.chain(fields).map_err(|m| self.error(*pos, m))
            }
            Expr::Identifier(pos, name) => {
                if FUNCTIONS.contains(&name.as_str()) {
                    Ok(Ty::Any)
                } else {
                    let hint = crate::suggest::closest(name, FUNCTIONS.iter().copied())
                        .map(|s| format!(" (did you mean {s:?}?)"))
                        .unwrap_or_default();
                    Err(self.error(*pos, format!("function {name:?} not defined{hint}")))
                }
            }
            Expr::Pipe(_, pipe) => self.pipe(pipe, dot),
            Expr::Chain(pos, inner, fields) => self
                .expr(inner, dot)?
                .chain(fields)
                .map_err(|m| self.error(*pos, m)),
            Expr::Variable(..)
            | Expr::String(..)
            | Expr::Number(..)
            | Expr::Bool(..)
            | Expr::Nil(_) => Ok(Ty::Any),
        }
    }
}
