//! The commit status identifier from `spec.commitStatusExpr` (flux-providers
//! §7.2): a CEL expression over `event`, `provider` and `alert`.
//!
//! The environment is the CEL standard library with the extensions Flux
//! enables that the expressions use: the strings extension (`split`,
//! `lowerAscii`, `join`, `replace`, `substring`, …), the encoders
//! (`base64.encode` / `base64.decode`), optional values with `list.first()`
//! and `list.last()`, and the sets extension (`sets.contains`,
//! `sets.equivalent`, `sets.intersects`).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, LazyLock};

use cel::common::types::{CelBool, CelOptional, LIST_TYPE};
use cel::common::value::{CowVal, Val};
use cel::{Context, Env, ExecutionError, Program, Value};

use super::GitError;
use super::status::default_commit_status;
use super::undeclared::undeclared_references;
use crate::event::FluxEvent;

/// The variables an expression sees.
const VARIABLES: [&str; 3] = ["event", "provider", "alert"];

static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| Arc::new(flux_env()));

/// The CEL environment of Flux's `runtime/cel` package, as far as the `cel`
/// crate has it.
fn flux_env() -> Env {
    let mut env = Env::stdlib();
    env.add_extension(cel::extensions::strings)
        .expect("the strings extension registers once");
    env.add_extension(cel::extensions::encoders)
        .expect("the encoders extension registers once");
    let list_fns: [(&str, &str, cel::common::functions::Function); 2] = [
        ("first", "list_first", list_first),
        ("last", "list_last", list_last),
    ];
    for (name, id, f) in list_fns {
        env.add_member_overload(name, id, LIST_TYPE, vec![], f)
            .expect("list.first and list.last register once");
    }
    let set_fns: [(&str, &str, cel::common::functions::Function); 3] = [
        ("sets.contains", "list_sets_contains_list", sets_contains),
        (
            "sets.equivalent",
            "list_sets_equivalent_list",
            sets_equivalent,
        ),
        (
            "sets.intersects",
            "list_sets_intersects_list",
            sets_intersects,
        ),
    ];
    for (name, id, f) in set_fns {
        env.add_overload(name, id, vec![LIST_TYPE, LIST_TYPE], f)
            .expect("the sets functions register once");
    }
    env
}

/// A compiled `spec.commitStatusExpr`.
pub struct CommitStatusExpr {
    source: String,
    program: Program,
}

impl fmt::Debug for CommitStatusExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CommitStatusExpr")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl CommitStatusExpr {
    /// Parses the expression and checks that it names no variable but
    /// `event`, `provider` and `alert` (as cel-go's compiler does).
    ///
    /// # Errors
    ///
    /// [`GitError::CommitStatusExpr`] with
    /// `failed to compile expression: failed to parse the CEL expression '{expr}': {issues}`,
    /// the issues being syntax errors or
    /// `ERROR: <input>:{line}:{col}: undeclared reference to '{name}' (in container '')`.
    pub fn compile(source: &str) -> Result<Self, GitError> {
        let compile_error = |issues: &dyn fmt::Display| {
            GitError::CommitStatusExpr(format!(
                "failed to compile expression: failed to parse the CEL expression '{source}': {issues}"
            ))
        };
        let program = ENV
            .compile(source)
            .map_err(|issues| compile_error(&issues))?;
        let undeclared = undeclared_references(
            source,
            program.expression(),
            |id| program.source_info().offset_for(id).map(|(start, _)| start),
            &VARIABLES,
        );
        if !undeclared.is_empty() {
            return Err(compile_error(&undeclared.join("\n")));
        }
        Ok(Self {
            source: source.to_owned(),
            program,
        })
    }

    /// The expression as written.
    #[must_use]
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates the expression with `event` (the event after the metadata
    /// merge, in its Flux JSON form), `provider` and `alert` (the objects'
    /// manifests as JSON). The result is used verbatim.
    ///
    /// # Errors
    ///
    /// [`GitError::CommitStatusExpr`] with
    /// `failed to evaluate the CEL expression '{expr}': {err}` when evaluation
    /// fails (a missing map key, a type error, an empty optional), or
    /// `failed to evaluate CEL expression as string: '{expr}'` when the result
    /// is not a string.
    pub fn evaluate(
        &self,
        event: &FluxEvent,
        provider: &serde_json::Value,
        alert: &serde_json::Value,
    ) -> Result<String, GitError> {
        let event_json: serde_json::Value =
            serde_json::from_slice(&event.to_go_json()).unwrap_or(serde_json::Value::Null);
        let mut context = Context::with_env(Arc::clone(&ENV));
        for (name, value) in VARIABLES.into_iter().zip([&event_json, provider, alert]) {
            context.add_variable_from_value(name, to_cel(value));
        }
        match self.program.execute(&context) {
            Ok(Value::String(s)) => Ok(s.as_str().to_owned()),
            Ok(_) => Err(GitError::CommitStatusExpr(format!(
                "failed to evaluate CEL expression as string: '{}'",
                self.source
            ))),
            Err(err) => Err(GitError::CommitStatusExpr(format!(
                "failed to evaluate the CEL expression '{}': {err}",
                self.source
            ))),
        }
    }
}

