//! `telegram`: a Bot API `sendMessage` in MarkdownV2 (flux-providers §4.9).
//!
//! The bot token is part of the URL path (`/bot{token}/sendMessage`), so
//! the URL is a secret: the transport logs the host only, and the token is
//! one of the Provider's secrets every kept text is masked with.
//!
//! Flux ignores `spec.address` and always calls `https://api.telegram.org`.
//! Herald calls the address as the API base when one is set (a local Bot
//! API server, a test double; Flux's own docs used to ask for
//! `address: https://api.telegram.org`, which gives the same URL), and
//! Telegram's otherwise.

use serde::Serialize;

use super::shared::{is_error, json_content, parse_url};
use super::{Input, Plan, Provider, ProviderError};
use crate::classify::Judge;
use crate::config::Resolved;
use crate::http::Request;
use herald_flux::FluxEvent;

/// Where Flux sends, whatever the address.
const API: &str = "https://api.telegram.org";

/// The characters MarkdownV2 reserves, each sent as `\c`.
const RESERVED: &str = "\\.-_[]()~>`#+=|{}!*";

/// `telegram`.
pub(super) struct Telegram;

impl Provider for Telegram {
    fn plan(&self, input: &Input<'_>) -> Result<Plan, ProviderError> {
        build(input.resolved, input.event).map(Plan::Request)
    }
}

#[derive(Serialize)]
struct Payload<'a> {
    chat_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    message_thread_id: Option<&'a str>,
    text: String,
    parse_mode: &'a str,
}

/// `text` with every MarkdownV2 reserved character escaped.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if RESERVED.contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The message: bold heading, message, one `- *key*: value` line per
/// metadata entry (sorted by key; Flux's order is Go's random map order).
fn text(event: &FluxEvent) -> String {
    let emoji = if is_error(event) {
        "\u{1f6a8}"
    } else {
        "\u{1f4ab}"
    };
    let o = &event.involved_object;
    let heading = format!(
        "{emoji} {}/{}/{}",
        o.kind.to_lowercase(),
        o.name,
        o.namespace
    );
    let mut text = format!("*{}*\n{}\n", escape(&heading), escape(&event.message));
    for (key, value) in &event.metadata {
        text.push_str(&format!("\\- *{}*: {}\n", escape(key), escape(value)));
    }
    text
}

