//! The functions Herald adds to Go's built-ins: the part of Sprig that Helm
//! and Flux users reach for in notification text, with Sprig's names and
//! argument order (the value being worked on comes last, so it can be
//! piped: `{{ .Message | trunc 80 | quote }}`).
//!
//! Where Sprig would produce bytes that are not text (`trunc` cutting a
//! character in two) these work on characters. A missing value (`<no
//! value>`) is the empty string to them.

use std::collections::BTreeMap;
use std::sync::Arc;

use gotmpl::{FuncMap, TemplateError, Value};

use super::layout;

type Result<T> = gotmpl::Result<T>;

fn count(name: &str, args: &[Value], expected: usize) -> Result<()> {
    if args.len() == expected {
        Ok(())
    } else {
        Err(TemplateError::ArgCount {
            name: name.to_owned(),
            expected,
            got: args.len(),
        })
    }
}

/// A value as text, as Go's `%v` prints it (a missing value is empty).
fn text(value: &Value) -> String {
    match value {
        Value::Nil => String::new(),
        Value::String(s) => s.to_string(),
        other => other.to_string(),
    }
}

fn string(s: impl Into<Arc<str>>) -> Value {
    Value::String(s.into())
}

fn integer(name: &str, value: &Value) -> Result<i64> {
    value.as_int().ok_or_else(|| {
        TemplateError::Exec(format!(
            "{name}: expected an integer, got {}",
            value.type_name()
        ))
    })
}

/// Registers `f` taking one text argument.
fn unary(map: &mut FuncMap, name: &'static str, f: fn(&str) -> String) {
    map.insert(
        name.to_owned(),
        Arc::new(move |args: &[Value]| {
            count(name, args, 1)?;
            Ok(string(f(&text(&args[0]))))
        }),
    );
}

/// Registers `f` taking two text arguments (the subject last).
fn binary(map: &mut FuncMap, name: &'static str, f: fn(&str, &str) -> Value) {
    map.insert(
        name.to_owned(),
        Arc::new(move |args: &[Value]| {
            count(name, args, 2)?;
            Ok(f(&text(&args[0]), &text(&args[1])))
        }),
    );
}

/// Go's `strings.Title`: the first letter of each word in upper case.
fn title(s: &str) -> String {
    let separator = |c: char| {
        if c.is_ascii() {
            !(c.is_ascii_alphanumeric() || c == '_')
        } else {
            !c.is_alphanumeric() && c.is_whitespace()
        }
    };
    let mut previous = ' ';
    s.chars()
        .flat_map(|c| {
            let upper = separator(previous);
            previous = c;
            let mapped: Vec<char> = if upper {
                c.to_uppercase().collect()
            } else {
                vec![c]
            };
            mapped
        })
        .collect()
}

/// Go's `strconv.Quote`.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if c.is_control() && u32::from(c) < 0x80 => {
                out.push_str(&format!("\\x{:02x}", u32::from(c)));
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Sprig's `empty`: nil, false, zero, and empty strings, lists and maps.
fn is_empty(value: &Value) -> bool {
    !value.is_truthy()
}

fn to_json(value: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match value {
        Value::Nil | Value::Function(_) => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::Int(n) => J::from(*n),
        Value::Uint(n) => J::from(*n),
        Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        Value::String(s) => J::String(s.to_string()),
        Value::List(items) => J::Array(items.iter().map(to_json).collect()),
        Value::Map(m) => J::Object(m.iter().map(|(k, v)| (k.to_string(), to_json(v))).collect()),
    }
}

/// `s` with `n` spaces before each line.
fn indent(n: i64, s: &str) -> String {
    let pad = " ".repeat(usize::try_from(n).unwrap_or(0));
    format!("{pad}{}", s.replace('\n', &format!("\n{pad}")))
}

fn list(value: &Value) -> Vec<String> {
    match value {
        Value::List(items) => items.iter().map(text).collect(),
        Value::Nil => Vec::new(),
        other => vec![text(other)],
    }
}

