//! Which clusters an Alert hears from: Herald's annotations on an unchanged
//! Flux Alert.
//!
//! Every Herald-specific setting on a Flux object is an annotation in one
//! domain, [`ANNOTATION_DOMAIN`]. An Alert matches events from every cluster
//! unless it selects some:
//!
//! - `herald.dev/clusters: "prod-*, staging"`: cluster names, each a glob
//!   (`*` any run of characters, `?` one character);
//! - `herald.dev/cluster-selector: "env=prod, region in (eu, us)"`: a
//!   Kubernetes label selector over the labels the clusters file gives each
//!   cluster (`k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`,
//!   `!k`).
//!
//! With both, a cluster must pass both. An annotation that cannot be parsed
//! makes the Alert match no cluster (a problem says why): sending a team
//! another team's events is worse than sending nothing.

use std::collections::BTreeMap;
use std::fmt;

/// The one domain of Herald's annotations.
pub const ANNOTATION_DOMAIN: &str = "herald.dev";

/// The annotation listing the cluster names (globs) an Alert hears from.
pub const CLUSTERS_ANNOTATION: &str = "herald.dev/clusters";

/// The annotation selecting clusters by their labels.
pub const CLUSTER_SELECTOR_ANNOTATION: &str = "herald.dev/cluster-selector";

/// One term of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Term {
    Equal(String, String),
    NotEqual(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

// === impl Term ===

impl Term {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Self::Equal(k, v) => labels.get(k) == Some(v),
            Self::NotEqual(k, v) => labels.get(k) != Some(v),
            Self::In(k, values) => labels.get(k).is_some_and(|l| values.contains(l)),
            Self::NotIn(k, values) => !labels.get(k).is_some_and(|l| values.contains(l)),
            Self::Exists(k) => labels.contains_key(k),
            Self::NotExists(k) => !labels.contains_key(k),
        }
    }
}

/// A Kubernetes label selector in its string form.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    terms: Vec<Term>,
}

// === impl Selector ===

impl Selector {
    /// Parses `env=prod, region in (eu, us), !canary`.
    ///
    /// # Errors
    ///
    /// A term that is not one of the selector forms, in words.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut terms = Vec::new();
        for raw in split_terms(text) {
            let term = raw.trim();
            if term.is_empty() {
                continue;
            }
            terms.push(parse_term(term)?);
        }
        Ok(Self { terms })
    }

    /// Whether `labels` pass every term (an empty selector selects all).
    #[must_use]
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.terms.iter().all(|t| t.matches(labels))
    }
}

/// Splits on commas outside parentheses.
fn split_terms(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                out.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&text[start..]);
    out
}

fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

fn parse_term(term: &str) -> Result<Term, String> {
    let bad = |why: &str| format!("{term:?}: {why}");
    let key_of = |key: &str| -> Result<String, String> {
        let key = key.trim();
        if valid_key(key) {
            Ok(key.to_owned())
        } else {
            Err(bad("not a label key"))
        }
    };
    if let Some(key) = term.strip_prefix('!') {
        return Ok(Term::NotExists(key_of(key)?));
    }
    if let Some((key, value)) = term.split_once("!=") {
        return Ok(Term::NotEqual(key_of(key)?, value.trim().to_owned()));
    }
    if let Some((key, value)) = term.split_once("==").or_else(|| term.split_once('=')) {
        return Ok(Term::Equal(key_of(key)?, value.trim().to_owned()));
    }
    for (word, set) in [(" notin ", false), (" in ", true)] {
        if let Some((key, rest)) = term.split_once(word) {
            let values = rest
                .trim()
                .strip_prefix('(')
                .and_then(|r| r.strip_suffix(')'))
                .ok_or_else(|| bad("a set must be in parentheses: k in (a, b)"))?;
            let values: Vec<String> = values
                .split(',')
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
                .collect();
            let key = key_of(key)?;
            return Ok(if set {
                Term::In(key, values)
            } else {
                Term::NotIn(key, values)
            });
        }
    }
    Ok(Term::Exists(key_of(term)?))
}

/// Whether `name` matches `pattern` (`*` any run, `?` one character).
#[must_use]
pub fn glob_matches(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// The clusters an Alert hears from, from its annotations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterSelection {
    /// Name globs; empty: any name.
    names: Vec<String>,
    /// Label selector; `None`: any labels.
    selector: Option<Selector>,
    /// An annotation could not be parsed: no cluster.
    broken: bool,
}

// === impl ClusterSelection ===

