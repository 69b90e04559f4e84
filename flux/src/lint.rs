//! Fields an API server would refuse: every field of an Alert, Provider or
//! Secret manifest that its schema does not have, with the field it most
//! likely means. `kubectl apply` validates strictly (unknown fields are
//! errors) since Kubernetes 1.27; a folder read by Herald does the same, so
//! a misspelled `eventSeverty` is a problem, not an Alert that silently
//! means `info`.

use serde_json::Value;

/// The fields of `metadata` in any object.
const METADATA: &[&str] = &[
    "name",
    "namespace",
    "labels",
    "annotations",
    "uid",
    "generation",
    "resourceVersion",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "finalizers",
    "generateName",
    "managedFields",
    "ownerReferences",
    "selfLink",
];

const ALERT_SPEC: &[&str] = &[
    "providerRef",
    "eventSeverity",
    "eventSources",
    "inclusionList",
    "exclusionList",
    "eventMetadata",
    "summary",
    "suspend",
];

const EVENT_SOURCE: &[&str] = &["apiVersion", "kind", "name", "namespace", "matchLabels"];

const PROVIDER_SPEC: &[&str] = &[
    "type",
    "interval",
    "channel",
    "username",
    "address",
    "timeout",
    "proxy",
    "proxySecretRef",
    "secretRef",
    "certSecretRef",
    "suspend",
    "commitStatusExpr",
    "serviceAccountName",
];

const REFERENCE: &[&str] = &["name"];

/// Every unknown field of the manifest `value` (an Alert, Provider or
/// Secret), as `unknown field spec.eventSeverty (did you mean
/// "eventSeverity"?)`, with the field's name for finding its line.
#[must_use]
pub fn unknown_fields(value: &Value) -> Vec<Unknown> {
    let mut out = Vec::new();
    let kind = value
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let top: &[&str] = match kind {
        "Secret" => &[
            "apiVersion",
            "kind",
            "metadata",
            "data",
            "stringData",
            "type",
            "immutable",
        ],
        _ => &["apiVersion", "kind", "metadata", "spec", "status"],
    };
    check(value, "", top, &mut out);
    if let Some(metadata) = value.get("metadata") {
        check(metadata, "metadata.", METADATA, &mut out);
        // Herald's own annotations: a misspelled one would silently do nothing.
        let annotations = metadata.get("annotations").and_then(Value::as_object);
        for key in annotations.into_iter().flatten().map(|(k, _)| k) {
            let Some(name) = key.strip_prefix("herald.dev/") else {
                continue;
            };
            let known: Vec<&str> = match kind {
                "Alert" => [
                    "clusters",
                    "cluster-selector",
                    "reasons",
                    "exclude-reasons",
                    "severities",
                    "template",
                    "slack-blocks",
                    "slack-thread",
                ]
                .into_iter()
                .chain(
                    crate::grouping::ANNOTATIONS
                        .iter()
                        .filter_map(|a| a.strip_prefix("herald.dev/")),
                )
                .collect(),
                "Provider" => vec!["endpoint", "template", "slack-blocks", "slack-thread"],
                _ => Vec::new(),
            };
            if known.contains(&name) {
                continue;
            }
            let hint = crate::suggest::closest(name, known.iter().copied())
                .map(|s| format!(" (did you mean \"herald.dev/{s}\"?)"))
                .unwrap_or_default();
            out.push(Unknown {
                field: key.clone(),
                reason: format!("unknown Herald annotation {key}{hint}"),
            });
        }
    }
    let Some(spec) = value.get("spec") else {
        return out;
    };
    match kind {
        "Alert" => {
            check(spec, "spec.", ALERT_SPEC, &mut out);
            if let Some(reference) = spec.get("providerRef") {
                check(reference, "spec.providerRef.", REFERENCE, &mut out);
            }
            let sources = spec.get("eventSources").and_then(Value::as_array);
            for (i, source) in sources.into_iter().flatten().enumerate() {
                check(
                    source,
                    &format!("spec.eventSources[{i}]."),
                    EVENT_SOURCE,
                    &mut out,
                );
            }
        }
        "Provider" => {
            check(spec, "spec.", PROVIDER_SPEC, &mut out);
            for field in ["secretRef", "certSecretRef", "proxySecretRef"] {
                if let Some(reference) = spec.get(field) {
                    check(reference, &format!("spec.{field}."), REFERENCE, &mut out);
                }
            }
        }
        _ => {}
    }
    out
}

/// An unknown field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unknown {
    /// The field's own name (`eventSeverty`).
    pub field: String,
    /// What is wrong, with the field's path and its likely meaning.
    pub reason: String,
}

fn check(object: &Value, prefix: &str, known: &[&str], out: &mut Vec<Unknown>) {
    let Some(map) = object.as_object() else {
        return;
    };
    for key in map.keys() {
        if known.contains(&key.as_str()) {
            continue;
        }
        let hint = crate::suggest::closest(key, known.iter().copied())
            .map(|s| format!(" (did you mean {s:?}?)"))
            .unwrap_or_default();
        out.push(Unknown {
            field: key.clone(),
            reason: format!("unknown field {prefix}{key}{hint}"),
        });
    }
}

