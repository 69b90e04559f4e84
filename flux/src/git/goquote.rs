//! Go's `strconv.Quote` (the `%q` verb), used in the error texts.

use std::sync::LazyLock;

use regex::Regex;

/// Go's `unicode.IsPrint`: letters, marks, numbers, punctuation, symbols and
/// the ASCII space.
static PRINTABLE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[\p{L}\p{M}\p{N}\p{P}\p{S} ]$").expect("the printable class is a valid regex")
});

/// `s` in double quotes with Go's escapes: `\"`, `\\`, `\a \b \f \n \r \t \v`,
/// `\xNN` for other ASCII controls, `\uNNNN` / `\UNNNNNNNN` for other
/// non-printable runes.
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    let mut buf = [0u8; 4];
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
            c if PRINTABLE.is_match(c.encode_utf8(&mut buf)) => out.push(c),
            c if u32::from(c) < 0x80 => {
                out.push_str(&format!("\\x{:02x}", u32::from(c)));
            }
            c if u32::from(c) < 0x1_0000 => {
                out.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            c => {
                out.push_str(&format!("\\U{:08x}", u32::from(c)));
            }
        }
    }
    out.push('"');
    out
}