/// The commit status identifier of a commit-status Provider: the
/// [`default_commit_status`] from the Provider's `metadata.uid` when
/// `commit_status_expr` is empty, else the expression's result.
///
/// # Errors
///
/// As [`CommitStatusExpr::compile`] and [`CommitStatusExpr::evaluate`].
pub fn commit_status_identifier(
    commit_status_expr: &str,
    event: &FluxEvent,
    provider: &serde_json::Value,
    alert: &serde_json::Value,
) -> Result<String, GitError> {
    if commit_status_expr.is_empty() {
        let uid = provider["metadata"]["uid"].as_str().unwrap_or("");
        return Ok(default_commit_status(uid, event));
    }
    CommitStatusExpr::compile(commit_status_expr)?.evaluate(event, provider, alert)
}

/// A JSON value as CEL sees it: integers as `int` (`uint` beyond `i64`),
/// other numbers as `double`, objects as maps with string keys.
fn to_cel(value: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    match value {
        J::Null => Value::Null,
        J::Bool(b) => Value::Bool(*b),
        J::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::Int(i),
            (None, Some(u)) => Value::UInt(u),
            _ => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        J::String(s) => Value::String(Arc::new(s.clone())),
        J::Array(items) => Value::List(Arc::new(items.iter().map(to_cel).collect())),
        J::Object(map) => Value::Map(cel::objects::Map::from(
            map.iter()
                .map(|(k, v)| (k.clone(), to_cel(v)))
                .collect::<HashMap<String, Value>>(),
        )),
    }
}

/// The borrowed elements of a list.
type Elements<'b, 'v> = Vec<&'b (dyn Val + 'v)>;

/// The elements of a `list` argument.
fn elements<'b, 'v>(
    function: &str,
    list: &'b CowVal<'_, 'v>,
) -> Result<Elements<'b, 'v>, ExecutionError> {
    let iterable = list
        .as_ref()
        .as_iterable()
        .ok_or_else(|| ExecutionError::function_error(function, "expected a list"))?;
    let mut iter = iterable.iter();
    let mut items = Vec::new();
    while let Some(item) = iter.next() {
        items.push(item);
    }
    Ok(items)
}

/// `list.first()`: an optional of the first element, `optional.none()` for
/// an empty list.
fn list_first<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let list = args
        .first()
        .ok_or_else(ExecutionError::missing_argument_or_target)?;
    let first = elements("first", list)?
        .first()
        .map(|item| item.clone_as_boxed());
    Ok(CowVal::owned(
        first.map_or_else(CelOptional::none, CelOptional::of),
    ))
}

/// `list.last()`: an optional of the last element, `optional.none()` for an
/// empty list.
fn list_last<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let list = args
        .first()
        .ok_or_else(ExecutionError::missing_argument_or_target)?;
    let last = elements("last", list)?
        .last()
        .map(|item| item.clone_as_boxed());
    Ok(CowVal::owned(
        last.map_or_else(CelOptional::none, CelOptional::of),
    ))
}

/// The two list arguments of a `sets.*` function.
fn two_lists<'b, 'v>(
    function: &str,
    args: &'b [CowVal<'_, 'v>],
) -> Result<(Elements<'b, 'v>, Elements<'b, 'v>), ExecutionError> {
    match args {
        [a, b] => Ok((elements(function, a)?, elements(function, b)?)),
        _ => Err(ExecutionError::invalid_argument_count(2, args.len())),
    }
}

fn contains_all(haystack: &[&dyn Val], needles: &[&dyn Val]) -> bool {
    needles
        .iter()
        .all(|needle| haystack.iter().any(|item| item.equals(*needle)))
}

/// `sets.contains(a, b)`: every element of `b` is in `a`.
fn sets_contains<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let (a, b) = two_lists("sets.contains", &args)?;
    Ok(CowVal::owned(CelBool::from(contains_all(&a, &b))))
}

/// `sets.equivalent(a, b)`: `a` and `b` hold the same elements.
fn sets_equivalent<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let (a, b) = two_lists("sets.equivalent", &args)?;
    Ok(CowVal::owned(CelBool::from(
        contains_all(&a, &b) && contains_all(&b, &a),
    )))
}

/// `sets.intersects(a, b)`: `a` and `b` share an element.
fn sets_intersects<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let (a, b) = two_lists("sets.intersects", &args)?;
    let shared = b
        .iter()
        .any(|needle| a.iter().any(|item| item.equals(*needle)));
    Ok(CowVal::owned(CelBool::from(shared)))
}