/// The 1-based line of the first `field:` key at or after line `from`
/// (1-based) in `text`, if any.
#[must_use]
pub fn line_of(text: &str, from: usize, field: &str) -> Option<usize> {
    text.lines()
        .enumerate()
        .skip(from.saturating_sub(1))
        .find(|(_, line)| {
            let trimmed = line.trim_start().trim_start_matches("- ");
            let trimmed = trimmed.trim_start_matches(['{', ' ']);
            trimmed
                .strip_prefix(field)
                .or_else(|| {
                    trimmed
                        .strip_prefix('"')
                        .and_then(|t| t.strip_prefix(field))
                        .and_then(|t| t.strip_prefix('"'))
                })
                .is_some_and(|rest| rest.trim_start().starts_with(':'))
                || line.contains(&format!(" {field}:"))
                || line.contains(&format!("{{{field}:"))
        })
        .map(|(i, _)| i + 1)
}

/// The 1-based first line of each non-empty YAML document of `text`.
#[must_use]
pub fn document_lines(text: &str) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut current: Option<usize> = None;
    let mut has_content = false;
    for (i, line) in text.lines().enumerate() {
        if line.starts_with("---") {
            if has_content && let Some(start) = current {
                starts.push(start);
            }
            current = None;
            has_content = false;
            continue;
        }
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || line.starts_with("...") {
            continue;
        }
        if current.is_none() {
            current = Some(i + 1);
        }
        has_content = true;
    }
    if has_content && let Some(start) = current {
        starts.push(start);
    }
    starts
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn misspelled_fields_are_named_with_their_likely_meaning() {
        let alert = json!({
            "apiVersion": "notification.toolkit.fluxcd.io/v1beta3",
            "kind": "Alert",
            "metadata": {"name": "a", "namespce": "x"},
            "spec": {
                "providerRef": {"name": "slack", "nme": "x"},
                "eventSeverty": "error",
                "eventSources": [{"kind": "Kustomization", "name": "*", "matchLabel": {}}],
            },
        });
        let reasons: Vec<String> = unknown_fields(&alert)
            .into_iter()
            .map(|u| u.reason)
            .collect();
        assert_eq!(
            reasons,
            [
                "unknown field metadata.namespce (did you mean \"namespace\"?)",
                "unknown field spec.eventSeverty (did you mean \"eventSeverity\"?)",
                "unknown field spec.providerRef.nme (did you mean \"name\"?)",
                "unknown field spec.eventSources[0].matchLabel (did you mean \"matchLabels\"?)",
            ]
        );
        let provider =
            json!({"kind": "Provider", "spec": {"type": "slack", "chanel": "x", "colour": 1}});
        let reasons: Vec<String> = unknown_fields(&provider)
            .into_iter()
            .map(|u| u.reason)
            .collect();
        assert_eq!(
            reasons,
            [
                "unknown field spec.chanel (did you mean \"channel\"?)",
                "unknown field spec.colour",
            ]
        );
        let annotated = json!({"kind": "Alert", "metadata": {"annotations": {
            "herald.dev/reason": "x", "herald.dev/clusters": "a", "example.com/other": "y"}}});
        assert_eq!(
            unknown_fields(&annotated)[0].reason,
            "unknown Herald annotation herald.dev/reason (did you mean \"herald.dev/reasons\"?)"
        );
        assert_eq!(unknown_fields(&annotated).len(), 1);
        let templated = json!({"kind": "Provider", "metadata": {"annotations": {
            "herald.dev/template": "x", "herald.dev/slack-blocks": "[]", "herald.dev/templates": "x"}}});
        let found = unknown_fields(&templated);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(
            found[0].reason,
            "unknown Herald annotation herald.dev/templates (did you mean \"herald.dev/template\"?)"
        );
        let mut flood = serde_json::Map::new();
        for name in crate::grouping::ANNOTATIONS {
            flood.insert(name.to_owned(), json!("x"));
        }
        flood.insert("herald.dev/group-intervall".to_owned(), json!("1m"));
        let flooded = json!({"kind": "Alert", "metadata": {"annotations": flood}});
        let reasons: Vec<String> = unknown_fields(&flooded)
            .into_iter()
            .map(|u| u.reason)
            .collect();
        assert_eq!(
            reasons,
            [
                "unknown Herald annotation herald.dev/group-intervall (did you mean \"herald.dev/group-interval\"?)"
            ]
        );
        let secret = json!({"kind": "Secret", "stringdata": {}});
        assert_eq!(
            unknown_fields(&secret)[0].reason,
            "unknown field stringdata (did you mean \"stringData\"?)"
        );
    }

    #[test]
    fn slack_thread_is_known_on_alerts_and_providers() {
        for kind in ["Alert", "Provider"] {
            let known = json!({"kind": kind, "metadata": {"annotations": {
                "herald.dev/slack-thread": "true"}}});
            assert!(unknown_fields(&known).is_empty(), "{kind}");
            let misspelled = json!({"kind": kind, "metadata": {"annotations": {
                "herald.dev/slack-threads": "true"}}});
            assert_eq!(
                unknown_fields(&misspelled)[0].reason,
                "unknown Herald annotation herald.dev/slack-threads (did you mean \"herald.dev/slack-thread\"?)"
            );
        }
    }

    #[test]
    fn documents_and_fields_are_found_by_line() {
        let text = "# header\n---\napiVersion: v1\nkind: Secret\n---\n\n---\nkind: Alert\nspec:\n  eventSeverty: error\n";
        assert_eq!(document_lines(text), [3, 8]);
        assert_eq!(line_of(text, 8, "eventSeverty"), Some(10));
        assert_eq!(
            line_of("spec: {type: slack, chanel: x}\n", 1, "chanel"),
            Some(1)
        );
    }
}
