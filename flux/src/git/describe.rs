//! The reason description and object names of the commit-status providers
//! (flux-providers §3.5, §3.7: `formatNameAndDescription`, `splitCamelcase`).

use std::sync::LazyLock;

use regex::Regex;

use crate::event::FluxEvent;

/// Go's `strings.ToLower`: every rune through `unicode.ToLower`, the simple
/// one-to-one Unicode mapping (no final-sigma rule, `İ` becomes `i`).
#[must_use]
pub fn go_lowercase(s: &str) -> String {
    s.chars()
        .map(|c| c.to_lowercase().next().unwrap_or(c))
        .collect()
}

/// The commit-status object name `lower(kind/name)`, e.g.
/// `kustomization/gitops-system` (Bitbucket `name`, PagerDuty summary).
#[must_use]
pub fn object_name(kind: &str, name: &str) -> String {
    go_lowercase(&format!("{kind}/{name}"))
}

/// The event's reason as lower-case words: `ReconciliationSucceeded` →
/// `reconciliation succeeded`, `V2Update` → `v 2 update`.
#[must_use]
pub fn describe_reason(reason: &str) -> String {
    go_lowercase(&split_camelcase(reason).join(" "))
}

/// `formatNameAndDescription`: the object name ([`object_name`]) and the
/// description ([`describe_reason`]) of an event, the description preceded
/// by `<cluster>: ` when the event's metadata names its cluster.
#[must_use]
pub fn name_and_description(event: &FluxEvent) -> (String, String) {
    let obj = &event.involved_object;
    let description = describe_reason(&event.reason);
    // Several clusters may write statuses on the same commit: say whose.
    let description = match event.metadata.get(crate::metadata::CLUSTER_KEY) {
        Some(cluster) if !cluster.is_empty() => format!("{cluster}: {description}"),
        _ => description,
    };
    (object_name(&obj.kind, &obj.name), description)
}

/// The character classes `splitCamelcase` groups runes by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// General category Ll (Go `unicode.IsLower`).
    Lower,
    /// General category Lu (Go `unicode.IsUpper`).
    Upper,
    /// General category Nd (Go `unicode.IsDigit`).
    Digit,
    /// Anything else.
    Other,
}

static LOWER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\p{Ll}$").expect("\\p{Ll} is a valid regex"));
static UPPER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\p{Lu}$").expect("\\p{Lu} is a valid regex"));
static DIGIT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\p{Nd}$").expect("\\p{Nd} is a valid regex"));

fn class_of(c: char) -> Class {
    let mut buf = [0u8; 4];
    let s = c.encode_utf8(&mut buf);
    if LOWER.is_match(s) {
        Class::Lower
    } else if UPPER.is_match(s) {
        Class::Upper
    } else if DIGIT.is_match(s) {
        Class::Digit
    } else {
        Class::Other
    }
}

/// Go's `splitCamelcase`: runs of lower-case letters, upper-case letters,
/// decimal digits and other runes, with the last rune of an upper-case run
/// moved onto a following lower-case run (`PDFLoader` → `PDF`, `Loader`).
///
/// Classes are the Unicode general categories Ll, Lu and Nd, as in Go (not
/// Rust's wider `is_lowercase` / `is_uppercase` / `is_numeric`).
#[must_use]
pub fn split_camelcase(src: &str) -> Vec<String> {
    let mut runs: Vec<Vec<char>> = Vec::new();
    let mut last = None;
    for c in src.chars() {
        let class = class_of(c);
        match runs.last_mut() {
            Some(run) if last == Some(class) => run.push(c),
            _ => runs.push(vec![c]),
        }
        last = Some(class);
    }
    for i in 0..runs.len().saturating_sub(1) {
        let starts_upper = runs[i]
            .first()
            .is_some_and(|&c| class_of(c) == Class::Upper);
        let next_lower = runs[i + 1]
            .first()
            .is_some_and(|&c| class_of(c) == Class::Lower);
        if starts_upper
            && next_lower
            && let Some(moved) = runs[i].pop()
        {
            runs[i + 1].insert(0, moved);
        }
    }
    runs.into_iter()
        .filter(|run| !run.is_empty())
        .map(|run| run.into_iter().collect())
        .collect()
}