impl ClusterSelection {
    /// Reads the selection from an Alert's annotations; the second value
    /// says what could not be parsed.
    #[must_use]
    pub fn from_annotations(annotations: &BTreeMap<String, String>) -> (Self, Vec<String>) {
        let mut selection = Self::default();
        let mut problems = Vec::new();
        if let Some(names) = annotations.get(CLUSTERS_ANNOTATION) {
            selection.names = names
                .split(',')
                .map(|n| n.trim().to_owned())
                .filter(|n| !n.is_empty())
                .collect();
            if selection.names.is_empty() {
                selection.broken = true;
                problems.push(format!(
                    "annotation {CLUSTERS_ANNOTATION} names no cluster; the Alert matches none"
                ));
            }
        }
        if let Some(text) = annotations.get(CLUSTER_SELECTOR_ANNOTATION) {
            match Selector::parse(text) {
                Ok(selector) => selection.selector = Some(selector),
                Err(why) => {
                    selection.broken = true;
                    problems.push(format!(
                        "annotation {CLUSTER_SELECTOR_ANNOTATION} is not a label selector \
                         ({why}); the Alert matches no cluster"
                    ));
                }
            }
        }
        (selection, problems)
    }

    /// Whether the Alert hears from every cluster.
    #[must_use]
    pub fn is_all(&self) -> bool {
        !self.broken && self.names.is_empty() && self.selector.is_none()
    }

    /// Whether the Alert selects by labels.
    #[must_use]
    pub fn uses_labels(&self) -> bool {
        self.selector.is_some()
    }

    /// Whether events of `cluster` (with `labels`, when the clusters file
    /// gives it some) reach the Alert.
    #[must_use]
    pub fn covers(&self, cluster: &str, labels: Option<&BTreeMap<String, String>>) -> bool {
        if self.broken {
            return false;
        }
        if !self.names.is_empty() && !self.names.iter().any(|p| glob_matches(p, cluster)) {
            return false;
        }
        match &self.selector {
            None => true,
            Some(selector) => selector.matches(labels.unwrap_or(&BTreeMap::new())),
        }
    }
}

/// `names: prod-*, staging; labels: env=prod`, or `all clusters`.
impl fmt::Display for ClusterSelection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.broken {
            return f.write_str("no cluster (an annotation is invalid)");
        }
        if self.is_all() {
            return f.write_str("all clusters");
        }
        let mut parts = Vec::new();
        if !self.names.is_empty() {
            parts.push(format!("names {}", self.names.join(", ")));
        }
        if self.selector.is_some() {
            parts.push("labels".to_owned());
        }
        f.write_str(&parts.join(" and "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn globs() {
        assert!(glob_matches("prod-*", "prod-eu"));
        assert!(glob_matches("*", ""));
        assert!(glob_matches("p?od-*-1", "prod-eu-1"));
        assert!(!glob_matches("prod-*", "staging"));
        assert!(glob_matches("*eu*", "prod-eu-west"));
        assert!(!glob_matches("prod", "prod-eu"));
    }

    #[test]
    fn selectors() {
        let s = Selector::parse("env=prod, region in (eu, us), !canary").unwrap();
        assert!(s.matches(&labels(&[("env", "prod"), ("region", "eu")])));
        assert!(!s.matches(&labels(&[("env", "prod"), ("region", "ap")])));
        assert!(!s.matches(&labels(&[
            ("env", "prod"),
            ("region", "eu"),
            ("canary", "")
        ])));
        let s = Selector::parse("tier notin (edge), team, env!=dev").unwrap();
        assert!(s.matches(&labels(&[("team", "a"), ("env", "prod")])));
        assert!(!s.matches(&labels(&[("team", "a"), ("tier", "edge")])));
        assert!(!s.matches(&labels(&[("env", "prod")])));
        assert!(Selector::parse("region in eu").is_err());
        assert!(Selector::parse("a b").is_err());
    }

    #[test]
    fn selections() {
        let (all, problems) = ClusterSelection::from_annotations(&BTreeMap::new());
        assert!(all.is_all() && problems.is_empty());
        assert!(all.covers("any", None));
        let (s, problems) = ClusterSelection::from_annotations(&labels(&[
            (CLUSTERS_ANNOTATION, "prod-*, staging"),
            (CLUSTER_SELECTOR_ANNOTATION, "env=prod"),
        ]));
        assert!(problems.is_empty());
        assert!(s.covers("prod-eu", Some(&labels(&[("env", "prod")]))));
        assert!(!s.covers("prod-eu", None));
        assert!(!s.covers("dev", Some(&labels(&[("env", "prod")]))));
        let (broken, problems) = ClusterSelection::from_annotations(&labels(&[(
            CLUSTER_SELECTOR_ANNOTATION,
            "region in eu",
        )]));
        assert_eq!(problems.len(), 1);
        assert!(!broken.covers("prod-eu", Some(&labels(&[("region", "eu")]))));
    }
}
