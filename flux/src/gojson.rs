//! JSON bytes as Go's `encoding/json.Marshal` writes them: compact, and with
//! `<`, `>`, `&`, U+2028 and U+2029 escaped as `\u003c`, `\u003e`, `\u0026`,
//! `\u2028`, `\u2029`. Receivers that check an HMAC over the body depend on it.

use std::io;

use serde::Serialize;
use serde_json::ser::{Formatter, Serializer};

/// Serialises `value` with Go's escaping.
///
/// # Panics
///
/// Never for the types in this crate: they serialise to JSON without error.
#[must_use]
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    let mut ser = Serializer::with_formatter(&mut out, GoFormatter);
    value
        .serialize(&mut ser)
        .expect("serialising to a Vec cannot fail for plain data");
    out
}

/// A compact formatter that adds Go's HTML-safe escapes.
struct GoFormatter;

impl Formatter for GoFormatter {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            let escaped = match c {
                '<' => "\\u003c",
                '>' => "\\u003e",
                '&' => "\\u0026",
                '\u{2028}' => "\\u2028",
                '\u{2029}' => "\\u2029",
                _ => continue,
            };
            writer.write_all(&fragment.as_bytes()[start..i])?;
            writer.write_all(escaped.as_bytes())?;
            start = i + c.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_what_go_escapes() {
        let text = "a<b>c&d\u{2028}e\u{2029}f\"g\n";
        assert_eq!(
            String::from_utf8(super::to_vec(text)).unwrap(),
            r#""a\u003cb\u003ec\u0026d\u2028e\u2029f\"g\n""#
        );
    }
}
