//! The one compile-time check of cel-go that matters for
//! `spec.commitStatusExpr`: references to undeclared variables. cel-go
//! rejects `notification.name` when the expression is compiled, even in a
//! branch that would never be evaluated; the `cel` crate only fails when the
//! reference is evaluated. This walk restores the compile-time error.

use cel::common::ast::{EntryExpr, Expr, IdedExpr};

/// Identifiers that name types in the CEL standard library.
const TYPE_NAMES: [&str; 12] = [
    "bool",
    "bytes",
    "double",
    "dyn",
    "int",
    "list",
    "map",
    "null_type",
    "optional_type",
    "string",
    "type",
    "uint",
];

/// Namespaces of the global functions the environment registers
/// (`sets.contains`, `optional.of`, `base64.encode`, `strings.quote`).
const NAMESPACES: [&str; 4] = ["sets", "optional", "base64", "strings"];

/// cel-go's error for each reference to a variable outside `declared`, in
/// source order: `ERROR: <input>:{line}:{col}: undeclared reference to
/// '{name}' (in container '')` followed by the source line and a caret.
pub(crate) fn undeclared_references(
    source: &str,
    expr: &IdedExpr,
    offset_of: impl Fn(u64) -> Option<u32>,
    declared: &[&str],
) -> Vec<String> {
    let mut found = Vec::new();
    let mut bound = Vec::new();
    walk(expr, declared, &mut bound, &mut found);
    let mut located: Vec<(u32, String)> = found
        .into_iter()
        .map(|(id, name)| (offset_of(id).unwrap_or(0), name))
        .collect();
    located.sort();
    located
        .into_iter()
        .map(|(offset, name)| report(source, offset, &name))
        .collect()
}

fn walk(
    expr: &IdedExpr,
    declared: &[&str],
    bound: &mut Vec<String>,
    found: &mut Vec<(u64, String)>,
) {
    match &expr.expr {
        Expr::Ident(name) => {
            let known = declared.contains(&name.as_str())
                || TYPE_NAMES.contains(&name.as_str())
                || name.starts_with('@')
                || bound.iter().any(|b| b == name);
            if !known {
                found.push((expr.id, name.clone()));
            }
        }
        Expr::Call(call) => {
            if let Some(target) = &call.target {
                let namespaced = matches!(&target.expr, Expr::Ident(ns)
                    if NAMESPACES.contains(&ns.as_str()) && !declared.contains(&ns.as_str()));
                if !namespaced {
                    walk(target, declared, bound, found);
                }
            }
            for arg in &call.args {
                walk(arg, declared, bound, found);
            }
        }
        Expr::Comprehension(comp) => {
            walk(&comp.iter_range, declared, bound, found);
            walk(&comp.accu_init, declared, bound, found);
            let depth = bound.len();
            bound.push(comp.iter_var.clone());
            bound.extend(comp.iter_var2.clone());
            bound.push(comp.accu_var.clone());
            for part in [&comp.loop_cond, &comp.loop_step, &comp.result] {
                walk(part, declared, bound, found);
            }
            bound.truncate(depth);
        }
        Expr::List(list) => {
            for element in &list.elements {
                walk(element, declared, bound, found);
            }
        }
        Expr::Map(map) => entries(&map.entries, declared, bound, found),
        Expr::Struct(object) => entries(&object.entries, declared, bound, found),
        Expr::Select(select) => walk(&select.operand, declared, bound, found),
        Expr::Literal(_) | Expr::Unspecified => {}
    }
}

fn entries(
    entries: &[cel::common::ast::IdedEntryExpr],
    declared: &[&str],
    bound: &mut Vec<String>,
    found: &mut Vec<(u64, String)>,
) {
    for entry in entries {
        match &entry.expr {
            EntryExpr::MapEntry(e) => {
                walk(&e.key, declared, bound, found);
                walk(&e.value, declared, bound, found);
            }
            EntryExpr::StructField(f) => walk(&f.value, declared, bound, found),
        }
    }
}

/// One cel-go issue, located at the code-point `offset` of `source`.
fn report(source: &str, offset: u32, name: &str) -> String {
    let offset = usize::try_from(offset).unwrap_or(usize::MAX);
    let (mut line, mut column, mut text) = (1, 1, "");
    let mut seen = 0;
    for source_line in source.split('\n') {
        let len = source_line.chars().count();
        if offset <= seen + len {
            column = offset - seen + 1;
            text = source_line;
            break;
        }
        seen += len + 1;
        line += 1;
    }
    format!(
        "ERROR: <input>:{line}:{column}: undeclared reference to '{name}' (in container '')\n | {text}\n | {}^",
        ".".repeat(column - 1)
    )
}