/// The functions, to register before parsing.
#[allow(clippy::too_many_lines)]
pub(super) fn functions() -> FuncMap {
    let mut map = FuncMap::new();
    unary(&mut map, "upper", str::to_uppercase);
    unary(&mut map, "lower", str::to_lowercase);
    unary(&mut map, "trim", |s| s.trim().to_owned());
    unary(&mut map, "title", title);
    binary(&mut map, "trimPrefix", |p, s| {
        string(s.strip_prefix(p).unwrap_or(s))
    });
    binary(&mut map, "trimSuffix", |p, s| {
        string(s.strip_suffix(p).unwrap_or(s))
    });
    binary(&mut map, "contains", |sub, s| Value::Bool(s.contains(sub)));
    binary(&mut map, "hasPrefix", |p, s| Value::Bool(s.starts_with(p)));
    binary(&mut map, "hasSuffix", |p, s| Value::Bool(s.ends_with(p)));
    binary(&mut map, "splitList", |sep, s| {
        Value::List(s.split(sep).map(string).collect())
    });
    binary(&mut map, "split", |sep, s| {
        let parts: BTreeMap<Arc<str>, Value> = s
            .split(sep)
            .enumerate()
            .map(|(i, part)| (Arc::from(format!("_{i}")), string(part)))
            .collect();
        Value::Map(Arc::new(parts))
    });
    map.insert(
        "replace".to_owned(),
        Arc::new(|args: &[Value]| {
            count("replace", args, 3)?;
            let (old, new, s) = (text(&args[0]), text(&args[1]), text(&args[2]));
            Ok(string(s.replace(&old, &new)))
        }),
    );
    map.insert(
        "default".to_owned(),
        Arc::new(|args: &[Value]| match args {
            [default] => Ok(default.clone()),
            [default, given] if is_empty(given) => Ok(default.clone()),
            [_, given] => Ok(given.clone()),
            _ => count("default", args, 2).map(|()| Value::Nil),
        }),
    );
    map.insert(
        "empty".to_owned(),
        Arc::new(|args: &[Value]| {
            count("empty", args, 1)?;
            Ok(Value::Bool(is_empty(&args[0])))
        }),
    );
    map.insert(
        "join".to_owned(),
        Arc::new(|args: &[Value]| {
            count("join", args, 2)?;
            Ok(string(list(&args[1]).join(&text(&args[0]))))
        }),
    );
    map.insert(
        "trunc".to_owned(),
        Arc::new(|args: &[Value]| {
            count("trunc", args, 2)?;
            let n = integer("trunc", &args[0])?;
            let s = text(&args[1]);
            let chars = i64::try_from(s.chars().count()).unwrap_or(i64::MAX);
            let kept: String = if n >= 0 && chars > n {
                s.chars().take(usize::try_from(n).unwrap_or(0)).collect()
            } else if n < 0 && chars + n > 0 {
                s.chars()
                    .skip(usize::try_from(chars + n).unwrap_or(0))
                    .collect()
            } else {
                s
            };
            Ok(string(kept))
        }),
    );
    for (name, quote) in [
        ("quote", go_quote as fn(&str) -> String),
        ("squote", |s: &str| format!("'{s}'")),
    ] {
        map.insert(
            name.to_owned(),
            Arc::new(move |args: &[Value]| {
                let quoted: Vec<String> = args
                    .iter()
                    .filter(|a| !matches!(a, Value::Nil))
                    .map(|a| quote(&text(a)))
                    .collect();
                Ok(string(quoted.join(" ")))
            }),
        );
    }
    map.insert(
        "toJson".to_owned(),
        Arc::new(|args: &[Value]| {
            count("toJson", args, 1)?;
            let json = crate::gojson::to_vec(&to_json(&args[0]));
            Ok(string(String::from_utf8_lossy(&json).into_owned()))
        }),
    );
    for (name, newline) in [("indent", ""), ("nindent", "\n")] {
        map.insert(
            name.to_owned(),
            Arc::new(move |args: &[Value]| {
                count(name, args, 2)?;
                let n = integer(name, &args[0])?;
                Ok(string(format!("{newline}{}", indent(n, &text(&args[1])))))
            }),
        );
    }
    map.insert(
        "now".to_owned(),
        Arc::new(|args: &[Value]| {
            count("now", args, 0)?;
            let now = jiff::Timestamp::now();
            Ok(string(layout::format(
                "2006-01-02 15:04:05.999999999 -0700 MST",
                now,
            )))
        }),
    );
    map.insert(
        "date".to_owned(),
        Arc::new(|args: &[Value]| {
            count("date", args, 2)?;
            let when = match &args[1] {
                Value::Int(seconds) => jiff::Timestamp::from_second(*seconds).ok(),
                other => layout::parse(&text(other)),
            }
            .ok_or_else(|| {
                TemplateError::Exec(format!(
                    "date: {:?} is not a time (RFC 3339, Go's printed form or Unix seconds)",
                    text(&args[1])
                ))
            })?;
            Ok(string(layout::format(&text(&args[0]), when)))
        }),
    );
    // Go's `index` gives a map[string]string's zero value, "", for a
    // missing key; the engine's own gives nil, printed `<no value>`.
    map.insert(
        "index".to_owned(),
        Arc::new(|args: &[Value]| {
            let Some((first, keys)) = args.split_first().filter(|(_, keys)| !keys.is_empty())
            else {
                return Err(TemplateError::ArgCount {
                    name: "index".to_owned(),
                    expected: 2,
                    got: args.len(),
                });
            };
            let mut value = first.clone();
            for key in keys {
                value = match (&value, key) {
                    (Value::Map(m), Value::String(k)) if !m.contains_key(k.as_ref()) => string(""),
                    _ => value.index(key)?,
                };
            }
            Ok(value)
        }),
    );
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_quotes_and_titles() {
        assert_eq!(go_quote("a\"b\\c\n\u{1}é"), r#""a\"b\\c\n\x01é""#);
        assert_eq!(title("hello wORLD-x_y ünd"), "Hello WORLD-X_y Ünd");
        assert_eq!(indent(2, "a\nb"), "  a\n  b");
    }
}
