//! The parts of Go's `net/url` the address parsers depend on: `url.Parse`
//! (which parts it splits out, what it rejects and how it words it),
//! `url.PathEscape`, the path escaping of `URL.String` and `path.Clean`.

use super::goquote::quote;

/// A URL as Go's `url.Parse` splits it. Only the fields the address parsers
/// read are kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct GoUrl {
    /// Lower-cased scheme, "" when there is none.
    pub scheme: String,
    /// `host[:port]`, percent-decoded; "" when there is no authority.
    pub host: String,
    /// The percent-decoded path ("" for opaque URLs such as `https:x`).
    pub path: String,
}

/// What `unescape` is decoding, which decides what it rejects.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Path,
    Host,
    UserPassword,
    Fragment,
}

/// Go's `url.Parse`. The error is Go's `*url.Error` text,
/// `parse "{url}": {reason}`.
pub(crate) fn parse(raw: &str) -> Result<GoUrl, String> {
    let (without_fragment, fragment) = raw.split_once('#').unwrap_or((raw, ""));
    let url = parse_reference(without_fragment)
        .map_err(|reason| format!("parse {}: {reason}", quote(without_fragment)))?;
    unescape(fragment, Mode::Fragment)
        .map_err(|reason| format!("parse {}: {reason}", quote(raw)))?;
    Ok(url)
}

fn parse_reference(raw: &str) -> Result<GoUrl, String> {
    if raw.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err("net/url: invalid control character in URL".to_owned());
    }
    let mut url = GoUrl::default();
    if raw == "*" {
        url.path = "*".to_owned();
        return Ok(url);
    }
    let (scheme, rest) = split_scheme(raw)?;
    url.scheme = scheme.to_ascii_lowercase();
    let rest = if rest.ends_with('?') && rest.matches('?').count() == 1 {
        &rest[..rest.len() - 1]
    } else {
        rest.split_once('?').map_or(rest, |(before, _)| before)
    };
    if !rest.starts_with('/') {
        if !url.scheme.is_empty() {
            // An opaque URL such as `mailto:x`: no host, no path.
            return Ok(url);
        }
        let segment = rest.split_once('/').map_or(rest, |(first, _)| first);
        if segment.contains(':') {
            return Err("first path segment in URL cannot contain colon".to_owned());
        }
    }
    let mut path = rest;
    if (!url.scheme.is_empty() || !rest.starts_with("///")) && rest.starts_with("//") {
        let after = &rest[2..];
        let (authority, tail) = after.find('/').map_or((after, ""), |i| after.split_at(i));
        url.host = parse_authority(authority)?;
        path = tail;
    }
    url.path = unescape(path, Mode::Path)?;
    Ok(url)
}

/// Go's `getScheme`.
fn split_scheme(raw: &str) -> Result<(&str, &str), String> {
    for (i, b) in raw.bytes().enumerate() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' => {}
            b'0'..=b'9' | b'+' | b'-' | b'.' if i > 0 => {}
            b':' if i == 0 => return Err("missing protocol scheme".to_owned()),
            b':' => return Ok((&raw[..i], &raw[i + 1..])),
            _ => return Ok(("", raw)),
        }
    }
    Ok(("", raw))
}

/// Go's `parseAuthority`: the host of `[userinfo@]host[:port]`, after
/// checking the user-info.
fn parse_authority(authority: &str) -> Result<String, String> {
    let (userinfo, host) = match authority.rfind('@') {
        Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
        None => (None, authority),
    };
    let host = parse_host(host)?;
    if let Some(userinfo) = userinfo {
        let valid = userinfo
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._:~!$&'()*+,;=%@".contains(c));
        if !valid {
            return Err("net/url: invalid userinfo".to_owned());
        }
        let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
        unescape(user, Mode::UserPassword)?;
        unescape(password, Mode::UserPassword)?;
    }
    Ok(host)
}

/// Go's `parseHost`: the port must be digits, the host well escaped.
fn parse_host(host: &str) -> Result<String, String> {
    let colon_port = if host.starts_with('[') {
        let Some(i) = host.rfind(']') else {
            return Err("missing ']' in host".to_owned());
        };
        &host[i + 1..]
    } else {
        host.rfind(':').map_or("", |i| &host[i..])
    };
    let valid_port = colon_port.is_empty()
        || colon_port
            .strip_prefix(':')
            .is_some_and(|port| port.bytes().all(|b| b.is_ascii_digit()));
    if !valid_port {
        return Err(format!("invalid port {} after host", quote(colon_port)));
    }
    unescape(host, Mode::Host)
}

/// Go's `unescape`: percent-decoding with its validation. Decoded bytes that
/// are not UTF-8 become U+FFFD.
fn unescape(s: &str, mode: Mode) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let escape = bytes.get(i + 1..i + 3).and_then(|pair| {
                let hi = (pair[0] as char).to_digit(16)?;
                let lo = (pair[1] as char).to_digit(16)?;
                u8::try_from(hi * 16 + lo).ok()
            });
            let Some(decoded) = escape else {
                let end = (i + 3).min(bytes.len());
                return Err(format!(
                    "invalid URL escape {}",
                    quote(&String::from_utf8_lossy(&bytes[i..end]))
                ));
            };
            if mode == Mode::Host && decoded < 0x80 && &s[i..i + 3] != "%25" {
                return Err(format!("invalid URL escape {}", quote(&s[i..i + 3])));
            }
            out.push(decoded);
            i += 3;
            continue;
        }
        if mode == Mode::Host && b < 0x80 && !is_host_byte(b) {
            return Err(format!(
                "invalid character {} in host name",
                quote(&(b as char).to_string())
            ));
        }
        out.push(b);
        i += 1;
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Bytes Go's `shouldEscape(c, encodeHost)` lets through.
fn is_host_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_.~!$&'()*+,;=:[]<>\"".contains(&b)
}

/// Go's `url.PathEscape` (`shouldEscape` in `encodePathSegment` mode):
/// everything but `A-Z a-z 0-9 - _ . ~ $ & + : = @` is `%XX`-escaped.
pub(crate) fn path_segment_escape(s: &str) -> String {
    escape(s, |b| b"-_.~$&+:=@".contains(&b))
}

/// The path escaping of Go's `URL.String` (`encodePath` mode): like
/// [`path_segment_escape`] but `/`, `;` and `,` stay as they are.
pub(crate) fn path_escape(s: &str) -> String {
    escape(s, |b| b"-_.~$&+:=@/;,".contains(&b))
}

fn escape(s: &str, keep: impl Fn(u8) -> bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || keep(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Go's `path.Clean` for the absolute paths `URL.JoinPath` builds: repeated
/// slashes collapsed, `.` dropped, `..` resolved, no trailing slash.
pub(crate) fn clean_path(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    format!("/{}", parts.join("/"))
}
