//! `zoom`: a rich message posted to a Zoom Team Chat incoming webhook
//! (flux-providers §4.13).

use serde::Serialize;

use super::shared::{json_content, object_name, parse_address, query_escape};
use super::{Input, Plan, Provider, ProviderError};
use crate::config::Resolved;
use crate::http::Request;
use herald_flux::FluxEvent;

/// `zoom`.
pub(super) struct Zoom;

impl Provider for Zoom {
    fn plan(&self, input: &Input<'_>) -> Result<Plan, ProviderError> {
        build(input.resolved, input.event).map(Plan::Request)
    }
}

#[derive(Serialize)]
struct Payload<'a> {
    content: Content<'a>,
}

#[derive(Serialize)]
struct Content<'a> {
    head: Head<'a>,
    body: Vec<BodyItem<'a>>,
}

#[derive(Serialize)]
struct Head<'a> {
    text: String,
    sub_head: SubHead<'a>,
}

#[derive(Serialize)]
struct SubHead<'a> {
    text: &'a str,
}

/// Flux's `ZoomBodyItem`: `text` and `items` are `omitempty`.
#[derive(Serialize)]
struct BodyItem<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    text: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    items: Vec<Field<'a>>,
}

#[derive(Serialize)]
struct Field<'a> {
    key: &'a str,
    value: &'a str,
}

/// Builds the Zoom request: the Secret's `token` is the webhook's
/// verification token, sent as the whole `Authorization` header.
fn build(resolved: &Resolved, event: &FluxEvent) -> Result<Request, ProviderError> {
    let mut url = parse_address(resolved, "zoom")?;
    if resolved.token.is_empty() {
        return Err(ProviderError::missing(
            "zoom",
            "empty Zoom verification token: set token in the Provider's Secret",
        ));
    }
    if let Some(query) = with_full_format(url.query().unwrap_or_default()) {
        url.set_query(Some(&query));
    }
    let mut body = vec![BodyItem {
        kind: "message",
        text: &event.message,
        items: Vec::new(),
    }];
    if !event.metadata.is_empty() {
        body.push(BodyItem {
            kind: "fields",
            text: "",
            // Sorted by key; Go's order is random.
            items: event
                .metadata
                .iter()
                .map(|(key, value)| Field { key, value })
                .collect(),
        });
    }
    let payload = Payload {
        content: Content {
            head: Head {
                text: object_name(event),
                sub_head: SubHead {
                    text: &event.severity,
                },
            },
            body,
        },
    };
    let headers = vec![
        json_content(),
        ("Authorization".to_owned(), resolved.token.clone()),
    ];
    Ok(Request::post(
        url,
        headers,
        herald_flux::gojson::to_vec(&payload),
    ))
}

/// The query Flux sends when `query` has no non-empty `format`: Go's
/// `url.Values` of it with `format=full` set, encoded with sorted keys;
/// `None` when the query is kept as it is.
fn with_full_format(query: &str) -> Option<String> {
    let mut pairs = parse_go_query(query);
    let format = pairs.iter().find(|(key, _)| key == "format");
    if format.is_some_and(|(_, value)| !value.is_empty()) {
        return None;
    }
    pairs.retain(|(key, _)| key != "format");
    pairs.push(("format".to_owned(), "full".to_owned()));
    // A stable sort keeps each key's values in order, as `url.Values` does.
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    let encoded: Vec<String> = pairs
        .iter()
        .map(|(key, value)| format!("{}={}", query_escape(key), query_escape(value)))
        .collect();
    Some(encoded.join("&"))
}

/// Go's `url.ParseQuery`, keeping what it keeps: pairs split at `&`;
/// empty ones, ones with a `;` and ones that do not unescape are dropped.
fn parse_go_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty() && !pair.contains(';'))
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            Some((query_unescape(key)?, query_unescape(value)?))
        })
        .collect()
}

/// Go's `url.QueryUnescape`: `+` is a space, `%XX` a byte; `None` for a
/// bad escape or bytes that are not UTF-8.
fn query_unescape(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn event(severity: &str) -> FluxEvent {
        let mut e = FluxEvent::from_json(
            br#"{"involvedObject":{"kind":"Kustomization","namespace":"flux-system","name":"apps"},
                "message":"Health check <failed> & timed out","reason":"HealthCheckFailed",
                "reportingController":"kustomize-controller"}"#,
        )
        .unwrap();
        e.severity = severity.into();
        e.metadata = BTreeMap::from([
            ("revision".to_owned(), "main@sha1:abc".to_owned()),
            ("cluster".to_owned(), "prod".to_owned()),
        ]);
        e
    }

    fn resolved(address: &str) -> Resolved {
        Resolved {
            provider_type: "zoom".into(),
            address: address.into(),
            token: "verification-token".into(),
            ..Resolved::default()
        }
    }

    const HOOK: &str = "https://integrations.zoom.us/chat/webhooks/incomingwebhook/abc";

    #[test]
    fn body_matches_flux_byte_for_byte() {
        let request = build(&resolved(HOOK), &event("error")).unwrap();
        assert_eq!(request.url.as_str(), format!("{HOOK}?format=full"));
        assert!(
            request
                .headers
                .contains(&("Authorization".to_owned(), "verification-token".to_owned()))
        );
        assert_eq!(
            String::from_utf8(request.body).unwrap(),
            concat!(
                r#"{"content":{"head":{"text":"kustomization/apps.flux-system","sub_head":{"text":"error"}},"#,
                r#""body":[{"type":"message","text":"Health check \u003cfailed\u003e \u0026 timed out"},"#,
                r#"{"type":"fields","items":[{"key":"cluster","value":"prod"},{"key":"revision","value":"main@sha1:abc"}]}]}}"#
            )
        );
    }

    #[test]
    fn no_metadata_and_no_message_are_omitted() {
        let mut e = event("info");
        e.metadata.clear();
        e.message.clear();
        let request = build(&resolved(HOOK), &e).unwrap();
        assert_eq!(
            String::from_utf8(request.body).unwrap(),
            r#"{"content":{"head":{"text":"kustomization/apps.flux-system","sub_head":{"text":"info"}},"body":[{"type":"message"}]}}"#
        );
    }

    #[test]
    fn format_full_is_added_as_go_encodes_the_query() {
        let url = |address: &str| {
            build(&resolved(address), &event("info"))
                .unwrap()
                .url
                .to_string()
        };
        // A format already pinned is kept, query untouched.
        assert_eq!(
            url(&format!("{HOOK}?z=1&format=message")),
            format!("{HOOK}?z=1&format=message")
        );
        // Otherwise the query is re-encoded with sorted keys.
        assert_eq!(
            url(&format!("{HOOK}?z=a+b&a=%2F&format=")),
            format!("{HOOK}?a=%2F&format=full&z=a+b")
        );
        assert_eq!(
            url(&format!("{HOOK}?b=2&a=1&b=1&bad=%zz&x;y=1")),
            format!("{HOOK}?a=1&b=2&b=1&format=full")
        );
    }

    #[test]
    fn a_token_is_required() {
        let mut no_token = resolved(HOOK);
        no_token.token.clear();
        let error = build(&no_token, &event("info")).err().unwrap();
        assert!(matches!(error, ProviderError::Missing { .. }));
        assert!(error.to_string().contains("empty Zoom verification token"));
    }
}
