//! What several providers share: addresses, Flux's object names, auth
//! headers, Go's escapes and base64. No provider imports another; they all
//! import this.

use base64::Engine as _;
use herald_flux::FluxEvent;

use super::ProviderError;
use crate::config::Resolved;

mod slack_payload;

pub use slack_payload::SlackPayload;

/// Parses a Provider address that must be an absolute http(s) URL.
///
/// # Errors
///
/// [`ProviderError::NoAddress`] or [`ProviderError::BadAddress`].
pub fn parse_address(resolved: &Resolved, what: &str) -> Result<reqwest::Url, ProviderError> {
    if resolved.address.is_empty() {
        return Err(ProviderError::NoAddress { what: what.into() });
    }
    parse_url(resolved, what, &resolved.address)
}

/// Parses `address` (the Provider's, or one built from it) as an absolute
/// http(s) URL; errors show it as logs may.
///
/// # Errors
///
/// [`ProviderError::BadAddress`].
pub fn parse_url(
    resolved: &Resolved,
    what: &str,
    address: &str,
) -> Result<reqwest::Url, ProviderError> {
    let bad = |reason: String| ProviderError::BadAddress {
        what: what.into(),
        shown: resolved.address_for_logs(),
        reason,
    };
    let url = reqwest::Url::parse(address).map_err(|e| bad(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("it must be http or https".to_owned()));
    }
    Ok(url)
}

/// `{scheme}://{host[:port]}` of `address`, its path, query and user
/// dropped (PagerDuty's and Datadog's endpoints are built on it).
#[must_use]
pub fn scheme_and_host(address: &reqwest::Url) -> String {
    // `host_str` keeps an IPv6 address's brackets.
    let host = address.host_str().unwrap_or_default();
    match address.port() {
        Some(port) => format!("{}://{host}:{port}", address.scheme()),
        None => format!("{}://{host}", address.scheme()),
    }
}

/// `lower(kind)/name.namespace`, the object name most chat providers show.
#[must_use]
pub fn object_name(event: &FluxEvent) -> String {
    let o = &event.involved_object;
    format!("{}/{}.{}", o.kind.to_lowercase(), o.name, o.namespace)
}

/// Whether the event is an error (the only severity Flux styles apart).
#[must_use]
pub fn is_error(event: &FluxEvent) -> bool {
    event.severity == "error"
}

/// The Secret's `token`, else its `password`.
///
/// # Errors
///
/// [`ProviderError::Missing`] naming `what` when both are empty.
pub fn token_or_password(resolved: &Resolved, what: &str) -> Result<String, ProviderError> {
    let token = if resolved.token.is_empty() {
        &resolved.password
    } else {
        &resolved.token
    };
    if token.is_empty() {
        return Err(ProviderError::missing(
            what,
            "token must be specified in the Provider's Secret (token, or password)",
        ));
    }
    Ok(token.clone())
}

/// `Basic base64(user:password)`.
#[must_use]
pub fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", base64(format!("{user}:{password}").as_bytes()))
}

/// `Bearer token`.
#[must_use]
pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Standard base64 with padding.
#[must_use]
pub fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// `Content-Type: application/json`.
#[must_use]
pub fn json_content() -> (String, String) {
    ("Content-Type".to_owned(), "application/json".to_owned())
}

/// Go's `url.PathEscape` (one path segment: `/` is escaped).
#[must_use]
pub fn path_escape(segment: &str) -> String {
    // `gitlab_path_escape` is `url.PathEscape` with `.` then written `%2E`;
    // a `%` of the input is escaped as `%25`, so every `%2E` is such a dot.
    herald_flux::git::gitlab_path_escape(segment).replace("%2E", ".")
}

/// Go's `url.QueryEscape`: unreserved bytes kept, space as `+`, the rest
/// `%XX`.
#[must_use]
pub fn query_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(byte));
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_follow_go() {
        assert_eq!(query_escape("a b/c"), "a+b%2Fc");
        assert_eq!(path_escape("a b/c.d"), "a%20b%2Fc.d");
        assert_eq!(basic("u", "p"), "Basic dTpw");
    }

    #[test]
    fn scheme_and_host_drops_the_rest() {
        let url = |s: &str| reqwest::Url::parse(s).unwrap();
        assert_eq!(
            scheme_and_host(&url("http://u:p@[::1]:8080/v2/enqueue?x#y")),
            "http://[::1]:8080"
        );
        assert_eq!(
            scheme_and_host(&url("https://api.datadoghq.eu/")),
            "https://api.datadoghq.eu"
        );
    }
}
