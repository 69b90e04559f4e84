//! `matrix`: an `m.room.message` PUT to the room of `spec.channel` on the
//! homeserver of `spec.address` (flux-providers §4.11).
//!
//! The transaction id is the SHA-1 of the event as Go's `encoding/json`
//! writes it, as in Flux: every attempt of one delivery (a retry, a
//! redelivery after a restart) PUTs the same id, and the homeserver
//! answers a repeated id with the event it already posted.

use serde::Serialize;

use super::shared::{bearer, is_error, json_content, object_name, parse_address, parse_url};
use super::{Input, Plan, Provider, ProviderError};
use crate::classify::Judge;
use crate::config::Resolved;
use crate::http::Request;
use herald_flux::FluxEvent;

/// `matrix`.
pub(super) struct Matrix;

impl Provider for Matrix {
    fn plan(&self, input: &Input<'_>) -> Result<Plan, ProviderError> {
        build(input.resolved, input.event).map(Plan::Request)
    }
}

#[derive(Serialize)]
struct Payload {
    body: String,
    msgtype: &'static str,
}

/// Flux's transaction id: lowercase hex SHA-1 of the event's Go JSON.
fn transaction_id(event: &FluxEvent) -> String {
    let json = event.to_go_json();
    herald_flux::git::sha1_hex(&String::from_utf8_lossy(&json))
}

/// `{emoji} {obj}\n{message}\n` and `- {k}: {v}\n` per metadata entry
/// (sorted by key; Flux's order is Go's random map order).
fn body(event: &FluxEvent) -> String {
    let emoji = if is_error(event) {
        "\u{1f6a8}"
    } else {
        "\u{1f4ab}"
    };
    let mut body = format!("{emoji} {}\n{}\n", object_name(event), event.message);
    for (key, value) in &event.metadata {
        body.push_str(&format!("- {key}: {value}\n"));
    }
    body
}

/// Builds the PUT.
fn build(resolved: &Resolved, event: &FluxEvent) -> Result<Request, ProviderError> {
    parse_address(resolved, "matrix")?;
    // The address is used verbatim, and the room id unescaped, as in Flux.
    let url = parse_url(
        resolved,
        "matrix",
        &format!(
            "{}/_matrix/client/r0/rooms/{}/send/m.room.message/{}",
            resolved.address,
            resolved.channel,
            transaction_id(event)
        ),
    )?;
    let payload = Payload {
        body: body(event),
        msgtype: "m.text",
    };
    // Flux adds the header whatever the token, even an empty one.
    let headers = vec![
        json_content(),
        ("Authorization".to_owned(), bearer(&resolved.token)),
    ];
    let mut request =
        Request::post(url, headers, herald_flux::gojson::to_vec(&payload)).judged_by(Judge::Matrix);
    request.method = reqwest::Method::PUT;
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    const EVENT: &[u8] = br#"{"involvedObject":{"kind":"Kustomization","namespace":"flux-system","name":"webapp","apiVersion":"kustomize.toolkit.fluxcd.io/v1"},
        "severity":"error","timestamp":"2024-01-01T10:00:00Z","message":"apply failed: <none> & more",
        "reason":"ValidationFailed","reportingController":"kustomize-controller"}"#;

    fn event(metadata: &[(&str, &str)]) -> FluxEvent {
        let mut e = FluxEvent::from_json(EVENT).unwrap();
        e.metadata = metadata
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<BTreeMap<_, _>>();
        e
    }

    fn resolved() -> Resolved {
        Resolved {
            provider_type: "matrix".into(),
            address: "https://matrix.example.org".into(),
            channel: "!abc:matrix.org".into(),
            token: "syt_token".into(),
            ..Resolved::default()
        }
    }

    #[test]
    fn request_matches_flux_byte_for_byte() {
        let e = event(&[("summary", "prod"), ("revision", "main@sha1:abc")]);
        let request = build(&resolved(), &e).unwrap();
        assert_eq!(request.method, reqwest::Method::PUT);
        assert_eq!(request.judge, Judge::Matrix);
        // SHA-1 of exactly the bytes Go's json.Marshal writes for the event.
        let go_json = concat!(
            r#"{"involvedObject":{"kind":"Kustomization","namespace":"flux-system","name":"webapp","apiVersion":"kustomize.toolkit.fluxcd.io/v1"},"#,
            r#""severity":"error","timestamp":"2024-01-01T10:00:00Z","message":"apply failed: \u003cnone\u003e \u0026 more","#,
            r#""reason":"ValidationFailed","metadata":{"revision":"main@sha1:abc","summary":"prod"},"#,
            r#""reportingController":"kustomize-controller"}"#
        );
        assert_eq!(e.to_go_json(), go_json.as_bytes());
        let txn = herald_flux::git::sha1_hex(go_json);
        assert_eq!(
            request.url.as_str(),
            format!(
                "https://matrix.example.org/_matrix/client/r0/rooms/!abc:matrix.org/send/m.room.message/{txn}"
            )
        );
        assert_eq!(
            request.headers,
            [
                ("Content-Type".to_owned(), "application/json".to_owned()),
                ("Authorization".to_owned(), "Bearer syt_token".to_owned()),
            ]
        );
        assert_eq!(
            String::from_utf8(request.body).unwrap(),
            concat!(
                r#"{"body":"🚨 kustomization/webapp.flux-system\napply failed: \u003cnone\u003e \u0026 more\n"#,
                r#"- revision: main@sha1:abc\n- summary: prod\n","msgtype":"m.text"}"#
            )
        );
    }

    #[test]
    fn the_transaction_id_is_the_events_and_only_its() {
        let e = event(&[]);
        let first = build(&resolved(), &e).unwrap();
        let again = build(&resolved(), &e).unwrap();
        assert_eq!(first.url, again.url, "a retry PUTs the same transaction");
        let mut other = e.clone();
        other.message.push('!');
        let other = build(&resolved(), &other).unwrap();
        assert_ne!(first.url, other.url, "another event is another transaction");
        let txn = first.url.path_segments().unwrap().next_back().unwrap();
        assert_eq!(txn.len(), 40);
        assert!(
            txn.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
    }

    #[test]
    fn info_events_and_empty_metadata() {
        let mut e = event(&[]);
        e.severity = "info".into();
        let body = String::from_utf8(build(&resolved(), &e).unwrap().body).unwrap();
        assert_eq!(
            body,
            r#"{"body":"💫 kustomization/webapp.flux-system\napply failed: \u003cnone\u003e \u0026 more\n","msgtype":"m.text"}"#
        );
    }

    #[test]
    fn the_address_is_required_and_used_verbatim() {
        let mut r = resolved();
        r.address.clear();
        assert!(matches!(
            build(&r, &event(&[])),
            Err(ProviderError::NoAddress { .. })
        ));
        r.address = "not a url".into();
        assert!(matches!(
            build(&r, &event(&[])),
            Err(ProviderError::BadAddress { .. })
        ));
        r.address = "https://example.org/matrix/".into();
        let request = build(&r, &event(&[])).unwrap();
        assert!(
            request
                .url
                .as_str()
                .starts_with("https://example.org/matrix//_matrix/client/r0/rooms/")
        );
    }
}
