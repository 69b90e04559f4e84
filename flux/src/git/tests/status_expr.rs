use serde_json::{Value, json};

use super::event;
use crate::event::FluxEvent;
use crate::git::{CommitStatusExpr, commit_status_identifier};

/// The docs' example expression (flux-providers §7.2).
const DOCS_EXAMPLE: &str = "(event.involvedObject.kind + '/' + event.involvedObject.name + '/' \
    + event.metadata.foo + '/' + provider.metadata.uid.split('-').first().value()).lowerAscii()";

const PREFIX: &str = "failed to evaluate the spec.commitStatusExpr CEL expression for the event: ";

fn provider() -> Value {
    json!({
        "apiVersion": "notification.toolkit.fluxcd.io/v1beta3",
        "kind": "Provider",
        "metadata": {
            "name": "github",
            "namespace": "flux-system",
            "uid": "0c9c2e41-d2f9-4f9b-9c41-bebc1984d67a",
            "generation": 3
        },
        "spec": { "type": "github", "address": "https://github.com/foo/bar" }
    })
}

fn alert() -> Value {
    json!({
        "apiVersion": "notification.toolkit.fluxcd.io/v1beta3",
        "kind": "Alert",
        "metadata": { "name": "on-call", "namespace": "flux-system" },
        "spec": { "eventSeverity": "info", "eventMetadata": { "env": "Prod" } }
    })
}

fn notification() -> FluxEvent {
    event(
        "Kustomization",
        "flux-system",
        "gitops-system",
        "ApplySucceeded",
        &[("foo", "BAR")],
    )
}

fn eval(expr: &str) -> Result<String, String> {
    commit_status_identifier(expr, &notification(), &provider(), &alert())
        .map_err(|e| e.to_string())
}

#[test]
fn the_docs_example_evaluates() {
    assert_eq!(
        eval(DOCS_EXAMPLE).as_deref(),
        Ok("kustomization/gitops-system/bar/0c9c2e41")
    );
    let compiled = CommitStatusExpr::compile(DOCS_EXAMPLE).expect("the example compiles");
    assert_eq!(compiled.source(), DOCS_EXAMPLE);
    assert_eq!(
        compiled
            .evaluate(&notification(), &provider(), &alert())
            .as_deref(),
        Ok("kustomization/gitops-system/bar/0c9c2e41")
    );
}

#[test]
fn no_expression_gives_the_default_identifier() {
    assert_eq!(
        eval("").as_deref(),
        Ok("kustomization/gitops-system/0c9c2e41")
    );
}

#[test]
fn results_are_used_verbatim() {
    let table = [
        ("event.involvedObject.kind", "Kustomization"),
        ("event.severity + ':' + event.reason", "info:ApplySucceeded"),
        (
            "alert.metadata.name + '/' + alert.spec.eventMetadata.env",
            "on-call/Prod",
        ),
        ("provider.spec.type.upperAscii()", "GITHUB"),
        ("'a-b-c'.split('-').last().value()", "c"),
        ("[].first().hasValue() ? 'some' : 'none'", "none"),
        ("['x', 'y'].first().orValue('z')", "x"),
        (
            "provider.metadata.generation == 3 ? 'three' : 'other'",
            "three",
        ),
        ("event.timestamp == null ? 'zero' : 'set'", "zero"),
        ("has(event.metadata.foo) ? 'yes' : 'no'", "yes"),
        ("has(event.reportingInstance) ? 'yes' : 'no'", "no"),
        ("sets.contains(['a', 'b'], ['b']) ? 'yes' : 'no'", "yes"),
        (
            "sets.equivalent(['a', 'b'], ['b', 'a', 'a']) ? 'yes' : 'no'",
            "yes",
        ),
        ("sets.intersects(['a'], ['b']) ? 'yes' : 'no'", "no"),
        ("base64.encode(b'flux')", "Zmx1eA=="),
        ("['a', 'b'].join('+')", "a+b"),
    ];
    for (expr, want) in table {
        assert_eq!(eval(expr).as_deref(), Ok(want), "expression {expr}");
    }
}

#[test]
fn failures_carry_the_flux_prefix() {
    assert_eq!(
        eval("notification.involvedObject.name").unwrap_err(),
        format!(
            "{PREFIX}failed to compile expression: failed to parse the CEL expression \
             'notification.involvedObject.name': ERROR: <input>:1:1: undeclared reference to \
             'notification' (in container '')\n | notification.involvedObject.name\n | ^"
        )
    );

    assert_eq!(
        eval("event.metadata.missing").unwrap_err(),
        format!(
            "{PREFIX}failed to evaluate the CEL expression 'event.metadata.missing': \
             No such key: missing"
        )
    );

    assert_eq!(
        eval("1 + 1").unwrap_err(),
        format!("{PREFIX}failed to evaluate CEL expression as string: '1 + 1'")
    );
    assert_eq!(
        eval("event.metadata").unwrap_err(),
        format!("{PREFIX}failed to evaluate CEL expression as string: 'event.metadata'")
    );

    let syntax = eval("event.").unwrap_err();
    assert!(
        syntax.starts_with(&format!(
            "{PREFIX}failed to compile expression: failed to parse the CEL expression 'event.': "
        )),
        "{syntax}"
    );
    assert!(CommitStatusExpr::compile("(").is_err());
}

#[test]
fn undeclared_variables_fail_to_compile_as_in_cel_go() {
    // flux-providers §7.2: an unknown variable such as `notification` is a
    // compile failure, even in a branch that is never evaluated.
    let expr = "true ? 'x' : notification.involvedObject.name";
    assert_eq!(
        eval(expr).unwrap_err(),
        format!(
            "{PREFIX}failed to compile expression: failed to parse the CEL expression '{expr}': \
             ERROR: <input>:1:14: undeclared reference to 'notification' (in container '')\n \
             | {expr}\n | .............^"
        )
    );
    let two = CommitStatusExpr::compile("a + event.kind + b")
        .unwrap_err()
        .to_string();
    assert!(two.contains("1:1: undeclared reference to 'a'"), "{two}");
    assert!(two.contains("1:18: undeclared reference to 'b'"), "{two}");
    // Macro variables, type names and namespaced functions are declared.
    for fine in [
        "event.metadata.map(k, k).join(',')",
        "[event.reason].exists(r, r == 'x') ? 'a' : 'b'",
        "type(event.reason) == string ? 'a' : 'b'",
        "optional.of('x').value()",
        "sets.contains(['a'], []) ? base64.encode(b'x') : strings.quote('y')",
        "{'k': event.reason}['k']",
    ] {
        assert!(CommitStatusExpr::compile(fine).is_ok(), "expression {fine}");
    }
    // A macro variable is not declared outside its macro.
    assert!(CommitStatusExpr::compile("[1].all(x, x > 0) ? x : 'b'").is_err());
}