/// Builds the `sendMessage` request.
fn build(resolved: &Resolved, event: &FluxEvent) -> Result<Request, ProviderError> {
    if resolved.channel.is_empty() {
        return Err(ProviderError::missing(
            "telegram",
            "empty Telegram channel: set spec.channel to the chat id or @username",
        ));
    }
    if resolved.token.is_empty() {
        return Err(ProviderError::missing(
            "telegram",
            "empty Telegram token: set token in the Provider's Secret",
        ));
    }
    let base = if resolved.address.is_empty() {
        API
    } else {
        resolved.address.trim_end_matches('/')
    };
    let url = parse_url(
        resolved,
        "telegram",
        &format!("{base}/bot{}/sendMessage", resolved.token),
    )?;
    let (chat_id, thread) = match resolved.channel.split_once(':') {
        Some((chat_id, thread)) => (chat_id, Some(thread)),
        None => (resolved.channel.as_str(), None),
    };
    let payload = Payload {
        chat_id,
        // Flux omits an empty one (`omitempty`), as for `-100123:`.
        message_thread_id: thread.filter(|t| !t.is_empty()),
        text: text(event),
        parse_mode: "MarkdownV2",
    };
    Ok(Request::post(
        url,
        vec![json_content()],
        herald_flux::gojson::to_vec(&payload),
    )
    .judged_by(Judge::Telegram))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::{Answer, classify};
    use crate::outcome::Outcome;
    use std::collections::BTreeMap;

    const TOKEN: &str = "123456:AAH-secret_token";

    fn event(severity: &str, metadata: &[(&str, &str)]) -> FluxEvent {
        let mut e = FluxEvent::from_json(
            br#"{"involvedObject":{"kind":"GitRepository","namespace":"flux-system","name":"webapp"},
                "message":"Fetched revision: main@sha1:abc. (1.2s) [ok] a_b*c <x>",
                "reportingController":"source-controller"}"#,
        )
        .unwrap();
        e.severity = severity.into();
        e.metadata = metadata
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<BTreeMap<_, _>>();
        e
    }

    fn resolved(channel: &str) -> Resolved {
        Resolved {
            provider_type: "telegram".into(),
            channel: channel.into(),
            token: TOKEN.into(),
            ..Resolved::default()
        }
    }

    #[test]
    fn body_matches_flux_byte_for_byte() {
        let request = build(
            &resolved("@fluxcd"),
            &event("info", &[("revision", "main@sha1:abc")]),
        )
        .unwrap();
        assert_eq!(
            request.url.as_str(),
            format!("https://api.telegram.org/bot{TOKEN}/sendMessage")
        );
        assert_eq!(request.judge, Judge::Telegram);
        assert_eq!(
            request.headers,
            [("Content-Type".to_owned(), "application/json".to_owned())]
        );
        assert_eq!(
            String::from_utf8(request.body).unwrap(),
            concat!(
                r#"{"chat_id":"@fluxcd","#,
                r#""text":"*💫 gitrepository/webapp/flux\\-system*\n"#,
                r#"Fetched revision: main@sha1:abc\\. \\(1\\.2s\\) \\[ok\\] a\\_b\\*c \u003cx\\\u003e\n"#,
                r#"\\- *revision*: main@sha1:abc\n","parse_mode":"MarkdownV2"}"#
            )
        );
    }

    #[test]
    fn errors_use_the_siren_and_topics_their_thread() {
        let request = build(&resolved("-1552289257:1"), &event("error", &[])).unwrap();
        let body = String::from_utf8(request.body).unwrap();
        assert!(
            body.starts_with(
                r#"{"chat_id":"-1552289257","message_thread_id":"1","text":"*🚨 gitrepository"#
            ),
            "{body}"
        );
        // No metadata: the text ends after the message's newline.
        assert!(body.ends_with(r#"\u003cx\\\u003e\n","parse_mode":"MarkdownV2"}"#));
        // Split at the first colon only.
        let request = build(&resolved("-100:2:3"), &event("info", &[])).unwrap();
        let body = String::from_utf8(request.body).unwrap();
        assert!(body.starts_with(r#"{"chat_id":"-100","message_thread_id":"2:3","#));
    }

    #[test]
    fn escapes_every_reserved_character_once() {
        assert_eq!(
            escape(r"\.-_[]()~>`#+=|{}!* /:@🚀"),
            r"\\\.\-\_\[\]\(\)\~\>\`\#\+\=\|\{\}\!\* /:@🚀"
        );
        assert_eq!(
            text(&event("info", &[("a.b", "x-y"), ("k", "v")]))
                .lines()
                .last(),
            Some(r"\- *k*: v")
        );
    }

    #[test]
    fn the_address_is_the_api_base_when_set() {
        let mut r = resolved("42");
        r.address = "http://127.0.0.1:9/".into();
        let request = build(&r, &event("info", &[])).unwrap();
        assert_eq!(
            request.url.as_str(),
            format!("http://127.0.0.1:9/bot{TOKEN}/sendMessage")
        );
    }

    #[test]
    fn missing_settings_are_flux_errors() {
        let e = event("info", &[]);
        let err = build(&resolved(""), &e).unwrap_err();
        assert!(err.to_string().contains("empty Telegram channel"), "{err}");
        let mut r = resolved("42");
        r.token.clear();
        let err = build(&r, &e).unwrap_err();
        assert!(err.to_string().contains("empty Telegram token"), "{err}");
    }

    #[test]
    fn the_token_never_shows() {
        let mut r = resolved("42");
        let request = build(&r, &event("info", &[])).unwrap();
        assert!(!format!("{request:?}").contains(TOKEN));
        // An answer echoing the URL keeps no token in the reason or excerpt.
        let echo = format!(
            r#"{{"ok":false,"error_code":404,"description":"Not Found: /bot{TOKEN}/sendMessage"}}"#
        );
        let answer = Answer {
            status: 404,
            headers: reqwest::header::HeaderMap::new(),
            body: echo.into(),
        };
        let masker = crate::http::masker(&r, &request.url);
        let Outcome::Dead { reason, body, .. } = classify(&answer, request.judge, &masker, "")
        else {
            panic!("a 404 is dead");
        };
        assert!(
            !reason.contains(TOKEN) && !body.contains(TOKEN),
            "{reason} {body}"
        );
        assert!(reason.contains("Not Found"), "{reason}");
        // A bad address names the address, never the URL built with the token.
        r.address = "http://[::1".into();
        let err = build(&r, &event("info", &[])).unwrap_err().to_string();
        assert!(!err.contains(TOKEN), "{err}");
    }
}
