//! Label and field selectors as the API server reads them.

use serde_json::Value;

use super::store::ApiError;

/// `a,b in (x,y),c` split at the commas outside parentheses.
fn terms(selector: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0_i32, 0);
    for (i, c) in selector.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(selector[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(selector[start..].trim());
    out.into_iter().filter(|t| !t.is_empty()).collect()
}

fn set(values: &str) -> Vec<&str> {
    values
        .trim()
        .trim_start_matches('(')
        .trim_end_matches(')')
        .split(',')
        .map(str::trim)
        .collect()
}

/// Whether `object`'s labels match `selector` (`a=b`, `a==b`, `a!=b`, `a`,
/// `!a`, `a in (x,y)`, `a notin (x,y)`).
#[must_use]
pub fn labels_match(selector: &str, object: &Value) -> bool {
    let labels = &object["metadata"]["labels"];
    let label = |k: &str| labels.get(k.trim()).and_then(Value::as_str);
    terms(selector).into_iter().all(|term| {
        if let Some((k, v)) = term.split_once(" notin ") {
            label(k).is_none_or(|l| !set(v).contains(&l))
        } else if let Some((k, v)) = term.split_once(" in ") {
            label(k).is_some_and(|l| set(v).contains(&l))
        } else if let Some((k, v)) = term.split_once("!=") {
            label(k) != Some(v.trim())
        } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
            label(k) == Some(v.trim())
        } else if let Some(k) = term.strip_prefix('!') {
            label(k).is_none()
        } else {
            label(term).is_some()
        }
    })
}

/// Whether `object` matches the field selector (`metadata.name=x`,
/// `metadata.namespace!=y`, any dotted path to a scalar).
///
/// # Errors
///
/// `400 BadRequest` for a term that is not `path=value` or `path!=value`.
pub fn fields_match(selector: &str, object: &Value) -> Result<bool, ApiError> {
    for term in terms(selector) {
        let (path, value, equal) = if let Some((p, v)) = term.split_once("!=") {
            (p, v, false)
        } else if let Some((p, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
            (p, v, true)
        } else {
            return Err(ApiError::new(
                400,
                "BadRequest",
                format!("invalid field selector: {term}"),
            ));
        };
        let found = path
            .trim()
            .split('.')
            .try_fold(object, |v, k| v.get(k))
            .map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .unwrap_or_default();
        if (found == value.trim()) != equal {
            return Ok(false);
        }
    }
    Ok(true)
}
